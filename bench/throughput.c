/*
 * throughput.c - broker messages/s with the civicmq plugin (B) against the same Mosquitto
 * without it (A), in the same run, alternating A B A B, reported as the median of the
 * paired ratios B/A, at QoS 0 and 1, with a 100,000-rule policy loaded.
 *
 *   throughput [-N] [-r ROUNDS] [-0 MSGS_QOS0] [-1 MSGS_QOS1] [-p tls,tcp] [-n RULES]
 *   throughput [-N] --callgrind MSGS [-p tls,tcp] [-n RULES]
 *
 * -N sets TCP_NODELAY on every socket (set_tcp_nodelay true in both brokers,
 * MOSQ_OPT_TCP_NODELAY in the clients). bench/run.sh uses it: with Mosquitto's defaults
 * Nagle's algorithm paces the plain-TCP path and neither CPU is saturated on a 2-CPU
 * machine, so the rate would not measure the broker. Defaults: 5 rounds, 50,000 messages
 * at QoS 0 and 20,000 at QoS 1, both paths, 100,000 rules.
 *
 * Two paths ("-p"), both on one broker config per side:
 *   tls  the deployment path: a device (civitas-air-001, its real certificate from the
 *        example PKI) publishes raw/north/air/civitas-air-001 over mutual TLS; the gateway
 *        operator (password, TLS) subscribes to raw/#. With the plugin every message costs
 *        a WRITE decision, a provenance stamp (four MQTT v5 user properties) and a READ
 *        decision per delivery.
 *   tcp  the plugin's cost without TLS masking it: the gateway publishes city/north/air
 *        and a dashboard reads city/# over plain TCP, both by password (civicmq requires
 *        certificates of devices, so devices cannot use this path): a WRITE and a READ
 *        decision per message, no stamp.
 * A is plain mosquitto with the same listeners: the device listener verifies the client
 * certificate (require_certificate, use_identity_as_username) and allow_anonymous is true,
 * so that it works without the plugin. B adds the plugin (config written by civicmq_env
 * with the generated policy: the example city plus bench rules, RULES in total; the
 * device's rule is the example's raw/+/air/+). Both sides: max_inflight_messages 100, no
 * persistence, log_type error/warning/notice/information to a file (no per-message
 * logging). Every round starts a fresh broker for A, measures, stops it, then the same for B.
 *
 * One measurement: the subscriber (threaded libmosquitto client, MQTT v5, receive maximum
 * 100) subscribes at the QoS under test; the publisher (same) sends MSGS messages of 200
 * bytes at that QoS as fast as flow control allows: at most 100 (QoS 1) or 500 (QoS 0)
 * messages published but not yet received, refilled from half. rate = MSGS / (time from
 * the first publish to the last receipt). Also reported: the broker's CPU time per message
 * (/proc/<pid>/schedstat) and how busy its core was, which tell whether the broker was the
 * bottleneck. Any lost message at QoS 1, more than 1 % lost at QoS 0, a refused publish,
 * a broker that does not start or does not exit cleanly, or B not stamping provenance on
 * the device path fails the run (exit 1). Every wait is bounded.
 *
 * Pinning: the broker runs on CPU 0 (this process pins itself to CPU 0 while it starts
 * the broker, which inherits that, and checks it), the clients and this process on CPU 1.
 *
 * --callgrind MSGS: instead of timing, run each broker under
 * `valgrind --tool=callgrind --instr-atstart=no` (via a wrapper script in a temp directory,
 * CMQ_MOSQUITTO), switch instrumentation on with callgrind_control once both clients are
 * connected, send MSGS messages, dump, and report the broker's user-space instructions per
 * message for A and B: deterministic, where wall-clock ratios on a shared machine are not.
 *
 * Environment: CMQ_SRC, CMQ_BUILD, CMQ_PKI_DIR as for the integration tests (harness.h).
 */
#define _GNU_SOURCE
#include "bench_common.h"

#include "../tests/integration/civicmq_env.h"

#include <errno.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_ROUNDS     5
#define DEFAULT_MSGS_QOS0  50000
#define DEFAULT_MSGS_QOS1  20000
#define DEFAULT_RULES      100000
#define MAX_ROUNDS         51
#define PAYLOAD_LEN        200
#define WINDOW_QOS0        500
#define WINDOW_QOS1        100
#define CONNECT_TIMEOUT_MS 10000
#define RUN_TIMEOUT_MS     120000 /* one measurement, however slow */
#define STALL_TIMEOUT_MS   5000   /* no message received for this long: stop waiting */
#define CG_STALL_MS        20000  /* the same under valgrind */
#define CTL_TIMEOUT_MS     30000  /* one callgrind_control call */
#define BROKER_CPU         0
#define CLIENT_CPU         1

/* ---- the two paths and the two brokers ---- */

struct path {
	const char *name;
	const char *title;
	bool tls;
	const char *pub_id, *pub_user; /* pub_user NULL: device certificate */
	const char *sub_id, *sub_user;
	const char *topic, *filter;
	bool stamped; /* B stamps provenance on this path */
};

