/*
 * scrub_bench.c - what the gateway spends on one message in process: cmq_pipeline_run
 * (rule lookup, district and provenance checks, size check and parse, consent where the
 * category is resident-linked, the scrub profile, serialisation, the identifier guard)
 * on FIWARE-like documents of the example city, and the parse / apply / serialise parts
 * of the typical profile on their own.
 *
 *   scrub_bench [-n BATCH] [-k BATCHES]
 *       µs per message: each measurement times BATCH messages (default 20,000) with
 *       CLOCK_MONOTONIC; BATCHES rounds (default 7) run every measurement once per round,
 *       interleaved, so other load on the machine hits them alike; the table gives the
 *       median and the range. Markdown on stdout.
 *   scrub_bench callgrind N
 *       runs every bench_* function below exactly once on N messages and prints
 *       "<function> <messages> <title>" lines. Run it as
 *           valgrind --tool=callgrind --instr-atstart=no --toggle-collect='bench_*' \
 *               scrub_bench callgrind N
 *       so that only the measured loops are counted (bench/run.sh divides and tabulates).
 *
 * The city is the example one: $CMQ_SRC/config/policy.json and config/vendors.json (and
 * config/operators.json, which the pipeline does not use; no CA bundle: nothing here needs
 * pins), a pseudonym key from a fixed secret
 * (cmq_pseudo_new), and a consent table loaded from a temporary consent.json in which
 * resident-0001 opted in to "energy". Time is fixed (env.now), so the pseudonym epoch and
 * every output are the same from run to run. Messages, each with the provenance stamp the
 * plugin would have added ("civitas/<device>/trusted/<policy stamp>"):
 *   air-quality  the typical profile: bench_common.h's 291-byte AirQualityObserved (keep 7
 *                fields, coarsen_time, geohash)
 *   anpr         an AnprFlowObserved whose plate is pseudonymised (HMAC) and whose notes
 *                are redacted for plates; image and vehicle details dropped
 *   smart-meter  consent lookup of the resident, meter id pseudonymised, power rounded
 *   footfall     a people count rounded, MAC addresses redacted from free text
 * Before anything is timed every message must come out FORWARD on its city/ topic, with
 * the fields the profile keeps and without the identifiers it removes; anything else
 * exits 1 (and so does a timed loop that forwards less than it ran).
 *
 * The parts of the air-quality profile: "parse" is cmq_scrub_parse and freeing the tree,
 * "apply" cmq_scrub_apply on a tree parsed once and freeing its output, "serialise"
 * json_object_to_json_string_length on an output built once (json-c reuses the object's
 * print buffer from the second call on, which the pipeline's fresh output cannot). What
 * the pipeline costs beyond the three is the rule lookup, the checks, the identifier
 * guard and the allocator.
 *
 * Single-threaded; pinned to the last CPU.
 */
#define _GNU_SOURCE
#include "bench_common.h"

#include "bench_callgrind.h"

#include "acl.h"
#include "consent.h"
#include "diag.h"
#include "error.h"
#include "pipeline.h"
#include "policy.h"
#include "pseudo.h"
#include "scrub.h"

#include <errno.h>
#include <unistd.h>

#define PROG            "scrub_bench" /* prefixes its messages */
#define DEFAULT_BATCH   20000u
#define DEFAULT_BATCHES 7u
#define MAX_BATCHES     101u
#define PATH_LEN        1024
#define BENCH_NOW       INT64_C(1795860000) /* 2026-11-28, a fixed pseudonym epoch */
#define GOAL_US         10.0                /* the typical profile, per message */

static const uint8_t bench_secret[32] = {
    0x63, 0x69, 0x76, 0x69, 0x63, 0x6d, 0x71, 0x2d, 0x62, 0x65, 0x6e, 0x63, 0x68, 0x2d, 0x6b, 0x65,
    0x79, 0x2d, 0x30, 0x30, 0x30, 0x31, 0x2d, 0x66, 0x69, 0x78, 0x65, 0x64, 0x21, 0x21, 0x21, 0x21};

