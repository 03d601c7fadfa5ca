// SPDX-License-Identifier: MIT
/*
 * Validation (the hot path) and scatter/gather state.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

/* Index of the segment holding byte @off of @mr. */
static inline uint32_t mrkey__seg_find(const struct mrkey_mr *mr, uint64_t off)
{
	uint32_t lo, hi;

	if (mrkey__likely(mr->seg_shift != MRKEY__SEG_BSEARCH))
		return (uint32_t)(off >> mr->seg_shift);
	/* Largest m with segs[m].off <= off; segs[0].off == 0. */
	lo = 0;
	hi = mr->nsegs - 1;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo + 1) / 2;

		if (mr->segs[mid].off <= off)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* Point @isge at byte @off of @mr, @len bytes to go. */
static inline void mrkey__isge_fill(struct mrkey_isge *isge,
				    struct mrkey_mr *mr, uint64_t off,
				    uint32_t len)
{
	isge->mr = mr;
	isge->sge_length = len;
	isge->reserved = 0;
	if (mr->nsegs == 0) {
		/* The DMA region: @off is the host address itself. */
		isge->vaddr = (void *)(uintptr_t)off;
		isge->length = len;
		isge->seg = 0;
	} else {
		uint32_t m = mrkey__seg_find(mr, off);
		const struct mrkey__seg *s = &mr->segs[m];
		uint64_t in = off - s->off;
		uint64_t avail = s->len - in;

		isge->vaddr = s->vaddr + in;
		isge->length = avail < len ? (uint32_t)avail : len;
		isge->seg = m;
	}
}

/*
 * The common lookup. @base_remote picks the bounds base: iova for rkeys,
 * addr for lkeys. On success holds one reference and fills @isge.
 */
static inline int mrkey__key_ok(struct mrkey_table *t, struct mrkey_pd *pd,
				uint32_t key, uint64_t va, uint32_t len,
				unsigned int access, struct mrkey_isge *isge,
				bool remote)
{
	struct mrkey_mr *mr;
	uint64_t off;
	int err;

	if (mrkey__unlikely(!t || !pd || !isge || !len ||
			    (access & ~MRKEY_ACCESS_ALL)))
		return -EINVAL;

	mrkey__read_lock();
	if (mrkey__likely(key != 0))
		mr = atomic_load_explicit(
			&t->slots[(key >> t->idx_shift) & t->idx_mask],
			memory_order_acquire);
	else
		mr = atomic_load_explicit(&t->dma_mr, memory_order_acquire);

	err = -ENOENT;
	if (mrkey__unlikely(!mr || mr->lkey != key))
		goto out;
	err = -EPERM;
	if (mrkey__unlikely(mr->pd != pd))
		goto out;
	err = -ERANGE;
	if (mrkey__likely(mr->nsegs)) {
		uint64_t base = remote ? mr->iova : mr->addr;

		off = va - base;
		if (mrkey__unlikely(va < base || len > mr->length ||
				    off > mr->length - len))
			goto out;
	} else {
		off = va;
		if (mrkey__unlikely(va > UINTPTR_MAX - len + 1 ||
				    va > UINT64_MAX - len + 1))
			goto out;
	}
	err = -EACCES;
	if (mrkey__unlikely((mr->access & access) != access))
		goto out;
	err = -ENOENT;
	if (mrkey__unlikely(!mrkey__ref_get_not_zero(mr)))
		goto out;
	/* Unpublished after our load: fail rather than outlive the key. */
	if (mrkey__unlikely(!atomic_load_explicit(&mr->published,
						  memory_order_seq_cst))) {
		mrkey__read_unlock();
		mrkey__ref_put(mr);
		return -ENOENT;
	}
	mrkey__read_unlock();
	mrkey__isge_fill(isge, mr, off, len);
	return 0;
out:
	mrkey__read_unlock();
	return err;
}

int mrkey_lkey_ok(struct mrkey_table *table, struct mrkey_pd *pd,
		  const struct mrkey_sge *sge, unsigned int access,
		  struct mrkey_isge *isge)
{
	if (mrkey__unlikely(!sge))
		return -EINVAL;
	return mrkey__key_ok(table, pd, sge->lkey, sge->addr, sge->length,
			     access, isge, false);
}

int mrkey_rkey_ok(struct mrkey_table *table, struct mrkey_pd *pd,
		  uint32_t rkey, uint64_t vaddr, uint32_t len,
		  unsigned int access, struct mrkey_isge *isge)
{
	return mrkey__key_ok(table, pd, rkey, vaddr, len, access, isge, true);
}

void mrkey_isge_put(struct mrkey_isge *isge)
{
	struct mrkey_mr *mr = isge->mr;

	isge->mr = NULL;
	if (mr)
		mrkey__ref_put(mr);
}

/* ---- scatter/gather state ---------------------------------------------- */

void mrkey_ss_init(struct mrkey_sge_state *ss, struct mrkey_isge *list,
		   unsigned int n)
{
	ss->list = list;
	ss->n = list ? n : 0;
	ss->cur = 0;
}

/* Move the cursor @n bytes on (n <= isge->length). */
static void mrkey__ss_advance(struct mrkey_sge_state *ss, uint32_t n)
{
	struct mrkey_isge *isge = &ss->list[ss->cur];
	const struct mrkey_mr *mr = isge->mr;

	isge->vaddr = (uint8_t *)isge->vaddr + n;
	isge->length -= n;
	isge->sge_length -= n;
	if (isge->sge_length == 0) {
		ss->cur++;
		return;
	}
	if (isge->length == 0 && mr->nsegs) {
		const struct mrkey__seg *s = &mr->segs[++isge->seg];

		isge->vaddr = s->vaddr;
		isge->length = s->len < isge->sge_length ? (uint32_t)s->len
							 : isge->sge_length;
	}
}

static size_t mrkey__ss_copy(struct mrkey_sge_state *ss, uint8_t *buf,
			     size_t len, bool in)
{
	size_t done = 0;

	while (done < len && ss->cur < ss->n) {
		struct mrkey_isge *isge = &ss->list[ss->cur];
		size_t n = isge->length;

		if (!isge->sge_length) {
			ss->cur++;
			continue;
		}
		if (n > len - done)
			n = len - done;
		if (in)
			memcpy(isge->vaddr, buf + done, n);
		else
			memcpy(buf + done, isge->vaddr, n);
		mrkey__ss_advance(ss, (uint32_t)n);
		done += n;
	}
	return done;
}

size_t mrkey_ss_copy_in(struct mrkey_sge_state *ss, const void *src,
			size_t len)
{
	return mrkey__ss_copy(ss, (uint8_t *)(uintptr_t)src, len, true);
}

size_t mrkey_ss_copy_out(struct mrkey_sge_state *ss, void *dst, size_t len)
{
	return mrkey__ss_copy(ss, dst, len, false);
}

uint64_t mrkey_ss_remaining(const struct mrkey_sge_state *ss)
{
	uint64_t left = 0;
	unsigned int i;

	for (i = ss->cur; i < ss->n; i++)
		left += ss->list[i].sge_length;
	return left;
}

void mrkey_ss_put(struct mrkey_sge_state *ss)
{
	unsigned int i;

	for (i = 0; i < ss->n; i++)
		mrkey_isge_put(&ss->list[i]);
	ss->n = 0;
	ss->cur = 0;
}
