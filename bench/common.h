/* SPDX-License-Identifier: MIT */
/*
 * Shared helpers of mrkey-bench: timing, pinning, the start/stop protocol
 * of worker threads, medians, a cheap RNG, a futex completion and counting
 * allocations. Everything here is measured identically for every
 * implementation, so nothing in it may depend on which one runs.
 *
 * The shape follows jemalloc's test/include/test/bench.h and ck's
 * regressions/common.h: programs with fixed durations, not timed tests.
 */
#ifndef MRKEY_BENCH_COMMON_H
#define MRKEY_BENCH_COMMON_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BENCH_CACHELINE 64
#define BENCH_ALIGNED _Alignas(BENCH_CACHELINE)

#define bench_container_of(ptr, type, member)                                  \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define bench_likely(x) __builtin_expect(!!(x), 1)
#define bench_unlikely(x) __builtin_expect(!!(x), 0)
#define bench_noinline __attribute__((noinline))

/* ---- time ------------------------------------------------------------ */

/*
 * CLOCK_MONOTONIC through the vDSO costs ~20 ns, so it is read only at the
 * edges of a measurement window, never per operation, except in the
 * latency scenarios where a single operation is the thing measured (and
 * takes microseconds).
 */
static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void bench_sleep_ns(uint64_t ns)
{
	struct timespec ts = {
		.tv_sec = (time_t)(ns / 1000000000u),
		.tv_nsec = (long)(ns % 1000000000u),
	};

	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
}

/* Busy-wait until @deadline: used where a sleep's wake-up jitter would
 * swamp the delay being set. */
static inline void bench_spin_until(uint64_t deadline)
{
	while (bench_now_ns() < deadline)
		;
}

static inline void bench_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/* ---- pinning --------------------------------------------------------- */

/* The CPUs this process may run on, in order; filled by bench_cpus_init. */
struct bench_cpus {
	int n;
	int cpu[CPU_SETSIZE];
};

static inline void bench_cpus_init(struct bench_cpus *c)
{
	cpu_set_t set;
	int i;

	c->n = 0;
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		for (i = 0; i < CPU_SETSIZE; i++)
			if (CPU_ISSET(i, &set))
				c->cpu[c->n++] = i;
	}
	if (c->n == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		for (i = 0; i < n && i < CPU_SETSIZE; i++)
			c->cpu[c->n++] = i;
	}
}

/*
 * Pin the calling thread to the @idx-th allowed CPU (modulo their number).
 * A container or a restricted cgroup may refuse: then the thread runs
 * unpinned, and the caller is told once so the output can say so.
 */
static inline int bench_pin_self(const struct bench_cpus *c, int idx)
{
	cpu_set_t set;

	if (c->n <= 0)
		return -EINVAL;
	CPU_ZERO(&set);
	CPU_SET(c->cpu[idx % c->n], &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		return -errno;
	return 0;
}

/* ---- start/stop of a measured run -------------------------------------- */

enum bench_phase {
	BENCH_PHASE_WAIT = 0, /* threads spin at the start line */
	BENCH_PHASE_RUN,      /* go: warm-up, then the measured window */
	BENCH_PHASE_STOP,     /* leave the loop */
};

/*
 * Per-thread published progress, on its own cache line. A worker adds to
 * its private counter and publishes it with a relaxed store every batch;
 * the controller reads every counter at the start and at the end of the
 * measured window. Throughput is the difference over the window, so the
 * ragged start and stop of the threads, and thread creation, never count.
 */
struct bench_progress {
	BENCH_ALIGNED _Atomic uint64_t ops;
	_Atomic uint64_t aux; /* scenario-defined (e.g. summed ns) */
};

struct bench_ctl {
	BENCH_ALIGNED _Atomic int phase;
	_Atomic int ready;   /* threads at the start line */
	_Atomic int measure; /* 1 inside the measured window */
};

static inline void bench_ctl_init(struct bench_ctl *ctl)
{
	atomic_store(&ctl->phase, BENCH_PHASE_WAIT);
	atomic_store(&ctl->ready, 0);
	atomic_store(&ctl->measure, 0);
}

/* Worker side: arrive at the start line and wait for the go. */
static inline void bench_ctl_arrive(struct bench_ctl *ctl)
{
	atomic_fetch_add_explicit(&ctl->ready, 1, memory_order_acq_rel);
	/* Yield: with more threads than CPUs the controller must run. */
	while (atomic_load_explicit(&ctl->phase, memory_order_acquire) ==
	       BENCH_PHASE_WAIT)
		sched_yield();
}

static inline int bench_ctl_stopped(const struct bench_ctl *ctl)
{
	return atomic_load_explicit(&ctl->phase, memory_order_relaxed) ==
	       BENCH_PHASE_STOP;
}

static inline int bench_ctl_measuring(const struct bench_ctl *ctl)
{
	return atomic_load_explicit(&ctl->measure, memory_order_relaxed);
}

static inline void bench_publish(struct bench_progress *p, uint64_t ops)
{
	atomic_store_explicit(&p->ops, ops, memory_order_relaxed);
}

static inline void bench_publish_aux(struct bench_progress *p, uint64_t ops,
				     uint64_t aux)
{
	atomic_store_explicit(&p->aux, aux, memory_order_relaxed);
	atomic_store_explicit(&p->ops, ops, memory_order_relaxed);
}

/* Controller side: wait until @n workers stand at the start line. */
static inline void bench_ctl_wait_ready(struct bench_ctl *ctl, int n)
{
	while (atomic_load_explicit(&ctl->ready, memory_order_acquire) < n)
		bench_sleep_ns(50000);
}

/* ---- other load ---------------------------------------------------------- */

/*
 * CPU time the whole machine spent busy (user, nice, system, irq, softirq,
 * steal: everything but idle and iowait), from /proc/stat, in ns. Minus
 * this process's CPU time over the same window, it is what other
 * processes (and the hypervisor, through steal) took from us. Resolution
 * is one clock tick (10 ms) per CPU; 0 if /proc/stat cannot be read.
 */
static inline uint64_t bench_machine_busy_ns(void)
{
	unsigned long long v[8] = { 0 };
	long hz = sysconf(_SC_CLK_TCK);
	FILE *f = fopen("/proc/stat", "r");
	int n;

	if (!f)
		return 0;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
		   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n < 7 || hz <= 0)
		return 0;
	/* user nice system [idle] [iowait] irq softirq steal */
	return (uint64_t)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) *
	       (1000000000ull / (uint64_t)hz);
}

