// SPDX-License-Identifier: MIT
/*
 * Tables: creation, backend binding, destruction.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#ifdef MRKEY__TSAN
char mrkey__rcu_token;
#endif

#define MRKEY__DEFAULT_TABLE_BITS 16u

/* One line per region: what a lookup, a get and a put touch. */
_Static_assert(sizeof(struct mrkey_mr) == MRKEY__CACHELINE,
	       "a slot record is one cache line");

static int mrkey__check_backend(const struct mrkey_table_attr *attr)
{
	const struct mrkey_backend_ops *ops = attr->backend;
	const struct mrkey_backend_params *p = attr->backend_params;
	unsigned int bits = attr->table_bits;

	if (!ops)
		return p ? -EINVAL : 0;
	/* REQUIRED members (rdmavt's check_support(), in spirit). */
	if (!ops->name || !ops->key_publish || !ops->key_unpublish)
		return -EINVAL;
	/* The table_bits limits size a slot array, which it does not have. */
	if (!p || attr->index == MRKEY_INDEX_REQUESTED)
		return 0;
	if (p->min_table_bits && bits < p->min_table_bits)
		return -EINVAL;
	if (p->max_table_bits && bits > p->max_table_bits)
		return -EINVAL;
	if (p->layouts && !(p->layouts & (1u << attr->layout)))
		return -EINVAL;
	return 0;
}

static int mrkey__check_attr(struct mrkey_table_attr *a)
{
	unsigned int max_bits;

	switch (a->index) {
	case MRKEY_INDEX_SLOT:
		break;
	case MRKEY_INDEX_REQUESTED:
		/* No slots, no key generation: those fields must stay 0. */
		if (a->table_bits || a->layout || a->keygen)
			return -EINVAL;
		a->table_bits = 0;
		goto common;
	default:
		return -EINVAL;
	}
	if (!a->table_bits)
		a->table_bits = MRKEY__DEFAULT_TABLE_BITS;
	switch (a->layout) {
	case MRKEY_LAYOUT_QIB:
		max_bits = 23; /* at least one generation bit */
		break;
	case MRKEY_LAYOUT_INDEX8:
		max_bits = 24;
		break;
	default:
		return -EINVAL;
	}
	if (a->table_bits > max_bits)
		return -EINVAL;
	if (a->keygen != MRKEY_KEYGEN_RANDOM &&
	    a->keygen != MRKEY_KEYGEN_SEQUENTIAL)
		return -EINVAL;
common:
	if (a->refcount != MRKEY_REFCOUNT_ATOMIC &&
	    a->refcount != MRKEY_REFCOUNT_PERCPU)
		return -EINVAL;
	if (a->flags & ~MRKEY_TABLE_NOREF)
		return -EINVAL;
	if (a->allocator && (!a->allocator->alloc || !a->allocator->free))
		return -EINVAL;
	if (a->comp_mask) /* no extension bit known yet */
		return -EINVAL;
	return mrkey__check_backend(a);
}

static void mrkey__slots_free(struct mrkey_table *t);

static void mrkey__table_free(struct mrkey_table *t)
{
	size_t n = t->nslots;

	mrkey__mrx_cache_drain(t);
	mrkey__rrec_cache_drain(t);
	mrkey__idx_free(t);
	mrkey__free(t, t->pc_free, t->pc_cap * sizeof(*t->pc_free));
	mrkey__free(t, (void *)t->pc_base, (t->pc_mask + 1) * t->pc_stride);
	mrkey__free(t, t->free_idx, n * sizeof(*t->free_idx));
	mrkey__slots_free(t);
	pthread_cond_destroy(&t->wait_cv);
	pthread_mutex_destroy(&t->wait_lock);
	pthread_mutex_destroy(&t->lock);
	mrkey__free(t, t, sizeof(*t));
}

