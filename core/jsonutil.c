/*
 * jsonutil.c - see jsonutil.h.
 */
#include "jsonutil.h"

#include "alloc.h"
#include "error.h"
#include "topic.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_KEYS_PER_OBJECT 4096

static void line_col(const char *text, size_t off, unsigned *line, unsigned *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off; i++) {
		if (text[i] == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

struct key_span {
	const char *s;
	size_t len;
};

struct scan_frame {
	bool is_object;
	bool expect_key;
	bool key_is_split; /* top-level object: the key just read is the split key */
	struct key_span *keys;
	size_t n, cap;
};

/* Where the split array's elements are, as the scan found them. */
struct scan_split {
	const char *key; /* top-level key whose array to split, or NULL */
	bool found;      /* its value was an array that closed properly */
	bool broken;     /* the text's structure is not JSON: do not split, let json-c explain */
	size_t open, close;
	size_t *start, *end;
	size_t n, cap;
	size_t elem_start; /* SIZE_MAX: no element open */
	bool comma_seen;
};

static bool is_ws(char ch)
{
	return ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t';
}

/* Close the element open in the split array at the ',' or ']' at position i. */
static int split_close_element(const char *text, struct scan_split *sp, size_t i, bool at_close)
{
	size_t end = i;

	if (sp->elem_start == SIZE_MAX) {
		/* "[]" is fine; "[,", ",," and ",]" are not: json-c will say so. */
		if (!at_close || sp->comma_seen)
			sp->broken = true;
		sp->comma_seen = !at_close;
		return CMQ_OK;
	}
	sp->comma_seen = !at_close;
	while (end > sp->elem_start && is_ws(text[end - 1]))
		end--;
	if (sp->n == sp->cap) {
		size_t ncap = sp->cap ? sp->cap * 2 : 64;
		size_t *ns = cmq_reallocarray(sp->start, ncap, sizeof(*ns)), *ne;

		if (ns == NULL)
			return CMQ_ERR_NOMEM;
		sp->start = ns;
		ne = cmq_reallocarray(sp->end, ncap, sizeof(*ne));
		if (ne == NULL)
			return CMQ_ERR_NOMEM;
		sp->end = ne;
		sp->cap = ncap;
	}
	sp->start[sp->n] = sp->elem_start;
	sp->end[sp->n] = end;
	sp->n++;
	sp->elem_start = SIZE_MAX;
	return CMQ_OK;
}

/*
 * Walk JSON text and report what json-c tolerates but civicmq does not: the
 * first duplicate key of any object (json-c keeps the last one silently),
 * single-quoted keys, escapes inside keys (which could disguise a duplicate),
 * and the bare words NaN and Infinity. With sp->key set, also find the
 * elements of the array under that top-level key (see cmq_json_load_split).
 * The text need not be valid JSON: structure the scan cannot follow marks
 * sp->broken and is left for json-c to explain.
 */
static int scan_json(const char *text, size_t len, const char *display, struct cmq_diag *diag,
                     struct scan_split *sp)
{
	struct scan_frame frames[CMQ_JSON_MAX_DEPTH + 2];
	int depth = -1, rc = CMQ_OK, split_depth = -1;
	unsigned line, col;

	memset(frames, 0, sizeof(frames));
	sp->elem_start = SIZE_MAX;
	for (size_t i = 0; i < len && rc == CMQ_OK; i++) {
		char ch = text[i];

		if (split_depth >= 0 && depth == split_depth && !is_ws(ch)) {
			if (ch == ',' || ch == ']') {
				rc = split_close_element(text, sp, i, ch == ']');
				if (rc != CMQ_OK)
					break;
			} else if (sp->elem_start == SIZE_MAX) {
				sp->elem_start = i;
			}
		}
		if (ch == '{' || ch == '[') {
			if (depth + 1 >= (int)(sizeof(frames) / sizeof(frames[0]))) {
				sp->broken = true; /* json-c reports the depth */
				break;
			}
			depth++;
			frames[depth].is_object = ch == '{';
			frames[depth].expect_key = ch == '{';
			frames[depth].key_is_split = false;
			frames[depth].n = 0;
			if (ch == '[' && depth == 1 && sp->key != NULL && split_depth < 0 &&
			    !sp->found && frames[0].is_object && frames[0].key_is_split) {
				split_depth = depth;
				sp->open = i;
			}
		} else if (ch == '}' || ch == ']') {
			if (depth < 0 || frames[depth].is_object != (ch == '}')) {
				sp->broken = true; /* mismatched bracket: json-c reports it */
				break;
			}
			if (depth == split_depth) {
				sp->close = i;
				sp->found = true;
				split_depth = -1;
			}
			depth--;
		} else if (ch == ',') {
			if (depth >= 0 && frames[depth].is_object)
				frames[depth].expect_key = true;
		} else if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')) {
			/* A bare word: true, false, null, or the exponent of a number. json-c also
			 * takes NaN and Infinity, which are not JSON. */
			size_t w = i;

			while (w < len && ((text[w] >= 'A' && text[w] <= 'Z') ||
			                   (text[w] >= 'a' && text[w] <= 'z')))
				w++;
			if (!(i > 0 &&
			      ((text[i - 1] >= '0' && text[i - 1] <= '9') || text[i - 1] == '.')) &&
			    !(w - i == 4 && (memcmp(text + i, "true", 4) == 0 ||
			                     memcmp(text + i, "null", 4) == 0)) &&
			    !(w - i == 5 && memcmp(text + i, "false", 5) == 0)) {
				line_col(text, i, &line, &col);
				cmq_diag_add(diag, CMQ_DIAG_ERROR, display, NULL,
				             "%u:%u: malformed JSON: %.*s is not a JSON value",
				             line, col, (int)(w - i > 20 ? 20 : w - i), text + i);
				rc = CMQ_ERR_PARSE;
			}
			i = w - 1;
		} else if (ch == '\'') {
			/*
			 * Outside a string, so a single-quoted key: json-c 0.16 accepts them
			 * even when strict, and this scan would not see them as keys.
			 */
			line_col(text, i, &line, &col);
			cmq_diag_add(diag, CMQ_DIAG_ERROR, display, NULL,
			             "%u:%u: malformed JSON: single-quoted key; use double quotes",
			             line, col);
			rc = CMQ_ERR_PARSE;
		} else if (ch == '"') {
			size_t start = ++i;

			while (i < len && text[i] != '"') {
				if (text[i] == '\\')
					i++;
				i++;
			}
			if (i >= len) {
				sp->broken = true; /* unterminated string */
				break;
			}
			if (depth < 0 || !frames[depth].is_object || !frames[depth].expect_key)
				continue;
			struct scan_frame *f = &frames[depth];
			struct key_span k = {text + start, i - start};

			f->expect_key = false;
			if (depth == 0 && sp->key != NULL)
				f->key_is_split =
				    strlen(sp->key) == k.len && memcmp(sp->key, k.s, k.len) == 0;
			if (memchr(k.s, '\\', k.len) != NULL) {
				/* "\u0074ier" would hide a second "tier" from the comparison below.
				 */
				line_col(text, start - 1, &line, &col);
				cmq_diag_add(
				    diag, CMQ_DIAG_ERROR, display, NULL,
				    "%u:%u: escape sequence in an object key; keys are plain "
				    "names",
				    line, col);
				rc = CMQ_ERR_PARSE;
				break;
			}
			for (size_t j = 0; j < f->n; j++) {
				if (f->keys[j].len == k.len &&
				    memcmp(f->keys[j].s, k.s, k.len) == 0) {
					char q[128];

					line_col(text, start - 1, &line, &col);
					cmq_diag_add(diag, CMQ_DIAG_ERROR, display, NULL,
					             "%u:%u: duplicate key %s in the same object; "
					             "each key may appear once",
					             line, col,
					             cmq_diag_quote(k.s, k.len, q, sizeof(q)));
					rc = CMQ_ERR_PARSE;
					break;
				}
			}
			if (rc != CMQ_OK)
				break;
			if (f->n == f->cap) {
				size_t ncap = f->cap ? f->cap * 2 : 16;
				struct key_span *nk;

				if (ncap > MAX_KEYS_PER_OBJECT) {
					line_col(text, start - 1, &line, &col);
					cmq_diag_add(diag, CMQ_DIAG_ERROR, display, NULL,
					             "%u:%u: object has more than %d keys", line,
					             col, MAX_KEYS_PER_OBJECT);
					rc = CMQ_ERR_TOO_BIG;
					break;
				}
				nk = cmq_reallocarray(f->keys, ncap, sizeof(*nk));
				if (nk == NULL) {
					rc = CMQ_ERR_NOMEM;
					break;
				}
				f->keys = nk;
				f->cap = ncap;
			}
			f->keys[f->n++] = k;
		}
	}
	if (split_depth >= 0 || depth != -1)
		sp->broken = true; /* unclosed: json-c reports where */
	for (size_t d = 0; d < sizeof(frames) / sizeof(frames[0]); d++)
		cmq_free(frames[d].keys);
	return rc;
}

/* NUL bytes end strings early in json-c and in messages: refuse them first. */
static int check_nul(const char *text, size_t len, const char *display, struct cmq_diag *diag)
{
	const char *nul = memchr(text, '\0', len);
	unsigned line, col;

	if (len > INT_MAX) {
		cmq_diag_add(diag, CMQ_DIAG_ERROR, display, NULL, "document is too large");
		return CMQ_ERR_TOO_BIG;
	}
	if (nul == NULL)
		return CMQ_OK;
	line_col(text, (size_t)(nul - text), &line, &col);
	cmq_diag_add(diag, CMQ_DIAG_ERROR, display, NULL,
	             "%u:%u: malformed JSON: NUL byte in the file", line, col);
	return CMQ_ERR_PARSE;
}

/*
 * json-c over text[0..len) with tok (reset first). The whole span must be one value;
 * positions in messages are counted from base (the start of the file).
 */
static int json_syntax(struct json_tokener *tok, const char *base, const char *text, size_t len,
                       const char *display, struct cmq_diag *diag, struct json_object **out)
{
	struct json_object *root;
	enum json_tokener_error jerr;
	size_t end;
	unsigned line, col;

	*out = NULL;
	json_tokener_reset(tok);
	root = json_tokener_parse_ex(tok, text, (int)len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	if (root == NULL || jerr != json_tokener_success) {
		const char *desc = jerr == json_tokener_continue ? "unexpected end of document"
		                                                 : json_tokener_error_desc(jerr);

		line_col(base, (size_t)(text - base) + (end < len ? end : len), &line, &col);
		cmq_diag_add(diag, CMQ_DIAG_ERROR, display, NULL,
		             "%u:%u: malformed JSON: %s (JSON must be strict: double-quoted keys, "
		             "no comments, no trailing commas, valid UTF-8, nesting depth <= %d)",
		             line, col, desc, CMQ_JSON_MAX_DEPTH);
		json_object_put(root);
		return CMQ_ERR_PARSE;
	}
	for (size_t i = end; i < len; i++) {
		if (!is_ws(text[i])) {
			line_col(base, (size_t)(text - base) + i, &line, &col);
			cmq_diag_add(diag, CMQ_DIAG_ERROR, display, NULL,
			             "%u:%u: malformed JSON: unexpected text after the %s", line,
			             col, text == base ? "document" : "array element");
			json_object_put(root);
			return CMQ_ERR_PARSE;
		}
	}
	*out = root;
	return CMQ_OK;
}

static struct json_tokener *new_tokener(void)
{
	struct json_tokener *tok = json_tokener_new_ex(CMQ_JSON_MAX_DEPTH);

	if (tok != NULL)
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	return tok;
}

int cmq_json_parse(const char *text, size_t len, const char *display, struct cmq_diag *diag,
                   struct json_object **out)
{
	struct scan_split none = {0};
	struct json_tokener *tok;
	struct json_object *root = NULL;
	int rc;

	*out = NULL;
	rc = check_nul(text, len, display, diag);
	if (rc != CMQ_OK)
		return rc;
	tok = new_tokener();
	if (tok == NULL)
		return CMQ_ERR_NOMEM;
	rc = json_syntax(tok, text, text, len, display, diag, &root);
	json_tokener_free(tok);
	if (rc != CMQ_OK)
		return rc;
	/* Valid JSON now, so what the scan finds is exactly what it says. */
	rc = scan_json(text, len, display, diag, &none);
	cmq_free(none.start);
	cmq_free(none.end);
	if (rc != CMQ_OK) {
		json_object_put(root);
		return rc;
	}
	*out = root;
	return CMQ_OK;
}

/* Read a whole regular file (at most max_bytes) into a NUL-terminated buffer. */
int cmq_read_file(const char *path, const char *display, size_t max_bytes, struct cmq_diag *diag,
                  char **out, size_t *out_len)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd;

	*out = NULL;
	*out_len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		cmq_diag_add(diag, CMQ_DIAG_ERROR, display, NULL, "cannot open: %s",
		             strerror(errno));
		return CMQ_ERR_IO;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		cmq_diag_add(diag, CMQ_DIAG_ERROR, display, NULL, "not a regular file");
		close(fd);
		return CMQ_ERR_IO;
	}
	if ((uint64_t)st.st_size > max_bytes) {
		cmq_diag_add(diag, CMQ_DIAG_ERROR, display, NULL,
		             "file is %" PRIu64 " bytes; the limit is %zu bytes",
		             (uint64_t)st.st_size, max_bytes);
		close(fd);
		return CMQ_ERR_TOO_BIG;
	}
	buf = cmq_malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		close(fd);
		return CMQ_ERR_NOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			cmq_diag_add(diag, CMQ_DIAG_ERROR, display, NULL, "read failed: %s",
			             n < 0 ? strerror(errno) : "file shrank while reading");
			close(fd);
			cmq_free(buf);
			return CMQ_ERR_IO;
		}
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	*out = buf;
	*out_len = got;
	return CMQ_OK;
}

