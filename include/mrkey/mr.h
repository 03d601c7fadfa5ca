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
	/**
	 * The caller's pointer, returned by mrkey_mr_context() (since 0.3;
	 * a program built against 0.1 or 0.2 headers gets NULL). Set before
	 * the key is published, never changed (mrkey_mr_rereg() keeps it).
	 */
	void *context;
};

/**
 * @brief Register a region and publish its key.
 * @param[in] table the table, a slot table (-EINVAL in a requested-key
 *                  table: use mrkey_mr_reg_key() there)
 * @param[in] attr the region; @p attr->segs is copied, the memory it names
 *                 must stay mapped until the region is freed
 * @param[out] mrp the handle, holding the caller's reference
 * @return 0, or -EINVAL (NULL argument; PD of another table; `nsegs` 0;
 *         a NULL or empty segment; `length` 0 or not the segments' sum;
 *         `addr + length` or `iova + length` overflowing 64 bits; an
 *         unknown access bit (MRKEY_ACCESS_MW_BIND is known: windows may
 *         then bind to the region); a `comp_mask` bit this version does not
 *         know), -ENOMEM (no free slot: the table holds 2^table_bits
 *         regions already, counting deregistered ones whose references
 *         have not all gone yet; or no memory), or the error of the
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
 * @brief Register a region under a key the caller chooses, in a
 *        requested-key table (MRKEY_INDEX_REQUESTED), and publish it.
 * @param[in] table a requested-key table
 * @param[in] attr the region, checked as by mrkey_mr_reg(); @p attr->segs
 *                 is copied, the memory it names must stay mapped until
 *                 the region is freed; @p attr->context is kept
 * @param[in] key any 64-bit value, 0 and `UINT64_MAX` included
 * @param[out] mrp the handle, holding the caller's reference
 * @return 0, or -EINVAL (NULL argument, @p table is a slot table, or
 *         @p attr as mrkey_mr_reg() refuses it), -EEXIST (@p key is
 *         published: libfabric's FI_ENOKEY), -ENOMEM, or the error of the
 *         backend's `key_publish`. On failure nothing changes.
 *
 * A key whose region is being deregistered (unpublished, still holding
 * references) counts as free: the new region gets a record of its own,
 * and the old region's holders keep seeing the old region, never the new
 * memory. The index grows as needed; lookups never wait for it. The
 * backend's `key_publish` and `key_unpublish` get the low 32 bits of the
 * key; mrkey_mr_key() gives all of it.
 *
 * Memory: a drained one-segment region's record is reused, not freed: it
 * waits with up to 31 others for one RCU grace period (lookups may still
 * be reading it), then up to 256 such records stay with the table for
 * the next registrations. mrkey_table_destroy() frees them all.
 *
 * Context: any thread; takes the table's writer lock, calls the backend's
 * `key_publish` under it; may allocate under it (a bigger index).
 */
MRKEY_EXTERN int mrkey_mr_reg_key(struct mrkey_table *table,
				  const struct mrkey_mr_attr *attr,
				  uint64_t key, struct mrkey_mr **mrp);

/**
 * @brief The region's key, 64 bits wide.
 * @param[in] mr a region the caller holds a reference on
 * @return the key it was registered under in a requested-key table; in a
 *         slot table its current 32-bit key (mrkey_mr_lkey()).
 *
 * Context: any thread.
 */
MRKEY_EXTERN uint64_t mrkey_mr_key(const struct mrkey_mr *mr);

/**
 * @brief The caller's pointer given at registration.
 * @param[in] mr a region the caller holds a reference on
 * @return `attr->context` of mrkey_mr_reg() or mrkey_mr_reg_key(), NULL
 *         for regions registered without one (DMA, fast registration).
 *
 * Context: any thread.
 */
MRKEY_EXTERN void *mrkey_mr_context(const struct mrkey_mr *mr);

/**
 * @brief Find a published region by its key alone and take a reference
 *        (libfabric's `ofi_mr_map_get`).
 * @param[in] table the table, of either kind
 * @param[in] key the key; in a slot table 0 gives the DMA region and a
 *                key above `UINT32_MAX` never resolves
 * @param[out] mrp the region, with one reference the caller drops with
 *                 mrkey_mr_put()
 * @return 0, -EINVAL (NULL argument) or -ENOENT (no region is published
 *         under @p key).
 *
 * No PD, range or access check: a caller exposing the memory to a peer
 * validates with mrkey_key_ok() instead.
 *
 * Context: any thread, at any time; lock-free.
 */
