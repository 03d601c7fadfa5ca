/* SPDX-License-Identifier: MIT */
/*
 * Internal definitions of the mrkey core. Not installed.
 */
#ifndef MRKEY_INTERNAL_H
#define MRKEY_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/*
 * The read-side lock and unlock of liburcu-bp are inlined (each is under
 * ten lines, which liburcu offers to non-LGPL code); everything else is a
 * call into the shared library. UBSan builds call them out of line:
 * liburcu 0.13 hands out reader records less aligned than their type
 * declares, which -fsanitize=alignment reports inside the inlined code.
 */
#ifndef MRKEY_URCU_NO_INLINE
#define _LGPL_SOURCE
#endif
#include <urcu/urcu-bp.h>

#include <mrkey/mrkey.h>

#define MRKEY__CACHELINE 64
/* DMA region records per table: one published, the rest draining. */
#define MRKEY__DMA_RECORDS 4u
/* x->slot of DMA record i: MRKEY__DMA_SLOT - i (above any slot index). */
#define MRKEY__DMA_SLOT UINT32_MAX
/*
 * Bytes of arc4random_buf() output a table draws at a time (keygen.c).
 * glibc 2.36 makes every call a getrandom() system call (about 1 us);
 * a registration uses 8 to 12 bytes, so one call serves ~400 of them.
 */
#define MRKEY__RNG_BUF 4096

/* Access bits a region may be registered with (validation knows fewer). */
#define MRKEY__MR_ACCESS (MRKEY_ACCESS_ALL | MRKEY_ACCESS_MW_BIND)

#define mrkey__likely(x) __builtin_expect(!!(x), 1)
#define mrkey__unlikely(x) __builtin_expect(!!(x), 0)

/*
 * ThreadSanitizer cannot see that an RCU grace period orders a reader's
 * last access before the reclaimer's free (liburcu 0.13 carries no TSan
 * annotations). Teach it with one shared token: every read-side unlock
 * releases it, every reclamation acquires it.
 */
#if defined(__SANITIZE_THREAD__)
#define MRKEY__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MRKEY__TSAN 1
#endif
#endif

#ifdef MRKEY__TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char mrkey__rcu_token;
#define mrkey__tsan_release() __tsan_release(&mrkey__rcu_token)
#define mrkey__tsan_acquire() __tsan_acquire(&mrkey__rcu_token)
#else
#define mrkey__tsan_release() ((void)0)
#define mrkey__tsan_acquire() ((void)0)
#endif

static inline void mrkey__read_lock(void)
{
	urcu_bp_read_lock();
}

static inline void mrkey__read_unlock(void)
{
	mrkey__tsan_release();
	urcu_bp_read_unlock();
}

/* call_rcu(), with the hand-off to the callback thread shown to TSan. */
static inline void mrkey__call_rcu(struct rcu_head *head,
				   void (*fn)(struct rcu_head *))
{
	mrkey__tsan_release();
	urcu_bp_call_rcu(head, fn);
}

/*
 * A region is one 64-byte record in the table's slot array: everything a
 * lookup, a get and a put touch is on that one line, so a referenced
 * lookup costs one cache miss. The handle (struct mrkey_mr *) is the
 * record's address; a slot is not reused until its region has drained,
 * so the handle stays valid for the region's whole life. What only
 * registration, deregistration and multi-segment translation need lives
 * in a separately allocated struct mrkey__mrx.
 *
 * @kc packs the key with the count, so that one compare-and-swap checks
 * the key, checks that it is published and takes the reference:
 *
 *   63..32 key   31 PUB (key resolves)   30 SPLIT (per-CPU counts)
 *   29..0  count (Linux refcount_t semantics: saturates, never wraps)
 */
