/*
 * kvlog.c - the append-only key-value log described in kvlog.h.
 *
 * Each live key owns one allocation: struct entry followed by the key and the
 * data, so the index (strmap) borrows the key from the entry. Dead bytes are the
 * records on disk that a later put or delete superseded; when they outweigh
 * the live ones (and 1 MiB), the log is rewritten with the live records only.
 * Cost per put/del: one allocation, one hash probe, one write(2).
 */
#include "kvlog.h"

#include "alloc.h"
#include "error.h"
#include "hash.h"
#include "strmap.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HDR_LEN       14              /* "KV" op key_len(2) data_len(4) check(4) */
#define CHECK_SEED    0x6b766c6f67ull /* "kvlog" */
#define COMPACT_SLACK (1024u * 1024u)
#define PENDING_MAX   (64u * 1024u) /* deferred bytes held at most before writing */

struct entry {
	size_t key_len;
	size_t data_len;
	/* key (NUL-terminated), then data */
};

struct cmq_kvlog {
	char *path;
	char *tmp;
	int fd;
	bool sync;
	struct cmq_strmap map;
	size_t file_bytes;      /* what the log holds */
	size_t live_bytes;      /* records of live keys */
	unsigned char *pending; /* deferred records not yet written (cmq_kvlog_flush) */
	size_t pending_len, pending_cap;
};

static char *entry_key(struct entry *e)
{
	return (char *)(e + 1);
}

static char *entry_data(struct entry *e)
{
	return entry_key(e) + e->key_len + 1;
}

static size_t record_len(size_t key_len, size_t data_len)
{
	return HDR_LEN + key_len + data_len;
}

static void put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* The check covers op, both lengths, key and data. */
static uint32_t check_of(const unsigned char *hdr, const struct iovec *iov, int n)
{
	uint32_t h = cmq_hash(CHECK_SEED, (const char *)hdr + 2, 7);

	for (int i = 0; i < n; i++)
		h = cmq_hash(CHECK_SEED ^ h, iov[i].iov_base, iov[i].iov_len);
	return h;
}

static void make_header(unsigned char *hdr, char op, size_t key_len, size_t data_len)
{
	hdr[0] = 'K';
	hdr[1] = 'V';
	hdr[2] = (unsigned char)op;
	put_le(hdr + 3, key_len, 2);
	put_le(hdr + 5, data_len, 4);
	hdr[9] = 0;
}

/* Write iov[0..n) at the end of the log in one writev; a short or failed write is cut
 * off again. */
static int write_records(struct cmq_kvlog *kv, struct iovec *iov, int n, size_t total)
{
	ssize_t w;

	do {
		w = writev(kv->fd, iov, n);
	} while (w < 0 && errno == EINTR);
	if (w != (ssize_t)total || (kv->sync && fdatasync(kv->fd) != 0)) {
		if (ftruncate(kv->fd, (off_t)kv->file_bytes) != 0) {
			/* Nothing more to do: replay stops at the torn record anyway. */
		}
		return CMQ_ERR_IO;
	}
	kv->file_bytes += total;
	return CMQ_OK;
}

/*
 * Append one record (data contiguous, so the check is what replay computes). A deferred
 * record joins the pending buffer; any other one is written together with everything
 * pending, in order, in one writev.
 */
static int append(struct cmq_kvlog *kv, char op, const char *key, size_t key_len, const void *data,
                  size_t data_len, bool defer)
{
	unsigned char hdr[HDR_LEN];
	struct iovec iov[4] = {{kv->pending, kv->pending_len},
	                       {hdr, HDR_LEN},
	                       {(void *)key, key_len},
	                       {(void *)data, data_len}};
	size_t total = record_len(key_len, data_len);
	int rc;

	make_header(hdr, op, key_len, data_len);
	put_le(hdr + 10, check_of(hdr, iov + 2, 2), 4);
	if (defer && kv->pending_len + total <= PENDING_MAX) {
		if (kv->pending_len + total > kv->pending_cap) {
			size_t cap = kv->pending_cap ? kv->pending_cap : 4096;
			unsigned char *grown;

			while (cap < kv->pending_len + total)
				cap *= 2;
			grown = cmq_realloc(kv->pending, cap);
			if (grown == NULL)
				return CMQ_ERR_NOMEM;
			kv->pending = grown;
			kv->pending_cap = cap;
		}
		for (int i = 1; i < 4; i++) {
			if (iov[i].iov_len == 0)
				continue; /* a delete has no data (and a NULL pointer) */
			memcpy(kv->pending + kv->pending_len, iov[i].iov_base, iov[i].iov_len);
			kv->pending_len += iov[i].iov_len;
		}
		return CMQ_OK;
	}
	rc = write_records(kv, iov, 4, kv->pending_len + total);
	if (rc == CMQ_OK)
		kv->pending_len = 0;
	return rc;
}

