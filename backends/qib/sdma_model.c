// SPDX-License-Identifier: MIT
/*
 * A software model of the QLE7340's per-port send DMA engine.
 *
 * What is modelled is the engine's behaviour as the driver sees it: a ring
 * of two-qword descriptors in host memory, fetched in order up to the tail
 * register; each descriptor's bytes go out on the wire; the head advances
 * past a descriptor once it is done, is written back into host memory when
 * the descriptor asks for it (DMA_HEAD) and raises the interrupt when it
 * asks for that (INTR); the 2-bit generation the engine expects advances
 * each time its fetch point wraps, so a stale descriptor from the previous
 * lap is recognised; a malformed descriptor halts the engine with an error
 * status, and an interrupt, until the driver disables it.
 *
 * What is not modelled: PCIe, the send buffers and their credits, the PBC,
 * the link, the IOMMU. A "DMA address" is a host virtual address.
 *
 * Concurrency: one mutex protects the registers and the engine state. The
 * engine thread holds it while it reads a descriptor's bytes and hands them
 * to the wire, so a register write that disables the engine returns only
 * once no host memory is being read; it drops it while pacing and while
 * the interrupt handler runs (the handler's owner takes its own locks and
 * calls back into the registers).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qib_priv.h"

struct mrkey_qib_model {
	struct mrkey_qib_chip chip;

	pthread_mutex_t lock;
	pthread_cond_t cond;     /* registers or knobs changed */
	pthread_cond_t irq_idle; /* no handler running */
	pthread_t thread;
	bool stop;

	mrkey_qib_wire_fn wire;
	void *wire_ctx;
	uint64_t ns_per_desc;
	uint64_t bytes_per_sec;

	/* registers */
	uint64_t base;
	uint64_t lengen;
	uint64_t headaddr;
	uint64_t ctrl;
	uint32_t tail;

	/* engine state */
	uint32_t len;     /* loaded ring length; 0 = none */
	uint32_t head;    /* next descriptor to complete */
	uint32_t fetch;   /* next descriptor to send */
	unsigned int gen; /* generation expected at fetch */
	bool active;
	unsigned int cause; /* MRKEY_QIB_ERR_*; nonzero = halted */
	uint64_t epoch;     /* bumped by load and disable */

	bool err_irq; /* an error halt to signal */

	/* external stall */
	bool stalled;
	enum mrkey_qib_halt_point stall_at;

	mrkey_qib_irq_fn irq;
	void *irq_arg;
	unsigned int irq_busy;

	struct mrkey_qib_model_stats st;
};

static bool model_enabled(const struct mrkey_qib_model *m)
{
	return (m->ctrl & MRKEY_QIB_CTRL_SDMA_ENABLE) && m->len;
}

static uint64_t model_status(const struct mrkey_qib_model *m)
{
	uint64_t s = 0;

	if (m->ctrl & MRKEY_QIB_CTRL_SDMA_ENABLE)
		s |= MRKEY_QIB_STATUS_ENABLED;
	if (m->active)
		s |= MRKEY_QIB_STATUS_ACTIVE;
	if (m->cause || m->stalled || (m->ctrl & MRKEY_QIB_CTRL_SDMA_HALT))
		s |= MRKEY_QIB_STATUS_HALTED;
	if (m->cause)
		s |= MRKEY_QIB_STATUS_ERROR |
		     ((uint64_t)m->cause << MRKEY_QIB_STATUS_CAUSE_SHIFT);
	if (m->head == m->tail)
		s |= MRKEY_QIB_STATUS_IDLE;
	return s;
}

static void model_load_desc(const struct mrkey_qib_model *m, uint32_t idx,
			    struct mrkey_qib_desc *d)
{
	const uint64_t *ring = (const uint64_t *)(uintptr_t)m->base;
	uint64_t q[2];

	q[0] = qib_le64_to_cpu(ring[2 * (size_t)idx]);
	q[1] = qib_le64_to_cpu(ring[2 * (size_t)idx + 1]);
	mrkey_qib_desc_unpack(q, d);
}

static bool model_can_complete(const struct mrkey_qib_model *m)
{
	if (!model_enabled(m) || m->head == m->fetch)
		return false;
	return !(m->stalled && m->stall_at == MRKEY_QIB_HALT_COMPLETION);
}

static bool model_can_fetch(const struct mrkey_qib_model *m)
{
	if (!model_enabled(m) || m->cause || m->fetch == m->tail)
		return false;
	if (m->ctrl & MRKEY_QIB_CTRL_SDMA_HALT)
		return false;
	return !(m->stalled && m->stall_at == MRKEY_QIB_HALT_FETCH);
}

/* Halt on an error; like the chip, tell the driver by interrupt. */
static void model_halt_error(struct mrkey_qib_model *m, unsigned int cause)
{
	m->cause = cause;
	m->st.errors++;
	if (m->ctrl & MRKEY_QIB_CTRL_SDMA_INTENABLE)
		m->err_irq = true;
}

