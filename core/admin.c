/*
 * admin.c - administrative requests: read, change in memory, validate as a whole,
 * save atomically, audit; or answer a question from the running policy. See admin.h.
 */
#include "admin.h"

#include "acl.h"
#include "alloc.h"
#include "atomic.h"
#include "consent.h"
#include "error.h"
#include "jsonutil.h"
#include "register.h"
#include "topic.h"

#include <errno.h>
#include <fcntl.h>
#include <json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FIELD_MAX    256 /* longest plain string field of a request */
#define NAME_MAX_LEN 200 /* a vendor's name, as vendors.json allows */
#define PEM_MAX      (64u * 1024u)
#define REASON_MAX   512
#define MAX_MESSAGES 4 /* loader messages quoted in an "invalid" answer */

struct req {
	const struct cmq_admin_files *files;
	const struct cmq_policy *current;
	struct cmq_audit *audit;
	const char *actor;
	const char *command;
	struct json_object *in;
	int64_t now;
	struct cmq_admin_outcome *out;
	struct json_object *warnings;
	bool nomem;
};

static const char *const commands[] = {
    "vendor.list",           "vendor.show",  "vendor.add",    "vendor.set_tier",  "vendor.remove",
    "vendor.set_categories", "device.list",  "device.revoke", "device.reinstate", "consent.grant",
    "consent.withdraw",      "consent.list", "explain",       "register",         NULL,
};

const char *const *cmq_admin_commands(void)
{
	return commands;
}

bool cmq_admin_is_change(const char *command)
{
	static const char *const changes[] = {
	    "vendor.add",    "vendor.set_tier",  "vendor.remove", "vendor.set_categories",
	    "device.revoke", "device.reinstate", "consent.grant", "consent.withdraw",
	};

	for (size_t i = 0; command != NULL && i < sizeof(changes) / sizeof(changes[0]); i++) {
		if (strcmp(command, changes[i]) == 0)
			return true;
	}
	return false;
}

/* ---- answers ---- */

static struct json_object *verror(const char *command, const char *code, const char *fmt,
                                  va_list ap)
{
	char msg[1024];
	struct json_object *o = json_object_new_object();

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (o == NULL)
		return NULL;
	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "command", json_object_new_string(command ? command : ""));
	json_object_object_add(o, "error", json_object_new_string(code));
	json_object_object_add(o, "message", json_object_new_string(msg));
	return o;
}

struct json_object *cmq_admin_error(const char *command, const char *code, const char *fmt, ...)
{
	struct json_object *o;
	va_list ap;

	va_start(ap, fmt);
	o = verror(command, code, fmt, ap);
	va_end(ap);
	return o;
}

/* Answer with an error (replacing any answer so far). Returns -1 for "stop here". */
static int fail(struct req *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct req *r, const char *code, const char *fmt, ...)
{
	va_list ap;

	json_object_put(r->out->response);
	va_start(ap, fmt);
	r->out->response = verror(r->command, code, fmt, ap);
	va_end(ap);
	if (r->out->response == NULL)
		r->nomem = true;
	return -1;
}

/* Answer ok with result (owned). */
static int succeed(struct req *r, struct json_object *result)
{
	struct json_object *o = json_object_new_object();

	if (o == NULL || result == NULL) {
		json_object_put(o);
		json_object_put(result);
		r->nomem = true;
		return -1;
	}
	json_object_object_add(o, "ok", json_object_new_boolean(1));
	json_object_object_add(o, "command", json_object_new_string(r->command));
	json_object_object_add(o, "result", result);
	if (json_object_array_length(r->warnings) > 0)
		json_object_object_add(o, "warnings", json_object_get(r->warnings));
	json_object_put(r->out->response);
	r->out->response = o;
	return 0;
}

/* ---- request fields ---- */

/* A string field of 1..max bytes, printable, no control characters. NULL if absent and
 * optional; on a bad or missing required field, answers bad_request and returns NULL. */
static const char *field(struct req *r, const char *key, bool required, size_t max, bool *bad)
{
	struct json_object *v;
	const char *s;
	size_t n;

	if (!json_object_object_get_ex(r->in, key, &v) || json_object_is_type(v, json_type_null)) {
		if (required) {
			fail(r, "bad_request", "field \"%s\" is required", key);
			*bad = true;
		}
		return NULL;
	}
	if (!json_object_is_type(v, json_type_string)) {
		fail(r, "bad_request", "field \"%s\": expected a string, got %s", key,
		     json_type_to_name(json_object_get_type(v)));
		*bad = true;
		return NULL;
	}
	s = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	if (n == 0 || n > max || strlen(s) != n) {
		fail(r, "bad_request", "field \"%s\": expected 1..%zu characters, got %zu", key,
		     max, n);
		*bad = true;
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 && s[i] != '\n') {
			fail(r, "bad_request", "field \"%s\": control character at byte %zu", key,
			     i);
			*bad = true;
			return NULL;
		}
	}
	/* Checked here, not left to the audit log, which would refuse it after the save. */
	if (!cmq_utf8_valid(s, n)) {
		fail(r, "bad_request", "field \"%s\": not valid UTF-8", key);
		*bad = true;
		return NULL;
	}
	return s;
}

