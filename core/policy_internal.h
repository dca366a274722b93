/*
 * policy_internal.h - shared between the policy loader's files (policy.c,
 * policy_rules.c, policy_principals.c); not part of the core's API.
 */
#ifndef CMQ_POLICY_INTERNAL_H
#define CMQ_POLICY_INTERNAL_H

#include "jsonutil.h"
#include "policy.h"

struct cmq_load {
	struct cmq_policy *p;
	struct cmq_diag *diag;
	bool nomem;         /* an allocation failed: the load fails with CMQ_ERR_NOMEM */
	bool policy_failed; /* policy.json had errors: references into it are not checked */
};

/* Copy s into policy-owned memory; records nomem on failure. */
char *cmq_load_strdup(struct cmq_load *l, const char *s);

/* Validate an id (rule, role, category, profile, vendor): 1..64 of [A-Za-z0-9._-]. */
bool cmq_load_check_id(struct cmq_jctx *c, const char *s, const char *what);

/* The "id" member of o if it is a string, else "" (for duplicate lookups before checks). */
const char *cmq_load_json_id(struct json_object *o);
/*
 * The required, valid "id" of o, or NULL after an error; taken says whether an item with
 * that id was already loaded (reported as "duplicate <what> id").
 */
const char *cmq_load_unique_id(struct cmq_jctx *c, struct json_object *o, const char *what,
                               bool taken);

/*
 * policy.json: version, categories, profiles, rules, roles, limits. rules, if non-NULL and
 * found, holds the topic_rules elements to parse one at a time (jsonutil.h); otherwise
 * they are read from root.
 */
void cmq_load_policy_json(struct cmq_load *l, const char *file, struct json_object *root,
                          struct cmq_json_split *rules);
/* vendors.json (needs categories). */
void cmq_load_vendors_json(struct cmq_load *l, const char *file, struct json_object *root);
/* operators.json (needs roles and vendors). */
void cmq_load_operators_json(struct cmq_load *l, const char *file, struct json_object *root);

/* How a file is named in messages: its path as configured, so operators can find it. */
const char *cmq_load_display(const char *path);

#endif
