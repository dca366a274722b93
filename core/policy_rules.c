/*
 * policy_rules.c - loads policy.json: version, data categories, scrub
 * profiles, topic rules (compiled into the rule trie), roles (built-in ones
 * extended, custom ones defined) and limits.
 *
 * Invariants enforced here, so that no file can configure them away:
 *  - raw patterns are "raw/<levels>/+" (the last level is the device id), with
 *    no '#' and no substitutions; the scrubbed template may refer only to
 *    wildcard levels other than the device level, so the device id can never
 *    reach a city/ topic through the template;
 *  - sensitive rules must use a profile that aggregates, and a profile that
 *    aggregates has that one operation only;
 *  - every scrub operation's path and parameters are valid (scrub_load.c), so the
 *    gateway never meets a profile it cannot apply;
 *  - a rule of a resident-linked category names the payload field of the resident
 *    ("subject"), whose consent the gateway checks; other rules name none;
 *  - grants never let a role other than the gateway read raw/ topics, never
 *    let anyone but devices publish raw/ topics, never let anyone but the
 *    gateway publish city/ topics, and never touch '$' topics.
 * Cost: linear in the file; each rule is one trie insert.
 */
#include "policy_internal.h"

#include "alloc.h"
#include "error.h"
#include "topic.h"

#include <string.h>

static const char *const class_names[] = {"public", "personal", "sensitive", NULL};
static const char *const op_names[] = {"publish", "subscribe", "read", NULL};

/* Name and parameter keys of each scrub operation, in enum cmq_scrub_kind order. */
static const struct {
	const char *name;
	const char *const keys[8];
} scrub_kinds[CMQ_SCRUB__COUNT] = {
    {"keep", {"op", "path", NULL}},
    {"drop", {"op", "path", NULL}},
    {"pseudonymise", {"op", "path", NULL}},
    {"generalise_location", {"op", "path", "geohash_precision", "grid_degrees", NULL}},
    {"coarsen_time", {"op", "path", "seconds", NULL}},
    {"round", {"op", "path", "step", NULL}},
    {"bucket", {"op", "path", "bounds", NULL}},
    {"redact", {"op", "path", "patterns", NULL}},
    {"aggregate", {"op", "path", "group_by", "window_seconds", "k", "noise_epsilon", NULL}},
};

/* The built-in roles and the grants they always have (see DESIGN.md "Roles"). */
static const struct {
	const char *id;
	const char *description;
	const char *allow[CMQ_OP__COUNT];
	const char *deny[CMQ_OP__COUNT];
} builtin_roles[CMQ_BUILTIN_ROLES] = {
    [CMQ_ROLE_SENSOR] = {"sensor",
                         "devices with a certificate from a pinned vendor CA; publish raw "
                         "topics as the topic rules allow, receive their own commands",
                         {NULL, "cmd/+/+/%c", "cmd/+/+/%c"},
                         {NULL, NULL, NULL}},
    [CMQ_ROLE_GATEWAY] = {"gateway",
                          "the scrubbing gateway: the only reader of raw/ topics and the only "
                          "publisher of city/ topics",
                          {"city/#", "raw/#", "raw/#"},
                          {"city/transparency/#", NULL, NULL}},
    [CMQ_ROLE_DASHBOARD] = {"dashboard",
                            "dashboards: read scrubbed city/ topics only",
                            {NULL, "city/#", "city/#"},
                            {NULL, NULL, NULL}},
    [CMQ_ROLE_ADMIN] = {"admin",
                        "administrators of vendors, devices and consent; read city/ topics",
                        {NULL, "city/#", "city/#"},
                        {NULL, NULL, NULL}},
    [CMQ_ROLE_BRIDGE] = {"bridge",
                         "a district broker's bridge: forwards raw topics with their provenance",
                         {NULL, NULL, NULL},
                         {NULL, NULL, NULL}},
};

const char *cmq_class_name(enum cmq_class c)
{
	return (unsigned)c < CMQ_CLASS__COUNT ? class_names[c] : "?";
}

const char *cmq_op_name(enum cmq_op op)
{
	return (unsigned)op < CMQ_OP__COUNT ? op_names[op] : "?";
}

const char *cmq_scrub_kind_name(enum cmq_scrub_kind k)
{
	return (unsigned)k < CMQ_SCRUB__COUNT ? scrub_kinds[k].name : "?";
}

static int find_category(const struct cmq_policy *p, const char *id)
{
	for (size_t i = 0; i < p->n_categories; i++) {
		if (strcmp(p->categories[i].id, id) == 0)
			return (int)i;
	}
	return -1;
}

static int find_profile(const struct cmq_policy *p, const char *id)
{
	for (size_t i = 0; i < p->n_profiles; i++) {
		if (strcmp(p->profiles[i].id, id) == 0)
			return (int)i;
	}
	return -1;
}

/* "valid: a, b, c" lists built from loaded items, for unknown-reference errors. */
static void list_ids(char *buf, size_t buflen, size_t n, const char *(*get)(const void *, size_t),
                     const void *arr)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && off + 8 < buflen; i++) {
		int w = snprintf(buf + off, buflen - off, "%s%s", i ? ", " : "", get(arr, i));

		if (w < 0 || (size_t)w >= buflen - off) {
			memcpy(buf + buflen - 4, "...", 4);
			return;
		}
		off += (size_t)w;
	}
}

