/* SPDX-License-Identifier: MIT */
/*
 * The one interface every implementation measured by mrkey-bench provides:
 * mrkey in each of its modes and every baseline design. The harness only
 * ever talks to a struct bench_impl, so a new mrkey mode or a new baseline
 * is one more entry, never a change to a scenario.
 *
 * Cold operations (create, reg, dereg, ...) are function pointers. The hot
 * loops are not: an indirect call per operation would dominate the floor.
 * Each implementation expands BENCH_DEFINE_LOOPS() with its own validation,
 * put, get functions, so each loop calls them directly, exactly one call per
 * operation for everybody (the baselines' lookups are noinline functions,
 * mrkey's are library calls).
 */
#ifndef MRKEY_BENCH_IMPL_H
#define MRKEY_BENCH_IMPL_H

#include <mrkey/sge.h>

#include "common.h"

/* The implementation takes no references (its get/put do nothing). */
#define BENCH_IMPL_NOREF 1u
/* A baseline: rows of other implementations are divided by its rows. */
#define BENCH_IMPL_BASELINE 2u
/* Remote checks only (a libfabric-style map): no lkey scenario. */
#define BENCH_IMPL_REMOTE_ONLY 4u
/* No fixed capacity: takes part in lookup-grow. */
#define BENCH_IMPL_GROWS 8u

struct bench_table_cfg {
	unsigned int table_bits; /* slot designs hold 2^table_bits */
	size_t nregions;         /* live regions to expect (sizing hint) */
	int count_memory;        /* route every allocation through a counter */
};

struct bench_region_cfg {
	uint64_t addr;   /* start in lkey space */
	uint64_t iova;   /* start in rkey space */
	uint64_t length; /* bytes */
	unsigned int access;
	void *host; /* backing memory, @length bytes, one segment */
};

/*
 * One request of a hot loop. @sge is the ibv_sge layout, which the lkey
 * path takes as it is; the rkey path takes (@key, sge.addr, sge.length).
 * @key is the region's key in full: 64 bits for the designs whose keys
 * are (libfabric's requested keys), the 32-bit key otherwise (and then
 * equal to sge.lkey).
 */
struct bench_op {
	struct mrkey_sge sge;
	uint64_t key;
};

/*
 * The whole key of the request whose sge the lkey path was given: the
 * loops and the self-check always pass the sge of a struct bench_op.
 */
static inline uint64_t bench_op_key(const struct mrkey_sge *sge)
{
	return ((const struct bench_op *)(const void *)sge)->key;
}

/*
 * Arguments of one thread's hot loop. @ops is a ring of requests, used as
 * ops[pos++ & mask]: mask 0 gives lookup-same, a large random ring gives
 * lookup-random.
 */
struct bench_worker {
	const struct bench_ctl *ctl;
	struct bench_progress *prog;
	void *table; /* what impl->hot() returned */
	void *pd;
	void *mr; /* get-put */
	const struct bench_op *ops;
	size_t mask;
	size_t pos;
	unsigned int access;
	uint64_t errors; /* failed validations: a bug, reported */
	uintptr_t sink;  /* keeps results alive */
};

struct bench_impl {
	const char *name;   /* as printed and in JSON */
	const char *design; /* one line: what it reproduces */
	unsigned int flags; /* BENCH_IMPL_* */

	int (*create)(const struct bench_table_cfg *cfg, void **tp);
	int (*destroy)(void *t);
	/* The pointer the hot loops get; NULL = the table handle itself. */
	void *(*hot)(void *t);
	int (*pd_alloc)(void *t, void **pdp);
	int (*pd_free)(void *t, void *pd);
	int (*reg)(void *t, void *pd, const struct bench_region_cfg *rc,
		   void **mrp, uint64_t *keyp);
	int (*dereg)(void *t, void *mr, unsigned int timeout_ms);
	void (*mr_get)(void *mr);
	void (*mr_put)(void *mr);
	/* Live bytes the table has allocated; needs cfg->count_memory. */
	size_t (*mem_bytes)(void *t);
	/* Wait for deferred frees (RCU callbacks); NULL if none. */
	void (*quiesce)(void *t);

