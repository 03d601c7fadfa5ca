// SPDX-License-Identifier: MIT
/*
 * Regions: registration, the reference protocol, deregistration.
 *
 * Deregistration state machine (transitions under the table's writer
 * lock, except WAITING -> UNPUBLISHED, done by the waiter that owns the
 * handle):
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
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

void mrkey__report_table(struct mrkey_table *t, struct mrkey_mr *mr,
			 const char *what)
{
	if (t->report) {
		t->report(t->report_ctx, mr, what);
		return;
	}
	if (mr)
		fprintf(stderr, "mrkey: region %p (key 0x%08x): %s\n",
			(void *)mr, mr->lkey, what);
	else
		fprintf(stderr, "mrkey: table %p: %s\n", (void *)t, what);
#ifndef NDEBUG
	abort();
#endif
}

void mrkey__report(struct mrkey_mr *mr, const char *what)
{
	mrkey__report_table(mr->table, mr, what);
}

static void mrkey__mr_reclaim(struct rcu_head *head)
{
	struct mrkey_mr *mr = caa_container_of(head, struct mrkey_mr, rcu);

	mrkey__tsan_acquire();
	mrkey__free(mr->table, mr, mrkey__mr_size(mr->nsegs));
	/* ...and mrkey_reclaim_wait() orders itself after this. */
	mrkey__tsan_release();
}

/*
 * The region has drained: hand its memory to RCU and uncount it. The
 * table may be destroyed as soon as nmr drops, so that comes last, after
 * the reclamation is queued (mrkey_table_destroy() waits for the queue).
 */
static void mrkey__mr_free(struct mrkey_mr *mr)
{
	struct mrkey_table *t = mr->table;
	struct mrkey_pd *pd = mr->pd;

	if (t->ops && t->ops->mr_release)
		t->ops->mr_release(t->bctx, mr);
	atomic_store_explicit(&mr->state, MRKEY__MR_FREED,
			      memory_order_relaxed);
	mrkey__call_rcu(&mr->rcu, mrkey__mr_reclaim);
	atomic_fetch_sub_explicit(&pd->nmr, 1, memory_order_release);
	atomic_fetch_sub_explicit(&t->nmr, 1, memory_order_release);
}

void mrkey__ref_put_slow(struct mrkey_mr *mr, uint32_t old)
{
	struct mrkey_table *t = mr->table;
	int state;

	if (old != 1) {
		/* From 0 it wrapped; from saturation it must stay there. */
		atomic_store_explicit(&mr->refcount, MRKEY__REF_SATURATED,
				      memory_order_relaxed);
		if (old == 0)
			mrkey__report(mr, "reference count underflow");
		return;
	}

	/*
	 * Order everything the other holders did before their puts before
	 * what follows. An acquire load of the counter does it (it reads
	 * from their release sequence) and, unlike a fence, TSan models it.
	 */
	(void)atomic_load_explicit(&mr->refcount, memory_order_acquire);
	state = atomic_load_explicit(&mr->state, memory_order_relaxed);
	switch (state) {
	case MRKEY__MR_WAITING:
		pthread_mutex_lock(&t->wait_lock);
		mr->released = 1;
		pthread_cond_broadcast(&t->wait_cv);
		/* The waiter may free @mr once we unlock: touch it no more. */
		pthread_mutex_unlock(&t->wait_lock);
		break;
	case MRKEY__MR_ASYNC:
		mr->done(mr, mr->done_arg);
		mrkey__mr_free(mr);
		break;
	default:
		/*
		 * Zero while the caller (and maybe the table) should still
		 * hold references: one put too many. Leak rather than free
		 * memory that is still published.
		 */
		atomic_store_explicit(&mr->refcount, MRKEY__REF_SATURATED,
				      memory_order_relaxed);
		mrkey__report(mr, "reference count dropped to zero while the "
				  "region is registered (unbalanced put)");
		break;
	}
}

/* A put on a region whose counts may be split (see mrkey__put()). */
void mrkey__put_split(struct mrkey_mr *mr)
{
	uint32_t pcpu;

	mrkey__read_lock();
	pcpu = atomic_load_explicit(&mr->pcpu, memory_order_relaxed);
	if (mrkey__likely(pcpu)) {
		mrkey__pc_add(mr->table, pcpu, (uint32_t)-1);
		mrkey__read_unlock();
		return;
	}
	mrkey__read_unlock();
	mrkey__ref_put(mr);
}

