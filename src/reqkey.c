// SPDX-License-Identifier: MIT
/*
 * Requested-key tables (MRKEY_INDEX_REQUESTED): the caller names each
 * region with any 64-bit key, as libfabric's providers do.
 *
 * The regions are not in a slot array: each is one allocation (record,
 * cold part, the rcu head of its free; struct mrkey__rrec), found through
 * an open-addressing hash index (struct mrkey__idx in internal.h). The
 * record is the same 64-byte struct mrkey_mr as a slot's, with the same
 * kc word (its key field holds the low half of the key as a tag), so the
 * reference protocol, both refcount modes, reference-free checks and the
 * whole deregistration state machine of mr.c are the slot table's. What
 * differs is only where a key leads and when memory goes:
 *
 * - unpublishing a key (mrkey__dereg_begin()) also turns its index entry
 *   into a tombstone, in the same critical section, so the key is free for
 *   a new registration at once while the old region drains; the old
 *   region's holders keep the old record, which the new registration
 *   never touches;
 * - a drained region is freed one grace period later (lookups may still
 *   be looking at its record through an old entry), and an index array
 *   replaced by a bigger, smaller or cleaner one likewise.
 *
 * Writers serialise on the table's writer lock; the lookup is lock-free
 * (mrkey__idx_find() and mrkey__lookup() in internal.h).
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "internal.h"

/* The smallest array: four cache lines. */
#define MRKEY__IDX_MIN 16u

static void mrkey__idx_free_rcu(struct rcu_head *head)
{
	struct mrkey__idx *ix = caa_container_of(head, struct mrkey__idx, rcu);

	mrkey__tsan_acquire();
	mrkey__free(ix->table, ix, ix->bytes);
	/* For mrkey_reclaim_wait(): the table may go once we are done. */
	mrkey__tsan_release();
}

/* A zeroed array of @n entries (a power of two), or NULL. */
static struct mrkey__idx *mrkey__idx_new(struct mrkey_table *t, uint64_t n)
{
	struct mrkey__idx *ix;
	size_t bytes;

	if (n > (SIZE_MAX - sizeof(*ix)) / sizeof(ix->ents[0]))
		return NULL;
	bytes = sizeof(*ix) + (size_t)n * sizeof(ix->ents[0]);
	ix = mrkey__alloc(t, bytes);
	if (!ix)
		return NULL;
	memset(ix, 0, bytes);
	mrkey__huge_pages(ix, bytes); /* as the slot array */
	/* A fresh seed: keys that collide in one array do not in the next. */
	ix->seed = mrkey__rand64(t);
	ix->mask = n - 1;
	ix->shift = 64u - (unsigned int)__builtin_ctzll(n);
	ix->table = t;
	ix->bytes = bytes;
	return ix;
}

int mrkey__idx_init(struct mrkey_table *t)
{
	struct mrkey__idx *ix = mrkey__idx_new(t, MRKEY__IDX_MIN);

	if (!ix)
		return -ENOMEM;
	atomic_init(&t->idx, ix);
	return 0;
}

/* At table destruction: only the current array is left (no reader). */
void mrkey__idx_free(struct mrkey_table *t)
{
	struct mrkey__idx *ix =
		atomic_load_explicit(&t->idx, memory_order_relaxed);

	if (ix)
		mrkey__free(t, ix, ix->bytes);
	atomic_store_explicit(&t->idx, NULL, memory_order_relaxed);
}

/* Entries for @n live keys: at most half full after a rebuild. */
static uint64_t mrkey__idx_size_for(uint64_t n)
{
	uint64_t size = MRKEY__IDX_MIN;

	while (size < 2 * n)
		size <<= 1;
	return size;
}

/*
 * Under the writer lock: replace the array with one of @n entries holding
 * the same live keys and no tombstone. Readers go on in the old array,
 * which is freed after a grace period; what they find there is as true
 * as what they would find in the new one, since the records decide (an
 * entry of the old array may point at a region unpublished since: its kc
 * word says so). Returns -ENOMEM with nothing changed.
 */
