/*
 * test_plugin.c - civicmq_plugin.so inside a real mosquitto, real TLS, real clients.
 *
 * One broker serves the suite (civicmq_env.h): the example city's policy with the example
 * PKI pinned. The tables below are the auth matrix: every refusal the plugin makes must be
 * refused (CONNACK / PUBACK / SUBACK 0x87) *and* logged with its reason, every allow must
 * work end to end. Reload tests change the files, send SIGHUP and watch connected clients.
 */
#include "civicmq_env.h"
#include "itest.h"

#include "acl.h"
#include "error.h"

#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOT_AUTHORISED 0x87

static struct cmq_env env;
static struct cmq_h_client *gw; /* the gateway, subscribed to $share/gw/raw/# */

/* Wait for a log line after mark that contains every needle. */
static bool logged(size_t mark, const char *a, const char *b)
{
	for (int i = 0; i < 300; i++) {
		if (cmq_h_log_contains(&env.broker, mark, a) &&
		    (b == NULL || cmq_h_log_contains(&env.broker, mark, b)))
			return true;
		if (cmq_h_log_wait(&env.broker, mark, a, 10) && b == NULL)
			return true;
	}
	cmq_h_log_print(&env.broker, mark);
	return false;
}

static void drain(struct cmq_h_client *c)
{
	struct cmq_h_msg m;

	while (cmq_h_wait_message(c, 0, &m) == 0)
		cmq_h_msg_clear(&m);
}

static int suite_init(void)
{
	int granted = -1, reason = -1;

	cmq_h_init();
	if (cmq_env_init(&env, NULL) != 0 || cmq_env_start(&env, NULL) != 0)
		return 1;
	if (cmq_env_connect_password(&env, "gateway", "gateway-secret", "gateway-1", &gw,
	                             &reason) != 0 ||
	    cmq_h_subscribe(gw, "$share/gw/raw/#", 1, &granted) != 0) {
		fprintf(stderr, "gateway could not connect/subscribe (reason %d, granted %d)\n",
		        reason, granted);
		return 1;
	}
	return 0;
}

static int suite_cleanup(void)
{
	cmq_h_close(gw);
	cmq_env_stop(&env);
	return 0;
}

/* ---- connect matrix ---- */

enum how { CERT, PASSWORD };

static const struct connect_case {
	enum how how;
	const char *name;      /* manifest name (CERT) or username (PASSWORD) */
	const char *client_id; /* NULL = the CN / username */
	const char *password;
	int expect;         /* CONNACK reason, or -1 for a TLS-level failure */
	const char *reason; /* plugin reason name expected in the log, or NULL */
} connect_cases[] = {
    {CERT, "civitas-air-001", NULL, NULL, 0, NULL},
    {CERT, "nimbus-air-001", NULL, NULL, 0, NULL},
    {CERT, "civitas-air-001", "civitas-air-002", NULL, NOT_AUTHORISED, "CLIENT_ID_MISMATCH"},
    {CERT, "civitas-air-001", "civitas-air+", NULL, NOT_AUTHORISED, "CLIENT_ID_INVALID"},
    {CERT, "hawkeye-cam-001", NULL, NULL, NOT_AUTHORISED, "VENDOR_BLOCKED"},
    {CERT, "shadow-air-001", NULL, NULL, NOT_AUTHORISED, "CERT_ISSUER_UNKNOWN"},
    {CERT, "bad/foreign-civitas-air-001", "civitas-air-001", NULL, NOT_AUTHORISED,
     "CERT_ISSUER_UNKNOWN"},
    {CERT, "bad/civitas-revoked-001", NULL, NULL, NOT_AUTHORISED, "SERIAL_REVOKED"},
    {CERT, "bad/civitas-plus", NULL, NULL, NOT_AUTHORISED, "CERT_CN_INVALID"},
    {CERT, "bad/civitas-hash", "civitas-bad-hash", NULL, NOT_AUTHORISED, "CERT_CN_INVALID"},
    {CERT, "bad/civitas-slash", "civitas-bad-slash", NULL, NOT_AUTHORISED, "CERT_CN_INVALID"},
    {CERT, "bad/civitas-noprefix", NULL, NULL, NOT_AUTHORISED, "CN_PREFIX"},
    {CERT, "bad/civitas-expired-001", NULL, NULL, -1, NULL},
    {CERT, "admin", "admin-console", NULL, 0, NULL},
    {CERT, "admin", "gateway-1", NULL, NOT_AUTHORISED, "CLIENT_ID_NOT_OWNED"},
    {PASSWORD, "gateway", "gateway-probe", "gateway-secret", 0, NULL},
    {PASSWORD, "gateway", "gateway-probe", "wrong", NOT_AUTHORISED, "BAD_PASSWORD"},
    {PASSWORD, "nobody", NULL, "x", NOT_AUTHORISED, "UNKNOWN_OPERATOR"},
    {PASSWORD, "civitas-air-001", NULL, "x", NOT_AUTHORISED, "UNKNOWN_OPERATOR"},
    {PASSWORD, "admin", NULL, "admin-secret", NOT_AUTHORISED, "PASSWORD_NOT_ALLOWED"},
    {PASSWORD, "dash+board", NULL, "x", NOT_AUTHORISED, "USERNAME_INVALID"},
    {PASSWORD, "dashboard", "dash#1", "dashboard-secret", NOT_AUTHORISED, "CLIENT_ID_INVALID"},
    /* No account may take over another's session, or a device's, by reusing its client id. */
    {PASSWORD, "dashboard", "gateway-1", "dashboard-secret", NOT_AUTHORISED, "CLIENT_ID_NOT_OWNED"},
    {PASSWORD, "dashboard", "civitas-air-001", "dashboard-secret", NOT_AUTHORISED,
     "CLIENT_ID_NOT_OWNED"},
    {PASSWORD, NULL, "anon-1", NULL, NOT_AUTHORISED, "NO_CREDENTIALS"},
};