int cmq_json_load_file(const char *path, const char *display, size_t max_bytes,
                       struct cmq_diag *diag, struct json_object **out, uint8_t sha256[32])
{
	char *buf;
	size_t len;
	int rc;

	*out = NULL;
	rc = cmq_read_file(path, display, max_bytes, diag, &buf, &len);
	if (rc != CMQ_OK)
		return rc;
	if (sha256 != NULL)
		SHA256((const unsigned char *)buf, len, sha256);
	rc = cmq_json_parse(buf, len, display, diag, out);
	cmq_free(buf);
	return rc;
}

void cmq_json_split_cleanup(struct cmq_json_split *s)
{
	cmq_free(s->text);
	cmq_free(s->start);
	cmq_free(s->end);
	if (s->tok != NULL)
		json_tokener_free(s->tok);
	cmq_diag_cleanup(&s->pending);
	memset(s, 0, sizeof(*s));
}

int cmq_json_load_split(const char *path, const char *display, size_t max_bytes,
                        const char *split_key, struct cmq_diag *diag, struct json_object **out,
                        struct cmq_json_split *s, uint8_t sha256[32])
{
	char *text;
	size_t len;
	int rc;

	*out = NULL;
	memset(s, 0, sizeof(*s));
	rc = cmq_read_file(path, display, max_bytes, diag, &text, &len);
	if (rc != CMQ_OK)
		return rc;
	if (sha256 != NULL)
		SHA256((const unsigned char *)text, len, sha256);
	return cmq_json_split_text(text, len, display, split_key, diag, out, s);
}

