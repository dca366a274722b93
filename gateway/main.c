/*
 * main.c - civicmq-gateway: configuration, start-up checks, signals and the
 * main loop (reconnects, aggregate windows, metrics).
 *
 *   civicmq-gateway -c /etc/civicmq/gateway.conf
 *
 * Start-up fails (exit 1, with a message naming the file, option or JSON path)
 * if the configuration or the policy does not load: a gateway that cannot
 * enforce the policy must not run. Later reloads (SIGHUP) never stop it: a
 * broken file keeps the old one. Signals are taken synchronously by the main
 * thread (sigtimedwait), so no work happens in a signal handler.
 */
#include "gateway.h"

#include "error.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define VERSION "0.3.0"

static int read_password(struct cmq_gw *gw)
{
	char line[1024];
	struct stat st;
	FILE *f;

	if (gw->cfg.password_file == NULL)
		return 0;
	f = fopen(gw->cfg.password_file, "r");
	if (f == NULL) {
		cmq_gw_log(GW_ERROR, "password_file %s: %s", gw->cfg.password_file,
		           strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 0077) != 0)
		cmq_gw_log(GW_WARNING,
		           "password_file %s is readable by group or others (mode %03o); "
		           "chmod 600 it",
		           gw->cfg.password_file, (unsigned)(st.st_mode & 0777));
	if (fgets(line, sizeof(line), f) == NULL) {
		fclose(f);
		cmq_gw_log(GW_ERROR, "password_file %s is empty", gw->cfg.password_file);
		return -1;
	}
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	gw->password = strdup(line);
	memset(line, 0, sizeof(line));
	return gw->password != NULL ? 0 : -1;
}

static int make_state_dir(const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		cmq_gw_log(GW_ERROR, "state_dir %s: cannot create: %s", dir, strerror(errno));
		return -1;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(dir, W_OK) != 0) {
		cmq_gw_log(GW_ERROR, "state_dir %s is not a writable directory", dir);
		return -1;
	}
	return 0;
}

/* Expand %c in the metrics topic. */
static void metrics_topic(struct cmq_gw *gw)
{
	const char *t = gw->cfg.metrics_topic;
	size_t o = 0;

	for (; *t != '\0' && o + 1 < sizeof(gw->metrics_topic); t++) {
		if (t[0] == '%' && t[1] == 'c') {
			size_t n = strlen(gw->cfg.client_id);

			if (o + n >= sizeof(gw->metrics_topic))
				break;
			memcpy(gw->metrics_topic + o, gw->cfg.client_id, n);
			o += n;
			t++;
		} else {
			gw->metrics_topic[o++] = *t;
		}
	}
	gw->metrics_topic[o] = '\0';
}

static void publish_metrics(struct cmq_gw *gw, bool to_log)
{
	char buf[4096];
	int n;

	pthread_mutex_lock(&gw->lock);
	n = cmq_gw_metrics_json(&gw->metrics, gw->cfg.client_id, gw->gen.policy->stamp,
	                        cmq_agg_open_groups(gw->agg), cmq_gw_now(), buf, sizeof(buf));
	pthread_mutex_unlock(&gw->lock);
	if (n < 0)
		return;
	cmq_gw_log(to_log ? GW_NOTICE : GW_INFO, "metrics: %s", buf);
	/* Never with gw->lock held: see mqtt.c. */
	if (gw->connected)
		cmq_gw_publish(gw, gw->metrics_topic, buf, (size_t)n, 0, NULL, false);
}

/*
 * Aggregate windows that closed are published in three steps so that neither a
 * crash nor a busy client loses one, and Paho is never called under gw->lock:
 * the due groups are rendered and copied out (cmq_agg_peek: the windows stay
 * open), published (Paho persists them), and only then forgotten (cmq_agg_flush,
 * which re-renders the identical payloads and forgets those that were published).
 */
struct pending {
	char *topic;
	char *payload;
	size_t len;
	bool published;
};

struct collect {
	struct pending *items;
	size_t n, cap;
};

static int collect_emit(void *arg, const char *topic, const char *payload, size_t len)
{
	struct collect *c = arg;
	struct pending *grown;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;

		grown = realloc(c->items, cap * sizeof(*grown));
		if (grown == NULL)
			return CMQ_ERR_NOMEM;
		c->items = grown;
		c->cap = cap;
	}
	c->items[c->n].topic = strdup(topic);
	c->items[c->n].payload = malloc(len + 1);
	if (c->items[c->n].topic == NULL || c->items[c->n].payload == NULL) {
		free(c->items[c->n].topic);
		free(c->items[c->n].payload);
		return CMQ_ERR_NOMEM;
	}
	memcpy(c->items[c->n].payload, payload, len + 1);
	c->items[c->n].len = len;
	c->items[c->n].published = true;
	c->n++;
	return CMQ_OK;
}

