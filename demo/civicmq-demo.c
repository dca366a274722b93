/*
 * civicmq-demo - the whole system on loopback, as `make demo` runs it.
 *
 * It makes (or reuses) the example PKI, starts a real mosquitto with the civicmq plugin on
 * free 127.0.0.1 ports and the real civicmq-gateway, onboards one more device, and then
 * drives the real tools as separate processes: civicmq-dash as the city dashboard on
 * city/#, civicmq-sim as a blocked vendor, an impostor CA, a restricted vendor and a
 * dashboard trying to read raw/#, and then as the trusted and restricted vendors' sensors
 * publishing FIWARE-style readings full of planted personal data. It prints what was
 * refused and why (the tools' own words beside the plugin's log line), raw messages beside
 * their scrubbed versions, and a summary from the gateway's metrics; then it checks the
 * dashboard's whole output for every piece of personal data the sensors sent.
 *
 * Every process it starts is stopped by PID before it exits (harness.h registry; also on a
 * fatal signal, and the children die with it). Every wait is bounded; the whole run takes
 * about 20 s. The logs and summary.json stay in --out (default build/demo) for reading.
 *
 * Exit status: 0 when every check held, 1 when one failed (the summary says which), 2 on a
 * usage error or when the system could not be started.
 */
#include "../tests/integration/canary.h"
#include "../tests/integration/civicmq_env.h"
#include "../tests/integration/gateway_env.h"
#include "../tests/integration/harness.h"

#include <errno.h>
#include <json.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROG            "civicmq-demo"
#define TOOL_TIMEOUT_MS 30000
#define WIDTH           96 /* wrap printed payloads at this many columns */
#define MAX_PIDS        32
/* The example crowd windows are 15 minutes; the demo shortens them to see one close. */
#define DEMO_WINDOW_S 10

/* One sensor of the simulated city. */
struct sensor {
	const char *vendor;
	const char *device;
	const char *kind;
	const char *resident; /* meters only */
	const char *count;
	const char *story; /* one line for the reader */
};

static const struct sensor city[] = {
    {"civitas", "civitas-air-001", "air", NULL, "30", "air quality (public)"},
    {"nimbus", "nimbus-air-001", "air", NULL, "30", "air quality from a restricted vendor"},
    {"civitas", "civitas-noise-001", "noise", NULL, "30", "noise levels (public)"},
    {"civitas", "civitas-wifi-001", "footfall", NULL, "30",
     "Wi-Fi footfall counter with phone MACs"},
    {"civitas", "civitas-signal-001", "parking", NULL, "30", "parking bays"},
    {"civitas", "civitas-anpr-001", "anpr", NULL, "30", "ANPR camera with licence plates"},
    {"civitas", "civitas-meter-001", "meter", "resident-0001", "10",
     "smart meter of resident-0001 (opted in)"},
    {"civitas", "civitas-meter-002", "meter", "resident-0002", "10",
     "smart meter of resident-0002 (not opted in)"},
    {"civitas", "civitas-cam-001", "camera", NULL, "60", "people-counting camera (sensitive)"},
};
#define N_SENSORS (sizeof(city) / sizeof(city[0]))

/* raw kind -> the scrubbed topic's last level in config/policy.json */
static const char *scrubbed_level(const char *kind)
{
	static const char *const map[][2] = {
	    {"air", "air"},   {"noise", "noise"},  {"footfall", "footfall"}, {"parking", "parking"},
	    {"anpr", "anpr"}, {"meter", "energy"}, {"camera", "crowd"},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (strcmp(map[i][0], kind) == 0)
			return map[i][1];
	}
	return kind;
}

static const char demo_consent[] =
    "{\"version\":1,\"residents\":["
    "{\"id\":\"resident-0001\",\"categories\":[\"energy\"],\"updated\":\"2026-11-01T09:00:00Z\"},"
    "{\"id\":\"resident-0002\",\"categories\":[],\"updated\":\"2026-11-03T17:45:00Z\"}]}";

/* A subscriber of the scrubbed topics: civicmq-dash as one operator account. */
struct reader {
	const char *user; /* operator account (password "<user>-secret" in the demo) */
	const char *client_id;
	const char *topic;
	const char *story;
	char pw[CMQ_H_PATH_MAX + 32];
	char log[CMQ_H_PATH_MAX + 32];
	pid_t pid;
	long city, aggregates, energy, anpr; /* messages seen, by topic */
};

struct demo {
	char src[CMQ_H_PATH_MAX];
	char build[CMQ_H_PATH_MAX];
	char out[CMQ_H_PATH_MAX];
	char sim[CMQ_H_PATH_MAX + 32];
	char dash[CMQ_H_PATH_MAX + 32];
	char port_dev[16], port_op[16];
	struct reader dashboard; /* the public dashboard: city/# */
	struct reader lez;       /* the enforcement office: the pseudonymised ANPR feed */
	struct cmq_env env;
	struct cmq_gwe gw;
	bool env_up, gw_up;
	pid_t pids[MAX_PIDS]; /* every process the demo itself spawned */
	size_t n_pids;
	/* results */
	bool refused_blocked, refused_foreign, refused_restricted, refused_raw;
	bool live_cut_off, audit_intact; /* act 5 */
	char admin_exe[CMQ_H_PATH_MAX + 32];
	char audit_log[CMQ_H_PATH_MAX + 32];
	char consent[CMQ_H_PATH_MAX + 32];
	long sent, refused_pubs;
	size_t canaries, leaks;
	struct cmq_gwe_metrics m;
	int failed;
	char failures[1024];
	time_t started;
};

static void fail(struct demo *d, const char *fmt, ...)
{
	char line[256];
	size_t used = strlen(d->failures);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	d->failed++;
	snprintf(d->failures + used, sizeof(d->failures) - used, "  FAILED: %s\n", line);
}

static void heading(const char *title)
{
	printf("\n== %s\n", title);
	fflush(stdout);
}

/*
 * Print text indented and wrapped at WIDTH columns: after a space or a comma where one falls
 * in the second half of the line, else hard (payloads have long tokens).
 */
