/*
 * session.h - the connected clients civicmq admitted, kept only so that a
 * policy change can reach them: after a reload (or, later, an admin change)
 * cmq_sessions_revalidate() lists the clients the new policy would no longer
 * admit - blocked or removed vendor, unpinned CA, revoked serial, removed
 * operator, changed role or credentials - and the plugin disconnects them.
 *
 * Decisions never read this table (they resolve the username, trust.h), so a
 * missing entry can never grant anything; it can only delay a kick, and the
 * next message of such a client is denied anyway.
 *
 * Keys are client ids. A takeover (same client id connecting again) replaces
 * the entry; removal passes the broker's client pointer and is ignored if the
 * entry already belongs to a newer connection.
 *
 * Memory: alloc.h. Thread: the broker's. Cost: O(1) per connect/disconnect,
 * O(sessions) per revalidation.
 */
#ifndef CMQ_SESSION_H
#define CMQ_SESSION_H

#include "trust.h"

struct cmq_session {
	const void *client; /* the broker's client object; compared, never dereferenced */
	char *client_id;
	char *username;
	enum cmq_principal_kind kind;
	char *vendor_id; /* devices */
	char serial[CMQ_SERIAL_HEX_MAX + 1];
	bool by_cert;
	uint8_t ca_sha256[32];   /* certificate clients */
	uint8_t cred_digest[32]; /* operators */
};

struct cmq_sessions {
	struct cmq_strmap by_id;
	size_t count;
};

void cmq_sessions_init(struct cmq_sessions *s);
void cmq_sessions_cleanup(struct cmq_sessions *s);

/*
 * Record an admitted client (r from a CMQ_ALLOW connect check). Replaces any
 * entry with the same client id. Returns CMQ_OK or CMQ_ERR_NOMEM (table
 * unchanged; the caller should refuse the connection: fail closed).
 */
int cmq_sessions_put(struct cmq_sessions *s, const void *client, const char *client_id,
                     const struct cmq_connect_result *r, bool by_cert);

/* Forget client_id if its entry belongs to client. */
void cmq_sessions_remove(struct cmq_sessions *s, const void *client, const char *client_id);

/* Entry for client_id or NULL (borrowed). */
const struct cmq_session *cmq_sessions_find(const struct cmq_sessions *s, const char *client_id);

/* Why policy p would refuse this session now, or CMQ_REASON_OK. */
enum cmq_reason cmq_session_check(const struct cmq_policy *p, const struct cmq_session *e);

/*
 * Mosquitto 2.0.11 re-runs authentication at every reload for every client it knows -
 * connected ones, and offline persistent sessions, which no longer present a certificate
 * or, often, any credential. This decides such a re-check by the policy instead: a client
 * in the table (connected, same client object) by cmq_session_check; anyone else (an
 * offline session) by whether its username still names an admissible principal - a known
 * operator, or a device of a vendor that is not blocked. Returns CMQ_ALLOW, or CMQ_DENY
 * with *why set. It must only ever be used for re-checks: it asks for no credentials.
 */
enum cmq_decision cmq_session_recheck(const struct cmq_policy *p, const struct cmq_sessions *s,
                                      const void *client, const char *client_id,
                                      const char *username, enum cmq_reason *why);

/* Call fn for every session (connected clients), in no particular order. */
void cmq_sessions_each(const struct cmq_sessions *s,
                       void (*fn)(const struct cmq_session *e, void *ud), void *ud);

/*
 * Call fn for every session p would refuse now, with the reason. fn must not
 * modify s (collect ids, then kick after this returns).
 */
void cmq_sessions_revalidate(const struct cmq_sessions *s, const struct cmq_policy *p,
                             void (*fn)(const struct cmq_session *e, enum cmq_reason why, void *ud),
                             void *ud);

#endif