/* Phase three forgets exactly the groups phase two handed over. */
static int published_emit(void *arg, const char *topic, const char *payload, size_t len)
{
	const struct collect *c = arg;

	for (size_t i = 0; i < c->n; i++) {
		if (c->items[i].published && c->items[i].len == len &&
		    strcmp(c->items[i].topic, topic) == 0 &&
		    memcmp(c->items[i].payload, payload, len) == 0)
			return CMQ_OK;
	}
	return CMQ_ERR_IO; /* not published yet: keep it for the next flush */
}

static void flush_aggregates(struct cmq_gw *gw, int64_t now)
{
	struct collect c = {NULL, 0, 0};
	struct cmq_agg_stats st = {0, 0}, st1 = {0, 0};

	/* Groups below k are suppressed (and forgotten) by this first pass. */
	pthread_mutex_lock(&gw->lock);
	cmq_agg_peek(gw->agg, now, collect_emit, &c, &st1);
	gw->metrics.agg_suppressed += st1.suppressed;
	pthread_mutex_unlock(&gw->lock);
	for (size_t i = 0; i < c.n; i++) {
		if (cmq_gw_publish(gw, c.items[i].topic, c.items[i].payload, c.items[i].len, 1,
		                   "aggregate", false) != 0)
			c.items[i].published = false;
	}
	pthread_mutex_lock(&gw->lock);
	if (c.n > 0) {
		cmq_agg_flush(gw->agg, now, published_emit, &c, &st);
		gw->metrics.agg_published += st.published;
	}
	pthread_mutex_unlock(&gw->lock);
	for (size_t i = 0; i < c.n; i++) {
		free(c.items[i].topic);
		free(c.items[i].payload);
	}
	free(c.items);
	if (c.n > 0 || st1.suppressed > 0)
		cmq_gw_log(GW_INFO, "aggregates: %zu groups published, %llu suppressed below k",
		           c.n, (unsigned long long)st1.suppressed);
}

