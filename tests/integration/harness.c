/*
 * harness.c - real brokers, the example PKI and synchronous libmosquitto clients for the
 * integration tests and benchmarks (API and ownership in harness.h).
 *
 * Process safety: every broker PID (and every other process from cmq_h_spawn, such as a
 * gateway) goes into a small registry that the exit handler and the fatal-signal handler
 * (async-signal-safe: kill() only) walk, and each child asks the kernel for SIGKILL when
 * the test process dies (PR_SET_PDEATHSIG), so a crashing or killed test leaves nothing
 * behind. Children close every inherited
 * descriptor before exec: a broker must not keep another broker's client sockets open.
 *
 * Every wait is a poll loop bounded by a deadline on CLOCK_MONOTONIC. Clients are driven
 * by mosquitto_loop() on the caller's thread in slices of at most 50 ms; acknowledgements
 * are recorded by message id in small rings, because libmosquitto may run the publish
 * callback (QoS 0) before mosquitto_publish_v5() has returned the id.
 *
 * The registry is process-global by necessity (atexit and signal handlers take no user
 * data); it lives in one struct below and nothing else here is mutable global state.
 */
#include "harness.h"

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define MAX_BROKERS     32
#define MAX_TMPDIRS     64
#define ACK_RING        64
#define SLICE_MS        50
#define POLL_MS         10
#define PKI_TIMEOUT_MS  60000
#define LOG_READ_MAX    (64u * 1024u * 1024u)
#define LOG_TAIL_BYTES  8192
#define MAX_FD_TO_CLOSE 65536

static struct {
	bool initialised;
	bool atexit_done;
	volatile pid_t live[MAX_BROKERS]; /* read by the signal handler */
	char tmpdirs[MAX_TMPDIRS][CMQ_H_PATH_MAX];
	int ntmpdirs;
	char pki_dir[CMQ_H_PATH_MAX];
	int pki_state; /* 0 not yet, 1 ready, -1 failed */
	char pki_path[CMQ_H_PATH_MAX];
} hs;

/* ---- time ---- */

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left_ms(long long deadline)
{
	long long left = deadline - now_ms();

	if (left <= 0)
		return 0;
	return left > 1000000 ? 1000000 : (int)left;
}

static void sleep_ms(int ms)
{
	struct timespec ts;

	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	nanosleep(&ts, NULL);
}

/* ---- process registry and cleanup ---- */

static void registry_add(pid_t pid)
{
	for (int i = 0; i < MAX_BROKERS; i++) {
		if (hs.live[i] == 0) {
			hs.live[i] = pid;
			return;
		}
	}
	fprintf(stderr, "harness: more than %d brokers at once; pid %ld not tracked\n", MAX_BROKERS,
	        (long)pid);
}

static void registry_remove(pid_t pid)
{
	for (int i = 0; i < MAX_BROKERS; i++) {
		if (hs.live[i] == pid)
			hs.live[i] = 0;
	}
}

/* Wait (bounded) for pid to exit; returns true and its status if it did. */
static bool reap(pid_t pid, int timeout_ms, int *status)
{
	long long deadline = now_ms() + timeout_ms;

	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid)
			return true;
		if (r < 0 && errno != EINTR) {
			*status = -1; /* not our child any more: gone */
			return true;
		}
		if (left_ms(deadline) == 0)
			return false;
		sleep_ms(POLL_MS);
	}
}

/* Wait up to timeout_ms for pid to exit, then SIGKILL it. Returns its wait status. */
static int wait_or_kill(pid_t pid, int timeout_ms, bool *killed)
{
	int status = -1;

	*killed = false;
	if (reap(pid, timeout_ms, &status))
		return status;
	*killed = true;
	kill(pid, SIGKILL);
	if (!reap(pid, 2000, &status))
		fprintf(stderr, "harness: pid %ld survived SIGKILL for 2 s\n", (long)pid);
	return status;
}

/* Stop a process for good: SIGTERM, bounded wait, SIGKILL. Returns its wait status. */
static int terminate(pid_t pid, int timeout_ms, bool *killed)
{
	kill(pid, SIGTERM);
	return wait_or_kill(pid, timeout_ms, killed);
}

static void on_fatal_signal(int sig)
{
	for (int i = 0; i < MAX_BROKERS; i++) {
		pid_t pid = hs.live[i];

		if (pid > 0)
			kill(pid, SIGKILL);
	}
	/* SA_RESETHAND restored the default action: deliver the signal again. */
	raise(sig);
}

static int rm_tree(const char *path, int depth)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return -1;
	if (S_ISDIR(st.st_mode) && depth < 16) {
		DIR *d = opendir(path);

		if (d != NULL) {
			struct dirent *e;

			while ((e = readdir(d)) != NULL) {
				char child[CMQ_H_PATH_MAX];

				if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
					continue;
				if (snprintf(child, sizeof(child), "%s/%s", path, e->d_name) <
				    (int)sizeof(child))
					rm_tree(child, depth + 1);
			}
			closedir(d);
		}
		return rmdir(path);
	}
	return unlink(path);
}

