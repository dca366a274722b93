/*
 * session.c - see session.h.
 */
#include "session.h"

#include "alloc.h"
#include "error.h"

#include <string.h>

void cmq_sessions_init(struct cmq_sessions *s)
{
	cmq_strmap_init(&s->by_id);
	s->count = 0;
}

static void entry_free(struct cmq_session *e)
{
	if (e == NULL)
		return;
	cmq_free(e->client_id);
	cmq_free(e->username);
	cmq_free(e->vendor_id);
	cmq_free(e);
}

void cmq_sessions_cleanup(struct cmq_sessions *s)
{
	for (size_t i = 0; i < s->by_id.cap; i++)
		entry_free(s->by_id.slots[i].value);
	cmq_strmap_cleanup(&s->by_id);
	s->count = 0;
}

int cmq_sessions_put(struct cmq_sessions *s, const void *client, const char *client_id,
                     const struct cmq_connect_result *r, bool by_cert)
{
	struct cmq_session *e, *old;

	if (client_id == NULL)
		return CMQ_ERR_INVAL;
	e = cmq_calloc(1, sizeof(*e));
	if (e == NULL)
		return CMQ_ERR_NOMEM;
	e->client = client;
	e->client_id = cmq_strdup(client_id);
	e->username = cmq_strdup(r->identity);
	e->kind = r->who.kind;
	e->by_cert = by_cert;
	if (r->who.vendor != NULL)
		e->vendor_id = cmq_strdup(r->who.vendor->id);
	memcpy(e->serial, r->serial, sizeof(e->serial));
	memcpy(e->ca_sha256, r->ca_sha256, sizeof(e->ca_sha256));
	if (r->who.op != NULL)
		memcpy(e->cred_digest, r->who.op->cred_digest, sizeof(e->cred_digest));
	if (e->client_id == NULL || e->username == NULL ||
	    (r->who.vendor != NULL && e->vendor_id == NULL)) {
		entry_free(e);
		return CMQ_ERR_NOMEM;
	}
	old = cmq_strmap_get(&s->by_id, client_id, strlen(client_id));
	if (cmq_strmap_set(&s->by_id, e->client_id, strlen(e->client_id), e) != CMQ_OK) {
		entry_free(e);
		return CMQ_ERR_NOMEM;
	}
	if (old != NULL)
		entry_free(old);
	else
		s->count++;
	return CMQ_OK;
}

void cmq_sessions_remove(struct cmq_sessions *s, const void *client, const char *client_id)
{
	struct cmq_session *e;

	if (client_id == NULL)
		return;
	e = cmq_strmap_get(&s->by_id, client_id, strlen(client_id));
	if (e == NULL || e->client != client)
		return;
	cmq_strmap_del(&s->by_id, client_id, strlen(client_id));
	entry_free(e);
	s->count--;
}

const struct cmq_session *cmq_sessions_find(const struct cmq_sessions *s, const char *client_id)
{
	return client_id ? cmq_strmap_get(&s->by_id, client_id, strlen(client_id)) : NULL;
}

static bool pinned(const struct cmq_policy *p, const uint8_t fp[32], enum cmq_ca_owner owner,
                   const struct cmq_vendor *v)
{
	for (size_t i = 0; i < p->n_cas; i++) {
		if (memcmp(p->cas[i].sha256, fp, 32) != 0 || p->cas[i].owner != owner)
			continue;
		if (owner == CMQ_CA_OPERATOR || &p->vendors[p->cas[i].vendor] == v)
			return true;
	}
	return false;
}

enum cmq_reason cmq_session_check(const struct cmq_policy *p, const struct cmq_session *e)
{
	if (p == NULL)
		return CMQ_REASON_NO_POLICY;
	if (e->kind == CMQ_PRINCIPAL_DEVICE) {
		const struct cmq_vendor *v = cmq_policy_vendor_find(p, e->vendor_id);

		if (v == NULL ||
		    cmq_policy_vendor_for_device(p, e->username, strlen(e->username)) != v)
			return CMQ_REASON_NO_IDENTITY;
		if (v->tier == CMQ_TIER_BLOCKED)
			return CMQ_REASON_VENDOR_BLOCKED;
		if (!pinned(p, e->ca_sha256, CMQ_CA_VENDOR, v))
			return CMQ_REASON_CERT_ISSUER_UNKNOWN;
		if (cmq_vendor_is_revoked(v, e->serial))
			return CMQ_REASON_SERIAL_REVOKED;
		return CMQ_REASON_OK;
	}
	if (e->kind == CMQ_PRINCIPAL_OPERATOR) {
		const struct cmq_operator *op =
		    cmq_policy_operator_find(p, e->username, strlen(e->username));

		if (op == NULL)
			return CMQ_REASON_UNKNOWN_OPERATOR;
		if (memcmp(op->cred_digest, e->cred_digest, 32) != 0)
			return CMQ_REASON_CREDENTIALS_CHANGED;
		if (e->by_cert && !pinned(p, e->ca_sha256, CMQ_CA_OPERATOR, NULL))
			return CMQ_REASON_CERT_ISSUER_UNKNOWN;
		return CMQ_REASON_OK;
	}
	return CMQ_REASON_NO_IDENTITY;
}

enum cmq_decision cmq_session_recheck(const struct cmq_policy *p, const struct cmq_sessions *s,
                                      const void *client, const char *client_id,
                                      const char *username, enum cmq_reason *why)
{
	const struct cmq_session *e = cmq_sessions_find(s, client_id);
	struct cmq_principal who;

	if (e != NULL && e->client == client) {
		*why = cmq_session_check(p, e);
	} else if (username == NULL) {
		*why = CMQ_REASON_NO_IDENTITY;
	} else {
		*why = cmq_principal_resolve(p, username, strlen(username), &who);
		if (*why == CMQ_REASON_OK && who.kind == CMQ_PRINCIPAL_DEVICE &&
		    who.vendor->tier == CMQ_TIER_BLOCKED)
			*why = CMQ_REASON_VENDOR_BLOCKED;
	}
	return *why == CMQ_REASON_OK ? CMQ_ALLOW : CMQ_DENY;
}

void cmq_sessions_each(const struct cmq_sessions *s,
                       void (*fn)(const struct cmq_session *e, void *ud), void *ud)
{
	for (size_t i = 0; i < s->by_id.cap; i++) {
		if (s->by_id.slots[i].key != NULL && s->by_id.slots[i].value != NULL)
			fn(s->by_id.slots[i].value, ud);
	}
}

void cmq_sessions_revalidate(const struct cmq_sessions *s, const struct cmq_policy *p,
                             void (*fn)(const struct cmq_session *e, enum cmq_reason why, void *ud),
                             void *ud)
{
	for (size_t i = 0; i < s->by_id.cap; i++) {
		const struct cmq_session *e = s->by_id.slots[i].value;
		enum cmq_reason why;

		if (s->by_id.slots[i].key == NULL || e == NULL)
			continue;
		why = cmq_session_check(p, e);
		if (why != CMQ_REASON_OK)
			fn(e, why, ud);
	}
}
