/*
 * plugin_control.c - administration on a running broker: the $CONTROL/civicmq/v1 JSON
 * API, the audit log of changes and refused connections, the retained transparency
 * register, and picking up files changed on disk.
 *
 * Requests: an admin-role operator publishes a JSON request (admin.h) to
 * $CONTROL/civicmq/v1. The ACL check lets only the admin role publish there; this file
 * checks the role again before acting. The answer goes to the requester alone
 * (mosquitto_broker_publish to its client id; such a direct message passes no
 * subscription and no ACL) on the request's MQTT v5 response topic, default
 * $CONTROL/civicmq/v1/response, with its correlation data copied back.
 *
 * A change is validated, saved atomically and audited by core/admin.c; here the new
 * policy is swapped in, connected clients it now refuses are disconnected, and the
 * register is republished. If saving fails, nothing is swapped: memory and disk agree.
 *
 * Files edited on disk (civicmq-admin offline, an editor) are noticed by a stat of each
 * file once a second on the broker's tick, and loaded like a SIGHUP reload; a broken
 * file keeps the running policy. Runs on the broker's main thread only.
 */
#include "plugin.h"

#include "acl.h"
#include "admin.h"
#include "alloc.h"
#include "error.h"
#include "jsonutil.h"
#include "register.h"

#include <json.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define REQUEST_MAX      (1024u * 1024u)
#define RESPONSE_TOPIC   CMQ_CONTROL_TOPIC "/response"
#define REGISTER_TOPIC   "city/transparency/register"
#define AUDIT_HEAD_TOPIC "city/transparency/audit"
#define AUDIT_PER_SECOND 100 /* refused connections audited one by one per second */

/* ---- file stamps: what the running policy was loaded from ---- */

static void stamp_of(const char *path, struct cmq_file_stamp *s)
{
	struct stat st;

	memset(s, 0, sizeof(*s));
	if (path != NULL && stat(path, &st) == 0) {
		s->ino = st.st_ino;
		s->size = st.st_size;
		s->mtime_s = st.st_mtim.tv_sec;
		s->mtime_ns = st.st_mtim.tv_nsec;
		s->exists = true;
	}
}

void cmq_plugin_remember_files(struct cmq_plugin *pl)
{
	stamp_of(pl->policy_path, &pl->seen[0]);
	stamp_of(pl->vendors_path, &pl->seen[1]);
	stamp_of(pl->operators_path, &pl->seen[2]);
}

static bool files_changed(struct cmq_plugin *pl)
{
	const char *paths[3] = {pl->policy_path, pl->vendors_path, pl->operators_path};
	bool changed = false;

	for (int i = 0; i < 3; i++) {
		struct cmq_file_stamp now;

		stamp_of(paths[i], &now);
		if (memcmp(&now, &pl->seen[i], sizeof(now)) != 0)
			changed = true;
	}
	return changed;
}

/* ---- the register ---- */

void cmq_plugin_publish_register(struct cmq_plugin *pl)
{
	struct json_object *reg = NULL;
	char *text = NULL;

	if (cmq_register_build(pl->policy, (int64_t)time(NULL), &reg) != CMQ_OK ||
	    cmq_register_json(reg, &text) != CMQ_OK) {
		cmq_plugin_log(MOSQ_LOG_ERR,
		               "transparency register of policy %s not published: "
		               "could not build it",
		               pl->policy->stamp);
	} else if (mosquitto_broker_publish_copy(NULL, REGISTER_TOPIC, (int)strlen(text), text, 1,
	                                         true, NULL) != MOSQ_ERR_SUCCESS) {
		cmq_plugin_log(MOSQ_LOG_ERR, "transparency register not published on %s",
		               REGISTER_TOPIC);
	} else {
		cmq_plugin_log(MOSQ_LOG_INFO, "transparency register of policy %s published on %s",
		               pl->policy->stamp, REGISTER_TOPIC);
	}
	cmq_free(text);
	json_object_put(reg);
}