static const char *category_id_at(const void *arr, size_t i)
{
	return ((const struct cmq_category *)arr)[i].id;
}

static const char *profile_id_at(const void *arr, size_t i)
{
	return ((const struct cmq_profile *)arr)[i].id;
}

/* Reference to a category by id; returns its index or -1 after an error. */
static int ref_category(struct cmq_jctx *c, const struct cmq_policy *p, const char *id)
{
	char q[128], list[512];
	int i = find_category(p, id);

	if (i >= 0)
		return i;
	list_ids(list, sizeof(list), p->n_categories, category_id_at, p->categories);
	cmq_jerr(c, "unknown data category %s; defined categories: %s",
	         cmq_diag_quote(id, strlen(id), q, sizeof(q)), list);
	return -1;
}

static bool load_version(struct cmq_load *l, struct cmq_jctx *c, struct json_object *root)
{
	const char *v = NULL, *city = NULL;
	char q[128];

	if (!cmq_jstring(c, root, "version", true, 64, &v) ||
	    !cmq_jstring(c, root, "city", false, 200, &city))
		return false;
	if (v == NULL)
		return false;
	for (const char *s = v; *s || v[0] == '\0'; s++) {
		if (v[0] == '\0' ||
		    !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '-' || *s == '_')) {
			size_t old = cmq_jpath_push_key(c, "version");

			cmq_jerr(c,
			         "%s is not a valid version; use letters, digits, '.', '-', '_' "
			         "(e.g. \"2026-11-28.1\")",
			         cmq_diag_quote(v, strlen(v), q, sizeof(q)));
			cmq_jpath_pop(c, old);
			return false;
		}
	}
	l->p->version = cmq_load_strdup(l, v);
	l->p->city = cmq_load_strdup(l, city ? city : "");
	return true;
}

static void load_limits(struct cmq_load *l, struct cmq_jctx *c, struct json_object *root)
{
	static const char *const keys[] = {"max_payload_bytes", NULL};
	struct json_object *lim = cmq_jobject(c, root, "limits", false);
	uint64_t v = CMQ_DEFAULT_MAX_PAYLOAD;
	size_t old;

	l->p->max_payload = CMQ_DEFAULT_MAX_PAYLOAD;
	if (lim == NULL)
		return;
	old = cmq_jpath_push_key(c, "limits");
	cmq_jcheck_keys(c, lim, keys);
	/* 268435455 is the largest MQTT packet. */
	if (cmq_juint(c, lim, "max_payload_bytes", false, 1, 268435455u, &v))
		l->p->max_payload = (uint32_t)v;
	cmq_jpath_pop(c, old);
}

static void load_categories(struct cmq_load *l, struct cmq_jctx *c, struct json_object *root)
{
	static const char *const keys[] = {"id", "description", "resident_linked", NULL};
	struct json_object *arr = cmq_jarray(c, root, "categories", true);
	struct cmq_policy *p = l->p;
	size_t n, base;

	if (arr == NULL)
		return;
	base = cmq_jpath_push_key(c, "categories");
	n = json_object_array_length(arr);
	if (n == 0 || n > CMQ_MAX_CATEGORIES) {
		cmq_jerr(c, "has %zu entries; define between 1 and %d data categories", n,
		         CMQ_MAX_CATEGORIES);
		cmq_jpath_pop(c, base);
		return;
	}
	p->categories = cmq_calloc(n, sizeof(*p->categories));
	if (p->categories == NULL) {
		l->nomem = true;
		cmq_jpath_pop(c, base);
		return;
	}
	for (size_t i = 0; i < n && !l->nomem; i++) {
		struct json_object *o = json_object_array_get_idx(arr, i);
		const char *id = NULL, *desc = NULL;
		bool linked = false;
		size_t old = cmq_jpath_push_index(c, i);

		if (!cmq_jis_object(c, o)) {
			cmq_jpath_pop(c, old);
			continue;
		}
		cmq_jcheck_keys(c, o, keys);
		id = cmq_load_unique_id(c, o, "category",
		                        find_category(p, cmq_load_json_id(o)) >= 0);
		if (cmq_jstring(c, o, "description", true, 500, &desc) &&
		    cmq_jbool(c, o, "resident_linked", false, &linked) && id != NULL &&
		    desc != NULL) {
			struct cmq_category *cat = &p->categories[p->n_categories];

			cat->id = cmq_load_strdup(l, id);
			cat->description = cmq_load_strdup(l, desc);
			cat->resident_linked = linked;
			if (cat->id != NULL) {
				p->n_categories++;
			} else {
				/* Out of memory: the entry is not counted, so free it here. */
				cmq_free(cat->description);
				cat->description = NULL;
			}
		}
		cmq_jpath_pop(c, old);
	}
	cmq_jpath_pop(c, base);
}

/* One op whose name and path were read: its parameters, then into prof if all valid. */
static void load_op(struct cmq_load *l, struct cmq_jctx *c, struct json_object *o,
                    struct cmq_profile *prof, enum cmq_scrub_kind kind, const char *path)
{
	struct cmq_scrub_op op = {.kind = kind};
	size_t errors = c->diag->errors;

	if (kind == CMQ_SCRUB_AGGREGATE)
		prof->aggregates = true; /* even if invalid: the one-op check still applies */
	op.path = cmq_load_strdup(l, path);
	if (op.path == NULL)
		return;
	if (cmq_scrub_op_load(c, o, &op)) {
		prof->ops[prof->n_ops++] = op;
		return;
	}
	if (c->diag->errors == errors)
		l->nomem = true; /* cmq_scrub_op_load fails silently only for lack of memory */
	cmq_scrub_op_cleanup(&op);
}

