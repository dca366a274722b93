/*
 * test_gateway.c - civicmq-gateway as a process between a real mosquitto with the civicmq
 * plugin (civicmq_env.h) and real subscribers: what dashboards receive, and what they must
 * never receive.
 *
 * One broker serves the suite; each test starts its own gateway(s) (gateway_env.h) with a
 * share group of its own and deletes their persistent sessions afterwards, so no test
 * sees another's raw messages. Two broker settings differ from Mosquitto's defaults (see
 * broker_conf): max_queued_messages, because the crash test queues more raw messages for
 * the dead gateway than the default 1000, and max_inflight_messages, because with the
 * default the gateway forwards only about 20 messages a second (CMQ_TEST_BROKER_CONF
 * replaces these lines, e.g. to reproduce that).
 *
 * The gateways run a test variant of the example policy: aggregate windows of 2 s with
 * k = 5 (so aggregates appear within a test), and a 2048-byte limit on noise payloads
 * (the broker allows 64 KiB, so an oversized payload reaches the gateway's own check).
 * Random data comes from a seeded generator; the seed is printed (CMQ_TEST_SEED=n repeats
 * a run; CMQ_TEST_ONLY=name,... runs only the tests named).
 */
#include "canary.h"
#include "civicmq_env.h"
#include "itest.h"
#include "gateway_env.h"

#include <CUnit/Basic.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOT_AUTHORISED 0x87
#define PAYLOAD_MAX    8192

static struct cmq_env env;
static char *policy_fast;   /* window 2 s, k 5, noise on; noise payloads <= 2048 bytes */
static char *policy_exact;  /* the same without noise */
static char *policy_coarse; /* policy_fast with air locations at geohash precision 5 */
static uint64_t seed;

/* ---- devices ---- */

static const char *const device_names[] = {
    "civitas-air-001",   "civitas-noise-001", "civitas-wifi-001", "civitas-anpr-001",
    "civitas-meter-001", "civitas-cam-001",   "nimbus-air-001",   "nimbus-wifi-001",
};
#define N_DEVICES (sizeof(device_names) / sizeof(device_names[0]))
static struct cmq_h_client *devices[N_DEVICES];

/* A connected client for a device certificate (kept for the suite). */
static struct cmq_h_client *dev(const char *name)
{
	for (size_t i = 0; i < N_DEVICES; i++) {
		int reason = -1;

		if (strcmp(device_names[i], name) != 0)
			continue;
		if (devices[i] != NULL && cmq_h_disconnect_reason(devices[i]) != -1) {
			cmq_h_close(devices[i]);
			devices[i] = NULL;
		}
		if (devices[i] == NULL &&
		    cmq_env_connect_cert(&env, name, NULL, 0, &devices[i], &reason) != 0)
			fprintf(stderr, "device %s cannot connect (reason %d)\n", name, reason);
		return devices[i];
	}
	return NULL;
}

/* Forget the suite's device connections (after a broker restart they are dead). */
static void reset_devices(void)
{
	for (size_t i = 0; i < N_DEVICES; i++) {
		if (devices[i] != NULL)
			cmq_h_close(devices[i]);
		devices[i] = NULL;
	}
}

/* QoS 1 publish; returns 0 (accepted), CMQ_H_REFUSED or CMQ_H_ERR. */
static int pub(const char *device, const char *topic, const char *payload, int len, int *code)
{
	struct cmq_h_client *c = dev(device);
	int reason = -1;
	int rc;

	if (c == NULL)
		return CMQ_H_ERR;
	rc = cmq_h_publish(c, topic, payload, len, 1, false, NULL, &reason);
	if (code != NULL)
		*code = reason;
	return rc;
}

static int pubs(const char *device, const char *topic, const char *payload)
{
	return pub(device, topic, payload, (int)strlen(payload), NULL);
}

/* ---- policy variants ---- */

static struct json_object *find_by_id(struct json_object *arr, const char *id)
{
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *e = json_object_array_get_idx(arr, i), *v;

		if (json_object_object_get_ex(e, "id", &v) &&
		    strcmp(json_object_get_string(v), id) == 0)
			return e;
	}
	return NULL;
}

/* The env's policy with the crowd aggregate at window/k/epsilon (< 0: no noise), noise
 * payloads limited to noise_max bytes and air locations at air_precision. */
static char *policy_variant(int window, int k, double epsilon, int noise_max, int air_precision)
{
	struct json_object *root = json_object_from_file(env.policy), *arr, *p, *ops, *op, *r;
	char *text = NULL;

	if (root == NULL)
		return NULL;
	if (!json_object_object_get_ex(root, "scrub_profiles", &arr) ||
	    (p = find_by_id(arr, "crowd-aggregate")) == NULL ||
	    !json_object_object_get_ex(p, "ops", &ops) || json_object_array_length(ops) != 1)
		goto out;
	op = json_object_array_get_idx(ops, 0);
	json_object_object_add(op, "window_seconds", json_object_new_int(window));
	json_object_object_add(op, "k", json_object_new_int(k));
	if (epsilon < 0)
		json_object_object_del(op, "noise_epsilon");
	else
		json_object_object_add(op, "noise_epsilon", json_object_new_double(epsilon));
	if ((p = find_by_id(arr, "air-quality")) == NULL ||
	    !json_object_object_get_ex(p, "ops", &ops))
		goto out;
	for (size_t i = 0; i < json_object_array_length(ops); i++) {
		struct json_object *v;

		op = json_object_array_get_idx(ops, i);
		if (json_object_object_get_ex(op, "op", &v) &&
		    strcmp(json_object_get_string(v), "generalise_location") == 0)
			json_object_object_add(op, "geohash_precision",
			                       json_object_new_int(air_precision));
	}
	if (!json_object_object_get_ex(root, "topic_rules", &arr) ||
	    (r = find_by_id(arr, "noise")) == NULL)
		goto out;
	json_object_object_add(r, "max_payload_bytes", json_object_new_int(noise_max));
	text = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
out:
	json_object_put(root);
	return text;
}

/* ---- gateways and subscribers per test ---- */

/* Start a gateway with the fast policy unless o says otherwise. */
static int start_gw(struct cmq_gwe *g, struct cmq_gwe_opts *o)
{
	if (o->policy_text == NULL)
		o->policy_text = policy_fast;
	return cmq_gwe_start(&env, o, g);
}

/* Stop a gateway (it must exit cleanly) and delete its session at the broker. */
static void finish_gw(struct cmq_gwe *g)
{
	if (g->pid > 0)
		CU_ASSERT_EQUAL(cmq_gwe_stop(g), 0);
	if (g->client_id[0] != '\0')
		cmq_gwe_forget_session(&env, "gateway", g->client_id);
	cmq_gwe_cleanup(g);
}

static bool is_metrics(const struct cmq_h_msg *m)
{
	return strncmp(m->topic, "city/gateway/", 13) == 0;
}

static bool is_register(const struct cmq_h_msg *m)
{
	return strncmp(m->topic, "city/transparency/", 18) == 0;
}

/* The <kind> of city/<district>/<kind>, or "" for anything else. */
static const char *city_kind(const struct cmq_h_msg *m)
{
	const char *a, *b;

	if (strncmp(m->topic, "city/", 5) != 0 || is_metrics(m) || is_register(m))
		return "";
	a = strchr(m->topic + 5, '/');
	if (a == NULL)
		return "";
	b = strchr(a + 1, '/');
	return b == NULL ? a + 1 : "";
}

static bool is_data(const struct cmq_h_msg *m)
{
	const char *k = city_kind(m);

	return k[0] != '\0' && strcmp(k, "crowd") != 0;
}

/* Data messages (scrubbed copies, not aggregates or metrics) in s from index from. */
static size_t count_data(const struct cmq_gwe_sink *s, size_t from, const char *kind)
{
	size_t n = 0;

	for (size_t i = from; i < s->n; i++) {
		if (is_data(&s->msgs[i]) &&
		    (kind == NULL || strcmp(city_kind(&s->msgs[i]), kind) == 0))
			n++;
	}
	return n;
}

static size_t count_kind(const struct cmq_gwe_sink *s, size_t from, const char *kind)
{
	size_t n = 0;

	for (size_t i = from; i < s->n; i++) {
		if (strcmp(city_kind(&s->msgs[i]), kind) == 0)
			n++;
	}
	return n;
}

/* Pump until count_data(s, from, kind) >= n or timeout. */
static bool wait_data(struct cmq_gwe_sink *s, size_t from, const char *kind, size_t n,
                      int timeout_ms)
{
	long long deadline = cmq_gwe_now_ms() + timeout_ms;

	while (count_data(s, from, kind) < n) {
		if (cmq_gwe_now_ms() > deadline)
			return false;
		cmq_gwe_sink_pump(s, 100);
	}
	return true;
}

/* The first data message of kind at or after from, or NULL. */
static const struct cmq_h_msg *find_data(const struct cmq_gwe_sink *s, size_t from,
                                         const char *kind)
{
	for (size_t i = from; i < s->n; i++) {
		if (is_data(&s->msgs[i]) && strcmp(city_kind(&s->msgs[i]), kind) == 0)
			return &s->msgs[i];
	}
	return NULL;
}

static struct json_object *parse(const struct cmq_h_msg *m)
{
	return m == NULL ? NULL : json_tokener_parse(m->payload);
}

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o != NULL && json_object_object_get_ex(o, key, &v) &&
	               json_object_is_type(v, json_type_string)
	           ? json_object_get_string(v)
	           : NULL;
}

static bool jint(struct json_object *o, const char *key, long long *out)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_int))
		return false;
	*out = (long long)json_object_get_int64(v);
	return true;
}

/* ---- expected scrubbing, computed independently of core/ ---- */

static void geohash(double lat, double lon, int precision, char *out)
{
	static const char b32[] = "0123456789bcdefghjkmnpqrstuvwxyz";
	double lat_lo = -90, lat_hi = 90, lon_lo = -180, lon_hi = 180;
	int bit = 0, ch = 0, n = 0;
	bool even = true;

	while (n < precision) {
		double *lo = even ? &lon_lo : &lat_lo, *hi = even ? &lon_hi : &lat_hi;
		double v = even ? lon : lat, mid = (*lo + *hi) / 2;

		ch <<= 1;
		if (v >= mid) {
			ch |= 1;
			*lo = mid;
		} else {
			*hi = mid;
		}
		even = !even;
		if (++bit == 5) {
			out[n++] = b32[ch];
			bit = 0;
			ch = 0;
		}
	}
	out[n] = '\0';
}

static bool is_geohash(const char *s, size_t precision)
{
	return s != NULL && strlen(s) == precision &&
	       strspn(s, "0123456789bcdefghjkmnpqrstuvwxyz") == precision;
}

/* "YYYY-MM-DDTHH:MM:SSZ" of Unix time t. */
static void iso(long long t, char *out, size_t n)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Unix time of "YYYY-MM-DDTHH:MM:SS..." (UTC). */
static long long from_iso(const char *s)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
	           &tm.tm_min, &tm.tm_sec) != 6)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (long long)timegm(&tm);
}