	/*
	 * Fast registration, for the fast-reg scenario; NULL where the
	 * design has none. fr_alloc reserves an invalid region (ib_alloc_mr);
	 * fr_cycle makes it valid with @rc's translation under key byte
	 * @byte (IB_WR_REG_MR), then invalidates that key (IB_WR_LOCAL_INV);
	 * fr_free releases the region.
	 */
	int (*fr_alloc)(void *t, void *pd, void **mrp);
	int (*fr_cycle)(void *t, void *pd, void *mr,
			const struct bench_region_cfg *rc, uint8_t byte);
	int (*fr_free)(void *t, void *mr);

	/*
	 * Memory windows, for the lookup-window scenario; NULL where the
	 * design has none. mw_bind allocates a type 1 window over
	 * [iova, iova + len) of region @mr and binds it (remote read and
	 * write); its key resolves through loop_rkey. mw_free deallocates.
	 */
	int (*mw_bind)(void *t, void *pd, void *mr, uint64_t iova, uint64_t len,
		       void **mwp, uint32_t *keyp);
	int (*mw_free)(void *t, void *mw);

	/*
	 * One validation (rkey path when @remote, lkey path otherwise) and,
	 * when it succeeds, its put: for the self-check that every
	 * implementation answers alike. Returns 0 or the -errno.
	 */
	int (*validate)(void *hot, void *pd, const struct bench_op *op,
			unsigned int access, int remote, void **vaddr);
	void (*loop_rkey)(struct bench_worker *w);
	void (*loop_rkey_chain)(struct bench_worker *w); /* lookup-chain */
	void (*loop_lkey)(struct bench_worker *w);
	void (*loop_getput)(struct bench_worker *w);
};

#define BENCH_BATCH 32

/*
 * The rkey loop. With @chain, where the next request is read from depends
 * on the result of this one (vaddr >> 63, always 0 for a user address, but
 * the CPU cannot know that before the lookup is done), so lookups do not
 * overlap: each one's cache misses are paid in full, one request at a
 * time, as a driver serving one packet after another pays them. Without
 * it, a tight loop lets the CPU run the next iterations' loads while this
 * one's misses are outstanding.
 */
#define BENCH__LOOP_RKEY(name, isge_t, rkey_ok, isge_put, chain)               \
	static void name(struct bench_worker *w)                               \
	{                                                                      \
		const struct bench_op *ops = w->ops;                           \
		size_t mask = w->mask, pos = w->pos;                           \
		unsigned int acc = w->access;                                  \
		uint64_t n = 0, err = 0;                                       \
		uintptr_t sink = 0;                                            \
		isge_t h;                                                      \
		int j;                                                         \
                                                                               \
		while (!bench_ctl_stopped(w->ctl)) {                           \
			for (j = 0; j < BENCH_BATCH; j++) {                    \
				const struct bench_op *o = &ops[pos++ & mask]; \
                                                                               \
				if (bench_unlikely(rkey_ok(                    \
					    w->table, w->pd, o->key,           \
					    o->sge.addr, o->sge.length, acc,   \
					    &h))) {                            \
					err++;                                 \
					continue;                              \
				}                                              \
				sink += (uintptr_t)h.vaddr;                    \
				if (chain)                                     \
					pos += (uintptr_t)h.vaddr >> 63;       \
				isge_put(&h);                                  \
			}                                                      \
			n += BENCH_BATCH;                                      \
			bench_publish(w->prog, n);                             \
		}                                                              \
		w->errors = err;                                               \
		w->sink = sink;                                                \
	}

/*
 * Expands to pfx_validate and pfx_loop_rkey/rkey_chain/lkey/getput.
 * isge_t must have a `vaddr` member; rkey_ok/lkey_ok take mrkey_rkey_ok's/
 * mrkey_lkey_ok's arguments.
 */