static void TEST_connect_matrix(void)
{
	for (size_t i = 0; i < sizeof(connect_cases) / sizeof(connect_cases[0]); i++) {
		const struct connect_case *k = &connect_cases[i];
		struct cmq_h_client *c = NULL;
		size_t mark = cmq_h_log_mark(&env.broker);
		int reason = -2, rc;

		if (k->how == CERT)
			rc = cmq_env_connect_cert(&env, k->name, k->client_id, 0, &c, &reason);
		else
			rc = cmq_env_connect_password(&env, k->name, k->password,
			                              k->client_id ? k->client_id : k->name, &c,
			                              &reason);
		if (reason != k->expect)
			fprintf(stderr, "case %zu (%s): CONNACK %d, expected %d\n", i,
			        k->name ? k->name : "(none)", reason, k->expect);
		CU_ASSERT_EQUAL(reason, k->expect);
		CU_ASSERT_EQUAL(rc == 0, k->expect == 0);
		if (k->reason != NULL)
			CU_ASSERT_TRUE(logged(mark, "refused connection", k->reason));
		cmq_h_close(c);
	}
}

/* ---- publish / subscribe matrix ---- */

struct session {
	const char *name;
	enum how how;
	struct cmq_h_client *c;
};

static struct session sessions[] = {
    {"civitas-air-001", CERT, NULL},    {"civitas-meter-001", CERT, NULL},
    {"civitas-anpr-001", CERT, NULL},   {"civitas-wifi-001", CERT, NULL},
    {"civitas-signal-001", CERT, NULL}, {"nimbus-air-001", CERT, NULL},
    {"nimbus-wifi-001", CERT, NULL},    {"dashboard", PASSWORD, NULL},
    {"traffic-centre", PASSWORD, NULL}, {"field-crew", PASSWORD, NULL},
};

static struct cmq_h_client *who(const char *name)
{
	for (size_t i = 0; i < sizeof(sessions) / sizeof(sessions[0]); i++) {
		if (strcmp(sessions[i].name, name) != 0)
			continue;
		if (sessions[i].c == NULL) {
			char pw[64];
			int reason;

			snprintf(pw, sizeof(pw), "%s-secret", name);
			if (sessions[i].how == CERT)
				cmq_env_connect_cert(&env, name, NULL, 0, &sessions[i].c, &reason);
			else
				cmq_env_connect_password(&env, name, pw, NULL, &sessions[i].c,
				                         &reason);
		}
		return sessions[i].c;
	}
	return NULL;
}

enum act { PUB, PUB_RETAIN, SUB };