static bool is_hex32(const char *s)
{
	return s != NULL && strlen(s) == 32 && strspn(s, "0123456789abcdef") == 32;
}

/* Every key of o is one of allowed (NULL-terminated). */
static bool keys_within(struct json_object *o, const char *const *allowed, char *bad, size_t n)
{
	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		snprintf(bad, n, "(not an object)");
		return false;
	}
	json_object_object_foreach(o, key, val)
	{
		bool ok = false;

		(void)val;
		for (size_t i = 0; allowed[i] != NULL && !ok; i++)
			ok = strcmp(allowed[i], key) == 0;
		if (!ok) {
			snprintf(bad, n, "%s", key);
			return false;
		}
	}
	return true;
}

/* What each scrubbed kind may contain, and the profile that made it. */
static const struct {
	const char *kind;
	const char *profile;
	const char *keys[12];
} outputs[] = {
    {"air",
     "air-quality",
     {"no2", "pm10", "pm25", "o3", "airQualityIndex", "temperature", "relativeHumidity",
      "dateObserved", "location", NULL}},
    {"noise", "noise", {"LAeq", "LAmax", "dateObserved", "location", NULL}},
    {"footfall", "footfall", {"peopleCount", "dateObserved", "location", "notes", NULL}},
    {"anpr",
     "anpr",
     {"observedVehicle", "vehiclePlateNotRead", "dateObserved", "location", "notes", NULL}},
    {"energy", "smart-meter", {"activePower", "meterId", "dateObserved", NULL}},
    {"crowd",
     "aggregate",
     {"group", "window_start", "window_seconds", "count", "k", "epsilon", NULL}},
};

static int output_index(const char *kind)
{
	for (size_t i = 0; i < sizeof(outputs) / sizeof(outputs[0]); i++) {
		if (strcmp(outputs[i].kind, kind) == 0)
			return (int)i;
	}
	return -1;
}

/* ---- consent files ---- */

/* {"version":1,"residents":[...]} with ids[i] opted in to cats[i] ("" = nothing). */
static char *consent_json(const char *const *ids, const char *const *cats, size_t n)
{
	struct json_object *root = json_object_new_object(), *arr = json_object_new_array();
	char *text;

	json_object_object_add(root, "version", json_object_new_int(1));
	for (size_t i = 0; i < n; i++) {
		struct json_object *r = json_object_new_object(), *c = json_object_new_array();

		json_object_object_add(r, "id", json_object_new_string(ids[i]));
		if (cats[i][0] != '\0')
			json_object_array_add(c, json_object_new_string(cats[i]));
		json_object_object_add(r, "categories", c);
		json_object_object_add(r, "updated",
		                       json_object_new_string("2026-11-28T09:00:00Z"));
		json_object_array_add(arr, r);
	}
	json_object_object_add(root, "residents", arr);
	text = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
	json_object_put(root);
	return text;
}

static char *consent_one(const char *id, const char *category)
{
	return consent_json(&id, &category, 1);
}

/* ---- suite ---- */

/*
 * What a broker in front of gateways needs besides the example conf (see the file
 * comment): room for the raw messages a dead gateway's session accumulates, and a
 * receive maximum above Mosquitto's default of 20, which Paho 1.3.12 turns into a stall
 * of up to 1 s whenever the window is full (eclipse-paho/paho.mqtt.c#1457): about 20
 * forwarded messages a second.
 */
static const char broker_conf[] = "max_queued_messages 1000000\n"
                                  "max_inflight_messages 1000\n";

static int suite_init(void)
{
	const char *s = getenv("CMQ_TEST_SEED");

	seed = s != NULL ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
	fprintf(stderr, "test_gateway: seed %llu (CMQ_TEST_SEED to repeat)\n",
	        (unsigned long long)seed);
	cmq_h_init();
	if (cmq_env_init(&env, NULL) != 0 ||
	    cmq_env_start(&env, getenv("CMQ_TEST_BROKER_CONF") ? getenv("CMQ_TEST_BROKER_CONF")
	                                                       : broker_conf) != 0)
		return 1;
	policy_fast = policy_variant(2, 5, 1.0, 2048, 6);
	policy_exact = policy_variant(2, 5, -1, 2048, 6);
	policy_coarse = policy_variant(2, 5, 1.0, 2048, 5);
	return policy_fast && policy_exact && policy_coarse ? 0 : 1;
}

static int suite_cleanup(void)
{
	for (size_t i = 0; i < N_DEVICES; i++) {
		cmq_h_close(devices[i]);
		devices[i] = NULL;
	}
	cmq_env_stop(&env);
	free(policy_fast);
	free(policy_exact);
	free(policy_coarse);
	return 0;
}

/* ---- 1. the pipeline end to end ---- */

static const char air_doc[] =
    "{\"id\":\"urn:ngsi-ld:AirQualityObserved:civitas-air-001:0001\","
    "\"type\":\"AirQualityObserved\",\"refDevice\":\"urn:ngsi-ld:Device:civitas-air-001\","
    "\"mac\":\"02:5e:a1:0c:77:3b\",\"dateObserved\":\"2026-11-28T10:17:43.250Z\","
    "\"location\":{\"type\":\"Point\",\"coordinates\":[13.4049541,52.5200081]},"
    "\"address\":{\"streetAddress\":\"Unter den Linden 77\",\"postalCode\":\"10117\"},"
    "\"no2\":41.5,\"pm10\":19,\"pm25\":11.2,\"o3\":58,\"airQualityIndex\":2,"
    "\"temperature\":7.5,\"relativeHumidity\":0.81,"
    "\"contact\":{\"email\":\"anna.1@mailbox.example\",\"phone\":\"+44 7700 900123\"}}";

/* The scrubbed air_doc at geohash precision p. */
static struct json_object *air_expected(int precision)
{
	struct json_object *o = json_object_new_object();
	char gh[16], t[32];

	geohash(52.5200081, 13.4049541, precision, gh);
	iso(from_iso("2026-11-28T10:17:43") / 300 * 300, t, sizeof(t));
	json_object_object_add(o, "no2", json_object_new_double(41.5));
	json_object_object_add(o, "pm10", json_object_new_int(19));
	json_object_object_add(o, "pm25", json_object_new_double(11.2));
	json_object_object_add(o, "o3", json_object_new_int(58));
	json_object_object_add(o, "airQualityIndex", json_object_new_int(2));
	json_object_object_add(o, "temperature", json_object_new_double(7.5));
	json_object_object_add(o, "relativeHumidity", json_object_new_double(0.81));
	json_object_object_add(o, "dateObserved", json_object_new_string(t));
	json_object_object_add(o, "location", json_object_new_string(gh));
	return o;
}

/* The message is air_doc scrubbed at precision p, stamped by policy stamp. */
static void check_air_scrubbed(const struct cmq_h_msg *m, int precision, const char *stamp)
{
	struct json_object *got, *want = air_expected(precision);

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	got = parse(m);
	CU_ASSERT_PTR_NOT_NULL(got);
	if (got == NULL || !json_object_equal(got, want))
		fprintf(stderr, "scrubbed air:\n  got  %s\n  want %s\n", m->payload,
		        json_object_to_json_string(want));
	CU_ASSERT_TRUE(got != NULL && json_object_equal(got, want));
	CU_ASSERT_PTR_NOT_NULL(cmq_h_msg_prop(m, "civicmq-policy"));
	if (stamp != NULL && cmq_h_msg_prop(m, "civicmq-policy") != NULL)
		CU_ASSERT_STRING_EQUAL(cmq_h_msg_prop(m, "civicmq-policy"), stamp);
	CU_ASSERT_PTR_NOT_NULL(cmq_h_msg_prop(m, "civicmq-profile"));
	if (cmq_h_msg_prop(m, "civicmq-profile") != NULL)
		CU_ASSERT_STRING_EQUAL(cmq_h_msg_prop(m, "civicmq-profile"), "air-quality");
	/* Nothing pseudonymised, and the raw provenance stamp does not travel on. */
	CU_ASSERT_PTR_NULL(cmq_h_msg_prop(m, "civicmq-key-epoch"));
	CU_ASSERT_PTR_NULL(cmq_h_msg_prop(m, "civicmq-provenance"));
	json_object_put(got);
	json_object_put(want);
}

static void TEST_pipeline_end_to_end(void)
{
	/* state_sync: the outbox fdatasyncs each record (the slow, power-safe path). */
	struct cmq_gwe_opts o = {.share_group = "t1", .extra = {"state_sync", "1"}};
	struct cmq_gwe g;
	struct cmq_gwe_sink dash;
	struct cmq_gwe_metrics m;
	int granted = -1;

	CU_ASSERT_EQUAL_FATAL(start_gw(&g, &o), 0);
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_sink_open(&env, "dashboard", NULL, "city/#", &dash), 0);
	/* A dashboard cannot reach raw data by asking for it. */
	CU_ASSERT_EQUAL(cmq_h_subscribe(dash.c, "raw/#", 1, &granted), CMQ_H_REFUSED);
	CU_ASSERT_EQUAL(cmq_h_subscribe(dash.c, "$share/x/raw/#", 1, &granted), CMQ_H_REFUSED);

	CU_ASSERT_EQUAL(pubs("civitas-air-001", "raw/north/air/civitas-air-001", air_doc), 0);
	CU_ASSERT_TRUE(wait_data(&dash, 0, "air", 1, 5000));
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_metrics(&g, &m), 0);
	{
		const struct cmq_h_msg *msg = find_data(&dash, 0, "air");

		CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
		CU_ASSERT_STRING_EQUAL(msg->topic, "city/north/air");
		CU_ASSERT_EQUAL(msg->qos, 1);
		CU_ASSERT_FALSE(msg->retain);
		check_air_scrubbed(msg, 6, m.policy);
	}
	/* One data message, nothing else but metrics and the broker's retained register;
	 * never a raw topic. */
	cmq_gwe_sink_pump(&dash, 500);
	CU_ASSERT_EQUAL(count_data(&dash, 0, NULL), 1);
	for (size_t i = 0; i < dash.n; i++) {
		CU_ASSERT_EQUAL(strncmp(dash.msgs[i].topic, "city/", 5), 0);
		if (!is_metrics(&dash.msgs[i]) && !is_register(&dash.msgs[i]))
			CU_ASSERT_STRING_EQUAL(dash.msgs[i].topic, "city/north/air");
	}
	CU_ASSERT_EQUAL(m.received, 1);
	CU_ASSERT_EQUAL(m.forwarded, 1);
	CU_ASSERT_EQUAL(m.dropped, 0);
	CU_ASSERT_EQUAL(strncmp(m.policy, "2026-11-28.1+", 13), 0);
	CU_ASSERT_STRING_EQUAL(m.gateway, "gateway-1");
	/* SIGTERM: a clean exit that logs the final counters. */
	{
		size_t mark = cmq_gwe_log_mark(&g);

		CU_ASSERT_EQUAL(cmq_gwe_stop(&g), 0);
		CU_ASSERT_TRUE(cmq_gwe_log_contains(&g, mark, "\"received\":1,\"forwarded\":1,"));
	}
	cmq_gwe_sink_close(&dash);
	finish_gw(&g);
}

