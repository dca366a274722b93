/*
 * register_render.c - the transparency register (register.h) as a Markdown page and
 * as a standalone HTML page, rendered from the JSON document alone so that anyone
 * holding the retained JSON renders the same page.
 *
 * One walk of the document writes both pages through a small set of primitives
 * (struct style): text from the document is always written through `text` or `code`,
 * which escape it for the target, and only fixed ASCII wording of this file is written
 * raw. So a purpose, a vendor name or a JSON path cannot break a table, open a tag or
 * start a script, whatever it contains:
 *  - HTML: & < > " ' become entities; control characters become spaces. No script,
 *    inline CSS only, <html lang="en"> and <meta charset="utf-8">.
 *  - Markdown: text is backslash-escaped (\ ` * _ [ ] < > | ~ & ! #), so it is neither
 *    markup nor raw HTML; code spans get a fence longer than any backtick run inside;
 *    '|' is written "\|" everywhere (GFM splits table cells before code spans); line
 *    breaks and other control characters become spaces, so a row stays one line.
 * The fixed wording avoids claims the code does not enforce: each sentence restates a
 * check of acl.c, scrub.c or pipeline.c.
 *
 * The document is checked while it is walked: a missing member or one of the wrong
 * type fails the render with CMQ_ERR_PARSE (nothing is guessed).
 *
 * Memory: one growing buffer through alloc.h, capped at CMQ_REGISTER_TEXT_MAX.
 * Cost: linear in the document. Thread: any; the document is only read.
 */
#include "register.h"

#include "alloc.h"
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- output buffer ---- */

struct ctx {
	char *s;
	size_t len, cap;
	int rc; /* first error: the rest of the walk writes nothing */
	const struct style *st;
	int cell; /* cells written in the current table row */
};

static void out_n(struct ctx *c, const char *s, size_t n)
{
	if (c->rc != CMQ_OK)
		return;
	if (n >= CMQ_REGISTER_TEXT_MAX - c->len) {
		c->rc = CMQ_ERR_TOO_BIG;
		return;
	}
	if (c->len + n + 1 > c->cap) {
		size_t cap = c->cap ? c->cap : 4096;
		char *t;

		while (cap < c->len + n + 1)
			cap = cap > CMQ_REGISTER_TEXT_MAX / 2 ? CMQ_REGISTER_TEXT_MAX : cap * 2;
		t = cmq_realloc(c->s, cap);
		if (t == NULL) {
			c->rc = CMQ_ERR_NOMEM;
			return;
		}
		c->s = t;
		c->cap = cap;
	}
	memcpy(c->s + c->len, s, n);
	c->len += n;
	c->s[c->len] = '\0';
}

/* Fixed wording of this file: written as it is. */
static void lit(struct ctx *c, const char *s)
{
	out_n(c, s, strlen(s));
}

