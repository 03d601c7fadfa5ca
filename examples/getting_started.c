// SPDX-License-Identifier: MIT
/*
 * Getting started with mrkey: one key table, one protection domain, one
 * registered buffer, the checks a driver makes when a peer's RDMA READ
 * arrives with an rkey, and the teardown. Every call that can fail returns
 * 0 or a negative errno; this program stops at the first surprise.
 *
 * Build against an installed mrkey:
 *   cc -std=c11 getting_started.c $(pkg-config --cflags --libs mrkey)
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <mrkey/mrkey.h>

/* Stop unless @ret is what the API promises. */
static int expect(const char *what, int ret, int want)
{
	if (ret == want)
		return 0;
	fprintf(stderr, "getting_started: %s: %d (%s), expected %d\n", what,
		ret, mrkey_strerror(ret), want);
	return 1;
}

int main(void)
{
	static char buf[8192]; /* the memory a consumer registers */
	struct mrkey_seg seg = { .addr = buf, .length = sizeof(buf) };
	struct mrkey_mr_attr attr = {
		.addr = (uintptr_t)buf, /* local SGEs name bytes by address */
		.iova = 0x10000,        /* remote requests name them by iova */
		.length = sizeof(buf),
		.access = MRKEY_ACCESS_LOCAL_WRITE | MRKEY_ACCESS_REMOTE_READ,
		.segs = &seg,
		.nsegs = 1,
	};
	struct mrkey_table *table;
	struct mrkey_pd *pd;
	struct mrkey_mr *mr;
	struct mrkey_isge isge, miss;
	struct mrkey_sge_state ss;
	char out[16];
	uint32_t rkey;

	/* A table with all defaults: 2^16 slots, unpredictable keys. */
	if (expect("mrkey_table_create", mrkey_table_create(NULL, &table), 0))
		return 1;
	if (expect("mrkey_pd_alloc", mrkey_pd_alloc(table, 0, &pd), 0))
		return 1;
	attr.pd = pd;
	if (expect("mrkey_mr_reg", mrkey_mr_reg(table, &attr, &mr), 0))
		return 1;
	rkey = mrkey_mr_rkey(mr);
	printf("registered %zu bytes: lkey = rkey = 0x%08x\n", sizeof(buf),
	       rkey);

	/* A peer's RDMA READ of 16 bytes at iova + 100 arrives. */
	strcpy(buf + 100, "hello, peer");
	if (expect("mrkey_rkey_ok",
		   mrkey_rkey_ok(table, pd, rkey, attr.iova + 100, sizeof(out),
				 MRKEY_ACCESS_REMOTE_READ, &isge),
		   0))
		return 1;
	/* isge holds a reference: the region cannot go away under us. */
	mrkey_ss_init(&ss, &isge, 1);
	if (mrkey_ss_copy_out(&ss, out, sizeof(out)) != sizeof(out) ||
	    strcmp(out, "hello, peer")) {
		fprintf(stderr, "getting_started: read the wrong bytes\n");
		return 1;
	}
	mrkey_ss_put(&ss); /* the response is sent: drop the reference */
	printf("served a 16-byte RDMA READ: \"%s\"\n", out);

	/* What a driver must refuse, each with its own error. */
	if (expect("rkey_ok past the end",
		   mrkey_rkey_ok(table, pd, rkey, attr.iova + sizeof(buf) - 8,
				 16, MRKEY_ACCESS_REMOTE_READ, &miss),
		   -ERANGE) ||
	    expect("rkey_ok for a write",
		   mrkey_rkey_ok(table, pd, rkey, attr.iova, 16,
				 MRKEY_ACCESS_REMOTE_WRITE, &miss),
		   -EACCES) ||
	    expect("rkey_ok with a guessed key",
		   mrkey_rkey_ok(table, pd, rkey ^ 0x100, attr.iova, 16,
				 MRKEY_ACCESS_REMOTE_READ, &miss),
		   -ENOENT))
		return 1;
	printf("refused: past the end, a write, a guessed key\n");

	/* Deregister: waits up to 1 s for references still held (none). */
	if (expect("mrkey_mr_dereg", mrkey_mr_dereg(mr, 1000), 0))
		return 1;
	if (expect("rkey_ok after dereg",
		   mrkey_rkey_ok(table, pd, rkey, attr.iova, 16,
				 MRKEY_ACCESS_REMOTE_READ, &miss),
		   -ENOENT))
		return 1;
	if (expect("mrkey_pd_free", mrkey_pd_free(pd), 0) ||
	    expect("mrkey_table_destroy", mrkey_table_destroy(table), 0))
		return 1;
	printf("deregistered; the key no longer resolves; all freed\n");
	return 0;
}
