// SPDX-License-Identifier: MIT
/*
 * A libfabric provider's MR map kept on mrkey: what the tcp, sockets,
 * rxm, rxd and shm providers do with libfabric's ofi_mr_map (a red-black
 * tree under the domain lock), written here against mrkey's public API
 * only. No libfabric code or header: the four operations of the map
 * (insert, verify, get, remove) and the two key modes are modelled with
 * this file's own small types.
 *
 *  - FI_MR_PROV_KEY: the provider picks the keys. A slot table does it,
 *    with unpredictable 32-bit keys.
 *  - requested keys (FI_MR_PROV_KEY off, the mode those providers run
 *    in): the application names each key, any 64-bit value, and a
 *    duplicate is FI_ENOKEY. A requested-key table (MRKEY_INDEX_REQUESTED).
 *
 * What the stock map cannot do, shown below: verify() hands back a
 * reference that the provider's transfer entry holds for the life of the
 * transfer, and fi_close(mr) is mrkey_mr_dereg_async(), so an RMA still
 * in progress keeps writing into the memory it was validated for, never
 * into freed memory, and the key is free for the application at once.
 *
 * Build against an installed mrkey:
 *   cc -std=c11 ofi_mr_map.c $(pkg-config --cflags --libs mrkey)
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mrkey/mrkey.h>

/* This file's stand-ins for libfabric's names. */
#define OFI_REMOTE_READ MRKEY_ACCESS_REMOTE_READ
#define OFI_REMOTE_WRITE MRKEY_ACCESS_REMOTE_WRITE
#define OFI_ENOKEY (-EEXIST) /* what FI_ENOKEY maps from */

/* fi_mr_attr, the part a map reads. */
struct ofi_mr_attr {
	void *buf;
	size_t len;
	unsigned int access;
	uint64_t requested_key; /* ignored with prov_key */
	void *context;          /* the application's fid context */
};

/* The provider's MR object (struct fid_mr in libfabric). */
struct ofi_mr {
	struct mrkey_mr *mr;
	uint64_t key;
	void *app_context;
	int *closed; /* set by the deregistration's callback, for the demo */
};

/* The map: one per domain. */
struct ofi_mr_map {
	struct mrkey_table *table;
	struct mrkey_pd *pd; /* one per domain: keys of other domains fail */
	int prov_key;
};

static int ofi_mr_map_init(struct ofi_mr_map *map, int prov_key)
{
	struct mrkey_table_attr attr;
	int ret;

	memset(&attr, 0, sizeof(attr));
	/* Requested keys: the index has no capacity to choose. */
	if (!prov_key)
		attr.index = MRKEY_INDEX_REQUESTED;
	map->prov_key = prov_key;
	ret = mrkey_table_create(&attr, &map->table);
	if (ret)
		return ret;
	ret = mrkey_pd_alloc(map->table, 0, &map->pd);
	if (ret)
		mrkey_table_destroy(map->table);
	return ret;
}

static void ofi_mr_map_close(struct ofi_mr_map *map)
{
	mrkey_pd_free(map->pd);
	mrkey_table_destroy(map->table);
}

/* ofi_mr_map_insert(): register, publish, return the key. */
static int ofi_mr_map_insert(struct ofi_mr_map *map,
			     const struct ofi_mr_attr *a, struct ofi_mr *omr)
{
	struct mrkey_seg seg = { .addr = a->buf, .length = a->len };
	struct mrkey_mr_attr attr = {
		.pd = map->pd,
		.addr = (uintptr_t)a->buf,
		/* FI_MR_VIRT_ADDR: peers name bytes by the virtual address */
		.iova = (uintptr_t)a->buf,
		.length = a->len,
		.access = a->access,
		.segs = &seg,
		.nsegs = 1,
		.context = omr, /* what verify and get hand back */
	};
	int ret;

	if (map->prov_key)
		ret = mrkey_mr_reg(map->table, &attr, &omr->mr);
	else
		ret = mrkey_mr_reg_key(map->table, &attr, a->requested_key,
				       &omr->mr);
	if (ret)
		return ret;
	omr->key = mrkey_mr_key(omr->mr);
	omr->app_context = a->context;
	omr->closed = NULL;
	return 0;
}

