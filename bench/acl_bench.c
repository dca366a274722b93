/*
 * acl_bench.c - cost of one civicmq ACL decision at 10, 1,000 and 100,000 topic rules, a
 * linear-scan reference measured in the same run, and the time and memory of loading a
 * large policy.
 *
 *   acl_bench decisions [-r RULES,RULES,...] [-n DECISIONS] [-k REPEATS]
 *       ns per decision (CLOCK_MONOTONIC over DECISIONS decisions, default 1,000,000;
 *       median of REPEATS runs, default 5) for each rule count (default 10,1000,100000),
 *       as a Markdown table on stdout. All rule counts are loaded at once and their runs
 *       interleaved, so that other load on the machine hits them alike.
 *   acl_bench callgrind RULES K
 *       runs every bench_* function below exactly once, each making K decisions (the linear
 *       scan fewer, see below), and prints "<function> <decisions> <title>" lines. Run it as
 *           valgrind --tool=callgrind --instr-atstart=no --toggle-collect='bench_*' \
 *               acl_bench callgrind N K
 *       so that only the decisions are counted (bench/run.sh divides and tabulates);
 *       instrumentation starts after the policy is loaded, which keeps 100,000 rules fast.
 *   acl_bench load RULES [-k REPEATS] [--header]
 *       wall time of cmq_policy_load in a fresh child process (as at broker start: the
 *       heap has to grow, page faults and all) and again in the same process (as at a
 *       reload), median of REPEATS children (default 3); the page faults and kernel time
 *       of the first load; bytes the loaded policy holds (a counting allocator installed
 *       with cmq_set_allocator) and the allocations it made; json-c's share (parsing the
 *       same file alone); the child's peak RSS. One Markdown table row (with the header if
 *       asked).
 *
 * The policy is bench_common.h's generated one (the example city plus bench rules, RULES
 * in total) with minimal vendor and operator files; no CA bundle is needed for decisions.
 * The decisions are those a broker makes per message and subscription: a device's WRITE on
 * its own raw topic (the hot path: one per message published), the gateway's READ of that
 * raw topic (one per delivery), a dashboard's READ of a city topic and a dashboard's
 * SUBSCRIBE. Every one is checked for its expected outcome, reason and rule before it is
 * timed, as are a few that must be denied; any surprise exits non-zero.
 *
 * The linear-scan reference is the acl_file / dynamic-security model: the device WRITE's
 * topic against each raw pattern in file order with libmosquitto's
 * mosquitto_topic_matches_sub() until one matches. The example rules come last, so it
 * visits all RULES patterns (as every denial would). It makes at most 10,000,000 pattern
 * comparisons per timed run, and at most 1,000,000 under callgrind, so it stays bounded.
 *
 * Single-threaded; pinned to the last CPU so the scheduler does not move it mid-run.
 */
#define _GNU_SOURCE
#include "bench_common.h"

#include "bench_callgrind.h"

#include "acl.h"
#include "alloc.h"
#include "diag.h"
#include "error.h"
#include "policy.h"
#include "trie.h"

#include <errno.h>
#include <mosquitto.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROG              "acl_bench" /* prefixes its messages */
#define DEFAULT_RULES     "10,1000,100000"
#define DEFAULT_DECISIONS 1000000u
#define DEFAULT_REPEATS   5u
#define LOAD_REPEATS      3u
#define MAX_REPEATS       101u
#define MAX_RULE_COUNTS   16
#define MAX_RULES         2000000u
#define LINEAR_BUDGET     10000000u /* pattern comparisons per timed linear run */
#define LINEAR_BUDGET_CG  1000000u  /* the same under callgrind */
#define BENCH_PATH_MAX    512

/* ---- the policy under test ---- */

struct bench_policy {
	char dir[BENCH_PATH_MAX];
	char policy[BENCH_PATH_MAX + 32];
	char vendors[BENCH_PATH_MAX + 32];
	char operators[BENCH_PATH_MAX + 32];
	size_t n_rules; /* in total */
	size_t n_bench; /* generated, in front of the example's */
	long long file_bytes;
	struct cmq_policy *p;
};

