/*
 * consent.h - residents' opt-in per data category.
 *
 * consent.json:
 *   {"version": 1,
 *    "residents": [
 *      {"id": "resident-0001", "categories": ["energy"], "updated": "2026-11-01T09:00:00Z"},
 *      ...]}
 * A resident id is 1..64 bytes of [A-Za-z0-9_.:@-]; category ids as in policy.json
 * (checked against the policy when one is given, so a typo cannot silently withhold
 * or grant). A resident not listed, or listed without a category, has not opted in:
 * the default is "no". Duplicate resident ids are an error.
 *
 * Lookup is O(1) (hash of the resident id) and allocates nothing. The table is
 * immutable after load; the gateway builds a new one on change and swaps it in, so a
 * broken file keeps the old table.
 *
 * Memory: through alloc.h. Thread: load anywhere; lookups read-only.
 */
#ifndef CMQ_CONSENT_H
#define CMQ_CONSENT_H

#include "diag.h"

#include <stdbool.h>
#include <stddef.h>

struct cmq_policy;
struct cmq_consent;

#define CMQ_SUBJECT_MAX      64
#define CMQ_CONSENT_MAX_FILE (64u * 1024u * 1024u) /* bytes; a larger file is refused */

/*
 * Load file. policy may be NULL (category ids then not checked). Returns CMQ_OK and
 * *out, or CMQ_ERR_IO / CMQ_ERR_PARSE / CMQ_ERR_CONFIG with every problem in diag
 * (file, JSON path, value, what is valid), or CMQ_ERR_NOMEM; *out NULL on failure.
 * Unknown keys and consent to a category that is not resident_linked are warnings.
 * diag may be NULL (problems then go unreported; the load still fails). The table does
 * not borrow policy: it names categories by id and outlives a policy reload.
 */
int cmq_consent_load(const char *file, const struct cmq_policy *policy, struct cmq_diag *diag,
                     struct cmq_consent **out);
/* An empty table: nobody has opted in to anything. */
int cmq_consent_new_empty(struct cmq_consent **out);
/* cmq_consent_free(NULL) is a no-op. */
void cmq_consent_free(struct cmq_consent *c);

/* Whether resident subject[0..len) opted in for category id `category`. */
bool cmq_consent_allows(const struct cmq_consent *c, const char *subject, size_t len,
                        const char *category);
/* Number of residents listed (for log lines). */
size_t cmq_consent_count(const struct cmq_consent *c);
/* Whether s[0..len) is a well-formed resident id. */
bool cmq_subject_valid(const char *s, size_t len);

#endif