int cmq_json_split_text(char *text, size_t len, const char *display, const char *split_key,
                        struct cmq_diag *diag, struct json_object **out, struct cmq_json_split *s)
{
	struct scan_split sp = {0};
	char *skeleton = NULL;
	int rc;

	*out = NULL;
	memset(s, 0, sizeof(*s));
	cmq_diag_init(&s->pending);
	s->display = display;
	s->text = text;
	s->len = len;
	rc = check_nul(s->text, s->len, display, diag);
	if (rc != CMQ_OK)
		goto fail;
	s->tok = new_tokener();
	if (s->tok == NULL) {
		rc = CMQ_ERR_NOMEM;
		goto fail;
	}
	sp.key = split_key;
	rc = scan_json(s->text, s->len, display, &s->pending, &sp);
	if (rc == CMQ_ERR_NOMEM)
		goto fail;
	if (!sp.found || sp.broken) {
		/* Nothing to split, or text the scan cannot follow: the classic way, whose json-c
		 * errors come first and are exact. */
		cmq_free(sp.start);
		cmq_free(sp.end);
		sp.start = sp.end = NULL;
		cmq_diag_cleanup(&s->pending);
		cmq_diag_init(&s->pending);
		rc = cmq_json_parse(s->text, s->len, display, diag, out);
		if (rc != CMQ_OK)
			goto fail;
		return CMQ_OK;
	}
	/* The document with the array's interior blanked out (newlines kept, so json-c's
	 * positions stay right): the DOM holds an empty array there. */
	skeleton = cmq_malloc(s->len + 1);
	if (skeleton == NULL) {
		rc = CMQ_ERR_NOMEM;
		goto fail;
	}
	memcpy(skeleton, s->text, s->len + 1);
	for (size_t i = sp.open + 1; i < sp.close; i++) {
		if (skeleton[i] != '\n')
			skeleton[i] = ' ';
	}
	rc = json_syntax(s->tok, skeleton, skeleton, s->len, display, diag, out);
	cmq_free(skeleton);
	if (rc != CMQ_OK)
		goto fail;
	s->found = true;
	s->start = sp.start;
	s->end = sp.end;
	s->n = sp.n;
	return CMQ_OK;
fail:
	cmq_free(sp.start);
	cmq_free(sp.end);
	cmq_json_split_cleanup(s);
	return rc;
}

