/*
 * test_aggregate.c - core/aggregate: k-threshold suppression, window boundaries, groups
 * and topics kept apart, exact counts without noise, the exact payload, deterministic
 * order, the noise distribution, the journal (format, replay after a crash, a truncated
 * last line, corrupt lines, failed appends and rewrites), emit failures, max_groups,
 * bad arguments, and an out-of-memory sweep.
 */
#include "cmq_test.h"

#include "aggregate.h"
#include "error.h"

#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define T0 INT64_C(1764331200) /* 2025-11-28T12:00:00Z, a multiple of 60 and 3600 */

static const struct cmq_agg_params exact5 = {60, 5, 0};

/* ---- an emit callback that records what it is given ---- */

#define MAX_EMITS 512

struct sink {
	size_t n;
	char topic[MAX_EMITS][128];
	char payload[MAX_EMITS][512];
	long fail_at; /* call index that fails (0-based), or -1 */
	int fail_rc;
	size_t calls;
};

static void sink_init(struct sink *s)
{
	memset(s, 0, sizeof(*s));
	s->fail_at = -1;
}

static int sink_emit(void *arg, const char *topic, const char *payload, size_t len)
{
	struct sink *s = arg;

	CU_ASSERT_EQUAL(strlen(payload), len);
	if ((long)s->calls++ == s->fail_at)
		return s->fail_rc;
	if (s->n < MAX_EMITS) {
		snprintf(s->topic[s->n], sizeof(s->topic[0]), "%s", topic);
		snprintf(s->payload[s->n], sizeof(s->payload[0]), "%s", payload);
		s->n++;
	}
	return CMQ_OK;
}

static struct cmq_agg *open_mem(size_t max_groups)
{
	struct cmq_agg *a = NULL;

	CU_ASSERT_EQUAL_FATAL(cmq_agg_open(NULL, max_groups, NULL, &a), CMQ_OK);
	return a;
}

static void add_ok(struct cmq_agg *a, const char *topic, const char *group,
                   const struct cmq_agg_params *p, int64_t now, uint64_t count)
{
	CU_ASSERT_EQUAL(cmq_agg_add(a, topic, group, p, now, count), CMQ_OK);
}

static const char *journal_path(const char *name)
{
	static char buf[4096];

	snprintf(buf, sizeof(buf), "%s/%s", cmq_test_tmpdir(), name);
	return buf;
}

static char *slurp(const char *path)
{
	static char buf[65536];
	FILE *f = fopen(path, "rb");
	size_t n;

	if (f == NULL)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* ---- counting ---- */

static void TEST_k_threshold(void)
{
	struct cmq_agg *a = open_mem(100);
	struct cmq_agg_stats st = {7, 7};
	struct sink s;

	sink_init(&s);
	add_ok(a, "city/north/crowd", "below", &exact5, T0 + 1, 4); /* k - 1 */
	add_ok(a, "city/north/crowd", "at", &exact5, T0 + 2, 2);
	add_ok(a, "city/north/crowd", "at", &exact5, T0 + 30, 3); /* 2 + 3 = k */
	add_ok(a, "city/north/crowd", "above", &exact5, T0 + 59, 6);
	add_ok(a, "city/north/crowd", "zero", &exact5, T0 + 59, 0);
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 4);
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 60, sink_emit, &s, &st), CMQ_OK);
	CU_ASSERT_EQUAL(st.published, 2);
	CU_ASSERT_EQUAL(st.suppressed, 2);
	CU_ASSERT_EQUAL_FATAL(s.n, 2);
	CU_ASSERT_STRING_EQUAL(s.topic[0], "city/north/crowd");
	CU_ASSERT_STRING_EQUAL(s.payload[0],
	                       "{\"group\":\"above\",\"window_start\":\"2025-11-28T12:00:00Z\","
	                       "\"window_seconds\":60,\"count\":6,\"k\":5}");
	CU_ASSERT_STRING_EQUAL(s.payload[1],
	                       "{\"group\":\"at\",\"window_start\":\"2025-11-28T12:00:00Z\","
	                       "\"window_seconds\":60,\"count\":5,\"k\":5}");
	/* Suppressed groups are forgotten, never published later. */
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 0);
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 10000, sink_emit, &s, &st), CMQ_OK);
	CU_ASSERT_EQUAL(s.n, 2);
	CU_ASSERT_EQUAL(st.published + st.suppressed, 0); /* per call */
	cmq_agg_close(a);
}

/* [start, start + window): the first second of a window is in it, the last one too. */
static void TEST_window_boundaries(void)
{
	struct cmq_agg *a = open_mem(100);
	const struct cmq_agg_params p = {60, 1, 0};
	struct sink s;

	sink_init(&s);
	add_ok(a, "t", "g", &p, T0 - 1, 1); /* window T0 - 60 */
	add_ok(a, "t", "g", &p, T0, 10);    /* window T0 */
	add_ok(a, "t", "g", &p, T0 + 59, 100);
	add_ok(a, "t", "g", &p, T0 + 60, 1000); /* end of window: the next one */
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 3);
	/* Nothing is due before its window has ended. */
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 - 1, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT_EQUAL(s.n, 0);
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(s.n, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[0], "\"window_start\":\"2025-11-28T11:59:00Z\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[0], "\"count\":1,"));
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 59, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT_EQUAL(s.n, 1);
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 60, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(s.n, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[1], "\"window_start\":\"2025-11-28T12:00:00Z\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[1], "\"count\":110,"));
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 120, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(s.n, 3);
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[2], "\"window_start\":\"2025-11-28T12:01:00Z\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[2], "\"count\":1000,"));
	cmq_agg_close(a);
}

/* A window a flush closed takes no more contributions (the clock went back). */
static void TEST_closed_window_refused(void)
{
	struct cmq_agg *a = open_mem(100);
	const struct cmq_agg_params p = {60, 1, 0};
	struct sink s;

	sink_init(&s);
	add_ok(a, "t", "g", &p, T0 + 5, 1);
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 60, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT_EQUAL(s.n, 1);
	CU_ASSERT_EQUAL(cmq_agg_add(a, "t", "g", &p, T0 + 59, 1), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(cmq_agg_add(a, "t", "other", &p, T0, 1), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 0);
	add_ok(a, "t", "g", &p, T0 + 60, 1); /* the open window still takes them */
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 1);
	cmq_agg_close(a);
}

