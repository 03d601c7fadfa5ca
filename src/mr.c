// SPDX-License-Identifier: MIT
/*
 * Regions: registration, the reference protocol, deregistration.
 *
 * Deregistration state machine. The moves out of PUBLISHED and
 * UNPUBLISHED happen under the table's writer lock; WAITING ->
 * UNPUBLISHED (the timeout) is done by the waiter that owns the handle;
 * the moves to FREED by whichever thread frees the region (the waiter,
 * the deregistering thread, or the one that drops the last reference of
 * an ASYNC region), with the writer lock taken only to give the slot back:
 *
 *   PUBLISHED --dereg--> WAITING --drained--> FREED
 *       |                   |
 *       |                   +--timeout--> UNPUBLISHED --dereg--> WAITING
 *       +--dereg_async--> ASYNC --last put--> FREED    (also from UNPUBLISHED)
 *
 * The thread whose put takes the count to zero looks at the state: in
 * ASYNC it runs the callback and frees; in WAITING it only flags the
 * region released and wakes the waiter, which frees; in any other state
 * the put was one too many and is reported.
 *
 * The count lives in the region's slot record, so the slot stays taken
 * until the region has drained; a stale key's lookup then fails on the
 * record's key/PUB word, and a new registration only ever gets a slot
 * whose count is zero. Nothing here needs an RCU grace period, except in
 * the two cases where readers may hold the record without a count: split
 * (per-CPU) counts and reference-free (NOREF) tables.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "testhooks.h"

void mrkey__report_table(struct mrkey_table *t, struct mrkey_mr *mr,
			 const char *what)
{
	if (t->report) {
		t->report(t->report_ctx, mr, what);
		return;
	}
	if (mr)
		fprintf(stderr, "mrkey: region %p (key 0x%08x): %s\n",
			(void *)mr, mrkey__mr_key(mr), what);
	else
		fprintf(stderr, "mrkey: table %p: %s\n", (void *)t, what);
#ifndef NDEBUG
	abort();
#endif
}

void mrkey__report(struct mrkey_mr *mr, const char *what)
{
	mrkey__report_table(mrkey__mr_table(mr), mr, what);
}

/* A relaxed increment or decrement of a counter only written under the
 * writer lock (read outside it only as a hint). */
void mrkey__count_locked(_Atomic uint32_t *c, int d)
{
	atomic_store_explicit(
		c, atomic_load_explicit(c, memory_order_relaxed) + (uint32_t)d,
		memory_order_relaxed);
}

/*
 * Under the writer lock: give the slot (or the DMA record) back, free the
 * cold part (a requested-key region's whole record) and uncount the region. Nothing touches the table after the
 * caller drops the lock: a table whose last region goes may be destroyed
 * at once.
 */
static void mrkey__release_locked(struct mrkey_table *t, struct mrkey_mr *mr)
{
	struct mrkey_pd *pd = mr->pd;

	if (mr->rflags & MRKEY__REC_REQ)
		/* Freed after a grace period, cold part and all. */
		mrkey__rrec_release_locked(t, mr);
	else
		mrkey__slot_release_locked(t, mr);
	mrkey__count_locked(&pd->nmr, -1);
	mrkey__count_locked(&t->nmr, -1);
}

/* Give the slot (or DMA record) of @mr back, and its cold part. */
void mrkey__slot_release_locked(struct mrkey_table *t, struct mrkey_mr *mr)
{
	struct mrkey__mrx *x = mr->x;

	if (x->slot > MRKEY__DMA_SLOT - MRKEY__DMA_RECORDS)
		t->dma_used &= ~(1u << (MRKEY__DMA_SLOT - x->slot));
	else
		mrkey__key_release(t, x->slot);
	mr->x = NULL;
	mrkey__rec_set(mr->rflags, 0);
	if (x->cap <= 1 && t->mrx_ncache < MRKEY__MRX_CACHE) {
		x->next = t->mrx_cache;
		t->mrx_cache = x;
		t->mrx_ncache++;
	} else {
		mrkey__free(t, x, mrkey__mrx_size(x->cap));
	}
}

/* The region has drained: release it in the backend, free it. */
static void mrkey__mr_free(struct mrkey_mr *mr)
{
	struct mrkey_table *t = mr->x->table;

	if (t->ops && t->ops->mr_release)
		t->ops->mr_release(t->bctx, mr);
	pthread_mutex_lock(&t->lock);
	mrkey__release_locked(t, mr);
	pthread_mutex_unlock(&t->lock);
}