static const struct acl_case {
	const char *client;
	enum act act;
	const char *topic;
	int size; /* payload bytes (PUB) */
	bool allowed;
	const char *reason; /* logged reason when denied */
} acl_cases[] = {
    {"civitas-air-001", PUB, "raw/north/air/civitas-air-001", 60, true, NULL},
    {"civitas-air-001", PUB, "raw/north/air/civitas-air-002", 60, false, "NOT_OWN_DEVICE"},
    {"civitas-air-001", PUB, "raw/north/air/civitas-air-0011", 60, false, "NOT_OWN_DEVICE"},
    {"civitas-air-001", PUB, "raw/north/volcano/civitas-air-001", 60, false, "NO_RULE"},
    {"civitas-air-001", PUB, "raw/civitas-air-001/air/civitas-air-001", 60, false,
     "DEVICE_ID_IN_TOPIC"},
    {"civitas-air-001", PUB, "city/north/air", 60, false, "CITY_WRITE_FORBIDDEN"},
    {"civitas-air-001", PUB_RETAIN, "raw/north/air/civitas-air-001", 60, true, NULL},
    {"civitas-wifi-001", PUB_RETAIN, "raw/north/footfall/civitas-wifi-001", 60, false,
     "RETAIN_PERSONAL"},
    {"civitas-wifi-001", PUB, "raw/north/footfall/civitas-wifi-001", 60, true, NULL},
    {"civitas-meter-001", PUB, "raw/south/meter/civitas-meter-001", 60, true, NULL},
    {"civitas-anpr-001", PUB, "raw/north/anpr/civitas-anpr-001", 16384, true, NULL},
    {"civitas-anpr-001", PUB, "raw/north/anpr/civitas-anpr-001", 16385, false, "PAYLOAD_TOO_LARGE"},
    {"nimbus-air-001", PUB, "raw/harbour/air/nimbus-air-001", 60, true, NULL},
    {"nimbus-wifi-001", PUB, "raw/harbour/footfall/nimbus-wifi-001", 60, false, "TIER_RESTRICTED"},
    {"nimbus-wifi-001", PUB, "raw/harbour/meter/nimbus-wifi-001", 60, false,
     "CATEGORY_NOT_PERMITTED"},
    {"nimbus-air-001", SUB, "cmd/harbour/air/nimbus-air-001", 0, false, "RESTRICTED_NO_SUBSCRIBE"},
    {"civitas-signal-001", SUB, "cmd/+/+/civitas-signal-001", 0, true, NULL},
    {"civitas-air-001", SUB, "cmd/north/signal/civitas-signal-001", 0, false, "NO_GRANT"},
    {"civitas-air-001", SUB, "cmd/#", 0, false, "NO_GRANT"},
    {"civitas-air-001", SUB, "raw/#", 0, false, "RAW_READ_FORBIDDEN"},
    {"dashboard", SUB, "raw/#", 0, false, "RAW_READ_FORBIDDEN"},
    {"dashboard", SUB, "$share/d/raw/north/air/+", 0, false, "RAW_READ_FORBIDDEN"},
    {"dashboard", SUB, "#", 0, false, "NO_GRANT"},
    {"dashboard", SUB, "+/+/+/+", 0, false, "NO_GRANT"},
    {"dashboard", SUB, "$SYS/#", 0, false, "RESERVED_TOPIC"},
    {"dashboard", SUB, "city/north/anpr", 0, false, "EXPLICIT_DENY"},
    {"dashboard", SUB, "city/#", 0, true, NULL},
    {"dashboard", PUB, "city/north/air", 60, false, "CITY_WRITE_FORBIDDEN"},
    {"dashboard", PUB, "raw/north/air/civitas-air-001", 60, false, "RAW_WRITE_FORBIDDEN"},
    {"traffic-centre", PUB, "cmd/north/signal/civitas-signal-001", 20, true, NULL},
    {"traffic-centre", PUB, "cmd/north/meter/civitas-meter-001", 20, false, "NO_GRANT"},
    {"field-crew", PUB, "cmd/south/meter/civitas-meter-001", 20, true, NULL},
    {"field-crew", PUB, "cmd/north/signal/civitas-signal-001", 20, false, "EXPLICIT_DENY"},
};

