/* SPDX-License-Identifier: MIT */
/*
 * Tables: creation attributes and their limits, the backend and allocator
 * checks done at creation, destroy's -EBUSY rule, strerror and version.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

static int create_rc(const struct mrkey_table_attr *attr)
{
	struct mrkey_table *t = NULL;
	int rc = mrkey_table_create(attr, &t);

	if (rc == 0) {
		ck_assert_ptr_nonnull(t);
		tu_table_del(t);
	}
	return rc;
}

START_TEST(create_null_attr)
{
	struct mrkey_table *t = NULL;

	ck_assert_int_eq(mrkey_table_create(NULL, &t), 0);
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq(mrkey_table_size(t), 1u << 16);
	tu_table_del(t);
}
END_TEST

START_TEST(create_zeroed_attr)
{
	struct mrkey_table_attr attr;
	struct mrkey_table *t;

	memset(&attr, 0, sizeof(attr));
	t = tu_table_new_attr(&attr);
	ck_assert_uint_eq(mrkey_table_size(t), 1u << 16);
	ck_assert_ptr_null(mrkey_table_backend_ctx(t));
	tu_table_del(t);
}
END_TEST

START_TEST(create_defaults_usable)
{
	/* A default table registers, validates and deregisters. */
	struct mrkey_table *t = tu_table_new_attr(NULL);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 128, 0x4000, 0x4000,
					 MRKEY_ACCESS_ALL);
	uint32_t key = mrkey_mr_lkey(mr);

	ck_assert_uint_ne(key, 0);
	ck_assert_int_eq(tu_lkey_probe(t, pd, key, 0x4000, 128, 0), 0);
	tu_dereg(mr);
	ck_assert_int_eq(tu_lkey_probe(t, pd, key, 0x4000, 128, 0), -ENOENT);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(create_null_out)
{
	struct mrkey_table_attr attr;

	memset(&attr, 0, sizeof(attr));
	ck_assert_int_eq(mrkey_table_create(&attr, NULL), -EINVAL);
	ck_assert_int_eq(mrkey_table_create(NULL, NULL), -EINVAL);
}
END_TEST