static void load_profile_ops(struct cmq_load *l, struct cmq_jctx *c, struct json_object *arr,
                             struct cmq_profile *prof)
{
	static const char *kind_names[CMQ_SCRUB__COUNT + 1];
	size_t n = json_object_array_length(arr);

	for (int k = 0; k < CMQ_SCRUB__COUNT; k++)
		kind_names[k] = scrub_kinds[k].name;
	kind_names[CMQ_SCRUB__COUNT] = NULL;
	if (n == 0) {
		cmq_jerr(c, "is empty; a profile needs at least one operation (fields nobody "
		            "keeps are dropped)");
		return;
	}
	prof->ops = cmq_calloc(n, sizeof(*prof->ops));
	if (prof->ops == NULL) {
		l->nomem = true;
		return;
	}
	for (size_t i = 0; i < n && !l->nomem; i++) {
		struct json_object *o = json_object_array_get_idx(arr, i);
		const char *opname = NULL, *path = NULL;
		size_t old = cmq_jpath_push_index(c, i);
		int kind = -1;

		if (!cmq_jis_object(c, o)) {
			cmq_jpath_pop(c, old);
			continue;
		}
		if (cmq_jstring(c, o, "op", true, 64, &opname) && opname != NULL) {
			size_t o2 = cmq_jpath_push_key(c, "op");

			kind = cmq_jenum(c, opname, "scrub operation", kind_names);
			cmq_jpath_pop(c, o2);
		}
		if (kind >= 0)
			cmq_jcheck_keys(c, o, scrub_kinds[kind].keys);
		if (cmq_jstring(c, o, "path", true, 256, &path) && path != NULL && kind >= 0) {
			if (path[0] == '\0') {
				size_t o2 = cmq_jpath_push_key(c, "path");

				cmq_jerr(c, "is empty; name a field, e.g. \"location\" or "
				            "\"observedVehicle.licensePlate\"");
				cmq_jpath_pop(c, o2);
			} else {
				load_op(l, c, o, prof, (enum cmq_scrub_kind)kind, path);
			}
		}
		cmq_jpath_pop(c, old);
	}
	if (prof->aggregates && n != 1)
		cmq_jerr(c,
		         "has %zu operations; a profile with an aggregate operation has only "
		         "that one (its output is the count, not the message)",
		         n);
}

static void load_profiles(struct cmq_load *l, struct cmq_jctx *c, struct json_object *root)
{
	static const char *const keys[] = {"id", "description", "ops", NULL};
	struct json_object *arr = cmq_jarray(c, root, "scrub_profiles", true);
	struct cmq_policy *p = l->p;
	size_t n, base;

	if (arr == NULL)
		return;
	base = cmq_jpath_push_key(c, "scrub_profiles");
	n = json_object_array_length(arr);
	p->profiles = cmq_calloc(n ? n : 1, sizeof(*p->profiles));
	if (p->profiles == NULL) {
		l->nomem = true;
		cmq_jpath_pop(c, base);
		return;
	}
	for (size_t i = 0; i < n && !l->nomem; i++) {
		struct json_object *o = json_object_array_get_idx(arr, i), *ops;
		const char *id = NULL, *desc = NULL;
		size_t old = cmq_jpath_push_index(c, i);
		struct cmq_profile *prof = &p->profiles[p->n_profiles];

		if (!cmq_jis_object(c, o)) {
			cmq_jpath_pop(c, old);
			continue;
		}
		cmq_jcheck_keys(c, o, keys);
		id = cmq_load_unique_id(c, o, "scrub profile",
		                        find_profile(p, cmq_load_json_id(o)) >= 0);
		(void)cmq_jstring(c, o, "description", false, 500, &desc);
		ops = cmq_jarray(c, o, "ops", true);
		if (ops != NULL) {
			size_t o2 = cmq_jpath_push_key(c, "ops");

			load_profile_ops(l, c, ops, prof);
			cmq_jpath_pop(c, o2);
		}
		if (id != NULL && prof->n_ops > 0) {
			prof->id = cmq_load_strdup(l, id);
			prof->description = cmq_load_strdup(l, desc ? desc : "");
		}
		if (prof->id != NULL) {
			p->n_profiles++;
		} else {
			/* Rejected, or its id could not be copied: free what the slot holds. */
			for (size_t k = 0; k < prof->n_ops; k++)
				cmq_scrub_op_cleanup(&prof->ops[k]);
			cmq_free(prof->ops);
			cmq_free(prof->description);
			memset(prof, 0, sizeof(*prof));
		}
		cmq_jpath_pop(c, old);
	}
	cmq_jpath_pop(c, base);
}