static void TEST_acl_matrix(void)
{
	static char payload[20000];

	memset(payload, 'x', sizeof(payload));
	for (size_t i = 0; i < sizeof(acl_cases) / sizeof(acl_cases[0]); i++) {
		const struct acl_case *k = &acl_cases[i];
		struct cmq_h_client *c = who(k->client);
		size_t mark = cmq_h_log_mark(&env.broker);
		int code = -2, rc;

		CU_ASSERT_PTR_NOT_NULL_FATAL(c);
		if (k->act == SUB)
			rc = cmq_h_subscribe(c, k->topic, 1, &code);
		else
			rc = cmq_h_publish(c, k->topic, payload, k->size, 1, k->act == PUB_RETAIN,
			                   NULL, &code);
		if ((rc == 0) != k->allowed)
			fprintf(stderr, "case %zu: %s %s: rc %d code 0x%x\n", i, k->client,
			        k->topic, rc, (unsigned)code);
		CU_ASSERT_EQUAL(rc == 0, k->allowed);
		if (!k->allowed) {
			CU_ASSERT_EQUAL(code, NOT_AUTHORISED);
			CU_ASSERT_TRUE(
			    logged(mark, k->reason, k->topic[0] == '$' ? NULL : k->topic));
		}
	}
	drain(gw);
}

/* What the gateway, the only reader of raw topics, receives - and that it is stamped. */
static void TEST_provenance_stamped_and_not_forgeable(void)
{
	const char *forged[] = {"civicmq-provenance", "hawkeye/civitas-air-001/trusted/x", NULL};
	const char *forged2[] = {"note", "x", "civicmq-tier", "trusted", NULL};
	const char *note[] = {"note", "hello", NULL};
	struct cmq_h_client *dev = who("civitas-air-001"), *v3 = NULL;
	struct cmq_h_msg m;
	int code = -2, reason;

	drain(gw);
	CU_ASSERT_EQUAL(cmq_h_publish(dev, "raw/north/air/civitas-air-001", "{\"no2\":41}", 10, 1,
	                              false, note, &code),
	                0);
	CU_ASSERT_EQUAL_FATAL(cmq_h_wait_message(gw, 3000, &m), 0);
	CU_ASSERT_STRING_EQUAL(m.topic, "raw/north/air/civitas-air-001");
	CU_ASSERT_STRING_EQUAL(m.payload, "{\"no2\":41}");
	CU_ASSERT_STRING_EQUAL(cmq_h_msg_prop(&m, "note"), "hello");
	CU_ASSERT_PTR_NOT_NULL(cmq_h_msg_prop(&m, "civicmq-provenance"));
	if (cmq_h_msg_prop(&m, "civicmq-provenance") != NULL) {
		char buf[CMQ_PROVENANCE_MAX];
		struct cmq_provenance pv;

		CU_ASSERT_EQUAL_FATAL(cmq_provenance_parse(cmq_h_msg_prop(&m, "civicmq-provenance"),
		                                           buf, sizeof(buf), &pv),
		                      CMQ_OK);
		CU_ASSERT_STRING_EQUAL(pv.vendor, "civitas");
		CU_ASSERT_STRING_EQUAL(pv.device, "civitas-air-001");
		CU_ASSERT_STRING_EQUAL(pv.tier, "trusted");
		CU_ASSERT_EQUAL(strncmp(pv.policy, "2026-11-28.1+", 13), 0);
		CU_ASSERT_EQUAL(strlen(pv.policy), 13 + 12);
	}
	/* Exactly one stamp, after the client's own property. */
	CU_ASSERT_EQUAL(m.nprops, 2);
	cmq_h_msg_clear(&m);

	/* A device trying to claim another vendor is refused, and nothing reaches the gateway. */
	CU_ASSERT_EQUAL(
	    cmq_h_publish(dev, "raw/north/air/civitas-air-001", "{}", 2, 1, false, forged, &code),
	    CMQ_H_REFUSED);
	CU_ASSERT_EQUAL(code, NOT_AUTHORISED);
	CU_ASSERT_EQUAL(
	    cmq_h_publish(dev, "raw/north/air/civitas-air-001", "{}", 2, 1, false, forged2, &code),
	    CMQ_H_REFUSED);
	CU_ASSERT_NOT_EQUAL(cmq_h_wait_message(gw, 500, &m), 0);
	cmq_h_msg_clear(&m);

	/* MQTT 3.1.1 devices carry no properties of their own, but the gateway still gets stamps.
	 */
	CU_ASSERT_EQUAL_FATAL(
	    cmq_env_connect_cert(&env, "civitas-noise-001", NULL, 4, &v3, &reason), 0);
	CU_ASSERT_EQUAL(
	    cmq_h_publish(v3, "raw/centre/noise/civitas-noise-001", "{}", 2, 1, false, NULL, &code),
	    0);
	CU_ASSERT_EQUAL_FATAL(cmq_h_wait_message(gw, 3000, &m), 0);
	CU_ASSERT_PTR_NOT_NULL(cmq_h_msg_prop(&m, "civicmq-provenance"));
	if (cmq_h_msg_prop(&m, "civicmq-provenance") != NULL)
		CU_ASSERT_EQUAL(strncmp(cmq_h_msg_prop(&m, "civicmq-provenance"),
		                        "civitas/civitas-noise-001/trusted/2026-11-28.1+", 47),
		                0);
	cmq_h_msg_clear(&m);
	cmq_h_close(v3);
}

