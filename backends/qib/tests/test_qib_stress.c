// SPDX-License-Identifier: MIT
/*
 * (e) The seed's race under stress: several responder threads register
 * regions, serve RDMA READs from them through the send ring and deregister
 * them while the engine is still sending, then free their memory at once.
 * A chaos thread keeps changing the engine's pace and stalls it briefly; a
 * poller races the interrupt thread's progress. Nothing may return -EBUSY
 * while the engine runs (the timeout is a generous 10 s), every byte the
 * peer receives must be right, and ASan, TSan and valgrind must see no
 * access to freed memory.
 *
 * Duration: MRKEY_STRESS_SECONDS (default 2), split between the interrupt
 * and the polled mode.
 */
#include "qib_test.h"

#define WORKERS 3

static struct qt_peer peer;
static struct mrkey_qib_port *port;
static struct mrkey_qib_model *model;
static struct mrkey_table *tbl;
static struct mrkey_pd *pd;

static int stop;
static uint32_t next_id;
static uint64_t posted, regions, ebusy, errors;

static double stress_seconds(void)
{
	const char *s = getenv("MRKEY_STRESS_SECONDS");
	double v = s ? atof(s) : 2.0;

	return v > 0.2 ? v : 0.2;
}

static uint64_t rnd(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 17;
}

static void *worker(void *arg)
{
	uint64_t seed = (uintptr_t)arg * 7919 + 1;

	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		size_t lens[3], nsegs = 1 + rnd(&seed) % 3, i;
		unsigned int k, nreq = 1 + (unsigned int)(rnd(&seed) % 8);
		struct qt_region r;
		uint32_t id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
		int err;

		for (i = 0; i < nsegs; i++)
			lens[i] = 1024 * (1 + rnd(&seed) % 8);
		err = qt_region_reg(tbl, pd, id, lens, nsegs, &r);
		if (err) {
			__atomic_add_fetch(&errors, 1, __ATOMIC_RELAXED);
			continue;
		}
		for (k = 0; k < nreq; k++) {
			uint64_t off = rnd(&seed) % r.length;
			uint64_t len = 1 + rnd(&seed) % r.length;

			if (k % 2)
				off &= ~3ull, len = (len + 3) & ~3ull;
			if (off + len > r.length)
				len = r.length - off;
			err = qt_serve_read(port, pd, mrkey_mr_rkey(r.mr), id,
					    r.iova, off, (uint32_t)len,
					    MRKEY_QIB_POST_WAIT);
			if (err)
				__atomic_add_fetch(&errors, 1,
						   __ATOMIC_RELAXED);
			else
				__atomic_add_fetch(&posted, 1,
						   __ATOMIC_RELAXED);
		}
		/* deregister while the responses are in flight */
		err = mrkey_mr_dereg(r.mr, 10000);
		if (err == -EBUSY) {
			__atomic_add_fetch(&ebusy, 1, __ATOMIC_RELAXED);
			/* do not free memory the ring may still read */
			while (mrkey_mr_dereg(r.mr, 10000))
				;
		} else if (err) {
			__atomic_add_fetch(&errors, 1, __ATOMIC_RELAXED);
			continue;
		}
		/* freed at once: a late DMA read would be a use-after-free */
		qt_region_free(&r);
		__atomic_add_fetch(&regions, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void *chaos(void *arg)
{
	uint64_t seed = 99;
	static const uint64_t paces[] = { 0, 500, 5000, 20000 };

	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		uint64_t r = rnd(&seed);

		mrkey_qib_model_set_pace(model, paces[r % 4],
					 r % 3 ? 0 : 2000000000ull);
		if (!(r % 5)) {
			mrkey_qib_model_halt(model,
					     (r >> 8) % 2 ?
						     MRKEY_QIB_HALT_COMPLETION :
						     MRKEY_QIB_HALT_FETCH);
			qt_sleep_ms(2);
			mrkey_qib_model_resume(model);
		}
		qt_sleep_ms(3);
	}
	mrkey_qib_model_resume(model);
	return NULL;
}

static void *poller(void *arg)
{
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		if (mrkey_qib_progress(port) < 0)
			__atomic_add_fetch(&errors, 1, __ATOMIC_RELAXED);
		qt_sleep_ms(1);
	}
	return NULL;
}

