/*
 * test_register.c - the transparency register (core/register.c, register_render.c)
 * built from the example city in config/ (policy.json, vendors.json, operators.json)
 * and from edited copies of it.
 *
 * Golden files: tests/unit/data/register/example.{json,md,html} are the register of the
 * example city at FIXED_NOW (2026-12-01T12:00:00Z), compared byte for byte. After an
 * intended change to the register, to its wording or to the example config (its
 * content hash is in the "policy" stamp), regenerate them and review the diff:
 *
 *     make build/tests/unit/test_register &&
 *     CMQ_REGEN=1 CMQ_TEST_DATA=tests/unit/data build/tests/unit/test_register
 *
 * On a mismatch the actual text is written to the test's temp directory (kept with
 * CMQ_KEEP_TMP=1) and its path printed, for diff -u.
 *
 * The "cannot drift" proof (TEST_listing_equals_enforcement): for every rule and vendor
 * of the example and of each edited policy, a vendor is listed on a flow exactly when
 * the plugin's ACL (cmq_acl_check, a real device id resolved by the policy) lets a
 * device of that vendor publish on a topic of that rule, and exactly when the
 * gateway's pipeline accepts its provenance.
 */
#include "cmq_test.h"

#include "acl.h"
#include "alloc.h"
#include "error.h"
#include "pipeline.h"
#include "policy.h"
#include "register.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXED_NOW INT64_C(1796126400) /* 2026-12-01T12:00:00Z */
#define PATH_LEN  4096

/* The string value of v, "(none)" if v is absent or JSON null (CUnit's string asserts
 * cannot take NULL). */
static const char *text_of(struct json_object *v)
{
	const char *s = v != NULL ? json_object_get_string(v) : NULL;

	return s != NULL ? s : "(none)";
}

/* ---- files ---- */

static const char *config_file(const char *name, char *buf, size_t len)
{
	char rel[256];

	snprintf(rel, sizeof(rel), "../../../config/%s", name);
	snprintf(buf, len, "%s", cmq_test_data(rel));
	return buf;
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long len;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)len + 1);
		if (buf != NULL && fread(buf, 1, (size_t)len, f) != (size_t)len) {
			free(buf);
			buf = NULL;
		}
		if (buf != NULL)
			buf[len] = '\0';
	}
	fclose(f);
	return buf;
}

static struct json_object *config_tree(const char *name)
{
	char path[PATH_LEN];
	struct json_object *root = json_object_from_file(config_file(name, path, sizeof(path)));

	CU_ASSERT_PTR_NOT_NULL_FATAL(root);
	return root;
}

/* ---- policies ---- */

typedef void (*edit_fn)(struct json_object *root);

/* The example city, with policy.json and vendors.json optionally edited. */
static struct cmq_policy *load_edited(edit_fn edit_policy, edit_fn edit_vendors)
{
	char pol[PATH_LEN], ven[PATH_LEN], ops[PATH_LEN];
	struct cmq_policy_files f;
	struct cmq_policy *p;

	config_file("policy.json", pol, sizeof(pol));
	config_file("vendors.json", ven, sizeof(ven));
	config_file("operators.json", ops, sizeof(ops));
	if (edit_policy != NULL) {
		struct json_object *root = config_tree("policy.json");

		edit_policy(root);
		snprintf(pol, sizeof(pol), "%s",
		         cmq_test_write_file(
		             "edited-policy.json",
		             json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY)));
		json_object_put(root);
	}
	if (edit_vendors != NULL) {
		struct json_object *root = config_tree("vendors.json");

		edit_vendors(root);
		snprintf(ven, sizeof(ven), "%s",
		         cmq_test_write_file(
		             "edited-vendors.json",
		             json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY)));
		json_object_put(root);
	}
	memset(&f, 0, sizeof(f)); /* members added later stay at their defaults */
	f.policy = pol;
	f.vendors = ven;
	f.operators = ops;
	f.ca_file = NULL;
	p = cmq_test_load_clean(&f, false);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	return p;
}

static struct json_object *array_item_with_id(struct json_object *root, const char *array,
                                              const char *id)
{
	struct json_object *a, *idv;

	CU_ASSERT_FATAL(json_object_object_get_ex(root, array, &a));
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		struct json_object *o = json_object_array_get_idx(a, i);

		if (json_object_object_get_ex(o, "id", &idv) && strcmp(text_of(idv), id) == 0)
			return o;
	}
	CU_FAIL_FATAL("no such id in the config");
	return NULL;
}

static void set_string(struct json_object *o, const char *key, const char *value)
{
	CU_ASSERT_FATAL(json_object_object_add(o, key, json_object_new_string(value)) == 0);
}

static void nimbus_trusted(struct json_object *root)
{
	set_string(array_item_with_id(root, "vendors", "nimbus"), "tier", "trusted");
}

static void civitas_blocked(struct json_object *root)
{
	set_string(array_item_with_id(root, "vendors", "civitas"), "tier", "blocked");
}

