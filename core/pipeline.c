/*
 * pipeline.c - one raw message through rule, provenance, consent and scrub (see
 * pipeline.h for the order of checks and what each refuses).
 */
#define _GNU_SOURCE /* memmem, memrchr */
#include "pipeline.h"

#include "acl.h"
#include "error.h"
#include "consent.h"
#include "policy.h"
#include "topic.h"

#include <string.h>

#define DISTRICT_MAX 64

static enum cmq_outcome drop(struct cmq_pipeline_result *res, enum cmq_drop reason)
{
	res->outcome = CMQ_OUTCOME_DROP;
	res->reason = reason;
	if (res->fail.reason == CMQ_DROP_NONE)
		res->fail.reason = reason;
	return CMQ_OUTCOME_DROP;
}

bool cmq_profile_pseudonymises(const struct cmq_profile *prof)
{
	for (size_t i = 0; prof != NULL && i < prof->n_ops; i++) {
		if (prof->ops[i].kind == CMQ_SCRUB_PSEUDONYMISE)
			return true;
	}
	return false;
}

/* A level copied into a city/ topic: a plain district name, never a reserved one. */
static bool district_ok(const char *s, size_t len)
{
	if (len == 0 || len > DISTRICT_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
	}
	return !(len == 7 && memcmp(s, "gateway", 7) == 0) &&
	       !(len == 12 && memcmp(s, "transparency", 12) == 0);
}

/* Expand the rule's template ("city/{1}/air") with the raw topic's levels. */
static bool expand_template(const char *tmpl, const char *topic, size_t topic_len, char *out,
                            size_t outsize)
{
	struct cmq_level lv[CMQ_TOPIC_MAX_LEVELS];
	struct cmq_level it;
	size_t n = 0, o = 0;
	const char *t = tmpl;

	cmq_level_first(&it, topic, topic_len);
	do {
		if (n == CMQ_TOPIC_MAX_LEVELS)
			return false;
		lv[n++] = it;
	} while (cmq_level_next(&it));

	while (*t != '\0') {
		const char *piece = t;
		size_t plen = 1;

		if (*t == '{') {
			size_t idx = 0;
			const char *e = t + 1;

			while (*e >= '0' && *e <= '9')
				idx = idx * 10 + (size_t)(*e++ - '0');
			if (*e != '}' || e == t + 1 || idx >= n || lv[idx].last)
				return false;
			if (!district_ok(lv[idx].s, lv[idx].len))
				return false;
			piece = lv[idx].s;
			plen = lv[idx].len;
			t = e + 1;
		} else {
			t++;
		}
		if (o + plen >= outsize)
			return false;
		memcpy(out + o, piece, plen);
		o += plen;
	}
	out[o] = '\0';
	return true;
}

/* The last level of a topic (the device id). */
static void last_level(const char *topic, size_t len, const char **s, size_t *slen)
{
	const char *slash = memrchr(topic, '/', len);

	*s = slash != NULL ? slash + 1 : topic;
	*slen = (size_t)(topic + len - *s);
}

static enum cmq_drop check_provenance(const struct cmq_policy *p, const struct cmq_rule *rule,
                                      const char *topic, size_t topic_len, const char *value,
                                      char *device, size_t devsize)
{
	char buf[CMQ_PROVENANCE_MAX];
	struct cmq_provenance prov;
	const struct cmq_vendor *v;
	const char *dev;
	size_t dlen;

	if (value == NULL)
		return CMQ_DROP_NO_PROVENANCE;
	if (cmq_provenance_parse(value, buf, sizeof(buf), &prov) != CMQ_OK)
		return CMQ_DROP_BAD_PROVENANCE;
	last_level(topic, topic_len, &dev, &dlen);
	if (strlen(prov.device) != dlen || memcmp(prov.device, dev, dlen) != 0 || dlen >= devsize)
		return CMQ_DROP_BAD_PROVENANCE;
	memcpy(device, dev, dlen);
	device[dlen] = '\0';
	v = cmq_policy_vendor_find(p, prov.vendor);
	if (v == NULL)
		return CMQ_DROP_VENDOR_REFUSED;
	if (cmq_policy_vendor_for_device(p, dev, dlen) != v)
		return CMQ_DROP_BAD_PROVENANCE;
	if (v->tier == CMQ_TIER_BLOCKED ||
	    (v->tier == CMQ_TIER_RESTRICTED && rule->cls != CMQ_CLASS_PUBLIC))
		return CMQ_DROP_VENDOR_REFUSED;
	if ((v->categories & (UINT64_C(1) << rule->category)) == 0)
		return CMQ_DROP_VENDOR_REFUSED;
	return CMQ_DROP_NONE;
}

