// SPDX-License-Identifier: MIT
/*
 * Key generation. Called with the table's writer lock held.
 *
 * RANDOM: the slot is drawn uniformly from a dense array of free slot
 * indices (O(1) pick and release), every non-index bit of the key is
 * fresh random output, and a slot's new key is redrawn until it differs
 * from the key that slot held last, so the key just freed is never
 * reissued. The random output is the kernel's CSPRNG through
 * arc4random_buf() (glibc 2.36 makes each call a getrandom() system call),
 * taken MRKEY__RNG_BUF bytes at a time into the table: a registration
 * uses 12 of them (4 for the slot, 8 for the key), so about one in 21
 * pays the system call. With a seed (tests) it is a
 * xoshiro256** generator seeded from it instead, reproducibly.
 *
 * SEQUENTIAL: the qib driver's scheme: scan from @next for a free slot,
 * bump one generation counter per registration, and skip key 0.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "internal.h"

static uint64_t mrkey__splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline uint64_t mrkey__rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/*
 * The next @n (at most 8) bytes of the table's arc4random_buf() output.
 * Bytes are read once and not wiped: mrkey__key_unpick() restores rng[0],
 * and a pick that was undone (nothing published it) may hand the same
 * bytes out again.
 */
static const uint8_t *mrkey__rand_os(struct mrkey_table *t, size_t n)
{
	const uint8_t *p;

	if (t->rng[0] > sizeof(t->rng_buf) - n) {
#ifdef MRKEY_HAVE_ARC4RANDOM
		arc4random_buf(t->rng_buf, sizeof(t->rng_buf));
#else
		size_t got = 0;

		/* Before glibc 2.36: what arc4random_buf() does, by hand. */
		while (got < sizeof(t->rng_buf)) {
			ssize_t r = getrandom(t->rng_buf + got,
					      sizeof(t->rng_buf) - got, 0);

			if (r > 0)
				got += (size_t)r;
			else if (r < 0 && errno != EINTR)
				abort(); /* as arc4random_buf() does */
		}
#endif
		t->rng[0] = 0;
	}
	p = t->rng_buf + t->rng[0];
	t->rng[0] += n;
	return p;
}

/* xoshiro256** (Blackman and Vigna), for seeded tables. */
static uint64_t mrkey__rand(struct mrkey_table *t)
{
	uint64_t *s = t->rng;
	uint64_t out, x;

	if (t->rng_os) {
		memcpy(&out, mrkey__rand_os(t, sizeof(out)), sizeof(out));
		return out;
	}
	out = mrkey__rotl(s[1] * 5, 7) * 9;
	x = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= x;
	s[3] = mrkey__rotl(s[3], 45);
	return out;
}

/* 32 random bits; a seeded table's sequence is xoshiro's, as before. */
static uint32_t mrkey__rand32(struct mrkey_table *t)
{
	uint32_t out;

	if (!t->rng_os)
		return (uint32_t)mrkey__rand(t);
	memcpy(&out, mrkey__rand_os(t, sizeof(out)), sizeof(out));
	return out;
}

/* Uniform in [0, n), n >= 1 (Lemire's multiply-and-reject). */
static uint32_t mrkey__rand_below(struct mrkey_table *t, uint32_t n)
{
	uint64_t m = (uint64_t)mrkey__rand32(t) * n;
	uint32_t low = (uint32_t)m;

	if (low < n) {
		uint32_t floor = -n % n;

		while (low < floor) {
			m = (uint64_t)mrkey__rand32(t) * n;
			low = (uint32_t)m;
		}
	}
	return (uint32_t)(m >> 32);
}

