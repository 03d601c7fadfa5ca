/* SPDX-License-Identifier: MIT */
/*
 * mrkey-bench: microbenchmarks of mrkey's hot paths against the designs a
 * user would otherwise pick, all measured in the same process and run.
 *
 * Method (docs/benchmarks.md has the long form): every run has a fixed
 * duration; threads are pinned and start together; a warm-up precedes the
 * measured window, and only operations inside the window count; each
 * (scenario, threads, regions) cell runs every implementation once per
 * repetition, in an order that rotates between repetitions, and the median
 * repetition is reported, with ratios against every baseline measured in
 * the same cell of the same run.
 */
#include <getopt.h>
#include <stdarg.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <mrkey/mrkey.h>

#include "baselines/rbtree.h"
#include "bench.h"

/* ---- notes --------------------------------------------------------------- */

/* The progress line is on screen, without its newline. */
static int progress_shown;

static void progress_clear(void)
{
	if (progress_shown) {
		fputs("\r\033[K", stderr);
		progress_shown = 0;
	}
}

void bench_note(const char *fmt, ...)
{
	va_list ap;

	progress_clear();
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
}

/*
 * Progress, on a TTY only (a log or CI keeps just the notes): cells done of
 * the total, and the time left if the cells still to run take as long as
 * those done so far did on average.
 */
void bench_cell_done(struct bench_ctx *c)
{
	double spent, left;

	c->cells_done++;
	if (!c->progress || !c->cells_total)
		return;
	spent = (double)(bench_now_ns() - c->t_cells) / 1e9;
	left = c->cells_done < c->cells_total ?
		       spent / (double)c->cells_done *
			       (double)(c->cells_total - c->cells_done) :
		       0;
	progress_clear();
	fprintf(stderr,
		"mrkey-bench: %zu/%zu cells, %.0f s so far, about %.0f s left",
		c->cells_done, c->cells_total, spent, left);
	fflush(stderr);
	progress_shown = 1;
}

/* --summary keeps stderr for errors and the progress line. */
static int rows_quiet;

void bench_row(const char *fmt, ...)
{
	va_list ap;

	if (rows_quiet)
		return;
	progress_clear();
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
}

/* ---- environments -------------------------------------------------------- */

void bench_region_cfg(const struct bench_ctx *c, size_t i,
		      struct bench_region_cfg *rc)
{
	/* Distinct addr and iova spaces, so an lkey/rkey mix-up fails. */
	rc->addr = 0x100000000000ull + (uint64_t)i * BENCH_REGION_LEN;
	rc->iova = 0x7e0000000000ull + (uint64_t)i * BENCH_REGION_LEN;
	rc->length = BENCH_REGION_LEN;
	rc->access = BENCH_ACCESS;
	rc->host = c->host;
}

int bench_env_setup(struct bench_ctx *c, struct bench_env *e,
		    const struct bench_impl *impl, unsigned int table_bits,
		    size_t nregions, int count_memory)
{
	return bench_env_setup_hint(c, e, impl, table_bits, nregions, nregions,
				    count_memory);
}

int bench_env_setup_hint(struct bench_ctx *c, struct bench_env *e,
			 const struct bench_impl *impl, unsigned int table_bits,
			 size_t nregions, size_t hint, int count_memory)
{
	struct bench_table_cfg cfg = {
		.table_bits = table_bits,
		.nregions = hint,
		.count_memory = count_memory,
	};
	struct bench_region_cfg rc;
	size_t i;
	int ret;

	memset(e, 0, sizeof(*e));
	e->impl = impl;
	e->table_bits = table_bits;
	ret = impl->create(&cfg, &e->t);
	if (ret)
		goto fail;
	e->hot = impl->hot ? impl->hot(e->t) : e->t;
	ret = impl->pd_alloc(e->t, &e->pd);
	if (ret)
		goto fail_table;
	e->mrs = calloc(nregions ? nregions : 1, sizeof(*e->mrs));
	e->keys = calloc(nregions ? nregions : 1, sizeof(*e->keys));
	if (!e->mrs || !e->keys) {
		ret = -ENOMEM;
		goto fail_pd;
	}
	for (i = 0; i < nregions; i++) {
		bench_region_cfg(c, i, &rc);
		ret = impl->reg(e->t, e->pd, &rc, &e->mrs[i], &e->keys[i]);
		if (ret)
			goto fail_pd;
		e->nmr++;
	}
	return 0;

fail_pd:
	bench_note("%s: setup of %zu regions failed at %zu: %s\n", impl->name,
		   nregions, e->nmr, mrkey_strerror(ret));
	while (e->nmr)
		impl->dereg(e->t, e->mrs[--e->nmr], 1000);
	impl->pd_free(e->t, e->pd);
fail_table:
	if (impl->quiesce)
		impl->quiesce(e->t);
	impl->destroy(e->t);
fail:
	free(e->mrs);
	free(e->keys);
	e->mrs = NULL;
	e->keys = NULL;
	e->broken = 1;
	bench_note("%s: table (bits %u) failed: %s\n", impl->name, table_bits,
		   mrkey_strerror(ret));
	return ret;
}