static void hawkeye_trusted(struct json_object *root)
{
	set_string(array_item_with_id(root, "vendors", "hawkeye"), "tier", "trusted");
}

static void civitas_without_mobility(struct json_object *root)
{
	struct json_object *v = array_item_with_id(root, "vendors", "civitas"), *cats;

	cats = json_object_new_array();
	json_object_array_add(cats, json_object_new_string("environment"));
	json_object_array_add(cats, json_object_new_string("energy"));
	json_object_array_add(cats, json_object_new_string("safety"));
	CU_ASSERT_FATAL(json_object_object_add(v, "categories", cats) == 0);
}

/* parking: "keep status" becomes "pseudonymise status". */
static void parking_pseudonymises_status(struct json_object *root)
{
	struct json_object *prof = array_item_with_id(root, "scrub_profiles", "parking"), *ops;

	CU_ASSERT_FATAL(json_object_object_get_ex(prof, "ops", &ops));
	set_string(json_object_array_get_idx(ops, 0), "op", "pseudonymise");
}

/* A more specific personal rule over part of the public air-quality pattern. */
static void north_air_rule(struct json_object *root)
{
	struct json_object *rules, *r = json_object_new_object();

	CU_ASSERT_FATAL(json_object_object_get_ex(root, "topic_rules", &rules));
	set_string(r, "id", "north-air");
	set_string(r, "raw", "raw/north/air/+");
	set_string(r, "class", "personal");
	set_string(r, "category", "mobility");
	set_string(r, "purpose", "A stricter rule for the north district");
	set_string(r, "retention", "PT24H");
	set_string(r, "profile", "parking");
	set_string(r, "scrubbed", "city/north-air");
	json_object_array_add(rules, r);
}

static void air_purpose_html(struct json_object *root)
{
	set_string(array_item_with_id(root, "topic_rules", "air-quality"), "purpose",
	           "<script>&\"'");
}

static void nimbus_name_markup(struct json_object *root)
{
	set_string(array_item_with_id(root, "vendors", "nimbus"), "name",
	           "Nimbus <b>\"Weather\"</b> & Co's");
}

static void air_purpose_pipes(struct json_object *root)
{
	struct json_object *prof = array_item_with_id(root, "scrub_profiles", "air-quality"), *ops;
	struct json_object *op = json_object_new_object();

	set_string(array_item_with_id(root, "topic_rules", "air-quality"), "purpose",
	           "Count | people\nand | more\r| # *bold* [link](x)");
	CU_ASSERT_FATAL(json_object_object_get_ex(prof, "ops", &ops));
	set_string(op, "op", "keep");
	set_string(op, "path", "odd|key`x``y");
	json_object_array_add(ops, op);
}

/* noise: a bucket and a grid; people counting without noise. */
static void more_ops(struct json_object *root)
{
	struct json_object *prof = array_item_with_id(root, "scrub_profiles", "noise"), *ops, *op;
	struct json_object *bounds = json_object_new_array();

	CU_ASSERT_FATAL(json_object_object_get_ex(prof, "ops", &ops));
	op = json_object_new_object();
	set_string(op, "op", "bucket");
	set_string(op, "path", "LAmax");
	json_object_array_add(bounds, json_object_new_int(0));
	json_object_array_add(bounds, json_object_new_int(10));
	json_object_array_add(bounds, json_object_new_double(25.5));
	json_object_object_add(op, "bounds", bounds);
	json_object_array_add(ops, op);
	op = json_object_array_get_idx(ops, 3); /* generalise_location */
	json_object_object_del(op, "geohash_precision");
	json_object_object_add(op, "grid_degrees", json_object_new_double(0.01));
	prof = array_item_with_id(root, "scrub_profiles", "crowd-aggregate");
	CU_ASSERT_FATAL(json_object_object_get_ex(prof, "ops", &ops));
	json_object_object_del(json_object_array_get_idx(ops, 0), "noise_epsilon");
}

/* ---- the register ---- */

struct pages {
	struct json_object *reg;
	char *json, *md, *html;
};

