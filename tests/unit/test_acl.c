/*
 * test_acl.c - access decisions (cmq_acl_check) and provenance stamps
 * (cmq_provenance_for), against the example city in config/ (policy, vendors, operators).
 *
 * The example config is used as it ships (ca_file NULL: no certificate is
 * presented here, decisions start from the username). Its operators.json is
 * extended at run time with one operator for each role the example defines
 * but nobody holds: maintenance, enforcement, and the built-in bridge.
 *
 * The decision matrix is one static table; every row names the exact
 * decision and reason. Devices connect with client id == CN (trust.c enforces
 * it), so device rows use the device id for both.
 */
#include "cmq_test.h"

#include "acl.h"
#include "error.h"
#include "policy.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUB   CMQ_ACCESS_SUBSCRIBE
#define PUB   CMQ_ACCESS_WRITE
#define READ  CMQ_ACCESS_READ
#define UNSUB CMQ_ACCESS_UNSUBSCRIBE
#define ALLOW CMQ_ALLOW
#define DENY  CMQ_DENY
#define R(x)  CMQ_REASON_##x

/* Added to the example operators for the roles nobody holds there. */
#define MAINTENANCE "field-team"
#define ENFORCEMENT "lez-office"
#define BRIDGE      "bridge-north"

struct acl_case {
	const char *username;
	const char *client_id;
	enum cmq_access access;
	const char *topic;
	uint32_t payloadlen;
	bool retain;
	enum cmq_decision decision;
	enum cmq_reason reason;
};

