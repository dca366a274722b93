/*
 * trust.h - who is this client? Connect-time identity decisions and the
 * username -> principal resolution every later decision starts from.
 *
 * Devices present a certificate issued by their vendor's CA. The vendor is
 * found by verifying the certificate's signature against the pinned CA
 * certificates whose subject matches its issuer: a CA that merely copies a
 * vendor CA's name does not verify, and a CA in the listener's bundle that no
 * vendor pins names no vendor. Then: blocked vendor, CN without the vendor's
 * device id prefix, revoked serial, unacceptable CN or client id, and client
 * id != CN are each refused with their own reason. Operators present either a
 * certificate from a pinned operator CA (CN = username) or a username and
 * password (PBKDF2, constant-time; unknown names cost the same as known ones).
 *
 * On success the caller sets the client's username to result.identity; from
 * then on cmq_principal_resolve() recovers the principal from the username
 * alone, so no per-connection state is needed for decisions and a blocked
 * vendor is refused on its next message, connected or not.
 *
 * Thread: the broker's. Cost: connect checks do one signature verification
 * per candidate CA (usually one) or one PBKDF2; resolution is 1 + (number of
 * distinct vendor prefix lengths) hash lookups and allocates nothing.
 */
#ifndef CMQ_TRUST_H
#define CMQ_TRUST_H

#include "decision.h"
#include "policy.h"
#include "topic.h"

#include <openssl/x509.h>

enum cmq_principal_kind { CMQ_PRINCIPAL_NONE, CMQ_PRINCIPAL_DEVICE, CMQ_PRINCIPAL_OPERATOR };

struct cmq_principal {
	enum cmq_principal_kind kind;
	const struct cmq_vendor *vendor; /* devices */
	const struct cmq_operator *op;   /* operators */
	const struct cmq_role *role;     /* sensor for devices */
};

struct cmq_connect_result {
	enum cmq_reason reason;
	struct cmq_principal who;
	char identity[CMQ_ID_MAX + 1];       /* the username to give the client */
	char serial[CMQ_SERIAL_HEX_MAX + 1]; /* certificate serial, normalised ("" for passwords) */
	uint8_t ca_sha256[32];               /* pinned CA that issued the certificate */
	char detail[320];                    /* the specifics for the log line */
};

/*
 * Decide a certificate connection. cert is borrowed; client_id may be NULL.
 * *out is fully reset first. Returns CMQ_ALLOW or CMQ_DENY (reason in *out).
 */
enum cmq_decision cmq_connect_check_cert(const struct cmq_policy *p, X509 *cert,
                                         const char *client_id, struct cmq_connect_result *out);

/* Decide a username/password connection (no certificate). Same conventions. */
enum cmq_decision cmq_connect_check_password(const struct cmq_policy *p, const char *username,
                                             const char *password, const char *client_id,
                                             struct cmq_connect_result *out);

/*
 * Resolve a username set at connect. Returns CMQ_REASON_OK with *out filled,
 * or CMQ_REASON_NO_IDENTITY (out->kind NONE). Allocates nothing.
 */
enum cmq_reason cmq_principal_resolve(const struct cmq_policy *p, const char *username, size_t len,
                                      struct cmq_principal *out);

#endif