/* Complete every sent descriptor; returns whether to raise the interrupt. */
static bool model_complete(struct mrkey_qib_model *m)
{
	bool intr = false;

	while (m->head != m->fetch) {
		struct mrkey_qib_desc d;

		model_load_desc(m, m->head, &d);
		m->head = (m->head + 1) & (m->len - 1);
		m->st.descs_completed++;
		if ((d.flags & MRKEY_QIB_DESC_DMA_HEAD) && m->headaddr) {
			__atomic_store_n((uint64_t *)(uintptr_t)m->headaddr,
					 qib_cpu_to_le64(m->head),
					 __ATOMIC_RELEASE);
			m->st.head_writebacks++;
		}
		if ((d.flags & MRKEY_QIB_DESC_INTR) &&
		    (m->ctrl & MRKEY_QIB_CTRL_SDMA_INTENABLE))
			intr = true;
	}
	return intr;
}

static uint64_t model_delay_ns(const struct mrkey_qib_model *m, size_t bytes)
{
	uint64_t ns = m->ns_per_desc;

	if (m->bytes_per_sec)
		ns += (uint64_t)bytes * 1000000000ull / m->bytes_per_sec;
	return ns;
}

static void timespec_add_ns(struct timespec *ts, uint64_t ns)
{
	ns += (uint64_t)ts->tv_nsec;
	ts->tv_sec += (time_t)(ns / 1000000000ull);
	ts->tv_nsec = (long)(ns % 1000000000ull);
}

/*
 * Fetch, check and send the descriptor at the fetch point. Returns with the
 * lock held; may have dropped it while pacing, in which case nothing is
 * sent if the engine was stopped, stalled or reloaded meanwhile.
 */
static void model_send_one(struct mrkey_qib_model *m)
{
	struct mrkey_qib_desc d;
	uint64_t epoch = m->epoch;
	uint64_t delay;
	size_t bytes;

	if (m->tail >= m->len) {
		model_halt_error(m, MRKEY_QIB_ERR_TAIL);
		return;
	}
	model_load_desc(m, m->fetch, &d);
	if (d.gen != m->gen) {
		model_halt_error(m, MRKEY_QIB_ERR_GENERATION);
		return;
	}
	if (!d.dwords) {
		model_halt_error(m, MRKEY_QIB_ERR_ZERO_LENGTH);
		return;
	}
	if (!(d.flags & MRKEY_QIB_DESC_USE_LARGE_BUF)) {
		model_halt_error(m, MRKEY_QIB_ERR_NO_LARGE_BUF);
		return;
	}
	bytes = (size_t)d.dwords * 4;

	delay = model_delay_ns(m, bytes);
	if (delay) {
		struct timespec until;

		clock_gettime(CLOCK_MONOTONIC, &until);
		timespec_add_ns(&until, delay);
		while (!m->stop && m->epoch == epoch && model_can_fetch(m)) {
			if (pthread_cond_timedwait(&m->cond, &m->lock,
						   &until) == ETIMEDOUT)
				break;
		}
		if (m->stop || m->epoch != epoch || !model_can_fetch(m))
			return;
	}

	m->active = true;
	if (m->wire)
		m->wire(m->wire_ctx, (const void *)(uintptr_t)d.addr, bytes,
			d.flags & (MRKEY_QIB_DESC_FIRST | MRKEY_QIB_DESC_LAST));
	m->active = false;
	m->st.descs_sent++;
	m->st.bytes_sent += bytes;
	m->fetch = (m->fetch + 1) & (m->len - 1);
	if (!m->fetch)
		m->gen = (m->gen + 1) & MRKEY_QIB_DESC_GEN_MASK;
}

