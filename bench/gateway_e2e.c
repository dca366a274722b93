/*
 * gateway_e2e.c - end to end through a real Mosquitto with the civicmq plugin and the real
 * civicmq-gateway process, at QoS 1: how many messages per second reach a dashboard through
 * the gateway (B) against the same broker forwarding the raw topic directly (A), and what
 * latency the gateway adds at a fixed rate.
 *
 *   gateway_e2e [-r ROUNDS] [-n MSGS] [-w WINDOW] [-i INFLIGHT] [-R RATE] [-d SECONDS]
 *               [-L LAT_ROUNDS] [-s STATE_BASE] [-G with-clients|any]
 *               [--only throughput|latency]
 *   gateway_e2e --callgrind MSGS [-w WINDOW] [-i INFLIGHT] [-s STATE_BASE] [--cg-out FILE]
 *
 * A, direct: the device civitas-air-001 (its certificate from the example PKI, mutual TLS
 *    on the device listener) publishes BENCH_AIR_FMT documents at QoS 1 to
 *    raw/north/air/civitas-air-001; a subscriber with the gateway account (password, TLS
 *    operator listener) reads raw/# at QoS 1. One hop through the broker.
 * B, through the gateway: build/civicmq-gateway runs with the example config that
 *    civicmq_env writes (policy, vendors; config/consent.json), a pseudonym key generated
 *    for the run (64 hex digits, mode 0600), its state_dir in a fresh directory under
 *    STATE_BASE (default: this run's temp directory), log_level notice; it consumes
 *    $share/civicmq/raw/# and publishes city/north/air at QoS 1. A dashboard (password,
 *    TLS) subscribes city/north/air at QoS 1; the device publishes the same documents. Each
 *    message crosses the broker twice, so B/A = 0.5 is the ceiling.
 * Both: a fresh broker per measurement (plugin loaded, no persistence, set_tcp_nodelay
 * true, max_inflight_messages INFLIGHT, default 100 as bench/throughput.c, log types error
 * to information), TCP_NODELAY in both clients (the gateway sets it on its own sockets,
 * which Paho 1.3 does not). The broker runs on CPU 0; the clients and this process on CPU 1;
 * the gateway on CPU 1 too (-G with-clients, the default: it competes with the load
 * generator for one CPU, the worst case) or on whichever CPU is free (-G any: as a
 * gateway on its own core or machine would).
 *
 * -i INFLIGHT matters to B beyond the broker: Mosquitto announces max_inflight_messages as
 * its Receive Maximum, Paho 1.3 lowers the gateway's in-flight publishes to it, and Paho
 * 1.3.12's send thread is not woken by a PUBACK, only by the next command or a 1 s timer
 * (eclipse-paho/paho.mqtt.c pull request 1457). Once more scrubbed messages wait than the
 * broker lets be in flight, B stalls: -i 20 (Mosquitto's default; config/mosquitto.conf
 * raises it to 1000 for this reason) with the default window shows it.
 *
 * Throughput (-r ROUNDS, default 5; -n MSGS, default 20,000; -w WINDOW, default 100):
 * rounds alternate A B; the publisher keeps at most WINDOW messages published but not yet
 * received by the reader, refilled from half (as bench/throughput.c). rate = MSGS / (first
 * publish to last receipt). Reported per round and as medians, with the median of the
 * paired ratios B/A (goal >= 0.4), the broker's CPU per message (/proc/<pid>/schedstat),
 * the gateway's CPU per message (all its threads' schedstat; user and system shares from
 * /proc/<pid>/stat) and the gateway's own processing-time quantiles (its metrics).
 *
 * Latency (-R RATE msg/s, default 1,000, for -d SECONDS, default 10; -L LAT_ROUNDS, default
 * 1, alternating A B): every document carries its sequence number in airQualityIndex and
 * its send time (CLOCK_MONOTONIC ns since the run began) in temperature, two fields the
 * air-quality profile keeps as they are; the reader takes receive time minus send time.
 * Reported: p50, p99 and max for A and B (all rounds pooled) and what B adds at p50 and
 * p99 (goals: <= 1 ms and <= 5 ms).
 *
 * Checked, or the run fails (exit 1): every QoS 1 message received exactly once on the
 * expected topic (sequence numbers), none refused, no connection lost; A's messages carry
 * the plugin's provenance stamp; B's carry civicmq-profile air-quality, are scrubbed (no
 * device id, coarsened time, no coordinates); the gateway's counters at SIGTERM (the
 * "metrics:" line it logs when stopping) show every raw message received and forwarded,
 * none dropped; the gateway and every broker exit cleanly when told to, stopped by PID.
 * Every wait is bounded.
 *
 * --callgrind MSGS: one B measurement of MSGS messages with the gateway started as
 * `valgrind --tool=callgrind --instr-atstart=no --trace-children=no`; instrumentation goes
 * on (callgrind_control) once the gateway has subscribed and the clients are connected,
 * and the dump is taken after the last message arrived. Prints the gateway's user-space
 * instructions per message (all threads) and the dump's path; --cg-out FILE copies the
 * dump there (bench/run.sh tabulates where the instructions go).
 *
 * Environment: CMQ_SRC, CMQ_BUILD, CMQ_PKI_DIR as for the integration tests (harness.h);
 * CMQ_KEEP_TMP=1 keeps the temp directories (gateway logs, configs).
 */
#define _GNU_SOURCE
#include "bench_common.h"

#include "bench_callgrind.h"
#include "bench_client.h"

#include "../tests/integration/civicmq_env.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROG               "gateway_e2e" /* prefixes its messages */
#define DEFAULT_ROUNDS     5
#define DEFAULT_MSGS       20000
#define DEFAULT_WINDOW     100
#define DEFAULT_RATE       1000
#define DEFAULT_SECONDS    10
#define DEFAULT_LAT_ROUNDS 1
#define DEFAULT_INFLIGHT   100 /* the broker's max_inflight_messages, as bench/throughput.c */
#define MAX_ROUNDS         51
#define MAX_MSGS           10000000u
#define PAYLOAD_MAX        512
#define RUN_TIMEOUT_MS     300000 /* one measurement, however slow */
#define STALL_TIMEOUT_MS   10000  /* nothing received for this long: give up */
#define CG_STALL_MS        60000  /* the same with the gateway under valgrind */
#define GW_START_MS        15000  /* the gateway connected and subscribed */
#define GW_START_CG_MS     120000 /* the same under valgrind */
#define GW_STOP_MS         15000  /* SIGTERM to exit */
#define GW_STOP_CG_MS      120000
#define CTL_TIMEOUT_MS     60000 /* one callgrind_control call */
#define CG_DUMP_WAIT_MS    30000 /* for the gateway to write its dump */
#define GOAL_RATIO         0.4
#define GOAL_ADDED_P50_MS  1.0
#define GOAL_ADDED_P99_MS  5.0
#define SHARE_GROUP        "civicmq"