static const struct path paths[] = {
    {"tls", "TLS, device -> gateway (raw/north/air/civitas-air-001 -> raw/#)", true, BENCH_DEVICE,
     NULL, "gateway", "gateway", BENCH_DEVICE_TOPIC, "raw/#", true},
    {"tcp", "plain TCP, gateway -> dashboard (city/north/air -> city/#)", false, "gateway",
     "gateway", "dashboard", "dashboard", BENCH_CITY_TOPIC, "city/#", false},
};
#define N_PATHS (sizeof(paths) / sizeof(paths[0]))

/* Listeners shared by both sides: @PORT0@ devices (mutual TLS), @PORT1@ operators (TLS),
 * @PORT2@ operators (plain TCP). */
#define COMMON_CONF                                                                                \
	"log_dest file @DIR@/mosquitto.log\n"                                                      \
	"log_type error\n"                                                                         \
	"log_type warning\n"                                                                       \
	"log_type notice\n"                                                                        \
	"log_type information\n"                                                                   \
	"max_inflight_messages 100\n"

#define LISTENERS(device_extra)                                                                    \
	"\nlistener @PORT0@ 127.0.0.1\n"                                                           \
	"cafile @PKI@/ca-bundle-test.pem\n"                                                        \
	"certfile @PKI@/server/server.pem\n"                                                       \
	"keyfile @PKI@/server/server.key\n"                                                        \
	"require_certificate true\n" device_extra "\nlistener @PORT1@ 127.0.0.1\n"                 \
	"certfile @PKI@/server/server.pem\n"                                                       \
	"keyfile @PKI@/server/server.key\n"                                                        \
	"\nlistener @PORT2@ 127.0.0.1\n"

/* A: %s = extra global settings. */
#define PLAIN_CONF_FMT                                                                             \
	"# A: plain mosquitto, no plugin\n"                                                        \
	"per_listener_settings false\n"                                                            \
	"allow_anonymous true\n" COMMON_CONF "%s" LISTENERS("use_identity_as_username true\n")

/* B: %s = extra global settings, then policy, vendors, operators (civicmq_env's files). */
#define PLUGIN_CONF_FMT                                                                            \
	"# B: the same with civicmq\n"                                                             \
	"per_listener_settings false\n"                                                            \
	"allow_anonymous false\n" COMMON_CONF "%s"                                                 \
	"plugin @PLUGIN@\n"                                                                        \
	"plugin_opt_policy %s\n"                                                                   \
	"plugin_opt_vendors %s\n"                                                                  \
	"plugin_opt_operators %s\n"                                                                \
	"plugin_opt_ca_file @PKI@/ca-bundle-test.pem\n" LISTENERS("")

struct bench {
	struct cmq_env env; /* config files (policy, vendors, operators) and the client cafile */
	char plain_conf[4096];
	char plugin_conf[4096];
	bool nodelay; /* TCP_NODELAY on every socket (-N) */
	size_t rules;
	char cert[CMQ_H_PATH_MAX], key[CMQ_H_PATH_MAX];
	unsigned char payload[PAYLOAD_LEN];
	bool pin; /* two or more CPUs */
	bool callgrind;
	char cg_dir[CMQ_H_PATH_MAX]; /* wrapper script and callgrind output (--callgrind) */
	double plugin_load_ms[2 * MAX_ROUNDS * 2 * N_PATHS]; /* as the plugin logged it */
	size_t n_plugin_load;
};

/* ---- one measurement's shared state (client threads and the main thread) ---- */

struct flow {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t sent, received, refused, target, window;
	bool pub_waiting;
	uint64_t t_last; /* ns, last receipt */
	int stamped;     /* first message's civicmq-provenance named BENCH_DEVICE: 1, no: 0, -1 */
	bool lost;       /* a client lost its connection */
	bool connected[2];
	int conn_rc[2];
	bool subscribed;
	int granted;
};

struct endpoint {
	struct flow *f;
	int which; /* 0 publisher, 1 subscriber */
};

static void flow_init(struct flow *f, size_t target, size_t window)
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
	f->stamped = -1;
	f->granted = -1;
	f->conn_rc[0] = f->conn_rc[1] = -1;
}

static void flow_destroy(struct flow *f)
{
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mu);
}

/* Wait on the condition variable until deadline_ns; false once it has passed. Called with
 * f->mu held. */
static bool flow_wait(struct flow *f, uint64_t deadline_ns)
{
	struct timespec ts;
	uint64_t now = bench_now_ns();

	if (now >= deadline_ns)
		return false;
	ts.tv_sec = (time_t)(deadline_ns / 1000000000u);
	ts.tv_nsec = (long)(deadline_ns % 1000000000u);
	pthread_cond_timedwait(&f->cv, &f->mu, &ts);
	return true;
}

static void on_connect(struct mosquitto *m, void *ud, int rc, int flags,
                       const mosquitto_property *p)
{
	struct endpoint *e = ud;

	(void)m;
	(void)flags;
	(void)p;
	pthread_mutex_lock(&e->f->mu);
	e->f->connected[e->which] = rc == 0;
	e->f->conn_rc[e->which] = rc;
	pthread_cond_broadcast(&e->f->cv);
	pthread_mutex_unlock(&e->f->mu);
}

static void on_disconnect(struct mosquitto *m, void *ud, int rc, const mosquitto_property *p)
{
	struct endpoint *e = ud;

	(void)m;
	(void)p;
	pthread_mutex_lock(&e->f->mu);
	if (rc != 0)
		e->f->lost = true;
	e->f->connected[e->which] = false;
	pthread_cond_broadcast(&e->f->cv);
	pthread_mutex_unlock(&e->f->mu);
}

