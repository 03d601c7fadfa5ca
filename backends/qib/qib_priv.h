/* SPDX-License-Identifier: MIT */
/*
 * Internal declarations of the qib backend. Not installed.
 */
#ifndef MRKEY_QIB_PRIV_H
#define MRKEY_QIB_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <mrkey/qib.h>

/* The ring and the head write-back live in little-endian host memory. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define qib_cpu_to_le64(x) __builtin_bswap64(x)
#define qib_le64_to_cpu(x) __builtin_bswap64(x)
#else
#define qib_cpu_to_le64(x) ((uint64_t)(x))
#define qib_le64_to_cpu(x) ((uint64_t)(x))
#endif

#define QIB_CACHELINE 64

/* One request in the ring. */
struct qib_req {
	struct qib_req *next;
	uint64_t last_seq; /* descriptors added once it is complete */
	unsigned int ndesc;
	unsigned int nrefs; /* isges whose references it holds */
	struct mrkey_sge_state ss;
	struct mrkey_isge *isges;
	void *bounce;
	mrkey_qib_done_fn done;
	void *arg;
	uint32_t hdr_dwords;
	uint32_t hdr[MRKEY_QIB_MAX_HDR / 4];
};

/* A contiguous piece of memory the request sends. */
struct qib_piece {
	uintptr_t addr;
	uint32_t dwords;
};

struct mrkey_qib_port {
	/* read-mostly */
	struct mrkey_table *table;
	struct mrkey_qib_chip chip;
	struct mrkey_qib_model *own_model;
	enum mrkey_qib_progress_mode mode;
	unsigned int cnt;   /* ring size, power of two */
	uint64_t *ring;     /* cnt * 2 qwords */
	uint64_t *head_dma; /* own cache line */

	/* ring state, under lock */
	pthread_mutex_t lock __attribute__((aligned(QIB_CACHELINE)));
	pthread_cond_t room;          /* descriptors were freed */
	unsigned int tail;            /* next descriptor to write */
	unsigned int head;            /* next descriptor to retire */
	unsigned int generation;      /* of the descriptor at tail */
	uint64_t added;               /* descriptors ever written */
	uint64_t removed;             /* descriptors ever retired */
	struct qib_req *first, *last; /* in the ring, in order */
	unsigned int waiters;         /* posts waiting for room */
	bool closing;
	struct mrkey_qib_port_stats st;

	/* interrupt-like progress thread */
	pthread_mutex_t irq_lock;
	pthread_cond_t irq_cond;
	bool irq_pending;
	bool irq_stop;
	bool irq_running;
	pthread_t irq_thread;

	/* written by key_publish/unpublish under the table's lock */
	uint64_t keys_published;
	uint64_t keys_unpublished;
};

/* sdma.c */
int mrkey__qib_sdma_init(struct mrkey_qib_port *port);
int mrkey__qib_sdma_start(struct mrkey_qib_port *port);
void mrkey__qib_sdma_stop(struct mrkey_qib_port *port);
void mrkey__qib_sdma_abort_all(struct mrkey_qib_port *port, int status);
void mrkey__qib_sdma_fini(struct mrkey_qib_port *port);

#endif /* MRKEY_QIB_PRIV_H */
