/* SPDX-License-Identifier: MIT */
/**
 * @file mrkey.h
 * @brief Umbrella header: everything of mrkey's core public API.
 *
 * Every function that can fail returns 0 or a negative errno; objects come
 * back through out-parameters. A zeroed attribute struct, or a NULL
 * attribute pointer, means "all defaults".
 */
#ifndef MRKEY_MRKEY_H
#define MRKEY_MRKEY_H

#include <mrkey/common.h>
#include <mrkey/version.h>
#include <mrkey/table.h>
#include <mrkey/pd.h>
#include <mrkey/mr.h>
#include <mrkey/sge.h>
#include <mrkey/mw.h>
#include <mrkey/backend.h>

#endif /* MRKEY_MRKEY_H */