/* An id field (vendor, category, resident): [A-Za-z0-9._-], 1..CMQ_ID_FIELD_MAX. */
static const char *id_field(struct req *r, const char *key, bool *bad)
{
	const char *s = field(r, key, true, CMQ_ID_FIELD_MAX, bad);

	if (s == NULL)
		return NULL;
	for (const char *p = s; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-')) {
			fail(r, "bad_request",
			     "field \"%s\": \"%s\" may contain only letters, digits, '.', '_' and "
			     "'-'",
			     key, s);
			*bad = true;
			return NULL;
		}
	}
	return s;
}

/* A resident id: what consent.json accepts (consent.h). */
static const char *resident_field(struct req *r, bool *bad)
{
	const char *s = field(r, "resident", true, CMQ_SUBJECT_MAX, bad);

	if (s != NULL && !cmq_subject_valid(s, strlen(s))) {
		fail(r, "bad_request", "field \"resident\": \"%s\" is not a resident id", s);
		*bad = true;
		return NULL;
	}
	return s;
}

/* Whether tier names a vendor tier; answers bad_request if not. */
static bool tier_ok(struct req *r, const char *tier)
{
	if (strcmp(tier, "trusted") == 0 || strcmp(tier, "restricted") == 0 ||
	    strcmp(tier, "blocked") == 0)
		return true;
	fail(r, "bad_request", "field \"tier\": \"%s\" is not one of trusted, restricted, blocked",
	     tier);
	return false;
}

/* ---- files ---- */

/* Read a file the change starts from; on failure answers save_failed and returns NULL. */
static char *read_doc(struct req *r, const char *path, size_t max, size_t *len)
{
	struct cmq_diag diag;
	char *buf = NULL;
	int rc;

	cmq_diag_init(&diag);
	rc = cmq_read_file(path, path, max, &diag, &buf, len);
	if (rc == CMQ_ERR_NOMEM)
		r->nomem = true;
	else if (rc != CMQ_OK)
		fail(r, "save_failed", "cannot read %s",
		     diag.n > 0 ? diag.entries[0].text : cmq_strerror(rc));
	cmq_diag_cleanup(&diag);
	return buf;
}

/*
 * The document as it will be saved (atomic.h's layout, so hand-written files keep their
 * form), "\n"-terminated, into *text (cmq_free). 0, or -1 with the answer set.
 */
static int render_text(struct req *r, struct json_object *root, const char *path, char **text,
                       size_t *len)
{
	int rc = cmq_json_render(root, text, len);

	if (rc == CMQ_ERR_NOMEM)
		r->nomem = true;
	else if (rc != CMQ_OK)
		fail(r, "invalid", "%s: the changed document cannot be written: %s", path,
		     cmq_strerror(rc));
	return rc == CMQ_OK ? 0 : -1;
}

static void add_diag_warnings(struct req *r, const struct cmq_diag *d)
{
	for (size_t i = 0; i < d->n; i++) {
		if (d->entries[i].level == CMQ_DIAG_WARNING)
			json_object_array_add(r->warnings,
			                      json_object_new_string(d->entries[i].text));
	}
}

/* Put path back as it was: old[0..old_len), or no file at all when old is NULL (there was
 * none). */
static int restore(const char *path, const char *old, size_t old_len, mode_t mode, char *err,
                   size_t errlen)
{
	if (old != NULL)
		return cmq_atomic_write(path, old, old_len, mode, err, errlen);
	if (unlink(path) != 0 && errno != ENOENT) {
		snprintf(err, errlen, "%s: unlink: %s", path, strerror(errno));
		return CMQ_ERR_IO;
	}
	return cmq_atomic_fsync_dir(path, err, errlen);
}

/* Save text to path atomically and audit it; on an audit failure restore old (NULL: path
 * did not exist). */
static int save_and_audit(struct req *r, const char *path, const char *text, size_t len,
                          const char *old, size_t old_len, mode_t mode, const char *target,
                          struct json_object *before, struct json_object *after)
{
	char err[512], err2[512];
	const char *why = NULL;
	struct cmq_audit_entry e;
	bool bad = false;

	if (r->audit == NULL)
		return fail(r, "audit_failed", "no audit log is open, so no change is made");
	if (json_object_object_get_ex(r->in, "reason", NULL))
		why = field(r, "reason", false, REASON_MAX, &bad);
	if (bad)
		return -1;
	if (cmq_atomic_write(path, text, len, mode, err, sizeof(err)) != CMQ_OK)
		return fail(r, "save_failed", "%s%s", err,
		            strstr(err, "was replaced") != NULL
		                ? " (the new file is in place; it is put in force when the broker "
		                  "notices it, within a second)"
		                : "; nothing was changed");
	memset(&e, 0, sizeof(e));
	e.time = r->now;
	e.actor = r->actor;
	e.action = r->command;
	e.target = target;
	e.before = before;
	e.after = after;
	e.reason = why;
	if (cmq_audit_append(r->audit, &e) != CMQ_OK) {
		if (restore(path, old, old_len, mode, err2, sizeof(err2)) != CMQ_OK)
			return fail(
			    r, "audit_failed",
			    "the audit log could not be written (%s), and restoring %s "
			    "failed too (%s): the file holds the change, the running policy "
			    "does not; fix the audit log and reload",
			    cmq_audit_last_error(r->audit), path, err2);
		return fail(r, "audit_failed",
		            "the audit log could not be written (%s); the change was undone",
		            cmq_audit_last_error(r->audit));
	}
	r->out->changed = true;
	return 0;
}