static const struct acl_case matrix[] = {
    /* Sensors publish their own raw topic, one row per topic rule. */
    {"civitas-air-001", "civitas-air-001", PUB, "raw/north/air/civitas-air-001", 512, false, ALLOW,
     R(OK)},
    {"civitas-noise-001", "civitas-noise-001", PUB, "raw/north/noise/civitas-noise-001", 512, false,
     ALLOW, R(OK)},
    {"civitas-wifi-001", "civitas-wifi-001", PUB, "raw/north/footfall/civitas-wifi-001", 512, false,
     ALLOW, R(OK)},
    {"civitas-park-001", "civitas-park-001", PUB, "raw/south/parking/civitas-park-001", 512, false,
     ALLOW, R(OK)},
    {"civitas-anpr-001", "civitas-anpr-001", PUB, "raw/north/anpr/civitas-anpr-001", 16384, false,
     ALLOW, R(OK)},
    {"civitas-meter-001", "civitas-meter-001", PUB, "raw/east/meter/civitas-meter-001", 512, false,
     ALLOW, R(OK)},
    {"civitas-cam-001", "civitas-cam-001", PUB, "raw/centre/camera/civitas-cam-001", 512, false,
     ALLOW, R(OK)},
    /* ...and nobody else's: the last level must be exactly the device id. */
    {"civitas-air-001", "civitas-air-001", PUB, "raw/north/air/civitas-air-002", 512, false, DENY,
     R(NOT_OWN_DEVICE)},
    {"civitas-air-001", "civitas-air-001", PUB, "raw/north/air/civitas-air-0011", 512, false, DENY,
     R(NOT_OWN_DEVICE)},
    {"civitas-air-0011", "civitas-air-0011", PUB, "raw/north/air/civitas-air-001", 512, false, DENY,
     R(NOT_OWN_DEVICE)},
    {"civitas-air-001", "civitas-air-001", PUB, "raw/north/air/xcivitas-air-001", 512, false, DENY,
     R(NOT_OWN_DEVICE)},
    {"civitas-air-001", "civitas-air-001", PUB, "raw/north/air/nimbus-air-001", 512, false, DENY,
     R(NOT_OWN_DEVICE)},
    /* The device id only as the last level: a district it chose reaches city/ topics. */
    {"civitas-air-001", "civitas-air-001", PUB, "raw/civitas-air-001/air/civitas-air-001", 512,
     false, DENY, R(DEVICE_ID_IN_TOPIC)},
    {"civitas-air-001", "civitas-air-001", PUB, "raw/near-civitas-air-001/air/civitas-air-001", 512,
     false, DENY, R(DEVICE_ID_IN_TOPIC)},
    {"civitas-air-001", "civitas-air-001", PUB, "raw/civitas-air/air/civitas-air-001", 512, false,
     ALLOW, R(OK)},
    /* A raw topic names district, kind and device, none of them empty. */
    {"civitas-air-001", "civitas-air-001", PUB, "raw/north/air/", 512, false, DENY, R(BAD_TOPIC)},
    {"civitas-air-001", "civitas-air-001", PUB, "raw//air/civitas-air-001", 512, false, DENY,
     R(BAD_TOPIC)},
    {"civitas-air-001", "civitas-air-001", PUB, "raw/north//civitas-air-001", 512, false, DENY,
     R(BAD_TOPIC)},
    /* Topics no rule covers. */
    {"civitas-air-001", "civitas-air-001", PUB, "raw/north/unknownkind/dev", 512, false, DENY,
     R(NO_RULE)},
    {"civitas-air-001", "civitas-air-001", PUB, "raw/north/unknownkind/civitas-air-001", 512, false,
     DENY, R(NO_RULE)},
    {"civitas-air-001", "civitas-air-001", PUB, "raw/north/air/civitas-air-001/extra", 512, false,
     DENY, R(NO_RULE)},
    {"civitas-air-001", "civitas-air-001", PUB, "raw/civitas-air-001", 512, false, DENY,
     R(NO_RULE)},
    {"civitas-air-001", "civitas-air-001", PUB, "raw", 512, false, DENY, R(NO_RULE)},
    {"civitas-air-001", "civitas-air-001", PUB, "rawdata/north/air/civitas-air-001", 512, false,
     DENY, R(NO_GRANT)},
    /* Vendor permissions and tiers: nimbus is restricted to environment and mobility. */
    {"nimbus-meter-001", "nimbus-meter-001", PUB, "raw/north/meter/nimbus-meter-001", 512, false,
     DENY, R(CATEGORY_NOT_PERMITTED)},
    {"nimbus-cam-001", "nimbus-cam-001", PUB, "raw/north/camera/nimbus-cam-001", 512, false, DENY,
     R(CATEGORY_NOT_PERMITTED)},
    {"nimbus-wifi-001", "nimbus-wifi-001", PUB, "raw/x/footfall/nimbus-wifi-001", 512, false, DENY,
     R(TIER_RESTRICTED)},
    {"nimbus-park-001", "nimbus-park-001", PUB, "raw/x/parking/nimbus-park-001", 512, false, DENY,
     R(TIER_RESTRICTED)},
    {"nimbus-air-001", "nimbus-air-001", PUB, "raw/x/air/nimbus-air-001", 512, false, ALLOW, R(OK)},
    {"nimbus-noise-001", "nimbus-noise-001", PUB, "raw/x/noise/nimbus-noise-001", 512, false, ALLOW,
     R(OK)},
    {"nimbus-air-001", "nimbus-air-001", PUB, "raw/x/air/nimbus-air-001", 512, true, ALLOW, R(OK)},
    {"nimbus-air-001", "nimbus-air-001", SUB, "cmd/x/air/nimbus-air-001", 0, false, DENY,
     R(RESTRICTED_NO_SUBSCRIBE)},
    {"nimbus-air-001", "nimbus-air-001", READ, "cmd/x/air/nimbus-air-001", 0, false, DENY,
     R(RESTRICTED_NO_SUBSCRIBE)},
    {"nimbus-air-001", "nimbus-air-001", SUB, "city/#", 0, false, DENY, R(RESTRICTED_NO_SUBSCRIBE)},
    {"nimbus-air-001", "nimbus-air-001", PUB, "cmd/x/air/nimbus-air-001", 512, false, DENY,
     R(NO_GRANT)},
    /* hawkeye is blocked: nothing at all. */
    {"hawkeye-cam-001", "hawkeye-cam-001", PUB, "raw/north/camera/hawkeye-cam-001", 512, false,
     DENY, R(VENDOR_BLOCKED)},
    {"hawkeye-cam-001", "hawkeye-cam-001", SUB, "cmd/north/camera/hawkeye-cam-001", 0, false, DENY,
     R(VENDOR_BLOCKED)},
    {"hawkeye-cam-001", "hawkeye-cam-001", READ, "cmd/north/camera/hawkeye-cam-001", 0, false, DENY,
     R(VENDOR_BLOCKED)},
    {"hawkeye-cam-001", "hawkeye-cam-001", PUB, "city/north/air", 512, false, DENY,
     R(VENDOR_BLOCKED)},
    /* Retained messages: public yes, personal and sensitive no. */
    {"civitas-wifi-001", "civitas-wifi-001", PUB, "raw/north/footfall/civitas-wifi-001", 512, true,
     DENY, R(RETAIN_PERSONAL)},
    {"civitas-anpr-001", "civitas-anpr-001", PUB, "raw/north/anpr/civitas-anpr-001", 512, true,
     DENY, R(RETAIN_PERSONAL)},
    {"civitas-cam-001", "civitas-cam-001", PUB, "raw/centre/camera/civitas-cam-001", 512, true,
     DENY, R(RETAIN_PERSONAL)},
    {"civitas-air-001", "civitas-air-001", PUB, "raw/north/air/civitas-air-001", 512, true, ALLOW,
     R(OK)},
    /* Size limits: the rule's own (anpr 16384), else the global 65536. */
    {"civitas-anpr-001", "civitas-anpr-001", PUB, "raw/north/anpr/civitas-anpr-001", 16385, false,
     DENY, R(PAYLOAD_TOO_LARGE)},
    {"civitas-air-001", "civitas-air-001", PUB, "raw/north/air/civitas-air-001", 65536, false,
     ALLOW, R(OK)},
    {"civitas-air-001", "civitas-air-001", PUB, "raw/north/air/civitas-air-001", 65537, false, DENY,
     R(PAYLOAD_TOO_LARGE)},
    {"traffic-centre", "tc-1", PUB, "cmd/north/signal/junction-4", 65536, false, ALLOW, R(OK)},
    {"traffic-centre", "tc-1", PUB, "cmd/north/signal/junction-4", 65537, false, DENY,
     R(PAYLOAD_TOO_LARGE)},
    {"gateway", "gw-1", PUB, "city/north/air", 65537, false, DENY, R(PAYLOAD_TOO_LARGE)},
    /* Only the gateway publishes city/ topics. */
    {"civitas-air-001", "civitas-air-001", PUB, "city/north/air", 512, false, DENY,
     R(CITY_WRITE_FORBIDDEN)},
    {"dashboard", "dash-1", PUB, "city/north/air", 512, false, DENY, R(CITY_WRITE_FORBIDDEN)},
    {"dashboard", "dash-1", PUB, "city", 512, false, DENY, R(CITY_WRITE_FORBIDDEN)},
    {"admin", "admin-1", PUB, "city/transparency/register", 512, false, DENY,
     R(CITY_WRITE_FORBIDDEN)},
    {"traffic-centre", "tc-1", PUB, "city/north/signal", 512, false, DENY, R(CITY_WRITE_FORBIDDEN)},
    {"dashboard", "dash-1", PUB, "cityx/north/air", 512, false, DENY, R(NO_GRANT)},
    /* Only devices (and bridges) publish raw topics. */
    {"gateway", "gw-1", PUB, "raw/north/air/civitas-air-001", 512, false, DENY,
     R(RAW_WRITE_FORBIDDEN)},
    {"dashboard", "dash-1", PUB, "raw/north/air/civitas-air-001", 512, false, DENY,
     R(RAW_WRITE_FORBIDDEN)},
    {"traffic-centre", "tc-1", PUB, "raw/north/air/civitas-air-001", 512, false, DENY,
     R(RAW_WRITE_FORBIDDEN)},
    /* The gateway reads raw (also as a shared subscription) and publishes city/. */
    {"gateway", "gw-1", SUB, "raw/#", 0, false, ALLOW, R(OK)},
    {"gateway", "gw-1", SUB, "$share/g/raw/#", 0, false, ALLOW, R(OK)},
    {"gateway", "gw-1", SUB, "raw/+/footfall/+", 0, false, ALLOW, R(OK)},
    {"gateway", "gw-1", READ, "raw/north/air/civitas-air-001", 0, false, ALLOW, R(OK)},
    {"gateway", "gw-1", SUB, "#", 0, false, DENY, R(NO_GRANT)},
    {"gateway", "gw-1", SUB, "city/#", 0, false, DENY, R(NO_GRANT)},
    {"gateway", "gw-1", PUB, "city/north/air", 512, false, ALLOW, R(OK)},
    {"gateway", "gw-1", PUB, "city/transparency/register", 512, false, DENY, R(EXPLICIT_DENY)},
    {"gateway", "gw-1", PUB, "city/transparency", 512, false, DENY, R(EXPLICIT_DENY)},
    /* Dashboards never read raw, by any filter. */
    {"dashboard", "dash-1", SUB, "raw/#", 0, false, DENY, R(RAW_READ_FORBIDDEN)},
    {"dashboard", "dash-1", SUB, "$share/g/raw/#", 0, false, DENY, R(RAW_READ_FORBIDDEN)},
    {"dashboard", "dash-1", SUB, "raw", 0, false, DENY, R(RAW_READ_FORBIDDEN)},
    {"dashboard", "dash-1", READ, "raw/north/air/civitas-air-001", 0, false, DENY,
     R(RAW_READ_FORBIDDEN)},
    {"dashboard", "dash-1", SUB, "#", 0, false, DENY, R(NO_GRANT)},
    {"dashboard", "dash-1", SUB, "+/north/air/+", 0, false, DENY, R(NO_GRANT)},
    {"dashboard", "dash-1", SUB, "+/#", 0, false, DENY, R(NO_GRANT)},
    {"dashboard", "dash-1", SUB, "+", 0, false, DENY, R(NO_GRANT)},
    {"dashboard", "dash-1", SUB, "$share/g/#", 0, false, DENY, R(NO_GRANT)},
    /* ...read city/, except the ANPR feed the example denies them. */
    {"dashboard", "dash-1", SUB, "city/#", 0, false, ALLOW, R(OK)},
    {"dashboard", "dash-1", SUB, "city/+/air", 0, false, ALLOW, R(OK)},
    {"dashboard", "dash-1", SUB, "$share/d/city/north/air", 0, false, ALLOW, R(OK)},
    {"dashboard", "dash-1", READ, "city/north/air", 0, false, ALLOW, R(OK)},
    {"dashboard", "dash-1", READ, "city/transparency/register", 0, false, ALLOW, R(OK)},
    {"dashboard", "dash-1", READ, "city/north/anpr", 0, false, DENY, R(EXPLICIT_DENY)},
    {"dashboard", "dash-1", SUB, "city/north/anpr", 0, false, DENY, R(EXPLICIT_DENY)},
    {"dashboard", "dash-1", SUB, "city/+/anpr", 0, false, DENY, R(EXPLICIT_DENY)},
    {"admin", "admin-1", READ, "city/north/anpr", 0, false, ALLOW, R(OK)},
    /* '$' topics are reserved for everyone. */
    {"dashboard", "dash-1", SUB, "$SYS/#", 0, false, DENY, R(RESERVED_TOPIC)},
    {"dashboard", "dash-1", SUB, "$share/g/$SYS/#", 0, false, DENY, R(RESERVED_TOPIC)},
    {"gateway", "gw-1", READ, "$SYS/broker/uptime", 0, false, DENY, R(RESERVED_TOPIC)},
    /* The control API: the admin role alone publishes requests, to that exact topic. */
    {"admin", "admin-1", PUB, "$CONTROL/civicmq/v1", 512, false, ALLOW, R(OK)},
    {"admin", "admin-1", PUB, "$CONTROL/civicmq/v1/x", 512, false, DENY, R(RESERVED_TOPIC)},
    {"admin", "admin-1", PUB, "$CONTROL/dynamic-security/v1", 64, false, DENY, R(RESERVED_TOPIC)},
    {"admin", "admin-1", SUB, "$CONTROL/civicmq/v1", 0, false, DENY, R(RESERVED_TOPIC)},
    {"dashboard", "dashboard", PUB, "$CONTROL/civicmq/v1", 64, false, DENY, R(CONTROL_FORBIDDEN)},
    {"gateway", "gateway", PUB, "$CONTROL/civicmq/v1", 64, false, DENY, R(CONTROL_FORBIDDEN)},
    {"civitas-air-001", "civitas-air-001", PUB, "$CONTROL/civicmq/v1", 64, false, DENY,
     R(CONTROL_FORBIDDEN)},
    {"civitas-air-001", "civitas-air-001", PUB, "$SYS/x", 512, false, DENY, R(RESERVED_TOPIC)},
    /* Custom roles: traffic control may command signals only. */
    {"traffic-centre", "tc-1", PUB, "cmd/north/signal/junction-4", 512, false, ALLOW, R(OK)},
    {"traffic-centre", "tc-1", PUB, "cmd/north/meter/x", 512, false, DENY, R(NO_GRANT)},
    {"traffic-centre", "tc-1", SUB, "city/#", 0, false, ALLOW, R(OK)},
    {"traffic-centre", "tc-1", READ, "raw/north/air/civitas-air-001", 0, false, DENY,
     R(RAW_READ_FORBIDDEN)},
    /* Maintenance may command anything but signals: the deny wins over cmd/#. */
    {MAINTENANCE, "mt-1", PUB, "cmd/north/meter/x", 512, false, ALLOW, R(OK)},
    {MAINTENANCE, "mt-1", PUB, "cmd/north/signal/x", 512, false, DENY, R(EXPLICIT_DENY)},
    {MAINTENANCE, "mt-1", PUB, "cmd/north/signal/junction-4", 512, false, DENY, R(EXPLICIT_DENY)},
    {MAINTENANCE, "mt-1", SUB, "city/#", 0, false, DENY, R(NO_GRANT)},
    /* Enforcement reads the pseudonymised ANPR feed only. */
    {ENFORCEMENT, "lez-1", SUB, "city/north/anpr", 0, false, ALLOW, R(OK)},
    {ENFORCEMENT, "lez-1", SUB, "city/+/anpr", 0, false, ALLOW, R(OK)},
    {ENFORCEMENT, "lez-1", READ, "city/north/anpr", 0, false, ALLOW, R(OK)},
    {ENFORCEMENT, "lez-1", SUB, "city/#", 0, false, DENY, R(NO_GRANT)},
    {ENFORCEMENT, "lez-1", READ, "city/north/air", 0, false, DENY, R(NO_GRANT)},
    /* A bridge forwards raw topics that a rule covers, within the rule's limit. */
    {BRIDGE, "br-1", PUB, "raw/north/air/civitas-air-001", 512, false, ALLOW, R(OK)},
    {BRIDGE, "br-1", PUB, "raw/north/unknownkind/x", 512, false, DENY, R(NO_RULE)},
    {BRIDGE, "br-1", PUB, "raw/north/anpr/civitas-anpr-001", 16385, false, DENY,
     R(PAYLOAD_TOO_LARGE)},
    {BRIDGE, "br-1", SUB, "raw/#", 0, false, DENY, R(RAW_READ_FORBIDDEN)},
    {BRIDGE, "br-1", PUB, "city/north/air", 512, false, DENY, R(CITY_WRITE_FORBIDDEN)},
    /* Devices receive their own commands and nobody else's (%c = client id). */
    {"civitas-signal-001", "civitas-signal-001", SUB, "cmd/north/signal/civitas-signal-001", 0,
     false, ALLOW, R(OK)},
    {"civitas-signal-001", "civitas-signal-001", READ, "cmd/north/signal/civitas-signal-001", 0,
     false, ALLOW, R(OK)},
    {"civitas-signal-001", "civitas-signal-001", SUB, "cmd/+/+/civitas-signal-001", 0, false, ALLOW,
     R(OK)},
    {"civitas-signal-001", "civitas-signal-001", SUB, "cmd/north/signal/civitas-signal-002", 0,
     false, DENY, R(NO_GRANT)},
    {"civitas-signal-001", "civitas-signal-001", READ, "cmd/north/signal/civitas-signal-002", 0,
     false, DENY, R(NO_GRANT)},
    {"civitas-signal-001", "civitas-signal-001", SUB, "cmd/north/signal/+", 0, false, DENY,
     R(NO_GRANT)},
    {"civitas-signal-001", "civitas-signal-001", SUB, "cmd/#", 0, false, DENY, R(NO_GRANT)},
    {"civitas-signal-001", NULL, SUB, "cmd/north/signal/civitas-signal-001", 0, false, DENY,
     R(NO_GRANT)},
    {"civitas-signal-001", "civitas-signal-001", PUB, "cmd/north/signal/civitas-signal-001", 512,
     false, DENY, R(NO_GRANT)},
    {"civitas-signal-001", "civitas-signal-001", SUB, "city/#", 0, false, DENY, R(NO_GRANT)},
    {"civitas-signal-001", "civitas-signal-001", SUB, "raw/north/air/civitas-signal-001", 0, false,
     DENY, R(RAW_READ_FORBIDDEN)},
    /* Unsubscribing is always allowed. */
    {"dashboard", "dash-1", UNSUB, "raw/#", 0, false, ALLOW, R(OK)},
    {"hawkeye-cam-001", "hawkeye-cam-001", UNSUB, "cmd/#", 0, false, ALLOW, R(OK)},
    {NULL, NULL, UNSUB, "#", 0, false, ALLOW, R(OK)},
    /* Who is this? */
    {"nobody", "nobody", SUB, "city/#", 0, false, DENY, R(NO_IDENTITY)},
    {"civitas-", "civitas-", PUB, "raw/north/air/civitas-", 512, false, DENY, R(NO_IDENTITY)},
    {"Dashboard", "dash-1", SUB, "city/#", 0, false, DENY, R(NO_IDENTITY)},
    {NULL, "dash-1", SUB, "city/#", 0, false, DENY, R(NO_IDENTITY)},
    {NULL, NULL, PUB, "raw/north/air/civitas-air-001", 512, false, DENY, R(NO_IDENTITY)},
    /* Malformed topics and filters. */
    {"dashboard", "dash-1", SUB, "a/#/b", 0, false, DENY, R(BAD_TOPIC)},
    {"dashboard", "dash-1", SUB, "city/nor+th", 0, false, DENY, R(BAD_TOPIC)},
    {"dashboard", "dash-1", SUB, "city/#/", 0, false, DENY, R(BAD_TOPIC)},
    {"dashboard", "dash-1", SUB, "", 0, false, DENY, R(BAD_TOPIC)},
    {"dashboard", "dash-1", SUB, "$share/g", 0, false, DENY, R(BAD_TOPIC)},
    {"dashboard", "dash-1", SUB, "$share//city/#", 0, false, DENY, R(BAD_TOPIC)},
    {"gateway", "gw-1", SUB, "$share/g+/raw/#", 0, false, DENY, R(BAD_TOPIC)},
    {"dashboard", "dash-1", SUB, NULL, 0, false, DENY, R(BAD_TOPIC)},
    {"gateway", "gw-1", PUB, "", 512, false, DENY, R(BAD_TOPIC)},
};