static int files_make(struct bench_policy *bp, size_t total_rules)
{
	struct stat st;
	FILE *f;
	int rc;

	memset(bp, 0, sizeof(*bp));
	bp->n_rules = total_rules;
	if (bench_mkdtemp(PROG, NULL, "cmq-acl-bench", bp->dir, sizeof(bp->dir)) != 0)
		return -1;
	snprintf(bp->policy, sizeof(bp->policy), "%s/policy.json", bp->dir);
	snprintf(bp->vendors, sizeof(bp->vendors), "%s/vendors.json", bp->dir);
	snprintf(bp->operators, sizeof(bp->operators), "%s/operators.json", bp->dir);
	f = fopen(bp->policy, "w");
	if (f == NULL) {
		fprintf(stderr, "acl_bench: %s: %s\n", bp->policy, strerror(errno));
		return -1;
	}
	rc = bench_write_policy(f, total_rules, &bp->n_bench);
	if (fclose(f) != 0)
		rc = -1;
	if (rc != 0 || bench_write_file(bp->vendors, bench_vendors_json) != 0 ||
	    bench_write_file(bp->operators, bench_operators_json) != 0)
		return -1;
	if (stat(bp->policy, &st) == 0)
		bp->file_bytes = (long long)st.st_size;
	return 0;
}

static void files_remove(struct bench_policy *bp)
{
	if (bp->dir[0] == '\0')
		return;
	unlink(bp->policy);
	unlink(bp->vendors);
	unlink(bp->operators);
	if (rmdir(bp->dir) != 0)
		fprintf(stderr, "acl_bench: could not remove %s\n", bp->dir);
	bp->dir[0] = '\0';
}

