/* SPDX-License-Identifier: MIT */
/*
 * The scenarios of mrkey-bench. Each sets up one table per implementation
 * (all alive at once, so each repetition can run every implementation
 * back to back), runs its cells and adds one result row per cell and
 * implementation.
 */
#include <mrkey/mrkey.h>

#include "bench.h"

#define DEREG_TIMEOUT_MS 5000u
#define BACKGROUND_REGIONS 1024u
#define LOOKUP_LEN 64u

static unsigned int ceil_log2(size_t n)
{
	unsigned int b = 0;

	while (((size_t)1 << b) < n)
		b++;
	return b;
}

static size_t pow2_at_least(size_t n)
{
	return (size_t)1 << ceil_log2(n);
}

/* Table size for @n live regions: at most half full, never below qib's
 * default of 16 bits. */
static unsigned int bits_for(size_t n)
{
	unsigned int b = ceil_log2(n) + 1;

	return b < 16 ? 16 : b;
}

/* Implementations without fast registration sit out these scenarios. */
#define SKIP_NO_FR 0x80000000u
#define SKIP_NO_MW 0x20000000u
/* Implementations with a fixed capacity sit out lookup-grow. */
#define SKIP_NO_GROW 0x40000000u

static int setup_all(struct bench_ctx *c, struct bench_env *envs,
		     unsigned int bits, size_t nregions, unsigned int skip)
{
	int k, ok = 0;

	for (k = 0; k < c->nimpls; k++) {
		uint64_t t0 = bench_now_ns();

		if ((c->impls[k]->flags & skip) ||
		    ((skip & SKIP_NO_FR) && !c->impls[k]->fr_alloc) ||
		    ((skip & SKIP_NO_MW) && !c->impls[k]->mw_bind) ||
		    ((skip & SKIP_NO_GROW) &&
		     !(c->impls[k]->flags & BENCH_IMPL_GROWS))) {
			memset(&envs[k], 0, sizeof(envs[k]));
			envs[k].broken = 1;
			continue;
		}
		if (!bench_env_setup(c, &envs[k], c->impls[k], bits, nregions,
				     0))
			ok++;
		if (nregions >= 100000)
			bench_row("  %s: %zu regions registered in %.2f s\n",
				  c->impls[k]->name, nregions,
				  (double)(bench_now_ns() - t0) / 1e9);
	}
	return ok;
}

static void teardown_all(struct bench_ctx *c, struct bench_env *envs)
{
	int k;

	for (k = 0; k < c->nimpls; k++)
		bench_env_teardown(c, &envs[k]);
}

/* ---- thread bodies ------------------------------------------------------- */

static void fn_rkey(struct bench_thread *th)
{
	th->env->impl->loop_rkey(&th->w);
}

static void fn_rkey_chain(struct bench_thread *th)
{
	th->env->impl->loop_rkey_chain(&th->w);
}

static void fn_lkey(struct bench_thread *th)
{
	th->env->impl->loop_lkey(&th->w);
}

static void fn_getput(struct bench_thread *th)
{
	th->env->impl->loop_getput(&th->w);
}

/* Register and deregister an idle region, again and again. */
static void fn_churn(struct bench_thread *th)
{
	const struct bench_impl *impl = th->env->impl;
	struct bench_region_cfg rc;
	uint64_t n = 0;
	uint64_t key;
	void *mr;

	bench_region_cfg(th->c, (size_t)(uintptr_t)th->arg, &rc);
	while (!bench_ctl_stopped(th->ctl)) {
		if (impl->reg(th->env->t, th->env->pd, &rc, &mr, &key)) {
			th->w.errors++;
			break;
		}
		if (impl->dereg(th->env->t, mr, DEREG_TIMEOUT_MS)) {
			th->w.errors++;
			break;
		}
		bench_publish(th->prog, ++n);
	}
}

/*
 * Grow the index: register fresh regions up to GROW_REGIONS, then
 * deregister them all (the index shrinks back), again and again. What
 * is left registered when the run stops is deregistered after it.
 */
#define GROW_REGIONS 1000000u

static void fn_grow(struct bench_thread *th)
{
	const struct bench_impl *impl = th->env->impl;
	void **mrs = calloc(GROW_REGIONS, sizeof(*mrs));
	size_t base = (size_t)(uintptr_t)th->arg, n = 0;
	struct bench_region_cfg rc;
	uint64_t ops = 0, key;

	if (!mrs) {
		th->w.errors++;
		return;
	}
	while (!bench_ctl_stopped(th->ctl)) {
		if (n < GROW_REGIONS) {
			bench_region_cfg(th->c, base + n, &rc);
			if (impl->reg(th->env->t, th->env->pd, &rc, &mrs[n],
				      &key)) {
				th->w.errors++;
				break;
			}
			n++;
		} else {
			while (n)
				if (impl->dereg(th->env->t, mrs[--n],
						DEREG_TIMEOUT_MS))
					th->w.errors++;
		}
		bench_publish(th->prog, ++ops);
	}
	while (n)
		if (impl->dereg(th->env->t, mrs[--n], DEREG_TIMEOUT_MS))
			th->w.errors++;
	free(mrs);
}

