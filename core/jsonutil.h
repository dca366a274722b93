/*
 * jsonutil.h - reading configuration JSON with precise diagnostics.
 *
 * cmq_json_load_file() reads a file (size-capped), parses it with json-c at a
 * bounded depth, rejects duplicate object keys (json-c silently keeps the last
 * one, which would let a second "tier" hide the first), and hashes the bytes
 * (SHA-256) so a policy can be identified by content.
 *
 * The cmq_j*() getters read one member of an object, check its type and
 * range, and on failure add a diagnostic naming the file, the JSON path
 * ("$.vendors[2].tier"), the bad value and what is valid. A struct cmq_jctx
 * carries the file name, the diagnostics and the current path; push/pop keep
 * the path in step with the walk.
 *
 * Memory: the json-c tree belongs to the caller (json_object_put); strings the
 * getters return are borrowed from it. Thread: not thread-safe.
 */
#ifndef CMQ_JSONUTIL_H
#define CMQ_JSONUTIL_H

#include "diag.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CMQ_JSON_MAX_DEPTH 32
#define CMQ_JPATH_MAX      256 /* longest formatted path, bytes (longer ones end in "...") */
#define CMQ_JPATH_DEPTH    64  /* path segments remembered (deeper ones show as "...") */

/*
 * Where a loader is: the file, where its problems go, and the path as a stack of
 * segments. Pushing borrows the key (it must live until the matching pop, as keys of a
 * json-c object or string literals do); the path is formatted only when a diagnostic
 * needs it, so walking a large valid file costs no formatting at all.
 */
struct cmq_jctx {
	const char *file;      /* name used in messages */
	struct cmq_diag *diag; /* where problems go */
	struct {
		const char *key; /* NULL: an array index */
		size_t index;
	} seg[CMQ_JPATH_DEPTH];
	size_t depth;             /* segments pushed (may exceed CMQ_JPATH_DEPTH) */
	char path[CMQ_JPATH_MAX]; /* formatted by cmq_jpath() */
};

/*
 * Read and parse path (reported as display). On success *out is the root
 * (caller frees with json_object_put) and sha256 (if non-NULL) the file's hash.
 * Returns CMQ_OK, CMQ_ERR_IO (cannot read; diagnostic with strerror),
 * CMQ_ERR_TOO_BIG (over max_bytes), CMQ_ERR_PARSE (malformed JSON, with
 * line:column, or a duplicate key) or CMQ_ERR_NOMEM. *out is NULL on failure.
 */
int cmq_json_load_file(const char *path, const char *display, size_t max_bytes,
                       struct cmq_diag *diag, struct json_object **out, uint8_t sha256[32]);

/*
 * Read path (reported as display) whole into *out (NUL-terminated, cmq_free), *len its
 * length. Returns CMQ_OK, CMQ_ERR_IO (diagnostic with strerror), CMQ_ERR_TOO_BIG (over
 * max_bytes) or CMQ_ERR_NOMEM; *out is NULL on failure.
 */
int cmq_read_file(const char *path, const char *display, size_t max_bytes, struct cmq_diag *diag,
                  char **out, size_t *len);

/* Same for an in-memory document (used by fuzzers and the control API). */
int cmq_json_parse(const char *text, size_t len, const char *display, struct cmq_diag *diag,
                   struct json_object **out);

/*
 * A file whose one big array is parsed an element at a time. cmq_json_load_split() reads
 * path and builds the DOM of everything except the elements of the array under the
 * top-level key split_key: the root holds an empty array there, and s records where each
 * element is; cmq_json_split_parse() then parses them one by one. A 100,000-rule policy is
 * thus never one json-c tree, which would take ten times the file's size in memory and
 * most of the load time in page faults.
 *
 * The strict checks of cmq_json_parse (duplicate keys and the rest) cover the whole file;
 * what they find is reported by cmq_json_split_finish(), after every element was parsed,
 * and only if json-c found no syntax error anywhere (a syntax error can mislead them).
 * If the key is absent, not an array, or the text too broken to follow, s->found is false
 * and root is the whole document parsed the usual way.
 *
 * Returns as cmq_json_load_file. On success the caller owns *out and s (free both:
 * json_object_put, cmq_json_split_cleanup); on failure neither needs freeing.
 */
struct cmq_json_split {
	char *text; /* the file, NUL-terminated */
	size_t len;
	const char *display;
	bool found;          /* the elements below are what the root's array stands for */
	size_t *start, *end; /* element i is text[start[i]..end[i]) */
	size_t n;
	size_t syntax_errors;
	struct json_tokener *tok;
	struct cmq_diag pending; /* the strict checks' findings, until cmq_json_split_finish */
};

