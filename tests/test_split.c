// SPDX-License-Identifier: MIT
/*
 * Split (per-CPU) reference counts, driven through the core's test hooks
 * (src/testhooks.h): this suite links the static library, which is what
 * lets it call them. In MRKEY_REFCOUNT_PERCPU tables a region starts with
 * one atomic count and is split only when lookups fight over it; the
 * hooks split a region on demand, so the collapse, its accounting and its
 * saturation are tested without depending on the scheduler.
 */
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "testhooks.h"
#include "testutil.h"

static struct mrkey_table *sp_table(mrkey_report_fn report, void *ctx)
{
	struct mrkey_table_attr a;

	tu_attr_init(&a, 6, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	a.refcount = MRKEY_REFCOUNT_PERCPU;
	a.report = report;
	a.report_ctx = ctx;
	return tu_table_new_attr(&a);
}

static int sp_probe(struct mrkey_table *t, struct mrkey_pd *pd,
		    struct mrkey_mr *mr)
{
	return tu_rkey_probe(t, pd, mrkey_mr_rkey(mr), 0, 8,
			     MRKEY_ACCESS_REMOTE_READ);
}

START_TEST(split_only_on_demand)
{
	struct mrkey_table *t = sp_table(NULL, NULL);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 4096, 0, 0,
					 MRKEY_ACCESS_REMOTE_READ);
	struct mrkey_table_attr a;
	struct mrkey_table *at;
	struct mrkey_mr *amr;

	/* Registered regions start atomic; uncontended lookups keep them so. */
	ck_assert(!mrkey__test_is_split(mr));
	ck_assert_int_eq(sp_probe(t, pd, mr), 0);
	ck_assert(!mrkey__test_is_split(mr));
	ck_assert(mrkey__test_split(mr));
	ck_assert(mrkey__test_split(mr)); /* twice: still split, once */
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), 0);

	/* Atomic tables never split. */
	tu_attr_init(&a, 4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	a.refcount = MRKEY_REFCOUNT_ATOMIC;
	at = tu_table_new_attr(&a);
	{
		struct mrkey_pd *apd = tu_pd_new(at, 0);

		amr = tu_reg1_ok(at, apd, tu_scratch, 64, 0, 0, 0);
		ck_assert(!mrkey__test_split(amr));
		tu_dereg(amr);
		tu_pd_del(apd);
	}
	tu_table_del(at);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(split_counts_exact)
{
	struct mrkey_table *t = sp_table(NULL, NULL);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 4096, 0x1000,
					 0x2000, MRKEY_ACCESS_REMOTE_READ);
	struct mrkey_isge a, b, c;

	ck_assert_int_eq(mrkey_rkey_ok(t, pd, mrkey_mr_rkey(mr), 0x2000, 8,
				       MRKEY_ACCESS_REMOTE_READ, &a),
			 0); /* atomic, before the split */
	ck_assert(mrkey__test_split(mr));
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 3);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, mrkey_mr_rkey(mr), 0x2000, 8,
				       MRKEY_ACCESS_REMOTE_READ, &b),
			 0);
	/* A failed check after the split's get gives its reference back. */
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, mrkey_mr_rkey(mr), 0x2000, 8,
				       MRKEY_ACCESS_REMOTE_WRITE, &c),
			 -EACCES);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, mrkey_mr_rkey(mr), 0x1ff8, 16,
				       MRKEY_ACCESS_REMOTE_READ, &c),
			 -ERANGE);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 4);
	mrkey_mr_get(mr);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 5);
	mrkey_mr_put(mr);
	/* Taken atomically, dropped into a shard: the sum stays right. */
	mrkey_isge_put(&a);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 3);

	/* Collapse with one transient holder: exact count afterwards. */
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	ck_assert(!mrkey__test_is_split(mr));
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_int_eq(sp_probe(t, pd, mr), -ENOENT);
	/* Taken in a shard, dropped atomically after the collapse. */
	mrkey_isge_put(&b);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 1);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), 0);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

static void sp_done(struct mrkey_mr *mr, void *arg)
{
	(void)mr;
	atomic_fetch_add((atomic_int *)arg, 1);
}

START_TEST(split_async_after_grace_period)
{
	struct mrkey_table *t = sp_table(NULL, NULL);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, 0, 0, 0);
	atomic_int done = 0;

	ck_assert(mrkey__test_split(mr));
	ck_assert_int_eq(mrkey_mr_dereg_async(mr, sp_done, &done), 0);
	/* Split: the drop waits for a grace period, never inline. */
	mrkey_reclaim_wait();
	ck_assert_int_eq(atomic_load(&done), 1);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/* Regions that could never be freed: kept reachable, not leaked. */