void mrkey__ref_put_slow(struct mrkey_mr *mr, uint64_t old)
{
	uint32_t cnt = (uint32_t)(old & MRKEY__KC_CNT);
	struct mrkey__mrx *x;
	struct mrkey_table *t;
	int state;

	if (cnt == 0) {
		/*
		 * The subtraction borrowed from the flags and the key: put
		 * back what the word held, saturated, before anyone can
		 * match the borrowed key.
		 */
		uint64_t cur = old - 1;

		while (!atomic_compare_exchange_weak_explicit(
			&mr->kc, &cur,
			(old & ~MRKEY__KC_CNT) | MRKEY__REF_SATURATED,
			memory_order_relaxed, memory_order_relaxed))
			;
		mrkey__report(mr, "reference count underflow");
		return;
	}
	if (cnt != 1) {
		/* From saturation it must stay there. */
		mrkey__ref_saturate(mr);
		return;
	}

	/*
	 * Order everything the other holders did before their puts before
	 * what follows. An acquire load of the counter does it (it reads
	 * from their release sequence) and, unlike a fence, TSan models it.
	 */
	(void)atomic_load_explicit(&mr->kc, memory_order_acquire);
	x = mr->x;
	t = x->table;
	state = atomic_load_explicit(&x->state, memory_order_relaxed);
	switch (state) {
	case MRKEY__MR_WAITING:
		pthread_mutex_lock(&t->wait_lock);
		x->released = 1;
		pthread_cond_broadcast(&t->wait_cv);
		/* The waiter may free @mr once we unlock: touch it no more. */
		pthread_mutex_unlock(&t->wait_lock);
		break;
	case MRKEY__MR_ASYNC:
		x->done(mr, x->done_arg);
		mrkey__mr_free(mr);
		break;
	default:
		/*
		 * Zero while the caller (and maybe the table) should still
		 * hold references: one put too many. Leak rather than free
		 * memory that is still published.
		 */
		mrkey__ref_saturate(mr);
		mrkey__report(mr, "reference count dropped to zero while the "
				  "region is registered (unbalanced put)");
		break;
	}
}

/* A put on a region whose counts may be split (see mrkey__put()). */
void mrkey__put_split(struct mrkey_mr *mr)
{
	mrkey__read_lock();
	if (mrkey__likely(atomic_load_explicit(&mr->kc, memory_order_relaxed) &
			  MRKEY__KC_SPLIT)) {
		mrkey__pc_add(mrkey__mr_table(mr), mr, -1);
		mrkey__read_unlock();
		return;
	}
	mrkey__read_unlock();
	mrkey__ref_put(mr);
}

/*
 * Always on the atomic count, split or not: while split it carries the
 * bias, so a reference counted there and dropped into a shard (or the
 * other way round) still sums right. Gets on a contended region come
 * from lookups, which take their references in the shards.
 */
void mrkey_mr_get(struct mrkey_mr *mr)
{
	uint64_t old =
		atomic_fetch_add_explicit(&mr->kc, 1, memory_order_relaxed);
	uint32_t cnt = (uint32_t)(old & MRKEY__KC_CNT);

	if (mrkey__likely(cnt - 1u < MRKEY__REF_MAX - 1u))
		return;
	mrkey__ref_saturate(mr);
	if (cnt == 0)
		mrkey__report(mr, "reference taken on a freed region");
}

void mrkey_mr_put(struct mrkey_mr *mr)
{
	mrkey__put(mr);
}

uint32_t mrkey_mr_lkey(const struct mrkey_mr *mr)
{
	return mrkey__mr_key(mr);
}

uint32_t mrkey_mr_rkey(const struct mrkey_mr *mr)
{
	return mrkey__mr_key(mr);
}

uint32_t mrkey_mr_refcount(const struct mrkey_mr *mr)
{
	int64_t n;
	uint32_t row;
	uint64_t kc;
	unsigned int s;

	mrkey__read_lock();
	kc = atomic_load_explicit(&mr->kc, memory_order_relaxed);
	n = (int64_t)(kc & MRKEY__KC_CNT);
	/* Split, or unpublished with its shards not yet collapsed. */
	row = atomic_load_explicit(&mr->pcpu, memory_order_relaxed);
	if (row) {
		const struct mrkey_table *t = mrkey__mr_table(mr);

		for (s = 0; s <= t->pc_mask; s++)
			n += atomic_load_explicit(mrkey__pc_counter(t, row - 1,
								    (int)s),
						  memory_order_relaxed);
		n -= MRKEY__PCPU_BIAS;
	}
	mrkey__read_unlock();
	return (uint32_t)n;
}

int mrkey_mr_published(const struct mrkey_mr *mr)
{
	return (atomic_load_explicit(&mr->kc, memory_order_relaxed) &
		MRKEY__KC_PUB) != 0;
}

void *mrkey_mr_backend_data(const struct mrkey_mr *mr)
{
	return mr->x->backend_data;
}

void mrkey_mr_set_backend_data(struct mrkey_mr *mr, void *data)
{
	mr->x->backend_data = data;
}

/*
 * Check what a registration translates: -EINVAL unless the segments are
 * non-empty and sum to the length, neither start overflows with it, the
 * access bits are known, and the backend's limits hold.
 */
