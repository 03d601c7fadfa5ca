/* SPDX-License-Identifier: MIT */
/**
 * @file sge.h
 * @brief Key validation (the hot path) and scatter/gather state.
 *
 * Validation is lock-free: one load of the slot record's word (key,
 * published flag and count together) and one compare-and-swap that checks
 * every bit of the key and takes the reference at once, so a region whose
 * count reached zero, or whose key was unpublished, is never revived;
 * then the PD, bounds and access checks on the same cache line. No RCU
 * read-side section is needed on that path; a region whose count is split
 * (MRKEY_REFCOUNT_PERCPU under contention) takes its reference inside one
 * (liburcu, bulletproof flavour, which registers the calling thread itself
 * and unregisters it at thread exit).
 *
 * Zero-length requests (IBTA C9-88: a zero-byte RDMA READ or WRITE need
 * not carry a valid key): with a length of 0, every validation below
 * returns 0 without looking the key up; the isge then has `mr == NULL`,
 * `length == sge_length == 0` and holds no reference. mrkey_isge_put(),
 * mrkey_ss_put() and the copies accept such an isge. The argument checks
 * (NULL, unknown access bits) still apply.
 *
 * Errors of mrkey_lkey_ok() and mrkey_rkey_ok():
 * | errno     | meaning |
 * |-----------|---------|
 * | -EINVAL   | NULL argument, an unknown access bit |
 * | -ENOENT   | the key names no published region (never issued, stale, being deregistered) |
 * | -EPERM    | the region belongs to another PD (key 0: the PD is not the DMA region's) |
 * | -ERANGE   | the range is not inside the region, or overflows |
 * | -EACCES   | a requested access bit is not granted |
 */
#ifndef MRKEY_SGE_H
#define MRKEY_SGE_H

#include <mrkey/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A scatter/gather element as a work request names it (`struct ibv_sge`). */
struct mrkey_sge {
	uint64_t addr;   /**< start, in the region's `addr` space */
	uint32_t length; /**< bytes */
	uint32_t lkey;   /**< key of the region */
};

/**
 * @brief A validated SGE: holds one reference on its region and walks the
 *        region's host memory.
 */
struct mrkey_isge {
	struct mrkey_mr *mr; /**< the region; one reference held */
	void *vaddr;         /**< host address of the current byte */
	uint32_t length;     /**< bytes contiguous at @ref vaddr */
	uint32_t sge_length; /**< bytes left in this SGE */
	uint32_t seg;        /**< index of the current segment (internal) */
	uint32_t flags;      /**< MRKEY_ISGE_* */
};

/** The isge holds no reference (from mrkey_lkey_check()/mrkey_rkey_check()). */
#define MRKEY_ISGE_NOREF 1u
/**
 * The isge was validated through a memory window (mrkey/mw.h): it is
 * never merged with the next SGE, whose bytes may lie outside the window.
 */
#define MRKEY_ISGE_WINDOW 2u

/** A cursor over an ordered list of isges (a work request's SG list). */
struct mrkey_sge_state {
	struct mrkey_isge *list; /**< the isges; the state owns their refs */
	unsigned int n;          /**< entries in @ref list */
	unsigned int cur;        /**< index of the current entry */
};

/**
 * @brief Validate a local key and take a reference.
 * @param[in] table the table
 * @param[in] pd the PD of the work request
 * @param[in] sge address, length and lkey; bounds are checked against the
 *                region's `addr`
 * @param[in] access MRKEY_ACCESS_* bits needed (0 = local read)
 * @param[out] isge on success, holds one reference and points at the first
 *                  byte; untouched on failure
 * @return 0, or -EINVAL, -ENOENT, -EPERM, -ERANGE, -EACCES (see the table
 *         above); no reference is taken on failure.
 *
 * Key 0 names the DMA region, for its own privileged PD only; then
 * `sge->addr` is a host address.
 *
 * Context: any thread, at any time, concurrently with registration and
 * deregistration; lock-free; a split count's reference is taken in its
 * own RCU read-side section (nesting inside the caller's liburcu-bp
 * section is allowed).
 */
MRKEY_EXTERN int mrkey_lkey_ok(struct mrkey_table *table, struct mrkey_pd *pd,
			       const struct mrkey_sge *sge, unsigned int access,
			       struct mrkey_isge *isge);

/**
 * @brief Validate a remote key and take a reference.
 * @param[in] table the table
 * @param[in] pd the PD of the QP the request arrived on
 * @param[in] rkey the key the peer presented
 * @param[in] vaddr the start the peer named, in the region's `iova` space
 * @param[in] len bytes
 * @param[in] access MRKEY_ACCESS_* bits needed
 * @param[out] isge as for mrkey_lkey_ok()
 * @return as for mrkey_lkey_ok().
 *
 * @p rkey may also be a type 1 memory window's key (mrkey/mw.h): bounds
 * and access are then the window's, and the reference is taken on the
 * window's region. A type 2 window's key is -ENOENT here (see
 * mrkey_rkey_ok_qp()).
 *
 * Context: as for mrkey_lkey_ok().
 */
