/*
 * scrub.c - the scrub engine (scrub.h): parses a payload strictly and builds the
 * scrubbed payload from nothing, one profile operation after another.
 *
 * Parsing. Nesting counts objects and arrays inside each other ({"a": {"b": [1]}} is
 * 3). The size is checked before anything is read; then the bytes must be valid
 * UTF-8 (cmq_utf8_valid: no overlongs, no surrogates) and pass a short pre-scan for
 * what json-c 0.16 accepts even with JSON_TOKENER_STRICT: NaN and Infinity, single
 * quotes, raw control characters inside strings, NUL bytes. json-c then parses with
 * the depth limit and JSON_TOKENER_STRICT; anything after the value but whitespace is
 * NOT_JSON, a value that is not an object NOT_OBJECT. Duplicate keys keep json-c's
 * behaviour (the last wins): consent, scrubbing and the leak guard all read the same
 * tree, so a second key cannot show one value to one check and another to the next.
 *
 * Building. The output is a new object. Paths are walked in the input and in the
 * output in step; an output container (object, or array for "[]" / "[N]") is created
 * only when a value is written below it, so nothing a profile did not name reaches the
 * output, not even an empty object. Output conventions (the golden files in
 * tests/unit/data/scrub/ pin them):
 *  - "[]": the output array has the input array's length and element i comes from
 *    input element i; an element nothing was written to is null. "[N]" writes
 *    element N, with null before it where nothing was written.
 *  - a path that runs into a missing key, an index past the end of an array or a JSON
 *    null is absent: skipped, nothing written. A value on the way that is not the
 *    container the path says (an array where a key follows, a string where "[]"
 *    follows) fails the message with WRONG_TYPE - except for keep, which then copies
 *    nothing - because a keep of an ancestor may have copied it raw and a skipped
 *    drop or pseudonymise inside it would leak. A leaf of the wrong type or value
 *    fails the message too.
 *  - a later op replaces what an earlier op wrote at the same place, also a
 *    container written where a scalar was ("keep a" then "redact a.b" redacts a.b
 *    inside the kept copy).
 *  - drop removes the path from the output built so far; an array element it names
 *    becomes null so the other elements keep their positions.
 *  - numbers computed here are printed with at most the digits their op implies
 *    (grid coordinates 6 decimals, round the step's decimals), never as
 *    0.30000000000000004; kept numbers are printed as they were written.
 * Per-op details are at each op below. Redaction patterns: redact.c (and
 * config/README.md) documents exactly what each one matches.
 *
 * Failure: any error frees the partial output; *out is NULL and fail names the op's
 * path and what was wrong. json-c allocation failures become CMQ_DROP_INTERNAL.
 *
 * Cost: a pre-scan and json-c parse of the payload; per op a walk of its path and a
 * json-c value; no path is parsed here. The only allocation through alloc.h is a
 * scratch buffer when a redacted string does not fit 512 bytes on the stack. Measured
 * on a 2.1 GHz EPYC: ~5 us for a 318-byte AirQualityObserved and the example
 * air-quality profile (parse ~3.5, scrub ~1.2, print ~0.7). Thread: see scrub.h.
 */
#include "scrub.h"

#include "alloc.h"
#include "error.h"
#include "policy.h"
#include "pseudo.h"
#include "topic.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h> /* isfinite only: the core links without libm */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define DEPTH_CAP    1024              /* the largest nesting limit a caller may ask for */
#define MS_THRESHOLD 100000000000LL    /* integer times at or above this are milliseconds */
#define TIME_MIN_S   (-62135596800LL)  /* 0001-01-01T00:00:00Z */
#define TIME_MAX_MS  253402300799999LL /* 9999-12-31T23:59:59.999Z */
#define COUNT_MAX    1000000000u
#define REDACT_STACK 512
#define DOMAIN_MAX   (CMQ_ID_FIELD_MAX + 1 + 512)

/* ---- numbers, without libm ---- */

static double dabs(double x)
{
	return x < 0 ? -x : x;
}

/* floor(); values beyond 2^52 (and NaN, infinities) are already whole. */
static double dfloor(double x)
{
	double t;

	if (!(dabs(x) < 4503599627370496.0))
		return x;
	t = (double)(int64_t)x;
	return t > x ? t - 1 : t;
}

/* Nearest whole number, halves away from zero. */
static double dround(double x)
{
	double a = dabs(x), f = dfloor(a);

	if (a - f >= 0.5)
		f += 1;
	return x < 0 ? -f : f;
}

static const double pow10_table[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

/* ---- parsing ---- */

static bool is_word_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* What json-c accepts in strict mode but JSON does not; NONE if none of it. */
static enum cmq_drop prescan(const unsigned char *s, size_t len)
{
	bool in_string = false;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = s[i];

		if (in_string) {
			if (c == '\\')
				i++; /* json-c checks the escape itself */
			else if (c == '"')
				in_string = false;
			else if (c < 0x20)
				return CMQ_DROP_NOT_JSON;
		} else if (c == '"') {
			in_string = true;
		} else if (c == '\'' || c == '\0') {
			return CMQ_DROP_NOT_JSON;
		} else if (is_word_char(c)) {
			size_t w = i;

			while (w < len && is_word_char(s[w]))
				w++;
			/* An exponent follows a digit or '.'; other words are literals. */
			if (!(i > 0 && ((s[i - 1] >= '0' && s[i - 1] <= '9') || s[i - 1] == '.')) &&
			    !(w - i == 4 &&
			      (memcmp(s + i, "true", 4) == 0 || memcmp(s + i, "null", 4) == 0)) &&
			    !(w - i == 5 && memcmp(s + i, "false", 5) == 0))
				return CMQ_DROP_NOT_JSON;
			i = w - 1;
		}
	}
	return CMQ_DROP_NONE;
}

