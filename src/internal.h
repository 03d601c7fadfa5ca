/* SPDX-License-Identifier: MIT */
/*
 * Internal definitions of the mrkey core. Not installed.
 */
#ifndef MRKEY_INTERNAL_H
#define MRKEY_INTERNAL_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

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
/* Bytes of arc4random_buf() output a table draws at a time (keygen.c). */
#define MRKEY__RNG_BUF 256

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

/* Reference counts (Linux refcount_t semantics on a 32-bit counter). */
#define MRKEY__REF_MAX 0x7fffffffu       /* at or above: saturate */
#define MRKEY__REF_SATURATED 0xc0000000u /* far from both 0 and wrap */

/* Life of a region; transitions under the table's writer lock. */
enum mrkey__mr_state {
	MRKEY__MR_PUBLISHED = 0, /* key live; table and caller hold refs */
	MRKEY__MR_UNPUBLISHED,   /* after -EBUSY: caller holds its ref */
	MRKEY__MR_WAITING,       /* mrkey_mr_dereg() waits for the drain */
	MRKEY__MR_ASYNC,         /* the last put frees it */
	MRKEY__MR_FREED,
};

/* One segment of a region's host memory. */
struct mrkey__seg {
	uint8_t *vaddr;
	uint64_t off; /* offset of its first byte in the region */
	uint64_t len;
};

/* seg_shift value that means "binary search the segment map" */
#define MRKEY__SEG_BSEARCH 64u

struct mrkey_mr {
	/* First cache line: everything validation reads or writes. */
	uint32_t lkey;
	_Atomic uint32_t refcount;
	struct mrkey_pd *pd;
	uint64_t addr;
	uint64_t iova;
	uint64_t length;
	uint8_t *vbase;        /* host address of byte 0 (one segment) */
	uint32_t nsegs;        /* 0: the DMA region, vaddr = address */
	_Atomic uint32_t pcpu; /* PERCPU: counter index + 1 while split */
	uint8_t access;
	uint8_t seg_shift; /* segments of 2^seg_shift bytes, or BSEARCH */
	_Atomic uint8_t published;

	/* Second cache line: deregistration and reclamation. */
	struct mrkey_table *table __attribute__((aligned(MRKEY__CACHELINE)));
	_Atomic uint8_t state;
	uint8_t released; /* the count reached zero; under table->wait_lock */
	uint32_t slot;
	_Atomic uint32_t pc_idx; /* PERCPU: counter index + 1 until collapsed */
	mrkey_dereg_done_fn done;
	void *done_arg;
	void *backend_data;
	struct rcu_head rcu;
	/* With nsegs > 1 the segment map follows: struct mrkey__seg[nsegs]. */
};

static inline struct mrkey__seg *mrkey__segs(const struct mrkey_mr *mr)
{
	return (struct mrkey__seg *)(uintptr_t)(mr + 1);
}

/* A one-segment region needs no map: vbase and length describe it. */
static inline size_t mrkey__mr_size(size_t nsegs)
{
	return sizeof(struct mrkey_mr) +
	       (nsegs > 1 ? nsegs : 0) * sizeof(struct mrkey__seg);
}

struct mrkey_pd {
	struct mrkey_table *table;
	unsigned int flags;
	_Atomic uint32_t nmr; /* regions of this PD not yet freed */
};

struct mrkey_table {
	/* Read-mostly: validation touches only this line and the slots. */
	_Atomic(struct mrkey_mr *) *slots;
	_Atomic(struct mrkey_mr *) dma_mr;
	uint32_t idx_shift;
	uint32_t idx_mask;
	uint32_t nslots;
	uint32_t table_bits;
	enum mrkey_key_layout layout;
	enum mrkey_keygen keygen;
	const struct mrkey_backend_ops *ops;
	void *bctx;
	unsigned int flags;        /* MRKEY_TABLE_* */
	uint32_t pc_mask;          /* PERCPU: shards - 1 */
	size_t pc_stride;          /* PERCPU: bytes between shard rows */
	_Atomic uint32_t *pc_base; /* PERCPU: shard rows of counters */

	/* Cold configuration. */
	struct mrkey_backend_params params;
	struct mrkey_allocator alloc;
	mrkey_report_fn report;
	void *report_ctx;

