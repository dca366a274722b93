/*
 * test_pseudo.c - core/pseudo: known answers computed independently with the openssl
 * command line, stability within an epoch, unlinkability across epochs and domains,
 * the key file's checks (each with its diagnostic), and an out-of-memory sweep.
 */
#include "cmq_test.h"

#include "error.h"
#include "pseudo.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* The master key of the known answers: bytes 00 01 02 ... 1f. */
#define MASTER_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

static const uint8_t master[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                   16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};

/*
 * Computed with OpenSSL 3.0's command line, not with this code:
 *   M=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
 *   K=$(printf 'civicmq-pseudonym-epoch/20420' |
 *       openssl dgst -sha256 -mac HMAC -macopt hexkey:$M | awk '{print $NF}')
 *     -> a9bbe985f62a569a495e8aa0ef819d15abeadb1c590059a83553590ef3614093
 *   printf 'parking/observedVehicle.licensePlate\0AB-123-CD' |
 *       openssl dgst -sha256 -mac HMAC -macopt hexkey:$K
 *     -> c5c4f5381a76f758d10c570013528cef19a8440f4d38a021088c2ae9c8ffe89a
 * and the same for the other rows (epoch 20421: K = 3bd1e633...; epoch 0:
 * K = 94e4f934..., message "\0"; hourly epoch 490092). A pseudonym is the first 32
 * hex digits.
 */
static const struct kat {
	uint32_t epoch_seconds;
	int64_t now;
	const char *domain;
	const char *value;
	const char *expect;
} kats[] = {
    {86400, 1764331200, "parking/observedVehicle.licensePlate", "AB-123-CD",
     "c5c4f5381a76f758d10c570013528cef"},
    {86400, 1764288000, "parking/observedVehicle.licensePlate", "AB-123-CD",
     "c5c4f5381a76f758d10c570013528cef"}, /* first second of epoch 20420 */
    {86400, 1764374399, "parking/observedVehicle.licensePlate", "AB-123-CD",
     "c5c4f5381a76f758d10c570013528cef"}, /* last second of epoch 20420 */
    {86400, 1764374400, "parking/observedVehicle.licensePlate", "AB-123-CD",
     "b60997f9cfc55fb51d784fedf30745db"}, /* epoch 20421 */
    {86400, 0, "", "", "8d50f5422af22e5c50df87f7f439f7bf"},
    {86400, -5, "", "", "8d50f5422af22e5c50df87f7f439f7bf"}, /* before 1970: epoch 0 */
    {3600, 1764331200, "wifi/mac", "aa:bb:cc:dd:ee:ff", "5df1a1d8f4bb009fa8e50ec73ab7c06e"},
};

static void compute(struct cmq_pseudo *ps, int64_t now, const char *d, const char *v,
                    char out[CMQ_PSEUDO_HEX + 1])
{
	CU_ASSERT_EQUAL_FATAL(cmq_pseudo_compute(ps, now, d, strlen(d), v, strlen(v), out), CMQ_OK);
}

static void TEST_known_answers(void)
{
	long before = cmq_test_live_allocations();

	for (size_t i = 0; i < sizeof(kats) / sizeof(kats[0]); i++) {
		struct cmq_pseudo *ps = NULL;
		char out[CMQ_PSEUDO_HEX + 1];

		CU_ASSERT_EQUAL_FATAL(cmq_pseudo_new(master, kats[i].epoch_seconds, &ps), CMQ_OK);
		compute(ps, kats[i].now, kats[i].domain, kats[i].value, out);
		if (strcmp(out, kats[i].expect) != 0)
			fprintf(stderr, "\n  row %zu: got %s, want %s\n", i, out, kats[i].expect);
		CU_ASSERT_STRING_EQUAL(out, kats[i].expect);
		CU_ASSERT_EQUAL(strlen(out), CMQ_PSEUDO_HEX);
		/* The cached context gives the same answer the second time. */
		compute(ps, kats[i].now, kats[i].domain, kats[i].value, out);
		CU_ASSERT_STRING_EQUAL(out, kats[i].expect);
		cmq_pseudo_free(ps);
	}
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
}

/* One context serves many epochs in any order: every row again, interleaved. */
static void TEST_epoch_switches_in_any_order(void)
{
	struct cmq_pseudo *ps = NULL;
	char out[CMQ_PSEUDO_HEX + 1];

	CU_ASSERT_EQUAL_FATAL(cmq_pseudo_new(master, 86400, &ps), CMQ_OK);
	for (int round = 0; round < 3; round++) {
		for (size_t i = 0; i < sizeof(kats) / sizeof(kats[0]); i++) {
			if (kats[i].epoch_seconds != 86400)
				continue;
			compute(ps, kats[i].now, kats[i].domain, kats[i].value, out);
			CU_ASSERT_STRING_EQUAL(out, kats[i].expect);
		}
	}
	cmq_pseudo_free(ps);
}

