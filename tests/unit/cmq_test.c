/*
 * cmq_test.c - see cmq_test.h.
 */
#include "cmq_test.h"

#include "alloc.h"
#include "error.h"
#include "policy.h"

#include <CUnit/Basic.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static long live;
static long fail_at = -1;
static bool fired;

/* Counts live blocks; realloc(NULL, n) counts as a new block. */
static void *count_malloc(size_t size)
{
	if (fail_at == 0) {
		fail_at = -1;
		fired = true;
		return NULL;
	}
	if (fail_at > 0)
		fail_at--;
	void *p = malloc(size);
	if (p != NULL)
		live++;
	return p;
}

static void *count_realloc(void *ptr, size_t size)
{
	if (fail_at == 0) {
		fail_at = -1;
		fired = true;
		return NULL;
	}
	if (fail_at > 0)
		fail_at--;
	void *p = realloc(ptr, size);
	if (p != NULL && ptr == NULL)
		live++;
	return p;
}

static void count_free(void *ptr)
{
	if (ptr != NULL)
		live--;
	free(ptr);
}

void cmq_test_alloc_install(void)
{
	static const struct cmq_allocator a = {count_malloc, count_realloc, count_free};

	cmq_set_allocator(&a);
}

void cmq_test_fail_after(long n)
{
	fail_at = n;
	fired = false;
}

long cmq_test_live_allocations(void)
{
	return live;
}

bool cmq_test_failure_fired(void)
{
	return fired;
}

const char *cmq_test_data(const char *name)
{
	static char buf[4096];
	const char *dir = getenv("CMQ_TEST_DATA");

	snprintf(buf, sizeof(buf), "%s/%s", dir ? dir : "tests/unit/data", name);
	return buf;
}

static char tmpdir[4096];

static void remove_tmpdir(void)
{
	char cmd[4200];

	if (tmpdir[0] != '\0' && getenv("CMQ_KEEP_TMP") == NULL) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "warning: could not remove %s\n", tmpdir);
	}
}

const char *cmq_test_tmpdir(void)
{
	if (tmpdir[0] == '\0') {
		const char *base = getenv("TMPDIR");

		snprintf(tmpdir, sizeof(tmpdir), "%s/cmq-unit-XXXXXX", base ? base : "/tmp");
		if (mkdtemp(tmpdir) == NULL) {
			perror("mkdtemp");
			exit(2);
		}
		atexit(remove_tmpdir);
	}
	return tmpdir;
}

const char *cmq_test_write_file(const char *name, const char *text)
{
	static char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", cmq_test_tmpdir(), name);
	f = fopen(path, "w");
	if (f == NULL) {
		perror(path);
		exit(2);
	}
	fputs(text, f);
	fclose(f);
	return path;
}

char *cmq_test_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (len != NULL)
		*len = 0;
	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		if (buf != NULL) {
			buf[n] = '\0';
			if (len != NULL)
				*len = (size_t)n;
		}
	}
	fclose(f);
	return buf;
}

int cmq_test_run(const char *suite_name, const struct cmq_test_case *cases)
{
	CU_pSuite suite;
	unsigned failures;

	cmq_test_alloc_install();
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	suite = CU_add_suite(suite_name, NULL, NULL);
	if (suite == NULL)
		return 2;
	for (const struct cmq_test_case *c = cases; c->name != NULL; c++) {
		if (CU_add_test(suite, c->name, c->fn) == NULL)
			return 2;
	}
	CU_basic_set_mode(CU_BRM_NORMAL);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	if (CU_get_error() != CUE_SUCCESS)
		failures++;
	CU_cleanup_registry();
	return failures > 255 ? 255 : (int)failures;
}

struct cmq_policy *cmq_test_load_clean(const struct cmq_policy_files *files, bool warnings_ok)
{
	struct cmq_policy *p = NULL;
	struct cmq_diag diag;
	int rc;

	cmq_diag_init(&diag);
	rc = cmq_policy_load(files, &diag, &p);
	for (size_t i = 0; i < diag.n; i++)
		fprintf(stderr, "\n  policy: %s", diag.entries[i].text);
	CU_ASSERT_EQUAL(rc, CMQ_OK);
	CU_ASSERT_EQUAL(diag.errors, 0);
	if (!warnings_ok)
		CU_ASSERT_EQUAL(diag.warnings, 0);
	cmq_diag_cleanup(&diag);
	return p;
}

void cmq_test_add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ext);
	CU_ASSERT_FATAL(X509_add_ext(cert, ext, -1) == 1);
	X509_EXTENSION_free(ext);
}