static const char consent_json[] = "{\"version\": 1, \"residents\": [\n"
                                   " {\"id\": \"resident-0001\", \"categories\": [\"energy\"]},\n"
                                   " {\"id\": \"resident-0002\", \"categories\": []}\n"
                                   "]}\n";

/* ---- the messages ---- */

enum msg_id { MSG_AIR, MSG_ANPR, MSG_METER, MSG_FOOTFALL, MSG__COUNT };

struct msg {
	const char *profile; /* the rule and profile it must resolve to */
	const char *what;    /* row title */
	const char *device;
	const char *topic;
	const char *city_topic; /* the scrubbed topic expected */
	const char *payload;
	const char *keep[3]; /* must appear in the output (NULL-terminated) */
	const char *gone[4]; /* must not appear in the output (NULL-terminated) */
};

static const struct msg msgs[MSG__COUNT] = {
    {"air-quality",
     "air-quality (the typical profile): AirQualityObserved",
     BENCH_DEVICE,
     BENCH_DEVICE_TOPIC,
     BENCH_CITY_TOPIC,
     BENCH_AIR_JSON,
     {"\"no2\":41.3", "\"relativeHumidity\":0.81", NULL},
     {BENCH_DEVICE, "4.402771", "10:07:31", NULL}},
    {"anpr",
     "anpr: AnprFlowObserved, plate pseudonymised",
     "civitas-anpr-001",
     "raw/north/anpr/civitas-anpr-001",
     "city/north/anpr",
     "{\"id\":\"urn:ngsi-ld:AnprFlowObserved:civitas-anpr-001:20261128T100731-0042\","
     "\"type\":\"AnprFlowObserved\",\"dateObserved\":\"2026-11-28T10:07:31Z\","
     "\"location\":{\"type\":\"Point\",\"coordinates\":[4.398112,51.21793]},"
     "\"observedVehicle\":{\"licensePlate\":{\"identifier\":\"1-ABC-234\",\"country\":\"BE\"},"
     "\"direction\":\"inbound\",\"vehicleType\":\"car\",\"colour\":\"grey\"},"
     "\"vehiclePlateNotRead\":false,"
     "\"image\":\"https://cam.civitas.example/anpr-001/0042.jpg\","
     "\"notes\":\"lane 2, plate 1-ABC-234 read twice\"}",
     {"\"direction\":\"inbound\"", "\"licensePlate\"", NULL},
     {"civitas-anpr-001", "1-ABC-234", ".jpg", NULL}},
    {"smart-meter",
     "smart-meter: consent + meter id pseudonymised",
     "civitas-meter-001",
     "raw/north/meter/civitas-meter-001",
     "city/north/energy",
     "{\"id\":\"urn:ngsi-ld:EnergyMeterReading:civitas-meter-001\","
     "\"type\":\"EnergyMeterReading\",\"residentId\":\"resident-0001\","
     "\"meterId\":\"EAN-541448820056012345\",\"activePower\":1234.5,"
     "\"reactivePower\":88.1,\"voltage\":231.2,\"dateObserved\":\"2026-11-28T10:07:31Z\"}",
     {"\"activePower\":1200", NULL},
     {"civitas-meter-001", "resident-0001", "541448820056012345", NULL}},
    {"footfall",
     "footfall: count rounded, MAC addresses redacted",
     "civitas-wifi-001",
     "raw/north/footfall/civitas-wifi-001",
     "city/north/footfall",
     "{\"id\":\"urn:ngsi-ld:CrowdFlowObserved:civitas-wifi-001\","
     "\"type\":\"CrowdFlowObserved\",\"dateObserved\":\"2026-11-28T10:07:31Z\","
     "\"location\":{\"type\":\"Point\",\"coordinates\":[4.40012,51.218402]},"
     "\"peopleCount\":137,\"notes\":\"busiest 00:1A:2B:3C:4D:5E and a4:5e:60:e1:22:9b\","
     "\"macAddresses\":[\"00:1A:2B:3C:4D:5E\",\"a4:5e:60:e1:22:9b\"]}",
     {"\"peopleCount\":135", NULL},
     {"civitas-wifi-001", "00:1A:2B", "a4:5e:60", NULL}},
};

