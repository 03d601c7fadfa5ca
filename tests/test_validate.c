/* SPDX-License-Identifier: MIT */
/*
 * Validation: mrkey_lkey_ok() and mrkey_rkey_ok(). What a success fills in,
 * every error of the table in sge.h, that a failure takes no reference and
 * leaves the isge alone, key 0, and segment translation on the O(1) path
 * (equal power-of-two segments) and the binary-search path, checked against
 * a linear model. Every test runs on both key layouts (loop index).
 */
#include <pthread.h>
#include <string.h>

#include "testutil.h"

#define A0 0x100000ull       /* addr of test regions */
#define I0 0x7f0000000000ull /* iova: far from addr, no overlap */

static const enum mrkey_key_layout layouts[] = { MRKEY_LAYOUT_QIB,
						 MRKEY_LAYOUT_INDEX8 };

static struct mrkey_table *new_table(int i, unsigned int bits)
{
	return tu_table_new(bits, MRKEY_KEYGEN_RANDOM, layouts[i]);
}

/* An isge full of garbage, to check a failure leaves it alone. */
static void poison(struct mrkey_isge *isge)
{
	memset(isge, 0x5a, sizeof(*isge));
}

static int untouched(const struct mrkey_isge *isge)
{
	struct mrkey_isge p;

	poison(&p);
	return !memcmp(&p, isge, sizeof(p));
}

static int lkey(struct mrkey_table *t, struct mrkey_pd *pd, uint32_t key,
		uint64_t addr, uint32_t len, unsigned int access,
		struct mrkey_isge *isge)
{
	struct mrkey_sge sge = { addr, len, key };

	poison(isge);
	return mrkey_lkey_ok(t, pd, &sge, access, isge);
}

static int rkey(struct mrkey_table *t, struct mrkey_pd *pd, uint32_t key,
		uint64_t vaddr, uint32_t len, unsigned int access,
		struct mrkey_isge *isge)
{
	poison(isge);
	return mrkey_rkey_ok(t, pd, key, vaddr, len, access, isge);
}

/*
 * Expect a failure @p want from both paths' probe, with the refcount of
 * @p mr unchanged and the isge untouched.
 */
