// SPDX-License-Identifier: MIT
/*
 * Memory windows under fire. One writer binds, rebinds, unbinds,
 * invalidates and deallocates windows (type 1 and type 2) over a few
 * regions of two segments each, every byte of which encodes its region
 * and offset; readers validate whatever key a window has now (through
 * mrkey_rkey_ok(), mrkey_rkey_ok_qp(), or the reference-free checks in a
 * NOREF table) for a range inside the window, or just past its end, and
 * copy the range out through the SG state.
 *
 * The writer logs every binding it made (key, region, window range,
 * zero-based, type, QP) in an append-only log indexed by key, after the
 * bind returns, with a sequence number odd while a bind is in progress.
 * A reader whose validation succeeded looks its key up there (waiting
 * for a bind in progress to be logged) and checks that at least one
 * binding the key ever had (1) admits the request: inside the window, and
 * for type 2 through the right entry point and QP, and (2) gives exactly
 * the bytes read: that region's bytes at the window's offsets. A byte
 * from outside the window the key named, or a key that resolved to a
 * binding it never had, fails the test; the sanitizer and valgrind runs
 * find use-after-free. Failures are counted in atomics and asserted after
 * the join. Runs in atomic, per-CPU and NOREF tables.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include <mrkey/inline.h>

#include "testutil.h"

enum {
	NREG = 4,
	REG_LEN = 1024,
	HALF = REG_LEN / 2,
	NW = 8, /* windows: even indexes type 1, odd type 2 */
	NREADERS = 2,
	LOG_CAP = 1 << 20, /* 16 MiB of bindings */
	HASH_BITS = 16,
	QPN_BASE = 100,
};

#define RD MRKEY_ACCESS_REMOTE_READ

struct ms_bind {
	uint32_t key;
	uint8_t region, type2, zb, window;
	uint16_t woff, wlen; /* region offsets */
	int32_t next;        /* older binding in the same bucket, or -1 */
};

/*
 * What a reader aims at: a hint, maybe stale. Packed in one word:
 * key | region << 32 | woff << 34 | wlen << 45 | zb << 56 | bound << 57.
 */
static uint64_t ms_pack(uint32_t key, unsigned int region, unsigned int woff,
			unsigned int wlen, bool zb, bool bound)
{
	return key | (uint64_t)region << 32 | (uint64_t)woff << 34 |
	       (uint64_t)wlen << 45 | (uint64_t)zb << 56 |
	       (uint64_t)bound << 57;
}

struct ms_ctx {
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	bool noref;
	struct mrkey_mr *mr[NREG];
	unsigned char mem[NREG][REG_LEN];
	struct mrkey_mw *mw[NW];
	_Atomic uint64_t hint[NW];
	/* the writer's model */
	int bound_to[NW]; /* region, or -1 */
	uint8_t next_byte[NW];

	struct ms_bind *log;
	atomic_int nlog;
	_Atomic int32_t head[1 << HASH_BITS];
	atomic_ulong seq; /* odd while a bind is in progress */

	atomic_bool stop;
	atomic_long reads, checked, binds, unbinds, invals, deallocs,
		dereg_busy, bad_rc, bad_bytes, bad_admit, unlogged, bad_writer,
		bad_isge, past_end_ok;
};

static uint64_t ms_iova(unsigned int r)
{
	return 0x100000ull * (r + 1);
}

/* Byte @off of region @r: pseudo-random, a function of both. */
static unsigned char ms_byte(unsigned int r, unsigned int off)
{
	uint32_t h = (r * REG_LEN + off + 1) * 0x9e3779b1u;

	return (unsigned char)(h >> 24 ^ h >> 11);
}

static unsigned int ms_hash(uint32_t key)
{
	return (key * 0x9e3779b1u) >> (32 - HASH_BITS);
}

/* ---- the writer ----------------------------------------------------------- */

static void ms_log(struct ms_ctx *c, const struct ms_bind *b)
{
	int n = atomic_load_explicit(&c->nlog, memory_order_relaxed);
	unsigned int h = ms_hash(b->key);

	c->log[n] = *b;
	c->log[n].next =
		atomic_load_explicit(&c->head[h], memory_order_relaxed);
	atomic_store_explicit(&c->head[h], n, memory_order_release);
	atomic_store_explicit(&c->nlog, n + 1, memory_order_release);
}

static void ms_set_hint(struct ms_ctx *c, unsigned int i, uint64_t v)
{
	atomic_store_explicit(&c->hint[i], v, memory_order_release);
}