int mrkey__check_xlate(const struct mrkey_table *t,
		       const struct mrkey__xlate *a)
{
	uint64_t sum = 0;
	size_t i;

	if (a->access & ~MRKEY__MR_ACCESS)
		return -EINVAL;
	if (!a->length || a->addr > UINT64_MAX - a->length ||
	    a->iova > UINT64_MAX - a->length)
		return -EINVAL;
	if (!a->segs || !a->nsegs || a->nsegs > UINT32_MAX)
		return -EINVAL;
	for (i = 0; i < a->nsegs; i++) {
		if (!a->segs[i].addr || !a->segs[i].length)
			return -EINVAL;
		if (a->segs[i].length > UINT64_MAX - sum)
			return -EINVAL;
		sum += a->segs[i].length;
	}
	if (sum != a->length)
		return -EINVAL;
	if (t->params.max_mr_size && a->length > t->params.max_mr_size)
		return -EINVAL;
	if (t->params.max_segs && a->nsegs > t->params.max_segs)
		return -EINVAL;
	return 0;
}

/*
 * Equal power-of-two segments (the last may be shorter) translate with a
 * shift, as qib's page_shift does; anything else by binary search.
 */
static uint32_t mrkey__seg_shift(const struct mrkey__xlate *a)
{
	size_t len0 = a->segs[0].length, i;

	if (a->nsegs == 1)
		return 63; /* every offset is in segment 0 */
	if (len0 & (len0 - 1))
		return MRKEY__SEG_BSEARCH;
	for (i = 1; i + 1 < a->nsegs; i++)
		if (a->segs[i].length != len0)
			return MRKEY__SEG_BSEARCH;
	if (a->segs[a->nsegs - 1].length > len0)
		return MRKEY__SEG_BSEARCH;
	return (uint32_t)__builtin_ctzll(len0);
}

/* The segment map of @x for @a (x->cap >= a->nsegs); see mrkey__set_segs(). */
void mrkey__set_segs_map(struct mrkey__mrx *x, const struct mrkey__xlate *a)
{
	struct mrkey__seg *sg = (struct mrkey__seg *)(x + 1);
	uint64_t off = 0;
	size_t i;

	x->nsegs = (uint32_t)a->nsegs;
	x->seg_shift = (uint8_t)mrkey__seg_shift(a);
	for (i = 0; a->nsegs > 1 && i < a->nsegs; i++) {
		sg[i].vaddr = a->segs[i].addr;
		sg[i].off = off;
		sg[i].len = a->segs[i].length;
		off += a->segs[i].length;
	}
}

void mrkey__mrx_init(struct mrkey_table *t, struct mrkey__mrx *x, size_t cap)
{
	/* Field by field: a memset call costs more than these stores. */
	x->table = t;
	x->mr = NULL;
	atomic_init(&x->state, MRKEY__MR_PUBLISHED);
	x->released = 0;
	x->seg_shift = 0;
	x->nsegs = (uint32_t)cap;
	x->cap = (uint32_t)cap;
	x->slot = 0;
	x->done = NULL;
	x->done_arg = NULL;
	x->backend_data = NULL;
	atomic_init(&x->nmw, 0);
	x->context = NULL;
	x->key = 0;
}

struct mrkey__mrx *mrkey__mrx_new(struct mrkey_table *t, size_t cap)
{
	struct mrkey__mrx *x;

	if (cap > UINT32_MAX ||
	    cap > (SIZE_MAX - sizeof(*x)) / sizeof(struct mrkey__seg))
		return NULL;
	x = mrkey__alloc(t, mrkey__mrx_size(cap));
	if (x)
		mrkey__mrx_init(t, x, cap);
	return x;
}

/*
 * The cold part of a one-segment region, under the writer lock: from the
 * table's cache of freed ones, so that registration churn does not go to
 * the allocator; else allocated with the lock dropped for the call.
 */
struct mrkey__mrx *mrkey__mrx_get_locked(struct mrkey_table *t)
{
	struct mrkey__mrx *x = t->mrx_cache;

	if (mrkey__likely(x)) {
		t->mrx_cache = x->next;
		t->mrx_ncache--;
		mrkey__mrx_init(t, x, 1);
		return x;
	}
	pthread_mutex_unlock(&t->lock);
	x = mrkey__mrx_new(t, 1);
	pthread_mutex_lock(&t->lock);
	return x;
}

void mrkey__mrx_cache_drain(struct mrkey_table *t)
{
	while (t->mrx_cache) {
		struct mrkey__mrx *x = t->mrx_cache;

		t->mrx_cache = x->next;
		mrkey__free(t, x, mrkey__mrx_size(1));
	}
	t->mrx_ncache = 0;
}

/*
 * Take a free record (count 0, not published, no reader can be inside
 * it) for a region, under the writer lock, after the backend accepted the
 * key: publish it when @pub, else leave it invalid (fast registration).
 * Release: a reader whose CAS reads the new word sees the rest.
 */
void mrkey__publish_locked(struct mrkey_table *t, struct mrkey_mr *mr,
			   struct mrkey__mrx *x, struct mrkey_pd *pd,
			   uint32_t key, bool pub)
{
	/* The caller's reference and the table's. */
	mrkey__take_locked(t, mr, x, pd,
			   ((uint64_t)key << 32) | (pub ? MRKEY__KC_PUB : 0) |
				   2u);
}