static void TEST_groups_topics_and_windows_kept_apart(void)
{
	struct cmq_agg *a = open_mem(100);
	const struct cmq_agg_params p60 = {60, 1, 0}, p3600 = {3600, 1, 0};
	struct sink s;

	sink_init(&s);
	add_ok(a, "city/a/crowd", "zone-1", &p60, T0, 1);
	add_ok(a, "city/b/crowd", "zone-1", &p60, T0, 2);
	add_ok(a, "city/a/crowd", "zone-2", &p60, T0, 4);
	add_ok(a, "city/a/crowd", "zone-1", &p3600, T0, 8); /* another window length */
	add_ok(a, "city/a/crowd", "zone-1", &p60, T0 + 1, 16);
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 4);
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 3600, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(s.n, 4);
	/* Sorted by window start, topic, group, then window length. */
	CU_ASSERT_STRING_EQUAL(s.topic[0], "city/a/crowd");
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[0], "\"group\":\"zone-1\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[0], "\"window_seconds\":60,\"count\":17,"));
	CU_ASSERT_STRING_EQUAL(s.topic[1], "city/a/crowd");
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[1], "\"window_seconds\":3600,\"count\":8,"));
	CU_ASSERT_STRING_EQUAL(s.topic[2], "city/a/crowd");
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[2], "\"group\":\"zone-2\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[2], "\"count\":4,"));
	CU_ASSERT_STRING_EQUAL(s.topic[3], "city/b/crowd");
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[3], "\"count\":2,"));
	cmq_agg_close(a);
}

/* k or epsilon changing mid-window (a policy reload): the strictest of each holds. */
static void TEST_strictest_params_win(void)
{
	struct cmq_agg *a = open_mem(100);
	const struct cmq_agg_params k2 = {60, 2, 0}, k4 = {60, 4, 0}, e1 = {60, 1, 1},
	                            e025 = {60, 1, 0.25}, e0 = {60, 1, 0};
	struct sink s;

	sink_init(&s);
	add_ok(a, "t", "k-raised", &k2, T0, 3);
	add_ok(a, "t", "k-raised", &k4, T0 + 1, 0); /* 3 < 4: suppressed */
	add_ok(a, "t", "k-kept", &k4, T0, 5);
	add_ok(a, "t", "k-kept", &k2, T0 + 1, 0); /* k stays 4 */
	add_ok(a, "t", "noise-on", &e0, T0, 50);
	add_ok(a, "t", "noise-on", &e1, T0 + 1, 0);
	add_ok(a, "t", "noise-stays", &e1, T0, 50);
	add_ok(a, "t", "noise-stays", &e0, T0 + 1, 0);
	add_ok(a, "t", "noise-more", &e1, T0, 50);
	add_ok(a, "t", "noise-more", &e025, T0 + 1, 0);
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 5);
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 60, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(s.n, 4);
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[0], "\"group\":\"k-kept\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[0], "\"count\":5,\"k\":4}"));
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[1], "\"group\":\"noise-more\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[1], ",\"epsilon\":0.25}"));
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[2], "\"group\":\"noise-on\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[2], ",\"epsilon\":1}"));
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[3], "\"group\":\"noise-stays\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[3], ",\"epsilon\":1}"));
	cmq_agg_close(a);
}

/* Contributions in scrambled order come out sorted by window start, topic, group. */
static void TEST_flush_order_is_deterministic(void)
{
	static const char *const topics[] = {"city/c", "city/a", "city/b"};
	static const char *const groups[] = {"z", "a", "m", "b"};
	struct cmq_agg *a = open_mem(1000);
	const struct cmq_agg_params p = {60, 1, 0};
	struct sink s;
	uint32_t x = 12345;

	sink_init(&s);
	for (int i = 0; i < 200; i++) {
		x = x * 1103515245u + 12345u;
		add_ok(a, topics[(x >> 8) % 3], groups[(x >> 12) % 4], &p,
		       T0 + 60 * (int64_t)((x >> 16) % 4), 1);
	}
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 240, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT(s.n > 20);
	for (size_t i = 1; i < s.n; i++) {
		/* The timestamp: 20 characters after "window_start":" (ISO order = time order). */
		int c = strncmp(strstr(s.payload[i - 1], "window_start") + 15,
		                strstr(s.payload[i], "window_start") + 15, 20);

		if (c == 0)
			c = strcmp(s.topic[i - 1], s.topic[i]);
		if (c == 0)
			c = strcmp(s.payload[i - 1], s.payload[i]); /* starts with the group */
		CU_ASSERT(c < 0);
	}
	cmq_agg_close(a);
}

static void TEST_exact_counts_without_noise(void)
{
	struct cmq_agg *a = open_mem(100);
	const struct cmq_agg_params p = {3600, 10, 0};
	struct sink s;
	uint64_t total = 0;

	sink_init(&s);
	for (int i = 0; i < 3600; i += 7) {
		add_ok(a, "city/x", "g", &p, T0 + i, (uint64_t)i % 13);
		total += (uint64_t)i % 13;
	}
	/* Totals saturate instead of wrapping. */
	add_ok(a, "city/x", "huge", &p, T0, UINT64_MAX - 1);
	add_ok(a, "city/x", "huge", &p, T0, 5);
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 3600, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(s.n, 2);
	{
		char want[256];

		snprintf(want, sizeof(want),
		         "{\"group\":\"g\",\"window_start\":\"2025-11-28T12:00:00Z\","
		         "\"window_seconds\":3600,\"count\":%llu,\"k\":10}",
		         (unsigned long long)total);
		CU_ASSERT_STRING_EQUAL(s.payload[0], want);
	}
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[1], "\"count\":18446744073709551615,"));
	CU_ASSERT_PTR_NULL(strstr(s.payload[0], "epsilon"));
	cmq_agg_close(a);
}