static void ms_bind_one(struct ms_ctx *c, unsigned int i, uint64_t *seed)
{
	bool type2 = i & 1;
	unsigned int r = (unsigned int)(tu_rand(seed) % NREG);
	unsigned int woff = (unsigned int)(tu_rand(seed) % REG_LEN);
	unsigned int wlen =
		1 + (unsigned int)(tu_rand(seed) % (REG_LEN - woff));
	bool zb = tu_rand(seed) & 1;
	struct mrkey_mw_bind_attr a;
	struct ms_bind b;
	uint32_t key = 0;
	int rc;

	memset(&a, 0, sizeof(a));
	a.mr = c->mr[r];
	a.addr = ms_iova(r) + woff;
	a.length = wlen;
	a.access = RD | (zb ? MRKEY_ACCESS_ZERO_BASED : 0);
	a.key_byte = c->next_byte[i]++;
	a.qpn = QPN_BASE + i;
	atomic_fetch_add(&c->seq, 1); /* odd: a bind in progress */
	rc = mrkey_mw_bind(c->mw[i], &a, &key);
	if (rc == 0) {
		memset(&b, 0, sizeof(b));
		b.key = key;
		b.region = (uint8_t)r;
		b.type2 = type2;
		b.zb = zb;
		b.woff = (uint16_t)woff;
		b.wlen = (uint16_t)wlen;
		b.window = (uint8_t)i;
		ms_log(c, &b);
	}
	atomic_fetch_add(&c->seq, 1);
	if (rc != 0 || key == 0 || key != mrkey_mw_rkey(c->mw[i]) ||
	    (type2 && (key & 0xff) != a.key_byte)) {
		atomic_fetch_add(&c->bad_writer, 1);
		return;
	}
	c->bound_to[i] = (int)r;
	ms_set_hint(c, i, ms_pack(key, r, woff, wlen, zb, true));
	atomic_fetch_add(&c->binds, 1);
}

static void ms_unbind_one(struct ms_ctx *c, unsigned int i)
{
	struct mrkey_mw_bind_attr a;
	uint32_t key = mrkey_mw_rkey(c->mw[i]), k = 0;
	int rc;

	if (i & 1) {
		rc = mrkey_key_invalidate(c->t, c->pd, key);
		atomic_fetch_add(&c->invals, 1);
	} else {
		memset(&a, 0, sizeof(a));
		rc = mrkey_mw_bind(c->mw[i], &a, &k);
		atomic_fetch_add(&c->unbinds, 1);
	}
	if (rc)
		atomic_fetch_add(&c->bad_writer, 1);
	c->bound_to[i] = -1;
}

static void ms_realloc(struct ms_ctx *c, unsigned int i)
{
	struct mrkey_mw *mw = NULL;

	if (mrkey_mw_dealloc(c->mw[i]))
		atomic_fetch_add(&c->bad_writer, 1);
	c->bound_to[i] = -1;
	c->mw[i] = NULL;
	if (mrkey_mw_alloc(c->t, c->pd,
			   i & 1 ? MRKEY_MW_TYPE_2 : MRKEY_MW_TYPE_1, &mw)) {
		atomic_fetch_add(&c->bad_writer, 1);
		atomic_store(&c->stop, true);
		return;
	}
	c->mw[i] = mw;
	/* unbound: readers still try the key, which must not resolve */
	ms_set_hint(c, i, ms_pack(mrkey_mw_rkey(mw), 0, 0, 1, false, false));
	atomic_fetch_add(&c->deallocs, 1);
}

static void *ms_writer(void *arg)
{
	struct ms_ctx *c = arg;
	uint64_t seed = 0x6d77;
	unsigned int i, r, k;

	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		unsigned int op = (unsigned int)(tu_rand(&seed) % 16);

		i = (unsigned int)(tu_rand(&seed) % NW);
		if (!c->mw[i])
			break;
		if (atomic_load_explicit(&c->nlog, memory_order_relaxed) >=
		    LOG_CAP - 1) {
			/* the log is full: only unbind from now on */
			if (c->bound_to[i] >= 0)
				ms_unbind_one(c, i);
			sched_yield();
			continue;
		}
		if (op == 0) {
			ms_realloc(c, i); /* bound or not */
		} else if (op == 1) {
			/* a region with windows bound cannot go */
			r = (unsigned int)(tu_rand(&seed) % NREG);
			for (k = 0; k < NW; k++)
				if (c->bound_to[k] == (int)r)
					break;
			if (k < NW) {
				if (mrkey_mr_dereg(c->mr[r], 0) != -EBUSY ||
				    !mrkey_mr_published(c->mr[r]))
					atomic_fetch_add(&c->bad_writer, 1);
				atomic_fetch_add(&c->dereg_busy, 1);
			}
		} else if (c->bound_to[i] < 0) {
			ms_bind_one(c, i, &seed);
		} else if ((i & 1) || op < 6) {
			/* type 2 must be invalidated before a rebind */
			ms_unbind_one(c, i);
		} else {
			ms_bind_one(c, i, &seed); /* type 1 rebind */
		}
	}
	return NULL;
}

