/*
 * register.c - builds the transparency register (register.h) from a loaded policy,
 * and prints it as canonical JSON. The Markdown and HTML pages: register_render.c.
 *
 * Everything comes from struct cmq_policy, the structure the plugin and the gateway
 * decide with, in the order of the files, so the same policy always gives the same
 * bytes (given the same now) and the register cannot describe a policy other than the
 * one enforced.
 *
 * Which vendors may feed a flow is asked of cmq_acl_check(), the plugin's publish
 * decision, never recomputed: the probe is a device of the vendor (a username the
 * policy resolves to that vendor, like any device's) publishing a topic made from the
 * rule's pattern. So that the probe answers for exactly this rule and this vendor:
 *  - each '+' level but the last is filled with a run of 'x' one byte longer than the
 *    longest level of any raw pattern, so no more specific pattern (a literal where
 *    this one has '+') can match it instead; the result must name this rule;
 *  - the device id is the vendor's prefix followed by one more 'x' than that, so it is
 *    longer than every other level of the topic and cannot occur in one (which the ACL
 *    refuses as DEVICE_ID_IN_TOPIC); the resolved vendor must be this vendor.
 * Any other outcome than "allowed" or a refusal about tier or category would mean the
 * probe is not what it claims to be, and fails the build with CMQ_ERR_INVAL.
 *
 * Memory: the document is json-c's; the probe topic is one buffer through alloc.h.
 * Cost: O(rules x vendors) ACL checks, each O(topic levels). Thread: any; the policy
 * is only read.
 */
#include "register.h"

#include "acl.h"
#include "alloc.h"
#include "error.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define NOW_MAX INT64_C(253402300799) /* 9999-12-31T23:59:59Z */

/* json-c reports allocation failure by NULL, which is also how it spells JSON null. */
struct builder {
	bool oom;
};

static struct json_object *new_object(struct builder *b)
{
	struct json_object *o = json_object_new_object();

	if (o == NULL)
		b->oom = true;
	return o;
}

static struct json_object *new_array(struct builder *b)
{
	struct json_object *a = json_object_new_array();

	if (a == NULL)
		b->oom = true;
	return a;
}

/* A string, or JSON null for NULL. */
static struct json_object *new_string(struct builder *b, const char *s)
{
	struct json_object *v;

	if (s == NULL)
		return NULL;
	v = json_object_new_string(s);
	if (v == NULL)
		b->oom = true;
	return v;
}

static struct json_object *new_int(struct builder *b, int64_t i)
{
	struct json_object *v = json_object_new_int64(i);

	if (v == NULL)
		b->oom = true;
	return v;
}

/*
 * A number printed with 15 significant digits: 0.01 stays "0.01" rather than json-c's
 * round-trip digits, and the text is the same on every platform.
 */
static struct json_object *new_number(struct builder *b, double d)
{
	char text[32];
	struct json_object *v;

	snprintf(text, sizeof(text), "%.15g", d);
	v = json_object_new_double_s(d, text);
	if (v == NULL)
		b->oom = true;
	return v;
}

static struct json_object *new_bool(struct builder *b, bool x)
{
	struct json_object *v = json_object_new_boolean(x);

	if (v == NULL)
		b->oom = true;
	return v;
}

/* Add v (which may be NULL: JSON null) to o as key; v is freed if that fails. */
static void put(struct builder *b, struct json_object *o, const char *key, struct json_object *v)
{
	if (o == NULL || b->oom || json_object_object_add(o, key, v) != 0) {
		json_object_put(v);
		if (o != NULL)
			b->oom = true;
	}
}

/* Append v to array a; v is freed if that fails. A NULL v here means out of memory. */
static void push(struct builder *b, struct json_object *a, struct json_object *v)
{
	if (a == NULL || v == NULL || b->oom || json_object_array_add(a, v) != 0) {
		json_object_put(v);
		b->oom = true;
	}
}

/* ---- what a profile does ---- */

/* The keys of "scrubbing" that hold one list per kind of op, in the order shown. */
enum list {
	L_KEPT,
	L_PSEUDONYMISED,
	L_GENERALISED,
	L_COARSENED,
	L_ROUNDED,
	L_BUCKETED,
	L_REDACTED,
	L_AGGREGATED,
	L_DROPPED,
	L__COUNT
};

static const char *const list_keys[L__COUNT] = {
    "kept",     "pseudonymised", "generalised", "coarsened", "rounded",
    "bucketed", "redacted",      "aggregated",  "dropped",
};

