/*
 * test_jsonutil.c - core/jsonutil (strict parsing with line:column errors,
 * duplicate keys, depth limit, JSON paths, typed getters) and core/diag
 * (line format, quoting, the entry cap).
 */
#include "cmq_test.h"

#include "alloc.h"
#include "diag.h"
#include "error.h"
#include "jsonutil.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void dump_diag(const struct cmq_diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(stderr, "    %s %s\n", d->entries[i].level == CMQ_DIAG_ERROR ? "E" : "W",
		        d->entries[i].text);
}

/* ---- parsing ---- */

static const struct {
	const char *text;
	size_t len;         /* 0 = strlen(text) */
	int rc;             /* expected return code */
	const char *expect; /* substring of the only diagnostic, or NULL when rc == CMQ_OK */
} parse_cases[] = {
    {"{\"a\": [1, 2], \"b\": {\"c\": null}}", 0, CMQ_OK, NULL},
    {"  {}\n\n", 0, CMQ_OK, NULL},
    /* malformed, with line:column of the offending character */
    {"{\n  \"a\": 1\n  \"b\": 2\n}", 0, CMQ_ERR_PARSE, "x.json: 3:3: malformed JSON: "},
    {"{\"a\": 1,}", 0, CMQ_ERR_PARSE, "x.json: 1:9: malformed JSON: "},
    {"[1,]", 0, CMQ_ERR_PARSE, "x.json: 1:4: malformed JSON: "},
    {"/* c */ {}", 0, CMQ_ERR_PARSE, "x.json: 1:1: malformed JSON: "},
    {"{a: 1}", 0, CMQ_ERR_PARSE, "x.json: 1:2: malformed JSON: "},
    {"", 0, CMQ_ERR_PARSE, "x.json: 1:1: malformed JSON: unexpected end of document"},
    {"{\"a\":", 0, CMQ_ERR_PARSE, "x.json: 1:6: malformed JSON: unexpected end of document"},
    {"\"\xff\"", 0, CMQ_ERR_PARSE, "x.json: 1:2: malformed JSON: "},
    /* trailing text after the document */
    {"{} x", 0, CMQ_ERR_PARSE, "x.json: 1:4: malformed JSON: "},
    {"{}\n\n  ]", 0, CMQ_ERR_PARSE, "x.json: 3:3: malformed JSON: "},
    {"1 2", 0, CMQ_ERR_PARSE, "x.json: 1:3: malformed JSON: "},
    /* NUL byte */
    {"{\"a\":\0}", 7, CMQ_ERR_PARSE, "x.json: 1:6: malformed JSON: NUL byte in the file"},
    {"{\n\n  \0", 6, CMQ_ERR_PARSE, "x.json: 3:3: malformed JSON: NUL byte in the file"},
    /* duplicate keys, at the second occurrence */
    {"{\"a\": 1, \"a\": 2}", 0, CMQ_ERR_PARSE,
     "x.json: 1:10: duplicate key \"a\" in the same object; each key may appear once"},
    {"{\"o\": {\"k\": 1,\n\"k\": 2}}", 0, CMQ_ERR_PARSE, "x.json: 2:1: duplicate key \"k\""},
    {"[{\"k\": 1}, {\"k\": 1, \"j\": 0, \"k\": 2}]", 0, CMQ_ERR_PARSE,
     "x.json: 1:29: duplicate key \"k\""},
    /* escapes in keys could disguise a duplicate ("\u0074ier" is "tier"): refused */
    {"{\"a\\\"b\": 1}", 0, CMQ_ERR_PARSE, "x.json: 1:2: escape sequence in an object key"},
    {"{\"tier\": \"blocked\", \"\\u0074ier\": \"trusted\"}", 0, CMQ_ERR_PARSE,
     "x.json: 1:21: escape sequence in an object key"},
    /* json-c takes NaN and Infinity; JSON does not */
    {"{\"k\": NaN}", 0, CMQ_ERR_PARSE, "x.json: 1:7: malformed JSON: NaN is not a JSON value"},
    {"{\"k\": -Infinity}", 0, CMQ_ERR_PARSE, "x.json: 1:8: malformed JSON: Infinity is not"},
    {"{\"k\": [1e5, 2.5E-3, true, false, null]}", 0, CMQ_OK, NULL},
    {"{\"a\": {\"x\": 1}, \"b\": 2, \"a\": 3}", 0, CMQ_ERR_PARSE,
     "x.json: 1:25: duplicate key \"a\""},
    /* json-c accepts single-quoted keys even when strict; they would hide duplicates */
    {"{\"tier\": \"blocked\", 'tier': \"trusted\"}", 0, CMQ_ERR_PARSE,
     "x.json: 1:21: malformed JSON: single-quoted key"},
    /* equal keys in different objects, or at different depths, are fine */
    {"{\"a\": {\"k\": 1}, \"b\": {\"k\": 1}}", 0, CMQ_OK, NULL},
    {"[{\"k\": 1}, {\"k\": 2}]", 0, CMQ_OK, NULL},
    {"{\"k\": {\"k\": {\"k\": 1}}}", 0, CMQ_OK, NULL},
    {"{\"a\": {\"b\": 1}, \"b\": 2}", 0, CMQ_OK, NULL},
    /* keys inside string values are not keys; nor are braces and quotes there */
    {"{\"x\": \"{\\\"a\\\": 1, \\\"a\\\": 1}\", \"y\": \"it's\"}", 0, CMQ_OK, NULL},
    {"{\"x\": \"}\", \"x2\": \"{\"}", 0, CMQ_OK, NULL},
};