static void on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *granted,
                         const mosquitto_property *p)
{
	struct endpoint *e = ud;

	(void)m;
	(void)mid;
	(void)p;
	pthread_mutex_lock(&e->f->mu);
	e->f->subscribed = true;
	e->f->granted = n > 0 ? granted[0] : -1;
	pthread_cond_broadcast(&e->f->cv);
	pthread_mutex_unlock(&e->f->mu);
}

static void on_publish(struct mosquitto *m, void *ud, int mid, int reason,
                       const mosquitto_property *p)
{
	struct endpoint *e = ud;

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

/* Whether props carry a civicmq-provenance naming BENCH_DEVICE of vendor civitas. */
static bool has_stamp(const mosquitto_property *props)
{
	const mosquitto_property *p = props;
	bool found = false, skip_first = false;

	while (!found) {
		char *name = NULL, *value = NULL;

		p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value,
		                                        skip_first);
		if (p == NULL)
			break;
		found = name != NULL && value != NULL && strcmp(name, "civicmq-provenance") == 0 &&
		        strncmp(value, "civitas/" BENCH_DEVICE "/",
		                strlen("civitas/" BENCH_DEVICE "/")) == 0;
		free(name);
		free(value);
		skip_first = true;
	}
	return found;
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
	struct endpoint *e = ud;
	struct flow *f = e->f;
	uint64_t now = bench_now_ns();

	(void)m;
	(void)msg;
	pthread_mutex_lock(&f->mu);
	f->received++;
	f->t_last = now;
	if (f->stamped < 0)
		f->stamped = has_stamp(props);
	if ((f->pub_waiting && f->sent - f->received <= f->window / 2) || f->received >= f->target)
		pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

/* ---- clients ---- */

struct client_spec {
	const char *id, *user, *password;
	const char *cafile, *cert, *key; /* cafile NULL: plain TCP */
	int port;
	bool subscriber;
};

/* Create, connect and start the network thread; waits for the CONNACK. NULL on failure. */
static struct mosquitto *client_start(const struct client_spec *s, bool nodelay, struct endpoint *e)
{
	struct mosquitto *m = mosquitto_new(s->id, true, e);
	uint64_t deadline = bench_now_ns() + (uint64_t)CONNECT_TIMEOUT_MS * 1000000u;
	int rc;

	if (m == NULL) {
		fprintf(stderr, "throughput: mosquitto_new failed\n");
		return NULL;
	}
	mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_int_option(m, MOSQ_OPT_RECEIVE_MAXIMUM, WINDOW_QOS1);
	mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, WINDOW_QOS1);
	if (nodelay)
		mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_v5_callback_set(m, on_connect);
	mosquitto_disconnect_v5_callback_set(m, on_disconnect);
	mosquitto_subscribe_v5_callback_set(m, on_subscribe);
	mosquitto_publish_v5_callback_set(m, on_publish);
	if (s->subscriber)
		mosquitto_message_v5_callback_set(m, on_message);
	if (s->user != NULL && mosquitto_username_pw_set(m, s->user, s->password) != 0)
		goto fail;
	if (s->cafile != NULL &&
	    (rc = mosquitto_tls_set(m, s->cafile, NULL, s->cert, s->key, NULL)) != 0) {
		fprintf(stderr, "throughput: mosquitto_tls_set: %s\n", mosquitto_strerror(rc));
		goto fail;
	}
	rc = mosquitto_connect_bind_v5(m, s->cafile ? "localhost" : "127.0.0.1", s->port, 60, NULL,
	                               NULL);
	if (rc != 0) {
		fprintf(stderr, "throughput: connect %s to port %d: %s\n", s->id, s->port,
		        mosquitto_strerror(rc));
		goto fail;
	}
	if (mosquitto_loop_start(m) != 0)
		goto fail;
	pthread_mutex_lock(&e->f->mu);
	while (e->f->conn_rc[e->which] < 0 && flow_wait(e->f, deadline))
		;
	rc = e->f->conn_rc[e->which];
	pthread_mutex_unlock(&e->f->mu);
	if (rc != 0) {
		fprintf(stderr, "throughput: %s was not accepted on port %d (CONNACK %d%s)\n",
		        s->id, s->port, rc, rc < 0 ? ": no answer" : "");
		mosquitto_disconnect(m);
		mosquitto_loop_stop(m, true);
		goto fail;
	}
	return m;
fail:
	mosquitto_destroy(m);
	return NULL;
}

static void client_stop(struct mosquitto *m)
{
	if (m == NULL)
		return;
	mosquitto_disconnect(m);
	mosquitto_loop_stop(m, false); /* joins the thread once it has seen the disconnect */
	mosquitto_destroy(m);
}

/* ---- brokers ---- */

