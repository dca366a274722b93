/*
 * cmq_test.h - helpers shared by the CUnit unit-test binaries.
 *
 * - A counting, fault-injecting allocator bound through cmq_set_allocator():
 *   cmq_test_fail_after(n) makes the n-th following allocation (0-based) fail,
 *   cmq_test_live_allocations() tells whether everything was freed. Used for
 *   out-of-memory sweeps: for n = 0, 1, ... until the call succeeds, assert a
 *   clean error and no leak.
 * - cmq_test_run(): registers one suite from a NULL-terminated table and runs
 *   it with the basic interface; the process exit code is the failure count.
 * - Paths: cmq_test_data(name) resolves tests/unit/data/<name> (env CMQ_TEST_DATA);
 *   cmq_test_tmpdir() makes a fresh temp directory for the run.
 */
#ifndef CMQ_TEST_H
#define CMQ_TEST_H

#include <CUnit/CUnit.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>

struct cmq_policy;
struct cmq_policy_files;

struct cmq_test_case {
	const char *name;
	void (*fn)(void);
};

/* Run all cases as one suite; returns the number of failures (use as exit code). */
int cmq_test_run(const char *suite, const struct cmq_test_case *cases);

/* Install the counting allocator (done by cmq_test_run before any case). */
void cmq_test_alloc_install(void);
/* Fail the n-th allocation from now (0 = the very next); -1 disables. */
void cmq_test_fail_after(long n);
/* Allocations made through the hooks and not yet freed. */
long cmq_test_live_allocations(void);
/* Whether the injected failure has fired since the last cmq_test_fail_after(). */
bool cmq_test_failure_fired(void);

/* Path of a data file under tests/unit/data; static buffer, valid until next call. */
const char *cmq_test_data(const char *name);
/* A fresh directory under $TMPDIR, removed at exit; static, valid for the run. */
const char *cmq_test_tmpdir(void);
/* Write text to dir/name; returns the full path in a static buffer (valid until next call). */
const char *cmq_test_write_file(const char *name, const char *text);
/* The whole file (NUL-terminated, malloc'ed; *len its length, len may be NULL), or NULL if it
 * cannot be read. */
char *cmq_test_read_file(const char *path, size_t *len);

/*
 * Load a policy that must load: prints every diagnostic, asserts CMQ_OK, no errors and
 * (unless warnings_ok) no warnings. Returns the policy, or NULL after a failed assertion.
 */
struct cmq_policy *cmq_test_load_clean(const struct cmq_policy_files *files, bool warnings_ok);

/* Add an X.509v3 extension (nid and value as in openssl.cnf) to cert; asserts success. */
void cmq_test_add_ext(X509 *cert, X509 *issuer, int nid, const char *value);

#endif
