/*
 * civicmq-sim - a city sensor simulator: connects as one device (its certificate CN is
 * the client id and the device id) and publishes FIWARE-style readings to
 * raw/<district>/<kind>/<device> over MQTT v5 with TLS, then prints one summary line.
 *
 *   civicmq-sim --port 8883 --cafile ca.pem --cert dev.pem --key dev.key \
 *               --device civitas-air-001 --kind air --count 5
 *
 * Everything runs on the main thread: mosquitto_loop() is pumped with a timeout of at
 * most 100 ms while waiting for the CONNACK, the next send time or the last PUBACKs, and
 * every one of those waits has a deadline, so nothing spins and nothing hangs. SIGINT and
 * SIGTERM stop the sending; acknowledgements still outstanding are awaited for at most
 * ACK_DRAIN_MS.
 *
 * Exit codes: 0 every message was accepted; 1 runtime failure (cannot connect, the broker
 * refused the connection, lost it, refused or left unacknowledged some publish);
 * 2 usage error.
 */
#include "sim_payloads.h"

#include <errno.h>
#include <math.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROG          "civicmq-sim"
#define CONNECT_MS    10000 /* TCP + TLS + CONNACK */
#define ACK_DRAIN_MS  5000  /* waiting for the last PUBACKs */
#define LOOP_SLICE_MS 100   /* longest single mosquitto_loop() wait */
#define KEEPALIVE_S   30
#define PAYLOAD_MAX   4096
#define TOPIC_MAX     256

/* The one piece of global state: what a signal handler may touch. */
static volatile sig_atomic_t stop_requested;

struct opts {
	const char *host;
	long port;
	const char *cafile;
	const char *cert;
	const char *key;
	const char *device;
	const char *district;
	const char *kind;
	double rate;
	long count;
	long qos;
	long seed;
	const char *resident;
	int canaries;
	int verbose;
	int help;
};

enum opt_type { OPT_STR, OPT_LONG, OPT_DOUBLE, OPT_FLAG };

/* One table drives parsing, validation of numbers and --help. */
static const struct option_def {
	const char *name;
	enum opt_type type;
	size_t off;
	double min, max; /* numbers only */
	const char *arg;
	const char *help;
} option_table[] = {
    {"--host", OPT_STR, offsetof(struct opts, host), 0, 0, "HOST", "broker (default 127.0.0.1)"},
    {"--port", OPT_LONG, offsetof(struct opts, port), 1, 65535, "N", "broker port (required)"},
    {"--cafile", OPT_STR, offsetof(struct opts, cafile), 0, 0, "FILE",
     "CA bundle to verify the broker with (turns TLS on)"},
    {"--cert", OPT_STR, offsetof(struct opts, cert), 0, 0, "FILE", "device certificate (PEM)"},
    {"--key", OPT_STR, offsetof(struct opts, key), 0, 0, "FILE", "device private key (PEM)"},
    {"--device", OPT_STR, offsetof(struct opts, device), 0, 0, "ID",
     "device id = certificate CN = client id (required)"},
    {"--district", OPT_STR, offsetof(struct opts, district), 0, 0, "NAME",
     "district topic level (default north)"},
    {"--kind", OPT_STR, offsetof(struct opts, kind), 0, 0, "KIND",
     "air|noise|footfall|parking|anpr|meter|camera (default air)"},
    {"--rate", OPT_DOUBLE, offsetof(struct opts, rate), 0.01, 1000, "N",
     "messages per second (0.01..1000, default 1)"},
    {"--count", OPT_LONG, offsetof(struct opts, count), 0, 1000000000, "N",
     "messages to send (default 10; 0 = until SIGINT/SIGTERM)"},
    {"--qos", OPT_LONG, offsetof(struct opts, qos), 0, 1, "0|1", "QoS (default 1)"},
    {"--seed", OPT_LONG, offsetof(struct opts, seed), 0, 2147483647, "N",
     "random seed for the readings (default 1)"},
    {"--canaries", OPT_FLAG, offsetof(struct opts, canaries), 0, 0, "",
     "plant personal data (MACs, plates, e-mail, phones, resident ids)"},
    {"--resident", OPT_STR, offsetof(struct opts, resident), 0, 0, "ID",
     "resident id for --kind meter (default derived from the device)"},
    {"--verbose", OPT_FLAG, offsetof(struct opts, verbose), 0, 0, "", "print each payload"},
    {"--help", OPT_FLAG, offsetof(struct opts, help), 0, 0, "", "this text"},
};
#define N_OPTIONS (sizeof(option_table) / sizeof(option_table[0]))

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: " PROG " --port N --device ID [options]\n"
	        "Publishes simulated sensor readings to raw/<district>/<kind>/<device> (MQTT v5)."
	        "\n");
	for (size_t i = 0; i < N_OPTIONS; i++)
		fprintf(f, "  %-12s %-6s %s\n", option_table[i].name, option_table[i].arg,
		        option_table[i].help);
	fprintf(f, "Exit codes: 0 all accepted, 1 runtime failure or refusal, 2 usage error.\n");
}