#define N_MATRIX (sizeof(matrix) / sizeof(matrix[0]))

static const char *access_label(enum cmq_access a)
{
	return cmq_access_name(a);
}

static struct cmq_policy *policy;

static const char *config_file(const char *name)
{
	const char *src = getenv("CMQ_SRC");
	static char buf[2048];

	snprintf(buf, sizeof(buf), "%s/config/%s", src ? src : ".", name);
	return buf;
}

/* The example operators.json plus one operator per unheld role; returns its path. */
static const char *write_operators(void)
{
	static const char *const extra[][2] = {
	    {MAINTENANCE, "maintenance"}, {ENFORCEMENT, "enforcement"}, {BRIDGE, "bridge"}};
	struct json_object *root = json_object_from_file(config_file("operators.json")), *ops;
	static char path[4096];

	CU_ASSERT_PTR_NOT_NULL_FATAL(root);
	CU_ASSERT_FATAL(json_object_object_get_ex(root, "operators", &ops));
	for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "username", json_object_new_string(extra[i][0]));
		json_object_object_add(o, "role", json_object_new_string(extra[i][1]));
		json_object_object_add(o, "certificate", json_object_new_boolean(1));
		json_object_array_add(ops, o);
	}
	snprintf(path, sizeof(path), "%s",
	         cmq_test_write_file("operators-roles.json", json_object_to_json_string_ext(
	                                                         root, JSON_C_TO_STRING_PRETTY)));
	json_object_put(root);
	return path;
}

