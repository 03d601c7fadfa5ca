// SPDX-License-Identifier: MIT
/*
 * The original race in its FRWR form (NVMe-oF, NFS/RDMA, iSER): the
 * responder fast-registers a region (IB_WR_REG_MR) and hands its key to
 * the peer; the peer RDMA READs it, and the responses sit in the send
 * ring holding the region; the peer ends the I/O with SEND_WITH_INV (the
 * responder invalidates the key); the responder at once fast-registers
 * the same region onto the next I/O's buffer, while the responses are
 * still in the ring.
 *
 *  (a) mrkey_mr_fast_reg() waits and returns 0 as soon as progress reaps
 *      them; only then may the consumer reuse the old buffer;
 *  (b) engine halted: -EBUSY after the timeout, nothing changed (invalid,
 *      old translation, the old buffer untouched); resume, retry: 0;
 *  (c) both again with polled progress: only the progress that the
 *      fast registration drives reaps the ring.
 * The peer checks every byte it receives against the first buffer's.
 */
#include "qib_test.h"

static struct qt_port qp;
static struct mrkey_qib_port *port;
static struct mrkey_qib_model *model;
static struct mrkey_table *tbl;
static struct mrkey_pd *pd;

static void open_port(enum mrkey_qib_progress_mode mode)
{
	qt_port_open(&qp, mode);
	port = qp.port;
	model = qp.model;
	tbl = qp.tbl;
	pd = qp.pd;
}

static void close_port(void)
{
	qt_port_close(&qp);
}

/* One I/O's buffer: three segments holding qt_byte(id, offset). */
struct fr_buf {
	uint32_t id;
	uint64_t iova;
	uint64_t length;
	struct mrkey_seg segs[3];
};

static void buf_new(struct fr_buf *b, uint32_t id)
{
	static const size_t lens[3] = { 4096, 8192, 4096 };
	uint64_t off = 0;
	size_t i, j;

	b->id = id;
	for (i = 0; i < 3; i++) {
		unsigned char *p = aligned_alloc(64, lens[i]);

		ck_assert_ptr_nonnull(p);
		for (j = 0; j < lens[i]; j++)
			p[j] = qt_byte(id, off + j);
		b->segs[i].addr = p;
		b->segs[i].length = lens[i];
		off += lens[i];
	}
	b->length = off;
	b->iova = 0x20000000ull * id;
}

static bool buf_intact(const struct fr_buf *b)
{
	uint64_t off = 0;
	size_t i, j;

	for (i = 0; i < 3; i++) {
		const unsigned char *p = b->segs[i].addr;

		for (j = 0; j < b->segs[i].length; j++)
			if (p[j] != qt_byte(b->id, off + j))
				return false;
		off += b->segs[i].length;
	}
	return true;
}

/* The consumer reuses a buffer for something else. */
static void buf_scribble(struct fr_buf *b)
{
	size_t i;

	for (i = 0; i < 3; i++)
		memset(b->segs[i].addr, 0xee, b->segs[i].length);
}

static void buf_free(struct fr_buf *b)
{
	size_t i;

	for (i = 0; i < 3; i++)
		free(b->segs[i].addr);
}

static struct mrkey_fr_attr fr_attr(const struct fr_buf *b, uint8_t byte)
{
	struct mrkey_fr_attr a = { 0 };

	a.addr = b->iova;
	a.iova = b->iova;
	a.length = b->length;
	a.access = MRKEY_ACCESS_LOCAL_WRITE | MRKEY_ACCESS_REMOTE_READ;
	a.segs = b->segs;
	a.nsegs = 3;
	a.key_byte = byte;
	return a;
}

/* The peer's reads of the first I/O: 4 responses, 2 crossing segments. */
static void peer_reads(uint32_t key, const struct fr_buf *b)
{
	unsigned int i;

	for (i = 0; i < 4; i++)
		ck_assert_int_eq(qt_serve_read(port, pd, key, b->id, b->iova,
					       2000 + i * 2500u, 6000, 0),
				 0);
}

