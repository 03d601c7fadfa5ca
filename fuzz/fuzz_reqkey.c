// SPDX-License-Identifier: MIT
/* libFuzzer entry point: see harness.c (requested 64-bit keys). */
#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_run(data, size, FUZZ_REQKEY);
	return 0;
}
