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
	const struct mrkey__mrx *x = mr->x;
	uint32_t lo, hi;

	if (mrkey__likely(x->seg_shift != MRKEY__SEG_BSEARCH))
		return (uint32_t)(off >> x->seg_shift);
	/* Largest m with segs[m].off <= off; segs[0].off == 0. */
	lo = 0;
	hi = x->nsegs - 1;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo + 1) / 2;

		if (mrkey__segs(mr)[mid].off <= off)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* Point @isge at byte @off of @mr, @len bytes to go. */
static inline void mrkey__isge_fill(struct mrkey_isge *isge,
				    struct mrkey_mr *mr, uint64_t off,
				    uint32_t len, uint32_t flags)
{
	isge->mr = mr;
	isge->sge_length = len;
	isge->flags = flags;
	if (mrkey__likely(mr->kind == MRKEY__KIND_ONE)) {
		/* One segment: everything is on the record's line. */
		isge->vaddr = mr->vbase + off;
		isge->length = len;
		isge->seg = 0;
	} else if (mr->kind == MRKEY__KIND_DMA) {
		/* The DMA region: @off is the host address itself. */
		isge->vaddr = (void *)(uintptr_t)off;
		isge->length = len;
		isge->seg = 0;
	} else {
		uint32_t m = mrkey__seg_find(mr, off);
		const struct mrkey__seg *s = &mrkey__segs(mr)[m];
		uint64_t in = off - s->off;
		uint64_t avail = s->len - in;

		isge->vaddr = s->vaddr + in;
		isge->length = avail < len ? (uint32_t)avail : len;
		isge->seg = m;
	}
}

static inline bool mrkey__bad_args(const struct mrkey_table *t,
				   const struct mrkey_pd *pd,
				   const struct mrkey_isge *isge,
				   unsigned int access)
{
	return !t || !pd || !isge || (access & ~MRKEY_ACCESS_ALL);
}

/*
 * A zero-byte request (IBTA C9-88: a zero-length RDMA READ or WRITE need
 * not carry a valid key): succeeds with an isge that names no region and
 * holds no reference; the SG-state functions skip it.
 */
static inline void mrkey__isge_empty(struct mrkey_isge *isge)
{
	isge->mr = NULL;
	isge->vaddr = NULL;
	isge->length = 0;
	isge->sge_length = 0;
	isge->seg = 0;
	isge->flags = 0;
}

/*
 * Check a live registration of @mr (the caller holds a reference, or is
 * in the read-side section in which it saw the key published): the PD,
 * the range (against iova when @remote, addr otherwise) and the access.
 */
static inline int mrkey__check(const struct mrkey_mr *mr,
			       const struct mrkey_pd *pd, uint64_t va,
			       uint64_t len, unsigned int access, bool remote,
			       uint64_t *offp)
{
	uint64_t off;

	if (mrkey__unlikely(mr->pd != pd))
		return -EPERM;
	if (mrkey__likely(mr->kind != MRKEY__KIND_DMA)) {
		uint64_t base = remote ? mr->iova : mr->addr;

		off = va - base;
		if (mrkey__unlikely(va < base || len > mr->length ||
				    off > mr->length - len))
			return -ERANGE;
	} else {
		off = va;
		if (mrkey__unlikely(va > UINTPTR_MAX - len + 1 ||
				    va > UINT64_MAX - len + 1))
			return -ERANGE;
	}
	if (mrkey__unlikely((mr->access & access) != access))
		return -EACCES;
	*offp = off;
	return 0;
}

/*
 * A get on a region whose count is split: inside a read-side section, so
 * that a collapse (which waits for a grace period after clearing SPLIT)
 * cannot run, nor the slot be reused, while we are at its shards.
 */
__attribute__((noinline)) int
mrkey__get_split(struct mrkey_table *t, struct mrkey_mr *mr, uint32_t key)
{
	uint64_t kc;
	int err = -ENOENT;

	mrkey__read_lock();
	kc = atomic_load_explicit(&mr->kc, memory_order_acquire);
	if (mrkey__kc_names(kc, key) && !(kc & MRKEY__KC_MW)) {
		if (!(kc & MRKEY__KC_SPLIT)) {
			err = 1; /* collapsed meanwhile: take it atomically */
		} else {
			mrkey__pc_add(t, mr, 1);
			/* Unpublished after our add? Then it must fail. */
			kc = atomic_load_explicit(&mr->kc,
						  memory_order_seq_cst);
			if (mrkey__likely(mrkey__kc_names(kc, key)))
				err = 0;
			else
				mrkey__pc_add(t, mr, -1);
		}
	}
	mrkey__read_unlock();
	return err;
}