#define MRKEY__KC_PUB (1ull << 31)
#define MRKEY__KC_SPLIT (1ull << 30)
#define MRKEY__KC_CNT ((1ull << 30) - 1)
/*
 * A memory window's record (mw.c) sets MW and SPLIT: SPLIT sends every
 * region lookup that matches its key off the one-CAS path, where MW is
 * seen. Region counts never reach bit 29 (they saturate below it); in a
 * window's word bits 28..0 count its bindings instead (MRKEY__KC_SEQ), so
 * that a reader can tell that a binding changed while it read it.
 */
#define MRKEY__KC_MW (1ull << 29)
#define MRKEY__KC_SEQ ((1ull << 29) - 1)
#define MRKEY__KC_KEY(kc) ((uint32_t)((kc) >> 32))

#define MRKEY__REF_MAX 0x10000000u       /* at or above: saturate */
#define MRKEY__REF_SATURATED 0x18000000u /* far from 0 and from the flags */
/*
 * PERCPU mode: while a region's counts are split its atomic count carries
 * this bias, so it cannot reach zero however gets and puts interleave
 * between shards and the atomic count; the collapse removes it.
 */
#define MRKEY__PCPU_BIAS 0x08000000u

/* What the record translates. */
enum mrkey__kind {
	MRKEY__KIND_ONE = 0, /* one segment: vbase + offset */
	MRKEY__KIND_MULTI,   /* the segment map in mrkey__mrx */
	MRKEY__KIND_DMA,     /* key 0: the address is the host address */
	MRKEY__KIND_MW,      /* a memory window (mw.c), not a region */
};

/* Life of a region; see the state machine at the top of mr.c. */
enum mrkey__mr_state {
	MRKEY__MR_PUBLISHED = 0, /* key live; table and caller hold refs */
	MRKEY__MR_UNPUBLISHED,   /* after -EBUSY: caller holds its ref */
	MRKEY__MR_WAITING,       /* mrkey_mr_dereg() waits for the drain */
	MRKEY__MR_ASYNC,         /* the last put frees it */
};

/* One segment of a region's host memory. */
struct mrkey__seg {
	uint8_t *vaddr;
	uint64_t off; /* offset of its first byte in the region */
	uint64_t len;
};

/* seg_shift value that means "binary search the segment map" */
#define MRKEY__SEG_BSEARCH 64u

struct mrkey__mrx;

/*
 * A memory window's record uses the same fields (mw.c): @pd is the
 * window's; @addr is the region offset of the window's first byte, @iova
 * the address requests count from (0 when zero-based), @length the
 * window's; @target the region; @qpn the QP of a type 2 window; @access
 * the window's. Those that a bind rewrites are read and written only
 * with __atomic builtins, checked by the reader against @kc (a seqlock).
 */
struct mrkey_mr {
	_Atomic uint64_t kc; /* key | PUB | SPLIT | count, see above */
	struct mrkey_pd *pd; /* written only while the slot is free */
	uint64_t addr;
	uint64_t iova;
	uint64_t length;
	union {
		uint8_t *vbase;          /* KIND_ONE: host address of byte 0 */
		struct mrkey_mr *target; /* KIND_MW: the region bound */
	};
	struct mrkey__mrx *x; /* NULL: the slot is free */
	union {
		_Atomic uint32_t pcpu; /* split counter row + 1, 0 if none */
		uint32_t qpn;          /* KIND_MW, type 2: the QP bound */
	};
	_Atomic uint8_t contended; /* PERCPU: failed get CASes, for split */
	uint8_t rflags; /* MRKEY__REC_*, set while the slot is taken */
	uint8_t access;
	uint8_t kind; /* enum mrkey__kind */
} __attribute__((aligned(MRKEY__CACHELINE)));

/* Record flags. */
#define MRKEY__REC_FR 1u  /* a fast-registration region (mrkey_mr_alloc) */
#define MRKEY__REC_MW2 2u /* a type 2 window */
#define MRKEY__REC_REQ 4u /* a requested-key region (struct mrkey__rrec) */