#define EXPECT_FAIL(call, want, mr)                                            \
	do {                                                                   \
		struct mrkey_isge _is;                                         \
		uint32_t _rc0 = (mr) ? mrkey_mr_refcount(mr) : 0;              \
		int _rc = call;                                                \
		ck_assert_msg(_rc == (want), "%s: %d, want %d", #call, _rc,    \
			      (want));                                         \
		ck_assert_msg(untouched(&_is), "%s wrote the isge", #call);    \
		if (mr)                                                        \
			ck_assert_uint_eq(mrkey_mr_refcount(mr), _rc0);        \
	} while (0)

/* ---- a region model ---------------------------------------------------- */

struct model {
	struct mrkey_seg segs[64];
	size_t nsegs;
	uint64_t start[65]; /* region offset of each segment, and the end */
	unsigned char *mem;
};

/*
 * Build segments of the given lengths inside one buffer, placed in a
 * scrambled order with gaps so that a wrong translation shows.
 */
static void model_build(struct model *m, const size_t *lens, size_t n)
{
	size_t total = 0, i, pos = 0;

	m->nsegs = n;
	for (i = 0; i < n; i++)
		total += lens[i] + 16;
	m->mem = malloc(total);
	ck_assert_ptr_nonnull(m->mem);
	for (i = 0; i < total; i++)
		m->mem[i] = (unsigned char)(i * 31 + 7);
	m->start[0] = 0;
	/* Odd-indexed segments first, then the even ones. */
	for (i = 1; i < n; i += 2) {
		m->segs[i].addr = m->mem + pos;
		m->segs[i].length = lens[i];
		pos += lens[i] + 16;
	}
	for (i = 0; i < n; i += 2) {
		m->segs[i].addr = m->mem + pos;
		m->segs[i].length = lens[i];
		pos += lens[i] + 16;
	}
	for (i = 0; i < n; i++)
		m->start[i + 1] = m->start[i] + lens[i];
}

static uint64_t model_len(const struct model *m)
{
	return m->start[m->nsegs];
}

/* Host address and contiguous bytes of region offset @p off. */
static unsigned char *model_at(const struct model *m, uint64_t off,
			       uint64_t *contig)
{
	size_t i;

	for (i = 0; i < m->nsegs; i++)
		if (off < m->start[i + 1]) {
			*contig = m->start[i + 1] - off;
			return (unsigned char *)m->segs[i].addr +
			       (off - m->start[i]);
		}
	ck_abort_msg("offset %llu outside the model", (unsigned long long)off);
	return NULL;
}

static struct mrkey_mr *model_reg(const struct model *m, struct mrkey_table *t,
				  struct mrkey_pd *pd, unsigned int access)
{
	struct mrkey_mr_attr a;
	struct mrkey_mr *mr = NULL;

	memset(&a, 0, sizeof(a));
	a.pd = pd;
	a.addr = A0;
	a.iova = I0;
	a.length = model_len(m);
	a.access = access;
	a.segs = m->segs;
	a.nsegs = m->nsegs;
	ck_assert_int_eq(mrkey_mr_reg(t, &a, &mr), 0);
	return mr;
}

/* Check one successful validation against the model. */
static void check_isge(const struct model *m, struct mrkey_mr *mr,
		       const struct mrkey_isge *isge, uint64_t off,
		       uint32_t len)
{
	uint64_t contig;
	unsigned char *want = model_at(m, off, &contig);
	uint64_t capped = contig < len ? contig : len;

	ck_assert_ptr_eq(isge->mr, mr);
	ck_assert_msg(isge->vaddr == want, "offset %llu: vaddr %p, want %p",
		      (unsigned long long)off, isge->vaddr, (void *)want);
	ck_assert_uint_eq(isge->sge_length, len);
	/* Bytes contiguous at vaddr: the segment's rest, or capped by len. */
	ck_assert_msg(isge->length == contig || isge->length == capped,
		      "offset %llu: length %u, segment has %llu left",
		      (unsigned long long)off, isge->length,
		      (unsigned long long)contig);
	ck_assert_uint_eq(*(unsigned char *)isge->vaddr, *want);
}

static void check_offset(const struct model *m, struct mrkey_table *t,
			 struct mrkey_pd *pd, struct mrkey_mr *mr, uint64_t off,
			 uint32_t len)
{
	uint32_t key = mrkey_mr_lkey(mr), rc0 = mrkey_mr_refcount(mr);
	struct mrkey_isge isge;

	ck_assert_int_eq(lkey(t, pd, key, A0 + off, len, 0, &isge), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), rc0 + 1);
	check_isge(m, mr, &isge, off, len);
	mrkey_isge_put(&isge);
	ck_assert_int_eq(rkey(t, pd, key, I0 + off, len, 0, &isge), 0);
	check_isge(m, mr, &isge, off, len);
	mrkey_isge_put(&isge);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), rc0);
}

static void check_translation(int li, const size_t *lens, size_t n)
{
	struct mrkey_table *t = new_table(li, 6);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct model m;
	struct mrkey_mr *mr;
	uint64_t len, off;
	uint64_t rs = 5;
	size_t i;
	int k;

	model_build(&m, lens, n);
	mr = model_reg(&m, t, pd, 0);
	len = model_len(&m);
	/* Around every segment boundary. */
	for (i = 0; i <= n; i++) {
		for (k = -2; k <= 2; k++) {
			if ((int64_t)m.start[i] + k < 0 ||
			    m.start[i] + (uint64_t)k >= len)
				continue;
			off = m.start[i] + (uint64_t)k;
			check_offset(&m, t, pd, mr, off, 1);
			check_offset(&m, t, pd, mr, off, (uint32_t)(len - off));
		}
	}
	/* And at random. */
	for (k = 0; k < 500; k++) {
		off = tu_rand(&rs) % len;
		check_offset(&m, t, pd, mr, off,
			     1 + (uint32_t)(tu_rand(&rs) % (len - off)));
	}
	/* The whole region, and one past. */
	check_offset(&m, t, pd, mr, 0, (uint32_t)len);
	EXPECT_FAIL(lkey(t, pd, mrkey_mr_lkey(mr), A0, (uint32_t)len + 1, 0,
			 &_is),
		    -ERANGE, mr);
	tu_dereg(mr);
	free(m.mem);
	tu_pd_del(pd);
	tu_table_del(t);
}

START_TEST(translate_pow2)
{
	size_t lens[16];
	size_t i;

	for (i = 0; i < 16; i++)
		lens[i] = 4096;
	check_translation(_i, lens, 16);
}
END_TEST

