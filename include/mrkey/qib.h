/* SPDX-License-Identifier: MIT */
/**
 * @file qib.h
 * @brief The qib backend: one QLogic QLE7340 (qib) port, its key table in
 *        qib's key layout, and the send DMA (SDMA) ring whose in-flight
 *        requests hold region references.
 *
 * Link with `-lmrkey-qib -lmrkey` (CMake target `mrkey::qib`).
 *
 * A port owns an mrkey table (mrkey_qib_port_table()); drivers call
 * mrkey_pd_alloc(), mrkey_mr_reg(), mrkey_rkey_ok() and mrkey_mr_dereg() on
 * it as on any table. What the backend adds is the send ring: a request
 * posted with mrkey_qib_post() carries a scatter/gather state whose region
 * references the ring takes over, and they are dropped only when progress
 * reaps the request after the engine has passed its last descriptor. That
 * is the window in which the qib driver once returned EBUSY from MR
 * deregistration: the peer already has its RDMA READ data, the ring still
 * holds the region. mrkey_mr_dereg() drives the ring's progress while it
 * waits, so it returns 0 as soon as the ring lets go.
 *
 * The driver reaches the chip only through ::mrkey_qib_chip: a handful of
 * per-port send-DMA registers and one interrupt. No QLogic HCA is needed:
 * the default chip is a software model of the QLE7340 send DMA engine
 * (mrkey_qib_model_create()), which follows the engine's documented behaviour
 * (descriptor format, generation bits, tail register, head written back to
 * host memory, halting on a malformed descriptor). It is a model of that
 * behaviour, not the card: no PCIe, no IOMMU, no link, and "DMA addresses"
 * are host virtual addresses.
 */
#ifndef MRKEY_QIB_H
#define MRKEY_QIB_H

#include <mrkey/mrkey.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks a declaration as part of the exported ABI of libmrkey-qib. */
#if defined(MRKEY_STATIC_DEFINE)
#define MRKEY_QIB_EXTERN
#elif defined(__GNUC__) || defined(__clang__)
#define MRKEY_QIB_EXTERN __attribute__((visibility("default")))
#else
#define MRKEY_QIB_EXTERN
#endif

/**
 * @name SDMA descriptor format
 *
 * A descriptor is two little-endian qwords in host memory.
 * qword 0: address bits 31:0 in 63:32, generation in 31:30, dword count in
 * 26:16, flags in 15:11, buffer offset in dwords in 10:0.
 * qword 1: address bits 47:32 in 15:0, the rest zero.
 * @{
 */
#define MRKEY_QIB_DESC_GEN_SHIFT 30       /**< 2-bit generation */
#define MRKEY_QIB_DESC_GEN_MASK 0x3u      /**< generation width */
#define MRKEY_QIB_DESC_DWORDS_SHIFT 16    /**< dword count */
#define MRKEY_QIB_DESC_DWORDS_MASK 0x7ffu /**< dword count width */
#define MRKEY_QIB_DESC_OFFSET_MASK 0x7ffu /**< buffer offset, dwords */
/** Raise the SDMA interrupt once this descriptor is done. */
#define MRKEY_QIB_DESC_INTR (1ull << 15)
/** Send through a large send buffer; the engine requires it. */
#define MRKEY_QIB_DESC_USE_LARGE_BUF (1ull << 14)
/** Write the head back to host memory once this descriptor is done. */
#define MRKEY_QIB_DESC_DMA_HEAD (1ull << 13)
/** First descriptor of a packet. */
#define MRKEY_QIB_DESC_FIRST (1ull << 12)
/** Last descriptor of a packet. */
#define MRKEY_QIB_DESC_LAST (1ull << 11)
/** Every flag bit. */
#define MRKEY_QIB_DESC_FLAGS                                                   \
	(MRKEY_QIB_DESC_INTR | MRKEY_QIB_DESC_USE_LARGE_BUF |                  \
	 MRKEY_QIB_DESC_DMA_HEAD | MRKEY_QIB_DESC_FIRST | MRKEY_QIB_DESC_LAST)
