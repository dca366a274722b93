/*
 * test_trie.c - the topic-pattern trie (core/trie.c).
 *
 * Match and cover cases are rows of static tables: a set of patterns (each
 * inserted with its index as value), a topic or filter, a substitution set,
 * and the index of the pattern that must win (or NO_MATCH). On top of the
 * tables: pattern validation with the expected reason, duplicates, deep
 * topics, an out-of-memory sweep, a 100,000-pattern scale test, a check that
 * matching allocates nothing, and a randomised comparison against a naive
 * reference matcher written from the rules in trie.h.
 */
#include "cmq_test.h"

#include "alloc.h"
#include "error.h"
#include "topic.h"
#include "trie.h"

#include "../trie_oracle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_MATCH     (-1)
#define MAX_PATTERNS 8

/* Substitution sets a row can pick. */
enum subst_set { S_NONE, S_ALICE, S_SAME, S_EMPTY, S_BAD, S_DOLLAR, S_COUNT };

static const struct cmq_subst subst_sets[S_COUNT] = {
    [S_NONE] = {NULL, 0, NULL, 0, NULL, 0},
    [S_ALICE] = {"alice", 5, "dev-1", 5, "acme", 4},
    [S_SAME] = {"x", 1, "x", 1, "x", 1},
    [S_EMPTY] = {"", 0, "", 0, "", 0},
    [S_BAD] = {"a+b", 3, "a#", 2, "c\x01", 2}, /* values cmq_identity_check refuses */
    [S_DOLLAR] = {"$SYS", 4, "$SYS", 4, "$SYS", 4},
};

static const struct cmq_subst *subst_of(enum subst_set s)
{
	return s == S_NONE ? NULL : &subst_sets[s];
}

struct trie_row {
	const char *patterns[MAX_PATTERNS]; /* NULL-terminated; value = index */
	const char *input;                  /* topic (match) or filter (covers) */
	enum subst_set subst;
	int want; /* index of the winning pattern, or NO_MATCH */
};

static void check_row(bool ok, const char *table, size_t row, const char *input, const char *what)
{
	if (!ok)
		fprintf(stderr, "\n  %s row %zu (\"%s\") failed: %s\n", table, row, input, what);
	CU_ASSERT(ok);
}

/* Build a trie from a row's patterns, all with substitutions allowed. */
static struct cmq_trie *build(const char *const *patterns)
{
	struct cmq_trie *t = NULL;

	CU_ASSERT_EQUAL_FATAL(cmq_trie_new(&t), CMQ_OK);
	for (uint32_t i = 0; i < MAX_PATTERNS && patterns[i] != NULL; i++) {
		const char *why = NULL;
		int rc = cmq_trie_insert(t, patterns[i], strlen(patterns[i]),
		                         CMQ_PATTERN_ALLOW_SUBST, i, &why, NULL);

		if (rc != CMQ_OK)
			fprintf(stderr, "\n  insert \"%s\": %s (%s)\n", patterns[i],
			        cmq_strerror(rc), why ? why : "");
		CU_ASSERT_EQUAL(rc, CMQ_OK);
	}
	return t;
}

static void run_rows(const char *name, const struct trie_row *rows, size_t n, bool covers)
{
	for (size_t i = 0; i < n; i++) {
		struct cmq_trie *t = build(rows[i].patterns);
		const char *in = rows[i].input;
		uint32_t v = 0xdeadbeef;
		bool hit = covers ? cmq_trie_covers(t, in, strlen(in), subst_of(rows[i].subst), &v)
		                  : cmq_trie_match(t, in, strlen(in), subst_of(rows[i].subst), &v);

		if (rows[i].want == NO_MATCH) {
			check_row(!hit, name, i, in, "expected no match");
			check_row(v == 0xdeadbeef, name, i, in, "value must be untouched");
		} else {
			check_row(hit, name, i, in, "expected a match");
			check_row(hit && v == (uint32_t)rows[i].want, name, i, in,
			          "wrong pattern won");
		}
		cmq_trie_free(t);
	}
}

/* ---- matching ---- */

