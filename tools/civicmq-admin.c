/*
 * civicmq-admin - administer the vendor trust list, device revocations and residents'
 * consent; explain a decision; verify the audit log; render the transparency register.
 *
 * Two ways to reach the policy, with the same requests and answers (core/admin.h):
 *   offline (default)  works on the files (--dir, default /etc/civicmq): each change is
 *                      validated as a whole policy, written atomically and audited; the
 *                      running broker and gateway notice the changed file within a second.
 *   online (--port N)  sends the request to a running broker's $CONTROL/civicmq/v1 API as
 *                      an admin-role operator over TLS and prints the broker's answer.
 *
 * Output is for people by default and the broker's JSON answer with --json. Exit codes:
 * 0 done, 1 refused (the request is invalid, names something unknown, would break the
 * policy; or the audit log is tampered with), 2 usage error, 3 could not save or audit
 * (nothing changed), 4 denied (not an admin), 5 broker unreachable or no answer in time.
 */
#include "acl.h"
#include "admin.h"
#include "alloc.h"
#include "atomic.h"
#include "audit.h"
#include "error.h"
#include "jsonutil.h"
#include "register.h"
#include "tool_mqtt.h"
#include "tool_opts.h"

#include <errno.h>
#include <json.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROG          "civicmq-admin"
#define MAX_ARGS      8
#define PASSWORD_MAX  512
#define LOOP_SLICE_MS 100
#define PATH_MAX_LEN  1024

enum exit_code {
	EXIT_DONE = 0,
	EXIT_REFUSED = 1,
	EXIT_USAGE = 2,
	EXIT_SAVE = 3,
	EXIT_DENIED = 4,
	EXIT_UNREACHABLE = 5,
};

struct opts {
	/* offline */
	const char *dir;
	const char *policy, *vendors, *operators, *ca_file, *consent, *audit_log;
	/* online */
	const char *host;
	long port;
	const char *cafile, *username, *password_file, *cert, *key, *client_id;
	long timeout;
	/* requests */
	const char *reason, *name, *prefix, *tier, *ca_pem, *ca_sha256, *categories, *contact,
	    *notes, *format, *out;
	int json;
	int help;
	/* positional words */
	const char *args[MAX_ARGS];
	int nargs;
};