static void stress(enum mrkey_qib_progress_mode mode, double seconds)
{
	struct mrkey_qib_model_attr ma = { .wire = qt_wire, .wire_ctx = &peer };
	struct mrkey_qib_port_attr a = { 0 };
	struct mrkey_qib_port_stats st;
	pthread_t w[WORKERS], c, p;
	uint64_t msgs, bytes, bad;
	uintptr_t i;

	qt_peer_init(&peer);
	stop = 0;
	posted = regions = ebusy = errors = 0;
	a.progress = mode;
	a.model_attr = &ma;
	a.sdma_descq_cnt = 16; /* small: the ring fills and posts wait */
	a.lkey_table_size = 10;
	ck_assert_int_eq(mrkey_qib_port_open(&a, &port), 0);
	model = mrkey_qib_port_model(port);
	tbl = mrkey_qib_port_table(port);
	ck_assert_int_eq(mrkey_pd_alloc(tbl, 0, &pd), 0);

	for (i = 0; i < WORKERS; i++)
		ck_assert_int_eq(pthread_create(&w[i], NULL, worker,
						(void *)(i + 1)),
				 0);
	ck_assert_int_eq(pthread_create(&c, NULL, chaos, NULL), 0);
	ck_assert_int_eq(pthread_create(&p, NULL, poller, NULL), 0);
	qt_sleep_ms((unsigned int)(seconds * 1000));
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (i = 0; i < WORKERS; i++)
		pthread_join(w[i], NULL);
	pthread_join(c, NULL);
	pthread_join(p, NULL);

	qt_peer_counts(&peer, &msgs, &bytes, &bad);
	ck_assert_int_eq(mrkey_qib_port_stats(port, &st), 0);
	printf("qib stress (%s, %.1f s): %llu regions, %llu reads, "
	       "%llu bytes checked, %llu bounced, %llu full, "
	       "%llu -EBUSY\n",
	       mode == MRKEY_QIB_PROGRESS_IRQ ? "irq" : "polled", seconds,
	       (unsigned long long)regions, (unsigned long long)posted,
	       (unsigned long long)bytes, (unsigned long long)st.bounced,
	       (unsigned long long)st.full, (unsigned long long)ebusy);
	fflush(stdout);
	ck_assert_uint_eq(ebusy, 0);
	ck_assert_uint_eq(errors, 0);
	ck_assert_uint_eq(bad, 0);
	ck_assert_uint_gt(regions, 0);
	ck_assert_uint_eq(msgs, posted);
	ck_assert_uint_eq(st.in_flight, 0);
	ck_assert_uint_eq(st.retired, posted);
	ck_assert_uint_eq(st.bad_heads, 0);
	ck_assert_uint_eq(st.engine_errors, 0);

	ck_assert_int_eq(mrkey_pd_free(pd), 0);
	ck_assert_int_eq(mrkey_qib_port_close(port), 0);
	qt_peer_fini(&peer);
}

START_TEST(test_e_stress_irq)
{
	stress(MRKEY_QIB_PROGRESS_IRQ, stress_seconds() / 2);
}
END_TEST

START_TEST(test_e_stress_polled)
{
	stress(MRKEY_QIB_PROGRESS_POLLED, stress_seconds() / 2);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("qib_stress");
	TCase *tc = tcase_create("stress");
	int failed = 0;

	tcase_set_timeout(tc, 120 + (unsigned int)stress_seconds());
	tcase_add_test(tc, test_e_stress_irq);
	tcase_add_test(tc, test_e_stress_polled);
	suite_add_tcase(s, tc);
	qt_run_suite(s, &failed);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
