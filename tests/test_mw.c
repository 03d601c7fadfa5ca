// SPDX-License-Identifier: MIT
/*
 * Memory windows, type 1 and type 2 (mrkey/mw.h, API.md "Memory windows"):
 * one test per rule and per errno. Every case runs in atomic, per-CPU and
 * reference-free (MRKEY_TABLE_NOREF) tables; in the reference-free ones
 * every probe is made twice, with the referencing call and with the
 * reference-free check inside mrkey_read_lock(), which must agree. Most
 * cases loop over both key layouts and both key generators (loop index:
 * bit 0 the layout, bit 1 the keygen). On every error nothing changes:
 * the tests probe the old state back, and check the counting allocator.
 */
#include <string.h>

#include "testutil.h"

#define RD MRKEY_ACCESS_REMOTE_READ
#define RW MRKEY_ACCESS_REMOTE_WRITE
#define RA MRKEY_ACCESS_REMOTE_ATOMIC
#define LW MRKEY_ACCESS_LOCAL_WRITE
#define MWB MRKEY_ACCESS_MW_BIND
#define ZB MRKEY_ACCESS_ZERO_BASED

#define BUF_LEN 4096
static unsigned char bufs[4][BUF_LEN];

/* Table flags of the running test case (MRKEY_TABLE_NOREF or 0). */
static unsigned int mt_flags;

static void mt_noref_on(void)
{
	mt_flags = MRKEY_TABLE_NOREF;
}

static void mt_noref_off(void)
{
	mt_flags = 0;
}

static bool mt_noref(void)
{
	return mt_flags & MRKEY_TABLE_NOREF;
}

static enum mrkey_key_layout mt_layout(int i)
{
	return (i & 1) ? MRKEY_LAYOUT_INDEX8 : MRKEY_LAYOUT_QIB;
}

static enum mrkey_keygen mt_keygen(int i)
{
	return (i & 2) ? MRKEY_KEYGEN_SEQUENTIAL : MRKEY_KEYGEN_RANDOM;
}

static void mt_attr(struct mrkey_table_attr *a, unsigned int bits, int i)
{
	tu_attr_init(a, bits, mt_keygen(i), mt_layout(i));
	a->flags = mt_flags;
	a->allocator = &tu_allocator;
}

/* A table of the running mode; @i picks layout and keygen. */
static struct mrkey_table *mt_table(unsigned int bits, int i)
{
	struct mrkey_table_attr a;

	mt_attr(&a, bits, i);
	return tu_table_new_attr(&a);
}

static unsigned char mt_byte(unsigned int b, size_t off)
{
	return (unsigned char)(b * 0x47 + off * 7 + (off >> 8) * 13 + 1);
}

static void mt_fill(void)
{
	unsigned int b;
	size_t k;

	for (b = 0; b < 4; b++)
		for (k = 0; k < BUF_LEN; k++)
			bufs[b][k] = mt_byte(b, k);
}

static uint32_t mt_slot(struct mrkey_table *t, int i, uint32_t key)
{
	uint32_t size = mrkey_table_size(t), bits = 0;

	while ((1u << bits) < size)
		bits++;
	if (mt_layout(i) == MRKEY_LAYOUT_QIB)
		return key >> (32 - bits);
	return key >> 8;
}

static struct mrkey_mw *mt_mw(struct mrkey_table *t, struct mrkey_pd *pd,
			      enum mrkey_mw_type type)
{
	struct mrkey_mw *mw = NULL;
	int rc = mrkey_mw_alloc(t, pd, type, &mw);

	ck_assert_msg(rc == 0, "mrkey_mw_alloc: %d (%s)", rc,
		      mrkey_strerror(rc));
	ck_assert_ptr_nonnull(mw);
	ck_assert_uint_ne(mrkey_mw_rkey(mw), 0);
	return mw;
}

static void mt_mw_del(struct mrkey_mw *mw)
{
	ck_assert_int_eq(mrkey_mw_dealloc(mw), 0);
}

static struct mrkey_mw_bind_attr mt_ba(struct mrkey_mr *mr, uint64_t addr,
				       uint64_t length, unsigned int access)
{
	struct mrkey_mw_bind_attr a;

	memset(&a, 0, sizeof(a));
	a.mr = mr;
	a.addr = addr;
	a.length = length;
	a.access = access;
	return a;
}

/* Bind a type 1 window, asserting success; the new key. */
static uint32_t mt_bind(struct mrkey_mw *mw, struct mrkey_mr *mr, uint64_t addr,
			uint64_t length, unsigned int access)
{
	struct mrkey_mw_bind_attr a = mt_ba(mr, addr, length, access);
	uint32_t key = 0;
	int rc = mrkey_mw_bind(mw, &a, &key);

	ck_assert_msg(rc == 0, "mrkey_mw_bind: %d (%s)", rc,
		      mrkey_strerror(rc));
	ck_assert_uint_ne(key, 0);
	ck_assert_uint_eq(key, mrkey_mw_rkey(mw));
	return key;
}

/* Bind a type 2 window to @qpn under @byte, asserting success. */
static uint32_t mt_bind2(struct mrkey_mw *mw, struct mrkey_mr *mr,
			 uint64_t addr, uint64_t length, unsigned int access,
			 uint8_t byte, uint32_t qpn)
{
	struct mrkey_mw_bind_attr a = mt_ba(mr, addr, length, access);
	uint32_t before = mrkey_mw_rkey(mw), key = 0;
	int rc;

	a.key_byte = byte;
	a.qpn = qpn;
	rc = mrkey_mw_bind(mw, &a, &key);
	ck_assert_msg(rc == 0, "mrkey_mw_bind (type 2): %d (%s)", rc,
		      mrkey_strerror(rc));
	ck_assert_uint_eq(key, (before & ~0xffu) | byte);
	ck_assert_uint_eq(key, mrkey_mw_rkey(mw));
	ck_assert_uint_ne(key, 0);
	return key;
}

/* Unbind a type 1 window; the key it gives back. */
static uint32_t mt_unbind(struct mrkey_mw *mw)
{
	struct mrkey_mw_bind_attr a = mt_ba(NULL, 0, 0, 0);
	uint32_t key = 0;

	ck_assert_int_eq(mrkey_mw_bind(mw, &a, &key), 0);
	ck_assert_uint_eq(key, mrkey_mw_rkey(mw));
	return key;
}

/*
 * Probe @key through mrkey_rkey_ok_qp() (@qp) or mrkey_rkey_ok(), the
 * reference dropped at once; in reference-free tables the check variant
 * must give the same answer. Returns the errno.
 */
static int mt_probe_via(struct mrkey_table *t, struct mrkey_pd *pd, bool qp,
			uint32_t qpn, uint32_t key, uint64_t va, uint32_t len,
			unsigned int access)
{
	struct mrkey_isge is;
	int rc, rc2;

	memset(&is, 0, sizeof(is));
	if (qp)
		rc = mrkey_rkey_ok_qp(t, pd, qpn, key, va, len, access, &is);
	else
		rc = mrkey_rkey_ok(t, pd, key, va, len, access, &is);
	if (rc == 0)
		mrkey_isge_put(&is);
	if (!mt_noref())
		return rc;
	mrkey_read_lock();
	if (qp)
		rc2 = mrkey_rkey_check_qp(t, pd, qpn, key, va, len, access,
					  &is);
	else
		rc2 = mrkey_rkey_check(t, pd, key, va, len, access, &is);
	mrkey_read_unlock();
	ck_assert_msg(rc2 == rc,
		      "reference-free check of key 0x%08x (%s): %d, the "
		      "referencing call %d",
		      key, qp ? "qp" : "no qp", rc2, rc);
	return rc;
}

static int mt_probe(struct mrkey_table *t, struct mrkey_pd *pd, uint32_t key,
		    uint64_t va, uint32_t len, unsigned int access)
{
	return mt_probe_via(t, pd, false, 0, key, va, len, access);
}

static int mt_probe_qp(struct mrkey_table *t, struct mrkey_pd *pd, uint32_t qpn,
		       uint32_t key, uint64_t va, uint32_t len,
		       unsigned int access)
{
	return mt_probe_via(t, pd, true, qpn, key, va, len, access);
}

/* A type 1 window key (or region key): both entry points agree. */
static int mt_probe1(struct mrkey_table *t, struct mrkey_pd *pd, uint32_t key,
		     uint64_t va, uint32_t len, unsigned int access)
{
	int rc = mt_probe(t, pd, key, va, len, access);

	ck_assert_int_eq(mt_probe_qp(t, pd, 0x1234, key, va, len, access), rc);
	return rc;
}

static struct mrkey_mr *mt_reg(struct mrkey_table *t, struct mrkey_pd *pd,
			       unsigned int b, size_t len, uint64_t iova,
			       unsigned int access)
{
	return tu_reg1_ok(t, pd, bufs[b], len, iova, iova, access);
}

static void mt_dereg(struct mrkey_mr *mr)
{
	tu_dereg(mr);
}

static void mt_end(struct mrkey_table *t)
{
	tu_table_del(t);
	mrkey_reclaim_wait();
	ck_assert_int_eq(atomic_load(&tu_stats.live), 0);
	tu_alloc_check_clean();
}

static void mt_begin(void)
{
	mrkey_reclaim_wait();
	tu_alloc_reset();
	mt_fill();
}

/* ---- allocation ----------------------------------------------------------- */

START_TEST(alloc_rules)
{
	struct mrkey_table *t, *other;
	struct mrkey_pd *pd, *opd;
	struct mrkey_mw *w1, *w2, *mw = NULL;
	struct mrkey_mr *mr;
	struct mrkey_isge is;
	long live;
	uint32_t k1, k2;

	mt_begin();
	t = mt_table(4, _i);
	other = mt_table(2, _i);
	pd = tu_pd_new(t, 0);
	opd = tu_pd_new(other, 0);
	mr = mt_reg(t, pd, 0, 256, 0x1000, LW | RD | MWB);
	live = atomic_load(&tu_stats.live);

	ck_assert_int_eq(mrkey_mw_alloc(NULL, pd, MRKEY_MW_TYPE_1, &mw),
			 -EINVAL);
	ck_assert_int_eq(mrkey_mw_alloc(t, NULL, MRKEY_MW_TYPE_1, &mw),
			 -EINVAL);
	ck_assert_int_eq(mrkey_mw_alloc(t, pd, MRKEY_MW_TYPE_1, NULL), -EINVAL);
	ck_assert_int_eq(mrkey_mw_alloc(t, pd, (enum mrkey_mw_type)0, &mw),
			 -EINVAL);
	ck_assert_int_eq(mrkey_mw_alloc(t, pd, (enum mrkey_mw_type)3, &mw),
			 -EINVAL);
	ck_assert_int_eq(mrkey_mw_alloc(t, opd, MRKEY_MW_TYPE_2, &mw), -EINVAL);
	ck_assert_ptr_null(mw);
	ck_assert_int_eq(atomic_load(&tu_stats.live), live);
	/* Nothing taken by those: the table still has 15 free slots. */
	ck_assert_uint_eq(tu_free_slots(t, pd, 16), 15);

	w1 = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	w2 = mt_mw(t, pd, MRKEY_MW_TYPE_2);
	k1 = mrkey_mw_rkey(w1);
	k2 = mrkey_mw_rkey(w2);
	ck_assert_uint_ne(k1, k2);
	ck_assert_uint_ne(k1, mrkey_mr_rkey(mr));
	ck_assert_uint_ne(k2, mrkey_mr_rkey(mr));
	ck_assert_uint_ne(mt_slot(t, _i, k1), mt_slot(t, _i, k2));
	ck_assert_uint_ne(mt_slot(t, _i, k1),
			  mt_slot(t, _i, mrkey_mr_rkey(mr)));
	/* Unbound: no key resolves to them, through any entry point. */
	ck_assert_int_eq(mt_probe1(t, pd, k1, 0, 1, 0), -ENOENT);
	ck_assert_int_eq(mt_probe1(t, pd, k1, 0x1000, 1, 0), -ENOENT);
	ck_assert_int_eq(mt_probe1(t, pd, k2, 0, 1, 0), -ENOENT);
	ck_assert_int_eq(mt_probe_qp(t, pd, 0, k2, 0, 1, 0), -ENOENT);
	ck_assert_int_eq(tu_lkey_probe(t, pd, k1, 0x1000, 1, 0), -ENOENT);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, k1, 0, 1, 0, &is), -ENOENT);
	/* An unbound window's key is nothing to invalidate. */
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, k1), -ENOENT);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, k2), -ENOENT);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	/* 16 slots: the region and two windows take three. */
	ck_assert_uint_eq(tu_free_slots(t, pd, 16), 13);

	/* Windows count in their PD and table. */
	ck_assert_int_eq(mrkey_pd_free(pd), -EBUSY);
	mt_dereg(mr);
	ck_assert_int_eq(mrkey_pd_free(pd), -EBUSY);
	ck_assert_int_eq(mrkey_table_destroy(t), -EBUSY);
	ck_assert_int_eq(mrkey_mw_dealloc(NULL), -EINVAL);
	mt_mw_del(w1);
	ck_assert_int_eq(mrkey_pd_free(pd), -EBUSY);
	ck_assert_int_eq(mrkey_table_destroy(t), -EBUSY);
	mt_mw_del(w2);
	tu_pd_del(pd);
	tu_pd_del(opd);
	tu_table_del(other);
	mt_end(t);
}
END_TEST

