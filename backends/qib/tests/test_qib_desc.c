// SPDX-License-Identifier: MIT
/*
 * Driver-side unit tests of the qib send ring against a fake chip that
 * records register writes and lets the test play the engine: descriptor
 * encoding, generation flip at wrap, full ring, head write-back retiring
 * requests, bad heads rejected, bounce buffers, close aborting requests.
 */
#include "qib_test.h"

struct fake_chip {
	uint64_t regs[MRKEY_QIB_REG_SENDCTRL + 1];
	unsigned int tail_writes;
};

static uint64_t fake_read(void *ctx, enum mrkey_qib_reg reg)
{
	struct fake_chip *f = ctx;

	return f->regs[reg];
}

static void fake_write(void *ctx, enum mrkey_qib_reg reg, uint64_t val)
{
	struct fake_chip *f = ctx;

	if (reg == MRKEY_QIB_REG_SENDDMAHEAD ||
	    reg == MRKEY_QIB_REG_SENDDMASTATUS)
		return;
	if (reg == MRKEY_QIB_REG_SENDDMATAIL)
		f->tail_writes++;
	/* as the engine: disabling clears an error halt */
	if (reg == MRKEY_QIB_REG_SENDCTRL &&
	    !(val & MRKEY_QIB_CTRL_SDMA_ENABLE))
		f->regs[MRKEY_QIB_REG_SENDDMASTATUS] = 0;
	if (reg == MRKEY_QIB_REG_SENDDMALENGEN && (val & MRKEY_QIB_LENGEN_LOAD))
		f->regs[MRKEY_QIB_REG_SENDDMAHEAD] = 0;
	f->regs[reg] = val;
}

static const struct mrkey_qib_chip_ops fake_ops = {
	.read = fake_read,
	.write = fake_write,
};

static struct fake_chip fc;
static struct mrkey_qib_chip fchip = { .ops = &fake_ops, .ctx = &fc };
static struct mrkey_qib_port *port;
static struct mrkey_table *tbl;
static struct mrkey_pd *pd;

static void open_port(unsigned int cnt)
{
	struct mrkey_qib_port_attr a = { 0 };

	memset(&fc, 0, sizeof(fc));
	a.sdma_descq_cnt = cnt;
	a.progress = MRKEY_QIB_PROGRESS_POLLED;
	a.chip = &fchip;
	a.lkey_table_size = 8;
	ck_assert_int_eq(mrkey_qib_port_open(&a, &port), 0);
	tbl = mrkey_qib_port_table(port);
	ck_assert_ptr_nonnull(tbl);
	ck_assert_int_eq(mrkey_pd_alloc(tbl, 0, &pd), 0);
}

static void close_port(void)
{
	ck_assert_int_eq(mrkey_pd_free(pd), 0);
	ck_assert_int_eq(mrkey_qib_port_close(port), 0);
}

static void ring_desc(unsigned int idx, struct mrkey_qib_desc *d)
{
	const uint64_t *ring =
		(const uint64_t *)(uintptr_t)fc.regs[MRKEY_QIB_REG_SENDDMABASE];
	uint64_t q[2] = { ring[2 * idx], ring[2 * idx + 1] };

	mrkey_qib_desc_unpack(q, d);
}

/* Play the engine: report @head as done, in host memory and register. */
static void engine_head(uint64_t head)
{
	uint64_t *h =
		(uint64_t *)(uintptr_t)fc.regs[MRKEY_QIB_REG_SENDDMAHEADADDR];

	__atomic_store_n(h, head, __ATOMIC_RELEASE);
	fc.regs[MRKEY_QIB_REG_SENDDMAHEAD] = head;
}

static int post_hdr_only(void)
{
	uint32_t hdr[4] = { 1, 2, 3, 4 };
	struct mrkey_qib_send wr = { .hdr = hdr, .hdr_len = sizeof(hdr) };

	return mrkey_qib_post(port, &wr);
}

