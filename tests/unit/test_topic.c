/*
 * test_topic.c - UTF-8, identity, topic and filter checks, $share stripping
 * and level iteration (core/topic.c). Cases are rows of static tables; a
 * failing row is printed with its table name and index, and the other rows
 * still run.
 */
#include "cmq_test.h"

#include "topic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of a table string: explicit when it contains NUL, else strlen. */
#define LEN_AUTO ((size_t)-1)

static size_t row_len(const char *s, size_t len)
{
	return len == LEN_AUTO ? strlen(s) : len;
}

/* Report which row failed, then assert; CUnit alone only prints the line. */
static void check_row(bool ok, const char *table, size_t row, const char *what)
{
	if (!ok)
		fprintf(stderr, "\n  %s row %zu failed: %s\n", table, row, what);
	CU_ASSERT(ok);
}

/* ---- cmq_utf8_valid ---- */

static const struct {
	const char *s;
	size_t len;
	bool valid;
} utf8_rows[] = {
    {"", 0, true},
    {"plain ascii", LEN_AUTO, true},
    {"a\0b", 3, true}, /* NUL is well-formed UTF-8; callers refuse it */
    {"\x7f", LEN_AUTO, true},
    {"\xc2\x80", LEN_AUTO, true},         /* U+0080, smallest 2-byte */
    {"\xc3\xa9", LEN_AUTO, true},         /* e acute */
    {"\xdf\xbf", LEN_AUTO, true},         /* U+07FF */
    {"\xe0\xa0\x80", LEN_AUTO, true},     /* U+0800, smallest 3-byte */
    {"\xe2\x82\xac", LEN_AUTO, true},     /* euro sign */
    {"\xed\x9f\xbf", LEN_AUTO, true},     /* U+D7FF, just below the surrogates */
    {"\xee\x80\x80", LEN_AUTO, true},     /* U+E000, just above them */
    {"\xef\xbf\xbf", LEN_AUTO, true},     /* U+FFFF */
    {"\xf0\x90\x80\x80", LEN_AUTO, true}, /* U+10000, smallest 4-byte */
    {"\xf0\x9f\x98\x80", LEN_AUTO, true}, /* emoji */
    {"\xf4\x8f\xbf\xbf", LEN_AUTO, true}, /* U+10FFFF, the last code point */
    {"st\303\244dte/\xe5\x8c\x97\xe4\xba\xac", LEN_AUTO, true},
    /* overlongs */
    {"\xc0\xaf", LEN_AUTO, false},
    {"\xc1\xbf", LEN_AUTO, false},
    {"\xc0\x80", LEN_AUTO, false}, /* "modified UTF-8" NUL */
    {"\xe0\x80\xaf", LEN_AUTO, false},
    {"\xe0\x9f\xbf", LEN_AUTO, false},
    {"\xf0\x80\x80\xaf", LEN_AUTO, false},
    {"\xf0\x8f\xbf\xbf", LEN_AUTO, false},
    /* surrogates */
    {"\xed\xa0\x80", LEN_AUTO, false},
    {"\xed\xbf\xbf", LEN_AUTO, false},
    {"\xed\xa0\xbd\xed\xb8\x80", LEN_AUTO, false}, /* CESU-8 pair */
    /* beyond U+10FFFF */
    {"\xf4\x90\x80\x80", LEN_AUTO, false},
    {"\xf5\x80\x80\x80", LEN_AUTO, false},
    {"\xf7\xbf\xbf\xbf", LEN_AUTO, false},
    {"\xf8\x88\x80\x80\x80", LEN_AUTO, false},
    {"\xfe", LEN_AUTO, false},
    {"\xff", LEN_AUTO, false},
    /* truncated */
    {"\xc3", LEN_AUTO, false},
    {"\xe2\x82", LEN_AUTO, false},
    {"\xf0\x9f\x98", LEN_AUTO, false},
    {"abc\xe2\x82", LEN_AUTO, false},
    {"\xe2\x82\xac", 2, false}, /* a valid sequence cut by the length */
    /* stray or wrong continuation bytes */
    {"\x80", LEN_AUTO, false},
    {"\xbf", LEN_AUTO, false},
    {"a\x80z", LEN_AUTO, false},
    {"\xc3\x28", LEN_AUTO, false},
    {"\xe2\x28\xa1", LEN_AUTO, false},
    {"\xe2\x82\x28", LEN_AUTO, false},
    {"\xf0\x9f\x98\x28", LEN_AUTO, false},
    {"\xc3\xa9\xc3", LEN_AUTO, false},
};