static int mrkey__table_sync_init(struct mrkey_table *t)
{
	pthread_condattr_t ca;
	int err;

	err = pthread_mutex_init(&t->lock, NULL);
	if (err)
		return -err;
	err = pthread_mutex_init(&t->wait_lock, NULL);
	if (err)
		goto fail_lock;
	err = pthread_condattr_init(&ca);
	if (err)
		goto fail_wait_lock;
	err = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (!err)
		err = pthread_cond_init(&t->wait_cv, &ca);
	pthread_condattr_destroy(&ca);
	if (err)
		goto fail_wait_lock;
	return 0;

fail_wait_lock:
	pthread_mutex_destroy(&t->wait_lock);
fail_lock:
	pthread_mutex_destroy(&t->lock);
	return -err;
}

/*
 * Split counters come from a pool of rows: only regions whose lookups
 * fight over their count are split, and a region that finds the pool
 * empty stays in the atomic mode.
 */
#define MRKEY__PC_ROWS 4096u
#define MRKEY__PC_MAX_SHARDS 64u

static int mrkey__pc_init(struct mrkey_table *t)
{
	long ncpu = sysconf(_SC_NPROCESSORS_CONF);
	uint32_t shards = 1, i;
	size_t bytes;

	while (shards < MRKEY__PC_MAX_SHARDS && (long)shards < ncpu)
		shards <<= 1;
	t->pc_cap = t->nslots + 1 < MRKEY__PC_ROWS && !mrkey__requested(t) ?
			    t->nslots + 1 :
			    MRKEY__PC_ROWS;
	t->pc_stride =
		((size_t)t->pc_cap * sizeof(int64_t) + MRKEY__CACHELINE - 1) &
		~(size_t)(MRKEY__CACHELINE - 1);
	t->pc_mask = shards - 1;
	bytes = shards * t->pc_stride;
	t->pc_base = mrkey__alloc(t, bytes);
	if (!t->pc_base)
		return -ENOMEM;
	memset((void *)t->pc_base, 0, bytes);
	t->pc_free = mrkey__alloc(t, t->pc_cap * sizeof(*t->pc_free));
	if (!t->pc_free)
		return -ENOMEM;
	/* Handed out from the top: row 0 first. */
	for (i = 0; i < t->pc_cap; i++)
		t->pc_free[i] = t->pc_cap - 1 - i;
	t->pc_nfree = t->pc_cap;
	return 0;
}

/*
 * The slot array: one 64-byte record per slot. Past one huge page it is
 * aligned to huge pages and asked for transparent huge pages, so that
 * random lookups over many regions do not also miss in the TLB. With the
 * default allocator it comes straight from mmap(): zero pages that are
 * faulted in as slots are used, instead of a memset of the whole array
 * (512 MiB at table_bits 23) at creation.
 */

/*
 * LeakSanitizer scans the heap, stacks and globals, not anonymous
 * mappings: a mapped slot array's pointers to the regions' cold parts
 * would look like leaks. Register it as a root in sanitizer builds.
 */
#if defined(__SANITIZE_ADDRESS__)
#define MRKEY__LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#define MRKEY__LSAN 1
#endif
#endif
#ifdef MRKEY__LSAN
#include <sanitizer/lsan_interface.h>
#define mrkey__lsan_root(p, n) __lsan_register_root_region(p, n)
#define mrkey__lsan_unroot(p, n) __lsan_unregister_root_region(p, n)
#else
#define mrkey__lsan_root(p, n) ((void)0)
#define mrkey__lsan_unroot(p, n) ((void)0)
#endif