/* Which list each op kind goes to (cmq_scrub_kind order). */
static const enum list list_of_kind[CMQ_SCRUB__COUNT] = {
    [CMQ_SCRUB_KEEP] = L_KEPT,
    [CMQ_SCRUB_DROP] = L_DROPPED,
    [CMQ_SCRUB_PSEUDONYMISE] = L_PSEUDONYMISED,
    [CMQ_SCRUB_GENERALISE_LOCATION] = L_GENERALISED,
    [CMQ_SCRUB_COARSEN_TIME] = L_COARSENED,
    [CMQ_SCRUB_ROUND] = L_ROUNDED,
    [CMQ_SCRUB_BUCKET] = L_BUCKETED,
    [CMQ_SCRUB_REDACT] = L_REDACTED,
    [CMQ_SCRUB_AGGREGATE] = L_AGGREGATED,
};

/* Redaction pattern names as policy.json spells them, by CMQ_REDACT_* bit. */
static const char *const redact_names[] = {"mac", "plate", "email", "phone"};

/* What pseudonymise does (scrub.h, pseudo.h); the epoch length is the gateway's setting. */
#define PSEUDONYM_METHOD                                                                           \
	"rotating keyed pseudonym: HMAC-SHA256 under a secret key that changes every "             \
	"pseudonym epoch (pseudonym_epoch, default 86400 s: daily), so pseudonyms do not link "    \
	"across epochs or across flows"

#define REMOVED_FIELDS "every field not listed above"
#define REMOVED_AGGREGATE                                                                          \
	"every message: only the count per group and window leaves, and only "                     \
	"when it reaches k"

static struct json_object *op_entry(struct builder *b, const struct cmq_scrub_op *op)
{
	struct json_object *o, *a;

	if (op->kind == CMQ_SCRUB_KEEP || op->kind == CMQ_SCRUB_DROP)
		return new_string(b, op->path);
	o = new_object(b);
	put(b, o, "path", new_string(b, op->path));
	switch (op->kind) {
	case CMQ_SCRUB_PSEUDONYMISE:
		put(b, o, "method", new_string(b, PSEUDONYM_METHOD));
		break;
	case CMQ_SCRUB_GENERALISE_LOCATION:
		if (op->u.loc.geohash_precision > 0)
			put(b, o, "geohash_precision", new_int(b, op->u.loc.geohash_precision));
		else
			put(b, o, "grid_degrees", new_number(b, op->u.loc.grid_degrees));
		break;
	case CMQ_SCRUB_COARSEN_TIME:
		put(b, o, "seconds", new_int(b, op->u.time.seconds));
		break;
	case CMQ_SCRUB_ROUND:
		put(b, o, "step", new_number(b, op->u.round.step));
		break;
	case CMQ_SCRUB_BUCKET:
		a = new_array(b);
		for (size_t i = 0; i < op->u.bucket.n; i++)
			push(b, a, new_number(b, op->u.bucket.bounds[i]));
		put(b, o, "bounds", a);
		break;
	case CMQ_SCRUB_REDACT:
		a = new_array(b);
		for (size_t i = 0; i < sizeof(redact_names) / sizeof(redact_names[0]); i++) {
			if (op->u.redact.patterns & (1u << i))
				push(b, a, new_string(b, redact_names[i]));
		}
		put(b, o, "patterns", a);
		break;
	case CMQ_SCRUB_AGGREGATE:
		put(b, o, "group_by", new_string(b, op->u.agg.group_by_text));
		put(b, o, "window_seconds", new_int(b, op->u.agg.window_seconds));
		put(b, o, "k", new_int(b, op->u.agg.k));
		put(b, o, "noise_epsilon",
		    op->u.agg.epsilon > 0 ? new_number(b, op->u.agg.epsilon) : NULL);
		break;
	default:
		break;
	}
	return o;
}

static struct json_object *scrubbing(struct builder *b, const struct cmq_profile *prof)
{
	struct json_object *s = new_object(b), *lists[L__COUNT];

	put(b, s, "profile", new_string(b, prof->id));
	put(b, s, "description", new_string(b, prof->description));
	for (int i = 0; i < L__COUNT; i++)
		lists[i] = new_array(b);
	for (size_t i = 0; i < prof->n_ops; i++) {
		const struct cmq_scrub_op *op = &prof->ops[i];

		if ((unsigned)op->kind < CMQ_SCRUB__COUNT)
			push(b, lists[list_of_kind[op->kind]], op_entry(b, op));
	}
	for (int i = 0; i < L__COUNT; i++)
		put(b, s, list_keys[i], lists[i]);
	put(b, s, "removed", new_string(b, prof->aggregates ? REMOVED_AGGREGATE : REMOVED_FIELDS));
	return s;
}

/* ---- which vendors may feed a flow: the plugin's own decision ---- */

struct probe {
	char *topic; /* the rule's pattern with '+' filled, then the device id */
	size_t cap;  /* bytes allocated */
	size_t fill; /* length of a filled level: longer than any level of any raw pattern */
	size_t stem; /* bytes of topic before the device id */
};

