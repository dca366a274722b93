/*
 * admin.h - administering a running city: the vendor trust list, device revocations and
 * residents' consent, and the read-only questions (list, show, explain, register). One
 * implementation behind both doors: civicmq-admin working on the files offline, and the
 * plugin's $CONTROL/civicmq/v1 API online, so both validate, save and audit alike.
 *
 * A request is a JSON object {"command": "<name>", ...fields}; see cmq_admin_commands()
 * for the list. Every answer is a JSON object:
 *   {"ok": true,  "command": "...", "result": {...}, "warnings": [...]}
 *   {"ok": false, "command": "...", "error": "<code>", "message": "<field, value, why>"}
 * with error codes bad_request (a field missing or malformed), not_found, exists, invalid
 * (the changed policy would not load; message has the loader's words), save_failed
 * (the file could not be written), audit_failed, and internal (out of memory).
 *
 * A change happens in this order and stops, with nothing changed, at the first failure:
 *   1. the file is read from disk and the change applied to its JSON document;
 *   2. the result is validated as a whole: vendors by loading the complete policy from the
 *      changed text, consent against the policy's categories; an invalid change never
 *      reaches the disk;
 *   3. the document is written atomically (atomic.h: temp, fsync, rename, fsync dir);
 *   4. the change is appended to the audit log (audit.h) with before and after; if that
 *      fails the old document is written back and the caller gets audit_failed.
 * A vendors change hands the caller the new policy (outcome.policy), already loaded from
 * exactly the bytes on disk; the caller swaps it in. Memory and disk never diverge: when
 * saving fails, outcome.policy is NULL and the running policy is the one to keep.
 *
 * Reads answer from `current`, the policy being enforced, not from the files.
 *
 * Threads: none of its own; the caller serialises calls (one writer per file, see
 * atomic.h). Allocation through json-c and alloc.h.
 */
#ifndef CMQ_ADMIN_H
#define CMQ_ADMIN_H

#include "audit.h"
#include "policy.h"

#include <stdbool.h>
#include <stdint.h>

struct json_object;

struct cmq_admin_files {
	const char *policy;
	const char *vendors;
	const char *operators; /* may be NULL */
	const char *ca_file;   /* may be NULL (offline): pins are then not resolved */
	const char *consent;   /* may be NULL: consent commands answer bad_request */
};

struct cmq_admin_outcome {
	struct json_object *response; /* always set on CMQ_OK; the caller puts it */
	struct cmq_policy *policy;    /* a vendors change: the new policy, owned by the caller */
	bool consent_changed;         /* consent.json was rewritten */
	bool changed;                 /* something was saved (and audited) */
};

/*
 * Run one request as actor (for the audit log: an operator name, or "cli:<user>"). now is
 * Unix time for the audit entry and consent's "updated". audit may be NULL only for
 * read-only commands; a change without an audit log is refused (audit_failed).
 * Returns CMQ_OK with out->response set (which may itself say ok:false), or CMQ_ERR_NOMEM
 * with no response; then out->changed says whether the change had already been saved, in
 * which case out->policy / out->consent_changed still hold and must be acted on.
 */
int cmq_admin_execute(const struct cmq_admin_files *files, const struct cmq_policy *current,
                      struct cmq_audit *audit, const char *actor, struct json_object *request,
                      int64_t now, struct cmq_admin_outcome *out);

/* An answer {"ok": false, ...} for callers that refuse before executing (e.g. "denied"). */
struct json_object *cmq_admin_error(const char *command, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The command names, NULL-terminated, for usage texts. */
const char *const *cmq_admin_commands(void);

/* Whether a command changes files (and so needs the admin role's write path). */
bool cmq_admin_is_change(const char *command);

/* SHA-256 fingerprint (colon-separated hex) of the first certificate in a PEM text. */
int cmq_admin_pem_fingerprint(const char *pem, size_t len, char *out, size_t outlen);

#endif