/* ---- 2. thousands of payloads with planted personal data: nothing leaks ---- */

#define LEAK_MESSAGES 3000
#define N_RESIDENTS   24 /* consenting; as many who do not */

static const char *const districts[] = {"north", "south", "centre", "harbour"};

struct leak_state {
	struct cmq_canary_set *set;
	struct cmq_canary_rng rng;
	char consenting[N_RESIDENTS][48];
	char refusing[N_RESIDENTS][48]; /* half listed without energy, half not listed */
	long long sent, refused, expect_forward, expect_absorb;
	long long expect_drop[CMQ_DROP__COUNT];
	long long forward_kind[8]; /* by output index */
};

/* Appends printf output to a buffer, remembering overflow. */
struct sbuf {
	char *p;
	size_t n, len;
	bool overflow;
};

static void sb(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int w;

	if (b->overflow)
		return;
	va_start(ap, fmt);
	w = vsnprintf(b->p + b->len, b->n - b->len, fmt, ap);
	va_end(ap);
	if (w < 0 || (size_t)w >= b->n - b->len)
		b->overflow = true;
	else
		b->len += (size_t)w;
}

/* A GeoJSON point or a {lat, lon} object with canary coordinates. */
static void sb_location(struct sbuf *b, struct leak_state *st)
{
	char lat[40], lon[40];

	cmq_canary_coord(st->set, &st->rng, 52.52, 0.05, lat, sizeof(lat), NULL);
	cmq_canary_coord(st->set, &st->rng, 13.40, 0.05, lon, sizeof(lon), NULL);
	if (cmq_canary_below(&st->rng, 4) == 0)
		sb(b, "\"location\":{\"lat\":%s,\"lon\":%s}", lat, lon);
	else
		sb(b, "\"location\":{\"type\":\"Point\",\"coordinates\":[%s,%s]}", lon, lat);
}

static void sb_time(struct sbuf *b, struct leak_state *st)
{
	sb(b, "\"dateObserved\":\"2026-11-28T%02u:%02u:%02u.%03uZ\"",
	   cmq_canary_below(&st->rng, 24), cmq_canary_below(&st->rng, 60),
	   cmq_canary_below(&st->rng, 60), cmq_canary_below(&st->rng, 1000));
}

/* Contact details nobody should see: dropped by every profile (nobody keeps them). */
static void sb_contact(struct sbuf *b, struct leak_state *st, const char *key)
{
	char email[64], phone[64], mac[64];

	sb(b, "\"%s\":{\"email\":\"%s\",\"phone\":\"%s\",\"mac\":\"%s\"}", key,
	   cmq_canary_email(st->set, &st->rng, email, sizeof(email)),
	   cmq_canary_phone(st->set, &st->rng, phone, sizeof(phone)),
	   cmq_canary_mac(st->set, &st->rng, mac, sizeof(mac)));
}

/* What the gateway must do with a message. */
enum expect { E_FORWARD, E_ABSORB, E_DROP };

enum leak_kind {
	K_AIR,
	K_NOISE,
	K_FOOTFALL,
	K_ANPR,
	K_METER_YES,
	K_METER_NO,
	K_CAMERA,
	K_BAD, /* malformed, see bad_kinds */
};

static const enum leak_kind schedule[10] = {K_AIR,       K_NOISE,    K_FOOTFALL, K_ANPR,
                                            K_METER_YES, K_METER_NO, K_CAMERA,   K_AIR,
                                            K_FOOTFALL,  K_BAD};

static const enum cmq_drop bad_kinds[] = {
    CMQ_DROP_NOT_JSON,   CMQ_DROP_TOO_DEEP,        CMQ_DROP_BAD_UTF8,
    CMQ_DROP_NOT_OBJECT, CMQ_DROP_WRONG_TYPE,      CMQ_DROP_TOO_LARGE,
    CMQ_DROP_NO_SUBJECT, CMQ_DROP_IDENTIFIER_LEAK, CMQ_DROP_BAD_VALUE,
};
#define N_BAD_KINDS (sizeof(bad_kinds) / sizeof(bad_kinds[0]))

/* UK plates that are also pollutant names in part ("NOX", "PM25"). */
static const char *const tricky_plates[] = {"AB12 NOX", "PM25 RTZ"};

/*
 * Message i: its device, topic and payload, and what the gateway must do with it
 * (outcome FORWARD / ABSORB / DROP with *reason). Returns the payload length.
 */
static int leak_message(struct leak_state *st, int i, const char **device, char *topic,
                        size_t tsize, char *payload, size_t psize, enum expect *outcome,
                        enum cmq_drop *reason)
{
	struct sbuf b = {payload, psize, 0, false};
	const char *d = districts[cmq_canary_below(&st->rng, 4)];
	enum leak_kind k = schedule[i % 10];
	char mac[64], mac2[64], email[64], plate[64], plate2[64], id[64];

	*outcome = E_FORWARD;
	*reason = CMQ_DROP_NONE;
	switch (k) {
	case K_AIR:
		*device = (i / 10) % 2 ? "nimbus-air-001" : "civitas-air-001";
		snprintf(topic, tsize, "raw/%s/air/%s", d, *device);
		sb(&b, "{\"id\":\"urn:ngsi-ld:AirQualityObserved:%s:%d\",", *device, i);
		sb(&b, "\"type\":\"AirQualityObserved\",\"refDevice\":\"%s\",", *device);
		sb(&b, "\"mac\":\"%s\",", cmq_canary_mac(st->set, &st->rng, mac, sizeof(mac)));
		sb_time(&b, st);
		sb(&b, ",");
		sb_location(&b, st);
		sb(&b, ",\"no2\":%u,\"pm10\":%u.%u,\"pm25\":%u,\"temperature\":%u.5,",
		   cmq_canary_below(&st->rng, 200), cmq_canary_below(&st->rng, 90),
		   cmq_canary_below(&st->rng, 10), cmq_canary_below(&st->rng, 60),
		   cmq_canary_below(&st->rng, 30));
		sb_contact(&b, st, "maintainer");
		sb(&b, "}");
		break;
	case K_NOISE:
		*device = "civitas-noise-001";
		snprintf(topic, tsize, "raw/%s/noise/%s", d, *device);
		sb(&b,
		   "{\"type\":\"NoiseLevelObserved\",\"refDevice\":\"%s\",\"LAeq\":%u.%u,"
		   "\"LAmax\":%u,",
		   *device, 40 + cmq_canary_below(&st->rng, 40), cmq_canary_below(&st->rng, 10),
		   60 + cmq_canary_below(&st->rng, 40));
		sb_time(&b, st);
		sb(&b, ",");
		sb_location(&b, st);
		sb(&b, ",\"complaintBy\":\"%s\"}",
		   cmq_canary_email(st->set, &st->rng, email, sizeof(email)));
		break;
	case K_FOOTFALL:
		*device = "civitas-wifi-001";
		snprintf(topic, tsize, "raw/%s/footfall/%s", d, *device);
		sb(&b, "{\"type\":\"PeopleFlowObserved\",\"refDevice\":\"%s\",\"peopleCount\":%u,",
		   *device, cmq_canary_below(&st->rng, 500));
		sb(&b, "\"macs\":[\"%s\",", cmq_canary_mac(st->set, &st->rng, mac, sizeof(mac)));
		sb(&b, "\"%s\"],", cmq_canary_mac(st->set, &st->rng, mac, sizeof(mac)));
		sb(&b, "\"probes\":[{\"mac\":\"%s\",\"rssi\":-%u}],",
		   cmq_canary_mac(st->set, &st->rng, mac2, sizeof(mac2)),
		   30 + cmq_canary_below(&st->rng, 60));
		/* Every spelling of a MAC the redaction promises to catch. */
		sb(&b, "\"notes\":\"strongest probe %s, then %s\",",
		   cmq_canary_mac_style(st->set, &st->rng, (enum cmq_mac_style)((i / 10) % 4), mac,
		                        sizeof(mac)),
		   cmq_canary_mac_style(st->set, &st->rng, (enum cmq_mac_style)((i / 10 + 1) % 4),
		                        mac2, sizeof(mac2)));
		sb_time(&b, st);
		sb(&b, ",");
		sb_location(&b, st);
		sb(&b, "}");
		break;
	case K_ANPR:
		*device = "civitas-anpr-001";
		snprintf(topic, tsize, "raw/%s/anpr/%s", d, *device);
		sb(&b, "{\"type\":\"VehicleObserved\",\"refDevice\":\"%s\",", *device);
		sb(&b,
		   "\"observedVehicle\":{\"licensePlate\":{\"identifier\":\"%s\","
		   "\"country\":\"GB\"},\"direction\":\"%s\",\"make\":\"Volvo\","
		   "\"owner\":\"%s\"},",
		   cmq_canary_plate(st->set, &st->rng, plate, sizeof(plate)),
		   cmq_canary_below(&st->rng, 2) ? "inbound" : "outbound",
		   cmq_canary_email(st->set, &st->rng, email, sizeof(email)));
		/* Now and then a real plate whose letters spell a pollutant. */
		if ((i / 10) % 10 == 3)
			snprintf(plate2, sizeof(plate2), "%s", tricky_plates[(i / 100) % 2]);
		else
			cmq_canary_plate(st->set, &st->rng, plate2, sizeof(plate2));
		sb(&b, "\"vehiclePlateNotRead\":false,\"notes\":\"%s followed %s into the zone\",",
		   plate2, plate);
		sb(&b, "\"image\":\"data:image/jpeg;base64,%s\",",
		   cmq_canary_id(st->set, &st->rng, "img", id, sizeof(id)));
		sb_time(&b, st);
		sb(&b, ",");
		sb_location(&b, st);
		sb(&b, "}");
		break;
	case K_METER_YES:
	case K_METER_NO: {
		const char *res = k == K_METER_YES
		                      ? st->consenting[cmq_canary_below(&st->rng, N_RESIDENTS)]
		                      : st->refusing[cmq_canary_below(&st->rng, N_RESIDENTS)];

		*device = "civitas-meter-001";
		snprintf(topic, tsize, "raw/%s/meter/%s", d, *device);
		sb(&b,
		   "{\"type\":\"EnergyMeter\",\"refDevice\":\"%s\",\"meterId\":\"%s\","
		   "\"residentId\":\"%s\",\"activePower\":%u.%u,",
		   *device, cmq_canary_id(st->set, &st->rng, "mtr", id, sizeof(id)), res,
		   cmq_canary_below(&st->rng, 9000), cmq_canary_below(&st->rng, 10));
		sb_time(&b, st);
		sb(&b, ",\"address\":\"%u Rose Lane\",", 1 + cmq_canary_below(&st->rng, 200));
		sb_contact(&b, st, "account");
		sb(&b, "}");
		if (k == K_METER_NO) {
			*outcome = E_DROP;
			*reason = CMQ_DROP_NO_CONSENT;
		}
		break;
	}
	case K_CAMERA:
		*device = "civitas-cam-001";
		snprintf(topic, tsize, "raw/%s/camera/%s", d, *device);
		sb(&b,
		   "{\"type\":\"CrowdFlowObserved\",\"refDevice\":\"%s\",\"zone\":\"zone-%c\","
		   "\"peopleCount\":%u,",
		   *device, 'a' + (char)cmq_canary_below(&st->rng, 4),
		   cmq_canary_below(&st->rng, 6));
		sb(&b, "\"faces\":[{\"track\":\"%s\",\"phone\":\"%s\"}],",
		   cmq_canary_mac(st->set, &st->rng, mac, sizeof(mac)),
		   cmq_canary_phone(st->set, &st->rng, id, sizeof(id)));
		sb_time(&b, st);
		sb(&b, ",");
		sb_location(&b, st);
		sb(&b, "}");
		*outcome = E_ABSORB;
		break;
	case K_BAD: {
		enum cmq_drop r = bad_kinds[(i / 10) % N_BAD_KINDS];

		*outcome = E_DROP;
		*reason = r;
		*device = "civitas-air-001";
		snprintf(topic, tsize, "raw/%s/air/%s", d, *device);
		cmq_canary_email(st->set, &st->rng, email, sizeof(email));
		cmq_canary_mac(st->set, &st->rng, mac, sizeof(mac));
		switch (r) {
		case CMQ_DROP_NOT_JSON:
			sb(&b, "{\"no2\": 12, \"contact\": \"%s\", \"mac\": \"%s\"", email, mac);
			break;
		case CMQ_DROP_TOO_DEEP:
			for (int j = 0; j < 40; j++)
				sb(&b, "{\"n\":");
			sb(&b, "\"%s %s\"", email, mac);
			for (int j = 0; j < 40; j++)
				sb(&b, "}");
			break;
		case CMQ_DROP_BAD_UTF8:
			sb(&b, "{\"no2\":12,\"contact\":\"%s \xff\xfe %s\"}", email, mac);
			break;
		case CMQ_DROP_NOT_OBJECT:
			sb(&b, "[\"%s\",\"%s\",12]", email, mac);
			break;
		case CMQ_DROP_WRONG_TYPE:
			/* round needs a number. */
			*device = "civitas-wifi-001";
			snprintf(topic, tsize, "raw/%s/footfall/%s", d, *device);
			sb(&b, "{\"peopleCount\":\"%s\",\"mac\":\"%s\"}", email, mac);
			break;
		case CMQ_DROP_TOO_LARGE:
			/* Over the gateway's 2048-byte noise limit, within the broker's. */
			*device = "civitas-noise-001";
			snprintf(topic, tsize, "raw/%s/noise/%s", d, *device);
			sb(&b, "{\"LAeq\":50,\"contact\":\"%s\",\"mac\":\"%s\",\"pad\":\"", email,
			   mac);
			for (int j = 0; j < 2100; j++)
				sb(&b, "x");
			sb(&b, "\"}");
			break;
		case CMQ_DROP_NO_SUBJECT:
			*device = "civitas-meter-001";
			snprintf(topic, tsize, "raw/%s/meter/%s", d, *device);
			sb(&b, "{\"meterId\":\"%s\",\"activePower\":100,\"account\":\"%s\"}",
			   cmq_canary_id(st->set, &st->rng, "mtr", id, sizeof(id)), email);
			break;
		case CMQ_DROP_IDENTIFIER_LEAK:
			/* notes keeps free text (MACs redacted); the device id survives it. */
			*device = "civitas-wifi-001";
			snprintf(topic, tsize, "raw/%s/footfall/%s", d, *device);
			sb(&b, "{\"peopleCount\":10,\"notes\":\"%s rebooted, last probe %s\"}",
			   *device, mac);
			break;
		case CMQ_DROP_BAD_VALUE:
			/* A latitude beyond the pole cannot be generalised. */
			sb(&b,
			   "{\"no2\":12,\"location\":{\"type\":\"Point\",\"coordinates\":[13.4,"
			   "123.5]},\"contact\":\"%s\",\"mac\":\"%s\"}",
			   email, mac);
			break;
		default:
			break;
		}
		break;
	}
	}
	if (b.overflow) {
		fprintf(stderr, "leak test: payload %d too long\n", i);
		return -1;
	}
	return (int)b.len;
}