void mrkey_mr_get(struct mrkey_mr *mr)
{
	uint32_t old;

	if (mrkey__unlikely(
		    atomic_load_explicit(&mr->pcpu, memory_order_relaxed))) {
		uint32_t pcpu;

		mrkey__read_lock();
		pcpu = atomic_load_explicit(&mr->pcpu, memory_order_relaxed);
		if (mrkey__likely(pcpu)) {
			mrkey__pc_add(mr->table, pcpu, 1);
			mrkey__read_unlock();
			return;
		}
		mrkey__read_unlock();
	}
	old = atomic_fetch_add_explicit(&mr->refcount, 1, memory_order_relaxed);

	if (mrkey__likely(old - 1u < MRKEY__REF_MAX - 1u))
		return;
	atomic_store_explicit(&mr->refcount, MRKEY__REF_SATURATED,
			      memory_order_relaxed);
	if (old == 0)
		mrkey__report(mr, "reference taken on a freed region");
}

void mrkey_mr_put(struct mrkey_mr *mr)
{
	mrkey__put(mr);
}

uint32_t mrkey_mr_lkey(const struct mrkey_mr *mr)
{
	return mr->lkey;
}

uint32_t mrkey_mr_rkey(const struct mrkey_mr *mr)
{
	return mr->lkey;
}

uint32_t mrkey_mr_refcount(const struct mrkey_mr *mr)
{
	uint32_t n = atomic_load_explicit(&mr->refcount, memory_order_relaxed);
	uint32_t pcpu;
	unsigned int s;

	mrkey__read_lock();
	pcpu = atomic_load_explicit(&mr->pcpu, memory_order_relaxed);
	if (!pcpu) /* unpublished, shards not yet collapsed? */
		pcpu = atomic_load_explicit(&mr->pc_idx, memory_order_relaxed);
	if (pcpu) {
		const struct mrkey_table *t = mr->table;

		for (s = 0; s <= t->pc_mask; s++)
			n += atomic_load_explicit(mrkey__pc_counter(t, pcpu - 1,
								    (int)s),
						  memory_order_relaxed);
		n -= MRKEY__PCPU_BIAS;
	}
	mrkey__read_unlock();
	return n;
}

int mrkey_mr_published(const struct mrkey_mr *mr)
{
	return atomic_load_explicit(&mr->published, memory_order_relaxed) != 0;
}

void *mrkey_mr_backend_data(const struct mrkey_mr *mr)
{
	return mr->backend_data;
}

void mrkey_mr_set_backend_data(struct mrkey_mr *mr, void *data)
{
	mr->backend_data = data;
}

/* Validate segments; returns their count of bytes or 0 when bad. */
static int mrkey__check_segs(const struct mrkey_mr_attr *a)
{
	uint64_t sum = 0;
	size_t i;

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
	return 0;
}

/*
 * Equal power-of-two segments (the last may be shorter) translate with a
 * shift, as qib's page_shift does; anything else by binary search.
 */
static uint32_t mrkey__seg_shift(const struct mrkey_mr_attr *a)
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

static int mrkey__check_mr_attr(struct mrkey_table *t,
				const struct mrkey_mr_attr *a)
{
	int err;

	if (!a->pd || a->pd->table != t || (a->access & ~MRKEY_ACCESS_ALL))
		return -EINVAL;
	if (a->comp_mask) /* no extension bit known yet */
		return -EINVAL;
	if (!a->length || a->addr > UINT64_MAX - a->length ||
	    a->iova > UINT64_MAX - a->length)
		return -EINVAL;
	err = mrkey__check_segs(a);
	if (err)
		return err;
	if (t->params.max_mr_size && a->length > t->params.max_mr_size)
		return -EINVAL;
	if (t->params.max_segs && a->nsegs > t->params.max_segs)
		return -EINVAL;
	return 0;
}

static struct mrkey_mr *mrkey__mr_new(struct mrkey_table *t,
				      struct mrkey_pd *pd, size_t nsegs)
{
	struct mrkey_mr *mr;

