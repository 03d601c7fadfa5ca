/* SPDX-License-Identifier: MIT */
/*
 * rbtree-mutex: libfabric's ofi_mr_map (prov/util/src/util_mr_map.c): the
 * registered regions in a red-black tree keyed by the key
 * (ofi_rbmap_insert / ofi_rbmap_find / ofi_rbmap_delete), every map
 * operation made under the domain's lock, here a pthread mutex.
 * ofi_mr_map_verify() checks access and bounds after the find.
 *
 * Added so that it runs the same scenarios as the others: the seed's
 * reference protocol (an atomic count taken under the lock, completion on
 * the last put; libfabric has no count, its users keep the MR alive), and
 * keys drawn at random (xorshift64*, retried on a collision; libfabric
 * counts them up in FI_MR_BASIC mode and lets the user pick them in
 * FI_MR_SCALABLE mode).
 *
 * Generous to the baseline: the tree node is embedded in the region and
 * the compare is inline. ofi_rbmap allocates nodes apart from their data
 * and compares through a callback, one more cache line and one indirect
 * call per level.
 */
#include <pthread.h>

#include "baseline.h"
#include "rbtree.h"

struct rbm_region {
	struct bl_region r;
	struct bench_rb_node node;
};

struct rbm_table {
	pthread_mutex_t lock;
	struct bench_rb_tree tree;
	uint64_t rng;
	struct bench_counter mem;
};

static bench_noinline int rbm_lookup(struct rbm_table *t, const void *pd,
				     uint64_t key, uint64_t va, uint32_t len,
				     unsigned int access, int local,
				     struct bl_isge *isge)
{
	struct bench_rb_node *n;
	struct bl_region *r;
	int ret = bl_check_args(len, access);

	if (bench_unlikely(ret))
		return ret;
	pthread_mutex_lock(&t->lock);
	n = bench_rb_find(&t->tree, key);
	if (bench_unlikely(!n)) {
		ret = -ENOENT;
		goto out;
	}
	r = &bench_container_of(n, struct rbm_region, node)->r;
	ret = bl_check(r, pd, va, len, access, local, isge);
	if (bench_likely(!ret))
		bl_get_locked(r);
out:
	pthread_mutex_unlock(&t->lock);
	return ret;
}

static int rbm_rkey_ok(struct rbm_table *t, const void *pd, uint64_t key,
		       uint64_t va, uint32_t len, unsigned int access,
		       struct bl_isge *isge)
{
	return rbm_lookup(t, pd, key, va, len, access, 0, isge);
}

static int rbm_lkey_ok(struct rbm_table *t, const void *pd,
		       const struct mrkey_sge *sge, unsigned int access,
		       struct bl_isge *isge)
{
	return rbm_lookup(t, pd, bench_op_key(sge), sge->addr, sge->length,
			  access, 1, isge);
}

static bench_noinline void rbm_put_mr(void *mr)
{
	bl_put(mr);
}

static bench_noinline void rbm_get_mr(void *mr)
{
	bl_get(mr);
}

static inline void rbm_isge_put(struct bl_isge *isge)
{
	rbm_put_mr(isge->mr);
	isge->mr = NULL;
}

BENCH_DEFINE_LOOPS(rbm, struct bl_isge, rbm_rkey_ok, rbm_lkey_ok, rbm_isge_put,
		   rbm_get_mr, rbm_put_mr)

static int rbm_create(const struct bench_table_cfg *cfg, void **tp)
{
	struct rbm_table *t = calloc(1, sizeof(*t));

	(void)cfg;
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	bench_rb_init(&t->tree);
	t->rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)t;
	atomic_fetch_add(&t->mem.bytes, sizeof(*t));
	*tp = t;
	return 0;
}

static int rbm_destroy(void *tp)
{
	struct rbm_table *t = tp;

	if (t->tree.count)
		return -EBUSY;
	pthread_mutex_destroy(&t->lock);
	free(t);
	return 0;
}

static int rbm_pd_alloc(void *tp, void **pdp)
{
	return bl_pd_alloc(&((struct rbm_table *)tp)->mem, pdp);
}

static int rbm_pd_free(void *tp, void *pd)
{
	return bl_pd_free(&((struct rbm_table *)tp)->mem, pd);
}