void bench_env_teardown(struct bench_ctx *c, struct bench_env *e)
{
	int ret;

	(void)c;
	if (e->broken || !e->impl)
		return;
	while (e->nmr) {
		ret = e->impl->dereg(e->t, e->mrs[e->nmr - 1], 5000);
		if (ret)
			bench_note("%s: dereg at teardown: %s\n", e->impl->name,
				   mrkey_strerror(ret));
		e->nmr--;
	}
	ret = e->impl->pd_free(e->t, e->pd);
	if (ret)
		bench_note("%s: pd_free: %s\n", e->impl->name,
			   mrkey_strerror(ret));
	if (e->impl->quiesce)
		e->impl->quiesce(e->t);
	ret = e->impl->destroy(e->t);
	if (ret)
		bench_note("%s: destroy: %s\n", e->impl->name,
			   mrkey_strerror(ret));
	free(e->mrs);
	free(e->keys);
	free(e->ops);
	memset(e, 0, sizeof(*e));
}

/* ---- runner -------------------------------------------------------------- */

struct bench_thread *bench_threads_new(int n)
{
	struct bench_thread *th = calloc((size_t)n, sizeof(*th));
	struct bench_progress *prog;
	int i;

	if (!th)
		return NULL;
	prog = bench_zalloc_aligned(sizeof(*prog) * (size_t)n);
	if (!prog) {
		free(th);
		return NULL;
	}
	for (i = 0; i < n; i++) {
		th[i].prog = &prog[i];
		th[i].cpu_slot = i;
		th[i].counted = 1;
	}
	return th;
}

void bench_threads_free(struct bench_thread *th)
{
	if (!th)
		return;
	free(th[0].prog);
	free(th);
}

static void *bench_thread_main(void *arg)
{
	struct bench_thread *th = arg;

	if (bench_pin_self(&th->c->cpus, th->cpu_slot))
		atomic_store(&th->c->pin_failed, 1);
	bench_ctl_arrive(th->ctl);
	th->fn(th);
	return NULL;
}

static void bench_snapshot(struct bench_thread *th, int n, const clockid_t *cid,
			   uint64_t *ops, uint64_t *aux, uint64_t *other,
			   uint64_t *cpu)
{
	int i;

	*ops = *aux = *other = *cpu = 0;
	for (i = 0; i < n; i++) {
		struct timespec ts;

		if (th[i].counted && !clock_gettime(cid[i], &ts))
			*cpu += (uint64_t)ts.tv_sec * 1000000000u +
				(uint64_t)ts.tv_nsec;
	}
	for (i = 0; i < n; i++) {
		uint64_t o = atomic_load_explicit(&th[i].prog->ops,
						  memory_order_relaxed);
		uint64_t a = atomic_load_explicit(&th[i].prog->aux,
						  memory_order_relaxed);

		if (th[i].counted) {
			*ops += o;
			*aux += a;
		} else {
			*other += o;
		}
	}
}

int bench_run(struct bench_ctx *c, struct bench_thread *th, int n,
	      struct bench_window *win)
{
	struct bench_ctl ctl;
	uint64_t o0, a0, x0, c0, o1, a1, x1, c1, t0, t1, m0, m1, p0, p1;
	clockid_t *cid = calloc((size_t)n, sizeof(*cid));
	int i, started = 0, ret = 0, counted = 0;

	if (!cid)
		return -ENOMEM;

	bench_ctl_init(&ctl);
	for (i = 0; i < n; i++) {
		th[i].c = c;
		th[i].ctl = &ctl;
		th[i].w.ctl = &ctl;
		th[i].w.prog = th[i].prog;
		th[i].w.errors = 0;
		atomic_store(&th[i].prog->ops, 0);
		atomic_store(&th[i].prog->aux, 0);
	}
	for (i = 0; i < n; i++) {
		ret = pthread_create(&th[i].tid, NULL, bench_thread_main,
				     &th[i]);
		if (ret) {
			bench_note("pthread_create: %s\n", strerror(ret));
			ret = -ret;
			break;
		}
		started++;
	}
	if (started == n) {
		bench_ctl_wait_ready(&ctl, n);
		for (i = 0; i < n; i++) {
			if (pthread_getcpuclockid(th[i].tid, &cid[i]))
				cid[i] = CLOCK_THREAD_CPUTIME_ID; /* ours: 0 */
			counted += th[i].counted;
		}
	}
	atomic_store_explicit(&ctl.phase,
			      ret ? BENCH_PHASE_STOP : BENCH_PHASE_RUN,
			      memory_order_release);
	if (!ret) {
		bench_sleep_ns((uint64_t)c->opt.warmup_ms * 1000000u);
		atomic_store(&ctl.measure, 1);
		m0 = bench_machine_busy_ns();
		p0 = bench_process_cpu_ns();
		t0 = bench_now_ns();
		bench_snapshot(th, n, cid, &o0, &a0, &x0, &c0);
		bench_sleep_ns((uint64_t)c->opt.duration_ms * 1000000u);
		bench_snapshot(th, n, cid, &o1, &a1, &x1, &c1);
		t1 = bench_now_ns();
		p1 = bench_process_cpu_ns();
		m1 = bench_machine_busy_ns();
		atomic_store(&ctl.measure, 0);
		atomic_store_explicit(&ctl.phase, BENCH_PHASE_STOP,
				      memory_order_release);
		win->ops = o1 - o0;
		win->aux = a1 - a0;
		win->other_ops = x1 - x0;
		win->ns = t1 - t0;
		win->cpu_ns = c1 - c0;
		win->other_share = 0;
		if (m0 && m1 > m0 + (p1 - p0)) {
			long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

			win->other_share = (double)(m1 - m0 - (p1 - p0)) /
					   ((double)win->ns *
					    (double)(ncpu > 0 ? ncpu : 1));
			if (win->other_share > 1)
				win->other_share = 1;
		}
		if (counted > bench_ncpus(c))
			counted = bench_ncpus(c);
		win->cpu_share = counted ? (double)(c1 - c0) /
						   ((double)win->ns * counted) :
					   0;
	}
	for (i = 0; i < started; i++)
		pthread_join(th[i].tid, NULL);
	win->errors = 0;
	for (i = 0; i < started; i++)
		win->errors += th[i].w.errors;
	free(cid);
	return ret;
}

