/* SPDX-License-Identifier: MIT */
/**
 * @file mr.h
 * @brief Memory regions: registration, references, deregistration.
 *
 * The reference protocol (the qib driver's): the handle returned to the
 * registering caller holds 1 reference; the table holds 1 while the key is
 * published; every transient user (a validated SGE, an I/O in a send ring)
 * holds 1. When the count reaches zero during a deregistration the region
 * is freed. Counts saturate instead of wrapping; a put that would take the
 * count to zero while the region is still registered is reported (see
 * ::mrkey_report_fn) and leaves the region saturated, never freed. In
 * MRKEY_REFCOUNT_PERCPU tables such a put lands in a per-CPU shard while
 * the key is published; it is reported when deregistration collapses the
 * shards (that deregistration then returns -EBUSY for good).
 */
#ifndef MRKEY_MR_H
#define MRKEY_MR_H

#include <mrkey/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** One piece of host memory backing a region. */
struct mrkey_seg {
	void *addr;    /**< first byte; not NULL */
	size_t length; /**< bytes; not 0 */
};

/** Region attributes. */
struct mrkey_mr_attr {
	struct mrkey_pd *pd;          /**< PD of the region, same table */
	uint64_t addr;                /**< start as local SGEs name it */
	uint64_t iova;                /**< start as remote requests name it */
	uint64_t length;              /**< bytes; the sum of the segments */
	unsigned int access;          /**< MRKEY_ACCESS_* bits */
	const struct mrkey_seg *segs; /**< backing host memory, in order */
	size_t nsegs;                 /**< >= 1 */
	/**
	 * Room to grow (rdma-core's `comp_mask`): each bit will say that a
	 * field added after this one is set. 0 = nothing extra, the only
	 * value this version knows; mrkey_mr_reg() rejects any other bit
	 * with -EINVAL.
	 */
	uint64_t comp_mask;
};

/**
 * @brief Register a region and publish its key.
 * @param[in] table the table
 * @param[in] attr the region; @p attr->segs is copied, the memory it names
 *                 must stay mapped until the region is freed
 * @param[out] mrp the handle, holding the caller's reference
 * @return 0, or -EINVAL (NULL argument; PD of another table; `nsegs` 0;
 *         a NULL or empty segment; `length` 0 or not the segments' sum;
 *         `addr + length` or `iova + length` overflowing 64 bits; an
 *         unknown access bit; a `comp_mask` bit this version does not
 *         know), -ENOMEM (no free slot: the table holds
 *         2^table_bits regions already; or no memory), or the error of the
 *         backend's `key_publish`. On failure nothing changes.
 *
 * The key is published when this returns 0; `lkey == rkey`, never 0.
 * Segments of equal power-of-two length (the last may be shorter) are
 * translated in O(1); any other layout by binary search.
 *
 * Context: any thread; takes the table's writer lock, calls the backend's
 * `key_publish` under it.
 */
MRKEY_EXTERN int mrkey_mr_reg(struct mrkey_table *table,
			      const struct mrkey_mr_attr *attr,
			      struct mrkey_mr **mrp);

/**
 * @brief Register the DMA region: key 0, host memory addressed directly
 *        (`vaddr = (void *)addr`), usable only through @p pd.
 * @param[in] table the table
 * @param[in] pd a PD allocated with MRKEY_PD_PRIVILEGED
 * @param[in] access MRKEY_ACCESS_* bits
 * @param[out] mrp the handle, holding the caller's reference
 * @return 0, -EINVAL (NULL argument, PD of another table, unknown access
 *         bit), -EPERM (PD not privileged), -EEXIST (a DMA region is
 *         already registered), -ENOMEM, or the backend's `key_publish`
 *         error.
 *
 * The DMA region does not take one of the 2^table_bits slots.
 *
 * Context: any thread; takes the table's writer lock.
 */
MRKEY_EXTERN int mrkey_mr_reg_dma(struct mrkey_table *table,
				  struct mrkey_pd *pd, unsigned int access,
				  struct mrkey_mr **mrp);

/**
 * @brief The region's lkey.
 * @param[in] mr a region the caller holds a reference on
 * @return the key (0 for the DMA region).
 *
 * Context: any thread.
 */
MRKEY_EXTERN uint32_t mrkey_mr_lkey(const struct mrkey_mr *mr);

/**
 * @brief The region's rkey (equal to its lkey).
 * @param[in] mr a region the caller holds a reference on
 * @return the key.
 *
 * Context: any thread.
 */
MRKEY_EXTERN uint32_t mrkey_mr_rkey(const struct mrkey_mr *mr);

/**
 * @brief Take one reference, for a transient holder.
 * @param[in] mr a region the caller already holds a reference on
 *
 * Getting a reference on a region whose count is zero is a misuse: it is
 * reported and does not revive the region.
 *
 * Context: any thread; lock-free.
 */