/* With noise: valid JSON with the documented fields, and counts that vary. */
static void TEST_noised_payload(void)
{
	struct cmq_agg *a = open_mem(1000);
	const struct cmq_agg_params p = {60, 3, 0.5};
	struct sink s;
	int differ = 0;

	sink_init(&s);
	for (int w = 0; w < 200; w++)
		add_ok(a, "city/n", "g", &p, T0 + 60 * w, 1000);
	add_ok(a, "city/n", "low", &p, T0, 2); /* below k: suppressed however noised */
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 60 * 200, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(s.n, 200);
	for (size_t i = 0; i < s.n; i++) {
		struct json_object *o = json_tokener_parse(s.payload[i]), *v;

		CU_ASSERT_PTR_NOT_NULL_FATAL(o);
		CU_ASSERT_EQUAL(json_object_object_length(o), 6);
		CU_ASSERT(json_object_object_get_ex(o, "epsilon", &v) &&
		          json_object_get_double(v) == 0.5);
		CU_ASSERT(json_object_object_get_ex(o, "k", &v) && json_object_get_int(v) == 3);
		CU_ASSERT(json_object_object_get_ex(o, "count", &v) &&
		          json_object_is_type(v, json_type_int));
		differ += json_object_get_int(v) != 1000;
		CU_ASSERT(abs(json_object_get_int(v) - 1000) < 100);
		json_object_put(o);
	}
	/* P(noise = 0) is (1 - e^-0.5) / (1 + e^-0.5) = 0.24: 200 zeros would be a bug. */
	CU_ASSERT(differ > 100);
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[0], ",\"k\":3,\"epsilon\":0.5}"));
	cmq_agg_close(a);
}

/* Peek emits every due group without forgetting it; a flush at the same time then emits
 * the identical (identically noised) payloads, and forgets them. */
static void TEST_peek_then_flush_emits_the_same(void)
{
	struct cmq_agg *a = open_mem(1000);
	const struct cmq_agg_params p = {60, 3, 0.5};
	struct cmq_agg_stats st;
	struct sink s1, s2;

	sink_init(&s1);
	sink_init(&s2);
	for (int g = 0; g < 5; g++) {
		char group[16];

		snprintf(group, sizeof(group), "z%d", g);
		add_ok(a, "city/n", group, &p, T0, 100);
	}
	add_ok(a, "city/n", "low", &p, T0, 1);         /* below k */
	add_ok(a, "city/n", "open", &p, T0 + 60, 100); /* next window: not due */
	s1.fail_at = 2;                                /* a failing emit does not stop a peek */
	s1.fail_rc = CMQ_ERR_IO;
	CU_ASSERT_EQUAL(cmq_agg_peek(a, T0 + 60, sink_emit, &s1, &st), CMQ_ERR_IO);
	CU_ASSERT_EQUAL(s1.n, 4);
	CU_ASSERT_EQUAL(st.suppressed, 1);
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 6); /* nothing published was forgotten */
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 60, sink_emit, &s2, &st), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(s2.n, 5);
	CU_ASSERT_EQUAL(st.published, 5);
	CU_ASSERT_STRING_EQUAL(s1.payload[0], s2.payload[0]);
	CU_ASSERT_STRING_EQUAL(s1.payload[1], s2.payload[1]);
	CU_ASSERT_STRING_EQUAL(s1.payload[2], s2.payload[3]); /* s1 missed the failed third */
	CU_ASSERT_STRING_EQUAL(s1.payload[3], s2.payload[4]);
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 1);
	cmq_agg_close(a);
}

/* Noise never drives a count below 0. */
static void TEST_noised_count_clamped_at_zero(void)
{
	struct cmq_agg *a = open_mem(1000);
	const struct cmq_agg_params p = {60, 1, 0.01}; /* noise of hundreds */
	struct sink s;
	int zeros = 0;

	sink_init(&s);
	for (int w = 0; w < 100; w++)
		add_ok(a, "city/n", "g", &p, T0 + 60 * w, 1);
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 6000, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(s.n, 100);
	for (size_t i = 0; i < s.n; i++) {
		CU_ASSERT_PTR_NULL(strstr(s.payload[i], "\"count\":-"));
		zeros += strstr(s.payload[i], "\"count\":0,") != NULL;
	}
	CU_ASSERT(zeros > 25); /* about half */
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[0], "\"epsilon\":0.01}"));
	cmq_agg_close(a);
}

/* ---- the noise distribution ---- */

static double exp_neg(double x) /* e^-x without libm: the test binary links no -lm */
{
	double term = 1, sum = 1;

	for (int i = 1; i < 60; i++) {
		term *= -x / i;
		sum += term;
	}
	return sum;
}

/*
 * n samples at epsilon: the mean within `mean_tol` of 0, the variance within 10 % of
 * 2q / (1 - q)^2, P(0) within 0.02 of (1 - q) / (1 + q), and symmetric tails.
 */
static void check_distribution(double epsilon, int n, double mean_tol)
{
	double q = exp_neg(epsilon), sum = 0, sq = 0, mean, var, want_var, p0;
	long zeros = 0, pos = 0, neg = 0;

	for (int i = 0; i < n; i++) {
		int64_t x = cmq_agg_noise(epsilon);

		sum += (double)x;
		sq += (double)x * (double)x;
		zeros += x == 0;
		pos += x > 0;
		neg += x < 0;
	}
	mean = sum / n;
	var = sq / n - mean * mean;
	want_var = 2 * q / ((1 - q) * (1 - q));
	p0 = (1 - q) / (1 + q);
	fprintf(stderr, "\n  epsilon %g: mean %.4f, variance %.4f (want %.4f), P(0) %.4f (%.4f)",
	        epsilon, mean, var, want_var, (double)zeros / n, p0);
	CU_ASSERT(mean > -mean_tol && mean < mean_tol);
	CU_ASSERT(var > 0.9 * want_var && var < 1.1 * want_var);
	CU_ASSERT((double)zeros / n > p0 - 0.02 && (double)zeros / n < p0 + 0.02);
	CU_ASSERT(labs(pos - neg) < n / 20);
}

static void TEST_noise_distribution(void)
{
	/* Tolerances about 10 standard errors for the mean at n = 20,000. */
	check_distribution(1.0, 20000, 0.1);
	check_distribution(0.25, 20000, 0.6);
	check_distribution(3.0, 20000, 0.05);
	check_distribution(0.1, 20000, 1.5);   /* epsilon = s / 2^55 */
	check_distribution(1e-4, 20000, 1000); /* s / 2^66: uniforms wider than 64 bits */
	CU_ASSERT_EQUAL(cmq_agg_noise(0), 0);
	CU_ASSERT_EQUAL(cmq_agg_noise(-1), 0);
	CU_ASSERT_EQUAL(cmq_agg_noise(1e30), 0); /* out of range: no sample */
	/* A huge epsilon is effectively no noise. */
	for (int i = 0; i < 1000; i++)
		CU_ASSERT_EQUAL(cmq_agg_noise(1000), 0);
}

/* ---- arguments and bounds ---- */