static void TEST_parse_reports_line_and_column(void)
{
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		size_t len = parse_cases[i].len ? parse_cases[i].len : strlen(parse_cases[i].text);
		struct json_object *o = (struct json_object *)&len;
		struct cmq_diag d;
		int rc;
		bool ok;

		cmq_diag_init(&d);
		rc = cmq_json_parse(parse_cases[i].text, len, "x.json", &d, &o);
		if (parse_cases[i].rc == CMQ_OK)
			ok = rc == CMQ_OK && o != NULL && d.n == 0;
		else
			ok = rc == parse_cases[i].rc && o == NULL && d.n == 1 && d.errors == 1 &&
			     cmq_diag_find(&d, parse_cases[i].expect) != NULL;
		if (!ok) {
			fprintf(stderr, "\n  case %zu (%s): rc=%s\n", i, parse_cases[i].text,
			        cmq_err_name(rc));
			dump_diag(&d);
		}
		CU_ASSERT_TRUE(ok);
		json_object_put(rc == CMQ_OK ? o : NULL);
		cmq_diag_cleanup(&d);
	}
}

static char *nested(int depth, bool objects)
{
	char *s = malloc((size_t)depth * 6 + 2);
	size_t n = 0;

	for (int i = 0; i < depth; i++) {
		if (objects) {
			memcpy(s + n, "{\"k\":", 5);
			n += 5;
		} else {
			s[n++] = '[';
		}
	}
	s[n++] = '1';
	for (int i = 0; i < depth; i++)
		s[n++] = objects ? '}' : ']';
	s[n] = '\0';
	return s;
}

static void TEST_depth_limit(void)
{
	static const struct {
		int depth;
		bool objects;
		int rc;
	} cases[] = {
	    {1, false, CMQ_OK},
	    {20, false, CMQ_OK},
	    {20, true, CMQ_OK},
	    /* json-c counts the innermost value as a level too */
	    {CMQ_JSON_MAX_DEPTH - 1, false, CMQ_OK},
	    {CMQ_JSON_MAX_DEPTH - 1, true, CMQ_OK},
	    {CMQ_JSON_MAX_DEPTH, false, CMQ_ERR_PARSE},
	    {CMQ_JSON_MAX_DEPTH, true, CMQ_ERR_PARSE},
	    {40, false, CMQ_ERR_PARSE},
	    {40, true, CMQ_ERR_PARSE},
	    {100000, false, CMQ_ERR_PARSE},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = nested(cases[i].depth, cases[i].objects);
		struct json_object *o = NULL;
		struct cmq_diag d;
		int rc;

		cmq_diag_init(&d);
		rc = cmq_json_parse(text, strlen(text), "deep.json", &d, &o);
		CU_ASSERT_EQUAL(rc, cases[i].rc);
		if (cases[i].rc != CMQ_OK) {
			char where[64];

			/* The error points at the first value past the limit. */
			snprintf(where, sizeof(where), "deep.json: 1:%d: malformed JSON: ",
			         (cases[i].objects ? 5 : 1) * CMQ_JSON_MAX_DEPTH + 1);
			CU_ASSERT_PTR_NULL(o);
			CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&d, where));
			CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&d, "nesting depth <= 32"));
		} else {
			CU_ASSERT_EQUAL(d.n, 0);
		}
		if (rc != cases[i].rc)
			fprintf(stderr, "\n  depth %d: rc=%s\n", cases[i].depth, cmq_err_name(rc));
		json_object_put(o);
		cmq_diag_cleanup(&d);
		free(text);
	}
}

static char *many_keys(int n)
{
	char *s = malloc((size_t)n * 16 + 4);
	size_t off = 0;

	s[off++] = '{';
	for (int i = 0; i < n; i++)
		off += (size_t)snprintf(s + off, 16, "%s\"k%d\":%d", i ? "," : "", i, i);
	s[off++] = '}';
	s[off] = '\0';
	return s;
}

static void TEST_key_count_limit(void)
{
	char *ok_text = many_keys(4096), *big_text = many_keys(4097);
	struct json_object *o = NULL;
	struct cmq_diag d;

	cmq_diag_init(&d);
	CU_ASSERT_EQUAL(cmq_json_parse(ok_text, strlen(ok_text), "k.json", &d, &o), CMQ_OK);
	CU_ASSERT_EQUAL(json_object_object_length(o), 4096);
	json_object_put(o);
	CU_ASSERT_EQUAL(cmq_json_parse(big_text, strlen(big_text), "k.json", &d, &o),
	                CMQ_ERR_TOO_BIG);
	CU_ASSERT_PTR_NULL(o);
	CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&d, "k.json: 1:"));
	CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&d, ": object has more than 4096 keys"));
	cmq_diag_cleanup(&d);
	free(ok_text);
	free(big_text);
}

static void TEST_load_file(void)
{
	static const char text[] = "{\"a\": [1, 2, 3]}\n";
	uint8_t want[32], got[32];
	struct json_object *o = NULL;
	struct cmq_diag d;
	char path[4096], missing[4200];

	snprintf(path, sizeof(path), "%s", cmq_test_write_file("load.json", text));
	snprintf(missing, sizeof(missing), "%s/missing.json", cmq_test_tmpdir());
	SHA256((const unsigned char *)text, strlen(text), want);
	cmq_diag_init(&d);

	CU_ASSERT_EQUAL(cmq_json_load_file(path, "shown.json", 1024, &d, &o, got), CMQ_OK);
	CU_ASSERT_PTR_NOT_NULL(o);
	CU_ASSERT_EQUAL(memcmp(want, got, 32), 0);
	CU_ASSERT_EQUAL(d.n, 0);
	json_object_put(o);

	/* The display name, not the path, goes into messages. */
	CU_ASSERT_EQUAL(cmq_json_load_file(missing, "shown.json", 1024, &d, &o, NULL), CMQ_ERR_IO);
	CU_ASSERT_PTR_NULL(o);
	CU_ASSERT_PTR_NOT_NULL(
	    cmq_diag_find(&d, "shown.json: cannot open: No such file or directory"));
	CU_ASSERT_EQUAL(cmq_json_load_file(cmq_test_tmpdir(), "dir", 1024, &d, &o, NULL),
	                CMQ_ERR_IO);
	CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&d, "dir: not a regular file"));
	CU_ASSERT_EQUAL(cmq_json_load_file(path, "small.json", 10, &d, &o, NULL), CMQ_ERR_TOO_BIG);
	CU_ASSERT_PTR_NOT_NULL(
	    cmq_diag_find(&d, "small.json: file is 17 bytes; the limit is 10 bytes"));
	CU_ASSERT_EQUAL(cmq_json_load_file(path, "exact.json", 17, &d, &o, NULL), CMQ_OK);
	json_object_put(o);
	snprintf(path, sizeof(path), "%s", cmq_test_write_file("bad.json", "{\n\"a\" 1}\n"));
	CU_ASSERT_EQUAL(cmq_json_load_file(path, "bad.json", 1024, &d, &o, NULL), CMQ_ERR_PARSE);
	CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&d, "bad.json: 2:5: malformed JSON: "));
	CU_ASSERT_EQUAL(d.errors, 4);
	cmq_diag_cleanup(&d);
}

