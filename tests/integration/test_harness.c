/*
 * test_harness.c - proves the integration harness against a real mosquitto without the
 * civicmq plugin: mTLS with the example PKI (accepted, missing, expired and foreign-CA
 * client certificates), a plain listener, QoS 1 publish with MQTT v5 user properties
 * across listeners, v3.1.1 clients, CONNACK refusals, session takeover, reload, log
 * polling, and that stopping a broker leaves no process behind.
 *
 * One broker serves the suite: @PORT0@ mTLS with ca-bundle.pem (as production), @PORT1@
 * plain and anonymous, @PORT2@ mTLS with ca-bundle-test.pem (which adds the foreign CA
 * whose subject equals the civitas CA's). The last tests start brokers of their own.
 */
#include "harness.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <mosquitto.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static const char suite_conf[] = "per_listener_settings true\n"
                                 "log_dest file @DIR@/mosquitto.log\n"
                                 "log_type all\n"
                                 "\n"
                                 "listener @PORT0@ 127.0.0.1\n"
                                 "cafile @PKI@/ca-bundle.pem\n"
                                 "certfile @PKI@/server/server.pem\n"
                                 "keyfile @PKI@/server/server.key\n"
                                 "require_certificate true\n"
                                 "use_identity_as_username true\n"
                                 "allow_anonymous false\n"
                                 "\n"
                                 "listener @PORT1@ 127.0.0.1\n"
                                 "allow_anonymous true\n"
                                 "\n"
                                 "listener @PORT2@ 127.0.0.1\n"
                                 "cafile @PKI@/ca-bundle-test.pem\n"
                                 "certfile @PKI@/server/server.pem\n"
                                 "keyfile @PKI@/server/server.key\n"
                                 "require_certificate true\n"
                                 "use_identity_as_username true\n"
                                 "allow_anonymous false\n";

static const char closed_conf[] = "log_dest file @DIR@/mosquitto.log\n"
                                  "log_type all\n"
                                  "listener @PORT0@ 127.0.0.1\n"
                                  "allow_anonymous false\n";

static struct cmq_h_broker broker;

enum { TLS_PORT, PLAIN_PORT, TEST_BUNDLE_PORT };

/* Client options for a certificate under the PKI dir, e.g. stem "bad/civitas-expired-001". */
struct tls_client {
	char cafile[CMQ_H_PATH_MAX + 32];
	char cert[CMQ_H_PATH_MAX + 128];
	char key[CMQ_H_PATH_MAX + 128];
	struct cmq_h_client_opts o;
};

static void tls_client_init(struct tls_client *t, const char *id, const char *stem, int port)
{
	const char *pki = cmq_h_pki_dir();

	memset(t, 0, sizeof(*t));
	snprintf(t->cafile, sizeof(t->cafile), "%s/ca-bundle.pem", pki ? pki : "");
	t->o.id = id;
	t->o.cafile = t->cafile;
	t->o.port = port;
	t->o.clean = true;
	if (stem != NULL) {
		snprintf(t->cert, sizeof(t->cert), "%s/%s.pem", pki ? pki : "", stem);
		snprintf(t->key, sizeof(t->key), "%s/%s.key", pki ? pki : "", stem);
		t->o.certfile = t->cert;
		t->o.keyfile = t->key;
	}
}

static struct cmq_h_client_opts plain_opts(const char *id, int protocol)
{
	struct cmq_h_client_opts o;

	memset(&o, 0, sizeof(o));
	o.id = id;
	o.port = broker.port[PLAIN_PORT];
	o.protocol = protocol;
	o.clean = true;
	return o;
}

static int suite_init(void)
{
	if (cmq_h_pki_dir() == NULL)
		return -1;
	return cmq_h_broker_start(&broker, suite_conf) == 0 ? 0 : -1;
}

static int suite_cleanup(void)
{
	if (broker.pid > 0 && cmq_h_broker_stop(&broker) != 0)
		return -1;
	return 0;
}