enum cmq_drop cmq_scrub_parse(const void *payload, size_t len, size_t max_bytes, int max_depth,
                              struct json_object **out)
{
	const unsigned char *s = payload;
	struct json_tokener *tok;
	struct json_object *root;
	enum json_tokener_error jerr;
	enum cmq_drop reason;
	size_t end;

	*out = NULL;
	if (len > max_bytes || len > INT_MAX)
		return CMQ_DROP_TOO_LARGE;
	if (len == 0 || payload == NULL)
		return CMQ_DROP_NOT_JSON;
	if (!cmq_utf8_valid(payload, len))
		return CMQ_DROP_BAD_UTF8;
	reason = prescan(s, len);
	if (reason != CMQ_DROP_NONE)
		return reason;
	if (max_depth < 1)
		max_depth = 1;
	if (max_depth > DEPTH_CAP)
		max_depth = DEPTH_CAP;
	/* json-c counts the innermost value as a level too: {"a": 1} is depth 2 to it. */
	tok = json_tokener_new_ex(max_depth + 1);
	if (tok == NULL)
		return CMQ_DROP_INTERNAL;
	/* Not JSON_TOKENER_VALIDATE_UTF8: cmq_utf8_valid checked every byte already, more
	 * strictly (json-c 0.16 takes UTF-8-encoded surrogates), and the flag costs ~15%. */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, payload, (int)len);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_continue) {
		/* A bare number at the top waits for more input: a NUL byte ends it. */
		root = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
		end = len;
	} else {
		end = json_tokener_get_parse_end(tok);
	}
	json_tokener_free(tok);
	if (jerr != json_tokener_success || root == NULL) {
		json_object_put(root);
		if (jerr == json_tokener_error_depth)
			return CMQ_DROP_TOO_DEEP;
		if (jerr == json_tokener_error_parse_utf8_string)
			return CMQ_DROP_BAD_UTF8;
		return CMQ_DROP_NOT_JSON;
	}
	for (size_t i = end; i < len; i++) {
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') {
			json_object_put(root);
			return CMQ_DROP_NOT_JSON;
		}
	}
	if (!json_object_is_type(root, json_type_object)) {
		json_object_put(root);
		return CMQ_DROP_NOT_OBJECT;
	}
	*out = root;
	return CMQ_DROP_NONE;
}

/* ---- failures ---- */

struct run {
	const struct cmq_profile *prof;
	const struct cmq_scrub_op *op;
	const struct cmq_scrub_env *env;
	struct cmq_scrub_fail *fail;
};

static const char *type_name(struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null:
		return "null";
	case json_type_boolean:
		return "a boolean";
	case json_type_int:
		return "an integer";
	case json_type_double:
		return "a decimal number";
	case json_type_string:
		return "a string";
	case json_type_array:
		return "an array";
	case json_type_object:
		return "an object";
	}
	return "an unknown value";
}

static enum cmq_drop fail(struct run *r, enum cmq_drop reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum cmq_drop fail(struct run *r, enum cmq_drop reason, const char *fmt, ...)
{
	va_list ap;

	r->fail->reason = reason;
	va_start(ap, fmt);
	vsnprintf(r->fail->detail, sizeof(r->fail->detail), fmt, ap);
	va_end(ap);
	return reason;
}

static enum cmq_drop wrong_type(struct run *r, const char *expected, struct json_object *v)
{
	return fail(r, CMQ_DROP_WRONG_TYPE, "expected %s, got %s", expected, type_name(v));
}

static enum cmq_drop nomem(struct run *r)
{
	return fail(r, CMQ_DROP_INTERNAL, "out of memory");
}

static bool is_number(struct json_object *v)
{
	return json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double);
}

/* An int64 from a json-c integer; false if it is above INT64_MAX (json-c keeps those). */
static bool int_value(struct json_object *v, int64_t *out)
{
	*out = json_object_get_int64(v);
	return !(*out == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX);
}

/* A double printed with at most `decimals` decimals and no trailing zeros ("52.5", "4.0"). */
static struct json_object *new_decimal(double x, int decimals)
{
	char buf[400];
	double scale = pow10_table[decimals];
	size_t n;

	x = dround(x * scale) / scale;
	if (x == 0)
		x = 0; /* no "-0.0" */
	if (!isfinite(x) || dabs(x) >= 1e300)
		return NULL;
	snprintf(buf, sizeof(buf), "%.*f", decimals, x);
	n = strlen(buf);
	if (strchr(buf, '.') != NULL) {
		while (n > 0 && buf[n - 1] == '0')
			n--;
		if (buf[n - 1] == '.')
			n++; /* keep one zero: "4.0" */
		buf[n] = '\0';
	} else if (n + 2 < sizeof(buf)) {
		memcpy(buf + n, ".0", 3);
	}
	return json_object_new_double_s(x, buf);
}

/* ---- output slots: containers created only when something is written below them ---- */

enum slot_kind { SLOT_ROOT, SLOT_MEMBER, SLOT_ELEMENT };

struct slot {
	struct slot *up;
	enum slot_kind kind;
	const char *key; /* SLOT_MEMBER */
	size_t index;    /* SLOT_ELEMENT */
	size_t pad;      /* an array made here gets at least this many elements ("[]") */
	struct json_object *node;
};

static struct json_object *materialise(struct slot *s, enum json_type t)
{
	struct json_object *parent, *cur = NULL, *made;