static void *model_engine(void *arg)
{
	struct mrkey_qib_model *m = arg;

	pthread_mutex_lock(&m->lock);
	while (!m->stop) {
		bool intr = false;

		if (model_can_complete(m)) {
			intr = model_complete(m);
		} else if (model_can_fetch(m)) {
			model_send_one(m);
		} else if (!m->err_irq) {
			pthread_cond_wait(&m->cond, &m->lock);
			continue;
		}
		if (m->err_irq) {
			m->err_irq = false;
			intr = true;
		}
		if (intr && m->irq) {
			mrkey_qib_irq_fn fn = m->irq;
			void *fn_arg = m->irq_arg;

			m->st.interrupts++;
			m->irq_busy++;
			pthread_mutex_unlock(&m->lock);
			fn(fn_arg);
			pthread_mutex_lock(&m->lock);
			if (!--m->irq_busy)
				pthread_cond_broadcast(&m->irq_idle);
		}
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

static uint64_t model_read(void *ctx, enum mrkey_qib_reg reg)
{
	struct mrkey_qib_model *m = ctx;
	uint64_t v = 0;

	pthread_mutex_lock(&m->lock);
	switch (reg) {
	case MRKEY_QIB_REG_SENDDMABASE:
		v = m->base;
		break;
	case MRKEY_QIB_REG_SENDDMALENGEN:
		v = m->lengen;
		break;
	case MRKEY_QIB_REG_SENDDMATAIL:
		v = m->tail;
		break;
	case MRKEY_QIB_REG_SENDDMAHEAD:
		v = m->head;
		break;
	case MRKEY_QIB_REG_SENDDMAHEADADDR:
		v = m->headaddr;
		break;
	case MRKEY_QIB_REG_SENDDMASTATUS:
		v = model_status(m);
		break;
	case MRKEY_QIB_REG_SENDCTRL:
		v = m->ctrl;
		break;
	}
	pthread_mutex_unlock(&m->lock);
	return v;
}

static void model_write(void *ctx, enum mrkey_qib_reg reg, uint64_t val)
{
	struct mrkey_qib_model *m = ctx;

	pthread_mutex_lock(&m->lock);
	switch (reg) {
	case MRKEY_QIB_REG_SENDDMABASE:
		m->base = val;
		break;
	case MRKEY_QIB_REG_SENDDMALENGEN:
		m->lengen = val & 0xffffull;
		if (val & MRKEY_QIB_LENGEN_LOAD) {
			m->len = (uint32_t)(val & 0xffff);
			/* the index arithmetic needs a power of two */
			if (m->len & (m->len - 1))
				m->len = 0;
			m->head = m->fetch = m->tail = 0;
			m->gen = 0;
			m->cause = 0;
			m->epoch++;
			if ((m->ctrl & MRKEY_QIB_CTRL_SDMA_ENABLE) && !m->len)
				model_halt_error(m, MRKEY_QIB_ERR_RING);
		}
		break;
	case MRKEY_QIB_REG_SENDDMATAIL:
		m->tail = (uint32_t)val;
		break;
	case MRKEY_QIB_REG_SENDDMAHEADADDR:
		m->headaddr = val;
		break;
	case MRKEY_QIB_REG_SENDCTRL:
		if (!(val & MRKEY_QIB_CTRL_SDMA_ENABLE)) {
			m->cause = 0;
			m->epoch++;
		} else if (!m->len) {
			model_halt_error(m, MRKEY_QIB_ERR_RING);
		}
		m->ctrl = val & (MRKEY_QIB_CTRL_SDMA_ENABLE |
				 MRKEY_QIB_CTRL_SDMA_INTENABLE |
				 MRKEY_QIB_CTRL_SDMA_HALT);
		break;
	case MRKEY_QIB_REG_SENDDMAHEAD:
	case MRKEY_QIB_REG_SENDDMASTATUS:
		break;
	}
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

static int model_set_irq(void *ctx, mrkey_qib_irq_fn fn, void *arg)
{
	struct mrkey_qib_model *m = ctx;

	pthread_mutex_lock(&m->lock);
	m->irq = fn;
	m->irq_arg = arg;
	while (!fn && m->irq_busy)
		pthread_cond_wait(&m->irq_idle, &m->lock);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static const struct mrkey_qib_chip_ops model_chip_ops = {
	.read = model_read,
	.write = model_write,
	.set_irq = model_set_irq,
};

int mrkey_qib_model_create(const struct mrkey_qib_model_attr *attr,
			   struct mrkey_qib_model **modelp)
{
	struct mrkey_qib_model *m;
	pthread_condattr_t ca;
	int err;

	if (!modelp)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	if (attr) {
		m->wire = attr->wire;
		m->wire_ctx = attr->wire_ctx;
		m->ns_per_desc = attr->ns_per_desc;
		m->bytes_per_sec = attr->bytes_per_sec;
	}
	m->chip.ops = &model_chip_ops;
	m->chip.ctx = m;

	pthread_mutex_init(&m->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&m->irq_idle, NULL);

	err = pthread_create(&m->thread, NULL, model_engine, m);
	if (err) {
		pthread_cond_destroy(&m->irq_idle);
		pthread_cond_destroy(&m->cond);
		pthread_mutex_destroy(&m->lock);
		free(m);
		return -EAGAIN;
	}
	*modelp = m;
	return 0;
}

void mrkey_qib_model_destroy(struct mrkey_qib_model *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->stop = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	pthread_join(m->thread, NULL);
	pthread_cond_destroy(&m->irq_idle);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

const struct mrkey_qib_chip *mrkey_qib_model_chip(struct mrkey_qib_model *m)
{
	return m ? &m->chip : NULL;
}

int mrkey_qib_model_set_pace(struct mrkey_qib_model *m, uint64_t ns_per_desc,
			     uint64_t bytes_per_sec)
{
	if (!m)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	m->ns_per_desc = ns_per_desc;
	m->bytes_per_sec = bytes_per_sec;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

int mrkey_qib_model_halt(struct mrkey_qib_model *m,
			 enum mrkey_qib_halt_point at)
{
	if (!m ||
	    (at != MRKEY_QIB_HALT_FETCH && at != MRKEY_QIB_HALT_COMPLETION))
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	m->stalled = true;
	m->stall_at = at;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

int mrkey_qib_model_resume(struct mrkey_qib_model *m)
{
	if (!m)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	m->stalled = false;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

int mrkey_qib_model_stats(struct mrkey_qib_model *m,
			  struct mrkey_qib_model_stats *stats)
{
	if (!m || !stats)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	*stats = m->st;
	stats->status = model_status(m);
	pthread_mutex_unlock(&m->lock);
	return 0;
}
