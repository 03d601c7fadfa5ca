/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the qib backend's Check suites: the peer side of the
 * wire, a responder that serves RDMA READs through the send ring, and
 * regions whose bytes are a known function of their id and offset.
 */
#ifndef QIB_TEST_H
#define QIB_TEST_H

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mrkey/mrkey.h>
#include <mrkey/qib.h>

#define QT_MAGIC 0x51494252u /* "QIBR" */

/* Header of a read response on the wire: what the peer asked for. */
struct qt_hdr {
	uint32_t magic;
	uint32_t len;
	uint32_t region; /* id that generated the region's bytes */
	uint32_t pad;
	uint64_t offset; /* offset of the first byte in the region */
};

static inline uint8_t qt_byte(uint32_t region, uint64_t off)
{
	uint64_t x = (off + 1) * 0x9e3779b97f4a7c15ull ^
		     (uint64_t)region * 0xc2b2ae3d27d4eb4full;

	return (uint8_t)(x >> 56);
}

static inline uint64_t qt_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void qt_sleep_ms(unsigned int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* The peer: reassembles messages from the wire and checks every byte. */
struct qt_peer {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned char *msg;
	size_t msg_len, msg_cap;
	uint64_t messages; /* complete messages received */
	uint64_t bytes;    /* payload bytes received and checked */
	uint64_t bad;      /* messages with a wrong byte or header */
	uint64_t descs;
};

static inline void qt_peer_init(struct qt_peer *p)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
}

static inline void qt_peer_fini(struct qt_peer *p)
{
	free(p->msg);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
}

static inline void qt_peer_check(struct qt_peer *p)
{
	struct qt_hdr h;
	uint64_t i;

	if (p->msg_len < sizeof(h)) {
		p->bad++;
		return;
	}
	memcpy(&h, p->msg, sizeof(h));
	/* the payload is dword-padded on the wire */
	if (h.magic != QT_MAGIC ||
	    p->msg_len != sizeof(h) + ((h.len + 3u) & ~3u)) {
		p->bad++;
		return;
	}
	for (i = 0; i < h.len; i++) {
		if (p->msg[sizeof(h) + i] != qt_byte(h.region, h.offset + i)) {
			p->bad++;
			return;
		}
	}
	p->bytes += h.len;
}

