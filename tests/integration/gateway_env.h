/*
 * gateway_env.h - civicmq-gateway processes for integration tests, next to the broker of
 * civicmq_env.h, and the subscribers that watch what they publish.
 *
 * A gateway (struct cmq_gwe) runs $CMQ_BUILD/civicmq-gateway as a child process of the
 * test (harness.h cmq_h_spawn: registered, killed with the test) with files of its own
 * in a fresh temp directory: gateway.log (stdout and stderr), policy.json (the env's
 * policy or the text given), consent.json, pseudonym.key (64 hex digits, mode 0600),
 * password (mode 0600) and state/ (Paho's outbox and the aggregate journal) unless a
 * state_dir is given. It connects to the env's operator port as "gateway" over TLS,
 * verifying the broker against env->cafile, with --metrics_interval 1 and --log_level
 * info. cmq_gwe_start() returns once the gateway logs "subscribed $share/<group>/raw/#".
 *
 * Stopping is by PID only: SIGTERM with a bounded wait, then SIGKILL (cmq_gwe_stop), or
 * SIGKILL at once (cmq_gwe_kill, the crash test). Every wait is bounded.
 *
 * Metrics come from the gateway's own log: cmq_gwe_metrics() sends SIGUSR1 and parses the
 * "metrics: {json}" line it logs in reply.
 *
 * A sink (struct cmq_gwe_sink) is a libmosquitto subscriber (harness.h) whose received
 * messages, with their user properties, are moved into a growing list, so a test can
 * receive thousands without the harness's bounded queue filling: pump it between
 * publishes and wait on it with bounded loops.
 *
 * Threads: none; call everything from the test's main thread.
 */
#ifndef CMQ_GATEWAY_ENV_H
#define CMQ_GATEWAY_ENV_H

#include "civicmq_env.h"
#include "drop.h"
#include "harness.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CMQ_GWE_START_TIMEOUT_MS   15000
#define CMQ_GWE_STOP_TIMEOUT_MS    8000
#define CMQ_GWE_METRICS_TIMEOUT_MS 5000
#define CMQ_GWE_MAX_EXTRA          8

struct cmq_gwe_opts {
	const char *client_id;    /* NULL: "gateway-1" */
	const char *share_group;  /* NULL: "civicmq" */
	const char *policy_text;  /* NULL: a copy of the env's policy.json */
	const char *consent_text; /* NULL: {"version":1,"residents":[]} */
	const char *consent_path; /* NULL: <dir>/consent.json; set to share it with the broker */
	uint32_t pseudonym_epoch; /* seconds; 0: 86400 */
	const char *state_dir;    /* NULL: <dir>/state; set to share it with another run */
	const char *key_hex;      /* NULL: a fixed test key (64 hex digits) */
	/* further options as "name", "value" pairs (without "--"), NULL-terminated */
	const char *extra[2 * CMQ_GWE_MAX_EXTRA + 1];
};

struct cmq_gwe {
	pid_t pid;       /* 0 when not running */
	int exit_status; /* waitpid() status of the last run, -1 while running or unknown */
	char client_id[64];
	char share_group[64];
	char dir[CMQ_H_PATH_MAX];
	char log_path[CMQ_H_PATH_MAX + 32];
	char policy[CMQ_H_PATH_MAX + 32];
	char consent[CMQ_H_PATH_MAX + 32];
	char key[CMQ_H_PATH_MAX + 32];
	char password_file[CMQ_H_PATH_MAX + 32];
	char state_dir[CMQ_H_PATH_MAX + 32];
	char *argv_store[64]; /* the command line, owned, for restarts */
	int argc;
};

/*
 * Write the gateway's files, start it against e's broker and wait (at most
 * CMQ_GWE_START_TIMEOUT_MS) for its subscription. Returns 0 (g->pid running), or -1 (its
 * log tail printed; nothing left running). g is overwritten. o may be NULL.
 */
int cmq_gwe_start(struct cmq_env *e, const struct cmq_gwe_opts *o, struct cmq_gwe *g);
/* Start it again with the same command line and files (the log is appended to); wait as
 * cmq_gwe_start. g must not be running. Returns 0 or -1. */
int cmq_gwe_restart(struct cmq_gwe *g);
/* SIGTERM, wait, then SIGKILL. Returns 0 if it exited with status 0 by itself, 1
 * otherwise (log tail printed), -1 if it was not running. Frees nothing: g can restart. */
int cmq_gwe_stop(struct cmq_gwe *g);
/* SIGKILL now and reap. Returns 0, or -1 if it was not running. */
int cmq_gwe_kill(struct cmq_gwe *g);
/* Whether the process still runs (reaps it and prints the log tail if it died). */
bool cmq_gwe_alive(struct cmq_gwe *g);
/* Stop if running and free the saved command line. The temp dir goes at exit. */
void cmq_gwe_cleanup(struct cmq_gwe *g);
/* Send a signal (SIGHUP, SIGUSR1). 0 or -1. */
int cmq_gwe_signal(struct cmq_gwe *g, int sig);