static mode_t file_mode(const char *path, mode_t fallback)
{
	struct stat st;

	return stat(path, &st) == 0 ? (st.st_mode & 07777) : fallback;
}

/* ---- vendors ---- */

static struct json_object *categories_json(const struct cmq_policy *p, uint64_t bits)
{
	struct json_object *a = json_object_new_array();

	for (size_t i = 0; a != NULL && i < p->n_categories && i < 64; i++) {
		if (bits >> i & 1)
			json_object_array_add(a, json_object_new_string(p->categories[i].id));
	}
	return a;
}

static struct json_object *vendor_json(const struct cmq_policy *p, const struct cmq_vendor *v,
                                       bool full)
{
	struct json_object *o = json_object_new_object(), *fps, *rev;
	char fp[100];

	if (o == NULL)
		return NULL;
	json_object_object_add(o, "id", json_object_new_string(v->id));
	json_object_object_add(o, "name", json_object_new_string(v->name ? v->name : ""));
	json_object_object_add(o, "tier", json_object_new_string(cmq_tier_name(v->tier)));
	json_object_object_add(o, "device_id_prefix", json_object_new_string(v->prefix));
	json_object_object_add(o, "categories", categories_json(p, v->categories));
	json_object_object_add(o, "revoked_devices", json_object_new_int64((int64_t)v->n_revoked));
	if (full) {
		fps = json_object_new_array();
		for (size_t i = 0; fps != NULL && i < v->n_ca; i++) {
			cmq_fingerprint_format(v->ca_sha256[i], fp, sizeof(fp));
			json_object_array_add(fps, json_object_new_string(fp));
		}
		json_object_object_add(o, "ca_sha256", fps);
		rev = json_object_new_array();
		for (size_t i = 0; rev != NULL && i < v->n_revoked; i++)
			json_object_array_add(rev, json_object_new_string(v->revoked[i]));
		json_object_object_add(o, "revoked_serials", rev);
	}
	return o;
}

static int vendor_list(struct req *r)
{
	struct json_object *res = json_object_new_object(), *arr = json_object_new_array();

	for (size_t i = 0; arr != NULL && i < r->current->n_vendors; i++)
		json_object_array_add(arr, vendor_json(r->current, &r->current->vendors[i], false));
	if (res != NULL && arr != NULL) {
		json_object_object_add(res, "policy", json_object_new_string(r->current->stamp));
		json_object_object_add(res, "vendors", arr);
		return succeed(r, res);
	}
	json_object_put(arr);
	json_object_put(res);
	r->nomem = true;
	return -1;
}

static int vendor_show(struct req *r)
{
	bool bad = false;
	const char *id = id_field(r, "vendor", &bad);
	const struct cmq_vendor *v;

	if (bad)
		return -1;
	v = cmq_policy_vendor_find(r->current, id);
	if (v == NULL)
		return fail(r, "not_found", "no vendor \"%s\" in the running policy", id);
	return succeed(r, vendor_json(r->current, v, true));
}

/* The vendors document being changed, with its original text for a rollback. */
struct vdoc {
	char *old;
	size_t old_len;
	struct json_object *root;
	struct json_object *arr; /* $.vendors */
};

static void vdoc_free(struct vdoc *d)
{
	cmq_free(d->old);
	json_object_put(d->root);
	memset(d, 0, sizeof(*d));
}

static int vdoc_read(struct req *r, struct vdoc *d)
{
	struct cmq_diag diag;
	int rc;

	memset(d, 0, sizeof(*d));
	d->old = read_doc(r, r->files->vendors, CMQ_POLICY_MAX_FILE, &d->old_len);
	if (d->old == NULL)
		return -1;
	cmq_diag_init(&diag);
	rc = cmq_json_parse(d->old, d->old_len, r->files->vendors, &diag, &d->root);
	if (rc == CMQ_ERR_NOMEM) {
		cmq_diag_cleanup(&diag);
		vdoc_free(d);
		r->nomem = true;
		return -1;
	}
	if (d->root == NULL) {
		fail(r, "invalid", "%s", diag.n > 0 ? diag.entries[0].text : "cannot parse");
		cmq_diag_cleanup(&diag);
		vdoc_free(d);
		return -1;
	}
	cmq_diag_cleanup(&diag);
	if (!json_object_object_get_ex(d->root, "vendors", &d->arr) ||
	    !json_object_is_type(d->arr, json_type_array)) {
		vdoc_free(d);
		return fail(r, "invalid", "%s: $.vendors is not an array", r->files->vendors);
	}
	return 0;
}

/* Index of the vendor with this id in $.vendors, or -1. */
static int vdoc_find(const struct vdoc *d, const char *id)
{
	for (size_t i = 0; i < json_object_array_length(d->arr); i++) {
		struct json_object *v = json_object_array_get_idx(d->arr, i), *idv;

		if (json_object_object_get_ex(v, "id", &idv) &&
		    json_object_is_type(idv, json_type_string) &&
		    strcmp(json_object_get_string(idv), id) == 0)
			return (int)i;
	}
	return -1;
}

static struct json_object *copy_or_null(struct json_object *o)
{
	struct json_object *c = NULL;