/* Load; on failure print every diagnostic. 0 or -1. */
static int policy_load(struct bench_policy *bp, struct cmq_policy **out)
{
	struct cmq_policy_files files = {bp->policy, bp->vendors, bp->operators, NULL};
	struct cmq_diag diag;
	int rc;

	cmq_diag_init(&diag);
	rc = cmq_policy_load(&files, &diag, out);
	if (rc != CMQ_OK || diag.errors > 0) {
		fprintf(stderr, "acl_bench: cmq_policy_load: %s\n", cmq_strerror(rc));
		for (size_t i = 0; i < diag.n; i++)
			fprintf(stderr, "  %s\n", diag.entries[i].text);
		cmq_diag_cleanup(&diag);
		cmq_policy_free(*out);
		*out = NULL;
		return -1;
	}
	cmq_diag_cleanup(&diag);
	if ((*out)->n_rules != bp->n_rules) {
		fprintf(stderr, "acl_bench: loaded %zu rules, expected %zu\n", (*out)->n_rules,
		        bp->n_rules);
		cmq_policy_free(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

/* ---- the decisions ---- */

enum kind {
	KIND_DEVICE_WRITE,
	KIND_GATEWAY_READ,
	KIND_DASHBOARD_READ,
	KIND_DASHBOARD_SUBSCRIBE,
	KIND_DEVICE_WRITE_BENCH_RULE,
	KIND__COUNT
};
#define MIX_KINDS 4 /* the mix: the first four kinds, round robin */

static const char *const kind_names[KIND__COUNT] = {
    "device WRITE " BENCH_DEVICE_TOPIC,
    "gateway READ " BENCH_DEVICE_TOPIC,
    "dashboard READ " BENCH_CITY_TOPIC,
    "dashboard SUBSCRIBE " BENCH_CITY_FILTER,
    "device WRITE raw/dX/kY/" BENCH_DEVICE " (a bench rule)",
};

struct requests {
	struct cmq_acl_request req[KIND__COUNT];
	char bench_topic[128];  /* topic of KIND_DEVICE_WRITE_BENCH_RULE */
	char bench_rule_id[64]; /* the rule it must resolve to */
	size_t example_rule;    /* index of BENCH_EXAMPLE_RULE in the policy */
};

static void requests_init(struct requests *r, const struct bench_policy *bp)
{
	static const struct {
		const char *user;
		enum cmq_access access;
	} who[KIND__COUNT] = {
	    {BENCH_DEVICE, CMQ_ACCESS_WRITE}, {"gateway", CMQ_ACCESS_READ},
	    {"dashboard", CMQ_ACCESS_READ},   {"dashboard", CMQ_ACCESS_SUBSCRIBE},
	    {BENCH_DEVICE, CMQ_ACCESS_WRITE},
	};
	size_t g = bp->n_bench / 2;

	memset(r, 0, sizeof(*r));
	if (bp->n_bench > 0) {
		bench_rule_topic(g, bp->n_bench, true, r->bench_topic, sizeof(r->bench_topic));
		snprintf(r->bench_rule_id, sizeof(r->bench_rule_id), "bench-%zu", g);
	}
	for (int k = 0; k < KIND__COUNT; k++) {
		r->req[k].username = who[k].user;
		r->req[k].client_id = who[k].user;
		r->req[k].access = who[k].access;
		r->req[k].payloadlen = 200;
	}
	r->req[KIND_DEVICE_WRITE].topic = BENCH_DEVICE_TOPIC;
	r->req[KIND_GATEWAY_READ].topic = BENCH_DEVICE_TOPIC;
	r->req[KIND_DASHBOARD_READ].topic = BENCH_CITY_TOPIC;
	r->req[KIND_DASHBOARD_SUBSCRIBE].topic = BENCH_CITY_FILTER;
	r->req[KIND_DEVICE_WRITE_BENCH_RULE].topic = r->bench_topic;
}

/* Index of the first raw pattern matching topic, scanning in file order (the acl_file and
 * dynamic-security model), or SIZE_MAX. */
static size_t linear_lookup(const struct cmq_policy *p, const char *topic)
{
	for (size_t i = 0; i < p->n_rules; i++) {
		bool match = false;

		if (mosquitto_topic_matches_sub(p->rules[i].raw, topic, &match) ==
		        MOSQ_ERR_SUCCESS &&
		    match)
			return i;
	}
	return SIZE_MAX;
}

/* One expectation: who does what, and the outcome. */
struct expect {
	const char *user;
	enum cmq_access access;
	const char *topic;
	enum cmq_decision decision;
	enum cmq_reason reason;
};

static const struct expect must_deny[] = {
    {BENCH_DEVICE, CMQ_ACCESS_WRITE, "raw/north/air/civitas-noise-001", CMQ_DENY,
     CMQ_REASON_NOT_OWN_DEVICE},
    {BENCH_DEVICE, CMQ_ACCESS_WRITE, "raw/nowhere/x/" BENCH_DEVICE, CMQ_DENY, CMQ_REASON_NO_RULE},
    {"dashboard", CMQ_ACCESS_READ, BENCH_DEVICE_TOPIC, CMQ_DENY, CMQ_REASON_RAW_READ_FORBIDDEN},
    {"dashboard", CMQ_ACCESS_SUBSCRIBE, "city/+/anpr", CMQ_DENY, CMQ_REASON_EXPLICIT_DENY},
    {"gateway", CMQ_ACCESS_WRITE, BENCH_DEVICE_TOPIC, CMQ_DENY, CMQ_REASON_RAW_WRITE_FORBIDDEN},
    {"nobody", CMQ_ACCESS_READ, BENCH_CITY_TOPIC, CMQ_DENY, CMQ_REASON_NO_IDENTITY},
};

/* Every timed decision must be the expected one (and a few denials must hold), or the
 * numbers mean nothing. 0, or -1 after saying what is wrong. */
static int check_decisions(const struct cmq_policy *p, struct requests *r)
{
	struct cmq_acl_result res;
	int bad = 0;

	r->example_rule = SIZE_MAX;
	for (size_t i = 0; i < p->n_rules; i++) {
		if (strcmp(p->rules[i].id, BENCH_EXAMPLE_RULE) == 0)
			r->example_rule = i;
	}
	if (r->example_rule == SIZE_MAX) {
		fprintf(stderr, "acl_bench: the policy has no rule %s\n", BENCH_EXAMPLE_RULE);
		return -1;
	}
	for (int k = 0; k < KIND__COUNT; k++) {
		enum cmq_decision d;

		if (k == KIND_DEVICE_WRITE_BENCH_RULE && r->bench_topic[0] == '\0')
			continue;
		d = cmq_acl_check(p, &r->req[k], &res);
		if (d != CMQ_ALLOW || res.reason != CMQ_REASON_OK) {
			fprintf(stderr, "acl_bench: %s: expected ALLOW, got %s (%s)\n",
			        kind_names[k], d == CMQ_ALLOW ? "ALLOW" : "DENY",
			        cmq_reason_name(res.reason));
			bad++;
		}
		if (k == KIND_DEVICE_WRITE && res.rule != &p->rules[r->example_rule]) {
			fprintf(stderr, "acl_bench: %s: resolved to rule %s, expected %s\n",
			        kind_names[k], res.rule ? res.rule->id : "(none)",
			        BENCH_EXAMPLE_RULE);
			bad++;
		}
		if (k == KIND_DEVICE_WRITE_BENCH_RULE &&
		    (res.rule == NULL || strcmp(res.rule->id, r->bench_rule_id) != 0)) {
			fprintf(stderr, "acl_bench: %s: resolved to rule %s, expected %s\n",
			        r->bench_topic, res.rule ? res.rule->id : "(none)",
			        r->bench_rule_id);
			bad++;
		}
	}
	for (size_t i = 0; i < sizeof(must_deny) / sizeof(must_deny[0]); i++) {
		const struct expect *e = &must_deny[i];
		struct cmq_acl_request q = {e->user, e->user, e->access, e->topic, 200, false};
		enum cmq_decision d = cmq_acl_check(p, &q, &res);

		if (d != e->decision || res.reason != e->reason) {
			fprintf(stderr, "acl_bench: %s %s %s: expected %s, got %s (%s)\n", e->user,
			        cmq_access_name(e->access), e->topic, cmq_reason_name(e->reason),
			        d == CMQ_ALLOW ? "ALLOW" : "DENY", cmq_reason_name(res.reason));
			bad++;
		}
	}
	if (linear_lookup(p, BENCH_DEVICE_TOPIC) != r->example_rule) {
		fprintf(stderr, "acl_bench: the linear scan does not resolve %s to rule %s\n",
		        BENCH_DEVICE_TOPIC, BENCH_EXAMPLE_RULE);
		bad++;
	}
	return bad ? -1 : 0;
}

/*
 * The measured functions. callgrind counts what runs inside bench_* (--toggle-collect), so
 * each is a separate, never-inlined function that nothing else calls from inside another
 * bench_* function (entering one would toggle collection off). They are called through
 * the table below, which also keeps the compiler from cloning them under other names.
 * BENCH_FN (bench_callgrind.h) keeps them out of line. Each returns how many decisions
 * allowed, which the caller checks.
 */

static inline __attribute__((always_inline)) size_t
decide_loop(const struct cmq_policy *p, const struct cmq_acl_request *reqs, size_t nreq, size_t n)
{
	struct cmq_acl_result res;
	size_t allowed = 0, r = 0;

	for (size_t i = 0; i < n; i++) {
		allowed += cmq_acl_check(p, &reqs[r], &res) == CMQ_ALLOW;
		if (++r == nreq)
			r = 0;
	}
	return allowed;
}

BENCH_FN static size_t bench_decisions(const struct cmq_policy *p, const struct requests *r,
                                       size_t n)
{
	return decide_loop(p, r->req, MIX_KINDS, n);
}

BENCH_FN static size_t bench_device_write(const struct cmq_policy *p, const struct requests *r,
                                          size_t n)
{
	return decide_loop(p, &r->req[KIND_DEVICE_WRITE], 1, n);
}

BENCH_FN static size_t bench_gateway_read(const struct cmq_policy *p, const struct requests *r,
                                          size_t n)
{
	return decide_loop(p, &r->req[KIND_GATEWAY_READ], 1, n);
}

BENCH_FN static size_t bench_dashboard_read(const struct cmq_policy *p, const struct requests *r,
                                            size_t n)
{
	return decide_loop(p, &r->req[KIND_DASHBOARD_READ], 1, n);
}

BENCH_FN static size_t bench_dashboard_subscribe(const struct cmq_policy *p,
                                                 const struct requests *r, size_t n)
{
	return decide_loop(p, &r->req[KIND_DASHBOARD_SUBSCRIBE], 1, n);
}

BENCH_FN static size_t bench_device_write_bench_rule(const struct cmq_policy *p,
                                                     const struct requests *r, size_t n)
{
	return decide_loop(p, &r->req[KIND_DEVICE_WRITE_BENCH_RULE], 1, n);
}

/* Counts a lookup that resolves to the example rule as allowed. */
BENCH_FN static size_t bench_linear_scan(const struct cmq_policy *p, const struct requests *r,
                                         size_t n)
{
	size_t found = 0;

	for (size_t i = 0; i < n; i++)
		found += linear_lookup(p, BENCH_DEVICE_TOPIC) == r->example_rule;
	return found;
}

typedef size_t (*bench_fn)(const struct cmq_policy *, const struct requests *, size_t);

/* Columns of the tables, in order. */
static const struct {
	const char *name;  /* function name, as callgrind reports it */
	const char *title; /* column title */
	bench_fn fn;
	bool linear;      /* decisions bounded by the linear budget */
	bool needs_bench; /* needs at least one bench rule */
} columns[] = {
    {"bench_decisions", "mix of the 4 below", bench_decisions, false, false},
    {"bench_device_write", "device WRITE own raw topic", bench_device_write, false, false},
    {"bench_gateway_read", "gateway READ raw", bench_gateway_read, false, false},
    {"bench_dashboard_read", "dashboard READ city", bench_dashboard_read, false, false},
    {"bench_dashboard_subscribe", "dashboard SUBSCRIBE city/+/air", bench_dashboard_subscribe,
     false, false},
    {"bench_device_write_bench_rule", "device WRITE, literal bench rule",
     bench_device_write_bench_rule, false, true},
    {"bench_linear_scan", "linear scan reference (device WRITE)", bench_linear_scan, true, false},
};
#define N_COLUMNS (sizeof(columns) / sizeof(columns[0]))

static size_t decisions_for(size_t col, size_t n_rules, size_t decisions, size_t budget)
{
	size_t n = decisions;

	if (columns[col].linear) {
		n = budget / (n_rules ? n_rules : 1);
		if (n > decisions)
			n = decisions;
		if (n < 10)
			n = 10;
	}
	return n;
}

/* ---- command line ---- */

static int parse_rule_list(const char *s, size_t *out, size_t max, size_t *n)
{
	char buf[256];
	char *save = NULL, *tok;

	*n = 0;
	if (strlen(s) >= sizeof(buf)) {
		fprintf(stderr, "acl_bench: rule list too long\n");
		return -1;
	}
	memcpy(buf, s, strlen(s) + 1);
	for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		if (*n == max) {
			fprintf(stderr, "acl_bench: at most %zu rule counts\n", max);
			return -1;
		}
		if (bench_parse_size(PROG, tok, 1, MAX_RULES, &out[*n]) != 0)
			return -1;
		(*n)++;
	}
	return *n ? 0 : -1;
}

static void usage(void)
{
	fprintf(stderr, "usage: acl_bench decisions [-r RULES,...] [-n DECISIONS] [-k REPEATS]\n"
	                "       acl_bench callgrind RULES K\n"
	                "       acl_bench load RULES [-k REPEATS] [--header]\n");
}

/* Pin to the last CPU (the broker benchmarks keep CPU 0 for the broker). */
static void pin_last_cpu(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n > 1 && bench_pin_cpu((int)n - 1) != 0)
		fprintf(stderr, "acl_bench: could not pin to CPU %ld (continuing)\n", n - 1);
}

/* ---- decisions: ns per decision ---- */

/* One rule count under test, with its timings (ns per decision, one per repeat). */
struct decision_set {
	struct bench_policy bp;
	struct requests r;
	double runs[N_COLUMNS][MAX_REPEATS];
};

static void sets_free(struct decision_set *sets, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		cmq_policy_free(sets[i].bp.p);
		sets[i].bp.p = NULL;
		files_remove(&sets[i].bp);
	}
}

