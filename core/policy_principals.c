/*
 * policy_principals.c - loads vendors.json and operators.json.
 *
 * Invariants enforced here:
 *  - vendor ids and device id prefixes are unique, and no prefix is a prefix
 *    of another, so a device id names at most one vendor;
 *  - a CA fingerprint is pinned once: to one vendor, or as an operator CA;
 *  - operator usernames are unique, pass the identity check and carry no
 *    vendor prefix, so no device certificate can ever name an operator;
 *  - an operator authenticates by password, by certificate, or both, as its
 *    entry says; the "sensor" role belongs to devices only.
 * Cost: linear in the files, plus a sort of the prefixes and of each vendor's
 * revoked serials.
 */
#include "policy_internal.h"

#include "alloc.h"
#include "error.h"
#include "topic.h"

#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

static const char *const tier_names[] = {"trusted", "restricted", "blocked", NULL};

const char *cmq_tier_name(enum cmq_tier t)
{
	return (unsigned)t < CMQ_TIER__COUNT ? tier_names[t] : "?";
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Pin fingerprints from a JSON array into *out; returns count or -1 on error. */
static long load_fingerprints(struct cmq_load *l, struct cmq_jctx *c, struct json_object *arr,
                              uint8_t (**out)[32])
{
	size_t n = json_object_array_length(arr);
	uint8_t(*fps)[32];
	long got = 0;

	*out = NULL;
	if (n == 0) {
		cmq_jerr(c, "is empty; pin at least one CA certificate by its SHA-256 fingerprint "
		            "(openssl x509 -noout -fingerprint -sha256 -in ca.pem)");
		return -1;
	}
	fps = cmq_calloc(n, sizeof(*fps));
	if (fps == NULL) {
		l->nomem = true;
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		size_t old = cmq_jpath_push_index(c, i);
		const char *s = cmq_jas_string(c, json_object_array_get_idx(arr, i), 200);
		char q[160];

		if (s != NULL && !cmq_fingerprint_parse(s, fps[got])) {
			cmq_jerr(c,
			         "%s is not a SHA-256 fingerprint; expected 64 hex digits, "
			         "optionally in colon-separated pairs (AB:CD:...)",
			         cmq_diag_quote(s, strlen(s), q, sizeof(q)));
		} else if (s != NULL) {
			got++;
		}
		cmq_jpath_pop(c, old);
	}
	if ((size_t)got != n) {
		cmq_free(fps);
		return -1;
	}
	*out = fps;
	return got;
}

/* Register a pin; errors if the fingerprint is already pinned elsewhere. */
static void add_pin(struct cmq_load *l, struct cmq_jctx *c, const uint8_t fp[32],
                    enum cmq_ca_owner owner, uint32_t vendor)
{
	struct cmq_policy *p = l->p;
	struct cmq_pinned_ca *grown;
	char buf[100];

	for (size_t i = 0; i < p->n_cas; i++) {
		if (memcmp(p->cas[i].sha256, fp, 32) == 0) {
			cmq_fingerprint_format(fp, buf, sizeof(buf));
			cmq_jerr(c,
			         "CA %s is already pinned %s%s; a CA belongs to one vendor or to "
			         "the operators",
			         buf, p->cas[i].owner == CMQ_CA_VENDOR ? "by vendor " : "as ",
			         p->cas[i].owner == CMQ_CA_VENDOR ? p->vendors[p->cas[i].vendor].id
			                                          : "an operator CA");
			return;
		}
	}
	grown = cmq_reallocarray(p->cas, p->n_cas + 1, sizeof(*p->cas));
	if (grown == NULL) {
		l->nomem = true;
		return;
	}
	p->cas = grown;
	memset(&p->cas[p->n_cas], 0, sizeof(p->cas[p->n_cas]));
	memcpy(p->cas[p->n_cas].sha256, fp, 32);
	p->cas[p->n_cas].owner = owner;
	p->cas[p->n_cas].vendor = vendor;
	p->n_cas++;
}

static bool load_vendor_categories(struct cmq_load *l, struct cmq_jctx *c, struct json_object *o,
                                   struct cmq_vendor *v)
{
	struct json_object *arr = cmq_jarray(c, o, "categories", true);
	const struct cmq_policy *p = l->p;
	bool ok = true;
	size_t base;

	if (arr == NULL)
		return false;
	base = cmq_jpath_push_key(c, "categories");
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		size_t old = cmq_jpath_push_index(c, i);
		const char *s = cmq_jas_string(c, json_object_array_get_idx(arr, i), 64);
		size_t k;

		if (s == NULL) {
			ok = false;
		} else {
			for (k = 0; k < p->n_categories; k++) {
				if (strcmp(p->categories[k].id, s) == 0)
					break;
			}
			if (k == p->n_categories && l->policy_failed) {
				ok = false; /* policy.json's own errors explain this */
			} else if (k == p->n_categories) {
				char q[128], list[512];
				size_t off = 0;

				list[0] = '\0';
				for (size_t j = 0; j < p->n_categories && off + 70 < sizeof(list);
				     j++)
					off +=
					    (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
					                     j ? ", " : "", p->categories[j].id);
				cmq_jerr(c, "unknown data category %s; policy.json defines: %s",
				         cmq_diag_quote(s, strlen(s), q, sizeof(q)), list);
				ok = false;
			} else {
				v->categories |= (uint64_t)1 << k;
			}
		}
		cmq_jpath_pop(c, old);
	}
	cmq_jpath_pop(c, base);
	return ok;
}

