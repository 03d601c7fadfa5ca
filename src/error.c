// SPDX-License-Identifier: MIT
#include <errno.h>

#include "internal.h"

const char *mrkey_strerror(int err)
{
	if (err > 0)
		err = -err;
	switch (err) {
	case 0:
		return "success";
	case -EINVAL:
		return "invalid argument";
	case -ENOMEM:
		return "out of memory or no free key slot";
	case -EBUSY:
		return "busy: references are still held (retry)";
	case -EEXIST:
		return "a DMA region is already registered";
	case -EPERM:
		return "protection domain mismatch or not privileged";
	case -ENOENT:
		return "key does not name a published region";
	case -ERANGE:
		return "range outside the region";
	case -EACCES:
		return "access not granted by the region";
	case -EALREADY:
		return "a deregistration of this region is in progress";
	case -EAGAIN:
		return "resource temporarily full (retry)";
	case -EIO:
		return "I/O or engine error";
	case -ESHUTDOWN:
		return "shut down";
	default:
		return "unknown error";
	}
}