static void print_wrapped(const char *indent, const char *text, size_t len)
{
	size_t room = WIDTH - strlen(indent);

	while (len > 0) {
		size_t take = len <= room ? len : room;

		if (take < len) {
			for (size_t i = take; i > room / 2; i--) {
				if (text[i - 1] == ' ' || text[i - 1] == ',') {
					take = i;
					break;
				}
			}
		}
		printf("%s%.*s\n", indent, (int)take, text);
		text += take;
		len -= take;
	}
}

static void track(struct demo *d, pid_t pid)
{
	if (pid > 0 && d->n_pids < MAX_PIDS)
		d->pids[d->n_pids++] = pid;
}

/* <out>/<name>; an over-long path becomes "" (which every open refuses). */
static void out_path(const struct demo *d, const char *name, char *buf, size_t n)
{
	if (snprintf(buf, n, "%s/%s", d->out, name) >= (int)n)
		buf[0] = '\0';
}

/* Spawn civicmq-sim as one device (cert from the PKI); log to <out>/sim-<device>.log. */
static pid_t spawn_sim(struct demo *d, const char *vendor, const char *device, const char *cert_rel,
                       const char *kind, const char *resident, const char *count, char *log,
                       size_t log_n)
{
	char cert[CMQ_H_PATH_MAX + 64], key[CMQ_H_PATH_MAX + 64], rel[256], name[300];
	const char *p;
	pid_t pid;

	if (cert_rel == NULL) {
		snprintf(rel, sizeof(rel), "vendors/%s/devices/%s", vendor, device);
		cert_rel = rel;
	}
	snprintf(name, sizeof(name), "%s.pem", cert_rel);
	p = cmq_h_pki(name);
	snprintf(cert, sizeof(cert), "%s", p ? p : "");
	snprintf(name, sizeof(name), "%s.key", cert_rel);
	p = cmq_h_pki(name);
	snprintf(key, sizeof(key), "%s", p ? p : "");
	snprintf(name, sizeof(name), "sim-%s%s.log", device,
	         strncmp(cert_rel, "bad/", 4) ? "" : "-bad");
	out_path(d, name, log, log_n);
	unlink(log);
	const char *argv[] = {d->sim,        "--host",
	                      "localhost",   "--port",
	                      d->port_dev,   "--cafile",
	                      d->env.cafile, "--cert",
	                      cert,          "--key",
	                      key,           "--device",
	                      device,        "--kind",
	                      kind,          "--count",
	                      count,         "--rate",
	                      "40",          "--canaries",
	                      "--verbose",   resident ? "--resident" : NULL,
	                      resident,      NULL};
	pid = cmq_h_spawn(argv, log);
	track(d, pid);
	return pid;
}

static pid_t spawn_dash(struct demo *d, const struct reader *r, const char *client_id,
                        const char *topic, const char *count, const char *log)
{
	pid_t pid;
	const char *argv[] = {d->dash,    "--host",      "localhost",  "--port",  d->port_op,
	                      "--cafile", d->env.cafile, "--username", r->user,   "--password-file",
	                      r->pw,      "--client-id", client_id,    "--topic", topic,
	                      "--count",  count,         NULL};

	pid = cmq_h_spawn(argv, log);
	track(d, pid);
	return pid;
}

/* The first line of a file that contains needle, copied into out (without the newline). */
static bool file_line(const char *path, size_t mark, const char *needle, char *out, size_t n)
{
	char *text = cmq_h_file_read(path, mark, NULL), *hit, *end;

	out[0] = '\0';
	if (text == NULL)
		return false;
	hit = strstr(text, needle);
	if (hit != NULL) {
		while (hit > text && hit[-1] != '\n')
			hit--;
		end = strchr(hit, '\n');
		snprintf(out, n, "%.*s", end ? (int)(end - hit) : (int)strlen(hit), hit);
	}
	free(text);
	return hit != NULL;
}

/* The plugin's log line about who after mark, from "civicmq: " on. */
static void print_plugin_line(struct demo *d, size_t mark, const char *who)
{
	char line[1024], *from;

	for (int waited = 0; waited < 3000; waited += 50) {
		if (file_line(d->env.broker.log_path, mark, who, line, sizeof(line)) &&
		    (from = strstr(line, "civicmq: ")) != NULL) {
			print_wrapped("      broker: ", from, strlen(from));
			return;
		}
		usleep(50 * 1000);
	}
	printf("      broker: (no civicmq line about %s in the log)\n", who);
}

static void print_tool_line(const char *log, const char *needle)
{
	char line[1024];

	if (file_line(log, 0, needle, line, sizeof(line)))
		print_wrapped("      tool:   ", line, strlen(line));
}

/* ---- act 1: refusals ---- */

static void refusals(struct demo *d)
{
	char log[CMQ_H_PATH_MAX + 64];
	size_t mark;
	int rc;

	heading("1. What the broker refuses, and why");

	printf("\n  A blocked vendor's camera connects (hawkeye, blocked by council decision):\n");
	mark = cmq_h_log_mark(&d->env.broker);
	rc = cmq_h_proc_wait(
	    spawn_sim(d, "hawkeye", "hawkeye-cam-001", NULL, "camera", NULL, "3", log, sizeof(log)),
	    TOOL_TIMEOUT_MS);
	d->refused_blocked = rc == 1 && cmq_h_file_contains(log, 0, "refused the connection");
	print_tool_line(log, "refused");
	print_plugin_line(d, mark, "refused connection \"hawkeye-cam-001\"");
	if (!d->refused_blocked)
		fail(d, "the blocked vendor's device was not refused at connect (see %s)", log);

	printf("\n  An impostor: a certificate from a foreign CA that copies Civitas's CA name,\n"
	       "  presenting the id of a real Civitas device:\n");
	mark = cmq_h_log_mark(&d->env.broker);
	rc = cmq_h_proc_wait(spawn_sim(d, "civitas", "civitas-air-001",
	                               "bad/foreign-civitas-air-001", "air", NULL, "3", log,
	                               sizeof(log)),
	                     TOOL_TIMEOUT_MS);
	d->refused_foreign = rc == 1 && cmq_h_file_contains(log, 0, "refused the connection");
	print_tool_line(log, "refused");
	print_plugin_line(d, mark, "refused connection \"civitas-air-001\"");
	if (!d->refused_foreign)
		fail(d, "the foreign-CA impostor was not refused (see %s)", log);

	printf("\n  A restricted vendor's Wi-Fi counter publishes personal data (nimbus is\n"
	       "  restricted to public-class data until its firmware is audited):\n");
	mark = cmq_h_log_mark(&d->env.broker);
	rc = cmq_h_proc_wait(spawn_sim(d, "nimbus", "nimbus-wifi-001", NULL, "footfall", NULL, "3",
	                               log, sizeof(log)),
	                     TOOL_TIMEOUT_MS);
	d->refused_restricted = rc == 1 && cmq_h_file_contains(log, 0, "sent 0, refused 3");
	print_tool_line(log, "refused");
	print_plugin_line(d, mark, "denied write \"raw/north/footfall/nimbus-wifi-001\"");
	if (!d->refused_restricted)
		fail(d, "the restricted vendor's personal data was not refused (see %s)", log);

	printf("\n  The dashboard account tries to read the raw topics:\n");
	out_path(d, "dash-raw.log", log, sizeof(log));
	unlink(log);
	mark = cmq_h_log_mark(&d->env.broker);
	rc = cmq_h_proc_wait(spawn_dash(d, &d->dashboard, "dashboard-raw", "raw/#", "1", log),
	                     TOOL_TIMEOUT_MS);
	d->refused_raw = rc == 1 && cmq_h_file_contains(log, 0, "subscription to raw/# refused");
	print_tool_line(log, "refused");
	print_plugin_line(d, mark, "denied subscribe \"raw/#\"");
	if (!d->refused_raw)
		fail(d, "the dashboard was not refused raw/# (see %s)", log);
}

