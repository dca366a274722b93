/*
 * test_policy.c - the policy loader (core/policy.c, policy_rules.c,
 * policy_principals.c): the example city config, one bad fixture per error
 * class with its exact diagnostic, the CA bundle, lookups, value formats and
 * an out-of-memory sweep.
 *
 * Fixtures live in tests/unit/data/policy/: good/ holds a minimal valid
 * policy.json, vendors.json and operators.json; each file in bad/ is one of
 * them with one thing wrong. CA certificates are generated at run time.
 */
#include "cmq_test.h"

#include "error.h"
#include "policy.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_MAX_LEN    4096
#define EXAMPLE_VERSION "2026-11-28.1"

enum slot { POLICY, VENDORS, OPERATORS };

struct paths {
	char policy[PATH_MAX_LEN];
	char vendors[PATH_MAX_LEN];
	char operators[PATH_MAX_LEN];
	char ca_file[PATH_MAX_LEN];
};

static void copy_path(char *dst, const char *src)
{
	snprintf(dst, PATH_MAX_LEN, "%s", src);
}

/* The minimal good trio, with one file optionally replaced by a bad fixture. */
static void good_paths(struct paths *ps)
{
	copy_path(ps->policy, cmq_test_data("policy/good/policy.json"));
	copy_path(ps->vendors, cmq_test_data("policy/good/vendors.json"));
	copy_path(ps->operators, cmq_test_data("policy/good/operators.json"));
	ps->ca_file[0] = '\0';
}

/* The example city config shipped in config/ (the data dir is tests/unit/data). */
static void example_paths(struct paths *ps)
{
	copy_path(ps->policy, cmq_test_data("../../../config/policy.json"));
	copy_path(ps->vendors, cmq_test_data("../../../config/vendors.json"));
	copy_path(ps->operators, cmq_test_data("../../../config/operators.json"));
	ps->ca_file[0] = '\0';
}

static int load(const struct paths *ps, struct cmq_diag *d, struct cmq_policy **out)
{
	struct cmq_policy_files f = {ps->policy, ps->vendors,
	                             ps->operators[0] ? ps->operators : NULL,
	                             ps->ca_file[0] ? ps->ca_file : NULL};

	cmq_diag_init(d);
	return cmq_policy_load(&f, d, out);
}

static void dump_diag(const struct cmq_diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(stderr, "    %s %s\n", d->entries[i].level == CMQ_DIAG_ERROR ? "E" : "W",
		        d->entries[i].text);
}

/* The first entry of the given level containing every non-NULL needle, or NULL. */
static const struct cmq_diag_entry *find_all(const struct cmq_diag *d, enum cmq_diag_level level,
                                             const char *const *needles, size_t n)
{
	for (size_t i = 0; i < d->n; i++) {
		size_t k;

		if (d->entries[i].level != level)
			continue;
		for (k = 0; k < n; k++) {
			if (needles[k] != NULL && strstr(d->entries[i].text, needles[k]) == NULL)
				break;
		}
		if (k == n)
			return &d->entries[i];
	}
	return NULL;
}

static const struct cmq_diag_entry *find1(const struct cmq_diag *d, enum cmq_diag_level level,
                                          const char *needle)
{
	return find_all(d, level, &needle, 1);
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long len;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)len + 1);
	if (buf != NULL && fread(buf, 1, (size_t)len, f) != (size_t)len) {
		free(buf);
		buf = NULL;
	}
	if (buf != NULL)
		buf[len] = '\0';
	fclose(f);
	return buf;
}

/* ---- the example config ---- */

static bool stamp_well_formed(const char *stamp, const char *version)
{
	size_t vl = strlen(version);

	if (strncmp(stamp, version, vl) != 0 || stamp[vl] != '+' || strlen(stamp) != vl + 13)
		return false;
	for (size_t i = vl + 1; i < vl + 13; i++) {
		if (!((stamp[i] >= '0' && stamp[i] <= '9') || (stamp[i] >= 'a' && stamp[i] <= 'f')))
			return false;
	}
	return true;
}