/* ---- results ------------------------------------------------------------- */

struct bench_result *bench_result_add(struct bench_ctx *c)
{
	struct bench_result *r;

	if (c->nres == c->capres) {
		size_t cap = c->capres ? 2 * c->capres : 256;
		struct bench_result *n = realloc(c->res, cap * sizeof(*n));

		if (!n) {
			bench_note("out of memory\n");
			exit(1);
		}
		c->res = n;
		c->capres = cap;
	}
	r = &c->res[c->nres++];
	memset(r, 0, sizeof(*r));
	return r;
}

void bench_result_from_reps(struct bench_result *r, double *ns, int n)
{
	double med = bench_median(ns, (size_t)n);

	r->ns_per_op = med;
	r->mops = med > 0 ? 1e3 / med : 0;
	r->ns_lo = n ? ns[0] : 0;
	r->ns_hi = n ? ns[n - 1] : 0;
	r->reps = n;
}

/* ---- selection ----------------------------------------------------------- */

static int in_list(const char *list, const char *name)
{
	size_t len = strlen(name);
	const char *p = list;

	if (!list)
		return 1;
	while (*p) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);

		if (l == len && !strncmp(p, name, len))
			return 1;
		if (!e)
			break;
		p = e + 1;
	}
	return 0;
}

static int check_list(const char *list, const char *what,
		      int (*known)(const char *name))
{
	char buf[256];
	const char *p = list;
	int bad = 0;

	if (!list)
		return 0;
	while (*p) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);

		if (l >= sizeof(buf))
			l = sizeof(buf) - 1;
		memcpy(buf, p, l);
		buf[l] = 0;
		if (!known(buf)) {
			bench_note("mrkey-bench: --%s: unknown name '%s' "
				   "(see --list)\n",
				   what, buf);
			bad = 1;
		}
		if (!e)
			break;
		p = e + 1;
	}
	return bad;
}

static const struct bench_impl *const baseline_impls[] = {
	&bench_impl_floor,
	&bench_impl_qib2012,
	&bench_impl_rbtree_mutex,
	&bench_impl_lfht,
	NULL,
};

static int known_impl(const char *name)
{
	int i;

	for (i = 0; baseline_impls[i]; i++)
		if (!strcmp(baseline_impls[i]->name, name))
			return 1;
	for (i = 0; bench_mrkey_impls[i]; i++)
		if (!strcmp(bench_mrkey_impls[i]->name, name))
			return 1;
	return 0;
}

static int known_scenario(const char *name)
{
	size_t i;

	for (i = 0; i < bench_nscenarios; i++)
		if (!strcmp(bench_scenarios[i].name, name))
			return 1;
	return 0;
}

int bench_ncpus(const struct bench_ctx *c)
{
	return c->cpus.n > 0 ? c->cpus.n : 1;
}

int bench_thread_list(const struct bench_ctx *c, int *out, int max_threads)
{
	int n = 0, t;

	if (c->opt.nthreads) {
		for (t = 0; t < c->opt.nthreads; t++)
			if (c->opt.threads[t] <= max_threads)
				out[n++] = c->opt.threads[t];
		return n;
	}
	for (t = 1; t < max_threads && n < BENCH_MAX_LIST - 1; t *= 2)
		out[n++] = t;
	out[n++] = max_threads;
	return n;
}

/* ---- self-check ---------------------------------------------------------- */

/*
 * Before anything is timed, every implementation must give the same
 * answers to the same questions: the ratios are only fair if everybody
 * does the same checks. Zero-length requests are left out: mrkey follows
 * IBTA C9-88 and accepts them without a lookup, the 2012-era baselines
 * refuse them; neither path is timed.
 */
