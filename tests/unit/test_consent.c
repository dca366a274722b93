/*
 * test_consent.c - core/consent: the example config against the example policy, an
 * allows/denies table, categories checked against a policy (and not without one), every
 * problem of a bad file reported at its JSON path, malformed files, the empty table,
 * resident id syntax, and an out-of-memory sweep.
 *
 * Files: tests/unit/data/consent/ (fixtures, and policy.json with the example policy's
 * categories: environment, mobility, energy (resident_linked), safety); config/consent.json
 * is checked against config/policy.json, the example it goes with.
 */
#include "cmq_test.h"

#include "consent.h"
#include "error.h"
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *src_file(const char *name)
{
	static char buf[4096];
	const char *src = getenv("CMQ_SRC");

	snprintf(buf, sizeof(buf), "%s/%s", src ? src : ".", name);
	return buf;
}

static struct cmq_policy *load_policy(const char *policy, const char *vendors,
                                      const char *operators)
{
	static char pol[4096], ven[4096], ops[4096];
	struct cmq_policy_files f;

	snprintf(pol, sizeof(pol), "%s", policy);
	snprintf(ven, sizeof(ven), "%s", vendors);
	snprintf(ops, sizeof(ops), "%s", operators);
	f.policy = pol;
	f.vendors = ven;
	f.operators = ops;
	f.ca_file = NULL;
	return cmq_test_load_clean(&f, false);
}

/*
 * tests/unit/data/consent/policy.json: the example policy's categories (environment,
 * mobility, energy (resident_linked), safety) without the rest, so these tests do not
 * break whenever the example policy is edited.
 */
static struct cmq_policy *test_policy(void)
{
	char pol[4096], ven[4096];

	snprintf(pol, sizeof(pol), "%s", cmq_test_data("consent/policy.json"));
	snprintf(ven, sizeof(ven), "%s", cmq_test_data("policy/good/vendors.json"));
	return load_policy(pol, ven, cmq_test_data("policy/good/operators.json"));
}

/* config/policy.json, the example policy that config/consent.json goes with. */
static struct cmq_policy *example_policy(void)
{
	char pol[4096], ven[4096];

	snprintf(pol, sizeof(pol), "%s", src_file("config/policy.json"));
	snprintf(ven, sizeof(ven), "%s", src_file("config/vendors.json"));
	return load_policy(pol, ven, src_file("config/operators.json"));
}

static void print_diag(const char *what, const struct cmq_diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(stderr, "\n  %s: %s", what, d->entries[i].text);
}

/* Load a fixture that must load; asserts no errors and the given number of warnings. */
static struct cmq_consent *load_ok(const char *path, const struct cmq_policy *p, size_t warnings)
{
	struct cmq_consent *c = NULL;
	struct cmq_diag diag;
	int rc;

	cmq_diag_init(&diag);
	rc = cmq_consent_load(path, p, &diag, &c);
	if (rc != CMQ_OK || diag.errors != 0 || diag.warnings != warnings)
		print_diag(path, &diag);
	CU_ASSERT_EQUAL(rc, CMQ_OK);
	CU_ASSERT_EQUAL(diag.errors, 0);
	CU_ASSERT_EQUAL(diag.warnings, warnings);
	cmq_diag_cleanup(&diag);
	return c;
}

static bool allows(const struct cmq_consent *c, const char *subject, const char *category)
{
	return cmq_consent_allows(c, subject, strlen(subject), category);
}