START_TEST(test_pack_bits)
{
	struct mrkey_qib_desc d = {
		.addr = 0x123456789abcull,
		.dwords = 2047,
		.offset = 5,
		.gen = 3,
		.flags = MRKEY_QIB_DESC_FIRST | MRKEY_QIB_DESC_LAST,
	}, e;
	uint64_t q[2];

	mrkey_qib_desc_pack(q, &d);
	ck_assert_uint_eq(q[0], 0x56789abcc7ff1805ull);
	ck_assert_uint_eq(q[1], 0x1234ull);
	mrkey_qib_desc_unpack(q, &e);
	ck_assert_uint_eq(e.addr, d.addr);
	ck_assert_uint_eq(e.dwords, 2047);
	ck_assert_uint_eq(e.offset, 5);
	ck_assert_uint_eq(e.gen, 3);
	ck_assert_uint_eq(e.flags, d.flags);

	d = (struct mrkey_qib_desc){ .gen = 1,
				     .dwords = 1,
				     .flags = MRKEY_QIB_DESC_INTR |
					      MRKEY_QIB_DESC_USE_LARGE_BUF |
					      MRKEY_QIB_DESC_DMA_HEAD };
	mrkey_qib_desc_pack(q, &d);
	ck_assert_uint_eq(q[0], (1ull << 30) | (1ull << 16) | (1ull << 15) |
					(1ull << 14) | (1ull << 13));
	ck_assert_uint_eq(q[1], 0);
}
END_TEST

START_TEST(test_open_loads_ring)
{
	open_port(16);
	ck_assert_uint_eq(fc.regs[MRKEY_QIB_REG_SENDDMALENGEN],
			  16 | MRKEY_QIB_LENGEN_LOAD);
	ck_assert_uint_ne(fc.regs[MRKEY_QIB_REG_SENDDMABASE], 0);
	ck_assert_uint_eq(fc.regs[MRKEY_QIB_REG_SENDDMABASE] % 64, 0);
	ck_assert_uint_ne(fc.regs[MRKEY_QIB_REG_SENDDMAHEADADDR], 0);
	ck_assert_uint_eq(fc.regs[MRKEY_QIB_REG_SENDCTRL],
			  MRKEY_QIB_CTRL_SDMA_ENABLE);
	close_port();
}
END_TEST