int mrkey__keygen_init(struct mrkey_table *t, uint64_t seed)
{
	uint32_t i;

	t->next = 0;
	t->gen = 0;
	if (t->keygen != MRKEY_KEYGEN_RANDOM)
		return 0;

	t->rng_os = !seed;
	if (t->rng_os) {
		/* Empty: the first draw fills the buffer. */
		memset(t->rng, 0, sizeof(t->rng));
		t->rng[0] = sizeof(t->rng_buf);
	} else {
		for (i = 0; i < 4; i++)
			t->rng[i] = mrkey__splitmix64(&seed);
	}

	for (i = 0; i < t->nslots; i++)
		t->free_idx[i] = i;
	memset(t->last_key, 0, sizeof(*t->last_key) * t->nslots);
	return 0;
}

/* Bits of a key outside its slot index. */
static uint32_t mrkey__nonindex_mask(const struct mrkey_table *t)
{
	if (t->layout == MRKEY_LAYOUT_QIB)
		return (uint32_t)((1ull << (32 - t->table_bits)) - 1);
	return 0xffu;
}

static uint32_t mrkey__index_bits(const struct mrkey_table *t, uint32_t slot)
{
	return slot << t->idx_shift;
}

static void mrkey__key_pick_random(struct mrkey_table *t,
				   struct mrkey__key_pick *p)
{
	uint32_t nfree = t->nslots - t->nused;
	uint32_t pos = mrkey__rand_below(t, nfree);
	uint32_t slot = t->free_idx[pos];
	uint32_t mask = mrkey__nonindex_mask(t);
	uint32_t key;

	do {
		key = mrkey__index_bits(t, slot) |
		      ((uint32_t)mrkey__rand(t) & mask);
	} while (key == 0 || key == t->last_key[slot]);
	p->slot = slot;
	p->key = key;
	p->pos = pos;
}

static void mrkey__key_pick_seq(struct mrkey_table *t,
				struct mrkey__key_pick *p)
{
	uint32_t r = t->next, key;

	/* nused < nslots, so the scan finds a free slot. */
	while (atomic_load_explicit(&t->slots[r], memory_order_relaxed))
		r = (r + 1) & (t->nslots - 1);
	t->next = (r + 1) & (t->nslots - 1);
	t->gen++;
	if (t->layout == MRKEY_LAYOUT_QIB) {
		uint32_t genmask = (1u << (24 - t->table_bits)) - 1;

		key = mrkey__index_bits(t, r) | ((t->gen & genmask) << 8);
		if (key == 0) {
			key |= 1u << 8;
			t->gen++;
		}
	} else {
		key = mrkey__index_bits(t, r) | (t->gen & 0xffu);
		if (key == 0) {
			key |= 1u;
			t->gen++;
		}
	}
	p->slot = r;
	p->key = key;
	p->pos = 0;
}

int mrkey__key_pick(struct mrkey_table *t, struct mrkey__key_pick *p)
{
	if (t->nused == t->nslots)
		return -ENOMEM;
	memcpy(p->rng, t->rng, sizeof(p->rng));
	p->gen = t->gen;
	p->next = t->next;
	if (t->keygen == MRKEY_KEYGEN_RANDOM)
		mrkey__key_pick_random(t, p);
	else
		mrkey__key_pick_seq(t, p);
	return 0;
}

void mrkey__key_unpick(struct mrkey_table *t, const struct mrkey__key_pick *p)
{
	memcpy(t->rng, p->rng, sizeof(t->rng));
	t->gen = p->gen;
	t->next = p->next;
}

void mrkey__key_commit(struct mrkey_table *t, const struct mrkey__key_pick *p)
{
	if (t->keygen == MRKEY_KEYGEN_RANDOM) {
		uint32_t nfree = t->nslots - t->nused;

		/* Free slots are free_idx[0, nfree): swap-remove the pick. */
		t->free_idx[p->pos] = t->free_idx[nfree - 1];
	}
	t->nused++;
}

void mrkey__key_release(struct mrkey_table *t, uint32_t slot, uint32_t key)
{
	t->nused--;
	if (t->keygen != MRKEY_KEYGEN_RANDOM)
		return;
	t->last_key[slot] = key;
	t->free_idx[t->nslots - t->nused - 1] = slot;
}
