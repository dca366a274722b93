/*
 * trie_oracle.h - a naive MQTT matcher written straight from the rules in core/trie.h, the
 * reference the trie is checked against by tests/unit/test_trie.c and by the fuzz target
 * tests/fuzz/fuzz_trie.c. Slow and obvious on purpose: no tables, no backtracking, one
 * pattern at a time.
 */
#ifndef CMQ_TRIE_ORACLE_H
#define CMQ_TRIE_ORACLE_H

#include "topic.h"
#include "trie.h"

#include <stdbool.h>
#include <string.h>

#define CMQ_ORACLE_MAX_LEVELS 80

struct cmq_oracle_level {
	const char *s;
	size_t len;
};

/* The levels of s (at most max are stored); returns how many there are. */
static inline size_t cmq_oracle_split(const char *s, size_t len, struct cmq_oracle_level *out,
                                      size_t max)
{
	struct cmq_level it;
	size_t n = 0;

	cmq_level_first(&it, s, len);
	do {
		if (n < max) {
			out[n].s = it.s;
			out[n].len = it.len;
		}
		n++;
	} while (cmq_level_next(&it));
	return n;
}

static inline bool cmq_oracle_is(const struct cmq_oracle_level *l, const char *text)
{
	return l->len == strlen(text) && memcmp(l->s, text, l->len) == 0;
}

/* Specificity rank of a pattern level: literal 0, %u 1, %c 2, %v 3, + 4, # 5. */
static inline int cmq_oracle_rank(const struct cmq_oracle_level *l)
{
	static const char *const special[] = {"%u", "%c", "%v", "+", "#"};

	for (int i = 0; i < 5; i++) {
		if (cmq_oracle_is(l, special[i]))
			return i + 1;
	}
	return 0;
}

/* Whether substitution r (1 %u, 2 %c, 3 %v) fills level l. */
static inline bool cmq_oracle_subst(const struct cmq_subst *s, int r,
                                    const struct cmq_oracle_level *l)
{
	const char *v;
	size_t vlen;

	if (s == NULL)
		return false;
	v = r == 1 ? s->username : r == 2 ? s->client_id : s->vendor;
	vlen = r == 1 ? s->username_len : r == 2 ? s->client_id_len : s->vendor_len;
	return cmq_identity_check(v, vlen, NULL) && vlen == l->len && memcmp(v, l->s, vlen) == 0;
}

/*
 * Whether pattern p matches topic in (or, with filter, covers filter in): 1 or 0; -1 when
 * either has more than CMQ_ORACLE_MAX_LEVELS levels (beyond the reference).
 */
static inline int cmq_oracle_applies(const char *p, size_t plen, const char *in, size_t ilen,
                                     bool filter, const struct cmq_subst *s)
{
	struct cmq_oracle_level pl[CMQ_ORACLE_MAX_LEVELS], il[CMQ_ORACLE_MAX_LEVELS];
	size_t np = cmq_oracle_split(p, plen, pl, CMQ_ORACLE_MAX_LEVELS);
	size_t ni = cmq_oracle_split(in, ilen, il, CMQ_ORACLE_MAX_LEVELS);
	bool dollar;

	if (np > CMQ_ORACLE_MAX_LEVELS || ni > CMQ_ORACLE_MAX_LEVELS)
		return -1;
	if (ilen == 0 || ilen > CMQ_TOPIC_MAX_LEN) /* an empty topic matches nothing */
		return 0;
	if (filter && !cmq_filter_check(in, ilen, NULL))
		return 0;
	dollar = il[0].len > 0 && il[0].s[0] == '$';
	for (size_t i = 0; i < np; i++) {
		int r = cmq_oracle_rank(&pl[i]);
		bool wild_ok = !(i == 0 && dollar);

		if (r == 5) /* '#': takes the rest, including nothing (and any filter rest) */
			return wild_ok;
		if (i >= ni)
			return 0;
		if (filter && cmq_oracle_is(&il[i], "#"))
			return 0;
		if (filter && cmq_oracle_is(&il[i], "+")) {
			if (r != 4)
				return 0;
			continue;
		}
		if (r == 0 ? !(pl[i].len == il[i].len && memcmp(pl[i].s, il[i].s, il[i].len) == 0)
		           : !wild_ok || (r < 4 && !cmq_oracle_subst(s, r, &il[i])))
			return 0;
	}
	return np == ni;
}

/* Whether pattern a is more specific than pattern b (both apply to the same input). */
static inline bool cmq_oracle_more_specific(const char *a, size_t alen, const char *b, size_t blen)
{
	struct cmq_oracle_level la[CMQ_ORACLE_MAX_LEVELS], lb[CMQ_ORACLE_MAX_LEVELS];
	size_t na = cmq_oracle_split(a, alen, la, CMQ_ORACLE_MAX_LEVELS);
	size_t nb = cmq_oracle_split(b, blen, lb, CMQ_ORACLE_MAX_LEVELS);

	for (size_t i = 0; (i < na || i < nb) && i < CMQ_ORACLE_MAX_LEVELS; i++) {
		int ra = i < na ? cmq_oracle_rank(&la[i]) : -1;
		int rb = i < nb ? cmq_oracle_rank(&lb[i]) : -1;

		if (ra != rb)
			return ra < rb;
	}
	return false;
}

#endif
