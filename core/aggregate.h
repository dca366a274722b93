/*
 * aggregate.h - k-thresholded, optionally noised windowed counts: the only form
 * in which sensitive data leaves the gateway.
 *
 * Each message of an aggregate profile contributes (scrubbed topic, group, count)
 * to the tumbling window [start, start + window_seconds) that its arrival time falls
 * in (arrival, not the device's claimed time, so a device cannot reopen a closed
 * window). When a window has closed, each group whose true total is at least k is
 * published once as
 *   {"group": "<group>", "window_start": "<ISO 8601 UTC>", "window_seconds": N,
 *    "count": <total + noise>, "k": k, "epsilon": e}
 * (count clamped at 0; "epsilon" only when noise is on); groups below k are
 * suppressed and counted, never published. Noise is two-sided geometric (discrete
 * Laplace) with parameter exp(-epsilon) drawn from OpenSSL's CSPRNG: epsilon-DP per
 * window for a count one person changes by at most 1.
 *
 * Durability: each contribution is appended to a journal file (one write(2), no
 * fsync: survives kill -9, not power loss) before the message is acknowledged;
 * cmq_agg_open replays it, so a gateway killed mid-window loses nothing. After a
 * flush the journal is rewritten (temp file + rename) with the windows still open.
 * A journal of NULL keeps state in memory only (tests, benchmarks).
 *
 * Bounds: at most max_groups open (topic, group, window) entries; more ->
 * CMQ_ERR_TOO_BIG (the gateway drops with CMQ_DROP_AGGREGATE_FULL).
 * Memory: through alloc.h. Thread: not thread-safe; the gateway serialises.
 *
 * Journal format (text, one line per contribution, written by one write(2) with
 * O_APPEND; after a flush, one line per open entry):
 *     A1 <window_start> <window_seconds> <k> <epsilon> <count> <topic> <group>\n
 * window_start is Unix seconds (a multiple of window_seconds), epsilon is printed with
 * %.17g (exact round trip; the process must run in the C numeric locale, as Mosquitto
 * and the gateway do), count is the contribution. Fields are separated by one space;
 * no field can contain a space or a line break (topics with bytes <= 0x20 or 0x7f and
 * groups outside [A-Za-z0-9_.:-] are refused), so a topic or group cannot forge a line.
 * A last line without its newline (a crash mid-write) is ignored with a warning and cut
 * off before appending; any other malformed line fails cmq_agg_open. One journal per
 * process: nothing stops two processes from appending to the same file.
 *
 * Entries are keyed by (window_start, window_seconds, topic, group). If k or epsilon of
 * a key change between contributions (a policy reload mid-window), the strictest wins:
 * the largest k and the smallest non-zero epsilon.
 */
#ifndef CMQ_AGGREGATE_H
#define CMQ_AGGREGATE_H

#include "diag.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cmq_agg;

#define CMQ_AGG_TOPIC_MAX 1024                  /* longest scrubbed topic, bytes */
#define CMQ_AGG_GROUP_MAX 64                    /* longest group, bytes: [A-Za-z0-9_.:-]{1,64} */
#define CMQ_AGG_TIME_MAX  INT64_C(253402300799) /* 9999-12-31T23:59:59Z: latest accepted now */
/* epsilon is 0 (no noise) or in [2^-40, 2^20] (about 9.1e-13 to 1048576). */
#define CMQ_AGG_EPSILON_MIN 0x1p-40
#define CMQ_AGG_EPSILON_MAX 0x1p20

struct cmq_agg_params {
	uint32_t window_seconds; /* >= 1 */
	uint32_t k;              /* >= 1 */
	double epsilon;          /* > 0: add noise; 0: no noise */
};

struct cmq_agg_stats {
	uint64_t published;  /* groups published */
	uint64_t suppressed; /* groups below k, never published */
};

/*
 * Called by cmq_agg_flush for each group to publish: topic and the JSON payload
 * (NUL-terminated, len bytes). Return CMQ_OK if handed over; any other code keeps the
 * window for the next flush (so nothing is lost when the client is down).
 */
typedef int (*cmq_agg_emit_fn)(void *arg, const char *topic, const char *payload, size_t len);

