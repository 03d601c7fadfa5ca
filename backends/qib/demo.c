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

static void region_reg(struct mrkey_table *t, struct mrkey_pd *pd,
		       unsigned int salt, struct region *r)
{
	static const size_t lens[3] = { 16384, 32768, 16384 };
	struct mrkey_mr_attr a = { 0 };
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
	r->iova = 0x7f0000000000ull;
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
			const struct region *r)
{
	struct mrkey_table *t = mrkey_qib_port_table(port);
	unsigned int i;

	for (i = 0; i < NREADS; i++) {
		struct rsp_hdr h = { .offset = (uint64_t)i * READ_BYTES,
				     .len = READ_BYTES };
		struct mrkey_qib_send wr = { .hdr = &h, .hdr_len = sizeof(h) };
		struct mrkey_isge isge;
		struct mrkey_sge_state ss;

		CHECK(mrkey_rkey_ok(t, pd, mrkey_mr_rkey(r->mr),
				    r->iova + h.offset, READ_BYTES,
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

	pthread_mutex_lock(&peer.lock);
	memset(peer.mem, 0, sizeof(peer.mem));
	peer.responses = 0;
	peer.bytes = 0;
	pthread_mutex_unlock(&peer.lock);

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
	serve_reads(port, pd, &r);
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
	pthread_mutex_lock(&peer.lock);
	peer.responses = 0;
	peer.bytes = 0;
	pthread_mutex_unlock(&peer.lock);
	serve_reads(port, pd, &r);
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
	return 0;
}
