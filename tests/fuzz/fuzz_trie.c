/*
 * fuzz_trie.c - libFuzzer target for core/trie.c and core/topic.c.
 *
 * Input: byte 0 is a set of flags, byte 1 an allocation-failure countdown,
 * the rest is split on '\n' into up to 8 patterns followed by a topic (one
 * line is both). The patterns are inserted (values = their index), then the
 * topic, every pattern read as a filter, and a topic made from every pattern
 * are matched and covered, and each answer is compared with a naive
 * reference written straight from the rules in trie.h. A disagreement traps;
 * so does an insert that fails without leaving the trie as it was.
 *
 * flags: 0x01 insert with CMQ_PATTERN_ALLOW_SUBST; 0x06 which substitution
 *        set; 0x10 no substitution values at all; 0x08 fail the allocation
 *        numbered by byte 1 (the out-of-memory path).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore ... tests/fuzz/fuzz_trie.c \
 *       core/alloc.c core/error.c core/topic.c core/trie.c -o fuzz_trie
 *   ./fuzz_trie -max_total_time=60 corpus-dir tests/fuzz/corpus/fuzz_trie
 */
#include "alloc.h"
#include "error.h"
#include "topic.h"
#include "trie.h"

#include "../trie_oracle.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PATTERNS 8
#define MAX_LEVELS   CMQ_ORACLE_MAX_LEVELS /* longer inputs are skipped by the oracle */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- a failing allocator ---- */

static long fail_countdown = -1;
static bool fail_fired;

/* Whether this allocation is the one to fail. */
static bool fz_fail_now(void)
{
	if (fail_countdown == 0) {
		fail_countdown = -1;
		fail_fired = true;
		return true;
	}
	if (fail_countdown > 0)
		fail_countdown--;
	return false;
}

static void *fz_malloc(size_t n)
{
	return fz_fail_now() ? NULL : malloc(n);
}

static void *fz_realloc(void *p, size_t n)
{
	return fz_fail_now() ? NULL : realloc(p, n);
}

static const struct cmq_allocator fz_alloc = {fz_malloc, fz_realloc, free};

/* ---- the reference: tests/trie_oracle.h ---- */

struct state {
	struct cmq_oracle_level pat[MAX_PATTERNS];
	bool in[MAX_PATTERNS]; /* inserted (valid and not a duplicate) */
	size_t n;
	const struct cmq_subst *subst;
};

/* Compare the trie with the reference on one input; traps on disagreement. */
static void check(const struct cmq_trie *t, const struct state *st, const char *s, size_t len,
                  bool filter)
{
	struct cmq_oracle_level in = {s, len};
	int want = -1;
	uint32_t v = 0xfffffff0u;
	bool hit;

	for (size_t i = 0; i < st->n; i++) {
		int r;

		if (!st->in[i])
			continue;
		r = cmq_oracle_applies(st->pat[i].s, st->pat[i].len, in.s, in.len, filter,
		                       st->subst);
		if (r < 0)
			return; /* too deep for the reference */
		if (r && (want < 0 || cmq_oracle_more_specific(st->pat[i].s, st->pat[i].len,
		                                               st->pat[want].s, st->pat[want].len)))
			want = (int)i;
	}
	hit = filter ? cmq_trie_covers(t, s, len, st->subst, &v)
	             : cmq_trie_match(t, s, len, st->subst, &v);
	if (hit != (want >= 0))
		__builtin_trap();
	if (hit ? v != (uint32_t)want : v != 0xfffffff0u)
		__builtin_trap();
}

/* A topic the pattern should match: wildcards replaced by concrete levels. */
static size_t concretise(const struct cmq_oracle_level *p, const struct cmq_subst *s, char *buf,
                         size_t size)
{
	static struct cmq_oracle_level l[MAX_LEVELS];
	size_t n = cmq_oracle_split(p->s, p->len, l, MAX_LEVELS), used = 0;

	for (size_t i = 0; i < n && i < MAX_LEVELS; i++) {
		const char *text = l[i].s;
		size_t tlen = l[i].len;
		int r = cmq_oracle_rank(&l[i]);

		if (r == 4) {
			text = "x";
			tlen = 1;
		} else if (r == 5) {
			text = "y/z";
			tlen = 3;
		} else if (r >= 1 && s != NULL) {
			text = r == 1 ? s->username : r == 2 ? s->client_id : s->vendor;
			tlen = r == 1 ? s->username_len : r == 2 ? s->client_id_len : s->vendor_len;
		}
		if (used + tlen + 1 > size)
			break;
		if (i > 0)
			buf[used++] = '/';
		memcpy(buf + used, text, tlen);
		used += tlen;
	}
	return used;
}

