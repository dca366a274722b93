/*
 * acl.c - access decisions (see acl.h for the order of checks).
 */
#include "acl.h"

#include "error.h"

#include <stdio.h>
#include <string.h>

static const char *const access_names[] = {"read", "write", "subscribe", "unsubscribe"};

const char *cmq_access_name(enum cmq_access a)
{
	return (unsigned)a <= CMQ_ACCESS_UNSUBSCRIBE ? access_names[a] : "?";
}

static enum cmq_decision deny(struct cmq_acl_result *out, enum cmq_reason r)
{
	out->reason = r;
	return CMQ_DENY;
}

static enum cmq_decision allow(struct cmq_acl_result *out)
{
	out->reason = CMQ_REASON_OK;
	return CMQ_ALLOW;
}

static bool first_level_is(const char *topic, size_t len, const char *word, size_t wlen)
{
	return len >= wlen && memcmp(topic, word, wlen) == 0 && (len == wlen || topic[wlen] == '/');
}

/*
 * "raw//air/x" would match "raw/+/air/+" and feed "city//air": a raw topic names its
 * district, kind and device, none of them empty.
 */
static bool has_empty_level(const char *topic, size_t len)
{
	const char *p = topic, *end = topic + len;

	if (len == 0 || topic[len - 1] == '/')
		return true;
	while ((p = memchr(p, '/', (size_t)(end - p))) != NULL) {
		if (p == topic || p[1] == '/')
			return true;
		p++;
	}
	return false;
}

/* Whether needle[0..nlen) occurs in hay[0..hlen). */
static bool contains(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
	const char *p = hay, *end = hay + hlen;

	if (nlen == 0)
		return false;
	while (p + nlen <= end && (p = memchr(p, needle[0], (size_t)(end - p))) != NULL) {
		if (p + nlen <= end && memcmp(p, needle, nlen) == 0)
			return true;
		p++;
	}
	return false;
}

/* Step 5 for a device: the topic rule and everything it implies. */
static enum cmq_decision device_raw_write(const struct cmq_policy *p,
                                          const struct cmq_acl_request *req, size_t ulen,
                                          const char *topic, size_t len, struct cmq_acl_result *out)
{
	const struct cmq_vendor *v = out->who.vendor;
	const struct cmq_rule *r;
	const char *last;
	uint32_t idx;

	if (has_empty_level(topic, len))
		return deny(out, CMQ_REASON_BAD_TOPIC);
	if (!cmq_trie_match(p->rule_trie, topic, len, NULL, &idx))
		return deny(out, CMQ_REASON_NO_RULE);
	r = &p->rules[idx];
	out->rule = r;
	last = topic + len;
	while (last > topic && last[-1] != '/')
		last--;
	if ((size_t)(topic + len - last) != ulen || memcmp(last, req->username, ulen) != 0)
		return deny(out, CMQ_REASON_NOT_OWN_DEVICE);
	/* The other wildcard levels (district, kind) are chosen by the device and may feed the
	 * scrubbed topic ({N} in the rule's template): they must not carry its id. */
	if (contains(topic, (size_t)(last - topic), req->username, ulen))
		return deny(out, CMQ_REASON_DEVICE_ID_IN_TOPIC);
	if ((v->categories & ((uint64_t)1 << r->category)) == 0)
		return deny(out, CMQ_REASON_CATEGORY_NOT_PERMITTED);
	if (v->tier == CMQ_TIER_RESTRICTED && r->cls != CMQ_CLASS_PUBLIC)
		return deny(out, CMQ_REASON_TIER_RESTRICTED);
	if (req->retain && r->cls != CMQ_CLASS_PUBLIC)
		return deny(out, CMQ_REASON_RETAIN_PERSONAL);
	if (req->payloadlen > r->max_payload)
		return deny(out, CMQ_REASON_PAYLOAD_TOO_LARGE);
	return allow(out);
}

enum cmq_decision cmq_acl_check(const struct cmq_policy *p, const struct cmq_acl_request *req,
                                struct cmq_acl_result *out)
{
	const char *topic = req->topic, *why = NULL;
	size_t len;
	enum cmq_op op;
	struct cmq_subst subst;
	const struct cmq_role *role;
	uint32_t unused;
	size_t ulen;