/* Raw pattern: "raw/.../+" with >= 3 levels, no '#', no substitutions. */
static bool check_raw_pattern(struct cmq_jctx *c, const char *raw, size_t *levels)
{
	const char *why = NULL;
	char q[160];
	struct cmq_level it;
	size_t n = 0;
	bool last_plus = false;

	if (cmq_pattern_check(raw, strlen(raw), 0, &why) != 0) {
		cmq_jerr(c, "%s is not a valid topic pattern: %s",
		         cmq_diag_quote(raw, strlen(raw), q, sizeof(q)), why);
		return false;
	}
	cmq_level_first(&it, raw, strlen(raw));
	do {
		if (n == 0 && (it.len != 3 || memcmp(it.s, "raw", 3) != 0)) {
			cmq_jerr(c, "%s must start with \"raw/\"",
			         cmq_diag_quote(raw, strlen(raw), q, sizeof(q)));
			return false;
		}
		if (it.len == 1 && it.s[0] == '#') {
			cmq_jerr(c, "%s may not use '#': the last level must be '+', the device id",
			         cmq_diag_quote(raw, strlen(raw), q, sizeof(q)));
			return false;
		}
		last_plus = it.len == 1 && it.s[0] == '+';
		n++;
	} while (cmq_level_next(&it));
	if (n < 3 || !last_plus) {
		cmq_jerr(c,
		         "%s must have at least 3 levels and end in '+' (the device id), e.g. "
		         "\"raw/+/air/+\"",
		         cmq_diag_quote(raw, strlen(raw), q, sizeof(q)));
		return false;
	}
	*levels = n;
	return true;
}

/* Level i of a pattern (no allocation). */
static bool pattern_level(const char *pat, size_t idx, const char **s, size_t *len)
{
	struct cmq_level it;
	size_t i = 0;

	cmq_level_first(&it, pat, strlen(pat));
	do {
		if (i == idx) {
			*s = it.s;
			*len = it.len;
			return true;
		}
		i++;
	} while (cmq_level_next(&it));
	return false;
}

/*
 * Scrubbed template: "city/<levels>", each level a literal (no + # % { }) or
 * "{N}" naming a '+' level of the raw pattern other than the last (device).
 */
static bool check_template(struct cmq_jctx *c, const char *tmpl, const char *raw, size_t raw_levels)
{
	struct cmq_level it;
	size_t n = 0;
	char q[160];

	if (strncmp(tmpl, "city/", 5) != 0 || strncmp(tmpl, "city/transparency", 17) == 0) {
		cmq_jerr(c,
		         "%s must start with \"city/\" (city/transparency/ is reserved for the "
		         "register)",
		         cmq_diag_quote(tmpl, strlen(tmpl), q, sizeof(q)));
		return false;
	}
	if (!cmq_utf8_valid(tmpl, strlen(tmpl))) {
		cmq_jerr(c, "is not valid UTF-8");
		return false;
	}
	cmq_level_first(&it, tmpl, strlen(tmpl));
	do {
		n++;
		if (it.len >= 3 && it.s[0] == '{' && it.s[it.len - 1] == '}') {
			size_t idx = 0, k;
			const char *ls;
			size_t llen;

			for (k = 1; k < it.len - 1; k++) {
				if (it.s[k] < '0' || it.s[k] > '9' || k > 3)
					break;
				idx = idx * 10 + (size_t)(it.s[k] - '0');
			}
			if (k != it.len - 1) {
				cmq_jerr(c,
				         "%s: placeholder must be {N} with N a level number of "
				         "the raw pattern",
				         cmq_diag_quote(tmpl, strlen(tmpl), q, sizeof(q)));
				return false;
			}
			if (idx + 1 >= raw_levels) {
				cmq_jerr(
				    c,
				    "%s: {%zu} %s; placeholders may name only wildcard levels "
				    "of %s other than the last (the device id never appears in "
				    "scrubbed topics)",
				    cmq_diag_quote(tmpl, strlen(tmpl), q, sizeof(q)), idx,
				    idx + 1 == raw_levels ? "is the device id level"
				                          : "is beyond the raw pattern",
				    raw);
				return false;
			}
			if (!pattern_level(raw, idx, &ls, &llen) || llen != 1 || ls[0] != '+') {
				cmq_jerr(c,
				         "%s: {%zu} names a fixed level of %s; use the literal "
				         "text instead",
				         cmq_diag_quote(tmpl, strlen(tmpl), q, sizeof(q)), idx,
				         raw);
				return false;
			}
			continue;
		}
		for (size_t k = 0; k < it.len; k++) {
			char ch = it.s[k];

			if (ch == '+' || ch == '#' || ch == '%' || ch == '{' || ch == '}' ||
			    (unsigned char)ch < 0x20) {
				cmq_jerr(c,
				         "%s: level %zu contains '%c'; levels are literal text or "
				         "{N}",
				         cmq_diag_quote(tmpl, strlen(tmpl), q, sizeof(q)), n - 1,
				         (unsigned char)ch < 0x20 ? '?' : ch);
				return false;
			}
		}
		if (it.len == 0) {
			cmq_jerr(c, "%s has an empty level",
			         cmq_diag_quote(tmpl, strlen(tmpl), q, sizeof(q)));
			return false;
		}
	} while (cmq_level_next(&it));
	if (n < 2) {
		cmq_jerr(c, "%s needs at least two levels",
		         cmq_diag_quote(tmpl, strlen(tmpl), q, sizeof(q)));
		return false;
	}
	return true;
}

/* ISO 8601 duration: P[nY][nM][nW][nD][T[nH][nM][nS]] with at least one part. */
static bool retention_valid(const char *s)
{
	const char *units = "YMWD";
	bool any = false, in_time = false;

	if (*s++ != 'P')
		return false;
	while (*s) {
		const char *u;
		bool digits = false;

		if (*s == 'T' && !in_time) {
			in_time = true;
			units = "HMS";
			s++;
			if (*s == '\0')
				return false;
			continue;
		}
		while (*s >= '0' && *s <= '9') {
			digits = true;
			s++;
		}
		if (!digits || *s == '\0')
			return false;
		u = strchr(units, *s);
		if (u == NULL)
			return false;
		units = u + 1; /* units must come in order, each at most once */
		any = true;
		s++;
	}
	return any;
}