int cmq_kvlog_flush(struct cmq_kvlog *kv)
{
	struct iovec iov = {kv->pending, kv->pending_len};
	int rc;

	if (kv->pending_len == 0)
		return CMQ_OK;
	rc = write_records(kv, &iov, 1, kv->pending_len);
	if (rc == CMQ_OK)
		kv->pending_len = 0;
	return rc;
}

static int fsync_dir(const char *path)
{
	char copy[4096];
	int fd, rc = 0;

	snprintf(copy, sizeof(copy), "%s", path);
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fsync(fd) != 0)
		rc = -1;
	close(fd);
	return rc;
}

struct compact_ctx {
	int fd;
	size_t bytes;
	int err;
};

/* Rewrite the log with the live records only. */
static int compact(struct cmq_kvlog *kv)
{
	int fd = open(kv->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t bytes = 0;
	int err = 0;

	if (fd < 0)
		return CMQ_ERR_IO;
	for (size_t i = 0; i < kv->map.cap && err == 0; i++) {
		struct entry *e = kv->map.slots[i].value;
		unsigned char hdr[HDR_LEN];
		struct iovec iov[3];
		ssize_t w;

		if (kv->map.slots[i].key == NULL)
			continue;
		make_header(hdr, 'P', e->key_len, e->data_len);
		iov[0].iov_base = entry_key(e);
		iov[0].iov_len = e->key_len;
		iov[1].iov_base = entry_data(e);
		iov[1].iov_len = e->data_len;
		put_le(hdr + 10, check_of(hdr, iov, 2), 4);
		iov[2] = iov[1];
		iov[1] = iov[0];
		iov[0].iov_base = hdr;
		iov[0].iov_len = HDR_LEN;
		w = writev(fd, iov, 3);
		if (w != (ssize_t)record_len(e->key_len, e->data_len))
			err = errno ? errno : EIO;
		bytes += record_len(e->key_len, e->data_len);
	}
	if (err == 0 && fsync(fd) != 0)
		err = errno;
	close(fd);
	if (err == 0 && rename(kv->tmp, kv->path) != 0)
		err = errno;
	if (err != 0) {
		unlink(kv->tmp);
		return CMQ_ERR_IO;
	}
	(void)fsync_dir(kv->path);
	fd = open(kv->path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		return CMQ_ERR_IO;
	if (kv->fd >= 0)
		close(kv->fd);
	kv->fd = fd;
	kv->file_bytes = bytes;
	kv->live_bytes = bytes;
	kv->pending_len = 0; /* the rewrite holds what they said */
	return CMQ_OK;
}

static void maybe_compact(struct cmq_kvlog *kv)
{
	size_t dead = kv->file_bytes - kv->live_bytes;

	if (dead > COMPACT_SLACK && dead > kv->live_bytes)
		(void)compact(kv); /* a failed compaction leaves the valid log as it was */
}

static struct entry *entry_new(const char *key, size_t key_len, const struct iovec *parts,
                               int nparts, size_t data_len)
{
	struct entry *e = cmq_malloc(sizeof(*e) + key_len + 1 + data_len);
	char *d;

	if (e == NULL)
		return NULL;
	e->key_len = key_len;
	e->data_len = data_len;
	memcpy(entry_key(e), key, key_len);
	entry_key(e)[key_len] = '\0';
	d = entry_data(e);
	for (int i = 0; i < nparts; i++) {
		memcpy(d, parts[i].iov_base, parts[i].iov_len);
		d += parts[i].iov_len;
	}
	return e;
}

/* Make key's value e (NULL: delete). Returns CMQ_OK or CMQ_ERR_NOMEM (nothing changed). */
static int index_set(struct cmq_kvlog *kv, const char *key, size_t key_len, struct entry *e)
{
	struct entry *old = cmq_strmap_del(&kv->map, key, key_len);

	if (old != NULL) {
		kv->live_bytes -= record_len(old->key_len, old->data_len);
		cmq_free(old);
	}
	if (e == NULL)
		return CMQ_OK;
	if (cmq_strmap_put(&kv->map, entry_key(e), key_len, e, NULL) != CMQ_OK)
		return CMQ_ERR_NOMEM;
	kv->live_bytes += record_len(key_len, e->data_len);
	return CMQ_OK;
}

/* Apply the records of buf[0..len); returns how many bytes were valid records. */
static size_t replay(struct cmq_kvlog *kv, const unsigned char *buf, size_t len, int *rc)
{
	size_t off = 0;

	*rc = CMQ_OK;
	while (len - off >= HDR_LEN) {
		const unsigned char *h = buf + off;
		size_t key_len = (size_t)get_le(h + 3, 2), data_len = (size_t)get_le(h + 5, 4);
		struct iovec iov[2];
		struct entry *e = NULL;

		if (h[0] != 'K' || h[1] != 'V' || (h[2] != 'P' && h[2] != 'D') || h[9] != 0 ||
		    key_len == 0 || key_len > CMQ_KVLOG_KEY_MAX || data_len > CMQ_KVLOG_DATA_MAX ||
		    len - off - HDR_LEN < key_len + data_len)
			break;
		iov[0].iov_base = (void *)(h + HDR_LEN);
		iov[0].iov_len = key_len;
		iov[1].iov_base = (void *)(h + HDR_LEN + key_len);
		iov[1].iov_len = data_len;
		if (check_of(h, iov, 2) != (uint32_t)get_le(h + 10, 4) ||
		    memchr(h + HDR_LEN, '\0', key_len) != NULL)
			break;
		if (h[2] == 'P') {
			e = entry_new((const char *)iov[0].iov_base, key_len, &iov[1], 1, data_len);
			if (e == NULL) {
				*rc = CMQ_ERR_NOMEM;
				break;
			}
		}
		if (index_set(kv, (const char *)iov[0].iov_base, key_len, e) != CMQ_OK) {
			cmq_free(e);
			*rc = CMQ_ERR_NOMEM;
			break;
		}
		off += record_len(key_len, data_len);
	}
	return off;
}

static int read_all(int fd, unsigned char **buf, size_t *len)
{
	struct stat st;
	size_t got = 0;

	*buf = NULL;
	*len = 0;
	if (fstat(fd, &st) != 0)
		return CMQ_ERR_IO;
	*buf = cmq_malloc((size_t)st.st_size + 1);
	if (*buf == NULL)
		return CMQ_ERR_NOMEM;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, *buf + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	*len = got;
	return CMQ_OK;
}

int cmq_kvlog_open(const char *path, bool sync, struct cmq_diag *diag, struct cmq_kvlog **out)
{
	struct cmq_kvlog *kv;
	unsigned char *buf = NULL;
	size_t len = 0, valid;
	int fd, rc;

	*out = NULL;
	kv = cmq_calloc(1, sizeof(*kv));
	if (kv == NULL)
		return CMQ_ERR_NOMEM;
	kv->fd = -1;
	kv->sync = sync;
	cmq_strmap_init(&kv->map);
	kv->path = cmq_strdup(path);
	kv->tmp = cmq_malloc(strlen(path) + 5);
	if (kv->path == NULL || kv->tmp == NULL) {
		rc = CMQ_ERR_NOMEM;
		goto fail;
	}
	memcpy(kv->tmp, path, strlen(path));
	memcpy(kv->tmp + strlen(path), ".tmp", 5);
	fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		cmq_diag_add(diag, CMQ_DIAG_ERROR, path, NULL, "cannot open: %s", strerror(errno));
		rc = CMQ_ERR_IO;
		goto fail;
	}
	rc = read_all(fd, &buf, &len);
	close(fd);
	if (rc != CMQ_OK) {
		if (rc == CMQ_ERR_IO)
			cmq_diag_add(diag, CMQ_DIAG_ERROR, path, NULL, "cannot read: %s",
			             strerror(errno));
		goto fail;
	}
	valid = replay(kv, buf, len, &rc);
	cmq_free(buf);
	if (rc != CMQ_OK)
		goto fail;
	if (valid < len)
		cmq_diag_add(diag, CMQ_DIAG_WARNING, path, NULL,
		             "%zu bytes after offset %zu are a torn or corrupt record (a crash "
		             "mid-write); dropped",
		             len - valid, valid);
	/* Start from a compact log: the torn tail goes, dead records go. */
	rc = compact(kv);
	if (rc != CMQ_OK) {
		cmq_diag_add(diag, CMQ_DIAG_ERROR, path, NULL, "cannot rewrite: %s",
		             strerror(errno));
		goto fail;
	}
	*out = kv;
	return CMQ_OK;
fail:
	cmq_kvlog_close(kv);
	return rc;
}

void cmq_kvlog_close(struct cmq_kvlog *kv)
{
	if (kv == NULL)
		return;
	for (size_t i = 0; i < kv->map.cap; i++) {
		if (kv->map.slots[i].key != NULL)
			cmq_free(kv->map.slots[i].value);
	}
	cmq_strmap_cleanup(&kv->map);
	if (kv->fd >= 0) {
		(void)cmq_kvlog_flush(kv); /* an orderly close keeps the deferred records too */
		close(kv->fd);
	}
	cmq_free(kv->pending);
	cmq_free(kv->path);
	cmq_free(kv->tmp);
	cmq_free(kv);
}

int cmq_kvlog_put(struct cmq_kvlog *kv, const char *key, const struct iovec *parts, int nparts,
                  bool defer)
{
	size_t key_len = strlen(key), data_len = 0;
	struct entry *e;
	int rc;

	if (key_len == 0 || key_len > CMQ_KVLOG_KEY_MAX || nparts < 0 || nparts > 16)
		return CMQ_ERR_INVAL;
	for (int i = 0; i < nparts; i++)
		data_len += parts[i].iov_len;
	if (data_len > CMQ_KVLOG_DATA_MAX)
		return CMQ_ERR_INVAL;
	e = entry_new(key, key_len, parts, nparts, data_len);
	if (e == NULL)
		return CMQ_ERR_NOMEM;
	rc = append(kv, 'P', key, key_len, entry_data(e), data_len, defer);
	if (rc == CMQ_OK)
		rc = index_set(kv, key, key_len, e);
	if (rc != CMQ_OK) {
		cmq_free(e);
		return rc;
	}
	maybe_compact(kv);
	return CMQ_OK;
}

int cmq_kvlog_get(const struct cmq_kvlog *kv, const char *key, const void **data, size_t *len)
{
	struct entry *e = cmq_strmap_get(&kv->map, key, strlen(key));

	*data = NULL;
	*len = 0;
	if (e == NULL)
		return CMQ_ERR_NOT_FOUND;
	*data = entry_data(e);
	*len = e->data_len;
	return CMQ_OK;
}

int cmq_kvlog_del(struct cmq_kvlog *kv, const char *key, bool defer)
{
	size_t key_len = strlen(key);
	int rc;

	if (cmq_strmap_get(&kv->map, key, key_len) == NULL)
		return CMQ_ERR_NOT_FOUND;
	rc = append(kv, 'D', key, key_len, NULL, 0, defer);
	if (rc != CMQ_OK)
		return rc;
	index_set(kv, key, key_len, NULL);
	maybe_compact(kv);
	return CMQ_OK;
}

int cmq_kvlog_clear(struct cmq_kvlog *kv)
{
	for (size_t i = 0; i < kv->map.cap; i++) {
		if (kv->map.slots[i].key != NULL)
			cmq_free(kv->map.slots[i].value);
	}
	cmq_strmap_cleanup(&kv->map);
	cmq_strmap_init(&kv->map);
	kv->live_bytes = 0;
	return compact(kv);
}

size_t cmq_kvlog_count(const struct cmq_kvlog *kv)
{
	return kv->map.count;
}

int cmq_kvlog_each(const struct cmq_kvlog *kv, int (*fn)(void *arg, const char *key), void *arg)
{
	for (size_t i = 0; i < kv->map.cap; i++) {
		if (kv->map.slots[i].key != NULL) {
			int rc = fn(arg, kv->map.slots[i].key);

			if (rc != 0)
				return rc;
		}
	}
	return 0;
}

size_t cmq_kvlog_file_bytes(const struct cmq_kvlog *kv)
{
	return kv->file_bytes;
}