/*
 * Make free record @mr the one of @x in @pd (a region's or a window's),
 * count it in the PD and the table, and store its first word @kc last.
 */
void mrkey__take_locked(struct mrkey_table *t, struct mrkey_mr *mr,
			struct mrkey__mrx *x, struct mrkey_pd *pd, uint64_t kc)
{
	x->mr = mr;
	mr->x = x;
	mrkey__rec_set(mr->pd, pd);
	atomic_store_explicit(&mr->contended, 0, memory_order_relaxed);
	mrkey__count_locked(&pd->nmr, 1);
	mrkey__count_locked(&t->nmr, 1);
	atomic_store_explicit(&mr->kc, kc, memory_order_release);
}

/* The translation a registration attribute names. */
static void mrkey__xlate_of(struct mrkey__xlate *x,
			    const struct mrkey_mr_attr *a)
{
	x->addr = a->addr;
	x->iova = a->iova;
	x->length = a->length;
	x->access = a->access;
	x->segs = a->segs;
	x->nsegs = a->nsegs;
}

/* The checks every registration of an attribute struct starts with. */
int mrkey__reg_check(struct mrkey_table *t, const struct mrkey_mr_attr *a,
		     struct mrkey__xlate *xl)
{
	if (!a->pd || a->pd->table != t)
		return -EINVAL;
	if (a->comp_mask) /* no extension bit known yet */
		return -EINVAL;
	mrkey__xlate_of(xl, a);
	return mrkey__check_xlate(t, xl);
}

/*
 * mrkey_mr_reg() reads @attr_size bytes of @attr: programs built against
 * 0.1 or 0.2 pass a struct that ends at comp_mask (see the versions
 * below); the rest of @a stays zero.
 */
static int mrkey__mr_reg(struct mrkey_table *table,
			 const struct mrkey_mr_attr *attr, size_t attr_size,
			 struct mrkey_mr **mrp)
{
	struct mrkey__key_pick pick;
	struct mrkey_mr_attr a;
	struct mrkey__xlate xl;
	struct mrkey__mrx *x;
	struct mrkey_mr *mr;
	uint64_t oldkc;
	int err;

	if (!table || !attr || !mrp)
		return -EINVAL;
	if (mrkey__requested(table)) /* keys are the caller's there */
		return -EINVAL;
	memset(&a, 0, sizeof(a));
	memcpy(&a, attr, attr_size);
	err = mrkey__reg_check(table, &a, &xl);
	if (err)
		return err;

	x = NULL;
	if (xl.nsegs > 1) {
		/* Built outside the lock: O(nsegs). */
		x = mrkey__mrx_new(table, xl.nsegs);
		if (!x)
			return -ENOMEM;
		mrkey__set_segs(x, &xl);
	}

	pthread_mutex_lock(&table->lock);
	if (!x) {
		x = mrkey__mrx_get_locked(table);
		if (!x) {
			pthread_mutex_unlock(&table->lock);
			return -ENOMEM;
		}
		mrkey__set_segs(x, &xl);
	}
	err = mrkey__key_pick(table, &pick, false);
	if (err)
		goto fail_unlock;
	x->slot = pick.slot;
	mr = &table->slots[pick.slot];
	mrkey__set_xlate(mr, &xl);
	if (table->ops) {
		/* The backend sees the key and the region, not yet live. */
		oldkc = atomic_load_explicit(&mr->kc, memory_order_relaxed);
		mr->x = x;
		x->mr = mr;
		atomic_store_explicit(&mr->kc, (uint64_t)pick.key << 32,
				      memory_order_relaxed);
		err = table->ops->key_publish(table->bctx, mr, pick.key);
		if (err) {
			mr->x = NULL;
			atomic_store_explicit(&mr->kc, oldkc,
					      memory_order_relaxed);
			mrkey__key_unpick(table, &pick);
			goto fail_unlock;
		}
	}
	mrkey__key_commit(table, &pick);
	x->context = a.context;
	mrkey__publish_locked(table, mr, x, a.pd, pick.key, true);
	pthread_mutex_unlock(&table->lock);
	*mrp = mr;
	return 0;

fail_unlock:
	pthread_mutex_unlock(&table->lock);
	mrkey__free(table, x, mrkey__mrx_size(x->cap));
	return err;
}

/*
 * One version of mrkey_mr_reg() per shape of struct mrkey_mr_attr, as
 * for mrkey_table_create() (src/table.c): @MRKEY_0.1 reads the struct
 * that ended at comp_mask, @@MRKEY_0.3 the one with context.
 */
#define MRKEY__MR_ATTR_SIZE_V01                                                \
	(offsetof(struct mrkey_mr_attr, comp_mask) + sizeof(uint64_t))

#ifdef MRKEY_SYMVER
__attribute__((symver("mrkey_mr_reg@MRKEY_0.1"))) MRKEY_EXTERN int
mrkey__mr_reg_v01(struct mrkey_table *table, const struct mrkey_mr_attr *attr,
		  struct mrkey_mr **mrp);
