/*
 * audit.c - the hash-chained audit log described in audit.h.
 *
 * One function, check_line(), decides what a well-formed line is; open (on the last line),
 * append (on the line it is about to write) and verify (on every line) all go through it, so
 * whatever append writes, verify accepts. The chain itself is a SHA-256 over each line's exact
 * bytes, never over a re-serialisation: json-c may print a number differently from how it was
 * written, the hash must not care.
 *
 * The writer keeps the size of the file as it knows it (complete lines only). A failed append
 * truncates back to it; every append first checks that the file still has exactly that size,
 * which is how bytes from anyone else are noticed.
 */
#include "audit.h"

#include "alloc.h"
#include "atomic.h"
#include "diag.h"
#include "error.h"
#include "jsonutil.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK     (64u * 1024u) /* bytes read per step, backwards at open, forwards in verify */
#define TIME_LEN  20            /* "2026-11-28T14:05:00Z" */
#define TIME_MAX  INT64_C(253402300799) /* 9999-12-31T23:59:59Z */
#define ERR_MAX   512
#define FIELDS    9
#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

static const char *const field_names[FIELDS] = {"seq",    "time",  "actor",  "action", "target",
                                                "before", "after", "reason", "prev"};

struct cmq_audit {
	char *path;
	int fd;
	bool sync;
	bool dirty;  /* a failed append's bytes could not be cut off yet: retry first */
	bool locked; /* holds the writers' flock (only inside open and append) */
	off_t size;  /* bytes of complete lines we know the file holds */
	uint64_t next_seq;
	char head[CMQ_AUDIT_HASH_HEX + 1];
	char error[ERR_MAX];
};

/* What check_line() reads from a well-formed line. */
struct line_info {
	uint64_t seq;
	char prev[CMQ_AUDIT_HASH_HEX + 1];
};

static void describe_errno(int errnum, char *buf, size_t buflen)
{
	if (strerror_r(errnum, buf, buflen) != 0)
		snprintf(buf, buflen, "error %d", errnum);
}

static void sha256_hex(const char *data, size_t len, char hex[CMQ_AUDIT_HASH_HEX + 1])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)data, len, md);
	for (size_t i = 0; i < sizeof(md); i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[CMQ_AUDIT_HASH_HEX] = '\0';
}

/* ---- time: proleptic Gregorian calendar, H. Hinnant's days_from_civil and inverse ---- */

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* t in [0, TIME_MAX] as "YYYY-MM-DDTHH:MM:SSZ". */
static void format_time(int64_t t, char out[32])
{
	int64_t z = t / 86400 + 719468, secs = t % 86400;
	int64_t era = z / 146097, doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
	int64_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
	int64_t y = yoe + era * 400 + (m <= 2);

	snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)y, (int)m, (int)d,
	         (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
}

/* Whether s[0..len) is a time format_time() could have written. */
static bool time_valid(const char *s, size_t len)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
	int64_t v[6] = {0}, t;
	char again[32];
	int f = 0;

	if (len != TIME_LEN)
		return false;
	for (size_t i = 0; i < TIME_LEN; i++) {
		if (shape[i] == 'd') {
			if (s[i] < '0' || s[i] > '9')
				return false;
			v[f] = v[f] * 10 + (s[i] - '0');
		} else if (s[i] != shape[i]) {
			return false;
		} else {
			f++;
		}
	}
	if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 59)
		return false;
	t = days_from_civil(v[0], v[1], v[2]) * 86400 + v[3] * 3600 + v[4] * 60 + v[5];
	if (t < 0 || t > TIME_MAX)
		return false;
	format_time(t, again); /* round trip: refuses 2026-02-30 */
	return memcmp(again, s, TIME_LEN) == 0;
}

/* ---- what a line is ---- */

static bool is_hash_hex(const char *s, size_t len)
{
	if (len != CMQ_AUDIT_HASH_HEX)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return true;
}