START_TEST(translate_pow2_short_tail)
{
	size_t lens[9];
	size_t i;

	for (i = 0; i < 8; i++)
		lens[i] = 512;
	lens[8] = 100;
	check_translation(_i, lens, 9);
}
END_TEST

START_TEST(translate_single)
{
	size_t lens[1] = { 10000 };

	check_translation(_i, lens, 1);
}
END_TEST

START_TEST(translate_irregular)
{
	static const size_t lens[] = { 1,   4096, 3,   777, 2048, 1,   1,
				       500, 4097, 123, 64,  9,    1000 };

	check_translation(_i, lens, TU_ARRAY_SIZE(lens));
}
END_TEST

START_TEST(translate_irregular_many)
{
	size_t lens[64];
	uint64_t rs = 77;
	size_t i;

	for (i = 0; i < 64; i++)
		lens[i] = 1 + tu_rand(&rs) % 700;
	check_translation(_i, lens, 64);
}
END_TEST

START_TEST(translate_pow2_but_uneven_middle)
{
	/* Equal powers of two except one in the middle: not the fast path. */
	size_t lens[8] = { 256, 256, 256, 128, 256, 256, 256, 256 };

	check_translation(_i, lens, 8);
}
END_TEST

/* ---- bounds ------------------------------------------------------------ */

struct fixture {
	struct mrkey_table *t;
	struct mrkey_pd *pd, *pd2;
	struct mrkey_mr *mr;
	uint32_t key;
	unsigned char buf[4096];
};

static struct fixture *fx_new(int li, uint64_t addr, uint64_t iova,
			      unsigned int access)
{
	struct fixture *f = calloc(1, sizeof(*f));

	ck_assert_ptr_nonnull(f);
	f->t = new_table(li, 8);
	f->pd = tu_pd_new(f->t, 0);
	f->pd2 = tu_pd_new(f->t, 0);
	f->mr = tu_reg1_ok(f->t, f->pd, f->buf, sizeof(f->buf), addr, iova,
			   access);
	f->key = mrkey_mr_lkey(f->mr);
	return f;
}

static void fx_del(struct fixture *f)
{
	ck_assert_uint_eq(mrkey_mr_refcount(f->mr), 2);
	tu_dereg(f->mr);
	tu_pd_del(f->pd);
	tu_pd_del(f->pd2);
	tu_table_del(f->t);
	free(f);
}

START_TEST(success_fills_isge)
{
	struct fixture *f = fx_new(_i, A0, I0, MRKEY_ACCESS_ALL);
	struct mrkey_isge isge;

	ck_assert_int_eq(lkey(f->t, f->pd, f->key, A0 + 100, 50, 0, &isge), 0);
	ck_assert_ptr_eq(isge.mr, f->mr);
	ck_assert_ptr_eq(isge.vaddr, f->buf + 100);
	ck_assert_uint_eq(isge.sge_length, 50);
	ck_assert(isge.length == 4096 - 100 || isge.length == 50);
	ck_assert_uint_eq(mrkey_mr_refcount(f->mr), 3);
	mrkey_isge_put(&isge);
	ck_assert_ptr_null(isge.mr);

	ck_assert_int_eq(rkey(f->t, f->pd, f->key, I0 + 4000, 96,
			      MRKEY_ACCESS_REMOTE_WRITE, &isge),
			 0);
	ck_assert_ptr_eq(isge.mr, f->mr);
	ck_assert_ptr_eq(isge.vaddr, f->buf + 4000);
	ck_assert_uint_eq(isge.sge_length, 96);
	ck_assert_uint_eq(isge.length, 96);
	mrkey_isge_put(&isge);
	fx_del(f);
}
END_TEST