/* config/consent.json as documented: 0001 and 0003 opted in to energy, 0002 to nothing. */
static void TEST_example_config(void)
{
	struct cmq_policy *p = example_policy();
	long before = cmq_test_live_allocations(); /* the policy's own blocks are not ours */
	struct cmq_consent *c;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	c = load_ok(src_file("config/consent.json"), p, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(cmq_consent_count(c), 3);
	CU_ASSERT_TRUE(allows(c, "resident-0001", "energy"));
	CU_ASSERT_TRUE(allows(c, "resident-0003", "energy"));
	CU_ASSERT_FALSE(allows(c, "resident-0002", "energy"));
	CU_ASSERT_FALSE(allows(c, "resident-0004", "energy"));
	for (size_t i = 0; i < p->n_categories; i++) {
		if (strcmp(p->categories[i].id, "energy") != 0)
			CU_ASSERT_FALSE(allows(c, "resident-0001", p->categories[i].id));
	}
	cmq_consent_free(c);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
	cmq_policy_free(p);
}

static const struct allow_row {
	const char *subject;
	size_t len; /* 0: strlen(subject) */
	const char *category;
	bool expect;
} allow_rows[] = {
    {"resident-0001", 0, "energy", true},
    {"resident-0003", 0, "energy", true},
    {"flat-12.b:unit_3@north-side", 0, "energy", true},
    {"R", 0, "energy", true},
    /* Listed without categories: no. */
    {"resident-0002", 0, "energy", false},
    /* Categories nobody opted in to, or that do not exist. */
    {"resident-0001", 0, "mobility", false},
    {"resident-0001", 0, "environment", false},
    {"resident-0001", 0, "Energy", false},
    {"resident-0001", 0, "energ", false},
    {"resident-0001", 0, "", false},
    /* Not listed, or almost the name of someone listed. */
    {"resident-0004", 0, "energy", false},
    {"resident-000", 0, "energy", false},
    {"resident-00011", 0, "energy", false},
    {"RESIDENT-0001", 0, "energy", false},
    {"r", 0, "energy", false},
    /* Length, not NUL, delimits the subject. */
    {"resident-0001x", 13, "energy", true},
    {"resident-0001", 12, "energy", false},
    {"resident-0001\0", 14, "energy", false},
    {"", 0, "energy", false},
    {"a-subject-id-longer-than-sixty-four-bytes-is-never-anyone-0123456789", 0, "energy", false},
};

static void TEST_allows_and_denies(void)
{
	struct cmq_policy *p = test_policy();
	struct cmq_consent *c;
	long live;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	c = load_ok(cmq_test_data("consent/good.json"), p, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(cmq_consent_count(c), 5);
	live = cmq_test_live_allocations();
	for (size_t i = 0; i < sizeof(allow_rows) / sizeof(allow_rows[0]); i++) {
		const struct allow_row *r = &allow_rows[i];
		size_t len = r->len ? r->len : strlen(r->subject);
		bool got = cmq_consent_allows(c, r->subject, len, r->category);

		if (got != r->expect)
			fprintf(stderr, "\n  row %zu: %.*s / %s: got %d\n", i, (int)len, r->subject,
			        r->category, got);
		CU_ASSERT_EQUAL(got, r->expect);
	}
	/* Lookups allocate nothing; NULLs are a "no", not a crash. */
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), live);
	CU_ASSERT_FALSE(cmq_consent_allows(NULL, "resident-0001", 13, "energy"));
	CU_ASSERT_FALSE(cmq_consent_allows(c, NULL, 13, "energy"));
	CU_ASSERT_FALSE(cmq_consent_allows(c, "resident-0001", 13, NULL));
	CU_ASSERT_EQUAL(cmq_consent_count(NULL), 0);
	cmq_consent_free(c);
	cmq_policy_free(p);
}

/* The table outlives the policy it was checked against. */
static void TEST_table_does_not_borrow_the_policy(void)
{
	struct cmq_policy *p = test_policy();
	struct cmq_consent *c;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	c = load_ok(cmq_test_data("consent/good.json"), p, 0);
	cmq_policy_free(p);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_TRUE(allows(c, "resident-0001", "energy"));
	CU_ASSERT_FALSE(allows(c, "resident-0002", "energy"));
	cmq_consent_free(c);
}