/* Fast-register and invalidate a region of this thread's, again and again. */
static void fn_fastreg(struct bench_thread *th)
{
	const struct bench_impl *impl = th->env->impl;
	struct bench_region_cfg rc;
	uint64_t n = 0;
	uint8_t byte = 0;
	void *mr;

	bench_region_cfg(th->c, (size_t)(uintptr_t)th->arg, &rc);
	if (impl->fr_alloc(th->env->t, th->env->pd, &mr)) {
		th->w.errors++;
		return;
	}
	while (!bench_ctl_stopped(th->ctl)) {
		if (impl->fr_cycle(th->env->t, th->env->pd, mr, &rc, ++byte)) {
			th->w.errors++;
			break;
		}
		bench_publish(th->prog, ++n);
	}
	if (impl->fr_free(th->env->t, mr))
		th->w.errors++;
}

/* Time the deregistration of an idle region. */
static void fn_dereg_idle(struct bench_thread *th)
{
	const struct bench_impl *impl = th->env->impl;
	struct bench_region_cfg rc;
	uint64_t n = 0, ns = 0, t0, t1;
	uint64_t key;
	void *mr;

	bench_region_cfg(th->c, (size_t)(uintptr_t)th->arg, &rc);
	while (!bench_ctl_stopped(th->ctl)) {
		if (impl->reg(th->env->t, th->env->pd, &rc, &mr, &key)) {
			th->w.errors++;
			break;
		}
		t0 = bench_now_ns();
		if (impl->dereg(th->env->t, mr, DEREG_TIMEOUT_MS)) {
			th->w.errors++;
			break;
		}
		t1 = bench_now_ns();
		ns += t1 - t0;
		bench_publish_aux(th->prog, ++n, ns);
	}
}

/* ---- throughput cells ---------------------------------------------------- */

enum cell_kind {
	CELL_RKEY,
	CELL_RKEY_CHAIN,
	CELL_LKEY,
	CELL_GETPUT,
	CELL_CHURN,
	CELL_FASTREG
};

struct cell {
	const char *scenario;
	enum cell_kind kind;
	int threads;    /* counted threads */
	int writer;     /* one more thread churning registrations */
	int grow;       /* the writer grows the index instead (fn_grow) */
	size_t regions; /* as reported */
};

static void prepare(struct bench_ctx *c, const struct cell *cell,
		    struct bench_env *e, struct bench_thread *th)
{
	int i;

	for (i = 0; i < cell->threads + cell->writer; i++) {
		struct bench_thread *t = &th[i];

		t->env = e;
		t->w.table = e->hot;
		t->w.pd = e->pd;
		t->w.ops = e->ops;
		t->w.mask = e->nops ? e->nops - 1 : 0;
		t->w.pos = e->nops ? (e->nops / (size_t)cell->threads) *
					     (size_t)i :
				     0;
		t->w.mr = e->nmr ? e->mrs[0] : NULL;
		t->arg = (void *)(uintptr_t)(e->nmr + 16 + (size_t)i);
		if (i >= cell->threads) {
			t->counted = 0;
			t->fn = cell->grow ? fn_grow : fn_churn;
			continue;
		}
		switch (cell->kind) {
		case CELL_RKEY:
			t->fn = fn_rkey;
			t->w.access = MRKEY_ACCESS_REMOTE_READ;
			break;
		case CELL_RKEY_CHAIN:
			t->fn = fn_rkey_chain;
			t->w.access = MRKEY_ACCESS_REMOTE_READ;
			break;
		case CELL_LKEY:
			t->fn = fn_lkey;
			t->w.access = MRKEY_ACCESS_LOCAL_WRITE;
			break;
		case CELL_GETPUT:
			t->fn = fn_getput;
			break;
		case CELL_CHURN:
			t->fn = fn_churn;
			break;
		case CELL_FASTREG:
			t->fn = fn_fastreg;
			break;
		}
	}
	(void)c;
}

/*
 * One run of @th, redone (twice at most) while other processes used more
 * than --max-other of the CPUs in its window; the least disturbed attempt
 * is kept. Redone runs may take at most half the time first runs took so
 * far, which bounds the whole benchmark at 1.5 times its undisturbed
 * length. The threads are reusable: bench_run() resets their progress.
 * Returns 0 with @best filled, or -1 if no attempt measured anything.
 */
static int run_best(struct bench_ctx *c, struct bench_thread *th, int nth,
		    struct bench_window *best, uint64_t *errors, int *redone)
{
	int tries = 0, have = 0;

