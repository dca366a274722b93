/*
 * test_scrub.c - the scrub engine (core/scrub.c, scrub_load.c, redact.c).
 *
 * Golden files: tests/unit/data/scrub/policy.json defines the profiles; each
 * <case>.in.json there is parsed (64 KiB, depth 16) and scrubbed with the profile
 * named by the case - the part of its name before "--", or all of it - and the
 * result must equal <case>.expected.json byte for byte (the output printed with
 * JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, plus "\n"), or
 * <case>.expected-drop (the drop reason's name, plus "\n"). An aggregate profile's
 * result is printed as {"aggregate":{"group":...,"count":...}}. Adding a case is
 * adding files. CMQ_SCRUB_REGOLD=1 rewrites the expected files from what the code
 * does now; review every changed file by hand before keeping it.
 *
 * Pseudonyms use the master key 00 01 02 .. 1f, daily epochs, at 2025-11-28T12:00Z
 * (epoch 20420), the known answers of test_pseudo.c; "parking" is that file's first
 * known answer, computed independently with openssl.
 *
 * Besides: cmq_redact row by row, cmq_geohash against published values, path
 * compilation, cmq_scrub_op_load's errors, parse limits, the failure report, the
 * pseudonymiser's absence, an out-of-memory sweep, and the time a typical profile
 * takes.
 */
#include "cmq_test.h"

#include "alloc.h"
#include "error.h"
#include "policy.h"
#include "pseudo.h"
#include "scrub.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GOLDEN_DIR    "scrub"
#define MAX_PAYLOAD   65536
#define MAX_DEPTH     16
#define NOW           1764331200 /* 2025-11-28T12:00:00Z: pseudonym epoch 20420 */
#define PRINT_FLAGS   (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define MAX_CASES     512
#define CASE_NAME_MAX 200

static const uint8_t master[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                   16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};

static struct cmq_policy *load_golden_policy(void)
{
	char policy[4096];
	struct cmq_policy_files f;

	snprintf(policy, sizeof(policy), "%s", cmq_test_data(GOLDEN_DIR "/policy.json"));
	f.policy = policy;
	f.vendors = cmq_test_data("policy/good/vendors.json");
	f.operators = NULL;
	f.ca_file = NULL;
	return cmq_test_load_clean(&f, false);
}

static const struct cmq_profile *find_profile(const struct cmq_policy *p, const char *id)
{
	for (size_t i = 0; i < p->n_profiles; i++) {
		if (strcmp(p->profiles[i].id, id) == 0)
			return &p->profiles[i];
	}
	return NULL;
}

static void spit(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");

	CU_ASSERT_FATAL(f != NULL);
	fputs(text, f);
	fclose(f);
}

