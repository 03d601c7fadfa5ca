/* SPDX-License-Identifier: MIT */
/*
 * Test hooks of the core: hidden symbols, so only a program linked with
 * the static library (tests/test_split.c) can call them. Not installed.
 */
#ifndef MRKEY_TESTHOOKS_H
#define MRKEY_TESTHOOKS_H

#include <stdbool.h>
#include <stdint.h>

struct mrkey_mr;

/* Split @mr's count now, as contention would; false if it cannot. */
bool mrkey__test_split(struct mrkey_mr *mr);
/* Whether @mr's count is split. */
bool mrkey__test_is_split(const struct mrkey_mr *mr);
/*
 * Add @delta to the running CPU's shard of a split region, standing for
 * |@delta| gets (or puts) without running them all.
 */
void mrkey__test_shard_add(struct mrkey_mr *mr, int64_t delta);

#endif /* MRKEY_TESTHOOKS_H */
