// SPDX-License-Identifier: MIT
/*
 * The seed's race, reproduced with the engine model: a peer reads a region
 * by RDMA READ; the responder's read responses sit in the send ring holding
 * the region; the engine has sent them (the peer has its data) but progress
 * has not reaped them; the peer asks the responder to deregister.
 *
 *  (a) mrkey_mr_dereg() waits and returns 0 as soon as progress reaps;
 *  (b) engine halted: -EBUSY after the timeout, region intact and its key
 *      unpublished; resume and retry: 0;
 *  (c) (a) and (b) again in polled mode: no interrupt thread, only the
 *      progress that mrkey_mr_dereg() drives;
 *  (d) every byte the peer received equals the region's contents.
 * The stress run (e) is test_qib_stress.c.
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

static const size_t seg_lens[3] = { 4096, 8192, 4096 };

/* The peer's reads: 4 responses, 2 of them crossing a segment boundary. */
static void peer_reads(struct qt_region *r, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		ck_assert_int_eq(qt_serve_read(port, pd, mrkey_mr_rkey(r->mr),
					       r->id, r->iova, 2000 + i * 2500u,
					       6000, 0),
				 0);
}

struct dereg_job {
	struct mrkey_mr *mr;
	unsigned int timeout_ms;
	int ret;
	int finished;
	uint64_t t_start, t_end;
};

static void *dereg_thread(void *arg)
{
	struct dereg_job *j = arg;

	j->t_start = qt_now_ns();
	j->ret = mrkey_mr_dereg(j->mr, j->timeout_ms);
	j->t_end = qt_now_ns();
	__atomic_store_n(&j->finished, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void assert_unpublished(struct qt_region *r)
{
	struct mrkey_isge isge;

	ck_assert_int_eq(mrkey_mr_published(r->mr), 0);
	ck_assert_int_eq(mrkey_rkey_ok(tbl, pd, mrkey_mr_rkey(r->mr), r->iova,
				       64, MRKEY_ACCESS_REMOTE_READ, &isge),
			 -ENOENT);
}

/* (a), and (c) in polled mode. */
static void dereg_waits_for_reap(enum mrkey_qib_progress_mode mode)
{
	struct qt_region r;
	struct mrkey_qib_port_stats st;
	struct mrkey_qib_model_stats ms;
	struct dereg_job job = { .timeout_ms = 10000 };
	pthread_t th;
	uint64_t t_resume, bytes, bad;

	open_port(mode);
	ck_assert_int_eq(qt_region_reg(tbl, pd, 11, seg_lens, 3, &r), 0);

	/* sent, not reaped: the engine withholds its completions */
	ck_assert_int_eq(mrkey_qib_model_halt(model, MRKEY_QIB_HALT_COMPLETION),
			 0);
	peer_reads(&r, 4);
	ck_assert(qt_peer_wait(&qp.peer, 4, 10000));
	qt_peer_counts(&qp.peer, NULL, &bytes, &bad);
	ck_assert_uint_eq(bytes, 4 * 6000);
	ck_assert_uint_eq(bad, 0);
	ck_assert_int_eq(mrkey_qib_port_stats(port, &st), 0);
	ck_assert_uint_eq(st.in_flight, 4);
	ck_assert_uint_eq(st.refs_in_flight, 4);
	/* caller + table + 4 in the ring */
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 6);

	job.mr = r.mr;
	ck_assert_int_eq(pthread_create(&th, NULL, dereg_thread, &job), 0);
	qt_sleep_ms(100);
	ck_assert_int_eq(__atomic_load_n(&job.finished, __ATOMIC_ACQUIRE), 0);
	assert_unpublished(&r);
	ck_assert(qt_region_intact(&r));

	t_resume = qt_now_ns();
	ck_assert_int_eq(mrkey_qib_model_resume(model), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(job.ret, 0);
	ck_assert_uint_ge(job.t_end, t_resume);
	ck_assert_int_eq(mrkey_qib_port_stats(port, &st), 0);
	ck_assert_uint_eq(st.in_flight, 0);
	ck_assert_uint_eq(st.refs_in_flight, 0);
	ck_assert_uint_eq(st.retired, 4);
	ck_assert_int_eq(mrkey_qib_model_stats(model, &ms), 0);
	if (mode == MRKEY_QIB_PROGRESS_POLLED)
		ck_assert_uint_eq(ms.interrupts, 0);
	else
		ck_assert_uint_ge(ms.interrupts, 1);
	qt_region_free(&r);
	close_port();
}

/* (b), and (c) in polled mode; @at: where the engine is stalled. */
static void halted_ebusy_then_retry(enum mrkey_qib_progress_mode mode,
				    enum mrkey_qib_halt_point at)
{
	struct qt_region r;
	struct mrkey_qib_port_stats st;
	struct mrkey_qib_model_stats ms;
	uint64_t msgs;

	open_port(mode);
	ck_assert_int_eq(qt_region_reg(tbl, pd, 12, seg_lens, 3, &r), 0);
	ck_assert_int_eq(mrkey_qib_model_halt(model, at), 0);
	peer_reads(&r, 4);
	if (at == MRKEY_QIB_HALT_COMPLETION) {
		ck_assert(qt_peer_wait(&qp.peer, 4, 10000));
	} else {
		qt_sleep_ms(20);
		qt_peer_counts(&qp.peer, &msgs, NULL, NULL);
		ck_assert_uint_eq(msgs, 0);
	}

	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 200), -EBUSY);
	/* intact: unpublished, the caller's reference back, memory kept */
	assert_unpublished(&r);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 1 + 4);
	ck_assert(qt_region_intact(&r));
	/* again: only waits again */
	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 0), -EBUSY);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 1 + 4);

	ck_assert_int_eq(mrkey_qib_model_resume(model), 0);
	ck_assert(qt_peer_wait(&qp.peer, 4, 10000));
	if (mode == MRKEY_QIB_PROGRESS_POLLED) {
		/* the engine is done, but nobody reaps a polled ring... */
		do {
			ck_assert_int_eq(mrkey_qib_model_stats(model, &ms), 0);
		} while (!(ms.status & MRKEY_QIB_STATUS_IDLE) &&
			 (qt_sleep_ms(1), 1));
		qt_sleep_ms(20);
		ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 1 + 4);
		ck_assert_uint_eq(ms.interrupts, 0);
	}
	/* ...but the retry drives progress itself */
	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 10000), 0);
	ck_assert_int_eq(mrkey_qib_port_stats(port, &st), 0);
	ck_assert_uint_eq(st.in_flight, 0);
	ck_assert_uint_eq(st.retired, 4);
	qt_region_free(&r);
	close_port();
}