void cmq_h_cleanup(void)
{
	for (int i = 0; i < MAX_BROKERS; i++) {
		pid_t pid = hs.live[i];
		bool killed;

		if (pid > 0) {
			fprintf(stderr, "harness: stopping pid %ld left running\n", (long)pid);
			terminate(pid, 2000, &killed);
			hs.live[i] = 0;
		}
	}
	const char *keep = getenv("CMQ_KEEP_TMP");
	bool keep_tmp = keep != NULL && strcmp(keep, "1") == 0;

	for (int i = 0; i < hs.ntmpdirs; i++) {
		if (keep_tmp)
			fprintf(stderr, "harness: kept %s\n", hs.tmpdirs[i]);
		else
			rm_tree(hs.tmpdirs[i], 0);
	}
	hs.ntmpdirs = 0;
	hs.pki_state = 0; /* a temp PKI dir is gone; $CMQ_PKI_DIR is just checked again */
	if (hs.initialised) {
		mosquitto_lib_cleanup();
		hs.initialised = false;
	}
}

void cmq_h_init(void)
{
	static const int fatal[] = {SIGINT,  SIGTERM, SIGQUIT, SIGHUP, SIGABRT,
	                            SIGSEGV, SIGBUS,  SIGFPE,  SIGILL};

	if (hs.initialised)
		return;
	hs.initialised = true;
	mosquitto_lib_init();
	/* A broker closing a socket must not kill the test with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++) {
		struct sigaction old;
		struct sigaction sa;

		/* Leave alone handlers someone else installed (sanitizers, debuggers). */
		if (sigaction(fatal[i], NULL, &old) != 0 || old.sa_handler != SIG_DFL)
			continue;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_fatal_signal;
		sa.sa_flags = SA_RESETHAND;
		sigemptyset(&sa.sa_mask);
		sigaction(fatal[i], &sa, NULL);
	}
	if (!hs.atexit_done) {
		hs.atexit_done = true;
		atexit(cmq_h_cleanup);
	}
}

/* ---- paths ---- */

static const char *tmp_root(void)
{
	const char *t = getenv("TMPDIR");

	return (t != NULL && *t != '\0') ? t : "/tmp";
}

/* A new 0700 directory under $TMPDIR, removed at exit. */
static int make_tmpdir(const char *prefix, char *out, size_t n)
{
	if (hs.ntmpdirs >= MAX_TMPDIRS) {
		fprintf(stderr, "harness: more than %d temp directories\n", MAX_TMPDIRS);
		return -1;
	}
	if (snprintf(out, n, "%s/%s-XXXXXX", tmp_root(), prefix) >= (int)n)
		return -1;
	if (mkdtemp(out) == NULL) {
		fprintf(stderr, "harness: mkdtemp %s: %s\n", out, strerror(errno));
		return -1;
	}
	snprintf(hs.tmpdirs[hs.ntmpdirs], CMQ_H_PATH_MAX, "%s", out);
	hs.ntmpdirs++;
	return 0;
}

/* Absolute form of p (resolved if it exists, else joined to the working directory). */
static int abs_path(const char *p, char *out, size_t n)
{
	char resolved[4096];
	char cwd[4096];

	if (realpath(p, resolved) != NULL)
		return snprintf(out, n, "%s", resolved) < (int)n ? 0 : -1;
	if (p[0] == '/')
		return snprintf(out, n, "%s", p) < (int)n ? 0 : -1;
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return -1;
	return snprintf(out, n, "%s/%s", cwd, p) < (int)n ? 0 : -1;
}

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);

	return (v != NULL && *v != '\0') ? v : def;
}

/* In a forked child: close every descriptor but 0, 1, 2. */
static void close_inherited_fds(void)
{
	long max = sysconf(_SC_OPEN_MAX);

	if (max < 0 || max > MAX_FD_TO_CLOSE)
		max = MAX_FD_TO_CLOSE;
	for (int fd = 3; fd < max; fd++)
		close(fd);
}

static void print_file_tail(const char *path, size_t from, size_t max)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char buf[4096];

	if (fd < 0) {
		fprintf(stderr, "harness: (no %s)\n", path);
		return;
	}
	if (fstat(fd, &st) == 0 && (size_t)st.st_size > from) {
		size_t start = (size_t)st.st_size - from > max ? (size_t)st.st_size - max : from;
		ssize_t got;

		fprintf(stderr, "---- %s (from byte %zu) ----\n", path, start);
		if (lseek(fd, (off_t)start, SEEK_SET) >= 0) {
			while ((got = read(fd, buf, sizeof(buf))) > 0)
				fwrite(buf, 1, (size_t)got, stderr);
		}
		fprintf(stderr, "---- end of %s ----\n", path);
	}
	close(fd);
}

/* ---- PKI ---- */