	if (nsegs > (SIZE_MAX - sizeof(*mr)) / sizeof(struct mrkey__seg))
		return NULL;
	mr = mrkey__alloc(t, mrkey__mr_size(nsegs));
	if (!mr)
		return NULL;
	memset(mr, 0, sizeof(*mr));
	mr->table = t;
	mr->pd = pd;
	mr->nsegs = (uint32_t)nsegs;
	/* The caller's reference and the table's. */
	atomic_init(&mr->refcount, 2);
	atomic_init(&mr->published, 1);
	atomic_init(&mr->state, MRKEY__MR_PUBLISHED);
	return mr;
}

/*
 * PERCPU: give @mr a split counter if one is free (else it simply stays in
 * the atomic mode). Under the writer lock, before the key is published.
 */
static void mrkey__pc_attach(struct mrkey_table *t, struct mrkey_mr *mr)
{
	uint32_t idx;

	if (!t->pc_base || !t->pc_nfree)
		return;
	idx = t->pc_free[--t->pc_nfree];
	mr->pc_idx = idx + 1;
	atomic_store_explicit(&mr->refcount, 2 + MRKEY__PCPU_BIAS,
			      memory_order_relaxed);
	atomic_store_explicit(&mr->pcpu, idx + 1, memory_order_relaxed);
}

/*
 * PERCPU: after mr->pcpu was cleared and a grace period has passed, no
 * get or put touches the shards any more: fold them into the atomic count
 * and free the counter index.
 */
static void mrkey__pc_collapse(struct mrkey_mr *mr)
{
	struct mrkey_table *t = mr->table;
	uint32_t idx = mr->pc_idx - 1, sum = 0, old;
	unsigned int s;

	for (s = 0; s <= t->pc_mask; s++)
		sum += atomic_exchange_explicit(mrkey__pc_counter(t, idx,
								  (int)s),
						0, memory_order_relaxed);
	mr->pc_idx = 0;
	pthread_mutex_lock(&t->lock);
	t->pc_free[t->pc_nfree++] = idx;
	pthread_mutex_unlock(&t->lock);
	/* Shard sums wrap mod 2^32; only their total means anything. */
	old = atomic_fetch_add_explicit(&mr->refcount, sum - MRKEY__PCPU_BIAS,
					memory_order_acq_rel);
	/*
	 * The caller's and the table's references are still in the count:
	 * less means a put too many went to a shard, invisible until now.
	 */
	if (mrkey__unlikely((int32_t)(old + sum - MRKEY__PCPU_BIAS) < 2)) {
		atomic_store_explicit(&mr->refcount, MRKEY__REF_SATURATED,
				      memory_order_relaxed);
		mrkey__report(mr, "reference count dropped below the holders "
				  "of a registered region (unbalanced put, "
				  "seen when the split counts collapsed)");
	}
}

/*
 * A region needs a grace period between unpublish and drain accounting
 * when its counts are split, or when reference-free users may still be
 * inside the memory.
 */
static bool mrkey__needs_gp(const struct mrkey_mr *mr)
{
	return mr->pc_idx || (mr->table->flags & MRKEY_TABLE_NOREF);
}

static void mrkey__after_gp(struct mrkey_mr *mr)
{
	mrkey__tsan_acquire();
	if (mr->pc_idx)
		mrkey__pc_collapse(mr);
}

int mrkey_mr_reg(struct mrkey_table *table, const struct mrkey_mr_attr *attr,
		 struct mrkey_mr **mrp)
{
	struct mrkey__key_pick pick;
	struct mrkey_mr *mr;
	uint64_t off = 0;
	size_t i;
	int err;

	if (!table || !attr || !mrp)
		return -EINVAL;
	err = mrkey__check_mr_attr(table, attr);
	if (err)
		return err;

	mr = mrkey__mr_new(table, attr->pd, attr->nsegs);
	if (!mr)
		return -ENOMEM;
	mr->addr = attr->addr;
	mr->iova = attr->iova;
	mr->length = attr->length;
	mr->access = attr->access;
	mr->seg_shift = mrkey__seg_shift(attr);
	mr->vbase = attr->segs[0].addr;
	for (i = 0; attr->nsegs > 1 && i < attr->nsegs; i++) {
		struct mrkey__seg *sg = &mrkey__segs(mr)[i];

		sg->vaddr = attr->segs[i].addr;
		sg->off = off;
		sg->len = attr->segs[i].length;
		off += attr->segs[i].length;
	}