static void TEST_stable_within_epoch(void)
{
	struct cmq_pseudo *ps = NULL;
	char first[CMQ_PSEUDO_HEX + 1], out[CMQ_PSEUDO_HEX + 1];
	const int64_t start = 1764288000; /* epoch 20420 */

	CU_ASSERT_EQUAL_FATAL(cmq_pseudo_new(master, 86400, &ps), CMQ_OK);
	compute(ps, start, "d", "device-17", first);
	for (int64_t t = start; t < start + 86400; t += 997) {
		compute(ps, t, "d", "device-17", out);
		CU_ASSERT_STRING_EQUAL(out, first);
		/* Other values in between do not disturb the cached epoch. */
		compute(ps, t, "d", "device-18", out);
		CU_ASSERT_STRING_NOT_EQUAL(out, first);
	}
	compute(ps, start + 86399, "d", "device-17", out);
	CU_ASSERT_STRING_EQUAL(out, first);
	compute(ps, start + 86400, "d", "device-17", out);
	CU_ASSERT_STRING_NOT_EQUAL(out, first);
	compute(ps, start - 1, "d", "device-17", out);
	CU_ASSERT_STRING_NOT_EQUAL(out, first);
	CU_ASSERT_EQUAL(cmq_pseudo_epoch(ps, start), 20420);
	CU_ASSERT_EQUAL(cmq_pseudo_epoch(ps, start - 1), 20419);
	CU_ASSERT_EQUAL(cmq_pseudo_epoch(ps, 0), 0);
	CU_ASSERT_EQUAL(cmq_pseudo_epoch(ps, -86400 * 3), 0);
	CU_ASSERT_EQUAL(cmq_pseudo_epoch_seconds(ps), 86400);
	cmq_pseudo_free(ps);
}

static void TEST_differs_across_epochs_domains_and_keys(void)
{
	struct cmq_pseudo *ps = NULL, *other = NULL;
	uint8_t key2[32];
	char a[CMQ_PSEUDO_HEX + 1], b[CMQ_PSEUDO_HEX + 1];
	const int64_t now = 1764331200;

	memcpy(key2, master, 32);
	key2[31] ^= 1;
	CU_ASSERT_EQUAL_FATAL(cmq_pseudo_new(master, 86400, &ps), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(cmq_pseudo_new(key2, 86400, &other), CMQ_OK);

	/* 100 consecutive epochs: all different. */
	{
		static char seen[100][CMQ_PSEUDO_HEX + 1];

		for (int e = 0; e < 100; e++) {
			compute(ps, now + (int64_t)e * 86400, "d", "AB-123-CD", seen[e]);
			for (int j = 0; j < e; j++)
				CU_ASSERT_STRING_NOT_EQUAL(seen[j], seen[e]);
		}
	}
	/* Domains separate flows; the 0x00 separator keeps ("ab","c") apart from ("a","bc"). */
	compute(ps, now, "parking/plate", "AB-123-CD", a);
	compute(ps, now, "tolls/plate", "AB-123-CD", b);
	CU_ASSERT_STRING_NOT_EQUAL(a, b);
	compute(ps, now, "ab", "c", a);
	compute(ps, now, "a", "bc", b);
	CU_ASSERT_STRING_NOT_EQUAL(a, b);
	/* Another master key: another pseudonym. */
	compute(ps, now, "d", "v", a);
	compute(other, now, "d", "v", b);
	CU_ASSERT_STRING_NOT_EQUAL(a, b);
	/* Values are byte strings: an embedded NUL counts. */
	CU_ASSERT_EQUAL(cmq_pseudo_compute(ps, now, "d", 1, "v\0w", 3, a), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_pseudo_compute(ps, now, "d", 1, "v\0x", 3, b), CMQ_OK);
	CU_ASSERT_STRING_NOT_EQUAL(a, b);
	/* Output is lowercase hex. */
	for (size_t i = 0; i < CMQ_PSEUDO_HEX; i++)
		CU_ASSERT(strchr("0123456789abcdef", a[i]) != NULL);
	cmq_pseudo_free(ps);
	cmq_pseudo_free(other);
}

static void TEST_bad_arguments(void)
{
	struct cmq_pseudo *ps = (struct cmq_pseudo *)1;
	char out[CMQ_PSEUDO_HEX + 1] = "x";
	struct cmq_diag diag;

	CU_ASSERT_EQUAL(cmq_pseudo_new(master, 0, &ps), CMQ_ERR_INVAL);
	CU_ASSERT_PTR_NULL(ps);
	CU_ASSERT_EQUAL(cmq_pseudo_new(NULL, 60, &ps), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(cmq_pseudo_compute(NULL, 0, "d", 1, "v", 1, out), CMQ_ERR_INVAL);
	CU_ASSERT_STRING_EQUAL(out, "");
	cmq_diag_init(&diag);
	ps = (struct cmq_pseudo *)1;
	CU_ASSERT_EQUAL(cmq_pseudo_load(cmq_test_write_file("k0", MASTER_HEX), 0, &diag, &ps),
	                CMQ_ERR_INVAL);
	CU_ASSERT_PTR_NULL(ps);
	CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&diag, "valid: 1 or more"));
	cmq_diag_cleanup(&diag);
	cmq_pseudo_free(NULL);
}

