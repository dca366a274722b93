/*
 * harness.h - helpers for integration tests and benchmarks: a real `mosquitto` broker on
 * free loopback ports, the example PKI (certs/civicmq-pki), and synchronous MQTT clients
 * built on libmosquitto.
 *
 * Brokers: cmq_h_broker_start() writes a mosquitto.conf from a template into a fresh temp
 * directory, starts `mosquitto -c` (fork/exec, stdout and stderr appended to the broker's
 * log file) and returns once every port the template uses accepts TCP connections. Every
 * broker started is stopped by PID: by cmq_h_broker_stop(), else at exit (atexit), on a
 * fatal signal, or - if the test process dies without running either - by the kernel
 * (PR_SET_PDEATHSIG). Temp directories are removed at exit unless CMQ_KEEP_TMP=1.
 *
 * Template placeholders: @PORT0@ @PORT1@ @PORT2@ (free loopback ports), @DIR@ (the
 * broker's temp directory), @PKI@ (cmq_h_pki_dir()), @PLUGIN@ (absolute path of
 * $CMQ_BUILD/civicmq_plugin.so), @SRC@ (absolute $CMQ_SRC). Use `log_dest file
 * @DIR@/mosquitto.log` and `log_type all` so the cmq_h_log_* helpers see everything. When
 * the tests run as root and the template has no `user` line, `user root` is prepended so
 * the broker keeps access to the 0700 temp and PKI directories.
 *
 * Clients: every call pumps mosquitto_loop() on the caller's thread for a bounded time
 * (no background thread); received messages are queued inside the client (at most
 * CMQ_H_QUEUE_MAX, later ones are counted and dropped). MQTT v5 unless told otherwise.
 *
 * Environment: CMQ_SRC (source tree, default "."), CMQ_BUILD (build dir, default "build"),
 * CMQ_PKI_DIR (reuse this PKI directory across runs instead of a temp one),
 * CMQ_MOSQUITTO (broker executable, default "mosquitto"), CMQ_KEEP_TMP=1 (keep temp dirs).
 *
 * Threads: not thread-safe; call everything from one thread (the test's main thread).
 */
#ifndef CMQ_HARNESS_H
#define CMQ_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CMQ_H_PATH_MAX  512
#define CMQ_H_PORTS     3
#define CMQ_H_MAX_PROPS 16  /* user properties kept per received message */
#define CMQ_H_QUEUE_MAX 256 /* received messages queued per client */

/* Timeouts (milliseconds) used by the synchronous calls. */
#define CMQ_H_START_TIMEOUT_MS   10000
#define CMQ_H_STOP_TIMEOUT_MS    5000
#define CMQ_H_CONNECT_TIMEOUT_MS 5000
#define CMQ_H_ACK_TIMEOUT_MS     5000

/* Return codes of the client calls besides 0 (success). */
#define CMQ_H_ERR     (-1) /* timeout, TCP/TLS failure, connection lost, bad argument */
#define CMQ_H_REFUSED 1    /* the broker answered with a failure reason code (>= 0x80) */

/* Once per process: mosquitto_lib_init, SIGPIPE ignored, exit/signal cleanup installed.
 * Every other function calls it as needed; calling it again is a no-op. */
void cmq_h_init(void);
/* Stop every broker still running, remove temp directories (unless CMQ_KEEP_TMP=1) and
 * call mosquitto_lib_cleanup. Runs at exit by itself; safe to call more than once. */
void cmq_h_cleanup(void);

/* A free TCP port on 127.0.0.1 (bound to port 0, read back, closed), or -1. */
int cmq_h_free_port(void);

/*
 * The example PKI directory. The first call runs `$CMQ_SRC/certs/civicmq-pki DIR` (bounded
 * to 60 s) into $CMQ_PKI_DIR if set (kept and reused across runs; the script only fills in
 * what is missing) or else into a temp directory removed at exit. Later calls return the
 * same directory. Returns a static string, or NULL if the script failed (reason on stderr).
 */
const char *cmq_h_pki_dir(void);

/* Absolute path of @PKI@/<rel> in a static buffer valid until the next call, or NULL. */
const char *cmq_h_pki(const char *rel);

struct cmq_h_broker {
	pid_t pid;                      /* 0 when not running */
	int port[CMQ_H_PORTS];          /* @PORT0@..@PORT2@ */
	bool port_used[CMQ_H_PORTS];    /* whether the template uses @PORTn@ */
	char dir[CMQ_H_PATH_MAX];       /* @DIR@, the broker's temp directory */
	char conf_path[CMQ_H_PATH_MAX]; /* @DIR@/mosquitto.conf as written */
	char log_path[CMQ_H_PATH_MAX];  /* @DIR@/mosquitto.log (also stdout/stderr) */
	int exit_status;                /* waitpid() status once stopped, else -1 */
};