	if (s->node != NULL && json_object_is_type(s->node, t))
		goto pad;
	if (s->kind == SLOT_ROOT)
		return NULL; /* the root is made by the caller */
	parent = materialise(s->up, s->kind == SLOT_MEMBER ? json_type_object : json_type_array);
	if (parent == NULL)
		return NULL;
	if (s->kind == SLOT_MEMBER)
		json_object_object_get_ex(parent, s->key, &cur);
	else if (s->index < json_object_array_length(parent))
		cur = json_object_array_get_idx(parent, s->index);
	if (cur != NULL && json_object_is_type(cur, t)) {
		s->node = cur;
		goto pad;
	}
	made = t == json_type_object ? json_object_new_object() : json_object_new_array();
	if (made == NULL)
		return NULL;
	if ((s->kind == SLOT_MEMBER ? json_object_object_add(parent, s->key, made)
	                            : json_object_array_put_idx(parent, s->index, made)) != 0) {
		json_object_put(made);
		return NULL;
	}
	s->node = made;
pad:
	if (t == json_type_array && json_object_array_length(s->node) < s->pad &&
	    json_object_array_put_idx(s->node, s->pad - 1, NULL) != 0)
		return NULL;
	return s->node;
}

/* Write v (ownership passes, also on failure) at s; JSON null is v == NULL. */
static bool slot_set(struct slot *s, struct json_object *v)
{
	struct json_object *parent;

	parent = materialise(s->up, s->kind == SLOT_MEMBER ? json_type_object : json_type_array);
	if (parent == NULL ||
	    (s->kind == SLOT_MEMBER ? json_object_object_add(parent, s->key, v)
	                            : json_object_array_put_idx(parent, s->index, v)) != 0) {
		json_object_put(v);
		return false;
	}
	return true;
}

/* ---- pseudonymise: string or integer -> 32 hex digits ---- */

static enum cmq_drop op_pseudonymise(struct run *r, struct json_object *v, struct json_object **res)
{
	char dom[DOMAIN_MAX], num[24], ps[CMQ_PSEUDO_HEX + 1];
	const char *s;
	size_t len;
	int dlen;
	int64_t i;

	if (json_object_is_type(v, json_type_string)) {
		s = json_object_get_string(v);
		len = (size_t)json_object_get_string_len(v);
		if (len == 0)
			return fail(r, CMQ_DROP_BAD_VALUE, "empty string; nothing to pseudonymise");
	} else if (json_object_is_type(v, json_type_int)) {
		int n = int_value(v, &i)
		            ? snprintf(num, sizeof(num), "%" PRId64, i)
		            : snprintf(num, sizeof(num), "%" PRIu64, json_object_get_uint64(v));

		s = num;
		len = (size_t)n;
	} else {
		return wrong_type(r, "a string or an integer", v);
	}
	if (r->env == NULL || r->env->pseudo == NULL)
		return fail(r, CMQ_DROP_NO_KEY, "no pseudonym key is loaded");
	dlen = snprintf(dom, sizeof(dom), "%s/%s", r->prof->id ? r->prof->id : "", r->op->path);
	if (dlen < 0 || (size_t)dlen >= sizeof(dom))
		return fail(r, CMQ_DROP_INTERNAL, "pseudonym domain too long");
	if (cmq_pseudo_compute(r->env->pseudo, r->env->now, dom, (size_t)dlen, s, len, ps) !=
	    CMQ_OK)
		return fail(r, CMQ_DROP_INTERNAL, "pseudonymiser failed");
	*res = json_object_new_string_len(ps, CMQ_PSEUDO_HEX);
	return *res ? CMQ_DROP_NONE : nomem(r);
}

/* ---- generalise_location ---- */

void cmq_geohash(double lat, double lon, int precision, char *out)
{
	static const char base32[] = "0123456789bcdefghjkmnpqrstuvwxyz";
	double lat_lo = -90, lat_hi = 90, lon_lo = -180, lon_hi = 180;
	int n = 0, bit = 0, ch = 0;
	bool even = true; /* even bits refine longitude */

	if (precision < 1)
		precision = 1;
	if (precision > 12)
		precision = 12;
	while (n < precision) {
		double *lo = even ? &lon_lo : &lat_lo, *hi = even ? &lon_hi : &lat_hi;
		double mid = (*lo + *hi) / 2, x = even ? lon : lat;

		ch <<= 1;
		if (x >= mid) {
			ch |= 1;
			*lo = mid;
		} else {
			*hi = mid;
		}
		even = !even;
		if (++bit == 5) {
			out[n++] = base32[ch];
			bit = 0;
			ch = 0;
		}
	}
	out[n] = '\0';
}

enum point_shape { SHAPE_GEOJSON, SHAPE_LATLON, SHAPE_LATITUDE, SHAPE_ARRAY };

static const char point_kinds[] =
    "a GeoJSON Point, {\"lat\", \"lon\"}, {\"latitude\", \"longitude\"} or [lon, lat]";

/* Two numbers from members a and b of o; 1 = read, 0 = neither present, -1 = bad. */
static int member_pair(struct json_object *o, const char *a, const char *b, double *va, double *vb)
{
	struct json_object *x = NULL, *y = NULL;
	bool hx = json_object_object_get_ex(o, a, &x), hy = json_object_object_get_ex(o, b, &y);

	if (!hx && !hy)
		return 0;
	if (!is_number(x) || !is_number(y))
		return -1;
	*va = json_object_get_double(x);
	*vb = json_object_get_double(y);
	return 1;
}

static enum cmq_drop read_point(struct run *r, struct json_object *v, double *lat, double *lon,
                                enum point_shape *shape)
{
	struct json_object *t, *c;
	int got;

