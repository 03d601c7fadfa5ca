/* SPDX-License-Identifier: MIT */
/*
 * Every public header compiles alone, as C11 and as C++11: the generated
 * translation units in the build tree (see CMakeLists.txt) do the real work
 * by existing; this suite checks they were all built and linked, and checks
 * the few layout facts the API promises (struct ibv_sge, access values).
 */
#include <stddef.h>
#include <string.h>

#include "testutil.h"

struct hdr_entry {
	const char *name;
	int (*c)(void);
	int (*cxx)(void);
};

#include "hdr_list.h"

START_TEST(header_alone)
{
	const struct hdr_entry *e = &hdr_list[_i];

	ck_assert_msg(e->c() == 1, "%s as C", e->name);
#if MRKEY_TEST_HEADERS_CXX
	ck_assert_msg(e->cxx() == 1, "%s as C++", e->name);
#endif
}
END_TEST

START_TEST(core_headers_listed)
{
	static const char *const core[] = { "backend.h", "common.h", "mr.h",
					    "mrkey.h",   "mw.h",     "pd.h",
					    "sge.h",     "table.h",  "version.h" };
	size_t i, j;

	for (i = 0; i < TU_ARRAY_SIZE(core); i++) {
		int found = 0;

		for (j = 0; j < MRKEY_TEST_NHEADERS; j++)
			found |= !strcmp(hdr_list[j].name, core[i]);
		ck_assert_msg(found, "%s not tested", core[i]);
	}
}
END_TEST

START_TEST(abi_layout)
{
	/* struct mrkey_sge has the layout of struct ibv_sge. */
	ck_assert_uint_eq(sizeof(struct mrkey_sge), 16);
	ck_assert_uint_eq(offsetof(struct mrkey_sge, addr), 0);
	ck_assert_uint_eq(offsetof(struct mrkey_sge, length), 8);
	ck_assert_uint_eq(offsetof(struct mrkey_sge, lkey), 12);
	/* enum ibv_access_flags values. */
	ck_assert_int_eq(MRKEY_ACCESS_LOCAL_WRITE, 1);
	ck_assert_int_eq(MRKEY_ACCESS_REMOTE_WRITE, 2);
	ck_assert_int_eq(MRKEY_ACCESS_REMOTE_READ, 4);
	ck_assert_int_eq(MRKEY_ACCESS_REMOTE_ATOMIC, 8);
	ck_assert_int_eq(MRKEY_ACCESS_ALL, 15);
	ck_assert_int_eq(MRKEY_KEYGEN_RANDOM, 0);
	ck_assert_int_eq(MRKEY_LAYOUT_QIB, 0);
	ck_assert_int_eq(MRKEY_REFCOUNT_ATOMIC, 0);
	ck_assert_uint_eq(sizeof(((struct mrkey_seg *)0)->length),
			  sizeof(size_t));
}
END_TEST

static Suite *headers_suite(void)
{
	Suite *s = suite_create("headers");
	TCase *tc = tu_tcase("headers");

	tcase_add_loop_test(tc, header_alone, 0, MRKEY_TEST_NHEADERS);
	tcase_add_test(tc, core_headers_listed);
	tcase_add_test(tc, abi_layout);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(headers_suite());
}
