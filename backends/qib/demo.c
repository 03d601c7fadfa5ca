// SPDX-License-Identifier: MIT
/*
 * mrkey-qib-demo: the race behind the 2012 qib fix "IB/qib: Avoid returning
 * EBUSY from MR deregister", narrated.
 *
 * A responder registers a region; a peer reads it by RDMA READ; the read
 * responses sit in the qib send ring holding region references; the engine
 * has sent them but nobody has reaped them yet; the responder's own
 * consumer (the program that registered the region, never the peer) then
 * deregisters it. The engine is the software model of the
 * QLE7340 send DMA engine (its documented behaviour, not the card).
 *
 * Then the FRWR form (NVMe-oF, NFS/RDMA, iSER, per I/O): the consumer
 * fast-registers a region onto an I/O's buffer, the peer reads it, its
 * SEND_WITH_INV invalidates the key, and the consumer fast-registers the
 * same region onto the next I/O's buffer while the responses still hold
 * it. This part checks every step it narrates and exits 1 if one does
 * not behave as it says.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mrkey/mrkey.h>
#include <mrkey/qib.h>

#define REGION_BYTES 65536u
#define NREADS 4
#define READ_BYTES (REGION_BYTES / NREADS)

struct rsp_hdr {
	uint64_t offset;
	uint32_t len;
	uint32_t pad;
};

/* The peer: RDMA READ responses land in its own memory. */
struct peer {
	pthread_mutex_t lock;
	unsigned char mem[REGION_BYTES];
	unsigned char msg[sizeof(struct rsp_hdr) + READ_BYTES];
	size_t msg_len;
	unsigned int responses;
	uint64_t bytes;
};

static struct peer peer = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void peer_wire(void *ctx, const void *buf, size_t len, uint64_t flags)
{
	struct peer *p = ctx;
	struct rsp_hdr h;

	pthread_mutex_lock(&p->lock);
	if (flags & MRKEY_QIB_DESC_FIRST)
		p->msg_len = 0;
	if (p->msg_len + len <= sizeof(p->msg)) {
		memcpy(p->msg + p->msg_len, buf, len);
		p->msg_len += len;
	}
	if ((flags & MRKEY_QIB_DESC_LAST) && p->msg_len >= sizeof(h)) {
		memcpy(&h, p->msg, sizeof(h));
		if (h.offset + h.len <= sizeof(p->mem)) {
			memcpy(p->mem + h.offset, p->msg + sizeof(h), h.len);
			p->bytes += h.len;
		}
		p->responses++;
	}
	pthread_mutex_unlock(&p->lock);
}

static unsigned int peer_responses(void)
{
	unsigned int n;

	pthread_mutex_lock(&peer.lock);
	n = peer.responses;
	pthread_mutex_unlock(&peer.lock);
	return n;
}

static unsigned long long peer_bytes(void)
{
	unsigned long long n;

	pthread_mutex_lock(&peer.lock);
	n = peer.bytes;
	pthread_mutex_unlock(&peer.lock);
	return n;
}

