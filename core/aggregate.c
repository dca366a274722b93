/*
 * aggregate.c - tumbling-window counts with a k-threshold and discrete-Laplace noise,
 * made durable by an append-only journal (format in aggregate.h).
 *
 * State: one hash map from "<start> <window_seconds> <topic>\0<group>" to an entry that
 * holds that key inline (so the map's borrowed key lives exactly as long as the entry),
 * the true total, the strictest k and epsilon seen, and the noise once drawn.
 * Invariants: every entry in memory is in the journal (add journals before it counts;
 * a failed append counts nothing and cuts the partial line off again); the journal holds
 * nothing else unless stale (a rewrite after a flush failed and is retried at the next
 * one); a window whose end is at or before closed_until was flushed and takes no more
 * contributions.
 *
 * Noise: a two-sided geometric (discrete Laplace) sample, P(z) proportional to
 * exp(-epsilon |z|), drawn exactly with the integer-only sampler of Canonne, Kamath and
 * Steinke ("The Discrete Gaussian for Differential Privacy", 2020, Algorithms 1-2) over
 * RAND_bytes. epsilon, a double, is exactly a fraction s / t with t a power of two, so
 * the sampler needs no floating point at all: no rounding bias, no tail cut off, and no
 * low-order-bit leak of floating-point Laplace (Mironov, CCS 2012). This was chosen
 * over inverting the geometric CDF on a 53-bit uniform, which is within about 2^-52 per
 * outcome and truncates the tail at 36.7 / epsilon, because it costs nothing more here
 * (2.3-2.9 us per sample, mostly one RAND_bytes call, at flush time only) and needs no libm.
 *
 * Cost: add is one hash lookup and one write(2); flush sorts the due entries (n log n)
 * and rewrites the journal (linear in the open entries) when anything was removed.
 * Thread: not thread-safe; the gateway serialises calls.
 */
#include "aggregate.h"

#include "alloc.h"
#include "error.h"
#include "strmap.h"
#include "topic.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LINE_TAG   "A1"
#define JLINE_MAX  (16 + 3 * 21 + 26 + 21 + CMQ_AGG_TOPIC_MAX + CMQ_AGG_GROUP_MAX)
#define KEY_MAX    (2 * 21 + CMQ_AGG_TOPIC_MAX + CMQ_AGG_GROUP_MAX + 4)
#define READ_CHUNK 65536

struct agg_entry {
	int64_t start;
	uint32_t window_seconds;
	uint32_t k;     /* strictest (largest) seen */
	double epsilon; /* strictest (smallest non-zero) seen; 0 = no noise */
	uint64_t total; /* true sum of contributions, saturating */
	int64_t noise;  /* valid when noised */
	bool noised;    /* noise drawn by a flush whose emit failed */
	size_t topic;   /* offset of the NUL-terminated topic in key */
	size_t topic_len;
	size_t key_len; /* the group, NUL-terminated, follows the topic's NUL */
	char key[];
};

struct cmq_agg {
	struct cmq_strmap map; /* key -> struct agg_entry */
	size_t max_groups;
	int64_t closed_until; /* windows ending at or before this were flushed */
	char *journal;        /* path, or NULL: memory only */
	char *tmp;            /* journal + ".tmp" */
	int fd;               /* journal, O_APPEND; -1 without one */
	uint64_t size;        /* bytes of complete lines in the journal */
	bool tail_dirty;      /* a failed append may have left a partial line after size */
	bool stale;           /* the journal still holds lines flushed from memory */
	int last_errno;
};

/* One parsed contribution (journal line or add). */
struct contrib {
	int64_t start;
	uint32_t window_seconds;
	uint32_t k;
	double epsilon;
	uint64_t count;
	const char *topic;
	size_t topic_len;
	const char *group;
	size_t group_len;
};

static void diag_add(struct cmq_diag *diag, enum cmq_diag_level level, const char *file,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void diag_add(struct cmq_diag *diag, enum cmq_diag_level level, const char *file,
                     const char *fmt, ...)
{
	va_list ap;

	if (diag == NULL)
		return;
	va_start(ap, fmt);
	cmq_diag_vadd(diag, level, file, NULL, fmt, ap);
	va_end(ap);
}

static bool group_valid(const char *s, size_t len)
{
	if (len == 0 || len > CMQ_AGG_GROUP_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == ':' || ch == '-'))
			return false;
	}
	return true;
}