static const struct trie_row match_rows[] = {
    /* exact */
    {{"a/b"}, "a/b", S_NONE, 0},
    {{"a/b"}, "a/c", S_NONE, NO_MATCH},
    {{"a/b"}, "a", S_NONE, NO_MATCH},
    {{"a/b"}, "a/b/c", S_NONE, NO_MATCH},
    {{"a/b"}, "A/b", S_NONE, NO_MATCH},
    {{"raw/district-1/noise/dev-7"}, "raw/district-1/noise/dev-7", S_NONE, 0},
    {{"st\303\244dte/+"}, "st\303\244dte/x", S_NONE, 0},
    {{"a/this-level-is-longer-than-thirty-two-bytes/b"},
     "a/this-level-is-longer-than-thirty-two-bytes/b",
     S_NONE,
     0},
    {{"a/this-level-is-longer-than-thirty-two-bytes/b"},
     "a/this-level-is-longer-than-thirty-two-bytez/b",
     S_NONE,
     NO_MATCH},
    {{"a/exactly-thirty-two-bytes-long-x/b"}, "a/exactly-thirty-two-bytes-long-x/b", S_NONE, 0},
    {{"a/exactly-thirty-two-bytes-long-x/b"},
     "a/exactly-thirty-two-bytes-long-/b",
     S_NONE,
     NO_MATCH},
    /* '+' */
    {{"a/+"}, "a/x", S_NONE, 0},
    {{"a/+"}, "a/", S_NONE, 0}, /* '+' matches an empty level */
    {{"a/+"}, "a", S_NONE, NO_MATCH},
    {{"a/+"}, "a/x/y", S_NONE, NO_MATCH},
    {{"a/+/c"}, "a/b/c", S_NONE, 0},
    {{"a/+/c"}, "a//c", S_NONE, 0},
    {{"a/+/c"}, "a/b/d", S_NONE, NO_MATCH},
    {{"+"}, "a", S_NONE, 0},
    {{"+"}, "a/b", S_NONE, NO_MATCH},
    {{"+/+"}, "/", S_NONE, 0},
    {{"+/a"}, "/a", S_NONE, 0},
    /* '#' and its parent level */
    {{"a/#"}, "a", S_NONE, 0},
    {{"a/#"}, "a/", S_NONE, 0},
    {{"a/#"}, "a/b", S_NONE, 0},
    {{"a/#"}, "a/b/c/d", S_NONE, 0},
    {{"a/#"}, "ab", S_NONE, NO_MATCH},
    {{"a/#"}, "b/a", S_NONE, NO_MATCH},
    {{"a/b/#"}, "a/b", S_NONE, 0},
    {{"a/b/#"}, "a", S_NONE, NO_MATCH},
    {{"#"}, "a", S_NONE, 0},
    {{"#"}, "/", S_NONE, 0},
    {{"#"}, "a/b/c", S_NONE, 0},
    {{"+/#"}, "a", S_NONE, 0},
    {{"+/#"}, "a/b/c", S_NONE, 0},
    {{"a/+/#"}, "a", S_NONE, NO_MATCH},
    {{"a/+/#"}, "a/b", S_NONE, 0},
    /* empty levels are levels */
    {{"a//b"}, "a//b", S_NONE, 0},
    {{"a//b"}, "a/b", S_NONE, NO_MATCH},
    {{"a//b"}, "a///b", S_NONE, NO_MATCH},
    {{"/a"}, "/a", S_NONE, 0},
    {{"/a"}, "a", S_NONE, NO_MATCH},
    {{"a/"}, "a/", S_NONE, 0},
    {{"a/"}, "a", S_NONE, NO_MATCH},
    {{"a"}, "a/", S_NONE, NO_MATCH},
    {{"/"}, "/", S_NONE, 0},
    {{"/"}, "//", S_NONE, NO_MATCH},
    /* '$' topics: first-level wildcards never match them */
    {{"#"}, "$SYS", S_NONE, NO_MATCH},
    {{"#"}, "$SYS/broker/load", S_NONE, NO_MATCH},
    {{"+/#"}, "$SYS/broker", S_NONE, NO_MATCH},
    {{"+"}, "$SYS", S_NONE, NO_MATCH},
    {{"+/monitor"}, "$SYS/monitor", S_NONE, NO_MATCH},
    {{"+/#", "$SYS/#"}, "$SYS/x", S_NONE, 1},
    {{"$SYS/#"}, "$SYS", S_NONE, 0},
    {{"$SYS/#"}, "$SYS/broker/load", S_NONE, 0},
    {{"$SYS/+"}, "$SYS/x", S_NONE, 0},
    {{"$CONTROL/civicmq/v1"}, "$CONTROL/civicmq/v1", S_NONE, 0},
    {{"a/+"}, "a/$x", S_NONE, 0}, /* only the first level is special */
    {{"#"}, "a$", S_NONE, 0},
    {{"%u/#"}, "$SYS/x", S_DOLLAR, NO_MATCH}, /* a substitution is a wildcard too */
    {{"%u/#"}, "alice/x", S_ALICE, 0},
    {{"x/%u"}, "x/$SYS", S_DOLLAR, 0},
    /* substitutions */
    {{"users/%u/#"}, "users/alice/inbox", S_ALICE, 0},
    {{"users/%u/#"}, "users/alice", S_ALICE, 0},
    {{"users/%u/#"}, "users/bob/inbox", S_ALICE, NO_MATCH},
    {{"users/%u/#"}, "users/alic/inbox", S_ALICE, NO_MATCH},
    {{"users/%u/#"}, "users/alicee/inbox", S_ALICE, NO_MATCH},
    {{"cmd/+/+/%c"}, "cmd/d1/signal/dev-1", S_ALICE, 0},
    {{"cmd/+/+/%c"}, "cmd/d1/signal/dev-2", S_ALICE, NO_MATCH},
    {{"vendors/%v/+"}, "vendors/acme/status", S_ALICE, 0},
    {{"vendors/%v/+"}, "vendors/alice/status", S_ALICE, NO_MATCH},
    {{"%u/%c/%v"}, "alice/dev-1/acme", S_ALICE, 0},
    {{"%u/%c/%v"}, "alice/acme/dev-1", S_ALICE, NO_MATCH},
    {{"users/%u"}, "users/alice", S_NONE, NO_MATCH}, /* no values: nothing fills %u */
    {{"users/%u", "users/+"}, "users/alice", S_NONE, 1},
    {{"users/%u"}, "users/", S_EMPTY, NO_MATCH}, /* empty values never match */
    {{"users/%u/x"}, "users//x", S_EMPTY, NO_MATCH},
    {{"t/%u"}, "t/a+b", S_BAD, NO_MATCH}, /* refused identities never match */
    {{"t/%c"}, "t/a#", S_BAD, NO_MATCH},
    {{"t/%v"}, "t/c\x01", S_BAD, NO_MATCH},
    {{"t/%u", "t/+"}, "t/a+b", S_BAD, 1},
    /* topics containing wildcard characters: ordinary text */
    {{"a/+"}, "a/+", S_NONE, 0},
    {{"a/b"}, "a/+", S_NONE, NO_MATCH},
    {{"a/#"}, "a/#", S_NONE, 0},
    {{"+"}, "#", S_NONE, 0},
    /* specificity: literal > %u > %c > %v > + > #, decided from the left */
    {{"a/#", "a/+/c", "a/b/+", "a/b/c", "+/b/c", "#"}, "a/b/c", S_NONE, 3},
    {{"a/#", "a/+/c", "a/b/+", "+/b/c", "#"}, "a/b/c", S_NONE, 2},
    {{"a/#", "a/+/c", "+/b/c", "#"}, "a/b/c", S_NONE, 1},
    {{"a/#", "+/b/c", "#"}, "a/b/c", S_NONE, 0}, /* literal first level beats '+' */
    {{"+/b/c", "#"}, "a/b/c", S_NONE, 0},
    {{"#", "+/b/c"}, "x/b/c", S_NONE, 1},
    {{"a/#", "a/+/c", "a/b/+", "a/b/c", "+/b/c", "#"}, "a/x/y", S_NONE, 0},
    {{"a/#", "a/+/c", "a/b/+", "a/b/c", "+/b/c", "#"}, "q", S_NONE, 5},
    {{"a/+/#", "a/#"}, "a/b/c", S_NONE, 0},
    {{"a/+/#", "a/#"}, "a", S_NONE, 1},
    {{"a", "a/#"}, "a", S_NONE, 0}, /* the exact pattern beats '#' on its parent */
    {{"a/#", "a"}, "a", S_NONE, 1},
    {{"a", "a/#"}, "a/x", S_NONE, 1},
    {{"a/+", "a/+/#"}, "a/x", S_NONE, 0},
    {{"a/+/#", "a/+"}, "a/x", S_NONE, 1},
    {{"a/+", "a/+/#"}, "a/x/y", S_NONE, 1},
    {{"a/%u", "a/+", "a/alice"}, "a/alice", S_ALICE, 2},
    {{"a/%u", "a/+"}, "a/alice", S_ALICE, 0},
    {{"a/+", "a/%u"}, "a/alice", S_ALICE, 1},
    {{"a/%u", "a/+"}, "a/bob", S_ALICE, 1},
    {{"%v/t", "%c/t", "%u/t", "+/t", "#"}, "x/t", S_SAME, 2},
    {{"%v/t", "%c/t", "+/t", "#"}, "x/t", S_SAME, 1},
    {{"#", "+/t", "%v/t"}, "x/t", S_SAME, 2},
    {{"#", "+/t"}, "x/t", S_SAME, 1},
    {{"%u/#", "+/t"}, "x/t", S_SAME, 0}, /* %u at level 1 beats '+' there */
    /* backtracking out of a more specific branch that dead-ends */
    {{"a/b/c/d", "a/+/c/e"}, "a/b/c/e", S_NONE, 1},
    {{"a/b/c/d", "a/+/c/e", "#"}, "a/b/c/f", S_NONE, 2},
    {{"a/b/#", "+/b/c"}, "a/b/c", S_NONE, 0},
    {{"a/b/#", "+/b/c"}, "x/b/c", S_NONE, 1},
    {{"a/b/c", "a/%u/c", "a/+/d"}, "a/alice/d", S_ALICE, 2},
    {{"a/b/c", "a/%u/c", "a/+/d"}, "a/alice/c", S_ALICE, 1},
    {{"a/b/x", "a/b/y", "a/+/z"}, "a/b/z", S_NONE, 2},
};