	memset(out, 0, sizeof(*out));
	out->reason = CMQ_REASON_INTERNAL;
	if (p == NULL)
		return deny(out, CMQ_REASON_NO_POLICY);
	if (req->access == CMQ_ACCESS_UNSUBSCRIBE)
		return allow(out);
	if (req->username == NULL)
		return deny(out, CMQ_REASON_NO_IDENTITY);
	ulen = strlen(req->username);
	if (req->who != NULL && req->who->kind != CMQ_PRINCIPAL_NONE)
		out->who = *req->who;
	else if (cmq_principal_resolve(p, req->username, ulen, &out->who) != CMQ_REASON_OK)
		return deny(out, CMQ_REASON_NO_IDENTITY);
	if (topic == NULL)
		return deny(out, CMQ_REASON_BAD_TOPIC);
	len = strlen(topic);
	if (req->access == CMQ_ACCESS_SUBSCRIBE) {
		(void)cmq_filter_strip_share(topic, len, &topic, &len);
		if (!cmq_filter_check(topic, len, &why))
			return deny(out, CMQ_REASON_BAD_TOPIC);
	}
	if (len == 0)
		return deny(out, CMQ_REASON_BAD_TOPIC);
	if (req->access == CMQ_ACCESS_WRITE && len == sizeof(CMQ_CONTROL_TOPIC) - 1 &&
	    memcmp(topic, CMQ_CONTROL_TOPIC, len) == 0) {
		if (out->who.kind == CMQ_PRINCIPAL_OPERATOR && out->who.role != NULL &&
		    out->who.role->kind == CMQ_ROLE_ADMIN)
			return allow(out);
		return deny(out, CMQ_REASON_CONTROL_FORBIDDEN);
	}
	if (topic[0] == '$')
		return deny(out, CMQ_REASON_RESERVED_TOPIC);

	role = out->who.role;
	if (out->who.kind == CMQ_PRINCIPAL_DEVICE) {
		if (out->who.vendor->tier == CMQ_TIER_BLOCKED)
			return deny(out, CMQ_REASON_VENDOR_BLOCKED);
		if (out->who.vendor->tier == CMQ_TIER_RESTRICTED && req->access != CMQ_ACCESS_WRITE)
			return deny(out, CMQ_REASON_RESTRICTED_NO_SUBSCRIBE);
	}

	if (first_level_is(topic, len, "raw", 3)) {
		if (req->access == CMQ_ACCESS_WRITE) {
			uint32_t idx;

			if (out->who.kind == CMQ_PRINCIPAL_DEVICE)
				return device_raw_write(p, req, ulen, topic, len, out);
			if (role->kind != CMQ_ROLE_BRIDGE)
				return deny(out, CMQ_REASON_RAW_WRITE_FORBIDDEN);
			if (has_empty_level(topic, len))
				return deny(out, CMQ_REASON_BAD_TOPIC);
			if (!cmq_trie_match(p->rule_trie, topic, len, NULL, &idx))
				return deny(out, CMQ_REASON_NO_RULE);
			out->rule = &p->rules[idx];
			if (req->payloadlen > out->rule->max_payload)
				return deny(out, CMQ_REASON_PAYLOAD_TOO_LARGE);
			return allow(out);
		}
		if (role->kind != CMQ_ROLE_GATEWAY)
			return deny(out, CMQ_REASON_RAW_READ_FORBIDDEN);
	} else if (req->access == CMQ_ACCESS_WRITE && role->kind != CMQ_ROLE_GATEWAY &&
	           first_level_is(topic, len, "city", 4)) {
		return deny(out, CMQ_REASON_CITY_WRITE_FORBIDDEN);
	}

	if (req->access == CMQ_ACCESS_WRITE && req->payloadlen > p->max_payload)
		return deny(out, CMQ_REASON_PAYLOAD_TOO_LARGE);