static void TEST_example_config_loads(void)
{
	static const char *const custom[] = {"traffic-control", "maintenance", "enforcement"};
	static const char *const builtin[] = {"sensor", "gateway", "dashboard", "admin", "bridge"};
	struct paths ps;
	struct cmq_diag d;
	struct cmq_policy *p = NULL;
	int rc;

	example_paths(&ps);
	rc = load(&ps, &d, &p);
	CU_ASSERT_EQUAL_FATAL(rc, CMQ_OK);
	if (d.n != 0)
		dump_diag(&d);
	CU_ASSERT_EQUAL(d.errors, 0);
	CU_ASSERT_EQUAL(d.warnings, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(p->version, EXAMPLE_VERSION);
	CU_ASSERT_STRING_EQUAL(p->city, "Example City");
	CU_ASSERT_TRUE(stamp_well_formed(p->stamp, EXAMPLE_VERSION));
	CU_ASSERT_EQUAL(p->max_payload, 65536);
	CU_ASSERT_EQUAL(p->n_rules, 7);
	CU_ASSERT_EQUAL(p->n_vendors, 3);
	CU_ASSERT_EQUAL(p->n_operators, 4);
	CU_ASSERT_EQUAL(p->n_roles, CMQ_BUILTIN_ROLES + 3);
	CU_ASSERT_EQUAL(p->n_profiles, 7);
	CU_ASSERT_EQUAL(p->n_categories, 4);
	CU_ASSERT_EQUAL(p->n_cas, 4); /* three vendor CAs and one operator CA */
	for (size_t i = 0; i < CMQ_BUILTIN_ROLES; i++) {
		CU_ASSERT_STRING_EQUAL(p->roles[i].id, builtin[i]);
		CU_ASSERT_EQUAL(p->roles[i].kind, (enum cmq_role_kind)i);
	}
	for (size_t i = 0; i < 3; i++) {
		CU_ASSERT_STRING_EQUAL(p->roles[CMQ_BUILTIN_ROLES + i].id, custom[i]);
		CU_ASSERT_EQUAL(p->roles[CMQ_BUILTIN_ROLES + i].kind, CMQ_ROLE_CUSTOM);
	}
	/* "dashboard" in the file extends the built-in role with a deny. */
	CU_ASSERT_PTR_NOT_NULL(p->roles[CMQ_ROLE_DASHBOARD].deny[CMQ_OP_SUBSCRIBE]);
	CU_ASSERT_PTR_NOT_NULL(p->roles[CMQ_ROLE_DASHBOARD].deny[CMQ_OP_READ]);
	/* Rules keep file order; the sensitive one uses the aggregating profile. */
	CU_ASSERT_STRING_EQUAL(p->rules[0].id, "air-quality");
	CU_ASSERT_STRING_EQUAL(p->rules[4].id, "anpr");
	CU_ASSERT_EQUAL(p->rules[4].max_payload, 16384);
	CU_ASSERT_EQUAL(p->rules[0].max_payload, 65536);
	CU_ASSERT_STRING_EQUAL(p->rules[6].id, "people-counting");
	CU_ASSERT_EQUAL(p->rules[6].cls, CMQ_CLASS_SENSITIVE);
	CU_ASSERT_TRUE(p->profiles[p->rules[6].profile].aggregates);
	CU_ASSERT_STRING_EQUAL(p->categories[p->rules[5].category].id, "energy");
	CU_ASSERT_TRUE(p->categories[p->rules[5].category].resident_linked);
	CU_ASSERT_EQUAL(p->vendors[1].tier, CMQ_TIER_RESTRICTED);
	CU_ASSERT_EQUAL(p->vendors[2].tier, CMQ_TIER_BLOCKED);
	CU_ASSERT_EQUAL(p->vendors[0].categories, 0xfu);
	CU_ASSERT_EQUAL(p->vendors[1].categories, 0x3u);
	CU_ASSERT_EQUAL(p->vendors[2].categories, 0x8u);
	CU_ASSERT_EQUAL(p->cas[3].owner, CMQ_CA_OPERATOR);
	for (size_t i = 0; i < p->n_cas; i++)
		CU_ASSERT_PTR_NULL(p->cas[i].cert); /* no ca_file given */
	cmq_policy_free(p);
	cmq_diag_cleanup(&d);
}

/* The stamp hashes content, not paths: copies load with the same stamp, edits of policy.json
 * or vendors.json change it. operators.json is not part of it: accounts are not the data
 * policy, and the gateway, which loads no operators file, must name the same policy. */
static void TEST_stamp_follows_content(void)
{
	static const char *const names[] = {"policy.json", "vendors.json", "operators.json"};
	struct paths orig, copy;
	char *text[3];
	char stamp0[CMQ_STAMP_MAX];
	struct cmq_diag d;
	struct cmq_policy *p = NULL;

	example_paths(&orig);
	text[0] = read_text(orig.policy);
	text[1] = read_text(orig.vendors);
	text[2] = read_text(orig.operators);
	CU_ASSERT_FATAL(text[0] != NULL && text[1] != NULL && text[2] != NULL);
	CU_ASSERT_EQUAL_FATAL(load(&orig, &d, &p), CMQ_OK);
	snprintf(stamp0, sizeof(stamp0), "%s", p->stamp);
	cmq_policy_free(p);
	cmq_diag_cleanup(&d);

	copy_path(copy.policy, cmq_test_write_file("stamp-policy.json", text[0]));
	copy_path(copy.vendors, cmq_test_write_file("stamp-vendors.json", text[1]));
	copy_path(copy.operators, cmq_test_write_file("stamp-operators.json", text[2]));
	copy.ca_file[0] = '\0';
	CU_ASSERT_EQUAL_FATAL(load(&copy, &d, &p), CMQ_OK);
	CU_ASSERT_STRING_EQUAL(p->stamp, stamp0);
	cmq_policy_free(p);
	cmq_diag_cleanup(&d);

	for (int i = 0; i < 3; i++) {
		char name[64], *edited;
		size_t len = strlen(text[i]);

		/* One more space at the end: same meaning, new bytes. */
		edited = malloc(len + 2);
		CU_ASSERT_FATAL(edited != NULL);
		memcpy(edited, text[i], len);
		edited[len] = ' ';
		edited[len + 1] = '\0';
		snprintf(name, sizeof(name), "stamp-%s", names[i]);
		cmq_test_write_file(name, edited);
		CU_ASSERT_EQUAL(load(&copy, &d, &p), CMQ_OK);
		if (p != NULL) {
			CU_ASSERT_TRUE(stamp_well_formed(p->stamp, EXAMPLE_VERSION));
			if (i < 2) {
				CU_ASSERT_STRING_NOT_EQUAL(p->stamp, stamp0);
			} else {
				CU_ASSERT_STRING_EQUAL(p->stamp, stamp0);
			}
		}
		cmq_policy_free(p);
		cmq_diag_cleanup(&d);
		cmq_test_write_file(name, text[i]);
		free(edited);
	}
	/* Without an operators file (as the gateway loads it): the same stamp. */
	copy.operators[0] = '\0';
	CU_ASSERT_EQUAL(load(&copy, &d, &p), CMQ_OK);
	if (p != NULL)
		CU_ASSERT_STRING_EQUAL(p->stamp, stamp0);
	cmq_policy_free(p);
	cmq_diag_cleanup(&d);
	for (int i = 0; i < 3; i++)
		free(text[i]);
}

/* ---- bad fixtures: one problem each, one exact diagnostic ---- */

static const struct {
	const char *file;      /* under policy/bad/ */
	enum slot slot;        /* which of the three files it replaces */
	size_t errors;         /* exact error count; 0 = not checked */
	const char *expect[4]; /* all in one error line */
} bad_cases[] = {
    /* JSON syntax */
    {"malformed.json", POLICY, 1, {"malformed.json: 4:3: malformed JSON: ", "JSON must be strict"}},
    {"trailing-garbage.json", POLICY, 1, {"trailing-garbage.json: 17:1: malformed JSON: "}},
    {"duplicate-key.json",
     POLICY,
     1,
     {"duplicate-key.json: 14:70: duplicate key \"class\" in the same object"}},
    /* json-c 0.16 accepts 'tier' even in strict mode; it would hide "tier": "blocked". */
    {"vendor-single-quoted-key.json",
     VENDORS,
     1,
     {"vendor-single-quoted-key.json: 3:61: malformed JSON: single-quoted key"}},
    {"not-an-object.json",
     POLICY,
     1,
     {"not-an-object.json: $: expected the policy object, got an array"}},
    /* types and required fields */
    {"vendor-tier-number.json",
     VENDORS,
     1,
     {"vendor-tier-number.json: $.vendors[0].tier: expected a string, got number 3"}},
    {"vendor-tier-unknown.json",
     VENDORS,
     1,
     {"vendor-tier-unknown.json: $.vendors[0].tier: ", "\"trustworthy\" is not a vendor tier",
      "valid: trusted, restricted, blocked"}},
    {"rule-missing-purpose.json",
     POLICY,
     1,
     {"rule-missing-purpose.json: $.topic_rules[0].purpose: missing required field"}},
    /* a required field that is null is reported, not silently dropped with its entry */
    {"vendor-tier-null.json",
     VENDORS,
     1,
     {"vendor-tier-null.json: $.vendors[0].tier: is null; a value is required"}},
    {"rule-purpose-null.json",
     POLICY,
     1,
     {"rule-purpose-null.json: $.topic_rules[0].purpose: is null; a value is required"}},
    {"rule-class-unknown.json",
     POLICY,
     1,
     {"rule-class-unknown.json: $.topic_rules[0].class: ", "\"secret\" is not a privacy class",
      "valid: public, personal, sensitive"}},
    {"rule-id-invalid.json",
     POLICY,
     1,
     {"rule-id-invalid.json: $.topic_rules[0].id: ", "\"air quality\" is not a valid rule id"}},
    {"version-invalid.json",
     POLICY,
     1,
     {"version-invalid.json: $.version: ", "\"t 1\" is not a valid version"}},
    {"max-payload-zero.json",
     POLICY,
     1,
     {"max-payload-zero.json: $.limits.max_payload_bytes: 0 is out of range; valid: 1 to "
      "268435455"}},
    {"scrub-op-unknown.json",
     POLICY,
     2, /* and the rule using the dropped profile */
     {"scrub-op-unknown.json: $.scrub_profiles[0].ops[0].op: ", "\"blur\" is not a scrub operation",
      "valid: keep, drop, pseudonymise, generalise_location, coarsen_time, round, bucket, "
      "redact, aggregate"}},
    /* duplicate ids */
    {"dup-category.json",
     POLICY,
     1,
     {"dup-category.json: $.categories[1].id: duplicate category id \"environment\""}},
    {"dup-profile.json",
     POLICY,
     1,
     {"dup-profile.json: $.scrub_profiles[1].id: duplicate scrub profile id \"air\""}},
    {"dup-rule-id.json",
     POLICY,
     1,
     {"dup-rule-id.json: $.topic_rules[1].id: duplicate rule id \"air\""}},
    {"dup-raw.json",
     POLICY,
     1,
     {"dup-raw.json: $.topic_rules[1].raw: ",
      "\"raw/+/air/+\" is already the pattern of rule air"}},
    {"dup-vendor.json",
     VENDORS,
     1,
     {"dup-vendor.json: $.vendors[1].id: duplicate vendor id \"civitas\""}},
    {"dup-operator.json",
     OPERATORS,
     1,
     {"dup-operator.json: $.operators[1].username: duplicate operator \"gateway\""}},
    {"dup-role.json", POLICY, 1, {"dup-role.json: $.roles[1].id: duplicate role id \"ops\""}},
    {"dup-builtin-role.json",
     POLICY,
     1,
     {"dup-builtin-role.json: $.roles[1].id: duplicate role id \"dashboard\""}},
    {"ca-pinned-twice.json",
     VENDORS,
     1,
     {"ca-pinned-twice.json: $.vendors[1].ca_sha256: CA 3A:1F:5C:0B:",
      ":D0:95:4C is already pinned by vendor civitas"}},
    {"operator-ca-pinned-twice.json",
     OPERATORS,
     1,
     {"operator-ca-pinned-twice.json: $.operator_ca_sha256: CA 3A:1F:5C:0B:",
      "is already pinned by vendor civitas"}},
    /* fingerprints and serials */
    {"fingerprint-length.json",
     VENDORS,
     1,
     {"fingerprint-length.json: $.vendors[0].ca_sha256[0]: ",
      "\"3A1F5C0B9E2247D86A11C38EF0527B940DE631A85F72C904B71E68AF23D095\" is not a SHA-256 "
      "fingerprint",
      "expected 64 hex digits"}},
    {"fingerprint-nonhex.json",
     VENDORS,
     1,
     {"fingerprint-nonhex.json: $.vendors[0].ca_sha256[0]: ",
      "\"3A1F5C0B9E2247D86A11C38EF0527B940DE631A85F72C904B71E68AF23D0954G\" is not a SHA-256 "
      "fingerprint"}},
    {"revoked-serial-invalid.json",
     VENDORS,
     1,
     {"revoked-serial-invalid.json: $.vendors[0].revoked_serials[1]: ",
      "\"serial-7\" is not a certificate serial"}},
    /* topic patterns */
    {"raw-hash.json",
     POLICY,
     1,
     {"raw-hash.json: $.topic_rules[0].raw: ", "\"raw/+/air/#\" may not use '#'"}},
    {"raw-no-device-level.json",
     POLICY,
     1,
     {"raw-no-device-level.json: $.topic_rules[0].raw: ",
      "\"raw/+/air\" must have at least 3 levels and end in '+'"}},
    {"raw-not-raw.json",
     POLICY,
     1,
     {"raw-not-raw.json: $.topic_rules[0].raw: ", "\"data/+/air/+\" must start with \"raw/\""}},
    {"grant-pattern-invalid.json",
     POLICY,
     1,
     {"grant-pattern-invalid.json: $.roles[0].grants[0].topic: ",
      "\"a/#/b\" is not a valid topic pattern: '#' must be the last level"}},
    {"grant-access-unknown.json",
     POLICY,
     1,
     {"grant-access-unknown.json: $.roles[0].grants[0].access: ",
      "\"write\" is not a kind of access", "valid: publish, subscribe, read"}},
    /* references */
    {"rule-unknown-category.json",
     POLICY,
     1,
     {"rule-unknown-category.json: $.topic_rules[0].category: ",
      "unknown data category \"weather\"", "defined categories: environment, safety"}},
    {"vendor-unknown-category.json",
     VENDORS,
     1,
     {"vendor-unknown-category.json: $.vendors[0].categories[0]: ",
      "unknown data category \"weather\"", "policy.json defines: environment, safety"}},
    {"rule-unknown-profile.json",
     POLICY,
     1,
     {"rule-unknown-profile.json: $.topic_rules[0].profile: ", "unknown scrub profile \"airq\"",
      "defined profiles: air, crowd"}},
    {"operator-unknown-role.json",
     OPERATORS,
     1,
     {"operator-unknown-role.json: $.operators[0].role: ", "unknown role \"superuser\"",
      "roles: gateway, dashboard, admin, bridge"}},
    {"operator-role-sensor.json",
     OPERATORS,
     1,
     {"operator-role-sensor.json: $.operators[0].role: ", "\"sensor\" is the role of devices"}},
    /* privacy invariants */
    {"sensitive-no-aggregate.json",
     POLICY,
     1,
     {"sensitive-no-aggregate.json: $.topic_rules[0].profile: ",
      "profile \"air\" has no aggregate operation"}},
    {"template-device-level.json",
     POLICY,
     1,
     {"template-device-level.json: $.topic_rules[0].scrubbed: ",
      "\"city/{3}/air\": {3} is the device id level", "raw/+/air/+"}},
    {"template-fixed-level.json",
     POLICY,
     1,
     {"template-fixed-level.json: $.topic_rules[0].scrubbed: ",
      "\"city/{2}/air\": {2} names a fixed level of raw/+/air/+"}},
    {"template-outside-city.json",
     POLICY,
     1,
     {"template-outside-city.json: $.topic_rules[0].scrubbed: ",
      "\"town/{1}/air\" must start with \"city/\""}},
    {"retention-invalid.json",
     POLICY,
     1,
     {"retention-invalid.json: $.topic_rules[0].retention: ",
      "\"30 days\" is not an ISO 8601 duration", "\"P30D\""}},
    {"categories-empty.json",
     POLICY,
     2, /* and the rule's now unknown category */
     {"categories-empty.json: $.categories: has 0 entries; define between 1 and 64"}},
    {"grant-read-raw.json",
     POLICY,
     2,
     {"grant-read-raw.json: $.roles[0].grants[0].topic: ", "\"#\" could read raw/ topics"}},
    {"grant-read-raw.json",
     POLICY,
     2,
     {"grant-read-raw.json: $.roles[0].grants[1].topic: ", "\"raw/#\" could read raw/ topics"}},
    {"grant-publish-city.json",
     POLICY,
     1,
     {"grant-publish-city.json: $.roles[0].grants[0].topic: ",
      "\"city/#\" could publish city/ topics"}},
    {"grant-publish-raw.json", /* even the gateway may not publish raw/ */
     POLICY,
     1,
     {"grant-publish-raw.json: $.roles[0].grants[0].topic: ",
      "\"raw/+/air/x\" could publish raw/ topics"}},
    {"grant-sys.json",
     POLICY,
     1,
     {"grant-sys.json: $.roles[0].grants[0].topic: ",
      "\"$SYS/#\": topics starting with '$' are reserved"}},
    /* scrub operation parameters (one unused profile "x" or the aggregate profile) */
    {"scrub-path-empty-key.json",
     POLICY,
     1,
     {"scrub-path-empty-key.json: $.scrub_profiles[2].ops[0].path: \"a..b\" is not a valid path: "
      "it has an empty key",
      "e.g. \"readings[].value\""}},
    {"scrub-path-bad-index.json",
     POLICY,
     1,
     {"scrub-path-bad-index.json: $.scrub_profiles[2].ops[0].path: \"readings[x].value\" is not a "
      "valid path: it has '[' not followed by ']' or a number"}},
    {"scrub-location-no-param.json",
     POLICY,
     1,
     {"scrub-location-no-param.json: $.scrub_profiles[2].ops[0]: generalise_location needs "
      "geohash_precision (a whole number 1 to 12) or grid_degrees"}},
    {"scrub-location-both.json",
     POLICY,
     1,
     {"scrub-location-both.json: $.scrub_profiles[2].ops[0]: has both geohash_precision and "
      "grid_degrees; give exactly one"}},
    {"scrub-geohash-range.json",
     POLICY,
     1,
     {"scrub-geohash-range.json: $.scrub_profiles[2].ops[0].geohash_precision: 13 is out of range; "
      "valid: 1 to 12"}},
    {"scrub-grid-range.json",
     POLICY,
     1,
     {"scrub-grid-range.json: $.scrub_profiles[2].ops[0].grid_degrees: number 0 is out of range; "
      "valid: a number of degrees > 0 and <= 10"}},
    {"scrub-grid-string.json",
     POLICY,
     1,
     {"scrub-grid-string.json: $.scrub_profiles[2].ops[0].grid_degrees: expected a number of "
      "degrees > 0 and <= 10, got string \"0.01\""}},
    {"scrub-seconds-range.json",
     POLICY,
     1,
     {"scrub-seconds-range.json: $.scrub_profiles[2].ops[0].seconds: 31622401 is out of range; "
      "valid: 1 to 31622400"}},
    {"scrub-seconds-missing.json",
     POLICY,
     1,
     {"scrub-seconds-missing.json: $.scrub_profiles[2].ops[0].seconds: missing required field"}},
    {"scrub-step-negative.json",
     POLICY,
     1,
     {"scrub-step-negative.json: $.scrub_profiles[2].ops[0].step: number -5 is out of range; "
      "valid: a number > 0"}},
    {"scrub-step-string.json",
     POLICY,
     1,
     {"scrub-step-string.json: $.scrub_profiles[2].ops[0].step: expected a number > 0, got string "
      "\"5\""}},
    {"scrub-bounds-order.json",
     POLICY,
     1,
     {"scrub-bounds-order.json: $.scrub_profiles[2].ops[0].bounds[2]: number 20 is not greater "
      "than the bound before it (20)",
      "strictly increasing"}},
    {"scrub-bounds-empty.json",
     POLICY,
     1,
     {"scrub-bounds-empty.json: $.scrub_profiles[2].ops[0].bounds: has 0 entries; give 1 to 64 "
      "numbers"}},
    {"scrub-bounds-too-many.json",
     POLICY,
     1,
     {"scrub-bounds-too-many.json: $.scrub_profiles[2].ops[0].bounds: has 65 entries; give 1 to 64 "
      "numbers"}},
    {"scrub-bounds-not-number.json",
     POLICY,
     1,
     {"scrub-bounds-not-number.json: $.scrub_profiles[2].ops[0].bounds[1]: expected a number, got "
      "string \"2\""}},
    {"scrub-patterns-unknown.json",
     POLICY,
     1,
     {"scrub-patterns-unknown.json: $.scrub_profiles[2].ops[0].patterns[1]: \"ssn\" is not a "
      "redaction pattern",
      "valid: mac, plate, email, phone"}},
    {"scrub-patterns-twice.json",
     POLICY,
     1,
     {"scrub-patterns-twice.json: $.scrub_profiles[2].ops[0].patterns[2]: \"mac\" is listed "
      "twice"}},
    {"scrub-patterns-empty.json",
     POLICY,
     1,
     {"scrub-patterns-empty.json: $.scrub_profiles[2].ops[0].patterns: is empty; name at least one "
      "of mac, plate, email, phone"}},
    {"scrub-window-range.json",
     POLICY,
     1,
     {"scrub-window-range.json: $.scrub_profiles[1].ops[0].window_seconds: 86401 is out of range; "
      "valid: 1 to 86400"}},
    {"scrub-window-missing.json",
     POLICY,
     1,
     {"scrub-window-missing.json: $.scrub_profiles[1].ops[0].window_seconds: missing required "
      "field"}},
    {"scrub-k-range.json",
     POLICY,
     1,
     {"scrub-k-range.json: $.scrub_profiles[1].ops[0].k: 0 is out of range; valid: 1 to 1000000"}},
    {"scrub-epsilon-range.json",
     POLICY,
     1,
     {"scrub-epsilon-range.json: $.scrub_profiles[1].ops[0].noise_epsilon: number 0 is out of "
      "range; valid: a number > 0 and <= 10"}},
    {"scrub-group-by-each.json",
     POLICY,
     1,
     {"scrub-group-by-each.json: $.scrub_profiles[1].ops[0].group_by: \"zones[]\" names every "
      "element of an array"}},
    {"scrub-aggregate-path-each.json",
     POLICY,
     1,
     {"scrub-aggregate-path-each.json: $.scrub_profiles[1].ops[0].path: \"counts[].n\" names every "
      "element of an array"}},
    {"scrub-aggregate-not-alone.json",
     POLICY,
     1,
     {"scrub-aggregate-not-alone.json: $.scrub_profiles[1].ops: has 2 operations; a profile with "
      "an aggregate operation has only that one"}},
    /* the subject of resident-linked rules */
    {"rule-subject-missing.json",
     POLICY,
     1,
     {"rule-subject-missing.json: $.topic_rules[1].subject: missing required field: category "
      "\"energy\" is resident-linked"}},
    {"rule-subject-not-linked.json",
     POLICY,
     1,
     {"rule-subject-not-linked.json: $.topic_rules[0].subject: category \"environment\" is not "
      "resident-linked"}},
    {"rule-subject-invalid.json",
     POLICY,
     1,
     {"rule-subject-invalid.json: $.topic_rules[1].subject: \"resident..id\" is not a valid path: "
      "it has an empty key"}},
    {"rule-subject-each.json",
     POLICY,
     1,
     {"rule-subject-each.json: $.topic_rules[1].subject: \"residents[].id\" names every element of "
      "an array"}},
    /* identities */
    {"prefix-overlap.json",
     VENDORS,
     1,
     {"prefix-overlap.json: $.vendors: ", "device id prefix \"civ\" is a prefix of \"civitas-\""}},
    {"prefix-invalid.json",
     VENDORS,
     1,
     {"prefix-invalid.json: $.vendors[0].device_id_prefix: ",
      "\"civitas/\" is not a valid device id prefix: it contains '/'"}},
    {"operator-vendor-prefix.json",
     OPERATORS,
     1,
     {"operator-vendor-prefix.json: $.operators[0].username: ",
      "\"civitas-admin\" overlaps vendor civitas's device id prefix \"civitas-\""}},
    /* "civitas" would own client ids "civitas-...", which are civitas device ids */
    {"operator-owns-vendor-prefix.json",
     OPERATORS,
     1,
     {"operator-owns-vendor-prefix.json: $.operators[0].username: ",
      "\"civitas\" overlaps vendor civitas's device id prefix \"civitas-\""}},
    {"operator-namespace-overlap.json",
     OPERATORS,
     1,
     {"operator-namespace-overlap.json: $.operators: ",
      "operator \"dash-board\" lies inside operator \"dash\"'s client ids (\"dash-...\")"}},
    {"operator-no-auth.json",
     OPERATORS,
     1,
     {"operator-no-auth.json: $.operators[0]: operator can never log in"}},
    {"operator-bad-hash.json",
     OPERATORS,
     1,
     {"operator-bad-hash.json: $.operators[0].password_hash: not a password hash: ",
      "must start with \"$pbkdf2-sha512$i=\""}},
};

static void TEST_bad_fixtures_report_exact_diagnostic(void)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		char rel[256];
		struct paths ps;
		struct cmq_diag d;
		struct cmq_policy *p = (struct cmq_policy *)&ps; /* must be reset to NULL */
		const struct cmq_diag_entry *e;
		int rc;
		bool ok;

		good_paths(&ps);
		snprintf(rel, sizeof(rel), "policy/bad/%s", bad_cases[i].file);
		copy_path(bad_cases[i].slot == POLICY    ? ps.policy
		          : bad_cases[i].slot == VENDORS ? ps.vendors
		                                         : ps.operators,
		          cmq_test_data(rel));
		rc = load(&ps, &d, &p);
		e = find_all(&d, CMQ_DIAG_ERROR, bad_cases[i].expect, 4);
		ok = rc == CMQ_ERR_CONFIG && p == NULL && e != NULL && d.errors >= 1 &&
		     (bad_cases[i].errors == 0 || d.errors == bad_cases[i].errors);
		if (!ok) {
			fprintf(stderr, "\n  %s: rc=%s errors=%zu, expected \"%s\":\n",
			        bad_cases[i].file, cmq_err_name(rc), d.errors,
			        bad_cases[i].expect[0]);
			dump_diag(&d);
		}
		CU_ASSERT_EQUAL(rc, CMQ_ERR_CONFIG);
		CU_ASSERT_PTR_NULL(p);
		CU_ASSERT_PTR_NOT_NULL(e);
		if (bad_cases[i].errors != 0)
			CU_ASSERT_EQUAL(d.errors, bad_cases[i].errors);
		cmq_policy_free(p == (struct cmq_policy *)&ps ? NULL : p);
		cmq_diag_cleanup(&d);
	}
}