static int check_impl(struct bench_ctx *c, const struct bench_impl *impl)
{
	static const struct {
		uint32_t dkey;
		int other_pd, remote;
		int64_t doff;
		uint32_t len;
		unsigned int access;
		int want;
	} cases[] = {
		{ 0, 0, 1, 0, 64, MRKEY_ACCESS_REMOTE_READ, 0 },
		{ 0, 0, 0, 4096, 64, MRKEY_ACCESS_LOCAL_WRITE, 0 },
		{ 0, 0, 1, BENCH_REGION_LEN - 64, 64, 0, 0 },
		{ 0, 0, 1, BENCH_REGION_LEN - 63, 64, 0, -ERANGE },
		{ 0, 0, 0, -1, 64, 0, -ERANGE },
		{ 0, 0, 1, 0, 64, 0x100, -EINVAL },
		{ 0, 0, 1, 0, 64, MRKEY_ACCESS_REMOTE_ATOMIC, -EACCES },
		{ 0, 1, 1, 0, 64, MRKEY_ACCESS_REMOTE_READ, -EPERM },
		{ 0x100, 0, 1, 0, 64, MRKEY_ACCESS_REMOTE_READ, -ENOENT },
		{ 0x10000000, 0, 1, 0, 64, MRKEY_ACCESS_REMOTE_READ, -ENOENT },
	};
	struct bench_region_cfg rc;
	struct bench_env e;
	int bad = 0, ret;
	void *pd2, *vaddr;
	size_t i;

	if (bench_env_setup(c, &e, impl, 16, 4, 0))
		return -1;
	if (impl->pd_alloc(e.t, &pd2)) {
		bench_env_teardown(c, &e);
		return -1;
	}
	bench_region_cfg(c, 2, &rc);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct bench_op op = {
			.sge = {
				.addr = (cases[i].remote ? rc.iova : rc.addr) +
					(uint64_t)cases[i].doff,
				.length = cases[i].len,
				.lkey = (uint32_t)(e.keys[2] ^ cases[i].dkey),
			},
			.key = e.keys[2] ^ cases[i].dkey,
		};

		if (!cases[i].remote && (impl->flags & BENCH_IMPL_REMOTE_ONLY))
			continue;
		vaddr = NULL;
		ret = impl->validate(e.hot, cases[i].other_pd ? pd2 : e.pd, &op,
				     cases[i].access, cases[i].remote, &vaddr);
		if (ret != cases[i].want ||
		    (!ret && vaddr != (char *)c->host + cases[i].doff)) {
			bench_note("%s: check %zu: got %d (%s), want %d\n",
				   impl->name, i, ret, mrkey_strerror(ret),
				   cases[i].want);
			bad = 1;
		}
	}
	impl->pd_free(e.t, pd2);
	bench_env_teardown(c, &e);
	return bad;
}

/* ---- output -------------------------------------------------------------- */

static const struct bench_result *find_base(const struct bench_ctx *c,
					    const struct bench_result *r,
					    const char *base)
{
	size_t i;

	for (i = 0; i < c->nres; i++) {
		const struct bench_result *b = &c->res[i];

		if (!b->is_mem && b->threads == r->threads &&
		    b->regions == r->regions &&
		    !strcmp(b->scenario, r->scenario) &&
		    !strcmp(b->impl, base) && b->ns_per_op > 0)
			return b;
	}
	return NULL;
}

/* The <baseline> column heads, then the end of the line. */
static void print_base_names(const struct bench_ctx *c, FILE *f)
{
	int k;

	for (k = 0; k < c->nimpls; k++)
		if (c->impls[k]->flags & BENCH_IMPL_BASELINE)
			fprintf(f, " %13s", c->impls[k]->name);
	fprintf(f, "\n");
}

/* Row @r's ns/op over each baseline's in the same cell. */
static void print_ratios(const struct bench_ctx *c, FILE *f,
			 const struct bench_result *r)
{
	int k;

	for (k = 0; k < c->nimpls; k++) {
		const struct bench_result *b;

		if (!(c->impls[k]->flags & BENCH_IMPL_BASELINE))
			continue;
		b = find_base(c, r, c->impls[k]->name);
		if (b && r->ns_per_op > 0)
			fprintf(f, " %12.2fx", r->ns_per_op / b->ns_per_op);
		else
			fprintf(f, " %13s", "-");
	}
}