/* The cold part of a region. */
struct mrkey__mrx {
	struct mrkey_table *table;
	union {
		struct mrkey_mr *mr;     /* while in use */
		struct mrkey__mrx *next; /* in the table's cache */
	};
	_Atomic uint8_t state;
	uint8_t released;  /* the count reached zero; under table->wait_lock */
	uint8_t seg_shift; /* segments of 2^seg_shift bytes, or BSEARCH */
	uint32_t nsegs;
	uint32_t slot; /* index in the slot array, or MRKEY__DMA_SLOT - i */
	uint32_t cap;  /* room in the segment map (max_segs for fast-reg) */
	/*
	 * Windows bound to the region. Changed under the writer lock;
	 * lock-free invalidation reads it (seq_cst, see mw.c).
	 */
	_Atomic uint32_t nmw;
	mrkey_dereg_done_fn done;
	void *done_arg;
	void *backend_data;
	void *context; /* mrkey_mr_attr.context, set before publication */
	uint64_t key;  /* requested-key regions: the full 64-bit key */
	struct rcu_head rcu;
	/* With nsegs > 1 the segment map follows: struct mrkey__seg[nsegs]. */
};

/*
 * A requested-key region is not in a slot array: its record, the rcu head
 * that frees it a grace period after it drained (readers find records
 * through the index without a reference) and its cold part are one
 * allocation. @x is last, so that the segment map follows it as always.
 */
struct mrkey__rrec {
	struct mrkey_mr mr; /* first: the handle is this address */
	struct rcu_head free_rcu;
	struct mrkey__rrec *next; /* in a batch awaiting its grace period */
	size_t bytes;             /* of the allocation */
	struct mrkey__mrx x;
};

/*
 * Drained one-segment records of a requested-key table wait in batches
 * of this many for one grace period (one call_rcu() a batch), and then
 * up to MRKEY__RR_CACHE of them are kept for the next registrations.
 */
#define MRKEY__RR_BATCH 32u
#define MRKEY__RR_CACHE 256u

static inline struct mrkey__seg *mrkey__segs(const struct mrkey_mr *mr)
{
	return (struct mrkey__seg *)(uintptr_t)(mr->x + 1);
}

/* A one-segment region needs no map. */
static inline size_t mrkey__mrx_size(size_t cap)
{
	return sizeof(struct mrkey__mrx) +
	       (cap > 1 ? cap : 0) * sizeof(struct mrkey__seg);
}

static inline uint32_t mrkey__mr_key(const struct mrkey_mr *mr)
{
	return MRKEY__KC_KEY(
		atomic_load_explicit(&mr->kc, memory_order_relaxed));
}

static inline struct mrkey_table *mrkey__mr_table(const struct mrkey_mr *mr)
{
	return mr->x->table;
}

struct mrkey_pd {
	struct mrkey_table *table;
	unsigned int flags;
	_Atomic uint32_t nmr; /* regions of this PD not yet freed */
};

/*
 * The index of a requested-key table: open addressing with linear
 * probing over (key, record) pairs, four to a cache line. An entry's
 * @rec goes NULL (never used: a probe stops here) -> record (published)
 * -> MRKEY__IDX_TOMB (deregistered; probes go on) -> a record of the same
 * key again ...: once @rec is set, @key never changes in this array, so
 * a reader that matched @key and then loads @rec gets that key's record
 * or a tombstone, never another key's record. Tombstones go when the
 * array is rebuilt (grown, shrunk or cleaned): a new array is filled
 * under the writer lock, published, and the old one freed after a grace
 * period. The header is read-only once published.
 */
struct mrkey__ient {
	_Atomic uint64_t key;
	struct mrkey_mr *_Atomic rec;
};

#define MRKEY__IDX_TOMB ((struct mrkey_mr *)(uintptr_t)1)

struct mrkey__idx {
	uint64_t seed;  /* hash seed, drawn anew for every array */
	uint64_t mask;  /* entries - 1 */
	uint32_t shift; /* 64 - log2(entries) */
	struct mrkey_table *table;
	size_t bytes;
	struct rcu_head rcu;
	struct mrkey__ient ents[] __attribute__((aligned(MRKEY__CACHELINE)));
};