/* What a case produces, in the form of its expected file; malloc'd. */
static char *run_case(const struct cmq_profile *prof, struct cmq_pseudo *ps, const char *payload,
                      size_t len, bool *is_drop)
{
	struct cmq_scrub_env env = {ps, NOW};
	struct cmq_scrub_agg agg;
	struct cmq_scrub_fail fail;
	struct json_object *in = NULL, *out = (struct json_object *)&env;
	enum cmq_drop reason;
	char *text = NULL;
	size_t n;

	reason = cmq_scrub_parse(payload, len, MAX_PAYLOAD, MAX_DEPTH, &in);
	if (reason == CMQ_DROP_NONE) {
		char *before = strdup(json_object_to_json_string_ext(in, PRINT_FLAGS));

		reason = cmq_scrub_apply(prof, in, &env, &out, &agg, &fail);
		/* The input is never modified. */
		CU_ASSERT_STRING_EQUAL(before, json_object_to_json_string_ext(in, PRINT_FLAGS));
		free(before);
	} else {
		CU_ASSERT_PTR_NULL(in);
		out = NULL;
	}
	*is_drop = reason != CMQ_DROP_NONE;
	if (reason != CMQ_DROP_NONE) {
		CU_ASSERT_PTR_NULL(out);
		if (in != NULL) /* the scrub failed and said why */
			CU_ASSERT_EQUAL(fail.reason, reason);
		n = strlen(cmq_drop_name(reason)) + 2;
		text = malloc(n);
		snprintf(text, n, "%s\n", cmq_drop_name(reason));
	} else if (prof->aggregates) {
		char buf[256];

		CU_ASSERT_PTR_NULL(out);
		CU_ASSERT_PTR_EQUAL(agg.op, &prof->ops[0]);
		snprintf(buf, sizeof(buf), "{\"aggregate\":{\"group\":\"%s\",\"count\":%llu}}\n",
		         agg.group, (unsigned long long)agg.count);
		text = strdup(buf);
	} else {
		const char *s;

		CU_ASSERT_PTR_NOT_NULL_FATAL(out);
		s = json_object_to_json_string_ext(out, PRINT_FLAGS);
		n = strlen(s) + 2;
		text = malloc(n);
		snprintf(text, n, "%s\n", s);
		/* The output is valid JSON that parses back to itself. */
		{
			struct json_object *again = NULL;

			CU_ASSERT_EQUAL(
			    cmq_scrub_parse(s, strlen(s), MAX_PAYLOAD, MAX_DEPTH, &again),
			    CMQ_DROP_NONE);
			json_object_put(again);
		}
		json_object_put(out);
	}
	json_object_put(in);
	return text;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void TEST_golden_files(void)
{
	struct cmq_policy *p = load_golden_policy();
	struct cmq_pseudo *ps = NULL;
	bool regold = getenv("CMQ_SCRUB_REGOLD") != NULL;
	bool used[256] = {false};
	char *names[MAX_CASES];
	size_t n = 0, failed = 0, drops = 0;
	char dir[4096];
	DIR *d;
	struct dirent *e;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_FATAL(p->n_profiles <= 256);
	CU_ASSERT_EQUAL_FATAL(cmq_pseudo_new(master, CMQ_PSEUDO_DEFAULT_EPOCH, &ps), CMQ_OK);
	snprintf(dir, sizeof(dir), "%s", cmq_test_data(GOLDEN_DIR));
	d = opendir(dir);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	while ((e = readdir(d)) != NULL && n < MAX_CASES) {
		size_t len = strlen(e->d_name);

		if (len > 8 && len < CASE_NAME_MAX && strcmp(e->d_name + len - 8, ".in.json") == 0)
			names[n++] = strndup(e->d_name, len - 8);
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), cmp_names);
	CU_ASSERT(n >= 100);
	for (size_t i = 0; i < n; i++) {
		char path[4400], exp_json[4400], exp_drop[4400], prof_id[CASE_NAME_MAX];
		const char *dash = strstr(names[i], "--");
		const struct cmq_profile *prof;
		char *payload, *got, *want_json, *want_drop;
		size_t len = 0;
		bool is_drop = false, ok;

		snprintf(prof_id, sizeof(prof_id), "%.*s",
		         (int)(dash ? (size_t)(dash - names[i]) : strlen(names[i])), names[i]);
		prof = find_profile(p, prof_id);
		if (prof == NULL) {
			fprintf(stderr, "\n  %s: no profile \"%s\" in policy.json", names[i],
			        prof_id);
			CU_FAIL("case names an unknown profile");
			continue;
		}
		used[prof - p->profiles] = true;
		snprintf(path, sizeof(path), "%s/%s.in.json", dir, names[i]);
		snprintf(exp_json, sizeof(exp_json), "%s/%s.expected.json", dir, names[i]);
		snprintf(exp_drop, sizeof(exp_drop), "%s/%s.expected-drop", dir, names[i]);
		payload = cmq_test_read_file(path, &len);
		CU_ASSERT_PTR_NOT_NULL_FATAL(payload);
		got = run_case(prof, ps, payload, len, &is_drop);
		drops += is_drop;
		if (regold) {
			spit(is_drop ? exp_drop : exp_json, got);
			remove(is_drop ? exp_json : exp_drop);
		}
		want_json = cmq_test_read_file(exp_json, NULL);
		want_drop = cmq_test_read_file(exp_drop, NULL);
		/* Exactly one expected file, and it says what the code did. */
		ok = (want_json == NULL) != (want_drop == NULL) &&
		     strcmp(is_drop ? (want_drop ? want_drop : "") : (want_json ? want_json : ""),
		            got) == 0 &&
		     (is_drop ? want_drop != NULL : want_json != NULL);
		if (!ok) {
			failed++;
			fprintf(stderr, "\n  %s: got %s  expected %s", names[i], got,
			        want_json   ? want_json
			        : want_drop ? want_drop
			                    : "(no expected file)\n");
		}
		CU_ASSERT_TRUE(ok);
		free(payload);
		free(got);
		free(want_json);
		free(want_drop);
		free(names[i]);
	}
	for (size_t i = 0; i < p->n_profiles; i++) {
		if (!used[i])
			fprintf(stderr, "\n  profile %s has no golden case", p->profiles[i].id);
		CU_ASSERT_TRUE(used[i]);
	}
	CU_ASSERT_EQUAL(failed, 0);
	CU_ASSERT(drops > 20 && drops < n - 20); /* both kinds are well represented */
	cmq_pseudo_free(ps);
	cmq_policy_free(p);
}

/* ---- cmq_redact ---- */

#define ALL (CMQ_REDACT_MAC | CMQ_REDACT_PLATE | CMQ_REDACT_EMAIL | CMQ_REDACT_PHONE)

