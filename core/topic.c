/*
 * topic.c - validation of topics, filters and identities; level iteration.
 *
 * Every function here borrows (pointer, length), allocates nothing and runs
 * in O(length) with a single pass, so all of it may be used on the broker's
 * hot path. The `why` sentences are static strings meant to follow a subject
 * chosen by the caller ("client id 'x' " + "contains '+'").
 *
 * The UTF-8 validator follows RFC 3629 table 3-7 (Unicode 15, D92): it
 * refuses overlong forms, UTF-16 surrogates (U+D800..U+DFFF), code points
 * above U+10FFFF and truncated sequences. It does not refuse NUL, which is
 * well-formed UTF-8; the callers refuse it separately.
 *
 * Thread: any.
 */
#include "topic.h"

#include <string.h>

#define CMQ_STR_(x) #x
#define CMQ_STR(x)  CMQ_STR_(x)

bool cmq_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	if (len > 0 && s == NULL)
		return false;
	while (i < len) {
		unsigned char c = p[i];
		unsigned char lo = 0x80, hi = 0xbf;
		size_t n;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			if (c == 0xe0)
				lo = 0xa0; /* overlong below U+0800 */
			else if (c == 0xed)
				hi = 0x9f; /* surrogates U+D800..U+DFFF */
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			if (c == 0xf0)
				lo = 0x90; /* overlong below U+10000 */
			else if (c == 0xf4)
				hi = 0x8f; /* above U+10FFFF */
		} else {
			return false; /* continuation byte, C0/C1 overlong lead, F5..FF */
		}
		if (len - i - 1 < n)
			return false; /* truncated */
		if (p[i + 1] < lo || p[i + 1] > hi)
			return false;
		for (size_t k = 2; k <= n; k++) {
			if (p[i + k] < 0x80 || p[i + k] > 0xbf)
				return false;
		}
		i += n + 1;
	}
	return true;
}

static bool fail(const char **why, const char *text)
{
	if (why != NULL)
		*why = text;
	return false;
}

bool cmq_identity_check(const char *s, size_t len, const char **why)
{
	const unsigned char *p = (const unsigned char *)s;

	if (why != NULL)
		*why = NULL;
	if (s == NULL || len == 0)
		return fail(why, "is empty");
	if (len > CMQ_ID_MAX)
		return fail(why, "is longer than " CMQ_STR(CMQ_ID_MAX) " bytes");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = p[i];

		if (c < 0x20 || c == 0x7f)
			return fail(why, "contains a control character");
		/* C1 controls U+0080..U+009F are encoded as C2 80..C2 9F. */
		if (c == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f)
			return fail(why, "contains a control character");
		if (c == '+')
			return fail(why, "contains '+'");
		if (c == '#')
			return fail(why, "contains '#'");
		if (c == '/')
			return fail(why, "contains '/'");
	}
	if (!cmq_utf8_valid(s, len))
		return fail(why, "is not valid UTF-8");
	return true;
}

/* Shared by topic and filter checks; wildcards says whether '+'/'#' levels are allowed. */
static bool check_topic(const char *s, size_t len, bool wildcards, const char **why)
{
	size_t level_start = 0;

	if (why != NULL)
		*why = NULL;
	if (s == NULL || len == 0)
		return fail(why, "is empty");
	if (len > CMQ_TOPIC_MAX_LEN)
		return fail(why, "is longer than " CMQ_STR(CMQ_TOPIC_MAX_LEN) " bytes");
	if (memchr(s, '\0', len) != NULL)
		return fail(why, "contains a NUL byte");
	if (!cmq_utf8_valid(s, len))
		return fail(why, "is not valid UTF-8");
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (c == '/') {
			level_start = i + 1;
			continue;
		}
		if (c != '+' && c != '#')
			continue;
		if (!wildcards)
			return fail(why, c == '+' ? "contains '+'" : "contains '#'");
		/* A wildcard must be the whole level: at its start and followed by '/' or the end.
		 */
		if (i != level_start || (i + 1 < len && s[i + 1] != '/'))
			return fail(why, c == '+' ? "'+' must fill a whole level"
			                          : "'#' must fill a whole level");
		if (c == '#' && i + 1 != len)
			return fail(why, "'#' must be the last level");
	}
	return true;
}

bool cmq_topic_check(const char *s, size_t len, const char **why)
{
	return check_topic(s, len, false, why);
}

bool cmq_filter_check(const char *s, size_t len, const char **why)
{
	return check_topic(s, len, true, why);
}

bool cmq_filter_strip_share(const char *filter, size_t len, const char **rest, size_t *rest_len)
{
	static const char prefix[] = "$share/";
	const size_t plen = sizeof(prefix) - 1;
	const char *group, *slash;
	size_t glen;

	if (filter == NULL || len < plen || memcmp(filter, prefix, plen) != 0)
		return false;
	group = filter + plen;
	slash = memchr(group, '/', len - plen);
	glen = slash != NULL ? (size_t)(slash - group) : len - plen;
	/*
	 * A shared subscription never falls back to being an ordinary filter: a
	 * missing or malformed group name (empty, or containing a wildcard) and a
	 * missing filter both yield an empty rest, which every filter check refuses.
	 */
	if (slash == NULL || glen == 0 || memchr(group, '+', glen) != NULL ||
	    memchr(group, '#', glen) != NULL) {
		*rest = filter + len;
		*rest_len = 0;
		return true;
	}
	*rest = slash + 1;
	*rest_len = len - (size_t)(slash + 1 - filter);
	return true;
}

void cmq_level_first(struct cmq_level *it, const char *topic, size_t len)
{
	const char *slash = len > 0 ? memchr(topic, '/', len) : NULL;

	it->s = topic;
	it->end = len > 0 ? topic + len : topic; /* no arithmetic on a NULL topic */
	it->len = slash != NULL ? (size_t)(slash - topic) : len;
	it->last = slash == NULL;
}

bool cmq_level_next(struct cmq_level *it)
{
	const char *start, *slash;

	if (it->last)
		return false;
	start = it->s + it->len + 1;
	slash = start < it->end ? memchr(start, '/', (size_t)(it->end - start)) : NULL;
	it->s = start;
	it->len = slash != NULL ? (size_t)(slash - start) : (size_t)(it->end - start);
	it->last = slash == NULL;
	return true;
}