/* The bytes an isge describes of a @len-byte request (mrkey_key_ok()). */
static inline uint32_t mrkey__isge_len(uint64_t len)
{
	return len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
}

/* Which validation asks: what a window key may resolve to. */
enum mrkey__via {
	MRKEY__VIA_LKEY, /* a local SGE: never a window */
	MRKEY__VIA_RKEY, /* a remote request: type 1 windows */
	MRKEY__VIA_QP,   /* a remote request on a QP: its type 2 ones too */
};

/* A window's binding, as one reader saw it (see mw.c). */
struct mrkey__mwv {
	struct mrkey_pd *pd;
	uint64_t roff; /* region offset of the window's byte 0 */
	uint64_t base; /* where requests count from */
	uint64_t length;
	struct mrkey_mr *target;
	uint32_t qpn;
	uint8_t access;
	uint8_t rflags;
};

static inline void mrkey__mw_read(const struct mrkey_mr *w,
				  struct mrkey__mwv *v)
{
	v->pd = __atomic_load_n(&w->pd, __ATOMIC_RELAXED);
	v->roff = __atomic_load_n(&w->addr, __ATOMIC_RELAXED);
	v->base = __atomic_load_n(&w->iova, __ATOMIC_RELAXED);
	v->length = __atomic_load_n(&w->length, __ATOMIC_RELAXED);
	v->target = __atomic_load_n(&w->target, __ATOMIC_RELAXED);
	v->qpn = __atomic_load_n(&w->qpn, __ATOMIC_RELAXED);
	v->access = __atomic_load_n(&w->access, __ATOMIC_RELAXED);
	v->rflags = __atomic_load_n(&w->rflags, __ATOMIC_RELAXED);
}

/* The window's checks, in mrkey__check()'s order; @offp window offset. */
static inline int mrkey__mw_check(const struct mrkey__mwv *v,
				  const struct mrkey_pd *pd, int via,
				  uint32_t qpn, uint64_t va, uint64_t len,
				  unsigned int access, uint64_t *offp)
{
	bool type2 = v->rflags & MRKEY__REC_MW2;

	if (type2 && via != MRKEY__VIA_QP)
		return -ENOENT; /* resolves only on its QP */
	if (v->pd != pd || (type2 && v->qpn != qpn))
		return -EPERM;
	*offp = va - v->base;
	if (va < v->base || len > v->length || *offp > v->length - len)
		return -ERANGE;
	if ((v->access & access) != access)
		return -EACCES;
	return 0;
}

/* Whether @w's word is still @kc: what was read since is one binding. */
static inline bool mrkey__mw_same(const struct mrkey_mr *w, uint64_t kc)
{
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&w->kc, memory_order_relaxed) == kc;
}

/*
 * Validation of a window key, whose record @w the caller found with MW
 * set, not through an lkey. The window's fields are read as a seqlock
 * reader reads (mw.c), with no reference on the window and no read-side
 * section. The word read again unchanged proves the fields one binding's,
 * so the region pointer is the bound region's; the reference is then
 * taken on the region, and the word read a third time, unchanged, proves
 * the binding live at that moment, so the region referenced is the
 * window's. Reference-free (@noref): the caller is in its read-side
 * section, and a region is unbound before it can be deregistered, so it
 * stays until the section ends.
 */
static inline __attribute__((always_inline)) int
mrkey__mw_ok(struct mrkey_table *t, struct mrkey_pd *pd, struct mrkey_mr *w,
	     uint32_t key, int via, uint32_t qpn, uint64_t va, uint64_t len,
	     unsigned int access, struct mrkey_isge *isge, bool noref)
{
	struct mrkey__mwv v;
	uint64_t kc, rkc, off = 0;
	int err;

	for (;;) {
		kc = atomic_load_explicit(&w->kc, memory_order_acquire);
		if (!mrkey__kc_names(kc, key) || !(kc & MRKEY__KC_MW))
			return -ENOENT;
		mrkey__mw_read(w, &v);
		err = mrkey__mw_check(&v, pd, via, qpn, va, len, access, &off);
		if (!mrkey__mw_same(w, kc))
			continue;
		if (err)
			return err;
		if (noref)
			break;
		rkc = atomic_load_explicit(&v.target->kc, memory_order_acquire);
		/* Whatever key the region has: the window vouches for it. */
		err = mrkey__get_from(t, v.target, MRKEY__KC_KEY(rkc), rkc);
		if (mrkey__unlikely(err > 0))
			err = -ENOENT; /* a window now: the word has changed */
		if (mrkey__likely(mrkey__mw_same(w, kc))) {
			if (mrkey__unlikely(err))
				return err; /* not while bound: never */
			break;
		}
		if (!err)
			mrkey__put(v.target);
	}
	mrkey__isge_fill(isge, v.target, v.roff + off, mrkey__isge_len(len),
			 MRKEY_ISGE_WINDOW | (noref ? MRKEY_ISGE_NOREF : 0));
	return 0;
}