static int parse_args(struct cmq_gw *gw, int argc, char **argv, bool *check)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			cmq_gw_config_help(stdout);
			exit(0);
		} else if (strcmp(a, "--version") == 0) {
			printf("civicmq-gateway %s\n", VERSION);
			exit(0);
		} else if (strcmp(a, "--example-config") == 0) {
			cmq_gw_config_example(stdout);
			exit(0);
		} else if (strcmp(a, "--check") == 0) {
			*check = true;
		} else if (strcmp(a, "-c") == 0 && i + 1 < argc) {
			if (cmq_gw_config_file(&gw->cfg, argv[++i]) != 0)
				return -1;
		} else if (strncmp(a, "--", 2) == 0) {
			const char *eq = strchr(a + 2, '=');
			char name[64];

			if (eq != NULL) {
				snprintf(name, sizeof(name), "%.*s", (int)(eq - a - 2), a + 2);
				if (cmq_gw_config_set(&gw->cfg, name, eq + 1, "command line") != 0)
					return -1;
			} else if (i + 1 < argc) {
				if (cmq_gw_config_set(&gw->cfg, a + 2, argv[++i], "command line") !=
				    0)
					return -1;
			} else {
				fprintf(stderr, "civicmq-gateway: %s needs a value\n", a);
				return -1;
			}
		} else {
			fprintf(stderr,
			        "civicmq-gateway: unexpected argument \"%s\" (see --help)\n", a);
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct cmq_gw gw;
	struct stat st;
	struct cmq_diag d;
	sigset_t sigs;
	bool check = false, stop = false;
	int64_t last_flush = 0, last_metrics;
	int rc = 1;

	setvbuf(stderr, NULL, _IOLBF, 0);
	if (cmq_gw_config_defaults(&gw.cfg) != 0 || parse_args(&gw, argc, argv, &check) != 0 ||
	    cmq_gw_config_check(&gw.cfg) != 0)
		return 1;
	cmq_gw_log_set_level(cmq_gw_log_level_parse(gw.cfg.log_level));
	pthread_mutex_init(&gw.lock, NULL);

	cmq_gw_policy_seen(&gw);
	if (cmq_gw_load_policy(&gw.cfg, &gw.gen.policy) != CMQ_OK) {
		cmq_gw_log(GW_ERROR, "start: the policy does not load; not starting");
		goto out;
	}
	if (cmq_gw_load_consent(&gw.cfg, gw.gen.policy, &gw.gen.consent, &st) != CMQ_OK) {
		cmq_gw_log(GW_ERROR, "start: the consent file does not load; not starting");
		goto out;
	}
	gw.gen.consent_st = st;
	if (cmq_gw_load_pseudo(&gw.cfg, &gw.gen.pseudo) != CMQ_OK) {
		cmq_gw_log(GW_ERROR, "start: the pseudonym key does not load; not starting");
		goto out;
	}
	if (gw.gen.pseudo == NULL)
		cmq_gw_log(GW_WARNING, "no pseudonym_key: profiles that pseudonymise drop every "
		                       "message (no_key)");
	if (check) {
		printf("civicmq-gateway: configuration ok: policy %s (%zu rules, %zu profiles), "
		       "consent %zu residents, key %s\n",
		       gw.gen.policy->stamp, gw.gen.policy->n_rules, gw.gen.policy->n_profiles,
		       cmq_consent_count(gw.gen.consent), gw.gen.pseudo ? "loaded" : "none");
		rc = 0;
		goto out;
	}
	if (make_state_dir(gw.cfg.state_dir) != 0 || read_password(&gw) != 0)
		goto out;
	{
		char journal[4096];

		snprintf(journal, sizeof(journal), "%s/aggregate.journal", gw.cfg.state_dir);
		cmq_diag_init(&d);
		if (cmq_agg_open(journal, gw.cfg.aggregate_max_groups, &d, &gw.agg) != CMQ_OK) {
			for (size_t i = 0; i < d.n; i++)
				cmq_gw_log(GW_ERROR, "%s", d.entries[i].text);
			cmq_diag_cleanup(&d);
			cmq_gw_log(GW_ERROR, "start: the aggregate journal does not load; not "
			                     "starting (move it aside to start empty)");
			goto out;
		}
		for (size_t i = 0; i < d.n; i++)
			cmq_gw_log(GW_WARNING, "%s", d.entries[i].text);
		cmq_diag_cleanup(&d);
	}
	snprintf(gw.share_filter, sizeof(gw.share_filter), "$share/%s/raw/#", gw.cfg.share_group);
	metrics_topic(&gw);
	gw.metrics.started = cmq_gw_now();

	/* Block the signals before Paho starts its threads, so only sigtimedwait sees them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (cmq_gw_mqtt_create(&gw) != 0)
		goto out;
	cmq_gw_log(GW_NOTICE,
	           "started: pid %ld, policy %s (%zu rules), consent %zu residents, pseudonym key "
	           "%s (epoch %u s), open aggregate groups %zu, state %s",
	           (long)getpid(), gw.gen.policy->stamp, gw.gen.policy->n_rules,
	           cmq_consent_count(gw.gen.consent), gw.gen.pseudo ? "loaded" : "none",
	           gw.cfg.pseudonym_epoch, cmq_agg_open_groups(gw.agg), gw.cfg.state_dir);
	last_metrics = cmq_gw_now();

	while (!stop) {
		struct timespec ts = {0, 200 * 1000 * 1000};
		int sig = sigtimedwait(&sigs, NULL, &ts);
		int64_t now = cmq_gw_now();

		if (sig == SIGHUP) {
			cmq_gw_reload(&gw);
		} else if (sig == SIGTERM || sig == SIGINT) {
			cmq_gw_log(GW_NOTICE, "stopping on signal %d", sig);
			stop = true;
		} else if (sig == SIGUSR1) {
			publish_metrics(&gw, true);
		}
		cmq_gw_mqtt_tick(&gw, now);
		cmq_gw_outbox_flush(&gw.outbox);
		if (now != last_flush) {
			flush_aggregates(&gw, now);
			cmq_gw_policy_watch(&gw);
			last_flush = now;
		}
		if (gw.cfg.metrics_interval > 0 &&
		    now - last_metrics >= (int64_t)gw.cfg.metrics_interval) {
			publish_metrics(&gw, false);
			last_metrics = now;
		}
	}
	publish_metrics(&gw, true);
	rc = 0;
out:
	cmq_gw_mqtt_destroy(&gw);
	cmq_agg_close(gw.agg);
	cmq_gw_gen_free(&gw.gen);
	if (gw.password != NULL) {
		memset(gw.password, 0, strlen(gw.password));
		free(gw.password);
	}
	cmq_gw_config_cleanup(&gw.cfg);
	return rc;
}
