/*
 * policy.c - loading a policy as a whole (cmq_policy_load), freeing it,
 * lookups, and the small value formats shared by the loaders (fingerprints,
 * serials, ids).
 *
 * cmq_policy_load reads policy.json, vendors.json and (if given) operators.json, then
 * resolves the pinned CA fingerprints against the CA bundle, and only if
 * nothing anywhere was an error returns the new policy. Its stamp (the
 * policy version plus 12 hex digits of a SHA-256 over policy.json and
 * vendors.json) goes into each message's provenance and each scrubbed message,
 * so a file edited without a version bump still changes what subscribers see.
 * It covers what governs the data - what is collected, how it is scrubbed, who
 * may feed it - and not the operator accounts or the CA bundle, so the plugin
 * and the gateway (which loads neither) name the same policy the same way.
 */
#include "policy_internal.h"

#include "alloc.h"
#include "error.h"
#include "topic.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

char *cmq_load_strdup(struct cmq_load *l, const char *s)
{
	char *d = cmq_strdup(s ? s : "");

	if (d == NULL)
		l->nomem = true;
	return d;
}

const char *cmq_load_display(const char *path)
{
	return path;
}

bool cmq_load_check_id(struct cmq_jctx *c, const char *s, const char *what)
{
	char q[128];
	size_t len = strlen(s);
	bool ok = len > 0 && len <= CMQ_ID_FIELD_MAX;

	for (size_t i = 0; ok && i < len; i++) {
		char ch = s[i];

		ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		     (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.';
	}
	if (!ok)
		cmq_jerr(c, "%s is not a valid %s; use 1 to %d letters, digits, '-', '_' or '.'",
		         cmq_diag_quote(s, len, q, sizeof(q)), what, CMQ_ID_FIELD_MAX);
	return ok;
}

/* The "id" member of o if it is a string, else "" (for duplicate lookups before checks). */
const char *cmq_load_json_id(struct json_object *o)
{
	struct json_object *v;

	if (json_object_object_get_ex(o, "id", &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return "";
}

/*
 * The required, valid "id" of o, or NULL after an error; taken says whether an item with
 * that id was already loaded (a duplicate).
 */
const char *cmq_load_unique_id(struct cmq_jctx *c, struct json_object *o, const char *what,
                               bool taken)
{
	const char *id = NULL;
	char q[128], label[64];
	size_t old;

	if (!cmq_jstring(c, o, "id", true, CMQ_ID_FIELD_MAX, &id) || id == NULL)
		return NULL;
	old = cmq_jpath_push_key(c, "id");
	snprintf(label, sizeof(label), "%s id", what);
	if (!cmq_load_check_id(c, id, label)) {
		id = NULL;
	} else if (taken) {
		cmq_jerr(c, "duplicate %s id %s", what,
		         cmq_diag_quote(id, strlen(id), q, sizeof(q)));
		id = NULL;
	}
	cmq_jpath_pop(c, old);
	return id;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

bool cmq_fingerprint_parse(const char *s, uint8_t out[32])
{
	size_t len = strlen(s), n = 0;
	bool colons = len == 95;

	if (len != 64 && len != 95)
		return false;
	for (size_t i = 0; i < len;) {
		int hi = hexval(s[i]), lo = i + 1 < len ? hexval(s[i + 1]) : -1;

		if (hi < 0 || lo < 0 || n >= 32)
			return false;
		out[n++] = (uint8_t)(hi << 4 | lo);
		i += 2;
		if (colons && i < len) {
			if (s[i] != ':')
				return false;
			i++;
		}
	}
	return n == 32;
}

void cmq_fingerprint_format(const uint8_t fp[32], char *buf, size_t buflen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	if (buflen < 96) {
		if (buflen > 0)
			buf[0] = '\0';
		return;
	}
	for (size_t i = 0; i < 32; i++) {
		if (i)
			buf[o++] = ':';
		buf[o++] = hex[fp[i] >> 4];
		buf[o++] = hex[fp[i] & 15];
	}
	buf[o] = '\0';
}

bool cmq_serial_normalise(const char *s, char out[CMQ_SERIAL_HEX_MAX + 1])
{
	size_t o = 0;
	bool leading = true;

	if (*s == '\0')
		return false;
	for (; *s; s++) {
		int v;

		if (*s == ':')
			continue;
		v = hexval(*s);
		if (v < 0)
			return false;
		if (leading && v == 0)
			continue;
		leading = false;
		if (o >= CMQ_SERIAL_HEX_MAX)
			return false;
		out[o++] = "0123456789ABCDEF"[v];
	}
	if (o == 0)
		out[o++] = '0';
	out[o] = '\0';
	return true;
}

const struct cmq_vendor *cmq_policy_vendor_find(const struct cmq_policy *p, const char *id)
{
	return id ? cmq_strmap_get(&p->vendor_by_id, id, strlen(id)) : NULL;
}

const struct cmq_operator *cmq_policy_operator_find(const struct cmq_policy *p,
                                                    const char *username, size_t len)
{
	return cmq_strmap_get(&p->operator_by_name, username, len);
}

const struct cmq_vendor *cmq_policy_vendor_for_device(const struct cmq_policy *p,
                                                      const char *device_id, size_t len)
{
	for (size_t i = 0; i < p->n_prefix_lens; i++) {
		const struct cmq_vendor *v;

		/* A device id longer than the prefix: the prefix alone names no device. */
		if (p->prefix_lens[i] >= len)
			continue;
		v = cmq_strmap_get(&p->vendor_by_prefix, device_id, p->prefix_lens[i]);
		if (v != NULL)
			return v;
	}
	return NULL;
}

const struct cmq_role *cmq_policy_role_find(const struct cmq_policy *p, const char *id)
{
	for (size_t i = 0; i < p->n_roles; i++) {
		if (p->roles[i].id != NULL && strcmp(p->roles[i].id, id) == 0)
			return &p->roles[i];
	}
	return NULL;
}

bool cmq_vendor_is_revoked(const struct cmq_vendor *v, const char *serial)
{
	size_t lo = 0, hi = v->n_revoked;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(v->revoked[mid], serial);

		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* Resolve pins against the PEM bundle; hashes what it reads into ctx_digest. */
static void load_ca_bundle(struct cmq_load *l, const char *path, uint8_t digest[32])
{
	struct cmq_policy *p = l->p;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	BIO *bio;
	X509 *cert;
	size_t count = 0;
	char fpbuf[100];

	memset(digest, 0, 32);
	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		l->nomem = true;
		return;
	}
	bio = BIO_new_file(path, "r");
	if (bio == NULL) {
		cmq_diag_add(l->diag, CMQ_DIAG_ERROR, path, NULL,
		             "cannot open the CA bundle (plugin option ca_file); it must hold the "
		             "pinned vendor and operator CA certificates in PEM");
		ERR_clear_error();
		EVP_MD_CTX_free(md);
		return;
	}
	while ((cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		uint8_t fp[32];
		unsigned fplen = 0;

		count++;
		if (X509_digest(cert, EVP_sha256(), fp, &fplen) != 1 || fplen != 32) {
			X509_free(cert);
			l->nomem = true;
			break;
		}
		EVP_DigestUpdate(md, fp, sizeof(fp));
		for (size_t i = 0; i < p->n_cas; i++) {
			if (memcmp(p->cas[i].sha256, fp, 32) != 0 || p->cas[i].cert != NULL)
				continue;
			if (X509_check_ca(cert) < 1) {
				cmq_fingerprint_format(fp, fpbuf, sizeof(fpbuf));
				cmq_diag_add(l->diag, CMQ_DIAG_WARNING, path, NULL,
				             "pinned certificate %s is not a CA certificate",
				             fpbuf);
			}
			X509_up_ref(cert);
			p->cas[i].cert = cert;
		}
		X509_free(cert);
	}
	{
		unsigned long e = ERR_peek_last_error();

		if (e != 0 &&
		    !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
			cmq_diag_add(l->diag, CMQ_DIAG_ERROR, path, NULL,
			             "malformed PEM after %zu certificate(s): %s", count,
			             ERR_reason_error_string(e) ? ERR_reason_error_string(e)
			                                        : "unknown OpenSSL error");
		ERR_clear_error();
	}
	BIO_free(bio);
	EVP_DigestFinal_ex(md, digest, NULL);
	EVP_MD_CTX_free(md);
	if (count == 0)
		cmq_diag_add(l->diag, CMQ_DIAG_ERROR, path, NULL,
		             "holds no PEM certificate; it must hold the pinned CA certificates");
	for (size_t i = 0; i < p->n_cas; i++) {
		if (p->cas[i].cert != NULL)
			continue;
		cmq_fingerprint_format(p->cas[i].sha256, fpbuf, sizeof(fpbuf));
		if (p->cas[i].owner == CMQ_CA_VENDOR)
			cmq_diag_add(l->diag, CMQ_DIAG_WARNING, path, NULL,
			             "vendor %s pins CA %s, which is not in this bundle; that "
			             "vendor's devices are refused until it is added",
			             p->vendors[p->cas[i].vendor].id, fpbuf);
		else
			cmq_diag_add(l->diag, CMQ_DIAG_WARNING, path, NULL,
			             "operator CA %s is pinned but not in this bundle; operator "
			             "certificates from it are refused until it is added",
			             fpbuf);
	}
}

static void load_json_file(struct cmq_load *l, const char *path, uint8_t digest[32],
                           void (*fn)(struct cmq_load *, const char *, struct json_object *))
{
	struct json_object *root = NULL;
	int rc;

	memset(digest, 0, 32);
	if (path == NULL)
		return;
	rc = cmq_json_load_file(path, cmq_load_display(path), CMQ_POLICY_MAX_FILE, l->diag, &root,
	                        digest);
	if (rc == CMQ_ERR_NOMEM)
		l->nomem = true;
	if (root == NULL)
		return;
	fn(l, cmq_load_display(path), root);
	json_object_put(root);
}

/* The same for a document given as text (reported under path). */
static void load_json_text(struct cmq_load *l, const char *path, const char *text, size_t len,
                           uint8_t digest[32],
                           void (*fn)(struct cmq_load *, const char *, struct json_object *))
{
	struct json_object *root = NULL;

	SHA256((const unsigned char *)text, len, digest);
	if (len > CMQ_POLICY_MAX_FILE) {
		cmq_diag_add(l->diag, CMQ_DIAG_ERROR, cmq_load_display(path), NULL,
		             "document of %zu bytes is larger than the limit of %u", len,
		             CMQ_POLICY_MAX_FILE);
		return;
	}
	if (cmq_json_parse(text, len, cmq_load_display(path), l->diag, &root) == CMQ_ERR_NOMEM)
		l->nomem = true;
	if (root == NULL)
		return;
	fn(l, cmq_load_display(path), root);
	json_object_put(root);
}

/* policy.json, whose topic_rules may run to 100,000 elements: parsed one at a time. */
static void load_policy_file(struct cmq_load *l, const char *path, uint8_t digest[32])
{
	struct json_object *root = NULL;
	struct cmq_json_split rules;
	int rc;

	rc = cmq_json_load_split(path, cmq_load_display(path), CMQ_POLICY_MAX_FILE, "topic_rules",
	                         l->diag, &root, &rules, digest);
	if (rc == CMQ_ERR_NOMEM)
		l->nomem = true;
	if (root == NULL)
		return;
	cmq_load_policy_json(l, cmq_load_display(path), root, &rules);
	if (cmq_json_split_finish(&rules, l->diag) == CMQ_ERR_NOMEM)
		l->nomem = true;
	cmq_json_split_cleanup(&rules);
	json_object_put(root);
}

static void make_stamp(struct cmq_policy *p, uint8_t parts[4][32])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t all[32];
	char h[13];

	SHA256(&parts[0][0], 2 * 32, all); /* policy.json and vendors.json */
	for (int i = 0; i < 6; i++) {
		h[2 * i] = hex[all[i] >> 4];
		h[2 * i + 1] = hex[all[i] & 15];
	}
	h[12] = '\0';
	snprintf(p->stamp, sizeof(p->stamp), "%s+%s", p->version ? p->version : "unversioned", h);
}

static int load(const struct cmq_policy_files *files, const char *vendors_text, size_t vendors_len,
                struct cmq_diag *diag, struct cmq_policy **out)
{
	struct cmq_load l = {0};
	uint8_t digests[4][32];
	size_t errors_before = diag->errors;

	*out = NULL;
	if (files == NULL || files->policy == NULL || files->vendors == NULL) {
		cmq_diag_add(diag, CMQ_DIAG_ERROR, NULL, NULL,
		             "the policy and vendors files must both be given (operators is "
		             "optional)");
		return CMQ_ERR_CONFIG;
	}
	l.p = cmq_calloc(1, sizeof(*l.p));
	if (l.p == NULL)
		return CMQ_ERR_NOMEM;
	l.diag = diag;
	cmq_strmap_init(&l.p->operator_by_name);
	cmq_strmap_init(&l.p->vendor_by_id);
	cmq_strmap_init(&l.p->vendor_by_prefix);

	load_policy_file(&l, files->policy, digests[0]);
	l.policy_failed = diag->errors != errors_before;
	if (l.policy_failed)
		cmq_diag_add(diag, CMQ_DIAG_WARNING, files->vendors, NULL,
		             "categories and roles named in the vendors and operators files are "
		             "not checked, because %s has errors",
		             files->policy);
	if (!l.nomem && vendors_text != NULL)
		load_json_text(&l, files->vendors, vendors_text, vendors_len, digests[1],
		               cmq_load_vendors_json);
	else if (!l.nomem)
		load_json_file(&l, files->vendors, digests[1], cmq_load_vendors_json);
	if (!l.nomem)
		load_json_file(&l, files->operators, digests[2], cmq_load_operators_json);
	memset(digests[3], 0, 32);
	if (!l.nomem && files->ca_file != NULL)
		load_ca_bundle(&l, files->ca_file, digests[3]);

	if (l.nomem) {
		cmq_policy_free(l.p);
		return CMQ_ERR_NOMEM;
	}
	if (diag->errors != errors_before || l.p->version == NULL) {
		cmq_policy_free(l.p);
		return CMQ_ERR_CONFIG;
	}
	make_stamp(l.p, digests);
	*out = l.p;
	return CMQ_OK;
}

int cmq_policy_load(const struct cmq_policy_files *files, struct cmq_diag *diag,
                    struct cmq_policy **out)
{
	return load(files, NULL, 0, diag, out);
}

int cmq_policy_load_vendors_text(const struct cmq_policy_files *files, const char *vendors_text,
                                 size_t vendors_len, struct cmq_diag *diag, struct cmq_policy **out)
{
	if (vendors_text == NULL) {
		*out = NULL;
		cmq_diag_add(diag, CMQ_DIAG_ERROR, NULL, NULL, "no vendors document given");
		return CMQ_ERR_INVAL;
	}
	return load(files, vendors_text, vendors_len, diag, out);
}

void cmq_policy_free(struct cmq_policy *p)
{
	if (p == NULL)
		return;
	cmq_free(p->version);
	cmq_free(p->city);
	for (size_t i = 0; i < p->n_categories; i++) {
		cmq_free(p->categories[i].id);
		cmq_free(p->categories[i].description);
	}
	cmq_free(p->categories);
	for (size_t i = 0; i < p->n_profiles; i++) {
		for (size_t k = 0; k < p->profiles[i].n_ops; k++)
			cmq_scrub_op_cleanup(&p->profiles[i].ops[k]);
		cmq_free(p->profiles[i].ops);
		cmq_free(p->profiles[i].id);
		cmq_free(p->profiles[i].description);
	}
	cmq_free(p->profiles);
	for (size_t i = 0; i < p->n_rules; i++) {
		struct cmq_rule *r = &p->rules[i];

		cmq_free(r->id);
		cmq_free(r->raw);
		cmq_free(r->purpose);
		cmq_free(r->retention);
		cmq_free(r->scrubbed);
		cmq_free(r->subject);
		cmq_scrub_path_cleanup(&r->subject_path);
	}
	cmq_free(p->rules);
	cmq_trie_free(p->rule_trie);
	for (size_t i = 0; i < p->n_roles; i++) {
		cmq_free(p->roles[i].id);
		cmq_free(p->roles[i].description);
		for (int op = 0; op < CMQ_OP__COUNT; op++) {
			cmq_trie_free(p->roles[i].allow[op]);
			cmq_trie_free(p->roles[i].deny[op]);
		}
	}
	cmq_free(p->roles);
	for (size_t i = 0; i < p->n_vendors; i++) {
		struct cmq_vendor *v = &p->vendors[i];

		cmq_free(v->id);
		cmq_free(v->name);
		cmq_free(v->prefix);
		cmq_free(v->ca_sha256);
		for (size_t k = 0; k < v->n_revoked; k++)
			cmq_free(v->revoked[k]);
		cmq_free(v->revoked);
	}
	cmq_free(p->vendors);
	for (size_t i = 0; i < p->n_operators; i++)
		cmq_free(p->operators[i].username);
	cmq_free(p->operators);
	for (size_t i = 0; i < p->n_cas; i++)
		X509_free(p->cas[i].cert);
	cmq_free(p->cas);
	cmq_strmap_cleanup(&p->operator_by_name);
	cmq_strmap_cleanup(&p->vendor_by_id);
	cmq_strmap_cleanup(&p->vendor_by_prefix);
	cmq_free(p);
}
