/* SPDX-License-Identifier: MIT */
/*
 * Regions: registration and its -EINVAL cases, the DMA region, the
 * reference protocol, bounded and asynchronous deregistration, underflow
 * reports, and the calls a backend sees.
 */
#include <pthread.h>
#include <string.h>

#include "testutil.h"

#define A0 0x100000ull       /* addr of test regions */
#define I0 0x7f0000000000ull /* iova of test regions */

static struct mrkey_table *new_table(unsigned int bits)
{
	return tu_table_new(bits, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
}

static void lkey_ok_or_fail(struct mrkey_table *t, struct mrkey_pd *pd,
			    struct mrkey_mr *mr, uint64_t addr, uint32_t len,
			    struct mrkey_isge *isge)
{
	struct mrkey_sge sge = { addr, len, mrkey_mr_lkey(mr) };
	int rc = mrkey_lkey_ok(t, pd, &sge, 0, isge);

	ck_assert_msg(rc == 0, "lkey_ok: %d", rc);
	ck_assert_ptr_eq(isge->mr, mr);
}

/* ---- registration ------------------------------------------------------ */

START_TEST(reg_one_seg)
{
	struct mrkey_table *t = new_table(4);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	unsigned char buf[256];
	struct mrkey_mr *mr =
		tu_reg1_ok(t, pd, buf, sizeof(buf), A0, I0, MRKEY_ACCESS_ALL);
	uint32_t key = mrkey_mr_lkey(mr);

	ck_assert_uint_ne(key, 0);
	ck_assert_uint_eq(mrkey_mr_rkey(mr), key);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_int_eq(mrkey_mr_published(mr), 1);
	ck_assert_ptr_null(mrkey_mr_backend_data(mr));
	ck_assert_int_eq(tu_lkey_probe(t, pd, key, A0, sizeof(buf), 0), 0);
	ck_assert_int_eq(tu_rkey_probe(t, pd, key, I0, sizeof(buf),
				       MRKEY_ACCESS_REMOTE_READ),
			 0);
	tu_dereg(mr);
	ck_assert_int_eq(tu_lkey_probe(t, pd, key, A0, 1, 0), -ENOENT);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(reg_many_segs)
{
	enum {
		NSEG = 100
	};
	struct mrkey_table *t = new_table(4);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_seg segs[NSEG];
	unsigned char *bufs[NSEG];
	struct mrkey_mr_attr a;
	struct mrkey_mr *mr;
	uint64_t total = 0, off = 0;
	size_t i;

	for (i = 0; i < NSEG; i++) {
		segs[i].length = 1 + (i * 37) % 300;
		bufs[i] = malloc(segs[i].length);
		ck_assert_ptr_nonnull(bufs[i]);
		segs[i].addr = bufs[i];
		total += segs[i].length;
	}
	memset(&a, 0, sizeof(a));
	a.pd = pd;
	a.addr = A0;
	a.iova = I0;
	a.length = total;
	a.access = MRKEY_ACCESS_LOCAL_WRITE;
	a.segs = segs;
	a.nsegs = NSEG;
	ck_assert_int_eq(mrkey_mr_reg(t, &a, &mr), 0);
	/* The segment array was copied. */
	memset(segs, 0xa5, sizeof(segs));
	for (i = 0; i < NSEG; i++) {
		struct mrkey_isge isge;

		lkey_ok_or_fail(t, pd, mr, A0 + off, 1, &isge);
		ck_assert_ptr_eq(isge.vaddr, bufs[i]);
		mrkey_isge_put(&isge);
		off += 1 + (i * 37) % 300;
	}
	ck_assert_int_eq(tu_lkey_probe(t, pd, mrkey_mr_lkey(mr), A0,
				       (uint32_t)total, 0),
			 0);
	ck_assert_int_eq(tu_lkey_probe(t, pd, mrkey_mr_lkey(mr), A0,
				       (uint32_t)total + 1, 0),
			 -ERANGE);
	tu_dereg(mr);
	for (i = 0; i < NSEG; i++)
		free(bufs[i]);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(reg_every_access_mask)
{
	struct mrkey_table *t = new_table(5);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mrs[16];
	unsigned int m;

	for (m = 0; m < 16; m++)
		mrs[m] = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, m);
	for (m = 0; m < 16; m++)
		tu_dereg(mrs[m]);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/*
 * The -EINVAL cases of mrkey_mr_reg(), by loop index. Each must leave the
 * table as it was: same capacity, no allocation kept, existing regions
 * fine, the out pointer untouched.
 */
enum {
	BAD_NULL_TABLE,
	BAD_NULL_ATTR,
	BAD_NULL_OUT,
	BAD_NULL_PD,
	BAD_FOREIGN_PD,
	BAD_NSEGS_0,
	BAD_NULL_SEGS,
	BAD_SEG_NULL_ADDR,
	BAD_SEG_LEN_0,
	BAD_MIDDLE_SEG_LEN_0,
	BAD_LENGTH_0,
	BAD_LENGTH_SHORT,
	BAD_LENGTH_LONG,
	BAD_ADDR_OVERFLOW,
	BAD_ADDR_OVERFLOW_EXACT,
	BAD_IOVA_OVERFLOW,
	BAD_IOVA_OVERFLOW_EXACT,
	BAD_ACCESS_BIT4,
	BAD_ACCESS_HIGH,
	BAD_COMP_MASK_LOW,
	BAD_COMP_MASK_HIGH,
	BAD_COUNT
};

START_TEST(reg_einval)
{
	struct mrkey_table_attr ta;
	struct mrkey_table *t, *t2;
	struct mrkey_pd *pd, *pd2;
	struct mrkey_seg segs[3];
	struct mrkey_mr_attr a;
	struct mrkey_mr *keep, *mr, *sentinel = (struct mrkey_mr *)&mr;
	struct mrkey_table *tt;
	struct mrkey_mr **mrp = &mr;
	long live;
	int rc;

	tu_alloc_reset();
	tu_attr_init(&ta, 2, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	ta.allocator = &tu_allocator;
	t = tu_table_new_attr(&ta);
	t2 = new_table(2);
	pd = tu_pd_new(t, 0);
	pd2 = tu_pd_new(t2, 0);
	keep = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	mrkey_reclaim_wait();
	live = atomic_load(&tu_stats.live);

	segs[0].addr = tu_scratch;
	segs[0].length = 100;
	segs[1].addr = tu_scratch + 1000;
	segs[1].length = 200;
	segs[2].addr = tu_scratch + 2000;
	segs[2].length = 300;
	memset(&a, 0, sizeof(a));
	a.pd = pd;
	a.addr = A0;
	a.iova = I0;
	a.length = 600;
	a.access = MRKEY_ACCESS_ALL;
	a.segs = segs;
	a.nsegs = 3;
	tt = t;

	switch (_i) {
	case BAD_NULL_TABLE:
		tt = NULL;
		break;
	case BAD_NULL_ATTR:
		break;
	case BAD_NULL_OUT:
		mrp = NULL;
		break;
	case BAD_NULL_PD:
		a.pd = NULL;
		break;
	case BAD_FOREIGN_PD:
		a.pd = pd2;
		break;
	case BAD_NSEGS_0:
		a.nsegs = 0;
		break;
	case BAD_NULL_SEGS:
		a.segs = NULL;
		break;
	case BAD_SEG_NULL_ADDR:
		segs[2].addr = NULL;
		break;
	case BAD_SEG_LEN_0:
		segs[0].length = 0;
		a.length = 500;
		break;
	case BAD_MIDDLE_SEG_LEN_0:
		segs[1].length = 0;
		a.length = 400;
		break;
	case BAD_LENGTH_0:
		a.length = 0;
		break;
	case BAD_LENGTH_SHORT:
		a.length = 599;
		break;
	case BAD_LENGTH_LONG:
		a.length = 601;
		break;
	case BAD_ADDR_OVERFLOW:
		a.addr = UINT64_MAX - 10;
		break;
	case BAD_ADDR_OVERFLOW_EXACT:
		/* addr + length == 2^64: does not fit in 64 bits. */
		a.addr = UINT64_MAX - 600 + 1;
		break;
	case BAD_IOVA_OVERFLOW:
		a.iova = UINT64_MAX - 10;
		break;
	case BAD_IOVA_OVERFLOW_EXACT:
		a.iova = UINT64_MAX - 600 + 1;
		break;
	case BAD_ACCESS_BIT4:
		a.access = MRKEY_ACCESS_ALL | 64; /* 16 is MW_BIND */
		break;
	case BAD_ACCESS_HIGH:
		a.access = 0x80000000u;
		break;
	case BAD_COMP_MASK_LOW:
		a.comp_mask = 1;
		break;
	case BAD_COMP_MASK_HIGH:
		a.comp_mask = 1ull << 63;
		break;
	}
	mr = sentinel;
	rc = mrkey_mr_reg(tt, _i == BAD_NULL_ATTR ? NULL : &a, mrp);
	ck_assert_msg(rc == -EINVAL, "case %d: %d", _i, rc);
	ck_assert_ptr_eq(mr, sentinel);

	mrkey_reclaim_wait();
	ck_assert_int_eq(atomic_load(&tu_stats.live), live);
	ck_assert_int_eq(tu_lkey_probe(t, pd, mrkey_mr_lkey(keep), A0, 64, 0),
			 0);
	ck_assert_uint_eq(mrkey_mr_refcount(keep), 2);
	ck_assert_uint_eq(tu_free_slots(t, pd, 8), 3);
	ck_assert_uint_eq(tu_free_slots(t2, pd2, 8), 4);
	tu_dereg(keep);
	tu_pd_del(pd);
	tu_pd_del(pd2);
	tu_table_del(t);
	tu_table_del(t2);
	mrkey_reclaim_wait();
	ck_assert_int_eq(atomic_load(&tu_stats.live), 0);
	tu_alloc_check_clean();
}
END_TEST

START_TEST(reg_top_of_address_space)
{
	/* The last representable byte is fine; the overflow is one past. */
	struct mrkey_table *t = new_table(4);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	unsigned char buf[64];
	struct mrkey_mr *mr;
	uint32_t key;

	mr = tu_reg1_ok(t, pd, buf, sizeof(buf), UINT64_MAX - 64,
			UINT64_MAX - 64, MRKEY_ACCESS_REMOTE_READ);
	key = mrkey_mr_lkey(mr);
	ck_assert_int_eq(tu_lkey_probe(t, pd, key, UINT64_MAX - 1, 1, 0), 0);
	ck_assert_int_eq(tu_lkey_probe(t, pd, key, UINT64_MAX - 64, 64, 0), 0);
	ck_assert_int_eq(tu_lkey_probe(t, pd, key, UINT64_MAX - 1, 2, 0),
			 -ERANGE);
	ck_assert_int_eq(tu_lkey_probe(t, pd, key, UINT64_MAX, 1, 0), -ERANGE);
	ck_assert_int_eq(tu_rkey_probe(t, pd, key, UINT64_MAX - 1, 1,
				       MRKEY_ACCESS_REMOTE_READ),
			 0);
	ck_assert_int_eq(tu_rkey_probe(t, pd, key, UINT64_MAX, 1,
				       MRKEY_ACCESS_REMOTE_READ),
			 -ERANGE);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/* ---- DMA region -------------------------------------------------------- */

/* Validate one byte at @buf through key 0, keeping the reference. */
static int dma_probe_held(struct mrkey_table *t, struct mrkey_pd *pd,
			  unsigned char *buf, struct mrkey_isge *is)
{
	struct mrkey_sge sge = { (uintptr_t)buf, 1, 0 };

	return mrkey_lkey_ok(t, pd, &sge, 0, is);
}

START_TEST(reg_dma)
{
	struct mrkey_table *t = new_table(2), *t2 = new_table(2);
	struct mrkey_pd *priv = tu_pd_new(t, MRKEY_PD_PRIVILEGED);
	struct mrkey_pd *user = tu_pd_new(t, 0);
	struct mrkey_pd *priv2 = tu_pd_new(t2, MRKEY_PD_PRIVILEGED);
	struct mrkey_mr *dma, *dma2, *sentinel = (struct mrkey_mr *)&dma2;
	struct mrkey_mr *mrs[4];
	int i;

	dma2 = sentinel;
	ck_assert_int_eq(mrkey_mr_reg_dma(t, user, 0, &dma2), -EPERM);
	ck_assert_int_eq(mrkey_mr_reg_dma(NULL, priv, 0, &dma2), -EINVAL);
	ck_assert_int_eq(mrkey_mr_reg_dma(t, NULL, 0, &dma2), -EINVAL);
	ck_assert_int_eq(mrkey_mr_reg_dma(t, priv, 0, NULL), -EINVAL);
	ck_assert_int_eq(mrkey_mr_reg_dma(t, priv2, 0, &dma2), -EINVAL);
	ck_assert_int_eq(mrkey_mr_reg_dma(t, priv, 16, &dma2), -EINVAL);
	ck_assert_ptr_eq(dma2, sentinel);

	ck_assert_int_eq(mrkey_mr_reg_dma(t, priv, MRKEY_ACCESS_ALL, &dma), 0);
	ck_assert_uint_eq(mrkey_mr_lkey(dma), 0);
	ck_assert_uint_eq(mrkey_mr_rkey(dma), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(dma), 2);
	ck_assert_int_eq(mrkey_mr_published(dma), 1);
	ck_assert_int_eq(mrkey_mr_reg_dma(t, priv, 0, &dma2), -EEXIST);
	ck_assert_ptr_eq(dma2, sentinel);

	/* It takes no slot: 2^b regular regions still fit. */
	for (i = 0; i < 4; i++)
		mrs[i] = tu_reg1_ok(t, user, tu_scratch, 64, A0, I0, 0);
	ck_assert_int_eq(tu_reg1(t, user, tu_scratch, 64, A0, I0, 0, &dma2),
			 -ENOMEM);
	for (i = 0; i < 4; i++)
		tu_dereg(mrs[i]);

	/* The other table is separate. */
	ck_assert_int_eq(mrkey_mr_reg_dma(t2, priv2, 0, &dma2), 0);
	tu_dereg(dma2);

	tu_dereg(dma);
	ck_assert_int_eq(tu_lkey_probe(t, priv, 0, (uintptr_t)tu_scratch, 1, 0),
			 -ENOENT);
	/* Another one after the first is gone. */
	ck_assert_int_eq(mrkey_mr_reg_dma(t, priv, 0, &dma), 0);
	ck_assert_int_eq(tu_lkey_probe(t, priv, 0, (uintptr_t)tu_scratch, 1, 0),
			 0);
	tu_dereg(dma);
	tu_pd_del(priv);
	tu_pd_del(user);
	tu_pd_del(priv2);
	tu_table_del(t);
	tu_table_del(t2);
}
END_TEST

/* ---- reference protocol ------------------------------------------------ */

START_TEST(refcount_protocol)
{
	struct mrkey_table *t = new_table(4);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	struct mrkey_isge isge[3];
	int i;

	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	mrkey_mr_get(mr);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 3);
	mrkey_mr_get(mr);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 4);
	mrkey_mr_put(mr);
	mrkey_mr_put(mr);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	for (i = 0; i < 3; i++) {
		lkey_ok_or_fail(t, pd, mr, A0, 8, &isge[i]);
		ck_assert_uint_eq(mrkey_mr_refcount(mr), 3 + (uint32_t)i);
	}
	for (i = 0; i < 3; i++) {
		mrkey_isge_put(&isge[i]);
		ck_assert_ptr_null(isge[i].mr);
		ck_assert_uint_eq(mrkey_mr_refcount(mr), 4 - (uint32_t)i);
	}
	ck_assert_int_eq(mrkey_mr_published(mr), 1);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(reg_dma_while_old_drains)
{
	/*
	 * The DMA region's record carries its count too, so a deregistered
	 * one that still drains keeps its record; a new DMA region takes
	 * another, and key 0 names the new one. Four records: a fifth
	 * region while four drain is -ENOMEM.
	 */
	struct mrkey_table *t = new_table(2);
	struct mrkey_pd *priv = tu_pd_new(t, MRKEY_PD_PRIVILEGED);
	unsigned char buf[16] = { 0x5a };
	struct mrkey_mr *dma[5];
	struct mrkey_isge held[4], is;
	int i;

	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(mrkey_mr_reg_dma(t, priv, 0, &dma[i]), 0);
		ck_assert_int_eq(dma_probe_held(t, priv, buf, &held[i]), 0);
		ck_assert_ptr_eq(held[i].mr, dma[i]);
		ck_assert_int_eq(mrkey_mr_dereg(dma[i], 0), -EBUSY);
		/* Unpublished: no lookup reaches it, nor a new region yet. */
		ck_assert_int_eq(tu_lkey_probe(t, priv, 0, (uintptr_t)buf, 1,
					       0),
				 -ENOENT);
	}
	ck_assert_int_eq(mrkey_mr_reg_dma(t, priv, 0, &dma[4]), -ENOMEM);
	mrkey_isge_put(&held[2]);
	ck_assert_int_eq(mrkey_mr_dereg(dma[2], 0), 0);
	ck_assert_int_eq(mrkey_mr_reg_dma(t, priv, 0, &dma[4]), 0);
	ck_assert_int_eq(dma_probe_held(t, priv, buf, &is), 0);
	ck_assert_ptr_eq(is.mr, dma[4]);
	ck_assert_uint_eq(*(unsigned char *)held[0].vaddr, 0x5a);
	mrkey_isge_put(&is);
	for (i = 0; i < 4; i++) {
		if (i == 2)
			continue;
		mrkey_isge_put(&held[i]);
		ck_assert_int_eq(mrkey_mr_dereg(dma[i], 0), 0);
	}
	tu_dereg(dma[4]);
	tu_pd_del(priv);
	tu_table_del(t);
}
END_TEST

START_TEST(refcount_dma)
{
	struct mrkey_table *t = new_table(4);
	struct mrkey_pd *pd = tu_pd_new(t, MRKEY_PD_PRIVILEGED);
	struct mrkey_sge sge = { (uintptr_t)tu_scratch, 16, 0 };
	struct mrkey_isge isge;
	struct mrkey_mr *dma;

	ck_assert_int_eq(mrkey_mr_reg_dma(t, pd, 0, &dma), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(dma), 2);
	ck_assert_int_eq(mrkey_lkey_ok(t, pd, &sge, 0, &isge), 0);
	ck_assert_ptr_eq(isge.mr, dma);
	ck_assert_uint_eq(mrkey_mr_refcount(dma), 3);
	ck_assert_int_eq(mrkey_mr_dereg(dma, 0), -EBUSY);
	ck_assert_uint_eq(mrkey_mr_refcount(dma), 2);
	ck_assert_int_eq(mrkey_mr_published(dma), 0);
	ck_assert_int_eq(tu_lkey_probe(t, pd, 0, sge.addr, 1, 0), -ENOENT);
	mrkey_isge_put(&isge);
	tu_dereg(dma);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/* ---- synchronous deregistration ---------------------------------------- */

START_TEST(dereg_null)
{
	ck_assert_int_eq(mrkey_mr_dereg(NULL, 0), -EINVAL);
	ck_assert_int_eq(mrkey_mr_dereg(NULL, 100), -EINVAL);
}
END_TEST

START_TEST(dereg_busy_then_retry)
{
	struct mrkey_table *t = new_table(4);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	unsigned char buf[64];
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, buf, sizeof(buf), A0, I0,
					 MRKEY_ACCESS_LOCAL_WRITE);
	uint32_t key = mrkey_mr_lkey(mr);
	struct mrkey_isge isge;

	memset(buf, 0x11, sizeof(buf));
	lkey_ok_or_fail(t, pd, mr, A0 + 8, 8, &isge);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 3);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);

	/* Unpublished, but intact and the caller's reference is back. */
	ck_assert_int_eq(mrkey_mr_published(mr), 0);
	ck_assert_int_eq(tu_lkey_probe(t, pd, key, A0, 8, 0), -ENOENT);
	ck_assert_int_eq(tu_rkey_probe(t, pd, key, I0, 8, 0), -ENOENT);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_ptr_eq(isge.vaddr, buf + 8);
	ck_assert_uint_eq(((unsigned char *)isge.vaddr)[0], 0x11);
	((unsigned char *)isge.vaddr)[1] = 0x22;
	ck_assert_uint_eq(buf[9], 0x22);
	ck_assert_uint_eq(mrkey_mr_lkey(mr), key);

	/* Again: only waits again. */
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 20), -EBUSY);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_int_eq(mrkey_mr_published(mr), 0);

	mrkey_isge_put(&isge);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 1);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(dereg_busy_several_refs)
{
	struct mrkey_table *t = new_table(4);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	struct mrkey_isge isge[3];
	int i;

	for (i = 0; i < 3; i++)
		lkey_ok_or_fail(t, pd, mr, A0, 8, &isge[i]);
	mrkey_mr_get(mr);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	for (i = 0; i < 3; i++) {
		mrkey_isge_put(&isge[i]);
		ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	}
	mrkey_mr_put(mr);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 1);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