static void TEST_match_table(void)
{
	run_rows("match", match_rows, sizeof(match_rows) / sizeof(match_rows[0]), false);
}

/* ---- covering ---- */

static const struct trie_row cover_rows[] = {
    {{"a/b"}, "a/b", S_NONE, 0},
    {{"a/b"}, "a/+", S_NONE, NO_MATCH},
    {{"a/b"}, "a/#", S_NONE, NO_MATCH},
    {{"a/b"}, "a", S_NONE, NO_MATCH},
    {{"a/b"}, "a/b/c", S_NONE, NO_MATCH},
    {{"a/+"}, "a/b", S_NONE, 0},
    {{"a/+"}, "a/+", S_NONE, 0},
    {{"a/+"}, "a/#", S_NONE, NO_MATCH},
    {{"a/+"}, "a/b/c", S_NONE, NO_MATCH},
    {{"a/+"}, "a", S_NONE, NO_MATCH},
    {{"a/#"}, "a", S_NONE, 0},
    {{"a/#"}, "a/b", S_NONE, 0},
    {{"a/#"}, "a/+", S_NONE, 0},
    {{"a/#"}, "a/#", S_NONE, 0},
    {{"a/#"}, "a/+/#", S_NONE, 0},
    {{"a/#"}, "a/b/#", S_NONE, 0},
    {{"a/#"}, "b", S_NONE, NO_MATCH},
    {{"a/#"}, "+", S_NONE, NO_MATCH},
    {{"a/#"}, "#", S_NONE, NO_MATCH},
    {{"a/b/#"}, "a/b", S_NONE, 0},        /* the filter ends where the pattern has "/#" */
    {{"a/+/#"}, "a/#", S_NONE, NO_MATCH}, /* "a/#" also matches "a" */
    {{"a/+/#"}, "a/+/#", S_NONE, 0},
    {{"a/+/#"}, "a/+", S_NONE, 0},
    {{"#"}, "#", S_NONE, 0},
    {{"#"}, "+", S_NONE, 0},
    {{"#"}, "+/x", S_NONE, 0},
    {{"#"}, "a/#", S_NONE, 0},
    {{"#"}, "$SYS/x", S_NONE, NO_MATCH},
    {{"#"}, "$SYS/#", S_NONE, NO_MATCH},
    {{"+/#"}, "#", S_NONE, NO_MATCH}, /* a '#' level is covered only by '#' */
    {{"+/#"}, "+/#", S_NONE, 0},
    {{"+/#"}, "a/#", S_NONE, 0},
    {{"+/x"}, "+/x", S_NONE, 0},
    {{"+/x"}, "a/x", S_NONE, 0},
    {{"+/x"}, "$SYS/x", S_NONE, NO_MATCH},
    {{"+"}, "+", S_NONE, 0},
    {{"a"}, "+", S_NONE, NO_MATCH},
    {{"$SYS/#"}, "$SYS/#", S_NONE, 0},
    {{"$SYS/#"}, "$SYS/+", S_NONE, 0},
    {{"$SYS/#"}, "#", S_NONE, NO_MATCH},
    {{"$SYS/#"}, "+/x", S_NONE, NO_MATCH},
    {{"users/%u/#"}, "users/alice/#", S_ALICE, 0},
    {{"users/%u/#"}, "users/alice", S_ALICE, 0},
    {{"users/%u/#"}, "users/+/#", S_ALICE, NO_MATCH}, /* '+' is not covered by %u */
    {{"users/%u/#"}, "users/bob/x", S_ALICE, NO_MATCH},
    {{"users/%u/#"}, "users/alice/x", S_EMPTY, NO_MATCH},
    {{"users/%u/#"}, "users//x", S_EMPTY, NO_MATCH},
    {{"users/%u/#"}, "users/alice/x", S_NONE, NO_MATCH},
    {{"%u/#"}, "$SYS/x", S_DOLLAR, NO_MATCH},
    {{"a/+/#", "a/#"}, "a/b/c", S_NONE, 0}, /* the most specific coverer wins */
    {{"a/+/#", "a/#"}, "a", S_NONE, 1},
    {{"a/+/#", "a/#"}, "a/#", S_NONE, 1},
    {{"a/#", "a/+/#", "a/b/c"}, "a/b/c", S_NONE, 2},
    {{"a/b/c/d", "a/+/c/#"}, "a/b/c/+", S_NONE, 1}, /* backtracking */
    /* invalid filters are covered by nothing */
    {{"#"}, "a/#/b", S_NONE, NO_MATCH},
    {{"#"}, "a+", S_NONE, NO_MATCH},
    {{"#"}, "", S_NONE, NO_MATCH},
    /* "$share/..." is not stripped here: its first level is a '$' literal */
    {{"#"}, "$share/g/a", S_NONE, NO_MATCH},
    {{"+/+/a"}, "$share/g/a", S_NONE, NO_MATCH},
};

static void TEST_covers_table(void)
{
	run_rows("covers", cover_rows, sizeof(cover_rows) / sizeof(cover_rows[0]), true);
}

/* ---- pattern validation ---- */

#define LEN_AUTO ((size_t)-1)

