/*
 * bench_common.h - what the civicmq benchmarks share: the generated large policy, minimal
 * vendor and operator files for in-process decisions, a monotonic clock, medians, CPU
 * pinning, command-line numbers and temporary directories. What only the benchmarks that
 * drive a real broker need is in bench_client.h; callgrind control is in bench_callgrind.h.
 *
 * Every bench/<name>.c file is its own program (the Makefile links bench/<name>.o with the
 * integration helpers and the core library), so shared code lives here as static inline
 * functions rather than in a separate object.
 *
 * The generated policy is the example city's policy (config/policy.json under $CMQ_SRC,
 * default ".") with its topic rules kept and bench rules added in front of them until the
 * policy holds the requested number of rules in total. Bench rule g of n is
 * "raw/d<g % D>/k<g / D>/+" with D = min(100, ceil(sqrt(n))) districts, so the trie fans out
 * at two levels (100 districts of ~1,000 kinds at 100,000 rules). The example rules come
 * last in the file: a linear scan (acl_file, dynamic-security) visits every bench rule
 * before it reaches "raw/+/air/+", as it does for every denial. The file is streamed with
 * stdio; only the small example is parsed, so writing it costs almost no memory.
 *
 * Helpers that can fail say why on stderr, prefixed with prog (the program's name), so that
 * a message names the benchmark that failed.
 *
 * Needs _GNU_SOURCE defined before the first include (CPU sets). Thread: single-threaded
 * helpers.
 */
#ifndef CMQ_BENCH_COMMON_H
#define CMQ_BENCH_COMMON_H

#include <errno.h>
#include <json-c/json.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>

#define BENCH_MAX_DISTRICTS 100

/* Payload and identities used by every benchmark. */
#define BENCH_DEVICE       "civitas-air-001"
#define BENCH_DEVICE_TOPIC "raw/north/air/civitas-air-001"
#define BENCH_CITY_TOPIC   "city/north/air"
#define BENCH_CITY_FILTER  "city/+/air"
#define BENCH_EXAMPLE_RULE "air-quality" /* the rule BENCH_DEVICE_TOPIC must resolve to */

/*
 * The typical gateway message: a FIWARE AirQualityObserved document from BENCH_DEVICE
 * (291 bytes as below). The example city's air-quality profile keeps the pollutants,
 * airQualityIndex, temperature and relativeHumidity as they are, coarsens dateObserved to
 * 5 minutes and turns the location into a geohash; "id" (which names the device) and
 * "type" are dropped. BENCH_AIR_FMT is the same document with airQualityIndex and
 * temperature as %llu: gateway_e2e sends a sequence number and the send time (ns) there,
 * two fields that survive the scrub unchanged.
 */
#define BENCH_AIR_HEAD                                                                             \
	"{\"id\":\"urn:ngsi-ld:AirQualityObserved:" BENCH_DEVICE                                   \
	"\",\"type\":\"AirQualityObserved\","                                                      \
	"\"dateObserved\":\"2026-11-28T10:07:31Z\",\"location\":{\"type\":\"Point\","              \
	"\"coordinates\":[4.402771,51.219448]},"                                                   \
	"\"no2\":41.3,\"pm10\":18.2,\"pm25\":9.7,\"o3\":52.1,"
#define BENCH_AIR_JSON                                                                             \
	BENCH_AIR_HEAD "\"airQualityIndex\":37,\"temperature\":7.4,\"relativeHumidity\":0.81}"
#define BENCH_AIR_FMT                                                                              \
	BENCH_AIR_HEAD "\"airQualityIndex\":%llu,\"temperature\":%llu,\"relativeHumidity\":0.81}"

/* vendors.json and operators.json for in-process decisions (no CA bundle: pins are not
 * resolved, which decisions do not need). Fingerprints are arbitrary but well-formed. */
static const char bench_vendors_json[] =
    "{\"vendors\": [\n"
    " {\"id\": \"civitas\", \"name\": \"Civitas Sensing Ltd\", \"tier\": \"trusted\",\n"
    "  \"device_id_prefix\": \"civitas-\",\n"
    "  \"ca_sha256\": [\"3A1F5C0B9E2247D86A11C38EF0527B940DE631A85F72C904B71E68AF23D0954C\"],\n"
    "  \"categories\": [\"environment\", \"mobility\", \"energy\", \"safety\"]},\n"
    " {\"id\": \"nimbus\", \"name\": \"Nimbus Weather Co\", \"tier\": \"restricted\",\n"
    "  \"device_id_prefix\": \"nimbus-\",\n"
    "  \"ca_sha256\": [\"B2770E9A41C518F36D2BE09457AC037FC81D65B92EF4803ADC17496EA205BB91\"],\n"
    "  \"categories\": [\"environment\", \"mobility\"]}\n"
    "]}\n";

