// SPDX-License-Identifier: MIT
/*
 * The verbs key lifecycle: fast-registration regions (ib_alloc_mr,
 * IB_WR_REG_MR), invalidation (IB_WR_LOCAL_INV, SEND_WITH_INV) and
 * re-registration (ibv_rereg_mr).
 *
 * Region states, as design.md names them:
 *
 *   invalid  - registered, PUB clear: no key resolves to it. A fresh
 *              mrkey_mr_alloc() region, or one after mrkey_key_invalidate().
 *   valid    - PUB set under its current key, like a registered region.
 *   draining - WAITING: a fast registration, re-registration or
 *              deregistration dropped the caller's (and the table's)
 *              references and waits for the transient ones to go.
 *
 * A new translation is written only into a record that is unpublished and
 * holds no transient reference, so no holder ever sees it change under
 * it. The wait is deregistration's own (mrkey__drain()): the caller drops
 * its references with the region WAITING, the last transient put wakes
 * it, and on success the references come back with the new translation.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

int mrkey_mr_alloc(struct mrkey_table *table, struct mrkey_pd *pd,
		   size_t max_segs, struct mrkey_mr **mrp)
{
	struct mrkey__key_pick pick;
	struct mrkey__mrx *x;
	struct mrkey_mr *mr;
	int err;

	if (!table || !pd || !mrp || pd->table != table || !max_segs ||
	    max_segs > UINT32_MAX || mrkey__requested(table))
		return -EINVAL;
	if (table->params.max_segs && max_segs > table->params.max_segs)
		return -EINVAL;
	x = mrkey__mrx_new(table, max_segs);
	if (!x)
		return -ENOMEM;
	x->nsegs = 0;

	pthread_mutex_lock(&table->lock);
	err = mrkey__key_pick(table, &pick, true);
	if (err) {
		pthread_mutex_unlock(&table->lock);
		mrkey__free(table, x, mrkey__mrx_size(x->cap));
		return err;
	}
	x->slot = pick.slot;
	mr = &table->slots[pick.slot];
	mrkey__rec_set(mr->addr, 0);
	mrkey__rec_set(mr->iova, 0);
	mrkey__rec_set(mr->length, 0);
	mrkey__rec_set(mr->access, 0);
	mr->kind = MRKEY__KIND_ONE;
	mrkey__rec_set(mr->vbase, NULL);
	mrkey__rec_set(mr->rflags, MRKEY__REC_FR);
	mrkey__key_commit(table, &pick);
	/* Invalid: the key is the region's, but resolves to nothing yet. */
	mrkey__publish_locked(table, mr, x, pd, pick.key, false);
	pthread_mutex_unlock(&table->lock);
	*mrp = mr;
	return 0;
}

static int mrkey__check_fr_attr(const struct mrkey_mr *mr,
				const struct mrkey_fr_attr *a,
				struct mrkey__xlate *xl)
{
	if (a->comp_mask || !a->nsegs || a->nsegs > mr->x->cap)
		return -EINVAL;
	xl->addr = a->addr;
	xl->iova = a->iova;
	xl->length = a->length;
	xl->access = a->access;
	xl->segs = a->segs;
	xl->nsegs = a->nsegs;
	if (mrkey__likely(a->nsegs == 1)) {
		/*
		 * The common page list of one segment, checked inline: what
		 * mrkey__check_xlate() checks, without its loop.
		 */
		const struct mrkey_table *t = mr->x->table;
		const struct mrkey_seg *sg = a->segs;

		if (!sg || !sg->addr || !a->length || sg->length != a->length ||
		    (a->access & ~MRKEY__MR_ACCESS) ||
		    a->addr > UINT64_MAX - a->length ||
		    a->iova > UINT64_MAX - a->length ||
		    (t->params.max_mr_size &&
		     a->length > t->params.max_mr_size))
			return -EINVAL;
		return 0;
	}
	return mrkey__check_xlate(mr->x->table, xl);
}

/*
 * Give @mr its new translation and key, and make it valid; under the
 * writer lock, with the region unpublished and no transient reference.
 */
