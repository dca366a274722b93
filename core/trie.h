/*
 * trie.h - the topic-filter trie every civicmq decision runs through.
 *
 * A trie maps MQTT topic patterns to a uint32_t value (typically an index into
 * a table owned by the caller). Patterns are MQTT filters whose levels are one
 * of: a literal, "+", "#" (last level only), or a whole-level identity
 * substitution "%u" (username), "%c" (client id), "%v" (vendor id). A
 * substitution must fill its whole level; "dev-%c" is rejected at insert, which
 * keeps matching exact and cheap. '%' is reserved in patterns: a level that
 * contains it must be exactly "%u", "%c" or "%v", so "%x" (unknown
 * substitution) and "50%off" are refused too; such topics can still be
 * matched with "+".
 *
 * Invariants and cost:
 *  - Literal children are held in a per-node open-addressing hash table, so a
 *    lookup costs O(topic levels) hash probes regardless of how many patterns
 *    are stored. Matching and covering allocate nothing and never recurse
 *    deeper than the trie (at most CMQ_TOPIC_MAX_LEVELS).
 *  - Backtracking happens only when a more specific branch dead-ends; its worst
 *    case is bounded by the branching at each level (literal, %u, %c, %v, +, #)
 *    over the trie depth, independent of the number of patterns.
 *  - MQTT rules: "+" matches exactly one (possibly empty) level; "#" matches
 *    the parent level and any number of levels below; a pattern whose first
 *    level is "+", "#" or a substitution never matches a topic starting with
 *    '$' (so "%u/#" with username "$SYS" does not open "$SYS/#").
 *  - Specificity: when several patterns match, the one that wins is decided
 *    level by level from the left, literal > %u > %c > %v > "+" > "#"; a
 *    pattern that ends at the topic's last level beats "<that level>/#".
 *  - A substitution level matches only a level equal to the value, and only
 *    if the value passes cmq_identity_check(): empty values, and values with
 *    '+', '#', '/' or control characters, never match, even if the caller
 *    forgot to screen them.
 *
 * Thread: a trie is built by one thread, then may be read concurrently.
 * Memory: all allocations go through alloc.h.
 */
#ifndef CMQ_TRIE_H
#define CMQ_TRIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Substitution values for %u, %c and %v; borrowed, need not be NUL-terminated. */
struct cmq_subst {
	const char *username;
	size_t username_len;
	const char *client_id;
	size_t client_id_len;
	const char *vendor;
	size_t vendor_len;
};

/* Flags for cmq_pattern_check / cmq_trie_insert. */
#define CMQ_PATTERN_ALLOW_SUBST 0x1u /* accept %u %c %v levels */

struct cmq_trie;

/* Returns CMQ_OK with *out set, or CMQ_ERR_NOMEM with *out NULL. */
int cmq_trie_new(struct cmq_trie **out);

/* Frees the trie and everything it owns. cmq_trie_free(NULL) is a no-op. */
void cmq_trie_free(struct cmq_trie *t);

/*
 * Validate a pattern without inserting it. Returns CMQ_OK (*why NULL), or
 * CMQ_ERR_INVAL with *why (if non-NULL) set to a static sentence naming the
 * problem, e.g. "'#' must be the last level" or "'%c' must fill a whole
 * level". The pattern must pass cmq_filter_check() (non-empty, at most
 * CMQ_TOPIC_MAX_LEN bytes, UTF-8, no NUL, wildcards as whole levels, '#'
 * last), have at most CMQ_TOPIC_MAX_LEVELS levels, and follow the '%' rule
 * above; %u %c %v levels need CMQ_PATTERN_ALLOW_SUBST. Unknown flag bits are
 * refused. "$share/..." is not special here.
 */
int cmq_pattern_check(const char *pattern, size_t len, unsigned flags, const char **why);

/*
 * Insert pattern -> value. The pattern is copied.
 * Returns CMQ_OK; CMQ_ERR_INVAL for an invalid pattern (*why as above);
 * CMQ_ERR_EXISTS if the identical pattern is already present (its value is
 * written to *existing if non-NULL; the trie is unchanged); CMQ_ERR_NOMEM (the
 * trie is unchanged and still valid; also returned if the trie would need more
 * than 2^32 nodes or label bytes). "a" and "a/#" are different patterns.
 */
int cmq_trie_insert(struct cmq_trie *t, const char *pattern, size_t len, unsigned flags,
                    uint32_t value, const char **why, uint32_t *existing);

/*
 * Most specific pattern matching a concrete topic (the topic must not contain
 * wildcards; if it does, '+' and '#' are treated as ordinary characters).
 * Returns true and sets *value, else false (*value untouched). An empty topic
 * or one longer than CMQ_TOPIC_MAX_LEN matches nothing. s may be NULL, in
 * which case substitution levels match nothing. Allocates nothing.
 */
bool cmq_trie_match(const struct cmq_trie *t, const char *topic, size_t len,
                    const struct cmq_subst *s, uint32_t *value);

/*
 * Whether some pattern covers a subscription filter, i.e. every topic the
 * filter can match is matched by that one pattern. A literal filter level is
 * covered by an equal literal, an equal substitution, "+" or "#"; a "+" level
 * by "+" or "#"; a "#" level only by "#"; a filter that ends where a pattern
 * continues with "/#" is covered by it. The '$' rule applies: a first-level
 * literal starting with '$' is covered only by a literal. Returns true and
 * sets *value (if non-NULL) to the value of the most specific covering pattern
 * (same order as matching). A filter that fails cmq_filter_check() is covered
 * by nothing; strip "$share/<group>/" first. Allocates nothing.
 */
bool cmq_trie_covers(const struct cmq_trie *t, const char *filter, size_t len,
                     const struct cmq_subst *s, uint32_t *value);

/* Number of patterns stored. */
size_t cmq_trie_count(const struct cmq_trie *t);

/* Bytes allocated by the trie (for the load benchmark and the register). */
size_t cmq_trie_memory(const struct cmq_trie *t);

#endif
