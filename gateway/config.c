/*
 * config.c - civicmq-gateway's options: one table gives each option's name,
 * type, default, range and meaning, and drives the config-file parser, the
 * command line (--name value), --help and --example-config (which wrote
 * config/gateway.conf; `make lint` checks the two agree).
 *
 * Config file: one "name value" per line; '#' starts a comment line; the value
 * is the rest of the line with surrounding blanks removed. An unknown name, a
 * repeated name or a bad value is an error naming file, line, option, value
 * and what is valid.
 */
#include "gateway.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum opt_type { OPT_STR, OPT_UINT };

struct gw_option {
	const char *name;
	enum opt_type type;
	size_t offset;
	const char *def; /* NULL: no default (required or optional, see `required`) */
	uint32_t min, max;
	bool required;
	const char *help;
};

#define STR(f)  OPT_STR, offsetof(struct cmq_gw_config, f)
#define UINT(f) OPT_UINT, offsetof(struct cmq_gw_config, f)

static const struct gw_option options[] = {
    {"broker", STR(broker), NULL, 0, 0, true,
     "broker URI: ssl://host:port (TLS, verified against cafile) or tcp://host:port"},
    {"client_id", STR(client_id), "gateway", 0, 0, false,
     "MQTT client id; the username, or <username>-<suffix> for several gateways"},
    {"username", STR(username), "gateway", 0, 0, false,
     "operator account with the gateway role (operators.json)"},
    {"password_file", STR(password_file), NULL, 0, 0, false,
     "file whose first line is the account's password (mode 0600); or use certfile/keyfile"},
    {"cafile", STR(cafile), NULL, 0, 0, false, "CA bundle that signed the broker's certificate"},
    {"certfile", STR(certfile), NULL, 0, 0, false,
     "client certificate from the operator CA (instead of a password)"},
    {"keyfile", STR(keyfile), NULL, 0, 0, false, "private key of certfile"},
    {"share_group", STR(share_group), "civicmq", 0, 0, false,
     "shared-subscription group: gateways in one group split $share/<group>/raw/#"},
    {"policy", STR(policy), "/etc/civicmq/policy.json", 0, 0, false,
     "policy.json (the same file the broker plugin enforces)"},
    {"vendors", STR(vendors), "/etc/civicmq/vendors.json", 0, 0, false,
     "vendors.json (provenance is checked against it again)"},
    {"consent", STR(consent), NULL, 0, 0, false,
     "consent.json; without it no resident-linked message is forwarded"},
    {"pseudonym_key", STR(pseudonym_key), NULL, 0, 0, false,
     "file with the 256-bit pseudonym key as 64 hex digits (mode 0600); without it "
     "pseudonymising profiles drop everything"},
    {"pseudonym_epoch", UINT(pseudonym_epoch), "86400", 1, 31622400, false,
     "seconds per pseudonym epoch: pseudonyms are stable within one, unlinkable across"},
    {"state_dir", STR(state_dir), "/var/lib/civicmq-gateway", 0, 0, false,
     "directory for the client's persistent outbox and the aggregate journal"},
    {"state_sync", UINT(state_sync), "0", 0, 1, false,
     "1: flush the outbox to disk (fdatasync) before acknowledging each message, so not even "
     "a power cut loses one; 0: written to the kernel first (survives the gateway crashing "
     "or being killed, not a power cut), much cheaper"},
    {"metrics_topic", STR(metrics_topic), "city/gateway/metrics/%c", 0, 0, false,
     "topic for the periodic metrics JSON (%c = client id); must start with city/"},
    {"metrics_interval", UINT(metrics_interval), "10", 0, 86400, false,
     "seconds between metrics publications (0 = never)"},
    {"max_depth", UINT(max_depth), "16", 1, 32, false, "deepest JSON nesting accepted"},
    {"keepalive", UINT(keepalive), "30", 5, 3600, false, "MQTT keepalive, seconds"},
    {"reconnect_min", UINT(reconnect_min), "1", 1, 3600, false,
     "first reconnect delay, seconds (doubles per failure)"},
    {"reconnect_max", UINT(reconnect_max), "30", 1, 3600, false,
     "longest reconnect delay, seconds"},
    {"session_expiry", UINT(session_expiry), "604800", 60, 4294967294u, false,
     "seconds the broker keeps the gateway's session (and its queued raw messages) while "
     "it is away"},
    {"max_inflight", UINT(max_inflight), "1000", 1, 65535, false,
     "unacknowledged publishes in flight at once"},
    {"aggregate_max_groups", UINT(aggregate_max_groups), "10000", 1, 10000000, false,
     "open aggregate (topic, group, window) entries at most"},
    {"drop_log_rate", UINT(drop_log_rate), "10", 0, 100000, false,
     "drop log lines per second at most (all drops are counted regardless)"},
    {"tcp_nodelay", UINT(tcp_nodelay), "1", 0, 1, false,
     "1: send each packet at once (TCP_NODELAY; lower latency); 0: let the kernel batch "
     "small packets (fewer packets under heavy load, but up to 40 ms delays)"},
    {"log_level", STR(log_level), "notice", 0, 0, false, "error, warning, notice, info or debug"},
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static const struct gw_option *find(const char *name)
{
	for (size_t i = 0; i < N_OPTIONS; i++) {
		if (strcmp(options[i].name, name) == 0)
			return &options[i];
	}
	return NULL;
}

static int set(struct cmq_gw_config *c, const struct gw_option *o, const char *value,
               const char *where)
{
	char *base = (char *)c + o->offset;

	if (o->type == OPT_STR) {
		char **dst = (char **)(void *)base;
		char *dup;

		if (value[0] == '\0') {
			fprintf(stderr, "civicmq-gateway: %s: %s: empty value\n", where, o->name);
			return -1;
		}
		if (strcmp(o->name, "log_level") == 0 && cmq_gw_log_level_parse(value) < 0) {
			fprintf(
			    stderr,
			    "civicmq-gateway: %s: log_level \"%s\" is not a level; valid: error, "
			    "warning, notice, info, debug\n",
			    where, value);
			return -1;
		}
		dup = strdup(value);
		if (dup == NULL) {
			fprintf(stderr, "civicmq-gateway: out of memory\n");
			return -1;
		}
		free(*dst);
		*dst = dup;
		return 0;
	} else {
		uint32_t *dst = (uint32_t *)(void *)base;
		char *end = NULL;
		unsigned long long v;

		errno = 0;
		v = strtoull(value, &end, 10);
		if (errno != 0 || end == value || *end != '\0' || value[0] == '-' || v < o->min ||
		    v > o->max) {
			fprintf(stderr,
			        "civicmq-gateway: %s: %s \"%s\" is not valid; expected an integer "
			        "from %u to %u\n",
			        where, o->name, value, o->min, o->max);
			return -1;
		}
		*dst = (uint32_t)v;
		return 0;
	}
}

int cmq_gw_config_defaults(struct cmq_gw_config *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < N_OPTIONS; i++) {
		if (options[i].def != NULL && set(c, &options[i], options[i].def, "default") != 0)
			return -1;
	}
	return 0;
}

