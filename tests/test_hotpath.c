// SPDX-License-Identifier: MIT
/*
 * The hot-path modes: reference-free checks, adjacent-SGE merging.
 */
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include <mrkey/inline.h>
#include <urcu/urcu-bp.h> /* urcu_bp_read_ongoing(): the section, seen apart */

#include "testutil.h"

/*
 * Stress loops stop at their round count or after this many seconds,
 * whichever is first (MRKEY_STRESS_SECONDS, default 3; valgrind runs set 1).
 */
static double hp_budget_ms(void)
{
	return tu_stress_seconds(3.0, 3.0) * 1000.0;
}

static struct mrkey_table *hp_table(enum mrkey_refcount_mode mode,
				    unsigned int flags)
{
	struct mrkey_table_attr a;

	tu_attr_init(&a, 6, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	a.refcount = mode;
	a.flags = flags;
	return tu_table_new_attr(&a);
}

/*
 * Split counts: a region of a PERCPU table is split only under contention,
 * so their tests (collapse, saturation, stress) are in test_split, which
 * can split a region on demand; unsplit regions of PERCPU tables run every
 * test_mr and test_validate case.
 */

/* ---- reference-free checks --------------------------------------------- */

START_TEST(noref_contract)
{
	struct mrkey_table *plain = hp_table(MRKEY_REFCOUNT_ATOMIC, 0);
	struct mrkey_table *t =
		hp_table(MRKEY_REFCOUNT_ATOMIC, MRKEY_TABLE_NOREF);
	struct mrkey_pd *pd = tu_pd_new(t, 0), *ppd = tu_pd_new(plain, 0);
	struct mrkey_mr *mr = tu_reg1_ok(
		t, pd, tu_scratch, 4096, 0x1000, 0x8000,
		MRKEY_ACCESS_REMOTE_WRITE | MRKEY_ACCESS_LOCAL_WRITE);
	struct mrkey_mr *pmr =
		tu_reg1_ok(plain, ppd, tu_scratch, 4096, 0, 0, 0);
	struct mrkey_sge sge = { .addr = 0x1010,
				 .length = 16,
				 .lkey = mrkey_mr_lkey(mr) };
	struct mrkey_isge is, list[1];
	struct mrkey_sge_state ss;

	mrkey_read_lock();
	ck_assert_int_eq(mrkey_rkey_check(t, pd, mrkey_mr_rkey(mr), 0x8010, 16,
					  MRKEY_ACCESS_REMOTE_WRITE, &is),
			 0);
	ck_assert_ptr_eq(is.vaddr, tu_scratch + 0x10);
	ck_assert_uint_eq(is.flags & MRKEY_ISGE_NOREF, MRKEY_ISGE_NOREF);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_int_eq(mrkey_lkey_check(t, pd, &sge, 0, &list[0]), 0);
	ck_assert_ptr_eq(list[0].vaddr, tu_scratch + 0x10);
	/* Same checks and errors as the referencing calls. */
	ck_assert_int_eq(mrkey_rkey_check(t, pd, mrkey_mr_rkey(mr), 0x8ff8, 16,
					  MRKEY_ACCESS_REMOTE_WRITE, &is),
			 -ERANGE);
	ck_assert_int_eq(mrkey_rkey_check(t, pd, mrkey_mr_rkey(mr), 0x8000, 16,
					  MRKEY_ACCESS_REMOTE_READ, &is),
			 -EACCES);
	ck_assert_int_eq(mrkey_rkey_check(t, pd, mrkey_mr_rkey(mr) ^ 1, 0x8000,
					  16, 0, &is),
			 -ENOENT);
	/* Zero bytes: no lookup, an isge naming nothing (IBTA C9-88). */
	ck_assert_int_eq(mrkey_rkey_check(t, pd, mrkey_mr_rkey(mr) ^ 1, 0x8000,
					  0, 0, &is),
			 0);
	ck_assert_ptr_null(is.mr);
	ck_assert_uint_eq(is.sge_length, 0);
	ck_assert_int_eq(mrkey_rkey_check(t, pd, mrkey_mr_rkey(mr), 0x8000, 0,
					  16, &is),
			 -EINVAL);
	/* A table without MRKEY_TABLE_NOREF refuses. */
	ck_assert_int_eq(mrkey_rkey_check(plain, ppd, mrkey_mr_rkey(pmr), 0, 8,
					  0, &is),
			 -EINVAL);
	/* SG state over reference-free isges: ss_put drops nothing. */
	mrkey_ss_init(&ss, list, 1);
	ck_assert_uint_eq(mrkey_ss_copy_in(&ss, "0123456789abcdef", 16), 16);
	mrkey_ss_put(&ss);
	mrkey_read_unlock();
	ck_assert_int_eq(memcmp(tu_scratch + 0x10, "0123456789abcdef", 16), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), 0);
	ck_assert_int_eq(mrkey_mr_dereg(pmr, 0), 0);
	tu_pd_del(pd);
	tu_pd_del(ppd);
	tu_table_del(t);
	tu_table_del(plain);
}
END_TEST

