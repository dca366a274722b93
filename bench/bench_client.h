/*
 * bench_client.h - what the two benchmarks that drive a real broker (throughput,
 * gateway_e2e) share: their threaded libmosquitto clients (MQTT v5), the state those clients
 * and the main thread share during one measurement, the publisher's flow control, and
 * where the broker and the clients run.
 *
 * A measurement has one publisher (endpoint 0) and one reader (endpoint 1). libmosquitto
 * runs each client's callbacks on that client's network thread; they meet the main thread
 * in one struct bench_flow, under its mutex, and broadcast every change on its condition
 * variable. The variable uses CLOCK_MONOTONIC, so every wait has an absolute deadline and
 * none is unbounded. The reader's message callback is the program's own, because what
 * each program checks in a message differs: it counts the receipt (or a bad message) in
 * the flow, keeps its own state behind flow->user under the same mutex, and calls
 * bench_flow_wake().
 *
 * Flow control: the publisher keeps at most window messages published but not yet received
 * and refills from half the window, so the rate measures the path, not a queue growing
 * somewhere. A run stops early when the broker refuses a publish (PUBACK reason >= 0x80), a
 * client loses its connection, or the reader counted a bad message.
 *
 * CPUs: the broker runs on BENCH_BROKER_CPU, this process and its clients on
 * BENCH_CLIENT_CPU, when the machine has two CPUs or more (the callers' "pin").
 *
 * Include bench_common.h first (with _GNU_SOURCE defined); link libmosquitto and the
 * integration harness (tests/integration/harness.c).
 */
#ifndef CMQ_BENCH_CLIENT_H
#define CMQ_BENCH_CLIENT_H

#include "../tests/integration/harness.h"

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <pthread.h>
#include <unistd.h>

#define BENCH_BROKER_CPU          0
#define BENCH_CLIENT_CPU          1
#define BENCH_CONNECT_TIMEOUT_MS  10000 /* CONNACK, SUBACK */
#define BENCH_CLIENT_MAX_INFLIGHT 100   /* each client's MQTT v5 receive and send maximum */

/*
 * mosquitto.conf pieces (templates for cmq_h_broker_start) that both benchmarks' brokers
 * use: log to a file, without per-message lines that would cost the broker; the plugin with
 * the policy, vendors and operators files as three %s; devices by mutual TLS on @PORT0@;
 * operators by password over TLS on @PORT1@.
 */
#define BENCH_CONF_LOG                                                                             \
	"log_dest file @DIR@/mosquitto.log\n"                                                      \
	"log_type error\n"                                                                         \
	"log_type warning\n"                                                                       \
	"log_type notice\n"                                                                        \
	"log_type information\n"
#define BENCH_CONF_PLUGIN                                                                          \
	"plugin @PLUGIN@\n"                                                                        \
	"plugin_opt_policy %s\n"                                                                   \
	"plugin_opt_vendors %s\n"                                                                  \
	"plugin_opt_operators %s\n"                                                                \
	"plugin_opt_ca_file @PKI@/ca-bundle-test.pem\n"
#define BENCH_CONF_DEVICE_LISTENER                                                                 \
	"\nlistener @PORT0@ 127.0.0.1\n"                                                           \
	"cafile @PKI@/ca-bundle-test.pem\n"                                                        \
	"certfile @PKI@/server/server.pem\n"                                                       \
	"keyfile @PKI@/server/server.key\n"                                                        \
	"require_certificate true\n"
#define BENCH_CONF_OPERATOR_LISTENER                                                               \
	"\nlistener @PORT1@ 127.0.0.1\n"                                                           \
	"certfile @PKI@/server/server.pem\n"                                                       \
	"keyfile @PKI@/server/server.key\n"

/* ---- one measurement's shared state ---- */

struct bench_flow {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* broadcast on every change below that someone may wait for */
	size_t sent, received, target, window;
	size_t refused;   /* publishes the broker refused */
	size_t bad;       /* messages the reader found wrong (the program's check) */
	bool pub_waiting; /* the publisher waits for half its window */
	uint64_t t_last;  /* ns, last receipt */
	bool lost;        /* a client lost its connection */
	int conn_rc[2];   /* CONNACK reason per endpoint, -1 until it arrives */
	bool subscribed;
	int granted; /* the QoS the SUBACK granted, -1 until it arrives */
	void *user;  /* the program's reader state (borrowed), guarded by mu too */
};

struct bench_endpoint {
	struct bench_flow *f;
	int which; /* 0 publisher, 1 reader */
};

/* target: messages expected; window: at most this many published but not received. user is
 * borrowed and must outlive the flow. Undo with bench_flow_destroy. */