static void TEST_device_connects_over_mtls(void)
{
	struct tls_client t;
	struct cmq_h_client *c = NULL;
	int reason = 99;

	tls_client_init(&t, "civitas-air-001", "vendors/civitas/devices/civitas-air-001",
	                broker.port[TLS_PORT]);
	CU_ASSERT_EQUAL(cmq_h_connect(&t.o, &c, &reason), 0);
	CU_ASSERT_EQUAL(reason, 0);
	CU_ASSERT_PTR_NOT_NULL(c);
	cmq_h_close(c);
}

static void TEST_no_client_cert_fails_handshake(void)
{
	struct tls_client t;
	struct cmq_h_client *c = NULL;
	int reason = 99;

	tls_client_init(&t, "civitas-air-001", NULL, broker.port[TLS_PORT]);
	CU_ASSERT_EQUAL(cmq_h_connect(&t.o, &c, &reason), CMQ_H_ERR);
	CU_ASSERT_EQUAL(reason, -1);
	CU_ASSERT_PTR_NULL(c);
	cmq_h_close(c);
}

static void TEST_foreign_ca_fails_handshake(void)
{
	struct tls_client t;
	struct cmq_h_client *c = NULL;
	int reason = 99;

	/* Same subject and CN as the real civitas device, but its CA is not in the bundle. */
	tls_client_init(&t, "civitas-air-001", "bad/foreign-civitas-air-001",
	                broker.port[TLS_PORT]);
	CU_ASSERT_EQUAL(cmq_h_connect(&t.o, &c, &reason), CMQ_H_ERR);
	CU_ASSERT_EQUAL(reason, -1);
	CU_ASSERT_PTR_NULL(c);
	cmq_h_close(c);
}

static void TEST_expired_cert_fails_handshake(void)
{
	struct tls_client t;
	struct cmq_h_client *c = NULL;
	int reason = 99;
	size_t mark = cmq_h_log_mark(&broker);

	tls_client_init(&t, "civitas-expired-001", "bad/civitas-expired-001",
	                broker.port[TLS_PORT]);
	CU_ASSERT_EQUAL(cmq_h_connect(&t.o, &c, &reason), CMQ_H_ERR);
	CU_ASSERT_EQUAL(reason, -1);
	CU_ASSERT_PTR_NULL(c);
	/* The broker says why. */
	CU_ASSERT_TRUE(cmq_h_log_wait(&broker, mark, "certificate verify failed", 2000));
	cmq_h_close(c);
}

/*
 * With ca-bundle-test.pem the foreign CA sits next to the real civitas CA under the very
 * same subject name. OpenSSL picks the issuer by name and authority key identifier and
 * checks the signature, so the forged device passes TLS: the plugin (not TLS) has to tell
 * the two apart by the pinned fingerprint. The genuine device still passes too.
 */
static void TEST_foreign_ca_passes_tls_when_in_bundle(void)
{
	struct tls_client t;
	struct cmq_h_client *c = NULL;
	int reason = 99;
	size_t mark = cmq_h_log_mark(&broker);

	tls_client_init(&t, "civitas-air-001", "bad/foreign-civitas-air-001",
	                broker.port[TEST_BUNDLE_PORT]);
	CU_ASSERT_EQUAL(cmq_h_connect(&t.o, &c, &reason), 0);
	CU_ASSERT_EQUAL(reason, 0);
	CU_ASSERT_TRUE(cmq_h_log_wait(&broker, mark, "u'civitas-air-001'", 2000));
	cmq_h_close(c);
	c = NULL;

	tls_client_init(&t, "civitas-air-001", "vendors/civitas/devices/civitas-air-001",
	                broker.port[TEST_BUNDLE_PORT]);
	CU_ASSERT_EQUAL(cmq_h_connect(&t.o, &c, &reason), 0);
	CU_ASSERT_EQUAL(reason, 0);
	cmq_h_close(c);
}