static int pin_to(struct bench *b, int cpu)
{
	if (!b->pin)
		return 0;
	if (bench_pin_cpu(cpu) != 0) {
		fprintf(stderr, "throughput: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
		return -1;
	}
	return 0;
}

/* The CPUs pid may run on must be exactly {cpu}. */
static int check_pinned(pid_t pid, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	if (sched_getaffinity(pid, sizeof(set), &set) != 0 || CPU_COUNT(&set) != 1 ||
	    !CPU_ISSET(cpu, &set)) {
		fprintf(stderr, "throughput: broker %d is not pinned to CPU %d\n", (int)pid, cpu);
		return -1;
	}
	return 0;
}

/* CPU time the broker has used, ns (it is single-threaded: its main task's schedstat). */
static long long broker_cpu_ns(pid_t pid)
{
	char path[64];
	long long ns = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	if (fscanf(f, "%lld", &ns) != 1)
		ns = -1;
	fclose(f);
	return ns;
}

/* The plugin's "... loaded in X ms: N topic rules" line; checks N. */
static int check_plugin_loaded(struct bench *b, const struct cmq_h_broker *br)
{
	char needle[64];
	char line[512];
	FILE *f;
	int found = -1;

	snprintf(needle, sizeof(needle), ": %zu topic rules", b->rules);
	f = fopen(br->log_path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		const char *at = strstr(line, "civicmq: start: policy ");
		const char *ms = at ? strstr(at, " loaded in ") : NULL;

		if (ms != NULL && strstr(ms, needle) != NULL) {
			char *end = NULL;
			double v = strtod(ms + strlen(" loaded in "), &end);

			if (end != NULL && b->n_plugin_load < sizeof(b->plugin_load_ms) /
			                                          sizeof(b->plugin_load_ms[0]))
				b->plugin_load_ms[b->n_plugin_load++] = v;
			found = 0;
		}
	}
	fclose(f);
	if (found != 0) {
		fprintf(stderr,
		        "throughput: the broker log has no \"civicmq: start: policy ... "
		        "loaded ... %s\" line\n",
		        needle);
		cmq_h_log_print(br, 0);
	}
	return found;
}

static int broker_start(struct bench *b, struct cmq_h_broker *br, bool plugin)
{
	int rc;

	if (pin_to(b, BROKER_CPU) != 0)
		return -1;
	rc = cmq_h_broker_start(br, plugin ? b->plugin_conf : b->plain_conf);
	if (pin_to(b, CLIENT_CPU) != 0 || rc != 0) {
		if (rc == 0)
			cmq_h_broker_stop(br);
		fprintf(stderr, "throughput: broker %s did not start\n", plugin ? "B" : "A");
		return -1;
	}
	if ((b->pin && check_pinned(br->pid, BROKER_CPU) != 0) ||
	    (plugin && check_plugin_loaded(b, br) != 0)) {
		cmq_h_broker_stop(br);
		return -1;
	}
	return 0;
}

/* ---- callgrind control (--callgrind) ---- */

/* Run callgrind_control ARG PID, bounded. 0 on success. */
static int callgrind_control(const char *arg, pid_t pid)
{
	char pidbuf[16];
	uint64_t deadline = bench_now_ns() + (uint64_t)CTL_TIMEOUT_MS * 1000000u;
	pid_t c;
	int status;

	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)pid);
	c = fork();
	if (c < 0)
		return -1;
	if (c == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0)
			dup2(null, 1);
		execlp("callgrind_control", "callgrind_control", arg, pidbuf, (char *)NULL);
		_exit(127);
	}
	for (;;) {
		pid_t w = waitpid(c, &status, WNOHANG);

		if (w == c)
			break;
		if (bench_now_ns() > deadline) {
			kill(c, SIGKILL);
			waitpid(c, &status, 0);
			fprintf(stderr, "throughput: callgrind_control %s %d timed out\n", arg,
			        (int)pid);
			return -1;
		}
		usleep(10000);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "throughput: callgrind_control %s %d failed\n", arg, (int)pid);
		return -1;
	}
	return 0;
}

/* Instructions in the first dump (<out>.1) of broker pid: its "summary:" or "totals:". */
static long long callgrind_dump_total(const struct bench *b, pid_t pid)
{
	char path[CMQ_H_PATH_MAX + 64], line[256];
	long long total = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/callgrind.out.%d.1", b->cg_dir, (int)pid);
	/* The dump is written asynchronously after callgrind_control returns; wait for it. */
	for (int i = 0; i < 500; i++) {
		f = fopen(path, "r");
		if (f != NULL) {
			while (fgets(line, sizeof(line), f) != NULL) {
				if (strncmp(line, "summary:", 8) == 0 ||
				    strncmp(line, "totals:", 7) == 0)
					total = strtoll(strchr(line, ':') + 1, NULL, 10);
			}
			fclose(f);
			if (total >= 0)
				return total;
		}
		usleep(20000);
	}
	fprintf(stderr, "throughput: no callgrind dump %s\n", path);
	return -1;
}

/* ---- one measurement ---- */

/* Wait (f->mu held) until something changes, the run's deadline passes, or nothing has been
 * received for stall_ns; false once either limit is reached. */
static bool flow_wait_progress(struct flow *f, uint64_t deadline, uint64_t stall_ns)
{
	uint64_t stall_at = f->t_last + stall_ns;

	return flow_wait(f, stall_at < deadline ? stall_at : deadline);
}

struct result {
	double rate;        /* messages received per second */
	double broker_us;   /* broker CPU per message, µs */
	double broker_busy; /* broker CPU time / wall time */
	double client_us;   /* this process's CPU per message (both clients), µs */
	size_t received;
	long long instr; /* --callgrind: broker instructions in the measured part */
	pid_t broker;    /* its PID (names the callgrind dump) */
};