#define OPT(f) offsetof(struct opts, f)
static const struct tool_opt table[] = {
    {"--dir", TOOL_OPT_STR, OPT(dir), 0, 0, "DIR",
     "offline: the configuration directory (default /etc/civicmq)"},
    {"--policy", TOOL_OPT_STR, OPT(policy), 0, 0, "FILE", "offline: policy.json"},
    {"--vendors", TOOL_OPT_STR, OPT(vendors), 0, 0, "FILE", "offline: vendors.json"},
    {"--operators", TOOL_OPT_STR, OPT(operators), 0, 0, "FILE", "offline: operators.json"},
    {"--ca-file", TOOL_OPT_STR, OPT(ca_file), 0, 0, "FILE",
     "offline: the CA bundle (default <dir>/ca-bundle.pem if present)"},
    {"--consent", TOOL_OPT_STR, OPT(consent), 0, 0, "FILE", "offline: consent.json"},
    {"--audit-log", TOOL_OPT_STR, OPT(audit_log), 0, 0, "FILE",
     "the audit log (default <dir>/audit.log)"},
    {"--host", TOOL_OPT_STR, OPT(host), 0, 0, "HOST", "online: broker (default localhost)"},
    {"--port", TOOL_OPT_LONG, OPT(port), 1, 65535, "N",
     "online: the broker's operator port (turns online mode on)"},
    {"--cafile", TOOL_OPT_STR, OPT(cafile), 0, 0, "FILE",
     "online: CA bundle to verify the broker with (required online)"},
    {"--username", TOOL_OPT_STR, OPT(username), 0, 0, "NAME", "online: admin account"},
    {"--password-file", TOOL_OPT_STR, OPT(password_file), 0, 0, "FILE",
     "online: file whose first line is the password"},
    {"--cert", TOOL_OPT_STR, OPT(cert), 0, 0, "FILE", "online: admin certificate"},
    {"--key", TOOL_OPT_STR, OPT(key), 0, 0, "FILE", "online: its private key"},
    {"--client-id", TOOL_OPT_STR, OPT(client_id), 0, 0, "ID",
     "online: client id (default <username>-admin-<pid>)"},
    {"--timeout", TOOL_OPT_LONG, OPT(timeout), 1, 3600, "S",
     "online: give up after S seconds (default 10)"},
    {"--reason", TOOL_OPT_STR, OPT(reason), 0, 0, "TEXT", "why (goes into the audit log)"},
    {"--name", TOOL_OPT_STR, OPT(name), 0, 0, "TEXT", "vendor add: the vendor's name"},
    {"--prefix", TOOL_OPT_STR, OPT(prefix), 0, 0, "P", "vendor add: device id prefix, e.g. acme-"},
    {"--tier", TOOL_OPT_STR, OPT(tier), 0, 0, "T",
     "vendor add: trusted|restricted|blocked (default restricted)"},
    {"--ca-pem", TOOL_OPT_STR, OPT(ca_pem), 0, 0, "FILE",
     "vendor add: the vendor CA certificate to pin"},
    {"--ca-sha256", TOOL_OPT_STR, OPT(ca_sha256), 0, 0, "FP",
     "vendor add: or its SHA-256 fingerprint"},
    {"--categories", TOOL_OPT_STR, OPT(categories), 0, 0, "A,B",
     "vendor add: permitted data categories"},
    {"--contact", TOOL_OPT_STR, OPT(contact), 0, 0, "TEXT", "vendor add: contact"},
    {"--notes", TOOL_OPT_STR, OPT(notes), 0, 0, "TEXT", "vendor add: notes"},
    {"--format", TOOL_OPT_STR, OPT(format), 0, 0, "F", "transparency: md|html|json (default md)"},
    {"--out", TOOL_OPT_STR, OPT(out), 0, 0, "FILE", "transparency: write here (atomically)"},
    {"--json", TOOL_OPT_FLAG, OPT(json), 0, 0, "", "print the JSON answer"},
    {"--help", TOOL_OPT_FLAG, OPT(help), 0, 0, "", "this text"},
};
#undef OPT
#define N_OPTS (sizeof(table) / sizeof(table[0]))

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: " PROG " [options] COMMAND ...\n"
	        "Commands:\n"
	        "  vendor list | show V | add V --name N --prefix P --categories A,B\n"
	        "         (--ca-pem FILE | --ca-sha256 FP) [--tier T] | trust V | restrict V\n"
	        "         | block V | remove V | categories V A,B\n"
	        "  device list | revoke V SERIAL | reinstate V SERIAL\n"
	        "  consent grant RESIDENT CATEGORY | withdraw RESIDENT CATEGORY | list RESIDENT\n"
	        "  explain USERNAME publish|subscribe|read TOPIC\n"
	        "  audit verify [FILE]\n"
	        "  transparency [--format md|html|json] [--out FILE]\n"
	        "Offline (default) it edits the files under --dir; with --port it asks a running\n"
	        "broker through $CONTROL/civicmq/v1 as an admin-role operator.\n"
	        "Options:\n");
	tool_opts_usage(f, table, N_OPTS, 16);
	fprintf(f, "Exit codes: 0 done, 1 refused (invalid, unknown, would break the policy, or\n"
	           "a tampered audit log), 2 usage error, 3 could not save or audit (nothing\n"
	           "changed), 4 denied (not an admin), 5 broker unreachable or silent.\n");
}

/* Separate positional words from options (which tool_opts parses). */
static int split_args(int argc, char **argv, struct opts *o, char **optv, int *optc)
{
	*optc = 0;
	optv[(*optc)++] = argv[0];
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strncmp(a, "--", 2) == 0) {
			const struct tool_opt *t = NULL;
			size_t len = strcspn(a, "=");

			optv[(*optc)++] = argv[i];
			for (size_t k = 0; k < N_OPTS; k++) {
				if (strlen(table[k].name) == len &&
				    strncmp(a, table[k].name, len) == 0)
					t = &table[k];
			}
			if (t != NULL && t->type != TOOL_OPT_FLAG && a[len] == '\0' && i + 1 < argc)
				optv[(*optc)++] = argv[++i];
		} else if (o->nargs < MAX_ARGS) {
			o->args[o->nargs++] = a;
		} else {
			fprintf(stderr, PROG ": too many words after the command (\"%s\")\n", a);
			return -1;
		}
	}
	return 0;
}

