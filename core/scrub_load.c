/*
 * scrub_load.c - the policy side of the scrub engine: compiling paths and reading
 * and validating each scrub operation's parameters from policy.json (scrub.h).
 *
 * Everything a message later needs is decided here, once: paths are split into
 * segments with their keys NUL-terminated (json-c looks keys up by C string), bounds
 * are checked for order, pattern names become CMQ_REDACT_* bits. cmq_scrub_apply
 * never parses a path or a parameter. Every problem is reported through the loader's
 * struct cmq_jctx with the JSON path of the offending member, the value quoted and
 * what would be valid, like the rest of policy.json.
 *
 * Memory: through alloc.h (segment array and keys, bucket bounds, the group_by text);
 * cmq_scrub_op_cleanup frees all of it. Cost: linear in the op's size. Thread: any.
 */
#include "scrub.h"

#include "alloc.h"
#include "error.h"
#include "policy.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define GRID_DEGREES_MAX   10.0
#define TIME_SECONDS_MAX   31622400u /* 366 days */
#define WINDOW_SECONDS_MAX 86400u
#define K_MAX              1000000u
#define EPSILON_MAX        10.0
#define PATH_INDEX_DIGITS  9 /* [N]: N below 10^9 */
#define CMQ_STR_(x)        #x
#define CMQ_STR(x)         CMQ_STR_(x)

static const char path_hint[] = "write keys separated by '.', each optionally followed by "
                                "[] or [N], e.g. \"readings[].value\"";

void cmq_scrub_path_cleanup(struct cmq_scrub_path *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n; i++)
		cmq_free(p->seg[i].key);
	cmq_free(p->seg);
	p->seg = NULL;
	p->n = 0;
}

int cmq_scrub_path_compile(const char *text, struct cmq_scrub_path *out, const char **why)
{
	size_t n = 1, len;
	const char *s;

	memset(out, 0, sizeof(*out));
	*why = NULL;
	if (text == NULL || text[0] == '\0') {
		*why = "is empty";
		return CMQ_ERR_PARSE;
	}
	len = strlen(text);
	for (size_t i = 0; i < len; i++)
		n += text[i] == '.';
	if (n > CMQ_SCRUB_PATH_MAX) {
		*why = "has more than " CMQ_STR(CMQ_SCRUB_PATH_MAX) " segments";
		return CMQ_ERR_PARSE;
	}
	out->seg = cmq_calloc(n, sizeof(*out->seg));
	if (out->seg == NULL)
		return CMQ_ERR_NOMEM;
	s = text;
	for (;;) {
		struct cmq_scrub_seg *seg = &out->seg[out->n];
		size_t klen = strcspn(s, ".[]");

		if (klen == 0) {
			*why = s[0] == ']' ? "has ']' without '['" : "has an empty key";
			return CMQ_ERR_PARSE;
		}
		seg->key = cmq_strndup(s, klen);
		if (seg->key == NULL)
			return CMQ_ERR_NOMEM;
		seg->key_len = klen;
		seg->index = CMQ_SEG_KEY;
		out->n++;
		s += klen;
		if (*s == '[') {
			s++;
			if (*s == ']') {
				seg->index = CMQ_SEG_EACH;
			} else {
				int32_t idx = 0;
				size_t digits = 0;

				while (*s >= '0' && *s <= '9') {
					if (++digits > PATH_INDEX_DIGITS) {
						*why = "has an index above 999999999";
						return CMQ_ERR_PARSE;
					}
					idx = idx * 10 + (*s++ - '0');
				}
				if (digits == 0 || *s != ']') {
					*why = "has '[' not followed by ']' or a number and ']'";
					return CMQ_ERR_PARSE;
				}
				seg->index = idx;
			}
			s++; /* the ']' */
		} else if (*s == ']') {
			*why = "has ']' without '['";
			return CMQ_ERR_PARSE;
		}
		if (*s == '\0')
			return CMQ_OK;
		if (*s != '.') {
			*why = "has text after ']' that does not start with '.'";
			return CMQ_ERR_PARSE;
		}
		s++;
		if (*s == '\0') {
			*why = "ends with '.'";
			return CMQ_ERR_PARSE;
		}
	}
}

