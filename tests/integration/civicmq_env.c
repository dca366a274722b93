/*
 * civicmq_env.c - see civicmq_env.h. Config files are produced with json-c from the
 * example files in config/, so the tests exercise the very policy the README documents.
 */
#include "civicmq_env.h"

#include "error.h"
#include "passwd.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const test_operators[][2] = {
    {"gateway", "gateway"},
    {"dashboard", "dashboard"},
    {"traffic-centre", "traffic-control"},
    {"field-crew", "maintenance"},
    {"lez-office", "enforcement"},
    {"district-north", "bridge"},
};

static struct json_object *manifest(void)
{
	static struct json_object *m;
	const char *path;

	if (m != NULL)
		return m;
	path = cmq_h_pki("manifest.json");
	if (path == NULL)
		return NULL;
	m = json_object_from_file(path);
	if (m == NULL)
		fprintf(stderr, "civicmq_env: cannot parse %s\n", path);
	return m;
}

/* The manifest entry (object) whose cn or name equals name, in devices/operators/bad. */
static struct json_object *entry(const char *name)
{
	static const char *const lists[] = {"devices", "operators", "bad"};
	struct json_object *m = manifest(), *arr, *e, *v;

	if (m == NULL)
		return NULL;
	/* "bad/x" selects the bad list by name. */
	if (strncmp(name, "bad/", 4) == 0)
		name += 4;
	for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
		if (!json_object_object_get_ex(m, lists[l], &arr))
			continue;
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			e = json_object_array_get_idx(arr, i);
			if ((json_object_object_get_ex(e, "name", &v) &&
			     strcmp(json_object_get_string(v), name) == 0) ||
			    (json_object_object_get_ex(e, "cn", &v) &&
			     strcmp(json_object_get_string(v), name) == 0))
				return e;
		}
	}
	return NULL;
}

static const char *field(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

const char *cmq_env_serial(const char *name)
{
	return field(entry(name), "serial");
}

static const char *ca_fingerprint(const char *ca)
{
	struct json_object *m = manifest(), *cas, *c;

	if (m == NULL || !json_object_object_get_ex(m, "cas", &cas) ||
	    !json_object_object_get_ex(cas, ca, &c))
		return NULL;
	return field(c, "sha256");
}

static int write_atomic(const char *path, const char *text)
{
	char tmp[CMQ_H_PATH_MAX + 64];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL)
		return -1;
	if (fputs(text, f) < 0 || fclose(f) != 0)
		return -1;
	return rename(tmp, path);
}

static int write_json(const char *path, struct json_object *o)
{
	return write_atomic(path, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
}

static struct json_object *load_example(const char *name)
{
	char path[CMQ_H_PATH_MAX + 64];
	const char *src = getenv("CMQ_SRC");

	snprintf(path, sizeof(path), "%s/config/%s", src ? src : ".", name);
	return json_object_from_file(path);
}

static bool listed(const char *const *list, const char *s)
{
	for (int i = 0; i < CMQ_ENV_MAX_OVERRIDES && list[i] != NULL; i++) {
		if (strcmp(list[i], s) == 0)
			return true;
	}
	return false;
}

static int write_vendors(struct cmq_env *e, const struct cmq_env_overrides *o)
{
	struct json_object *root = load_example("vendors.json"), *arr, *v, *tier, *fps, *rev;
	int rc = -1;

	if (root == NULL || !json_object_object_get_ex(root, "vendors", &arr))
		goto out;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		const char *id, *fp;

		v = json_object_array_get_idx(arr, i);
		id = field(v, "id");
		fp = ca_fingerprint(id);
		if (fp == NULL)
			goto out;
		fps = json_object_new_array();
		json_object_array_add(fps, json_object_new_string(fp));
		json_object_object_add(v, "ca_sha256", fps);
		for (int k = 0; o && k < CMQ_ENV_MAX_OVERRIDES && o->tier_vendor[k]; k++) {
			if (strcmp(o->tier_vendor[k], id) == 0) {
				tier = json_object_new_string(o->tier_value[k]);
				json_object_object_add(v, "tier", tier);
			}
		}
		rev = json_object_new_array();
		if (strcmp(id, "civitas") == 0)
			json_object_array_add(
			    rev, json_object_new_string(cmq_env_serial("civitas-revoked-001")));
		for (int k = 0; o && k < CMQ_ENV_MAX_OVERRIDES && o->revoke_cn[k]; k++) {
			struct json_object *en = entry(o->revoke_cn[k]);

			if (en != NULL && field(en, "ca") && strcmp(field(en, "ca"), id) == 0)
				json_object_array_add(rev,
				                      json_object_new_string(field(en, "serial")));
		}
		json_object_object_add(v, "revoked_serials", rev);
	}
	rc = write_json(e->vendors, root);
out:
	json_object_put(root);
	return rc;
}