/* %zu = max_inflight_messages, then policy, vendors, operators (civicmq_env's files). */
#define BROKER_CONF_FMT                                                                            \
	"per_listener_settings false\n"                                                            \
	"allow_anonymous false\n" BENCH_CONF_LOG "max_inflight_messages %zu\n"                     \
	"set_tcp_nodelay true\n" BENCH_CONF_PLUGIN BENCH_CONF_DEVICE_LISTENER                      \
	    BENCH_CONF_OPERATOR_LISTENER

struct bench {
	struct cmq_env env; /* policy, vendors, operators; the client cafile */
	char conf[4096];    /* broker template */
	char tmp[CMQ_H_PATH_MAX];
	char state_base[CMQ_H_PATH_MAX];
	char gateway[CMQ_H_PATH_MAX];
	char consent[CMQ_H_PATH_MAX + 32];
	char keyfile[CMQ_H_PATH_MAX + 32];
	char pwfile[CMQ_H_PATH_MAX + 32];
	char cert[CMQ_H_PATH_MAX], key[CMQ_H_PATH_MAX];
	bool pin;
	int gw_cpu; /* GW_WITH_CLIENTS (default), GW_ANY (not pinned) */
	bool callgrind;
	size_t window;
	size_t inflight;     /* the broker's max_inflight_messages (-i) */
	unsigned n_gateways; /* started so far (names their directories) */
	uint64_t base;       /* ns: send times are relative to this */
};

/* ---- the reader's side of one measurement (bench_client.h runs the clients) ---- */

/* What the reader checks and records, behind bench_flow.user, under the flow's mutex. */
struct reader {
	size_t dups;       /* sequence numbers received again */
	const char *topic; /* expected topic */
	bool through_gateway;
	uint8_t *seen;    /* per sequence number */
	uint64_t *lat_ns; /* per sequence number: receive - send */
	uint64_t base;
	int first; /* first message checked: 1 good, 0 bad, -1 not yet */
	char first_why[PAYLOAD_MAX + 256];
};

/* For target messages; 0, or -1 (out of memory) with nothing to free. */
static int reader_init(struct reader *rd, size_t target, uint64_t base, bool through_gateway)
{
	memset(rd, 0, sizeof(*rd));
	rd->seen = calloc(target, 1);
	rd->lat_ns = calloc(target, sizeof(*rd->lat_ns));
	if (rd->seen == NULL || rd->lat_ns == NULL) {
		free(rd->seen);
		free(rd->lat_ns);
		return -1;
	}
	rd->topic = through_gateway ? BENCH_CITY_TOPIC : BENCH_DEVICE_TOPIC;
	rd->through_gateway = through_gateway;
	rd->base = base;
	rd->first = -1;
	return 0;
}

static void reader_cleanup(struct reader *rd)
{
	free(rd->seen);
	free(rd->lat_ns);
}

/* Why the first message is not what A or B must deliver, or NULL if it is. */
static const char *first_message_problem(const struct reader *rd, const char *payload,
                                         const mosquitto_property *props)
{
	const char *why = NULL;
	char *v;

	if (!rd->through_gateway) {
		if (!bench_has_provenance(props))
			why = "the raw message lacks the plugin's provenance stamp";
		return why;
	}
	v = bench_user_prop(props, "civicmq-profile");
	if (v == NULL || strcmp(v, BENCH_EXAMPLE_RULE) != 0)
		why = "the scrubbed message does not name profile air-quality (civicmq-profile)";
	free(v);
	if (why == NULL && strstr(payload, BENCH_DEVICE) != NULL)
		why = "the scrubbed message still names the device";
	if (why == NULL && strstr(payload, "4.402771") != NULL)
		why = "the scrubbed message still holds the coordinates";
	if (why == NULL && strstr(payload, "\"2026-11-28T10:05:00Z\"") == NULL)
		why = "the scrubbed message's dateObserved is not coarsened to 10:05:00";
	return why;
}

/* The unsigned integer after "key": in s, or false. */
static bool field_u64(const char *s, const char *key, unsigned long long *out)
{
	const char *at = strstr(s, key);
	char *end = NULL;

	if (at == NULL)
		return false;
	at += strlen(key);
	if (*at < '0' || *at > '9')
		return false;
	errno = 0;
	*out = strtoull(at, &end, 10);
	return errno == 0 && end != at;
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
	struct bench_endpoint *e = ud;
	struct bench_flow *f = e->f;
	struct reader *rd = f->user;
	uint64_t now = bench_now_ns();
	char buf[PAYLOAD_MAX + 1];
	unsigned long long seq = 0, sent = 0;
	const char *problem = NULL;
	bool ok;

	(void)m;
	ok = msg->payloadlen > 0 && msg->payloadlen <= PAYLOAD_MAX && msg->topic != NULL &&
	     strcmp(msg->topic, rd->topic) == 0;
	if (ok) {
		memcpy(buf, msg->payload, (size_t)msg->payloadlen);
		buf[msg->payloadlen] = '\0';
		ok = field_u64(buf, "\"airQualityIndex\":", &seq) &&
		     field_u64(buf, "\"temperature\":", &sent) && seq < f->target;
	}
	pthread_mutex_lock(&f->mu);
	if (ok && rd->first < 0) {
		pthread_mutex_unlock(&f->mu);
		problem = first_message_problem(rd, buf, props);
		pthread_mutex_lock(&f->mu);
		rd->first = problem == NULL;
		if (problem != NULL)
			snprintf(rd->first_why, sizeof(rd->first_why), "%s: %s", problem, buf);
	}
	if (!ok) {
		f->bad++;
	} else if (rd->seen[seq]) {
		rd->dups++;
	} else {
		rd->seen[seq] = 1;
		rd->lat_ns[seq] = now - rd->base - sent;
		f->received++;
		f->t_last = now;
	}
	bench_flow_wake(f, !ok);
	pthread_mutex_unlock(&f->mu);
}