	if (json_object_is_type(v, json_type_array)) {
		if (json_object_array_length(v) != 2 ||
		    !is_number(json_object_array_get_idx(v, 0)) ||
		    !is_number(json_object_array_get_idx(v, 1)))
			return fail(r, CMQ_DROP_WRONG_TYPE, "expected [lon, lat]: two numbers");
		*lon = json_object_get_double(json_object_array_get_idx(v, 0));
		*lat = json_object_get_double(json_object_array_get_idx(v, 1));
		*shape = SHAPE_ARRAY;
		return CMQ_DROP_NONE;
	}
	if (!json_object_is_type(v, json_type_object))
		return wrong_type(r, point_kinds, v);
	if (json_object_object_get_ex(v, "type", &t)) {
		size_t n;

		if (!json_object_is_type(t, json_type_string) ||
		    strcmp(json_object_get_string(t), "Point") != 0)
			return fail(r, CMQ_DROP_WRONG_TYPE, "GeoJSON geometry is not a Point");
		if (!json_object_object_get_ex(v, "coordinates", &c) ||
		    !json_object_is_type(c, json_type_array) ||
		    (n = json_object_array_length(c)) < 2 || n > 3)
			return fail(
			    r, CMQ_DROP_WRONG_TYPE,
			    "GeoJSON Point coordinates must be [lon, lat] or [lon, lat, alt]");
		for (size_t i = 0; i < n; i++) {
			if (!is_number(json_object_array_get_idx(c, i)))
				return fail(r, CMQ_DROP_WRONG_TYPE,
				            "GeoJSON Point coordinates must be numbers");
		}
		*lon = json_object_get_double(json_object_array_get_idx(c, 0));
		*lat = json_object_get_double(json_object_array_get_idx(c, 1));
		*shape = SHAPE_GEOJSON;
		return CMQ_DROP_NONE;
	}
	got = member_pair(v, "lat", "lon", lat, lon);
	*shape = SHAPE_LATLON;
	if (got == 0) {
		got = member_pair(v, "latitude", "longitude", lat, lon);
		*shape = SHAPE_LATITUDE;
	}
	if (got == 1)
		return CMQ_DROP_NONE;
	if (got < 0)
		return fail(r, CMQ_DROP_WRONG_TYPE, "latitude and longitude must both be numbers");
	return fail(r, CMQ_DROP_WRONG_TYPE, "expected %s, got an object without them", point_kinds);
}

/* Centre of the grid cell holding x, kept inside [-limit, limit]. */
static double snap(double x, double g, double limit)
{
	double c = dfloor(x / g) * g + g / 2;

	return c > limit ? limit : c < -limit ? -limit : c;
}

static enum cmq_drop op_location(struct run *r, struct json_object *v, struct json_object **res)
{
	const struct cmq_scrub_op *op = r->op;
	enum point_shape shape = SHAPE_ARRAY;
	double lat = 0, lon = 0, g;
	struct json_object *a = NULL, *b = NULL, *o = NULL, *arr = NULL;
	enum cmq_drop rc = read_point(r, v, &lat, &lon, &shape);

	if (rc != CMQ_DROP_NONE)
		return rc;
	if (!isfinite(lat) || !isfinite(lon) || lat < -90 || lat > 90 || lon < -180 || lon > 180)
		return fail(r, CMQ_DROP_BAD_VALUE,
		            "latitude must be in [-90, 90] and longitude in [-180, 180]");
	if (op->u.loc.geohash_precision > 0) {
		char gh[13];

		cmq_geohash(lat, lon, op->u.loc.geohash_precision, gh);
		*res = json_object_new_string(gh);
		return *res ? CMQ_DROP_NONE : nomem(r);
	}
	g = op->u.loc.grid_degrees;
	if (!(g > 0))
		return fail(r, CMQ_DROP_INTERNAL, "grid_degrees not set");
	a = new_decimal(snap(lon, g, 180), 6);
	b = new_decimal(snap(lat, g, 90), 6);
	if (a == NULL || b == NULL)
		goto oom;
	if (shape == SHAPE_LATLON || shape == SHAPE_LATITUDE) {
		bool l = shape == SHAPE_LATLON;

		o = json_object_new_object();
		if (o == NULL || json_object_object_add(o, l ? "lat" : "latitude", b) != 0)
			goto oom;
		b = NULL;
		if (json_object_object_add(o, l ? "lon" : "longitude", a) != 0)
			goto oom;
		*res = o;
		return CMQ_DROP_NONE;
	}
	arr = json_object_new_array_ext(2);
	if (arr == NULL || json_object_array_add(arr, a) != 0)
		goto oom;
	a = NULL;
	if (json_object_array_add(arr, b) != 0)
		goto oom;
	b = NULL;
	if (shape == SHAPE_ARRAY) {
		*res = arr;
		return CMQ_DROP_NONE;
	}
	o = json_object_new_object();
	a = json_object_new_string("Point");
	if (o == NULL || a == NULL || json_object_object_add(o, "type", a) != 0)
		goto oom;
	a = NULL;
	if (json_object_object_add(o, "coordinates", arr) != 0)
		goto oom;
	*res = o;
	return CMQ_DROP_NONE;
oom:
	json_object_put(a);
	json_object_put(b);
	json_object_put(arr);
	json_object_put(o);
	return nomem(r);
}

/* ---- coarsen_time ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t era;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool fixed_digits(const char *s, size_t len, size_t *p, size_t n, unsigned *val)
{
	*val = 0;
	if (len - *p < n)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[*p + i];

		if (c < '0' || c > '9')
			return false;
		*val = *val * 10 + (unsigned)(c - '0');
	}
	*p += n;
	return true;
}

/*
 * YYYY-MM-DD, or YYYY-MM-DD('T'|'t'|' ')HH:MM[:SS[.frac]][Z|z|+HH:MM|+HHMM|+HH|-...]
 * (no zone = UTC) -> Unix seconds (the fraction is dropped: the floor of the instant).
 */