/* Internal table flag (above the public MRKEY_TABLE_* bits). */
#define MRKEY__TABLE_REQUESTED (1u << 31)

struct mrkey_table {
	/* Read-mostly: validation touches only this line and one slot. */
	struct mrkey_mr *slots; /* nslots records, on huge pages if big */
	uint32_t idx_shift;
	uint32_t idx_mask;
	uint32_t nslots;
	uint32_t table_bits;
	enum mrkey_key_layout layout;
	enum mrkey_keygen keygen;
	const struct mrkey_backend_ops *ops;
	void *bctx;
	unsigned int flags;       /* MRKEY_TABLE_* */
	bool mw_ops;              /* the backend has the window ops */
	uint32_t pc_mask;         /* PERCPU: shards - 1 */
	size_t pc_stride;         /* PERCPU: bytes between shard rows */
	_Atomic int64_t *pc_base; /* PERCPU: shard rows of counters */
	enum mrkey_refcount_mode refmode;
	struct mrkey__idx *_Atomic idx; /* REQUESTED: the current index */

	/* Cold configuration. */
	struct mrkey_backend_params params;
	struct mrkey_allocator alloc;
	mrkey_report_fn report;
	void *report_ctx;
	size_t slots_bytes;
	bool slots_mapped; /* from mmap(), not the allocator */

	/* Writer state, on its own cache line, under @lock. */
	pthread_mutex_t lock __attribute__((aligned(MRKEY__CACHELINE)));
	uint32_t *free_idx; /* RANDOM: free slot indices, any order */
	uint32_t nfree;     /* RANDOM: entries in free_idx */
	uint32_t reserve;   /* RANDOM: the next registration's slot */
	uint32_t nused;     /* taken slots (registered or draining) */
	uint32_t next;      /* SEQUENTIAL: where the scan starts */
	uint32_t gen;       /* SEQUENTIAL: generation counter */
	/* RANDOM, no seed: keys come from rng_buf; rng[0] = bytes used. */
	bool rng_os;
	uint32_t npd;
	uint64_t rng[4];
	uint32_t *pc_free; /* PERCPU: free counter rows */
	uint32_t pc_nfree;
	uint32_t pc_cap;
	uint32_t dma_used;  /* DMA records taken, a bit each */
	uint32_t mw_gen;    /* where a new window's sequence starts (mw.c) */
	uint64_t idx_nused; /* REQUESTED: entries not NULL */
	uint64_t idx_nlive; /* REQUESTED: entries on a record */
	struct mrkey__rrec *rr_pend;  /* REQUESTED: drained, before a GP */
	struct mrkey__rrec *rr_cache; /* REQUESTED: past it, for reuse */
	uint32_t rr_npend;
	uint32_t rr_ncache;
	struct mrkey__mrx *mrx_cache; /* freed one-segment cold parts */
	uint32_t mrx_ncache;

	/* Counters and the deregistration wait, written from any thread. */
	_Atomic uint32_t nmr __attribute__((aligned(MRKEY__CACHELINE)));
	pthread_mutex_t wait_lock;
	pthread_cond_t wait_cv; /* CLOCK_MONOTONIC */

	/*
	 * Records for the DMA region (key 0), apart from the slot array. One
	 * is published at a time (@dma_rec names it, or the last one); the
	 * others let a new DMA region be registered while an old one still
	 * drains, since a record is held until its region has drained.
	 */
	_Atomic(struct mrkey_mr *) dma_rec;
	struct mrkey_mr dma[MRKEY__DMA_RECORDS];

	/* RANDOM, no seed: arc4random_buf() output, under @lock. */
	uint8_t rng_buf[MRKEY__RNG_BUF] __attribute__((aligned(64)));
};

/* alloc.c */
void mrkey__default_allocator(struct mrkey_allocator *a);
void *mrkey__alloc(const struct mrkey_table *t, size_t size);
#define MRKEY__HUGE_PAGE ((size_t)2 << 20)
void mrkey__huge_pages(void *p, size_t bytes);
void mrkey__free(const struct mrkey_table *t, void *p, size_t size);