static int mrkey__fr_apply_locked(struct mrkey_table *t, struct mrkey_mr *mr,
				  const struct mrkey__xlate *xl,
				  uint8_t key_byte, uint32_t *keyp)
{
	uint64_t kc = atomic_load_explicit(&mr->kc, memory_order_relaxed);
	uint32_t key = (MRKEY__KC_KEY(kc) & ~0xffu) | key_byte;
	int err;

	mrkey__set_xlate(mr, xl);
	mrkey__set_segs(mr->x, xl);
	if (t->ops) {
		/* The backend gets the new translation in place. */
		err = t->ops->key_publish(t->bctx, mr, key);
		if (err)
			return err;
	}
	/* Release: whoever takes a reference under the key sees the rest. */
	while (!atomic_compare_exchange_weak_explicit(
		&mr->kc, &kc,
		((uint64_t)key << 32) | MRKEY__KC_PUB | (kc & MRKEY__KC_CNT),
		memory_order_release, memory_order_relaxed))
		;
	*keyp = key;
	return 0;
}

/*
 * Without a backend (whose ops run under the writer lock), an idle
 * region is re-registered with no lock at all: the caller owns the handle
 * (one operation per handle at a time), the region is invalid so no
 * lookup can start on it, and a count of 2 (the handle and the table)
 * means no holder is left to read the record, and none can appear: a
 * lookup needs PUB, a get needs a reference to get from. So the new word
 * is published with a plain release store, not a locked instruction.
 * Returns 1 when this does not apply.
 */
static int mrkey__fr_unlocked(struct mrkey_table *t, struct mrkey_mr *mr,
			      const struct mrkey__xlate *xl, uint8_t key_byte,
			      uint32_t *keyp)
{
	uint64_t kc = atomic_load_explicit(&mr->kc, memory_order_acquire);
	uint32_t key = (MRKEY__KC_KEY(kc) & ~0xffu) | key_byte;

	/* (A split count leaves its row set: that needs the grace period.) */
	if (t->ops || (t->flags & MRKEY_TABLE_NOREF) ||
	    (kc & (MRKEY__KC_PUB | MRKEY__KC_SPLIT | MRKEY__KC_CNT)) != 2 ||
	    atomic_load_explicit(&mr->pcpu, memory_order_relaxed) ||
	    atomic_load_explicit(&mr->x->state, memory_order_relaxed) !=
		    MRKEY__MR_PUBLISHED)
		return 1;
	mrkey__set_xlate(mr, xl);
	mrkey__set_segs(mr->x, xl);
	atomic_store_explicit(&mr->kc,
			      ((uint64_t)key << 32) | MRKEY__KC_PUB | 2u,
			      memory_order_release);
	*keyp = key;
	return 0;
}

int mrkey_mr_fast_reg(struct mrkey_mr *mr, const struct mrkey_fr_attr *attr,
		      unsigned int timeout_ms, uint32_t *keyp)
{
	struct mrkey__xlate xl;
	struct mrkey__mrx *x;
	struct mrkey_table *t;
	uint64_t kc;
	bool gp;
	int err;

	if (!mr || !attr || !keyp || !(mr->rflags & MRKEY__REC_FR))
		return -EINVAL;
	x = mr->x;
	t = x->table;
	err = mrkey__check_fr_attr(mr, attr, &xl);
	if (err)
		return err;
	if (!mrkey__fr_unlocked(t, mr, &xl, attr->key_byte, keyp))
		return 0;

	pthread_mutex_lock(&t->lock);
	/*
	 * Acquire: a count of 2 means the last holder has put; what it read
	 * of the old translation happens before we rewrite it.
	 */
	kc = atomic_load_explicit(&mr->kc, memory_order_acquire);
	if (atomic_load_explicit(&x->state, memory_order_relaxed) !=
		    MRKEY__MR_PUBLISHED ||
	    (kc & MRKEY__KC_PUB)) {
		/* Valid (verbs forbids registering it), or busy. */
		pthread_mutex_unlock(&t->lock);
		return -EBUSY;
	}
	gp = mrkey__needs_gp(mr);
	if (!gp && (kc & MRKEY__KC_CNT) == 2) {
		/* Idle (the handle and the table): the common case. */
		err = mrkey__fr_apply_locked(t, mr, &xl, attr->key_byte, keyp);
		pthread_mutex_unlock(&t->lock);
		return err;
	}
	x->released = 0;
	atomic_store_explicit(&x->state, MRKEY__MR_WAITING,
			      memory_order_relaxed);
	pthread_mutex_unlock(&t->lock);

	if (!mrkey__drop_and_drain(mr, 2, gp, timeout_ms, 2)) {
		/* Nothing changed: invalid, old translation, count restored. */
		atomic_store_explicit(&x->state, MRKEY__MR_PUBLISHED,
				      memory_order_relaxed);
		return -EBUSY;
	}
	pthread_mutex_lock(&t->lock);
	atomic_fetch_add_explicit(&mr->kc, 2, memory_order_relaxed);
	atomic_store_explicit(&x->state, MRKEY__MR_PUBLISHED,
			      memory_order_relaxed);
	err = mrkey__fr_apply_locked(t, mr, &xl, attr->key_byte, keyp);
	pthread_mutex_unlock(&t->lock);
	return err;
}

