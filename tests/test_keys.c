/* SPDX-License-Identifier: MIT */
/*
 * Keys: table capacity, the two key layouts, qib's sequential scheme (checked
 * against a model of qib_alloc_lkey), seeded and unseeded random keys, and
 * key hygiene (no reissue of a just-freed key, stale keys never resolve).
 */
#include <string.h>

#include "testutil.h"

#define BUF_ADDR 0x10000ull
#define BUF_LEN 64

struct cfg {
	unsigned int bits;
	enum mrkey_keygen keygen;
	enum mrkey_key_layout layout;
};

static const struct cfg cfgs[] = {
	{ 1, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB },
	{ 2, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB },
	{ 3, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB },
	{ 4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB },
	{ 10, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB },
	{ 1, MRKEY_KEYGEN_SEQUENTIAL, MRKEY_LAYOUT_QIB },
	{ 3, MRKEY_KEYGEN_SEQUENTIAL, MRKEY_LAYOUT_QIB },
	{ 10, MRKEY_KEYGEN_SEQUENTIAL, MRKEY_LAYOUT_QIB },
	{ 1, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_INDEX8 },
	{ 2, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_INDEX8 },
	{ 4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_INDEX8 },
	{ 10, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_INDEX8 },
	{ 1, MRKEY_KEYGEN_SEQUENTIAL, MRKEY_LAYOUT_INDEX8 },
	{ 4, MRKEY_KEYGEN_SEQUENTIAL, MRKEY_LAYOUT_INDEX8 },
};

static uint32_t key_index(const struct cfg *c, uint32_t key)
{
	if (c->layout == MRKEY_LAYOUT_QIB)
		return key >> (32 - c->bits);
	return key >> 8;
}

static int reg(struct mrkey_table *t, struct mrkey_pd *pd,
	       struct mrkey_mr **mrp)
{
	return tu_reg1(t, pd, tu_scratch, BUF_LEN, BUF_ADDR, BUF_ADDR,
		       MRKEY_ACCESS_ALL, mrp);
}

static struct mrkey_mr *reg_ok(struct mrkey_table *t, struct mrkey_pd *pd)
{
	struct mrkey_mr *mr = NULL;
	int rc = reg(t, pd, &mr);

	ck_assert_msg(rc == 0, "reg: %d", rc);
	ck_assert_uint_eq(mrkey_mr_lkey(mr), mrkey_mr_rkey(mr));
	ck_assert_uint_ne(mrkey_mr_lkey(mr), 0);
	return mr;
}

static int probe(struct mrkey_table *t, struct mrkey_pd *pd, uint32_t key)
{
	return tu_lkey_probe(t, pd, key, BUF_ADDR, BUF_LEN, 0);
}

/*
 * Loop over cfgs: exactly 2^b regions fit, with distinct non-zero keys whose
 * index field names each slot once; the next registration fails with
 * -ENOMEM and changes nothing.
 */