/* Each problem of many-errors.json, at its path; the load fails as a whole. */
static const char *const many_errors[] = {
    "many-errors.json: $.residents[1].id: \"resident 0002\" is not a resident id; use 1 to 64 "
    "letters, digits, '_', '.', ':', '@' or '-'",
    "many-errors.json: $.residents[2].id: duplicate resident \"resident-0001\" (also "
    "$.residents[0])",
    "many-errors.json: $.residents[3].categories[0]: unknown data category \"enrgy\"; "
    "policy.json defines: environment, mobility, energy, safety",
    "many-errors.json: $.residents[4].categories[0]: expected a string, got number 7",
    "many-errors.json: $.residents[5].categories: missing required field",
    "many-errors.json: $.residents[6].updated: \"yesterday\" is not a UTC time; expected e.g. "
    "\"2026-11-01T09:00:00Z\"",
    "many-errors.json: $.residents[8]: expected an object, got string \"resident-0009\"",
    "many-errors.json: $.residents[9].categories[0]: \"Energy!\" is not a category id",
    "many-errors.json: $.residents[10].id: missing required field",
    "many-errors.json: $.residents[11].categories: expected an array",
    "many-errors.json: $.residents[12].id: \"resident-0013-this-id-is-far-too-long-to-be-a-"
    "resident-id-0123456789\" is not a resident id",
};

static const char *const many_warnings[] = {
    "many-errors.json: $.residents[7]: unknown key \"consent\"",
    "many-errors.json: $: unknown key \"comment\"",
};

static void expect_lines(const struct cmq_diag *d, const char *const *lines, size_t n,
                         enum cmq_diag_level level)
{
	for (size_t i = 0; i < n; i++) {
		const struct cmq_diag_entry *e = cmq_diag_find(d, lines[i]);

		if (e == NULL || e->level != level) {
			fprintf(stderr, "\n  missing: %s", lines[i]);
			print_diag("have", d);
			CU_FAIL("diagnostic");
		}
	}
}

static void TEST_every_problem_reported(void)
{
	struct cmq_policy *p = test_policy();
	long before = cmq_test_live_allocations();
	struct cmq_consent *c = (struct cmq_consent *)1;
	struct cmq_diag diag;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	cmq_diag_init(&diag);
	CU_ASSERT_EQUAL(cmq_consent_load(cmq_test_data("consent/many-errors.json"), p, &diag, &c),
	                CMQ_ERR_CONFIG);
	CU_ASSERT_PTR_NULL(c);
	expect_lines(&diag, many_errors, sizeof(many_errors) / sizeof(many_errors[0]),
	             CMQ_DIAG_ERROR);
	expect_lines(&diag, many_warnings, sizeof(many_warnings) / sizeof(many_warnings[0]),
	             CMQ_DIAG_WARNING);
	CU_ASSERT_EQUAL(diag.errors, sizeof(many_errors) / sizeof(many_errors[0]));
	CU_ASSERT_EQUAL(diag.warnings, sizeof(many_warnings) / sizeof(many_warnings[0]));
	cmq_diag_cleanup(&diag);

	/* Without a policy the misspelt category is only a category nobody else uses. */
	cmq_diag_init(&diag);
	CU_ASSERT_EQUAL(
	    cmq_consent_load(cmq_test_data("consent/many-errors.json"), NULL, &diag, &c),
	    CMQ_ERR_CONFIG);
	CU_ASSERT_PTR_NULL(cmq_diag_find(&diag, "enrgy"));
	CU_ASSERT_EQUAL(diag.errors, sizeof(many_errors) / sizeof(many_errors[0]) - 1);
	cmq_diag_cleanup(&diag);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
	cmq_policy_free(p);
}