/* Warnings do not fail the load. */
static const struct {
	const char *file;
	enum slot slot;
	const char *expect[4];
} warn_cases[] = {
    {"rule-unknown-key.json",
     POLICY,
     {"rule-unknown-key.json: $.topic_rules[0]: unknown key \"colour\" ignored",
      "known keys: id, raw, class, category, purpose, retention, profile, scrubbed, "
      "max_payload_bytes"}},
    {"operator-weak-hash.json",
     OPERATORS,
     {"operator-weak-hash.json: $.operators[0].password_hash: only 100 PBKDF2 iterations",
      "use at least 1000"}},
};

static void TEST_warnings_do_not_fail_the_load(void)
{
	for (size_t i = 0; i < sizeof(warn_cases) / sizeof(warn_cases[0]); i++) {
		char rel[256];
		struct paths ps;
		struct cmq_diag d;
		struct cmq_policy *p = NULL;
		int rc;

		good_paths(&ps);
		snprintf(rel, sizeof(rel), "policy/bad/%s", warn_cases[i].file);
		copy_path(warn_cases[i].slot == POLICY ? ps.policy : ps.operators,
		          cmq_test_data(rel));
		rc = load(&ps, &d, &p);
		CU_ASSERT_EQUAL(rc, CMQ_OK);
		CU_ASSERT_PTR_NOT_NULL(p);
		CU_ASSERT_EQUAL(d.errors, 0);
		CU_ASSERT_EQUAL(d.warnings, 1);
		CU_ASSERT_PTR_NOT_NULL(find_all(&d, CMQ_DIAG_WARNING, warn_cases[i].expect, 4));
		if (rc != CMQ_OK || d.warnings != 1)
			dump_diag(&d);
		cmq_policy_free(p);
		cmq_diag_cleanup(&d);
	}
}