static void print_table(const struct bench_ctx *c, FILE *f)
{
	const char *prev = "";
	size_t i;

	fprintf(f,
		"\nns/op: median of %u runs (throughput rows: window x "
		"min(threads, CPUs) / operations); spread: (slowest - "
		"fastest) / median;\ncpu%%: CPU time the measured threads "
		"got / what they could have got (below ~95: other load, "
		"noisy row);\ncpu-ns: their CPU time per operation (blind "
		"to preemption; also blind to time asleep on a lock);\n"
		"<baseline> columns: this row's ns/op divided by that "
		"baseline's in the same cell (below 1 = faster).\n",
		c->opt.reps);
	for (i = 0; i < c->nres; i++) {
		const struct bench_result *r = &c->res[i];

		if (r->is_mem)
			continue;
		if (strcmp(prev, r->scenario)) {
			fprintf(f,
				"\n%-20s %3s %8s %-18s %9s %8s %6s %4s %4s %8s",
				"scenario", "thr", "regions", "impl", "ns/op",
				"Mops/s", "spread", "oth%", "cpu%", "cpu-ns");
			print_base_names(c, f);
			prev = r->scenario;
		}
		fprintf(f, "%-20s %3d %8zu %-18s %9.2f %8.2f %5.1f%%",
			r->scenario, r->threads, r->regions, r->impl,
			r->ns_per_op, r->mops,
			r->ns_per_op > 0 ?
				100.0 * (r->ns_hi - r->ns_lo) / r->ns_per_op :
				0.0);
		if (r->cpu_share > 0)
			fprintf(f, " %4.0f", 100.0 * r->other_share);
		else
			fprintf(f, " %4s", "-");
		if (r->cpu_share > 0)
			fprintf(f, " %4.0f", 100.0 * r->cpu_share);
		else
			fprintf(f, " %4s", "-");
		if (r->cpu_ns_per_op > 0)
			fprintf(f, " %8.2f", r->cpu_ns_per_op);
		else
			fprintf(f, " %8s", "-");
		print_ratios(c, f, r);
		if (r->extra_name)
			fprintf(f, "  %s=%.2f", r->extra_name, r->extra);
		if (r->errors)
			fprintf(f, "  ERRORS=%llu",
				(unsigned long long)r->errors);
		fprintf(f, "\n");
	}
	for (i = 0; i < c->nres; i++) {
		const struct bench_result *r = &c->res[i];

		if (!r->is_mem)
			continue;
		if (strcmp(prev, "memory")) {
			fprintf(f, "\n%-18s %9s %16s  %s\n", "memory",
				"B/region", "table B (bits)", "regions");
			prev = "memory";
		}
		fprintf(f, "%-18s %9.1f %11.0f (%2u)  %zu\n", r->impl,
			r->bytes_per_region, r->table_bytes, r->table_bits,
			r->regions);
	}
}

/*
 * --summary: one screen instead of the full table. For each scenario, its
 * first and last cell (one thread and the most threads; the largest
 * region count for lookup-random), mrkey's default mode against every
 * baseline of the same cell, and the bytes per region.
 */
static void print_summary_row(const struct bench_ctx *c, FILE *f,
			      const struct bench_result *r)
{
	fprintf(f, "%-19s %3d %8zu %9.1f", r->scenario, r->threads, r->regions,
		r->ns_per_op);
	print_ratios(c, f, r);
	fprintf(f, "%s\n", r->errors ? "  ERRORS" : "");
}

static void print_summary(const struct bench_ctx *c, FILE *f)
{
	const char *me = "mrkey";
	const struct bench_result *first = NULL, *last = NULL;
	size_t i;

	fprintf(f,
		"summary: %s's ns/op; <baseline>: that / the baseline's "
		"in this run (< 1 = faster)\n%-19s %3s %8s %9s",
		me, "scenario", "thr", "regions", "ns/op");
	print_base_names(c, f);
	for (i = 0; i <= c->nres; i++) {
		const struct bench_result *r = i < c->nres ? &c->res[i] : NULL;

		if (r && (r->is_mem || strcmp(r->impl, me)))
			continue;
		if (first && (!r || strcmp(r->scenario, first->scenario))) {
			print_summary_row(c, f, first);
			if (last != first)
				print_summary_row(c, f, last);
			first = NULL;
		}
		if (!r)
			break;
		if (!first)
			first = r;
		last = r;
	}
	for (i = 0; i < c->nres; i++) {
		const struct bench_result *r = &c->res[i];

		if (!r->is_mem || (!(r->impl_flags & BENCH_IMPL_BASELINE) &&
				   strcmp(r->impl, me)))
			continue;
		if (!first) {
			fprintf(f, "bytes per region:");
			first = r;
		}
		fprintf(f, " %s %.0f", r->impl, r->bytes_per_region);
	}
	if (first)
		fprintf(f, "\n");
}

static void write_json(const struct bench_ctx *c, const char *path)
{
	FILE *f = fopen(path, "w");
	size_t i;

	if (!f) {
		bench_note("%s: %s\n", path, strerror(errno));
		return;
	}
	fprintf(f, "[\n");
	for (i = 0; i < c->nres; i++) {
		const struct bench_result *r = &c->res[i];

		fprintf(f,
			"  {\"scenario\": \"%s\", \"impl\": \"%s\", "
			"\"threads\": %d, \"regions\": %zu, ",
			r->scenario, r->impl, r->threads, r->regions);
		if (r->is_mem) {
			fprintf(f,
				"\"ns_per_op\": null, \"mops\": null, "
				"\"bytes_per_region\": %.1f, "
				"\"table_bytes\": %.0f, \"table_bits\": %u}",
				r->bytes_per_region, r->table_bytes,
				r->table_bits);
		} else {
			fprintf(f,
				"\"ns_per_op\": %.3f, \"mops\": %.4f, "
				"\"ns_min\": %.3f, \"ns_max\": %.3f, "
				"\"reps\": %d, \"errors\": %llu, "
				"\"cpu_share\": %.3f, "
				"\"cpu_ns_per_op\": %.3f, "
				"\"other_share\": %.3f, \"retries\": %d",
				r->ns_per_op, r->mops, r->ns_lo, r->ns_hi,
				r->reps, (unsigned long long)r->errors,
				r->cpu_share, r->cpu_ns_per_op, r->other_share,
				r->retries);
			if (r->extra_name)
				fprintf(f, ", \"%s\": %.3f", r->extra_name,
					r->extra);
			fprintf(f, "}");
		}
		fprintf(f, "%s\n", i + 1 < c->nres ? "," : "");
	}
	fprintf(f, "]\n");
	if (fclose(f))
		bench_note("%s: %s\n", path, strerror(errno));
}

