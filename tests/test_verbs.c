// SPDX-License-Identifier: MIT
/*
 * The verbs key lifecycle: zero-length requests (IBTA C9-88), fast
 * registration (mrkey_mr_alloc, mrkey_mr_fast_reg), invalidation
 * (mrkey_key_invalidate) and re-registration (mrkey_mr_rereg). Every rule
 * of API.md's second wave and every errno path; on error nothing changes.
 * Each case runs in both reference-count modes.
 */
#include <pthread.h>
#include <string.h>

#include "testutil.h"

#define RD MRKEY_ACCESS_REMOTE_READ
#define WR (MRKEY_ACCESS_REMOTE_WRITE | MRKEY_ACCESS_LOCAL_WRITE)

static unsigned char buf_a[4096], buf_b[4096], buf_c[4096];

static struct mrkey_table *vt_table(unsigned int bits,
				    enum mrkey_key_layout layout)
{
	return tu_table_new(bits, MRKEY_KEYGEN_RANDOM, layout);
}

static struct mrkey_fr_attr vt_fr(void *buf, size_t len, uint64_t iova,
				  unsigned int access, uint8_t key_byte,
				  struct mrkey_seg *seg)
{
	struct mrkey_fr_attr a;

	memset(&a, 0, sizeof(a));
	seg->addr = buf;
	seg->length = len;
	a.addr = iova;
	a.iova = iova;
	a.length = len;
	a.access = access;
	a.segs = seg;
	a.nsegs = 1;
	a.key_byte = key_byte;
	return a;
}

/* Fast-register @mr onto @buf at @iova, asserting success; the new key. */
static uint32_t vt_fast_reg(struct mrkey_mr *mr, void *buf, size_t len,
			    uint64_t iova, unsigned int access,
			    uint8_t key_byte)
{
	struct mrkey_seg seg;
	struct mrkey_fr_attr a = vt_fr(buf, len, iova, access, key_byte, &seg);
	uint32_t key = 0;

	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &key), 0);
	return key;
}

/* ---- zero-length requests ---------------------------------------------- */

static void vt_poison(struct mrkey_isge *is)
{
	memset(is, 0x5a, sizeof(*is));
}

static void vt_assert_empty(const struct mrkey_isge *is)
{
	ck_assert_ptr_null(is->mr);
	ck_assert_uint_eq(is->length, 0);
	ck_assert_uint_eq(is->sge_length, 0);
}

START_TEST(zero_length_needs_no_key)
{
	struct mrkey_table *t = vt_table(4, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, buf_a, 64, 0x1000, 0x1000, RD);
	struct mrkey_sge sge = { 0x1000, 0, 0xdeadbeef };
	struct mrkey_isge is;

	/* Any key, even none that exists, any address: no lookup. */
	vt_poison(&is);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, 0xdeadbeef, 0, 0, RD, &is), 0);
	vt_assert_empty(&is);
	mrkey_isge_put(&is); /* accepted, nothing to drop */
	vt_poison(&is);
	ck_assert_int_eq(mrkey_lkey_ok(t, pd, &sge, 0, &is), 0);
	vt_assert_empty(&is);
	/* A live key with len 0 takes no reference either. */
	ck_assert_int_eq(
		mrkey_rkey_ok(t, pd, mrkey_mr_rkey(mr), 0x1000, 0, RD, &is), 0);
	vt_assert_empty(&is);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	/* Key 0 for an unprivileged PD, length 0: still no lookup. */
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, 0, 0, 0, 0, &is), 0);

	/* The argument checks still apply. */
	vt_poison(&is);
	ck_assert_int_eq(mrkey_rkey_ok(NULL, pd, 1, 0, 0, RD, &is), -EINVAL);
	ck_assert_int_eq(mrkey_rkey_ok(t, NULL, 1, 0, 0, RD, &is), -EINVAL);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, 1, 0, 0, RD, NULL), -EINVAL);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, 1, 0, 0, 0x100, &is), -EINVAL);
	ck_assert_int_eq(mrkey_lkey_ok(t, pd, &sge, 0x100, &is), -EINVAL);
	ck_assert_int_eq(mrkey_lkey_ok(t, pd, NULL, 0, &is), -EINVAL);
	ck_assert_uint_eq(is.length, 0x5a5a5a5a); /* untouched */
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(zero_length_in_sg_state)
{
	struct mrkey_table *t = vt_table(4, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr =
		tu_reg1_ok(t, pd, buf_a, 64, 0x1000, 0x1000, MRKEY_ACCESS_ALL);
	struct mrkey_sge sges[4] = {
		{ 0x1000, 0, 0x12345678 },
		{ 0x1000, 8, mrkey_mr_lkey(mr) },
		{ 0, 0, 0 },
		{ 0x1008, 8, mrkey_mr_lkey(mr) },
	};
	struct mrkey_isge list[4];
	struct mrkey_sge_state ss;
	unsigned char out[16], in[16];
	unsigned int i, n = 0;
	int rc;

	for (i = 0; i < 16; i++)
		buf_a[i] = (unsigned char)(0xa0 + i);
	for (i = 0; i < 4; i++) {
		rc = mrkey_lkey_ok_merge(t, pd, &sges[i], 0,
					 n ? &list[n - 1] : NULL, &list[n]);
		ck_assert_int_ge(rc, 0);
		if (rc == 0)
			n++;
	}
	/* Empty entries are neither merged into nor merged across. */
	ck_assert_uint_eq(n, 4);
	ck_assert_ptr_null(list[0].mr);
	ck_assert_ptr_null(list[2].mr);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 4);

	mrkey_ss_init(&ss, list, n);
	ck_assert_uint_eq(mrkey_ss_remaining(&ss), 16);
	ck_assert_uint_eq(mrkey_ss_copy_out(&ss, out, sizeof(out)), 16);
	for (i = 0; i < 16; i++)
		ck_assert_uint_eq(out[i], 0xa0 + i);
	mrkey_ss_put(&ss);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);

	/* copy_in and advance over a list that is only empty entries. */
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, 7, 0, 0, 0, &list[0]), 0);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, 9, 0, 0, 0, &list[1]), 0);
	mrkey_ss_init(&ss, list, 2);
	memset(in, 1, sizeof(in));
	ck_assert_uint_eq(mrkey_ss_copy_in(&ss, in, sizeof(in)), 0);
	ck_assert_uint_eq(mrkey_ss_advance(&ss, 4), 0);
	ck_assert_uint_eq(mrkey_ss_remaining(&ss), 0);
	mrkey_ss_put(&ss);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/* ---- fast registration --------------------------------------------------- */