/* ---- processes: CPU time ---- */

/* CPU time (ns) all threads of pid have used: the sum of /proc/<pid>/task/<tid>/schedstat. */
static long long proc_cpu_ns(pid_t pid)
{
	char path[64];
	struct dirent *d;
	long long total = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	if (dir == NULL)
		return -1;
	while ((d = readdir(dir)) != NULL) {
		char p[320];
		long long ns;
		FILE *f;

		if (d->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "/proc/%d/task/%s/schedstat", (int)pid, d->d_name);
		f = fopen(p, "r");
		if (f == NULL)
			continue; /* the thread just ended */
		if (fscanf(f, "%lld", &ns) == 1)
			total += ns;
		fclose(f);
	}
	closedir(dir);
	return total;
}

/* utime and stime of the whole process (clock ticks), from /proc/<pid>/stat. 0 or -1. */
static int proc_ticks(pid_t pid, long long *ut, long long *st)
{
	char path[64], buf[2048];
	const char *p;
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* comm may hold spaces */
	if (p == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", ut, st) != 2)
		return -1;
	return 0;
}

/* Busy and total jiffies of one CPU from /proc/stat (all processes). 0 or -1. */
static int cpu_ticks(int cpu, long long *busy, long long *total)
{
	char want[16], line[512];
	int n = snprintf(want, sizeof(want), "cpu%d ", cpu);
	int rc = -1;
	FILE *f = fopen("/proc/stat", "r");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		long long v[8] = {0};

		if (strncmp(line, want, (size_t)n) != 0)
			continue;
		if (sscanf(line + n, "%lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2],
		           &v[3], &v[4], &v[5], &v[6], &v[7]) >= 4) {
			*total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
			*busy = *total - v[3] - v[4]; /* minus idle and iowait */
			rc = 0;
		}
		break;
	}
	fclose(f);
	return rc;
}

/* Snapshot of what a measurement reads before and after. */
struct cpu_snap {
	long long broker, gateway, self; /* ns */
	long long gw_ut, gw_st;          /* ticks */
	long long busy[2], total[2];     /* jiffies of CPU 0 and 1 */
};

static void snap_take(struct cpu_snap *s, pid_t broker, pid_t gateway)
{
	memset(s, 0, sizeof(*s));
	s->broker = proc_cpu_ns(broker);
	s->gateway = gateway > 0 ? proc_cpu_ns(gateway) : 0;
	if (gateway > 0)
		proc_ticks(gateway, &s->gw_ut, &s->gw_st);
	s->self = bench_self_cpu_ns();
	for (int c = 0; c < 2; c++) {
		if (cpu_ticks(c, &s->busy[c], &s->total[c]) != 0)
			s->busy[c] = s->total[c] = 0;
	}
}

/* ---- the gateway process ---- */

struct gw_metrics {
	long long received, forwarded, dropped, retried;
	long long p50_us, p99_us, max_us;
};

struct gwproc {
	pid_t pid;
	char dir[CMQ_H_PATH_MAX + 32];
	char conf[CMQ_H_PATH_MAX + 64];
	char log[CMQ_H_PATH_MAX + 64];
	char cg_out[CMQ_H_PATH_MAX + 64];
};

static pid_t live_gateway; /* for the exit handler */

static void kill_live_gateway(void)
{
	if (live_gateway > 0) {
		kill(live_gateway, SIGKILL);
		waitpid(live_gateway, NULL, 0);
		live_gateway = 0;
	}
}

static void print_tail(const char *path, const char *what)
{
	char buf[8192];
	size_t n;
	long size;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0, SEEK_SET);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	fprintf(stderr, "---- %s (%s), last %zu bytes ----\n%s---- end ----\n", what, path, n, buf);
}