/*
 * The rule's "subject": required for a resident-linked category (consent is per
 * resident), refused otherwise; a path naming one value. Compiled into *out.
 */
static bool check_subject(struct cmq_load *l, struct cmq_jctx *c, const char *subject,
                          const struct cmq_category *cat, struct cmq_scrub_path *out)
{
	const char *why = NULL;
	char q[300];
	size_t old;
	int rc;
	bool ok = true;

	if (subject == NULL) {
		if (!cat->resident_linked)
			return true;
		old = cmq_jpath_push_key(c, "subject");
		cmq_jerr(c,
		         "missing required field: category %s is resident-linked, so the rule must "
		         "name the payload field holding the resident id (e.g. \"residentId\")",
		         cmq_diag_quote(cat->id, strlen(cat->id), q, sizeof(q)));
		cmq_jpath_pop(c, old);
		return false;
	}
	old = cmq_jpath_push_key(c, "subject");
	if (!cat->resident_linked) {
		cmq_jerr(c,
		         "category %s is not resident-linked; a subject (the resident id consent "
		         "is checked for) is only for resident-linked categories",
		         cmq_diag_quote(cat->id, strlen(cat->id), q, sizeof(q)));
		cmq_jpath_pop(c, old);
		return false;
	}
	rc = cmq_scrub_path_compile(subject, out, &why);
	if (rc == CMQ_ERR_NOMEM) {
		l->nomem = true;
		ok = false;
	} else if (rc != CMQ_OK) {
		cmq_jerr(c,
		         "%s is not a valid path: it %s; write keys separated by '.', each "
		         "optionally followed by [N], e.g. \"resident.id\"",
		         cmq_diag_quote(subject, strlen(subject), q, sizeof(q)), why);
		ok = false;
	} else {
		for (size_t i = 0; i < out->n; i++) {
			if (out->seg[i].index == CMQ_SEG_EACH) {
				cmq_jerr(c,
				         "%s names every element of an array; the subject is one "
				         "value (use [N])",
				         cmq_diag_quote(subject, strlen(subject), q, sizeof(q)));
				ok = false;
				break;
			}
		}
	}
	cmq_jpath_pop(c, old);
	return ok;
}

