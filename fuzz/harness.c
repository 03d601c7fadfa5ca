// SPDX-License-Identifier: MIT
/*
 * The fuzz harness: one small mrkey table per input, driven by operations
 * decoded from the input bytes, every result compared with a reference
 * model that is meant to be obviously correct rather than fast.
 *
 * The model is a plain array of the regions the harness registered, each
 * with its key, PD, addr, iova, length, access bits, segments (pointers
 * into a static arena), whether its key is still published, and how many
 * transient references (validated SGEs) the harness holds on it. From that
 * array alone it computes what each call must return:
 *
 *   validation: -EINVAL (length 0, unknown access bit), then -ENOENT (no
 *   published region has exactly this key), then -EPERM (another PD), then
 *   -ERANGE (not inside [base, base + length)), then -EACCES (a requested
 *   bit not granted), else 0 with the host address of the first byte and
 *   the bytes contiguous there; the order is the one src/sge.c documents
 *   and sge.h lists.
 *
 *   registration: -EINVAL for a bad attribute, -ENOMEM when 2^table_bits
 *   slots are taken (by published regions and by deregistered ones that
 *   have not drained), else 0 and a key that is not 0, names a slot no
 *   undrained region holds, is not published twice and (random keygen) is not the slot's
 *   previous key; with the sequential keygen the exact key is predicted.
 *
 *   deregistration with timeout 0: 0 when the harness holds no transient
 *   reference, else -EBUSY with the key unpublished; dereg_async: 0, and
 *   the callback runs exactly once, when the last reference goes.
 *
 *   SGE state: bytes copied = min(asked, left); copy_in writes the model's
 *   byte sequence into a shadow of the arena, copy_out reads it, and the
 *   arena must equal the shadow after every copy.
 *
 *   zero-length requests (IBTA C9-88): a validation of 0 bytes succeeds
 *   without looking the key up (-EINVAL only for a NULL argument or an
 *   unknown access bit), with an isge that names no region and holds no
 *   reference; isge_put and the SGE-state functions skip it.
 *
 *   fast-registration regions (mrkey_mr_alloc): each model entry also
 *   says whether it is one, how many segments it takes, and whether it is
 *   valid (its key published). alloc: -EINVAL for a bad argument, -ENOMEM
 *   as registration (and in the index8 layout when slot 0 is the only free
 *   one), else an invalid region with a nonzero key whose high bits are
 *   nonzero. fast_reg: -EINVAL (not such a region, a bad attribute), then
 *   -EBUSY (valid, being deregistered, or references held: timeout 0),
 *   else valid under (old key & ~0xff) | key_byte with the new
 *   translation; after an error the key, validity and translation are
 *   probed unchanged. invalidate: -ENOENT (no published region with
 *   exactly this key), -EINVAL (a registered or DMA region's), -EPERM
 *   (another PD), else the key stops resolving and held isges still read
 *   the old bytes.
 *
 *   memory windows (mrkey/mw.h): each model window has its type, PD,
 *   current key and, when bound, its region, start (region offset and
 *   iova), length, access and QP. alloc: -EINVAL (NULL, unknown type, a
 *   PD of another table), -ENOMEM as for a fast-reg region (a type 2 key
 *   keeps nonzero upper bits), else an unbound window whose key resolves
 *   to nothing (the sequential key predicted as a registration's). bind:
 *   -EINVAL (NULL, a bit other than the remote ones and ZERO_BASED,
 *   comp_mask, the DMA region, another table's region, mr NULL with a
 *   length or on type 2), -EBUSY (type 2 bound), -ENOENT (region not
 *   published), -EPERM (another PD), -EACCES (no MW_BIND, or REMOTE_WRITE
 *   or ATOMIC without LOCAL_WRITE), -ERANGE, else bound: type 1 under a
 *   new key of its slot (sequential: the predicted redraw), type 2 under
 *   (key & ~0xff) | key_byte; the old key stops resolving; mr NULL
 *   unbinds. Validation of a window key: an lkey never names one; type 2
 *   only through rkey_ok_qp/rkey_check_qp (-ENOENT otherwise) with its QP
 *   (-EPERM otherwise); then PD, bounds from 0 or from addr, the window's
 *   access; success holds a reference on the region, the isge flagged
 *   MRKEY_ISGE_WINDOW, which lkey_ok_merge never merges into. A region
 *   with windows bound: dereg, dereg_async and invalidation -EBUSY. PDs
 *   with windows: pd_free -EBUSY. invalidate of a bound type 1 window's
 *   key: -EINVAL; of a type 2's: unbound. dealloc unbinds and frees the
 *   slot at once.
 *
 * After every operation the reference count of every live region must be
 * (table's 1 while it holds one: a published key, or a fast-registration
 * region not yet deregistered) + (caller's 1 unless async) + holds + the
 * windows bound to it.
 *
 * Requested 64-bit keys (FUZZ_REQKEY, fuzz_reqkey) have a model of their
 * own, below fuzz_run_requested().
 *
 * A mismatch prints both sides and aborts, which libFuzzer records as a
 * crash with the input that reproduces it.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mrkey/mrkey.h>

#include "harness.h"

#define ARENA_SIZE 8192u
#define MAX_BITS 5u
#define MAX_SLOTS (1u << MAX_BITS)
#define MAX_PDS 3
#define MAX_REGIONS 48
#define MAX_SEGS 5
#define FR_MAX_SEGS (MAX_SEGS + 2) /* a fast-registration region's most */
#define MAX_HOLDS 16
#define MAX_STALE 32
#define MAX_SS 4
#define MAX_OPS 256
#define MAX_COPY 600u
#define MAX_WINDOWS 6
/* What a region's access may hold; what a window's may. */
#define REGION_ACCESS (MRKEY_ACCESS_ALL | MRKEY_ACCESS_MW_BIND)
#define WINDOW_ACCESS                                                          \
	(MRKEY_ACCESS_REMOTE_READ | MRKEY_ACCESS_REMOTE_WRITE |                \
	 MRKEY_ACCESS_REMOTE_ATOMIC | MRKEY_ACCESS_ZERO_BASED)

/* Host memory every region's segments point into. */
static uint8_t arena[ARENA_SIZE];
/* What the arena must hold, as the model computes it. */
static uint8_t shadow[ARENA_SIZE];

struct m_seg {
	uint8_t *host;
	uint64_t len;
};

struct m_region {
	bool live;       /* the library has not freed it */
	bool published;  /* its key resolves (fast-reg region: valid) */
	bool tref;       /* the table holds a reference */
	bool dma;        /* key 0, host addresses */
	bool fr;         /* from mrkey_mr_alloc() */
	size_t max_segs; /* fr: the most segments a fast_reg may give */
	bool async;      /* dereg_async called: freed at the last put */
	unsigned int done_calls;
	struct mrkey_mr *mr;
	uint32_t key;
	int pd;
	uint64_t addr, iova, length;
	unsigned int access;
	size_t nsegs;
	struct m_seg segs[FR_MAX_SEGS];
	unsigned int holds; /* transient references the harness holds */
};

struct m_window {
	bool live;
	bool type2;
	bool bound;
	struct mrkey_mw *mw;
	int pd;
	uint32_t key;    /* mrkey_mw_rkey() */
	int region;      /* bound: the model region */
	uint64_t roff;   /* bound: region offset of the window's first byte */
	uint64_t addr;   /* bound: its iova (the bind's addr) */
	uint64_t length; /* bound */
	unsigned int access;
	uint32_t qpn; /* type 2, bound */
};

struct hold {
	bool used;
	bool window; /* validated through a window (never merged into) */
	int region;
	uint64_t start; /* region offset of its first byte (DMA: address) */
	uint32_t len;   /* bytes it covers (grows when an SGE is merged) */
	struct mrkey_isge isge;
};

struct input {
	const uint8_t *p;
	size_t n;
};

struct state {
	struct input in;
	enum fuzz_mode mode;
	struct mrkey_table *table;
	unsigned int bits;
	uint32_t nslots;
	enum mrkey_key_layout layout;
	enum mrkey_keygen keygen;
	enum mrkey_refcount_mode refcount;
	bool noref; /* MRKEY_TABLE_NOREF */
	struct mrkey_pd *pds[MAX_PDS];
	unsigned int pd_flags[MAX_PDS];
	struct m_region r[MAX_REGIONS];
	struct m_window w[MAX_WINDOWS];
	struct hold holds[MAX_HOLDS];
	uint32_t stale[MAX_STALE];
	unsigned int nstale;
	/* random keygen: the key each slot held last (0: none yet) */
	uint32_t last_key[MAX_SLOTS];
	/* sequential keygen: the scan start and the generation counter */
	uint32_t seq_next;
	uint32_t seq_gen;
};

#define FAIL(...)                                                              \
	do {                                                                   \
		fprintf(stderr,                                                \
			"mrkey fuzz: model mismatch at %s:%d: ", __FILE__,     \
			__LINE__);                                             \
		fprintf(stderr, __VA_ARGS__);                                  \
		fputc('\n', stderr);                                           \
		abort();                                                       \
	} while (0)

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			FAIL(__VA_ARGS__);                                     \
	} while (0)

/*
 * Outcome counters, printed at exit when MRKEY_FUZZ_STATS is set: a quick
 * way to see that the inputs reach the interesting paths.
 */
enum {
	ST_VALID_OK,
	ST_VALID_EINVAL,
	ST_VALID_ENOENT,
	ST_VALID_EPERM,
	ST_VALID_ERANGE,
	ST_VALID_EACCES,
	ST_VALID_DMA,
	ST_VALID_MULTISEG,
	ST_REG_OK,
	ST_REG_EINVAL,
	ST_REG_ENOMEM,
	ST_DEREG_OK,
	ST_DEREG_EBUSY,
	ST_ASYNC_NOW,
	ST_ASYNC_LATER,
	ST_SS_LISTS,
	ST_SS_COPY_IN,
	ST_SS_COPY_OUT,
	ST_SS_CROSSED,
	ST_SS_ADVANCE,
	ST_MERGED,
	ST_MERGE_NEW,
	ST_MERGE_ERR,
	ST_CHECK_OK,
	ST_CHECK_ERR,
	ST_VALID_FR,
	ST_ZERO_OK,
	ST_ZERO_EINVAL,
	ST_SS_ZERO,
	ST_ALLOC_OK,
	ST_ALLOC_EINVAL,
	ST_ALLOC_ENOMEM,
	ST_FR_OK,
	ST_FR_EINVAL,
	ST_FR_EBUSY_VALID,
	ST_FR_EBUSY_HELD,
	ST_FR_EBUSY_DEREG,
	ST_INV_OK,
	ST_INV_ENOENT,
	ST_INV_EINVAL,
	ST_INV_EPERM,
	ST_HOLD_READ,
	ST_HOLD_READ_INVALID,
	ST_DEREG_FR,
	ST_MW_ALLOC_OK,
	ST_MW_ALLOC_EINVAL,
	ST_MW_ALLOC_ENOMEM,
	ST_MW_BIND_FIRST,
	ST_MW_REBIND,
	ST_MW_UNBIND,
	ST_MW_BIND_EINVAL,
	ST_MW_BIND_EBUSY,
	ST_MW_BIND_ENOENT,
	ST_MW_BIND_EPERM,
	ST_MW_BIND_EACCES,
	ST_MW_BIND_ERANGE,
	ST_MW_DEALLOC,
	ST_MW_DEALLOC_BOUND,
	ST_MW_VALID_OK,
	ST_MW_VALID_ERR,
	ST_MW_INV_OK,
	ST_MW_INV_EINVAL,
	ST_MW_REGION_EBUSY,
	ST_MW_MERGE_REFUSED,
	ST_MW_SS,
	ST_NSTATS
};
static const char *const stat_names[ST_NSTATS] = {
	"validate ok",
	"validate -EINVAL",
	"validate -ENOENT",
	"validate -EPERM",
	"validate -ERANGE",
	"validate -EACCES",
	"validate ok, DMA region",
	"validate ok, range spans segments",
	"reg ok",
	"reg -EINVAL",
	"reg -ENOMEM",
	"dereg 0",
	"dereg -EBUSY",
	"dereg_async freed at once",
	"dereg_async freed at a later put",
	"ss lists",
	"ss copy_in",
	"ss copy_out",
	"ss copies crossing into the next isge",
	"ss advance",
	"lkey_ok_merge merged",
	"lkey_ok_merge new reference",
	"lkey_ok_merge error",
	"reference-free check ok",
	"reference-free check error",
	"validate ok, fast-reg region",
	"zero-length request ok",
	"zero-length request -EINVAL",
	"ss lists with a zero-length isge",
	"mr_alloc ok",
	"mr_alloc -EINVAL",
	"mr_alloc -ENOMEM",
	"fast_reg ok",
	"fast_reg -EINVAL",
	"fast_reg -EBUSY, region valid",
	"fast_reg -EBUSY, references held",
	"fast_reg -EBUSY, being deregistered",
	"invalidate ok",
	"invalidate -ENOENT",
	"invalidate -EINVAL",
	"invalidate -EPERM",
	"held isge read",
	"held isge read after invalidation",
	"dereg of a fast-reg region",
	"mw_alloc ok",
	"mw_alloc -EINVAL",
	"mw_alloc -ENOMEM",
	"mw_bind ok, first binding",
	"mw_bind ok, rebinding (type 1)",
	"mw_bind unbind (type 1)",
	"mw_bind -EINVAL",
	"mw_bind -EBUSY (type 2 bound)",
	"mw_bind -ENOENT",
	"mw_bind -EPERM",
	"mw_bind -EACCES",
	"mw_bind -ERANGE",
	"mw_dealloc",
	"mw_dealloc of a bound window",
	"validate ok through a window",
	"validate error, window key",
	"invalidate ok, type 2 window",
	"invalidate -EINVAL, type 1 window",
	"dereg/invalidate -EBUSY, windows bound",
	"lkey_ok_merge after a window isge",
	"ss lists through a window"
};
static unsigned long long stats[ST_NSTATS];

static void print_stats(void)
{
	int i;

	for (i = 0; i < ST_NSTATS; i++)
		fprintf(stderr, "mrkey fuzz: %-40s %llu\n", stat_names[i],
			stats[i]);
}

/* ---- input decoding: past the end, every read is 0 ------------------- */