static void TEST_missing_file_is_a_config_error(void)
{
	struct paths ps;
	struct cmq_diag d;
	struct cmq_policy *p = NULL;
	int rc;

	good_paths(&ps);
	copy_path(ps.vendors, cmq_test_data("policy/bad/does-not-exist.json"));
	rc = load(&ps, &d, &p);
	/* cmq_json_load_file's CMQ_ERR_IO becomes a diagnostic; the load reports CONFIG. */
	CU_ASSERT_EQUAL(rc, CMQ_ERR_CONFIG);
	CU_ASSERT_PTR_NULL(p);
	CU_ASSERT_PTR_NOT_NULL(find1(
	    &d, CMQ_DIAG_ERROR, "does-not-exist.json: cannot open: No such file or directory"));
	cmq_diag_cleanup(&d);

	good_paths(&ps);
	copy_path(ps.policy, cmq_test_data("policy/bad/does-not-exist.json"));
	rc = load(&ps, &d, &p);
	CU_ASSERT_EQUAL(rc, CMQ_ERR_CONFIG);
	CU_ASSERT_PTR_NOT_NULL(find1(&d, CMQ_DIAG_ERROR, "does-not-exist.json: cannot open: "));
	cmq_diag_cleanup(&d);

	/* A directory is not a config file. */
	good_paths(&ps);
	copy_path(ps.operators, cmq_test_tmpdir());
	rc = load(&ps, &d, &p);
	CU_ASSERT_EQUAL(rc, CMQ_ERR_CONFIG);
	CU_ASSERT_PTR_NOT_NULL(find1(&d, CMQ_DIAG_ERROR, ": not a regular file"));
	cmq_diag_cleanup(&d);
}