static void load_rule(struct cmq_load *l, struct cmq_jctx *c, struct json_object *o)
{
	static const char *const keys[] = {"id",       "raw",      "class",
	                                   "category", "purpose",  "retention",
	                                   "profile",  "scrubbed", "max_payload_bytes",
	                                   "subject",  NULL};
	struct cmq_policy *p = l->p;
	const char *id = NULL, *raw = NULL, *cls = NULL, *cat = NULL, *purpose = NULL, *ret = NULL,
	           *prof = NULL, *scrubbed = NULL, *subject = NULL;
	struct cmq_scrub_path subject_path = {NULL, 0};
	uint64_t maxp = p->max_payload;
	int cls_i = -1, cat_i = -1, prof_i = -1;
	size_t raw_levels = 0, old;
	bool ok = true;
	char q[160], list[512];

	cmq_jcheck_keys(c, o, keys);
	ok &= cmq_jstring(c, o, "id", true, CMQ_ID_FIELD_MAX, &id);
	ok &= cmq_jstring(c, o, "raw", true, 1024, &raw);
	ok &= cmq_jstring(c, o, "class", true, 32, &cls);
	ok &= cmq_jstring(c, o, "category", true, CMQ_ID_FIELD_MAX, &cat);
	ok &= cmq_jstring(c, o, "purpose", true, 1000, &purpose);
	ok &= cmq_jstring(c, o, "retention", true, 32, &ret);
	ok &= cmq_jstring(c, o, "profile", true, CMQ_ID_FIELD_MAX, &prof);
	ok &= cmq_jstring(c, o, "scrubbed", true, 1024, &scrubbed);
	ok &= cmq_juint(c, o, "max_payload_bytes", false, 1, 268435455u, &maxp);
	ok &= cmq_jstring(c, o, "subject", false, 256, &subject);
	if (id != NULL) {
		old = cmq_jpath_push_key(c, "id");
		ok &= cmq_load_check_id(c, id, "rule id");
		cmq_jpath_pop(c, old);
	}
	if (raw != NULL) {
		old = cmq_jpath_push_key(c, "raw");
		if (!check_raw_pattern(c, raw, &raw_levels)) {
			ok = false;
			raw = NULL;
		}
		cmq_jpath_pop(c, old);
	}
	if (cls != NULL) {
		old = cmq_jpath_push_key(c, "class");
		cls_i = cmq_jenum(c, cls, "privacy class", class_names);
		ok &= cls_i >= 0;
		cmq_jpath_pop(c, old);
	}
	if (cat != NULL) {
		old = cmq_jpath_push_key(c, "category");
		cat_i = ref_category(c, p, cat);
		ok &= cat_i >= 0;
		cmq_jpath_pop(c, old);
	}
	if (purpose != NULL && purpose[0] == '\0') {
		old = cmq_jpath_push_key(c, "purpose");
		cmq_jerr(c, "is empty; say why this data is collected (it is published in the "
		            "transparency register)");
		cmq_jpath_pop(c, old);
		ok = false;
	}
	if (ret != NULL && !retention_valid(ret)) {
		old = cmq_jpath_push_key(c, "retention");
		cmq_jerr(c, "%s is not an ISO 8601 duration; e.g. \"P30D\", \"P1Y\", \"PT24H\"",
		         cmq_diag_quote(ret, strlen(ret), q, sizeof(q)));
		cmq_jpath_pop(c, old);
		ok = false;
	}
	if (prof != NULL) {
		old = cmq_jpath_push_key(c, "profile");
		prof_i = find_profile(p, prof);
		if (prof_i < 0) {
			list_ids(list, sizeof(list), p->n_profiles, profile_id_at, p->profiles);
			cmq_jerr(c, "unknown scrub profile %s; defined profiles: %s",
			         cmq_diag_quote(prof, strlen(prof), q, sizeof(q)), list);
			ok = false;
		} else if (cls_i == CMQ_CLASS_SENSITIVE && !p->profiles[prof_i].aggregates) {
			cmq_jerr(c,
			         "profile %s has no aggregate operation; sensitive data may leave "
			         "only as aggregates",
			         cmq_diag_quote(prof, strlen(prof), q, sizeof(q)));
			ok = false;
		}
		cmq_jpath_pop(c, old);
	}
	if (scrubbed != NULL && raw != NULL) {
		old = cmq_jpath_push_key(c, "scrubbed");
		ok &= check_template(c, scrubbed, raw, raw_levels);
		cmq_jpath_pop(c, old);
	}
	if (cat_i >= 0)
		ok &= check_subject(l, c, subject, &p->categories[cat_i], &subject_path);
	if (!ok || id == NULL || raw == NULL)
		goto out;

	{
		struct cmq_rule *r = &p->rules[p->n_rules];
		uint32_t existing = 0;
		const char *why = NULL;
		int rc = cmq_trie_insert(p->rule_trie, raw, strlen(raw), 0, (uint32_t)p->n_rules,
		                         &why, &existing);

		if (rc == CMQ_ERR_EXISTS) {
			old = cmq_jpath_push_key(c, "raw");
			cmq_jerr(c,
			         "%s is already the pattern of rule %s; each raw pattern belongs "
			         "to one rule",
			         cmq_diag_quote(raw, strlen(raw), q, sizeof(q)),
			         p->rules[existing].id);
			cmq_jpath_pop(c, old);
			goto out;
		}
		if (rc == CMQ_ERR_NOMEM) {
			l->nomem = true;
			goto out;
		}
		if (rc != CMQ_OK) {
			old = cmq_jpath_push_key(c, "raw");
			cmq_jerr(c, "%s: %s", cmq_diag_quote(raw, strlen(raw), q, sizeof(q)),
			         why ? why : "invalid pattern");
			cmq_jpath_pop(c, old);
			goto out;
		}
		r->id = cmq_load_strdup(l, id);
		r->raw = cmq_load_strdup(l, raw);
		r->cls = (enum cmq_class)cls_i;
		r->category = (uint32_t)cat_i;
		r->purpose = cmq_load_strdup(l, purpose);
		r->retention = cmq_load_strdup(l, ret);
		r->profile = (uint32_t)prof_i;
		r->scrubbed = cmq_load_strdup(l, scrubbed);
		r->max_payload = (uint32_t)maxp;
		if (subject != NULL) {
			r->subject = cmq_load_strdup(l, subject);
			r->subject_path = subject_path;
			subject_path.seg = NULL;
			subject_path.n = 0;
		}
		p->n_rules++;
	}
out:
	cmq_scrub_path_cleanup(&subject_path);
}

static void load_rules(struct cmq_load *l, struct cmq_jctx *c, struct json_object *root,
                       struct cmq_json_split *split)
{
	struct json_object *arr = cmq_jarray(c, root, "topic_rules", true);
	struct cmq_policy *p = l->p;
	bool streamed = split != NULL && split->found;
	struct cmq_strmap ids;
	size_t n, base;

	if (arr == NULL)
		return;
	base = cmq_jpath_push_key(c, "topic_rules");
	n = streamed ? split->n : json_object_array_length(arr);
	if (cmq_trie_new(&p->rule_trie) != CMQ_OK ||
	    (p->rules = cmq_calloc(n ? n : 1, sizeof(*p->rules))) == NULL) {
		l->nomem = true;
		cmq_jpath_pop(c, base);
		return;
	}
	cmq_strmap_init(&ids);
	for (size_t i = 0; i < n && !l->nomem; i++) {
		/* A streamed element is parsed here and freed below: the rules are never one
		 * json-c tree (jsonutil.h, cmq_json_load_split). */
		struct json_object *o = NULL;
		size_t old = cmq_jpath_push_index(c, i), before = p->n_rules;
		char q[128];

		if (streamed) {
			if (cmq_json_split_parse(split, i, c->diag, &o) != CMQ_OK) {
				cmq_jpath_pop(c, old);
				continue;
			}
		} else {
			o = json_object_array_get_idx(arr, i);
		}
		if (cmq_jis_object(c, o))
			load_rule(l, c, o);
		if (streamed)
			json_object_put(o);
		if (p->n_rules > before) {
			struct cmq_rule *r = &p->rules[before];
			void *prev = NULL;
			int rc = r->id ? cmq_strmap_put(&ids, r->id, strlen(r->id), r, &prev)
			               : CMQ_ERR_NOMEM;

			if (rc == CMQ_ERR_EXISTS) {
				size_t o2 = cmq_jpath_push_key(c, "id");

				cmq_jerr(c, "duplicate rule id %s",
				         cmq_diag_quote(r->id, strlen(r->id), q, sizeof(q)));
				cmq_jpath_pop(c, o2);
			} else if (rc != CMQ_OK) {
				l->nomem = true;
			}
		}
		cmq_jpath_pop(c, old);
	}
	cmq_strmap_cleanup(&ids);
	cmq_jpath_pop(c, base);
}