static void peer_reset(void)
{
	pthread_mutex_lock(&peer.lock);
	memset(peer.mem, 0, sizeof(peer.mem));
	peer.responses = 0;
	peer.bytes = 0;
	pthread_mutex_unlock(&peer.lock);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static void wait_responses(unsigned int n)
{
	double until = now_ms() + 10000;

	while (peer_responses() < n && now_ms() < until)
		sleep_ms(1);
}

static void die(const char *what, int err)
{
	fprintf(stderr, "mrkey-qib-demo: %s: %s\n", what, mrkey_strerror(err));
	exit(1);
}

#define CHECK(call)                                                            \
	do {                                                                   \
		int err_ = (call);                                             \
		if (err_)                                                      \
			die(#call, err_);                                      \
	} while (0)

struct region {
	struct mrkey_mr *mr;
	struct mrkey_seg segs[3];
	uint64_t iova;
};

/* A 64 KiB buffer in 3 segments holding ((offset * 31 + salt) & 0xff). */
static void region_fill(struct region *r, unsigned int salt, uint64_t iova)
{
	static const size_t lens[3] = { 16384, 32768, 16384 };
	size_t i, j, off = 0;

	for (i = 0; i < 3; i++) {
		unsigned char *b = aligned_alloc(4096, lens[i]);

		if (!b)
			die("aligned_alloc", -ENOMEM);
		for (j = 0; j < lens[i]; j++)
			b[j] = (unsigned char)((off + j) * 31 + salt);
		r->segs[i].addr = b;
		r->segs[i].length = lens[i];
		off += lens[i];
	}
	r->mr = NULL;
	r->iova = iova;
}

static void region_reg(struct mrkey_table *t, struct mrkey_pd *pd,
		       unsigned int salt, struct region *r)
{
	struct mrkey_mr_attr a = { 0 };

	region_fill(r, salt, 0x7f0000000000ull);
	a.pd = pd;
	a.addr = r->iova;
	a.iova = r->iova;
	a.length = REGION_BYTES;
	a.access = MRKEY_ACCESS_LOCAL_WRITE | MRKEY_ACCESS_REMOTE_READ;
	a.segs = r->segs;
	a.nsegs = 3;
	CHECK(mrkey_mr_reg(t, &a, &r->mr));
}

static void region_free(struct region *r)
{
	size_t i;

	for (i = 0; i < 3; i++)
		free(r->segs[i].addr);
}

/* The region's memory still holds what was written at registration. */
static int region_intact(const struct region *r, unsigned int salt)
{
	size_t i, j, off = 0;

	for (i = 0; i < 3; i++) {
		const unsigned char *b = r->segs[i].addr;

		for (j = 0; j < r->segs[i].length; j++)
			if (b[j] != (unsigned char)((off + j) * 31 + salt))
				return 0;
		off += r->segs[i].length;
	}
	return 1;
}

static int region_matches_peer(const struct region *r)
{
	size_t i, off = 0;
	int ok = 1;

	pthread_mutex_lock(&peer.lock);
	for (i = 0; i < 3; i++) {
		if (memcmp(peer.mem + off, r->segs[i].addr,
			   r->segs[i].length) != 0)
			ok = 0;
		off += r->segs[i].length;
	}
	pthread_mutex_unlock(&peer.lock);
	return ok;
}

/* The responder: the peer's READ arrives, the rkey is checked, the
 * response goes into the send ring with the reference. */
static void serve_reads(struct mrkey_qib_port *port, struct mrkey_pd *pd,
			uint32_t rkey, uint64_t iova)
{
	struct mrkey_table *t = mrkey_qib_port_table(port);
	unsigned int i;

	for (i = 0; i < NREADS; i++) {
		struct rsp_hdr h = { .offset = (uint64_t)i * READ_BYTES,
				     .len = READ_BYTES };
		struct mrkey_qib_send wr = { .hdr = &h, .hdr_len = sizeof(h) };
		struct mrkey_isge isge;
		struct mrkey_sge_state ss;

		CHECK(mrkey_rkey_ok(t, pd, rkey, iova + h.offset, READ_BYTES,
				    MRKEY_ACCESS_REMOTE_READ, &isge));
		mrkey_ss_init(&ss, &isge, 1);
		wr.ss = &ss;
		CHECK(mrkey_qib_post(port, &wr));
	}
}

static void print_ring(struct mrkey_qib_port *port, const struct region *r,
		       const char *indent)
{
	struct mrkey_qib_port_stats st;

	mrkey_qib_port_stats(port, &st);
	printf("%sregion refcount %u (1 caller + %d table + %u ring); the "
	       "ring holds %u requests in %u descriptors\n",
	       indent, mrkey_mr_refcount(r->mr), mrkey_mr_published(r->mr),
	       st.refs_in_flight, st.in_flight, st.descs_in_flight);
}

struct dereg_job {
	struct mrkey_mr *mr;
	unsigned int timeout_ms;
	int ret;
	int finished;
	double t_end;
};

static void *dereg_thread(void *arg)
{
	struct dereg_job *j = arg;

	j->ret = mrkey_mr_dereg(j->mr, j->timeout_ms);
	j->t_end = now_ms();
	__atomic_store_n(&j->finished, 1, __ATOMIC_RELEASE);
	return NULL;
}

static const char *mode_name(enum mrkey_qib_progress_mode m)
{
	return m == MRKEY_QIB_PROGRESS_IRQ ? "interrupt thread" : "polled";
}

static void scenario(enum mrkey_qib_progress_mode mode, unsigned int step)
{
	struct mrkey_qib_model_attr ma = { .wire = peer_wire,
					   .wire_ctx = &peer };
	struct mrkey_qib_port_attr pa = { .progress = mode, .model_attr = &ma };
	struct mrkey_qib_port *port;
	struct mrkey_qib_model *model;
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct region r;
	struct mrkey_isge isge;
	struct dereg_job job = { .timeout_ms = 10000 };
	struct mrkey_qib_model_stats ms;
	pthread_t th;
	double t0, t1;
	int err;

	peer_reset();

	CHECK(mrkey_qib_port_open(&pa, &port));
	model = mrkey_qib_port_model(port);
	t = mrkey_qib_port_table(port);
	CHECK(mrkey_pd_alloc(t, 0, &pd));
	printf("[%u] qib port, %s progress: %u-slot key table (qib layout), "
	       "256-descriptor send ring\n",
	       step, mode_name(mode), mrkey_table_size(t));

	region_reg(t, pd, step, &r);
	printf("    registered a %u KiB region in 3 segments, rkey 0x%08x\n",
	       REGION_BYTES / 1024, mrkey_mr_rkey(r.mr));

	/* the fix's window: sent, but the completion not yet seen */
	mrkey_qib_model_halt(model, MRKEY_QIB_HALT_COMPLETION);
	serve_reads(port, pd, mrkey_mr_rkey(r.mr), r.iova);
	wait_responses(NREADS);
	printf("    the peer RDMA READs it: %u responses posted; the engine "
	       "sent them, nothing reaped yet\n",
	       NREADS);
	printf("    the peer has %u responses, %llu bytes, %s the region\n",
	       peer_responses(), peer_bytes(),
	       region_matches_peer(&r) ? "every byte equal to" :
					 "NOT EQUAL to");
	print_ring(port, &r, "    ");

	printf("    the local consumer deregisters it (the peer has its data): "
	       "mrkey_mr_dereg(mr, 10000 ms) on another thread\n");
	job.mr = r.mr;
	t0 = now_ms();
	pthread_create(&th, NULL, dereg_thread, &job);
	sleep_ms(50);
	err = mrkey_rkey_ok(t, pd, mrkey_mr_rkey(r.mr), r.iova, 64,
			    MRKEY_ACCESS_REMOTE_READ, &isge);
	printf("    50 ms later it is %s; the key is unpublished: "
	       "mrkey_rkey_ok -> %s\n",
	       __atomic_load_n(&job.finished, __ATOMIC_ACQUIRE) ?
		       "NOT waiting any more" :
		       "still waiting",
	       err == -ENOENT ? "-ENOENT" : mrkey_strerror(err));
	t1 = now_ms();
	mrkey_qib_model_resume(model);
	printf("    the engine completes: head written back%s\n",
	       mode == MRKEY_QIB_PROGRESS_IRQ ?
		       ", interrupt, the progress thread reaps" :
		       "; no interrupt: the waiting dereg drives progress");
	pthread_join(th, NULL);
	printf("    mrkey_mr_dereg returned %d (%s) after waiting %.1f ms, "
	       "%.2f ms after the engine was let go\n",
	       job.ret, job.ret ? mrkey_strerror(job.ret) : "freed",
	       job.t_end - t0, job.t_end - t1);
	if (job.ret)
		exit(1);
	region_free(&r);

	/* a stalled engine */
	region_reg(t, pd, step + 100, &r);
	printf("    registered another %u KiB region, rkey 0x%08x\n",
	       REGION_BYTES / 1024, mrkey_mr_rkey(r.mr));
	mrkey_qib_model_halt(model, MRKEY_QIB_HALT_FETCH);
	peer_reset();
	serve_reads(port, pd, mrkey_mr_rkey(r.mr), r.iova);
	printf("    a stalled engine: %u responses posted, the engine "
	       "halted before sending\n",
	       NREADS);
	print_ring(port, &r, "    ");
	t0 = now_ms();
	err = mrkey_mr_dereg(r.mr, 100);
	t1 = now_ms();
	printf("    mrkey_mr_dereg(mr, 100 ms) -> %s after %.1f ms\n",
	       err == -EBUSY ? "-EBUSY" : mrkey_strerror(err), t1 - t0);
	printf("    the region is intact: key published %s, refcount %u "
	       "(caller + ring), memory %s\n",
	       mrkey_mr_published(r.mr) ? "yes" : "no", mrkey_mr_refcount(r.mr),
	       region_intact(&r, step + 100) ? "unchanged" : "CHANGED");
	mrkey_qib_model_resume(model);
	wait_responses(NREADS);
	printf("    resume the engine: the peer gets its %u responses (%s)\n",
	       peer_responses(),
	       region_matches_peer(&r) ? "bytes equal" : "BYTES DIFFER");
	t0 = now_ms();
	err = mrkey_mr_dereg(r.mr, 10000);
	t1 = now_ms();
	printf("    retry mrkey_mr_dereg(mr, 10000 ms) -> %d after %.2f ms\n",
	       err, t1 - t0);
	if (err)
		exit(1);
	region_free(&r);

	mrkey_qib_model_stats(model, &ms);
	printf("    engine: %llu descriptors sent, %llu head write-backs, "
	       "%llu interrupts, %llu errors\n",
	       (unsigned long long)ms.descs_sent,
	       (unsigned long long)ms.head_writebacks,
	       (unsigned long long)ms.interrupts,
	       (unsigned long long)ms.errors);
	CHECK(mrkey_pd_free(pd));
	err = mrkey_qib_port_close(port);
	printf("    mrkey_qib_port_close -> %d\n", err);
	if (err)
		exit(1);
}

/* ---- the FRWR form: fast registration instead of deregistration ---- */

/* A step that does not behave as narrated ends the demo with status 1. */
static void expect(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "mrkey-qib-demo: not as described: %s\n", what);
		exit(1);
	}
}