/* ---- act 2: the city's traffic ---- */

/* Remember every piece of personal data in one raw payload as a canary. */
static void collect_canaries(struct cmq_canary_set *set, const char *payload, size_t len)
{
	static const char *const strings[] = {
	    "installedBy", "contactPhone", "gatewayMac", "residentId", "meterId", "refDevice", "id",
	};
	json_tokener *tok = json_tokener_new();
	json_object *o = tok ? json_tokener_parse_ex(tok, payload, (int)len) : NULL, *v, *a;
	char num[48];

	json_tokener_free(tok);
	if (o == NULL)
		return;
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		if (json_object_object_get_ex(o, strings[i], &v) &&
		    json_object_is_type(v, json_type_string))
			cmq_canary_add(set, json_object_get_string(v), strings[i]);
	}
	if (json_object_object_get_ex(o, "macs", &a) && json_object_is_type(a, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(a); i++)
			cmq_canary_add(set, json_object_get_string(json_object_array_get_idx(a, i)),
			               "mac");
	}
	if (json_object_object_get_ex(o, "observedVehicle", &v) &&
	    json_object_object_get_ex(v, "licensePlate", &v) &&
	    json_object_object_get_ex(v, "identifier", &v))
		cmq_canary_add(set, json_object_get_string(v), "plate");
	if (json_object_object_get_ex(o, "location", &v) &&
	    json_object_object_get_ex(v, "coordinates", &a) &&
	    json_object_is_type(a, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			snprintf(num, sizeof(num), "%.7f",
			         json_object_get_double(json_object_array_get_idx(a, i)));
			cmq_canary_add(set, num, "coordinate");
		}
	}
	json_object_put(o);
}

/* Walk a sim log's "<topic> <payload>" lines: count them, collect canaries. */
static long scan_sim_log(const char *log, struct cmq_canary_set *set)
{
	char *text = cmq_h_file_read(log, 0, NULL), *save = NULL;
	long n = 0;

	if (text == NULL)
		return 0;
	for (char *line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *sp = strchr(line, ' ');

		if (strncmp(line, "raw/", 4) != 0 || sp == NULL || sp[1] != '{')
			continue;
		n++;
		collect_canaries(set, sp + 1, strlen(sp + 1));
	}
	free(text);
	return n;
}

static void traffic(struct demo *d, struct cmq_canary_set *set)
{
	char logs[N_SENSORS][CMQ_H_PATH_MAX + 64];
	pid_t pids[N_SENSORS];
	long expected = 0;

	heading("2. The city's sensors publish (every payload carries planted personal data)");
	printf("\n");
	for (size_t i = 0; i < N_SENSORS; i++) {
		const struct sensor *s = &city[i];

		printf("  %-20s %-8s x%-3s %s\n", s->device, s->kind, s->count, s->story);
		pids[i] = spawn_sim(d, s->vendor, s->device, NULL, s->kind, s->resident, s->count,
		                    logs[i], sizeof(logs[i]));
		expected += strtol(s->count, NULL, 10);
	}
	fflush(stdout);
	for (size_t i = 0; i < N_SENSORS; i++) {
		int rc = cmq_h_proc_wait(pids[i], TOOL_TIMEOUT_MS);
		long sent = scan_sim_log(logs[i], set);

		d->sent += sent;
		if (rc != 0)
			fail(d, "%s exited with %d (see %s)", city[i].device, rc, logs[i]);
	}
	if (d->sent != expected)
		fail(d, "the sensors sent %ld messages, expected %ld", d->sent, expected);
	/* Identifiers the payloads name indirectly count as canaries too. */
	for (size_t i = 0; i < N_SENSORS; i++) {
		cmq_canary_add(set, city[i].device, "device id");
		if (city[i].resident)
			cmq_canary_add(set, city[i].resident, "resident id");
	}
	d->canaries = cmq_canary_count(set, NULL);
	printf("\n  %ld messages sent, %zu distinct pieces of personal data planted in them\n"
	       "  (MACs, plates, e-mail addresses, phone numbers, resident and device ids, exact\n"
	       "  coordinates)\n",
	       d->sent, d->canaries);
}

/* ---- act 3: raw beside scrubbed ---- */

/* The first "<topic> <payload>..." line of a log whose topic starts with prefix. */
static bool first_message(const char *log, const char *prefix, char *out, size_t n)
{
	char needle[160];

	snprintf(needle, sizeof(needle), "\n%s", prefix);
	out[0] = '\0';
	if (strncmp(prefix, "raw/", 4) == 0)
		return file_line(log, 0, prefix, out, n);
	{
		char *text = cmq_h_file_read(log, 0, NULL), *hit, *end;
		size_t plen = strlen(prefix);

		if (text == NULL)
			return false;
		hit = strncmp(text, prefix, plen) == 0 ? text : strstr(text, needle);
		if (hit != NULL && *hit == '\n')
			hit++;
		if (hit != NULL) {
			end = strchr(hit, '\n');
			snprintf(out, n, "%.*s", end ? (int)(end - hit) : (int)strlen(hit), hit);
		}
		free(text);
		return hit != NULL;
	}
}

