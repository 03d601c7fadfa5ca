// SPDX-License-Identifier: MIT
/*
 * Memory windows (type 1 and type 2): allocation, binding, invalidation.
 * Validation through a window is in sge.c, beside the region paths.
 *
 * A window is a slot record of kind MRKEY__KIND_MW. Its word is
 *
 *   63..32 key   31 PUB (bound)   30 SPLIT   29 MW   28..0 sequence
 *
 * SPLIT and MW are always set: a region lookup whose key matches goes off
 * its one-CAS path on SPLIT and sees MW there. The sequence grows on
 * every change of the binding, so the word is a seqlock over the fields a
 * bind writes (see struct mrkey_mr): a reader loads the word, reads the
 * fields, takes its reference on the region, and reads the word again; a
 * changed word means that it read a binding in the middle of a change,
 * and it starts over. A writer (under the table's writer lock) first
 * stores the word with PUB clear and the sequence bumped, then the
 * fields, then the new word with a release store.
 *
 * Readers read a window's fields with no reference on the window and no
 * read-side section, so a deallocated window's slot may be taken by a
 * region while a reader is still inside it: every field a reader reads
 * is written with atomic stores by the region paths too
 * (mrkey__rec_set()), and the word, changed, sends the reader away. The
 * sequence of a new window continues the table's (@mw_gen), so that a
 * reader cannot take a new window's word for the one it started with.
 *
 * A bound window holds one reference on its region, counted in the
 * region's atomic count, and counts itself in the region's nmw, which
 * makes deregistration, re-registration and invalidation of the region
 * -EBUSY.
 */
#include <errno.h>
#include <stddef.h>

#include "internal.h"

#define MRKEY__MW_ACCESS                                                       \
	(MRKEY_ACCESS_REMOTE_READ | MRKEY_ACCESS_REMOTE_WRITE |                \
	 MRKEY_ACCESS_REMOTE_ATOMIC | MRKEY_ACCESS_ZERO_BASED)

static inline struct mrkey_mr *mrkey__mw_rec(struct mrkey_mw *mw)
{
	return (struct mrkey_mr *)(void *)mw;
}

static inline const struct mrkey_mr *mrkey__mw_crec(const struct mrkey_mw *mw)
{
	return (const struct mrkey_mr *)(const void *)mw;
}

static inline struct mrkey_mw *mrkey__mw_of(struct mrkey_mr *w)
{
	return (struct mrkey_mw *)(void *)w;
}

/* The next word of a window: @key, bound or not, the sequence bumped. */
static inline uint64_t mrkey__mw_word(uint64_t kc, uint32_t key, bool bound)
{
	return ((uint64_t)key << 32) | (bound ? MRKEY__KC_PUB : 0) |
	       MRKEY__KC_SPLIT | MRKEY__KC_MW | ((kc + 1) & MRKEY__KC_SEQ);
}

int mrkey_mw_alloc(struct mrkey_table *table, struct mrkey_pd *pd,
		   enum mrkey_mw_type type, struct mrkey_mw **mwp)
{
	struct mrkey__key_pick pick;
	struct mrkey__mrx *x;
	struct mrkey_mr *w;
	int err;

	/* Windows are slots: a requested-key table has none. */
	if (!table || !pd || !mwp || pd->table != table ||
	    (type != MRKEY_MW_TYPE_1 && type != MRKEY_MW_TYPE_2) ||
	    mrkey__requested(table))
		return -EINVAL;
	if (table->ops && !table->mw_ops)
		return -EOPNOTSUPP;

	pthread_mutex_lock(&table->lock);
	x = mrkey__mrx_get_locked(table);
	if (!x) {
		pthread_mutex_unlock(&table->lock);
		return -ENOMEM;
	}
	/* A type 2 key keeps nonzero upper bits whatever its key byte. */
	err = mrkey__key_pick(table, &pick, type == MRKEY_MW_TYPE_2);
	if (err) {
		pthread_mutex_unlock(&table->lock);
		mrkey__free(table, x, mrkey__mrx_size(x->cap));
		return err;
	}
	x->slot = pick.slot;
	w = &table->slots[pick.slot];
	__atomic_store_n(&w->addr, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&w->iova, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&w->length, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&w->target, NULL, __ATOMIC_RELAXED);
	__atomic_store_n(&w->qpn, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&w->access, 0, __ATOMIC_RELAXED);
	mrkey__rec_set(w->rflags, type == MRKEY_MW_TYPE_2 ? MRKEY__REC_MW2 : 0);
	w->kind = MRKEY__KIND_MW;
	mrkey__key_commit(table, &pick);
	/* Some thousand binds' worth of sequence per window. */
	table->mw_gen += 1u << 12;
	mrkey__take_locked(table, w, x, pd,
			   mrkey__mw_word(table->mw_gen, pick.key, false));
	pthread_mutex_unlock(&table->lock);
	*mwp = mrkey__mw_of(w);
	return 0;
}