/* The table counts window slots: 2^b slots of windows and regions. */
START_TEST(slots_counted)
{
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *r1, *r2, *r3 = NULL, *fr = NULL;
	struct mrkey_mw *w1, *w2, *w3 = NULL;
	uint32_t s[4];
	unsigned int a, b;

	mt_begin();
	t = mt_table(2, _i);
	pd = tu_pd_new(t, 0);
	r1 = mt_reg(t, pd, 0, 64, 0x1000, MWB | RD);
	w1 = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	r2 = mt_reg(t, pd, 1, 64, 0x2000, MWB | RD);
	w2 = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	/* Four slots, four different ones. */
	s[0] = mt_slot(t, _i, mrkey_mr_rkey(r1));
	s[1] = mt_slot(t, _i, mrkey_mw_rkey(w1));
	s[2] = mt_slot(t, _i, mrkey_mr_rkey(r2));
	s[3] = mt_slot(t, _i, mrkey_mw_rkey(w2));
	for (a = 0; a < 4; a++) {
		ck_assert_uint_lt(s[a], 4);
		for (b = a + 1; b < 4; b++)
			ck_assert_uint_ne(s[a], s[b]);
	}
	/* Full: -ENOMEM for regions, windows of either type, fast-reg. */
	ck_assert_int_eq(tu_reg1(t, pd, bufs[2], 64, 0, 0, 0, &r3), -ENOMEM);
	ck_assert_int_eq(mrkey_mw_alloc(t, pd, MRKEY_MW_TYPE_1, &w3), -ENOMEM);
	ck_assert_int_eq(mrkey_mw_alloc(t, pd, MRKEY_MW_TYPE_2, &w3), -ENOMEM);
	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 1, &fr), -ENOMEM);
	ck_assert_ptr_null(r3);
	ck_assert_ptr_null(w3);
	ck_assert_ptr_null(fr);
	/* Binding takes no slot: a full table binds. */
	mt_bind(w1, r1, 0x1000, 64, RD);
	mt_bind(w2, r1, 0x1000, 32, RD);

	/* A window's slot is free again when its dealloc returns. */
	mt_mw_del(w2);
	r3 = mt_reg(t, pd, 2, 64, 0x3000, MWB);
	ck_assert_int_eq(mrkey_mw_alloc(t, pd, MRKEY_MW_TYPE_1, &w3), -ENOMEM);
	mt_dereg(r3);
	mrkey_reclaim_wait();
	w3 = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	ck_assert_int_eq(tu_reg1(t, pd, bufs[2], 64, 0, 0, 0, &r3), -ENOMEM);
	mt_mw_del(w3);
	mt_mw_del(w1);
	mt_dereg(r1);
	mt_dereg(r2);
	mrkey_reclaim_wait();
	ck_assert_uint_eq(tu_free_slots(t, pd, 8), 4);
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

/*
 * Keys are never 0, in either layout: small tables, every slot in turn,
 * type 2 bound with key byte 0, type 1 rebound many times.
 */
START_TEST(keys_never_zero)
{
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *mr;
	struct mrkey_mw *w[4];
	uint32_t seen[64];
	unsigned int n, k, round, nseen;
	int rc;

	mt_begin();
	t = mt_table(2, _i);
	pd = tu_pd_new(t, 0);
	for (round = 0; round < 12; round++) {
		mr = mt_reg(t, pd, 0, 128, 0, MWB | LW);
		nseen = 0;
		seen[nseen++] = mrkey_mr_rkey(mr);
		/* Fill the other slots; type 2 first, where it fits. */
		for (n = 0; n < 3; n++) {
			w[n] = NULL;
			rc = mrkey_mw_alloc(t, pd,
					    (n + round) & 1 ? MRKEY_MW_TYPE_1 :
							      MRKEY_MW_TYPE_2,
					    &w[n]);
			if (rc == -ENOMEM && !((n + round) & 1)) {
				/* a type 2 window may keep off a slot */
				rc = mrkey_mw_alloc(t, pd, MRKEY_MW_TYPE_1,
						    &w[n]);
			}
			ck_assert_int_eq(rc, 0);
			ck_assert_uint_ne(mrkey_mw_rkey(w[n]), 0);
		}
		for (n = 0; n < 3; n++) {
			struct mrkey_mw_bind_attr a = mt_ba(mr, 0, 128, RD);
			uint32_t key = 0, prev = mrkey_mw_rkey(w[n]);

			/* type 2: byte 0; type 1: the byte is ignored */
			a.key_byte = 0;
			a.qpn = n;
			for (k = 0; k < 6; k++) {
				rc = mrkey_mw_bind(w[n], &a, &key);
				if (rc == -EBUSY) {
					/* type 2: bound; end it, bind again */
					ck_assert_int_eq(
						mrkey_key_invalidate(
							t, pd,
							mrkey_mw_rkey(w[n])),
						0);
					rc = mrkey_mw_bind(w[n], &a, &key);
				}
				ck_assert_int_eq(rc, 0);
				ck_assert_uint_ne(key, 0);
				ck_assert_uint_eq(key, mrkey_mw_rkey(w[n]));
				ck_assert_uint_eq(mt_slot(t, _i, key),
						  mt_slot(t, _i, prev));
				prev = key;
			}
			seen[nseen++] = key;
		}
		/* Every slot's live key differs. */
		for (n = 0; n < nseen; n++)
			for (k = n + 1; k < nseen; k++)
				ck_assert_uint_ne(seen[n], seen[k]);
		for (n = 0; n < 3; n++)
			mt_mw_del(w[n]);
		mt_dereg(mr);
		mrkey_reclaim_wait();
	}
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

/* ---- type 1 ------------------------------------------------------------- */

START_TEST(type1_bind_rebind_unbind)
{
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *a, *b;
	struct mrkey_mw *w;
	struct mrkey_mw_bind_attr ba;
	struct mrkey_isge is;
	uint32_t k0, k1, k2, k3, k4, hist[24];
	unsigned int n, j;

	mt_begin();
	t = mt_table(4, _i);
	pd = tu_pd_new(t, 0);
	a = mt_reg(t, pd, 0, 1024, 0x10000, MWB | LW | RD);
	b = mt_reg(t, pd, 1, 1024, 0x20000, MWB | LW | RD);
	w = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	k0 = mrkey_mw_rkey(w);

	/* The first bind issues a new key of the window's slot. */
	k1 = mt_bind(w, a, 0x10040, 128, RD);
	ck_assert_uint_ne(k1, k0);
	ck_assert_uint_eq(mt_slot(t, _i, k1), mt_slot(t, _i, k0));
	ck_assert_int_eq(mt_probe1(t, pd, k0, 0x10040, 1, RD), -ENOENT);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, k1, 0x10050, 16, RD, &is), 0);
	ck_assert_ptr_eq(is.mr, a);
	ck_assert_ptr_eq(is.vaddr, bufs[0] + 0x50);
	ck_assert_uint_eq(is.length, 16);
	ck_assert_uint_eq(is.sge_length, 16);
	ck_assert_uint_eq(is.flags & MRKEY_ISGE_WINDOW, MRKEY_ISGE_WINDOW);
	ck_assert_uint_eq(is.flags & MRKEY_ISGE_NOREF, 0);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 4);
	mrkey_isge_put(&is);
	ck_assert_ptr_null(is.mr);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 3);
	/* Through rkey_ok_qp with any QP number, too. */
	ck_assert_int_eq(mt_probe_qp(t, pd, 0, k1, 0x10040, 128, RD), 0);
	ck_assert_int_eq(mt_probe_qp(t, pd, 77, k1, 0x10040, 128, RD), 0);

	/* Rebind to another region: new key, the old one is gone. */
	k2 = mt_bind(w, b, 0x20100, 64, RD);
	ck_assert_uint_ne(k2, k1);
	ck_assert_uint_eq(mt_slot(t, _i, k2), mt_slot(t, _i, k0));
	ck_assert_int_eq(mt_probe1(t, pd, k1, 0x10040, 1, RD), -ENOENT);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, k2, 0x20100, 64, RD, &is), 0);
	ck_assert_ptr_eq(is.mr, b);
	ck_assert_ptr_eq(is.vaddr, bufs[1] + 0x100);
	mrkey_isge_put(&is);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 2);
	ck_assert_uint_eq(mrkey_mr_refcount(b), 3);
	/* Rebind to the same region: new key, the count stays. */
	k3 = mt_bind(w, b, 0x20000, 1024, RD);
	ck_assert_uint_ne(k3, k2);
	ck_assert_int_eq(mt_probe1(t, pd, k2, 0x20100, 1, RD), -ENOENT);
	ck_assert_int_eq(mt_probe1(t, pd, k3, 0x20000, 1024, RD), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(b), 3);

	/* key_byte and qpn are ignored for type 1. */
	ba = mt_ba(a, 0x10000, 16, RD);
	ba.key_byte = 0x77;
	ba.qpn = 5;
	ck_assert_int_eq(mrkey_mw_bind(w, &ba, &k4), 0);
	ck_assert_uint_ne(k4, k3);
	ck_assert_int_eq(mt_probe_qp(t, pd, 9, k4, 0x10000, 16, RD), 0);
	ck_assert_int_eq(mt_probe(t, pd, k4, 0x10000, 16, RD), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(b), 2);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 3);

	/* Many rebinds: each a new key, no earlier one resolves. */
	n = 0;
	hist[n++] = k4;
	for (j = 0; j < 20; j++) {
		uint32_t k = mt_bind(w, j & 1 ? a : b,
				     j & 1 ? 0x10000 : 0x20000, 8, RD);
		unsigned int h;

		ck_assert_uint_ne(k, hist[n - 1]);
		for (h = 0; h < n; h++)
			if (hist[h] != k)
				ck_assert_int_eq(mt_probe1(t, pd, hist[h],
							   j & 1 ? 0x10000 :
								   0x20000,
							   8, RD),
						 -ENOENT);
		hist[n++] = k;
	}
	ck_assert_uint_eq(mrkey_mr_refcount(a) + mrkey_mr_refcount(b), 5);

	/* Unbind: the key stops resolving, the reference goes. */
	k4 = mrkey_mw_rkey(w);
	k1 = mt_unbind(w);
	ck_assert_int_eq(mt_probe1(t, pd, k4, 0x20000, 8, RD), -ENOENT);
	ck_assert_int_eq(mt_probe1(t, pd, k1, 0x20000, 8, RD), -ENOENT);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 2);
	ck_assert_uint_eq(mrkey_mr_refcount(b), 2);
	/* Bound again after an unbind. */
	k2 = mt_bind(w, a, 0x10000, 8, RD);
	ck_assert_uint_ne(k2, k1);
	ck_assert_int_eq(mt_probe1(t, pd, k2, 0x10000, 8, RD), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 3);
	/* Dealloc of a bound window: unbinds, drops the reference. */
	mt_mw_del(w);
	ck_assert_int_eq(mt_probe1(t, pd, k2, 0x10000, 8, RD), -ENOENT);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 2);
	mt_dereg(a);
	mt_dereg(b);
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

START_TEST(unbind_rules)
{
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *a;
	struct mrkey_mw *w1, *w2;
	struct mrkey_mw_bind_attr ba;
	uint32_t k1, k2, key = 0;

	mt_begin();
	t = mt_table(4, _i);
	pd = tu_pd_new(t, 0);
	a = mt_reg(t, pd, 0, 256, 0x1000, MWB | LW);
	w1 = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	w2 = mt_mw(t, pd, MRKEY_MW_TYPE_2);
	k1 = mt_bind(w1, a, 0x1000, 256, RD);
	k2 = mt_bind2(w2, a, 0x1000, 256, RD, 0x21, 3);

	/* mr NULL with a length: -EINVAL, still bound. */
	ba = mt_ba(NULL, 0, 1, 0);
	ck_assert_int_eq(mrkey_mw_bind(w1, &ba, &key), -EINVAL);
	ba = mt_ba(NULL, 0x1000, 256, RD);
	ck_assert_int_eq(mrkey_mw_bind(w1, &ba, &key), -EINVAL);
	ck_assert_uint_eq(key, 0);
	ck_assert_uint_eq(mrkey_mw_rkey(w1), k1);
	ck_assert_int_eq(mt_probe1(t, pd, k1, 0x1000, 256, RD), 0);
	/* A type 2 window is never unbound so (invalidate it). */
	ba = mt_ba(NULL, 0, 0, 0);
	ck_assert_int_eq(mrkey_mw_bind(w2, &ba, &key), -EINVAL);
	ck_assert_uint_eq(mrkey_mw_rkey(w2), k2);
	ck_assert_int_eq(mt_probe_qp(t, pd, 3, k2, 0x1000, 256, RD), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 4);

	key = mt_unbind(w1);
	ck_assert_int_eq(mt_probe1(t, pd, k1, 0x1000, 1, RD), -ENOENT);
	ck_assert_int_eq(mt_probe1(t, pd, key, 0x1000, 1, RD), -ENOENT);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 3);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, k2), 0);
	/* Unbound type 2: still -EINVAL. */
	ck_assert_int_eq(mrkey_mw_bind(w2, &ba, &key), -EINVAL);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 2);
	mt_mw_del(w1);
	mt_mw_del(w2);
	mt_dereg(a);
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

/* ---- type 2 --------------------------------------------------------------- */