static const struct {
	unsigned mask;
	const char *in;
	const char *out;
} redact_rows[] = {
    /* MAC addresses */
    {ALL, "00:1a:2B:3c:4D:5e", "[mac]"},
    {ALL, "00-1A-2B-3C-4D-5E", "[mac]"},
    {ALL, "001a.2b3c.4d5e", "[mac]"},
    {ALL, "id 001a2b3c4d5e.", "id [mac]."},
    {ALL, "(00:1a:2b:3c:4d:5e)", "([mac])"},
    {ALL, "00:1a:2b-3c:4d:5e", "00:1a:2b-3c:4d:5e"}, /* mixed separators */
    {ALL, "00:1a:2b:3c:4d:5g", "00:1a:2b:3c:4d:5g"},
    {ALL, "x00:1a:2b:3c:4d:5e", "x00:1a:2b:3c:4d:5e"}, /* not at a boundary */
    {ALL, "deadbeefcafe", "deadbeefcafe"},             /* twelve hex, no digit */
    {ALL, "001a2b3c4d5e6", "001a2b3c4d5e6"},           /* thirteen */
    {CMQ_REDACT_MAC, "0612345678 x@example.com", "0612345678 x@example.com"},
    /* e-mail */
    {ALL, "jane.doe+tag@example.co.uk", "[email]"},
    {ALL, "to: ops@city-hall.example.org.", "to: [email]."},
    {ALL, "a_b%c@x.io,", "[email],"},
    {ALL, "a@b", "a@b"},
    {ALL, "x@host.c1", "x@host.c1"},
    {ALL, "@example.com", "@example.com"},
    {ALL, "x@example.c", "x@example.c"},
    {ALL, "x@-.example.com", "[email]"},
    {ALL, "x@sub..example.com", "x@sub..example.com"},
    {ALL, "x@example.com1.org", "[email]"},
    {ALL, "Kontakt: m\xc3\xbcller@m\xc3\xbcnchen.de.", "Kontakt: [email]."},
    {ALL, "x@example.\xc3\xa9", "x@example.\xc3\xa9"}, /* the TLD is ASCII letters */
    {CMQ_REDACT_EMAIL, "00:1a:2b:3c:4d:5e 1-ABC-123", "00:1a:2b:3c:4d:5e 1-ABC-123"},
    /* phone numbers */
    {ALL, "+44 20 7946 0958", "[phone]"},
    {ALL, "(020) 7946-0958", "[phone]"},
    {ALL, "+1 (555) 123-4567", "[phone]"},
    {ALL, "(555)123-4567", "[phone]"},
    {ALL, "+44 (0)20 7946 0958", "[phone]"},
    {ALL, "06-12 34 56 78", "[phone]"},
    {ALL, "555.123.4567", "[phone]"},
    {ALL, "tel:0612345678.", "tel:[phone]."},
    {ALL, "123456789", "[phone]"},
    {ALL, "12345678", "12345678"},                 /* 8 digits */
    {ALL, "1234567890123456", "1234567890123456"}, /* 16 in one group */
    {ALL, "1234 5678 9012 3456", "[phone] 3456"},  /* at most 15 digits */
    {ALL, "0612345678x", "0612345678x"},
    {ALL, "x0612345678", "x0612345678"},
    {ALL, "06  12345678", "06  12345678"}, /* two separators: "06" and 8 digits */
    {ALL, "0612345678 9x", "[phone] 9x"},
    {ALL, "12.345678901", "12.345678901"}, /* a decimal number */
    {ALL, "52.3702157 4.8951679", "52.3702157 4.8951679"},
    {ALL, "12 52.3702157", "12 52.3702157"},
    {ALL, "0612345678 52.37", "[phone] 52.37"},
    {ALL, "2024-11-28", "2024-11-28"},
    {ALL, "2024-11-28 10:15:00", "2024-11-28 10:15:00"},
    {ALL, "2024-11-28T10:15:00.123456+01:00", "2024-11-28T10:15:00.123456+01:00"},
    {ALL, "28.11.2024 10:15", "28.11.2024 10:15"},
    {ALL, "11/28/2024", "11/28/2024"},
    {ALL, "2024-11-28 0612345678", "2024-11-28 [phone]"},
    {ALL, "10:15 0612345678", "10:15 [phone]"},
    {ALL, "12 2024-11-28", "12 2024-11-28"},
    {ALL, "0612345678 10:15", "[phone] 10:15"},
    {ALL, "1.2.3", "1.2.3"},
    {CMQ_REDACT_PHONE, "1-ABC-123 x@example.com", "1-ABC-123 x@example.com"},
    /* licence plates */
    {ALL, "1-ABC-123", "[plate]"},
    {ALL, "3456ABC", "[plate]"},
    {ALL, "3456 BCD", "[plate]"},
    {ALL, "AB12 CDE", "[plate]"},
    {ALL, "B-AB 1234", "[plate]"},
    {ALL, "AB-123-CD", "[plate]"},
    {ALL, "12-BD-34", "[plate]"},
    {ALL, "WA 12345", "[plate]"},
    {ALL, "plate AB12 CDE seen", "plate [plate] seen"},
    {ALL, "PLATE AB12 CDE SEEN", "PLATE [plate] SEEN"},
    {ALL, "PM10", "PM10"},
    {ALL, "PM2.5", "PM2.5"},
    {ALL, "NO2", "NO2"},
    {ALL, "PM10 HIGH", "PM10 HIGH"},
    {ALL, "CO2 ALERT", "CO2 ALERT"},
    /* A group that names a pollutant does not save a token: real plates have them. */
    {ALL, "AB12 NOX", "[plate]"},
    {ALL, "PM25 RTZ", "[plate]"},
    {ALL, "TY74 NOX seen", "[plate] seen"},
    {ALL, "NO2 41 ug/m3", "[plate] ug/m3"}, /* an accepted false hit */
    {ALL, "O3 123", "[plate]"},
    {ALL, "BME280", "[plate]"},      /* a known false positive: it looks like "AB123" */
    {ALL, "ABCDEF", "ABCDEF"},       /* no digit */
    {ALL, "123456", "123456"},       /* no letter */
    {ALL, "ab12 cde", "ab12 cde"},   /* lower case */
    {ALL, "AB12CDEFG", "AB12CDEFG"}, /* nine */
    {ALL, "A1B2", "A1B2"},           /* four */
    {ALL, "1-ABC-123x", "1-ABC-123x"},
    /* together, and nothing to do */
    {ALL, "", ""},
    {ALL, "nothing here", "nothing here"},
    {ALL, "a@b.cd 00:1a:2b:3c:4d:5e 0612345678 1-ABC-123", "[email] [mac] [phone] [plate]"},
    {ALL, "+31612345678@sms.example.com", "[email]"},
    {0, "a@b.cd 00:1a:2b:3c:4d:5e 0612345678 1-ABC-123",
     "a@b.cd 00:1a:2b:3c:4d:5e 0612345678 1-ABC-123"},
};

