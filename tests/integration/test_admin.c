/*
 * test_admin.c - administering a running city: the real civicmq-admin (online through the
 * broker's $CONTROL/civicmq/v1 API with the admin certificate, and offline on the files)
 * against a real mosquitto with the plugin and a real civicmq-gateway sharing the
 * consent file, everything over TLS.
 *
 * One broker and one gateway serve the whole suite, so each test puts back what it
 * changed (through the same tool). The broker loads the plugin with plugin_opt_consent and
 * plugin_opt_audit_log; the audit log is checked by `civicmq-admin audit verify`.
 */
#include "civicmq_env.h"
#include "gateway_env.h"
#include "itest.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <json.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOOL_TIMEOUT_MS 20000
#define MAX_ARGV        40

static struct cmq_env env;
static struct cmq_gwe gw;
static char tmp[CMQ_H_PATH_MAX];
static char admin_exe[CMQ_H_PATH_MAX + 32];
static char consent_path[CMQ_H_PATH_MAX + 32];
static char audit_path[CMQ_H_PATH_MAX + 32];
static char admin_cert[CMQ_H_PATH_MAX + 32], admin_key[CMQ_H_PATH_MAX + 32];
static char dash_pw[CMQ_H_PATH_MAX + 32];
static char port0[16];
static int run_no;

static const char initial_consent[] =
    "{\"version\": 1, \"residents\": [{\"id\": \"resident-0001\", \"categories\": "
    "[\"energy\"], \"updated\": \"2026-11-01T09:00:00Z\"}]}\n";

static int write_text(const char *path, const char *text)
{
	return cmq_gwe_write_file(path, text, 0600);
}

static int suite_init(void)
{
	const char *b = getenv("CMQ_BUILD") ? getenv("CMQ_BUILD") : "build";
	char build[CMQ_H_PATH_MAX], extra[3 * CMQ_H_PATH_MAX];
	struct cmq_gwe_opts go;
	const char *p;

	cmq_h_init();
	if (realpath(b, build) == NULL) {
		fprintf(stderr, "test_admin: CMQ_BUILD \"%s\": %s\n", b, strerror(errno));
		return 1;
	}
	snprintf(admin_exe, sizeof(admin_exe), "%s/civicmq-admin", build);
	if (access(admin_exe, X_OK) != 0) {
		fprintf(stderr, "test_admin: %s is missing (make first)\n", admin_exe);
		return 1;
	}
	if (cmq_h_tmpdir("cmq-admin", tmp, sizeof(tmp)) != 0)
		return 1;
	snprintf(consent_path, sizeof(consent_path), "%s/consent.json", tmp);
	snprintf(audit_path, sizeof(audit_path), "%s/audit.log", tmp);
	snprintf(dash_pw, sizeof(dash_pw), "%s/dashboard.pw", tmp);
	if (write_text(consent_path, initial_consent) != 0 ||
	    write_text(dash_pw, "dashboard-secret\n") != 0)
		return 1;
	if (cmq_env_init(&env, NULL) != 0)
		return 1;
	snprintf(extra, sizeof(extra), "plugin_opt_consent %s\nplugin_opt_audit_log %s\n",
	         consent_path, audit_path);
	if (cmq_env_start(&env, extra) != 0)
		return 1;
	snprintf(port0, sizeof(port0), "%d", env.broker.port[0]);
	p = cmq_h_pki("operators/admin.pem");
	snprintf(admin_cert, sizeof(admin_cert), "%s", p ? p : "");
	p = cmq_h_pki("operators/admin.key");
	snprintf(admin_key, sizeof(admin_key), "%s", p ? p : "");
	memset(&go, 0, sizeof(go));
	go.share_group = "admin";
	go.consent_path = consent_path;
	go.consent_text = initial_consent;
	if (cmq_gwe_start(&env, &go, &gw) != 0)
		return 1;
	return 0;
}

static int suite_cleanup(void)
{
	cmq_gwe_cleanup(&gw);
	cmq_env_stop(&env);
	return 0;
}

/* Run civicmq-admin with argv (NULL-terminated); its exit code, its output in log. */
static int admin_argv(const char *const *args, char *log, size_t logn)
{
	snprintf(log, logn, "%s/admin-%d.log", tmp, ++run_no);
	return cmq_h_proc_wait(cmq_h_spawn(args, log), TOOL_TIMEOUT_MS);
}