static void litf(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void litf(struct ctx *c, const char *fmt, ...)
{
	char buf[128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		if (c->rc == CMQ_OK)
			c->rc = CMQ_ERR_TOO_BIG;
		return;
	}
	out_n(c, buf, (size_t)n);
}

static bool is_control(unsigned char ch)
{
	return ch < 0x20 || ch == 0x7f;
}

/* ---- the two targets ---- */

struct style {
	void (*text)(struct ctx *c, const char *s); /* document text, escaped */
	void (*code)(struct ctx *c, const char *s); /* a topic, path or id, escaped */
	void (*begin)(struct ctx *c, const char *city);
	void (*end)(struct ctx *c);
	void (*h_begin)(struct ctx *c, int level);
	void (*h_end)(struct ctx *c, int level);
	void (*p_begin)(struct ctx *c);
	void (*p_end)(struct ctx *c);
	void (*table_begin)(struct ctx *c, const char *const *heads, size_t n);
	void (*table_end)(struct ctx *c);
	void (*row_begin)(struct ctx *c);
	void (*row_end)(struct ctx *c);
	void (*cell)(struct ctx *c); /* before each cell of a row */
	void (*br)(struct ctx *c);   /* a line break inside a cell */
};

static void html_text(struct ctx *c, const char *s)
{
	const char *run = s;

	for (; *s; s++) {
		const char *rep;

		switch (*s) {
		case '&':
			rep = "&amp;";
			break;
		case '<':
			rep = "&lt;";
			break;
		case '>':
			rep = "&gt;";
			break;
		case '"':
			rep = "&quot;";
			break;
		case '\'':
			rep = "&#39;";
			break;
		default:
			rep = is_control((unsigned char)*s) ? " " : NULL;
			break;
		}
		if (rep != NULL) {
			out_n(c, run, (size_t)(s - run));
			lit(c, rep);
			run = s + 1;
		}
	}
	out_n(c, run, (size_t)(s - run));
}

static void html_code(struct ctx *c, const char *s)
{
	lit(c, "<code>");
	html_text(c, s);
	lit(c, "</code>");
}

static void html_begin(struct ctx *c, const char *city)
{
	lit(c, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
	       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
	       "<title>Transparency register");
	if (city != NULL) {
		lit(c, ": ");
		html_text(c, city);
	}
	lit(c, "</title>\n<style>\n"
	       "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;"
	       "line-height:1.4;color:#111}\n"
	       "table{border-collapse:collapse;width:100%;margin:0.5em 0 1.5em}\n"
	       "th,td{border:1px solid #999;padding:0.3em 0.5em;text-align:left;"
	       "vertical-align:top}\n"
	       "thead th{background:#eee}\ntbody th{width:13em;font-weight:600}\n"
	       "code{font-size:0.95em;overflow-wrap:anywhere}\n"
	       "</style>\n</head>\n<body>\n<h1>Transparency register");
	if (city != NULL) {
		lit(c, ": ");
		html_text(c, city);
	}
	lit(c, "</h1>\n");
}

static void html_end(struct ctx *c)
{
	lit(c, "</body>\n</html>\n");
}

static void html_h_begin(struct ctx *c, int level)
{
	litf(c, "<h%d>", level);
}

static void html_h_end(struct ctx *c, int level)
{
	litf(c, "</h%d>\n", level);
}

static void html_p_begin(struct ctx *c)
{
	lit(c, "<p>");
}

static void html_p_end(struct ctx *c)
{
	lit(c, "</p>\n");
}

static void html_table_begin(struct ctx *c, const char *const *heads, size_t n)
{
	lit(c, "<table>\n<thead><tr>");
	for (size_t i = 0; i < n; i++) {
		lit(c, "<th scope=\"col\">");
		lit(c, heads[i]);
		lit(c, "</th>");
	}
	lit(c, "</tr></thead>\n<tbody>\n");
}

static void html_table_end(struct ctx *c)
{
	lit(c, "</tbody>\n</table>\n");
}

static void html_row_begin(struct ctx *c)
{
	c->cell = 0;
	lit(c, "<tr>");
}

/* The first cell of a row is its label (a row header). */
static void html_cell_close(struct ctx *c)
{
	if (c->cell > 0)
		lit(c, c->cell == 1 ? "</th>" : "</td>");
}

static void html_row_end(struct ctx *c)
{
	html_cell_close(c);
	lit(c, "</tr>\n");
}

static void html_cell(struct ctx *c)
{
	html_cell_close(c);
	lit(c, c->cell == 0 ? "<th scope=\"row\">" : "<td>");
	c->cell++;
}

static void html_br(struct ctx *c)
{
	lit(c, "<br>");
}

static const struct style html_style = {
    html_text,      html_code,    html_begin, html_end,         html_h_begin,
    html_h_end,     html_p_begin, html_p_end, html_table_begin, html_table_end,
    html_row_begin, html_row_end, html_cell,  html_br,
};

static void md_text(struct ctx *c, const char *s)
{
	const char *run = s;

	for (; *s; s++) {
		if (is_control((unsigned char)*s)) {
			out_n(c, run, (size_t)(s - run));
			lit(c, " ");
			run = s + 1;
		} else if (strchr("\\`*_[]<>|~&!#", *s) != NULL) {
			out_n(c, run, (size_t)(s - run));
			out_n(c, "\\", 1);
			run = s; /* the character itself follows its backslash */
		}
	}
	out_n(c, run, (size_t)(s - run));
}

/*
 * A code span: backslashes mean nothing inside one, so the fence is one backtick longer
 * than the longest run inside, with a space inside it when the text starts or ends with
 * a backtick (or is empty). '|' is still escaped: GFM finds table cells first.
 */
static void md_code(struct ctx *c, const char *s)
{
	size_t longest = 0, run = 0, n = strlen(s);
	bool pad;

	for (size_t i = 0; i < n; i++) {
		run = s[i] == '`' ? run + 1 : 0;
		if (run > longest)
			longest = run;
	}
	pad = n == 0 || s[0] == '`' || s[n - 1] == '`';
	for (size_t i = 0; i <= longest; i++)
		lit(c, "`");
	if (pad)
		lit(c, " ");
	for (const char *p = s, *from = s;; p++) {
		if (*p == '\0' || *p == '|' || is_control((unsigned char)*p)) {
			out_n(c, from, (size_t)(p - from));
			if (*p == '\0')
				break;
			lit(c, *p == '|' ? "\\|" : " ");
			from = p + 1;
		}
	}
	if (pad)
		lit(c, " ");
	for (size_t i = 0; i <= longest; i++)
		lit(c, "`");
}

static void md_begin(struct ctx *c, const char *city)
{
	lit(c, "# Transparency register");
	if (city != NULL) {
		lit(c, ": ");
		md_text(c, city);
	}
	lit(c, "\n\n");
}

static void md_end(struct ctx *c)
{
	(void)c;
}

static void md_h_begin(struct ctx *c, int level)
{
	for (int i = 0; i < level; i++)
		lit(c, "#");
	lit(c, " ");
}

static void md_h_end(struct ctx *c, int level)
{
	(void)level;
	lit(c, "\n\n");
}

static void md_p_begin(struct ctx *c)
{
	(void)c;
}

static void md_p_end(struct ctx *c)
{
	lit(c, "\n\n");
}

static void md_table_begin(struct ctx *c, const char *const *heads, size_t n)
{
	lit(c, "|");
	for (size_t i = 0; i < n; i++) {
		lit(c, " ");
		lit(c, heads[i]);
		lit(c, " |");
	}
	lit(c, "\n|");
	for (size_t i = 0; i < n; i++)
		lit(c, "---|");
	lit(c, "\n");
}

static void md_table_end(struct ctx *c)
{
	lit(c, "\n");
}

static void md_row_begin(struct ctx *c)
{
	c->cell = 0;
	lit(c, "|");
}

static void md_row_end(struct ctx *c)
{
	lit(c, " |\n");
}

static void md_cell(struct ctx *c)
{
	lit(c, c->cell++ == 0 ? " " : " | ");
}

/* Markdown tables have no line breaks inside a cell that every renderer shows. */
static void md_br(struct ctx *c)
{
	lit(c, "; ");
}

static const struct style md_style = {
    md_text,  md_code,        md_begin,     md_end,       md_h_begin, md_h_end, md_p_begin,
    md_p_end, md_table_begin, md_table_end, md_row_begin, md_row_end, md_cell,  md_br,
};

/* ---- reading the document ---- */

static void bad(struct ctx *c)
{
	if (c->rc == CMQ_OK)
		c->rc = CMQ_ERR_PARSE;
}

/* Member key of o, which must exist; JSON null gives NULL. */
static struct json_object *member(struct ctx *c, const struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (o == NULL || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, key, &v)) {
		bad(c);
		return NULL;
	}
	return v;
}

