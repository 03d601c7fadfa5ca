// SPDX-License-Identifier: MIT
/*
 * A program built against a 0.1 or 0.2 header calls
 * mrkey_table_create@MRKEY_0.1 with the attribute struct that ended at
 * comp_mask, and a backend ops table that ended at `name`. Put both at the
 * very end of a page followed by an inaccessible one: the library must
 * read neither past its end (a read would fault), and the table it builds
 * must work. Then the same through the default version with the 0.3
 * struct, as a check that the two versions really differ.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mrkey/mrkey.h>

typedef int (*create_fn)(const struct mrkey_table_attr *,
			 struct mrkey_table **);

static int nop_publish(void *ctx, struct mrkey_mr *mr, uint32_t key)
{
	(void)ctx;
	(void)mr;
	(void)key;
	return 0;
}

static void nop_unpublish(void *ctx, struct mrkey_mr *mr, uint32_t key)
{
	(void)ctx;
	(void)mr;
	(void)key;
}

#define FAIL(...)                                                              \
	do {                                                                   \
		fprintf(stderr, "compat_v01: " __VA_ARGS__);                   \
		return 1;                                                      \
	} while (0)

int main(void)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t old_attr =
		offsetof(struct mrkey_table_attr, comp_mask) + sizeof(uint64_t);
	size_t old_ops =
		offsetof(struct mrkey_backend_ops, name) + sizeof(const char *);
	unsigned char *p = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct mrkey_backend_ops *ops;
	struct mrkey_table_attr *attr;
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mw *mw;
	create_fn v01;
	int err;

	if (p == MAP_FAILED || mprotect(p + pg, pg, PROT_NONE))
		FAIL("mmap\n");
	v01 = (create_fn)dlvsym(RTLD_DEFAULT, "mrkey_table_create",
				"MRKEY_0.1");
	if (!v01)
		FAIL("no mrkey_table_create@MRKEY_0.1: %s\n", dlerror());

	/* The old ops at the end of the page, the old attr before them. */
	ops = (struct mrkey_backend_ops *)(void *)(p + pg - old_ops);
	attr = (struct mrkey_table_attr *)(void *)((unsigned char *)ops -
						   ((old_attr + 15) & ~15ul));
	memset(attr, 0, old_attr);
	memset(ops, 0, old_ops);
	ops->key_publish = nop_publish;
	ops->key_unpublish = nop_unpublish;
	ops->name = "compat";
	attr->table_bits = 4;
	attr->backend = ops;
	err = v01(attr, &t);
	if (err)
		FAIL("v01 create: %d\n", err);
	if (mrkey_pd_alloc(t, 0, &pd))
		FAIL("pd_alloc\n");
	/* An old backend has no window ops: no windows, never a fault. */
	err = mrkey_mw_alloc(t, pd, MRKEY_MW_TYPE_1, &mw);
	if (err != -EOPNOTSUPP)
		FAIL("mw_alloc on an old backend: %d\n", err);
	if (mrkey_pd_free(pd) || mrkey_table_destroy(t))
		FAIL("teardown\n");

	/* The old struct at the very end of the page, no backend. */
	attr = (struct mrkey_table_attr *)(void *)(p + pg - old_attr);
	memset(attr, 0, old_attr);
	attr->table_bits = 4;
	err = v01(attr, &t);
	if (err || mrkey_table_destroy(t))
		FAIL("v01 create at the page end: %d\n", err);
	munmap(p, 2 * pg);
	puts("compat_v01: ok");
	return 0;
}
