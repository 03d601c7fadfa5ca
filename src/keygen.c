// SPDX-License-Identifier: MIT
/*
 * Key generation. Called with the table's writer lock held.
 *
 * RANDOM: the slot is drawn uniformly from a dense array of free slot
 * indices (O(1) pick and release) one registration ahead, so that its
 * record can be prefetched (mrkey__reserve_refill()); every non-index bit
 * of the key is fresh random output, and a slot's new key is redrawn
 * until it differs from the key that slot held last (still in its
 * record's word), so the key just freed is never reissued. The random
 * output is the kernel's CSPRNG through arc4random_buf() (glibc 2.36
 * makes each call a getrandom() system call), taken MRKEY__RNG_BUF bytes
 * at a time into the table, so that registrations rarely pay the system
 * call. With a seed (tests) it is a xoshiro256** generator seeded from
 * it instead, reproducibly.
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
 * Bytes are read once and not wiped; a pick that was undone (nothing
 * published it) does not give them back.
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

/* 64 random bits, from the table's generator (writer lock held). */
uint64_t mrkey__rand64(struct mrkey_table *t)
{
	return mrkey__rand(t);
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
	t->nfree = t->nslots;
	t->reserve = MRKEY__NO_SLOT;
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

/*
 * Take a uniformly drawn free slot out of the free list and make it the
 * next registration's: its record is prefetched now, so that the
 * registration finds the line in cache instead of missing on a random
 * slot of a large array. Nothing about the next key is decided here.
 */
static void mrkey__reserve_refill(struct mrkey_table *t)
{
	uint32_t pos;

	if (t->reserve != MRKEY__NO_SLOT || !t->nfree)
		return;
	pos = mrkey__rand_below(t, t->nfree);
	t->reserve = t->free_idx[pos];
	t->free_idx[pos] = t->free_idx[--t->nfree];
	__builtin_prefetch(&t->slots[t->reserve], 1);
}

/* A fast-registration key must stay nonzero whatever its low byte. */
static bool mrkey__fr_ok(uint32_t key)
{
	return (key & ~0xffu) != 0;
}

static int mrkey__key_pick_random(struct mrkey_table *t,
				  struct mrkey__key_pick *p, bool fr)
{
	uint32_t mask = mrkey__nonindex_mask(t);
	uint32_t slot, key, last;

	mrkey__reserve_refill(t);
	if (fr && t->layout == MRKEY_LAYOUT_INDEX8 && t->reserve == 0) {
		/* index8 slot 0's keys are its key byte alone: trade it in. */
		uint32_t pos;

		if (!t->nfree)
			return -ENOMEM;
		pos = mrkey__rand_below(t, t->nfree);
		t->reserve = t->free_idx[pos];
		t->free_idx[pos] = 0;
	}
	slot = t->reserve;
	last = MRKEY__KC_KEY(
		atomic_load_explicit(&t->slots[slot].kc, memory_order_relaxed));
	do {
		key = mrkey__index_bits(t, slot) | (mrkey__rand32(t) & mask);
	} while (key == 0 || key == last || (fr && !mrkey__fr_ok(key)));
	p->slot = slot;
	p->key = key;
	return 0;
}

/* qib's key for slot @r from the generation counter, bumping it past 0. */
static uint32_t mrkey__seq_key(struct mrkey_table *t, uint32_t r)
{
	uint32_t key;

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
	return key;
}

static int mrkey__key_pick_seq(struct mrkey_table *t, struct mrkey__key_pick *p,
			       bool fr)
{
	uint32_t r = t->next, n;

	/*
	 * nused < nslots, so the scan finds a free slot; a fast-registration
	 * region skips index8's slot 0, and may then find none.
	 */
	for (n = 0; n < t->nslots; n++) {
		if (!t->slots[r].x &&
		    !(fr && t->layout == MRKEY_LAYOUT_INDEX8 && r == 0))
			break;
		r = (r + 1) & (t->nslots - 1);
	}
	if (n == t->nslots)
		return -ENOMEM;
	t->next = (r + 1) & (t->nslots - 1);
	p->slot = r;
	p->key = mrkey__seq_key(t, r);
	return 0;
}

int mrkey__key_pick(struct mrkey_table *t, struct mrkey__key_pick *p, bool fr)
{
	if (t->nused == t->nslots)
		return -ENOMEM;
	/* Only a backend's key_publish can fail a pick once made. */
	if (t->ops)
		memcpy(p->rng, t->rng, sizeof(p->rng));
	p->gen = t->gen;
	p->next = t->next;
	if (t->keygen == MRKEY_KEYGEN_RANDOM)
		return mrkey__key_pick_random(t, p, fr);
	return mrkey__key_pick_seq(t, p, fr);
}

/*
 * A new key for a slot that keeps its region (re-registration): drawn as
 * a registration's would be, never the old one.
 */
uint32_t mrkey__key_redraw(struct mrkey_table *t, uint32_t slot, uint32_t old)
{
	uint32_t mask = mrkey__nonindex_mask(t), key;

	do {
		if (t->keygen == MRKEY_KEYGEN_RANDOM)
			key = mrkey__index_bits(t, slot) |
			      (mrkey__rand32(t) & mask);
		else
			key = mrkey__seq_key(t, slot);
	} while (key == 0 || key == old);
	return key;
}

void mrkey__key_unpick(struct mrkey_table *t, const struct mrkey__key_pick *p)
{
	/*
	 * A seeded generator rewinds, so the sequence stays reproducible; the
	 * kernel's bytes of a refused pick are spent, never handed out again
	 * (the slot they chose stays the next registration's).
	 */
	if (!t->rng_os)
		memcpy(t->rng, p->rng, sizeof(t->rng));
	t->gen = p->gen;
	t->next = p->next;
}

void mrkey__key_commit(struct mrkey_table *t, const struct mrkey__key_pick *p)
{
	t->nused++;
	if (t->keygen != MRKEY_KEYGEN_RANDOM)
		return;
	t->reserve = MRKEY__NO_SLOT;
	mrkey__reserve_refill(t);
}

void mrkey__key_release(struct mrkey_table *t, uint32_t slot)
{
	t->nused--;
	if (t->keygen != MRKEY_KEYGEN_RANDOM)
		return;
	t->free_idx[t->nfree++] = slot;
	mrkey__reserve_refill(t);
}