static bool file_contains(const char *path, const char *needle)
{
	char line[4096];
	bool found = false;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return false;
	while (!found && fgets(line, sizeof(line), f) != NULL)
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

static int write_gateway_conf(const struct bench *b, const struct cmq_h_broker *br,
                              struct gwproc *g)
{
	FILE *f = fopen(g->conf, "w");
	int bad;

	if (f == NULL) {
		fprintf(stderr, "gateway_e2e: cannot write %s: %s\n", g->conf, strerror(errno));
		return -1;
	}
	fprintf(f,
	        "# written by bench/gateway_e2e\n"
	        "broker ssl://localhost:%d\n"
	        "client_id gateway\n"
	        "username gateway\n"
	        "password_file %s\n"
	        "cafile %s\n"
	        "share_group " SHARE_GROUP "\n"
	        "policy %s\n"
	        "vendors %s\n"
	        "consent %s\n"
	        "pseudonym_key %s\n"
	        "state_dir %s/state\n"
	        "log_level notice\n",
	        br->port[1], b->pwfile, b->env.cafile, b->env.policy, b->env.vendors, b->consent,
	        b->keyfile, g->dir);
	/* Extra gateway options for experiments, e.g. CMQ_BENCH_GW_CONF='max_inflight 100'. */
	if (getenv("CMQ_BENCH_GW_CONF") != NULL)
		fprintf(f, "%s\n", getenv("CMQ_BENCH_GW_CONF"));
	bad = ferror(f);
	if (fclose(f) != 0 || bad) {
		fprintf(stderr, "gateway_e2e: cannot write %s\n", g->conf);
		return -1;
	}
	return 0;
}

#define GW_WITH_CLIENTS 0
#define GW_ANY          1

/* Start the gateway (on the CPU this thread is pinned to, or on any with -G any) and wait
 * until it has subscribed. 0, or -1 with nothing left running. */
static int gateway_start(struct bench *b, const struct cmq_h_broker *br, struct gwproc *g)
{
	uint64_t deadline;
	char cg_arg[CMQ_H_PATH_MAX + 128];
	int status;

	memset(g, 0, sizeof(*g));
	snprintf(g->dir, sizeof(g->dir), "%s/gw-%u", b->state_base, ++b->n_gateways);
	if (mkdir(g->dir, 0700) != 0) {
		fprintf(stderr, "gateway_e2e: mkdir %s: %s\n", g->dir, strerror(errno));
		return -1;
	}
	snprintf(g->conf, sizeof(g->conf), "%s/gateway.conf", g->dir);
	snprintf(g->log, sizeof(g->log), "%s/gateway.log", g->dir);
	snprintf(g->cg_out, sizeof(g->cg_out), "%s/callgrind.out", g->dir);
	snprintf(cg_arg, sizeof(cg_arg), "--callgrind-out-file=%s", g->cg_out);
	if (write_gateway_conf(b, br, g) != 0)
		return -1;
	fflush(NULL);
	g->pid = fork();
	if (g->pid < 0) {
		fprintf(stderr, "gateway_e2e: fork: %s\n", strerror(errno));
		return -1;
	}
	if (g->pid == 0) {
		int fd = open(g->log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (b->gw_cpu == GW_ANY) {
			cpu_set_t all;

			CPU_ZERO(&all);
			for (int c = 0; c < CPU_SETSIZE && c < sysconf(_SC_NPROCESSORS_ONLN); c++)
				CPU_SET(c, &all);
			(void)sched_setaffinity(0, sizeof(all), &all);
		}
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		if (b->callgrind)
			execlp("valgrind", "valgrind", "--tool=callgrind", "--instr-atstart=no",
			       "--trace-children=no", cg_arg, b->gateway, "-c", g->conf,
			       (char *)NULL);
		else
			execl(b->gateway, b->gateway, "-c", g->conf, (char *)NULL);
		fprintf(stderr, "gateway_e2e: exec %s: %s\n",
		        b->callgrind ? "valgrind" : b->gateway, strerror(errno));
		_exit(127);
	}
	live_gateway = g->pid;
	deadline =
	    bench_now_ns() + (uint64_t)(b->callgrind ? GW_START_CG_MS : GW_START_MS) * 1000000u;
	while (!file_contains(g->log, "subscribed $share/" SHARE_GROUP "/raw/#")) {
		if (waitpid(g->pid, &status, WNOHANG) == g->pid) {
			fprintf(stderr, "gateway_e2e: the gateway exited at start (status %d)\n",
			        WIFEXITED(status) ? WEXITSTATUS(status) : -1);
			print_tail(g->log, "gateway log");
			g->pid = live_gateway = 0;
			return -1;
		}
		if (bench_now_ns() > deadline) {
			fprintf(stderr, "gateway_e2e: the gateway did not subscribe within %d ms\n",
			        b->callgrind ? GW_START_CG_MS : GW_START_MS);
			print_tail(g->log, "gateway log");
			kill_live_gateway();
			g->pid = 0;
			return -1;
		}
		usleep(10000);
	}
	if (b->pin && b->gw_cpu == GW_WITH_CLIENTS &&
	    bench_check_pinned(PROG, g->pid, BENCH_CLIENT_CPU, "gateway") != 0) {
		kill_live_gateway();
		g->pid = 0;
		return -1;
	}
	return 0;
}

/* SIGTERM and wait (bounded) for a clean exit; then SIGKILL. 0 if it exited with 0. */
static int gateway_stop(const struct bench *b, struct gwproc *g)
{
	int ms = b->callgrind ? GW_STOP_CG_MS : GW_STOP_MS;
	uint64_t deadline = bench_now_ns() + (uint64_t)ms * 1000000u;
	int status = 0;

	if (g->pid <= 0)
		return -1;
	kill(g->pid, SIGTERM);
	for (;;) {
		pid_t w = waitpid(g->pid, &status, WNOHANG);

		if (w == g->pid)
			break;
		if (bench_now_ns() > deadline) {
			fprintf(stderr,
			        "gateway_e2e: the gateway did not stop within %d ms; killed\n", ms);
			kill_live_gateway();
			g->pid = 0;
			return -1;
		}
		usleep(10000);
	}
	g->pid = live_gateway = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "gateway_e2e: the gateway exited with status %d%s\n",
		        WIFEXITED(status) ? WEXITSTATUS(status) : -1,
		        WIFSIGNALED(status) ? " (signal)" : "");
		print_tail(g->log, "gateway log");
		return -1;
	}
	return 0;
}

static long long json_ll(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? (long long)json_object_get_int64(v) : -1;
}

/* The counters of the last "metrics: {...}" line the gateway logged. 0 or -1. */
static int gateway_metrics(const struct gwproc *g, struct gw_metrics *out)
{
	char line[8192], last[8192] = "";
	struct json_object *o, *lat;
	FILE *f = fopen(g->log, "r");

	memset(out, 0, sizeof(*out));
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		const char *at = strstr(line, "metrics: {");

		if (at != NULL)
			snprintf(last, sizeof(last), "%s", at + strlen("metrics: "));
	}
	fclose(f);
	o = last[0] ? json_tokener_parse(last) : NULL;
	if (o == NULL) {
		fprintf(stderr, "gateway_e2e: no \"metrics: {...}\" line in the gateway's log\n");
		print_tail(g->log, "gateway log");
		return -1;
	}
	out->received = json_ll(o, "received");
	out->forwarded = json_ll(o, "forwarded");
	out->dropped = json_ll(o, "dropped");
	out->retried = json_ll(o, "retried");
	if (json_object_object_get_ex(o, "latency_us", &lat)) {
		out->p50_us = json_ll(lat, "p50");
		out->p99_us = json_ll(lat, "p99");
		out->max_us = json_ll(lat, "max");
	}
	json_object_put(o);
	return 0;
}

/* ---- one measurement ---- */

enum mode { MODE_WINDOW, MODE_PACED };

struct result {
	double rate;        /* messages received per second */
	double broker_us;   /* broker CPU per message */
	double broker_busy; /* broker CPU / wall time */
	double gw_us;       /* gateway CPU per message (B) */
	double gw_sys;      /* its system share, 0..1 */
	double gw_busy;     /* gateway CPU / wall time */
	double client_us;   /* this process's CPU per message (publisher and reader) */
	double cpu_busy[2]; /* CPU 0 and 1 busy (all processes on the machine), 0..1 */
	double late_ms;     /* paced: how late the publisher fell behind its schedule at most */
	struct gw_metrics m;
	size_t received;
	uint64_t *lat_ns; /* paced: per message (owned; free) */
	long long instr;  /* --callgrind: gateway instructions */
	char dump[CMQ_H_PATH_MAX + 80];
};

struct publisher {
	struct mosquitto *m;
	uint64_t base; /* send times are relative to this */
};

/* Publish document seq at QoS 1 with its send time. Called without the flow's mutex held
 * (also as bench_flow_send_windowed's publish). 0, or -1 after saying why. */