static void TEST_redact_table(void)
{
	for (size_t i = 0; i < sizeof(redact_rows) / sizeof(redact_rows[0]); i++) {
		char buf[256];
		int n = cmq_redact(redact_rows[i].in, strlen(redact_rows[i].in),
		                   redact_rows[i].mask, buf, sizeof(buf));
		int want = 0;

		for (const char *s = redact_rows[i].out; (s = strchr(s, '[')) != NULL; s++)
			want++;
		if (n < 0 || strcmp(buf, redact_rows[i].out) != 0 || n != want)
			fprintf(stderr, "\n  redact \"%s\": got \"%s\" (%d), expected \"%s\"",
			        redact_rows[i].in, n < 0 ? "" : buf, n, redact_rows[i].out);
		CU_ASSERT_EQUAL(n, want);
		CU_ASSERT_STRING_EQUAL(buf, redact_rows[i].out);
	}
}

static void TEST_redact_buffer_and_length(void)
{
	static const char in[] = "mail a@b.cd";
	char buf[64];
	size_t out_len = 99;

	/* "mail [email]" needs 13 bytes with the NUL. */
	CU_ASSERT_EQUAL(cmq_redact(in, strlen(in), ALL, buf, 12), -1);
	CU_ASSERT_EQUAL(cmq_redact(in, strlen(in), ALL, buf, 13), 1);
	CU_ASSERT_STRING_EQUAL(buf, "mail [email]");
	CU_ASSERT_EQUAL(cmq_redact(in, strlen(in), ALL, buf, 0), -1);
	CU_ASSERT_EQUAL(cmq_redact(in, strlen(in), ALL, NULL, 10), -1);
	/* Length-bounded input, NUL bytes passed through. */
	CU_ASSERT_EQUAL(cmq_redact_len("a\0a@b.cd!", 9, ALL, buf, sizeof(buf), &out_len), 1);
	CU_ASSERT_EQUAL(out_len, 10);
	CU_ASSERT_EQUAL(memcmp(buf, "a\0[email]!", 11), 0);
	CU_ASSERT_EQUAL(cmq_redact("x@example.com", 5, ALL, buf, sizeof(buf)), 0);
	CU_ASSERT_STRING_EQUAL(buf, "x@exa");
}

/* Long runs that would make a naive scanner quadratic finish at once. */
static void TEST_redact_is_linear(void)
{
	size_t len = 1 << 20;
	char *in = malloc(len), *out = malloc(2 * len + 16);
	clock_t t0;
	double secs;
	int n;

	CU_ASSERT_FATAL(in != NULL && out != NULL);
	for (size_t i = 0; i < len; i++)
		in[i] = i % 2 ? ' ' : '1'; /* "1 1 1 1 ..." */
	t0 = clock();
	n = cmq_redact_len(in, len, ALL, out, 2 * len + 16, NULL);
	memset(in, 'a', len); /* one local part a megabyte long, no '@' */
	n += cmq_redact_len(in, len, ALL, out, 2 * len + 16, NULL);
	for (size_t i = 0; i < len; i++)
		in[i] = "A1-"[i % 3];
	n += cmq_redact_len(in, len, ALL, out, 2 * len + 16, NULL);
	secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
	CU_ASSERT(n > 0);
	CU_ASSERT(secs < 2.0);
	free(in);
	free(out);
}

/* ---- geohash ---- */

/*
 * u4pruydqqvj (geohash.org) and ezs42 (Wikipedia) are published; the others were
 * computed with an independent implementation (exact rational quantisation of both
 * coordinates, then bit interleaving) rather than with this code.
 */
static void TEST_geohash_known_values(void)
{
	static const struct {
		double lat, lon;
		int precision;
		const char *hash;
	} rows[] = {
	    {57.64911, 10.40744, 11, "u4pruydqqvj"},  /* geohash.org's example */
	    {42.6, -5.6, 5, "ezs42"},                 /* Wikipedia's example */
	    {52.3702157, 4.8951679, 6, "u173zm"},     /* Amsterdam */
	    {-33.8688197, 151.2092955, 7, "r3gx2f7"}, /* Sydney */
	    {0, 0, 1, "s"},
	    {-90, -180, 4, "0000"},
	    {90, 180, 4, "zzzz"},
	    {57.64911, 10.40744, 12, "u4pruydqqvj8"},
	};
	char out[13];

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		cmq_geohash(rows[i].lat, rows[i].lon, rows[i].precision, out);
		if (strcmp(out, rows[i].hash) != 0)
			fprintf(stderr, "\n  geohash(%g, %g): %s, expected %s", rows[i].lat,
			        rows[i].lon, out, rows[i].hash);
		CU_ASSERT_STRING_EQUAL(out, rows[i].hash);
	}
	cmq_geohash(1, 1, 0, out); /* clamped to 1..12 */
	CU_ASSERT_EQUAL(strlen(out), 1);
	cmq_geohash(1, 1, 40, out);
	CU_ASSERT_EQUAL(strlen(out), 12);
}

/* ---- paths ---- */

