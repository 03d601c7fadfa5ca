// SPDX-License-Identifier: MIT
/*
 * Driver side of the qib send DMA ring.
 *
 * A posted request owns the region references of its scatter/gather state
 * and its descriptors point straight into the regions' memory. The engine
 * may read that memory at any moment until its head has passed the
 * request's last descriptor, and the driver learns that only from the head
 * the engine writes back. So the references are dropped by progress, after
 * it has seen that head, and never earlier: that is what makes
 * mrkey_mr_dereg() wait for the ring rather than free memory under DMA.
 *
 * Index arithmetic: tail and head are ring indexes, added and removed count
 * descriptors for ever. One slot is always left empty, so head == tail
 * means empty and a head the engine reports must lie in [head, tail].
 *
 * Locking: port->lock protects everything below "ring state" in struct
 * mrkey_qib_port and is held around chip register accesses. References
 * are dropped and completions run after it is released, because a dropped
 * last reference may run user code (an async deregistration's callback).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qib_priv.h"

/*
 * Order descriptor stores before the tail write. TSan does not model
 * fences (and warns); the model's register write is a mutex handoff that
 * orders them anyway, and TSan sees that.
 */
#ifdef __SANITIZE_THREAD__
#define qib_wmb() ((void)0)
#else
#define qib_wmb() atomic_thread_fence(memory_order_release)
#endif

#define QIB_MAX_DESC_BYTES ((uint64_t)MRKEY_QIB_DESC_MAX_DWORDS * 4)