/* Consent to a category the policy does not gate: kept, warned about once. */
static void TEST_category_not_resident_linked_warns_once(void)
{
	struct cmq_policy *p = test_policy();
	struct cmq_consent *c = NULL;
	struct cmq_diag diag;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	cmq_diag_init(&diag);
	CU_ASSERT_EQUAL(cmq_consent_load(cmq_test_data("consent/unlinked.json"), p, &diag, &c),
	                CMQ_OK);
	CU_ASSERT_EQUAL(diag.errors, 0);
	CU_ASSERT_EQUAL(diag.warnings, 2); /* "mobility" once, "energy" listed twice */
	CU_ASSERT_PTR_NOT_NULL(
	    cmq_diag_find(&diag, "unlinked.json: $.residents[0].categories[1]: category "
	                         "\"mobility\" is not resident_linked in policy.json"));
	CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(
	    &diag,
	    "unlinked.json: $.residents[1].categories[2]: category \"energy\" is listed twice"));
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_TRUE(allows(c, "resident-0001", "mobility"));
	CU_ASSERT_TRUE(allows(c, "resident-0002", "energy"));
	CU_ASSERT_TRUE(allows(c, "resident-0002", "mobility"));
	CU_ASSERT_FALSE(allows(c, "resident-0001", "safety"));
	cmq_consent_free(c);
	cmq_diag_cleanup(&diag);
	cmq_policy_free(p);
}

static void TEST_without_policy_any_category_id(void)
{
	struct cmq_consent *c = load_ok(cmq_test_data("consent/no-policy.json"), NULL, 0);

	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_TRUE(allows(c, "resident-0001", "water"));
	CU_ASSERT_TRUE(allows(c, "resident-0001", "energy"));
	CU_ASSERT_FALSE(allows(c, "resident-0001", "heat"));
	CU_ASSERT_TRUE(allows(c, "resident-0002", "heat"));
	CU_ASSERT_FALSE(allows(c, "resident-0002", "water"));
	cmq_consent_free(c);
}

/* More distinct categories than a policy can hold (64). */
static void TEST_too_many_categories(void)
{
	static char text[8192];
	struct cmq_consent *c = NULL;
	struct cmq_diag diag;
	size_t off;

	off =
	    (size_t)snprintf(text, sizeof(text),
	                     "{\"version\": 1, \"residents\": [{\"id\": \"r1\", \"categories\": [");
	for (int i = 0; i < 65; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off, "%s\"cat-%d\"",
		                        i ? "," : "", i);
	snprintf(text + off, sizeof(text) - off, "]}]}");
	cmq_diag_init(&diag);
	CU_ASSERT_EQUAL(cmq_consent_load(cmq_test_write_file("cats.json", text), NULL, &diag, &c),
	                CMQ_ERR_CONFIG);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&diag,
	                                     "$.residents[0].categories[64]: \"cat-64\" "
	                                     "would be data category number 65; at most 64"));
	CU_ASSERT_EQUAL(diag.errors, 1);
	cmq_diag_cleanup(&diag);
}