/** Largest dword count of one descriptor (11 bits). */
#define MRKEY_QIB_DESC_MAX_DWORDS 2047u
/** A descriptor carries a 48-bit address. */
#define MRKEY_QIB_DESC_ADDR_BITS 48
/** @} */

/** One descriptor's fields, in host byte order. */
struct mrkey_qib_desc {
	uint64_t addr;    /**< 48-bit DMA address of the first byte */
	uint32_t dwords;  /**< dwords to send, 0..2047 */
	uint32_t offset;  /**< dword offset in the send buffer, 0..2047 */
	unsigned int gen; /**< generation, 0..3 */
	uint64_t flags;   /**< MRKEY_QIB_DESC_INTR ... _LAST */
};

/**
 * @brief Pack descriptor fields into the two qwords of a descriptor.
 * @param[out] q the two qwords, host byte order (store them little-endian)
 * @param[in] d the fields; bits beyond each field's width are dropped
 *
 * Context: any thread; pure.
 */
static inline void mrkey_qib_desc_pack(uint64_t q[2],
				       const struct mrkey_qib_desc *d)
{
	q[0] = ((d->addr & 0xffffffffull) << 32) |
	       ((uint64_t)(d->gen & MRKEY_QIB_DESC_GEN_MASK)
		<< MRKEY_QIB_DESC_GEN_SHIFT) |
	       ((uint64_t)(d->dwords & MRKEY_QIB_DESC_DWORDS_MASK)
		<< MRKEY_QIB_DESC_DWORDS_SHIFT) |
	       (d->flags & MRKEY_QIB_DESC_FLAGS) |
	       (d->offset & MRKEY_QIB_DESC_OFFSET_MASK);
	q[1] = (d->addr >> 32) & 0xffffull;
}

/**
 * @brief Unpack the two qwords of a descriptor.
 * @param[in] q the two qwords, host byte order
 * @param[out] d the fields
 *
 * Context: any thread; pure.
 */
static inline void mrkey_qib_desc_unpack(const uint64_t q[2],
					 struct mrkey_qib_desc *d)
{
	d->addr = (q[0] >> 32) | ((q[1] & 0xffffull) << 32);
	d->gen = (unsigned int)(q[0] >> MRKEY_QIB_DESC_GEN_SHIFT) &
		 MRKEY_QIB_DESC_GEN_MASK;
	d->dwords = (uint32_t)(q[0] >> MRKEY_QIB_DESC_DWORDS_SHIFT) &
		    MRKEY_QIB_DESC_DWORDS_MASK;
	d->flags = q[0] & MRKEY_QIB_DESC_FLAGS;
	d->offset = (uint32_t)q[0] & MRKEY_QIB_DESC_OFFSET_MASK;
}

/**
 * @name Chip interface
 *
 * The per-port send-DMA registers the driver touches. The bit layouts
 * below are this interface's, modelled on the QLE7340's registers of the
 * same names; a binding to a real card translates them.
 * @{
 */

/** Per-port send-DMA registers. */
enum mrkey_qib_reg {
	/** Ring base address (64-byte aligned). Write only while disabled. */
	MRKEY_QIB_REG_SENDDMABASE = 0,
	/**
	 * Ring length in descriptors in bits 15:0. Writing it with
	 * MRKEY_QIB_LENGEN_LOAD set loads the ring: the engine's head,
	 * fetch point and expected generation restart at 0.
	 */
	MRKEY_QIB_REG_SENDDMALENGEN = 1,
	/** Index after the last valid descriptor; written by the driver. */
	MRKEY_QIB_REG_SENDDMATAIL = 2,
	/** Index of the next descriptor the engine will complete (read). */
	MRKEY_QIB_REG_SENDDMAHEAD = 3,
	/** Host address of the qword the engine writes its head into. */
	MRKEY_QIB_REG_SENDDMAHEADADDR = 4,
	/** MRKEY_QIB_STATUS_* bits (read only). */
	MRKEY_QIB_REG_SENDDMASTATUS = 5,
	/** MRKEY_QIB_CTRL_* bits: enable, interrupt enable, halt. */
	MRKEY_QIB_REG_SENDCTRL = 6,
};

