/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness shared by the fuzz targets: it drives one mrkey table
 * with registrations, deregistrations, fast registrations, memory windows
 * (alloc, bind, rebind, unbind, invalidate, dealloc) and validations
 * decoded from the fuzz input, and checks every result against a
 * reference model.
 */
#ifndef MRKEY_FUZZ_HARNESS_H
#define MRKEY_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>

/* Which call the harness favours; every mode exercises the others too. */
enum fuzz_mode {
	FUZZ_LKEY, /* mrkey_lkey_ok() */
	FUZZ_RKEY, /* mrkey_rkey_ok() */
	FUZZ_SS,   /* mrkey_ss_copy_in() / mrkey_ss_copy_out() */
	FUZZ_REQKEY, /* a requested-key table: mrkey_mr_reg_key(), mrkey_key_ok() */
};

void fuzz_run(const uint8_t *data, size_t size, enum fuzz_mode mode);

#endif /* MRKEY_FUZZ_HARNESS_H */
