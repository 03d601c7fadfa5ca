/* SPDX-License-Identifier: MIT */
/**
 * @file table.h
 * @brief Key tables: one lkey/rkey domain (the key table of one HCA).
 *
 * A slot table (the default) owns 2^table_bits slots, the state that
 * generates keys, the DMA region published under key 0, and the backend
 * bound to it. A requested-key table (MRKEY_INDEX_REQUESTED) has no slots:
 * its callers choose 64-bit keys, kept in an index that grows as needed.
 *
 * Threading: registration, deregistration and PD calls on one table
 * serialise on the table's writer lock; validation (mrkey_lkey_ok(),
 * mrkey_rkey_ok()) never takes it. Every function may be called from any
 * thread without registering the thread anywhere first.
 */
#ifndef MRKEY_TABLE_H
#define MRKEY_TABLE_H

#include <mrkey/common.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mrkey_backend_ops;
struct mrkey_backend_params;

/** How keys are generated. */
enum mrkey_keygen {
	/**
	 * Default. Every non-index bit of every key is fresh randomness, and
	 * the free slot is chosen at random, so a peer that has seen keys
	 * learns nothing about the next one. A slot's new key always differs
	 * from the key it held last.
	 */
	MRKEY_KEYGEN_RANDOM = 0,
	/**
	 * qib's scheme, for tests that want determinism: scan for a free slot
	 * from the slot after the last one used, one generation counter per
	 * table incremented on every registration, key 0 skipped. Two tables
	 * fed the same calls issue the same keys.
	 */
	MRKEY_KEYGEN_SEQUENTIAL = 1,
};

/** Where the slot index lives in a 32-bit key. */
enum mrkey_key_layout {
	/**
	 * Default, qib's: index in the top `table_bits` bits, generation in
	 * bits 8..(31 - table_bits), the consumer's 8-bit key in the low byte.
	 * `table_bits` 1..23.
	 */
	MRKEY_LAYOUT_QIB = 0,
	/**
	 * rxe/mlx/verbs convention: `index << 8 | key byte`. `table_bits`
	 * 1..24. Only the low byte varies between keys of one slot.
	 */
	MRKEY_LAYOUT_INDEX8 = 1,
};

/** How region reference counts are kept. */
enum mrkey_refcount_mode {
	/**
	 * Default: one atomic counter per region. Smallest; every get and
	 * put is one atomic operation on the region's first cache line, so
	 * many cores hammering one region bounce that line.
	 */
	MRKEY_REFCOUNT_ATOMIC = 0,
	/**
	 * Split counters (Linux `percpu_ref`) for the regions that need
	 * them. A region starts with the atomic count and is deregistered
	 * like in an atomic table; once lookups on two CPUs keep colliding
	 * on its count (64 failed compare-and-swaps), it is split: gets and
	 * puts of lookups then touch only a counter of the running CPU's
	 * shard, and the region's record is only read. Deregistering a split
	 * region sums the shards after an RCU grace period (so it pays one).
	 * Costs 8 bytes per shard for each of up to 4096 split regions per
	 * table (shards = CPUs rounded up to a power of two, at most 64),
	 * allocated with the table; a region that finds none free stays
	 * atomic. Choose it for regions that many cores use at once (a
	 * shared receive buffer).
	 */
	MRKEY_REFCOUNT_PERCPU = 1,
};

/** How a table finds a region from its key. */
enum mrkey_index {
	/**
	 * Default: the table issues 32-bit keys naming one of its
	 * 2^table_bits slots (the verbs and qib model; mrkey_mr_reg()).
	 */
	MRKEY_INDEX_SLOT = 0,
	/**
	 * The registering caller chooses any 64-bit key, 0 and `UINT64_MAX`
	 * included (libfabric's requested keys; mrkey_mr_reg_key()). The
	 * regions are kept in a hash index with no fixed capacity, which grows
	 * and shrinks under the writer lock while lookups run lock-free in RCU
	 * read-side sections. `table_bits`, `keygen` and `layout` must stay 0;
	 * mrkey_mr_reg(), mrkey_mr_reg_dma(), mrkey_mr_alloc() and
	 * mrkey_mr_rereg() are -EINVAL there. Each region costs one allocation
	 * of about 200 bytes (record, cold part, deferred free), plus 16 to 32
	 * bytes of index; a region's memory is freed a grace period after it
	 * drained.
	 */
	MRKEY_INDEX_REQUESTED = 1,
};

/**
 * Table flag: allow the reference-free checks mrkey_lkey_check() and
 * mrkey_rkey_check(). Deregistration in such a table waits for an RCU grace
 * period after unpublishing, so that no reference-free user can still be
 * touching the memory when it returns 0.
 */
#define MRKEY_TABLE_NOREF 1u

/**
 * @brief Memory allocator callbacks, for a table and everything in it.
 *
 * The default is libc's `aligned_alloc()`/`free()`: the process's own
 * malloc, jemalloc's when the program links or preloads jemalloc. A build
 * with `MRKEY_WITH_JEMALLOC` (off by default) links jemalloc and uses
 * `mallocx`/`dallocx` instead; such a libmrkey cannot be loaded by
 * dlopen() (Debian's jemalloc needs static TLS). Set these callbacks to
 * give one table another allocator, jemalloc's included, with no link-time
 * dependency in mrkey. Both members must be set, or the struct pointer
 * left NULL.
 */
struct mrkey_allocator {
	/**
	 * Return @p size bytes aligned to @p align (a power of two, at most
	 * 64), or NULL. Called from registration and creation paths, under
	 * the table's writer lock or with no lock; never from validation.
	 */
	void *(*alloc)(void *ctx, size_t size, size_t align);
	/**
	 * Release memory from alloc(); @p size is the size it was asked for.
	 * May run on the thread that drops a region's last reference, or on
	 * the RCU callback thread.
	 */
	void (*free)(void *ctx, void *ptr, size_t size);
	void *ctx; /**< passed to both */
};