/** SENDDMALENGEN: load the ring (see ::MRKEY_QIB_REG_SENDDMALENGEN). */
#define MRKEY_QIB_LENGEN_LOAD (1ull << 16)

/** SENDCTRL: the engine runs; clearing it stops the engine and clears
 *  an error halt. */
#define MRKEY_QIB_CTRL_SDMA_ENABLE (1ull << 0)
/** SENDCTRL: raise the interrupt for descriptors with INTR. */
#define MRKEY_QIB_CTRL_SDMA_INTENABLE (1ull << 1)
/** SENDCTRL: halt before the next descriptor. */
#define MRKEY_QIB_CTRL_SDMA_HALT (1ull << 2)

/** STATUS: the engine is enabled. */
#define MRKEY_QIB_STATUS_ENABLED (1ull << 0)
/** STATUS: the engine is inside a descriptor (reading host memory). */
#define MRKEY_QIB_STATUS_ACTIVE (1ull << 1)
/** STATUS: the engine is halted (error, SENDCTRL halt or external stall). */
#define MRKEY_QIB_STATUS_HALTED (1ull << 2)
/** STATUS: halted on a malformed descriptor; cause in bits 15:8. */
#define MRKEY_QIB_STATUS_ERROR (1ull << 3)
/** STATUS: every descriptor up to the tail is done. */
#define MRKEY_QIB_STATUS_IDLE (1ull << 4)
/** STATUS: shift of the error cause (MRKEY_QIB_ERR_*). */
#define MRKEY_QIB_STATUS_CAUSE_SHIFT 8
/** STATUS: width of the error cause. */
#define MRKEY_QIB_STATUS_CAUSE_MASK 0xffull

/** Why the engine halted with MRKEY_QIB_STATUS_ERROR. */
enum mrkey_qib_sdma_err {
	MRKEY_QIB_ERR_NONE = 0,         /**< no error */
	MRKEY_QIB_ERR_GENERATION = 1,   /**< descriptor of the wrong lap */
	MRKEY_QIB_ERR_ZERO_LENGTH = 2,  /**< dword count 0 */
	MRKEY_QIB_ERR_NO_LARGE_BUF = 3, /**< USE_LARGE_BUF not set */
	MRKEY_QIB_ERR_TAIL = 4,         /**< tail beyond the ring */
	MRKEY_QIB_ERR_RING = 5,         /**< enabled with no ring loaded */
};

/** Handler the chip calls for its send-DMA interrupt. */
typedef void (*mrkey_qib_irq_fn)(void *arg);

/** What a chip implementation provides. */
struct mrkey_qib_chip_ops {
	/**
	 * REQUIRED. Read a register. Context: any thread; the driver calls
	 * it with its ring lock held.
	 */
	uint64_t (*read)(void *ctx, enum mrkey_qib_reg reg);
	/**
	 * REQUIRED. Write a register. The driver orders its descriptor
	 * stores before a SENDDMATAIL write with a release fence; a write
	 * clearing MRKEY_QIB_CTRL_SDMA_ENABLE returns only once the engine
	 * has stopped reading host memory. Context: as read.
	 */
	void (*write)(void *ctx, enum mrkey_qib_reg reg, uint64_t val);
	/**
	 * OPTIONAL (REQUIRED for MRKEY_QIB_PROGRESS_IRQ). Install @p fn as
	 * the send-DMA interrupt handler, or remove it (@p fn NULL; returns
	 * once no call of the old handler is running). @p fn runs on a chip
	 * thread and must only wake someone. Returns 0 or -errno.
	 */
	int (*set_irq)(void *ctx, mrkey_qib_irq_fn fn, void *arg);
};

/** A chip: its ops and their context. */
struct mrkey_qib_chip {
	const struct mrkey_qib_chip_ops *ops; /**< the implementation */
	void *ctx;                            /**< passed to every op */
};
/** @} */