START_TEST(alloc_rules)
{
	struct mrkey_table *t = vt_table(1, MRKEY_LAYOUT_QIB);
	struct mrkey_table *other = vt_table(2, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_pd *opd = tu_pd_new(other, 0);
	struct mrkey_mr *a = NULL, *b = NULL, *c = NULL;
	struct mrkey_isge is;

	ck_assert_int_eq(mrkey_mr_alloc(NULL, pd, 4, &a), -EINVAL);
	ck_assert_int_eq(mrkey_mr_alloc(t, NULL, 4, &a), -EINVAL);
	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 4, NULL), -EINVAL);
	ck_assert_int_eq(mrkey_mr_alloc(t, opd, 4, &a), -EINVAL);
	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 0, &a), -EINVAL);
	ck_assert_ptr_null(a);
	ck_assert_uint_eq(tu_free_slots(t, pd, 2), 2);

	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 4, &a), 0);
	/* Invalid from the start: idle count 2, no key resolves. */
	ck_assert_uint_eq(mrkey_mr_refcount(a), 2);
	ck_assert_int_eq(mrkey_mr_published(a), 0);
	ck_assert_uint_ne(mrkey_mr_lkey(a), 0);
	ck_assert_uint_eq(mrkey_mr_lkey(a), mrkey_mr_rkey(a));
	ck_assert_int_eq(tu_rkey_probe(t, pd, mrkey_mr_rkey(a), 0, 1, 0),
			 -ENOENT);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, mrkey_mr_rkey(a), 0, 1, 0, &is),
			 -ENOENT);
	/* It counts against the table like a registered region. */
	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 1, &b), 0);
	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 1, &c), -ENOMEM);
	ck_assert_int_eq(tu_reg1(t, pd, buf_a, 8, 0, 0, 0, &c), -ENOMEM);
	ck_assert_int_eq(mrkey_pd_free(pd), -EBUSY);
	ck_assert_int_eq(mrkey_table_destroy(t), -EBUSY);
	/* Freed by deregistration, valid or not. */
	vt_fast_reg(b, buf_b, 64, 0x4000, RD, 0x42);
	ck_assert_int_eq(mrkey_mr_dereg(a, 0), 0);
	ck_assert_int_eq(mrkey_mr_dereg(b, 0), 0);
	ck_assert_uint_eq(tu_free_slots(t, pd, 2), 2);
	tu_pd_del(pd);
	tu_pd_del(opd);
	tu_table_del(t);
	tu_table_del(other);
}
END_TEST

