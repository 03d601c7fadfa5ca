/* SPDX-License-Identifier: MIT */
/*
 * lfht: liburcu's lock-free resizable hash table (cds_lfht, rculfhash.h)
 * keyed by a random 64-bit key, which is what a user reaching for liburcu
 * would build:
 * lookups in an RCU read-side section, an atomic reference taken with
 * "get unless zero" (urcu_ref_get_unless_zero's CAS loop) so a region
 * whose count already reached zero is not revived, removal with
 * cds_lfht_del() and the free deferred by call_rcu().
 *
 * Same RCU flavour as mrkey (liburcu-bp, read-side lock inlined with
 * _LGPL_SOURCE as mrkey does), same checks, same reference protocol,
 * random keys retried on a collision (cds_lfht_add_unique). The table is
 * created with as many buckets as regions expected (rounded to a power of
 * two) and may grow (CDS_LFHT_AUTO_RESIZE).
 *
 * Memory: liburcu allocates its bucket table itself, out of our sight (and
 * in this process malloc may be jemalloc's, which mallinfo2() does not
 * see), so mem_bytes() adds it from liburcu's layout: one struct
 * cds_lfht_node per bucket, allocated at creation for the initial size.
 * The table grows only past 8 regions per bucket on average, which the
 * memory figure (one region per bucket) never reaches.
 */
#ifndef MRKEY_URCU_NO_INLINE /* UBSan builds: see src/internal.h */
#define _LGPL_SOURCE
#endif
#include <urcu/urcu-bp.h>
#include <urcu/rculfhash.h>

#include "baseline.h"

/*
 * liburcu 0.13 carries no TSan annotations: show TSan that call_rcu()
 * hands the region to the callback thread (as the core does).
 */
#if defined(__SANITIZE_THREAD__)
#define LFHT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LFHT_TSAN 1
#endif
#endif
#ifdef LFHT_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define lfht_tsan_release(p) __tsan_release(p)
#define lfht_tsan_acquire(p) __tsan_acquire(p)
#else
#define lfht_tsan_release(p) ((void)(p))
#define lfht_tsan_acquire(p) ((void)(p))
#endif

struct lfht_region {
	struct bl_region r;
	struct cds_lfht_node node;
	struct rcu_head rcu;
	struct lfht_table *t;
};

struct lfht_table {
	struct cds_lfht *ht;
	unsigned long buckets; /* at creation */
	struct bench_counter mem;
};

static _Thread_local uint64_t lfht_rng;

/*
 * murmur3's 64-bit finaliser: the split-ordered list wants every bit
 * mixed, and keys are 64 bits (libfabric's requested keys).
 */
static inline unsigned long lfht_hash(uint64_t key)
{
	uint64_t h = key;

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return (unsigned long)h;
}

static int lfht_match(struct cds_lfht_node *node, const void *key)
{
	const struct lfht_region *m =
		bench_container_of(node, struct lfht_region, node);

	return m->r.key == *(const uint64_t *)key;
}

/* urcu_ref_get_unless_zero(). */
static inline int lfht_get_unless_zero(struct bl_region *r)
{
	uint32_t old = atomic_load_explicit(&r->refcount, memory_order_relaxed);

	do {
		if (bench_unlikely(old == 0))
			return 0;
	} while (!atomic_compare_exchange_weak_explicit(
		&r->refcount, &old, old + 1, memory_order_seq_cst,
		memory_order_relaxed));
	return 1;
}

static bench_noinline int lfht_lookup(struct lfht_table *t, const void *pd,
				      uint64_t key, uint64_t va, uint32_t len,
				      unsigned int access, int local,
				      struct bl_isge *isge)
{
	struct cds_lfht_iter iter;
	struct cds_lfht_node *node;
	struct bl_region *r;
	int ret = bl_check_args(len, access);

	if (bench_unlikely(ret))
		return ret;
	urcu_bp_read_lock();
	cds_lfht_lookup(t->ht, lfht_hash(key), lfht_match, &key, &iter);
	node = cds_lfht_iter_get_node(&iter);
	if (bench_unlikely(!node)) {
		ret = -ENOENT;
		goto out;
	}
	r = &bench_container_of(node, struct lfht_region, node)->r;
	ret = bl_check(r, pd, va, len, access, local, isge);
	if (bench_likely(!ret) && bench_unlikely(!lfht_get_unless_zero(r)))
		ret = -ENOENT;
out:
	urcu_bp_read_unlock();
	return ret;
}

static int lfht_rkey_ok(struct lfht_table *t, const void *pd, uint64_t key,
			uint64_t va, uint32_t len, unsigned int access,
			struct bl_isge *isge)
{
	return lfht_lookup(t, pd, key, va, len, access, 0, isge);
}

static int lfht_lkey_ok(struct lfht_table *t, const void *pd,
			const struct mrkey_sge *sge, unsigned int access,
			struct bl_isge *isge)
{
	return lfht_lookup(t, pd, bench_op_key(sge), sge->addr, sge->length,
			   access, 1, isge);
}