static inline uint64_t bench_process_cpu_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts))
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- statistics ------------------------------------------------------ */

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Median of @n values; sorts @v in place. */
static inline double bench_median(double *v, size_t n)
{
	if (n == 0)
		return 0.0;
	qsort(v, n, sizeof(*v), bench_cmp_double);
	if (n & 1)
		return v[n / 2];
	return (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* The @q-quantile (0..1) of sorted @v, nearest rank. */
static inline double bench_quantile_sorted(const double *v, size_t n, double q)
{
	size_t i;

	if (n == 0)
		return 0.0;
	i = (size_t)(q * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

/* ---- RNG ------------------------------------------------------------- */

/* splitmix64: seeds and one-off draws. */
static inline uint64_t bench_splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* xorshift64*: a few cycles, for the baselines' random keys. */
static inline uint64_t bench_xorshift64s(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* ---- completion (futex) ------------------------------------------------ */

/*
 * What the seed's deregistration waits on (Linux struct completion): the
 * last put completes it, a waiter sleeps in the kernel until then. The
 * put only enters the kernel when somebody sleeps.
 */
struct bench_completion {
	_Atomic uint32_t state; /* 0 idle, 1 a waiter sleeps, 2 done */
};

static inline long bench_futex(_Atomic uint32_t *uaddr, int op, uint32_t val,
			       const struct timespec *ts)
{
	return syscall(SYS_futex, (uint32_t *)uaddr, op, val, ts, NULL, 0);
}

static inline void bench_completion_init(struct bench_completion *c)
{
	atomic_store_explicit(&c->state, 0, memory_order_relaxed);
}

static inline void bench_complete(struct bench_completion *c)
{
	if (atomic_exchange_explicit(&c->state, 2, memory_order_acq_rel) == 1)
		bench_futex(&c->state, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
}

/* Returns 1 when completed, 0 on timeout. */
static inline int bench_completion_wait(struct bench_completion *c,
					unsigned int timeout_ms)
{
	uint64_t deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;

	for (;;) {
		uint32_t s = 0;
		uint64_t now;
		struct timespec ts;

		if (!atomic_compare_exchange_strong_explicit(
			    &c->state, &s, 1, memory_order_acq_rel,
			    memory_order_acquire) &&
		    s == 2)
			return 1;
		now = bench_now_ns();
		if (now >= deadline)
			return atomic_load_explicit(&c->state,
						    memory_order_acquire) == 2;
		ts.tv_sec = (time_t)((deadline - now) / 1000000000u);
		ts.tv_nsec = (long)((deadline - now) % 1000000000u);
		bench_futex(&c->state, FUTEX_WAIT_PRIVATE, 1, &ts);
	}
}

/* ---- counted allocations ------------------------------------------------ */

/*
 * Every implementation's own allocations go through a counter, so that
 * "bytes per region" means the same for all of them: the bytes asked for,
 * not what the allocator rounds them up to (mrkey's are counted the same
 * way, through a counting struct mrkey_allocator).
 */
struct bench_counter {
	_Atomic size_t bytes;
};

static inline void *bench_calloc(struct bench_counter *c, size_t size)
{
	void *p = calloc(1, size);

	if (p && c)
		atomic_fetch_add_explicit(&c->bytes, size,
					  memory_order_relaxed);
	return p;
}

/* Zeroed, cache-line aligned, uncounted (tables' own structs). */
static inline void *bench_zalloc_aligned(size_t size)
{
	void *p;

	if (posix_memalign(&p, BENCH_CACHELINE, size))
		return NULL;
	memset(p, 0, size);
	return p;
}

static inline void bench_free(struct bench_counter *c, void *p, size_t size)
{
	if (!p)
		return;
	if (c)
		atomic_fetch_sub_explicit(&c->bytes, size,
					  memory_order_relaxed);
	free(p);
}

#endif /* MRKEY_BENCH_COMMON_H */
