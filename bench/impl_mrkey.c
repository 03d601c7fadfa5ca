/* SPDX-License-Identifier: MIT */
/*
 * mrkey itself, through its public API only, in each of its modes. A mode
 * is one MRKEY_BENCH_MODE() line plus its entry in bench_mrkey_impls[]:
 * the refcount mode it sets in struct mrkey_table_attr and the validation,
 * isge-put, get and put functions its hot loops call.
 *
 * Memory: with cfg->count_memory the table is created with a counting
 * struct mrkey_allocator, so mem_bytes() is every byte mrkey asked for
 * (table, slot array, key state, regions, their segment maps, PDs).
 */
#include <dlfcn.h>

#include <mrkey/inline.h>
#include <mrkey/mrkey.h>

#include "impl.h"

struct mk_table {
	struct mrkey_table *t;
	struct mrkey_allocator alloc;
	struct bench_counter mem;
};

static void *mk_alloc(void *ctx, size_t size, size_t align)
{
	struct bench_counter *c = ctx;
	void *p;

	if (align < sizeof(void *))
		align = sizeof(void *);
	if (posix_memalign(&p, align, size ? size : 1))
		return NULL;
	atomic_fetch_add_explicit(&c->bytes, size, memory_order_relaxed);
	return p;
}

static void mk_free(void *ctx, void *p, size_t size)
{
	struct bench_counter *c = ctx;

	if (!p)
		return;
	atomic_fetch_sub_explicit(&c->bytes, size, memory_order_relaxed);
	free(p);
}

/* --allocator; NULL = the library's default. */
static const struct mrkey_allocator *mk_allocator;

static void *mk_libc_alloc(void *ctx, size_t size, size_t align)
{
	(void)ctx;
	return aligned_alloc(align, (size + align - 1) & ~(align - 1));
}

static void mk_libc_free(void *ctx, void *p, size_t size)
{
	(void)ctx;
	(void)size;
	free(p);
}

static void *(*mk_mallocx)(size_t size, int flags);
static void (*mk_sdallocx)(void *p, size_t size, int flags);

/* MALLOCX_ALIGN(a) is ffs(a) - 1 in the low bits; a is a power of two. */
static void *mk_je_alloc(void *ctx, size_t size, size_t align)
{
	(void)ctx;
	return mk_mallocx(size, __builtin_ctzl(align));
}

static void mk_je_free(void *ctx, void *p, size_t size)
{
	(void)ctx;
	mk_sdallocx(p, size, 0);
}

int bench_mrkey_set_allocator(const char *name)
{
	static const struct mrkey_allocator libc = { mk_libc_alloc,
						     mk_libc_free, NULL };
	static const struct mrkey_allocator je = { mk_je_alloc, mk_je_free,
						   NULL };

	if (!strcmp(name, "default")) {
		mk_allocator = NULL;
	} else if (!strcmp(name, "libc")) {
		mk_allocator = &libc;
	} else if (!strcmp(name, "jemalloc")) {
		*(void **)&mk_mallocx = dlsym(RTLD_DEFAULT, "mallocx");
		*(void **)&mk_sdallocx = dlsym(RTLD_DEFAULT, "sdallocx");
		if (!mk_mallocx || !mk_sdallocx)
			return -ENOENT;
		mk_allocator = &je;
	} else {
		return -EINVAL;
	}
	return 0;
}

static uint64_t mk_seed;

void bench_mrkey_set_seed(uint64_t seed)
{
	mk_seed = seed;
}

static int mk_create_index(const struct bench_table_cfg *cfg,
			   enum mrkey_refcount_mode mode, unsigned int flags,
			   enum mrkey_index index, void **tp)
{
	struct mrkey_table_attr attr;
	struct mk_table *m = calloc(1, sizeof(*m));
	int ret;

	if (!m)
		return -ENOMEM;
	memset(&attr, 0, sizeof(attr));
	attr.index = index;
	/* A requested-key table has no slots to size. */
	attr.table_bits = index == MRKEY_INDEX_SLOT ? cfg->table_bits : 0;
	attr.refcount = mode;
	attr.flags = flags;
	attr.seed = mk_seed;
	if (cfg->count_memory) {
		m->alloc.alloc = mk_alloc;
		m->alloc.free = mk_free;
		m->alloc.ctx = &m->mem;
		attr.allocator = &m->alloc;
	} else {
		attr.allocator = mk_allocator;
	}
	ret = mrkey_table_create(&attr, &m->t);
	if (ret) {
		free(m);
		return ret;
	}
	*tp = m;
	return 0;
}

