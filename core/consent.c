/*
 * consent.c - loads consent.json into an immutable table of residents' opt-ins.
 *
 * Layout: one array of residents, each holding its id inline and a 64-bit set of the
 * categories it opted in to; a map from resident id to its entry (keys borrowed from
 * the entries, which never move after load); and the table's own list of category ids
 * (at most CMQ_MAX_CATEGORIES, as in a policy) with a map from id to bit. The table
 * names categories by id rather than by a policy's index, so it does not borrow the
 * policy it was checked against and outlives a policy reload.
 *
 * Invariants: every listed resident id is valid and unique; every category bit set in
 * a resident names an entry of cats[]; with a policy given, every cats[] entry is one
 * of its category ids.
 * Cost: load is linear in the file (json-c DOM, then one pass); a lookup is two hash
 * probes and allocates nothing. Thread: load anywhere; a loaded table is read-only.
 */
#include "consent.h"

#include "alloc.h"
#include "error.h"
#include "jsonutil.h"
#include "policy.h"
#include "strmap.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct consent_resident {
	uint64_t categories; /* bit i: opted in to cmq_consent.cats[i] */
	uint32_t index;      /* position in $.residents, for duplicate messages */
	uint8_t len;
	char id[CMQ_SUBJECT_MAX + 1];
};

struct cmq_consent {
	struct cmq_strmap by_id;       /* resident id -> struct consent_resident */
	struct cmq_strmap by_category; /* category id -> its cats[] row */
	struct consent_resident *residents;
	size_t n;
	char cats[CMQ_MAX_CATEGORIES][CMQ_ID_FIELD_MAX + 1];
	size_t n_cats;
};

/* State of one load. */
struct consent_load {
	struct cmq_consent *c;
	struct cmq_jctx *j;
	const struct cmq_policy *policy;
	uint64_t warned_unlinked; /* policy categories already warned about (bit = policy index) */
	bool nomem;
};

static void consent_init(struct cmq_consent *c)
{
	memset(c, 0, sizeof(*c));
	cmq_strmap_init(&c->by_id);
	cmq_strmap_init(&c->by_category);
}

int cmq_consent_new_empty(struct cmq_consent **out)
{
	struct cmq_consent *c = cmq_malloc(sizeof(*c));

	*out = NULL;
	if (c == NULL)
		return CMQ_ERR_NOMEM;
	consent_init(c);
	*out = c;
	return CMQ_OK;
}

void cmq_consent_free(struct cmq_consent *c)
{
	if (c == NULL)
		return;
	cmq_strmap_cleanup(&c->by_id);
	cmq_strmap_cleanup(&c->by_category);
	cmq_free(c->residents);
	cmq_free(c);
}

bool cmq_subject_valid(const char *s, size_t len)
{
	if (s == NULL || len == 0 || len > CMQ_SUBJECT_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == ':' ||
		      ch == '@' || ch == '-'))
			return false;
	}
	return true;
}

bool cmq_consent_allows(const struct cmq_consent *c, const char *subject, size_t len,
                        const char *category)
{
	const char(*row)[CMQ_ID_FIELD_MAX + 1];
	const struct consent_resident *r;

	if (c == NULL || subject == NULL || category == NULL || len == 0 || len > CMQ_SUBJECT_MAX)
		return false;
	row = cmq_strmap_get(&c->by_category, category, strlen(category));
	if (row == NULL)
		return false; /* nobody opted in to it */
	r = cmq_strmap_get(&c->by_id, subject, len);
	if (r == NULL)
		return false;
	return (r->categories >> (size_t)(row - c->cats) & 1) != 0;
}

size_t cmq_consent_count(const struct cmq_consent *c)
{
	return c != NULL ? c->n : 0;
}

/* A category id as policy.json spells them: 1..64 of [A-Za-z0-9._-]. */
static bool category_id_valid(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > CMQ_ID_FIELD_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.'))
			return false;
	}
	return true;
}

/* "environment, mobility, ..." for messages. */
static const char *policy_category_list(const struct cmq_policy *p, char *buf, size_t buflen)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < p->n_categories && off + 70 < buflen; i++)
		off += (size_t)snprintf(buf + off, buflen - off, "%s%s", i ? ", " : "",
		                        p->categories[i].id);
	return buf;
}

/* Check s against the policy (if any); returns false after an error. */
static bool check_against_policy(struct consent_load *l, const char *s)
{
	const struct cmq_policy *p = l->policy;
	char q[128], list[512];
	size_t k;

	if (p == NULL)
		return true;
	for (k = 0; k < p->n_categories; k++) {
		if (strcmp(p->categories[k].id, s) == 0)
			break;
	}
	if (k == p->n_categories) {
		cmq_jerr(l->j, "unknown data category %s; policy.json defines: %s",
		         cmq_diag_quote(s, strlen(s), q, sizeof(q)),
		         policy_category_list(p, list, sizeof(list)));
		return false;
	}
	if (!p->categories[k].resident_linked && k < 64 && !(l->warned_unlinked >> k & 1)) {
		/* Legal but pointless: that category is forwarded without asking anyone. */
		l->warned_unlinked |= (uint64_t)1 << k;
		cmq_jwarn(l->j,
		          "category %s is not resident_linked in policy.json, so consent to it "
		          "changes nothing (further mentions not reported)",
		          cmq_diag_quote(s, strlen(s), q, sizeof(q)));
	}
	return true;
}

