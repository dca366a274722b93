/*
 * kvlog.h - a small durable key-value store: one append-only log file plus an
 * in-memory index. The gateway keeps its MQTT client's outbox in it (Paho's
 * persistence interface, gateway/outbox.c): every message it has acknowledged
 * upstream but not yet delivered downstream.
 *
 * Why not a file per key (Paho's default): creating and unlinking two files per
 * message cost the gateway most of its CPU (ext4 inode allocation) and made its
 * throughput depend on how many files were deleted a moment before. Here a put or
 * a delete is one write(2) of one record to one open file.
 *
 * Record: "KV" op(1: 'P' put, 'D' delete) key_len(2, LE) data_len(4, LE) reserved(1,
 * zero) check(4, LE: hash.h's cmq_hash chained over op, lengths, key and data) key data. Replay at
 * open applies records in order and stops at the first torn or corrupt record (a crash mid-write),
 * truncating it away with a warning; the log is then compacted (live records only: temp file,
 * fsync, rename, fsync of the directory). While running it is compacted again when dead bytes
 * exceed both the live bytes and 1 MiB.
 *
 * Durability: a record reaches the kernel before put/del returns (survives the
 * process being killed, kill -9 included) unless the caller defers it; with sync =
 * true each write is also fdatasync'ed (survives power loss, at the cost of a disk
 * flush per message). A deferred record waits in memory (at most 64 KiB) and is
 * written, in order, with the next record that is not deferred or by
 * cmq_kvlog_flush. Defer only what may be lost in a crash without losing data: for
 * the gateway, deleting a delivered message (a crash then resends it: a duplicate,
 * not a loss) and the in-flight copy of a message whose queued copy is still on disk.
 * One writev per message instead of four.
 *
 * Memory: through alloc.h; get returns a borrowed pointer valid until the key's
 * next put/del. Thread: not thread-safe; callers serialise.
 */
#ifndef CMQ_KVLOG_H
#define CMQ_KVLOG_H

#include "diag.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#define CMQ_KVLOG_KEY_MAX  1024
#define CMQ_KVLOG_DATA_MAX (256u * 1024u * 1024u)

struct cmq_kvlog;

/*
 * Open (creating if absent, mode 0600) and replay path. Returns CMQ_OK and *out, or
 * CMQ_ERR_IO (diag names the file and errno) / CMQ_ERR_NOMEM with *out NULL. A torn
 * tail is a warning in diag, not an error.
 */
int cmq_kvlog_open(const char *path, bool sync, struct cmq_diag *diag, struct cmq_kvlog **out);
/* Close; NULL is a no-op. Nothing is lost: the log stays for the next open. */
void cmq_kvlog_close(struct cmq_kvlog *kv);

/* Store key -> the concatenation of parts (deferred: see above). CMQ_OK, CMQ_ERR_INVAL
 * (too long), CMQ_ERR_IO (nothing stored: a partial record is cut off again) or
 * CMQ_ERR_NOMEM. */
int cmq_kvlog_put(struct cmq_kvlog *kv, const char *key, const struct iovec *parts, int nparts,
                  bool defer);
/* Borrowed data for key: CMQ_OK, or CMQ_ERR_NOT_FOUND. */
int cmq_kvlog_get(const struct cmq_kvlog *kv, const char *key, const void **data, size_t *len);
/* Remove key (deferred: see above): CMQ_OK, CMQ_ERR_NOT_FOUND, CMQ_ERR_IO or CMQ_ERR_NOMEM. */
int cmq_kvlog_del(struct cmq_kvlog *kv, const char *key, bool defer);
/* Write the deferred records now: CMQ_OK or CMQ_ERR_IO (they stay pending). */
int cmq_kvlog_flush(struct cmq_kvlog *kv);
/* Remove everything (an empty log): CMQ_OK or CMQ_ERR_IO. */
int cmq_kvlog_clear(struct cmq_kvlog *kv);

/* Number of keys; key i (0 <= i < count) in no particular order, borrowed. */
size_t cmq_kvlog_count(const struct cmq_kvlog *kv);
/* Call fn for every key; stops early and returns fn's value if it is not 0. */
int cmq_kvlog_each(const struct cmq_kvlog *kv, int (*fn)(void *arg, const char *key), void *arg);
/* Bytes the log file holds now (for tests and metrics). */
size_t cmq_kvlog_file_bytes(const struct cmq_kvlog *kv);

#endif