static bool parse_iso(const char *s, size_t len, int64_t *out)
{
	static const unsigned mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	unsigned y, mo, d, h = 0, mi = 0, sec = 0, zh = 0, zm = 0;
	size_t p = 0;
	int64_t t, zsign = 0;

	if (!fixed_digits(s, len, &p, 4, &y) || p >= len || s[p++] != '-' ||
	    !fixed_digits(s, len, &p, 2, &mo) || p >= len || s[p++] != '-' ||
	    !fixed_digits(s, len, &p, 2, &d))
		return false;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1])
		return false;
	if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return false;
	if (p < len) {
		if (s[p] != 'T' && s[p] != 't' && s[p] != ' ')
			return false;
		p++;
		if (!fixed_digits(s, len, &p, 2, &h) || p >= len || s[p++] != ':' ||
		    !fixed_digits(s, len, &p, 2, &mi) || h > 23 || mi > 59)
			return false;
		if (p < len && s[p] == ':') {
			p++;
			if (!fixed_digits(s, len, &p, 2, &sec) || sec > 60)
				return false;
			if (p < len && s[p] == '.') {
				size_t f = ++p;

				while (p < len && s[p] >= '0' && s[p] <= '9')
					p++;
				if (p == f)
					return false;
			}
		}
		if (p < len && (s[p] == 'Z' || s[p] == 'z')) {
			p++;
		} else if (p < len && (s[p] == '+' || s[p] == '-')) {
			zsign = s[p++] == '+' ? 1 : -1;
			if (!fixed_digits(s, len, &p, 2, &zh) || zh > 23)
				return false;
			if (p < len) {
				p += s[p] == ':';
				if (!fixed_digits(s, len, &p, 2, &zm) || zm > 59)
					return false;
			}
		}
		if (p != len)
			return false;
	}
	t = days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + sec;
	*out = t - zsign * ((int64_t)zh * 3600 + (int64_t)zm * 60);
	return true;
}

static int64_t floor_to(int64_t v, int64_t unit)
{
	int64_t q = v / unit;

	if (v % unit != 0 && v < 0)
		q--;
	return q * unit;
}

static enum cmq_drop op_time(struct run *r, struct json_object *v, struct json_object **res)
{
	int64_t secs = r->op->u.time.seconds, t;

	if (secs < 1)
		return fail(r, CMQ_DROP_INTERNAL, "seconds not set");
	if (json_object_is_type(v, json_type_string)) {
		char buf[32];
		int64_t y;
		unsigned mo, d, rem;

		if (!parse_iso(json_object_get_string(v), (size_t)json_object_get_string_len(v),
		               &t))
			return fail(r, CMQ_DROP_BAD_VALUE,
			            "not an ISO 8601 time (YYYY-MM-DDTHH:MM:SS[.frac][Z|+HH:MM] "
			            "or YYYY-MM-DD)");
		t = floor_to(t, secs);
		civil_from_days(floor_to(t, 86400) / 86400, &y, &mo, &d);
		if (y < 0 || y > 9999)
			return fail(r, CMQ_DROP_BAD_VALUE, "time outside the years 0000-9999");
		rem = (unsigned)(t - floor_to(t, 86400));
		snprintf(buf, sizeof(buf), "%04d-%02u-%02uT%02u:%02u:%02uZ", (int)y, mo, d,
		         rem / 3600, rem / 60 % 60, rem % 60);
		*res = json_object_new_string(buf);
		return *res ? CMQ_DROP_NONE : nomem(r);
	}
	if (json_object_is_type(v, json_type_int)) {
		if (!int_value(v, &t) || t < TIME_MIN_S || t > TIME_MAX_MS)
			return fail(r, CMQ_DROP_BAD_VALUE, "Unix time out of range");
	} else if (json_object_is_type(v, json_type_double)) {
		double x = json_object_get_double(v);

		if (!isfinite(x) || x < (double)TIME_MIN_S || x > (double)TIME_MAX_MS)
			return fail(r, CMQ_DROP_BAD_VALUE, "Unix time out of range");
		t = (int64_t)dfloor(x);
	} else {
		return wrong_type(r, "an ISO 8601 string or a Unix time", v);
	}
	*res = json_object_new_int64(floor_to(t, t >= MS_THRESHOLD ? secs * 1000 : secs));
	return *res ? CMQ_DROP_NONE : nomem(r);
}

/* ---- round, bucket ---- */

/* Decimals of a step (0.25 -> 2), at most 9. */
static int step_decimals(double step)
{
	double scaled = step;

	for (int d = 0; d < 9; d++, scaled *= 10) {
		if (dabs(scaled - dround(scaled)) <= 1e-9 * (scaled > 1 ? scaled : 1))
			return d;
	}
	return 9;
}

static enum cmq_drop op_round(struct run *r, struct json_object *v, struct json_object **res)
{
	double step = r->op->u.round.step, x, q, aq, n;
	bool integral = step == dfloor(step) && step <= 4611686018427387904.0;
	int64_t i;