static bench_noinline void lfht_put_mr(void *mr)
{
	bl_put(mr);
}

static bench_noinline void lfht_get_mr(void *mr)
{
	bl_get(mr);
}

static inline void lfht_isge_put(struct bl_isge *isge)
{
	lfht_put_mr(isge->mr);
	isge->mr = NULL;
}

BENCH_DEFINE_LOOPS(lfht, struct bl_isge, lfht_rkey_ok, lfht_lkey_ok,
		   lfht_isge_put, lfht_get_mr, lfht_put_mr)

static unsigned long lfht_pow2(size_t n)
{
	unsigned long p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

static int lfht_create(const struct bench_table_cfg *cfg, void **tp)
{
	struct lfht_table *t = calloc(1, sizeof(*t));
	unsigned long size = lfht_pow2(cfg->nregions ? cfg->nregions : 1);

	if (!t)
		return -ENOMEM;
	t->buckets = size;
	t->ht = cds_lfht_new_flavor(size, size, 0,
				    CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
				    &urcu_bp_flavor, NULL);
	if (!t->ht) {
		free(t);
		return -ENOMEM;
	}
	atomic_fetch_add(&t->mem.bytes, sizeof(*t));
	*tp = t;
	return 0;
}

static void lfht_quiesce(void *tp)
{
	(void)tp;
	urcu_bp_barrier();
}

static int lfht_destroy(void *tp)
{
	struct lfht_table *t = tp;

	urcu_bp_barrier();
	if (cds_lfht_destroy(t->ht, NULL))
		return -EBUSY;
	free(t);
	return 0;
}

static int lfht_pd_alloc(void *tp, void **pdp)
{
	return bl_pd_alloc(&((struct lfht_table *)tp)->mem, pdp);
}

static int lfht_pd_free(void *tp, void *pd)
{
	return bl_pd_free(&((struct lfht_table *)tp)->mem, pd);
}

static int lfht_reg(void *tp, void *pd, const struct bench_region_cfg *rc,
		    void **mrp, uint64_t *keyp)
{
	struct lfht_table *t = tp;
	struct lfht_region *m = bench_calloc(&t->mem, sizeof(*m));
	struct cds_lfht_node *got;

	if (!m)
		return -ENOMEM;
	if (!lfht_rng) {
		uint64_t s = (uint64_t)(uintptr_t)&lfht_rng ^ bench_now_ns();

		lfht_rng = bench_splitmix64(&s) | 1;
	}
	bl_region_init(&m->r, pd, rc);
	m->t = t;
	cds_lfht_node_init(&m->node);
	do {
		do
			m->r.key = bench_xorshift64s(&lfht_rng);
		while (m->r.key == 0);
		urcu_bp_read_lock();
		got = cds_lfht_add_unique(t->ht, lfht_hash(m->r.key),
					  lfht_match, &m->r.key, &m->node);
		urcu_bp_read_unlock();
	} while (got != &m->node);
	*mrp = m;
	*keyp = m->r.key;
	return 0;
}

static void lfht_free_rcu(struct rcu_head *head)
{
	struct lfht_region *m =
		bench_container_of(head, struct lfht_region, rcu);

	lfht_tsan_acquire(m);
	bench_free(&m->t->mem, m, sizeof(*m));
}

static int lfht_dereg(void *tp, void *mr, unsigned int timeout_ms)
{
	struct lfht_table *t = tp;
	struct lfht_region *m = mr;
	int ret;

	urcu_bp_read_lock();
	ret = cds_lfht_del(t->ht, &m->node);
	urcu_bp_read_unlock();
	if (ret)
		return -ENOENT;
	ret = bl_drain(&m->r, timeout_ms);
	if (ret)
		return ret;
	/* A reader may still hold the pointer and fail its get: defer. */
	lfht_tsan_release(m);
	urcu_bp_call_rcu(&m->rcu, lfht_free_rcu);
	return 0;
}

static size_t lfht_mem_bytes(void *tp)
{
	struct lfht_table *t = tp;

	return atomic_load(&t->mem.bytes) +
	       t->buckets * sizeof(struct cds_lfht_node);
}

const struct bench_impl bench_impl_lfht = {
	.name = "lfht",
	.design = "liburcu cds_lfht keyed by rkey, RCU lookup, atomic ref",
	.flags = BENCH_IMPL_BASELINE | BENCH_IMPL_GROWS,
	.create = lfht_create,
	.destroy = lfht_destroy,
	.pd_alloc = lfht_pd_alloc,
	.pd_free = lfht_pd_free,
	.reg = lfht_reg,
	.dereg = lfht_dereg,
	.mr_get = lfht_get_mr,
	.mr_put = lfht_put_mr,
	.mem_bytes = lfht_mem_bytes,
	.quiesce = lfht_quiesce,
	.validate = lfht_validate,
	.loop_rkey = lfht_loop_rkey,
	.loop_rkey_chain = lfht_loop_rkey_chain,
	.loop_lkey = lfht_loop_lkey,
	.loop_getput = lfht_loop_getput,
};