/* The example policy (loaded once; freed by the last case, which checks for leaks). */
static const struct cmq_policy *example(void)
{
	static char pol[2048], ven[2048];
	struct cmq_policy_files files;

	if (policy != NULL)
		return policy;
	snprintf(pol, sizeof(pol), "%s", config_file("policy.json"));
	snprintf(ven, sizeof(ven), "%s", config_file("vendors.json"));
	files.policy = pol;
	files.vendors = ven;
	files.operators = write_operators();
	files.ca_file = NULL;
	policy = cmq_test_load_clean(&files, false);
	CU_ASSERT_PTR_NOT_NULL_FATAL(policy);
	return policy;
}

static bool run_case(const struct cmq_policy *p, size_t i, bool quiet)
{
	const struct acl_case *c = &matrix[i];
	struct cmq_acl_request req = {c->username, c->client_id,  c->access,
	                              c->topic,    c->payloadlen, c->retain};
	struct cmq_acl_result res;
	enum cmq_decision d;
	bool ok;

	memset(&res, 0x5a, sizeof(res)); /* the result must be reset, whatever it held */
	d = cmq_acl_check(p, &req, &res);
	ok = d == c->decision && res.reason == c->reason &&
	     (c->reason != CMQ_REASON_NO_IDENTITY || res.who.kind == CMQ_PRINCIPAL_NONE);
	if (!ok && !quiet)
		fprintf(stderr, "\n  row %zu: %s %s %s \"%s\" len %u%s: got %s %s, want %s %s", i,
		        c->username ? c->username : "(null)",
		        c->client_id ? c->client_id : "(null)", access_label(c->access),
		        c->topic ? c->topic : "(null)", (unsigned)c->payloadlen,
		        c->retain ? " retained" : "", d == CMQ_ALLOW ? "ALLOW" : "DENY",
		        cmq_reason_name(res.reason), c->decision == CMQ_ALLOW ? "ALLOW" : "DENY",
		        cmq_reason_name(c->reason));
	return ok;
}