START_TEST(type2_rules)
{
	struct mrkey_table *t;
	struct mrkey_pd *pd, *pd2;
	struct mrkey_mr *a, *b;
	struct mrkey_mw *w, *w1;
	struct mrkey_mw_bind_attr ba;
	struct mrkey_isge is;
	uint32_t k0, k, kb, k1, key = 0;

	mt_begin();
	t = mt_table(4, _i);
	pd = tu_pd_new(t, 0);
	pd2 = tu_pd_new(t, 0);
	a = mt_reg(t, pd, 0, 512, 0x4000, MWB | LW);
	b = mt_reg(t, pd, 1, 512, 0x8000, MWB | LW);
	w = mt_mw(t, pd, MRKEY_MW_TYPE_2);
	w1 = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	k0 = mrkey_mw_rkey(w);

	k = mt_bind2(w, a, 0x4100, 64, RD | RW, 0x5c, 7);
	ck_assert_uint_eq(k, (k0 & ~0xffu) | 0x5c);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 3);
	/* Only through rkey_ok_qp with its QP number. */
	ck_assert_int_eq(mt_probe(t, pd, k, 0x4100, 64, RD), -ENOENT);
	ck_assert_int_eq(mt_probe_qp(t, pd, 8, k, 0x4100, 64, RD), -EPERM);
	ck_assert_int_eq(mt_probe_qp(t, pd, 0, k, 0x4100, 64, RD), -EPERM);
	ck_assert_int_eq(mt_probe_qp(t, pd, 7, k, 0x4100, 64, RD), 0);
	ck_assert_int_eq(mt_probe_qp(t, pd, 7, k, 0x4100, 64, RW), 0);
	ck_assert_int_eq(mt_probe_qp(t, pd2, 7, k, 0x4100, 64, RD), -EPERM);
	ck_assert_int_eq(mrkey_rkey_ok_qp(t, pd, 7, k, 0x4120, 8, RD, &is), 0);
	ck_assert_ptr_eq(is.mr, a);
	ck_assert_ptr_eq(is.vaddr, bufs[0] + 0x120);
	ck_assert_uint_eq(is.sge_length, 8);
	ck_assert_uint_eq(is.flags & MRKEY_ISGE_WINDOW, MRKEY_ISGE_WINDOW);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 4);
	mrkey_isge_put(&is);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 3);
	/* Never an lkey. */
	ck_assert_int_eq(tu_lkey_probe(t, pd, k, 0x4100, 8, 0), -ENOENT);

	/* Bound: -EBUSY, nothing changed. */
	ba = mt_ba(b, 0x8000, 64, RD);
	ba.key_byte = 0x5d;
	ba.qpn = 9;
	ck_assert_int_eq(mrkey_mw_bind(w, &ba, &key), -EBUSY);
	ba.mr = a;
	ck_assert_int_eq(mrkey_mw_bind(w, &ba, &key), -EBUSY);
	ck_assert_uint_eq(key, 0);
	ck_assert_uint_eq(mrkey_mw_rkey(w), k);
	ck_assert_int_eq(mt_probe_qp(t, pd, 7, k, 0x4100, 64, RD), 0);
	ck_assert_int_eq(mt_probe_qp(t, pd, 9, (k & ~0xffu) | 0x5d, 0x8000, 1,
				     RD),
			 -ENOENT);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 3);
	ck_assert_uint_eq(mrkey_mr_refcount(b), 2);

	/* Invalidation ends it: errors first, changing nothing. */
	ck_assert_int_eq(mrkey_key_invalidate(t, pd2, k), -EPERM);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, k ^ 1), -ENOENT);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, k ^ 0x100), -ENOENT);
	ck_assert_int_eq(mrkey_key_invalidate(NULL, pd, k), -EINVAL);
	ck_assert_int_eq(mrkey_key_invalidate(t, NULL, k), -EINVAL);
	ck_assert_int_eq(mt_probe_qp(t, pd, 7, k, 0x4100, 64, RD), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 3);
	/* A reference taken before it stays usable. */
	ck_assert_int_eq(mrkey_rkey_ok_qp(t, pd, 7, k, 0x4100, 4, RD, &is), 0);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, k), 0);
	ck_assert_int_eq(mt_probe_qp(t, pd, 7, k, 0x4100, 64, RD), -ENOENT);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, k), -ENOENT);
	ck_assert_uint_eq(mrkey_mw_rkey(w), k);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 3); /* handle, table, isge */
	ck_assert_uint_eq(*(unsigned char *)is.vaddr, mt_byte(0, 0x100));
	mrkey_isge_put(&is);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 2);

	/* Bound again: another byte, another QP, another region. */
	kb = mt_bind2(w, b, 0x8000, 512, RD, 0x5d, 9);
	ck_assert_uint_eq(kb, (k & ~0xffu) | 0x5d);
	ck_assert_int_eq(mt_probe_qp(t, pd, 9, kb, 0x8000, 512, RD), 0);
	ck_assert_int_eq(mt_probe_qp(t, pd, 7, kb, 0x8000, 512, RD), -EPERM);
	ck_assert_int_eq(mt_probe_qp(t, pd, 7, k, 0x4100, 1, RD), -ENOENT);
	ck_assert_uint_eq(mrkey_mr_refcount(b), 3);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, kb), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(b), 2);
	/* The consumer may reuse its byte: the same key again. */
	ck_assert_uint_eq(mt_bind2(w, a, 0x4100, 64, RD, 0x5c, 7), k);
	ck_assert_int_eq(mt_probe_qp(t, pd, 7, k, 0x4100, 64, RD), 0);

	/* Invalidation of a bound type 1 window: -EINVAL, still bound. */
	k1 = mt_bind(w1, a, 0x4000, 16, RD);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, k1), -EINVAL);
	ck_assert_int_eq(mt_probe1(t, pd, k1, 0x4000, 16, RD), 0);
	/* Its old key after a rebind, after an unbind: -ENOENT. */
	key = mt_bind(w1, a, 0x4000, 16, RD);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, k1), -ENOENT);
	mt_unbind(w1);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, key), -ENOENT);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, mrkey_mw_rkey(w1)),
			 -ENOENT);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 3);

	/* Dealloc of a bound type 2 window drops its reference. */
	mt_mw_del(w);
	ck_assert_int_eq(mt_probe_qp(t, pd, 7, k, 0x4100, 64, RD), -ENOENT);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 2);
	mt_mw_del(w1);
	mt_dereg(a);
	mt_dereg(b);
	tu_pd_del(pd);
	tu_pd_del(pd2);
	mt_end(t);
}
END_TEST

/* ---- bind errors and their order ----------------------------------------- */

struct mt_env {
	struct mrkey_table *t, *other;
	struct mrkey_pd *pd, *pd2, *priv, *opd;
	struct mrkey_mr *r;        /* MW_BIND | LOCAL_WRITE, pd */
	struct mrkey_mr *nobind;   /* no MW_BIND, pd */
	struct mrkey_mr *nolw;     /* MW_BIND only, pd */
	struct mrkey_mr *r2;       /* MW_BIND | LOCAL_WRITE, pd2 */
	struct mrkey_mr *r2nobind; /* no MW_BIND, pd2 */
	struct mrkey_mr *dma;      /* priv */
	struct mrkey_mr *foreign;  /* of the other table */
	struct mrkey_mr *fr;       /* invalid fast-reg region, pd */
	struct mrkey_mr *fr2;      /* invalid fast-reg region, pd2 */
	struct mrkey_mr *gone;     /* unpublished by an -EBUSY dereg */
	struct mrkey_isge gone_hold;
};

static void mt_env_new(struct mt_env *e, int i)
{
	memset(e, 0, sizeof(*e));
	e->t = mt_table(5, i);
	e->other = mt_table(2, i);
	e->pd = tu_pd_new(e->t, 0);
	e->pd2 = tu_pd_new(e->t, 0);
	e->priv = tu_pd_new(e->t, MRKEY_PD_PRIVILEGED);
	e->opd = tu_pd_new(e->other, 0);
	e->r = mt_reg(e->t, e->pd, 0, 256, 0x1000, MWB | LW | RD);
	e->nobind = mt_reg(e->t, e->pd, 1, 256, 0x2000, LW | RD);
	e->nolw = mt_reg(e->t, e->pd, 2, 256, 0x3000, MWB);
	e->r2 = mt_reg(e->t, e->pd2, 3, 256, 0x4000, MWB | LW);
	e->r2nobind = mt_reg(e->t, e->pd2, 3, 256, 0x5000, LW);
	ck_assert_int_eq(mrkey_mr_reg_dma(e->t, e->priv, LW | RD, &e->dma), 0);
	e->foreign = tu_reg1_ok(e->other, e->opd, bufs[0], 256, 0x1000, 0x1000,
				MWB | LW);
	ck_assert_int_eq(mrkey_mr_alloc(e->t, e->pd, 1, &e->fr), 0);
	ck_assert_int_eq(mrkey_mr_alloc(e->t, e->pd2, 1, &e->fr2), 0);
	e->gone = mt_reg(e->t, e->pd, 0, 256, 0x6000, MWB | LW);
	ck_assert_int_eq(mrkey_rkey_ok(e->t, e->pd, mrkey_mr_rkey(e->gone),
				       0x6000, 1, 0, &e->gone_hold),
			 0);
	ck_assert_int_eq(mrkey_mr_dereg(e->gone, 0), -EBUSY);
}

static void mt_env_del(struct mt_env *e)
{
	mrkey_isge_put(&e->gone_hold);
	mt_dereg(e->gone);
	mt_dereg(e->r);
	mt_dereg(e->nobind);
	mt_dereg(e->nolw);
	mt_dereg(e->r2);
	mt_dereg(e->r2nobind);
	mt_dereg(e->dma);
	mt_dereg(e->foreign);
	mt_dereg(e->fr);
	mt_dereg(e->fr2);
	tu_pd_del(e->pd);
	tu_pd_del(e->pd2);
	tu_pd_del(e->priv);
	tu_pd_del(e->opd);
	tu_table_del(e->other);
	mt_end(e->t);
}

/* Region counts of the environment, to see that nothing changed. */
static uint32_t mt_env_refs(const struct mt_env *e)
{
	return mrkey_mr_refcount(e->r) + mrkey_mr_refcount(e->nobind) +
	       mrkey_mr_refcount(e->nolw) + mrkey_mr_refcount(e->r2) +
	       mrkey_mr_refcount(e->r2nobind) + mrkey_mr_refcount(e->dma) +
	       mrkey_mr_refcount(e->foreign) + mrkey_mr_refcount(e->fr) +
	       mrkey_mr_refcount(e->fr2) + mrkey_mr_refcount(e->gone);
}

struct mt_case {
	int want;
	const char *what;
	struct mrkey_mr *mr;
	uint64_t addr, length;
	unsigned int access;
	uint64_t comp_mask;
};

/*
 * Run every case on @w: each must fail with its errno and change nothing
 * (the key, what it resolves to, the counts, the allocator).
 */
static void mt_run_cases(struct mt_env *e, struct mrkey_mw *w, bool type2,
			 const struct mt_case *c, size_t n, uint32_t qpn,
			 uint64_t probe_va)
{
	uint32_t key0 = mrkey_mw_rkey(w), refs = mt_env_refs(e);
	int resolves =
		type2 ? mt_probe_qp(e->t, e->pd, qpn, key0, probe_va, 1, 0) :
			mt_probe1(e->t, e->pd, key0, probe_va, 1, 0);
	long live = atomic_load(&tu_stats.live);
	size_t k;

	for (k = 0; k < n; k++) {
		struct mrkey_mw_bind_attr a =
			mt_ba(c[k].mr, c[k].addr, c[k].length, c[k].access);
		uint32_t key = 0;
		int rc;

		a.comp_mask = c[k].comp_mask;
		a.key_byte = 0x99;
		a.qpn = qpn + 1;
		rc = mrkey_mw_bind(w, &a, &key);
		ck_assert_msg(rc == c[k].want,
			      "type %d bind case %zu (%s): %d, want %d",
			      type2 ? 2 : 1, k, c[k].what, rc, c[k].want);
		ck_assert_uint_eq(key, 0);
		ck_assert_uint_eq(mrkey_mw_rkey(w), key0);
		ck_assert_uint_eq(mt_env_refs(e), refs);
		ck_assert_int_eq(atomic_load(&tu_stats.live), live);
		if (type2) {
			/* the key the refused bind named resolves to nothing */
			uint32_t nkey = (key0 & ~0xffu) | 0x99;
			int want = -ENOENT;

			if (nkey == key0 && resolves == 0)
				want = -EPERM; /* bound, to QP @qpn */
			ck_assert_int_eq(mt_probe_qp(e->t, e->pd, qpn, key0,
						     probe_va, 1, 0),
					 resolves);
			ck_assert_int_eq(mt_probe_qp(e->t, e->pd, qpn + 1, nkey,
						     c[k].addr, 1, 0),
					 want);
		} else {
			ck_assert_int_eq(mt_probe1(e->t, e->pd, key0, probe_va,
						   1, 0),
					 resolves);
		}
	}
}