const char *cmq_h_pki_dir(void)
{
	char src[CMQ_H_PATH_MAX];
	char script[CMQ_H_PATH_MAX];
	char errpath[CMQ_H_PATH_MAX];
	const char *env;
	int errfd;
	int status = -1;
	pid_t pid;
	bool killed = false;

	cmq_h_init();
	if (hs.pki_state != 0)
		return hs.pki_state > 0 ? hs.pki_dir : NULL;
	hs.pki_state = -1;
	env = getenv("CMQ_PKI_DIR");
	if (env != NULL && *env != '\0') {
		if (abs_path(env, hs.pki_dir, sizeof(hs.pki_dir)) != 0)
			return NULL;
	} else if (make_tmpdir("cmq-pki", hs.pki_dir, sizeof(hs.pki_dir)) != 0) {
		return NULL;
	}
	if (abs_path(env_or("CMQ_SRC", "."), src, sizeof(src)) != 0 ||
	    snprintf(script, sizeof(script), "%s/certs/civicmq-pki", src) >= (int)sizeof(script) ||
	    snprintf(errpath, sizeof(errpath), "%s/cmq-pki-log-XXXXXX", tmp_root()) >=
	        (int)sizeof(errpath))
		return NULL;
	errfd = mkstemp(errpath);
	if (errfd < 0) {
		fprintf(stderr, "harness: mkstemp %s: %s\n", errpath, strerror(errno));
		return NULL;
	}
	unlink(errpath);
	pid = fork();
	if (pid == 0) {
		int nullfd = open("/dev/null", O_RDWR);

		if (nullfd >= 0) {
			dup2(nullfd, 0);
			dup2(nullfd, 1);
		}
		dup2(errfd, 2);
		close_inherited_fds();
		signal(SIGPIPE, SIG_DFL);
		execl("/bin/sh", "sh", script, hs.pki_dir, (char *)NULL);
		_exit(127);
	}
	if (pid < 0) {
		fprintf(stderr, "harness: fork: %s\n", strerror(errno));
		close(errfd);
		return NULL;
	}
	status = wait_or_kill(pid, PKI_TIMEOUT_MS, &killed);
	if (killed || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char buf[4096];
		ssize_t got;

		if (killed)
			fprintf(stderr, "harness: %s %s timed out after %d ms:\n", script,
			        hs.pki_dir, PKI_TIMEOUT_MS);
		else
			fprintf(stderr, "harness: %s %s failed (wait status %d):\n", script,
			        hs.pki_dir, status);
		if (lseek(errfd, 0, SEEK_SET) >= 0) {
			while ((got = read(errfd, buf, sizeof(buf))) > 0)
				fwrite(buf, 1, (size_t)got, stderr);
		}
		close(errfd);
		return NULL;
	}
	close(errfd);
	hs.pki_state = 1;
	return hs.pki_dir;
}

const char *cmq_h_pki(const char *rel)
{
	const char *dir = cmq_h_pki_dir();

	if (dir == NULL || rel == NULL)
		return NULL;
	if (snprintf(hs.pki_path, sizeof(hs.pki_path), "%s/%s", dir, rel) >=
	    (int)sizeof(hs.pki_path))
		return NULL;
	return hs.pki_path;
}

/* ---- ports ---- */

static int bound_socket(int *port)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

int cmq_h_free_port(void)
{
	int port = -1;
	int fd = bound_socket(&port);

	if (fd < 0)
		return -1;
	close(fd);
	return port;
}

/* n distinct free ports (held open together so they differ). */
static int free_ports(int *ports, int n)
{
	int fds[CMQ_H_PORTS];
	int rc = 0;

	for (int i = 0; i < n; i++) {
		fds[i] = bound_socket(&ports[i]);
		if (fds[i] < 0)
			rc = -1;
	}
	for (int i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
	}
	return rc;
}

