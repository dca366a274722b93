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

#include "bench_callgrind.h"
#include "bench_client.h"

#include "../tests/integration/civicmq_env.h"

#include <mosquitto.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROG              "throughput" /* prefixes its messages */
#define DEFAULT_ROUNDS    5
#define DEFAULT_MSGS_QOS0 50000
#define DEFAULT_MSGS_QOS1 20000
#define DEFAULT_RULES     100000
#define MAX_ROUNDS        51
#define PAYLOAD_LEN       200
#define WINDOW_QOS0       500
#define WINDOW_QOS1       100
#define RUN_TIMEOUT_MS    120000 /* one measurement, however slow */
#define STALL_TIMEOUT_MS  5000   /* no message received for this long: stop waiting */
#define CG_STALL_MS       20000  /* the same under valgrind */
#define CTL_TIMEOUT_MS    30000  /* one callgrind_control call */
#define CG_DUMP_WAIT_MS   10000  /* for the broker to write its dump */

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
#define COMMON_CONF BENCH_CONF_LOG "max_inflight_messages 100\n"

#define LISTENERS(device_extra)                                                                    \
	BENCH_CONF_DEVICE_LISTENER device_extra BENCH_CONF_OPERATOR_LISTENER                       \
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
	"allow_anonymous false\n" COMMON_CONF "%s" BENCH_CONF_PLUGIN LISTENERS("")

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

/* ---- the reader and the publisher (bench_client.h runs the clients) ---- */

/* flow->user: whether the first message carried the plugin's provenance stamp (1, 0; -1
 * before the first message). */
static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
	struct bench_endpoint *e = ud;
	struct bench_flow *f = e->f;
	int *stamped = f->user;
	uint64_t now = bench_now_ns();

	(void)m;
	(void)msg;
	pthread_mutex_lock(&f->mu);
	f->received++;
	f->t_last = now;
	if (*stamped < 0)
		*stamped = bench_has_provenance(props);
	bench_flow_wake(f, false);
	pthread_mutex_unlock(&f->mu);
}

struct publisher {
	struct mosquitto *m;
	const char *topic;
	const unsigned char *payload; /* PAYLOAD_LEN bytes */
	int qos;
};

/* bench_flow_send_windowed's publish: the same payload every time. */
static int publish_one(void *ctx, size_t seq)
{
	const struct publisher *p = ctx;
	int mid = 0;
	int rc = mosquitto_publish_v5(p->m, &mid, p->topic, PAYLOAD_LEN, p->payload, p->qos, false,
	                              NULL);

	(void)seq;
	if (rc != 0) {
		fprintf(stderr, "throughput: publish: %s\n", mosquitto_strerror(rc));
		return -1;
	}
	return 0;
}

/* ---- brokers ---- */

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
	if (bench_broker_start(PROG, plugin ? "broker B" : "broker A", b->pin, br,
	                       plugin ? b->plugin_conf : b->plain_conf) != 0)
		return -1;
	if (plugin && check_plugin_loaded(b, br) != 0) {
		cmq_h_broker_stop(br);
		return -1;
	}
	return 0;
}