static void assert_invalid(struct mrkey_mr *mr, uint32_t key,
			   const struct fr_buf *b)
{
	struct mrkey_isge isge;

	ck_assert_int_eq(mrkey_mr_published(mr), 0);
	ck_assert_int_eq(mrkey_rkey_ok(tbl, pd, key, b->iova, 64,
				       MRKEY_ACCESS_REMOTE_READ, &isge),
			 -ENOENT);
}

struct fr_job {
	struct mrkey_mr *mr;
	struct mrkey_fr_attr attr;
	unsigned int timeout_ms;
	uint32_t key;
	int ret;
	int finished;
	uint64_t t_end;
};

static void *fr_thread(void *arg)
{
	struct fr_job *j = arg;

	j->ret = mrkey_mr_fast_reg(j->mr, &j->attr, j->timeout_ms, &j->key);
	j->t_end = qt_now_ns();
	__atomic_store_n(&j->finished, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* (a), and (c) in polled mode. */
static void fast_reg_waits_for_reap(enum mrkey_qib_progress_mode mode)
{
	struct mrkey_qib_port_stats st;
	struct fr_buf io1, io2;
	struct mrkey_mr *mr;
	struct fr_job job = { .timeout_ms = 10000 };
	struct mrkey_fr_attr a;
	struct mrkey_isge isge;
	pthread_t th;
	uint64_t t_resume, bytes;
	uint32_t key;

	open_port(mode);
	buf_new(&io1, 21);
	buf_new(&io2, 22);
	ck_assert_int_eq(mrkey_mr_alloc(tbl, pd, 3, &mr), 0);
	a = fr_attr(&io1, 0x01);
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &key), 0);

	/* sent, not reaped: the engine withholds its completions */
	ck_assert_int_eq(mrkey_qib_model_halt(model, MRKEY_QIB_HALT_COMPLETION),
			 0);
	peer_reads(key, &io1);
	ck_assert(qt_peer_wait(&qp.peer, 4, 10000));
	/* the peer's SEND_WITH_INV */
	ck_assert_int_eq(mrkey_key_invalidate(tbl, pd, key), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2 + 4);

	/* the next I/O, at once */
	job.mr = mr;
	job.attr = fr_attr(&io2, 0x02);
	ck_assert_int_eq(pthread_create(&th, NULL, fr_thread, &job), 0);
	qt_sleep_ms(100);
	ck_assert_int_eq(__atomic_load_n(&job.finished, __ATOMIC_ACQUIRE), 0);
	assert_invalid(mr, key, &io1);
	assert_invalid(mr, (key & ~0xffu) | 0x02, &io2);
	ck_assert(buf_intact(&io1));

	t_resume = qt_now_ns();
	ck_assert_int_eq(mrkey_qib_model_resume(model), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(job.ret, 0);
	ck_assert_uint_ge(job.t_end, t_resume);
	ck_assert_uint_eq(job.key, (key & ~0xffu) | 0x02);
	ck_assert_int_eq(mrkey_qib_port_stats(port, &st), 0);
	ck_assert_uint_eq(st.in_flight, 0);
	ck_assert_uint_eq(st.retired, 4);
	/* the ring let go: the old buffer is the consumer's again */
	buf_scribble(&io1);
	ck_assert_int_eq(mrkey_rkey_ok(tbl, pd, job.key, io2.iova + 5000, 8,
				       MRKEY_ACCESS_REMOTE_READ, &isge),
			 0);
	ck_assert_uint_eq(*(unsigned char *)isge.vaddr, qt_byte(22, 5000));
	mrkey_isge_put(&isge);
	qt_peer_counts(&qp.peer, NULL, &bytes, NULL);
	ck_assert_uint_eq(bytes, 4 * 6000);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 10000), 0);
	buf_free(&io1);
	buf_free(&io2);
	close_port();
}

/* (b), and (c) in polled mode; @at: where the engine is stalled. */
static void halted_ebusy_then_retry(enum mrkey_qib_progress_mode mode,
				    enum mrkey_qib_halt_point at)
{
	struct mrkey_qib_model_stats ms;
	struct mrkey_qib_port_stats st;
	struct fr_buf io1, io2;
	struct mrkey_fr_attr a;
	struct mrkey_mr *mr;
	uint32_t key, nkey = 0;