START_TEST(test_a_dereg_waits_then_0)
{
	dereg_waits_for_reap(MRKEY_QIB_PROGRESS_IRQ);
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

START_TEST(test_c_polled_dereg_waits_then_0)
{
	dereg_waits_for_reap(MRKEY_QIB_PROGRESS_POLLED);
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

/* (d): many reads, aligned and not, across segments, in both modes. */
static void bytes_match(enum mrkey_qib_progress_mode mode)
{
	static const size_t lens[4] = { 4096, 12288, 8192, 2048 };
	struct qt_region r;
	uint64_t msgs, bytes, bad, want = 0, seed = 1;
	unsigned int i, n = 300;

	open_port(mode);
	ck_assert_int_eq(qt_region_reg(tbl, pd, 13, lens, 4, &r), 0);
	ck_assert_int_eq(mrkey_qib_model_set_pace(model, 2000, 0), 0);
	for (i = 0; i < n; i++) {
		uint64_t off, len;

		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		off = (seed >> 33) % r.length;
		len = 1 + (seed >> 13) % 20000;
		if (i % 2)
			off &= ~3ull, len = (len + 3) & ~3ull;
		if (off + len > r.length)
			len = r.length - off;
		ck_assert_int_eq(qt_serve_read(port, pd, mrkey_mr_rkey(r.mr),
					       r.id, r.iova, off, (uint32_t)len,
					       MRKEY_QIB_POST_WAIT),
				 0);
		want += len;
	}
	ck_assert(qt_peer_wait(&qp.peer, n, 60000));
	qt_peer_counts(&qp.peer, &msgs, &bytes, &bad);
	ck_assert_uint_eq(msgs, n);
	ck_assert_uint_eq(bad, 0);
	ck_assert_uint_eq(bytes, want);
	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 10000), 0);
	qt_region_free(&r);
	close_port();
}

