/*
 * test_audit.c - core/audit: the exact line format and chain (hashes recomputed here with
 * OpenSSL EVP, independently of the code under test); reopening continues the chain; verify
 * names the right line for an edit, a deletion, a swap and a cut-off start, and explains
 * malformed lines; a torn tail is reported by verify and cut off by open; the line-length
 * bound is the same for append and verify; JSON and awkward strings round-trip and never put
 * a raw newline in a line; failed writes leave the chain valid; one writer at a time; a huge
 * log opens without being read; allocation failures are clean.
 */
#include "cmq_test.h"

#include "audit.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ZEROS "0000000000000000000000000000000000000000000000000000000000000000"
#define T0    INT64_C(1795874700) /* 2026-11-28T14:05:00Z */
/* A well-formed line's fields between seq and prev (see make_log). */
#define BODY                                                                                       \
	"\"time\":\"2026-11-28T14:05:00Z\",\"actor\":\"a\",\"action\":\"x\",\"target\":\"t\","     \
	"\"before\":null,\"after\":null,\"reason\":\"\""

static const char *apath(const char *name)
{
	static char path[4][4096];
	static int next;
	char *p = path[next++ % 4];

	snprintf(p, sizeof(path[0]), "%s/%s", cmq_test_tmpdir(), name);
	return p;
}

/* SHA-256 hex of data[0..len), computed with EVP (not the one-shot call audit.c uses). */
static void sha_hex(const char *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT_FATAL(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1);
	CU_ASSERT_FATAL(EVP_DigestUpdate(ctx, data, len) == 1);
	CU_ASSERT_FATAL(EVP_DigestFinal_ex(ctx, md, &mdlen) == 1);
	EVP_MD_CTX_free(ctx);
	CU_ASSERT_EQUAL_FATAL(mdlen, 32);
	for (unsigned i = 0; i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* The lines of a file (NUL-terminated, newlines removed); free with free_lines. */
struct lines {
	char *buf;
	char *line[64];
	size_t n;
	size_t size;
	bool trailing_newline;
};

static void load_lines(const char *path, struct lines *l)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	char *p;

	memset(l, 0, sizeof(*l));
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_EQUAL_FATAL(fstat(fileno(f), &st), 0);
	l->size = (size_t)st.st_size;
	l->buf = malloc(l->size + 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(l->buf);
	CU_ASSERT_EQUAL_FATAL(fread(l->buf, 1, l->size, f), l->size);
	fclose(f);
	l->buf[l->size] = '\0';
	l->trailing_newline = l->size > 0 && l->buf[l->size - 1] == '\n';
	p = l->buf;
	while (*p != '\0' && l->n < 64) {
		char *nl = strchr(p, '\n');

		l->line[l->n++] = p;
		if (nl == NULL)
			break;
		*nl = '\0';
		p = nl + 1;
	}
}

static void free_lines(struct lines *l)
{
	free(l->buf);
	memset(l, 0, sizeof(*l));
}

/* Write line[0..n), each followed by a newline. */
static void save_lines(const char *path, char *const *line, size_t n)
{
	FILE *f = fopen(path, "wb");

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s\n", line[i]);
	fclose(f);
}

static void append_raw(const char *path, const char *bytes)
{
	FILE *f = fopen(path, "ab");

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(bytes, f);
	fclose(f);
}

/*
 * Write a log whose lines are spec[i]: a spec starting with '{' or '[' is written as it is; any
 * other is the fields between seq and prev, wrapped as {"seq":i+1,<spec>,"prev":<hash of the line
 * before>} so the chain around it is intact.
 */
static void make_log(const char *path, const char *const *spec, size_t n)
{
	char prev[65] = ZEROS, line[4096];
	FILE *f = fopen(path, "wb");

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	for (size_t i = 0; i < n; i++) {
		if (spec[i][0] == '{' || spec[i][0] == '[')
			snprintf(line, sizeof(line), "%s", spec[i]);
		else
			snprintf(line, sizeof(line), "{\"seq\":%zu,%s,\"prev\":\"%s\"}", i + 1,
			         spec[i], prev);
		fprintf(f, "%s\n", line);
		sha_hex(line, strlen(line), prev);
	}
	fclose(f);
}

static struct cmq_audit *open_ok(const char *path)
{
	struct cmq_audit *a = NULL;
	char err[512];

	CU_ASSERT_EQUAL(cmq_audit_open(path, &a, err, sizeof(err)), CMQ_OK);
	if (err[0] != '\0')
		fprintf(stderr, "\n  open: %s", err);
	CU_ASSERT_STRING_EQUAL(err, "");
	return a;
}

static int append(struct cmq_audit *a, int64_t t, const char *action, const char *reason)
{
	struct cmq_audit_entry e = {t, "admin:alice", action, "nimbus", NULL, NULL, reason};

	return cmq_audit_append(a, &e);
}

/* A log of n lines written through the API, reasons "reason 1" .. "reason n". */
static void write_log(const char *path, int n)
{
	struct cmq_audit *a;

	unlink(path);
	a = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	cmq_audit_set_sync(a, false);
	for (int i = 1; i <= n; i++) {
		char reason[32];

		snprintf(reason, sizeof(reason), "reason %d", i);
		CU_ASSERT_EQUAL(append(a, T0 + i, "vendor.restrict", reason), CMQ_OK);
	}
	cmq_audit_close(a);
}

/* Verify, expecting a problem at line bad with want in the message. */
static void expect_bad(const char *path, uint64_t bad, const char *want)
{
	struct cmq_audit_report r;
	int rc = cmq_audit_verify(path, &r);

	CU_ASSERT_EQUAL(rc, CMQ_ERR_PARSE);
	CU_ASSERT_FALSE(r.ok);
	CU_ASSERT_EQUAL(r.bad_line, bad);
	CU_ASSERT_EQUAL(r.lines, bad - 1);
	if (strstr(r.message, want) == NULL || strstr(r.message, path) == NULL)
		fprintf(stderr, "\n  want \"%s\" (line %llu), got: %s", want,
		        (unsigned long long)bad, r.message);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.message, want));
	CU_ASSERT_PTR_NOT_NULL(strstr(r.message, path));
}

