/*
 * gateway_env.c - civicmq-gateway processes and collecting subscribers for the
 * integration tests (API and ownership in gateway_env.h).
 *
 * The gateway is started like the broker: fork/exec through harness.h, so it is in the
 * harness's PID registry and dies with the test. Its log is the only channel it has to
 * the test besides MQTT, so start-up, reload verdicts and metrics are all read from it.
 */
#include "gateway_env.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TEST_KEY    "5ca1ab1e0ddba11c0ffee0123456789abcdef0123456789abcdef0123456789a"
#define POLL_MS     20
#define LOG_MAX     (64u * 1024u * 1024u)
#define READ_MAX    (16u * 1024u * 1024u)
#define SINK_GROWTH 1024

/* ---- small helpers ---- */

long long cmq_gwe_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cmq_gwe_sleep_ms(int ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

long long cmq_gwe_align(unsigned period, unsigned phase)
{
	long long deadline = cmq_gwe_now_ms() + 2000LL * (period > 0 ? period : 1) + 1000;
	time_t start = time(NULL);

	if (period == 0)
		return (long long)start;
	/* Wait for a second to begin whose number has the wanted phase. */
	for (;;) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		if (ts.tv_sec != start && (unsigned long long)ts.tv_sec % period == phase)
			return (long long)ts.tv_sec;
		if (cmq_gwe_now_ms() > deadline)
			return (long long)ts.tv_sec;
		/* Sleep to just after the next second starts. */
		cmq_gwe_sleep_ms((int)((1000000000L - ts.tv_nsec) / 1000000L) + 2);
	}
}

char *cmq_gwe_read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;

	if (f == NULL)
		return NULL;
	for (;;) {
		size_t got;

		if (n + 4096 + 1 > cap) {
			char *grown;

			cap = cap ? cap * 2 : 8192;
			if (cap > READ_MAX) {
				free(buf);
				fclose(f);
				return NULL;
			}
			grown = realloc(buf, cap);
			if (grown == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = grown;
		}
		got = fread(buf + n, 1, 4096, f);
		n += got;
		if (got < 4096)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	return buf;
}

int cmq_gwe_write_file(const char *path, const char *text, int mode)
{
	char tmp[CMQ_H_PATH_MAX + 64];
	size_t len = strlen(text), off = 0;
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return -1;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0) {
		fprintf(stderr, "gateway_env: %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			close(fd);
			unlink(tmp);
			return -1;
		}
		off += (size_t)w;
	}
	if (fchmod(fd, (mode_t)mode) != 0 || fsync(fd) != 0 || close(fd) != 0) {
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, path) != 0) {
		fprintf(stderr, "gateway_env: rename %s: %s\n", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);

	return (v != NULL && *v != '\0') ? v : def;
}

/* ---- the gateway process ---- */

static void free_argv(struct cmq_gwe *g)
{
	for (int i = 0; i < g->argc; i++) {
		free(g->argv_store[i]);
		g->argv_store[i] = NULL;
	}
	g->argc = 0;
}

static int push_arg(struct cmq_gwe *g, const char *a)
{
	if (g->argc + 1 >= (int)(sizeof(g->argv_store) / sizeof(g->argv_store[0])))
		return -1;
	g->argv_store[g->argc] = strdup(a);
	if (g->argv_store[g->argc] == NULL)
		return -1;
	g->argc++;
	g->argv_store[g->argc] = NULL;
	return 0;
}

static int push_opt(struct cmq_gwe *g, const char *name, const char *value)
{
	char flag[96];

	snprintf(flag, sizeof(flag), "--%s", name);
	return push_arg(g, flag) == 0 && push_arg(g, value) == 0 ? 0 : -1;
}