/*
 * What stops the invalidation of @mr (named by @kc, a reference held):
 * another invalidation won (-ENOENT), or windows are bound (-EBUSY).
 * The window count is read after @kc, and a bind counts its window before
 * the compare-and-swap that takes its reference (both seq_cst, see
 * mrkey_mw_bind()): so a bind either sees the key invalid or is seen
 * here, or its CAS changes the word and fails ours.
 */
static int mrkey__invalidate_blocked(const struct mrkey_mr *mr, uint64_t kc,
				     uint32_t key)
{
	if (!mrkey__kc_names(kc, key))
		return -ENOENT;
	if (atomic_load_explicit(&mr->x->nmw, memory_order_seq_cst))
		return -EBUSY;
	return 0;
}

/*
 * Invalidation without a backend takes no lock: a reference taken as a
 * lookup takes it pins the registration the key names while its kind and
 * PD are checked; then one compare-and-swap clears PUB (and SPLIT) and
 * drops that reference together, if the key is still the published one
 * (while it is, the table's reference keeps the count above ours).
 */
static int mrkey__invalidate_unlocked(struct mrkey_table *t,
				      struct mrkey_pd *pd, struct mrkey_mr *mr,
				      uint32_t key)
{
	uint64_t kc;
	int err = mrkey__get_rec(t, mr, key);

	if (err == MRKEY__GET_MW) {
		pthread_mutex_lock(&t->lock);
		err = mrkey__mw_invalidate_locked(t, pd, mr, key);
		pthread_mutex_unlock(&t->lock);
		return err;
	}
	if (err)
		return err;
	if (!(mr->rflags & MRKEY__REC_FR))
		err = -EINVAL;
	else if (mr->pd != pd)
		err = -EPERM;
	kc = atomic_load_explicit(&mr->kc, memory_order_seq_cst);
	while (!err && !(kc & MRKEY__KC_SPLIT) &&
	       (kc & MRKEY__KC_CNT) < MRKEY__REF_MAX) {
		err = mrkey__invalidate_blocked(mr, kc, key);
		if (err)
			break;
		if (atomic_compare_exchange_weak_explicit(
			    &mr->kc, &kc, (kc & ~MRKEY__KC_PUB) - 1,
			    memory_order_seq_cst, memory_order_seq_cst))
			return 0;
	}
	/* Split or saturated counts, or an error: the long way. */
	while (!err) {
		err = mrkey__invalidate_blocked(mr, kc, key);
		if (err)
			break;
		if (atomic_compare_exchange_weak_explicit(
			    &mr->kc, &kc,
			    kc & ~(MRKEY__KC_PUB | MRKEY__KC_SPLIT),
			    memory_order_seq_cst, memory_order_seq_cst))
			break;
	}
	mrkey__put(mr);
	return err;
}