static void TEST_utf8_validation(void)
{
	for (size_t i = 0; i < sizeof(utf8_rows) / sizeof(utf8_rows[0]); i++) {
		size_t len = row_len(utf8_rows[i].s, utf8_rows[i].len);

		check_row(cmq_utf8_valid(utf8_rows[i].s, len) == utf8_rows[i].valid, "utf8", i,
		          utf8_rows[i].valid ? "should be valid" : "should be invalid");
	}
	CU_ASSERT_TRUE(cmq_utf8_valid(NULL, 0));
	CU_ASSERT_FALSE(cmq_utf8_valid(NULL, 1));
}

/* ---- cmq_identity_check ---- */

static const struct {
	const char *s;
	size_t len;
	const char *why; /* NULL: accepted; else a substring of the reason */
} identity_rows[] = {
    {"sensor-0001", LEN_AUTO, NULL},
    {"dev.city_01:a=b", LEN_AUTO, NULL},
    {"St\303\244dtwerke", LEN_AUTO, NULL},
    {"$SYS", LEN_AUTO, NULL}, /* '$' is fine; the trie keeps %u out of $ topics */
    {"50%", LEN_AUTO, NULL},
    {"a b", LEN_AUTO, NULL},
    {"", 0, "is empty"},
    {"a+b", LEN_AUTO, "contains '+'"},
    {"+", LEN_AUTO, "contains '+'"},
    {"a#", LEN_AUTO, "contains '#'"},
    {"#", LEN_AUTO, "contains '#'"},
    {"a/b", LEN_AUTO, "contains '/'"},
    {"/", LEN_AUTO, "contains '/'"},
    {"a\0b", 3, "control character"},
    {"\0", 1, "control character"},
    {"a\x01", LEN_AUTO, "control character"},
    {"\x1f", LEN_AUTO, "control character"},
    {"tab\there", LEN_AUTO, "control character"},
    {"line\n", LEN_AUTO, "control character"},
    {"\r", LEN_AUTO, "control character"},
    {"\x1b[31m", LEN_AUTO, "control character"},
    {"del\x7f", LEN_AUTO, "control character"},
    {"c1\xc2\x80", LEN_AUTO, "control character"},
    {"c1\xc2\x9f", LEN_AUTO, "control character"},
    {"\xc2\xa0nbsp", LEN_AUTO, NULL}, /* U+00A0 is not a control character */
    {"\xc3", LEN_AUTO, "not valid UTF-8"},
    {"\xc0\xaf", LEN_AUTO, "not valid UTF-8"},
    {"\xed\xa0\x80", LEN_AUTO, "not valid UTF-8"},
    {"\xf4\x90\x80\x80", LEN_AUTO, "not valid UTF-8"},
    {"\xff", LEN_AUTO, "not valid UTF-8"},
};

static void TEST_identity_check_table(void)
{
	for (size_t i = 0; i < sizeof(identity_rows) / sizeof(identity_rows[0]); i++) {
		const char *why = "unset";
		size_t len = row_len(identity_rows[i].s, identity_rows[i].len);
		bool ok = cmq_identity_check(identity_rows[i].s, len, &why);

		if (identity_rows[i].why == NULL) {
			check_row(ok, "identity", i, "should be accepted");
			check_row(why == NULL, "identity", i, "why should be NULL when accepted");
		} else {
			check_row(!ok, "identity", i, "should be refused");
			check_row(why != NULL && strstr(why, identity_rows[i].why) != NULL,
			          "identity", i, identity_rows[i].why);
		}
		/* why may be NULL; the verdict must not change. */
		check_row(cmq_identity_check(identity_rows[i].s, len, NULL) == ok, "identity", i,
		          "same verdict without why");
	}
}

