// SPDX-License-Identifier: MIT
/*
 * Unit tests of the QLE7340 send DMA engine model, driven through its chip
 * interface by hand: the test writes descriptors and registers as a driver
 * would and watches the wire, the head write-back and the status.
 */
#include "qib_test.h"

#define RING 8

/*
 * Descriptors before the tail write. The model's register write takes a
 * mutex, which already orders them; TSan does not model fences.
 */
#ifdef __SANITIZE_THREAD__
#define wmb() ((void)0)
#else
#define wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
#endif

struct wire_log {
	pthread_mutex_t lock;
	unsigned char buf[65536];
	size_t len;
	unsigned int descs;
	uint64_t flags[64];
};

static void log_wire(void *ctx, const void *buf, size_t len, uint64_t flags)
{
	struct wire_log *w = ctx;

	pthread_mutex_lock(&w->lock);
	if (w->len + len <= sizeof(w->buf)) {
		memcpy(w->buf + w->len, buf, len);
		w->len += len;
	}
	if (w->descs < 64)
		w->flags[w->descs] = flags;
	w->descs++;
	pthread_mutex_unlock(&w->lock);
}

static struct wire_log wl;
static struct mrkey_qib_model *m;
static const struct mrkey_qib_chip *chip;
static uint64_t *ring;
static uint64_t *headmem;
static unsigned char *data;
static unsigned int irqs;
static pthread_mutex_t irq_lock = PTHREAD_MUTEX_INITIALIZER;

static void count_irq(void *arg)
{
	pthread_mutex_lock(&irq_lock);
	irqs++;
	pthread_mutex_unlock(&irq_lock);
}

static unsigned int irq_count(void)
{
	unsigned int n;

	pthread_mutex_lock(&irq_lock);
	n = irqs;
	pthread_mutex_unlock(&irq_lock);
	return n;
}

/* The handler runs after the head moves: wait for it, up to 10 s. */
static unsigned int wait_irqs(unsigned int n)
{
	uint64_t until = qt_now_ns() + 10000000000ull;

	while (irq_count() < n && qt_now_ns() < until)
		qt_sleep_ms(1);
	return irq_count();
}

static uint64_t rd(enum mrkey_qib_reg r)
{
	return chip->ops->read(chip->ctx, r);
}

static void wr(enum mrkey_qib_reg r, uint64_t v)
{
	chip->ops->write(chip->ctx, r, v);
}

static void setup(void)
{
	struct mrkey_qib_model_attr a = { .wire = log_wire, .wire_ctx = &wl };
	unsigned int i;

	memset(&wl, 0, sizeof(wl));
	pthread_mutex_init(&wl.lock, NULL);
	ck_assert_int_eq(mrkey_qib_model_create(&a, &m), 0);
	chip = mrkey_qib_model_chip(m);
	ring = aligned_alloc(64, RING * 16);
	headmem = aligned_alloc(64, 64);
	data = aligned_alloc(64, 65536);
	memset(ring, 0, RING * 16);
	memset(headmem, 0, 64);
	for (i = 0; i < 65536; i++)
		data[i] = qt_byte(1, i);
	irqs = 0;
	ck_assert_int_eq(chip->ops->set_irq(chip->ctx, count_irq, NULL), 0);
	wr(MRKEY_QIB_REG_SENDDMABASE, (uintptr_t)ring);
	wr(MRKEY_QIB_REG_SENDDMAHEADADDR, (uintptr_t)headmem);
	wr(MRKEY_QIB_REG_SENDDMALENGEN, RING | MRKEY_QIB_LENGEN_LOAD);
	wr(MRKEY_QIB_REG_SENDCTRL,
	   MRKEY_QIB_CTRL_SDMA_ENABLE | MRKEY_QIB_CTRL_SDMA_INTENABLE);
}