/**
 * @name The software model of the QLE7340 send DMA engine
 * @{
 */

/** The engine model (opaque). */
struct mrkey_qib_model;

/**
 * @brief Receives what the engine sends: the "wire", read by a test's
 *        peer side.
 * @param ctx the model attribute's `wire_ctx`
 * @param buf the descriptor's bytes (dwords * 4), valid during the call
 * @param len bytes
 * @param flags the descriptor's MRKEY_QIB_DESC_FIRST / _LAST bits
 *
 * Runs on the engine's thread with the model's lock held: it must not call
 * the model or a port using it.
 */
typedef void (*mrkey_qib_wire_fn)(void *ctx, const void *buf, size_t len,
				  uint64_t flags);

/** Attributes of a model. A zeroed struct (or NULL) means all defaults. */
struct mrkey_qib_model_attr {
	/** Where sent bytes go; NULL = discarded. */
	mrkey_qib_wire_fn wire;
	/** Passed to @ref wire. */
	void *wire_ctx;
	/** Pace: extra nanoseconds per descriptor; 0 = none. */
	uint64_t ns_per_desc;
	/** Pace: wire speed in bytes per second; 0 = unlimited. */
	uint64_t bytes_per_sec;
};

/** Where an external stall stops the engine (mrkey_qib_model_halt()). */
enum mrkey_qib_halt_point {
	/** Stop before fetching the next descriptor: nothing more is sent. */
	MRKEY_QIB_HALT_FETCH = 0,
	/**
	 * Keep sending every descriptor up to the tail but complete none: no
	 * head moves, no head write-back, no interrupt. The peer has its data
	 * while the ring still holds the region: the seed's window, held open.
	 */
	MRKEY_QIB_HALT_COMPLETION = 1,
};

/** Counters of a model. */
struct mrkey_qib_model_stats {
	uint64_t descs_sent;      /**< descriptors whose bytes went out */
	uint64_t bytes_sent;      /**< bytes that went out */
	uint64_t descs_completed; /**< descriptors the head has passed */
	uint64_t head_writebacks; /**< head writes to host memory */
	uint64_t interrupts;      /**< interrupts raised */
	uint64_t errors;          /**< error halts */
	uint64_t status;          /**< SENDDMASTATUS now */
};

/**
 * @brief Create an engine model; its engine thread starts at once and
 *        idles until the driver loads a ring and enables it.
 * @param[in] attr attributes, or NULL for all defaults
 * @param[out] modelp the model
 * @return 0, -EINVAL (NULL @p modelp), -ENOMEM, or -EAGAIN (no thread).
 *
 * Context: any thread.
 */
MRKEY_QIB_EXTERN int
mrkey_qib_model_create(const struct mrkey_qib_model_attr *attr,
		       struct mrkey_qib_model **modelp);

/**
 * @brief Stop the engine thread and free the model.
 * @param[in] model the model; NULL is ignored
 *
 * Context: any thread; no port may use the model any more.
 */
MRKEY_QIB_EXTERN void mrkey_qib_model_destroy(struct mrkey_qib_model *model);

/**
 * @brief The model as a chip, to pass in ::mrkey_qib_port_attr.
 * @param[in] model the model
 * @return a chip valid as long as the model; NULL for NULL.
 *
 * Context: any thread.
 */
MRKEY_QIB_EXTERN const struct mrkey_qib_chip *
mrkey_qib_model_chip(struct mrkey_qib_model *model);

/**
 * @brief Change the engine's pace.
 * @param[in] model the model
 * @param[in] ns_per_desc extra nanoseconds per descriptor; 0 = none
 * @param[in] bytes_per_sec wire speed; 0 = unlimited
 * @return 0 or -EINVAL (NULL).
 *
 * Context: any thread; takes the model's lock.
 */
MRKEY_QIB_EXTERN int mrkey_qib_model_set_pace(struct mrkey_qib_model *model,
					      uint64_t ns_per_desc,
					      uint64_t bytes_per_sec);