	pthread_mutex_lock(&table->lock);
	err = mrkey__key_pick(table, &pick);
	if (err)
		goto fail_unlock;
	mr->lkey = pick.key;
	mr->slot = pick.slot;
	if (table->ops) {
		err = table->ops->key_publish(table->bctx, mr, pick.key);
		if (err) {
			mrkey__key_unpick(table, &pick);
			goto fail_unlock;
		}
	}
	mrkey__key_commit(table, &pick);
	mrkey__pc_attach(table, mr);
	atomic_fetch_add_explicit(&attr->pd->nmr, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&table->nmr, 1, memory_order_relaxed);
	/* Release: a reader that sees the pointer sees the whole region. */
	atomic_store_explicit(&table->slots[pick.slot], mr,
			      memory_order_release);
	pthread_mutex_unlock(&table->lock);
	*mrp = mr;
	return 0;

fail_unlock:
	pthread_mutex_unlock(&table->lock);
	mrkey__free(table, mr, mrkey__mr_size(mr->nsegs));
	return err;
}

int mrkey_mr_reg_dma(struct mrkey_table *table, struct mrkey_pd *pd,
		     unsigned int access, struct mrkey_mr **mrp)
{
	struct mrkey_mr *mr;
	int err;

	if (!table || !pd || !mrp || pd->table != table ||
	    (access & ~MRKEY_ACCESS_ALL))
		return -EINVAL;
	if (!(pd->flags & MRKEY_PD_PRIVILEGED))
		return -EPERM;

	mr = mrkey__mr_new(table, pd, 0);
	if (!mr)
		return -ENOMEM;
	mr->access = access;
	mr->length = UINT64_MAX;
	mr->seg_shift = 63;

	pthread_mutex_lock(&table->lock);
	err = -EEXIST;
	if (atomic_load_explicit(&table->dma_mr, memory_order_relaxed))
		goto fail_unlock;
	if (table->ops) {
		err = table->ops->key_publish(table->bctx, mr, 0);
		if (err)
			goto fail_unlock;
	}
	mrkey__pc_attach(table, mr);
	atomic_fetch_add_explicit(&pd->nmr, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&table->nmr, 1, memory_order_relaxed);
	atomic_store_explicit(&table->dma_mr, mr, memory_order_release);
	pthread_mutex_unlock(&table->lock);
	*mrp = mr;
	return 0;

fail_unlock:
	pthread_mutex_unlock(&table->lock);
	mrkey__free(table, mr, mrkey__mr_size(mr->nsegs));
	return err;
}

/* The whole unpublish, in the one critical section the caller holds. */
static void mrkey__unpublish_locked(struct mrkey_table *t, struct mrkey_mr *mr)
{
	if (mr->nsegs == 0) {
		atomic_store_explicit(&t->dma_mr, NULL, memory_order_release);
	} else {
		atomic_store_explicit(&t->slots[mr->slot], NULL,
				      memory_order_release);
		mrkey__key_release(t, mr->slot, mr->lkey);
	}
	atomic_store_explicit(&mr->published, 0, memory_order_seq_cst);
	/* Gets and puts go to the atomic count from the next grace period. */
	atomic_store_explicit(&mr->pcpu, 0, memory_order_relaxed);
	if (t->ops)
		t->ops->key_unpublish(t->bctx, mr, mr->lkey);
}

/*
 * Move @mr to @to and unpublish it if it still was. Returns how many
 * references the caller now drops (the table's too on first unpublish),
 * or -EALREADY.
 */