int cmq_gw_config_set(struct cmq_gw_config *c, const char *name, const char *value,
                      const char *where)
{
	const struct gw_option *o = find(name);

	if (o == NULL) {
		fprintf(stderr,
		        "civicmq-gateway: %s: unknown option \"%s\" (see civicmq-gateway --help)\n",
		        where, name);
		return -1;
	}
	return set(c, o, value, where);
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

int cmq_gw_config_file(struct cmq_gw_config *c, const char *path)
{
	bool seen[N_OPTIONS] = {false};
	char line[4096], where[4200];
	unsigned lineno = 0;
	int rc = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		fprintf(stderr, "civicmq-gateway: %s: cannot open: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *s = trim(line), *v;
		const struct gw_option *o;

		lineno++;
		if (*s == '\0' || *s == '#')
			continue;
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		v = s + strcspn(s, " \t");
		if (*v != '\0')
			*v++ = '\0';
		v = trim(v);
		o = find(s);
		if (o == NULL) {
			fprintf(stderr, "civicmq-gateway: %s: unknown option \"%s\"\n", where, s);
			rc = -1;
			continue;
		}
		if (seen[o - options]) {
			fprintf(stderr, "civicmq-gateway: %s: %s is set twice\n", where, s);
			rc = -1;
			continue;
		}
		seen[o - options] = true;
		if (set(c, o, v, where) != 0)
			rc = -1;
	}
	fclose(f);
	return rc;
}

int cmq_gw_config_check(const struct cmq_gw_config *c)
{
	int rc = 0;

	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct gw_option *o = &options[i];

		if (o->required &&
		    *(char *const *)(const void *)((const char *)c + o->offset) == NULL) {
			fprintf(stderr, "civicmq-gateway: option %s is required: %s\n", o->name,
			        o->help);
			rc = -1;
		}
	}
	if (c->broker != NULL && strncmp(c->broker, "ssl://", 6) != 0 &&
	    strncmp(c->broker, "tcp://", 6) != 0) {
		fprintf(stderr, "civicmq-gateway: broker \"%s\" must start with ssl:// or tcp://\n",
		        c->broker);
		rc = -1;
	}
	if (c->broker != NULL && strncmp(c->broker, "ssl://", 6) == 0 && c->cafile == NULL) {
		fprintf(stderr, "civicmq-gateway: broker %s uses TLS: set cafile\n", c->broker);
		rc = -1;
	}
	if ((c->certfile == NULL) != (c->keyfile == NULL)) {
		fprintf(stderr, "civicmq-gateway: certfile and keyfile go together\n");
		rc = -1;
	}
	if (c->password_file == NULL && c->certfile == NULL) {
		fprintf(stderr, "civicmq-gateway: set password_file, or certfile and keyfile\n");
		rc = -1;
	}
	if (c->reconnect_min > c->reconnect_max) {
		fprintf(stderr, "civicmq-gateway: reconnect_min (%u) exceeds reconnect_max (%u)\n",
		        c->reconnect_min, c->reconnect_max);
		rc = -1;
	}
	if (c->metrics_topic != NULL && strncmp(c->metrics_topic, "city/", 5) != 0) {
		fprintf(stderr, "civicmq-gateway: metrics_topic \"%s\" must start with city/\n",
		        c->metrics_topic);
		rc = -1;
	}
	return rc;
}