static bool load_revoked(struct cmq_load *l, struct cmq_jctx *c, struct json_object *o,
                         struct cmq_vendor *v)
{
	struct json_object *arr = cmq_jarray(c, o, "revoked_serials", false);
	size_t n, base;
	bool ok = true;

	if (arr == NULL)
		return cmq_jget(c, o, "revoked_serials", false) == NULL;
	n = json_object_array_length(arr);
	if (n == 0)
		return true;
	v->revoked = cmq_calloc(n, sizeof(char *));
	if (v->revoked == NULL) {
		l->nomem = true;
		return false;
	}
	base = cmq_jpath_push_key(c, "revoked_serials");
	for (size_t i = 0; i < n && !l->nomem; i++) {
		size_t old = cmq_jpath_push_index(c, i);
		const char *s = cmq_jas_string(c, json_object_array_get_idx(arr, i), 200);
		char norm[CMQ_SERIAL_HEX_MAX + 1], q[160];

		if (s != NULL && !cmq_serial_normalise(s, norm)) {
			cmq_jerr(c,
			         "%s is not a certificate serial; expected hex digits as "
			         "`openssl x509 -noout -serial` prints them",
			         cmq_diag_quote(s, strlen(s), q, sizeof(q)));
			ok = false;
		} else if (s != NULL) {
			v->revoked[v->n_revoked] = cmq_load_strdup(l, norm);
			if (v->revoked[v->n_revoked] != NULL)
				v->n_revoked++;
		} else {
			ok = false;
		}
		cmq_jpath_pop(c, old);
	}
	cmq_jpath_pop(c, base);
	qsort(v->revoked, v->n_revoked, sizeof(char *), cmp_str);
	return ok;
}

static void free_vendor(struct cmq_vendor *v)
{
	cmq_free(v->id);
	cmq_free(v->name);
	cmq_free(v->prefix);
	cmq_free(v->ca_sha256);
	for (size_t i = 0; i < v->n_revoked; i++)
		cmq_free(v->revoked[i]);
	cmq_free(v->revoked);
	memset(v, 0, sizeof(*v));
}