static void teardown(void)
{
	wr(MRKEY_QIB_REG_SENDCTRL, 0);
	chip->ops->set_irq(chip->ctx, NULL, NULL);
	mrkey_qib_model_destroy(m);
	free(ring);
	free(headmem);
	free(data);
	pthread_mutex_destroy(&wl.lock);
}

static void put_desc(unsigned int idx, size_t off, uint32_t dwords,
		     unsigned int gen, uint64_t flags)
{
	struct mrkey_qib_desc d = { .addr = (uintptr_t)(data + off),
				    .dwords = dwords,
				    .gen = gen,
				    .flags = flags };
	uint64_t q[2];

	mrkey_qib_desc_pack(q, &d);
	ring[2 * idx] = q[0];
	ring[2 * idx + 1] = q[1];
}

/* Wait until STATUS has every bit of @want; false after 10 s. */
static bool wait_status(uint64_t want)
{
	uint64_t until = qt_now_ns() + 10000000000ull;

	while ((rd(MRKEY_QIB_REG_SENDDMASTATUS) & want) != want)
		if (qt_now_ns() > until)
			return false;
		else
			qt_sleep_ms(1);
	return true;
}

static size_t wire_len(void)
{
	size_t n;

	pthread_mutex_lock(&wl.lock);
	n = wl.len;
	pthread_mutex_unlock(&wl.lock);
	return n;
}

#define LB MRKEY_QIB_DESC_USE_LARGE_BUF

START_TEST(test_sends_and_writes_head_back)
{
	struct mrkey_qib_model_stats st;

	put_desc(0, 0, 16, 0, LB | MRKEY_QIB_DESC_FIRST);
	put_desc(1, 64, 2047, 0,
		 LB | MRKEY_QIB_DESC_LAST | MRKEY_QIB_DESC_DMA_HEAD);
	put_desc(2, 8252, 1, 0,
		 LB | MRKEY_QIB_DESC_FIRST | MRKEY_QIB_DESC_LAST |
			 MRKEY_QIB_DESC_DMA_HEAD | MRKEY_QIB_DESC_INTR);
	wmb();
	wr(MRKEY_QIB_REG_SENDDMATAIL, 3);
	ck_assert(wait_status(MRKEY_QIB_STATUS_IDLE));
	ck_assert_uint_eq(__atomic_load_n(headmem, __ATOMIC_ACQUIRE), 3);
	ck_assert_uint_eq(rd(MRKEY_QIB_REG_SENDDMAHEAD), 3);
	ck_assert_uint_eq(wire_len(), (16 + 2047 + 1) * 4);
	ck_assert_int_eq(memcmp(wl.buf, data, wire_len()), 0);
	ck_assert_uint_eq(wl.flags[0], MRKEY_QIB_DESC_FIRST);
	ck_assert_uint_eq(wl.flags[1], MRKEY_QIB_DESC_LAST);
	ck_assert_uint_eq(wl.flags[2],
			  MRKEY_QIB_DESC_FIRST | MRKEY_QIB_DESC_LAST);
	ck_assert_int_eq(mrkey_qib_model_stats(m, &st), 0);
	ck_assert_uint_eq(st.descs_sent, 3);
	ck_assert_uint_eq(st.descs_completed, 3);
	ck_assert_uint_eq(st.head_writebacks, 2);
	ck_assert_uint_eq(st.interrupts, 1);
	ck_assert_uint_eq(wait_irqs(1), 1);
	ck_assert(!(st.status & MRKEY_QIB_STATUS_ERROR));
}
END_TEST

START_TEST(test_head_written_only_on_dma_head)
{
	put_desc(0, 0, 4, 0, LB);
	put_desc(1, 16, 4, 0, LB);
	wmb();
	wr(MRKEY_QIB_REG_SENDDMATAIL, 2);
	ck_assert(wait_status(MRKEY_QIB_STATUS_IDLE));
	ck_assert_uint_eq(rd(MRKEY_QIB_REG_SENDDMAHEAD), 2);
	ck_assert_uint_eq(__atomic_load_n(headmem, __ATOMIC_ACQUIRE), 0);
	ck_assert_uint_eq(irq_count(), 0);
}
END_TEST