START_TEST(test_bad_attrs)
{
	struct mrkey_qib_port_attr a = { 0 };
	struct mrkey_qib_port *p;

	a.chip = &fchip;
	a.progress = MRKEY_QIB_PROGRESS_POLLED;
	a.lkey_table_size = 24;
	ck_assert_int_eq(mrkey_qib_port_open(&a, &p), -EINVAL);
	a.lkey_table_size = 0;
	a.sdma_descq_cnt = 100;
	ck_assert_int_eq(mrkey_qib_port_open(&a, &p), -EINVAL);
	a.sdma_descq_cnt = 2;
	ck_assert_int_eq(mrkey_qib_port_open(&a, &p), -EINVAL);
	a.sdma_descq_cnt = 0;
	/* the fake chip has no interrupt */
	a.progress = MRKEY_QIB_PROGRESS_IRQ;
	ck_assert_int_eq(mrkey_qib_port_open(&a, &p), -EINVAL);
	ck_assert_int_eq(mrkey_qib_port_open(NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(test_post_encoding)
{
	size_t lens[3] = { 4096, 20000, 1024 };
	struct qt_region r;
	struct mrkey_isge isge;
	struct mrkey_sge_state ss;
	struct mrkey_qib_desc d;
	struct qt_hdr h = { .magic = QT_MAGIC };
	struct mrkey_qib_send wr = { .hdr = &h, .hdr_len = 12 };
	struct mrkey_qib_port_stats st;
	uint64_t want[][2] = {
		/* bytes, segment */
		{ 4096, 0 },          { 8188, 1 }, { 8188, 1 },
		{ 20000 - 16376, 1 }, { 1024, 2 },
	};
	uint32_t rkey, off = 3;
	unsigned int i;

	open_port(16);
	ck_assert_int_eq(qt_region_reg(tbl, pd, 7, lens, 3, &r), 0);
	rkey = mrkey_mr_rkey(r.mr);
	ck_assert_int_eq(mrkey_rkey_ok(tbl, pd, rkey, r.iova, 25120,
				       MRKEY_ACCESS_REMOTE_READ, &isge),
			 0);
	mrkey_ss_init(&ss, &isge, 1);
	wr.ss = &ss;
	ck_assert_int_eq(mrkey_qib_post(port, &wr), 0);
	/* the ring owns the reference now */
	ck_assert_uint_eq(ss.n, 0);
	ck_assert_uint_eq(fc.regs[MRKEY_QIB_REG_SENDDMATAIL], 6);

	ring_desc(0, &d);
	ck_assert_uint_eq(d.dwords, 3);
	ck_assert_uint_eq(d.offset, 0);
	ck_assert_uint_eq(d.gen, 0);
	ck_assert_uint_eq(d.flags,
			  MRKEY_QIB_DESC_FIRST | MRKEY_QIB_DESC_USE_LARGE_BUF);
	ck_assert_int_eq(memcmp((void *)(uintptr_t)d.addr, &h, 12), 0);

	for (i = 0; i < 5; i++) {
		uint64_t seg_off = 0, base;
		unsigned int j;

		for (j = 0; j < i; j++)
			if (want[j][1] == want[i][1])
				seg_off += want[j][0];
		base = (uint64_t)(uintptr_t)r.segs[want[i][1]].addr;
		ring_desc(i + 1, &d);
		ck_assert_uint_eq(d.addr, base + seg_off);
		ck_assert_uint_eq(d.dwords, want[i][0] / 4);
		ck_assert_uint_eq(d.offset, off & MRKEY_QIB_DESC_OFFSET_MASK);
		ck_assert_uint_eq(d.gen, 0);
		ck_assert(d.flags & MRKEY_QIB_DESC_USE_LARGE_BUF);
		ck_assert(!(d.flags & MRKEY_QIB_DESC_FIRST));
		ck_assert(!(d.flags & MRKEY_QIB_DESC_INTR));
		if (i == 4)
			ck_assert(d.flags & MRKEY_QIB_DESC_LAST &&
				  d.flags & MRKEY_QIB_DESC_DMA_HEAD);
		else
			ck_assert(!(d.flags & (MRKEY_QIB_DESC_LAST |
					       MRKEY_QIB_DESC_DMA_HEAD)));
		off += (uint32_t)want[i][0] / 4;
	}
	ck_assert_int_eq(mrkey_qib_port_stats(port, &st), 0);
	ck_assert_uint_eq(st.descs_in_flight, 6);
	ck_assert_uint_eq(st.refs_in_flight, 1);
	ck_assert_uint_eq(st.keys_published, 1);

	/* caller + table + ring */
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 3);
	engine_head(6);
	ck_assert_int_eq(mrkey_qib_progress(port), 1);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 2);
	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 1000), 0);
	qt_region_free(&r);
	close_port();
}
END_TEST

START_TEST(test_generation_flip)
{
	struct mrkey_qib_desc d;
	unsigned int i, lap;

	open_port(4);
	/* 1-descriptor requests, reaped at once: 6 laps of a 4-entry ring */
	for (i = 0; i < 24; i++) {
		ck_assert_int_eq(post_hdr_only(), 0);
		ring_desc(i % 4, &d);
		lap = i / 4;
		ck_assert_uint_eq(d.gen, lap & 3);
		ck_assert_uint_eq(fc.regs[MRKEY_QIB_REG_SENDDMATAIL],
				  (i + 1) % 4);
		engine_head((i + 1) % 4);
		ck_assert_int_eq(mrkey_qib_progress(port), 1);
	}
	close_port();
}
END_TEST