/* The bit of category s in the table, adding it if new; -1 after an error. */
static int category_bit(struct consent_load *l, const char *s)
{
	struct cmq_consent *c = l->c;
	const char(*row)[CMQ_ID_FIELD_MAX + 1] = cmq_strmap_get(&c->by_category, s, strlen(s));
	char q[128];
	size_t len = strlen(s);

	if (row != NULL)
		return (int)(row - c->cats);
	if (!category_id_valid(s)) {
		cmq_jerr(l->j,
		         "%s is not a category id; use 1 to %d letters, digits, '-', '_' or '.' "
		         "as in policy.json",
		         cmq_diag_quote(s, len, q, sizeof(q)), CMQ_ID_FIELD_MAX);
		return -1;
	}
	if (!check_against_policy(l, s))
		return -1;
	if (c->n_cats == CMQ_MAX_CATEGORIES) {
		cmq_jerr(l->j, "%s would be data category number %d; at most %d exist",
		         cmq_diag_quote(s, len, q, sizeof(q)), CMQ_MAX_CATEGORIES + 1,
		         CMQ_MAX_CATEGORIES);
		return -1;
	}
	memcpy(c->cats[c->n_cats], s, len + 1);
	if (cmq_strmap_put(&c->by_category, c->cats[c->n_cats], len, c->cats[c->n_cats], NULL) !=
	    CMQ_OK) {
		l->nomem = true;
		return -1;
	}
	return (int)c->n_cats++;
}

static bool digits(const char *s, size_t n, int min, int max)
{
	int v = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	return v >= min && v <= max;
}

/* "YYYY-MM-DDTHH:MM:SS[.fraction]Z" with plausible field ranges. */
static bool utc_time_valid(const char *s)
{
	size_t len = strlen(s), i = 19;

	if (len < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
	    s[16] != ':' || !digits(s, 4, 0, 9999) || !digits(s + 5, 2, 1, 12) ||
	    !digits(s + 8, 2, 1, 31) || !digits(s + 11, 2, 0, 23) || !digits(s + 14, 2, 0, 59) ||
	    !digits(s + 17, 2, 0, 60))
		return false;
	if (s[i] == '.') {
		i++;
		if (!(s[i] >= '0' && s[i] <= '9'))
			return false;
		while (s[i] >= '0' && s[i] <= '9')
			i++;
	}
	return s[i] == 'Z' && i + 1 == len;
}

static void load_categories(struct consent_load *l, struct json_object *arr,
                            struct consent_resident *r, bool *ok)
{
	size_t base = cmq_jpath_push_key(l->j, "categories");

	for (size_t i = 0; i < json_object_array_length(arr) && !l->nomem; i++) {
		size_t old = cmq_jpath_push_index(l->j, i);
		const char *s = cmq_jas_string(l->j, json_object_array_get_idx(arr, i), 0);
		int bit = s != NULL ? category_bit(l, s) : -1;
		char q[128];

		if (bit < 0) {
			*ok = false;
		} else if (r->categories >> bit & 1) {
			cmq_jwarn(l->j, "category %s is listed twice",
			          cmq_diag_quote(s, strlen(s), q, sizeof(q)));
		} else {
			r->categories |= (uint64_t)1 << bit;
		}
		cmq_jpath_pop(l->j, old);
	}
	cmq_jpath_pop(l->j, base);
}