START_TEST(alloc_backend_limit)
{
	struct mrkey_backend_params p = { .max_segs = 4 };
	struct mrkey_table_attr attr;
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *mr = NULL;
	struct tu_fake f;

	tu_fake_init(&f);
	tu_attr_init(&attr, 4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	attr.backend = &tu_fake_ops;
	attr.backend_ctx = &f;
	attr.backend_params = &p;
	t = tu_table_new_attr(&attr);
	pd = tu_pd_new(t, 0);
	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 5, &mr), -EINVAL);
	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 4, &mr), 0);
	/* Invalid: nothing published in the backend yet. */
	ck_assert_int_eq(atomic_load(&f.publish), 0);
	vt_fast_reg(mr, buf_a, 64, 0, RD, 7);
	ck_assert_int_eq(atomic_load(&f.publish), 1);
	ck_assert_uint_eq(f.pub_key, mrkey_mr_lkey(mr));
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, mrkey_mr_lkey(mr)), 0);
	ck_assert_int_eq(atomic_load(&f.unpublish), 1);
	ck_assert_uint_eq(f.unpub_key, mrkey_mr_lkey(mr));
	/* A backend refusal leaves it invalid. */
	f.publish_err = -EIO;
	{
		struct mrkey_seg seg;
		struct mrkey_fr_attr a = vt_fr(buf_a, 64, 0, RD, 8, &seg);
		uint32_t key = 0;

		ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &key), -EIO);
		ck_assert_uint_eq(key, 0);
		ck_assert_int_eq(mrkey_mr_published(mr), 0);
	}
	f.publish_err = 0;
	/* Deregistering an invalid region unpublishes nothing. */
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), 0);
	ck_assert_int_eq(atomic_load(&f.unpublish), 1);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(fast_reg_rules)
{
	struct mrkey_table *t = vt_table(4, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = NULL, *plain;
	struct mrkey_seg seg, segs[3];
	struct mrkey_fr_attr a;
	struct mrkey_isge is;
	uint32_t key0, key = 0;
	unsigned int i;

	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 2, &mr), 0);
	plain = tu_reg1_ok(t, pd, buf_b, 64, 0, 0, RD);
	key0 = mrkey_mr_lkey(mr);

	/* Every bad argument: -EINVAL, still invalid, key unchanged. */
	a = vt_fr(buf_a, 64, 0x1000, RD, 0x33, &seg);
	ck_assert_int_eq(mrkey_mr_fast_reg(NULL, &a, 0, &key), -EINVAL);
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, NULL, 0, &key), -EINVAL);
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, NULL), -EINVAL);
	ck_assert_int_eq(mrkey_mr_fast_reg(plain, &a, 0, &key), -EINVAL);
	a.comp_mask = 1;
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &key), -EINVAL);
	a = vt_fr(buf_a, 64, 0x1000, 0x40, 0x33, &seg);
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &key), -EINVAL);
	a = vt_fr(buf_a, 64, 0x1000, RD, 0x33, &seg);
	a.length = 65;
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &key), -EINVAL);
	a = vt_fr(buf_a, 64, UINT64_MAX - 10, RD, 0x33, &seg);
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &key), -EINVAL);
	a = vt_fr(buf_a, 64, 0x1000, RD, 0x33, &seg);
	a.nsegs = 0;
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &key), -EINVAL);
	for (i = 0; i < 3; i++) {
		segs[i].addr = buf_a + 64 * i;
		segs[i].length = 64;
	}
	a.segs = segs;
	a.nsegs = 3; /* more than max_segs */
	a.length = 192;
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &key), -EINVAL);
	ck_assert_uint_eq(key, 0);
	ck_assert_int_eq(mrkey_mr_published(mr), 0);
	ck_assert_uint_eq(mrkey_mr_lkey(mr), key0);

	/* Valid: (key & ~0xff) | key_byte, translation and access. */
	a.nsegs = 2;
	a.length = 128;
	a.addr = 0x7000;
	a.iova = 0x9000;
	a.access = RD | MRKEY_ACCESS_LOCAL_WRITE;
	a.key_byte = 0x5c;
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &key), 0);
	ck_assert_uint_eq(key, (key0 & ~0xffu) | 0x5c);
	ck_assert_uint_eq(mrkey_mr_lkey(mr), key);
	ck_assert_int_eq(mrkey_mr_published(mr), 1);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, key, 0x9000 + 70, 8, RD, &is), 0);
	ck_assert_ptr_eq(is.mr, mr);
	ck_assert_ptr_eq(is.vaddr, buf_a + 64 + 6); /* second segment */
	mrkey_isge_put(&is);
	ck_assert_int_eq(tu_lkey_probe(t, pd, key, 0x7000, 128,
				       MRKEY_ACCESS_LOCAL_WRITE),
			 0);
	ck_assert_int_eq(tu_rkey_probe(t, pd, key, 0x9000, 129, RD), -ERANGE);
	ck_assert_int_eq(tu_rkey_probe(t, pd, key, 0x9000, 8,
				       MRKEY_ACCESS_REMOTE_WRITE),
			 -EACCES);
	/* A valid region cannot be registered again (verbs). */
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &key), -EBUSY);
	ck_assert_uint_eq(mrkey_mr_lkey(mr), (key0 & ~0xffu) | 0x5c);
	tu_dereg(plain);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(invalidate_rules)
{
	struct mrkey_table *t = vt_table(4, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_pd *pd2 = tu_pd_new(t, 0);
	struct mrkey_pd *priv = tu_pd_new(t, MRKEY_PD_PRIVILEGED);
	struct mrkey_mr *mr = NULL, *plain, *dma = NULL;
	struct mrkey_isge is;
	uint32_t key;

	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 1, &mr), 0);
	plain = tu_reg1_ok(t, pd, buf_b, 64, 0, 0, RD);
	ck_assert_int_eq(mrkey_mr_reg_dma(t, priv, RD, &dma), 0);
	/* Invalid: nothing to invalidate. */
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, mrkey_mr_lkey(mr)),
			 -ENOENT);
	memset(buf_a, 0xab, 64);
	key = vt_fast_reg(mr, buf_a, 64, 0x1000, RD, 0x01);

	ck_assert_int_eq(mrkey_key_invalidate(NULL, pd, key), -EINVAL);
	ck_assert_int_eq(mrkey_key_invalidate(t, NULL, key), -EINVAL);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, key ^ 0x100), -ENOENT);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, key ^ 1), -ENOENT);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd2, key), -EPERM);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, mrkey_mr_lkey(plain)),
			 -EINVAL);
	ck_assert_int_eq(mrkey_key_invalidate(t, priv, 0), -EINVAL);
	/* Nothing changed by those. */
	ck_assert_int_eq(tu_rkey_probe(t, pd, key, 0x1000, 64, RD), 0);
	ck_assert_int_eq(tu_rkey_probe(t, pd, mrkey_mr_lkey(plain), 0, 64, RD),
			 0);

	/* A reference taken before the invalidation stays usable. */
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, key, 0x1000, 64, RD, &is), 0);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, key), 0);
	ck_assert_int_eq(mrkey_mr_published(mr), 0);
	ck_assert_int_eq(tu_rkey_probe(t, pd, key, 0x1000, 64, RD), -ENOENT);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, key), -ENOENT);
	ck_assert_uint_eq(((unsigned char *)is.vaddr)[63], 0xab);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 3);
	mrkey_isge_put(&is);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	tu_dereg(plain);
	tu_dereg(dma);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_pd_del(pd2);
	tu_pd_del(priv);
	tu_table_del(t);
}
END_TEST