struct hp_report {
	atomic_int n;
};

static void hp_report_fn(void *ctx, struct mrkey_mr *mr, const char *what)
{
	atomic_fetch_add(&((struct hp_report *)ctx)->n, 1);
}

/* A NOREF table whose misuse reports are counted in @rep (the debug
 * library then refuses instead of aborting). */
static struct mrkey_table *hp_noref_table_reported(struct hp_report *rep)
{
	struct mrkey_table_attr a;

	tu_attr_init(&a, 4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	a.flags = MRKEY_TABLE_NOREF;
	a.report = hp_report_fn;
	a.report_ctx = rep;
	return tu_table_new_attr(&a);
}

START_TEST(noref_misuse_reported_in_debug)
{
	struct hp_report rep = { 0 };
	struct mrkey_table *t = hp_noref_table_reported(&rep);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr;
	struct mrkey_isge is;
	int err;

	mr = tu_reg1_ok(t, pd, tu_scratch, 64, 0, 0, 0);

	/* Outside mrkey_read_lock(): refused and reported in debug builds,
	 * where the library cannot tell, it must at least not take a ref. */
	err = mrkey_rkey_check(t, pd, mrkey_mr_rkey(mr), 0, 8, 0, &is);
#ifdef MRKEY_TEST_LIB_DEBUG
	ck_assert_int_eq(err, -EINVAL);
	ck_assert_int_eq(atomic_load(&rep.n), 1);
#else
	ck_assert(err == 0 || err == -EINVAL);
#endif
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);

	/* Putting a reference-free isge drops nothing. */
	mrkey_read_lock();
	ck_assert_int_eq(
		mrkey_rkey_check(t, pd, mrkey_mr_rkey(mr), 0, 8, 0, &is), 0);
	mrkey_read_unlock();
	mrkey_isge_put(&is);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
#ifdef MRKEY_TEST_LIB_DEBUG
	ck_assert_int_eq(atomic_load(&rep.n), 2);
#endif
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), 0);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/*
 * <mrkey/inline.h>: the inlined pair enters the same section as the
 * library's, so either may open it and either close it, and they nest.
 * liburcu-bp's own urcu_bp_read_ongoing() sees each section and its end in
 * every build (the debug build of the library also refuses a check after
 * it). Builds with MRKEY_URCU_NO_INLINE (sanitizers) test the fallback.
 */
START_TEST(noref_inline_section)
{
	struct hp_report rep = { 0 };
	struct mrkey_table *t = hp_noref_table_reported(&rep);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 4096, 0, 0x8000,
					 MRKEY_ACCESS_REMOTE_READ);
	uint32_t key = mrkey_mr_rkey(mr);
	struct mrkey_isge is;
	int pair;

	ck_assert(!urcu_bp_read_ongoing());

	for (pair = 0; pair < 4; pair++) {
		if (pair & 1)
			mrkey_read_lock_inline();
		else
			mrkey_read_lock();
		ck_assert_int_eq(mrkey_rkey_check(t, pd, key, 0x8010, 16,
						  MRKEY_ACCESS_REMOTE_READ,
						  &is),
				 0);
		ck_assert_ptr_eq(is.vaddr, tu_scratch + 0x10);
		ck_assert(urcu_bp_read_ongoing());
		/* Nested, of the other kind. */
		if (pair & 1)
			mrkey_read_lock();
		else
			mrkey_read_lock_inline();
		ck_assert_int_eq(
			mrkey_rkey_check(t, pd, key, 0x8000, 8, 0, &is), 0);
		if (pair & 1)
			mrkey_read_unlock();
		else
			mrkey_read_unlock_inline();
		/* Still inside the outer section. */
		ck_assert(urcu_bp_read_ongoing());
		ck_assert_int_eq(
			mrkey_rkey_check(t, pd, key, 0x8000, 8, 0, &is), 0);
		if (pair & 2)
			mrkey_read_unlock_inline();
		else
			mrkey_read_unlock();
		ck_assert(!urcu_bp_read_ongoing());
#ifdef MRKEY_TEST_LIB_DEBUG
		/* Closed: the debug library refuses a check outside. */
		ck_assert_int_eq(mrkey_rkey_check(t, pd, key, 0x8000, 8, 0,
						  &is),
				 -EINVAL);
		ck_assert_int_eq(atomic_load(&rep.n), pair + 1);
#endif
	}
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), 0);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/*
 * Deregistration in a NOREF table must wait out every read-side section
 * that may have validated the key: readers copy the region's memory under
 * a reference-free check and verify the pattern belongs to the key they
 * validated; the writer poisons the memory as soon as dereg returns 0.
 */