	if (o != NULL && json_object_deep_copy(o, &c, NULL) != 0)
		return NULL;
	return c;
}

/*
 * Validate the changed document as a whole policy, save, audit, and hand over the new
 * policy. before/after are the changed vendor entry (owned, may be NULL).
 */
static int vdoc_commit(struct req *r, struct vdoc *d, const char *target,
                       struct json_object *before, struct json_object *after)
{
	struct cmq_policy_files pf;
	struct cmq_policy *np = NULL;
	struct cmq_diag diag;
	char *text = NULL, msg[1400];
	size_t len = 0, used = 0;
	int rc = -1;

	if (render_text(r, d->root, r->files->vendors, &text, &len) != 0)
		goto out;
	memset(&pf, 0, sizeof(pf));
	pf.policy = r->files->policy;
	pf.vendors = r->files->vendors;
	pf.operators = r->files->operators;
	pf.ca_file = r->files->ca_file;
	cmq_diag_init(&diag);
	if (cmq_policy_load_vendors_text(&pf, text, len, &diag, &np) == CMQ_ERR_NOMEM) {
		/* Not "invalid": the change may be fine, the memory was not. */
		cmq_diag_cleanup(&diag);
		r->nomem = true;
		goto out;
	}
	if (np == NULL) {
		msg[0] = '\0';
		for (size_t i = 0, shown = 0; i < diag.n && shown < MAX_MESSAGES; i++) {
			if (diag.entries[i].level != CMQ_DIAG_ERROR)
				continue;
			used += (size_t)snprintf(msg + used,
			                         used < sizeof(msg) ? sizeof(msg) - used : 0,
			                         "%s%s", shown ? "; " : "", diag.entries[i].text);
			shown++;
			if (used >= sizeof(msg))
				break;
		}
		fail(r, "invalid",
		     "the change would make the policy invalid, so it was not made: %s",
		     msg[0] ? msg : "out of memory");
		cmq_diag_cleanup(&diag);
		goto out;
	}
	add_diag_warnings(r, &diag);
	cmq_diag_cleanup(&diag);
	if (save_and_audit(r, r->files->vendors, text, len, d->old, d->old_len,
	                   file_mode(r->files->vendors, 0640), target, before, after) != 0) {
		cmq_policy_free(np);
		goto out;
	}
	{
		struct json_object *res = json_object_new_object();

		if (res != NULL) {
			json_object_object_add(res, "target", json_object_new_string(target));
			json_object_object_add(res, "before", json_object_get(before));
			json_object_object_add(res, "after", json_object_get(after));
			json_object_object_add(res, "policy", json_object_new_string(np->stamp));
		}
		r->out->policy = np;
		rc = succeed(r, res);
	}
out:
	cmq_free(text);
	json_object_put(before);
	json_object_put(after);
	return rc;
}

static struct json_object *string_array(struct req *r, const char *key, size_t max_items, bool *bad)
{
	struct json_object *v, *out;

	if (!json_object_object_get_ex(r->in, key, &v) ||
	    !json_object_is_type(v, json_type_array)) {
		fail(r, "bad_request", "field \"%s\": expected an array of category ids", key);
		*bad = true;
		return NULL;
	}
	if (json_object_array_length(v) > max_items) {
		fail(r, "bad_request", "field \"%s\": at most %zu items", key, max_items);
		*bad = true;
		return NULL;
	}
	for (size_t i = 0; i < json_object_array_length(v); i++) {
		struct json_object *e = json_object_array_get_idx(v, i);

		if (!json_object_is_type(e, json_type_string) ||
		    json_object_get_string_len(e) == 0 ||
		    json_object_get_string_len(e) > CMQ_ID_FIELD_MAX) {
			fail(r, "bad_request", "field \"%s\"[%zu]: expected a category id", key, i);
			*bad = true;
			return NULL;
		}
	}
	out = copy_or_null(v);
	if (out == NULL)
		r->nomem = true;
	return out;
}

static int vendor_change(struct req *r)
{
	bool bad = false;
	const char *id = id_field(r, "vendor", &bad);
	struct json_object *entry, *before, *after, *cats = NULL;
	const char *tier = NULL;
	struct vdoc d;
	int at;

	if (bad)
		return -1;
	if (strcmp(r->command, "vendor.set_tier") == 0) {
		tier = field(r, "tier", true, 16, &bad);
		if (bad || !tier_ok(r, tier))
			return -1;
	} else if (strcmp(r->command, "vendor.set_categories") == 0) {
		cats = string_array(r, "categories", CMQ_MAX_CATEGORIES, &bad);
		if (bad || cats == NULL)
			return -1;
	}
	if (vdoc_read(r, &d) != 0) {
		json_object_put(cats);
		return -1;
	}
	at = vdoc_find(&d, id);
	if (at < 0) {
		json_object_put(cats);
		vdoc_free(&d);
		return fail(r, "not_found", "no vendor \"%s\" in %s", id, r->files->vendors);
	}
	entry = json_object_array_get_idx(d.arr, (size_t)at);
	before = copy_or_null(entry);
	if (strcmp(r->command, "vendor.remove") == 0) {
		json_object_array_del_idx(d.arr, (size_t)at, 1);
		after = NULL;
	} else {
		if (tier != NULL)
			json_object_object_add(entry, "tier", json_object_new_string(tier));
		else
			json_object_object_add(entry, "categories", cats);
		after = copy_or_null(entry);
	}
	at = vdoc_commit(r, &d, id, before, after);
	vdoc_free(&d);
	return at;
}