static void TEST_decision_matrix(void)
{
	const struct cmq_policy *p = example();

	for (size_t i = 0; i < N_MATRIX; i++)
		CU_ASSERT(run_case(p, i, false)); /* a failing row is printed with its index */
}

static void TEST_no_policy(void)
{
	struct cmq_acl_request req = {"dashboard", "dash-1", CMQ_ACCESS_SUBSCRIBE,
	                              "city/#",    0,        false};
	struct cmq_acl_result res;

	memset(&res, 0x5a, sizeof(res));
	CU_ASSERT_EQUAL(cmq_acl_check(NULL, &req, &res), CMQ_DENY);
	CU_ASSERT_EQUAL(res.reason, CMQ_REASON_NO_POLICY);
	CU_ASSERT_EQUAL(res.who.kind, CMQ_PRINCIPAL_NONE);
	CU_ASSERT_PTR_NULL(res.rule);
	/* Even unsubscribing needs a policy to be loaded. */
	req.access = CMQ_ACCESS_UNSUBSCRIBE;
	CU_ASSERT_EQUAL(cmq_acl_check(NULL, &req, &res), CMQ_DENY);
	CU_ASSERT_EQUAL(res.reason, CMQ_REASON_NO_POLICY);
}

/* Which principal a decision was made for. */
static void TEST_result_names_the_principal(void)
{
	const struct cmq_policy *p = example();
	struct cmq_acl_request req = {"nimbus-air-001",
	                              "nimbus-air-001",
	                              CMQ_ACCESS_WRITE,
	                              "raw/x/air/nimbus-air-001",
	                              10,
	                              false};
	struct cmq_acl_result res;

	CU_ASSERT_EQUAL(cmq_acl_check(p, &req, &res), CMQ_ALLOW);
	CU_ASSERT_EQUAL(res.who.kind, CMQ_PRINCIPAL_DEVICE);
	CU_ASSERT_PTR_EQUAL(res.who.vendor, cmq_policy_vendor_find(p, "nimbus"));
	CU_ASSERT_PTR_EQUAL(res.who.role, &p->roles[CMQ_ROLE_SENSOR]);
	req.username = "traffic-centre";
	req.access = CMQ_ACCESS_SUBSCRIBE;
	req.topic = "city/#";
	CU_ASSERT_EQUAL(cmq_acl_check(p, &req, &res), CMQ_ALLOW);
	CU_ASSERT_EQUAL(res.who.kind, CMQ_PRINCIPAL_OPERATOR);
	CU_ASSERT_PTR_EQUAL(res.who.op, cmq_policy_operator_find(p, "traffic-centre", 14));
	CU_ASSERT_PTR_EQUAL(res.who.role, cmq_policy_role_find(p, "traffic-control"));
	CU_ASSERT_PTR_NULL(res.who.vendor);
}