static void TEST_load_file_out_of_memory(void)
{
	char path[4096];
	long before = cmq_test_live_allocations(), n;
	bool done = false;

	/* Enough keys in one object to make the duplicate scan grow its table. */
	{
		char *text = many_keys(100);

		snprintf(path, sizeof(path), "%s", cmq_test_write_file("oom.json", text));
		free(text);
	}
	for (n = 0; n < 1000 && !done; n++) {
		struct json_object *o = (struct json_object *)&n;
		struct cmq_diag d;
		int rc;

		cmq_diag_init(&d);
		cmq_test_fail_after(n);
		rc = cmq_json_load_file(path, "oom.json", 1 << 20, &d, &o, NULL);
		done = !cmq_test_failure_fired();
		cmq_test_fail_after(-1);
		CU_ASSERT_EQUAL(rc, done ? CMQ_OK : CMQ_ERR_NOMEM);
		CU_ASSERT_EQUAL(o != NULL, done);
		json_object_put(done ? o : NULL);
		cmq_diag_cleanup(&d);
		CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
	}
	CU_ASSERT_TRUE(done);
	CU_ASSERT_TRUE(n >= 4); /* the buffer and three growths of the key table */
}

/* ---- JSON paths ---- */

static void TEST_jpath_push_pop(void)
{
	struct cmq_jctx c;
	size_t a, i, w;

	cmq_jctx_init(&c, "f.json", NULL);
	CU_ASSERT_STRING_EQUAL(cmq_jpath(&c), "$");
	a = cmq_jpath_push_key(&c, "a");
	i = cmq_jpath_push_index(&c, 3);
	w = cmq_jpath_push_key(&c, "we ird");
	CU_ASSERT_EQUAL(a, 0);
	CU_ASSERT_EQUAL(i, 1);
	CU_ASSERT_EQUAL(w, 2);
	CU_ASSERT_STRING_EQUAL(cmq_jpath(&c), "$.a[3][\"we ird\"]");
	cmq_jpath_pop(&c, w);
	CU_ASSERT_STRING_EQUAL(cmq_jpath(&c), "$.a[3]");
	cmq_jpath_pop(&c, i);
	CU_ASSERT_STRING_EQUAL(cmq_jpath(&c), "$.a");
	cmq_jpath_pop(&c, a);
	CU_ASSERT_STRING_EQUAL(cmq_jpath(&c), "$");

	static const struct {
		const char *key;
		const char *path;
	} keys[] = {
	    {"max_payload-bytes", "$.max_payload-bytes"},
	    {"K9", "$.K9"},
	    {"a.b", "$[\"a.b\"]"},
	    {"", "$[\"\"]"},
	    {"a\"b", "$[\"a\\\"b\"]"},
	    {"line\nbreak", "$[\"line\\nbreak\"]"},
	    {"\xc3\xa9t\xc3\xa9", "$[\"\xc3\xa9t\xc3\xa9\"]"},
	};
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		size_t old = cmq_jpath_push_key(&c, keys[k].key);

		CU_ASSERT_STRING_EQUAL(cmq_jpath(&c), keys[k].path);
		cmq_jpath_pop(&c, old);
	}
	i = cmq_jpath_push_index(&c, 18446744073709551615u);
	CU_ASSERT_STRING_EQUAL(cmq_jpath(&c), "$[18446744073709551615]");
	cmq_jpath_pop(&c, i);
	/* A mark from a deeper level than the current one is ignored. */
	cmq_jpath_pop(&c, 5);
	CU_ASSERT_STRING_EQUAL(cmq_jpath(&c), "$");
}

/* A path longer than CMQ_JPATH_MAX keeps what fits and ends in "..."; so does one deeper
 * than CMQ_JPATH_DEPTH segments. */