static void print_machine(const struct bench_ctx *c, FILE *f, int argc,
			  char **argv)
{
	char model[256] = "unknown", line[512];
	struct utsname u;
	FILE *ci = fopen("/proc/cpuinfo", "r");
	int i;

	if (ci) {
		while (fgets(line, sizeof(line), ci)) {
			char *p = strchr(line, ':');

			if (!strncmp(line, "model name", 10) && p) {
				snprintf(model, sizeof(model), "%s", p + 2);
				model[strcspn(model, "\n")] = 0;
				break;
			}
		}
		fclose(ci);
	}
	if (uname(&u))
		memset(&u, 0, sizeof(u));
	fprintf(f, "mrkey-bench, mrkey %s; cpu: %s; %d CPUs usable; %s %s\n",
		mrkey_version_string(), model, bench_ncpus(c), u.sysname,
		u.release);
	fprintf(f, "command:");
	for (i = 0; i < argc; i++)
		fprintf(f, " %s", argv[i]);
	fprintf(f,
		"\nduration %u ms, warm-up %u ms, %u reps per cell, "
		"runs redone above %u%% other load; mrkey allocator: %s, "
		"keys: %s\n",
		c->opt.duration_ms, c->opt.warmup_ms, c->opt.reps,
		c->opt.max_other,
		c->opt.allocator ? c->opt.allocator : "default",
		c->opt.seed ? "seeded xoshiro256**" : "arc4random");
}

/* ---- options ------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mrkey-bench [options]\n"
		"  --quick             short runs, fewer reps, no 1M regions "
		"(< 60 s)\n"
		"  --smoke             every scenario once, tiny (a few "
		"seconds; for CI)\n"
		"  --scenario LIST     comma list of scenarios (default all)\n"
		"  --impl LIST         comma list of implementations "
		"(default all)\n"
		"  --threads LIST      thread counts (default 1, 2, 4 .. "
		"2 x CPUs)\n"
		"  --regions LIST      lookup-random region counts "
		"(default 1024,65536,1048576)\n"
		"  --duration-ms N     measured window of one run "
		"(default 300, quick 40)\n"
		"  --warmup-ms N       warm-up before it (default 50, "
		"quick 10)\n"
		"  --reps N            runs per cell, median taken (default "
		"5, quick 3)\n"
		"  --wake-delay-us N   dereg-wake: hold time before the put "
		"(default 1000)\n"
		"  --max-other PCT     redo a run (twice at most) while other "
		"processes used\n"
		"                      more than PCT%% of the CPUs; redone runs "
		"take at most\n"
		"                      half the time of first runs (default "
		"20, 0 = never)\n"
		"  --allocator NAME    what mrkey's tables allocate with: "
		"default (the\n"
		"                      library's choice), libc "
		"(aligned_alloc/free), jemalloc\n"
		"                      (mallocx/sdallocx; jemalloc must be "
		"loaded, e.g. by\n"
		"                      LD_PRELOAD=libjemalloc.so.2)\n"
		"  --seed N            seed mrkey's tables' key generator "
		"(xoshiro256**);\n"
		"                      default 0: arc4random, as the "
		"library's default\n"
		"  --summary           print a one-screen summary, not the "
		"full table (and no\n"
		"                      per-row notes on stderr)\n"
		"  --json FILE         also write the rows as JSON\n"
		"  --list              list scenarios and implementations\n"
		"  --version           print mrkey's version\n"
		"  --help\n");
}

/*
 * Numbers are parsed strictly: digits only (no sign, no blanks, nothing
 * after them but an allowed K/M suffix), and within the option's range.
 * A bad value names the option and exits 2, before anything runs.
 */
struct num_opt {
	const char *name; /* without the dashes */
	uint64_t lo, hi;
	int base;   /* 10, or 0 to allow 0x... */
	int suffix; /* K = 2^10, M = 2^20 allowed */
};

static int bad_value(const struct num_opt *o, const char *val)
{
	fprintf(stderr,
		"mrkey-bench: --%s: '%s' is not a valid value (%llu..%llu)\n",
		o->name, val, (unsigned long long)o->lo,
		(unsigned long long)o->hi);
	return -1;
}

static int parse_num(const struct num_opt *o, const char *val, uint64_t *out)
{
	unsigned long long v;
	unsigned int shift = 0;
	char *end;

	if (*val < '0' || *val > '9')
		return bad_value(o, val);
	errno = 0;
	v = strtoull(val, &end, o->base);
	if (errno || end == val)
		return bad_value(o, val);
	if (o->suffix && (*end == 'K' || *end == 'k'))
		shift = 10, end++;
	else if (o->suffix && (*end == 'M' || *end == 'm'))
		shift = 20, end++;
	if (*end || v > (UINT64_MAX >> shift))
		return bad_value(o, val);
	v <<= shift;
	if (v < o->lo || v > o->hi)
		return bad_value(o, val);
	*out = v;
	return 0;
}

