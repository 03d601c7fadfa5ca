/* SPDX-License-Identifier: MIT */
/*
 * qib-2012: the seed's design, the Linux qib driver's key table as of the
 * 2012 fix "IB/qib: Avoid returning EBUSY from MR deregister"
 * (drivers/infiniband/hw/qib/qib_keys.c): one spinlock around every
 * lookup, registration and unpublish, an array of region pointers indexed
 * by the key's top bits, one atomic reference count per region taken under
 * the lock, and a completion that deregistration waits on.
 *
 * Faithful in: qib_alloc_lkey()'s scan from rkt->next and its table-wide
 * generation counter, qib_lkey_ok()/qib_rkey_ok()'s lock around slot load,
 * checks and atomic_inc, and the dereg protocol (unpublish, put, wait for
 * completion with a timeout). Same checks as every other implementation
 * here. Different in: a pthread spinlock in user space can be preempted
 * while held (the kernel's spin_lock_irqsave cannot), which makes runs
 * with more threads than CPUs worse for this design than in a kernel.
 */
#include <pthread.h>

#include "baseline.h"

struct qib_table {
	pthread_spinlock_t lock;
	struct bl_region **table;
	unsigned int shift;
	unsigned int bits;
	uint32_t max;
	uint32_t next;
	uint32_t gen;
	struct bench_counter mem;
};

static bench_noinline int qib_lookup(struct qib_table *t, const void *pd,
				     uint32_t key, uint64_t va, uint32_t len,
				     unsigned int access, int local,
				     struct bl_isge *isge)
{
	struct bl_region *r;
	int ret = bl_check_args(len, access);

	if (bench_unlikely(ret))
		return ret;
	pthread_spin_lock(&t->lock);
	r = t->table[key >> t->shift];
	if (bench_unlikely(!r || r->key != key)) {
		ret = -ENOENT;
		goto out;
	}
	ret = bl_check(r, pd, va, len, access, local, isge);
	if (bench_likely(!ret))
		bl_get_locked(r);
out:
	pthread_spin_unlock(&t->lock);
	return ret;
}

static int qib_rkey_ok(struct qib_table *t, const void *pd, uint32_t key,
		       uint64_t va, uint32_t len, unsigned int access,
		       struct bl_isge *isge)
{
	return qib_lookup(t, pd, key, va, len, access, 0, isge);
}

static int qib_lkey_ok(struct qib_table *t, const void *pd,
		       const struct mrkey_sge *sge, unsigned int access,
		       struct bl_isge *isge)
{
	return qib_lookup(t, pd, sge->lkey, sge->addr, sge->length, access, 1,
			  isge);
}

static bench_noinline void qib_put_mr(void *mr)
{
	bl_put(mr);
}

static bench_noinline void qib_get_mr(void *mr)
{
	bl_get(mr);
}

static inline void qib_isge_put(struct bl_isge *isge)
{
	qib_put_mr(isge->mr);
	isge->mr = NULL;
}

BENCH_DEFINE_LOOPS(qib, struct bl_isge, qib_rkey_ok, qib_lkey_ok, qib_isge_put,
		   qib_get_mr, qib_put_mr)

