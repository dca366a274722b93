/*
 * test_pipeline.c - one raw message through core/pipeline.c against the example
 * city (config/policy.json, config/vendors.json): which outcome and which drop
 * reason each check produces, the scrubbed topic, and the identifier guard.
 */
#include "cmq_test.h"

#include "consent.h"
#include "error.h"
#include "pipeline.h"
#include "policy.h"
#include "pseudo.h"

#include <string.h>

static struct cmq_policy *policy;
static struct cmq_consent *consent;
static struct cmq_pseudo *pseudo;

#define AIR_PROV   "civitas/civitas-air-001/trusted/x"
#define METER_PROV "civitas/civitas-meter-001/trusted/x"
#define CAM_PROV   "civitas/civitas-cam-001/trusted/x"
#define AIR_JSON                                                                                   \
	"{\"no2\":41,\"pm10\":18,\"refDevice\":\"civitas-air-001\",\"mac\":\"00:1A:2B:3C:4D:5E\"," \
	"\"dateObserved\":\"2026-11-28T10:07:31Z\",\"location\":{\"type\":\"Point\","              \
	"\"coordinates\":[4.402771,51.219448]}}"

static void setup(void)
{
	struct cmq_policy_files f = {"config/policy.json", "config/vendors.json", NULL, NULL};
	static const uint8_t secret[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
	struct cmq_diag d;
	const char *cpath;

	if (policy != NULL)
		return;
	policy = cmq_test_load_clean(&f, true);
	CU_ASSERT_FATAL(policy != NULL);
	cpath = cmq_test_write_file("consent.json",
	                            "{\"version\":1,\"residents\":["
	                            "{\"id\":\"resident-0001\",\"categories\":[\"energy\"]},"
	                            "{\"id\":\"resident-0002\",\"categories\":[]}]}");
	cmq_diag_init(&d);
	CU_ASSERT_FATAL(cmq_consent_load(cpath, policy, &d, &consent) == CMQ_OK);
	cmq_diag_cleanup(&d);
	CU_ASSERT_FATAL(cmq_pseudo_new(secret, 86400, &pseudo) == CMQ_OK);
}

static enum cmq_outcome run(const char *topic, const char *payload, const char *prov,
                            struct cmq_pipeline_result *res)
{
	struct cmq_pipeline pl = {policy, consent, {pseudo, 1795000000}, 0};

	return cmq_pipeline_run(&pl, topic, strlen(topic), payload, strlen(payload), prov, res);
}

static const struct {
	const char *topic;
	const char *payload;
	const char *prov;
	enum cmq_outcome outcome;
	enum cmq_drop reason;
	const char *scrubbed_topic;
} rows[] = {
    /* the happy paths */
    {"raw/north/air/civitas-air-001", AIR_JSON, AIR_PROV, CMQ_OUTCOME_FORWARD, CMQ_DROP_NONE,
     "city/north/air"},
    {"raw/north/meter/civitas-meter-001",
     "{\"residentId\":\"resident-0001\",\"meterId\":\"M-77\",\"activePower\":1234}", METER_PROV,
     CMQ_OUTCOME_FORWARD, CMQ_DROP_NONE, "city/north/energy"},
    {"raw/north/camera/civitas-cam-001", "{\"zone\":\"square\",\"peopleCount\":12}", CAM_PROV,
     CMQ_OUTCOME_ABSORB, CMQ_DROP_NONE, "city/north/crowd"},
    /* topic and rule */
    {"raw/north/weather/civitas-air-001", AIR_JSON, AIR_PROV, CMQ_OUTCOME_DROP, CMQ_DROP_NO_RULE,
     NULL},
    {"city/north/air", AIR_JSON, AIR_PROV, CMQ_OUTCOME_DROP, CMQ_DROP_NO_RULE, NULL},
    {"raw/North/air/civitas-air-001", AIR_JSON, AIR_PROV, CMQ_OUTCOME_DROP, CMQ_DROP_BAD_TOPIC,
     NULL},
    {"raw/gateway/air/civitas-air-001", AIR_JSON, AIR_PROV, CMQ_OUTCOME_DROP, CMQ_DROP_BAD_TOPIC,
     NULL},
    {"raw/transparency/air/civitas-air-001", AIR_JSON, AIR_PROV, CMQ_OUTCOME_DROP,
     CMQ_DROP_BAD_TOPIC, NULL},
    /* provenance */
    {"raw/north/air/civitas-air-001", AIR_JSON, NULL, CMQ_OUTCOME_DROP, CMQ_DROP_NO_PROVENANCE,
     NULL},
    {"raw/north/air/civitas-air-001", AIR_JSON, "civitas/civitas-air-001", CMQ_OUTCOME_DROP,
     CMQ_DROP_BAD_PROVENANCE, NULL},
    {"raw/north/air/civitas-air-001", AIR_JSON, "civitas/civitas-air-002/trusted/x",
     CMQ_OUTCOME_DROP, CMQ_DROP_BAD_PROVENANCE, NULL},
    {"raw/north/air/civitas-air-001", AIR_JSON, "nimbus/civitas-air-001/trusted/x",
     CMQ_OUTCOME_DROP, CMQ_DROP_BAD_PROVENANCE, NULL},
    {"raw/north/air/civitas-air-001", AIR_JSON, "umbrella/civitas-air-001/trusted/x",
     CMQ_OUTCOME_DROP, CMQ_DROP_VENDOR_REFUSED, NULL},
    {"raw/north/camera/hawkeye-cam-001", "{\"zone\":\"square\",\"peopleCount\":12}",
     "hawkeye/hawkeye-cam-001/blocked/x", CMQ_OUTCOME_DROP, CMQ_DROP_VENDOR_REFUSED, NULL},
    /* nimbus is restricted: public air passes, personal footfall does not; and it may
     * not feed energy at all */
    {"raw/north/air/nimbus-air-001", AIR_JSON, "nimbus/nimbus-air-001/restricted/x",
     CMQ_OUTCOME_FORWARD, CMQ_DROP_NONE, "city/north/air"},
    {"raw/north/footfall/nimbus-wifi-001", "{\"peopleCount\":12}",
     "nimbus/nimbus-wifi-001/restricted/x", CMQ_OUTCOME_DROP, CMQ_DROP_VENDOR_REFUSED, NULL},
    /* payload */
    {"raw/north/air/civitas-air-001", "{\"no2\":", AIR_PROV, CMQ_OUTCOME_DROP, CMQ_DROP_NOT_JSON,
     NULL},
    {"raw/north/air/civitas-air-001", "[1,2]", AIR_PROV, CMQ_OUTCOME_DROP, CMQ_DROP_NOT_OBJECT,
     NULL},
    {"raw/north/air/civitas-air-001", "{\"no2\":\"high\"}", AIR_PROV, CMQ_OUTCOME_FORWARD,
     CMQ_DROP_NONE, "city/north/air"},
    /* consent */
    {"raw/north/meter/civitas-meter-001",
     "{\"residentId\":\"resident-0002\",\"meterId\":\"M-78\",\"activePower\":1234}", METER_PROV,
     CMQ_OUTCOME_DROP, CMQ_DROP_NO_CONSENT, NULL},
    {"raw/north/meter/civitas-meter-001",
     "{\"residentId\":\"resident-0404\",\"meterId\":\"M-79\",\"activePower\":1234}", METER_PROV,
     CMQ_OUTCOME_DROP, CMQ_DROP_NO_CONSENT, NULL},
    {"raw/north/meter/civitas-meter-001", "{\"meterId\":\"M-80\",\"activePower\":1234}", METER_PROV,
     CMQ_OUTCOME_DROP, CMQ_DROP_NO_SUBJECT, NULL},
    {"raw/north/meter/civitas-meter-001",
     "{\"residentId\":42,\"meterId\":\"M-81\",\"activePower\":1234}", METER_PROV, CMQ_OUTCOME_DROP,
     CMQ_DROP_NO_SUBJECT, NULL},
    {"raw/north/meter/civitas-meter-001",
     "{\"residentId\":\"resident 0001\",\"meterId\":\"M-82\",\"activePower\":1}", METER_PROV,
     CMQ_OUTCOME_DROP, CMQ_DROP_NO_SUBJECT, NULL},
};

static void TEST_each_check_has_its_outcome_and_reason(void)
{
	setup();
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct cmq_pipeline_result res;
		enum cmq_outcome o = run(rows[i].topic, rows[i].payload, rows[i].prov, &res);

		if (o != rows[i].outcome || res.reason != rows[i].reason)
			fprintf(stderr, "row %zu (%s): outcome %d reason %s\n", i, rows[i].topic, o,
			        cmq_drop_name(res.reason));
		CU_ASSERT_EQUAL(o, rows[i].outcome);
		CU_ASSERT_EQUAL(res.reason, rows[i].reason);
		if (rows[i].scrubbed_topic != NULL) {
			CU_ASSERT_STRING_EQUAL(res.topic, rows[i].scrubbed_topic);
		}
		if (o == CMQ_OUTCOME_FORWARD) {
			CU_ASSERT(res.payload != NULL && res.payload_len == strlen(res.payload));
		} else {
			CU_ASSERT(res.payload == NULL);
		}
		cmq_pipeline_result_cleanup(&res);
	}
}