static bool port_accepts(int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((unsigned short)port);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

/* ---- brokers ---- */

/* Whether some line of the template starts with the `user` option. */
static bool has_user_line(const char *t)
{
	const char *line = t;

	while (line != NULL && *line != '\0') {
		const char *p = line;

		while (*p == ' ' || *p == '\t')
			p++;
		if (strncmp(p, "user", 4) == 0 && (p[4] == ' ' || p[4] == '\t'))
			return true;
		line = strchr(line, '\n');
		if (line != NULL)
			line++;
	}
	return false;
}

/* Placeholders and their values for one broker. */
struct conf_subst {
	const char *name;
	const char *value;
};

static int write_conf(const struct cmq_h_broker *b, const char *tmpl)
{
	char ports[CMQ_H_PORTS][16];
	char src[CMQ_H_PATH_MAX];
	char build[CMQ_H_PATH_MAX];
	char plugin[CMQ_H_PATH_MAX + 32];
	const char *pki = "";
	FILE *f;

	for (int i = 0; i < CMQ_H_PORTS; i++)
		snprintf(ports[i], sizeof(ports[i]), "%d", b->port[i]);
	/* Only brokers that use the PKI pay for making it. */
	if (strstr(tmpl, "@PKI@") != NULL) {
		pki = cmq_h_pki_dir();
		if (pki == NULL)
			return -1;
	}
	if (abs_path(env_or("CMQ_SRC", "."), src, sizeof(src)) != 0 ||
	    abs_path(env_or("CMQ_BUILD", "build"), build, sizeof(build)) != 0)
		return -1;
	snprintf(plugin, sizeof(plugin), "%s/civicmq_plugin.so", build);

	const struct conf_subst subst[] = {
	    {"@PORT0@", ports[0]}, {"@PORT1@", ports[1]}, {"@PORT2@", ports[2]}, {"@DIR@", b->dir},
	    {"@PKI@", pki},        {"@PLUGIN@", plugin},  {"@SRC@", src},
	};

	f = fopen(b->conf_path, "w");
	if (f == NULL) {
		fprintf(stderr, "harness: %s: %s\n", b->conf_path, strerror(errno));
		return -1;
	}
	fprintf(f, "# written by tests/integration/harness.c from a template\n");
	/* As root, mosquitto would switch to user "mosquitto", who cannot read 0700 dirs. */
	if (geteuid() == 0 && !has_user_line(tmpl))
		fprintf(f, "user root\n");
	for (const char *p = tmpl; *p != '\0';) {
		bool done = false;

		if (*p == '@') {
			for (size_t i = 0; i < sizeof(subst) / sizeof(subst[0]); i++) {
				size_t n = strlen(subst[i].name);

				if (strncmp(p, subst[i].name, n) == 0) {
					fputs(subst[i].value, f);
					p += n;
					done = true;
					break;
				}
			}
		}
		if (!done)
			fputc(*p++, f);
	}
	if (fclose(f) != 0) {
		fprintf(stderr, "harness: writing %s: %s\n", b->conf_path, strerror(errno));
		return -1;
	}
	return 0;
}

static pid_t spawn_broker(const struct cmq_h_broker *b)
{
	const char *argv[] = {env_or("CMQ_MOSQUITTO", "mosquitto"), "-c", b->conf_path, NULL};

	return cmq_h_spawn(argv, b->log_path);
}

/* One attempt: new ports, conf, process, wait for the ports. 0 ok, 1 retry, -1 fail. */
static int start_once(struct cmq_h_broker *b, const char *tmpl)
{
	bool ready[CMQ_H_PORTS] = {false, false, false};
	long long deadline;
	int status;

	if (free_ports(b->port, CMQ_H_PORTS) != 0) {
		fprintf(stderr, "harness: no free loopback ports\n");
		return -1;
	}
	unlink(b->log_path);
	if (write_conf(b, tmpl) != 0)
		return -1;
	b->pid = spawn_broker(b);
	if (b->pid < 0) {
		b->pid = 0;
		return -1;
	}
	deadline = now_ms() + CMQ_H_START_TIMEOUT_MS;
	for (;;) {
		bool all = true;

		if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
			registry_remove(b->pid);
			b->pid = 0;
			if (cmq_h_log_contains(b, 0, "Address already in use"))
				return 1;
			fprintf(stderr, "harness: mosquitto -c %s exited early (status %d)\n",
			        b->conf_path, status);
			print_file_tail(b->log_path, 0, LOG_TAIL_BYTES);
			return -1;
		}
		for (int i = 0; i < CMQ_H_PORTS; i++) {
			if (b->port_used[i] && !ready[i])
				ready[i] = port_accepts(b->port[i]);
			if (b->port_used[i] && !ready[i])
				all = false;
		}
		if (all)
			return 0;
		if (left_ms(deadline) == 0)
			break;
		sleep_ms(POLL_MS);
	}
	fprintf(stderr, "harness: broker not listening after %d ms\n", CMQ_H_START_TIMEOUT_MS);
	cmq_h_broker_stop(b);
	print_file_tail(b->log_path, 0, LOG_TAIL_BYTES);
	return -1;
}

int cmq_h_broker_restart(struct cmq_h_broker *b)
{
	long long deadline = now_ms() + CMQ_H_START_TIMEOUT_MS;

	if (b->pid != 0)
		return -1;
	b->pid = spawn_broker(b);
	if (b->pid < 0) {
		b->pid = 0;
		return -1;
	}
	b->exit_status = -1;
	for (;;) {
		bool all = true;

		if (!cmq_h_broker_alive(b)) {
			fprintf(stderr, "harness: mosquitto -c %s exited at restart\n",
			        b->conf_path);
			return -1;
		}
		for (int i = 0; i < CMQ_H_PORTS; i++) {
			if (b->port_used[i] && !port_accepts(b->port[i]))
				all = false;
		}
		if (all)
			return 0;
		if (left_ms(deadline) == 0)
			break;
		sleep_ms(POLL_MS);
	}
	fprintf(stderr, "harness: broker not listening %d ms after restart\n",
	        CMQ_H_START_TIMEOUT_MS);
	cmq_h_broker_stop(b);
	return -1;
}

int cmq_h_broker_start(struct cmq_h_broker *b, const char *conf_template)
{
	int rc = -1;

	cmq_h_init();
	memset(b, 0, sizeof(*b));
	b->exit_status = -1;
	if (conf_template == NULL || make_tmpdir("cmq-broker", b->dir, sizeof(b->dir)) != 0)
		return -1;
	if (snprintf(b->conf_path, sizeof(b->conf_path), "%s/mosquitto.conf", b->dir) >=
	        (int)sizeof(b->conf_path) ||
	    snprintf(b->log_path, sizeof(b->log_path), "%s/mosquitto.log", b->dir) >=
	        (int)sizeof(b->log_path))
		return -1;
	for (int i = 0; i < CMQ_H_PORTS; i++) {
		char name[32];

		snprintf(name, sizeof(name), "@PORT%d@", i);
		b->port_used[i] = strstr(conf_template, name) != NULL;
	}
	rc = start_once(b, conf_template);
	if (rc == 1) {
		fprintf(stderr, "harness: a port was taken meanwhile; retrying with new ports\n");
		rc = start_once(b, conf_template);
	}
	if (rc == 1) {
		fprintf(stderr, "harness: mosquitto could not bind its ports twice\n");
		print_file_tail(b->log_path, 0, LOG_TAIL_BYTES);
		rc = -1;
	}
	return rc;
}

int cmq_h_broker_reload(struct cmq_h_broker *b)
{
	if (b == NULL || b->pid <= 0 || b->exit_status != -1)
		return -1;
	return kill(b->pid, SIGHUP) == 0 ? 0 : -1;
}