int mrkey_key_invalidate(struct mrkey_table *table, struct mrkey_pd *pd,
			 uint32_t key)
{
	struct mrkey_mr *mr;
	uint64_t kc;
	int err = 0;

	if (!table || !pd)
		return -EINVAL;
	if (mrkey__requested(table)) /* no fast registration there */
		return -ENOENT;
	mr = mrkey__record(table, key);
	if (!table->ops)
		return mrkey__invalidate_unlocked(table, pd, mr, key);
	pthread_mutex_lock(&table->lock);
	kc = atomic_load_explicit(&mr->kc, memory_order_relaxed);
	if (!mrkey__kc_names(kc, key))
		err = -ENOENT;
	else if (kc & MRKEY__KC_MW)
		err = mrkey__mw_invalidate_locked(table, pd, mr, key);
	else if (!(mr->rflags & MRKEY__REC_FR))
		err = -EINVAL;
	else if (mr->pd != pd)
		err = -EPERM;
	else if (atomic_load_explicit(&mr->x->nmw, memory_order_relaxed))
		err = -EBUSY; /* windows are bound to it */
	if (!err && !(kc & MRKEY__KC_MW)) {
		/*
		 * A split count collapses at the next fast registration or
		 * deregistration (they pay the grace period, not the QP).
		 */
		atomic_fetch_and_explicit(&mr->kc,
					  ~(MRKEY__KC_PUB | MRKEY__KC_SPLIT),
					  memory_order_seq_cst);
		if (table->ops)
			table->ops->key_unpublish(table->bctx, mr, key);
	}
	pthread_mutex_unlock(&table->lock);
	return err;
}

/* What mrkey_mr_rereg() restores if the backend refuses the new key. */
struct mrkey__rereg_undo {
	uint64_t addr;
	uint64_t iova;
	uint64_t length;
	uint8_t *vbase;
	struct mrkey_pd *pd;
	struct mrkey__mrx *x;
	uint32_t nsegs;
	uint8_t seg_shift;
	uint8_t access;
	uint8_t kind;
};