START_TEST(bind_errors_in_order)
{
	struct mt_env e;
	struct mrkey_mw *w1, *u1, *w2, *u2, *wpd2;
	uint32_t key = 0;

	mt_begin();
	mt_env_new(&e, _i);
	w1 = mt_mw(e.t, e.pd, MRKEY_MW_TYPE_1);
	u1 = mt_mw(e.t, e.pd, MRKEY_MW_TYPE_1);
	w2 = mt_mw(e.t, e.pd, MRKEY_MW_TYPE_2);
	u2 = mt_mw(e.t, e.pd, MRKEY_MW_TYPE_2);
	wpd2 = mt_mw(e.t, e.pd2, MRKEY_MW_TYPE_1);
	mt_bind(w1, e.r, 0x1000, 128, RD);
	mt_bind2(w2, e.r, 0x1000, 128, RD, 0x42, 11);

	/* NULL arguments. */
	{
		struct mrkey_mw_bind_attr a = mt_ba(e.r, 0x1000, 8, RD);

		ck_assert_int_eq(mrkey_mw_bind(NULL, &a, &key), -EINVAL);
		ck_assert_int_eq(mrkey_mw_bind(w1, NULL, &key), -EINVAL);
		ck_assert_int_eq(mrkey_mw_bind(w1, &a, NULL), -EINVAL);
		ck_assert_int_eq(mrkey_mw_bind(u1, &a, NULL), -EINVAL);
		ck_assert_int_eq(mrkey_mw_bind(w2, NULL, &key), -EINVAL);
		ck_assert_uint_eq(key, 0);
	}
	{
		/*
		 * Each case fails two (or more) checks at once: the errno is
		 * the first in API.md's order (-EINVAL, -ENOENT, -EPERM,
		 * -EACCES, -ERANGE, the backend's).
		 */
		const struct mt_case c[] = {
			{ -EINVAL, "LOCAL_WRITE on the window, out of range",
			  e.r, 0x0, 1 << 20, LW | RD, 0 },
			{ -EINVAL, "MW_BIND on the window", e.r, 0x1000, 8,
			  MWB | RD, 0 },
			{ -EINVAL, "unknown bit 0x40, invalid fast-reg", e.fr,
			  0, 8, 0x40, 0 },
			{ -EINVAL, "unknown bit 0x100", e.r, 0x1000, 8,
			  0x100 | RD, 0 },
			{ -EINVAL, "comp_mask, region of another PD", e.r2,
			  0x4000, 8, RD, 1 },
			{ -EINVAL, "comp_mask bit 63", e.r, 0x1000, 8, RD,
			  1ull << 63 },
			{ -EINVAL, "the DMA region (another PD too)", e.dma,
			  (uint64_t)(uintptr_t)bufs[0], 8, RD, 0 },
			{ -EINVAL, "a region of another table", e.foreign,
			  0x1000, 8, RD, 0 },
			{ -EINVAL, "mr NULL with a length", NULL, 0, 8, 0, 0 },
			{ -ENOENT, "invalid fast-reg region, any range", e.fr,
			  0, 1ull << 40, RW, 0 },
			{ -ENOENT, "invalid fast-reg region of another PD",
			  e.fr2, 0, 8, RD, 0 },
			{ -ENOENT, "deregistered (held) region", e.gone, 0x6000,
			  8, RD, 0 },
			{ -ENOENT, "deregistered region, out of range", e.gone,
			  0x0, 1 << 20, RW, 0 },
			{ -EPERM, "another PD, no MW_BIND", e.r2nobind, 0x5000,
			  8, RD, 0 },
			{ -EPERM, "another PD, out of range", e.r2, 0x0,
			  1 << 20, RD, 0 },
			{ -EPERM, "another PD, REMOTE_WRITE without LW",
			  e.r2nobind, 0x5000, 8, RW, 0 },
			{ -EACCES, "no MW_BIND, out of range", e.nobind, 0x0,
			  1 << 20, RD, 0 },
			{ -EACCES, "no MW_BIND", e.nobind, 0x2000, 8, RD, 0 },
			{ -EACCES, "REMOTE_WRITE, region lacks LOCAL_WRITE",
			  e.nolw, 0x3000, 8, RW | RD, 0 },
			{ -EACCES, "REMOTE_ATOMIC, region lacks LOCAL_WRITE",
			  e.nolw, 0x3000, 8, RA, 0 },
			{ -EACCES, "REMOTE_WRITE without LW, out of range",
			  e.nolw, 0x0, 1 << 20, RW, 0 },
			{ -ERANGE, "starts before the region", e.r, 0xfff, 8,
			  RD, 0 },
			{ -ERANGE, "ends after the region", e.r, 0x1001, 256,
			  RD, 0 },
			{ -ERANGE, "starts after the region", e.r, 0x1101, 0,
			  RD, 0 },
			{ -ERANGE, "addr + length overflows", e.r,
			  UINT64_MAX - 1, 4, RD, 0 },
			{ -ERANGE, "addr + length wraps below the end", e.r,
			  0x1000, UINT64_MAX - 0xf00, RD, 0 },
			{ -ERANGE, "length 2^64 - 1", e.r, 0x1000, UINT64_MAX,
			  RD, 0 },
		};

		mt_run_cases(&e, w1, false, c, TU_ARRAY_SIZE(c), 0, 0x1000);
		mt_run_cases(&e, u1, false, c, TU_ARRAY_SIZE(c), 0, 0x1000);
		mt_run_cases(&e, u2, true, c, TU_ARRAY_SIZE(c), 11, 0x1000);
	}
	{
		/* Bound type 2: -EINVAL first, then -EBUSY before the rest. */
		const struct mt_case c[] = {
			{ -EINVAL, "bad access bit", e.r, 0x1000, 8, LW, 0 },
			{ -EINVAL, "comp_mask", e.fr, 0x1000, 8, RD, 2 },
			{ -EINVAL, "mr NULL, length 0", NULL, 0, 0, 0, 0 },
			{ -EINVAL, "the DMA region", e.dma, 0, 8, RD, 0 },
			{ -EINVAL, "another table", e.foreign, 0x1000, 8, RD,
			  0 },
			{ -EBUSY, "invalid fast-reg region", e.fr, 0, 8, RD,
			  0 },
			{ -EBUSY, "deregistered region", e.gone, 0x6000, 8, RD,
			  0 },
			{ -EBUSY, "another PD", e.r2, 0x4000, 8, RD, 0 },
			{ -EBUSY, "no MW_BIND", e.nobind, 0x2000, 8, RD, 0 },
			{ -EBUSY, "out of range", e.r, 0, 1 << 20, RD, 0 },
			{ -EBUSY, "a good bind", e.r, 0x1000, 8, RD, 0 },
		};

		mt_run_cases(&e, w2, true, c, TU_ARRAY_SIZE(c), 11, 0x1000);
	}
	{
		/* A window of pd2 onto pd's region: -EPERM. */
		const struct mt_case c[] = {
			{ -EPERM, "region of the other PD", e.r, 0x1000, 8, RD,
			  0 },
			{ -ENOENT, "invalid fast-reg region of the other PD",
			  e.fr, 0, 8, RD, 0 },
			{ -EACCES, "its own PD's region, no MW_BIND",
			  e.r2nobind, 0x5000, 8, RD, 0 },
		};

		mt_run_cases(&e, wpd2, false, c, TU_ARRAY_SIZE(c), 0, 0x4000);
		ck_assert_uint_ne(mt_bind(wpd2, e.r2, 0x4000, 8, RW), 0);
	}
	/* A window may grant remote access the region does not (IBTA). */
	ck_assert_uint_ne(mt_bind(u1, e.nolw, 0x3000, 256, RD), 0);
	ck_assert_int_eq(
		mt_probe1(e.t, e.pd, mrkey_mw_rkey(u1), 0x3000, 256, RD), 0);
	/* Ends exactly at the region's end; a whole-region window. */
	ck_assert_uint_ne(mt_bind(w1, e.r, 0x10ff, 1, RD), 0);
	ck_assert_uint_ne(mt_bind(w1, e.r, 0x1000, 256, RD | RW | RA | ZB), 0);

	mt_mw_del(w1);
	mt_mw_del(u1);
	mt_mw_del(w2);
	mt_mw_del(u2);
	mt_mw_del(wpd2);
	mt_env_del(&e);
}
END_TEST

/* ---- validation through a window ----------------------------------------- */

START_TEST(window_bounds)
{
	struct mrkey_table *t;
	struct mrkey_pd *pd, *pd2;
	struct mrkey_mr *mr;
	struct mrkey_mw *w, *z, *e;
	struct mrkey_isge is;
	uint32_t kw, kz, ke;

	mt_begin();
	t = mt_table(4, _i);
	pd = tu_pd_new(t, 0);
	pd2 = tu_pd_new(t, 0);
	mr = mt_reg(t, pd, 0, 1024, 0x10000, MWB | LW | RD | RW);
	w = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	z = mt_mw(t, pd, MRKEY_MW_TYPE_2);
	e = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	kw = mt_bind(w, mr, 0x10100, 256, RD);
	kz = mt_bind2(z, mr, 0x10100, 256, RD | ZB, 0x3, 4);
	ke = mt_bind(e, mr, 0x10200, 0, RD);

	/* Not zero-based: counted from the window's addr. */
	ck_assert_int_eq(mt_probe1(t, pd, kw, 0x10100, 256, RD), 0);
	ck_assert_int_eq(mt_probe1(t, pd, kw, 0x101ff, 1, RD), 0);
	ck_assert_int_eq(mt_probe1(t, pd, kw, 0x100ff, 1, RD), -ERANGE);
	ck_assert_int_eq(mt_probe1(t, pd, kw, 0x100ff, 2, RD), -ERANGE);
	ck_assert_int_eq(mt_probe1(t, pd, kw, 0x10200, 1, RD), -ERANGE);
	ck_assert_int_eq(mt_probe1(t, pd, kw, 0x10100, 257, RD), -ERANGE);
	ck_assert_int_eq(mt_probe1(t, pd, kw, 0x10000, 1, RD), -ERANGE);
	ck_assert_int_eq(mt_probe1(t, pd, kw, 0x10000, 1024, RD), -ERANGE);
	ck_assert_int_eq(mt_probe1(t, pd, kw, 0, 1, RD), -ERANGE);
	ck_assert_int_eq(mt_probe1(t, pd, kw, 0x101ff, UINT32_MAX, RD),
			 -ERANGE);
	ck_assert_int_eq(mt_probe1(t, pd, kw, UINT64_MAX, 2, RD), -ERANGE);
	ck_assert_int_eq(mt_probe1(t, pd, kw, UINT64_MAX - 0xfe00, 0x10000, RD),
			 -ERANGE);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, kw, 0x101f0, 16, RD, &is), 0);
	ck_assert_ptr_eq(is.vaddr, bufs[0] + 0x1f0);
	ck_assert_uint_eq(is.length, 16);
	mrkey_isge_put(&is);

	/* Zero-based: counted from 0. */
	ck_assert_int_eq(mt_probe_qp(t, pd, 4, kz, 0, 256, RD), 0);
	ck_assert_int_eq(mt_probe_qp(t, pd, 4, kz, 255, 1, RD), 0);
	ck_assert_int_eq(mt_probe_qp(t, pd, 4, kz, 256, 1, RD), -ERANGE);
	ck_assert_int_eq(mt_probe_qp(t, pd, 4, kz, 0, 257, RD), -ERANGE);
	ck_assert_int_eq(mt_probe_qp(t, pd, 4, kz, 0x10100, 1, RD), -ERANGE);
	ck_assert_int_eq(mt_probe_qp(t, pd, 4, kz, UINT64_MAX - 1, 4, RD),
			 -ERANGE);
	ck_assert_int_eq(mrkey_rkey_ok_qp(t, pd, 4, kz, 0x20, 8, RD, &is), 0);
	ck_assert_ptr_eq(is.vaddr, bufs[0] + 0x120);
	ck_assert_uint_eq(is.sge_length, 8);
	mrkey_isge_put(&is);

	/* A zero-length window: only zero-length requests pass. */
	ck_assert_int_eq(mt_probe1(t, pd, ke, 0x10200, 1, RD), -ERANGE);
	ck_assert_int_eq(mt_probe1(t, pd, ke, 0x10200, 0, RD), 0);

	/* The validation errors' order through a window. */
	ck_assert_int_eq(mt_probe1(t, pd2, kw, 0, 1 << 20, RW), -EPERM);
	ck_assert_int_eq(mt_probe1(t, pd, kw, 0, 1 << 20, RW), -ERANGE);
	ck_assert_int_eq(mt_probe1(t, pd, kw, 0x10100, 8, RW), -EACCES);
	ck_assert_int_eq(mt_probe1(t, pd, kw, 0x10100, 8, 0x80), -EINVAL);
	ck_assert_int_eq(mt_probe1(t, pd, kw ^ 0x100, 0x10100, 8, RD), -ENOENT);
	ck_assert_int_eq(mt_probe1(t, pd, kw ^ 0x1, 0x10100, 8, RD), -ENOENT);
	ck_assert_int_eq(mt_probe1(t, NULL, kw, 0x10100, 8, RD), -EINVAL);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 5);

	mt_mw_del(w);
	mt_mw_del(z);
	mt_mw_del(e);
	mt_dereg(mr);
	tu_pd_del(pd);
	tu_pd_del(pd2);
	mt_end(t);
}
END_TEST