int cmq_json_split_parse(struct cmq_json_split *s, size_t i, struct cmq_diag *diag,
                         struct json_object **out)
{
	int rc;

	*out = NULL;
	if (i >= s->n)
		return CMQ_ERR_INVAL;
	rc = json_syntax(s->tok, s->text, s->text + s->start[i], s->end[i] - s->start[i],
	                 s->display, diag, out);
	if (rc != CMQ_OK)
		s->syntax_errors++;
	return rc;
}

int cmq_json_split_finish(struct cmq_json_split *s, struct cmq_diag *diag)
{
	size_t errors = s->pending.errors;

	/* A syntax error may have thrown the scan off: report what the scan found only on
	 * text json-c accepted throughout. */
	if (s->syntax_errors == 0) {
		for (size_t i = 0; i < s->pending.n; i++)
			cmq_diag_add(diag, s->pending.entries[i].level, NULL, NULL, "%s",
			             s->pending.entries[i].text);
		if (s->pending.errors + s->pending.warnings > s->pending.n)
			cmq_diag_add(diag, CMQ_DIAG_ERROR, s->display, NULL,
			             "further problems not shown");
	}
	cmq_diag_cleanup(&s->pending);
	cmq_diag_init(&s->pending);
	return s->syntax_errors == 0 && errors == 0 ? CMQ_OK : CMQ_ERR_PARSE;
}