/* A district broker's bridge forwards raw data with the provenance its own plugin stamped. */
static void TEST_bridge_keeps_district_provenance(void)
{
	const char *stamps[] = {"civicmq-provenance", "civitas/civitas-air-042/trusted/district+0",
	                        NULL};
	struct cmq_h_client *br = NULL;
	struct cmq_h_msg m;
	int code, reason;

	CU_ASSERT_EQUAL_FATAL(cmq_env_connect_password(&env, "district-north",
	                                               "district-north-secret", NULL, &br, &reason),
	                      0);
	drain(gw);
	CU_ASSERT_EQUAL(
	    cmq_h_publish(br, "raw/north/air/civitas-air-042", "{}", 2, 1, false, stamps, &code),
	    0);
	CU_ASSERT_EQUAL_FATAL(cmq_h_wait_message(gw, 3000, &m), 0);
	CU_ASSERT_PTR_NOT_NULL(cmq_h_msg_prop(&m, "civicmq-provenance"));
	if (cmq_h_msg_prop(&m, "civicmq-provenance") != NULL)
		CU_ASSERT_STRING_EQUAL(cmq_h_msg_prop(&m, "civicmq-provenance"),
		                       "civitas/civitas-air-042/trusted/district+0");
	CU_ASSERT_EQUAL(m.nprops, 1);
	cmq_h_msg_clear(&m);
	/* A bridge is still bound by the rules: no rule, no raw topic; and it reads nothing raw. */
	CU_ASSERT_EQUAL(cmq_h_publish(br, "raw/north/volcano/x", "{}", 2, 1, false, NULL, &code),
	                CMQ_H_REFUSED);
	CU_ASSERT_EQUAL(cmq_h_subscribe(br, "raw/#", 1, &code), CMQ_H_REFUSED);
	cmq_h_close(br);
}

/* Dashboards see scrubbed topics, never anything under an explicit deny, never raw. */
static void TEST_dashboard_reads_city_only(void)
{
	struct cmq_h_client *dash = who("dashboard"), *gwpub = NULL;
	struct cmq_h_msg m;
	int reason, code;

	CU_ASSERT_EQUAL_FATAL(cmq_env_connect_password(&env, "gateway", "gateway-secret",
	                                               "gateway-pub", &gwpub, &reason),
	                      0);
	drain(dash);
	CU_ASSERT_EQUAL(
	    cmq_h_publish(gwpub, "city/north/anpr", "{\"t\":1}", 7, 1, false, NULL, &code), 0);
	CU_ASSERT_EQUAL(
	    cmq_h_publish(gwpub, "city/north/air", "{\"no2\":40}", 10, 1, false, NULL, &code), 0);
	CU_ASSERT_EQUAL(
	    cmq_h_publish(gwpub, "city/transparency/register", "{}", 2, 1, true, NULL, &code),
	    CMQ_H_REFUSED);
	/* A raw message published now must not reach the dashboard by any route. */
	CU_ASSERT_EQUAL(cmq_h_publish(who("civitas-air-001"), "raw/north/air/civitas-air-001", "{}",
	                              2, 1, false, NULL, &code),
	                0);
	CU_ASSERT_EQUAL_FATAL(cmq_h_wait_message(dash, 3000, &m), 0);
	CU_ASSERT_STRING_EQUAL(m.topic, "city/north/air");
	cmq_h_msg_clear(&m);
	CU_ASSERT_NOT_EQUAL(cmq_h_wait_message(dash, 500, &m), 0);
	cmq_h_msg_clear(&m);
	cmq_h_close(gwpub);
	drain(gw);
}