int cmq_json_load_split(const char *path, const char *display, size_t max_bytes,
                        const char *split_key, struct cmq_diag *diag, struct json_object **out,
                        struct cmq_json_split *s, uint8_t sha256[32]);
/* The same for text already in memory (allocated with cmq_malloc, NUL at text[len]): s
 * takes ownership of text whatever the result. */
int cmq_json_split_text(char *text, size_t len, const char *display, const char *split_key,
                        struct cmq_diag *diag, struct json_object **out, struct cmq_json_split *s);
/* Parse element i: CMQ_OK and *out (caller frees), or CMQ_ERR_PARSE with a diagnostic. */
int cmq_json_split_parse(struct cmq_json_split *s, size_t i, struct cmq_diag *diag,
                         struct json_object **out);
/* Report the strict checks' findings (see above); CMQ_OK if there were none. */
int cmq_json_split_finish(struct cmq_json_split *s, struct cmq_diag *diag);
/* Free what s holds; safe on a zeroed struct. */
void cmq_json_split_cleanup(struct cmq_json_split *s);

/* Start a context at "$". */
void cmq_jctx_init(struct cmq_jctx *c, const char *file, struct cmq_diag *diag);
/* Descend into member key (borrowed until popped); returns a mark for cmq_jpath_pop. */
size_t cmq_jpath_push_key(struct cmq_jctx *c, const char *key);
/* Descend into array element i; returns a mark for cmq_jpath_pop. */
size_t cmq_jpath_push_index(struct cmq_jctx *c, size_t i);
/* Return to the place a push's mark names. */
void cmq_jpath_pop(struct cmq_jctx *c, size_t mark);
/*
 * The current path, e.g. "$.vendors[2][\"odd key\"]": keys that are not identifier-like
 * are quoted; a path longer than CMQ_JPATH_MAX keeps what fits and ends in "...". The
 * string lives in c and changes with the next call.
 */
const char *cmq_jpath(struct cmq_jctx *c);

/* Diagnostics at the current path. */
void cmq_jerr(struct cmq_jctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cmq_jwarn(struct cmq_jctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Short description of a value for messages: "number 42", "string \"x\"", "an array". */
const char *cmq_jdescribe(struct json_object *v, char *buf, size_t buflen);

/*
 * Member key of obj. If absent or null: NULL, plus an error when required
 * ("missing required field", "is null; a value is required"); an optional null
 * counts as absent. obj must be an object (checked by the caller).
 */
struct json_object *cmq_jget(struct cmq_jctx *c, struct json_object *obj, const char *key,
                             bool required);

/*
 * Typed getters. Each returns true if the member is absent-and-optional (out
 * untouched) or present and valid (out set); false after adding an error.
 * Strings must be valid UTF-8 without NUL and at most max_len bytes
 * (0 = CMQ_JSON_STRING_MAX).
 */
#define CMQ_JSON_STRING_MAX 4096
bool cmq_jstring(struct cmq_jctx *c, struct json_object *obj, const char *key, bool required,
                 size_t max_len, const char **out);
bool cmq_jbool(struct cmq_jctx *c, struct json_object *obj, const char *key, bool required,
               bool *out);
bool cmq_juint(struct cmq_jctx *c, struct json_object *obj, const char *key, bool required,
               uint64_t min, uint64_t max, uint64_t *out);
/* Member that must be an array / an object; NULL if absent-optional or wrong (error added). */
struct json_object *cmq_jarray(struct cmq_jctx *c, struct json_object *obj, const char *key,
                               bool required);
struct json_object *cmq_jobject(struct cmq_jctx *c, struct json_object *obj, const char *key,
                                bool required);

/* Whether v is an object; adds "expected an object, got ..." at the current path if not. */
bool cmq_jis_object(struct cmq_jctx *c, struct json_object *v);

/*
 * Check a value is a string (valid UTF-8, no NUL, <= max_len); adds an error
 * at the current path otherwise. Returns the string or NULL.
 */
const char *cmq_jas_string(struct cmq_jctx *c, struct json_object *v, size_t max_len);

/* Warn about members of obj not in the NULL-terminated known list. */
void cmq_jcheck_keys(struct cmq_jctx *c, struct json_object *obj, const char *const *known);

/*
 * Match s against a NULL-terminated list of names; returns the index or -1
 * after adding an error "<quoted s> is not a <what>; valid: a, b, c".
 */
int cmq_jenum(struct cmq_jctx *c, const char *s, const char *what, const char *const *names);

#endif