	for (;;) {
		struct bench_window win;
		uint64_t t0 = bench_now_ns();
		int ret = bench_run(c, th, nth, &win);

		if (tries)
			c->t_retry += bench_now_ns() - t0;
		else
			c->t_first += bench_now_ns() - t0;
		*errors += win.errors;
		if (ret || !win.ops)
			break;
		if (!have || win.other_share < best->other_share) {
			*best = win;
			have = 1;
		}
		if (!c->opt.max_other ||
		    best->other_share * 100.0 <= c->opt.max_other ||
		    ++tries > 2 || c->t_retry * 2 >= c->t_first)
			break;
		(*redone)++;
	}
	return have ? 0 : -1;
}

/*
 * Runs @ncells cells that share their tables, interleaved: every
 * repetition runs each implementation in each cell back to back, so cells
 * meant to be compared with each other (with and without a writer) see the
 * same machine.
 */
static void run_cells(struct bench_ctx *c, const struct cell *cells, int ncells,
		      struct bench_env *envs)
{
	int nk = c->nimpls, reps = (int)c->opt.reps;
	size_t n = (size_t)(ncells * nk);
	double *ns = calloc(n * (size_t)reps, sizeof(*ns));
	double *wr = calloc(n * (size_t)reps, sizeof(*wr));
	double *cs = calloc(n * (size_t)reps, sizeof(*cs));
	double *cn = calloc(n * (size_t)reps, sizeof(*cn));
	double *os = calloc(n * (size_t)reps, sizeof(*os));
	uint64_t *err = calloc(n, sizeof(*err));
	int *got = calloc(n, sizeof(*got));
	int *redo = calloc(n, sizeof(*redo));
	int rep, j, k, ci;

	if (!ns || !wr || !cs || !cn || !os || !err || !got || !redo)
		goto out;
	for (rep = 0; rep < reps; rep++) {
		for (j = 0; j < nk; j++) {
			/* Rotate the order so no one always runs first. */
			k = (j + rep) % nk;
			if (envs[k].broken)
				continue;
			for (ci = 0; ci < ncells; ci++) {
				const struct cell *cell = &cells[ci];
				int nth = cell->threads + cell->writer;
				int conc = cell->threads < bench_ncpus(c) ?
						   cell->threads :
						   bench_ncpus(c);
				size_t x = (size_t)(ci * nk + k), at;
				struct bench_thread *th;
				struct bench_window win;

				th = bench_threads_new(nth);
				if (!th)
					continue;
				prepare(c, cell, &envs[k], th);
				at = x * (size_t)reps + (size_t)got[x];
				if (!run_best(c, th, nth, &win, &err[x],
					      &redo[x])) {
					ns[at] = (double)conc * (double)win.ns /
						 (double)win.ops;
					wr[at] = (double)win.other_ops * 1e3 /
						 (double)win.ns;
					cs[at] = win.cpu_share;
					cn[at] = (double)win.cpu_ns /
						 (double)win.ops;
					os[at] = win.other_share;
					got[x]++;
				}
				bench_threads_free(th);
			}
		}
	}
	for (ci = 0; ci < ncells; ci++) {
		const struct cell *cell = &cells[ci];

		for (k = 0; k < nk; k++) {
			size_t x = (size_t)(ci * nk + k);
			struct bench_result *r;
			double *v = &ns[x * (size_t)reps];

			if (envs[k].broken)
				continue;
			r = bench_result_add(c);
			r->scenario = cell->scenario;
			r->impl = c->impls[k]->name;
			r->impl_flags = c->impls[k]->flags;
			r->threads = cell->threads;
			r->regions = cell->regions;
			r->errors = err[x];
			bench_result_from_reps(r, v, got[x]);
			/* ns/op is per CPU in use; Mops/s is all threads'. */
			r->mops *= cell->threads < bench_ncpus(c) ?
					   cell->threads :
					   bench_ncpus(c);
			v = &cs[x * (size_t)reps];
			r->cpu_share = bench_median(v, (size_t)got[x]);
			v = &cn[x * (size_t)reps];
			r->cpu_ns_per_op = bench_median(v, (size_t)got[x]);
			v = &os[x * (size_t)reps];
			r->other_share = bench_median(v, (size_t)got[x]);
			r->retries = redo[x];
			if (cell->writer) {
				v = &wr[x * (size_t)reps];
				r->extra_name = "writer_mops";
				r->extra = bench_median(v, (size_t)got[x]);
			}
			bench_row(
				"  %-18s t=%-2d R=%-7zu %-18s %9.2f ns/op%s\n",
				cell->scenario, cell->threads, cell->regions,
				r->impl, r->ns_per_op,
				r->errors ? "  ERRORS" : "");
		}
		bench_cell_done(c);
	}
out:
	free(ns);
	free(wr);
	free(cs);
	free(cn);
	free(os);
	free(err);
	free(got);
	free(redo);
}

static void run_cell(struct bench_ctx *c, const struct cell *cell,
		     struct bench_env *envs)
{
	run_cells(c, cell, 1, envs);
}