static int write_operators(struct cmq_env *e, const struct cmq_env_overrides *o)
{
	struct json_object *root = json_object_new_object(), *arr = json_object_new_array(), *fps;
	const char *opfp = ca_fingerprint("operator");
	int rc;

	if (opfp == NULL) {
		json_object_put(root);
		json_object_put(arr);
		return -1;
	}
	fps = json_object_new_array();
	json_object_array_add(fps, json_object_new_string(opfp));
	json_object_object_add(root, "operator_ca_sha256", fps);
	for (size_t i = 0; i < sizeof(test_operators) / sizeof(test_operators[0]); i++) {
		/* One hash per operator and process: rewriting the file must not change an
		 * operator's credentials, or every reload would disconnect every operator. */
		static char hashes[sizeof(test_operators) / sizeof(test_operators[0])]
		                  [CMQ_PASSWD_STR_MAX];
		struct json_object *op;
		struct cmq_pbkdf2 h;
		char pw[64];
		const char *hash = hashes[i];

		if (o && listed(o->drop_operator, test_operators[i][0]))
			continue;
		snprintf(pw, sizeof(pw), "%s-secret", test_operators[i][0]);
		if (hashes[i][0] == '\0' &&
		    (cmq_passwd_hash(pw, strlen(pw), CMQ_PBKDF2_DEFAULT_ITERATIONS, &h) != CMQ_OK ||
		     cmq_passwd_format(&h, hashes[i], sizeof(hashes[i])) != CMQ_OK)) {
			json_object_put(root);
			json_object_put(arr);
			return -1;
		}
		op = json_object_new_object();
		json_object_object_add(op, "username",
		                       json_object_new_string(test_operators[i][0]));
		json_object_object_add(op, "role", json_object_new_string(test_operators[i][1]));
		json_object_object_add(op, "password_hash", json_object_new_string(hash));
		json_object_object_add(op, "certificate", json_object_new_boolean(1));
		json_object_array_add(arr, op);
	}
	if (!(o && listed(o->drop_operator, "admin"))) {
		struct json_object *op = json_object_new_object();

		json_object_object_add(op, "username", json_object_new_string("admin"));
		json_object_object_add(op, "role", json_object_new_string("admin"));
		json_object_object_add(op, "certificate", json_object_new_boolean(1));
		json_object_array_add(arr, op);
	}
	json_object_object_add(root, "operators", arr);
	rc = write_json(e->operators, root);
	json_object_put(root);
	return rc;
}

int cmq_env_write_config(struct cmq_env *e, const struct cmq_env_overrides *o)
{
	struct json_object *pol;
	int rc;

	if (o != NULL && o->policy_text != NULL) {
		rc = write_atomic(e->policy, o->policy_text);
	} else {
		pol = load_example("policy.json");
		rc = pol ? write_json(e->policy, pol) : -1;
		json_object_put(pol);
	}
	if (rc != 0 || write_vendors(e, o) != 0 || write_operators(e, o) != 0) {
		fprintf(stderr, "civicmq_env: cannot write the config in %s\n", e->dir);
		return -1;
	}
	return 0;
}