/* keygen.c */
#define MRKEY__NO_SLOT UINT32_MAX
int mrkey__keygen_init(struct mrkey_table *t, uint64_t seed);
/* A key chosen but not yet taken; keeps what to restore if not taken. */
struct mrkey__key_pick {
	uint32_t slot;
	uint32_t key;
	uint32_t gen;
	uint32_t next;
	uint64_t rng[4];
};
int mrkey__key_pick(struct mrkey_table *t, struct mrkey__key_pick *p, bool fr);
uint32_t mrkey__key_redraw(struct mrkey_table *t, uint32_t slot, uint32_t old);
void mrkey__key_unpick(struct mrkey_table *t, const struct mrkey__key_pick *p);
void mrkey__key_commit(struct mrkey_table *t, const struct mrkey__key_pick *p);
void mrkey__key_release(struct mrkey_table *t, uint32_t slot);
uint64_t mrkey__rand64(struct mrkey_table *t);

/* reqkey.c */
int mrkey__idx_init(struct mrkey_table *t);
void mrkey__idx_free(struct mrkey_table *t);
void mrkey__idx_del_locked(struct mrkey_table *t, struct mrkey_mr *mr);
void mrkey__rrec_release_locked(struct mrkey_table *t, struct mrkey_mr *mr);
void mrkey__rrec_flush(struct mrkey_table *t);
void mrkey__rrec_cache_drain(struct mrkey_table *t);

/* mr.c */
void mrkey__report_table(struct mrkey_table *t, struct mrkey_mr *mr,
			 const char *what);
void mrkey__ref_put_slow(struct mrkey_mr *mr, uint64_t old);
void mrkey__report(struct mrkey_mr *mr, const char *what);
void mrkey__contended(struct mrkey_table *t, struct mrkey_mr *mr);
/* What a registration translates, as mrkey_mr_reg() checks it. */
struct mrkey__xlate {
	uint64_t addr;
	uint64_t iova;
	uint64_t length;
	unsigned int access;
	const struct mrkey_seg *segs;
	size_t nsegs;
};
int mrkey__check_xlate(const struct mrkey_table *t,
		       const struct mrkey__xlate *a);
void mrkey__set_segs_map(struct mrkey__mrx *x, const struct mrkey__xlate *a);

/* The segments of @x for @a: one segment (the common case) needs no map. */
static inline void mrkey__set_segs(struct mrkey__mrx *x,
				   const struct mrkey__xlate *a)
{
	if (mrkey__likely(a->nsegs == 1)) {
		x->nsegs = 1;
		x->seg_shift = 63;
		return;
	}
	mrkey__set_segs_map(x, a);
}
struct mrkey__mrx *mrkey__mrx_new(struct mrkey_table *t, size_t cap);
struct mrkey__mrx *mrkey__mrx_get_locked(struct mrkey_table *t);
void mrkey__slot_release_locked(struct mrkey_table *t, struct mrkey_mr *mr);
void mrkey__take_locked(struct mrkey_table *t, struct mrkey_mr *mr,
			struct mrkey__mrx *x, struct mrkey_pd *pd, uint64_t kc);
void mrkey__mrx_init(struct mrkey_table *t, struct mrkey__mrx *x, size_t cap);
int mrkey__reg_check(struct mrkey_table *t, const struct mrkey_mr_attr *a,
		     struct mrkey__xlate *xl);
void mrkey__publish_locked(struct mrkey_table *t, struct mrkey_mr *mr,
			   struct mrkey__mrx *x, struct mrkey_pd *pd,
			   uint32_t key, bool pub);
void mrkey__count_locked(_Atomic uint32_t *c, int d);
void mrkey__after_gp(struct mrkey_mr *mr);
bool mrkey__drop_and_drain(struct mrkey_mr *mr, uint32_t drop, bool gp,
			   unsigned int timeout_ms, uint32_t back);