/* One request, the same for every thread. */
static int one_op(struct bench_env *e, const struct bench_ctx *c, int local)
{
	struct bench_region_cfg rc;

	bench_region_cfg(c, 0, &rc);
	e->ops = calloc(1, sizeof(*e->ops));
	if (!e->ops)
		return -ENOMEM;
	e->nops = 1;
	e->ops[0].sge.addr = (local ? rc.addr : rc.iova) + 4096;
	e->ops[0].sge.length = LOOKUP_LEN;
	e->ops[0].sge.lkey = (uint32_t)e->keys[0];
	e->ops[0].key = e->keys[0];
	return 0;
}

/*
 * A ring of @nops requests over random regions, drawn from one fixed
 * seed, so every implementation sees the same sequence of regions and
 * offsets. Reading the ring is part of every implementation's loop,
 * the floor's included.
 */
static int random_ops(struct bench_env *e, const struct bench_ctx *c,
		      size_t nops, uint64_t seed)
{
	struct bench_region_cfg rc;
	size_t i;

	e->ops = calloc(nops, sizeof(*e->ops));
	if (!e->ops)
		return -ENOMEM;
	e->nops = nops;
	for (i = 0; i < nops; i++) {
		uint64_t x = bench_splitmix64(&seed);
		size_t idx = (size_t)((x >> 32) % e->nmr);
		uint64_t off =
			((x & 0xffffffffu) % (BENCH_REGION_LEN - LOOKUP_LEN)) &
			~63ull;

		bench_region_cfg(c, idx, &rc);
		e->ops[i].sge.addr = rc.iova + off;
		e->ops[i].sge.length = LOOKUP_LEN;
		e->ops[i].sge.lkey = (uint32_t)e->keys[idx];
		e->ops[i].key = e->keys[idx];
	}
	return 0;
}

/* ---- scenarios ----------------------------------------------------------- */

static void scen_lookup_same(struct bench_ctx *c,
			     const struct bench_scenario *s)
{
	struct bench_env envs[BENCH_MAX_IMPLS];
	int local = !strcmp(s->name, "lookup-same-lkey");
	int tl[BENCH_MAX_LIST], nt, i, k;

	setup_all(c, envs, 16, 1, local ? BENCH_IMPL_REMOTE_ONLY : 0);
	for (k = 0; k < c->nimpls; k++)
		if (!envs[k].broken && one_op(&envs[k], c, local))
			envs[k].broken = 1;
	nt = bench_thread_list(c, tl, 2 * bench_ncpus(c));
	for (i = 0; i < nt; i++) {
		struct cell cell = {
			.scenario = s->name,
			.kind = local ? CELL_LKEY : CELL_RKEY,
			.threads = tl[i],
			.regions = 1,
		};

		run_cell(c, &cell, envs);
	}
	teardown_all(c, envs);
}

static void scen_lookup_random(struct bench_ctx *c,
			       const struct bench_scenario *s)
{
	struct bench_env envs[BENCH_MAX_IMPLS];
	int tl[BENCH_MAX_LIST], nt, i, k, ri;

	nt = bench_thread_list(c, tl, 2 * bench_ncpus(c));
	for (ri = 0; ri < c->opt.nregions; ri++) {
		size_t R = c->opt.regions[ri];
		size_t nops = pow2_at_least(R < 65536 ? 65536 : R);

		setup_all(c, envs, bits_for(R), R, 0);
		for (k = 0; k < c->nimpls; k++)
			if (!envs[k].broken &&
			    random_ops(&envs[k], c, nops, 0x5eed + R))
				envs[k].broken = 1;
		for (i = 0; i < nt; i++) {
			struct cell cell = {
				.scenario = s->name,
				.kind = strcmp(s->name, "lookup-chain") ?
						CELL_RKEY :
						CELL_RKEY_CHAIN,
				.threads = tl[i],
				.regions = R,
			};

			run_cell(c, &cell, envs);
		}
		teardown_all(c, envs);
	}
}

/* Windows bound over whole regions, kept apart from the env's regions. */
struct windows {
	void **mw;
	size_t n;
};

/*
 * @nw type 1 windows over the whole of the env's regions, window i on
 * region i % nmr, and a ring of @nops requests through random windows at
 * random offsets (one fixed seed, as random_ops()).
 */
static int window_ops(struct bench_env *e, const struct bench_ctx *c,
		      struct windows *w, size_t nw, size_t nops, uint64_t seed)
{
	struct bench_region_cfg rc;
	uint32_t *keys;
	size_t i;
	int ret = -ENOMEM;