static int write_files(struct cmq_env *e, const struct cmq_gwe_opts *o, struct cmq_gwe *g)
{
	char *policy = NULL;
	char key[80];
	int rc = -1;

	if (o->policy_text == NULL) {
		policy = cmq_gwe_read_file(e->policy);
		if (policy == NULL) {
			fprintf(stderr, "gateway_env: cannot read %s\n", e->policy);
			return -1;
		}
	}
	snprintf(key, sizeof(key), "%s\n", o->key_hex ? o->key_hex : TEST_KEY);
	if (cmq_gwe_write_file(g->policy, o->policy_text ? o->policy_text : policy, 0600) != 0 ||
	    cmq_gwe_write_file(g->consent,
	                       o->consent_text ? o->consent_text
	                                       : "{\"version\": 1, \"residents\": []}\n",
	                       0600) != 0 ||
	    cmq_gwe_write_file(g->key, key, 0600) != 0 ||
	    cmq_gwe_write_file(g->password_file, "gateway-secret\n", 0600) != 0)
		goto out;
	rc = 0;
out:
	free(policy);
	return rc;
}

/* Wait for the subscription line after mark, watching that the process lives. */
static int wait_subscribed(struct cmq_gwe *g, size_t mark)
{
	char needle[160];
	long long deadline = cmq_gwe_now_ms() + CMQ_GWE_START_TIMEOUT_MS;

	snprintf(needle, sizeof(needle), "subscribed $share/%s/raw/# (QoS 1)", g->share_group);
	for (;;) {
		if (cmq_h_file_contains(g->log_path, mark, needle))
			return 0;
		if (!cmq_gwe_alive(g)) {
			fprintf(stderr, "gateway_env: %s exited before subscribing\n",
			        g->client_id);
			return -1;
		}
		if (cmq_gwe_now_ms() > deadline)
			break;
		cmq_gwe_sleep_ms(POLL_MS);
	}
	fprintf(stderr, "gateway_env: %s did not subscribe within %d ms\n", g->client_id,
	        CMQ_GWE_START_TIMEOUT_MS);
	cmq_h_file_print(g->log_path, mark);
	cmq_gwe_kill(g);
	return -1;
}

static int spawn(struct cmq_gwe *g)
{
	size_t mark = cmq_h_file_mark(g->log_path);

	g->exit_status = -1;
	g->pid = cmq_h_spawn((const char *const *)g->argv_store, g->log_path);
	if (g->pid < 0) {
		g->pid = 0;
		return -1;
	}
	return wait_subscribed(g, mark);
}