START_TEST(test_full_ring_eagain)
{
	size_t lens[1] = { 4096 };
	struct qt_region r;
	struct mrkey_qib_port_stats st;
	unsigned int i;
	uint32_t rkey;

	open_port(8);
	ck_assert_int_eq(qt_region_reg(tbl, pd, 3, lens, 1, &r), 0);
	rkey = mrkey_mr_rkey(r.mr);
	/* header + payload = 2 descriptors; 7 usable: 3 fit */
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(
			qt_serve_read(port, pd, rkey, 3, r.iova, 0, 64, 0), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 5);
	ck_assert_int_eq(qt_serve_read(port, pd, rkey, 3, r.iova, 0, 64, 0),
			 -EAGAIN);
	/* nothing overwritten, the failed post's reference went back */
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 5);
	ck_assert_uint_eq(fc.regs[MRKEY_QIB_REG_SENDDMATAIL], 6);
	ck_assert_int_eq(post_hdr_only(), 0);
	ck_assert_int_eq(post_hdr_only(), -EAGAIN);
	ck_assert_int_eq(mrkey_qib_port_stats(port, &st), 0);
	ck_assert_uint_eq(st.full, 2);
	ck_assert_uint_eq(st.in_flight, 4);

	/* the engine finishes the first request: room for one more */
	engine_head(2);
	ck_assert_int_eq(mrkey_qib_progress(port), 1);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 4);
	ck_assert_int_eq(qt_serve_read(port, pd, rkey, 3, r.iova, 0, 64, 0), 0);
	ck_assert_uint_eq(fc.regs[MRKEY_QIB_REG_SENDDMATAIL], 1);
	engine_head(1);
	ck_assert_int_eq(mrkey_qib_progress(port), 4);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 2);
	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 1000), 0);
	qt_region_free(&r);
	close_port();
}
END_TEST

START_TEST(test_too_big_emsgsize)
{
	size_t lens[1] = { 65536 };
	struct qt_region r;

	open_port(8);
	ck_assert_int_eq(qt_region_reg(tbl, pd, 4, lens, 1, &r), 0);
	/* 65536 bytes = 9 descriptors of <= 8188 bytes + header > 7 */
	ck_assert_int_eq(qt_serve_read(port, pd, mrkey_mr_rkey(r.mr), 4, r.iova,
				       0, 65536, 0),
			 -EMSGSIZE);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 2);
	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 0), 0);
	qt_region_free(&r);
	close_port();
}
END_TEST

START_TEST(test_bad_head_rejected)
{
	size_t lens[1] = { 4096 };
	struct qt_region r;
	struct mrkey_qib_port_stats st;
	uint32_t rkey;

	open_port(16);
	ck_assert_int_eq(qt_region_reg(tbl, pd, 5, lens, 1, &r), 0);
	rkey = mrkey_mr_rkey(r.mr);
	ck_assert_int_eq(qt_serve_read(port, pd, rkey, 5, r.iova, 0, 128, 0),
			 0);
	ck_assert_int_eq(qt_serve_read(port, pd, rkey, 5, r.iova, 0, 128, 0),
			 0);
	/* window is [0, 4]: 9 and 16 are outside, in memory and register */
	engine_head(9);
	ck_assert_int_eq(mrkey_qib_progress(port), -EIO);
	engine_head(16);
	ck_assert_int_eq(mrkey_qib_progress(port), -EIO);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 4);
	ck_assert_int_eq(mrkey_qib_port_stats(port, &st), 0);
	ck_assert_uint_eq(st.bad_heads, 2);
	ck_assert_uint_eq(st.in_flight, 2);

	/* a torn write-back in memory, a sane register: use the register */
	engine_head(2);
	__atomic_store_n(
		(uint64_t *)(uintptr_t)fc.regs[MRKEY_QIB_REG_SENDDMAHEADADDR],
		12, __ATOMIC_RELEASE);
	ck_assert_int_eq(mrkey_qib_progress(port), 1);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 3);

	/* window is now [2, 4]: a head behind it is rejected */
	engine_head(1);
	ck_assert_int_eq(mrkey_qib_progress(port), -EIO);
	engine_head(4);
	ck_assert_int_eq(mrkey_qib_progress(port), 1);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 2);
	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 1000), 0);
	qt_region_free(&r);
	close_port();
}
END_TEST

