/*
 * strmap.c - see strmap.h.
 */
#include "strmap.h"

#include "alloc.h"
#include "error.h"
#include "hash.h"

#include <openssl/rand.h>
#include <string.h>

#define MIN_CAP 8u

uint32_t cmq_strmap_hash(uint32_t seed, const char *key, size_t len)
{
	return cmq_hash(seed, key, len);
}

void cmq_strmap_init(struct cmq_strmap *m)
{
	memset(m, 0, sizeof(*m));
	if (RAND_bytes((unsigned char *)&m->seed, sizeof(m->seed)) != 1)
		m->seed = (uint32_t)(uintptr_t)m;
}

void cmq_strmap_cleanup(struct cmq_strmap *m)
{
	cmq_free(m->slots);
	m->slots = NULL;
	m->cap = 0;
	m->count = 0;
}

static size_t find_slot(const struct cmq_strmap *m, const char *key, size_t len, uint32_t h)
{
	size_t mask = m->cap - 1;
	size_t i = h & mask;

	while (m->slots[i].key != NULL) {
		const struct cmq_strmap_slot *s = &m->slots[i];

		if (s->hash == h && s->key_len == len && memcmp(s->key, key, len) == 0)
			return i;
		i = (i + 1) & mask;
	}
	return i;
}

static int grow(struct cmq_strmap *m)
{
	size_t ncap = m->cap ? m->cap * 2 : MIN_CAP;
	struct cmq_strmap_slot *old = m->slots, *ns;
	size_t ocap = m->cap;

	ns = cmq_calloc(ncap, sizeof(*ns));
	if (ns == NULL)
		return CMQ_ERR_NOMEM;
	m->slots = ns;
	m->cap = ncap;
	for (size_t i = 0; i < ocap; i++) {
		if (old[i].key != NULL)
			m->slots[find_slot(m, old[i].key, old[i].key_len, old[i].hash)] = old[i];
	}
	cmq_free(old);
	return CMQ_OK;
}

static int insert(struct cmq_strmap *m, const char *key, size_t len, void *value, void **existing,
                  int replace)
{
	uint32_t h;
	size_t i;

	if (key == NULL || len > UINT32_MAX)
		return CMQ_ERR_INVAL;
	h = cmq_strmap_hash(m->seed, key, len);
	if (m->cap != 0) {
		i = find_slot(m, key, len, h);
		if (m->slots[i].key != NULL) {
			if (existing)
				*existing = m->slots[i].value;
			if (!replace)
				return CMQ_ERR_EXISTS;
			m->slots[i].key = key;
			m->slots[i].value = value;
			return CMQ_OK;
		}
	}
	if ((m->count + 1) * 2 > m->cap && grow(m) != CMQ_OK)
		return CMQ_ERR_NOMEM;
	i = find_slot(m, key, len, h);
	m->slots[i].key = key;
	m->slots[i].key_len = (uint32_t)len;
	m->slots[i].hash = h;
	m->slots[i].value = value;
	m->count++;
	return CMQ_OK;
}

int cmq_strmap_put(struct cmq_strmap *m, const char *key, size_t len, void *value, void **existing)
{
	return insert(m, key, len, value, existing, 0);
}

int cmq_strmap_set(struct cmq_strmap *m, const char *key, size_t len, void *value)
{
	return insert(m, key, len, value, NULL, 1);
}

void *cmq_strmap_get(const struct cmq_strmap *m, const char *key, size_t len)
{
	size_t i;

	if (m->cap == 0 || key == NULL)
		return NULL;
	i = find_slot(m, key, len, cmq_strmap_hash(m->seed, key, len));
	return m->slots[i].key ? m->slots[i].value : NULL;
}

void *cmq_strmap_del(struct cmq_strmap *m, const char *key, size_t len)
{
	size_t mask, i, j;
	void *value;

	if (m->cap == 0 || key == NULL)
		return NULL;
	mask = m->cap - 1;
	i = find_slot(m, key, len, cmq_strmap_hash(m->seed, key, len));
	if (m->slots[i].key == NULL)
		return NULL;
	value = m->slots[i].value;
	/* Backward-shift: move later entries of the same probe run into the hole. */
	j = i;
	for (;;) {
		size_t home;

		j = (j + 1) & mask;
		if (m->slots[j].key == NULL)
			break;
		home = m->slots[j].hash & mask;
		/* Entry j may fill hole i only if its home is not cyclically in (i, j]. */
		if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	m->slots[i].key = NULL;
	m->slots[i].value = NULL;
	m->count--;
	return value;
}