/* A string member; "" after an error. nullable: JSON null gives NULL. */
static const char *str(struct ctx *c, const struct json_object *o, const char *key, bool nullable)
{
	struct json_object *v = member(c, o, key);

	if (v == NULL && nullable && c->rc == CMQ_OK)
		return NULL;
	if (!json_object_is_type(v, json_type_string)) {
		bad(c);
		return "";
	}
	return json_object_get_string(v);
}

static struct json_object *arr(struct ctx *c, const struct json_object *o, const char *key)
{
	struct json_object *v = member(c, o, key);

	if (!json_object_is_type(v, json_type_array)) {
		bad(c);
		return NULL;
	}
	return v;
}

static size_t arr_len(const struct json_object *a)
{
	return a != NULL ? json_object_array_length(a) : 0;
}

static struct json_object *arr_at(const struct json_object *a, size_t i)
{
	return json_object_array_get_idx(a, i);
}

static int64_t integer(struct ctx *c, const struct json_object *o, const char *key)
{
	struct json_object *v = member(c, o, key);

	if (!json_object_is_type(v, json_type_int)) {
		bad(c);
		return 0;
	}
	return json_object_get_int64(v);
}

/* A number (integer or not), or JSON null when nullable (*present = false). */
static double number(struct ctx *c, const struct json_object *o, const char *key, bool nullable,
                     bool *present)
{
	struct json_object *v = member(c, o, key);

	*present = false;
	if (v == NULL && nullable)
		return 0;
	if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)) {
		bad(c);
		return 0;
	}
	*present = true;
	return json_object_get_double(v);
}