static size_t longest_level(const struct cmq_policy *p)
{
	size_t longest = 0;

	for (size_t i = 0; i < p->n_rules; i++) {
		struct cmq_level it;

		cmq_level_first(&it, p->rules[i].raw, strlen(p->rules[i].raw));
		do {
			if (it.len > longest)
				longest = it.len;
		} while (cmq_level_next(&it));
	}
	return longest;
}

/* Fill the probe's stem from r's pattern; CMQ_OK or CMQ_ERR_NOMEM / CMQ_ERR_INVAL. */
static int probe_rule(struct probe *pr, const struct cmq_rule *r)
{
	size_t raw_len = strlen(r->raw), need, o = 0;
	struct cmq_level it;

	/* Every level at most fill bytes, plus the device id (prefix + fill + 1). */
	if (raw_len > CMQ_TOPIC_MAX_LEN)
		return CMQ_ERR_INVAL;
	need = (raw_len + 1) * (pr->fill + 1) + CMQ_PREFIX_MAX + pr->fill + 2;
	if (need > pr->cap) {
		char *t = cmq_realloc(pr->topic, need);

		if (t == NULL)
			return CMQ_ERR_NOMEM;
		pr->topic = t;
		pr->cap = need;
	}
	cmq_level_first(&it, r->raw, raw_len);
	while (!it.last) {
		if (it.len == 1 && it.s[0] == '+') {
			memset(pr->topic + o, 'x', pr->fill);
			o += pr->fill;
		} else {
			memcpy(pr->topic + o, it.s, it.len);
			o += it.len;
		}
		pr->topic[o++] = '/';
		(void)cmq_level_next(&it);
	}
	pr->stem = o;
	return CMQ_OK;
}

/*
 * Whether a device of v may publish on the rule the stem was made for: *may is the
 * ACL's answer. CMQ_ERR_INVAL if the probe reached another vendor or rule, or was
 * refused for a reason that is about the probe rather than about v and r.
 */
static int probe_vendor(const struct cmq_policy *p, struct probe *pr, const struct cmq_rule *r,
                        const struct cmq_vendor *v, bool *may)
{
	struct cmq_acl_request req;
	struct cmq_acl_result res;
	char *dev = pr->topic + pr->stem;
	enum cmq_decision d;

	*may = false;
	memcpy(dev, v->prefix, v->prefix_len);
	memset(dev + v->prefix_len, 'x', pr->fill + 1);
	dev[v->prefix_len + pr->fill + 1] = '\0';
	memset(&req, 0, sizeof(req));
	req.username = dev;
	req.client_id = dev;
	req.access = CMQ_ACCESS_WRITE;
	req.topic = pr->topic;
	req.payloadlen = 0;
	req.retain = false;
	req.who = NULL; /* resolved from the username, as for any device */
	d = cmq_acl_check(p, &req, &res);
	if (res.who.kind != CMQ_PRINCIPAL_DEVICE || res.who.vendor != v)
		return CMQ_ERR_INVAL;
	switch (res.reason) {
	case CMQ_REASON_OK:
		if (d != CMQ_ALLOW || res.rule != r)
			return CMQ_ERR_INVAL;
		*may = true;
		return CMQ_OK;
	case CMQ_REASON_VENDOR_BLOCKED: /* decided before any rule is looked at */
		return CMQ_OK;
	case CMQ_REASON_TIER_RESTRICTED:
	case CMQ_REASON_CATEGORY_NOT_PERMITTED:
		return res.rule == r ? CMQ_OK : CMQ_ERR_INVAL;
	default:
		return CMQ_ERR_INVAL;
	}
}

static int flow_vendors(struct builder *b, const struct cmq_policy *p, struct probe *pr,
                        const struct cmq_rule *r, struct json_object *list)
{
	int rc = probe_rule(pr, r);

	for (size_t i = 0; rc == CMQ_OK && i < p->n_vendors; i++) {
		const struct cmq_vendor *v = &p->vendors[i];
		struct json_object *o;
		bool may;

		rc = probe_vendor(p, pr, r, v, &may);
		if (rc != CMQ_OK || !may)
			continue;
		o = new_object(b);
		put(b, o, "id", new_string(b, v->id));
		put(b, o, "name", new_string(b, v->name));
		put(b, o, "tier", new_string(b, cmq_tier_name(v->tier)));
		push(b, list, o);
	}
	return rc;
}

/* ---- the document ---- */

