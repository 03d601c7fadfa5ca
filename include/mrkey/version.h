/* SPDX-License-Identifier: MIT */
/**
 * @file version.h
 * @brief Compile-time and run-time version of mrkey.
 */
#ifndef MRKEY_VERSION_H
#define MRKEY_VERSION_H

#include <mrkey/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MRKEY_VERSION_MAJOR 0 /**< incompatible ABI changes */
#define MRKEY_VERSION_MINOR 3 /**< compatible additions */
#define MRKEY_VERSION_PATCH 0 /**< fixes */

/** The version as one number, `major << 16 | minor << 8 | patch`. */
#define MRKEY_VERSION_HEX                                                      \
	((MRKEY_VERSION_MAJOR << 16) | (MRKEY_VERSION_MINOR << 8) |            \
	 MRKEY_VERSION_PATCH)

/**
 * @brief Version of the library actually loaded.
 * @return `MRKEY_VERSION_HEX` of the library the program runs against, to
 *         compare with the one it was compiled against.
 *
 * Context: any thread.
 */
MRKEY_EXTERN unsigned int mrkey_version(void);

/**
 * @brief Version of the loaded library as a string, "major.minor.patch".
 * @return a static string; never NULL.
 *
 * Context: any thread.
 */
MRKEY_EXTERN const char *mrkey_version_string(void);

#ifdef __cplusplus
}
#endif

#endif /* MRKEY_VERSION_H */