static const struct {
	const char *pattern;
	size_t len;
	unsigned flags;
	const char *why; /* NULL: valid */
} pattern_rows[] = {
    {"a", LEN_AUTO, 0, NULL},
    {"#", LEN_AUTO, 0, NULL},
    {"+", LEN_AUTO, 0, NULL},
    {"/", LEN_AUTO, 0, NULL},
    {"+/+/#", LEN_AUTO, 0, NULL},
    {"$SYS/#", LEN_AUTO, 0, NULL},
    {"50percent/off", LEN_AUTO, 0, NULL},
    {"%u/%c/%v", LEN_AUTO, CMQ_PATTERN_ALLOW_SUBST, NULL},
    {"users/%u/#", LEN_AUTO, CMQ_PATTERN_ALLOW_SUBST, NULL},
    {"", 0, 0, "is empty"},
    {"a/#/b", LEN_AUTO, 0, "'#' must be the last level"},
    {"#/", LEN_AUTO, 0, "'#' must be the last level"},
    {"a#", LEN_AUTO, 0, "'#' must fill a whole level"},
    {"a/b+", LEN_AUTO, 0, "'+' must fill a whole level"},
    {"+a/b", LEN_AUTO, 0, "'+' must fill a whole level"},
    {"a\0b", 3, 0, "NUL"},
    {"\xc3", LEN_AUTO, 0, "not valid UTF-8"},
    {"a/\xed\xa0\x80", LEN_AUTO, 0, "not valid UTF-8"},
    {"dev-%c", LEN_AUTO, CMQ_PATTERN_ALLOW_SUBST, "'%c' must fill a whole level"},
    {"a/%u-x", LEN_AUTO, CMQ_PATTERN_ALLOW_SUBST, "'%u' must fill a whole level"},
    {"x%v", LEN_AUTO, CMQ_PATTERN_ALLOW_SUBST, "'%v' must fill a whole level"},
    {"%uu", LEN_AUTO, CMQ_PATTERN_ALLOW_SUBST, "'%u' must fill a whole level"},
    {"%x", LEN_AUTO, CMQ_PATTERN_ALLOW_SUBST, "unknown substitution"},
    {"a/%%", LEN_AUTO, CMQ_PATTERN_ALLOW_SUBST, "unknown substitution"},
    {"%U", LEN_AUTO, CMQ_PATTERN_ALLOW_SUBST, "unknown substitution"},
    {"%", LEN_AUTO, CMQ_PATTERN_ALLOW_SUBST, "contains '%'"},
    {"50%off", LEN_AUTO, CMQ_PATTERN_ALLOW_SUBST, "contains '%'"},
    {"50%off", LEN_AUTO, 0, "contains '%'"},
    {"a/%u", LEN_AUTO, 0, "where none is allowed"},
    {"%c/#", LEN_AUTO, 0, "where none is allowed"},
    {"a", LEN_AUTO, 0x80, "unknown flags"},
};

static void TEST_pattern_check_table(void)
{
	for (size_t i = 0; i < sizeof(pattern_rows) / sizeof(pattern_rows[0]); i++) {
		const char *p = pattern_rows[i].pattern;
		size_t len = pattern_rows[i].len == LEN_AUTO ? strlen(p) : pattern_rows[i].len;
		const char *why = "unset";
		int rc = cmq_pattern_check(p, len, pattern_rows[i].flags, &why);
		struct cmq_trie *t = NULL;

		if (pattern_rows[i].why == NULL) {
			check_row(rc == CMQ_OK && why == NULL, "pattern", i, p, "should be valid");
		} else {
			check_row(rc == CMQ_ERR_INVAL, "pattern", i, p, "should be CMQ_ERR_INVAL");
			check_row(why != NULL && strstr(why, pattern_rows[i].why) != NULL,
			          "pattern", i, p, pattern_rows[i].why);
		}
		/* Insert agrees with check, and an invalid insert leaves the trie empty. */
		CU_ASSERT_EQUAL_FATAL(cmq_trie_new(&t), CMQ_OK);
		why = "unset";
		check_row(cmq_trie_insert(t, p, len, pattern_rows[i].flags, 7, &why, NULL) == rc,
		          "pattern", i, p, "insert must return what check returned");
		check_row(cmq_trie_count(t) == (rc == CMQ_OK ? 1u : 0u), "pattern", i, p, "count");
		if (rc != CMQ_OK)
			check_row(why != NULL && strcmp(why, "unset") != 0, "pattern", i, p,
			          "insert must explain");
		cmq_trie_free(t);
	}
}

/* Build "l/l/.../l" with n levels into buf; returns its length. */
static size_t make_levels(char *buf, size_t size, size_t n, const char *level)
{
	size_t used = 0, llen = strlen(level);

	for (size_t i = 0; i < n && used + llen + 2 < size; i++) {
		if (i > 0)
			buf[used++] = '/';
		memcpy(buf + used, level, llen);
		used += llen;
	}
	buf[used] = '\0';
	return used;
}