/* First level of a pattern could be `raw` / `city` (literal, '+', '#' or a substitution). */
static bool first_level_may_be(const char *pat, const char *word)
{
	size_t wl = strlen(word);
	const char *slash = strchr(pat, '/');
	size_t len = slash ? (size_t)(slash - pat) : strlen(pat);

	if ((len == 1 && (pat[0] == '+' || pat[0] == '#')) || (len == 2 && pat[0] == '%'))
		return true;
	return len == wl && memcmp(pat, word, wl) == 0;
}

static int role_add(struct cmq_role *r, bool deny, enum cmq_op op, const char *pat,
                    const char **why)
{
	struct cmq_trie **t = deny ? &r->deny[op] : &r->allow[op];
	int rc;

	if (*t == NULL && (rc = cmq_trie_new(t)) != CMQ_OK)
		return rc;
	rc = cmq_trie_insert(*t, pat, strlen(pat), CMQ_PATTERN_ALLOW_SUBST, 0, why, NULL);
	return rc == CMQ_ERR_EXISTS ? CMQ_OK : rc;
}

/* Add one grant or deny; subscribe grants imply read, and both deny kinds block receiving. */
static int role_apply(struct cmq_role *r, bool deny, enum cmq_op op, const char *pat,
                      const char **why)
{
	int rc = role_add(r, deny, op, pat, why);

	if (rc == CMQ_OK && !deny && op == CMQ_OP_SUBSCRIBE)
		rc = role_add(r, false, CMQ_OP_READ, pat, why);
	if (rc == CMQ_OK && deny && op == CMQ_OP_SUBSCRIBE)
		rc = role_add(r, true, CMQ_OP_READ, pat, why);
	if (rc == CMQ_OK && deny && op == CMQ_OP_READ)
		rc = role_add(r, true, CMQ_OP_SUBSCRIBE, pat, why);
	return rc;
}

static void load_role_entries(struct cmq_load *l, struct cmq_jctx *c, struct json_object *o,
                              struct cmq_role *r, bool deny)
{
	static const char *const keys[] = {"access", "topic", NULL};
	const char *field = deny ? "denies" : "grants";
	struct json_object *arr = cmq_jarray(c, o, field, false);
	size_t base;

	if (arr == NULL)
		return;
	base = cmq_jpath_push_key(c, field);
	for (size_t i = 0; i < json_object_array_length(arr) && !l->nomem; i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		const char *access = NULL, *topic = NULL, *why = NULL;
		size_t old = cmq_jpath_push_index(c, i);
		char d[160], q[160];
		int op = -1, rc;

		if (!json_object_is_type(e, json_type_object)) {
			cmq_jerr(c,
			         "expected an object like {\"access\": \"publish\", \"topic\": "
			         "\"cmd/+/signal/+\"}, got %s",
			         cmq_jdescribe(e, d, sizeof(d)));
			cmq_jpath_pop(c, old);
			continue;
		}
		cmq_jcheck_keys(c, e, keys);
		if (cmq_jstring(c, e, "access", true, 32, &access) && access != NULL) {
			size_t o2 = cmq_jpath_push_key(c, "access");

			op = cmq_jenum(c, access, "kind of access", op_names);
			cmq_jpath_pop(c, o2);
		}
		if (!cmq_jstring(c, e, "topic", true, 1024, &topic) || topic == NULL || op < 0) {
			cmq_jpath_pop(c, old);
			continue;
		}
		size_t o2 = cmq_jpath_push_key(c, "topic");

		if (cmq_pattern_check(topic, strlen(topic), CMQ_PATTERN_ALLOW_SUBST, &why) != 0) {
			cmq_jerr(c, "%s is not a valid topic pattern: %s",
			         cmq_diag_quote(topic, strlen(topic), q, sizeof(q)), why);
		} else if (!deny && topic[0] == '$') {
			cmq_jerr(c,
			         "%s: topics starting with '$' are reserved and cannot be granted",
			         cmq_diag_quote(topic, strlen(topic), q, sizeof(q)));
		} else if (!deny && op == CMQ_OP_PUBLISH && first_level_may_be(topic, "raw")) {
			cmq_jerr(
			    c,
			    "%s could publish raw/ topics; only devices publish raw topics, as "
			    "the topic rules allow (name a first level other than raw)",
			    cmq_diag_quote(topic, strlen(topic), q, sizeof(q)));
		} else if (!deny && op == CMQ_OP_PUBLISH && r->kind != CMQ_ROLE_GATEWAY &&
		           first_level_may_be(topic, "city")) {
			cmq_jerr(c,
			         "%s could publish city/ topics; only the gateway publishes "
			         "scrubbed data",
			         cmq_diag_quote(topic, strlen(topic), q, sizeof(q)));
		} else if (!deny && op != CMQ_OP_PUBLISH && r->kind != CMQ_ROLE_GATEWAY &&
		           first_level_may_be(topic, "raw")) {
			cmq_jerr(c,
			         "%s could read raw/ topics; only the gateway role reads raw data "
			         "(name a first level other than raw)",
			         cmq_diag_quote(topic, strlen(topic), q, sizeof(q)));
		} else if ((rc = role_apply(r, deny, (enum cmq_op)op, topic, &why)) != CMQ_OK) {
			if (rc == CMQ_ERR_NOMEM)
				l->nomem = true;
			else
				cmq_jerr(c, "%s: %s",
				         cmq_diag_quote(topic, strlen(topic), q, sizeof(q)),
				         why ? why : "rejected");
		}
		cmq_jpath_pop(c, o2);
		cmq_jpath_pop(c, old);
	}
	cmq_jpath_pop(c, base);
}