static void show_pair(struct demo *d, const struct sensor *s)
{
	char log[CMQ_H_PATH_MAX + 64], name[128], raw[4096], city_line[4096], prefix[96];
	const struct reader *r = &d->dashboard;
	const char *sp;

	snprintf(name, sizeof(name), "sim-%s.log", s->device);
	out_path(d, name, log, sizeof(log));
	snprintf(prefix, sizeof(prefix), "raw/north/%s/%s ", s->kind, s->device);
	printf("\n  %s - %s\n", s->device, s->story);
	if (first_message(log, prefix, raw, sizeof(raw)) && (sp = strchr(raw, ' ')) != NULL) {
		printf("    sent on %.*s (%zu bytes):\n", (int)(sp - raw), raw, strlen(sp + 1));
		print_wrapped("      ", sp + 1, strlen(sp + 1));
	}
	snprintf(prefix, sizeof(prefix), "city/north/%s ", scrubbed_level(s->kind));
	if (strcmp(s->kind, "anpr") == 0) {
		/* The dashboard role denies city/+/anpr: only the enforcement office reads it. */
		printf(
		    "    the public dashboard got %ld of these (its role is denied city/+/anpr);\n",
		    d->dashboard.anpr);
		r = &d->lez;
	}
	if (first_message(r->log, prefix, city_line, sizeof(city_line)) &&
	    (sp = strchr(city_line, ' ')) != NULL) {
		printf("    %s got, on %.*s:\n", r->story, (int)(sp - city_line), city_line);
		print_wrapped("      ", sp + 1, strlen(sp + 1));
	} else {
		printf("    %s got nothing on city/north/%s\n", r->story, scrubbed_level(s->kind));
	}
}

static void before_after(struct demo *d)
{
	heading("3. Raw messages beside what dashboards receive");
	for (size_t i = 0; i < N_SENSORS; i++) {
		const char *k = city[i].kind;

		/* One of each kind that shows a different scrub (the first air and meter). */
		if ((strcmp(k, "air") == 0 && strcmp(city[i].vendor, "civitas") == 0) ||
		    strcmp(k, "footfall") == 0 || strcmp(k, "anpr") == 0 ||
		    strcmp(city[i].device, "civitas-meter-001") == 0 || strcmp(k, "camera") == 0)
			show_pair(d, &city[i]);
	}
	printf("\n  civitas-meter-002 - resident-0002 has not opted in: nothing of theirs reached\n"
	       "  the dashboard (%ld messages on city/north/energy: resident-0001's 10).\n",
	       d->dashboard.energy);
}

/* ---- what the readers received, scanned for every canary ---- */

static void scan_reader(struct demo *d, struct reader *r, const struct cmq_canary_set *set)
{
	char *text = cmq_h_file_read(r->log, 0, NULL), *save = NULL;
	int shown = 0;

	if (text == NULL) {
		fail(d, "cannot read %s", r->log);
		return;
	}
	for (char *line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		const char *kind = NULL, *hit = cmq_canary_find(set, line, strlen(line), &kind);

		if (strncmp(line, "city/", 5) == 0 && strncmp(line, "city/gateway/", 13) != 0 &&
		    strncmp(line, "city/transparency/", 18) != 0) {
			r->city++;
			r->aggregates += strncmp(line, "city/north/crowd ", 17) == 0;
			r->energy += strncmp(line, "city/north/energy ", 18) == 0;
			r->anpr += strncmp(line, "city/north/anpr ", 16) == 0;
		}
		if (hit != NULL) {
			d->leaks++;
			if (shown++ < 5)
				printf("  LEAKED to %s: %s \"%s\" in: %.200s\n", r->user, kind, hit,
				       line);
		}
	}
	free(text);
}

/* ---- the public register ---- */

/* The first register message in the dashboard's output, parsed, or NULL. */
static json_object *register_from(const char *log)
{
	static const char tag[] = "city/transparency/register ";
	char *text = cmq_h_file_read(log, 0, NULL), *at, *end;
	json_object *reg = NULL;

	if (text == NULL)
		return NULL;
	at = strncmp(text, tag, sizeof(tag) - 1) == 0
	         ? text
	         : strstr(text, "\ncity/transparency/register ");
	if (at != NULL) {
		at = strchr(at + 1, ' ') + 1;
		end = strstr(at, "\ncity/");
		if (end != NULL)
			*end = '\0';
		/* plain output appends " [name=value]" properties; the register carries none */
		reg = json_tokener_parse(at);
	}
	free(text);
	return reg;
}

static void show_register(struct demo *d)
{
	json_object *reg = register_from(d->dashboard.log), *flows, *policy;

	heading("4. The public transparency register, as any dashboard reads it");
	if (reg == NULL || !json_object_object_get_ex(reg, "flows", &flows)) {
		fail(d, "no transparency register on city/transparency/register");
		json_object_put(reg);
		return;
	}
	json_object_object_get_ex(reg, "policy", &policy);
	printf("\n  retained on city/transparency/register, generated from policy %s:\n\n",
	       json_object_get_string(policy));
	for (size_t i = 0; i < json_object_array_length(flows); i++) {
		json_object *f = json_object_array_get_idx(flows, i), *v, *vendors;
		char fed[256] = "";
		size_t used = 0;

		json_object_object_get_ex(f, "vendors", &vendors);
		for (size_t k = 0; vendors != NULL && k < json_object_array_length(vendors); k++) {
			json_object *e = json_object_array_get_idx(vendors, k), *id, *tier;

			json_object_object_get_ex(e, "id", &id);
			json_object_object_get_ex(e, "tier", &tier);
			used += (size_t)snprintf(
			    fed + used, used < sizeof(fed) ? sizeof(fed) - used : 0, "%s%s (%s)",
			    k ? ", " : "", json_object_get_string(id),
			    json_object_get_string(tier));
			if (strcmp(json_object_get_string(id), "hawkeye") == 0)
				fail(d, "the register lists the blocked vendor on %s",
				     json_object_get_string(json_object_object_get(f, "id")));
		}
		json_object_object_get_ex(f, "id", &v);
		printf("  %-16s", json_object_get_string(v));
		json_object_object_get_ex(f, "class", &v);
		printf(" %-10s", json_object_get_string(v));
		json_object_object_get_ex(f, "retention", &v);
		printf(" kept %-5s", json_object_get_string(v));
		printf(" fed by %s\n", fed[0] ? fed : "nobody");
		json_object_object_get_ex(f, "purpose", &v);
		printf("  %16s purpose: %s\n", "", json_object_get_string(v));
	}
	printf("\n  (hawkeye, blocked, feeds nothing; nimbus, restricted, only public data. Render "
	       "it as\n"
	       "  a page with: civicmq-admin transparency --format html)\n");
	json_object_put(reg);
}