static void build(const struct cmq_policy *p, struct pages *pg)
{
	memset(pg, 0, sizeof(*pg));
	CU_ASSERT_EQUAL_FATAL(cmq_register_build(p, FIXED_NOW, &pg->reg), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(cmq_register_json(pg->reg, &pg->json), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(cmq_register_markdown(pg->reg, &pg->md), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(cmq_register_html(pg->reg, &pg->html), CMQ_OK);
}

static void pages_free(struct pages *pg)
{
	json_object_put(pg->reg);
	cmq_free(pg->json);
	cmq_free(pg->md);
	cmq_free(pg->html);
	memset(pg, 0, sizeof(*pg));
}

static struct json_object *flow_of(struct json_object *reg, const char *id)
{
	return array_item_with_id(reg, "flows", id);
}

static struct json_object *member(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	CU_ASSERT_FATAL(json_object_object_get_ex(o, key, &v));
	return v;
}

static bool flow_lists(struct json_object *flow, const char *vendor)
{
	struct json_object *vs = member(flow, "vendors");

	for (size_t i = 0; i < json_object_array_length(vs); i++) {
		if (strcmp(text_of(member(json_object_array_get_idx(vs, i), "id")), vendor) == 0)
			return true;
	}
	return false;
}

/* The ids of the flows listing vendor, comma-separated, into buf. */
static const char *flows_listing(struct json_object *reg, const char *vendor, char *buf, size_t len)
{
	struct json_object *flows = member(reg, "flows");
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < json_object_array_length(flows); i++) {
		struct json_object *f = json_object_array_get_idx(flows, i);

		if (flow_lists(f, vendor))
			o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? "," : "",
			                      text_of(member(f, "id")));
	}
	return buf;
}

#define ALL_FLOWS "air-quality,noise,footfall,parking,anpr,smart-meter,people-counting"

static void check_listing(const struct cmq_policy *p, const char *vendor, const char *expected)
{
	struct pages pg;
	char buf[512];

	build(p, &pg);
	flows_listing(pg.reg, vendor, buf, sizeof(buf));
	if (strcmp(buf, expected) != 0)
		fprintf(stderr, "\n  %s: listed on %s, expected %s", vendor, buf, expected);
	CU_ASSERT_STRING_EQUAL(buf, expected);
	pages_free(&pg);
}

/* ---- golden files ---- */

static void golden(const char *name, const char *actual)
{
	char rel[128], path[PATH_LEN];
	char *expected;

	snprintf(rel, sizeof(rel), "register/%s", name);
	snprintf(path, sizeof(path), "%s", cmq_test_data(rel));
	if (getenv("CMQ_REGEN") != NULL) {
		FILE *f = fopen(path, "w");

		CU_ASSERT_PTR_NOT_NULL_FATAL(f);
		CU_ASSERT_EQUAL(fputs(actual, f) >= 0, 1);
		CU_ASSERT_EQUAL(fclose(f), 0);
		fprintf(stderr, "\n  wrote %s", path);
		return;
	}
	expected = read_text(path);
	if (expected == NULL)
		fprintf(stderr, "\n  cannot read %s (CMQ_REGEN=1 writes it)", path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(expected);
	if (strcmp(expected, actual) != 0)
		fprintf(stderr, "\n  %s differs from the register built now, written to %s", path,
		        cmq_test_write_file(name, actual));
	CU_ASSERT_STRING_EQUAL(actual, expected);
	free(expected);
}

/* The example city's register equals the golden files, built or re-read. */
static void TEST_golden_example(void)
{
	struct cmq_policy *p = load_edited(NULL, NULL);
	struct json_object *reread;
	struct pages pg;
	char *md, *html, *json;

	build(p, &pg);
	golden("example.json", pg.json);
	golden("example.md", pg.md);
	golden("example.html", pg.html);

	/* Anyone holding the retained JSON renders the same pages. */
	reread = json_tokener_parse(pg.json);
	CU_ASSERT_PTR_NOT_NULL_FATAL(reread);
	CU_ASSERT_EQUAL(cmq_register_json(reread, &json), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_register_markdown(reread, &md), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_register_html(reread, &html), CMQ_OK);
	CU_ASSERT_STRING_EQUAL(json, pg.json);
	CU_ASSERT_STRING_EQUAL(md, pg.md);
	CU_ASSERT_STRING_EQUAL(html, pg.html);
	cmq_free(json);
	cmq_free(md);
	cmq_free(html);
	json_object_put(reread);
	pages_free(&pg);
	cmq_policy_free(p);
}

/* The shape: top-level members, one flow per rule in order, fields from the model. */
static void TEST_document_shape(void)
{
	struct cmq_policy *p = load_edited(NULL, NULL);
	struct json_object *f, *s, *agg;
	struct pages pg;

	build(p, &pg);
	CU_ASSERT_EQUAL(json_object_get_int(member(pg.reg, "register_version")), 1);
	CU_ASSERT_STRING_EQUAL(text_of(member(pg.reg, "city")), "Example City");
	CU_ASSERT_STRING_EQUAL(text_of(member(pg.reg, "policy")), p->stamp);
	CU_ASSERT_STRING_EQUAL(text_of(member(pg.reg, "generated")), "2026-12-01T12:00:00Z");
	CU_ASSERT_EQUAL(json_object_array_length(member(pg.reg, "flows")), p->n_rules);
	CU_ASSERT_EQUAL(json_object_array_length(member(pg.reg, "vendors")), p->n_vendors);
	for (size_t i = 0; i < p->n_rules; i++) {
		f = json_object_array_get_idx(member(pg.reg, "flows"), i);
		CU_ASSERT_STRING_EQUAL(text_of(member(f, "id")), p->rules[i].id);
	}

	f = flow_of(pg.reg, "anpr");
	s = member(f, "scrubbing");
	CU_ASSERT_STRING_EQUAL(text_of(member(f, "published_as")), "city/{1}/anpr");
	CU_ASSERT_STRING_EQUAL(text_of(member(f, "class")), "personal");
	CU_ASSERT_STRING_EQUAL(text_of(member(f, "retention")), "P7D");
	CU_ASSERT_STRING_EQUAL(
	    text_of(member(json_object_array_get_idx(member(s, "pseudonymised"), 0), "path")),
	    "observedVehicle.licensePlate.identifier");
	CU_ASSERT_EQUAL(json_object_array_length(member(s, "kept")), 2);
	CU_ASSERT_STRING_EQUAL(text_of(member(s, "removed")), "every field not listed above");

	f = flow_of(pg.reg, "smart-meter");
	s = member(f, "scrubbing");
	CU_ASSERT_EQUAL(json_object_get_boolean(member(f, "consent_required")), 1);
	CU_ASSERT_STRING_EQUAL(text_of(member(f, "consent_subject")), "residentId");
	CU_ASSERT_STRING_EQUAL(text_of(json_object_array_get_idx(member(s, "dropped"), 0)),
	                       "residentId");
	CU_ASSERT_EQUAL(
	    json_object_get_boolean(member(flow_of(pg.reg, "anpr"), "consent_required")), 0);
	CU_ASSERT_PTR_NULL(member(flow_of(pg.reg, "anpr"), "consent_subject"));

	f = flow_of(pg.reg, "people-counting");
	s = member(f, "scrubbing");
	CU_ASSERT_EQUAL(json_object_array_length(member(s, "kept")), 0);
	agg = json_object_array_get_idx(member(s, "aggregated"), 0);
	CU_ASSERT_STRING_EQUAL(text_of(member(agg, "group_by")), "zone");
	CU_ASSERT_EQUAL(json_object_get_int(member(agg, "k")), 10);
	CU_ASSERT_EQUAL(json_object_get_int(member(agg, "window_seconds")), 900);
	CU_ASSERT_DOUBLE_EQUAL(json_object_get_double(member(agg, "noise_epsilon")), 1.0, 1e-12);
	CU_ASSERT_PTR_NOT_NULL(strstr(text_of(member(s, "removed")), "every message"));
	pages_free(&pg);
	cmq_policy_free(p);
}

/* Which flows each example vendor is listed on; tier changes move exactly those. */
static void TEST_tier_changes(void)
{
	struct cmq_policy *p = load_edited(NULL, NULL);

	check_listing(p, "civitas", ALL_FLOWS);
	check_listing(p, "nimbus", "air-quality,noise");
	check_listing(p, "hawkeye", "");
	cmq_policy_free(p);

	/* restricted -> trusted: nimbus now also feeds its personal mobility flows. */
	p = load_edited(NULL, nimbus_trusted);
	check_listing(p, "nimbus", "air-quality,noise,footfall,parking,anpr");
	check_listing(p, "civitas", ALL_FLOWS);
	check_listing(p, "hawkeye", "");
	cmq_policy_free(p);

	/* trusted -> blocked: civitas disappears from every flow, nobody else changes. */
	p = load_edited(NULL, civitas_blocked);
	check_listing(p, "civitas", "");
	check_listing(p, "nimbus", "air-quality,noise");
	cmq_policy_free(p);

	/* blocked -> trusted: hawkeye appears on its one permitted category. */
	p = load_edited(NULL, hawkeye_trusted);
	check_listing(p, "hawkeye", "people-counting");
	check_listing(p, "civitas", ALL_FLOWS);
	cmq_policy_free(p);
}

/* Removing a category from a vendor removes it from exactly that category's flows. */
static void TEST_category_removed(void)
{
	struct cmq_policy *p = load_edited(NULL, civitas_without_mobility);

	check_listing(p, "civitas", "air-quality,noise,smart-meter,people-counting");
	check_listing(p, "nimbus", "air-quality,noise");
	cmq_policy_free(p);
}

/* A profile op changed from keep to pseudonymise shows in that flow and no other. */
static void TEST_profile_op_change(void)
{
	struct cmq_policy *base = load_edited(NULL, NULL), *p;
	struct json_object *flows0, *flows1, *s, *ps;
	struct pages before, after;

	build(base, &before);
	p = load_edited(parking_pseudonymises_status, NULL);
	build(p, &after);
	s = member(flow_of(after.reg, "parking"), "scrubbing");
	CU_ASSERT_EQUAL(json_object_array_length(member(s, "kept")), 1);
	CU_ASSERT_STRING_EQUAL(text_of(json_object_array_get_idx(member(s, "kept"), 0)),
	                       "category");
	ps = member(s, "pseudonymised");
	CU_ASSERT_EQUAL_FATAL(json_object_array_length(ps), 1);
	CU_ASSERT_STRING_EQUAL(text_of(member(json_object_array_get_idx(ps, 0), "path")), "status");
	CU_ASSERT_PTR_NOT_NULL(strstr(text_of(member(json_object_array_get_idx(ps, 0), "method")),
	                              "rotating keyed pseudonym"));
	CU_ASSERT_PTR_NOT_NULL(strstr(after.md, "| Pseudonymised | `status`: rotating keyed"));
	CU_ASSERT_PTR_NULL(strstr(before.md, "| Pseudonymised | `status`"));
	CU_ASSERT_PTR_NOT_NULL(strstr(after.html, "<code>status</code>: rotating keyed"));
	/* Every other flow is unchanged; the policy stamp changed with the content. */
	flows0 = member(before.reg, "flows");
	flows1 = member(after.reg, "flows");
	for (size_t i = 0; i < json_object_array_length(flows0); i++) {
		struct json_object *a = json_object_array_get_idx(flows0, i);
		struct json_object *b = json_object_array_get_idx(flows1, i);
		bool parking = strcmp(text_of(member(a, "id")), "parking") == 0;

		CU_ASSERT_EQUAL(json_object_equal(a, b) != 0, !parking);
	}
	CU_ASSERT_STRING_NOT_EQUAL(text_of(member(before.reg, "policy")),
	                           text_of(member(after.reg, "policy")));
	pages_free(&before);
	pages_free(&after);
	cmq_policy_free(p);
	cmq_policy_free(base);
}

/* Buckets, grids and noise-free aggregates are described with their parameters. */
static void TEST_other_ops(void)
{
	struct cmq_policy *p = load_edited(more_ops, NULL);
	struct json_object *s, *agg;
	struct pages pg;

	build(p, &pg);
	s = member(flow_of(pg.reg, "noise"), "scrubbing");
	CU_ASSERT_DOUBLE_EQUAL(
	    json_object_get_double(
	        member(json_object_array_get_idx(member(s, "generalised"), 0), "grid_degrees")),
	    0.01, 1e-12);
	CU_ASSERT_EQUAL(json_object_array_length(
	                    member(json_object_array_get_idx(member(s, "bucketed"), 0), "bounds")),
	                3);
	agg = json_object_array_get_idx(
	    member(member(flow_of(pg.reg, "people-counting"), "scrubbing"), "aggregated"), 0);
	CU_ASSERT_PTR_NULL(member(agg, "noise_epsilon"));
	CU_ASSERT_PTR_NOT_NULL(strstr(pg.json, "\"grid_degrees\": 0.01\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(pg.md, "`LAmax`: replaced by its interval between the "
	                                     "bounds 0, 10, 25.5"));
	CU_ASSERT_PTR_NOT_NULL(strstr(pg.md, "0.01 degrees wide (about 1.11 km north to south)"));
	CU_ASSERT_PTR_NOT_NULL(strstr(pg.md, "at least 10, exactly (no noise added)"));
	CU_ASSERT_PTR_NOT_NULL(strstr(pg.html, "bounds 0, 10, 25.5"));
	pages_free(&pg);
	cmq_policy_free(p);
}

/* How many times ch occurs in md without a backslash before it. */
static size_t md_unescaped(const char *md, char ch)
{
	size_t n = 0;

	for (const char *s = md; *s; s++) {
		if (*s == '\\' && s[1] != '\0')
			s++;
		else if (*s == ch)
			n++;
	}
	return n;
}

#define HTML_HEAD "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"

/* HTML: & < > " ' from the policy become entities; no tag of the policy's survives. */
static void TEST_html_escaping(void)
{
	struct cmq_policy *p = load_edited(air_purpose_html, nimbus_name_markup);
	struct pages pg;

	build(p, &pg);
	CU_ASSERT_PTR_NOT_NULL(strstr(pg.html, "<td>&lt;script&gt;&amp;&quot;&#39;</td>"));
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(pg.html, "Nimbus &lt;b&gt;&quot;Weather&quot;&lt;/b&gt; &amp; Co&#39;s"));
	CU_ASSERT_PTR_NULL(strstr(pg.html, "<script"));
	CU_ASSERT_PTR_NULL(strstr(pg.html, "<b>"));
	CU_ASSERT_PTR_NULL(strstr(pg.html, "\"Weather\""));
	CU_ASSERT_EQUAL(strncmp(pg.html, HTML_HEAD, strlen(HTML_HEAD)), 0);
	/* Markdown escapes it too: neither markup nor raw HTML. */
	CU_ASSERT_PTR_NOT_NULL(strstr(pg.md, "| Purpose | \\<script\\>\\&\"' |"));
	CU_ASSERT_EQUAL(md_unescaped(pg.md, '<'), 0);
	CU_ASSERT_EQUAL(md_unescaped(pg.md, '&'), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(pg.md, "Nimbus \\<b\\>\"Weather\"\\</b\\> \\& Co's"));
	pages_free(&pg);
	cmq_policy_free(p);
}

/* Unescaped '|' in a Markdown table line: one per cell boundary. */
static size_t md_pipes(const char *line, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		if (line[i] == '\\')
			i++;
		else if (line[i] == '|')
			n++;
	}
	return n;
}