/* civicmq-admin with the options of one mode, then the words of ap. */
static int admin_va(const char *const *mode, char *log, size_t logn, va_list ap)
{
	const char *args[MAX_ARGV];
	int n = 0;

	args[n++] = admin_exe;
	for (const char *const *m = mode; *m != NULL; m++)
		args[n++] = *m;
	for (const char *a = va_arg(ap, const char *); a != NULL && n < MAX_ARGV - 1;
	     a = va_arg(ap, const char *))
		args[n++] = a;
	args[n] = NULL;
	return admin_argv(args, log, logn);
}

/* civicmq-admin online as the admin (certificate on the device port) with the words. */
static int admin(char *log, size_t logn, ...)
{
	const char *const mode[] = {"--host",   "localhost", "--port", port0,
	                            "--cafile", env.cafile,  "--cert", admin_cert,
	                            "--key",    admin_key,   NULL};
	va_list ap;
	int rc;

	va_start(ap, logn);
	rc = admin_va(mode, log, logn, ap);
	va_end(ap);
	return rc;
}

/* civicmq-admin offline on the broker's own files, with the words. */
static int admin_offline(char *log, size_t logn, ...)
{
	const char *ca = cmq_h_pki("ca-bundle-test.pem");
	char ca_copy[CMQ_H_PATH_MAX + 32];
	const char *const mode[] = {"--policy",    env.policy,    "--vendors",   env.vendors,
	                            "--operators", env.operators, "--ca-file",   ca_copy,
	                            "--consent",   consent_path,  "--audit-log", audit_path,
	                            NULL};
	va_list ap;
	int rc;

	snprintf(ca_copy, sizeof(ca_copy), "%s", ca ? ca : "");
	va_start(ap, logn);
	rc = admin_va(mode, log, logn, ap);
	va_end(ap);
	return rc;
}

static bool has(const char *log, const char *needle)
{
	if (cmq_h_file_contains(log, 0, needle))
		return true;
	fprintf(stderr, "\n%s lacks \"%s\"; it holds:\n", log, needle);
	cmq_h_file_print(log, 0);
	return false;
}

static int connect_device(const char *cn, struct cmq_h_client **c)
{
	int reason = 0;

	return cmq_env_connect_cert(&env, cn, NULL, 0, c, &reason);
}

static const char footfall[] = "{\"peopleCount\":12,\"dateObserved\":\"2026-11-28T10:47:12Z\","
                               "\"location\":{\"type\":\"Point\",\"coordinates\":[-0.1,51.5]}}";

/* ---- reads ---- */

static void TEST_list_and_explain(void)
{
	char log[CMQ_H_PATH_MAX + 64];

	CU_ASSERT_EQUAL(admin(log, sizeof(log), "vendor", "list", NULL), 0);
	CU_ASSERT_TRUE(has(log, "nimbus"));
	CU_ASSERT_TRUE(has(log, "restricted"));
	CU_ASSERT_EQUAL(admin(log, sizeof(log), "explain", "hawkeye-cam-001", "publish",
	                      "raw/north/camera/hawkeye-cam-001", NULL),
	                0);
	CU_ASSERT_TRUE(has(log, "deny: VENDOR_BLOCKED"));
	CU_ASSERT_EQUAL(admin(log, sizeof(log), "explain", "nimbus-wifi-001", "publish",
	                      "raw/north/footfall/nimbus-wifi-001", NULL),
	                0);
	CU_ASSERT_TRUE(has(log, "deny: TIER_RESTRICTED"));
	CU_ASSERT_TRUE(has(log, "rule: footfall"));
	CU_ASSERT_EQUAL(admin(log, sizeof(log), "explain", "civitas-air-001", "publish",
	                      "raw/north/air/civitas-air-001", NULL),
	                0);
	CU_ASSERT_TRUE(has(log, "allow: OK"));
	/* JSON for scripts; a bad request is exit 1 with the field named. */
	CU_ASSERT_EQUAL(admin(log, sizeof(log), "--json", "vendor", "show", "civitas", NULL), 0);
	CU_ASSERT_TRUE(has(log, "\"ca_sha256\""));
	CU_ASSERT_EQUAL(admin(log, sizeof(log), "vendor", "show", "nobody", NULL), 1);
	CU_ASSERT_TRUE(has(log, "not_found"));
	CU_ASSERT_EQUAL(admin(log, sizeof(log), "explain", "x", "fly", "city/a", NULL), 1);
	CU_ASSERT_TRUE(has(log, "field \"action\""));
}

