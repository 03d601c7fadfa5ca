/* SPDX-License-Identifier: MIT */
/**
 * @file mw.h
 * @brief Memory windows, type 1 and type 2 (ibv_alloc_mw, ibv_bind_mw,
 *        IB_WR_BIND_MW, IB_WR_LOCAL_INV on a window).
 *
 * A window is a second, remote-only key onto a sub-range of a registered
 * region, with its own access rights: a consumer hands it to a peer and
 * revokes it without touching the region. Windows live in the slot
 * table's key space: a window takes a slot (counted against the table's
 * 2^table_bits like a region), and its keys are drawn as region keys are
 * (unpredictable with MRKEY_KEYGEN_RANDOM, never 0).
 *
 * - Type 1 (ibv_bind_mw): every bind, and every rebind, issues a new key;
 *   the previous key stops resolving before mrkey_mw_bind() returns.
 *   `mr == NULL, length == 0` unbinds. mrkey_key_invalidate() refuses a
 *   bound type 1 window's key with -EINVAL.
 * - Type 2 (IB_WR_BIND_MW): bound to one QP number; binds only while not
 *   bound (fresh, or invalidated by mrkey_key_invalidate()), under the key
 *   `(current key & ~0xff) | key_byte`. It validates only through
 *   mrkey_rkey_ok_qp() (and mrkey_rkey_check_qp()) with that QP number.
 *
 * A bound window holds one reference on its region, taken by the bind and
 * dropped before the unbind, invalidation, rebind (to another region) or
 * dealloc returns. While any window is bound to a region, the region
 * cannot go: mrkey_mr_dereg(), mrkey_mr_dereg_async() and mrkey_mr_rereg()
 * return -EBUSY and change nothing (its key stays published, as
 * ibv_dereg_mr's EBUSY), and so does mrkey_key_invalidate() of a
 * fast-registration region with windows bound (rxe refuses it too).
 *
 * Validation through a window key (mrkey_rkey_ok(), mrkey_rkey_ok_qp(),
 * the reference-free mrkey_rkey_check() and mrkey_rkey_check_qp()) checks
 * the window's PD, its bounds (a request's `vaddr` counts from 0 when the
 * window is MRKEY_ACCESS_ZERO_BASED, from the window's `addr` otherwise)
 * and the window's access; on success the reference it takes is on the
 * **region**: `isge->mr` is the region, `isge->vaddr` goes through the
 * region's translation, and the isge is used like any other (SG state,
 * copies, mrkey_isge_put()). Such an isge carries MRKEY_ISGE_WINDOW and
 * is never merged with the next SGE (no merge across a window boundary).
 * mrkey_lkey_ok() never resolves a window key (-ENOENT).
 *
 * With a backend, a table needs the backend's window ops (`mw_publish`,
 * `mw_unpublish` in struct mrkey_backend_ops); without them
 * mrkey_mw_alloc() is -EOPNOTSUPP. Windows exist in slot tables only.
 */
#ifndef MRKEY_MW_H
#define MRKEY_MW_H

#include <mrkey/common.h>
#include <mrkey/sge.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * A region registered with this bit may have windows bound to it
 * (IBV_ACCESS_MW_BIND). It grants nothing to a validation.
 */
#define MRKEY_ACCESS_MW_BIND 16
/**
 * A window bound with this bit counts a request's address from 0, not
 * from the window's start (IBV_ACCESS_ZERO_BASED). Windows only.
 */
#define MRKEY_ACCESS_ZERO_BASED 32

/** The two kinds of memory window (IBV_MW_TYPE_1, IBV_MW_TYPE_2). */
enum mrkey_mw_type {
	MRKEY_MW_TYPE_1 = 1, /**< bound by the consumer, any QP */
	MRKEY_MW_TYPE_2 = 2, /**< bound through a QP, to that QP */
};

/** A memory window (opaque). */
struct mrkey_mw;

/** What mrkey_mw_bind() binds. A zeroed field means "not used". */
struct mrkey_mw_bind_attr {
	/** The region; NULL with @ref length 0 unbinds (type 1 only). */
	struct mrkey_mr *mr;
	/** Start of the window, in the region's iova space. */
	uint64_t addr;
	/** Bytes; may be 0 (a window only zero-length requests pass). */
	uint64_t length;
	/**
	 * MRKEY_ACCESS_REMOTE_READ, _REMOTE_WRITE, _REMOTE_ATOMIC and
	 * MRKEY_ACCESS_ZERO_BASED only; any other bit is -EINVAL.
	 */
	unsigned int access;
	/** Type 2: the low byte of the key, the consumer's; type 1: ignored. */
	uint8_t key_byte;
	/** Type 2: the QP number the window is bound to; type 1: ignored. */
	uint32_t qpn;
	/** Room to grow: 0, the only value this version knows. */
	uint64_t comp_mask;
};

/**
 * @brief Allocate an unbound window (ibv_alloc_mw).
 * @param[in] table a slot table (MRKEY_INDEX_SLOT)
 * @param[in] pd the window's protection domain, of @p table
 * @param[in] type MRKEY_MW_TYPE_1 or MRKEY_MW_TYPE_2
 * @param[out] mwp the window
 * @return 0, -EINVAL (NULL argument, unknown type, a PD of another
 *         table, an MRKEY_INDEX_REQUESTED table), -EOPNOTSUPP (the table's backend has no window ops),
 *         -ENOMEM (the table is full, or no memory).
 *
 * The window takes a slot at once and its key is drawn (mrkey_mw_rkey()
 * gives it), but no key resolves to it until it is bound. It counts in
 * its PD and table: mrkey_pd_free() and mrkey_table_destroy() are -EBUSY
 * while it exists.
 *
 * Context: any thread; takes the table's writer lock.
 */