static int measure(struct bench *b, const struct path *pa, int qos, size_t msgs, bool plugin,
                   struct result *out)
{
	struct cmq_h_broker br;
	struct flow f;
	struct endpoint pe, se;
	struct mosquitto *pub = NULL, *sub = NULL;
	struct client_spec ps, ss;
	struct rusage ru0, ru1;
	long long cpu0, cpu1;
	uint64_t t0, deadline, stall_ns;
	int rc = -1, mid;

	memset(out, 0, sizeof(*out));
	flow_init(&f, msgs, qos ? WINDOW_QOS1 : WINDOW_QOS0);
	pe.f = se.f = &f;
	pe.which = 0;
	se.which = 1;
	if (broker_start(b, &br, plugin) != 0) {
		flow_destroy(&f);
		return -1;
	}
	memset(&ps, 0, sizeof(ps));
	memset(&ss, 0, sizeof(ss));
	ps.id = pa->pub_id;
	ss.id = pa->sub_id;
	ss.subscriber = true;
	if (pa->tls) {
		ps.cafile = ss.cafile = b->env.cafile;
		ps.cert = b->cert;
		ps.key = b->key;
		ps.port = br.port[0];
		ss.port = br.port[1];
	} else {
		ps.port = ss.port = br.port[2];
	}
	if (pa->pub_user != NULL) {
		ps.user = pa->pub_user;
		ps.password = "gateway-secret";
	}
	ss.user = pa->sub_user;
	ss.password = strcmp(pa->sub_user, "gateway") == 0 ? "gateway-secret" : "dashboard-secret";

	sub = client_start(&ss, b->nodelay, &se);
	if (sub == NULL)
		goto out;
	deadline = bench_now_ns() + (uint64_t)CONNECT_TIMEOUT_MS * 1000000u;
	if (mosquitto_subscribe_v5(sub, NULL, pa->filter, qos, 0, NULL) != 0)
		goto out;
	pthread_mutex_lock(&f.mu);
	while (!f.subscribed && flow_wait(&f, deadline))
		;
	pthread_mutex_unlock(&f.mu);
	if (!f.subscribed || f.granted != qos) {
		fprintf(stderr, "throughput: %s: subscription %s refused (granted %d)\n",
		        pa->sub_id, pa->filter, f.granted);
		goto out;
	}
	pub = client_start(&ps, b->nodelay, &pe);
	if (pub == NULL)
		goto out;
	if (b->callgrind && callgrind_control("--instr=on", br.pid) != 0)
		goto out;