/* Time column c of one set once; stores ns per decision in runs[c][k]. 0 or -1. */
static int time_once(struct decision_set *set, size_t c, size_t decisions, size_t k)
{
	size_t n = decisions_for(c, set->bp.n_rules, decisions, LINEAR_BUDGET);
	uint64_t t0 = bench_now_ns();
	size_t ok = columns[c].fn(set->bp.p, &set->r, n);
	uint64_t t1 = bench_now_ns();

	if (ok != n) {
		fprintf(stderr, "acl_bench: %s: %zu of %zu decisions allowed\n", columns[c].name,
		        ok, n);
		return -1;
	}
	set->runs[c][k] = (double)(t1 - t0) / (double)n;
	return 0;
}

/*
 * All rule counts are loaded at once and the repeats interleaved (repeat 1 of every rule
 * count and column, then repeat 2, ...), so that a burst of other load on the machine
 * lands on every rule count alike instead of on whichever ran at that moment.
 */
static int run_decisions(int argc, char **argv)
{
	static struct decision_set sets[MAX_RULE_COUNTS];
	size_t rule_counts[MAX_RULE_COUNTS], n_counts = 0, decisions = DEFAULT_DECISIONS;
	size_t repeats = DEFAULT_REPEATS, loaded = 0;
	double first_mix = 0, last_mix = 0, first_lin = 0, last_lin = 0;

	if (parse_rule_list(DEFAULT_RULES, rule_counts, MAX_RULE_COUNTS, &n_counts) != 0)
		return 1;
	for (int i = 0; i < argc; i++) {
		int rc = -1;

		if (strcmp(argv[i], "-r") == 0 && i + 1 < argc)
			rc = parse_rule_list(argv[++i], rule_counts, MAX_RULE_COUNTS, &n_counts);
		else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
			rc = bench_parse_size(PROG, argv[++i], 1000, 1000000000u, &decisions);
		else if (strcmp(argv[i], "-k") == 0 && i + 1 < argc)
			rc = bench_parse_size(PROG, argv[++i], 1, MAX_REPEATS, &repeats);
		if (rc != 0) {
			usage();
			return 2;
		}
	}
	pin_last_cpu();

	for (loaded = 0; loaded < n_counts; loaded++) {
		struct decision_set *set = &sets[loaded];

		if (files_make(&set->bp, rule_counts[loaded]) != 0 ||
		    policy_load(&set->bp, &set->bp.p) != 0) {
			files_remove(&set->bp);
			sets_free(sets, loaded);
			return 1;
		}
		requests_init(&set->r, &set->bp);
		if (check_decisions(set->bp.p, &set->r) != 0) {
			sets_free(sets, loaded + 1);
			return 1;
		}
		/* One untimed warm-up pass over a tenth of the work. */
		for (size_t c = 0; c < N_COLUMNS; c++) {
			if (!(columns[c].needs_bench && set->bp.n_bench == 0))
				(void)columns[c].fn(
				    set->bp.p, &set->r,
				    decisions_for(c, set->bp.n_rules, decisions, LINEAR_BUDGET) /
				            10 +
				        1);
		}
	}
	for (size_t k = 0; k < repeats; k++) {
		for (size_t i = 0; i < n_counts; i++) {
			for (size_t c = 0; c < N_COLUMNS; c++) {
				if (columns[c].needs_bench && sets[i].bp.n_bench == 0)
					continue;
				if (time_once(&sets[i], c, decisions, k) != 0) {
					sets_free(sets, n_counts);
					return 1;
				}
			}
		}
	}

	printf("ns per decision: cmq_acl_check, median of %zu runs of %zu decisions each, the "
	       "runs of all rule counts interleaved (linear scan: %u pattern comparisons per "
	       "run, at least 10 decisions)\n\n",
	       repeats, decisions, LINEAR_BUDGET);
	printf("| topic rules |");
	for (size_t c = 0; c < N_COLUMNS; c++)
		printf(" %s |", columns[c].title);
	printf("\n|---:|");
	for (size_t c = 0; c < N_COLUMNS; c++)
		printf("---:|");
	printf("\n");
	for (size_t i = 0; i < n_counts; i++) {
		double ns[N_COLUMNS];

		printf("| %zu |", sets[i].bp.n_rules);
		for (size_t c = 0; c < N_COLUMNS; c++) {
			ns[c] = columns[c].needs_bench && sets[i].bp.n_bench == 0
			            ? -1
			            : bench_median(sets[i].runs[c], repeats);
			if (ns[c] < 0)
				printf(" n/a |");
			else if (ns[c] >= 10000)
				printf(" %.0f µs |", ns[c] / 1000);
			else
				printf(" %.1f |", ns[c]);
		}
		printf("\n");
		if (i == 0) {
			first_mix = ns[0];
			first_lin = ns[N_COLUMNS - 1];
		}
		last_mix = ns[0];
		last_lin = ns[N_COLUMNS - 1];
	}
	if (n_counts > 1 && first_mix > 0) {
		printf("\nFlatness (goal: <= 2.00): mix at %zu rules / mix at %zu rules = %.2f; "
		       "linear scan: %.0fx\n",
		       rule_counts[n_counts - 1], rule_counts[0], last_mix / first_mix,
		       first_lin > 0 ? last_lin / first_lin : 0);
	}
	sets_free(sets, n_counts);
	return 0;
}