MRKEY_EXTERN int mrkey_mw_alloc(struct mrkey_table *table, struct mrkey_pd *pd,
				enum mrkey_mw_type type, struct mrkey_mw **mwp);

/**
 * @brief Bind a window to a range of a region, rebind it, or unbind it.
 * @param[in] mw the window
 * @param[in] attr what to bind (see struct mrkey_mw_bind_attr)
 * @param[out] rkeyp the window's key from now on (also after an unbind:
 *         the key that no longer resolves)
 * @return 0, or, in this order of checking:
 *   - -EINVAL: NULL argument; a bit other than the remote ones and
 *     ZERO_BASED in the window's access; nonzero comp_mask; the DMA
 *     region; a region of another table; `mr == NULL` with a length, or on
 *     a type 2 window;
 *   - -EBUSY: a type 2 window that is bound (invalidate it first);
 *   - -ENOENT: the region is not published (deregistered, or an invalid
 *     fast-registration region);
 *   - -EPERM: the region is of another PD;
 *   - -EACCES: the region lacks MRKEY_ACCESS_MW_BIND, or LOCAL_WRITE for
 *     a window with REMOTE_WRITE or REMOTE_ATOMIC;
 *   - -ERANGE: `[addr, addr + length)` is not inside the region's iova
 *     range, or `addr + length` overflows;
 *   - the error of the backend's `mw_publish`.
 *
 * On any error nothing changes: an earlier binding stays bound, under its
 * key. A type 1 bind issues a new key every time; the old key stops
 * resolving before the call returns. The window's access is independent
 * of the region's remote bits (IBTA: a window may grant REMOTE_READ on a
 * region that grants none). A valid fast-registration region qualifies.
 *
 * Context: any thread; takes the table's writer lock. Calls on one window
 * serialise with each other (one handle, one operation).
 */
MRKEY_EXTERN int mrkey_mw_bind(struct mrkey_mw *mw,
			       const struct mrkey_mw_bind_attr *attr,
			       uint32_t *rkeyp);

/**
 * @brief The window's current key (bound or not).
 * @param[in] mw the window
 * @return its key: the one it is bound under, or, unbound, the one it was
 *         last bound under (or drawn at allocation), which resolves to
 *         nothing.
 *
 * Context: any thread; no lock.
 */
MRKEY_EXTERN uint32_t mrkey_mw_rkey(const struct mrkey_mw *mw);

/**
 * @brief Unbind (if bound) and free a window (ibv_dealloc_mw).
 * @param[in] mw the window; invalid once this returns 0
 * @return 0, or -EINVAL for NULL.
 *
 * The window's key stops resolving, its reference on the region is
 * dropped and its slot is free again before the call returns.
 *
 * Context: any thread; takes the table's writer lock.
 */
MRKEY_EXTERN int mrkey_mw_dealloc(struct mrkey_mw *mw);

/**
 * @brief Validate a remote request arriving on a QP: mrkey_rkey_ok(),
 *        which also resolves the type 2 windows bound to that QP.
 * @param[in] table the table
 * @param[in] pd the PD of the QP
 * @param[in] qpn the number of the QP the request arrived on
 * @param[in] rkey the key the peer presented
 * @param[in] vaddr the start the peer named (the window's or region's
 *                  address space)
 * @param[in] len bytes
 * @param[in] access MRKEY_ACCESS_* bits needed
 * @param[out] isge the validated SGE, holding a reference on the region
 * @return as mrkey_rkey_ok(); a type 2 window bound to another QP is
 *         -EPERM.
 *
 * Regions and type 1 windows resolve as through mrkey_rkey_ok(), and a
 * zero-length request succeeds without a lookup.
 *
 * Context: any thread, as mrkey_rkey_ok().
 */
MRKEY_EXTERN int mrkey_rkey_ok_qp(struct mrkey_table *table,
				  struct mrkey_pd *pd, uint32_t qpn,
				  uint32_t rkey, uint64_t vaddr, uint32_t len,
				  unsigned int access, struct mrkey_isge *isge);

/**
 * @brief The reference-free check of a remote request arriving on a QP
 *        (MRKEY_TABLE_NOREF tables): mrkey_rkey_check() that also
 *        resolves the type 2 windows bound to @p qpn.
 * @param[in] table the table
 * @param[in] pd the PD of the QP
 * @param[in] qpn the number of the QP the request arrived on
 * @param[in] rkey the key the peer presented
 * @param[in] vaddr the start the peer named
 * @param[in] len bytes
 * @param[in] access MRKEY_ACCESS_* bits needed
 * @param[out] isge the validated SGE, holding no reference
 * @return as mrkey_rkey_check(); a type 2 window of another QP is -EPERM.
 *
 * Context: inside mrkey_read_lock(), as mrkey_rkey_check().
 */
MRKEY_EXTERN int mrkey_rkey_check_qp(struct mrkey_table *table,
				     struct mrkey_pd *pd, uint32_t qpn,
				     uint32_t rkey, uint64_t vaddr,
				     uint32_t len, unsigned int access,
				     struct mrkey_isge *isge);

#ifdef __cplusplus
}
#endif

#endif /* MRKEY_MW_H */
