/* SPDX-License-Identifier: MIT */
/*
 * Concurrency stress. Reader threads, created with plain pthread_create()
 * and never registered anywhere, validate live and stale keys and hold the
 * references across deregistrations; writer threads churn registrations
 * (reg, dereg with timeout 0 and retry on -EBUSY, timed dereg, and
 * dereg_async) on memory the test owns.
 *
 * Each registration gets a fresh epoch E; its bytes are a pattern derived
 * from E and the offset, written before registration, and a small backend
 * attaches E to the region (mrkey_mr_set_backend_data() in key_publish,
 * before the key is visible). Every region has the same addr and iova, so
 * only the key decides which region a validation finds. A success must
 * find a region whose key is the one asked for, and the bytes at
 * isge.vaddr must be the pattern of that region's epoch for as long as the
 * reference is held: a wrong key resolving, a translation error or a use
 * after free (a buffer recycled for a later epoch while a reference is
 * still held) shows up as a mismatch. A writer only recycles a buffer after
 * mrkey_mr_dereg() returned 0 or the async callback ran.
 *
 * Runs for a fixed wall time: MRKEY_STRESS_SECONDS (default 4 per case, 2
 * under sanitizers or valgrind).
 */
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

#define REGION_LEN 4096u
#define HALF (REGION_LEN / 2)
#define NREC 48 /* records per writer */
#define NWRITERS 2
#define NREADERS 3
#define ANN 256 /* announced (epoch, key) pairs, live or stale */
#define MAXHOLD 16

enum rec_state {
	R_FREE,
	R_LIVE,
	R_BUSY,
	R_ASYNC
};

struct rec {
	unsigned char *buf;
	struct mrkey_seg segs[2];
	struct mrkey_mr *mr;
	uint64_t epoch;
	uint32_t key;
	enum rec_state state;
	atomic_int drained; /* done callbacks run for this registration */
};

struct stress {
	struct mrkey_table *t;
	int noref; /* MRKEY_TABLE_NOREF: readers also use the checks */
	struct mrkey_pd *pd, *pd2;
	double deadline;
	atomic_int stop;
	atomic_uint_fast64_t epoch;
	atomic_uint_fast64_t ann[ANN];
	atomic_uint ann_next;
	struct rec recs[NWRITERS][NREC];

	atomic_long errors;
	atomic_flag msg_taken;
	char msg[256];

	atomic_long regs, enomem, deregs, busy, asyncs;
	atomic_long ok, enoent, reissued, copies, held_checks, random_hits;
	atomic_long noref_ok;
};

/* Record an error; the test thread asserts on the count and first text. */
__attribute__((format(printf, 2, 3))) static void
stress_err(struct stress *s, const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&s->errors, 1) == 0 &&
	    !atomic_flag_test_and_set(&s->msg_taken)) {
		va_start(ap, fmt);
		vsnprintf(s->msg, sizeof(s->msg), fmt, ap);
		va_end(ap);
	}
}

static unsigned char pat(uint64_t epoch, uint64_t off)
{
	uint32_t h = (uint32_t)(epoch * 2654435761u) ^ (uint32_t)(off * 7);

	return (unsigned char)(h ^ (h >> 11) ^ (off >> 8));
}

/* seg 0 is the upper half of buf, seg 1 the lower: translation matters. */
static unsigned char *rec_host(struct rec *r, uint64_t off)
{
	return off < HALF ? r->buf + HALF + off : r->buf + (off - HALF);
}

/* Every region's addr and iova. */
#define RA 0x100000ull
#define RI 0x7f0000000000ull

/* ---- a backend that tags each region with its epoch --------------------- */

static _Thread_local uint64_t cur_epoch;

static int tag_publish(void *ctx, struct mrkey_mr *mr, uint32_t key)
{
	(void)ctx;
	(void)key;
	mrkey_mr_set_backend_data(mr, (void *)(uintptr_t)cur_epoch);
	return 0;
}

static void tag_unpublish(void *ctx, struct mrkey_mr *mr, uint32_t key)
{
	(void)ctx;
	(void)mr;
	(void)key;
}

static const struct mrkey_backend_ops tag_ops = {
	.key_publish = tag_publish,
	.key_unpublish = tag_unpublish,
	.name = "stress-tag",
};

static uint64_t epoch_of(const struct mrkey_mr *mr)
{
	return (uint64_t)(uintptr_t)mrkey_mr_backend_data(mr);
}

/* ---- writers ----------------------------------------------------------- */