/* ---- callgrind: exactly K decisions per function ---- */

static int run_callgrind(int argc, char **argv)
{
	struct bench_policy bp;
	struct requests r;
	size_t rules, k;
	int rc = 0;

	if (argc != 2 || bench_parse_size(PROG, argv[0], 1, MAX_RULES, &rules) != 0 ||
	    bench_parse_size(PROG, argv[1], 1, 100000000u, &k) != 0) {
		usage();
		return 2;
	}
	if (files_make(&bp, rules) != 0 || policy_load(&bp, &bp.p) != 0) {
		files_remove(&bp);
		return 1;
	}
	requests_init(&r, &bp);
	if (check_decisions(bp.p, &r) != 0) {
		cmq_policy_free(bp.p);
		files_remove(&bp);
		return 1;
	}
	printf("rules %zu\n", bp.n_rules);
	BENCH_INSTRUMENT_ON();
	for (size_t c = 0; c < N_COLUMNS; c++) {
		size_t n = decisions_for(c, bp.n_rules, k, LINEAR_BUDGET_CG), ok;

		if (columns[c].needs_bench && bp.n_bench == 0)
			continue;
		ok = columns[c].fn(bp.p, &r, n);
		if (ok != n) {
			fprintf(stderr, "acl_bench: %s: %zu of %zu decisions allowed\n",
			        columns[c].name, ok, n);
			rc = 1;
		}
		printf("%s %zu %s\n", columns[c].name, n, columns[c].title);
	}
	cmq_policy_free(bp.p);
	files_remove(&bp);
	return rc;
}