static void TEST_jpath_truncates_visibly(void)
{
	static const char key[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	char full[2048];
	struct cmq_jctx c;
	size_t marks[CMQ_JPATH_DEPTH + 8], off = 1;
	const char *path;

	memset(&c, 'Z', sizeof(c)); /* stale bytes must never show */
	cmq_jctx_init(&c, "f.json", NULL);
	full[0] = '$';
	for (int i = 0; i < 12; i++) {
		marks[i] = cmq_jpath_push_key(&c, key);
		off += (size_t)snprintf(full + off, sizeof(full) - off, ".%s", key);
	}
	path = cmq_jpath(&c);
	CU_ASSERT_EQUAL(strlen(path), CMQ_JPATH_MAX - 1);
	CU_ASSERT_EQUAL(memcmp(path, full, CMQ_JPATH_MAX - 4), 0);
	CU_ASSERT_STRING_EQUAL(path + CMQ_JPATH_MAX - 4, "...");
	CU_ASSERT_PTR_NULL(strchr(path, 'Z'));
	/* Popping back below the cut restores the exact path. */
	cmq_jpath_pop(&c, marks[2]);
	path = cmq_jpath(&c);
	CU_ASSERT_EQUAL(strlen(path), 1 + 2 * (sizeof(key)));
	CU_ASSERT_EQUAL(strncmp(path, full, strlen(path)), 0);
	cmq_jpath_pop(&c, marks[0]);
	CU_ASSERT_STRING_EQUAL(cmq_jpath(&c), "$");
	/* Deeper than the segments kept: the kept ones, then "...". */
	for (size_t i = 0; i < CMQ_JPATH_DEPTH + 8; i++)
		marks[i] = cmq_jpath_push_index(&c, 1);
	path = cmq_jpath(&c);
	CU_ASSERT_EQUAL(strncmp(path, "$[1][1][1]", 10), 0);
	CU_ASSERT_STRING_EQUAL(path + strlen(path) - 3, "...");
	cmq_jpath_pop(&c, marks[CMQ_JPATH_DEPTH + 2]);
	cmq_jpath_pop(&c, marks[1]);
	CU_ASSERT_STRING_EQUAL(cmq_jpath(&c), "$[1]");
}

/* ---- typed getters ---- */

struct getter_env {
	struct cmq_diag d;
	struct cmq_jctx c;
	struct json_object *root;
};

static void env_open(struct getter_env *e, const char *json)
{
	cmq_diag_init(&e->d);
	cmq_jctx_init(&e->c, "t.json", &e->d);
	e->root = NULL;
	CU_ASSERT_EQUAL_FATAL(cmq_json_parse(json, strlen(json), "t.json", &e->d, &e->root),
	                      CMQ_OK);
}

static void env_close(struct getter_env *e)
{
	json_object_put(e->root);
	cmq_diag_cleanup(&e->d);
}

/* Exactly one new entry since entry `before`: an error whose text is `text`. */
static bool one_error(const struct getter_env *e, size_t before, const char *text)
{
	if (e->d.n != before + 1 || e->d.entries[before].level != CMQ_DIAG_ERROR ||
	    strcmp(e->d.entries[before].text, text) != 0) {
		fprintf(stderr, "\n  expected: %s\n", text);
		dump_diag(&e->d);
		return false;
	}
	return true;
}

static void TEST_jstring_messages(void)
{
	struct getter_env e;
	const char *s = "untouched";
	char *longtext;

	env_open(&e,
	         "{\"s\": \"abcd\", \"n\": 3, \"nul\": \"a\\u0000b\", \"surrogate\": \"\\ud800\", "
	         "\"o\": {\"deep\": 1}}");
	CU_ASSERT_TRUE(cmq_jstring(&e.c, e.root, "s", true, 4, &s));
	CU_ASSERT_STRING_EQUAL(s, "abcd");
	CU_ASSERT_EQUAL(e.d.n, 0);

	s = "untouched";
	CU_ASSERT_TRUE(cmq_jstring(&e.c, e.root, "absent", false, 0, &s));
	CU_ASSERT_STRING_EQUAL(s, "untouched");
	CU_ASSERT_EQUAL(e.d.n, 0);

	CU_ASSERT_FALSE(cmq_jstring(&e.c, e.root, "absent", true, 0, &s));
	CU_ASSERT_TRUE(one_error(&e, 0, "t.json: $.absent: missing required field"));
	CU_ASSERT_FALSE(cmq_jstring(&e.c, e.root, "s", true, 3, &s));
	CU_ASSERT_TRUE(one_error(&e, 1, "t.json: $.s: string is 4 bytes long; at most 3 allowed"));
	CU_ASSERT_FALSE(cmq_jstring(&e.c, e.root, "n", true, 0, &s));
	CU_ASSERT_TRUE(one_error(&e, 2, "t.json: $.n: expected a string, got number 3"));
	CU_ASSERT_FALSE(cmq_jstring(&e.c, e.root, "nul", true, 0, &s));
	CU_ASSERT_TRUE(one_error(&e, 3, "t.json: $.nul: string contains a NUL character"));
	CU_ASSERT_FALSE(cmq_jstring(&e.c, e.root, "o", true, 0, &s));
	CU_ASSERT_TRUE(one_error(&e, 4, "t.json: $.o: expected a string, got an object"));
	CU_ASSERT_STRING_EQUAL(s, "untouched");
	CU_ASSERT_STRING_EQUAL(cmq_jpath(&e.c), "$"); /* every getter restores the path */

	/* json-c turns a lone surrogate into U+FFFD, so parsed text is always UTF-8. */
	CU_ASSERT_TRUE(cmq_jstring(&e.c, e.root, "surrogate", true, 0, &s));
	CU_ASSERT_STRING_EQUAL(s, "\xef\xbf\xbd");

	/* Built by hand, a string can still be invalid UTF-8. */
	json_object_object_add(e.root, "bytes", json_object_new_string_len("a\xff", 2));
	CU_ASSERT_FALSE(cmq_jstring(&e.c, e.root, "bytes", true, 0, &s));
	CU_ASSERT_TRUE(one_error(&e, 5, "t.json: $.bytes: string is not valid UTF-8"));

	/* max_len 0 means CMQ_JSON_STRING_MAX. */
	longtext = malloc(CMQ_JSON_STRING_MAX + 2);
	memset(longtext, 'x', CMQ_JSON_STRING_MAX + 1);
	longtext[CMQ_JSON_STRING_MAX + 1] = '\0';
	json_object_object_add(e.root, "long", json_object_new_string(longtext));
	longtext[CMQ_JSON_STRING_MAX] = '\0';
	json_object_object_add(e.root, "max", json_object_new_string(longtext));
	CU_ASSERT_TRUE(cmq_jstring(&e.c, e.root, "max", true, 0, &s));
	CU_ASSERT_FALSE(cmq_jstring(&e.c, e.root, "long", true, 0, &s));
	CU_ASSERT_TRUE(
	    one_error(&e, 6, "t.json: $.long: string is 4097 bytes long; at most 4096 allowed"));
	free(longtext);

	/* cmq_jas_string reports at the current path. */
	{
		size_t old = cmq_jpath_push_key(&e.c, "list");

		cmq_jpath_push_index(&e.c, 2);
		CU_ASSERT_PTR_NULL(cmq_jas_string(&e.c, json_object_object_get(e.root, "n"), 0));
		CU_ASSERT_TRUE(
		    one_error(&e, 7, "t.json: $.list[2]: expected a string, got number 3"));
		cmq_jpath_pop(&e.c, old);
	}
	env_close(&e);
}

/* ---- a big array parsed one element at a time (cmq_json_split_text) ---- */

struct split_run {
	struct cmq_diag d;
	struct json_object *root;
	struct cmq_json_split s;
	int rc;
};

/* Split text at "rules", parse every element, finish; each element's "id" is appended to
 * ids (comma-separated) so the test can see what was found. */
static void split_run(struct split_run *r, const char *text, char *ids, size_t idlen)
{
	size_t len = strlen(text), off = 0;
	char *copy = cmq_malloc(len + 1);

	CU_ASSERT_PTR_NOT_NULL_FATAL(copy);
	memcpy(copy, text, len + 1);
	cmq_diag_init(&r->d);
	ids[0] = '\0';
	r->rc = cmq_json_split_text(copy, len, "p.json", "rules", &r->d, &r->root, &r->s);
	if (r->rc != CMQ_OK)
		return;
	for (size_t i = 0; r->s.found && i < r->s.n; i++) {
		struct json_object *o = NULL, *id;

		if (cmq_json_split_parse(&r->s, i, &r->d, &o) != CMQ_OK)
			continue;
		if (json_object_object_get_ex(o, "id", &id))
			off += (size_t)snprintf(ids + off, idlen - off, "%s%s", off ? "," : "",
			                        json_object_get_string(id));
		json_object_put(o);
	}
	r->rc = cmq_json_split_finish(&r->s, &r->d);
}

static void split_done(struct split_run *r)
{
	json_object_put(r->root);
	cmq_json_split_cleanup(&r->s);
	cmq_diag_cleanup(&r->d);
}

static void TEST_split_parses_elements_one_by_one(void)
{
	struct split_run r;
	struct json_object *arr;
	char ids[256];
	long live = cmq_test_live_allocations();

	split_run(
	    &r,
	    "{\"version\": \"1\",\n \"rules\": [\n  {\"id\": \"a\", \"x\": [1, {\"y\": \"],\"}]},\n"
	    "  {\"id\": \"b\"} , {\"id\": \"c\"}\n ],\n \"after\": {\"k\": 1}}",
	    ids, sizeof(ids));
	CU_ASSERT_EQUAL(r.rc, CMQ_OK);
	CU_ASSERT_TRUE(r.s.found);
	CU_ASSERT_EQUAL(r.s.n, 3);
	CU_ASSERT_STRING_EQUAL(ids, "a,b,c");
	CU_ASSERT_EQUAL(r.d.n, 0);
	/* The DOM holds everything but the elements: an empty array stands in for them. */
	CU_ASSERT_TRUE(json_object_object_get_ex(r.root, "rules", &arr));
	CU_ASSERT_EQUAL(json_object_array_length(arr), 0);
	CU_ASSERT_TRUE(json_object_object_get_ex(r.root, "after", &arr));
	split_done(&r);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), live);

	/* An empty array, a missing key, a key that is not an array: nothing to split. */
	split_run(&r, "{\"rules\": []}", ids, sizeof(ids));
	CU_ASSERT_EQUAL(r.rc, CMQ_OK);
	CU_ASSERT_TRUE(r.s.found);
	CU_ASSERT_EQUAL(r.s.n, 0);
	split_done(&r);
	split_run(&r, "{\"other\": [{\"id\": \"z\"}]}", ids, sizeof(ids));
	CU_ASSERT_EQUAL(r.rc, CMQ_OK);
	CU_ASSERT_FALSE(r.s.found);
	split_done(&r);
	split_run(&r, "{\"rules\": {\"id\": \"z\"}}", ids, sizeof(ids));
	CU_ASSERT_EQUAL(r.rc, CMQ_OK);
	CU_ASSERT_FALSE(r.s.found);
	split_done(&r);
	/* Only the top-level key is split; the same name deeper down is left alone. */
	split_run(&r, "{\"o\": {\"rules\": [{\"id\": \"deep\"}]}}", ids, sizeof(ids));
	CU_ASSERT_EQUAL(r.rc, CMQ_OK);
	CU_ASSERT_FALSE(r.s.found);
	split_done(&r);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), live);
}

