/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the Check suites of mrkey's core.
 *
 * Every test builds its own table and tears it down, so a suite passes the
 * same way in Check's fork mode and with CK_FORK=no (valgrind, gdb). Helper
 * functions named tu_* assert with ck_assert and must only be called from
 * the thread running the test; worker threads record what they saw and the
 * test thread asserts on it afterwards.
 */
#ifndef MRKEY_TESTUTIL_H
#define MRKEY_TESTUTIL_H

#include <check.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <mrkey/mrkey.h>

/* Per test case timeout, seconds; generous so sanitizer runs fit. */
#define TU_TIMEOUT 300

#define TU_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- counting allocator ------------------------------------------------ */

/*
 * An allocator for struct mrkey_allocator that counts live allocations,
 * checks that free() is given the size alloc() was asked for, and can fail
 * one chosen allocation. Safe to call from any thread (the RCU callback
 * thread frees through it).
 */
struct tu_alloc_stats {
	atomic_long calls; /* alloc() calls so far */
	atomic_long live;  /* allocations not yet freed */
	atomic_long live_bytes;
	atomic_long fail_at;   /* value of calls that fails; 0 = never */
	atomic_int fail_all;   /* refuse every allocation */
	atomic_long failures;  /* allocations refused */
	atomic_long bad_size;  /* free() with a size alloc() was not asked */
	atomic_long bad_align; /* align not a power of two <= 64 */
	atomic_long bad_ptr;   /* free() of a pointer alloc() did not return */
};

extern struct tu_alloc_stats tu_stats;
extern const struct mrkey_allocator tu_allocator;

/* Zero every counter. */
void tu_alloc_reset(void);
/* Fail the n-th allocation from now (1 = the next one); 0 cancels. */
void tu_alloc_fail_nth(long n);
/* Assert that no allocator misuse was seen. */
void tu_alloc_check_clean(void);

/* ---- tables, PDs, regions ---------------------------------------------- */

void tu_attr_init(struct mrkey_table_attr *attr, unsigned int bits,
		  enum mrkey_keygen keygen, enum mrkey_key_layout layout);
/* Create a table or fail the test. */
struct mrkey_table *tu_table_new(unsigned int bits, enum mrkey_keygen keygen,
				 enum mrkey_key_layout layout);
struct mrkey_table *tu_table_new_attr(const struct mrkey_table_attr *attr);
/* Destroy a table, asserting 0. */
void tu_table_del(struct mrkey_table *table);
struct mrkey_pd *tu_pd_new(struct mrkey_table *table, unsigned int flags);
void tu_pd_del(struct mrkey_pd *pd);

/* Register one segment @p buf/@p len at @p addr/@p iova; returns the errno. */
int tu_reg1(struct mrkey_table *table, struct mrkey_pd *pd, void *buf,
	    size_t len, uint64_t addr, uint64_t iova, unsigned int access,
	    struct mrkey_mr **mrp);
/* Same, asserting success. */
struct mrkey_mr *tu_reg1_ok(struct mrkey_table *table, struct mrkey_pd *pd,
			    void *buf, size_t len, uint64_t addr, uint64_t iova,
			    unsigned int access);
/* Deregister with timeout 0, asserting 0. */
void tu_dereg(struct mrkey_mr *mr);

/*
 * Validate lkey @p key for @p len bytes at @p addr and drop the reference
 * at once; returns the errno of mrkey_lkey_ok().
 */
int tu_lkey_probe(struct mrkey_table *table, struct mrkey_pd *pd, uint32_t key,
		  uint64_t addr, uint32_t len, unsigned int access);
int tu_rkey_probe(struct mrkey_table *table, struct mrkey_pd *pd, uint32_t key,
		  uint64_t vaddr, uint32_t len, unsigned int access);

/*
 * Count how many more regions the table accepts before -ENOMEM (capped at
 * @p cap), then deregister them all. Every reg must return 0 or -ENOMEM.
 */
unsigned long tu_free_slots(struct mrkey_table *table, struct mrkey_pd *pd,
			    unsigned long cap);

/* ---- a fake backend ---------------------------------------------------- */

/* Records every backend op call; passed as backend_ctx. */
struct tu_fake {
	atomic_int publish, unpublish, release, progress, bind, unbind;
	int publish_err; /* returned by key_publish when not 0 */
	int bind_err;    /* returned by bind when not 0 */
	struct mrkey_table *bound;
	uint32_t pub_key, unpub_key;
	struct mrkey_mr *pub_mr, *unpub_mr, *release_mr;
	int published_at_release; /* mrkey_mr_published() seen by release */
	/* If set, progress() takes it and drops its reference. */
	struct mrkey_isge *_Atomic progress_put;
};

/* Every member set. */
extern const struct mrkey_backend_ops tu_fake_ops;

void tu_fake_init(struct tu_fake *f);

/* ---- misc -------------------------------------------------------------- */

/* Monotonic clock in milliseconds. */
double tu_now_ms(void);
void tu_sleep_ms(unsigned int ms);
/* Running under valgrind (one thread at a time). */
bool tu_under_valgrind(void);
/* True when running under a sanitizer or valgrind (slow builds). */
bool tu_slow_build(void);
/*
 * A stress test's wall time in seconds: MRKEY_STRESS_SECONDS when set to
 * a positive number, else @slow in slow builds (valgrind, sanitizers),
 * else @normal.
 */
double tu_stress_seconds(double normal, double slow);

/* A scratch buffer every helper-made region can point at. */
extern unsigned char tu_scratch[4096];

/* Small deterministic PRNG (splitmix64) for tests. */
static inline uint64_t tu_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/*
 * Reference-count mode tu_attr_init() puts in every table. Test cases made
 * by tu_tcase_mode() set it in an unchecked fixture, so the same tests run
 * once per mode.
 */
extern enum mrkey_refcount_mode tu_refmode;

/* New test case with the suite-wide timeout (atomic refcount mode). */
TCase *tu_tcase(const char *name);
/* Same, for refcount mode @p mode; the name gets a "_percpu" suffix. */
TCase *tu_tcase_mode(const char *name, enum mrkey_refcount_mode mode);
/* Run a suite, return the exit status for main(). */
int tu_run(Suite *s);

#endif /* MRKEY_TESTUTIL_H */
