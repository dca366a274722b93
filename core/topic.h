/*
 * topic.h - validation of MQTT topics, topic filters and client identities.
 *
 * Everything here borrows (const char *, length) and allocates nothing, so it
 * is safe on the broker's hot path. "Identity" means a client id, username or
 * certificate CN: before an identity is compared with or substituted into a
 * topic it must pass cmq_identity_check(), which refuses the MQTT wildcard and
 * separator characters (+ # /), NUL and other control characters, invalid
 * UTF-8 and over-long values. Mosquitto 2.0.11 does none of this screening for
 * version-5 plugins (security.c "FIXME - username deny special chars").
 *
 * Thread: any. Cost: O(length).
 */
#ifndef CMQ_TOPIC_H
#define CMQ_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

/* Longest identity (client id / username / CN) civicmq accepts, in bytes. */
#define CMQ_ID_MAX 128
/* Deepest topic pattern civicmq compiles (levels); topics may be deeper. */
#define CMQ_TOPIC_MAX_LEVELS 32
/* Longest topic or pattern civicmq accepts, in bytes (MQTT allows 65535). */
#define CMQ_TOPIC_MAX_LEN 65535

/* True if s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool cmq_utf8_valid(const char *s, size_t len);

/*
 * Check an identity. Returns true if acceptable; otherwise false and *why (if
 * why != NULL) points to a static sentence such as "contains '+'". Refused:
 * empty ("is empty"), longer than CMQ_ID_MAX bytes, a byte below 0x20, 0x7f or
 * a C1 control U+0080..U+009F ("contains a control character"; this includes
 * NUL), '+', '#', '/' ("contains '/'"), invalid UTF-8 ("is not valid UTF-8").
 * Length is checked first, then the first offending byte, then UTF-8.
 */
bool cmq_identity_check(const char *s, size_t len, const char **why);

/*
 * Check a concrete topic as published: non-empty, <= CMQ_TOPIC_MAX_LEN, valid
 * UTF-8, no NUL, no '+' or '#'. Same return convention as cmq_identity_check.
 * There is no depth limit for topics.
 */
bool cmq_topic_check(const char *s, size_t len, const char **why);

/*
 * Check a subscription filter: as cmq_topic_check, but '+' may fill a whole
 * level and '#' may fill only the last level ("'+' must fill a whole level",
 * "'#' must fill a whole level", "'#' must be the last level"). "$share/..."
 * is not special here: strip it first with cmq_filter_strip_share().
 */
bool cmq_filter_check(const char *s, size_t len, const char **why);

/*
 * If filter starts with "$share/<group>/", set *rest and *rest_len to the
 * filter after it and return true; otherwise return false and leave them
 * untouched. Any filter starting with "$share/" returns true, so a shared
 * subscription is never mistaken for an ordinary filter: when no filter
 * follows the group ("$share/g", "$share/g/"), or the group is empty or
 * contains '+' or '#' ("$share//x", "$share/a+/x"), *rest_len is 0, which
 * cmq_filter_check() refuses. *rest borrows from filter.
 */
bool cmq_filter_strip_share(const char *filter, size_t len, const char **rest, size_t *rest_len);

/*
 * Level iteration without allocation:
 *   struct cmq_level it; cmq_level_first(&it, topic, len);
 *   do { use it.s, it.len } while (cmq_level_next(&it));
 */
struct cmq_level {
	const char *s;   /* start of the current level */
	size_t len;      /* its length (0 for an empty level) */
	const char *end; /* one past the end of the whole topic */
	bool last;       /* true if this is the last level */
};

void cmq_level_first(struct cmq_level *it, const char *topic, size_t len);
/* Advance; returns false (and leaves *it unchanged) after the last level. */
bool cmq_level_next(struct cmq_level *it);

#endif