/**
 * @brief Reports a reference-count misuse (an underflow, a get on a freed
 *        region). The region is left saturated (never freed) after it.
 *
 * The default prints to stderr and, in debug builds of mrkey (NDEBUG not
 * defined), calls abort().
 */
typedef void (*mrkey_report_fn)(void *ctx, struct mrkey_mr *mr,
				const char *what);

/**
 * @brief Table attributes. A zeroed struct (or NULL) means all defaults.
 */
struct mrkey_table_attr {
	/**
	 * log2 of the slot count; 0 = 16 (qib's default). Each slot is a
	 * 64-byte record (the region lives in it), so the slot array takes
	 * 64 << table_bits bytes of address space: 4 MiB by default, on
	 * transparent huge pages. With the default allocator it is an
	 * anonymous mapping whose pages are touched only as slots are used.
	 */
	unsigned int table_bits;
	/** MRKEY_KEYGEN_RANDOM (default) or MRKEY_KEYGEN_SEQUENTIAL. */
	enum mrkey_keygen keygen;
	/** MRKEY_LAYOUT_QIB (default) or MRKEY_LAYOUT_INDEX8. */
	enum mrkey_key_layout layout;
	/** MRKEY_REFCOUNT_ATOMIC (default) or MRKEY_REFCOUNT_PERCPU. */
	enum mrkey_refcount_mode refcount;
	/** MRKEY_TABLE_* flags; 0 = none. */
	unsigned int flags;
	/** Backend to bind; NULL = none (a software-only table). */
	const struct mrkey_backend_ops *backend;
	/** The backend's limits; NULL = no limits beyond mrkey's. */
	const struct mrkey_backend_params *backend_params;
	/** Passed to every backend op. */
	void *backend_ctx;
	/** Allocator; NULL = the default. */
	const struct mrkey_allocator *allocator;
	/** Misuse reporter; NULL = the default (stderr, abort in debug). */
	mrkey_report_fn report;
	/** Passed to @ref report. */
	void *report_ctx;
	/**
	 * Seed for MRKEY_KEYGEN_RANDOM; 0 = draw one from the kernel
	 * (getrandom). A fixed seed makes random keys reproducible in tests.
	 */
	uint64_t seed;
	/**
	 * Room to grow (rdma-core's `comp_mask`): each bit will say that a
	 * field added after this one is set. 0 = nothing extra, the only
	 * value this version knows; mrkey_table_create() rejects any other
	 * bit with -EINVAL, so a program built against a newer header fails
	 * cleanly on an older library instead of having its fields ignored.
	 */
	uint64_t comp_mask;
	/**
	 * MRKEY_INDEX_SLOT (default) or MRKEY_INDEX_REQUESTED (since 0.3; a
	 * program built against 0.1 or 0.2 headers gets MRKEY_INDEX_SLOT).
	 */
	enum mrkey_index index;
};

/**
 * @brief Create a key table.
 * @param[in] attr attributes, or NULL for all defaults
 * @param[out] tablep the new table
 * @return 0, or -EINVAL (NULL @p tablep, `table_bits` outside 1..23 for
 *         the qib layout or 1..24 for the index8 layout or outside the
 *         backend's limits, an unknown index kind, a requested-key table
 *         with a nonzero `table_bits`, `keygen` or `layout`, an unknown
 *         keygen/layout/refcount mode or flag, an
 *         allocator with a NULL member, a backend ops table missing a
 *         REQUIRED member, a `comp_mask` bit this version does not know),
 *         -ENOMEM, or the error of the backend's `bind`.
 *
 * Context: any thread; takes no lock of mrkey's.
 */
MRKEY_EXTERN int mrkey_table_create(const struct mrkey_table_attr *attr,
				    struct mrkey_table **tablep);

/**
 * @brief Destroy a table.
 * @param[in] table the table
 * @return 0, -EINVAL (NULL), or -EBUSY (a region, registered or not yet
 *         freed after an -EBUSY deregistration, or a PD still exists; the
 *         table is kept).
 *
 * Waits for the deferred reclamation of every region freed so far, and
 * for async deregistrations still waiting for a grace period (PERCPU and
 * NOREF tables) before it calls the table busy.
 *
 * Context: any thread not inside an RCU read-side section or an mrkey
 * callback; no other thread may use the table during or after the call.
 */
MRKEY_EXTERN int mrkey_table_destroy(struct mrkey_table *table);

/**
 * @brief Number of slots of the table (2^table_bits).
 * @param[in] table the table
 * @return the slot count, or 0 for NULL or a requested-key table (which
 *         has no slots).
 *
 * Context: any thread.
 */
MRKEY_EXTERN uint32_t mrkey_table_size(const struct mrkey_table *table);

/**
 * @brief The backend context the table was created with.
 * @param[in] table the table
 * @return `attr->backend_ctx`, or NULL.
 *
 * Context: any thread.
 */
MRKEY_EXTERN void *mrkey_table_backend_ctx(const struct mrkey_table *table);

/**
 * @brief Wait until every deregistration queued behind an RCU grace
 *        period so far has finished.
 *
 * Only asynchronous deregistrations in MRKEY_TABLE_NOREF tables, or of a
 * region whose count was split, are queued so (on liburcu's callback
 * thread); every other region is freed by the thread that drains it.
 * Leak checkers and tests that count allocations call this first.
 *
 * Context: any thread not inside an RCU read-side section or an mrkey
 * callback.
 */
MRKEY_EXTERN void mrkey_reclaim_wait(void);

#ifdef __cplusplus
}
#endif

#endif /* MRKEY_TABLE_H */