static void TEST_pattern_depth_limit(void)
{
	char buf[512];
	const char *why = NULL;
	size_t len;

	len = make_levels(buf, sizeof(buf), CMQ_TOPIC_MAX_LEVELS, "+");
	CU_ASSERT_EQUAL(cmq_pattern_check(buf, len, 0, &why), CMQ_OK);
	len = make_levels(buf, sizeof(buf), CMQ_TOPIC_MAX_LEVELS + 1, "+");
	CU_ASSERT_EQUAL(cmq_pattern_check(buf, len, 0, &why), CMQ_ERR_INVAL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(why);
	CU_ASSERT_STRING_EQUAL(why, "has more than 32 levels");
	len = make_levels(buf, sizeof(buf), CMQ_TOPIC_MAX_LEVELS + 1, "");
	CU_ASSERT_EQUAL(cmq_pattern_check(buf, len, 0, &why), CMQ_ERR_INVAL);
	/* "#" is a level too. */
	len = make_levels(buf, sizeof(buf), CMQ_TOPIC_MAX_LEVELS, "a");
	memcpy(buf + len, "/#", 3);
	CU_ASSERT_EQUAL(cmq_pattern_check(buf, len + 2, 0, &why), CMQ_ERR_INVAL);
}

static void TEST_pattern_length_limit(void)
{
	char *buf = malloc(CMQ_TOPIC_MAX_LEN + 1);
	struct cmq_trie *t = NULL;
	const char *why = NULL;
	uint32_t v = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	memset(buf, 'x', CMQ_TOPIC_MAX_LEN + 1);
	CU_ASSERT_EQUAL(cmq_pattern_check(buf, CMQ_TOPIC_MAX_LEN + 1, 0, &why), CMQ_ERR_INVAL);
	CU_ASSERT_PTR_NOT_NULL(why != NULL ? strstr(why, "longer than 65535") : NULL);
	/* One 65535-byte level is a valid pattern (it goes to the label arena). */
	CU_ASSERT_EQUAL_FATAL(cmq_trie_new(&t), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_trie_insert(t, buf, CMQ_TOPIC_MAX_LEN, 0, 3, &why, NULL), CMQ_OK);
	CU_ASSERT_TRUE(cmq_trie_match(t, buf, CMQ_TOPIC_MAX_LEN, NULL, &v));
	CU_ASSERT_EQUAL(v, 3);
	CU_ASSERT_FALSE(cmq_trie_match(t, buf, CMQ_TOPIC_MAX_LEN - 1, NULL, &v));
	CU_ASSERT_FALSE(cmq_trie_match(t, buf, CMQ_TOPIC_MAX_LEN + 1, NULL, &v));
	cmq_trie_free(t);
	free(buf);
}

/* ---- duplicates ---- */

static void TEST_insert_duplicate_exists(void)
{
	static const char *const patterns[] = {"a/b", "a/#",  "a", "a/+",  "#",
	                                       "+",   "a/%u", "/", "a/+/#"};
	const size_t n = sizeof(patterns) / sizeof(patterns[0]);
	struct cmq_trie *t = NULL;
	uint32_t existing, v;

	CU_ASSERT_EQUAL_FATAL(cmq_trie_new(&t), CMQ_OK);
	/* "a", "a/#", "a/+" and "a/+/#" are all different patterns. */
	for (uint32_t i = 0; i < n; i++)
		CU_ASSERT_EQUAL(cmq_trie_insert(t, patterns[i], strlen(patterns[i]),
		                                CMQ_PATTERN_ALLOW_SUBST, 100 + i, NULL, NULL),
		                CMQ_OK);
	CU_ASSERT_EQUAL(cmq_trie_count(t), n);
	for (uint32_t i = 0; i < n; i++) {
		existing = 0;
		CU_ASSERT_EQUAL(cmq_trie_insert(t, patterns[i], strlen(patterns[i]),
		                                CMQ_PATTERN_ALLOW_SUBST, 999, NULL, &existing),
		                CMQ_ERR_EXISTS);
		CU_ASSERT_EQUAL(existing, 100 + i);
		/* existing may be NULL */
		CU_ASSERT_EQUAL(cmq_trie_insert(t, patterns[i], strlen(patterns[i]),
		                                CMQ_PATTERN_ALLOW_SUBST, 999, NULL, NULL),
		                CMQ_ERR_EXISTS);
	}
	CU_ASSERT_EQUAL(cmq_trie_count(t), n);
	/* The trie still holds the first values. */
	CU_ASSERT_TRUE(cmq_trie_match(t, "a/b", 3, NULL, &v));
	CU_ASSERT_EQUAL(v, 100);
	CU_ASSERT_TRUE(cmq_trie_match(t, "a", 1, NULL, &v));
	CU_ASSERT_EQUAL(v, 102);
	CU_ASSERT_TRUE(cmq_trie_match(t, "a/c", 3, NULL, &v));
	CU_ASSERT_EQUAL(v, 103);
	CU_ASSERT_TRUE(cmq_trie_match(t, "a/c/d", 5, NULL, &v));
	CU_ASSERT_EQUAL(v, 108);
	CU_ASSERT_TRUE(cmq_trie_match(t, "q/r", 3, NULL, &v));
	CU_ASSERT_EQUAL(v, 104);
	cmq_trie_free(t);
}

/* ---- edges of the API ---- */

static void TEST_empty_and_null_trie(void)
{
	struct cmq_trie *t = NULL;
	uint32_t v = 42;

	CU_ASSERT_EQUAL_FATAL(cmq_trie_new(&t), CMQ_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	CU_ASSERT_EQUAL(cmq_trie_count(t), 0);
	CU_ASSERT_TRUE(cmq_trie_memory(t) > 0);
	CU_ASSERT_FALSE(cmq_trie_match(t, "a", 1, NULL, &v));
	CU_ASSERT_FALSE(cmq_trie_covers(t, "#", 1, NULL, &v));
	CU_ASSERT_EQUAL(v, 42);
	/* Bad topics match nothing, even "#". */
	CU_ASSERT_EQUAL(cmq_trie_insert(t, "#", 1, 0, 1, NULL, NULL), CMQ_OK);
	CU_ASSERT_FALSE(cmq_trie_match(t, "", 0, NULL, &v));
	CU_ASSERT_FALSE(cmq_trie_match(t, NULL, 0, NULL, &v));
	CU_ASSERT_FALSE(cmq_trie_match(t, NULL, 5, NULL, &v));
	CU_ASSERT_EQUAL(v, 42);
	CU_ASSERT_TRUE(cmq_trie_covers(t, "a/#", 3, NULL, NULL)); /* value may be NULL */
	cmq_trie_free(t);

	CU_ASSERT_FALSE(cmq_trie_match(NULL, "a", 1, NULL, &v));
	CU_ASSERT_FALSE(cmq_trie_covers(NULL, "a", 1, NULL, &v));
	CU_ASSERT_EQUAL(cmq_trie_count(NULL), 0);
	CU_ASSERT_EQUAL(cmq_trie_memory(NULL), 0);
	CU_ASSERT_EQUAL(cmq_trie_insert(NULL, "a", 1, 0, 1, NULL, NULL), CMQ_ERR_INVAL);
	cmq_trie_free(NULL);
}

static void TEST_deep_topics(void)
{
	static char topic[4096];
	struct cmq_trie *t = NULL;
	char pattern[256];
	size_t len, plen;
	uint32_t v = 0;

	CU_ASSERT_EQUAL_FATAL(cmq_trie_new(&t), CMQ_OK);
	/* 200 levels: far beyond CMQ_TOPIC_MAX_LEVELS; only '#' can take them. */
	len = make_levels(topic, sizeof(topic), 200, "a");
	CU_ASSERT_EQUAL(len, 399);
	CU_ASSERT_FALSE(cmq_trie_match(t, topic, len, NULL, &v));
	CU_ASSERT_EQUAL(cmq_trie_insert(t, "a/a/#", 5, 0, 1, NULL, NULL), CMQ_OK);
	CU_ASSERT_TRUE(cmq_trie_match(t, topic, len, NULL, &v));
	CU_ASSERT_EQUAL(v, 1);
	/* The deepest pattern: 32 levels of '+'; it matches 32-level topics only. */
	plen = make_levels(pattern, sizeof(pattern), CMQ_TOPIC_MAX_LEVELS, "+");
	CU_ASSERT_EQUAL(cmq_trie_insert(t, pattern, plen, 0, 2, NULL, NULL), CMQ_OK);
	len = make_levels(topic, sizeof(topic), CMQ_TOPIC_MAX_LEVELS, "b");
	CU_ASSERT_TRUE(cmq_trie_match(t, topic, len, NULL, &v));
	CU_ASSERT_EQUAL(v, 2);
	len = make_levels(topic, sizeof(topic), CMQ_TOPIC_MAX_LEVELS + 1, "b");
	v = 0;
	CU_ASSERT_FALSE(cmq_trie_match(t, topic, len, NULL, &v));
	/* 31 '+' then '#': 32 levels, matches 31 levels and anything deeper. */
	plen = make_levels(pattern, sizeof(pattern), CMQ_TOPIC_MAX_LEVELS - 1, "+");
	memcpy(pattern + plen, "/#", 3);
	CU_ASSERT_EQUAL(cmq_trie_insert(t, pattern, plen + 2, 0, 3, NULL, NULL), CMQ_OK);
	len = make_levels(topic, sizeof(topic), 150, "b");
	CU_ASSERT_TRUE(cmq_trie_match(t, topic, len, NULL, &v));
	CU_ASSERT_EQUAL(v, 3);
	len = make_levels(topic, sizeof(topic), CMQ_TOPIC_MAX_LEVELS, "b");
	CU_ASSERT_TRUE(cmq_trie_match(t, topic, len, NULL, &v));
	CU_ASSERT_EQUAL(v, 2); /* the full '+' pattern is more specific than ".../#" */
	/* Covering a deep filter. */
	len = make_levels(topic, sizeof(topic), 100, "b");
	memcpy(topic + len, "/#", 3);
	CU_ASSERT_TRUE(cmq_trie_covers(t, topic, len + 2, NULL, &v));
	CU_ASSERT_EQUAL(v, 3);
	cmq_trie_free(t);
}

/* Matching and covering allocate nothing: a failure armed on the next allocation never fires. */
static void TEST_match_allocates_nothing(void)
{
	static const char *const patterns[] = {"a/b/c",      "a/+/c",  "a/#", "#",
	                                       "users/%u/#", "$SYS/#", NULL};
	static const char *const inputs[] = {"a/b/c",         "a/x/c",  "a",     "q/r/s",
	                                     "users/alice/x", "$SYS/x", "a/+/#", "users/alice/#"};
	struct cmq_trie *t = build(patterns);
	uint32_t v;

	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		cmq_test_fail_after(0);
		(void)cmq_trie_match(t, inputs[i], strlen(inputs[i]), &subst_sets[S_ALICE], &v);
		(void)cmq_trie_covers(t, inputs[i], strlen(inputs[i]), &subst_sets[S_ALICE], &v);
		CU_ASSERT_FALSE(cmq_test_failure_fired());
		cmq_test_fail_after(-1);
	}
	cmq_trie_free(t);
}

/* ---- out of memory ---- */

/* ~50 patterns exercising every kind of node, table growth, long labels and substitutions. */
static const char *const oom_patterns[] = {
    "raw/d1/noise/+",
    "raw/d1/noise/dev-1",
    "raw/d1/air/+",
    "raw/d2/noise/+",
    "raw/d2/air/#",
    "raw/d3/+/dev-9",
    "raw/d4/traffic/cam-1",
    "raw/d4/traffic/cam-2",
    "raw/d4/traffic/cam-3",
    "raw/d4/traffic/cam-4",
    "raw/d4/traffic/cam-5",
    "raw/d4/traffic/cam-6",
    "raw/d4/traffic/cam-7",
    "raw/d4/traffic/cam-8",
    "raw/d4/traffic/cam-9",
    "raw/d4/traffic/cam-10",
    "raw/#",
    "city/+/+",
    "city/transparency/#",
    "city/d1/air",
    "cmd/+/+/%c",
    "cmd/d1/signal/%c/#",
    "users/%u/#",
    "users/%u/inbox",
    "vendors/%v/status",
    "vendors/%v/+/%c",
    "%u/private",
    "$SYS/#",
    "$CONTROL/civicmq/v1",
    "#",
    "+",
    "+/+",
    "+/+/#",
    "a//b",
    "/a",
    "a/",
    "/",
    "x/a-label-that-is-much-longer-than-the-inline-limit/y",
    "x/a-label-that-is-much-longer-than-the-inline-limit/z/#",
    "x/another-label-that-is-much-longer-than-the-inline-one",
    "st\303\244dte/+/m\xc3\xbcll",
    "deep/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17/18/19/20/21/22/23/24/25/26/27/28/29/30/31",
    "deep/+/2/+/4/+/6/+/8/+/10/#",
    "w/0",
    "w/1",
    "w/2",
    "w/3",
    "w/4",
    "w/5",
    "w/6",
    "w/7",
    "w/8",
};
#define OOM_N (sizeof(oom_patterns) / sizeof(oom_patterns[0]))

/* Topics and filters that probe every pattern above. */
static const char *const oom_probes[] = {
    "raw/d1/noise/x",
    "raw/d1/noise/dev-1",
    "raw/d1/air/x",
    "raw/d2/noise/y",
    "raw/d2/air",
    "raw/d2/air/a/b",
    "raw/d3/q/dev-9",
    "raw/d4/traffic/cam-1",
    "raw/d4/traffic/cam-5",
    "raw/d4/traffic/cam-10",
    "raw/d4/traffic/cam-11",
    "raw/zz",
    "city/d9/x",
    "city/transparency/register",
    "city/d1/air",
    "cmd/d1/signal/dev-1",
    "cmd/d1/signal/dev-1/ack",
    "users/alice/inbox",
    "users/alice/x/y",
    "vendors/acme/status",
    "vendors/acme/q/dev-1",
    "alice/private",
    "$SYS/broker",
    "$CONTROL/civicmq/v1",
    "q",
    "q/r",
    "q/r/s/t",
    "a//b",
    "/a",
    "a/",
    "/",
    "x/a-label-that-is-much-longer-than-the-inline-limit/y",
    "x/a-label-that-is-much-longer-than-the-inline-limit/z/1",
    "x/another-label-that-is-much-longer-than-the-inline-one",
    "st\303\244dte/k/m\xc3\xbcll",
    "deep/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17/18/19/20/21/22/23/24/25/26/27/28/29/30/31",
    "deep/x/2/y/4/z/6/w/8/v/10/u/t",
    "w/0",
    "w/5",
    "w/8",
    "w/9",
    "raw/+/noise/#",
    "users/alice/#",
    "w/+",
};
#define OOM_PROBES (sizeof(oom_probes) / sizeof(oom_probes[0]))

/* Whether t and ref answer every probe identically (match and covers). */
static bool same_answers(const struct cmq_trie *t, const struct cmq_trie *ref)
{
	const struct cmq_subst *s = &subst_sets[S_ALICE];

	if (cmq_trie_count(t) != cmq_trie_count(ref))
		return false;
	for (size_t i = 0; i < OOM_PROBES; i++) {
		const char *p = oom_probes[i];
		uint32_t a = 0xffffffffu, b = 0xffffffffu;

		if (cmq_trie_match(t, p, strlen(p), s, &a) !=
		        cmq_trie_match(ref, p, strlen(p), s, &b) ||
		    a != b)
			return false;
		a = b = 0xffffffffu;
		if (cmq_trie_covers(t, p, strlen(p), s, &a) !=
		        cmq_trie_covers(ref, p, strlen(p), s, &b) ||
		    a != b)
			return false;
	}
	return true;
}

/* A reference trie of the first n patterns, built with allocation failures disarmed. */
static struct cmq_trie *reference(size_t n)
{
	struct cmq_trie *ref = NULL;

	CU_ASSERT_EQUAL_FATAL(cmq_trie_new(&ref), CMQ_OK);
	for (size_t i = 0; i < n; i++)
		CU_ASSERT_EQUAL(cmq_trie_insert(ref, oom_patterns[i], strlen(oom_patterns[i]),
		                                CMQ_PATTERN_ALLOW_SUBST, (uint32_t)i, NULL, NULL),
		                CMQ_OK);
	return ref;
}

static void TEST_insert_out_of_memory_sweep(void)
{
	const long start = cmq_test_live_allocations();
	unsigned failures = 0, nomem_inserts = 0;
	bool done = false;

	for (long n = 0; !done && n < 100000; n++) {
		struct cmq_trie *t = NULL;
		size_t k;
		int rc;

		cmq_test_fail_after(n);
		rc = cmq_trie_new(&t);
		if (rc != CMQ_OK) {
			cmq_test_fail_after(-1);
			CU_ASSERT_EQUAL(rc, CMQ_ERR_NOMEM);
			CU_ASSERT_PTR_NULL(t);
			CU_ASSERT_EQUAL(cmq_test_live_allocations(), start);
			failures++;
			continue;
		}
		for (k = 0; k < OOM_N; k++) {
			rc = cmq_trie_insert(t, oom_patterns[k], strlen(oom_patterns[k]),
			                     CMQ_PATTERN_ALLOW_SUBST, (uint32_t)k, NULL, NULL);
			if (rc != CMQ_OK)
				break;
		}
		done = !cmq_test_failure_fired();
		cmq_test_fail_after(-1);
		if (k < OOM_N) {
			struct cmq_trie *ref = reference(k);
			uint32_t v;

			/* A clean error, and the trie is exactly what it was before that insert. */
			CU_ASSERT_EQUAL(rc, CMQ_ERR_NOMEM);
			CU_ASSERT_TRUE(same_answers(t, ref));
			/* Still valid: the failed pattern and all later ones go in now. */
			for (size_t j = k; j < OOM_N; j++)
				CU_ASSERT_EQUAL(cmq_trie_insert(t, oom_patterns[j],
				                                strlen(oom_patterns[j]),
				                                CMQ_PATTERN_ALLOW_SUBST,
				                                (uint32_t)j, NULL, NULL),
				                CMQ_OK);
			cmq_trie_free(ref);
			ref = reference(OOM_N);
			CU_ASSERT_TRUE(same_answers(t, ref));
			CU_ASSERT_TRUE(cmq_trie_match(t, "w/8", 3, NULL, &v) && v == OOM_N - 1);
			cmq_trie_free(ref);
			nomem_inserts++;
			failures++;
		} else {
			CU_ASSERT_TRUE(done);
		}
		cmq_trie_free(t);
		CU_ASSERT_EQUAL(cmq_test_live_allocations(), start);
	}
	CU_ASSERT_TRUE(done);
	/* The sweep did reach failures inside inserts (not only in cmq_trie_new). */
	CU_ASSERT_TRUE(nomem_inserts >= 6);
	CU_ASSERT_TRUE(failures > nomem_inserts);
}

/*
 * The sweep above fails the n-th allocation of the whole build, and the arrays
 * grow by doubling, so most inserts allocate nothing. This one fails every
 * allocation of every single insert: for pattern k, allocation j = 0, 1, ...
 */
static void TEST_insert_out_of_memory_each_insert(void)
{
	const long start = cmq_test_live_allocations();
	unsigned points = 0;

	for (size_t k = 0; k < OOM_N; k++) {
		for (long j = 0;; j++) {
			struct cmq_trie *t = reference(k);
			struct cmq_trie *ref = reference(k);
			int rc;

			cmq_test_fail_after(j);
			rc = cmq_trie_insert(t, oom_patterns[k], strlen(oom_patterns[k]),
			                     CMQ_PATTERN_ALLOW_SUBST, (uint32_t)k, NULL, NULL);
			cmq_test_fail_after(-1);
			if (rc == CMQ_OK) {
				cmq_trie_free(ref);
				ref = reference(k + 1);
				CU_ASSERT_TRUE(same_answers(t, ref));
			} else {
				CU_ASSERT_EQUAL(rc, CMQ_ERR_NOMEM);
				CU_ASSERT_TRUE(same_answers(t, ref));
				points++;
			}
			cmq_trie_free(t);
			cmq_trie_free(ref);
			CU_ASSERT_EQUAL(cmq_test_live_allocations(), start);
			if (rc != CMQ_ERR_NOMEM)
				break;
		}
	}
	/* Growth is by doubling, so only a few inserts allocate; each array must fail once. */
	CU_ASSERT_TRUE(points >= 6);
}

/* ---- scale ---- */

static void TEST_scale_100k_patterns(void)
{
	enum { DISTRICTS = 1000, KINDS = 100, N = DISTRICTS * KINDS };
	struct cmq_trie *t = NULL;
	char buf[96];
	uint32_t v, existing = 0;
	int len;

	CU_ASSERT_EQUAL_FATAL(cmq_trie_new(&t), CMQ_OK);
	for (uint32_t i = 0; i < N; i++) {
		len = snprintf(buf, sizeof(buf), "raw/district-%u/kind-%u/+", i / KINDS, i % KINDS);
		if (cmq_trie_insert(t, buf, (size_t)len, 0, i, NULL, NULL) != CMQ_OK) {
			CU_FAIL("insert failed");
			break;
		}
	}
	CU_ASSERT_EQUAL(cmq_trie_count(t), N);
	CU_ASSERT_EQUAL(cmq_trie_insert(t, "raw/district-7/kind-3/+", 23, 0, 0, NULL, &existing),
	                CMQ_ERR_EXISTS);
	CU_ASSERT_EQUAL(existing, 703);
	/* A sample of matches lands on the right pattern. */
	for (uint32_t i = 0; i < N; i += 997) {
		len = snprintf(buf, sizeof(buf), "raw/district-%u/kind-%u/dev-%u", i / KINDS,
		               i % KINDS, i);
		v = 0xffffffffu;
		CU_ASSERT_TRUE(cmq_trie_match(t, buf, (size_t)len, NULL, &v));
		CU_ASSERT_EQUAL(v, i);
	}
	/* Near misses do not match. */
	static const char *const misses[] = {
	    "raw/district-1000/kind-0/x", "raw/district-5/kind-100/x", "raw/district-5/kind-5",
	    "raw/district-5/kind-5/x/y",  "raw/district-05/kind-5/x",  "city/district-5/kind-5/x",
	};
	for (size_t i = 0; i < sizeof(misses) / sizeof(misses[0]); i++)
		CU_ASSERT_FALSE(cmq_trie_match(t, misses[i], strlen(misses[i]), NULL, &v));
	CU_ASSERT_TRUE(cmq_trie_covers(t, "raw/district-999/kind-99/+", 26, NULL, &v));
	CU_ASSERT_EQUAL(v, N - 1);
	/* About 64 bytes a pattern plus tables; generous bound to catch blow-ups. */
	CU_ASSERT_TRUE(cmq_trie_memory(t) < (size_t)32 << 20);
	cmq_trie_free(t);
}

/* Thousands of siblings under one node, then under many: table growth and block reuse. */
static void TEST_many_siblings(void)
{
	struct cmq_trie *t = NULL;
	char buf[64];
	uint32_t v;
	int len;

	CU_ASSERT_EQUAL_FATAL(cmq_trie_new(&t), CMQ_OK);
	for (uint32_t i = 0; i < 5000; i++) {
		len = snprintf(buf, sizeof(buf), "s/%u", i);
		CU_ASSERT_EQUAL(cmq_trie_insert(t, buf, (size_t)len, 0, i, NULL, NULL), CMQ_OK);
	}
	for (uint32_t i = 0; i < 300; i++) {
		len = snprintf(buf, sizeof(buf), "p/%u/%u", i % 30, i);
		CU_ASSERT_EQUAL(cmq_trie_insert(t, buf, (size_t)len, 0, 10000 + i, NULL, NULL),
		                CMQ_OK);
	}
	for (uint32_t i = 0; i < 5000; i++) {
		len = snprintf(buf, sizeof(buf), "s/%u", i);
		v = 0;
		CU_ASSERT_TRUE(cmq_trie_match(t, buf, (size_t)len, NULL, &v) && v == i);
	}
	for (uint32_t i = 0; i < 300; i++) {
		len = snprintf(buf, sizeof(buf), "p/%u/%u", i % 30, i);
		v = 0;
		CU_ASSERT_TRUE(cmq_trie_match(t, buf, (size_t)len, NULL, &v) && v == 10000 + i);
	}
	CU_ASSERT_FALSE(cmq_trie_match(t, "s/5000", 6, NULL, &v));
	CU_ASSERT_FALSE(cmq_trie_match(t, "p/0/1", 5, NULL, &v));
	CU_ASSERT_EQUAL(cmq_trie_count(t), 5300);
	cmq_trie_free(t);
}

/* ---- randomised comparison with a naive reference ---- */

static uint32_t rnd_state = 12345;

static uint32_t rnd(uint32_t n)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return (rnd_state >> 16) % n;
}