/* Every line of every Markdown table has as many cells as its header. */
static void check_md_tables(const char *md)
{
	size_t want = 0, rows = 0;

	for (const char *line = md; *line;) {
		const char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);

		if (len > 0 && line[0] == '|') {
			size_t n = md_pipes(line, len);

			if (want == 0)
				want = n;
			if (n != want)
				fprintf(stderr, "\n  table line with %zu cells, header %zu: %.*s",
				        n, want, (int)len, line);
			CU_ASSERT_EQUAL(n, want);
			rows++;
		} else {
			want = 0;
		}
		line += len + (nl ? 1 : 0);
	}
	CU_ASSERT(rows > 20);
}

/* Markdown: '|' and line breaks cannot break a table; markup characters are inert. */
static void TEST_markdown_escaping(void)
{
	struct cmq_policy *p = load_edited(air_purpose_pipes, NULL);
	struct pages pg;

	build(p, &pg);
	CU_ASSERT_PTR_NOT_NULL(strstr(
	    pg.md,
	    "| Purpose | Count \\| people and \\| more \\| \\# \\*bold\\* \\[link\\](x) |\n"));
	/* A path with '|' and backticks: a longer fence, '|' still escaped. */
	CU_ASSERT_PTR_NOT_NULL(strstr(pg.md, "```odd\\|key`x``y```"));
	check_md_tables(pg.md);
	pages_free(&pg);

	cmq_policy_free(p);
	p = load_edited(NULL, NULL);
	build(p, &pg);
	check_md_tables(pg.md);
	pages_free(&pg);
	cmq_policy_free(p);
}