int cmq_env_init(struct cmq_env *e, const struct cmq_env_overrides *o)
{
	const char *tmp = getenv("TMPDIR");
	const char *bundle;

	memset(e, 0, sizeof(*e));
	if (cmq_h_pki_dir() == NULL)
		return -1;
	snprintf(e->dir, sizeof(e->dir), "%s/cmq-env-XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(e->dir) == NULL)
		return -1;
	snprintf(e->policy, sizeof(e->policy), "%s/policy.json", e->dir);
	snprintf(e->vendors, sizeof(e->vendors), "%s/vendors.json", e->dir);
	snprintf(e->operators, sizeof(e->operators), "%s/operators.json", e->dir);
	bundle = cmq_h_pki("ca-bundle.pem");
	snprintf(e->cafile, sizeof(e->cafile), "%s", bundle ? bundle : "");
	return cmq_env_write_config(e, o);
}

int cmq_env_start(struct cmq_env *e, const char *extra_conf)
{
	char conf[8192];

	snprintf(conf, sizeof(conf),
	         "per_listener_settings false\n"
	         "allow_anonymous false\n"
	         "log_dest file @DIR@/mosquitto.log\n"
	         "log_type all\n"
	         "plugin @PLUGIN@\n"
	         "plugin_opt_policy %s\n"
	         "plugin_opt_vendors %s\n"
	         "plugin_opt_operators %s\n"
	         "plugin_opt_ca_file @PKI@/ca-bundle-test.pem\n"
	         "plugin_opt_deny_log_rate 10000\n"
	         "\n"
	         "listener @PORT0@ 127.0.0.1\n"
	         "cafile @PKI@/ca-bundle-test.pem\n"
	         "certfile @PKI@/server/server.pem\n"
	         "keyfile @PKI@/server/server.key\n"
	         "require_certificate true\n"
	         "\n"
	         "listener @PORT1@ 127.0.0.1\n"
	         "certfile @PKI@/server/server.pem\n"
	         "keyfile @PKI@/server/server.key\n"
	         "%s",
	         e->policy, e->vendors, e->operators, extra_conf ? extra_conf : "");
	return cmq_h_broker_start(&e->broker, conf);
}

int cmq_env_reload(struct cmq_env *e)
{
	size_t mark = cmq_h_log_mark(&e->broker);
	int i;

	/*
	 * Mosquitto 2.0.11 clears its reload flag only after the whole reload, so a SIGHUP that
	 * lands while the previous reload is finishing is lost. Signal again every second
	 * until the plugin reports an outcome (bounded: 10 s in 10 ms steps).
	 */
	for (i = 0; i < 1000; i++) {
		if (i % 100 == 0 && cmq_h_broker_reload(&e->broker) != 0)
			return -1;
		if (cmq_h_log_contains(&e->broker, mark, "civicmq: reload failed"))
			return 0;
		if (cmq_h_log_contains(&e->broker, mark, "civicmq: reload: policy ") &&
		    cmq_h_log_contains(&e->broker, mark, " loaded in "))
			return 1;
		usleep(10000);
	}
	return -1;
}

void cmq_env_stop(struct cmq_env *e)
{
	char cmd[CMQ_H_PATH_MAX + 32];

	if (e->broker.pid != 0)
		cmq_h_broker_stop(&e->broker);
	if (e->dir[0] != '\0' && getenv("CMQ_KEEP_TMP") == NULL) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "civicmq_env: could not remove %s\n", e->dir);
	}
}

static int connect_cert(struct cmq_env *e, const char *name, const char *client_id, int protocol,
                        bool clean, struct cmq_h_client **out, int *reason)
{
	struct json_object *en = entry(name);
	struct cmq_h_client_opts o;
	char cert[CMQ_H_PATH_MAX + 128], key[CMQ_H_PATH_MAX + 128];
	const char *pki = cmq_h_pki_dir();

	*out = NULL;
	if (en == NULL || pki == NULL || field(en, "cert") == NULL || field(en, "key") == NULL) {
		fprintf(stderr, "civicmq_env: no certificate %s in the manifest\n", name);
		if (reason)
			*reason = -1;
		return CMQ_H_ERR;
	}
	snprintf(cert, sizeof(cert), "%s/%s", pki, field(en, "cert") ? field(en, "cert") : "");
	snprintf(key, sizeof(key), "%s/%s", pki, field(en, "key") ? field(en, "key") : "");
	memset(&o, 0, sizeof(o));
	o.id = client_id ? client_id : field(en, "cn");
	o.cafile = e->cafile;
	o.certfile = cert;
	o.keyfile = key;
	o.port = e->broker.port[0];
	o.protocol = protocol;
	o.clean = clean;
	return cmq_h_connect(&o, out, reason);
}

int cmq_env_connect_cert(struct cmq_env *e, const char *name, const char *client_id, int protocol,
                         struct cmq_h_client **out, int *reason)
{
	return connect_cert(e, name, client_id, protocol, true, out, reason);
}

int cmq_env_connect_cert_persistent(struct cmq_env *e, const char *name, struct cmq_h_client **out,
                                    int *reason)
{
	return connect_cert(e, name, NULL, 4, false, out, reason);
}

int cmq_env_connect_password(struct cmq_env *e, const char *username, const char *password,
                             const char *client_id, struct cmq_h_client **out, int *reason)
{
	struct cmq_h_client_opts o;

	memset(&o, 0, sizeof(o));
	o.id = client_id ? client_id : username;
	o.username = username;
	o.password = password;
	o.cafile = e->cafile;
	o.port = e->broker.port[1];
	o.clean = true;
	return cmq_h_connect(&o, out, reason);
}