static const struct bad_add {
	const char *topic;
	const char *group;
	struct cmq_agg_params p;
	int64_t now;
} bad_adds[] = {
    {"", "g", {60, 1, 0}, T0},
    {"city/a b", "g", {60, 1, 0}, T0},
    {"city/a\nA1 0 60 1 0 999 city/forged g", "g", {60, 1, 0}, T0},
    {"city/a\r", "g", {60, 1, 0}, T0},
    {"city/a\t", "g", {60, 1, 0}, T0},
    {"city/\x7f", "g", {60, 1, 0}, T0},
    {"city/+/x", "g", {60, 1, 0}, T0},
    {"city/#", "g", {60, 1, 0}, T0},
    {"city/\xc3\x28", "g", {60, 1, 0}, T0}, /* invalid UTF-8 */
    {"t", "", {60, 1, 0}, T0},
    {"t", "a b", {60, 1, 0}, T0},
    {"t", "a\nb", {60, 1, 0}, T0},
    {"t", "a/b", {60, 1, 0}, T0},
    {"t", "\"q\"", {60, 1, 0}, T0},
    {"t", "zone\\1", {60, 1, 0}, T0},
    {"t", "g\xc3\xa9", {60, 1, 0}, T0},
    {"t", "0123456789012345678901234567890123456789012345678901234567890123X", {60, 1, 0}, T0},
    {"t", "g", {0, 1, 0}, T0},
    {"t", "g", {60, 0, 0}, T0},
    {"t", "g", {60, 1, -1}, T0},
    {"t", "g", {60, 1, 1e-300}, T0},
    {"t", "g", {60, 1, 1e300}, T0},
    {"t", "g", {60, 1, 0}, -1},
    {"t", "g", {60, 1, 0}, CMQ_AGG_TIME_MAX + 1},
};

static void TEST_bad_arguments(void)
{
	const char *path = journal_path("bad-args.journal");
	struct cmq_agg *a = NULL;
	static char topic[CMQ_AGG_TOPIC_MAX + 2];
	struct cmq_agg_params nan_p = {60, 1, 0}, inf_p = {60, 1, 0};
	struct sink s;

	CU_ASSERT_EQUAL_FATAL(cmq_agg_open(path, 100, NULL, &a), CMQ_OK);
	for (size_t i = 0; i < sizeof(bad_adds) / sizeof(bad_adds[0]); i++) {
		const struct bad_add *b = &bad_adds[i];
		int rc = cmq_agg_add(a, b->topic, b->group, &b->p, b->now, 1);

		if (rc != CMQ_ERR_INVAL)
			fprintf(stderr, "\n  row %zu: %s\n", i, cmq_err_name(rc));
		CU_ASSERT_EQUAL(rc, CMQ_ERR_INVAL);
	}
	nan_p.epsilon = strtod("nan", NULL);
	inf_p.epsilon = strtod("inf", NULL);
	CU_ASSERT_EQUAL(cmq_agg_add(a, "t", "g", &nan_p, T0, 1), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(cmq_agg_add(a, "t", "g", &inf_p, T0, 1), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(cmq_agg_add(a, NULL, "g", &exact5, T0, 1), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(cmq_agg_add(a, "t", NULL, &exact5, T0, 1), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(cmq_agg_add(a, "t", "g", NULL, T0, 1), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(cmq_agg_add(NULL, "t", "g", &exact5, T0, 1), CMQ_ERR_INVAL);
	/* The longest topic passes; one byte more does not. */
	memset(topic, 'x', CMQ_AGG_TOPIC_MAX);
	add_ok(a, topic, "g", &exact5, T0, 1);
	topic[CMQ_AGG_TOPIC_MAX] = 'x';
	CU_ASSERT_EQUAL(cmq_agg_add(a, topic, "g", &exact5, T0, 1), CMQ_ERR_INVAL);
	/* Every accepted character of a group; the limits of now and epsilon. */
	add_ok(a, "city/ok", "AZaz09_.:-", &exact5, T0, 1);
	add_ok(a, "city/ok", "g", &exact5, 0, 1);
	add_ok(a, "city/ok", "g", &exact5, CMQ_AGG_TIME_MAX, 1);
	{
		const struct cmq_agg_params lo = {60, 1, CMQ_AGG_EPSILON_MIN},
		                            hi = {60, 1, CMQ_AGG_EPSILON_MAX};

		add_ok(a, "city/eps", "lo", &lo, T0, 1);
		add_ok(a, "city/eps", "hi", &hi, T0, 1);
	}
	/* Nothing refused reached the journal: only the accepted lines are there. */
	{
		const char *text = slurp(path);
		size_t lines = 0;

		CU_ASSERT_PTR_NOT_NULL_FATAL(text);
		for (const char *c = text; *c; c++)
			lines += *c == '\n';
		CU_ASSERT_EQUAL(lines, 6);
		CU_ASSERT_PTR_NULL(strstr(text, "forged"));
	}
	sink_init(&s);
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0, NULL, NULL, NULL), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(cmq_agg_flush(NULL, T0, sink_emit, &s, NULL), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(cmq_agg_open_groups(NULL), 0);
	cmq_agg_close(a);
	cmq_agg_close(NULL);
	a = (struct cmq_agg *)1;
	CU_ASSERT_EQUAL(cmq_agg_open(NULL, 0, NULL, &a), CMQ_ERR_INVAL);
	CU_ASSERT_PTR_NULL(a);
}

static void TEST_max_groups(void)
{
	const char *path = journal_path("max.journal");
	struct cmq_agg *a = NULL;
	struct cmq_diag diag;
	struct sink s;

	CU_ASSERT_EQUAL_FATAL(cmq_agg_open(path, 3, NULL, &a), CMQ_OK);
	add_ok(a, "t", "g1", &exact5, T0, 1);
	add_ok(a, "t", "g2", &exact5, T0, 1);
	add_ok(a, "t", "g3", &exact5, T0 + 60, 1);
	CU_ASSERT_EQUAL(cmq_agg_add(a, "t", "g4", &exact5, T0, 1), CMQ_ERR_TOO_BIG);
	CU_ASSERT_EQUAL(cmq_agg_add(a, "u", "g1", &exact5, T0, 1), CMQ_ERR_TOO_BIG);
	add_ok(a, "t", "g1", &exact5, T0 + 1, 1); /* existing entries still count */
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 3);
	sink_init(&s);
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 60, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 1);
	add_ok(a, "t", "g4", &exact5, T0 + 60, 1); /* room again */
	add_ok(a, "t", "g5", &exact5, T0 + 60, 1);
	CU_ASSERT_EQUAL(cmq_agg_add(a, "t", "g6", &exact5, T0 + 60, 1), CMQ_ERR_TOO_BIG);
	cmq_agg_close(a);
	/* A journal with more entries than a lower max_groups loads whole, with a warning. */
	cmq_diag_init(&diag);
	CU_ASSERT_EQUAL_FATAL(cmq_agg_open(path, 2, &diag, &a), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 3);
	CU_ASSERT_EQUAL(diag.warnings, 1);
	CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&diag, "holds 3 open groups, more than max_groups 2"));
	CU_ASSERT_EQUAL(cmq_agg_add(a, "t", "g7", &exact5, T0 + 60, 1), CMQ_ERR_TOO_BIG);
	cmq_diag_cleanup(&diag);
	cmq_agg_close(a);
}

/* ---- emit failures ---- */

static void TEST_emit_failure_keeps_the_window(void)
{
	struct cmq_agg *a = open_mem(100);
	const struct cmq_agg_params noisy = {60, 1, 0.2};
	struct cmq_agg_stats st;
	struct sink s;

	sink_init(&s);
	add_ok(a, "t", "a", &exact5, T0, 5);
	add_ok(a, "t", "b", &exact5, T0, 6);
	add_ok(a, "t", "c", &exact5, T0, 1); /* suppressed */
	add_ok(a, "t", "d", &noisy, T0, 100);
	add_ok(a, "t", "e", &exact5, T0 + 60, 7); /* not due */
	s.fail_at = 1;
	s.fail_rc = CMQ_ERR_IO;
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 60, sink_emit, &s, &st), CMQ_ERR_IO);
	CU_ASSERT_EQUAL(st.published, 1);
	CU_ASSERT_EQUAL(st.suppressed, 1);
	CU_ASSERT_EQUAL_FATAL(s.n, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[0], "\"group\":\"a\""));
	CU_ASSERT_EQUAL(s.calls, 2);                /* emission stops at the failure */
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 3); /* b, d kept; e open */

	/* The next flush publishes what was kept, in order; e is still not due. */
	sink_init(&s);
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 61, sink_emit, &s, &st), CMQ_OK);
	CU_ASSERT_EQUAL(st.published, 2);
	CU_ASSERT_EQUAL(st.suppressed, 0);
	CU_ASSERT_EQUAL_FATAL(s.n, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[0],
	                              "\"group\":\"b\",\"window_start\":\"2025-11-28T12:00:"
	                              "00Z\",\"window_seconds\":60,\"count\":6,"));
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[1], "\"group\":\"d\""));
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 1);
	/* Any code but CMQ_OK is a failure, and a failing emit never loses the window. */
	add_ok(a, "t", "f", &exact5, T0 + 60, 9);
	sink_init(&s);
	s.fail_at = 0;
	s.fail_rc = CMQ_ERR_NOT_FOUND;
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 120, sink_emit, &s, &st), CMQ_ERR_NOT_FOUND);
	CU_ASSERT_EQUAL(st.published, 0);
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 2);
	cmq_agg_close(a);
}