/* ofi_mr_map_insert(). */
static int rbm_reg(void *tp, void *pd, const struct bench_region_cfg *rc,
		   void **mrp, uint64_t *keyp)
{
	struct rbm_table *t = tp;
	struct rbm_region *m = bench_calloc(&t->mem, sizeof(*m));

	if (!m)
		return -ENOMEM;
	bl_region_init(&m->r, pd, rc);
	pthread_mutex_lock(&t->lock);
	do {
		do
			m->r.key = bench_xorshift64s(&t->rng);
		while (m->r.key == 0);
		m->node.key = m->r.key;
	} while (bench_rb_insert(&t->tree, &m->node));
	pthread_mutex_unlock(&t->lock);
	*mrp = m;
	*keyp = m->r.key;
	return 0;
}

/* ofi_mr_map_remove() + the seed's wait. */
static int rbm_dereg(void *tp, void *mr, unsigned int timeout_ms)
{
	struct rbm_table *t = tp;
	struct rbm_region *m = mr;
	int ret;

	pthread_mutex_lock(&t->lock);
	bench_rb_erase(&t->tree, &m->node);
	pthread_mutex_unlock(&t->lock);
	ret = bl_drain(&m->r, timeout_ms);
	if (ret)
		return ret;
	bench_free(&t->mem, m, sizeof(*m));
	return 0;
}

/*
 * Fast registration in a map keyed by the whole key: re-keying is a
 * remove and an insert under the mutex; here the region is inserted under
 * its new key and removed again at the invalidation.
 */
static int rbm_fr_alloc(void *tp, void *pd, void **mrp)
{
	struct rbm_table *t = tp;
	struct rbm_region *m = bench_calloc(&t->mem, sizeof(*m));
	struct bench_region_cfg rc = { 0 };

	if (!m)
		return -ENOMEM;
	bl_region_init(&m->r, pd, &rc);
	pthread_mutex_lock(&t->lock);
	do
		m->r.key = (uint32_t)(bench_xorshift64s(&t->rng) >> 32);
	while ((m->r.key & ~0xffu) == 0);
	pthread_mutex_unlock(&t->lock);
	*mrp = m;
	return 0;
}

static int rbm_fr_cycle(void *tp, void *pd, void *mr,
			const struct bench_region_cfg *rc, uint8_t byte)
{
	struct rbm_table *t = tp;
	struct rbm_region *m = mr;
	struct bench_rb_node *n;
	uint32_t key = (m->r.key & ~0xffu) | byte;

	(void)pd;
	pthread_mutex_lock(&t->lock);
	m->r.key = key;
	m->r.addr = rc->addr;
	m->r.iova = rc->iova;
	m->r.length = rc->length;
	m->r.host = rc->host;
	m->r.access = rc->access;
	m->node.key = key;
	if (bench_rb_insert(&t->tree, &m->node)) {
		pthread_mutex_unlock(&t->lock);
		return -EEXIST;
	}
	pthread_mutex_unlock(&t->lock);

	pthread_mutex_lock(&t->lock);
	n = bench_rb_find(&t->tree, key);
	if (n)
		bench_rb_erase(&t->tree, n);
	pthread_mutex_unlock(&t->lock);
	return n ? 0 : -EINVAL;
}

static int rbm_fr_free(void *tp, void *mr)
{
	struct rbm_table *t = tp;

	bench_free(&t->mem, mr, sizeof(struct rbm_region));
	return 0;
}

static size_t rbm_mem_bytes(void *tp)
{
	return atomic_load(&((struct rbm_table *)tp)->mem.bytes);
}

const struct bench_impl bench_impl_rbtree_mutex = {
	.name = "rbtree-mutex",
	.design = "libfabric ofi_mr_map: red-black tree under a mutex",
	.flags = BENCH_IMPL_BASELINE | BENCH_IMPL_GROWS,
	.create = rbm_create,
	.destroy = rbm_destroy,
	.pd_alloc = rbm_pd_alloc,
	.pd_free = rbm_pd_free,
	.reg = rbm_reg,
	.dereg = rbm_dereg,
	.fr_alloc = rbm_fr_alloc,
	.fr_cycle = rbm_fr_cycle,
	.fr_free = rbm_fr_free,
	.mr_get = rbm_get_mr,
	.mr_put = rbm_put_mr,
	.mem_bytes = rbm_mem_bytes,
	.validate = rbm_validate,
	.loop_rkey = rbm_loop_rkey,
	.loop_rkey_chain = rbm_loop_rkey_chain,
	.loop_lkey = rbm_loop_lkey,
	.loop_getput = rbm_loop_getput,
};