static int publish_one(void *ctx, size_t seq)
{
	const struct publisher *p = ctx;
	char buf[PAYLOAD_MAX];
	int n = snprintf(buf, sizeof(buf), BENCH_AIR_FMT, (unsigned long long)seq,
	                 (unsigned long long)(bench_now_ns() - p->base));
	int rc;

	if (n < 0 || n >= (int)sizeof(buf))
		return -1;
	rc = mosquitto_publish_v5(p->m, NULL, BENCH_DEVICE_TOPIC, n, buf, 1, false, NULL);
	if (rc != 0) {
		fprintf(stderr, "gateway_e2e: publish: %s\n", mosquitto_strerror(rc));
		return -1;
	}
	return 0;
}

/* Send msgs at rate per second on schedule (absolute times). Returns how late the
 * publisher ran at most, ns. f->mu not held. */
static uint64_t send_paced(struct publisher *pub, struct bench_flow *f, size_t msgs, unsigned rate)
{
	uint64_t period = 1000000000u / rate, t0 = bench_now_ns(), late = 0;

	for (size_t i = 0; i < msgs; i++) {
		uint64_t at = t0 + (uint64_t)i * period, now;
		struct timespec ts = {(time_t)(at / 1000000000u), (long)(at % 1000000000u)};
		bool stop;

		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
		now = bench_now_ns();
		if (now > at && now - at > late)
			late = now - at;
		pthread_mutex_lock(&f->mu);
		stop = f->lost || f->refused > 0 || f->bad > 0;
		if (!stop)
			f->sent++;
		pthread_mutex_unlock(&f->mu);
		if (stop || publish_one(pub, i) != 0) {
			if (!stop) {
				pthread_mutex_lock(&f->mu);
				f->sent--;
				pthread_mutex_unlock(&f->mu);
			}
			break;
		}
	}
	return late;
}

static int measure(struct bench *b, bool gateway, enum mode mode, size_t msgs, unsigned rate,
                   struct result *out)
{
	struct cmq_h_broker br;
	struct gwproc g;
	struct bench_flow f;
	struct reader rd;
	struct bench_endpoint pe, se;
	struct mosquitto *pub = NULL, *sub = NULL;
	struct bench_client_spec ps, ss;
	struct publisher pp;
	struct cpu_snap c0, c1;
	uint64_t t0 = 0, deadline, stall_ns;
	bool gw_ok = true;
	int rc = -1;
	const char *who = gateway ? "B (through the gateway)" : "A (direct)";

	memset(out, 0, sizeof(*out));
	memset(&g, 0, sizeof(g));
	if (reader_init(&rd, msgs, b->base, gateway) != 0)
		return -1;
	bench_flow_init(&f, msgs, b->window, &rd);
	pe.f = se.f = &f;
	pe.which = 0;
	se.which = 1;
	if (bench_broker_start(PROG, "the broker", b->pin, &br, b->conf) != 0) {
		bench_flow_destroy(&f);
		reader_cleanup(&rd);
		return -1;
	}
	if (gateway && gateway_start(b, &br, &g) != 0)
		goto out;

	memset(&ps, 0, sizeof(ps));
	memset(&ss, 0, sizeof(ss));
	ps.id = BENCH_DEVICE;
	ps.cafile = ss.cafile = b->env.cafile;
	ps.cert = b->cert;
	ps.key = b->key;
	ps.port = br.port[0];
	ps.nodelay = ss.nodelay = true;
	ss.on_message = on_message;
	ss.port = br.port[1];
	if (gateway) {
		ss.id = ss.user = "dashboard";
		ss.password = "dashboard-secret";
	} else {
		ss.id = ss.user = "gateway";
		ss.password = "gateway-secret";
	}
	sub = bench_client_start(PROG, &ss, &se);
	if (sub == NULL)
		goto out;
	if (bench_client_subscribe(sub, &f, gateway ? BENCH_CITY_TOPIC : "raw/#", 1) != 0) {
		fprintf(stderr, "gateway_e2e: %s: subscription refused (granted %d)\n", who,
		        f.granted);
		goto out;
	}
	pub = bench_client_start(PROG, &ps, &pe);
	if (pub == NULL)
		goto out;
	if (gateway && b->callgrind &&
	    bench_callgrind_control(PROG, "--instr=on", g.pid, CTL_TIMEOUT_MS) != 0)
		goto out;

	pp.m = pub;
	pp.base = b->base;
	stall_ns = (uint64_t)(b->callgrind ? CG_STALL_MS : STALL_TIMEOUT_MS) * 1000000u;
	snap_take(&c0, br.pid, gateway ? g.pid : 0);
	t0 = bench_now_ns();
	deadline = t0 + (uint64_t)RUN_TIMEOUT_MS * 1000000u;
	pthread_mutex_lock(&f.mu);
	f.t_last = t0;
	if (mode == MODE_WINDOW) {
		bench_flow_send_windowed(&f, msgs, deadline, stall_ns, publish_one, &pp);
	} else {
		pthread_mutex_unlock(&f.mu);
		out->late_ms = (double)send_paced(&pp, &f, msgs, rate) / 1e6;
		pthread_mutex_lock(&f.mu);
		f.t_last = bench_now_ns(); /* paced: the stall clock starts after the last send */
	}
	bench_flow_drain(&f, deadline, stall_ns);
	snap_take(&c1, br.pid, gateway ? g.pid : 0);
	out->received = f.received;
	if (f.t_last > t0) {
		double secs = (double)(f.t_last - t0) / 1e9;

		out->rate = (double)f.received / secs;
		out->broker_busy = (double)(c1.broker - c0.broker) / 1e9 / secs;
		out->gw_busy = (double)(c1.gateway - c0.gateway) / 1e9 / secs;
	}
	if (f.received > 0) {
		out->broker_us = (double)(c1.broker - c0.broker) / 1e3 / (double)f.received;
		out->gw_us = (double)(c1.gateway - c0.gateway) / 1e3 / (double)f.received;
		out->client_us = (double)(c1.self - c0.self) / 1e3 / (double)f.received;
	}
	if (c1.gw_ut + c1.gw_st - c0.gw_ut - c0.gw_st > 0)
		out->gw_sys = (double)(c1.gw_st - c0.gw_st) /
		              (double)(c1.gw_ut + c1.gw_st - c0.gw_ut - c0.gw_st);
	for (int c = 0; c < 2; c++) {
		if (c1.total[c] > c0.total[c])
			out->cpu_busy[c] =
			    (double)(c1.busy[c] - c0.busy[c]) / (double)(c1.total[c] - c0.total[c]);
	}
	pthread_mutex_unlock(&f.mu);