static bool boolean(struct ctx *c, const struct json_object *o, const char *key)
{
	struct json_object *v = member(c, o, key);

	if (!json_object_is_type(v, json_type_boolean)) {
		bad(c);
		return false;
	}
	return json_object_get_boolean(v);
}

/* ---- wording ---- */

static void T(struct ctx *c, const char *s)
{
	c->st->text(c, s);
}

static void C(struct ctx *c, const char *s)
{
	c->st->code(c, s);
}

static void number_text(struct ctx *c, double d)
{
	litf(c, "%.15g", d);
}

/* "300" -> "5 minutes": the largest whole unit. */
static void seconds_text(struct ctx *c, int64_t s)
{
	static const struct {
		int64_t n;
		const char *one, *many;
	} units[] = {{86400, "day", "days"}, {3600, "hour", "hours"}, {60, "minute", "minutes"}};

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (s > 0 && s % units[i].n == 0) {
			int64_t k = s / units[i].n;

			litf(c, "%lld %s", (long long)k, k == 1 ? units[i].one : units[i].many);
			return;
		}
	}
	litf(c, "%lld %s", (long long)s, s == 1 ? "second" : "seconds");
}

/*
 * An ISO 8601 duration as words: "P13M" -> "13 months", "P1Y6M" -> "1 year, 6 months".
 * Digits are copied, not converted, so no length overflows. Writes nothing and returns
 * false if d is not of the form the loader accepts.
 */
static bool duration_valid(const char *d)
{
	const char *units = "YMWD";
	bool any = false, in_time = false;

	if (*d++ != 'P')
		return false;
	while (*d) {
		const char *u;
		size_t digits = strspn(d, "0123456789");

		if (*d == 'T' && !in_time) {
			in_time = true;
			units = "HMS";
			d++;
			if (*d == '\0')
				return false;
			continue;
		}
		if (digits == 0 || d[digits] == '\0' || (u = strchr(units, d[digits])) == NULL)
			return false;
		units = u + 1;
		any = true;
		d += digits + 1;
	}
	return any;
}