START_TEST(fast_reg_waits_for_old_references)
{
	struct mrkey_table *t = vt_table(4, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = NULL;
	struct mrkey_seg seg;
	struct mrkey_fr_attr a;
	struct mrkey_isge is;
	uint32_t key, nkey = 0;

	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 1, &mr), 0);
	memset(buf_a, 0xaa, 64);
	memset(buf_b, 0xbb, 64);
	key = vt_fast_reg(mr, buf_a, 64, 0x1000, RD, 0x10);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, key, 0x1000, 64, RD, &is), 0);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, key), 0);

	/* The held reference is the old registration's: -EBUSY, no change. */
	a = vt_fr(buf_b, 64, 0x2000, RD, 0x11, &seg);
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &nkey), -EBUSY);
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 20, &nkey), -EBUSY);
	ck_assert_uint_eq(nkey, 0);
	ck_assert_int_eq(mrkey_mr_published(mr), 0);
	ck_assert_uint_eq(mrkey_mr_lkey(mr), key);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 3);
	ck_assert_int_eq(tu_rkey_probe(t, pd, (key & ~0xffu) | 0x11, 0x2000, 64,
				       RD),
			 -ENOENT);
	/* The holder still sees the old translation. */
	ck_assert_uint_eq(((unsigned char *)is.vaddr)[0], 0xaa);
	ck_assert_uint_eq(is.sge_length, 64);

	mrkey_isge_put(&is);
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &nkey), 0);
	ck_assert_uint_eq(nkey, (key & ~0xffu) | 0x11);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, nkey, 0x2000, 64, RD, &is), 0);
	ck_assert_uint_eq(((unsigned char *)is.vaddr)[0], 0xbb);
	mrkey_isge_put(&is);
	/* The old key byte's key resolves no more... */
	ck_assert_int_eq(tu_rkey_probe(t, pd, key, 0x1000, 64, RD), -ENOENT);
	/* ...unless the consumer reuses the byte (docs/security.md). */
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, nkey), 0);
	ck_assert_uint_eq(vt_fast_reg(mr, buf_a, 64, 0x1000, RD, 0x10), key);
	ck_assert_int_eq(tu_rkey_probe(t, pd, key, 0x1000, 64, RD), 0);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/* Drops a held isge after a delay, from another thread. */
struct vt_late_put {
	struct mrkey_isge *is;
	unsigned int ms;
};

static void *vt_late_put_thread(void *arg)
{
	struct vt_late_put *l = arg;

	tu_sleep_ms(l->ms);
	mrkey_isge_put(l->is);
	return NULL;
}

