/*
 * civicmq-dash - a dashboard client: subscribes to the scrubbed city feed (or any filters
 * its account may read) over MQTT v5 with TLS and prints every message, either as a
 * readable line "<topic> <payload> [name=value ...]" or, with --json, as one JSON object
 * per line: {"topic":..,"payload":<the parsed JSON, else a string>,"properties":{user
 * properties}}.
 *
 *   civicmq-dash --port 8884 --cafile ca.pem --username dashboard \
 *                --password-file dashboard.pw --topic 'city/#' --json
 *
 * Refused subscriptions (SUBACK reason >= 0x80) are reported on stderr; if every one was
 * refused the tool exits 1. One thread: mosquitto_loop() pumped in slices of at most
 * 100 ms, every wait (CONNACK, SUBACK, --timeout) with a deadline. A message's payload is
 * parsed with a depth limit; user properties with the same name keep the last value.
 *
 * Exit codes: 0 ok (--count reached, --timeout without --count, or SIGINT/SIGTERM);
 * 1 runtime failure (cannot connect, refused, connection lost, every subscription refused,
 * --timeout before --count messages); 2 usage error.
 */
#include "tool_mqtt.h"
#include "tool_opts.h"

#include <ctype.h>
#include <errno.h>
#include <json.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROG          "civicmq-dash"
#define CONNECT_MS    10000
#define SUBACK_MS     5000
#define LOOP_SLICE_MS 100
#define MAX_TOPICS    16
#define PASSWORD_MAX  1024
#define JSON_DEPTH    32

/* The one piece of global state: what a signal handler may touch. */
static volatile sig_atomic_t stop_requested;

struct opts {
	const char *host;
	long port;
	const char *cafile;
	const char *username;
	const char *password_file;
	const char *cert;
	const char *key;
	const char *client_id;
	const char *topic[MAX_TOPICS];
	int ntopics;
	long count;
	long timeout;
	int json;
	int help;
};

/* --topic: repeatable, each a valid subscription filter. */
static int add_topic(void *dst, const char *v)
{
	struct opts *o = dst;

	if (o->ntopics == MAX_TOPICS) {
		fprintf(stderr, PROG ": --topic \"%s\": at most %d filters\n", v, MAX_TOPICS);
		return -1;
	}
	if (mosquitto_sub_topic_check(v) != MOSQ_ERR_SUCCESS) {
		fprintf(stderr,
		        PROG ": --topic \"%s\": not a valid subscription filter ('#' only "
		             "last, '+' and '#' only as whole levels)\n",
		        v);
		return -1;
	}
	o->topic[o->ntopics++] = v;
	return 0;
}

/* One table drives parsing, validation of numbers and --help (tool_opts.h). */
static const struct tool_opt option_table[] = {
    {"--host", TOOL_OPT_STR, offsetof(struct opts, host), 0, 0, "HOST",
     "broker (default 127.0.0.1)"},
    {"--port", TOOL_OPT_LONG, offsetof(struct opts, port), 1, 65535, "N", "broker port (required)"},
    {"--cafile", TOOL_OPT_STR, offsetof(struct opts, cafile), 0, 0, "FILE",
     "CA bundle to verify the broker with (turns TLS on)"},
    {"--username", TOOL_OPT_STR, offsetof(struct opts, username), 0, 0, "NAME", "operator account"},
    {"--password-file", TOOL_OPT_STR, offsetof(struct opts, password_file), 0, 0, "FILE",
     "file whose first line is the password"},
    {"--cert", TOOL_OPT_STR, offsetof(struct opts, cert), 0, 0, "FILE",
     "client certificate (instead of a password)"},
    {"--key", TOOL_OPT_STR, offsetof(struct opts, key), 0, 0, "FILE", "client private key"},
    {"--client-id", TOOL_OPT_STR, offsetof(struct opts, client_id), 0, 0, "ID",
     "client id (default <username>-dash-<pid>)"},
    {"--topic", TOOL_OPT_CALL, offsetof(struct opts, topic), 0, 0, "FILTER",
     "subscribe to FILTER (repeatable, at most 16; default city/#)", add_topic},
    {"--count", TOOL_OPT_LONG, offsetof(struct opts, count), 0, 1000000000, "N",
     "exit after N messages (default 0 = until a signal)"},
    {"--timeout", TOOL_OPT_LONG, offsetof(struct opts, timeout), 0, 86400, "S",
     "exit after S seconds (default 0 = none)"},
    {"--json", TOOL_OPT_FLAG, offsetof(struct opts, json), 0, 0, "", "one JSON object per message"},
    {"--help", TOOL_OPT_FLAG, offsetof(struct opts, help), 0, 0, "", "this text"},
};
#define N_OPTIONS (sizeof(option_table) / sizeof(option_table[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG " --port N [options]\n"
	           "Subscribes (MQTT v5) and prints every message received.\n");
	tool_opts_usage(f, option_table, N_OPTIONS, 16);
	fprintf(f, "Exit codes: 0 ok, 1 runtime failure or every subscription refused, "
	           "2 usage error.\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->host = "127.0.0.1";
	if (tool_opts_parse(PROG, option_table, N_OPTIONS, argc, argv, o) != 0)
		return -1;
	if (o->ntopics == 0)
		o->topic[o->ntopics++] = "city/#";
	return 0;
}