static uint8_t in_u8(struct input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static uint16_t in_u16(struct input *in)
{
	uint16_t v = in_u8(in);

	return (uint16_t)(v | (uint16_t)in_u8(in) << 8);
}

static uint32_t in_u32(struct input *in)
{
	uint32_t v = in_u16(in);

	return v | (uint32_t)in_u16(in) << 16;
}

static uint64_t in_u64(struct input *in)
{
	uint64_t v = in_u32(in);

	return v | (uint64_t)in_u32(in) << 32;
}

/* ---- the model ----------------------------------------------------------- */

static uint32_t key_slot(const struct state *st, uint32_t key)
{
	if (st->layout == MRKEY_LAYOUT_QIB)
		return key >> (32 - st->bits);
	return key >> 8;
}

static uint32_t seq_key(const struct state *st, uint32_t slot, uint32_t gen)
{
	if (st->layout == MRKEY_LAYOUT_QIB) {
		uint32_t genbits = 24 - st->bits;

		return slot << (32 - st->bits) | (gen & ((1u << genbits) - 1))
							 << 8;
	}
	return slot << 8 | (gen & 0xffu);
}

/*
 * Slots taken: a region keeps its slot (which carries its count) until the
 * library frees it, published or not.
 */
static unsigned int taken_count(const struct state *st)
{
	unsigned int i, n = 0;

	for (i = 0; i < MAX_REGIONS; i++)
		if (st->r[i].live && !st->r[i].dma)
			n++;
	for (i = 0; i < MAX_WINDOWS; i++)
		if (st->w[i].live)
			n++; /* a window has its slot from alloc to dealloc */
	return n;
}

static int published_with_key(const struct state *st, uint32_t key)
{
	int i;

	for (i = 0; i < MAX_REGIONS; i++) {
		const struct m_region *r = &st->r[i];

		if (r->live && r->published && r->key == key &&
		    r->dma == (key == 0))
			return i;
	}
	return -1;
}

static bool slot_taken(const struct state *st, uint32_t slot)
{
	int i;

	for (i = 0; i < MAX_REGIONS; i++) {
		const struct m_region *r = &st->r[i];

		if (r->live && !r->dma && key_slot(st, r->key) == slot)
			return true;
	}
	for (i = 0; i < MAX_WINDOWS; i++)
		if (st->w[i].live && key_slot(st, st->w[i].key) == slot)
			return true;
	return false;
}

/* The bound window whose key is exactly @key, or -1. */
static int window_with_key(const struct state *st, uint32_t key)
{
	int i;

	for (i = 0; i < MAX_WINDOWS; i++)
		if (st->w[i].live && st->w[i].bound && st->w[i].key == key)
			return i;
	return -1;
}

/* Windows bound to region @ri. */
static unsigned int windows_on(const struct state *st, int ri)
{
	unsigned int n = 0;
	int i;

	for (i = 0; i < MAX_WINDOWS; i++)
		if (st->w[i].live && st->w[i].bound && st->w[i].region == ri)
			n++;
	return n;
}

/* Host address of byte @off of region @r, and the bytes contiguous there. */
static uint8_t *host_of(const struct m_region *r, uint64_t off,
			uint64_t *contig)
{
	size_t i;

	for (i = 0; i < r->nsegs; i++) {
		if (off < r->segs[i].len) {
			if (contig)
				*contig = r->segs[i].len - off;
			return r->segs[i].host + off;
		}
		off -= r->segs[i].len;
	}
	FAIL("offset beyond the region in the model itself");
	return NULL;
}

/*
 * A validation through a window key (a remote one: an lkey never names a
 * window); @via_qp: mrkey_rkey_ok_qp() with @qpn. On 0, *ridx is the
 * window's region and *off the region offset.
 */
static int model_validate_window(const struct state *st, int wi, bool via_qp,
				 uint32_t qpn, int pd, uint64_t va,
				 uint32_t len, unsigned int access, int *ridx,
				 uint64_t *off)
{
	const struct m_window *w = &st->w[wi];
	uint64_t base = (w->access & MRKEY_ACCESS_ZERO_BASED) ? 0 : w->addr;

	if (w->type2 && !via_qp)
		return -ENOENT; /* a type 2 window resolves only on its QP */
	if (w->pd != pd || (w->type2 && w->qpn != qpn))
		return -EPERM;
	if (va < base || va - base > w->length || len > w->length - (va - base))
		return -ERANGE;
	if ((w->access & access) != access)
		return -EACCES;
	*ridx = w->region;
	*off = w->roff + (va - base);
	return 0;
}

/*
 * What mrkey_lkey_ok()/mrkey_rkey_ok() (mrkey_rkey_ok_qp() with @qpn when
 * @via_qp) must return for these arguments; on 0, *ridx is the region and
 * *off the offset (the address for DMA), and *win (if given) says whether
 * it went through a window.
 */
static int model_validate_q(const struct state *st, bool remote, bool via_qp,
			    uint32_t qpn, int pd, uint32_t key, uint64_t va,
			    uint32_t len, unsigned int access, int *ridx,
			    uint64_t *off, bool *win)
{
	const struct m_region *r;
	int i;

	if (win)
		*win = false;
	if (access & ~(unsigned int)MRKEY_ACCESS_ALL)
		return -EINVAL;
	if (len == 0) {
		/* zero bytes: the key is not looked at */
		*ridx = -1;
		*off = 0;
		return 0;
	}
	i = published_with_key(st, key);
	if (i < 0) {
		int wi = window_with_key(st, key);

		if (wi < 0 || !remote)
			return -ENOENT;
		if (win)
			*win = true;
		return model_validate_window(st, wi, via_qp, qpn, pd, va, len,
					     access, ridx, off);
	}
	r = &st->r[i];
	if (r->pd != pd)
		return -EPERM;
	if (r->dma) {
		/* [va, va + len) must not pass the top of the address space */
		if (va > UINT64_MAX - (len - 1))
			return -ERANGE;
		*off = va;
	} else {
		uint64_t base = remote ? r->iova : r->addr;

		if (va < base || va - base > r->length ||
		    len > r->length - (va - base))
			return -ERANGE;
		*off = va - base;
	}
	if ((r->access & access) != access)
		return -EACCES;
	*ridx = i;
	return 0;
}

static int model_validate(const struct state *st, bool remote, int pd,
			  uint32_t key, uint64_t va, uint32_t len,
			  unsigned int access, int *ridx, uint64_t *off)
{
	return model_validate_q(st, remote, false, 0, pd, key, va, len, access,
				ridx, off, NULL);
}

static void check_refs(struct state *st)
{
	int i;

	for (i = 0; i < MAX_REGIONS; i++) {
		struct m_region *r = &st->r[i];
		uint32_t want, got;

		if (!r->live)
			continue;
		want = (r->tref ? 1u : 0u) + (r->async ? 0u : 1u) + r->holds +
		       windows_on(st, i);
		got = mrkey_mr_refcount(r->mr);
		CHECK(got == want,
		      "region %d key 0x%08x: refcount %u, model %u "
		      "(published %d table's %d async %d holds %u windows %u)",
		      i, r->key, got, want, r->published, r->tref, r->async,
		      r->holds, windows_on(st, i));
		CHECK(mrkey_mr_published(r->mr) == (int)r->published,
		      "region %d key 0x%08x: published %d, model %d", i, r->key,
		      mrkey_mr_published(r->mr), r->published);
		CHECK(mrkey_mr_lkey(r->mr) == r->key &&
			      mrkey_mr_rkey(r->mr) == r->key,
		      "region %d: lkey 0x%08x rkey 0x%08x, model 0x%08x", i,
		      mrkey_mr_lkey(r->mr), mrkey_mr_rkey(r->mr), r->key);
	}
	for (i = 0; i < MAX_WINDOWS; i++) {
		const struct m_window *w = &st->w[i];

		if (!w->live)
			continue;
		CHECK(mrkey_mw_rkey(w->mw) == w->key,
		      "window %d: mrkey_mw_rkey 0x%08x, model 0x%08x", i,
		      mrkey_mw_rkey(w->mw), w->key);
	}
}

static void remember_stale(struct state *st, uint32_t key)
{
	st->stale[st->nstale % MAX_STALE] = key;
	st->nstale++;
}

/*
 * The key of @r stops resolving and the table drops its reference (dereg,
 * dereg_async). The slot keeps the region's current key (a fast-reg
 * region's may have changed since it was last published).
 */
static void model_unpublish(struct state *st, struct m_region *r)
{
	r->tref = false;
	if (!r->dma)
		st->last_key[key_slot(st, r->key)] = r->key;
	if (!r->published)
		return;
	r->published = false;
	remember_stale(st, r->key);
}

static void model_forget(struct m_region *r)
{
	memset(r, 0, sizeof(*r));
}

/* ---- callbacks -------------------------------------------------------------- */

static void on_report(void *ctx, struct mrkey_mr *mr, const char *what)
{
	FAIL("mrkey reported a reference misuse on %p: %s", (void *)mr, what);
}

static void on_done(struct mrkey_mr *mr, void *arg)
{
	struct m_region *r = arg;

	CHECK(r->live && r->async, "dereg_async callback on a region the "
				   "model has not deregistered");
	CHECK(mr == r->mr, "dereg_async callback with mr %p, model %p",
	      (void *)mr, (void *)r->mr);
	/* whether it came at the right put is checked by model_put() */
	r->done_calls++;
}

/* ---- operations ----------------------------------------------------------- */

static int free_region_entry(const struct state *st)
{
	int i;

	for (i = 0; i < MAX_REGIONS; i++)
		if (!st->r[i].live)
			return i;
	return -1;
}

/* A live region picked by the input, or -1; @published_only as it says. */
static int pick_region(struct state *st, bool published_only)
{
	int idx[MAX_REGIONS], n = 0, i;

	for (i = 0; i < MAX_REGIONS; i++)
		if (st->r[i].live && (!published_only || st->r[i].published))
			idx[n++] = i;
	if (!n)
		return -1;
	return idx[in_u8(&st->in) % n];
}

static uint64_t pick_address(struct input *in)
{
	switch (in_u8(in) % 4) {
	case 0:
		return (uint64_t)in_u16(in) << 6;
	case 1:
		return in_u64(in);
	case 2:
		return UINT64_MAX - in_u16(in);
	default:
		return 0x7f0000000000ull + ((uint64_t)in_u32(in) << 4);
	}
}

/*
 * The key the sequential keygen must issue next (a free slot exists); a
 * fast-registration region (@fr) skips slot 0 in the index8 layout.
 */
static uint32_t seq_predict(const struct state *st, bool fr, uint32_t *next,
			    uint32_t *gen)
{
	uint32_t mask = st->nslots - 1, s = st->seq_next, key;

	while (slot_taken(st, s) ||
	       (fr && st->layout == MRKEY_LAYOUT_INDEX8 && s == 0))
		s = (s + 1) & mask;
	*next = (s + 1) & mask;
	*gen = st->seq_gen + 1;
	key = seq_key(st, s, *gen);
	if (key == 0) {
		/* key 0 is the DMA region's: the next generation instead */
		++*gen;
		key = seq_key(st, s, *gen);
	}
	return key;
}

static void op_reg(struct state *st)
{
	struct mrkey_seg segs[MAX_SEGS];
	struct mrkey_mr_attr attr;
	struct mrkey_mr *mr = NULL;
	struct m_region *r;
	uint64_t sum = 0;
	uint8_t shape = in_u8(&st->in);
	size_t nsegs = 1 + in_u8(&st->in) % MAX_SEGS, i;
	unsigned int pow2 = in_u8(&st->in) % 10;
	uint32_t seq_next = 0, seq_gen = 0, seq_want = 0;
	bool bad = false;
	int ent = free_region_entry(st), pd, want, err, j;

	if (ent < 0)
		return;
	memset(&attr, 0, sizeof(attr));
	if ((shape & 0x70) == 0x70)
		nsegs = 0;
	for (i = 0; i < nsegs; i++) {
		uint64_t len;

		if (shape & 1) {
			/* equal power-of-two pieces, the last maybe shorter */
			len = 1u << pow2;
			if (i + 1 == nsegs)
				len = 1 + in_u16(&st->in) % len;
		} else {
			len = 1 + in_u16(&st->in) % 1024;
		}
		if ((shape & 0x0e) == 0x0e && i + 1 == nsegs)
			len = 0; /* an empty segment: -EINVAL */
		segs[i].length = len;
		segs[i].addr = arena + in_u16(&st->in) % (ARENA_SIZE - len + 1);
		if (!len)
			bad = true;
		sum += len;
	}
	pd = in_u8(&st->in) % MAX_PDS;
	attr.pd = st->pds[pd];
	attr.addr = pick_address(&st->in);
	attr.iova = pick_address(&st->in);
	attr.length = sum;
	if ((shape & 0x90) == 0x90)
		attr.length += 1 + in_u8(&st->in); /* not the segments' sum */
	/* a 0 byte (the input's end) gives a region windows can bind to */
	attr.access = in_u8(&st->in) ^
		      (MRKEY_ACCESS_MW_BIND | MRKEY_ACCESS_LOCAL_WRITE |
		       MRKEY_ACCESS_REMOTE_READ);
	if ((attr.access & 0xe0) != 0xe0)
		attr.access &= REGION_ACCESS;
	else
		attr.access = (attr.access & REGION_ACCESS) |
			      (0x20u << (attr.access & 1)); /* unknown */
	attr.segs = segs;
	attr.nsegs = nsegs;

	if (nsegs == 0 || bad || attr.length == 0 || attr.length != sum ||
	    attr.addr > UINT64_MAX - attr.length ||
	    attr.iova > UINT64_MAX - attr.length ||
	    (attr.access & ~(unsigned int)REGION_ACCESS))
		want = -EINVAL;
	else if (taken_count(st) == st->nslots)
		want = -ENOMEM;
	else
		want = 0;
	if (want == 0 && st->keygen == MRKEY_KEYGEN_SEQUENTIAL)
		seq_want = seq_predict(st, false, &seq_next, &seq_gen);

	err = mrkey_mr_reg(st->table, &attr, &mr);
	CHECK(err == want,
	      "mrkey_mr_reg: %d, model %d (nsegs %zu length %llu sum %llu "
	      "addr 0x%llx iova 0x%llx access 0x%x, %u of %u slots taken)",
	      err, want, nsegs, (unsigned long long)attr.length,
	      (unsigned long long)sum, (unsigned long long)attr.addr,
	      (unsigned long long)attr.iova, attr.access, taken_count(st),
	      st->nslots);
	stats[err == 0       ? ST_REG_OK :
	      err == -ENOMEM ? ST_REG_ENOMEM :
			       ST_REG_EINVAL]++;
	if (err)
		return;

	r = &st->r[ent];
	memset(r, 0, sizeof(*r));
	r->mr = mr;
	r->key = mrkey_mr_lkey(mr);
	r->pd = pd;
	r->addr = attr.addr;
	r->iova = attr.iova;
	r->length = attr.length;
	r->access = attr.access;
	r->nsegs = nsegs;
	for (i = 0; i < nsegs; i++) {
		r->segs[i].host = segs[i].addr;
		r->segs[i].len = segs[i].length;
	}

	CHECK(r->key != 0, "mrkey_mr_reg issued key 0");
	CHECK(key_slot(st, r->key) < st->nslots,
	      "key 0x%08x names slot %u of %u", r->key, key_slot(st, r->key),
	      st->nslots);
	CHECK(!slot_taken(st, key_slot(st, r->key)),
	      "key 0x%08x names slot %u, which an undrained region holds",
	      r->key, key_slot(st, r->key));
	for (j = 0; j < MAX_REGIONS; j++)
		CHECK(!(st->r[j].live && st->r[j].published &&
			st->r[j].key == r->key),
		      "key 0x%08x issued twice", r->key);
	if (st->keygen == MRKEY_KEYGEN_RANDOM) {
		uint32_t s = key_slot(st, r->key);

		CHECK(r->key != st->last_key[s],
		      "slot %u reissued its previous key 0x%08x", s, r->key);
	} else {
		CHECK(r->key == seq_want,
		      "sequential keygen issued 0x%08x, model 0x%08x", r->key,
		      seq_want);
		st->seq_next = seq_next;
		st->seq_gen = seq_gen;
	}
	r->live = true;
	r->published = true;
	r->tref = true;
}

/* DMA regions the library has not freed (each holds one DMA record). */
static unsigned int live_dma_count(const struct state *st)
{
	unsigned int i, n = 0;

	for (i = 0; i < MAX_REGIONS; i++)
		if (st->r[i].live && st->r[i].dma)
			n++;
	return n;
}

static void op_reg_dma(struct state *st)
{
	struct mrkey_mr *mr = NULL;
	int pd = in_u8(&st->in) % MAX_PDS, ent = free_region_entry(st);
	unsigned int access = in_u8(&st->in);
	int want, err;

	if (ent < 0)
		return;
	if ((access & 0xf0) != 0xf0)
		access &= MRKEY_ACCESS_ALL;
	else
		access = (access & MRKEY_ACCESS_ALL) | 0x20;

	if (access & ~(unsigned int)MRKEY_ACCESS_ALL)
		want = -EINVAL;
	else if (!(st->pd_flags[pd] & MRKEY_PD_PRIVILEGED))
		want = -EPERM;
	else if (published_with_key(st, 0) >= 0)
		want = -EEXIST;
	else if (live_dma_count(st) >= 4)
		want = -ENOMEM; /* every DMA record holds a draining region */
	else
		want = 0;

	err = mrkey_mr_reg_dma(st->table, st->pds[pd], access, &mr);
	CHECK(err == want, "mrkey_mr_reg_dma: %d, model %d (pd %d access 0x%x)",
	      err, want, pd, access);
	if (err)
		return;
	CHECK(mrkey_mr_lkey(mr) == 0, "DMA region with key 0x%08x",
	      mrkey_mr_lkey(mr));
	memset(&st->r[ent], 0, sizeof(st->r[ent]));
	st->r[ent].live = true;
	st->r[ent].published = true;
	st->r[ent].tref = true;
	st->r[ent].dma = true;
	st->r[ent].mr = mr;
	st->r[ent].pd = pd;
	st->r[ent].access = access;
}

static void probe(struct state *st, int pd, uint32_t key, bool remote,
		  uint64_t va, uint32_t len);

static void dereg_one(struct state *st, int i)
{
	unsigned int timeout = 0;
	struct m_region *r;
	int err, want;

	r = &st->r[i];
	if (r->async) {
		/* only while our holds keep it alive */
		err = mrkey_mr_dereg(r->mr, 0);
		CHECK(err == -EALREADY,
		      "mrkey_mr_dereg of an async-deregistered region: %d, "
		      "model %d",
		      err, -EALREADY);
		return;
	}
	/* Rarely, a real (1 ms) wait that must time out or see the drain. */
	if (in_u8(&st->in) == 0xff)
		timeout = 1;
	if (windows_on(st, i)) {
		/* windows bound: -EBUSY, nothing changes (still published) */
		err = mrkey_mr_dereg(r->mr, timeout);
		CHECK(err == -EBUSY,
		      "mrkey_mr_dereg(key 0x%08x) with %u windows bound: %d, "
		      "model %d",
		      r->key, windows_on(st, i), err, -EBUSY);
		stats[ST_MW_REGION_EBUSY]++;
		check_refs(st);
		probe(st, r->pd, r->key, true, r->dma ? 0 : r->iova, 1);
		return;
	}
	want = r->holds ? -EBUSY : 0;
	err = mrkey_mr_dereg(r->mr, timeout);
	CHECK(err == want,
	      "mrkey_mr_dereg(key 0x%08x, %u ms): %d, model %d "
	      "(%u references held)",
	      r->key, timeout, err, want, r->holds);
	stats[err ? ST_DEREG_EBUSY : ST_DEREG_OK]++;
	if (r->fr)
		stats[ST_DEREG_FR]++;
	model_unpublish(st, r);
	if (!err)
		model_forget(r);
}

static void op_dereg(struct state *st)
{
	int i = pick_region(st, false);

	if (i >= 0)
		dereg_one(st, i);
}

static void op_dereg_async(struct state *st)
{
	int i = pick_region(st, false), err;
	struct m_region *r;

	if (i < 0)
		return;
	r = &st->r[i];
	if (r->async) {
		err = mrkey_mr_dereg_async(r->mr, on_done, r);
		CHECK(err == -EALREADY,
		      "second mrkey_mr_dereg_async: %d, "
		      "model %d",
		      err, -EALREADY);
		return;
	}
	if (windows_on(st, i)) {
		err = mrkey_mr_dereg_async(r->mr, on_done, r);
		CHECK(err == -EBUSY,
		      "mrkey_mr_dereg_async with %u windows bound: %d, model "
		      "%d",
		      windows_on(st, i), err, -EBUSY);
		CHECK(r->done_calls == 0, "a refused dereg_async called back");
		stats[ST_MW_REGION_EBUSY]++;
		return;
	}
	/*
	 * In a split-count or reference-free table the first unpublish of an async
	 * deregistration finishes on liburcu's callback thread after a grace
	 * period (the per-CPU counts are collapsed there), so when the
	 * references drop is not something this single-threaded model can
	 * predict. Such regions go through dereg_async only after an -EBUSY
	 * dereg has unpublished them.
	 */
	if ((st->refcount == MRKEY_REFCOUNT_PERCPU || st->noref) && r->tref)
		return;
	model_unpublish(st, r);
	r->async = true;
	err = mrkey_mr_dereg_async(r->mr, on_done, r);
	CHECK(err == 0, "mrkey_mr_dereg_async: %d, model 0", err);
	if (r->holds == 0) {
		CHECK(r->done_calls == 1,
		      "dereg_async with no reference "
		      "held: callback ran %u times, "
		      "model once",
		      r->done_calls);
		stats[ST_ASYNC_NOW]++;
		model_forget(r);
	} else {
		stats[ST_ASYNC_LATER]++;
		CHECK(r->done_calls == 0,
		      "dereg_async callback ran while %u "
		      "references are held",
		      r->holds);
	}
}

/*
 * After the library dropped references of region @i (and the model
 * counted them off): an async-deregistered region must have run its
 * callback exactly at its last reference, and is gone then.
 */
static void model_settle(struct state *st, int i)
{
	struct m_region *r = &st->r[i];

	if (!r->live)
		return;
	if (r->async && r->holds == 0) {
		CHECK(r->done_calls == 1,
		      "last put of an async-deregistered "
		      "region: callback ran %u times, "
		      "model once",
		      r->done_calls);
		model_forget(r);
	} else if (r->async) {
		CHECK(r->done_calls == 0, "async callback before the last put");
	}
}

/* Drop one transient reference of region @i, as the model sees it. */
static void model_put(struct state *st, int i)
{
	st->r[i].holds--;
	model_settle(st, i);
}

/*
 * Arguments for a validation, mostly aimed at a live region so that most
 * calls get past the lookup; @dma_in_arena keeps DMA addresses inside the
 * arena (for the SGE-state copies).
 */
struct vargs {
	int pd;
	uint32_t key;
	uint64_t va;
	uint32_t len;
	unsigned int access;
	bool remote;
	bool via_qp;  /* remote: through mrkey_rkey_ok_qp() */
	uint32_t qpn; /* its QP number */
};

static void pick_vargs(struct state *st, struct vargs *a, bool sane)
{
	int i = pick_region(st, sane);
	uint8_t sel = in_u8(&st->in);
	uint64_t base = 0, length = ARENA_SIZE, off;
	const struct m_region *r = i >= 0 ? &st->r[i] : NULL;
	unsigned int where;

	a->pd = in_u8(&st->in) % MAX_PDS;
	a->key = in_u32(&st->in);
	if (r) {
		if (!sane && (sel & 0x0f) == 0x0f)
			a->pd = (r->pd + 1) % MAX_PDS;
		else
			a->pd = r->pd;
		switch (sane ? 0 : (sel >> 4) % 8) {
		case 4:
			a->key = r->key ^ (1u << (in_u8(&st->in) % 32));
			break;
		case 5:
			if (st->nstale)
				a->key = st->stale[in_u8(&st->in) %
						   (st->nstale < MAX_STALE ?
							    st->nstale :
							    MAX_STALE)];
			break;
		case 6:
			a->key = 0;
			break;
		case 7:
			break; /* the raw input key */
		default:
			a->key = r->key;
			break;
		}
		if (r->dma) {
			base = (uint64_t)(uintptr_t)arena;
		} else {
			base = a->remote ? r->iova : r->addr;
			length = r->length;
			if (!length)
				length = 1; /* a fast-reg region never valid */
		}
	}
	where = sane ? 0 : in_u8(&st->in) % 8;
	switch (where) {
	case 6: /* around the end */
		off = length - (in_u8(&st->in) % 4);
		break;
	case 7: /* anywhere */
		a->va = in_u64(&st->in);
		goto len;
	default:
		off = in_u16(&st->in) % length;
		break;
	}
	a->va = base + off;
len:
	switch (sane ? 0 : in_u8(&st->in) % 8) {
	case 6:
		a->len = in_u32(&st->in);
		break;
	case 7:
		a->len = in_u8(&st->in) % 2; /* 0 or 1 */
		break;
	default:
		if (a->va - base < length)
			a->len =
				1 + in_u16(&st->in) % (length - (a->va - base));
		else
			a->len = 1 + in_u8(&st->in);
		break;
	}
	/*
	 * The DMA region: a range ending exactly at the top of memory.
	 * (-DMRKEY_FUZZ_NO_TOP_OF_MEMORY leaves this case out, to look for
	 * other findings while one here is being fixed.)
	 */
#ifndef MRKEY_FUZZ_NO_TOP_OF_MEMORY
	if (where == 6 && r && r->dma && a->len)
		a->va = (uint64_t)0 - a->len;
#endif
	a->access = in_u8(&st->in);
	if (sane || (a->access & 0xf0) != 0xf0)
		a->access &= MRKEY_ACCESS_ALL;
	if (sane && r)
		a->access &= r->access;
	a->via_qp = false;
	a->qpn = 0;
}

/*
 * Arguments aimed at a bound window (false: none is bound): its key, its
 * PD and QP, through rkey_ok_qp for type 2; a range inside it. Unless
 * @sane, now and then another QP, the other entry point, a range off its
 * end, access it does not grant.
 */
static bool pick_wargs(struct state *st, struct vargs *a, bool sane)
{
	int idx[MAX_WINDOWS], n = 0, i;
	const struct m_window *w;
	uint8_t sel = sane ? 0 : in_u8(&st->in);
	uint64_t base, off;

	for (i = 0; i < MAX_WINDOWS; i++)
		if (st->w[i].live && st->w[i].bound && st->w[i].length)
			idx[n++] = i;
	if (!n)
		return false;
	w = &st->w[idx[in_u8(&st->in) % n]];
	base = (w->access & MRKEY_ACCESS_ZERO_BASED) ? 0 : w->addr;
	a->remote = true;
	a->pd = w->pd;
	a->key = w->key;
	a->via_qp = w->type2 || (in_u8(&st->in) & 1);
	a->qpn = w->type2 ? w->qpn : in_u8(&st->in) % 4;
	off = in_u16(&st->in) % w->length;
	a->va = base + off;
	a->len = 1 + in_u16(&st->in) % (w->length - off);
	a->access = in_u8(&st->in) & w->access & MRKEY_ACCESS_ALL;
	switch (sel % 16) {
	case 9:
		a->qpn++; /* another QP */
		break;
	case 10:
		a->via_qp = !a->via_qp; /* type 2: rkey_ok, -ENOENT */
		break;
	case 11:
		a->len = (uint32_t)(w->length - off + 1); /* one past the end */
		break;
	case 12:
		a->va = base - 1 - in_u8(&st->in); /* before the start */
		break;
	case 13:
		a->access = in_u8(&st->in) & MRKEY_ACCESS_ALL;
		break;
	case 14:
		a->pd = (a->pd + 1) % MAX_PDS;
		break;
	case 15:
		a->remote = false; /* as an lkey: -ENOENT */
		a->via_qp = false;
		break;
	default:
		break;
	}
	return true;
}

/* do_validate(): a zero-length request succeeded (no region, no ref). */
#define ZERO_LEN (-2)

/*
 * One validation, checked against the model. Returns the region index on
 * success (the isge then holds a reference the caller must account for),
 * ZERO_LEN on the success of a zero-length request, -1 on an expected
 * failure.
 */
static int do_validate(struct state *st, const struct vargs *a,
		       struct mrkey_isge *isge, uint64_t *offp, bool noref)
{
	struct mrkey_isge before;
	uint64_t off = 0, contig;
	uint32_t refs = 0, want_flags;
	bool win = false;
	int want, err, i = -1;

	want = model_validate_q(st, a->remote, a->remote && a->via_qp, a->qpn,
				a->pd, a->key, a->va, a->len, a->access, &i,
				&off, &win);
	if (noref && !st->noref)
		want = -EINVAL; /* reference-free checks need the table flag */
	if (want == 0 && i >= 0)
		refs = mrkey_mr_refcount(st->r[i].mr);
	*offp = off;
	memset(isge, 0xa5, sizeof(*isge));
	before = *isge;
	if (noref) {
		/* the section is the caller's (op_check) */
		if (a->remote && a->via_qp) {
			err = mrkey_rkey_check_qp(st->table, st->pds[a->pd],
						  a->qpn, a->key, a->va, a->len,
						  a->access, isge);
		} else if (a->remote) {
			err = mrkey_rkey_check(st->table, st->pds[a->pd],
					       a->key, a->va, a->len, a->access,
					       isge);
		} else {
			struct mrkey_sge sge = { .addr = a->va,
						 .length = a->len,
						 .lkey = a->key };

			err = mrkey_lkey_check(st->table, st->pds[a->pd], &sge,
					       a->access, isge);
		}
	} else if (a->remote && a->via_qp) {
		err = mrkey_rkey_ok_qp(st->table, st->pds[a->pd], a->qpn,
				       a->key, a->va, a->len, a->access, isge);
	} else if (a->remote) {
		err = mrkey_rkey_ok(st->table, st->pds[a->pd], a->key, a->va,
				    a->len, a->access, isge);
	} else {
		struct mrkey_sge sge = { .addr = a->va,
					 .length = a->len,
					 .lkey = a->key };

		err = mrkey_lkey_ok(st->table, st->pds[a->pd], &sge, a->access,
				    isge);
	}
	CHECK(err == want,
	      "mrkey_%ckey_%s%s(pd %d, qpn %u, key 0x%08x, va 0x%llx, len %u, "
	      "access 0x%x): %d, model %d%s",
	      a->remote ? 'r' : 'l', noref ? "check" : "ok",
	      a->remote && a->via_qp ? "_qp" : "", a->pd, a->qpn, a->key,
	      (unsigned long long)a->va, a->len, a->access, err, want,
	      win ? " (a window's key)" : "");
	if (win)
		stats[err ? ST_MW_VALID_ERR : ST_MW_VALID_OK]++;
	if (noref) {
		stats[err ? ST_CHECK_ERR : ST_CHECK_OK]++;
	} else {
		switch (err) {
		case 0:
			stats[ST_VALID_OK]++;
			break;
		case -EINVAL:
			stats[ST_VALID_EINVAL]++;
			break;
		case -ENOENT:
			stats[ST_VALID_ENOENT]++;
			break;
		case -EPERM:
			stats[ST_VALID_EPERM]++;
			break;
		case -ERANGE:
			stats[ST_VALID_ERANGE]++;
			break;
		default:
			stats[ST_VALID_EACCES]++;
			break;
		}
	}
	if (err) {
		CHECK(!memcmp(isge, &before, sizeof(*isge)),
		      "a failed validation wrote the isge");
		return -1;
	}
	if (i < 0) {
		/* zero bytes: no region, no reference (check_refs sees) */
		stats[ST_ZERO_OK]++;
		CHECK(isge->mr == NULL && isge->length == 0 &&
			      isge->sge_length == 0,
		      "zero-length %s: isge mr %p length %u sge_length %u, "
		      "model NULL 0 0",
		      noref ? "check" : "validation", (void *)isge->mr,
		      isge->length, isge->sge_length);
		return ZERO_LEN;
	}
	if (st->r[i].fr)
		stats[ST_VALID_FR]++;

	CHECK(isge->mr == st->r[i].mr, "isge->mr %p, model %p",
	      (void *)isge->mr, (void *)st->r[i].mr);
	CHECK(isge->sge_length == a->len, "isge->sge_length %u, model %u",
	      isge->sge_length, a->len);
	want_flags = (noref ? MRKEY_ISGE_NOREF : 0u) |
		     (win ? MRKEY_ISGE_WINDOW : 0u);
	CHECK(isge->flags == want_flags, "isge->flags 0x%x, model 0x%x",
	      isge->flags, want_flags);
	CHECK(mrkey_mr_refcount(st->r[i].mr) == refs + (noref ? 0u : 1u),
	      "a successful %s took %u references",
	      noref ? "reference-free check" : "validation",
	      mrkey_mr_refcount(st->r[i].mr) - refs);
	if (st->r[i].dma) {
		stats[ST_VALID_DMA]++;
		CHECK(isge->vaddr == (void *)(uintptr_t)a->va &&
			      isge->length == a->len,
		      "DMA isge: vaddr %p length %u, model 0x%llx %u",
		      isge->vaddr, isge->length, (unsigned long long)a->va,
		      a->len);
	} else {
		uint8_t *host = host_of(&st->r[i], off, &contig);
		uint32_t want_len = contig < a->len ? (uint32_t)contig : a->len;

		if (contig < a->len)
			stats[ST_VALID_MULTISEG]++;

		CHECK(isge->vaddr == host && isge->length == want_len,
		      "isge: vaddr %p length %u, model %p %u (offset %llu)",
		      isge->vaddr, isge->length, (void *)host, want_len,
		      (unsigned long long)off);
	}
	if (!noref)
		st->r[i].holds++;
	return i;
}

static void keep_or_put(struct state *st, int i, struct mrkey_isge *isge,
			uint64_t start, uint32_t len);

static void op_validate(struct state *st, bool remote)
{
	struct vargs a = { 0 };
	struct mrkey_isge isge;
	uint64_t off;
	int i;

	a.remote = remote;
	pick_vargs(st, &a, false);
	if (remote && (in_u8(&st->in) & 3) == 3) {
		/* a region or type 1 key through rkey_ok_qp: the same */
		a.via_qp = true;
		a.qpn = in_u8(&st->in);
	}
	i = do_validate(st, &a, &isge, &off, false);
	if (i == ZERO_LEN) {
		check_refs(st);
		mrkey_isge_put(&isge);
		CHECK(isge.mr == NULL, "mrkey_isge_put of a zero-length isge "
				       "set isge->mr");
	}
	if (i < 0)
		return;
	keep_or_put(st, i, &isge, off, a.len);
}

/* Keep a validated SGE's reference for a while, or drop it at once. */
static void keep_or_put(struct state *st, int i, struct mrkey_isge *isge,
			uint64_t start, uint32_t len)
{
	int h;

	check_refs(st);
	for (h = 0; h < MAX_HOLDS; h++)
		if (!st->holds[h].used)
			break;
	if (h < MAX_HOLDS && (in_u8(&st->in) & 3) != 3) {
		st->holds[h].used = true;
		st->holds[h].window = isge->flags & MRKEY_ISGE_WINDOW;
		st->holds[h].region = i;
		st->holds[h].start = start;
		st->holds[h].len = len;
		st->holds[h].isge = *isge;
		return;
	}
	mrkey_isge_put(isge);
	CHECK(isge->mr == NULL, "mrkey_isge_put left isge->mr set");
	model_put(st, i);
}

/*
 * mrkey_lkey_ok_merge(): an SGE that continues a held one (or nearly
 * does) is merged into it; anything else is validated as by
 * mrkey_lkey_ok().
 */
static void op_merge(struct state *st)
{
	struct mrkey_isge isge, before, last_before, *last = NULL;
	struct mrkey_sge sge;
	struct vargs a = { 0 };
	const struct m_region *r = NULL;
	struct hold *h = NULL;
	uint64_t end = 0, off = 0, contig;
	bool end_ok = false;
	uint8_t sel = in_u8(&st->in);
	int idx[MAX_HOLDS], n = 0, k, want, err, i = -1;

	for (k = 0; k < MAX_HOLDS; k++)
		if (st->holds[k].used)
			idx[n++] = k;
	if (n && (sel & 3) != 3) {
		h = &st->holds[idx[in_u8(&st->in) % n]];
		last = &h->isge;
		r = &st->r[h->region];
		/* where the held SGE ends, in its region's addr space */
		if (r->dma) {
			end_ok = h->start <= UINT64_MAX - h->len;
			end = h->start + h->len;
		} else {
			end = r->addr + h->start + h->len;
			end_ok = true; /* inside the region: no overflow */
		}
	}

	a.remote = false;
	pick_vargs(st, &a, false);
	if (r) {
		switch ((sel >> 2) % 8) {
		case 0:
		case 1:
		case 2:
		case 3: /* the continuation */
			a.key = r->key;
			a.pd = r->pd;
			a.va = end;
			break;
		case 4: /* one byte off */
			a.key = r->key;
			a.pd = r->pd;
			a.va = end + ((sel & 0x80) ? 1 : -1);
			break;
		case 5: /* the continuation in another PD */
			a.key = r->key;
			a.va = end;
			break;
		default: /* whatever pick_vargs chose */
			break;
		}
	}

	/* the model */
	if (a.access & ~(unsigned int)MRKEY_ACCESS_ALL) {
		want = -EINVAL;
	} else if (a.len == 0) {
		want = 0; /* zero bytes: neither merged nor looked up */
	} else if (r && !h->window && r->published && a.key == r->key &&
		   a.pd == r->pd && (r->access & a.access) == a.access &&
		   end_ok && a.va == end && a.len <= UINT32_MAX - h->len &&
		   (r->dma ? a.va <= UINT64_MAX - (a.len - 1) :
			     a.len <= r->length - (h->start + h->len))) {
		want = 1;
	} else {
		want = model_validate(st, false, a.pd, a.key, a.va, a.len,
				      a.access, &i, &off);
	}

	sge.addr = a.va;
	sge.length = a.len;
	sge.lkey = a.key;
	memset(&isge, 0xa5, sizeof(isge));
	before = isge;
	if (last)
		last_before = *last;
	if (h && h->window)
		stats[ST_MW_MERGE_REFUSED]++;
	err = mrkey_lkey_ok_merge(st->table, st->pds[a.pd], &sge, a.access,
				  last, &isge);
	CHECK(err == want,
	      "mrkey_lkey_ok_merge(pd %d, key 0x%08x, va 0x%llx, len %u, "
	      "access 0x%x, last %s, ends at 0x%llx%s): %d, model %d",
	      a.pd, a.key, (unsigned long long)a.va, a.len, a.access,
	      !last     ? "NULL" :
	      h->window ? "held, through a window" :
			  "held",
	      (unsigned long long)end, end_ok ? "" : " + 2^64", err, want);

	if (err < 0) {
		stats[ST_MERGE_ERR]++;
		CHECK(!memcmp(&isge, &before, sizeof(isge)),
		      "a failed merge wrote the isge");
		CHECK(!last || !memcmp(last, &last_before, sizeof(*last)),
		      "a failed merge changed the previous SGE");
		return;
	}
	if (err == 1) {
		uint32_t total = h->len + a.len, want_len = total;

		stats[ST_MERGED]++;
		CHECK(!memcmp(&isge, &before, sizeof(isge)),
		      "a merge wrote the new isge");
		if (!r->dma) {
			host_of(r, h->start, &contig);
			want_len = contig < total ? (uint32_t)contig : total;
		}
		CHECK(last->mr == last_before.mr &&
			      last->vaddr == last_before.vaddr &&
			      last->sge_length == total &&
			      last->length == want_len,
		      "merged SGE: mr %p vaddr %p sge_length %u length %u, "
		      "model %p %p %u %u",
		      (void *)last->mr, last->vaddr, last->sge_length,
		      last->length, (void *)last_before.mr, last_before.vaddr,
		      total, want_len);
		h->len = total;
		check_refs(st);
		return;
	}
	CHECK(!last || !memcmp(last, &last_before, sizeof(*last)),
	      "an unmerged SGE changed the previous one");
	if (a.len == 0) {
		stats[ST_ZERO_OK]++;
		CHECK(isge.mr == NULL && isge.length == 0 &&
			      isge.sge_length == 0,
		      "zero-length mrkey_lkey_ok_merge: isge mr %p length %u "
		      "sge_length %u, model NULL 0 0",
		      (void *)isge.mr, isge.length, isge.sge_length);
		mrkey_isge_put(&isge);
		return;
	}
	/* 0: validated as mrkey_lkey_ok() would, with a new reference */
	stats[ST_MERGE_NEW]++;
	CHECK(isge.mr == st->r[i].mr && isge.sge_length == a.len &&
		      isge.flags == 0,
	      "mrkey_lkey_ok_merge isge: mr %p sge_length %u flags 0x%x, "
	      "model %p %u 0",
	      (void *)isge.mr, isge.sge_length, isge.flags, (void *)st->r[i].mr,
	      a.len);
	if (st->r[i].dma) {
		CHECK(isge.vaddr == (void *)(uintptr_t)a.va &&
			      isge.length == a.len,
		      "DMA isge from merge: vaddr %p length %u", isge.vaddr,
		      isge.length);
	} else {
		uint8_t *host = host_of(&st->r[i], off, &contig);

		CHECK(isge.vaddr == host &&
			      isge.length == (contig < a.len ? contig : a.len),
		      "isge from merge: vaddr %p length %u, model %p",
		      isge.vaddr, isge.length, (void *)host);
	}
	st->r[i].holds++;
	keep_or_put(st, i, &isge, off, a.len);
}

/*
 * Reference-free checks (mrkey_lkey_check(), mrkey_rkey_check()): one to
 * three inside one read-side section, each checked like a validation but
 * taking no reference; the isges die with the section.
 */
static void op_check(struct state *st)
{
	unsigned int n = 1 + in_u8(&st->in) % 3, c;

	mrkey_read_lock();
	for (c = 0; c < n; c++) {
		struct mrkey_isge isge;
		struct vargs a = { 0 };
		uint64_t off;

		uint8_t how = in_u8(&st->in);

		a.remote = how & 1;
		if ((how & 6) != 6 || !pick_wargs(st, &a, false)) {
			pick_vargs(st, &a, false);
			if (a.remote && (how & 8)) {
				a.via_qp = true;
				a.qpn = in_u8(&st->in);
			}
		}
		do_validate(st, &a, &isge, &off, true);
	}
	mrkey_read_unlock();
}

static void put_hold(struct state *st, int h)
{
	mrkey_isge_put(&st->holds[h].isge);
	CHECK(st->holds[h].isge.mr == NULL, "mrkey_isge_put left isge->mr set");
	st->holds[h].used = false;
	model_put(st, st->holds[h].region);
}

static void op_put_hold(struct state *st)
{
	int idx[MAX_HOLDS], n = 0, h;

	for (h = 0; h < MAX_HOLDS; h++)
		if (st->holds[h].used)
			idx[n++] = h;
	if (n)
		put_hold(st, idx[in_u8(&st->in) % n]);
}

/*
 * The model of an SGE state: per entry, where it is and what is left; a
 * zero-length entry has region -1 and nothing left from the start.
 */
struct m_ss {
	int region[MAX_SS];
	uint64_t off[MAX_SS]; /* region offset, or host address for DMA */
	uint64_t left[MAX_SS];
	unsigned int n, cur;
};

static uint8_t *m_ss_byte(const struct state *st, const struct m_ss *m)
{
	const struct m_region *r = &st->r[m->region[m->cur]];

	if (r->dma)
		return (uint8_t *)(uintptr_t)m->off[m->cur];
	return host_of(r, m->off[m->cur], NULL);
}

static void m_ss_step(struct m_ss *m)
{
	m->off[m->cur]++;
	if (--m->left[m->cur] == 0)
		m->cur++;
}

static uint64_t m_ss_remaining(const struct m_ss *m)
{
	uint64_t n = 0;
	unsigned int i;

	for (i = m->cur; i < m->n; i++)
		n += m->left[i];
	return n;
}

/*
 * Move the model's cursor over @len bytes as the copies do: each byte is
 * written into the shadow from @in, or read into @out, when given.
 * Zero-length entries are skipped only while bytes are still asked for.
 * Returns the bytes moved.
 */
static size_t m_ss_walk(const struct state *st, struct m_ss *m, size_t len,
			uint8_t *in, uint8_t *out)
{
	size_t done = 0;

	while (done < len && m->cur < m->n) {
		uint8_t *p;

		if (!m->left[m->cur]) {
			m->cur++;
			continue;
		}
		p = m_ss_byte(st, m);
		if (in)
			shadow[p - arena] = in[done];
		if (out)
			out[done] = *p;
		m_ss_step(m);
		done++;
	}
	return done;
}

/*
 * The piece at the cursor, which a DMA engine would read in place: the
 * current entry, its host address, the bytes contiguous there (to the end
 * of the segment or of the SGE) and the bytes left in the SGE.
 */
static void check_cursor(const struct state *st,
			 const struct mrkey_sge_state *ss, const struct m_ss *m)
{
	const struct mrkey_isge *e;
	const struct m_region *r;
	uint64_t contig;
	uint8_t *p;

	CHECK(ss->cur == m->cur, "ss->cur %u, model %u", ss->cur, m->cur);
	if (m->cur >= m->n)
		return;
	e = &ss->list[m->cur];
	if (m->region[m->cur] < 0) {
		CHECK(e->mr == NULL && e->length == 0 && e->sge_length == 0,
		      "cursor at zero-length entry %u: mr %p length %u "
		      "sge_length %u",
		      m->cur, (void *)e->mr, e->length, e->sge_length);
		return;
	}
	r = &st->r[m->region[m->cur]];
	if (r->dma) {
		p = (uint8_t *)(uintptr_t)m->off[m->cur];
		contig = m->left[m->cur];
	} else {
		p = host_of(r, m->off[m->cur], &contig);
		if (contig > m->left[m->cur])
			contig = m->left[m->cur];
	}
	CHECK(e->vaddr == p && e->length == contig &&
		      e->sge_length == m->left[m->cur],
	      "cursor at entry %u: vaddr %p length %u sge_length %u, model %p "
	      "%llu %llu",
	      m->cur, e->vaddr, e->length, e->sge_length, (void *)p,
	      (unsigned long long)contig, (unsigned long long)m->left[m->cur]);
}

static void op_ss(struct state *st)
{
	struct mrkey_isge list[MAX_SS];
	struct mrkey_sge_state ss;
	uint8_t buf[MAX_COPY], want_buf[MAX_COPY];
	struct m_ss m;
	unsigned int want_n = 1 + in_u8(&st->in) % MAX_SS, tries, ncopies, c;
	unsigned int i;
	bool zero = false;

	memset(&m, 0, sizeof(m));
	for (tries = 0; m.n < want_n && tries < 2 * MAX_SS; tries++) {
		struct vargs a = { 0 };
		uint64_t off = 0;
		int r, dummy;

		uint8_t how = in_u8(&st->in);

		a.remote = how & 1;
		if ((how & 6) == 6 && pick_wargs(st, &a, true))
			stats[ST_MW_SS]++;
		else
			pick_vargs(st, &a, true);
		if ((in_u8(&st->in) & 7) == 7)
			a.len = 0; /* a zero-length request in the list */
		if (model_validate_q(st, a.remote, a.via_qp, a.qpn, a.pd, a.key,
				     a.va, a.len, a.access, &dummy, &off,
				     NULL) == 0 &&
		    dummy >= 0 && st->r[dummy].dma &&
		    (a.va < (uint64_t)(uintptr_t)arena ||
		     a.va + a.len > (uint64_t)(uintptr_t)(arena + ARENA_SIZE)))
			continue; /* DMA outside the arena: not for copying */
		r = do_validate(st, &a, &list[m.n], &off, false);
		if (r == ZERO_LEN) {
			zero = true;
			r = -1;
		} else if (r < 0) {
			continue;
		}
		m.region[m.n] = r;
		m.off[m.n] = off;
		m.left[m.n] = a.len;
		m.n++;
	}
	check_refs(st);

	stats[ST_SS_LISTS]++;
	if (zero)
		stats[ST_SS_ZERO]++;
	mrkey_ss_init(&ss, list, m.n);
	CHECK(mrkey_ss_remaining(&ss) == m_ss_remaining(&m),
	      "mrkey_ss_remaining %llu, model %llu",
	      (unsigned long long)mrkey_ss_remaining(&ss),
	      (unsigned long long)m_ss_remaining(&m));
	check_cursor(st, &ss, &m);
	memcpy(shadow, arena, sizeof(arena));

	ncopies = in_u8(&st->in) % 8;
	for (c = 0; c < ncopies; c++) {
		unsigned int dir = in_u8(&st->in) % 3;
		size_t len = in_u16(&st->in) % MAX_COPY, got, want;
		uint8_t fill = in_u8(&st->in);

		want = m_ss_remaining(&m) < len ? (size_t)m_ss_remaining(&m) :
						  len;
		stats[dir == 0 ? ST_SS_COPY_IN :
		      dir == 1 ? ST_SS_COPY_OUT :
				 ST_SS_ADVANCE]++;
		if (m.cur < m.n && want > m.left[m.cur])
			stats[ST_SS_CROSSED]++;
		if (dir == 2) {
			/* a DMA engine reads the pieces in place */
			CHECK(m_ss_walk(st, &m, len, NULL, NULL) == want,
			      "the model's own walk");
			got = mrkey_ss_advance(&ss, len);
			CHECK(got == want,
			      "mrkey_ss_advance(%zu): %zu, model %zu", len, got,
			      want);
		} else if (dir == 0) {
			for (i = 0; i < len; i++)
				buf[i] = (uint8_t)(fill + i * 7);
			CHECK(m_ss_walk(st, &m, len, buf, NULL) == want,
			      "the model's own walk");
			got = mrkey_ss_copy_in(&ss, buf, len);
			CHECK(got == want,
			      "mrkey_ss_copy_in(%zu): %zu, model %zu", len, got,
			      want);
			CHECK(!memcmp(arena, shadow, sizeof(arena)),
			      "mrkey_ss_copy_in(%zu) wrote other bytes than "
			      "the model",
			      len);
		} else {
			memset(buf, fill, sizeof(buf));
			memset(want_buf, fill, sizeof(want_buf));
			CHECK(m_ss_walk(st, &m, len, NULL, want_buf) == want,
			      "the model's own walk");
			got = mrkey_ss_copy_out(&ss, buf, len);
			CHECK(got == want,
			      "mrkey_ss_copy_out(%zu): %zu, model "
			      "%zu",
			      len, got, want);
			CHECK(!memcmp(buf, want_buf, sizeof(buf)),
			      "mrkey_ss_copy_out(%zu) read other bytes than "
			      "the model",
			      len);
		}
		CHECK(mrkey_ss_remaining(&ss) == m_ss_remaining(&m),
		      "mrkey_ss_remaining %llu, model %llu after a copy",
		      (unsigned long long)mrkey_ss_remaining(&ss),
		      (unsigned long long)m_ss_remaining(&m));
		check_cursor(st, &ss, &m);
	}
	check_refs(st);

	mrkey_ss_put(&ss);
	for (i = 0; i < m.n; i++) {
		CHECK(list[i].mr == NULL, "mrkey_ss_put left list[%u].mr set",
		      i);
		if (m.region[i] >= 0)
			st->r[m.region[i]].holds--;
	}
	for (i = 0; i < m.n; i++)
		if (m.region[i] >= 0)
			model_settle(st, m.region[i]);
	mrkey_ss_put(&ss); /* a second put does nothing */
}

static void op_pd_free(struct state *st)
{
	int pd = in_u8(&st->in) % MAX_PDS, i, err, want = 0;

	for (i = 0; i < MAX_REGIONS; i++)
		if (st->r[i].live && st->r[i].pd == pd)
			want = -EBUSY;
	for (i = 0; i < MAX_WINDOWS; i++)
		if (st->w[i].live && st->w[i].pd == pd)
			want = -EBUSY;
	/*
	 * In split-count and reference-free tables a busy PD first waits for
	 * liburcu's callback thread (about 10 ms): not worth it here.
	 */
	if (want && (st->refcount == MRKEY_REFCOUNT_PERCPU || st->noref))
		return;
	err = mrkey_pd_free(st->pds[pd]);
	CHECK(err == want, "mrkey_pd_free(pd %d): %d, model %d", pd, err, want);
	if (err)
		return;
	err = mrkey_pd_alloc(st->table, st->pd_flags[pd], &st->pds[pd]);
	CHECK(err == 0, "mrkey_pd_alloc: %d", err);
}

/* ---- fast registration, invalidation, zero-length requests -------------- */

/* A PD of another table, for the -EINVAL of mrkey_mr_alloc(). */
static struct mrkey_table *foreign_table;
static struct mrkey_pd *foreign_pd;
/* A bindable region of that table, for the -EINVAL of mrkey_mw_bind(). */
static struct mrkey_mr *foreign_mr;

static void probe_window(struct state *st, int wi, uint32_t key);

/*
 * One validation the harness makes on its own (not from the input) to see
 * what a key resolves to now; the model predicts it like any other, and a
 * reference taken is dropped at once.
 */
static void probe(struct state *st, int pd, uint32_t key, bool remote,
		  uint64_t va, uint32_t len)
{
	struct vargs a = { .pd = pd,
			   .key = key,
			   .va = va,
			   .len = len,
			   .access = 0,
			   .remote = remote };
	struct mrkey_isge isge;
	uint64_t off;
	int i = do_validate(st, &a, &isge, &off, false);

	if (i < 0)
		return;
	mrkey_isge_put(&isge);
	model_put(st, i);
}

/* Probe where a fast-reg region's translation starts and ends. */
static void probe_translation(struct state *st, const struct m_region *r)
{
	int pd = r->pd;
	uint32_t key = r->key;
	uint64_t iova = r->iova, addr = r->addr, length = r->length;

	probe(st, pd, key, true, iova, 1);
	probe(st, pd, key, false, addr + length - 1, 1);
	probe(st, (pd + 1) % MAX_PDS, key, true, iova, 1);
}

/*
 * A live fast-registration region, mostly one whose validity is @valid
 * and (when invalid) idle, the ones the call at hand can succeed on; now
 * and then any fast-reg region, or any live region. -1: none.
 */
static int pick_fr(struct state *st, bool valid)
{
	int idx[MAX_REGIONS], n = 0, i;
	uint8_t sel = in_u8(&st->in);

	if ((sel & 7) == 7)
		return pick_region(st, false);
	for (i = 0; i < MAX_REGIONS; i++) {
		const struct m_region *r = &st->r[i];

		if (r->live && r->fr &&
		    ((sel & 3) == 3 || (r->published == valid && r->tref &&
					(valid || !r->holds))))
			idx[n++] = i;
	}
	if (!n) {
		for (i = 0; i < MAX_REGIONS; i++)
			if (st->r[i].live && st->r[i].fr)
				idx[n++] = i;
	}
	if (!n)
		return pick_region(st, false);
	return idx[in_u8(&st->in) % n];
}

static void op_alloc(struct state *st)
{
	struct mrkey_mr *mr = NULL, **mrp = &mr;
	struct mrkey_table *table = st->table;
	struct mrkey_pd *pdp;
	struct m_region *r;
	uint8_t how = in_u8(&st->in);
	int pd = in_u8(&st->in) % MAX_PDS, ent = free_region_entry(st);
	size_t max_segs = 1 + in_u8(&st->in) % FR_MAX_SEGS;
	uint32_t seq_next = 0, seq_gen = 0, seq_want = 0, key, s;
	unsigned int taken = taken_count(st);
	int want = -EINVAL, err;

	if (ent < 0)
		return;
	pdp = st->pds[pd];
	switch (how % 16) { /* 0-10: good */
	case 11:
		table = NULL;
		break;
	case 12:
		pdp = NULL;
		break;
	case 13:
		mrp = NULL;
		break;
	case 14:
		pdp = foreign_pd;
		break;
	case 15:
		max_segs = 0;
		break;
	default:
		want = 0;
		break;
	}
	if (want == 0 && (taken == st->nslots ||
			  (st->layout == MRKEY_LAYOUT_INDEX8 &&
			   taken + 1 == st->nslots && !slot_taken(st, 0))))
		want = -ENOMEM;
	if (want == 0 && st->keygen == MRKEY_KEYGEN_SEQUENTIAL)
		seq_want = seq_predict(st, true, &seq_next, &seq_gen);

	err = mrkey_mr_alloc(table, pdp, max_segs, mrp);
	CHECK(err == want,
	      "mrkey_mr_alloc(case %u, max_segs %zu): %d, model %d (%u of %u "
	      "slots taken, slot 0 %s)",
	      how % 16, max_segs, err, want, taken, st->nslots,
	      slot_taken(st, 0) ? "taken" : "free");
	stats[err == 0       ? ST_ALLOC_OK :
	      err == -ENOMEM ? ST_ALLOC_ENOMEM :
			       ST_ALLOC_EINVAL]++;
	if (err) {
		CHECK(mr == NULL, "a failed mrkey_mr_alloc wrote the handle");
		return;
	}

	key = mrkey_mr_lkey(mr);
	s = key_slot(st, key);
	CHECK(key != 0 && (key & ~0xffu) != 0,
	      "mrkey_mr_alloc issued key 0x%08x", key);
	CHECK(s < st->nslots, "key 0x%08x names slot %u of %u", key, s,
	      st->nslots);
	CHECK(!slot_taken(st, s),
	      "fast-reg key 0x%08x names slot %u, which an undrained region "
	      "holds",
	      key, s);
	CHECK(!(st->layout == MRKEY_LAYOUT_INDEX8 && s == 0),
	      "index8 fast-reg region in slot 0 (key 0x%08x)", key);
	if (st->keygen == MRKEY_KEYGEN_RANDOM) {
		CHECK(key != st->last_key[s],
		      "slot %u reissued its previous key 0x%08x", s, key);
	} else {
		CHECK(key == seq_want,
		      "sequential keygen issued 0x%08x to a fast-reg region, "
		      "model 0x%08x",
		      key, seq_want);
		st->seq_next = seq_next;
		st->seq_gen = seq_gen;
	}
	CHECK(mrkey_mr_refcount(mr) == 2 && !mrkey_mr_published(mr),
	      "fresh fast-reg region: refcount %u published %d, model 2 0",
	      mrkey_mr_refcount(mr), mrkey_mr_published(mr));
	r = &st->r[ent];
	memset(r, 0, sizeof(*r));
	r->live = true;
	r->fr = true;
	r->tref = true;
	r->mr = mr;
	r->key = key;
	r->pd = pd;
	r->max_segs = max_segs;
	check_refs(st);
	/* invalid: its key resolves to nothing */
	probe(st, pd, key, true, 0, 1);
	probe(st, pd, key, false, 0, 1);
}

static void fast_reg_one(struct state *st, int ri)
{
	struct mrkey_seg segs[FR_MAX_SEGS + 2];
	struct mrkey_fr_attr attr;
	struct mrkey_mr *mr;
	struct m_region *r, before;
	uint8_t shape = in_u8(&st->in), how = in_u8(&st->in);
	unsigned int pow2 = in_u8(&st->in) % 10;
	uint32_t key = 0, newkey;
	uint64_t sum = 0;
	bool bad_seg = false, sum_over = false;
	size_t nsegs, i;
	int want, err;

	r = &st->r[ri];
	mr = r->mr;
	memset(&attr, 0, sizeof(attr));
	nsegs = 1 + in_u8(&st->in) % (r->fr ? r->max_segs : MAX_SEGS);
	if (r->fr && (shape & 0x60) == 0x60)
		nsegs = r->max_segs + 1 + (shape & 0x80 ? 1 : 0); /* too many */
	for (i = 0; i < nsegs; i++) {
		uint64_t len;

		if (shape & 1) {
			len = 1u << pow2;
			if (i + 1 == nsegs)
				len = 1 + in_u16(&st->in) % len;
		} else {
			len = 1 + in_u16(&st->in) % 1024;
		}
		segs[i].length = len;
		segs[i].addr = arena + in_u16(&st->in) % (ARENA_SIZE - len + 1);
		sum += len;
	}
	attr.addr = pick_address(&st->in);
	attr.iova = pick_address(&st->in);
	attr.access = (in_u8(&st->in) ^
		       (MRKEY_ACCESS_MW_BIND | MRKEY_ACCESS_LOCAL_WRITE)) &
		      REGION_ACCESS;
	attr.key_byte = in_u8(&st->in);
	attr.segs = segs;
	attr.nsegs = nsegs;
	attr.length = sum;
	switch (how % 16) { /* 0-5: good */
	case 6:
		attr.nsegs = 0;
		break;
	case 7:
		attr.segs = NULL;
		break;
	case 8:
		segs[in_u8(&st->in) % nsegs].length = 0; /* an empty segment */
		break;
	case 9:
		segs[in_u8(&st->in) % nsegs].addr = NULL;
		break;
	case 10:
		attr.length += 1 + in_u8(&st->in); /* not the segments' sum */
		break;
	case 11:
		attr.comp_mask = 1ull << (in_u8(&st->in) % 64);
		break;
	case 12:
		attr.access |= 0x20u << (in_u8(&st->in) %
					 3); /* unknown bit (16 is MW_BIND) */
		break;
	case 13:
		attr.iova = UINT64_MAX - in_u16(&st->in);
		break;
	case 14:
		attr.addr = UINT64_MAX - in_u16(&st->in);
		break;
	case 15:
		attr.length = 0;
		break;
	default:
		break;
	}

	/* the model, from the attributes as they are */
	sum = 0;
	for (i = 0; attr.segs && i < attr.nsegs; i++) {
		if (!segs[i].addr || !segs[i].length)
			bad_seg = true;
		if (segs[i].length > UINT64_MAX - sum)
			sum_over = true;
		sum += segs[i].length;
	}
	if (!r->fr || attr.comp_mask || !attr.segs || !attr.nsegs ||
	    attr.nsegs > r->max_segs || bad_seg || sum_over ||
	    attr.length == 0 || attr.length != sum ||
	    attr.addr > UINT64_MAX - attr.length ||
	    attr.iova > UINT64_MAX - attr.length ||
	    (attr.access & ~(unsigned int)REGION_ACCESS))
		want = -EINVAL;
	else if (!r->tref || r->published || r->holds)
		want = -EBUSY; /* deregistered, valid, or held */
	else
		want = 0;
	newkey = (r->key & ~0xffu) | attr.key_byte;
	before = *r;

	if ((how >> 4) == 0xf) {
		/* a NULL argument */
		switch (in_u8(&st->in) % 3) {
		case 0:
			err = mrkey_mr_fast_reg(NULL, &attr, 0, &key);
			break;
		case 1:
			err = mrkey_mr_fast_reg(mr, NULL, 0, &key);
			break;
		default:
			err = mrkey_mr_fast_reg(mr, &attr, 0, NULL);
			break;
		}
		want = -EINVAL;
	} else {
		err = mrkey_mr_fast_reg(mr, &attr, 0, &key);
	}
	CHECK(err == want,
	      "mrkey_mr_fast_reg(key 0x%08x, case %u, nsegs %zu of %zu, "
	      "length %llu sum %llu addr 0x%llx iova 0x%llx access 0x%x "
	      "comp_mask 0x%llx): %d, model %d (fr %d valid %d table's %d "
	      "holds %u)",
	      r->key, how % 16, attr.nsegs, r->max_segs,
	      (unsigned long long)attr.length, (unsigned long long)sum,
	      (unsigned long long)attr.addr, (unsigned long long)attr.iova,
	      attr.access, (unsigned long long)attr.comp_mask, err, want, r->fr,
	      r->published, r->tref, r->holds);
	if (err == -EINVAL)
		stats[ST_FR_EINVAL]++;
	else if (err == -EBUSY)
		stats[!r->tref     ? ST_FR_EBUSY_DEREG :
		      r->published ? ST_FR_EBUSY_VALID :
				     ST_FR_EBUSY_HELD]++;
	if (err) {
		/* nothing changed: key, validity, references, translation */
		check_refs(st);
		if (r->published && r->fr)
			probe_translation(st, r);
		else
			probe(st, r->pd, r->key, true, r->iova, 1);
		if (r->fr && newkey != r->key)
			probe(st, r->pd, newkey, true, attr.iova, 1);
		CHECK(r->live && r->key == before.key &&
			      r->published == before.published,
		      "the model changed on a refused fast_reg");
		return;
	}

	stats[ST_FR_OK]++;
	CHECK(key == newkey, "mrkey_mr_fast_reg gave key 0x%08x, model 0x%08x",
	      key, newkey);
	if (key != r->key)
		remember_stale(st, r->key);
	r->key = key;
	r->published = true;
	r->addr = attr.addr;
	r->iova = attr.iova;
	r->length = attr.length;
	r->access = attr.access;
	r->nsegs = attr.nsegs;
	for (i = 0; i < attr.nsegs; i++) {
		r->segs[i].host = segs[i].addr;
		r->segs[i].len = segs[i].length;
	}
	check_refs(st);
	probe_translation(st, r);
	if (before.key != key)
		probe(st, r->pd, before.key, true, r->iova, 1);
}

static void op_fast_reg(struct state *st)
{
	int ri = pick_fr(st, false);

	if (ri >= 0)
		fast_reg_one(st, ri);
}

/* @other_pd: from another PD than the key's region's (or not, if set). */
static void op_invalidate(struct state *st, bool other_pd)
{
	struct mrkey_table *table = st->table;
	struct mrkey_pd *pdp;
	uint8_t sel = in_u8(&st->in), pdsel = in_u8(&st->in);
	int ri = pick_fr(st, true), pd = in_u8(&st->in) % MAX_PDS, j, want, err;
	uint32_t key = in_u32(&st->in);
	const struct m_region *r = ri >= 0 ? &st->r[ri] : NULL;
	bool null_arg = false;
	int wi;

	switch (sel % 8) {
	case 0:
	case 1:
	case 2:
		if (r)
			key = r->key; /* current: valid or invalid */
		break;
	case 3:
		if (st->nstale)
			key = st->stale[in_u8(&st->in) %
					(st->nstale < MAX_STALE ? st->nstale :
								  MAX_STALE)];
		break;
	case 4:
		if (r)
			key = r->key ^ (1u << (in_u8(&st->in) % 32));
		break;
	case 5: {
		/* a region from mrkey_mr_reg() or the DMA region */
		int k = pick_region(st, true);

		if (k >= 0 && !st->r[k].fr)
			key = st->r[k].key;
		break;
	}
	case 6:
		key = 0;
		break;
	default: {
		/* a window's key (bound or not), or the raw input key */
		int idx[MAX_WINDOWS], n = 0, k;

		for (k = 0; k < MAX_WINDOWS; k++)
			if (st->w[k].live)
				idx[n++] = k;
		if (n && (sel & 0x80))
			key = st->w[idx[in_u8(&st->in) % n]].key;
		break;
	}
	}
	j = published_with_key(st, key);
	wi = window_with_key(st, key);
	if (j >= 0)
		pd = st->r[j].pd;
	else if (wi >= 0)
		pd = st->w[wi].pd;
	else if (r)
		pd = r->pd;
	if (((pdsel & 3) == 3) != other_pd) /* another PD */
		pd = (pd + 1 + ((pdsel >> 6) & 1)) % MAX_PDS;
	pdp = st->pds[pd];
	if ((pdsel >> 2) % 16 == 15) {
		table = NULL;
		null_arg = true;
	} else if ((pdsel >> 2) % 16 == 14) {
		pdp = NULL;
		null_arg = true;
	}

	if (null_arg)
		want = -EINVAL;
	else if (j < 0 && wi >= 0)
		want = !st->w[wi].type2   ? -EINVAL :
		       st->w[wi].pd != pd ? -EPERM :
					    0;
	else if (j < 0)
		want = -ENOENT;
	else if (!st->r[j].fr)
		want = -EINVAL;
	else if (st->r[j].pd != pd)
		want = -EPERM;
	else if (windows_on(st, j))
		want = -EBUSY; /* windows are bound to it */
	else
		want = 0;

	err = mrkey_key_invalidate(table, pdp, key);
	CHECK(err == want,
	      "mrkey_key_invalidate(pd %d, key 0x%08x%s): %d, model %d "
	      "(region %d%s, window %d)",
	      pd, key, null_arg ? ", a NULL argument" : "", err, want, j,
	      j < 0       ? "" :
	      st->r[j].fr ? " fast-reg" :
			    " registered",
	      wi);
	if (wi >= 0 && j < 0 && !null_arg)
		stats[err ? ST_MW_INV_EINVAL : ST_MW_INV_OK]++;
	if (err == -EBUSY)
		stats[ST_MW_REGION_EBUSY]++;
	switch (err) {
	case 0:
		stats[ST_INV_OK]++;
		break;
	case -ENOENT:
		stats[ST_INV_ENOENT]++;
		break;
	case -EPERM:
		stats[ST_INV_EPERM]++;
		break;
	default:
		stats[ST_INV_EINVAL]++;
		break;
	}
	if (!err && j >= 0) {
		st->r[j].published = false;
		remember_stale(st, key);
	} else if (!err) {
		st->w[wi].bound = false; /* its reference on the region goes */
		remember_stale(st, key);
		stats[ST_INV_OK]--; /* counted as the window's */
	}
	check_refs(st);
	/* what the key resolves to now (success: nothing) */
	if (wi >= 0 && j < 0)
		probe_window(st, wi, key);
	else if (j >= 0 && !st->r[j].dma)
		probe(st, st->r[j].pd, key, true, st->r[j].iova, 1);
	else
		probe(st, pd, key, false, 0, 1);
}

/*
 * A zero-length request through each entry point, with a NULL argument
 * or an unknown access bit now and then; the SGE state and isge_put must
 * accept the isge it gives.
 */
static void op_zero(struct state *st)
{
	struct mrkey_table *table = st->table;
	struct mrkey_isge isge, before, *isgep = &isge;
	struct mrkey_sge_state ss;
	struct mrkey_sge sge, *sgep = &sge;
	struct mrkey_pd *pdp;
	struct vargs a = { 0 };
	uint8_t sel = in_u8(&st->in), buf[16];
	int want = 0, err, entry = (sel >> 4) % 3;

	a.remote = sel & 1;
	pick_vargs(st, &a, false);
	a.access &= MRKEY_ACCESS_ALL;
	pdp = st->pds[a.pd];
	switch ((sel >> 1) % 8) {
	case 0:
		table = NULL;
		break;
	case 1:
		pdp = NULL;
		break;
	case 2:
		isgep = NULL;
		break;
	case 3:
		sgep = NULL;
		if (a.remote)
			sgep = &sge; /* rkey_ok has no sge */
		break;
	case 4:
		a.access |= 0x10u << (in_u8(&st->in) % 4);
		break;
	default:
		break;
	}
	if (!table || !pdp || !isgep || !sgep ||
	    (a.access & ~(unsigned int)MRKEY_ACCESS_ALL))
		want = -EINVAL;
	sge.addr = a.va;
	sge.length = 0;
	sge.lkey = a.key;
	memset(&isge, 0xa5, sizeof(isge));
	before = isge;
	if (a.remote && entry == 2)
		err = mrkey_rkey_ok_qp(table, pdp, a.key & 3, a.key, a.va, 0,
				       a.access, isgep);
	else if (a.remote)
		err = mrkey_rkey_ok(table, pdp, a.key, a.va, 0, a.access,
				    isgep);
	else if (entry == 0)
		err = mrkey_lkey_ok(table, pdp, sgep, a.access, isgep);
	else
		err = mrkey_lkey_ok_merge(table, pdp, sgep, a.access, NULL,
					  isgep);
	CHECK(err == want,
	      "zero-length mrkey_%s(table %s pd %s isge %s sge %s, key "
	      "0x%08x, access 0x%x): %d, model %d",
	      a.remote && entry == 2 ? "rkey_ok_qp" :
	      a.remote               ? "rkey_ok" :
	      entry == 0             ? "lkey_ok" :
				       "lkey_ok_merge",
	      table ? "set" : "NULL", pdp ? "set" : "NULL",
	      isgep ? "set" : "NULL", sgep ? "set" : "NULL", a.key, a.access,
	      err, want);
	stats[err ? ST_ZERO_EINVAL : ST_ZERO_OK]++;
	if (err) {
		CHECK(!memcmp(&isge, &before, sizeof(isge)),
		      "a refused zero-length request wrote the isge");
		return;
	}
	CHECK(isge.mr == NULL && isge.length == 0 && isge.sge_length == 0,
	      "zero-length isge: mr %p length %u sge_length %u, model NULL 0 "
	      "0",
	      (void *)isge.mr, isge.length, isge.sge_length);
	check_refs(st); /* no reference taken anywhere */
	mrkey_ss_init(&ss, &isge, 1);
	CHECK(mrkey_ss_remaining(&ss) == 0, "a zero-length isge has %llu left",
	      (unsigned long long)mrkey_ss_remaining(&ss));
	CHECK(mrkey_ss_copy_out(&ss, buf, sizeof(buf)) == 0 &&
		      mrkey_ss_copy_in(&ss, buf, sizeof(buf)) == 0 &&
		      mrkey_ss_advance(&ss, sizeof(buf)) == 0,
	      "a copy through a zero-length isge moved bytes");
	if (sel & 0x80) {
		mrkey_ss_put(&ss);
	} else {
		mrkey_isge_put(&isge);
	}
	CHECK(isge.mr == NULL, "put of a zero-length isge set isge->mr");
}

/*
 * Read a held isge (a copy of it: the hold keeps its reference): its
 * bytes are the model's translation at the time it was validated, also
 * after the region's key was invalidated.
 */
static void op_read_hold(struct state *st)
{
	int idx[MAX_HOLDS], n = 0, k;
	struct mrkey_isge copy;
	struct mrkey_sge_state ss;
	uint8_t buf[MAX_COPY], want_buf[MAX_COPY];
	const struct m_region *r;
	const struct hold *h;
	size_t len, got, i;

	for (k = 0; k < MAX_HOLDS; k++)
		if (st->holds[k].used && !st->r[st->holds[k].region].dma)
			idx[n++] = k;
	if (!n)
		return;
	h = &st->holds[idx[in_u8(&st->in) % n]];
	r = &st->r[h->region];
	len = h->len < MAX_COPY ? h->len : MAX_COPY;
	for (i = 0; i < len; i++)
		want_buf[i] = *host_of(r, h->start + i, NULL);
	copy = h->isge;
	mrkey_ss_init(&ss, &copy, 1);
	got = mrkey_ss_copy_out(&ss, buf, len);
	CHECK(got == len && !memcmp(buf, want_buf, len),
	      "a held isge of key 0x%08x (%s) read %zu bytes, other than the "
	      "model's %zu",
	      r->key, r->published ? "published" : "unpublished", got, len);
	stats[ST_HOLD_READ]++;
	if (r->fr && !r->published)
		stats[ST_HOLD_READ_INVALID]++;
}

/*
 * A validation aimed at a valid fast-reg region (its key, inside its
 * range, with access it grants), kept as a hold or put.
 */
static int op_validate_fr(struct state *st, bool remote)
{
	int ri = pick_fr(st, true), i;
	struct mrkey_isge isge;
	struct vargs a = { 0 };
	uint64_t off;
	const struct m_region *r;

	if (ri < 0 || !st->r[ri].fr || !st->r[ri].published)
		return -1;
	r = &st->r[ri];
	off = in_u16(&st->in) % r->length;
	a.remote = remote;
	a.pd = r->pd;
	a.key = r->key;
	a.va = (remote ? r->iova : r->addr) + off;
	a.len = 1 + in_u16(&st->in) % (r->length - off);
	a.access = in_u8(&st->in) & r->access;
	i = do_validate(st, &a, &isge, &off, false);
	if (i >= 0)
		keep_or_put(st, i, &isge, off, a.len);
	return i;
}

/*
 * The verbs cycle in one operation, so that even an input that ends here
 * (every byte read past the end is 0, the good choice) gets through it:
 * alloc when asked or needed, fast_reg, a validation kept as a hold,
 * invalidation (now and then from another PD first), a read of the
 * holds, fast_reg again (-EBUSY while held), now and then a dereg of the
 * held region (-EBUSY) and a fast_reg of it, the hold's put, and fast_reg
 * once more.
 */
static void op_fr_cycle(struct state *st)
{
	uint8_t steps = in_u8(&st->in), more = in_u8(&st->in);
	int i, n = 0, held = -1;

	for (i = 0; i < MAX_REGIONS; i++)
		if (st->r[i].live && st->r[i].fr && st->r[i].tref &&
		    !st->r[i].published && !st->r[i].holds)
			n++;
	if (!n || (steps & 1))
		op_alloc(st);
	op_fast_reg(st);
	if (!(steps & 2))
		held = op_validate_fr(st, steps & 0x40);
	if (steps & 0x80)
		op_invalidate(st, true);
	op_invalidate(st, false);
	if (!(steps & 4))
		op_read_hold(st);
	if (!(steps & 8))
		op_fast_reg(st);
	if ((more & 3) == 3 && held >= 0 && st->r[held].live &&
	    !st->r[held].async && st->r[held].holds) {
		dereg_one(st, held); /* -EBUSY: references held */
		fast_reg_one(st, held);
	}
	if (!(steps & 0x10))
		op_put_hold(st);
	if (!(steps & 0x20))
		op_fast_reg(st);
}

/* ---- memory windows ------------------------------------------------------ */

/* What key @key of window @wi resolves to now, through each entry point. */
static void probe_window(struct state *st, int wi, uint32_t key)
{
	const struct m_window *w = &st->w[wi];
	struct vargs a = { .pd = w->pd,
			   .key = key,
			   .va = (w->access & MRKEY_ACCESS_ZERO_BASED) ?
					 0 :
					 w->addr,
			   .len = 1,
			   .access = 0,
			   .remote = true,
			   .via_qp = true,
			   .qpn = w->qpn };
	struct mrkey_isge isge;
	uint64_t off;
	int pass, i;

	for (pass = 0; pass < 3; pass++) {
		a.via_qp = pass == 0;
		a.remote = pass < 2; /* the last: as an lkey */
		i = do_validate(st, &a, &isge, &off, false);
		if (i >= 0) {
			mrkey_isge_put(&isge);
			model_put(st, i);
		}
	}
}

static int free_window_entry(const struct state *st)
{
	int i;

	for (i = 0; i < MAX_WINDOWS; i++)
		if (!st->w[i].live)
			return i;
	return -1;
}

/* A live window picked by the input (@bound_only: a bound one), or -1. */
static int pick_window(struct state *st, bool bound_only)
{
	int idx[MAX_WINDOWS], n = 0, i;

	for (i = 0; i < MAX_WINDOWS; i++)
		if (st->w[i].live && (!bound_only || st->w[i].bound))
			idx[n++] = i;
	if (!n)
		return -1;
	return idx[in_u8(&st->in) % n];
}

/* Mostly a region window @wi can be bound to; any live one otherwise. */
static int pick_bindable(struct state *st, int wi)
{
	int idx[MAX_REGIONS], n = 0, i;

	for (i = 0; i < MAX_REGIONS; i++) {
		const struct m_region *r = &st->r[i];

		if (r->live && r->published && !r->dma &&
		    r->pd == st->w[wi].pd && (r->access & MRKEY_ACCESS_MW_BIND))
			idx[n++] = i;
	}
	if (!n)
		return pick_region(st, true);
	return idx[in_u8(&st->in) % n];
}

/*
 * The key the sequential keygen gives a type 1 window of @slot that holds
 * @old (mrkey_mw_bind(): a redraw, the generation bumped past 0 and past
 * the old key); *gen is advanced as the library's counter.
 */
static uint32_t seq_redraw(const struct state *st, uint32_t slot, uint32_t old,
			   uint32_t *gen)
{
	uint32_t key;

	do {
		++*gen;
		key = seq_key(st, slot, *gen);
		if (key == 0) {
			++*gen;
			key = seq_key(st, slot, *gen);
		}
	} while (key == 0 || key == old);
	return key;
}

static void op_mw_alloc(struct state *st)
{
	struct mrkey_mw *mw = NULL, **mwp = &mw;
	struct mrkey_table *table = st->table;
	struct mrkey_pd *pdp;
	struct m_window *w;
	uint8_t how = in_u8(&st->in);
	int pd = in_u8(&st->in) % MAX_PDS, ent = free_window_entry(st);
	enum mrkey_mw_type type = (how & 0x10) ? MRKEY_MW_TYPE_2 :
						 MRKEY_MW_TYPE_1;
	uint32_t seq_next = 0, seq_gen = 0, seq_want = 0, key, s;
	unsigned int taken = taken_count(st);
	bool type2;
	int want = -EINVAL, err;

	if (ent < 0)
		return;
	if (!(how & 0x20)) {
		/* mostly the PD of a region it can be bound to */
		int idx[MAX_REGIONS], n = 0, i;

		for (i = 0; i < MAX_REGIONS; i++)
			if (st->r[i].live && st->r[i].published &&
			    !st->r[i].dma &&
			    (st->r[i].access & MRKEY_ACCESS_MW_BIND))
				idx[n++] = i;
		if (n)
			pd = st->r[idx[in_u8(&st->in) % n]].pd;
	}
	pdp = st->pds[pd];
	switch (how % 16) { /* 0-9: good */
	case 10:
		table = NULL;
		break;
	case 11:
		pdp = NULL;
		break;
	case 12:
		mwp = NULL;
		break;
	case 13:
		pdp = foreign_pd;
		break;
	case 14:
		type = (enum mrkey_mw_type)0;
		break;
	case 15:
		type = (enum mrkey_mw_type)(3 + in_u8(&st->in));
		break;
	default:
		want = 0;
		break;
	}
	type2 = type == MRKEY_MW_TYPE_2;
	/* a type 2 window is placed as a fast-reg region is */
	if (want == 0 && (taken == st->nslots ||
			  (type2 && st->layout == MRKEY_LAYOUT_INDEX8 &&
			   taken + 1 == st->nslots && !slot_taken(st, 0))))
		want = -ENOMEM;
	if (want == 0 && st->keygen == MRKEY_KEYGEN_SEQUENTIAL)
		seq_want = seq_predict(st, type2, &seq_next, &seq_gen);

	err = mrkey_mw_alloc(table, pdp, type, mwp);
	CHECK(err == want,
	      "mrkey_mw_alloc(case %u, type %d): %d, model %d (%u of %u slots "
	      "taken, slot 0 %s)",
	      how % 16, (int)type, err, want, taken, st->nslots,
	      slot_taken(st, 0) ? "taken" : "free");
	stats[err == 0       ? ST_MW_ALLOC_OK :
	      err == -ENOMEM ? ST_MW_ALLOC_ENOMEM :
			       ST_MW_ALLOC_EINVAL]++;
	if (err) {
		CHECK(mw == NULL, "a failed mrkey_mw_alloc wrote the handle");
		return;
	}
	key = mrkey_mw_rkey(mw);
	s = key_slot(st, key);
	CHECK(key != 0 && (!type2 || (key & ~0xffu) != 0),
	      "mrkey_mw_alloc issued key 0x%08x (type %d)", key, (int)type);
	CHECK(s < st->nslots, "window key 0x%08x names slot %u of %u", key, s,
	      st->nslots);
	CHECK(!slot_taken(st, s),
	      "window key 0x%08x names slot %u, which another holds", key, s);
	CHECK(!(type2 && st->layout == MRKEY_LAYOUT_INDEX8 && s == 0),
	      "index8 type 2 window in slot 0 (key 0x%08x)", key);
	if (st->keygen == MRKEY_KEYGEN_RANDOM) {
		CHECK(key != st->last_key[s],
		      "slot %u reissued its previous key 0x%08x", s, key);
	} else {
		CHECK(key == seq_want,
		      "sequential keygen issued 0x%08x to a window, model "
		      "0x%08x",
		      key, seq_want);
		st->seq_next = seq_next;
		st->seq_gen = seq_gen;
	}
	w = &st->w[ent];
	memset(w, 0, sizeof(*w));
	w->live = true;
	w->type2 = type2;
	w->mw = mw;
	w->pd = pd;
	w->key = key;
	check_refs(st);
	probe_window(st, ent, key); /* unbound: nothing */
}

static void mw_bind_one(struct state *st, int wi)
{
	struct m_window *w = &st->w[wi];
	struct mrkey_mw_bind_attr attr, *ap = &attr;
	struct mrkey_mw *mwp = w->mw;
	const struct m_region *r = NULL;
	uint8_t how = in_u8(&st->in), sel = in_u8(&st->in);
	uint32_t key = 0, *keyp = &key, newkey = 0, old = w->key;
	uint32_t gen = st->seq_gen;
	bool foreign = false, null_arg = false;
	int ri = -1, want, err;

	memset(&attr, 0, sizeof(attr));
	switch (how % 16) {
	case 12: /* unbind, or mr NULL with a length */
		break;
	case 13:
		attr.mr = foreign_mr;
		foreign = true;
		break;
	case 14:
	case 15:
		ri = pick_region(st,
				 false); /* any: DMA, invalid, unpublished */
		break;
	default:
		ri = pick_bindable(st, wi);
		break;
	}
	if (ri >= 0) {
		r = &st->r[ri];
		attr.mr = r->mr;
	}
	if (r && !r->dma && r->length) {
		uint64_t off = in_u16(&st->in) % (r->length + 1);

		attr.addr = r->iova + off;
		/* a 0 byte: the rest of the region */
		attr.length = (r->length - off) -
			      in_u16(&st->in) % (r->length - off + 1);
	} else {
		attr.addr = in_u16(&st->in);
		attr.length = attr.mr ? in_u8(&st->in) : 0;
	}
	switch (sel % 16) {
	case 10:
		attr.addr = pick_address(&st->in);
		break;
	case 11:
		attr.length = in_u64(&st->in);
		break;
	case 12:
		attr.length += 1 + in_u8(&st->in);
		break;
	case 13:
		attr.addr -= 1 + in_u8(&st->in);
		break;
	case 14:
		attr.comp_mask = 1ull << (in_u8(&st->in) % 64);
		break;
	default:
		break;
	}
	attr.access = in_u8(&st->in) & WINDOW_ACCESS;
	if ((sel & 0xf0) == 0xf0) {
		/* a bit no window may have */
		static const unsigned int bad[] = { MRKEY_ACCESS_LOCAL_WRITE,
						    MRKEY_ACCESS_MW_BIND, 0x40,
						    0x80, 0x100 };

		attr.access |= bad[in_u8(&st->in) % 5];
	}
	attr.key_byte = in_u8(&st->in);
	attr.qpn = in_u8(&st->in) % 4;
	if ((how >> 4) == 0xf) {
		null_arg = true;
		switch (in_u8(&st->in) % 3) {
		case 0:
			mwp = NULL;
			break;
		case 1:
			ap = NULL;
			break;
		default:
			keyp = NULL;
			break;
		}
	}

	/* the model, in API.md's order */
	if (null_arg || (attr.access & ~(unsigned int)WINDOW_ACCESS) ||
	    attr.comp_mask)
		want = -EINVAL;
	else if (!attr.mr && (attr.length || w->type2))
		want = -EINVAL;
	else if (foreign || (r && r->dma))
		want = -EINVAL;
	else if (w->type2 && w->bound)
		want = -EBUSY;
	else if (!attr.mr)
		want = 0; /* type 1 unbind */
	else if (!r->published)
		want = -ENOENT;
	else if (r->pd != w->pd)
		want = -EPERM;
	else if (!(r->access & MRKEY_ACCESS_MW_BIND) ||
		 ((attr.access &
		   (MRKEY_ACCESS_REMOTE_WRITE | MRKEY_ACCESS_REMOTE_ATOMIC)) &&
		  !(r->access & MRKEY_ACCESS_LOCAL_WRITE)))
		want = -EACCES;
	else if (attr.addr < r->iova || attr.length > r->length ||
		 attr.addr - r->iova > r->length - attr.length)
		want = -ERANGE;
	else
		want = 0;
	if (want == 0 && attr.mr) {
		if (w->type2)
			newkey = (w->key & ~0xffu) | attr.key_byte;
		else if (st->keygen == MRKEY_KEYGEN_SEQUENTIAL)
			newkey = seq_redraw(st, key_slot(st, w->key), w->key,
					    &gen);
	}

	err = mrkey_mw_bind(mwp, ap, keyp);
	CHECK(err == want,
	      "mrkey_mw_bind(window %d type %d %s, case %u/%u, region %d "
	      "%s, addr 0x%llx length 0x%llx access 0x%x comp_mask 0x%llx): "
	      "%d, model %d",
	      wi, w->type2 ? 2 : 1, w->bound ? "bound" : "unbound", how % 16,
	      sel % 16, ri,
	      foreign      ? "foreign" :
	      !r           ? "NULL" :
	      r->dma       ? "DMA" :
	      r->published ? "published" :
			     "unpublished",
	      (unsigned long long)attr.addr, (unsigned long long)attr.length,
	      attr.access, (unsigned long long)attr.comp_mask, err, want);
	switch (err) {
	case 0:
		stats[!attr.mr ? ST_MW_UNBIND :
		      w->bound ? ST_MW_REBIND :
				 ST_MW_BIND_FIRST]++;
		break;
	case -EBUSY:
		stats[ST_MW_BIND_EBUSY]++;
		break;
	case -ENOENT:
		stats[ST_MW_BIND_ENOENT]++;
		break;
	case -EPERM:
		stats[ST_MW_BIND_EPERM]++;
		break;
	case -EACCES:
		stats[ST_MW_BIND_EACCES]++;
		break;
	case -ERANGE:
		stats[ST_MW_BIND_ERANGE]++;
		break;
	default:
		stats[ST_MW_BIND_EINVAL]++;
		break;
	}
	if (err) {
		/* nothing changed: the key, the binding, the references */
		CHECK(key == 0, "a refused mrkey_mw_bind wrote key 0x%08x",
		      key);
		check_refs(st);
		probe_window(st, wi, w->key);
		if (w->type2)
			probe_window(st, wi, (w->key & ~0xffu) | attr.key_byte);
		return;
	}
	if (!attr.mr) {
		/* unbound; the key returned is the one that resolves no more */
		CHECK(key == w->key,
		      "an unbind returned key 0x%08x, model 0x%08x", key,
		      w->key);
		if (w->bound)
			remember_stale(st, w->key);
		w->bound = false;
		check_refs(st);
		probe_window(st, wi, key);
		return;
	}
	if (w->type2 || st->keygen == MRKEY_KEYGEN_SEQUENTIAL)
		CHECK(key == newkey,
		      "mrkey_mw_bind gave key 0x%08x, model 0x%08x (old "
		      "0x%08x)",
		      key, newkey, old);
	else
		CHECK(key != 0 && key != old &&
			      key_slot(st, key) == key_slot(st, old),
		      "type 1 bind gave key 0x%08x, old 0x%08x (slot %u)", key,
		      old, key_slot(st, old));
	if (!w->type2)
		st->seq_gen = gen;
	if (w->bound && key != old)
		remember_stale(st, old);
	w->bound = true;
	w->key = key;
	w->region = ri;
	w->roff = attr.addr - r->iova;
	w->addr = attr.addr;
	w->length = attr.length;
	w->access = attr.access;
	w->qpn = w->type2 ? attr.qpn : 0;
	check_refs(st);
	probe_window(st, wi, key);
	if (old != key)
		probe_window(st, wi, old);
}

static void op_mw_bind(struct state *st)
{
	int wi = pick_window(st, false);

	if (wi >= 0)
		mw_bind_one(st, wi);
}

static void op_mw_dealloc(struct state *st)
{
	int wi = pick_window(st, false), err;
	struct m_window *w;
	uint32_t key;
	bool bound;

	if ((in_u8(&st->in) & 15) == 15 || wi < 0) {
		err = mrkey_mw_dealloc(NULL);
		CHECK(err == -EINVAL, "mrkey_mw_dealloc(NULL): %d, model %d",
		      err, -EINVAL);
		return;
	}
	w = &st->w[wi];
	key = w->key;
	bound = w->bound;
	err = mrkey_mw_dealloc(w->mw);
	CHECK(err == 0, "mrkey_mw_dealloc: %d, model 0", err);
	stats[bound ? ST_MW_DEALLOC_BOUND : ST_MW_DEALLOC]++;
	st->last_key[key_slot(st, key)] = key;
	if (bound)
		remember_stale(st, key);
	w->bound = false;
	probe_window(st, wi, key); /* nothing, while the model still has it */
	memset(w, 0, sizeof(*w));
	check_refs(st);
}

/* A validation through a bound window, kept as a hold or put. */
static void op_validate_mw(struct state *st)
{
	struct mrkey_isge isge;
	struct vargs a = { 0 };
	uint64_t off;
	int i;

	if (!pick_wargs(st, &a, false))
		return;
	i = do_validate(st, &a, &isge, &off, false);
	if (i == ZERO_LEN)
		mrkey_isge_put(&isge);
	if (i >= 0)
		keep_or_put(st, i, &isge, off, a.len);
}

/*
 * End a bound window's binding with mrkey_key_invalidate() (a type 1
 * window refuses it: -EINVAL, then it is unbound), now and then from
 * another PD first (-EPERM, or -EINVAL for type 1).
 */
static void op_mw_end(struct state *st)
{
	int wi = pick_window(st, true), want, err, pd;
	uint8_t sel = in_u8(&st->in);
	struct m_window *w;

	if (wi < 0)
		return;
	w = &st->w[wi];
	pd = w->pd;
	if (sel & 1)
		pd = (pd + 1 + ((sel >> 1) & 1)) % MAX_PDS;
	want = !w->type2 ? -EINVAL : pd != w->pd ? -EPERM : 0;
	err = mrkey_key_invalidate(st->table, st->pds[pd], w->key);
	CHECK(err == want,
	      "mrkey_key_invalidate(window %d type %d, key 0x%08x, pd %d of "
	      "%d): %d, model %d",
	      wi, w->type2 ? 2 : 1, w->key, pd, w->pd, err, want);
	stats[err ? ST_MW_INV_EINVAL : ST_MW_INV_OK]++;
	if (!err) {
		w->bound = false;
		remember_stale(st, w->key);
	}
	check_refs(st);
	probe_window(st, wi, w->key);
	if (err && !w->type2 && (sel & 4)) {
		struct mrkey_mw_bind_attr a;
		uint32_t key = 0;

		memset(&a, 0, sizeof(a));
		err = mrkey_mw_bind(w->mw, &a, &key);
		CHECK(err == 0 && key == w->key,
		      "type 1 unbind: %d key 0x%08x, model 0 0x%08x", err, key,
		      w->key);
		stats[ST_MW_UNBIND]++;
		w->bound = false;
		remember_stale(st, w->key);
		check_refs(st);
		probe_window(st, wi, key);
	}
}

/*
 * The window cycle in one operation, so that short inputs reach it:
 * alloc when asked or needed, bind, validate (kept as a hold), rebind or
 * end, a dereg of the region (-EBUSY while bound), dealloc.
 */
static void op_mw_cycle(struct state *st)
{
	uint8_t steps = in_u8(&st->in);
	int wi, i, n = 0;

	for (i = 0; i < MAX_REGIONS; i++)
		n += st->r[i].live && st->r[i].published && !st->r[i].dma &&
		     (st->r[i].access & MRKEY_ACCESS_MW_BIND);
	if (!n)
		op_reg(st); /* something to bind to */
	if (free_window_entry(st) >= 0 &&
	    (pick_window(st, false) < 0 || (steps & 1)))
		op_mw_alloc(st);
	op_mw_bind(st);
	if (!(steps & 2))
		op_validate_mw(st);
	if (!(steps & 4))
		op_mw_bind(st);
	if (steps & 8) {
		wi = pick_window(st, true);
		if (wi >= 0) {
			i = st->w[wi].region;
			if (st->r[i].live && !st->r[i].async)
				dereg_one(st, i);
		}
	}
	if (!(steps & 0x10))
		op_mw_end(st);
	if (!(steps & 0x20))
		op_validate_mw(st);
	if (steps & 0x40)
		op_mw_dealloc(st);
	if (!(steps & 0x80))
		op_put_hold(st);
}

/* ---- one input -------------------------------------------------------------- */

/*
 * Tables are kept from one input to the next, one per configuration, and
 * destroyed only at exit. mrkey_table_destroy() waits for the RCU
 * reclamation queued so far, and liburcu's call_rcu worker sleeps 10 ms
 * between batches, so a table per input would cap the fuzzer near 50
 * inputs a second. The model's per-table memory (each slot's last key, the
 * sequential scan position and generation) is kept with the table.
 *
 * The price: an input replayed alone starts from a fresh table, whose
 * random keys differ from the ones the fuzzing run saw. The model checks
 * properties of keys rather than their values (except in sequential mode,
 * which restarts in step with its model), so a finding still replays
 * unless it hinges on one particular key value.
 */
struct pooled {
	struct mrkey_table *table;
	uint32_t last_key[MAX_SLOTS];
	uint32_t seq_next, seq_gen;
};

static struct pooled pool[MAX_BITS][2][2][2][2];

static void destroy_pool(void)
{
	struct pooled *p = &pool[0][0][0][0][0];
	size_t i, n = sizeof(pool) / sizeof(pool[0][0][0][0][0]);
	int err;

	for (i = 0; i < n; i++) {
		if (!p[i].table)
			continue;
		err = mrkey_table_destroy(p[i].table);
		CHECK(err == 0,
		      "mrkey_table_destroy of an empty table: %d, "
		      "model 0",
		      err);
		p[i].table = NULL;
	}
	if (foreign_table) {
		err = mrkey_mr_dereg(foreign_mr, 0);
		CHECK(err == 0, "mrkey_mr_dereg of the foreign region: %d",
		      err);
		err = mrkey_pd_free(foreign_pd);
		CHECK(err == 0, "mrkey_pd_free of the foreign PD: %d", err);
		err = mrkey_table_destroy(foreign_table);
		CHECK(err == 0, "mrkey_table_destroy of the foreign table: %d",
		      err);
		foreign_table = NULL;
	}
}

static struct pooled *pool_entry(const struct state *st)
{
	return &pool[st->bits - 1][st->layout == MRKEY_LAYOUT_INDEX8]
		    [st->keygen == MRKEY_KEYGEN_SEQUENTIAL]
		    [st->refcount == MRKEY_REFCOUNT_PERCPU][st->noref];
}

static void setup(struct state *st)
{
	struct mrkey_table_attr attr;
	uint8_t cfg = in_u8(&st->in), cfg2 = in_u8(&st->in);
	struct pooled *p;
	int i, err;

	memset(&attr, 0, sizeof(attr));
	st->bits = 1 + (cfg & 7) % MAX_BITS;
	st->nslots = 1u << st->bits;
	st->layout = (cfg >> 3) & 1 ? MRKEY_LAYOUT_INDEX8 : MRKEY_LAYOUT_QIB;
	st->keygen = (cfg >> 4) & 1 ? MRKEY_KEYGEN_SEQUENTIAL :
				      MRKEY_KEYGEN_RANDOM;
	/*
	 * Split counts make every deregistration of a published region wait
	 * for a grace period (milliseconds): one input in eight.
	 */
	st->refcount = (cfg2 & 7) == 7 ? MRKEY_REFCOUNT_PERCPU :
					 MRKEY_REFCOUNT_ATOMIC;
	/* the same for reference-free tables */
	st->noref = (cfg2 & 0x70) == 0x70;
	attr.table_bits = st->bits;
	attr.layout = st->layout;
	attr.keygen = st->keygen;
	attr.refcount = st->refcount;
	attr.flags = st->noref ? MRKEY_TABLE_NOREF : 0;
	attr.seed = 0x6d726b6579000000ull | cfg << 8 | cfg2;
	attr.report = on_report;

	p = pool_entry(st);
	if (!p->table) {
		static bool registered;

		if (!registered) {
			atexit(destroy_pool);
			registered = true;
		}
		err = mrkey_table_create(&attr, &p->table);
		CHECK(err == 0, "mrkey_table_create: %d", err);
		if (!foreign_table) {
			err = mrkey_table_create(&attr, &foreign_table);
			CHECK(err == 0, "mrkey_table_create: %d", err);
			err = mrkey_pd_alloc(foreign_table, 0, &foreign_pd);
			CHECK(err == 0, "mrkey_pd_alloc: %d", err);
			{
				struct mrkey_seg seg = { arena, 256 };
				struct mrkey_mr_attr fa = {
					.pd = foreign_pd,
					.length = 256,
					.access = MRKEY_ACCESS_MW_BIND |
						  MRKEY_ACCESS_LOCAL_WRITE,
					.segs = &seg,
					.nsegs = 1,
				};

				err = mrkey_mr_reg(foreign_table, &fa,
						   &foreign_mr);
				CHECK(err == 0, "mrkey_mr_reg (foreign): %d",
				      err);
			}
		}
		memset(p->last_key, 0, sizeof(p->last_key));
		p->seq_next = 0;
		p->seq_gen = 0;
	}
	st->table = p->table;
	memcpy(st->last_key, p->last_key, sizeof(st->last_key));
	st->seq_next = p->seq_next;
	st->seq_gen = p->seq_gen;
	CHECK(mrkey_table_size(st->table) == st->nslots,
	      "mrkey_table_size %u, model %u", mrkey_table_size(st->table),
	      st->nslots);
	for (i = 0; i < MAX_PDS; i++) {
		st->pd_flags[i] = i == 0 || ((cfg2 & 8) && i == 2) ?
					  MRKEY_PD_PRIVILEGED :
					  0;
		err = mrkey_pd_alloc(st->table, st->pd_flags[i], &st->pds[i]);
		CHECK(err == 0, "mrkey_pd_alloc: %d", err);
		CHECK(mrkey_pd_flags(st->pds[i]) == st->pd_flags[i],
		      "mrkey_pd_flags %u, model %u", mrkey_pd_flags(st->pds[i]),
		      st->pd_flags[i]);
	}
}

static void teardown(struct state *st)
{
	struct pooled *p = pool_entry(st);
	int i, err;

	for (i = 0; i < MAX_HOLDS; i++)
		if (st->holds[i].used)
			put_hold(st, i);
	check_refs(st);
	for (i = 0; i < MAX_WINDOWS; i++) {
		struct m_window *w = &st->w[i];

		if (!w->live)
			continue;
		err = mrkey_mw_dealloc(w->mw);
		CHECK(err == 0, "final mrkey_mw_dealloc: %d, model 0", err);
		st->last_key[key_slot(st, w->key)] = w->key;
		memset(w, 0, sizeof(*w));
	}
	check_refs(st);
	for (i = 0; i < MAX_REGIONS; i++) {
		struct m_region *r = &st->r[i];

		if (!r->live)
			continue;
		CHECK(!r->async, "async region %d outlived its references", i);
		err = mrkey_mr_dereg(r->mr, 0);
		CHECK(err == 0, "final mrkey_mr_dereg: %d, model 0", err);
		model_unpublish(st, r);
		model_forget(r);
	}
	for (i = 0; i < MAX_PDS; i++) {
		err = mrkey_pd_free(st->pds[i]);
		CHECK(err == 0, "final mrkey_pd_free: %d, model 0", err);
	}
	memcpy(p->last_key, st->last_key, sizeof(p->last_key));
	p->seq_next = st->seq_next;
	p->seq_gen = st->seq_gen;
}

/* ---- requested 64-bit keys -------------------------------------------- */

/*
 * FUZZ_REQKEY: a requested-key table (MRKEY_INDEX_REQUESTED) and its own
 * small model. Keys come from a pool chosen to collide: 0, UINT64_MAX,
 * keys that share their low 32 bits (the record's tag), one the input
 * picks. The model is a list of registrations; for each key at most one
 * is published. reg_key: -EINVAL in a slot-table call, -EEXIST while the
 * key is published, else 0 (a key whose region still drains is free).
 * key_ok / key_check / key_lookup: -ENOENT unless a published region has
 * exactly this key, then PD, range (against iova, 64-bit length whole),
 * access; a held isge keeps reading its own region's bytes even after
 * the key went to another region. dereg timeout 0: 0 without holds, else
 * -EBUSY; async: the callback runs at the last put. Reference counts are
 * checked after every operation.
 */
#define RQ_REGIONS 24
#define RQ_HOLDS 8

struct rq_region {
	bool live, published, async;
	unsigned int done_calls, holds;
	struct mrkey_mr *mr;
	uint64_t key, iova, length;
	uint8_t *host;
	unsigned int access;
	int pd;
};

struct rq_hold {
	bool used;
	int region;
	uint64_t off;
	struct mrkey_isge isge;
};

struct rq_state {
	struct input in;
	struct mrkey_table *table;
	struct mrkey_pd *pds[2];
	bool noref, percpu;
	uint64_t keys[8];
	struct rq_region r[RQ_REGIONS];
	struct rq_hold h[RQ_HOLDS];
};

static void rq_done(struct mrkey_mr *mr, void *arg)
{
	struct rq_region *r = arg;

	CHECK(r->live && r->async && mr == r->mr,
	      "requested: async callback on a region not deregistered");
	r->done_calls++;
}

static int rq_published(const struct rq_state *st, uint64_t key)
{
	int i;

	for (i = 0; i < RQ_REGIONS; i++)
		if (st->r[i].live && st->r[i].published && st->r[i].key == key)
			return i;
	return -1;
}

static void rq_check_refs(const struct rq_state *st)
{
	int i;

	for (i = 0; i < RQ_REGIONS; i++) {
		const struct rq_region *r = &st->r[i];
		uint32_t want, got;

		if (!r->live)
			continue;
		want = r->published + !r->async + r->holds;
		got = mrkey_mr_refcount(r->mr);
		CHECK(got == want, "requested: region %d refcount %u, model %u",
		      i, got, want);
		CHECK(mrkey_mr_key(r->mr) == r->key,
		      "requested: mrkey_mr_key %#llx, model %#llx",
		      (unsigned long long)mrkey_mr_key(r->mr),
		      (unsigned long long)r->key);
		CHECK(mrkey_mr_context(r->mr) == r,
		      "requested: context of region %d", i);
	}
}

/* What a check of (@key, @va, @len, @access) from PD @pd must return. */
static int rq_model_check(const struct rq_state *st, int pd, uint64_t key,
			  uint64_t va, uint64_t len, unsigned int access,
			  int *ri)
{
	const struct rq_region *r;
	int i;

	*ri = -1;
	if (access & ~MRKEY_ACCESS_ALL)
		return -EINVAL;
	if (!len)
		return 0;
	i = rq_published(st, key);
	if (i < 0)
		return -ENOENT;
	r = &st->r[i];
	if (r->pd != pd)
		return -EPERM;
	if (va < r->iova || len > r->length || va - r->iova > r->length - len)
		return -ERANGE;
	if ((r->access & access) != access)
		return -EACCES;
	*ri = i;
	return 0;
}

static void rq_settle(struct rq_state *st, int i)
{
	struct rq_region *r = &st->r[i];

	if (r->async && !r->holds) {
		CHECK(r->done_calls == 1, "requested: %u callbacks, model 1",
		      r->done_calls);
		memset(r, 0, sizeof(*r));
	} else {
		CHECK(r->done_calls == 0, "requested: early callback");
	}
}

static void rq_reg(struct rq_state *st)
{
	uint64_t key = st->keys[in_u8(&st->in) % 8];
	uint32_t off = in_u16(&st->in) % (ARENA_SIZE / 2);
	uint64_t len = 1 + in_u16(&st->in) % (ARENA_SIZE / 2);
	struct mrkey_seg seg = { .addr = arena + off, .length = len };
	struct mrkey_mr_attr a = {
		.pd = st->pds[in_u8(&st->in) & 1],
		.addr = 0x1000,
		.iova = pick_address(&st->in),
		.length = len,
		.access = in_u8(&st->in) & MRKEY_ACCESS_ALL,
		.segs = &seg,
		.nsegs = 1,
	};
	struct mrkey_mr *mr;
	int i, err, want;

	for (i = 0; i < RQ_REGIONS && st->r[i].live; i++)
		;
	if (i == RQ_REGIONS)
		return;
	a.context = &st->r[i];
	want = a.iova > UINT64_MAX - len  ? -EINVAL :
	       rq_published(st, key) >= 0 ? -EEXIST :
					    0;
	/* A requested-key table refuses the slot table's registration. */
	err = mrkey_mr_reg(st->table, &a, &mr);
	CHECK(err == -EINVAL, "requested: mrkey_mr_reg %d, model -EINVAL", err);
	err = mrkey_mr_reg_key(st->table, &a, key, &mr);
	CHECK(err == want, "requested: reg_key(%#llx) %d, model %d",
	      (unsigned long long)key, err, want);
	if (err)
		return;
	st->r[i] = (struct rq_region){
		.live = true,
		.published = true,
		.mr = mr,
		.key = key,
		.iova = a.iova,
		.length = len,
		.host = arena + off,
		.access = a.access,
		.pd = a.pd == st->pds[1],
	};
}

static void rq_dereg(struct rq_state *st, bool async)
{
	int i = in_u8(&st->in) % RQ_REGIONS, err;
	struct rq_region *r = &st->r[i];

	if (!r->live || r->async)
		return;
	if (async) {
		/*
		 * In split-count or reference-free tables the async
		 * deregistration of a published region finishes after a grace
		 * period on liburcu's thread (see op_dereg_async()): only
		 * regions an -EBUSY dereg unpublished go async there.
		 */
		if ((st->percpu || st->noref) && r->published)
			return;
		/* The callback may run inside the call. */
		r->published = false;
		r->async = true;
		err = mrkey_mr_dereg_async(r->mr, rq_done, r);
		CHECK(err == 0, "requested: dereg_async %d", err);
		rq_settle(st, i);
		return;
	}
	err = mrkey_mr_dereg(r->mr, 0);
	CHECK(err == (r->holds ? -EBUSY : 0),
	      "requested: dereg %d with %u holds", err, r->holds);
	r->published = false;
	if (!err)
		memset(r, 0, sizeof(*r));
}

static void rq_validate(struct rq_state *st)
{
	uint8_t how = in_u8(&st->in);
	int pd = how & 1, want, ri, err, h;
	uint64_t key = st->keys[in_u8(&st->in) % 8];
	uint64_t va, len;
	unsigned int access = in_u8(&st->in);
	struct mrkey_isge isge;
	struct mrkey_mr *mr;

	if (access & 0x80)
		access &= MRKEY_ACCESS_ALL;
	h = rq_published(st, key);
	if (h >= 0 && (how & 2)) { /* inside, mostly */
		va = st->r[h].iova + in_u16(&st->in) % st->r[h].length;
		len = 1 +
		      in_u16(&st->in) % (st->r[h].iova + st->r[h].length - va);
	} else {
		va = pick_address(&st->in);
		len = how & 4 ? in_u64(&st->in) : in_u16(&st->in);
	}
	want = rq_model_check(st, pd, key, va, len, access, &ri);
	memset(&isge, 0xa5, sizeof(isge));
	if (st->noref && (how & 8)) {
		mrkey_read_lock();
		err = mrkey_key_check(st->table, st->pds[pd], key, va, len,
				      access, &isge);
		CHECK(err == want, "requested: key_check %d, model %d", err,
		      want);
		if (!err && ri >= 0)
			CHECK(isge.vaddr ==
				      st->r[ri].host + (va - st->r[ri].iova),
			      "requested: key_check address");
		mrkey_read_unlock();
		return;
	}
	if (how & 16) {
		err = mrkey_key_lookup(st->table, key, &mr);
		want = rq_published(st, key) >= 0 ? 0 : -ENOENT;
		CHECK(err == want, "requested: key_lookup %d, model %d", err,
		      want);
		if (!err) {
			CHECK(mr == st->r[rq_published(st, key)].mr,
			      "requested: key_lookup gave another region");
			mrkey_mr_put(mr);
		}
		return;
	}
	err = mrkey_key_ok(st->table, st->pds[pd], key, va, len, access, &isge);
	CHECK(err == want,
	      "requested: key_ok(%#llx, %#llx, %#llx) %d, model %d",
	      (unsigned long long)key, (unsigned long long)va,
	      (unsigned long long)len, err, want);
	if (err)
		return;
	if (ri < 0) {
		CHECK(isge.mr == NULL && isge.sge_length == 0,
		      "requested: zero-length isge");
		return;
	}
	CHECK(isge.mr == st->r[ri].mr &&
		      isge.vaddr == st->r[ri].host + (va - st->r[ri].iova) &&
		      isge.sge_length == (len > UINT32_MAX ? UINT32_MAX : len),
	      "requested: isge of region %d", ri);
	for (h = 0; h < RQ_HOLDS && st->h[h].used; h++)
		;
	if (h == RQ_HOLDS || (how & 32)) {
		mrkey_isge_put(&isge);
		return;
	}
	st->h[h] = (struct rq_hold){ .used = true,
				     .region = ri,
				     .off = va - st->r[ri].iova,
				     .isge = isge };
	st->r[ri].holds++;
}

/* Put a hold, reading its first byte first: still its own region's. */
static void rq_put(struct rq_state *st, int h)
{
	struct rq_hold *x = &st->h[h];
	struct rq_region *r = &st->r[x->region];

	if (!x->used)
		return;
	CHECK(*(uint8_t *)x->isge.vaddr == r->host[x->off],
	      "requested: a held isge reads another region's byte");
	mrkey_isge_put(&x->isge);
	x->used = false;
	r->holds--;
	rq_settle(st, x->region);
}

static void fuzz_run_requested(const uint8_t *data, size_t size)
{
	static struct mrkey_table *tables[2][2];
	static struct rq_state st;
	struct mrkey_table_attr attr;
	uint8_t cfg;
	int i, err, ops;

	memset(&st, 0, sizeof(st));
	st.in.p = data;
	st.in.n = size;
	cfg = in_u8(&st.in);
	st.noref = cfg & 1;
	memset(&attr, 0, sizeof(attr));
	attr.index = MRKEY_INDEX_REQUESTED;
	attr.flags = st.noref ? MRKEY_TABLE_NOREF : 0;
	/* Split counts: a grace period per deregistration, one in eight. */
	attr.refcount = (cfg & 0xe) == 0xe ? MRKEY_REFCOUNT_PERCPU :
					     MRKEY_REFCOUNT_ATOMIC;
	attr.report = on_report;
	attr.seed = 0x7265716b6579ull;
	if (!tables[st.noref][attr.refcount]) {
		err = mrkey_table_create(&attr,
					 &tables[st.noref][attr.refcount]);
		CHECK(err == 0, "requested: table_create %d", err);
	}
	st.table = tables[st.noref][attr.refcount];
	st.percpu = attr.refcount == MRKEY_REFCOUNT_PERCPU;
	for (i = 0; i < 2; i++) {
		err = mrkey_pd_alloc(st.table, 0, &st.pds[i]);
		CHECK(err == 0, "requested: pd_alloc %d", err);
	}
	st.keys[0] = 0;
	st.keys[1] = UINT64_MAX;
	st.keys[2] = 1;
	st.keys[3] = 1ull << 32 | 1; /* same tag as keys[2] */
	st.keys[4] = UINT32_MAX;
	st.keys[5] = (uint64_t)UINT32_MAX + 1;
	st.keys[6] = in_u64(&st.in);
	st.keys[7] = st.keys[6] ^ (1ull << 63);
	for (ops = 0; ops < MAX_OPS && st.in.n; ops++) {
		uint8_t op = in_u8(&st.in);

		switch (op % 8) {
		case 0:
		case 1:
			rq_reg(&st);
			break;
		case 2:
			rq_dereg(&st, false);
			break;
		case 3:
			rq_dereg(&st, true);
			break;
		case 4:
			rq_put(&st, (op >> 3) % RQ_HOLDS);
			break;
		default:
			rq_validate(&st);
			break;
		}
		rq_check_refs(&st);
	}
	for (i = 0; i < RQ_HOLDS; i++)
		rq_put(&st, i);
	for (i = 0; i < RQ_REGIONS; i++) {
		struct rq_region *r = &st.r[i];

		if (!r->live)
			continue;
		CHECK(!r->async, "requested: async region outlived its holds");
		err = mrkey_mr_dereg(r->mr, 0);
		CHECK(err == 0, "requested: final dereg %d", err);
	}
	for (i = 0; i < 2; i++) {
		err = mrkey_pd_free(st.pds[i]);
		CHECK(err == 0, "requested: final pd_free %d", err);
	}
}

void fuzz_run(const uint8_t *data, size_t size, enum fuzz_mode mode)
{
	static struct state st;
	static bool stats_registered;
	unsigned int ops;

	if (!stats_registered) {
		size_t i;

		stats_registered = true;
		if (getenv("MRKEY_FUZZ_STATS"))
			atexit(print_stats);
		/* bytes that tell their places apart, for the reads */
		for (i = 0; i < ARENA_SIZE; i++)
			arena[i] = (uint8_t)(i * 151 + (i >> 8) * 29 + 7);
	}
	if (mode == FUZZ_REQKEY) {
		fuzz_run_requested(data, size);
		return;
	}
	memset(&st, 0, sizeof(st));
	st.in.p = data;
	st.in.n = size;
	st.mode = mode;
	setup(&st);

	for (ops = 0; ops < MAX_OPS && st.in.n; ops++) {
		uint8_t op = in_u8(&st.in);

		switch (op % 32) {
		case 0:
		case 1:
			op_reg(&st);
			break;
		case 2:
			op_reg_dma(&st);
			break;
		case 3:
			op_dereg(&st);
			break;
		case 4:
			op_dereg_async(&st);
			break;
		case 5:
			op_put_hold(&st);
			break;
		case 6:
			op_pd_free(&st);
			break;
		case 7:
			/* every target validates both key kinds a little */
			op_validate(&st, op & 0x10);
			break;
		case 8:
			op_merge(&st);
			break;
		case 9:
			op_check(&st);
			break;
		case 16:
			op_alloc(&st);
			break;
		case 17:
		case 18:
			op_fast_reg(&st);
			break;
		case 19:
		case 20:
			op_invalidate(&st, false);
			break;
		case 21:
			op_zero(&st);
			break;
		case 22:
			op_read_hold(&st);
			break;
		case 23:
			op_fr_cycle(&st);
			break;
		case 24:
			op_mw_alloc(&st);
			break;
		case 25:
		case 26:
			op_mw_bind(&st);
			break;
		case 27:
			op_mw_dealloc(&st);
			break;
		case 28:
		case 31:
			op_validate_mw(&st);
			break;
		case 29:
			op_mw_end(&st);
			break;
		case 30:
			op_mw_cycle(&st);
			break;
		case 10:
			if (mode == FUZZ_LKEY) {
				op_merge(&st);
				break;
			}
			/* fall through */
		default:
			/* the target's own call, most of the time */
			if (mode == FUZZ_SS)
				op_ss(&st);
			else
				op_validate(&st, mode == FUZZ_RKEY);
			break;
		}
		check_refs(&st);
	}
	teardown(&st);
}