	stall_ns = (uint64_t)(b->callgrind ? CG_STALL_MS : STALL_TIMEOUT_MS) * 1000000u;
	getrusage(RUSAGE_SELF, &ru0);
	cpu0 = broker_cpu_ns(br.pid);
	t0 = bench_now_ns();
	deadline = t0 + (uint64_t)RUN_TIMEOUT_MS * 1000000u;
	pthread_mutex_lock(&f.mu);
	f.t_last = t0;
	while (f.sent < msgs && !f.lost && f.refused == 0) {
		if (f.sent - f.received >= f.window) {
			/* Refill from half the window; give up when nothing arrives for too long.
			 */
			f.pub_waiting = true;
			while (f.sent - f.received > f.window / 2 && !f.lost && f.refused == 0 &&
			       flow_wait_progress(&f, deadline, stall_ns))
				;
			f.pub_waiting = false;
			if (f.sent - f.received > f.window / 2)
				break;
			continue;
		}
		f.sent++;
		pthread_mutex_unlock(&f.mu);
		mid = 0;
		rc = mosquitto_publish_v5(pub, &mid, pa->topic, PAYLOAD_LEN, b->payload, qos, false,
		                          NULL);
		pthread_mutex_lock(&f.mu);
		if (rc != 0) {
			fprintf(stderr, "throughput: publish: %s\n", mosquitto_strerror(rc));
			break;
		}
	}
	while (f.received < f.sent && !f.lost && f.refused == 0 &&
	       flow_wait_progress(&f, deadline, stall_ns))
		;
	cpu1 = broker_cpu_ns(br.pid);
	getrusage(RUSAGE_SELF, &ru1);
	out->received = f.received;
	out->rate = f.t_last > t0 ? (double)f.received / ((double)(f.t_last - t0) / 1e9) : 0;
	out->broker_us = f.received ? (double)(cpu1 - cpu0) / 1e3 / (double)f.received : 0;
	out->broker_busy = f.t_last > t0 ? (double)(cpu1 - cpu0) / (double)(f.t_last - t0) : 0;
	out->client_us = f.received ? ((double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) * 1e6 +
	                               (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) +
	                               (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1e6 +
	                               (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec)) /
	                                  (double)f.received
	                            : 0;
	pthread_mutex_unlock(&f.mu);

	rc = -1;
	out->broker = br.pid;
	if (b->callgrind) {
		if (callgrind_control("--dump=measured", br.pid) != 0 ||
		    (out->instr = callgrind_dump_total(b, br.pid)) < 0)
			goto out;
	}
	if (f.refused > 0) {
		fprintf(stderr, "throughput: %s %s: %zu publishes refused by the broker\n",
		        plugin ? "B" : "A", pa->name, f.refused);
	} else if (f.lost) {
		fprintf(stderr, "throughput: %s %s: a client lost its connection\n",
		        plugin ? "B" : "A", pa->name);
	} else if (f.sent < msgs) {
		fprintf(stderr, "throughput: %s %s QoS %d: stalled after %zu of %zu published\n",
		        plugin ? "B" : "A", pa->name, qos, f.sent, msgs);
	} else if (f.received < msgs && (qos > 0 || f.received < msgs - msgs / 100)) {
		fprintf(stderr, "throughput: %s %s QoS %d: %zu of %zu messages received\n",
		        plugin ? "B" : "A", pa->name, qos, f.received, msgs);
	} else if (f.stamped != (plugin && pa->stamped)) {
		fprintf(stderr, "throughput: %s %s: messages %s civicmq provenance\n",
		        plugin ? "B" : "A", pa->name, f.stamped == 1 ? "carry" : "lack");
	} else if (cpu0 < 0 || cpu1 < 0) {
		fprintf(stderr, "throughput: cannot read /proc/%d/schedstat\n", (int)br.pid);
	} else {
		rc = 0;
	}
	if (f.received < msgs && rc == 0)
		fprintf(stderr, "throughput: note: %s %s QoS 0 lost %zu of %zu messages\n",
		        plugin ? "B" : "A", pa->name, msgs - f.received, msgs);
out:
	client_stop(pub);
	client_stop(sub);
	if (cmq_h_broker_stop(&br) != 0) {
		fprintf(stderr, "throughput: broker %s did not exit cleanly\n", plugin ? "B" : "A");
		rc = -1;
	}
	flow_destroy(&f);
	return rc;
}

/* ---- setup ---- */

static int setup(struct bench *b)
{
	struct cmq_env_overrides ov;
	const char *path, *extra;
	char *text = NULL;
	size_t len = 0, n_bench = 0;
	FILE *mem;
	int rc;

	b->pin = sysconf(_SC_NPROCESSORS_ONLN) > CLIENT_CPU;
	if (!b->pin)
		fprintf(stderr, "throughput: one CPU only; broker and clients are not pinned\n");
	if (pin_to(b, CLIENT_CPU) != 0)
		return -1;
	for (size_t i = 0; i < PAYLOAD_LEN; i++)
		b->payload[i] = (unsigned char)('a' + i % 26);
	cmq_h_init();
	if (cmq_h_pki_dir() == NULL)
		return -1;
	mem = open_memstream(&text, &len);
	if (mem == NULL)
		return -1;
	rc = bench_write_policy(mem, b->rules, &n_bench);
	if (fclose(mem) != 0 || rc != 0) {
		free(text);
		return -1;
	}
	memset(&ov, 0, sizeof(ov));
	ov.policy_text = text;
	rc = cmq_env_init(&b->env, &ov);
	free(text);
	if (rc != 0) {
		fprintf(stderr, "throughput: cannot write the civicmq config\n");
		return -1;
	}
	path = cmq_h_pki("vendors/civitas/devices/" BENCH_DEVICE ".pem");
	snprintf(b->cert, sizeof(b->cert), "%s", path ? path : "");
	path = cmq_h_pki("vendors/civitas/devices/" BENCH_DEVICE ".key");
	snprintf(b->key, sizeof(b->key), "%s", path ? path : "");
	if (access(b->cert, R_OK) != 0 || access(b->key, R_OK) != 0) {
		fprintf(stderr, "throughput: no certificate for %s in the PKI\n", BENCH_DEVICE);
		return -1;
	}
	extra = b->nodelay ? "set_tcp_nodelay true\n" : "";
	if (snprintf(b->plain_conf, sizeof(b->plain_conf), PLAIN_CONF_FMT, extra) >=
	        (int)sizeof(b->plain_conf) ||
	    snprintf(b->plugin_conf, sizeof(b->plugin_conf), PLUGIN_CONF_FMT, extra, b->env.policy,
	             b->env.vendors, b->env.operators) >= (int)sizeof(b->plugin_conf))
		return -1;
	return 0;
}

/* --callgrind: a wrapper the harness execs as CMQ_MOSQUITTO. */
static int setup_callgrind(struct bench *b)
{
	const char *tmp = getenv("TMPDIR");
	char script[CMQ_H_PATH_MAX + 32], text[CMQ_H_PATH_MAX * 2];

	snprintf(b->cg_dir, sizeof(b->cg_dir), "%s/cmq-bench-cg-XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(b->cg_dir) == NULL)
		return -1;
	snprintf(script, sizeof(script), "%s/mosquitto", b->cg_dir);
	snprintf(text, sizeof(text),
	         "#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no "
	         "--callgrind-out-file=%s/callgrind.out.%%p mosquitto \"$@\"\n",
	         b->cg_dir);
	if (bench_write_file(script, text) != 0 || chmod(script, 0755) != 0)
		return -1;
	return setenv("CMQ_MOSQUITTO", script, 1);
}

static void cleanup_callgrind(struct bench *b)
{
	char cmd[CMQ_H_PATH_MAX + 32];

	if (b->cg_dir[0] == '\0' || getenv("CMQ_KEEP_TMP") != NULL)
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->cg_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "throughput: could not remove %s\n", b->cg_dir);
}

/* ---- reports ---- */

static double min_of(const double *v, size_t n)
{
	double m = v[0];

	for (size_t i = 1; i < n; i++)
		m = v[i] < m ? v[i] : m;
	return m;
}

static double max_of(const double *v, size_t n)
{
	double m = v[0];

	for (size_t i = 1; i < n; i++)
		m = v[i] > m ? v[i] : m;
	return m;
}

struct summary {
	const struct path *pa;
	int qos;
	size_t msgs, rounds;
	double a_rate, b_rate, ratio, ratio_min, ratio_max;
	double a_us, b_us, cpu_ratio, a_busy, b_busy;
};

static int run_timed(struct bench *b, const bool *use, size_t rounds, const size_t msgs[2])
{
	struct summary sums[N_PATHS * 2];
	size_t n_sums = 0;

	for (size_t pi = 0; pi < N_PATHS; pi++) {
		if (!use[pi])
			continue;
		for (int qos = 0; qos <= 1; qos++) {
			struct result a[MAX_ROUNDS], bb[MAX_ROUNDS];
			double ratio[MAX_ROUNDS] = {0}, cpu_ratio[MAX_ROUNDS] = {0}, v1[MAX_ROUNDS],
			       v2[MAX_ROUNDS];
			struct summary *s = &sums[n_sums++];

			printf("\n#### %s, QoS %d: %zu messages of %d bytes per run\n\n"
			       "| round | plain msg/s | civicmq msg/s | ratio B/A | plain broker "
			       "µs/msg | civicmq broker µs/msg | broker CPU B/A | broker core busy "
			       "A / B | clients µs/msg A / B |\n"
			       "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
			       paths[pi].title, qos, msgs[qos], PAYLOAD_LEN);
			fflush(stdout);
			for (size_t r = 0; r < rounds; r++) {
				fprintf(stderr, "throughput: %s QoS %d round %zu/%zu\n",
				        paths[pi].name, qos, r + 1, rounds);
				if (measure(b, &paths[pi], qos, msgs[qos], false, &a[r]) != 0 ||
				    measure(b, &paths[pi], qos, msgs[qos], true, &bb[r]) != 0)
					return -1;
				ratio[r] = bb[r].rate / a[r].rate;
				cpu_ratio[r] = bb[r].broker_us / a[r].broker_us;
				printf(
				    "| %zu | %.0f | %.0f | %.3f | %.2f | %.2f | %.3f | %.0f %% / "
				    "%.0f %% | %.2f / %.2f |\n",
				    r + 1, a[r].rate, bb[r].rate, ratio[r], a[r].broker_us,
				    bb[r].broker_us, cpu_ratio[r], a[r].broker_busy * 100,
				    bb[r].broker_busy * 100, a[r].client_us, bb[r].client_us);
				fflush(stdout);
			}
			s->pa = &paths[pi];
			s->qos = qos;
			s->msgs = msgs[qos];
			s->rounds = rounds;
			s->ratio_min = min_of(ratio, rounds);
			s->ratio_max = max_of(ratio, rounds);
			s->ratio = bench_median(ratio, rounds);
			s->cpu_ratio = bench_median(cpu_ratio, rounds);
			for (size_t r = 0; r < rounds; r++) {
				v1[r] = a[r].rate;
				v2[r] = bb[r].rate;
			}
			s->a_rate = bench_median(v1, rounds);
			s->b_rate = bench_median(v2, rounds);
			for (size_t r = 0; r < rounds; r++) {
				v1[r] = a[r].broker_us;
				v2[r] = bb[r].broker_us;
			}
			s->a_us = bench_median(v1, rounds);
			s->b_us = bench_median(v2, rounds);
			for (size_t r = 0; r < rounds; r++) {
				v1[r] = a[r].broker_busy;
				v2[r] = bb[r].broker_busy;
			}
			s->a_busy = bench_median(v1, rounds);
			s->b_busy = bench_median(v2, rounds);
		}
	}
	printf("\n#### Summary: medians over %zu rounds, %zu topic rules loaded in B\n\n"
	       "| path | QoS | plain (A) msg/s | civicmq (B) msg/s | **ratio B/A** (median of "
	       "paired; min-max) | goal >= 0.95 | broker µs/msg A / B | broker CPU B/A | broker "
	       "core busy A / B |\n"
	       "|---|---:|---:|---:|---:|---|---:|---:|---:|\n",
	       rounds, b->rules);
	for (size_t i = 0; i < n_sums; i++) {
		const struct summary *s = &sums[i];

		printf("| %s | %d | %.0f | %.0f | **%.3f** (%.3f-%.3f) | %s | %.2f / %.2f | %.3f | "
		       "%.0f %% / %.0f %% |\n",
		       s->pa->title, s->qos, s->a_rate, s->b_rate, s->ratio, s->ratio_min,
		       s->ratio_max, s->ratio >= 0.95 ? "met" : "**missed**", s->a_us, s->b_us,
		       s->cpu_ratio, s->a_busy * 100, s->b_busy * 100);
	}
	if (b->n_plugin_load > 0) {
		double lo = min_of(b->plugin_load_ms, b->n_plugin_load);
		double hi = max_of(b->plugin_load_ms, b->n_plugin_load);
		size_t n = b->n_plugin_load;

		printf("\nThe plugin logged loading the %zu-rule policy at broker start in %.0f ms "
		       "(median of %zu starts; %.0f-%.0f ms).\n",
		       b->rules, bench_median(b->plugin_load_ms, n), n, lo, hi);
	}
	return 0;
}

static int run_callgrind(struct bench *b, const bool *use, size_t msgs)
{
	printf("\n#### Broker instructions per message (callgrind, user space, %zu messages "
	       "after both clients connected; %zu topic rules loaded in B)\n\n"
	       "| path | QoS | plain (A) instructions/msg | civicmq (B) instructions/msg | B/A | "
	       "added by civicmq per msg |\n|---|---:|---:|---:|---:|---:|\n",
	       msgs, b->rules);
	fflush(stdout);
	for (size_t pi = 0; pi < N_PATHS; pi++) {
		if (!use[pi])
			continue;
		for (int qos = 0; qos <= 1; qos++) {
			struct result a, bb;
			double ia, ib;

			fprintf(stderr, "throughput: callgrind %s QoS %d\n", paths[pi].name, qos);
			if (measure(b, &paths[pi], qos, msgs, false, &a) != 0 ||
			    measure(b, &paths[pi], qos, msgs, true, &bb) != 0)
				return -1;
			ia = (double)a.instr / (double)a.received;
			ib = (double)bb.instr / (double)bb.received;
			printf("| %s | %d | %.0f | %.0f | %.3f | %.0f |\n", paths[pi].title, qos,
			       ia, ib, ib / ia, ib - ia);
			fflush(stdout);
			fprintf(stderr,
			        "throughput: dumps (kept with CMQ_KEEP_TMP=1; compare with "
			        "bench/cg-diff.sh A B %zu): A %s/callgrind.out.%d.1 B "
			        "%s/callgrind.out.%d.1\n",
			        msgs, b->cg_dir, (int)a.broker, b->cg_dir, (int)bb.broker);
		}
	}
	return 0;
}

/* ---- command line ---- */

static int parse_size(const char *s, size_t min, size_t max, size_t *out)
{
	char *end = NULL;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || errno != 0 || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "throughput: \"%s\" is not a whole number from %zu to %zu\n", s,
		        min, max);
		return -1;
	}
	*out = (size_t)v;
	return 0;
}