START_TEST(window_access)
{
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *lw, *full;
	struct mrkey_mw *w1, *w2, *w3;
	uint32_t k1, k2, k3;

	mt_begin();
	t = mt_table(4, _i);
	pd = tu_pd_new(t, 0);
	lw = mt_reg(t, pd, 0, 256, 0x1000, MWB | LW);
	full = mt_reg(t, pd, 1, 256, 0x2000, MWB | LW | RD | RW | RA);
	w1 = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	w2 = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	w3 = mt_mw(t, pd, MRKEY_MW_TYPE_2);

	/* The region grants no remote access; its window does. */
	k1 = mt_bind(w1, lw, 0x1000, 256, RD);
	ck_assert_int_eq(mt_probe1(t, pd, mrkey_mr_rkey(lw), 0x1000, 8, RD),
			 -EACCES);
	ck_assert_int_eq(mt_probe1(t, pd, k1, 0x1000, 8, RD), 0);
	ck_assert_int_eq(mt_probe1(t, pd, k1, 0x1000, 8, 0), 0);
	ck_assert_int_eq(mt_probe1(t, pd, k1, 0x1000, 8, RW), -EACCES);
	ck_assert_int_eq(mt_probe1(t, pd, k1, 0x1000, 8, RA), -EACCES);
	/* The window's access, not the region's LOCAL_WRITE. */
	ck_assert_int_eq(mt_probe1(t, pd, k1, 0x1000, 8, LW), -EACCES);
	k1 = mt_bind(w1, lw, 0x1000, 256, RD | RW | RA);
	ck_assert_int_eq(mt_probe1(t, pd, k1, 0x1000, 8, RD | RW | RA), 0);

	/* The region grants everything; the window only reading. */
	k2 = mt_bind(w2, full, 0x2000, 128, RD);
	ck_assert_int_eq(mt_probe1(t, pd, mrkey_mr_rkey(full), 0x2000, 8, RW),
			 0);
	ck_assert_int_eq(mt_probe1(t, pd, k2, 0x2000, 8, RW), -EACCES);
	ck_assert_int_eq(mt_probe1(t, pd, k2, 0x2000, 8, RA), -EACCES);
	ck_assert_int_eq(mt_probe1(t, pd, k2, 0x2000, 8, RD | RW), -EACCES);
	ck_assert_int_eq(mt_probe1(t, pd, k2, 0x2000, 8, RD), 0);
	/* A window with no access at all: only access 0 passes. */
	k2 = mt_bind(w2, full, 0x2000, 128, 0);
	ck_assert_int_eq(mt_probe1(t, pd, k2, 0x2000, 8, RD), -EACCES);
	ck_assert_int_eq(mt_probe1(t, pd, k2, 0x2000, 8, 0), 0);
	/* Type 2, write-only. */
	k3 = mt_bind2(w3, full, 0x2080, 128, RW, 0xee, 1);
	ck_assert_int_eq(mt_probe_qp(t, pd, 1, k3, 0x2080, 128, RW), 0);
	ck_assert_int_eq(mt_probe_qp(t, pd, 1, k3, 0x2080, 128, RD), -EACCES);
	ck_assert_int_eq(mt_probe_qp(t, pd, 1, k3, 0x2080, 8, 0x20), -EINVAL);

	mt_mw_del(w1);
	mt_mw_del(w2);
	mt_mw_del(w3);
	mt_dereg(lw);
	mt_dereg(full);
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

/* A region of four 64-byte segments, in scrambled buffer order. */
static struct mrkey_mr *mt_reg_multi(struct mrkey_table *t, struct mrkey_pd *pd,
				     uint64_t iova, struct mrkey_seg *segs)
{
	struct mrkey_mr_attr a;
	struct mrkey_mr *mr = NULL;
	static const unsigned int order[4] = { 2, 0, 3, 1 };
	unsigned int i;

	for (i = 0; i < 4; i++) {
		segs[i].addr = bufs[order[i]] + 64 * i;
		segs[i].length = 64;
	}
	memset(&a, 0, sizeof(a));
	a.pd = pd;
	a.addr = iova;
	a.iova = iova;
	a.length = 256;
	a.access = MWB | LW | RD;
	a.segs = segs;
	a.nsegs = 4;
	ck_assert_int_eq(mrkey_mr_reg(t, &a, &mr), 0);
	return mr;
}

/* Byte @off of the region mt_reg_multi() made. */
static unsigned char mt_multi_byte(const struct mrkey_seg *segs, size_t off)
{
	return ((const unsigned char *)segs[off / 64].addr)[off % 64];
}

START_TEST(window_vaddr_multiseg)
{
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_seg segs[4];
	struct mrkey_mr *mr;
	struct mrkey_mw *w, *z;
	struct mrkey_isge is;
	struct mrkey_sge_state ss;
	unsigned char out[512];
	uint32_t kw, kz;
	size_t k;

	mt_begin();
	t = mt_table(4, _i);
	pd = tu_pd_new(t, 0);
	mr = mt_reg_multi(t, pd, 0x40000, segs);
	w = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	z = mt_mw(t, pd, MRKEY_MW_TYPE_2);
	/* Region offsets 40 .. 189: three segments. */
	kw = mt_bind(w, mr, 0x40000 + 40, 150, RD);
	kz = mt_bind2(z, mr, 0x40000 + 40, 150, RD | ZB, 0x80, 2);

	/* Window offset 30 = region offset 70: segment 1, byte 6. */
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, kw, 0x40000 + 70, 100, RD, &is),
			 0);
	ck_assert_ptr_eq(is.mr, mr);
	ck_assert_ptr_eq(is.vaddr, (unsigned char *)segs[1].addr + 6);
	ck_assert_uint_eq(is.length, 58);
	ck_assert_uint_eq(is.sge_length, 100);
	mrkey_ss_init(&ss, &is, 1);
	ck_assert_uint_eq(mrkey_ss_remaining(&ss), 100);
	memset(out, 0, sizeof(out));
	ck_assert_uint_eq(mrkey_ss_copy_out(&ss, out, sizeof(out)), 100);
	for (k = 0; k < 100; k++)
		ck_assert_uint_eq(out[k], mt_multi_byte(segs, 70 + k));
	mrkey_ss_put(&ss);

	/* The same bytes through the zero-based type 2 window. */
	ck_assert_int_eq(mrkey_rkey_ok_qp(t, pd, 2, kz, 0, 150, RD, &is), 0);
	ck_assert_ptr_eq(is.vaddr, (unsigned char *)segs[0].addr + 40);
	ck_assert_uint_eq(is.length, 24);
	mrkey_ss_init(&ss, &is, 1);
	ck_assert_uint_eq(mrkey_ss_copy_out(&ss, out, sizeof(out)), 150);
	for (k = 0; k < 150; k++)
		ck_assert_uint_eq(out[k], mt_multi_byte(segs, 40 + k));
	mrkey_ss_put(&ss);
	/* One byte before the end, in the last segment touched. */
	ck_assert_int_eq(mrkey_rkey_ok_qp(t, pd, 2, kz, 149, 1, RD, &is), 0);
	ck_assert_ptr_eq(is.vaddr, (unsigned char *)segs[2].addr + 61);
	ck_assert_uint_eq(is.length, 1);
	mrkey_isge_put(&is);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 4);

	mt_mw_del(w);
	mt_mw_del(z);
	mt_dereg(mr);
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

/*
 * The copies never leave the window, and an isge from a window is never
 * merged with the next SGE, even one that continues it in the region.
 */
START_TEST(copies_stay_in_window)
{
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *mr, *other;
	struct mrkey_mw *w;
	struct mrkey_isge list[2], last;
	struct mrkey_sge_state ss;
	struct mrkey_sge sge;
	unsigned char out[1024], in[1024], before[BUF_LEN];
	uint32_t kw;
	size_t k;

	mt_begin();
	t = mt_table(4, _i);
	pd = tu_pd_new(t, 0);
	mr = mt_reg(t, pd, 0, 1024, 0x1000, MWB | LW | RD | RW);
	other = mt_reg(t, pd, 1, 64, 0x9000, RD);
	w = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	kw = mt_bind(w, mr, 0x1100, 100, RD | RW);

	/* copy_out: the window's bytes, then the next isge's. */
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, kw, 0x1100, 100, RD, &list[0]),
			 0);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, mrkey_mr_rkey(other), 0x9000, 64,
				       RD, &list[1]),
			 0);
	mrkey_ss_init(&ss, list, 2);
	ck_assert_uint_eq(mrkey_ss_copy_out(&ss, out, sizeof(out)), 164);
	for (k = 0; k < 100; k++)
		ck_assert_uint_eq(out[k], mt_byte(0, 0x100 + k));
	for (k = 0; k < 64; k++)
		ck_assert_uint_eq(out[100 + k], mt_byte(1, k));
	mrkey_ss_put(&ss);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 3);

	/* copy_in writes the window's bytes and no other. */
	memcpy(before, bufs[0], sizeof(before));
	memset(in, 0xee, sizeof(in));
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, kw, 0x1110, 84, RW, &list[0]), 0);
	mrkey_ss_init(&ss, list, 1);
	ck_assert_uint_eq(mrkey_ss_copy_in(&ss, in, sizeof(in)), 84);
	ck_assert_uint_eq(mrkey_ss_copy_in(&ss, in, sizeof(in)), 0);
	mrkey_ss_put(&ss);
	for (k = 0; k < BUF_LEN; k++)
		ck_assert_uint_eq(bufs[0][k],
				  k >= 0x110 && k < 0x164 ? 0xee : before[k]);
	memcpy(bufs[0], before, sizeof(before));

	/* advance stops at the window end too. */
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, kw, 0x1100, 100, 0, &list[0]), 0);
	mrkey_ss_init(&ss, list, 1);
	ck_assert_uint_eq(mrkey_ss_advance(&ss, 99), 99);
	ck_assert_uint_eq(mrkey_ss_remaining(&ss), 1);
	ck_assert_uint_eq(mrkey_ss_advance(&ss, 1000), 1);
	mrkey_ss_put(&ss);

	/* No merge of the region's own SGE into a window's isge. */
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, kw, 0x1100, 100, RD, &last), 0);
	sge.addr = 0x1164; /* continues the window's last byte */
	sge.length = 16;
	sge.lkey = mrkey_mr_lkey(mr);
	{
		struct mrkey_isge saved = last, is;

		memset(&is, 0, sizeof(is));
		ck_assert_int_eq(
			mrkey_lkey_ok_merge(t, pd, &sge, 0, &last, &is), 0);
		ck_assert_int_eq(memcmp(&saved, &last, sizeof(last)), 0);
		ck_assert_ptr_eq(is.mr, mr);
		ck_assert_ptr_eq(is.vaddr, bufs[0] + 0x164);
		ck_assert_uint_eq(is.flags & MRKEY_ISGE_WINDOW, 0);
		ck_assert_uint_eq(mrkey_mr_refcount(mr), 5);
		list[0] = last;
		list[1] = is;
	}
	mrkey_ss_init(&ss, list, 2);
	ck_assert_uint_eq(mrkey_ss_copy_out(&ss, out, sizeof(out)), 116);
	for (k = 0; k < 116; k++)
		ck_assert_uint_eq(out[k], mt_byte(0, 0x100 + k));
	mrkey_ss_put(&ss);
	/* A window key is no lkey, for merge either. */
	{
		struct mrkey_isge is, prev;

		ck_assert_int_eq(mrkey_rkey_ok(t, pd, mrkey_mr_rkey(mr), 0x1000,
					       16, 0, &prev),
				 0);
		sge.addr = 0x1010;
		sge.lkey = kw;
		memset(&is, 0x5a, sizeof(is));
		ck_assert_int_eq(mrkey_lkey_ok_merge(t, pd, &sge, 0, &prev,
						     &is),
				 -ENOENT);
		ck_assert_int_eq(mrkey_lkey_ok_merge(t, pd, &sge, 0, NULL, &is),
				 -ENOENT);
		mrkey_isge_put(&prev);
	}
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 3);

	mt_mw_del(w);
	mt_dereg(mr);
	mt_dereg(other);
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

START_TEST(lkey_never_a_window)
{
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *mr;
	struct mrkey_mw *w1, *w2;
	struct mrkey_sge sge;
	struct mrkey_isge is;
	uint32_t k1, k2;

	mt_begin();
	t = mt_table(4, _i);
	pd = tu_pd_new(t, 0);
	mr = mt_reg(t, pd, 0, 256, 0x1000, MWB | LW | RD);
	w1 = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	w2 = mt_mw(t, pd, MRKEY_MW_TYPE_2);
	k1 = mt_bind(w1, mr, 0x1000, 256, RD);
	k2 = mt_bind2(w2, mr, 0x1000, 256, RD | ZB, 0x10, 1);
	ck_assert_int_eq(tu_lkey_probe(t, pd, k1, 0x1000, 8, 0), -ENOENT);
	ck_assert_int_eq(tu_lkey_probe(t, pd, k2, 0x1000, 8, 0), -ENOENT);
	ck_assert_int_eq(tu_lkey_probe(t, pd, k2, 0, 8, 0), -ENOENT);
	if (mt_noref()) {
		sge.addr = 0x1000;
		sge.length = 8;
		sge.lkey = k1;
		mrkey_read_lock();
		ck_assert_int_eq(mrkey_lkey_check(t, pd, &sge, 0, &is),
				 -ENOENT);
		sge.lkey = k2;
		ck_assert_int_eq(mrkey_lkey_check(t, pd, &sge, 0, &is),
				 -ENOENT);
		mrkey_read_unlock();
	}
	/* The region's own key still works as an lkey. */
	ck_assert_int_eq(tu_lkey_probe(t, pd, mrkey_mr_lkey(mr), 0x1000, 8, 0),
			 0);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 4);
	mt_mw_del(w1);
	mt_mw_del(w2);
	mt_dereg(mr);
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

/* ---- reference counts --------------------------------------------------- */

START_TEST(window_refcounts)
{
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *a, *b;
	struct mrkey_mw *w1, *w2, *w3;
	struct mrkey_isge is[3];
	struct mrkey_sge_state ss;
	uint32_t k1, k2, k3;

	mt_begin();
	t = mt_table(4, _i);
	pd = tu_pd_new(t, 0);
	a = mt_reg(t, pd, 0, 512, 0x1000, MWB | LW | RD);
	b = mt_reg(t, pd, 1, 512, 0x2000, MWB | LW | RD);
	w1 = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	w2 = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	w3 = mt_mw(t, pd, MRKEY_MW_TYPE_2);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 2);
	/* +1 per bound window. */
	k1 = mt_bind(w1, a, 0x1000, 64, RD);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 3);
	k2 = mt_bind(w2, a, 0x1040, 64, RD);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 4);
	k3 = mt_bind2(w3, a, 0x1080, 64, RD, 0x31, 6);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 5);
	ck_assert_uint_eq(mrkey_mr_refcount(b), 2);
	/* +1 per window isge, on the region. */
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, k1, 0x1000, 8, RD, &is[0]), 0);
	ck_assert_int_eq(mrkey_rkey_ok_qp(t, pd, 6, k3, 0x1080, 8, RD, &is[1]),
			 0);
	ck_assert_int_eq(mrkey_rkey_ok_qp(t, pd, 6, k2, 0x1040, 8, RD, &is[2]),
			 0);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 8);
	/* A failed validation takes none. */
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, k1, 0x1040, 8, RD, &is[0]),
			 -ERANGE);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, k3, 0x1080, 8, RD, &is[0]),
			 -ENOENT);
	ck_assert_int_eq(mrkey_rkey_ok_qp(t, pd, 7, k3, 0x1080, 8, RD, &is[0]),
			 -EPERM);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 8);
	mrkey_isge_put(&is[0]);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 7);
	mrkey_ss_init(&ss, &is[1], 2);
	mrkey_ss_put(&ss);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 5);
	/* The isge outlives the binding; the reference is the region's. */
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, k1, 0x1000, 8, RD, &is[0]), 0);
	/* Rebind to b moves one reference. */
	k1 = mt_bind(w1, b, 0x2000, 64, RD);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 5);
	ck_assert_uint_eq(mrkey_mr_refcount(b), 3);
	ck_assert_ptr_eq(is[0].mr, a);
	ck_assert_uint_eq(*(unsigned char *)is[0].vaddr, mt_byte(0, 0));
	mrkey_isge_put(&is[0]);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 4);
	/* Unbind, invalidate, dealloc: one each. */
	mt_unbind(w2);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 3);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, k3), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 2);
	mt_mw_del(w1);
	ck_assert_uint_eq(mrkey_mr_refcount(b), 2);
	/* Unbound windows take none on dealloc either. */
	mt_mw_del(w2);
	mt_mw_del(w3);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 2);
	ck_assert_uint_eq(mrkey_mr_refcount(b), 2);
	(void)k2;
	mt_dereg(a);
	mt_dereg(b);
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