uint32_t mrkey_mw_rkey(const struct mrkey_mw *mw)
{
	return mrkey__mr_key(mrkey__mw_crec(mw));
}

/*
 * Take the binding's reference on @mr for window @w, under the writer
 * lock, and check that @mr may be bound as @a asks. A pinning reference
 * (as a lookup takes) keeps the region's fields still while they are
 * checked. Then the window is counted in the region's nmw and the
 * binding's reference taken with a compare-and-swap that needs PUB, both
 * seq_cst: a lock-free invalidation of the region that read nmw before
 * our count either cleared PUB first (our CAS fails: -ENOENT) or has its
 * own CAS failed by ours (and reads nmw again).
 */
static int mrkey__mw_hold(struct mrkey_table *t, const struct mrkey_mr *w,
			  struct mrkey_mr *mr,
			  const struct mrkey_mw_bind_attr *a)
{
	uint64_t kc = atomic_load_explicit(&mr->kc, memory_order_relaxed);
	uint32_t key = MRKEY__KC_KEY(kc);
	unsigned int racc;
	int err;

	err = mrkey__get(t, mr, key);
	if (err)
		return err;
	racc = mr->access;
	if (mr->pd != w->pd)
		err = -EPERM;
	else if (!(racc & MRKEY_ACCESS_MW_BIND) ||
		 ((a->access &
		   (MRKEY_ACCESS_REMOTE_WRITE | MRKEY_ACCESS_REMOTE_ATOMIC)) &&
		  !(racc & MRKEY_ACCESS_LOCAL_WRITE)))
		err = -EACCES;
	else if (a->addr < mr->iova || a->length > mr->length ||
		 a->addr - mr->iova > mr->length - a->length)
		err = -ERANGE;
	if (err) {
		mrkey__put(mr);
		return err;
	}
	atomic_fetch_add_explicit(&mr->x->nmw, 1, memory_order_seq_cst);
	kc = atomic_load_explicit(&mr->kc, memory_order_seq_cst);
	do {
		if (!mrkey__kc_names(kc, key)) {
			/* Invalidated meanwhile. */
			atomic_fetch_sub_explicit(&mr->x->nmw, 1,
						  memory_order_seq_cst);
			mrkey__put(mr);
			return -ENOENT;
		}
		if ((kc & MRKEY__KC_CNT) >= MRKEY__REF_MAX)
			break; /* saturated: stays so */
	} while (!atomic_compare_exchange_weak_explicit(&mr->kc, &kc, kc + 1,
							memory_order_seq_cst,
							memory_order_seq_cst));
	/* The binding's reference is in; the pin goes. */
	mrkey__put(mr);
	return 0;
}

/* Drop a binding's reference on @mr and uncount the window. */
static void mrkey__mw_release(struct mrkey_mr *mr)
{
	atomic_fetch_sub_explicit(&mr->x->nmw, 1, memory_order_seq_cst);
	/* Never the last: a region with windows bound stays registered. */
	mrkey__put(mr);
}

/*
 * Unpublish window @w (bound, under the writer lock): the key stops
 * resolving in software and in the backend. Returns the region it was
 * bound to; the caller drops the binding's reference.
 */
static struct mrkey_mr *mrkey__mw_unbind_locked(struct mrkey_table *t,
						struct mrkey_mr *w)
{
	uint64_t kc = atomic_load_explicit(&w->kc, memory_order_relaxed);
	uint32_t key = MRKEY__KC_KEY(kc);

	atomic_store_explicit(&w->kc, mrkey__mw_word(kc, key, false),
			      memory_order_relaxed);
	if (t->ops)
		t->ops->mw_unpublish(t->bctx, mrkey__mw_of(w), key);
	/* The target stays set: a reader in the middle never sees NULL. */
	return __atomic_load_n(&w->target, __ATOMIC_RELAXED);
}

