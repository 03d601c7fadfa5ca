/* SPDX-License-Identifier: MIT */
/*
 * floor: the physical floor of key validation. A bare load of the slot the
 * key's index names, then exactly the checks every other implementation
 * makes (full key compare, PD, bounds, access) and the isge fill. No lock,
 * no RCU section, no reference: nothing that makes a lookup safe against a
 * concurrent deregistration. Its get/put are empty calls, so in get-put
 * it measures the loop.
 *
 * Registration exists so that the same scenarios can run: a mutex, qib's
 * slot scan and key layout, a slot store; deregistration clears the slot
 * and frees at once (safe only because the benchmark never looks up a key
 * while it is being deregistered).
 */
#include <pthread.h>

#include "baseline.h"

struct floor_table {
	struct bl_region **slots;
	unsigned int shift;
	unsigned int bits;
	uint32_t nslots;
	/* Writer side, away from the read-mostly fields. */
	BENCH_ALIGNED pthread_mutex_t lock;
	uint32_t next;
	uint32_t gen;
	struct bench_counter mem;
};

static bench_noinline int floor_lookup(struct floor_table *t, const void *pd,
				       uint32_t key, uint64_t va, uint32_t len,
				       unsigned int access, int local,
				       struct bl_isge *isge)
{
	struct bl_region *r;
	int ret = bl_check_args(len, access);

	if (bench_unlikely(ret))
		return ret;
	r = t->slots[key >> t->shift];
	if (bench_unlikely(!r || r->key != key))
		return -ENOENT;
	return bl_check(r, pd, va, len, access, local, isge);
}

static int floor_rkey_ok(struct floor_table *t, const void *pd, uint32_t key,
			 uint64_t va, uint32_t len, unsigned int access,
			 struct bl_isge *isge)
{
	return floor_lookup(t, pd, key, va, len, access, 0, isge);
}

static int floor_lkey_ok(struct floor_table *t, const void *pd,
			 const struct mrkey_sge *sge, unsigned int access,
			 struct bl_isge *isge)
{
	return floor_lookup(t, pd, sge->lkey, sge->addr, sge->length, access, 1,
			    isge);
}

static inline void floor_isge_put(struct bl_isge *isge)
{
	(void)isge;
}

/*
 * get-put: an empty call each, kept by the asm, so the floor of get-put
 * is the loop and two calls, what every other implementation pays around
 * its atomics.
 */
static bench_noinline void floor_mr_get(void *mr)
{
	__asm__ __volatile__("" : : "r"(mr) : "memory");
}

static bench_noinline void floor_mr_put(void *mr)
{
	__asm__ __volatile__("" : : "r"(mr) : "memory");
}

BENCH_DEFINE_LOOPS(floor, struct bl_isge, floor_rkey_ok, floor_lkey_ok,
		   floor_isge_put, floor_mr_get, floor_mr_put)

static int floor_create(const struct bench_table_cfg *cfg, void **tp)
{
	struct floor_table *t;
	unsigned int bits = cfg->table_bits ? cfg->table_bits : 16;

	if (bits < 1 || bits > 23)
		return -EINVAL;
	t = bench_zalloc_aligned(sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->bits = bits;
	t->shift = 32 - bits;
	t->nslots = 1u << bits;
	t->slots = bench_calloc(&t->mem, sizeof(*t->slots) * t->nslots);
	if (!t->slots) {
		free(t);
		return -ENOMEM;
	}
	pthread_mutex_init(&t->lock, NULL);
	atomic_fetch_add(&t->mem.bytes, sizeof(*t));
	*tp = t;
	return 0;
}

static int floor_destroy(void *tp)
{
	struct floor_table *t = tp;

	pthread_mutex_destroy(&t->lock);
	bench_free(&t->mem, t->slots, sizeof(*t->slots) * t->nslots);
	free(t);
	return 0;
}

static int floor_pd_alloc(void *tp, void **pdp)
{
	return bl_pd_alloc(&((struct floor_table *)tp)->mem, pdp);
}

static int floor_pd_free(void *tp, void *pd)
{
	return bl_pd_free(&((struct floor_table *)tp)->mem, pd);
}

static int floor_reg(void *tp, void *pd, const struct bench_region_cfg *rc,
		     void **mrp, uint64_t *keyp)
{
	struct floor_table *t = tp;
	struct bl_region *r = bench_calloc(&t->mem, sizeof(*r));
	uint32_t i, n;

	if (!r)
		return -ENOMEM;
	bl_region_init(r, pd, rc);
	pthread_mutex_lock(&t->lock);
	for (i = t->next, n = 0; n < t->nslots; n++) {
		if (!t->slots[i])
			break;
		i = (i + 1) & (t->nslots - 1);
	}
	if (n == t->nslots) {
		pthread_mutex_unlock(&t->lock);
		bench_free(&t->mem, r, sizeof(*r));
		return -ENOMEM;
	}
	t->next = (i + 1) & (t->nslots - 1);
	r->key = bl_qib_key(i, ++t->gen, t->bits);
	if (r->key == 0)
		r->key = bl_qib_key(i, ++t->gen, t->bits);
	t->slots[i] = r;
	pthread_mutex_unlock(&t->lock);
	*mrp = r;
	*keyp = r->key;
	return 0;
}

static int floor_dereg(void *tp, void *mr, unsigned int timeout_ms)
{
	struct floor_table *t = tp;
	struct bl_region *r = mr;

	(void)timeout_ms;
	pthread_mutex_lock(&t->lock);
	t->slots[r->key >> t->shift] = NULL;
	pthread_mutex_unlock(&t->lock);
	bench_free(&t->mem, r, sizeof(*r));
	return 0;
}

static size_t floor_mem_bytes(void *tp)
{
	return atomic_load(&((struct floor_table *)tp)->mem.bytes);
}

const struct bench_impl bench_impl_floor = {
	.name = "floor",
	.design = "bare slot load + the same checks, no lock, no reference",
	.flags = BENCH_IMPL_BASELINE | BENCH_IMPL_NOREF,
	.create = floor_create,
	.destroy = floor_destroy,
	.pd_alloc = floor_pd_alloc,
	.pd_free = floor_pd_free,
	.reg = floor_reg,
	.dereg = floor_dereg,
	.mr_get = floor_mr_get,
	.mr_put = floor_mr_put,
	.mem_bytes = floor_mem_bytes,
	.validate = floor_validate,
	.loop_rkey = floor_loop_rkey,
	.loop_rkey_chain = floor_loop_rkey_chain,
	.loop_lkey = floor_loop_lkey,
	.loop_getput = floor_loop_getput,
};