#define HP_BUFSZ 256
struct hp_noref {
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	_Atomic uint32_t key;
	atomic_bool stop;
	atomic_long checks, bad;
	unsigned char buf[HP_BUFSZ];
};

static unsigned char hp_pattern(uint32_t key)
{
	unsigned char c =
		(unsigned char)(key ^ (key >> 8) ^ (key >> 16) ^ (key >> 24));

	return c == 0xee ? 0x11 : c;
}

/* How a reader opens and closes its sections: bit 0 set = the inlined
 * lock (<mrkey/inline.h>), bit 1 set = the inlined unlock. */
struct hp_noref_reader {
	struct hp_noref *s;
	unsigned int kind;
};

static void *hp_noref_reader(void *arg)
{
	const struct hp_noref_reader *rd = arg;
	struct hp_noref *s = rd->s;
	long checks = 0, bad = 0;

	while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
		uint32_t key = atomic_load(&s->key);
		struct mrkey_isge is;
		unsigned int i;

		if (rd->kind & 1)
			mrkey_read_lock_inline();
		else
			mrkey_read_lock();
		if (mrkey_rkey_check(s->t, s->pd, key, 0, HP_BUFSZ, 0, &is) ==
		    0) {
			const volatile unsigned char *p = is.vaddr;

			checks++;
			for (i = 0; i < HP_BUFSZ; i += 17)
				if (p[i] != hp_pattern(key))
					bad++;
		}
		if (rd->kind & 2)
			mrkey_read_unlock_inline();
		else
			mrkey_read_unlock();
	}
	atomic_fetch_add(&s->checks, checks);
	atomic_fetch_add(&s->bad, bad);
	return NULL;
}

START_TEST(noref_dereg_waits_for_readers)
{
	enum {
		NREADERS = 4 /* one of each lock/unlock kind */
	};
	static struct hp_noref s;
	struct hp_noref_reader rd[NREADERS];
	unsigned int rounds = tu_slow_build() ? 300 : 3000, r, i;
	double stop_at = tu_now_ms() + hp_budget_ms();
	pthread_t th[NREADERS];

	memset(&s, 0, sizeof(s));
	s.t = hp_table(MRKEY_REFCOUNT_ATOMIC, MRKEY_TABLE_NOREF);
	s.pd = tu_pd_new(s.t, 0);
	for (i = 0; i < NREADERS; i++) {
		rd[i].s = &s;
		rd[i].kind = i;
		ck_assert_int_eq(pthread_create(&th[i], NULL, hp_noref_reader,
						&rd[i]),
				 0);
	}
	for (r = 0; r < rounds && (r < 10 || tu_now_ms() < stop_at); r++) {
		struct mrkey_seg seg = { s.buf, HP_BUFSZ };
		struct mrkey_mr_attr a = {
			.pd = s.pd, .length = HP_BUFSZ, .segs = &seg, .nsegs = 1
		};
		struct mrkey_mr *mr;
		uint32_t key;

		ck_assert_int_eq(mrkey_mr_reg(s.t, &a, &mr), 0);
		key = mrkey_mr_rkey(mr);
		memset(s.buf, hp_pattern(key), HP_BUFSZ);
		atomic_store(&s.key, key);
		ck_assert_int_eq(mrkey_mr_dereg(mr, 10000), 0);
		memset(s.buf, 0xee, HP_BUFSZ); /* the memory is ours again */
	}
	atomic_store(&s.stop, true);
	for (i = 0; i < NREADERS; i++)
		pthread_join(th[i], NULL);
	ck_assert_int_eq(atomic_load(&s.bad), 0);
	tu_pd_del(s.pd);
	tu_table_del(s.t);
}
END_TEST