int mrkey_mr_rereg(struct mrkey_mr *mr, unsigned int flags,
		   const struct mrkey_mr_attr *attr, unsigned int timeout_ms)
{
	struct mrkey__rereg_undo undo;
	struct mrkey__xlate xl;
	struct mrkey__mrx *x, *nx = NULL;
	struct mrkey_table *t;
	uint32_t drop = 1, key;
	uint64_t kc;
	bool gp = false;
	int state, err;

	if (!mr || !attr || !flags || attr->comp_mask ||
	    (flags &
	     ~(MRKEY_REREG_TRANSLATION | MRKEY_REREG_PD | MRKEY_REREG_ACCESS)))
		return -EINVAL;
	x = mr->x;
	t = x->table;
	/* A requested key is the caller's: no new key to give it. */
	if ((mr->rflags & (MRKEY__REC_FR | MRKEY__REC_REQ)) ||
	    mr->kind == MRKEY__KIND_DMA)
		return -EINVAL;
	if ((flags & MRKEY_REREG_PD) && (!attr->pd || attr->pd->table != t))
		return -EINVAL;
	if ((flags & MRKEY_REREG_ACCESS) && (attr->access & ~MRKEY__MR_ACCESS))
		return -EINVAL;
	if (flags & MRKEY_REREG_TRANSLATION) {
		xl.addr = attr->addr;
		xl.iova = attr->iova;
		xl.length = attr->length;
		xl.access = 0;
		xl.segs = attr->segs;
		xl.nsegs = attr->nsegs;
		err = mrkey__check_xlate(t, &xl);
		if (err)
			return err;
		/*
		 * A new segment map goes into a new cold part, so that the
		 * old one is intact if the call fails after the drain.
		 */
		if (xl.nsegs > 1) {
			nx = mrkey__mrx_new(t, xl.nsegs);
			if (!nx)
				return -ENOMEM;
			mrkey__set_segs(nx, &xl);
		}
	}

	pthread_mutex_lock(&t->lock);
	state = atomic_load_explicit(&x->state, memory_order_relaxed);
	if (state != MRKEY__MR_PUBLISHED && state != MRKEY__MR_UNPUBLISHED) {
		pthread_mutex_unlock(&t->lock);
		if (nx)
			mrkey__free(t, nx, mrkey__mrx_size(nx->cap));
		return -EALREADY;
	}
	if (atomic_load_explicit(&x->nmw, memory_order_relaxed)) {
		/* Windows are bound to it: nothing changes. */
		pthread_mutex_unlock(&t->lock);
		if (nx)
			mrkey__free(t, nx, mrkey__mrx_size(nx->cap));
		return -EBUSY;
	}
	if (state == MRKEY__MR_PUBLISHED) {
		/* The old key stops resolving here; the table's ref goes. */
		gp = mrkey__needs_gp(mr);
		atomic_fetch_and_explicit(&mr->kc,
					  ~(MRKEY__KC_PUB | MRKEY__KC_SPLIT),
					  memory_order_seq_cst);
		if (t->ops)
			t->ops->key_unpublish(t->bctx, mr, mrkey__mr_key(mr));
		drop = 2;
	}
	x->released = 0;
	atomic_store_explicit(&x->state, MRKEY__MR_WAITING,
			      memory_order_relaxed);
	pthread_mutex_unlock(&t->lock);

	if (!mrkey__drop_and_drain(mr, drop, gp, timeout_ms, 1)) {
		/* As an -EBUSY deregistration leaves it: the caller's ref. */
		atomic_store_explicit(&x->state, MRKEY__MR_UNPUBLISHED,
				      memory_order_relaxed);
		if (nx)
			mrkey__free(t, nx, mrkey__mrx_size(nx->cap));
		return -EBUSY;
	}

	/* Drained: nobody but the caller can reach the region. */
	pthread_mutex_lock(&t->lock);
	undo.addr = mr->addr;
	undo.iova = mr->iova;
	undo.length = mr->length;
	undo.vbase = mr->vbase;
	undo.pd = mr->pd;
	undo.x = x;
	undo.access = mr->access;
	undo.kind = mr->kind;
	undo.nsegs = x->nsegs;
	undo.seg_shift = x->seg_shift;
	if (nx) {
		nx->table = t;
		nx->mr = mr;
		nx->slot = x->slot;
		nx->backend_data = x->backend_data;
		nx->context = x->context;
		atomic_store_explicit(&nx->state, MRKEY__MR_WAITING,
				      memory_order_relaxed);
		mr->x = nx;
	}
	if (flags & MRKEY_REREG_TRANSLATION) {
		xl.access = mr->access;
		mrkey__set_xlate(mr, &xl);
		if (!nx)
			mrkey__set_segs(x, &xl); /* one segment: no map */
	}
	if (flags & MRKEY_REREG_ACCESS)
		mrkey__rec_set(mr->access, (uint8_t)attr->access);
	if (flags & MRKEY_REREG_PD)
		mrkey__rec_set(mr->pd, attr->pd);
	kc = atomic_load_explicit(&mr->kc, memory_order_relaxed);
	key = mrkey__key_redraw(t, x->slot, MRKEY__KC_KEY(kc));
	err = t->ops ? t->ops->key_publish(t->bctx, mr, key) : 0;
	if (err) {
		mrkey__rec_set(mr->addr, undo.addr);
		mrkey__rec_set(mr->iova, undo.iova);
		mrkey__rec_set(mr->length, undo.length);
		mrkey__rec_set(mr->vbase, undo.vbase);
		mrkey__rec_set(mr->pd, undo.pd);
		mrkey__rec_set(mr->access, undo.access);
		mr->kind = undo.kind;
		mr->x = undo.x;
		x->nsegs = undo.nsegs;
		x->seg_shift = undo.seg_shift;
		/* The caller's reference, as after -EBUSY. */
		atomic_store_explicit(&mr->kc, kc + 1, memory_order_relaxed);
		atomic_store_explicit(&x->state, MRKEY__MR_UNPUBLISHED,
				      memory_order_relaxed);
		pthread_mutex_unlock(&t->lock);
		if (nx)
			mrkey__free(t, nx, mrkey__mrx_size(nx->cap));
		return err;
	}
	if (mr->pd != undo.pd) {
		mrkey__count_locked(&undo.pd->nmr, -1);
		mrkey__count_locked(&mr->pd->nmr, 1);
	}
	atomic_store_explicit(&mr->x->state, MRKEY__MR_PUBLISHED,
			      memory_order_relaxed);
	/* The caller's reference and the table's, under the new key. */
	atomic_store_explicit(&mr->kc,
			      ((uint64_t)key << 32) | MRKEY__KC_PUB | 2u,
			      memory_order_release);
	pthread_mutex_unlock(&t->lock);
	if (nx)
		mrkey__free(t, x, mrkey__mrx_size(x->cap));
	return 0;
}
