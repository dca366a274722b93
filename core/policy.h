/*
 * policy.h - the compiled civicmq policy: everything a decision needs, loaded
 * from JSON files, validated as a whole, immutable once built.
 *
 * Files (documented field by field in config/README.md):
 *   policy.json     version, data categories, scrub profiles, topic rules, roles, limits
 *   vendors.json    vendors: tier, device id prefix, pinned CA fingerprints,
 *                   permitted categories, revoked device certificate serials
 *   operators.json  operator accounts (gateway, dashboards, admins, custom roles) and
 *                   the pinned operator CA fingerprints
 *   ca_file         PEM bundle holding the pinned CA certificates (usually the broker
 *                   listener's cafile); pins are resolved against it
 *
 * Lifecycle: cmq_policy_load() builds a complete new policy or nothing; the
 * plugin swaps it in only on success, so a broken file at reload keeps the old
 * policy. A policy is never modified after load, so decisions may borrow
 * pointers into it until it is freed.
 *
 * Identity model: the plugin sets every client's username (device: its
 * certificate CN; operator: its account name) and the policy resolves a
 * username to a principal in O(1): operators by exact name, devices by their
 * vendor's device id prefix. Prefixes may not overlap and operator names may
 * not carry a vendor prefix, so a device of one vendor can never pass for a
 * device of another vendor or for an operator.
 *
 * Memory: through alloc.h; pinned CA certificates are OpenSSL X509 objects
 * owned by the policy. Thread: load on any thread; read-only afterwards.
 */
#ifndef CMQ_POLICY_H
#define CMQ_POLICY_H

#include "diag.h"
#include "passwd.h"
#include "scrub.h"
#include "strmap.h"
#include "trie.h"

#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CMQ_MAX_CATEGORIES      64
#define CMQ_POLICY_MAX_FILE     (256u * 1024u * 1024u)
#define CMQ_DEFAULT_MAX_PAYLOAD 65536u
#define CMQ_STAMP_MAX           96
#define CMQ_SERIAL_HEX_MAX      64
#define CMQ_PREFIX_MAX          64 /* longest vendor device id prefix, bytes */
#define CMQ_ID_FIELD_MAX        64 /* longest id of a rule, role, category, profile or vendor */

enum cmq_class { CMQ_CLASS_PUBLIC, CMQ_CLASS_PERSONAL, CMQ_CLASS_SENSITIVE, CMQ_CLASS__COUNT };
enum cmq_tier { CMQ_TIER_TRUSTED, CMQ_TIER_RESTRICTED, CMQ_TIER_BLOCKED, CMQ_TIER__COUNT };
/* What a grant or deny applies to. SUBSCRIBE grants imply READ of the same pattern. */
enum cmq_op { CMQ_OP_PUBLISH, CMQ_OP_SUBSCRIBE, CMQ_OP_READ, CMQ_OP__COUNT };

/* Built-in roles come first in cmq_policy.roles, in this order; custom roles follow. */
enum cmq_role_kind {
	CMQ_ROLE_SENSOR,
	CMQ_ROLE_GATEWAY,
	CMQ_ROLE_DASHBOARD,
	CMQ_ROLE_ADMIN,
	CMQ_ROLE_BRIDGE,
	CMQ_ROLE_CUSTOM,
};
#define CMQ_BUILTIN_ROLES 5

enum cmq_scrub_kind {
	CMQ_SCRUB_KEEP,
	CMQ_SCRUB_DROP,
	CMQ_SCRUB_PSEUDONYMISE,
	CMQ_SCRUB_GENERALISE_LOCATION,
	CMQ_SCRUB_COARSEN_TIME,
	CMQ_SCRUB_ROUND,
	CMQ_SCRUB_BUCKET,
	CMQ_SCRUB_REDACT,
	CMQ_SCRUB_AGGREGATE,
	CMQ_SCRUB__COUNT
};