/*
 * A transfer entry (an RMA the provider is serving): it keeps the isge,
 * hence a reference, from verify until the last byte has landed.
 */
struct ofi_xfer {
	struct mrkey_isge isge;
	struct mrkey_sge_state ss;
	struct ofi_mr *omr;
};

/* ofi_mr_map_verify(), for an incoming RMA of @len bytes at @addr. */
static int ofi_mr_map_verify(struct ofi_mr_map *map, uint64_t addr,
			     uint64_t len, uint64_t key, unsigned int access,
			     struct ofi_xfer *x)
{
	int ret = mrkey_key_ok(map->table, map->pd, key, addr, len, access,
			       &x->isge);

	if (ret)
		return ret;
	x->omr = x->isge.mr ? mrkey_mr_context(x->isge.mr) : NULL;
	mrkey_ss_init(&x->ss, &x->isge, 1);
	return 0;
}

/* The transfer ends: drop its reference. */
static void ofi_xfer_done(struct ofi_xfer *x)
{
	mrkey_ss_put(&x->ss);
}

/* ofi_mr_map_get(): the MR of a key, for a completion or an atomic. */
static int ofi_mr_map_get(struct ofi_mr_map *map, uint64_t key,
			  struct mrkey_mr **mrp, struct ofi_mr **omrp)
{
	int ret = mrkey_key_lookup(map->table, key, mrp);

	if (!ret)
		*omrp = mrkey_mr_context(*mrp);
	return ret;
}

/* Runs on the thread that drops the region's last reference. */
static void ofi_mr_closed(struct mrkey_mr *mr, void *arg)
{
	struct ofi_mr *omr = arg;

	(void)mr;
	if (omr->closed)
		*omr->closed = 1;
	free(omr);
}

/*
 * fi_close(mr) = ofi_mr_map_remove(): the key stops resolving now; the
 * provider's object (and the application's right to unmap the buffer)
 * goes when the last transfer holding the region is done.
 */
static int ofi_mr_close(struct ofi_mr *omr, int *closed)
{
	omr->closed = closed;
	return mrkey_mr_dereg_async(omr->mr, ofi_mr_closed, omr);
}

static int fails;

static void expect(const char *what, long got, long want)
{
	if (got == want)
		return;
	fprintf(stderr, "ofi_mr_map: %s: %ld, expected %ld\n", what, got, want);
	fails++;
}

