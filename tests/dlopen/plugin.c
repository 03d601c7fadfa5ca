// SPDX-License-Identifier: MIT
/*
 * A verbs-provider-shaped plug-in: a shared object that embeds mrkey and
 * that a host program loads with dlopen(), as libibverbs loads providers.
 * Built twice by scripts/dlopen-check against the installed package: once
 * linked with libmrkey.so, once with libmrkey.a inside it.
 *
 * mrkey_plugin_run() goes once through a region's whole life and checks
 * every return: 0 when all went as the API says, else the number of the
 * step that did not (and a line on stderr).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <mrkey/mrkey.h>

int mrkey_plugin_run(void);

#define STEP(n, expr, want)                                                    \
	do {                                                                   \
		int got_ = (expr);                                             \
		if (got_ != (want)) {                                          \
			fprintf(stderr, "plugin: step %d: %s = %d (%s)\n",     \
				(n), #expr, got_, mrkey_strerror(got_));       \
			return (n);                                            \
		}                                                              \
	} while (0)

int mrkey_plugin_run(void)
{
	static char buf[4096];
	struct mrkey_seg seg = { .addr = buf, .length = sizeof(buf) };
	struct mrkey_mr_attr ma = {
		.addr = 0x10000,
		.iova = 0x7f0000,
		.length = sizeof(buf),
		.access = MRKEY_ACCESS_LOCAL_WRITE | MRKEY_ACCESS_REMOTE_READ,
		.segs = &seg,
		.nsegs = 1,
	};
	struct mrkey_table *t = NULL;
	struct mrkey_pd *pd = NULL;
	struct mrkey_mr *mr = NULL;
	struct mrkey_isge isge, other;
	uint32_t rkey;

	STEP(1, mrkey_table_create(NULL, &t), 0);
	STEP(2, mrkey_pd_alloc(t, 0, &pd), 0);
	ma.pd = pd;
	STEP(3, mrkey_mr_reg(t, &ma, &mr), 0);
	rkey = mrkey_mr_rkey(mr);
	STEP(4, rkey != 0 && rkey == mrkey_mr_lkey(mr), 1);
	STEP(5,
	     mrkey_rkey_ok(t, pd, rkey, ma.iova + 64, 128,
			   MRKEY_ACCESS_REMOTE_READ, &isge),
	     0);
	STEP(6, isge.mr == mr && isge.vaddr == buf + 64, 1);
	/* Bounds are checked too: one byte past the end is refused. */
	STEP(7,
	     mrkey_rkey_ok(t, pd, rkey, ma.iova + sizeof(buf) - 63, 64,
			   MRKEY_ACCESS_REMOTE_READ, &other),
	     -ERANGE);
	mrkey_isge_put(&isge);
	STEP(8, mrkey_mr_dereg(mr, 1000), 0);
	STEP(9,
	     mrkey_rkey_ok(t, pd, rkey, ma.iova, 64, MRKEY_ACCESS_REMOTE_READ,
			   &other),
	     -ENOENT);
	STEP(10, mrkey_pd_free(pd), 0);
	STEP(11, mrkey_table_destroy(t), 0);
	return 0;
}