int cmq_gwe_start(struct cmq_env *e, const struct cmq_gwe_opts *o, struct cmq_gwe *g)
{
	static const struct cmq_gwe_opts none;
	char build[CMQ_H_PATH_MAX], exe[CMQ_H_PATH_MAX + 32], broker[64], epoch[16];

	memset(g, 0, sizeof(*g));
	g->exit_status = -1;
	if (o == NULL)
		o = &none;
	snprintf(g->client_id, sizeof(g->client_id), "%s",
	         o->client_id ? o->client_id : "gateway-1");
	snprintf(g->share_group, sizeof(g->share_group), "%s",
	         o->share_group ? o->share_group : "civicmq");
	if (cmq_h_tmpdir("cmq-gw", g->dir, sizeof(g->dir)) != 0)
		return -1;
	snprintf(g->log_path, sizeof(g->log_path), "%s/gateway.log", g->dir);
	snprintf(g->policy, sizeof(g->policy), "%s/policy.json", g->dir);
	if (o->consent_path != NULL)
		snprintf(g->consent, sizeof(g->consent), "%s", o->consent_path);
	else
		snprintf(g->consent, sizeof(g->consent), "%s/consent.json", g->dir);
	snprintf(g->key, sizeof(g->key), "%s/pseudonym.key", g->dir);
	snprintf(g->password_file, sizeof(g->password_file), "%s/password", g->dir);
	if (o->state_dir != NULL)
		snprintf(g->state_dir, sizeof(g->state_dir), "%s", o->state_dir);
	else
		snprintf(g->state_dir, sizeof(g->state_dir), "%s/state", g->dir);
	if (write_files(e, o, g) != 0)
		return -1;
	if (realpath(env_or("CMQ_BUILD", "build"), build) == NULL) {
		fprintf(stderr, "gateway_env: CMQ_BUILD: %s\n", strerror(errno));
		return -1;
	}
	snprintf(exe, sizeof(exe), "%s/civicmq-gateway", build);
	if (access(exe, X_OK) != 0) {
		fprintf(stderr, "gateway_env: %s is not executable (make it first)\n", exe);
		return -1;
	}
	snprintf(broker, sizeof(broker), "ssl://127.0.0.1:%d", e->broker.port[1]);
	snprintf(epoch, sizeof(epoch), "%u", o->pseudonym_epoch ? o->pseudonym_epoch : 86400u);
	/* CMQ_GATEWAY_WRAPPER (e.g. "valgrind --leak-check=full --log-file=/tmp/gw.%p.vg")
	 * runs the gateway under a tool: its words go first. */
	if (getenv("CMQ_GATEWAY_WRAPPER") != NULL) {
		char words[1024], *save = NULL;

		snprintf(words, sizeof(words), "%s", getenv("CMQ_GATEWAY_WRAPPER"));
		for (char *w = strtok_r(words, " \t\n", &save); w != NULL;
		     w = strtok_r(NULL, " \t\n", &save))
			if (push_arg(g, w) != 0)
				goto fail;
	}
	if (push_arg(g, exe) != 0 || push_opt(g, "broker", broker) != 0 ||
	    push_opt(g, "cafile", e->cafile) != 0 || push_opt(g, "username", "gateway") != 0 ||
	    push_opt(g, "password_file", g->password_file) != 0 ||
	    push_opt(g, "client_id", g->client_id) != 0 ||
	    push_opt(g, "share_group", g->share_group) != 0 ||
	    push_opt(g, "policy", g->policy) != 0 || push_opt(g, "vendors", e->vendors) != 0 ||
	    push_opt(g, "consent", g->consent) != 0 || push_opt(g, "pseudonym_key", g->key) != 0 ||
	    push_opt(g, "pseudonym_epoch", epoch) != 0 ||
	    push_opt(g, "state_dir", g->state_dir) != 0 ||
	    push_opt(g, "metrics_interval", "1") != 0 || push_opt(g, "log_level", "info") != 0)
		goto fail;
	for (int i = 0; i < 2 * CMQ_GWE_MAX_EXTRA && o->extra[i] != NULL; i += 2) {
		if (o->extra[i + 1] == NULL || push_opt(g, o->extra[i], o->extra[i + 1]) != 0)
			goto fail;
	}
	if (spawn(g) == 0)
		return 0;
fail:
	free_argv(g);
	return -1;
}

int cmq_gwe_restart(struct cmq_gwe *g)
{
	if (g->pid != 0 || g->argc == 0)
		return -1;
	return spawn(g);
}

bool cmq_gwe_alive(struct cmq_gwe *g)
{
	int status;

	if (g->pid <= 0)
		return false;
	if (cmq_h_proc_alive(g->pid, &status))
		return true;
	fprintf(stderr, "gateway_env: %s (pid %ld) died, status %d\n", g->client_id, (long)g->pid,
	        status);
	cmq_h_file_print(g->log_path, 0);
	g->exit_status = status;
	g->pid = 0;
	return false;
}