bool cmq_h_broker_alive(struct cmq_h_broker *b)
{
	int status;

	if (b == NULL || b->pid <= 0 || b->exit_status != -1)
		return false;
	if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
		registry_remove(b->pid);
		b->exit_status = status;
		fprintf(stderr, "harness: broker pid %ld died (status %d)\n", (long)b->pid, status);
		print_file_tail(b->log_path, 0, LOG_TAIL_BYTES);
		return false;
	}
	return true;
}

int cmq_h_broker_stop(struct cmq_h_broker *b)
{
	bool killed = false;
	int status;

	if (b == NULL || b->pid <= 0)
		return -1;
	if (b->exit_status != -1) {
		status = b->exit_status; /* died earlier, seen by cmq_h_broker_alive() */
	} else {
		status = terminate(b->pid, CMQ_H_STOP_TIMEOUT_MS, &killed);
		registry_remove(b->pid);
	}
	b->pid = 0;
	b->exit_status = status;
	if (!killed && status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	fprintf(stderr, "harness: broker %s (status %d)\n",
	        killed ? "ignored SIGTERM and was killed" : "did not exit cleanly", status);
	print_file_tail(b->log_path, 0, LOG_TAIL_BYTES);
	return 1;
}

/* ---- broker log ---- */

/* The broker's log is a log file like any other: these name it for the caller. */
size_t cmq_h_log_mark(const struct cmq_h_broker *b)
{
	return b != NULL ? cmq_h_file_mark(b->log_path) : 0;
}

/* The file from mark on (at most LOG_READ_MAX bytes), NUL-terminated; caller frees. */
static char *read_path(const char *path, size_t mark, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf = NULL;
	size_t want;
	size_t got = 0;

	*len = 0;
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) != 0 || (size_t)st.st_size <= mark)
		goto out;
	want = (size_t)st.st_size - mark;
	if (want > LOG_READ_MAX)
		want = LOG_READ_MAX;
	buf = malloc(want + 1);
	if (buf == NULL)
		goto out;
	while (got < want) {
		ssize_t r = pread(fd, buf + got, want - got, (off_t)(mark + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	buf[got] = '\0';
	*len = got;
out:
	close(fd);
	return buf;
}

static bool mem_contains(const char *hay, size_t hlen, const char *needle)
{
	size_t nlen = strlen(needle);

	if (nlen == 0)
		return true;
	for (size_t i = 0; i + nlen <= hlen; i++) {
		if (hay[i] == needle[0] && memcmp(hay + i, needle, nlen) == 0)
			return true;
	}
	return false;
}

bool cmq_h_log_contains(const struct cmq_h_broker *b, size_t mark, const char *needle)
{
	return b != NULL && cmq_h_file_contains(b->log_path, mark, needle);
}

bool cmq_h_log_wait(const struct cmq_h_broker *b, size_t mark, const char *needle, int timeout_ms)
{
	return b != NULL && cmq_h_file_wait(b->log_path, mark, needle, timeout_ms);
}

void cmq_h_log_print(const struct cmq_h_broker *b, size_t mark)
{
	if (b != NULL)
		print_file_tail(b->log_path, mark, LOG_TAIL_BYTES);
}

/* ---- other processes and their log files ---- */

pid_t cmq_h_spawn(const char *const argv[], const char *log_path)
{
	int logfd, nullfd;
	pid_t parent = getpid();
	pid_t pid;

	cmq_h_init();
	if (argv == NULL || argv[0] == NULL || log_path == NULL)
		return -1;
	logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (logfd < 0 || nullfd < 0) {
		fprintf(stderr, "harness: %s: %s\n", log_path, strerror(errno));
		if (logfd >= 0)
			close(logfd);
		if (nullfd >= 0)
			close(nullfd);
		return -1;
	}
	pid = fork();
	if (pid == 0) {
#ifdef __linux__
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(126);
#endif
		dup2(nullfd, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		close_inherited_fds();
		signal(SIGPIPE, SIG_DFL);
		/* The test blocks no signal the child needs, but be explicit. */
		{
			sigset_t none;

			sigemptyset(&none);
			sigprocmask(SIG_SETMASK, &none, NULL);
		}
		execvp(argv[0], (char *const *)argv);
		{
			static const char msg[] = "harness: cannot exec the process\n";
			ssize_t ignored = write(2, msg, sizeof(msg) - 1);

			(void)ignored;
		}
		_exit(127);
	}
	(void)parent;
	close(logfd);
	close(nullfd);
	if (pid < 0) {
		fprintf(stderr, "harness: fork: %s\n", strerror(errno));
		return -1;
	}
	registry_add(pid);
	return pid;
}

int cmq_h_proc_stop(pid_t pid, int sig, int timeout_ms, int *status)
{
	bool killed = false;
	int st;

	if (status != NULL)
		*status = -1;
	if (pid <= 0)
		return -1;
	kill(pid, sig);
	st = wait_or_kill(pid, timeout_ms, &killed);
	registry_remove(pid);
	if (status != NULL)
		*status = st;
	return killed ? 1 : 0;
}

int cmq_h_proc_wait(pid_t pid, int timeout_ms)
{
	int status = -1;

	if (pid <= 0)
		return -1;
	for (int waited = 0;; waited += 20) {
		if (!cmq_h_proc_alive(pid, &status))
			return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		if (waited >= timeout_ms)
			break;
		usleep(20 * 1000);
	}
	fprintf(stderr, "harness: pid %ld still running after %d ms; killing it\n", (long)pid,
	        timeout_ms);
	cmq_h_proc_stop(pid, SIGKILL, 1000, &status);
	return -1;
}

bool cmq_h_proc_alive(pid_t pid, int *status)
{
	int st = -1;
	pid_t r;

	if (status != NULL)
		*status = -1;
	if (pid <= 0)
		return false;
	r = waitpid(pid, &st, WNOHANG);
	if (r == 0)
		return true;
	registry_remove(pid);
	if (status != NULL)
		*status = r == pid ? st : -1;
	return false;
}

size_t cmq_h_file_mark(const char *path)
{
	struct stat st;

	if (path == NULL || stat(path, &st) != 0)
		return 0;
	return (size_t)st.st_size;
}

char *cmq_h_file_read(const char *path, size_t mark, size_t *len)
{
	size_t n = 0;
	char *buf = path != NULL ? read_path(path, mark, &n) : NULL;

	if (len != NULL)
		*len = n;
	return buf;
}

bool cmq_h_file_contains(const char *path, size_t mark, const char *needle)
{
	size_t len;
	char *text;
	bool found;

	if (path == NULL || needle == NULL)
		return false;
	text = read_path(path, mark, &len);
	found = text != NULL && mem_contains(text, len, needle);
	free(text);
	return found;
}

bool cmq_h_file_wait(const char *path, size_t mark, const char *needle, int timeout_ms)
{
	long long deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	size_t nlen;
	size_t pos = mark;

	if (path == NULL || needle == NULL)
		return false;
	nlen = strlen(needle);
	for (;;) {
		size_t len;
		char *text = read_path(path, pos, &len);
		bool found = text != NULL && mem_contains(text, len, needle);

		free(text);
		if (found)
			return true;
		if (len >= nlen)
			pos += len - nlen + 1;
		if (left_ms(deadline) == 0)
			return false;
		sleep_ms(POLL_MS);
	}
}

void cmq_h_file_print(const char *path, size_t mark)
{
	if (path != NULL)
		print_file_tail(path, mark, LOG_TAIL_BYTES);
}

int cmq_h_tmpdir(const char *prefix, char *out, size_t n)
{
	cmq_h_init();
	if (prefix == NULL || out == NULL)
		return -1;
	return make_tmpdir(prefix, out, n);
}

/* ---- clients ---- */

struct cmq_h_ack {
	int mid; /* 0: free slot */
	int code;
};

struct cmq_h_client {
	struct mosquitto *mosq;
	int protocol;          /* 4 or 5 */
	bool connack;          /* a CONNACK arrived */
	int connack_code;      /* its reason/return code */
	bool gone;             /* the connection ended (or never came up) */
	int disconnect_reason; /* see cmq_h_disconnect_reason() */
	struct cmq_h_ack pub_acks[ACK_RING];
	struct cmq_h_ack sub_acks[ACK_RING];
	struct cmq_h_ack unsub_acks[ACK_RING];
	unsigned pub_next, sub_next, unsub_next;
	struct cmq_h_msg queue[CMQ_H_QUEUE_MAX]; /* ring */
	size_t q_head, q_len;
	size_t dropped;
};

static void ack_put(struct cmq_h_ack *ring, unsigned *next, int mid, int code)
{
	ring[*next % ACK_RING].mid = mid;
	ring[*next % ACK_RING].code = code;
	(*next)++;
}

/* Take the acknowledgement of mid if it arrived. */
static bool ack_take(struct cmq_h_ack *ring, int mid, int *code)
{
	for (int i = 0; i < ACK_RING; i++) {
		if (ring[i].mid == mid) {
			*code = ring[i].code;
			ring[i].mid = 0;
			return true;
		}
	}
	return false;
}

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
	struct cmq_h_client *c = obj;

	(void)m;
	(void)flags;
	(void)props;
	c->connack = true;
	c->connack_code = rc;
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *props)
{
	struct cmq_h_client *c = obj;

	(void)m;
	(void)props;
	if (!c->gone) {
		c->gone = true;
		c->disconnect_reason = rc;
	}
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int rc,
                       const mosquitto_property *props)
{
	struct cmq_h_client *c = obj;

	(void)m;
	(void)props;
	ack_put(c->pub_acks, &c->pub_next, mid, rc);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int count, const int *granted,
                         const mosquitto_property *props)
{
	struct cmq_h_client *c = obj;

	(void)m;
	(void)props;
	ack_put(c->sub_acks, &c->sub_next, mid, count > 0 ? granted[0] : 0x80);
}

static void on_unsubscribe(struct mosquitto *m, void *obj, int mid, const mosquitto_property *props)
{
	struct cmq_h_client *c = obj;

	(void)m;
	(void)props;
	ack_put(c->unsub_acks, &c->unsub_next, mid, 0);
}

static char *dup_bytes(const void *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s != NULL) {
		if (n > 0)
			memcpy(s, p, n);
		s[n] = '\0';
	}
	return s;
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
	struct cmq_h_client *c = obj;
	struct cmq_h_msg *q;
	const mosquitto_property *p = props;
	bool skip = false;

	(void)m;
	if (c->q_len == CMQ_H_QUEUE_MAX) {
		c->dropped++;
		return;
	}
	q = &c->queue[(c->q_head + c->q_len) % CMQ_H_QUEUE_MAX];
	memset(q, 0, sizeof(*q));
	q->topic = dup_bytes(msg->topic, strlen(msg->topic));
	q->payload = dup_bytes(msg->payload, msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0);
	q->payloadlen = msg->payloadlen;
	q->qos = msg->qos;
	q->retain = msg->retain;
	/* Bounded: at most 4 * CMQ_H_MAX_PROPS properties are looked at. */
	for (int i = 0; i < 4 * CMQ_H_MAX_PROPS && p != NULL; i++) {
		char *name = NULL;
		char *value = NULL;

		p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value,
		                                        skip);
		skip = true;
		if (p != NULL && q->nprops < CMQ_H_MAX_PROPS) {
			q->prop_name[q->nprops] = name;
			q->prop_value[q->nprops] = value;
			q->nprops++;
		} else {
			free(name);
			free(value);
		}
	}
	if (q->topic == NULL || q->payload == NULL) {
		cmq_h_msg_clear(q);
		c->dropped++;
		return;
	}
	c->q_len++;
}