START_TEST(test_generation_across_wraps)
{
	unsigned int i, idx, gen = 0;

	/* three laps and a bit, 7 descriptors at a time at most */
	for (i = 0; i < 3 * RING + 3; i++) {
		idx = i % RING;
		if (i && !idx)
			gen = (gen + 1) & 3;
		put_desc(idx, i * 4, 1, gen, LB | MRKEY_QIB_DESC_DMA_HEAD);
		wmb();
		wr(MRKEY_QIB_REG_SENDDMATAIL, (idx + 1) % RING);
		ck_assert(wait_status(MRKEY_QIB_STATUS_IDLE));
	}
	ck_assert_uint_eq(__atomic_load_n(headmem, __ATOMIC_ACQUIRE),
			  (3 * RING + 3) % RING);
	ck_assert_uint_eq(wire_len(), (3 * RING + 3) * 4);
	ck_assert_int_eq(memcmp(wl.buf, data, wire_len()), 0);
	ck_assert(!(rd(MRKEY_QIB_REG_SENDDMASTATUS) & MRKEY_QIB_STATUS_ERROR));
}
END_TEST

static void expect_error_halt(unsigned int cause, unsigned int at)
{
	uint64_t s;

	ck_assert(wait_status(MRKEY_QIB_STATUS_ERROR));
	s = rd(MRKEY_QIB_REG_SENDDMASTATUS);
	ck_assert(s & MRKEY_QIB_STATUS_HALTED);
	ck_assert_uint_eq((s >> MRKEY_QIB_STATUS_CAUSE_SHIFT) &
				  MRKEY_QIB_STATUS_CAUSE_MASK,
			  cause);
	/* it stopped at the bad descriptor and sent nothing past it */
	ck_assert_uint_eq(rd(MRKEY_QIB_REG_SENDDMAHEAD), at);
	ck_assert_uint_eq(wire_len(), at * 16);
}

START_TEST(test_bad_generation_halts)
{
	put_desc(0, 0, 4, 0, LB);
	put_desc(1, 16, 4, 0, LB);
	/* a stale descriptor left from the previous lap */
	put_desc(2, 32, 4, 3, LB);
	put_desc(3, 48, 4, 0, LB);
	wmb();
	wr(MRKEY_QIB_REG_SENDDMATAIL, 4);
	expect_error_halt(MRKEY_QIB_ERR_GENERATION, 2);
	/* the chip signals an error halt by interrupt */
	ck_assert_uint_eq(wait_irqs(1), 1);
}
END_TEST

START_TEST(test_zero_length_halts)
{
	put_desc(0, 0, 4, 0, LB);
	put_desc(1, 16, 0, 0, LB);
	wmb();
	wr(MRKEY_QIB_REG_SENDDMATAIL, 2);
	expect_error_halt(MRKEY_QIB_ERR_ZERO_LENGTH, 1);
}
END_TEST