static void async_done(struct mrkey_mr *mr, void *arg)
{
	struct rec *r = arg;

	(void)mr;
	atomic_fetch_add_explicit(&r->drained, 1, memory_order_release);
}

static void rec_fill(struct rec *r)
{
	uint64_t o;

	for (o = 0; o < REGION_LEN; o++)
		*rec_host(r, o) = pat(r->epoch, o);
}

static void writer_reg(struct stress *s, struct rec *r)
{
	struct mrkey_mr_attr a;
	struct mrkey_sge sge;
	struct mrkey_isge isge;
	int rc;

	r->epoch = atomic_fetch_add(&s->epoch, 1) + 1;
	rec_fill(r);
	cur_epoch = r->epoch;
	memset(&a, 0, sizeof(a));
	a.pd = s->pd;
	a.addr = RA;
	a.iova = RI;
	a.length = REGION_LEN;
	a.access = MRKEY_ACCESS_ALL;
	a.segs = r->segs;
	a.nsegs = 2;
	rc = mrkey_mr_reg(s->t, &a, &r->mr);
	if (rc == -ENOMEM) {
		atomic_fetch_add(&s->enomem, 1);
		return;
	}
	if (rc) {
		stress_err(s, "reg: %d (epoch %llu)", rc,
			   (unsigned long long)r->epoch);
		return;
	}
	atomic_fetch_add(&s->regs, 1);
	atomic_store(&r->drained, 0);
	r->key = mrkey_mr_lkey(r->mr);
	r->state = R_LIVE;
	atomic_store(&s->ann[atomic_fetch_add(&s->ann_next, 1) % ANN],
		     (r->epoch << 32) | r->key);

	/* Our own live region always validates. */
	sge.addr = a.addr + HALF - 1;
	sge.length = 2;
	sge.lkey = r->key;
	rc = mrkey_lkey_ok(s->t, s->pd, &sge, MRKEY_ACCESS_LOCAL_WRITE, &isge);
	if (rc) {
		stress_err(s, "live key %#x (epoch %llu) did not validate: %d",
			   r->key, (unsigned long long)r->epoch, rc);
		return;
	}
	if (isge.mr != r->mr || epoch_of(isge.mr) != r->epoch ||
	    *(unsigned char *)isge.vaddr != pat(r->epoch, HALF - 1))
		stress_err(s, "live key %#x (epoch %llu): wrong region or byte",
			   r->key, (unsigned long long)r->epoch);
	mrkey_isge_put(&isge);
}

static void writer_dereg(struct stress *s, struct rec *r, uint64_t rnd)
{
	unsigned int how = rnd % 10;
	int rc;

	if (how < 3) {
		r->state = R_ASYNC;
		rc = mrkey_mr_dereg_async(r->mr, async_done, r);
		if (rc)
			stress_err(s, "dereg_async: %d (epoch %llu)", rc,
				   (unsigned long long)r->epoch);
		atomic_fetch_add(&s->asyncs, 1);
		return;
	}
	rc = mrkey_mr_dereg(r->mr, how == 3 ? 2 : 0);
	if (rc == 0) {
		atomic_fetch_add(&s->deregs, 1);
		r->state = R_FREE;
		r->mr = NULL;
	} else if (rc == -EBUSY) {
		atomic_fetch_add(&s->busy, 1);
		r->state = R_BUSY;
	} else {
		stress_err(s, "dereg: %d (epoch %llu)", rc,
			   (unsigned long long)r->epoch);
	}
}

struct writer {
	struct stress *s;
	int id;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct stress *s = w->s;
	uint64_t rs = 1000 + (uint64_t)w->id;
	unsigned long n = 0;

	while (!atomic_load(&s->stop)) {
		struct rec *r = &s->recs[w->id][tu_rand(&rs) % NREC];
		int d;

		if ((++n & 63) == 0 && tu_now_ms() > s->deadline)
			break;
		switch (r->state) {
		case R_FREE:
			writer_reg(s, r);
			break;
		case R_LIVE:
		case R_BUSY:
			writer_dereg(s, r, tu_rand(&rs));
			break;
		case R_ASYNC:
			d = atomic_load_explicit(&r->drained,
						 memory_order_acquire);
			if (d > 1)
				stress_err(s, "done ran %d times (epoch %llu)",
					   d, (unsigned long long)r->epoch);
			if (d) {
				r->state = R_FREE;
				r->mr = NULL;
			}
			break;
		}
	}
	return NULL;
}

/* ---- readers ----------------------------------------------------------- */