static inline void bench_flow_init(struct bench_flow *f, size_t target, size_t window, void *user)
{
	pthread_condattr_t ca;

	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&f->cv, &ca);
	pthread_condattr_destroy(&ca);
	f->target = target;
	f->window = window;
	f->granted = -1;
	f->conn_rc[0] = f->conn_rc[1] = -1;
	f->user = user;
}

static inline void bench_flow_destroy(struct bench_flow *f)
{
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mu);
}

/* Wait on the condition variable until deadline_ns; false once it has passed. Called with
 * f->mu held. */
static inline bool bench_flow_wait(struct bench_flow *f, uint64_t deadline_ns)
{
	struct timespec ts;

	if (bench_now_ns() >= deadline_ns)
		return false;
	ts.tv_sec = (time_t)(deadline_ns / 1000000000u);
	ts.tv_nsec = (long)(deadline_ns % 1000000000u);
	pthread_cond_timedwait(&f->cv, &f->mu, &ts);
	return true;
}

/* Wait (f->mu held) until something changes, the run's deadline passes, or nothing has been
 * received for stall_ns; false once either limit is reached. */
static inline bool bench_flow_wait_progress(struct bench_flow *f, uint64_t deadline,
                                            uint64_t stall_ns)
{
	uint64_t stall_at = f->t_last + stall_ns;

	return bench_flow_wait(f, stall_at < deadline ? stall_at : deadline);
}

/* For the reader's message callback, with f->mu held, after it counted a message: wake the
 * publisher once half its window is free and the main thread once every message arrived;
 * always wakes both if always is true (a bad message, which stops the run). Waking on
 * every message instead would cost the client CPU the benchmarks report. */
static inline void bench_flow_wake(struct bench_flow *f, bool always)
{
	if (always || (f->pub_waiting && f->sent - f->received <= f->window / 2) ||
	    f->received >= f->target)
		pthread_cond_broadcast(&f->cv);
}

/*
 * Publish up to msgs messages in all (counting f->sent) with at most f->window outstanding,
 * calling publish(ctx, seq) for seq = f->sent, f->sent + 1, ... without f->mu held. Stops
 * early when the run fails (refused, lost, bad), when publish returns non-zero (it says why;
 * that message is not counted as sent), or when the window does not drain (the deadline, or
 * nothing received for stall_ns). Called with f->mu held; returns with it held.
 */
static inline void bench_flow_send_windowed(struct bench_flow *f, size_t msgs, uint64_t deadline,
                                            uint64_t stall_ns,
                                            int (*publish)(void *ctx, size_t seq), void *ctx)
{
	while (f->sent < msgs && !f->lost && f->refused == 0 && f->bad == 0) {
		size_t seq;
		int rc;

		if (f->sent - f->received >= f->window) {
			/* Refill from half the window; give up when nothing arrives for too long.
			 */
			f->pub_waiting = true;
			while (f->sent - f->received > f->window / 2 && !f->lost &&
			       f->refused == 0 && bench_flow_wait_progress(f, deadline, stall_ns))
				;
			f->pub_waiting = false;
			if (f->sent - f->received > f->window / 2)
				break;
			continue;
		}
		seq = f->sent++;
		pthread_mutex_unlock(&f->mu);
		rc = publish(ctx, seq);
		pthread_mutex_lock(&f->mu);
		if (rc != 0) {
			f->sent--;
			break;
		}
	}
}

/* Wait (f->mu held) until every message sent has been received, the run failed, or the
 * deadline or the stall limit was reached. */
static inline void bench_flow_drain(struct bench_flow *f, uint64_t deadline, uint64_t stall_ns)
{
	while (f->received < f->sent && !f->lost && f->refused == 0 && f->bad == 0 &&
	       bench_flow_wait_progress(f, deadline, stall_ns))
		;
}

/* ---- client callbacks: record what happened in the endpoint's flow ---- */

static inline void bench_on_connect(struct mosquitto *m, void *ud, int rc, int flags,
                                    const mosquitto_property *p)
{
	struct bench_endpoint *e = ud;

	(void)m;
	(void)flags;
	(void)p;
	pthread_mutex_lock(&e->f->mu);
	e->f->conn_rc[e->which] = rc;
	pthread_cond_broadcast(&e->f->cv);
	pthread_mutex_unlock(&e->f->mu);
}

static inline void bench_on_disconnect(struct mosquitto *m, void *ud, int rc,
                                       const mosquitto_property *p)
{
	struct bench_endpoint *e = ud;

	(void)m;
	(void)p;
	pthread_mutex_lock(&e->f->mu);
	if (rc != 0)
		e->f->lost = true;
	pthread_cond_broadcast(&e->f->cv);
	pthread_mutex_unlock(&e->f->mu);
}