/* Freed one-segment cold parts kept for reuse, at most this many. */
#define MRKEY__MRX_CACHE 64u
void mrkey__mrx_cache_drain(struct mrkey_table *t);

static inline _Atomic int64_t *mrkey__pc_counter(const struct mrkey_table *t,
						 uint32_t row, int shard)
{
	return (_Atomic int64_t *)((char *)t->pc_base +
				   (size_t)((unsigned int)shard & t->pc_mask) *
					   t->pc_stride) +
	       row;
}

/*
 * The running CPU, for picking a shard. glibc (2.35 and later) registers
 * rseq for every thread and the kernel keeps the area's cpu_id current: one
 * load from the thread's own memory. Without rseq, sched_getcpu(). A stale
 * answer (the thread migrated since) costs a shared cache line, never a
 * count: shard updates are atomic.
 */
#if defined(MRKEY_HAVE_RSEQ)
#include <sys/rseq.h>
#endif

static inline int mrkey__this_shard(void)
{
	int cpu;

#if defined(MRKEY_HAVE_RSEQ)
	if (mrkey__likely(__rseq_size)) {
		const struct rseq *rs =
			(const struct rseq *)((char *)__builtin_thread_pointer() +
					      __rseq_offset);

		cpu = (int)__atomic_load_n(&rs->cpu_id, __ATOMIC_RELAXED);
		if (mrkey__likely(cpu >= 0))
			return cpu;
	}
#endif
	cpu = sched_getcpu();
	return cpu < 0 ? 0 : cpu;
}

/*
 * Add to the running CPU's shard of @mr's split count. Call inside a
 * read-side section in which SPLIT was seen set in @mr->kc: the collapse
 * waits for a grace period after clearing it, so the row is still @mr's.
 */
static inline void mrkey__pc_add(const struct mrkey_table *t,
				 struct mrkey_mr *mr, int64_t delta)
{
	uint32_t row = atomic_load_explicit(&mr->pcpu, memory_order_relaxed);

	atomic_fetch_add_explicit(mrkey__pc_counter(t, row - 1,
						    mrkey__this_shard()),
				  delta, memory_order_relaxed);
}

/* Set the count of @mr to saturated, keeping its key and flags. */
static inline void mrkey__ref_saturate(struct mrkey_mr *mr)
{
	uint64_t kc = atomic_load_explicit(&mr->kc, memory_order_relaxed);

	while (!atomic_compare_exchange_weak_explicit(
		&mr->kc, &kc, (kc & ~MRKEY__KC_CNT) | MRKEY__REF_SATURATED,
		memory_order_relaxed, memory_order_relaxed))
		;
}

/*
 * Drop one reference from the atomic count. Release: what this holder
 * did with the region happens before whatever the last put leads to.
 */
static inline void mrkey__ref_put(struct mrkey_mr *mr)
{
	uint64_t old =
		atomic_fetch_sub_explicit(&mr->kc, 1, memory_order_release);
	uint32_t cnt = (uint32_t)(old & MRKEY__KC_CNT);

	/* 2..MAX-1: an ordinary put. 1: the last. 0 or saturated: misuse. */
	if (mrkey__likely(cnt - 2u < MRKEY__REF_MAX - 2u))
		return;
	mrkey__ref_put_slow(mr, old);
}

void mrkey__put_split(struct mrkey_mr *mr);

/* Drop one reference, in either refcount mode. */
static inline void mrkey__put(struct mrkey_mr *mr)
{
	if (mrkey__unlikely(
		    atomic_load_explicit(&mr->kc, memory_order_relaxed) &
		    MRKEY__KC_SPLIT)) {
		mrkey__put_split(mr);
		return;
	}
	mrkey__ref_put(mr);
}

/* The record a key indexes: its slot, or the DMA record for key 0. */
static inline struct mrkey_mr *mrkey__record(struct mrkey_table *t,
					     uint32_t key)
{
	if (mrkey__likely(key != 0))
		return &t->slots[(key >> t->idx_shift) & t->idx_mask];
	return atomic_load_explicit(&t->dma_rec, memory_order_acquire);
}