struct putter {
	struct mrkey_isge *isge;
	unsigned int delay_ms;
	atomic_int done;
	pthread_t self;
};

static void *putter_main(void *arg)
{
	struct putter *p = arg;

	p->self = pthread_self();
	tu_sleep_ms(p->delay_ms);
	atomic_store(&p->done, 1);
	mrkey_isge_put(p->isge);
	return NULL;
}

START_TEST(dereg_waits_for_put)
{
	struct mrkey_table *t = new_table(4);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	struct mrkey_isge isge;
	struct putter p = { .isge = &isge, .delay_ms = 50 };
	pthread_t th;
	double t0, dt;

	lkey_ok_or_fail(t, pd, mr, A0, 8, &isge);
	ck_assert_int_eq(pthread_create(&th, NULL, putter_main, &p), 0);
	t0 = tu_now_ms();
	ck_assert_int_eq(mrkey_mr_dereg(mr, 10000), 0);
	dt = tu_now_ms() - t0;
	ck_assert_int_eq(atomic_load(&p.done), 1);
	/* Generous: woken by the put, not by the 10 s timeout. */
	ck_assert_msg(dt < 5000, "dereg took %.0f ms", dt);
	pthread_join(th, NULL);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(dereg_times_out)
{
	struct mrkey_table *t = new_table(4);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	struct mrkey_isge isge;
	double t0, dt;

	lkey_ok_or_fail(t, pd, mr, A0, 8, &isge);
	t0 = tu_now_ms();
	ck_assert_int_eq(mrkey_mr_dereg(mr, 100), -EBUSY);
	dt = tu_now_ms() - t0;
	ck_assert_msg(dt >= 90, "gave up after %.1f ms of 100", dt);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	mrkey_isge_put(&isge);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

struct dereger {
	struct mrkey_mr *mr;
	unsigned int timeout;
	int rc;
};

static void *dereger_main(void *arg)
{
	struct dereger *d = arg;

	d->rc = mrkey_mr_dereg(d->mr, d->timeout);
	return NULL;
}

static void count_done(struct mrkey_mr *mr, void *arg);

START_TEST(dereg_ealready)
{
	struct mrkey_table *t = new_table(4);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	struct dereger d = { .mr = mr, .timeout = 20000, .rc = 1 };
	struct mrkey_isge isge;
	int calls = 0;
	pthread_t th;
	double t0;

	lkey_ok_or_fail(t, pd, mr, A0, 8, &isge);
	ck_assert_int_eq(pthread_create(&th, NULL, dereger_main, &d), 0);
	/* Our isge keeps mr valid throughout. */
	t0 = tu_now_ms();
	while (mrkey_mr_published(mr) && tu_now_ms() - t0 < 10000)
		tu_sleep_ms(1);
	ck_assert_int_eq(mrkey_mr_published(mr), 0);
	tu_sleep_ms(20);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EALREADY);
	ck_assert_int_eq(mrkey_mr_dereg_async(mr, count_done, &calls),
			 -EALREADY);
	mrkey_isge_put(&isge);
	pthread_join(th, NULL);
	ck_assert_int_eq(d.rc, 0);
	ck_assert_int_eq(calls, 0);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(slot_held_until_drained)
{
	/*
	 * b = 1: both slots taken. The count lives in the slot, so the slot
	 * of a region that still drains stays taken (table.h): the table is
	 * full until the last holder lets go, and the stale key never
	 * resolves to the region that takes the slot next.
	 */
	struct mrkey_table *t = new_table(1);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	unsigned char abuf[32], cbuf[32];
	struct mrkey_mr *a = tu_reg1_ok(t, pd, abuf, 32, A0, I0, 0);
	struct mrkey_mr *b = tu_reg1_ok(t, pd, tu_scratch, 32, A0, I0, 0);
	struct mrkey_mr *c;
	uint32_t akey = mrkey_mr_lkey(a), ckey;
	struct mrkey_isge isge;
	int done_calls = 0;

	memset(abuf, 0xaa, sizeof(abuf));
	memset(cbuf, 0xcc, sizeof(cbuf));
	lkey_ok_or_fail(t, pd, a, A0, 32, &isge);
	ck_assert_int_eq(mrkey_mr_dereg(a, 0), -EBUSY);
	ck_assert_int_eq(tu_reg1(t, pd, cbuf, 32, A0, I0, 0, &c), -ENOMEM);
	ck_assert_int_eq(tu_lkey_probe(t, pd, akey, A0, 32, 0), -ENOENT);
	ck_assert_uint_eq(((unsigned char *)isge.vaddr)[0], 0xaa);
	ck_assert_ptr_eq(isge.mr, a);
	ck_assert_int_eq(mrkey_mr_published(a), 0);

	/* Async: the slot comes back with the last put. */
	ck_assert_int_eq(mrkey_mr_dereg_async(a, count_done, &done_calls), 0);
	ck_assert_int_eq(tu_reg1(t, pd, cbuf, 32, A0, I0, 0, &c), -ENOMEM);
	ck_assert_int_eq(done_calls, 0);
	mrkey_isge_put(&isge);
	mrkey_reclaim_wait();
	ck_assert_int_eq(done_calls, 1);
	c = tu_reg1_ok(t, pd, cbuf, 32, A0, I0, 0);
	ckey = mrkey_mr_lkey(c);
	ck_assert_uint_ne(ckey, akey);
	ck_assert_int_eq(tu_lkey_probe(t, pd, akey, A0, 32, 0), -ENOENT);
	ck_assert_int_eq(tu_lkey_probe(t, pd, ckey, A0, 32, 0), 0);
	ck_assert_int_eq(mrkey_mr_published(c), 1);
	tu_dereg(b);
	tu_dereg(c);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/* ---- asynchronous deregistration --------------------------------------- */

/*
 * In PERCPU tables an async deregistration finishes after an RCU grace
 * period (pd.h, table.h): the counts are collapsed, and the table's and the
 * caller's references dropped, on the RCU callback thread. Let that happen.
 */
static int percpu(void)
{
	return tu_refmode == MRKEY_REFCOUNT_PERCPU;
}

static void settle_async(void)
{
	if (percpu())
		mrkey_reclaim_wait();
}

struct done_rec {
	atomic_int calls;
	struct mrkey_mr *mr;
	void *arg;
	pthread_t thread;
	uint32_t key_seen;
};

static struct done_rec done_rec;

static void record_done(struct mrkey_mr *mr, void *arg)
{
	done_rec.mr = mr;
	done_rec.arg = arg;
	done_rec.thread = pthread_self();
	done_rec.key_seen = mrkey_mr_lkey(mr);
	atomic_fetch_add(&done_rec.calls, 1);
}

static void count_done(struct mrkey_mr *mr, void *arg)
{
	(void)mr;
	(*(int *)arg)++;
}

START_TEST(dereg_async_inline)
{
	struct mrkey_table *t = new_table(4);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	uint32_t key = mrkey_mr_lkey(mr);
	int arg;

	memset(&done_rec, 0, sizeof(done_rec));
	ck_assert_int_eq(mrkey_mr_dereg_async(mr, record_done, &arg), 0);
	settle_async();
	ck_assert_int_eq(atomic_load(&done_rec.calls), 1);
	ck_assert_ptr_eq(done_rec.mr, mr);
	ck_assert_ptr_eq(done_rec.arg, &arg);
	/* No transient reference: inside the call (atomic mode). */
	if (!percpu())
		ck_assert(pthread_equal(done_rec.thread, pthread_self()));
	ck_assert_uint_eq(done_rec.key_seen, key);
	ck_assert_int_eq(tu_lkey_probe(t, pd, key, A0, 8, 0), -ENOENT);
	tu_pd_del(pd);
	tu_table_del(t);
	ck_assert_int_eq(atomic_load(&done_rec.calls), 1);
}
END_TEST

START_TEST(dereg_async_deferred)
{
	struct mrkey_table *t = new_table(4);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	uint32_t key = mrkey_mr_lkey(mr);
	struct mrkey_isge isge;
	struct putter p = { .isge = &isge, .delay_ms = 10 };
	pthread_t th;
	int arg;

	memset(&done_rec, 0, sizeof(done_rec));
	lkey_ok_or_fail(t, pd, mr, A0, 8, &isge);
	ck_assert_int_eq(mrkey_mr_dereg_async(mr, record_done, &arg), 0);
	ck_assert_int_eq(tu_lkey_probe(t, pd, key, A0, 8, 0), -ENOENT);
	ck_assert_int_eq(mrkey_mr_published(mr), 0);
	settle_async();
	ck_assert_int_eq(atomic_load(&done_rec.calls), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 1);
	/* A second deregistration of any kind is refused meanwhile. */
	ck_assert_int_eq(mrkey_mr_dereg_async(mr, record_done, &arg),
			 -EALREADY);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EALREADY);
	ck_assert_int_eq(mrkey_pd_free(pd), -EBUSY);
	ck_assert_int_eq(mrkey_table_destroy(t), -EBUSY);
	ck_assert_int_eq(atomic_load(&done_rec.calls), 0);

	ck_assert_int_eq(pthread_create(&th, NULL, putter_main, &p), 0);
	pthread_join(th, NULL);
	ck_assert_int_eq(atomic_load(&done_rec.calls), 1);
	ck_assert(pthread_equal(done_rec.thread, p.self));
	ck_assert_ptr_eq(done_rec.mr, mr);
	ck_assert_ptr_eq(done_rec.arg, &arg);
	ck_assert_uint_eq(done_rec.key_seen, key);
	tu_pd_del(pd);
	tu_table_del(t);
	ck_assert_int_eq(atomic_load(&done_rec.calls), 1);
}
END_TEST

START_TEST(dereg_async_after_busy)
{
	struct mrkey_table *t = new_table(4);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	struct mrkey_isge isge;
	int calls = 0;

	lkey_ok_or_fail(t, pd, mr, A0, 8, &isge);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	ck_assert_int_eq(mrkey_mr_dereg_async(mr, count_done, &calls), 0);
	ck_assert_int_eq(calls, 0);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 1);
	mrkey_isge_put(&isge);
	ck_assert_int_eq(calls, 1);
	tu_pd_del(pd);
	tu_table_del(t);
	ck_assert_int_eq(calls, 1);
}
END_TEST

START_TEST(dereg_async_after_busy_no_refs)
{
	/* The held ref goes between the -EBUSY and the async call. */
	struct mrkey_table *t = new_table(4);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	struct mrkey_isge isge;
	int calls = 0;

	lkey_ok_or_fail(t, pd, mr, A0, 8, &isge);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	mrkey_isge_put(&isge);
	ck_assert_int_eq(mrkey_mr_dereg_async(mr, count_done, &calls), 0);
	ck_assert_int_eq(calls, 1);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(dereg_async_null)
{
	struct mrkey_table *t = new_table(4);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	int calls = 0;

	ck_assert_int_eq(mrkey_mr_dereg_async(NULL, count_done, &calls),
			 -EINVAL);
	ck_assert_int_eq(mrkey_mr_dereg_async(mr, NULL, &calls), -EINVAL);
	/* Refused: still registered. */
	ck_assert_int_eq(mrkey_mr_published(mr), 1);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_int_eq(calls, 0);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(dereg_async_then_free_everything)
{
	/*
	 * Right after an async deregistration with no reference left, the
	 * PD and the table can go: in PERCPU tables they wait for the grace
	 * period the deregistration still needs (pd.h, table.h).
	 */
	struct mrkey_table *t = new_table(4);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *a = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	struct mrkey_mr *b = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	int calls = 0;

	ck_assert_int_eq(mrkey_mr_dereg_async(a, count_done, &calls), 0);
	ck_assert_int_eq(mrkey_mr_dereg_async(b, count_done, &calls), 0);
	ck_assert_int_eq(mrkey_pd_free(pd), 0);
	ck_assert_int_eq(calls, 2);
	ck_assert_int_eq(mrkey_table_destroy(t), 0);
	ck_assert_int_eq(calls, 2);
}
END_TEST

/* ---- misuse reports ---------------------------------------------------- */

static struct {
	int n;
	struct mrkey_mr *mr;
	void *ctx;
	int what_ok;
} reports;

static void record_report(void *ctx, struct mrkey_mr *mr, const char *what)
{
	reports.n++;
	reports.mr = mr;
	reports.ctx = ctx;
	reports.what_ok = what && what[0];
}

/*
 * The region that saturated is never freed: keep it reachable. volatile:
 * never read, the stores were optimised away, and valgrind (which sees
 * libc's allocator, not jemalloc's) reported the table definitely lost.
 */
static struct mrkey_table *volatile leaked_tables[2];

START_TEST(underflow_reported)
{
	struct mrkey_table_attr attr;
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *mr;
	uint32_t key;
	int i;

	memset(&reports, 0, sizeof(reports));
	tu_attr_init(&attr, 4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	attr.report = record_report;
	attr.report_ctx = &reports;
	t = tu_table_new_attr(&attr);
	leaked_tables[tu_refmode == MRKEY_REFCOUNT_PERCPU] = t;
	pd = tu_pd_new(t, 0);
	mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	key = mrkey_mr_lkey(mr);

	mrkey_mr_put(mr); /* the caller's: 2 -> 1, the table's remains */
	ck_assert_int_eq(reports.n, 0);
	/*
	 * Would free a published region. In PERCPU tables too: a region
	 * starts with one atomic count and is split only under contention
	 * (test_split covers a split region's underflow).
	 */
	mrkey_mr_put(mr);
	ck_assert_int_eq(reports.n, 1);
	ck_assert_ptr_eq(reports.mr, mr);
	ck_assert_ptr_eq(reports.ctx, &reports);
	ck_assert(reports.what_ok);

	/* Saturated, not freed: still resolves, and stays so. */
	ck_assert_uint_ne(mrkey_mr_refcount(mr), 0);
	ck_assert_int_eq(mrkey_mr_published(mr), 1);
	ck_assert_int_eq(tu_lkey_probe(t, pd, key, A0, 64, 0), 0);
	for (i = 0; i < 10; i++)
		mrkey_mr_put(mr);
	ck_assert_uint_ne(mrkey_mr_refcount(mr), 0);
	ck_assert_int_eq(tu_lkey_probe(t, pd, key, A0, 64, 0), 0);
	ck_assert_int_eq(mrkey_mr_published(mr), 1);
	/* The table is left as is (the region can never be freed). */
}
END_TEST

/* ---- backend ops ------------------------------------------------------- */

static struct mrkey_table *fake_table(struct tu_fake *f, unsigned int bits,
				      const struct mrkey_allocator *al)
{
	struct mrkey_table_attr attr;

	tu_fake_init(f);
	tu_attr_init(&attr, bits, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	attr.backend = &tu_fake_ops;
	attr.backend_ctx = f;
	attr.allocator = al;
	return tu_table_new_attr(&attr);
}

START_TEST(backend_publish_unpublish)
{
	struct tu_fake f;
	struct mrkey_table *t = fake_table(&f, 4, NULL);
	struct mrkey_pd *pd = tu_pd_new(t, MRKEY_PD_PRIVILEGED);
	struct mrkey_mr *mr, *dma;
	uint32_t key;
	int x;

	mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	key = mrkey_mr_lkey(mr);
	ck_assert_int_eq(atomic_load(&f.publish), 1);
	ck_assert_uint_eq(f.pub_key, key);
	ck_assert_ptr_eq(f.pub_mr, mr);
	ck_assert_int_eq(atomic_load(&f.unpublish), 0);

	/* Validation never calls the backend. */
	for (x = 0; x < 10; x++)
		ck_assert_int_eq(tu_lkey_probe(t, pd, key, A0, 8, 0), 0);
	ck_assert_int_eq(tu_lkey_probe(t, pd, key ^ 1, A0, 8, 0), -ENOENT);
	ck_assert_int_eq(atomic_load(&f.publish), 1);
	ck_assert_int_eq(atomic_load(&f.unpublish), 0);
	ck_assert_int_eq(atomic_load(&f.progress), 0);
	ck_assert_int_eq(atomic_load(&f.release), 0);

	mrkey_mr_set_backend_data(mr, &x);
	ck_assert_ptr_eq(mrkey_mr_backend_data(mr), &x);

	tu_dereg(mr);
	ck_assert_int_eq(atomic_load(&f.unpublish), 1);
	ck_assert_uint_eq(f.unpub_key, key);
	ck_assert_ptr_eq(f.unpub_mr, mr);
	ck_assert_int_eq(atomic_load(&f.release), 1);
	ck_assert_ptr_eq(f.release_mr, mr);
	ck_assert_int_eq(f.published_at_release, 0);

	ck_assert_int_eq(mrkey_mr_reg_dma(t, pd, 0, &dma), 0);
	ck_assert_int_eq(atomic_load(&f.publish), 2);
	ck_assert_uint_eq(f.pub_key, 0);
	ck_assert_ptr_eq(f.pub_mr, dma);
	tu_dereg(dma);
	ck_assert_int_eq(atomic_load(&f.unpublish), 2);
	ck_assert_uint_eq(f.unpub_key, 0);
	ck_assert_int_eq(atomic_load(&f.release), 2);

	tu_pd_del(pd);
	tu_table_del(t);
	ck_assert_int_eq(atomic_load(&f.unbind), 1);
}
END_TEST

START_TEST(backend_unpublish_once)
{
	struct tu_fake f;
	struct mrkey_table *t = fake_table(&f, 4, NULL);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	struct mrkey_isge isge;

	lkey_ok_or_fail(t, pd, mr, A0, 8, &isge);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	ck_assert_int_eq(atomic_load(&f.unpublish), 1);
	ck_assert_int_eq(atomic_load(&f.release), 0);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	ck_assert_int_eq(atomic_load(&f.unpublish), 1);
	mrkey_isge_put(&isge);
	ck_assert_int_eq(atomic_load(&f.release), 0);
	tu_dereg(mr);
	ck_assert_int_eq(atomic_load(&f.unpublish), 1);
	ck_assert_int_eq(atomic_load(&f.release), 1);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(backend_release_async)
{
	struct tu_fake f;
	struct mrkey_table *t = fake_table(&f, 4, NULL);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	struct mrkey_isge isge;
	int calls = 0;

	lkey_ok_or_fail(t, pd, mr, A0, 8, &isge);
	ck_assert_int_eq(mrkey_mr_dereg_async(mr, count_done, &calls), 0);
	ck_assert_int_eq(atomic_load(&f.unpublish), 1);
	settle_async();
	ck_assert_int_eq(atomic_load(&f.release), 0);
	mrkey_isge_put(&isge);
	ck_assert_int_eq(atomic_load(&f.release), 1);
	ck_assert_int_eq(calls, 1);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(backend_publish_fails)
{
	struct tu_fake f;
	struct mrkey_table *t;
	struct mrkey_pd *pd, *priv;
	struct mrkey_mr *keep, *mr, *sentinel = (struct mrkey_mr *)&mr;
	long live;

	tu_alloc_reset();
	t = fake_table(&f, 2, &tu_allocator);
	pd = tu_pd_new(t, 0);
	priv = tu_pd_new(t, MRKEY_PD_PRIVILEGED);
	keep = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	mrkey_reclaim_wait();
	live = atomic_load(&tu_stats.live);

	f.publish_err = -EIO;
	mr = sentinel;
	ck_assert_int_eq(tu_reg1(t, pd, tu_scratch, 64, A0, I0, 0, &mr), -EIO);
	ck_assert_ptr_eq(mr, sentinel);
	ck_assert_int_eq(mrkey_mr_reg_dma(t, priv, 0, &mr), -EIO);
	ck_assert_ptr_eq(mr, sentinel);
	f.publish_err = -ENOSPC;
	ck_assert_int_eq(tu_reg1(t, pd, tu_scratch, 64, A0, I0, 0, &mr),
			 -ENOSPC);
	f.publish_err = 0;
	mrkey_reclaim_wait();
	ck_assert_int_eq(atomic_load(&tu_stats.live), live);

	/* Unchanged: capacity, the other key, and a DMA region can come. */
	ck_assert_int_eq(tu_lkey_probe(t, pd, mrkey_mr_lkey(keep), A0, 8, 0),
			 0);
	ck_assert_uint_eq(tu_free_slots(t, pd, 8), 3);
	ck_assert_int_eq(mrkey_mr_reg_dma(t, priv, 0, &mr), 0);
	tu_dereg(mr);
	tu_dereg(keep);
	tu_pd_del(pd);
	tu_pd_del(priv);
	tu_table_del(t);
	mrkey_reclaim_wait();
	ck_assert_int_eq(atomic_load(&tu_stats.live), 0);
	tu_alloc_check_clean();
}
END_TEST

START_TEST(backend_progress_while_waiting)
{
	struct tu_fake f;
	struct mrkey_table *t = fake_table(&f, 4, NULL);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	struct mrkey_isge isge;
	int before;

	lkey_ok_or_fail(t, pd, mr, A0, 8, &isge);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 100), -EBUSY);
	ck_assert_msg(atomic_load(&f.progress) >= 2,
		      "progress called %d times in a 100 ms wait",
		      atomic_load(&f.progress));
	before = atomic_load(&f.progress);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 50), -EBUSY);
	ck_assert_int_gt(atomic_load(&f.progress), before);
	mrkey_isge_put(&isge);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(backend_progress_drops_last_ref)
{
	struct tu_fake f;
	struct mrkey_table *t = fake_table(&f, 4, NULL);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	struct mrkey_isge isge;
	double t0, dt;

	lkey_ok_or_fail(t, pd, mr, A0, 8, &isge);
	atomic_store(&f.progress_put, &isge);
	t0 = tu_now_ms();
	ck_assert_int_eq(mrkey_mr_dereg(mr, 10000), 0);
	dt = tu_now_ms() - t0;
	ck_assert_msg(dt < 5000, "dereg took %.0f ms", dt);
	ck_assert_int_ge(atomic_load(&f.progress), 1);
	ck_assert_ptr_null(atomic_load(&f.progress_put));
	ck_assert_int_eq(atomic_load(&f.release), 1);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(backend_progress_after_busy)
{
	/* Same, on the retry after an -EBUSY. */
	struct tu_fake f;
	struct mrkey_table *t = fake_table(&f, 4, NULL);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	struct mrkey_isge isge;

	lkey_ok_or_fail(t, pd, mr, A0, 8, &isge);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	atomic_store(&f.progress_put, &isge);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 10000), 0);
	ck_assert_ptr_null(atomic_load(&f.progress_put));
	ck_assert_int_eq(atomic_load(&f.release), 1);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(backend_wake_not_tick)
{
	/*
	 * progress every 3 s: a dereg must still return soon after the last
	 * put, not at the next progress tick.
	 */
	struct mrkey_backend_params p;
	struct mrkey_table_attr attr;
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *mr;
	struct mrkey_isge isge;
	struct putter pu = { .isge = &isge, .delay_ms = 50 };
	struct tu_fake f;
	pthread_t th;
	double t0, dt;

	tu_fake_init(&f);
	memset(&p, 0, sizeof(p));
	p.progress_interval_us = 3000000;
	tu_attr_init(&attr, 4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	attr.backend = &tu_fake_ops;
	attr.backend_params = &p;
	attr.backend_ctx = &f;
	t = tu_table_new_attr(&attr);
	pd = tu_pd_new(t, 0);
	mr = tu_reg1_ok(t, pd, tu_scratch, 64, A0, I0, 0);
	lkey_ok_or_fail(t, pd, mr, A0, 8, &isge);
	ck_assert_int_eq(pthread_create(&th, NULL, putter_main, &pu), 0);
	t0 = tu_now_ms();
	ck_assert_int_eq(mrkey_mr_dereg(mr, 20000), 0);
	dt = tu_now_ms() - t0;
	pthread_join(th, NULL);
	ck_assert_msg(dt < 2500, "dereg took %.0f ms with a 3 s progress tick",
		      dt);
	ck_assert_int_eq(atomic_load(&f.release), 1);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

static void add_cases(Suite *s, enum mrkey_refcount_mode m)
{
	TCase *tc;

	tc = tu_tcase_mode("reg", m);
	tcase_add_test(tc, reg_one_seg);
	tcase_add_test(tc, reg_many_segs);
	tcase_add_test(tc, reg_every_access_mask);
	tcase_add_loop_test(tc, reg_einval, 0, BAD_COUNT);
	tcase_add_test(tc, reg_top_of_address_space);
	tcase_add_test(tc, reg_dma);
	tcase_add_test(tc, reg_dma_while_old_drains);
	suite_add_tcase(s, tc);

	tc = tu_tcase_mode("refcount", m);
	tcase_add_test(tc, refcount_protocol);
	tcase_add_test(tc, refcount_dma);
	tcase_add_test(tc, underflow_reported);
	suite_add_tcase(s, tc);

	tc = tu_tcase_mode("dereg", m);
	tcase_add_test(tc, dereg_null);
	tcase_add_test(tc, dereg_busy_then_retry);
	tcase_add_test(tc, dereg_busy_several_refs);
	tcase_add_test(tc, dereg_waits_for_put);
	tcase_add_test(tc, dereg_times_out);
	tcase_add_test(tc, dereg_ealready);
	tcase_add_test(tc, slot_held_until_drained);
	suite_add_tcase(s, tc);

	tc = tu_tcase_mode("dereg_async", m);
	tcase_add_test(tc, dereg_async_inline);
	tcase_add_test(tc, dereg_async_deferred);
	tcase_add_test(tc, dereg_async_after_busy);
	tcase_add_test(tc, dereg_async_after_busy_no_refs);
	tcase_add_test(tc, dereg_async_null);
	tcase_add_test(tc, dereg_async_then_free_everything);
	suite_add_tcase(s, tc);

	tc = tu_tcase_mode("backend", m);
	tcase_add_test(tc, backend_publish_unpublish);
	tcase_add_test(tc, backend_unpublish_once);
	tcase_add_test(tc, backend_release_async);
	tcase_add_test(tc, backend_publish_fails);
	tcase_add_test(tc, backend_progress_while_waiting);
	tcase_add_test(tc, backend_progress_drops_last_ref);
	tcase_add_test(tc, backend_progress_after_busy);
	tcase_add_test(tc, backend_wake_not_tick);
	suite_add_tcase(s, tc);
}

static Suite *mr_suite(void)
{
	Suite *s = suite_create("mr");

	add_cases(s, MRKEY_REFCOUNT_ATOMIC);
	add_cases(s, MRKEY_REFCOUNT_PERCPU);
	return s;
}

int main(void)
{
	return tu_run(mr_suite());
}