/* Loop index: table_bits 1..23 with the qib layout. */
START_TEST(bits_qib_valid)
{
	struct mrkey_table_attr attr;
	struct mrkey_table *t;
	unsigned int b = (unsigned int)_i;

	tu_attr_init(&attr, b, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	t = tu_table_new_attr(&attr);
	ck_assert_uint_eq(mrkey_table_size(t), 1u << b);
	tu_table_del(t);
}
END_TEST

/* Loop index: table_bits 1..24 with the index8 layout. */
START_TEST(bits_index8_valid)
{
	struct mrkey_table_attr attr;
	struct mrkey_table *t;
	unsigned int b = (unsigned int)_i;

	tu_attr_init(&attr, b, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_INDEX8);
	t = tu_table_new_attr(&attr);
	ck_assert_uint_eq(mrkey_table_size(t), 1u << b);
	tu_table_del(t);
}
END_TEST

START_TEST(bits_zero_is_16)
{
	struct mrkey_table_attr attr;
	struct mrkey_table *t;

	tu_attr_init(&attr, 0, MRKEY_KEYGEN_SEQUENTIAL, MRKEY_LAYOUT_INDEX8);
	t = tu_table_new_attr(&attr);
	ck_assert_uint_eq(mrkey_table_size(t), 1u << 16);
	tu_table_del(t);
}
END_TEST

START_TEST(bits_invalid)
{
	static const unsigned int qib_bad[] = { 24, 25, 31,   32,
						33, 64, 1000, UINT_MAX };
	static const unsigned int idx8_bad[] = { 25, 26, 32, 64, UINT_MAX };
	struct mrkey_table_attr attr;
	size_t i;

	for (i = 0; i < TU_ARRAY_SIZE(qib_bad); i++) {
		tu_attr_init(&attr, qib_bad[i], MRKEY_KEYGEN_RANDOM,
			     MRKEY_LAYOUT_QIB);
		ck_assert_msg(create_rc(&attr) == -EINVAL, "qib bits %u",
			      qib_bad[i]);
		attr.keygen = MRKEY_KEYGEN_SEQUENTIAL;
		ck_assert_msg(create_rc(&attr) == -EINVAL, "qib seq bits %u",
			      qib_bad[i]);
	}
	for (i = 0; i < TU_ARRAY_SIZE(idx8_bad); i++) {
		tu_attr_init(&attr, idx8_bad[i], MRKEY_KEYGEN_RANDOM,
			     MRKEY_LAYOUT_INDEX8);
		ck_assert_msg(create_rc(&attr) == -EINVAL, "index8 bits %u",
			      idx8_bad[i]);
	}
}
END_TEST

START_TEST(unknown_modes_and_flags)
{
	struct mrkey_table_attr attr;

	tu_attr_init(&attr, 4, (enum mrkey_keygen)2, MRKEY_LAYOUT_QIB);
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	tu_attr_init(&attr, 4, (enum mrkey_keygen)99, MRKEY_LAYOUT_QIB);
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	tu_attr_init(&attr, 4, MRKEY_KEYGEN_RANDOM, (enum mrkey_key_layout)2);
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	tu_attr_init(&attr, 4, MRKEY_KEYGEN_RANDOM, (enum mrkey_key_layout)99);
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	tu_attr_init(&attr, 4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	attr.refcount = (enum mrkey_refcount_mode)99;
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	attr.refcount = (enum mrkey_refcount_mode)0x7fffffff;
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	attr.refcount = MRKEY_REFCOUNT_PERCPU;
	ck_assert_int_eq(create_rc(&attr), 0);
	attr.refcount = MRKEY_REFCOUNT_ATOMIC;
	ck_assert_int_eq(create_rc(&attr), 0);
	attr.flags = MRKEY_TABLE_NOREF;
	ck_assert_int_eq(create_rc(&attr), 0);
	attr.flags = 2;
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	attr.flags = 0x80000000u;
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	attr.flags = MRKEY_TABLE_NOREF | 0x100;
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
}
END_TEST

START_TEST(comp_mask_unknown_bits)
{
	struct mrkey_table_attr attr;

	tu_attr_init(&attr, 4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	ck_assert_int_eq(create_rc(&attr), 0);
	attr.comp_mask = 1;
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	attr.comp_mask = 1ull << 63;
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	attr.comp_mask = UINT64_MAX;
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	attr.comp_mask = 0;
	ck_assert_int_eq(create_rc(&attr), 0);
}
END_TEST

START_TEST(allocator_null_member)
{
	struct mrkey_allocator a;
	struct mrkey_table_attr attr;

	tu_alloc_reset();
	tu_attr_init(&attr, 4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	attr.allocator = &a;

	a = tu_allocator;
	a.alloc = NULL;
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	a = tu_allocator;
	a.free = NULL;
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	a = tu_allocator;
	a.alloc = NULL;
	a.free = NULL;
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	ck_assert_int_eq(atomic_load(&tu_stats.live), 0);

	/* Complete: accepted, and everything goes back. */
	a = tu_allocator;
	ck_assert_int_eq(create_rc(&attr), 0);
	ck_assert_int_gt(atomic_load(&tu_stats.calls), 0);
	mrkey_reclaim_wait();
	ck_assert_int_eq(atomic_load(&tu_stats.live), 0);
	tu_alloc_check_clean();
}
END_TEST

START_TEST(backend_required_members)
{
	struct mrkey_backend_ops ops;
	struct mrkey_table_attr attr;
	struct tu_fake f;

	tu_fake_init(&f);
	tu_attr_init(&attr, 4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	attr.backend = &ops;
	attr.backend_ctx = &f;

	ops = tu_fake_ops;
	ck_assert_int_eq(create_rc(&attr), 0);

	ops = tu_fake_ops;
	ops.key_publish = NULL;
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	ops = tu_fake_ops;
	ops.key_unpublish = NULL;
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	ops = tu_fake_ops;
	ops.name = NULL;
	ck_assert_int_eq(create_rc(&attr), -EINVAL);

	/* Only the required members: enough. */
	memset(&ops, 0, sizeof(ops));
	ops.key_publish = tu_fake_ops.key_publish;
	ops.key_unpublish = tu_fake_ops.key_unpublish;
	ops.name = "minimal";
	ck_assert_int_eq(create_rc(&attr), 0);
}
END_TEST

START_TEST(backend_bind_unbind)
{
	struct mrkey_table_attr attr;
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct tu_fake f;

	tu_fake_init(&f);
	tu_attr_init(&attr, 4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	attr.backend = &tu_fake_ops;
	attr.backend_ctx = &f;
	t = tu_table_new_attr(&attr);
	ck_assert_int_eq(atomic_load(&f.bind), 1);
	ck_assert_ptr_eq(f.bound, t);
	ck_assert_ptr_eq(mrkey_table_backend_ctx(t), &f);
	ck_assert_int_eq(atomic_load(&f.unbind), 0);

	/* A refused destroy does not unbind. */
	pd = tu_pd_new(t, 0);
	ck_assert_int_eq(mrkey_table_destroy(t), -EBUSY);
	ck_assert_int_eq(atomic_load(&f.unbind), 0);
	tu_pd_del(pd);

	tu_table_del(t);
	ck_assert_int_eq(atomic_load(&f.bind), 1);
	ck_assert_int_eq(atomic_load(&f.unbind), 1);
}
END_TEST

START_TEST(backend_bind_fails)
{
	static const int errs[] = { -EIO, -ENODEV, -ENOMEM };
	struct mrkey_table_attr attr;
	struct mrkey_table *t;
	struct tu_fake f;
	size_t i;

	for (i = 0; i < TU_ARRAY_SIZE(errs); i++) {
		tu_alloc_reset();
		tu_fake_init(&f);
		f.bind_err = errs[i];
		tu_attr_init(&attr, 6, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
		attr.backend = &tu_fake_ops;
		attr.backend_ctx = &f;
		attr.allocator = &tu_allocator;
		t = (struct mrkey_table *)&f; /* must not be touched */
		ck_assert_int_eq(mrkey_table_create(&attr, &t), errs[i]);
		ck_assert_ptr_eq(t, (struct mrkey_table *)&f);
		ck_assert_int_eq(atomic_load(&f.bind), 1);
		ck_assert_int_eq(atomic_load(&f.unbind), 0);
		mrkey_reclaim_wait();
		ck_assert_int_eq(atomic_load(&tu_stats.live), 0);
		tu_alloc_check_clean();
	}
}
END_TEST

START_TEST(backend_params_limits)
{
	struct mrkey_backend_params p;
	struct mrkey_table_attr attr;
	struct tu_fake f;

	tu_fake_init(&f);
	memset(&p, 0, sizeof(p));
	p.min_table_bits = 4;
	p.max_table_bits = 8;
	tu_attr_init(&attr, 3, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	attr.backend = &tu_fake_ops;
	attr.backend_params = &p;
	attr.backend_ctx = &f;
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	attr.table_bits = 9;
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	attr.table_bits = 4;
	ck_assert_int_eq(create_rc(&attr), 0);
	attr.table_bits = 8;
	ck_assert_int_eq(create_rc(&attr), 0);

	/* A layout the backend does not list. */
	memset(&p, 0, sizeof(p));
	p.layouts = 1u << MRKEY_LAYOUT_QIB;
	attr.table_bits = 6;
	attr.layout = MRKEY_LAYOUT_INDEX8;
	ck_assert_int_eq(create_rc(&attr), -EINVAL);
	attr.layout = MRKEY_LAYOUT_QIB;
	ck_assert_int_eq(create_rc(&attr), 0);
}
END_TEST

START_TEST(destroy_busy_pd)
{
	struct mrkey_table *t =
		tu_table_new(4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr;

	ck_assert_int_eq(mrkey_table_destroy(t), -EBUSY);
	/* The table was kept and still works. */
	ck_assert_uint_eq(mrkey_table_size(t), 16);
	mr = tu_reg1_ok(t, pd, tu_scratch, 64, 0x1000, 0x1000, 0);
	ck_assert_int_eq(tu_lkey_probe(t, pd, mrkey_mr_lkey(mr), 0x1000, 64, 0),
			 0);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(destroy_busy_mr)
{
	struct mrkey_table *t =
		tu_table_new(4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr =
		tu_reg1_ok(t, pd, tu_scratch, 64, 0x1000, 0x1000, 0);
	uint32_t key = mrkey_mr_lkey(mr);

	ck_assert_int_eq(mrkey_table_destroy(t), -EBUSY);
	ck_assert_int_eq(tu_lkey_probe(t, pd, key, 0x1000, 64, 0), 0);
	ck_assert_int_eq(mrkey_mr_published(mr), 1);
	tu_dereg(mr);
	ck_assert_int_eq(mrkey_table_destroy(t), -EBUSY); /* the PD */
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(destroy_busy_dma)
{
	struct mrkey_table *t =
		tu_table_new(4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, MRKEY_PD_PRIVILEGED);
	struct mrkey_mr *mr = NULL;

	ck_assert_int_eq(mrkey_mr_reg_dma(t, pd, 0, &mr), 0);
	ck_assert_int_eq(mrkey_pd_free(pd), -EBUSY);
	ck_assert_int_eq(mrkey_table_destroy(t), -EBUSY);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(destroy_busy_unfreed_region)
{
	/* A region left by an -EBUSY deregistration still counts. */
	struct mrkey_table *t =
		tu_table_new(4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr =
		tu_reg1_ok(t, pd, tu_scratch, 64, 0x1000, 0x1000, 0);
	struct mrkey_sge sge = { 0x1000, 64, mrkey_mr_lkey(mr) };
	struct mrkey_isge isge;

	ck_assert_int_eq(mrkey_lkey_ok(t, pd, &sge, 0, &isge), 0);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	ck_assert_int_eq(mrkey_pd_free(pd), -EBUSY);
	ck_assert_int_eq(mrkey_table_destroy(t), -EBUSY);
	mrkey_isge_put(&isge);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(null_args)
{
	ck_assert_int_eq(mrkey_table_destroy(NULL), -EINVAL);
	ck_assert_uint_eq(mrkey_table_size(NULL), 0);
	ck_assert_ptr_null(mrkey_table_backend_ctx(NULL));
}
END_TEST

START_TEST(no_leak_default_cycle)
{
	/* Create/use/destroy with the counting allocator: all returned. */
	struct mrkey_table_attr attr;
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *mr;
	int i;

	tu_alloc_reset();
	tu_attr_init(&attr, 5, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	attr.allocator = &tu_allocator;
	t = tu_table_new_attr(&attr);
	pd = tu_pd_new(t, MRKEY_PD_PRIVILEGED);
	for (i = 0; i < 100; i++) {
		mr = tu_reg1_ok(t, pd, tu_scratch, 64, 0x1000, 0x1000, 0);
		tu_dereg(mr);
	}
	ck_assert_int_eq(mrkey_mr_reg_dma(t, pd, 0, &mr), 0);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
	mrkey_reclaim_wait();
	ck_assert_int_eq(atomic_load(&tu_stats.live), 0);
	ck_assert_int_eq(atomic_load(&tu_stats.live_bytes), 0);
	tu_alloc_check_clean();
}
END_TEST

START_TEST(strerror_codes)
{
	static const int codes[] = { EINVAL, ENOMEM, EBUSY,  ENOENT,  EPERM,
				     ERANGE, EACCES, EEXIST, EALREADY };
	static const int odd[] = { 0,       4095,    -4095,   123456,
				   -123456, INT_MAX, INT_MIN, -INT_MAX };
	size_t i, j;

	for (i = 0; i < TU_ARRAY_SIZE(codes); i++) {
		const char *s = mrkey_strerror(-codes[i]);

		ck_assert_ptr_nonnull(s);
		ck_assert_msg(s[0] != '\0', "empty text for %d", -codes[i]);
		ck_assert_str_eq(s, mrkey_strerror(codes[i]));
		for (j = 0; j < i; j++)
			ck_assert_msg(strcmp(s, mrkey_strerror(-codes[j])),
				      "same text for %d and %d", -codes[i],
				      -codes[j]);
	}
	for (i = 0; i < TU_ARRAY_SIZE(odd); i++)
		ck_assert_ptr_nonnull(mrkey_strerror(odd[i]));
}
END_TEST

START_TEST(version)
{
	char buf[64];

	ck_assert_uint_eq(mrkey_version(), MRKEY_VERSION_HEX);
	ck_assert_uint_eq(MRKEY_VERSION_HEX,
			  (MRKEY_VERSION_MAJOR << 16) |
				  (MRKEY_VERSION_MINOR << 8) |
				  MRKEY_VERSION_PATCH);
	snprintf(buf, sizeof(buf), "%d.%d.%d", MRKEY_VERSION_MAJOR,
		 MRKEY_VERSION_MINOR, MRKEY_VERSION_PATCH);
	ck_assert_ptr_nonnull(mrkey_version_string());
	ck_assert_str_eq(mrkey_version_string(), buf);
}
END_TEST

static Suite *table_suite(void)
{
	Suite *s = suite_create("table");
	TCase *tc;

	tc = tu_tcase("create");
	tcase_add_test(tc, create_null_attr);
	tcase_add_test(tc, create_zeroed_attr);
	tcase_add_test(tc, create_defaults_usable);
	tcase_add_test(tc, create_null_out);
	tcase_add_loop_test(tc, bits_qib_valid, 1, 24);
	tcase_add_loop_test(tc, bits_index8_valid, 1, 25);
	tcase_add_test(tc, bits_zero_is_16);
	tcase_add_test(tc, bits_invalid);
	tcase_add_test(tc, unknown_modes_and_flags);
	tcase_add_test(tc, comp_mask_unknown_bits);
	tcase_add_test(tc, allocator_null_member);
	suite_add_tcase(s, tc);

	tc = tu_tcase("backend");
	tcase_add_test(tc, backend_required_members);
	tcase_add_test(tc, backend_bind_unbind);
	tcase_add_test(tc, backend_bind_fails);
	tcase_add_test(tc, backend_params_limits);
	suite_add_tcase(s, tc);

	tc = tu_tcase("destroy");
	tcase_add_test(tc, destroy_busy_pd);
	tcase_add_test(tc, destroy_busy_mr);
	tcase_add_test(tc, destroy_busy_dma);
	tcase_add_test(tc, destroy_busy_unfreed_region);
	tcase_add_test(tc, null_args);
	tcase_add_test(tc, no_leak_default_cycle);
	suite_add_tcase(s, tc);

	tc = tu_tcase("misc");
	tcase_add_test(tc, strerror_codes);
	tcase_add_test(tc, version);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(table_suite());
}