START_TEST(test_head_writeback_in_order)
{
	size_t lens[1] = { 4096 };
	struct qt_region r;
	uint32_t rkey;
	unsigned int i;

	open_port(16);
	ck_assert_int_eq(qt_region_reg(tbl, pd, 6, lens, 1, &r), 0);
	rkey = mrkey_mr_rkey(r.mr);
	for (i = 0; i < 5; i++)
		ck_assert_int_eq(
			qt_serve_read(port, pd, rkey, 6, r.iova, 0, 256, 0), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 7);
	/* the engine is in the middle of request 3: only 2 retire */
	engine_head(5);
	ck_assert_int_eq(mrkey_qib_progress(port), 2);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 5);
	ck_assert_int_eq(mrkey_qib_progress(port), 0);
	engine_head(10);
	ck_assert_int_eq(mrkey_qib_progress(port), 3);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 2);
	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 1000), 0);
	qt_region_free(&r);
	close_port();
}
END_TEST

START_TEST(test_unaligned_bounces)
{
	size_t lens[2] = { 4096, 4096 };
	struct qt_region r;
	struct mrkey_qib_desc d;
	struct mrkey_qib_port_stats st;
	const unsigned char *b;
	unsigned int i;

	open_port(16);
	ck_assert_int_eq(qt_region_reg(tbl, pd, 9, lens, 2, &r), 0);
	/* 4090..7090: starts unaligned and crosses the segment boundary */
	ck_assert_int_eq(qt_serve_read(port, pd, mrkey_mr_rkey(r.mr), 9, r.iova,
				       4090, 3001, 0),
			 0);
	ck_assert_int_eq(mrkey_qib_port_stats(port, &st), 0);
	ck_assert_uint_eq(st.bounced, 1);
	ring_desc(1, &d);
	ck_assert_uint_eq(d.dwords, 751);
	ck_assert(d.flags & MRKEY_QIB_DESC_LAST);
	b = (const unsigned char *)(uintptr_t)d.addr;
	for (i = 0; i < 3001; i++)
		ck_assert_uint_eq(b[i], qt_byte(9, 4090 + i));
	for (; i < 3004; i++)
		ck_assert_uint_eq(b[i], 0);
	/* the reference stays until the request is reaped */
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 3);
	engine_head(2);
	ck_assert_int_eq(mrkey_qib_progress(port), 1);
	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 1000), 0);
	qt_region_free(&r);
	close_port();
}
END_TEST

static int done_status[8];
static int done_calls;

static void record_done(void *arg, int status)
{
	done_status[(uintptr_t)arg] = status;
	done_calls++;
}

START_TEST(test_close_aborts)
{
	size_t lens[1] = { 4096 };
	struct qt_region r;
	struct mrkey_isge isge;
	struct mrkey_sge_state ss;
	struct mrkey_qib_send wr = { .done = record_done };
	uintptr_t i;

	open_port(16);
	ck_assert_int_eq(qt_region_reg(tbl, pd, 10, lens, 1, &r), 0);
	done_calls = 0;
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(mrkey_rkey_ok(tbl, pd, mrkey_mr_rkey(r.mr),
					       r.iova, 512,
					       MRKEY_ACCESS_REMOTE_READ, &isge),
				 0);
		mrkey_ss_init(&ss, &isge, 1);
		wr.ss = &ss;
		wr.arg = (void *)i;
		ck_assert_int_eq(mrkey_qib_post(port, &wr), 0);
	}
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 5);
	/* the engine never runs: dereg gives up, the ring holds the region */
	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 20), -EBUSY);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 4);

	/* close aborts the ring, but the region still exists: -EBUSY */
	ck_assert_int_eq(mrkey_qib_port_close(port), -EBUSY);
	ck_assert_int_eq(done_calls, 3);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(done_status[i], -ECANCELED);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 1);
	ck_assert(qt_region_intact(&r));
	/* the port still works */
	ck_assert_int_eq(post_hdr_only(), 0);
	engine_head(1);
	ck_assert_int_eq(mrkey_qib_progress(port), 1);

	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 0), 0);
	qt_region_free(&r);
	ck_assert_int_eq(mrkey_qib_port_close(port), -EBUSY); /* the PD */
	close_port();
}
END_TEST