static const char bench_operators_json[] =
    "{\"operators\": [\n"
    " {\"username\": \"gateway\", \"role\": \"gateway\", \"certificate\": true},\n"
    " {\"username\": \"dashboard\", \"role\": \"dashboard\", \"certificate\": true}\n"
    "]}\n";

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time (user and system) this process has used, all its threads, ns; -1 if unknown. */
static inline long long bench_self_cpu_ns(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return -1;
	return ((long long)ru.ru_utime.tv_sec + (long long)ru.ru_stime.tv_sec) * 1000000000LL +
	       ((long long)ru.ru_utime.tv_usec + (long long)ru.ru_stime.tv_usec) * 1000LL;
}

/* Median of v[0..n) (sorts v in place); 0 for n == 0. */
static inline double bench_median(double *v, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		double x = v[i];
		size_t j = i;

		for (; j > 0 && v[j - 1] > x; j--)
			v[j] = v[j - 1];
		v[j] = x;
	}
	if (n == 0)
		return 0;
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Pin the calling thread (and the threads and processes it creates later) to one CPU.
 * Needs _GNU_SOURCE before the first include. Returns 0, or -1 if the CPU does not exist. */
static inline int bench_pin_cpu(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

/* bench_pin_cpu(cpu), saying why on stderr if it fails. With pin false (one CPU online, where
 * the broker benchmarks run unpinned) it does nothing. Returns 0 or -1. */
static inline int bench_pin_to(const char *prog, bool pin, int cpu)
{
	if (!pin)
		return 0;
	if (bench_pin_cpu(cpu) != 0) {
		fprintf(stderr, "%s: cannot pin to CPU %d: %s\n", prog, cpu, strerror(errno));
		return -1;
	}
	return 0;
}

/* Whether the CPUs pid may run on are exactly {cpu}: a pinning that did not hold would make
 * the broker and its load generator compete. 0, or -1 with "<what> <pid> is not pinned". */
static inline int bench_check_pinned(const char *prog, pid_t pid, int cpu, const char *what)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	if (sched_getaffinity(pid, sizeof(set), &set) != 0 || CPU_COUNT(&set) != 1 ||
	    !CPU_ISSET(cpu, &set)) {
		fprintf(stderr, "%s: %s %d is not pinned to CPU %d\n", prog, what, (int)pid, cpu);
		return -1;
	}
	return 0;
}

/* Smallest and largest of v[0..n); n must be at least 1. */
static inline double bench_min(const double *v, size_t n)
{
	double m = v[0];

	for (size_t i = 1; i < n; i++)
		m = v[i] < m ? v[i] : m;
	return m;
}

static inline double bench_max(const double *v, size_t n)
{
	double m = v[0];

	for (size_t i = 1; i < n; i++)
		m = v[i] > m ? v[i] : m;
	return m;
}

/* s as a whole number from min to max into *out (unchanged on failure). Only digits: strtoull
 * alone would take "-1" or " 5". Returns 0, or -1 after saying what is valid. */
static inline int bench_parse_size(const char *prog, const char *s, size_t min, size_t max,
                                   size_t *out)
{
	char *end = NULL;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || errno != 0 || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "%s: \"%s\" is not a whole number from %zu to %zu\n", prog, s, min,
		        max);
		return -1;
	}
	*out = (size_t)v;
	return 0;
}

/* A fresh directory <base>/<name>-XXXXXX (base NULL: $TMPDIR, else /tmp), its path in
 * dir[0..size). Returns 0, or -1 with a message and dir[0] == '\0' (nothing to remove). */
static inline int bench_mkdtemp(const char *prog, const char *base, const char *name, char *dir,
                                size_t size)
{
	if (base == NULL)
		base = getenv("TMPDIR");
	snprintf(dir, size, "%s/%s-XXXXXX", base ? base : "/tmp", name);
	if (mkdtemp(dir) == NULL) {
		fprintf(stderr, "%s: mkdtemp %s: %s\n", prog, dir, strerror(errno));
		dir[0] = '\0';
		return -1;
	}
	return 0;
}

/* rm -rf dir, unless dir is "" or CMQ_KEEP_TMP is set (to read logs and dumps afterwards).
 * A failure is only reported: the results stand. */
