/* SPDX-License-Identifier: MIT */
/*
 * Allocation failures injected at every site, through the allocator
 * callbacks: for each operation, fail its 1st, 2nd, ... allocation until it
 * needs no more. Every failure must return -ENOMEM, leave the table usable
 * and as it was, and leak nothing; paths that cannot fail (deregistration,
 * validation) must not need memory.
 */
#include <string.h>

#include "testutil.h"

#define A0 0x100000ull
#define BITS 3
#define MAX_N 1000

struct env {
	struct mrkey_table *t;
	struct mrkey_pd *pd, *priv;
	struct mrkey_mr *keep;
	uint32_t key;
};

static void env_up(struct env *e)
{
	struct mrkey_table_attr attr;

	tu_attr_init(&attr, BITS, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	attr.allocator = &tu_allocator;
	e->t = tu_table_new_attr(&attr);
	e->pd = tu_pd_new(e->t, 0);
	e->priv = tu_pd_new(e->t, MRKEY_PD_PRIVILEGED);
	e->keep = tu_reg1_ok(e->t, e->pd, tu_scratch, 256, A0, A0,
			     MRKEY_ACCESS_ALL);
	e->key = mrkey_mr_lkey(e->keep);
}

/* The table is as env_up() left it. */
static void env_check(struct env *e)
{
	ck_assert_int_eq(tu_lkey_probe(e->t, e->pd, e->key, A0, 256, 0), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(e->keep), 2);
	ck_assert_uint_eq(tu_free_slots(e->t, e->pd, 1u << BITS),
			  (1u << BITS) - 1);
	ck_assert_int_eq(tu_lkey_probe(e->t, e->priv, 0, (uintptr_t)tu_scratch,
				       1, 0),
			 -ENOENT);
}

static void env_down(struct env *e)
{
	tu_dereg(e->keep);
	tu_pd_del(e->pd);
	tu_pd_del(e->priv);
	tu_table_del(e->t);
	mrkey_reclaim_wait();
	ck_assert_int_eq(atomic_load(&tu_stats.live), 0);
	ck_assert_int_eq(atomic_load(&tu_stats.live_bytes), 0);
	tu_alloc_check_clean();
}

/* Operations under test: return the errno, undo a success. */
enum op {
	OP_PD,
	OP_REG1,
	OP_REGN,
	OP_DMA,
	OP_FR_ALLOC,
	OP_REREG,
	OP_COUNT
};

static struct mrkey_seg rereg_segs[8];

static int run_op(struct env *e, enum op op, struct mrkey_mr **mrp,
		  struct mrkey_pd **pdp)
{
	static struct mrkey_seg segs[40];
	struct mrkey_mr_attr a;
	size_t i;

	switch (op) {
	case OP_PD:
		return mrkey_pd_alloc(e->t, 0, pdp);
	case OP_REG1:
		return tu_reg1(e->t, e->pd, tu_scratch, 128, A0, A0, 0, mrp);
	case OP_REGN:
		for (i = 0; i < TU_ARRAY_SIZE(segs); i++) {
			segs[i].addr = tu_scratch + i * 64;
			segs[i].length = 1 + i;
		}
		memset(&a, 0, sizeof(a));
		a.pd = e->pd;
		a.addr = A0;
		a.iova = A0;
		a.length = TU_ARRAY_SIZE(segs) * (TU_ARRAY_SIZE(segs) + 1) / 2;
		a.segs = segs;
		a.nsegs = TU_ARRAY_SIZE(segs);
		return mrkey_mr_reg(e->t, &a, mrp);
	case OP_DMA:
		return mrkey_mr_reg_dma(e->t, e->priv, 0, mrp);
	case OP_FR_ALLOC:
		return mrkey_mr_alloc(e->t, e->pd, 16, mrp);
	case OP_REREG:
		/* A new segment map: the re-registration's one allocation. */
		for (i = 0; i < TU_ARRAY_SIZE(rereg_segs); i++) {
			rereg_segs[i].addr = tu_scratch + i * 32;
			rereg_segs[i].length = 32;
		}
		memset(&a, 0, sizeof(a));
		a.addr = A0;
		a.iova = A0;
		a.length = 256;
		a.segs = rereg_segs;
		a.nsegs = TU_ARRAY_SIZE(rereg_segs);
		return mrkey_mr_rereg(e->keep, MRKEY_REREG_TRANSLATION, &a, 0);
	default:
		ck_abort();
	}
	return -1;
}

static void undo_op(struct env *e, enum op op, struct mrkey_mr *mr,
		    struct mrkey_pd *pd)
{
	if (op == OP_PD)
		tu_pd_del(pd);
	else if (op == OP_REREG)
		e->key = mrkey_mr_lkey(e->keep); /* same range, new key */
	else
		tu_dereg(mr);
}

START_TEST(fail_each_allocation)
{
	enum op op = (enum op)_i;
	int failed = 0, rc = -1;
	long n;

	for (n = 1; n <= MAX_N; n++) {
		struct mrkey_mr *mr = (struct mrkey_mr *)&mr;
		struct mrkey_pd *pd = (struct mrkey_pd *)&pd;
		struct env e;

		tu_alloc_reset();
		env_up(&e);
		mrkey_reclaim_wait();
		tu_alloc_fail_nth(n);
		rc = run_op(&e, op, &mr, &pd);
		tu_alloc_fail_nth(0);
		if (rc == 0) {
			/* Success must mean the failure was never reached. */
			ck_assert_msg(atomic_load(&tu_stats.failures) == 0,
				      "op %d: allocation %ld failed, call "
				      "returned 0",
				      op, n);
			undo_op(&e, op, mr, pd);
			env_check(&e);
			env_down(&e);
			break;
		}
		ck_assert_msg(rc == -ENOMEM, "op %d, allocation %ld: %d", op, n,
			      rc);
		ck_assert_int_eq(atomic_load(&tu_stats.failures), 1);
		ck_assert_ptr_eq(mr, (struct mrkey_mr *)&mr);
		ck_assert_ptr_eq(pd, (struct mrkey_pd *)&pd);
		failed++;
		env_check(&e);
		/* The same call works once memory is back. */
		ck_assert_int_eq(run_op(&e, op, &mr, &pd), 0);
		undo_op(&e, op, mr, pd);
		env_down(&e);
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(failed >= 1, "op %d allocates nothing", op);
}
END_TEST

START_TEST(table_create)
{
	struct mrkey_table_attr attr;
	struct mrkey_table *t = NULL;
	int failed = 0, rc = -1;
	long n;

	tu_attr_init(&attr, 6, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	attr.allocator = &tu_allocator;
	for (n = 1; n <= MAX_N; n++) {
		tu_alloc_reset();
		t = (struct mrkey_table *)&t;
		tu_alloc_fail_nth(n);
		rc = mrkey_table_create(&attr, &t);
		tu_alloc_fail_nth(0);
		if (rc == 0) {
			struct mrkey_pd *pd = tu_pd_new(t, 0);

			ck_assert_int_eq(atomic_load(&tu_stats.failures), 0);
			ck_assert_uint_eq(mrkey_table_size(t), 64);
			ck_assert_uint_eq(tu_free_slots(t, pd, 64), 64);
			tu_pd_del(pd);
			tu_table_del(t);
			mrkey_reclaim_wait();
			ck_assert_int_eq(atomic_load(&tu_stats.live), 0);
			break;
		}
		ck_assert_msg(rc == -ENOMEM, "allocation %ld: %d", n, rc);
		ck_assert_ptr_eq(t, (struct mrkey_table *)&t);
		failed++;
		mrkey_reclaim_wait();
		ck_assert_int_eq(atomic_load(&tu_stats.live), 0);
		tu_alloc_check_clean();
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_int_ge(failed, 1);
}
END_TEST

START_TEST(table_create_backend)
{
	/* With a backend: a failure after bind must not leave it bound. */
	struct mrkey_table_attr attr;
	struct mrkey_table *t = NULL;
	struct tu_fake f;
	int rc = -1;
	long n;

	for (n = 1; n <= MAX_N; n++) {
		tu_alloc_reset();
		tu_fake_init(&f);
		tu_attr_init(&attr, 4, MRKEY_KEYGEN_SEQUENTIAL,
			     MRKEY_LAYOUT_INDEX8);
		attr.allocator = &tu_allocator;
		attr.backend = &tu_fake_ops;
		attr.backend_ctx = &f;
		tu_alloc_fail_nth(n);
		rc = mrkey_table_create(&attr, &t);
		tu_alloc_fail_nth(0);
		if (rc == 0) {
			tu_table_del(t);
			ck_assert_int_eq(atomic_load(&f.bind), 1);
			ck_assert_int_eq(atomic_load(&f.unbind), 1);
			break;
		}
		ck_assert_int_eq(rc, -ENOMEM);
		ck_assert_msg(atomic_load(&f.bind) == atomic_load(&f.unbind),
			      "allocation %ld: bound %d, unbound %d", n,
			      atomic_load(&f.bind), atomic_load(&f.unbind));
		mrkey_reclaim_wait();
		ck_assert_int_eq(atomic_load(&tu_stats.live), 0);
	}
	ck_assert_int_eq(rc, 0);
	mrkey_reclaim_wait();
	ck_assert_int_eq(atomic_load(&tu_stats.live), 0);
	tu_alloc_check_clean();
}
END_TEST

static void count_done_stub(struct mrkey_mr *mr, void *arg)
{
	(void)mr;
	(*(int *)arg)++;
}

START_TEST(no_memory_needed_to_release)
{
	/*
	 * Deregistration (sync and async, busy or not), PD free, validation
	 * and destroy with every allocation refused.
	 */
	struct env e;
	struct mrkey_mr *a, *b, *c, *dma;
	struct mrkey_isge isge;
	struct mrkey_sge sge;
	int calls = 0;
	long before;

	tu_alloc_reset();
	env_up(&e);
	a = tu_reg1_ok(e.t, e.pd, tu_scratch, 64, A0, A0, 0);
	b = tu_reg1_ok(e.t, e.pd, tu_scratch, 64, A0, A0, 0);
	c = tu_reg1_ok(e.t, e.pd, tu_scratch, 64, A0, A0, 0);
	ck_assert_int_eq(mrkey_mr_reg_dma(e.t, e.priv, 0, &dma), 0);
	sge.addr = A0;
	sge.length = 8;
	sge.lkey = mrkey_mr_lkey(b);

	atomic_store(&tu_stats.fail_all, 1);
	before = atomic_load(&tu_stats.calls);
	ck_assert_int_eq(tu_lkey_probe(e.t, e.pd, e.key, A0, 8, 0), 0);
	ck_assert_int_eq(tu_rkey_probe(e.t, e.pd, e.key, A0, 8, 0), 0);
	ck_assert_int_eq(mrkey_lkey_ok(e.t, e.pd, &sge, 0, &isge), 0);
	ck_assert_int_eq(atomic_load(&tu_stats.calls), before);

	ck_assert_int_eq(mrkey_mr_dereg(a, 0), 0);
	ck_assert_int_eq(mrkey_mr_dereg(b, 0), -EBUSY);
	ck_assert_int_eq(mrkey_mr_dereg_async(b, count_done_stub, &calls), 0);
	mrkey_isge_put(&isge);
	/* PERCPU: async deregistrations finish after a grace period. */
	if (tu_refmode == MRKEY_REFCOUNT_PERCPU)
		mrkey_reclaim_wait();
	ck_assert_int_eq(calls, 1);
	ck_assert_int_eq(mrkey_mr_dereg_async(c, count_done_stub, &calls), 0);
	if (tu_refmode == MRKEY_REFCOUNT_PERCPU)
		mrkey_reclaim_wait();
	ck_assert_int_eq(calls, 2);
	ck_assert_int_eq(mrkey_mr_dereg(dma, 0), 0);
	ck_assert_int_eq(mrkey_mr_dereg(e.keep, 0), 0);
	ck_assert_int_eq(mrkey_pd_free(e.pd), 0);
	ck_assert_int_eq(mrkey_pd_free(e.priv), 0);
	ck_assert_int_eq(mrkey_table_destroy(e.t), 0);
	atomic_store(&tu_stats.fail_all, 0);
	mrkey_reclaim_wait();
	ck_assert_int_eq(atomic_load(&tu_stats.live), 0);
	tu_alloc_check_clean();
}
END_TEST

static void add_cases(Suite *s, enum mrkey_refcount_mode m)
{
	TCase *tc = tu_tcase_mode("alloc_fail", m);

	tcase_add_loop_test(tc, fail_each_allocation, 0, OP_COUNT);
	tcase_add_test(tc, table_create);
	tcase_add_test(tc, table_create_backend);
	tcase_add_test(tc, no_memory_needed_to_release);
	suite_add_tcase(s, tc);
}

static Suite *alloc_fail_suite(void)
{
	Suite *s = suite_create("alloc_fail");

	add_cases(s, MRKEY_REFCOUNT_ATOMIC);
	add_cases(s, MRKEY_REFCOUNT_PERCPU);
	return s;
}

int main(void)
{
	return tu_run(alloc_fail_suite());
}