/* Resident-linked categories: the subject must be named and must have opted in. */
static enum cmq_drop check_consent(const struct cmq_pipeline *pl, const struct cmq_rule *rule,
                                   struct json_object *in, const char **subject, size_t *slen)
{
	const struct cmq_category *cat = &pl->policy->categories[rule->category];
	struct json_object *v;

	*subject = NULL;
	*slen = 0;
	if (!cat->resident_linked)
		return CMQ_DROP_NONE;
	if (rule->subject == NULL)
		return CMQ_DROP_NO_SUBJECT; /* the loader requires one; fail closed anyway */
	v = cmq_scrub_path_get(in, &rule->subject_path);
	if (v == NULL || !json_object_is_type(v, json_type_string))
		return CMQ_DROP_NO_SUBJECT;
	*subject = json_object_get_string(v);
	*slen = (size_t)json_object_get_string_len(v);
	if (!cmq_subject_valid(*subject, *slen))
		return CMQ_DROP_NO_SUBJECT;
	if (pl->consent == NULL || !cmq_consent_allows(pl->consent, *subject, *slen, cat->id))
		return CMQ_DROP_NO_CONSENT;
	return CMQ_DROP_NONE;
}

enum cmq_outcome cmq_pipeline_run(const struct cmq_pipeline *pl, const char *topic,
                                  size_t topic_len, const void *payload, size_t len,
                                  const char *provenance, struct cmq_pipeline_result *res)
{
	const struct cmq_policy *p = pl->policy;
	struct json_object *in = NULL;
	const struct cmq_rule *rule;
	char device[CMQ_ID_MAX + 1];
	const char *subject;
	size_t slen;
	uint32_t idx;
	enum cmq_drop reason;

	memset(res, 0, sizeof(*res));
	res->outcome = CMQ_OUTCOME_DROP;
	if (p == NULL)
		return drop(res, CMQ_DROP_INTERNAL);
	if (topic_len < 5 || memcmp(topic, "raw/", 4) != 0 ||
	    !cmq_topic_check(topic, topic_len, NULL))
		return drop(res, CMQ_DROP_NO_RULE);
	if (!cmq_trie_match(p->rule_trie, topic, topic_len, NULL, &idx) || idx >= p->n_rules)
		return drop(res, CMQ_DROP_NO_RULE);
	rule = &p->rules[idx];
	res->rule = rule;
	res->profile = &p->profiles[rule->profile];
	if (!expand_template(rule->scrubbed, topic, topic_len, res->topic, sizeof(res->topic)))
		return drop(res, CMQ_DROP_BAD_TOPIC);

	reason = check_provenance(p, rule, topic, topic_len, provenance, device, sizeof(device));
	if (reason != CMQ_DROP_NONE)
		return drop(res, reason);

	if (len > rule->max_payload)
		return drop(res, CMQ_DROP_TOO_LARGE);
	reason = cmq_scrub_parse(payload, len, rule->max_payload,
	                         pl->max_depth > 0 ? pl->max_depth : CMQ_PIPELINE_MAX_DEPTH, &in);
	if (reason != CMQ_DROP_NONE)
		return drop(res, reason);

	reason = check_consent(pl, rule, in, &subject, &slen);
	if (reason != CMQ_DROP_NONE)
		goto out;

	reason = cmq_scrub_apply(res->profile, in, &pl->env, &res->out, &res->agg, &res->fail);
	if (reason != CMQ_DROP_NONE)
		goto out;
	if (res->out == NULL) {
		res->outcome = CMQ_OUTCOME_ABSORB;
		goto out;
	}
	res->payload = json_object_to_json_string_length(
	    res->out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &res->payload_len);
	if (res->payload == NULL) {
		reason = CMQ_DROP_INTERNAL;
		goto out;
	}
	/* The guard of last resort: whatever the profile kept, no identifier leaves. */
	if (memmem(res->payload, res->payload_len, device, strlen(device)) != NULL ||
	    (subject != NULL && memmem(res->payload, res->payload_len, subject, slen) != NULL)) {
		reason = CMQ_DROP_IDENTIFIER_LEAK;
		goto out;
	}
	res->outcome = CMQ_OUTCOME_FORWARD;
out:
	json_object_put(in);
	if (reason != CMQ_DROP_NONE) {
		cmq_pipeline_result_cleanup(res);
		return drop(res, reason);
	}
	return res->outcome;
}

void cmq_pipeline_result_cleanup(struct cmq_pipeline_result *res)
{
	json_object_put(res->out);
	res->out = NULL;
	res->payload = NULL;
	res->payload_len = 0;
}
