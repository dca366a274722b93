/*
 * register.h - the public transparency register: every data flow the loaded policy
 * enforces, what is kept, pseudonymised, coarsened and removed, and which vendors at
 * which tier may feed it, built from the live struct cmq_policy so it cannot drift
 * from what the plugin and the gateway enforce.
 *
 * cmq_register_build() turns a policy into one JSON document (shape below); the
 * renderers turn such a document - freshly built, or the retained JSON parsed back by
 * any consumer - into canonical JSON text, a Markdown page or a standalone HTML page.
 *
 *   {"register_version": 1, "city": "Example City" | null,
 *    "policy": "<policy stamp: version + content hash, as in provenance>",
 *    "generated": "2026-12-01T12:00:00Z",
 *    "flows": [ one per topic rule, in policy.json order:
 *      {"id", "raw", "published_as", "category", "category_description", "class",
 *       "purpose", "retention", "consent_required": bool, "consent_subject": path | null,
 *       "scrubbing": {"profile", "description" | null,
 *         "kept": [path], "pseudonymised": [{"path", "method"}],
 *         "generalised": [{"path", "geohash_precision"} | {"path", "grid_degrees"}],
 *         "coarsened": [{"path", "seconds"}], "rounded": [{"path", "step"}],
 *         "bucketed": [{"path", "bounds": [number]}],
 *         "redacted": [{"path", "patterns": ["mac" | "plate" | "email" | "phone"]}],
 *         "aggregated": [{"path", "group_by", "window_seconds", "k",
 *                         "noise_epsilon": number | null}],
 *         "dropped": [path], "removed": "<sentence>"},
 *       "vendors": [{"id", "name", "tier"}]}],
 *    "vendors": [ in vendors.json order:
 *      {"id", "name", "tier", "categories": [id], "device_id_prefix", "ca_sha256": [hex]}]}
 *
 * Every array is present (possibly empty); op lists keep the profile's order. The
 * scrub engine builds each payload from nothing (scrub.h), so "removed" says that every
 * field not listed is removed; for an aggregate profile no message leaves at all.
 *
 * Vendor eligibility is not re-implemented here: for each (rule, vendor) the register
 * asks cmq_acl_check() - the plugin's own publish decision - about a device of that
 * vendor (resolved from its id like any device) publishing a topic that only that
 * rule's pattern matches. Operator data (accounts, roles, password hashes, the
 * operator CA pins) never enters the register; the vendor CA fingerprints are public.
 *
 * Memory: the document is a json-c tree (json-c's allocator); rendered text is
 * allocated through alloc.h (cmq_free). Thread: build reads an immutable policy and
 * may run on any thread; json-c caches serialisations inside the tree, so calls on the
 * same document must be serialised.
 * Cost: build does one ACL check (O(topic levels), no allocation) per rule and vendor,
 * plus the JSON; the renderers are linear in the document.
 */
#ifndef CMQ_REGISTER_H
#define CMQ_REGISTER_H

#include "policy.h"

#include <json-c/json.h>
#include <stdint.h>

#define CMQ_REGISTER_VERSION  1
#define CMQ_REGISTER_TEXT_MAX CMQ_POLICY_MAX_FILE /* longest rendered text, bytes */

/*
 * Build the register of p as of now (Unix seconds, 0 .. 253402300799: year 9999).
 * Returns CMQ_OK and *out (the caller frees it with json_object_put); CMQ_ERR_INVAL if
 * p is NULL, now is out of range, or the policy is inconsistent (an ACL probe did not
 * reach the rule it was built for: a bug, reported rather than guessed around); or
 * CMQ_ERR_NOMEM. *out is NULL on failure.
 */
int cmq_register_build(const struct cmq_policy *p, int64_t now, struct json_object **out);

/*
 * Render a register document. cmq_register_json: canonical JSON (two-space indent, no
 * "\/" escapes, a final newline), the form to retain and to compare byte for byte.
 * cmq_register_markdown: a Markdown page, one table per flow and one for the vendors;
 * every string from the policy is escaped so it can neither break a table nor become
 * markup. cmq_register_html: a standalone HTML5 page (lang, charset, inline CSS, no
 * script); every string is escaped (& < > " ').
 * Each returns CMQ_OK and *out, a NUL-terminated string the caller frees with cmq_free;
 * CMQ_ERR_PARSE if reg is not a register of version CMQ_REGISTER_VERSION (a member is
 * missing or of the wrong type); CMQ_ERR_TOO_BIG beyond CMQ_REGISTER_TEXT_MAX; or
 * CMQ_ERR_NOMEM. *out is NULL on failure. reg is not modified, apart from json-c's
 * cached serialisation (see Thread above).
 */
int cmq_register_json(const struct json_object *reg, char **out);
int cmq_register_markdown(const struct json_object *reg, char **out);
int cmq_register_html(const struct json_object *reg, char **out);

#endif