/* The topic/filter checks and helpers must not crash on anything. */
static void exercise_topic(const char *s, size_t len)
{
	const char *why, *rest = NULL;
	size_t rest_len = 0;
	struct cmq_level it;
	size_t levels = 0, total = 0;

	(void)cmq_utf8_valid(s, len);
	(void)cmq_identity_check(s, len, &why);
	(void)cmq_topic_check(s, len, &why);
	if (cmq_filter_strip_share(s, len, &rest, &rest_len)) {
		if (rest < s || rest + rest_len > s + len)
			__builtin_trap();
		(void)cmq_filter_check(rest, rest_len, &why);
	}
	cmq_level_first(&it, s, len);
	do {
		levels++;
		total += it.len;
	} while (cmq_level_next(&it));
	/* The levels and their separators add up to the topic. */
	if (total + levels - 1 != len)
		__builtin_trap();
}

static const struct cmq_subst subst_sets[4] = {
    {"a", 1, "b", 1, "$x", 2},
    {"x", 1, "x", 1, "x", 1},
    {"", 0, "", 0, "", 0},
    {"a+b", 3, "a/b", 3, "#", 1},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char concrete[4200];
	struct state st;
	struct cmq_trie *t = NULL;
	const char *text, *end, *line;
	unsigned flags;
	size_t n_lines = 0;
	struct cmq_oracle_level lines[MAX_PATTERNS + 1];
	struct cmq_oracle_level topic;

	if (size < 2)
		return 0;
	cmq_set_allocator(&fz_alloc);
	flags = data[0];
	text = (const char *)data + 2;
	end = (const char *)data + size;
	for (line = text; n_lines < MAX_PATTERNS + 1;) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));

		lines[n_lines].s = line;
		lines[n_lines].len = nl != NULL ? (size_t)(nl - line) : (size_t)(end - line);
		n_lines++;
		if (nl == NULL)
			break;
		line = nl + 1;
	}
	topic = lines[n_lines - 1];
	memset(&st, 0, sizeof(st));
	st.n = n_lines > 1 ? n_lines - 1 : 1;
	for (size_t i = 0; i < st.n; i++)
		st.pat[i] = lines[i];
	st.subst = (flags & 0x10) ? NULL : &subst_sets[(flags >> 1) & 3];

	exercise_topic(topic.s, topic.len);

	fail_countdown = (flags & 0x08) ? data[1] : -1;
	fail_fired = false;
	if (cmq_trie_new(&t) != CMQ_OK) {
		fail_countdown = -1;
		if (t != NULL || !fail_fired)
			__builtin_trap();
		return 0;
	}
	for (size_t i = 0; i < st.n; i++) {
		unsigned pflags = (flags & 0x01) ? CMQ_PATTERN_ALLOW_SUBST : 0;
		const char *why = NULL, *why2 = NULL;
		uint32_t existing = 0xffffffffu;
		int check_rc = cmq_pattern_check(st.pat[i].s, st.pat[i].len, pflags, &why2);
		size_t before = cmq_trie_count(t);
		int rc = cmq_trie_insert(t, st.pat[i].s, st.pat[i].len, pflags, (uint32_t)i, &why,
		                         &existing);

		if (rc == CMQ_ERR_NOMEM) {
			/* Unchanged and still valid: answers as before, and the insert now works.
			 */
			fail_countdown = -1;
			if (cmq_trie_count(t) != before)
				__builtin_trap();
			check(t, &st, topic.s, topic.len, false);
			rc = cmq_trie_insert(t, st.pat[i].s, st.pat[i].len, pflags, (uint32_t)i,
			                     &why, &existing);
		}
		if (rc == CMQ_ERR_INVAL && (check_rc != CMQ_ERR_INVAL || why == NULL))
			__builtin_trap();
		if (rc != CMQ_ERR_INVAL && check_rc != CMQ_OK)
			__builtin_trap();
		if (rc == CMQ_ERR_EXISTS && existing >= i)
			__builtin_trap();
		st.in[i] = rc == CMQ_OK;
		if (cmq_trie_count(t) != before + (rc == CMQ_OK))
			__builtin_trap();
	}
	fail_countdown = -1;

	check(t, &st, topic.s, topic.len, false);
	check(t, &st, topic.s, topic.len, true);
	for (size_t i = 0; i < st.n; i++) {
		size_t clen = concretise(&st.pat[i], st.subst, concrete, sizeof(concrete));

		check(t, &st, st.pat[i].s, st.pat[i].len, true);
		check(t, &st, st.pat[i].s, st.pat[i].len, false);
		check(t, &st, concrete, clen, false);
	}
	(void)cmq_trie_memory(t);
	cmq_trie_free(t);
	return 0;
}