/* The topic rule consulted is reported for raw publications, and only for them. */
static void TEST_result_names_the_rule(void)
{
	static const struct {
		const char *username;
		enum cmq_access access;
		const char *topic;
		const char *rule; /* expected rule id, NULL for none */
	} rows[] = {
	    {"civitas-anpr-001", CMQ_ACCESS_WRITE, "raw/north/anpr/civitas-anpr-001", "anpr"},
	    {"civitas-air-001", CMQ_ACCESS_WRITE, "raw/north/air/civitas-air-002", "air-quality"},
	    {"nimbus-meter-001", CMQ_ACCESS_WRITE, "raw/n/meter/nimbus-meter-001", "smart-meter"},
	    {"nimbus-wifi-001", CMQ_ACCESS_WRITE, "raw/n/footfall/nimbus-wifi-001", "footfall"},
	    {"civitas-cam-001", CMQ_ACCESS_WRITE, "raw/n/camera/civitas-cam-001",
	     "people-counting"},
	    {BRIDGE, CMQ_ACCESS_WRITE, "raw/north/parking/civitas-park-001", "parking"},
	    {"civitas-air-001", CMQ_ACCESS_WRITE, "raw/north/unknownkind/civitas-air-001", NULL},
	    {"gateway", CMQ_ACCESS_READ, "raw/north/air/civitas-air-001", NULL},
	    {"gateway", CMQ_ACCESS_WRITE, "city/north/air", NULL},
	    {"dashboard", CMQ_ACCESS_READ, "city/north/air", NULL},
	};
	const struct cmq_policy *p = example();

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct cmq_acl_request req = {
		    rows[i].username, rows[i].username, rows[i].access, rows[i].topic, 10, false};
		struct cmq_acl_result res;

		memset(&res, 0x5a, sizeof(res));
		(void)cmq_acl_check(p, &req, &res);
		if (rows[i].rule == NULL) {
			CU_ASSERT_PTR_NULL(res.rule);
		} else {
			CU_ASSERT_PTR_NOT_NULL_FATAL(res.rule);
			CU_ASSERT_STRING_EQUAL(res.rule->id, rows[i].rule);
			CU_ASSERT_TRUE(res.rule >= p->rules && res.rule < p->rules + p->n_rules);
		}
	}
}

static void TEST_provenance(void)
{
	const struct cmq_policy *p = example();
	struct cmq_provenance prov;
	const char *dev = "civitas-air-001";

	CU_ASSERT_TRUE(cmq_provenance_for(p, dev, "raw/north/air/civitas-air-001", &prov));
	CU_ASSERT_STRING_EQUAL(prov.vendor, "civitas");
	CU_ASSERT_PTR_EQUAL(prov.device, dev); /* borrowed from the caller */
	CU_ASSERT_STRING_EQUAL(prov.tier, "trusted");
	CU_ASSERT_PTR_EQUAL(prov.policy, p->stamp);
	CU_ASSERT_EQUAL(strncmp(prov.policy, "2026-11-28.1+", 13), 0);
	CU_ASSERT_EQUAL(strlen(prov.policy), 13 + 12);

	CU_ASSERT_TRUE(cmq_provenance_for(p, "nimbus-air-001", "raw/x/air/nimbus-air-001", &prov));
	CU_ASSERT_STRING_EQUAL(prov.vendor, "nimbus");
	CU_ASSERT_STRING_EQUAL(prov.tier, "restricted");

	/* Nothing to stamp: operators, non-raw topics, unknown names, missing arguments. */
	static const struct {
		const char *username;
		const char *topic;
	} none[] = {
	    {"gateway", "raw/north/air/civitas-air-001"},
	    {BRIDGE, "raw/north/air/civitas-air-001"},
	    {"civitas-air-001", "city/north/air"},
	    {"civitas-air-001", "cmd/north/air/civitas-air-001"},
	    {"civitas-air-001", "rawx/north/air/civitas-air-001"},
	    {"nobody", "raw/north/air/nobody"},
	    {NULL, "raw/north/air/civitas-air-001"},
	    {"civitas-air-001", NULL},
	};
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		memset(&prov, 0x5a, sizeof(prov));
		CU_ASSERT_FALSE(cmq_provenance_for(p, none[i].username, none[i].topic, &prov));
		CU_ASSERT_PTR_NULL(prov.vendor);
		CU_ASSERT_PTR_NULL(prov.device);
		CU_ASSERT_PTR_NULL(prov.tier);
		CU_ASSERT_PTR_NULL(prov.policy);
	}
	CU_ASSERT_FALSE(cmq_provenance_for(NULL, dev, "raw/north/air/civitas-air-001", &prov));
}