/* ---- load: time and memory ---- */

/*
 * Counting allocator for the core (allocator hooks take no user data, hence the one
 * file-scope struct). Each block carries its size in a 16-byte header, which keeps
 * malloc's alignment; the header is not counted.
 */
#define COUNT_HDR 16u
static struct {
	size_t live;   /* bytes currently allocated through the core */
	size_t peak;   /* highest live */
	size_t allocs; /* successful malloc/realloc calls */
} counter;

static void *count_malloc(size_t size)
{
	unsigned char *b;

	if (size > SIZE_MAX - COUNT_HDR)
		return NULL;
	b = malloc(size + COUNT_HDR);
	if (b == NULL)
		return NULL;
	memcpy(b, &size, sizeof(size));
	counter.live += size;
	counter.allocs++;
	if (counter.live > counter.peak)
		counter.peak = counter.live;
	return b + COUNT_HDR;
}

static void count_free(void *ptr)
{
	unsigned char *b;
	size_t size;

	if (ptr == NULL)
		return;
	b = (unsigned char *)ptr - COUNT_HDR;
	memcpy(&size, b, sizeof(size));
	counter.live -= size;
	free(b);
}

static void *count_realloc(void *ptr, size_t size)
{
	unsigned char *b, *nb;
	size_t old;

	if (ptr == NULL)
		return count_malloc(size);
	if (size > SIZE_MAX - COUNT_HDR)
		return NULL;
	b = (unsigned char *)ptr - COUNT_HDR;
	memcpy(&old, b, sizeof(old));
	nb = realloc(b, size + COUNT_HDR);
	if (nb == NULL)
		return NULL;
	memcpy(nb, &size, sizeof(size));
	counter.live = counter.live - old + size;
	counter.allocs++;
	if (counter.live > counter.peak)
		counter.peak = counter.live;
	return nb + COUNT_HDR;
}

