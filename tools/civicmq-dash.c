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
#define KEEPALIVE_S   30
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

enum opt_type { OPT_STR, OPT_LONG, OPT_TOPIC, OPT_FLAG };

/* One table drives parsing, validation of numbers and --help. */
static const struct option_def {
	const char *name;
	enum opt_type type;
	size_t off;
	long min, max; /* numbers only */
	const char *arg;
	const char *help;
} option_table[] = {
    {"--host", OPT_STR, offsetof(struct opts, host), 0, 0, "HOST", "broker (default 127.0.0.1)"},
    {"--port", OPT_LONG, offsetof(struct opts, port), 1, 65535, "N", "broker port (required)"},
    {"--cafile", OPT_STR, offsetof(struct opts, cafile), 0, 0, "FILE",
     "CA bundle to verify the broker with (turns TLS on)"},
    {"--username", OPT_STR, offsetof(struct opts, username), 0, 0, "NAME", "operator account"},
    {"--password-file", OPT_STR, offsetof(struct opts, password_file), 0, 0, "FILE",
     "file whose first line is the password"},
    {"--cert", OPT_STR, offsetof(struct opts, cert), 0, 0, "FILE",
     "client certificate (instead of a password)"},
    {"--key", OPT_STR, offsetof(struct opts, key), 0, 0, "FILE", "client private key"},
    {"--client-id", OPT_STR, offsetof(struct opts, client_id), 0, 0, "ID",
     "client id (default <username>-dash-<pid>)"},
    {"--topic", OPT_TOPIC, offsetof(struct opts, topic), 0, 0, "FILTER",
     "subscribe to FILTER (repeatable, at most 16; default city/#)"},
    {"--count", OPT_LONG, offsetof(struct opts, count), 0, 1000000000, "N",
     "exit after N messages (default 0 = until a signal)"},
    {"--timeout", OPT_LONG, offsetof(struct opts, timeout), 0, 86400, "S",
     "exit after S seconds (default 0 = none)"},
    {"--json", OPT_FLAG, offsetof(struct opts, json), 0, 0, "", "one JSON object per message"},
    {"--help", OPT_FLAG, offsetof(struct opts, help), 0, 0, "", "this text"},
};
#define N_OPTIONS (sizeof(option_table) / sizeof(option_table[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG " --port N [options]\n"
	           "Subscribes (MQTT v5) and prints every message received.\n");
	for (size_t i = 0; i < N_OPTIONS; i++)
		fprintf(f, "  %-16s %-6s %s\n", option_table[i].name, option_table[i].arg,
		        option_table[i].help);
	fprintf(f, "Exit codes: 0 ok, 1 runtime failure or every subscription refused, "
	           "2 usage error.\n");
}