START_TEST(capacity_exact)
{
	const struct cfg *c = &cfgs[_i];
	uint32_t n = 1u << c->bits, i, j;
	struct mrkey_mr **mrs = calloc(n, sizeof(*mrs));
	unsigned char *seen = calloc(n, 1);
	struct mrkey_mr *extra, *sentinel = (struct mrkey_mr *)&extra;
	struct mrkey_table *t = tu_table_new(c->bits, c->keygen, c->layout);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	uint32_t *keys = calloc(n, sizeof(*keys));

	ck_assert_ptr_nonnull(mrs);
	ck_assert_ptr_nonnull(seen);
	ck_assert_ptr_nonnull(keys);
	ck_assert_uint_eq(mrkey_table_size(t), n);
	for (i = 0; i < n; i++) {
		uint32_t idx;

		mrs[i] = reg_ok(t, pd);
		keys[i] = mrkey_mr_lkey(mrs[i]);
		idx = key_index(c, keys[i]);
		ck_assert_msg(idx < n, "key %#x: index %u >= %u", keys[i], idx,
			      n);
		ck_assert_msg(!seen[idx], "key %#x: slot %u used twice",
			      keys[i], idx);
		seen[idx] = 1;
		if (c->layout == MRKEY_LAYOUT_INDEX8)
			ck_assert_uint_eq(keys[i] >> (8 + c->bits), 0);
	}
	for (i = 0; i < n; i++)
		for (j = 0; j < i && n <= 16; j++)
			ck_assert_uint_ne(keys[i], keys[j]);

	/* Full: -ENOMEM, the out pointer untouched, nothing else moved. */
	extra = sentinel;
	ck_assert_int_eq(reg(t, pd, &extra), -ENOMEM);
	ck_assert_ptr_eq(extra, sentinel);
	ck_assert_int_eq(reg(t, pd, &extra), -ENOMEM);
	for (i = 0; i < n; i++) {
		ck_assert_int_eq(probe(t, pd, keys[i]), 0);
		ck_assert_uint_eq(mrkey_mr_refcount(mrs[i]), 2);
		ck_assert_int_eq(mrkey_mr_published(mrs[i]), 1);
		ck_assert_uint_eq(mrkey_mr_lkey(mrs[i]), keys[i]);
	}

	/* One out, one in, full again. */
	tu_dereg(mrs[n / 2]);
	mrs[n / 2] = reg_ok(t, pd);
	ck_assert_int_eq(reg(t, pd, &extra), -ENOMEM);
	for (i = 0; i < n; i++)
		tu_dereg(mrs[i]);
	ck_assert_uint_eq(tu_free_slots(t, pd, n), n);

	tu_pd_del(pd);
	tu_table_del(t);
	free(keys);
	free(seen);
	free(mrs);
}
END_TEST

/* A model of qib_alloc_lkey(): scan from next, one generation counter. */
struct qib_model {
	unsigned int bits;
	uint32_t next, gen;
	unsigned char *used;
	unsigned long skips; /* times key 0 came up and was bumped */
};

static void model_init(struct qib_model *m, unsigned int bits)
{
	m->bits = bits;
	m->next = 0;
	m->gen = 0;
	m->skips = 0;
	m->used = calloc(1u << bits, 1);
	ck_assert_ptr_nonnull(m->used);
}

/* Returns the key the model issues, or 0 when the table is full. */
static uint32_t model_alloc(struct qib_model *m)
{
	uint32_t max = 1u << m->bits, r = m->next, n = r, key;

	while (m->used[r]) {
		r = (r + 1) & (max - 1);
		if (r == n)
			return 0;
	}
	m->next = (r + 1) & (max - 1);
	m->gen++;
	key = (r << (32 - m->bits)) |
	      ((((1u << (24 - m->bits)) - 1) & m->gen) << 8);
	if (key == 0) {
		key |= 1u << 8;
		m->gen++;
		m->skips++;
	}
	m->used[r] = 1;
	return key;
}

static void model_free(struct qib_model *m, uint32_t key)
{
	m->used[key >> (32 - m->bits)] = 0;
}

