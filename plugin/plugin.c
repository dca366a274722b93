/*
 * plugin.c - civicmq_plugin.so entry points: version, init, cleanup, reload.
 *
 * Load it into an unmodified Mosquitto 2.0.11 (see config/mosquitto.conf):
 *
 *     per_listener_settings false
 *     plugin /usr/local/lib/civicmq/civicmq_plugin.so
 *     plugin_opt_policy /etc/civicmq/policy.json
 *     plugin_opt_vendors /etc/civicmq/vendors.json
 *     plugin_opt_operators /etc/civicmq/operators.json
 *     plugin_opt_ca_file /etc/civicmq/ca-bundle.pem
 *
 *     listener 8883            # devices: mutual TLS
 *     cafile /etc/civicmq/ca-bundle.pem
 *     certfile /etc/civicmq/server.pem
 *     keyfile /etc/civicmq/server.key
 *     require_certificate true # use_identity_as_username / use_subject_as_username stay off:
 *                              # with them on, Mosquitto skips the plugin's authentication
 *
 * Optional: plugin_opt_consent and plugin_opt_audit_log for administration
 * through $CONTROL/civicmq/v1 (plugin_control.c).
 *
 * Init refuses to start the broker if the policy does not load (the error
 * names file, JSON path and value). SIGHUP (MOSQ_EVT_RELOAD), and a policy
 * file changing on disk (checked each second), re-read every file, swap the
 * new policy in only if it is complete and valid, then disconnect connected
 * clients the new policy refuses and republish the transparency register. A
 * broken file keeps the old policy and logs why.
 */
#include "plugin.h"

#include "acl.h"
#include "alloc.h"
#include "error.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

/* The plugin options: one table drives parsing, validation, defaults and the help that an
 * unknown option prints. config/mosquitto.conf documents the same list. */
#define OPT(field) offsetof(struct cmq_plugin, field)
static const struct cmq_option options[] = {
    {"policy", CMQ_OPT_PATH, OPT(policy_path), NULL, 0, 0,
     "policy.json: data categories, scrub profiles, topic rules, roles, limits"},
    {"vendors", CMQ_OPT_PATH, OPT(vendors_path), NULL, 0, 0, "vendors.json: the vendor trust list"},
    {"operators", CMQ_OPT_PATH, OPT(operators_path), NULL, 0, 0,
     "operators.json: operator accounts and pinned operator CAs"},
    {"ca_file", CMQ_OPT_PATH, OPT(ca_file), NULL, 0, 0,
     "PEM bundle holding every pinned vendor and operator CA (normally the device "
     "listener's cafile)"},
    {"log_denials", CMQ_OPT_BOOL, OPT(log_denials), "true", 0, 1,
     "log each refused connection, publish, subscribe or delivery with its reason"},
    {"deny_log_rate", CMQ_OPT_UINT, OPT(deny_log_rate), "50", 1, 100000,
     "at most this many refusal lines per second; the rest are counted and summarised"},
    {"consent", CMQ_OPT_PATH, OPT(consent_path), "", 0, 0,
     "consent.json, for the control API's consent commands (optional; the gateway reads "
     "the same file)"},
    {"audit_log", CMQ_OPT_PATH, OPT(audit_path), "", 0, 0,
     "hash-chained audit log of administrative changes and refused connections "
     "(optional; without it the control API makes no changes)"},
    {NULL, CMQ_OPT_PATH, 0, NULL, 0, 0, NULL},
};
#undef OPT

int cmq_plugin_rc(enum cmq_decision d, int deny_rc)
{
	return d == CMQ_ALLOW ? MOSQ_ERR_SUCCESS : deny_rc;
}

void cmq_plugin_log(int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	mosquitto_log_printf(level, "civicmq: %s", line);
}

bool cmq_plugin_log_budget(struct cmq_plugin *pl, struct cmq_log_budget *b)
{
	time_t now = time(NULL);

	if (now != b->window) {
		if (b->suppressed > 0)
			cmq_plugin_log(MOSQ_LOG_NOTICE, "%lu further refusal line(s) suppressed",
			               b->suppressed);
		b->window = now;
		b->used = 0;
		b->suppressed = 0;
	}
	if (b->used >= pl->deny_log_rate) {
		b->suppressed++;
		return false;
	}
	b->used++;
	return true;
}