/* The gateway log, as harness.h's cmq_h_file_* */
size_t cmq_gwe_log_mark(const struct cmq_gwe *g);
bool cmq_gwe_log_contains(const struct cmq_gwe *g, size_t mark, const char *needle);
bool cmq_gwe_log_wait(const struct cmq_gwe *g, size_t mark, const char *needle, int timeout_ms);
/* Occurrences of needle in the log after mark. */
size_t cmq_gwe_log_count(const struct cmq_gwe *g, size_t mark, const char *needle);
void cmq_gwe_log_print(const struct cmq_gwe *g, size_t mark);

/*
 * SIGHUP and wait for the gateway's verdict line ("reload: policy ..."). Returns 1 if
 * the line says the policy was loaded, 0 if it says BROKEN, -1 if no verdict came in
 * time. *line (may be NULL) receives the verdict line, NUL-terminated (n bytes).
 */
int cmq_gwe_reload(struct cmq_gwe *g, char *line, size_t n);

/* Atomically replace the gateway's policy or consent file (temp file + rename). 0 or -1. */
int cmq_gwe_write_policy(struct cmq_gwe *g, const char *text);
int cmq_gwe_write_consent(struct cmq_gwe *g, const char *text);

/* The metrics document, as the gateway logs and publishes it. */
struct cmq_gwe_metrics {
	char gateway[64];
	char policy[64];
	long long received, forwarded, absorbed, dropped, retried;
	long long by_reason[CMQ_DROP__COUNT]; /* indexed by enum cmq_drop */
	long long unknown_reasons;            /* reasons this test build does not know */
	long long agg_published, agg_suppressed, agg_open_groups;
	long long p50_us, p99_us, max_us;
};

/* Parse a metrics JSON document. Returns 0, or -1 if it is not one. */
int cmq_gwe_metrics_parse(const char *json, size_t len, struct cmq_gwe_metrics *m);
/*
 * SIGUSR1, then parse the "metrics: " line the gateway logs in reply (bounded by
 * CMQ_GWE_METRICS_TIMEOUT_MS). Returns 0, or -1 (*m zeroed).
 */
int cmq_gwe_metrics(struct cmq_gwe *g, struct cmq_gwe_metrics *m);
/*
 * Poll cmq_gwe_metrics every 100 ms until received >= n, for at most timeout_ms.
 * Returns 0 when reached, -1 otherwise; *m is the last snapshot either way.
 */
int cmq_gwe_wait_received(struct cmq_gwe *g, long long n, int timeout_ms,
                          struct cmq_gwe_metrics *m);
/* Print a snapshot to stderr (for failing tests). */
void cmq_gwe_metrics_print(const char *label, const struct cmq_gwe_metrics *m);

/* ---- subscribers ---- */

struct cmq_gwe_sink {
	struct cmq_h_client *c;
	struct cmq_h_msg *msgs; /* received, in order */
	size_t n, cap;
};

/*
 * Connect username with password "<username>-secret" on the operator port (v5, clean
 * start, client id NULL = username) and subscribe to filter at QoS 1. Returns 0, or -1
 * (*s zeroed, nothing left open).
 */
int cmq_gwe_sink_open(struct cmq_env *e, const char *username, const char *client_id,
                      const char *filter, struct cmq_gwe_sink *s);
/* Subscribe to one more filter (QoS 1). 0 or -1. */
int cmq_gwe_sink_subscribe(struct cmq_gwe_sink *s, const char *filter);
/* Move what has arrived into the list, pumping the network for at most timeout_ms
 * (0: only what is there). Returns the number of messages added. */
size_t cmq_gwe_sink_pump(struct cmq_gwe_sink *s, int timeout_ms);
/* Messages whose topic starts with prefix (NULL: all), counting from index from. */
size_t cmq_gwe_sink_count(const struct cmq_gwe_sink *s, const char *prefix, size_t from);
/* Pump until at least n messages under prefix (from index from) or timeout_ms. Returns
 * whether they arrived. */
bool cmq_gwe_sink_wait(struct cmq_gwe_sink *s, const char *prefix, size_t from, size_t n,
                       int timeout_ms);
/* The first message under prefix at or after index from, or NULL (borrowed). */
const struct cmq_h_msg *cmq_gwe_sink_find(const struct cmq_gwe_sink *s, const char *prefix,
                                          size_t from);
/* Free every message in the list (the connection stays). */
void cmq_gwe_sink_clear(struct cmq_gwe_sink *s);
/* Disconnect and free everything. A zeroed sink is fine. */
void cmq_gwe_sink_close(struct cmq_gwe_sink *s);

/* ---- helpers ---- */

/* Delete a persistent session (a stopped gateway's) by connecting as username with its
 * client id and clean start, then disconnecting. 0 or -1. */
int cmq_gwe_forget_session(struct cmq_env *e, const char *username, const char *client_id);
/* A copy of path's content (NUL-terminated), or NULL. The caller frees it. */
char *cmq_gwe_read_file(const char *path);
/* Atomically write text to path (temp file + fsync + rename), with the given mode. */
int cmq_gwe_write_file(const char *path, const char *text, int mode);
/* Wall-clock sleep until time(NULL) % period == phase has just begun (bounded by
 * 2 * period seconds). Returns the Unix time reached. */
long long cmq_gwe_align(unsigned period, unsigned phase);
void cmq_gwe_sleep_ms(int ms);
long long cmq_gwe_now_ms(void); /* monotonic */

#endif
