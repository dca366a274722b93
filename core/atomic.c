/*
 * atomic.c - the crash-safe file replacement described in atomic.h, and the JSON rendering
 * that civicmq's configuration files share.
 *
 * Order of steps: open <path>.tmp (not O_EXCL: a stale temp is simply overwritten; O_NOFOLLOW:
 * a planted symlink is not followed), fchmod before the first byte (a stale temp may have
 * looser bits), write everything, fsync, close, rename, fsync the directory. Until the rename
 * path is untouched, so every failure before it only has to remove the temp.
 */
#include "atomic.h"

#include "alloc.h"
#include "error.h"
#include "jsonutil.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "<file>: <step>: <strerror(errnum)>" into err; thread-safe (strerror_r). */
static void set_err(char *err, size_t errlen, const char *file, const char *step, int errnum)
{
	char reason[128];

	if (errlen == 0)
		return;
	if (strerror_r(errnum, reason, sizeof(reason)) != 0)
		snprintf(reason, sizeof(reason), "error %d", errnum);
	snprintf(err, errlen, "%s: %s: %s", file, step, reason);
}

static void clear_err(char *err, size_t errlen)
{
	if (errlen > 0)
		err[0] = '\0';
}

/* The directory part of path: "." for a bare name, "/" for "/name". */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return cmq_strdup(".");
	while (slash > path && slash[-1] == '/')
		slash--; /* "a//b" -> "a" */
	return cmq_strndup(path, slash == path ? 1 : (size_t)(slash - path));
}

/* fsync the directory dir; errors are reported against it. */
static int fsync_dir(const char *dir, char *err, size_t errlen)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = CMQ_OK;

	if (fd < 0) {
		set_err(err, errlen, dir, "open directory", errno);
		return CMQ_ERR_IO;
	}
	if (fsync(fd) != 0 && errno != EINVAL) {
		set_err(err, errlen, dir, "fsync", errno);
		rc = CMQ_ERR_IO;
	}
	close(fd);
	return rc;
}

int cmq_atomic_fsync_dir(const char *path, char *err, size_t errlen)
{
	char *dir;
	int rc;

	clear_err(err, errlen);
	if (path == NULL || path[0] == '\0')
		return CMQ_ERR_INVAL;
	dir = dir_of(path);
	if (dir == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		return CMQ_ERR_NOMEM;
	}
	rc = fsync_dir(dir, err, errlen);
	cmq_free(dir);
	return rc;
}

/* Write all of data, across short writes and EINTR. Returns 0 or an errno value. */
static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, data, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno;
		if (w == 0)
			return EIO; /* no progress and no reason: do not spin */
		data += w;
		len -= (size_t)w;
	}
	return 0;
}