static int mk_create(const struct bench_table_cfg *cfg,
		     enum mrkey_refcount_mode mode, unsigned int flags,
		     void **tp)
{
	return mk_create_index(cfg, mode, flags, MRKEY_INDEX_SLOT, tp);
}

static int mk_destroy(void *tp)
{
	struct mk_table *m = tp;
	int ret = mrkey_table_destroy(m->t);

	if (ret)
		return ret;
	free(m);
	return 0;
}

static void *mk_hot(void *tp)
{
	return ((struct mk_table *)tp)->t;
}

static int mk_pd_alloc(void *tp, void **pdp)
{
	struct mrkey_pd *pd;
	int ret = mrkey_pd_alloc(((struct mk_table *)tp)->t, 0, &pd);

	if (!ret)
		*pdp = pd;
	return ret;
}

static int mk_pd_free(void *tp, void *pd)
{
	(void)tp;
	return mrkey_pd_free(pd);
}

/*
 * Register @rc under a key the table picks, or (@requested) under a
 * random 64-bit key drawn here, drawn again when taken (libfabric's
 * requested keys, FI_ENOKEY on a duplicate).
 */
static int mk_reg_any(void *tp, void *pd, const struct bench_region_cfg *rc,
		      void **mrp, uint64_t *keyp, int requested)
{
	static _Thread_local uint64_t rng;
	struct mrkey_seg seg = { .addr = rc->host, .length = rc->length };
	struct mrkey_mr_attr a = {
		.pd = pd,
		.addr = rc->addr,
		.iova = rc->iova,
		.length = rc->length,
		/* Windows may bind to it (lookup-window); costs no lookup. */
		.access = rc->access | MRKEY_ACCESS_MW_BIND,
		.segs = &seg,
		.nsegs = 1,
	};
	struct mrkey_table *t = ((struct mk_table *)tp)->t;
	struct mrkey_mr *mr;
	int ret;

	if (!requested) {
		ret = mrkey_mr_reg(t, &a, &mr);
	} else {
		if (!rng) {
			uint64_t s = (uint64_t)(uintptr_t)&rng ^ bench_now_ns();

			rng = bench_splitmix64(&s) | 1;
		}
		do
			ret = mrkey_mr_reg_key(t, &a, bench_xorshift64s(&rng),
					       &mr);
		while (ret == -EEXIST);
	}
	if (ret)
		return ret;
	*mrp = mr;
	*keyp = mrkey_mr_key(mr);
	return 0;
}

static int mk_reg(void *tp, void *pd, const struct bench_region_cfg *rc,
		  void **mrp, uint64_t *keyp)
{
	return mk_reg_any(tp, pd, rc, mrp, keyp, 0);
}

static int mk_dereg(void *tp, void *mr, unsigned int timeout_ms)
{
	(void)tp;
	return mrkey_mr_dereg(mr, timeout_ms);
}

static int mk_mw_bind(void *tp, void *pd, void *mr, uint64_t iova, uint64_t len,
		      void **mwp, uint32_t *keyp)
{
	struct mrkey_mw_bind_attr b = {
		.mr = mr,
		.addr = iova,
		.length = len,
		.access = MRKEY_ACCESS_REMOTE_READ | MRKEY_ACCESS_REMOTE_WRITE,
	};
	struct mrkey_mw *mw;
	int ret = mrkey_mw_alloc(((struct mk_table *)tp)->t, pd,
				 MRKEY_MW_TYPE_1, &mw);

	if (ret)
		return ret;
	ret = mrkey_mw_bind(mw, &b, keyp);
	if (ret) {
		mrkey_mw_dealloc(mw);
		return ret;
	}
	*mwp = mw;
	return 0;
}

static int mk_mw_free(void *tp, void *mw)
{
	(void)tp;
	return mrkey_mw_dealloc(mw);
}

static int mk_fr_alloc(void *tp, void *pd, void **mrp)
{
	struct mrkey_mr *mr;
	int ret = mrkey_mr_alloc(((struct mk_table *)tp)->t, pd, 1, &mr);

	if (!ret)
		*mrp = mr;
	return ret;
}