/* An emit that fails after seeing the payload gets the same payload on retry. */
struct recording_failer {
	int calls;
	char seen[4][512];
};

static int fail_but_record(void *arg, const char *topic, const char *payload, size_t len)
{
	struct recording_failer *r = arg;

	(void)topic;
	(void)len;
	if (r->calls < 4)
		snprintf(r->seen[r->calls], sizeof(r->seen[0]), "%s", payload);
	return r->calls++ < 3 ? CMQ_ERR_IO : CMQ_OK;
}

static void TEST_retry_publishes_the_same_noise(void)
{
	struct cmq_agg *a = open_mem(100);
	const struct cmq_agg_params noisy = {60, 1, 0.05}; /* noise of tens: a redraw shows */
	struct recording_failer r;
	int rc;

	memset(&r, 0, sizeof(r));
	add_ok(a, "t", "d", &noisy, T0, 1000);
	for (int i = 0; i < 4; i++) {
		rc = cmq_agg_flush(a, T0 + 60 + i, fail_but_record, &r, NULL);
		CU_ASSERT_EQUAL(rc, i < 3 ? CMQ_ERR_IO : CMQ_OK);
	}
	CU_ASSERT_EQUAL(r.calls, 4);
	for (int i = 1; i < 4; i++)
		CU_ASSERT_STRING_EQUAL(r.seen[i], r.seen[0]);
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 0);
	cmq_agg_close(a);
}

/* ---- the journal ---- */

static void TEST_journal_format(void)
{
	const char *path = journal_path("format.journal");
	const struct cmq_agg_params noisy = {3600, 7, 0.1};
	struct cmq_agg *a = NULL;
	struct sink s;
	char p[4096];

	snprintf(p, sizeof(p), "%s", path);
	CU_ASSERT_EQUAL_FATAL(cmq_agg_open(p, 100, NULL, &a), CMQ_OK);
	add_ok(a, "city/north/crowd", "zone-1", &exact5, T0 + 17, 3);
	add_ok(a, "city/north/crowd", "zone-1", &exact5, T0 + 59, 4);
	add_ok(a, "city/s\xc3\xbc\x64/crowd", "a.b:c_d-9", &noisy, T0 + 3599, 12);
	CU_ASSERT_STRING_EQUAL(slurp(p), "A1 1764331200 60 5 0 3 city/north/crowd zone-1\n"
	                                 "A1 1764331200 60 5 0 4 city/north/crowd zone-1\n"
	                                 "A1 1764331200 3600 7 0.10000000000000001 12 "
	                                 "city/s\xc3\xbc\x64/crowd a.b:c_d-9\n");
	{
		struct stat st;

		CU_ASSERT_EQUAL_FATAL(stat(p, &st), 0);
		CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
	}
	/* After a flush: one line per entry still open (the sum), nothing else. */
	sink_init(&s);
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 60, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT_EQUAL(s.n, 1);
	CU_ASSERT_STRING_EQUAL(slurp(p), "A1 1764331200 3600 7 0.10000000000000001 12 "
	                                 "city/s\xc3\xbc\x64/crowd a.b:c_d-9\n");
	/* Appends after the rewrite land in the new file. */
	add_ok(a, "city/north/crowd", "zone-2", &exact5, T0 + 60, 1);
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(slurp(p), "A1 1764331260 60 5 0 1 city/north/crowd zone-2\n"));
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 3600, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT_STRING_EQUAL(slurp(p), "");
	{
		char tmp[4200];

		snprintf(tmp, sizeof(tmp), "%s.tmp", p);
		CU_ASSERT_NOT_EQUAL(access(tmp, F_OK), 0); /* renamed away */
	}
	cmq_agg_close(a);
}