static inline void bench_on_subscribe(struct mosquitto *m, void *ud, int mid, int n,
                                      const int *granted, const mosquitto_property *p)
{
	struct bench_endpoint *e = ud;

	(void)m;
	(void)mid;
	(void)p;
	pthread_mutex_lock(&e->f->mu);
	e->f->subscribed = true;
	e->f->granted = n > 0 ? granted[0] : -1;
	pthread_cond_broadcast(&e->f->cv);
	pthread_mutex_unlock(&e->f->mu);
}

/* Counts only refusals: an accepted QoS 1 publish is seen at the reader. */
static inline void bench_on_publish(struct mosquitto *m, void *ud, int mid, int reason,
                                    const mosquitto_property *p)
{
	struct bench_endpoint *e = ud;

	(void)m;
	(void)mid;
	(void)p;
	if (reason < 0x80)
		return;
	pthread_mutex_lock(&e->f->mu);
	e->f->refused++;
	pthread_cond_broadcast(&e->f->cv);
	pthread_mutex_unlock(&e->f->mu);
}

/* ---- clients ---- */

struct bench_client_spec {
	const char *id;
	const char *user, *password; /* user NULL: no password (a device, by certificate) */
	const char *cafile;          /* NULL: plain TCP to 127.0.0.1; else TLS to localhost */
	const char *cert, *key;      /* client certificate and key, or NULL */
	int port;
	bool nodelay; /* MOSQ_OPT_TCP_NODELAY */
	/* the reader's message callback (ud: its struct bench_endpoint); NULL: a publisher */
	void (*on_message)(struct mosquitto *, void *, const struct mosquitto_message *,
	                   const mosquitto_property *);
};

/*
 * Create the client for endpoint e, connect it, start its network thread and wait (up to
 * BENCH_CONNECT_TIMEOUT_MS) for the broker's CONNACK. Returns the client (the caller
 * stops it with bench_client_stop; e must outlive it), or NULL with a message on stderr
 * prefixed prog and nothing left running.
 */
static inline struct mosquitto *
bench_client_start(const char *prog, const struct bench_client_spec *s, struct bench_endpoint *e)
{
	struct mosquitto *m = mosquitto_new(s->id, true, e);
	uint64_t deadline = bench_now_ns() + (uint64_t)BENCH_CONNECT_TIMEOUT_MS * 1000000u;
	int rc;

	if (m == NULL) {
		fprintf(stderr, "%s: mosquitto_new failed\n", prog);
		return NULL;
	}
	mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_int_option(m, MOSQ_OPT_RECEIVE_MAXIMUM, BENCH_CLIENT_MAX_INFLIGHT);
	mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, BENCH_CLIENT_MAX_INFLIGHT);
	if (s->nodelay)
		mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_v5_callback_set(m, bench_on_connect);
	mosquitto_disconnect_v5_callback_set(m, bench_on_disconnect);
	mosquitto_subscribe_v5_callback_set(m, bench_on_subscribe);
	mosquitto_publish_v5_callback_set(m, bench_on_publish);
	if (s->on_message != NULL)
		mosquitto_message_v5_callback_set(m, s->on_message);
	if (s->user != NULL && mosquitto_username_pw_set(m, s->user, s->password) != 0)
		goto fail;
	if (s->cafile != NULL &&
	    (rc = mosquitto_tls_set(m, s->cafile, NULL, s->cert, s->key, NULL)) != 0) {
		fprintf(stderr, "%s: mosquitto_tls_set: %s\n", prog, mosquitto_strerror(rc));
		goto fail;
	}
	/* TLS verifies the server certificate's name, which is localhost. */
	rc = mosquitto_connect_bind_v5(m, s->cafile ? "localhost" : "127.0.0.1", s->port, 60, NULL,
	                               NULL);
	if (rc != 0) {
		fprintf(stderr, "%s: connect %s to port %d: %s\n", prog, s->id, s->port,
		        mosquitto_strerror(rc));
		goto fail;
	}
	if (mosquitto_loop_start(m) != 0)
		goto fail;
	pthread_mutex_lock(&e->f->mu);
	while (e->f->conn_rc[e->which] < 0 && bench_flow_wait(e->f, deadline))
		;
	rc = e->f->conn_rc[e->which];
	pthread_mutex_unlock(&e->f->mu);
	if (rc != 0) {
		fprintf(stderr, "%s: %s was not accepted on port %d (CONNACK %d%s)\n", prog, s->id,
		        s->port, rc, rc < 0 ? ": no answer" : "");
		mosquitto_disconnect(m);
		mosquitto_loop_stop(m, true);
		goto fail;
	}
	return m;
fail:
	mosquitto_destroy(m);
	return NULL;
}