/* ---- building the request ---- */

static const char *arg(const struct opts *o, int i)
{
	return i < o->nargs ? o->args[i] : NULL;
}

static int need(const struct opts *o, int n, const char *shape)
{
	if (o->nargs != n) {
		fprintf(stderr, PROG ": expected: %s\n", shape);
		return -1;
	}
	return 0;
}

static void add_str(json_object *req, const char *key, const char *v)
{
	if (v != NULL)
		json_object_object_add(req, key, json_object_new_string(v));
}

/* "a,b" -> ["a","b"] (empty items refused). */
static json_object *csv_array(const char *csv)
{
	json_object *a = json_object_new_array();
	const char *p = csv;

	while (a != NULL && *p != '\0') {
		size_t n = strcspn(p, ",");

		if (n == 0) {
			json_object_put(a);
			return NULL;
		}
		json_object_array_add(a, json_object_new_string_len(p, (int)n));
		p += n;
		if (*p == ',')
			p++;
	}
	return a;
}

static char *read_text(const char *path, size_t max)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	if (f == NULL) {
		fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
		return NULL;
	}
	buf = malloc(max + 1);
	n = buf ? fread(buf, 1, max + 1, f) : 0;
	fclose(f);
	if (buf == NULL || n > max) {
		fprintf(stderr, PROG ": %s: larger than %zu bytes\n", path, max);
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/* The request for the command words, or NULL (usage error printed). */
static json_object *build_request(const struct opts *o)
{
	const char *w0 = arg(o, 0), *w1 = arg(o, 1);
	json_object *req = json_object_new_object();
	char cmd[64];

	if (req == NULL || w0 == NULL || w1 == NULL)
		goto usage;
	add_str(req, "reason", o->reason);
	if (strcmp(w0, "vendor") == 0) {
		if (strcmp(w1, "list") == 0) {
			if (need(o, 2, "vendor list") != 0)
				goto fail;
			add_str(req, "command", "vendor.list");
		} else if (strcmp(w1, "show") == 0) {
			if (need(o, 3, "vendor show VENDOR") != 0)
				goto fail;
			add_str(req, "command", "vendor.show");
			add_str(req, "vendor", arg(o, 2));
		} else if (strcmp(w1, "trust") == 0 || strcmp(w1, "restrict") == 0 ||
		           strcmp(w1, "block") == 0) {
			if (need(o, 3, "vendor trust|restrict|block VENDOR") != 0)
				goto fail;
			add_str(req, "command", "vendor.set_tier");
			add_str(req, "vendor", arg(o, 2));
			add_str(req, "tier",
			        strcmp(w1, "trust") == 0      ? "trusted"
			        : strcmp(w1, "restrict") == 0 ? "restricted"
			                                      : "blocked");
		} else if (strcmp(w1, "remove") == 0) {
			if (need(o, 3, "vendor remove VENDOR") != 0)
				goto fail;
			add_str(req, "command", "vendor.remove");
			add_str(req, "vendor", arg(o, 2));
		} else if (strcmp(w1, "categories") == 0) {
			json_object *cats;

			if (need(o, 4, "vendor categories VENDOR A,B") != 0)
				goto fail;
			cats = csv_array(arg(o, 3));
			if (cats == NULL) {
				fprintf(stderr,
				        PROG ": categories \"%s\": use ids separated by commas\n",
				        arg(o, 3));
				goto fail;
			}
			add_str(req, "command", "vendor.set_categories");
			add_str(req, "vendor", arg(o, 2));
			json_object_object_add(req, "categories", cats);
		} else if (strcmp(w1, "add") == 0) {
			json_object *cats;

			if (need(o, 3, "vendor add VENDOR --name ...") != 0)
				goto fail;
			if (o->categories == NULL || (cats = csv_array(o->categories)) == NULL) {
				fprintf(stderr, PROG ": vendor add needs --categories A,B\n");
				goto fail;
			}
			add_str(req, "command", "vendor.add");
			add_str(req, "vendor", arg(o, 2));
			add_str(req, "name", o->name);
			add_str(req, "device_id_prefix", o->prefix);
			add_str(req, "tier", o->tier);
			add_str(req, "ca_sha256", o->ca_sha256);
			add_str(req, "contact", o->contact);
			add_str(req, "notes", o->notes);
			json_object_object_add(req, "categories", cats);
			if (o->ca_pem != NULL) {
				char *pem = read_text(o->ca_pem, 64 * 1024);

				if (pem == NULL)
					goto fail;
				add_str(req, "ca_pem", pem);
				free(pem);
			}
		} else {
			goto usage;
		}
	} else if (strcmp(w0, "device") == 0) {
		if (strcmp(w1, "list") == 0) {
			if (need(o, 2, "device list") != 0)
				goto fail;
			add_str(req, "command", "device.list");
		} else if ((strcmp(w1, "revoke") == 0 || strcmp(w1, "reinstate") == 0)) {
			if (need(o, 4, "device revoke|reinstate VENDOR SERIAL") != 0)
				goto fail;
			snprintf(cmd, sizeof(cmd), "device.%s", w1);
			add_str(req, "command", cmd);
			add_str(req, "vendor", arg(o, 2));
			add_str(req, "serial", arg(o, 3));
		} else {
			goto usage;
		}
	} else if (strcmp(w0, "consent") == 0) {
		if ((strcmp(w1, "grant") == 0 || strcmp(w1, "withdraw") == 0)) {
			if (need(o, 4, "consent grant|withdraw RESIDENT CATEGORY") != 0)
				goto fail;
			snprintf(cmd, sizeof(cmd), "consent.%s", w1);
			add_str(req, "command", cmd);
			add_str(req, "resident", arg(o, 2));
			add_str(req, "category", arg(o, 3));
		} else if (strcmp(w1, "list") == 0) {
			if (need(o, 3, "consent list RESIDENT") != 0)
				goto fail;
			add_str(req, "command", "consent.list");
			add_str(req, "resident", arg(o, 2));
		} else {
			goto usage;
		}
	} else if (strcmp(w0, "explain") == 0) {
		if (need(o, 4, "explain USERNAME publish|subscribe|read TOPIC") != 0)
			goto fail;
		add_str(req, "command", "explain");
		add_str(req, "username", w1);
		add_str(req, "action", arg(o, 2));
		add_str(req, "topic", arg(o, 3));
	} else {
		goto usage;
	}
	if (!json_object_object_get_ex(req, "command", NULL))
		goto fail; /* need() printed the expected shape */
	return req;
usage:
	fprintf(stderr,
	        PROG ": \"%s%s%s\" is not a command; commands: vendor, device, consent, explain, "
	             "audit verify, transparency (--help shows them all)\n",
	        w0 ? w0 : "", w1 ? " " : "", w1 ? w1 : "");
fail:
	json_object_put(req);
	return NULL;
}

/* ---- offline ---- */

struct paths {
	char policy[PATH_MAX_LEN], vendors[PATH_MAX_LEN], operators[PATH_MAX_LEN],
	    ca_file[PATH_MAX_LEN], consent[PATH_MAX_LEN], audit[PATH_MAX_LEN];
	bool have_ca;
};

static void resolve(const struct opts *o, struct paths *p)
{
	const char *dir = o->dir ? o->dir : "/etc/civicmq";

#define PICK(field, opt, name)                                                                     \
	snprintf(p->field, sizeof(p->field), "%s%s%s", (opt) ? "" : dir, (opt) ? "" : "/",         \
	         (opt) ? (opt) : (name))
	PICK(policy, o->policy, "policy.json");
	PICK(vendors, o->vendors, "vendors.json");
	PICK(operators, o->operators, "operators.json");
	PICK(ca_file, o->ca_file, "ca-bundle.pem");
	PICK(consent, o->consent, "consent.json");
	PICK(audit, o->audit_log, "audit.log");
#undef PICK
	p->have_ca = o->ca_file != NULL || access(p->ca_file, R_OK) == 0;
}

static int load_policy(const struct paths *pa, struct cmq_policy **out)
{
	struct cmq_policy_files f = {pa->policy, pa->vendors, pa->operators,
	                             pa->have_ca ? pa->ca_file : NULL};
	struct cmq_diag diag;
	int rc;

	cmq_diag_init(&diag);
	rc = cmq_policy_load(&f, &diag, out);
	for (size_t i = 0; i < diag.n; i++) {
		if (rc != CMQ_OK || diag.entries[i].level == CMQ_DIAG_ERROR)
			fprintf(stderr, PROG ": %s: %s\n",
			        diag.entries[i].level == CMQ_DIAG_ERROR ? "error" : "warning",
			        diag.entries[i].text);
	}
	cmq_diag_cleanup(&diag);
	if (rc != CMQ_OK)
		fprintf(stderr, PROG ": the policy files do not load (above); nothing was done\n");
	return rc;
}

static void actor_name(char *buf, size_t n)
{
	struct passwd *pw = getpwuid(getuid());

	snprintf(buf, n, "cli:%s", pw && pw->pw_name ? pw->pw_name : "uid");
}

static int run_offline(const struct opts *o, json_object *req, json_object **answer)
{
	struct paths pa;
	struct cmq_policy *p = NULL;
	struct cmq_audit *audit = NULL;
	struct cmq_admin_files files;
	struct cmq_admin_outcome out;
	json_object *cmd;
	char actor[96], err[512];
	int rc;

	resolve(o, &pa);
	if (load_policy(&pa, &p) != CMQ_OK)
		return EXIT_SAVE;
	json_object_object_get_ex(req, "command", &cmd);
	err[0] = '\0';
	if (cmq_admin_is_change(json_object_get_string(cmd)) &&
	    cmq_audit_open(pa.audit, &audit, err, sizeof(err)) != CMQ_OK) {
		fprintf(stderr, PROG ": audit log: %s; nothing was changed\n", err);
		cmq_policy_free(p);
		return EXIT_SAVE;
	}
	if (err[0] != '\0')
		fprintf(stderr, PROG ": audit log: %s\n", err); /* a warning: a torn line cut off */
	files = (struct cmq_admin_files){pa.policy, pa.vendors, pa.operators,
	                                 pa.have_ca ? pa.ca_file : NULL, pa.consent};
	actor_name(actor, sizeof(actor));
	rc = cmq_admin_execute(&files, p, audit, actor, req, (int64_t)time(NULL), &out);
	cmq_policy_free(out.policy); /* offline: the broker loads the saved file itself */
	cmq_audit_close(audit);
	cmq_policy_free(p);
	if (rc != CMQ_OK) {
		fprintf(stderr, PROG ": out of memory%s\n",
		        out.changed ? " (after the change was saved and audited)" : "");
		return EXIT_SAVE;
	}
	*answer = out.response;
	return EXIT_DONE;
}

/* ---- online ---- */

struct online {
	struct tool_conn conn; /* first: the libmosquitto user data (tool_mqtt.h) */
	unsigned char corr[16];
	json_object *answer;
	int puback_rc; /* the request's PUBACK reason, -1 until it arrives */
};

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int rc,
                       const mosquitto_property *props)
{
	struct online *s = obj;

	(void)mosq;
	(void)mid;
	(void)props;
	s->puback_rc = rc;
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *m,
                       const mosquitto_property *props)
{
	struct online *s = obj;
	void *corr = NULL;
	uint16_t len = 0;

	(void)mosq;
	if (s->answer != NULL || mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA,
	                                                        &corr, &len, false) == NULL)
		return;
	if (len == sizeof(s->corr) && memcmp(corr, s->corr, len) == 0)
		s->answer = json_tokener_parse(m->payload ? (const char *)m->payload : "");
	free(corr);
}