static void duration_text(struct ctx *c, const char *d)
{
	bool in_time = false, first = true;

	if (!duration_valid(d))
		return;
	lit(c, " (");
	for (d++; *d;) {
		size_t digits;
		const char *one, *many;

		if (*d == 'T') {
			in_time = true;
			d++;
			continue;
		}
		digits = strspn(d, "0123456789");
		while (digits > 1 && *d == '0') {
			d++;
			digits--;
		}
		switch (d[digits]) {
		case 'Y':
			one = "year", many = "years";
			break;
		case 'M':
			one = in_time ? "minute" : "month", many = in_time ? "minutes" : "months";
			break;
		case 'W':
			one = "week", many = "weeks";
			break;
		case 'D':
			one = "day", many = "days";
			break;
		case 'H':
			one = "hour", many = "hours";
			break;
		default:
			one = "second", many = "seconds";
			break;
		}
		if (!first)
			lit(c, ", ");
		first = false;
		out_n(c, d, digits);
		lit(c, " ");
		lit(c, digits == 1 && *d == '1' ? one : many);
		d += digits + 1;
	}
	lit(c, ")");
}

/* Approximate cell of a geohash at each precision (at the equator, the widest). */
static const char *const geohash_cells[] = {
    NULL,
    "5000 km x 5000 km",
    "1250 km x 625 km",
    "156 km x 156 km",
    "39 km x 20 km",
    "4.9 km x 4.9 km",
    "1.2 km x 0.6 km",
    "153 m x 153 m",
    "38 m x 19 m",
    "4.8 m x 4.8 m",
    "1.2 m x 0.6 m",
    "15 cm x 15 cm",
    "3.7 cm x 1.9 cm",
};

static const char *class_meaning(const char *cls)
{
	if (strcmp(cls, "public") == 0)
		return "not about people; the only class restricted vendors may feed";
	if (strcmp(cls, "personal") == 0)
		return "may relate to people, their devices or vehicles; raw readings are never "
		       "retained on the broker; restricted vendors may not feed it";
	if (strcmp(cls, "sensitive") == 0)
		return "leaves only as aggregate counts; raw readings are never retained on the "
		       "broker; restricted vendors may not feed it";
	return NULL;
}

static const char *pattern_meaning(const char *pat)
{
	static const char *const names[][2] = {{"mac", "MAC addresses"},
	                                       {"plate", "licence plates"},
	                                       {"email", "e-mail addresses"},
	                                       {"phone", "phone numbers"}};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(pat, names[i][0]) == 0)
			return names[i][1];
	}
	return NULL;
}

/* ---- the page ---- */

static void row_begin(struct ctx *c, const char *label)
{
	c->st->row_begin(c);
	c->st->cell(c);
	lit(c, label);
	c->st->cell(c);
}

static void row_end(struct ctx *c)
{
	c->st->row_end(c);
}

/* A row listing the paths of a list of strings; written only if non-empty or always. */
static void paths_row(struct ctx *c, const char *label, const struct json_object *list, bool always)
{
	size_t n = arr_len(list);

	if (n == 0 && !always)
		return;
	row_begin(c, label);
	if (n == 0)
		lit(c, "nothing");
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = arr_at(list, i);

		if (!json_object_is_type(e, json_type_string)) {
			bad(c);
			return;
		}
		if (i > 0)
			lit(c, ", ");
		C(c, json_object_get_string(e));
	}
	row_end(c);
}

/* A row of {"path", ...} entries, each written by item after "`path`: ". */
static void ops_row(struct ctx *c, const char *label, const struct json_object *list,
                    void (*item)(struct ctx *c, const struct json_object *e))
{
	size_t n = arr_len(list);

	if (n == 0)
		return;
	row_begin(c, label);
	for (size_t i = 0; i < n; i++) {
		const struct json_object *e = arr_at(list, i);

		if (i > 0)
			c->st->br(c);
		C(c, str(c, e, "path", false));
		lit(c, ": ");
		item(c, e);
	}
	row_end(c);
}

static void pseudonymised_item(struct ctx *c, const struct json_object *e)
{
	T(c, str(c, e, "method", false));
}