/* Disconnect, join the network thread and free; NULL is a no-op. */
static inline void bench_client_stop(struct mosquitto *m)
{
	if (m == NULL)
		return;
	mosquitto_disconnect(m);
	mosquitto_loop_stop(m, false); /* joins the thread once it has seen the disconnect */
	mosquitto_destroy(m);
}

/* Subscribe the reader m (whose flow is f) to filter at qos and wait (up to
 * BENCH_CONNECT_TIMEOUT_MS) for the SUBACK. Returns 0 if the broker granted qos, else -1;
 * f->granted then says what it granted (-1: no SUBACK, or the SUBSCRIBE was not sent).
 * Says nothing: the caller knows what the subscription was for. */
static inline int bench_client_subscribe(struct mosquitto *m, struct bench_flow *f,
                                         const char *filter, int qos)
{
	uint64_t deadline = bench_now_ns() + (uint64_t)BENCH_CONNECT_TIMEOUT_MS * 1000000u;
	bool ok;

	if (mosquitto_subscribe_v5(m, NULL, filter, qos, 0, NULL) != 0)
		return -1;
	pthread_mutex_lock(&f->mu);
	while (!f->subscribed && bench_flow_wait(f, deadline))
		;
	ok = f->subscribed && f->granted == qos;
	pthread_mutex_unlock(&f->mu);
	return ok ? 0 : -1;
}

/* ---- what arrives ---- */

/* The value of the first MQTT v5 user property called want (a copy the caller frees), or
 * NULL if there is none. */
static inline char *bench_user_prop(const mosquitto_property *props, const char *want)
{
	const mosquitto_property *p = props;
	bool skip_first = false;

	for (;;) {
		char *name = NULL, *value = NULL;

		p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value,
		                                        skip_first);
		if (p == NULL)
			return NULL;
		skip_first = true;
		if (name != NULL && strcmp(name, want) == 0) {
			free(name);
			return value;
		}
		free(name);
		free(value);
	}
}

/* Whether props carry the plugin's civicmq-provenance stamp for BENCH_DEVICE of vendor
 * civitas. The plugin refuses a message that already carries a civicmq-* property, so the
 * first civicmq-provenance is the only one. */
static inline bool bench_has_provenance(const mosquitto_property *props)
{
	static const char want[] = "civitas/" BENCH_DEVICE "/";
	char *v = bench_user_prop(props, "civicmq-provenance");
	bool found = v != NULL && strncmp(v, want, strlen(want)) == 0;

	free(v);
	return found;
}

/* ---- set-up ---- */

/* BENCH_DEVICE's certificate and key from the example PKI (cmq_h_pki), their paths into
 * cert and key (CMQ_H_PATH_MAX each). Returns 0, or -1 with a message if either is not
 * readable. */
static inline int bench_device_files(const char *prog, char *cert, char *key)
{
	const char *path = cmq_h_pki("vendors/civitas/devices/" BENCH_DEVICE ".pem");

	snprintf(cert, CMQ_H_PATH_MAX, "%s", path ? path : "");
	path = cmq_h_pki("vendors/civitas/devices/" BENCH_DEVICE ".key");
	snprintf(key, CMQ_H_PATH_MAX, "%s", path ? path : "");
	if (access(cert, R_OK) != 0 || access(key, R_OK) != 0) {
		fprintf(stderr, "%s: no certificate for %s in the PKI\n", prog, BENCH_DEVICE);
		return -1;
	}
	return 0;
}

/*
 * Start a broker from the template conf on BENCH_BROKER_CPU: this thread pins itself there
 * while the broker starts (the broker inherits it), then back to BENCH_CLIENT_CPU, and the
 * broker's affinity is checked. With pin false nothing is pinned. name is the broker in
 * messages ("broker A", "the broker"). Returns 0 (br running; stop it with
 * cmq_h_broker_stop), or -1 with a message and nothing left running.
 */
static inline int bench_broker_start(const char *prog, const char *name, bool pin,
                                     struct cmq_h_broker *br, const char *conf)
{
	int rc;

	if (bench_pin_to(prog, pin, BENCH_BROKER_CPU) != 0)
		return -1;
	rc = cmq_h_broker_start(br, conf);
	if (bench_pin_to(prog, pin, BENCH_CLIENT_CPU) != 0 || rc != 0) {
		if (rc == 0)
			cmq_h_broker_stop(br);
		fprintf(stderr, "%s: %s did not start\n", prog, name);
		return -1;
	}
	if (pin && bench_check_pinned(prog, br->pid, BENCH_BROKER_CPU, "broker") != 0) {
		cmq_h_broker_stop(br);
		return -1;
	}
	return 0;
}

#endif
