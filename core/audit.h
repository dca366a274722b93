/*
 * audit.h - the append-only, hash-chained audit log of administrative changes.
 *
 * One JSON object per line, compact, keys always in this order:
 *   {"seq":1,"time":"2026-11-28T14:05:00Z","actor":"admin:alice","action":"vendor.block",
 *    "target":"nimbus","before":{"tier":"trusted"},"after":{"tier":"blocked"},
 *    "reason":"expired contract","prev":"0000...0000"}
 * seq counts lines from 1; time is UTC, second precision; before and after are any JSON value
 * or null; prev is the SHA-256 (64 lowercase hex digits) of the previous line's bytes without
 * its newline, 64 zeros on line 1. Strings are JSON-escaped (quotes, backslashes, control
 * characters; non-ASCII UTF-8 is kept as is), so a line never holds a raw newline.
 *
 * What the chain proves, and what it does not: editing, removing, inserting or reordering a
 * line breaks the chain at or just after that line, and cmq_audit_verify() names it. Editing
 * or removing the *last* line cannot be seen from the file alone, and neither can a rewrite of
 * the whole file with fresh hashes (there is no secret in the chain). Both are caught only
 * against a head hash kept elsewhere: the plugin publishes cmq_audit_head() retained on
 * city/transparency/audit after every administrative change, so anyone who records those can
 * later show that the history up to that line was kept; cmq_audit_verify() reports the head
 * to compare.
 *
 * Writers: several may share one log - the broker plugin and civicmq-admin working offline
 * on the same files - without forking the chain. Each append takes an exclusive flock(2) on
 * the file (waiting at most CMQ_AUDIT_LOCK_MS), and if the file grew since this writer's
 * last append it first re-reads the last line and chains onto it; the lock is released
 * before the append returns. Bytes that are not an audit line at the end (echo >> ...) make
 * the append fail instead of chaining onto what nobody can verify. Rotation: there is none;
 * moving the file away starts a new chain at seq 1 (record the old head).
 *
 * Durability: an append reaches the kernel in one write(2) of line and newline before it
 * returns, so it survives the process being killed; with sync (the default) it is also
 * fdatasync'ed, so it survives a power failure. A crash in the middle of a write can leave a
 * torn last line without its newline; that append never returned success. cmq_audit_open()
 * cuts such a tail off (with a warning) before appending, so a new line never chains onto
 * garbage; cmq_audit_verify(), which never writes, reports it.
 *
 * Memory: through alloc.h; json-c builds and parses the lines. Thread: not thread-safe;
 * callers serialise (the plugin calls it from the broker's main thread). Cost: open reads
 * only the last line (a 500 MB log opens as fast as an empty one); append is one line's
 * JSON build and parse, one write and, with sync, one fdatasync; verify streams the file.
 */
#ifndef CMQ_AUDIT_H
#define CMQ_AUDIT_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest line, bytes without the newline. Appends of longer lines fail; verify rejects
 * them. */
#define CMQ_AUDIT_LINE_MAX (1024u * 1024u)
/* Hex digits of a line hash. */
#define CMQ_AUDIT_HASH_HEX 64
/* Longest wait for another writer's lock, milliseconds (it holds it for one append). */
#define CMQ_AUDIT_LOCK_MS 2000

struct cmq_audit;

/* One change to record. Everything is borrowed for the duration of the append. */
struct cmq_audit_entry {
	int64_t time;               /* seconds since the epoch, 0 .. 9999-12-31T23:59:59Z */
	const char *actor;          /* who: non-empty UTF-8, e.g. "admin:alice" */
	const char *action;         /* what: non-empty UTF-8, e.g. "vendor.block" */
	const char *target;         /* on what: UTF-8, may be "" (never NULL) */
	struct json_object *before; /* state before; NULL is written as null */
	struct json_object *after;  /* state after; NULL is written as null */
	const char *reason;         /* why, UTF-8; NULL is written as "" */
};