static int run_online(const struct opts *o, json_object *req, json_object **answer)
{
	static const volatile sig_atomic_t never = 0;
	struct online s;
	struct mosquitto *mosq = NULL;
	mosquitto_property *props = NULL;
	char password[PASSWORD_MAX], id[256], rtopic[320];
	const char *host = o->host ? o->host : "localhost", *text;
	long long deadline;
	FILE *ur;
	int rc, status = EXIT_UNREACHABLE;

	memset(&s, 0, sizeof(s));
	s.puback_rc = -1;
	tool_conn_init(&s.conn);
	password[0] = '\0';
	if (o->cafile == NULL) {
		fprintf(stderr, PROG ": online mode needs --cafile (credentials travel only over "
		                     "TLS)\n");
		return EXIT_USAGE;
	}
	if ((o->username == NULL) == (o->cert == NULL) || (o->cert == NULL) != (o->key == NULL)) {
		fprintf(stderr, PROG ": online mode needs --username with --password-file, or "
		                     "--cert with --key\n");
		return EXIT_USAGE;
	}
	if (o->password_file != NULL &&
	    tool_read_password(PROG, o->password_file, password, sizeof(password)))
		return EXIT_USAGE;
	ur = fopen("/dev/urandom", "rb");
	if (ur == NULL || fread(s.corr, 1, sizeof(s.corr), ur) != sizeof(s.corr)) {
		fprintf(stderr, PROG ": cannot read /dev/urandom\n");
		if (ur)
			fclose(ur);
		return EXIT_SAVE;
	}
	fclose(ur);
	snprintf(id, sizeof(id), "%s", o->client_id ? o->client_id : "");
	if (o->client_id == NULL)
		snprintf(id, sizeof(id), "%s-admin-%ld", o->username ? o->username : "admin",
		         (long)getpid());
	mosq = tool_client_new(
	    PROG,
	    &(struct tool_client_opts){.client_id = id,
	                               .username = o->username,
	                               .password = o->password_file ? password : NULL,
	                               .cafile = o->cafile,
	                               .cert = o->cert,
	                               .key = o->key},
	    &s);
	if (mosq == NULL) {
		status = EXIT_USAGE;
		goto out;
	}
	mosquitto_message_v5_callback_set(mosq, on_message);
	mosquitto_publish_v5_callback_set(mosq, on_publish);
	deadline = tool_now_ms() + (o->timeout > 0 ? o->timeout : 10) * 1000;
	if (tool_client_connect(PROG, mosq, id, host, o->port) != 0)
		goto out;
	if (tool_await_connack(PROG, mosq, &s.conn, &never, id, host, o->port,
	                       (int)(deadline - tool_now_ms()), LOOP_SLICE_MS, NULL) != 0) {
		status = s.conn.connack > 0 ? EXIT_DENIED : EXIT_UNREACHABLE;
		goto out;
	}
	snprintf(rtopic, sizeof(rtopic), "%s/response/%s", CMQ_CONTROL_TOPIC, id);
	mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, rtopic);
	mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, s.corr, sizeof(s.corr));
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	rc = mosquitto_publish_v5(mosq, NULL, CMQ_CONTROL_TOPIC, (int)strlen(text), text, 1, false,
	                          props);
	mosquitto_property_free_all(&props);
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, PROG ": cannot send the request: %s\n", mosquitto_strerror(rc));
		goto out;
	}
	/* The plugin answers before the broker acknowledges; a refusal comes as the PUBACK. */
	while (s.answer == NULL && s.puback_rc < 0x80 && !s.conn.disconnected &&
	       tool_now_ms() < deadline)
		tool_pump(mosq, &s.conn, deadline - tool_now_ms(), LOOP_SLICE_MS);
	if (s.answer == NULL && s.puback_rc >= 0x80) {
		fprintf(stderr,
		        PROG ": the broker refused the request: %s (0x%02x); only the admin "
		             "role may use the control API\n",
		        mosquitto_reason_string(s.puback_rc), (unsigned)s.puback_rc);
		status = EXIT_DENIED;
		goto out;
	}
	if (s.answer == NULL) {
		fprintf(stderr,
		        PROG
		        ": no answer from %s:%ld within %ld s%s (is this account an admin, and "
		        "does the broker load civicmq?)\n",
		        host, o->port, o->timeout > 0 ? o->timeout : 10,
		        s.conn.disconnected ? " (the connection closed)" : "");
		goto out;
	}
	*answer = s.answer;
	s.answer = NULL;
	status = EXIT_DONE;
	mosquitto_disconnect_v5(mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
out:
	json_object_put(s.answer);
	mosquitto_destroy(mosq);
	tool_conn_cleanup(&s.conn);
	explicit_bzero(password, sizeof(password));
	return status;
}