void cmq_jctx_init(struct cmq_jctx *c, const char *file, struct cmq_diag *diag)
{
	c->file = file;
	c->diag = diag;
	c->depth = 0;
	c->path[0] = '$';
	c->path[1] = '\0';
}

static bool identifier_like(const char *key)
{
	if (key[0] == '\0')
		return false;
	for (const char *p = key; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
			return false;
	}
	return true;
}

size_t cmq_jpath_push_key(struct cmq_jctx *c, const char *key)
{
	size_t mark = c->depth;

	if (c->depth < CMQ_JPATH_DEPTH) {
		c->seg[c->depth].key = key;
		c->seg[c->depth].index = 0;
	}
	c->depth++;
	return mark;
}

size_t cmq_jpath_push_index(struct cmq_jctx *c, size_t i)
{
	size_t mark = c->depth;

	if (c->depth < CMQ_JPATH_DEPTH) {
		c->seg[c->depth].key = NULL;
		c->seg[c->depth].index = i;
	}
	c->depth++;
	return mark;
}

void cmq_jpath_pop(struct cmq_jctx *c, size_t mark)
{
	if (mark <= c->depth)
		c->depth = mark;
}

const char *cmq_jpath(struct cmq_jctx *c)
{
	size_t off = 1, n = c->depth < CMQ_JPATH_DEPTH ? c->depth : CMQ_JPATH_DEPTH;
	char text[160], q[128];

	c->path[0] = '$';
	c->path[1] = '\0';
	for (size_t i = 0; i <= n; i++) {
		size_t len;

		if (i == n) {
			if (c->depth <= CMQ_JPATH_DEPTH)
				break;
			snprintf(text, sizeof(text), "...");
		} else if (c->seg[i].key == NULL) {
			snprintf(text, sizeof(text), "[%zu]", c->seg[i].index);
		} else if (identifier_like(c->seg[i].key)) {
			snprintf(text, sizeof(text), ".%s", c->seg[i].key);
		} else {
			snprintf(
			    text, sizeof(text), "[%s]",
			    cmq_diag_quote(c->seg[i].key, strlen(c->seg[i].key), q, sizeof(q)));
		}
		len = strlen(text);
		if (off + len >= sizeof(c->path)) {
			/* What fits, then "..." over the last three bytes. */
			memcpy(c->path + off, text, sizeof(c->path) - 1 - off);
			off = sizeof(c->path) - 1;
			memcpy(c->path + off - 3, "...", 3);
			break;
		}
		memcpy(c->path + off, text, len);
		off += len;
	}
	c->path[off] = '\0';
	return c->path;
}

