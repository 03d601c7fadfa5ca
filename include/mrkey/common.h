/* SPDX-License-Identifier: MIT */
/**
 * @file common.h
 * @brief Definitions shared by every mrkey header: export macro, access
 *        flags, forward declarations.
 */
#ifndef MRKEY_COMMON_H
#define MRKEY_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks a declaration as part of the exported ABI of libmrkey. */
#if defined(MRKEY_STATIC_DEFINE)
#define MRKEY_EXTERN
#elif defined(__GNUC__) || defined(__clang__)
#define MRKEY_EXTERN __attribute__((visibility("default")))
#else
#define MRKEY_EXTERN
#endif

/**
 * @brief Access rights of a region, with the values of
 *        `enum ibv_access_flags`.
 *
 * A validation passes only when every requested bit is granted. Local read
 * access is always granted and has no bit.
 */
enum mrkey_access {
	MRKEY_ACCESS_LOCAL_WRITE =
		1, /**< local writes (receive, RDMA READ sink) */
	MRKEY_ACCESS_REMOTE_WRITE = 2,  /**< peers may RDMA WRITE into it */
	MRKEY_ACCESS_REMOTE_READ = 4,   /**< peers may RDMA READ from it */
	MRKEY_ACCESS_REMOTE_ATOMIC = 8, /**< peers may issue atomics to it */
};

/** Every access bit mrkey knows; any other bit is rejected with -EINVAL. */
#define MRKEY_ACCESS_ALL                                                       \
	(MRKEY_ACCESS_LOCAL_WRITE | MRKEY_ACCESS_REMOTE_WRITE |                \
	 MRKEY_ACCESS_REMOTE_READ | MRKEY_ACCESS_REMOTE_ATOMIC)

struct mrkey_table;
struct mrkey_pd;
struct mrkey_mr;

/**
 * @brief Text for an error code returned by mrkey.
 * @param[in] err a negative errno returned by an mrkey function (a positive
 *                value is taken as its negation)
 * @return a static, NUL-terminated English string; never NULL.
 *
 * Context: any thread; no locks.
 */
MRKEY_EXTERN const char *mrkey_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* MRKEY_COMMON_H */