static void TEST_publish_with_user_property_reaches_plain_subscriber(void)
{
	static const char *const props[] = {"origin", "harness", "unit", "ug/m3", NULL};
	static const char payload[] = "{\"pm25\":12.5}";
	struct cmq_h_client_opts so = plain_opts("harness-sub", 5);
	struct tls_client t;
	struct cmq_h_client *sub = NULL;
	struct cmq_h_client *pub = NULL;
	struct cmq_h_msg m;
	int reason = 99;
	int granted = 99;

	CU_ASSERT_EQUAL_FATAL(cmq_h_connect(&so, &sub, &reason), 0);
	CU_ASSERT_EQUAL(cmq_h_subscribe(sub, "raw/+/air/#", 1, &granted), 0);
	CU_ASSERT_EQUAL(granted, 1);

	tls_client_init(&t, "civitas-air-001", "vendors/civitas/devices/civitas-air-001",
	                broker.port[TLS_PORT]);
	CU_ASSERT_EQUAL(cmq_h_connect(&t.o, &pub, &reason), 0);
	if (pub != NULL) {
		CU_ASSERT_EQUAL(cmq_h_publish(pub, "raw/centre/air/civitas-air-001", payload,
		                              (int)strlen(payload), 1, false, props, &reason),
		                0);
		CU_ASSERT_EQUAL(reason, 0); /* a subscriber exists, so not 0x10 */
	}
	CU_ASSERT_EQUAL(cmq_h_wait_message(sub, 3000, &m), 0);
	CU_ASSERT_STRING_EQUAL(m.topic ? m.topic : "", "raw/centre/air/civitas-air-001");
	CU_ASSERT_EQUAL(m.payloadlen, (int)strlen(payload));
	CU_ASSERT_STRING_EQUAL(m.payload ? m.payload : "", payload);
	CU_ASSERT_EQUAL(m.qos, 1);
	CU_ASSERT_FALSE(m.retain);
	CU_ASSERT_EQUAL(m.nprops, 2);
	CU_ASSERT_STRING_EQUAL(cmq_h_msg_prop(&m, "origin") ? cmq_h_msg_prop(&m, "origin") : "",
	                       "harness");
	CU_ASSERT_STRING_EQUAL(cmq_h_msg_prop(&m, "unit") ? cmq_h_msg_prop(&m, "unit") : "",
	                       "ug/m3");
	CU_ASSERT_PTR_NULL(cmq_h_msg_prop(&m, "absent"));
	cmq_h_msg_clear(&m);
	CU_ASSERT_PTR_NULL(m.topic);
	/* Nothing else arrives. */
	CU_ASSERT_EQUAL(cmq_h_wait_message(sub, 100, &m), CMQ_H_ERR);
	CU_ASSERT_EQUAL(cmq_h_dropped(sub), 0);
	cmq_h_close(pub);
	cmq_h_close(sub);
}

static void TEST_publish_without_subscribers_reports_0x10(void)
{
	struct cmq_h_client_opts o = plain_opts("harness-lonely", 5);
	struct cmq_h_client *c = NULL;
	int reason = 99;

	CU_ASSERT_EQUAL_FATAL(cmq_h_connect(&o, &c, &reason), 0);
	CU_ASSERT_EQUAL(cmq_h_publish(c, "nobody/listens", "x", 1, 1, false, NULL, &reason), 0);
	CU_ASSERT_EQUAL(reason, 0x10);
	CU_ASSERT_EQUAL(cmq_h_publish(c, "nobody/listens", "x", 1, 0, false, NULL, &reason), 0);
	CU_ASSERT_EQUAL(reason, 0);
	cmq_h_close(c);
}