static int validate(const struct opts *o)
{
	if (o->port == 0) {
		fprintf(stderr, PROG ": --port is required\n");
		return -1;
	}
	if ((o->cert == NULL) != (o->key == NULL)) {
		fprintf(stderr, PROG ": %s needs %s too\n", o->cert ? "--cert" : "--key",
		        o->cert ? "--key" : "--cert");
		return -1;
	}
	if ((o->cert != NULL || o->password_file != NULL) && o->cafile == NULL) {
		fprintf(stderr, PROG ": %s needs --cafile (credentials only travel over TLS)\n",
		        o->cert ? "--cert" : "--password-file");
		return -1;
	}
	if (o->password_file != NULL && o->username == NULL) {
		fprintf(stderr, PROG ": --password-file needs --username\n");
		return -1;
	}
	if (o->cert != NULL && o->username == NULL && o->client_id == NULL) {
		fprintf(stderr, PROG ": --cert needs --client-id (the certificate CN)\n");
		return -1;
	}
	return 0;
}

struct dash {
	struct tool_conn conn; /* first: it is the libmosquitto user data (tool_mqtt.h) */
	const struct opts *o;
	int sub_mid[MAX_TOPICS];
	int answered, granted; /* SUBACKs received, filters granted */
	unsigned long received;
};

/* "Not authorized" -> "not authorized", for messages that continue a sentence. */
static void reason_lower(int code, char *buf, size_t n)
{
	snprintf(buf, n, "%s", mosquitto_reason_string(code));
	if (buf[0] != '\0')
		buf[0] = (char)tolower((unsigned char)buf[0]);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count,
                         const int *granted_qos, const mosquitto_property *props)
{
	struct dash *d = obj;
	char why[64];

	(void)mosq;
	(void)props;
	for (int i = 0; i < d->o->ntopics; i++) {
		if (d->sub_mid[i] != mid)
			continue;
		d->sub_mid[i] = 0;
		d->answered++;
		if (qos_count >= 1 && granted_qos[0] < 0x80) {
			d->granted++;
		} else {
			int code = qos_count >= 1 ? granted_qos[0] : 0x80;

			reason_lower(code, why, sizeof(why));
			fprintf(stderr, PROG ": subscription to %s refused: %s (0x%02x)\n",
			        d->o->topic[i], why, (unsigned)code);
		}
		return;
	}
}

/* The payload as JSON if it is a complete JSON text, else as a string. Owned by caller. */
static json_object *payload_json(const char *p, int len)
{
	struct json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
	json_object *v = NULL;

	if (tok != NULL && len > 0) {
		v = json_tokener_parse_ex(tok, p, len);
		if (v != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
		                  tok->char_offset != len)) {
			json_object_put(v);
			v = NULL;
		}
	}
	json_tokener_free(tok);
	return v != NULL ? v : json_object_new_string_len(p, len);
}

static void print_json(const struct mosquitto_message *m, const mosquitto_property *props)
{
	json_object *root = json_object_new_object(), *pr = json_object_new_object();
	const mosquitto_property *p = props;
	bool first = true;

	if (root == NULL || pr == NULL) {
		json_object_put(root);
		json_object_put(pr);
		fprintf(stderr, PROG ": out of memory printing a message on %s\n", m->topic);
		return;
	}
	json_object_object_add(root, "topic", json_object_new_string(m->topic));
	json_object_object_add(root, "payload", payload_json(m->payload, m->payloadlen));
	while (p != NULL) {
		char *name = NULL, *value = NULL;

		p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value,
		                                        !first);
		first = false;
		if (p != NULL && name != NULL && value != NULL)
			json_object_object_add(pr, name, json_object_new_string(value));
		free(name);
		free(value);
	}
	json_object_object_add(root, "properties", pr);
	printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN |
	                                                        JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
}

