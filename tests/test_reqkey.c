/* SPDX-License-Identifier: MIT */
/*
 * Requested 64-bit keys (MRKEY_INDEX_REQUESTED): table creation, every
 * rule and errno of mrkey_mr_reg_key(), mrkey_key_ok(), mrkey_key_check(),
 * mrkey_key_lookup(), mrkey_mr_key() and mrkey_mr_context() in both kinds
 * of table, re-registration under a key whose region still drains, the
 * backend's view, allocation failures, the old mrkey_mr_reg@MRKEY_0.1;
 * growth to 1M random keys and back to the memory of an empty table; a
 * stress test of readers on live and stale keys against writers that
 * register, deregister and re-register the same keys.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>

#include "testutil.h"

#define IOVA 0x7f0000000000ull
#define ADDR 0x10000ull
#define LEN 4096u

static unsigned char buf_a[LEN], buf_b[LEN];

static struct mrkey_table *req_table_attr(struct mrkey_table_attr *a)
{
	a->index = MRKEY_INDEX_REQUESTED;
	a->refcount = tu_refmode;
	return tu_table_new_attr(a);
}

static struct mrkey_table *req_table(unsigned int flags)
{
	struct mrkey_table_attr a;

	memset(&a, 0, sizeof(a));
	a.flags = flags;
	return req_table_attr(&a);
}

static void attr1(struct mrkey_mr_attr *a, struct mrkey_seg *seg,
		  struct mrkey_pd *pd, void *buf, size_t len, void *context)
{
	seg->addr = buf;
	seg->length = len;
	memset(a, 0, sizeof(*a));
	a->pd = pd;
	a->addr = ADDR;
	a->iova = IOVA;
	a->length = len;
	a->access = MRKEY_ACCESS_ALL;
	a->segs = seg;
	a->nsegs = 1;
	a->context = context;
}

static int reg_key(struct mrkey_table *t, struct mrkey_pd *pd, void *buf,
		   uint64_t key, void *context, struct mrkey_mr **mrp)
{
	struct mrkey_mr_attr a;
	struct mrkey_seg seg;

	attr1(&a, &seg, pd, buf, LEN, context);
	return mrkey_mr_reg_key(t, &a, key, mrp);
}

static struct mrkey_mr *reg_key_ok(struct mrkey_table *t, struct mrkey_pd *pd,
				   void *buf, uint64_t key)
{
	struct mrkey_mr *mr = NULL;
	int rc = reg_key(t, pd, buf, key, buf, &mr);

	ck_assert_msg(rc == 0, "reg_key(%#llx): %d", (unsigned long long)key,
		      rc);
	ck_assert_uint_eq(mrkey_mr_key(mr), key);
	ck_assert_ptr_eq(mrkey_mr_context(mr), buf);
	return mr;
}

static int probe(struct mrkey_table *t, struct mrkey_pd *pd, uint64_t key,
		 uint64_t va, uint64_t len, unsigned int access)
{
	struct mrkey_isge isge;
	int rc;

	memset(&isge, 0xa5, sizeof(isge));
	rc = mrkey_key_ok(t, pd, key, va, len, access, &isge);
	if (rc == 0)
		mrkey_isge_put(&isge);
	return rc;
}

/* ---- creation ----------------------------------------------------------- */

START_TEST(test_create_rules)
{
	struct mrkey_table_attr a;
	struct mrkey_table *t = NULL;

	memset(&a, 0, sizeof(a));
	a.index = (enum mrkey_index)2;
	ck_assert_int_eq(mrkey_table_create(&a, &t), -EINVAL);
	a.index = MRKEY_INDEX_REQUESTED;
	a.table_bits = 10;
	ck_assert_int_eq(mrkey_table_create(&a, &t), -EINVAL);
	a.table_bits = 0;
	a.keygen = MRKEY_KEYGEN_SEQUENTIAL;
	ck_assert_int_eq(mrkey_table_create(&a, &t), -EINVAL);
	a.keygen = MRKEY_KEYGEN_RANDOM;
	a.layout = MRKEY_LAYOUT_INDEX8;
	ck_assert_int_eq(mrkey_table_create(&a, &t), -EINVAL);
	a.layout = MRKEY_LAYOUT_QIB;
	a.comp_mask = 1;
	ck_assert_int_eq(mrkey_table_create(&a, &t), -EINVAL);
	a.comp_mask = 0;
	a.refcount = (enum mrkey_refcount_mode)7;
	ck_assert_int_eq(mrkey_table_create(&a, &t), -EINVAL);
	ck_assert_ptr_null(t);

	t = req_table(0);
	ck_assert_uint_eq(mrkey_table_size(t), 0);
	tu_table_del(t);
	t = req_table(MRKEY_TABLE_NOREF);
	tu_table_del(t);
}
END_TEST

/* ---- registration ------------------------------------------------------- */