static inline bool mrkey__kc_names(uint64_t kc, uint32_t key)
{
	return MRKEY__KC_KEY(kc) == key && (kc & MRKEY__KC_PUB);
}

int mrkey__get_split(struct mrkey_table *t, struct mrkey_mr *mr, uint32_t key);

/* mrkey__get_rec(): @key names a bound window, not a region. */
#define MRKEY__GET_MW 2

/*
 * Take a reference on the registration @key names in @mr, or fail with
 * -ENOENT; MRKEY__GET_MW (no reference) when it names a window. One
 * compare-and-swap checks every bit of the key, that it is published,
 * and counts the reference: a key unpublished (or a slot reused) since
 * the load fails it. No read-side section is needed: the record outlives
 * the table's regions, and nothing else of the region is read before the
 * reference is held.
 */
static inline int mrkey__get_from(struct mrkey_table *t, struct mrkey_mr *mr,
				  uint32_t key, uint64_t kc)
{
	int err;

	for (;;) {
		if (mrkey__unlikely(!mrkey__kc_names(kc, key)))
			return -ENOENT;
		if (mrkey__unlikely(kc & MRKEY__KC_SPLIT)) {
			if (kc & MRKEY__KC_MW)
				return MRKEY__GET_MW;
			err = mrkey__get_split(t, mr, key);
			if (err <= 0)
				return err;
			kc = atomic_load_explicit(&mr->kc,
						  memory_order_acquire);
			continue;
		}
		if (mrkey__unlikely((kc & MRKEY__KC_CNT) >= MRKEY__REF_MAX))
			return 0; /* saturated: stays so, never freed */
		if (mrkey__likely(atomic_compare_exchange_weak_explicit(
			    &mr->kc, &kc, kc + 1, memory_order_acquire,
			    memory_order_acquire)))
			return 0;
		if (t->refmode == MRKEY_REFCOUNT_PERCPU)
			mrkey__contended(t, mr);
	}
}

/* The same, @kc being a fresh (acquire) load of @mr's word. */
static inline int mrkey__get_rec(struct mrkey_table *t, struct mrkey_mr *mr,
				 uint32_t key)
{
	return mrkey__get_from(t, mr, key,
			       atomic_load_explicit(&mr->kc,
						    memory_order_acquire));
}

/* mrkey__get_rec() for a region only: a window's key is -ENOENT. */
static inline int mrkey__get(struct mrkey_table *t, struct mrkey_mr *mr,
			     uint32_t key)
{
	int err = mrkey__get_rec(t, mr, key);

	return mrkey__unlikely(err > 0) ? -ENOENT : err;
}

/* mw.c */
int mrkey__mw_invalidate_locked(struct mrkey_table *t, struct mrkey_pd *pd,
				struct mrkey_mr *w, uint32_t key);

/*
 * Whether unpublishing @mr needs a grace period before its references
 * are counted down: when its counts are split, or when reference-free
 * readers may still be inside its record and memory.
 */
static inline bool mrkey__needs_gp(const struct mrkey_mr *mr)
{
	return atomic_load_explicit(&mr->pcpu, memory_order_relaxed) ||
	       (mrkey__mr_table(mr)->flags & MRKEY_TABLE_NOREF);
}

/*
 * Store into a field of a slot record that a window's reader may still be
 * reading, the slot having been a window's a moment ago (the reader finds
 * the record's word changed and drops what it read, see mw.c): a relaxed
 * atomic store, the same instruction as a plain one, so that the two
 * never race. Region paths read these fields plainly, holding a reference.
 */
#define mrkey__rec_set(field, v)                                               \
	__atomic_store_n(&(field), (v), __ATOMIC_RELAXED)

/*
 * Write the translation into a record nobody reads: a free slot, or a
 * region that is unpublished and holds no transient reference. The
 * segment map is mrkey__set_segs()'s.
 */