static void load_resident(struct consent_load *l, struct json_object *o, size_t index)
{
	static const char *const keys[] = {"id", "categories", "updated", NULL};
	struct cmq_consent *c = l->c;
	struct consent_resident *r = &c->residents[c->n];
	const char *id = NULL, *updated = NULL;
	struct json_object *cats;
	bool ok = true;
	size_t old;
	char q[160];
	void *first = NULL;

	memset(r, 0, sizeof(*r));
	cmq_jcheck_keys(l->j, o, keys);
	ok &= cmq_jstring(l->j, o, "id", true, 0, &id);
	ok &= cmq_jstring(l->j, o, "updated", false, 64, &updated);
	if (id != NULL) {
		old = cmq_jpath_push_key(l->j, "id");
		if (!cmq_subject_valid(id, strlen(id))) {
			cmq_jerr(l->j,
			         "%s is not a resident id; use 1 to %d letters, digits, '_', '.', "
			         "':', '@' or '-'",
			         cmq_diag_quote(id, strlen(id), q, sizeof(q)), CMQ_SUBJECT_MAX);
			id = NULL;
			ok = false;
		} else if ((first = cmq_strmap_get(&c->by_id, id, strlen(id))) != NULL) {
			cmq_jerr(l->j, "duplicate resident %s (also $.residents[%u])",
			         cmq_diag_quote(id, strlen(id), q, sizeof(q)),
			         (unsigned)((struct consent_resident *)first)->index);
			ok = false;
		}
		cmq_jpath_pop(l->j, old);
	}
	if (updated != NULL && !utc_time_valid(updated)) {
		old = cmq_jpath_push_key(l->j, "updated");
		cmq_jerr(l->j, "%s is not a UTC time; expected e.g. \"2026-11-01T09:00:00Z\"",
		         cmq_diag_quote(updated, strlen(updated), q, sizeof(q)));
		cmq_jpath_pop(l->j, old);
		ok = false;
	}
	/* Required, so a typo in the key cannot pass for "no categories" unnoticed. */
	cats = cmq_jarray(l->j, o, "categories", true);
	if (cats != NULL)
		load_categories(l, cats, r, &ok);
	else
		ok = false;
	if (!ok || l->nomem || id == NULL)
		return;
	r->len = (uint8_t)strlen(id);
	memcpy(r->id, id, r->len + 1u);
	r->index = (uint32_t)index;
	if (cmq_strmap_put(&c->by_id, r->id, r->len, r, NULL) != CMQ_OK) {
		l->nomem = true;
		return;
	}
	c->n++;
}

static void load_root(struct consent_load *l, struct json_object *root)
{
	static const char *const keys[] = {"version", "residents", "description", NULL};
	struct cmq_consent *c = l->c;
	struct json_object *v, *arr;
	size_t n, base;
	char d[160];

	if (!json_object_is_type(root, json_type_object)) {
		cmq_jerr(l->j,
		         "expected an object with \"version\": 1 and a \"residents\" array, "
		         "got %s",
		         cmq_jdescribe(root, d, sizeof(d)));
		return;
	}
	cmq_jcheck_keys(l->j, root, keys);
	v = cmq_jget(l->j, root, "version", true);
	if (v != NULL &&
	    !(json_object_is_type(v, json_type_int) && json_object_get_int64(v) == 1)) {
		size_t old = cmq_jpath_push_key(l->j, "version");

		cmq_jerr(l->j, "unsupported version %s; this civicmq reads version 1",
		         cmq_jdescribe(v, d, sizeof(d)));
		cmq_jpath_pop(l->j, old);
	}
	arr = cmq_jarray(l->j, root, "residents", true);
	if (arr == NULL)
		return;
	n = json_object_array_length(arr);
	if (n > UINT32_MAX) {
		cmq_jerr(l->j, "lists %zu residents; at most %u", n, (unsigned)UINT32_MAX);
		return;
	}
	c->residents = cmq_calloc(n ? n : 1, sizeof(*c->residents));
	if (c->residents == NULL) {
		l->nomem = true;
		return;
	}
	base = cmq_jpath_push_key(l->j, "residents");
	for (size_t i = 0; i < n && !l->nomem; i++) {
		struct json_object *o = json_object_array_get_idx(arr, i);
		size_t old = cmq_jpath_push_index(l->j, i);

		if (cmq_jis_object(l->j, o))
			load_resident(l, o, i);
		cmq_jpath_pop(l->j, old);
	}
	cmq_jpath_pop(l->j, base);
}

int cmq_consent_load(const char *file, const struct cmq_policy *policy, struct cmq_diag *diag,
                     struct cmq_consent **out)
{
	struct json_object *root = NULL;
	struct cmq_consent *c = NULL;
	struct consent_load l = {0};
	struct cmq_diag local;
	struct cmq_jctx j;
	size_t errors_before;
	int rc;

	*out = NULL;
	cmq_diag_init(&local);
	if (diag == NULL)
		diag = &local;
	errors_before = diag->errors;
	if (file == NULL) {
		cmq_diag_add(diag, CMQ_DIAG_ERROR, NULL, NULL, "no consent file given");
		rc = CMQ_ERR_INVAL;
		goto out;
	}
	rc = cmq_json_load_file(file, file, CMQ_CONSENT_MAX_FILE, diag, &root, NULL);
	if (rc != CMQ_OK) {
		if (rc == CMQ_ERR_TOO_BIG)
			rc = CMQ_ERR_CONFIG;
		goto out;
	}
	rc = cmq_consent_new_empty(&c);
	if (rc != CMQ_OK)
		goto out;
	cmq_jctx_init(&j, file, diag);
	l.c = c;
	l.j = &j;
	l.policy = policy;
	load_root(&l, root);
	if (l.nomem)
		rc = CMQ_ERR_NOMEM;
	else if (diag->errors > errors_before)
		rc = CMQ_ERR_CONFIG;
out:
	json_object_put(root);
	if (rc == CMQ_OK)
		*out = c;
	else
		cmq_consent_free(c);
	cmq_diag_cleanup(&local);
	return rc;
}
