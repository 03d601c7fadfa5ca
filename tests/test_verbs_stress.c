// SPDX-License-Identifier: MIT
/*
 * Fast registration under fire. Writers cycle fast-registration regions
 * through mrkey_mr_fast_reg() / mrkey_key_invalidate(), each time onto
 * one of a few buffers filled with a byte pattern of their own, split
 * into several segments; readers validate whatever key a region currently
 * has and copy the whole range out through the SG state, crossing segment
 * boundaries (which reads the region's segment map as it goes). The key's
 * low byte says which buffer it names, so every byte a reader gets must
 * be that buffer's pattern: a translation or segment map that changed
 * under a holder, or a lookup that mixed two registrations, shows as a
 * wrong byte. Runs in atomic and per-CPU tables with referenced lookups,
 * and in a NOREF table with reference-free checks.
 */
#include <pthread.h>
#include <string.h>

#include <mrkey/inline.h>

#include "testutil.h"

enum {
	NREGIONS = 4,
	NBUFS = 4,     /* buffers per region */
	SEGS = 4,      /* segments per buffer */
	SEG_LEN = 256, /* bytes per segment */
	LEN = SEGS * SEG_LEN,
	NREADERS = 3,
};

struct vs_region {
	struct mrkey_mr *mr;
	_Atomic uint32_t key; /* the key last made valid, 0 before */
	unsigned char buf[NBUFS][LEN];
};

struct vs_ctx {
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	bool noref;
	struct vs_region r[NREGIONS];
	atomic_bool stop;
	atomic_long reads, cycles, busy, bad;
};

static unsigned char vs_pattern(unsigned int region, unsigned int buf)
{
	return (unsigned char)(0x11 * (region + 1) + 0x40 * buf);
}

static uint64_t vs_iova(unsigned int region)
{
	return 0x100000ull * (region + 1);
}

/* Segments of buffer @b: every other segment order reversed, so that
 * the map matters (segment i is not at offset i * SEG_LEN of the buffer). */
static void vs_segs(struct vs_region *r, unsigned int b, struct mrkey_seg *s)
{
	unsigned int i;

	for (i = 0; i < SEGS; i++) {
		s[i].addr = r->buf[b] + (size_t)(SEGS - 1 - i) * SEG_LEN;
		s[i].length = SEG_LEN;
	}
}

static void *vs_writer(void *arg)
{
	struct vs_ctx *c = arg;
	uint64_t seed = 42;
	unsigned int byte = 0;

	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		unsigned int i = (unsigned int)(tu_rand(&seed) % NREGIONS);
		struct vs_region *r = &c->r[i];
		struct mrkey_seg segs[SEGS];
		struct mrkey_fr_attr a;
		uint32_t key = atomic_load(&r->key), nkey = 0;
		int rc;

		if (key && mrkey_key_invalidate(c->t, c->pd, key) != 0)
			atomic_fetch_add(&c->bad, 1);
		byte = (byte + 1) & 0xff;
		vs_segs(r, byte % NBUFS, segs);
		memset(&a, 0, sizeof(a));
		a.addr = vs_iova(i);
		a.iova = vs_iova(i);
		a.length = LEN;
		a.access = MRKEY_ACCESS_REMOTE_READ;
		a.segs = segs;
		a.nsegs = SEGS;
		a.key_byte = (uint8_t)byte;
		/* Readers may hold the old registration: wait, retry. */
		while ((rc = mrkey_mr_fast_reg(r->mr, &a, 50, &nkey)) ==
		       -EBUSY) {
			atomic_fetch_add(&c->busy, 1);
			if (atomic_load(&c->stop))
				break;
		}
		if (rc == -EBUSY)
			break;
		if (rc || (nkey & 0xff) != byte) {
			atomic_fetch_add(&c->bad, 1);
			break;
		}
		atomic_store(&r->key, nkey);
		atomic_fetch_add(&c->cycles, 1);
	}
	return NULL;
}

/* Copy the whole range out and check every byte against the key's. */
static void vs_check(struct vs_ctx *c, unsigned int i, uint32_t key,
		     struct mrkey_isge *is)
{
	unsigned char out[LEN], want = vs_pattern(i, (key & 0xff) % NBUFS);
	struct mrkey_sge_state ss;
	size_t n, k;