struct held {
	struct mrkey_isge isge;
	uint64_t epoch, off;
	uint32_t key;
};

struct reader {
	struct stress *s;
	int id;
	struct held hold[MAXHOLD];
	unsigned int nhold, maxhold;
};

/* The bytes an isge for (epoch, off) shows must be epoch's pattern. */
static void check_bytes(struct stress *s, const struct mrkey_isge *isge,
			uint64_t epoch, uint64_t off, uint32_t len)
{
	const unsigned char *p = isge->vaddr;
	uint32_t n = isge->length < len ? isge->length : len, j;

	if (n > 16)
		n = 16;
	if (n == 0) {
		stress_err(
			s,
			"isge with no contiguous bytes (epoch %llu off %llu)",
			(unsigned long long)epoch, (unsigned long long)off);
		return;
	}
	for (j = 0; j < n; j++)
		if (p[j] != pat(epoch, off + j)) {
			stress_err(s,
				   "epoch %llu offset %llu: byte %#x is wrong "
				   "(wrong region or freed memory)",
				   (unsigned long long)epoch,
				   (unsigned long long)(off + j), p[j]);
			return;
		}
}

static void release_one(struct reader *rd, struct held *h)
{
	/* Still ours while the reference is held. */
	check_bytes(rd->s, &h->isge, h->epoch, h->off, 1);
	atomic_fetch_add(&rd->s->held_checks, 1);
	mrkey_isge_put(&h->isge);
}

static void copy_check(struct stress *s, struct mrkey_isge *isge,
		       uint64_t epoch, uint64_t off, uint32_t len)
{
	struct mrkey_sge_state ss;
	unsigned char out[64];
	uint32_t j;
	size_t n;

	mrkey_ss_init(&ss, isge, 1);
	n = mrkey_ss_copy_out(&ss, out, len);
	if (n != len)
		stress_err(s, "copy_out moved %zu of %u bytes", n, len);
	for (j = 0; j < n; j++)
		if (out[j] != pat(epoch, off + j)) {
			stress_err(s,
				   "copy_out epoch %llu offset %llu: byte %#x",
				   (unsigned long long)epoch,
				   (unsigned long long)(off + j), out[j]);
			break;
		}
	mrkey_ss_put(&ss);
	atomic_fetch_add(&s->copies, 1);
}

/*
 * A success: the region must carry the key asked for and show its own
 * epoch's bytes. Returns the region's epoch, 0 after an error.
 */
static uint64_t check_found(struct stress *s, const struct mrkey_isge *isge,
			    uint32_t key, uint64_t off, uint32_t len)
{
	uint64_t found;

	if (mrkey_mr_lkey(isge->mr) != key) {
		stress_err(s, "asked key %#x, got the region of %#x", key,
			   mrkey_mr_lkey(isge->mr));
		return 0;
	}
	found = epoch_of(isge->mr);
	if (!found) {
		stress_err(s, "key %#x: region without its epoch tag", key);
		return 0;
	}
	if (isge->sge_length != len)
		stress_err(s, "sge_length %u, want %u", isge->sge_length, len);
	check_bytes(s, isge, found, off, len);
	return found;
}

/*
 * Reference-free check inside a read-side section: the memory must stay
 * the region's own until the section ends, since a deregistration that
 * races with the check waits for the section (sge.h).
 */