	if (!is_number(v))
		return wrong_type(r, "a number", v);
	if (!(step > 0))
		return fail(r, CMQ_DROP_INTERNAL, "step not set");
	if (integral && json_object_is_type(v, json_type_int) && int_value(v, &i)) {
		int64_t s = (int64_t)step, rem = i % s, quot = i / s;

		/* Half away from zero: |rem| >= s / 2 moves one step out. */
		if (2 * (rem < 0 ? -(uint64_t)rem : (uint64_t)rem) >= (uint64_t)s)
			quot += i < 0 ? -1 : 1;
		if (quot > INT64_MAX / s || quot < INT64_MIN / s)
			return fail(r, CMQ_DROP_BAD_VALUE, "rounded value out of range");
		*res = json_object_new_int64(quot * s);
		return *res ? CMQ_DROP_NONE : nomem(r);
	}
	x = json_object_get_double(v);
	if (!isfinite(x))
		return fail(r, CMQ_DROP_BAD_VALUE, "not a finite number");
	q = x / step;
	aq = dabs(q);
	/* Half away from zero, tolerant of binary fractions (0.15 / 0.1 = 1.4999...). */
	n = dfloor(aq);
	if (aq - n >= 0.5 - 1e-9)
		n += 1;
	n = (q < 0 ? -n : n) * step;
	if (integral) {
		if (!(dabs(n) < 9.2e18))
			return fail(r, CMQ_DROP_BAD_VALUE, "rounded value out of range");
		*res = json_object_new_int64((int64_t)n);
	} else {
		if (!(dabs(n) < 1e300))
			return fail(r, CMQ_DROP_BAD_VALUE, "rounded value out of range");
		*res = new_decimal(n, step_decimals(step));
	}
	return *res ? CMQ_DROP_NONE : nomem(r);
}

static enum cmq_drop op_bucket(struct run *r, struct json_object *v, struct json_object **res)
{
	const double *b = r->op->u.bucket.bounds;
	size_t n = r->op->u.bucket.n;
	char label[80];
	double x;

	if (!is_number(v))
		return wrong_type(r, "a number", v);
	if (n == 0)
		return fail(r, CMQ_DROP_INTERNAL, "bounds not set");
	x = json_object_get_double(v);
	if (!isfinite(x))
		return fail(r, CMQ_DROP_BAD_VALUE, "not a finite number");
	if (x < b[0]) {
		snprintf(label, sizeof(label), "<%g", b[0]);
	} else if (x >= b[n - 1]) {
		snprintf(label, sizeof(label), ">=%g", b[n - 1]);
	} else {
		size_t i = 0;

		while (i + 1 < n && !(x < b[i + 1]))
			i++;
		snprintf(label, sizeof(label), "%g-%g", b[i], b[i + 1]);
	}
	*res = json_object_new_string(label);
	return *res ? CMQ_DROP_NONE : nomem(r);
}

/* ---- redact ---- */

static struct json_object *redact_string(struct json_object *v, unsigned mask)
{
	const char *s = json_object_get_string(v);
	size_t len = (size_t)json_object_get_string_len(v), cap, out_len = 0;
	char stack[REDACT_STACK], *buf = stack;
	struct json_object *res;
	int n;

	n = cmq_redact_len(s, len, mask, stack, sizeof(stack), &out_len);
	if (n < 0) {
		/* A replacement is at most 7/5 of what it replaces. */
		if (len > (SIZE_MAX - 16) / 2)
			return NULL;
		cap = 2 * len + 16;
		buf = cmq_malloc(cap);
		if (buf == NULL)
			return NULL;
		n = cmq_redact_len(s, len, mask, buf, cap, &out_len);
	}
	res = n < 0 || out_len > INT_MAX ? NULL : json_object_new_string_len(buf, (int)out_len);
	if (buf != stack)
		cmq_free(buf);
	return res;
}

/* A copy of v with every string inside redacted; NULL only when out of memory. */
static struct json_object *redact_tree(struct json_object *v, unsigned mask, bool *oom)
{
	struct json_object *res = NULL;

	switch (json_object_get_type(v)) {
	case json_type_string:
		res = redact_string(v, mask);
		break;
	case json_type_object:
		res = json_object_new_object();
		if (res == NULL)
			break;
		json_object_object_foreach(v, key, val)
		{
			struct json_object *c = redact_tree(val, mask, oom);

			if (*oom || json_object_object_add(res, key, c) != 0) {
				json_object_put(c);
				json_object_put(res);
				res = NULL;
				break;
			}
		}
		break;
	case json_type_array: {
		size_t n = json_object_array_length(v);

		res = json_object_new_array_ext(n > 0 && n < INT_MAX ? (int)n : 1);
		for (size_t i = 0; res != NULL && i < n; i++) {
			struct json_object *c =
			    redact_tree(json_object_array_get_idx(v, i), mask, oom);

			if (*oom || json_object_array_add(res, c) != 0) {
				json_object_put(c);
				json_object_put(res);
				res = NULL;
			}
		}
		break;
	}
	case json_type_null:
		return NULL; /* null stays null */
	default:
		if (json_object_deep_copy(v, &res, NULL) != 0)
			res = NULL;
		break;
	}
	if (res == NULL)
		*oom = true;
	return res;
}

static enum cmq_drop op_redact(struct run *r, struct json_object *v, struct json_object **res)
{
	bool oom = false;

	if (!json_object_is_type(v, json_type_string) &&
	    !json_object_is_type(v, json_type_object) && !json_object_is_type(v, json_type_array))
		return wrong_type(r, "a string, or an object or array of strings", v);
	*res = redact_tree(v, r->op->u.redact.patterns, &oom);
	return oom ? nomem(r) : CMQ_DROP_NONE;
}

/* ---- walking a path ---- */

/* Apply the current op to the value v found at its path, writing at s. */
static enum cmq_drop leaf(struct run *r, struct json_object *v, struct slot *s)
{
	struct json_object *res = NULL;
	enum cmq_drop rc;