static void TEST_policy_and_vendors_must_be_named(void)
{
	struct cmq_policy_files f = {"policy.json", NULL, "operators.json", NULL};
	struct cmq_diag d;
	struct cmq_policy *p = (struct cmq_policy *)&f;

	cmq_diag_init(&d);
	CU_ASSERT_EQUAL(cmq_policy_load(&f, &d, &p), CMQ_ERR_CONFIG);
	CU_ASSERT_PTR_NULL(p);
	CU_ASSERT_PTR_NOT_NULL(
	    find1(&d, CMQ_DIAG_ERROR, "the policy and vendors files must both be given"));
	cmq_diag_cleanup(&d);
	f.vendors = "vendors.json";
	f.policy = NULL;
	cmq_diag_init(&d);
	CU_ASSERT_EQUAL(cmq_policy_load(&f, &d, &p), CMQ_ERR_CONFIG);
	CU_ASSERT_PTR_NULL(p);
	cmq_diag_cleanup(&d);
	cmq_diag_init(&d);
	CU_ASSERT_EQUAL(cmq_policy_load(NULL, &d, &p), CMQ_ERR_CONFIG);
	cmq_diag_cleanup(&d);
}

/* The gateway loads policy and vendors only. */
static void TEST_operators_file_is_optional(void)
{
	struct paths ps;
	struct cmq_policy_files f;
	struct cmq_diag d;
	struct cmq_policy *p = NULL;

	good_paths(&ps);
	f.policy = ps.policy;
	f.vendors = ps.vendors;
	f.operators = NULL;
	f.ca_file = NULL;
	cmq_diag_init(&d);
	CU_ASSERT_EQUAL(cmq_policy_load(&f, &d, &p), CMQ_OK);
	CU_ASSERT_EQUAL(d.errors + d.warnings, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(p->n_operators, 0);
	CU_ASSERT_EQUAL(p->n_vendors, 1);
	CU_ASSERT_PTR_NULL(cmq_policy_operator_find(p, "gateway", 7));
	cmq_policy_free(p);
	cmq_diag_cleanup(&d);
}

/* Parameters of the example's profiles are loaded into the ops, paths compiled. */
static void TEST_example_scrub_profiles_and_subject(void)
{
	struct paths ps;
	struct cmq_diag d;
	struct cmq_policy *p = NULL;
	const struct cmq_profile *prof;
	const struct cmq_rule *r;

	example_paths(&ps);
	CU_ASSERT_EQUAL_FATAL(load(&ps, &d, &p), CMQ_OK);
	prof = &p->profiles[0]; /* air-quality */
	CU_ASSERT_STRING_EQUAL(prof->id, "air-quality");
	CU_ASSERT_EQUAL_FATAL(prof->n_ops, 9);
	CU_ASSERT_EQUAL(prof->ops[7].kind, CMQ_SCRUB_COARSEN_TIME);
	CU_ASSERT_EQUAL(prof->ops[7].u.time.seconds, 300);
	CU_ASSERT_EQUAL(prof->ops[8].kind, CMQ_SCRUB_GENERALISE_LOCATION);
	CU_ASSERT_EQUAL(prof->ops[8].u.loc.geohash_precision, 6);
	CU_ASSERT_EQUAL(prof->ops[8].cpath.n, 1);
	prof = &p->profiles[2]; /* footfall */
	CU_ASSERT_EQUAL(prof->ops[0].u.round.step, 5.0);
	CU_ASSERT_EQUAL(prof->ops[3].u.redact.patterns, CMQ_REDACT_MAC);
	prof = &p->profiles[4]; /* anpr */
	CU_ASSERT_EQUAL_FATAL(prof->ops[0].cpath.n, 3);
	CU_ASSERT_STRING_EQUAL(prof->ops[0].cpath.seg[1].key, "licensePlate");
	CU_ASSERT_EQUAL(prof->ops[0].cpath.seg[1].index, CMQ_SEG_KEY);
	prof = &p->profiles[6]; /* crowd-aggregate */
	CU_ASSERT_TRUE(prof->aggregates);
	CU_ASSERT_EQUAL_FATAL(prof->n_ops, 1);
	CU_ASSERT_EQUAL(prof->ops[0].u.agg.window_seconds, 900);
	CU_ASSERT_EQUAL(prof->ops[0].u.agg.k, 10);
	CU_ASSERT_EQUAL(prof->ops[0].u.agg.epsilon, 1.0);
	CU_ASSERT_STRING_EQUAL(prof->ops[0].u.agg.group_by_text, "zone");
	CU_ASSERT_EQUAL(prof->ops[0].u.agg.group_by.n, 1);
	r = &p->rules[5]; /* smart-meter: resident-linked */
	CU_ASSERT_STRING_EQUAL(r->id, "smart-meter");
	CU_ASSERT_PTR_NOT_NULL_FATAL(r->subject);
	CU_ASSERT_STRING_EQUAL(r->subject, "residentId");
	CU_ASSERT_EQUAL_FATAL(r->subject_path.n, 1);
	CU_ASSERT_STRING_EQUAL(r->subject_path.seg[0].key, "residentId");
	for (size_t i = 0; i < p->n_rules; i++) {
		if (i != 5)
			CU_ASSERT_PTR_NULL(p->rules[i].subject);
	}
	cmq_policy_free(p);
	cmq_diag_cleanup(&d);
}

static void TEST_subject_of_resident_linked_rule(void)
{
	struct paths ps;
	struct cmq_diag d;
	struct cmq_policy *p = NULL;

	good_paths(&ps);
	copy_path(ps.policy, cmq_test_data("policy/good/policy-subject.json"));
	CU_ASSERT_EQUAL_FATAL(load(&ps, &d, &p), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(p->n_rules, 2);
	CU_ASSERT_STRING_EQUAL(p->rules[1].subject, "resident.id");
	CU_ASSERT_EQUAL_FATAL(p->rules[1].subject_path.n, 2);
	CU_ASSERT_STRING_EQUAL(p->rules[1].subject_path.seg[0].key, "resident");
	CU_ASSERT_STRING_EQUAL(p->rules[1].subject_path.seg[1].key, "id");
	CU_ASSERT_PTR_NULL(p->rules[0].subject);
	cmq_policy_free(p);
	cmq_diag_cleanup(&d);
}

static void TEST_every_error_in_a_file_is_reported(void)
{
	static const char *const expect[] = {
	    "many-errors.json: $.version: \"t 1\" is not a valid version",
	    "many-errors.json: $.topic_rules[0].class: \"secret\" is not a privacy class",
	    "many-errors.json: $.topic_rules[0].retention: \"30 days\" is not an ISO 8601",
	    "many-errors.json: $.topic_rules[1].scrubbed: \"city/{3}/crowd\": {3} is the device",
	    "many-errors.json: $.roles[0].grants[0].topic: \"$SYS/#\": topics starting with '$'",
	};
	struct paths ps;
	struct cmq_diag d;
	struct cmq_policy *p = NULL;
	const struct cmq_diag_entry *seen[5];

	good_paths(&ps);
	copy_path(ps.policy, cmq_test_data("policy/bad/many-errors.json"));
	CU_ASSERT_EQUAL(load(&ps, &d, &p), CMQ_ERR_CONFIG);
	CU_ASSERT_EQUAL(d.errors, 5);
	for (int i = 0; i < 5; i++) {
		seen[i] = find1(&d, CMQ_DIAG_ERROR, expect[i]);
		CU_ASSERT_PTR_NOT_NULL(seen[i]);
		for (int k = 0; k < i; k++)
			CU_ASSERT_PTR_NOT_EQUAL(seen[i], seen[k]);
	}
	cmq_diag_cleanup(&d);
}

/* ---- the CA bundle ---- */

static X509 *make_cert(const char *cn, bool is_ca, uint8_t fp[32])
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;
	X509_EXTENSION *ext;
	X509V3_CTX ctx;
	unsigned fplen = 0;

	if (key == NULL || x == NULL)
		goto fail;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
	                          is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	if (ext == NULL || X509_add_ext(x, ext, -1) != 1)
		goto fail;
	X509_EXTENSION_free(ext);
	if (X509_sign(x, key, EVP_sha256()) == 0 || X509_digest(x, EVP_sha256(), fp, &fplen) != 1 ||
	    fplen != 32)
		goto fail;
	EVP_PKEY_free(key);
	return x;
fail:
	EVP_PKEY_free(key);
	X509_free(x);
	return NULL;
}

/* Write certs as one PEM bundle into the temp dir; returns its path (static). */
static const char *write_bundle(const char *name, X509 *const *certs, size_t n)
{
	const char *path = cmq_test_write_file(name, "");
	FILE *f = fopen(path, "w");

	CU_ASSERT_FATAL(f != NULL);
	for (size_t i = 0; i < n; i++)
		CU_ASSERT(PEM_write_X509(f, certs[i]) == 1);
	fclose(f);
	return path;
}

/* vendors.json pinning fp for civitas, written at run time. */
static const char *write_vendors(const char *name, const uint8_t fp[32])
{
	char fpbuf[100], text[1024];

	cmq_fingerprint_format(fp, fpbuf, sizeof(fpbuf));
	snprintf(
	    text, sizeof(text),
	    "{\"vendors\": [{\"id\": \"civitas\", \"name\": \"Civitas\", \"tier\": \"trusted\", "
	    "\"device_id_prefix\": \"civitas-\", \"ca_sha256\": [\"%s\"], "
	    "\"categories\": [\"environment\"]}]}\n",
	    fpbuf);
	return cmq_test_write_file(name, text);
}

static void TEST_ca_bundle_resolves_pins(void)
{
	uint8_t fp_ca[32], fp_other[32], fp_leaf[32];
	X509 *ca = make_cert("Civitas Test CA", true, fp_ca);
	X509 *other = make_cert("Other CA", true, fp_other);
	X509 *leaf = make_cert("not-a-ca", false, fp_leaf);
	char fpbuf[100];
	struct paths ps;
	struct cmq_diag d;
	struct cmq_policy *p = NULL;
	X509 *both[2];
	int rc;

	CU_ASSERT_FATAL(ca != NULL && other != NULL && leaf != NULL);
	both[0] = other;
	both[1] = ca;

	/* The pinned CA is in the bundle (after another certificate): resolved, no warning. */
	good_paths(&ps);
	copy_path(ps.vendors, write_vendors("ca-vendors.json", fp_ca));
	copy_path(ps.ca_file, write_bundle("bundle-ok.pem", both, 2));
	rc = load(&ps, &d, &p);
	CU_ASSERT_EQUAL(rc, CMQ_OK);
	CU_ASSERT_EQUAL(d.errors + d.warnings, 0);
	if (d.n != 0)
		dump_diag(&d);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(p->n_cas, 1);
	CU_ASSERT_EQUAL(memcmp(p->cas[0].sha256, fp_ca, 32), 0);
	CU_ASSERT_EQUAL(p->cas[0].owner, CMQ_CA_VENDOR);
	CU_ASSERT_EQUAL(p->cas[0].vendor, 0);
	CU_ASSERT_PTR_NOT_NULL(p->cas[0].cert);
	if (p->cas[0].cert != NULL)
		CU_ASSERT_EQUAL(X509_cmp(p->cas[0].cert, ca), 0);
	cmq_policy_free(p);
	cmq_diag_cleanup(&d);

	/* A bundle without it: the load succeeds with a warning naming vendor and fingerprint. */
	copy_path(ps.ca_file, write_bundle("bundle-other.pem", &other, 1));
	rc = load(&ps, &d, &p);
	CU_ASSERT_EQUAL(rc, CMQ_OK);
	CU_ASSERT_EQUAL(d.errors, 0);
	CU_ASSERT_EQUAL(d.warnings, 1);
	cmq_fingerprint_format(fp_ca, fpbuf, sizeof(fpbuf));
	{
		const char *needles[] = {"bundle-other.pem: vendor civitas pins CA ", fpbuf,
		                         "which is not in this bundle"};

		CU_ASSERT_PTR_NOT_NULL(find_all(&d, CMQ_DIAG_WARNING, needles, 3));
	}
	if (p != NULL)
		CU_ASSERT_PTR_NULL(p->cas[0].cert);
	cmq_policy_free(p);
	cmq_diag_cleanup(&d);

	/* A pinned certificate that is no CA: loaded, with a warning. */
	copy_path(ps.vendors, write_vendors("ca-vendors.json", fp_leaf));
	copy_path(ps.ca_file, write_bundle("bundle-leaf.pem", &leaf, 1));
	rc = load(&ps, &d, &p);
	CU_ASSERT_EQUAL(rc, CMQ_OK);
	CU_ASSERT_EQUAL(d.warnings, 1);
	cmq_fingerprint_format(fp_leaf, fpbuf, sizeof(fpbuf));
	{
		const char *needles[] = {"bundle-leaf.pem: pinned certificate ", fpbuf,
		                         "is not a CA certificate"};

		CU_ASSERT_PTR_NOT_NULL(find_all(&d, CMQ_DIAG_WARNING, needles, 3));
	}
	cmq_policy_free(p);
	cmq_diag_cleanup(&d);

	/* Operator CA pins are resolved against the same bundle. */
	{
		char text[512];

		cmq_fingerprint_format(fp_other, fpbuf, sizeof(fpbuf));
		snprintf(text, sizeof(text),
		         "{\"operator_ca_sha256\": [\"%s\"], \"operators\": [{\"username\": "
		         "\"gateway\", \"role\": \"gateway\", \"certificate\": true}]}\n",
		         fpbuf);
		copy_path(ps.operators, cmq_test_write_file("ca-operators.json", text));
		copy_path(ps.vendors, write_vendors("ca-vendors.json", fp_ca));
		copy_path(ps.ca_file, write_bundle("bundle-ca.pem", &ca, 1));
		rc = load(&ps, &d, &p);
		CU_ASSERT_EQUAL(rc, CMQ_OK);
		CU_ASSERT_EQUAL(d.warnings, 1);
		{
			const char *needles[] = {"bundle-ca.pem: operator CA ", fpbuf,
			                         "is pinned but not in this bundle"};

			CU_ASSERT_PTR_NOT_NULL(find_all(&d, CMQ_DIAG_WARNING, needles, 3));
		}
		cmq_policy_free(p);
		cmq_diag_cleanup(&d);
		copy_path(ps.ca_file, write_bundle("bundle-ok.pem", both, 2));
		rc = load(&ps, &d, &p);
		CU_ASSERT_EQUAL(rc, CMQ_OK);
		CU_ASSERT_EQUAL(d.warnings, 0);
		if (p != NULL && p->n_cas == 2) {
			CU_ASSERT_EQUAL(p->cas[1].owner, CMQ_CA_OPERATOR);
			CU_ASSERT_PTR_NOT_NULL(p->cas[1].cert);
		}
		cmq_policy_free(p);
		cmq_diag_cleanup(&d);
	}
	X509_free(ca);
	X509_free(other);
	X509_free(leaf);
}

static void TEST_ca_bundle_errors(void)
{
	uint8_t fp[32];
	X509 *ca = make_cert("Civitas Test CA", true, fp);
	char stamp_with[CMQ_STAMP_MAX], stamp_without[CMQ_STAMP_MAX];
	struct paths ps;
	struct cmq_diag d;
	struct cmq_policy *p = NULL;
	int rc;

	CU_ASSERT_FATAL(ca != NULL);
	good_paths(&ps);
	copy_path(ps.vendors, write_vendors("ca-vendors.json", fp));

	snprintf(ps.ca_file, sizeof(ps.ca_file), "%s/no-such-bundle.pem", cmq_test_tmpdir());
	rc = load(&ps, &d, &p);
	CU_ASSERT_EQUAL(rc, CMQ_ERR_CONFIG);
	CU_ASSERT_PTR_NULL(p);
	CU_ASSERT_PTR_NOT_NULL(find1(&d, CMQ_DIAG_ERROR,
	                             "no-such-bundle.pem: cannot open the CA bundle (plugin option "
	                             "ca_file)"));
	cmq_diag_cleanup(&d);

	copy_path(ps.ca_file, cmq_test_write_file("garbage.pem", "this is not PEM\n"));
	rc = load(&ps, &d, &p);
	CU_ASSERT_EQUAL(rc, CMQ_ERR_CONFIG);
	CU_ASSERT_PTR_NULL(p);
	CU_ASSERT_PTR_NOT_NULL(find1(&d, CMQ_DIAG_ERROR, "garbage.pem: holds no PEM certificate"));
	cmq_diag_cleanup(&d);

	/* A good certificate followed by a corrupted one. */
	{
		const char *path = write_bundle("corrupt.pem", &ca, 1);
		FILE *f = fopen(path, "a");

		CU_ASSERT_FATAL(f != NULL);
		fputs("-----BEGIN CERTIFICATE-----\nMIIB!!!!notbase64\n-----END CERTIFICATE-----\n",
		      f);
		fclose(f);
		copy_path(ps.ca_file, path);
	}
	rc = load(&ps, &d, &p);
	CU_ASSERT_EQUAL(rc, CMQ_ERR_CONFIG);
	CU_ASSERT_PTR_NOT_NULL(
	    find1(&d, CMQ_DIAG_ERROR, "corrupt.pem: malformed PEM after 1 certificate(s)"));
	cmq_diag_cleanup(&d);

	/* The bundle's contents are not part of the stamp: the pins that matter are in
	 * vendors.json, and the gateway loads no bundle but must name the same policy. */
	copy_path(ps.ca_file, write_bundle("stamp.pem", &ca, 1));
	CU_ASSERT_EQUAL_FATAL(load(&ps, &d, &p), CMQ_OK);
	snprintf(stamp_with, sizeof(stamp_with), "%s", p->stamp);
	cmq_policy_free(p);
	cmq_diag_cleanup(&d);
	ps.ca_file[0] = '\0';
	CU_ASSERT_EQUAL_FATAL(load(&ps, &d, &p), CMQ_OK);
	snprintf(stamp_without, sizeof(stamp_without), "%s", p->stamp);
	cmq_policy_free(p);
	cmq_diag_cleanup(&d);
	CU_ASSERT_STRING_EQUAL(stamp_with, stamp_without);
	X509_free(ca);
}

/* ---- lookups ---- */

static void TEST_lookups(void)
{
	static const struct {
		const char *device;
		const char *vendor; /* NULL = no vendor */
	} devices[] = {
	    {"civitas-air-001", "civitas"},
	    {"civitas-x", "civitas"},
	    {"nimbus-7", "nimbus"},
	    {"hawkeye-cam-2", "hawkeye"},
	    {"civitas-", NULL}, /* the prefix alone names no device */
	    {"civitas", NULL},
	    {"rogue-1", NULL},
	    {"CIVITAS-air-001", NULL},
	    {"", NULL},
	    {"gateway", NULL},
	};
	struct paths ps;
	struct cmq_diag d;
	struct cmq_policy *p = NULL;
	const struct cmq_operator *op;
	const struct cmq_role *r;
	const struct cmq_vendor *v;

	example_paths(&ps);
	CU_ASSERT_EQUAL_FATAL(load(&ps, &d, &p), CMQ_OK);
	for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++) {
		v = cmq_policy_vendor_for_device(p, devices[i].device, strlen(devices[i].device));
		if (devices[i].vendor == NULL) {
			CU_ASSERT_PTR_NULL(v);
		} else {
			CU_ASSERT_PTR_NOT_NULL(v);
			if (v != NULL)
				CU_ASSERT_STRING_EQUAL(v->id, devices[i].vendor);
		}
	}
	/* The length bounds the id: "civitas-a" cut to 8 bytes is the bare prefix. */
	CU_ASSERT_PTR_NULL(cmq_policy_vendor_for_device(p, "civitas-a", 8));
	CU_ASSERT_PTR_NOT_NULL(cmq_policy_vendor_for_device(p, "civitas-a", 9));

	v = cmq_policy_vendor_find(p, "nimbus");
	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	CU_ASSERT_STRING_EQUAL(v->prefix, "nimbus-");
	CU_ASSERT_EQUAL(v->prefix_len, 7);
	CU_ASSERT_PTR_NULL(cmq_policy_vendor_find(p, "Nimbus"));
	CU_ASSERT_PTR_NULL(cmq_policy_vendor_find(p, NULL));

	op = cmq_policy_operator_find(p, "gateway", 7);
	CU_ASSERT_PTR_NOT_NULL_FATAL(op);
	CU_ASSERT_STRING_EQUAL(op->username, "gateway");
	CU_ASSERT_EQUAL(op->role, CMQ_ROLE_GATEWAY);
	CU_ASSERT_TRUE(op->password_auth);
	CU_ASSERT_TRUE(op->cert_auth);
	op = cmq_policy_operator_find(p, "admin", 5);
	CU_ASSERT_PTR_NOT_NULL_FATAL(op);
	CU_ASSERT_FALSE(op->password_auth);
	CU_ASSERT_TRUE(op->cert_auth);
	op = cmq_policy_operator_find(p, "traffic-centre", 14);
	CU_ASSERT_PTR_NOT_NULL_FATAL(op);
	CU_ASSERT_STRING_EQUAL(p->roles[op->role].id, "traffic-control");
	CU_ASSERT_PTR_NOT_NULL(cmq_policy_operator_find(p, "gatewayX", 7)); /* length-bounded */
	CU_ASSERT_PTR_NULL(cmq_policy_operator_find(p, "gatewayX", 8));
	CU_ASSERT_PTR_NULL(cmq_policy_operator_find(p, "Gateway", 7));
	CU_ASSERT_PTR_NULL(cmq_policy_operator_find(p, "civitas-air-001", 15));

	r = cmq_policy_role_find(p, "enforcement");
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_EQUAL(r->kind, CMQ_ROLE_CUSTOM);
	CU_ASSERT_PTR_NOT_NULL(r->allow[CMQ_OP_SUBSCRIBE]);
	CU_ASSERT_PTR_NOT_NULL(r->allow[CMQ_OP_READ]); /* subscribe implies read */
	CU_ASSERT_PTR_NULL(r->allow[CMQ_OP_PUBLISH]);
	r = cmq_policy_role_find(p, "maintenance");
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_PTR_NOT_NULL(r->deny[CMQ_OP_PUBLISH]);
	CU_ASSERT_PTR_EQUAL(cmq_policy_role_find(p, "sensor"), &p->roles[CMQ_ROLE_SENSOR]);
	CU_ASSERT_PTR_NULL(cmq_policy_role_find(p, "root"));
	cmq_policy_free(p);
	cmq_diag_cleanup(&d);
}