/* Put a new policy in force: principals re-resolve, refused clients go, the register
 * follows. */
void cmq_plugin_swap(struct cmq_plugin *pl, struct cmq_policy *p)
{
	cmq_pcache_clear(&pl->who); /* its principals point into the old policy */
	cmq_policy_free(pl->policy);
	pl->policy = p;
	cmq_plugin_enforce(pl);
	cmq_plugin_publish_register(pl);
}

void cmq_plugin_watch_files(struct cmq_plugin *pl)
{
	time_t now = time(NULL);
	struct cmq_policy *p;

	if (now == pl->watch_at)
		return;
	pl->watch_at = now;
	if (!files_changed(pl))
		return;
	/* Noted before reading: a change made meanwhile is seen at the next check. A broken
	 * file is so reported once, not every second. */
	cmq_plugin_remember_files(pl);
	p = cmq_plugin_load(pl, "file change");
	if (p == NULL) {
		cmq_plugin_log(MOSQ_LOG_ERR, "changed files not loaded; still enforcing policy %s",
		               pl->policy->stamp);
		return;
	}
	cmq_plugin_swap(pl, p);
}

/* ---- the audit log ---- */

/*
 * After an administrative change, the audit log's head (the SHA-256 of its last line, that
 * change's) goes out retained: whoever records these can later show that the history up to
 * each of them was kept, which the chain alone cannot (audit.h).
 */
static void publish_audit_head(struct cmq_plugin *pl)
{
	char text[256];
	int n;

	if (pl->audit == NULL)
		return;
	n = snprintf(text, sizeof(text), "{\"seq\":%llu,\"head\":\"%s\",\"policy\":\"%s\"}",
	             (unsigned long long)(cmq_audit_next_seq(pl->audit) - 1),
	             cmq_audit_head(pl->audit), pl->policy->stamp);
	if (n < 0 || (size_t)n >= sizeof(text) ||
	    mosquitto_broker_publish_copy(NULL, AUDIT_HEAD_TOPIC, n, text, 1, true, NULL) !=
	        MOSQ_ERR_SUCCESS)
		cmq_plugin_log(MOSQ_LOG_ERR, "audit head not published on %s", AUDIT_HEAD_TOPIC);
}

/*
 * Refusals are written to the kernel but not fdatasync'ed: a flood of them must not make the
 * broker thread wait for the disk. Administrative changes are synced (core/admin.c).
 */
static int audit_nosync(struct cmq_plugin *pl, const struct cmq_audit_entry *e)
{
	int rc;

	cmq_audit_set_sync(pl->audit, false);
	rc = cmq_audit_append(pl->audit, e);
	cmq_audit_set_sync(pl->audit, true);
	if (rc != CMQ_OK)
		cmq_plugin_log(MOSQ_LOG_ERR, "audit log: %s", cmq_audit_last_error(pl->audit));
	return rc;
}

void cmq_plugin_audit_refusal(struct cmq_plugin *pl, const char *client_id, const char *addr,
                              enum cmq_reason reason, const char *detail)
{
	struct cmq_audit_entry e;
	char why[512], target[320];
	time_t now = time(NULL);

	if (pl->audit == NULL)
		return;
	if (now != pl->audit_budget.window) {
		if (pl->audit_budget.suppressed > 0) {
			memset(&e, 0, sizeof(e));
			snprintf(why, sizeof(why),
			         "%lu further refused connection(s) in the previous second, not "
			         "listed one by one (more than %d a second)",
			         pl->audit_budget.suppressed, AUDIT_PER_SECOND);
			e.time = (int64_t)now;
			e.actor = "broker";
			e.action = "connect.refused.summary";
			e.target = "*";
			e.reason = why;
			(void)audit_nosync(pl, &e);
		}
		pl->audit_budget.window = now;
		pl->audit_budget.used = 0;
		pl->audit_budget.suppressed = 0;
	}
	if (pl->audit_budget.used >= AUDIT_PER_SECOND) {
		pl->audit_budget.suppressed++;
		return;
	}
	pl->audit_budget.used++;
	memset(&e, 0, sizeof(e));
	snprintf(target, sizeof(target), "%s from %s", client_id ? client_id : "",
	         addr ? addr : "?");
	snprintf(why, sizeof(why), "%s: %s%s%s", cmq_reason_name(reason), cmq_reason_text(reason),
	         detail && detail[0] ? " - " : "", detail ? detail : "");
	e.time = (int64_t)now;
	e.actor = "broker";
	e.action = "connect.refused";
	e.target = target;
	e.reason = why;
	(void)audit_nosync(pl, &e);
}