/* The wire: runs on the engine thread. */
static inline void qt_wire(void *ctx, const void *buf, size_t len,
			   uint64_t flags)
{
	struct qt_peer *p = ctx;

	pthread_mutex_lock(&p->lock);
	p->descs++;
	if (flags & MRKEY_QIB_DESC_FIRST)
		p->msg_len = 0;
	if (p->msg_len + len > p->msg_cap) {
		size_t cap = (p->msg_len + len) * 2;
		unsigned char *m = realloc(p->msg, cap);

		if (!m)
			abort();
		p->msg = m;
		p->msg_cap = cap;
	}
	memcpy(p->msg + p->msg_len, buf, len);
	p->msg_len += len;
	if (flags & MRKEY_QIB_DESC_LAST) {
		qt_peer_check(p);
		p->messages++;
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
}

/* Wait until the peer has @n messages; false after @ms milliseconds. */
static inline bool qt_peer_wait(struct qt_peer *p, uint64_t n, unsigned int ms)
{
	uint64_t until = qt_now_ns() + (uint64_t)ms * 1000000ull;
	bool ok;

	pthread_mutex_lock(&p->lock);
	while (p->messages < n && qt_now_ns() < until) {
		pthread_mutex_unlock(&p->lock);
		qt_sleep_ms(1);
		pthread_mutex_lock(&p->lock);
	}
	ok = p->messages >= n;
	pthread_mutex_unlock(&p->lock);
	return ok;
}

static inline void qt_peer_counts(struct qt_peer *p, uint64_t *messages,
				  uint64_t *bytes, uint64_t *bad)
{
	pthread_mutex_lock(&p->lock);
	if (messages)
		*messages = p->messages;
	if (bytes)
		*bytes = p->bytes;
	if (bad)
		*bad = p->bad;
	pthread_mutex_unlock(&p->lock);
}

/* A region whose segments are separate allocations, bytes qt_byte(id). */
struct qt_region {
	struct mrkey_mr *mr;
	uint32_t id;
	uint64_t iova;
	uint64_t length;
	size_t nsegs;
	struct mrkey_seg segs[8];
};

/*
 * Register @nsegs segments of the given lengths (at most 8). The memory is
 * freed by qt_region_free(), only after the region is deregistered.
 */
static inline int qt_region_reg(struct mrkey_table *t, struct mrkey_pd *pd,
				uint32_t id, const size_t *lens, size_t nsegs,
				struct qt_region *r)
{
	struct mrkey_mr_attr a = { 0 };
	uint64_t off = 0;
	size_t i;
	int err;

	memset(r, 0, sizeof(*r));
	r->id = id;
	r->nsegs = nsegs;
	for (i = 0; i < nsegs; i++) {
		unsigned char *b = aligned_alloc(64, (lens[i] + 63) & ~63ul);
		size_t j;

		if (!b)
			return -ENOMEM;
		for (j = 0; j < lens[i]; j++)
			b[j] = qt_byte(id, off + j);
		r->segs[i].addr = b;
		r->segs[i].length = lens[i];
		off += lens[i];
	}
	r->length = off;
	r->iova = 0x10000000ull * (id % 1024 + 1);
	a.pd = pd;
	a.addr = r->iova;
	a.iova = r->iova;
	a.length = off;
	a.access = MRKEY_ACCESS_LOCAL_WRITE | MRKEY_ACCESS_REMOTE_READ;
	a.segs = r->segs;
	a.nsegs = nsegs;
	err = mrkey_mr_reg(t, &a, &r->mr);
	if (err) {
		for (i = 0; i < nsegs; i++)
			free(r->segs[i].addr);
	}
	return err;
}

static inline void qt_region_free(struct qt_region *r)
{
	size_t i;

	for (i = 0; i < r->nsegs; i++)
		free(r->segs[i].addr);
	r->nsegs = 0;
}

/* Check the region's memory still holds its bytes (it was not freed). */
static inline bool qt_region_intact(const struct qt_region *r)
{
	uint64_t off = 0;
	size_t i, j;

	for (i = 0; i < r->nsegs; i++) {
		const unsigned char *b = r->segs[i].addr;

		for (j = 0; j < r->segs[i].length; j++)
			if (b[j] != qt_byte(r->id, off + j))
				return false;
		off += r->segs[i].length;
	}
	return true;
}

/*
 * The responder's half of an RDMA READ: validate the peer's rkey, build
 * the SG state and post the response; the ring takes the reference.
 */
static inline int qt_serve_read(struct mrkey_qib_port *port,
				struct mrkey_pd *pd, uint32_t rkey,
				uint32_t region, uint64_t iova, uint64_t offset,
				uint32_t len, unsigned int flags)
{
	struct mrkey_table *t = mrkey_qib_port_table(port);
	struct mrkey_isge isge;
	struct mrkey_sge_state ss;
	struct mrkey_qib_send wr = { 0 };
	struct qt_hdr h = { .magic = QT_MAGIC,
			    .len = len,
			    .region = region,
			    .offset = offset };
	int err;

	err = mrkey_rkey_ok(t, pd, rkey, iova + offset, len,
			    MRKEY_ACCESS_REMOTE_READ, &isge);
	if (err)
		return err;
	mrkey_ss_init(&ss, &isge, 1);
	wr.hdr = &h;
	wr.hdr_len = sizeof(h);
	wr.ss = &ss;
	wr.flags = flags;
	err = mrkey_qib_post(port, &wr);
	if (err)
		mrkey_ss_put(&ss);
	return err;
}

/*
 * One port for a test: the peer at the wire, the port in @mode, its model,
 * its table and a PD. qt_port_close() checks the engine saw no error and
 * the peer no wrong byte.
 */
struct qt_port {
	struct qt_peer peer;
	struct mrkey_qib_port *port;
	struct mrkey_qib_model *model;
	struct mrkey_table *tbl;
	struct mrkey_pd *pd;
};

static inline void qt_port_open(struct qt_port *p,
				enum mrkey_qib_progress_mode mode)
{
	struct mrkey_qib_model_attr ma = { .wire = qt_wire,
					   .wire_ctx = &p->peer };
	struct mrkey_qib_port_attr a = { 0 };

	qt_peer_init(&p->peer);
	a.progress = mode;
	a.model_attr = &ma;
	ck_assert_int_eq(mrkey_qib_port_open(&a, &p->port), 0);
	p->model = mrkey_qib_port_model(p->port);
	ck_assert_ptr_nonnull(p->model);
	p->tbl = mrkey_qib_port_table(p->port);
	ck_assert_int_eq(mrkey_pd_alloc(p->tbl, 0, &p->pd), 0);
}

static inline void qt_port_close(struct qt_port *p)
{
	struct mrkey_qib_model_stats ms;
	uint64_t bad;

	ck_assert_int_eq(mrkey_qib_model_stats(p->model, &ms), 0);
	ck_assert(!(ms.status & MRKEY_QIB_STATUS_ERROR));
	ck_assert_int_eq(mrkey_pd_free(p->pd), 0);
	ck_assert_int_eq(mrkey_qib_port_close(p->port), 0);
	qt_peer_counts(&p->peer, NULL, NULL, &bad);
	ck_assert_uint_eq(bad, 0);
	qt_peer_fini(&p->peer);
}

static inline void qt_run_suite(Suite *s, int *failed)
{
	SRunner *sr = srunner_create(s);

	srunner_run_all(sr, CK_NORMAL);
	*failed += srunner_ntests_failed(sr);
	srunner_free(sr);
}

#endif /* QIB_TEST_H */