/* One slice of network work; notes a lost connection. */
static void pump(struct cmq_h_client *c, int slice_ms)
{
	int rc;

	if (c->gone)
		return;
	if (slice_ms > SLICE_MS)
		slice_ms = SLICE_MS;
	rc = mosquitto_loop(c->mosq, slice_ms, 1);
	if (rc != MOSQ_ERR_SUCCESS && !c->gone) {
		c->gone = true;
		c->disconnect_reason = rc;
	}
}

static void client_free(struct cmq_h_client *c)
{
	if (c == NULL)
		return;
	if (c->mosq != NULL)
		mosquitto_destroy(c->mosq);
	for (size_t i = 0; i < c->q_len; i++)
		cmq_h_msg_clear(&c->queue[(c->q_head + i) % CMQ_H_QUEUE_MAX]);
	free(c);
}

int cmq_h_connect(const struct cmq_h_client_opts *o, struct cmq_h_client **out, int *reason)
{
	struct cmq_h_client *c;
	const char *host = "127.0.0.1";
	long long deadline;
	bool clean;
	int rc;

	if (reason != NULL)
		*reason = -1;
	if (out == NULL)
		return CMQ_H_ERR;
	*out = NULL;
	if (o == NULL || o->port <= 0 || (o->protocol != 0 && o->protocol != 4 && o->protocol != 5))
		return CMQ_H_ERR;
	cmq_h_init();
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return CMQ_H_ERR;
	c->protocol = o->protocol == 4 ? 4 : 5;
	c->disconnect_reason = -1;
	clean = o->clean || o->id == NULL;
	c->mosq = mosquitto_new(o->id, clean, c);
	if (c->mosq == NULL) {
		free(c);
		return CMQ_H_ERR;
	}
	mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION,
	                     c->protocol == 4 ? MQTT_PROTOCOL_V311 : MQTT_PROTOCOL_V5);
	mosquitto_connect_v5_callback_set(c->mosq, on_connect);
	mosquitto_disconnect_v5_callback_set(c->mosq, on_disconnect);
	mosquitto_publish_v5_callback_set(c->mosq, on_publish);
	mosquitto_subscribe_v5_callback_set(c->mosq, on_subscribe);
	mosquitto_unsubscribe_v5_callback_set(c->mosq, on_unsubscribe);
	mosquitto_message_v5_callback_set(c->mosq, on_message);
	if (o->username != NULL &&
	    mosquitto_username_pw_set(c->mosq, o->username, o->password) != MOSQ_ERR_SUCCESS)
		goto fail;
	if (o->cafile != NULL) {
		rc = mosquitto_tls_set(c->mosq, o->cafile, NULL, o->certfile, o->keyfile, NULL);
		if (rc != MOSQ_ERR_SUCCESS) {
			fprintf(stderr, "harness: mosquitto_tls_set(%s, %s, %s): %s\n", o->cafile,
			        o->certfile ? o->certfile : "-", o->keyfile ? o->keyfile : "-",
			        mosquitto_strerror(rc));
			goto fail;
		}
		/* The server certificate names DNS:localhost (and IP:127.0.0.1). */
		host = "localhost";
	}
	rc = mosquitto_connect(c->mosq, host, o->port, o->keepalive > 0 ? o->keepalive : 60);
	if (rc != MOSQ_ERR_SUCCESS)
		goto fail;
	deadline = now_ms() + CMQ_H_CONNECT_TIMEOUT_MS;
	while (!c->connack && !c->gone && left_ms(deadline) > 0)
		pump(c, left_ms(deadline));
	if (!c->connack)
		goto fail;
	if (reason != NULL)
		*reason = c->connack_code;
	if (c->connack_code != 0) {
		client_free(c);
		return CMQ_H_REFUSED;
	}
	*out = c;
	return 0;