static const struct bad_file {
	const char *name; /* fixture under consent/, or a file written from text */
	const char *text; /* NULL: a fixture */
	int rc;
	const char *needle;
} bad_files[] = {
    {"consent/malformed.json", NULL, CMQ_ERR_PARSE, "malformed.json"},
    {"consent/duplicate-key.json", NULL, CMQ_ERR_PARSE, "duplicate"},
    {"consent/absent.json", NULL, CMQ_ERR_IO, "No such file"},
    {"array.json", "[]", CMQ_ERR_CONFIG,
     "array.json: $: expected an object with \"version\": 1 and a \"residents\" array, got an "
     "array"},
    {"no-residents.json", "{\"version\": 1}", CMQ_ERR_CONFIG,
     "no-residents.json: $.residents: missing required field"},
    {"no-version.json", "{\"residents\": []}", CMQ_ERR_CONFIG,
     "no-version.json: $.version: missing required field"},
    {"version-2.json", "{\"version\": 2, \"residents\": []}", CMQ_ERR_CONFIG,
     "version-2.json: $.version: unsupported version number 2; this civicmq reads version 1"},
    {"version-str.json", "{\"version\": \"1\", \"residents\": []}", CMQ_ERR_CONFIG,
     "unsupported version string \"1\""},
    {"residents-null.json", "{\"version\": 1, \"residents\": null}", CMQ_ERR_CONFIG,
     "$.residents: is null; a value is required"},
    {"id-control.json",
     "{\"version\": 1, \"residents\": [{\"id\": \"a\\nb\", \"categories\": []}]}", CMQ_ERR_CONFIG,
     "$.residents[0].id: \"a\\nb\" is not a resident id"},
    {"updated-bad.json",
     "{\"version\": 1, \"residents\": [{\"id\": \"a\", \"categories\": [], \"updated\": "
     "\"2026-13-01T09:00:00Z\"}]}",
     CMQ_ERR_CONFIG, "$.residents[0].updated: \"2026-13-01T09:00:00Z\" is not a UTC time"},
    {"updated-local.json",
     "{\"version\": 1, \"residents\": [{\"id\": \"a\", \"categories\": [], \"updated\": "
     "\"2026-11-01T09:00:00+01:00\"}]}",
     CMQ_ERR_CONFIG, "is not a UTC time"},
};

static void TEST_bad_files(void)
{
	long before = cmq_test_live_allocations();

	for (size_t i = 0; i < sizeof(bad_files) / sizeof(bad_files[0]); i++) {
		const struct bad_file *b = &bad_files[i];
		struct cmq_consent *c = (struct cmq_consent *)1;
		struct cmq_diag diag;
		char path[4200];
		int rc;

		snprintf(path, sizeof(path), "%s",
		         b->text ? cmq_test_write_file(b->name, b->text) : cmq_test_data(b->name));
		cmq_diag_init(&diag);
		rc = cmq_consent_load(path, NULL, &diag, &c);
		if (rc != b->rc || cmq_diag_find(&diag, b->needle) == NULL) {
			fprintf(stderr, "\n  %s: rc %s, want %s and \"%s\"", b->name,
			        cmq_err_name(rc), cmq_err_name(b->rc), b->needle);
			print_diag("have", &diag);
		}
		CU_ASSERT_EQUAL(rc, b->rc);
		CU_ASSERT_PTR_NULL(c);
		CU_ASSERT(diag.errors >= 1);
		CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&diag, b->needle));
		cmq_diag_cleanup(&diag);
	}
	/* Without a diag, failures are still failures. */
	{
		struct cmq_consent *c = NULL;

		CU_ASSERT_EQUAL(
		    cmq_consent_load(cmq_test_data("consent/malformed.json"), NULL, NULL, &c),
		    CMQ_ERR_PARSE);
		CU_ASSERT_PTR_NULL(c);
		CU_ASSERT_EQUAL(cmq_consent_load(NULL, NULL, NULL, &c), CMQ_ERR_INVAL);
	}
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
}

static void TEST_empty_table_denies_everything(void)
{
	long before = cmq_test_live_allocations();
	struct cmq_consent *tables[2] = {NULL, NULL};

	CU_ASSERT_EQUAL(cmq_consent_new_empty(&tables[0]), CMQ_OK);
	tables[1] = load_ok(cmq_test_data("consent/empty.json"), NULL, 0);
	for (int t = 0; t < 2; t++) {
		CU_ASSERT_PTR_NOT_NULL_FATAL(tables[t]);
		CU_ASSERT_EQUAL(cmq_consent_count(tables[t]), 0);
		for (size_t i = 0; i < sizeof(allow_rows) / sizeof(allow_rows[0]); i++)
			CU_ASSERT_FALSE(
			    allows(tables[t], allow_rows[i].subject, allow_rows[i].category));
		cmq_consent_free(tables[t]);
	}
	cmq_consent_free(NULL);
	cmq_test_fail_after(0);
	tables[0] = (struct cmq_consent *)1;
	CU_ASSERT_EQUAL(cmq_consent_new_empty(&tables[0]), CMQ_ERR_NOMEM);
	CU_ASSERT_PTR_NULL(tables[0]);
	cmq_test_fail_after(-1);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
}