START_TEST(bounds_lkey_addr_rkey_iova)
{
	struct fixture *f = fx_new(_i, A0, I0, MRKEY_ACCESS_ALL);
	struct mrkey_mr *mr = f->mr;

	/* lkeys are checked against addr, rkeys against iova. */
	ck_assert_int_eq(tu_lkey_probe(f->t, f->pd, f->key, A0, 4096, 0), 0);
	ck_assert_int_eq(tu_rkey_probe(f->t, f->pd, f->key, I0, 4096, 0), 0);
	EXPECT_FAIL(lkey(f->t, f->pd, f->key, I0, 1, 0, &_is), -ERANGE, mr);
	EXPECT_FAIL(rkey(f->t, f->pd, f->key, A0, 1, 0, &_is), -ERANGE, mr);
	EXPECT_FAIL(lkey(f->t, f->pd, f->key, I0 + 10, 10, 0, &_is), -ERANGE,
		    mr);
	EXPECT_FAIL(rkey(f->t, f->pd, f->key, A0 + 10, 10, 0, &_is), -ERANGE,
		    mr);

	/* Exact ends fit; one byte more does not. */
	ck_assert_int_eq(tu_lkey_probe(f->t, f->pd, f->key, A0 + 4095, 1, 0),
			 0);
	ck_assert_int_eq(tu_rkey_probe(f->t, f->pd, f->key, I0 + 4095, 1, 0),
			 0);
	ck_assert_int_eq(tu_lkey_probe(f->t, f->pd, f->key, A0 + 1, 4095, 0),
			 0);
	EXPECT_FAIL(lkey(f->t, f->pd, f->key, A0, 4097, 0, &_is), -ERANGE, mr);
	EXPECT_FAIL(rkey(f->t, f->pd, f->key, I0, 4097, 0, &_is), -ERANGE, mr);
	EXPECT_FAIL(lkey(f->t, f->pd, f->key, A0 + 1, 4096, 0, &_is), -ERANGE,
		    mr);
	EXPECT_FAIL(rkey(f->t, f->pd, f->key, I0 + 1, 4096, 0, &_is), -ERANGE,
		    mr);
	EXPECT_FAIL(lkey(f->t, f->pd, f->key, A0 + 4096, 1, 0, &_is), -ERANGE,
		    mr);
	EXPECT_FAIL(rkey(f->t, f->pd, f->key, I0 + 4096, 1, 0, &_is), -ERANGE,
		    mr);
	EXPECT_FAIL(lkey(f->t, f->pd, f->key, A0 - 1, 1, 0, &_is), -ERANGE, mr);
	EXPECT_FAIL(rkey(f->t, f->pd, f->key, I0 - 1, 1, 0, &_is), -ERANGE, mr);
	EXPECT_FAIL(lkey(f->t, f->pd, f->key, A0 - 1, 2, 0, &_is), -ERANGE, mr);
	EXPECT_FAIL(lkey(f->t, f->pd, f->key, 0, 1, 0, &_is), -ERANGE, mr);
	EXPECT_FAIL(lkey(f->t, f->pd, f->key, A0, UINT32_MAX, 0, &_is), -ERANGE,
		    mr);
	fx_del(f);
}
END_TEST

START_TEST(bounds_overflow)
{
	/*
	 * A region low in the address space: a range that wraps past
	 * 2^64 ends "below" the region's end; it must still fail.
	 */
	struct fixture *f = fx_new(_i, 0x1000, 0x1000, MRKEY_ACCESS_ALL);
	struct mrkey_mr *mr = f->mr;

	EXPECT_FAIL(lkey(f->t, f->pd, f->key, UINT64_MAX - 5, 0x10, 0, &_is),
		    -ERANGE, mr);
	EXPECT_FAIL(rkey(f->t, f->pd, f->key, UINT64_MAX - 5, 0x10, 0, &_is),
		    -ERANGE, mr);
	EXPECT_FAIL(lkey(f->t, f->pd, f->key, UINT64_MAX, 0x1001, 0, &_is),
		    -ERANGE, mr);
	EXPECT_FAIL(rkey(f->t, f->pd, f->key, UINT64_MAX, 0x1001, 0, &_is),
		    -ERANGE, mr);
	EXPECT_FAIL(lkey(f->t, f->pd, f->key, UINT64_MAX - 0xfff, UINT32_MAX, 0,
			 &_is),
		    -ERANGE, mr);
	EXPECT_FAIL(rkey(f->t, f->pd, f->key, (uint64_t)0 - 0x1000, 0x2001, 0,
			 &_is),
		    -ERANGE, mr);
	fx_del(f);

	/* A region at the top: nothing wraps into it. */
	f = fx_new(_i, UINT64_MAX - 4096, UINT64_MAX - 4096, MRKEY_ACCESS_ALL);
	mr = f->mr;
	ck_assert_int_eq(
		tu_lkey_probe(f->t, f->pd, f->key, UINT64_MAX - 1, 1, 0), 0);
	EXPECT_FAIL(lkey(f->t, f->pd, f->key, UINT64_MAX - 1, 2, 0, &_is),
		    -ERANGE, mr);
	EXPECT_FAIL(rkey(f->t, f->pd, f->key, UINT64_MAX - 100, 200, 0, &_is),
		    -ERANGE, mr);
	EXPECT_FAIL(lkey(f->t, f->pd, f->key, UINT64_MAX - 4096, UINT32_MAX, 0,
			 &_is),
		    -ERANGE, mr);
	fx_del(f);
}
END_TEST

