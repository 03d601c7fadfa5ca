/* SPDX-License-Identifier: MIT */
/*
 * Internals shared by the harness (main.c) and the scenarios
 * (scenarios.c): options, the set of implementations under test, the
 * per-implementation environment, the thread runner and the results.
 */
#ifndef MRKEY_BENCH_BENCH_H
#define MRKEY_BENCH_BENCH_H

#include "impl.h"

#define BENCH_MAX_IMPLS 16
#define BENCH_MAX_LIST 16

struct bench_opts {
	unsigned int duration_ms; /* measured window of one run */
	unsigned int warmup_ms;   /* run before the window opens */
	unsigned int reps;        /* runs per (cell, impl); median taken */
	unsigned int wake_delay_us;
	int quick;
	int summary; /* --summary: one screen of key ratios */
	const char *json;
	const char *allocator; /* --allocator, NULL = default */
	uint64_t seed;         /* --seed, 0 = the library's generator */
	const char *scenarios; /* comma list, NULL = all */
	const char *impls;     /* comma list, NULL = all */
	int threads[BENCH_MAX_LIST];
	int nthreads; /* 0 = 1, 2, 4 .. 2 x CPUs */
	size_t regions[BENCH_MAX_LIST];
	int nregions;           /* lookup-random's region counts */
	size_t mem_regions;     /* regions for the memory figure */
	unsigned int max_other; /* redo a run above this other load, % */
};

/* One row of output. */
struct bench_result {
	const char *scenario;
	const char *impl;
	unsigned int impl_flags;
	int threads;
	size_t regions;
	double ns_per_op; /* median over reps */
	double mops;
	double ns_lo, ns_hi; /* fastest and slowest rep */
	int reps;
	const char *extra_name; /* one more field, or NULL */
	double extra;
	double cpu_share;     /* median over reps; see bench_window */
	double cpu_ns_per_op; /* median over reps of cpu_ns / ops */
	double other_share;   /* median over reps; see bench_window */
	int retries;          /* runs redone because of other load */
	int is_mem;
	double bytes_per_region;
	double table_bytes;
	unsigned int table_bits;
	uint64_t errors; /* failed operations: a bug */
};

struct bench_ctx {
	struct bench_opts opt;
	struct bench_cpus cpus;
	const struct bench_impl *impls[BENCH_MAX_IMPLS];
	int nimpls;
	struct bench_result *res;
	size_t nres, capres;
	_Atomic int pin_failed;
	uint64_t t_first; /* ns spent in first attempts */
	uint64_t t_retry; /* ns spent in redone runs */
	size_t cells_total, cells_done;
	uint64_t t_cells; /* when the first cell started */
	int progress;     /* stderr is a TTY: draw the progress line */
	void *host;       /* backing memory every region shares */
};

/* A table of one implementation with live regions. */
struct bench_env {
	const struct bench_impl *impl;
	void *t;
	void *hot;
	void *pd;
	void **mrs;
	uint64_t *keys;
	size_t nmr;
	unsigned int table_bits;
	struct bench_op *ops; /* request ring for the hot loops */
	size_t nops;          /* a power of two */
	int broken;           /* setup failed: skip, report */
};

#define BENCH_REGION_LEN 65536u
#define BENCH_ACCESS                                                           \
	(MRKEY_ACCESS_LOCAL_WRITE | MRKEY_ACCESS_REMOTE_WRITE |                \
	 MRKEY_ACCESS_REMOTE_READ)

void bench_region_cfg(const struct bench_ctx *c, size_t i,
		      struct bench_region_cfg *rc);
int bench_env_setup(struct bench_ctx *c, struct bench_env *e,
		    const struct bench_impl *impl, unsigned int table_bits,
		    size_t nregions, int count_memory);
/* The same, sizing the table for @hint regions. */
int bench_env_setup_hint(struct bench_ctx *c, struct bench_env *e,
			 const struct bench_impl *impl, unsigned int table_bits,
			 size_t nregions, size_t hint, int count_memory);
void bench_env_teardown(struct bench_ctx *c, struct bench_env *e);

/* ---- runner ------------------------------------------------------------ */

struct bench_thread;
typedef void (*bench_thread_fn)(struct bench_thread *th);

struct bench_thread {
	pthread_t tid;
	struct bench_ctx *c;
	struct bench_ctl *ctl;
	int cpu_slot; /* pinned to allowed CPU cpu_slot % n */
	int counted;  /* its ops are the result */
	bench_thread_fn fn;
	struct bench_worker w;
	struct bench_progress *prog;
	struct bench_env *env;
	void *arg;
};

struct bench_window {
	uint64_t ops; /* counted threads, inside the window */
	uint64_t aux;
	uint64_t other_ops; /* uncounted threads (a writer) */
	uint64_t ns;
	uint64_t errors;
	/*
	 * CPU time the counted threads got in the window over what they
	 * could have got (window x min(threads, CPUs)): below 1 means
	 * something else ran on the CPUs, and the row is noisy.
	 */
	double cpu_share;
	uint64_t cpu_ns; /* CPU time of the counted threads */
	/*
	 * Share of all CPUs' time in the window that other processes (or
	 * the hypervisor) used: the machine's noise, whatever ours did.
	 */
	double other_share;
};

/* Starts @n threads (th[i].fn), waits for all at the start line, lets
 * them warm up, measures a window, stops and joins them. */
int bench_run(struct bench_ctx *c, struct bench_thread *th, int n,
	      struct bench_window *win);
/* Allocates @n zeroed threads with their progress lines. */
struct bench_thread *bench_threads_new(int n);
void bench_threads_free(struct bench_thread *th);

/* ---- results ----------------------------------------------------------- */

struct bench_result *bench_result_add(struct bench_ctx *c);
/* Fills ns/mops/lo/hi from per-rep ns values (sorted in place). */
void bench_result_from_reps(struct bench_result *r, double *ns, int n);
void bench_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A result as it comes in; silent with --summary. */
void bench_row(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- scenarios --------------------------------------------------------- */

struct bench_scenario {
	const char *name;
	const char *what;
	void (*run)(struct bench_ctx *c, const struct bench_scenario *s);
};

extern const struct bench_scenario bench_scenarios[];
size_t bench_scenario_cells(const struct bench_ctx *c,
			    const struct bench_scenario *s);
/* A cell is measured: count it, and redraw the progress line on a TTY. */
void bench_cell_done(struct bench_ctx *c);
extern const size_t bench_nscenarios;

/* The thread counts of a throughput scenario; returns how many. */
int bench_thread_list(const struct bench_ctx *c, int *out, int max_threads);
int bench_ncpus(const struct bench_ctx *c);

#endif /* MRKEY_BENCH_BENCH_H */