void cmq_jerr(struct cmq_jctx *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cmq_diag_vadd(c->diag, CMQ_DIAG_ERROR, c->file, cmq_jpath(c), fmt, ap);
	va_end(ap);
}

void cmq_jwarn(struct cmq_jctx *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cmq_diag_vadd(c->diag, CMQ_DIAG_WARNING, c->file, cmq_jpath(c), fmt, ap);
	va_end(ap);
}

const char *cmq_jdescribe(struct json_object *v, char *buf, size_t buflen)
{
	char q[128];

	switch (json_object_get_type(v)) {
	case json_type_null:
		snprintf(buf, buflen, "null");
		break;
	case json_type_boolean:
		snprintf(buf, buflen, "%s", json_object_get_boolean(v) ? "true" : "false");
		break;
	case json_type_int:
	case json_type_double:
		snprintf(buf, buflen, "number %s", json_object_to_json_string(v));
		break;
	case json_type_string:
		snprintf(buf, buflen, "string %s",
		         cmq_diag_quote(json_object_get_string(v),
		                        (size_t)json_object_get_string_len(v), q, sizeof(q)));
		break;
	case json_type_array:
		snprintf(buf, buflen, "an array");
		break;
	case json_type_object:
		snprintf(buf, buflen, "an object");
		break;
	}
	return buf;
}

struct json_object *cmq_jget(struct cmq_jctx *c, struct json_object *obj, const char *key,
                             bool required)
{
	struct json_object *v = NULL;
	bool present = obj != NULL && json_object_object_get_ex(obj, key, &v);

	/* json-c gives NULL for a JSON null: absent, but never silently for a required field. */
	if (present && v != NULL)
		return v;
	if (required) {
		size_t old = cmq_jpath_push_key(c, key);

		cmq_jerr(c, present ? "is null; a value is required" : "missing required field");
		cmq_jpath_pop(c, old);
	}
	return NULL;
}

bool cmq_jis_object(struct cmq_jctx *c, struct json_object *v)
{
	char d[160];

	if (json_object_is_type(v, json_type_object))
		return true;
	cmq_jerr(c, "expected an object, got %s", cmq_jdescribe(v, d, sizeof(d)));
	return false;
}

const char *cmq_jas_string(struct cmq_jctx *c, struct json_object *v, size_t max_len)
{
	char d[160];
	const char *s;
	size_t len;

	if (max_len == 0)
		max_len = CMQ_JSON_STRING_MAX;
	if (!json_object_is_type(v, json_type_string)) {
		cmq_jerr(c, "expected a string, got %s", cmq_jdescribe(v, d, sizeof(d)));
		return NULL;
	}
	s = json_object_get_string(v);
	len = (size_t)json_object_get_string_len(v);
	if (strlen(s) != len) {
		cmq_jerr(c, "string contains a NUL character");
		return NULL;
	}
	if (!cmq_utf8_valid(s, len)) {
		cmq_jerr(c, "string is not valid UTF-8");
		return NULL;
	}
	if (len > max_len) {
		cmq_jerr(c, "string is %zu bytes long; at most %zu allowed", len, max_len);
		return NULL;
	}
	return s;
}

bool cmq_jstring(struct cmq_jctx *c, struct json_object *obj, const char *key, bool required,
                 size_t max_len, const char **out)
{
	struct json_object *v = cmq_jget(c, obj, key, required);
	const char *s;
	size_t old;

	if (v == NULL)
		return !required;
	old = cmq_jpath_push_key(c, key);
	s = cmq_jas_string(c, v, max_len);
	cmq_jpath_pop(c, old);
	if (s == NULL)
		return false;
	*out = s;
	return true;
}

