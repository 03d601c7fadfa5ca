// SPDX-License-Identifier: MIT
/*
 * A qib port: its key table with the qib backend bound, its chip, its send
 * ring and the thread that plays the SDMA interrupt's bottom half.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qib_priv.h"

/*
 * qib keeps its lkey table in host memory: the chip never looks keys up,
 * the driver checks every key in software (which is what the core's slot
 * array does). So publishing and unpublishing are bookkeeping only; there
 * is no hardware entry to write or to flush.
 */
static int qib_key_publish(void *ctx, struct mrkey_mr *mr, uint32_t key)
{
	struct mrkey_qib_port *port = ctx;

	__atomic_fetch_add(&port->keys_published, 1, __ATOMIC_RELAXED);
	return 0;
}

static void qib_key_unpublish(void *ctx, struct mrkey_mr *mr, uint32_t key)
{
	struct mrkey_qib_port *port = ctx;

	__atomic_fetch_add(&port->keys_unpublished, 1, __ATOMIC_RELAXED);
}

/* mrkey_mr_dereg() drives this while it waits: reap the send ring. */
static int qib_op_progress(void *ctx)
{
	return mrkey_qib_progress(ctx);
}

static const struct mrkey_backend_ops qib_backend_ops = {
	.progress = qib_op_progress,
	.key_publish = qib_key_publish,
	.key_unpublish = qib_key_unpublish,
	.name = "qib",
};

static const struct mrkey_backend_params qib_backend_params = {
	.min_table_bits = 1,
	.max_table_bits = 23,
	.layouts = 1u << MRKEY_LAYOUT_QIB,
	.progress_interval_us = 50,
};

/* The chip's interrupt: wake the bottom half, nothing more. */
static void qib_sdma_irq(void *arg)
{
	struct mrkey_qib_port *port = arg;

	pthread_mutex_lock(&port->irq_lock);
	port->irq_pending = true;
	pthread_cond_signal(&port->irq_cond);
	pthread_mutex_unlock(&port->irq_lock);
}

static void *qib_irq_thread(void *arg)
{
	struct mrkey_qib_port *port = arg;

	pthread_mutex_lock(&port->irq_lock);
	while (!port->irq_stop) {
		if (!port->irq_pending) {
			pthread_cond_wait(&port->irq_cond, &port->irq_lock);
			continue;
		}
		port->irq_pending = false;
		pthread_mutex_unlock(&port->irq_lock);
		mrkey_qib_progress(port);
		pthread_mutex_lock(&port->irq_lock);
	}
	pthread_mutex_unlock(&port->irq_lock);
	return NULL;
}

static void qib_irq_stop(struct mrkey_qib_port *port)
{
	if (!port->irq_running)
		return;
	if (port->chip.ops->set_irq)
		port->chip.ops->set_irq(port->chip.ctx, NULL, NULL);
	pthread_mutex_lock(&port->irq_lock);
	port->irq_stop = true;
	pthread_cond_signal(&port->irq_cond);
	pthread_mutex_unlock(&port->irq_lock);
	pthread_join(port->irq_thread, NULL);
	port->irq_running = false;
}

static int qib_irq_start(struct mrkey_qib_port *port)
{
	int err;

	port->irq_stop = false;
	port->irq_pending = false;
	if (pthread_create(&port->irq_thread, NULL, qib_irq_thread, port))
		return -EAGAIN;
	port->irq_running = true;
	err = port->chip.ops->set_irq(port->chip.ctx, qib_sdma_irq, port);
	if (err) {
		qib_irq_stop(port);
		return err;
	}
	return 0;
}

static int qib_check_attr(const struct mrkey_qib_port_attr *a)
{
	const struct mrkey_qib_chip *chip = a->chip;

	if (a->lkey_table_size > 23)
		return -EINVAL;
	if (a->sdma_descq_cnt &&
	    (a->sdma_descq_cnt < 4 || a->sdma_descq_cnt > 32768 ||
	     (a->sdma_descq_cnt & (a->sdma_descq_cnt - 1))))
		return -EINVAL;
	if (a->progress != MRKEY_QIB_PROGRESS_IRQ &&
	    a->progress != MRKEY_QIB_PROGRESS_POLLED)
		return -EINVAL;
	if (chip &&
	    (!chip->ops || !chip->ops->read || !chip->ops->write ||
	     (a->progress == MRKEY_QIB_PROGRESS_IRQ && !chip->ops->set_irq)))
		return -EINVAL;
	return 0;
}

