/*
 * acl.h - may this client publish, subscribe to or receive this topic?
 *
 * Order of a decision (first deny wins; default deny):
 *  1. unsubscribing is always allowed;
 *  2. the username resolves to a principal (trust.h) or the answer is no;
 *  3. '$' topics are reserved (a "$share/<group>/" prefix is stripped from
 *     subscription filters first);
 *  4. devices: a blocked vendor is denied everything, a restricted vendor may
 *     not subscribe or receive;
 *  5. raw/ topics: only devices publish them, and only to a topic without
 *     empty levels that a rule covers, ending in their own device id (and
 *     carrying it nowhere else, since other levels may reach city/ topics), in a category their
 * vendor may feed (restricted vendors: public class only), not retained unless public, within the
 * rule's size limit; bridges may publish any topic a rule covers; only the gateway role subscribes
 * to or receives them;
 *  6. city/ topics: only the gateway publishes them;
 *  7. the role's explicit denies, then its grants (%u %c %v substituted);
 *     a subscription is allowed when one grant covers the whole filter.
 *
 * Cost: O(topic levels): a few hash lookups and trie walks, no allocation,
 * independent of the number of rules, vendors and operators.
 * Thread: the broker's (any thread, given an immutable policy).
 */
#ifndef CMQ_ACL_H
#define CMQ_ACL_H

#include "trust.h"

#include <stdbool.h>
#include <stdint.h>

enum cmq_access { CMQ_ACCESS_READ, CMQ_ACCESS_WRITE, CMQ_ACCESS_SUBSCRIBE, CMQ_ACCESS_UNSUBSCRIBE };

struct cmq_acl_request {
	const char *username;  /* as set at connect; may be NULL */
	const char *client_id; /* may be NULL */
	enum cmq_access access;
	const char *topic; /* topic (READ/WRITE) or filter (SUBSCRIBE) */
	uint32_t payloadlen;
	bool retain;
	/* The principal username resolves to, if the caller already knows it (pcache.h); NULL
	 * (as a positional initialiser leaves it) makes the check resolve it. */
	const struct cmq_principal *who;
};

struct cmq_acl_result {
	enum cmq_reason reason;
	struct cmq_principal who;
	const struct cmq_rule *rule; /* the topic rule consulted for raw topics, or NULL */
};

/* Decide; *out is reset first. Never fails: internal problems deny. */
enum cmq_decision cmq_acl_check(const struct cmq_policy *p, const struct cmq_acl_request *req,
                                struct cmq_acl_result *out);

const char *cmq_access_name(enum cmq_access a);

/*
 * Provenance travels as one MQTT v5 user property, civicmq-provenance, whose value is
 * "<vendor>/<device>/<tier>/<policy stamp>", e.g.
 *     civitas/civitas-air-001/trusted/2026-11-28.1+b13da5dd9549
 * No field can contain '/': vendor ids, tiers and stamps are restricted to other
 * characters, and identities containing '/' are refused at connect. One property rather
 * than four because each property costs the broker three allocations and a UTF-8 check
 * per message (bench/RESULTS.md). Clients may not set any property named civicmq-*.
 */
/* The administrative request topic (admin.h); only the admin role may publish to it. */
#define CMQ_CONTROL_TOPIC "$CONTROL/civicmq/v1"

#define CMQ_PROP_PREFIX     "civicmq-"
#define CMQ_PROP_PROVENANCE "civicmq-provenance"
#define CMQ_PROVENANCE_MAX  (CMQ_ID_FIELD_MAX + CMQ_ID_MAX + CMQ_STAMP_MAX + 32)

struct cmq_provenance {
	const char *vendor; /* borrowed from the policy */
	const char *device; /* borrowed from the caller's username */
	const char *tier;
	const char *policy; /* the policy stamp */
};

/* Format the property value into buf. Returns CMQ_OK, or CMQ_ERR_TOO_BIG / CMQ_ERR_INVAL. */
int cmq_provenance_format(const struct cmq_provenance *p, char *buf, size_t buflen);

/*
 * Split a property value into its four fields: copied into buf, and *out points into it.
 * Returns CMQ_OK, or CMQ_ERR_PARSE if there are not exactly four non-empty fields or the
 * tier is not a tier (out is zeroed), or CMQ_ERR_TOO_BIG if buf is too small.
 */
int cmq_provenance_parse(const char *value, char *buf, size_t buflen, struct cmq_provenance *out);

/*
 * Provenance for a message a client published (after its WRITE check): true
 * for a device publishing a raw/ topic, with *out filled; false otherwise
 * (nothing to stamp). Allocates nothing.
 */
bool cmq_provenance_for(const struct cmq_policy *p, const char *username, const char *topic,
                        struct cmq_provenance *out);
/* The same when the caller has resolved username already (who may be NULL: resolve). */
bool cmq_provenance_of(const struct cmq_policy *p, const struct cmq_principal *who,
                       const char *username, const char *topic, struct cmq_provenance *out);

#endif