/* ---- the region cannot go while windows are bound --------------------- */

static void mt_count_done(struct mrkey_mr *mr, void *arg)
{
	(void)mr;
	atomic_fetch_add((atomic_int *)arg, 1);
}

START_TEST(dereg_busy_while_bound)
{
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *a, *b;
	struct mrkey_mw *w1, *w2, *idle;
	struct mrkey_seg seg = { bufs[2], 512 };
	struct mrkey_mr_attr ra;
	atomic_int done = 0;
	uint32_t ka, k1, k2;

	mt_begin();
	t = mt_table(4, _i);
	pd = tu_pd_new(t, 0);
	a = mt_reg(t, pd, 0, 512, 0x1000, MWB | LW | RD);
	b = mt_reg(t, pd, 1, 512, 0x2000, MWB | LW | RD);
	ka = mrkey_mr_rkey(a);
	w1 = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	w2 = mt_mw(t, pd, MRKEY_MW_TYPE_2);
	idle = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	k1 = mt_bind(w1, a, 0x1000, 64, RD);
	k2 = mt_bind2(w2, a, 0x1100, 64, RD, 0x12, 3);
	memset(&ra, 0, sizeof(ra));
	ra.pd = pd;
	ra.addr = ra.iova = 0x7000;
	ra.length = 512;
	ra.access = MWB | LW | RD | RW;
	ra.segs = &seg;
	ra.nsegs = 1;

	/* -EBUSY, nothing changed: key published, windows bound. */
	ck_assert_int_eq(mrkey_mr_dereg(a, 0), -EBUSY);
	ck_assert_int_eq(mrkey_mr_dereg(a, 10), -EBUSY);
	ck_assert_int_eq(mrkey_mr_dereg_async(a, mt_count_done, &done), -EBUSY);
	ck_assert_int_eq(mrkey_mr_rereg(a, MRKEY_REREG_ACCESS, &ra, 0), -EBUSY);
	ck_assert_int_eq(
		mrkey_mr_rereg(a, MRKEY_REREG_TRANSLATION | MRKEY_REREG_ACCESS,
			       &ra, 10),
		-EBUSY);
	mrkey_reclaim_wait();
	ck_assert_int_eq(atomic_load(&done), 0);
	ck_assert_int_eq(mrkey_mr_published(a), 1);
	ck_assert_uint_eq(mrkey_mr_lkey(a), ka);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 4);
	ck_assert_int_eq(mt_probe1(t, pd, ka, 0x1000, 512, RD), 0);
	ck_assert_int_eq(tu_lkey_probe(t, pd, ka, 0x1000, 512, LW), 0);
	ck_assert_int_eq(mt_probe1(t, pd, k1, 0x1000, 64, RD), 0);
	ck_assert_int_eq(mt_probe_qp(t, pd, 3, k2, 0x1100, 64, RD), 0);
	ck_assert_int_eq(mt_probe1(t, pd, ka, 0x7000, 8, RD), -ERANGE);

	/* One window left: still -EBUSY. */
	mt_unbind(w1);
	ck_assert_int_eq(mrkey_mr_dereg(a, 0), -EBUSY);
	ck_assert_int_eq(mrkey_mr_rereg(a, MRKEY_REREG_ACCESS, &ra, 0), -EBUSY);
	ck_assert_int_eq(mrkey_mr_dereg_async(a, mt_count_done, &done), -EBUSY);
	ck_assert_int_eq(mt_probe1(t, pd, ka, 0x1000, 512, RD), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 3);
	/* None bound (an unbound window does not count): it goes. */
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, k2), 0);
	ck_assert_int_eq(mrkey_mr_rereg(a, MRKEY_REREG_ACCESS, &ra, 0), 0);
	ck_assert_uint_ne(mrkey_mr_lkey(a), ka);
	ck_assert_int_eq(mt_probe1(t, pd, mrkey_mr_lkey(a), 0x1000, 8, RW), 0);
	ck_assert_int_eq(mrkey_mr_dereg_async(a, mt_count_done, &done), 0);
	mrkey_reclaim_wait();
	ck_assert_int_eq(atomic_load(&done), 1);

	/* A dealloc of a bound window unblocks too. */
	mt_bind(w1, b, 0x2000, 8, RD);
	ck_assert_int_eq(mrkey_mr_dereg(b, 0), -EBUSY);
	mt_mw_del(w1);
	ck_assert_int_eq(mrkey_mr_dereg(b, 0), 0);
	mt_mw_del(w2);
	mt_mw_del(idle);
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

START_TEST(pd_and_table_busy)
{
	struct mrkey_table *t;
	struct mrkey_pd *pd, *pd2;
	struct mrkey_mw *w;

	mt_begin();
	t = mt_table(3, _i);
	pd = tu_pd_new(t, 0);
	pd2 = tu_pd_new(t, 0);
	w = mt_mw(t, pd, MRKEY_MW_TYPE_2);
	ck_assert_int_eq(mrkey_pd_free(pd), -EBUSY);
	/* Another PD, without windows, goes. */
	tu_pd_del(pd2);
	ck_assert_int_eq(mrkey_table_destroy(t), -EBUSY);
	ck_assert_int_eq(mrkey_pd_free(pd), -EBUSY);
	mt_mw_del(w);
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

/* ---- fast-registration regions as the target --------------------------- */

START_TEST(fast_reg_target)
{
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *fr = NULL;
	struct mrkey_mw *w1, *w2;
	struct mrkey_mw_bind_attr ba;
	struct mrkey_seg seg;
	struct mrkey_fr_attr fa;
	struct mrkey_isge is;
	uint32_t fkey = 0, k1, k2, key = 0;

	mt_begin();
	t = mt_table(4, _i);
	pd = tu_pd_new(t, 0);
	ck_assert_int_eq(mrkey_mr_alloc(t, pd, 1, &fr), 0);
	w1 = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	w2 = mt_mw(t, pd, MRKEY_MW_TYPE_2);
	/* Invalid: nothing to bind to. */
	ba = mt_ba(fr, 0x5000, 64, RD);
	ck_assert_int_eq(mrkey_mw_bind(w1, &ba, &key), -ENOENT);
	ck_assert_uint_eq(mrkey_mr_refcount(fr), 2);

	memset(&fa, 0, sizeof(fa));
	seg.addr = bufs[2];
	seg.length = 256;
	fa.addr = 0x5000;
	fa.iova = 0x5000;
	fa.length = 256;
	fa.access = LW | MWB;
	fa.segs = &seg;
	fa.nsegs = 1;
	fa.key_byte = 0x44;
	ck_assert_int_eq(mrkey_mr_fast_reg(fr, &fa, 0, &fkey), 0);
	k1 = mt_bind(w1, fr, 0x5010, 64, RD);
	k2 = mt_bind2(w2, fr, 0x5000, 256, RD | ZB, 0x45, 2);
	ck_assert_uint_eq(mrkey_mr_refcount(fr), 4);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, k1, 0x5010, 64, RD, &is), 0);
	ck_assert_ptr_eq(is.mr, fr);
	ck_assert_ptr_eq(is.vaddr, bufs[2] + 0x10);
	mrkey_isge_put(&is);
	ck_assert_int_eq(mt_probe_qp(t, pd, 2, k2, 0, 256, RD), 0);
	/* Windows bound: invalidation and dereg of the region -EBUSY. */
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, fkey), -EBUSY);
	ck_assert_int_eq(mrkey_mr_dereg(fr, 0), -EBUSY);
	ck_assert_int_eq(mrkey_mr_published(fr), 1);
	ck_assert_int_eq(mt_probe1(t, pd, fkey, 0x5000, 8, 0), 0);
	ck_assert_int_eq(mt_probe1(t, pd, k1, 0x5010, 8, RD), 0);
	mt_unbind(w1);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, fkey), -EBUSY);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, k2), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(fr), 2);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, fkey), 0);
	/* Invalid again: -ENOENT for both types. */
	ck_assert_int_eq(mrkey_mw_bind(w1, &ba, &key), -ENOENT);
	ba.key_byte = 0x46;
	ba.qpn = 2;
	ck_assert_int_eq(mrkey_mw_bind(w2, &ba, &key), -ENOENT);
	/* Fast-registered again, without MW_BIND: -EACCES. */
	fa.key_byte = 0x47;
	fa.access = LW;
	ck_assert_int_eq(mrkey_mr_fast_reg(fr, &fa, 0, &fkey), 0);
	ck_assert_int_eq(mrkey_mw_bind(w1, &ba, &key), -EACCES);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, fkey), 0);
	fa.key_byte = 0x48;
	fa.access = LW | MWB;
	ck_assert_int_eq(mrkey_mr_fast_reg(fr, &fa, 0, &fkey), 0);
	k1 = mt_bind(w1, fr, 0x5000, 256, RD);
	ck_assert_int_eq(mt_probe1(t, pd, k1, 0x5000, 256, RD), 0);
	mt_mw_del(w1);
	mt_mw_del(w2);
	ck_assert_int_eq(mrkey_mr_dereg(fr, 0), 0);
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

/* ---- zero-length requests and the QP entry points ---------------------- */

START_TEST(zero_length_qp)
{
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *mr;
	struct mrkey_mw *w2;
	struct mrkey_isge is;
	uint32_t k2;

	mt_begin();
	t = mt_table(4, _i);
	pd = tu_pd_new(t, 0);
	mr = mt_reg(t, pd, 0, 256, 0x1000, MWB | LW | RD);
	w2 = mt_mw(t, pd, MRKEY_MW_TYPE_2);
	k2 = mt_bind2(w2, mr, 0x1000, 256, RD, 0x1, 5);

	/* No lookup: any key, any QP, any address. */
	memset(&is, 0x5a, sizeof(is));
	ck_assert_int_eq(mrkey_rkey_ok_qp(t, pd, 99, 0xdeadbeef, 7, 0, RD, &is),
			 0);
	ck_assert_ptr_null(is.mr);
	ck_assert_uint_eq(is.length, 0);
	ck_assert_uint_eq(is.sge_length, 0);
	mrkey_isge_put(&is);
	ck_assert_int_eq(mrkey_rkey_ok_qp(t, pd, 6, k2, 0x1000, 0, RD, &is), 0);
	ck_assert_ptr_null(is.mr);
	ck_assert_int_eq(mrkey_rkey_ok(t, pd, k2, 0x1000, 0, RD, &is), 0);
	ck_assert_ptr_null(is.mr);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 3);
	/* Argument checks still apply. */
	memset(&is, 0x5a, sizeof(is));
	ck_assert_int_eq(mrkey_rkey_ok_qp(NULL, pd, 5, k2, 0, 0, RD, &is),
			 -EINVAL);
	ck_assert_int_eq(mrkey_rkey_ok_qp(t, NULL, 5, k2, 0, 0, RD, &is),
			 -EINVAL);
	ck_assert_int_eq(mrkey_rkey_ok_qp(t, pd, 5, k2, 0, 0, RD, NULL),
			 -EINVAL);
	ck_assert_int_eq(mrkey_rkey_ok_qp(t, pd, 5, k2, 0, 0, 0x40, &is),
			 -EINVAL);
	ck_assert_int_eq(mrkey_rkey_ok_qp(t, pd, 5, k2, 0x1000, 8, 0x40, &is),
			 -EINVAL);
	ck_assert_int_eq(mrkey_rkey_ok_qp(NULL, pd, 5, k2, 0x1000, 8, RD, &is),
			 -EINVAL);
	ck_assert_uint_eq(is.length, 0x5a5a5a5a);
	if (mt_noref()) {
		mrkey_read_lock();
		ck_assert_int_eq(
			mrkey_rkey_check_qp(t, pd, 6, k2, 0, 0, RD, &is), 0);
		ck_assert_ptr_null(is.mr);
		ck_assert_int_eq(mrkey_rkey_check_qp(t, pd, 6, k2, 0, 0, 0x40,
						     &is),
				 -EINVAL);
		mrkey_read_unlock();
	}
	/* Regions through rkey_ok_qp: as rkey_ok, any QP number. */
	ck_assert_int_eq(
		mt_probe_qp(t, pd, 0, mrkey_mr_rkey(mr), 0x1000, 256, RD), 0);
	ck_assert_int_eq(mt_probe_qp(t, pd, 1, mrkey_mr_rkey(mr), 0x1000, 257,
				     RD),
			 -ERANGE);
	ck_assert_int_eq(mt_probe_qp(t, pd, 1, mrkey_mr_rkey(mr), 0x1000, 8,
				     RW),
			 -EACCES);
	ck_assert_int_eq(mt_probe_qp(t, pd, 1, mrkey_mr_rkey(mr) ^ 0x100,
				     0x1000, 8, 0),
			 -ENOENT);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 3);
	mt_mw_del(w2);
	mt_dereg(mr);
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