MRKEY_EXTERN int mrkey_rkey_ok(struct mrkey_table *table, struct mrkey_pd *pd,
			       uint32_t rkey, uint64_t vaddr, uint32_t len,
			       unsigned int access, struct mrkey_isge *isge);

/**
 * @brief Validate a 64-bit remote key and a 64-bit length, in either kind
 *        of table, and take a reference.
 * @param[in] table the table
 * @param[in] pd the PD of the endpoint the request arrived on
 * @param[in] key the key the peer presented: any 64-bit value in a
 *                requested-key table (MRKEY_INDEX_REQUESTED); in a slot
 *                table a key above `UINT32_MAX` never resolves, and a
 *                smaller one is checked as mrkey_rkey_ok() checks it
 * @param[in] vaddr the start the peer named, in the region's `iova` space
 * @param[in] len bytes, checked whole against the region
 * @param[in] access MRKEY_ACCESS_* bits needed
 * @param[out] isge on success holds one reference and describes the first
 *                  `min(len, UINT32_MAX)` bytes (`sge_length`); a caller
 *                  needing more validates again from `vaddr + UINT32_MAX`
 * @return as for mrkey_rkey_ok(): 0, -EINVAL, -ENOENT, -EPERM, -ERANGE or
 *         -EACCES; no reference is taken on failure. With @p len 0 it
 *         returns 0 without looking the key up (`isge->mr` NULL).
 *
 * Context: as for mrkey_lkey_ok(); in a requested-key table the lookup
 * runs in its own RCU read-side section (nesting inside the caller's
 * liburcu-bp section is allowed).
 */
MRKEY_EXTERN int mrkey_key_ok(struct mrkey_table *table, struct mrkey_pd *pd,
			      uint64_t key, uint64_t vaddr, uint64_t len,
			      unsigned int access, struct mrkey_isge *isge);

/**
 * @brief Validate a local key, merging with the previous SGE when they
 *        are contiguous (as rdmavt does for a work request's SG list).
 * @param[in] table the table
 * @param[in] pd the PD of the work request
 * @param[in] sge the next SGE of the list
 * @param[in] access MRKEY_ACCESS_* bits needed
 * @param[in,out] last the previous validated SGE of the list (not yet
 *                     consumed), or NULL
 * @param[out] isge filled as by mrkey_lkey_ok() when not merged
 * @return 1 (merged: @p sge names the same published region, starts where
 *         @p last ends, stays inside the region and needs no access the
 *         region lacks; @p last now also covers it, no new reference, @p
 *         isge untouched), 0 (validated into @p isge with a new reference,
 *         exactly as mrkey_lkey_ok()), or a negative errno as
 *         mrkey_lkey_ok(), and then neither @p last nor @p isge changed.
 *
 * Context: as mrkey_lkey_ok(); @p last belongs to the caller.
 */
MRKEY_EXTERN int
mrkey_lkey_ok_merge(struct mrkey_table *table, struct mrkey_pd *pd,
		    const struct mrkey_sge *sge, unsigned int access,
		    struct mrkey_isge *last, struct mrkey_isge *isge);

/**
 * @brief Enter an RCU read-side section for reference-free checks.
 *
 * Sections nest. Keep them short: deregistrations in MRKEY_TABLE_NOREF
 * tables wait for every section that began before their unpublish.
 * `<mrkey/inline.h>` has the same pair inlined into the caller
 * (mrkey_read_lock_inline(), mrkey_read_unlock_inline()).
 *
 * Context: any thread; lock-free; must be paired with mrkey_read_unlock()
 * on the same thread.
 */
MRKEY_EXTERN void mrkey_read_lock(void);

/**
 * @brief Leave the section entered by mrkey_read_lock().
 *
 * Context: the thread that called mrkey_read_lock().
 */
MRKEY_EXTERN void mrkey_read_unlock(void);

/**
 * @brief Validate a local key without taking a reference.
 * @param[in] table a table created with MRKEY_TABLE_NOREF
 * @param[in] pd, sge, access as for mrkey_lkey_ok()
 * @param[out] isge on success points at the first byte and has
 *                  MRKEY_ISGE_NOREF set; it holds no reference
 * @return 0, or as mrkey_lkey_ok(); -EINVAL also when @p table lacks
 *         MRKEY_TABLE_NOREF, or (debug builds of mrkey, also reported)
 *         when called outside mrkey_read_lock().
 *
 * For synchronous users whose every access to the memory ends before the
 * enclosing mrkey_read_unlock(): an RDMA WRITE payload copied in on
 * arrival, an inline send copied out. The isge (and any state built on it)
 * is dead after mrkey_read_unlock(); do not put it (debug builds report a
 * put of it; release builds ignore it). A deregistration that races with
 * the check either makes it fail or waits for the section to end.
 *
 * Context: any thread, inside mrkey_read_lock(); lock-free.
 */
MRKEY_EXTERN int mrkey_lkey_check(struct mrkey_table *table,
				  struct mrkey_pd *pd,
				  const struct mrkey_sge *sge,
				  unsigned int access, struct mrkey_isge *isge);