static void load_vendor(struct cmq_load *l, struct cmq_jctx *c, struct json_object *o)
{
	static const char *const keys[] = {"id",
	                                   "name",
	                                   "tier",
	                                   "device_id_prefix",
	                                   "ca_sha256",
	                                   "categories",
	                                   "revoked_serials",
	                                   "contact",
	                                   "notes",
	                                   NULL};
	struct cmq_policy *p = l->p;
	struct cmq_vendor *v = &p->vendors[p->n_vendors];
	const char *id = NULL, *name = NULL, *tier = NULL, *prefix = NULL, *contact, *notes;
	struct json_object *fps;
	int tier_i = -1;
	bool ok = true;
	size_t old;
	long nfp = -1;
	char q[160];

	cmq_jcheck_keys(c, o, keys);
	id = cmq_load_unique_id(c, o, "vendor",
	                        cmq_strmap_get(&p->vendor_by_id, cmq_load_json_id(o),
	                                       strlen(cmq_load_json_id(o))) != NULL);
	ok &= id != NULL;
	ok &= cmq_jstring(c, o, "name", true, 200, &name);
	ok &= cmq_jstring(c, o, "tier", true, 32, &tier);
	ok &= cmq_jstring(c, o, "device_id_prefix", true, CMQ_PREFIX_MAX, &prefix);
	ok &= cmq_jstring(c, o, "contact", false, 500, &contact);
	ok &= cmq_jstring(c, o, "notes", false, 2000, &notes);
	if (tier != NULL) {
		old = cmq_jpath_push_key(c, "tier");
		tier_i = cmq_jenum(c, tier, "vendor tier", tier_names);
		ok &= tier_i >= 0;
		cmq_jpath_pop(c, old);
	}
	if (prefix != NULL) {
		const char *why = NULL;

		old = cmq_jpath_push_key(c, "device_id_prefix");
		if (!cmq_identity_check(prefix, strlen(prefix), &why)) {
			cmq_jerr(c, "%s is not a valid device id prefix: it %s",
			         cmq_diag_quote(prefix, strlen(prefix), q, sizeof(q)), why);
			ok = false;
		}
		cmq_jpath_pop(c, old);
	}
	fps = cmq_jarray(c, o, "ca_sha256", true);
	if (fps != NULL) {
		old = cmq_jpath_push_key(c, "ca_sha256");
		nfp = load_fingerprints(l, c, fps, &v->ca_sha256);
		cmq_jpath_pop(c, old);
	}
	ok &= nfp > 0;
	ok &= load_vendor_categories(l, c, o, v);
	ok &= load_revoked(l, c, o, v);
	if (!ok || l->nomem || id == NULL || name == NULL || tier == NULL || prefix == NULL) {
		free_vendor(v);
		return;
	}
	v->n_ca = (size_t)nfp;
	v->id = cmq_load_strdup(l, id);
	v->name = cmq_load_strdup(l, name);
	v->prefix = cmq_load_strdup(l, prefix);
	v->prefix_len = strlen(prefix);
	v->tier = (enum cmq_tier)tier_i;
	if (v->id == NULL || v->name == NULL || v->prefix == NULL ||
	    cmq_strmap_put(&p->vendor_by_id, v->id, strlen(v->id), v, NULL) != CMQ_OK) {
		l->nomem = true;
		free_vendor(v);
		return;
	}
	old = cmq_jpath_push_key(c, "ca_sha256");
	for (size_t i = 0; i < v->n_ca; i++)
		add_pin(l, c, v->ca_sha256[i], CMQ_CA_VENDOR, (uint32_t)p->n_vendors);
	cmq_jpath_pop(c, old);
	p->n_vendors++;
}

