/* SPDX-License-Identifier: MIT */
/**
 * @file backend.h
 * @brief The backend ops table: what a piece of hardware (or a model of
 *        it) provides to mrkey. The core assumes no hardware.
 *
 * A backend fills a `static const struct mrkey_backend_ops` with designated
 * initializers and passes it, with its limits in a `struct
 * mrkey_backend_params` and a context pointer, in `struct mrkey_table_attr`.
 * mrkey_table_create() checks the REQUIRED members and rejects an
 * incomplete table with -EINVAL.
 *
 * None of the ops is called from validation (mrkey_lkey_ok(),
 * mrkey_rkey_ok()): the lookup hot path is the core's alone.
 */
#ifndef MRKEY_BACKEND_H
#define MRKEY_BACKEND_H

#include <mrkey/common.h>

struct mrkey_mw;
struct mrkey_mw_bind_attr;

#ifdef __cplusplus
extern "C" {
#endif

/** Operations a backend provides. Hot-path members first. */
struct mrkey_backend_ops {
	/**
	 * OPTIONAL. Reap completed work (an SDMA ring's finished
	 * descriptors), dropping the region references it held. Returns the
	 * number of items retired (>= 0) or a negative errno.
	 *
	 * mrkey_mr_dereg() calls it repeatedly while it waits, for drivers
	 * with no interrupt thread to reap their ring. Context: any thread
	 * that calls mrkey_mr_dereg(), no mrkey lock held, possibly several
	 * threads at once: the backend serialises it itself. It may call
	 * mrkey_mr_put() and mrkey_ss_put().
	 */
	int (*progress)(void *ctx);

	/**
	 * REQUIRED. Publish @p key for @p mr in hardware (write the HCA's key
	 * table entry). A negative errno fails the registration, which then
	 * changes nothing. Context: the table's writer lock is held; must not
	 * call back into the table's writer functions.
	 */
	int (*key_publish)(void *ctx, struct mrkey_mr *mr, uint32_t key);

	/**
	 * REQUIRED. Unpublish @p key: after it returns the hardware resolves
	 * it no more. Cannot fail. Context: as key_publish; called in the
	 * same critical section that unpublishes the key in software.
	 */
	void (*key_unpublish)(void *ctx, struct mrkey_mr *mr, uint32_t key);

	/**
	 * OPTIONAL. The region has drained and is about to be freed: release
	 * what key_publish attached to it. Context: the thread that dropped
	 * the last reference or the deregistering thread; no mrkey lock.
	 */
	void (*mr_release)(void *ctx, struct mrkey_mr *mr);

	/**
	 * OPTIONAL. Called once by mrkey_table_create() after the table is
	 * built; a negative errno fails the creation. Context: no lock.
	 */
	int (*bind)(void *ctx, struct mrkey_table *table);

	/**
	 * OPTIONAL. Called once by a successful mrkey_table_destroy(), before
	 * the table is freed. Context: no lock.
	 */
	void (*unbind)(void *ctx, struct mrkey_table *table);

	/** REQUIRED. Short name, for messages ("qib"). */
	const char *name;

	/*
	 * Since 0.3: the window members. The library reads them only in
	 * tables created through mrkey_table_create@@MRKEY_0.3 (a backend
	 * built against an older header passes the shorter table).
	 */

	/**
	 * REQUIRED for windows (without it, and mw_unpublish,
	 * mrkey_mw_alloc() in the table is -EOPNOTSUPP); OPTIONAL otherwise.
	 * Publish window key @p key for @p mw, bound as @p bind says (its
	 * `mr`, `addr`, `length`, `access`, and `qpn` for type 2). A negative
	 * errno fails the bind, which then changes nothing. On a type 1
	 * rebind the new key is published before the old one is unpublished.
	 * Context: as key_publish (the writer lock is held).
	 */
	int (*mw_publish)(void *ctx, struct mrkey_mw *mw, uint32_t key,
			  const struct mrkey_mw_bind_attr *bind);

	/**
	 * REQUIRED for windows, with mw_publish. Unpublish window key
	 * @p key (unbind, rebind, invalidation, dealloc): after it returns
	 * the hardware resolves it no more. Cannot fail. Context: as
	 * key_unpublish.
	 */
	void (*mw_unpublish)(void *ctx, struct mrkey_mw *mw, uint32_t key);
};

/** A backend's limits. Zero in any member means "no limit of its own". */
struct mrkey_backend_params {
	/** Smallest `table_bits` the hardware's key table supports. */
	unsigned int min_table_bits;
	/** Largest `table_bits` the hardware's key table supports. */
	unsigned int max_table_bits;
	/**
	 * Bitmask of supported layouts, bit `1 << MRKEY_LAYOUT_*`; 0 = all.
	 */
	unsigned int layouts;
	/** Largest region, in bytes. */
	uint64_t max_mr_size;
	/** Most segments in one region. */
	size_t max_segs;
	/**
	 * How often mrkey_mr_dereg() calls `progress` while it waits, in
	 * microseconds; 0 = 100. The wait still ends at once when the last
	 * reference goes.
	 */
	unsigned int progress_interval_us;
};

#ifdef __cplusplus
}
#endif

#endif /* MRKEY_BACKEND_H */