/* No operator account, password hash (or any part of one) or operator CA pin leaks. */
static void TEST_no_operator_data(void)
{
	struct json_object *ops_root = config_tree("operators.json"), *ops, *cas;
	struct cmq_policy *p = load_edited(NULL, NULL);
	struct pages pg;
	size_t checked = 0;

	build(p, &pg);
	CU_ASSERT_FATAL(json_object_object_get_ex(ops_root, "operators", &ops));
	CU_ASSERT_FATAL(json_object_array_length(ops) > 0);
	for (size_t i = 0; i < json_object_array_length(ops); i++) {
		struct json_object *o = json_object_array_get_idx(ops, i), *v;
		const char *needles[8] = {NULL};
		char hash[512], *save = NULL;
		size_t n = 0;

		CU_ASSERT_FATAL(json_object_object_get_ex(o, "username", &v));
		needles[n++] = text_of(v);
		if (json_object_object_get_ex(o, "password_hash", &v)) {
			snprintf(hash, sizeof(hash), "%s", text_of(v));
			needles[n++] = text_of(v);
			/* Salt and digest on their own too. */
			for (char *part = strtok_r(hash, "$", &save); part != NULL && n < 8;
			     part = strtok_r(NULL, "$", &save)) {
				if (strlen(part) >= 16)
					needles[n++] = part;
			}
		}
		for (size_t k = 0; k < n; k++) {
			const char *const texts[] = {pg.json, pg.md, pg.html};

			for (size_t t = 0; t < 3; t++) {
				if (strstr(texts[t], needles[k]) != NULL)
					fprintf(stderr, "\n  operator data \"%s\" in output %zu",
					        needles[k], t);
				CU_ASSERT_PTR_NULL(strstr(texts[t], needles[k]));
				checked++;
			}
		}
	}
	CU_ASSERT_FATAL(json_object_object_get_ex(ops_root, "operator_ca_sha256", &cas));
	for (size_t i = 0; i < json_object_array_length(cas); i++) {
		const char *fp = text_of(json_object_array_get_idx(cas, i));

		CU_ASSERT_PTR_NULL(strstr(pg.json, fp));
		CU_ASSERT_PTR_NULL(strstr(pg.md, fp));
		CU_ASSERT_PTR_NULL(strstr(pg.html, fp));
		checked++;
	}
	CU_ASSERT(checked >= 4 * 3 + 3 * 3 * 3);
	json_object_put(ops_root);
	pages_free(&pg);
	cmq_policy_free(p);
}

