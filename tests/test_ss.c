/* SPDX-License-Identifier: MIT */
/*
 * Scatter/gather state: a cursor over validated SGEs that span several
 * regions and segments. Bytes go where a linear model says, the cursor
 * crosses SGE and segment boundaries, counts are short only at the end, and
 * mrkey_ss_put() drops every reference exactly once.
 */
#include <string.h>

#include "testutil.h"

#define A1 0x100000ull
#define A2 0x900000ull

struct world {
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *r1, *r2;
	unsigned char mem[2048];
	struct mrkey_seg s1[3], s2[2];
};

/* The SG list: region, offset, length. */
static const struct {
	int region;
	uint64_t off;
	uint32_t len;
} sg[] = {
	{ 1, 50, 120 }, /* seg 0 -> 1 -> 2 of r1 */
	{ 2, 10, 100 }, /* seg 0 -> 1 of r2 */
	{ 1, 0, 5 },    /* inside seg 0 of r1 */
	{ 1, 300, 87 }, /* the end of r1 */
};
#define SG_TOTAL (120 + 100 + 5 + 87)

static struct world *world_new(void)
{
	struct world *w = calloc(1, sizeof(*w));
	struct mrkey_mr_attr a;

	ck_assert_ptr_nonnull(w);
	w->t = tu_table_new(4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	w->pd = tu_pd_new(w->t, MRKEY_PD_PRIVILEGED);
	/* r1: 100 + 37 + 250 bytes, scattered through mem in reverse. */
	w->s1[0].addr = w->mem + 1500;
	w->s1[0].length = 100;
	w->s1[1].addr = w->mem + 1400;
	w->s1[1].length = 37;
	w->s1[2].addr = w->mem + 1000;
	w->s1[2].length = 250;
	/* r2: 64 + 64. */
	w->s2[0].addr = w->mem + 600;
	w->s2[0].length = 64;
	w->s2[1].addr = w->mem + 200;
	w->s2[1].length = 64;

	memset(&a, 0, sizeof(a));
	a.pd = w->pd;
	a.access = MRKEY_ACCESS_ALL;
	a.addr = A1;
	a.iova = A1;
	a.length = 387;
	a.segs = w->s1;
	a.nsegs = 3;
	ck_assert_int_eq(mrkey_mr_reg(w->t, &a, &w->r1), 0);
	a.addr = A2;
	a.iova = A2;
	a.length = 128;
	a.segs = w->s2;
	a.nsegs = 2;
	ck_assert_int_eq(mrkey_mr_reg(w->t, &a, &w->r2), 0);
	return w;
}

static void world_del(struct world *w)
{
	ck_assert_uint_eq(mrkey_mr_refcount(w->r1), 2);
	ck_assert_uint_eq(mrkey_mr_refcount(w->r2), 2);
	tu_dereg(w->r1);
	tu_dereg(w->r2);
	tu_pd_del(w->pd);
	tu_table_del(w->t);
	free(w);
}

/* Host address of region @p r byte @p off, by a linear walk. */
static unsigned char *host(struct world *w, int r, uint64_t off)
{
	const struct mrkey_seg *s = r == 1 ? w->s1 : w->s2;
	size_t n = r == 1 ? 3 : 2, i;

	for (i = 0; i < n; i++) {
		if (off < s[i].length)
			return (unsigned char *)s[i].addr + off;
		off -= s[i].length;
	}
	ck_abort_msg("offset outside region %d", r);
	return NULL;
}

/* Host address of byte @p k of the whole SG list. */
static unsigned char *sg_host(struct world *w, size_t k)
{
	size_t i;

	for (i = 0; i < TU_ARRAY_SIZE(sg); i++) {
		if (k < sg[i].len)
			return host(w, sg[i].region, sg[i].off + k);
		k -= sg[i].len;
	}
	ck_abort_msg("byte outside the SG list");
	return NULL;
}

/* Validate the SG list into @p list (alternating lkey and rkey). */
static void validate_all(struct world *w, struct mrkey_isge *list)
{
	size_t i;

	for (i = 0; i < TU_ARRAY_SIZE(sg); i++) {
		struct mrkey_mr *mr = sg[i].region == 1 ? w->r1 : w->r2;
		uint64_t base = sg[i].region == 1 ? A1 : A2;
		int rc;

		if (i % 2 == 0) {
			struct mrkey_sge sge = { base + sg[i].off, sg[i].len,
						 mrkey_mr_lkey(mr) };

			rc = mrkey_lkey_ok(w->t, w->pd, &sge,
					   MRKEY_ACCESS_LOCAL_WRITE, &list[i]);
		} else {
			rc = mrkey_rkey_ok(w->t, w->pd, mrkey_mr_rkey(mr),
					   base + sg[i].off, sg[i].len,
					   MRKEY_ACCESS_REMOTE_WRITE, &list[i]);
		}
		ck_assert_int_eq(rc, 0);
	}
	/* r1 is named by three SGEs, r2 by one. */
	ck_assert_uint_eq(mrkey_mr_refcount(w->r1), 5);
	ck_assert_uint_eq(mrkey_mr_refcount(w->r2), 3);
}

static void fill_src(unsigned char *src, size_t n, unsigned int seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		src[i] = (unsigned char)(i * 13 + seed);
}

/* Copy in chunks of @p chunk bytes; check the model after. */
static void roundtrip(size_t chunk)
{
	struct world *w = world_new();
	struct mrkey_isge list[TU_ARRAY_SIZE(sg)];
	struct mrkey_sge_state ss;
	unsigned char src[SG_TOTAL], dst[SG_TOTAL + 16];
	size_t done = 0, n, k;

	memset(w->mem, 0xee, sizeof(w->mem));
	fill_src(src, sizeof(src), (unsigned int)chunk);
	validate_all(w, list);
	mrkey_ss_init(&ss, list, TU_ARRAY_SIZE(list));
	ck_assert_uint_eq(mrkey_ss_remaining(&ss), SG_TOTAL);
	while (done < SG_TOTAL) {
		size_t want = chunk < SG_TOTAL - done ? chunk : SG_TOTAL - done;

		n = mrkey_ss_copy_in(&ss, src + done, chunk);
		ck_assert_uint_eq(n, want);
		done += n;
		ck_assert_uint_eq(mrkey_ss_remaining(&ss), SG_TOTAL - done);
	}
	ck_assert_uint_eq(mrkey_ss_copy_in(&ss, src, 1), 0);
	/* Copies drop no reference. */
	ck_assert_uint_eq(mrkey_mr_refcount(w->r1), 5);
	mrkey_ss_put(&ss);
	ck_assert_uint_eq(mrkey_mr_refcount(w->r1), 2);
	ck_assert_uint_eq(mrkey_mr_refcount(w->r2), 2);

	/* Every byte where the model puts it, nothing elsewhere. */
	for (k = 0; k < SG_TOTAL; k++) {
		unsigned char *p = sg_host(w, k);

		ck_assert_msg(*p == src[k], "byte %zu: %#x, want %#x", k, *p,
			      src[k]);
		*p = 0xee;
	}
	for (k = 0; k < sizeof(w->mem); k++)
		ck_assert_msg(w->mem[k] == 0xee, "stray write at mem[%zu]", k);

	/* And back out. */
	for (k = 0; k < SG_TOTAL; k++)
		*sg_host(w, k) = src[k];
	validate_all(w, list);
	mrkey_ss_init(&ss, list, TU_ARRAY_SIZE(list));
	memset(dst, 0, sizeof(dst));
	done = 0;
	while (done < SG_TOTAL) {
		n = mrkey_ss_copy_out(&ss, dst + done, chunk);
		ck_assert_uint_eq(n, chunk < SG_TOTAL - done ? chunk :
							       SG_TOTAL - done);
		done += n;
	}
	ck_assert_mem_eq(dst, src, SG_TOTAL);
	ck_assert_uint_eq(mrkey_ss_copy_out(&ss, dst, 16), 0);
	ck_assert_uint_eq(mrkey_ss_remaining(&ss), 0);
	mrkey_ss_put(&ss);
	world_del(w);
}

START_TEST(roundtrip_chunks)
{
	static const size_t chunks[] = { 1,  3,   7,   37,  50,
					 64, 120, 121, 311, SG_TOTAL };

	roundtrip(chunks[_i]);
}
END_TEST

START_TEST(short_count_at_end)
{
	struct world *w = world_new();
	struct mrkey_isge list[TU_ARRAY_SIZE(sg)];
	struct mrkey_sge_state ss;
	unsigned char src[1000], dst[1000];

	fill_src(src, sizeof(src), 1);
	validate_all(w, list);
	mrkey_ss_init(&ss, list, TU_ARRAY_SIZE(list));
	ck_assert_uint_eq(mrkey_ss_copy_in(&ss, src, 10), 10);
	ck_assert_uint_eq(mrkey_ss_copy_in(&ss, src + 10, sizeof(src) - 10),
			  SG_TOTAL - 10);
	ck_assert_uint_eq(mrkey_ss_remaining(&ss), 0);
	ck_assert_uint_eq(mrkey_ss_copy_in(&ss, src, sizeof(src)), 0);
	ck_assert_uint_eq(mrkey_ss_copy_out(&ss, dst, sizeof(dst)), 0);
	mrkey_ss_put(&ss);

	validate_all(w, list);
	mrkey_ss_init(&ss, list, TU_ARRAY_SIZE(list));
	ck_assert_uint_eq(mrkey_ss_copy_out(&ss, dst, sizeof(dst)), SG_TOTAL);
	ck_assert_mem_eq(dst, src, SG_TOTAL);
	mrkey_ss_put(&ss);
	world_del(w);
}
END_TEST

START_TEST(zero_length_and_empty)
{
	struct world *w = world_new();
	struct mrkey_isge list[TU_ARRAY_SIZE(sg)];
	struct mrkey_sge_state ss;
	unsigned char buf[8] = { 0 };

	/* n = 0: an empty state. */
	mrkey_ss_init(&ss, list, 0);
	ck_assert_uint_eq(mrkey_ss_remaining(&ss), 0);
	ck_assert_uint_eq(mrkey_ss_copy_in(&ss, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(mrkey_ss_copy_out(&ss, buf, sizeof(buf)), 0);
	mrkey_ss_put(&ss);
	mrkey_ss_put(&ss);

	/* len = 0 copies nothing and does not move. */
	validate_all(w, list);
	mrkey_ss_init(&ss, list, TU_ARRAY_SIZE(list));
	ck_assert_uint_eq(mrkey_ss_copy_in(&ss, buf, 0), 0);
	ck_assert_uint_eq(mrkey_ss_copy_out(&ss, buf, 0), 0);
	ck_assert_uint_eq(mrkey_ss_remaining(&ss), SG_TOTAL);
	mrkey_ss_put(&ss);
	world_del(w);
}
END_TEST

START_TEST(put_unconsumed_and_twice)
{
	struct world *w = world_new();
	struct mrkey_isge list[TU_ARRAY_SIZE(sg)];
	struct mrkey_sge_state ss;
	unsigned char buf[200];

	/* Nothing consumed. */
	validate_all(w, list);
	mrkey_ss_init(&ss, list, TU_ARRAY_SIZE(list));
	mrkey_ss_put(&ss);
	ck_assert_uint_eq(mrkey_mr_refcount(w->r1), 2);
	ck_assert_uint_eq(mrkey_mr_refcount(w->r2), 2);
	mrkey_ss_put(&ss);
	ck_assert_uint_eq(mrkey_mr_refcount(w->r1), 2);
	ck_assert_uint_eq(mrkey_mr_refcount(w->r2), 2);

	/* Part consumed: past the first SGE, inside the second. */
	validate_all(w, list);
	mrkey_ss_init(&ss, list, TU_ARRAY_SIZE(list));
	ck_assert_uint_eq(mrkey_ss_copy_out(&ss, buf, 150), 150);
	ck_assert_uint_eq(mrkey_ss_remaining(&ss), SG_TOTAL - 150);
	mrkey_ss_put(&ss);
	ck_assert_uint_eq(mrkey_mr_refcount(w->r1), 2);
	ck_assert_uint_eq(mrkey_mr_refcount(w->r2), 2);
	mrkey_ss_put(&ss);
	ck_assert_uint_eq(mrkey_mr_refcount(w->r1), 2);

	/* Fully consumed. */
	validate_all(w, list);
	mrkey_ss_init(&ss, list, TU_ARRAY_SIZE(list));
	ck_assert_uint_eq(mrkey_ss_copy_out(&ss, buf, 200), 200);
	ck_assert_uint_eq(mrkey_ss_copy_out(&ss, buf, 200), SG_TOTAL - 200);
	mrkey_ss_put(&ss);
	mrkey_ss_put(&ss);
	world_del(w);
}
END_TEST

START_TEST(holds_region_across_dereg)
{
	/* The state's references keep an -EBUSY region's memory usable. */
	struct world *w = world_new();
	struct mrkey_isge list[TU_ARRAY_SIZE(sg)];
	struct mrkey_sge_state ss;
	unsigned char src[SG_TOTAL], dst[SG_TOTAL];
	uint32_t k1 = mrkey_mr_lkey(w->r1);

	fill_src(src, sizeof(src), 9);
	validate_all(w, list);
	mrkey_ss_init(&ss, list, TU_ARRAY_SIZE(list));
	ck_assert_int_eq(mrkey_mr_dereg(w->r1, 0), -EBUSY);
	ck_assert_int_eq(tu_lkey_probe(w->t, w->pd, k1, A1, 1, 0), -ENOENT);
	ck_assert_uint_eq(mrkey_ss_copy_in(&ss, src, SG_TOTAL), SG_TOTAL);
	mrkey_ss_put(&ss);
	ck_assert_uint_eq(mrkey_mr_refcount(w->r1), 1);
	ck_assert_int_eq(mrkey_mr_dereg(w->r1, 0), 0);
	w->r1 = NULL;
	{
		size_t k;

		/* The memory is the test's: the bytes are there. */
		for (k = 0; k < SG_TOTAL; k++)
			dst[k] = *sg_host(w, k);
		ck_assert_mem_eq(dst, src, SG_TOTAL);
	}
	tu_dereg(w->r2);
	tu_pd_del(w->pd);
	tu_table_del(w->t);
	free(w);
}
END_TEST

START_TEST(dma_region_in_list)
{
	struct world *w = world_new();
	struct mrkey_isge list[2];
	struct mrkey_sge_state ss;
	struct mrkey_mr *dma;
	unsigned char host_buf[64], src[80], dst[80];
	struct mrkey_sge sge = { (uintptr_t)host_buf, 64, 0 };
	struct mrkey_sge sge2 = { A2 + 100, 16, mrkey_mr_lkey(w->r2) };

	fill_src(src, sizeof(src), 4);
	memset(host_buf, 0, sizeof(host_buf));
	ck_assert_int_eq(mrkey_mr_reg_dma(w->t, w->pd, MRKEY_ACCESS_ALL, &dma),
			 0);
	ck_assert_int_eq(mrkey_lkey_ok(w->t, w->pd, &sge, 0, &list[0]), 0);
	ck_assert_int_eq(mrkey_lkey_ok(w->t, w->pd, &sge2, 0, &list[1]), 0);
	mrkey_ss_init(&ss, list, 2);
	ck_assert_uint_eq(mrkey_ss_remaining(&ss), 80);
	ck_assert_uint_eq(mrkey_ss_copy_in(&ss, src, sizeof(src)), 80);
	mrkey_ss_put(&ss);
	ck_assert_mem_eq(host_buf, src, 64);
	ck_assert_mem_eq(host(w, 2, 100), src + 64, 16);
	ck_assert_uint_eq(mrkey_mr_refcount(dma), 2);

	ck_assert_int_eq(mrkey_lkey_ok(w->t, w->pd, &sge, 0, &list[0]), 0);
	mrkey_ss_init(&ss, list, 1);
	ck_assert_uint_eq(mrkey_ss_copy_out(&ss, dst, sizeof(dst)), 64);
	ck_assert_mem_eq(dst, src, 64);
	mrkey_ss_put(&ss);
	tu_dereg(dma);
	world_del(w);
}
END_TEST

static void add_cases(Suite *s, enum mrkey_refcount_mode m)
{
	TCase *tc = tu_tcase_mode("ss", m);

	tcase_add_loop_test(tc, roundtrip_chunks, 0, 10);
	tcase_add_test(tc, short_count_at_end);
	tcase_add_test(tc, zero_length_and_empty);
	tcase_add_test(tc, put_unconsumed_and_twice);
	tcase_add_test(tc, holds_region_across_dereg);
	tcase_add_test(tc, dma_region_in_list);
	suite_add_tcase(s, tc);
}

static Suite *ss_suite(void)
{
	Suite *s = suite_create("ss");

	add_cases(s, MRKEY_REFCOUNT_ATOMIC);
	add_cases(s, MRKEY_REFCOUNT_PERCPU);
	return s;
}

int main(void)
{
	return tu_run(ss_suite());
}