/* Commands reach only the device they are addressed to. */
static void TEST_commands_reach_own_device(void)
{
	struct cmq_h_client *sig = who("civitas-signal-001");
	struct cmq_h_msg m;
	int code;

	drain(sig);
	CU_ASSERT_EQUAL(cmq_h_publish(who("traffic-centre"), "cmd/north/signal/civitas-signal-001",
	                              "green", 5, 1, false, NULL, &code),
	                0);
	CU_ASSERT_EQUAL_FATAL(cmq_h_wait_message(sig, 3000, &m), 0);
	CU_ASSERT_STRING_EQUAL(m.payload, "green");
	cmq_h_msg_clear(&m);
}

static void TEST_reload_with_broken_file_keeps_policy(void)
{
	struct cmq_env_overrides o = {.policy_text = "{\"version\": \"9\", \"categories\": [\n"};
	struct cmq_h_client *dev = who("civitas-air-001"), *c = NULL;
	size_t mark = cmq_h_log_mark(&env.broker);
	struct cmq_h_msg m;
	int code, reason;

	CU_ASSERT_EQUAL_FATAL(cmq_env_write_config(&env, &o), 0);
	CU_ASSERT_EQUAL(cmq_env_reload(&env), 0);
	CU_ASSERT_TRUE(logged(mark, "policy.json: 2:1: malformed JSON", NULL));
	CU_ASSERT_TRUE(logged(mark, "still enforcing policy 2026-11-28.1+", NULL));
	/* The old policy still decides: allowed traffic flows, denied traffic is denied. */
	drain(gw);
	CU_ASSERT_EQUAL(
	    cmq_h_publish(dev, "raw/north/air/civitas-air-001", "{}", 2, 1, false, NULL, &code), 0);
	CU_ASSERT_EQUAL(cmq_h_wait_message(gw, 3000, &m), 0);
	cmq_h_msg_clear(&m);
	CU_ASSERT_EQUAL(
	    cmq_h_publish(dev, "raw/north/air/civitas-air-002", "{}", 2, 1, false, NULL, &code),
	    CMQ_H_REFUSED);
	CU_ASSERT_EQUAL(cmq_env_connect_cert(&env, "civitas-noise-001", NULL, 0, &c, &reason), 0);
	cmq_h_close(c);

	/* A semantically broken vendors file is refused too, naming path and value. */
	CU_ASSERT_EQUAL_FATAL(cmq_env_write_config(&env, NULL), 0);
	{
		struct cmq_env_overrides bad = {.tier_vendor = {"civitas"},
		                                .tier_value = {"trustworthy"}};

		mark = cmq_h_log_mark(&env.broker);
		CU_ASSERT_EQUAL_FATAL(cmq_env_write_config(&env, &bad), 0);
		CU_ASSERT_EQUAL(cmq_env_reload(&env), 0);
		CU_ASSERT_TRUE(
		    logged(mark, "$.vendors[0].tier: \"trustworthy\" is not a vendor tier", NULL));
	}
	CU_ASSERT_EQUAL_FATAL(cmq_env_write_config(&env, NULL), 0);
	CU_ASSERT_EQUAL(cmq_env_reload(&env), 1);
}

static void TEST_blocking_vendor_cuts_off_connected_device(void)
{
	struct cmq_env_overrides o = {.tier_vendor = {"civitas"}, .tier_value = {"blocked"}};
	struct cmq_h_client *dev = NULL, *nim = NULL, *again = NULL;
	size_t mark;
	int reason, code;

	CU_ASSERT_EQUAL_FATAL(
	    cmq_env_connect_cert(&env, "civitas-noise-001", NULL, 0, &dev, &reason), 0);
	CU_ASSERT_EQUAL_FATAL(
	    cmq_env_connect_cert(&env, "nimbus-air-001", "nimbus-air-001", 0, &nim, &reason), 0);
	mark = cmq_h_log_mark(&env.broker);
	CU_ASSERT_EQUAL_FATAL(cmq_env_write_config(&env, &o), 0);
	CU_ASSERT_EQUAL(cmq_env_reload(&env), 1);
	CU_ASSERT_TRUE(cmq_h_wait_disconnect(dev, 3000));
	CU_ASSERT_TRUE(logged(mark, "disconnecting \"civitas-noise-001\"", "VENDOR_BLOCKED"));
	/* It cannot come back, and other vendors carry on. */
	CU_ASSERT_EQUAL(cmq_env_connect_cert(&env, "civitas-noise-001", NULL, 0, &again, &reason),
	                CMQ_H_REFUSED);
	CU_ASSERT_EQUAL(reason, NOT_AUTHORISED);
	CU_ASSERT_FALSE(cmq_h_wait_disconnect(nim, 200));
	CU_ASSERT_EQUAL(
	    cmq_h_publish(nim, "raw/harbour/air/nimbus-air-001", "{}", 2, 1, false, NULL, &code),
	    0);
	cmq_h_close(again);
	cmq_h_close(dev);
	cmq_h_close(nim);
	/* Every civitas session the suite held is gone too; forget them. */
	for (size_t i = 0; i < sizeof(sessions) / sizeof(sessions[0]); i++) {
		if (strncmp(sessions[i].name, "civitas-", 8) == 0) {
			CU_ASSERT_TRUE(sessions[i].c == NULL ||
			               cmq_h_wait_disconnect(sessions[i].c, 2000));
			cmq_h_close(sessions[i].c);
			sessions[i].c = NULL;
		}
	}
	CU_ASSERT_EQUAL_FATAL(cmq_env_write_config(&env, NULL), 0);
	CU_ASSERT_EQUAL(cmq_env_reload(&env), 1);
	CU_ASSERT_EQUAL(cmq_env_connect_cert(&env, "civitas-noise-001", NULL, 0, &again, &reason),
	                0);
	cmq_h_close(again);
}