static inline void bench_remove_tree(const char *prog, const char *dir)
{
	char cmd[1200]; /* the benchmarks' paths are shorter than 1,024 bytes */

	if (dir[0] == '\0' || getenv("CMQ_KEEP_TMP") != NULL)
		return;
	/* Never run rm -rf on a truncated path. */
	if (snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir) >= (int)sizeof(cmd) || system(cmd) != 0)
		fprintf(stderr, "%s: could not remove %s\n", prog, dir);
}

/* Districts used for n bench rules. */
static inline size_t bench_districts(size_t n)
{
	size_t d = 1;

	/* ceil(sqrt(n)) without libm, capped. */
	while (d < BENCH_MAX_DISTRICTS && d * d < n)
		d++;
	return d;
}

/* The raw pattern (with_device false: "raw/dX/kY/+") or a topic for it (with_device true:
 * "raw/dX/kY/<BENCH_DEVICE>") of bench rule g of n. */
static inline void bench_rule_topic(size_t g, size_t n, bool with_device, char *buf, size_t buflen)
{
	size_t d = bench_districts(n);

	snprintf(buf, buflen, "raw/d%zu/k%zu/%s", g % d, g / d, with_device ? BENCH_DEVICE : "+");
}

/* The example policy (caller puts it), or NULL with a message on stderr. */
static inline struct json_object *bench_example_policy(void)
{
	const char *src = getenv("CMQ_SRC");
	char path[1024];
	struct json_object *o;

	snprintf(path, sizeof(path), "%s/config/policy.json", src ? src : ".");
	o = json_object_from_file(path);
	if (o == NULL)
		fprintf(stderr, "bench: cannot parse %s (set CMQ_SRC to the source tree)\n", path);
	return o;
}

/*
 * Write a policy.json holding total_rules topic rules (the example's last) to f.
 * *n_bench gets the number of bench rules. Returns 0, or -1 (message on stderr) if the
 * example cannot be read, total_rules is smaller than the example's rule count, or a write
 * fails.
 */
static inline int bench_write_policy(FILE *f, size_t total_rules, size_t *n_bench)
{
	struct json_object *ex = bench_example_policy(), *rules = NULL;
	size_t n_example, n;
	bool first = true;
	int rc = -1;

	*n_bench = 0;
	if (ex == NULL)
		return -1;
	if (!json_object_object_get_ex(ex, "topic_rules", &rules) ||
	    !json_object_is_type(rules, json_type_array)) {
		fprintf(stderr, "bench: the example policy has no topic_rules array\n");
		goto out;
	}
	n_example = json_object_array_length(rules);
	if (total_rules < n_example) {
		fprintf(stderr, "bench: %zu rules requested; the example alone has %zu\n",
		        total_rules, n_example);
		goto out;
	}
	n = total_rules - n_example;
	fputs("{\n", f);
	json_object_object_foreach(ex, key, val)
	{
		if (strcmp(key, "topic_rules") == 0)
			continue;
		fprintf(f, "%s", first ? "" : ",\n");
		first = false;
		fprintf(f, "\"%s\": %s", key,
		        json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN));
	}
	fprintf(f, "%s\"topic_rules\": [\n", first ? "" : ",\n");
	for (size_t g = 0; g < n; g++) {
		size_t d = bench_districts(n);

		fprintf(
		    f,
		    "{\"id\": \"bench-%zu\", \"raw\": \"raw/d%zu/k%zu/+\", \"class\": \"public\", "
		    "\"category\": \"environment\", \"purpose\": \"Benchmark rule %zu\", "
		    "\"retention\": \"P30D\", \"profile\": \"air-quality\", "
		    "\"scrubbed\": \"city/d%zu/k%zu\"},\n",
		    g, g % d, g / d, g, g % d, g / d);
	}
	for (size_t i = 0; i < n_example; i++)
		fprintf(f, "%s%s\n",
		        json_object_to_json_string_ext(json_object_array_get_idx(rules, i),
		                                       JSON_C_TO_STRING_PLAIN),
		        i + 1 < n_example ? "," : "");
	fputs("]\n}\n", f);
	if (ferror(f)) {
		fprintf(stderr, "bench: writing the policy failed\n");
		goto out;
	}
	*n_bench = n;
	rc = 0;
out:
	json_object_put(ex);
	return rc;
}

/* Write text to path; 0 or -1 (message on stderr). */
static inline int bench_write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	bool ok;

	if (f == NULL) {
		fprintf(stderr, "bench: cannot write %s\n", path);
		return -1;
	}
	ok = fputs(text, f) >= 0;
	ok &= fclose(f) == 0;
	if (!ok)
		fprintf(stderr, "bench: cannot write %s\n", path);
	return ok ? 0 : -1;
}

#endif