/* A comma list of numbers; returns how many, or -1 (reported). */
static int parse_num_list(const struct num_opt *o, const char *arg,
			  uint64_t *out, int max)
{
	char buf[64];
	int n = 0;

	for (;;) {
		const char *e = strchr(arg, ',');
		size_t l = e ? (size_t)(e - arg) : strlen(arg);

		if (n == max) {
			fprintf(stderr,
				"mrkey-bench: --%s: at most %d values\n",
				o->name, max);
			return -1;
		}
		if (l >= sizeof(buf))
			l = sizeof(buf) - 1;
		memcpy(buf, arg, l);
		buf[l] = 0;
		if (parse_num(o, buf, &out[n]))
			return -1;
		n++;
		if (!e)
			return n;
		arg = e + 1;
	}
}

static void list_all(void)
{
	size_t i;

	printf("scenarios:\n");
	for (i = 0; i < bench_nscenarios; i++)
		printf("  %-20s %s\n", bench_scenarios[i].name,
		       bench_scenarios[i].what);
	printf("implementations:\n");
	for (i = 0; baseline_impls[i]; i++)
		printf("  %-20s %s (baseline)\n", baseline_impls[i]->name,
		       baseline_impls[i]->design);
	for (i = 0; bench_mrkey_impls[i]; i++)
		printf("  %-20s %s\n", bench_mrkey_impls[i]->name,
		       bench_mrkey_impls[i]->design);
}