struct ctx {
	char dir[PATH_LEN];
	char consent_path[PATH_LEN + 32];
	struct cmq_policy *policy;
	struct cmq_consent *consent;
	struct cmq_pseudo *pseudo;
	struct cmq_pipeline pl;
	char prov[MSG__COUNT][CMQ_PROVENANCE_MAX];
	size_t topic_len[MSG__COUNT];
	size_t len[MSG__COUNT];
	size_t out_len[MSG__COUNT];
	const struct cmq_profile *air_profile;
	uint32_t air_max_payload;
	struct json_object *air_in;  /* parsed once (apply) */
	struct json_object *air_out; /* scrubbed once (serialise) */
};

/* ---- setup and checks ---- */

static int setup(struct ctx *c)
{
	const char *src = getenv("CMQ_SRC");
	char policy[PATH_LEN], vendors[PATH_LEN], operators[PATH_LEN];
	struct cmq_policy_files files = {policy, vendors, operators, NULL};
	struct cmq_diag d;
	int rc;

	memset(c, 0, sizeof(*c));
	snprintf(policy, sizeof(policy), "%s/config/policy.json", src ? src : ".");
	snprintf(vendors, sizeof(vendors), "%s/config/vendors.json", src ? src : ".");
	/* The gateway loads no operators; the loader may want the file, which costs nothing
	 * per message. */
	snprintf(operators, sizeof(operators), "%s/config/operators.json", src ? src : ".");
	cmq_diag_init(&d);
	rc = cmq_policy_load(&files, &d, &c->policy);
	if (rc != CMQ_OK || d.errors > 0) {
		fprintf(stderr,
		        "scrub_bench: %s does not load (%s); set CMQ_SRC to the source "
		        "tree\n",
		        policy, cmq_strerror(rc));
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "  %s\n", d.entries[i].text);
		cmq_diag_cleanup(&d);
		return -1;
	}
	cmq_diag_cleanup(&d);

	if (bench_mkdtemp(PROG, NULL, "cmq-scrub-bench", c->dir, sizeof(c->dir)) != 0)
		return -1;
	snprintf(c->consent_path, sizeof(c->consent_path), "%s/consent.json", c->dir);
	if (bench_write_file(c->consent_path, consent_json) != 0)
		return -1;
	cmq_diag_init(&d);
	rc = cmq_consent_load(c->consent_path, c->policy, &d, &c->consent);
	if (rc != CMQ_OK) {
		fprintf(stderr, "scrub_bench: the bench consent.json does not load: %s\n",
		        cmq_strerror(rc));
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "  %s\n", d.entries[i].text);
		cmq_diag_cleanup(&d);
		return -1;
	}
	cmq_diag_cleanup(&d);
	rc = cmq_pseudo_new(bench_secret, CMQ_PSEUDO_DEFAULT_EPOCH, &c->pseudo);
	if (rc != CMQ_OK) {
		fprintf(stderr, "scrub_bench: cmq_pseudo_new: %s\n", cmq_strerror(rc));
		return -1;
	}
	c->pl.policy = c->policy;
	c->pl.consent = c->consent;
	c->pl.env.pseudo = c->pseudo;
	c->pl.env.now = BENCH_NOW;
	c->pl.max_depth = CMQ_PIPELINE_MAX_DEPTH;
	for (int m = 0; m < MSG__COUNT; m++) {
		snprintf(c->prov[m], sizeof(c->prov[m]), "civitas/%s/trusted/%s", msgs[m].device,
		         c->policy->stamp);
		c->topic_len[m] = strlen(msgs[m].topic);
		c->len[m] = strlen(msgs[m].payload);
	}
	return 0;
}

static void teardown(struct ctx *c)
{
	json_object_put(c->air_in);
	json_object_put(c->air_out);
	cmq_pseudo_free(c->pseudo);
	cmq_consent_free(c->consent);
	cmq_policy_free(c->policy);
	if (c->consent_path[0] != '\0')
		unlink(c->consent_path);
	if (c->dir[0] != '\0' && rmdir(c->dir) != 0)
		fprintf(stderr, "scrub_bench: could not remove %s\n", c->dir);
}