/* ---- one measurement ---- */

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
	struct bench_flow f;
	struct bench_endpoint pe, se;
	struct mosquitto *pub = NULL, *sub = NULL;
	struct bench_client_spec ps, ss;
	struct publisher pp;
	char dump[CMQ_H_PATH_MAX + 64];
	long long cpu0, cpu1, self0, self1;
	uint64_t t0, deadline, stall_ns;
	int rc = -1, stamped = -1;

	memset(out, 0, sizeof(*out));
	bench_flow_init(&f, msgs, qos ? WINDOW_QOS1 : WINDOW_QOS0, &stamped);
	pe.f = se.f = &f;
	pe.which = 0;
	se.which = 1;
	if (broker_start(b, &br, plugin) != 0) {
		bench_flow_destroy(&f);
		return -1;
	}
	memset(&ps, 0, sizeof(ps));
	memset(&ss, 0, sizeof(ss));
	ps.id = pa->pub_id;
	ss.id = pa->sub_id;
	ps.nodelay = ss.nodelay = b->nodelay;
	ss.on_message = on_message;
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

	sub = bench_client_start(PROG, &ss, &se);
	if (sub == NULL)
		goto out;
	if (bench_client_subscribe(sub, &f, pa->filter, qos) != 0) {
		fprintf(stderr, "throughput: %s: subscription %s refused (granted %d)\n",
		        pa->sub_id, pa->filter, f.granted);
		goto out;
	}
	pub = bench_client_start(PROG, &ps, &pe);
	if (pub == NULL)
		goto out;
	if (b->callgrind &&
	    bench_callgrind_control(PROG, "--instr=on", br.pid, CTL_TIMEOUT_MS) != 0)
		goto out;

	pp.m = pub;
	pp.topic = pa->topic;
	pp.payload = b->payload;
	pp.qos = qos;
	stall_ns = (uint64_t)(b->callgrind ? CG_STALL_MS : STALL_TIMEOUT_MS) * 1000000u;
	self0 = bench_self_cpu_ns();
	cpu0 = broker_cpu_ns(br.pid);
	t0 = bench_now_ns();
	deadline = t0 + (uint64_t)RUN_TIMEOUT_MS * 1000000u;
	pthread_mutex_lock(&f.mu);
	f.t_last = t0;
	bench_flow_send_windowed(&f, msgs, deadline, stall_ns, publish_one, &pp);
	bench_flow_drain(&f, deadline, stall_ns);
	cpu1 = broker_cpu_ns(br.pid);
	self1 = bench_self_cpu_ns();
	out->received = f.received;
	out->rate = f.t_last > t0 ? (double)f.received / ((double)(f.t_last - t0) / 1e9) : 0;
	out->broker_us = f.received ? (double)(cpu1 - cpu0) / 1e3 / (double)f.received : 0;
	out->broker_busy = f.t_last > t0 ? (double)(cpu1 - cpu0) / (double)(f.t_last - t0) : 0;
	out->client_us = f.received ? (double)(self1 - self0) / 1e3 / (double)f.received : 0;
	pthread_mutex_unlock(&f.mu);

	rc = -1;
	out->broker = br.pid;
	if (b->callgrind) {
		snprintf(dump, sizeof(dump), "%s/callgrind.out.%d.1", b->cg_dir, (int)br.pid);
		if (bench_callgrind_control(PROG, "--dump=measured", br.pid, CTL_TIMEOUT_MS) != 0 ||
		    (out->instr = bench_callgrind_dump_total(PROG, dump, CG_DUMP_WAIT_MS)) < 0)
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
	} else if (stamped != (plugin && pa->stamped)) {
		fprintf(stderr, "throughput: %s %s: messages %s civicmq provenance\n",
		        plugin ? "B" : "A", pa->name, stamped == 1 ? "carry" : "lack");
	} else if (cpu0 < 0 || cpu1 < 0) {
		fprintf(stderr, "throughput: cannot read /proc/%d/schedstat\n", (int)br.pid);
	} else {
		rc = 0;
	}
	if (f.received < msgs && rc == 0)
		fprintf(stderr, "throughput: note: %s %s QoS 0 lost %zu of %zu messages\n",
		        plugin ? "B" : "A", pa->name, msgs - f.received, msgs);
out:
	bench_client_stop(pub);
	bench_client_stop(sub);
	if (cmq_h_broker_stop(&br) != 0) {
		fprintf(stderr, "throughput: broker %s did not exit cleanly\n", plugin ? "B" : "A");
		rc = -1;
	}
	bench_flow_destroy(&f);
	return rc;
}

/* ---- setup ---- */

static int setup(struct bench *b)
{
	struct cmq_env_overrides ov;
	const char *extra;
	char *text = NULL;
	size_t len = 0, n_bench = 0;
	FILE *mem;
	int rc;

	b->pin = sysconf(_SC_NPROCESSORS_ONLN) > BENCH_CLIENT_CPU;
	if (!b->pin)
		fprintf(stderr, "throughput: one CPU only; broker and clients are not pinned\n");
	if (bench_pin_to(PROG, b->pin, BENCH_CLIENT_CPU) != 0)
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
	if (bench_device_files(PROG, b->cert, b->key) != 0)
		return -1;
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
	char script[CMQ_H_PATH_MAX + 32], text[CMQ_H_PATH_MAX * 2];

	if (bench_mkdtemp(PROG, NULL, "cmq-bench-cg", b->cg_dir, sizeof(b->cg_dir)) != 0)
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

/* ---- reports ---- */

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
			s->ratio_min = bench_min(ratio, rounds);
			s->ratio_max = bench_max(ratio, rounds);
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
		double lo = bench_min(b->plugin_load_ms, b->n_plugin_load);
		double hi = bench_max(b->plugin_load_ms, b->n_plugin_load);
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
			rc = bench_parse_size(PROG, v, 1, MAX_ROUNDS, &rounds);
		else if (strcmp(a, "-0") == 0)
			rc = bench_parse_size(PROG, v, 100, 10000000, &msgs[0]);
		else if (strcmp(a, "-1") == 0)
			rc = bench_parse_size(PROG, v, 100, 10000000, &msgs[1]);
		else if (strcmp(a, "-n") == 0)
			rc = bench_parse_size(PROG, v, 7, 2000000, &b.rules);
		else if (strcmp(a, "-p") == 0)
			rc = parse_paths(v, use);
		else if (strcmp(a, "--callgrind") == 0)
			rc = bench_parse_size(PROG, v, 100, 1000000, &cg_msgs);
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
	bench_remove_tree(PROG, b.cg_dir);
	cmq_env_stop(&b.env);
	if (rc != 0)
		fprintf(stderr, "throughput: FAILED\n");
	return rc == 0 ? 0 : 1;
}