/* ---- adjacent-SGE merging ---------------------------------------------- */

static unsigned char hp_mem[4][1024];

START_TEST(merge_rules)
{
	struct mrkey_table *t = hp_table(MRKEY_REFCOUNT_ATOMIC, 0);
	struct mrkey_pd *pd = tu_pd_new(t, 0), *pd2 = tu_pd_new(t, 0);
	struct mrkey_seg segs[2] = { { hp_mem[0], 1024 }, { hp_mem[2], 1024 } };
	struct mrkey_mr_attr a = { .pd = pd,
				   .addr = 0x10000,
				   .iova = 0,
				   .length = 2048,
				   .access = MRKEY_ACCESS_LOCAL_WRITE,
				   .segs = segs,
				   .nsegs = 2 };
	struct mrkey_mr *mr, *other;
	struct mrkey_isge last, next;
	struct mrkey_sge sge;
	uint32_t key;

	ck_assert_int_eq(mrkey_mr_reg(t, &a, &mr), 0);
	other = tu_reg1_ok(t, pd, hp_mem[3], 1024, 0x10000 + 2048, 0,
			   MRKEY_ACCESS_LOCAL_WRITE);
	key = mrkey_mr_lkey(mr);

	sge = (struct mrkey_sge){ .addr = 0x10000 + 1000,
				  .length = 10,
				  .lkey = key };
	ck_assert_int_eq(mrkey_lkey_ok_merge(t, pd, &sge, 0, NULL, &last), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 3);
	ck_assert_uint_eq(last.length, 10);

	/* Contiguous, crossing into segment 1: merged, no new reference,
	 * contiguous bytes stop at the segment end. */
	sge.addr = 0x10000 + 1010;
	sge.length = 30;
	memset(&next, 0x5a, sizeof(next));
	ck_assert_int_eq(mrkey_lkey_ok_merge(t, pd, &sge,
					     MRKEY_ACCESS_LOCAL_WRITE, &last,
					     &next),
			 1);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 3);
	ck_assert_uint_eq(last.sge_length, 40);
	ck_assert_uint_eq(last.length, 24);
	ck_assert_ptr_eq(last.vaddr, hp_mem[0] + 1000);
	ck_assert_uint_eq(next.sge_length, 0x5a5a5a5a); /* untouched */

	/* A gap: a fresh validation with its own reference. */
	sge.addr = 0x10000 + 1041;
	sge.length = 4;
	ck_assert_int_eq(mrkey_lkey_ok_merge(t, pd, &sge, 0, &last, &next), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 4);
	ck_assert_ptr_eq(next.vaddr, hp_mem[2] + 17);
	mrkey_isge_put(&next);

	/* Contiguous address but another region's key: no merge. */
	sge = (struct mrkey_sge){ .addr = 0x10000 + 2048,
				  .length = 8,
				  .lkey = mrkey_mr_lkey(other) };
	ck_assert_int_eq(mrkey_lkey_ok_merge(t, pd, &sge, 0, &last, &next), 0);
	ck_assert_ptr_eq(next.mr, other);
	mrkey_isge_put(&next);

	/* Past the region's end: -ERANGE and nothing changes. */
	sge = (struct mrkey_sge){ .addr = 0x10000 + 1040,
				  .length = 1009,
				  .lkey = key };
	ck_assert_int_eq(mrkey_lkey_ok_merge(t, pd, &sge, 0, &last, &next),
			 -ERANGE);
	ck_assert_uint_eq(last.sge_length, 40);
	/* Exactly to the end: merged. */
	sge.length = 1008;
	ck_assert_int_eq(mrkey_lkey_ok_merge(t, pd, &sge, 0, &last, &next), 1);
	ck_assert_uint_eq(last.sge_length, 1048);

	/* Access the region lacks, or another PD: the full path's errors. */
	sge = (struct mrkey_sge){ .addr = 0x10000 + 2048,
				  .length = 1,
				  .lkey = key };
	ck_assert_int_eq(mrkey_lkey_ok_merge(t, pd, &sge, 0, &last, &next),
			 -ERANGE);
	sge = (struct mrkey_sge){ .addr = 0x10000, .length = 1, .lkey = key };
	ck_assert_int_eq(mrkey_lkey_ok_merge(t, pd, &sge,
					     MRKEY_ACCESS_REMOTE_READ, &last,
					     &next),
			 -EACCES);
	ck_assert_uint_eq(last.sge_length, 1048);
	sge = (struct mrkey_sge){ .addr = 0x10000, .length = 1, .lkey = key };
	ck_assert_int_eq(mrkey_lkey_ok_merge(t, pd2, &sge, 0, NULL, &next),
			 -EPERM);

	/* Once unpublished, the key no longer extends anything. */
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	{
		struct mrkey_isge l2;

		sge.addr = 0x10000;
		ck_assert_int_eq(mrkey_lkey_ok_merge(t, pd, &sge, 0, NULL, &l2),
				 -ENOENT);
	}
	mrkey_isge_put(&last);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), 0);
	ck_assert_int_eq(mrkey_mr_dereg(other, 0), 0);
	tu_pd_del(pd);
	tu_pd_del(pd2);
	tu_table_del(t);
}
END_TEST

