/*
 * pcache.h - a small cache of who each connected client is, so that the
 * broker's per-message checks (WRITE, MESSAGE, READ per subscriber) do not
 * resolve the same username to the same principal over and over.
 *
 * Slots are indexed by the broker's client object and hold the principal last
 * resolved for it. A slot is trusted only after checking it against the
 * username being asked about, with a test exactly as strong as resolving
 * afresh: an operator principal requires the username to equal the
 * operator's name; a device principal requires the username to extend its
 * vendor's device id prefix, which - prefixes being prefix-free and operator
 * names never starting with one (policy.h) - names that vendor and nothing
 * else. So a reused client address or a changed username can never yield a
 * stale principal. Principals point into one policy: the cache must be
 * cleared whenever the policy is replaced.
 *
 * Memory: a fixed table allocated once (alloc.h); lookups allocate nothing.
 * Thread: the broker's.
 */
#ifndef CMQ_PCACHE_H
#define CMQ_PCACHE_H

#include "trust.h"

#define CMQ_PCACHE_SLOTS 4096 /* power of two */

struct cmq_pcache_slot {
	const void *client; /* NULL: empty */
	struct cmq_principal who;
};

struct cmq_pcache {
	struct cmq_pcache_slot *slots; /* CMQ_PCACHE_SLOTS of them */
	unsigned long hits, misses;
};

/* Allocate the table. Returns CMQ_OK or CMQ_ERR_NOMEM (then the cache is inert: it
 * resolves every time, still correctly). */
int cmq_pcache_init(struct cmq_pcache *c);
void cmq_pcache_cleanup(struct cmq_pcache *c);
/* Forget everything (call when the policy is replaced). */
void cmq_pcache_clear(struct cmq_pcache *c);
/* Forget one client (call when it disconnects). */
void cmq_pcache_forget(struct cmq_pcache *c, const void *client);

/*
 * Resolve username (length len) for client as cmq_principal_resolve(p, ...) would, using
 * and refreshing the cache. Same return values.
 */
enum cmq_reason cmq_pcache_resolve(struct cmq_pcache *c, const struct cmq_policy *p,
                                   const void *client, const char *username, size_t len,
                                   struct cmq_principal *out);

#endif