/* Errors inside elements carry their position in the file; the strict checks still apply. */
static void TEST_split_reports_errors_in_place(void)
{
	static const struct {
		const char *text;
		int rc; /* of the whole run */
		const char *expect;
	} cases[] = {
	    /* syntax inside the second element, on line 3 */
	    {"{\"rules\": [\n{\"id\": \"a\"},\n  {\"id\": \"b\" \"c\": 1}]}", CMQ_ERR_PARSE,
	     "p.json: 3:14: malformed JSON: "},
	    /* a missing comma between elements */
	    {"{\"rules\": [{\"id\": \"a\"} {\"id\": \"b\"}]}", CMQ_ERR_PARSE,
	     "p.json: 1:24: malformed JSON: "},
	    /* a trailing comma: json-c explains it */
	    {"{\"rules\": [{\"id\": \"a\"},]}", CMQ_ERR_PARSE, "p.json: 1:"},
	    /* outside the array, positions are still the file's */
	    {"{\"rules\": [{\"id\": \"a\"}],\n\n \"x\": tru}", CMQ_ERR_PARSE, "p.json: 3:"},
	    /* the strict checks cover the elements: duplicate key, NaN */
	    {"{\"rules\": [{\"id\": \"a\", \"id\": \"b\"}]}", CMQ_ERR_PARSE,
	     "p.json: 1:24: duplicate key \"id\""},
	    {"{\"rules\": [{\"id\": \"a\", \"n\": NaN}]}", CMQ_ERR_PARSE,
	     "NaN is not a JSON value"},
	    /* and the rest of the file */
	    {"{\"rules\": [], \"rules\": [{\"id\": \"a\"}]}", CMQ_ERR_PARSE,
	     "duplicate key \"rules\""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct split_run r;
		char ids[256];

		split_run(&r, cases[i].text, ids, sizeof(ids));
		if (r.rc != cases[i].rc || cmq_diag_find(&r.d, cases[i].expect) == NULL) {
			fprintf(stderr, "\n  split case %zu: rc=%s\n", i, cmq_err_name(r.rc));
			dump_diag(&r.d);
		}
		CU_ASSERT_EQUAL(r.rc, cases[i].rc);
		CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&r.d, cases[i].expect));
		CU_ASSERT_TRUE(r.d.errors >= 1);
		split_done(&r);
	}
}