int cmq_admin_pem_fingerprint(const char *pem, size_t len, char *out, size_t outlen)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int rc = CMQ_ERR_PARSE;

	if (x != NULL && X509_digest(x, EVP_sha256(), md, &mdlen) == 1 && mdlen == 32) {
		cmq_fingerprint_format(md, out, outlen);
		rc = CMQ_OK;
	}
	X509_free(x);
	BIO_free(bio);
	return rc;
}

static int vendor_add(struct req *r)
{
	bool bad = false;
	const char *id = id_field(r, "vendor", &bad);
	const char *name = bad ? NULL : field(r, "name", true, NAME_MAX_LEN, &bad);
	const char *prefix = bad ? NULL : field(r, "device_id_prefix", true, CMQ_PREFIX_MAX, &bad);
	const char *tier = bad ? NULL : field(r, "tier", false, 16, &bad);
	const char *fp_in = bad ? NULL : field(r, "ca_sha256", false, 128, &bad);
	const char *pem = bad ? NULL : field(r, "ca_pem", false, PEM_MAX, &bad);
	const char *contact = bad ? NULL : field(r, "contact", false, FIELD_MAX, &bad);
	const char *notes = bad ? NULL : field(r, "notes", false, REASON_MAX, &bad);
	struct json_object *cats, *v, *fps;
	char fp[100];
	uint8_t raw[32];
	struct vdoc d;

	if (bad)
		return -1;
	if ((fp_in == NULL) == (pem == NULL))
		return fail(r, "bad_request",
		            "give exactly one of \"ca_sha256\" (the vendor CA's fingerprint) and "
		            "\"ca_pem\" (its certificate)");
	if (pem != NULL) {
		if (cmq_admin_pem_fingerprint(pem, strlen(pem), fp, sizeof(fp)) != CMQ_OK)
			return fail(
			    r, "bad_request",
			    "field \"ca_pem\": not a PEM certificate (expected \"-----BEGIN "
			    "CERTIFICATE-----\")");
	} else {
		if (!cmq_fingerprint_parse(fp_in, raw))
			return fail(
			    r, "bad_request",
			    "field \"ca_sha256\": \"%s\" is not a SHA-256 fingerprint (64 hex "
			    "digits, optionally in ':'-separated pairs)",
			    fp_in);
		cmq_fingerprint_format(raw, fp, sizeof(fp));
	}
	if (tier == NULL)
		tier = "restricted"; /* a new vendor earns trust: it starts restricted */
	if (!tier_ok(r, tier))
		return -1;
	cats = string_array(r, "categories", CMQ_MAX_CATEGORIES, &bad);
	if (bad || cats == NULL)
		return -1;
	if (vdoc_read(r, &d) != 0) {
		json_object_put(cats);
		return -1;
	}
	if (vdoc_find(&d, id) >= 0) {
		json_object_put(cats);
		vdoc_free(&d);
		return fail(r, "exists", "vendor \"%s\" is already in %s", id, r->files->vendors);
	}
	v = json_object_new_object();
	fps = json_object_new_array();
	if (v == NULL || fps == NULL) {
		json_object_put(v);
		json_object_put(fps);
		json_object_put(cats);
		vdoc_free(&d);
		r->nomem = true;
		return -1;
	}
	json_object_array_add(fps, json_object_new_string(fp));
	json_object_object_add(v, "id", json_object_new_string(id));
	json_object_object_add(v, "name", json_object_new_string(name));
	json_object_object_add(v, "tier", json_object_new_string(tier));
	json_object_object_add(v, "device_id_prefix", json_object_new_string(prefix));
	json_object_object_add(v, "ca_sha256", fps);
	json_object_object_add(v, "categories", cats);
	json_object_object_add(v, "revoked_serials", json_object_new_array());
	if (contact != NULL)
		json_object_object_add(v, "contact", json_object_new_string(contact));
	if (notes != NULL)
		json_object_object_add(v, "notes", json_object_new_string(notes));
	json_object_array_add(d.arr, v);
	{
		int rc = vdoc_commit(r, &d, id, NULL, copy_or_null(v));

		vdoc_free(&d);
		return rc;
	}
}

/* ---- devices (revocation by certificate serial) ---- */

static int device_list(struct req *r)
{
	struct json_object *res = json_object_new_object(), *arr = json_object_new_array();

	for (size_t i = 0; arr != NULL && i < r->current->n_vendors; i++) {
		const struct cmq_vendor *v = &r->current->vendors[i];

		for (size_t k = 0; k < v->n_revoked; k++) {
			struct json_object *o = json_object_new_object();

			if (o == NULL)
				continue;
			json_object_object_add(o, "vendor", json_object_new_string(v->id));
			json_object_object_add(o, "serial", json_object_new_string(v->revoked[k]));
			json_object_object_add(o, "state", json_object_new_string("revoked"));
			json_object_array_add(arr, o);
		}
	}
	if (res == NULL || arr == NULL) {
		json_object_put(res);
		json_object_put(arr);
		r->nomem = true;
		return -1;
	}
	json_object_object_add(res, "revoked", arr);
	return succeed(r, res);
}