/* Prefix-freeness: after sorting, any prefix relation shows between neighbours. */
static void check_prefixes(struct cmq_load *l, const char *file)
{
	struct cmq_policy *p = l->p;
	const char **sorted;

	if (p->n_vendors == 0)
		return;
	sorted = cmq_calloc(p->n_vendors, sizeof(*sorted));
	if (sorted == NULL) {
		l->nomem = true;
		return;
	}
	for (size_t i = 0; i < p->n_vendors; i++)
		sorted[i] = p->vendors[i].prefix;
	qsort(sorted, p->n_vendors, sizeof(*sorted), cmp_str);
	for (size_t i = 0; i + 1 < p->n_vendors; i++) {
		if (strncmp(sorted[i + 1], sorted[i], strlen(sorted[i])) == 0) {
			cmq_diag_add(
			    l->diag, CMQ_DIAG_ERROR, file, "$.vendors",
			    "device id prefix \"%s\" is a prefix of \"%s\"; each device id "
			    "must name exactly one vendor (e.g. end prefixes with '-')",
			    sorted[i], sorted[i + 1]);
		}
	}
	cmq_free(sorted);
	for (size_t i = 0; i < p->n_vendors && !l->nomem; i++) {
		struct cmq_vendor *v = &p->vendors[i];
		size_t k;
		int rc = cmq_strmap_put(&p->vendor_by_prefix, v->prefix, v->prefix_len, v, NULL);

		if (rc == CMQ_ERR_NOMEM) {
			l->nomem = true;
			break;
		}
		if (rc != CMQ_OK)
			continue; /* equal prefixes were reported above */
		for (k = 0; k < p->n_prefix_lens; k++) {
			if (p->prefix_lens[k] == v->prefix_len)
				break;
		}
		if (k == p->n_prefix_lens && k < CMQ_PREFIX_MAX)
			p->prefix_lens[p->n_prefix_lens++] = v->prefix_len;
	}
}

/* Load every object of the array under key with fn (others are reported and skipped). */
static void load_each(struct cmq_load *l, struct cmq_jctx *c, struct json_object *arr,
                      const char *key,
                      void (*fn)(struct cmq_load *, struct cmq_jctx *, struct json_object *))
{
	size_t base = cmq_jpath_push_key(c, key);

	for (size_t i = 0; i < json_object_array_length(arr) && !l->nomem; i++) {
		struct json_object *o = json_object_array_get_idx(arr, i);
		size_t old = cmq_jpath_push_index(c, i);

		if (cmq_jis_object(c, o))
			fn(l, c, o);
		cmq_jpath_pop(c, old);
	}
	cmq_jpath_pop(c, base);
}

void cmq_load_vendors_json(struct cmq_load *l, const char *file, struct json_object *root)
{
	static const char *const keys[] = {"vendors", "description", NULL};
	struct cmq_policy *p = l->p;
	struct json_object *arr;
	struct cmq_jctx c;
	size_t n;
	char d[160];

	cmq_jctx_init(&c, file, l->diag);
	if (!json_object_is_type(root, json_type_object)) {
		cmq_jerr(&c, "expected an object with a \"vendors\" array, got %s",
		         cmq_jdescribe(root, d, sizeof(d)));
		return;
	}
	cmq_jcheck_keys(&c, root, keys);
	arr = cmq_jarray(&c, root, "vendors", true);
	if (arr == NULL)
		return;
	n = json_object_array_length(arr);
	p->vendors = cmq_calloc(n ? n : 1, sizeof(*p->vendors));
	if (p->vendors == NULL) {
		l->nomem = true;
		return;
	}
	load_each(l, &c, arr, "vendors", load_vendor);
	check_prefixes(l, file);
}

/* Digest of what authenticates an operator and what it may do: a change forces a kick. */
static void operator_digest(struct cmq_operator *op, const char *role, const char *hash)
{
	char buf[CMQ_ID_FIELD_MAX + CMQ_PASSWD_STR_MAX + 8];
	int n = snprintf(buf, sizeof(buf), "%s|%s|%c", role, hash ? hash : "",
	                 op->cert_auth ? 'c' : '-');

	SHA256((const unsigned char *)buf, n > 0 ? (size_t)n : 0, op->cred_digest);
}

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/*
 * An operator owns the client ids "<user>" and "<user>-<anything>" (trust.c). The vendor
 * whose device ids ("<prefix><anything>") could fall in that namespace, or NULL.
 */
static const struct cmq_vendor *vendor_overlapping(const struct cmq_policy *p, const char *user)
{
	char owned[CMQ_ID_MAX + 2];

	snprintf(owned, sizeof(owned), "%s-", user);
	for (size_t i = 0; i < p->n_vendors; i++) {
		const char *prefix = p->vendors[i].prefix;

		if (starts_with(user, prefix) || starts_with(owned, prefix) ||
		    starts_with(prefix, owned))
			return &p->vendors[i];
	}
	return NULL;
}