/* ---- requests ---- */

static void add_connected(const struct cmq_session *e, void *ud)
{
	struct json_object *arr = ud, *o;

	if (e->kind != CMQ_PRINCIPAL_DEVICE || (o = json_object_new_object()) == NULL)
		return;
	json_object_object_add(o, "device", json_object_new_string(e->client_id));
	json_object_object_add(o, "vendor",
	                       json_object_new_string(e->vendor_id ? e->vendor_id : ""));
	json_object_object_add(o, "serial", json_object_new_string(e->serial));
	json_object_array_add(arr, o);
}

/* device.list online also names the devices connected now (only the broker knows them). */
static void add_connected_devices(struct cmq_plugin *pl, struct json_object *answer)
{
	struct json_object *res, *arr;

	if (!json_object_object_get_ex(answer, "result", &res) ||
	    (arr = json_object_new_array()) == NULL)
		return;
	cmq_sessions_each(&pl->sessions, add_connected, arr);
	json_object_object_add(res, "connected", arr);
}

static void respond(const char *client_id, const char *topic, const void *corr, uint16_t corr_len,
                    struct json_object *answer)
{
	mosquitto_property *props = NULL;
	const char *text = json_object_to_json_string_ext(
	    answer, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

	if (corr != NULL && mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, corr,
	                                                  corr_len) != MOSQ_ERR_SUCCESS) {
		mosquitto_property_free_all(&props);
		props = NULL;
	}
	/* The broker takes the properties whether or not it succeeds. */
	if (text == NULL || mosquitto_broker_publish_copy(client_id, topic, (int)strlen(text), text,
	                                                  1, false, props) != MOSQ_ERR_SUCCESS)
		cmq_plugin_log(MOSQ_LOG_ERR, "control: could not answer %s on %s", client_id,
		               topic);
}