static int device_change(struct req *r)
{
	bool bad = false, revoke = strcmp(r->command, "device.revoke") == 0;
	const char *id = id_field(r, "vendor", &bad);
	const char *serial_in = bad ? NULL : field(r, "serial", true, 2 * CMQ_SERIAL_HEX_MAX, &bad);
	char serial[CMQ_SERIAL_HEX_MAX + 1], target[CMQ_ID_FIELD_MAX + CMQ_SERIAL_HEX_MAX + 8];
	struct json_object *entry, *list, *before, *after;
	size_t found = (size_t)-1;
	struct vdoc d;
	int at;

	if (bad)
		return -1;
	if (!cmq_serial_normalise(serial_in, serial))
		return fail(
		    r, "bad_request",
		    "field \"serial\": \"%s\" is not a certificate serial (hex, as `openssl "
		    "x509 -serial` prints it)",
		    serial_in);
	if (vdoc_read(r, &d) != 0)
		return -1;
	at = vdoc_find(&d, id);
	if (at < 0) {
		vdoc_free(&d);
		return fail(r, "not_found", "no vendor \"%s\" in %s", id, r->files->vendors);
	}
	entry = json_object_array_get_idx(d.arr, (size_t)at);
	if (!json_object_object_get_ex(entry, "revoked_serials", &list) ||
	    !json_object_is_type(list, json_type_array)) {
		list = json_object_new_array();
		json_object_object_add(entry, "revoked_serials", list);
	}
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		char norm[CMQ_SERIAL_HEX_MAX + 1];
		const char *s = json_object_get_string(json_object_array_get_idx(list, i));

		if (s != NULL && cmq_serial_normalise(s, norm) && strcmp(norm, serial) == 0)
			found = i;
	}
	if (revoke && found != (size_t)-1) {
		vdoc_free(&d);
		return fail(r, "exists", "serial %s of vendor \"%s\" is already revoked", serial,
		            id);
	}
	if (!revoke && found == (size_t)-1) {
		vdoc_free(&d);
		return fail(r, "not_found", "serial %s of vendor \"%s\" is not revoked", serial,
		            id);
	}
	before = copy_or_null(entry);
	if (revoke)
		json_object_array_add(list, json_object_new_string(serial));
	else
		json_object_array_del_idx(list, found, 1);
	after = copy_or_null(entry);
	snprintf(target, sizeof(target), "%s/%s", id, serial);
	at = vdoc_commit(r, &d, target, before, after);
	vdoc_free(&d);
	return at;
}

/* ---- consent ---- */

static const char empty_consent[] = "{\"version\": 1, \"residents\": []}";

static void iso_time(int64_t t, char *buf, size_t n)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, n, "1970-01-01T00:00:00Z");
}

static struct json_object *resident_find(struct json_object *arr, const char *id, size_t *at)
{
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *e = json_object_array_get_idx(arr, i), *v;

		if (json_object_object_get_ex(e, "id", &v) &&
		    json_object_is_type(v, json_type_string) &&
		    strcmp(json_object_get_string(v), id) == 0) {
			*at = i;
			return e;
		}
	}
	return NULL;
}