/*
 * Write the conf from conf_template (placeholders above) and start the broker; waits (at
 * most CMQ_H_START_TIMEOUT_MS) until every used port accepts a TCP connection. If the
 * broker exits first, prints the log tail and fails; if it failed to bind a port, retries
 * once with new ports. Returns 0 (b->pid running) or -1 (nothing left running).
 * b is overwritten; it must stay valid until cmq_h_broker_stop() (the cleanup keeps only
 * the PID, so a struct on the stack is fine).
 */
int cmq_h_broker_start(struct cmq_h_broker *b, const char *conf_template);

/*
 * Start a stopped broker again with the same conf, ports and log (a broker restart, e.g.
 * to test that clients reconnect). Returns 0 once every used port accepts, or -1 (nothing
 * left running; also if it was still running).
 */
int cmq_h_broker_restart(struct cmq_h_broker *b);

/* SIGHUP: mosquitto re-reads its conf and plugins see MOSQ_EVT_RELOAD. Returns at once; to
 * wait for the effect, take cmq_h_log_mark() before and cmq_h_log_wait() for a line after
 * (mosquitto logs "Reloading config."). Returns 0, or -1 if the broker is not running. */
int cmq_h_broker_reload(struct cmq_h_broker *b);

/* True if the broker process is still running (reaps it if it died). */
bool cmq_h_broker_alive(struct cmq_h_broker *b);

/*
 * SIGTERM, wait up to CMQ_H_STOP_TIMEOUT_MS, then SIGKILL. Afterwards no process is left
 * and b->pid is 0; the temp directory stays until exit so the log can still be read.
 * Returns 0 if the broker exited with status 0, 1 if it exited otherwise (crashed, killed,
 * non-zero status: the log tail is printed), -1 if it was not running.
 */
int cmq_h_broker_stop(struct cmq_h_broker *b);

/* Current size of the broker log: pass it to the functions below to look only at what the
 * broker logs afterwards. */
size_t cmq_h_log_mark(const struct cmq_h_broker *b);
/* Whether the log after mark contains needle (a plain substring). */
bool cmq_h_log_contains(const struct cmq_h_broker *b, size_t mark, const char *needle);
/* Poll the log after mark for needle every 10 ms, for at most timeout_ms. */
bool cmq_h_log_wait(const struct cmq_h_broker *b, size_t mark, const char *needle, int timeout_ms);
/* Print the log after mark (at most its last 8 KiB) to stderr, for failing tests. */
void cmq_h_log_print(const struct cmq_h_broker *b, size_t mark);

/*
 * Other processes (the civicmq gateway): the same safety as brokers. cmq_h_spawn()
 * fork/execs argv[0] (PATH searched) with argv, stdin from /dev/null and stdout and
 * stderr appended to log_path (created 0600), every inherited descriptor above 2
 * closed. The PID joins the registry that the exit and fatal-signal handlers walk, and
 * the child dies with the test process (PR_SET_PDEATHSIG). argv must end with NULL.
 * Returns the PID, or -1 (nothing started; reason on stderr).
 */
pid_t cmq_h_spawn(const char *const argv[], const char *log_path);
/*
 * Stop a process from cmq_h_spawn() for good: send sig (SIGTERM for an orderly stop,
 * SIGKILL for a crash), wait up to timeout_ms, then SIGKILL and reap. *status (may be
 * NULL) = the waitpid() status, or -1 if the process was not ours any more. Returns 0
 * if it exited by itself within timeout_ms (after sig), 1 if it had to be killed
 * after the timeout, -1 if pid is not positive.
 */
int cmq_h_proc_stop(pid_t pid, int sig, int timeout_ms, int *status);
/* True if the process is still running; if it exited, reaps it (*status, may be NULL,
 * = its wait status) and removes it from the registry. */
bool cmq_h_proc_alive(pid_t pid, int *status);
/*
 * Wait (at most timeout_ms, in 20 ms steps) for a process from cmq_h_spawn() to exit.
 * Returns its exit code; -1 if it died of a signal, or if it still ran after timeout_ms
 * (it is then killed with SIGKILL and reaped, and stderr says so).
 */
int cmq_h_proc_wait(pid_t pid, int timeout_ms);

/* The cmq_h_log_* helpers for any log file (a spawned process's log_path). */
size_t cmq_h_file_mark(const char *path);
bool cmq_h_file_contains(const char *path, size_t mark, const char *needle);
bool cmq_h_file_wait(const char *path, size_t mark, const char *needle, int timeout_ms);
void cmq_h_file_print(const char *path, size_t mark);
/* The file from mark on (at most 64 MiB), NUL-terminated, or NULL; *len its length (may
 * be NULL). The caller frees it. */
char *cmq_h_file_read(const char *path, size_t mark, size_t *len);

/* A new 0700 directory "$TMPDIR/<prefix>-XXXXXX" into out, removed at exit (unless
 * CMQ_KEEP_TMP=1). Returns 0 or -1. */
int cmq_h_tmpdir(const char *prefix, char *out, size_t n);