static int mk_fr_cycle(void *tp, void *pd, void *mr,
		       const struct bench_region_cfg *rc, uint8_t byte)
{
	struct mrkey_seg seg = { .addr = rc->host, .length = rc->length };
	struct mrkey_fr_attr a = {
		.addr = rc->addr,
		.iova = rc->iova,
		.length = rc->length,
		.access = rc->access,
		.segs = &seg,
		.nsegs = 1,
		.key_byte = byte,
	};
	uint32_t key;
	int ret = mrkey_mr_fast_reg(mr, &a, 0, &key);

	if (ret)
		return ret;
	return mrkey_key_invalidate(((struct mk_table *)tp)->t, pd, key);
}

static int mk_fr_free(void *tp, void *mr)
{
	(void)tp;
	return mrkey_mr_dereg(mr, 5000);
}

static void mk_mr_get(void *mr)
{
	mrkey_mr_get(mr);
}

static void mk_mr_put(void *mr)
{
	mrkey_mr_put(mr);
}

static size_t mk_mem_bytes(void *tp)
{
	return atomic_load(&((struct mk_table *)tp)->mem.bytes);
}

static void mk_quiesce(void *tp)
{
	(void)tp;
	mrkey_reclaim_wait();
}

#define MRKEY_BENCH_MODE(id, str, what, mode, flags, rkey_ok, lkey_ok,         \
			 isge_put, get, put)                                   \
	static int id##_create(const struct bench_table_cfg *cfg, void **tp)   \
	{                                                                      \
		return mk_create(cfg, mode, flags, tp);                        \
	}                                                                      \
	BENCH_DEFINE_LOOPS(id, struct mrkey_isge, rkey_ok, lkey_ok, isge_put,  \
			   get, put)                                           \
	static const struct bench_impl id##_impl = {                           \
		.name = str,                                                   \
		.design = what,                                                \
		.create = id##_create,                                         \
		.destroy = mk_destroy,                                         \
		.hot = mk_hot,                                                 \
		.pd_alloc = mk_pd_alloc,                                       \
		.pd_free = mk_pd_free,                                         \
		.reg = mk_reg,                                                 \
		.dereg = mk_dereg,                                             \
		.fr_alloc = mk_fr_alloc,                                       \
		.mw_bind = mk_mw_bind,                                         \
		.mw_free = mk_mw_free,                                         \
		.fr_cycle = mk_fr_cycle,                                       \
		.fr_free = mk_fr_free,                                         \
		.mr_get = mk_mr_get,                                           \
		.mr_put = mk_mr_put,                                           \
		.mem_bytes = mk_mem_bytes,                                     \
		.quiesce = mk_quiesce,                                         \
		.validate = id##_validate,                                     \
		.loop_rkey = id##_loop_rkey,                                   \
		.loop_rkey_chain = id##_loop_rkey_chain,                       \
		.loop_lkey = id##_loop_lkey,                                   \
		.loop_getput = id##_loop_getput,                               \
	};

/*
 * Reference-free validation, for a synchronous user whose use of the memory
 * ends inside one read-side section: the section opens before the check
 * and closes where the other modes put their reference, so the loop's use
 * of isge.vaddr happens inside it, as the contract requires. One expansion
 * with the library's mrkey_read_lock()/unlock() calls, one with
 * <mrkey/inline.h>'s inlined pair.
 */
#define MK_NOREF_FNS(pfx, lock, unlock)                                        \
	static inline int pfx##_rkey(struct mrkey_table *t,                    \
				     struct mrkey_pd *pd, uint32_t key,        \
				     uint64_t va, uint32_t len,                \
				     unsigned int access,                      \
				     struct mrkey_isge *isge)                  \
	{                                                                      \
		int ret;                                                       \
                                                                               \
		lock();                                                        \
		ret = mrkey_rkey_check(t, pd, key, va, len, access, isge);     \
		if (ret)                                                       \
			unlock();                                              \
		return ret;                                                    \
	}                                                                      \
	static inline int pfx##_lkey(struct mrkey_table *t,                    \
				     struct mrkey_pd *pd,                      \
				     const struct mrkey_sge *sge,              \
				     unsigned int access,                      \
				     struct mrkey_isge *isge)                  \
	{                                                                      \
		int ret;                                                       \
                                                                               \
		lock();                                                        \
		ret = mrkey_lkey_check(t, pd, sge, access, isge);              \
		if (ret)                                                       \
			unlock();                                              \
		return ret;                                                    \
	}                                                                      \
	static inline void pfx##_done(struct mrkey_isge *isge)                 \
	{                                                                      \
		(void)isge;                                                    \
		unlock();                                                      \
	}