static int consent_change(struct req *r)
{
	bool bad = false, grant = strcmp(r->command, "consent.grant") == 0;
	const char *resident = resident_field(r, &bad);
	const char *category = bad ? NULL : id_field(r, "category", &bad);
	char when[32], target[2 * CMQ_ID_FIELD_MAX + 4];
	struct json_object *root = NULL, *arr, *entry, *cats, *before, *after, *res;
	struct cmq_diag diag;
	struct stat st;
	char *old = NULL, *text = NULL;
	size_t old_len = 0, len, at = 0, k;
	bool present = false;
	int rc = -1, parse_rc;

	if (bad)
		return -1;
	if (r->files->consent == NULL)
		return fail(r, "bad_request", "no consent file is configured (plugin_opt_consent)");
	if (!cmq_subject_valid(resident, strlen(resident)))
		return fail(r, "bad_request", "field \"resident\": \"%s\" is not a resident id",
		            resident);
	for (k = 0; k < r->current->n_categories; k++) {
		if (strcmp(r->current->categories[k].id, category) == 0)
			break;
	}
	if (k == r->current->n_categories)
		return fail(r, "not_found", "field \"category\": no category \"%s\" in the policy",
		            category);
	if (!r->current->categories[k].resident_linked)
		return fail(
		    r, "bad_request",
		    "field \"category\": \"%s\" is not resident-linked, so consent does not "
		    "apply to it",
		    category);
	snprintf(target, sizeof(target), "%s/%s", resident, category);
	/* No consent file yet: nobody has opted in, and this change creates it. */
	if (stat(r->files->consent, &st) != 0 && errno == ENOENT) {
		old = NULL;
	} else {
		old = read_doc(r, r->files->consent, CMQ_CONSENT_MAX_FILE, &old_len);
		if (old == NULL)
			return -1;
	}
	cmq_diag_init(&diag);
	if (old == NULL)
		parse_rc = cmq_json_parse(empty_consent, sizeof(empty_consent) - 1,
		                          r->files->consent, &diag, &root);
	else
		parse_rc = cmq_json_parse(old, old_len, r->files->consent, &diag, &root);
	if (parse_rc == CMQ_ERR_NOMEM) {
		r->nomem = true;
		goto out;
	}
	if (root == NULL || !json_object_object_get_ex(root, "residents", &arr) ||
	    !json_object_is_type(arr, json_type_array)) {
		fail(r, "invalid", "%s: %s", r->files->consent,
		     diag.n > 0 ? diag.entries[0].text : "$.residents is not an array");
		goto out;
	}
	entry = resident_find(arr, resident, &at);
	before = copy_or_null(entry);
	if (entry == NULL) {
		if (!grant) {
			json_object_put(before);
			rc = fail(r, "not_found",
			          "resident \"%s\" is not in %s: nothing to withdraw", resident,
			          r->files->consent);
			goto out;
		}
		entry = json_object_new_object();
		json_object_object_add(entry, "id", json_object_new_string(resident));
		json_object_object_add(entry, "categories", json_object_new_array());
		json_object_array_add(arr, entry);
	}
	if (!json_object_object_get_ex(entry, "categories", &cats) ||
	    !json_object_is_type(cats, json_type_array)) {
		cats = json_object_new_array();
		json_object_object_add(entry, "categories", cats);
	}
	for (size_t i = 0; i < json_object_array_length(cats); i++) {
		const char *c = json_object_get_string(json_object_array_get_idx(cats, i));

		if (c != NULL && strcmp(c, category) == 0) {
			present = true;
			at = i;
		}
	}
	if (grant == present) {
		/* Already so: nothing to save or audit. */
		json_object_put(before);
		res = json_object_new_object();
		if (res != NULL) {
			json_object_object_add(res, "target", json_object_new_string(target));
			json_object_object_add(res, "resident", json_object_new_string(resident));
			json_object_object_add(res, "category", json_object_new_string(category));
			json_object_object_add(res, "changed", json_object_new_boolean(0));
		}
		rc = succeed(r, res);
		goto out;
	}
	if (grant)
		json_object_array_add(cats, json_object_new_string(category));
	else
		json_object_array_del_idx(cats, at, 1);
	iso_time(r->now, when, sizeof(when));
	json_object_object_add(entry, "updated", json_object_new_string(when));
	after = copy_or_null(entry);
	if (render_text(r, root, r->files->consent, &text, &len) != 0) {
		json_object_put(before);
		json_object_put(after);
		goto out;
	}
	if (save_and_audit(r, r->files->consent, text, len, old, old_len,
	                   file_mode(r->files->consent, 0640), target, before, after) == 0) {
		r->out->consent_changed = true;
		res = json_object_new_object();
		if (res != NULL) {
			json_object_object_add(res, "target", json_object_new_string(target));
			json_object_object_add(res, "resident", json_object_new_string(resident));
			json_object_object_add(res, "category", json_object_new_string(category));
			json_object_object_add(res, "changed", json_object_new_boolean(1));
			json_object_object_add(res, "after", json_object_get(after));
		}
		rc = succeed(r, res);
	}
	json_object_put(before);
	json_object_put(after);
out:
	cmq_diag_cleanup(&diag);
	json_object_put(root);
	cmq_free(old);
	cmq_free(text);
	return rc;
}

static int consent_list(struct req *r)
{
	bool bad = false;
	const char *resident = resident_field(r, &bad);
	struct json_object *root = NULL, *arr, *entry, *res, *cats = NULL;
	struct cmq_diag diag;
	size_t at;
	int rc;

	if (bad)
		return -1;
	if (r->files->consent == NULL)
		return fail(r, "bad_request", "no consent file is configured (plugin_opt_consent)");
	cmq_diag_init(&diag);
	rc = cmq_json_load_file(r->files->consent, r->files->consent, CMQ_CONSENT_MAX_FILE, &diag,
	                        &root, NULL);
	if (rc == CMQ_ERR_NOMEM) {
		cmq_diag_cleanup(&diag);
		r->nomem = true;
		return -1;
	}
	if (root == NULL || !json_object_object_get_ex(root, "residents", &arr) ||
	    !json_object_is_type(arr, json_type_array)) {
		rc = fail(r, "invalid", "%s",
		          diag.n > 0 ? diag.entries[0].text : "$.residents is not an array");
		cmq_diag_cleanup(&diag);
		json_object_put(root);
		return rc;
	}
	cmq_diag_cleanup(&diag);
	entry = resident_find(arr, resident, &at);
	res = json_object_new_object();
	if (res != NULL) {
		json_object_object_add(res, "resident", json_object_new_string(resident));
		if (entry != NULL && json_object_object_get_ex(entry, "categories", &cats))
			json_object_object_add(res, "categories", copy_or_null(cats));
		else
			json_object_object_add(res, "categories", json_object_new_array());
		json_object_object_add(res, "listed", json_object_new_boolean(entry != NULL));
	}
	json_object_put(root);
	return succeed(r, res);
}

/* ---- explain ---- */

