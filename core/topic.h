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
 * why != NULL) points to a static sentence such as "contains '+'".
 */
bool cmq_identity_check(const char *s, size_t len, const char **why);

/*
 * Check a concrete topic as published: non-empty, <= CMQ_TOPIC_MAX_LEN, valid
 * UTF-8, no NUL, no '+' or '#'. Same return convention as cmq_identity_check.
 */
bool cmq_topic_check(const char *s, size_t len, const char **why);

/*
 * Check a subscription filter: as cmq_topic_check, but '+' may fill a whole
 * level and '#' may fill only the last level.
 */
bool cmq_filter_check(const char *s, size_t len, const char **why);

/*
 * If filter starts with "$share/<group>/", set *rest/*rest_len to the filter
 * after it and return true; otherwise return false and leave them untouched.
 * A "$share/<group>" with no filter after it returns true with *rest_len 0.
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