/* ---- requests that are not requests get an answer, and the broker lives on ---- */

/* Publish payload (len -1: a string) to the control API as the admin; the answer's text
 * (static). */
static const char *raw_request(struct cmq_h_client *c, const char *payload, int len)
{
	static char answer[1024];
	struct cmq_h_msg m;

	if (len < 0)
		len = (int)strlen(payload);
	answer[0] = '\0';
	if (cmq_h_publish(c, "$CONTROL/civicmq/v1", payload, len, 1, false, NULL, NULL) != 0)
		return "(publish refused)";
	memset(&m, 0, sizeof(m));
	if (cmq_h_wait_message(c, 5000, &m) != 0)
		return "(no answer)";
	if (strcmp(m.topic, "$CONTROL/civicmq/v1/response") == 0)
		snprintf(answer, sizeof(answer), "%.*s", m.payloadlen, (const char *)m.payload);
	cmq_h_msg_clear(&m);
	return answer;
}

static void TEST_malformed_requests_answered(void)
{
	struct cmq_h_client *c = NULL;
	int reason = 0;
	size_t big = 1024 * 1024 + 1;
	char *huge = malloc(big);

	CU_ASSERT_PTR_NOT_NULL_FATAL(huge);
	CU_ASSERT_EQUAL_FATAL(cmq_env_connect_cert(&env, "admin", "admin-raw", 0, &c, &reason), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(raw_request(c, "", 0), "\"error\":\"bad_request\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(raw_request(c, "{\"command\":", -1), "bad_request"));
	CU_ASSERT_PTR_NOT_NULL(strstr(raw_request(c, "[1,2]", -1), "\"command\""));
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(raw_request(c, "{\"command\":\"vendor.nuke\"}", -1), "unknown command"));
	memset(huge, ' ', big);
	huge[0] = '{';
	huge[big - 1] = '}';
	CU_ASSERT_PTR_NOT_NULL(strstr(raw_request(c, huge, (int)big), "the limit is"));
	/* ... and a well-formed one still works on the same connection. */
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(raw_request(c, "{\"command\":\"vendor.list\"}", -1), "\"ok\":true"));
	CU_ASSERT_TRUE(cmq_h_broker_alive(&env.broker));
	cmq_h_close(c);
	free(huge);
}

/* ---- the control API refuses everyone but the admin role ---- */

static void TEST_non_admin_denied(void)
{
	char log[CMQ_H_PATH_MAX + 64], port1[16];
	char *before = cmq_gwe_read_file(env.vendors), *after;
	size_t mark = cmq_h_log_mark(&env.broker);
	const char *args[] = {admin_exe,  "--host",   "localhost",  "--port",    port1,
	                      "--cafile", env.cafile, "--username", "dashboard", "--password-file",
	                      dash_pw,    "vendor",   "block",      "civitas",   NULL};

	snprintf(port1, sizeof(port1), "%d", env.broker.port[1]);
	CU_ASSERT_EQUAL(admin_argv(args, log, sizeof(log)), 4);
	CU_ASSERT_TRUE(has(log, "refused the request"));
	CU_ASSERT_TRUE(cmq_h_log_contains(&env.broker, mark, "CONTROL_FORBIDDEN"));
	after = cmq_gwe_read_file(env.vendors);
	CU_ASSERT_TRUE(before != NULL && after != NULL && strcmp(before, after) == 0);
	free(before);
	free(after);
}

/* ---- restrict: personal data refused from the next message ---- */