static void TEST_identity_check_length_limit(void)
{
	char buf[CMQ_ID_MAX + 2];
	const char *why = NULL;

	memset(buf, 'a', sizeof(buf));
	CU_ASSERT_TRUE(cmq_identity_check(buf, CMQ_ID_MAX, &why));
	CU_ASSERT_FALSE(cmq_identity_check(buf, CMQ_ID_MAX + 1, &why));
	CU_ASSERT_PTR_NOT_NULL_FATAL(why);
	CU_ASSERT_STRING_EQUAL(why, "is longer than 128 bytes");
	/* The limit is in bytes, not characters: 64 two-byte characters fit, 65 do not. */
	for (size_t i = 0; i + 1 < sizeof(buf); i += 2) {
		buf[i] = (char)0xc3;
		buf[i + 1] = (char)0xa9;
	}
	CU_ASSERT_TRUE(cmq_identity_check(buf, CMQ_ID_MAX, &why));
	CU_ASSERT_FALSE(cmq_identity_check(buf, CMQ_ID_MAX + 2, &why));
	CU_ASSERT_FALSE(cmq_identity_check(NULL, 0, &why));
	CU_ASSERT_STRING_EQUAL(why, "is empty");
}

/* ---- cmq_topic_check / cmq_filter_check ---- */

static const struct {
	const char *s;
	size_t len;
	const char *topic_why;  /* NULL: valid topic */
	const char *filter_why; /* NULL: valid filter */
} topic_rows[] = {
    {"a", LEN_AUTO, NULL, NULL},
    {"raw/district-1/noise/dev-7", LEN_AUTO, NULL, NULL},
    {"/", LEN_AUTO, NULL, NULL},
    {"a//b", LEN_AUTO, NULL, NULL},
    {"/a", LEN_AUTO, NULL, NULL},
    {"a/", LEN_AUTO, NULL, NULL},
    {"$SYS/broker/load", LEN_AUTO, NULL, NULL},
    {"$share/g/a", LEN_AUTO, NULL, NULL}, /* not special here */
    {"st\303\244dte/50%", LEN_AUTO, NULL, NULL},
    {"a\tb", LEN_AUTO, NULL, NULL}, /* MQTT allows control characters in topics */
    {"", 0, "is empty", "is empty"},
    {"+", LEN_AUTO, "contains '+'", NULL},
    {"#", LEN_AUTO, "contains '#'", NULL},
    {"a/+", LEN_AUTO, "contains '+'", NULL},
    {"+/+/#", LEN_AUTO, "contains '+'", NULL},
    {"/#", LEN_AUTO, "contains '#'", NULL},
    {"a//+/", LEN_AUTO, "contains '+'", NULL},
    {"a/#", LEN_AUTO, "contains '#'", NULL},
    {"a+", LEN_AUTO, "contains '+'", "'+' must fill a whole level"},
    {"+a", LEN_AUTO, "contains '+'", "'+' must fill a whole level"},
    {"a/b+/c", LEN_AUTO, "contains '+'", "'+' must fill a whole level"},
    {"++", LEN_AUTO, "contains '+'", "'+' must fill a whole level"},
    {"a#", LEN_AUTO, "contains '#'", "'#' must fill a whole level"},
    {"#a", LEN_AUTO, "contains '#'", "'#' must fill a whole level"},
    {"##", LEN_AUTO, "contains '#'", "'#' must fill a whole level"},
    {"#/a", LEN_AUTO, "contains '#'", "'#' must be the last level"},
    {"a/#/b", LEN_AUTO, "contains '#'", "'#' must be the last level"},
    {"a/#/", LEN_AUTO, "contains '#'", "'#' must be the last level"},
    {"a\0b", 3, "NUL", "NUL"},
    {"a/\0", 3, "NUL", "NUL"},
    {"\xc3(", LEN_AUTO, "not valid UTF-8", "not valid UTF-8"},
    {"a/\xed\xa0\x80", LEN_AUTO, "not valid UTF-8", "not valid UTF-8"},
};