#define EXPECT(cond) expect(!!(cond), #cond)

static const char *err_name(int err)
{
	switch (err) {
	case 0:
		return "0";
	case -ENOENT:
		return "-ENOENT";
	case -EBUSY:
		return "-EBUSY";
	default:
		return mrkey_strerror(err);
	}
}

static uint32_t with_key_byte(uint32_t key, uint8_t byte)
{
	return (key & ~0xffu) | byte;
}

static struct mrkey_fr_attr fr_attr(const struct region *io, uint8_t byte)
{
	struct mrkey_fr_attr a = { 0 };

	a.addr = io->iova;
	a.iova = io->iova;
	a.length = REGION_BYTES;
	a.access = MRKEY_ACCESS_LOCAL_WRITE | MRKEY_ACCESS_REMOTE_READ;
	a.segs = io->segs;
	a.nsegs = 3;
	a.key_byte = byte;
	return a;
}

/*
 * What a peer's READ with @key at I/O @io's byte 40000 (in its middle
 * segment) reaches: 0 (that byte of @io), -EFAULT (other memory), or the
 * lookup's error.
 */
static int key_reaches(struct mrkey_table *t, struct mrkey_pd *pd, uint32_t key,
		       const struct region *io, unsigned int salt)
{
	const uint64_t off = 40000;
	struct mrkey_isge isge;
	int err;

	err = mrkey_rkey_ok(t, pd, key, io->iova + off, 8,
			    MRKEY_ACCESS_REMOTE_READ, &isge);
	if (err)
		return err;
	if (*(const unsigned char *)isge.vaddr !=
	    (unsigned char)(off * 31 + salt))
		err = -EFAULT;
	mrkey_isge_put(&isge);
	return err;
}