#define BENCH_DEFINE_LOOPS(pfx, isge_t, rkey_ok, lkey_ok, isge_put, get, put)  \
	static int pfx##_validate(void *t, void *pd, const struct bench_op *o, \
				  unsigned int acc, int remote, void **vaddr)  \
	{                                                                      \
		isge_t h;                                                      \
		int ret = remote ? rkey_ok(t, pd, o->key, o->sge.addr,         \
					   o->sge.length, acc, &h) :           \
				   lkey_ok(t, pd, &o->sge, acc, &h);           \
                                                                               \
		if (!ret) {                                                    \
			*vaddr = h.vaddr;                                      \
			isge_put(&h);                                          \
		}                                                              \
		return ret;                                                    \
	}                                                                      \
	BENCH__LOOP_RKEY(pfx##_loop_rkey, isge_t, rkey_ok, isge_put, 0)        \
	BENCH__LOOP_RKEY(pfx##_loop_rkey_chain, isge_t, rkey_ok, isge_put, 1)  \
	static void pfx##_loop_lkey(struct bench_worker *w)                    \
	{                                                                      \
		const struct bench_op *ops = w->ops;                           \
		size_t mask = w->mask, pos = w->pos;                           \
		unsigned int acc = w->access;                                  \
		uint64_t n = 0, err = 0;                                       \
		uintptr_t sink = 0;                                            \
		isge_t h;                                                      \
		int j;                                                         \
                                                                               \
		while (!bench_ctl_stopped(w->ctl)) {                           \
			for (j = 0; j < BENCH_BATCH; j++) {                    \
				const struct bench_op *o = &ops[pos++ & mask]; \
                                                                               \
				if (bench_unlikely(lkey_ok(w->table, w->pd,    \
							   &o->sge, acc,       \
							   &h))) {             \
					err++;                                 \
					continue;                              \
				}                                              \
				sink += (uintptr_t)h.vaddr;                    \
				isge_put(&h);                                  \
			}                                                      \
			n += BENCH_BATCH;                                      \
			bench_publish(w->prog, n);                             \
		}                                                              \
		w->errors = err;                                               \
		w->sink = sink;                                                \
	}                                                                      \
	static void pfx##_loop_getput(struct bench_worker *w)                  \
	{                                                                      \
		uint64_t n = 0;                                                \
		int j;                                                         \
                                                                               \
		while (!bench_ctl_stopped(w->ctl)) {                           \
			for (j = 0; j < BENCH_BATCH; j++) {                    \
				get(w->mr);                                    \
				put(w->mr);                                    \
			}                                                      \
			n += BENCH_BATCH;                                      \
			bench_publish(w->prog, n);                             \
		}                                                              \
		w->errors = 0;                                                 \
		w->sink = 0;                                                   \
	}

/* Every implementation, baselines first; NULL-terminated. */
extern const struct bench_impl bench_impl_floor;
extern const struct bench_impl bench_impl_qib2012;
extern const struct bench_impl bench_impl_rbtree_mutex;
extern const struct bench_impl bench_impl_lfht;
/* mrkey's modes, one entry each; NULL-terminated (impl_mrkey.c). */
extern const struct bench_impl *const bench_mrkey_impls[];

/*
 * --allocator: what mrkey's tables allocate with (tables that count their
 * memory keep their counting allocator). "default" leaves the library's
 * choice; "libc" is aligned_alloc()/free(), i.e. whatever malloc the
 * process has; "jemalloc" is mallocx()/sdallocx(), found in the process
 * (LD_PRELOAD=libjemalloc.so.2, or a program linked with it).
 * Returns 0, -EINVAL (unknown name) or -ENOENT (jemalloc is not loaded).
 */
int bench_mrkey_set_allocator(const char *name);
/* --seed: struct mrkey_table_attr's seed for every mrkey table (0: none). */
void bench_mrkey_set_seed(uint64_t seed);

#endif /* MRKEY_BENCH_IMPL_H */