/* ---- the "cannot drift" proof ---- */

/*
 * A topic of rule r for device dev: '+' levels filled with the first district name for
 * which the rule trie picks r (a more specific rule may own "north"). Returns false if
 * none does.
 */
static bool topic_for(const struct cmq_policy *p, size_t r, const char *dev, char *buf, size_t len)
{
	static const char *const districts[] = {"north", "south", "harbour"};

	for (size_t d = 0; d < sizeof(districts) / sizeof(districts[0]); d++) {
		const char *raw = p->rules[r].raw;
		size_t o = 0;
		uint32_t idx;

		for (const char *s = raw; *s && o + 64 < len; s++) {
			if (*s == '+' && s[1] == '\0')
				o += (size_t)snprintf(buf + o, len - o, "%s", dev);
			else if (*s == '+')
				o += (size_t)snprintf(buf + o, len - o, "%s", districts[d]);
			else
				buf[o++] = *s;
		}
		buf[o] = '\0';
		if (cmq_trie_match(p->rule_trie, buf, o, NULL, &idx) && idx == r)
			return true;
	}
	return false;
}

static size_t check_against_enforcement(const struct cmq_policy *p)
{
	struct pages pg;
	size_t pairs = 0;

	build(p, &pg);
	for (size_t r = 0; r < p->n_rules; r++) {
		struct json_object *flow = flow_of(pg.reg, p->rules[r].id);

		for (size_t v = 0; v < p->n_vendors; v++) {
			const struct cmq_vendor *ven = &p->vendors[v];
			struct cmq_pipeline pl = {p, NULL, {NULL, FIXED_NOW}, 0};
			struct cmq_pipeline_result res;
			struct cmq_acl_result acl;
			char dev[128], topic[512], prov[512];
			bool listed = flow_lists(flow, ven->id), acl_ok, gw_ok;

			snprintf(dev, sizeof(dev), "%sdev-001", ven->prefix);
			CU_ASSERT_FATAL(topic_for(p, r, dev, topic, sizeof(topic)));
			{
				struct cmq_acl_request req = {
				    dev, dev, CMQ_ACCESS_WRITE, topic, 100, false, NULL};

				acl_ok = cmq_acl_check(p, &req, &acl) == CMQ_ALLOW;
			}
			snprintf(prov, sizeof(prov), "%s/%s/%s/%s", ven->id, dev,
			         cmq_tier_name(ven->tier), p->stamp);
			cmq_pipeline_run(&pl, topic, strlen(topic), "{}", 2, prov, &res);
			gw_ok = res.reason != CMQ_DROP_VENDOR_REFUSED;
			cmq_pipeline_result_cleanup(&res);
			if (listed != acl_ok || listed != gw_ok)
				fprintf(stderr,
				        "\n  %s on %s (%s): listed %d, plugin %d (%s), gateway %d",
				        ven->id, p->rules[r].id, topic, listed, acl_ok,
				        cmq_reason_name(acl.reason), gw_ok);
			CU_ASSERT_EQUAL(listed, acl_ok);
			CU_ASSERT_EQUAL(listed, gw_ok);
			pairs++;
		}
	}
	pages_free(&pg);
	return pairs;
}

