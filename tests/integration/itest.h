/*
 * itest.h - the one runner of the integration-test binaries: a suite from a table of
 * named tests, run with CUnit's verbose basic interface. CMQ_TEST_ONLY=name[,name...]
 * runs just those tests. Returns the exit status: 0 all passed, 1 some failed, 2 CUnit
 * could not be set up.
 *
 * Header-only on purpose: the benchmarks link the other integration helpers but not CUnit.
 */
#ifndef CMQ_ITEST_H
#define CMQ_ITEST_H

#include <CUnit/Basic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct cmq_itest {
	const char *name;
	void (*fn)(void);
};

/* Whether name is one of the comma-separated names in list. */
static inline bool cmq_itest_listed(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; p != NULL && *p != '\0'; p = strchr(p, ','), p = p ? p + 1 : p) {
		if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return true;
	}
	return false;
}

static inline int cmq_itest_run(const char *suite, CU_InitializeFunc init, CU_CleanupFunc cleanup,
                                const struct cmq_itest *tests, size_t n)
{
	const char *only = getenv("CMQ_TEST_ONLY");
	unsigned failures;
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite(suite, init, cleanup);
	for (size_t i = 0; i < n; i++) {
		if (only != NULL && !cmq_itest_listed(only, tests[i].name))
			continue;
		if (s == NULL || CU_add_test(s, tests[i].name, tests[i].fn) == NULL) {
			CU_cleanup_registry();
			return 2;
		}
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_tests_failed() + CU_get_number_of_suites_failed();
	CU_cleanup_registry();
	return failures > 0 ? 1 : 0;
}

#endif