static int set_value(const struct option_def *d, const char *v, struct opts *o)
{
	char *end = NULL;
	void *field = (char *)o + d->off;

	switch (d->type) {
	case OPT_STR:
		if (*v == '\0') {
			fprintf(stderr, PROG ": %s: empty value\n", d->name);
			return -1;
		}
		*(const char **)field = v;
		return 0;
	case OPT_LONG: {
		long n;

		errno = 0;
		n = strtol(v, &end, 10);
		if (errno != 0 || end == v || *end != '\0' || n < (long)d->min ||
		    n > (long)d->max) {
			fprintf(stderr, PROG ": %s \"%s\": not an integer in %.0f..%.0f\n", d->name,
			        v, d->min, d->max);
			return -1;
		}
		*(long *)field = n;
		return 0;
	}
	case OPT_DOUBLE: {
		double x;

		errno = 0;
		x = strtod(v, &end);
		if (errno != 0 || end == v || *end != '\0' || !isfinite(x) || x < d->min ||
		    x > d->max) {
			fprintf(stderr, PROG ": %s \"%s\": not a number in %g..%g\n", d->name, v,
			        d->min, d->max);
			return -1;
		}
		*(double *)field = x;
		return 0;
	}
	case OPT_FLAG:
	default:
		*(int *)field = 1;
		return 0;
	}
}

static int parse(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->host = "127.0.0.1";
	o->district = "north";
	o->kind = "air";
	o->rate = 1;
	o->count = 10;
	o->qos = 1;
	o->seed = 1;
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
	return 0;
}

/* Cross-option checks, after parsing. */
static int validate(const struct opts *o, enum cmq_sim_kind *kind)
{
	if (cmq_sim_kind_parse(o->kind, kind) != 0) {
		fprintf(stderr, PROG ": --kind \"%s\": expected one of %s\n", o->kind,
		        cmq_sim_kind_names());
		return -1;
	}
	if (o->port == 0) {
		fprintf(stderr, PROG ": --port is required\n");
		return -1;
	}
	if (o->device == NULL) {
		fprintf(stderr, PROG ": --device is required (the certificate CN)\n");
		return -1;
	}
	if (!cmq_sim_name_ok(o->device)) {
		fprintf(stderr, PROG ": --device \"%s\": use 1..64 of A-Z a-z 0-9 . _ -\n",
		        o->device);
		return -1;
	}
	if (!cmq_sim_name_ok(o->district)) {
		fprintf(stderr, PROG ": --district \"%s\": use 1..64 of A-Z a-z 0-9 . _ -\n",
		        o->district);
		return -1;
	}
	if (o->resident != NULL && !cmq_sim_name_ok(o->resident)) {
		fprintf(stderr, PROG ": --resident \"%s\": use 1..64 of A-Z a-z 0-9 . _ -\n",
		        o->resident);
		return -1;
	}
	if ((o->cert == NULL) != (o->key == NULL)) {
		fprintf(stderr, PROG ": %s needs %s too\n", o->cert ? "--cert" : "--key",
		        o->cert ? "--key" : "--cert");
		return -1;
	}
	if (o->cert != NULL && o->cafile == NULL) {
		fprintf(stderr,
		        PROG ": --cert needs --cafile (the certificate is sent over TLS)\n");
		return -1;
	}
	return 0;
}