static void load_operator(struct cmq_load *l, struct cmq_jctx *c, struct json_object *o)
{
	static const char *const keys[] = {"username",    "role",        "password_hash",
	                                   "certificate", "description", NULL};
	struct cmq_policy *p = l->p;
	struct cmq_operator *op = &p->operators[p->n_operators];
	const char *user = NULL, *role = NULL, *hash = NULL, *desc = NULL, *why = NULL;
	const struct cmq_role *r = NULL;
	bool cert = false, ok = true;
	size_t old;
	char q[160];

	cmq_jcheck_keys(c, o, keys);
	ok &= cmq_jstring(c, o, "username", true, CMQ_ID_MAX, &user);
	ok &= cmq_jstring(c, o, "role", true, CMQ_ID_FIELD_MAX, &role);
	ok &= cmq_jstring(c, o, "password_hash", false, CMQ_PASSWD_STR_MAX, &hash);
	ok &= cmq_jbool(c, o, "certificate", false, &cert);
	ok &= cmq_jstring(c, o, "description", false, 500, &desc);
	if (user != NULL) {
		const struct cmq_vendor *v;

		old = cmq_jpath_push_key(c, "username");
		if (!cmq_identity_check(user, strlen(user), &why)) {
			cmq_jerr(c, "%s is not an acceptable username: it %s",
			         cmq_diag_quote(user, strlen(user), q, sizeof(q)), why);
			ok = false;
		} else if (cmq_strmap_get(&p->operator_by_name, user, strlen(user)) != NULL) {
			cmq_jerr(c, "duplicate operator %s",
			         cmq_diag_quote(user, strlen(user), q, sizeof(q)));
			ok = false;
		} else if ((v = vendor_overlapping(p, user)) != NULL) {
			cmq_jerr(c,
			         "%s overlaps vendor %s's device id prefix \"%s\": the operator's "
			         "client ids (%s, %s-...) could pass for device ids; rename one",
			         cmq_diag_quote(user, strlen(user), q, sizeof(q)), v->id, v->prefix,
			         user, user);
			ok = false;
		}
		cmq_jpath_pop(c, old);
	}
	if (role != NULL) {
		old = cmq_jpath_push_key(c, "role");
		r = cmq_policy_role_find(p, role);
		if (r == NULL && l->policy_failed) {
			ok = false; /* policy.json's own errors explain this */
		} else if (r == NULL) {
			char list[512];
			size_t off = 0;

			list[0] = '\0';
			for (size_t i = 1; i < p->n_roles && off + 70 < sizeof(list); i++)
				off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
				                        i > 1 ? ", " : "", p->roles[i].id);
			cmq_jerr(c, "unknown role %s; roles: %s",
			         cmq_diag_quote(role, strlen(role), q, sizeof(q)), list);
			ok = false;
		} else if (r->kind == CMQ_ROLE_SENSOR) {
			cmq_jerr(c, "\"sensor\" is the role of devices, which authenticate with "
			            "vendor certificates; give operators another role");
			ok = false;
		}
		cmq_jpath_pop(c, old);
	}
	if (hash != NULL) {
		old = cmq_jpath_push_key(c, "password_hash");
		if (cmq_passwd_parse(hash, &op->pw, &why) != CMQ_OK) {
			cmq_jerr(c, "not a password hash: %s", why);
			ok = false;
		} else if (op->pw.iterations < CMQ_PBKDF2_DEFAULT_ITERATIONS) {
			cmq_jwarn(c, "only %u PBKDF2 iterations; use at least %u (civicmq-passwd)",
			          (unsigned)op->pw.iterations, CMQ_PBKDF2_DEFAULT_ITERATIONS);
		}
		cmq_jpath_pop(c, old);
	}
	if (ok && hash == NULL && !cert) {
		cmq_jerr(c, "operator can never log in: give a \"password_hash\" (civicmq-passwd) "
		            "or \"certificate\": true, or both");
		ok = false;
	}
	if (!ok || user == NULL || r == NULL)
		return;
	op->username = cmq_load_strdup(l, user);
	op->role = (uint32_t)(r - p->roles);
	op->password_auth = hash != NULL;
	op->cert_auth = cert;
	operator_digest(op, r->id, hash);
	if (op->username == NULL || cmq_strmap_put(&p->operator_by_name, op->username,
	                                           strlen(op->username), op, NULL) != CMQ_OK) {
		cmq_free(op->username);
		l->nomem = true;
		return;
	}
	p->n_operators++;
}