/**
 * @brief Stall the engine from outside (a stuck link, a wedged chip), at
 *        a descriptor boundary.
 * @param[in] model the model
 * @param[in] at where it stops (::mrkey_qib_halt_point)
 * @return 0 or -EINVAL (NULL, unknown @p at).
 *
 * STATUS shows MRKEY_QIB_STATUS_HALTED while stalled. The driver cannot
 * clear a stall; mrkey_qib_model_resume() does.
 *
 * Context: any thread; takes the model's lock, so when it returns no
 * descriptor is being sent.
 */
MRKEY_QIB_EXTERN int mrkey_qib_model_halt(struct mrkey_qib_model *model,
					  enum mrkey_qib_halt_point at);

/**
 * @brief End a stall: the engine completes what it sent and goes on.
 * @param[in] model the model
 * @return 0 or -EINVAL (NULL).
 *
 * Context: any thread; takes the model's lock.
 */
MRKEY_QIB_EXTERN int mrkey_qib_model_resume(struct mrkey_qib_model *model);

/**
 * @brief Read the model's counters.
 * @param[in] model the model
 * @param[out] stats a snapshot
 * @return 0 or -EINVAL (NULL).
 *
 * Context: any thread; takes the model's lock.
 */
MRKEY_QIB_EXTERN int mrkey_qib_model_stats(struct mrkey_qib_model *model,
					   struct mrkey_qib_model_stats *stats);
/** @} */

/**
 * @name Ports
 * @{
 */

/** A qib port: its key table, its send ring, its chip (opaque). */
struct mrkey_qib_port;

/** Who reaps the send ring. */
enum mrkey_qib_progress_mode {
	/**
	 * Default. An interrupt-like thread of the port's, woken by the
	 * chip's interrupt (raised after the last descriptor of each
	 * request), reaps the ring.
	 */
	MRKEY_QIB_PROGRESS_IRQ = 0,
	/**
	 * No thread, no interrupt: the ring is reaped only when someone calls
	 * mrkey_qib_progress(), including mrkey_mr_dereg() while it waits.
	 */
	MRKEY_QIB_PROGRESS_POLLED = 1,
};

/** Port attributes. A zeroed struct (or NULL) means all defaults. */
struct mrkey_qib_port_attr {
	/** log2 of the key table's slot count, 1..23; 0 = 16. */
	unsigned int lkey_table_size;
	/** Send ring size in descriptors, a power of two 4..32768; 0 = 256. */
	unsigned int sdma_descq_cnt;
	/** Who reaps the ring (default MRKEY_QIB_PROGRESS_IRQ). */
	enum mrkey_qib_progress_mode progress;
	/**
	 * The chip; NULL = a software engine model the port creates and
	 * owns (see mrkey_qib_port_model()). Copied; must outlive the port.
	 */
	const struct mrkey_qib_chip *chip;
	/** Attributes of the port's own model (@ref chip NULL); NULL = defaults. */
	const struct mrkey_qib_model_attr *model_attr;
	/** Passed through to the table (::mrkey_table_attr::keygen). */
	enum mrkey_keygen keygen;
	/** Passed through to the table (::mrkey_table_attr::seed). */
	uint64_t seed;
	/** Passed through to the table (::mrkey_table_attr::report). */
	mrkey_report_fn report;
	/** Passed through to the table (::mrkey_table_attr::report_ctx). */
	void *report_ctx;
};

/**
 * @brief Open a port: create its key table (qib layout, qib backend
 *        bound), allocate and load its send ring, start the engine and,
 *        in IRQ mode, the progress thread.
 * @param[in] attr attributes, or NULL for all defaults
 * @param[out] portp the port
 * @return 0, -EINVAL (NULL @p portp; `lkey_table_size` outside 1..23;
 *         `sdma_descq_cnt` not a power of two in 4..32768; unknown
 *         progress mode; a chip missing `read`/`write`, or `set_irq` in
 *         IRQ mode; or mrkey_table_create()'s -EINVAL), -ENOMEM, -EAGAIN
 *         (no thread), or the error of the chip's `set_irq`.
 *
 * Context: any thread.
 */