static void generalised_item(struct ctx *c, const struct json_object *e)
{
	struct json_object *v;

	if (json_object_object_get_ex(e, "geohash_precision", &v)) {
		int64_t prec = integer(c, e, "geohash_precision");

		if (prec < 1 || prec > 12) {
			bad(c);
			return;
		}
		litf(c, "replaced by its geohash of %lld characters (a cell of about %s)",
		     (long long)prec, geohash_cells[prec]);
	} else {
		bool present;
		double g = number(c, e, "grid_degrees", false, &present);
		double km = g * 111.32;

		lit(c, "moved to the centre of a grid cell ");
		number_text(c, g);
		lit(c, " degrees wide (about ");
		if (km < 1)
			litf(c, "%.0f m", km * 1000);
		else
			litf(c, "%.3g km", km);
		lit(c, " north to south)");
	}
}

static void coarsened_item(struct ctx *c, const struct json_object *e)
{
	lit(c, "rounded down to ");
	seconds_text(c, integer(c, e, "seconds"));
}

static void rounded_item(struct ctx *c, const struct json_object *e)
{
	bool present;

	lit(c, "rounded to a multiple of ");
	number_text(c, number(c, e, "step", false, &present));
}

static void bucketed_item(struct ctx *c, const struct json_object *e)
{
	struct json_object *bounds = arr(c, e, "bounds");

	lit(c, "replaced by its interval between the bounds ");
	for (size_t i = 0; i < arr_len(bounds); i++) {
		struct json_object *b = arr_at(bounds, i);

		if (!json_object_is_type(b, json_type_int) &&
		    !json_object_is_type(b, json_type_double)) {
			bad(c);
			return;
		}
		if (i > 0)
			lit(c, ", ");
		number_text(c, json_object_get_double(b));
	}
}

static void redacted_item(struct ctx *c, const struct json_object *e)
{
	struct json_object *pats = arr(c, e, "patterns");

	for (size_t i = 0; i < arr_len(pats); i++) {
		struct json_object *pat = arr_at(pats, i);
		const char *meaning;

		if (!json_object_is_type(pat, json_type_string) ||
		    (meaning = pattern_meaning(json_object_get_string(pat))) == NULL) {
			bad(c);
			return;
		}
		if (i > 0)
			lit(c, i + 1 == arr_len(pats) ? " and " : ", ");
		lit(c, meaning);
	}
	lit(c, " in its text replaced by placeholders");
}

static void aggregated_item(struct ctx *c, const struct json_object *e)
{
	bool noisy;
	double eps;

	lit(c, "summed per ");
	C(c, str(c, e, "group_by", false));
	lit(c, " over windows of ");
	seconds_text(c, integer(c, e, "window_seconds"));
	litf(c, "; a group's total is published only if it is at least %lld",
	     (long long)integer(c, e, "k"));
	eps = number(c, e, "noise_epsilon", true, &noisy);
	if (noisy) {
		lit(c, ", with random noise added (differential privacy, epsilon ");
		number_text(c, eps);
		lit(c, ")");
	} else {
		lit(c, ", exactly (no noise added)");
	}
}

static void flow_vendor_list(struct ctx *c, const struct json_object *vendors)
{
	size_t n = arr_len(vendors);

	if (n == 0)
		lit(c, "none");
	for (size_t i = 0; i < n; i++) {
		const struct json_object *v = arr_at(vendors, i);

		if (i > 0)
			c->st->br(c);
		T(c, str(c, v, "name", false));
		lit(c, " (");
		C(c, str(c, v, "id", false));
		lit(c, ", ");
		T(c, str(c, v, "tier", false));
		lit(c, ")");
	}
}

