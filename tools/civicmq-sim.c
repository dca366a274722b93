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
#include "tool_mqtt.h"
#include "tool_opts.h"

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

/* One table drives parsing, validation of numbers and --help (tool_opts.h). */
static const struct tool_opt option_table[] = {
    {"--host", TOOL_OPT_STR, offsetof(struct opts, host), 0, 0, "HOST",
     "broker (default 127.0.0.1)"},
    {"--port", TOOL_OPT_LONG, offsetof(struct opts, port), 1, 65535, "N", "broker port (required)"},
    {"--cafile", TOOL_OPT_STR, offsetof(struct opts, cafile), 0, 0, "FILE",
     "CA bundle to verify the broker with (turns TLS on)"},
    {"--cert", TOOL_OPT_STR, offsetof(struct opts, cert), 0, 0, "FILE", "device certificate (PEM)"},
    {"--key", TOOL_OPT_STR, offsetof(struct opts, key), 0, 0, "FILE", "device private key (PEM)"},
    {"--device", TOOL_OPT_STR, offsetof(struct opts, device), 0, 0, "ID",
     "device id = certificate CN = client id (required)"},
    {"--district", TOOL_OPT_STR, offsetof(struct opts, district), 0, 0, "NAME",
     "district topic level (default north)"},
    {"--kind", TOOL_OPT_STR, offsetof(struct opts, kind), 0, 0, "KIND",
     "air|noise|footfall|parking|anpr|meter|camera (default air)"},
    {"--rate", TOOL_OPT_DOUBLE, offsetof(struct opts, rate), 0.01, 1000, "N",
     "messages per second (0.01..1000, default 1)"},
    {"--count", TOOL_OPT_LONG, offsetof(struct opts, count), 0, 1000000000, "N",
     "messages to send (default 10; 0 = until SIGINT/SIGTERM)"},
    {"--qos", TOOL_OPT_LONG, offsetof(struct opts, qos), 0, 1, "0|1", "QoS (default 1)"},
    {"--seed", TOOL_OPT_LONG, offsetof(struct opts, seed), 0, 2147483647, "N",
     "random seed for the readings (default 1)"},
    {"--canaries", TOOL_OPT_FLAG, offsetof(struct opts, canaries), 0, 0, "",
     "plant personal data (MACs, plates, e-mail, phones, resident ids)"},
    {"--resident", TOOL_OPT_STR, offsetof(struct opts, resident), 0, 0, "ID",
     "resident id for --kind meter (default derived from the device)"},
    {"--verbose", TOOL_OPT_FLAG, offsetof(struct opts, verbose), 0, 0, "", "print each payload"},
    {"--help", TOOL_OPT_FLAG, offsetof(struct opts, help), 0, 0, "", "this text"},
};
#define N_OPTIONS (sizeof(option_table) / sizeof(option_table[0]))

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: " PROG " --port N --device ID [options]\n"
	        "Publishes simulated sensor readings to raw/<district>/<kind>/<device> (MQTT v5)."
	        "\n");
	tool_opts_usage(f, option_table, N_OPTIONS, 12);
	fprintf(f, "Exit codes: 0 all accepted, 1 runtime failure or refusal, 2 usage error.\n");
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
	return tool_opts_parse(PROG, option_table, N_OPTIONS, argc, argv, o);
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
	struct tool_conn conn; /* first: it is the libmosquitto user data (tool_mqtt.h) */
	const struct opts *o;
	unsigned long published, sent, refused;
	unsigned long refused_by[256]; /* refusals per PUBACK reason code */
};

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

/* Publish at the requested rate. 0, or 1 on a local publish failure (reported). */
static int send_all(struct mosquitto *mosq, struct sim *s, struct cmq_sim_gen *gen,
                    const char *topic)
{
	const struct opts *o = s->o;
	long long start = tool_now_ms();
	char payload[PAYLOAD_MAX];

	for (unsigned long i = 0; (o->count == 0 || i < (unsigned long)o->count); i++) {
		long long due = start + (long long)((double)i * 1000.0 / o->rate);
		int len, rc, mid = 0;

		while (!stop_requested && !s->conn.disconnected && tool_now_ms() < due)
			tool_pump(mosq, &s->conn, due - tool_now_ms(), LOOP_SLICE_MS);
		if (stop_requested || s->conn.disconnected)
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
		tool_pump(mosq, &s->conn, 0, LOOP_SLICE_MS);
	}
	return 0;
}

static void drain_acks(struct mosquitto *mosq, struct sim *s)
{
	long long deadline = tool_now_ms() + ACK_DRAIN_MS;

	while (s->sent + s->refused < s->published && !s->conn.disconnected &&
	       tool_now_ms() < deadline)
		tool_pump(mosq, &s->conn, deadline - tool_now_ms(), LOOP_SLICE_MS);
}

static int run(const struct opts *o, enum cmq_sim_kind kind)
{
	struct sim s;
	struct cmq_sim_gen gen;
	struct mosquitto *mosq = NULL;
	char topic[TOPIC_MAX];
	int status = 1;

	memset(&s, 0, sizeof(s));
	s.o = o;
	tool_conn_init(&s.conn);
	snprintf(topic, sizeof(topic), "raw/%s/%s/%s", o->district, cmq_sim_kind_name(kind),
	         o->device);
	cmq_sim_gen_init(&gen, kind, o->device, o->district, o->resident, o->canaries != 0,
	                 (uint64_t)o->seed);

	mosq = tool_client_new(
	    PROG,
	    &(struct tool_client_opts){
	        .client_id = o->device, .cafile = o->cafile, .cert = o->cert, .key = o->key},
	    &s);
	if (mosq == NULL)
		return 1;
	mosquitto_publish_v5_callback_set(mosq, on_publish);
	if (tool_client_connect(PROG, mosq, o->device, o->host, o->port) != 0)
		goto out;
	if (tool_await_connack(PROG, mosq, &s.conn, &stop_requested, o->device, o->host, o->port,
	                       CONNECT_MS, LOOP_SLICE_MS,
	                       "(certificate rejected during the TLS handshake?)") != 0)
		goto out;
	if (send_all(mosq, &s, &gen, topic) != 0) {
		drain_acks(mosq, &s);
		summary(&s);
		goto out;
	}
	drain_acks(mosq, &s);
	summary(&s);
	if (s.conn.disconnected) {
		fprintf(stderr, PROG ": %s lost its connection: %s\n", o->device,
		        tool_disconnect_text(s.conn.disconnect_rc));
		goto out;
	}
	status = (s.refused == 0 && s.sent == s.published) ? 0 : 1;
	mosquitto_disconnect_v5(mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
out:
	mosquitto_destroy(mosq);
	tool_conn_cleanup(&s.conn);
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