/* ---- act 5: administering live ---- */

/* civicmq-admin with the words (NULL-terminated); online as the admin if online. */
static int run_admin(struct demo *d, bool online, const char *log, ...)
{
	const char *args[32];
	char cert[CMQ_H_PATH_MAX + 32], key[CMQ_H_PATH_MAX + 32];
	const char *p;
	int n = 0;
	va_list ap;

	args[n++] = d->admin_exe;
	if (online) {
		p = cmq_h_pki("operators/admin.pem");
		snprintf(cert, sizeof(cert), "%s", p ? p : "");
		p = cmq_h_pki("operators/admin.key");
		snprintf(key, sizeof(key), "%s", p ? p : "");
		args[n++] = "--host";
		args[n++] = "localhost";
		args[n++] = "--port";
		args[n++] = d->port_dev;
		args[n++] = "--cafile";
		args[n++] = d->env.cafile;
		args[n++] = "--cert";
		args[n++] = cert;
		args[n++] = "--key";
		args[n++] = key;
	}
	va_start(ap, log);
	for (const char *a = va_arg(ap, const char *); a != NULL && n < 31;
	     a = va_arg(ap, const char *))
		args[n++] = a;
	va_end(ap);
	args[n] = NULL;
	unlink(log);
	{
		pid_t pid = cmq_h_spawn(args, log);

		track(d, pid);
		return cmq_h_proc_wait(pid, TOOL_TIMEOUT_MS);
	}
}

static void print_log(const char *log, const char *indent)
{
	char *text = cmq_h_file_read(log, 0, NULL), *save = NULL;

	for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line != NULL;
	     line = strtok_r(NULL, "\n", &save))
		print_wrapped(indent, line, strlen(line));
	free(text);
}

static void administer(struct demo *d)
{
	char log[CMQ_H_PATH_MAX + 64], simlog[CMQ_H_PATH_MAX + 64];
	size_t mark;
	pid_t sim;
	int rc;

	heading("5. An official blocks a vendor on the running system");
	printf(
	    "\n  nimbus-air-001 is connected and publishing; then, as the city's admin:\n"
	    "    civicmq-admin --port %s --cert admin.pem ... vendor block nimbus --reason ...\n\n",
	    d->port_dev);
	mark = cmq_h_log_mark(&d->env.broker);
	sim = spawn_sim(d, "nimbus", "nimbus-air-001", NULL, "air", NULL, "0", simlog,
	                sizeof(simlog));
	if (sim < 0 ||
	    !cmq_h_log_wait(&d->env.broker, mark, "Received PUBLISH from nimbus-air-001", 10000)) {
		fail(d, "nimbus-air-001 did not start publishing (see %s)", simlog);
		cmq_h_proc_stop(sim, SIGTERM, 2000, NULL);
		return;
	}
	out_path(d, "admin-block.log", log, sizeof(log));
	rc = run_admin(d, true, log, "vendor", "block", "nimbus", "--reason",
	               "demo: firmware found sending data home", NULL);
	print_log(log, "      admin:  ");
	/* The device is cut off: the simulator reports the lost connection and exits. */
	d->live_cut_off = rc == 0 && cmq_h_proc_wait(sim, 10000) == 1 &&
	                  cmq_h_file_contains(simlog, 0, "lost its connection");
	print_tool_line(simlog, "lost its connection");
	print_plugin_line(d, mark, "disconnecting \"nimbus-air-001\"");
	if (!d->live_cut_off)
		fail(d, "blocking nimbus did not cut off its connected device (see %s, %s)", log,
		     simlog);

	printf("\n  The change is in the audit log, hash-chained after the refusals of act 1:\n");
	out_path(d, "admin-verify.log", log, sizeof(log));
	rc = run_admin(d, false, log, "audit", "verify", d->audit_log, NULL);
	print_log(log, "      ");
	d->audit_intact = rc == 0;
	if (!d->audit_intact)
		fail(d, "civicmq-admin audit verify failed on %s", d->audit_log);
}

/* ---- summary ---- */

static void summary(struct demo *d)
{
	long elapsed = (long)(time(NULL) - d->started);

	heading("6. Summary");
	printf("\n  refused at the broker: blocked vendor %s, impostor CA %s, restricted vendor's\n"
	       "  personal data %s, dashboard reading raw/# %s\n",
	       d->refused_blocked ? "yes" : "NO", d->refused_foreign ? "yes" : "NO",
	       d->refused_restricted ? "yes" : "NO", d->refused_raw ? "yes" : "NO");
	printf("  administered live: blocking nimbus cut off its connected device %s; audit log "
	       "chain intact %s\n",
	       d->live_cut_off ? "yes" : "NO", d->audit_intact ? "yes" : "NO");
	printf("  sensors sent %ld; the gateway received %lld: forwarded %lld, absorbed into\n"
	       "  aggregates %lld, dropped %lld\n",
	       d->sent, d->m.received, d->m.forwarded, d->m.absorbed, d->m.dropped);
	for (int r = 1; r < CMQ_DROP__COUNT; r++) {
		if (d->m.by_reason[r] > 0)
			printf("    dropped %lld, %s (%s)\n", d->m.by_reason[r],
			       cmq_drop_text((enum cmq_drop)r), cmq_drop_name((enum cmq_drop)r));
	}
	printf("  aggregates published %lld, suppressed below k %lld; gateway latency p50 %lld us, "
	       "p99 %lld us\n",
	       d->m.agg_published, d->m.agg_suppressed, d->m.p50_us, d->m.p99_us);
	printf("  the dashboard received %ld scrubbed messages (%ld crowd aggregates), the "
	       "enforcement\n  office %ld pseudonymised ANPR readings\n",
	       d->dashboard.city, d->dashboard.aggregates, d->lez.anpr);
	printf("  canaries planted %zu, leaked to city/ topics %zu\n", d->canaries, d->leaks);
	printf("  logs: %s (%ld s)\n", d->out, elapsed);
	if (d->failed == 0)
		printf("\n  civicmq demo: every check held.\n");
	else
		printf("\n%s  civicmq demo: %d check(s) failed.\n", d->failures, d->failed);
}