static void noref_probe(struct stress *s, uint32_t key, uint64_t off,
			uint32_t len, int remote)
{
	struct mrkey_isge isge;
	uint64_t found;
	int rc, k;

	mrkey_read_lock();
	if (remote) {
		rc = mrkey_rkey_check(s->t, s->pd, key, RI + off, len,
				      MRKEY_ACCESS_REMOTE_READ, &isge);
	} else {
		struct mrkey_sge sge = { RA + off, len, key };

		rc = mrkey_lkey_check(s->t, s->pd, &sge, 0, &isge);
	}
	if (rc == 0) {
		if (!(isge.flags & MRKEY_ISGE_NOREF))
			stress_err(s, "check: isge without MRKEY_ISGE_NOREF");
		found = check_found(s, &isge, key, off, len);
		/* Linger a little: a racing dereg has to wait for us. */
		for (k = 0; found && k < 3; k++) {
			sched_yield();
			check_bytes(s, &isge, found, off, len);
		}
		atomic_fetch_add(&s->noref_ok, 1);
	} else if (rc != -ENOENT) {
		stress_err(s, "check key %#x: %d", key, rc);
	}
	mrkey_read_unlock();
}

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	struct stress *s = rd->s;
	uint64_t rs = 77 + (uint64_t)rd->id;

	while (!atomic_load(&s->stop)) {
		uint64_t x = atomic_load(&s->ann[tu_rand(&rs) % ANN]);
		uint64_t r = tu_rand(&rs), epoch = x >> 32, off, found;
		uint32_t key = (uint32_t)x, len;
		struct mrkey_isge isge;
		int rc, remote = r & 1, random_key = 0;

		if (!x)
			continue;
		len = 1 + (uint32_t)((r >> 16) % 64);
		if ((r >> 24) % 4 == 0)
			off = HALF - 1 - (r >> 32) % 40; /* across segments */
		else
			off = (r >> 32) % (REGION_LEN - len);
		if (off + len > REGION_LEN)
			off = REGION_LEN - len;

		if ((r >> 8) % 32 == 0) {
			/* A PD with no regions: never a success. */
			rc = mrkey_rkey_ok(s->t, s->pd2, key, RI + off, len, 0,
					   &isge);
			if (rc != -ENOENT && rc != -EPERM)
				stress_err(s, "PD without regions, key %#x: %d",
					   key, rc);
			if (rc == 0)
				mrkey_isge_put(&isge);
			continue;
		}
		if ((r >> 8) % 32 == 1) {
			/* Any key at all: succeeds only for a live one. */
			key = (uint32_t)(r >> 32) ^ (uint32_t)(r << 7);
			random_key = 1;
		}
		if (s->noref && (r >> 44) % 2 == 0) {
			noref_probe(s, key, off, len, remote);
			continue;
		}
		if (remote) {
			rc = mrkey_rkey_ok(s->t, s->pd, key, RI + off, len,
					   MRKEY_ACCESS_REMOTE_READ, &isge);
		} else {
			struct mrkey_sge sge = { RA + off, len, key };

			rc = mrkey_lkey_ok(s->t, s->pd, &sge, 0, &isge);
		}
		if (rc == -ENOENT) {
			atomic_fetch_add(&s->enoent, 1);
			continue;
		}
		if (rc) {
			stress_err(s, "validate key %#x epoch %llu: %d", key,
				   (unsigned long long)epoch, rc);
			continue;
		}
		atomic_fetch_add(&s->ok, 1);
		found = check_found(s, &isge, key, off, len);
		if (random_key)
			atomic_fetch_add(&s->random_hits, 1);
		else if (found && found != epoch)
			atomic_fetch_add(&s->reissued, 1); /* key came back */
		if (!found || (r >> 40) % 4 == 0) {
			if (found)
				copy_check(s, &isge, found, off, len);
			else
				mrkey_isge_put(&isge);
			continue;
		}
		/* Hold it; let the oldest go. */
		if (rd->nhold == rd->maxhold) {
			release_one(rd, &rd->hold[0]);
			memmove(&rd->hold[0], &rd->hold[1],
				(rd->nhold - 1) * sizeof(rd->hold[0]));
			rd->nhold--;
		}
		rd->hold[rd->nhold].isge = isge;
		rd->hold[rd->nhold].epoch = found;
		rd->hold[rd->nhold].off = off;
		rd->hold[rd->nhold].key = key;
		rd->nhold++;
	}
	while (rd->nhold)
		release_one(rd, &rd->hold[--rd->nhold]);
	return NULL;
}

/* ---- the test ---------------------------------------------------------- */

static double stress_seconds(void)
{
	return tu_stress_seconds(3.0, 1.5);
}