static void requested_keys(void)
{
	static char buf[4096], buf2[4096];
	struct ofi_mr_attr a = {
		.buf = buf,
		.len = sizeof(buf),
		.access = OFI_REMOTE_READ | OFI_REMOTE_WRITE,
		.requested_key = 0xc0ffee, /* both peers requested it */
		.context = "app context",
	};
	struct ofi_mr *omr = calloc(1, sizeof(*omr));
	struct ofi_mr *omr2 = calloc(1, sizeof(*omr2));
	struct ofi_mr *dup = calloc(1, sizeof(*dup));
	struct ofi_mr_map map;
	struct ofi_xfer x, y;
	struct ofi_mr *got = NULL;
	struct mrkey_mr *mr = NULL;
	int closed = 0, closed2 = 0;

	if (!omr || !omr2 || !dup || ofi_mr_map_init(&map, 0)) {
		fails++;
		return;
	}
	expect("insert 0xc0ffee", ofi_mr_map_insert(&map, &a, omr), 0);
	expect("insert 0xc0ffee again", ofi_mr_map_insert(&map, &a, dup),
	       OFI_ENOKEY);
	printf("requested key 0x%llx registered; a second insert: FI_ENOKEY\n",
	       (unsigned long long)omr->key);

	/* A peer's 64-byte RMA write lands in two pieces. */
	expect("verify",
	       ofi_mr_map_verify(&map, (uintptr_t)buf + 128, 64, 0xc0ffee,
				 OFI_REMOTE_WRITE, &x),
	       0);
	expect("verify's context", x.omr == omr, 1);
	expect("first piece", (long)mrkey_ss_copy_in(&x.ss, "first half, ", 12),
	       12);

	/* The completion path looks the MR up by key (sockets, rxm). */
	expect("get", ofi_mr_map_get(&map, 0xc0ffee, &mr, &got), 0);
	expect("get's context", got == omr && got->app_context == a.context, 1);
	mrkey_mr_put(mr);

	/* The application closes the MR while the write is in flight. */
	expect("fi_close", ofi_mr_close(omr, &closed), 0);
	expect("closed while the transfer holds it", closed, 0);
	expect("verify after fi_close",
	       ofi_mr_map_verify(&map, (uintptr_t)buf, 8, 0xc0ffee,
				 OFI_REMOTE_WRITE, &y),
	       -ENOENT);

	/* The key is the application's again at once, for other memory. */
	a.buf = buf2;
	expect("insert 0xc0ffee over a draining MR",
	       ofi_mr_map_insert(&map, &a, omr2), 0);
	expect("verify the new MR",
	       ofi_mr_map_verify(&map, (uintptr_t)buf2, 8, 0xc0ffee,
				 OFI_REMOTE_READ, &y),
	       0);
	expect("the new MR's", y.omr == omr2, 1);
	ofi_xfer_done(&y);

	/* The old transfer still writes only into the old buffer. */
	expect("second piece", (long)mrkey_ss_copy_in(&x.ss, "second half", 12),
	       12);
	expect("old buffer", memcmp(buf + 128, "first half, second half", 24),
	       0);
	expect("new buffer untouched", buf2[0], 0);
	ofi_xfer_done(&x);
	expect("closed when the transfer ended", closed, 1);
	printf("fi_close during an RMA: the MR went when the RMA ended\n");

	/* Zero-length RMA: no key needed (IBTA C9-88's rule, kept). */
	expect("zero-length verify",
	       ofi_mr_map_verify(&map, 0, 0, 0x5eed, OFI_REMOTE_READ, &y), 0);
	ofi_xfer_done(&y);

	expect("fi_close", ofi_mr_close(omr2, &closed2), 0);
	expect("closed at once", closed2, 1);
	free(dup);
	ofi_mr_map_close(&map);
}

static void provider_keys(void)
{
	static char buf[4096];
	struct ofi_mr_attr a = {
		.buf = buf,
		.len = sizeof(buf),
		.access = OFI_REMOTE_READ,
	};
	struct ofi_mr *omr = calloc(1, sizeof(*omr));
	struct ofi_mr_map map;
	struct ofi_xfer x;
	int closed = 0;

	if (!omr || ofi_mr_map_init(&map, 1)) {
		fails++;
		return;
	}
	expect("insert (FI_MR_PROV_KEY)", ofi_mr_map_insert(&map, &a, omr), 0);
	printf("FI_MR_PROV_KEY: the provider issued key 0x%llx\n",
	       (unsigned long long)omr->key);
	expect("verify",
	       ofi_mr_map_verify(&map, (uintptr_t)buf, 16, omr->key,
				 OFI_REMOTE_READ, &x),
	       0);
	ofi_xfer_done(&x);
	expect("a guessed key",
	       ofi_mr_map_verify(&map, (uintptr_t)buf, 16, omr->key ^ 0x100,
				 OFI_REMOTE_READ, &x),
	       -ENOENT);
	expect("a 64-bit key in a 32-bit key space",
	       ofi_mr_map_verify(&map, (uintptr_t)buf, 16,
				 omr->key | (1ull << 40), OFI_REMOTE_READ, &x),
	       -ENOENT);
	expect("a write to a read-only MR",
	       ofi_mr_map_verify(&map, (uintptr_t)buf, 16, omr->key,
				 OFI_REMOTE_WRITE, &x),
	       -EACCES);
	expect("fi_close", ofi_mr_close(omr, &closed), 0);
	expect("closed", closed, 1);
	ofi_mr_map_close(&map);
}

int main(void)
{
	requested_keys();
	provider_keys();
	if (fails) {
		fprintf(stderr, "ofi_mr_map: %d checks failed\n", fails);
		return 1;
	}
	printf("ofi_mr_map: all checks passed\n");
	return 0;
}