static __attribute__((noinline)) int
mrkey__mw_ok_noref(struct mrkey_table *t, struct mrkey_pd *pd,
		   struct mrkey_mr *w, uint32_t key, int via, uint32_t qpn,
		   uint64_t va, uint64_t len, unsigned int access,
		   struct mrkey_isge *isge)
{
	return mrkey__mw_ok(t, pd, w, key, via, qpn, va, len, access, isge,
			    true);
}

/*
 * @key is 64 bits for mrkey_key_ok() (a slot table's 32-bit keys and a
 * requested-key table's), @len is checked whole; the 32-bit entry points
 * pass theirs through, which the compiler folds.
 */
static inline __attribute__((always_inline)) int
mrkey__key_ok(struct mrkey_table *t, struct mrkey_pd *pd, uint64_t key,
	      uint64_t va, uint64_t len, unsigned int access,
	      struct mrkey_isge *isge, int via, uint32_t qpn)
{
	bool remote = via != MRKEY__VIA_LKEY;
	struct mrkey_mr *mr;
	uint64_t off;
	int err;

	if (mrkey__unlikely(mrkey__bad_args(t, pd, isge, access)))
		return -EINVAL;
	if (mrkey__unlikely(!len)) {
		mrkey__isge_empty(isge);
		return 0;
	}

	if (mrkey__likely(!mrkey__requested(t))) {
		/* A slot table: the record, and a window's key seen there. */
		if (mrkey__unlikely(key > UINT32_MAX))
			return -ENOENT;
		mr = mrkey__record(t, (uint32_t)key);
		err = mrkey__get_rec(t, mr, (uint32_t)key);
		if (mrkey__unlikely(err == MRKEY__GET_MW))
			return via == MRKEY__VIA_LKEY ?
				       -ENOENT :
				       mrkey__mw_ok(t, pd, mr, (uint32_t)key,
						    via, qpn, va, len, access,
						    isge, false);
	} else {
		err = mrkey__lookup(t, key, &mr);
	}
	if (mrkey__unlikely(err))
		return err;
	err = mrkey__check(mr, pd, va, len, access, remote, &off);
	if (mrkey__unlikely(err)) {
		mrkey__put(mr);
		return err;
	}
	mrkey__isge_fill(isge, mr, off, mrkey__isge_len(len), 0);
	return 0;
}

int mrkey_lkey_ok(struct mrkey_table *table, struct mrkey_pd *pd,
		  const struct mrkey_sge *sge, unsigned int access,
		  struct mrkey_isge *isge)
{
	if (mrkey__unlikely(!sge))
		return -EINVAL;
	return mrkey__key_ok(table, pd, sge->lkey, sge->addr, sge->length,
			     access, isge, MRKEY__VIA_LKEY, 0);
}

int mrkey_rkey_ok(struct mrkey_table *table, struct mrkey_pd *pd, uint32_t rkey,
		  uint64_t vaddr, uint32_t len, unsigned int access,
		  struct mrkey_isge *isge)
{
	return mrkey__key_ok(table, pd, rkey, vaddr, len, access, isge,
			     MRKEY__VIA_RKEY, 0);
}

int mrkey_rkey_ok_qp(struct mrkey_table *table, struct mrkey_pd *pd,
		     uint32_t qpn, uint32_t rkey, uint64_t vaddr, uint32_t len,
		     unsigned int access, struct mrkey_isge *isge)
{
	return mrkey__key_ok(table, pd, rkey, vaddr, len, access, isge,
			     MRKEY__VIA_QP, qpn);
}

int mrkey_key_ok(struct mrkey_table *table, struct mrkey_pd *pd, uint64_t key,
		 uint64_t vaddr, uint64_t len, unsigned int access,
		 struct mrkey_isge *isge)
{
	return mrkey__key_ok(table, pd, key, vaddr, len, access, isge,
			     MRKEY__VIA_RKEY, 0);
}

/* ---- reference-free checks ------------------------------------------- */