static void TEST_forwarded_payload_holds_only_what_the_profile_names(void)
{
	struct cmq_pipeline_result res;

	setup();
	CU_ASSERT_EQUAL(run("raw/north/air/civitas-air-001", AIR_JSON, AIR_PROV, &res),
	                CMQ_OUTCOME_FORWARD);
	CU_ASSERT_PTR_NULL(strstr(res.payload, "civitas-air-001"));
	CU_ASSERT_PTR_NULL(strstr(res.payload, "00:1A:2B"));
	CU_ASSERT_PTR_NULL(strstr(res.payload, "4.402771"));
	CU_ASSERT_PTR_NOT_NULL(strstr(res.payload, "\"no2\":41"));
	CU_ASSERT_PTR_NOT_NULL(strstr(res.payload, "2026-11-28T10:05:00Z"));
	cmq_pipeline_result_cleanup(&res);

	CU_ASSERT_EQUAL(run("raw/north/meter/civitas-meter-001",
	                    "{\"residentId\":\"resident-0001\",\"meterId\":\"M-77\","
	                    "\"activePower\":1234}",
	                    METER_PROV, &res),
	                CMQ_OUTCOME_FORWARD);
	CU_ASSERT_PTR_NULL(strstr(res.payload, "resident-0001"));
	CU_ASSERT_PTR_NULL(strstr(res.payload, "M-77"));
	CU_ASSERT_PTR_NOT_NULL(strstr(res.payload, "\"activePower\":1200"));
	CU_ASSERT(cmq_profile_pseudonymises(res.profile));
	cmq_pipeline_result_cleanup(&res);
}