/* The first canary in a received message (topic, payload, properties), or NULL. */
static const char *leaked(const struct cmq_canary_set *set, const struct cmq_h_msg *m,
                          const char **kind)
{
	const char *c = cmq_canary_find(set, m->topic, strlen(m->topic), kind);

	if (c == NULL)
		c = cmq_canary_find(set, m->payload, (size_t)m->payloadlen, kind);
	for (int i = 0; c == NULL && i < m->nprops; i++) {
		c = cmq_canary_find(set, m->prop_name[i], strlen(m->prop_name[i]), kind);
		if (c == NULL)
			c = cmq_canary_find(set, m->prop_value[i], strlen(m->prop_value[i]), kind);
	}
	return c;
}

/* Shape of a scrubbed data message: allowed keys only, scrubbed forms, right stamps. */
static bool shape_ok(const struct cmq_h_msg *m, const char *stamp)
{
	const char *kind = city_kind(m);
	int oi = output_index(kind);
	struct json_object *o = parse(m), *v;
	char bad[128] = "";
	bool ok = oi >= 0 && keys_within(o, outputs[oi].keys, bad, sizeof(bad));
	const char *prof = cmq_h_msg_prop(m, "civicmq-profile");
	const char *pol = cmq_h_msg_prop(m, "civicmq-policy");

	if (oi < 0)
		snprintf(bad, sizeof(bad), "unexpected topic");
	if (ok && (prof == NULL || strcmp(prof, outputs[oi].profile) != 0)) {
		snprintf(bad, sizeof(bad), "civicmq-profile %s", prof ? prof : "(none)");
		ok = false;
	}
	if (ok && (pol == NULL || strcmp(pol, stamp) != 0)) {
		snprintf(bad, sizeof(bad), "civicmq-policy %s", pol ? pol : "(none)");
		ok = false;
	}
	if (ok && o != NULL && json_object_object_get_ex(o, "location", &v) &&
	    !is_geohash(json_object_get_string(v), 6)) {
		snprintf(bad, sizeof(bad), "location not a geohash-6");
		ok = false;
	}
	if (ok && strcmp(kind, "energy") == 0 &&
	    (!is_hex32(jstr(o, "meterId")) || cmq_h_msg_prop(m, "civicmq-key-epoch") == NULL)) {
		snprintf(bad, sizeof(bad), "meterId not pseudonymised");
		ok = false;
	}
	if (ok && strcmp(kind, "anpr") == 0) {
		struct json_object *ov, *lp, *idv;

		if (!json_object_object_get_ex(o, "observedVehicle", &ov) ||
		    !json_object_object_get_ex(ov, "licensePlate", &lp) ||
		    !json_object_object_get_ex(lp, "identifier", &idv) ||
		    !is_hex32(json_object_get_string(idv)) ||
		    cmq_h_msg_prop(m, "civicmq-key-epoch") == NULL) {
			snprintf(bad, sizeof(bad), "plate not pseudonymised");
			ok = false;
		}
	}
	if (!ok)
		fprintf(stderr, "leak test: %s: bad shape (%s): %s\n", m->topic, bad, m->payload);
	json_object_put(o);
	return ok;
}