	w->n = 0;
	w->mw = calloc(nw, sizeof(*w->mw));
	keys = calloc(nw, sizeof(*keys));
	e->ops = calloc(nops, sizeof(*e->ops));
	if (!w->mw || !keys || !e->ops)
		goto out;
	for (i = 0; i < nw; i++) {
		bench_region_cfg(c, i % e->nmr, &rc);
		ret = e->impl->mw_bind(e->t, e->pd, e->mrs[i % e->nmr], rc.iova,
				       rc.length, &w->mw[i], &keys[i]);
		if (ret)
			goto out;
		w->n++;
	}
	e->nops = nops;
	for (i = 0; i < nops; i++) {
		uint64_t x = bench_splitmix64(&seed);
		size_t idx = nops == 1 ? 0 : (size_t)((x >> 32) % nw);
		uint64_t off = nops == 1 ? 4096 :
					   ((x & 0xffffffffu) %
					    (BENCH_REGION_LEN - LOOKUP_LEN)) &
						   ~63ull;

		bench_region_cfg(c, idx % e->nmr, &rc);
		e->ops[i].sge.addr = rc.iova + off;
		e->ops[i].sge.length = LOOKUP_LEN;
		e->ops[i].sge.lkey = keys[idx];
		e->ops[i].key = keys[idx];
	}
	ret = 0;
out:
	free(keys);
	return ret;
}

static void windows_free(struct bench_env *e, struct windows *w)
{
	while (w->n) {
		int ret = e->impl->mw_free(e->t, w->mw[--w->n]);

		if (ret)
			bench_note("%s: mw_free: %s\n", e->impl->name,
				   mrkey_strerror(ret));
	}
	free(w->mw);
	w->mw = NULL;
}

/*
 * lookup-window: lookup-same through one window's key; then, for each R
 * of --regions, lookup-random through R windows bound over R/64 regions
 * (64K windows on 1K regions for R = 64K), as lookup-window-random.
 */
static void scen_lookup_window(struct bench_ctx *c,
			       const struct bench_scenario *s)
{
	struct bench_env envs[BENCH_MAX_IMPLS];
	struct windows ws[BENCH_MAX_IMPLS];
	int tl[BENCH_MAX_LIST], nt, i, k, ri;

	nt = bench_thread_list(c, tl, 2 * bench_ncpus(c));
	for (ri = -1; ri < c->opt.nregions; ri++) {
		size_t R = ri < 0 ? 1 : c->opt.regions[ri];
		size_t nreg = R / 64 ? R / 64 : 1;
		size_t nops = ri < 0 ? 1 : pow2_at_least(R < 65536 ? 65536 : R);

		setup_all(c, envs, bits_for(R + nreg), nreg, SKIP_NO_MW);
		for (k = 0; k < c->nimpls; k++) {
			memset(&ws[k], 0, sizeof(ws[k]));
			if (!envs[k].broken &&
			    window_ops(&envs[k], c, &ws[k], R, nops,
				       0x5eed + R)) {
				bench_note("%s: windows: setup failed\n",
					   envs[k].impl->name);
				envs[k].broken = 1;
			}
		}
		for (i = 0; i < nt; i++) {
			struct cell cell = {
				.scenario = ri < 0 ? s->name :
						     "lookup-window-random",
				.kind = CELL_RKEY,
				.threads = tl[i],
				.regions = R,
			};

			run_cell(c, &cell, envs);
		}
		for (k = 0; k < c->nimpls; k++)
			if (envs[k].impl && ws[k].mw)
				windows_free(&envs[k], &ws[k]);
		teardown_all(c, envs);
	}
}

static void scen_get_put(struct bench_ctx *c, const struct bench_scenario *s)
{
	struct bench_env envs[BENCH_MAX_IMPLS];
	int tl[BENCH_MAX_LIST], nt, i;

	setup_all(c, envs, 16, 1, 0);
	nt = bench_thread_list(c, tl, 2 * bench_ncpus(c));
	for (i = 0; i < nt; i++) {
		struct cell cell = {
			.scenario = s->name,
			.kind = CELL_GETPUT,
			.threads = tl[i],
			.regions = 1,
		};

		run_cell(c, &cell, envs);
	}
	teardown_all(c, envs);
}

static void scen_churn(struct bench_ctx *c, const struct bench_scenario *s)
{
	struct bench_env envs[BENCH_MAX_IMPLS];
	int tl[BENCH_MAX_LIST], nt, i;

	setup_all(c, envs, 16, BACKGROUND_REGIONS, 0);
	nt = bench_thread_list(c, tl, 2 * bench_ncpus(c));
	for (i = 0; i < nt; i++) {
		struct cell cell = {
			.scenario = s->name,
			.kind = CELL_CHURN,
			.threads = tl[i],
			.regions = BACKGROUND_REGIONS,
		};

		run_cell(c, &cell, envs);
	}
	teardown_all(c, envs);
}