static int parse_paths(const char *s, bool *use)
{
	char buf[64], *save = NULL;

	if (strlen(s) >= sizeof(buf))
		return -1;
	memcpy(buf, s, strlen(s) + 1);
	memset(use, 0, N_PATHS * sizeof(*use));
	for (char *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		size_t i;

		for (i = 0; i < N_PATHS && strcmp(paths[i].name, t) != 0; i++)
			;
		if (i == N_PATHS) {
			fprintf(stderr, "throughput: unknown path \"%s\"; valid: tls, tcp\n", t);
			return -1;
		}
		use[i] = true;
	}
	for (size_t i = 0; i < N_PATHS; i++) {
		if (use[i])
			return 0;
	}
	fprintf(stderr, "throughput: no path given; valid: tls, tcp\n");
	return -1;
}

static void usage(void)
{
	fprintf(stderr, "usage: throughput [-N] [-r ROUNDS] [-0 MSGS_QOS0] [-1 MSGS_QOS1] "
	                "[-p tls,tcp] [-n RULES]\n"
	                "       throughput [-N] --callgrind MSGS [-p tls,tcp] [-n RULES]\n");
}

int main(int argc, char **argv)
{
	static struct bench b; /* large; one per process */
	size_t rounds = DEFAULT_ROUNDS, msgs[2] = {DEFAULT_MSGS_QOS0, DEFAULT_MSGS_QOS1};
	size_t cg_msgs = 0;
	bool use[N_PATHS];
	int rc;

	b.rules = DEFAULT_RULES;
	for (size_t i = 0; i < N_PATHS; i++)
		use[i] = true;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "-N") == 0) {
			b.nodelay = true;
			continue;
		}
		if (v == NULL) {
			usage();
			return 2;
		}
		i++;
		if (strcmp(a, "-r") == 0)
			rc = parse_size(v, 1, MAX_ROUNDS, &rounds);
		else if (strcmp(a, "-0") == 0)
			rc = parse_size(v, 100, 10000000, &msgs[0]);
		else if (strcmp(a, "-1") == 0)
			rc = parse_size(v, 100, 10000000, &msgs[1]);
		else if (strcmp(a, "-n") == 0)
			rc = parse_size(v, 7, 2000000, &b.rules);
		else if (strcmp(a, "-p") == 0)
			rc = parse_paths(v, use);
		else if (strcmp(a, "--callgrind") == 0)
			rc = parse_size(v, 100, 1000000, &cg_msgs);
		else
			rc = -1;
		if (rc != 0) {
			usage();
			return 2;
		}
	}
	b.callgrind = cg_msgs > 0;
	if (setup(&b) != 0 || (b.callgrind && setup_callgrind(&b) != 0)) {
		fprintf(stderr, "throughput: setup failed\n");
		cmq_env_stop(&b.env);
		return 1;
	}
	rc = b.callgrind ? run_callgrind(&b, use, cg_msgs) : run_timed(&b, use, rounds, msgs);
	cleanup_callgrind(&b);
	cmq_env_stop(&b.env);
	if (rc != 0)
		fprintf(stderr, "throughput: FAILED\n");
	return rc == 0 ? 0 : 1;
}