START_TEST(test_reg_key_rules)
{
	struct mrkey_table *t = req_table(0), *slot, *t2 = req_table(0);
	struct mrkey_pd *pd = tu_pd_new(t, 0), *spd, *pd2 = tu_pd_new(t2, 0);
	struct mrkey_pd *ppd = tu_pd_new(t, MRKEY_PD_PRIVILEGED);
	struct mrkey_mr_attr a;
	struct mrkey_seg seg;
	struct mrkey_mr *mr = NULL, *mr2;

	slot = tu_table_new(8, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	spd = tu_pd_new(slot, 0);
	attr1(&a, &seg, pd, buf_a, LEN, NULL);

	ck_assert_int_eq(mrkey_mr_reg_key(NULL, &a, 1, &mr), -EINVAL);
	ck_assert_int_eq(mrkey_mr_reg_key(t, NULL, 1, &mr), -EINVAL);
	ck_assert_int_eq(mrkey_mr_reg_key(t, &a, 1, NULL), -EINVAL);
	/* Requested keys in a slot table, slot calls in a requested one. */
	a.pd = spd;
	ck_assert_int_eq(mrkey_mr_reg_key(slot, &a, 1, &mr), -EINVAL);
	a.pd = pd;
	ck_assert_int_eq(mrkey_mr_reg(t, &a, &mr), -EINVAL);
	ck_assert_int_eq(mrkey_mr_reg_dma(t, ppd, 0, &mr), -EINVAL);
	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 1, &mr), -EINVAL);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, 1), -ENOENT);
	/* Attributes as mrkey_mr_reg() checks them. */
	a.pd = pd2;
	ck_assert_int_eq(mrkey_mr_reg_key(t, &a, 1, &mr), -EINVAL);
	a.pd = NULL;
	ck_assert_int_eq(mrkey_mr_reg_key(t, &a, 1, &mr), -EINVAL);
	a.pd = pd;
	a.comp_mask = 1;
	ck_assert_int_eq(mrkey_mr_reg_key(t, &a, 1, &mr), -EINVAL);
	a.comp_mask = 0;
	a.length = LEN + 1;
	ck_assert_int_eq(mrkey_mr_reg_key(t, &a, 1, &mr), -EINVAL);
	a.length = LEN;
	a.access = 0x100;
	ck_assert_int_eq(mrkey_mr_reg_key(t, &a, 1, &mr), -EINVAL);
	a.access = MRKEY_ACCESS_ALL;
	a.iova = UINT64_MAX - 10;
	ck_assert_int_eq(mrkey_mr_reg_key(t, &a, 1, &mr), -EINVAL);
	a.iova = IOVA;
	a.nsegs = 0;
	ck_assert_int_eq(mrkey_mr_reg_key(t, &a, 1, &mr), -EINVAL);
	a.nsegs = 1;
	ck_assert_ptr_null(mr);
	ck_assert_int_eq(probe(t, pd, 1, IOVA, 1, 0), -ENOENT);

	/* Any 64-bit key; a published one is refused. */
	mr = reg_key_ok(t, pd, buf_a, 1);
	ck_assert_int_eq(reg_key(t, pd, buf_b, 1, NULL, &mr2), -EEXIST);
	ck_assert_int_eq(probe(t, pd, 1, IOVA, LEN, MRKEY_ACCESS_ALL), 0);
	/* lkey/rkey give the low half; mrkey_mr_reg's rereg is not here. */
	ck_assert_uint_eq(mrkey_mr_lkey(mr), 1);
	ck_assert_int_eq(mrkey_mr_rereg(mr, MRKEY_REREG_ACCESS, &a, 0),
			 -EINVAL);
	ck_assert_int_eq(mrkey_pd_free(pd), -EBUSY);
	ck_assert_int_eq(mrkey_table_destroy(t), -EBUSY);
	tu_dereg(mr);
	ck_assert_int_eq(probe(t, pd, 1, IOVA, LEN, 0), -ENOENT);

	tu_pd_del(spd);
	tu_table_del(slot);
	tu_pd_del(pd2);
	tu_table_del(t2);
	tu_pd_del(ppd);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(test_reg_key_edge_keys)
{
	static const uint64_t keys[] = {
		0,
		1,
		UINT32_MAX,
		(uint64_t)UINT32_MAX + 1,
		1ull << 63,
		UINT64_MAX,
		UINT64_MAX - 1,
		0xdeadbeef00000001ull,
		0x00000001deadbeefull,
	};
	struct mrkey_table *t = req_table(0);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mrs[TU_ARRAY_SIZE(keys)], *got;
	size_t i, j;

	for (i = 0; i < TU_ARRAY_SIZE(keys); i++)
		mrs[i] = reg_key_ok(t, pd, buf_a, keys[i]);
	for (i = 0; i < TU_ARRAY_SIZE(keys); i++) {
		ck_assert_int_eq(mrkey_key_lookup(t, keys[i], &got), 0);
		ck_assert_ptr_eq(got, mrs[i]);
		mrkey_mr_put(got);
		ck_assert_int_eq(probe(t, pd, keys[i], IOVA, 8,
				       MRKEY_ACCESS_REMOTE_READ),
				 0);
	}
	/* Keys that share a low half are different keys. */
	ck_assert_int_eq(probe(t, pd, 0xdeadbeefull, IOVA, 8, 0), -ENOENT);
	ck_assert_int_eq(probe(t, pd, 0x00000002deadbeefull, IOVA, 8, 0),
			 -ENOENT);
	for (i = 0; i < TU_ARRAY_SIZE(keys); i++) {
		tu_dereg(mrs[i]);
		ck_assert_int_eq(mrkey_key_lookup(t, keys[i], &got), -ENOENT);
		for (j = i + 1; j < TU_ARRAY_SIZE(keys); j++)
			ck_assert_int_eq(probe(t, pd, keys[j], IOVA, 8, 0), 0);
	}
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/* ---- validation --------------------------------------------------------- */

static void check_errnos(struct mrkey_table *t, struct mrkey_pd *pd,
			 struct mrkey_pd *other, uint64_t key)
{
	struct mrkey_isge isge;

	ck_assert_int_eq(probe(t, pd, key, IOVA, LEN, MRKEY_ACCESS_ALL), 0);
	ck_assert_int_eq(probe(t, pd, key, IOVA + LEN - 1, 1, 0), 0);
	ck_assert_int_eq(probe(t, pd, key, IOVA + LEN - 1, 2, 0), -ERANGE);
	ck_assert_int_eq(probe(t, pd, key, IOVA - 1, 1, 0), -ERANGE);
	ck_assert_int_eq(probe(t, pd, key, IOVA, LEN + 1, 0), -ERANGE);
	ck_assert_int_eq(probe(t, pd, key, IOVA, 1ull << 32, 0), -ERANGE);
	ck_assert_int_eq(probe(t, pd, key, IOVA, UINT64_MAX, 0), -ERANGE);
	ck_assert_int_eq(probe(t, pd, key, UINT64_MAX, 2, 0), -ERANGE);
	/* lkey space is not rkey space. */
	ck_assert_int_eq(probe(t, pd, key, ADDR, 1, 0), -ERANGE);
	ck_assert_int_eq(probe(t, other, key, IOVA, 1, 0), -EPERM);
	ck_assert_int_eq(probe(t, pd, key + 1, IOVA, 1, 0), -ENOENT);
	ck_assert_int_eq(probe(t, pd, key, IOVA, 1, 0x100), -EINVAL);
	ck_assert_int_eq(mrkey_key_ok(NULL, pd, key, IOVA, 1, 0, &isge),
			 -EINVAL);
	ck_assert_int_eq(mrkey_key_ok(t, NULL, key, IOVA, 1, 0, &isge),
			 -EINVAL);
	ck_assert_int_eq(mrkey_key_ok(t, pd, key, IOVA, 1, 0, NULL), -EINVAL);
	/* Zero length: no lookup, any key, still the argument checks. */
	memset(&isge, 0xa5, sizeof(isge));
	ck_assert_int_eq(
		mrkey_key_ok(t, pd, 0x5555555555555555ull, 0, 0, 0, &isge), 0);
	ck_assert_ptr_null(isge.mr);
	ck_assert_uint_eq(isge.length, 0);
	ck_assert_uint_eq(isge.sge_length, 0);
	mrkey_isge_put(&isge);
	ck_assert_int_eq(mrkey_key_ok(t, pd, key, IOVA, 0, 0x100, &isge),
			 -EINVAL);
}

START_TEST(test_key_ok_requested)
{
	struct mrkey_table *t = req_table(0);
	struct mrkey_pd *pd = tu_pd_new(t, 0), *other = tu_pd_new(t, 0);
	struct mrkey_mr_attr a;
	struct mrkey_seg seg;
	struct mrkey_mr *mr, *ro;
	struct mrkey_isge isge;
	uint64_t key = 0x8000000000000123ull;

	mr = reg_key_ok(t, pd, buf_a, key);
	check_errnos(t, pd, other, key);
	/* Access bits: a read-only region. */
	attr1(&a, &seg, pd, buf_b, LEN, NULL);
	a.access = MRKEY_ACCESS_REMOTE_READ;
	ck_assert_int_eq(mrkey_mr_reg_key(t, &a, 77, &ro), 0);
	ck_assert_int_eq(probe(t, pd, 77, IOVA, 8, MRKEY_ACCESS_REMOTE_READ),
			 0);
	ck_assert_int_eq(probe(t, pd, 77, IOVA, 8,
			       MRKEY_ACCESS_REMOTE_READ |
				       MRKEY_ACCESS_REMOTE_WRITE),
			 -EACCES);
	ck_assert_ptr_null(mrkey_mr_context(ro));

	/* The isge holds a reference and points at the right byte. */
	ck_assert_int_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_int_eq(mrkey_key_ok(t, pd, key, IOVA + 100, 10,
				      MRKEY_ACCESS_REMOTE_WRITE, &isge),
			 0);
	ck_assert_ptr_eq(isge.mr, mr);
	ck_assert_ptr_eq(isge.vaddr, buf_a + 100);
	ck_assert_uint_eq(isge.length, 10);
	ck_assert_uint_eq(isge.sge_length, 10);
	ck_assert_int_eq(mrkey_mr_refcount(mr), 3);
	mrkey_isge_put(&isge);
	ck_assert_int_eq(mrkey_mr_refcount(mr), 2);

	/* A 32-bit key of a requested table through the 32-bit calls. */
	ck_assert_int_eq(tu_rkey_probe(t, pd, 77, IOVA, 8, 0), 0);
	ck_assert_int_eq(tu_lkey_probe(t, pd, 77, ADDR, 8, 0), 0);
	ck_assert_int_eq(tu_lkey_probe(t, pd, 0x123, ADDR, 8, 0), -ENOENT);

	tu_dereg(ro);
	tu_dereg(mr);
	tu_pd_del(other);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/* A region longer than 4 GiB: validation reads none of its memory. */
START_TEST(test_key_ok_long)
{
	struct mrkey_table *t = req_table(0);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	uint64_t big = (1ull << 33) + 4096;
	struct mrkey_seg seg = { .addr = buf_a, .length = big };
	struct mrkey_mr_attr a = {
		.pd = pd,
		.addr = ADDR,
		.iova = IOVA,
		.length = big,
		.access = MRKEY_ACCESS_ALL,
		.segs = &seg,
		.nsegs = 1,
	};
	struct mrkey_isge isge;
	struct mrkey_mr *mr;

	ck_assert_int_eq(mrkey_mr_reg_key(t, &a, 5, &mr), 0);
	ck_assert_int_eq(mrkey_key_ok(t, pd, 5, IOVA, big, 0, &isge), 0);
	ck_assert_uint_eq(isge.sge_length, UINT32_MAX);
	ck_assert_uint_eq(isge.length, UINT32_MAX);
	ck_assert_ptr_eq(isge.vaddr, buf_a);
	mrkey_isge_put(&isge);
	ck_assert_int_eq(mrkey_key_ok(t, pd, 5, IOVA + 1ull + UINT32_MAX,
				      1ull << 32, 0, &isge),
			 0);
	ck_assert_uint_eq(isge.sge_length, UINT32_MAX);
	ck_assert_ptr_eq(isge.vaddr, buf_a + 1ull + UINT32_MAX);
	mrkey_isge_put(&isge);
	ck_assert_int_eq(probe(t, pd, 5, IOVA + 1, big, 0), -ERANGE);
	ck_assert_int_eq(probe(t, pd, 5, IOVA + big - 1, 1, 0), 0);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(test_key_ok_slot_table)
{
	struct mrkey_table *t =
		tu_table_new(8, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0), *other = tu_pd_new(t, 0);
	struct mrkey_pd *ppd = tu_pd_new(t, MRKEY_PD_PRIVILEGED);
	struct mrkey_mr *mr, *dma, *got;
	struct mrkey_mr_attr a;
	struct mrkey_seg seg;
	struct mrkey_isge isge;
	uint32_t key;

	attr1(&a, &seg, pd, buf_a, LEN, &seg);
	ck_assert_int_eq(mrkey_mr_reg(t, &a, &mr), 0);
	key = mrkey_mr_rkey(mr);
	ck_assert_uint_eq(mrkey_mr_key(mr), key);
	ck_assert_ptr_eq(mrkey_mr_context(mr), &seg);
	check_errnos(t, pd, other, key);
	/* Same answers as mrkey_rkey_ok() below 2^32, none above. */
	ck_assert_int_eq(probe(t, pd, key | (1ull << 32), IOVA, 1, 0), -ENOENT);
	ck_assert_int_eq(probe(t, pd, UINT64_MAX, IOVA, 1, 0), -ENOENT);
	ck_assert_int_eq(mrkey_key_lookup(t, key | (1ull << 40), &got),
			 -ENOENT);
	ck_assert_int_eq(mrkey_key_lookup(t, key, &got), 0);
	ck_assert_ptr_eq(got, mr);
	ck_assert_int_eq(mrkey_mr_refcount(mr), 3);
	mrkey_mr_put(got);
	/* Key 0: the DMA region, privileged PDs only for key_ok. */
	ck_assert_int_eq(mrkey_key_lookup(t, 0, &got), -ENOENT);
	ck_assert_int_eq(mrkey_mr_reg_dma(t, ppd, MRKEY_ACCESS_ALL, &dma), 0);
	ck_assert_int_eq(mrkey_key_lookup(t, 0, &got), 0);
	ck_assert_ptr_eq(got, dma);
	ck_assert_ptr_null(mrkey_mr_context(dma));
	ck_assert_uint_eq(mrkey_mr_key(dma), 0);
	mrkey_mr_put(got);
	ck_assert_int_eq(
		mrkey_key_ok(t, ppd, 0, (uintptr_t)buf_b, 16, 0, &isge), 0);
	ck_assert_ptr_eq(isge.vaddr, buf_b);
	mrkey_isge_put(&isge);
	ck_assert_int_eq(probe(t, pd, 0, (uintptr_t)buf_b, 16, 0), -EPERM);
	ck_assert_int_eq(mrkey_key_lookup(NULL, 0, &got), -EINVAL);
	ck_assert_int_eq(mrkey_key_lookup(t, 0, NULL), -EINVAL);
	/* mrkey_mr_rereg keeps the context, mrkey_mr_key follows the key. */
	ck_assert_int_eq(mrkey_mr_rereg(mr, MRKEY_REREG_ACCESS, &a, 0), 0);
	ck_assert_ptr_eq(mrkey_mr_context(mr), &seg);
	ck_assert_uint_eq(mrkey_mr_key(mr), mrkey_mr_rkey(mr));
	ck_assert_uint_ne(mrkey_mr_key(mr), key);
	tu_dereg(dma);
	tu_dereg(mr);
	tu_pd_del(ppd);
	tu_pd_del(other);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

START_TEST(test_key_lookup_requested)
{
	struct mrkey_table *t = req_table(0);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *mr = reg_key_ok(t, pd, buf_a, 42), *got = NULL;

	ck_assert_int_eq(mrkey_key_lookup(t, 42, &got), 0);
	ck_assert_ptr_eq(got, mr);
	ck_assert_int_eq(mrkey_mr_refcount(mr), 3);
	/* The lookup's reference keeps the region through dereg. */
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), -EBUSY);
	ck_assert_int_eq(mrkey_key_lookup(t, 42, &got), -ENOENT);
	mrkey_mr_put(mr);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), 0);
	ck_assert_int_eq(mrkey_key_lookup(t, 43, &got), -ENOENT);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/* ---- a key whose region still drains ----------------------------------- */

static atomic_int async_done;
static void *_Atomic async_arg;

/* Possibly on liburcu's callback thread: record, assert later. */
static void on_done(struct mrkey_mr *mr, void *arg)
{
	(void)mr;
	atomic_store(&async_arg, arg);
	atomic_fetch_add(&async_done, 1);
}

START_TEST(test_rereg_pending_key)
{
	struct mrkey_table *t = req_table(0);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *old, *neu, *neu2;
	struct mrkey_isge held, isge;
	uint64_t key = 0xfeedfacecafebeefull;

	memset(buf_a, 'A', LEN);
	memset(buf_b, 'B', LEN);
	old = reg_key_ok(t, pd, buf_a, key);
	ck_assert_int_eq(mrkey_key_ok(t, pd, key, IOVA, LEN,
				      MRKEY_ACCESS_REMOTE_READ, &held),
			 0);
	/* Deregistration pending: the key is free, the old region is kept. */
	ck_assert_int_eq(mrkey_mr_dereg(old, 0), -EBUSY);
	ck_assert_int_eq(probe(t, pd, key, IOVA, 1, 0), -ENOENT);
	neu = reg_key_ok(t, pd, buf_b, key);
	ck_assert_ptr_ne(neu, old);
	ck_assert_int_eq(mrkey_key_ok(t, pd, key, IOVA, LEN,
				      MRKEY_ACCESS_REMOTE_READ, &isge),
			 0);
	ck_assert_ptr_eq(isge.mr, neu);
	ck_assert_int_eq(((unsigned char *)isge.vaddr)[0], 'B');
	mrkey_isge_put(&isge);
	/* The stale holder still sees only the old memory. */
	ck_assert_ptr_eq(held.mr, old);
	ck_assert_ptr_eq(held.vaddr, buf_a);
	ck_assert_uint_eq(mrkey_mr_key(old), key);
	ck_assert_int_eq(mrkey_mr_published(old), 0);
	ck_assert_int_eq(mrkey_mr_published(neu), 1);
	/* The second one goes async while a holder keeps it. */
	ck_assert_int_eq(mrkey_key_ok(t, pd, key, IOVA, 1, 0, &isge), 0);
	atomic_store(&async_done, 0);
	ck_assert_int_eq(mrkey_mr_dereg_async(neu, on_done, buf_a), 0);
	ck_assert_int_eq(atomic_load(&async_done), 0);
	neu2 = reg_key_ok(t, pd, buf_a, key);
	ck_assert_int_eq(reg_key(t, pd, buf_a, key, NULL, &old), -EEXIST);
	mrkey_isge_put(&isge);
	mrkey_reclaim_wait(); /* a split count finishes after a grace period */
	ck_assert_int_eq(atomic_load(&async_done), 1);
	ck_assert_ptr_eq(atomic_load(&async_arg), buf_a);
	mrkey_isge_put(&held);
	ck_assert_int_eq(mrkey_mr_dereg(old, 0), 0);
	tu_dereg(neu2);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/* ---- reference-free checks ---------------------------------------------- */

START_TEST(test_key_check)
{
	struct mrkey_table *t = req_table(MRKEY_TABLE_NOREF), *r = req_table(0);
	struct mrkey_table *slot;
	struct mrkey_pd *pd = tu_pd_new(t, 0), *rpd = tu_pd_new(r, 0), *spd;
	struct mrkey_table_attr sa;
	struct mrkey_mr *mr = reg_key_ok(t, pd, buf_a, UINT64_MAX), *smr;
	struct mrkey_isge isge;

	tu_attr_init(&sa, 8, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	sa.flags = MRKEY_TABLE_NOREF;
	slot = tu_table_new_attr(&sa);
	spd = tu_pd_new(slot, 0);
	smr = tu_reg1_ok(slot, spd, buf_b, LEN, ADDR, IOVA, MRKEY_ACCESS_ALL);

	mrkey_read_lock();
	ck_assert_int_eq(mrkey_key_check(t, pd, UINT64_MAX, IOVA + 8, 8,
					 MRKEY_ACCESS_REMOTE_READ, &isge),
			 0);
	ck_assert_ptr_eq(isge.mr, mr);
	ck_assert_ptr_eq(isge.vaddr, buf_a + 8);
	ck_assert_uint_ne(isge.flags & MRKEY_ISGE_NOREF, 0);
	ck_assert_int_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_int_eq(mrkey_key_check(t, pd, UINT64_MAX - 1, IOVA, 8, 0,
					 &isge),
			 -ENOENT);
	ck_assert_int_eq(mrkey_key_check(t, pd, UINT64_MAX, IOVA, LEN + 1, 0,
					 &isge),
			 -ERANGE);
	ck_assert_int_eq(mrkey_key_check(t, pd, UINT64_MAX, IOVA, 0, 0, &isge),
			 0);
	ck_assert_ptr_null(isge.mr);
	/* Not a NOREF table. */
	ck_assert_int_eq(mrkey_key_check(r, rpd, 1, IOVA, 8, 0, &isge),
			 -EINVAL);
	/* A slot table through the same call. */
	ck_assert_int_eq(mrkey_key_check(slot, spd, mrkey_mr_rkey(smr), IOVA, 8,
					 0, &isge),
			 0);
	ck_assert_ptr_eq(isge.vaddr, buf_b);
	ck_assert_int_eq(mrkey_key_check(slot, spd,
					 mrkey_mr_rkey(smr) | (1ull << 32),
					 IOVA, 8, 0, &isge),
			 -ENOENT);
	mrkey_read_unlock();

	tu_dereg(smr);
	tu_pd_del(spd);
	tu_table_del(slot);
	tu_dereg(mr);
	tu_pd_del(rpd);
	tu_pd_del(pd);
	tu_table_del(r);
	tu_table_del(t);
}
END_TEST

/* ---- merging SGEs whose lkey is a requested key's low half -------------- */

START_TEST(test_merge_tag)
{
	struct mrkey_table *t = req_table(0);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	struct mrkey_mr *hi = reg_key_ok(t, pd, buf_a, (1ull << 32) | 9);
	struct mrkey_mr *lo = reg_key_ok(t, pd, buf_b, 9);
	struct mrkey_sge s1 = { .addr = ADDR, .length = 8, .lkey = 9 };
	struct mrkey_sge s2 = { .addr = ADDR + 8, .length = 8, .lkey = 9 };
	struct mrkey_isge last, isge;

	ck_assert_int_eq(mrkey_lkey_ok(t, pd, &s1, 0, &last), 0);
	ck_assert_ptr_eq(last.mr, lo);
	ck_assert_int_eq(mrkey_lkey_ok_merge(t, pd, &s2, 0, &last, &isge), 1);
	ck_assert_uint_eq(last.sge_length, 16);
	mrkey_isge_put(&last);
	/* An isge on the 2^32 | 9 region must not absorb lkey 9. */
	ck_assert_int_eq(
		mrkey_key_ok(t, pd, (1ull << 32) | 9, IOVA, 8, 0, &last), 0);
	ck_assert_ptr_eq(last.mr, hi);
	s2.addr = ADDR + 8;
	ck_assert_int_eq(mrkey_lkey_ok_merge(t, pd, &s2, 0, &last, &isge), 0);
	ck_assert_ptr_eq(isge.mr, lo);
	ck_assert_uint_eq(last.sge_length, 8);
	mrkey_isge_put(&isge);
	mrkey_isge_put(&last);
	tu_dereg(hi);
	tu_dereg(lo);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/* ---- backend ------------------------------------------------------------ */

START_TEST(test_backend)
{
	struct mrkey_table_attr a;
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *mr;
	struct tu_fake f;
	uint64_t key = 0x1234567800000042ull;

	tu_fake_init(&f);
	memset(&a, 0, sizeof(a));
	a.backend = &tu_fake_ops;
	a.backend_ctx = &f;
	t = req_table_attr(&a);
	pd = tu_pd_new(t, 0);
	f.publish_err = -EIO;
	ck_assert_int_eq(reg_key(t, pd, buf_a, key, NULL, &mr), -EIO);
	ck_assert_int_eq(probe(t, pd, key, IOVA, 1, 0), -ENOENT);
	ck_assert_int_eq(atomic_load(&f.publish), 1);
	f.publish_err = 0;
	mr = reg_key_ok(t, pd, buf_a, key);
	ck_assert_uint_eq(f.pub_key, 0x42);
	ck_assert_ptr_eq(f.pub_mr, mr);
	ck_assert_uint_eq(mrkey_mr_key(f.pub_mr), key);
	tu_dereg(mr);
	ck_assert_int_eq(atomic_load(&f.unpublish), 1);
	ck_assert_uint_eq(f.unpub_key, 0x42);
	ck_assert_int_eq(atomic_load(&f.release), 1);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/* ---- allocation failure ------------------------------------------------- */

START_TEST(test_alloc_fail)
{
	struct mrkey_table_attr a;
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *mrs[64], *mr;
	long live0, fail;
	int i, n = 0, rc;

	tu_alloc_reset();
	memset(&a, 0, sizeof(a));
	a.allocator = &tu_allocator;
	t = req_table_attr(&a);
	pd = tu_pd_new(t, 0);
	/*
	 * The record's allocation and, every time the index grows, the new
	 * array's: fail each in turn; nothing may change.
	 */
	for (i = 0; i < 64; i++) {
		for (fail = 1;; fail++) {
			mrkey_reclaim_wait(); /* arrays replaced so far */
			live0 = atomic_load(&tu_stats.live);
			tu_alloc_fail_nth(fail);
			rc = reg_key(t, pd, buf_a, (uint64_t)i * 0x9e37, NULL,
				     &mr);
			tu_alloc_fail_nth(0);
			if (!rc)
				break;
			ck_assert_int_eq(rc, -ENOMEM);
			ck_assert_int_eq(probe(t, pd, (uint64_t)i * 0x9e37,
					       IOVA, 1, 0),
					 -ENOENT);
			mrkey_reclaim_wait();
			ck_assert_int_eq(atomic_load(&tu_stats.live), live0);
			ck_assert_int_lt(fail, 4);
		}
		mrs[n++] = mr;
	}
	ck_assert_int_gt(atomic_load(&tu_stats.failures), 64);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(probe(t, pd, (uint64_t)i * 0x9e37, IOVA, 1, 0),
				 0);
	/* Shrinking may fail: deregistration does not. */
	atomic_store(&tu_stats.fail_all, 1);
	for (i = 0; i < n; i++)
		tu_dereg(mrs[i]);
	atomic_store(&tu_stats.fail_all, 0);
	tu_pd_del(pd);
	tu_table_del(t);
	mrkey_reclaim_wait();
	ck_assert_int_eq(atomic_load(&tu_stats.live), 0);
	tu_alloc_check_clean();
}
END_TEST

/* ---- the 0.1 ABI of mrkey_mr_reg -------------------------------------- */

typedef int (*reg_fn)(struct mrkey_table *, const struct mrkey_mr_attr *,
		      struct mrkey_mr **);

START_TEST(test_mr_reg_v01)
{
	struct mrkey_table *t =
		tu_table_new(8, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	struct mrkey_pd *pd = tu_pd_new(t, 0);
	reg_fn old = (reg_fn)dlvsym(RTLD_DEFAULT, "mrkey_mr_reg", "MRKEY_0.1");
	reg_fn cur = (reg_fn)dlvsym(RTLD_DEFAULT, "mrkey_mr_reg", "MRKEY_0.3");
	size_t v01 =
		offsetof(struct mrkey_mr_attr, comp_mask) + sizeof(uint64_t);
	union {
		struct mrkey_mr_attr a;
		unsigned char b[sizeof(struct mrkey_mr_attr)];
	} u;
	struct mrkey_seg seg;
	struct mrkey_mr *mr;

	ck_assert_ptr_nonnull(old);
	ck_assert_ptr_nonnull(cur);
	ck_assert_ptr_ne((void *)old, (void *)cur);
	attr1(&u.a, &seg, pd, buf_a, LEN, NULL);
	/* What follows a 0.1 caller's struct is not its: garbage here. */
	memset(u.b + v01, 0xff, sizeof(u.b) - v01);
	ck_assert_int_eq(old(t, &u.a, &mr), 0);
	ck_assert_ptr_null(mrkey_mr_context(mr));
	tu_dereg(mr);
	u.a.context = buf_b;
	ck_assert_int_eq(cur(t, &u.a, &mr), 0);
	ck_assert_ptr_eq(mrkey_mr_context(mr), buf_b);
	tu_dereg(mr);
	tu_pd_del(pd);
	tu_table_del(t);
}
END_TEST

/* ---- growth ------------------------------------------------------------- */

START_TEST(test_growth)
{
	size_t n = tu_slow_build() ? 20000 : 1000000, i;
	struct mrkey_table_attr a;
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr **mrs = calloc(n, sizeof(*mrs));
	uint64_t *keys = calloc(n, sizeof(*keys));
	uint64_t seed = 0x600dcafe, bad = 0, dup = 0;
	long live0, peak;
	int rc;

	ck_assert_ptr_nonnull(mrs);
	ck_assert_ptr_nonnull(keys);
	tu_alloc_reset();
	memset(&a, 0, sizeof(a));
	a.allocator = &tu_allocator;
	t = req_table_attr(&a);
	pd = tu_pd_new(t, 0);
	live0 = atomic_load(&tu_stats.live_bytes);
	for (i = 0; i < n; i++) {
		keys[i] = tu_rand(&seed);
		rc = reg_key(t, pd, buf_a, keys[i], &keys[i], &mrs[i]);
		if (rc == -EEXIST) { /* 2^-44 odds; draw again */
			dup++;
			i--;
			continue;
		}
		if (rc)
			bad++;
	}
	ck_assert_uint_eq(bad, 0);
	ck_assert_uint_le(dup, 1);
	peak = atomic_load(&tu_stats.live_bytes);
	ck_assert_int_gt(peak - live0, (long)(n * 64));
	for (i = 0; i < n; i++) {
		struct mrkey_isge isge;

		if (mrkey_key_ok(t, pd, keys[i], IOVA + i % LEN, 1,
				 MRKEY_ACCESS_REMOTE_WRITE, &isge) ||
		    isge.mr != mrs[i] ||
		    mrkey_mr_context(isge.mr) != &keys[i] ||
		    isge.vaddr != buf_a + i % LEN)
			bad++;
		else
			mrkey_isge_put(&isge);
	}
	ck_assert_uint_eq(bad, 0);
	/* Every other one first: the index shrinks with holes in it. */
	for (i = 0; i < n; i += 2)
		if (mrkey_mr_dereg(mrs[i], 0))
			bad++;
	for (i = 0; i < n; i++)
		if (probe(t, pd, keys[i], IOVA, 1, 0) != (i % 2 ? 0 : -ENOENT))
			bad++;
	for (i = 1; i < n; i += 2)
		if (mrkey_mr_dereg(mrs[i], 0))
			bad++;
	ck_assert_uint_eq(bad, 0);
	mrkey_reclaim_wait();
	/*
	 * Back to the empty table's memory, but for the freed one-segment
	 * records a table keeps for reuse (at most 256) and those waiting
	 * for their batch's grace period (at most 31): mrkey_mr_reg_key(3).
	 * Destroying the table frees them (checked below: nothing live).
	 */
	ck_assert_int_ge(atomic_load(&tu_stats.live_bytes), live0);
	ck_assert_int_le(atomic_load(&tu_stats.live_bytes) - live0,
			 (long)(256 + 31) * 256);
	tu_pd_del(pd);
	tu_table_del(t);
	ck_assert_int_eq(atomic_load(&tu_stats.live), 0);
	tu_alloc_check_clean();
	free(mrs);
	free(keys);
}
END_TEST

/* ---- stress ------------------------------------------------------------- */

#define ST_KEYS 32
#define ST_BUF 256

/* One registration: its memory is filled with its own id's bytes. */
struct st_reg {
	uint64_t key;
	uint32_t id;
	unsigned char mem[ST_BUF];
};

struct st {
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	uint64_t keys[ST_KEYS];
	struct mrkey_mr *_Atomic live[ST_KEYS];
	atomic_uint next_id;
	atomic_int stop;
	atomic_long ok, wrong, reg_fail, dereg_fail, regs;
};

static unsigned char st_byte(uint32_t id)
{
	return (unsigned char)(id * 131u + 7u);
}

static void st_free_reg(struct mrkey_mr *mr, void *arg)
{
	struct st_reg *r = arg;

	(void)mr;
	/* Poison before the free: a late reader would see it. */
	memset(r->mem, 0, sizeof(r->mem));
	free(r);
}

static void *st_writer(void *p)
{
	struct st *s = p;
	uint64_t seed = (uint64_t)(uintptr_t)&seed;
	struct mrkey_seg seg;
	struct mrkey_mr_attr a;

	while (!atomic_load(&s->stop)) {
		unsigned int i = (unsigned int)(tu_rand(&seed) % ST_KEYS);
		struct mrkey_mr *mr = atomic_exchange(&s->live[i], NULL);
		struct st_reg *r;
		int rc;

		if (mr) {
			/* Mostly async, sometimes a bounded wait first. */
			r = mrkey_mr_context(mr);
			rc = tu_rand(&seed) % 4 ? -EBUSY :
						  mrkey_mr_dereg(mr, 0);
			if (!rc) {
				st_free_reg(NULL, r);
				continue;
			}
			if (rc == -EBUSY)
				rc = mrkey_mr_dereg_async(mr, st_free_reg, r);
			if (rc)
				atomic_fetch_add(&s->dereg_fail, 1);
			continue;
		}
		r = malloc(sizeof(*r));
		if (!r)
			break;
		r->key = s->keys[i];
		r->id = atomic_fetch_add(&s->next_id, 1);
		memset(r->mem, st_byte(r->id), sizeof(r->mem));
		seg.addr = r->mem;
		seg.length = sizeof(r->mem);
		memset(&a, 0, sizeof(a));
		a.pd = s->pd;
		a.iova = IOVA;
		a.addr = ADDR;
		a.length = sizeof(r->mem);
		a.access = MRKEY_ACCESS_REMOTE_READ;
		a.segs = &seg;
		a.nsegs = 1;
		a.context = r;
		rc = mrkey_mr_reg_key(s->t, &a, r->key, &mr);
		if (rc == -EEXIST) {
			/* The other writer took it and has not stored it. */
			free(r);
			continue;
		}
		if (rc) {
			free(r);
			atomic_fetch_add(&s->reg_fail, 1);
			continue;
		}
		atomic_fetch_add(&s->regs, 1);
		mr = atomic_exchange(&s->live[i], mr);
		if (mr) /* the other writer's, stored after ours: drop it */
			if (mrkey_mr_dereg_async(mr, st_free_reg,
						 mrkey_mr_context(mr)))
				atomic_fetch_add(&s->dereg_fail, 1);
	}
	return NULL;
}

static void *st_reader(void *p)
{
	struct st *s = p;
	uint64_t seed = (uint64_t)(uintptr_t)&seed ^ 0x5eed;
	unsigned char copy[ST_BUF];

	while (!atomic_load(&s->stop)) {
		/* A known key (live or stale), or one never registered. */
		uint64_t x = tu_rand(&seed);
		uint64_t key = x % 8 ? s->keys[x % ST_KEYS] : x;
		uint32_t off = (uint32_t)(x >> 40) % (ST_BUF / 2);
		struct mrkey_sge_state ss;
		struct mrkey_isge isge;
		const struct st_reg *r;
		size_t i, got;

		if (mrkey_key_ok(s->t, s->pd, key, IOVA + off, ST_BUF / 2,
				 MRKEY_ACCESS_REMOTE_READ, &isge))
			continue;
		r = mrkey_mr_context(isge.mr);
		if (r->key != key || mrkey_mr_key(isge.mr) != key) {
			atomic_fetch_add(&s->wrong, 1);
			mrkey_isge_put(&isge);
			continue;
		}
		mrkey_ss_init(&ss, &isge, 1);
		got = mrkey_ss_copy_out(&ss, copy, ST_BUF / 2);
		for (i = 0; i < got; i++)
			if (copy[i] != st_byte(r->id))
				break;
		if (got != ST_BUF / 2 || i != got)
			atomic_fetch_add(&s->wrong, 1);
		else
			atomic_fetch_add(&s->ok, 1);
		mrkey_ss_put(&ss);
	}
	return NULL;
}

START_TEST(test_stress)
{
	unsigned int ms = tu_slow_build() ? 300 : 1000, i;
	pthread_t w[2], r[2];
	uint64_t seed = 77;
	struct st *s = calloc(1, sizeof(*s));

	ck_assert_ptr_nonnull(s);
	s->t = req_table(0);
	s->pd = tu_pd_new(s->t, 0);
	for (i = 0; i < ST_KEYS; i++)
		s->keys[i] = i < 4 ? i : tu_rand(&seed); /* 0..3 too */
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(pthread_create(&w[i], NULL, st_writer, s), 0);
		ck_assert_int_eq(pthread_create(&r[i], NULL, st_reader, s), 0);
	}
	tu_sleep_ms(ms);
	atomic_store(&s->stop, 1);
	for (i = 0; i < 2; i++) {
		pthread_join(w[i], NULL);
		pthread_join(r[i], NULL);
	}
	for (i = 0; i < ST_KEYS; i++) {
		struct mrkey_mr *mr = atomic_load(&s->live[i]);

		if (mr)
			ck_assert_int_eq(
				mrkey_mr_dereg_async(mr, st_free_reg,
						     mrkey_mr_context(mr)),
				0);
	}
	ck_assert_int_eq(atomic_load(&s->wrong), 0);
	ck_assert_int_eq(atomic_load(&s->reg_fail), 0);
	ck_assert_int_eq(atomic_load(&s->dereg_fail), 0);
	ck_assert_int_gt(atomic_load(&s->ok), 100);
	ck_assert_int_gt(atomic_load(&s->regs), 100);
	tu_pd_del(s->pd);
	tu_table_del(s->t);
	free(s);
}
END_TEST

static Suite *reqkey_suite(void)
{
	Suite *s = suite_create("reqkey");
	enum mrkey_refcount_mode modes[] = { MRKEY_REFCOUNT_ATOMIC,
					     MRKEY_REFCOUNT_PERCPU };
	unsigned int m;
	TCase *tc;

	for (m = 0; m < 2; m++) {
		tc = tu_tcase_mode("rules", modes[m]);
		tcase_add_test(tc, test_create_rules);
		tcase_add_test(tc, test_reg_key_rules);
		tcase_add_test(tc, test_reg_key_edge_keys);
		tcase_add_test(tc, test_key_ok_requested);
		tcase_add_test(tc, test_key_ok_long);
		tcase_add_test(tc, test_key_ok_slot_table);
		tcase_add_test(tc, test_key_lookup_requested);
		tcase_add_test(tc, test_rereg_pending_key);
		tcase_add_test(tc, test_key_check);
		tcase_add_test(tc, test_merge_tag);
		tcase_add_test(tc, test_backend);
		tcase_add_test(tc, test_alloc_fail);
		suite_add_tcase(s, tc);
		tc = tu_tcase_mode("stress", modes[m]);
		tcase_add_test(tc, test_stress);
		suite_add_tcase(s, tc);
	}
	tc = tu_tcase("abi");
	tcase_add_test(tc, test_mr_reg_v01);
	suite_add_tcase(s, tc);
	tc = tu_tcase("growth");
	tcase_add_test(tc, test_growth);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(reqkey_suite());
}