static void expect_ok(const char *path, uint64_t lines, const char *head)
{
	struct cmq_audit_report r;

	CU_ASSERT_EQUAL(cmq_audit_verify(path, &r), CMQ_OK);
	if (!r.ok)
		fprintf(stderr, "\n  verify: %s", r.message);
	CU_ASSERT(r.ok);
	CU_ASSERT_EQUAL(r.lines, lines);
	CU_ASSERT_EQUAL(r.bad_line, 0);
	if (head != NULL)
		CU_ASSERT_STRING_EQUAL(r.head, head);
}

/* ---- format and chain ---- */

static void TEST_line_format_and_chain(void)
{
	static const char line1[] =
	    "{\"seq\":1,\"time\":\"2026-11-28T14:05:00Z\",\"actor\":\"admin:alice\","
	    "\"action\":\"vendor.block\",\"target\":\"nimbus\",\"before\":{\"tier\":\"trusted\"},"
	    "\"after\":{\"tier\":\"blocked\"},\"reason\":\"contract expired\",\"prev\":\"" ZEROS
	    "\"}";
	const char *path = apath("format.log");
	struct json_object *before = json_tokener_parse("{\"tier\":\"trusted\"}");
	struct json_object *after = json_tokener_parse("{\"tier\":\"blocked\"}");
	struct cmq_audit_entry e = {T0,     "admin:alice", "vendor.block",    "nimbus",
	                            before, after,         "contract expired"};
	struct cmq_audit *a;
	struct lines l;
	struct stat st;
	char h1[65], h2[65], h3[65], want[1024];
	mode_t old_umask = umask(022);

	a = open_ok(path);
	umask(old_umask);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_EQUAL(cmq_audit_next_seq(a), 1);
	CU_ASSERT_STRING_EQUAL(cmq_audit_head(a), ZEROS);
	CU_ASSERT_EQUAL(cmq_audit_append(a, &e), CMQ_OK); /* sync is on by default */
	CU_ASSERT_STRING_EQUAL(cmq_audit_last_error(a), "");
	CU_ASSERT_EQUAL(append(a, T0 + 60, "vendor.trust", NULL), CMQ_OK);
	CU_ASSERT_EQUAL(append(a, T0 + 3600, "consent.grant", "resident asked"), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_audit_next_seq(a), 4);
	json_object_put(before);
	json_object_put(after);

	CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0640);
	load_lines(path, &l);
	CU_ASSERT_EQUAL_FATAL(l.n, 3);
	CU_ASSERT(l.trailing_newline);
	CU_ASSERT_STRING_EQUAL(l.line[0], line1);
	sha_hex(l.line[0], strlen(l.line[0]), h1);
	sha_hex(l.line[1], strlen(l.line[1]), h2);
	sha_hex(l.line[2], strlen(l.line[2]), h3);
	snprintf(want, sizeof(want),
	         "{\"seq\":2,\"time\":\"2026-11-28T14:06:00Z\",\"actor\":\"admin:alice\","
	         "\"action\":\"vendor.trust\",\"target\":\"nimbus\",\"before\":null,\"after\":null,"
	         "\"reason\":\"\",\"prev\":\"%s\"}",
	         h1);
	CU_ASSERT_STRING_EQUAL(l.line[1], want);
	snprintf(want, sizeof(want), ",\"prev\":\"%s\"}", h2);
	CU_ASSERT_PTR_NOT_NULL(strstr(l.line[2], want));
	CU_ASSERT_PTR_NOT_NULL(strstr(l.line[2], "\"time\":\"2026-11-28T15:05:00Z\""));
	CU_ASSERT_STRING_EQUAL(cmq_audit_head(a), h3);
	cmq_audit_close(a);
	free_lines(&l);
	expect_ok(path, 3, h3);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