/* The property value: four fields split by '/', which no field can contain. */
static void TEST_provenance_value_round_trip(void)
{
	const struct cmq_policy *p = example();
	struct cmq_provenance prov, back;
	char value[CMQ_PROVENANCE_MAX], buf[CMQ_PROVENANCE_MAX], expect[128], small[8];

	CU_ASSERT_TRUE_FATAL(
	    cmq_provenance_for(p, "civitas-air-001", "raw/north/air/civitas-air-001", &prov));
	CU_ASSERT_EQUAL(cmq_provenance_format(&prov, value, sizeof(value)), CMQ_OK);
	snprintf(expect, sizeof(expect), "civitas/civitas-air-001/trusted/%s", p->stamp);
	CU_ASSERT_STRING_EQUAL(value, expect);
	CU_ASSERT_EQUAL(cmq_provenance_parse(value, buf, sizeof(buf), &back), CMQ_OK);
	CU_ASSERT_STRING_EQUAL(back.vendor, "civitas");
	CU_ASSERT_STRING_EQUAL(back.device, "civitas-air-001");
	CU_ASSERT_STRING_EQUAL(back.tier, "trusted");
	CU_ASSERT_STRING_EQUAL(back.policy, p->stamp);
	CU_ASSERT_EQUAL(cmq_provenance_format(&prov, small, sizeof(small)), CMQ_ERR_TOO_BIG);
	CU_ASSERT_EQUAL(cmq_provenance_parse(value, small, sizeof(small), &back), CMQ_ERR_TOO_BIG);
	prov.tier = NULL;
	CU_ASSERT_EQUAL(cmq_provenance_format(&prov, value, sizeof(value)), CMQ_ERR_INVAL);

	static const char *const bad[] = {
	    "",
	    "civitas",
	    "civitas/d/trusted",
	    "civitas/d/trusted/s/extra",
	    "/d/trusted/s",
	    "civitas//trusted/s",
	    "civitas/d//s",
	    "civitas/d/trusted/",
	    "civitas/d/trustworthy/s",
	    "civitas/d/Trusted/s",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&back, 0x5a, sizeof(back));
		CU_ASSERT_EQUAL(cmq_provenance_parse(bad[i], buf, sizeof(buf), &back),
		                CMQ_ERR_PARSE);
		CU_ASSERT_PTR_NULL(back.vendor);
		CU_ASSERT_PTR_NULL(back.policy);
	}
}

/*
 * Grants with identity substitution: %u (username), %c (client id) and %v (vendor) each
 * fill a whole level and match only the requesting client's own value; denies still win.
 */