static void TEST_no_canary_leaks(void)
{
	struct cmq_gwe_opts o = {.share_group = "t2", .pseudonym_epoch = 86400};
	struct leak_state *st = calloc(1, sizeof(*st));
	const char *ids[2 * N_RESIDENTS], *cats[2 * N_RESIDENTS];
	struct cmq_gwe_sink dash, lez;
	struct cmq_gwe_metrics m;
	struct cmq_gwe g;
	char *consent, topic[128];
	static char payload[PAYLOAD_MAX];
	size_t nids = 0, scanned = 0, leaks = 0, bad_shape = 0;
	long long data_seen, crowd_seen, t0 = cmq_gwe_now_ms();
	int code;

	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	st->set = cmq_canary_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(st->set);
	cmq_canary_seed(&st->rng, seed);
	for (size_t i = 0; i < N_DEVICES; i++)
		cmq_canary_add(st->set, device_names[i], "device id");
	for (size_t i = 0; i < sizeof(tricky_plates) / sizeof(tricky_plates[0]); i++)
		cmq_canary_add(st->set, tricky_plates[i], "plate");
	for (int i = 0; i < N_RESIDENTS; i++) {
		cmq_canary_id(st->set, &st->rng, "resc", st->consenting[i],
		              sizeof(st->consenting[i]));
		cmq_canary_id(st->set, &st->rng, "resn", st->refusing[i], sizeof(st->refusing[i]));
		ids[nids] = st->consenting[i];
		cats[nids++] = "energy";
		if (i % 2 == 0) {
			ids[nids] = st->refusing[i];
			cats[nids++] = i % 4 == 0 ? "" : "mobility";
		}
	}
	consent = consent_json(ids, cats, nids);
	o.consent_text = consent;
	CU_ASSERT_EQUAL_FATAL(start_gw(&g, &o), 0);
	free(consent);
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_sink_open(&env, "dashboard", NULL, "city/#", &dash), 0);
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_sink_open(&env, "lez-office", NULL, "city/+/anpr", &lez), 0);

	for (int i = 0; i < LEAK_MESSAGES; i++) {
		enum expect outcome;
		enum cmq_drop reason;
		const char *device = NULL;
		int len = leak_message(st, i, &device, topic, sizeof(topic), payload,
		                       sizeof(payload), &outcome, &reason);
		int rc;

		CU_ASSERT_FATAL(len > 0);
		rc = pub(device, topic, payload, len, &code);
		if (rc != 0) {
			fprintf(stderr, "leak test: %s refused (rc %d, code 0x%x)\n", topic, rc,
			        (unsigned)code);
			st->refused++;
			continue;
		}
		st->sent++;
		if (outcome == E_FORWARD) {
			st->expect_forward++;
		} else if (outcome == E_ABSORB) {
			st->expect_absorb++;
		} else {
			st->expect_drop[reason]++;
		}
		/* A restricted vendor's personal data never gets past the broker. */
		if (i % 100 == 0) {
			CU_ASSERT_EQUAL(pubs("nimbus-wifi-001",
			                     "raw/north/footfall/nimbus-wifi-001",
			                     "{\"peopleCount\":5,\"mac\":\"02:00:00:00:00:01\"}"),
			                CMQ_H_REFUSED);
		}
		cmq_gwe_sink_pump(&dash, 0);
		cmq_gwe_sink_pump(&lez, 0);
	}
	CU_ASSERT_EQUAL(st->refused, 0);
	fprintf(stderr, "leak test: %lld messages published in %lld ms, %zu canaries planted\n",
	        st->sent, cmq_gwe_now_ms() - t0, cmq_canary_count(st->set, NULL));

	/* Every message settles at the gateway. */
	if (cmq_gwe_wait_received(&g, st->sent, 30000, &m) != 0)
		cmq_gwe_metrics_print("leak test: gateway behind", &m);
	CU_ASSERT_EQUAL(m.received, st->sent);
	CU_ASSERT_EQUAL(m.forwarded + m.absorbed + m.dropped, m.received);
	CU_ASSERT_EQUAL(m.forwarded, st->expect_forward);
	CU_ASSERT_EQUAL(m.absorbed, st->expect_absorb);
	CU_ASSERT_EQUAL(m.retried, 0);
	CU_ASSERT_EQUAL(m.unknown_reasons, 0);
	for (int r = 1; r < CMQ_DROP__COUNT; r++) {
		if (m.by_reason[r] != st->expect_drop[r])
			fprintf(stderr, "leak test: dropped %s: %lld, expected %lld\n",
			        cmq_drop_name((enum cmq_drop)r), m.by_reason[r],
			        st->expect_drop[r]);
		CU_ASSERT_EQUAL(m.by_reason[r], st->expect_drop[r]);
	}

	/* What was forwarded arrives: anpr only for the enforcement office. */
	{
		long long deadline = cmq_gwe_now_ms() + 15000;

		for (;;) {
			data_seen =
			    (long long)(count_data(&dash, 0, NULL) + count_data(&lez, 0, NULL));
			if (data_seen >= m.forwarded || cmq_gwe_now_ms() > deadline)
				break;
			cmq_gwe_sink_pump(&dash, 50);
			cmq_gwe_sink_pump(&lez, 50);
		}
	}
	CU_ASSERT_EQUAL(count_data(&dash, 0, "anpr"), 0);
	CU_ASSERT_EQUAL(count_data(&lez, 0, NULL), count_data(&lez, 0, "anpr"));

	/* Aggregates: all windows close 2 s after the last camera message. */
	{
		long long deadline = cmq_gwe_now_ms() + 10000;

		for (;;) {
			cmq_gwe_sink_pump(&dash, 500);
			if (cmq_gwe_metrics(&g, &m) == 0 && m.agg_open_groups == 0 &&
			    (long long)count_kind(&dash, 0, "crowd") >= m.agg_published)
				break;
			if (cmq_gwe_now_ms() > deadline)
				break;
		}
		cmq_gwe_sink_pump(&dash, 300);
		cmq_gwe_sink_pump(&lez, 100);
	}
	data_seen = (long long)(count_data(&dash, 0, NULL) + count_data(&lez, 0, NULL));
	crowd_seen = (long long)count_kind(&dash, 0, "crowd");
	cmq_gwe_metrics_print("leak test", &m);
	fprintf(stderr,
	        "leak test: dashboard %zu messages, enforcement %zu, data %lld, "
	        "aggregates %lld\n",
	        dash.n, lez.n, data_seen, crowd_seen);
	CU_ASSERT_EQUAL(data_seen, m.forwarded);
	CU_ASSERT_EQUAL(m.agg_open_groups, 0);
	CU_ASSERT_EQUAL(crowd_seen, m.agg_published);
	CU_ASSERT_TRUE(m.agg_published >= 1);
	CU_ASSERT_EQUAL(cmq_h_dropped(dash.c), 0);
	CU_ASSERT_EQUAL(cmq_h_dropped(lez.c), 0);

	/* Not one canary in any topic, property or payload byte - metrics included. */
	for (int s = 0; s < 2; s++) {
		struct cmq_gwe_sink *k = s == 0 ? &dash : &lez;

		for (size_t i = 0; i < k->n; i++) {
			const struct cmq_h_msg *msg = &k->msgs[i];
			const char *kind = NULL, *c = leaked(st->set, msg, &kind);

			scanned++;
			if (strncmp(msg->topic, "city/", 5) != 0) {
				fprintf(stderr, "leak test: message on %s\n", msg->topic);
				leaks++;
			}
			if (c != NULL) {
				if (leaks < 10)
					fprintf(stderr, "leak test: %s \"%s\" leaked on %s: %s\n",
					        kind, c, msg->topic, msg->payload);
				leaks++;
			}
			if (is_data(msg) && !shape_ok(msg, m.policy))
				bad_shape++;
		}
	}
	fprintf(stderr,
	        "leak test: %zu messages scanned for %zu canaries: %zu leaks, %zu bad "
	        "shapes (%lld ms in all)\n",
	        scanned, cmq_canary_count(st->set, NULL), leaks, bad_shape, cmq_gwe_now_ms() - t0);
	CU_ASSERT_EQUAL(leaks, 0);
	CU_ASSERT_EQUAL(bad_shape, 0);
	/* The metrics topic carried the same document the log did. */
	{
		const struct cmq_h_msg *mm =
		    cmq_gwe_sink_find(&dash, "city/gateway/metrics/gateway-1", 0);
		struct cmq_gwe_metrics pm;

		CU_ASSERT_PTR_NOT_NULL(mm);
		if (mm != NULL) {
			CU_ASSERT_EQUAL(
			    cmq_gwe_metrics_parse(mm->payload, (size_t)mm->payloadlen, &pm), 0);
			CU_ASSERT_STRING_EQUAL(pm.gateway, "gateway-1");
		}
	}
	cmq_gwe_sink_close(&dash);
	cmq_gwe_sink_close(&lez);
	finish_gw(&g);
	cmq_canary_free(st->set);
	free(st);
}

/* ---- 3. consent: not listed, granted, withdrawn ---- */

static int meter_doc(char *buf, size_t n, const char *resident, const char *meter, int power)
{
	return snprintf(buf, n,
	                "{\"type\":\"EnergyMeter\",\"meterId\":\"%s\",\"residentId\":\"%s\","
	                "\"activePower\":%d,\"dateObserved\":\"2026-11-28T10:47:12Z\"}",
	                meter, resident, power);
}

static void TEST_consent_grant_and_withdraw(void)
{
	struct cmq_gwe_opts o = {.share_group = "t3", .consent_text = NULL};
	const char *res = "resident-0042", *meter = "MTR-7731-QX";
	struct cmq_gwe_sink dash;
	struct cmq_gwe_metrics m;
	struct cmq_gwe g;
	char doc[512], *text;
	size_t mark;

	text = consent_one("resident-0001", "energy");
	o.consent_text = text;
	CU_ASSERT_EQUAL_FATAL(start_gw(&g, &o), 0);
	free(text);
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_sink_open(&env, "dashboard", NULL, "city/#", &dash), 0);

	/* Not listed: dropped, and said so. */
	mark = cmq_gwe_log_mark(&g);
	meter_doc(doc, sizeof(doc), res, meter, 1234);
	CU_ASSERT_EQUAL(pubs("civitas-meter-001", "raw/south/meter/civitas-meter-001", doc), 0);
	CU_ASSERT_TRUE(cmq_gwe_log_wait(&g, mark, "drop: no_consent topic=", 5000));
	CU_ASSERT_EQUAL(cmq_gwe_wait_received(&g, 1, 5000, &m), 0);
	CU_ASSERT_EQUAL(m.by_reason[CMQ_DROP_NO_CONSENT], 1);

	/* Granted: the next message is forwarded, without the resident, meter pseudonymised. */
	text = consent_one(res, "energy");
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_write_consent(&g, text), 0);
	free(text);
	mark = cmq_gwe_log_mark(&g);
	meter_doc(doc, sizeof(doc), res, meter, 1234);
	CU_ASSERT_EQUAL(pubs("civitas-meter-001", "raw/south/meter/civitas-meter-001", doc), 0);
	CU_ASSERT_TRUE(wait_data(&dash, 0, "energy", 1, 5000));
	CU_ASSERT_TRUE(cmq_gwe_log_contains(&g, mark, "consent: "));
	{
		const struct cmq_h_msg *msg = find_data(&dash, 0, "energy");
		struct json_object *out = parse(msg);
		struct json_object *pw = NULL;

		CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
		CU_ASSERT_STRING_EQUAL(msg->topic, "city/south/energy");
		CU_ASSERT_PTR_NULL(strstr(msg->payload, res));
		CU_ASSERT_PTR_NULL(strstr(msg->payload, meter));
		CU_ASSERT_PTR_NULL(strstr(msg->payload, "civitas-meter-001"));
		CU_ASSERT_PTR_NULL(jstr(out, "residentId"));
		CU_ASSERT_TRUE(is_hex32(jstr(out, "meterId")));
		/* round to 100 and an hourly time. */
		CU_ASSERT_TRUE(json_object_object_get_ex(out, "activePower", &pw));
		CU_ASSERT_TRUE(pw != NULL && json_object_get_double(pw) == 1200.0);
		CU_ASSERT_PTR_NOT_NULL(jstr(out, "dateObserved"));
		if (jstr(out, "dateObserved") != NULL)
			CU_ASSERT_EQUAL(from_iso(jstr(out, "dateObserved")),
			                from_iso("2026-11-28T10:00:00Z"));
		CU_ASSERT_PTR_NOT_NULL(cmq_h_msg_prop(msg, "civicmq-key-epoch"));
		if (cmq_h_msg_prop(msg, "civicmq-profile") != NULL)
			CU_ASSERT_STRING_EQUAL(cmq_h_msg_prop(msg, "civicmq-profile"),
			                       "smart-meter");
		json_object_put(out);
	}

	/* Withdrawn (still listed, no category): the very next message is dropped. */
	text = consent_one(res, "");
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_write_consent(&g, text), 0);
	free(text);
	meter_doc(doc, sizeof(doc), res, meter, 900);
	CU_ASSERT_EQUAL(pubs("civitas-meter-001", "raw/south/meter/civitas-meter-001", doc), 0);
	CU_ASSERT_EQUAL(cmq_gwe_wait_received(&g, 3, 5000, &m), 0);
	CU_ASSERT_EQUAL(m.forwarded, 1);
	CU_ASSERT_EQUAL(m.by_reason[CMQ_DROP_NO_CONSENT], 2);
	cmq_gwe_sink_pump(&dash, 300);
	CU_ASSERT_EQUAL(count_data(&dash, 0, "energy"), 1);
	cmq_gwe_sink_close(&dash);
	finish_gw(&g);
}

/* ---- 4. pseudonyms rotate with the epoch ---- */

static int anpr_doc(char *buf, size_t n, const char *plate)
{
	return snprintf(
	    buf, n,
	    "{\"type\":\"VehicleObserved\",\"observedVehicle\":{\"licensePlate\":"
	    "{\"identifier\":\"%s\"},\"direction\":\"inbound\"},"
	    "\"vehiclePlateNotRead\":false,\"dateObserved\":\"2026-11-28T10:47:12Z\","
	    "\"location\":{\"type\":\"Point\",\"coordinates\":[13.4049541,52.5200081]}}",
	    plate);
}