/* The adds of the crash tests: several windows, topics, groups, params. */
static void add_workload(struct cmq_agg *a)
{
	const struct cmq_agg_params p1 = {60, 2, 0}, p2 = {600, 3, 0}, p3 = {60, 4, 0};

	for (int i = 0; i < 120; i++) {
		char group[16];

		snprintf(group, sizeof(group), "zone-%d", i % 5);
		add_ok(a, i % 3 ? "city/a/crowd" : "city/b/crowd", group, &p1, T0 + i * 7, 1);
		add_ok(a, "city/c/count", group, &p2, T0 + i * 11, (uint64_t)i % 4);
	}
	/* k changes mid-window (a reload): the larger one holds. */
	add_ok(a, "city/k", "g", &p1, T0, 3);
	add_ok(a, "city/k", "g", &p3, T0 + 1, 0);
}

static void run_flushes(struct cmq_agg *a, struct sink *s)
{
	for (int64_t t = T0; t <= T0 + 1800; t += 60)
		CU_ASSERT_EQUAL(cmq_agg_flush(a, t, sink_emit, s, NULL), CMQ_OK);
}

/* Close without flushing ("kill -9"), reopen: the same output as without the crash. */
static void TEST_journal_replay_after_crash(void)
{
	const char *path = journal_path("crash.journal");
	static struct sink want, got;
	struct cmq_agg *a = NULL, *ref = open_mem(10000);
	struct cmq_diag diag;
	char p[4096];

	snprintf(p, sizeof(p), "%s", path);
	add_workload(ref);
	sink_init(&want);
	run_flushes(ref, &want);
	CU_ASSERT(want.n > 20);
	CU_ASSERT_PTR_NOT_NULL(strstr(want.payload[want.n - 1], "\"k\":"));
	cmq_agg_close(ref);

	CU_ASSERT_EQUAL_FATAL(cmq_agg_open(p, 10000, NULL, &a), CMQ_OK);
	add_workload(a);
	cmq_agg_close(a); /* the crash */
	cmq_diag_init(&diag);
	CU_ASSERT_EQUAL_FATAL(cmq_agg_open(p, 10000, &diag, &a), CMQ_OK);
	CU_ASSERT_EQUAL(diag.errors + diag.warnings, 0);
	cmq_diag_cleanup(&diag);
	sink_init(&got);
	run_flushes(a, &got);
	CU_ASSERT_EQUAL_FATAL(got.n, want.n);
	for (size_t i = 0; i < want.n; i++) {
		CU_ASSERT_STRING_EQUAL(got.topic[i], want.topic[i]);
		CU_ASSERT_STRING_EQUAL(got.payload[i], want.payload[i]);
	}
	cmq_agg_close(a);

	/* A crash between flushes: half flushed, reopened, the rest comes out the same. */
	CU_ASSERT_EQUAL_FATAL(cmq_agg_open(p, 10000, NULL, &a), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 0);
	add_workload(a);
	sink_init(&got);
	for (int64_t t = T0; t <= T0 + 600; t += 60)
		CU_ASSERT_EQUAL(cmq_agg_flush(a, t, sink_emit, &got, NULL), CMQ_OK);
	cmq_agg_close(a);
	CU_ASSERT_EQUAL_FATAL(cmq_agg_open(p, 10000, NULL, &a), CMQ_OK);
	for (int64_t t = T0 + 660; t <= T0 + 1800; t += 60)
		CU_ASSERT_EQUAL(cmq_agg_flush(a, t, sink_emit, &got, NULL), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(got.n, want.n);
	for (size_t i = 0; i < want.n; i++)
		CU_ASSERT_STRING_EQUAL(got.payload[i], want.payload[i]);
	cmq_agg_close(a);
}

static void TEST_truncated_last_line_tolerated(void)
{
	const char *path;
	struct cmq_agg *a = NULL;
	struct cmq_diag diag;
	struct sink s;
	char p[4096];

	path = cmq_test_write_file("trunc.journal", "A1 1764331200 60 1 0 3 city/t g\n"
	                                            "A1 1764331200 60 1 0 4 city/t g\n"
	                                            "A1 1764331200 60 1 0 100 ci");
	snprintf(p, sizeof(p), "%s", path);
	cmq_diag_init(&diag);
	CU_ASSERT_EQUAL_FATAL(cmq_agg_open(p, 100, &diag, &a), CMQ_OK);
	CU_ASSERT_EQUAL(diag.errors, 0);
	CU_ASSERT_EQUAL(diag.warnings, 1);
	CU_ASSERT_PTR_NOT_NULL(
	    cmq_diag_find(&diag, "trunc.journal: line 3: incomplete last line of the aggregate "
	                         "journal"));
	cmq_diag_cleanup(&diag);
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 1);
	/* The partial line is cut off, so the next append starts a line of its own. */
	add_ok(a, "city/t", "g", &(struct cmq_agg_params){60, 1, 0}, T0 + 1, 10);
	CU_ASSERT_STRING_EQUAL(slurp(p), "A1 1764331200 60 1 0 3 city/t g\n"
	                                 "A1 1764331200 60 1 0 4 city/t g\n"
	                                 "A1 1764331200 60 1 0 10 city/t g\n");
	cmq_agg_close(a);
	cmq_diag_init(&diag);
	CU_ASSERT_EQUAL_FATAL(cmq_agg_open(p, 100, &diag, &a), CMQ_OK);
	CU_ASSERT_EQUAL(diag.errors + diag.warnings, 0);
	cmq_diag_cleanup(&diag);
	sink_init(&s);
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 60, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(s.n, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[0], "\"count\":17,"));
	cmq_agg_close(a);
}