	switch (r->op->kind) {
	case CMQ_SCRUB_KEEP:
		if (v != NULL && json_object_deep_copy(v, &res, NULL) != 0)
			return nomem(r);
		rc = CMQ_DROP_NONE;
		break;
	case CMQ_SCRUB_PSEUDONYMISE:
		rc = op_pseudonymise(r, v, &res);
		break;
	case CMQ_SCRUB_GENERALISE_LOCATION:
		rc = op_location(r, v, &res);
		break;
	case CMQ_SCRUB_COARSEN_TIME:
		rc = op_time(r, v, &res);
		break;
	case CMQ_SCRUB_ROUND:
		rc = op_round(r, v, &res);
		break;
	case CMQ_SCRUB_BUCKET:
		rc = op_bucket(r, v, &res);
		break;
	case CMQ_SCRUB_REDACT:
		rc = op_redact(r, v, &res);
		break;
	default:
		return fail(r, CMQ_DROP_INTERNAL, "operation cannot be applied to a field");
	}
	if (rc != CMQ_DROP_NONE)
		return rc;
	return slot_set(s, res) ? CMQ_DROP_NONE : nomem(r);
}

/*
 * A value on the way down a path that is not the container the path goes through. JSON
 * null holds nothing: skipped. Anything else might hold what the op was to scrub, and
 * an earlier keep of an ancestor may have copied it raw, so skipping could leak: the
 * message fails, except for keep, which then copies nothing.
 */
static enum cmq_drop mismatch(struct run *r, struct json_object *v, const char *expected,
                              const char *key)
{
	if (v == NULL || r->op->kind == CMQ_SCRUB_KEEP)
		return CMQ_DROP_NONE;
	return fail(r, CMQ_DROP_WRONG_TYPE, "expected %s at \"%s\", got %s", expected, key,
	            type_name(v));
}

/* Segment k of the op's path below the input value in (output: out). */
static enum cmq_drop walk(struct run *r, size_t k, struct json_object *in, struct slot *out)
{
	const struct cmq_scrub_seg *seg = &r->op->cpath.seg[k];
	bool last = k + 1 == r->op->cpath.n;
	struct json_object *child = NULL;
	struct slot member = {out, SLOT_MEMBER, seg->key, 0, 0, NULL};
	size_t n;

	if (!json_object_is_type(in, json_type_object))
		return mismatch(r, in, "an object", k > 0 ? r->op->cpath.seg[k - 1].key : "");
	if (!json_object_object_get_ex(in, seg->key, &child))
		return CMQ_DROP_NONE;
	if (seg->index == CMQ_SEG_KEY)
		return last ? leaf(r, child, &member) : walk(r, k + 1, child, &member);
	if (!json_object_is_type(child, json_type_array))
		return mismatch(r, child, "an array", seg->key);
	n = json_object_array_length(child);
	if (seg->index >= 0) {
		struct slot elem = {&member, SLOT_ELEMENT, NULL, (size_t)seg->index, 0, NULL};
		struct json_object *e;

		if ((size_t)seg->index >= n)
			return CMQ_DROP_NONE;
		e = json_object_array_get_idx(child, (size_t)seg->index);
		return last ? leaf(r, e, &elem) : walk(r, k + 1, e, &elem);
	}
	member.pad = n;
	for (size_t i = 0; i < n; i++) {
		struct slot elem = {&member, SLOT_ELEMENT, NULL, i, 0, NULL};
		struct json_object *e = json_object_array_get_idx(child, i);
		enum cmq_drop rc = last ? leaf(r, e, &elem) : walk(r, k + 1, e, &elem);

		if (rc != CMQ_DROP_NONE)
			return rc;
	}
	return CMQ_DROP_NONE;
}

/*
 * drop: remove the path from the output built so far; array elements become null. A
 * value on the way that is not the container the path goes through fails as in walk:
 * the field to drop might be inside it.
 */
static enum cmq_drop drop_walk(struct run *r, size_t k, struct json_object *out)
{
	const struct cmq_scrub_path *p = &r->op->cpath;
	const struct cmq_scrub_seg *seg = &p->seg[k];
	bool last = k + 1 == p->n;
	struct json_object *child = NULL;
	size_t n;

	if (!json_object_is_type(out, json_type_object))
		return mismatch(r, out, "an object", k > 0 ? p->seg[k - 1].key : "");
	if (!json_object_object_get_ex(out, seg->key, &child))
		return CMQ_DROP_NONE;
	if (seg->index == CMQ_SEG_KEY) {
		if (last) {
			json_object_object_del(out, seg->key);
			return CMQ_DROP_NONE;
		}
		return drop_walk(r, k + 1, child);
	}
	if (!json_object_is_type(child, json_type_array))
		return mismatch(r, child, "an array", seg->key);
	n = json_object_array_length(child);
	for (size_t i = seg->index >= 0 ? (size_t)seg->index : 0; i < n; i++) {
		enum cmq_drop rc = CMQ_DROP_NONE;

		if (last) {
			if (json_object_array_put_idx(child, i, NULL) != 0)
				rc = nomem(r);
		} else {
			rc = drop_walk(r, k + 1, json_object_array_get_idx(child, i));
		}
		if (rc != CMQ_DROP_NONE || seg->index >= 0)
			return rc;
	}
	return CMQ_DROP_NONE;
}

/* ---- aggregate ---- */

static struct json_object *path_value(struct json_object *root, const struct cmq_scrub_path *p,
                                      bool *found)
{
	struct json_object *cur = root;

	*found = false;
	for (size_t i = 0; i < p->n; i++) {
		const struct cmq_scrub_seg *seg = &p->seg[i];
		struct json_object *next = NULL;

		if (!json_object_is_type(cur, json_type_object) ||
		    !json_object_object_get_ex(cur, seg->key, &next))
			return NULL;
		if (seg->index >= 0) {
			if (!json_object_is_type(next, json_type_array) ||
			    (size_t)seg->index >= json_object_array_length(next))
				return NULL;
			next = json_object_array_get_idx(next, (size_t)seg->index);
		} else if (seg->index != CMQ_SEG_KEY) {
			return NULL;
		}
		cur = next;
	}
	*found = true;
	return cur;
}