struct fr_job {
	struct mrkey_mr *mr;
	struct mrkey_fr_attr attr;
	unsigned int timeout_ms;
	uint32_t key;
	int ret;
	int finished;
	double t_end;
};

static void *fr_thread(void *arg)
{
	struct fr_job *j = arg;

	j->ret = mrkey_mr_fast_reg(j->mr, &j->attr, j->timeout_ms, &j->key);
	j->t_end = now_ms();
	__atomic_store_n(&j->finished, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void print_fr_ring(struct mrkey_qib_port *port, struct mrkey_mr *mr)
{
	struct mrkey_qib_port_stats st;

	mrkey_qib_port_stats(port, &st);
	printf("    region refcount %u (1 caller + 1 table + %u ring); the "
	       "ring holds %u requests in %u descriptors\n",
	       mrkey_mr_refcount(mr), st.refs_in_flight, st.in_flight,
	       st.descs_in_flight);
	EXPECT(st.in_flight == NREADS);
	EXPECT(mrkey_mr_refcount(mr) == 2 + st.refs_in_flight);
}

/*
 * I/O @n: the peer RDMA READs the whole buffer under @key (the engine
 * sends the responses, the halt keeps them in the ring), then its
 * SEND_WITH_INV ends the I/O.
 */
static void fr_io(struct mrkey_qib_port *port, struct mrkey_pd *pd,
		  struct mrkey_mr *mr, uint32_t key, const struct region *io,
		  unsigned int n)
{
	struct mrkey_table *t = mrkey_qib_port_table(port);
	int inv, after;

	peer_reset();
	mrkey_qib_model_halt(mrkey_qib_port_model(port),
			     MRKEY_QIB_HALT_COMPLETION);
	serve_reads(port, pd, key, io->iova);
	wait_responses(NREADS);
	EXPECT(peer_responses() == NREADS && region_matches_peer(io));
	printf("    the peer RDMA READs I/O %u: %u responses sent, nothing "
	       "reaped yet; the peer has %llu bytes, %s\n",
	       n, NREADS, peer_bytes(),
	       region_matches_peer(io) ? "all equal" : "NOT EQUAL");
	inv = mrkey_key_invalidate(t, pd, key);
	after = key_reaches(t, pd, key, io, 0);
	printf("    the peer's SEND_WITH_INV: mrkey_key_invalidate(0x%08x) -> "
	       "%s; the key now -> %s\n",
	       key, err_name(inv), err_name(after));
	EXPECT(inv == 0 && after == -ENOENT && !mrkey_mr_published(mr));
	print_fr_ring(port, mr);
}

/* The region still holds I/O @n's translation, invalid; @next_key does
 * not resolve yet; I/O @n's buffer is as the consumer wrote it. */
static void fr_unchanged(const char *prefix, struct mrkey_table *t,
			 struct mrkey_pd *pd, struct mrkey_mr *mr, uint32_t key,
			 uint32_t next_key, const struct region *io,
			 unsigned int n, unsigned int salt,
			 const struct region *next, unsigned int next_salt)
{
	int old_err = key_reaches(t, pd, key, io, salt);
	int next_err = key_reaches(t, pd, next_key, next, next_salt);
	int intact = region_intact(io, salt);

	printf("%sregion %s, 0x%08x -> %s, new 0x%08x -> %s, I/O %u's "
	       "buffer %s\n",
	       prefix, mrkey_mr_published(mr) ? "VALID" : "invalid", key,
	       err_name(old_err), next_key, err_name(next_err), n,
	       intact ? "untouched" : "CHANGED");
	EXPECT(!mrkey_mr_published(mr) && mrkey_mr_lkey(mr) == key);
	EXPECT(old_err == -ENOENT && next_err == -ENOENT && intact);
}

static void frwr_scenario(enum mrkey_qib_progress_mode mode, unsigned int step)
{
	struct mrkey_qib_model_attr ma = { .wire = peer_wire,
					   .wire_ctx = &peer };
	struct mrkey_qib_port_attr pa = { .progress = mode, .model_attr = &ma };
	const int polled = mode == MRKEY_QIB_PROGRESS_POLLED;
	const unsigned int salt1 = 10 * step + 1, salt2 = 10 * step + 2,
			   salt3 = 10 * step + 3;
	struct mrkey_qib_port *port;
	struct mrkey_qib_model *model;
	struct mrkey_qib_model_stats ms;
	struct mrkey_qib_port_stats st;
	struct mrkey_table *t;
	struct mrkey_pd *pd;
	struct mrkey_mr *mr;
	struct mrkey_fr_attr a;
	struct region io1, io2, io3;
	struct fr_job job = { .timeout_ms = 10000 };
	uint32_t key1, key2, key3 = 0;
	pthread_t th;
	double t0, t1;
	int err, reach, waiting;

	CHECK(mrkey_qib_port_open(&pa, &port));
	model = mrkey_qib_port_model(port);
	t = mrkey_qib_port_table(port);
	CHECK(mrkey_pd_alloc(t, 0, &pd));
	printf("[%u] qib port, %s progress, FRWR: three I/Os of %u KiB "
	       "(3 segments each), one region\n",
	       step, mode_name(mode), REGION_BYTES / 1024);
	region_fill(&io1, salt1, 0x7f1000000000ull);
	region_fill(&io2, salt2, 0x7f2000000000ull);
	region_fill(&io3, salt3, 0x7f3000000000ull);

	CHECK(mrkey_mr_alloc(t, pd, 3, &mr));
	printf("    allocated a fast-registration region (mrkey_mr_alloc, "
	       "3 segments at most): key 0x%08x, invalid\n",
	       mrkey_mr_lkey(mr));
	EXPECT(!mrkey_mr_published(mr) && mrkey_mr_refcount(mr) == 2);
	a = fr_attr(&io1, 0x01);
	CHECK(mrkey_mr_fast_reg(mr, &a, 0, &key1));
	printf("    fast-registers it onto I/O 1's buffer (IB_WR_REG_MR): "
	       "rkey 0x%08x\n",
	       key1);
	EXPECT(key_reaches(t, pd, key1, &io1, salt1) == 0);

	/* (1) the fast registration waits for the ring, then succeeds */
	fr_io(port, pd, mr, key1, &io1, 1);
	job.mr = mr;
	job.attr = fr_attr(&io2, 0x02);
	printf("    the local consumer fast-registers it for I/O 2 at once: "
	       "mrkey_mr_fast_reg(0x02, 10000 ms) on another thread\n");
	t0 = now_ms();
	pthread_create(&th, NULL, fr_thread, &job);
	sleep_ms(50);
	waiting = !__atomic_load_n(&job.finished, __ATOMIC_ACQUIRE);
	fr_unchanged(waiting ? "    50 ms on, still waiting: " :
			       "    50 ms on, NOT waiting: ",
		     t, pd, mr, key1, with_key_byte(key1, 0x02), &io1, 1, salt1,
		     &io2, salt2);
	EXPECT(waiting);
	if (!polled) {
		printf("    rdmavt would have rewritten the page list by now: a "
		       "response still being built would read on from I/O "
		       "2's pages\n");
		printf("    mrkey refuses to: I/O 1's translation stays until "
		       "the ring lets go of the %u responses\n",
		       NREADS);
	}
	t1 = now_ms();
	mrkey_qib_model_resume(model);
	printf("    the engine completes: head written back%s\n",
	       polled ? "; no interrupt: the waiting fast registration "
			"drives progress" :
			", interrupt, the progress thread reaps");
	pthread_join(th, NULL);
	key2 = job.key;
	reach = key_reaches(t, pd, key2, &io2, salt2);
	mrkey_qib_port_stats(port, &st);
	printf("    mrkey_mr_fast_reg returned %s after waiting %.1f ms, "
	       "%.2f ms after the engine was let go: rkey 0x%08x\n",
	       err_name(job.ret), job.t_end - t0, job.t_end - t1, key2);
	printf("    the ring is empty (%u requests); 0x%08x reaches I/O 2's "
	       "buffer: %s; 0x%08x -> %s\n",
	       st.in_flight, key2, reach ? err_name(reach) : "yes", key1,
	       err_name(key_reaches(t, pd, key1, &io1, salt1)));
	EXPECT(job.ret == 0 && job.t_end >= t1 && st.in_flight == 0);
	EXPECT(key2 == with_key_byte(key1, 0x02) && reach == 0);
	EXPECT(key_reaches(t, pd, key1, &io1, salt1) == -ENOENT);

	/* (2) engine halted: -EBUSY, nothing changed; resume, retry */
	fr_io(port, pd, mr, key2, &io2, 2);
	a = fr_attr(&io3, 0x03);
	t0 = now_ms();
	err = mrkey_mr_fast_reg(mr, &a, 100, &key3);
	t1 = now_ms();
	printf("    the engine stays halted: mrkey_mr_fast_reg(I/O 3, 0x03, "
	       "100 ms) -> %s after %.1f ms\n",
	       err_name(err), t1 - t0);
	EXPECT(err == -EBUSY && key3 == 0);
	EXPECT(mrkey_mr_refcount(mr) == 2 + NREADS);
	fr_unchanged("    nothing changed: ", t, pd, mr, key2,
		     with_key_byte(key2, 0x03), &io2, 2, salt2, &io3, salt3);
	mrkey_qib_model_resume(model);
	if (polled) {
		t0 = now_ms();
		do {
			sleep_ms(1);
			mrkey_qib_model_stats(model, &ms);
		} while (!(ms.status & MRKEY_QIB_STATUS_IDLE) &&
			 now_ms() < t0 + 10000);
		sleep_ms(20);
		mrkey_qib_port_stats(port, &st);
		printf("    resume the engine: it goes idle, %llu interrupts; "
		       "20 ms later the ring still holds %u references\n",
		       (unsigned long long)ms.interrupts, st.refs_in_flight);
		EXPECT((ms.status & MRKEY_QIB_STATUS_IDLE) &&
		       ms.interrupts == 0 && st.refs_in_flight == NREADS);
	} else {
		printf("    resume the engine: it completes, the progress "
		       "thread reaps\n");
	}
	t0 = now_ms();
	err = mrkey_mr_fast_reg(mr, &a, 10000, &key3);
	t1 = now_ms();
	reach = key_reaches(t, pd, key3, &io3, salt3);
	printf("    retry mrkey_mr_fast_reg(I/O 3, 0x03, 10000 ms) -> %s after "
	       "%.2f ms: rkey 0x%08x reaches I/O 3: %s\n",
	       err_name(err), t1 - t0, key3, reach ? err_name(reach) : "yes");
	EXPECT(err == 0 && key3 == with_key_byte(key2, 0x03) && reach == 0);
	mrkey_qib_port_stats(port, &st);
	EXPECT(st.in_flight == 0 && st.retired == (uint64_t)2 * NREADS);

	err = mrkey_mr_dereg(mr, 10000);
	printf("    mrkey_mr_dereg(mr, 10000 ms) -> %s\n", err_name(err));
	EXPECT(err == 0);
	region_free(&io1);
	region_free(&io2);
	region_free(&io3);
	mrkey_qib_model_stats(model, &ms);
	printf("    engine: %llu descriptors sent, %llu head write-backs, "
	       "%llu interrupts, %llu errors\n",
	       (unsigned long long)ms.descs_sent,
	       (unsigned long long)ms.head_writebacks,
	       (unsigned long long)ms.interrupts,
	       (unsigned long long)ms.errors);
	EXPECT(ms.errors == 0 && (polled ? ms.interrupts == 0 : 1));
	CHECK(mrkey_pd_free(pd));
	err = mrkey_qib_port_close(port);
	printf("    mrkey_qib_port_close -> %d\n", err);
	EXPECT(err == 0);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("mrkey %s, qib backend: the race of the 2012 fix \"IB/qib: "
	       "Avoid returning EBUSY from MR deregister\"\n",
	       mrkey_version_string());
	printf("engine: software model of the QLE7340 send DMA engine "
	       "(documented behaviour, not the card)\n\n");
	scenario(MRKEY_QIB_PROGRESS_IRQ, 1);
	printf("\n");
	scenario(MRKEY_QIB_PROGRESS_POLLED, 2);
	printf("\nthe same race in its FRWR form (what NVMe-oF, NFS/RDMA and "
	       "iSER do per I/O): the local consumer\n"
	       "fast-registers the region onto the next I/O while the 2012 "
	       "fix's window is open\n\n");
	frwr_scenario(MRKEY_QIB_PROGRESS_IRQ, 3);
	printf("\n");
	frwr_scenario(MRKEY_QIB_PROGRESS_POLLED, 4);
	return 0;
}