static int mrkey__idx_rebuild_locked(struct mrkey_table *t, uint64_t n)
{
	struct mrkey__idx *old =
		atomic_load_explicit(&t->idx, memory_order_relaxed);
	struct mrkey__idx *ix = mrkey__idx_new(t, n);
	uint64_t i, j;

	if (!ix)
		return -ENOMEM;
	for (i = 0; i <= old->mask; i++) {
		struct mrkey_mr *r = atomic_load_explicit(&old->ents[i].rec,
							  memory_order_relaxed);
		uint64_t key;

		if (!r || r == MRKEY__IDX_TOMB)
			continue;
		key = atomic_load_explicit(&old->ents[i].key,
					   memory_order_relaxed);
		for (j = mrkey__idx_home(ix, key); atomic_load_explicit(
			     &ix->ents[j].rec, memory_order_relaxed);
		     j = (j + 1) & ix->mask)
			;
		atomic_store_explicit(&ix->ents[j].key, key,
				      memory_order_relaxed);
		atomic_store_explicit(&ix->ents[j].rec, r,
				      memory_order_relaxed);
	}
	/* Release: a reader that finds the new array sees its entries. */
	atomic_store_explicit(&t->idx, ix, memory_order_release);
	t->idx_nused = t->idx_nlive;
	mrkey__call_rcu(&old->rcu, mrkey__idx_free_rcu);
	return 0;
}

/*
 * The entry of @key in @ix: the one holding it (published or a
 * tombstone; a key is in at most one entry of an array), else the NULL
 * entry that ends its probe sequence.
 */
static struct mrkey__ient *mrkey__idx_probe(struct mrkey__idx *ix, uint64_t key)
{
	uint64_t i;

	for (i = mrkey__idx_home(ix, key);; i = (i + 1) & ix->mask) {
		struct mrkey__ient *e = &ix->ents[i];

		if (!atomic_load_explicit(&e->rec, memory_order_relaxed) ||
		    atomic_load_explicit(&e->key, memory_order_relaxed) == key)
			return e;
	}
}

/*
 * Under the writer lock: the entry a new registration of @key will take,
 * growing (or cleaning) the array first if taking a NULL entry would fill
 * it past three quarters. NULL with -EEXIST (published) or -ENOMEM in
 * *@errp, nothing changed.
 */
static struct mrkey__ient *mrkey__idx_reserve_locked(struct mrkey_table *t,
						     uint64_t key, int *errp)
{
	struct mrkey__idx *ix =
		atomic_load_explicit(&t->idx, memory_order_relaxed);
	struct mrkey__ient *e = mrkey__idx_probe(ix, key);
	struct mrkey_mr *r =
		atomic_load_explicit(&e->rec, memory_order_relaxed);

	if (r && r != MRKEY__IDX_TOMB) {
		*errp = -EEXIST;
		return NULL;
	}
	if (r) /* the key's own tombstone: reused, nothing else moves */
		return e;
	if ((t->idx_nused + 1) * 4 <= (ix->mask + 1) * 3)
		return e;
	*errp = mrkey__idx_rebuild_locked(
		t, mrkey__idx_size_for(t->idx_nlive + 1));
	if (*errp)
		return NULL;
	ix = atomic_load_explicit(&t->idx, memory_order_relaxed);
	return mrkey__idx_probe(ix, key);
}

void mrkey__idx_del_locked(struct mrkey_table *t, struct mrkey_mr *mr)
{
	struct mrkey__idx *ix =
		atomic_load_explicit(&t->idx, memory_order_relaxed);
	struct mrkey__ient *e = mrkey__idx_probe(ix, mr->x->key);
	uint64_t n = ix->mask + 1;

	if (atomic_load_explicit(&e->rec, memory_order_relaxed) != mr)
		return; /* not published (cannot happen: PUB was set) */
	atomic_store_explicit(&e->rec, MRKEY__IDX_TOMB, memory_order_release);
	t->idx_nlive--;
	/* Shrink once seven eighths are free; failing to is harmless. */
	if (n > MRKEY__IDX_MIN && t->idx_nlive * 8 < n)
		(void)mrkey__idx_rebuild_locked(
			t, mrkey__idx_size_for(t->idx_nlive));
}