struct json_object *cmq_scrub_path_get(struct json_object *root, const struct cmq_scrub_path *p)
{
	bool found;

	return path_value(root, p, &found);
}

static bool group_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == ':' || c == '-';
}

static enum cmq_drop op_aggregate(struct run *r, struct json_object *in, struct cmq_scrub_agg *agg)
{
	const struct cmq_scrub_op *op = r->op;
	bool found;
	struct json_object *g = path_value(in, &op->u.agg.group_by, &found), *c;
	const char *s;
	size_t len;
	double x;

	snprintf(r->fail->path, sizeof(r->fail->path), "%s",
	         op->u.agg.group_by_text ? op->u.agg.group_by_text : "");
	if (!found)
		return fail(r, CMQ_DROP_BAD_VALUE, "the group_by field is missing");
	if (!json_object_is_type(g, json_type_string))
		return wrong_type(r, "a string", g);
	s = json_object_get_string(g);
	len = (size_t)json_object_get_string_len(g);
	for (size_t i = 0; i < len; i++) {
		if (!group_char(s[i]))
			return fail(r, CMQ_DROP_BAD_VALUE,
			            "group must be 1-64 characters of A-Z a-z 0-9 _ . : -");
	}
	if (len == 0 || len > CMQ_GROUP_MAX)
		return fail(r, CMQ_DROP_BAD_VALUE,
		            "group must be 1-64 characters of A-Z a-z 0-9 _ . : -");
	snprintf(r->fail->path, sizeof(r->fail->path), "%s", op->path);
	c = path_value(in, &op->cpath, &found);
	if (!found)
		return fail(r, CMQ_DROP_BAD_VALUE, "the count field is missing");
	if (!is_number(c))
		return wrong_type(r, "a whole number", c);
	x = json_object_get_double(c);
	if (json_object_is_type(c, json_type_int)) {
		int64_t i;

		if (!int_value(c, &i) || i < 0 || i > (int64_t)COUNT_MAX)
			return fail(r, CMQ_DROP_BAD_VALUE, "count must be 0 to 1000000000");
		x = (double)i;
	} else if (!isfinite(x) || x < 0 || x > COUNT_MAX || x != dfloor(x)) {
		return fail(r, CMQ_DROP_BAD_VALUE, "count must be a whole number 0 to 1000000000");
	}
	agg->op = op;
	memcpy(agg->group, s, len);
	agg->group[len] = '\0';
	agg->count = (uint64_t)x;
	r->fail->path[0] = '\0';
	return CMQ_DROP_NONE;
}

/* ---- the profile ---- */

enum cmq_drop cmq_scrub_apply(const struct cmq_profile *prof, struct json_object *in,
                              const struct cmq_scrub_env *env, struct json_object **out,
                              struct cmq_scrub_agg *agg, struct cmq_scrub_fail *fail_out)
{
	struct cmq_scrub_fail scratch;
	struct run r = {prof, NULL, env, fail_out ? fail_out : &scratch};
	struct slot root = {NULL, SLOT_ROOT, NULL, 0, 0, NULL};
	enum cmq_drop rc = CMQ_DROP_NONE;

	*out = NULL;
	memset(r.fail, 0, sizeof(*r.fail));
	if (agg != NULL)
		memset(agg, 0, sizeof(*agg));
	if (prof == NULL || (prof->n_ops > 0 && prof->ops == NULL))
		return fail(&r, CMQ_DROP_INTERNAL, "no profile");
	if (!json_object_is_type(in, json_type_object))
		return fail(&r, CMQ_DROP_NOT_OBJECT, "expected an object, got %s", type_name(in));
	if (prof->aggregates) {
		r.op = &prof->ops[0];
		snprintf(r.fail->path, sizeof(r.fail->path), "%s", r.op->path ? r.op->path : "");
		if (prof->n_ops != 1 || r.op->kind != CMQ_SCRUB_AGGREGATE || agg == NULL)
			return fail(&r, CMQ_DROP_INTERNAL, "malformed aggregate profile");
		rc = op_aggregate(&r, in, agg);
		if (rc != CMQ_DROP_NONE)
			memset(agg, 0, sizeof(*agg));
		return rc;
	}
	root.node = json_object_new_object();
	if (root.node == NULL)
		return nomem(&r);
	for (size_t i = 0; i < prof->n_ops && rc == CMQ_DROP_NONE; i++) {
		r.op = &prof->ops[i];
		if (r.op->cpath.n == 0) {
			rc = fail(&r, CMQ_DROP_INTERNAL, "path not compiled");
		} else if (r.op->kind == CMQ_SCRUB_DROP) {
			rc = drop_walk(&r, 0, root.node);
		} else if (r.op->kind == CMQ_SCRUB_AGGREGATE) {
			rc = fail(&r, CMQ_DROP_INTERNAL,
			          "aggregate in a profile with other operations");
		} else {
			rc = walk(&r, 0, in, &root);
		}
		if (rc != CMQ_DROP_NONE)
			snprintf(r.fail->path, sizeof(r.fail->path), "%s",
			         r.op->path ? r.op->path : "");
	}
	if (rc != CMQ_DROP_NONE) {
		json_object_put(root.node);
		return rc;
	}
	*out = root.node;
	return CMQ_DROP_NONE;
}
