/*
 * drop.h - why the gateway did not forward a raw message: the one table of drop
 * reasons, used by the scrub engine, the pipeline, the gateway's counters and
 * its metrics JSON, so a reason has the same name everywhere.
 *
 * The gateway fails closed: every raw message ends as exactly one of forwarded,
 * absorbed into an aggregate, or dropped with one of these reasons. Names are
 * stable (dashboards and alerts key on them); add new ones at the end.
 */
#ifndef CMQ_DROP_H
#define CMQ_DROP_H

#define CMQ_DROP_MAP(X)                                                                            \
	X(NONE, "none", "not dropped")                                                             \
	X(NOT_JSON, "not_json", "payload is not well-formed JSON")                                 \
	X(TOO_DEEP, "too_deep", "payload nests deeper than the limit")                             \
	X(TOO_LARGE, "too_large", "payload is larger than the rule allows")                        \
	X(BAD_UTF8, "bad_utf8", "payload is not valid UTF-8")                                      \
	X(NOT_OBJECT, "not_object", "payload is not a JSON object")                                \
	X(WRONG_TYPE, "wrong_type", "a field the profile names has the wrong type")                \
	X(BAD_VALUE, "bad_value", "a field the profile names has a value it cannot scrub")         \
	X(NO_RULE, "no_rule", "no topic rule covers the raw topic")                                \
	X(BAD_TOPIC, "bad_topic", "the raw topic or its district level is not acceptable")         \
	X(NO_PROVENANCE, "no_provenance", "the message carries no provenance stamp")               \
	X(BAD_PROVENANCE, "bad_provenance",                                                        \
	  "the provenance stamp is malformed or contradicts the topic")                            \
	X(VENDOR_REFUSED, "vendor_refused",                                                        \
	  "the stamped vendor is unknown, blocked or not permitted")                               \
	X(NO_SUBJECT, "no_subject", "a resident-linked message names no resident")                 \
	X(NO_CONSENT, "no_consent", "the resident has not opted in for this data category")        \
	X(NO_KEY, "no_key", "the profile pseudonymises but no pseudonym key is loaded")            \
	X(IDENTIFIER_LEAK, "identifier_leak",                                                      \
	  "the scrubbed output still contains the device or resident id")                          \
	X(AGGREGATE_FULL, "aggregate_full", "too many open aggregate groups")                      \
	X(PUBLISH_FAILED, "publish_failed", "the scrubbed copy could not be handed to the client") \
	X(INTERNAL, "internal", "internal error (out of memory or similar)")

enum cmq_drop {
#define CMQ_DROP_ENUM(name, id, text) CMQ_DROP_##name,
	CMQ_DROP_MAP(CMQ_DROP_ENUM)
#undef CMQ_DROP_ENUM
	    CMQ_DROP__COUNT
};

/* Stable machine name ("no_consent"); never NULL, also for out-of-range values. */
const char *cmq_drop_name(enum cmq_drop d);
/* One-line human explanation; never NULL. */
const char *cmq_drop_text(enum cmq_drop d);

#endif
