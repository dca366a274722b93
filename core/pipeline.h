/*
 * pipeline.h - what the gateway does with one raw message, without any MQTT:
 *
 *   topic rule -> district check -> provenance -> size/parse -> consent ->
 *   scrub profile -> identifier guard -> scrubbed topic
 *
 * and the answer is exactly one of: forward (a scrubbed topic and payload),
 * absorb (a contribution to an aggregate window), or drop (a reason from
 * drop.h). Nothing that failed any step is ever returned as forwardable.
 *
 * Checks, in order (the first that fails decides the drop reason):
 *  - the topic is raw/... and a topic rule covers it (NO_RULE); every level the
 *    scrubbed template copies is a district name: 1..64 bytes of [a-z0-9_-]
 *    and not "gateway" or "transparency", which are reserved under city/
 *    (BAD_TOPIC);
 *  - the civicmq-provenance stamp is present (NO_PROVENANCE), well formed and
 *    names the device of the topic's last level, whose id prefix belongs to
 *    the stamped vendor (BAD_PROVENANCE); the vendor is known to this policy,
 *    not blocked, permitted for the rule's category, and not restricted when
 *    the rule is not public (VENDOR_REFUSED). The plugin already enforced all
 *    of this; the gateway checks again because it trusts nothing it did not
 *    check against the policy it enforces;
 *  - the payload fits the rule's max_payload and parses (scrub.h);
 *  - resident-linked categories: the rule's subject path names a well-formed
 *    resident id (NO_SUBJECT) who opted in for the category (NO_CONSENT);
 *  - the profile applies (scrub.h reasons);
 *  - the serialised output contains neither the device id nor the resident id
 *    (IDENTIFIER_LEAK): a profile that keeps a field carrying them is caught
 *    here, whatever the field is called.
 *
 * Memory: the result owns its output (cmq_pipeline_result_cleanup). Thread:
 * the policy, consent and profile are read-only; env->pseudo is not
 * thread-safe, so calls sharing one env must be serialised.
 * Cost: a trie lookup, the parse, the profile, one serialisation and two
 * substring searches; no allocation beyond json-c's.
 */
#ifndef CMQ_PIPELINE_H
#define CMQ_PIPELINE_H

#include "drop.h"
#include "scrub.h"

#include <stddef.h>
#include <stdint.h>

struct cmq_policy;
struct cmq_consent;
struct cmq_rule;
struct cmq_profile;

#define CMQ_PIPELINE_TOPIC_MAX 512
#define CMQ_PIPELINE_MAX_DEPTH 16 /* default JSON nesting limit for payloads */

enum cmq_outcome { CMQ_OUTCOME_DROP, CMQ_OUTCOME_FORWARD, CMQ_OUTCOME_ABSORB };

/* What the pipeline reads; all borrowed. consent NULL = nobody consented. */
struct cmq_pipeline {
	const struct cmq_policy *policy;
	const struct cmq_consent *consent;
	struct cmq_scrub_env env; /* pseudonymiser and time */
	int max_depth;            /* JSON nesting limit (<= 0: CMQ_PIPELINE_MAX_DEPTH) */
};

struct cmq_pipeline_result {
	enum cmq_outcome outcome;
	enum cmq_drop reason;               /* CMQ_DROP_NONE unless outcome is DROP */
	struct cmq_scrub_fail fail;         /* where a scrub failed (reason as above) */
	const struct cmq_rule *rule;        /* NULL if no rule matched */
	const struct cmq_profile *profile;  /* NULL if no rule matched */
	char topic[CMQ_PIPELINE_TOPIC_MAX]; /* FORWARD/ABSORB: the scrubbed topic */
	const char *payload;                /* FORWARD: the scrubbed JSON (owned by the result) */
	size_t payload_len;
	struct cmq_scrub_agg agg; /* ABSORB: what to add to the aggregate */
	struct json_object *out;  /* owns payload */
};

/*
 * Run one message. provenance is the civicmq-provenance property value (NULL if
 * absent). Always fills *res (cleanup it afterwards, whatever the outcome) and
 * returns res->outcome.
 */
enum cmq_outcome cmq_pipeline_run(const struct cmq_pipeline *pl, const char *topic,
                                  size_t topic_len, const void *payload, size_t len,
                                  const char *provenance, struct cmq_pipeline_result *res);

/* Free what a result owns; safe to call twice. */
void cmq_pipeline_result_cleanup(struct cmq_pipeline_result *res);

/* Whether the profile pseudonymises (its output then names a key epoch). */
bool cmq_profile_pseudonymises(const struct cmq_profile *prof);

#endif