/* The pseudonym in an anpr message into out ("" if none) and its epoch property. */
static const char *plate_pseudonym(const struct cmq_h_msg *m, char *out, size_t n)
{
	struct json_object *o = parse(m), *ov, *lp, *id;

	out[0] = '\0';
	if (json_object_object_get_ex(o, "observedVehicle", &ov) &&
	    json_object_object_get_ex(ov, "licensePlate", &lp) &&
	    json_object_object_get_ex(lp, "identifier", &id))
		snprintf(out, n, "%s", json_object_get_string(id));
	json_object_put(o);
	return m != NULL ? cmq_h_msg_prop(m, "civicmq-key-epoch") : NULL;
}

static void TEST_pseudonym_epoch_rotation(void)
{
	struct cmq_gwe_opts o = {.share_group = "t4", .pseudonym_epoch = 2};
	const char *plate = "KX17 WZP", *other = "LM68 TRV";
	struct cmq_gwe_sink lez;
	struct cmq_gwe g;
	char doc[512], doc2[512];
	bool same_checked = false, rotated_checked = false;

	CU_ASSERT_EQUAL_FATAL(start_gw(&g, &o), 0);
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_sink_open(&env, "lez-office", NULL, "city/+/anpr", &lez), 0);
	anpr_doc(doc, sizeof(doc), plate);
	anpr_doc(doc2, sizeof(doc2), other);
	/* Up to three tries in case a slow machine straddles an epoch boundary. */
	for (int attempt = 0; attempt < 3 && !(same_checked && rotated_checked); attempt++) {
		char p1[64], p2[64], p3[64], p4[64], e1[48], e2[48], e3[48], e4[48];
		size_t from = lez.n;
		const char *ep;
		bool got;

		cmq_gwe_align(2, 0); /* an epoch has just begun */
		CU_ASSERT_EQUAL(pubs("civitas-anpr-001", "raw/north/anpr/civitas-anpr-001", doc),
		                0);
		CU_ASSERT_EQUAL(pubs("civitas-anpr-001", "raw/north/anpr/civitas-anpr-001", doc),
		                0);
		CU_ASSERT_EQUAL(pubs("civitas-anpr-001", "raw/north/anpr/civitas-anpr-001", doc2),
		                0);
		got = wait_data(&lez, from, "anpr", 3, 5000);
		CU_ASSERT_TRUE(got);
		if (!got)
			break;
		ep = plate_pseudonym(&lez.msgs[from], p1, sizeof(p1));
		snprintf(e1, sizeof(e1), "%s", ep ? ep : "");
		ep = plate_pseudonym(&lez.msgs[from + 1], p2, sizeof(p2));
		snprintf(e2, sizeof(e2), "%s", ep ? ep : "");
		ep = plate_pseudonym(&lez.msgs[from + 2], p4, sizeof(p4));
		snprintf(e4, sizeof(e4), "%s", ep ? ep : "");
		CU_ASSERT_TRUE(is_hex32(p1) && is_hex32(p2) && is_hex32(p4));
		CU_ASSERT_NOT_EQUAL(strstr(e1, "/2"), NULL);
		if (strcmp(e1, e2) != 0 || strcmp(e1, e4) != 0)
			continue; /* straddled a boundary: try again */
		/* Same plate, same epoch: same pseudonym; another plate: another. */
		CU_ASSERT_STRING_EQUAL(p1, p2);
		CU_ASSERT_STRING_NOT_EQUAL(p1, p4);
		same_checked = true;

		/* Next epoch: a different pseudonym for the same plate. */
		cmq_gwe_align(2, 0);
		CU_ASSERT_EQUAL(pubs("civitas-anpr-001", "raw/north/anpr/civitas-anpr-001", doc),
		                0);
		got = wait_data(&lez, from, "anpr", 4, 5000);
		CU_ASSERT_TRUE(got);
		if (!got)
			break;
		ep = plate_pseudonym(&lez.msgs[from + 3], p3, sizeof(p3));
		snprintf(e3, sizeof(e3), "%s", ep ? ep : "");
		CU_ASSERT_TRUE(is_hex32(p3));
		CU_ASSERT_STRING_NOT_EQUAL(e1, e3);
		CU_ASSERT_STRING_NOT_EQUAL(p1, p3);
		rotated_checked = true;
	}
	CU_ASSERT_TRUE(same_checked);
	CU_ASSERT_TRUE(rotated_checked);
	/* The plate itself never appears, in any spelling. */
	for (size_t i = 0; i < lez.n; i++) {
		CU_ASSERT_PTR_NULL(strstr(lez.msgs[i].payload, "KX17"));
		CU_ASSERT_PTR_NULL(strstr(lez.msgs[i].payload, "WZP"));
		CU_ASSERT_PTR_NULL(strstr(lez.msgs[i].payload, "LM68"));
	}
	cmq_gwe_sink_close(&lez);
	finish_gw(&g);
}

/* ---- 5. aggregates only at or above k ---- */

static void camera(const char *zone, int count)
{
	char doc[256];

	snprintf(doc, sizeof(doc),
	         "{\"zone\":\"%s\",\"peopleCount\":%d,\"faces\":[\"02:aa:bb:cc:dd:ee\"]}", zone,
	         count);
	CU_ASSERT_EQUAL(pubs("civitas-cam-001", "raw/centre/camera/civitas-cam-001", doc), 0);
}

/* Wait for the window that started at start to be flushed (metrics show no open group). */
static void wait_window_closed(struct cmq_gwe *g, struct cmq_gwe_sink *dash, long long start,
                               struct cmq_gwe_metrics *m)
{
	long long deadline = cmq_gwe_now_ms() + 8000;

	while (time(NULL) < start + 2)
		cmq_gwe_sink_pump(dash, 100);
	for (;;) {
		cmq_gwe_sink_pump(dash, 200);
		if (cmq_gwe_metrics(g, m) == 0 && m->agg_open_groups == 0)
			break;
		if (cmq_gwe_now_ms() > deadline)
			break;
	}
	cmq_gwe_sink_pump(dash, 500);
}

static void TEST_aggregate_k_threshold(void)
{
	struct cmq_gwe_opts o = {.share_group = "t5", .policy_text = policy_exact};
	struct cmq_gwe_sink dash;
	struct cmq_gwe_metrics m;
	struct cmq_gwe g;
	long long start;
	size_t from;
	char want_start[32];

	CU_ASSERT_EQUAL_FATAL(start_gw(&g, &o), 0);
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_sink_open(&env, "dashboard", NULL, "city/#", &dash), 0);

	/*
	 * One 2 s window: zone A totals 6 and zone C exactly k = 5, so both are published;
	 * zone B totals 3 < k and is suppressed.
	 */
	start = cmq_gwe_align(2, 0);
	camera("zone-a", 2);
	camera("zone-b", 1);
	camera("zone-a", 2);
	camera("zone-c", 5);
	camera("zone-b", 2);
	camera("zone-a", 2);
	CU_ASSERT_EQUAL(time(NULL) < start + 2, 1); /* all in one window */
	wait_window_closed(&g, &dash, start, &m);
	if (count_kind(&dash, 0, "crowd") != 2 || m.agg_published != 2) {
		cmq_gwe_metrics_print("k threshold", &m);
		for (size_t i = 0; i < dash.n; i++) {
			if (strcmp(city_kind(&dash.msgs[i]), "crowd") == 0)
				fprintf(stderr, "  aggregate: %s\n", dash.msgs[i].payload);
		}
	}
	CU_ASSERT_EQUAL(count_kind(&dash, 0, "crowd"), 2);
	iso(start, want_start, sizeof(want_start));
	for (size_t i = 0; i < dash.n; i++) {
		const struct cmq_h_msg *msg = &dash.msgs[i];
		struct json_object *out, *v;
		const char *group;
		long long count = -1, k = -1, ws = -1;

		if (strcmp(city_kind(msg), "crowd") != 0)
			continue;
		out = parse(msg);
		group = jstr(out, "group");
		CU_ASSERT_STRING_EQUAL(msg->topic, "city/centre/crowd");
		CU_ASSERT_PTR_NOT_NULL(group);
		CU_ASSERT_TRUE(jint(out, "count", &count));
		if (group != NULL && strcmp(group, "zone-a") == 0) {
			CU_ASSERT_EQUAL(count, 6);
		} else if (group != NULL && strcmp(group, "zone-c") == 0) {
			CU_ASSERT_EQUAL(count, 5);
		} else {
			CU_FAIL("an aggregate for a group below k, or no group");
		}
		CU_ASSERT_TRUE(jint(out, "k", &k));
		CU_ASSERT_EQUAL(k, 5);
		CU_ASSERT_TRUE(jint(out, "window_seconds", &ws));
		CU_ASSERT_EQUAL(ws, 2);
		CU_ASSERT_PTR_NOT_NULL(jstr(out, "window_start"));
		if (jstr(out, "window_start") != NULL)
			CU_ASSERT_STRING_EQUAL(jstr(out, "window_start"), want_start);
		CU_ASSERT_FALSE(json_object_object_get_ex(out, "epsilon", &v));
		CU_ASSERT_PTR_NULL(strstr(msg->payload, "zone-b"));
		CU_ASSERT_PTR_NULL(strstr(msg->payload, "02:aa"));
		CU_ASSERT_PTR_NOT_NULL(cmq_h_msg_prop(msg, "civicmq-profile"));
		if (cmq_h_msg_prop(msg, "civicmq-profile") != NULL)
			CU_ASSERT_STRING_EQUAL(cmq_h_msg_prop(msg, "civicmq-profile"), "aggregate");
		json_object_put(out);
	}
	CU_ASSERT_EQUAL(m.absorbed, 6);
	CU_ASSERT_EQUAL(m.forwarded, 0);
	CU_ASSERT_EQUAL(m.agg_published, 2);
	CU_ASSERT_EQUAL(m.agg_suppressed, 1);

	/* With noise: published above k, marked with epsilon; below k still nothing. */
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_write_policy(&g, policy_fast), 0);
	CU_ASSERT_EQUAL(cmq_gwe_reload(&g, NULL, 0), 1);
	from = dash.n;
	start = cmq_gwe_align(2, 0);
	camera("zone-a", 3);
	camera("zone-a", 3);
	camera("zone-b", 4);
	wait_window_closed(&g, &dash, start, &m);
	CU_ASSERT_EQUAL(count_kind(&dash, from, "crowd"), 1);
	{
		const struct cmq_h_msg *msg = cmq_gwe_sink_find(&dash, "city/centre/crowd", from);
		struct json_object *out = parse(msg), *v;
		long long count = -1;

		CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
		if (jstr(out, "group") != NULL)
			CU_ASSERT_STRING_EQUAL(jstr(out, "group"), "zone-a");
		CU_ASSERT_TRUE(json_object_object_get_ex(out, "epsilon", &v));
		CU_ASSERT_TRUE(jint(out, "count", &count) && count >= 0);
		json_object_put(out);
	}
	CU_ASSERT_EQUAL(m.agg_published, 3);
	CU_ASSERT_EQUAL(m.agg_suppressed, 2);
	cmq_gwe_sink_close(&dash);
	finish_gw(&g);
}

/* ---- 6. kill -9 mid-stream: nothing lost ---- */