int mrkey__mr_reg_v01(struct mrkey_table *table,
		      const struct mrkey_mr_attr *attr, struct mrkey_mr **mrp)
{
	return mrkey__mr_reg(table, attr, MRKEY__MR_ATTR_SIZE_V01, mrp);
}

__attribute__((symver("mrkey_mr_reg@@MRKEY_0.3"))) MRKEY_EXTERN int
mrkey__mr_reg_v03(struct mrkey_table *table, const struct mrkey_mr_attr *attr,
		  struct mrkey_mr **mrp);
int mrkey__mr_reg_v03(struct mrkey_table *table,
		      const struct mrkey_mr_attr *attr, struct mrkey_mr **mrp)
{
	return mrkey__mr_reg(table, attr, sizeof(*attr), mrp);
}
#else
/* The static library: every caller was built with this header. */
int mrkey_mr_reg(struct mrkey_table *table, const struct mrkey_mr_attr *attr,
		 struct mrkey_mr **mrp)
{
	return mrkey__mr_reg(table, attr, sizeof(*attr), mrp);
}
#endif

int mrkey_mr_reg_dma(struct mrkey_table *table, struct mrkey_pd *pd,
		     unsigned int access, struct mrkey_mr **mrp)
{
	struct mrkey__mrx *x;
	struct mrkey_mr *mr;
	unsigned int i;
	int err;

	if (!table || !pd || !mrp || pd->table != table ||
	    /* (no window binds to the DMA region: no MW_BIND) */
	    (access & ~MRKEY_ACCESS_ALL) || mrkey__requested(table))
		return -EINVAL;
	if (!(pd->flags & MRKEY_PD_PRIVILEGED))
		return -EPERM;

	x = mrkey__mrx_new(table, 0);
	if (!x)
		return -ENOMEM;
	x->seg_shift = 63;

	pthread_mutex_lock(&table->lock);
	/* One published DMA region at a time. */
	err = -EEXIST;
	mr = atomic_load_explicit(&table->dma_rec, memory_order_relaxed);
	if (atomic_load_explicit(&mr->kc, memory_order_relaxed) & MRKEY__KC_PUB)
		goto fail_unlock;
	/* A free record; the others' regions are still draining. */
	err = -ENOMEM;
	for (i = 0; i < MRKEY__DMA_RECORDS; i++)
		if (!(table->dma_used & (1u << i)))
			break;
	if (i == MRKEY__DMA_RECORDS)
		goto fail_unlock;
	mr = &table->dma[i];
	x->slot = MRKEY__DMA_SLOT - i;
	mr->addr = 0;
	mr->iova = 0;
	mr->length = UINT64_MAX;
	mr->access = (uint8_t)access;
	mr->kind = MRKEY__KIND_DMA;
	mr->vbase = NULL;
	if (table->ops) {
		mr->x = x;
		x->mr = mr;
		err = table->ops->key_publish(table->bctx, mr, 0);
		if (err) {
			mr->x = NULL;
			goto fail_unlock;
		}
	}
	table->dma_used |= 1u << i;
	mrkey__publish_locked(table, mr, x, pd, 0, true);
	atomic_store_explicit(&table->dma_rec, mr, memory_order_release);
	pthread_mutex_unlock(&table->lock);
	*mrp = mr;
	return 0;

fail_unlock:
	pthread_mutex_unlock(&table->lock);
	mrkey__free(table, x, mrkey__mrx_size(0));
	return err;
}

/* ---- split (per-CPU) counts ------------------------------------------- */

/*
 * PERCPU tables start every region in the atomic mode and split its count
 * only once lookups fight over it: after this many failed compare-and-
 * swaps on the record's count. A region that was never contended is
 * deregistered like in an atomic table, without a grace period.
 */
#define MRKEY__SPLIT_AFTER 64u

/* Split @mr's count across the shards; under the writer lock. */
static void mrkey__split_locked(struct mrkey_table *t, struct mrkey_mr *mr)
{
	uint64_t kc = atomic_load_explicit(&mr->kc, memory_order_relaxed);
	uint32_t row;

	if (!t->pc_nfree || !(kc & MRKEY__KC_PUB) || (kc & MRKEY__KC_SPLIT) ||
	    atomic_load_explicit(&mr->pcpu, memory_order_relaxed))
		return;
	row = t->pc_free[--t->pc_nfree];
	atomic_store_explicit(&mr->pcpu, row + 1, memory_order_relaxed);
	/*
	 * Gets and puts race with us on the count; a saturated count is
	 * never split (the bias would reach the flags). Release: whoever
	 * sees SPLIT sees the row.
	 */
	do {
		/* Lock-free invalidation may clear PUB meanwhile: stay out. */
		if (!(kc & MRKEY__KC_PUB) ||
		    (kc & MRKEY__KC_CNT) >= MRKEY__REF_MAX) {
			atomic_store_explicit(&mr->pcpu, 0,
					      memory_order_relaxed);
			t->pc_free[t->pc_nfree++] = row;
			return;
		}
	} while (!atomic_compare_exchange_weak_explicit(
		&mr->kc, &kc, (kc + MRKEY__PCPU_BIAS) | MRKEY__KC_SPLIT,
		memory_order_release, memory_order_relaxed));
}