static void scen_fast_reg(struct bench_ctx *c, const struct bench_scenario *s)
{
	struct bench_env envs[BENCH_MAX_IMPLS];
	int tl[BENCH_MAX_LIST], nt, i;

	setup_all(c, envs, 16, BACKGROUND_REGIONS, SKIP_NO_FR);
	nt = bench_thread_list(c, tl, 2 * bench_ncpus(c));
	for (i = 0; i < nt; i++) {
		struct cell cell = {
			.scenario = s->name,
			.kind = CELL_FASTREG,
			.threads = tl[i],
			.regions = BACKGROUND_REGIONS,
		};

		run_cell(c, &cell, envs);
	}
	teardown_all(c, envs);
}

/*
 * Readers on BACKGROUND_REGIONS regions with one more thread writing,
 * against the same readers alone, in the same run. lookup-under-churn:
 * the writer registers and deregisters one region again and again.
 * lookup-grow: it registers fresh regions up to GROW_REGIONS (the index
 * grows under the readers), then deregisters them (it shrinks); designs
 * with a fixed capacity do not take part.
 */
static void scen_lookup_writer(struct bench_ctx *c,
			       const struct bench_scenario *s)
{
	struct bench_env envs[BENCH_MAX_IMPLS];
	int grow = !strcmp(s->name, "lookup-grow");
	int tl[BENCH_MAX_LIST], nt, i, k;

	setup_all(c, envs, 16, BACKGROUND_REGIONS, grow ? SKIP_NO_GROW : 0);
	for (k = 0; k < c->nimpls; k++)
		if (!envs[k].broken &&
		    random_ops(&envs[k], c, 65536, grow ? 0x6f : 0xc4))
			envs[k].broken = 1;
	/* Readers up to the CPU count; the writer is one more thread. */
	nt = bench_thread_list(c, tl, bench_ncpus(c));
	for (i = 0; i < nt; i++) {
		struct cell idle = {
			.scenario = grow ? "lookup-no-grow" : "lookup-no-churn",
			.kind = CELL_RKEY,
			.threads = tl[i],
			.regions = BACKGROUND_REGIONS,
		};
		struct cell both[2] = { idle, idle };

		both[1].scenario = s->name;
		both[1].writer = 1;
		both[1].grow = grow;
		run_cells(c, both, 2, envs);
	}
	teardown_all(c, envs);
}

static void scen_dereg_latency(struct bench_ctx *c,
			       const struct bench_scenario *s)
{
	struct bench_env envs[BENCH_MAX_IMPLS];
	int nk = c->nimpls, reps = (int)c->opt.reps, rep, j, k;
	double ns[BENCH_MAX_IMPLS][101], cs[BENCH_MAX_IMPLS][101];
	int got[BENCH_MAX_IMPLS] = { 0 };
	uint64_t err[BENCH_MAX_IMPLS] = { 0 };

	setup_all(c, envs, 16, BACKGROUND_REGIONS, 0);
	for (rep = 0; rep < reps; rep++) {
		for (j = 0; j < nk; j++) {
			struct bench_thread *th;
			struct bench_window win;

			k = (j + rep) % nk;
			if (envs[k].broken)
				continue;
			th = bench_threads_new(1);
			if (!th)
				continue;
			th->env = &envs[k];
			th->fn = fn_dereg_idle;
			th->arg = (void *)(uintptr_t)(envs[k].nmr + 16);
			if (!bench_run(c, th, 1, &win) && win.ops) {
				cs[k][got[k]] = win.cpu_share;
				ns[k][got[k]++] =
					(double)win.aux / (double)win.ops;
			}
			err[k] += win.errors;
			bench_threads_free(th);
		}
	}
	for (k = 0; k < nk; k++) {
		struct bench_result *r;

		if (envs[k].broken)
			continue;
		r = bench_result_add(c);
		r->scenario = s->name;
		r->impl = c->impls[k]->name;
		r->impl_flags = c->impls[k]->flags;
		r->threads = 1;
		r->regions = BACKGROUND_REGIONS;
		r->errors = err[k];
		bench_result_from_reps(r, ns[k], got[k]);
		r->cpu_share = bench_median(cs[k], (size_t)got[k]);
		bench_row("  %-18s %-13s %9.2f ns%s\n", s->name, r->impl,
			  r->ns_per_op, r->errors ? "  ERRORS" : "");
	}
	teardown_all(c, envs);
	bench_cell_done(c);
}

/*
 * dereg-wake: thread A deregisters a region on which thread B holds a
 * reference; B drops it a set delay after A called dereg. What is measured
 * is how long after B's put A's dereg returns: the wake-up latency of the
 * deregistration wait (the seed's complete() / wait_for_completion()).
 */
struct wake {
	struct bench_env *e;
	uint64_t delay_ns;
	_Atomic int armed;
	_Atomic int done;
	_Atomic int a_exited;
	_Atomic uint64_t t_arm;
	_Atomic uint64_t t_put;
	void *_Atomic mr;
	double *samples;
	size_t nsamples, cap;
};