void mrkey_read_lock(void)
{
	mrkey__read_lock();
}

void mrkey_read_unlock(void)
{
	mrkey__read_unlock();
}

static inline int mrkey__key_check(struct mrkey_table *t, struct mrkey_pd *pd,
				   uint64_t key, uint64_t va, uint64_t len,
				   unsigned int access, struct mrkey_isge *isge,
				   int via, uint32_t qpn)
{
	bool remote = via != MRKEY__VIA_LKEY;
	struct mrkey_mr *mr;
	uint64_t kc, off;
	int err;

	if (mrkey__unlikely(mrkey__bad_args(t, pd, isge, access) ||
			    !(t->flags & MRKEY_TABLE_NOREF)))
		return -EINVAL;
#ifndef NDEBUG
	if (!urcu_bp_read_ongoing()) {
		mrkey__report_table(t, NULL,
				    "reference-free check outside "
				    "mrkey_read_lock()");
		return -EINVAL;
	}
#endif
	if (mrkey__unlikely(!len)) {
		mrkey__isge_empty(isge);
		return 0;
	}
	mr = mrkey__find(t, key);
	/*
	 * Acquire: the fields were written before the key was published.
	 * Their slot (or requested-key record) is reused or freed only a
	 * grace period after the unpublish, so they stay this registration's
	 * until the caller's section ends.
	 */
	if (mrkey__unlikely(!mr))
		return -ENOENT;
	kc = atomic_load_explicit(&mr->kc, memory_order_acquire);
	if (mrkey__unlikely(!mrkey__kc_names(kc, mrkey__key_tag(key))))
		return -ENOENT;
	if (mrkey__unlikely(kc & MRKEY__KC_MW))
		return via == MRKEY__VIA_LKEY ?
			       -ENOENT :
			       /* only slot tables have windows: 32-bit keys */
			       mrkey__mw_ok_noref(t, pd, mr, (uint32_t)key, via,
						  qpn, va, len, access, isge);
	err = mrkey__check(mr, pd, va, len, access, remote, &off);
	if (mrkey__unlikely(err))
		return err;
	mrkey__isge_fill(isge, mr, off, mrkey__isge_len(len), MRKEY_ISGE_NOREF);
	return 0;
}

int mrkey_lkey_check(struct mrkey_table *table, struct mrkey_pd *pd,
		     const struct mrkey_sge *sge, unsigned int access,
		     struct mrkey_isge *isge)
{
	if (mrkey__unlikely(!sge))
		return -EINVAL;
	return mrkey__key_check(table, pd, sge->lkey, sge->addr, sge->length,
				access, isge, MRKEY__VIA_LKEY, 0);
}

int mrkey_rkey_check(struct mrkey_table *table, struct mrkey_pd *pd,
		     uint32_t rkey, uint64_t vaddr, uint32_t len,
		     unsigned int access, struct mrkey_isge *isge)
{
	return mrkey__key_check(table, pd, rkey, vaddr, len, access, isge,
				MRKEY__VIA_RKEY, 0);
}

int mrkey_rkey_check_qp(struct mrkey_table *table, struct mrkey_pd *pd,
			uint32_t qpn, uint32_t rkey, uint64_t vaddr,
			uint32_t len, unsigned int access,
			struct mrkey_isge *isge)
{
	return mrkey__key_check(table, pd, rkey, vaddr, len, access, isge,
				MRKEY__VIA_QP, qpn);
}

int mrkey_key_check(struct mrkey_table *table, struct mrkey_pd *pd,
		    uint64_t key, uint64_t vaddr, uint64_t len,
		    unsigned int access, struct mrkey_isge *isge)
{
	return mrkey__key_check(table, pd, key, vaddr, len, access, isge,
				MRKEY__VIA_RKEY, 0);
}

/* ---- adjacent-SGE merging ---------------------------------------------- */

/*
 * Extend @last by @sge when @sge continues it inside the same published
 * region. @last holds a reference, so its region is alive; no lookup.
 */