fail:
	client_free(c);
	return CMQ_H_ERR;
}

/* Wait for the acknowledgement of mid in ring; -1 on timeout or lost connection. */
static int wait_ack(struct cmq_h_client *c, struct cmq_h_ack *ring, int mid)
{
	long long deadline = now_ms() + CMQ_H_ACK_TIMEOUT_MS;
	int code;

	for (;;) {
		if (ack_take(ring, mid, &code))
			return code;
		if (c->gone || left_ms(deadline) == 0)
			return -1;
		pump(c, left_ms(deadline));
	}
}

int cmq_h_publish(struct cmq_h_client *c, const char *topic, const void *payload, int len, int qos,
                  bool retain, const char *const *user_props, int *reason)
{
	mosquitto_property *props = NULL;
	int mid = 0;
	int code;
	int rc;

	if (reason != NULL)
		*reason = -1;
	if (c == NULL || topic == NULL || len < 0 || qos < 0 || qos > 2 || c->gone)
		return CMQ_H_ERR;
	if (user_props != NULL) {
		int n = 0;

		if (c->protocol != 5)
			return CMQ_H_ERR;
		for (; user_props[n] != NULL && n < 2 * CMQ_H_MAX_PROPS; n += 2) {
			if (user_props[n + 1] == NULL ||
			    mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY,
			                                       user_props[n], user_props[n + 1]) !=
			        MOSQ_ERR_SUCCESS) {
				mosquitto_property_free_all(&props);
				return CMQ_H_ERR;
			}
		}
	}
	rc = mosquitto_publish_v5(c->mosq, &mid, topic, len, payload, qos, retain, props);
	mosquitto_property_free_all(&props);
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "harness: publish %s: %s\n", topic, mosquitto_strerror(rc));
		return CMQ_H_ERR;
	}
	code = wait_ack(c, c->pub_acks, mid);
	if (reason != NULL)
		*reason = code;
	if (code < 0)
		return CMQ_H_ERR;
	return code >= 0x80 ? CMQ_H_REFUSED : 0;
}

