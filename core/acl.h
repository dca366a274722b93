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
 *     empty levels that a rule covers, ending in their own device id, in a category their vendor
 * may feed (restricted vendors: public class only), not retained unless public, within the rule's
 * size limit; bridges may publish any topic a rule covers; only the gateway role subscribes to or
 * receives them;
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

/* MQTT v5 user properties the plugin stamps on accepted raw messages. */
#define CMQ_PROP_PREFIX "civicmq-"
#define CMQ_PROP_VENDOR "civicmq-vendor"
#define CMQ_PROP_DEVICE "civicmq-device"
#define CMQ_PROP_TIER   "civicmq-tier"
#define CMQ_PROP_POLICY "civicmq-policy"

struct cmq_provenance {
	const char *vendor; /* borrowed from the policy */
	const char *device; /* borrowed from the caller's username */
	const char *tier;
	const char *policy; /* the policy stamp */
};

/*
 * Provenance for a message a client published (after its WRITE check): true
 * for a device publishing a raw/ topic, with *out filled; false otherwise
 * (nothing to stamp). Allocates nothing.
 */
bool cmq_provenance_for(const struct cmq_policy *p, const char *username, const char *topic,
                        struct cmq_provenance *out);

#endif