/* The reference-free checks through windows (NOREF tables). */
START_TEST(noref_checks)
{
	struct mrkey_table *t, *plain;
	struct mrkey_pd *pd, *ppd;
	struct mrkey_mr *mr;
	struct mrkey_mw *w1, *w2;
	struct mrkey_isge is;
	struct mrkey_sge_state ss;
	unsigned char out[64];
	uint32_t k1, k2;
	size_t k;
	int rc[8];

	mt_begin();
	t = mt_table(4, _i);
	pd = tu_pd_new(t, 0);
	mr = mt_reg(t, pd, 0, 256, 0x1000, MWB | LW | RD);
	w1 = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	w2 = mt_mw(t, pd, MRKEY_MW_TYPE_2);
	k1 = mt_bind(w1, mr, 0x1040, 64, RD);
	k2 = mt_bind2(w2, mr, 0x1080, 64, RD | ZB, 0x7, 12);
	if (!mt_noref()) {
		/* Reference-free checks need the table flag. */
		mrkey_read_lock();
		rc[0] = mrkey_rkey_check(t, pd, k1, 0x1040, 8, RD, &is);
		rc[1] = mrkey_rkey_check_qp(t, pd, 12, k2, 0, 8, RD, &is);
		mrkey_read_unlock();
		ck_assert_int_eq(rc[0], -EINVAL);
		ck_assert_int_eq(rc[1], -EINVAL);
		goto out;
	}
	mrkey_read_lock();
	rc[0] = mrkey_rkey_check(t, pd, k1, 0x1048, 8, RD, &is);
	if (rc[0] == 0) {
		ck_assert_ptr_eq(is.mr, mr);
		ck_assert_ptr_eq(is.vaddr, bufs[0] + 0x48);
		ck_assert_uint_eq(is.flags & (MRKEY_ISGE_NOREF |
					      MRKEY_ISGE_WINDOW),
				  MRKEY_ISGE_NOREF | MRKEY_ISGE_WINDOW);
		ck_assert_uint_eq(mrkey_mr_refcount(mr), 4);
		mrkey_ss_init(&ss, &is, 1);
		ck_assert_uint_eq(mrkey_ss_copy_out(&ss, out, sizeof(out)), 8);
		for (k = 0; k < 8; k++)
			ck_assert_uint_eq(out[k], mt_byte(0, 0x48 + k));
	}
	rc[1] = mrkey_rkey_check_qp(t, pd, 12, k2, 8, 56, RD, &is);
	if (rc[1] == 0) {
		ck_assert_ptr_eq(is.vaddr, bufs[0] + 0x88);
		ck_assert_uint_eq(is.sge_length, 56);
		ck_assert_uint_eq(is.flags & (MRKEY_ISGE_NOREF |
					      MRKEY_ISGE_WINDOW),
				  MRKEY_ISGE_NOREF | MRKEY_ISGE_WINDOW);
	}
	rc[2] = mrkey_rkey_check(t, pd, k2, 8, 8, RD, &is);
	rc[3] = mrkey_rkey_check_qp(t, pd, 13, k2, 8, 8, RD, &is);
	rc[4] = mrkey_rkey_check_qp(t, pd, 13, k1, 0x1040, 64, RD, &is);
	rc[5] = mrkey_rkey_check_qp(t, pd, 12, k2, 8, 57, RD, &is);
	rc[6] = mrkey_rkey_check(t, pd, k1, 0x1040, 64, RW, &is);
	rc[7] = mrkey_rkey_check(t, pd, k1, 0x1000, 8, RD, &is);
	mrkey_read_unlock();
	ck_assert_int_eq(rc[0], 0);
	ck_assert_int_eq(rc[1], 0);
	ck_assert_int_eq(rc[2], -ENOENT);
	ck_assert_int_eq(rc[3], -EPERM);
	ck_assert_int_eq(rc[4], 0);
	ck_assert_int_eq(rc[5], -ERANGE);
	ck_assert_int_eq(rc[6], -EACCES);
	ck_assert_int_eq(rc[7], -ERANGE);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 4);
	/* After an unbind / invalidation, the checks fail. */
	mt_unbind(w1);
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, k2), 0);
	mrkey_read_lock();
	rc[0] = mrkey_rkey_check(t, pd, k1, 0x1048, 8, RD, &is);
	rc[1] = mrkey_rkey_check_qp(t, pd, 12, k2, 8, 8, RD, &is);
	mrkey_read_unlock();
	ck_assert_int_eq(rc[0], -ENOENT);
	ck_assert_int_eq(rc[1], -ENOENT);
out:
	/* A plain table refuses mrkey_rkey_check_qp too. */
	{
		struct mrkey_table_attr a;

		tu_attr_init(&a, 2, mt_keygen(_i), mt_layout(_i));
		plain = tu_table_new_attr(&a);
		ppd = tu_pd_new(plain, 0);
		mrkey_read_lock();
		rc[0] = mrkey_rkey_check_qp(plain, ppd, 1, 0x100, 0, 8, 0, &is);
		mrkey_read_unlock();
		ck_assert_int_eq(rc[0], -EINVAL);
		tu_pd_del(ppd);
		tu_table_del(plain);
	}
	mt_mw_del(w1);
	mt_mw_del(w2);
	mt_dereg(mr);
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

/*
 * A deallocated window's slot is taken by a region (a two-slot table
 * leaves it no other): nothing of the window may stay in the record, the
 * type 2 window's QP number included. The region counts, validates and
 * deregisters as any other.
 */
START_TEST(window_slot_reused_by_region)
{
	static const uint32_t qpns[] = { 1, 2, 3, 0x40, 0xffffff };
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *r, *r2;
	struct mrkey_mw *w;
	uint32_t wslot, k;
	size_t q;

	mt_begin();
	t = mt_table(1, _i);
	pd = tu_pd_new(t, 0);
	/* The window first: index8 keeps type 2 off slot 0. */
	w = mt_mw(t, pd, MRKEY_MW_TYPE_2);
	r = mt_reg(t, pd, 0, 256, 0x1000, MWB | LW | RD);
	for (q = 0; q < TU_ARRAY_SIZE(qpns); q++) {
		wslot = mt_slot(t, _i, mrkey_mw_rkey(w));
		k = mt_bind2(w, r, 0x1000, 256, RD, (uint8_t)(0x10 + q),
			     qpns[q]);
		ck_assert_int_eq(mt_probe_qp(t, pd, qpns[q], k, 0x1000, 8, RD),
				 0);
		ck_assert_int_eq(mrkey_key_invalidate(t, pd, k), 0);
		mt_mw_del(w);
		/* The only free slot: the window's. */
		r2 = mt_reg(t, pd, 1, 256, 0x2000, MWB | LW | RD);
		ck_assert_uint_eq(mt_slot(t, _i, mrkey_mr_rkey(r2)), wslot);
		ck_assert_uint_eq(mrkey_mr_refcount(r2), 2);
		ck_assert_int_eq(mt_probe1(t, pd, mrkey_mr_rkey(r2), 0x2000,
					   256, RD),
				 0);
		ck_assert_uint_eq(mrkey_mr_refcount(r2), 2);
		ck_assert_uint_eq(mrkey_mr_refcount(r), 2);
		mt_dereg(r2);
		ck_assert_uint_eq(mrkey_mr_refcount(r), 2);
		w = mt_mw(t, pd, MRKEY_MW_TYPE_2);
	}
	mt_mw_del(w);
	mt_dereg(r);
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

/* ---- a backend that mirrors keys in "hardware" --------------------------- */

enum {
	MB_MAX = 64,
	MB_LOG = 256
};

enum mb_op {
	MB_PUB,
	MB_UNPUB,
	MB_MW_PUB,
	MB_MW_UNPUB
};

struct mb_entry {
	bool used;
	bool mw;
	uint32_t key;
	const void *obj; /* the region or the window */
	struct mrkey_mw_bind_attr bind;
};

struct mb_ctx {
	struct mb_entry hw[MB_MAX];
	struct {
		enum mb_op op;
		uint32_t key;
		const void *obj;
	} log[MB_LOG];
	unsigned int nlog;
	int mw_publish_err;
	unsigned int errors; /* a key published twice, unpublished unknown */
};

static struct mb_entry *mb_find(struct mb_ctx *c, bool mw, uint32_t key)
{
	unsigned int i;

	for (i = 0; i < MB_MAX; i++)
		if (c->hw[i].used && c->hw[i].mw == mw && c->hw[i].key == key)
			return &c->hw[i];
	return NULL;
}

static void mb_log(struct mb_ctx *c, enum mb_op op, uint32_t key,
		   const void *obj)
{
	if (c->nlog < MB_LOG) {
		c->log[c->nlog].op = op;
		c->log[c->nlog].key = key;
		c->log[c->nlog].obj = obj;
	}
	c->nlog++;
}

static struct mb_entry *mb_add(struct mb_ctx *c, bool mw, uint32_t key,
			       const void *obj)
{
	unsigned int i;

	if (mb_find(c, mw, key)) {
		c->errors++;
		return NULL;
	}
	for (i = 0; i < MB_MAX; i++)
		if (!c->hw[i].used) {
			memset(&c->hw[i], 0, sizeof(c->hw[i]));
			c->hw[i].used = true;
			c->hw[i].mw = mw;
			c->hw[i].key = key;
			c->hw[i].obj = obj;
			return &c->hw[i];
		}
	c->errors++;
	return NULL;
}

static void mb_del(struct mb_ctx *c, bool mw, uint32_t key, const void *obj)
{
	struct mb_entry *e = mb_find(c, mw, key);

	if (!e || e->obj != obj) {
		c->errors++;
		return;
	}
	e->used = false;
}

static int mb_key_publish(void *ctx, struct mrkey_mr *mr, uint32_t key)
{
	struct mb_ctx *c = ctx;

	mb_log(c, MB_PUB, key, mr);
	mb_add(c, false, key, mr);
	return 0;
}

static void mb_key_unpublish(void *ctx, struct mrkey_mr *mr, uint32_t key)
{
	struct mb_ctx *c = ctx;

	mb_log(c, MB_UNPUB, key, mr);
	mb_del(c, false, key, mr);
}

static int mb_mw_publish(void *ctx, struct mrkey_mw *mw, uint32_t key,
			 const struct mrkey_mw_bind_attr *bind)
{
	struct mb_ctx *c = ctx;
	struct mb_entry *e;

	if (c->mw_publish_err)
		return c->mw_publish_err;
	mb_log(c, MB_MW_PUB, key, mw);
	e = mb_add(c, true, key, mw);
	if (e && bind)
		e->bind = *bind;
	else if (!bind)
		c->errors++;
	return 0;
}

static void mb_mw_unpublish(void *ctx, struct mrkey_mw *mw, uint32_t key)
{
	struct mb_ctx *c = ctx;

	mb_log(c, MB_MW_UNPUB, key, mw);
	mb_del(c, true, key, mw);
}

static const struct mrkey_backend_ops mb_ops = {
	.key_publish = mb_key_publish,
	.key_unpublish = mb_key_unpublish,
	.name = "mirror",
	.mw_publish = mb_mw_publish,
	.mw_unpublish = mb_mw_unpublish,
};

/* Window keys the hardware holds. */
static unsigned int mb_nmw(const struct mb_ctx *c)
{
	unsigned int i, n = 0;

	for (i = 0; i < MB_MAX; i++)
		n += c->hw[i].used && c->hw[i].mw;
	return n;
}

/* The hardware holds exactly @key for window @mw, bound as given. */
static void mb_assert_bound(struct mb_ctx *c, struct mrkey_mw *mw, uint32_t key,
			    struct mrkey_mr *mr, uint64_t addr, uint64_t length,
			    unsigned int access, uint32_t qpn, bool type2)
{
	struct mb_entry *e = mb_find(c, true, key);
	unsigned int i;

	ck_assert_ptr_nonnull(e);
	ck_assert_ptr_eq(e->obj, mw);
	ck_assert_ptr_eq(e->bind.mr, mr);
	ck_assert_uint_eq(e->bind.addr, addr);
	ck_assert_uint_eq(e->bind.length, length);
	ck_assert_uint_eq(e->bind.access, access);
	if (type2)
		ck_assert_uint_eq(e->bind.qpn, qpn);
	for (i = 0; i < MB_MAX; i++)
		if (c->hw[i].used && c->hw[i].mw && c->hw[i].obj == mw)
			ck_assert_uint_eq(c->hw[i].key, key);
}

static void mb_assert_unbound(struct mb_ctx *c, struct mrkey_mw *mw)
{
	unsigned int i;

	for (i = 0; i < MB_MAX; i++)
		ck_assert(
			!(c->hw[i].used && c->hw[i].mw && c->hw[i].obj == mw));
}

START_TEST(backend_mirrors_windows)
{
	struct mrkey_table_attr attr;
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *a, *b;
	struct mrkey_mw *w1, *w2, *w3;
	struct mrkey_mw_bind_attr ba;
	struct mb_ctx *c = calloc(1, sizeof(*c));
	uint32_t k1, k1b, k2, ka, kb, key = 0;
	unsigned int n;

	ck_assert_ptr_nonnull(c);
	mt_begin();
	mt_attr(&attr, 4, _i);
	attr.backend = &mb_ops;
	attr.backend_ctx = c;
	t = tu_table_new_attr(&attr);
	pd = tu_pd_new(t, 0);
	a = mt_reg(t, pd, 0, 512, 0x1000, MWB | LW | RD);
	b = mt_reg(t, pd, 1, 512, 0x2000, MWB | LW | RD);
	ck_assert_ptr_nonnull(mb_find(c, false, mrkey_mr_rkey(a)));
	ck_assert_ptr_nonnull(mb_find(c, false, mrkey_mr_rkey(b)));
	w1 = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	w2 = mt_mw(t, pd, MRKEY_MW_TYPE_2);
	w3 = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	/* Allocation publishes nothing. */
	ck_assert_uint_eq(mb_nmw(c), 0);
	ck_assert_uint_eq(c->nlog, 2);

	/* Bind: the window key is in hardware, with its binding. */
	k1 = mt_bind(w1, a, 0x1010, 64, RD | ZB);
	mb_assert_bound(c, w1, k1, a, 0x1010, 64, RD | ZB, 0, false);
	ck_assert_uint_eq(c->log[c->nlog - 1].op, MB_MW_PUB);
	/* Rebind: new key published before the old one goes. */
	n = c->nlog;
	k1b = mt_bind(w1, b, 0x2000, 128, RD);
	ck_assert_uint_eq(c->nlog, n + 2);
	ck_assert_uint_eq(c->log[n].op, MB_MW_PUB);
	ck_assert_uint_eq(c->log[n].key, k1b);
	ck_assert_uint_eq(c->log[n + 1].op, MB_MW_UNPUB);
	ck_assert_uint_eq(c->log[n + 1].key, k1);
	mb_assert_bound(c, w1, k1b, b, 0x2000, 128, RD, 0, false);
	ck_assert_uint_eq(mb_nmw(c), 1);

	/* The backend refuses: nothing changes, the old binding holds. */
	c->mw_publish_err = -EIO;
	n = c->nlog;
	ba = mt_ba(a, 0x1000, 8, RD);
	ck_assert_int_eq(mrkey_mw_bind(w1, &ba, &key), -EIO);
	ck_assert_uint_eq(key, 0);
	ck_assert_uint_eq(c->nlog, n);
	ck_assert_uint_eq(mrkey_mw_rkey(w1), k1b);
	ck_assert_int_eq(mt_probe1(t, pd, k1b, 0x2000, 128, RD), 0);
	mb_assert_bound(c, w1, k1b, b, 0x2000, 128, RD, 0, false);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 2);
	ck_assert_uint_eq(mrkey_mr_refcount(b), 3);
	/* Same for a first bind (type 1, type 2): still unbound. */
	key = mrkey_mw_rkey(w3);
	ck_assert_int_eq(mrkey_mw_bind(w3, &ba, &k2), -EIO);
	ck_assert_uint_eq(mrkey_mw_rkey(w3), key);
	ba.key_byte = 0x61;
	ba.qpn = 4;
	k2 = (mrkey_mw_rkey(w2) & ~0xffu) | 0x61;
	ck_assert_int_eq(mrkey_mw_bind(w2, &ba, &key), -EIO);
	ck_assert_int_eq(mt_probe_qp(t, pd, 4, k2, 0x1000, 8, RD), -ENOENT);
	ck_assert_uint_eq(mrkey_mr_refcount(a), 2);
	/* An error found before the backend: the backend is not asked. */
	c->mw_publish_err = 0;
	ba.addr = 0x1200;
	ba.length = 0x1000;
	ck_assert_int_eq(mrkey_mw_bind(w2, &ba, &key), -ERANGE);
	ck_assert_uint_eq(c->nlog, n);
	ck_assert_uint_eq(mb_nmw(c), 1);

	/* Type 2: bound after the refusal, unpublished by invalidation. */
	ck_assert_uint_eq(mt_bind2(w2, a, 0x1000, 8, RD, 0x61, 4), k2);
	mb_assert_bound(c, w2, k2, a, 0x1000, 8, RD, 4, true);
	ck_assert_int_eq(mt_probe_qp(t, pd, 4, k2, 0x1000, 8, RD), 0);
	n = c->nlog;
	ck_assert_int_eq(mrkey_key_invalidate(t, pd, k2), 0);
	ck_assert_uint_eq(c->nlog, n + 1);
	ck_assert_uint_eq(c->log[n].op, MB_MW_UNPUB);
	ck_assert_uint_eq(c->log[n].key, k2);
	mb_assert_unbound(c, w2);
	/* Region invalidation/dereg errors do not touch the hardware. */
	ck_assert_int_eq(mrkey_mr_dereg(b, 0), -EBUSY);
	ck_assert_uint_eq(c->nlog, n + 1);
	ck_assert_ptr_nonnull(mb_find(c, false, mrkey_mr_rkey(b)));

	/* Unbind unpublishes. */
	mt_unbind(w1);
	ck_assert_uint_eq(c->log[c->nlog - 1].op, MB_MW_UNPUB);
	ck_assert_uint_eq(c->log[c->nlog - 1].key, k1b);
	mb_assert_unbound(c, w1);
	/* Dealloc: of a bound window unpublishes, of an unbound nothing. */
	k1 = mt_bind(w3, b, 0x2000, 8, RD);
	mb_assert_bound(c, w3, k1, b, 0x2000, 8, RD, 0, false);
	n = c->nlog;
	mt_mw_del(w3);
	ck_assert_uint_eq(c->nlog, n + 1);
	ck_assert_uint_eq(c->log[n].op, MB_MW_UNPUB);
	ck_assert_uint_eq(c->log[n].key, k1);
	mt_mw_del(w1);
	mt_mw_del(w2);
	ck_assert_uint_eq(c->nlog, n + 1);
	ck_assert_uint_eq(mb_nmw(c), 0);
	ck_assert_uint_eq(c->errors, 0);
	ka = mrkey_mr_rkey(a);
	kb = mrkey_mr_rkey(b);
	mt_dereg(a);
	mt_dereg(b);
	ck_assert_ptr_null(mb_find(c, false, ka));
	ck_assert_ptr_null(mb_find(c, false, kb));
	tu_pd_del(pd);
	mt_end(t);
	ck_assert_uint_eq(c->errors, 0);
	for (n = 0; n < MB_MAX; n++)
		ck_assert(!c->hw[n].used);
	free(c);
}
END_TEST