int main(int argc, char **argv)
{
	enum {
		O_QUICK = 256,
		O_SMOKE,
		O_SCEN,
		O_IMPL,
		O_THREADS,
		O_REGIONS,
		O_DUR,
		O_WARM,
		O_REPS,
		O_WAKE,
		O_OTHER,
		O_SEED, /* O_DUR .. O_SEED: in scalars[] below, in order */
		O_JSON,
		O_ALLOC,
		O_LIST,
		O_VERSION,
		O_SUMMARY,
		O_HELP
	};
	static const struct option lo[] = {
		{ "quick", no_argument, NULL, O_QUICK },
		{ "smoke", no_argument, NULL, O_SMOKE },
		{ "scenario", required_argument, NULL, O_SCEN },
		{ "impl", required_argument, NULL, O_IMPL },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "regions", required_argument, NULL, O_REGIONS },
		{ "duration-ms", required_argument, NULL, O_DUR },
		{ "warmup-ms", required_argument, NULL, O_WARM },
		{ "reps", required_argument, NULL, O_REPS },
		{ "wake-delay-us", required_argument, NULL, O_WAKE },
		{ "max-other", required_argument, NULL, O_OTHER },
		{ "json", required_argument, NULL, O_JSON },
		{ "allocator", required_argument, NULL, O_ALLOC },
		{ "seed", required_argument, NULL, O_SEED },
		{ "version", no_argument, NULL, O_VERSION },
		{ "summary", no_argument, NULL, O_SUMMARY },
		{ "list", no_argument, NULL, O_LIST },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	static struct bench_ctx ctx;
	struct bench_ctx *c = &ctx;
	static const struct num_opt o_threads = { "threads", 1, 1024, 10, 0 },
				    o_regions = { "regions", 1, 1u << 22, 10,
						  1 };
	/* UINT64_MAX: not given, the mode's default applies. */
	uint64_t dur = UINT64_MAX, warm = UINT64_MAX, reps = UINT64_MAX,
		 other = UINT64_MAX, wake = 1000, seed = 0;
	const struct {
		struct num_opt o;
		uint64_t *dst;
	} scalars[] = {
		{ { "duration-ms", 1, 600000, 10, 0 }, &dur },
		{ { "warmup-ms", 0, 600000, 10, 0 }, &warm },
		{ { "reps", 1, 101, 10, 0 }, &reps },
		{ { "wake-delay-us", 0, 1000000, 10, 0 }, &wake },
		{ { "max-other", 0, 100, 10, 0 }, &other },
		{ { "seed", 0, UINT64_MAX, 0, 0 }, &seed },
	};
	uint64_t nl[BENCH_MAX_LIST];
	uint64_t t_start;
	int o, i, n, failed = 0;

	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case O_QUICK:
			c->opt.quick = 1;
			break;
		case O_SMOKE:
			c->opt.quick = 2;
			break;
		case O_SCEN:
			c->opt.scenarios = optarg;
			break;
		case O_IMPL:
			c->opt.impls = optarg;
			break;
		case O_THREADS:
			n = parse_num_list(&o_threads, optarg, nl,
					   BENCH_MAX_LIST);
			if (n < 0)
				return 2;
			for (i = 0; i < n; i++)
				c->opt.threads[i] = (int)nl[i];
			c->opt.nthreads = n;
			break;
		case O_REGIONS:
			n = parse_num_list(&o_regions, optarg, nl,
					   BENCH_MAX_LIST);
			if (n < 0)
				return 2;
			for (i = 0; i < n; i++)
				c->opt.regions[i] = (size_t)nl[i];
			c->opt.nregions = n;
			break;
		case O_DUR:
		case O_WARM:
		case O_REPS:
		case O_WAKE:
		case O_OTHER:
		case O_SEED:
			if (parse_num(&scalars[o - O_DUR].o, optarg,
				      scalars[o - O_DUR].dst))
				return 2;
			break;
		case O_JSON:
			c->opt.json = optarg;
			break;
		case O_ALLOC:
			n = bench_mrkey_set_allocator(optarg);
			if (n == -ENOENT) {
				bench_note("mrkey-bench: --allocator: "
					   "jemalloc is not loaded in this "
					   "process (try LD_PRELOAD="
					   "libjemalloc.so.2)\n");
				return 2;
			}
			if (n) {
				fprintf(stderr,
					"mrkey-bench: --allocator: '%s' is "
					"not a valid value (default, libc, "
					"jemalloc)\n",
					optarg);
				return 2;
			}
			c->opt.allocator = optarg;
			break;
		case O_LIST:
			list_all();
			return 0;
		case O_VERSION:
			printf("mrkey-bench (mrkey %s)\n",
			       mrkey_version_string());
			return 0;
		case O_SUMMARY:
			c->opt.summary = 1;
			rows_quiet = 1;
			break;
		case O_HELP:
			usage(stdout);
			return 0;
		default:
			goto bad;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "mrkey-bench: unexpected argument '%s'\n",
			argv[optind]);
		return 2;
	}
	if (check_list(c->opt.scenarios, "scenario", known_scenario) ||
	    check_list(c->opt.impls, "impl", known_impl))
		return 2;

	/* quick: 1 = --quick, 2 = --smoke (does every path run at all?) */
	{
		static const unsigned int d[] = { 300, 40, 5 },
					  w[] = { 50, 10, 2 },
					  r[] = { 5, 3, 1 }, nr[] = { 3, 2, 1 };
		static const size_t mr[] = { 65536, 16384, 1024 };
		int q = c->opt.quick;

		c->opt.duration_ms = dur != UINT64_MAX ? (unsigned int)dur :
							 d[q];
		c->opt.warmup_ms = warm != UINT64_MAX ? (unsigned int)warm :
							w[q];
		c->opt.reps = reps != UINT64_MAX ? (unsigned int)reps : r[q];
		if (!c->opt.nregions) {
			c->opt.regions[0] = 1024;
			c->opt.regions[1] = 65536;
			c->opt.regions[2] = 1048576;
			c->opt.nregions = (int)nr[q];
		}
		c->opt.mem_regions = mr[q];
		c->opt.max_other = other != UINT64_MAX ? (unsigned int)other :
				   q == 2              ? 0 :
							 20;
		if (q == 2 && !c->opt.nthreads) {
			c->opt.threads[0] = 1;
			c->opt.threads[1] = 2;
			c->opt.nthreads = 2;
		}
	}

	c->opt.wake_delay_us = (unsigned int)wake;
	c->opt.seed = seed;
	bench_mrkey_set_seed(seed);
	bench_cpus_init(&c->cpus);
	for (i = 0; baseline_impls[i]; i++)
		if (in_list(c->opt.impls, baseline_impls[i]->name))
			c->impls[c->nimpls++] = baseline_impls[i];
	for (i = 0; bench_mrkey_impls[i] && c->nimpls < BENCH_MAX_IMPLS; i++)
		if (in_list(c->opt.impls, bench_mrkey_impls[i]->name))
			c->impls[c->nimpls++] = bench_mrkey_impls[i];
	if (posix_memalign(&c->host, 4096, BENCH_REGION_LEN))
		return 1;
	memset(c->host, 0, BENCH_REGION_LEN);

	print_machine(c, stdout, argc, argv);
	fflush(stdout);
	if (bench_rbtree_selftest()) {
		bench_note("red-black tree self-test failed\n");
		return 1;
	}
	for (i = 0; i < c->nimpls; i++)
		if (check_impl(c, c->impls[i])) {
			bench_note("%s: answers differ from mrkey's contract\n",
				   c->impls[i]->name);
			return 1;
		}

	c->progress = isatty(STDERR_FILENO);
	for (i = 0; i < (int)bench_nscenarios; i++)
		if (in_list(c->opt.scenarios, bench_scenarios[i].name))
			c->cells_total +=
				bench_scenario_cells(c, &bench_scenarios[i]);
	t_start = c->t_cells = bench_now_ns();
	for (i = 0; i < (int)bench_nscenarios; i++) {
		const struct bench_scenario *s = &bench_scenarios[i];

		if (!in_list(c->opt.scenarios, s->name))
			continue;
		bench_row("== %s\n", s->name);
		s->run(c, s);
	}
	progress_clear();
	if (atomic_load(&c->pin_failed))
		printf("note: sched_setaffinity failed; threads ran "
		       "unpinned\n");
	if (c->opt.summary)
		print_summary(c, stdout);
	else
		print_table(c, stdout);
	printf("\ntotal %.1f s (%.1f s of it redoing runs disturbed by other "
	       "load)\n",
	       (double)(bench_now_ns() - t_start) / 1e9,
	       (double)c->t_retry / 1e9);
	if (c->opt.json)
		write_json(c, c->opt.json);
	for (i = 0; i < (int)c->nres; i++)
		if (c->res[i].errors)
			failed = 1;
	if (failed)
		printf("FAILED: some operations failed (ERRORS rows above)\n");
	free(c->res);
	free(c->host);
	return failed;

bad:
	usage(stderr);
	return 2;
}