static const struct subject_row {
	const char *s;
	size_t len; /* 0: strlen */
	bool valid;
} subject_rows[] = {
    {"resident-0001", 0, true},
    {"a", 0, true},
    {"A.b_c:d@e-f9", 0, true},
    {"0123456789012345678901234567890123456789012345678901234567890123", 0, true},   /* 64 */
    {"01234567890123456789012345678901234567890123456789012345678901234", 0, false}, /* 65 */
    {"", 0, false},
    {"resident 1", 0, false},
    {"resident/1", 0, false},
    {"resident+1", 0, false},
    {"resident#1", 0, false},
    {"résident", 0, false},
    {"a\0b", 3, false},
    {"a\n", 0, false},
    {"\"quoted\"", 0, false},
};

static void TEST_subject_syntax(void)
{
	for (size_t i = 0; i < sizeof(subject_rows) / sizeof(subject_rows[0]); i++) {
		const struct subject_row *r = &subject_rows[i];
		bool got = cmq_subject_valid(r->s, r->len ? r->len : strlen(r->s));

		if (got != r->valid)
			fprintf(stderr, "\n  row %zu (%s): got %d\n", i, r->s, got);
		CU_ASSERT_EQUAL(got, r->valid);
	}
	CU_ASSERT_FALSE(cmq_subject_valid(NULL, 0));
}

/* Fail allocation n of a load: CMQ_ERR_NOMEM, *out NULL, nothing leaked. */
static void TEST_oom_sweep(void)
{
	struct cmq_policy *p = test_policy();
	long before = cmq_test_live_allocations(), n;
	bool done = false;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	for (n = 0; n < 200 && !done; n++) {
		struct cmq_consent *c = (struct cmq_consent *)1;
		struct cmq_diag diag;
		int rc;

		cmq_diag_init(&diag);
		cmq_test_fail_after(n);
		rc = cmq_consent_load(cmq_test_data("consent/good.json"), p, &diag, &c);
		done = !cmq_test_failure_fired();
		cmq_test_fail_after(-1);
		if (done) {
			CU_ASSERT_EQUAL(rc, CMQ_OK);
			CU_ASSERT_PTR_NOT_NULL_FATAL(c);
			CU_ASSERT_TRUE(allows(c, "resident-0003", "energy"));
			cmq_consent_free(c);
		} else {
			CU_ASSERT_EQUAL(rc, CMQ_ERR_NOMEM);
			CU_ASSERT_PTR_NULL(c);
		}
		cmq_diag_cleanup(&diag);
		CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
	}
	CU_ASSERT_TRUE(done);
	CU_ASSERT(n > 4); /* read buffer, table, residents, both maps */
	cmq_policy_free(p);
}

int main(void)
{
	static const struct cmq_test_case cases[] = {
	    {"example_config", TEST_example_config},
	    {"allows_and_denies", TEST_allows_and_denies},
	    {"table_does_not_borrow_the_policy", TEST_table_does_not_borrow_the_policy},
	    {"every_problem_reported", TEST_every_problem_reported},
	    {"category_not_resident_linked_warns_once",
	     TEST_category_not_resident_linked_warns_once},
	    {"without_policy_any_category_id", TEST_without_policy_any_category_id},
	    {"too_many_categories", TEST_too_many_categories},
	    {"bad_files", TEST_bad_files},
	    {"empty_table_denies_everything", TEST_empty_table_denies_everything},
	    {"subject_syntax", TEST_subject_syntax},
	    {"oom_sweep", TEST_oom_sweep},
	    {NULL, NULL},
	};

	return cmq_test_run("consent", cases);
}