START_TEST(backend_without_window_ops)
{
	struct mrkey_table_attr attr;
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mw *mw = NULL;
	struct tu_fake f;
	long live;

	mt_begin();
	tu_fake_init(&f);
	mt_attr(&attr, 4, _i);
	attr.backend = &tu_fake_ops;
	attr.backend_ctx = &f;
	t = tu_table_new_attr(&attr);
	pd = tu_pd_new(t, 0);
	live = atomic_load(&tu_stats.live);
	ck_assert_int_eq(mrkey_mw_alloc(t, pd, MRKEY_MW_TYPE_1, &mw),
			 -EOPNOTSUPP);
	ck_assert_int_eq(mrkey_mw_alloc(t, pd, MRKEY_MW_TYPE_2, &mw),
			 -EOPNOTSUPP);
	ck_assert_ptr_null(mw);
	ck_assert_int_eq(atomic_load(&tu_stats.live), live);
	/* Nothing taken: all 16 slots free, the PD free to go. */
	ck_assert_uint_eq(tu_free_slots(t, pd, 16), 16);
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

/* Allocation failures in the window calls: -ENOMEM, nothing changes. */
START_TEST(alloc_failures)
{
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *mr;
	struct mrkey_mw *mw = NULL;
	long live, n;
	int rc;
	uint32_t key;

	mt_begin();
	t = mt_table(3, _i);
	pd = tu_pd_new(t, 0);
	mr = mt_reg(t, pd, 0, 64, 0x1000, MWB | LW);
	for (n = 1; n < 16; n++) {
		live = atomic_load(&tu_stats.live);
		tu_alloc_fail_nth(n);
		rc = mrkey_mw_alloc(t, pd, (enum mrkey_mw_type)(1 + (n & 1)),
				    &mw);
		tu_alloc_fail_nth(0);
		if (rc == 0)
			break;
		ck_assert_int_eq(rc, -ENOMEM);
		ck_assert_ptr_null(mw);
		ck_assert_int_eq(atomic_load(&tu_stats.live), live);
	}
	ck_assert_int_eq(rc, 0);
	/* A bind under allocation failures: done or -ENOMEM, no change. */
	for (n = 1; n < 16; n++) {
		struct mrkey_mw_bind_attr ba = mt_ba(mr, 0x1000, 8, RD);

		ba.key_byte = 0x3;
		ba.qpn = 1;
		key = mrkey_mw_rkey(mw);
		live = atomic_load(&tu_stats.live);
		tu_alloc_fail_nth(n);
		rc = mrkey_mw_bind(mw, &ba, &key);
		tu_alloc_fail_nth(0);
		if (rc == 0)
			break;
		ck_assert_int_eq(rc, -ENOMEM);
		ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
		ck_assert_int_eq(atomic_load(&tu_stats.live), live);
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 3);
	mt_mw_del(mw);
	mt_dereg(mr);
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

/*
 * The 64-bit entry points of requested keys: mrkey_key_ok() resolves a
 * type 1 window's key as mrkey_rkey_ok() does (never a type 2 window),
 * mrkey_key_lookup() never gives a window, and a requested-key table has
 * no slots for windows.
 */
START_TEST(windows_and_64bit_keys)
{
	struct mrkey_table_attr ra;
	struct mrkey_table *t, *rt;
	struct mrkey_pd *pd, *rpd;
	struct mrkey_mw *w1, *w2, *mw = NULL;
	struct mrkey_mw_bind_attr a;
	struct mrkey_mr *mr, *got = NULL;
	struct mrkey_isge is;
	uint32_t k1, k2 = 0;

	mt_begin();
	t = mt_table(4, 0);
	pd = tu_pd_new(t, 0);
	mr = mt_reg(t, pd, 0, 256, 0x1000, LW | RD | MWB);
	w1 = mt_mw(t, pd, MRKEY_MW_TYPE_1);
	w2 = mt_mw(t, pd, MRKEY_MW_TYPE_2);
	k1 = mt_bind(w1, mr, 0x1040, 64, RD);
	a = mt_ba(mr, 0x1000, 64, RD);
	a.qpn = 9;
	a.key_byte = 0x21;
	ck_assert_int_eq(mrkey_mw_bind(w2, &a, &k2), 0);

	ck_assert_int_eq(mrkey_key_ok(t, pd, k1, 0x1040, 64, RD, &is), 0);
	ck_assert_ptr_eq(is.mr, mr);
	ck_assert_uint_eq(is.flags & MRKEY_ISGE_WINDOW, MRKEY_ISGE_WINDOW);
	ck_assert_ptr_eq(is.vaddr, bufs[0] + 0x40);
	mrkey_isge_put(&is);
	ck_assert_int_eq(mrkey_key_ok(t, pd, k1, 0x1040, 65, RD, &is), -ERANGE);
	ck_assert_int_eq(mrkey_key_ok(t, pd, k1 | (1ull << 32), 0x1040, 8, RD,
				      &is),
			 -ENOENT);
	ck_assert_int_eq(mrkey_key_ok(t, pd, k2, 0x1000, 8, RD, &is), -ENOENT);
	ck_assert_int_eq(mrkey_key_lookup(t, k1, &got), -ENOENT);
	ck_assert_int_eq(mrkey_key_lookup(t, k2, &got), -ENOENT);
	ck_assert_ptr_null(got);
	ck_assert_int_eq(mrkey_key_lookup(t, mrkey_mr_rkey(mr), &got), 0);
	ck_assert_ptr_eq(got, mr);
	mrkey_mr_put(got);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 4); /* 2 + two windows */

	memset(&ra, 0, sizeof(ra));
	ra.index = MRKEY_INDEX_REQUESTED;
	rt = tu_table_new_attr(&ra);
	rpd = tu_pd_new(rt, 0);
	ck_assert_int_eq(mrkey_mw_alloc(rt, rpd, MRKEY_MW_TYPE_1, &mw),
			 -EINVAL);
	ck_assert_ptr_null(mw);
	tu_pd_del(rpd);
	tu_table_del(rt);

	mt_mw_del(w1);
	mt_mw_del(w2);
	mt_dereg(mr);
	tu_pd_del(pd);
	mt_end(t);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mw");
	int m;

	for (m = 0; m < 3; m++) {
		TCase *tc;

		if (m == 2) {
			tc = tu_tcase("mw_noref");
			tcase_add_unchecked_fixture(tc, mt_noref_on,
						    mt_noref_off);
		} else {
			tc = tu_tcase_mode("mw", (enum mrkey_refcount_mode)m);
			tcase_add_unchecked_fixture(tc, mt_noref_off, NULL);
		}
		tcase_add_loop_test(tc, alloc_rules, 0, 4);
		tcase_add_test(tc, windows_and_64bit_keys);
		tcase_add_loop_test(tc, slots_counted, 0, 4);
		tcase_add_loop_test(tc, keys_never_zero, 0, 4);
		tcase_add_loop_test(tc, type1_bind_rebind_unbind, 0, 4);
		tcase_add_loop_test(tc, unbind_rules, 0, 4);
		tcase_add_loop_test(tc, type2_rules, 0, 4);
		tcase_add_loop_test(tc, bind_errors_in_order, 0, 4);
		tcase_add_loop_test(tc, window_bounds, 0, 4);
		tcase_add_loop_test(tc, window_access, 0, 2);
		tcase_add_loop_test(tc, window_vaddr_multiseg, 0, 4);
		tcase_add_loop_test(tc, copies_stay_in_window, 0, 2);
		tcase_add_loop_test(tc, lkey_never_a_window, 0, 4);
		tcase_add_loop_test(tc, window_refcounts, 0, 2);
		tcase_add_loop_test(tc, dereg_busy_while_bound, 0, 4);
		tcase_add_loop_test(tc, pd_and_table_busy, 0, 2);
		tcase_add_loop_test(tc, fast_reg_target, 0, 4);
		tcase_add_loop_test(tc, zero_length_qp, 0, 2);
		tcase_add_loop_test(tc, noref_checks, 0, 4);
		tcase_add_loop_test(tc, window_slot_reused_by_region, 0, 4);
		tcase_add_loop_test(tc, backend_mirrors_windows, 0, 4);
		tcase_add_loop_test(tc, backend_without_window_ops, 0, 2);
		tcase_add_loop_test(tc, alloc_failures, 0, 2);
		suite_add_tcase(s, tc);
	}
	return tu_run(s);
}