/* Corrupt lines (not the last, incomplete one): each named with its number. */
static const char *const corrupt_lines[] = {
    "A1 1764331200 60 1 0 3 city/t",                      /* 7 fields */
    "A1 1764331200 60 1 0 3 city/t g extra",              /* 9 fields */
    "A2 1764331200 60 1 0 3 city/t g",                    /* unknown record type */
    "A1 1764331201 60 1 0 3 city/t g",                    /* start not on a window boundary */
    "A1 -60 60 1 0 3 city/t g",                           /* negative start */
    "A1 1764331200 0 1 0 3 city/t g",                     /* window length 0 */
    "A1 1764331200 60 0 0 3 city/t g",                    /* k 0 */
    "A1 1764331200 60 1 -1 3 city/t g",                   /* epsilon < 0 */
    "A1 1764331200 60 1 nan 3 city/t g",                  /* epsilon NaN */
    "A1 1764331200 60 1 1e-300 3 city/t g",               /* epsilon out of range */
    "A1 1764331200 60 1 0 03 city/t g",                   /* not canonical */
    "A1 1764331200 60 1 0 18446744073709551616 city/t g", /* count overflows */
    "A1 1764331200 60 1 0 3 city/+ g",                    /* wildcard topic */
    "A1 1764331200 60 1 0 3 city/t g/h",                  /* bad group */
    "A1 1764331200 60 1 0 3 city/t  g",                   /* two spaces */
    "",                                                   /* empty line */
    "A1 1764331200 60 1 0 3 city/t g\r",                  /* CR */
};

static void TEST_corrupt_line_reported(void)
{
	long before = cmq_test_live_allocations();

	for (size_t i = 0; i < sizeof(corrupt_lines) / sizeof(corrupt_lines[0]); i++) {
		static char text[4096], copy[65536];
		struct cmq_agg *a = (struct cmq_agg *)1;
		struct cmq_diag diag;
		const char *path;
		char p[4096];

		snprintf(text, sizeof(text),
		         "A1 1764331200 60 1 0 3 city/t g\n%s\nA1 1764331200 60 1 0 4 city/t g\n",
		         corrupt_lines[i]);
		path = cmq_test_write_file("corrupt.journal", text);
		snprintf(p, sizeof(p), "%s", path);
		cmq_diag_init(&diag);
		CU_ASSERT_EQUAL(cmq_agg_open(p, 100, &diag, &a), CMQ_ERR_PARSE);
		CU_ASSERT_PTR_NULL(a);
		CU_ASSERT_EQUAL(diag.errors, 1);
		if (cmq_diag_find(
		        &diag, "corrupt.journal: line 2: corrupt aggregate journal line") == NULL) {
			fprintf(stderr, "\n  row %zu: %s", i, diag.n ? diag.entries[0].text : "-");
			CU_FAIL("diagnostic");
		}
		cmq_diag_cleanup(&diag);
		/* The file is left as it was. */
		snprintf(copy, sizeof(copy), "%s", slurp(p));
		CU_ASSERT_STRING_EQUAL(copy, text);
	}
	/* Every corrupt line is reported, also an over-long one. */
	{
		static char text[200000];
		struct cmq_agg *a = NULL;
		struct cmq_diag diag;
		size_t off = 0;
		char p[4096];

		off += (size_t)snprintf(text + off, sizeof(text) - off, "bad one\n");
		off += (size_t)snprintf(text + off, sizeof(text) - off,
		                        "A1 1764331200 60 1 0 4 t g\n");
		memset(text + off, 'x', 150000);
		off += 150000;
		off += (size_t)snprintf(text + off, sizeof(text) - off, "\nbad four\n");
		off += (size_t)snprintf(text + off, sizeof(text) - off,
		                        "A1 1764331200 60 1 0 4 t g\n");
		snprintf(p, sizeof(p), "%s", cmq_test_write_file("corrupt2.journal", text));
		cmq_diag_init(&diag);
		CU_ASSERT_EQUAL(cmq_agg_open(p, 100, &diag, &a), CMQ_ERR_PARSE);
		CU_ASSERT_EQUAL(diag.errors, 3);
		CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&diag, "line 1: corrupt"));
		CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&diag, "line 3: corrupt"));
		CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&diag, "line too long"));
		CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&diag,
		                                     "line 4: corrupt aggregate journal line "
		                                     "\"bad four\""));
		cmq_diag_cleanup(&diag);
	}
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
}

/* A journal that cannot be opened or read is CMQ_ERR_IO naming the file. */
static void TEST_journal_io_errors(void)
{
	struct cmq_agg *a = (struct cmq_agg *)1;
	struct cmq_diag diag;

	cmq_diag_init(&diag);
	CU_ASSERT_EQUAL(cmq_agg_open(cmq_test_tmpdir(), 10, &diag, &a), CMQ_ERR_IO);
	CU_ASSERT_PTR_NULL(a);
	CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&diag, "is not a regular file"));
	cmq_diag_cleanup(&diag);
	cmq_diag_init(&diag);
	CU_ASSERT_EQUAL(cmq_agg_open("/nonexistent-dir/x.journal", 10, &diag, &a), CMQ_ERR_IO);
	CU_ASSERT_PTR_NOT_NULL(
	    cmq_diag_find(&diag, "/nonexistent-dir/x.journal: cannot open the aggregate journal "
	                         "for appending: No such file or directory"));
	cmq_diag_cleanup(&diag);
}

/*
 * An append that fails half-way (file size limit: write(2) stores part of the line, then
 * EFBIG) counts nothing and leaves no partial line behind.
 */
static void TEST_failed_append_counts_nothing(void)
{
	const char *path = journal_path("full.journal");
	struct cmq_agg *a = NULL;
	struct rlimit old, lim;
	struct stat st;
	struct sink s;
	char p[4096];
	void (*old_handler)(int);

	snprintf(p, sizeof(p), "%s", path);
	CU_ASSERT_EQUAL_FATAL(cmq_agg_open(p, 100, NULL, &a), CMQ_OK);
	add_ok(a, "city/t", "g", &exact5, T0, 3);
	CU_ASSERT_EQUAL_FATAL(stat(p, &st), 0);
	CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_FSIZE, &old), 0);
	old_handler = signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = (rlim_t)st.st_size + 10;
	CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_FSIZE, &lim), 0);
	CU_ASSERT_EQUAL(cmq_agg_add(a, "city/t", "g", &exact5, T0, 100), CMQ_ERR_IO);
	CU_ASSERT_EQUAL(cmq_agg_add(a, "city/t", "new", &exact5, T0, 100), CMQ_ERR_IO);
	CU_ASSERT_EQUAL(cmq_agg_last_errno(a), EFBIG);
	CU_ASSERT_EQUAL(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_handler);
	CU_ASSERT_EQUAL(cmq_agg_open_groups(a), 1); /* "new" was not kept */
	add_ok(a, "city/t", "g", &exact5, T0, 4);
	CU_ASSERT_STRING_EQUAL(slurp(p), "A1 1764331200 60 5 0 3 city/t g\n"
	                                 "A1 1764331200 60 5 0 4 city/t g\n");
	cmq_agg_close(a);
	CU_ASSERT_EQUAL_FATAL(cmq_agg_open(p, 100, NULL, &a), CMQ_OK);
	sink_init(&s);
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 60, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(s.n, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(s.payload[0], "\"count\":7,"));
	cmq_agg_close(a);
}

