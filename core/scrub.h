/*
 * scrub.h - the scrub engine: applies a policy's scrub profile to one parsed
 * JSON payload and builds the scrubbed payload from nothing.
 *
 * Posture: allow-list. The output starts as an empty object; only what an
 * operation writes reaches it, so a field nobody named (a new firmware's
 * "mac" or "imsi") is dropped. Operations run in profile order:
 *   keep                 copy the input value at path (deep copy)
 *   drop                 remove path from the output (after a keep of a subtree)
 *   pseudonymise         string/integer -> keyed, per-epoch HMAC pseudonym (pseudo.h)
 *   generalise_location  GeoJSON Point / {lat,lon} / [lon,lat] -> geohash or grid cell
 *   coarsen_time         ISO 8601 string or Unix time (s or ms) -> floor to N seconds
 *   round                number -> nearest multiple of step
 *   bucket               number -> label of the interval between two bounds
 *   redact               strings (also every string inside an object/array) with MAC
 *                        addresses, licence plates, e-mail addresses, phone numbers
 *                        replaced by "[mac]", "[plate]", "[email]", "[phone]"
 *   aggregate            (the profile's only op) yields a group and a count for
 *                        aggregate.h instead of an output document
 * All but keep, drop and aggregate read the *input* value and write the result at the
 * same path in the output. A path absent from the input is skipped (nothing to leak);
 * a present value of the wrong type or out of range fails the whole message
 * (CMQ_DROP_WRONG_TYPE / CMQ_DROP_BAD_VALUE) - fail closed, never partially scrubbed.
 *
 * Paths: dot-separated object keys; a key may be followed by "[]" (every element of
 * the array) or "[N]" (element N), e.g. "observedVehicle.licensePlate.identifier",
 * "readings[].value", "location.coordinates[0]". Keys may not be empty or contain
 * '.', '[', ']'. Paths are compiled once at policy load (struct cmq_scrub_path).
 *
 * Memory: the output tree is a json-c object owned by the caller. Thread: a
 * profile is read-only and may be shared; the pseudonymiser in env is not
 * thread-safe, so calls sharing one env must be serialised.
 * Cost: linear in the size of the fields the profile names; a typical profile
 * (~10 ops, 300-byte payload) is a few microseconds including parse and print.
 */
#ifndef CMQ_SCRUB_H
#define CMQ_SCRUB_H

#include "drop.h"
#include "jsonutil.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cmq_pseudo;
struct cmq_profile;
struct cmq_scrub_op;

#define CMQ_SCRUB_MAX_BOUNDS 64
#define CMQ_SCRUB_PATH_MAX   32 /* segments in one path */
#define CMQ_GROUP_MAX        64 /* longest aggregate group value, bytes */

/* Redaction pattern bits (redact op "patterns": ["mac", "plate", "email", "phone"]). */
enum {
	CMQ_REDACT_MAC = 1u << 0,
	CMQ_REDACT_PLATE = 1u << 1,
	CMQ_REDACT_EMAIL = 1u << 2,
	CMQ_REDACT_PHONE = 1u << 3,
};

#define CMQ_SEG_KEY  (-1) /* plain key */
#define CMQ_SEG_EACH (-2) /* key[] : every element */

struct cmq_scrub_seg {
	char *key;
	size_t key_len;
	int32_t index; /* CMQ_SEG_KEY, CMQ_SEG_EACH, or N >= 0 for key[N] */
};

struct cmq_scrub_path {
	struct cmq_scrub_seg *seg;
	size_t n;
};

/*
 * What one scrub call needs besides the profile. pseudo may be NULL (a profile that
 * pseudonymises then fails with CMQ_DROP_NO_KEY). domain is mixed into every
 * pseudonym (the gateway passes the profile id) so equal values in different data
 * sets do not link. now is Unix time in seconds (selects the key epoch).
 */
struct cmq_scrub_env {
	struct cmq_pseudo *pseudo;
	int64_t now;
};