MK_NOREF_FNS(mk_noref, mrkey_read_lock, mrkey_read_unlock)
MK_NOREF_FNS(mk_norefi, mrkey_read_lock_inline, mrkey_read_unlock_inline)

MRKEY_BENCH_MODE(mk_atomic, "mrkey", "mrkey, atomic refcount (default)",
		 MRKEY_REFCOUNT_ATOMIC, 0, mrkey_rkey_ok, mrkey_lkey_ok,
		 mrkey_isge_put, mrkey_mr_get, mrkey_mr_put)
MRKEY_BENCH_MODE(mk_percpu, "mrkey-percpu", "mrkey, per-CPU split refcount",
		 MRKEY_REFCOUNT_PERCPU, 0, mrkey_rkey_ok, mrkey_lkey_ok,
		 mrkey_isge_put, mrkey_mr_get, mrkey_mr_put)
MRKEY_BENCH_MODE(mk_noref, "mrkey-noref",
		 "mrkey, reference-free checks in a read-side section",
		 MRKEY_REFCOUNT_ATOMIC, MRKEY_TABLE_NOREF, mk_noref_rkey,
		 mk_noref_lkey, mk_noref_done, mrkey_mr_get, mrkey_mr_put)
MRKEY_BENCH_MODE(mk_norefi, "mrkey-noref-inline",
		 "mrkey, reference-free checks, <mrkey/inline.h> section",
		 MRKEY_REFCOUNT_ATOMIC, MRKEY_TABLE_NOREF, mk_norefi_rkey,
		 mk_norefi_lkey, mk_norefi_done, mrkey_mr_get, mrkey_mr_put)

/*
 * A requested-key table (libfabric's MR map with FI_MR_PROV_KEY off):
 * random 64-bit keys, mrkey_key_ok() on the rkey path. Its lkey path
 * (32-bit keys) is not what such a provider uses: remote scenarios only.
 */
static int mk_req_create(const struct bench_table_cfg *cfg, void **tp)
{
	return mk_create_index(cfg, MRKEY_REFCOUNT_ATOMIC, 0,
			       MRKEY_INDEX_REQUESTED, tp);
}

static int mk_req_reg(void *tp, void *pd, const struct bench_region_cfg *rc,
		      void **mrp, uint64_t *keyp)
{
	return mk_reg_any(tp, pd, rc, mrp, keyp, 1);
}

BENCH_DEFINE_LOOPS(mk_req, struct mrkey_isge, mrkey_key_ok, mrkey_lkey_ok,
		   mrkey_isge_put, mrkey_mr_get, mrkey_mr_put)

static const struct bench_impl mk_req_impl = {
	.name = "mrkey-requested",
	.design = "mrkey requested-key table: random 64-bit keys, RCU index",
	.flags = BENCH_IMPL_REMOTE_ONLY | BENCH_IMPL_GROWS,
	.create = mk_req_create,
	.destroy = mk_destroy,
	.hot = mk_hot,
	.pd_alloc = mk_pd_alloc,
	.pd_free = mk_pd_free,
	.reg = mk_req_reg,
	.dereg = mk_dereg,
	.mr_get = mk_mr_get,
	.mr_put = mk_mr_put,
	.mem_bytes = mk_mem_bytes,
	.quiesce = mk_quiesce,
	.validate = mk_req_validate,
	.loop_rkey = mk_req_loop_rkey,
	.loop_rkey_chain = mk_req_loop_rkey_chain,
	.loop_lkey = mk_req_loop_lkey,
	.loop_getput = mk_req_loop_getput,
};

const struct bench_impl *const bench_mrkey_impls[] = {
	&mk_atomic_impl, &mk_percpu_impl, &mk_noref_impl,
	&mk_norefi_impl, &mk_req_impl,    NULL,
};