static int explain(struct req *r)
{
	static const char *const access_names[] = {"read", "publish", "subscribe"};
	static const enum cmq_access accesses[] = {CMQ_ACCESS_READ, CMQ_ACCESS_WRITE,
	                                           CMQ_ACCESS_SUBSCRIBE};
	bool bad = false;
	const char *user = field(r, "username", true, CMQ_ID_MAX, &bad);
	const char *cid = bad ? NULL : field(r, "client_id", false, CMQ_ID_MAX, &bad);
	const char *action = bad ? NULL : field(r, "action", true, 16, &bad);
	const char *topic = bad ? NULL : field(r, "topic", true, 65535, &bad);
	struct cmq_acl_request q;
	struct cmq_acl_result res;
	struct json_object *o, *who;
	enum cmq_decision dec;
	size_t a;

	if (bad)
		return -1;
	for (a = 0; a < 3; a++) {
		if (strcmp(action, access_names[a]) == 0)
			break;
	}
	if (a == 3)
		return fail(r, "bad_request",
		            "field \"action\": \"%s\" is not one of publish, subscribe, read",
		            action);
	memset(&q, 0, sizeof(q));
	q.username = user;
	q.client_id = cid ? cid : user;
	q.access = accesses[a];
	q.topic = topic;
	memset(&res, 0, sizeof(res));
	dec = cmq_acl_check(r->current, &q, &res);
	o = json_object_new_object();
	who = json_object_new_object();
	if (o == NULL || who == NULL) {
		json_object_put(o);
		json_object_put(who);
		r->nomem = true;
		return -1;
	}
	json_object_object_add(o, "decision",
	                       json_object_new_string(dec == CMQ_ALLOW ? "allow" : "deny"));
	json_object_object_add(o, "reason", json_object_new_string(cmq_reason_name(res.reason)));
	json_object_object_add(o, "why", json_object_new_string(cmq_reason_text(res.reason)));
	json_object_object_add(o, "rule", res.rule ? json_object_new_string(res.rule->id) : NULL);
	json_object_object_add(o, "policy", json_object_new_string(r->current->stamp));
	json_object_object_add(
	    who, "kind",
	    json_object_new_string(res.who.kind == CMQ_PRINCIPAL_DEVICE     ? "device"
	                           : res.who.kind == CMQ_PRINCIPAL_OPERATOR ? "operator"
	                                                                    : "unknown"));
	if (res.who.vendor != NULL) {
		json_object_object_add(who, "vendor", json_object_new_string(res.who.vendor->id));
		json_object_object_add(who, "tier",
		                       json_object_new_string(cmq_tier_name(res.who.vendor->tier)));
	}
	if (res.who.role != NULL)
		json_object_object_add(who, "role", json_object_new_string(res.who.role->id));
	json_object_object_add(o, "principal", who);
	return succeed(r, o);
}

static int register_doc(struct req *r)
{
	struct json_object *reg = NULL;
	int rc = cmq_register_build(r->current, r->now, &reg);

	if (rc == CMQ_ERR_NOMEM) {
		r->nomem = true;
		return -1;
	}
	if (rc != CMQ_OK)
		return fail(r, "internal", "the register could not be built: %s", cmq_strerror(rc));
	return succeed(r, reg);
}

int cmq_admin_execute(const struct cmq_admin_files *files, const struct cmq_policy *current,
                      struct cmq_audit *audit, const char *actor, struct json_object *request,
                      int64_t now, struct cmq_admin_outcome *out)
{
	static const struct {
		const char *name;
		int (*fn)(struct req *);
	} table[] = {
	    {"vendor.list", vendor_list},
	    {"vendor.show", vendor_show},
	    {"vendor.add", vendor_add},
	    {"vendor.set_tier", vendor_change},
	    {"vendor.remove", vendor_change},
	    {"vendor.set_categories", vendor_change},
	    {"device.list", device_list},
	    {"device.revoke", device_change},
	    {"device.reinstate", device_change},
	    {"consent.grant", consent_change},
	    {"consent.withdraw", consent_change},
	    {"consent.list", consent_list},
	    {"explain", explain},
	    {"register", register_doc},
	};
	struct req r;
	struct json_object *cmd;
	size_t i;

	memset(out, 0, sizeof(*out));
	memset(&r, 0, sizeof(r));
	r.files = files;
	r.current = current;
	r.audit = audit;
	r.actor = actor ? actor : "unknown";
	r.in = request;
	r.now = now;
	r.out = out;
	r.warnings = json_object_new_array();
	if (r.warnings == NULL)
		return CMQ_ERR_NOMEM;
	if (request == NULL || !json_object_is_type(request, json_type_object) ||
	    !json_object_object_get_ex(request, "command", &cmd) ||
	    !json_object_is_type(cmd, json_type_string)) {
		fail(&r, "bad_request",
		     "a request is a JSON object with a string field \"command\" (one of "
		     "vendor.list, "
		     "vendor.add, vendor.set_tier, consent.grant, explain, ...)");
	} else {
		r.command = json_object_get_string(cmd);
		for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
			if (strcmp(table[i].name, r.command) == 0)
				break;
		}
		if (i == sizeof(table) / sizeof(table[0]))
			fail(&r, "bad_request", "unknown command \"%.64s\"", r.command);
		else
			table[i].fn(&r);
	}
	json_object_put(r.warnings);
	if (r.nomem || out->response == NULL) {
		/* A change already saved stays handed over: memory must follow the disk. */
		json_object_put(out->response);
		out->response = NULL;
		if (!out->changed) {
			cmq_policy_free(out->policy);
			out->policy = NULL;
		}
		return CMQ_ERR_NOMEM;
	}
	return CMQ_OK;
}