static void TEST_path_compile(void)
{
	static const struct {
		const char *text;
		const char *why; /* NULL = valid */
	} rows[] = {
	    {"a", NULL},
	    {"observedVehicle.licensePlate.identifier", NULL},
	    {"readings[].value", NULL},
	    {"location.coordinates[0]", NULL},
	    {"a[12].b[].c", NULL},
	    {"weird key-ü.x", NULL},
	    {"", "is empty"},
	    {".a", "has an empty key"},
	    {"a.", "ends with '.'"},
	    {"a..b", "has an empty key"},
	    {"a[", "has '[' not followed by ']' or a number and ']'"},
	    {"a[x]", "has '[' not followed by ']' or a number and ']'"},
	    {"a[1", "has '[' not followed by ']' or a number and ']'"},
	    {"a[-1]", "has '[' not followed by ']' or a number and ']'"},
	    {"a]", "has ']' without '['"},
	    {"[0]", "has an empty key"},
	    {"a[0]b", "has text after ']' that does not start with '.'"},
	    {"a[][]", "has text after ']' that does not start with '.'"},
	    {"a[1234567890]", "has an index above 999999999"},
	    {"a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.A.B.C.D.E.F.G",
	     "has more than 32 segments"},
	};
	struct cmq_scrub_path p;
	const char *why;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int rc = cmq_scrub_path_compile(rows[i].text, &p, &why);

		CU_ASSERT_EQUAL(rc, rows[i].why ? CMQ_ERR_PARSE : CMQ_OK);
		if (rows[i].why != NULL && why != NULL)
			CU_ASSERT_STRING_EQUAL(why, rows[i].why);
		if ((rc == CMQ_OK) != (rows[i].why == NULL))
			fprintf(stderr, "\n  path \"%s\": %s", rows[i].text, why ? why : "ok");
		cmq_scrub_path_cleanup(&p);
	}
	CU_ASSERT_EQUAL_FATAL(cmq_scrub_path_compile("a[12].b[].c", &p, &why), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(p.n, 3);
	CU_ASSERT_STRING_EQUAL(p.seg[0].key, "a");
	CU_ASSERT_EQUAL(p.seg[0].index, 12);
	CU_ASSERT_STRING_EQUAL(p.seg[1].key, "b");
	CU_ASSERT_EQUAL(p.seg[1].key_len, 1);
	CU_ASSERT_EQUAL(p.seg[1].index, CMQ_SEG_EACH);
	CU_ASSERT_STRING_EQUAL(p.seg[2].key, "c");
	CU_ASSERT_EQUAL(p.seg[2].index, CMQ_SEG_KEY);
	cmq_scrub_path_cleanup(&p);
	cmq_scrub_path_cleanup(&p); /* twice is fine */
	CU_ASSERT_EQUAL(cmq_scrub_path_compile(NULL, &p, &why), CMQ_ERR_PARSE);
	cmq_scrub_path_cleanup(&p);
}

/* ---- cmq_scrub_op_load, directly ---- */

static const struct {
	enum cmq_scrub_kind kind;
	const char *op; /* the op object */
	const char *expect;
} op_rows[] = {
    {CMQ_SCRUB_KEEP, "{\"path\": \"a[\"}", "x.json: $.op.path: \"a[\" is not a valid path"},
    {CMQ_SCRUB_GENERALISE_LOCATION, "{}", "x.json: $.op: generalise_location needs"},
    {CMQ_SCRUB_GENERALISE_LOCATION, "{\"geohash_precision\": 0}",
     "x.json: $.op.geohash_precision: 0 is out of range; valid: 1 to 12"},
    {CMQ_SCRUB_GENERALISE_LOCATION, "{\"grid_degrees\": 10.5}",
     "x.json: $.op.grid_degrees: number 10.5 is out of range"},
    {CMQ_SCRUB_COARSEN_TIME, "{\"seconds\": 0}",
     "x.json: $.op.seconds: 0 is out of range; valid: 1 to 31622400"},
    {CMQ_SCRUB_COARSEN_TIME, "{\"seconds\": 1.5}",
     "x.json: $.op.seconds: expected a whole number between 1 and 31622400"},
    {CMQ_SCRUB_ROUND, "{\"step\": 0}", "x.json: $.op.step: number 0 is out of range"},
    {CMQ_SCRUB_ROUND, "{\"step\": 1e400}", "x.json: $.op.step: number 1e400 is out of range"},
    {CMQ_SCRUB_BUCKET, "{\"bounds\": 5}", "x.json: $.op.bounds: expected an array, got number 5"},
    {CMQ_SCRUB_BUCKET, "{\"bounds\": [1, 1e400]}",
     "x.json: $.op.bounds[1]: number 1e400 is out of range"},
    {CMQ_SCRUB_REDACT, "{\"patterns\": [\"mac\", 7]}",
     "x.json: $.op.patterns[1]: expected a string, got number 7"},
    {CMQ_SCRUB_REDACT, "{}", "x.json: $.op.patterns: missing required field"},
    {CMQ_SCRUB_AGGREGATE, "{\"window_seconds\": 60, \"k\": 5}",
     "x.json: $.op.group_by: missing required field"},
    {CMQ_SCRUB_AGGREGATE, "{\"group_by\": \"z..\", \"window_seconds\": 60, \"k\": 5}",
     "x.json: $.op.group_by: \"z..\" is not a valid path"},
    {CMQ_SCRUB_AGGREGATE,
     "{\"group_by\": \"z\", \"window_seconds\": 60, \"k\": 5, \"noise_epsilon\": \"1\"}",
     "x.json: $.op.noise_epsilon: expected a number > 0 and <= 10"},
    {CMQ_SCRUB_AGGREGATE,
     "{\"group_by\": \"z\", \"window_seconds\": 60, \"k\": 1000001, \"noise_epsilon\": 10.5}",
     "x.json: $.op.k: 1000001 is out of range"},
};