static void TEST_v311_client_round_trip(void)
{
	struct cmq_h_client_opts o = plain_opts("harness-v311", 4);
	struct cmq_h_client *c = NULL;
	struct cmq_h_msg m;
	int reason = 99;
	int granted = 99;
	static const char *const props[] = {"k", "v", NULL};

	CU_ASSERT_EQUAL_FATAL(cmq_h_connect(&o, &c, &reason), 0);
	CU_ASSERT_EQUAL(reason, 0);
	CU_ASSERT_EQUAL(cmq_h_subscribe(c, "v311/#", 1, &granted), 0);
	CU_ASSERT_EQUAL(granted, 1);
	CU_ASSERT_EQUAL(cmq_h_publish(c, "v311/echo", "hi", 2, 1, false, NULL, &reason), 0);
	CU_ASSERT_EQUAL(reason, 0);
	CU_ASSERT_EQUAL(cmq_h_wait_message(c, 3000, &m), 0);
	CU_ASSERT_STRING_EQUAL(m.topic ? m.topic : "", "v311/echo");
	CU_ASSERT_EQUAL(m.nprops, 0);
	cmq_h_msg_clear(&m);
	/* User properties need MQTT v5. */
	CU_ASSERT_EQUAL(cmq_h_publish(c, "v311/echo", "hi", 2, 1, false, props, &reason),
	                CMQ_H_ERR);
	cmq_h_close(c);
}

static void TEST_session_takeover_disconnects_first_client(void)
{
	struct cmq_h_client_opts o = plain_opts("harness-twin", 5);
	struct cmq_h_client *first = NULL;
	struct cmq_h_client *second = NULL;

	CU_ASSERT_EQUAL_FATAL(cmq_h_connect(&o, &first, NULL), 0);
	CU_ASSERT_FALSE(cmq_h_wait_disconnect(first, 100));
	CU_ASSERT_EQUAL(cmq_h_disconnect_reason(first), -1);
	CU_ASSERT_EQUAL(cmq_h_connect(&o, &second, NULL), 0);
	CU_ASSERT_TRUE(cmq_h_wait_disconnect(first, 2000));
	/* Mosquitto 2.0.11 just closes the old socket (no v5 DISCONNECT 0x8E). */
	CU_ASSERT_TRUE(cmq_h_disconnect_reason(first) == MOSQ_ERR_CONN_LOST ||
	               cmq_h_disconnect_reason(first) == 0x8E);
	CU_ASSERT_FALSE(cmq_h_wait_disconnect(second, 100));
	CU_ASSERT_EQUAL(cmq_h_publish(first, "x", "x", 1, 0, false, NULL, NULL), CMQ_H_ERR);
	cmq_h_close(first);
	cmq_h_close(second);
}

static void TEST_log_wait_sees_connect_line(void)
{
	struct tls_client t;
	struct cmq_h_client *c = NULL;
	size_t mark = cmq_h_log_mark(&broker);

	CU_ASSERT_TRUE(mark > 0);
	CU_ASSERT_FALSE(cmq_h_log_contains(&broker, mark, "as nimbus-air-001"));
	tls_client_init(&t, "nimbus-air-001", "vendors/nimbus/devices/nimbus-air-001",
	                broker.port[TLS_PORT]);
	CU_ASSERT_EQUAL(cmq_h_connect(&t.o, &c, NULL), 0);
	/* "New client connected from 127.0.0.1:... as nimbus-air-001 (p5, c1, k60,
	 * u'nimbus-air-001')." - the username is the certificate CN. */
	CU_ASSERT_TRUE(cmq_h_log_wait(&broker, mark, "as nimbus-air-001 (p5", 2000));
	CU_ASSERT_TRUE(cmq_h_log_contains(&broker, mark, "u'nimbus-air-001'"));
	/* Bounded, and false for what never comes. */
	CU_ASSERT_FALSE(cmq_h_log_wait(&broker, mark, "no such line in any log", 100));
	/* Lines before the mark are not seen. */
	CU_ASSERT_FALSE(cmq_h_log_contains(&broker, cmq_h_log_mark(&broker), "nimbus-air-001"));
	cmq_h_close(c);
}

static void TEST_reload_reaches_broker(void)
{
	size_t mark = cmq_h_log_mark(&broker);

	CU_ASSERT_EQUAL(cmq_h_broker_reload(&broker), 0);
	CU_ASSERT_TRUE(cmq_h_log_wait(&broker, mark, "Reloading config", 3000));
	CU_ASSERT_TRUE(cmq_h_broker_alive(&broker));
}