int cmq_h_subscribe(struct cmq_h_client *c, const char *filter, int qos, int *granted)
{
	int mid = 0;
	int code;

	if (granted != NULL)
		*granted = -1;
	if (c == NULL || filter == NULL || qos < 0 || qos > 2 || c->gone)
		return CMQ_H_ERR;
	if (mosquitto_subscribe_v5(c->mosq, &mid, filter, qos, 0, NULL) != MOSQ_ERR_SUCCESS)
		return CMQ_H_ERR;
	code = wait_ack(c, c->sub_acks, mid);
	if (granted != NULL)
		*granted = code;
	if (code < 0)
		return CMQ_H_ERR;
	return code >= 0x80 ? CMQ_H_REFUSED : 0;
}

int cmq_h_unsubscribe(struct cmq_h_client *c, const char *filter)
{
	int mid = 0;

	if (c == NULL || filter == NULL || c->gone)
		return CMQ_H_ERR;
	if (mosquitto_unsubscribe_v5(c->mosq, &mid, filter, NULL) != MOSQ_ERR_SUCCESS)
		return CMQ_H_ERR;
	return wait_ack(c, c->unsub_acks, mid) < 0 ? CMQ_H_ERR : 0;
}

int cmq_h_wait_message(struct cmq_h_client *c, int timeout_ms, struct cmq_h_msg *out)
{
	long long deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	bool pumped = false;

	if (out == NULL)
		return CMQ_H_ERR;
	memset(out, 0, sizeof(*out));
	if (c == NULL)
		return CMQ_H_ERR;
	for (;;) {
		if (c->q_len > 0) {
			*out = c->queue[c->q_head];
			memset(&c->queue[c->q_head], 0, sizeof(c->queue[c->q_head]));
			c->q_head = (c->q_head + 1) % CMQ_H_QUEUE_MAX;
			c->q_len--;
			return 0;
		}
		if (c->gone || (pumped && left_ms(deadline) == 0))
			return CMQ_H_ERR;
		pump(c, left_ms(deadline));
		pumped = true;
	}
}

void cmq_h_msg_clear(struct cmq_h_msg *m)
{
	if (m == NULL)
		return;
	free(m->topic);
	free(m->payload);
	for (int i = 0; i < m->nprops && i < CMQ_H_MAX_PROPS; i++) {
		free(m->prop_name[i]);
		free(m->prop_value[i]);
	}
	memset(m, 0, sizeof(*m));
}

const char *cmq_h_msg_prop(const struct cmq_h_msg *m, const char *name)
{
	if (m == NULL || name == NULL)
		return NULL;
	for (int i = 0; i < m->nprops && i < CMQ_H_MAX_PROPS; i++) {
		if (m->prop_name[i] != NULL && strcmp(m->prop_name[i], name) == 0)
			return m->prop_value[i];
	}
	return NULL;
}

bool cmq_h_wait_disconnect(struct cmq_h_client *c, int timeout_ms)
{
	long long deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);

	if (c == NULL)
		return false;
	while (!c->gone && left_ms(deadline) > 0)
		pump(c, left_ms(deadline));
	return c->gone;
}

int cmq_h_disconnect_reason(const struct cmq_h_client *c)
{
	return (c == NULL || !c->gone) ? -1 : c->disconnect_reason;
}

size_t cmq_h_dropped(const struct cmq_h_client *c)
{
	return c == NULL ? 0 : c->dropped;
}

void cmq_h_close(struct cmq_h_client *c)
{
	if (c == NULL)
		return;
	if (!c->gone && mosquitto_disconnect_v5(c->mosq, 0, NULL) == MOSQ_ERR_SUCCESS) {
		long long deadline = now_ms() + 500;

		/* on_disconnect runs once the DISCONNECT is written. */
		while (!c->gone && left_ms(deadline) > 0)
			pump(c, left_ms(deadline));
	}
	client_free(c);
}