static struct mrkey_table *sp_kept[2];

struct sp_reports {
	int n;
	struct mrkey_mr *mr;
};

static void sp_report(void *ctx, struct mrkey_mr *mr, const char *what)
{
	struct sp_reports *r = ctx;

	(void)what;
	r->n++;
	r->mr = mr;
}

START_TEST(split_saturates_past_2_32)
{
	/*
	 * 2^32 gets without puts on a split region: the shards' sum must
	 * not wrap to a small count (which would let dereg free a region
	 * with 2^32 holders); the count saturates and the region is never
	 * freed, as in the atomic mode.
	 */
	struct mrkey_table *t = sp_table(NULL, NULL);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, 0, 0, 0);
	int i;

	sp_kept[0] = t;
	ck_assert(mrkey__test_split(mr));
	mrkey__test_shard_add(mr, (int64_t)1 << 32);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	ck_assert_uint_ge(mrkey_mr_refcount(mr), 0x10000000u);
	for (i = 0; i < 16; i++)
		mrkey_mr_put(mr);
	ck_assert_uint_ge(mrkey_mr_refcount(mr), 0x10000000u);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	ck_assert_int_eq(mrkey_pd_free(pd), -EBUSY);
}
END_TEST

START_TEST(split_underflow_reported_at_collapse)
{
	struct sp_reports rep = { 0 };
	struct mrkey_table *t = sp_table(sp_report, &rep);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, 0, 0, 0);

	sp_kept[1] = t;
	ck_assert(mrkey__test_split(mr));
	mrkey_mr_put(mr); /* the caller's */
	mrkey_mr_put(mr); /* one too many: hidden in a shard */
	ck_assert_int_eq(rep.n, 0);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	ck_assert_int_eq(rep.n, 1);
	ck_assert_ptr_eq(rep.mr, mr);
	ck_assert_uint_ne(mrkey_mr_refcount(mr), 0);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
}
END_TEST

/*
 * Threads validate the key and hammer get/put pairs on a split region,
 * hopping between CPUs so gets and puts land on different shards, while
 * the main thread deregisters (collapsing the shards mid-flight). A
 * reference lost or counted twice in the collapse shows as a count that
 * is not exactly caller + holders once the hammering stops.
 */
struct sp_hammer {
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *mr;
	uint32_t key;
	atomic_bool stop;
	atomic_int bad; /* unexpected results in the threads */
};

static void *sp_hammer_thread(void *arg)
{
	struct sp_hammer *h = arg;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN), n = 0;
	struct mrkey_isge isge;
	cpu_set_t set;

	while (!atomic_load_explicit(&h->stop, memory_order_relaxed)) {
		int got = mrkey_rkey_ok(h->t, h->pd, h->key, 0, 8,
					MRKEY_ACCESS_REMOTE_READ, &isge);

		if (got != 0 && got != -ENOENT)
			atomic_fetch_add(&h->bad, 1);
		mrkey_mr_get(h->mr);
		if (ncpu > 1 && (n & 63) == 0) {
			CPU_ZERO(&set);
			CPU_SET((int)((n >> 6) % ncpu), &set);
			pthread_setaffinity_np(pthread_self(), sizeof(set),
					       &set);
		}
		mrkey_mr_put(h->mr);
		if (got == 0)
			mrkey_isge_put(&isge);
		n++;
	}
	return NULL;
}

START_TEST(split_collapse_stress)
{
	enum {
		NTHREADS = 4
	};
	struct mrkey_table *t = sp_table(NULL, NULL);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	unsigned int rounds = tu_slow_build() ? 20 : 200, r, i;
	double stop_at = tu_now_ms() + 3000.0;

	for (r = 0; r < rounds && (r < 3 || tu_now_ms() < stop_at); r++) {
		struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 4096, 0, 0,
						 MRKEY_ACCESS_REMOTE_READ);
		struct sp_hammer h = {
			.t = t, .pd = pd, .mr = mr, .key = mrkey_mr_rkey(mr)
		};
		struct mrkey_isge base[NTHREADS];
		pthread_t th[NTHREADS];

		ck_assert(mrkey__test_split(mr));
		for (i = 0; i < NTHREADS; i++)
			ck_assert_int_eq(mrkey_rkey_ok(t, pd, h.key, 0, 1,
						       MRKEY_ACCESS_REMOTE_READ,
						       &base[i]),
					 0);
		for (i = 0; i < NTHREADS; i++)
			ck_assert_int_eq(pthread_create(&th[i], NULL,
							sp_hammer_thread, &h),
					 0);
		tu_sleep_ms(r % 3);
		/* Mid-flight collapse: holders remain, so -EBUSY. */
		ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
		tu_sleep_ms(r % 2);
		atomic_store(&h.stop, true);
		for (i = 0; i < NTHREADS; i++)
			pthread_join(th[i], NULL);
		ck_assert_int_eq(atomic_load(&h.bad), 0);
		ck_assert_uint_eq(mrkey_mr_refcount(mr), 1 + NTHREADS);
		for (i = 0; i < NTHREADS; i++)
			mrkey_isge_put(&base[i]);
		ck_assert_uint_eq(mrkey_mr_refcount(mr), 1);
		ck_assert_int_eq(mrkey_mr_dereg(mr, 0), 0);
	}
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/*
 * A fast-registration region whose count was split: invalidation clears
 * SPLIT, and the next fast registration first waits for a grace period
 * and collapses the shards, so its count of holders is exact.
 */