static void TEST_revoked_serials_are_normalised(void)
{
	static const struct {
		const char *serial;
		bool revoked;
	} cases[] = {
	    {"A1B", true},   {"FF", true}, {"1", true},  {"DEADBEEF", true},
	    {"0A1B", false}, /* lookups take normalised serials */
	    {"a1b", false},  {"B", false}, {"0", false}, {"", false},
	};
	struct paths ps;
	struct cmq_diag d;
	struct cmq_policy *p = NULL;
	const struct cmq_vendor *v;

	good_paths(&ps);
	copy_path(ps.vendors, cmq_test_data("policy/good/vendors-revoked.json"));
	CU_ASSERT_EQUAL_FATAL(load(&ps, &d, &p), CMQ_OK);
	v = cmq_policy_vendor_find(p, "civitas");
	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	/* "0a:1B", "A1B", "00:ff", "1", "de:ad:be:ef": sorted, normalised, duplicates kept. */
	CU_ASSERT_EQUAL_FATAL(v->n_revoked, 5);
	CU_ASSERT_STRING_EQUAL(v->revoked[0], "1");
	CU_ASSERT_STRING_EQUAL(v->revoked[1], "A1B");
	CU_ASSERT_STRING_EQUAL(v->revoked[2], "A1B");
	CU_ASSERT_STRING_EQUAL(v->revoked[3], "DEADBEEF");
	CU_ASSERT_STRING_EQUAL(v->revoked[4], "FF");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CU_ASSERT_EQUAL(cmq_vendor_is_revoked(v, cases[i].serial), cases[i].revoked);
	/* A vendor without the field revokes nothing. */
	CU_ASSERT_FALSE(cmq_vendor_is_revoked(cmq_policy_vendor_find(p, "nimbus"), "A1B"));
	cmq_policy_free(p);
	cmq_diag_cleanup(&d);
}

