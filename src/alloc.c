// SPDX-License-Identifier: MIT
/*
 * The default allocator: libc's aligned_alloc()/free(), i.e. whatever
 * malloc the process has (jemalloc's, if the program links or preloads
 * it). That keeps libmrkey free of a link-time allocator, so a verbs
 * provider that embeds it can be dlopen()ed: Debian's libjemalloc.so.2
 * uses initial-exec TLS and cannot be loaded after start-up ("cannot
 * allocate memory in static TLS block").
 *
 * Built with MRKEY_WITH_JEMALLOC, mrkey calls mallocx()/dallocx()
 * directly: they exist only in jemalloc, so mrkey's memory comes from it
 * while a program linked against libmrkey.so keeps libc's malloc (libc
 * precedes libmrkey's own dependencies in symbol lookup). Such a build
 * suits programs that load libmrkey at start-up, never plug-ins.
 */
#include <stdlib.h>
#include <sys/mman.h>

#include "internal.h"

#ifdef MRKEY_WITH_JEMALLOC
#include <jemalloc/jemalloc.h>

static void *mrkey__je_alloc(void *ctx, size_t size, size_t align)
{
	return mallocx(size, MALLOCX_ALIGN(align));
}

static void mrkey__je_free(void *ctx, void *ptr, size_t size)
{
	dallocx(ptr, 0);
}
#else
static void *mrkey__libc_alloc(void *ctx, size_t size, size_t align)
{
	/* aligned_alloc() wants a multiple of the alignment. */
	return aligned_alloc(align, (size + align - 1) & ~(align - 1));
}

static void mrkey__libc_free(void *ctx, void *ptr, size_t size)
{
	free(ptr);
}
#endif

void mrkey__default_allocator(struct mrkey_allocator *a)
{
#ifdef MRKEY_WITH_JEMALLOC
	a->alloc = mrkey__je_alloc;
	a->free = mrkey__je_free;
#else
	a->alloc = mrkey__libc_alloc;
	a->free = mrkey__libc_free;
#endif
	a->ctx = NULL;
}

/*
 * Random lookups over a big array miss in the TLB on nearly every probe:
 * ask for transparent huge pages for the whole huge pages inside it.
 */
void mrkey__huge_pages(void *p, size_t bytes)
{
	uintptr_t lo = ((uintptr_t)p + MRKEY__HUGE_PAGE - 1) &
		       ~(uintptr_t)(MRKEY__HUGE_PAGE - 1);
	uintptr_t hi = ((uintptr_t)p + bytes) &
		       ~(uintptr_t)(MRKEY__HUGE_PAGE - 1);

#if defined(MADV_HUGEPAGE) && !defined(MRKEY_NO_THP)
	if (hi > lo)
		(void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
	(void)lo;
	(void)hi;
#endif
}

void *mrkey__alloc(const struct mrkey_table *t, size_t size)
{
	return t->alloc.alloc(t->alloc.ctx, size, MRKEY__CACHELINE);
}

void mrkey__free(const struct mrkey_table *t, void *p, size_t size)
{
	if (p)
		t->alloc.free(t->alloc.ctx, p, size);
}