/*
 * For every rule and vendor of the example and of each edited policy: listed on the
 * flow == the plugin lets a device of the vendor publish there == the gateway accepts
 * its provenance. Includes a more specific rule overlapping a '+' of another.
 */
static void TEST_listing_equals_enforcement(void)
{
	static const struct {
		edit_fn policy, vendors;
	} variants[] = {
	    {NULL, NULL},
	    {NULL, nimbus_trusted},
	    {NULL, civitas_blocked},
	    {NULL, hawkeye_trusted},
	    {NULL, civitas_without_mobility},
	    {north_air_rule, NULL},
	    {north_air_rule, nimbus_trusted},
	};
	size_t pairs = 0;

	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		struct cmq_policy *p = load_edited(variants[i].policy, variants[i].vendors);

		pairs += check_against_enforcement(p);
		cmq_policy_free(p);
	}
	CU_ASSERT_EQUAL(pairs, 5 * 7 * 3 + 2 * 8 * 3);
}

/* A more specific rule does not fool the probe: nimbus feeds air-quality, not north-air. */
static void TEST_specific_rule_probe(void)
{
	struct cmq_policy *p = load_edited(north_air_rule, NULL);

	check_listing(p, "nimbus", "air-quality,noise");
	check_listing(p, "civitas", ALL_FLOWS ",north-air");
	cmq_policy_free(p);
}

/* What "removed" claims: a field no op names never reaches a scrubbed payload. */
static void TEST_removed_claim_holds(void)
{
	struct cmq_policy *p = load_edited(NULL, NULL);
	static const char payload[] = "{\"imsi\":\"001010123456789\",\"mac\":\"00:1a:2b:3c:4d:5e\","
	                              "\"firmware\":{\"serial\":\"X1\"}}";
	struct cmq_scrub_env env = {NULL, FIXED_NOW};

	for (size_t i = 0; i < p->n_profiles; i++) {
		struct json_object *in = NULL, *out = NULL;
		struct cmq_scrub_agg agg;
		enum cmq_drop rc;

		CU_ASSERT_EQUAL_FATAL(cmq_scrub_parse(payload, sizeof(payload) - 1, 4096, 16, &in),
		                      CMQ_DROP_NONE);
		rc = cmq_scrub_apply(&p->profiles[i], in, &env, &out, &agg, NULL);
		if (p->profiles[i].aggregates) {
			CU_ASSERT_NOT_EQUAL(rc, CMQ_DROP_NONE); /* no count: nothing leaves */
			CU_ASSERT_PTR_NULL(out);
		} else {
			CU_ASSERT_EQUAL(rc, CMQ_DROP_NONE);
			CU_ASSERT_PTR_NOT_NULL_FATAL(out);
			CU_ASSERT_EQUAL(json_object_object_length(out), 0);
		}
		json_object_put(out);
		json_object_put(in);
	}
	cmq_policy_free(p);
}