static void TEST_op_load_errors(void)
{
	for (size_t i = 0; i < sizeof(op_rows) / sizeof(op_rows[0]); i++) {
		struct cmq_diag d;
		struct cmq_jctx c;
		struct cmq_scrub_op op;
		struct json_object *o = json_tokener_parse(op_rows[i].op);
		bool ok;

		CU_ASSERT_PTR_NOT_NULL_FATAL(o);
		memset(&op, 0, sizeof(op));
		op.kind = op_rows[i].kind;
		op.path = cmq_strdup(op_rows[i].kind == CMQ_SCRUB_KEEP ? "a[" : "a");
		cmq_diag_init(&d);
		cmq_jctx_init(&c, "x.json", &d);
		cmq_jpath_push_key(&c, "op");
		ok = cmq_scrub_op_load(&c, o, &op);
		CU_ASSERT_FALSE(ok);
		CU_ASSERT(d.errors >= 1);
		CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&d, op_rows[i].expect));
		if (cmq_diag_find(&d, op_rows[i].expect) == NULL)
			fprintf(stderr, "\n  op %s: got \"%s\"", op_rows[i].op,
			        d.n ? d.entries[0].text : "(nothing)");
		cmq_scrub_op_cleanup(&op);
		CU_ASSERT_PTR_NULL(op.path);
		cmq_diag_cleanup(&d);
		json_object_put(o);
	}
}

static void TEST_op_load_stores_parameters(void)
{
	struct cmq_policy *p = load_golden_policy();
	const struct cmq_profile *prof;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	prof = find_profile(p, "bucket");
	CU_ASSERT_PTR_NOT_NULL_FATAL(prof);
	CU_ASSERT_EQUAL_FATAL(prof->ops[0].u.bucket.n, 4);
	CU_ASSERT_EQUAL(prof->ops[0].u.bucket.bounds[2], 25.5);
	prof = find_profile(p, "grid");
	CU_ASSERT_EQUAL(prof->ops[0].u.loc.geohash_precision, 0);
	CU_ASSERT_EQUAL(prof->ops[0].u.loc.grid_degrees, 0.01);
	prof = find_profile(p, "redact-email-phone");
	CU_ASSERT_EQUAL(prof->ops[0].u.redact.patterns, CMQ_REDACT_EMAIL | CMQ_REDACT_PHONE);
	prof = find_profile(p, "crowd-nested");
	CU_ASSERT_TRUE(prof->aggregates);
	CU_ASSERT_EQUAL(prof->ops[0].u.agg.epsilon, 0); /* absent: no noise */
	CU_ASSERT_EQUAL(prof->ops[0].u.agg.k, 5);
	CU_ASSERT_EQUAL(prof->ops[0].u.agg.window_seconds, 60);
	CU_ASSERT_EQUAL(prof->ops[0].cpath.seg[0].index, 1);
	CU_ASSERT_EQUAL(prof->ops[0].u.agg.group_by.n, 2);
	cmq_policy_free(p);
}

/* ---- parse limits ---- */

static void TEST_parse_limits(void)
{
	static const char doc[] = "{\"a\": [1, {\"b\": 2}]}"; /* depth 3 */
	struct json_object *o = (struct json_object *)&o;

	CU_ASSERT_EQUAL(cmq_scrub_parse(doc, strlen(doc), strlen(doc), 3, &o), CMQ_DROP_NONE);
	json_object_put(o);
	o = (struct json_object *)&o;
	CU_ASSERT_EQUAL(cmq_scrub_parse(doc, strlen(doc), strlen(doc) - 1, 3, &o),
	                CMQ_DROP_TOO_LARGE);
	CU_ASSERT_PTR_NULL(o);
	CU_ASSERT_EQUAL(cmq_scrub_parse(doc, strlen(doc), 1000, 2, &o), CMQ_DROP_TOO_DEEP);
	CU_ASSERT_PTR_NULL(o);
	CU_ASSERT_EQUAL(cmq_scrub_parse(NULL, 0, 1000, 2, &o), CMQ_DROP_NOT_JSON);
	CU_ASSERT_EQUAL(cmq_scrub_parse("{}", 2, 1000, 0, &o), CMQ_DROP_NONE); /* depth >= 1 */
	json_object_put(o);
	/* The size limit comes before anything is read. */
	CU_ASSERT_EQUAL(cmq_scrub_parse("\xff", 1, 0, 5, &o), CMQ_DROP_TOO_LARGE);
	/* Length-bounded: the text after len is not looked at. */
	CU_ASSERT_EQUAL(cmq_scrub_parse("{}garbage", 2, 100, 5, &o), CMQ_DROP_NONE);
	json_object_put(o);
}

/* ---- failures and environment ---- */

static void TEST_failure_report(void)
{
	struct cmq_policy *p = load_golden_policy();
	struct cmq_scrub_env env = {NULL, NOW};
	struct cmq_scrub_fail fail;
	struct cmq_scrub_agg agg;
	struct json_object *in = json_tokener_parse("{\"v\": [1, \"x\"]}");
	struct json_object *out = in;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(cmq_scrub_apply(find_profile(p, "round-5"), in, &env, &out, &agg, &fail),
	                CMQ_DROP_WRONG_TYPE);
	CU_ASSERT_PTR_NULL(out);
	CU_ASSERT_EQUAL(fail.reason, CMQ_DROP_WRONG_TYPE);
	CU_ASSERT_STRING_EQUAL(fail.path, "v[]");
	CU_ASSERT_STRING_EQUAL(fail.detail, "expected a number, got a string");
	/* fail may be NULL. */
	CU_ASSERT_EQUAL(cmq_scrub_apply(find_profile(p, "round-5"), in, &env, &out, NULL, NULL),
	                CMQ_DROP_WRONG_TYPE);
	json_object_put(in);

	in = json_tokener_parse("{\"zone\": \"z 1\", \"peopleCount\": 3}");
	CU_ASSERT_EQUAL(cmq_scrub_apply(find_profile(p, "crowd"), in, &env, &out, &agg, &fail),
	                CMQ_DROP_BAD_VALUE);
	CU_ASSERT_STRING_EQUAL(fail.path, "zone");
	CU_ASSERT_PTR_NULL(agg.op);
	/* An aggregate profile needs somewhere to put the aggregate. */
	CU_ASSERT_EQUAL(cmq_scrub_apply(find_profile(p, "crowd"), in, &env, &out, NULL, &fail),
	                CMQ_DROP_INTERNAL);
	json_object_put(in);

	/* The payload must be an object. */
	in = json_object_new_array();
	CU_ASSERT_EQUAL(cmq_scrub_apply(find_profile(p, "parse"), in, &env, &out, &agg, &fail),
	                CMQ_DROP_NOT_OBJECT);
	json_object_put(in);
	CU_ASSERT_EQUAL(cmq_scrub_apply(NULL, NULL, &env, &out, &agg, &fail), CMQ_DROP_INTERNAL);
	cmq_policy_free(p);
}