/* A json-c message for a one-line document starts "1:<col>: "; say "column <col>: ". */
static void json_problem(const struct cmq_diag *d, char *why, size_t whylen)
{
	const char *text = d->n > 0 ? d->entries[0].text : "malformed JSON";
	const char *colon;

	if (strncmp(text, "1:", 2) == 0 && (colon = strchr(text + 2, ':')) != NULL) {
		snprintf(why, whylen, "column %.*s:%s", (int)(colon - text - 2), text + 2,
		         colon + 1);
		return;
	}
	snprintf(why, whylen, "%s", text);
}

static bool string_field(struct json_object *v, bool non_empty, size_t *len)
{
	if (!json_object_is_type(v, json_type_string))
		return false;
	*len = (size_t)json_object_get_string_len(v);
	return !non_empty || *len > 0;
}

/*
 * Check that text[0..len) (no newline) is an audit line: strict JSON (cmq_json_parse: UTF-8,
 * no duplicate keys, no NaN), an object with exactly the nine fields in order, each of its
 * type. Returns CMQ_OK and *li; CMQ_ERR_PARSE with why ("seq is ...; ..."); CMQ_ERR_NOMEM.
 */
static int check_line(const char *text, size_t len, struct line_info *li, char *why, size_t whylen)
{
	struct json_object *root = NULL, *v[FIELDS];
	struct cmq_diag d;
	char q[128], desc[128];
	size_t i = 0, slen;
	int rc;

	memset(li, 0, sizeof(*li));
	why[0] = '\0';
	if (len == 0) {
		snprintf(why, whylen, "empty line");
		return CMQ_ERR_PARSE;
	}
	cmq_diag_init(&d);
	rc = cmq_json_parse(text, len, NULL, &d, &root);
	if (rc == CMQ_ERR_NOMEM)
		goto out;
	if (rc != CMQ_OK) {
		json_problem(&d, why, whylen);
		rc = CMQ_ERR_PARSE;
		goto out;
	}
	rc = CMQ_ERR_PARSE;
	if (!json_object_is_type(root, json_type_object)) {
		snprintf(why, whylen, "not a JSON object but %s",
		         cmq_jdescribe(root, desc, sizeof(desc)));
		goto out;
	}
	if (text[0] != '{' || text[len - 1] != '}') {
		snprintf(why, whylen, "space before or after the object (a carriage return?)");
		goto out;
	}
	for (size_t f = 0; f < FIELDS; f++) {
		if (!json_object_object_get_ex(root, field_names[f], &v[f])) {
			snprintf(why, whylen, "missing field \"%s\"", field_names[f]);
			goto out;
		}
	}
	json_object_object_foreach(root, key, val)
	{
		(void)val;
		if (i >= FIELDS || strcmp(key, field_names[i]) != 0) {
			bool known = false;

			for (size_t f = 0; f < FIELDS; f++)
				known = known || strcmp(key, field_names[f]) == 0;
			if (known)
				snprintf(
				    why, whylen, "field %s out of order; expected \"%s\" there",
				    cmq_diag_quote(key, strlen(key), q, sizeof(q)), field_names[i]);
			else
				snprintf(why, whylen, "unexpected field %s",
				         cmq_diag_quote(key, strlen(key), q, sizeof(q)));
			goto out;
		}
		i++;
	}
	if (!json_object_is_type(v[0], json_type_int) || json_object_get_int64(v[0]) < 1 ||
	    json_object_get_int64(v[0]) == INT64_MAX) {
		snprintf(why, whylen, "seq is %s; it must be an integer >= 1",
		         cmq_jdescribe(v[0], desc, sizeof(desc)));
		goto out;
	}
	li->seq = (uint64_t)json_object_get_int64(v[0]);
	if (!string_field(v[1], true, &slen) || !time_valid(json_object_get_string(v[1]), slen)) {
		snprintf(why, whylen,
		         "time is %s; it must be a UTC time like \"2026-11-28T14:05:00Z\"",
		         cmq_jdescribe(v[1], desc, sizeof(desc)));
		goto out;
	}
	for (size_t f = 2; f <= 7; f++) {
		bool non_empty = f == 2 || f == 3; /* actor, action */

		if (f == 5 || f == 6)
			continue; /* before, after: any value */
		if (!string_field(v[f], non_empty, &slen)) {
			snprintf(why, whylen, "%s is %s; it must be a%s string", field_names[f],
			         cmq_jdescribe(v[f], desc, sizeof(desc)),
			         non_empty ? " non-empty" : "");
			goto out;
		}
	}
	if (!string_field(v[8], true, &slen) || !is_hash_hex(json_object_get_string(v[8]), slen)) {
		snprintf(why, whylen, "prev is %s; it must be 64 lowercase hex digits",
		         cmq_jdescribe(v[8], desc, sizeof(desc)));
		goto out;
	}
	memcpy(li->prev, json_object_get_string(v[8]), CMQ_AUDIT_HASH_HEX + 1);
	rc = CMQ_OK;
out:
	json_object_put(root);
	cmq_diag_cleanup(&d);
	return rc;
}