static void mrkey__rrec_free_rcu(struct rcu_head *head)
{
	struct mrkey__rrec *rr =
		caa_container_of(head, struct mrkey__rrec, free_rcu);

	mrkey__tsan_acquire();
	mrkey__free(rr->x.table, rr, rr->bytes);
	mrkey__tsan_release(); /* as in mrkey__idx_free_rcu() */
}

/*
 * A batch of drained one-segment records has passed its grace period: no
 * lookup is inside any of them. Keep them for reuse, up to the cache's
 * size; free the rest.
 */
static void mrkey__rrec_batch_rcu(struct rcu_head *head)
{
	struct mrkey__rrec *rr =
		caa_container_of(head, struct mrkey__rrec, free_rcu);
	struct mrkey_table *t;
	struct mrkey__rrec *next;

	mrkey__tsan_acquire();
	t = rr->x.table;
	pthread_mutex_lock(&t->lock);
	for (; rr; rr = next) {
		next = rr->next;
		if (t->rr_ncache < MRKEY__RR_CACHE) {
			rr->next = t->rr_cache;
			t->rr_cache = rr;
			t->rr_ncache++;
		} else {
			mrkey__free(t, rr, rr->bytes);
		}
	}
	pthread_mutex_unlock(&t->lock);
	mrkey__tsan_release();
}

/* Send the pending batch on its grace period; under the writer lock. */
static void mrkey__rrec_flush_locked(struct mrkey_table *t)
{
	struct mrkey__rrec *head = t->rr_pend;

	if (!head)
		return;
	t->rr_pend = NULL;
	t->rr_npend = 0;
	mrkey__call_rcu(&head->free_rcu, mrkey__rrec_batch_rcu);
}

/*
 * Before mrkey_reclaim_wait() in mrkey_table_destroy(): the records still
 * waiting for a batch go now.
 */
void mrkey__rrec_flush(struct mrkey_table *t)
{
	pthread_mutex_lock(&t->lock);
	mrkey__rrec_flush_locked(t);
	pthread_mutex_unlock(&t->lock);
}

/* Free the cached records (table destruction; no callback is queued). */
void mrkey__rrec_cache_drain(struct mrkey_table *t)
{
	while (t->rr_cache) {
		struct mrkey__rrec *rr = t->rr_cache;

		t->rr_cache = rr->next;
		mrkey__free(t, rr, rr->bytes);
	}
	t->rr_ncache = 0;
}

/*
 * Under the writer lock, from mrkey__release_locked(): the region has
 * drained and its key is in no index entry of the current array, but a
 * lookup that started before its unpublish may still be reading the
 * record through an old entry. It goes after a grace period: a
 * one-segment record with a batch of others (one call_rcu() for the
 * batch, and the record reused after it), any other alone, freed.
 */
void mrkey__rrec_release_locked(struct mrkey_table *t, struct mrkey_mr *mr)
{
	struct mrkey__rrec *rr = caa_container_of(mr, struct mrkey__rrec, mr);

	if (rr->x.cap > 1) {
		mrkey__call_rcu(&rr->free_rcu, mrkey__rrec_free_rcu);
		return;
	}
	rr->next = t->rr_pend;
	t->rr_pend = rr;
	if (++t->rr_npend >= MRKEY__RR_BATCH)
		mrkey__rrec_flush_locked(t);
}

/* Set up allocation @rr for a new region of @nsegs segments. */
static void mrkey__rrec_init(struct mrkey_table *t, struct mrkey__rrec *rr,
			     size_t nsegs)
{
	memset(&rr->mr, 0, sizeof(rr->mr));
	mrkey__mrx_init(t, &rr->x, nsegs);
	rr->x.slot = MRKEY__NO_SLOT;
	rr->mr.rflags = MRKEY__REC_REQ;
}

/* A requested-key region's allocation for @nsegs segments, not published. */
static struct mrkey__rrec *mrkey__rrec_new(struct mrkey_table *t, size_t nsegs)
{
	size_t head = offsetof(struct mrkey__rrec, x), bytes;
	struct mrkey__rrec *rr;