static double max_rss_mib(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return -1;
	return (double)ru.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
}

/* Minor page faults and kernel CPU time (ms) of this process so far. */
static void kernel_use(long *faults, double *sys_ms)
{
	struct rusage ru;

	*faults = 0;
	*sys_ms = 0;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return;
	*faults = ru.ru_minflt;
	*sys_ms = (double)ru.ru_stime.tv_sec * 1e3 + (double)ru.ru_stime.tv_usec / 1e3;
}

/* What one fresh process measured (sent to the parent through a pipe). */
struct load_sample {
	int ok;
	double cold_ms;     /* first load in the process: what a broker pays at start */
	double warm_ms;     /* second load, the heap already grown: like a reload (SIGHUP) */
	double parse_ms;    /* json-c parsing the same file alone, warm */
	long cold_faults;   /* minor page faults during the first load */
	double cold_sys_ms; /* kernel CPU time during the first load */
	size_t held, peak, allocs, trie;
	double rss_mib;
};

static double elapsed_ms(uint64_t t0, uint64_t t1)
{
	return (double)(t1 - t0) / 1e6;
}

/* In a fresh child: load, free, load again, free, parse alone. */
static void load_child(struct bench_policy *bp, struct load_sample *s)
{
	struct json_object *o;
	size_t live_before = counter.live, allocs_before = counter.allocs;
	long f0, f1;
	double sys0, sys1;
	uint64_t t0, t1;

	memset(s, 0, sizeof(*s));
	counter.peak = counter.live;
	kernel_use(&f0, &sys0);
	t0 = bench_now_ns();
	if (policy_load(bp, &bp->p) != 0)
		return;
	t1 = bench_now_ns();
	s->cold_ms = elapsed_ms(t0, t1);
	kernel_use(&f1, &sys1);
	s->cold_faults = f1 - f0;
	s->cold_sys_ms = sys1 - sys0;
	s->held = counter.live - live_before;
	s->allocs = counter.allocs - allocs_before;
	s->peak = counter.peak - live_before;
	s->trie = cmq_trie_memory(bp->p->rule_trie);
	cmq_policy_free(bp->p);
	if (counter.live != live_before) {
		fprintf(stderr, "acl_bench: %zu bytes still allocated after cmq_policy_free\n",
		        counter.live - live_before);
		return;
	}
	t0 = bench_now_ns();
	if (policy_load(bp, &bp->p) != 0)
		return;
	t1 = bench_now_ns();
	s->warm_ms = elapsed_ms(t0, t1);
	cmq_policy_free(bp->p);
	bp->p = NULL;
	/* json-c's share: the load parses the file the same way. */
	t0 = bench_now_ns();
	o = json_object_from_file(bp->policy);
	t1 = bench_now_ns();
	if (o == NULL) {
		fprintf(stderr, "acl_bench: json-c cannot parse %s\n", bp->policy);
		return;
	}
	json_object_put(o);
	s->parse_ms = elapsed_ms(t0, t1);
	s->rss_mib = max_rss_mib();
	s->ok = 1;
}