void mrkey__contended(struct mrkey_table *t, struct mrkey_mr *mr)
{
	uint16_t n;

	if (t->refmode != MRKEY_REFCOUNT_PERCPU)
		return;
	n = atomic_fetch_add_explicit(&mr->contended, 1, memory_order_relaxed);
	if (n + 1u < MRKEY__SPLIT_AFTER)
		return;
	atomic_store_explicit(&mr->contended, 0, memory_order_relaxed);
	/* Never wait for the writer lock on the hot path: try again later. */
	if (pthread_mutex_trylock(&t->lock))
		return;
	mrkey__split_locked(t, mr);
	pthread_mutex_unlock(&t->lock);
}

/*
 * After SPLIT was cleared and a grace period has passed, no get or put
 * touches the shards any more: fold them into the atomic count and give
 * the row back. Shards are 64-bit, so their sum is exact however many
 * references were taken; a total the count cannot hold saturates it.
 */
static void mrkey__pc_collapse(struct mrkey_mr *mr)
{
	struct mrkey_table *t = mrkey__mr_table(mr);
	uint32_t row = atomic_load_explicit(&mr->pcpu, memory_order_relaxed);
	uint64_t kc, cnt;
	int64_t sum = 0, total;
	unsigned int s;
	bool low;

	for (s = 0; s <= t->pc_mask; s++)
		sum += atomic_exchange_explicit(mrkey__pc_counter(t, row - 1,
								  (int)s),
						0, memory_order_relaxed);
	atomic_store_explicit(&mr->pcpu, 0, memory_order_relaxed);
	pthread_mutex_lock(&t->lock);
	t->pc_free[t->pc_nfree++] = row - 1;
	pthread_mutex_unlock(&t->lock);

	kc = atomic_load_explicit(&mr->kc, memory_order_relaxed);
	do {
		cnt = kc & MRKEY__KC_CNT;
		total = (int64_t)cnt - MRKEY__PCPU_BIAS + sum;
		/*
		 * The caller's and the table's references are still in the
		 * count: less means a put too many went to a shard.
		 */
		low = total < 2;
		if (low || cnt >= MRKEY__REF_MAX || total >= MRKEY__REF_MAX)
			total = MRKEY__REF_SATURATED;
	} while (!atomic_compare_exchange_weak_explicit(
		&mr->kc, &kc, (kc & ~MRKEY__KC_CNT) | (uint64_t)total,
		memory_order_acq_rel, memory_order_relaxed));
	if (mrkey__unlikely(low))
		mrkey__report(mr, "reference count dropped below the holders "
				  "of a registered region (unbalanced put, "
				  "seen when the split counts collapsed)");
}

void mrkey__after_gp(struct mrkey_mr *mr)
{
	mrkey__tsan_acquire();
	if (atomic_load_explicit(&mr->pcpu, memory_order_relaxed))
		mrkey__pc_collapse(mr);
}

/* ---- deregistration --------------------------------------------------- */

/*
 * What mrkey__dereg_begin() leaves the caller to do: drop @drop
 * references (after a grace period when @gp), or nothing when @freed.
 */
struct mrkey__dereg {
	uint32_t drop;
	bool gp;
	bool freed;
};

/*
 * Move @mr to @to, unpublishing it if it still was: in the one critical
 * section, clear PUB (from then on no lookup's CAS can succeed) and tell
 * the backend. When no grace period is due and the backend has no
 * mr_release, the references are dropped by the same atomic operation,
 * and a region that was idle is freed at once: one trip through the
 * writer lock for the common deregistration.
 */
static int mrkey__dereg_begin(struct mrkey_mr *mr, int to,
			      mrkey_dereg_done_fn done, void *arg,
			      struct mrkey__dereg *d)
{
	struct mrkey__mrx *x = mr->x;
	struct mrkey_table *t = x->table;
	uint64_t old, was_pub;
	bool inline_drop;
	int state;