MRKEY_QIB_EXTERN int mrkey_qib_port_open(const struct mrkey_qib_port_attr *attr,
					 struct mrkey_qib_port **portp);

/**
 * @brief Close a port.
 * @param[in] port the port; NULL is ignored (returns 0)
 * @return 0 (the port, its table and its own model are gone), or -EBUSY
 *         (a region or PD of the port's table still exists: the port is
 *         kept open and usable, see below).
 *
 * First the engine is stopped and every request still in the ring is
 * aborted: its references are dropped and its completion called with
 * -ECANCELED (bytes already sent stay sent). Then the table is destroyed.
 * If that fails with -EBUSY, the ring is reloaded empty, the engine
 * restarted and -EBUSY returned; a region that an -EBUSY mrkey_mr_dereg()
 * left behind because the ring held it has lost those ring references
 * now, so deregistering it again returns 0 at once, and close can be
 * retried.
 *
 * Context: any thread but the port's progress thread or a completion;
 * no other thread may use the port, its table or its chip during the call.
 */
MRKEY_QIB_EXTERN int mrkey_qib_port_close(struct mrkey_qib_port *port);

/**
 * @brief The port's key table.
 * @param[in] port the port
 * @return the table (valid until the port is closed), or NULL for NULL.
 *
 * Context: any thread.
 */
MRKEY_QIB_EXTERN struct mrkey_table *
mrkey_qib_port_table(struct mrkey_qib_port *port);

/**
 * @brief The engine model the port created (::mrkey_qib_port_attr::chip
 *        NULL), to pace, stall and watch it.
 * @param[in] port the port
 * @return the model, or NULL (NULL @p port, or an external chip).
 *
 * Context: any thread.
 */
MRKEY_QIB_EXTERN struct mrkey_qib_model *
mrkey_qib_port_model(struct mrkey_qib_port *port);

/** mrkey_qib_post(): wait for room instead of returning -EAGAIN. */
#define MRKEY_QIB_POST_WAIT 1u

/** Most header bytes a request carries (a PBC and an IB header). */
#define MRKEY_QIB_MAX_HDR 128u

/**
 * @brief Completion of a request, called once it has left the ring and
 *        its references have been dropped.
 * @param arg ::mrkey_qib_send::arg
 * @param status 0 (sent and reaped), -ECANCELED (aborted by
 *               mrkey_qib_port_close()) or -EIO (aborted after an engine
 *               error; some of its bytes may have been sent)
 *
 * Context: the thread that reaped or aborted it (the progress thread, a
 * caller of mrkey_qib_progress() or mrkey_mr_dereg(), or the closing
 * thread); no lock of the port held. It must not call
 * mrkey_qib_port_close().
 */
typedef void (*mrkey_qib_done_fn)(void *arg, int status);

/** A send request: a header and a payload described by an SG state. */
struct mrkey_qib_send {
	/** Header bytes, copied at post; NULL with @ref hdr_len 0. */
	const void *hdr;
	/** Header length, 0..MRKEY_QIB_MAX_HDR. */
	size_t hdr_len;
	/**
	 * The payload from the cursor on; NULL for none. On success the
	 * ring takes over every reference the state owns (consumed entries
	 * included) and empties @p ss; on failure they stay the caller's.
	 * Built from mrkey_rkey_ok() (an RDMA READ response) or
	 * mrkey_lkey_ok() (a send); never from the borrowing
	 * mrkey_rkey_check()/mrkey_lkey_check() (MRKEY_ISGE_NOREF): the
	 * engine reads the memory long after the read-side section.
	 */
	struct mrkey_sge_state *ss;
	/** Payload bytes from the cursor; 0 = all that remain. */
	uint64_t len;
	/** Called once the request has left the ring; NULL = none. */
	mrkey_qib_done_fn done;
	/** Passed to @ref done. */
	void *arg;
	/** 0 or MRKEY_QIB_POST_WAIT. */
	unsigned int flags;
};