	if (nsegs > (SIZE_MAX - head - sizeof(struct mrkey__mrx)) /
			    sizeof(struct mrkey__seg))
		return NULL;
	bytes = head + mrkey__mrx_size(nsegs);
	rr = mrkey__alloc(t, bytes);
	if (!rr)
		return NULL;
	rr->bytes = bytes;
	mrkey__rrec_init(t, rr, nsegs);
	return rr;
}

/*
 * A one-segment allocation under the writer lock: from the cache, else
 * allocated with the lock dropped for the call (as mrkey__mrx_get_locked()).
 */
static struct mrkey__rrec *mrkey__rrec_get_locked(struct mrkey_table *t)
{
	struct mrkey__rrec *rr = t->rr_cache;

	if (rr) {
		t->rr_cache = rr->next;
		t->rr_ncache--;
		mrkey__rrec_init(t, rr, 1);
		return rr;
	}
	pthread_mutex_unlock(&t->lock);
	rr = mrkey__rrec_new(t, 1);
	pthread_mutex_lock(&t->lock);
	return rr;
}

int mrkey_mr_reg_key(struct mrkey_table *table,
		     const struct mrkey_mr_attr *attr, uint64_t key,
		     struct mrkey_mr **mrp)
{
	uint32_t tag = mrkey__key_tag(key);
	struct mrkey__xlate xl;
	struct mrkey__rrec *rr;
	struct mrkey__ient *e;
	struct mrkey_mr *mr;
	bool fresh;
	int err;

	if (!table || !attr || !mrp || !mrkey__requested(table))
		return -EINVAL;
	err = mrkey__reg_check(table, attr, &xl);
	if (err)
		return err;
	rr = NULL;
	if (xl.nsegs > 1) {
		/* Built outside the lock: O(nsegs). */
		rr = mrkey__rrec_new(table, xl.nsegs);
		if (!rr)
			return -ENOMEM;
	}
	pthread_mutex_lock(&table->lock);
	if (!rr) {
		rr = mrkey__rrec_get_locked(table);
		if (!rr) {
			pthread_mutex_unlock(&table->lock);
			return -ENOMEM;
		}
	}
	mr = &rr->mr;
	mrkey__set_segs(&rr->x, &xl);
	mrkey__set_xlate(mr, &xl);
	rr->x.key = key;
	rr->x.context = attr->context;
	e = mrkey__idx_reserve_locked(table, key, &err);
	if (!e)
		goto fail_unlock;
	fresh = !atomic_load_explicit(&e->rec, memory_order_relaxed);
	if (table->ops) {
		/* The backend sees the region, not yet live, and the tag. */
		mr->x = &rr->x;
		rr->x.mr = mr;
		atomic_store_explicit(&mr->kc, (uint64_t)tag << 32,
				      memory_order_relaxed);
		err = table->ops->key_publish(table->bctx, mr, tag);
		if (err)
			goto fail_unlock;
	}
	mrkey__publish_locked(table, mr, &rr->x, attr->pd, tag, true);
	if (fresh) {
		/* Before @rec: a reader that sees the record sees the key. */
		atomic_store_explicit(&e->key, key, memory_order_relaxed);
		table->idx_nused++;
	}
	atomic_store_explicit(&e->rec, mr, memory_order_release);
	table->idx_nlive++;
	pthread_mutex_unlock(&table->lock);
	*mrp = mr;
	return 0;

fail_unlock:
	pthread_mutex_unlock(&table->lock);
	mrkey__free(table, rr, rr->bytes);
	return err;
}

uint64_t mrkey_mr_key(const struct mrkey_mr *mr)
{
	if (mr->rflags & MRKEY__REC_REQ)
		return mr->x->key;
	return mrkey__mr_key(mr);
}

void *mrkey_mr_context(const struct mrkey_mr *mr)
{
	return mr->x->context;
}

int mrkey_key_lookup(struct mrkey_table *table, uint64_t key,
		     struct mrkey_mr **mrp)
{
	struct mrkey_mr *mr;
	int err;

	if (!table || !mrp)
		return -EINVAL;
	err = mrkey__lookup(table, key, &mr);
	if (err)
		return err;
	*mrp = mr;
	return 0;
}