struct sim {
	const struct opts *o;
	int connack;          /* CONNACK reason, -1 until it arrives */
	char *connack_reason; /* the CONNACK's reason-string property, or NULL (owned) */
	bool disconnected;    /* the connection is gone */
	int disconnect_rc;    /* on_disconnect's rc */
	unsigned long published, sent, refused;
	unsigned long refused_by[256]; /* refusals per PUBACK reason code */
};

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
	struct sim *s = obj;

	(void)mosq;
	(void)flags;
	s->connack = rc;
	if (rc != 0 && s->connack_reason == NULL)
		mosquitto_property_read_string(props, MQTT_PROP_REASON_STRING, &s->connack_reason,
		                               false);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
                          const mosquitto_property *props)
{
	struct sim *s = obj;

	(void)mosq;
	(void)props;
	s->disconnected = true;
	s->disconnect_rc = rc;
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason,
                       const mosquitto_property *props)
{
	struct sim *s = obj;

	(void)mosq;
	(void)mid;
	(void)props;
	if (reason >= 0x80) {
		s->refused++;
		s->refused_by[reason & 0xff]++;
	} else {
		s->sent++;
	}
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

/* One bounded slice of network work; false if the connection is unusable. */
static bool pump(struct mosquitto *mosq, struct sim *s, long long wait_ms)
{
	int rc;

	if (wait_ms > LOOP_SLICE_MS)
		wait_ms = LOOP_SLICE_MS;
	if (wait_ms < 0)
		wait_ms = 0;
	rc = mosquitto_loop(mosq, (int)wait_ms, 1);
	if (rc != MOSQ_ERR_SUCCESS && !s->disconnected) {
		s->disconnected = true;
		s->disconnect_rc = rc;
	}
	return !s->disconnected;
}

static const char *reason_text(int code)
{
	return mosquitto_reason_string(code);
}

static void summary(const struct sim *s)
{
	unsigned long unacked = s->published - s->sent - s->refused;

	printf(PROG ": %s: sent %lu, refused %lu", s->o->device, s->sent, s->refused);
	for (int c = 0x80; c < 256; c++)
		if (s->refused_by[c] != 0)
			printf(" [%lu x 0x%02x %s]", s->refused_by[c], (unsigned)c, reason_text(c));
	if (unacked != 0)
		printf(", unacknowledged %lu", unacked);
	printf("\n");
	fflush(stdout);
}

/* Wait for the CONNACK. 0 connected, 1 failure (reported). */
static int await_connack(struct mosquitto *mosq, struct sim *s)
{
	long long deadline = now_ms() + CONNECT_MS;

	while (s->connack < 0 && !stop_requested && now_ms() < deadline)
		if (!pump(mosq, s, deadline - now_ms()))
			break;
	if (s->connack > 0) {
		fprintf(stderr, PROG ": broker refused the connection of %s: %s (0x%02x)%s%s\n",
		        s->o->device, reason_text(s->connack), (unsigned)s->connack,
		        s->connack_reason ? ": " : "", s->connack_reason ? s->connack_reason : "");
		return 1;
	}
	if (s->connack == 0)
		return 0;
	if (stop_requested)
		fprintf(stderr, PROG ": interrupted while connecting\n");
	else if (s->disconnected)
		fprintf(stderr,
		        PROG ": connection of %s to %s:%ld closed before CONNACK: %s "
		             "(certificate rejected during the TLS handshake?)\n",
		        s->o->device, s->o->host, s->o->port, mosquitto_strerror(s->disconnect_rc));
	else
		fprintf(stderr, PROG ": no CONNACK from %s:%ld within %d ms\n", s->o->host,
		        s->o->port, CONNECT_MS);
	return 1;
}

/* Publish at the requested rate. 0, or 1 on a local publish failure (reported). */
static int send_all(struct mosquitto *mosq, struct sim *s, struct cmq_sim_gen *gen,
                    const char *topic)
{
	const struct opts *o = s->o;
	long long start = now_ms();
	char payload[PAYLOAD_MAX];

	for (unsigned long i = 0; (o->count == 0 || i < (unsigned long)o->count); i++) {
		long long due = start + (long long)((double)i * 1000.0 / o->rate);
		int len, rc, mid = 0;

		while (!stop_requested && !s->disconnected && now_ms() < due)
			pump(mosq, s, due - now_ms());
		if (stop_requested || s->disconnected)
			break;
		len = cmq_sim_payload(gen, payload, sizeof(payload));
		if (len < 0) {
			fprintf(stderr, PROG ": payload larger than %d bytes\n", PAYLOAD_MAX);
			return 1;
		}
		rc =
		    mosquitto_publish_v5(mosq, &mid, topic, len, payload, (int)o->qos, false, NULL);
		if (rc != MOSQ_ERR_SUCCESS) {
			fprintf(stderr, PROG ": publish to %s failed: %s\n", topic,
			        mosquitto_strerror(rc));
			return 1;
		}
		s->published++;
		if (o->verbose)
			printf("%s %s\n", topic, payload);
		pump(mosq, s, 0);
	}
	return 0;
}

static void drain_acks(struct mosquitto *mosq, struct sim *s)
{
	long long deadline = now_ms() + ACK_DRAIN_MS;

	while (s->sent + s->refused < s->published && !s->disconnected && now_ms() < deadline)
		pump(mosq, s, deadline - now_ms());
}

static int run(const struct opts *o, enum cmq_sim_kind kind)
{
	struct sim s;
	struct cmq_sim_gen gen;
	struct mosquitto *mosq = NULL;
	char topic[TOPIC_MAX];
	int rc, status = 1;

	memset(&s, 0, sizeof(s));
	s.o = o;
	s.connack = -1;
	snprintf(topic, sizeof(topic), "raw/%s/%s/%s", o->district, cmq_sim_kind_name(kind),
	         o->device);
	cmq_sim_gen_init(&gen, kind, o->device, o->district, o->resident, o->canaries != 0,
	                 (uint64_t)o->seed);

	mosq = mosquitto_new(o->device, true, &s);
	if (mosq == NULL) {
		fprintf(stderr, PROG ": cannot create a client: %s\n", strerror(errno));
		return 1;
	}
	mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_connect_v5_callback_set(mosq, on_connect);
	mosquitto_disconnect_v5_callback_set(mosq, on_disconnect);
	mosquitto_publish_v5_callback_set(mosq, on_publish);
	if (o->cafile != NULL) {
		rc = mosquitto_tls_set(mosq, o->cafile, NULL, o->cert, o->key, NULL);
		if (rc != MOSQ_ERR_SUCCESS) {
			fprintf(stderr,
			        PROG ": TLS setup failed (--cafile \"%s\", --cert \"%s\", --key "
			             "\"%s\"): %s\n",
			        o->cafile, o->cert ? o->cert : "", o->key ? o->key : "",
			        mosquitto_strerror(rc));
			goto out;
		}
	}
	rc = mosquitto_connect_bind_v5(mosq, o->host, (int)o->port, KEEPALIVE_S, NULL, NULL);
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, PROG ": cannot connect %s to %s:%ld: %s\n", o->device, o->host,
		        o->port, rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		goto out;
	}
	if (await_connack(mosq, &s) != 0)
		goto out;
	if (send_all(mosq, &s, &gen, topic) != 0) {
		drain_acks(mosq, &s);
		summary(&s);
		goto out;
	}
	drain_acks(mosq, &s);
	summary(&s);
	if (s.disconnected) {
		fprintf(stderr, PROG ": %s lost its connection: %s\n", o->device,
		        mosquitto_strerror(s.disconnect_rc));
		goto out;
	}
	status = (s.refused == 0 && s.sent == s.published) ? 0 : 1;
	mosquitto_disconnect_v5(mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
out:
	mosquitto_destroy(mosq);
	free(s.connack_reason);
	return status;
}

int main(int argc, char **argv)
{
	struct opts o;
	enum cmq_sim_kind kind;
	struct sigaction sa;
	int status;

	if (parse(argc, argv, &o) != 0)
		return 2;
	if (o.help) {
		usage(stdout);
		return 0;
	}
	if (validate(&o, &kind) != 0)
		return 2;

	/* No SA_RESTART: a signal ends the current select() inside mosquitto_loop() at once. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	mosquitto_lib_init();
	status = run(&o, kind);
	mosquitto_lib_cleanup();
	return status;
}