static void TEST_serial_normalise(void)
{
	static const char max_serial[] =
	    "123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0";
	static const struct {
		const char *in;
		const char *out; /* NULL = rejected */
	} cases[] = {
	    {"0a:1B", "A1B"},
	    {"A1B", "A1B"},
	    {"00:00:0a:1b", "A1B"},
	    {"0", "0"},
	    {"00:00", "0"},
	    {"deadbeef", "DEADBEEF"},
	    {"10", "10"},
	    {max_serial, max_serial},
	    {"0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0", max_serial},
	    {"1123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0", NULL},
	    {"", NULL},
	    {"0x1F", NULL},
	    {"12 34", NULL},
	    {"-1", NULL},
	    {"g", NULL},
	};
	char out[CMQ_SERIAL_HEX_MAX + 1];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool ok = cmq_serial_normalise(cases[i].in, out);

		CU_ASSERT_EQUAL(ok, cases[i].out != NULL);
		if (ok && cases[i].out != NULL)
			CU_ASSERT_STRING_EQUAL(out, cases[i].out);
		if (ok != (cases[i].out != NULL))
			fprintf(stderr, "\n  serial \"%s\": got %d\n", cases[i].in, ok);
	}
}

static void TEST_fingerprint_parse_and_format(void)
{
	static const char plain[] =
	    "3A1F5C0B9E2247D86A11C38EF0527B940DE631A85F72C904B71E68AF23D0954C";
	static const char colons[] =
	    "3A:1F:5C:0B:9E:22:47:D8:6A:11:C3:8E:F0:52:7B:94:0D:E6:31:A8:5F:72:"
	    "C9:04:B7:1E:68:AF:23:D0:95:4C";
	static const struct {
		const char *in;
		bool ok;
	} cases[] = {
	    {plain, true},
	    {colons, true},
	    {"3a1f5c0b9e2247d86a11c38ef0527b940de631a85f72c904b71e68af23d0954c", true},
	    {"3a:1f:5c:0b:9e:22:47:d8:6a:11:c3:8e:f0:52:7b:94:0d:e6:31:a8:5f:72:c9:04:b7:1e:68:af:"
	     "23:d0:95:4c",
	     true},
	    {"", false},
	    {"3A1F5C0B9E2247D86A11C38EF0527B940DE631A85F72C904B71E68AF23D0954", false},
	    {"3A1F5C0B9E2247D86A11C38EF0527B940DE631A85F72C904B71E68AF23D0954C0", false},
	    {"3A1F5C0B9E2247D86A11C38EF0527B940DE631A85F72C904B71E68AF23D0954G", false},
	    {"3A-1F-5C-0B-9E-22-47-D8-6A-11-C3-8E-F0-52-7B-94-0D-E6-31-A8-5F-72-C9-04-B7-1E-68-AF-"
	     "23-D0-95-4C",
	     false},
	    {"3A1:F5:C0:B9:E2:24:7D:86:A1:1C:38:EF:05:27:B9:40:DE:63:1A:85:F7:2C:90:4B:71:E6:8A:F2:"
	     "3D:09:54:C",
	     false},
	    {"3A:1F:5C:0B:9E:22:47:D8:6A:11:C3:8E:F0:52:7B:94:0D:E6:31:A8:5F:72:C9:04:B7:1E:68:AF:"
	     "23:D0:95:4C:",
	     false},
	    {" 3A1F5C0B9E2247D86A11C38EF0527B940DE631A85F72C904B71E68AF23D0954C", false},
	};
	uint8_t fp[32], again[32];
	char buf[96], small[95];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CU_ASSERT_EQUAL(cmq_fingerprint_parse(cases[i].in, fp), cases[i].ok);
		if (cmq_fingerprint_parse(cases[i].in, fp) != cases[i].ok)
			fprintf(stderr, "\n  fingerprint case %zu\n", i);
	}
	CU_ASSERT_TRUE_FATAL(cmq_fingerprint_parse(plain, fp));
	CU_ASSERT_EQUAL(fp[0], 0x3a);
	CU_ASSERT_EQUAL(fp[31], 0x4c);
	cmq_fingerprint_format(fp, buf, sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, colons);
	CU_ASSERT_TRUE(cmq_fingerprint_parse(buf, again));
	CU_ASSERT_EQUAL(memcmp(fp, again, 32), 0);
	memset(small, 'x', sizeof(small));
	cmq_fingerprint_format(fp, small, sizeof(small));
	CU_ASSERT_STRING_EQUAL(small, ""); /* too small: empty, not truncated */
}