static void *mrkey__slots_map(size_t bytes, size_t align)
{
	size_t span = bytes + align;
	uint8_t *p = mmap(NULL, span, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uintptr_t start;
	size_t head;

	if (p == MAP_FAILED)
		return NULL;
	start = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
	head = start - (uintptr_t)p;
	if (head)
		munmap(p, head);
	munmap((uint8_t *)start + bytes, span - head - bytes);
	return (void *)start;
}

static int mrkey__slots_init(struct mrkey_table *t, bool mapped)
{
	size_t bytes = (size_t)t->nslots * sizeof(struct mrkey_mr);

	t->slots_mapped = mapped;
	if (mapped) {
		/* Whole huge pages, aligned, once past one. */
		size_t align = MRKEY__CACHELINE;

		if (bytes >= MRKEY__HUGE_PAGE) {
			bytes = (bytes + MRKEY__HUGE_PAGE - 1) &
				~(MRKEY__HUGE_PAGE - 1);
			align = MRKEY__HUGE_PAGE;
		}
		t->slots = mrkey__slots_map(bytes, align);
	} else {
		/* The allocator's contract stops at 64-byte alignment. */
		t->slots =
			t->alloc.alloc(t->alloc.ctx, bytes, MRKEY__CACHELINE);
	}
	if (!t->slots)
		return -ENOMEM;
	t->slots_bytes = bytes;
	mrkey__huge_pages(t->slots, bytes);
	if (!mapped)
		memset(t->slots, 0, bytes);
	else
		mrkey__lsan_root(t->slots, bytes);
	return 0;
}

static void mrkey__slots_free(struct mrkey_table *t)
{
	if (!t->slots)
		return;
	if (t->slots_mapped) {
		mrkey__lsan_unroot(t->slots, t->slots_bytes);
		munmap(t->slots, t->slots_bytes);
	} else
		mrkey__free(t, t->slots, t->slots_bytes);
}

/*
 * mrkey_table_create() has one version per shape of its attribute struct
 * (glibc's way of growing a struct). A program linked against 0.1 or 0.2
 * calls mrkey_table_create@MRKEY_0.1 with the struct that ended at
 * comp_mask, and a backend ops table that ended at `name`: the library
 * reads neither past its end. Programs built now get @@MRKEY_0.3.
 */
#define MRKEY__TABLE_ATTR_SIZE_V01                                             \
	(offsetof(struct mrkey_table_attr, comp_mask) + sizeof(uint64_t))

static int mrkey__table_create(const struct mrkey_table_attr *attr,
			       size_t attr_size, bool v03,
			       struct mrkey_table **tablep)
{
	struct mrkey_table_attr a;
	struct mrkey_allocator alloc;
	struct mrkey_table *t;
	size_t n;
	int err;

	if (!tablep)
		return -EINVAL;
	memset(&a, 0, sizeof(a));
	if (attr)
		memcpy(&a, attr, attr_size);
	err = mrkey__check_attr(&a);
	if (err)
		return err;
	/* The window ops come as a pair. */
	if (a.backend && v03 &&
	    !a.backend->mw_publish != !a.backend->mw_unpublish)
		return -EINVAL;

	if (a.allocator)
		alloc = *a.allocator;
	else
		mrkey__default_allocator(&alloc);

	t = alloc.alloc(alloc.ctx, sizeof(*t), MRKEY__CACHELINE);
	if (!t)
		return -ENOMEM;
	memset(t, 0, sizeof(*t));
	t->alloc = alloc;
	t->table_bits = a.table_bits;
	t->nslots = a.index == MRKEY_INDEX_REQUESTED ? 0 : 1u << a.table_bits;
	t->layout = a.layout;
	t->keygen = a.keygen;
	t->refmode = a.refcount;
	t->flags = a.flags;
	if (a.index == MRKEY_INDEX_REQUESTED)
		t->flags |= MRKEY__TABLE_REQUESTED;
	t->ops = a.backend;
	t->bctx = a.backend_ctx;
	/* An ops table from before 0.3 ends at `name`: see below. */
	t->mw_ops = a.backend && v03 && a.backend->mw_publish &&
		    a.backend->mw_unpublish;
	if (a.backend_params)
		t->params = *a.backend_params;
	if (!t->params.progress_interval_us)
		t->params.progress_interval_us = 100;
	t->report = a.report;
	t->report_ctx = a.report_ctx;
	if (t->layout == MRKEY_LAYOUT_QIB) {
		t->idx_shift = 32 - t->table_bits;
		t->idx_mask = t->nslots - 1;
	} else {
		t->idx_shift = 8;
		t->idx_mask = t->nslots - 1;
	}

	err = mrkey__table_sync_init(t);
	if (err) {
		alloc.free(alloc.ctx, t, sizeof(*t));
		return err;
	}

	err = -ENOMEM;
	n = t->nslots;
	atomic_init(&t->dma_rec, &t->dma[0]);
	/* A requested-key table has no slots: regions come one by one. */
	if (!mrkey__requested(t) && mrkey__slots_init(t, !a.allocator))
		goto fail;
	if (t->keygen == MRKEY_KEYGEN_RANDOM && !mrkey__requested(t)) {
		t->free_idx = mrkey__alloc(t, n * sizeof(*t->free_idx));
		if (!t->free_idx)
			goto fail;
	}
	if (a.refcount == MRKEY_REFCOUNT_PERCPU) {
		err = mrkey__pc_init(t);
		if (err)
			goto fail;
	}
	err = mrkey__keygen_init(t, a.seed);
	if (!err && mrkey__requested(t))
		err = mrkey__idx_init(t); /* its hash seeds come from keygen */
	if (err)
		goto fail;

	if (t->ops && t->ops->bind) {
		err = t->ops->bind(t->bctx, t);
		if (err)
			goto fail;
	}
	*tablep = t;
	return 0;

fail:
	mrkey__table_free(t);
	return err;
}

#ifdef MRKEY_SYMVER
__attribute__((symver("mrkey_table_create@MRKEY_0.1"))) MRKEY_EXTERN int
mrkey__table_create_v01(const struct mrkey_table_attr *attr,
			struct mrkey_table **tablep);
int mrkey__table_create_v01(const struct mrkey_table_attr *attr,
			    struct mrkey_table **tablep)
{
	return mrkey__table_create(attr, MRKEY__TABLE_ATTR_SIZE_V01, false,
				   tablep);
}

__attribute__((symver("mrkey_table_create@@MRKEY_0.3"))) MRKEY_EXTERN int
mrkey__table_create_v03(const struct mrkey_table_attr *attr,
			struct mrkey_table **tablep);
int mrkey__table_create_v03(const struct mrkey_table_attr *attr,
			    struct mrkey_table **tablep)
{
	return mrkey__table_create(attr, sizeof(*attr), true, tablep);
}
#else
/* The static library: every caller was built with this header. */
int mrkey_table_create(const struct mrkey_table_attr *attr,
		       struct mrkey_table **tablep)
{
	return mrkey__table_create(attr, sizeof(*attr), true, tablep);
}
#endif

static bool mrkey__table_busy(struct mrkey_table *t)
{
	bool busy;

	pthread_mutex_lock(&t->lock);
	busy = t->npd || atomic_load_explicit(&t->nmr, memory_order_acquire);
	pthread_mutex_unlock(&t->lock);
	return busy;
}

int mrkey_table_destroy(struct mrkey_table *table)
{
	if (!table)
		return -EINVAL;
	if (mrkey__table_busy(table)) {
		/*
		 * An async deregistration that needed a grace period may
		 * still be queued: let queued callbacks run, then look again.
		 */
		mrkey_reclaim_wait();
		if (mrkey__table_busy(table))
			return -EBUSY;
	}

	/* Regions freed so far still have reclamation queued: let it run. */
	if (mrkey__requested(table))
		mrkey__rrec_flush(table);
	mrkey_reclaim_wait();
	if (table->ops && table->ops->unbind)
		table->ops->unbind(table->bctx, table);
	mrkey__table_free(table);
	return 0;
}

uint32_t mrkey_table_size(const struct mrkey_table *table)
{
	return table ? table->nslots : 0;
}

void *mrkey_table_backend_ctx(const struct mrkey_table *table)
{
	return table ? table->bctx : NULL;
}

void mrkey_reclaim_wait(void)
{
	urcu_bp_barrier();
	mrkey__tsan_acquire();
}