static void TEST_topic_and_filter_check_table(void)
{
	for (size_t i = 0; i < sizeof(topic_rows) / sizeof(topic_rows[0]); i++) {
		size_t len = row_len(topic_rows[i].s, topic_rows[i].len);
		const char *why = "unset";
		bool ok = cmq_topic_check(topic_rows[i].s, len, &why);

		if (topic_rows[i].topic_why == NULL) {
			check_row(ok && why == NULL, "topic", i, "should be a valid topic");
		} else {
			check_row(!ok, "topic", i, "should be an invalid topic");
			check_row(why != NULL && strstr(why, topic_rows[i].topic_why) != NULL,
			          "topic", i, topic_rows[i].topic_why);
		}
		why = "unset";
		ok = cmq_filter_check(topic_rows[i].s, len, &why);
		if (topic_rows[i].filter_why == NULL) {
			check_row(ok && why == NULL, "filter", i, "should be a valid filter");
		} else {
			check_row(!ok, "filter", i, "should be an invalid filter");
			check_row(why != NULL && strstr(why, topic_rows[i].filter_why) != NULL,
			          "filter", i, topic_rows[i].filter_why);
		}
	}
}

static void TEST_topic_length_limit(void)
{
	char *buf = malloc(CMQ_TOPIC_MAX_LEN + 1);
	const char *why = NULL;

	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	memset(buf, 'x', CMQ_TOPIC_MAX_LEN + 1);
	for (size_t i = 100; i < CMQ_TOPIC_MAX_LEN; i += 100)
		buf[i] = '/';
	CU_ASSERT_TRUE(cmq_topic_check(buf, CMQ_TOPIC_MAX_LEN, &why));
	CU_ASSERT_TRUE(cmq_filter_check(buf, CMQ_TOPIC_MAX_LEN, &why));
	CU_ASSERT_FALSE(cmq_topic_check(buf, CMQ_TOPIC_MAX_LEN + 1, &why));
	CU_ASSERT_PTR_NOT_NULL(why);
	CU_ASSERT_PTR_NOT_NULL(why != NULL ? strstr(why, "longer than 65535 bytes") : NULL);
	CU_ASSERT_FALSE(cmq_filter_check(buf, CMQ_TOPIC_MAX_LEN + 1, &why));
	CU_ASSERT_FALSE(cmq_topic_check(NULL, 0, &why));
	CU_ASSERT_FALSE(cmq_filter_check(NULL, 0, NULL));
	free(buf);
}

/* ---- cmq_filter_strip_share ---- */

static const struct {
	const char *filter;
	bool shared;
	const char *rest; /* expected rest when shared */
} share_rows[] = {
    {"$share/workers/raw/#", true, "raw/#"},
    {"$share/g/a/b", true, "a/b"},
    {"$share/g/#", true, "#"},
    {"$share/g/+", true, "+"},
    {"$share/g//a", true, "/a"},
    {"$share/g/$share/h/x", true, "$share/h/x"}, /* only one layer is stripped */
    {"$share/g", true, ""},                      /* no filter */
    {"$share/g/", true, ""},
    {"$share//a", true, ""}, /* empty group: shared, but nothing usable */
    {"$share/", true, ""},
    {"$share/g+/a", true, ""}, /* wildcard in group */
    {"$share/+/a", true, ""},
    {"$share/#/a", true, ""},
    {"$share/g#h/a", true, ""},
    {"$share", false, NULL},
    {"$shared/g/a", false, NULL},
    {"$SHARE/g/a", false, NULL},
    {"$queue/a", false, NULL},
    {"a/$share/g/b", false, NULL},
    {"share/g/a", false, NULL},
    {"raw/#", false, NULL},
    {"", false, NULL},
};