static void fn_wake_a(struct bench_thread *th)
{
	struct wake *wk = th->arg;
	const struct bench_impl *impl = wk->e->impl;
	struct bench_region_cfg rc;
	uint64_t n = 0, t_ret;
	uint64_t key;
	void *mr;
	int ret;

	bench_region_cfg(th->c, wk->e->nmr + 16, &rc);
	while (!bench_ctl_stopped(th->ctl)) {
		if (impl->reg(wk->e->t, wk->e->pd, &rc, &mr, &key)) {
			th->w.errors++;
			break;
		}
		impl->mr_get(mr); /* B's reference */
		atomic_store(&wk->mr, mr);
		atomic_store(&wk->done, 0);
		atomic_store(&wk->t_arm, bench_now_ns());
		atomic_store_explicit(&wk->armed, 1, memory_order_release);
		ret = impl->dereg(wk->e->t, mr, DEREG_TIMEOUT_MS);
		t_ret = bench_now_ns();
		while (!atomic_load_explicit(&wk->done, memory_order_acquire))
			bench_cpu_relax();
		if (ret) {
			th->w.errors++;
			break;
		}
		if (bench_ctl_measuring(th->ctl) && wk->nsamples < wk->cap)
			wk->samples[wk->nsamples++] =
				(double)(t_ret - atomic_load(&wk->t_put));
		bench_publish(th->prog, ++n);
	}
	atomic_store(&wk->a_exited, 1);
}

static void fn_wake_b(struct bench_thread *th)
{
	struct wake *wk = th->arg;

	/* A may be waiting on our put: leave only once A has left. */
	while (!atomic_load(&wk->a_exited)) {
		uint64_t t;

		if (!atomic_load_explicit(&wk->armed, memory_order_acquire)) {
			bench_cpu_relax();
			continue;
		}
		atomic_store(&wk->armed, 0);
		bench_spin_until(atomic_load(&wk->t_arm) + wk->delay_ns);
		t = bench_now_ns();
		atomic_store(&wk->t_put, t);
		wk->e->impl->mr_put(atomic_load(&wk->mr));
		atomic_store_explicit(&wk->done, 1, memory_order_release);
	}
}

static void scen_dereg_wake(struct bench_ctx *c, const struct bench_scenario *s)
{
	struct bench_env envs[BENCH_MAX_IMPLS];
	int nk = c->nimpls, reps = (int)c->opt.reps, rep, j, k;
	double med[BENCH_MAX_IMPLS][101], p99[BENCH_MAX_IMPLS][101];
	int got[BENCH_MAX_IMPLS] = { 0 };
	uint64_t err[BENCH_MAX_IMPLS] = { 0 };
	size_t cap = 1u << 16;
	struct wake wk;

	memset(&wk, 0, sizeof(wk));
	wk.samples = calloc(cap, sizeof(*wk.samples));
	if (!wk.samples)
		return;
	wk.cap = cap;
	wk.delay_ns = (uint64_t)c->opt.wake_delay_us * 1000u;
	setup_all(c, envs, 16, BACKGROUND_REGIONS, BENCH_IMPL_NOREF);
	for (rep = 0; rep < reps; rep++) {
		for (j = 0; j < nk; j++) {
			struct bench_thread *th;
			struct bench_window win;

			k = (j + rep) % nk;
			if (envs[k].broken)
				continue;
			th = bench_threads_new(2);
			if (!th)
				continue;
			wk.e = &envs[k];
			wk.nsamples = 0;
			atomic_store(&wk.armed, 0);
			atomic_store(&wk.a_exited, 0);
			th[0].fn = fn_wake_a;
			th[1].fn = fn_wake_b;
			th[0].arg = th[1].arg = &wk;
			th[0].env = th[1].env = &envs[k];
			th[1].counted = 0;
			if (!bench_run(c, th, 2, &win) && wk.nsamples) {
				med[k][got[k]] =
					bench_median(wk.samples, wk.nsamples);
				p99[k][got[k]] = bench_quantile_sorted(
					wk.samples, wk.nsamples, 0.99);
				got[k]++;
			}
			err[k] += win.errors;
			bench_threads_free(th);
		}
	}
	for (k = 0; k < nk; k++) {
		struct bench_result *r;

		if (envs[k].broken)
			continue;
		r = bench_result_add(c);
		r->scenario = s->name;
		r->impl = c->impls[k]->name;
		r->impl_flags = c->impls[k]->flags;
		r->threads = 2;
		r->regions = BACKGROUND_REGIONS;
		r->errors = err[k];
		/* A sleeps in dereg by design: no CPU share. */
		bench_result_from_reps(r, med[k], got[k]);
		r->extra_name = "p99_ns";
		r->extra = bench_median(p99[k], (size_t)got[k]);
		bench_row("  %-18s %-13s %9.0f ns late (p99 %.0f)%s\n", s->name,
			  r->impl, r->ns_per_op, r->extra,
			  r->errors ? "  ERRORS" : "");
	}
	teardown_all(c, envs);
	free(wk.samples);
	bench_cell_done(c);
}