/* Where and why a scrub failed, for counters and log lines. */
struct cmq_scrub_fail {
	enum cmq_drop reason;
	char path[128];   /* the op's path (as written in the policy), "" if none */
	char detail[128]; /* e.g. "expected a number, got string" */
};

/* What an aggregate profile extracted from one message. */
struct cmq_scrub_agg {
	const struct cmq_scrub_op *op; /* the aggregate op (window, k, epsilon) */
	char group[CMQ_GROUP_MAX + 1]; /* value of group_by: [A-Za-z0-9_.:-]{1,64} */
	uint64_t count;                /* value of path: a non-negative integer */
};

/*
 * Compile a path as written in a policy ("a.b[].c"). Returns CMQ_OK, CMQ_ERR_PARSE
 * (syntax; *why says what is wrong) or CMQ_ERR_NOMEM. out is zeroed first; free with
 * cmq_scrub_path_cleanup (also after a failure).
 */
int cmq_scrub_path_compile(const char *text, struct cmq_scrub_path *out, const char **why);
void cmq_scrub_path_cleanup(struct cmq_scrub_path *p);

/*
 * Read and validate the parameters of one op object from policy.json (kind and path
 * are already set in op, op->path compiled by this call). Every problem is reported
 * through c (file, JSON path, value, what is valid). Returns true if valid. On false
 * op may hold partial allocations: cmq_scrub_op_cleanup frees them in either case.
 */
bool cmq_scrub_op_load(struct cmq_jctx *c, struct json_object *o, struct cmq_scrub_op *op);
/*
 * Free everything op owns - op->path included - and zero it. A false return from
 * cmq_scrub_op_load that added no error to c->diag means out of memory.
 */
void cmq_scrub_op_cleanup(struct cmq_scrub_op *op);

/*
 * Parse a payload for scrubbing: at most max_bytes, nesting at most max_depth (objects
 * and arrays inside each other: {"a": [1]} is 2), valid UTF-8, strict JSON (no NaN,
 * Infinity, single quotes or raw control characters), a JSON object at the top. On
 * success *out is the tree (caller puts it). On failure returns the drop reason
 * (NOT_JSON, TOO_DEEP, TOO_LARGE, BAD_UTF8, NOT_OBJECT, INTERNAL) and *out is NULL.
 */
enum cmq_drop cmq_scrub_parse(const void *payload, size_t len, size_t max_bytes, int max_depth,
                              struct json_object **out);

/*
 * Apply prof to in. For a profile without an aggregate op: returns CMQ_DROP_NONE and
 * *out (a new object the caller owns; it may be empty). For an aggregate profile:
 * returns CMQ_DROP_NONE with *out NULL and agg filled. On failure returns the reason,
 * *out is NULL and fail (if non-NULL) says where. in is not modified.
 */
enum cmq_drop cmq_scrub_apply(const struct cmq_profile *prof, struct json_object *in,
                              const struct cmq_scrub_env *env, struct json_object **out,
                              struct cmq_scrub_agg *agg, struct cmq_scrub_fail *fail);

/*
 * The value at path p in a parsed payload (borrowed from root), or NULL if absent, JSON
 * null, or p has a "[]" segment (which names many values, not one).
 */
struct json_object *cmq_scrub_path_get(struct json_object *root, const struct cmq_scrub_path *p);

/*
 * Redact the patterns in mask inside s[0..len) into buf (NUL-terminated). Returns the
 * number of matches replaced, or -1 if buf (bufsize bytes) is too small.
 */
int cmq_redact(const char *s, size_t len, unsigned mask, char *buf, size_t bufsize);
/* The same, and *out_len (if non-NULL) is the output's length: s may hold NUL bytes. */
int cmq_redact_len(const char *s, size_t len, unsigned mask, char *buf, size_t bufsize,
                   size_t *out_len);

/* Geohash of (lat, lon) at precision 1..12 into out (precision + 1 bytes). */
void cmq_geohash(double lat, double lon, int precision, char *out);

#endif