/* Bad arguments and documents that are not a register. */
static void TEST_errors(void)
{
	struct cmq_policy *p = load_edited(NULL, NULL);
	struct json_object *reg = (struct json_object *)1, *doc;
	char *text = (char *)1;

	CU_ASSERT_EQUAL(cmq_register_build(NULL, FIXED_NOW, &reg), CMQ_ERR_INVAL);
	CU_ASSERT_PTR_NULL(reg);
	reg = (struct json_object *)1;
	CU_ASSERT_EQUAL(cmq_register_build(p, -1, &reg), CMQ_ERR_INVAL);
	CU_ASSERT_PTR_NULL(reg);
	CU_ASSERT_EQUAL(cmq_register_build(p, INT64_C(253402300800), &reg), CMQ_ERR_INVAL);

	CU_ASSERT_EQUAL(cmq_register_build(p, 0, &reg), CMQ_OK);
	CU_ASSERT_STRING_EQUAL(text_of(member(reg, "generated")), "1970-01-01T00:00:00Z");
	json_object_put(reg);
	CU_ASSERT_EQUAL(cmq_register_build(p, INT64_C(253402300799), &reg), CMQ_OK);
	CU_ASSERT_STRING_EQUAL(text_of(member(reg, "generated")), "9999-12-31T23:59:59Z");

	CU_ASSERT_EQUAL(cmq_register_markdown(NULL, &text), CMQ_ERR_PARSE);
	CU_ASSERT_PTR_NULL(text);
	doc = json_tokener_parse("{\"register_version\": 2, \"flows\": [], \"vendors\": []}");
	CU_ASSERT_EQUAL(cmq_register_html(doc, &text), CMQ_ERR_PARSE);
	CU_ASSERT_EQUAL(cmq_register_json(doc, &text), CMQ_ERR_PARSE);
	json_object_put(doc);
	/* A flow without its purpose: refused, nothing half-rendered. */
	json_object_object_del(json_object_array_get_idx(member(reg, "flows"), 2), "purpose");
	text = (char *)1;
	CU_ASSERT_EQUAL(cmq_register_markdown(reg, &text), CMQ_ERR_PARSE);
	CU_ASSERT_PTR_NULL(text);
	CU_ASSERT_EQUAL(cmq_register_html(reg, &text), CMQ_ERR_PARSE);
	/* A purpose of the wrong type. */
	json_object_object_add(json_object_array_get_idx(member(reg, "flows"), 2), "purpose",
	                       json_object_new_int(3));
	CU_ASSERT_EQUAL(cmq_register_html(reg, &text), CMQ_ERR_PARSE);
	json_object_put(reg);
	cmq_policy_free(p);
}

/* Out of memory at every allocation: a clean error, *out NULL, nothing leaked. */
static void TEST_oom_sweep(void)
{
	struct cmq_policy *p = load_edited(NULL, NULL);
	long live = cmq_test_live_allocations();
	struct json_object *reg = NULL;
	int (*const render[])(const struct json_object *, char **) = {
	    cmq_register_json, cmq_register_markdown, cmq_register_html};
	int rc = CMQ_ERR_NOMEM;

	for (long n = 0; rc != CMQ_OK; n++) {
		cmq_test_fail_after(n);
		rc = cmq_register_build(p, FIXED_NOW, &reg);
		cmq_test_fail_after(-1);
		if (rc != CMQ_OK) {
			CU_ASSERT_EQUAL(rc, CMQ_ERR_NOMEM);
			CU_ASSERT_PTR_NULL(reg);
			CU_ASSERT_EQUAL(cmq_test_live_allocations(), live);
		}
		CU_ASSERT_FATAL(n < 1000);
	}
	for (size_t i = 0; i < 3; i++) {
		char *text = NULL;
		long n;

		rc = CMQ_ERR_NOMEM;
		for (n = 0; rc != CMQ_OK; n++) {
			cmq_test_fail_after(n);
			rc = render[i](reg, &text);
			cmq_test_fail_after(-1);
			if (rc != CMQ_OK) {
				CU_ASSERT_EQUAL(rc, CMQ_ERR_NOMEM);
				CU_ASSERT_PTR_NULL(text);
				CU_ASSERT_EQUAL(cmq_test_live_allocations(), live);
			}
			CU_ASSERT_FATAL(n < 1000);
		}
		CU_ASSERT(n > 1);
		cmq_free(text);
	}
	json_object_put(reg);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), live);
	cmq_policy_free(p);
}

int main(void)
{
	static const struct cmq_test_case cases[] = {
	    {"golden_example", TEST_golden_example},
	    {"document_shape", TEST_document_shape},
	    {"tier_changes", TEST_tier_changes},
	    {"category_removed", TEST_category_removed},
	    {"profile_op_change", TEST_profile_op_change},
	    {"other_ops", TEST_other_ops},
	    {"html_escaping", TEST_html_escaping},
	    {"markdown_escaping", TEST_markdown_escaping},
	    {"no_operator_data", TEST_no_operator_data},
	    {"listing_equals_enforcement", TEST_listing_equals_enforcement},
	    {"specific_rule_probe", TEST_specific_rule_probe},
	    {"removed_claim_holds", TEST_removed_claim_holds},
	    {"errors", TEST_errors},
	    {"oom_sweep", TEST_oom_sweep},
	    {NULL, NULL},
	};

	return cmq_test_run("register", cases);
}