static inline void mrkey__set_xlate(struct mrkey_mr *mr,
				    const struct mrkey__xlate *a)
{
	mrkey__rec_set(mr->addr, a->addr);
	mrkey__rec_set(mr->iova, a->iova);
	mrkey__rec_set(mr->length, a->length);
	mrkey__rec_set(mr->access, (uint8_t)a->access);
	mr->kind = a->nsegs > 1 ? MRKEY__KIND_MULTI : MRKEY__KIND_ONE;
	mrkey__rec_set(mr->vbase, (uint8_t *)a->segs[0].addr);
}

static inline bool mrkey__requested(const struct mrkey_table *t)
{
	return t->flags & MRKEY__TABLE_REQUESTED;
}

/* The home entry of @key in @ix: every bit of the key mixed into the top. */
static inline uint64_t mrkey__idx_home(const struct mrkey__idx *ix,
				       uint64_t key)
{
	uint64_t h = (key ^ ix->seed) * 0x9e3779b97f4a7c15ull;

	h ^= h >> 32;
	h *= 0xd6e8feb86659fd93ull;
	return h >> ix->shift;
}

/*
 * The record published under @key in a requested-key table, or NULL.
 * Call inside a read-side section: the array and the record stay
 * allocated until it ends. The record may be unpublished by now; the
 * caller's check of its kc word decides.
 */
static inline struct mrkey_mr *mrkey__idx_find(const struct mrkey_table *t,
					       uint64_t key)
{
	const struct mrkey__idx *ix =
		atomic_load_explicit(&t->idx, memory_order_acquire);
	uint64_t i = mrkey__idx_home(ix, key);

	for (;; i = (i + 1) & ix->mask) {
		const struct mrkey__ient *e = &ix->ents[i];
		/* Acquire: the key and the record were written before. */
		struct mrkey_mr *r =
			atomic_load_explicit(&e->rec, memory_order_acquire);

		if (!r)
			return NULL; /* the array always has a NULL entry */
		if (atomic_load_explicit(&e->key, memory_order_relaxed) ==
			    key &&
		    mrkey__likely(r != MRKEY__IDX_TOMB))
			return r;
	}
}

/*
 * What a record's kc word holds for @key: in a slot table the key itself,
 * in a requested-key table its low half (a tag: the record was found by
 * the whole key, and is never reused for another).
 */
static inline uint32_t mrkey__key_tag(uint64_t key)
{
	return (uint32_t)key;
}

/*
 * The record @key names, for a check without a reference (the caller is
 * in a read-side section), or NULL; the caller checks the kc word against
 * mrkey__key_tag(@key).
 */
static inline struct mrkey_mr *mrkey__find(struct mrkey_table *t, uint64_t key)
{
	if (mrkey__unlikely(mrkey__requested(t)))
		return mrkey__idx_find(t, key);
	if (mrkey__unlikely(key > UINT32_MAX))
		return NULL; /* a slot table's keys are 32 bits */
	return mrkey__record(t, (uint32_t)key);
}

/*
 * Find the region @key names in either kind of table and take one
 * reference on it: 0 and *@mrp, or -ENOENT. In a requested-key table the
 * record is only reachable inside a read-side section (it is freed a
 * grace period after it drained); the reference keeps it after that.
 */
static inline int mrkey__lookup(struct mrkey_table *t, uint64_t key,
				struct mrkey_mr **mrp)
{
	struct mrkey_mr *mr;
	int err = -ENOENT;

	if (mrkey__likely(!mrkey__requested(t))) {
		if (mrkey__unlikely(key > UINT32_MAX))
			return -ENOENT;
		*mrp = mr = mrkey__record(t, (uint32_t)key);
		return mrkey__get(t, mr, (uint32_t)key);
	}
	mrkey__read_lock();
	mr = mrkey__idx_find(t, key);
	if (mrkey__likely(mr))
		err = mrkey__get(t, mr, mrkey__key_tag(key));
	mrkey__read_unlock();
	*mrp = mr;
	return err;
}

#endif /* MRKEY_INTERNAL_H */