/* A concrete topic that cannot break a journal line. */
static bool topic_valid(const char *s, size_t len)
{
	if (len == 0 || len > CMQ_AGG_TOPIC_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch <= 0x20 || ch == 0x7f)
			return false;
	}
	return cmq_topic_check(s, len, NULL);
}

static bool epsilon_valid(double epsilon);

static bool params_valid(const struct cmq_agg_params *p)
{
	return p != NULL && p->window_seconds >= 1 && p->k >= 1 && epsilon_valid(p->epsilon);
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* The stricter of two epsilons: noise beats no noise, more noise beats less. */
static double stricter_epsilon(double a, double b)
{
	if (a == 0)
		return b;
	if (b == 0)
		return a;
	return a < b ? a : b;
}

static const char *entry_topic(const struct agg_entry *e)
{
	return e->key + e->topic;
}

static const char *entry_group(const struct agg_entry *e)
{
	return e->key + e->topic + e->topic_len + 1;
}

/* The map key of c into buf (KEY_MAX bytes); returns its length. */
static size_t make_key(const struct contrib *c, char *buf)
{
	int n = snprintf(buf, KEY_MAX, "%" PRId64 " %" PRIu32 " ", c->start, c->window_seconds);
	size_t off = (size_t)n;

	memcpy(buf + off, c->topic, c->topic_len);
	off += c->topic_len;
	buf[off++] = '\0';
	memcpy(buf + off, c->group, c->group_len);
	off += c->group_len;
	buf[off] = '\0';
	return off;
}

static struct agg_entry *entry_new(const struct contrib *c, const char *key, size_t key_len)
{
	struct agg_entry *e = cmq_malloc(sizeof(*e) + key_len + 1);

	if (e == NULL)
		return NULL;
	memset(e, 0, sizeof(*e));
	e->start = c->start;
	e->window_seconds = c->window_seconds;
	e->k = c->k;
	e->epsilon = c->epsilon;
	e->topic_len = c->topic_len;
	e->topic = key_len - c->group_len - 1 - c->topic_len;
	e->key_len = key_len;
	memcpy(e->key, key, key_len + 1);
	return e;
}

static void entry_merge(struct agg_entry *e, const struct contrib *c)
{
	e->total = sat_add(e->total, c->count);
	if (c->k > e->k)
		e->k = c->k;
	e->epsilon = stricter_epsilon(e->epsilon, c->epsilon);
}

/* One journal line for c (or for entry totals) into buf (JLINE_MAX); returns its length. */
static size_t format_line(char *buf, int64_t start, uint32_t ws, uint32_t k, double epsilon,
                          uint64_t count, const char *topic, const char *group)
{
	int n = snprintf(buf, JLINE_MAX,
	                 LINE_TAG " %" PRId64 " %" PRIu32 " %" PRIu32 " %.17g %" PRIu64 " %s %s\n",
	                 start, ws, k, epsilon, count, topic, group);

	return n > 0 && n < JLINE_MAX ? (size_t)n : 0;
}

/* ---- journal ---- */

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : EIO;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Append one complete line with a single write(2); on failure cut off what was written. */
static int journal_append(struct cmq_agg *a, const char *line, size_t len)
{
	int err;

	if (a->fd < 0)
		return CMQ_OK;
	if (a->tail_dirty) {
		if (ftruncate(a->fd, (off_t)a->size) != 0) {
			a->last_errno = errno;
			return CMQ_ERR_IO;
		}
		a->tail_dirty = false;
	}
	/* One write(2) in practice; a short one (file size limit, full disk) is continued to
	 * learn why it stopped. */
	err = write_all(a->fd, line, len);
	if (err == 0) {
		a->size += len;
		return CMQ_OK;
	}
	a->last_errno = err;
	/* A partial line would glue itself to the next one: remove it now or before then. */
	if (ftruncate(a->fd, (off_t)a->size) != 0)
		a->tail_dirty = true;
	return CMQ_ERR_IO;
}

static int fsync_dir_of(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	size_t len = slash == NULL ? 1 : (slash == path ? 1 : (size_t)(slash - path));
	int fd, rc = 0;

	if (len >= sizeof(dir))
		return ENAMETOOLONG;
	memcpy(dir, slash == NULL ? "." : path, len);
	dir[len] = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	if (fsync(fd) != 0)
		rc = errno;
	close(fd);
	return rc;
}

/*
 * Replace the journal by one line per open entry: temp file, fsync, rename, fsync of
 * the directory. The temp file's descriptor (opened O_APPEND) becomes the append
 * descriptor, so it follows the renamed file. Allocates nothing.
 */
static int journal_rewrite(struct cmq_agg *a)
{
	char buf[16384];
	size_t used = 0;
	uint64_t total = 0;
	int fd, err = 0;

	if (a->fd < 0) {
		a->stale = false;
		return CMQ_OK;
	}
	fd = open(a->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0) {
		a->last_errno = errno;
		a->stale = true;
		return CMQ_ERR_IO;
	}
	for (size_t i = 0; i < a->map.cap && err == 0; i++) {
		const struct agg_entry *e = a->map.slots[i].value;
		size_t n;

		if (a->map.slots[i].key == NULL)
			continue;
		if (used + JLINE_MAX > sizeof(buf)) {
			err = write_all(fd, buf, used);
			total += used;
			used = 0;
		}
		n = format_line(buf + used, e->start, e->window_seconds, e->k, e->epsilon, e->total,
		                entry_topic(e), entry_group(e));
		used += n;
	}
	if (err == 0 && used > 0) {
		err = write_all(fd, buf, used);
		total += used;
	}
	if (err == 0 && fsync(fd) != 0)
		err = errno;
	if (err == 0 && rename(a->tmp, a->journal) != 0)
		err = errno;
	if (err != 0) {
		close(fd);
		unlink(a->tmp);
		a->last_errno = err;
		a->stale = true;
		return CMQ_ERR_IO;
	}
	/* Renamed: the new file is the journal whatever happens to the directory's fsync. */
	close(a->fd);
	a->fd = fd;
	a->size = total;
	a->tail_dirty = false;
	a->stale = false;
	err = fsync_dir_of(a->journal);
	if (err != 0) {
		a->last_errno = err;
		return CMQ_ERR_IO;
	}
	return CMQ_OK;
}

/* Parse decimal digits s[0..len) (canonical: no sign, no leading zero) up to max. */
static bool parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20 || (len > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

/*
 * Parse one journal line (without its newline; line[len] is writable and becomes a NUL).
 * Returns NULL or what is wrong.
 */
static const char *parse_line(char *line, size_t len, struct contrib *c)
{
	char *f[8];
	size_t flen[8], n = 0, start = 0;
	uint64_t v;
	char *end;

	line[len] = '\0';
	for (size_t i = 0; i <= len; i++) {
		if (i < len && line[i] != ' ')
			continue;
		if (n == 8)
			return "more than 8 fields";
		f[n] = line + start;
		flen[n++] = i - start;
		start = i + 1;
	}
	if (n != 8)
		return "fewer than 8 fields";
	if (flen[0] != strlen(LINE_TAG) || memcmp(f[0], LINE_TAG, flen[0]) != 0)
		return "unknown record type (expected " LINE_TAG ")";
	if (!parse_u64(f[1], flen[1], CMQ_AGG_TIME_MAX, &v))
		return "bad window start";
	c->start = (int64_t)v;
	if (!parse_u64(f[2], flen[2], UINT32_MAX, &v) || v == 0)
		return "bad window length";
	c->window_seconds = (uint32_t)v;
	if (c->start % c->window_seconds != 0)
		return "window start is not a multiple of the window length";
	if (!parse_u64(f[3], flen[3], UINT32_MAX, &v) || v == 0)
		return "bad k";
	c->k = (uint32_t)v;
	f[4][flen[4]] = '\0'; /* the separator after it */
	errno = 0;
	c->epsilon = strtod(f[4], &end);
	if (flen[4] == 0 || end != f[4] + flen[4] || errno != 0 || !epsilon_valid(c->epsilon))
		return "bad epsilon";
	if (!parse_u64(f[5], flen[5], UINT64_MAX, &c->count))
		return "bad count";
	if (!topic_valid(f[6], flen[6]))
		return "bad topic";
	if (!group_valid(f[7], flen[7]))
		return "bad group";
	c->topic = f[6];
	c->topic_len = flen[6];
	c->group = f[7];
	c->group_len = flen[7];
	return NULL;
}

/* Count c into the map (replay: no journal, no max_groups). */
static int apply(struct cmq_agg *a, const struct contrib *c)
{
	char key[KEY_MAX];
	size_t key_len = make_key(c, key);
	struct agg_entry *e = cmq_strmap_get(&a->map, key, key_len);

	if (e == NULL) {
		e = entry_new(c, key, key_len);
		if (e == NULL)
			return CMQ_ERR_NOMEM;
		if (cmq_strmap_put(&a->map, e->key, e->key_len, e, NULL) != CMQ_OK) {
			cmq_free(e);
			return CMQ_ERR_NOMEM;
		}
		e->total = c->count;
		return CMQ_OK;
	}
	entry_merge(e, c);
	return CMQ_OK;
}

/* Handle the complete line number lineno (text[0..len), newline excluded). */
static int replay_line(struct cmq_agg *a, char *text, size_t len, size_t lineno,
                       struct cmq_diag *diag, size_t *corrupt)
{
	struct contrib c;
	const char *why;
	char q[128];

	if (len > JLINE_MAX)
		why = "line too long";
	else
		why = parse_line(text, len, &c);
	if (why != NULL) {
		(*corrupt)++;
		diag_add(diag, CMQ_DIAG_ERROR, a->journal,
		         "line %zu: corrupt aggregate journal line %s: %s; fix or delete it (the "
		         "file is left as it is)",
		         lineno, cmq_diag_quote(text, len, q, sizeof(q)), why);
		return CMQ_OK;
	}
	return apply(a, &c);
}

/*
 * Replay the journal. *good is set to the length of its complete lines; *partial to
 * whether a last line without newline follows them.
 */
static int replay(struct cmq_agg *a, struct cmq_diag *diag, uint64_t *good, bool *partial)
{
	char *buf = NULL;
	size_t have = 0, lineno = 0, corrupt = 0;
	uint64_t consumed = 0;
	bool skipping = false; /* inside an over-long line */
	int fd, rc = CMQ_OK;
	struct stat st;

	*good = 0;
	*partial = false;
	fd = open(a->journal, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 && errno == ENOENT)
		return CMQ_OK;
	if (fd < 0) {
		diag_add(diag, CMQ_DIAG_ERROR, a->journal, "cannot open the aggregate journal: %s",
		         strerror(errno));
		return CMQ_ERR_IO;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		diag_add(diag, CMQ_DIAG_ERROR, a->journal,
		         "the aggregate journal is not a regular file");
		close(fd);
		return CMQ_ERR_IO;
	}
	buf = cmq_malloc(READ_CHUNK + 1);
	if (buf == NULL) {
		close(fd);
		return CMQ_ERR_NOMEM;
	}
	for (;;) {
		ssize_t n = read(fd, buf + have, READ_CHUNK - have);
		size_t off = 0;
		char *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			diag_add(diag, CMQ_DIAG_ERROR, a->journal,
			         "cannot read the aggregate journal: %s", strerror(errno));
			rc = CMQ_ERR_IO;
			break;
		}
		if (n == 0)
			break;
		have += (size_t)n;
		while (rc == CMQ_OK && (nl = memchr(buf + off, '\n', have - off)) != NULL) {
			size_t len = (size_t)(nl - (buf + off));

			lineno++;
			if (skipping)
				skipping =
				    false; /* the tail of an over-long line, reported already */
			else
				rc = replay_line(a, buf + off, len, lineno, diag, &corrupt);
			off += len + 1;
			consumed += len + 1;
		}
		if (rc != CMQ_OK)
			break;
		memmove(buf, buf + off, have - off);
		have -= off;
		if (have == READ_CHUNK) {
			/* No newline in a whole buffer: report it once, skip to the next. */
			if (!skipping)
				replay_line(a, buf, have, lineno + 1, diag, &corrupt);
			skipping = true;
			consumed += have;
			have = 0;
		}
	}
	close(fd);
	cmq_free(buf);
	if (rc != CMQ_OK)
		return rc;
	if (corrupt > 0)
		return CMQ_ERR_PARSE;
	*good = consumed;
	if (have > 0) {
		*partial = true;
		diag_add(diag, CMQ_DIAG_WARNING, a->journal,
		         "line %zu: incomplete last line of the aggregate journal (the gateway "
		         "stopped mid-write?); ignored and cut off",
		         lineno + 1);
	}
	return CMQ_OK;
}

static void free_entries(struct cmq_agg *a)
{
	for (size_t i = 0; i < a->map.cap; i++) {
		if (a->map.slots[i].key != NULL)
			cmq_free(a->map.slots[i].value);
	}
	cmq_strmap_cleanup(&a->map);
}

void cmq_agg_close(struct cmq_agg *a)
{
	if (a == NULL)
		return;
	free_entries(a);
	if (a->fd >= 0)
		close(a->fd);
	cmq_free(a->journal);
	cmq_free(a->tmp);
	cmq_free(a);
}

int cmq_agg_open(const char *journal, size_t max_groups, struct cmq_diag *diag,
                 struct cmq_agg **out)
{
	struct cmq_agg *a;
	uint64_t good = 0;
	bool partial = false;
	int rc = CMQ_OK;
	size_t len;

	*out = NULL;
	if (max_groups == 0) {
		diag_add(diag, CMQ_DIAG_ERROR, journal, "max_groups is 0; valid: 1 or more");
		return CMQ_ERR_INVAL;
	}
	a = cmq_calloc(1, sizeof(*a));
	if (a == NULL)
		return CMQ_ERR_NOMEM;
	cmq_strmap_init(&a->map);
	a->fd = -1;
	a->max_groups = max_groups;
	a->closed_until = INT64_MIN;
	if (journal == NULL)
		goto done;
	len = strlen(journal);
	a->journal = cmq_strdup(journal);
	a->tmp = cmq_malloc(len + 5);
	if (a->journal == NULL || a->tmp == NULL) {
		rc = CMQ_ERR_NOMEM;
		goto fail;
	}
	memcpy(a->tmp, journal, len);
	memcpy(a->tmp + len, ".tmp", 5);
	rc = replay(a, diag, &good, &partial);
	if (rc != CMQ_OK)
		goto fail;
	a->fd = open(journal, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	if (a->fd < 0) {
		diag_add(diag, CMQ_DIAG_ERROR, journal,
		         "cannot open the aggregate journal for appending: %s", strerror(errno));
		rc = CMQ_ERR_IO;
		goto fail;
	}
	if (partial && ftruncate(a->fd, (off_t)good) != 0) {
		diag_add(diag, CMQ_DIAG_ERROR, journal,
		         "cannot cut the incomplete last line off the aggregate journal: %s",
		         strerror(errno));
		rc = CMQ_ERR_IO;
		goto fail;
	}
	a->size = good;
	if (a->map.count > max_groups)
		diag_add(diag, CMQ_DIAG_WARNING, journal,
		         "the aggregate journal holds %zu open groups, more than max_groups %zu; "
		         "new groups are refused until windows close",
		         a->map.count, max_groups);
done:
	*out = a;
	return CMQ_OK;
fail:
	cmq_agg_close(a);
	return rc;
}

int cmq_agg_add(struct cmq_agg *a, const char *topic, const char *group,
                const struct cmq_agg_params *params, int64_t now, uint64_t count)
{
	struct contrib c;
	char key[KEY_MAX], line[JLINE_MAX];
	struct agg_entry *e;
	size_t key_len, line_len;
	bool created = false;
	int rc;

	if (a == NULL || topic == NULL || group == NULL || !params_valid(params) || now < 0 ||
	    now > CMQ_AGG_TIME_MAX)
		return CMQ_ERR_INVAL;
	c.topic = topic;
	c.topic_len = strnlen(topic, CMQ_AGG_TOPIC_MAX + 1);
	c.group = group;
	c.group_len = strnlen(group, CMQ_AGG_GROUP_MAX + 1);
	if (!topic_valid(c.topic, c.topic_len) || !group_valid(c.group, c.group_len))
		return CMQ_ERR_INVAL;
	c.window_seconds = params->window_seconds;
	c.start = now - now % params->window_seconds;
	c.k = params->k;
	c.epsilon = params->epsilon;
	c.count = count;
	if (c.start + (int64_t)c.window_seconds <= a->closed_until)
		return CMQ_ERR_INVAL;

	key_len = make_key(&c, key);
	e = cmq_strmap_get(&a->map, key, key_len);
	if (e == NULL) {
		if (a->map.count >= a->max_groups)
			return CMQ_ERR_TOO_BIG;
		e = entry_new(&c, key, key_len);
		if (e == NULL)
			return CMQ_ERR_NOMEM;
		if (cmq_strmap_put(&a->map, e->key, e->key_len, e, NULL) != CMQ_OK) {
			cmq_free(e);
			return CMQ_ERR_NOMEM;
		}
		created = true;
	}
	line_len =
	    format_line(line, c.start, c.window_seconds, c.k, c.epsilon, c.count, topic, group);
	rc = line_len > 0 ? journal_append(a, line, line_len) : CMQ_ERR_INVAL;
	if (rc != CMQ_OK) {
		if (created) {
			cmq_strmap_del(&a->map, e->key, e->key_len);
			cmq_free(e);
		}
		return rc;
	}
	if (created)
		e->total = count;
	else
		entry_merge(e, &c);
	return CMQ_OK;
}

/* ---- noise ---- */

/*
 * Exact integer arithmetic for the sampler (GCC and Clang on 64-bit targets): t below
 * reaches 2^92 for the smallest epsilon accepted.
 */
typedef unsigned __int128 u128;

/* Random bytes from RAND_bytes, fetched in blocks; cleansed after each sample. */
struct rng {
	unsigned char buf[256];
	size_t pos;
	bool failed; /* RAND_bytes failed: every draw is then 0 and the sample is void */
};

static uint64_t rng_u64(struct rng *r)
{
	uint64_t v;

	if (r->pos + sizeof(v) > sizeof(r->buf)) {
		if (RAND_bytes(r->buf, sizeof(r->buf)) != 1) {
			r->failed = true;
			memset(r->buf, 0, sizeof(r->buf));
		}
		r->pos = 0;
	}
	memcpy(&v, r->buf + r->pos, sizeof(v));
	r->pos += sizeof(v);
	return v;
}

/* Uniform in [0, n), n >= 1, by rejection on the bit length of n - 1. */
static u128 rng_below(struct rng *r, u128 n)
{
	unsigned bits = 0;
	u128 v;

	if (n <= 1)
		return 0;
	while (bits < 128 && ((n - 1) >> bits) != 0)
		bits++;
	for (;;) {
		v = rng_u64(r);
		if (bits > 64)
			v = v << 64 | rng_u64(r);
		if (bits < 128)
			v &= ((u128)1 << bits) - 1;
		if (r->failed)
			return 0;
		if (v < n)
			return v;
	}
}

/* Bernoulli(num / den), 0 <= num <= den. */
static bool bernoulli(struct rng *r, u128 num, u128 den)
{
	return rng_below(r, den) < num && !r->failed;
}

/*
 * Bernoulli(exp(-num / den)) for 0 <= num / den <= 1 (CKS Algorithm 1): K = 1; while
 * Bernoulli(gamma / K), K++; the answer is whether K is odd. The loop ends after about
 * 1.7 draws on average; K beyond 2^20 (probability below 1/2^20!) would end it anyway.
 */
static bool bernoulli_exp_unit(struct rng *r, u128 num, u128 den)
{
	u128 k = 1;

	while (k < ((u128)1 << 20) && bernoulli(r, num, den * k))
		k++;
	return (k & 1) == 1;
}

/*
 * Discrete Laplace with P(z) proportional to exp(-|z| s / t) (CKS Algorithm 2):
 *   U uniform in [0, t); accept with probability exp(-U/t); V ~ Geometric(1 - 1/e)
 *   counted with Bernoulli(exp(-1)); X = U + t V is then geometric with parameter
 *   exp(-1/t), Y = floor(X / s) geometric with parameter exp(-s/t); a fair sign, with
 *   (sign -, Y = 0) rejected so 0 is not counted twice.
 */
static int64_t dlap(struct rng *r, u128 s, u128 t)
{
	for (;;) {
		uint64_t v = 0;
		u128 u, y;
		bool minus;

		if (r->failed)
			return 0;
		u = rng_below(r, t);
		if (!bernoulli_exp_unit(r, u, t))
			continue;
		while (v < ((uint64_t)1 << 32) && bernoulli_exp_unit(r, 1, 1) && !r->failed)
			v++;
		y = (u + t * v) / s;
		minus = (rng_u64(r) & 1) != 0;
		if (r->failed || (minus && y == 0))
			continue;
		if (y > (u128)(INT64_MAX / 2))
			y = INT64_MAX / 2;
		return minus ? -(int64_t)y : (int64_t)y;
	}
}

/*
 * epsilon as the exact fraction s / t: a double in range is m * 2^e with m < 2^53 and
 * -92 <= e <= -32 (CMQ_AGG_EPSILON_MIN..MAX), reduced by common factors of two.
 */
static void epsilon_fraction(double epsilon, u128 *s, u128 *t)
{
	uint64_t bits, m;
	int e;

	memcpy(&bits, &epsilon, sizeof(bits));
	m = (bits & ((UINT64_C(1) << 52) - 1)) | UINT64_C(1) << 52; /* normal: the range is */
	e = (int)((bits >> 52) & 0x7ff) - 1075;
	while ((m & 1) == 0 && e < 0) {
		m >>= 1;
		e++;
	}
	*s = e >= 0 ? (u128)m << e : m;
	*t = e >= 0 ? 1 : (u128)1 << -e;
}

static bool epsilon_valid(double epsilon)
{
	return epsilon == 0 || (epsilon >= CMQ_AGG_EPSILON_MIN && epsilon <= CMQ_AGG_EPSILON_MAX);
}

static int discrete_laplace(double epsilon, int64_t *out)
{
	struct rng r = {.pos = sizeof(r.buf), .failed = false};
	u128 s, t;

	*out = 0;
	if (epsilon == 0 || !epsilon_valid(epsilon))
		return CMQ_OK;
	epsilon_fraction(epsilon, &s, &t);
	*out = dlap(&r, s, t);
	OPENSSL_cleanse(r.buf, sizeof(r.buf)); /* whoever knows the noise knows the count */
	if (r.failed) {
		*out = 0;
		return CMQ_ERR_CRYPTO;
	}
	return CMQ_OK;
}

int64_t cmq_agg_noise(double epsilon)
{
	int64_t x;

	return discrete_laplace(epsilon, &x) == CMQ_OK ? x : 0;
}

/* ---- flush ---- */

static int cmp_entries(const void *pa, const void *pb)
{
	const struct agg_entry *a = *(const struct agg_entry *const *)pa;
	const struct agg_entry *b = *(const struct agg_entry *const *)pb;
	int c;

	if (a->start != b->start)
		return a->start < b->start ? -1 : 1;
	c = strcmp(entry_topic(a), entry_topic(b));
	if (c == 0)
		c = strcmp(entry_group(a), entry_group(b));
	if (c == 0 && a->window_seconds != b->window_seconds)
		c = a->window_seconds < b->window_seconds ? -1 : 1;
	return c;
}

/* total + noise, clamped at 0, without overflow. */
static uint64_t noisy_count(uint64_t total, int64_t noise)
{
	uint64_t mag;

	if (noise >= 0)
		return sat_add(total, (uint64_t)noise);
	mag = (uint64_t)(-(noise + 1)) + 1;
	return total > mag ? total - mag : 0;
}

/* The published payload of e into buf; returns its length (0 if it does not fit). */
static size_t format_payload(const struct agg_entry *e, char *buf, size_t buflen)
{
	time_t t = (time_t)e->start;
	uint64_t count = e->epsilon > 0 ? noisy_count(e->total, e->noise) : e->total;
	char when[32];
	struct tm tm;
	int n;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return 0;
	if (e->epsilon > 0)
		n = snprintf(buf, buflen,
		             "{\"group\":\"%s\",\"window_start\":\"%s\",\"window_seconds\":%" PRIu32
		             ",\"count\":%" PRIu64 ",\"k\":%" PRIu32 ",\"epsilon\":%g}",
		             entry_group(e), when, e->window_seconds, count, e->k, e->epsilon);
	else
		n = snprintf(buf, buflen,
		             "{\"group\":\"%s\",\"window_start\":\"%s\",\"window_seconds\":%" PRIu32
		             ",\"count\":%" PRIu64 ",\"k\":%" PRIu32 "}",
		             entry_group(e), when, e->window_seconds, count, e->k);
	return n > 0 && (size_t)n < buflen ? (size_t)n : 0;
}

static void forget(struct cmq_agg *a, struct agg_entry *e)
{
	cmq_strmap_del(&a->map, e->key, e->key_len);
	cmq_free(e);
}

/* keep: emit every due group but forget none of those published (cmq_agg_peek). */
static int flush(struct cmq_agg *a, int64_t now, cmq_agg_emit_fn emit, void *arg,
                 struct cmq_agg_stats *stats, bool keep)
{
	struct agg_entry **due = NULL;
	size_t n = 0;
	bool changed = false, emitting = true;
	int first = CMQ_OK, rc;

	if (stats != NULL)
		memset(stats, 0, sizeof(*stats));
	if (a == NULL || emit == NULL)
		return CMQ_ERR_INVAL;
	if (a->map.count > 0) {
		due = cmq_calloc(a->map.count, sizeof(*due));
		if (due == NULL)
			return CMQ_ERR_NOMEM;
	}
	for (size_t i = 0; i < a->map.cap; i++) {
		struct agg_entry *e = a->map.slots[i].value;

		if (a->map.slots[i].key != NULL && e->start + (int64_t)e->window_seconds <= now)
			due[n++] = e;
	}
	if (n > 1)
		qsort(due, n, sizeof(*due), cmp_entries);
	for (size_t i = 0; i < n; i++) {
		struct agg_entry *e = due[i];
		char payload[256 + CMQ_AGG_GROUP_MAX];
		size_t len;

		if (e->total < e->k) {
			if (stats != NULL)
				stats->suppressed++;
			forget(a, e);
			changed = true;
			continue;
		}
		if (!emitting)
			continue;
		if (e->epsilon > 0 && !e->noised) {
			rc = discrete_laplace(e->epsilon, &e->noise);
			if (rc != CMQ_OK) {
				first = rc;
				emitting = false;
				continue;
			}
			e->noised = true;
		}
		len = format_payload(e, payload, sizeof(payload));
		rc = len > 0 ? emit(arg, entry_topic(e), payload, len) : CMQ_ERR_INVAL;
		if (rc != CMQ_OK) {
			if (first == CMQ_OK)
				first = rc;
			emitting = keep; /* a peek renders the rest anyway */
			continue;
		}
		if (stats != NULL)
			stats->published++;
		if (keep)
			continue;
		forget(a, e);
		changed = true;
	}
	cmq_free(due);
	if (now > a->closed_until)
		a->closed_until = now;
	if (changed || a->stale) {
		rc = journal_rewrite(a);
		if (first == CMQ_OK)
			first = rc;
	}
	return first;
}

int cmq_agg_flush(struct cmq_agg *a, int64_t now, cmq_agg_emit_fn emit, void *arg,
                  struct cmq_agg_stats *stats)
{
	return flush(a, now, emit, arg, stats, false);
}

int cmq_agg_peek(struct cmq_agg *a, int64_t now, cmq_agg_emit_fn emit, void *arg,
                 struct cmq_agg_stats *stats)
{
	return flush(a, now, emit, arg, stats, true);
}

size_t cmq_agg_open_groups(const struct cmq_agg *a)
{
	return a != NULL ? a->map.count : 0;
}

int cmq_agg_last_errno(const struct cmq_agg *a)
{
	return a != NULL ? a->last_errno : 0;
}