static void TEST_restrict_denies_personal_data(void)
{
	char log[CMQ_H_PATH_MAX + 64];
	struct cmq_h_client *c = NULL;
	struct cmq_gwe_sink dash;
	size_t gmark;

	CU_ASSERT_EQUAL_FATAL(connect_device("civitas-wifi-001", &c), 0);
	/* The broker knows who is connected now. */
	CU_ASSERT_EQUAL(admin(log, sizeof(log), "device", "list", NULL), 0);
	CU_ASSERT_TRUE(has(log, "connected now:"));
	CU_ASSERT_TRUE(has(log, "civitas-wifi-001"));
	CU_ASSERT_EQUAL(cmq_h_publish(c, "raw/north/footfall/civitas-wifi-001", footfall,
	                              (int)strlen(footfall), 1, false, NULL, NULL),
	                0);
	gmark = cmq_gwe_log_mark(&gw);
	CU_ASSERT_EQUAL(admin(log, sizeof(log), "vendor", "restrict", "civitas", "--reason",
	                      "firmware audit overdue", NULL),
	                0);
	/* The gateway too enforces the restriction (within a second of the change). */
	CU_ASSERT_TRUE(cmq_gwe_log_wait(&gw, gmark, "reload: policy loaded", 5000));
	CU_ASSERT_TRUE(has(log, "vendor.set_tier civitas: done"));
	CU_ASSERT_EQUAL(cmq_h_publish(c, "raw/north/footfall/civitas-wifi-001", footfall,
	                              (int)strlen(footfall), 1, false, NULL, NULL),
	                CMQ_H_REFUSED);
	CU_ASSERT_EQUAL(admin(log, sizeof(log), "vendor", "trust", "civitas", NULL), 0);
	/* Trusted again: the broker takes the next message, and the gateway - which learns of
	 * the change from the message's policy stamp, not a second later - forwards it. */
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_sink_open(&env, "dashboard", "dashboard-footfall",
	                                        "city/north/footfall", &dash),
	                      0);
	CU_ASSERT_EQUAL(cmq_h_publish(c, "raw/north/footfall/civitas-wifi-001", footfall,
	                              (int)strlen(footfall), 1, false, NULL, NULL),
	                0);
	CU_ASSERT_TRUE(cmq_gwe_sink_wait(&dash, "city/north/footfall", 0, 1, 5000));
	cmq_gwe_sink_close(&dash);
	cmq_h_close(c);
}

/* ---- block: connected devices cut off, new connections refused ---- */

static void TEST_block_cuts_off_connected_device(void)
{
	char log[CMQ_H_PATH_MAX + 64];
	struct cmq_h_client *c = NULL, *again = NULL;
	size_t mark;

	CU_ASSERT_EQUAL_FATAL(connect_device("nimbus-air-001", &c), 0);
	mark = cmq_h_log_mark(&env.broker);
	CU_ASSERT_EQUAL(admin(log, sizeof(log), "vendor", "block", "nimbus", NULL), 0);
	CU_ASSERT_TRUE(cmq_h_wait_disconnect(c, 5000));
	CU_ASSERT_TRUE(cmq_h_log_contains(&env.broker, mark, "disconnecting \"nimbus-air-001\""));
	CU_ASSERT_EQUAL(connect_device("nimbus-air-001", &again), CMQ_H_REFUSED);
	cmq_h_close(again);
	CU_ASSERT_EQUAL(admin(log, sizeof(log), "vendor", "restrict", "nimbus", NULL), 0);
	CU_ASSERT_EQUAL(connect_device("nimbus-air-001", &again), 0);
	cmq_h_close(again);
	cmq_h_close(c);
}

/* ---- consent: the resident's next message is dropped after a withdrawal ---- */