void cmq_scrub_op_cleanup(struct cmq_scrub_op *op)
{
	if (op == NULL)
		return;
	cmq_scrub_path_cleanup(&op->cpath);
	if (op->kind == CMQ_SCRUB_BUCKET) {
		cmq_free(op->u.bucket.bounds);
	} else if (op->kind == CMQ_SCRUB_AGGREGATE) {
		cmq_scrub_path_cleanup(&op->u.agg.group_by);
		cmq_free(op->u.agg.group_by_text);
	}
	cmq_free(op->path);
	memset(op, 0, sizeof(*op));
}

static bool has_each(const struct cmq_scrub_path *p)
{
	for (size_t i = 0; i < p->n; i++) {
		if (p->seg[i].index == CMQ_SEG_EACH)
			return true;
	}
	return false;
}

/*
 * Compile member key of o (its text is s) into out; errors at $...key. single: the
 * path must name one value (no "[]"). Returns CMQ_OK, CMQ_ERR_CONFIG after an error,
 * CMQ_ERR_NOMEM without one.
 */
static int load_path(struct cmq_jctx *c, const char *key, const char *s, bool single,
                     struct cmq_scrub_path *out)
{
	const char *why = NULL;
	char q[160];
	size_t old;
	int rc = cmq_scrub_path_compile(s, out, &why);

	if (rc == CMQ_ERR_NOMEM)
		return rc;
	old = cmq_jpath_push_key(c, key);
	if (rc != CMQ_OK) {
		cmq_jerr(c, "%s is not a valid path: it %s; %s",
		         cmq_diag_quote(s, strlen(s), q, sizeof(q)), why, path_hint);
	} else if (single && has_each(out)) {
		cmq_jerr(
		    c,
		    "%s names every element of an array; this path must name one value (use [N])",
		    cmq_diag_quote(s, strlen(s), q, sizeof(q)));
		rc = CMQ_ERR_CONFIG;
	}
	cmq_jpath_pop(c, old);
	return rc == CMQ_OK ? CMQ_OK : CMQ_ERR_CONFIG;
}

/*
 * A number member: absent-and-optional -> true with *present false; present and a finite
 * number -> true; otherwise false after an error that names range.
 */
static bool load_number(struct cmq_jctx *c, struct json_object *o, const char *key, bool required,
                        const char *range, double *out, bool *present)
{
	struct json_object *v = cmq_jget(c, o, key, required);
	char d[160];
	size_t old;
	double x;

	*present = false;
	if (v == NULL)
		return !required;
	old = cmq_jpath_push_key(c, key);
	if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)) {
		cmq_jerr(c, "expected %s, got %s", range, cmq_jdescribe(v, d, sizeof(d)));
		cmq_jpath_pop(c, old);
		return false;
	}
	x = json_object_get_double(v);
	if (!isfinite(x)) {
		cmq_jerr(c, "%s is out of range; valid: %s", cmq_jdescribe(v, d, sizeof(d)), range);
		cmq_jpath_pop(c, old);
		return false;
	}
	cmq_jpath_pop(c, old);
	*out = x;
	*present = true;
	return true;
}

/* Report a number member out of range (the member exists: it was just read). */
static void number_range_error(struct cmq_jctx *c, struct json_object *o, const char *key,
                               const char *range)
{
	struct json_object *v = NULL;
	char d[160];
	size_t old = cmq_jpath_push_key(c, key);

	json_object_object_get_ex(o, key, &v);
	cmq_jerr(c, "%s is out of range; valid: %s", cmq_jdescribe(v, d, sizeof(d)), range);
	cmq_jpath_pop(c, old);
}