static void TEST_substitutions_in_grants(void)
{
	static const char policy_json[] =
	    "{\"version\": \"s1\",\n"
	    " \"categories\": [{\"id\": \"environment\", \"description\": \"air\"}],\n"
	    " \"scrub_profiles\": [{\"id\": \"p\", \"ops\": [{\"op\": \"keep\", \"path\": "
	    "\"a\"}]}],\n"
	    " \"topic_rules\": [{\"id\": \"air\", \"raw\": \"raw/+/air/+\", \"class\": "
	    "\"public\",\n"
	    "   \"category\": \"environment\", \"purpose\": \"x\", \"retention\": \"P1D\",\n"
	    "   \"profile\": \"p\", \"scrubbed\": \"city/{1}/air\"}],\n"
	    " \"roles\": [\n"
	    "  {\"id\": \"site-manager\",\n"
	    "   \"grants\": [{\"access\": \"subscribe\", \"topic\": \"sites/%u/#\"},\n"
	    "              {\"access\": \"publish\", \"topic\": \"reports/%u/+\"},\n"
	    "              {\"access\": \"publish\", \"topic\": \"sessions/%c\"}],\n"
	    "   \"denies\": [{\"access\": \"publish\", \"topic\": \"reports/%u/secret\"}]},\n"
	    "  {\"id\": \"sensor\",\n"
	    "   \"grants\": [{\"access\": \"publish\", \"topic\": \"status/%v/%c\"}]}]}\n";
	static const char vendors_json[] =
	    "{\"vendors\": [\n"
	    " {\"id\": \"civitas\", \"name\": \"C\", \"tier\": \"trusted\", \"device_id_prefix\": "
	    "\"civitas-\",\n"
	    "  \"ca_sha256\": [\""
	    "1111111111111111111111111111111111111111111111111111111111111111"
	    "\"], \"categories\": [\"environment\"]},\n"
	    " {\"id\": \"nimbus\", \"name\": \"N\", \"tier\": \"trusted\", \"device_id_prefix\": "
	    "\"nimbus-\",\n"
	    "  \"ca_sha256\": [\""
	    "2222222222222222222222222222222222222222222222222222222222222222"
	    "\"], \"categories\": [\"environment\"]}]}\n";
	static const char operators_json[] =
	    "{\"operators\": [\n"
	    " {\"username\": \"site-a\", \"role\": \"site-manager\", \"certificate\": true},\n"
	    " {\"username\": \"site-b\", \"role\": \"site-manager\", \"certificate\": true}]}\n";
	static const struct {
		const char *user, *cid;
		enum cmq_access access;
		const char *topic;
		enum cmq_decision d;
		enum cmq_reason reason;
	} rows[] = {
	    {"site-a", "site-a", SUB, "sites/site-a/#", ALLOW, CMQ_REASON_OK},
	    {"site-a", "site-a", SUB, "sites/site-a/door/1", ALLOW, CMQ_REASON_OK},
	    {"site-a", "site-a", READ, "sites/site-a/door/1", ALLOW, CMQ_REASON_OK},
	    {"site-a", "site-a", SUB, "sites/site-b/#", DENY, CMQ_REASON_NO_GRANT},
	    {"site-a", "site-a", SUB, "sites/+/#", DENY, CMQ_REASON_NO_GRANT},
	    {"site-a", "site-a", READ, "sites/site-b/door/1", DENY, CMQ_REASON_NO_GRANT},
	    {"site-b", "site-b", READ, "sites/site-b/door/1", ALLOW, CMQ_REASON_OK},
	    {"site-a", "site-a", PUB, "reports/site-a/daily", ALLOW, CMQ_REASON_OK},
	    {"site-a", "site-a", PUB, "reports/site-a/secret", DENY, CMQ_REASON_EXPLICIT_DENY},
	    {"site-a", "site-a", PUB, "reports/site-b/daily", DENY, CMQ_REASON_NO_GRANT},
	    {"site-a", "site-a-2", PUB, "sessions/site-a-2", ALLOW, CMQ_REASON_OK},
	    {"site-a", "site-a-2", PUB, "sessions/site-a", DENY, CMQ_REASON_NO_GRANT},
	    {"civitas-air-001", "civitas-air-001", PUB, "status/civitas/civitas-air-001", ALLOW,
	     CMQ_REASON_OK},
	    {"civitas-air-001", "civitas-air-001", PUB, "status/nimbus/civitas-air-001", DENY,
	     CMQ_REASON_NO_GRANT},
	    {"civitas-air-001", "civitas-air-001", PUB, "status/civitas/civitas-air-002", DENY,
	     CMQ_REASON_NO_GRANT},
	    {"nimbus-air-001", "nimbus-air-001", PUB, "status/nimbus/nimbus-air-001", ALLOW,
	     CMQ_REASON_OK},
	};
	struct cmq_policy_files f;
	static char pol[4096], ven[4096], ops[4096];
	struct cmq_policy *p;
	long live = cmq_test_live_allocations();

	snprintf(pol, sizeof(pol), "%s", cmq_test_write_file("subst-policy.json", policy_json));
	snprintf(ven, sizeof(ven), "%s", cmq_test_write_file("subst-vendors.json", vendors_json));
	snprintf(ops, sizeof(ops), "%s",
	         cmq_test_write_file("subst-operators.json", operators_json));
	f.policy = pol;
	f.vendors = ven;
	f.operators = ops;
	f.ca_file = NULL;
	p = cmq_test_load_clean(&f, false);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct cmq_acl_request req = {rows[i].user,  rows[i].cid, rows[i].access,
		                              rows[i].topic, 10,          false};
		struct cmq_acl_result res;
		enum cmq_decision d = cmq_acl_check(p, &req, &res);

		if (d != rows[i].d || res.reason != rows[i].reason)
			fprintf(stderr, "\n  subst row %zu (%s %s): got %s", i, rows[i].user,
			        rows[i].topic, cmq_reason_name(res.reason));
		CU_ASSERT_EQUAL(d, rows[i].d);
		CU_ASSERT_EQUAL(res.reason, rows[i].reason);
	}
	cmq_policy_free(p);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), live);
}

/* The hot path allocates nothing: an allocation failure armed for the next call never fires. */
static void TEST_check_allocates_nothing(void)
{
	const struct cmq_policy *p = example();
	long before = cmq_test_live_allocations();
	size_t checks = 0, wrong = 0;
	struct cmq_provenance prov;

	cmq_test_fail_after(0);
	while (checks < 1000) {
		for (size_t i = 0; i < N_MATRIX; i++, checks++)
			wrong += !run_case(p, i, true);
		(void)cmq_provenance_for(p, "civitas-air-001", "raw/north/air/civitas-air-001",
		                         &prov);
	}
	CU_ASSERT_FALSE(cmq_test_failure_fired());
	cmq_test_fail_after(-1);
	CU_ASSERT_EQUAL(wrong, 0);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
}

static void TEST_policy_frees_everything(void)
{
	example();
	cmq_policy_free(policy);
	policy = NULL;
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

static const struct cmq_test_case cases[] = {
    {"decision matrix", TEST_decision_matrix},
    {"no policy", TEST_no_policy},
    {"result names the principal", TEST_result_names_the_principal},
    {"result names the rule", TEST_result_names_the_rule},
    {"provenance", TEST_provenance},
    {"provenance value round trip", TEST_provenance_value_round_trip},
    {"substitutions in grants", TEST_substitutions_in_grants},
    {"check allocates nothing", TEST_check_allocates_nothing},
    {"policy frees everything", TEST_policy_frees_everything},
    {NULL, NULL},
};

int main(void)
{
	return cmq_test_run("acl", cases);
}