START_TEST(split_fast_reg_collapses)
{
	struct mrkey_table *t = sp_table(NULL, NULL);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = NULL;
	struct mrkey_seg seg = { tu_scratch, 64 };
	struct mrkey_fr_attr a = { .addr = 0,
				   .iova = 0,
				   .length = 64,
				   .access = MRKEY_ACCESS_REMOTE_READ,
				   .segs = &seg,
				   .nsegs = 1,
				   .key_byte = 1 };
	struct mrkey_isge is;
	uint32_t key, nkey = 0;

	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 1, &mr), 0);
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &key), 0);
	ck_assert(mrkey__test_split(mr));
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, key, 0, 8,
				       MRKEY_ACCESS_REMOTE_READ, &is),
			 0);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 3);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, key), 0);
	ck_assert(!mrkey__test_is_split(mr));
	a.key_byte = 2;
	/* The held reference, taken in a shard, keeps it busy. */
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &nkey), -EBUSY);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 3);
	mrkey_isge_put(&is);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &nkey), 0);
	ck_assert_uint_eq(nkey, (key & ~0xffu) | 2);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), 0);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/*
 * Contention splits a region by itself: two threads validating one key
 * on two CPUs make the count's compare-and-swap fail often. Not under
 * valgrind, which runs one thread at a time (no CAS ever fails there).
 */
struct sp_pinned {
	struct sp_hammer *h;
	int cpu;
};

static void *sp_lookup_thread(void *arg)
{
	struct sp_pinned *p = arg;
	struct sp_hammer *h = p->h;
	struct mrkey_isge isge;
	cpu_set_t set;

	/* On a loaded machine unpinned threads may share one CPU. */
	CPU_ZERO(&set);
	CPU_SET(p->cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);

	/* No ck_assert in the loop: in fork mode each one writes to a pipe. */
	while (!atomic_load_explicit(&h->stop, memory_order_relaxed)) {
		if (mrkey_rkey_ok(h->t, h->pd, h->key, 0, 8,
				  MRKEY_ACCESS_REMOTE_READ, &isge)) {
			atomic_fetch_add(&h->bad, 1);
			continue;
		}
		mrkey_isge_put(&isge);
	}
	return NULL;
}

START_TEST(split_under_contention)
{
	struct mrkey_table *t = sp_table(NULL, NULL);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 4096, 0, 0,
					 MRKEY_ACCESS_REMOTE_READ);
	struct sp_hammer h = {
		.t = t, .pd = pd, .mr = mr, .key = mrkey_mr_rkey(mr)
	};
	double give_up = tu_now_ms() + 20000.0;
	struct sp_pinned pin[2] = { { &h, 0 }, { &h, 1 } };
	pthread_t th[2];
	int i;

	if (sysconf(_SC_NPROCESSORS_ONLN) < 2 || tu_under_valgrind()) {
		tu_dereg(mr);
		tu_pd_del(pd);
		tu_table_del(t);
		return;
	}
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, sp_lookup_thread,
						&pin[i]),
				 0);
	while (!mrkey__test_is_split(mr) && tu_now_ms() < give_up)
		tu_sleep_ms(1);
	atomic_store(&h.stop, true);
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	ck_assert_int_eq(atomic_load(&h.bad), 0);
	ck_assert_msg(mrkey__test_is_split(mr),
		      "two threads on one key for 20 s never split it");
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), 0);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("split");
	TCase *tc = tu_tcase("split");

	tcase_add_test(tc, split_only_on_demand);
	tcase_add_test(tc, split_counts_exact);
	tcase_add_test(tc, split_async_after_grace_period);
	tcase_add_test(tc, split_saturates_past_2_32);
	tcase_add_test(tc, split_underflow_reported_at_collapse);
	tcase_add_test(tc, split_collapse_stress);
	tcase_add_test(tc, split_fast_reg_collapses);
	tcase_add_test(tc, split_under_contention);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