struct cmq_category {
	char *id;
	char *description;
	bool resident_linked; /* consent-gated: forwarded only with the resident's opt-in */
};

struct cmq_scrub_op {
	enum cmq_scrub_kind kind;
	char *path; /* JSON path inside the payload, e.g. "observedVehicle.licensePlate" */
	struct cmq_scrub_path cpath; /* path compiled (scrub.h) */
	union {
		struct {
			uint8_t geohash_precision; /* 1..12, or 0 when grid_degrees is used */
			double grid_degrees; /* > 0 when used: snap to the centre of the cell */
		} loc;
		struct {
			uint32_t seconds; /* >= 1 */
		} time;
		struct {
			double step; /* > 0 */
		} round;
		struct {
			double *bounds; /* strictly increasing, 1..CMQ_SCRUB_MAX_BOUNDS */
			size_t n;
		} bucket;
		struct {
			unsigned patterns; /* CMQ_REDACT_* bits, at least one */
		} redact;
		struct {
			struct cmq_scrub_path group_by; /* compiled group_by path */
			char *group_by_text;
			uint32_t window_seconds; /* >= 1 */
			uint32_t k;              /* >= 1 */
			double epsilon;          /* 0 = no noise */
		} agg;
	} u;
};

struct cmq_profile {
	char *id;
	char *description;
	struct cmq_scrub_op *ops;
	size_t n_ops;
	bool aggregates; /* has an aggregate op: the only way sensitive data may leave */
};

struct cmq_rule {
	char *id;
	char *raw; /* raw topic pattern, e.g. "raw/+/air/+" (last level = device) */
	enum cmq_class cls;
	uint32_t category; /* index into cmq_policy.categories */
	char *purpose;
	char *retention;      /* ISO 8601 duration, e.g. "P30D" */
	uint32_t profile;     /* index into cmq_policy.profiles */
	char *scrubbed;       /* template, e.g. "city/{1}/air": {N} = raw level N */
	uint32_t max_payload; /* bytes */
	char *subject; /* JSON path of the resident id (resident-linked categories), or NULL */
	struct cmq_scrub_path subject_path; /* compiled subject */
};

struct cmq_role {
	char *id;
	char *description;
	enum cmq_role_kind kind;
	struct cmq_trie *allow[CMQ_OP__COUNT];
	struct cmq_trie *deny[CMQ_OP__COUNT];
};

struct cmq_vendor {
	char *id;
	char *name;
	enum cmq_tier tier;
	char *prefix; /* device id prefix, e.g. "civitas-" */
	size_t prefix_len;
	uint8_t (*ca_sha256)[32];
	size_t n_ca;
	uint64_t categories; /* bit i = may feed cmq_policy.categories[i] */
	char **revoked;      /* normalised serials (uppercase hex, no leading zeros), sorted */
	size_t n_revoked;
};

struct cmq_operator {
	char *username;
	uint32_t role; /* index into cmq_policy.roles */
	bool password_auth;
	bool cert_auth;
	struct cmq_pbkdf2 pw;
	uint8_t
	    cred_digest[32]; /* SHA-256 over role, auth methods and hash: changes force a kick */
};

enum cmq_ca_owner { CMQ_CA_VENDOR, CMQ_CA_OPERATOR };

struct cmq_pinned_ca {
	uint8_t sha256[32];
	enum cmq_ca_owner owner;
	uint32_t vendor; /* index into cmq_policy.vendors when owner == CMQ_CA_VENDOR */
	X509 *cert;      /* from ca_file, or NULL when the bundle lacks it (warned) */
};

struct cmq_policy {
	char *version; /* policy.json "version" */
	char *city;
	char stamp[CMQ_STAMP_MAX];  /* version + "+" + 12 hex digits of the content hash */
	uint32_t max_payload;       /* default per-message limit, bytes */
	uint32_t max_pw_iterations; /* highest operator PBKDF2 cost: what unknown names cost */