/* ---- the readers -------------------------------------------------------- */

/*
 * Whether binding @b admits a request through @via_qp with @qpn at @va
 * for @len bytes, and then gives exactly @got.
 */
static bool ms_binding_explains(const struct ms_bind *b, bool via_qp,
				uint32_t qpn, uint64_t va, uint32_t len,
				const unsigned char *got, bool *admitted)
{
	uint64_t base = b->zb ? 0 : ms_iova(b->region) + b->woff, q;
	uint32_t k;

	if (b->type2 && (!via_qp || qpn != QPN_BASE + (uint32_t)b->window))
		return false;
	if (va < base || va - base > b->wlen || len > b->wlen - (va - base))
		return false;
	*admitted = true;
	q = va - base;
	for (k = 0; k < len; k++)
		if (got[k] !=
		    ms_byte(b->region, (unsigned int)(b->woff + q + k)))
			return false;
	return true;
}

/* Look the key's bindings up; -1 not logged, 0 none explains, 1 one does. */
static int ms_explain(struct ms_ctx *c, uint32_t key, bool via_qp, uint32_t qpn,
		      uint64_t va, uint32_t len, const unsigned char *got,
		      bool *admitted)
{
	int32_t n = atomic_load_explicit(&c->head[ms_hash(key)],
					 memory_order_acquire);
	bool found = false;

	*admitted = false;
	while (n >= 0) {
		const struct ms_bind *b = &c->log[n];

		if (b->key == key) {
			found = true;
			if (ms_binding_explains(b, via_qp, qpn, va, len, got,
						admitted))
				return 1;
		}
		n = b->next;
	}
	return found ? 0 : -1;
}

static void ms_verify(struct ms_ctx *c, uint32_t key, bool via_qp, uint32_t qpn,
		      uint64_t va, uint32_t len, const unsigned char *got,
		      bool past_end)
{
	bool admitted;
	int e = ms_explain(c, key, via_qp, qpn, va, len, got, &admitted);

	if (e < 0) {
		/* maybe a bind in progress: wait until it is logged */
		while (atomic_load_explicit(&c->seq, memory_order_acquire) & 1)
			sched_yield();
		e = ms_explain(c, key, via_qp, qpn, va, len, got, &admitted);
	}
	if (e < 0)
		atomic_fetch_add(&c->unlogged, 1);
	else if (!admitted)
		atomic_fetch_add(&c->bad_admit, 1);
	else if (e == 0)
		atomic_fetch_add(&c->bad_bytes, 1);
	if (past_end && e > 0)
		atomic_fetch_add(&c->past_end_ok, 1); /* re-bound since */
	atomic_fetch_add(&c->checked, 1);
}

/* A window's isge: on one of the regions, flagged, @noref as asked. */
static bool ms_isge_ok(const struct ms_ctx *c, const struct mrkey_isge *is,
		       bool noref)
{
	unsigned int r;

	if (!(is->flags & MRKEY_ISGE_WINDOW) ||
	    !(is->flags & MRKEY_ISGE_NOREF) != !noref)
		return false;
	for (r = 0; r < NREG; r++)
		if (is->mr == c->mr[r])
			return true;
	return false;
}