static int flow(struct builder *b, const struct cmq_policy *p, struct probe *pr,
                const struct cmq_rule *r, struct json_object *flows)
{
	const struct cmq_category *cat = &p->categories[r->category];
	struct json_object *f = new_object(b), *vendors = new_array(b);
	int rc;

	put(b, f, "id", new_string(b, r->id));
	put(b, f, "raw", new_string(b, r->raw));
	put(b, f, "published_as", new_string(b, r->scrubbed));
	put(b, f, "category", new_string(b, cat->id));
	put(b, f, "category_description", new_string(b, cat->description));
	put(b, f, "class", new_string(b, cmq_class_name(r->cls)));
	put(b, f, "purpose", new_string(b, r->purpose));
	put(b, f, "retention", new_string(b, r->retention));
	/* The gateway gates exactly the resident-linked categories on consent (pipeline.c). */
	put(b, f, "consent_required", new_bool(b, cat->resident_linked));
	put(b, f, "consent_subject", cat->resident_linked ? new_string(b, r->subject) : NULL);
	put(b, f, "scrubbing", scrubbing(b, &p->profiles[r->profile]));
	rc = flow_vendors(b, p, pr, r, vendors);
	put(b, f, "vendors", vendors);
	push(b, flows, f);
	return rc;
}

static struct json_object *vendor(struct builder *b, const struct cmq_policy *p,
                                  const struct cmq_vendor *v)
{
	struct json_object *o = new_object(b), *cats = new_array(b), *cas = new_array(b);
	char fp[96];

	put(b, o, "id", new_string(b, v->id));
	put(b, o, "name", new_string(b, v->name));
	put(b, o, "tier", new_string(b, cmq_tier_name(v->tier)));
	for (size_t i = 0; i < p->n_categories && i < CMQ_MAX_CATEGORIES; i++) {
		if (v->categories & (UINT64_C(1) << i))
			push(b, cats, new_string(b, p->categories[i].id));
	}
	put(b, o, "categories", cats);
	put(b, o, "device_id_prefix", new_string(b, v->prefix));
	for (size_t i = 0; i < v->n_ca; i++) {
		cmq_fingerprint_format(v->ca_sha256[i], fp, sizeof(fp));
		push(b, cas, new_string(b, fp));
	}
	put(b, o, "ca_sha256", cas);
	return o;
}

static bool format_time(int64_t now, char *buf, size_t buflen)
{
	time_t t = (time_t)now;
	struct tm tm;

	if (now < 0 || now > NOW_MAX || (int64_t)t != now || gmtime_r(&t, &tm) == NULL)
		return false;
	return strftime(buf, buflen, "%Y-%m-%dT%H:%M:%SZ", &tm) > 0;
}

int cmq_register_build(const struct cmq_policy *p, int64_t now, struct json_object **out)
{
	struct builder b = {false};
	struct probe pr = {NULL, 0, 0, 0};
	struct json_object *reg = NULL, *flows, *vendors;
	char when[32];
	int rc = CMQ_OK;

	*out = NULL;
	if (p == NULL || !format_time(now, when, sizeof(when)))
		return CMQ_ERR_INVAL;
	pr.fill = longest_level(p) + 1;
	reg = new_object(&b);
	put(&b, reg, "register_version", new_int(&b, CMQ_REGISTER_VERSION));
	put(&b, reg, "city", new_string(&b, p->city));
	put(&b, reg, "policy", new_string(&b, p->stamp));
	put(&b, reg, "generated", new_string(&b, when));
	flows = new_array(&b);
	for (size_t i = 0; rc == CMQ_OK && !b.oom && i < p->n_rules; i++)
		rc = flow(&b, p, &pr, &p->rules[i], flows);
	put(&b, reg, "flows", flows);
	vendors = new_array(&b);
	for (size_t i = 0; rc == CMQ_OK && !b.oom && i < p->n_vendors; i++)
		push(&b, vendors, vendor(&b, p, &p->vendors[i]));
	put(&b, reg, "vendors", vendors);
	cmq_free(pr.topic);
	if (rc == CMQ_OK && b.oom)
		rc = CMQ_ERR_NOMEM;
	if (rc != CMQ_OK) {
		json_object_put(reg);
		return rc;
	}
	*out = reg;
	return CMQ_OK;
}

int cmq_register_json(const struct json_object *reg, char **out)
{
	struct json_object *version;
	const char *text;
	size_t len;
	char *s;

	*out = NULL;
	if (!json_object_object_get_ex(reg, "register_version", &version) ||
	    !json_object_is_type(version, json_type_int) ||
	    json_object_get_int64(version) != CMQ_REGISTER_VERSION)
		return CMQ_ERR_PARSE;
	/* json-c caches the text inside the object: the only reason for the cast. */
	text = json_object_to_json_string_ext((struct json_object *)reg,
	                                      JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
	                                          JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text == NULL)
		return CMQ_ERR_NOMEM;
	len = strlen(text);
	if (len + 2 > CMQ_REGISTER_TEXT_MAX)
		return CMQ_ERR_TOO_BIG;
	s = cmq_malloc(len + 2);
	if (s == NULL)
		return CMQ_ERR_NOMEM;
	memcpy(s, text, len);
	s[len] = '\n';
	s[len + 1] = '\0';
	*out = s;
	return CMQ_OK;
}