static const char *key_file(const char *name, const char *text, mode_t mode)
{
	const char *path = cmq_test_write_file(name, text);

	CU_ASSERT_FATAL(chmod(path, mode) == 0);
	return path;
}

/* A good key file, with whitespace around and upper-case digits, equals the secret. */
static void TEST_key_file_loads(void)
{
	struct cmq_pseudo *ps = NULL;
	struct cmq_diag diag;
	char out[CMQ_PSEUDO_HEX + 1];
	static const char *const texts[] = {
	    MASTER_HEX,
	    MASTER_HEX "\n",
	    "  \n\t" MASTER_HEX "\r\n\n",
	    "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F\n",
	};
	static const mode_t modes[] = {0600, 0400, 0700};

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
			char name[32];

			/* A fresh name each time: a 0400 file cannot be rewritten unless root. */
			snprintf(name, sizeof(name), "good-%zu-%zu.key", i, m);
			cmq_diag_init(&diag);
			CU_ASSERT_EQUAL(
			    cmq_pseudo_load(key_file(name, texts[i], modes[m]), 86400, &diag, &ps),
			    CMQ_OK);
			CU_ASSERT_EQUAL(diag.errors + diag.warnings, 0);
			CU_ASSERT_PTR_NOT_NULL_FATAL(ps);
			compute(ps, kats[0].now, kats[0].domain, kats[0].value, out);
			CU_ASSERT_STRING_EQUAL(out, kats[0].expect);
			cmq_pseudo_free(ps);
			ps = NULL;
			cmq_diag_cleanup(&diag);
		}
	}
}

static const struct bad_key {
	const char *name;
	const char *text; /* NULL: do not create the file */
	mode_t mode;
	int rc;
	const char *needle[2];
} bad_keys[] = {
    {"missing.key", NULL, 0600, CMQ_ERR_IO, {"cannot open", "No such file"}},
    {"world.key", MASTER_HEX "\n", 0644, CMQ_ERR_CONFIG, {"mode 0644", "chmod 600"}},
    {"group.key", MASTER_HEX "\n", 0640, CMQ_ERR_CONFIG, {"mode 0640", "group or others"}},
    {"other.key", MASTER_HEX "\n", 0604, CMQ_ERR_CONFIG, {"mode 0604", "chmod 600"}},
    {"short.key",
     "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e\n",
     0600,
     CMQ_ERR_CONFIG,
     {"holds 62 hex digits (248 bits)", "exactly 64 hex digits"}},
    {"long.key", MASTER_HEX "00\n", 0600, CMQ_ERR_CONFIG, {"holds 66 hex digits", "64 hex"}},
    {"empty.key", "\n", 0600, CMQ_ERR_CONFIG, {"holds 0 hex digits", "openssl rand -hex 32"}},
    {"nonhex.key",
     "0001g2030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     0600,
     CMQ_ERR_CONFIG,
     {"character 5 is not a hex digit", "64 hex digits"}},
    {"inner-space.key",
     "00010203 0405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     0600,
     CMQ_ERR_CONFIG,
     {"character 9 is not a hex digit", NULL}},
    {"colons.key", "00:01:02:03", 0600, CMQ_ERR_CONFIG, {"character 3 is not a hex digit", NULL}},
};