START_TEST(fast_reg_woken_by_last_put)
{
	struct mrkey_table *t = vt_table(4, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = NULL;
	struct mrkey_seg seg;
	struct mrkey_fr_attr a;
	struct mrkey_isge is;
	struct vt_late_put l = { &is, 30 };
	pthread_t th;
	uint32_t key, nkey = 0;

	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 1, &mr), 0);
	key = vt_fast_reg(mr, buf_a, 64, 0x1000, RD, 0x20);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, key, 0x1000, 8, RD, &is), 0);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, key), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, vt_late_put_thread, &l), 0);
	a = vt_fr(buf_b, 64, 0x2000, RD, 0x21, &seg);
	/* A generous bound: it returns when the put lands, well before. */
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 60000, &nkey), 0);
	pthread_join(th, NULL);
	ck_assert_uint_eq(nkey, (key & ~0xffu) | 0x21);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_int_eq(tu_rkey_probe(t, pd, nkey, 0x2000, 64, RD), 0);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(fast_reg_drives_progress)
{
	struct mrkey_table_attr attr;
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *mr = NULL;
	struct mrkey_seg seg;
	struct mrkey_fr_attr a;
	struct mrkey_isge is;
	struct tu_fake f;
	uint32_t key, nkey = 0;

	tu_fake_init(&f);
	tu_attr_init(&attr, 4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	attr.backend = &tu_fake_ops;
	attr.backend_ctx = &f;
	t = tu_table_new_attr(&attr);
	pd = tu_pd_new(t, 0);
	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 1, &mr), 0);
	key = vt_fast_reg(mr, buf_a, 64, 0x1000, RD, 0x30);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, key, 0x1000, 8, RD, &is), 0);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, key), 0);
	/* A polled driver: only the backend's progress drops the reference. */
	atomic_store(&f.progress_put, &is);
	a = vt_fr(buf_b, 64, 0x2000, RD, 0x31, &seg);
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 60000, &nkey), 0);
	ck_assert_int_ge(atomic_load(&f.progress), 1);
	ck_assert_ptr_null(atomic_load(&f.progress_put));
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(fast_reg_busy_states)
{
	struct mrkey_table *t = vt_table(4, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = NULL;
	struct mrkey_seg seg;
	struct mrkey_fr_attr a = vt_fr(buf_b, 64, 0, RD, 1, &seg);
	struct mrkey_isge is;
	uint32_t key, nkey = 0;

	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 1, &mr), 0);
	key = vt_fast_reg(mr, buf_a, 64, 0, RD, 0);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, key, 0, 8, RD, &is), 0);
	/* Deregistration -EBUSY: the region is leaving, not re-registered. */
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	ck_assert_int_eq(tu_rkey_probe(t, pd, key, 0, 8, RD), -ENOENT);
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &nkey), -EBUSY);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, key), -ENOENT);
	mrkey_isge_put(&is);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), 0);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(fast_reg_index8_never_slot0)
{
	/* index8: slot 0's keys are their key byte alone, 0 among them. */
	struct mrkey_table *t =
		tu_table_new(1, (enum mrkey_keygen)_i, MRKEY_LAYOUT_INDEX8);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *a = NULL, *b = NULL, *r;
	int round;

	for (round = 0; round < 8; round++) {
		ck_assert_int_eq(mrkey_mr_alloc(t, pd, 1, &a), 0);
		ck_assert_uint_eq(mrkey_mr_lkey(a) >> 8, 1);
		/* Only slot 0 is left: not for a fast-registration region. */
		ck_assert_int_eq(mrkey_mr_alloc(t, pd, 1, &b), -ENOMEM);
		r = tu_reg1_ok(t, pd, buf_a, 8, 0, 0, 0);
		ck_assert_uint_eq(mrkey_mr_lkey(r) >> 8, 0);
		/* Key byte 0 gives a key that is not 0. */
		ck_assert_uint_eq(vt_fast_reg(a, buf_b, 8, 0, RD, 0), 0x100);
		tu_dereg(r);
		tu_dereg(a);
	}
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(fast_reg_qib_slot0_key_nonzero)
{
	/* qib layout: a region in slot 0 keeps a nonzero generation. */
	struct mrkey_table *t =
		tu_table_new(1, (enum mrkey_keygen)_i, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *a = NULL, *b = NULL;
	int round;

	for (round = 0; round < 32; round++) {
		ck_assert_int_eq(mrkey_mr_alloc(t, pd, 1, &a), 0);
		ck_assert_int_eq(mrkey_mr_alloc(t, pd, 1, &b), 0);
		ck_assert_uint_ne(vt_fast_reg(a, buf_a, 8, 0, RD, 0), 0);
		ck_assert_uint_ne(vt_fast_reg(b, buf_b, 8, 0, RD, 0), 0);
		tu_dereg(a);
		tu_dereg(b);
	}
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/*
 * With a backend, fast registration and invalidation take the writer lock
 * (the backend's ops run under it): the same rules through that path.
 */
START_TEST(locked_paths_with_backend)
{
	struct mrkey_table_attr attr;
	struct mrkey_table *t;
	struct mrkey_pd *pd, *pd2;
	struct mrkey_mr *mr = NULL, *plain;
	struct mrkey_seg seg;
	struct mrkey_fr_attr a;
	struct mrkey_isge is;
	struct tu_fake f;
	uint32_t key, nkey = 0;

	tu_fake_init(&f);
	tu_attr_init(&attr, 4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	attr.backend = &tu_fake_ops;
	attr.backend_ctx = &f;
	t = tu_table_new_attr(&attr);
	pd = tu_pd_new(t, 0);
	pd2 = tu_pd_new(t, 0);
	plain = tu_reg1_ok(t, pd, buf_b, 64, 0, 0, RD);
	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 1, &mr), 0);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, mrkey_mr_lkey(mr)),
			 -ENOENT);
	key = vt_fast_reg(mr, buf_a, 64, 0x1000, RD, 0x41);
	a = vt_fr(buf_a, 64, 0x1000, RD, 0x42, &seg);
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &nkey), -EBUSY);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, key ^ 0x100), -ENOENT);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd2, key), -EPERM);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, mrkey_mr_lkey(plain)),
			 -EINVAL);
	ck_assert_int_eq(atomic_load(&f.unpublish), 0);
	ck_assert_int_eq(tu_rkey_probe(t, pd, key, 0x1000, 64, RD), 0);
	/* Held across the invalidation: the next fast_reg waits, -EBUSY. */
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, key, 0x1000, 8, RD, &is), 0);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, key), 0);
	ck_assert_int_eq(atomic_load(&f.unpublish), 1);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, key), -ENOENT);
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &nkey), -EBUSY);
	ck_assert_uint_eq(nkey, 0);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 3);
	mrkey_isge_put(&is);
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &nkey), 0);
	ck_assert_uint_eq(nkey, (key & ~0xffu) | 0x42);
	ck_assert_int_eq(atomic_load(&f.publish), 3); /* plain + 2 fast_reg */
	tu_dereg(plain);
	tu_dereg(mr);
	ck_assert_int_eq(atomic_load(&f.unpublish), 3);
	tu_pd_del(pd);
	tu_pd_del(pd2);
	tu_table_del(t);
}
END_TEST