static void flow_section(struct ctx *c, const struct json_object *f)
{
	static const char *const heads[] = {"What", "Details"};
	const struct json_object *s = member(c, f, "scrubbing");
	const char *cls = str(c, f, "class", false), *meaning = class_meaning(cls);
	const char *ret = str(c, f, "retention", false), *desc;

	c->st->h_begin(c, 3);
	lit(c, "Flow ");
	C(c, str(c, f, "id", false));
	c->st->h_end(c, 3);
	c->st->table_begin(c, heads, 2);

	row_begin(c, "Purpose");
	T(c, str(c, f, "purpose", false));
	row_end(c);

	row_begin(c, "Data category");
	C(c, str(c, f, "category", false));
	desc = str(c, f, "category_description", true);
	if (desc != NULL) {
		lit(c, ": ");
		T(c, desc);
	}
	row_end(c);

	row_begin(c, "Privacy class");
	T(c, cls);
	if (meaning != NULL) {
		lit(c, " (");
		lit(c, meaning);
		lit(c, ")");
	}
	row_end(c);

	row_begin(c, "Retention");
	T(c, ret);
	duration_text(c, ret);
	row_end(c);

	row_begin(c, "Resident consent");
	if (boolean(c, f, "consent_required")) {
		const char *subj = str(c, f, "consent_subject", true);

		lit(c, "required: forwarded only for residents who opted in to this category");
		if (subj != NULL) {
			lit(c, " (resident id in ");
			C(c, subj);
			lit(c, ")");
		}
	} else {
		lit(c, "not required (the category is not linked to a resident)");
	}
	row_end(c);

	row_begin(c, "Collected on");
	C(c, str(c, f, "raw", false));
	row_end(c);
	row_begin(c, "Published as");
	C(c, str(c, f, "published_as", false));
	row_end(c);

	row_begin(c, "Scrub profile");
	C(c, str(c, s, "profile", false));
	desc = str(c, s, "description", true);
	if (desc != NULL) {
		lit(c, ": ");
		T(c, desc);
	}
	row_end(c);

	paths_row(c, "Kept as sent", arr(c, s, "kept"), true);
	ops_row(c, "Pseudonymised", arr(c, s, "pseudonymised"), pseudonymised_item);
	ops_row(c, "Location generalised", arr(c, s, "generalised"), generalised_item);
	ops_row(c, "Time coarsened", arr(c, s, "coarsened"), coarsened_item);
	ops_row(c, "Rounded", arr(c, s, "rounded"), rounded_item);
	ops_row(c, "Bucketed", arr(c, s, "bucketed"), bucketed_item);
	ops_row(c, "Redacted", arr(c, s, "redacted"), redacted_item);
	ops_row(c, "Aggregated", arr(c, s, "aggregated"), aggregated_item);
	paths_row(c, "Dropped (even from kept data)", arr(c, s, "dropped"), false);

	row_begin(c, "Removed");
	T(c, str(c, s, "removed", false));
	row_end(c);

	row_begin(c, "Vendors that may feed it");
	flow_vendor_list(c, arr(c, f, "vendors"));
	row_end(c);
	c->st->table_end(c);
}

/* The flows whose vendor list names vendor id, as code spans. */
static void vendor_flows(struct ctx *c, const struct json_object *flows, const char *id)
{
	bool any = false;

	for (size_t i = 0; i < arr_len(flows); i++) {
		const struct json_object *f = arr_at(flows, i);
		struct json_object *vs = arr(c, f, "vendors");

		for (size_t k = 0; k < arr_len(vs); k++) {
			if (strcmp(str(c, arr_at(vs, k), "id", false), id) == 0) {
				if (any)
					lit(c, ", ");
				C(c, str(c, f, "id", false));
				any = true;
				break;
			}
		}
	}
	if (!any)
		lit(c, "none");
}

static void string_list(struct ctx *c, const struct json_object *list, bool code)
{
	size_t n = arr_len(list);

	if (n == 0)
		lit(c, "none");
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = arr_at(list, i);

		if (!json_object_is_type(e, json_type_string)) {
			bad(c);
			return;
		}
		if (i > 0) {
			if (code)
				c->st->br(c);
			else
				lit(c, ", ");
		}
		if (code)
			C(c, json_object_get_string(e));
		else
			T(c, json_object_get_string(e));
	}
}