static void random_string(char *buf, size_t size, bool pattern)
{
	static const char *const pattern_levels[] = {"a", "b",  "",   "$x", "+", "+",
	                                             "#", "%u", "%c", "%v", "ab"};
	static const char *const topic_levels[] = {"a", "b", "", "$x", "x", "ab", "+", "#"};
	size_t n = 1 + rnd(4), used = 0;

	for (size_t i = 0; i < n; i++) {
		const char *l = pattern ? pattern_levels[rnd(11)] : topic_levels[rnd(8)];

		if (i > 0)
			buf[used++] = '/';
		if (used + strlen(l) + 2 >= size)
			break;
		memcpy(buf + used, l, strlen(l));
		used += strlen(l);
	}
	buf[used] = '\0';
}

static void TEST_random_against_reference(void)
{
	static const struct cmq_subst s = {"a", 1, "b", 1, "$x", 2};
	char patterns[12][32], input[32];
	unsigned compared = 0, matched = 0;

	for (int round = 0; round < 3000; round++) {
		struct cmq_trie *t = NULL;
		size_t np = 1 + rnd(12);
		uint32_t n_in = 0;
		bool in_trie[12] = {false};

		CU_ASSERT_EQUAL_FATAL(cmq_trie_new(&t), CMQ_OK);
		for (size_t i = 0; i < np; i++) {
			random_string(patterns[i], sizeof(patterns[i]), true);
			in_trie[i] = cmq_trie_insert(t, patterns[i], strlen(patterns[i]),
			                             CMQ_PATTERN_ALLOW_SUBST, (uint32_t)i, NULL,
			                             NULL) == CMQ_OK;
			n_in += in_trie[i];
		}
		CU_ASSERT_EQUAL(cmq_trie_count(t), n_in);
		for (int q = 0; q < 8; q++) {
			bool filter = q & 1;
			int want = NO_MATCH;
			uint32_t v = 0xffffffffu;
			bool hit;

			random_string(input, sizeof(input), false);
			if (filter && !cmq_filter_check(input, strlen(input), NULL))
				continue;
			for (size_t i = 0; i < np; i++) {
				if (in_trie[i] &&
				    cmq_oracle_applies(patterns[i], strlen(patterns[i]), input,
				                       strlen(input), filter, &s) == 1 &&
				    (want == NO_MATCH ||
				     cmq_oracle_more_specific(patterns[i], strlen(patterns[i]),
				                              patterns[want],
				                              strlen(patterns[want]))))
					want = (int)i;
			}
			hit = filter ? cmq_trie_covers(t, input, strlen(input), &s, &v)
			             : cmq_trie_match(t, input, strlen(input), &s, &v);
			compared++;
			matched += want != NO_MATCH;
			if (hit != (want != NO_MATCH) || (hit && v != (uint32_t)want)) {
				fprintf(stderr, "\n  %s \"%s\": trie %d, reference %d; patterns:",
				        filter ? "covers" : "match", input, hit ? (int)v : -1,
				        want);
				for (size_t i = 0; i < np; i++)
					fprintf(stderr, " \"%s\"%s", patterns[i],
					        in_trie[i] ? "" : "(dup)");
				fprintf(stderr, "\n");
				CU_FAIL("trie disagrees with the reference");
			}
		}
		cmq_trie_free(t);
	}
	/* The generator must produce both outcomes often, or the comparison proves little. */
	CU_ASSERT_TRUE(compared > 10000);
	CU_ASSERT_TRUE(matched > compared / 5 && matched < compared - compared / 5);
}

static const struct cmq_test_case cases[] = {
    {"match_table", TEST_match_table},
    {"covers_table", TEST_covers_table},
    {"pattern_check_table", TEST_pattern_check_table},
    {"pattern_depth_limit", TEST_pattern_depth_limit},
    {"pattern_length_limit", TEST_pattern_length_limit},
    {"insert_duplicate_exists", TEST_insert_duplicate_exists},
    {"empty_and_null_trie", TEST_empty_and_null_trie},
    {"deep_topics", TEST_deep_topics},
    {"match_allocates_nothing", TEST_match_allocates_nothing},
    {"insert_out_of_memory_sweep", TEST_insert_out_of_memory_sweep},
    {"insert_out_of_memory_each_insert", TEST_insert_out_of_memory_each_insert},
    {"scale_100k_patterns", TEST_scale_100k_patterns},
    {"many_siblings", TEST_many_siblings},
    {"random_against_reference", TEST_random_against_reference},
    {NULL, NULL},
};

int main(void)
{
	return cmq_test_run("trie", cases);
}