/* ---- re-registration ----------------------------------------------------- */

static struct mrkey_mr_attr vt_attr(struct mrkey_pd *pd, void *buf, size_t len,
				    uint64_t va, unsigned int access,
				    struct mrkey_seg *seg)
{
	struct mrkey_mr_attr a;

	memset(&a, 0, sizeof(a));
	seg->addr = buf;
	seg->length = len;
	a.pd = pd;
	a.addr = va;
	a.iova = va;
	a.length = len;
	a.access = access;
	a.segs = seg;
	a.nsegs = 1;
	return a;
}

START_TEST(rereg_rules)
{
	struct mrkey_table *t = vt_table(4, MRKEY_LAYOUT_QIB);
	struct mrkey_table *other = vt_table(2, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_pd *priv = tu_pd_new(t, MRKEY_PD_PRIVILEGED);
	struct mrkey_pd *opd = tu_pd_new(other, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, buf_a, 64, 0x1000, 0x1000, RD);
	struct mrkey_mr *fr = NULL, *dma = NULL;
	struct mrkey_seg seg;
	struct mrkey_mr_attr a = vt_attr(pd, buf_b, 64, 0x2000, RD, &seg);
	uint32_t key = mrkey_mr_lkey(mr);

	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 1, &fr), 0);
	ck_assert_int_eq(mrkey_mr_reg_dma(t, priv, RD, &dma), 0);
	ck_assert_int_eq(mrkey_mr_rereg(NULL, MRKEY_REREG_ACCESS, &a, 0),
			 -EINVAL);
	ck_assert_int_eq(mrkey_mr_rereg(mr, MRKEY_REREG_ACCESS, NULL, 0),
			 -EINVAL);
	ck_assert_int_eq(mrkey_mr_rereg(mr, 0, &a, 0), -EINVAL);
	ck_assert_int_eq(mrkey_mr_rereg(mr, 8, &a, 0), -EINVAL);
	ck_assert_int_eq(mrkey_mr_rereg(fr, MRKEY_REREG_ACCESS, &a, 0),
			 -EINVAL);
	ck_assert_int_eq(mrkey_mr_rereg(dma, MRKEY_REREG_ACCESS, &a, 0),
			 -EINVAL);
	a.comp_mask = 1;
	ck_assert_int_eq(mrkey_mr_rereg(mr, MRKEY_REREG_ACCESS, &a, 0),
			 -EINVAL);
	a.comp_mask = 0;
	a.access = 0x40;
	ck_assert_int_eq(mrkey_mr_rereg(mr, MRKEY_REREG_ACCESS, &a, 0),
			 -EINVAL);
	a.access = RD;
	a.pd = NULL;
	ck_assert_int_eq(mrkey_mr_rereg(mr, MRKEY_REREG_PD, &a, 0), -EINVAL);
	a.pd = opd;
	ck_assert_int_eq(mrkey_mr_rereg(mr, MRKEY_REREG_PD, &a, 0), -EINVAL);
	a.pd = pd;
	a.length = 65;
	ck_assert_int_eq(mrkey_mr_rereg(mr, MRKEY_REREG_TRANSLATION, &a, 0),
			 -EINVAL);
	a.length = 64;
	a.iova = UINT64_MAX - 8;
	ck_assert_int_eq(mrkey_mr_rereg(mr, MRKEY_REREG_TRANSLATION, &a, 0),
			 -EINVAL);
	a.iova = 0x2000;
	a.nsegs = 0;
	ck_assert_int_eq(mrkey_mr_rereg(mr, MRKEY_REREG_TRANSLATION, &a, 0),
			 -EINVAL);
	a.nsegs = 1;
	/* Nothing changed: the old key still resolves, as it was. */
	ck_assert_uint_eq(mrkey_mr_lkey(mr), key);
	ck_assert_int_eq(tu_rkey_probe(t, pd, key, 0x1000, 64, RD), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	/* Fields not named in the flags are not even read. */
	a.length = 0;
	ck_assert_int_eq(mrkey_mr_rereg(mr, MRKEY_REREG_ACCESS, &a, 0), 0);
	ck_assert_uint_ne(mrkey_mr_lkey(mr), key);
	ck_assert_int_eq(tu_rkey_probe(t, pd, key, 0x1000, 64, RD), -ENOENT);
	ck_assert_int_eq(
		tu_rkey_probe(t, pd, mrkey_mr_lkey(mr), 0x1000, 64, RD), 0);
	tu_dereg(mr);
	tu_dereg(fr);
	tu_dereg(dma);
	tu_pd_del(pd);
	tu_pd_del(priv);
	tu_pd_del(opd);
	tu_table_del(t);
	tu_table_del(other);
}
END_TEST