static void print_line(const struct mosquitto_message *m, const mosquitto_property *props)
{
	const mosquitto_property *p = props;
	bool first = true;

	printf("%s %.*s", m->topic, m->payloadlen, m->payload ? (const char *)m->payload : "");
	while (p != NULL) {
		char *name = NULL, *value = NULL;

		p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value,
		                                        !first);
		first = false;
		if (p != NULL && name != NULL && value != NULL)
			printf(" [%s=%s]", name, value);
		free(name);
		free(value);
	}
	printf("\n");
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *m,
                       const mosquitto_property *props)
{
	struct dash *d = obj;

	(void)mosq;
	if (d->o->count != 0 && d->received >= (unsigned long)d->o->count)
		return;
	if (d->o->json)
		print_json(m, props);
	else
		print_line(m, props);
	fflush(stdout);
	d->received++;
}

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* Subscribe to every filter and wait for the SUBACKs. 0 if at least one was granted. */
static int subscribe_all(struct mosquitto *mosq, struct dash *d)
{
	long long deadline = tool_now_ms() + SUBACK_MS;

	for (int i = 0; i < d->o->ntopics; i++) {
		int rc = mosquitto_subscribe_v5(mosq, &d->sub_mid[i], d->o->topic[i], 1, 0, NULL);

		if (rc != MOSQ_ERR_SUCCESS) {
			fprintf(stderr, PROG ": subscribe to %s failed: %s\n", d->o->topic[i],
			        mosquitto_strerror(rc));
			return 1;
		}
	}
	while (d->answered < d->o->ntopics && !stop_requested && tool_now_ms() < deadline)
		if (!tool_pump(mosq, &d->conn, deadline - tool_now_ms(), LOOP_SLICE_MS))
			break;
	if (d->answered < d->o->ntopics) {
		fprintf(stderr, PROG ": %s before every SUBACK arrived\n",
		        d->conn.disconnected ? "connection lost" : "gave up");
		return 1;
	}
	if (d->granted == 0) {
		fprintf(stderr, PROG ": every subscription was refused\n");
		return 1;
	}
	return 0;
}

static int run(const struct opts *o)
{
	struct dash d;
	struct mosquitto *mosq = NULL;
	char password[PASSWORD_MAX], id[256];
	const char *client_id = o->client_id, *who;
	long long deadline;
	int status = 1;

	memset(&d, 0, sizeof(d));
	d.o = o;
	tool_conn_init(&d.conn);
	password[0] = '\0';
	if (o->password_file != NULL &&
	    tool_read_password(PROG, o->password_file, password, sizeof(password)) != 0)
		return 1;
	if (client_id == NULL && o->username != NULL) {
		snprintf(id, sizeof(id), "%s-dash-%ld", o->username, (long)getpid());
		client_id = id;
	}
	who = client_id != NULL ? client_id : "(broker-assigned id)";
	mosq = tool_client_new(
	    PROG,
	    &(struct tool_client_opts){.client_id = client_id,
	                               .username = o->username,
	                               .password = o->password_file ? password : NULL,
	                               .cafile = o->cafile,
	                               .cert = o->cert,
	                               .key = o->key},
	    &d);
	if (mosq == NULL)
		goto out;
	mosquitto_subscribe_v5_callback_set(mosq, on_subscribe);
	mosquitto_message_v5_callback_set(mosq, on_message);
	/* Started before connecting: --timeout bounds the whole run. */
	deadline = o->timeout > 0 ? tool_now_ms() + o->timeout * 1000 : 0;
	if (tool_client_connect(PROG, mosq, who, o->host, o->port) != 0)
		goto out;
	if (tool_await_connack(PROG, mosq, &d.conn, &stop_requested, who, o->host, o->port,
	                       CONNECT_MS, LOOP_SLICE_MS, NULL) != 0 ||
	    subscribe_all(mosq, &d) != 0)
		goto out;
	while (!stop_requested && !d.conn.disconnected &&
	       (o->count == 0 || d.received < (unsigned long)o->count) &&
	       (deadline == 0 || tool_now_ms() < deadline))
		tool_pump(mosq, &d.conn, deadline == 0 ? LOOP_SLICE_MS : deadline - tool_now_ms(),
		          LOOP_SLICE_MS);
	if (d.conn.disconnected && !stop_requested) {
		fprintf(stderr, PROG ": connection lost after %lu messages: %s\n", d.received,
		        tool_disconnect_text(d.conn.disconnect_rc));
		goto out;
	}
	if (!stop_requested && o->count != 0 && d.received < (unsigned long)o->count) {
		fprintf(stderr, PROG ": --timeout %ld s reached after %lu of %ld messages\n",
		        o->timeout, d.received, o->count);
		goto out;
	}
	status = 0;
	mosquitto_disconnect_v5(mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
out:
	mosquitto_destroy(mosq);
	tool_conn_cleanup(&d.conn);
	explicit_bzero(password, sizeof(password));
	return status;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct sigaction sa;
	int status;

	if (parse(argc, argv, &o) != 0)
		return 2;
	if (o.help) {
		usage(stdout);
		return 0;
	}
	if (validate(&o) != 0)
		return 2;

	/* No SA_RESTART: a signal ends the current select() inside mosquitto_loop() at once. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	mosquitto_lib_init();
	status = run(&o);
	mosquitto_lib_cleanup();
	return status;
}