/* ---- open: the last line, read backwards ---- */

/* Read exactly n bytes at off. Returns 0 or an errno value (EIO if the file ended). */
static int pread_full(int fd, char *buf, size_t n, off_t off)
{
	while (n > 0) {
		ssize_t r = pread(fd, buf, n, off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno;
		if (r == 0)
			return EIO;
		buf += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

/* *pos = offset of the last '\n' in [lo, hi), or -1. Returns 0 or an errno value. */
static int find_last_newline(int fd, char *chunk, off_t lo, off_t hi, off_t *pos)
{
	*pos = -1;
	while (hi > lo) {
		size_t n = hi - lo < (off_t)CHUNK ? (size_t)(hi - lo) : CHUNK;
		int e = pread_full(fd, chunk, n, hi - (off_t)n);

		if (e != 0)
			return e;
		for (size_t i = n; i > 0; i--) {
			if (chunk[i - 1] == '\n') {
				*pos = hi - (off_t)n + (off_t)(i - 1);
				return 0;
			}
		}
		hi -= (off_t)n;
	}
	return 0;
}

static off_t window_start(off_t end)
{
	return end > (off_t)CMQ_AUDIT_LINE_MAX + 1 ? end - (off_t)CMQ_AUDIT_LINE_MAX - 1 : 0;
}

/*
 * Learn next_seq and head from the last complete line, and find where complete lines end
 * (*complete; the rest is a torn tail). Changes nothing.
 */
static int read_tail(struct cmq_audit *a, off_t size, off_t *complete, char *err, size_t errlen)
{
	char *chunk = cmq_malloc(CHUNK), *line = NULL, why[ERR_MAX / 2], reason[128];
	off_t nl1, nl0, start;
	struct line_info li;
	size_t len;
	int e, rc;

	*complete = 0;
	if (chunk == NULL)
		return CMQ_ERR_NOMEM;
	rc = CMQ_ERR_IO;
	e = find_last_newline(a->fd, chunk, window_start(size), size, &nl1);
	if (e != 0)
		goto io;
	if (nl1 < 0 && size > (off_t)CMQ_AUDIT_LINE_MAX) {
		snprintf(
		    err, errlen,
		    "%s: the last %u bytes hold no newline: not a torn audit line (the file is "
		    "not an audit log, or its end was overwritten); refusing to append",
		    a->path, CMQ_AUDIT_LINE_MAX + 1);
		rc = CMQ_ERR_PARSE;
		goto out;
	}
	if (nl1 < 0) { /* empty, or nothing but a torn first line */
		a->next_seq = 1;
		memcpy(a->head, ZERO_HASH, sizeof(ZERO_HASH));
		rc = CMQ_OK;
		goto out;
	}
	*complete = nl1 + 1;
	e = find_last_newline(a->fd, chunk, window_start(nl1), nl1, &nl0);
	if (e != 0)
		goto io;
	start = nl0 + 1;
	len = (size_t)(nl1 - start);
	if (len > CMQ_AUDIT_LINE_MAX) {
		snprintf(err, errlen,
		         "%s: the last line (byte offset %lld) is longer than %u bytes: not an "
		         "audit line; run the verify command on the log",
		         a->path, (long long)start, CMQ_AUDIT_LINE_MAX);
		rc = CMQ_ERR_PARSE;
		goto out;
	}
	line = cmq_malloc(len + 1);
	if (line == NULL) {
		rc = CMQ_ERR_NOMEM;
		goto out;
	}
	e = pread_full(a->fd, line, len, start);
	if (e != 0)
		goto io;
	rc = check_line(line, len, &li, why, sizeof(why));
	if (rc == CMQ_ERR_PARSE)
		snprintf(err, errlen,
		         "%s: the last line (byte offset %lld) is not an audit line: %s; run the "
		         "verify command on the log",
		         a->path, (long long)start, why);
	if (rc != CMQ_OK)
		goto out;
	a->next_seq = li.seq + 1;
	sha256_hex(line, len, a->head);
	goto out;
io:
	describe_errno(e, reason, sizeof(reason));
	snprintf(err, errlen, "%s: read: %s", a->path, reason);
	rc = CMQ_ERR_IO;
out:
	cmq_free(line);
	cmq_free(chunk);
	return rc;
}

/* The writers' lock, waiting at most CMQ_AUDIT_LOCK_MS. 0, or an errno. */
static int lock_bounded(int fd)
{
	for (int waited = 0;; waited += 5) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR)
			return errno;
		if (waited >= CMQ_AUDIT_LOCK_MS)
			return EWOULDBLOCK;
		usleep(5 * 1000);
	}
}

static void unlock(int fd)
{
	(void)flock(fd, LOCK_UN);
}

/* A torn tail (a writer that died mid-line) is cut off, under the lock. */
static int cut_torn_tail(struct cmq_audit *a, off_t size, off_t complete, char *err, size_t errlen)
{
	char reason[128];

	if (complete >= size)
		return CMQ_OK;
	if (ftruncate(a->fd, complete) != 0 || fsync(a->fd) != 0) {
		describe_errno(errno, reason, sizeof(reason));
		snprintf(err, errlen, "%s: cannot cut off the torn last line: %s", a->path, reason);
		return CMQ_ERR_IO;
	}
	snprintf(err, errlen,
	         "%s: warning: cut off a torn last line (%lld bytes after byte offset %lld "
	         "without a newline: an append interrupted by a crash, never reported as done)",
	         a->path, (long long)(size - complete), (long long)complete);
	return CMQ_OK;
}

int cmq_audit_open(const char *path, struct cmq_audit **out, char *err, size_t errlen)
{
	struct cmq_audit *a = NULL;
	char reason[128];
	struct stat st;
	off_t complete;
	int rc;

	*out = NULL;
	if (errlen > 0)
		err[0] = '\0';
	if (path == NULL || path[0] == '\0') {
		snprintf(err, errlen, "audit log: no path given");
		return CMQ_ERR_INVAL;
	}
	a = cmq_calloc(1, sizeof(*a));
	if (a == NULL || (a->path = cmq_strdup(path)) == NULL) {
		cmq_free(a);
		snprintf(err, errlen, "%s: out of memory", path);
		return CMQ_ERR_NOMEM;
	}
	a->sync = true;
	a->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (a->fd < 0) {
		describe_errno(errno, reason, sizeof(reason));
		snprintf(err, errlen, "%s: open: %s", path, reason);
		rc = CMQ_ERR_IO;
		goto fail;
	}
	rc = lock_bounded(a->fd);
	if (rc != 0) {
		describe_errno(rc, reason, sizeof(reason));
		snprintf(err, errlen,
		         "%s: cannot take the writers' lock within %d ms (%s): another writer "
		         "holds it",
		         path, CMQ_AUDIT_LOCK_MS, reason);
		rc = CMQ_ERR_IO;
		goto fail;
	}
	a->locked = true;
	if (fstat(a->fd, &st) != 0) {
		describe_errno(errno, reason, sizeof(reason));
		snprintf(err, errlen, "%s: fstat: %s", path, reason);
		rc = CMQ_ERR_IO;
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		rc = CMQ_ERR_IO;
		goto fail;
	}
	if (st.st_size == 0) {
		/* Possibly just created: make its name durable too. */
		rc = cmq_atomic_fsync_dir(path, err, errlen);
		if (rc != CMQ_OK)
			goto fail;
	}
	rc = read_tail(a, st.st_size, &complete, err, errlen);
	if (rc == CMQ_ERR_NOMEM)
		snprintf(err, errlen, "%s: out of memory", path);
	if (rc != CMQ_OK)
		goto fail;
	rc = cut_torn_tail(a, st.st_size, complete, err, errlen);
	if (rc != CMQ_OK)
		goto fail;
	a->size = complete;
	unlock(a->fd);
	a->locked = false;
	*out = a;
	return CMQ_OK;
fail:
	cmq_audit_close(a);
	return rc;
}

void cmq_audit_close(struct cmq_audit *a)
{
	if (a == NULL)
		return;
	if (a->fd >= 0)
		close(a->fd); /* releases the flock if held */
	cmq_free(a->path);
	cmq_free(a);
}

void cmq_audit_set_sync(struct cmq_audit *a, bool sync)
{
	a->sync = sync;
}

const char *cmq_audit_head(const struct cmq_audit *a)
{
	return a->head;
}

uint64_t cmq_audit_next_seq(const struct cmq_audit *a)
{
	return a->next_seq;
}

const char *cmq_audit_last_error(const struct cmq_audit *a)
{
	return a->error;
}

/* ---- append ---- */

/* Add v under the constant key; v NULL means JSON null only if null_ok (else json-c failed
 * to allocate). Takes v in every case. */
static int add(struct json_object *o, const char *key, struct json_object *v, bool null_ok)
{
	if (v == NULL && !null_ok)
		return CMQ_ERR_NOMEM;
	if (json_object_object_add_ex(
	        o, key, v, JSON_C_OBJECT_ADD_KEY_IS_NEW | JSON_C_OBJECT_KEY_IS_CONSTANT) != 0) {
		json_object_put(v);
		return CMQ_ERR_NOMEM;
	}
	return CMQ_OK;
}

static int build_line(const struct cmq_audit *a, const struct cmq_audit_entry *e,
                      struct json_object **out)
{
	struct json_object *o = json_object_new_object();
	char when[32];
	int rc = CMQ_OK;

	*out = NULL;
	if (o == NULL)
		return CMQ_ERR_NOMEM;
	format_time(e->time, when);
	if (rc == CMQ_OK)
		rc = add(o, "seq", json_object_new_int64((int64_t)a->next_seq), false);
	if (rc == CMQ_OK)
		rc = add(o, "time", json_object_new_string(when), false);
	if (rc == CMQ_OK)
		rc = add(o, "actor", json_object_new_string(e->actor), false);
	if (rc == CMQ_OK)
		rc = add(o, "action", json_object_new_string(e->action), false);
	if (rc == CMQ_OK)
		rc = add(o, "target", json_object_new_string(e->target), false);
	if (rc == CMQ_OK)
		rc = add(o, "before", json_object_get(e->before), true);
	if (rc == CMQ_OK)
		rc = add(o, "after", json_object_get(e->after), true);
	if (rc == CMQ_OK)
		rc = add(o, "reason", json_object_new_string(e->reason ? e->reason : ""), false);
	if (rc == CMQ_OK)
		rc = add(o, "prev", json_object_new_string(a->head), false);
	if (rc != CMQ_OK) {
		json_object_put(o);
		return rc;
	}
	*out = o;
	return CMQ_OK;
}

/* Cut the file back to the complete lines we know of; on failure remember to retry. */
static void cut_back(struct cmq_audit *a)
{
	a->dirty = ftruncate(a->fd, a->size) != 0;
}

static int append_locked(struct cmq_audit *a, const struct cmq_audit_entry *e);

int cmq_audit_append(struct cmq_audit *a, const struct cmq_audit_entry *e)
{
	char reason[128];
	int rc;

	a->error[0] = '\0';
	if (e == NULL || e->actor == NULL || e->actor[0] == '\0' || e->action == NULL ||
	    e->action[0] == '\0' || e->target == NULL) {
		snprintf(
		    a->error, sizeof(a->error),
		    "%s: not appended: an entry needs a non-empty actor and action and a target",
		    a->path);
		return CMQ_ERR_INVAL;
	}
	if (e->time < 0 || e->time > TIME_MAX) {
		snprintf(a->error, sizeof(a->error),
		         "%s: not appended: time %" PRId64 " is outside 1970 .. 9999", a->path,
		         e->time);
		return CMQ_ERR_INVAL;
	}
	if (a->next_seq >= (uint64_t)INT64_MAX) {
		snprintf(a->error, sizeof(a->error), "%s: not appended: seq would overflow",
		         a->path);
		return CMQ_ERR_TOO_BIG;
	}
	rc = lock_bounded(a->fd);
	if (rc != 0) {
		describe_errno(rc, reason, sizeof(reason));
		snprintf(a->error, sizeof(a->error),
		         "%s: not appended: cannot take the writers' lock within %d ms (%s)",
		         a->path, CMQ_AUDIT_LOCK_MS, reason);
		return CMQ_ERR_IO;
	}
	a->locked = true;
	rc = append_locked(a, e);
	unlock(a->fd);
	a->locked = false;
	return rc;
}

/* The append proper, under the writers' lock. */
static int append_locked(struct cmq_audit *a, const struct cmq_audit_entry *e)
{
	struct json_object *o = NULL;
	struct line_info li;
	const char *text;
	char *buf = NULL, why[ERR_MAX / 2], reason[128];
	struct stat st;
	size_t len;
	ssize_t w;
	int rc;

	if (a->dirty) {
		cut_back(a);
		if (a->dirty) {
			describe_errno(errno, reason, sizeof(reason));
			snprintf(a->error, sizeof(a->error),
			         "%s: not appended: cannot cut off an earlier failed append: %s",
			         a->path, reason);
			return CMQ_ERR_IO;
		}
	}
	if (fstat(a->fd, &st) != 0) {
		describe_errno(errno, reason, sizeof(reason));
		snprintf(a->error, sizeof(a->error), "%s: not appended: fstat: %s", a->path,
		         reason);
		return CMQ_ERR_IO;
	}
	if (st.st_size != a->size) {
		/* Another writer appended (or the file was replaced): chain onto its last line,
		 * which must be a valid audit line. */
		off_t complete;

		rc = read_tail(a, st.st_size, &complete, a->error, sizeof(a->error));
		if (rc == CMQ_OK)
			rc = cut_torn_tail(a, st.st_size, complete, a->error, sizeof(a->error));
		if (rc != CMQ_OK)
			return rc; /* a->error names the file and the problem */
		a->size = complete;
	}

	rc = build_line(a, e, &o);
	if (rc != CMQ_OK)
		goto nomem;
	text = json_object_to_json_string_length(
	    o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	if (text == NULL)
		goto nomem;
	if (len > CMQ_AUDIT_LINE_MAX) {
		snprintf(a->error, sizeof(a->error),
		         "%s: not appended: the line would be %zu bytes; at most %u are allowed",
		         a->path, len, CMQ_AUDIT_LINE_MAX);
		rc = CMQ_ERR_TOO_BIG;
		goto out;
	}
	/* Read it back as verify will: what cannot be verified is not written. */
	rc = check_line(text, len, &li, why, sizeof(why));
	if (rc == CMQ_ERR_NOMEM)
		goto nomem;
	if (rc != CMQ_OK) {
		snprintf(
		    a->error, sizeof(a->error),
		    "%s: not appended: the entry does not make a valid audit line (%s); strings "
		    "must be UTF-8, numbers finite, object keys plain",
		    a->path, why);
		rc = CMQ_ERR_INVAL;
		goto out;
	}
	buf = cmq_malloc(len + 1);
	if (buf == NULL)
		goto nomem;
	memcpy(buf, text, len);
	buf[len] = '\n';

	/* One write(2): with O_APPEND the line lands whole at the end, or not at all. */
	do {
		w = write(a->fd, buf, len + 1);
	} while (w < 0 && errno == EINTR);
	if (w != (ssize_t)(len + 1)) {
		if (w < 0)
			describe_errno(errno, reason, sizeof(reason));
		else
			snprintf(reason, sizeof(reason), "short write (%zd of %zu bytes)", w,
			         len + 1);
		cut_back(a);
		snprintf(a->error, sizeof(a->error), "%s: write: %s; nothing was recorded%s",
		         a->path, reason,
		         a->dirty ? " (the partial line could not be cut off yet)" : "");
		rc = CMQ_ERR_IO;
		goto out;
	}
	if (a->sync && fdatasync(a->fd) != 0) {
		describe_errno(errno, reason, sizeof(reason));
		cut_back(a);
		snprintf(a->error, sizeof(a->error), "%s: fdatasync: %s; nothing was recorded",
		         a->path, reason);
		rc = CMQ_ERR_IO;
		goto out;
	}
	a->size += (off_t)(len + 1);
	a->next_seq++;
	sha256_hex(text, len, a->head);
	rc = CMQ_OK;
	goto out;
nomem:
	snprintf(a->error, sizeof(a->error), "%s: not appended: out of memory", a->path);
	rc = CMQ_ERR_NOMEM;
out:
	cmq_free(buf);
	json_object_put(o);
	return rc;
}

/* ---- verify: stream the lines ---- */

struct reader {
	int fd;
	char *buf;
	size_t cap, start, end; /* unread bytes are buf[start..end) */
	bool eof;
};

/*
 * Next line: CMQ_OK with *line (NULL at the end of the file), its length and whether it
 * ended with a newline; CMQ_ERR_TOO_BIG (no newline within CMQ_AUDIT_LINE_MAX + 1 bytes);
 * CMQ_ERR_IO (errno set); CMQ_ERR_NOMEM.
 */
static int reader_next(struct reader *rd, const char **line, size_t *len, bool *newline)
{
	size_t scanned = 0; /* bytes after start known to hold no newline */

	*line = NULL;
	*len = 0;
	*newline = false;
	for (;;) {
		char *nl =
		    memchr(rd->buf + rd->start + scanned, '\n', rd->end - rd->start - scanned);
		ssize_t r;

		if (nl != NULL || rd->end - rd->start > CMQ_AUDIT_LINE_MAX ||
		    (rd->eof && rd->end > rd->start)) {
			size_t n =
			    nl != NULL ? (size_t)(nl - (rd->buf + rd->start)) : rd->end - rd->start;

			if (n > CMQ_AUDIT_LINE_MAX)
				return CMQ_ERR_TOO_BIG;
			*line = rd->buf + rd->start;
			*len = n;
			*newline = nl != NULL;
			rd->start += n + (nl != NULL);
			return CMQ_OK;
		}
		if (rd->eof)
			return CMQ_OK;
		scanned = rd->end - rd->start;
		if (rd->start > 0) {
			memmove(rd->buf, rd->buf + rd->start, scanned);
			rd->end = scanned;
			rd->start = 0;
		}
		if (rd->end == rd->cap) {
			size_t cap = rd->cap * 2 < CMQ_AUDIT_LINE_MAX + 1 ? rd->cap * 2
			                                                  : CMQ_AUDIT_LINE_MAX + 1;
			char *grown = cmq_realloc(rd->buf, cap);

			if (grown == NULL)
				return CMQ_ERR_NOMEM;
			rd->buf = grown;
			rd->cap = cap;
		}
		do {
			r = read(rd->fd, rd->buf + rd->end, rd->cap - rd->end);
		} while (r < 0 && errno == EINTR);
		if (r < 0)
			return CMQ_ERR_IO;
		if (r == 0)
			rd->eof = true;
		rd->end += (size_t)r;
	}
}

/* Record the first problem: line n, "<path>: line <n>: <what>". */
static int report(struct cmq_audit_report *r, const char *path, uint64_t n, int rc, const char *fmt,
                  ...) __attribute__((format(printf, 5, 6)));

static int report(struct cmq_audit_report *r, const char *path, uint64_t n, int rc, const char *fmt,
                  ...)
{
	va_list ap;
	int off;

	r->ok = false;
	r->bad_line = n;
	if (n > 0)
		off = snprintf(r->message, sizeof(r->message), "%s: line %" PRIu64 ": ", path, n);
	else
		off = snprintf(r->message, sizeof(r->message), "%s: ", path);
	if (off < 0 || (size_t)off >= sizeof(r->message))
		return rc;
	va_start(ap, fmt);
	vsnprintf(r->message + off, sizeof(r->message) - (size_t)off, fmt, ap);
	va_end(ap);
	return rc;
}

int cmq_audit_verify(const char *path, struct cmq_audit_report *r)
{
	struct reader rd = {-1, NULL, CHUNK, 0, 0, false};
	char prev_hash[CMQ_AUDIT_HASH_HEX + 1], why[ERR_MAX / 2], reason[128];
	uint64_t n = 0, prev_seq = 0;
	int rc;

	if (r == NULL)
		return CMQ_ERR_INVAL;
	memset(r, 0, sizeof(*r));
	memcpy(r->head, ZERO_HASH, sizeof(ZERO_HASH));
	memcpy(prev_hash, ZERO_HASH, sizeof(ZERO_HASH));
	if (path == NULL || path[0] == '\0')
		return report(r, "audit log", 0, CMQ_ERR_INVAL, "no path given");
	rd.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (rd.fd < 0) {
		describe_errno(errno, reason, sizeof(reason));
		return report(r, path, 0, CMQ_ERR_IO, "open: %s", reason);
	}
	rd.buf = cmq_malloc(rd.cap);
	if (rd.buf == NULL) {
		rc = report(r, path, 0, CMQ_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (;;) {
		const char *line;
		struct line_info li;
		size_t len;
		bool newline;

		rc = reader_next(&rd, &line, &len, &newline);
		if (rc == CMQ_ERR_IO) {
			describe_errno(errno, reason, sizeof(reason));
			rc = report(r, path, 0, CMQ_ERR_IO, "read after line %" PRIu64 ": %s", n,
			            reason);
			goto out;
		}
		if (rc == CMQ_ERR_NOMEM) {
			rc = report(r, path, 0, CMQ_ERR_NOMEM, "out of memory");
			goto out;
		}
		if (rc == CMQ_OK && line == NULL)
			break;
		n++;
		if (rc == CMQ_ERR_TOO_BIG) {
			rc = report(r, path, n, CMQ_ERR_PARSE,
			            "longer than %u bytes: not an audit line", CMQ_AUDIT_LINE_MAX);
			goto out;
		}
		if (!newline) {
			rc =
			    report(r, path, n, CMQ_ERR_PARSE,
			           "no newline at the end: a torn write (the writer stopped in the "
			           "middle of an append); opening the log for writing cuts it off");
			goto out;
		}
		rc = check_line(line, len, &li, why, sizeof(why));
		if (rc == CMQ_ERR_NOMEM) {
			rc = report(r, path, 0, CMQ_ERR_NOMEM, "out of memory");
			goto out;
		}
		if (rc != CMQ_OK) {
			rc = report(r, path, n, CMQ_ERR_PARSE, "%s", why);
			goto out;
		}
		if (n == 1 && li.seq != 1) {
			rc = report(r, path, n, CMQ_ERR_PARSE,
			            "seq %" PRIu64
			            ", but a log starts at seq 1: the start of the log "
			            "was removed",
			            li.seq);
			goto out;
		}
		if (n == 1 && strcmp(li.prev, ZERO_HASH) != 0) {
			rc = report(
			    r, path, n, CMQ_ERR_PARSE,
			    "prev is not 64 zeros, as the first line's must be: the start of the "
			    "log was removed, or line 1 was edited");
			goto out;
		}
		if (n > 1 && li.seq != prev_seq + 1) {
			rc =
			    report(r, path, n, CMQ_ERR_PARSE,
			           "seq %" PRIu64 " after seq %" PRIu64 ": %s", li.seq, prev_seq,
			           li.seq > prev_seq ? "a line was removed or lines were reordered"
			                             : "lines were reordered or a line was copied");
			goto out;
		}
		if (n > 1 && strcmp(li.prev, prev_hash) != 0) {
			rc = report(r, path, n, CMQ_ERR_PARSE,
			            "prev does not match the SHA-256 of line %" PRIu64
			            ": line %" PRIu64
			            " was edited, or a line between them was removed",
			            n - 1, n - 1);
			goto out;
		}
		sha256_hex(line, len, prev_hash);
		prev_seq = li.seq;
		r->lines = n;
		memcpy(r->head, prev_hash, sizeof(prev_hash));
	}
	r->ok = true;
	snprintf(r->message, sizeof(r->message), "%s: %" PRIu64 " lines, chain intact, head %s",
	         path, n, r->head);
	rc = CMQ_OK;
out:
	close(rd.fd);
	cmq_free(rd.buf);
	return rc;
}