MRKEY_EXTERN int mrkey_key_lookup(struct mrkey_table *table, uint64_t key,
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
 *         published), -ENOMEM (no memory, or four deregistered DMA regions
 *         are still draining), or the backend's `key_publish` error.
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
 *         which only waits again; or memory windows are bound to it: then
 *         nothing changed and the key still resolves, as ibv_dereg_mr's
 *         EBUSY), -EINVAL (NULL), or -EALREADY (another deregistration of
 *         @p mr is in progress).
 *
 * The key is unpublished first, in one critical section: from then on no
 * lookup of it succeeds. The region's slot (which carries its count) stays
 * taken until the last reference goes; only then can a new key use it.
 * While it
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
 * @return 0, -EINVAL (NULL @p mr or @p done), -EBUSY (memory windows are
 *         bound to it: nothing changed), or -EALREADY (another
 *         deregistration of @p mr is in progress).
 *
 * Unpublishes and drops the table's and the caller's references like
 * mrkey_mr_dereg(). Also accepts a region left by an -EBUSY
 * mrkey_mr_dereg(). In MRKEY_TABLE_NOREF tables, and for a region whose
 * count was split (MRKEY_REFCOUNT_PERCPU under contention), a published
 * region first needs an RCU grace period: the references are dropped, and
 * @p done may run, on liburcu's callback thread after it, never inside
 * this call. Otherwise @p done may run inside this call, never under the
 * table's writer lock.
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

/* ---- the verbs key lifecycle: fast registration, invalidation ------- */

/**
 * @brief Attributes of one fast registration (IB_WR_REG_MR).
 *
 * Checked as mrkey_mr_reg() checks a struct mrkey_mr_attr, plus
 * `nsegs <= max_segs` of the region and `comp_mask == 0`.
 */
struct mrkey_fr_attr {
	uint64_t addr;                /**< start as local SGEs name it */
	uint64_t iova;                /**< start as remote requests name it */
	uint64_t length;              /**< bytes; the sum of the segments */
	unsigned int access;          /**< MRKEY_ACCESS_* bits */
	const struct mrkey_seg *segs; /**< the page list, in order */
	size_t nsegs;                 /**< 1 .. max_segs */
	uint8_t key_byte;             /**< low byte of the new key */
	uint64_t comp_mask;           /**< 0; any bit is -EINVAL */
};

/**
 * @brief Allocate a fast-registration region (ib_alloc_mr).
 * @param[in] table the table
 * @param[in] pd the region's PD, of @p table
 * @param[in] max_segs the most segments one fast registration may give,
 *                     >= 1 (and within the backend's `max_segs`)
 * @param[out] mrp the handle, holding the caller's reference
 * @return 0, -EINVAL (NULL argument, PD of another table, @p max_segs 0 or
 *         above the backend's limit), or -ENOMEM (no free slot, or no
 *         memory). On failure nothing changes.
 *
 * The region's slot is taken at once and counts against the table's
 * 2^table_bits like a registered region; the table holds a reference for
 * the region's whole life, so an idle one has a count of 2. It starts
 * **invalid**: no key resolves to it and mrkey_mr_published() is 0 until
 * mrkey_mr_fast_reg(). mrkey_mr_lkey() gives its current key, whose low
 * byte the consumer replaces at each fast registration (every other bit
 * is the table's, drawn like a registered region's key; in the
 * MRKEY_LAYOUT_INDEX8 layout such a region never takes slot 0, whose keys
 * would reach 0). mrkey_mr_dereg() and mrkey_mr_dereg_async() free it,
 * valid or not.
 *
 * Context: any thread; takes the table's writer lock.
 */
MRKEY_EXTERN int mrkey_mr_alloc(struct mrkey_table *table, struct mrkey_pd *pd,
				size_t max_segs, struct mrkey_mr **mrp);

/**
 * @brief Make a fast-registration region valid with a new translation,
 *        access and key byte (IB_WR_REG_MR).
 * @param[in] mr a region from mrkey_mr_alloc(), invalid
 * @param[in] attr the translation, access and key byte; @p attr->segs is
 *                 copied, the memory it names must stay mapped until the
 *                 next fast registration or the region is freed
 * @param[in] timeout_ms how long to wait for references taken under the
 *                       previous registration; 0 = do not wait
 * @param[out] keyp the new key, `(current key & ~0xff) | key_byte`
 * @return 0, -EINVAL (NULL argument, a bad @p attr, `nsegs > max_segs`,
 *         or @p mr is not a fast-registration region), or -EBUSY (the
 *         region is valid, another fast registration or a deregistration
 *         of it is in progress, or transient references taken under an
 *         earlier registration are still held after @p timeout_ms), or
 *         the error of the backend's `key_publish` for the new key. On
 *         -EINVAL and -EBUSY nothing changes; after a backend error the
 *         region stays invalid (its translation is the refused one, which
 *         no key resolves to).
 *
 * Stronger than rdmavt, whose re-registration rewrites the page list
 * while references of the previous registration may still be in flight:
 * here no holder ever sees a translation change under it. The wait is
 * mrkey_mr_dereg()'s: woken by the last put, driving the backend's
 * `progress` op meanwhile. In MRKEY_TABLE_NOREF tables, and for a region
 * whose count was split, the call first waits for an RCU grace period.
 *
 * Context: any thread not inside an RCU read-side section and not inside
 * the backend's progress; takes the table's writer lock briefly. Calls on
 * one region serialise with each other (one handle, one operation).
 */