/*
 * Operator "a" owns client ids "a" and "a-*"; operator "a-b" would own ids inside that set,
 * so either could take over the other's sessions. Also record the highest PBKDF2 cost,
 * which unknown usernames are charged (trust.c).
 */
static void check_operator_namespaces(struct cmq_load *l, const char *file)
{
	struct cmq_policy *p = l->p;
	char owned[CMQ_ID_MAX + 2];

	p->max_pw_iterations = CMQ_PBKDF2_DEFAULT_ITERATIONS;
	for (size_t i = 0; i < p->n_operators; i++) {
		if (p->operators[i].password_auth &&
		    p->operators[i].pw.iterations > p->max_pw_iterations)
			p->max_pw_iterations = p->operators[i].pw.iterations;
		snprintf(owned, sizeof(owned), "%s-", p->operators[i].username);
		for (size_t k = 0; k < p->n_operators; k++) {
			if (k != i && starts_with(p->operators[k].username, owned))
				cmq_diag_add(
				    l->diag, CMQ_DIAG_ERROR, file, "$.operators",
				    "operator \"%s\" lies inside operator \"%s\"'s client ids "
				    "(\"%s...\"); either could take over the other's sessions: "
				    "rename one",
				    p->operators[k].username, p->operators[i].username, owned);
		}
	}
}

void cmq_load_operators_json(struct cmq_load *l, const char *file, struct json_object *root)
{
	static const char *const keys[] = {"operator_ca_sha256", "operators", "description", NULL};
	struct cmq_policy *p = l->p;
	struct json_object *arr, *fps;
	struct cmq_jctx c;
	size_t n;
	char d[160];

	cmq_jctx_init(&c, file, l->diag);
	if (!json_object_is_type(root, json_type_object)) {
		cmq_jerr(&c, "expected an object with an \"operators\" array, got %s",
		         cmq_jdescribe(root, d, sizeof(d)));
		return;
	}
	cmq_jcheck_keys(&c, root, keys);
	fps = cmq_jarray(&c, root, "operator_ca_sha256", false);
	if (fps != NULL && json_object_array_length(fps) > 64) {
		size_t old = cmq_jpath_push_key(&c, "operator_ca_sha256");

		cmq_jerr(&c, "pins %zu CAs; at most 64 operator CAs",
		         json_object_array_length(fps));
		cmq_jpath_pop(&c, old);
	} else if (fps != NULL && json_object_array_length(fps) > 0) {
		size_t old = cmq_jpath_push_key(&c, "operator_ca_sha256");
		uint8_t(*pins)[32] = NULL;
		long np = load_fingerprints(l, &c, fps, &pins);

		for (long i = 0; i < np && !l->nomem; i++)
			add_pin(l, &c, pins[i], CMQ_CA_OPERATOR, 0);
		cmq_free(pins);
		cmq_jpath_pop(&c, old);
	}
	arr = cmq_jarray(&c, root, "operators", true);
	if (arr == NULL)
		return;
	n = json_object_array_length(arr);
	p->operators = cmq_calloc(n ? n : 1, sizeof(*p->operators));
	if (p->operators == NULL) {
		l->nomem = true;
		return;
	}
	load_each(l, &c, arr, "operators", load_operator);
	check_operator_namespaces(l, file);
}