static void *ms_reader(void *arg)
{
	struct ms_ctx *c = arg;
	uint64_t seed = (uint64_t)(uintptr_t)&seed;
	unsigned char got[REG_LEN];
	long reads = 0;

	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		unsigned int i = (unsigned int)(tu_rand(&seed) % NW);
		uint64_t h =
			atomic_load_explicit(&c->hint[i], memory_order_acquire);
		uint32_t key = (uint32_t)h, len, qpn = QPN_BASE + i;
		unsigned int r = (h >> 32) & 3, woff = (h >> 34) & 0x7ff;
		unsigned int wlen = (h >> 45) & 0x7ff, sel;
		bool zb = (h >> 56) & 1, via_qp, past_end = false;
		uint64_t q, va;
		struct mrkey_isge is;
		struct mrkey_sge_state ss;
		size_t n = 0;
		int rc;

		sel = (unsigned int)tu_rand(&seed);
		q = tu_rand(&seed) % wlen;
		len = 1 + (uint32_t)(tu_rand(&seed) % (wlen - q));
		if ((sel & 15) == 15) {
			/* one byte past the window's end */
			q = wlen - (tu_rand(&seed) % wlen);
			len = (uint32_t)(wlen - q + 1);
			past_end = true;
		}
		va = (zb ? 0 : ms_iova(r) + woff) + q;
		via_qp = (i & 1) || (sel & 0x10);
		if ((sel & 0x60) == 0x60)
			qpn++; /* another QP: type 2 is -EPERM */
		if (c->noref && (sel & 0x80)) {
			mrkey_read_lock_inline();
			rc = via_qp ? mrkey_rkey_check_qp(c->t, c->pd, qpn, key,
							  va, len, RD, &is) :
				      mrkey_rkey_check(c->t, c->pd, key, va,
						       len, RD, &is);
			if (rc == 0) {
				if (!ms_isge_ok(c, &is, true))
					atomic_fetch_add(&c->bad_isge, 1);
				mrkey_ss_init(&ss, &is, 1);
				n = mrkey_ss_copy_out(&ss, got, len);
			}
			mrkey_read_unlock_inline();
		} else {
			rc = via_qp ? mrkey_rkey_ok_qp(c->t, c->pd, qpn, key,
						       va, len, RD, &is) :
				      mrkey_rkey_ok(c->t, c->pd, key, va, len,
						    RD, &is);
			if (rc == 0) {
				mrkey_ss_init(&ss, &is, 1);
				if (!ms_isge_ok(c, &is, false))
					atomic_fetch_add(&c->bad_isge, 1);
				n = mrkey_ss_copy_out(&ss, got, sizeof(got));
				mrkey_ss_put(&ss);
			}
		}
		if (rc == 0) {
			if (n != len)
				atomic_fetch_add(&c->bad_bytes, 1);
			else
				ms_verify(c, key, via_qp, qpn, va, len, got,
					  past_end);
			reads++;
		} else if (rc != -ENOENT && rc != -ERANGE && rc != -EPERM) {
			atomic_fetch_add(&c->bad_rc, 1);
		}
	}
	atomic_fetch_add(&c->reads, reads);
	return NULL;
}

/* ---- the test ------------------------------------------------------------ */