static void *hook_malloc(size_t size)
{
	return mosquitto_malloc(size);
}

static void *hook_realloc(void *ptr, size_t size)
{
	return mosquitto_realloc(ptr, size);
}

static void hook_free(void *ptr)
{
	mosquitto_free(ptr);
}

static bool parse_bool(const char *v, bool *out)
{
	if (strcmp(v, "true") == 0) {
		*out = true;
		return true;
	}
	if (strcmp(v, "false") == 0) {
		*out = false;
		return true;
	}
	return false;
}

/* Apply one option value; returns false after logging what is wrong. */
static bool apply_option(struct cmq_plugin *pl, const struct cmq_option *o, const char *value)
{
	void *field = (char *)pl + o->offset;
	char *end = NULL;
	unsigned long n;

	switch (o->type) {
	case CMQ_OPT_PATH:
		if (value[0] == '\0') {
			cmq_plugin_log(MOSQ_LOG_ERR, "plugin_opt_%s: empty path; expected %s",
			               o->name, o->help);
			return false;
		}
		cmq_free(*(char **)field);
		*(char **)field = cmq_strdup(value);
		return *(char **)field != NULL;
	case CMQ_OPT_BOOL:
		if (!parse_bool(value, (bool *)field)) {
			cmq_plugin_log(MOSQ_LOG_ERR,
			               "plugin_opt_%s: \"%s\" is not a boolean; valid: true, false",
			               o->name, value);
			return false;
		}
		return true;
	case CMQ_OPT_UINT:
		n = strtoul(value, &end, 10);
		if (value[0] < '0' || value[0] > '9' || *end != '\0' || n < o->min || n > o->max) {
			cmq_plugin_log(
			    MOSQ_LOG_ERR,
			    "plugin_opt_%s: \"%s\" is not a whole number from %lu to %lu", o->name,
			    value, o->min, o->max);
			return false;
		}
		*(unsigned *)field = (unsigned)n;
		return true;
	}
	return false;
}

static bool parse_options(struct cmq_plugin *pl, struct mosquitto_opt *opts, int count)
{
	bool ok = true;

	/* Defaults first, then what mosquitto.conf says. */
	/* A path whose default is "" is optional and stays NULL unless given. */
	for (const struct cmq_option *o = options; o->name != NULL; o++) {
		if (o->default_value != NULL && o->default_value[0] != '\0')
			ok &= apply_option(pl, o, o->default_value);
	}
	for (int i = 0; i < count; i++) {
		const struct cmq_option *o;

		for (o = options; o->name != NULL; o++) {
			if (strcmp(o->name, opts[i].key) == 0)
				break;
		}
		if (o->name == NULL) {
			cmq_plugin_log(MOSQ_LOG_ERR,
			               "unknown option plugin_opt_%s; known options:", opts[i].key);
			for (o = options; o->name != NULL; o++)
				cmq_plugin_log(MOSQ_LOG_ERR, "  plugin_opt_%s: %s", o->name,
				               o->help);
			ok = false;
			continue;
		}
		ok &= apply_option(pl, o, opts[i].value ? opts[i].value : "");
	}
	for (const struct cmq_option *o = options; o->name != NULL; o++) {
		if (o->type == CMQ_OPT_PATH && o->default_value == NULL &&
		    *(char **)((char *)pl + o->offset) == NULL) {
			cmq_plugin_log(MOSQ_LOG_ERR, "plugin_opt_%s is required: %s", o->name,
			               o->help);
			ok = false;
		}
	}
	return ok;
}

struct cmq_policy *cmq_plugin_load(struct cmq_plugin *pl, const char *why)
{
	struct cmq_policy_files files = {pl->policy_path, pl->vendors_path, pl->operators_path,
	                                 pl->ca_file};
	struct cmq_policy *p = NULL;
	struct cmq_diag diag;
	struct timespec t0, t1;
	int rc;