static void TEST_revoking_a_device_cuts_it_off(void)
{
	struct cmq_env_overrides o = {.revoke_cn = {"civitas-anpr-001"}};
	struct cmq_h_client *anpr = NULL, *air = NULL, *again = NULL;
	size_t mark;
	int reason;

	CU_ASSERT_EQUAL_FATAL(
	    cmq_env_connect_cert(&env, "civitas-anpr-001", NULL, 0, &anpr, &reason), 0);
	CU_ASSERT_EQUAL_FATAL(cmq_env_connect_cert(&env, "civitas-air-001", NULL, 0, &air, &reason),
	                      0);
	mark = cmq_h_log_mark(&env.broker);
	CU_ASSERT_EQUAL_FATAL(cmq_env_write_config(&env, &o), 0);
	CU_ASSERT_EQUAL(cmq_env_reload(&env), 1);
	CU_ASSERT_TRUE(cmq_h_wait_disconnect(anpr, 3000));
	CU_ASSERT_TRUE(logged(mark, "disconnecting \"civitas-anpr-001\"", "SERIAL_REVOKED"));
	CU_ASSERT_FALSE(cmq_h_wait_disconnect(air, 200));
	CU_ASSERT_EQUAL(cmq_env_connect_cert(&env, "civitas-anpr-001", NULL, 0, &again, &reason),
	                CMQ_H_REFUSED);
	CU_ASSERT_TRUE(logged(mark, "refused connection \"civitas-anpr-001\"", "SERIAL_REVOKED"));
	cmq_h_close(again);
	cmq_h_close(anpr);
	cmq_h_close(air);
	CU_ASSERT_EQUAL_FATAL(cmq_env_write_config(&env, NULL), 0);
	CU_ASSERT_EQUAL(cmq_env_reload(&env), 1);
}

static void TEST_removed_operator_is_cut_off(void)
{
	struct cmq_env_overrides o = {.drop_operator = {"traffic-centre"}};
	struct cmq_h_client *tc = NULL;
	size_t mark;
	int reason;

	CU_ASSERT_EQUAL_FATAL(cmq_env_connect_password(&env, "traffic-centre",
	                                               "traffic-centre-secret", "traffic-centre-2",
	                                               &tc, &reason),
	                      0);
	mark = cmq_h_log_mark(&env.broker);
	CU_ASSERT_EQUAL_FATAL(cmq_env_write_config(&env, &o), 0);
	CU_ASSERT_EQUAL(cmq_env_reload(&env), 1);
	CU_ASSERT_TRUE(cmq_h_wait_disconnect(tc, 3000));
	CU_ASSERT_TRUE(logged(mark, "disconnecting \"traffic-centre-2\"", "UNKNOWN_OPERATOR"));
	cmq_h_close(tc);
	CU_ASSERT_EQUAL_FATAL(cmq_env_write_config(&env, NULL), 0);
	CU_ASSERT_EQUAL(cmq_env_reload(&env), 1);
	/* The gateway, untouched by all of this, is still connected. */
	CU_ASSERT_FALSE(cmq_h_wait_disconnect(gw, 100));
}