	d->drop = 1;
	d->gp = false;
	d->freed = false;
	pthread_mutex_lock(&t->lock);
	state = atomic_load_explicit(&x->state, memory_order_relaxed);
	if (state != MRKEY__MR_PUBLISHED && state != MRKEY__MR_UNPUBLISHED) {
		pthread_mutex_unlock(&t->lock);
		return -EALREADY;
	}
	if (atomic_load_explicit(&x->nmw, memory_order_relaxed)) {
		/* Windows are bound (ibv_dereg_mr's EBUSY): nothing changes. */
		pthread_mutex_unlock(&t->lock);
		return -EBUSY;
	}
	if (state == MRKEY__MR_PUBLISHED) {
		d->gp = mrkey__needs_gp(mr);
		d->drop = 2;
	}
	x->released = 0;
	x->done = done;
	x->done_arg = arg;
	atomic_store_explicit(&x->state, to, memory_order_relaxed);
	/* An invalid fast-registration region is registered, not published. */
	was_pub = atomic_load_explicit(&mr->kc, memory_order_relaxed) &
		  MRKEY__KC_PUB;
	inline_drop = !d->gp && !(t->ops && t->ops->mr_release);
	if (inline_drop) {
		/* SPLIT is clear: a split region needs the grace period. */
		old = atomic_load_explicit(&mr->kc, memory_order_relaxed);
		while (!atomic_compare_exchange_weak_explicit(
			&mr->kc, &old, (old & ~MRKEY__KC_PUB) - d->drop,
			memory_order_acq_rel, memory_order_relaxed))
			;
	} else if (was_pub) {
		atomic_fetch_and_explicit(&mr->kc,
					  ~(MRKEY__KC_PUB | MRKEY__KC_SPLIT),
					  memory_order_seq_cst);
	}
	if (was_pub && t->ops)
		t->ops->key_unpublish(t->bctx, mr, mrkey__mr_key(mr));
	/* The key is free from here, though the region still drains. */
	if (was_pub && (mr->rflags & MRKEY__REC_REQ))
		mrkey__idx_del_locked(t, mr);
	if (!inline_drop) {
		pthread_mutex_unlock(&t->lock);
		return 0;
	}
	if ((old & MRKEY__KC_CNT) != d->drop) {
		d->drop = 0; /* dropped; others still hold it */
		pthread_mutex_unlock(&t->lock);
		return 0;
	}
	d->freed = true;
	if (to == MRKEY__MR_ASYNC) {
		/* @done may call into mrkey: not under the writer lock. */
		pthread_mutex_unlock(&t->lock);
		done(mr, arg);
		mrkey__mr_free(mr);
		return 0;
	}
	mrkey__release_locked(t, mr);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

static void mrkey__deadline(struct timespec *ts, uint64_t us)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(us / 1000000);
	ts->tv_nsec += (long)(us % 1000000) * 1000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static int mrkey__ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec ||
	       (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/*
 * Wait, with t->wait_lock held, until @mr is released or @deadline
 * passes, driving the backend's progress between sleeps.
 */
static void mrkey__dereg_wait(struct mrkey_mr *mr,
			      const struct timespec *deadline)
{
	struct mrkey__mrx *x = mr->x;
	struct mrkey_table *t = x->table;
	int (*progress)(void *) = t->ops ? t->ops->progress : NULL;
	struct timespec now, wake;

	while (!x->released) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!mrkey__ts_before(&now, deadline))
			return;
		wake = *deadline;
		if (progress) {
			pthread_mutex_unlock(&t->wait_lock);
			progress(t->bctx);
			pthread_mutex_lock(&t->wait_lock);
			if (x->released)
				return;
			mrkey__deadline(&now, t->params.progress_interval_us);
			if (mrkey__ts_before(&now, deadline))
				wake = now;
		}
		pthread_cond_timedwait(&t->wait_cv, &t->wait_lock, &wake);
	}
}

/*
 * The seed's wait is usually short (responses draining from a send ring),
 * and waking a sleeping thread costs tens of microseconds (more in a VM):
 * watch the count for a few microseconds before sleeping on the condvar.
 */
#define MRKEY__DEREG_SPIN_NS 20000

static inline void mrkey__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

static void mrkey__dereg_spin(struct mrkey_mr *mr)
{
	struct timespec start, now;
	unsigned int i = 0;

	clock_gettime(CLOCK_MONOTONIC, &start);
	while (atomic_load_explicit(&mr->kc, memory_order_relaxed) &
	       MRKEY__KC_CNT) {
		mrkey__cpu_relax();
		if (++i % 64)
			continue;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * 1000000000L + now.tv_nsec -
			    start.tv_nsec >
		    MRKEY__DEREG_SPIN_NS)
			return;
	}
}

/* Take @n references unless the count already reached zero. */
static bool mrkey__ref_add_not_zero(struct mrkey_mr *mr, uint32_t n)
{
	uint64_t kc = atomic_load_explicit(&mr->kc, memory_order_relaxed);

	do {
		if ((kc & MRKEY__KC_CNT) == 0)
			return false;
		if ((kc & MRKEY__KC_CNT) >= MRKEY__REF_MAX)
			return true;
	} while (!atomic_compare_exchange_weak_explicit(&mr->kc, &kc, kc + n,
							memory_order_acquire,
							memory_order_relaxed));
	return true;
}

/*
 * The bounded wait of deregistration, fast registration and
 * re-registration. @mr is WAITING, and the caller has dropped its own
 * references, so the count reaching zero means every transient holder
 * let go: the putting thread then flags the region released and wakes
 * us. True when drained; false when @deadline passed first, after taking
 * @back references back for the caller (the region stays WAITING).
 */