int cmq_gwe_stop(struct cmq_gwe *g)
{
	int status = -1, killed;

	if (g->pid <= 0)
		return -1;
	killed = cmq_h_proc_stop(g->pid, SIGTERM, CMQ_GWE_STOP_TIMEOUT_MS, &status);
	g->pid = 0;
	g->exit_status = status;
	if (killed == 0 && status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	fprintf(stderr, "gateway_env: %s %s (status %d)\n", g->client_id,
	        killed ? "ignored SIGTERM and was killed" : "did not exit cleanly", status);
	cmq_h_file_print(g->log_path, 0);
	return 1;
}

int cmq_gwe_kill(struct cmq_gwe *g)
{
	int status = -1;

	if (g->pid <= 0)
		return -1;
	cmq_h_proc_stop(g->pid, SIGKILL, 2000, &status);
	g->pid = 0;
	g->exit_status = status;
	return 0;
}

void cmq_gwe_cleanup(struct cmq_gwe *g)
{
	if (g->pid > 0)
		cmq_gwe_stop(g);
	free_argv(g);
}

int cmq_gwe_signal(struct cmq_gwe *g, int sig)
{
	if (g->pid <= 0)
		return -1;
	return kill(g->pid, sig) == 0 ? 0 : -1;
}

size_t cmq_gwe_log_mark(const struct cmq_gwe *g)
{
	return cmq_h_file_mark(g->log_path);
}

bool cmq_gwe_log_contains(const struct cmq_gwe *g, size_t mark, const char *needle)
{
	return cmq_h_file_contains(g->log_path, mark, needle);
}

bool cmq_gwe_log_wait(const struct cmq_gwe *g, size_t mark, const char *needle, int timeout_ms)
{
	return cmq_h_file_wait(g->log_path, mark, needle, timeout_ms);
}

size_t cmq_gwe_log_count(const struct cmq_gwe *g, size_t mark, const char *needle)
{
	size_t len, n = 0, nlen = strlen(needle);
	char *text = cmq_h_file_read(g->log_path, mark, &len);

	for (const char *p = text; p != NULL && nlen > 0 && (p = strstr(p, needle)) != NULL;
	     p += nlen)
		n++;
	free(text);
	return n;
}

void cmq_gwe_log_print(const struct cmq_gwe *g, size_t mark)
{
	cmq_h_file_print(g->log_path, mark);
}

/* The last line after mark containing needle, copied into out; false if none. */
static bool last_line_with(const struct cmq_gwe *g, size_t mark, const char *needle, char *out,
                           size_t n)
{
	size_t len;
	char *text = cmq_h_file_read(g->log_path, mark, &len);
	const char *hit = NULL;
	bool found = false;

	for (const char *p = text; p != NULL && (p = strstr(p, needle)) != NULL; p++)
		hit = p;
	if (hit != NULL) {
		const char *start = hit, *end = strchr(hit, '\n');

		while (start > text && start[-1] != '\n')
			start--;
		/* Only whole lines: a line still being written has no newline yet. */
		if (end != NULL) {
			snprintf(out, n, "%.*s", (int)(end - start), start);
			found = true;
		}
	}
	free(text);
	return found;
}

int cmq_gwe_reload(struct cmq_gwe *g, char *line, size_t n)
{
	char buf[2048];
	size_t mark = cmq_gwe_log_mark(g);
	long long deadline = cmq_gwe_now_ms() + 10000;

	if (line != NULL && n > 0)
		line[0] = '\0';
	if (cmq_gwe_signal(g, SIGHUP) != 0)
		return -1;
	while (cmq_gwe_now_ms() < deadline) {
		if (last_line_with(g, mark, "reload: policy ", buf, sizeof(buf))) {
			if (line != NULL && n > 0)
				snprintf(line, n, "%s", buf);
			return strstr(buf, "reload: policy loaded") != NULL ? 1 : 0;
		}
		cmq_gwe_sleep_ms(POLL_MS);
	}
	fprintf(stderr, "gateway_env: %s: no reload verdict\n", g->client_id);
	cmq_gwe_log_print(g, mark);
	return -1;
}

int cmq_gwe_write_policy(struct cmq_gwe *g, const char *text)
{
	return cmq_gwe_write_file(g->policy, text, 0600);
}

int cmq_gwe_write_consent(struct cmq_gwe *g, const char *text)
{
	return cmq_gwe_write_file(g->consent, text, 0600);
}

/* ---- metrics ---- */

static long long get_ll(struct json_object *o, const char *key, bool *ok)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_int)) {
		*ok = false;
		return 0;
	}
	return (long long)json_object_get_int64(v);
}