#define CRASH_MESSAGES 2000

/* Record the no2 sequence numbers of air messages in s from index from. */
static void tally_seq(const struct cmq_gwe_sink *s, size_t from, unsigned char *seen, int n,
                      long long *dups, long long *foreign)
{
	for (size_t i = from; i < s->n; i++) {
		struct json_object *o;
		long long v = -1;

		if (strcmp(city_kind(&s->msgs[i]), "air") != 0)
			continue;
		o = parse(&s->msgs[i]);
		if (jint(o, "no2", &v) && v >= 0 && v < n) {
			if (seen[v] < 255)
				seen[v]++;
			if (seen[v] > 1)
				(*dups)++;
		} else {
			(*foreign)++;
		}
		json_object_put(o);
	}
}

static int missing(const unsigned char *seen, int n)
{
	int k = 0;

	for (int i = 0; i < n; i++)
		k += seen[i] == 0;
	return k;
}

static void TEST_kill_and_restart_loses_nothing(void)
{
	struct cmq_gwe_opts o = {.share_group = "t6"};
	unsigned char *seen = calloc(CRASH_MESSAGES, 1);
	struct cmq_gwe_sink dash;
	struct cmq_gwe_metrics m;
	struct cmq_gwe g;
	long long dups = 0, foreign = 0, deadline;
	size_t tallied = 0;
	char doc[64];

	CU_ASSERT_PTR_NOT_NULL_FATAL(seen);
	CU_ASSERT_EQUAL_FATAL(start_gw(&g, &o), 0);
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_sink_open(&env, "dashboard", NULL, "city/north/air", &dash),
	                      0);
	for (int i = 0; i < CRASH_MESSAGES; i++) {
		int n = snprintf(doc, sizeof(doc), "{\"no2\":%d}", i);

		CU_ASSERT_EQUAL(
		    pub("civitas-air-001", "raw/north/air/civitas-air-001", doc, n, NULL), 0);
		cmq_gwe_sink_pump(&dash, 0);
		if (i == 700) {
			CU_ASSERT_EQUAL(cmq_gwe_kill(&g), 0);
			fprintf(stderr,
			        "crash test: gateway killed after %d messages published, %zu "
			        "delivered\n",
			        i + 1, count_data(&dash, 0, "air"));
		}
		if (i == 1300)
			CU_ASSERT_EQUAL_FATAL(cmq_gwe_restart(&g), 0);
	}
	deadline = cmq_gwe_now_ms() + 30000;
	for (;;) {
		tally_seq(&dash, tallied, seen, CRASH_MESSAGES, &dups, &foreign);
		tallied = dash.n;
		if (missing(seen, CRASH_MESSAGES) == 0 || cmq_gwe_now_ms() > deadline)
			break;
		cmq_gwe_sink_pump(&dash, 200);
	}
	cmq_gwe_sink_pump(&dash, 500);
	tally_seq(&dash, tallied, seen, CRASH_MESSAGES, &dups, &foreign);
	CU_ASSERT_EQUAL(cmq_gwe_metrics(&g, &m), 0);
	fprintf(stderr,
	        "crash test: %d messages, %d missing, %lld duplicates, after restart: "
	        "received %lld forwarded %lld\n",
	        CRASH_MESSAGES, missing(seen, CRASH_MESSAGES), dups, m.received, m.forwarded);
	if (missing(seen, CRASH_MESSAGES) != 0) {
		int shown = 0;

		for (int i = 0; i < CRASH_MESSAGES && shown < 20; i++) {
			if (seen[i] == 0) {
				fprintf(stderr, "crash test: sequence %d never arrived\n", i);
				shown++;
			}
		}
	}
	CU_ASSERT_EQUAL(missing(seen, CRASH_MESSAGES), 0);
	CU_ASSERT_EQUAL(foreign, 0);
	CU_ASSERT_EQUAL(cmq_h_dropped(dash.c), 0);
	cmq_gwe_sink_close(&dash);
	finish_gw(&g);
	free(seen);
}

/* ---- 7. two gateways share the stream ---- */

#define SHARED_MESSAGES 600

static void TEST_two_gateways_split_the_stream(void)
{
	struct cmq_gwe_opts o1 = {.share_group = "t7", .client_id = "gateway-1"};
	struct cmq_gwe_opts o2 = {.share_group = "t7", .client_id = "gateway-2"};
	unsigned char *seen = calloc(SHARED_MESSAGES, 1);
	struct cmq_gwe g1, g2;
	struct cmq_gwe_sink dash;
	struct cmq_gwe_metrics m1, m2;
	long long dups = 0, foreign = 0, deadline;
	char doc[64];

	CU_ASSERT_PTR_NOT_NULL_FATAL(seen);
	CU_ASSERT_EQUAL_FATAL(start_gw(&g1, &o1), 0);
	CU_ASSERT_EQUAL_FATAL(start_gw(&g2, &o2), 0);
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_sink_open(&env, "dashboard", NULL, "city/north/air", &dash),
	                      0);
	for (int i = 0; i < SHARED_MESSAGES; i++) {
		int n = snprintf(doc, sizeof(doc), "{\"no2\":%d}", i);

		CU_ASSERT_EQUAL(
		    pub("civitas-air-001", "raw/north/air/civitas-air-001", doc, n, NULL), 0);
		cmq_gwe_sink_pump(&dash, 0);
	}
	deadline = cmq_gwe_now_ms() + 20000;
	for (;;) {
		bool ok1 = cmq_gwe_metrics(&g1, &m1) == 0, ok2 = cmq_gwe_metrics(&g2, &m2) == 0;

		if ((ok1 && ok2 && m1.received + m2.received >= SHARED_MESSAGES) ||
		    cmq_gwe_now_ms() > deadline)
			break;
		cmq_gwe_sink_pump(&dash, 100);
	}
	CU_ASSERT_TRUE(wait_data(&dash, 0, "air", SHARED_MESSAGES, 10000));
	cmq_gwe_sink_pump(&dash, 500);
	tally_seq(&dash, 0, seen, SHARED_MESSAGES, &dups, &foreign);
	fprintf(stderr,
	        "shared test: gateway-1 received %lld, gateway-2 %lld; dashboard %zu "
	        "messages, %d missing, %lld duplicates\n",
	        m1.received, m2.received, count_data(&dash, 0, "air"),
	        missing(seen, SHARED_MESSAGES), dups);
	CU_ASSERT_TRUE(m1.received > 0);
	CU_ASSERT_TRUE(m2.received > 0);
	CU_ASSERT_EQUAL(m1.received + m2.received, SHARED_MESSAGES);
	CU_ASSERT_EQUAL(m1.forwarded + m2.forwarded, SHARED_MESSAGES);
	CU_ASSERT_EQUAL(missing(seen, SHARED_MESSAGES), 0);
	CU_ASSERT_EQUAL(dups, 0);
	CU_ASSERT_EQUAL(foreign, 0);
	CU_ASSERT_EQUAL(count_data(&dash, 0, "air"), SHARED_MESSAGES);
	cmq_gwe_sink_close(&dash);
	finish_gw(&g1);
	finish_gw(&g2);
	free(seen);
}

/* ---- 8. broken files on reload keep the old ones ---- */

static void TEST_reload_with_broken_files_keeps_old(void)
{
	struct cmq_gwe_opts o = {.share_group = "t8"};
	struct cmq_gwe_sink dash;
	struct cmq_gwe_metrics m;
	struct cmq_gwe g;
	char line[2048], doc[512], stamp_fast[64], stamp_coarse[64], *text;
	size_t from, mark;

	text = consent_one("resident-0001", "energy");
	o.consent_text = text;
	CU_ASSERT_EQUAL_FATAL(start_gw(&g, &o), 0);
	free(text);
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_sink_open(&env, "dashboard", NULL, "city/#", &dash), 0);
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_metrics(&g, &m), 0);
	snprintf(stamp_fast, sizeof(stamp_fast), "%s", m.policy);

	/* A good reload changes what is enforced (air locations to precision 5)... */
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_write_policy(&g, policy_coarse), 0);
	CU_ASSERT_EQUAL(cmq_gwe_reload(&g, line, sizeof(line)), 1);
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_metrics(&g, &m), 0);
	snprintf(stamp_coarse, sizeof(stamp_coarse), "%s", m.policy);
	CU_ASSERT_STRING_NOT_EQUAL(stamp_fast, stamp_coarse);
	CU_ASSERT_EQUAL(pubs("civitas-air-001", "raw/north/air/civitas-air-001", air_doc), 0);
	CU_ASSERT_TRUE(wait_data(&dash, 0, "air", 1, 5000));
	check_air_scrubbed(find_data(&dash, 0, "air"), 5, stamp_coarse);

	/* ...a broken one changes nothing. */
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_write_policy(&g, "{\"version\": \"9\", \"categories\": [\n"),
	                      0);
	CU_ASSERT_EQUAL(cmq_gwe_reload(&g, line, sizeof(line)), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(line, "policy BROKEN, kept the old one"));
	CU_ASSERT_PTR_NOT_NULL(strstr(line, stamp_coarse));
	CU_ASSERT_TRUE(cmq_gwe_alive(&g));
	from = dash.n;
	CU_ASSERT_EQUAL(pubs("civitas-air-001", "raw/north/air/civitas-air-001", air_doc), 0);
	CU_ASSERT_TRUE(wait_data(&dash, from, "air", 1, 5000));
	check_air_scrubbed(find_data(&dash, from, "air"), 5, stamp_coarse);

	/* A consented resident is forwarded; a broken consent file keeps that consent. */
	from = dash.n;
	meter_doc(doc, sizeof(doc), "resident-0001", "MTR-1-AAA", 500);
	CU_ASSERT_EQUAL(pubs("civitas-meter-001", "raw/south/meter/civitas-meter-001", doc), 0);
	CU_ASSERT_TRUE(wait_data(&dash, from, "energy", 1, 5000));
	mark = cmq_gwe_log_mark(&g);
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_write_consent(&g, "{\"version\": 1, \"residents\": [{\"id\""),
	                      0);
	from = dash.n;
	CU_ASSERT_EQUAL(pubs("civitas-meter-001", "raw/south/meter/civitas-meter-001", doc), 0);
	CU_ASSERT_TRUE(wait_data(&dash, from, "energy", 1, 5000));
	CU_ASSERT_TRUE(cmq_gwe_log_wait(&g, mark, "does not load; keeping the 1 residents", 3000));
	/* SIGHUP with both files broken: both old ones stay. */
	CU_ASSERT_EQUAL(cmq_gwe_reload(&g, line, sizeof(line)), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(line, "policy BROKEN, kept the old one"));
	CU_ASSERT_PTR_NOT_NULL(strstr(line, "consent BROKEN, kept the old one"));
	from = dash.n;
	CU_ASSERT_EQUAL(pubs("civitas-meter-001", "raw/south/meter/civitas-meter-001", doc), 0);
	CU_ASSERT_TRUE(wait_data(&dash, from, "energy", 1, 5000));
	/* Consent still follows the file once it is valid again: withdrawal applies. */
	text = consent_one("resident-0001", "");
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_write_consent(&g, text), 0);
	free(text);
	CU_ASSERT_EQUAL(pubs("civitas-meter-001", "raw/south/meter/civitas-meter-001", doc), 0);
	CU_ASSERT_EQUAL(cmq_gwe_wait_received(&g, 6, 5000, &m), 0);
	CU_ASSERT_EQUAL(m.by_reason[CMQ_DROP_NO_CONSENT], 1);
	CU_ASSERT_STRING_EQUAL(m.policy, stamp_coarse);
	cmq_gwe_sink_pump(&dash, 300);
	CU_ASSERT_EQUAL(count_data(&dash, 0, "energy"), 3);
	cmq_gwe_sink_close(&dash);
	finish_gw(&g);
}

