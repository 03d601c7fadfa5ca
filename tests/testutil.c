/* SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define TU_HAVE_VALGRIND 1
#endif
#endif

struct tu_alloc_stats tu_stats;
enum mrkey_refcount_mode tu_refmode = MRKEY_REFCOUNT_ATOMIC;
unsigned char tu_scratch[4096];

/*
 * Every block carries a header in front of it, 64 bytes so that the
 * pointer handed out keeps any alignment up to 64.
 */
#define TU_HDR 64
#define TU_MAGIC 0x6d726b65795f6f6bull
#define TU_DEAD 0x6465616462656566ull

struct tu_hdr {
	uint64_t magic;
	size_t size;
};

static void *tu_alloc(void *ctx, size_t size, size_t align)
{
	long n = atomic_fetch_add(&tu_stats.calls, 1) + 1;
	long fail = atomic_load(&tu_stats.fail_at);
	struct tu_hdr *h;
	void *p;

	(void)ctx;
	if (align == 0 || (align & (align - 1)) || align > 64)
		atomic_fetch_add(&tu_stats.bad_align, 1);
	if ((fail && n == fail) || atomic_load(&tu_stats.fail_all)) {
		atomic_fetch_add(&tu_stats.failures, 1);
		return NULL;
	}
	if (posix_memalign(&p, TU_HDR, size + TU_HDR))
		return NULL;
	h = p;
	h->magic = TU_MAGIC;
	h->size = size;
	atomic_fetch_add(&tu_stats.live, 1);
	atomic_fetch_add(&tu_stats.live_bytes, (long)size);
	return (unsigned char *)p + TU_HDR;
}

static void tu_free(void *ctx, void *ptr, size_t size)
{
	struct tu_hdr *h;

	(void)ctx;
	if (!ptr)
		return;
	h = (struct tu_hdr *)((unsigned char *)ptr - TU_HDR);
	if (h->magic != TU_MAGIC) {
		atomic_fetch_add(&tu_stats.bad_ptr, 1);
		return;
	}
	if (h->size != size)
		atomic_fetch_add(&tu_stats.bad_size, 1);
	h->magic = TU_DEAD;
	atomic_fetch_sub(&tu_stats.live, 1);
	atomic_fetch_sub(&tu_stats.live_bytes, (long)h->size);
	free(h);
}

const struct mrkey_allocator tu_allocator = {
	.alloc = tu_alloc,
	.free = tu_free,
	.ctx = &tu_stats,
};

void tu_alloc_reset(void)
{
	atomic_store(&tu_stats.calls, 0);
	atomic_store(&tu_stats.live, 0);
	atomic_store(&tu_stats.live_bytes, 0);
	atomic_store(&tu_stats.fail_at, 0);
	atomic_store(&tu_stats.fail_all, 0);
	atomic_store(&tu_stats.failures, 0);
	atomic_store(&tu_stats.bad_size, 0);
	atomic_store(&tu_stats.bad_align, 0);
	atomic_store(&tu_stats.bad_ptr, 0);
}

void tu_alloc_fail_nth(long n)
{
	if (n <= 0)
		atomic_store(&tu_stats.fail_at, 0);
	else
		atomic_store(&tu_stats.fail_at,
			     atomic_load(&tu_stats.calls) + n);
}

void tu_alloc_check_clean(void)
{
	ck_assert_int_eq(atomic_load(&tu_stats.bad_size), 0);
	ck_assert_int_eq(atomic_load(&tu_stats.bad_align), 0);
	ck_assert_int_eq(atomic_load(&tu_stats.bad_ptr), 0);
}

void tu_attr_init(struct mrkey_table_attr *attr, unsigned int bits,
		  enum mrkey_keygen keygen, enum mrkey_key_layout layout)
{
	memset(attr, 0, sizeof(*attr));
	attr->table_bits = bits;
	attr->keygen = keygen;
	attr->layout = layout;
	attr->refcount = tu_refmode;
}

struct mrkey_table *tu_table_new_attr(const struct mrkey_table_attr *attr)
{
	struct mrkey_table *t = NULL;
	int rc = mrkey_table_create(attr, &t);