static bool mrkey__drain(struct mrkey_mr *mr, unsigned int timeout_ms,
			 const struct timespec *deadline, uint32_t back)
{
	struct mrkey__mrx *x = mr->x;
	struct mrkey_table *t = x->table;

	if (timeout_ms)
		mrkey__dereg_spin(mr);
	pthread_mutex_lock(&t->wait_lock);
	if (timeout_ms)
		mrkey__dereg_wait(mr, deadline);
	if (!x->released) {
		if (mrkey__ref_add_not_zero(mr, back)) {
			pthread_mutex_unlock(&t->wait_lock);
			return false;
		}
		/* The last put is on its way to flag it: wait for that. */
		while (!x->released)
			pthread_cond_wait(&t->wait_cv, &t->wait_lock);
	}
	pthread_mutex_unlock(&t->wait_lock);
	return true;
}

/*
 * The wait of deregistration, fast registration and re-registration, in
 * full: @mr was just moved to WAITING. After the grace period @gp asks
 * for, drop the caller's @drop references (0: already dropped) and wait
 * up to @timeout_ms for the transient ones. True when drained: the count
 * is zero, nobody but the caller can reach the region. False after the
 * timeout, with @back references given back to the caller.
 */
bool mrkey__drop_and_drain(struct mrkey_mr *mr, uint32_t drop, bool gp,
			   unsigned int timeout_ms, uint32_t back)
{
	struct timespec deadline;
	uint64_t old;

	mrkey__deadline(&deadline, (uint64_t)timeout_ms * 1000);
	if (gp) {
		urcu_bp_synchronize_rcu();
		mrkey__after_gp(mr);
	}
	if (drop) {
		old = atomic_fetch_sub_explicit(&mr->kc, drop,
						memory_order_acq_rel);
		if ((old & MRKEY__KC_CNT) == drop)
			return true; /* ours were the last references */
	}
	return mrkey__drain(mr, timeout_ms, &deadline, back);
}

int mrkey_mr_dereg(struct mrkey_mr *mr, unsigned int timeout_ms)
{
	struct mrkey__dereg d;
	int err;

	if (!mr)
		return -EINVAL;
	err = mrkey__dereg_begin(mr, MRKEY__MR_WAITING, NULL, NULL, &d);
	if (err)
		return err;
	if (d.freed)
		return 0;
	if (!mrkey__drop_and_drain(mr, d.drop, d.gp, timeout_ms, 1)) {
		/* Timed out: the caller holds its reference again. */
		atomic_store_explicit(&mr->x->state, MRKEY__MR_UNPUBLISHED,
				      memory_order_relaxed);
		return -EBUSY;
	}
	mrkey__mr_free(mr);
	return 0;
}

/* Drop @drop references of an async deregistration; free if drained. */
static void mrkey__async_drop(struct mrkey_mr *mr, uint32_t drop)
{
	uint64_t old =
		atomic_fetch_sub_explicit(&mr->kc, drop, memory_order_acq_rel);

	if ((old & MRKEY__KC_CNT) == drop) {
		mr->x->done(mr, mr->x->done_arg);
		mrkey__mr_free(mr);
	}
}

static void mrkey__async_gp_done(struct rcu_head *head)
{
	struct mrkey__mrx *x = caa_container_of(head, struct mrkey__mrx, rcu);
	struct mrkey_mr *mr;

	/* The hand-off from mrkey__call_rcu(), shown to TSan before any read. */
	mrkey__tsan_acquire();
	mr = x->mr;
	mrkey__after_gp(mr);
	mrkey__async_drop(mr, 2);
}

int mrkey_mr_dereg_async(struct mrkey_mr *mr, mrkey_dereg_done_fn done,
			 void *arg)
{
	struct mrkey__dereg d;
	int err;

	if (!mr || !done)
		return -EINVAL;
	err = mrkey__dereg_begin(mr, MRKEY__MR_ASYNC, done, arg, &d);
	if (err || d.freed || !d.drop)
		return err;
	if (d.gp) {
		/* Finish on the RCU callback thread after a grace period. */
		mrkey__call_rcu(&mr->x->rcu, mrkey__async_gp_done);
		return 0;
	}
	mrkey__async_drop(mr, d.drop);
	return 0;
}

/* ---- test hooks (src/testhooks.h) ------------------------------------- */

bool mrkey__test_split(struct mrkey_mr *mr)
{
	struct mrkey_table *t = mrkey__mr_table(mr);

	if (t->refmode != MRKEY_REFCOUNT_PERCPU)
		return false;
	pthread_mutex_lock(&t->lock);
	mrkey__split_locked(t, mr);
	pthread_mutex_unlock(&t->lock);
	return mrkey__test_is_split(mr);
}

bool mrkey__test_is_split(const struct mrkey_mr *mr)
{
	return atomic_load_explicit(&mr->kc, memory_order_relaxed) &
	       MRKEY__KC_SPLIT;
}

void mrkey__test_shard_add(struct mrkey_mr *mr, int64_t delta)
{
	mrkey__read_lock();
	if (mrkey__test_is_split(mr))
		mrkey__pc_add(mrkey__mr_table(mr), mr, delta);
	mrkey__read_unlock();
}