static bool load_location(struct cmq_jctx *c, struct json_object *o, struct cmq_scrub_op *op)
{
	static const char grid_range[] = "a number of degrees > 0 and <= 10";
	bool has_hash = cmq_jget(c, o, "geohash_precision", false) != NULL;
	bool has_grid = cmq_jget(c, o, "grid_degrees", false) != NULL;
	uint64_t prec = 0;
	double grid = 0;
	bool present;

	if (has_hash && has_grid) {
		cmq_jerr(c, "has both geohash_precision and grid_degrees; give exactly one");
		return false;
	}
	if (!has_hash && !has_grid) {
		cmq_jerr(c,
		         "generalise_location needs geohash_precision (a whole number 1 to 12) "
		         "or grid_degrees (%s)",
		         grid_range);
		return false;
	}
	if (has_hash) {
		if (!cmq_juint(c, o, "geohash_precision", true, 1, 12, &prec))
			return false;
		op->u.loc.geohash_precision = (uint8_t)prec;
		return true;
	}
	if (!load_number(c, o, "grid_degrees", true, grid_range, &grid, &present))
		return false;
	if (!(grid > 0 && grid <= GRID_DEGREES_MAX)) {
		number_range_error(c, o, "grid_degrees", grid_range);
		return false;
	}
	op->u.loc.grid_degrees = grid;
	return true;
}

static bool load_round(struct cmq_jctx *c, struct json_object *o, struct cmq_scrub_op *op)
{
	static const char range[] = "a number > 0";
	bool present;
	double step = 0;

	if (!load_number(c, o, "step", true, range, &step, &present))
		return false;
	if (!(step > 0)) {
		number_range_error(c, o, "step", range);
		return false;
	}
	op->u.round.step = step;
	return true;
}

/* Returns false after an error, or without one when out of memory (*nomem set). */
static bool load_bucket(struct cmq_jctx *c, struct json_object *o, struct cmq_scrub_op *op,
                        bool *nomem)
{
	struct json_object *arr = cmq_jarray(c, o, "bounds", true);
	size_t n, base;
	bool ok = true;
	char d[160];

	if (arr == NULL)
		return false;
	base = cmq_jpath_push_key(c, "bounds");
	n = json_object_array_length(arr);
	if (n == 0 || n > CMQ_SCRUB_MAX_BOUNDS) {
		cmq_jerr(c, "has %zu entries; give 1 to %d numbers in increasing order", n,
		         CMQ_SCRUB_MAX_BOUNDS);
		cmq_jpath_pop(c, base);
		return false;
	}
	op->u.bucket.bounds = cmq_calloc(n, sizeof(double));
	if (op->u.bucket.bounds == NULL) {
		*nomem = true;
		cmq_jpath_pop(c, base);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *v = json_object_array_get_idx(arr, i);
		size_t old = cmq_jpath_push_index(c, i);
		double x;

		if (!json_object_is_type(v, json_type_int) &&
		    !json_object_is_type(v, json_type_double)) {
			cmq_jerr(c, "expected a number, got %s", cmq_jdescribe(v, d, sizeof(d)));
			ok = false;
		} else if (!isfinite(x = json_object_get_double(v))) {
			cmq_jerr(c, "%s is out of range; bounds are finite numbers",
			         cmq_jdescribe(v, d, sizeof(d)));
			ok = false;
		} else {
			if (ok && i > 0 && !(x > op->u.bucket.bounds[i - 1])) {
				cmq_jerr(c,
				         "%s is not greater than the bound before it (%g); bounds "
				         "must be strictly increasing",
				         cmq_jdescribe(v, d, sizeof(d)),
				         op->u.bucket.bounds[i - 1]);
				ok = false;
			}
			op->u.bucket.bounds[i] = x;
		}
		cmq_jpath_pop(c, old);
	}
	cmq_jpath_pop(c, base);
	if (ok)
		op->u.bucket.n = n;
	return ok;
}