	ck_assert_msg(rc == 0, "mrkey_table_create: %d (%s)", rc,
		      mrkey_strerror(rc));
	ck_assert_ptr_nonnull(t);
	return t;
}

struct mrkey_table *tu_table_new(unsigned int bits, enum mrkey_keygen keygen,
				 enum mrkey_key_layout layout)
{
	struct mrkey_table_attr attr;

	tu_attr_init(&attr, bits, keygen, layout);
	return tu_table_new_attr(&attr);
}

void tu_table_del(struct mrkey_table *table)
{
	ck_assert_int_eq(mrkey_table_destroy(table), 0);
}

struct mrkey_pd *tu_pd_new(struct mrkey_table *table, unsigned int flags)
{
	struct mrkey_pd *pd = NULL;

	ck_assert_int_eq(mrkey_pd_alloc(table, flags, &pd), 0);
	ck_assert_ptr_nonnull(pd);
	return pd;
}

void tu_pd_del(struct mrkey_pd *pd)
{
	ck_assert_int_eq(mrkey_pd_free(pd), 0);
}

int tu_reg1(struct mrkey_table *table, struct mrkey_pd *pd, void *buf,
	    size_t len, uint64_t addr, uint64_t iova, unsigned int access,
	    struct mrkey_mr **mrp)
{
	struct mrkey_seg seg = { .addr = buf, .length = len };
	struct mrkey_mr_attr a = {
		.pd = pd,
		.addr = addr,
		.iova = iova,
		.length = len,
		.access = access,
		.segs = &seg,
		.nsegs = 1,
	};

	return mrkey_mr_reg(table, &a, mrp);
}

struct mrkey_mr *tu_reg1_ok(struct mrkey_table *table, struct mrkey_pd *pd,
			    void *buf, size_t len, uint64_t addr, uint64_t iova,
			    unsigned int access)
{
	struct mrkey_mr *mr = NULL;
	int rc = tu_reg1(table, pd, buf, len, addr, iova, access, &mr);

	ck_assert_msg(rc == 0, "mrkey_mr_reg: %d (%s)", rc, mrkey_strerror(rc));
	ck_assert_ptr_nonnull(mr);
	return mr;
}

void tu_dereg(struct mrkey_mr *mr)
{
	int rc = mrkey_mr_dereg(mr, 0);

	ck_assert_msg(rc == 0, "mrkey_mr_dereg: %d (%s)", rc,
		      mrkey_strerror(rc));
}

int tu_lkey_probe(struct mrkey_table *table, struct mrkey_pd *pd, uint32_t key,
		  uint64_t addr, uint32_t len, unsigned int access)
{
	struct mrkey_sge sge = { .addr = addr, .length = len, .lkey = key };
	struct mrkey_isge isge;
	int rc;

	memset(&isge, 0, sizeof(isge));
	rc = mrkey_lkey_ok(table, pd, &sge, access, &isge);
	if (rc == 0)
		mrkey_isge_put(&isge);
	return rc;
}

int tu_rkey_probe(struct mrkey_table *table, struct mrkey_pd *pd, uint32_t key,
		  uint64_t vaddr, uint32_t len, unsigned int access)
{
	struct mrkey_isge isge;
	int rc;

	memset(&isge, 0, sizeof(isge));
	rc = mrkey_rkey_ok(table, pd, key, vaddr, len, access, &isge);
	if (rc == 0)
		mrkey_isge_put(&isge);
	return rc;
}

unsigned long tu_free_slots(struct mrkey_table *table, struct mrkey_pd *pd,
			    unsigned long cap)
{
	struct mrkey_mr **mrs = calloc(cap + 1, sizeof(*mrs));
	unsigned long n = 0, i;
	int rc = 0;

	ck_assert_ptr_nonnull(mrs);
	while (n <= cap) {
		rc = tu_reg1(table, pd, tu_scratch, 64, 0x1000, 0x1000, 0,
			     &mrs[n]);
		if (rc)
			break;
		n++;
	}
	for (i = 0; i < n; i++)
		tu_dereg(mrs[i]);
	free(mrs);
	ck_assert_msg(rc == -ENOMEM, "filling the table ended with %d", rc);
	return n;
}