static int write_summary_json(const struct demo *d)
{
	char path[CMQ_H_PATH_MAX + 64];
	json_object *root = json_object_new_object(), *refused = json_object_new_object(),
	            *gw = json_object_new_object(), *reasons = json_object_new_object(),
	            *pids = json_object_new_array();
	int rc;

	json_object_object_add(refused, "blocked_vendor",
	                       json_object_new_boolean(d->refused_blocked));
	json_object_object_add(refused, "foreign_ca", json_object_new_boolean(d->refused_foreign));
	json_object_object_add(refused, "restricted_personal",
	                       json_object_new_boolean(d->refused_restricted));
	json_object_object_add(refused, "dashboard_raw", json_object_new_boolean(d->refused_raw));
	json_object_object_add(root, "refused", refused);
	{
		json_object *live = json_object_new_object();

		json_object_object_add(live, "block_cut_off",
		                       json_object_new_boolean(d->live_cut_off));
		json_object_object_add(live, "audit_intact",
		                       json_object_new_boolean(d->audit_intact));
		json_object_object_add(root, "live", live);
	}
	json_object_object_add(root, "sent", json_object_new_int64(d->sent));
	json_object_object_add(gw, "received", json_object_new_int64(d->m.received));
	json_object_object_add(gw, "forwarded", json_object_new_int64(d->m.forwarded));
	json_object_object_add(gw, "absorbed", json_object_new_int64(d->m.absorbed));
	json_object_object_add(gw, "dropped", json_object_new_int64(d->m.dropped));
	for (int r = 1; r < CMQ_DROP__COUNT; r++)
		json_object_object_add(reasons, cmq_drop_name((enum cmq_drop)r),
		                       json_object_new_int64(d->m.by_reason[r]));
	json_object_object_add(gw, "dropped_by_reason", reasons);
	json_object_object_add(gw, "aggregates_published",
	                       json_object_new_int64(d->m.agg_published));
	json_object_object_add(root, "gateway", gw);
	json_object_object_add(root, "dashboard_received",
	                       json_object_new_int64(d->dashboard.city));
	json_object_object_add(root, "dashboard_aggregates",
	                       json_object_new_int64(d->dashboard.aggregates));
	json_object_object_add(root, "dashboard_energy",
	                       json_object_new_int64(d->dashboard.energy));
	json_object_object_add(root, "dashboard_anpr", json_object_new_int64(d->dashboard.anpr));
	json_object_object_add(root, "enforcement_anpr", json_object_new_int64(d->lez.anpr));
	json_object_object_add(root, "canaries_planted",
	                       json_object_new_int64((int64_t)d->canaries));
	json_object_object_add(root, "canaries_leaked", json_object_new_int64((int64_t)d->leaks));
	json_object_object_add(root, "checks_failed", json_object_new_int(d->failed));
	json_object_object_add(root, "seconds",
	                       json_object_new_int64((int64_t)(time(NULL) - d->started)));
	/* What the demo started, for a test to check that none outlives it. */
	for (size_t i = 0; i < d->n_pids; i++)
		json_object_array_add(pids, json_object_new_int(d->pids[i]));
	json_object_object_add(root, "pids", pids);
	out_path(d, "summary.json", path, sizeof(path));
	rc = json_object_to_file_ext(path, root, JSON_C_TO_STRING_PRETTY);
	json_object_put(root);
	if (rc != 0)
		fprintf(stderr, PROG ": cannot write %s\n", path);
	return rc;
}

/* ---- set-up and tear-down ---- */

static int copy_file(const char *from, const char *to)
{
	size_t len = 0;
	char *text = cmq_h_file_read(from, 0, &len);
	FILE *f;
	int rc = -1;

	if (text == NULL)
		return -1;
	f = fopen(to, "w");
	if (f != NULL) {
		rc = fwrite(text, 1, len, f) == len ? 0 : -1;
		if (fclose(f) != 0)
			rc = -1;
	}
	free(text);
	return rc;
}

static char *demo_policy(const char *src)
{
	char path[CMQ_H_PATH_MAX + 64], *text, *hit;

	snprintf(path, sizeof(path), "%s/config/policy.json", src);
	text = cmq_h_file_read(path, 0, NULL);
	if (text == NULL) {
		fprintf(stderr, PROG ": cannot read %s\n", path);
		return NULL;
	}
	hit = strstr(text, "\"window_seconds\": 900");
	if (hit == NULL) {
		fprintf(stderr, PROG ": %s has no \"window_seconds\": 900 to shorten\n", path);
		free(text);
		return NULL;
	}
	/* Same length, so it is replaced in place: "900" -> " 10". */
	memcpy(hit + strlen("\"window_seconds\":"), "  10", 4);
	return text;
}

static int onboard_device(struct demo *d, const char *vendor, const char *device)
{
	char script[CMQ_H_PATH_MAX + 32], log[CMQ_H_PATH_MAX + 64];
	const char *pki = cmq_h_pki_dir();
	const char *argv[] = {script, pki, "device", vendor, device, NULL};
	int rc;

	snprintf(script, sizeof(script), "%s/certs/civicmq-pki", d->src);
	out_path(d, "onboard.log", log, sizeof(log));
	unlink(log);
	rc = cmq_h_proc_wait(cmq_h_spawn(argv, log), TOOL_TIMEOUT_MS);
	if (rc != 0) {
		cmq_h_file_print(log, 0);
		return -1;
	}
	printf("  onboarded %s as an operator would: certs/civicmq-pki <pki> device %s %s\n",
	       device, vendor, device);
	return 0;
}