MRKEY_EXTERN int mrkey_mr_fast_reg(struct mrkey_mr *mr,
				   const struct mrkey_fr_attr *attr,
				   unsigned int timeout_ms, uint32_t *keyp);

/**
 * @brief Invalidate a key (IB_WR_LOCAL_INV, or the responder side of
 *        SEND_WITH_INV).
 * @param[in] table the table
 * @param[in] pd the PD the invalidation comes from
 * @param[in] key the key; every bit must match
 * @return 0, -EINVAL (NULL argument, or @p key names a published region
 *         from mrkey_mr_reg() or mrkey_mr_reg_dma(): those are
 *         deregistered or re-registered, not invalidated), -ENOENT (no
 *         valid fast-registration region, and no bound type 2 window, has
 *         this key), -EPERM (the region or window is of another PD),
 *         -EINVAL also for the key of a bound type 1 window (rebound or
 *         unbound by mrkey_mw_bind()), or -EBUSY (memory windows are bound
 *         to the region, as rxe refuses it; nothing changes).
 *
 * A type 2 window's key unbinds the window (mrkey/mw.h): its reference
 * on the region is dropped before the call returns.
 *
 * From return, no lookup of @p key succeeds and the region is invalid,
 * ready for its next mrkey_mr_fast_reg(); references already held stay
 * valid until put (ordering against in-flight work is the QP's job, as on
 * hardware). Never waits: it is called from a QP's work-request path.
 *
 * Context: any thread, including an mrkey callback; takes the table's
 * writer lock briefly and calls the backend's `key_unpublish` under it.
 */
MRKEY_EXTERN int mrkey_key_invalidate(struct mrkey_table *table,
				      struct mrkey_pd *pd, uint32_t key);

/* ---- re-registration (ibv_rereg_mr) ------------------------------------ */

/** mrkey_mr_rereg(): new addr, iova, length and segments. */
#define MRKEY_REREG_TRANSLATION 1u
/** mrkey_mr_rereg(): a new PD. */
#define MRKEY_REREG_PD 2u
/** mrkey_mr_rereg(): new access bits. */
#define MRKEY_REREG_ACCESS 4u

/**
 * @brief Re-register a region under a new key (ibv_rereg_mr).
 * @param[in] mr a region from mrkey_mr_reg(), published or left
 *               unpublished by an -EBUSY re-registration or deregistration
 * @param[in] flags MRKEY_REREG_* bits: which fields of @p attr to read
 * @param[in] attr the new values; fields not named in @p flags are ignored
 * @param[in] timeout_ms how long to wait for transient references taken
 *                       under the old registration; 0 = do not wait
 * @return 0 (mrkey_mr_lkey() gives the new key), -EINVAL (NULL, @p flags
 *         0 or with an unknown bit, a nonzero `attr->comp_mask` (read
 *         whatever @p flags says), a bad named field as mrkey_mr_reg()
 *         checks it, a fast-registration or DMA region; nothing changes
 *         and the old key still resolves), -ENOMEM (no memory for the new
 *         segment map; nothing changed), -EALREADY (a deregistration or
 *         re-registration of @p mr is in progress), -EBUSY (memory
 *         windows are bound to it: nothing changes; or still
 *         referenced after @p timeout_ms: the region stays unpublished
 *         with its old attributes; call this again, which waits again, or
 *         deregister it), or the error of the backend's `key_publish` for
 *         the new key (the region stays unpublished with its old
 *         attributes, as after -EBUSY).
 *
 * Once the arguments are checked the old key stops resolving; the call
 * waits as mrkey_mr_dereg() does for the references taken under it, then
 * publishes the new attributes under a new key of the same slot (never
 * the old key, so a stale key never reaches the new memory). After a PD
 * change the region counts in the new PD, no longer in the old one.
 *
 * Context: as mrkey_mr_dereg().
 */
MRKEY_EXTERN int mrkey_mr_rereg(struct mrkey_mr *mr, unsigned int flags,
				const struct mrkey_mr_attr *attr,
				unsigned int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* MRKEY_MR_H */