/* ---- PD, access, arguments --------------------------------------------- */

START_TEST(wrong_pd)
{
	struct fixture *f = fx_new(_i, A0, I0, MRKEY_ACCESS_ALL);
	struct mrkey_table *t2 = new_table(_i, 8);
	struct mrkey_pd *foreign = tu_pd_new(t2, 0);
	struct mrkey_mr *mr = f->mr;

	EXPECT_FAIL(lkey(f->t, f->pd2, f->key, A0, 8, 0, &_is), -EPERM, mr);
	EXPECT_FAIL(rkey(f->t, f->pd2, f->key, I0, 8, 0, &_is), -EPERM, mr);
	/* A PD of another table: never this table's region. */
	{
		struct mrkey_isge is;
		int rc = lkey(f->t, foreign, f->key, A0, 8, 0, &is);

		ck_assert_msg(rc == -EPERM || rc == -EINVAL, "foreign PD: %d",
			      rc);
		ck_assert(untouched(&is));
	}
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	tu_pd_del(foreign);
	tu_table_del(t2);
	fx_del(f);
}
END_TEST

START_TEST(access_matrix)
{
	struct mrkey_table *t = new_table(_i, 5);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mrs[16];
	unsigned int m, r;

	for (m = 0; m < 16; m++)
		mrs[m] = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, m);
	for (m = 0; m < 16; m++) {
		uint32_t key = mrkey_mr_lkey(mrs[m]);

		for (r = 0; r < 16; r++) {
			int want = (r & ~m) ? -EACCES : 0;

			if (want) {
				EXPECT_FAIL(lkey(t, pd, key, A0, 8, r, &_is),
					    want, mrs[m]);
				EXPECT_FAIL(rkey(t, pd, key, I0, 8, r, &_is),
					    want, mrs[m]);
			} else {
				ck_assert_int_eq(
					tu_lkey_probe(t, pd, key, A0, 8, r), 0);
				ck_assert_int_eq(
					tu_rkey_probe(t, pd, key, I0, 8, r), 0);
			}
		}
	}
	for (m = 0; m < 16; m++)
		tu_dereg(mrs[m]);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(bad_arguments)
{
	struct fixture *f = fx_new(_i, A0, I0, MRKEY_ACCESS_ALL);
	struct mrkey_sge sge = { A0, 8, f->key };
	struct mrkey_mr *mr = f->mr;
	struct mrkey_isge is;

	EXPECT_FAIL(lkey(f->t, f->pd, f->key, A0, 8, 16, &_is), -EINVAL, mr);
	EXPECT_FAIL(rkey(f->t, f->pd, f->key, I0, 8, 16, &_is), -EINVAL, mr);
	EXPECT_FAIL(lkey(f->t, f->pd, f->key, A0, 8, 0x80000000u, &_is),
		    -EINVAL, mr);
	EXPECT_FAIL(rkey(f->t, f->pd, f->key, I0, 8, ~0u, &_is), -EINVAL, mr);
	/* Zero bytes skip the lookup (test_verbs), not the argument checks. */
	EXPECT_FAIL(lkey(f->t, f->pd, f->key, A0, 0, 16, &_is), -EINVAL, mr);
	EXPECT_FAIL(rkey(f->t, f->pd, f->key, I0, 0, 16, &_is), -EINVAL, mr);
	EXPECT_FAIL(lkey(f->t, NULL, f->key, A0, 0, 0, &_is), -EINVAL, mr);
	EXPECT_FAIL(lkey(NULL, f->pd, f->key, A0, 8, 0, &_is), -EINVAL, mr);
	EXPECT_FAIL(rkey(NULL, f->pd, f->key, I0, 8, 0, &_is), -EINVAL, mr);
	EXPECT_FAIL(lkey(f->t, NULL, f->key, A0, 8, 0, &_is), -EINVAL, mr);
	EXPECT_FAIL(rkey(f->t, NULL, f->key, I0, 8, 0, &_is), -EINVAL, mr);
	poison(&is);
	ck_assert_int_eq(mrkey_lkey_ok(f->t, f->pd, NULL, 0, &is), -EINVAL);
	ck_assert(untouched(&is));
	ck_assert_int_eq(mrkey_lkey_ok(f->t, f->pd, &sge, 0, NULL), -EINVAL);
	ck_assert_int_eq(mrkey_rkey_ok(f->t, f->pd, f->key, I0, 8, 0, NULL),
			 -EINVAL);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	fx_del(f);
}
END_TEST

