/*
 * tool_mqtt.c - the connection helpers of tool_mqtt.h.
 */
#include "tool_mqtt.h"

#include <errno.h>

#include <mqtt_protocol.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void tool_conn_init(struct tool_conn *c)
{
	memset(c, 0, sizeof(*c));
	c->connack = -1;
}

void tool_conn_cleanup(struct tool_conn *c)
{
	free(c->connack_reason);
	c->connack_reason = NULL;
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
	struct tool_conn *c = obj;

	(void)mosq;
	(void)flags;
	c->connack = rc;
	if (rc != 0 && c->connack_reason == NULL)
		mosquitto_property_read_string(props, MQTT_PROP_REASON_STRING, &c->connack_reason,
		                               false);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
                          const mosquitto_property *props)
{
	struct tool_conn *c = obj;

	(void)mosq;
	(void)props;
	c->disconnected = true;
	c->disconnect_rc = rc;
}

void tool_conn_callbacks(struct mosquitto *mosq)
{
	mosquitto_connect_v5_callback_set(mosq, on_connect);
	mosquitto_disconnect_v5_callback_set(mosq, on_disconnect);
}

int tool_read_password(const char *prog, const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");

	buf[0] = '\0';
	if (f == NULL) {
		fprintf(stderr, "%s: --password-file \"%s\": %s\n", prog, path, strerror(errno));
		return -1;
	}
	if (fgets(buf, (int)n, f) == NULL)
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0') {
		fprintf(stderr, "%s: --password-file \"%s\": the first line is empty\n", prog,
		        path);
		return -1;
	}
	return 0;
}

struct mosquitto *tool_client_new(const char *prog, const struct tool_client_opts *o, void *obj)
{
	struct mosquitto *mosq = mosquitto_new(o->client_id, true, obj);
	int rc;

	if (mosq == NULL) {
		fprintf(stderr, "%s: cannot create a client: %s\n", prog, strerror(errno));
		return NULL;
	}
	mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	tool_conn_callbacks(mosq);
	if (o->username != NULL &&
	    (rc = mosquitto_username_pw_set(mosq, o->username, o->password)) != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "%s: --username \"%s\": %s\n", prog, o->username,
		        mosquitto_strerror(rc));
		mosquitto_destroy(mosq);
		return NULL;
	}
	if (o->cafile != NULL && (rc = mosquitto_tls_set(mosq, o->cafile, NULL, o->cert, o->key,
	                                                 NULL)) != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "%s: TLS setup failed (--cafile \"%s\"%s%s%s%s%s%s): %s\n", prog,
		        o->cafile, o->cert ? ", --cert \"" : "", o->cert ? o->cert : "",
		        o->cert ? "\"" : "", o->key ? ", --key \"" : "", o->key ? o->key : "",
		        o->key ? "\"" : "", mosquitto_strerror(rc));
		mosquitto_destroy(mosq);
		return NULL;
	}
	return mosq;
}

int tool_client_connect(const char *prog, struct mosquitto *mosq, const char *who, const char *host,
                        long port)
{
	int rc = mosquitto_connect_bind_v5(mosq, host, (int)port, 30, NULL, NULL);

	if (rc == MOSQ_ERR_SUCCESS)
		return 0;
	fprintf(stderr, "%s: cannot connect %s to %s:%ld: %s\n", prog, who, host, port,
	        rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
	return -1;
}

const char *tool_disconnect_text(int rc)
{
	if (rc >= 0x80 && rc <= 0xff)
		return mosquitto_reason_string(rc);
	if (rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_UNKNOWN)
		return "the broker closed the connection";
	return mosquitto_strerror(rc);
}

long long tool_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool tool_pump(struct mosquitto *mosq, struct tool_conn *c, long long wait_ms, int slice_ms)
{
	int rc;

	if (wait_ms > slice_ms)
		wait_ms = slice_ms;
	if (wait_ms < 0)
		wait_ms = 0;
	rc = mosquitto_loop(mosq, (int)wait_ms, 1);
	if (rc != MOSQ_ERR_SUCCESS && !c->disconnected) {
		c->disconnected = true;
		c->disconnect_rc = rc;
	}
	return !c->disconnected;
}

int tool_await_connack(const char *prog, struct mosquitto *mosq, struct tool_conn *c,
                       const volatile sig_atomic_t *stop, const char *who, const char *host,
                       long port, int timeout_ms, int slice_ms, const char *hint)
{
	long long deadline = tool_now_ms() + timeout_ms;

	while (c->connack < 0 && !*stop && tool_now_ms() < deadline)
		if (!tool_pump(mosq, c, deadline - tool_now_ms(), slice_ms))
			break;
	if (c->connack == 0)
		return 0;
	if (c->connack > 0)
		fprintf(stderr, "%s: broker refused the connection of %s: %s (0x%02x)%s%s\n", prog,
		        who, mosquitto_reason_string(c->connack), (unsigned)c->connack,
		        c->connack_reason ? ": " : "", c->connack_reason ? c->connack_reason : "");
	else if (*stop)
		fprintf(stderr, "%s: interrupted while connecting\n", prog);
	else if (c->disconnected)
		fprintf(stderr, "%s: connection of %s to %s:%ld closed before CONNACK: %s%s%s\n",
		        prog, who, host, port, mosquitto_strerror(c->disconnect_rc),
		        hint ? " " : "", hint ? hint : "");
	else
		fprintf(stderr, "%s: no CONNACK from %s:%ld within %d ms\n", prog, host, port,
		        timeout_ms);
	return 1;
}