static void TEST_key_file_errors(void)
{
	long before = cmq_test_live_allocations();

	for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
		const struct bad_key *b = &bad_keys[i];
		struct cmq_pseudo *ps = (struct cmq_pseudo *)1;
		struct cmq_diag diag;
		char path[4200];

		if (b->text != NULL)
			snprintf(path, sizeof(path), "%s", key_file(b->name, b->text, b->mode));
		else
			snprintf(path, sizeof(path), "%s/%s", cmq_test_tmpdir(), b->name);
		cmq_diag_init(&diag);
		CU_ASSERT_EQUAL(cmq_pseudo_load(path, 86400, &diag, &ps), b->rc);
		CU_ASSERT_PTR_NULL(ps);
		CU_ASSERT_EQUAL(diag.errors, 1);
		CU_ASSERT_EQUAL_FATAL(diag.n, 1);
		/* The line names the file... */
		CU_ASSERT_PTR_NOT_NULL(strstr(diag.entries[0].text, path));
		for (int k = 0; k < 2; k++) {
			if (b->needle[k] != NULL && cmq_diag_find(&diag, b->needle[k]) == NULL) {
				fprintf(stderr, "\n  %s: no \"%s\" in: %s\n", b->name, b->needle[k],
				        diag.entries[0].text);
				CU_FAIL("diagnostic");
			}
		}
		/* ...and never quotes the would-be secret. */
		CU_ASSERT_PTR_NULL(strstr(diag.entries[0].text, "0405060708"));
		cmq_diag_cleanup(&diag);
	}
	/* A directory is not a key file. */
	{
		struct cmq_pseudo *ps = NULL;
		struct cmq_diag diag;

		cmq_diag_init(&diag);
		CU_ASSERT_EQUAL(cmq_pseudo_load(cmq_test_tmpdir(), 86400, &diag, &ps),
		                CMQ_ERR_CONFIG);
		CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&diag, "is not a regular file"));
		CU_ASSERT_PTR_NULL(ps);
		cmq_diag_cleanup(&diag);
	}
	/* A file far too large for a key. */
	{
		static char big[9000];
		struct cmq_pseudo *ps = NULL;
		struct cmq_diag diag;

		memset(big, 'a', sizeof(big) - 1);
		cmq_diag_init(&diag);
		CU_ASSERT_EQUAL(cmq_pseudo_load(key_file("big.key", big, 0600), 86400, &diag, &ps),
		                CMQ_ERR_CONFIG);
		CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&diag, "is larger than 4095 bytes"));
		cmq_diag_cleanup(&diag);
	}
	/* Loading works without a diag, too. */
	{
		struct cmq_pseudo *ps = NULL;

		CU_ASSERT_EQUAL(cmq_pseudo_load(key_file("w.key", MASTER_HEX, 0644), 60, NULL, &ps),
		                CMQ_ERR_CONFIG);
		CU_ASSERT_PTR_NULL(ps);
	}
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
}

/* Fail allocation n of load + compute: a clean CMQ_ERR_NOMEM and no leak. */
static void TEST_oom_sweep(void)
{
	const char *path = key_file("oom.key", MASTER_HEX "\n", 0600);
	long before = cmq_test_live_allocations(), n;
	bool done = false;

	for (n = 0; n < 50 && !done; n++) {
		struct cmq_pseudo *ps = NULL;
		struct cmq_diag diag;
		char out[CMQ_PSEUDO_HEX + 1];
		int rc;

		cmq_diag_init(&diag);
		cmq_test_fail_after(n);
		rc = cmq_pseudo_load(path, 86400, &diag, &ps);
		if (rc == CMQ_OK)
			rc = cmq_pseudo_compute(ps, kats[0].now, kats[0].domain,
			                        strlen(kats[0].domain), kats[0].value,
			                        strlen(kats[0].value), out);
		done = !cmq_test_failure_fired();
		cmq_test_fail_after(-1);
		if (done) {
			CU_ASSERT_EQUAL(rc, CMQ_OK);
			CU_ASSERT_STRING_EQUAL(out, kats[0].expect);
		} else {
			CU_ASSERT_EQUAL(rc, CMQ_ERR_NOMEM);
			CU_ASSERT_PTR_NULL(ps);
		}
		cmq_pseudo_free(ps);
		cmq_diag_cleanup(&diag);
		CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
	}
	CU_ASSERT_TRUE(done);
	CU_ASSERT(n >= 2); /* at least the struct was failed once */
}

int main(void)
{
	static const struct cmq_test_case cases[] = {
	    {"known_answers", TEST_known_answers},
	    {"epoch_switches_in_any_order", TEST_epoch_switches_in_any_order},
	    {"stable_within_epoch", TEST_stable_within_epoch},
	    {"differs_across_epochs_domains_and_keys", TEST_differs_across_epochs_domains_and_keys},
	    {"bad_arguments", TEST_bad_arguments},
	    {"key_file_loads", TEST_key_file_loads},
	    {"key_file_errors", TEST_key_file_errors},
	    {"oom_sweep", TEST_oom_sweep},
	    {NULL, NULL},
	};

	return cmq_test_run("pseudo", cases);
}
