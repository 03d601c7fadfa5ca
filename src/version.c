// SPDX-License-Identifier: MIT
#include "internal.h"

#define MRKEY__STR2(x) #x
#define MRKEY__STR(x) MRKEY__STR2(x)

unsigned int mrkey_version(void)
{
	return MRKEY_VERSION_HEX;
}

const char *mrkey_version_string(void)
{
	return MRKEY__STR(MRKEY_VERSION_MAJOR) "." MRKEY__STR(
		MRKEY_VERSION_MINOR) "." MRKEY__STR(MRKEY_VERSION_PATCH);
}