void cmq_gw_config_cleanup(struct cmq_gw_config *c)
{
	for (size_t i = 0; i < N_OPTIONS; i++) {
		if (options[i].type == OPT_STR) {
			char **p = (char **)(void *)((char *)c + options[i].offset);

			free(*p);
			*p = NULL;
		}
	}
}

void cmq_gw_config_help(FILE *f)
{
	fprintf(f, "usage: civicmq-gateway [-c FILE] [--check] [--OPTION VALUE ...]\n"
	           "       civicmq-gateway --example-config | --help\n\n"
	           "  -c FILE           read options from FILE (\"name value\" lines)\n"
	           "  --check           load and validate configuration and files, then exit\n"
	           "  --example-config  print a documented configuration file\n\n"
	           "options (command line overrides the file):\n");
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct gw_option *o = &options[i];

		fprintf(f, "  --%-21s %s%s%s%s\n", o->name, o->help,
		        o->def != NULL ? " [default: " : (o->required ? " [required]" : ""),
		        o->def != NULL ? o->def : "", o->def != NULL ? "]" : "");
	}
	fprintf(f, "\nsignals: HUP reloads policy, vendors, consent and key (a broken file keeps "
	           "the old one); TERM/INT stop after settling; USR1 publishes metrics now.\n");
}

void cmq_gw_config_example(FILE *f)
{
	fprintf(f, "# civicmq-gateway configuration (generated by civicmq-gateway "
	           "--example-config).\n"
	           "# One \"name value\" per line; command-line --name value overrides.\n");
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct gw_option *o = &options[i];

		fprintf(f, "\n# %s%s\n", o->help, o->required ? " (required)" : "");
		if (o->def != NULL)
			fprintf(f, "#%s %s\n", o->name, o->def);
		else if (strcmp(o->name, "broker") == 0)
			fprintf(f, "broker ssl://127.0.0.1:8883\n");
		else
			fprintf(f, "#%s\n", o->name);
	}
}