START_TEST(unknown_keys)
{
	/* One region only: no altered key can name another live one. */
	struct fixture *f = fx_new(_i, A0, I0, MRKEY_ACCESS_ALL);
	struct mrkey_mr *mr = f->mr;
	uint64_t rs = 3;
	uint32_t k;
	int b, i;

	for (b = 0; b < 32; b++) {
		k = f->key ^ (1u << b);
		EXPECT_FAIL(lkey(f->t, f->pd, k, A0, 8, 0, &_is), -ENOENT, mr);
		EXPECT_FAIL(rkey(f->t, f->pd, k, I0, 8, 0, &_is), -ENOENT, mr);
	}
	for (i = 0; i < 2000; i++) {
		k = (uint32_t)tu_rand(&rs);
		if (k == f->key)
			continue;
		EXPECT_FAIL(lkey(f->t, f->pd, k, A0, 8, 0, &_is), -ENOENT, mr);
		/* Another PD: unknown still says -ENOENT, not -EPERM. */
		EXPECT_FAIL(rkey(f->t, f->pd2, k, I0, 8, 0, &_is), -ENOENT, mr);
	}
	/* Every other key of the same slot. */
	for (i = 1; i < 256; i++) {
		k = f->key ^ (uint32_t)i;
		EXPECT_FAIL(lkey(f->t, f->pd, k, A0, 8, 0, &_is), -ENOENT, mr);
	}
	fx_del(f);
}
END_TEST

START_TEST(stale_key)
{
	struct fixture *f = fx_new(_i, A0, I0, MRKEY_ACCESS_ALL);
	struct mrkey_mr *mr2 =
		tu_reg1_ok(f->t, f->pd, tu_scratch, 64, A0, I0, 0);
	uint32_t k2 = mrkey_mr_lkey(mr2);

	tu_dereg(mr2);
	EXPECT_FAIL(lkey(f->t, f->pd, k2, A0, 8, 0, &_is), -ENOENT, f->mr);
	EXPECT_FAIL(rkey(f->t, f->pd, k2, I0, 8, 0, &_is), -ENOENT, f->mr);
	fx_del(f);
}
END_TEST

/* ---- key 0 ------------------------------------------------------------- */

START_TEST(key0_without_dma)
{
	struct mrkey_table *t = new_table(_i, 4);
	struct mrkey_pd *priv = tu_pd_new(t, MRKEY_PD_PRIVILEGED);
	struct mrkey_pd *user = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, user, tu_scratch, 64, A0, I0, 0);
	uint64_t host = (uintptr_t)tu_scratch;
	struct mrkey_mr *none = NULL;

	EXPECT_FAIL(lkey(t, priv, 0, host, 8, 0, &_is), -ENOENT, none);
	EXPECT_FAIL(rkey(t, priv, 0, host, 8, 0, &_is), -ENOENT, none);
	EXPECT_FAIL(lkey(t, user, 0, host, 8, 0, &_is), -ENOENT, mr);
	EXPECT_FAIL(lkey(t, user, 0, A0, 8, 0, &_is), -ENOENT, mr);
	tu_dereg(mr);
	tu_pd_del(priv);
	tu_pd_del(user);
	tu_table_del(t);
}
END_TEST