int cmq_atomic_write(const char *path, const void *data, size_t len, mode_t mode, char *err,
                     size_t errlen)
{
	char *tmp = NULL, *dir = NULL;
	size_t plen;
	struct stat st;
	int fd = -1, rc = CMQ_ERR_IO, e;

	clear_err(err, errlen);
	if (path == NULL || path[0] == '\0' || (data == NULL && len > 0)) {
		snprintf(err, errlen, "%s: invalid arguments to an atomic write",
		         path != NULL ? path : "(null)");
		return CMQ_ERR_INVAL;
	}
	plen = strlen(path);
	tmp = cmq_malloc(plen + sizeof(".tmp"));
	dir = dir_of(path); /* now: after the rename, running out of memory is too late */
	if (tmp == NULL || dir == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		rc = CMQ_ERR_NOMEM;
		goto out;
	}
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmp", sizeof(".tmp"));

	/*
	 * Not O_TRUNC: a stale temp is emptied only once fstat showed it is a plain file of
	 * ours, not a hard link to some other file. O_NOFOLLOW refuses a symlink; O_NONBLOCK
	 * makes a planted FIFO fail instead of hanging (no effect on a regular file).
	 */
	fd = open(tmp, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
	if (fd < 0) {
		/* Nothing of ours to remove: whatever is at tmp (a directory, a symlink) stays. */
		set_err(err, errlen, tmp, "open", errno);
		goto out;
	}
	if (fstat(fd, &st) != 0) {
		set_err(err, errlen, tmp, "fstat", errno);
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || st.st_nlink > 1) {
		snprintf(err, errlen, "%s: open: %s; remove it", tmp,
		         S_ISREG(st.st_mode) ? "has other hard links" : "not a regular file");
		close(fd);
		fd = -1;
		goto out; /* not ours: leave it */
	}
	if (ftruncate(fd, 0) != 0) {
		set_err(err, errlen, tmp, "ftruncate", errno);
		goto fail;
	}
	/* Before the first byte: a stale temp may have looser permission bits. */
	if (fchmod(fd, mode & 07777) != 0) {
		set_err(err, errlen, tmp, "fchmod", errno);
		goto fail;
	}
	e = write_all(fd, data, len);
	if (e != 0) {
		set_err(err, errlen, tmp, "write", e);
		goto fail;
	}
	if (fsync(fd) != 0) {
		set_err(err, errlen, tmp, "fsync", errno);
		goto fail;
	}
	e = close(fd) != 0 ? errno : 0;
	fd = -1;
	if (e != 0) {
		set_err(err, errlen, tmp, "close", e); /* NFS reports write errors here */
		goto fail;
	}
	if (rename(tmp, path) != 0) {
		char reason[128];

		if (strerror_r(errno, reason, sizeof(reason)) != 0)
			snprintf(reason, sizeof(reason), "error %d", errno);
		snprintf(err, errlen, "%s: rename to %s: %s", tmp, path, reason);
		goto fail;
	}
	rc = fsync_dir(dir, err, errlen);
	if (rc != CMQ_OK) {
		size_t n = strnlen(err, errlen);

		/* The new content is in place: say so, the caller must not think it is not. */
		if (n + 1 < errlen)
			snprintf(
			    err + n, errlen - n,
			    " (%s was replaced, but the change may not survive a power failure)",
			    path);
	}
	goto out;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	rc = CMQ_ERR_IO;
out:
	cmq_free(tmp);
	cmq_free(dir);
	return rc;
}

/* ---- JSON rendering ---- */

#define JSON_COLUMNS 100 /* as .clang-format: a flat object that fits goes on one line */

struct out {
	char *buf;
	size_t len, cap;
	int rc; /* first failure; appends after it do nothing */
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->rc != CMQ_OK)
		return;
	if (n > CMQ_ATOMIC_JSON_MAX - o->len) {
		o->rc = CMQ_ERR_TOO_BIG;
		return;
	}
	if (o->len + n > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;
		char *grown;

		while (cap < o->len + n)
			cap *= 2;
		grown = cmq_realloc(o->buf, cap);
		if (grown == NULL) {
			o->rc = CMQ_ERR_NOMEM;
			return;
		}
		o->buf = grown;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static void put_str(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_indent(struct out *o, int indent)
{
	static const char spaces[] = "                                ";

	while (indent > 0) {
		int n = indent < (int)sizeof(spaces) - 1 ? indent : (int)sizeof(spaces) - 1;

		put(o, spaces, (size_t)n);
		indent -= n;
	}
}

/* A JSON string literal: quotes, backslashes and control characters escaped; '/' and UTF-8
 * as they are. */
static void put_quoted(struct out *o, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	static const char named[] = "\"\\\b\f\n\r\t", letter[] = "\"\\bfnrt";
	size_t run = 0;

	put(o, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *n = c != 0 ? memchr(named, c, sizeof(named) - 1) : NULL;
		char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

		if (n == NULL && c >= 0x20 && c != 0x7f)
			continue;
		put(o, s + run, i - run);
		if (n != NULL)
			esc[1] = letter[n - named];
		put(o, esc, n != NULL ? 2 : 6);
		run = i + 1;
	}
	put(o, s + run, len - run);
	put(o, "\"", 1);
}

static bool is_container(struct json_object *v)
{
	return json_object_is_type(v, json_type_object) || json_object_is_type(v, json_type_array);
}

/* A scalar, or an array of scalars. */
static bool is_flat_value(struct json_object *v)
{
	size_t n;

	if (!is_container(v))
		return true;
	if (!json_object_is_type(v, json_type_array))
		return false;
	n = json_object_array_length(v);
	for (size_t i = 0; i < n; i++) {
		if (is_container(json_object_array_get_idx(v, i)))
			return false;
	}
	return true;
}

static void render(struct out *o, struct json_object *v, int depth, int indent, size_t col);

/*
 * A non-empty object below the top whose values are all flat, on one line, if that line ends
 * within the column limit: {"id": "resident-0001", "categories": ["energy"]}. Returns whether
 * it did (if not, nothing was added).
 */
static bool render_object_inline(struct out *o, struct json_object *v, int depth, size_t col)
{
	size_t mark = o->len;
	bool first = true;

	if (depth == 0)
		return false;
	json_object_object_foreach(v, key, val)
	{
		(void)key;
		if (!is_flat_value(val))
			return false;
	}
	put_str(o, "{");
	json_object_object_foreach(v, k, m)
	{
		if (!first)
			put_str(o, ", ");
		first = false;
		put_quoted(o, k, strlen(k));
		put_str(o, ": ");
		render(o, m, depth + 1, 0, 0);
	}
	put_str(o, "}");
	if (o->rc != CMQ_OK || col + (o->len - mark) + 1 <= JSON_COLUMNS)
		return true; /* + 1: room for a comma after it */
	o->len = mark;
	return false;
}

/* Render v starting at column col, its lines indented by indent. */
static void render(struct out *o, struct json_object *v, int depth, int indent, size_t col)
{
	const char *text;
	size_t n, tlen;
	bool inline_array;

	if (o->rc != CMQ_OK)
		return;
	switch (json_object_get_type(v)) {
	case json_type_null:
		put_str(o, "null");
		return;
	case json_type_boolean:
		put_str(o, json_object_get_boolean(v) ? "true" : "false");
		return;
	case json_type_string:
		put_quoted(o, json_object_get_string(v), (size_t)json_object_get_string_len(v));
		return;
	case json_type_double:
	case json_type_int:
		if (json_object_is_type(v, json_type_double) &&
		    !isfinite(json_object_get_double(v))) {
			o->rc = CMQ_ERR_INVAL; /* NaN and Infinity are not JSON */
			return;
		}
		/* json-c prints numbers, keeping the text a number was parsed from. */
		text = json_object_to_json_string_length(v, JSON_C_TO_STRING_PLAIN, &tlen);
		if (text == NULL)
			o->rc = CMQ_ERR_NOMEM;
		else
			put(o, text, tlen);
		return;
	case json_type_array:
	case json_type_object:
		break;
	}
	if (depth >= CMQ_JSON_MAX_DEPTH) {
		o->rc = CMQ_ERR_INVAL; /* too deep to load again (or a cycle) */
		return;
	}
	if (json_object_is_type(v, json_type_object)) {
		bool first = true;

		if (json_object_object_length(v) == 0) {
			put_str(o, "{}");
			return;
		}
		if (render_object_inline(o, v, depth, col))
			return;
		put_str(o, "{\n");
		json_object_object_foreach(v, key, val)
		{
			if (!first)
				put_str(o, ",\n");
			first = false;
			size_t key_start;

			put_indent(o, indent + 2);
			key_start = o->len;
			put_quoted(o, key, strlen(key));
			put_str(o, ": ");
			render(o, val, depth + 1, indent + 2,
			       (size_t)indent + 2 + (o->len - key_start));
		}
		put_str(o, "\n");
		put_indent(o, indent);
		put_str(o, "}");
		return;
	}
	n = json_object_array_length(v);
	inline_array = true;
	for (size_t i = 0; i < n && inline_array; i++)
		inline_array = !is_container(json_object_array_get_idx(v, i));
	put_str(o, inline_array ? "[" : "[\n");
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			put_str(o, inline_array ? ", " : ",\n");
		if (!inline_array)
			put_indent(o, indent + 2);
		render(o, json_object_array_get_idx(v, i), depth + 1, indent + 2,
		       (size_t)indent + 2);
	}
	if (!inline_array) {
		put_str(o, "\n");
		put_indent(o, indent);
	}
	put_str(o, "]");
}

int cmq_json_render(struct json_object *o, char **out, size_t *len)
{
	struct out r = {NULL, 0, 0, CMQ_OK};

	*out = NULL;
	*len = 0;
	render(&r, o, 0, 0, 0);
	put(&r, "\n", 1);
	put(&r, "", 1); /* the NUL, not counted */
	if (r.rc != CMQ_OK) {
		cmq_free(r.buf);
		return r.rc;
	}
	*out = r.buf;
	*len = r.len - 1;
	return CMQ_OK;
}

int cmq_atomic_write_json(const char *path, struct json_object *o, mode_t mode, char *err,
                          size_t errlen)
{
	struct out out = {NULL, 0, 0, CMQ_OK};
	int rc;

	clear_err(err, errlen);
	if (path == NULL || path[0] == '\0') {
		snprintf(err, errlen, "(null): invalid arguments to an atomic write");
		return CMQ_ERR_INVAL;
	}
	render(&out, o, 0, 0, 0);
	put(&out, "\n", 1);
	rc = out.rc;
	if (rc == CMQ_ERR_INVAL)
		snprintf(err, errlen,
		         "%s: not written: the document holds a NaN or infinite number, or nests "
		         "deeper than %d levels",
		         path, CMQ_JSON_MAX_DEPTH);
	else if (rc == CMQ_ERR_TOO_BIG)
		snprintf(err, errlen, "%s: not written: the document is larger than %u bytes", path,
		         CMQ_ATOMIC_JSON_MAX);
	else if (rc == CMQ_ERR_NOMEM)
		snprintf(err, errlen, "%s: out of memory", path);
	else
		rc = cmq_atomic_write(path, out.buf, out.len, mode, err, errlen);
	cmq_free(out.buf);
	return rc;
}