START_TEST(test_d_bytes_match_irq)
{
	bytes_match(MRKEY_QIB_PROGRESS_IRQ);
}
END_TEST

START_TEST(test_d_bytes_match_polled)
{
	bytes_match(MRKEY_QIB_PROGRESS_POLLED);
}
END_TEST

/* Closing with responses in the ring drops their references. */
START_TEST(test_close_with_requests_in_flight)
{
	struct qt_region r;

	open_port(MRKEY_QIB_PROGRESS_IRQ);
	ck_assert_int_eq(qt_region_reg(tbl, pd, 14, seg_lens, 3, &r), 0);
	ck_assert_int_eq(mrkey_qib_model_halt(model, MRKEY_QIB_HALT_COMPLETION),
			 0);
	peer_reads(&r, 4);
	ck_assert(qt_peer_wait(&qp.peer, 4, 10000));
	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 50), -EBUSY);
	ck_assert_int_eq(mrkey_qib_port_close(port), -EBUSY);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 1);
	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 0), 0);
	qt_region_free(&r);
	ck_assert_int_eq(mrkey_qib_model_resume(model), 0);
	close_port();
}
END_TEST

/*
 * A descriptor goes bad in the ring (here: USE_LARGE_BUF cleared behind
 * the driver's back) and the engine halts on it. No interrupt comes, but
 * the progress that mrkey_mr_dereg() drives sees the error, aborts the
 * ring and drops its references: the dereg still returns 0.
 */
/*
 * The port's DMA region (key 0, privileged PD) and a send validated with
 * mrkey_lkey_ok(): the ring holds the DMA region like any other.
 */
START_TEST(test_dma_region_send)
{
	struct mrkey_pd *kpd;
	struct mrkey_mr *dma;
	struct mrkey_isge isge;
	struct mrkey_sge_state ss;
	struct qt_hdr h = { .magic = QT_MAGIC, .len = 5000, .region = 19 };
	struct mrkey_qib_send wr = { .hdr = &h,
				     .hdr_len = sizeof(h),
				     .ss = &ss };
	struct mrkey_sge sge;
	unsigned char *buf;
	unsigned int i;
	uint64_t bytes;

	open_port(MRKEY_QIB_PROGRESS_IRQ);
	ck_assert_int_eq(mrkey_pd_alloc(tbl, MRKEY_PD_PRIVILEGED, &kpd), 0);
	ck_assert_int_eq(
		mrkey_mr_reg_dma(tbl, kpd, MRKEY_ACCESS_LOCAL_WRITE, &dma), 0);
	ck_assert_uint_eq(mrkey_mr_lkey(dma), 0);
	buf = aligned_alloc(64, 8192);
	ck_assert_ptr_nonnull(buf);
	for (i = 0; i < 5000; i++)
		buf[i] = qt_byte(19, i);

	ck_assert_int_eq(mrkey_qib_model_halt(model, MRKEY_QIB_HALT_COMPLETION),
			 0);
	sge.addr = (uintptr_t)buf;
	sge.length = 5000;
	sge.lkey = 0;
	/* key 0 is for the privileged PD only */
	ck_assert_int_ne(mrkey_lkey_ok(tbl, pd, &sge, 0, &isge), 0);
	ck_assert_int_eq(mrkey_lkey_ok(tbl, kpd, &sge, 0, &isge), 0);
	mrkey_ss_init(&ss, &isge, 1);
	ck_assert_int_eq(mrkey_qib_post(port, &wr), 0);
	ck_assert(qt_peer_wait(&qp.peer, 1, 10000));
	ck_assert_uint_eq(mrkey_mr_refcount(dma), 3);
	ck_assert_int_eq(mrkey_mr_dereg(dma, 50), -EBUSY);
	ck_assert_int_eq(mrkey_qib_model_resume(model), 0);
	ck_assert_int_eq(mrkey_mr_dereg(dma, 10000), 0);
	qt_peer_counts(&qp.peer, NULL, &bytes, NULL);
	ck_assert_uint_eq(bytes, 5000);
	free(buf);
	ck_assert_int_eq(mrkey_pd_free(kpd), 0);
	close_port();
}
END_TEST