static int qib_create(const struct bench_table_cfg *cfg, void **tp)
{
	struct qib_table *t;
	unsigned int bits = cfg->table_bits ? cfg->table_bits : 16;

	if (bits < 1 || bits > 23)
		return -EINVAL;
	t = bench_zalloc_aligned(sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->bits = bits;
	t->shift = 32 - bits;
	t->max = 1u << bits;
	t->table = bench_calloc(&t->mem, sizeof(*t->table) * t->max);
	if (!t->table) {
		free(t);
		return -ENOMEM;
	}
	pthread_spin_init(&t->lock, PTHREAD_PROCESS_PRIVATE);
	atomic_fetch_add(&t->mem.bytes, sizeof(*t));
	*tp = t;
	return 0;
}

static int qib_destroy(void *tp)
{
	struct qib_table *t = tp;

	pthread_spin_destroy(&t->lock);
	bench_free(&t->mem, t->table, sizeof(*t->table) * t->max);
	free(t);
	return 0;
}

static int qib_pd_alloc(void *tp, void **pdp)
{
	return bl_pd_alloc(&((struct qib_table *)tp)->mem, pdp);
}

static int qib_pd_free(void *tp, void *pd)
{
	return bl_pd_free(&((struct qib_table *)tp)->mem, pd);
}

/* qib_alloc_lkey(). */
static int qib_reg(void *tp, void *pd, const struct bench_region_cfg *rc,
		   void **mrp, uint64_t *keyp)
{
	struct qib_table *t = tp;
	struct bl_region *r = bench_calloc(&t->mem, sizeof(*r));
	uint32_t i, n;

	if (!r)
		return -ENOMEM;
	bl_region_init(r, pd, rc);
	pthread_spin_lock(&t->lock);
	i = t->next;
	n = i;
	for (;;) {
		if (!t->table[i])
			break;
		i = (i + 1) & (t->max - 1);
		if (i == n) {
			pthread_spin_unlock(&t->lock);
			bench_free(&t->mem, r, sizeof(*r));
			return -ENOMEM;
		}
	}
	t->next = (i + 1) & (t->max - 1);
	t->gen++;
	r->key = bl_qib_key(i, t->gen, t->bits);
	if (r->key == 0) {
		/* Key 0 is the DMA region's. */
		r->key |= 1u << 8;
		t->gen++;
	}
	t->table[i] = r;
	pthread_spin_unlock(&t->lock);
	*mrp = r;
	*keyp = r->key;
	return 0;
}

/* qib_free_lkey() + qib_dereg_mr(). */
static int qib_dereg(void *tp, void *mr, unsigned int timeout_ms)
{
	struct qib_table *t = tp;
	struct bl_region *r = mr;
	int ret;

	pthread_spin_lock(&t->lock);
	t->table[r->key >> t->shift] = NULL;
	pthread_spin_unlock(&t->lock);
	ret = bl_drain(r, timeout_ms);
	if (ret)
		return ret;
	bench_free(&t->mem, r, sizeof(*r));
	return 0;
}

/*
 * Fast registration rdmavt's way (rvt_fast_reg_mr(), rvt_invalidate_rkey()),
 * on this table: under the table lock, rewrite the key byte, translation
 * and access of the region and mark it valid; invalidation looks the key
 * up under the lock, checks its validity and PD, and clears the mark.
 * Validity is a bit of the access word that no request asks for, so the
 * lookups above are unchanged (they do not check it: this scenario makes
 * no lookups).
 */
#define QIB_FR_VALID 0x80000000u

static int qib_fr_alloc(void *tp, void *pd, void **mrp)
{
	struct bench_region_cfg rc = { 0 };
	uint64_t key;

	return qib_reg(tp, pd, &rc, mrp, &key);
}

static int qib_fr_cycle(void *tp, void *pd, void *mr,
			const struct bench_region_cfg *rc, uint8_t byte)
{
	struct qib_table *t = tp;
	struct bl_region *r = mr, *x;
	uint32_t key;

	pthread_spin_lock(&t->lock);
	key = (r->key & ~0xffu) | byte;
	r->key = key;
	r->addr = rc->addr;
	r->iova = rc->iova;
	r->length = rc->length;
	r->host = rc->host;
	r->access = rc->access | QIB_FR_VALID;
	pthread_spin_unlock(&t->lock);

	pthread_spin_lock(&t->lock);
	x = t->table[key >> t->shift];
	if (!x || x->key != key || !(x->access & QIB_FR_VALID) || x->pd != pd) {
		pthread_spin_unlock(&t->lock);
		return -EINVAL;
	}
	x->access &= ~QIB_FR_VALID;
	pthread_spin_unlock(&t->lock);
	return 0;
}

static int qib_fr_free(void *tp, void *mr)
{
	return qib_dereg(tp, mr, 5000);
}

static size_t qib_mem_bytes(void *tp)
{
	return atomic_load(&((struct qib_table *)tp)->mem.bytes);
}

const struct bench_impl bench_impl_qib2012 = {
	.name = "qib-2012",
	.design = "the seed: spinlock around the lookup, one atomic count",
	.flags = BENCH_IMPL_BASELINE,
	.create = qib_create,
	.destroy = qib_destroy,
	.pd_alloc = qib_pd_alloc,
	.pd_free = qib_pd_free,
	.reg = qib_reg,
	.dereg = qib_dereg,
	.fr_alloc = qib_fr_alloc,
	.fr_cycle = qib_fr_cycle,
	.fr_free = qib_fr_free,
	.mr_get = qib_get_mr,
	.mr_put = qib_put_mr,
	.mem_bytes = qib_mem_bytes,
	.validate = qib_validate,
	.loop_rkey = qib_loop_rkey,
	.loop_rkey_chain = qib_loop_rkey_chain,
	.loop_lkey = qib_loop_lkey,
	.loop_getput = qib_loop_getput,
};
