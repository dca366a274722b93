/*
 * pcache.c - see pcache.h.
 */
#include "pcache.h"

#include "alloc.h"
#include "error.h"

#include <stdint.h>
#include <string.h>

int cmq_pcache_init(struct cmq_pcache *c)
{
	memset(c, 0, sizeof(*c));
	c->slots = cmq_calloc(CMQ_PCACHE_SLOTS, sizeof(*c->slots));
	return c->slots != NULL ? CMQ_OK : CMQ_ERR_NOMEM;
}

void cmq_pcache_cleanup(struct cmq_pcache *c)
{
	cmq_free(c->slots);
	memset(c, 0, sizeof(*c));
}

void cmq_pcache_clear(struct cmq_pcache *c)
{
	if (c->slots != NULL)
		memset(c->slots, 0, CMQ_PCACHE_SLOTS * sizeof(*c->slots));
}

static struct cmq_pcache_slot *slot_of(const struct cmq_pcache *c, const void *client)
{
	uint64_t h = (uint64_t)(uintptr_t)client * 0x9e3779b97f4a7c15u;

	return &c->slots[(h >> 40) & (CMQ_PCACHE_SLOTS - 1)];
}

void cmq_pcache_forget(struct cmq_pcache *c, const void *client)
{
	struct cmq_pcache_slot *s;

	if (c->slots == NULL || client == NULL)
		return;
	s = slot_of(c, client);
	if (s->client == client)
		memset(s, 0, sizeof(*s));
}

/* Whether who is what resolving username would give (see pcache.h for why this suffices). */
static bool still_valid(const struct cmq_principal *who, const char *username, size_t len)
{
	if (who->kind == CMQ_PRINCIPAL_OPERATOR)
		return strlen(who->op->username) == len &&
		       memcmp(who->op->username, username, len) == 0;
	if (who->kind == CMQ_PRINCIPAL_DEVICE)
		return len > who->vendor->prefix_len &&
		       memcmp(username, who->vendor->prefix, who->vendor->prefix_len) == 0;
	return false;
}

enum cmq_reason cmq_pcache_resolve(struct cmq_pcache *c, const struct cmq_policy *p,
                                   const void *client, const char *username, size_t len,
                                   struct cmq_principal *out)
{
	struct cmq_pcache_slot *s;
	enum cmq_reason r;

	if (c->slots == NULL || client == NULL || username == NULL || p == NULL)
		return cmq_principal_resolve(p, username, len, out);
	s = slot_of(c, client);
	if (s->client == client && still_valid(&s->who, username, len)) {
		c->hits++;
		*out = s->who;
		return CMQ_REASON_OK;
	}
	c->misses++;
	r = cmq_principal_resolve(p, username, len, out);
	if (r == CMQ_REASON_OK) {
		s->client = client;
		s->who = *out;
	}
	return r;
}
