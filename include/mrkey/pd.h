/* SPDX-License-Identifier: MIT */
/**
 * @file pd.h
 * @brief Protection domains: a key validates only for the PD its region
 *        was registered in.
 */
#ifndef MRKEY_PD_H
#define MRKEY_PD_H

#include <mrkey/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The PD may use key 0, the DMA region (a kernel ULP's PD in qib). */
#define MRKEY_PD_PRIVILEGED 1u

/**
 * @brief Allocate a protection domain.
 * @param[in] table the table the PD belongs to
 * @param[in] flags 0 or MRKEY_PD_PRIVILEGED
 * @param[out] pdp the new PD
 * @return 0, -EINVAL (NULL argument, unknown flag bit), or -ENOMEM.
 *
 * Context: any thread; takes the table's writer lock.
 */
MRKEY_EXTERN int mrkey_pd_alloc(struct mrkey_table *table, unsigned int flags,
				struct mrkey_pd **pdp);

/**
 * @brief Free a protection domain.
 * @param[in] pd the PD
 * @return 0, -EINVAL (NULL), or -EBUSY (a region of this PD still exists,
 *         including one left unpublished by an -EBUSY deregistration; the
 *         PD is kept).
 *
 * The caller must not validate keys against @p pd during or after the call.
 * In MRKEY_REFCOUNT_PERCPU and MRKEY_TABLE_NOREF tables, where an async
 * deregistration finishes after a grace period, a PD with regions first
 * waits for queued deregistrations (mrkey_reclaim_wait()).
 *
 * Context: any thread; takes the table's writer lock; in PERCPU or NOREF
 * tables not inside an RCU read-side section or an mrkey callback.
 */
MRKEY_EXTERN int mrkey_pd_free(struct mrkey_pd *pd);

/**
 * @brief Flags the PD was allocated with.
 * @param[in] pd the PD
 * @return its flags, or 0 for NULL.
 *
 * Context: any thread.
 */
MRKEY_EXTERN unsigned int mrkey_pd_flags(const struct mrkey_pd *pd);

#ifdef __cplusplus
}
#endif

#endif /* MRKEY_PD_H */