static void TEST_connack_refusal_and_stop_leaves_no_process(void)
{
	struct cmq_h_broker b;
	struct cmq_h_client_opts o;
	struct cmq_h_client *c = NULL;
	int reason = 99;
	pid_t pid;
	int port;

	CU_ASSERT_EQUAL_FATAL(cmq_h_broker_start(&b, closed_conf), 0);
	pid = b.pid;
	port = b.port[0];
	CU_ASSERT_TRUE(pid > 0);
	CU_ASSERT_EQUAL(kill(pid, 0), 0);
	CU_ASSERT_FALSE(b.port_used[1]);

	memset(&o, 0, sizeof(o));
	o.id = "anonymous-v5";
	o.port = port;
	o.clean = true;
	CU_ASSERT_EQUAL(cmq_h_connect(&o, &c, &reason), CMQ_H_REFUSED);
	CU_ASSERT_EQUAL(reason, 0x87); /* not authorised */
	CU_ASSERT_PTR_NULL(c);
	o.protocol = 4;
	CU_ASSERT_EQUAL(cmq_h_connect(&o, &c, &reason), CMQ_H_REFUSED);
	CU_ASSERT_EQUAL(reason, 5); /* v3.1.1 "not authorised" */

	CU_ASSERT_EQUAL(cmq_h_broker_stop(&b), 0);
	CU_ASSERT_EQUAL(b.pid, 0);
	CU_ASSERT_EQUAL(kill(pid, 0), -1);
	CU_ASSERT_EQUAL(errno, ESRCH);
	CU_ASSERT_EQUAL(cmq_h_broker_stop(&b), -1);
	CU_ASSERT_FALSE(cmq_h_broker_alive(&b));
	/* Nobody listens there any more. */
	o.protocol = 5;
	CU_ASSERT_EQUAL(cmq_h_connect(&o, &c, &reason), CMQ_H_ERR);
	CU_ASSERT_EQUAL(reason, -1);
}

static void TEST_free_port_is_bindable(void)
{
	int a = cmq_h_free_port();
	int b = cmq_h_free_port();

	CU_ASSERT_TRUE(a > 0 && a < 65536);
	CU_ASSERT_TRUE(b > 0 && b < 65536);
}

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
    {"device connects over mTLS", TEST_device_connects_over_mtls},
    {"no client certificate fails the handshake", TEST_no_client_cert_fails_handshake},
    {"foreign CA fails the handshake", TEST_foreign_ca_fails_handshake},
    {"expired certificate fails the handshake", TEST_expired_cert_fails_handshake},
    {"foreign CA passes TLS when in the bundle", TEST_foreign_ca_passes_tls_when_in_bundle},
    {"QoS 1 publish with user properties reaches a plain v5 subscriber",
     TEST_publish_with_user_property_reaches_plain_subscriber},
    {"publish without subscribers reports 0x10", TEST_publish_without_subscribers_reports_0x10},
    {"v3.1.1 client round trip", TEST_v311_client_round_trip},
    {"session takeover disconnects the first client",
     TEST_session_takeover_disconnects_first_client},
    {"log wait sees the connect line", TEST_log_wait_sees_connect_line},
    {"reload reaches the broker", TEST_reload_reaches_broker},
    {"CONNACK refusal, and stop leaves no process",
     TEST_connack_refusal_and_stop_leaves_no_process},
    {"free port", TEST_free_port_is_bindable},
};

int main(void)
{
	CU_pSuite suite;
	unsigned failed;

	cmq_h_init();
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	suite = CU_add_suite("harness", suite_init, suite_cleanup);
	if (suite == NULL) {
		CU_cleanup_registry();
		return 1;
	}
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (CU_add_test(suite, tests[i].name, tests[i].fn) == NULL) {
			CU_cleanup_registry();
			return 1;
		}
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
	CU_cleanup_registry();
	return failed > 255 ? 255 : (int)failed;
}