START_TEST(key0_dma)
{
	struct mrkey_table *t = new_table(_i, 4);
	struct mrkey_pd *priv = tu_pd_new(t, MRKEY_PD_PRIVILEGED);
	struct mrkey_pd *priv2 = tu_pd_new(t, MRKEY_PD_PRIVILEGED);
	struct mrkey_pd *user = tu_pd_new(t, 0);
	unsigned char buf[256];
	uint64_t host = (uintptr_t)buf;
	struct mrkey_isge isge;
	struct mrkey_mr *dma;

	ck_assert_int_eq(mrkey_mr_reg_dma(t, priv, MRKEY_ACCESS_ALL, &dma), 0);
	ck_assert_int_eq(lkey(t, priv, 0, host + 10, 100,
			      MRKEY_ACCESS_LOCAL_WRITE, &isge),
			 0);
	ck_assert_ptr_eq(isge.mr, dma);
	ck_assert_ptr_eq(isge.vaddr, buf + 10);
	ck_assert_uint_eq(isge.sge_length, 100);
	ck_assert_uint_ge(isge.length, 100);
	ck_assert_uint_eq(mrkey_mr_refcount(dma), 3);
	mrkey_isge_put(&isge);
	ck_assert_int_eq(rkey(t, priv, 0, host + 20, 30,
			      MRKEY_ACCESS_REMOTE_READ, &isge),
			 0);
	ck_assert_ptr_eq(isge.vaddr, buf + 20);
	mrkey_isge_put(&isge);
	ck_assert_uint_eq(mrkey_mr_refcount(dma), 2);

	EXPECT_FAIL(lkey(t, user, 0, host, 8, 0, &_is), -EPERM, dma);
	EXPECT_FAIL(rkey(t, user, 0, host, 8, 0, &_is), -EPERM, dma);
	EXPECT_FAIL(lkey(t, priv2, 0, host, 8, 0, &_is), -EPERM, dma);
	EXPECT_FAIL(lkey(t, priv, 0, UINT64_MAX - 5, 10, 0, &_is), -ERANGE,
		    dma);
	EXPECT_FAIL(lkey(t, priv, 0, host, 0, 16, &_is), -EINVAL, dma);
	EXPECT_FAIL(lkey(t, priv, 0, host, 8, 16, &_is), -EINVAL, dma);
	tu_dereg(dma);

	/* The DMA region's access bits are enforced too. */
	ck_assert_int_eq(
		mrkey_mr_reg_dma(t, priv, MRKEY_ACCESS_REMOTE_READ, &dma), 0);
	ck_assert_int_eq(tu_lkey_probe(t, priv, 0, host, 8, 0), 0);
	ck_assert_int_eq(tu_rkey_probe(t, priv, 0, host, 8,
				       MRKEY_ACCESS_REMOTE_READ),
			 0);
	EXPECT_FAIL(lkey(t, priv, 0, host, 8, MRKEY_ACCESS_LOCAL_WRITE, &_is),
		    -EACCES, dma);
	EXPECT_FAIL(rkey(t, priv, 0, host, 8, MRKEY_ACCESS_REMOTE_WRITE, &_is),
		    -EACCES, dma);
	tu_dereg(dma);
	EXPECT_FAIL(lkey(t, priv, 0, host, 8, 0, &_is), -ENOENT, NULL);

	tu_pd_del(priv);
	tu_pd_del(priv2);
	tu_pd_del(user);
	tu_table_del(t);
}
END_TEST

/* ---- callers on any thread --------------------------------------------- */

struct hop {
	struct fixture *f;
	struct mrkey_isge isge;
	int rc, keep;
};

static void *hop_main(void *arg)
{
	struct hop *h = arg;

	h->rc = rkey(h->f->t, h->f->pd, h->f->key, I0 + 8, 8,
		     MRKEY_ACCESS_REMOTE_READ, &h->isge);
	if (h->rc == 0 && !h->keep)
		mrkey_isge_put(&h->isge);
	return NULL;
}

START_TEST(fresh_threads)
{
	/*
	 * Threads that were never registered anywhere validate once and
	 * exit, some still holding their reference (handed to the test
	 * thread). Afterwards deregistration (which may wait for a grace
	 * period) must not wait for the dead threads.
	 */
	struct fixture *f = fx_new(_i, A0, I0, MRKEY_ACCESS_ALL);
	struct hop hops[2];
	pthread_t th[2];
	double t0;
	int i, j;

	for (i = 0; i < 100; i++) {
		for (j = 0; j < 2; j++) {
			hops[j].f = f;
			hops[j].keep = (i + j) % 3 == 0;
			ck_assert_int_eq(pthread_create(&th[j], NULL, hop_main,
							&hops[j]),
					 0);
		}
		for (j = 0; j < 2; j++) {
			pthread_join(th[j], NULL);
			ck_assert_int_eq(hops[j].rc, 0);
			ck_assert_ptr_eq(hops[j].isge.vaddr, f->buf + 8);
			if (hops[j].keep)
				mrkey_isge_put(&hops[j].isge);
		}
	}
	ck_assert_uint_eq(mrkey_mr_refcount(f->mr), 2);
	t0 = tu_now_ms();
	tu_dereg(f->mr);
	ck_assert_msg(tu_now_ms() - t0 < 5000, "dereg took %.0f ms",
		      tu_now_ms() - t0);
	f->mr = tu_reg1_ok(f->t, f->pd, f->buf, sizeof(f->buf), A0, I0,
			   MRKEY_ACCESS_ALL);
	fx_del(f);
}
END_TEST