static int set_value(const struct option_def *d, const char *v, struct opts *o)
{
	void *field = (char *)o + d->off;
	char *end = NULL;
	long n;

	if (d->type == OPT_FLAG) {
		*(int *)field = 1;
		return 0;
	}
	if (*v == '\0') {
		fprintf(stderr, PROG ": %s: empty value\n", d->name);
		return -1;
	}
	switch (d->type) {
	case OPT_STR:
		*(const char **)field = v;
		return 0;
	case OPT_TOPIC:
		if (o->ntopics == MAX_TOPICS) {
			fprintf(stderr, PROG ": --topic \"%s\": at most %d filters\n", v,
			        MAX_TOPICS);
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
	case OPT_LONG:
	default:
		errno = 0;
		n = strtol(v, &end, 10);
		if (errno != 0 || end == v || *end != '\0' || n < d->min || n > d->max) {
			fprintf(stderr, PROG ": %s \"%s\": not an integer in %ld..%ld\n", d->name,
			        v, d->min, d->max);
			return -1;
		}
		*(long *)field = n;
		return 0;
	}
}

static int parse(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->host = "127.0.0.1";
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *eq = strchr(arg, '='), *value = NULL;
		size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
		size_t k;

		for (k = 0; k < N_OPTIONS; k++) {
			if (strlen(option_table[k].name) == len &&
			    strncmp(arg, option_table[k].name, len) == 0)
				break;
		}
		if (k == N_OPTIONS) {
			fprintf(stderr, PROG ": unknown option \"%s\" (try --help)\n", arg);
			return -1;
		}
		if (option_table[k].type == OPT_FLAG) {
			if (eq != NULL) {
				fprintf(stderr, PROG ": %s takes no value\n", option_table[k].name);
				return -1;
			}
		} else if (eq != NULL) {
			value = eq + 1;
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			fprintf(stderr, PROG ": %s needs a value (%s)\n", option_table[k].name,
			        option_table[k].arg);
			return -1;
		}
		if (set_value(&option_table[k], value, o) != 0)
			return -1;
	}
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

/* The first line of path into buf. 0, or -1 (reported). */
static int read_password(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");
	size_t len;

	buf[0] = '\0';
	if (f == NULL) {
		fprintf(stderr, PROG ": --password-file \"%s\": %s\n", path, strerror(errno));
		return -1;
	}
	if (fgets(buf, (int)n, f) == NULL)
		buf[0] = '\0';
	fclose(f);
	len = strcspn(buf, "\r\n");
	buf[len] = '\0';
	if (len == 0) {
		fprintf(stderr, PROG ": --password-file \"%s\": the first line is empty\n", path);
		return -1;
	}
	return 0;
}

struct dash {
	const struct opts *o;
	int connack;          /* CONNACK reason, -1 until it arrives */
	char *connack_reason; /* its reason-string property, or NULL (owned) */
	bool disconnected;
	int disconnect_rc;
	int sub_mid[MAX_TOPICS];
	int answered, granted; /* SUBACKs received, filters granted */
	unsigned long received;
};

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
	struct dash *d = obj;

	(void)mosq;
	(void)flags;
	d->connack = rc;
	if (rc != 0 && d->connack_reason == NULL)
		mosquitto_property_read_string(props, MQTT_PROP_REASON_STRING, &d->connack_reason,
		                               false);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
                          const mosquitto_property *props)
{
	struct dash *d = obj;

	(void)mosq;
	(void)props;
	d->disconnected = true;
	d->disconnect_rc = rc;
}

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

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool pump(struct mosquitto *mosq, struct dash *d, long long wait_ms)
{
	int rc;

	if (wait_ms > LOOP_SLICE_MS)
		wait_ms = LOOP_SLICE_MS;
	if (wait_ms < 0)
		wait_ms = 0;
	rc = mosquitto_loop(mosq, (int)wait_ms, 1);
	if (rc != MOSQ_ERR_SUCCESS && !d->disconnected) {
		d->disconnected = true;
		d->disconnect_rc = rc;
	}
	return !d->disconnected;
}

static int await_connack(struct mosquitto *mosq, struct dash *d, const char *who)
{
	long long deadline = now_ms() + CONNECT_MS;

	while (d->connack < 0 && !stop_requested && now_ms() < deadline)
		if (!pump(mosq, d, deadline - now_ms()))
			break;
	if (d->connack == 0)
		return 0;
	if (d->connack > 0)
		fprintf(stderr, PROG ": broker refused the connection of %s: %s (0x%02x)%s%s\n",
		        who, mosquitto_reason_string(d->connack), (unsigned)d->connack,
		        d->connack_reason ? ": " : "", d->connack_reason ? d->connack_reason : "");
	else if (stop_requested)
		fprintf(stderr, PROG ": interrupted while connecting\n");
	else if (d->disconnected)
		fprintf(stderr, PROG ": connection of %s to %s:%ld closed before CONNACK: %s\n",
		        who, d->o->host, d->o->port, mosquitto_strerror(d->disconnect_rc));
	else
		fprintf(stderr, PROG ": no CONNACK from %s:%ld within %d ms\n", d->o->host,
		        d->o->port, CONNECT_MS);
	return 1;
}