bool cmq_jbool(struct cmq_jctx *c, struct json_object *obj, const char *key, bool required,
               bool *out)
{
	struct json_object *v = cmq_jget(c, obj, key, required);
	char d[160];
	size_t old;

	if (v == NULL)
		return !required;
	if (!json_object_is_type(v, json_type_boolean)) {
		old = cmq_jpath_push_key(c, key);
		cmq_jerr(c, "expected true or false, got %s", cmq_jdescribe(v, d, sizeof(d)));
		cmq_jpath_pop(c, old);
		return false;
	}
	*out = json_object_get_boolean(v);
	return true;
}

bool cmq_juint(struct cmq_jctx *c, struct json_object *obj, const char *key, bool required,
               uint64_t min, uint64_t max, uint64_t *out)
{
	struct json_object *v = cmq_jget(c, obj, key, required);
	char d[160];
	size_t old;
	int64_t n;

	if (v == NULL)
		return !required;
	old = cmq_jpath_push_key(c, key);
	if (!json_object_is_type(v, json_type_int)) {
		cmq_jerr(c, "expected a whole number between %" PRIu64 " and %" PRIu64 ", got %s",
		         min, max, cmq_jdescribe(v, d, sizeof(d)));
		cmq_jpath_pop(c, old);
		return false;
	}
	errno = 0;
	n = json_object_get_int64(v);
	if (errno != 0 || n < 0 || (uint64_t)n < min || (uint64_t)n > max) {
		cmq_jerr(c, "%s is out of range; valid: %" PRIu64 " to %" PRIu64,
		         json_object_to_json_string(v), min, max);
		cmq_jpath_pop(c, old);
		return false;
	}
	cmq_jpath_pop(c, old);
	*out = (uint64_t)n;
	return true;
}

static struct json_object *typed_member(struct cmq_jctx *c, struct json_object *obj,
                                        const char *key, bool required, enum json_type t,
                                        const char *what)
{
	struct json_object *v = cmq_jget(c, obj, key, required);
	char d[160];
	size_t old;

	if (v == NULL)
		return NULL;
	if (!json_object_is_type(v, t)) {
		old = cmq_jpath_push_key(c, key);
		cmq_jerr(c, "expected %s, got %s", what, cmq_jdescribe(v, d, sizeof(d)));
		cmq_jpath_pop(c, old);
		return NULL;
	}
	return v;
}

struct json_object *cmq_jarray(struct cmq_jctx *c, struct json_object *obj, const char *key,
                               bool required)
{
	return typed_member(c, obj, key, required, json_type_array, "an array");
}

struct json_object *cmq_jobject(struct cmq_jctx *c, struct json_object *obj, const char *key,
                                bool required)
{
	return typed_member(c, obj, key, required, json_type_object, "an object");
}

void cmq_jcheck_keys(struct cmq_jctx *c, struct json_object *obj, const char *const *known)
{
	char list[512], q[128];

	json_object_object_foreach(obj, key, val)
	{
		bool found = false;
		size_t off = 0;

		(void)val;
		for (const char *const *k = known; *k != NULL; k++) {
			if (strcmp(*k, key) == 0) {
				found = true;
				break;
			}
		}
		if (found)
			continue;
		list[0] = '\0';
		for (const char *const *k = known; *k != NULL && off < sizeof(list); k++) {
			int n = snprintf(list + off, sizeof(list) - off, "%s%s",
			                 k == known ? "" : ", ", *k);

			if (n < 0)
				break;
			off += (size_t)n;
		}
		cmq_jwarn(c, "unknown key %s ignored; known keys: %s",
		          cmq_diag_quote(key, strlen(key), q, sizeof(q)), list);
	}
}

int cmq_jenum(struct cmq_jctx *c, const char *s, const char *what, const char *const *names)
{
	char list[512], q[128];
	size_t off = 0;

	for (int i = 0; names[i] != NULL; i++) {
		if (strcmp(names[i], s) == 0)
			return i;
	}
	list[0] = '\0';
	for (int i = 0; names[i] != NULL && off < sizeof(list); i++) {
		int n = snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "", names[i]);

		if (n < 0)
			break;
		off += (size_t)n;
	}
	cmq_jerr(c, "%s is not a %s; valid: %s", cmq_diag_quote(s, strlen(s), q, sizeof(q)), what,
	         list);
	return -1;
}