int cmq_gwe_metrics_parse(const char *json, size_t len, struct cmq_gwe_metrics *m)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *root = NULL, *v, *by, *agg, *lat;
	bool ok = true;

	memset(m, 0, sizeof(*m));
	if (tok == NULL)
		return -1;
	root = json_tokener_parse_ex(tok, json, (int)len);
	json_tokener_free(tok);
	if (root == NULL || !json_object_is_type(root, json_type_object)) {
		json_object_put(root);
		return -1;
	}
	if (json_object_object_get_ex(root, "gateway", &v))
		snprintf(m->gateway, sizeof(m->gateway), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(root, "policy", &v))
		snprintf(m->policy, sizeof(m->policy), "%s", json_object_get_string(v));
	m->received = get_ll(root, "received", &ok);
	m->forwarded = get_ll(root, "forwarded", &ok);
	m->absorbed = get_ll(root, "absorbed", &ok);
	m->dropped = get_ll(root, "dropped", &ok);
	m->retried = get_ll(root, "retried", &ok);
	if (json_object_object_get_ex(root, "dropped_by_reason", &by) &&
	    json_object_is_type(by, json_type_object)) {
		json_object_object_foreach(by, key, val)
		{
			int r;

			for (r = 1; r < CMQ_DROP__COUNT; r++) {
				if (strcmp(cmq_drop_name((enum cmq_drop)r), key) == 0)
					break;
			}
			if (r < CMQ_DROP__COUNT)
				m->by_reason[r] = (long long)json_object_get_int64(val);
			else
				m->unknown_reasons += (long long)json_object_get_int64(val);
		}
	} else {
		ok = false;
	}
	if (json_object_object_get_ex(root, "aggregates", &agg)) {
		m->agg_published = get_ll(agg, "published", &ok);
		m->agg_suppressed = get_ll(agg, "suppressed", &ok);
		m->agg_open_groups = get_ll(agg, "open_groups", &ok);
	} else {
		ok = false;
	}
	if (json_object_object_get_ex(root, "latency_us", &lat)) {
		m->p50_us = get_ll(lat, "p50", &ok);
		m->p99_us = get_ll(lat, "p99", &ok);
		m->max_us = get_ll(lat, "max", &ok);
	} else {
		ok = false;
	}
	json_object_put(root);
	return ok ? 0 : -1;
}

int cmq_gwe_metrics(struct cmq_gwe *g, struct cmq_gwe_metrics *m)
{
	char line[8192];
	size_t mark = cmq_gwe_log_mark(g);
	long long deadline = cmq_gwe_now_ms() + CMQ_GWE_METRICS_TIMEOUT_MS;

	memset(m, 0, sizeof(*m));
	if (cmq_gwe_signal(g, SIGUSR1) != 0)
		return -1;
	while (cmq_gwe_now_ms() < deadline) {
		if (last_line_with(g, mark, "metrics: {", line, sizeof(line))) {
			const char *json = strstr(line, "metrics: {") + strlen("metrics: ");

			if (cmq_gwe_metrics_parse(json, strlen(json), m) == 0)
				return 0;
			fprintf(stderr, "gateway_env: unparsable metrics line: %s\n", line);
			return -1;
		}
		cmq_gwe_sleep_ms(POLL_MS);
	}
	fprintf(stderr, "gateway_env: %s logged no metrics after SIGUSR1\n", g->client_id);
	return -1;
}

int cmq_gwe_wait_received(struct cmq_gwe *g, long long n, int timeout_ms, struct cmq_gwe_metrics *m)
{
	long long deadline = cmq_gwe_now_ms() + timeout_ms;

	for (;;) {
		if (cmq_gwe_metrics(g, m) == 0 && m->received >= n)
			return 0;
		if (cmq_gwe_now_ms() > deadline)
			return -1;
		cmq_gwe_sleep_ms(100);
	}
}

void cmq_gwe_metrics_print(const char *label, const struct cmq_gwe_metrics *m)
{
	fprintf(stderr,
	        "%s: gateway %s policy %s received %lld forwarded %lld absorbed %lld dropped %lld "
	        "retried %lld aggregates published %lld suppressed %lld open %lld latency p50 "
	        "%lld p99 %lld max %lld us\n",
	        label, m->gateway, m->policy, m->received, m->forwarded, m->absorbed, m->dropped,
	        m->retried, m->agg_published, m->agg_suppressed, m->agg_open_groups, m->p50_us,
	        m->p99_us, m->max_us);
	for (int r = 1; r < CMQ_DROP__COUNT; r++) {
		if (m->by_reason[r] != 0)
			fprintf(stderr, "  dropped %s: %lld\n", cmq_drop_name((enum cmq_drop)r),
			        m->by_reason[r]);
	}
}

/* ---- subscribers ---- */

int cmq_gwe_sink_open(struct cmq_env *e, const char *username, const char *client_id,
                      const char *filter, struct cmq_gwe_sink *s)
{
	char pw[96];
	int reason = -1;

	memset(s, 0, sizeof(*s));
	snprintf(pw, sizeof(pw), "%s-secret", username);
	if (cmq_env_connect_password(e, username, pw, client_id, &s->c, &reason) != 0) {
		fprintf(stderr, "gateway_env: %s cannot connect (reason %d)\n", username, reason);
		return -1;
	}
	if (filter != NULL && cmq_gwe_sink_subscribe(s, filter) != 0) {
		cmq_gwe_sink_close(s);
		return -1;
	}
	return 0;
}