/* The engine halts on an error: progress aborts the ring, restarts it. */
START_TEST(test_engine_error_aborts)
{
	size_t lens[1] = { 4096 };
	struct qt_region r;
	struct mrkey_isge isge;
	struct mrkey_sge_state ss;
	struct mrkey_qib_send wr = { .done = record_done };
	struct mrkey_qib_port_stats st;
	uintptr_t i;

	open_port(16);
	ck_assert_int_eq(qt_region_reg(tbl, pd, 15, lens, 1, &r), 0);
	done_calls = 0;
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(mrkey_rkey_ok(tbl, pd, mrkey_mr_rkey(r.mr),
					       r.iova, 512,
					       MRKEY_ACCESS_REMOTE_READ, &isge),
				 0);
		mrkey_ss_init(&ss, &isge, 1);
		wr.ss = &ss;
		wr.arg = (void *)i;
		ck_assert_int_eq(mrkey_qib_post(port, &wr), 0);
	}
	/* no error yet: no progress is no progress */
	ck_assert_int_eq(mrkey_qib_progress(port), 0);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 4);

	fc.regs[MRKEY_QIB_REG_SENDDMASTATUS] =
		MRKEY_QIB_STATUS_ERROR | MRKEY_QIB_STATUS_HALTED |
		((uint64_t)MRKEY_QIB_ERR_GENERATION
		 << MRKEY_QIB_STATUS_CAUSE_SHIFT);
	ck_assert_int_eq(mrkey_qib_progress(port), -EIO);
	ck_assert_int_eq(done_calls, 2);
	ck_assert_int_eq(done_status[0], -EIO);
	ck_assert_int_eq(done_status[1], -EIO);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 2);
	ck_assert_int_eq(mrkey_qib_port_stats(port, &st), 0);
	ck_assert_uint_eq(st.engine_errors, 1);
	ck_assert_uint_eq(st.aborted, 2);
	ck_assert_uint_eq(st.in_flight, 0);
	/* reloaded and running again, from descriptor 0 */
	ck_assert_uint_eq(fc.regs[MRKEY_QIB_REG_SENDDMALENGEN],
			  16 | MRKEY_QIB_LENGEN_LOAD);
	ck_assert_uint_eq(fc.regs[MRKEY_QIB_REG_SENDCTRL],
			  MRKEY_QIB_CTRL_SDMA_ENABLE);
	ck_assert_uint_eq(fc.regs[MRKEY_QIB_REG_SENDDMASTATUS], 0);
	ck_assert_int_eq(post_hdr_only(), 0);
	ck_assert_uint_eq(fc.regs[MRKEY_QIB_REG_SENDDMATAIL], 1);
	engine_head(1);
	ck_assert_int_eq(mrkey_qib_progress(port), 1);
	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 1000), 0);
	qt_region_free(&r);
	close_port();
}
END_TEST

START_TEST(test_post_einval)
{
	struct mrkey_qib_send wr = { 0 };
	unsigned char big[MRKEY_QIB_MAX_HDR + 4] = { 0 };

	open_port(16);
	ck_assert_int_eq(mrkey_qib_post(port, &wr), -EINVAL);
	ck_assert_int_eq(mrkey_qib_post(NULL, &wr), -EINVAL);
	ck_assert_int_eq(mrkey_qib_post(port, NULL), -EINVAL);
	wr.hdr = big;
	wr.hdr_len = sizeof(big);
	ck_assert_int_eq(mrkey_qib_post(port, &wr), -EINVAL);
	wr.hdr_len = 8;
	wr.flags = 0x80;
	ck_assert_int_eq(mrkey_qib_post(port, &wr), -EINVAL);
	ck_assert_int_eq(mrkey_qib_progress(NULL), -EINVAL);
	close_port();
}
END_TEST