static void TEST_jbool_juint_messages(void)
{
	struct getter_env e;
	uint64_t v = 99;
	bool b = false;

	env_open(&e,
	         "{\"t\": true, \"yes\": \"yes\", \"one\": 1, \"n\": 10, \"big\": 11, \"neg\": -1, "
	         "\"frac\": 3.5, \"str\": \"5\", \"huge\": 18446744073709551615, \"nul\": null}");
	CU_ASSERT_TRUE(cmq_jbool(&e.c, e.root, "t", true, &b));
	CU_ASSERT_TRUE(b);
	CU_ASSERT_TRUE(cmq_jbool(&e.c, e.root, "absent", false, &b));
	CU_ASSERT_FALSE(cmq_jbool(&e.c, e.root, "yes", false, &b));
	CU_ASSERT_TRUE(
	    one_error(&e, 0, "t.json: $.yes: expected true or false, got string \"yes\""));
	CU_ASSERT_FALSE(cmq_jbool(&e.c, e.root, "one", false, &b));
	CU_ASSERT_TRUE(one_error(&e, 1, "t.json: $.one: expected true or false, got number 1"));
	CU_ASSERT_FALSE(cmq_jbool(&e.c, e.root, "absent", true, &b));
	CU_ASSERT_TRUE(one_error(&e, 2, "t.json: $.absent: missing required field"));
	CU_ASSERT_TRUE(b);

	CU_ASSERT_TRUE(cmq_juint(&e.c, e.root, "n", true, 1, 10, &v));
	CU_ASSERT_EQUAL(v, 10);
	CU_ASSERT_TRUE(cmq_juint(&e.c, e.root, "one", true, 1, 10, &v));
	CU_ASSERT_EQUAL(v, 1);
	v = 99;
	CU_ASSERT_TRUE(cmq_juint(&e.c, e.root, "absent", false, 1, 10, &v));
	CU_ASSERT_EQUAL(v, 99);
	CU_ASSERT_FALSE(cmq_juint(&e.c, e.root, "big", true, 1, 10, &v));
	CU_ASSERT_TRUE(one_error(&e, 3, "t.json: $.big: 11 is out of range; valid: 1 to 10"));
	CU_ASSERT_FALSE(cmq_juint(&e.c, e.root, "neg", true, 0, 10, &v));
	CU_ASSERT_TRUE(one_error(&e, 4, "t.json: $.neg: -1 is out of range; valid: 0 to 10"));
	CU_ASSERT_FALSE(cmq_juint(&e.c, e.root, "frac", true, 1, 10, &v));
	CU_ASSERT_TRUE(one_error(
	    &e, 5, "t.json: $.frac: expected a whole number between 1 and 10, got number 3.5"));
	CU_ASSERT_FALSE(cmq_juint(&e.c, e.root, "str", true, 1, 10, &v));
	CU_ASSERT_TRUE(one_error(
	    &e, 6, "t.json: $.str: expected a whole number between 1 and 10, got string \"5\""));
	CU_ASSERT_FALSE(cmq_juint(&e.c, e.root, "huge", true, 0, 1000, &v));
	CU_ASSERT_TRUE(one_error(
	    &e, 7, "t.json: $.huge: 18446744073709551615 is out of range; valid: 0 to 1000"));
	/* null: absent when optional, an error when required */
	CU_ASSERT_TRUE(cmq_juint(&e.c, e.root, "nul", false, 0, 1, &v));
	CU_ASSERT_EQUAL(e.d.n, 8);
	CU_ASSERT_FALSE(cmq_juint(&e.c, e.root, "nul", true, 0, 1, &v));
	CU_ASSERT_TRUE(one_error(&e, 8, "t.json: $.nul: is null; a value is required"));
	CU_ASSERT_FALSE(cmq_jbool(&e.c, e.root, "nul", true, &b));
	CU_ASSERT_TRUE(one_error(&e, 9, "t.json: $.nul: is null; a value is required"));
	CU_ASSERT_EQUAL(v, 99); /* failures leave out untouched */
	CU_ASSERT_STRING_EQUAL(cmq_jpath(&e.c), "$");
	env_close(&e);
}

static void TEST_jarray_jobject_jdescribe(void)
{
	struct getter_env e;
	char buf[160];
	struct {
		struct json_object *v;
		const char *description;
	} values[] = {
	    {NULL, "null"},
	    {json_object_new_boolean(1), "true"},
	    {json_object_new_boolean(0), "false"},
	    {json_object_new_int(42), "number 42"},
	    {json_object_new_double(-2.5), "number -2.5"},
	    {json_object_new_string("x\ny"), "string \"x\\ny\""},
	    {json_object_new_array(), "an array"},
	    {json_object_new_object(), "an object"},
	};

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		CU_ASSERT_STRING_EQUAL(cmq_jdescribe(values[i].v, buf, sizeof(buf)),
		                       values[i].description);
		json_object_put(values[i].v);
	}
	/* A long string is quoted and cut, and the description fits its buffer. */
	{
		char longtext[300];
		struct json_object *v;

		memset(longtext, 'y', sizeof(longtext) - 1);
		longtext[sizeof(longtext) - 1] = '\0';
		v = json_object_new_string(longtext);
		cmq_jdescribe(v, buf, 40);
		CU_ASSERT_EQUAL(strlen(buf), 39);
		CU_ASSERT_EQUAL(strncmp(buf, "string \"yyy", 11), 0);
		json_object_put(v);
	}

	env_open(&e, "{\"a\": [1], \"o\": {\"x\": 1}}");
	CU_ASSERT_PTR_NOT_NULL(cmq_jarray(&e.c, e.root, "a", true));
	CU_ASSERT_PTR_NOT_NULL(cmq_jobject(&e.c, e.root, "o", true));
	CU_ASSERT_PTR_NULL(cmq_jarray(&e.c, e.root, "absent", false));
	CU_ASSERT_EQUAL(e.d.n, 0);
	CU_ASSERT_PTR_NULL(cmq_jarray(&e.c, e.root, "o", true));
	CU_ASSERT_TRUE(one_error(&e, 0, "t.json: $.o: expected an array, got an object"));
	CU_ASSERT_PTR_NULL(cmq_jobject(&e.c, e.root, "a", false));
	CU_ASSERT_TRUE(one_error(&e, 1, "t.json: $.a: expected an object, got an array"));
	CU_ASSERT_PTR_NULL(cmq_jobject(&e.c, e.root, "absent", true));
	CU_ASSERT_TRUE(one_error(&e, 2, "t.json: $.absent: missing required field"));
	CU_ASSERT_PTR_NULL(cmq_jget(&e.c, NULL, "x", false));
	CU_ASSERT_EQUAL(e.d.n, 3);
	env_close(&e);
}