int mrkey_mw_bind(struct mrkey_mw *mw, const struct mrkey_mw_bind_attr *attr,
		  uint32_t *rkeyp)
{
	struct mrkey_mr *w, *mr, *old = NULL;
	struct mrkey_table *t;
	uint64_t kc;
	uint32_t key;
	bool type2, bound;
	int err;

	if (!mw || !attr || !rkeyp || (attr->access & ~MRKEY__MW_ACCESS) ||
	    attr->comp_mask)
		return -EINVAL;
	w = mrkey__mw_rec(mw);
	t = mrkey__mr_table(w);
	mr = attr->mr;
	type2 = w->rflags & MRKEY__REC_MW2;
	if (!mr && (attr->length || type2))
		return -EINVAL;
	if (mr && (mr->kind == MRKEY__KIND_DMA || mr->kind == MRKEY__KIND_MW ||
		   !mr->x || mrkey__mr_table(mr) != t))
		return -EINVAL;

	pthread_mutex_lock(&t->lock);
	kc = atomic_load_explicit(&w->kc, memory_order_relaxed);
	bound = kc & MRKEY__KC_PUB;
	if (type2 && bound) {
		err = -EBUSY; /* invalidate it first */
		goto out;
	}
	if (!mr) {
		/* Type 1 unbind. */
		if (bound)
			old = mrkey__mw_unbind_locked(t, w);
		*rkeyp = MRKEY__KC_KEY(kc);
		err = 0;
		goto out;
	}
	err = mrkey__mw_hold(t, w, mr, attr);
	if (err)
		goto out;
	if (type2)
		key = (MRKEY__KC_KEY(kc) & ~0xffu) | attr->key_byte;
	else
		key = mrkey__key_redraw(t, (uint32_t)(w->x->slot),
					MRKEY__KC_KEY(kc));
	if (t->ops) {
		/* The new key first: a refusal leaves the old binding. */
		err = t->ops->mw_publish(t->bctx, mw, key, attr);
		if (err) {
			mrkey__mw_release(mr);
			goto out;
		}
	}
	/* The odd moment for readers: not bound, fields changing. */
	if (bound)
		old = mrkey__mw_unbind_locked(t, w);
	else
		atomic_store_explicit(
			&w->kc, mrkey__mw_word(kc, MRKEY__KC_KEY(kc), false),
			memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	kc = atomic_load_explicit(&w->kc, memory_order_relaxed);
	__atomic_store_n(&w->addr, attr->addr - mr->iova, __ATOMIC_RELAXED);
	__atomic_store_n(&w->iova,
			 (attr->access & MRKEY_ACCESS_ZERO_BASED) ? 0 :
								    attr->addr,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&w->length, attr->length, __ATOMIC_RELAXED);
	__atomic_store_n(&w->target, mr, __ATOMIC_RELAXED);
	__atomic_store_n(&w->qpn, type2 ? attr->qpn : 0, __ATOMIC_RELAXED);
	__atomic_store_n(&w->access, (uint8_t)attr->access, __ATOMIC_RELAXED);
	atomic_store_explicit(&w->kc, mrkey__mw_word(kc, key, true),
			      memory_order_release);
	*rkeyp = key;
out:
	pthread_mutex_unlock(&t->lock);
	if (old)
		mrkey__mw_release(old);
	return err;
}

/*
 * mrkey_key_invalidate() of window @w, whose word named @key when the
 * caller looked; under the writer lock. Only a bound type 2 window is
 * invalidated (IB_WR_LOCAL_INV, SEND_WITH_INV on a window).
 */
int mrkey__mw_invalidate_locked(struct mrkey_table *t, struct mrkey_pd *pd,
				struct mrkey_mr *w, uint32_t key)
{
	uint64_t kc = atomic_load_explicit(&w->kc, memory_order_relaxed);
	struct mrkey_mr *mr;

	if (!mrkey__kc_names(kc, key) || !(kc & MRKEY__KC_MW))
		return -ENOENT; /* unbound or rebound meanwhile */
	if (!(w->rflags & MRKEY__REC_MW2))
		return -EINVAL; /* type 1: unbound by a bind, not invalidated */
	if (w->pd != pd)
		return -EPERM;
	mr = mrkey__mw_unbind_locked(t, w);
	/*
	 * Under the writer lock, but the put is never a region's last, so
	 * it takes no lock (see mrkey__mw_release()).
	 */
	mrkey__mw_release(mr);
	return 0;
}

int mrkey_mw_dealloc(struct mrkey_mw *mw)
{
	struct mrkey_mr *w, *old = NULL;
	struct mrkey_table *t;
	struct mrkey_pd *pd;

	if (!mw)
		return -EINVAL;
	w = mrkey__mw_rec(mw);
	t = mrkey__mr_table(w);
	pd = w->pd;
	pthread_mutex_lock(&t->lock);
	if (atomic_load_explicit(&w->kc, memory_order_relaxed) & MRKEY__KC_PUB)
		old = mrkey__mw_unbind_locked(t, w);
	/* A free slot's pcpu is 0: a region taking it must not look split. */
	atomic_store_explicit(&w->pcpu, 0, memory_order_relaxed);
	mrkey__slot_release_locked(t, w);
	mrkey__count_locked(&pd->nmr, -1);
	mrkey__count_locked(&t->nmr, -1);
	pthread_mutex_unlock(&t->lock);
	if (old)
		mrkey__mw_release(old);
	return 0;
}