/* Every message must be forwarded as expected; prepares the part measurements. 0 or -1. */
static int check(struct ctx *c)
{
	int bad = 0;

	for (int m = 0; m < MSG__COUNT; m++) {
		const struct msg *g = &msgs[m];
		struct cmq_pipeline_result res;
		enum cmq_outcome o = cmq_pipeline_run(&c->pl, g->topic, c->topic_len[m], g->payload,
		                                      c->len[m], c->prov[m], &res);

		if (o != CMQ_OUTCOME_FORWARD) {
			fprintf(stderr, "scrub_bench: %s: expected FORWARD, got %s (%s%s%s%s%s)\n",
			        g->topic, o == CMQ_OUTCOME_DROP ? "DROP" : "ABSORB",
			        cmq_drop_name(res.reason), res.fail.path[0] ? " at " : "",
			        res.fail.path, res.fail.detail[0] ? ": " : "", res.fail.detail);
			bad++;
			cmq_pipeline_result_cleanup(&res);
			continue;
		}
		if (res.profile == NULL || strcmp(res.profile->id, g->profile) != 0 ||
		    strcmp(res.topic, g->city_topic) != 0) {
			fprintf(stderr,
			        "scrub_bench: %s: went to %s with profile %s, expected %s, %s\n",
			        g->topic, res.topic, res.profile ? res.profile->id : "(none)",
			        g->city_topic, g->profile);
			bad++;
		}
		for (int i = 0; g->keep[i] != NULL; i++) {
			if (strstr(res.payload, g->keep[i]) == NULL) {
				fprintf(stderr, "scrub_bench: %s: output lacks %s: %s\n", g->topic,
				        g->keep[i], res.payload);
				bad++;
			}
		}
		for (int i = 0; g->gone[i] != NULL; i++) {
			if (strstr(res.payload, g->gone[i]) != NULL) {
				fprintf(stderr, "scrub_bench: %s: output still holds %s: %s\n",
				        g->topic, g->gone[i], res.payload);
				bad++;
			}
		}
		c->out_len[m] = res.payload_len;
		if (m == MSG_AIR) {
			c->air_profile = res.profile;
			c->air_max_payload = res.rule->max_payload;
		}
		if (getenv("CMQ_BENCH_VERBOSE") != NULL)
			fprintf(stderr, "scrub_bench: %s -> %s %s\n", g->topic, res.topic,
			        res.payload);
		cmq_pipeline_result_cleanup(&res);
	}
	if (bad)
		return -1;

	/* The parts, on their own. */
	if (cmq_scrub_parse(msgs[MSG_AIR].payload, c->len[MSG_AIR], c->air_max_payload,
	                    CMQ_PIPELINE_MAX_DEPTH, &c->air_in) != CMQ_DROP_NONE ||
	    c->air_in == NULL) {
		fprintf(stderr, "scrub_bench: cmq_scrub_parse refuses the air document\n");
		return -1;
	}
	{
		struct cmq_scrub_agg agg;
		struct cmq_scrub_fail fail;
		const char *s;
		size_t n = 0;

		memset(&fail, 0, sizeof(fail));
		if (cmq_scrub_apply(c->air_profile, c->air_in, &c->pl.env, &c->air_out, &agg,
		                    &fail) != CMQ_DROP_NONE ||
		    c->air_out == NULL) {
			fprintf(stderr,
			        "scrub_bench: cmq_scrub_apply refuses the air document: %s\n",
			        cmq_drop_name(fail.reason));
			return -1;
		}
		s = json_object_to_json_string_length(
		    c->air_out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
		if (s == NULL || n != c->out_len[MSG_AIR]) {
			fprintf(stderr,
			        "scrub_bench: apply + serialise gives %zu bytes, the pipeline "
			        "%zu\n",
			        n, c->out_len[MSG_AIR]);
			return -1;
		}
	}
	return 0;
}

/*
 * The measured functions. callgrind counts what runs inside bench_* (--toggle-collect), so
 * each is a separate, never-inlined function that no other bench_* function calls, reached
 * through the table below; BENCH_FN (bench_callgrind.h) keeps them out of line. Each
 * returns how many of its n messages succeeded.
 */

static inline __attribute__((always_inline)) size_t pipeline_loop(struct ctx *c, int m, size_t n)
{
	const struct msg *g = &msgs[m];
	size_t ok = 0;

	for (size_t i = 0; i < n; i++) {
		struct cmq_pipeline_result res;

		ok += cmq_pipeline_run(&c->pl, g->topic, c->topic_len[m], g->payload, c->len[m],
		                       c->prov[m], &res) == CMQ_OUTCOME_FORWARD;
		cmq_pipeline_result_cleanup(&res);
	}
	return ok;
}

BENCH_FN static size_t bench_air(struct ctx *c, size_t n)
{
	return pipeline_loop(c, MSG_AIR, n);
}

BENCH_FN static size_t bench_air_parse(struct ctx *c, size_t n)
{
	size_t ok = 0;

	for (size_t i = 0; i < n; i++) {
		struct json_object *in = NULL;

		ok += cmq_scrub_parse(msgs[MSG_AIR].payload, c->len[MSG_AIR], c->air_max_payload,
		                      CMQ_PIPELINE_MAX_DEPTH, &in) == CMQ_DROP_NONE;
		json_object_put(in);
	}
	return ok;
}

BENCH_FN static size_t bench_air_apply(struct ctx *c, size_t n)
{
	size_t ok = 0;

	for (size_t i = 0; i < n; i++) {
		struct json_object *out = NULL;
		struct cmq_scrub_agg agg;
		struct cmq_scrub_fail fail;

		ok += cmq_scrub_apply(c->air_profile, c->air_in, &c->pl.env, &out, &agg, &fail) ==
		          CMQ_DROP_NONE &&
		      out != NULL;
		json_object_put(out);
	}
	return ok;
}

BENCH_FN static size_t bench_air_serialise(struct ctx *c, size_t n)
{
	size_t ok = 0;

	for (size_t i = 0; i < n; i++) {
		size_t len = 0;

		ok += json_object_to_json_string_length(
		          c->air_out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
		          &len) != NULL &&
		      len == c->out_len[MSG_AIR];
	}
	return ok;
}

BENCH_FN static size_t bench_anpr(struct ctx *c, size_t n)
{
	return pipeline_loop(c, MSG_ANPR, n);
}

BENCH_FN static size_t bench_meter(struct ctx *c, size_t n)
{
	return pipeline_loop(c, MSG_METER, n);
}

BENCH_FN static size_t bench_footfall(struct ctx *c, size_t n)
{
	return pipeline_loop(c, MSG_FOOTFALL, n);
}

typedef size_t (*bench_fn)(struct ctx *, size_t);

/* Rows of the tables, in order. msg: whose bytes the row reports (-1: a part). */
static const struct {
	const char *name; /* function name, as callgrind reports it */
	const char *title;
	bench_fn fn;
	int msg;
} rows[] = {
    {"bench_air", NULL, bench_air, MSG_AIR},
    {"bench_air_parse", "- parse only (cmq_scrub_parse, free the tree)", bench_air_parse, -1},
    {"bench_air_apply", "- apply only (cmq_scrub_apply on a parsed tree, free the output)",
     bench_air_apply, -1},
    {"bench_air_serialise", "- serialise only (json-c, print buffer reused)", bench_air_serialise,
     -1},
    {"bench_anpr", NULL, bench_anpr, MSG_ANPR},
    {"bench_meter", NULL, bench_meter, MSG_METER},
    {"bench_footfall", NULL, bench_footfall, MSG_FOOTFALL},
};
#define N_ROWS (sizeof(rows) / sizeof(rows[0]))

static const char *row_title(size_t r)
{
	int m = rows[r].msg;

	return m >= 0 && m < MSG__COUNT ? msgs[m].what : rows[r].title;
}

/* ---- command line and the two modes ---- */

static void usage(void)
{
	fprintf(stderr, "usage: scrub_bench [-n BATCH] [-k BATCHES]\n"
	                "       scrub_bench callgrind N\n");
}

static int run_timed(struct ctx *c, size_t batch, size_t batches)
{
	static double us[N_ROWS][MAX_BATCHES];
	double med[N_ROWS];

	for (size_t k = 0; k < batches; k++) {
		for (size_t r = 0; r < N_ROWS; r++) {
			uint64_t t0 = bench_now_ns();
			size_t ok = rows[r].fn(c, batch);

			us[r][k] = (double)(bench_now_ns() - t0) / 1e3 / (double)batch;
			if (ok != batch) {
				fprintf(stderr, "scrub_bench: %s: %zu of %zu messages succeeded\n",
				        rows[r].name, ok, batch);
				return -1;
			}
		}
	}
	printf("| message | bytes in -> out | **µs per message** | min-max | messages/s on one "
	       "core |\n|---|---:|---:|---:|---:|\n");
	for (size_t r = 0; r < N_ROWS; r++) {
		double lo = bench_min(us[r], batches), hi = bench_max(us[r], batches);

		med[r] = bench_median(us[r], batches);
		if (rows[r].msg >= 0)
			printf("| %s | %zu -> %zu | **%.2f** | %.2f-%.2f | %.0f |\n", row_title(r),
			       c->len[rows[r].msg], c->out_len[rows[r].msg], med[r], lo, hi,
			       1e6 / med[r]);
		else
			printf("| %s | | %.2f | %.2f-%.2f | |\n", row_title(r), med[r], lo, hi);
	}
	printf("\nMedian of %zu batches of %zu messages each, batches interleaved. Typical "
	       "profile (air-quality): %.2f µs per message; goal <= %.0f µs: %s. Parse + apply "
	       "+ serialise = %.2f µs; the rest of the pipeline (rule lookup, checks, identifier "
	       "guard, freeing) %.2f µs.\n",
	       batches, batch, med[0], GOAL_US, med[0] <= GOAL_US ? "met" : "**missed**",
	       med[1] + med[2] + med[3], med[0] - (med[1] + med[2] + med[3]));
	return 0;
}

static int run_callgrind(struct ctx *c, size_t n)
{
	int rc = 0;

	BENCH_INSTRUMENT_ON();
	for (size_t r = 0; r < N_ROWS; r++) {
		size_t ok = rows[r].fn(c, n);

		if (ok != n) {
			fprintf(stderr, "scrub_bench: %s: %zu of %zu messages succeeded\n",
			        rows[r].name, ok, n);
			rc = -1;
		}
		printf("%s %zu %s\n", rows[r].name, n, row_title(r));
	}
	return rc;
}

int main(int argc, char **argv)
{
	static struct ctx c;
	size_t batch = DEFAULT_BATCH, batches = DEFAULT_BATCHES, cg = 0;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int rc;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL) {
			usage();
			return 2;
		}
		i++;
		if (strcmp(a, "-n") == 0)
			rc = bench_parse_size(PROG, v, 1, 100000000u, &batch);
		else if (strcmp(a, "-k") == 0)
			rc = bench_parse_size(PROG, v, 1, MAX_BATCHES, &batches);
		else if (strcmp(a, "callgrind") == 0)
			rc = bench_parse_size(PROG, v, 1, 100000000u, &cg);
		else
			rc = -1;
		if (rc != 0) {
			usage();
			return 2;
		}
	}
	if (ncpu > 1 && bench_pin_cpu((int)ncpu - 1) != 0)
		fprintf(stderr, "scrub_bench: cannot pin to CPU %ld: %s\n", ncpu - 1,
		        strerror(errno));
	rc = setup(&c) == 0 && check(&c) == 0 ? 0 : -1;
	if (rc == 0)
		rc = cg > 0 ? run_callgrind(&c, cg) : run_timed(&c, batch, batches);
	teardown(&c);
	if (rc != 0)
		fprintf(stderr, "scrub_bench: FAILED\n");
	return rc == 0 ? 0 : 1;
}
