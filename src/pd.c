// SPDX-License-Identifier: MIT
#include <errno.h>
#include <string.h>

#include "internal.h"

int mrkey_pd_alloc(struct mrkey_table *table, unsigned int flags,
		   struct mrkey_pd **pdp)
{
	struct mrkey_pd *pd;

	if (!table || !pdp || (flags & ~MRKEY_PD_PRIVILEGED))
		return -EINVAL;
	pd = mrkey__alloc(table, sizeof(*pd));
	if (!pd)
		return -ENOMEM;
	memset(pd, 0, sizeof(*pd));
	pd->table = table;
	pd->flags = flags;

	pthread_mutex_lock(&table->lock);
	table->npd++;
	pthread_mutex_unlock(&table->lock);
	*pdp = pd;
	return 0;
}

int mrkey_pd_free(struct mrkey_pd *pd)
{
	struct mrkey_table *t;

	if (!pd)
		return -EINVAL;
	t = pd->table;
	/*
	 * In tables whose async deregistrations finish after a grace period,
	 * let queued ones finish before calling the PD busy.
	 */
	if (atomic_load_explicit(&pd->nmr, memory_order_acquire) &&
	    (t->pc_base || (t->flags & MRKEY_TABLE_NOREF)))
		mrkey_reclaim_wait();
	/*
	 * Registration counts a region in under the writer lock, so a region
	 * being registered in this PD is either counted here or fails.
	 */
	pthread_mutex_lock(&t->lock);
	if (atomic_load_explicit(&pd->nmr, memory_order_acquire)) {
		pthread_mutex_unlock(&t->lock);
		return -EBUSY;
	}
	t->npd--;
	pthread_mutex_unlock(&t->lock);
	mrkey__free(t, pd, sizeof(*pd));
	return 0;
}

unsigned int mrkey_pd_flags(const struct mrkey_pd *pd)
{
	return pd ? pd->flags : 0;
}