	mrkey_ss_init(&ss, is, 1);
	n = mrkey_ss_copy_out(&ss, out, sizeof(out));
	if (n != LEN)
		atomic_fetch_add(&c->bad, 1);
	for (k = 0; k < n; k++)
		if (out[k] != want) {
			atomic_fetch_add(&c->bad, 1);
			break;
		}
	if (c->noref)
		is->mr = NULL;
	else
		mrkey_ss_put(&ss);
}

static void *vs_reader(void *arg)
{
	struct vs_ctx *c = arg;
	uint64_t seed = (uint64_t)(uintptr_t)&seed;
	long reads = 0;

	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		unsigned int i = (unsigned int)(tu_rand(&seed) % NREGIONS);
		uint32_t key = atomic_load(&c->r[i].key);
		struct mrkey_isge is;
		int rc;

		if (!key)
			continue;
		if (c->noref) {
			mrkey_read_lock_inline();
			rc = mrkey_rkey_check(c->t, c->pd, key, vs_iova(i), LEN,
					      MRKEY_ACCESS_REMOTE_READ, &is);
			if (rc == 0)
				vs_check(c, i, key, &is);
			mrkey_read_unlock_inline();
		} else {
			rc = mrkey_rkey_ok(c->t, c->pd, key, vs_iova(i), LEN,
					   MRKEY_ACCESS_REMOTE_READ, &is);
			if (rc == 0)
				vs_check(c, i, key, &is);
		}
		if (rc != 0 && rc != -ENOENT)
			atomic_fetch_add(&c->bad, 1);
		reads += rc == 0;
	}
	atomic_fetch_add(&c->reads, reads);
	return NULL;
}

static double vs_budget_ms(void)
{
	return tu_stress_seconds(3.0, 3.0) * 1000.0;
}

static void vs_run(enum mrkey_refcount_mode mode, unsigned int flags)
{
	struct mrkey_table_attr attr;
	struct vs_ctx *c = calloc(1, sizeof(*c));
	pthread_t w, rd[NREADERS];
	unsigned int i, b;

	ck_assert_ptr_nonnull(c);
	tu_attr_init(&attr, 4, MRKEY_KEYGEN_RANDOM, MRKEY_LAYOUT_QIB);
	attr.refcount = mode;
	attr.flags = flags;
	c->t = tu_table_new_attr(&attr);
	c->pd = tu_pd_new(c->t, 0);
	c->noref = flags & MRKEY_TABLE_NOREF;
	for (i = 0; i < NREGIONS; i++) {
		for (b = 0; b < NBUFS; b++)
			memset(c->r[i].buf[b], vs_pattern(i, b), LEN);
		ck_assert_int_eq(mrkey_mr_alloc(c->t, c->pd, SEGS, &c->r[i].mr),
				 0);
	}
	ck_assert_int_eq(pthread_create(&w, NULL, vs_writer, c), 0);
	for (i = 0; i < NREADERS; i++)
		ck_assert_int_eq(pthread_create(&rd[i], NULL, vs_reader, c), 0);
	tu_sleep_ms((unsigned int)vs_budget_ms());
	atomic_store(&c->stop, true);
	pthread_join(w, NULL);
	for (i = 0; i < NREADERS; i++)
		pthread_join(rd[i], NULL);

	ck_assert_int_eq(atomic_load(&c->bad), 0);
	ck_assert_int_gt(atomic_load(&c->cycles), 0);
	ck_assert_int_gt(atomic_load(&c->reads), 0);
	for (i = 0; i < NREGIONS; i++) {
		ck_assert_uint_eq(mrkey_mr_refcount(c->r[i].mr), 2);
		ck_assert_int_eq(mrkey_mr_dereg(c->r[i].mr, 0), 0);
	}
	tu_pd_del(c->pd);
	tu_table_del(c->t);
	free(c);
}

START_TEST(fast_reg_stress_atomic)
{
	vs_run(MRKEY_REFCOUNT_ATOMIC, 0);
}
END_TEST

START_TEST(fast_reg_stress_percpu)
{
	vs_run(MRKEY_REFCOUNT_PERCPU, 0);
}
END_TEST

START_TEST(fast_reg_stress_noref)
{
	vs_run(MRKEY_REFCOUNT_ATOMIC, MRKEY_TABLE_NOREF);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("verbs_stress");
	TCase *tc = tu_tcase("fast_reg");

	tcase_add_test(tc, fast_reg_stress_atomic);
	tcase_add_test(tc, fast_reg_stress_percpu);
	tcase_add_test(tc, fast_reg_stress_noref);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