	struct cmq_category *categories;
	size_t n_categories;
	struct cmq_profile *profiles;
	size_t n_profiles;
	struct cmq_rule *rules;
	size_t n_rules;
	struct cmq_trie *rule_trie; /* raw pattern -> rule index */
	struct cmq_role *roles;
	size_t n_roles;
	struct cmq_vendor *vendors;
	size_t n_vendors;
	struct cmq_operator *operators;
	size_t n_operators;
	struct cmq_pinned_ca *cas;
	size_t n_cas;

	struct cmq_strmap operator_by_name;
	struct cmq_strmap vendor_by_id;
	struct cmq_strmap vendor_by_prefix;
	size_t prefix_lens[CMQ_PREFIX_MAX]; /* distinct vendor prefix lengths, in vendor order */
	size_t n_prefix_lens;
};

struct cmq_policy_files {
	const char *policy;
	const char *vendors;
	const char *operators; /* may be NULL: no operators (the gateway needs none) */
	const char *ca_file;   /* may be NULL in offline tools: pins are then not resolved */
};

/*
 * Load and validate all files. On success returns CMQ_OK and *out (free with
 * cmq_policy_free). On failure returns CMQ_ERR_CONFIG (diag holds every
 * problem found, unreadable files included) or CMQ_ERR_NOMEM, and *out is NULL. Warnings may
 * be present either way.
 */
int cmq_policy_load(const struct cmq_policy_files *files, struct cmq_diag *diag,
                    struct cmq_policy **out);

/*
 * The same, with the vendors document given as text instead of read from files->vendors
 * (problems are still reported under that path): an administrative change is validated as a
 * whole policy before it is written. The stamp hashes these bytes, so it equals the stamp
 * of the file once they are saved.
 */
int cmq_policy_load_vendors_text(const struct cmq_policy_files *files, const char *vendors_text,
                                 size_t vendors_len, struct cmq_diag *diag,
                                 struct cmq_policy **out);

/* cmq_policy_free(NULL) is a no-op. */
void cmq_policy_free(struct cmq_policy *p);

/* Names used in files and logs. */
const char *cmq_class_name(enum cmq_class c);
const char *cmq_tier_name(enum cmq_tier t);
const char *cmq_op_name(enum cmq_op op);
const char *cmq_scrub_kind_name(enum cmq_scrub_kind k);

/* Lookups; borrowed pointers valid while the policy lives. */
const struct cmq_vendor *cmq_policy_vendor_find(const struct cmq_policy *p, const char *id);
const struct cmq_operator *cmq_policy_operator_find(const struct cmq_policy *p,
                                                    const char *username, size_t len);
/* The vendor whose device id prefix starts `device_id`, or NULL. */
const struct cmq_vendor *cmq_policy_vendor_for_device(const struct cmq_policy *p,
                                                      const char *device_id, size_t len);
const struct cmq_role *cmq_policy_role_find(const struct cmq_policy *p, const char *id);

/* Whether a vendor revoked this normalised serial (binary search). */
bool cmq_vendor_is_revoked(const struct cmq_vendor *v, const char *serial);

/*
 * Normalise a certificate serial written as hex, with or without ':' separators
 * and leading zeros, into uppercase hex without leading zeros ("0" for zero).
 * Returns false if s is not hex or too long.
 */
bool cmq_serial_normalise(const char *s, char out[CMQ_SERIAL_HEX_MAX + 1]);

/*
 * Parse a SHA-256 fingerprint: 64 hex digits, optionally separated by ':' in
 * pairs (as `openssl x509 -fingerprint -sha256` prints). Returns false if bad.
 */
bool cmq_fingerprint_parse(const char *s, uint8_t out[32]);
/* Format as colon-separated uppercase hex into buf (>= 96 bytes). */
void cmq_fingerprint_format(const uint8_t fp[32], char *buf, size_t buflen);

#endif