static int write_secret(const char *path, const char *text)
{
	FILE *f;

	unlink(path);
	f = fopen(path, "w");
	if (f == NULL || fchmod(fileno(f), 0600) != 0 || fputs(text, f) < 0) {
		if (f)
			fclose(f);
		return -1;
	}
	return fclose(f) == 0 ? 0 : -1;
}

static int random_key(char *hex, size_t n)
{
	unsigned char raw[32];
	FILE *f = fopen("/dev/urandom", "rb");

	if (f == NULL || fread(raw, 1, sizeof(raw), f) != sizeof(raw) || n < 65) {
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(hex + 2 * i, 3, "%02x", raw[i]);
	return 0;
}

/* Write the reader's password file, start civicmq-dash and wait for its SUBACK. */
static int start_reader(struct demo *d, struct reader *r)
{
	char name[64], secret[80], suback[96];
	size_t mark;

	snprintf(name, sizeof(name), "%s.pw", r->user);
	out_path(d, name, r->pw, sizeof(r->pw));
	snprintf(secret, sizeof(secret), "%s-secret\n", r->user);
	if (write_secret(r->pw, secret) != 0) {
		fprintf(stderr, PROG ": cannot write %s: %s\n", r->pw, strerror(errno));
		return -1;
	}
	snprintf(name, sizeof(name), "%s.log", r->user);
	out_path(d, name, r->log, sizeof(r->log));
	unlink(r->log);
	mark = cmq_h_log_mark(&d->env.broker);
	r->pid = spawn_dash(d, r, r->client_id, r->topic, "0", r->log);
	snprintf(suback, sizeof(suback), "Sending SUBACK to %s", r->client_id);
	if (r->pid < 0 || !cmq_h_log_wait(&d->env.broker, mark, suback, 10000)) {
		fprintf(stderr, PROG ": %s's civicmq-dash did not subscribe\n", r->user);
		cmq_h_file_print(r->log, 0);
		return -1;
	}
	printf("  civicmq-dash %ld: %s (%s), subscribed to %s\n", (long)r->pid, r->story, r->user,
	       r->topic);
	return 0;
}

static int start(struct demo *d)
{
	struct cmq_env_overrides ov;
	struct cmq_gwe_opts go;
	char key[72], pki[CMQ_H_PATH_MAX + 16], extra[3 * CMQ_H_PATH_MAX], *policy;
	const char *pkidir;

	heading("0. Starting a city on loopback");
	snprintf(pki, sizeof(pki), "%s/pki", d->out);
	setenv("CMQ_PKI_DIR", pki, 0);
	pkidir = cmq_h_pki_dir();
	if (pkidir == NULL)
		return -1;
	printf("\n  PKI (city root, operator CA, vendor CAs, devices; keys mode 0600): %s\n",
	       pkidir);
	if (onboard_device(d, "civitas", "civitas-meter-002") != 0)
		return -1;
	policy = demo_policy(d->src);
	if (policy == NULL)
		return -1;
	memset(&ov, 0, sizeof(ov));
	ov.policy_text = policy;
	/* A fresh audit log per run; consent shared by the broker (control API) and gateway. */
	out_path(d, "audit.log", d->audit_log, sizeof(d->audit_log));
	out_path(d, "consent.json", d->consent, sizeof(d->consent));
	unlink(d->audit_log);
	snprintf(extra, sizeof(extra), "plugin_opt_audit_log %s\nplugin_opt_consent %s\n",
	         d->audit_log, d->consent);
	if (cmq_env_init(&d->env, &ov) != 0 || cmq_env_start(&d->env, extra) != 0) {
		free(policy);
		return -1;
	}
	d->env_up = true;
	track(d, d->env.broker.pid);
	snprintf(d->port_dev, sizeof(d->port_dev), "%d", d->env.broker.port[0]);
	snprintf(d->port_op, sizeof(d->port_op), "%d", d->env.broker.port[1]);
	printf("  mosquitto %ld with civicmq_plugin.so: devices (mutual TLS) on 127.0.0.1:%s,\n"
	       "  operators (password over TLS) on 127.0.0.1:%s; config in %s\n",
	       (long)d->env.broker.pid, d->port_dev, d->port_op, d->env.dir);
	printf("  policy: config/policy.json, with crowd windows of %d s instead of 15 min\n",
	       DEMO_WINDOW_S);
	free(policy);

	memset(&go, 0, sizeof(go));
	go.consent_text = demo_consent;
	go.consent_path = d->consent;
	if (random_key(key, sizeof(key)) != 0) {
		fprintf(stderr, PROG ": cannot read /dev/urandom\n");
		return -1;
	}
	go.key_hex = key;
	if (cmq_gwe_start(&d->env, &go, &d->gw) != 0)
		return -1;
	d->gw_up = true;
	track(d, d->gw.pid);
	printf("  civicmq-gateway %ld: subscribed $share/%s/raw/#, pseudonym key random for this "
	       "run\n",
	       (long)d->gw.pid, d->gw.share_group);

	if (start_reader(d, &d->dashboard) != 0 || start_reader(d, &d->lez) != 0)
		return -1;
	return 0;
}

/* Wait for the gateway to settle everything sent, and for the crowd windows to close. */
static void settle(struct demo *d)
{
	long long accounted;

	if (cmq_gwe_wait_received(&d->gw, d->sent, 15000, &d->m) != 0)
		fail(d, "the gateway received %lld of %ld messages", d->m.received, d->sent);
	printf("\n  waiting for the crowd window to close (at most %d s) ...\n",
	       2 * DEMO_WINDOW_S + 5);
	fflush(stdout);
	for (int waited = 0; waited < (2 * DEMO_WINDOW_S + 5) * 1000; waited += 250) {
		if (cmq_h_file_contains(d->dashboard.log, 0, "city/north/crowd "))
			break;
		usleep(250 * 1000);
	}
	if (cmq_gwe_metrics(&d->gw, &d->m) != 0)
		fail(d, "no metrics from the gateway");
	accounted = d->m.forwarded + d->m.absorbed + d->m.dropped;
	if (accounted != d->m.received)
		fail(d, "gateway: received %lld but forwarded+absorbed+dropped = %lld",
		     d->m.received, accounted);
}

/* SIGTERM the readers: civicmq-dash has flushed every line it printed by then. */
static void stop_readers(struct demo *d)
{
	struct reader *rs[] = {&d->dashboard, &d->lez};

	for (size_t i = 0; i < sizeof(rs) / sizeof(rs[0]); i++) {
		if (rs[i]->pid > 0)
			cmq_h_proc_stop(rs[i]->pid, SIGTERM, 5000, NULL);
		rs[i]->pid = 0;
	}
}

static void stop_all(struct demo *d)
{
	char path[CMQ_H_PATH_MAX + 64];

	stop_readers(d);
	if (d->gw_up) {
		if (cmq_gwe_stop(&d->gw) != 0)
			fail(d, "the gateway did not stop cleanly (see %s/gateway.log)", d->out);
		out_path(d, "gateway.log", path, sizeof(path));
		copy_file(d->gw.log_path, path);
		cmq_gwe_cleanup(&d->gw);
		d->gw_up = false;
	}
	if (d->env_up) {
		cmq_env_stop(&d->env);
		out_path(d, "mosquitto.log", path, sizeof(path));
		copy_file(d->env.broker.log_path, path);
		d->env_up = false;
	}
	/* Every tool was waited for (wait_exit kills one that overruns); the harness stops
	 * anything still registered at exit. Reaped PIDs are never signalled: they may have
	 * been reused. */
}

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG " [--src DIR] [--build DIR] [--out DIR]\n"
	           "The whole civicmq system on loopback (what `make demo` runs).\n"
	           "  --src DIR    source tree (config/, certs/) (default .)\n"
	           "  --build DIR  build directory with the plugin, gateway and tools "
	           "(default build)\n"
	           "  --out DIR    where the PKI, logs and summary.json go (default "
	           "<build>/demo)\n"
	           "Exit codes: 0 every check held, 1 a check failed, 2 usage error or the system "
	           "did not start.\n");
}