/* A descriptor carries 48 address bits: memory above is refused. */
START_TEST(test_post_48bit_address)
{
	struct mrkey_seg seg = { .addr = (void *)(uintptr_t)(1ull << 48),
				 .length = 4096 };
	struct mrkey_mr_attr a = { .pd = NULL,
				   .addr = 0x1000,
				   .iova = 0x1000,
				   .length = 4096,
				   .access = MRKEY_ACCESS_REMOTE_READ,
				   .segs = &seg,
				   .nsegs = 1 };
	struct mrkey_mr *mr;
	struct mrkey_qib_port_stats st;

	open_port(16);
	a.pd = pd;
	/* registration only records the address; nothing reads it here */
	ck_assert_int_eq(mrkey_mr_reg(tbl, &a, &mr), 0);
	ck_assert_int_eq(qt_serve_read(port, pd, mrkey_mr_rkey(mr), 0, 0x1000,
				       0, 64, 0),
			 -EFAULT);
	ck_assert_uint_eq(mrkey_mr_refcount(mr), 2);
	ck_assert_int_eq(mrkey_qib_port_stats(port, &st), 0);
	ck_assert_uint_eq(st.posted, 0);
	ck_assert_int_eq(mrkey_mr_dereg(mr, 0), 0);
	close_port();
}
END_TEST

/* A borrowed isge (no reference) must not go into the ring. */
START_TEST(test_post_rejects_noref)
{
	size_t lens[1] = { 4096 };
	struct qt_region r;
	struct mrkey_isge isge;
	struct mrkey_sge_state ss;
	struct mrkey_qib_send wr = { .ss = &ss };

	open_port(16);
	ck_assert_int_eq(qt_region_reg(tbl, pd, 18, lens, 1, &r), 0);
	ck_assert_int_eq(mrkey_rkey_ok(tbl, pd, mrkey_mr_rkey(r.mr), r.iova, 64,
				       MRKEY_ACCESS_REMOTE_READ, &isge),
			 0);
	isge.flags |= MRKEY_ISGE_NOREF;
	mrkey_ss_init(&ss, &isge, 1);
	ck_assert_int_eq(mrkey_qib_post(port, &wr), -EINVAL);
	ck_assert_uint_eq(ss.n, 1);
	isge.flags &= ~MRKEY_ISGE_NOREF;
	mrkey_ss_put(&ss);
	ck_assert_uint_eq(mrkey_mr_refcount(r.mr), 2);
	ck_assert_int_eq(mrkey_mr_dereg(r.mr, 0), 0);
	qt_region_free(&r);
	close_port();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("qib_desc");
	TCase *tc = tcase_create("ring");
	int failed = 0;

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_pack_bits);
	tcase_add_test(tc, test_open_loads_ring);
	tcase_add_test(tc, test_bad_attrs);
	tcase_add_test(tc, test_post_encoding);
	tcase_add_test(tc, test_generation_flip);
	tcase_add_test(tc, test_full_ring_eagain);
	tcase_add_test(tc, test_too_big_emsgsize);
	tcase_add_test(tc, test_bad_head_rejected);
	tcase_add_test(tc, test_head_writeback_in_order);
	tcase_add_test(tc, test_unaligned_bounces);
	tcase_add_test(tc, test_close_aborts);
	tcase_add_test(tc, test_engine_error_aborts);
	tcase_add_test(tc, test_post_einval);
	tcase_add_test(tc, test_post_rejects_noref);
	tcase_add_test(tc, test_post_48bit_address);
	suite_add_tcase(s, tc);
	qt_run_suite(s, &failed);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