	op = req->access == CMQ_ACCESS_WRITE       ? CMQ_OP_PUBLISH
	     : req->access == CMQ_ACCESS_SUBSCRIBE ? CMQ_OP_SUBSCRIBE
	                                           : CMQ_OP_READ;
	subst.username = req->username;
	subst.username_len = ulen;
	subst.client_id = req->client_id ? req->client_id : "";
	subst.client_id_len = req->client_id ? strlen(req->client_id) : 0;
	subst.vendor = out->who.vendor ? out->who.vendor->id : "";
	subst.vendor_len = out->who.vendor ? strlen(out->who.vendor->id) : 0;
	if (op == CMQ_OP_SUBSCRIBE) {
		if (role->deny[op] && cmq_trie_covers(role->deny[op], topic, len, &subst, NULL))
			return deny(out, CMQ_REASON_EXPLICIT_DENY);
		if (role->allow[op] && cmq_trie_covers(role->allow[op], topic, len, &subst, NULL))
			return allow(out);
		return deny(out, CMQ_REASON_NO_GRANT);
	}
	if (role->deny[op] && cmq_trie_match(role->deny[op], topic, len, &subst, &unused))
		return deny(out, CMQ_REASON_EXPLICIT_DENY);
	if (role->allow[op] && cmq_trie_match(role->allow[op], topic, len, &subst, &unused))
		return allow(out);
	return deny(out, CMQ_REASON_NO_GRANT);
}

bool cmq_provenance_for(const struct cmq_policy *p, const char *username, const char *topic,
                        struct cmq_provenance *out)
{
	return cmq_provenance_of(p, NULL, username, topic, out);
}

bool cmq_provenance_of(const struct cmq_policy *p, const struct cmq_principal *who,
                       const char *username, const char *topic, struct cmq_provenance *out)
{
	struct cmq_principal resolved;

	memset(out, 0, sizeof(*out));
	if (p == NULL || username == NULL || topic == NULL ||
	    !first_level_is(topic, strlen(topic), "raw", 3))
		return false;
	if (who == NULL || who->kind == CMQ_PRINCIPAL_NONE) {
		if (cmq_principal_resolve(p, username, strlen(username), &resolved) !=
		    CMQ_REASON_OK)
			return false;
		who = &resolved;
	}
	if (who->kind != CMQ_PRINCIPAL_DEVICE)
		return false;
	out->vendor = who->vendor->id;
	out->device = username;
	out->tier = cmq_tier_name(who->vendor->tier);
	out->policy = p->stamp;
	return true;
}

int cmq_provenance_format(const struct cmq_provenance *p, char *buf, size_t buflen)
{
	const char *field[4] = {p->vendor, p->device, p->tier, p->policy};
	size_t off = 0;

	/* Per published raw message: plain copies, not snprintf (a third of the stamp's cost). */
	for (int i = 0; i < 4; i++) {
		size_t len;

		if (field[i] == NULL)
			return CMQ_ERR_INVAL;
		len = strlen(field[i]);
		if (off + len + 1 >= buflen)
			return CMQ_ERR_TOO_BIG;
		memcpy(buf + off, field[i], len);
		off += len;
		buf[off++] = i < 3 ? '/' : '\0';
	}
	return CMQ_OK;
}

int cmq_provenance_parse(const char *value, char *buf, size_t buflen, struct cmq_provenance *out)
{
	const char **field[4] = {&out->vendor, &out->device, &out->tier, &out->policy};
	size_t len = strlen(value);
	char *s = buf;

	memset(out, 0, sizeof(*out));
	if (len >= buflen)
		return CMQ_ERR_TOO_BIG;
	memcpy(buf, value, len + 1);
	for (int i = 0; i < 4; i++) {
		char *slash = strchr(s, '/');

		if ((i < 3) != (slash != NULL) || (slash ? slash == s : *s == '\0')) {
			memset(out, 0, sizeof(*out));
			return CMQ_ERR_PARSE;
		}
		*field[i] = s;
		if (slash != NULL) {
			*slash = '\0';
			s = slash + 1;
		}
	}
	for (int t = 0; t < CMQ_TIER__COUNT; t++) {
		if (strcmp(out->tier, cmq_tier_name((enum cmq_tier)t)) == 0)
			return CMQ_OK;
	}
	memset(out, 0, sizeof(*out));
	return CMQ_ERR_PARSE;
}