/* Subscribe to every filter and wait for the SUBACKs. 0 if at least one was granted. */
static int subscribe_all(struct mosquitto *mosq, struct dash *d)
{
	long long deadline = now_ms() + SUBACK_MS;

	for (int i = 0; i < d->o->ntopics; i++) {
		int rc = mosquitto_subscribe_v5(mosq, &d->sub_mid[i], d->o->topic[i], 1, 0, NULL);

		if (rc != MOSQ_ERR_SUCCESS) {
			fprintf(stderr, PROG ": subscribe to %s failed: %s\n", d->o->topic[i],
			        mosquitto_strerror(rc));
			return 1;
		}
	}
	while (d->answered < d->o->ntopics && !stop_requested && now_ms() < deadline)
		if (!pump(mosq, d, deadline - now_ms()))
			break;
	if (d->answered < d->o->ntopics) {
		fprintf(stderr, PROG ": %s before every SUBACK arrived\n",
		        d->disconnected ? "connection lost" : "gave up");
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
	int rc, status = 1;

	memset(&d, 0, sizeof(d));
	d.o = o;
	d.connack = -1;
	password[0] = '\0';
	if (o->password_file != NULL &&
	    read_password(o->password_file, password, sizeof(password)) != 0)
		return 1;
	if (client_id == NULL && o->username != NULL) {
		snprintf(id, sizeof(id), "%s-dash-%ld", o->username, (long)getpid());
		client_id = id;
	}
	who = client_id != NULL ? client_id : "(broker-assigned id)";
	mosq = mosquitto_new(client_id, true, &d);
	if (mosq == NULL) {
		fprintf(stderr, PROG ": cannot create a client: %s\n", strerror(errno));
		goto out;
	}
	mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_connect_v5_callback_set(mosq, on_connect);
	mosquitto_disconnect_v5_callback_set(mosq, on_disconnect);
	mosquitto_subscribe_v5_callback_set(mosq, on_subscribe);
	mosquitto_message_v5_callback_set(mosq, on_message);
	if (o->username != NULL &&
	    (rc = mosquitto_username_pw_set(
	         mosq, o->username, o->password_file ? password : NULL)) != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, PROG ": --username \"%s\": %s\n", o->username,
		        mosquitto_strerror(rc));
		goto out;
	}
	if (o->cafile != NULL && (rc = mosquitto_tls_set(mosq, o->cafile, NULL, o->cert, o->key,
	                                                 NULL)) != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, PROG ": TLS setup failed (--cafile \"%s\"%s%s): %s\n", o->cafile,
		        o->cert ? ", --cert " : "", o->cert ? o->cert : "", mosquitto_strerror(rc));
		goto out;
	}
	/* Started before connecting: --timeout bounds the whole run. */
	deadline = o->timeout > 0 ? now_ms() + o->timeout * 1000 : 0;
	rc = mosquitto_connect_bind_v5(mosq, o->host, (int)o->port, KEEPALIVE_S, NULL, NULL);
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, PROG ": cannot connect to %s:%ld: %s\n", o->host, o->port,
		        rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		goto out;
	}
	if (await_connack(mosq, &d, who) != 0 || subscribe_all(mosq, &d) != 0)
		goto out;
	while (!stop_requested && !d.disconnected &&
	       (o->count == 0 || d.received < (unsigned long)o->count) &&
	       (deadline == 0 || now_ms() < deadline))
		pump(mosq, &d, deadline == 0 ? LOOP_SLICE_MS : deadline - now_ms());
	if (d.disconnected && !stop_requested) {
		fprintf(stderr, PROG ": connection lost after %lu messages: %s\n", d.received,
		        mosquitto_strerror(d.disconnect_rc));
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
	free(d.connack_reason);
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
