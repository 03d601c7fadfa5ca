/* SPDX-License-Identifier: MIT */
/*
 * What the baseline designs share: the region record, the validation checks
 * and the reference protocol. Only the index (how a key finds its region)
 * and the synchronisation around it differ between baselines, so that is
 * all their ratios measure.
 *
 * The checks are mrkey's, in mrkey's order and with its errors: length 0 or
 * an unknown access bit (-EINVAL), no such key (-ENOENT), another PD
 * (-EPERM), range outside the region or overflowing (-ERANGE), an access
 * bit not granted (-EACCES). A region is one segment, so the translation is
 * one addition; mrkey's regions in the benchmark are one segment too.
 */
#ifndef MRKEY_BENCH_BASELINE_H
#define MRKEY_BENCH_BASELINE_H

#include <mrkey/common.h>

#include "../impl.h"

struct bl_pd {
	unsigned int id;
};

struct bl_region {
	uint64_t key; /* 32 bits for the slot designs, 64 for the maps */
	uint32_t access;
	const struct bl_pd *pd;
	uint64_t addr; /* lkey space */
	uint64_t iova; /* rkey space */
	uint64_t length;
	char *host;
	/*
	 * The seed's protocol: 1 for the caller's handle, 1 for the table
	 * while published, 1 per transient holder; reaching 0 completes @comp.
	 */
	_Atomic uint32_t refcount;
	struct bench_completion comp;
};

/* A validated SGE, as struct mrkey_isge holds it. */
struct bl_isge {
	struct bl_region *mr;
	void *vaddr;
	uint32_t length;
	uint32_t sge_length;
};

/* Argument checks that come before any lookup. */
static inline int bl_check_args(uint32_t len, unsigned int access)
{
	if (bench_unlikely(len == 0 ||
			   (access & ~(unsigned int)MRKEY_ACCESS_ALL)))
		return -EINVAL;
	return 0;
}

/*
 * PD, bounds (against @addr for lkeys, @iova for rkeys, without overflow)
 * and access; fills @isge but takes no reference.
 */
static inline int bl_check(struct bl_region *r, const void *pd, uint64_t va,
			   uint32_t len, unsigned int access, int local,
			   struct bl_isge *isge)
{
	uint64_t base = local ? r->addr : r->iova;
	uint64_t off;

	if (bench_unlikely(r->pd != pd))
		return -EPERM;
	off = va - base;
	if (bench_unlikely(va < base || off > r->length ||
			   len > r->length - off))
		return -ERANGE;
	if (bench_unlikely((r->access & access) != access))
		return -EACCES;
	isge->mr = r;
	isge->vaddr = r->host + off;
	isge->length = len;
	isge->sge_length = len;
	return 0;
}

static inline void bl_region_init(struct bl_region *r, const void *pd,
				  const struct bench_region_cfg *rc)
{
	r->access = rc->access;
	r->pd = pd;
	r->addr = rc->addr;
	r->iova = rc->iova;
	r->length = rc->length;
	r->host = rc->host;
	atomic_store_explicit(&r->refcount, 2, memory_order_relaxed);
	bench_completion_init(&r->comp);
}

/* Under the baseline's lock, which already orders it. */
static inline void bl_get_locked(struct bl_region *r)
{
	atomic_fetch_add_explicit(&r->refcount, 1, memory_order_relaxed);
}

static inline void bl_get(struct bl_region *r)
{
	atomic_fetch_add_explicit(&r->refcount, 1, memory_order_relaxed);
}

static inline void bl_put(struct bl_region *r)
{
	if (atomic_fetch_sub_explicit(&r->refcount, 1, memory_order_acq_rel) ==
	    1)
		bench_complete(&r->comp);
}

/*
 * Deregistration after the key was unpublished: drop the table's and the
 * caller's references and wait for the transient ones, like the seed's
 * qib_dereg_mr(). Returns 0 when drained (the caller frees), -EBUSY on
 * timeout (the region is then leaked: the benchmark never lets it happen
 * and reports it as an error).
 */
static inline int bl_drain(struct bl_region *r, unsigned int timeout_ms)
{
	if (atomic_fetch_sub_explicit(&r->refcount, 2, memory_order_acq_rel) ==
	    2)
		return 0;
	return bench_completion_wait(&r->comp, timeout_ms) ? 0 : -EBUSY;
}

static inline void bl_isge_put(struct bl_isge *isge)
{
	bl_put(isge->mr);
	isge->mr = NULL;
}

/* The PD helpers every baseline uses. */
static inline int bl_pd_alloc(struct bench_counter *mem, void **pdp)
{
	struct bl_pd *pd = bench_calloc(mem, sizeof(*pd));

	if (!pd)
		return -ENOMEM;
	*pdp = pd;
	return 0;
}

static inline int bl_pd_free(struct bench_counter *mem, void *pd)
{
	bench_free(mem, pd, sizeof(struct bl_pd));
	return 0;
}

/* qib's key layout: index in the top @bits bits, generation above the
 * consumer's (here always zero) low byte; never 0. */
static inline uint32_t bl_qib_key(uint32_t idx, uint32_t gen, unsigned int bits)
{
	return (idx << (32 - bits)) | ((gen & ((1u << (24 - bits)) - 1)) << 8);
}

#endif /* MRKEY_BENCH_BASELINE_H */