static int mrkey__dereg_begin(struct mrkey_mr *mr, int to,
			      mrkey_dereg_done_fn done, void *arg)
{
	struct mrkey_table *t = mr->table;
	int state, drop = 1;

	pthread_mutex_lock(&t->lock);
	state = atomic_load_explicit(&mr->state, memory_order_relaxed);
	if (state != MRKEY__MR_PUBLISHED && state != MRKEY__MR_UNPUBLISHED) {
		pthread_mutex_unlock(&t->lock);
		return -EALREADY;
	}
	if (state == MRKEY__MR_PUBLISHED) {
		mrkey__unpublish_locked(t, mr);
		drop = 2;
	}
	mr->released = 0;
	mr->done = done;
	mr->done_arg = arg;
	atomic_store_explicit(&mr->state, to, memory_order_relaxed);
	pthread_mutex_unlock(&t->lock);
	return drop;
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
	struct mrkey_table *t = mr->table;
	int (*progress)(void *) = t->ops ? t->ops->progress : NULL;
	struct timespec now, wake;

	while (!mr->released) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!mrkey__ts_before(&now, deadline))
			return;
		wake = *deadline;
		if (progress) {
			pthread_mutex_unlock(&t->wait_lock);
			progress(t->bctx);
			pthread_mutex_lock(&t->wait_lock);
			if (mr->released)
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
	while (atomic_load_explicit(&mr->refcount, memory_order_relaxed)) {
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

int mrkey_mr_dereg(struct mrkey_mr *mr, unsigned int timeout_ms)
{
	struct mrkey_table *t;
	struct timespec deadline;
	uint32_t old;
	int drop;

	if (!mr)
		return -EINVAL;
	t = mr->table;
	drop = mrkey__dereg_begin(mr, MRKEY__MR_WAITING, NULL, NULL);
	if (drop < 0)
		return drop;

	mrkey__deadline(&deadline, (uint64_t)timeout_ms * 1000);
	if (drop == 2 && mrkey__needs_gp(mr)) {
		urcu_bp_synchronize_rcu();
		mrkey__after_gp(mr);
	}
	old = atomic_fetch_sub_explicit(&mr->refcount, (uint32_t)drop,
					memory_order_acq_rel);
	if (old == (uint32_t)drop) {
		/* Ours were the last references: nothing to wait for. */
		mrkey__mr_free(mr);
		return 0;
	}

	if (timeout_ms)
		mrkey__dereg_spin(mr);
	pthread_mutex_lock(&t->wait_lock);
	if (timeout_ms)
		mrkey__dereg_wait(mr, &deadline);
	if (!mr->released) {
		/* Timed out: take the caller's reference back, if any is left. */
		if (mrkey__ref_get_not_zero(mr)) {
			atomic_store_explicit(&mr->state, MRKEY__MR_UNPUBLISHED,
					      memory_order_relaxed);
			pthread_mutex_unlock(&t->wait_lock);
			return -EBUSY;
		}
		/* The last put is on its way to flag it: wait for that. */
		while (!mr->released)
			pthread_cond_wait(&t->wait_cv, &t->wait_lock);
	}
	pthread_mutex_unlock(&t->wait_lock);
	mrkey__mr_free(mr);
	return 0;
}

/* Drop @drop references of an async deregistration; free if drained. */
static void mrkey__async_drop(struct mrkey_mr *mr, uint32_t drop)
{
	uint32_t old = atomic_fetch_sub_explicit(&mr->refcount, drop,
						 memory_order_acq_rel);

	if (old == drop) {
		mr->done(mr, mr->done_arg);
		mrkey__mr_free(mr);
	}
}

static void mrkey__async_gp_done(struct rcu_head *head)
{
	struct mrkey_mr *mr = caa_container_of(head, struct mrkey_mr, rcu);

	mrkey__after_gp(mr);
	mrkey__async_drop(mr, 2);
}

int mrkey_mr_dereg_async(struct mrkey_mr *mr, mrkey_dereg_done_fn done,
			 void *arg)
{
	int drop;

	if (!mr || !done)
		return -EINVAL;
	drop = mrkey__dereg_begin(mr, MRKEY__MR_ASYNC, done, arg);
	if (drop < 0)
		return drop;
	if (drop == 2 && mrkey__needs_gp(mr)) {
		/* Finish on the RCU callback thread after a grace period. */
		mrkey__call_rcu(&mr->rcu, mrkey__async_gp_done);
		return 0;
	}
	mrkey__async_drop(mr, (uint32_t)drop);
	return 0;
}