/* A rewrite that fails is reported and retried at the next flush, changes or not. */
static void TEST_failed_rewrite_is_retried(void)
{
	const char *path = journal_path("rewrite.journal");
	struct cmq_agg *a = NULL;
	struct sink s;
	char p[4096], tmp[4200];

	snprintf(p, sizeof(p), "%s", path);
	snprintf(tmp, sizeof(tmp), "%s.tmp", p);
	CU_ASSERT_EQUAL_FATAL(cmq_agg_open(p, 100, NULL, &a), CMQ_OK);
	add_ok(a, "city/t", "g", &exact5, T0, 5);
	add_ok(a, "city/t", "h", &exact5, T0 + 60, 5);
	CU_ASSERT_EQUAL_FATAL(mkdir(tmp, 0700), 0); /* the temp file cannot be created */
	sink_init(&s);
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 60, sink_emit, &s, NULL), CMQ_ERR_IO);
	CU_ASSERT_EQUAL(cmq_agg_last_errno(a), EISDIR);
	CU_ASSERT_EQUAL(s.n, 1); /* published all the same */
	/* The journal still holds both; appends go on to it. */
	add_ok(a, "city/t", "h", &exact5, T0 + 61, 1);
	CU_ASSERT_STRING_EQUAL(slurp(p), "A1 1764331200 60 5 0 5 city/t g\n"
	                                 "A1 1764331260 60 5 0 5 city/t h\n"
	                                 "A1 1764331260 60 5 0 1 city/t h\n");
	CU_ASSERT_EQUAL(rmdir(tmp), 0);
	CU_ASSERT_EQUAL(cmq_agg_flush(a, T0 + 61, sink_emit, &s, NULL), CMQ_OK);
	CU_ASSERT_EQUAL(s.n, 1);
	CU_ASSERT_STRING_EQUAL(slurp(p), "A1 1764331260 60 5 0 6 city/t h\n");
	cmq_agg_close(a);
}

/* ---- out of memory ---- */

/* Fail allocation n anywhere in open (replay) + add + flush: clean errors, no leak. */
static void TEST_oom_sweep(void)
{
	static const char journal[] = "A1 1764331200 60 1 0 3 city/t g\n"
	                              "A1 1764331200 60 1 0 4 city/u g\n"
	                              "A1 1764331260 60 1 0 5 city/t g\n";
	long before = cmq_test_live_allocations(), n;
	bool done = false;
	char p[4096];

	for (n = 0; n < 500 && !done; n++) {
		struct cmq_agg *a = NULL;
		struct sink s;
		int rc;

		snprintf(p, sizeof(p), "%s", cmq_test_write_file("oom.journal", journal));
		sink_init(&s);
		cmq_test_fail_after(n);
		rc = cmq_agg_open(p, 100, NULL, &a);
		if (rc == CMQ_OK) {
			for (int i = 0; i < 20 && rc == CMQ_OK; i++) {
				char g[16];

				snprintf(g, sizeof(g), "n%d", i);
				rc = cmq_agg_add(a, "city/t", g, &exact5, T0 + 60, 1);
			}
		}
		if (rc == CMQ_OK)
			rc = cmq_agg_flush(a, T0 + 120, sink_emit, &s, NULL);
		done = !cmq_test_failure_fired();
		cmq_test_fail_after(-1);
		if (done) {
			CU_ASSERT_EQUAL(rc, CMQ_OK);
			CU_ASSERT_EQUAL(s.n, 3);
		} else {
			CU_ASSERT_EQUAL(rc, CMQ_ERR_NOMEM);
			if (rc != CMQ_ERR_NOMEM)
				fprintf(stderr, "\n  n = %ld: %s", n, cmq_err_name(rc));
		}
		if (a == NULL)
			CU_ASSERT_EQUAL(rc, CMQ_ERR_NOMEM);
		/* Whatever failed, the journal still replays and matches memory. */
		if (a != NULL) {
			struct cmq_agg *b = NULL;

			CU_ASSERT_EQUAL(cmq_agg_open(p, 100, NULL, &b), CMQ_OK);
			CU_ASSERT_EQUAL(cmq_agg_open_groups(b), cmq_agg_open_groups(a));
			cmq_agg_close(b);
		}
		cmq_agg_close(a);
		CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
	}
	CU_ASSERT_TRUE(done);
	CU_ASSERT(n > 8);
}

int main(void)
{
	static const struct cmq_test_case cases[] = {
	    {"k_threshold", TEST_k_threshold},
	    {"window_boundaries", TEST_window_boundaries},
	    {"closed_window_refused", TEST_closed_window_refused},
	    {"groups_topics_and_windows_kept_apart", TEST_groups_topics_and_windows_kept_apart},
	    {"strictest_params_win", TEST_strictest_params_win},
	    {"flush_order_is_deterministic", TEST_flush_order_is_deterministic},
	    {"exact_counts_without_noise", TEST_exact_counts_without_noise},
	    {"noised_payload", TEST_noised_payload},
	    {"noised_count_clamped_at_zero", TEST_noised_count_clamped_at_zero},
	    {"peek_then_flush_emits_the_same", TEST_peek_then_flush_emits_the_same},
	    {"noise_distribution", TEST_noise_distribution},
	    {"bad_arguments", TEST_bad_arguments},
	    {"max_groups", TEST_max_groups},
	    {"emit_failure_keeps_the_window", TEST_emit_failure_keeps_the_window},
	    {"retry_publishes_the_same_noise", TEST_retry_publishes_the_same_noise},
	    {"journal_format", TEST_journal_format},
	    {"journal_replay_after_crash", TEST_journal_replay_after_crash},
	    {"truncated_last_line_tolerated", TEST_truncated_last_line_tolerated},
	    {"corrupt_line_reported", TEST_corrupt_line_reported},
	    {"journal_io_errors", TEST_journal_io_errors},
	    {"failed_append_counts_nothing", TEST_failed_append_counts_nothing},
	    {"failed_rewrite_is_retried", TEST_failed_rewrite_is_retried},
	    {"oom_sweep", TEST_oom_sweep},
	    {NULL, NULL},
	};

	return cmq_test_run("aggregate", cases);
}