/*
 * Create an aggregator. journal (may be NULL) is replayed if it exists, then kept
 * open for appending. Returns CMQ_OK, CMQ_ERR_IO (diag names the file and errno),
 * CMQ_ERR_PARSE (a corrupt journal line: diag names file and line; the valid lines
 * before it are kept) or CMQ_ERR_NOMEM.
 * On CMQ_ERR_PARSE every corrupt line is reported and the file is left untouched, so
 * nothing is lost: fix or delete the lines named and start again. max_groups must be
 * >= 1 (CMQ_ERR_INVAL); a journal holding more open entries than max_groups is loaded
 * whole, with a warning, and new entries are refused until windows close. diag may be
 * NULL. *out is NULL on failure.
 */
int cmq_agg_open(const char *journal, size_t max_groups, struct cmq_diag *diag,
                 struct cmq_agg **out);
/* Free without flushing (state stays in the journal). NULL is a no-op. */
void cmq_agg_close(struct cmq_agg *a);

/*
 * Add count to group in the window containing now. Returns CMQ_OK, CMQ_ERR_TOO_BIG
 * (max_groups reached), CMQ_ERR_IO (journal append failed: the caller must not ack)
 * or CMQ_ERR_INVAL (bad params or group).
 * Also CMQ_ERR_INVAL: a topic that is empty, longer than CMQ_AGG_TOPIC_MAX, not valid
 * UTF-8, or holds '+', '#', a space, a control character or 0x7f; epsilon neither 0 nor
 * in CMQ_AGG_EPSILON_MIN..MAX; now outside 0..CMQ_AGG_TIME_MAX; or a window that a flush already
 * closed (the clock went back): publishing it again would let a reader difference the counts.
 * CMQ_ERR_NOMEM for a new entry. On any error nothing is counted or journalled.
 * Cost: one hash lookup and, with a journal, one write(2); allocates only for a new entry.
 */
int cmq_agg_add(struct cmq_agg *a, const char *topic, const char *group,
                const struct cmq_agg_params *params, int64_t now, uint64_t count);

/*
 * Publish every window that ended at or before now through emit, suppress those below
 * k, forget both, and rewrite the journal. Returns CMQ_OK or the first error (windows
 * not handed over stay open for the next call).
 * Emission stops at the first emit failure (the remaining due groups wait, in order);
 * suppression goes on. A group's noise is drawn once and kept with it, so a retry
 * publishes the same count (in memory only: after a restart it is drawn afresh).
 * CMQ_ERR_CRYPTO if the CSPRNG fails (nothing un-noised is published), CMQ_ERR_IO if
 * the journal rewrite fails (retried at the next flush), CMQ_ERR_NOMEM, CMQ_ERR_INVAL
 * (emit NULL). stats (may be NULL) counts this call only: it is zeroed first.
 */
int cmq_agg_flush(struct cmq_agg *a, int64_t now, cmq_agg_emit_fn emit, void *arg,
                  struct cmq_agg_stats *stats);

/*
 * The first half of a two-phase flush, for a caller that must hand the payloads over
 * without holding its lock: like cmq_agg_flush, but every due group at or above k is
 * only emitted, not forgotten (its noise is drawn once, so a later cmq_agg_flush at the
 * same now emits the identical payload). Groups below k are suppressed and forgotten
 * as by cmq_agg_flush.
 */
int cmq_agg_peek(struct cmq_agg *a, int64_t now, cmq_agg_emit_fn emit, void *arg,
                 struct cmq_agg_stats *stats);

/* Open (topic, group, window) entries. */
size_t cmq_agg_open_groups(const struct cmq_agg *a);

/*
 * One discrete-Laplace sample with parameter exp(-epsilon) (exposed for tests), drawn
 * exactly with integer arithmetic over RAND_bytes (aggregate.c says how). epsilon 0 or
 * outside CMQ_AGG_EPSILON_MIN..MAX gives 0, and so does a CSPRNG failure
 * (cmq_agg_flush reports that one as CMQ_ERR_CRYPTO instead).
 */
int64_t cmq_agg_noise(double epsilon);

/* errno of the last failed journal operation (for log lines), or 0. */
int cmq_agg_last_errno(const struct cmq_agg *a);

#endif