static void run_stress(unsigned int bits, enum mrkey_key_layout layout,
		       unsigned int flags)
{
	struct stress *s = calloc(1, sizeof(*s));
	struct writer w[NWRITERS];
	struct reader *rd = calloc(NREADERS, sizeof(*rd));
	pthread_t wt[NWRITERS], rt[NREADERS];
	unsigned char *mem;
	struct mrkey_table_attr attr;
	struct rec *r;
	int i, j, rc;

	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_nonnull(rd);
	mem = malloc((size_t)NWRITERS * NREC * REGION_LEN);
	ck_assert_ptr_nonnull(mem);
	tu_attr_init(&attr, bits, MRKEY_KEYGEN_RANDOM, layout);
	attr.backend = &tag_ops;
	attr.flags = flags;
	s->noref = !!(flags & MRKEY_TABLE_NOREF);
	s->t = tu_table_new_attr(&attr);
	s->pd = tu_pd_new(s->t, 0);
	s->pd2 = tu_pd_new(s->t, 0);
	atomic_flag_clear(&s->msg_taken);
	for (i = 0; i < NWRITERS; i++)
		for (j = 0; j < NREC; j++) {
			r = &s->recs[i][j];
			r->buf = mem + ((size_t)i * NREC + j) * REGION_LEN;
			r->segs[0].addr = r->buf + HALF;
			r->segs[0].length = HALF;
			r->segs[1].addr = r->buf;
			r->segs[1].length = HALF;
			r->state = R_FREE;
		}
	s->deadline = tu_now_ms() + stress_seconds() * 1000;

	for (i = 0; i < NREADERS; i++) {
		rd[i].s = s;
		rd[i].id = i;
		rd[i].maxhold = 1 + (unsigned int)i * 7 % MAXHOLD;
		ck_assert_int_eq(
			pthread_create(&rt[i], NULL, reader_main, &rd[i]), 0);
	}
	for (i = 0; i < NWRITERS; i++) {
		w[i].s = s;
		w[i].id = i;
		ck_assert_int_eq(
			pthread_create(&wt[i], NULL, writer_main, &w[i]), 0);
	}
	for (i = 0; i < NWRITERS; i++)
		pthread_join(wt[i], NULL);
	atomic_store(&s->stop, 1);
	for (i = 0; i < NREADERS; i++)
		pthread_join(rt[i], NULL);

	/*
	 * No reference is left: everything drains at once. Async
	 * deregistrations may still wait for a grace period (PERCPU).
	 */
	mrkey_reclaim_wait();
	for (i = 0; i < NWRITERS; i++)
		for (j = 0; j < NREC; j++) {
			r = &s->recs[i][j];
			if (r->state == R_LIVE || r->state == R_BUSY) {
				ck_assert_uint_eq(mrkey_mr_refcount(r->mr),
						  r->state == R_LIVE ? 2 : 1);
				rc = mrkey_mr_dereg(r->mr, 10000);
				ck_assert_msg(rc == 0, "final dereg: %d", rc);
			} else if (r->state == R_ASYNC) {
				ck_assert_int_eq(atomic_load(&r->drained), 1);
			}
		}
	tu_pd_del(s->pd);
	tu_pd_del(s->pd2);
	tu_table_del(s->t);

	fprintf(stderr,
		"stress b=%u layout=%d refcount=%d flags=%u: %ld regs, "
		"%ld enomem, %ld deregs, %ld busy, %ld async; %ld ok, "
		"%ld enoent, %ld reissued, %ld random hits, %ld copies, "
		"%ld held checks, %ld noref ok\n",
		bits, (int)layout, (int)tu_refmode, flags,
		atomic_load(&s->regs), atomic_load(&s->enomem),
		atomic_load(&s->deregs), atomic_load(&s->busy),
		atomic_load(&s->asyncs), atomic_load(&s->ok),
		atomic_load(&s->enoent), atomic_load(&s->reissued),
		atomic_load(&s->random_hits), atomic_load(&s->copies),
		atomic_load(&s->held_checks), atomic_load(&s->noref_ok));
	ck_assert_msg(atomic_load(&s->errors) == 0, "%ld errors, first: %s",
		      atomic_load(&s->errors), s->msg);
	ck_assert_int_gt(atomic_load(&s->regs), 0);
	ck_assert_int_gt(atomic_load(&s->ok), 0);
	free(mem);
	free(rd);
	free(s);
}

START_TEST(stress_qib)
{
	run_stress(6, MRKEY_LAYOUT_QIB, 0);
}
END_TEST

START_TEST(stress_index8)
{
	/* Few random bits per slot: stale keys come back often. */
	run_stress(5, MRKEY_LAYOUT_INDEX8, 0);
}
END_TEST

START_TEST(stress_noref)
{
	/* Readers mix referenced validation and reference-free checks. */
	run_stress(6, MRKEY_LAYOUT_QIB, MRKEY_TABLE_NOREF);
}
END_TEST

static void add_cases(Suite *s, enum mrkey_refcount_mode m)
{
	TCase *tc = tu_tcase_mode("stress", m);

	tcase_add_test(tc, stress_qib);
	tcase_add_test(tc, stress_index8);
	tcase_add_test(tc, stress_noref);
	suite_add_tcase(s, tc);
}

static Suite *stress_suite(void)
{
	Suite *s = suite_create("stress");

	add_cases(s, MRKEY_REFCOUNT_ATOMIC);
	add_cases(s, MRKEY_REFCOUNT_PERCPU);
	return s;
}

int main(void)
{
	return tu_run(stress_suite());
}