static int nested_done;

static void nested_count(struct mrkey_mr *mr, void *arg)
{
	(void)mr;
	(void)arg;
	nested_done++;
}

START_TEST(inside_read_section)
{
	/* Validation and puts nest inside the caller's read-side section. */
	struct fixture *f = fx_new(_i, A0, I0, MRKEY_ACCESS_ALL);
	struct mrkey_mr *mr2 =
		tu_reg1_ok(f->t, f->pd, tu_scratch, 64, A0, I0, 0);
	struct mrkey_isge isge, isge2;

	nested_done = 0;
	mrkey_read_lock();
	mrkey_read_lock();
	ck_assert_int_eq(lkey(f->t, f->pd, f->key, A0, 8, 0, &isge), 0);
	ck_assert_ptr_eq(isge.vaddr, f->buf);
	mrkey_read_unlock();
	ck_assert_int_eq(
		lkey(f->t, f->pd, mrkey_mr_lkey(mr2), A0, 8, 0, &isge2), 0);
	mrkey_isge_put(&isge);
	mrkey_read_unlock();

	/* The last put of an async deregistration, inside a section. */
	ck_assert_int_eq(mrkey_mr_dereg_async(mr2, nested_count, NULL), 0);
	mrkey_read_lock();
	mrkey_isge_put(&isge2);
	mrkey_read_unlock();
	mrkey_reclaim_wait();
	ck_assert_int_eq(nested_done, 1);
	fx_del(f);
}
END_TEST

static void add_cases(Suite *s, enum mrkey_refcount_mode m)
{
	TCase *tc;
	int n = (int)TU_ARRAY_SIZE(layouts);

	tc = tu_tcase_mode("checks", m);
	tcase_add_loop_test(tc, success_fills_isge, 0, n);
	tcase_add_loop_test(tc, bounds_lkey_addr_rkey_iova, 0, n);
	tcase_add_loop_test(tc, bounds_overflow, 0, n);
	tcase_add_loop_test(tc, wrong_pd, 0, n);
	tcase_add_loop_test(tc, access_matrix, 0, n);
	tcase_add_loop_test(tc, bad_arguments, 0, n);
	tcase_add_loop_test(tc, unknown_keys, 0, n);
	tcase_add_loop_test(tc, stale_key, 0, n);
	tcase_add_loop_test(tc, fresh_threads, 0, n);
	tcase_add_loop_test(tc, inside_read_section, 0, n);
	suite_add_tcase(s, tc);

	tc = tu_tcase_mode("key0", m);
	tcase_add_loop_test(tc, key0_without_dma, 0, n);
	tcase_add_loop_test(tc, key0_dma, 0, n);
	suite_add_tcase(s, tc);

	tc = tu_tcase_mode("translate", m);
	tcase_add_loop_test(tc, translate_pow2, 0, n);
	tcase_add_loop_test(tc, translate_pow2_short_tail, 0, n);
	tcase_add_loop_test(tc, translate_single, 0, n);
	tcase_add_loop_test(tc, translate_irregular, 0, n);
	tcase_add_loop_test(tc, translate_irregular_many, 0, n);
	tcase_add_loop_test(tc, translate_pow2_but_uneven_middle, 0, n);
	suite_add_tcase(s, tc);
}

static Suite *validate_suite(void)
{
	Suite *s = suite_create("validate");

	add_cases(s, MRKEY_REFCOUNT_ATOMIC);
	add_cases(s, MRKEY_REFCOUNT_PERCPU);
	return s;
}

int main(void)
{
	return tu_run(validate_suite());
}