double tu_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void tu_sleep_ms(unsigned int ms)
{
	struct timespec ts = {
		.tv_sec = ms / 1000,
		.tv_nsec = (long)(ms % 1000) * 1000000L,
	};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

bool tu_slow_build(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	return true;
#else
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
	return true;
#endif
#endif
#ifdef TU_HAVE_VALGRIND
	if (RUNNING_ON_VALGRIND)
		return true;
#endif
	return false;
#endif
}

bool tu_under_valgrind(void)
{
#ifdef TU_HAVE_VALGRIND
	return RUNNING_ON_VALGRIND;
#else
	return false;
#endif
}

static void tu_mode_atomic(void)
{
	tu_refmode = MRKEY_REFCOUNT_ATOMIC;
}

static void tu_mode_percpu(void)
{
	tu_refmode = MRKEY_REFCOUNT_PERCPU;
}

TCase *tu_tcase_mode(const char *name, enum mrkey_refcount_mode mode)
{
	/* Check may keep the name pointer: give it static storage. */
	static char names[32][64];
	static unsigned int nnames;
	TCase *tc;

	if (mode == MRKEY_REFCOUNT_PERCPU) {
		char *buf = names[nnames++ % 32];

		snprintf(buf, sizeof(names[0]), "%s_percpu", name);
		tc = tcase_create(buf);
		tcase_add_unchecked_fixture(tc, tu_mode_percpu, tu_mode_atomic);
	} else {
		tc = tcase_create(name);
		tcase_add_unchecked_fixture(tc, tu_mode_atomic, NULL);
	}
	tcase_set_timeout(tc, TU_TIMEOUT);
	return tc;
}

TCase *tu_tcase(const char *name)
{
	return tu_tcase_mode(name, MRKEY_REFCOUNT_ATOMIC);
}

int tu_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

static int tu_fake_progress(void *ctx)
{
	struct tu_fake *f = ctx;
	struct mrkey_isge *isge;

	atomic_fetch_add(&f->progress, 1);
	isge = atomic_exchange(&f->progress_put, NULL);
	if (isge) {
		mrkey_isge_put(isge);
		return 1;
	}
	return 0;
}

static int tu_fake_publish(void *ctx, struct mrkey_mr *mr, uint32_t key)
{
	struct tu_fake *f = ctx;

	atomic_fetch_add(&f->publish, 1);
	f->pub_key = key;
	f->pub_mr = mr;
	return f->publish_err;
}

static void tu_fake_unpublish(void *ctx, struct mrkey_mr *mr, uint32_t key)
{
	struct tu_fake *f = ctx;

	atomic_fetch_add(&f->unpublish, 1);
	f->unpub_key = key;
	f->unpub_mr = mr;
}

static void tu_fake_release(void *ctx, struct mrkey_mr *mr)
{
	struct tu_fake *f = ctx;

	atomic_fetch_add(&f->release, 1);
	f->release_mr = mr;
	f->published_at_release = mrkey_mr_published(mr);
}

static int tu_fake_bind(void *ctx, struct mrkey_table *table)
{
	struct tu_fake *f = ctx;

	atomic_fetch_add(&f->bind, 1);
	f->bound = table;
	return f->bind_err;
}

static void tu_fake_unbind(void *ctx, struct mrkey_table *table)
{
	struct tu_fake *f = ctx;

	atomic_fetch_add(&f->unbind, 1);
	if (f->bound == table)
		f->bound = NULL;
}

const struct mrkey_backend_ops tu_fake_ops = {
	.progress = tu_fake_progress,
	.key_publish = tu_fake_publish,
	.key_unpublish = tu_fake_unpublish,
	.mr_release = tu_fake_release,
	.bind = tu_fake_bind,
	.unbind = tu_fake_unbind,
	.name = "fake",
};

void tu_fake_init(struct tu_fake *f)
{
	memset(f, 0, sizeof(*f));
	f->published_at_release = -1;
	atomic_store(&f->progress_put, NULL);
}

double tu_stress_seconds(double normal, double slow)
{
	const char *e = getenv("MRKEY_STRESS_SECONDS");
	double v;

	if (e && *e) {
		v = strtod(e, NULL);
		if (v > 0)
			return v;
	}
	return tu_slow_build() ? slow : normal;
}
