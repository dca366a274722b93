/*
 * civicmq_env.h - a running civicmq for integration tests and benchmarks: the example
 * city's policy (config/ JSON files) with the example PKI's real fingerprints pinned, known test
 * passwords, and a real mosquitto loading build/civicmq_plugin.so on two loopback ports:
 *
 *   port[0]  devices (and certificate operators): mutual TLS, require_certificate true,
 *            cafile = the test bundle (which also holds the shadow vendor's CA and the
 *            foreign CA, so that the plugin - not TLS - decides and explains)
 *   port[1]  operators by password, over TLS (server authentication only)
 *
 * Test operators (password "<username>-secret"): gateway, dashboard, traffic-centre
 * (traffic-control), field-crew (maintenance), lez-office (enforcement), district-north
 * (bridge: a district broker forwarding its raw data); admin has a
 * certificate only. vendors.json revokes the serial of bad/civitas-revoked-001.
 *
 * Config changes for reload tests go through cmq_env_write_config() with overrides and
 * then cmq_env_reload(), which waits for the plugin's verdict in the log.
 */
#ifndef CMQ_CIVICMQ_ENV_H
#define CMQ_CIVICMQ_ENV_H

#include "harness.h"

#include <stdbool.h>

#define CMQ_ENV_MAX_OVERRIDES 8

struct cmq_env_overrides {
	/* vendor id -> tier */
	const char *tier_vendor[CMQ_ENV_MAX_OVERRIDES];
	const char *tier_value[CMQ_ENV_MAX_OVERRIDES];
	/* extra revoked device CNs (their serials are looked up in the manifest) */
	const char *revoke_cn[CMQ_ENV_MAX_OVERRIDES];
	/* operators to leave out */
	const char *drop_operator[CMQ_ENV_MAX_OVERRIDES];
	/* if set, written as policy.json verbatim instead of the example */
	const char *policy_text;
};

struct cmq_env {
	char dir[CMQ_H_PATH_MAX];
	char policy[CMQ_H_PATH_MAX + 32];
	char vendors[CMQ_H_PATH_MAX + 32];
	char operators[CMQ_H_PATH_MAX + 32];
	char cafile[CMQ_H_PATH_MAX + 32]; /* bundle the clients use to verify the server */
	struct cmq_h_broker broker;
};

/* Make a config dir and write the example config (overrides may be NULL). 0 or -1. */
int cmq_env_init(struct cmq_env *e, const struct cmq_env_overrides *o);
/* Rewrite the config files (atomically: temp file + rename). 0 or -1. */
int cmq_env_write_config(struct cmq_env *e, const struct cmq_env_overrides *o);
/* Start the broker with the plugin (extra_conf, if non-NULL, is appended to mosquitto.conf). */
int cmq_env_start(struct cmq_env *e, const char *extra_conf);
/*
 * SIGHUP, then wait for the plugin to report the outcome: returns 1 if a new policy was
 * loaded, 0 if the reload failed (old policy kept), -1 if neither was logged in time.
 */
int cmq_env_reload(struct cmq_env *e);
void cmq_env_stop(struct cmq_env *e);

/*
 * Connect with the certificate of a manifest entry (a device CN, an operator name, or a
 * "bad/..." name such as "civitas-revoked-001") on the device port. client_id NULL = the
 * CN. protocol 0 = v5. Same return convention as cmq_h_connect.
 */
int cmq_env_connect_cert(struct cmq_env *e, const char *name, const char *client_id, int protocol,
                         struct cmq_h_client **out, int *reason);
/* The same, as an MQTT 3.1.1 client with a persistent session (clean session off). */
int cmq_env_connect_cert_persistent(struct cmq_env *e, const char *name, struct cmq_h_client **out,
                                    int *reason);
/* Connect with a username and password on the operator port (client id NULL = username). */
int cmq_env_connect_password(struct cmq_env *e, const char *username, const char *password,
                             const char *client_id, struct cmq_h_client **out, int *reason);

/* The serial of a manifest entry (devices, operators, bad), or NULL. Static buffer. */
const char *cmq_env_serial(const char *name);

#endif