	cmq_diag_init(&diag);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = cmq_policy_load(&files, &diag, &p);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	for (size_t i = 0; i < diag.n; i++)
		cmq_plugin_log(
		    diag.entries[i].level == CMQ_DIAG_ERROR ? MOSQ_LOG_ERR : MOSQ_LOG_WARNING,
		    "%s: %s", diag.entries[i].level == CMQ_DIAG_ERROR ? "error" : "warning",
		    diag.entries[i].text);
	if (diag.errors + diag.warnings > diag.n)
		cmq_plugin_log(MOSQ_LOG_ERR, "... and %zu more problem(s) not shown",
		               diag.errors + diag.warnings - diag.n);
	cmq_diag_cleanup(&diag);
	if (rc != CMQ_OK) {
		cmq_plugin_log(MOSQ_LOG_ERR, "%s: policy not loaded (%s)", why, cmq_strerror(rc));
		return NULL;
	}
	cmq_plugin_log(MOSQ_LOG_NOTICE,
	               "%s: policy %s loaded in %.1f ms: %zu topic rules, %zu vendors, %zu "
	               "operators, %zu roles, %zu pinned CAs",
	               why, p->stamp,
	               (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
	                   (double)(t1.tv_nsec - t0.tv_nsec) / 1e6,
	               p->n_rules, p->n_vendors, p->n_operators, p->n_roles, p->n_cas);
	return p;
}

struct kick_list {
	char **ids;
	size_t n, cap;
};

static void collect_kick(const struct cmq_session *e, enum cmq_reason why, void *ud)
{
	struct kick_list *k = ud;
	char **grown;

	cmq_plugin_log(MOSQ_LOG_NOTICE, "disconnecting \"%s\" (%s): %s: %s", e->client_id,
	               e->username, cmq_reason_name(why), cmq_reason_text(why));
	if (k->n == k->cap) {
		size_t ncap = k->cap ? k->cap * 2 : 16;

		grown = cmq_reallocarray(k->ids, ncap, sizeof(*grown));
		if (grown == NULL)
			return; /* its next message is denied anyway (decisions read the policy) */
		k->ids = grown;
		k->cap = ncap;
	}
	k->ids[k->n] = cmq_strdup(e->client_id);
	if (k->ids[k->n] != NULL)
		k->n++;
}

void cmq_plugin_enforce(struct cmq_plugin *pl)
{
	struct kick_list k = {0};

	/* Collect first: kicking fires DISCONNECT, which edits the session table. */
	cmq_sessions_revalidate(&pl->sessions, pl->policy, collect_kick, &k);
	for (size_t i = 0; i < k.n; i++) {
		mosquitto_kick_client_by_clientid(k.ids[i], false);
		cmq_free(k.ids[i]);
	}
	cmq_free(k.ids);
}

/*
 * Right after MOSQ_EVT_RELOAD, Mosquitto 2.0.11 re-authenticates every client it knows
 * (mosquitto_security_apply_default), offline persistent sessions included, before it
 * handles any new connection; the next thing its loop does is the tick. So from a reload
 * to the next tick, BASIC_AUTH is a re-check (plugin_auth.c). Without ticks (they are not
 * delivered with per_listener_settings true) re-checks are not told apart: they are
 * judged as connections, which keeps every check but drops offline device sessions.
 */
static void begin_recheck(struct cmq_plugin *pl)
{
	pl->rechecking = pl->ticks_seen;
}

static int on_reload(int event, void *event_data, void *userdata)
{
	struct cmq_plugin *pl = userdata;
	struct cmq_policy *p;

	(void)event;
	(void)event_data;
	begin_recheck(pl);
	cmq_plugin_remember_files(pl); /* before reading: a later change is seen by the tick */
	p = cmq_plugin_load(pl, "reload");
	if (p == NULL) {
		cmq_plugin_log(MOSQ_LOG_ERR, "reload failed; still enforcing policy %s",
		               pl->policy->stamp);
		return MOSQ_ERR_SUCCESS;
	}
	cmq_plugin_swap(pl, p);
	return MOSQ_ERR_SUCCESS;
}

int cmq_plugin_on_tick(int event, void *event_data, void *userdata)
{
	struct cmq_plugin *pl = userdata;

	(void)event;
	(void)event_data;
	pl->ticks_seen = true;
	pl->rechecking = false;
	cmq_plugin_watch_files(pl);
	return MOSQ_ERR_SUCCESS;
}

static void plugin_free(struct cmq_plugin *pl)
{
	if (pl == NULL)
		return;
	cmq_plugin_control_cleanup(pl);
	cmq_policy_free(pl->policy);
	cmq_sessions_cleanup(&pl->sessions);
	cmq_pcache_cleanup(&pl->who);
	cmq_free(pl->policy_path);
	cmq_free(pl->vendors_path);
	cmq_free(pl->operators_path);
	cmq_free(pl->ca_file);
	cmq_free(pl->consent_path);
	cmq_free(pl->audit_path);
	cmq_free(pl);
}

static const struct {
	int event;
	MOSQ_FUNC_generic_callback fn;
} callbacks[] = {
    {MOSQ_EVT_BASIC_AUTH, cmq_plugin_on_basic_auth},
    {MOSQ_EVT_ACL_CHECK, cmq_plugin_on_acl_check},
    {MOSQ_EVT_MESSAGE, cmq_plugin_on_message},
    {MOSQ_EVT_DISCONNECT, cmq_plugin_on_disconnect},
    {MOSQ_EVT_RELOAD, on_reload},
    {MOSQ_EVT_TICK, cmq_plugin_on_tick},
};

EXPORT int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for (int i = 0; i < supported_version_count; i++) {
		if (supported_versions[i] == 5)
			return 5;
	}
	return -1;
}

EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                                 struct mosquitto_opt *opts, int opt_count)
{
	static const struct cmq_allocator broker_alloc = {hook_malloc, hook_realloc, hook_free};
	struct cmq_plugin *pl;
	size_t n = sizeof(callbacks) / sizeof(callbacks[0]), done = 0;

	cmq_set_allocator(&broker_alloc);
	pl = cmq_calloc(1, sizeof(*pl));
	if (pl == NULL)
		return MOSQ_ERR_NOMEM;
	pl->id = identifier;
	cmq_sessions_init(&pl->sessions);
	/* Without its table the cache resolves every time: slower, never wrong. */
	if (cmq_pcache_init(&pl->who) != CMQ_OK)
		cmq_plugin_log(MOSQ_LOG_WARNING, "no memory for the principal cache; continuing");
	if (!parse_options(pl, opts, opt_count)) {
		plugin_free(pl);
		return MOSQ_ERR_INVAL;
	}
	cmq_plugin_remember_files(pl);
	pl->policy = cmq_plugin_load(pl, "start");
	if (pl->policy == NULL || cmq_plugin_control_init(pl) != 0) {
		plugin_free(pl);
		return MOSQ_ERR_INVAL;
	}
	for (done = 0; done < n; done++) {
		if (mosquitto_callback_register(identifier, callbacks[done].event,
		                                callbacks[done].fn, NULL, pl) != MOSQ_ERR_SUCCESS)
			break;
	}
	if (done == n &&
	    mosquitto_callback_register(identifier, MOSQ_EVT_CONTROL, cmq_plugin_on_control,
	                                CMQ_CONTROL_TOPIC, pl) != MOSQ_ERR_SUCCESS) {
		cmq_plugin_log(MOSQ_LOG_ERR, "could not register the control API %s",
		               CMQ_CONTROL_TOPIC);
		while (done-- > 0)
			mosquitto_callback_unregister(identifier, callbacks[done].event,
			                              callbacks[done].fn, NULL);
		plugin_free(pl);
		return MOSQ_ERR_UNKNOWN;
	}
	if (done != n) {
		cmq_plugin_log(MOSQ_LOG_ERR, "could not register broker callbacks");
		while (done-- > 0)
			mosquitto_callback_unregister(identifier, callbacks[done].event,
			                              callbacks[done].fn, NULL);
		plugin_free(pl);
		return MOSQ_ERR_UNKNOWN;
	}
	*userdata = pl;
	cmq_plugin_publish_register(pl);
	return MOSQ_ERR_SUCCESS;
}

EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
	struct cmq_plugin *pl = userdata;

	(void)opts;
	(void)opt_count;
	if (pl != NULL) {
		for (size_t i = 0; i < sizeof(callbacks) / sizeof(callbacks[0]); i++)
			mosquitto_callback_unregister(pl->id, callbacks[i].event, callbacks[i].fn,
			                              NULL);
		mosquitto_callback_unregister(pl->id, MOSQ_EVT_CONTROL, cmq_plugin_on_control,
		                              CMQ_CONTROL_TOPIC);
	}
	plugin_free(pl);
	return MOSQ_ERR_SUCCESS;
}