/* Fork, measure in the child, read its sample. 0 or -1. */
static int load_sample_fresh(struct bench_policy *bp, struct load_sample *s)
{
	int fds[2], status = 0;
	pid_t pid;
	ssize_t got;

	if (pipe(fds) != 0)
		return -1;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		struct load_sample mine;
		ssize_t put;

		close(fds[0]);
		load_child(bp, &mine);
		put = write(fds[1], &mine, sizeof(mine));
		_exit(put == (ssize_t)sizeof(mine) && mine.ok ? 0 : 1);
	}
	close(fds[1]);
	got = read(fds[0], s, sizeof(*s));
	close(fds[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
	    got != (ssize_t)sizeof(*s) || !s->ok) {
		fprintf(stderr, "acl_bench: the load measurement failed\n");
		return -1;
	}
	return 0;
}

static int run_load(int argc, char **argv)
{
	static const struct cmq_allocator counting = {count_malloc, count_realloc, count_free};
	struct bench_policy bp;
	struct load_sample smp[MAX_REPEATS];
	double cold[MAX_REPEATS], warm[MAX_REPEATS], parse[MAX_REPEATS], faults[MAX_REPEATS],
	    sys[MAX_REPEATS];
	size_t rules, repeats = LOAD_REPEATS;
	bool header = false;
	double lo, hi, rss = 0;

	/* Before any other core call (alloc.h). */
	cmq_set_allocator(&counting);
	if (argc < 1 || bench_parse_size(PROG, argv[0], 1, MAX_RULES, &rules) != 0) {
		usage();
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--header") == 0) {
			header = true;
		} else if (strcmp(argv[i], "-k") == 0 && i + 1 < argc) {
			if (bench_parse_size(PROG, argv[++i], 1, MAX_REPEATS, &repeats) != 0)
				return 2;
		} else {
			usage();
			return 2;
		}
	}
	pin_last_cpu();
	if (files_make(&bp, rules) != 0) {
		files_remove(&bp);
		return 1;
	}
	for (size_t k = 0; k < repeats; k++) {
		if (load_sample_fresh(&bp, &smp[k]) != 0) {
			files_remove(&bp);
			return 1;
		}
		cold[k] = smp[k].cold_ms;
		warm[k] = smp[k].warm_ms;
		parse[k] = smp[k].parse_ms;
		faults[k] = (double)smp[k].cold_faults;
		sys[k] = smp[k].cold_sys_ms;
		rss = smp[k].rss_mib > rss ? smp[k].rss_mib : rss;
		if (smp[k].held != smp[0].held || smp[k].allocs != smp[0].allocs) {
			fprintf(stderr, "acl_bench: loads of the same file differ in memory\n");
			files_remove(&bp);
			return 1;
		}
	}
	if (header)
		printf(
		    "| topic rules | policy.json | load in a fresh process (broker start), median "
		    "of %zu (min-max) | page faults, kernel time in it | load again in the same "
		    "process "
		    "(reload) | json-c parse alone | held by the loaded policy | of which the "
		    "rule trie | peak core allocations during load | allocations | peak RSS |\n"
		    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
		    repeats);
	lo = bench_min(cold, repeats);
	hi = bench_max(cold, repeats);
	printf("| %zu | %.2f MiB | %.1f ms (%.1f-%.1f) | %.0f, %.0f ms | %.1f ms | %.1f ms | %.2f "
	       "MiB | "
	       "%.2f MiB | %.2f MiB | %zu | %.1f MiB |\n",
	       bp.n_rules, (double)bp.file_bytes / 1048576.0, bench_median(cold, repeats), lo, hi,
	       bench_median(faults, repeats), bench_median(sys, repeats),
	       bench_median(warm, repeats), bench_median(parse, repeats),
	       (double)smp[0].held / 1048576.0, (double)smp[0].trie / 1048576.0,
	       (double)smp[0].peak / 1048576.0, smp[0].allocs, rss);
	files_remove(&bp);
	return 0;
}

int main(int argc, char **argv)
{
	int rc;

	if (argc < 2) {
		usage();
		return 2;
	}
	if (strcmp(argv[1], "decisions") == 0)
		rc = run_decisions(argc - 2, argv + 2);
	else if (strcmp(argv[1], "callgrind") == 0)
		rc = run_callgrind(argc - 2, argv + 2);
	else if (strcmp(argv[1], "load") == 0)
		rc = run_load(argc - 2, argv + 2);
	else {
		usage();
		rc = 2;
	}
	return rc;
}