static void load_roles(struct cmq_load *l, struct cmq_jctx *c, struct json_object *root)
{
	static const char *const keys[] = {"id", "description", "grants", "denies", NULL};
	struct json_object *arr = cmq_jarray(c, root, "roles", false);
	struct cmq_policy *p = l->p;
	size_t n = arr ? json_object_array_length(arr) : 0, base;
	bool seen[CMQ_BUILTIN_ROLES] = {false};

	p->roles = cmq_calloc(CMQ_BUILTIN_ROLES + n, sizeof(*p->roles));
	if (p->roles == NULL) {
		l->nomem = true;
		return;
	}
	for (int k = 0; k < CMQ_BUILTIN_ROLES && !l->nomem; k++) {
		struct cmq_role *r = &p->roles[k];
		const char *why = NULL;

		r->id = cmq_load_strdup(l, builtin_roles[k].id);
		r->description = cmq_load_strdup(l, builtin_roles[k].description);
		r->kind = (enum cmq_role_kind)k;
		p->n_roles++;
		for (int op = 0; op < CMQ_OP__COUNT && !l->nomem; op++) {
			if (builtin_roles[k].allow[op] &&
			    role_add(r, false, (enum cmq_op)op, builtin_roles[k].allow[op], &why) !=
			        CMQ_OK)
				l->nomem = true;
			if (builtin_roles[k].deny[op] &&
			    role_add(r, true, (enum cmq_op)op, builtin_roles[k].deny[op], &why) !=
			        CMQ_OK)
				l->nomem = true;
		}
	}
	if (arr == NULL || l->nomem)
		return;
	base = cmq_jpath_push_key(c, "roles");
	for (size_t i = 0; i < n && !l->nomem; i++) {
		struct json_object *o = json_object_array_get_idx(arr, i);
		const char *id = NULL, *desc = NULL;
		size_t old = cmq_jpath_push_index(c, i);
		struct cmq_role *r = NULL;
		char q[128];

		if (!cmq_jis_object(c, o)) {
			cmq_jpath_pop(c, old);
			continue;
		}
		cmq_jcheck_keys(c, o, keys);
		(void)cmq_jstring(c, o, "description", false, 500, &desc);
		if (!cmq_jstring(c, o, "id", true, CMQ_ID_FIELD_MAX, &id) || id == NULL) {
			cmq_jpath_pop(c, old);
			continue;
		}
		size_t o2 = cmq_jpath_push_key(c, "id");
		const struct cmq_role *found = cmq_policy_role_find(p, id);

		if (!cmq_load_check_id(c, id, "role id")) {
			id = NULL;
		} else if (found != NULL && found->kind != CMQ_ROLE_CUSTOM && !seen[found->kind]) {
			/* A built-in role named in the file: extend it with more grants/denies. */
			seen[found->kind] = true;
			r = &p->roles[found->kind];
		} else if (found != NULL) {
			cmq_jerr(c, "duplicate role id %s",
			         cmq_diag_quote(id, strlen(id), q, sizeof(q)));
		} else {
			r = &p->roles[p->n_roles];
			r->id = cmq_load_strdup(l, id);
			r->description = cmq_load_strdup(l, desc ? desc : "");
			r->kind = CMQ_ROLE_CUSTOM;
			p->n_roles++;
		}
		cmq_jpath_pop(c, o2);
		if (r != NULL) {
			load_role_entries(l, c, o, r, false);
			load_role_entries(l, c, o, r, true);
		}
		cmq_jpath_pop(c, old);
	}
	cmq_jpath_pop(c, base);
}

void cmq_load_policy_json(struct cmq_load *l, const char *file, struct json_object *root,
                          struct cmq_json_split *rules)
{
	static const char *const keys[] = {"version",    "city",           "description",
	                                   "categories", "scrub_profiles", "topic_rules",
	                                   "roles",      "limits",         NULL};
	struct cmq_jctx c;
	char d[160];

	cmq_jctx_init(&c, file, l->diag);
	if (!json_object_is_type(root, json_type_object)) {
		cmq_jerr(&c, "expected the policy object, got %s",
		         cmq_jdescribe(root, d, sizeof(d)));
		return;
	}
	cmq_jcheck_keys(&c, root, keys);
	(void)load_version(l, &c, root);
	load_limits(l, &c, root);
	load_categories(l, &c, root);
	load_profiles(l, &c, root);
	load_rules(l, &c, root, rules);
	load_roles(l, &c, root);
}