static bool load_redact(struct cmq_jctx *c, struct json_object *o, struct cmq_scrub_op *op)
{
	static const char *const names[] = {"mac", "plate", "email", "phone", NULL};
	static const unsigned bits[] = {CMQ_REDACT_MAC, CMQ_REDACT_PLATE, CMQ_REDACT_EMAIL,
	                                CMQ_REDACT_PHONE};
	struct json_object *arr = cmq_jarray(c, o, "patterns", true);
	unsigned mask = 0;
	size_t n, base;
	bool ok = true;
	char q[128];

	if (arr == NULL)
		return false;
	base = cmq_jpath_push_key(c, "patterns");
	n = json_object_array_length(arr);
	if (n == 0) {
		cmq_jerr(c, "is empty; name at least one of mac, plate, email, phone");
		cmq_jpath_pop(c, base);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		size_t old = cmq_jpath_push_index(c, i);
		const char *s = cmq_jas_string(c, json_object_array_get_idx(arr, i), 32);
		int k = s ? cmq_jenum(c, s, "redaction pattern", names) : -1;

		if (k < 0) {
			ok = false;
		} else if (mask & bits[k]) {
			cmq_jerr(c, "%s is listed twice; name each pattern once",
			         cmq_diag_quote(s, strlen(s), q, sizeof(q)));
			ok = false;
		} else {
			mask |= bits[k];
		}
		cmq_jpath_pop(c, old);
	}
	cmq_jpath_pop(c, base);
	op->u.redact.patterns = mask;
	return ok;
}

static bool load_aggregate(struct cmq_jctx *c, struct json_object *o, struct cmq_scrub_op *op,
                           bool *nomem)
{
	static const char eps_range[] = "a number > 0 and <= 10 (omit it for no noise)";
	const char *group_by = NULL;
	uint64_t window = 0, k = 0;
	double eps = 0;
	bool ok = true, present = false;
	int rc;

	ok &= cmq_jstring(c, o, "group_by", true, 256, &group_by);
	ok &= cmq_juint(c, o, "window_seconds", true, 1, WINDOW_SECONDS_MAX, &window);
	ok &= cmq_juint(c, o, "k", true, 1, K_MAX, &k);
	if (load_number(c, o, "noise_epsilon", false, eps_range, &eps, &present) && present &&
	    !(eps > 0 && eps <= EPSILON_MAX)) {
		number_range_error(c, o, "noise_epsilon", eps_range);
		ok = false;
	} else if (!present && cmq_jget(c, o, "noise_epsilon", false) != NULL) {
		ok = false; /* present but not a number: reported */
	}
	if (group_by != NULL) {
		rc = load_path(c, "group_by", group_by, true, &op->u.agg.group_by);
		if (rc == CMQ_ERR_NOMEM) {
			*nomem = true;
			return false;
		}
		ok &= rc == CMQ_OK;
		op->u.agg.group_by_text = cmq_strdup(group_by);
		if (op->u.agg.group_by_text == NULL) {
			*nomem = true;
			return false;
		}
	}
	op->u.agg.window_seconds = (uint32_t)window;
	op->u.agg.k = (uint32_t)k;
	op->u.agg.epsilon = present ? eps : 0;
	return ok && group_by != NULL;
}

bool cmq_scrub_op_load(struct cmq_jctx *c, struct json_object *o, struct cmq_scrub_op *op)
{
	uint64_t secs = 0;
	bool nomem = false, ok;
	int rc;

	memset(&op->cpath, 0, sizeof(op->cpath));
	memset(&op->u, 0, sizeof(op->u));
	rc = load_path(c, "path", op->path, op->kind == CMQ_SCRUB_AGGREGATE, &op->cpath);
	if (rc == CMQ_ERR_NOMEM)
		return false;
	ok = rc == CMQ_OK;
	switch (op->kind) {
	case CMQ_SCRUB_GENERALISE_LOCATION:
		ok &= load_location(c, o, op);
		break;
	case CMQ_SCRUB_COARSEN_TIME:
		ok &= cmq_juint(c, o, "seconds", true, 1, TIME_SECONDS_MAX, &secs);
		op->u.time.seconds = (uint32_t)secs;
		break;
	case CMQ_SCRUB_ROUND:
		ok &= load_round(c, o, op);
		break;
	case CMQ_SCRUB_BUCKET:
		ok &= load_bucket(c, o, op, &nomem);
		break;
	case CMQ_SCRUB_REDACT:
		ok &= load_redact(c, o, op);
		break;
	case CMQ_SCRUB_AGGREGATE:
		ok &= load_aggregate(c, o, op, &nomem);
		break;
	default:
		break;
	}
	return ok && !nomem;
}