static void qib_sleep_us(unsigned int us)
{
	struct timespec ts = { .tv_sec = us / 1000000,
			       .tv_nsec = (long)(us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

static inline uint64_t qib_reg_read(struct mrkey_qib_port *port,
				    enum mrkey_qib_reg reg)
{
	return port->chip.ops->read(port->chip.ctx, reg);
}

static inline void qib_reg_write(struct mrkey_qib_port *port,
				 enum mrkey_qib_reg reg, uint64_t val)
{
	port->chip.ops->write(port->chip.ctx, reg, val);
}

int mrkey__qib_sdma_init(struct mrkey_qib_port *port)
{
	size_t bytes = (size_t)port->cnt * 2 * sizeof(uint64_t);

	port->ring = aligned_alloc(QIB_CACHELINE, bytes);
	/* the head lives alone on its line: the engine writes it */
	port->head_dma = aligned_alloc(QIB_CACHELINE, QIB_CACHELINE);
	if (!port->ring || !port->head_dma) {
		free(port->ring);
		free(port->head_dma);
		port->ring = NULL;
		port->head_dma = NULL;
		return -ENOMEM;
	}
	memset(port->ring, 0, bytes);
	memset(port->head_dma, 0, QIB_CACHELINE);
	port->st.descq_cnt = port->cnt;
	return 0;
}

void mrkey__qib_sdma_fini(struct mrkey_qib_port *port)
{
	free(port->ring);
	free(port->head_dma);
	port->ring = NULL;
	port->head_dma = NULL;
}

/*
 * Stop the engine; on return it reads no host memory. Called with
 * port->lock held or with no other user of the port.
 */
void mrkey__qib_sdma_stop(struct mrkey_qib_port *port)
{
	unsigned int i;

	qib_reg_write(port, MRKEY_QIB_REG_SENDCTRL, 0);
	/* a real chip may finish the descriptor it is in: wait for that */
	for (i = 0; i < 100000; i++) {
		if (!(qib_reg_read(port, MRKEY_QIB_REG_SENDDMASTATUS) &
		      MRKEY_QIB_STATUS_ACTIVE))
			break;
		qib_sleep_us(10);
	}
}

/*
 * Load an empty ring into the (stopped) engine and enable it. Called with
 * port->lock held, or before anyone else can see the port.
 */
int mrkey__qib_sdma_start(struct mrkey_qib_port *port)
{
	uint64_t ctrl = MRKEY_QIB_CTRL_SDMA_ENABLE;

	port->head = port->tail = 0;
	port->generation = 0;
	port->removed = port->added;
	__atomic_store_n(port->head_dma, 0, __ATOMIC_RELEASE);

	qib_reg_write(port, MRKEY_QIB_REG_SENDCTRL, 0);
	qib_reg_write(port, MRKEY_QIB_REG_SENDDMABASE,
		      (uint64_t)(uintptr_t)port->ring);
	qib_reg_write(port, MRKEY_QIB_REG_SENDDMAHEADADDR,
		      (uint64_t)(uintptr_t)port->head_dma);
	qib_reg_write(port, MRKEY_QIB_REG_SENDDMALENGEN, port->cnt);
	qib_reg_write(port, MRKEY_QIB_REG_SENDDMALENGEN,
		      port->cnt | MRKEY_QIB_LENGEN_LOAD);
	qib_reg_write(port, MRKEY_QIB_REG_SENDDMATAIL, 0);
	if (port->mode == MRKEY_QIB_PROGRESS_IRQ)
		ctrl |= MRKEY_QIB_CTRL_SDMA_INTENABLE;
	qib_reg_write(port, MRKEY_QIB_REG_SENDCTRL, ctrl);
	return 0;
}

/* Unlink every request; the engine must be stopped. Under port->lock. */
static struct qib_req *qib_detach_all(struct mrkey_qib_port *port)
{
	struct qib_req *list = port->first;
	struct qib_req *r;

	for (r = list; r; r = r->next) {
		port->st.aborted++;
		port->st.in_flight--;
		port->st.descs_in_flight -= r->ndesc;
		port->st.refs_in_flight -= r->nrefs;
	}
	port->first = port->last = NULL;
	if (port->waiters)
		pthread_cond_broadcast(&port->room);
	return list;
}

static void qib_req_free(struct qib_req *r)
{
	free(r->isges);
	free(r->bounce);
	free(r);
}

/* Drop the references of retired or aborted requests, in order. No lock. */
static void qib_finish(struct qib_req *list, int status)
{
	while (list) {
		struct qib_req *r = list;

		list = r->next;
		mrkey_ss_put(&r->ss);
		if (r->done)
			r->done(r->arg, status);
		qib_req_free(r);
	}
}

void mrkey__qib_sdma_abort_all(struct mrkey_qib_port *port, int status)
{
	struct qib_req *list;

	pthread_mutex_lock(&port->lock);
	list = qib_detach_all(port);
	port->head = port->tail = 0;
	port->generation = 0;
	port->removed = port->added;
	pthread_mutex_unlock(&port->lock);
	qib_finish(list, status);
}

/* Is @hw a head the engine can have reached? Under port->lock. */
static bool qib_head_sane(const struct mrkey_qib_port *port, uint64_t hw)
{
	unsigned int h = port->head, t = port->tail;

	if (hw >= port->cnt)
		return false;
	if (h < t)
		return hw >= h && hw <= t;
	if (h > t)
		return hw >= h || hw <= t;
	return hw == h;
}

int mrkey_qib_progress(struct mrkey_qib_port *port)
{
	struct qib_req *done = NULL, **tailp = &done;
	uint64_t hw;
	int n = 0;

	if (!port)
		return -EINVAL;

	pthread_mutex_lock(&port->lock);
	if (!port->first) {
		pthread_mutex_unlock(&port->lock);
		return 0;
	}

	hw = qib_le64_to_cpu(__atomic_load_n(port->head_dma, __ATOMIC_ACQUIRE));
	if (!qib_head_sane(port, hw)) {
		/* as qib does: give the register one chance */
		hw = qib_reg_read(port, MRKEY_QIB_REG_SENDDMAHEAD);
		if (!qib_head_sane(port, hw)) {
			/* keep every reference: nothing is known done */
			port->st.bad_heads++;
			pthread_mutex_unlock(&port->lock);
			return -EIO;
		}
	}

	if (hw == port->head) {
		uint64_t status;

		status = qib_reg_read(port, MRKEY_QIB_REG_SENDDMASTATUS);
		if (status & MRKEY_QIB_STATUS_ERROR) {
			struct qib_req *list;

			mrkey__qib_sdma_stop(port);
			list = qib_detach_all(port);
			port->st.engine_errors++;
			mrkey__qib_sdma_start(port);
			pthread_mutex_unlock(&port->lock);
			qib_finish(list, -EIO);
			return -EIO;
		}
		pthread_mutex_unlock(&port->lock);
		return 0;
	}

	port->removed += (hw - port->head) & (port->cnt - 1);
	port->head = (unsigned int)hw;
	while (port->first && port->first->last_seq <= port->removed) {
		struct qib_req *r = port->first;

		port->first = r->next;
		r->next = NULL;
		*tailp = r;
		tailp = &r->next;
		port->st.retired++;
		port->st.in_flight--;
		port->st.descs_in_flight -= r->ndesc;
		port->st.refs_in_flight -= r->nrefs;
		n++;
	}
	if (!port->first)
		port->last = NULL;
	if (port->waiters)
		pthread_cond_broadcast(&port->room);
	pthread_mutex_unlock(&port->lock);

	qib_finish(done, 0);
	return n;
}

struct qib_pieces {
	struct qib_piece *v;
	size_t n, cap;
	bool aligned;
	bool fits;
};

static int qib_pieces_add(struct qib_pieces *p, uintptr_t addr, uint64_t bytes)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct qib_piece *v = realloc(p->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		p->v = v;
		p->cap = cap;
	}
	if ((addr & 3) || (bytes & 3))
		p->aligned = false;
	if ((uint64_t)(addr + bytes - 1) >> MRKEY_QIB_DESC_ADDR_BITS)
		p->fits = false;
	/* dwords holds bytes until the request is laid out */
	p->v[p->n].addr = addr;
	p->v[p->n].dwords = (uint32_t)bytes;
	p->n++;
	return 0;
}

/*
 * Collect the contiguous pieces of the next @len payload bytes of @ss, at
 * most 8188 bytes each so that no piece needs more than one descriptor.
 */
static int qib_collect(struct mrkey_sge_state *ss, uint64_t len,
		       struct qib_pieces *p, size_t max)
{
	while (len) {
		struct mrkey_isge *sge;
		uint64_t chunk;
		int err;

		if (ss->cur >= ss->n)
			return -EINVAL;
		sge = &ss->list[ss->cur];
		if (!sge->sge_length || !sge->length) {
			ss->cur++;
			continue;
		}
		/*
		 * Sent as they are, the pieces need more descriptors than
		 * the ring can ever hold: stop early. (Unaligned pieces go
		 * through a bounce buffer, whose count the caller checked.)
		 */
		if (p->aligned && p->n >= max)
			return -EMSGSIZE;
		chunk = sge->length < sge->sge_length ? sge->length :
							sge->sge_length;
		if (chunk > len)
			chunk = len;
		if (chunk > QIB_MAX_DESC_BYTES)
			chunk = QIB_MAX_DESC_BYTES;
		err = qib_pieces_add(p, (uintptr_t)sge->vaddr, chunk);
		if (err)
			return err;
		/* no descriptor can carry this address: give up now */
		if (!p->fits)
			return -EFAULT;
		if (mrkey_ss_advance(ss, (size_t)chunk) != chunk)
			return -EINVAL;
		len -= chunk;
	}
	return 0;
}

/* Copy the pieces into one dword-padded buffer, sent instead of them. */
static int qib_bounce(struct qib_req *r, struct qib_pieces *p, uint64_t payload)
{
	size_t size = (size_t)((payload + QIB_CACHELINE - 1) &
			       ~(uint64_t)(QIB_CACHELINE - 1));
	unsigned char *buf = aligned_alloc(QIB_CACHELINE, size);
	uint64_t off = 0, left;
	size_t i;

	if (!buf)
		return -ENOMEM;
	memset(buf + (payload & ~3ull), 0, size - (size_t)(payload & ~3ull));
	for (i = 0; i < p->n; i++) {
		memcpy(buf + off, (const void *)p->v[i].addr, p->v[i].dwords);
		off += p->v[i].dwords;
	}
	r->bounce = buf;
	p->n = 0;
	p->aligned = true;
	p->fits = true;
	for (left = payload, off = 0; left;) {
		uint64_t chunk = left < QIB_MAX_DESC_BYTES ? left :
							     QIB_MAX_DESC_BYTES;
		int err;

		chunk = (chunk + 3) & ~3ull;
		err = qib_pieces_add(p, (uintptr_t)(buf + off), chunk);
		if (err)
			return err;
		off += chunk;
		left = chunk >= left ? 0 : left - chunk;
	}
	return 0;
}

/* Write one descriptor at the tail. Under port->lock. */
static void qib_write_desc(struct mrkey_qib_port *port, uintptr_t addr,
			   uint32_t dwords, uint32_t offset, uint64_t flags)
{
	struct mrkey_qib_desc d = {
		.addr = addr,
		.dwords = dwords,
		.offset = offset & MRKEY_QIB_DESC_OFFSET_MASK,
		.gen = port->generation,
		.flags = flags | MRKEY_QIB_DESC_USE_LARGE_BUF,
	};
	uint64_t q[2];

	mrkey_qib_desc_pack(q, &d);
	port->ring[2 * (size_t)port->tail] = qib_cpu_to_le64(q[0]);
	port->ring[2 * (size_t)port->tail + 1] = qib_cpu_to_le64(q[1]);
	port->tail = (port->tail + 1) & (port->cnt - 1);
	if (!port->tail)
		port->generation = (port->generation + 1) &
				   MRKEY_QIB_DESC_GEN_MASK;
}

/* Wait for @ndesc free descriptors. Under port->lock; may drop it. */
static int qib_wait_room(struct mrkey_qib_port *port, unsigned int ndesc,
			 bool wait)
{
	bool counted = false;

	for (;;) {
		uint64_t used = port->added - port->removed;

		if (port->closing)
			return -ESHUTDOWN;
		if (port->cnt - 1 - used >= ndesc)
			return 0;
		if (!counted) {
			port->st.full++;
			counted = true;
		}
		if (!wait)
			return -EAGAIN;
		if (port->mode == MRKEY_QIB_PROGRESS_POLLED) {
			pthread_mutex_unlock(&port->lock);
			if (mrkey_qib_progress(port) <= 0)
				qib_sleep_us(20);
			pthread_mutex_lock(&port->lock);
		} else {
			port->waiters++;
			pthread_cond_wait(&port->room, &port->lock);
			port->waiters--;
		}
	}
}

int mrkey_qib_post(struct mrkey_qib_port *port, const struct mrkey_qib_send *wr)
{
	struct qib_pieces p = { .aligned = true, .fits = true };
	struct qib_req *r;
	uint64_t payload = 0, flags_last;
	unsigned int ndesc, i, refs = 0;
	uint32_t offset = 0;
	int err;

	if (!port || !wr || wr->hdr_len > MRKEY_QIB_MAX_HDR ||
	    (wr->hdr_len && !wr->hdr) || (wr->flags & ~MRKEY_QIB_POST_WAIT))
		return -EINVAL;
	if (wr->ss) {
		payload = mrkey_ss_remaining(wr->ss);
		if (wr->len) {
			if (wr->len > payload)
				return -EINVAL;
			payload = wr->len;
		}
	} else if (wr->len) {
		return -EINVAL;
	}
	if (!payload && !wr->hdr_len)
		return -EINVAL;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->done = wr->done;
	r->arg = wr->arg;
	if (wr->hdr_len) {
		memcpy(r->hdr, wr->hdr, wr->hdr_len);
		r->hdr_dwords = (uint32_t)(wr->hdr_len + 3) / 4;
	}

	/* a private copy of the isges: the caller's array may be its stack */
	if (wr->ss && wr->ss->n) {
		r->isges = malloc(wr->ss->n * sizeof(*r->isges));
		if (!r->isges) {
			err = -ENOMEM;
			goto fail;
		}
		memcpy(r->isges, wr->ss->list, wr->ss->n * sizeof(*r->isges));
		mrkey_ss_init(&r->ss, r->isges, wr->ss->n);
		r->ss.cur = wr->ss->cur;
		for (i = 0; i < wr->ss->n; i++) {
			/*
			 * A borrowed isge is only good inside the caller's
			 * read-side section; the engine reads much later.
			 */
			if (r->isges[i].flags & MRKEY_ISGE_NOREF) {
				err = -EINVAL;
				goto fail;
			}
			if (r->isges[i].mr)
				refs++;
		}
	} else {
		mrkey_ss_init(&r->ss, NULL, 0);
	}
	r->nrefs = refs;

	if (payload) {
		/* walk a copy of the cursor, so a failure leaves r->ss whole */
		size_t max = port->cnt - 1 - (r->hdr_dwords ? 1 : 0);
		struct mrkey_sge_state walk;
		struct mrkey_isge *tmp;

		if ((payload + QIB_MAX_DESC_BYTES - 1) / QIB_MAX_DESC_BYTES >
		    max) {
			err = -EMSGSIZE;
			goto fail;
		}

		tmp = malloc(r->ss.n * sizeof(*tmp));
		if (!tmp) {
			err = -ENOMEM;
			goto fail;
		}
		memcpy(tmp, r->isges, r->ss.n * sizeof(*tmp));
		walk = r->ss;
		walk.list = tmp;
		err = qib_collect(&walk, payload, &p, max);
		free(tmp);
		if (err)
			goto fail;
		if (!p.aligned) {
			err = qib_bounce(r, &p, payload);
			if (err)
				goto fail;
		}
		if (!p.fits) {
			err = -EFAULT;
			goto fail;
		}
	}
	if (r->hdr_dwords && ((uintptr_t)r->hdr + sizeof(r->hdr) - 1) >>
				     MRKEY_QIB_DESC_ADDR_BITS) {
		err = -EFAULT;
		goto fail;
	}

	ndesc = (r->hdr_dwords ? 1 : 0) + (unsigned int)p.n;
	if (ndesc > port->cnt - 1) {
		err = -EMSGSIZE;
		goto fail;
	}
	r->ndesc = ndesc;

	flags_last = MRKEY_QIB_DESC_LAST | MRKEY_QIB_DESC_DMA_HEAD;
	if (port->mode == MRKEY_QIB_PROGRESS_IRQ)
		flags_last |= MRKEY_QIB_DESC_INTR;

	pthread_mutex_lock(&port->lock);
	err = qib_wait_room(port, ndesc, wr->flags & MRKEY_QIB_POST_WAIT);
	if (err) {
		pthread_mutex_unlock(&port->lock);
		goto fail;
	}
	if (r->hdr_dwords) {
		qib_write_desc(port, (uintptr_t)r->hdr, r->hdr_dwords, 0,
			       MRKEY_QIB_DESC_FIRST | (p.n ? 0 : flags_last));
		offset = r->hdr_dwords;
	}
	for (i = 0; i < p.n; i++) {
		uint32_t dw = p.v[i].dwords / 4;
		uint64_t fl = 0;

		if (!i && !r->hdr_dwords)
			fl |= MRKEY_QIB_DESC_FIRST;
		if (i == p.n - 1)
			fl |= flags_last;
		qib_write_desc(port, p.v[i].addr, dw, offset, fl);
		offset += dw;
	}
	port->added += ndesc;
	r->last_seq = port->added;
	if (port->last)
		port->last->next = r;
	else
		port->first = r;
	port->last = r;
	port->st.posted++;
	port->st.descs_posted += ndesc;
	if (r->bounce)
		port->st.bounced++;
	port->st.in_flight++;
	port->st.descs_in_flight += ndesc;
	port->st.refs_in_flight += r->nrefs;
	/* descriptors before the tail: the engine reads them after it */
	qib_wmb();
	qib_reg_write(port, MRKEY_QIB_REG_SENDDMATAIL, port->tail);
	pthread_mutex_unlock(&port->lock);

	free(p.v);
	/* the ring owns the references now */
	if (wr->ss)
		mrkey_ss_init(wr->ss, NULL, 0);
	return 0;

fail:
	free(p.v);
	/* the references stay the caller's: do not put r->ss */
	qib_req_free(r);
	return err;
}

int mrkey_qib_port_stats(struct mrkey_qib_port *port,
			 struct mrkey_qib_port_stats *stats)
{
	if (!port || !stats)
		return -EINVAL;
	pthread_mutex_lock(&port->lock);
	*stats = port->st;
	pthread_mutex_unlock(&port->lock);
	stats->keys_published =
		__atomic_load_n(&port->keys_published, __ATOMIC_RELAXED);
	stats->keys_unpublished =
		__atomic_load_n(&port->keys_unpublished, __ATOMIC_RELAXED);
	return 0;
}