struct cmq_h_client_opts {
	const char *id;       /* client id; NULL lets the broker assign one (needs clean) */
	const char *username; /* NULL: none */
	const char *password; /* NULL: none (ignored without username) */
	const char *cafile;   /* non-NULL: TLS, verifying the server (connects to "localhost") */
	const char *certfile; /* client certificate (TLS only), with keyfile */
	const char *keyfile;
	int port;
	int protocol;  /* 5 (default when 0) or 4 (MQTT 3.1.1) */
	bool clean;    /* clean start / clean session */
	int keepalive; /* seconds; 0 means 60 */
};

struct cmq_h_client; /* opaque */

/*
 * Connect and wait (at most CMQ_H_CONNECT_TIMEOUT_MS) for the CONNACK.
 * Returns 0 when connected (*out owns the client: cmq_h_close() it, *reason = 0).
 * Returns CMQ_H_REFUSED if the broker answered with a failure: *reason = the v5 CONNACK
 * reason code (e.g. 0x86 bad username or password, 0x87 not authorised, 0x85 client id
 * not valid) or the v3.1.1 return code (1..5). Returns CMQ_H_ERR with *reason = -1 if the
 * TCP connection or the TLS handshake failed or the broker closed the connection without a
 * CONNACK (with TLS 1.3 a client certificate the broker rejects shows up like this).
 * On failure *out is NULL. reason may be NULL.
 */
int cmq_h_connect(const struct cmq_h_client_opts *o, struct cmq_h_client **out, int *reason);

/*
 * Publish and wait for the acknowledgement: for QoS 0 until the packet is written, for
 * QoS 1 the PUBACK, for QoS 2 the PUBCOMP (or a failing PUBREC). user_props is NULL or
 * "name", "value", ..., NULL (MQTT v5 only; at most CMQ_H_MAX_PROPS pairs).
 * *reason = the v5 reason code (0 success, 0x10 no matching subscribers, 0x87 not
 * authorised, 0x97 quota exceeded...; always 0 for QoS 0 and for v3.1.1, which has no
 * codes), or -1 on timeout/disconnect.
 * Returns 0 if accepted (reason < 0x80; 0x10 counts as delivered), CMQ_H_REFUSED if
 * reason >= 0x80, CMQ_H_ERR otherwise. reason may be NULL.
 */
int cmq_h_publish(struct cmq_h_client *c, const char *topic, const void *payload, int len, int qos,
                  bool retain, const char *const *user_props, int *reason);

/*
 * Subscribe to one filter and wait for the SUBACK. *granted = the granted QoS (0..2) or
 * the refusal code (v5 reason code >= 0x80, e.g. 0x87; v3.1.1: 0x80), -1 on timeout.
 * Returns 0 if granted, CMQ_H_REFUSED if refused, CMQ_H_ERR otherwise. granted may be NULL.
 */
int cmq_h_subscribe(struct cmq_h_client *c, const char *filter, int qos, int *granted);

/* Unsubscribe and wait for the UNSUBACK. Returns 0 or CMQ_H_ERR. */
int cmq_h_unsubscribe(struct cmq_h_client *c, const char *filter);

struct cmq_h_msg {
	char *topic;
	char *payload; /* payloadlen bytes plus a NUL */
	int payloadlen;
	int qos;
	bool retain;
	int nprops; /* user properties received, in order (extra ones beyond 16 are dropped) */
	char *prop_name[CMQ_H_MAX_PROPS];
	char *prop_value[CMQ_H_MAX_PROPS];
};

/*
 * Take the next received message (queued ones first, else pump the network for at most
 * timeout_ms). Returns 0 and fills *out (owned by the caller: cmq_h_msg_clear() it), or
 * CMQ_H_ERR on timeout or lost connection with *out zeroed. timeout_ms 0 only drains
 * what already arrived.
 */
int cmq_h_wait_message(struct cmq_h_client *c, int timeout_ms, struct cmq_h_msg *out);
/* Free what a message owns and zero it; NULL or a zeroed message is fine. */
void cmq_h_msg_clear(struct cmq_h_msg *m);
/* First user property called name (borrowed, valid until cmq_h_msg_clear), or NULL. */
const char *cmq_h_msg_prop(const struct cmq_h_msg *m, const char *name);

/* Pump the network for at most timeout_ms; true once the broker has closed the connection
 * (or sent DISCONNECT). Messages that arrive meanwhile are queued. */
bool cmq_h_wait_disconnect(struct cmq_h_client *c, int timeout_ms);
/* The reason the connection ended: a v5 DISCONNECT reason code from the broker, or a
 * libmosquitto error (MOSQ_ERR_CONN_LOST = 7) when the socket just closed; -1 while
 * connected. */
int cmq_h_disconnect_reason(const struct cmq_h_client *c);
/* Messages dropped because the queue was full. */
size_t cmq_h_dropped(const struct cmq_h_client *c);

/* Disconnect (if still connected), free the client and everything queued. NULL is fine. */
void cmq_h_close(struct cmq_h_client *c);

#endif