static void TEST_jcheck_keys_and_jenum(void)
{
	static const char *const known[] = {"id", "tier", NULL};
	static const char *const tiers[] = {"trusted", "restricted", "blocked", NULL};
	struct getter_env e;
	size_t old;

	env_open(&e, "{\"id\": 1, \"colour\": 2, \"tier\": 3, \"we ird\": 4}");
	old = cmq_jpath_push_key(&e.c, "vendors");
	cmq_jpath_push_index(&e.c, 0);
	cmq_jcheck_keys(&e.c, e.root, known);
	CU_ASSERT_EQUAL(e.d.errors, 0);
	CU_ASSERT_EQUAL(e.d.warnings, 2);
	CU_ASSERT_EQUAL_FATAL(e.d.n, 2);
	CU_ASSERT_EQUAL(e.d.entries[0].level, CMQ_DIAG_WARNING);
	CU_ASSERT_STRING_EQUAL(e.d.entries[0].text,
	                       "t.json: $.vendors[0]: unknown key \"colour\" ignored; known keys: "
	                       "id, tier");
	CU_ASSERT_STRING_EQUAL(e.d.entries[1].text,
	                       "t.json: $.vendors[0]: unknown key \"we ird\" ignored; known keys: "
	                       "id, tier");

	CU_ASSERT_EQUAL(cmq_jenum(&e.c, "blocked", "vendor tier", tiers), 2);
	CU_ASSERT_EQUAL(cmq_jenum(&e.c, "trusted", "vendor tier", tiers), 0);
	CU_ASSERT_EQUAL(e.d.errors, 0);
	CU_ASSERT_EQUAL(cmq_jenum(&e.c, "Trusted", "vendor tier", tiers), -1);
	CU_ASSERT_EQUAL(e.d.errors, 1);
	CU_ASSERT_TRUE(one_error(&e, 2,
	                         "t.json: $.vendors[0]: \"Trusted\" is not a vendor tier; valid: "
	                         "trusted, restricted, blocked"));
	CU_ASSERT_EQUAL(cmq_jenum(&e.c, "", "vendor tier", tiers), -1);
	CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&e.d, "\"\" is not a vendor tier"));
	cmq_jpath_pop(&e.c, old);
	cmq_jwarn(&e.c, "careful: %d", 7);
	CU_ASSERT_STRING_EQUAL(e.d.entries[e.d.n - 1].text, "t.json: $: careful: 7");
	CU_ASSERT_EQUAL(e.d.entries[e.d.n - 1].level, CMQ_DIAG_WARNING);
	env_close(&e);
}

/* ---- diag ---- */

static void TEST_diag_line_format(void)
{
	long before = cmq_test_live_allocations();
	struct cmq_diag d;
	char fmt_long[2000];

	cmq_diag_init(&d);
	cmq_diag_add(&d, CMQ_DIAG_ERROR, "f.json", "$.a", "bad %s", "thing");
	cmq_diag_add(&d, CMQ_DIAG_WARNING, "f.json", NULL, "no path");
	cmq_diag_add(&d, CMQ_DIAG_ERROR, NULL, "$.b", "no file");
	cmq_diag_add(&d, CMQ_DIAG_ERROR, NULL, NULL, "bare");
	CU_ASSERT_EQUAL_FATAL(d.n, 4);
	CU_ASSERT_STRING_EQUAL(d.entries[0].text, "f.json: $.a: bad thing");
	CU_ASSERT_EQUAL(d.entries[0].level, CMQ_DIAG_ERROR);
	CU_ASSERT_STRING_EQUAL(d.entries[1].text, "f.json: no path");
	CU_ASSERT_EQUAL(d.entries[1].level, CMQ_DIAG_WARNING);
	CU_ASSERT_STRING_EQUAL(d.entries[2].text, "$.b: no file");
	CU_ASSERT_STRING_EQUAL(d.entries[3].text, "bare");
	CU_ASSERT_EQUAL(d.errors, 3);
	CU_ASSERT_EQUAL(d.warnings, 1);
	CU_ASSERT_PTR_EQUAL(cmq_diag_find(&d, "no "), &d.entries[1]); /* the first match */
	CU_ASSERT_PTR_NULL(cmq_diag_find(&d, "absent"));

	/* A line is capped at CMQ_DIAG_LINE_MAX - 1 characters. */
	memset(fmt_long, 'x', sizeof(fmt_long) - 1);
	fmt_long[sizeof(fmt_long) - 1] = '\0';
	cmq_diag_add(&d, CMQ_DIAG_ERROR, "f.json", "$", "%s", fmt_long);
	CU_ASSERT_EQUAL(strlen(d.entries[4].text), CMQ_DIAG_LINE_MAX - 1);
	CU_ASSERT_EQUAL(strncmp(d.entries[4].text, "f.json: $: xxx", 14), 0);

	cmq_diag_cleanup(&d);
	CU_ASSERT_EQUAL(d.n, 0);
	CU_ASSERT_EQUAL(d.errors, 0);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
}