	if (gateway && b->callgrind) {
		snprintf(out->dump, sizeof(out->dump), "%s.1", g.cg_out);
		if (bench_callgrind_control(PROG, "--dump=measured", g.pid, CTL_TIMEOUT_MS) != 0 ||
		    (out->instr = bench_callgrind_dump_total(PROG, out->dump, CG_DUMP_WAIT_MS)) < 0)
			goto out;
	}

	/* Stop the gateway first: it logs its counters on the way out. */
	if (gateway) {
		gw_ok = gateway_stop(b, &g) == 0 && gateway_metrics(&g, &out->m) == 0;
		if (gw_ok && (out->m.received != (long long)msgs ||
		              out->m.forwarded != (long long)msgs || out->m.dropped != 0)) {
			fprintf(
			    stderr,
			    "gateway_e2e: the gateway counted %lld received, %lld forwarded, %lld "
			    "dropped (%lld retried); expected %zu, %zu, 0\n",
			    out->m.received, out->m.forwarded, out->m.dropped, out->m.retried, msgs,
			    msgs);
			print_tail(g.log, "gateway log");
			gw_ok = false;
		}
	}

	if (f.refused > 0)
		fprintf(stderr, "gateway_e2e: %s: %zu publishes refused by the broker\n", who,
		        f.refused);
	else if (f.lost)
		fprintf(stderr, "gateway_e2e: %s: a client lost its connection\n", who);
	else if (f.bad > 0)
		fprintf(stderr, "gateway_e2e: %s: %zu messages on a wrong topic or unreadable\n",
		        who, f.bad);
	else if (f.sent < msgs)
		fprintf(stderr, "gateway_e2e: %s: stalled after %zu of %zu published\n", who,
		        f.sent, msgs);
	else if (f.received < msgs)
		fprintf(stderr, "gateway_e2e: %s: %zu of %zu QoS 1 messages received (lost %zu)\n",
		        who, f.received, msgs, msgs - f.received);
	else if (rd.dups > 0)
		fprintf(stderr, "gateway_e2e: %s: %zu messages received twice\n", who, rd.dups);
	else if (rd.first != 1)
		fprintf(stderr, "gateway_e2e: %s: %s\n", who,
		        rd.first_why[0] ? rd.first_why : "the first message was not checked");
	else if (c0.broker < 0 || c1.broker < 0 || c0.gateway < 0 || c1.gateway < 0)
		fprintf(stderr, "gateway_e2e: cannot read the CPU time of the broker or gateway\n");
	else if (gw_ok)
		rc = 0;
	if (rc == 0 && mode == MODE_PACED) {
		out->lat_ns = rd.lat_ns;
		rd.lat_ns = NULL;
	}
out:
	bench_client_stop(pub);
	bench_client_stop(sub);
	if (g.pid > 0 && gateway_stop(b, &g) != 0)
		rc = -1;
	if (cmq_h_broker_stop(&br) != 0) {
		fprintf(stderr, "gateway_e2e: the broker did not exit cleanly\n");
		rc = -1;
	}
	bench_flow_destroy(&f);
	reader_cleanup(&rd);
	if (rc != 0) {
		free(out->lat_ns);
		out->lat_ns = NULL;
	}
	return rc;
}

/* ---- setup ---- */

static int write_secret_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	size_t len = strlen(text);
	bool ok;

	if (fd < 0) {
		fprintf(stderr, "gateway_e2e: cannot create %s: %s\n", path, strerror(errno));
		return -1;
	}
	ok = fchmod(fd, 0600) == 0 && write(fd, text, len) == (ssize_t)len;
	ok &= close(fd) == 0;
	if (!ok)
		fprintf(stderr, "gateway_e2e: cannot write %s\n", path);
	return ok ? 0 : -1;
}