/* ---- printing answers ---- */

static const char *sget(json_object *o, const char *key)
{
	json_object *v;

	if (o != NULL && json_object_object_get_ex(o, key, &v) && v != NULL)
		return json_object_get_string(v);
	return NULL;
}

static void print_vendor_line(json_object *v)
{
	json_object *cats = NULL;

	printf("%-12s %-10s %-12s ", sget(v, "id"), sget(v, "tier"), sget(v, "device_id_prefix"));
	json_object_object_get_ex(v, "categories", &cats);
	for (size_t i = 0; cats && i < json_object_array_length(cats); i++)
		printf("%s%s", i ? "," : "",
		       json_object_get_string(json_object_array_get_idx(cats, i)));
	printf("  %s\n", sget(v, "name") ? sget(v, "name") : "");
}

static void print_answer(const char *command, json_object *ans)
{
	json_object *res = NULL, *arr = NULL, *warn = NULL;

	json_object_object_get_ex(ans, "result", &res);
	if (strcmp(command, "vendor.list") == 0 &&
	    json_object_object_get_ex(res, "vendors", &arr)) {
		printf("%-12s %-10s %-12s %s\n", "VENDOR", "TIER", "PREFIX", "CATEGORIES  NAME");
		for (size_t i = 0; i < json_object_array_length(arr); i++)
			print_vendor_line(json_object_array_get_idx(arr, i));
		printf("(policy %s)\n", sget(res, "policy"));
	} else if (strcmp(command, "explain") == 0) {
		json_object *who = NULL;

		json_object_object_get_ex(res, "principal", &who);
		printf("%s: %s - %s\n", sget(res, "decision"), sget(res, "reason"),
		       sget(res, "why"));
		printf("  rule: %s\n", sget(res, "rule") ? sget(res, "rule") : "(none)");
		printf("  who:  %s", sget(who, "kind"));
		if (sget(who, "vendor"))
			printf(" of vendor %s (%s)", sget(who, "vendor"), sget(who, "tier"));
		if (sget(who, "role"))
			printf(", role %s", sget(who, "role"));
		printf("\n  policy %s\n", sget(res, "policy"));
	} else if (strcmp(command, "device.list") == 0) {
		json_object *conn = NULL;

		json_object_object_get_ex(res, "revoked", &arr);
		printf("revoked (by certificate serial):\n");
		for (size_t i = 0; arr && i < json_object_array_length(arr); i++)
			printf("  %-12s %s\n", sget(json_object_array_get_idx(arr, i), "vendor"),
			       sget(json_object_array_get_idx(arr, i), "serial"));
		if (json_object_object_get_ex(res, "connected", &conn)) {
			printf("connected now:\n");
			for (size_t i = 0; i < json_object_array_length(conn); i++) {
				json_object *e = json_object_array_get_idx(conn, i);

				printf("  %-24s %-12s serial %s\n", sget(e, "device"),
				       sget(e, "vendor"), sget(e, "serial"));
			}
		} else {
			printf("(connected devices: ask the running broker, with --port)\n");
		}
	} else if (strcmp(command, "consent.list") == 0) {
		json_object *cats = NULL;

		json_object_object_get_ex(res, "categories", &cats);
		printf("%s: %s\n", sget(res, "resident"),
		       cats && json_object_array_length(cats) > 0
		           ? json_object_to_json_string_ext(cats, JSON_C_TO_STRING_PLAIN)
		           : "no consent (opted in to nothing)");
	} else if (cmq_admin_is_change(command)) {
		printf("%s %s: done", command,
		       sget(res, "target") ? sget(res, "target") : sget(res, "resident"));
		if (json_object_object_get_ex(res, "changed", NULL) &&
		    !json_object_get_boolean(json_object_object_get(res, "changed")))
			printf(" (already so; nothing changed)");
		if (sget(res, "policy"))
			printf("; policy %s", sget(res, "policy"));
		printf("\n");
	} else {
		printf("%s\n", json_object_to_json_string_ext(
		                   res, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	}
	if (json_object_object_get_ex(ans, "warnings", &warn)) {
		for (size_t i = 0; i < json_object_array_length(warn); i++)
			fprintf(stderr, PROG ": warning: %s\n",
			        json_object_get_string(json_object_array_get_idx(warn, i)));
	}
}

static int exit_for(const char *code)
{
	if (strcmp(code, "denied") == 0)
		return EXIT_DENIED;
	if (strcmp(code, "save_failed") == 0 || strcmp(code, "audit_failed") == 0 ||
	    strcmp(code, "internal") == 0)
		return EXIT_SAVE;
	return EXIT_REFUSED;
}

/* ---- audit verify, transparency ---- */

static int audit_verify(const struct opts *o)
{
	struct paths pa;
	struct cmq_audit_report r;
	const char *path;

	resolve(o, &pa);
	path = arg(o, 2) ? arg(o, 2) : pa.audit;
	if (cmq_audit_verify(path, &r) != CMQ_OK && r.lines == 0 && r.bad_line == 0) {
		fprintf(stderr, PROG ": %s: %s\n", path, r.message);
		return EXIT_SAVE;
	}
	if (!r.ok) {
		printf("%s: TAMPERED: line %zu: %s\n", path, (size_t)r.bad_line, r.message);
		return EXIT_REFUSED;
	}
	printf("%s: %zu entries, hash chain intact; head %s\n", path, (size_t)r.lines, r.head);
	return EXIT_DONE;
}

static int transparency(const struct opts *o, json_object *reg)
{
	const char *fmt = o->format ? o->format : "md";
	char *text = NULL, err[512];
	int rc;

	if (strcmp(fmt, "md") == 0)
		rc = cmq_register_markdown(reg, &text);
	else if (strcmp(fmt, "html") == 0)
		rc = cmq_register_html(reg, &text);
	else if (strcmp(fmt, "json") == 0)
		rc = cmq_register_json(reg, &text);
	else {
		fprintf(stderr, PROG ": --format \"%s\": expected md, html or json\n", fmt);
		return EXIT_USAGE;
	}
	if (rc != CMQ_OK) {
		fprintf(stderr, PROG ": cannot render the register: %s\n", cmq_strerror(rc));
		return EXIT_SAVE;
	}
	if (o->out != NULL) {
		rc = cmq_atomic_write(o->out, text, strlen(text), 0644, err, sizeof(err));
		if (rc != CMQ_OK)
			fprintf(stderr, PROG ": %s\n", err);
	} else {
		fputs(text, stdout);
	}
	cmq_free(text);
	return rc == CMQ_OK ? EXIT_DONE : EXIT_SAVE;
}

int main(int argc, char **argv)
{
	struct opts o;
	char *optv[2 * N_OPTS + 8 + MAX_ARGS];
	int optc = 0, status;
	json_object *req = NULL, *answer = NULL, *res = NULL;
	const char *command;
	bool register_cmd;

	memset(&o, 0, sizeof(o));
	if (argc > (int)(sizeof(optv) / sizeof(optv[0])) - 1) {
		fprintf(stderr, PROG ": too many arguments\n");
		return EXIT_USAGE;
	}
	if (split_args(argc, argv, &o, optv, &optc) != 0 ||
	    tool_opts_parse(PROG, table, N_OPTS, optc, optv, &o) != 0)
		return EXIT_USAGE;
	if (o.help) {
		usage(stdout);
		return EXIT_DONE;
	}
	if ((o.nargs == 2 || o.nargs == 3) && strcmp(o.args[0], "audit") == 0 &&
	    strcmp(o.args[1], "verify") == 0)
		return audit_verify(&o);
	register_cmd = o.nargs == 1 && strcmp(o.args[0], "transparency") == 0;
	if (register_cmd) {
		req = json_object_new_object();
		add_str(req, "command", "register");
	} else {
		req = build_request(&o);
	}
	if (req == NULL)
		return EXIT_USAGE;
	command = sget(req, "command");
	status = o.port > 0 ? run_online(&o, req, &answer) : run_offline(&o, req, &answer);
	if (status != EXIT_DONE) {
		json_object_put(req);
		return status;
	}
	if (o.json && !register_cmd) {
		printf("%s\n",
		       json_object_to_json_string_ext(answer, JSON_C_TO_STRING_PRETTY |
		                                                  JSON_C_TO_STRING_NOSLASHESCAPE));
	}
	if (!json_object_get_boolean(json_object_object_get(answer, "ok"))) {
		if (!o.json)
			fprintf(stderr, PROG ": %s: %s: %s\n", command, sget(answer, "error"),
			        sget(answer, "message"));
		status = exit_for(sget(answer, "error") ? sget(answer, "error") : "");
	} else if (register_cmd) {
		json_object_object_get_ex(answer, "result", &res);
		status = transparency(&o, res);
	} else if (!o.json) {
		print_answer(command, answer);
	}
	json_object_put(answer);
	json_object_put(req);
	return status;
}