/* ---- 9. fail closed: what the gateway refuses on its own ---- */

struct closed_case {
	const char *who; /* device CN, or "bridge" (district-north) */
	const char *topic;
	const char *payload;
	const char *provenance; /* bridge only: the stamp it forwards, NULL = none */
	int publish_rc;         /* 0 accepted by the broker, CMQ_H_REFUSED */
	enum cmq_drop reason;   /* the gateway's drop reason when accepted */
};

static const struct closed_case closed_cases[] = {
    {"civitas-air-001", "raw/north/air/civitas-air-001", "no2=41", NULL, 0, CMQ_DROP_NOT_JSON},
    {"civitas-air-001", "raw/north/air/civitas-air-001", "", NULL, 0, CMQ_DROP_NOT_JSON},
    {"civitas-air-001", "raw/north/air/civitas-air-001", "\"just a string\"", NULL, 0,
     CMQ_DROP_NOT_OBJECT},
    /* A restricted vendor's personal data stops at the broker. */
    {"nimbus-wifi-001", "raw/harbour/footfall/nimbus-wifi-001", "{\"peopleCount\":5}", NULL,
     CMQ_H_REFUSED, CMQ_DROP_NONE},
    /* A district broker's bridge is trusted for topics, not for stamps. */
    {"bridge", "raw/north/air/civitas-air-042", "{\"no2\":1}", NULL, 0, CMQ_DROP_NO_PROVENANCE},
    {"bridge", "raw/north/air/civitas-air-042", "{\"no2\":1}",
     "civitas/civitas-air-043/trusted/d+0", 0, CMQ_DROP_BAD_PROVENANCE},
    {"bridge", "raw/north/air/civitas-air-042", "{\"no2\":1}", "garbage", 0,
     CMQ_DROP_BAD_PROVENANCE},
    {"bridge", "raw/north/air/civitas-air-042", "{\"no2\":1}", "nimbus/civitas-air-042/trusted/d+0",
     0, CMQ_DROP_BAD_PROVENANCE},
    {"bridge", "raw/north/camera/hawkeye-cam-009", "{\"zone\":\"z\",\"peopleCount\":50}",
     "hawkeye/hawkeye-cam-009/trusted/d+0", 0, CMQ_DROP_VENDOR_REFUSED},
    {"bridge", "raw/north/footfall/nimbus-wifi-009", "{\"peopleCount\":5}",
     "nimbus/nimbus-wifi-009/restricted/d+0", 0, CMQ_DROP_VENDOR_REFUSED},
    {"bridge", "raw/North/air/civitas-air-042", "{\"no2\":1}",
     "civitas/civitas-air-042/trusted/d+0", 0, CMQ_DROP_BAD_TOPIC},
    {"bridge", "raw/gateway/air/civitas-air-042", "{\"no2\":1}",
     "civitas/civitas-air-042/trusted/d+0", 0, CMQ_DROP_BAD_TOPIC},
};

static void TEST_fail_closed(void)
{
	struct cmq_gwe_opts o = {.share_group = "t9", .extra = {"drop_log_rate", "1000"}};
	struct cmq_gwe_sink dash;
	struct cmq_gwe_metrics m;
	struct cmq_gwe g;
	struct cmq_h_client *bridge = NULL;
	long long expect[CMQ_DROP__COUNT] = {0}, accepted = 0;
	int reason = -1;

	CU_ASSERT_EQUAL_FATAL(start_gw(&g, &o), 0);
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_sink_open(&env, "dashboard", NULL, "city/#", &dash), 0);
	CU_ASSERT_EQUAL_FATAL(cmq_env_connect_password(&env, "district-north",
	                                               "district-north-secret", NULL, &bridge,
	                                               &reason),
	                      0);
	for (size_t i = 0; i < sizeof(closed_cases) / sizeof(closed_cases[0]); i++) {
		const struct closed_case *k = &closed_cases[i];
		const char *props[] = {"civicmq-provenance", k->provenance, NULL};
		size_t mark = cmq_gwe_log_mark(&g);
		char needle[256];
		int code = -1, rc;

		if (strcmp(k->who, "bridge") == 0)
			rc = cmq_h_publish(bridge, k->topic, k->payload, (int)strlen(k->payload), 1,
			                   false, k->provenance ? props : NULL, &code);
		else
			rc = pub(k->who, k->topic, k->payload, (int)strlen(k->payload), &code);
		if (rc != k->publish_rc)
			fprintf(stderr, "fail-closed case %zu (%s): publish rc %d code 0x%x\n", i,
			        k->topic, rc, (unsigned)code);
		CU_ASSERT_EQUAL(rc, k->publish_rc);
		if (rc != 0) {
			CU_ASSERT_EQUAL(code, NOT_AUTHORISED);
			continue;
		}
		accepted++;
		expect[k->reason]++;
		snprintf(needle, sizeof(needle), "drop: %s topic=", cmq_drop_name(k->reason));
		if (!cmq_gwe_log_wait(&g, mark, needle, 5000)) {
			fprintf(stderr, "fail-closed case %zu (%s): no \"%s\" in the log\n", i,
			        k->topic, needle);
			cmq_gwe_log_print(&g, mark);
			CU_FAIL("drop reason not logged");
		}
	}
	/* A blocked vendor's device does not even connect. */
	{
		struct cmq_h_client *hawk = NULL;

		CU_ASSERT_EQUAL(
		    cmq_env_connect_cert(&env, "hawkeye-cam-001", NULL, 0, &hawk, &reason),
		    CMQ_H_REFUSED);
		CU_ASSERT_EQUAL(reason, NOT_AUTHORISED);
		cmq_h_close(hawk);
	}
	/* A restricted vendor's public data does pass: the refusals above are specific. */
	CU_ASSERT_EQUAL(pubs("nimbus-air-001", "raw/harbour/air/nimbus-air-001", "{\"no2\":7}"), 0);
	CU_ASSERT_TRUE(wait_data(&dash, 0, "air", 1, 5000));
	CU_ASSERT_EQUAL(cmq_gwe_wait_received(&g, accepted + 1, 5000, &m), 0);
	CU_ASSERT_EQUAL(m.received, accepted + 1);
	CU_ASSERT_EQUAL(m.forwarded, 1);
	for (int r = 1; r < CMQ_DROP__COUNT; r++) {
		if (m.by_reason[r] != expect[r])
			fprintf(stderr, "fail-closed: dropped %s: %lld, expected %lld\n",
			        cmq_drop_name((enum cmq_drop)r), m.by_reason[r], expect[r]);
		CU_ASSERT_EQUAL(m.by_reason[r], expect[r]);
	}
	cmq_gwe_sink_pump(&dash, 300);
	CU_ASSERT_EQUAL(count_data(&dash, 0, NULL), 1);
	if (find_data(&dash, 0, "air") != NULL)
		CU_ASSERT_STRING_EQUAL(find_data(&dash, 0, "air")->topic, "city/harbour/air");
	cmq_h_close(bridge);
	cmq_gwe_sink_close(&dash);
	finish_gw(&g);
}

/* The broker goes away and comes back (same ports, no persistence): the gateway logs the
 * loss, reconnects with backoff, subscribes again and forwards the next message. Runs last:
 * the restarted broker has forgotten every session. */
static void TEST_broker_restart_reconnects(void)
{
	struct cmq_gwe_opts o = {.share_group = "t10", .extra = {"reconnect_max", "2"}};
	struct cmq_gwe g;
	struct cmq_gwe_sink dash;
	size_t mark;

	CU_ASSERT_EQUAL_FATAL(start_gw(&g, &o), 0);
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_sink_open(&env, "dashboard", NULL, "city/#", &dash), 0);
	CU_ASSERT_EQUAL(pubs("civitas-air-001", "raw/north/air/civitas-air-001", air_doc), 0);
	CU_ASSERT_TRUE(wait_data(&dash, 0, "air", 1, 5000));
	cmq_gwe_sink_close(&dash);

	mark = cmq_gwe_log_mark(&g);
	CU_ASSERT_EQUAL(cmq_h_broker_stop(&env.broker), 0);
	CU_ASSERT_TRUE(cmq_gwe_log_wait(&g, mark, "lost", 5000));
	/* Down for a few seconds: the gateway keeps retrying, with backoff, and keeps running. */
	CU_ASSERT_TRUE(cmq_gwe_log_wait(&g, mark, "retrying in 2 s", 10000));
	CU_ASSERT_EQUAL_FATAL(cmq_h_broker_restart(&env.broker), 0);
	CU_ASSERT_TRUE(cmq_gwe_log_wait(&g, mark, "subscribed $share/t10/raw/#", 10000));
	if (!cmq_gwe_log_contains(&g, mark, "subscribed $share/t10/raw/#"))
		cmq_gwe_log_print(&g, mark);

	reset_devices();
	CU_ASSERT_EQUAL_FATAL(cmq_gwe_sink_open(&env, "dashboard", NULL, "city/#", &dash), 0);
	CU_ASSERT_EQUAL(pubs("civitas-air-001", "raw/north/air/civitas-air-001", air_doc), 0);
	CU_ASSERT_TRUE(wait_data(&dash, 0, "air", 1, 5000));
	cmq_gwe_sink_close(&dash);
	finish_gw(&g);
}

int main(void)
{
	static const struct cmq_itest tests[] = {
	    {"pipeline_end_to_end", TEST_pipeline_end_to_end},
	    {"no_canary_leaks", TEST_no_canary_leaks},
	    {"consent_grant_and_withdraw", TEST_consent_grant_and_withdraw},
	    {"pseudonym_epoch_rotation", TEST_pseudonym_epoch_rotation},
	    {"aggregate_k_threshold", TEST_aggregate_k_threshold},
	    {"kill_and_restart_loses_nothing", TEST_kill_and_restart_loses_nothing},
	    {"two_gateways_split_the_stream", TEST_two_gateways_split_the_stream},
	    {"reload_with_broken_files_keeps_old", TEST_reload_with_broken_files_keeps_old},
	    {"fail_closed", TEST_fail_closed},
	    {"broker_restart_reconnects", TEST_broker_restart_reconnects},
	};

	return cmq_itest_run("gateway", suite_init, suite_cleanup, tests,
	                     sizeof(tests) / sizeof(tests[0]));
}