static void TEST_reopen_continues_chain(void)
{
	const char *path = apath("reopen.log");
	struct cmq_audit *a;
	struct lines l;
	char h3[65], h4[65], want[128];

	write_log(path, 3);
	load_lines(path, &l);
	sha_hex(l.line[2], strlen(l.line[2]), h3);
	free_lines(&l);

	a = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_EQUAL(cmq_audit_next_seq(a), 4);
	CU_ASSERT_STRING_EQUAL(cmq_audit_head(a), h3);
	CU_ASSERT_EQUAL(append(a, T0 + 100, "device.revoke", "stolen"), CMQ_OK);
	cmq_audit_close(a);

	load_lines(path, &l);
	CU_ASSERT_EQUAL_FATAL(l.n, 4);
	CU_ASSERT_EQUAL(strncmp(l.line[3], "{\"seq\":4,", 9), 0);
	snprintf(want, sizeof(want), "\"prev\":\"%s\"}", h3);
	CU_ASSERT_PTR_NOT_NULL(strstr(l.line[3], want));
	sha_hex(l.line[3], strlen(l.line[3]), h4);
	free_lines(&l);
	expect_ok(path, 4, h4);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

static void TEST_time_format(void)
{
	static const struct {
		int64_t t;
		const char *text;
	} cases[] = {
	    {0, "1970-01-01T00:00:00Z"},
	    {951782400, "2000-02-29T00:00:00Z"},
	    {1709251199, "2024-02-29T23:59:59Z"},
	    {T0, "2026-11-28T14:05:00Z"},
	    {INT64_C(4107542400), "2100-03-01T00:00:00Z"}, /* 2100 is not a leap year */
	    {INT64_C(253402300799), "9999-12-31T23:59:59Z"},
	};
	const char *path = apath("time.log");
	struct cmq_audit *a;
	struct lines l;
	size_t n = sizeof(cases) / sizeof(cases[0]);

	unlink(path);
	a = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	cmq_audit_set_sync(a, false);
	for (size_t i = 0; i < n; i++)
		CU_ASSERT_EQUAL(append(a, cases[i].t, "x", NULL), CMQ_OK);
	CU_ASSERT_EQUAL(append(a, -1, "x", NULL), CMQ_ERR_INVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(cmq_audit_last_error(a), "time -1"));
	CU_ASSERT_EQUAL(append(a, INT64_C(253402300800), "x", NULL), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(append(a, INT64_MIN, "x", NULL), CMQ_ERR_INVAL);
	cmq_audit_close(a);
	load_lines(path, &l);
	CU_ASSERT_EQUAL_FATAL(l.n, n);
	for (size_t i = 0; i < n; i++) {
		char want[64];

		snprintf(want, sizeof(want), "\"time\":\"%s\"", cases[i].text);
		CU_ASSERT_PTR_NOT_NULL(strstr(l.line[i], want));
	}
	free_lines(&l);
	expect_ok(path, n, NULL);
}

/* ---- what verify finds ---- */

static void edit(char *line, const char *from, const char *to)
{
	char *p = strstr(line, from);

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL_FATAL(strlen(from), strlen(to));
	memcpy(p, to, strlen(to));
}

static void TEST_edit_middle_line_reported_at_next(void)
{
	const char *path = apath("edit.log");
	struct lines l;

	write_log(path, 5);
	load_lines(path, &l);
	edit(l.line[2], "reason 3", "reason 9");
	save_lines(path, l.line, l.n);
	free_lines(&l);
	expect_bad(path, 4,
	           ": line 4: prev does not match the SHA-256 of line 3: line 3 was edited, or a "
	           "line between them was removed");
}

/* The limit a chain has: an edited or removed last line verifies; only the anchored head
 * shows it. */
static void TEST_last_line_needs_anchored_head(void)
{
	const char *path = apath("last.log");
	struct cmq_audit *a;
	struct cmq_audit_report r;
	struct lines l;
	char anchored[65];

	write_log(path, 5);
	a = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	snprintf(anchored, sizeof(anchored), "%s", cmq_audit_head(a));
	cmq_audit_close(a);
	expect_ok(path, 5, anchored);

	load_lines(path, &l);
	edit(l.line[4], "reason 5", "reason 0");
	save_lines(path, l.line, l.n);
	CU_ASSERT_EQUAL(cmq_audit_verify(path, &r), CMQ_OK);
	CU_ASSERT_EQUAL(r.lines, 5);
	CU_ASSERT_STRING_NOT_EQUAL(r.head, anchored);

	save_lines(path, l.line, 4); /* the last line removed */
	CU_ASSERT_EQUAL(cmq_audit_verify(path, &r), CMQ_OK);
	CU_ASSERT_EQUAL(r.lines, 4);
	CU_ASSERT_STRING_NOT_EQUAL(r.head, anchored);
	free_lines(&l);
}

static void TEST_deleted_swapped_and_cut_lines(void)
{
	const char *path = apath("cut.log");
	char *keep[8];
	struct lines l;

	write_log(path, 5);
	load_lines(path, &l);

	keep[0] = l.line[0]; /* line 3 deleted */
	keep[1] = l.line[1];
	keep[2] = l.line[3];
	keep[3] = l.line[4];
	save_lines(path, keep, 4);
	expect_bad(path, 3,
	           ": line 3: seq 4 after seq 2: a line was removed or lines were reordered");

	keep[0] = l.line[0]; /* lines 2 and 3 swapped */
	keep[1] = l.line[2];
	keep[2] = l.line[1];
	keep[3] = l.line[3];
	keep[4] = l.line[4];
	save_lines(path, keep, 5);
	expect_bad(path, 2, ": line 2: seq 3 after seq 1: a line was removed or lines were");

	keep[0] = l.line[0]; /* line 2 copied over line 3 */
	keep[1] = l.line[1];
	keep[2] = l.line[1];
	save_lines(path, keep, 3);
	expect_bad(path, 3,
	           ": line 3: seq 2 after seq 2: lines were reordered or a line was copied");

	save_lines(path, l.line + 1, 4); /* the first line removed */
	expect_bad(path, 1,
	           ": line 1: seq 2, but a log starts at seq 1: the start of the log was "
	           "removed");
	save_lines(path, l.line + 2, 3); /* the first two */
	expect_bad(path, 1, "the start of the log was removed");
	free_lines(&l);

	/* seq 1 but a prev that is not zeros: not the first line of any log. */
	{
		static const char *const spec[] = {
		    "{\"seq\":1," BODY ",\"prev\":\"" ZEROS "\"}",
		};
		char line[1024];

		snprintf(line, sizeof(line), "%s", spec[0]);
		edit(line, "\"prev\":\"0", "\"prev\":\"1");
		save_lines(path, (char *[]){line}, 1);
		expect_bad(path, 1, ": line 1: prev is not 64 zeros, as the first line's must be");
	}
}

/* Line 2 of three is malformed in one way each; the chain around it is intact. */
static void TEST_malformed_lines_are_explained(void)
{
	static const struct {
		const char *line2;
		const char *want;
	} cases[] = {
	    {"{hello}", ": line 2: column 2: malformed JSON"},
	    {"{\"seq\":2}", ": line 2: missing field \"time\""},
	    {"\"time\":\"2026-11-28T14:05:00Z\",\"actor\":\"a\",\"action\":\"x\",\"target\":\"t\","
	     "\"before\":null,\"after\":null",
	     ": line 2: missing field \"reason\""},
	    {"[1,2]", ": line 2: not a JSON object but an array"},
	    {"\"time\":\"2026-11-28T14:05:00Z\",\"actor\":5,\"action\":\"x\",\"target\":\"t\","
	     "\"before\":null,\"after\":null,\"reason\":\"\"",
	     ": line 2: actor is number 5; it must be a non-empty string"},
	    {"\"time\":\"2026-11-28T14:05:00Z\",\"actor\":\"\",\"action\":\"x\",\"target\":\"t\","
	     "\"before\":null,\"after\":null,\"reason\":\"\"",
	     ": line 2: actor is string \"\"; it must be a non-empty string"},
	    {"\"time\":\"2026-11-28T14:05:00Z\",\"actor\":\"a\",\"action\":\"x\",\"target\":null,"
	     "\"before\":null,\"after\":null,\"reason\":\"\"",
	     ": line 2: target is null; it must be a string"},
	    {"\"time\":\"2026-02-30T14:05:00Z\",\"actor\":\"a\",\"action\":\"x\",\"target\":\"t\","
	     "\"before\":null,\"after\":null,\"reason\":\"\"",
	     ": line 2: time is string \"2026-02-30T14:05:00Z\"; it must be a UTC time"},
	    {"\"time\":\"2026-11-28 14:05:00\",\"actor\":\"a\",\"action\":\"x\",\"target\":\"t\","
	     "\"before\":null,\"after\":null,\"reason\":\"\"",
	     ": line 2: time is string"},
	    {"\"time\":1795874700,\"actor\":\"a\",\"action\":\"x\",\"target\":\"t\","
	     "\"before\":null,\"after\":null,\"reason\":\"\"",
	     ": line 2: time is number 1795874700"},
	    {"\"actor\":\"a\",\"time\":\"2026-11-28T14:05:00Z\",\"action\":\"x\",\"target\":\"t\","
	     "\"before\":null,\"after\":null,\"reason\":\"\"",
	     ": line 2: field \"actor\" out of order; expected \"time\" there"},
	    {BODY ",\"extra\":1", ": line 2: unexpected field \"extra\""},
	    {BODY ",\"actor\":\"b\"", ": line 2: column 117: duplicate key \"actor\""},
	    {"{\"seq\":\"2\"," BODY ",\"prev\":\"" ZEROS "\"}", ": line 2: seq is string \"2\""},
	    {"{\"seq\":0," BODY ",\"prev\":\"" ZEROS "\"}", ": line 2: seq is number 0"},
	    {"{\"seq\":2.0," BODY ",\"prev\":\"" ZEROS "\"}", ": line 2: seq is number 2"},
	    {"{\"seq\":2," BODY ",\"prev\":\"" ZEROS "0\"}",
	     ": line 2: prev is string \"" ZEROS "0\"; it must be 64 lowercase hex digits"},
	    {"{\"seq\":2," BODY ",\"prev\":\"ABCDEF" ZEROS "\"}", "it must be 64 lowercase hex"},
	    {"{\"seq\":2," BODY ",\"prev\":\"" ZEROS "\"} ", ": line 2: space before or after"},
	    {"{\"seq\":2," BODY ",\"prev\":\"" ZEROS "\"}\r", ": line 2: space before or after"},
	    {"{\"seq\":2,\"time\":\"2026-11-28T14:05:00Z\",\"actor\":\"\xff\",\"action\":\"x\","
	     "\"target\":\"t\",\"before\":null,\"after\":null,\"reason\":\"\",\"prev\":\"" ZEROS
	     "\"}",
	     ": line 2: column "},
	    {"{NaN}", ": line 2: column 2: malformed JSON"},
	};
	const char *path = apath("malformed.log");

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *spec[3] = {BODY, cases[i].line2, BODY};

		make_log(path, spec, 3);
		expect_bad(path, 2, cases[i].want);
	}
	/* An empty line. */
	{
		const char *spec[1] = {BODY};

		make_log(path, spec, 1);
		append_raw(path, "\n");
		expect_bad(path, 2, ": line 2: empty line");
	}
	/* And the fixture itself is good: every case above broke exactly one thing. */
	{
		const char *spec[3] = {BODY, BODY, BODY};

		make_log(path, spec, 3);
		expect_ok(path, 3, NULL);
	}
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

static void TEST_verify_io_and_empty(void)
{
	const char *path = apath("empty.log");
	struct cmq_audit_report r;
	char want[4200];
	FILE *f;

	f = fopen(path, "wb");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fclose(f);
	expect_ok(path, 0, ZEROS);

	CU_ASSERT_EQUAL(cmq_audit_verify(apath("missing.log"), &r), CMQ_ERR_IO);
	CU_ASSERT_FALSE(r.ok);
	CU_ASSERT_EQUAL(r.bad_line, 0);
	snprintf(want, sizeof(want), "%s: open: %s", apath("missing.log"), strerror(ENOENT));
	CU_ASSERT_STRING_EQUAL(r.message, want);

	CU_ASSERT_EQUAL(cmq_audit_verify(cmq_test_tmpdir(), &r), CMQ_ERR_IO);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.message, strerror(EISDIR)));
	CU_ASSERT_EQUAL(cmq_audit_verify(NULL, &r), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(cmq_audit_verify(path, NULL), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

/* ---- torn tails ---- */

static void TEST_torn_tail_reported_then_cut_off(void)
{
	const char *path = apath("torn.log");
	struct cmq_audit *a = NULL;
	struct stat before, after;
	struct lines l;
	char err[512], h3[65];

	write_log(path, 3);
	CU_ASSERT_EQUAL_FATAL(stat(path, &before), 0);
	load_lines(path, &l);
	sha_hex(l.line[2], strlen(l.line[2]), h3);
	free_lines(&l);
	append_raw(path, "{\"seq\":4,\"time\":\"2026-11-28T1"); /* a crash mid-write */

	expect_bad(path, 4, ": line 4: no newline at the end: a torn write");
	CU_ASSERT_EQUAL(cmq_audit_open(path, &a, err, sizeof(err)), CMQ_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "warning: cut off a torn last line (29 bytes"));
	CU_ASSERT_EQUAL_FATAL(stat(path, &after), 0);
	CU_ASSERT_EQUAL(after.st_size, before.st_size);
	CU_ASSERT_EQUAL(cmq_audit_next_seq(a), 4);
	CU_ASSERT_STRING_EQUAL(cmq_audit_head(a), h3);
	CU_ASSERT_EQUAL(append(a, T0 + 4, "x", "after the crash"), CMQ_OK);
	cmq_audit_close(a);
	expect_ok(path, 4, NULL);

	/* Nothing but a torn first line: an empty log. */
	{
		FILE *f = fopen(path, "wb");

		CU_ASSERT_PTR_NOT_NULL_FATAL(f);
		fputs("{\"seq\":1,\"ti", f);
		fclose(f);
	}
	CU_ASSERT_EQUAL(cmq_audit_open(path, &a, err, sizeof(err)), CMQ_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(err, "cut off a torn last line (12 bytes after byte offset 0"));
	CU_ASSERT_EQUAL(cmq_audit_next_seq(a), 1);
	CU_ASSERT_STRING_EQUAL(cmq_audit_head(a), ZEROS);
	CU_ASSERT_EQUAL(append(a, T0, "x", NULL), CMQ_OK);
	cmq_audit_close(a);
	expect_ok(path, 1, NULL);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

/* open never chains onto a last line it cannot read, and never cuts what is not a torn
 * append; the file is left exactly as it was. */
static void TEST_open_refuses_bad_end(void)
{
	static const struct {
		const char *tail;
		const char *want;
	} cases[] = {
	    {"not json\n", "the last line (byte offset "},
	    {"{\"seq\":4}\n", "missing field \"time\""},
	    {"\n", "empty line"},
	    {"garbage\n{\"seq\":5,\"ti", "not an audit line"}, /* torn, but after a bad line */
	};
	const char *path = apath("badend.log");

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cmq_audit *a = (struct cmq_audit *)&a;
		struct stat before, after;
		char err[512];

		write_log(path, 3);
		append_raw(path, cases[i].tail);
		CU_ASSERT_EQUAL_FATAL(stat(path, &before), 0);
		CU_ASSERT_EQUAL(cmq_audit_open(path, &a, err, sizeof(err)), CMQ_ERR_PARSE);
		CU_ASSERT_PTR_NULL(a);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
		if (strstr(err, cases[i].want) == NULL)
			fprintf(stderr, "\n  want \"%s\", got: %s", cases[i].want, err);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].want));
		CU_ASSERT_EQUAL_FATAL(stat(path, &after), 0);
		CU_ASSERT_EQUAL(after.st_size, before.st_size);
	}

	/* More bytes without a newline than any line has: not a torn append. */
	{
		struct cmq_audit *a = NULL;
		struct stat st;
		char err[512];
		int fd = open(path, O_WRONLY | O_TRUNC);

		CU_ASSERT_FATAL(fd >= 0);
		CU_ASSERT_EQUAL_FATAL(ftruncate(fd, CMQ_AUDIT_LINE_MAX + 1), 0); /* all NULs */
		close(fd);
		CU_ASSERT_EQUAL(cmq_audit_open(path, &a, err, sizeof(err)), CMQ_ERR_PARSE);
		CU_ASSERT_PTR_NULL(a);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "hold no newline"));
		CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
		CU_ASSERT_EQUAL(st.st_size, CMQ_AUDIT_LINE_MAX + 1);
	}
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