START_TEST(merge_then_copy)
{
	struct mrkey_table *t = hp_table(MRKEY_REFCOUNT_PERCPU, 0);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_seg segs[3] = { { hp_mem[0], 512 },
				     { hp_mem[1], 512 },
				     { hp_mem[2], 512 } };
	struct mrkey_mr_attr a = { .pd = pd,
				   .addr = 0,
				   .length = 1536,
				   .access = MRKEY_ACCESS_LOCAL_WRITE,
				   .segs = segs,
				   .nsegs = 3 };
	struct mrkey_isge list[4];
	unsigned char src[1536], dst[1536];
	struct mrkey_sge_state ss;
	struct mrkey_mr *mr;
	unsigned int n = 0, i;
	int r;

	ck_assert_int_eq(mrkey_mr_reg(t, &a, &mr), 0);
	for (i = 0; i < sizeof(src); i++)
		src[i] = (unsigned char)(i * 7 + 3);
	/* Six SGEs of 256 bytes, all contiguous: one isge. */
	for (i = 0; i < 6; i++) {
		struct mrkey_sge sge = { .addr = i * 256,
					 .length = 256,
					 .lkey = mrkey_mr_lkey(mr) };

		r = mrkey_lkey_ok_merge(t, pd, &sge, MRKEY_ACCESS_LOCAL_WRITE,
					n ? &list[n - 1] : NULL, &list[n]);
		ck_assert_int_ge(r, 0);
		if (r == 0)
			n++;
	}
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 3);
	mrkey_ss_init(&ss, list, n);
	ck_assert_uint_eq(mrkey_ss_copy_in(&ss, src, sizeof(src)), 1536);
	ck_assert_int_eq(memcmp(hp_mem[1], src + 512, 512), 0);
	mrkey_ss_put(&ss);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);

	ck_assert_int_eq(
		mrkey_lkey_ok(t, pd,
			      &(struct mrkey_sge){ .addr = 0,
						   .length = 1536,
						   .lkey = mrkey_mr_lkey(mr) },
			      0, &list[0]),
		0);
	mrkey_ss_init(&ss, list, 1);
	ck_assert_uint_eq(mrkey_ss_copy_out(&ss, dst, sizeof(dst)), 1536);
	ck_assert_int_eq(memcmp(dst, src, sizeof(src)), 0);
	mrkey_ss_put(&ss);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), 0);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hotpath");
	TCase *tc = tu_tcase("noref");
	tcase_add_test(tc, noref_contract);
	tcase_add_test(tc, noref_misuse_reported_in_debug);
	tcase_add_test(tc, noref_inline_section);
	tcase_add_test(tc, noref_dereg_waits_for_readers);
	suite_add_tcase(s, tc);
	tc = tu_tcase("merge");
	tcase_add_test(tc, merge_rules);
	tcase_add_test(tc, merge_then_copy);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