static void qib_port_free(struct mrkey_qib_port *port)
{
	mrkey__qib_sdma_fini(port);
	mrkey_qib_model_destroy(port->own_model);
	pthread_cond_destroy(&port->irq_cond);
	pthread_mutex_destroy(&port->irq_lock);
	pthread_cond_destroy(&port->room);
	pthread_mutex_destroy(&port->lock);
	free(port);
}

int mrkey_qib_port_open(const struct mrkey_qib_port_attr *attr,
			struct mrkey_qib_port **portp)
{
	static const struct mrkey_qib_port_attr defaults;
	struct mrkey_table_attr ta = { 0 };
	struct mrkey_qib_port *port;
	int err;

	if (!portp)
		return -EINVAL;
	if (!attr)
		attr = &defaults;
	err = qib_check_attr(attr);
	if (err)
		return err;

	port = aligned_alloc(QIB_CACHELINE, sizeof(*port));
	if (!port)
		return -ENOMEM;
	memset(port, 0, sizeof(*port));
	pthread_mutex_init(&port->lock, NULL);
	pthread_cond_init(&port->room, NULL);
	pthread_mutex_init(&port->irq_lock, NULL);
	pthread_cond_init(&port->irq_cond, NULL);
	port->mode = attr->progress;
	port->cnt = attr->sdma_descq_cnt ? attr->sdma_descq_cnt : 256;

	if (attr->chip) {
		port->chip = *attr->chip;
	} else {
		err = mrkey_qib_model_create(attr->model_attr,
					     &port->own_model);
		if (err)
			goto fail;
		port->chip = *mrkey_qib_model_chip(port->own_model);
	}

	err = mrkey__qib_sdma_init(port);
	if (err)
		goto fail;

	ta.table_bits = attr->lkey_table_size ? attr->lkey_table_size : 16;
	ta.keygen = attr->keygen;
	ta.layout = MRKEY_LAYOUT_QIB;
	ta.backend = &qib_backend_ops;
	ta.backend_params = &qib_backend_params;
	ta.backend_ctx = port;
	ta.report = attr->report;
	ta.report_ctx = attr->report_ctx;
	ta.seed = attr->seed;
	err = mrkey_table_create(&ta, &port->table);
	if (err)
		goto fail;

	if (port->mode == MRKEY_QIB_PROGRESS_IRQ) {
		err = qib_irq_start(port);
		if (err)
			goto fail_table;
	}
	mrkey__qib_sdma_start(port);
	*portp = port;
	return 0;

fail_table:
	mrkey_table_destroy(port->table);
fail:
	qib_port_free(port);
	return err;
}

int mrkey_qib_port_close(struct mrkey_qib_port *port)
{
	int err;

	if (!port)
		return 0;

	pthread_mutex_lock(&port->lock);
	port->closing = true;
	pthread_cond_broadcast(&port->room);
	mrkey__qib_sdma_stop(port);
	pthread_mutex_unlock(&port->lock);

	/* the engine reads no more: let go of everything the ring holds */
	mrkey__qib_sdma_abort_all(port, -ECANCELED);

	err = mrkey_table_destroy(port->table);
	if (err) {
		/* keep the port: reload the ring empty and carry on */
		pthread_mutex_lock(&port->lock);
		port->closing = false;
		mrkey__qib_sdma_start(port);
		pthread_mutex_unlock(&port->lock);
		return err;
	}

	qib_irq_stop(port);
	mrkey__qib_sdma_stop(port);
	qib_port_free(port);
	return 0;
}

struct mrkey_table *mrkey_qib_port_table(struct mrkey_qib_port *port)
{
	return port ? port->table : NULL;
}

struct mrkey_qib_model *mrkey_qib_port_model(struct mrkey_qib_port *port)
{
	return port ? port->own_model : NULL;
}