MRKEY_EXTERN void mrkey_mr_get(struct mrkey_mr *mr);

/**
 * @brief Drop one reference.
 * @param[in] mr the region
 *
 * Dropping the last reference of a region being deregistered frees it:
 * a waiting mrkey_mr_dereg() wakes at once, or the callback of
 * mrkey_mr_dereg_async() runs on this thread. Do not use @p mr after the
 * put unless another reference is held.
 *
 * Context: any thread, inside or outside an RCU read-side section; the
 * last put of an async deregistration runs the user's callback here.
 */
MRKEY_EXTERN void mrkey_mr_put(struct mrkey_mr *mr);

/**
 * @brief Deregister a region, waiting a bounded time for in-flight I/O.
 * @param[in] mr the region; the caller's reference is consumed on 0
 * @param[in] timeout_ms how long to wait for transient references; 0 does
 *                       not wait
 * @return 0 (the region is freed; @p mr is invalid), -EBUSY (transient
 *         references remain after the timeout: the key stays unpublished,
 *         the caller holds its reference again and may call this again,
 *         which only waits again), -EINVAL (NULL), or -EALREADY (another
 *         deregistration of @p mr is in progress).
 *
 * The key is unpublished first, in one critical section: from then on no
 * lookup of it succeeds and its slot may be reused by a new key. While it
 * waits, the call drives the backend's `progress` op (a polled driver has
 * no interrupt to reap its ring); it wakes as soon as the last reference
 * goes, not on a polling tick.
 *
 * Context: any thread not inside an RCU read-side section and not inside
 * the backend's progress; takes the table's writer lock briefly.
 */
MRKEY_EXTERN int mrkey_mr_dereg(struct mrkey_mr *mr, unsigned int timeout_ms);

/** Called once when an async deregistration has drained. */
typedef void (*mrkey_dereg_done_fn)(struct mrkey_mr *mr, void *arg);

/**
 * @brief Deregister without waiting.
 * @param[in] mr the region; the caller's reference is consumed
 * @param[in] done called exactly once, on the thread that drops the last
 *                 reference (possibly inside this call), just before the
 *                 region is freed; @p mr may be read, not used, in it
 * @param[in] arg passed to @p done
 * @return 0, -EINVAL (NULL @p mr or @p done), or -EALREADY (another
 *         deregistration of @p mr is in progress).
 *
 * Unpublishes and drops the table's and the caller's references like
 * mrkey_mr_dereg(). Also accepts a region left by an -EBUSY
 * mrkey_mr_dereg(). In MRKEY_REFCOUNT_PERCPU and MRKEY_TABLE_NOREF tables
 * a published region first needs an RCU grace period: the references are
 * dropped, and @p done may run, on liburcu's callback thread after it,
 * never inside this call.
 *
 * Context: any thread; takes the table's writer lock briefly. @p done must
 * not call mrkey_table_destroy() or mrkey_reclaim_wait().
 */
MRKEY_EXTERN int mrkey_mr_dereg_async(struct mrkey_mr *mr,
				      mrkey_dereg_done_fn done, void *arg);

/**
 * @brief Current reference count, for tests and diagnostics only.
 * @param[in] mr a region the caller holds a reference on
 * @return the count (a snapshot; other threads may change it at once).
 *
 * Context: any thread.
 */
MRKEY_EXTERN uint32_t mrkey_mr_refcount(const struct mrkey_mr *mr);

/**
 * @brief Whether the region's key is still published.
 * @param[in] mr a region the caller holds a reference on
 * @return 1 or 0.
 *
 * Context: any thread.
 */
MRKEY_EXTERN int mrkey_mr_published(const struct mrkey_mr *mr);

/**
 * @brief Backend-private data attached to a region.
 * @param[in] mr a region the caller holds a reference on
 * @return the pointer last set with mrkey_mr_set_backend_data(), or NULL.
 *
 * Each region carries one pointer for the backend (set in its `key_publish`
 * op, for instance); mrkey never reads it.
 *
 * Context: any thread holding a reference on @p mr.
 */
MRKEY_EXTERN void *mrkey_mr_backend_data(const struct mrkey_mr *mr);

/**
 * @brief Set the backend-private pointer (see mrkey_mr_backend_data()).
 * @param[in] mr a region the caller holds a reference on
 * @param[in] data the pointer to keep
 *
 * Context: the backend's `key_publish` op, or any thread that serialises
 * with other writers of the pointer itself.
 */
MRKEY_EXTERN void mrkey_mr_set_backend_data(struct mrkey_mr *mr, void *data);

#ifdef __cplusplus
}
#endif

#endif /* MRKEY_MR_H */