/*
 * Open path for appending, creating it (mode 0640, then an fsync of its directory) if absent,
 * and take the writer's lock. Only the last complete line is read (backwards from the end, in
 * 64 KiB chunks); it must be a well-formed audit line, and gives the next seq and the head.
 *
 * A torn tail (bytes after the last newline, at most CMQ_AUDIT_LINE_MAX of them) is cut off
 * with ftruncate and fsync; the call then returns CMQ_OK with a warning in err that says how
 * many bytes went. More bytes than any line without a newline are not a torn append: that
 * fails and the file is left as it is.
 *
 * Returns CMQ_OK and *out (close with cmq_audit_close); err is "" or the torn-tail warning.
 * Otherwise *out is NULL, the content was not changed (a missing file may have been created
 * empty) and err names the file: CMQ_ERR_INVAL (NULL or empty path), CMQ_ERR_IO (cannot
 * open/read/truncate, not a regular file, or locked by another writer), CMQ_ERR_PARSE (the
 * last complete line is not an audit line: err gives its byte offset and why; run
 * cmq_audit_verify for the whole picture) or CMQ_ERR_NOMEM.
 */
int cmq_audit_open(const char *path, struct cmq_audit **out, char *err, size_t errlen);

/*
 * Append e as the next line. The line is built, parsed back and checked exactly as
 * cmq_audit_verify() checks lines, then written with ONE write(2) of line + "\n" (O_APPEND,
 * so writers in other processes could never interleave bytes within it), then, with sync,
 * fdatasync'ed. seq and head advance only after all of that succeeded.
 *
 * Returns CMQ_OK; CMQ_ERR_INVAL (NULL/empty actor or action, NULL target, time out of range,
 * a string that is not UTF-8, a NaN or infinite number, nesting too deep, or an object key
 * with characters that need escaping); CMQ_ERR_TOO_BIG (line over CMQ_AUDIT_LINE_MAX);
 * CMQ_ERR_IO (write or fdatasync failed or was short: what was written is cut off again, so
 * the chain stays valid; or the file changed size behind our back); CMQ_ERR_NOMEM. On any
 * error nothing is recorded and cmq_audit_last_error() says why, naming the file.
 */
int cmq_audit_append(struct cmq_audit *a, const struct cmq_audit_entry *e);

/* fdatasync after every append (true, the default) or not. Off trades durability across a
 * power failure for not waiting for the disk on the broker's main thread. */
void cmq_audit_set_sync(struct cmq_audit *a, bool sync);

/* SHA-256 hex of the last line, or 64 zeros for an empty log; borrowed from a, changes with
 * the next successful append. This is what to anchor elsewhere (see above). */
const char *cmq_audit_head(const struct cmq_audit *a);

/* seq the next append will get (1 for an empty log). */
uint64_t cmq_audit_next_seq(const struct cmq_audit *a);

/* Why the last failed cmq_audit_append failed ("" after a success); borrowed from a. */
const char *cmq_audit_last_error(const struct cmq_audit *a);

/* Release the lock and close; NULL is a no-op. Nothing is pending: appends are written. */
void cmq_audit_close(struct cmq_audit *a);

/* What cmq_audit_verify found. */
struct cmq_audit_report {
	bool ok;                           /* every line is well-formed and chained */
	uint64_t lines;                    /* lines that passed, in order from line 1 */
	uint64_t bad_line;                 /* 1-based line of the first problem; 0 if none */
	char message[512];                 /* the problem, or a one-line summary when ok */
	char head[CMQ_AUDIT_HASH_HEX + 1]; /* SHA-256 hex of the last line that passed */
};

/*
 * Check the whole log at path, streaming it (memory: one line, at most CMQ_AUDIT_LINE_MAX;
 * the file is never written, and may be checked while a writer appends: a line being written
 * at that very moment then shows as torn). Stops at the first problem and reports it with its
 * line number: a line that is not a JSON object of exactly the nine fields in order with the
 * right types; a seq that is not the previous one plus one
 * ("seq 9 after seq 7: a line was removed or lines were reordered"); a prev that is not the
 * SHA-256 of the previous line ("line 6 was edited, or a line between them was removed");
 * line 1 without seq 1 and 64 zeros (the start of the log was removed); a line longer than
 * CMQ_AUDIT_LINE_MAX; a last line without its newline (torn; cmq_audit_open cuts it off).
 * Editing line k shows at line k+1, unless k is the last line: compare r->head with an
 * anchored head to catch that.
 *
 * r is filled in every case (ok false, message set, on every error). Returns CMQ_OK (r->ok),
 * CMQ_ERR_PARSE (the log is damaged: r->bad_line and r->message), CMQ_ERR_INVAL (NULL
 * argument), CMQ_ERR_IO (cannot open or read; r->message names the file) or CMQ_ERR_NOMEM.
 * An empty file is a valid log of 0 lines with a head of 64 zeros.
 */
int cmq_audit_verify(const char *path, struct cmq_audit_report *r);

#endif