/* A fresh 256-bit pseudonym key as 64 hex digits (mode 0600). */
static int write_key(const char *path)
{
	unsigned char raw[32];
	char hex[66];
	FILE *r = fopen("/dev/urandom", "r");
	size_t n = r ? fread(raw, 1, sizeof(raw), r) : 0;

	if (r != NULL)
		fclose(r);
	if (n != sizeof(raw)) {
		fprintf(stderr, "gateway_e2e: cannot read /dev/urandom\n");
		return -1;
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(hex + 2 * i, 3, "%02x", raw[i]);
	hex[64] = '\n';
	hex[65] = '\0';
	return write_secret_file(path, hex);
}

static int setup(struct bench *b, const char *state_base)
{
	const char *build = getenv("CMQ_BUILD"), *src = getenv("CMQ_SRC");

	b->pin = sysconf(_SC_NPROCESSORS_ONLN) > BENCH_CLIENT_CPU;
	if (!b->pin)
		fprintf(stderr, "gateway_e2e: one CPU only; nothing is pinned\n");
	if (bench_pin_to(PROG, b->pin, BENCH_CLIENT_CPU) != 0)
		return -1;
	cmq_h_init();
	atexit(kill_live_gateway);
	if (cmq_h_pki_dir() == NULL)
		return -1;
	if (cmq_env_init(&b->env, NULL) != 0) {
		fprintf(stderr, "gateway_e2e: cannot write the civicmq config\n");
		return -1;
	}
	if (bench_mkdtemp(PROG, NULL, "cmq-gw-e2e", b->tmp, sizeof(b->tmp)) != 0)
		return -1;
	if (state_base == NULL)
		snprintf(b->state_base, sizeof(b->state_base), "%s", b->tmp);
	else if (bench_mkdtemp(PROG, state_base, "cmq-gw-e2e-state", b->state_base,
	                       sizeof(b->state_base)) != 0)
		return -1;
	snprintf(b->gateway, sizeof(b->gateway), "%s/civicmq-gateway", build ? build : "build");
	if (access(b->gateway, X_OK) != 0) {
		fprintf(stderr, "gateway_e2e: %s is missing (make)\n", b->gateway);
		return -1;
	}
	snprintf(b->consent, sizeof(b->consent), "%s/config/consent.json", src ? src : ".");
	snprintf(b->keyfile, sizeof(b->keyfile), "%s/pseudonym.key", b->tmp);
	snprintf(b->pwfile, sizeof(b->pwfile), "%s/gateway.password", b->tmp);
	if (write_key(b->keyfile) != 0 || write_secret_file(b->pwfile, "gateway-secret\n") != 0)
		return -1;
	if (bench_device_files(PROG, b->cert, b->key) != 0)
		return -1;
	if (snprintf(b->conf, sizeof(b->conf), BROKER_CONF_FMT, b->inflight, b->env.policy,
	             b->env.vendors, b->env.operators) >= (int)sizeof(b->conf))
		return -1;
	b->base = bench_now_ns();
	return 0;
}

static void cleanup(struct bench *b)
{
	kill_live_gateway();
	if (strcmp(b->state_base, b->tmp) != 0)
		bench_remove_tree(PROG, b->state_base);
	bench_remove_tree(PROG, b->tmp);
	cmq_env_stop(&b->env);
}

/* ---- reports ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Quantile q of sorted v[0..n) (nearest rank). */
static double quantile_ms(const uint64_t *v, size_t n, double q)
{
	size_t i = (size_t)(q * (double)n + 0.5);

	if (i == 0)
		i = 1;
	if (i > n)
		i = n;
	return (double)v[i - 1] / 1e6;
}

static int run_throughput(struct bench *b, size_t rounds, size_t msgs)
{
	struct result a[MAX_ROUNDS], bb[MAX_ROUNDS];
	double ratio[MAX_ROUNDS] = {0}, v1[MAX_ROUNDS], v2[MAX_ROUNDS], v3[MAX_ROUNDS],
	       v4[MAX_ROUNDS];
	double med_ratio, lo, hi;

	printf("\n#### Throughput at QoS 1: %zu messages of %zu bytes per run, at most %zu "
	       "unacknowledged end to end, broker max_inflight_messages %zu\n\n"
	       "| round | direct (A) msg/s | through the gateway (B) msg/s | ratio B/A | broker "
	       "µs/msg A / B | gateway µs/msg (system share) | clients µs/msg A / B | CPU 0 / 1 "
	       "busy in A | CPU 0 / 1 busy in B | gateway processing p50 / p99 µs |\n"
	       "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
	       msgs, strlen(BENCH_AIR_JSON), b->window, b->inflight);
	fflush(stdout);
	for (size_t r = 0; r < rounds; r++) {
		fprintf(stderr, "gateway_e2e: throughput round %zu/%zu\n", r + 1, rounds);
		if (measure(b, false, MODE_WINDOW, msgs, 0, &a[r]) != 0 ||
		    measure(b, true, MODE_WINDOW, msgs, 0, &bb[r]) != 0)
			return -1;
		ratio[r] = bb[r].rate / a[r].rate;
		printf("| %zu | %.0f | %.0f | %.3f | %.1f / %.1f | %.1f (%.0f %%) | %.1f / %.1f | "
		       "%.0f / %.0f %% | %.0f / %.0f %% | %lld / %lld |\n",
		       r + 1, a[r].rate, bb[r].rate, ratio[r], a[r].broker_us, bb[r].broker_us,
		       bb[r].gw_us, bb[r].gw_sys * 100, a[r].client_us, bb[r].client_us,
		       a[r].cpu_busy[0] * 100, a[r].cpu_busy[1] * 100, bb[r].cpu_busy[0] * 100,
		       bb[r].cpu_busy[1] * 100, bb[r].m.p50_us, bb[r].m.p99_us);
		fflush(stdout);
	}
	lo = bench_min(ratio, rounds);
	hi = bench_max(ratio, rounds);
	med_ratio = bench_median(ratio, rounds);
	for (size_t r = 0; r < rounds; r++) {
		v1[r] = a[r].rate;
		v2[r] = bb[r].rate;
		v3[r] = bb[r].gw_us;
		v4[r] = bb[r].broker_us / a[r].broker_us;
	}
	printf("\n| direct (A) msg/s | through the gateway (B) msg/s | **ratio B/A** (median of "
	       "%zu paired; min-max) | goal >= %.1f (ceiling 0.5) | gateway CPU µs/msg | broker "
	       "CPU per delivered message B/A |\n|---:|---:|---:|---|---:|---:|\n"
	       "| %.0f | %.0f | **%.3f** (%.3f-%.3f) | %s | %.2f | %.2f |\n",
	       rounds, GOAL_RATIO, bench_median(v1, rounds), bench_median(v2, rounds), med_ratio,
	       lo, hi, med_ratio >= GOAL_RATIO ? "met" : "**missed**", bench_median(v3, rounds),
	       bench_median(v4, rounds));
	return 0;
}

static int run_latency(struct bench *b, size_t rounds, unsigned rate, unsigned seconds)
{
	size_t n = (size_t)rate * seconds, pooled = 0;
	uint64_t *all[2];
	double q[2][3], late = 0, gw_us[MAX_ROUNDS];
	long long gw_p99 = 0;

	all[0] = malloc(rounds * n * sizeof(uint64_t));
	all[1] = malloc(rounds * n * sizeof(uint64_t));
	if (all[0] == NULL || all[1] == NULL) {
		free(all[0]);
		free(all[1]);
		return -1;
	}
	for (size_t r = 0; r < rounds; r++) {
		struct result res[2];

		fprintf(stderr,
		        "gateway_e2e: latency round %zu/%zu (%u msg/s for %u s, A then B)\n", r + 1,
		        rounds, rate, seconds);
		for (int side = 0; side < 2; side++) {
			if (measure(b, side == 1, MODE_PACED, n, rate, &res[side]) != 0) {
				if (side == 1)
					free(res[0].lat_ns);
				free(all[0]);
				free(all[1]);
				return -1;
			}
			late = res[side].late_ms > late ? res[side].late_ms : late;
		}
		for (int side = 0; side < 2; side++) {
			memcpy(all[side] + pooled, res[side].lat_ns, n * sizeof(uint64_t));
			free(res[side].lat_ns);
		}
		gw_us[r] = res[1].gw_us;
		gw_p99 = res[1].m.p99_us > gw_p99 ? res[1].m.p99_us : gw_p99;
		pooled += n;
	}
	for (int side = 0; side < 2; side++) {
		qsort(all[side], pooled, sizeof(uint64_t), cmp_u64);
		q[side][0] = quantile_ms(all[side], pooled, 0.50);
		q[side][1] = quantile_ms(all[side], pooled, 0.99);
		q[side][2] = (double)all[side][pooled - 1] / 1e6;
	}
	printf("\n#### Latency at QoS 1, %u msg/s for %u s, %zu round(s) pooled (%zu messages "
	       "per side): publish to receipt\n\n"
	       "| | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|\n"
	       "| direct (A): device -> broker -> raw/# reader | %.3f | %.3f | %.3f |\n"
	       "| through the gateway (B): device -> broker -> gateway -> broker -> dashboard | "
	       "%.3f | %.3f | %.3f |\n"
	       "| **added by the gateway (B - A)** | **%.3f** | **%.3f** | |\n"
	       "| goal | <= %.0f: %s | <= %.0f: %s | |\n",
	       rate, seconds, rounds, pooled, q[0][0], q[0][1], q[0][2], q[1][0], q[1][1], q[1][2],
	       q[1][0] - q[0][0], q[1][1] - q[0][1], GOAL_ADDED_P50_MS,
	       q[1][0] - q[0][0] <= GOAL_ADDED_P50_MS ? "met" : "**missed**", GOAL_ADDED_P99_MS,
	       q[1][1] - q[0][1] <= GOAL_ADDED_P99_MS ? "met" : "**missed**");
	printf("\nAt this rate the gateway used %.2f µs of CPU per message (all threads, median "
	       "of rounds); its own processing time (callback to hand-over, its metrics) reached "
	       "p99 %lld µs. The publisher ran at most %.2f ms behind its schedule.\n",
	       bench_median(gw_us, rounds), gw_p99, late);
	free(all[0]);
	free(all[1]);
	return 0;
}

static int run_callgrind(struct bench *b, size_t msgs, const char *cg_out)
{
	struct result r;

	fprintf(stderr, "gateway_e2e: callgrind, %zu messages through the gateway\n", msgs);
	if (measure(b, true, MODE_WINDOW, msgs, 0, &r) != 0)
		return -1;
	printf("\n#### Gateway instructions per message (callgrind, user space, all threads; %zu "
	       "messages after it subscribed)\n\n"
	       "| messages | gateway instructions/msg | gateway CPU µs/msg under valgrind |\n"
	       "|---:|---:|---:|\n| %zu | %.0f | %.1f |\n",
	       msgs, msgs, (double)r.instr / (double)msgs, r.gw_us);
	if (cg_out != NULL) {
		char cmd[2 * CMQ_H_PATH_MAX + 128];

		snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", r.dump, cg_out);
		if (system(cmd) != 0) {
			fprintf(stderr, "gateway_e2e: cannot copy %s to %s\n", r.dump, cg_out);
			return -1;
		}
	}
	fprintf(stderr, "gateway_e2e: dump %s\n", cg_out != NULL ? cg_out : r.dump);
	return 0;
}

/* ---- command line ---- */

static void usage(void)
{
	fprintf(stderr,
	        "usage: gateway_e2e [-r ROUNDS] [-n MSGS] [-w WINDOW] [-i INFLIGHT] [-R RATE]\n"
	        "                   [-d SECONDS] [-L LAT_ROUNDS] [-s STATE_BASE]\n"
	        "                   [-G with-clients|any] [--only throughput|latency]\n"
	        "       gateway_e2e --callgrind MSGS [-w WINDOW] [-i INFLIGHT] [-s STATE_BASE]\n"
	        "                   [--cg-out FILE]\n");
}

int main(int argc, char **argv)
{
	static struct bench b;
	size_t rounds = DEFAULT_ROUNDS, msgs = DEFAULT_MSGS, rate = DEFAULT_RATE;
	size_t seconds = DEFAULT_SECONDS, lat_rounds = DEFAULT_LAT_ROUNDS, cg = 0;
	const char *state_base = NULL, *only = NULL, *cg_out = NULL;
	int rc = 0;

	b.window = DEFAULT_WINDOW;
	b.inflight = DEFAULT_INFLIGHT;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL) {
			usage();
			return 2;
		}
		i++;
		if (strcmp(a, "-r") == 0)
			rc = bench_parse_size(PROG, v, 1, MAX_ROUNDS, &rounds);
		else if (strcmp(a, "-n") == 0)
			rc = bench_parse_size(PROG, v, 100, MAX_MSGS, &msgs);
		else if (strcmp(a, "-w") == 0)
			rc = bench_parse_size(PROG, v, 2, 65535, &b.window);
		else if (strcmp(a, "-i") == 0)
			rc = bench_parse_size(PROG, v, 1, 65535, &b.inflight);
		else if (strcmp(a, "-R") == 0)
			rc = bench_parse_size(PROG, v, 1, 100000, &rate);
		else if (strcmp(a, "-d") == 0)
			rc = bench_parse_size(PROG, v, 1, 3600, &seconds);
		else if (strcmp(a, "-L") == 0)
			rc = bench_parse_size(PROG, v, 1, MAX_ROUNDS, &lat_rounds);
		else if (strcmp(a, "-s") == 0)
			state_base = v;
		else if (strcmp(a, "-G") == 0 && strcmp(v, "with-clients") == 0)
			b.gw_cpu = GW_WITH_CLIENTS;
		else if (strcmp(a, "-G") == 0 && strcmp(v, "any") == 0)
			b.gw_cpu = GW_ANY;
		else if (strcmp(a, "--cg-out") == 0)
			cg_out = v;
		else if (strcmp(a, "--callgrind") == 0)
			rc = bench_parse_size(PROG, v, 100, MAX_MSGS, &cg);
		else if (strcmp(a, "--only") == 0 &&
		         (strcmp(v, "throughput") == 0 || strcmp(v, "latency") == 0))
			only = v;
		else
			rc = -1;
		if (rc != 0) {
			usage();
			return 2;
		}
	}
	if (rate * seconds > MAX_MSGS) {
		usage();
		return 2;
	}
	b.callgrind = cg > 0;
	if (setup(&b, state_base) != 0) {
		fprintf(stderr, "gateway_e2e: setup failed\n");
		cleanup(&b);
		return 1;
	}
	if (b.callgrind) {
		rc = run_callgrind(&b, cg, cg_out);
	} else {
		if (only == NULL || strcmp(only, "throughput") == 0)
			rc = run_throughput(&b, rounds, msgs);
		if (rc == 0 && (only == NULL || strcmp(only, "latency") == 0))
			rc = run_latency(&b, lat_rounds, (unsigned)rate, (unsigned)seconds);
	}
	cleanup(&b);
	if (rc != 0)
		fprintf(stderr, "gateway_e2e: FAILED\n");
	return rc == 0 ? 0 : 1;
}