static void TEST_filter_strip_share_table(void)
{
	static const char sentinel[] = "untouched";

	for (size_t i = 0; i < sizeof(share_rows) / sizeof(share_rows[0]); i++) {
		const char *f = share_rows[i].filter;
		const char *rest = sentinel;
		size_t rest_len = 12345;
		bool shared = cmq_filter_strip_share(f, strlen(f), &rest, &rest_len);

		check_row(shared == share_rows[i].shared, "share", i, "shared or not");
		if (!share_rows[i].shared) {
			check_row(rest == sentinel && rest_len == 12345, "share", i,
			          "outputs must be untouched");
			continue;
		}
		check_row(rest_len == strlen(share_rows[i].rest) &&
		              memcmp(rest, share_rows[i].rest, rest_len) == 0,
		          "share", i, share_rows[i].rest);
		/* The rest borrows from the filter. */
		check_row(rest >= f && rest + rest_len <= f + strlen(f), "share", i,
		          "rest must point into the filter");
		/* An empty rest is refused by the filter check, so a broken share fails closed. */
		if (rest_len == 0)
			check_row(!cmq_filter_check(rest, rest_len, NULL), "share", i,
			          "empty rest must be an invalid filter");
	}
	CU_ASSERT_FALSE(cmq_filter_strip_share(NULL, 0, NULL, NULL));
}

/* ---- level iteration ---- */

static const struct {
	const char *topic;
	const char *levels; /* expected levels joined with '|' */
	size_t count;
} level_rows[] = {
    {"a", "a", 1},
    {"a/b/c", "a|b|c", 3},
    {"/a", "|a", 2},
    {"a/", "a|", 2},
    {"a//b", "a||b", 3},
    {"/", "|", 2},
    {"//", "||", 3},
    {"", "", 1},
    {"$SYS/broker", "$SYS|broker", 2},
    {"st\303\244dte/x", "st\303\244dte|x", 2},
};

static void TEST_level_iteration_table(void)
{
	for (size_t i = 0; i < sizeof(level_rows) / sizeof(level_rows[0]); i++) {
		const char *topic = level_rows[i].topic;
		size_t len = strlen(topic);
		struct cmq_level it, copy;
		char joined[64];
		size_t used = 0, count = 0;
		bool last_ok = true;

		cmq_level_first(&it, topic, len);
		do {
			if (count > 0)
				joined[used++] = '|';
			memcpy(joined + used, it.s, it.len);
			used += it.len;
			count++;
			/* The level lies inside the topic; `last` is set exactly on the last. */
			if (it.s < topic || it.s + it.len > topic + len || it.end != topic + len)
				last_ok = false;
			if (it.last != (it.s + it.len == topic + len))
				last_ok = false;
		} while (cmq_level_next(&it) && count < 10);
		joined[used] = '\0';
		check_row(count == level_rows[i].count, "levels", i, "level count");
		check_row(strcmp(joined, level_rows[i].levels) == 0, "levels", i,
		          level_rows[i].levels);
		check_row(last_ok, "levels", i, "bounds and last flag");
		/* After the last level, next() returns false and leaves the iterator alone. */
		copy = it;
		check_row(!cmq_level_next(&it) && memcmp(&copy, &it, sizeof(it)) == 0, "levels", i,
		          "next after last");
	}
}

static void TEST_level_iteration_null_empty(void)
{
	struct cmq_level it;

	cmq_level_first(&it, NULL, 0);
	CU_ASSERT_EQUAL(it.len, 0);
	CU_ASSERT_TRUE(it.last);
	CU_ASSERT_FALSE(cmq_level_next(&it));
}

static const struct cmq_test_case cases[] = {
    {"utf8_validation", TEST_utf8_validation},
    {"identity_check_table", TEST_identity_check_table},
    {"identity_check_length_limit", TEST_identity_check_length_limit},
    {"topic_and_filter_check_table", TEST_topic_and_filter_check_table},
    {"topic_length_limit", TEST_topic_length_limit},
    {"filter_strip_share_table", TEST_filter_strip_share_table},
    {"level_iteration_table", TEST_level_iteration_table},
    {"level_iteration_null_empty", TEST_level_iteration_null_empty},
    {NULL, NULL},
};

int main(void)
{
	return cmq_test_run("topic", cases);
}