	/* Writer state, on its own cache line, under @lock. */
	pthread_mutex_t lock __attribute__((aligned(MRKEY__CACHELINE)));
	uint32_t *free_idx; /* RANDOM: free slot indices, any order */
	uint32_t *last_key; /* RANDOM: the key each slot held last */
	uint32_t nused;     /* published non-DMA regions */
	uint32_t next;      /* SEQUENTIAL: where the scan starts */
	uint32_t gen;       /* SEQUENTIAL: generation counter */
	/* RANDOM, no seed: keys come from rng_buf; rng[0] = bytes used. */
	bool rng_os;
	uint8_t rng_buf[MRKEY__RNG_BUF] __attribute__((aligned(8)));
	uint32_t npd;
	uint64_t rng[4];
	uint32_t *pc_free; /* PERCPU: free counter indices */
	uint32_t pc_nfree;
	uint32_t pc_cap;

	/* Counters and the deregistration wait, written from any thread. */
	_Atomic uint32_t nmr __attribute__((aligned(MRKEY__CACHELINE)));
	pthread_mutex_t wait_lock;
	pthread_cond_t wait_cv; /* CLOCK_MONOTONIC */
};

/* alloc.c */
void mrkey__default_allocator(struct mrkey_allocator *a);
void *mrkey__alloc(const struct mrkey_table *t, size_t size);
void mrkey__free(const struct mrkey_table *t, void *p, size_t size);

/* keygen.c */
int mrkey__keygen_init(struct mrkey_table *t, uint64_t seed);
/* A key chosen but not yet taken; keeps what to restore if not taken. */
struct mrkey__key_pick {
	uint32_t slot;
	uint32_t key;
	uint32_t pos;
	uint32_t gen;
	uint32_t next;
	uint64_t rng[4];
};
int mrkey__key_pick(struct mrkey_table *t, struct mrkey__key_pick *p);
void mrkey__key_unpick(struct mrkey_table *t, const struct mrkey__key_pick *p);
void mrkey__key_commit(struct mrkey_table *t, const struct mrkey__key_pick *p);
void mrkey__key_release(struct mrkey_table *t, uint32_t slot, uint32_t key);

/* mr.c */
void mrkey__report_table(struct mrkey_table *t, struct mrkey_mr *mr,
			 const char *what);
void mrkey__ref_put_slow(struct mrkey_mr *mr, uint32_t old);
void mrkey__report(struct mrkey_mr *mr, const char *what);

/*
 * PERCPU mode. While a region is split, its atomic count carries this bias
 * so it cannot reach zero however the shards' gets and puts interleave;
 * collapsing adds the shards' sum and removes the bias.
 */
#define MRKEY__PCPU_BIAS 0x40000000u

static inline _Atomic uint32_t *mrkey__pc_counter(const struct mrkey_table *t,
						  uint32_t idx, int shard)
{
	return (_Atomic uint32_t *)((char *)t->pc_base +
				    (size_t)((unsigned int)shard & t->pc_mask) *
					    t->pc_stride) +
	       idx;
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

/* Call inside a read-side section, with @pcpu read from mr->pcpu there. */
static inline void mrkey__pc_add(const struct mrkey_table *t, uint32_t pcpu,
				 uint32_t delta)
{
	atomic_fetch_add_explicit(mrkey__pc_counter(t, pcpu - 1,
						    mrkey__this_shard()),
				  delta, memory_order_relaxed);
}

static inline bool mrkey__ref_get_not_zero(struct mrkey_mr *mr)
{
	uint32_t old =
		atomic_load_explicit(&mr->refcount, memory_order_relaxed);

	do {
		if (mrkey__unlikely(old == 0))
			return false;
		if (mrkey__unlikely(old >= MRKEY__REF_MAX)) {
			atomic_store_explicit(&mr->refcount,
					      MRKEY__REF_SATURATED,
					      memory_order_relaxed);
			return true;
		}
	} while (!atomic_compare_exchange_weak_explicit(
		&mr->refcount, &old, old + 1, memory_order_seq_cst,
		memory_order_relaxed));
	return true;
}

static inline void mrkey__ref_put(struct mrkey_mr *mr)
{
	uint32_t old = atomic_fetch_sub_explicit(&mr->refcount, 1,
						 memory_order_release);

	/* 2..MAX: an ordinary put. 1: the last. 0 or saturated: misuse. */
	if (mrkey__likely(old - 2u < MRKEY__REF_MAX - 1u))
		return;
	mrkey__ref_put_slow(mr, old);
}

void mrkey__put_split(struct mrkey_mr *mr);

/* Drop one reference, in either refcount mode. */
static inline void mrkey__put(struct mrkey_mr *mr)
{
	/* pcpu only ever goes from set to 0: 0 here stays 0. */
	if (mrkey__unlikely(
		    atomic_load_explicit(&mr->pcpu, memory_order_relaxed))) {
		mrkey__put_split(mr);
		return;
	}
	mrkey__ref_put(mr);
}

#endif /* MRKEY_INTERNAL_H */