/**
 * @brief Post a request on the send ring.
 * @param[in] port the port
 * @param[in] wr the request
 * @return 0, -EINVAL (NULL argument; header too long; @ref
 *         mrkey_qib_send::len more than remains; empty request; unknown
 *         flag; an isge with MRKEY_ISGE_NOREF), -EMSGSIZE (needs more descriptors than the ring can ever
 *         hold), -EFAULT (an address does not fit a descriptor's 48 bits),
 *         -EAGAIN (the ring has no room now and MRKEY_QIB_POST_WAIT is not
 *         set: nothing is ever overwritten; reap and retry), -ESHUTDOWN
 *         (the port is closing), or -ENOMEM.
 *
 * The header goes in the first descriptor, the payload in descriptors that
 * point straight at the regions' memory, split at segment boundaries and
 * at 2047 dwords (8188 bytes). A payload with a piece whose address or
 * length is not a multiple of 4 is copied into a bounce buffer instead,
 * as qib does; its references are still held until the request is reaped.
 * The last descriptor asks for a head write-back (and, in IRQ mode, an
 * interrupt). With MRKEY_QIB_POST_WAIT a full ring is waited on (driving
 * progress itself in polled mode) instead of -EAGAIN.
 *
 * Context: any thread but a completion or a model's wire callback; takes
 * the port's ring lock.
 */
MRKEY_QIB_EXTERN int mrkey_qib_post(struct mrkey_qib_port *port,
				    const struct mrkey_qib_send *wr);

/**
 * @brief Reap the send ring: read the head the engine wrote back, retire
 *        the requests it has passed, in order, then drop their
 *        references and call their completions.
 * @param[in] port the port
 * @return the number of requests retired (>= 0), -EINVAL (NULL), or -EIO:
 *         the head was outside the window between the driver's head and
 *         tail (both in host memory and in SENDDMAHEAD; nothing retired,
 *         every reference kept), or the engine halted on an error (every
 *         request in the ring aborted with -EIO and the engine restarted
 *         empty).
 *
 * This is the backend's `progress` op: mrkey_mr_dereg() calls it while it
 * waits. Several threads may call it at once; it serialises itself. The
 * requests one call retires are finished in ring order; those of two
 * concurrent calls may finish interleaved.
 *
 * Context: any thread but a completion or a model's wire callback; takes
 * the port's ring lock, and drops references and runs completions after
 * releasing it.
 */
MRKEY_QIB_EXTERN int mrkey_qib_progress(struct mrkey_qib_port *port);

/** Counters of a port. */
struct mrkey_qib_port_stats {
	uint64_t posted;         /**< requests posted */
	uint64_t retired;        /**< requests reaped after the engine */
	uint64_t aborted;        /**< requests aborted (close, engine error) */
	uint64_t descs_posted;   /**< descriptors written */
	uint64_t bounced;        /**< requests sent from a bounce buffer */
	uint64_t full;           /**< posts that found the ring full */
	uint64_t bad_heads;      /**< heads rejected by the window check */
	uint64_t engine_errors;  /**< engine error halts recovered from */
	uint64_t keys_published; /**< key_publish calls */
	uint64_t keys_unpublished; /**< key_unpublish calls */
	uint32_t in_flight;        /**< requests in the ring now */
	uint32_t descs_in_flight;  /**< descriptors in the ring now */
	uint32_t refs_in_flight;   /**< region references the ring holds now */
	uint32_t descq_cnt;        /**< ring size */
};

/**
 * @brief Read the port's counters.
 * @param[in] port the port
 * @param[out] stats a snapshot
 * @return 0 or -EINVAL (NULL).
 *
 * Context: any thread; takes the port's ring lock.
 */
MRKEY_QIB_EXTERN int mrkey_qib_port_stats(struct mrkey_qib_port *port,
					  struct mrkey_qib_port_stats *stats);
/** @} */

#ifdef __cplusplus
}
#endif

#endif /* MRKEY_QIB_H */