START_TEST(rereg_translation_pd_access)
{
	struct mrkey_table *t = vt_table(4, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_pd *pd2 = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, buf_a, 64, 0x1000, 0x1000, RD);
	struct mrkey_seg seg, segs[4];
	struct mrkey_mr_attr a;
	struct mrkey_isge is;
	uint32_t key = mrkey_mr_lkey(mr), k2;
	unsigned int i;

	for (i = 0; i < 4; i++) {
		segs[i].addr = buf_b + 256 * i;
		segs[i].length = 128;
		memset(buf_b + 256 * i, 0x10 + i, 128);
	}
	a = vt_attr(pd2, buf_b, 512, 0x8000, WR, &seg);
	a.segs = segs;
	a.nsegs = 4;
	ck_assert_int_eq(mrkey_mr_rereg(mr,
					MRKEY_REREG_TRANSLATION |
						MRKEY_REREG_PD |
						MRKEY_REREG_ACCESS,
					&a, 0),
			 0);
	k2 = mrkey_mr_lkey(mr);
	ck_assert_uint_ne(k2, key);
	ck_assert_uint_eq(k2 >> 28, key >> 28); /* same slot */
	ck_assert_int_eq(tu_rkey_probe(t, pd, key, 0x1000, 8, RD), -ENOENT);
	ck_assert_int_eq(tu_rkey_probe(t, pd, k2, 0x8000, 8, 0), -EPERM);
	ck_assert_int_eq(tu_rkey_probe(t, pd2, k2, 0x8000, 8, RD), -EACCES);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd2, k2, 0x8000 + 300, 8,
				       MRKEY_ACCESS_REMOTE_WRITE, &is),
			 0);
	ck_assert_uint_eq(((unsigned char *)is.vaddr)[0], 0x12);
	mrkey_isge_put(&is);
	/* The region counts in its new PD only. */
	ck_assert_int_eq(mrkey_pd_free(pd2), -EBUSY);
	tu_pd_del(pd);
	pd = NULL;

	/* And back to one segment. */
	a = vt_attr(pd2, buf_c, 32, 0x100, RD, &seg);
	ck_assert_int_eq(mrkey_mr_rereg(mr, MRKEY_REREG_TRANSLATION, &a, 0), 0);
	buf_c[5] = 0x77;
	ck_assert_int_eq(
		mrkey_rkey_ok(t, pd2, mrkey_mr_lkey(mr), 0x105, 1, 0, &is), 0);
	ck_assert_uint_eq(*(unsigned char *)is.vaddr, 0x77);
	mrkey_isge_put(&is);
	tu_dereg(mr);
	tu_pd_del(pd2);
	tu_table_del(t);
}
END_TEST

static void vt_count(struct mrkey_mr *mr, void *arg)
{
	(void)mr;
	(*(int *)arg)++;
}