static void TEST_names(void)
{
	CU_ASSERT_STRING_EQUAL(cmq_class_name(CMQ_CLASS_SENSITIVE), "sensitive");
	CU_ASSERT_STRING_EQUAL(cmq_class_name(CMQ_CLASS__COUNT), "?");
	CU_ASSERT_STRING_EQUAL(cmq_tier_name(CMQ_TIER_RESTRICTED), "restricted");
	CU_ASSERT_STRING_EQUAL(cmq_tier_name(CMQ_TIER__COUNT), "?");
	CU_ASSERT_STRING_EQUAL(cmq_op_name(CMQ_OP_READ), "read");
	CU_ASSERT_STRING_EQUAL(cmq_op_name(CMQ_OP__COUNT), "?");
	CU_ASSERT_STRING_EQUAL(cmq_scrub_kind_name(CMQ_SCRUB_GENERALISE_LOCATION),
	                       "generalise_location");
	CU_ASSERT_STRING_EQUAL(cmq_scrub_kind_name(CMQ_SCRUB__COUNT), "?");
	cmq_policy_free(NULL);
}

/* ---- out of memory ---- */

/*
 * Fail allocation n for n = 0, 1, ... until the load succeeds. Each failing
 * load must return expect_fail (or CONFIG when allow_config) with *out NULL
 * and free everything it allocated; the last one must return expect_final.
 */
static void oom_sweep(const struct paths *ps, int expect_final, bool allow_config, long min_steps)
{
	long before = cmq_test_live_allocations();
	long n, leaks = 0, bad_rc = 0;
	bool done = false;

	for (n = 0; n < 20000 && !done; n++) {
		struct cmq_diag d;
		struct cmq_policy *p = NULL;
		int rc;
		bool fired;

		cmq_diag_init(&d);
		cmq_test_fail_after(n);
		rc = load(ps, &d, &p);
		fired = cmq_test_failure_fired();
		cmq_test_fail_after(-1);
		if (!fired) {
			done = true;
			CU_ASSERT_EQUAL(rc, expect_final);
		} else if (!(rc == CMQ_ERR_NOMEM || (allow_config && rc == CMQ_ERR_CONFIG)) ||
		           p != NULL) {
			if (bad_rc++ < 5)
				fprintf(stderr, "\n  oom at allocation %ld: rc=%s\n", n,
				        cmq_err_name(rc));
		}
		cmq_policy_free(p);
		cmq_diag_cleanup(&d);
		if (cmq_test_live_allocations() != before) {
			if (leaks++ < 5)
				fprintf(stderr,
				        "\n  oom at allocation %ld (%s): %ld block(s) leaked\n", n,
				        fired ? "failed" : "final",
				        cmq_test_live_allocations() - before);
			before = cmq_test_live_allocations();
		}
	}
	CU_ASSERT_TRUE(done);
	if (n < min_steps)
		fprintf(stderr, "\n  oom sweep ended after %ld allocation(s)\n", n);
	CU_ASSERT_TRUE(n >= min_steps); /* the sweep really exercised the loader */
	CU_ASSERT_EQUAL(bad_rc, 0);
	CU_ASSERT_EQUAL(leaks, 0);
}

static void TEST_oom_sweep_example_config(void)
{
	struct paths ps;

	example_paths(&ps);
	oom_sweep(&ps, CMQ_OK, false, 200);
}

/* The error paths (dropped rules, vendors, operators) must free what they allocated too. */
static void TEST_oom_sweep_bad_config(void)
{
	struct paths ps;

	good_paths(&ps);
	copy_path(ps.policy, cmq_test_data("policy/bad/many-errors.json"));
	copy_path(ps.vendors, cmq_test_data("policy/bad/revoked-serial-invalid.json"));
	copy_path(ps.operators, cmq_test_data("policy/bad/operator-vendor-prefix.json"));
	/* A failed diagnostic allocation still counts the error: CONFIG is a clean outcome. */
	oom_sweep(&ps, CMQ_ERR_CONFIG, true, 60);
}

int main(void)
{
	static const struct cmq_test_case cases[] = {
	    {"example_config_loads", TEST_example_config_loads},
	    {"stamp_follows_content", TEST_stamp_follows_content},
	    {"bad_fixtures_report_exact_diagnostic", TEST_bad_fixtures_report_exact_diagnostic},
	    {"warnings_do_not_fail_the_load", TEST_warnings_do_not_fail_the_load},
	    {"missing_file_is_a_config_error", TEST_missing_file_is_a_config_error},
	    {"policy_and_vendors_must_be_named", TEST_policy_and_vendors_must_be_named},
	    {"operators_file_is_optional", TEST_operators_file_is_optional},
	    {"example_scrub_profiles_and_subject", TEST_example_scrub_profiles_and_subject},
	    {"subject_of_resident_linked_rule", TEST_subject_of_resident_linked_rule},
	    {"every_error_in_a_file_is_reported", TEST_every_error_in_a_file_is_reported},
	    {"ca_bundle_resolves_pins", TEST_ca_bundle_resolves_pins},
	    {"ca_bundle_errors", TEST_ca_bundle_errors},
	    {"lookups", TEST_lookups},
	    {"revoked_serials_are_normalised", TEST_revoked_serials_are_normalised},
	    {"serial_normalise", TEST_serial_normalise},
	    {"fingerprint_parse_and_format", TEST_fingerprint_parse_and_format},
	    {"names", TEST_names},
	    {"oom_sweep_example_config", TEST_oom_sweep_example_config},
	    {"oom_sweep_bad_config", TEST_oom_sweep_bad_config},
	    {NULL, NULL},
	};

	return cmq_test_run("policy", cases);
}