static void engine_error_recovers(enum mrkey_qib_progress_mode mode)
{
	const struct mrkey_qib_chip *chip;
	struct qt_region r;
	struct mrkey_qib_port_stats st;
	struct mrkey_qib_model_stats ms;
	uint64_t *ring;

	open_port(mode);
	ck_assert_int_eq(qt_region_reg(tbl, pd, 16, seg_lens, 3, &r), 0);
	ck_assert_int_eq(mrkey_qib_model_halt(model, MRKEY_QIB_HALT_FETCH), 0);
	peer_reads(&r, 2);
	chip = mrkey_qib_model_chip(model);
	ring = (uint64_t *)(uintptr_t)chip->ops->read(
		chip->ctx, MRKEY_QIB_REG_SENDDMABASE);
	/* descriptor 1: the first payload descriptor of the first read */
	ring[2] &= ~MRKEY_QIB_DESC_USE_LARGE_BUF;
	ck_assert_int_eq(mrkey_qib_model_resume(model), 0);

	if (mode == MRKEY_QIB_PROGRESS_IRQ) {
		/* the error interrupt: the progress thread recovers alone */
		uint64_t until = qt_now_ns() + 10000000000ull;

		do {
			qt_sleep_ms(1);
			ck_assert_int_eq(mrkey_qib_port_stats(port, &st), 0);
		} while (!st.engine_errors && qt_now_ns() < until);
		ck_assert_uint_eq(st.engine_errors, 1);
		ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 2);
	}
	/* polled: the progress that the dereg drives recovers */
	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 10000), 0);
	ck_assert_int_eq(mrkey_qib_port_stats(port, &st), 0);
	ck_assert_uint_eq(st.engine_errors, 1);
	ck_assert_uint_eq(st.aborted, 2);
	ck_assert_uint_eq(st.in_flight, 0);
	ck_assert_int_eq(mrkey_qib_model_stats(model, &ms), 0);
	ck_assert_uint_eq(ms.errors, 1);
	/* only the header of the first response went out */
	ck_assert_uint_eq(ms.descs_sent, 1);
	qt_region_free(&r);

	/* the ring was reloaded: the port serves reads again */
	ck_assert_int_eq(qt_region_reg(tbl, pd, 17, seg_lens, 3, &r), 0);
	peer_reads(&r, 4);
	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 10000), 0);
	qt_region_free(&r);
	/* the truncated response was never delivered: no LAST came */
	close_port();
}

START_TEST(test_engine_error_recovers_irq)
{
	engine_error_recovers(MRKEY_QIB_PROGRESS_IRQ);
}
END_TEST

START_TEST(test_engine_error_recovers_polled)
{
	engine_error_recovers(MRKEY_QIB_PROGRESS_POLLED);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("qib_race");
	TCase *tc = tcase_create("seed");
	int failed = 0;

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_a_dereg_waits_then_0);
	tcase_add_test(tc, test_b_halted_completion_ebusy_then_retry);
	tcase_add_test(tc, test_b_halted_fetch_ebusy_then_retry);
	tcase_add_test(tc, test_c_polled_dereg_waits_then_0);
	tcase_add_test(tc, test_c_polled_halted_ebusy_then_retry);
	tcase_add_test(tc, test_d_bytes_match_irq);
	tcase_add_test(tc, test_d_bytes_match_polled);
	tcase_add_test(tc, test_close_with_requests_in_flight);
	tcase_add_test(tc, test_dma_region_send);
	tcase_add_test(tc, test_engine_error_recovers_irq);
	tcase_add_test(tc, test_engine_error_recovers_polled);
	suite_add_tcase(s, tc);
	qt_run_suite(s, &failed);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