START_TEST(sequential_qib_first_keys)
{
	static const uint32_t want[] = { 0x00000100, 0x00010200, 0x00020300,
					 0x00030400 };
	struct mrkey_table *t =
		tu_table_new(16, MRKEY_KEYGEN_SEQUENTIAL, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mrs[TU_ARRAY_SIZE(want)];
	size_t i;

	for (i = 0; i < TU_ARRAY_SIZE(want); i++) {
		mrs[i] = reg_ok(t, pd);
		ck_assert_msg(mrkey_mr_lkey(mrs[i]) == want[i],
			      "key %zu: %#x, qib gives %#x", i,
			      mrkey_mr_lkey(mrs[i]), want[i]);
	}
	for (i = 0; i < TU_ARRAY_SIZE(want); i++)
		tu_dereg(mrs[i]);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/*
 * b = 16: a few hundred registrations with deregistrations mixed in (the
 * generation wraps at 256), every key as qib would issue it.
 */
START_TEST(sequential_qib_model_mixed)
{
	struct mrkey_table *t =
		tu_table_new(16, MRKEY_KEYGEN_SEQUENTIAL, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *live[64] = { 0 };
	struct qib_model m;
	uint64_t rs = 7;
	int i;
	size_t k;

	model_init(&m, 16);
	for (i = 0; i < 700; i++) {
		k = tu_rand(&rs) % TU_ARRAY_SIZE(live);
		if (live[k]) {
			model_free(&m, mrkey_mr_lkey(live[k]));
			tu_dereg(live[k]);
			live[k] = NULL;
		} else {
			uint32_t want = model_alloc(&m);

			live[k] = reg_ok(t, pd);
			ck_assert_msg(mrkey_mr_lkey(live[k]) == want,
				      "step %d: key %#x, qib gives %#x", i,
				      mrkey_mr_lkey(live[k]), want);
		}
	}
	for (k = 0; k < TU_ARRAY_SIZE(live); k++)
		if (live[k])
			tu_dereg(live[k]);
	free(m.used);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/*
 * b = 12: fill the table, free slot 0 and cycle registrations through it
 * until the generation wraps so that slot 0 would get key 0; qib bumps the
 * generation instead. Includes -ENOMEM on the full table, which must not
 * advance the scan or the generation.
 */
START_TEST(sequential_qib_model_skip_zero)
{
	const unsigned int bits = 12;
	const uint32_t n = 1u << bits;
	struct mrkey_table *t =
		tu_table_new(bits, MRKEY_KEYGEN_SEQUENTIAL, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr **mrs = calloc(n, sizeof(*mrs));
	struct mrkey_mr *mr, *extra;
	struct qib_model m;
	uint32_t i, want;

	ck_assert_ptr_nonnull(mrs);
	model_init(&m, bits);
	for (i = 0; i < n; i++) {
		want = model_alloc(&m);
		mrs[i] = reg_ok(t, pd);
		ck_assert_msg(mrkey_mr_lkey(mrs[i]) == want,
			      "fill %u: key %#x, qib gives %#x", i,
			      mrkey_mr_lkey(mrs[i]), want);
	}
	ck_assert_uint_eq(model_alloc(&m), 0);
	ck_assert_int_eq(reg(t, pd, &extra), -ENOMEM);

	model_free(&m, mrkey_mr_lkey(mrs[0]));
	tu_dereg(mrs[0]);
	for (i = 0; i < n + 64; i++) {
		want = model_alloc(&m);
		mr = reg_ok(t, pd);
		ck_assert_msg(mrkey_mr_lkey(mr) == want,
			      "cycle %u: key %#x, qib gives %#x", i,
			      mrkey_mr_lkey(mr), want);
		if (i % 1024 == 0)
			ck_assert_int_eq(reg(t, pd, &extra), -ENOMEM);
		model_free(&m, want);
		tu_dereg(mr);
	}
	ck_assert_uint_ge(m.skips, 1); /* the scenario did reach key 0 */

	for (i = 1; i < n; i++)
		tu_dereg(mrs[i]);
	free(m.used);
	free(mrs);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/*
 * Feed two tables the same calls and collect the keys. The script mixes
 * registrations and deregistrations, and fills the table once.
 */
static void run_script(const struct mrkey_table_attr *attr, uint32_t *keys,
		       size_t nkeys)
{
	struct mrkey_table *t = tu_table_new_attr(attr);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	uint32_t n = mrkey_table_size(t), i;
	struct mrkey_mr **live = calloc(n, sizeof(*live));
	uint64_t rs = 12345;
	size_t got = 0;

	ck_assert_ptr_nonnull(live);
	while (got < nkeys) {
		i = (uint32_t)(tu_rand(&rs) % n);
		if (live[i] && tu_rand(&rs) % 3 == 0) {
			tu_dereg(live[i]);
			live[i] = NULL;
		} else if (!live[i]) {
			live[i] = reg_ok(t, pd);
			keys[got++] = mrkey_mr_lkey(live[i]);
		}
	}
	for (i = 0; i < n; i++)
		if (live[i])
			tu_dereg(live[i]);
	free(live);
	tu_pd_del(pd);
	tu_table_del(t);
}

START_TEST(sequential_deterministic)
{
	static const enum mrkey_key_layout layouts[] = { MRKEY_LAYOUT_QIB,
							 MRKEY_LAYOUT_INDEX8 };
	struct mrkey_table_attr attr;
	uint32_t a[600], b[600];
	size_t l;

	for (l = 0; l < TU_ARRAY_SIZE(layouts); l++) {
		tu_attr_init(&attr, 5, MRKEY_KEYGEN_SEQUENTIAL, layouts[l]);
		run_script(&attr, a, TU_ARRAY_SIZE(a));
		run_script(&attr, b, TU_ARRAY_SIZE(b));
		ck_assert_mem_eq(a, b, sizeof(a));
	}
}
END_TEST

START_TEST(random_seeded_reproducible)
{
	static const enum mrkey_key_layout layouts[] = { MRKEY_LAYOUT_QIB,
							 MRKEY_LAYOUT_INDEX8 };
	struct mrkey_table_attr attr;
	uint32_t a[300], b[300], c[300];
	size_t l;

	for (l = 0; l < TU_ARRAY_SIZE(layouts); l++) {
		tu_attr_init(&attr, 8, MRKEY_KEYGEN_RANDOM, layouts[l]);
		attr.seed = 0x1234567890abcdefull;
		run_script(&attr, a, TU_ARRAY_SIZE(a));
		run_script(&attr, b, TU_ARRAY_SIZE(b));
		ck_assert_mem_eq(a, b, sizeof(a));
		attr.seed = 0x1234567890abcdeeull;
		run_script(&attr, c, TU_ARRAY_SIZE(c));
		/* 300 keys of >= 8 random bits each: equal only by a bug. */
		ck_assert_msg(memcmp(a, c, sizeof(a)) != 0,
			      "seeds differ, keys do not (layout %zu)", l);
	}
}
END_TEST

START_TEST(random_unseeded_differs)
{
	/* seed 0: from the kernel; two tables must not agree. */
	struct mrkey_table_attr attr;
	uint32_t a[64], b[64];

	tu_attr_init(&attr, 16, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	run_script(&attr, a, TU_ARRAY_SIZE(a));
	run_script(&attr, b, TU_ARRAY_SIZE(b));
	ck_assert_msg(memcmp(a, b, sizeof(a)) != 0,
		      "two unseeded tables issued the same keys");
}
END_TEST

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Unseeded keys come from a buffer of kernel randomness refilled every few
 * registrations. 2000 register/deregister cycles on a 2^8-slot table
 * (24 random bits per key) cross about a hundred refills; their random
 * parts agree by chance in about 0.12 pairs on average, so 8 or more equal
 * pairs has probability below 1e-11, while a buffer handed out twice
 * repeats itself every few keys.
 */
START_TEST(random_unseeded_refills)
{
	enum { N = 2000 };
	const uint32_t mask = (1u << 24) - 1;
	struct mrkey_table *t = tu_table_new(8, MRKEY_KEYGEN_RANDOM,
					     MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	static uint32_t r[N];
	unsigned int i, same = 0;

	for (i = 0; i < N; i++) {
		struct mrkey_mr *mr = reg_ok(t, pd);

		r[i] = mrkey_mr_lkey(mr) & mask;
		tu_dereg(mr);
	}
	qsort(r, N, sizeof(r[0]), cmp_u32);
	for (i = 1; i < N; i++)
		same += r[i] == r[i - 1];
	ck_assert_msg(same < 8, "%u equal pairs of random key bits", same);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/*
 * A registration the backend refuses hands its picked key back (the
 * generator's position is restored), in unseeded tables too, where that
 * position is an offset into the buffer of kernel randomness: 300 refused
 * and 300 accepted registrations cross a dozen refills. The refused key
 * never resolves; every accepted one does, until its deregistration.
 */
START_TEST(random_publish_fail_across_refills)
{
	struct mrkey_table_attr attr;
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *mr = NULL;
	struct tu_fake f;
	uint32_t key;
	int i;

	tu_fake_init(&f);
	tu_attr_init(&attr, 6, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	attr.backend = &tu_fake_ops;
	attr.backend_ctx = &f;
	t = tu_table_new_attr(&attr);
	pd = tu_pd_new(t, 0);
	for (i = 0; i < 300; i++) {
		f.publish_err = -EIO;
		ck_assert_int_eq(reg(t, pd, &mr), -EIO);
		ck_assert_int_eq(probe(t, pd, f.pub_key), -ENOENT);
		f.publish_err = 0;
		mr = reg_ok(t, pd);
		key = mrkey_mr_lkey(mr);
		ck_assert_int_eq(probe(t, pd, key), 0);
		tu_dereg(mr);
		ck_assert_int_eq(probe(t, pd, key), -ENOENT);
	}
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/*
 * Loop over cfgs with bits 1: deregistering and at once registering again
 * never reissues the key just freed, and a slot's new key always differs
 * from its previous one. Keys are never 0.
 */
START_TEST(no_reissue_after_dereg)
{
	const struct cfg *c = &cfgs[_i];
	struct mrkey_table *t = tu_table_new(c->bits, c->keygen, c->layout);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	uint32_t last_in_slot[1u << 4] = { 0 };
	uint32_t prev = 0, key, idx;
	struct mrkey_mr *mr;
	int i;

	ck_assert_uint_le(c->bits, 4);
	for (i = 0; i < 3000; i++) {
		mr = reg_ok(t, pd);
		key = mrkey_mr_lkey(mr);
		idx = key_index(c, key);
		ck_assert_uint_lt(idx, 1u << c->bits);
		ck_assert_msg(key != prev, "iteration %d reissued %#x", i, key);
		ck_assert_msg(key != last_in_slot[idx],
			      "slot %u got its last key %#x again", idx, key);
		last_in_slot[idx] = key;
		prev = key;
		tu_dereg(mr);
		ck_assert_int_eq(probe(t, pd, key), -ENOENT);
	}
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/*
 * Loop over cfgs with bits 1: with the table full, free A and register C,
 * which must take A's slot; A's key never resolves. More generally a key
 * validates exactly when it is live.
 */
START_TEST(stale_key_after_reuse)
{
	const struct cfg *c = &cfgs[_i];
	struct mrkey_table *t = tu_table_new(c->bits, c->keygen, c->layout);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	uint32_t n = 1u << c->bits, i, j, k, hist[64], nhist = 0;
	struct mrkey_mr *mrs[1u << 4];
	uint64_t rs = 99;
	int it;

	ck_assert_uint_le(c->bits, 4);
	for (i = 0; i < n; i++)
		mrs[i] = reg_ok(t, pd);
	for (it = 0; it < 1000; it++) {
		uint32_t old, new, old_idx;

		i = (uint32_t)(tu_rand(&rs) % n);
		old = mrkey_mr_lkey(mrs[i]);
		old_idx = key_index(c, old);
		tu_dereg(mrs[i]);
		ck_assert_int_eq(probe(t, pd, old), -ENOENT);
		mrs[i] = reg_ok(t, pd);
		new = mrkey_mr_lkey(mrs[i]);
		ck_assert_uint_eq(key_index(c, new), old_idx);
		ck_assert_uint_ne(new, old);
		ck_assert_int_eq(probe(t, pd, old), -ENOENT);
		ck_assert_int_eq(probe(t, pd, new), 0);

		hist[nhist++ % TU_ARRAY_SIZE(hist)] = old;
		for (j = 0; j < nhist && j < TU_ARRAY_SIZE(hist); j++) {
			int live = 0;

			for (k = 0; k < n; k++)
				live |= mrkey_mr_lkey(mrs[k]) == hist[j];
			ck_assert_int_eq(probe(t, pd, hist[j]),
					 live ? 0 : -ENOENT);
		}
	}
	for (i = 0; i < n; i++)
		tu_dereg(mrs[i]);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/*
 * Random keys look random. 4096 registrations on a 2^16-slot table, none
 * freed. Each bound below fails by chance with probability far below 1e-9:
 * - a given non-index bit constant over 4096 keys: 2^-4095;
 * - slot(i+1) == slot(i) + 1 has probability about 2^-16 per pair, so 64 or
 *   more such pairs among 4095 has probability below (4095e/(64*2^16))^64.
 */
static void random_sanity(enum mrkey_key_layout layout)
{
	const unsigned int bits = 16, n = 4096;
	struct cfg c = { bits, MRKEY_KEYGEN_RANDOM, layout };
	struct mrkey_table *t = tu_table_new(bits, c.keygen, layout);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr **mrs = calloc(n, sizeof(*mrs));
	uint32_t and_all = ~0u, or_all = 0, key, prev_idx = 0, idx;
	unsigned int i, runs = 0, nonindex;

	ck_assert_ptr_nonnull(mrs);
	for (i = 0; i < n; i++) {
		mrs[i] = reg_ok(t, pd);
		key = mrkey_mr_lkey(mrs[i]);
		and_all &= key;
		or_all |= key;
		idx = key_index(&c, key);
		if (i && idx == prev_idx + 1)
			runs++;
		prev_idx = idx;
	}
	nonindex = layout == MRKEY_LAYOUT_QIB ? 32 - bits : 8;
	for (i = 0; i < nonindex; i++)
		ck_assert_msg(((and_all ^ or_all) >> i) & 1,
			      "key bit %u never changes", i);
	/* The index field uses its top bit too. */
	i = layout == MRKEY_LAYOUT_QIB ? 31 : 8 + bits - 1;
	ck_assert_msg(((and_all ^ or_all) >> i) & 1,
		      "index bit %u never changes", i);
	ck_assert_msg(runs < 64, "%u of %u slots were the next one", runs, n);
	for (i = 0; i < n; i++)
		tu_dereg(mrs[i]);
	free(mrs);
	tu_pd_del(pd);
	tu_table_del(t);
}

START_TEST(random_sanity_qib)
{
	random_sanity(MRKEY_LAYOUT_QIB);
}
END_TEST

START_TEST(random_sanity_index8)
{
	random_sanity(MRKEY_LAYOUT_INDEX8);
}
END_TEST

static Suite *keys_suite(void)
{
	Suite *s = suite_create("keys");
	TCase *tc;
	size_t i;

	tc = tu_tcase("capacity");
	tcase_add_loop_test(tc, capacity_exact, 0, (int)TU_ARRAY_SIZE(cfgs));
	suite_add_tcase(s, tc);

	tc = tu_tcase("sequential");
	tcase_add_test(tc, sequential_qib_first_keys);
	tcase_add_test(tc, sequential_qib_model_mixed);
	tcase_add_test(tc, sequential_qib_model_skip_zero);
	tcase_add_test(tc, sequential_deterministic);
	suite_add_tcase(s, tc);

	tc = tu_tcase("random");
	tcase_add_test(tc, random_seeded_reproducible);
	tcase_add_test(tc, random_unseeded_differs);
	tcase_add_test(tc, random_unseeded_refills);
	tcase_add_test(tc, random_publish_fail_across_refills);
	tcase_add_test(tc, random_sanity_qib);
	tcase_add_test(tc, random_sanity_index8);
	suite_add_tcase(s, tc);

	tc = tu_tcase("hygiene");
	for (i = 0; i < TU_ARRAY_SIZE(cfgs); i++) {
		if (cfgs[i].bits != 1)
			continue;
		tcase_add_loop_test(tc, no_reissue_after_dereg, (int)i,
				    (int)i + 1);
		tcase_add_loop_test(tc, stale_key_after_reuse, (int)i,
				    (int)i + 1);
	}
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(keys_suite());
}