/* ---- content ---- */

/* Append and verify agree on the bound: a line of exactly CMQ_AUDIT_LINE_MAX bytes is fine,
 * one byte more is refused before anything is written; verify names an over-long line. */
static void TEST_line_length_bound(void)
{
	const char *path = apath("long.log");
	struct cmq_audit *a;
	struct stat st;
	struct lines l;
	size_t base;
	off_t size;
	char *reason = malloc(CMQ_AUDIT_LINE_MAX + 2);

	CU_ASSERT_PTR_NOT_NULL_FATAL(reason);
	unlink(path);
	a = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	cmq_audit_set_sync(a, false);
	CU_ASSERT_EQUAL(append(a, T0, "x", ""), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
	base = (size_t)st.st_size - 1; /* line 1 without its newline; line 2 differs only in
	                                  seq's digit and prev's digits */
	memset(reason, 'r', CMQ_AUDIT_LINE_MAX + 1);
	reason[CMQ_AUDIT_LINE_MAX - base] = '\0';
	CU_ASSERT_EQUAL(append(a, T0, "x", reason), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
	size = st.st_size;
	CU_ASSERT_EQUAL(size, (off_t)(base + 1 + CMQ_AUDIT_LINE_MAX + 1));

	reason[CMQ_AUDIT_LINE_MAX - base] = 'r';
	reason[CMQ_AUDIT_LINE_MAX - base + 1] = '\0';
	CU_ASSERT_EQUAL(append(a, T0, "x", reason), CMQ_ERR_TOO_BIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(cmq_audit_last_error(a), path));
	CU_ASSERT_PTR_NOT_NULL(strstr(cmq_audit_last_error(a), "1048577 bytes"));
	CU_ASSERT_EQUAL(cmq_audit_next_seq(a), 3);
	CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
	CU_ASSERT_EQUAL(st.st_size, size);
	cmq_audit_close(a);
	expect_ok(path, 2, NULL);
	a = open_ok(path); /* the 1 MiB last line is read back at open too */
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_EQUAL(cmq_audit_next_seq(a), 3);
	cmq_audit_close(a);

	/* A line one byte over the bound, written by someone else. */
	load_lines(path, &l);
	CU_ASSERT_EQUAL_FATAL(l.n, 2);
	{
		char *line = malloc(CMQ_AUDIT_LINE_MAX + 2);
		char *keep[3] = {l.line[0], line, l.line[1]};

		CU_ASSERT_PTR_NOT_NULL_FATAL(line);
		memset(line, 'x', CMQ_AUDIT_LINE_MAX + 1);
		line[CMQ_AUDIT_LINE_MAX + 1] = '\0';
		save_lines(path, keep, 3);
		expect_bad(path, 2, ": line 2: longer than 1048576 bytes: not an audit line");
		free(line);
	}
	free_lines(&l);
	free(reason);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

static struct json_object *member(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	CU_ASSERT(json_object_object_get_ex(o, key, &v));
	return v;
}

static void TEST_before_after_round_trip(void)
{
	static const char before_text[] =
	    "{\"tier\":\"trusted\",\"categories\":[\"environment\",\"mobility\"],"
	    "\"limits\":{\"rate\":0.25,\"burst\":-3,\"big\":9007199254740993},\"active\":true,"
	    "\"notes\":null,\"name\":\"Zürich \\u65e5\\u672c\"}";
	const char *path = apath("json.log");
	struct json_object *before = json_tokener_parse(before_text);
	struct json_object *after = json_tokener_parse("[1,\"two\",[3],{}]");
	struct cmq_audit_entry e = {T0,    "admin:bob", "vendor.update", "civitas", before,
	                            after, "x"};
	struct cmq_audit *a;
	struct json_object *line;
	struct lines l;

	CU_ASSERT_PTR_NOT_NULL_FATAL(before);
	CU_ASSERT_PTR_NOT_NULL_FATAL(after);
	unlink(path);
	a = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_EQUAL(cmq_audit_append(a, &e), CMQ_OK);
	e.before = after; /* the same object may appear twice, and is left as it was */
	CU_ASSERT_EQUAL(cmq_audit_append(a, &e), CMQ_OK);
	cmq_audit_close(a);

	load_lines(path, &l);
	CU_ASSERT_EQUAL_FATAL(l.n, 2);
	line = json_tokener_parse(l.line[0]);
	CU_ASSERT_PTR_NOT_NULL_FATAL(line);
	CU_ASSERT(json_object_equal(member(line, "before"), before));
	CU_ASSERT(json_object_equal(member(line, "after"), after));
	json_object_put(line);
	line = json_tokener_parse(l.line[1]);
	CU_ASSERT_PTR_NOT_NULL_FATAL(line);
	CU_ASSERT(json_object_equal(member(line, "before"), after));
	json_object_put(line);
	free_lines(&l);
	/* The caller's objects are untouched and still theirs to free. */
	CU_ASSERT_EQUAL(json_object_array_length(after), 4);
	json_object_put(before);
	json_object_put(after);
	expect_ok(path, 2, NULL);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

static void TEST_strings_are_escaped(void)
{
	static const char actor[] = "o'brien \"quoted\" back\\slash /etc";
	static const char target[] = "line1\nline2\r\nend\x01\x1f\x7f";
	static const char reason[] = "naïve café – 日本 😀";
	const char *path = apath("escape.log");
	struct cmq_audit_entry e = {T0, actor, "tab\there", target, NULL, NULL, reason};
	struct cmq_audit *a;
	struct json_object *line;
	struct lines l;
	size_t newlines = 0;

	unlink(path);
	a = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_EQUAL(cmq_audit_append(a, &e), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_audit_append(a, &e), CMQ_OK);
	cmq_audit_close(a);

	load_lines(path, &l);
	for (size_t i = 0; i < l.size; i++)
		newlines += l.buf[i] == '\0'; /* load_lines turned each '\n' into a NUL */
	CU_ASSERT_EQUAL(newlines, 2);
	CU_ASSERT_EQUAL_FATAL(l.n, 2);
	for (const char *p = l.line[0]; *p != '\0'; p++)
		CU_ASSERT((unsigned char)*p >= 0x20);
	CU_ASSERT_PTR_NOT_NULL(strstr(l.line[0], "\"naïve café – 日本 😀\"")); /* UTF-8 as is */
	CU_ASSERT_PTR_NOT_NULL(strstr(l.line[0], "\\\"quoted\\\" back\\\\slash /etc"));
	CU_ASSERT_PTR_NOT_NULL(strstr(l.line[0], "line1\\nline2\\r\\nend\\u0001\\u001f"));
	line = json_tokener_parse(l.line[0]);
	CU_ASSERT_PTR_NOT_NULL_FATAL(line);
	CU_ASSERT_STRING_EQUAL(json_object_get_string(member(line, "actor")), actor);
	CU_ASSERT_STRING_EQUAL(json_object_get_string(member(line, "action")), "tab\there");
	CU_ASSERT_STRING_EQUAL(json_object_get_string(member(line, "target")), target);
	CU_ASSERT_STRING_EQUAL(json_object_get_string(member(line, "reason")), reason);
	json_object_put(line);
	free_lines(&l);
	expect_ok(path, 2, NULL);
}

/* Entries that would not make a verifiable line are refused; nothing is written. */
static void TEST_bad_entries_are_refused(void)
{
	const char *path = apath("refuse.log");
	struct json_object *nan_obj = json_object_new_object();
	struct json_object *bad_key = json_object_new_object();
	struct json_object *deep = json_object_new_array(), *cur = deep;
	struct cmq_audit_entry good = {T0, "admin", "x", "t", NULL, NULL, NULL};
	struct cmq_audit_entry e;
	struct cmq_audit *a;
	struct stat st;
	char head[65];

	json_object_object_add(nan_obj, "rate", json_object_new_double(NAN));
	json_object_object_add(bad_key, "a\"b", json_object_new_int(1));
	for (int i = 0; i < 40; i++) {
		struct json_object *next = json_object_new_array();

		json_object_array_add(cur, next);
		cur = next;
	}
	unlink(path);
	a = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_EQUAL(cmq_audit_append(a, &good), CMQ_OK);
	snprintf(head, sizeof(head), "%s", cmq_audit_head(a));

	CU_ASSERT_EQUAL(cmq_audit_append(a, NULL), CMQ_ERR_INVAL);
	e = good;
	e.actor = NULL;
	CU_ASSERT_EQUAL(cmq_audit_append(a, &e), CMQ_ERR_INVAL);
	e.actor = "";
	CU_ASSERT_EQUAL(cmq_audit_append(a, &e), CMQ_ERR_INVAL);
	e = good;
	e.action = "";
	CU_ASSERT_EQUAL(cmq_audit_append(a, &e), CMQ_ERR_INVAL);
	e = good;
	e.target = NULL;
	CU_ASSERT_EQUAL(cmq_audit_append(a, &e), CMQ_ERR_INVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(cmq_audit_last_error(a), path));
	e = good;
	e.actor = "bad \xff\xfe utf-8";
	CU_ASSERT_EQUAL(cmq_audit_append(a, &e), CMQ_ERR_INVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(cmq_audit_last_error(a), "does not make a valid audit line"));
	e = good;
	e.after = nan_obj;
	CU_ASSERT_EQUAL(cmq_audit_append(a, &e), CMQ_ERR_INVAL);
	e.after = bad_key;
	CU_ASSERT_EQUAL(cmq_audit_append(a, &e), CMQ_ERR_INVAL);
	e.after = deep;
	CU_ASSERT_EQUAL(cmq_audit_append(a, &e), CMQ_ERR_INVAL);

	CU_ASSERT_EQUAL(cmq_audit_next_seq(a), 2);
	CU_ASSERT_STRING_EQUAL(cmq_audit_head(a), head);
	CU_ASSERT_EQUAL(cmq_audit_append(a, &good), CMQ_OK);
	CU_ASSERT_STRING_EQUAL(cmq_audit_last_error(a), "");
	cmq_audit_close(a);
	CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
	expect_ok(path, 2, NULL);
	json_object_put(nan_obj);
	json_object_put(bad_key);
	json_object_put(deep);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

/* ---- writers ---- */

/* The SHA-256 hex of a log's last line (static buffer). */
static const char *head_of_last_line(const char *path)
{
	static char hex[65];
	struct lines l;

	load_lines(path, &l);
	hex[0] = '\0';
	if (l.n > 0)
		sha_hex(l.line[l.n - 1], strlen(l.line[l.n - 1]), hex);
	free_lines(&l);
	return hex;
}

/* Two writers on one log - two handles here, and another process - chain onto each
 * other's lines: the chain stays whole and seq continuous. */
static void TEST_writers_share_the_chain(void)
{
	const char *path = apath("share.log");
	struct cmq_audit *a, *b;
	struct cmq_audit_report r;
	pid_t pid;
	int status;

	write_log(path, 1);
	a = open_ok(path);
	b = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_EQUAL(append(a, T0, "a1", NULL), CMQ_OK);
	CU_ASSERT_EQUAL(append(b, T0, "b1", NULL), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_audit_next_seq(b), 4);
	CU_ASSERT_EQUAL(append(a, T0, "a2", NULL), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_audit_next_seq(a), 5);
	CU_ASSERT_STRING_EQUAL(cmq_audit_head(a), head_of_last_line(path));

	pid = fork(); /* another process appends between two of ours */
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		struct cmq_audit *c = NULL;
		char cerr[512];
		int ok = cmq_audit_open(path, &c, cerr, sizeof(cerr)) == CMQ_OK &&
		         append(c, T0, "child", NULL) == CMQ_OK;

		cmq_audit_close(c);
		_exit(ok ? 0 : 1);
	}
	CU_ASSERT_EQUAL_FATAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CU_ASSERT_EQUAL(append(b, T0, "b2", NULL), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_audit_next_seq(b), 7);
	cmq_audit_close(a);
	cmq_audit_close(b);
	CU_ASSERT_EQUAL(cmq_audit_verify(path, &r), CMQ_OK);
	CU_ASSERT_TRUE(r.ok);
	CU_ASSERT_EQUAL(r.lines, 6);
	cmq_audit_close(NULL);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

/* Bytes that are not an audit line at the end are never chained onto, nor cut away. */
static void TEST_foreign_append_is_noticed(void)
{
	const char *path = apath("foreign.log");
	struct cmq_audit *a;
	struct stat st;

	write_log(path, 2);
	a = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	append_raw(path, "echo >> audit.log\n");
	CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
	CU_ASSERT_EQUAL(append(a, T0, "x", NULL), CMQ_ERR_PARSE);
	CU_ASSERT_PTR_NOT_NULL(strstr(cmq_audit_last_error(a), "is not an audit line"));
	CU_ASSERT_PTR_NOT_NULL(strstr(cmq_audit_last_error(a), path));
	cmq_audit_close(a);
	{
		struct stat now;

		CU_ASSERT_EQUAL_FATAL(stat(path, &now), 0);
		CU_ASSERT_EQUAL(now.st_size, st.st_size);
	}
	expect_bad(path, 3, ": line 3: column 1: malformed JSON");
}

/*
 * A write that fails half-way (the file size limit, as a full disk would) is cut off again:
 * the chain stays valid, seq and head do not move, and the next append works. In a child,
 * which can lower its own RLIMIT_FSIZE.
 */
static void TEST_failed_write_keeps_chain(void)
{
	const char *path = apath("short.log");
	struct lines l;
	pid_t pid;
	int status;

	write_log(path, 2);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		struct cmq_audit *a = NULL;
		struct rlimit old, rl;
		struct stat st;
		char err[512], head[65];

		signal(SIGXFSZ, SIG_IGN);
		if (cmq_audit_open(path, &a, err, sizeof(err)) != CMQ_OK || stat(path, &st) != 0 ||
		    getrlimit(RLIMIT_FSIZE, &old) != 0)
			_exit(10);
		snprintf(head, sizeof(head), "%s", cmq_audit_head(a));
		rl = old;
		rl.rlim_cur = (rlim_t)st.st_size + 50; /* the line fits only partly */
		if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
			_exit(11);
		if (append(a, T0, "x", "does not fit") != CMQ_ERR_IO)
			_exit(12);
		if (strstr(cmq_audit_last_error(a), "write: short write") == NULL)
			_exit(13);
		if (stat(path, &st) != 0 || st.st_size != (off_t)rl.rlim_cur - 50)
			_exit(14);
		if (cmq_audit_next_seq(a) != 3 || strcmp(cmq_audit_head(a), head) != 0)
			_exit(15);
		rl.rlim_cur = (rlim_t)st.st_size; /* now not a single byte fits */
		if (setrlimit(RLIMIT_FSIZE, &rl) != 0 || append(a, T0, "x", "no") != CMQ_ERR_IO ||
		    strstr(cmq_audit_last_error(a), strerror(EFBIG)) == NULL)
			_exit(16);
		if (setrlimit(RLIMIT_FSIZE, &old) != 0 || append(a, T0, "x", "fits") != CMQ_OK)
			_exit(17);
		cmq_audit_close(a);
		_exit(0);
	}
	CU_ASSERT_EQUAL_FATAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT(WIFEXITED(status));
	CU_ASSERT_EQUAL(WEXITSTATUS(status), 0);
	expect_ok(path, 3, NULL);
	load_lines(path, &l);
	CU_ASSERT_EQUAL_FATAL(l.n, 3);
	CU_ASSERT_PTR_NOT_NULL(strstr(l.line[2], "\"reason\":\"fits\""));
	free_lines(&l);
}

/* Only the end of the file is read at open: 8 GiB (sparse) open in well under a second. */
static void TEST_huge_log_opens_without_reading_it(void)
{
	const char *small = apath("one.log"), *path = apath("huge.log");
	struct cmq_audit *a;
	struct timespec t0, t1;
	struct lines l;
	char head[65];
	double secs;
	int fd;

	write_log(small, 1);
	load_lines(small, &l);
	CU_ASSERT_EQUAL_FATAL(l.n, 1);
	sha_hex(l.line[0], strlen(l.line[0]), head);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL_FATAL(ftruncate(fd, (off_t)8 << 30), 0);
	CU_ASSERT_EQUAL_FATAL(lseek(fd, 0, SEEK_END), (off_t)8 << 30);
	CU_ASSERT_EQUAL(write(fd, "\n", 1), 1);
	CU_ASSERT_EQUAL(write(fd, l.line[0], strlen(l.line[0])), (ssize_t)strlen(l.line[0]));
	CU_ASSERT_EQUAL(write(fd, "\n", 1), 1);
	close(fd);
	free_lines(&l);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	a = open_ok(path);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT(secs < 0.5);
	CU_ASSERT_EQUAL(cmq_audit_next_seq(a), 2);
	CU_ASSERT_STRING_EQUAL(cmq_audit_head(a), head);
	cmq_audit_close(a);
	unlink(path);
}

/* ---- out of memory ---- */

static void TEST_oom_sweep(void)
{
	const char *path = apath("oom.log");
	bool opened = false, appended = false, verified = false;
	uint64_t lines = 2;

	write_log(path, 2);
	for (long n = 0; n < 200 && !(opened && appended); n++) {
		struct cmq_audit *a = NULL;
		char err[512];
		int rc;

		cmq_test_fail_after(n);
		rc = cmq_audit_open(path, &a, err, sizeof(err));
		if (rc == CMQ_OK) {
			opened = true;
			cmq_audit_set_sync(a, false);
			rc = append(a, T0, "x", "oom");
			if (rc == CMQ_OK) {
				appended = true;
				lines++;
			} else {
				CU_ASSERT_PTR_NOT_NULL(
				    strstr(cmq_audit_last_error(a), "out of memory"));
				CU_ASSERT_EQUAL(cmq_audit_next_seq(a), lines + 1);
			}
		} else {
			CU_ASSERT_PTR_NULL(a);
			CU_ASSERT_PTR_NOT_NULL(strstr(err, "out of memory"));
		}
		cmq_test_fail_after(-1);
		CU_ASSERT(rc == CMQ_OK || rc == CMQ_ERR_NOMEM);
		cmq_audit_close(a);
		CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
		expect_ok(path, lines, NULL); /* a failure never damages the log */
	}
	CU_ASSERT(opened && appended);

	for (long n = 0; n < 50 && !verified; n++) {
		struct cmq_audit_report r;
		int rc;

		cmq_test_fail_after(n);
		rc = cmq_audit_verify(path, &r);
		cmq_test_fail_after(-1);
		CU_ASSERT(rc == CMQ_OK || rc == CMQ_ERR_NOMEM);
		if (rc == CMQ_ERR_NOMEM) {
			CU_ASSERT_FALSE(r.ok);
			CU_ASSERT_PTR_NOT_NULL(strstr(r.message, "out of memory"));
		}
		verified = rc == CMQ_OK;
		CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
	}
	CU_ASSERT(verified);
}

int main(void)
{
	static const struct cmq_test_case cases[] = {
	    {"line format and chain", TEST_line_format_and_chain},
	    {"reopen continues chain", TEST_reopen_continues_chain},
	    {"time format", TEST_time_format},
	    {"edit middle line reported at next", TEST_edit_middle_line_reported_at_next},
	    {"last line needs anchored head", TEST_last_line_needs_anchored_head},
	    {"deleted, swapped and cut lines", TEST_deleted_swapped_and_cut_lines},
	    {"malformed lines are explained", TEST_malformed_lines_are_explained},
	    {"verify io and empty", TEST_verify_io_and_empty},
	    {"torn tail reported then cut off", TEST_torn_tail_reported_then_cut_off},
	    {"open refuses bad end", TEST_open_refuses_bad_end},
	    {"line length bound", TEST_line_length_bound},
	    {"before/after round trip", TEST_before_after_round_trip},
	    {"strings are escaped", TEST_strings_are_escaped},
	    {"bad entries are refused", TEST_bad_entries_are_refused},
	    {"writers share the chain", TEST_writers_share_the_chain},
	    {"foreign append is noticed", TEST_foreign_append_is_noticed},
	    {"failed write keeps chain", TEST_failed_write_keeps_chain},
	    {"huge log opens without reading it", TEST_huge_log_opens_without_reading_it},
	    {"oom sweep", TEST_oom_sweep},
	    {NULL, NULL},
	};

	return cmq_test_run("audit", cases);
}