static void TEST_pseudonyms_need_a_key_and_rotate(void)
{
	struct cmq_policy *p = load_golden_policy();
	struct cmq_pseudo *ps = NULL;
	struct cmq_scrub_env env = {NULL, NOW};
	struct cmq_scrub_fail fail;
	struct json_object *in = json_tokener_parse("{\"id\": \"AB-123-CD\"}"), *out = NULL;
	char first[64], second[64];

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(cmq_scrub_apply(find_profile(p, "pseudo"), in, &env, &out, NULL, &fail),
	                CMQ_DROP_NO_KEY);
	CU_ASSERT_PTR_NULL(out);
	CU_ASSERT_STRING_EQUAL(fail.path, "id");
	CU_ASSERT_EQUAL(cmq_scrub_apply(find_profile(p, "pseudo"), in, NULL, &out, NULL, &fail),
	                CMQ_DROP_NO_KEY);
	/* A profile that does not pseudonymise needs no key. */
	CU_ASSERT_EQUAL(cmq_scrub_apply(find_profile(p, "parse"), in, NULL, &out, NULL, &fail),
	                CMQ_DROP_NONE);
	json_object_put(out);

	CU_ASSERT_EQUAL_FATAL(cmq_pseudo_new(master, CMQ_PSEUDO_DEFAULT_EPOCH, &ps), CMQ_OK);
	env.pseudo = ps;
	CU_ASSERT_EQUAL_FATAL(
	    cmq_scrub_apply(find_profile(p, "pseudo"), in, &env, &out, NULL, &fail), CMQ_DROP_NONE);
	snprintf(first, sizeof(first), "%s", json_object_to_json_string_ext(out, PRINT_FLAGS));
	json_object_put(out);
	env.now += 86400; /* the next epoch: unlinkable */
	CU_ASSERT_EQUAL_FATAL(
	    cmq_scrub_apply(find_profile(p, "pseudo"), in, &env, &out, NULL, &fail), CMQ_DROP_NONE);
	snprintf(second, sizeof(second), "%s", json_object_to_json_string_ext(out, PRINT_FLAGS));
	json_object_put(out);
	CU_ASSERT_EQUAL(strlen(first), strlen("{\"id\":\"\"}") + CMQ_PSEUDO_HEX);
	CU_ASSERT_STRING_NOT_EQUAL(first, second);
	json_object_put(in);
	cmq_pseudo_free(ps);
	cmq_policy_free(p);
}

/* ---- out of memory ---- */

/*
 * The scrub path allocates through alloc.h only for long strings it redacts (json-c
 * uses malloc): fail allocation n for n = 0, 1, ... and expect INTERNAL, no output, no
 * leak, until the call succeeds.
 */
static void TEST_oom_sweep_apply(void)
{
	struct cmq_policy *p = load_golden_policy();
	struct json_object *in = json_object_new_object(), *notes = json_object_new_array();
	struct cmq_scrub_fail fail;
	long n, before;
	bool done = false;
	char text[2000];

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	text[0] = '\0';
	while (strlen(text) + 40 < sizeof(text))
		strncat(text, "call 0612345678 or mail a@example.com. ", 40);
	for (int i = 0; i < 4; i++)
		json_object_array_add(notes, json_object_new_string(text));
	json_object_object_add(in, "notes", notes);
	before = cmq_test_live_allocations();
	for (n = 0; n < 100 && !done; n++) {
		struct json_object *out = (struct json_object *)&fail;
		enum cmq_drop rc;

		cmq_test_fail_after(n);
		rc = cmq_scrub_apply(find_profile(p, "redact-all"), in, NULL, &out, NULL, &fail);
		if (!cmq_test_failure_fired()) {
			done = true;
			CU_ASSERT_EQUAL(rc, CMQ_DROP_NONE);
			CU_ASSERT_PTR_NOT_NULL(out);
			CU_ASSERT_PTR_NOT_NULL(strstr(json_object_to_json_string(out), "[phone]"));
		} else {
			CU_ASSERT_EQUAL(rc, CMQ_DROP_INTERNAL);
			CU_ASSERT_PTR_NULL(out);
			CU_ASSERT_STRING_EQUAL(fail.detail, "out of memory");
		}
		cmq_test_fail_after(-1);
		json_object_put(out);
		CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
	}
	CU_ASSERT_TRUE(done);
	CU_ASSERT(n >= 2); /* the sweep really failed an allocation */
	json_object_put(in);
	cmq_policy_free(p);
}