/*
 * Bytes per region: the bytes the implementation has asked for after
 * registering N regions, less what it had asked for with none (the table
 * overhead, reported apart), divided by N.
 */
static void scen_memory(struct bench_ctx *c, const struct bench_scenario *s)
{
	size_t n = c->opt.mem_regions, i;
	unsigned int bits = bits_for(n);
	void **mrs = calloc(n, sizeof(*mrs));
	int k;

	if (!mrs)
		return;
	for (k = 0; k < c->nimpls; k++) {
		const struct bench_impl *impl = c->impls[k];
		struct bench_region_cfg rc;
		struct bench_result *r;
		struct bench_env e;
		size_t m0, m1, done = 0;
		uint64_t key;

		/* Sized for n (lfht's buckets then count as table). */
		if (bench_env_setup_hint(c, &e, impl, bits, 0, n, 1))
			continue;
		if (impl->quiesce)
			impl->quiesce(e.t);
		m0 = impl->mem_bytes(e.t);
		for (i = 0; i < n; i++) {
			bench_region_cfg(c, i, &rc);
			if (impl->reg(e.t, e.pd, &rc, &mrs[i], &key))
				break;
			done++;
		}
		if (impl->quiesce)
			impl->quiesce(e.t);
		m1 = impl->mem_bytes(e.t);
		if (done == n) {
			r = bench_result_add(c);
			r->scenario = s->name;
			r->impl = impl->name;
			r->impl_flags = impl->flags;
			r->regions = n;
			r->is_mem = 1;
			r->bytes_per_region = (double)(m1 - m0) / (double)n;
			r->table_bytes = (double)m0;
			r->table_bits = bits;
			bench_row("  memory %-13s %.1f B/region, "
				  "table %zu B\n",
				  impl->name, r->bytes_per_region, m0);
		}
		while (done)
			impl->dereg(e.t, mrs[--done], DEREG_TIMEOUT_MS);
		bench_env_teardown(c, &e);
	}
	free(mrs);
	bench_cell_done(c);
}

const struct bench_scenario bench_scenarios[] = {
	{ "lookup-same",
	  "every thread validates the same rkey "
	  "(rkey_ok + isge_put)",
	  scen_lookup_same },
	{ "lookup-same-lkey", "the same with lkey_ok", scen_lookup_same },
	{ "lookup-random", "random rkeys over R live regions",
	  scen_lookup_random },
	{ "lookup-chain",
	  "lookup-random, each request read from where the previous "
	  "lookup's result says (one at a time, no overlapping misses)",
	  scen_lookup_random },
	{ "lookup-window",
	  "lookup-same through a memory window's key; then random "
	  "keys of R windows on R/64 regions (lookup-window-random)",
	  scen_lookup_window },
	{ "get-put", "get + put on one region", scen_get_put },
	{ "churn", "register + deregister an idle region, per thread",
	  scen_churn },
	{ "fast-reg",
	  "fast-register + invalidate an idle one-segment region, per "
	  "thread (REG_MR + LOCAL_INV)",
	  scen_fast_reg },
	{ "dereg-latency", "time of one dereg of an idle region",
	  scen_dereg_latency },
	{ "dereg-wake", "how long after the last put a waiting dereg returns",
	  scen_dereg_wake },
	{ "lookup-under-churn",
	  "random rkeys while one writer churns; "
	  "also as lookup-no-churn without it",
	  scen_lookup_writer },
	{ "lookup-grow",
	  "random rkeys while one writer registers 1M more regions (the "
	  "index grows) and deregisters them; also as lookup-no-grow "
	  "without it (designs without a fixed capacity)",
	  scen_lookup_writer },
	{ "memory", "bytes per region and table overhead", scen_memory },
};

const size_t bench_nscenarios =
	sizeof(bench_scenarios) / sizeof(bench_scenarios[0]);

/* How many cells (bench_cell_done() calls) the scenario's run() makes. */
size_t bench_scenario_cells(const struct bench_ctx *c,
			    const struct bench_scenario *s)
{
	int tl[BENCH_MAX_LIST];

	if (s->run == scen_lookup_same || s->run == scen_get_put ||
	    s->run == scen_churn)
		return (size_t)bench_thread_list(c, tl, 2 * bench_ncpus(c));
	if (s->run == scen_lookup_random)
		return (size_t)c->opt.nregions *
		       (size_t)bench_thread_list(c, tl, 2 * bench_ncpus(c));
	if (s->run == scen_lookup_window)
		return (size_t)(c->opt.nregions + 1) *
		       (size_t)bench_thread_list(c, tl, 2 * bench_ncpus(c));
	if (s->run == scen_lookup_writer)
		return 2 * (size_t)bench_thread_list(c, tl, bench_ncpus(c));
	return 1;
}