	open_port(mode);
	buf_new(&io1, 23);
	buf_new(&io2, 24);
	ck_assert_int_eq(mrkey_mr_alloc(tbl, pd, 3, &mr), 0);
	a = fr_attr(&io1, 0x10);
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &key), 0);
	ck_assert_int_eq(mrkey_qib_model_halt(model, at), 0);
	peer_reads(key, &io1);
	if (at == MRKEY_QIB_HALT_COMPLETION)
		ck_assert(qt_peer_wait(&qp.peer, 4, 10000));
	ck_assert_int_eq(mrkey_key_invalidate(tbl, pd, key), 0);

	a = fr_attr(&io2, 0x11);
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 200, &nkey), -EBUSY);
	/* nothing changed: invalid, old key, old translation, counts */
	ck_assert_uint_eq(nkey, 0);
	ck_assert_uint_eq(mrkey_mr_lkey(mr), key);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2 + 4);
	assert_invalid(mr, key, &io1);
	assert_invalid(mr, (key & ~0xffu) | 0x11, &io2);
	ck_assert(buf_intact(&io1));
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 0, &nkey), -EBUSY);

	ck_assert_int_eq(mrkey_qib_model_resume(model), 0);
	ck_assert(qt_peer_wait(&qp.peer, 4, 10000));
	if (mode == MRKEY_QIB_PROGRESS_POLLED) {
		/* the engine is done, but nobody reaps a polled ring... */
		do {
			ck_assert_int_eq(mrkey_qib_model_stats(model, &ms), 0);
		} while (!(ms.status & MRKEY_QIB_STATUS_IDLE) &&
			 (qt_sleep_ms(1), 1));
		qt_sleep_ms(20);
		ck_assert_uint_eq(mrkey_mr_refcount(mr), 2 + 4);
		ck_assert_uint_eq(ms.interrupts, 0);
	}
	/* ...but the retry drives progress itself */
	ck_assert_int_eq(mrkey_mr_fast_reg(mr, &a, 10000, &nkey), 0);
	ck_assert_uint_eq(nkey, (key & ~0xffu) | 0x11);
	ck_assert_int_eq(mrkey_qib_port_stats(port, &st), 0);
	ck_assert_uint_eq(st.in_flight, 0);
	ck_assert_uint_eq(st.retired, 4);
	buf_scribble(&io1);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 10000), 0);
	buf_free(&io1);
	buf_free(&io2);
	close_port();
}

START_TEST(test_a_fast_reg_waits_then_0)
{
	fast_reg_waits_for_reap(MRKEY_QIB_PROGRESS_IRQ);
}
END_TEST

START_TEST(test_b_halted_completion_ebusy_then_retry)
{
	halted_ebusy_then_retry(MRKEY_QIB_PROGRESS_IRQ,
				MRKEY_QIB_HALT_COMPLETION);
}
END_TEST

START_TEST(test_b_halted_fetch_ebusy_then_retry)
{
	halted_ebusy_then_retry(MRKEY_QIB_PROGRESS_IRQ, MRKEY_QIB_HALT_FETCH);
}
END_TEST

START_TEST(test_c_polled_fast_reg_waits_then_0)
{
	fast_reg_waits_for_reap(MRKEY_QIB_PROGRESS_POLLED);
}
END_TEST

START_TEST(test_c_polled_halted_ebusy_then_retry)
{
	halted_ebusy_then_retry(MRKEY_QIB_PROGRESS_POLLED,
				MRKEY_QIB_HALT_COMPLETION);
	halted_ebusy_then_retry(MRKEY_QIB_PROGRESS_POLLED,
				MRKEY_QIB_HALT_FETCH);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("qib_frwr");
	TCase *tc = tcase_create("frwr");
	int failed = 0;

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_a_fast_reg_waits_then_0);
	tcase_add_test(tc, test_b_halted_completion_ebusy_then_retry);
	tcase_add_test(tc, test_b_halted_fetch_ebusy_then_retry);
	tcase_add_test(tc, test_c_polled_fast_reg_waits_then_0);
	tcase_add_test(tc, test_c_polled_halted_ebusy_then_retry);
	suite_add_tcase(s, tc);
	qt_run_suite(s, &failed);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