START_TEST(test_missing_large_buf_halts)
{
	struct mrkey_qib_model_stats st;

	put_desc(0, 0, 4, 0, MRKEY_QIB_DESC_FIRST);
	wmb();
	wr(MRKEY_QIB_REG_SENDDMATAIL, 1);
	expect_error_halt(MRKEY_QIB_ERR_NO_LARGE_BUF, 0);
	ck_assert_int_eq(mrkey_qib_model_stats(m, &st), 0);
	ck_assert_uint_eq(st.errors, 1);

	/* the error sticks until the driver disables and reloads */
	put_desc(0, 0, 4, 0, LB | MRKEY_QIB_DESC_DMA_HEAD);
	wmb();
	wr(MRKEY_QIB_REG_SENDDMATAIL, 1);
	qt_sleep_ms(20);
	ck_assert(rd(MRKEY_QIB_REG_SENDDMASTATUS) & MRKEY_QIB_STATUS_ERROR);
	ck_assert_uint_eq(wire_len(), 0);
	wr(MRKEY_QIB_REG_SENDCTRL, 0);
	ck_assert(!(rd(MRKEY_QIB_REG_SENDDMASTATUS) & MRKEY_QIB_STATUS_ERROR));
	wr(MRKEY_QIB_REG_SENDDMALENGEN, RING | MRKEY_QIB_LENGEN_LOAD);
	wr(MRKEY_QIB_REG_SENDCTRL, MRKEY_QIB_CTRL_SDMA_ENABLE);
	wr(MRKEY_QIB_REG_SENDDMATAIL, 1);
	ck_assert(wait_status(MRKEY_QIB_STATUS_IDLE));
	ck_assert_uint_eq(wire_len(), 16);
	ck_assert_uint_eq(__atomic_load_n(headmem, __ATOMIC_ACQUIRE), 1);
}
END_TEST

START_TEST(test_tail_beyond_ring_halts)
{
	wr(MRKEY_QIB_REG_SENDDMATAIL, RING + 1);
	expect_error_halt(MRKEY_QIB_ERR_TAIL, 0);
}
END_TEST

START_TEST(test_stall_completion_then_resume)
{
	struct mrkey_qib_model_stats st;

	ck_assert_int_eq(mrkey_qib_model_halt(m, MRKEY_QIB_HALT_COMPLETION), 0);
	put_desc(0, 0, 8, 0,
		 LB | MRKEY_QIB_DESC_DMA_HEAD | MRKEY_QIB_DESC_INTR);
	put_desc(1, 32, 8, 0,
		 LB | MRKEY_QIB_DESC_DMA_HEAD | MRKEY_QIB_DESC_INTR);
	wmb();
	wr(MRKEY_QIB_REG_SENDDMATAIL, 2);
	/* everything goes out, nothing completes */
	while (wire_len() < 64)
		qt_sleep_ms(1);
	qt_sleep_ms(20);
	ck_assert_int_eq(mrkey_qib_model_stats(m, &st), 0);
	ck_assert_uint_eq(st.descs_sent, 2);
	ck_assert_uint_eq(st.descs_completed, 0);
	ck_assert(st.status & MRKEY_QIB_STATUS_HALTED);
	ck_assert(!(st.status & MRKEY_QIB_STATUS_IDLE));
	ck_assert_uint_eq(rd(MRKEY_QIB_REG_SENDDMAHEAD), 0);
	ck_assert_uint_eq(__atomic_load_n(headmem, __ATOMIC_ACQUIRE), 0);
	ck_assert_uint_eq(irq_count(), 0);

	ck_assert_int_eq(mrkey_qib_model_resume(m), 0);
	ck_assert(wait_status(MRKEY_QIB_STATUS_IDLE));
	ck_assert_uint_eq(__atomic_load_n(headmem, __ATOMIC_ACQUIRE), 2);
	ck_assert_uint_eq(wire_len(), 64);
	ck_assert_uint_ge(wait_irqs(1), 1);
}
END_TEST

START_TEST(test_stall_fetch_then_resume)
{
	ck_assert_int_eq(mrkey_qib_model_halt(m, MRKEY_QIB_HALT_FETCH), 0);
	put_desc(0, 0, 8, 0, LB | MRKEY_QIB_DESC_DMA_HEAD);
	wmb();
	wr(MRKEY_QIB_REG_SENDDMATAIL, 1);
	qt_sleep_ms(20);
	ck_assert_uint_eq(wire_len(), 0);
	ck_assert(rd(MRKEY_QIB_REG_SENDDMASTATUS) & MRKEY_QIB_STATUS_HALTED);
	ck_assert_int_eq(mrkey_qib_model_resume(m), 0);
	ck_assert(wait_status(MRKEY_QIB_STATUS_IDLE));
	ck_assert_uint_eq(wire_len(), 32);
	ck_assert_uint_eq(__atomic_load_n(headmem, __ATOMIC_ACQUIRE), 1);
	ck_assert_int_eq(mrkey_qib_model_halt(m, 7), -EINVAL);
}
END_TEST