static void TEST_diag_cap_counts_everything(void)
{
	long before = cmq_test_live_allocations();
	struct cmq_diag d;
	char needle[32];

	cmq_diag_init(&d);
	for (int i = 0; i < CMQ_DIAG_MAX + 50; i++)
		cmq_diag_add(&d, CMQ_DIAG_ERROR, "f", NULL, "error %d.", i);
	for (int i = 0; i < 10; i++)
		cmq_diag_add(&d, CMQ_DIAG_WARNING, "f", NULL, "warning %d.", i);
	CU_ASSERT_EQUAL(d.n, CMQ_DIAG_MAX);
	CU_ASSERT_EQUAL(d.errors, CMQ_DIAG_MAX + 50);
	CU_ASSERT_EQUAL(d.warnings, 10);
	snprintf(needle, sizeof(needle), "error %d.", CMQ_DIAG_MAX - 1);
	CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&d, needle));
	snprintf(needle, sizeof(needle), "error %d.", CMQ_DIAG_MAX);
	CU_ASSERT_PTR_NULL(cmq_diag_find(&d, needle));
	CU_ASSERT_PTR_NULL(cmq_diag_find(&d, "warning"));
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), before + CMQ_DIAG_MAX);
	cmq_diag_cleanup(&d);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);

	/* Out of memory: the entry is lost but still counted, so a load still fails. */
	cmq_diag_init(&d);
	cmq_test_fail_after(0);
	cmq_diag_add(&d, CMQ_DIAG_ERROR, "f", NULL, "lost");
	cmq_test_fail_after(-1);
	CU_ASSERT_EQUAL(d.n, 0);
	CU_ASSERT_EQUAL(d.errors, 1);
	cmq_diag_cleanup(&d);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
}

static void TEST_diag_quote(void)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
	} cases[] = {
	    {"abc", 3, "\"abc\""},
	    {"", 0, "\"\""},
	    {"a\"b\\c", 5, "\"a\\\"b\\\\c\""},
	    {"\n\t", 2, "\"\\n\\t\""},
	    {"\x01\x1b\x7f", 3, "\"\\x01\\x1b\\x7f\""},
	    {"a\0b", 3, "\"a\\x00b\""},
	    {"\r", 1, "\"\\x0d\""},
	    {"\xc3\xa9", 2, "\"\xc3\xa9\""}, /* UTF-8 passes through */
	    {"abcdef", 3, "\"abc\""},        /* len, not NUL, ends the value */
	};
	char buf[128], in[100], want[100];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CU_ASSERT_STRING_EQUAL(cmq_diag_quote(cases[i].in, cases[i].len, buf, sizeof(buf)),
		                       cases[i].out);
	CU_ASSERT_STRING_EQUAL(cmq_diag_quote(NULL, 5, buf, sizeof(buf)), "\"\"");
	CU_ASSERT_PTR_EQUAL(cmq_diag_quote("x", 1, buf, sizeof(buf)), buf);

	/* 80 characters are shown whole; from 81 on, "..." follows the closing quote. */
	memset(in, 'a', sizeof(in));
	want[0] = '"';
	memset(want + 1, 'a', 80);
	memcpy(want + 81, "\"", 2);
	CU_ASSERT_STRING_EQUAL(cmq_diag_quote(in, 80, buf, sizeof(buf)), want);
	memcpy(want + 81, "\"...", 5);
	CU_ASSERT_STRING_EQUAL(cmq_diag_quote(in, 81, buf, sizeof(buf)), want);
	CU_ASSERT_STRING_EQUAL(cmq_diag_quote(in, sizeof(in), buf, sizeof(buf)), want);

	/* Escapes count as one character each toward the 80. */
	memset(in, '\n', sizeof(in));
	cmq_diag_quote(in, sizeof(in), buf, sizeof(buf));
	CU_ASSERT_EQUAL(buf[0], '"');
	CU_ASSERT_TRUE(strlen(buf) < sizeof(buf));
	CU_ASSERT_EQUAL(strncmp(buf, "\"\\n\\n\\n", 7), 0);

	/* A small buffer is never overrun and the result is always terminated. */
	memset(buf, '#', sizeof(buf));
	cmq_diag_quote("abcdefghijklmnopqrstuvwxyz", 26, buf, 16);
	CU_ASSERT_TRUE(strlen(buf) < 16);
	CU_ASSERT_EQUAL(buf[0], '"');
	CU_ASSERT_EQUAL(buf[strlen(buf) - 1], '"');
	CU_ASSERT_EQUAL(buf[16], '#');
	memset(in, 1, sizeof(in));
	cmq_diag_quote(in, 60, buf, 40);
	CU_ASSERT_TRUE(strlen(buf) < 40);
	CU_ASSERT_EQUAL(buf[strlen(buf) - 1], '"');
	CU_ASSERT_EQUAL(strncmp(buf, "\"\\x01\\x01", 9), 0);
	buf[0] = 'z';
	CU_ASSERT_STRING_EQUAL(cmq_diag_quote("abc", 3, buf, 7), "");
	CU_ASSERT_STRING_EQUAL(cmq_diag_quote("abc", 3, buf, 8), "\"abc\"");
}

int main(void)
{
	static const struct cmq_test_case cases[] = {
	    {"parse_reports_line_and_column", TEST_parse_reports_line_and_column},
	    {"depth_limit", TEST_depth_limit},
	    {"key_count_limit", TEST_key_count_limit},
	    {"load_file", TEST_load_file},
	    {"load_file_out_of_memory", TEST_load_file_out_of_memory},
	    {"jpath_push_pop", TEST_jpath_push_pop},
	    {"jpath_truncates_visibly", TEST_jpath_truncates_visibly},
	    {"jstring_messages", TEST_jstring_messages},
	    {"jbool_juint_messages", TEST_jbool_juint_messages},
	    {"jarray_jobject_jdescribe", TEST_jarray_jobject_jdescribe},
	    {"jcheck_keys_and_jenum", TEST_jcheck_keys_and_jenum},
	    {"split_parses_elements_one_by_one", TEST_split_parses_elements_one_by_one},
	    {"split_reports_errors_in_place", TEST_split_reports_errors_in_place},
	    {"diag_line_format", TEST_diag_line_format},
	    {"diag_cap_counts_everything", TEST_diag_cap_counts_everything},
	    {"diag_quote", TEST_diag_quote},
	    {NULL, NULL},
	};

	return cmq_test_run("jsonutil", cases);
}