/* Counter @f of @c is 0 (some: above 0), named in the message. */
#define MS_ZERO(c, f)                                                          \
	do {                                                                   \
		long v_ = atomic_load(&(c)->f);                                \
		ck_assert_msg(v_ == 0, "%s: %ld", #f, v_);                     \
	} while (0)
#define MS_SOME(c, f)                                                          \
	do {                                                                   \
		long v_ = atomic_load(&(c)->f);                                \
		ck_assert_msg(v_ > 0, "%s: %ld, none", #f, v_);                \
	} while (0)

static double ms_seconds(void)
{
	return tu_stress_seconds(1.2, 0.8);
}

static void ms_run(enum mrkey_refcount_mode mode, unsigned int flags,
		   enum mrkey_key_layout layout)
{
	struct mrkey_table_attr attr;
	struct ms_ctx *c = calloc(1, sizeof(*c));
	pthread_t w, rd[NREADERS];
	unsigned int i, r, k, nbound;

	ck_assert_ptr_nonnull(c);
	c->log = calloc(LOG_CAP, sizeof(*c->log));
	ck_assert_ptr_nonnull(c->log);
	for (i = 0; i < (1u << HASH_BITS); i++)
		atomic_init(&c->head[i], -1);
	tu_attr_init(&attr, 5, MRKEY_KEYGEN_RANDOM, layout);
	attr.refcount = mode;
	attr.flags = flags;
	c->t = tu_table_new_attr(&attr);
	c->pd = tu_pd_new(c->t, 0);
	c->noref = flags & MRKEY_TABLE_NOREF;
	for (r = 0; r < NREG; r++) {
		struct mrkey_seg segs[2];
		struct mrkey_mr_attr a;

		/* two segments, the second half first in memory */
		for (k = 0; k < REG_LEN; k++)
			c->mem[r][(k + HALF) % REG_LEN] = ms_byte(r, k);
		segs[0].addr = c->mem[r] + HALF;
		segs[0].length = HALF;
		segs[1].addr = c->mem[r];
		segs[1].length = HALF;
		memset(&a, 0, sizeof(a));
		a.pd = c->pd;
		a.addr = a.iova = ms_iova(r);
		a.length = REG_LEN;
		a.access = MRKEY_ACCESS_MW_BIND | MRKEY_ACCESS_LOCAL_WRITE;
		a.segs = segs;
		a.nsegs = 2;
		ck_assert_int_eq(mrkey_mr_reg(c->t, &a, &c->mr[r]), 0);
	}
	for (i = 0; i < NW; i++) {
		ck_assert_int_eq(mrkey_mw_alloc(c->t, c->pd,
						i & 1 ? MRKEY_MW_TYPE_2 :
							MRKEY_MW_TYPE_1,
						&c->mw[i]),
				 0);
		c->bound_to[i] = -1;
		atomic_init(&c->hint[i], ms_pack(mrkey_mw_rkey(c->mw[i]), 0, 0,
						 1, false, false));
	}

	ck_assert_int_eq(pthread_create(&w, NULL, ms_writer, c), 0);
	for (i = 0; i < NREADERS; i++)
		ck_assert_int_eq(pthread_create(&rd[i], NULL, ms_reader, c), 0);
	tu_sleep_ms((unsigned int)(ms_seconds() * 1000));
	atomic_store(&c->stop, true);
	pthread_join(w, NULL);
	for (i = 0; i < NREADERS; i++)
		pthread_join(rd[i], NULL);

	if (getenv("MRKEY_MW_STRESS_VERBOSE"))
		fprintf(stderr,
			"mw_stress: %ld binds %ld unbinds %ld invalidations "
			"%ld deallocs %ld busy deregs; %ld reads, %ld checked, "
			"%ld past-end reads explained by a rebinding\n",
			atomic_load(&c->binds), atomic_load(&c->unbinds),
			atomic_load(&c->invals), atomic_load(&c->deallocs),
			atomic_load(&c->dereg_busy), atomic_load(&c->reads),
			atomic_load(&c->checked), atomic_load(&c->past_end_ok));
	MS_ZERO(c, bad_writer);
	MS_ZERO(c, bad_rc);
	MS_ZERO(c, unlogged);
	MS_ZERO(c, bad_admit);
	MS_ZERO(c, bad_bytes);
	MS_ZERO(c, bad_isge);
	MS_SOME(c, binds);
	MS_SOME(c, reads);
	MS_SOME(c, checked);
	/* Each region holds handle + table + one per window bound. */
	for (r = 0; r < NREG; r++) {
		nbound = 0;
		for (i = 0; i < NW; i++)
			nbound += c->bound_to[i] == (int)r;
		ck_assert_uint_eq(mrkey_mr_refcount(c->mr[r]), 2 + nbound);
	}
	for (i = 0; i < NW; i++)
		ck_assert_int_eq(mrkey_mw_dealloc(c->mw[i]), 0);
	for (r = 0; r < NREG; r++) {
		ck_assert_uint_eq(mrkey_mr_refcount(c->mr[r]), 2);
		ck_assert_int_eq(mrkey_mr_dereg(c->mr[r], 0), 0);
	}
	tu_pd_del(c->pd);
	tu_table_del(c->t);
	free(c->log);
	free(c);
}

START_TEST(mw_stress_atomic)
{
	ms_run(MRKEY_REFCOUNT_ATOMIC, 0, MRKEY_LAYOUT_QIB);
}
END_TEST

START_TEST(mw_stress_percpu)
{
	ms_run(MRKEY_REFCOUNT_PERCPU, 0, MRKEY_LAYOUT_INDEX8);
}
END_TEST

START_TEST(mw_stress_noref)
{
	ms_run(MRKEY_REFCOUNT_ATOMIC, MRKEY_TABLE_NOREF, MRKEY_LAYOUT_QIB);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mw_stress");
	TCase *tc = tu_tcase("mw_stress");

	tcase_add_test(tc, mw_stress_atomic);
	tcase_add_test(tc, mw_stress_percpu);
	tcase_add_test(tc, mw_stress_noref);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