int cmq_plugin_on_control(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_control *ed = event_data;
	struct cmq_plugin *pl = userdata;
	const char *cid = mosquitto_client_id(ed->client);
	const char *user = mosquitto_client_username(ed->client);
	struct cmq_admin_files files = {pl->policy_path, pl->vendors_path, pl->operators_path,
	                                pl->ca_file, pl->consent_path};
	struct cmq_admin_outcome out;
	struct json_object *req = NULL, *answer = NULL, *cmd = NULL;
	struct cmq_principal who;
	struct cmq_diag diag;
	char *rtopic = NULL;
	void *corr = NULL;
	uint16_t corr_len = 0;
	const char *command = "";

	(void)event;
	if (cid == NULL)
		return MOSQ_ERR_SUCCESS;
	mosquitto_property_read_string(ed->properties, MQTT_PROP_RESPONSE_TOPIC, &rtopic, false);
	mosquitto_property_read_binary(ed->properties, MQTT_PROP_CORRELATION_DATA, &corr, &corr_len,
	                               false);
	if (rtopic != NULL && (rtopic[0] == '\0' || strpbrk(rtopic, "+#") != NULL)) {
		mosquitto_free(rtopic);
		rtopic = NULL;
	}
	/* Checked again here (the ACL already did): only the admin role acts. */
	memset(&who, 0, sizeof(who));
	if (user == NULL ||
	    cmq_principal_resolve(pl->policy, user, strlen(user), &who) != CMQ_REASON_OK ||
	    who.kind != CMQ_PRINCIPAL_OPERATOR || who.role == NULL ||
	    who.role->kind != CMQ_ROLE_ADMIN) {
		answer = cmq_admin_error(NULL, "denied", "%s",
		                         cmq_reason_text(CMQ_REASON_CONTROL_FORBIDDEN));
		cmq_plugin_log(MOSQ_LOG_NOTICE, "control: request from \"%s\" (%s) denied: %s", cid,
		               user ? user : "", cmq_reason_name(CMQ_REASON_CONTROL_FORBIDDEN));
		goto reply;
	}
	cmq_diag_init(&diag);
	if (ed->payload == NULL || ed->payloadlen == 0)
		answer = cmq_admin_error(NULL, "bad_request",
		                         "empty request; send a JSON object with a \"command\"");
	else if (ed->payloadlen > REQUEST_MAX)
		answer =
		    cmq_admin_error(NULL, "bad_request", "request of %u bytes; the limit is %u",
		                    ed->payloadlen, REQUEST_MAX);
	else if (cmq_json_parse(ed->payload, ed->payloadlen, "request", &diag, &req) != CMQ_OK)
		answer = cmq_admin_error(NULL, "bad_request", "%s",
		                         diag.n > 0 ? diag.entries[0].text : "not JSON");
	cmq_diag_cleanup(&diag);
	if (answer != NULL)
		goto reply;
	if (json_object_object_get_ex(req, "command", &cmd) &&
	    json_object_is_type(cmd, json_type_string))
		command = json_object_get_string(cmd);
	if (cmq_admin_execute(&files, pl->policy, pl->audit, user, req, (int64_t)time(NULL),
	                      &out) != CMQ_OK) {
		answer = cmq_admin_error(command, "internal", "out of memory");
	} else {
		answer = out.response;
		if (strcmp(command, "device.list") == 0 &&
		    json_object_get_boolean(json_object_object_get(answer, "ok")))
			add_connected_devices(pl, answer);
	}
	if (out.policy != NULL) {
		/* Loaded from exactly the bytes just saved: the files are as the policy says. */
		cmq_plugin_remember_files(pl);
		cmq_plugin_swap(pl, out.policy);
	}
	if (out.changed) {
		publish_audit_head(pl);
		cmq_plugin_log(MOSQ_LOG_NOTICE,
		               "control: %s by \"%s\": saved and in force (policy %s)", command,
		               user, pl->policy->stamp);
	} else if (answer != NULL && cmq_admin_is_change(command) &&
	           json_object_object_get(answer, "message") != NULL)
		cmq_plugin_log(MOSQ_LOG_NOTICE, "control: %s by \"%s\" not made: %s", command, user,
		               json_object_get_string(json_object_object_get(answer, "message")));
reply:
	if (answer != NULL)
		respond(cid, rtopic ? rtopic : RESPONSE_TOPIC, corr, corr_len, answer);
	json_object_put(answer);
	json_object_put(req);
	mosquitto_free(rtopic);
	mosquitto_free(corr);
	return MOSQ_ERR_SUCCESS;
}

int cmq_plugin_control_init(struct cmq_plugin *pl)
{
	char err[512] = "";

	if (pl->audit_path != NULL &&
	    cmq_audit_open(pl->audit_path, &pl->audit, err, sizeof(err)) != CMQ_OK) {
		cmq_plugin_log(MOSQ_LOG_ERR, "plugin_opt_audit_log: %s", err);
		return -1;
	}
	if (pl->audit != NULL && err[0] != '\0')
		cmq_plugin_log(MOSQ_LOG_WARNING, "plugin_opt_audit_log: %s", err);
	if (pl->audit == NULL)
		cmq_plugin_log(MOSQ_LOG_WARNING,
		               "no plugin_opt_audit_log: the control API answers questions but "
		               "makes no changes, and refused connections are not audited");
	return 0;
}

void cmq_plugin_control_cleanup(struct cmq_plugin *pl)
{
	cmq_audit_close(pl->audit);
	pl->audit = NULL;
}
