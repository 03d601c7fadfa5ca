/* SPDX-License-Identifier: MIT */
/* Protection domains: allocation, flags, -EBUSY while regions exist. */
#include <string.h>

#include "testutil.h"

START_TEST(alloc_free)
{
	struct mrkey_table *t =
		tu_table_new(4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *a = tu_pd_new(t, 0);
	struct mrkey_pd *b = tu_pd_new(t, MRKEY_PD_PRIVILEGED);
	struct mrkey_pd *c = tu_pd_new(t, 0);

	ck_assert_ptr_ne(a, b);
	ck_assert_ptr_ne(a, c);
	ck_assert_ptr_ne(b, c);
	ck_assert_uint_eq(mrkey_pd_flags(a), 0);
	ck_assert_uint_eq(mrkey_pd_flags(b), MRKEY_PD_PRIVILEGED);
	ck_assert_uint_eq(mrkey_pd_flags(c), 0);
	tu_pd_del(b);
	tu_pd_del(a);
	tu_pd_del(c);
	tu_table_del(t);
}
END_TEST

START_TEST(many)
{
	struct mrkey_table *t =
		tu_table_new(2, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pds[200];
	size_t i;

	/* PDs take no slot: far more PDs than slots. */
	for (i = 0; i < TU_ARRAY_SIZE(pds); i++)
		pds[i] = tu_pd_new(t, i % 2 ? MRKEY_PD_PRIVILEGED : 0);
	ck_assert_uint_eq(tu_free_slots(t, pds[7], 16), 4);
	for (i = TU_ARRAY_SIZE(pds); i-- > 0;)
		tu_pd_del(pds[i]);
	tu_table_del(t);
}
END_TEST

START_TEST(unknown_flag)
{
	static const unsigned int bad[] = { 2, 3, 4, 0x100, 0x80000000u, ~0u };
	struct mrkey_table *t =
		tu_table_new(4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd;
	size_t i;

	for (i = 0; i < TU_ARRAY_SIZE(bad); i++) {
		pd = (struct mrkey_pd *)&pd;
		ck_assert_msg(mrkey_pd_alloc(t, bad[i], &pd) == -EINVAL,
			      "flags %#x accepted", bad[i]);
		ck_assert_ptr_eq(pd, (struct mrkey_pd *)&pd);
	}
	/* Nothing was left behind: the table destroys. */
	tu_table_del(t);
}
END_TEST

START_TEST(null_args)
{
	struct mrkey_table *t =
		tu_table_new(4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd;

	ck_assert_int_eq(mrkey_pd_alloc(NULL, 0, &pd), -EINVAL);
	ck_assert_int_eq(mrkey_pd_alloc(t, 0, NULL), -EINVAL);
	ck_assert_int_eq(mrkey_pd_alloc(NULL, MRKEY_PD_PRIVILEGED, NULL),
			 -EINVAL);
	ck_assert_int_eq(mrkey_pd_free(NULL), -EINVAL);
	ck_assert_uint_eq(mrkey_pd_flags(NULL), 0);
	tu_table_del(t);
}
END_TEST

START_TEST(free_busy)
{
	struct mrkey_table *t =
		tu_table_new(4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0), *other = tu_pd_new(t, 0);
	struct mrkey_mr *mr =
		tu_reg1_ok(t, pd, tu_scratch, 64, 0x1000, 0x1000, 0);
	uint32_t key = mrkey_mr_lkey(mr);

	ck_assert_int_eq(mrkey_pd_free(pd), -EBUSY);
	/* Kept: the region still validates through it. */
	ck_assert_int_eq(tu_lkey_probe(t, pd, key, 0x1000, 64, 0), 0);
	ck_assert_int_eq(tu_lkey_probe(t, other, key, 0x1000, 64, 0), -EPERM);
	/* The other PD has no region and goes. */
	tu_pd_del(other);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(free_busy_unfreed_region)
{
	struct mrkey_table *t =
		tu_table_new(4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr =
		tu_reg1_ok(t, pd, tu_scratch, 64, 0x1000, 0x1000, 0);
	struct mrkey_sge sge = { 0x1000, 8, mrkey_mr_lkey(mr) };
	struct mrkey_isge isge;

	ck_assert_int_eq(mrkey_lkey_ok(t, pd, &sge, 0, &isge), 0);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	ck_assert_int_eq(mrkey_pd_free(pd), -EBUSY);
	mrkey_isge_put(&isge);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(free_busy_dma)
{
	struct mrkey_table *t =
		tu_table_new(4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, MRKEY_PD_PRIVILEGED);
	struct mrkey_mr *mr;

	ck_assert_int_eq(mrkey_mr_reg_dma(t, pd, 0, &mr), 0);
	ck_assert_int_eq(mrkey_pd_free(pd), -EBUSY);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(no_leak)
{
	struct mrkey_table_attr attr;
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	long live;
	int i;

	tu_alloc_reset();
	tu_attr_init(&attr, 4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	attr.allocator = &tu_allocator;
	t = tu_table_new_attr(&attr);
	live = atomic_load(&tu_stats.live);
	for (i = 0; i < 50; i++) {
		pd = tu_pd_new(t, (unsigned int)i & 1);
		tu_pd_del(pd);
	}
	mrkey_reclaim_wait();
	ck_assert_int_eq(atomic_load(&tu_stats.live), live);
	tu_table_del(t);
	mrkey_reclaim_wait();
	ck_assert_int_eq(atomic_load(&tu_stats.live), 0);
	tu_alloc_check_clean();
}
END_TEST

static Suite *pd_suite(void)
{
	Suite *s = suite_create("pd");
	TCase *tc = tu_tcase("pd");

	tcase_add_test(tc, alloc_free);
	tcase_add_test(tc, many);
	tcase_add_test(tc, unknown_flag);
	tcase_add_test(tc, null_args);
	tcase_add_test(tc, free_busy);
	tcase_add_test(tc, free_busy_unfreed_region);
	tcase_add_test(tc, free_busy_dma);
	tcase_add_test(tc, no_leak);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(pd_suite());
}