/* A profile that keeps a field carrying the device id is caught by the guard. */
static void TEST_identifier_guard_catches_a_kept_device_id(void)
{
	struct cmq_pipeline_result res;

	setup();
	/* The air profile keeps no2; a firmware that puts the device id there is refused. */
	CU_ASSERT_EQUAL(
	    run("raw/north/air/civitas-air-001", "{\"no2\":\"civitas-air-001\"}", AIR_PROV, &res),
	    CMQ_OUTCOME_DROP);
	CU_ASSERT_EQUAL(res.reason, CMQ_DROP_IDENTIFIER_LEAK);
	CU_ASSERT_PTR_NULL(res.payload);
	cmq_pipeline_result_cleanup(&res);
}

static void TEST_missing_key_or_policy_fails_closed(void)
{
	struct cmq_pipeline pl = {policy, consent, {NULL, 1795000000}, 0};
	struct cmq_pipeline_result res;
	const char *meter = "{\"residentId\":\"resident-0001\",\"meterId\":\"M-77\"}";

	setup();
	pl.policy = policy;
	pl.consent = consent;
	CU_ASSERT_EQUAL(cmq_pipeline_run(&pl, "raw/north/meter/civitas-meter-001", 33, meter,
	                                 strlen(meter), METER_PROV, &res),
	                CMQ_OUTCOME_DROP);
	CU_ASSERT_EQUAL(res.reason, CMQ_DROP_NO_KEY);
	cmq_pipeline_result_cleanup(&res);

	pl.consent = NULL; /* nobody consented */
	pl.env.pseudo = pseudo;
	CU_ASSERT_EQUAL(cmq_pipeline_run(&pl, "raw/north/meter/civitas-meter-001", 33, meter,
	                                 strlen(meter), METER_PROV, &res),
	                CMQ_OUTCOME_DROP);
	CU_ASSERT_EQUAL(res.reason, CMQ_DROP_NO_CONSENT);
	cmq_pipeline_result_cleanup(&res);

	pl.policy = NULL;
	CU_ASSERT_EQUAL(cmq_pipeline_run(&pl, "raw/north/air/civitas-air-001", 29, AIR_JSON,
	                                 strlen(AIR_JSON), AIR_PROV, &res),
	                CMQ_OUTCOME_DROP);
	CU_ASSERT_EQUAL(res.reason, CMQ_DROP_INTERNAL);
	cmq_pipeline_result_cleanup(&res);
}

static void TEST_oversized_payload_is_dropped_before_parsing(void)
{
	static char big[20000];
	struct cmq_pipeline_result res;

	setup();
	/* The ANPR rule allows 16384 bytes. */
	memset(big, ' ', sizeof(big) - 1);
	big[0] = '{';
	big[sizeof(big) - 2] = '}';
	CU_ASSERT_EQUAL(
	    run("raw/north/anpr/civitas-anpr-001", big, "civitas/civitas-anpr-001/trusted/x", &res),
	    CMQ_OUTCOME_DROP);
	CU_ASSERT_EQUAL(res.reason, CMQ_DROP_TOO_LARGE);
	cmq_pipeline_result_cleanup(&res);
}

static void TEST_cleanup(void)
{
	cmq_policy_free(policy);
	cmq_consent_free(consent);
	cmq_pseudo_free(pseudo);
	policy = NULL;
	consent = NULL;
	pseudo = NULL;
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

int main(void)
{
	static const struct cmq_test_case cases[] = {
	    {"each check has its outcome and reason", TEST_each_check_has_its_outcome_and_reason},
	    {"forwarded payload holds only what the profile names",
	     TEST_forwarded_payload_holds_only_what_the_profile_names},
	    {"identifier guard catches a kept device id",
	     TEST_identifier_guard_catches_a_kept_device_id},
	    {"missing key or policy fails closed", TEST_missing_key_or_policy_fails_closed},
	    {"oversized payload is dropped before parsing",
	     TEST_oversized_payload_is_dropped_before_parsing},
	    {"everything freed", TEST_cleanup},
	    {NULL, NULL},
	};

	return cmq_test_run("pipeline", cases);
}