static void TEST_withdraw_consent_drops_next_message(void)
{
	char log[CMQ_H_PATH_MAX + 64];
	static const char doc[] =
	    "{\"type\":\"EnergyMeter\",\"meterId\":\"MTR-1\",\"residentId\":\"resident-0001\","
	    "\"activePower\":1234,\"dateObserved\":\"2026-11-28T10:47:12Z\"}";
	struct cmq_gwe_sink dash;
	struct cmq_gwe_metrics m0, m1;
	struct cmq_h_client *c = NULL;

	CU_ASSERT_EQUAL_FATAL(
	    cmq_gwe_sink_open(&env, "dashboard", "dashboard-admin-test", "city/+/energy", &dash),
	    0);
	CU_ASSERT_EQUAL_FATAL(connect_device("civitas-meter-001", &c), 0);
	CU_ASSERT_EQUAL(cmq_gwe_metrics(&gw, &m0), 0);
	CU_ASSERT_EQUAL(cmq_h_publish(c, "raw/north/meter/civitas-meter-001", doc, (int)strlen(doc),
	                              1, false, NULL, NULL),
	                0);
	if (!cmq_gwe_sink_wait(&dash, "city/north/energy", 0, 1, 15000)) {
		cmq_gwe_log_print(&gw, 0);
		CU_FAIL("resident-0001's reading did not reach the dashboard");
	}

	CU_ASSERT_EQUAL(
	    admin(log, sizeof(log), "consent", "withdraw", "resident-0001", "energy", NULL), 0);
	CU_ASSERT_TRUE(has(log, "consent.withdraw resident-0001/energy: done"));
	CU_ASSERT_EQUAL(cmq_h_publish(c, "raw/north/meter/civitas-meter-001", doc, (int)strlen(doc),
	                              1, false, NULL, NULL),
	                0);
	if (cmq_gwe_wait_received(&gw, m0.received + 2, 15000, &m1) != 0 ||
	    m1.by_reason[CMQ_DROP_NO_CONSENT] != m0.by_reason[CMQ_DROP_NO_CONSENT] + 1) {
		cmq_gwe_metrics_print("before", &m0);
		cmq_gwe_metrics_print("after", &m1);
		cmq_gwe_log_print(&gw, 0);
		CU_FAIL("the gateway did not drop the withdrawn resident's next message");
	}
	cmq_gwe_sink_pump(&dash, 300);
	CU_ASSERT_EQUAL(cmq_gwe_sink_count(&dash, "city/north/energy", 0), 1);
	CU_ASSERT_EQUAL(admin(log, sizeof(log), "consent", "list", "resident-0001", NULL), 0);
	CU_ASSERT_TRUE(has(log, "no consent"));
	/* Granted again (withdrawing twice is "already so", exit 0, nothing audited). */
	CU_ASSERT_EQUAL(
	    admin(log, sizeof(log), "consent", "grant", "resident-0001", "energy", NULL), 0);
	CU_ASSERT_EQUAL(admin(log, sizeof(log), "consent", "grant", "nobody-9", "air", NULL), 1);
	cmq_h_close(c);
	cmq_gwe_sink_close(&dash);
}

/* ---- a save that fails changes nothing ---- */

static void TEST_save_failure_changes_nothing(void)
{
	char log[CMQ_H_PATH_MAX + 64], blocker[CMQ_H_PATH_MAX + 64];
	char *before = cmq_gwe_read_file(env.vendors), *after;
	struct cmq_h_client *c = NULL;
	size_t mark = cmq_h_log_mark(&env.broker);

	/* The temp file's name taken by a directory: the write fails (even for root). */
	snprintf(blocker, sizeof(blocker), "%s.tmp", env.vendors);
	CU_ASSERT_EQUAL_FATAL(mkdir(blocker, 0700), 0);
	CU_ASSERT_EQUAL(admin(log, sizeof(log), "vendor", "block", "civitas", NULL), 3);
	CU_ASSERT_TRUE(has(log, "save_failed"));
	CU_ASSERT_TRUE(has(log, "vendors.json.tmp"));
	rmdir(blocker);
	after = cmq_gwe_read_file(env.vendors);
	CU_ASSERT_TRUE(before != NULL && after != NULL && strcmp(before, after) == 0);
	/* ... and the running policy did not change either. */
	CU_ASSERT_FALSE(cmq_h_log_contains(&env.broker, mark, "saved and in force"));
	CU_ASSERT_EQUAL(connect_device("civitas-air-001", &c), 0);
	CU_ASSERT_EQUAL(cmq_h_publish(c, "raw/north/air/civitas-air-001", "{\"no2\":1}", 9, 1,
	                              false, NULL, NULL),
	                0);
	cmq_h_close(c);
	free(before);
	free(after);
}

/* ---- files changed offline are picked up by the running broker ---- */

static void TEST_offline_change_applies_live(void)
{
	char log[CMQ_H_PATH_MAX + 64];
	struct cmq_h_client *c = NULL;

	CU_ASSERT_EQUAL_FATAL(connect_device("nimbus-air-001", &c), 0);
	CU_ASSERT_EQUAL(admin_offline(log, sizeof(log), "vendor", "block", "nimbus", NULL), 0);
	CU_ASSERT_TRUE(cmq_h_wait_disconnect(c, 5000));
	CU_ASSERT_EQUAL(admin_offline(log, sizeof(log), "vendor", "restrict", "nimbus", NULL), 0);
	cmq_h_close(c);
	/* Back in force within a couple of seconds: the broker checks the files each second. */
	c = NULL;
	for (int i = 0; i < 50; i++) {
		if (connect_device("nimbus-air-001", &c) == 0)
			break;
		cmq_h_close(c);
		c = NULL;
		usleep(100 * 1000);
	}
	CU_ASSERT_PTR_NOT_NULL(c);
	cmq_h_close(c);
}