static void vendors_section(struct ctx *c, const struct json_object *vendors,
                            const struct json_object *flows)
{
	static const char *const heads[] = {
	    "Vendor",           "Tier",           "Permitted categories",
	    "Device id prefix", "May feed flows", "CA certificate (SHA-256)"};

	c->st->h_begin(c, 2);
	lit(c, "Vendors");
	c->st->h_end(c, 2);
	c->st->p_begin(c);
	lit(c, "Every sensor proves its vendor with a certificate from that vendor's CA, "
	       "pinned below by fingerprint. Trusted vendors may feed the data categories "
	       "they are permitted; restricted vendors only public-class data; blocked "
	       "vendors are refused and feed nothing.");
	c->st->p_end(c);
	c->st->table_begin(c, heads, sizeof(heads) / sizeof(heads[0]));
	for (size_t i = 0; i < arr_len(vendors); i++) {
		const struct json_object *v = arr_at(vendors, i);

		/* The vendor's name heads its row, like a flow's label. */
		c->st->row_begin(c);
		c->st->cell(c);
		T(c, str(c, v, "name", false));
		lit(c, " (");
		C(c, str(c, v, "id", false));
		lit(c, ")");
		c->st->cell(c);
		T(c, str(c, v, "tier", false));
		c->st->cell(c);
		string_list(c, arr(c, v, "categories"), false);
		c->st->cell(c);
		C(c, str(c, v, "device_id_prefix", false));
		c->st->cell(c);
		vendor_flows(c, flows, str(c, v, "id", false));
		c->st->cell(c);
		string_list(c, arr(c, v, "ca_sha256"), true);
		c->st->row_end(c);
	}
	c->st->table_end(c);
}

static int render(const struct json_object *reg, const struct style *st, char **out)
{
	struct ctx c = {NULL, 0, 0, CMQ_OK, st, 0};
	struct json_object *flows, *vendors;
	const char *city;

	*out = NULL;
	if (integer(&c, reg, "register_version") != CMQ_REGISTER_VERSION)
		return CMQ_ERR_PARSE;
	city = str(&c, reg, "city", true);
	flows = arr(&c, reg, "flows");
	vendors = arr(&c, reg, "vendors");
	st->begin(&c, city);

	st->p_begin(&c);
	lit(&c, "Policy ");
	C(&c, str(&c, reg, "policy", false));
	lit(&c, ", register generated ");
	T(&c, str(&c, reg, "generated", false));
	litf(&c, " (register format %d).", CMQ_REGISTER_VERSION);
	st->p_end(&c);

	st->p_begin(&c);
	lit(&c, "This register is generated from the policy the city's MQTT broker enforces, so "
	        "it describes exactly what is collected, why, for how long, and how it is "
	        "scrubbed. Sensors publish raw readings on the topics under Collected on; nobody "
	        "but the scrubbing service reads them. Each reading is rebuilt from nothing by its "
	        "scrub profile: only the fields listed below leave, every other field is "
	        "removed. A reading that cannot be scrubbed with certainty, or whose scrubbed form "
	        "would still contain the device id or the resident id, is dropped.");
	st->p_end(&c);
	st->p_begin(&c);
	lit(&c, "In topics, + stands for any value, and {N} for the value of level N of the "
	        "raw topic (counting from 0), a district name. The last level of a raw topic is "
	        "the device id, which is never part of a published topic.");
	st->p_end(&c);

	st->h_begin(&c, 2);
	lit(&c, "Data flows");
	st->h_end(&c, 2);
	for (size_t i = 0; i < arr_len(flows) && c.rc == CMQ_OK; i++)
		flow_section(&c, arr_at(flows, i));
	vendors_section(&c, vendors, flows);
	st->end(&c);
	if (c.rc != CMQ_OK) {
		cmq_free(c.s);
		return c.rc;
	}
	if (c.s == NULL) {
		c.s = cmq_malloc(1);
		if (c.s == NULL)
			return CMQ_ERR_NOMEM;
		c.s[0] = '\0';
	}
	*out = c.s;
	return CMQ_OK;
}

int cmq_register_markdown(const struct json_object *reg, char **out)
{
	return render(reg, &md_style, out);
}

int cmq_register_html(const struct json_object *reg, char **out)
{
	return render(reg, &html_style, out);
}