START_TEST(rereg_busy_then_retry_or_dereg)
{
	struct mrkey_table *t = vt_table(4, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = tu_reg1_ok(t, pd, buf_a, 64, 0x1000, 0x1000, RD);
	struct mrkey_mr *mr2;
	struct mrkey_seg seg;
	struct mrkey_mr_attr a = vt_attr(pd, buf_b, 64, 0x2000, RD, &seg);
	struct mrkey_isge is;
	uint32_t key = mrkey_mr_lkey(mr);

	memset(buf_a, 0xa1, 64);
	memset(buf_b, 0xb1, 64);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, key, 0x1000, 64, RD, &is), 0);
	ck_assert_int_eq(mrkey_mr_rereg(mr, MRKEY_REREG_TRANSLATION, &a, 0),
			 -EBUSY);
	/* Unpublished with its old attributes; the holder reads old bytes. */
	ck_assert_int_eq(mrkey_mr_published(mr), 0);
	ck_assert_uint_eq(mrkey_mr_lkey(mr), key);
	ck_assert_int_eq(tu_rkey_probe(t, pd, key, 0x1000, 64, RD), -ENOENT);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2); /* caller + holder */
	ck_assert_uint_eq(((unsigned char *)is.vaddr)[0], 0xa1);
	ck_assert_int_eq(mrkey_mr_rereg(mr, MRKEY_REREG_TRANSLATION, &a, 10),
			 -EBUSY);
	mrkey_isge_put(&is);
	ck_assert_int_eq(mrkey_mr_rereg(mr, MRKEY_REREG_TRANSLATION, &a, 0), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, mrkey_mr_lkey(mr), 0x2000, 64, RD,
				       &is),
			 0);
	ck_assert_uint_eq(((unsigned char *)is.vaddr)[0], 0xb1);

	/* An asynchronous deregistration in progress: -EALREADY. */
	{
		int calls = 0;

		ck_assert_int_eq(mrkey_mr_rereg(mr, MRKEY_REREG_ACCESS, &a, 0),
				 -EBUSY);
		mr2 = mr;
		ck_assert_int_eq(mrkey_mr_dereg_async(mr2, vt_count, &calls),
				 0);
		ck_assert_int_eq(mrkey_mr_rereg(mr2, MRKEY_REREG_ACCESS, &a, 0),
				 -EALREADY);
		ck_assert_int_eq(calls, 0);
		mrkey_isge_put(&is);
		mrkey_reclaim_wait();
		ck_assert_int_eq(calls, 1);
	}
	mr = tu_reg1_ok(t, pd, buf_a, 64, 0x1000, 0x1000, RD);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, mrkey_mr_lkey(mr), 0x1000, 64, RD,
				       &is),
			 0);

	/* -EBUSY again, then deregistration instead of a retry. */
	ck_assert_int_eq(mrkey_mr_rereg(mr, MRKEY_REREG_ACCESS, &a, 0), -EBUSY);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	mrkey_isge_put(&is);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), 0);

	/* A backend refusal leaves it as -EBUSY would. */
	{
		struct mrkey_table_attr attr;
		struct mrkey_table *bt;
		struct mrkey_pd *bpd;
		struct tu_fake f;
		uint32_t bkey;

		tu_fake_init(&f);
		tu_attr_init(&attr, 4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
		attr.backend = &tu_fake_ops;
		attr.backend_ctx = &f;
		bt = tu_table_new_attr(&attr);
		bpd = tu_pd_new(bt, 0);
		mr2 = tu_reg1_ok(bt, bpd, buf_a, 64, 0x1000, 0x1000, RD);
		bkey = mrkey_mr_lkey(mr2);
		f.publish_err = -EIO;
		a = vt_attr(bpd, buf_b, 64, 0x2000, RD, &seg);
		ck_assert_int_eq(mrkey_mr_rereg(mr2, MRKEY_REREG_TRANSLATION,
						&a, 0),
				 -EIO);
		ck_assert_int_eq(mrkey_mr_published(mr2), 0);
		ck_assert_uint_eq(mrkey_mr_lkey(mr2), bkey);
		ck_assert_uint_eq(mrkey_mr_refcount(mr2), 1);
		f.publish_err = 0;
		ck_assert_int_eq(
			mrkey_mr_rereg(mr2, MRKEY_REREG_TRANSLATION, &a, 0), 0);
		ck_assert_int_eq(tu_rkey_probe(bt, bpd, mrkey_mr_lkey(mr2),
					       0x2000, 64, RD),
				 0);
		tu_dereg(mr2);
		tu_pd_del(bpd);
		tu_table_del(bt);
	}
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("verbs");
	enum mrkey_refcount_mode m;

	for (m = MRKEY_REFCOUNT_ATOMIC; m <= MRKEY_REFCOUNT_PERCPU; m++) {
		TCase *tc = tu_tcase_mode("verbs", m);

		tcase_add_test(tc, zero_length_needs_no_key);
		tcase_add_test(tc, zero_length_in_sg_state);
		tcase_add_test(tc, alloc_rules);
		tcase_add_test(tc, alloc_backend_limit);
		tcase_add_test(tc, fast_reg_rules);
		tcase_add_test(tc, invalidate_rules);
		tcase_add_test(tc, fast_reg_waits_for_old_references);
		tcase_add_test(tc, fast_reg_woken_by_last_put);
		tcase_add_test(tc, fast_reg_drives_progress);
		tcase_add_test(tc, fast_reg_busy_states);
		tcase_add_test(tc, locked_paths_with_backend);
		tcase_add_loop_test(tc, fast_reg_index8_never_slot0, 0, 2);
		tcase_add_loop_test(tc, fast_reg_qib_slot0_key_nonzero, 0, 2);
		tcase_add_test(tc, rereg_rules);
		tcase_add_test(tc, rereg_translation_pd_access);
		tcase_add_test(tc, rereg_busy_then_retry_or_dereg);
		suite_add_tcase(s, tc);
	}
	return tu_run(s);
}
