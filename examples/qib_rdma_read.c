// SPDX-License-Identifier: MIT
/*
 * qib_rdma_read: a driver embedding mrkey with the qib backend.
 *
 * The driver opens a qib port (its key table and send ring; the chip is the
 * software model of the QLE7340 send DMA engine, paced like a slow link),
 * registers a region, serves a peer's RDMA READs from it through the send
 * ring and deregisters the region while the responses are still in flight.
 * mrkey_mr_dereg() waits for the ring to let go of the region, driving the
 * ring's progress, and returns 0; only then is the memory freed.
 *
 * Build against the installed library:
 *   cc -std=c11 qib_rdma_read.c $(pkg-config --cflags mrkey) \
 *      -lmrkey-qib $(pkg-config --libs mrkey) -pthread
 * or with CMake: find_package(mrkey) and link mrkey::qib (CMakeLists.txt).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mrkey/mrkey.h>
#include <mrkey/qib.h>

#define REGION_BYTES (256 * 1024)
#define READ_BYTES 16384

static unsigned long long wire_bytes;

/* The peer's end of the wire; runs on the engine's thread. */
static void wire(void *ctx, const void *buf, size_t len, uint64_t flags)
{
	(void)ctx;
	(void)buf;
	(void)flags;
	__atomic_add_fetch(&wire_bytes, len, __ATOMIC_RELAXED);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int fail(const char *what, int err)
{
	fprintf(stderr, "qib_rdma_read: %s: %s\n", what, mrkey_strerror(err));
	return 1;
}

/* An RDMA READ request arrived: check the rkey, queue the response. */
static int serve_read(struct mrkey_qib_port *port, struct mrkey_pd *pd,
		      uint32_t rkey, uint64_t va, uint32_t len)
{
	struct mrkey_isge isge;
	struct mrkey_sge_state ss;
	uint64_t hdr[2] = { va, len };
	struct mrkey_qib_send wr = {
		.hdr = hdr,
		.hdr_len = sizeof(hdr),
		.ss = &ss,
		.flags = MRKEY_QIB_POST_WAIT,
	};
	int err;

	err = mrkey_rkey_ok(mrkey_qib_port_table(port), pd, rkey, va, len,
			    MRKEY_ACCESS_REMOTE_READ, &isge);
	if (err)
		return err; /* a real driver NAKs the request */
	mrkey_ss_init(&ss, &isge, 1);
	/* on success the ring owns the reference until it is reaped */
	err = mrkey_qib_post(port, &wr);
	if (err)
		mrkey_ss_put(&ss);
	return err;
}

int main(void)
{
	/* 200 MB/s: 256 KiB of responses take about 1.3 ms on the wire */
	struct mrkey_qib_model_attr model = { .wire = wire,
					      .bytes_per_sec = 200000000 };
	struct mrkey_qib_port_attr attr = { .model_attr = &model };
	struct mrkey_qib_port *port;
	struct mrkey_qib_port_stats st;
	struct mrkey_table *table;
	struct mrkey_pd *pd;
	struct mrkey_mr *mr;
	struct mrkey_seg seg;
	struct mrkey_mr_attr ma = { 0 };
	uint64_t va = 0x100000000ull, off;
	double t0;
	int err;

	err = mrkey_qib_port_open(&attr, &port);
	if (err)
		return fail("mrkey_qib_port_open", err);
	table = mrkey_qib_port_table(port);
	err = mrkey_pd_alloc(table, 0, &pd);
	if (err)
		return fail("mrkey_pd_alloc", err);

	seg.length = REGION_BYTES;
	seg.addr = aligned_alloc(4096, REGION_BYTES);
	if (!seg.addr)
		return fail("aligned_alloc", -ENOMEM);
	memset(seg.addr, 0x5a, REGION_BYTES);
	ma.pd = pd;
	ma.addr = va;
	ma.iova = va;
	ma.length = REGION_BYTES;
	ma.access = MRKEY_ACCESS_LOCAL_WRITE | MRKEY_ACCESS_REMOTE_READ;
	ma.segs = &seg;
	ma.nsegs = 1;
	err = mrkey_mr_reg(table, &ma, &mr);
	if (err)
		return fail("mrkey_mr_reg", err);
	printf("registered %d KiB, rkey 0x%08x\n", REGION_BYTES / 1024,
	       mrkey_mr_rkey(mr));

	for (off = 0; off < REGION_BYTES; off += READ_BYTES) {
		err = serve_read(port, pd, mrkey_mr_rkey(mr), va + off,
				 READ_BYTES);
		if (err)
			return fail("serve_read", err);
	}
	mrkey_qib_port_stats(port, &st);
	printf("served %d RDMA READs: %u responses in the ring hold %u "
	       "references\n",
	       REGION_BYTES / READ_BYTES, st.in_flight, st.refs_in_flight);

	/* deregister mid-flight: waits for the ring, then frees */
	t0 = now_ms();
	err = mrkey_mr_dereg(mr, 5000);
	if (err)
		return fail("mrkey_mr_dereg", err);
	printf("mrkey_mr_dereg -> 0 after %.2f ms; %llu bytes went on the wire\n",
	       now_ms() - t0,
	       (unsigned long long)__atomic_load_n(&wire_bytes,
						   __ATOMIC_RELAXED));
	free(seg.addr); /* safe now: no descriptor points at it */

	mrkey_pd_free(pd);
	err = mrkey_qib_port_close(port);
	if (err)
		return fail("mrkey_qib_port_close", err);
	return 0;
}