static int absolute(const char *in, char *out, size_t n)
{
	char buf[4096];

	if (realpath(in, buf) == NULL) {
		fprintf(stderr, PROG ": %s: %s\n", in, strerror(errno));
		return -1;
	}
	if (strlen(buf) >= n - 64) {
		fprintf(stderr, PROG ": %s: path too long\n", buf);
		return -1;
	}
	memcpy(out, buf, strlen(buf) + 1);
	return 0;
}

int main(int argc, char **argv)
{
	static struct demo d;
	const char *src = ".", *build = "build", *out = NULL;
	char outbuf[CMQ_H_PATH_MAX];
	struct cmq_canary_set *set;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (i + 1 < argc && strcmp(argv[i], "--src") == 0) {
			src = argv[++i];
		} else if (i + 1 < argc && strcmp(argv[i], "--build") == 0) {
			build = argv[++i];
		} else if (i + 1 < argc && strcmp(argv[i], "--out") == 0) {
			out = argv[++i];
		} else {
			fprintf(stderr, PROG ": unknown or incomplete option \"%s\"\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (out == NULL) {
		snprintf(outbuf, sizeof(outbuf), "%s/demo", build);
		out = outbuf;
	}
	if (mkdir(out, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, PROG ": cannot make %s: %s\n", out, strerror(errno));
		return 2;
	}
	if (absolute(src, d.src, sizeof(d.src)) != 0 ||
	    absolute(build, d.build, sizeof(d.build)) != 0 ||
	    absolute(out, d.out, sizeof(d.out)) != 0)
		return 2;
	snprintf(d.sim, sizeof(d.sim), "%s/civicmq-sim", d.build);
	snprintf(d.dash, sizeof(d.dash), "%s/civicmq-dash", d.build);
	snprintf(d.admin_exe, sizeof(d.admin_exe), "%s/civicmq-admin", d.build);
	if (access(d.sim, X_OK) != 0 || access(d.dash, X_OK) != 0 ||
	    access(d.admin_exe, X_OK) != 0) {
		fprintf(stderr, PROG ": %s, %s or %s is missing (run make)\n", d.sim, d.dash,
		        d.admin_exe);
		return 2;
	}
	setenv("CMQ_SRC", d.src, 1);
	setenv("CMQ_BUILD", d.build, 1);
	d.started = time(NULL);
	d.dashboard = (struct reader){.user = "dashboard",
	                              .client_id = "dashboard-demo",
	                              .topic = "city/#",
	                              .story = "the public dashboard"};
	d.lez = (struct reader){.user = "lez-office",
	                        .client_id = "lez-office-demo",
	                        .topic = "city/+/anpr",
	                        .story = "the low-emission-zone office"};
	cmq_h_init();
	set = cmq_canary_new();
	if (set == NULL) {
		fprintf(stderr, PROG ": out of memory\n");
		return 2;
	}
	printf("civicmq demo: a broker with the plugin, the scrubbing gateway, sensors of three\n"
	       "vendors (trusted, restricted, blocked) and a dashboard, all on 127.0.0.1.\n");
	if (start(&d) != 0) {
		fprintf(stderr, PROG ": the system did not start (logs above and in %s)\n", d.out);
		stop_all(&d);
		cmq_canary_free(set);
		return 2;
	}
	refusals(&d);
	traffic(&d, set);
	settle(&d);
	stop_readers(&d);
	scan_reader(&d, &d.dashboard, set);
	scan_reader(&d, &d.lez, set);
	before_after(&d);
	show_register(&d);
	administer(&d);
	if (d.leaks > 0)
		fail(&d, "%zu dashboard messages carried personal data", d.leaks);
	if (d.dashboard.energy != 10)
		fail(&d, "city/north/energy carried %ld messages; expected resident-0001's 10",
		     d.dashboard.energy);
	if (d.dashboard.anpr != 0 || d.lez.anpr != 30)
		fail(&d,
		     "city/north/anpr reached the dashboard %ld times and the enforcement office "
		     "%ld times; expected 0 and 30",
		     d.dashboard.anpr, d.lez.anpr);
	if (d.m.by_reason[CMQ_DROP_NO_CONSENT] != 10)
		fail(&d, "the gateway dropped %lld messages for missing consent; expected 10",
		     d.m.by_reason[CMQ_DROP_NO_CONSENT]);
	if (d.dashboard.aggregates == 0)
		fail(&d, "no crowd aggregate reached the dashboard");
	stop_all(&d);
	summary(&d);
	write_summary_json(&d);
	cmq_canary_free(set);
	return d.failed == 0 ? 0 : 1;
}