START_TEST(test_ctrl_halt_and_intenable)
{
	wr(MRKEY_QIB_REG_SENDCTRL,
	   MRKEY_QIB_CTRL_SDMA_ENABLE | MRKEY_QIB_CTRL_SDMA_HALT);
	put_desc(0, 0, 8, 0,
		 LB | MRKEY_QIB_DESC_DMA_HEAD | MRKEY_QIB_DESC_INTR);
	wmb();
	wr(MRKEY_QIB_REG_SENDDMATAIL, 1);
	qt_sleep_ms(20);
	ck_assert_uint_eq(wire_len(), 0);
	/* running again, interrupts off: INTR is ignored */
	wr(MRKEY_QIB_REG_SENDCTRL, MRKEY_QIB_CTRL_SDMA_ENABLE);
	ck_assert(wait_status(MRKEY_QIB_STATUS_IDLE));
	ck_assert_uint_eq(wire_len(), 32);
	ck_assert_uint_eq(irq_count(), 0);
}
END_TEST

START_TEST(test_pace)
{
	uint64_t t0;

	ck_assert_int_eq(mrkey_qib_model_set_pace(m, 2000000, 0), 0);
	put_desc(0, 0, 1, 0, LB);
	put_desc(1, 4, 1, 0, LB);
	put_desc(2, 8, 1, 0, LB | MRKEY_QIB_DESC_DMA_HEAD);
	t0 = qt_now_ns();
	wmb();
	wr(MRKEY_QIB_REG_SENDDMATAIL, 3);
	ck_assert(wait_status(MRKEY_QIB_STATUS_IDLE));
	/* a lower bound only: the engine sleeps 2 ms before each */
	ck_assert_uint_ge(qt_now_ns() - t0, 6000000);
	ck_assert_int_eq(mrkey_qib_model_set_pace(m, 0, 0), 0);
}
END_TEST

START_TEST(test_disable_stops_reading)
{
	unsigned int i;

	ck_assert_int_eq(mrkey_qib_model_set_pace(m, 20000000, 0), 0);
	for (i = 0; i < RING - 1; i++)
		put_desc(i, i * 4, 1, 0, LB);
	wmb();
	wr(MRKEY_QIB_REG_SENDDMATAIL, RING - 1);
	qt_sleep_ms(2);
	wr(MRKEY_QIB_REG_SENDCTRL, 0);
	ck_assert(!(rd(MRKEY_QIB_REG_SENDDMASTATUS) &
		    (MRKEY_QIB_STATUS_ACTIVE | MRKEY_QIB_STATUS_ENABLED)));
	i = (unsigned int)wire_len();
	qt_sleep_ms(20);
	ck_assert_uint_eq(wire_len(), i);
	ck_assert_uint_lt(i, (RING - 1) * 4);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("qib_model");
	TCase *tc = tcase_create("engine");
	int failed = 0;

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_sends_and_writes_head_back);
	tcase_add_test(tc, test_head_written_only_on_dma_head);
	tcase_add_test(tc, test_generation_across_wraps);
	tcase_add_test(tc, test_bad_generation_halts);
	tcase_add_test(tc, test_zero_length_halts);
	tcase_add_test(tc, test_missing_large_buf_halts);
	tcase_add_test(tc, test_tail_beyond_ring_halts);
	tcase_add_test(tc, test_stall_completion_then_resume);
	tcase_add_test(tc, test_stall_fetch_then_resume);
	tcase_add_test(tc, test_ctrl_halt_and_intenable);
	tcase_add_test(tc, test_pace);
	tcase_add_test(tc, test_disable_stops_reading);
	suite_add_tcase(s, tc);
	qt_run_suite(s, &failed);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