static bool mrkey__try_merge(struct mrkey_pd *pd, const struct mrkey_sge *sge,
			     unsigned int access, struct mrkey_isge *last)
{
	struct mrkey_mr *mr = last->mr;
	uint32_t total;

	if (!mr || (last->flags & (MRKEY_ISGE_NOREF | MRKEY_ISGE_WINDOW)) ||
	    !mrkey__kc_names(atomic_load_explicit(&mr->kc,
						  memory_order_relaxed),
			     sge->lkey) ||
	    mr->pd != pd || (mr->access & access) != access ||
	    sge->length > UINT32_MAX - last->sge_length)
		return false;
	/* A requested key's tag is its low half: the lkey must be all of it. */
	if ((mr->rflags & MRKEY__REC_REQ) && mr->x->key != sge->lkey)
		return false;
	total = last->sge_length + sge->length;

	if (mr->kind != MRKEY__KIND_DMA) {
		const uint8_t *sva = mr->vbase;
		uint64_t soff = 0, slen = mr->length, in, end, avail;

		if (mr->kind == MRKEY__KIND_MULTI) {
			const struct mrkey__seg *s =
				&mrkey__segs(mr)[last->seg];

			sva = s->vaddr;
			soff = s->off;
			slen = s->len;
		}
		in = (uint64_t)((const uint8_t *)last->vaddr - sva);
		end = soff + in + last->sge_length;
		avail = slen - in;
		if (sge->addr != mr->addr + end ||
		    sge->length > mr->length - end)
			return false;
		last->length = avail < total ? (uint32_t)avail : total;
	} else {
		uint64_t va = (uint64_t)(uintptr_t)last->vaddr, end;

		/* The held SGE may end exactly at 2^64: nothing follows. */
		if (va > UINT64_MAX - last->sge_length)
			return false;
		end = va + last->sge_length;
		if (sge->addr != end || end > UINT64_MAX - sge->length + 1)
			return false;
		last->length = total;
	}
	last->sge_length = total;
	return true;
}

int mrkey_lkey_ok_merge(struct mrkey_table *table, struct mrkey_pd *pd,
			const struct mrkey_sge *sge, unsigned int access,
			struct mrkey_isge *last, struct mrkey_isge *isge)
{
	if (mrkey__unlikely(!sge || mrkey__bad_args(table, pd, isge, access)))
		return -EINVAL;
	if (!sge->length) {
		mrkey__isge_empty(isge);
		return 0;
	}
	if (last && mrkey__try_merge(pd, sge, access, last))
		return 1;
	return mrkey__key_ok(table, pd, sge->lkey, sge->addr, sge->length,
			     access, isge, MRKEY__VIA_LKEY, 0);
}

void mrkey_isge_put(struct mrkey_isge *isge)
{
	struct mrkey_mr *mr = isge->mr;

	isge->mr = NULL;
	if (!mr)
		return;
	if (mrkey__unlikely(isge->flags & MRKEY_ISGE_NOREF)) {
#ifndef NDEBUG
		mrkey__report(mr, "put of a reference-free isge");
#endif
		return;
	}
	mrkey__put(mr);
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
	if (isge->length == 0 && mr->kind == MRKEY__KIND_MULTI) {
		const struct mrkey__seg *s = &mrkey__segs(mr)[++isge->seg];

		isge->vaddr = s->vaddr;
		isge->length = s->len < isge->sge_length ? (uint32_t)s->len :
							   isge->sge_length;
	}
}

enum mrkey__ss_dir {
	MRKEY__SS_SKIP,
	MRKEY__SS_IN,
	MRKEY__SS_OUT
};

static size_t mrkey__ss_copy(struct mrkey_sge_state *ss, uint8_t *buf,
			     size_t len, enum mrkey__ss_dir dir)
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
		if (dir == MRKEY__SS_IN)
			memcpy(isge->vaddr, buf + done, n);
		else if (dir == MRKEY__SS_OUT)
			memcpy(buf + done, isge->vaddr, n);
		mrkey__ss_advance(ss, (uint32_t)n);
		done += n;
	}
	return done;
}

size_t mrkey_ss_copy_in(struct mrkey_sge_state *ss, const void *src, size_t len)
{
	return mrkey__ss_copy(ss, (uint8_t *)(uintptr_t)src, len, MRKEY__SS_IN);
}

size_t mrkey_ss_copy_out(struct mrkey_sge_state *ss, void *dst, size_t len)
{
	return mrkey__ss_copy(ss, dst, len, MRKEY__SS_OUT);
}

size_t mrkey_ss_advance(struct mrkey_sge_state *ss, size_t len)
{
	return mrkey__ss_copy(ss, NULL, len, MRKEY__SS_SKIP);
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

	for (i = 0; i < ss->n; i++) {
		struct mrkey_isge *isge = &ss->list[i];

		if (isge->flags & MRKEY_ISGE_NOREF)
			isge->mr = NULL;
		else
			mrkey_isge_put(isge);
	}
	ss->n = 0;
	ss->cur = 0;
}