/* ---- the register follows the policy ---- */

/* The tier of vendor id in a register document, and whether any flow lists it. */
static const char *register_tier(struct json_object *reg, const char *id, bool *in_flows)
{
	struct json_object *vendors, *flows, *fv;
	const char *tier = NULL;

	*in_flows = false;
	if (json_object_object_get_ex(reg, "vendors", &vendors)) {
		for (size_t i = 0; i < json_object_array_length(vendors); i++) {
			struct json_object *v = json_object_array_get_idx(vendors, i), *x, *t;

			if (json_object_object_get_ex(v, "id", &x) &&
			    strcmp(json_object_get_string(x), id) == 0 &&
			    json_object_object_get_ex(v, "tier", &t))
				tier = json_object_get_string(t);
		}
	}
	if (json_object_object_get_ex(reg, "flows", &flows)) {
		for (size_t i = 0; i < json_object_array_length(flows); i++) {
			if (!json_object_object_get_ex(json_object_array_get_idx(flows, i),
			                               "vendors", &fv))
				continue;
			for (size_t k = 0; k < json_object_array_length(fv); k++) {
				struct json_object *x;

				if (json_object_object_get_ex(json_object_array_get_idx(fv, k),
				                              "id", &x) &&
				    strcmp(json_object_get_string(x), id) == 0)
					*in_flows = true;
			}
		}
	}
	return tier;
}

/*
 * After a change, city/transparency/audit holds {"seq": N, "head": H}: H is the SHA-256 of
 * line N of the audit log, and line N is that change. Whoever records these anchors the
 * chain (audit.h), so check the anchor is true.
 */
static void check_audit_head_published(void)
{
	struct cmq_gwe_sink a;
	struct json_object *o, *seq, *head;
	const struct cmq_h_msg *m;
	char *text, *line, *save = NULL, hex[65];
	unsigned char md[SHA256_DIGEST_LENGTH];
	long n = 0, want;

	CU_ASSERT_EQUAL_FATAL(
	    cmq_gwe_sink_open(&env, "dashboard", "dashboard-audit", "city/transparency/audit", &a),
	    0);
	CU_ASSERT_TRUE_FATAL(cmq_gwe_sink_wait(&a, "city/transparency/audit", 0, 1, 5000));
	m = cmq_gwe_sink_find(&a, "city/transparency/audit", 0);
	o = json_tokener_parse(m->payload);
	CU_ASSERT_TRUE_FATAL(o != NULL && json_object_object_get_ex(o, "seq", &seq) &&
	                     json_object_object_get_ex(o, "head", &head));
	want = (long)json_object_get_int64(seq);
	text = cmq_gwe_read_file(audit_path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (++n != want)
			continue;
		SHA256((const unsigned char *)line, strlen(line), md);
		for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
		CU_ASSERT_STRING_EQUAL(hex, json_object_get_string(head));
		CU_ASSERT_PTR_NOT_NULL(strstr(line, "\"action\":\"vendor.set_tier\""));
		CU_ASSERT_PTR_NOT_NULL(strstr(line, "\"target\":\"civitas\""));
	}
	CU_ASSERT_TRUE(want >= 1 && n >= want);
	free(text);
	json_object_put(o);
	cmq_gwe_sink_close(&a);
}