/**
 * @brief Validate a remote key without taking a reference.
 * @param[in] table a table created with MRKEY_TABLE_NOREF
 * @param[in] pd the PD of the QP the request arrived on
 * @param[in] rkey the key the peer presented
 * @param[in] vaddr the start the peer named, in the region's `iova` space
 * @param[in] len bytes
 * @param[in] access MRKEY_ACCESS_* bits needed
 * @param[out] isge as for mrkey_lkey_check()
 * @return as mrkey_lkey_check().
 *
 * Contract as for mrkey_lkey_check().
 *
 * Context: any thread, inside mrkey_read_lock(); lock-free.
 */
MRKEY_EXTERN int mrkey_rkey_check(struct mrkey_table *table,
				  struct mrkey_pd *pd, uint32_t rkey,
				  uint64_t vaddr, uint32_t len,
				  unsigned int access, struct mrkey_isge *isge);

/**
 * @brief mrkey_key_ok() without taking a reference.
 * @param[in] table a table created with MRKEY_TABLE_NOREF, of either kind
 * @param[in] pd, key, vaddr, len, access as for mrkey_key_ok()
 * @param[out] isge as for mrkey_lkey_check(), describing the first
 *                  `min(len, UINT32_MAX)` bytes
 * @return as mrkey_rkey_check().
 *
 * Contract as for mrkey_lkey_check().
 *
 * Context: any thread, inside mrkey_read_lock(); lock-free.
 */
MRKEY_EXTERN int mrkey_key_check(struct mrkey_table *table, struct mrkey_pd *pd,
				 uint64_t key, uint64_t vaddr, uint64_t len,
				 unsigned int access, struct mrkey_isge *isge);

/**
 * @brief Drop the reference a validated SGE holds.
 * @param[in] isge the SGE; its @ref mrkey_isge::mr is cleared. An isge
 *                 with MRKEY_ISGE_NOREF holds none: nothing is dropped
 *                 (debug builds report the misuse).
 *
 * Context: as mrkey_mr_put().
 */
MRKEY_EXTERN void mrkey_isge_put(struct mrkey_isge *isge);

/**
 * @brief Start a cursor over @p n validated SGEs.
 * @param[out] ss the state
 * @param[in] list the isges; the state takes over their references, and
 *                 the array must outlive the state
 * @param[in] n number of entries (0 gives an empty state)
 *
 * Context: the state belongs to one thread at a time.
 */
MRKEY_EXTERN void mrkey_ss_init(struct mrkey_sge_state *ss,
				struct mrkey_isge *list, unsigned int n);

/**
 * @brief Copy @p len bytes from @p src into the memory the state describes.
 * @param[in,out] ss the state
 * @param[in] src bytes to write
 * @param[in] len how many
 * @return the bytes copied; less than @p len only at the end of the list.
 *
 * Advances the cursor across SGE and segment boundaries; drops no
 * reference.
 *
 * Context: the state belongs to one thread at a time.
 */
MRKEY_EXTERN size_t mrkey_ss_copy_in(struct mrkey_sge_state *ss,
				     const void *src, size_t len);

/**
 * @brief Copy @p len bytes out of the memory the state describes into
 *        @p dst.
 * @param[in,out] ss the state
 * @param[out] dst where to put them
 * @param[in] len how many
 * @return the bytes copied; less than @p len only at the end of the list.
 *
 * Context: as mrkey_ss_copy_in().
 */
MRKEY_EXTERN size_t mrkey_ss_copy_out(struct mrkey_sge_state *ss, void *dst,
				      size_t len);

/**
 * @brief Move the cursor @p len bytes on without copying (a DMA engine
 *        reads the pieces in place: the seed's qib_update_sge()).
 * @param[in,out] ss the state
 * @param[in] len how many bytes
 * @return the bytes skipped; less than @p len only at the end of the list.
 *
 * Drops no reference. Read @ref mrkey_isge::vaddr and
 * @ref mrkey_isge::length of `list[cur]` for the piece at the cursor.
 *
 * Context: as mrkey_ss_copy_in().
 */
MRKEY_EXTERN size_t mrkey_ss_advance(struct mrkey_sge_state *ss, size_t len);

/**
 * @brief Bytes left between the cursor and the end of the list.
 * @param[in] ss the state
 * @return the sum of what is left of each SGE from the cursor on.
 *
 * Context: as mrkey_ss_copy_in().
 */
MRKEY_EXTERN uint64_t mrkey_ss_remaining(const struct mrkey_sge_state *ss);

/**
 * @brief Drop every reference the state owns, consumed or not, and empty
 *        it. A second call does nothing. Reference-free isges are skipped.
 * @param[in,out] ss the state
 *
 * Context: as mrkey_mr_put().
 */
MRKEY_EXTERN void mrkey_ss_put(struct mrkey_sge_state *ss);

#ifdef __cplusplus
}
#endif

#endif /* MRKEY_SGE_H */