int cmq_gwe_sink_subscribe(struct cmq_gwe_sink *s, const char *filter)
{
	int granted = -1;

	if (cmq_h_subscribe(s->c, filter, 1, &granted) != 0) {
		fprintf(stderr, "gateway_env: subscribe %s refused (%d)\n", filter, granted);
		return -1;
	}
	return 0;
}

static int sink_push(struct cmq_gwe_sink *s, struct cmq_h_msg *m)
{
	if (s->n == s->cap) {
		size_t cap = s->cap + SINK_GROWTH;
		struct cmq_h_msg *grown = realloc(s->msgs, cap * sizeof(*grown));

		if (grown == NULL)
			return -1;
		s->msgs = grown;
		s->cap = cap;
	}
	s->msgs[s->n++] = *m;
	memset(m, 0, sizeof(*m));
	return 0;
}

size_t cmq_gwe_sink_pump(struct cmq_gwe_sink *s, int timeout_ms)
{
	long long deadline = cmq_gwe_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	size_t added = 0;
	struct cmq_h_msg m;

	if (s == NULL || s->c == NULL)
		return 0;
	for (;;) {
		long long left = deadline - cmq_gwe_now_ms();

		if (cmq_h_wait_message(s->c, left > 0 ? (int)left : 0, &m) != 0)
			break;
		if (sink_push(s, &m) != 0) {
			cmq_h_msg_clear(&m);
			break;
		}
		added++;
		/* Once something came, take the rest without waiting. */
		deadline = cmq_gwe_now_ms();
	}
	return added;
}

static bool has_prefix(const char *s, const char *prefix)
{
	return prefix == NULL || strncmp(s, prefix, strlen(prefix)) == 0;
}

size_t cmq_gwe_sink_count(const struct cmq_gwe_sink *s, const char *prefix, size_t from)
{
	size_t n = 0;

	for (size_t i = from; i < s->n; i++) {
		if (has_prefix(s->msgs[i].topic, prefix))
			n++;
	}
	return n;
}

bool cmq_gwe_sink_wait(struct cmq_gwe_sink *s, const char *prefix, size_t from, size_t n,
                       int timeout_ms)
{
	long long deadline = cmq_gwe_now_ms() + timeout_ms;

	for (;;) {
		long long left;

		if (cmq_gwe_sink_count(s, prefix, from) >= n)
			return true;
		left = deadline - cmq_gwe_now_ms();
		if (left <= 0)
			return false;
		cmq_gwe_sink_pump(s, left > 100 ? 100 : (int)left);
	}
}

const struct cmq_h_msg *cmq_gwe_sink_find(const struct cmq_gwe_sink *s, const char *prefix,
                                          size_t from)
{
	for (size_t i = from; i < s->n; i++) {
		if (has_prefix(s->msgs[i].topic, prefix))
			return &s->msgs[i];
	}
	return NULL;
}

void cmq_gwe_sink_clear(struct cmq_gwe_sink *s)
{
	for (size_t i = 0; i < s->n; i++)
		cmq_h_msg_clear(&s->msgs[i]);
	s->n = 0;
}

void cmq_gwe_sink_close(struct cmq_gwe_sink *s)
{
	if (s == NULL)
		return;
	cmq_gwe_sink_clear(s);
	free(s->msgs);
	cmq_h_close(s->c);
	memset(s, 0, sizeof(*s));
}

int cmq_gwe_forget_session(struct cmq_env *e, const char *username, const char *client_id)
{
	struct cmq_h_client *c = NULL;
	char pw[96];
	int reason = -1;

	snprintf(pw, sizeof(pw), "%s-secret", username);
	/* Clean start without a session expiry: the broker drops the old session now and
	 * this one at disconnect. */
	if (cmq_env_connect_password(e, username, pw, client_id, &c, &reason) != 0)
		return -1;
	cmq_h_close(c);
	return 0;
}