static void TEST_register_follows_policy(void)
{
	char log[CMQ_H_PATH_MAX + 64];
	struct cmq_gwe_sink s;
	struct json_object *reg;
	const struct cmq_h_msg *m;
	bool in_flows = false;
	const char *tier;

	CU_ASSERT_EQUAL_FATAL(cmq_gwe_sink_open(&env, "dashboard", "dashboard-register",
	                                        "city/transparency/register", &s),
	                      0);
	CU_ASSERT_TRUE_FATAL(cmq_gwe_sink_wait(&s, "city/transparency/register", 0, 1, 5000));
	m = cmq_gwe_sink_find(&s, "city/transparency/register", 0);
	CU_ASSERT_TRUE(m->retain);
	reg = json_tokener_parse(m->payload);
	tier = register_tier(reg, "civitas", &in_flows);
	CU_ASSERT_TRUE(tier != NULL && strcmp(tier, "trusted") == 0);
	CU_ASSERT_TRUE(in_flows);
	json_object_put(reg);

	CU_ASSERT_EQUAL(admin(log, sizeof(log), "vendor", "block", "civitas", NULL), 0);
	CU_ASSERT_TRUE_FATAL(cmq_gwe_sink_wait(&s, "city/transparency/register", 1, 1, 5000));
	m = cmq_gwe_sink_find(&s, "city/transparency/register", 1);
	reg = json_tokener_parse(m->payload);
	tier = register_tier(reg, "civitas", &in_flows);
	CU_ASSERT_TRUE(tier != NULL && strcmp(tier, "blocked") == 0);
	CU_ASSERT_FALSE(in_flows);
	json_object_put(reg);
	CU_ASSERT_EQUAL(admin(log, sizeof(log), "vendor", "trust", "civitas", NULL), 0);
	check_audit_head_published();
	/* The rendered page comes from the same live register. */
	CU_ASSERT_EQUAL(admin(log, sizeof(log), "transparency", "--format", "html", NULL), 0);
	CU_ASSERT_TRUE(has(log, "<html"));
	CU_ASSERT_TRUE(has(log, "Enforce the low-emission zone"));
	cmq_gwe_sink_close(&s);
}

/* ---- the audit log: intact, then tampered ---- */

static void TEST_audit_verify(void)
{
	char log[CMQ_H_PATH_MAX + 64], copy[CMQ_H_PATH_MAX + 64];
	char *text = cmq_gwe_read_file(audit_path), *second, *third, *p;
	const char *args[] = {admin_exe, "audit", "verify", audit_path, NULL};
	const char *args2[] = {admin_exe, "audit", "verify", copy, NULL};

	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	/* Changes and refused connections of the tests above are all there. */
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"action\":\"vendor.set_tier\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"action\":\"consent.withdraw\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"action\":\"connect.refused\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "firmware audit overdue"));
	CU_ASSERT_EQUAL(admin_argv(args, log, sizeof(log)), 0);
	CU_ASSERT_TRUE(has(log, "hash chain intact"));

	/* Edit the second line: verify names the third (whose prev no longer matches). */
	second = strchr(text, '\n');
	CU_ASSERT_PTR_NOT_NULL_FATAL(second);
	third = strchr(second + 1, '\n');
	CU_ASSERT_PTR_NOT_NULL_FATAL(third);
	p = strstr(second + 1, "\"actor\":\"");
	CU_ASSERT_TRUE_FATAL(p != NULL && p < third);
	p[strlen("\"actor\":\"")] ^= 0x01;
	snprintf(copy, sizeof(copy), "%s/audit-tampered.log", tmp);
	CU_ASSERT_EQUAL_FATAL(write_text(copy, text), 0);
	CU_ASSERT_EQUAL(admin_argv(args2, log, sizeof(log)), 1);
	CU_ASSERT_TRUE(has(log, "line 3"));
	free(text);

	/* Remove the second line: named too. */
	text = cmq_gwe_read_file(audit_path);
	second = strchr(text, '\n');
	third = strchr(second + 1, '\n');
	memmove(second + 1, third + 1, strlen(third + 1) + 1);
	CU_ASSERT_EQUAL_FATAL(write_text(copy, text), 0);
	CU_ASSERT_EQUAL(admin_argv(args2, log, sizeof(log)), 1);
	CU_ASSERT_TRUE(has(log, "line 2"));
	free(text);
}

int main(void)
{
	static const struct cmq_itest tests[] = {
	    {"list_and_explain", TEST_list_and_explain},
	    {"malformed_requests_answered", TEST_malformed_requests_answered},
	    {"non_admin_denied", TEST_non_admin_denied},
	    {"restrict_denies_personal_data", TEST_restrict_denies_personal_data},
	    {"block_cuts_off_connected_device", TEST_block_cuts_off_connected_device},
	    {"withdraw_consent_drops_next_message", TEST_withdraw_consent_drops_next_message},
	    {"save_failure_changes_nothing", TEST_save_failure_changes_nothing},
	    {"offline_change_applies_live", TEST_offline_change_applies_live},
	    {"register_follows_policy", TEST_register_follows_policy},
	    {"audit_verify", TEST_audit_verify},
	};

	return cmq_itest_run("admin", suite_init, suite_cleanup, tests,
	                     sizeof(tests) / sizeof(tests[0]));
}