/*
 * On SIGHUP Mosquitto 2.0.11 re-runs authentication for every client it knows, offline
 * persistent sessions included, which have no certificate any more. The plugin judges
 * those by the policy, not by credentials they no longer present: a device's offline
 * session (and the commands queued for it) survives a reload, unless its vendor is
 * blocked.
 */
static void TEST_offline_sessions_survive_reload(void)
{
	struct cmq_h_client *sig = NULL, *tc = NULL;
	struct cmq_h_msg m;
	size_t mark;
	int granted, code, reason;

	CU_ASSERT_EQUAL_FATAL(
	    cmq_env_connect_cert_persistent(&env, "civitas-signal-001", &sig, &reason), 0);
	CU_ASSERT_EQUAL_FATAL(cmq_h_subscribe(sig, "cmd/+/+/civitas-signal-001", 1, &granted), 0);
	mark = cmq_h_log_mark(&env.broker);
	cmq_h_close(sig); /* offline now, its session kept */
	CU_ASSERT_TRUE(logged(mark, "Client civitas-signal-001 disconnected", NULL));
	mark = cmq_h_log_mark(&env.broker);
	CU_ASSERT_EQUAL(cmq_env_reload(&env), 1);
	CU_ASSERT_FALSE(cmq_h_log_contains(&env.broker, mark, "refused connection"));
	CU_ASSERT_FALSE(cmq_h_log_contains(&env.broker, mark, "not authorised"));
	CU_ASSERT_EQUAL_FATAL(cmq_env_connect_password(&env, "traffic-centre",
	                                               "traffic-centre-secret", "traffic-centre-3",
	                                               &tc, &reason),
	                      0);
	CU_ASSERT_EQUAL(cmq_h_publish(tc, "cmd/north/signal/civitas-signal-001", "green", 5, 1,
	                              false, NULL, &code),
	                0);
	cmq_h_close(tc);
	CU_ASSERT_EQUAL_FATAL(
	    cmq_env_connect_cert_persistent(&env, "civitas-signal-001", &sig, &reason), 0);
	CU_ASSERT_EQUAL(cmq_h_wait_message(sig, 3000, &m), 0);
	if (m.payload != NULL)
		CU_ASSERT_STRING_EQUAL(m.payload, "green");
	cmq_h_msg_clear(&m);
	cmq_h_close(sig);
}

/* The plugin refuses to start the broker on a broken policy, and says why. */
static void TEST_broken_policy_at_start_refuses_to_start(void)
{
	struct cmq_env bad;
	struct cmq_env_overrides o = {.policy_text = "{\"version\": \"x\"}"};

	CU_ASSERT_EQUAL_FATAL(cmq_env_init(&bad, &o), 0);
	CU_ASSERT_NOT_EQUAL(cmq_env_start(&bad, NULL), 0);
	CU_ASSERT_TRUE(cmq_h_log_contains(&bad.broker, 0, "$.categories: missing required field"));
	CU_ASSERT_TRUE(cmq_h_log_contains(&bad.broker, 0, "start: policy not loaded"));
	cmq_env_stop(&bad);
}

int main(void)
{
	static const struct cmq_itest tests[] = {
	    {"connect_matrix", TEST_connect_matrix},
	    {"acl_matrix", TEST_acl_matrix},
	    {"provenance_stamped_and_not_forgeable", TEST_provenance_stamped_and_not_forgeable},
	    {"bridge_keeps_district_provenance", TEST_bridge_keeps_district_provenance},
	    {"dashboard_reads_city_only", TEST_dashboard_reads_city_only},
	    {"commands_reach_own_device", TEST_commands_reach_own_device},
	    {"reload_with_broken_file_keeps_policy", TEST_reload_with_broken_file_keeps_policy},
	    {"blocking_vendor_cuts_off_connected_device",
	     TEST_blocking_vendor_cuts_off_connected_device},
	    {"revoking_a_device_cuts_it_off", TEST_revoking_a_device_cuts_it_off},
	    {"removed_operator_is_cut_off", TEST_removed_operator_is_cut_off},
	    {"offline_sessions_survive_reload", TEST_offline_sessions_survive_reload},
	    {"broken_policy_at_start_refuses_to_start",
	     TEST_broken_policy_at_start_refuses_to_start},
	};

	return cmq_itest_run("plugin", suite_init, suite_cleanup, tests,
	                     sizeof(tests) / sizeof(tests[0]));
}