/* Loading every kind of op under allocation failure: NOMEM and nothing leaked. */
static void TEST_oom_sweep_load(void)
{
	char policy[4096];
	struct cmq_policy_files f;
	long before = cmq_test_live_allocations(), n;
	bool done = false;

	snprintf(policy, sizeof(policy), "%s", cmq_test_data(GOLDEN_DIR "/policy.json"));
	f.policy = policy;
	f.vendors = cmq_test_data("policy/good/vendors.json");
	f.operators = NULL;
	f.ca_file = NULL;
	for (n = 0; n < 20000 && !done; n++) {
		struct cmq_diag d;
		struct cmq_policy *p = NULL;
		int rc;

		cmq_diag_init(&d);
		cmq_test_fail_after(n);
		rc = cmq_policy_load(&f, &d, &p);
		if (!cmq_test_failure_fired()) {
			done = true;
			CU_ASSERT_EQUAL(rc, CMQ_OK);
		} else if (rc != CMQ_ERR_NOMEM || p != NULL) {
			fprintf(stderr, "\n  oom at allocation %ld: %s", n, cmq_err_name(rc));
			CU_FAIL("not a clean NOMEM");
		}
		cmq_test_fail_after(-1);
		cmq_policy_free(p);
		cmq_diag_cleanup(&d);
		if (cmq_test_live_allocations() != before) {
			fprintf(stderr, "\n  oom at allocation %ld: leaked", n);
			CU_FAIL("leak");
			before = cmq_test_live_allocations();
		}
	}
	CU_ASSERT_TRUE(done);
	CU_ASSERT(n > 300);
}

/* ---- cost ---- */

/*
 * Parse + scrub + print of a 318-byte AirQualityObserved with the air-quality profile of
 * config/policy.json. The best of 20 batches, so other load on the machine does not
 * count; json-c's parse is most of it.
 */
static void TEST_air_quality_takes_microseconds(void)
{
	static const char payload[] =
	    "{\"id\":\"urn:ngsi-ld:AirQualityObserved:civitas-air-001\",\"type\":"
	    "\"AirQualityObserved\",\"dateObserved\":\"2025-11-28T10:17:42Z\",\"location\":{"
	    "\"type\":\"Point\",\"coordinates\":[4.8951679,52.3702157]},\"no2\":22,\"pm10\":19,"
	    "\"pm25\":9.5,\"o3\":60,\"airQualityIndex\":43,\"temperature\":12.2,"
	    "\"relativeHumidity\":0.54,\"refDevice\":\"civitas-air-001\"}";
	static const char expect[] =
	    "{\"no2\":22,\"pm10\":19,\"pm25\":9.5,\"o3\":60,\"airQualityIndex\":43,"
	    "\"temperature\":12.2,\"relativeHumidity\":0.54,\"dateObserved\":"
	    "\"2025-11-28T10:15:00Z\",\"location\":\"u173zm\"}";
	struct cmq_policy *p = load_golden_policy();
	const struct cmq_profile *prof;
	struct cmq_scrub_env env = {NULL, NOW};
	const int batches = 20, rounds = 1000;
	double best = 1e9;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	prof = find_profile(p, "air-quality");
	CU_ASSERT_EQUAL(strlen(payload), 318);
	for (int b = 0; b < batches; b++) {
		struct timespec t0, t1;
		double us;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (int i = 0; i < rounds; i++) {
			struct json_object *in = NULL, *out = NULL;
			const char *s;

			if (cmq_scrub_parse(payload, sizeof(payload) - 1, MAX_PAYLOAD, MAX_DEPTH,
			                    &in) != CMQ_DROP_NONE ||
			    cmq_scrub_apply(prof, in, &env, &out, NULL, NULL) != CMQ_DROP_NONE) {
				CU_FAIL("air-quality payload did not scrub");
				json_object_put(in);
				cmq_policy_free(p);
				return;
			}
			s = json_object_to_json_string_ext(out, PRINT_FLAGS);
			if (i == 0 && b == 0)
				CU_ASSERT_STRING_EQUAL(s, expect);
			json_object_put(out);
			json_object_put(in);
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		us = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 +
		      (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) /
		     rounds;
		if (us < best)
			best = us;
	}
	fprintf(stderr, "\n  air-quality: parse + scrub + print %.2f us per 318-byte message\n",
	        best);
#if !defined(__SANITIZE_ADDRESS__)
	CU_ASSERT(best < 10.0);
#endif
	cmq_policy_free(p);
}

int main(void)
{
	static const struct cmq_test_case cases[] = {
	    {"golden_files", TEST_golden_files},
	    {"redact_table", TEST_redact_table},
	    {"redact_buffer_and_length", TEST_redact_buffer_and_length},
	    {"redact_is_linear", TEST_redact_is_linear},
	    {"geohash_known_values", TEST_geohash_known_values},
	    {"path_compile", TEST_path_compile},
	    {"op_load_errors", TEST_op_load_errors},
	    {"op_load_stores_parameters", TEST_op_load_stores_parameters},
	    {"parse_limits", TEST_parse_limits},
	    {"failure_report", TEST_failure_report},
	    {"pseudonyms_need_a_key_and_rotate", TEST_pseudonyms_need_a_key_and_rotate},
	    {"oom_sweep_apply", TEST_oom_sweep_apply},
	    {"oom_sweep_load", TEST_oom_sweep_load},
	    {"air_quality_takes_microseconds", TEST_air_quality_takes_microseconds},
	    {NULL, NULL},
	};

	return cmq_test_run("scrub", cases);
}
