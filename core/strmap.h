/*
 * strmap.h - a string-keyed hash map (open addressing, linear probing,
 * backward-shift deletion, no tombstones).
 *
 * Keys are borrowed (pointer + length): the caller keeps each key alive while
 * it is in the map, normally because the key lives inside the value. Lookups
 * allocate nothing and cost O(1) expected probes; the table stays at most 50 %
 * full. The hash (hash.h) is keyed with a per-map random seed so that a client
 * choosing many colliding identities cannot predict the probe sequence.
 *
 * Thread: not thread-safe; readers may share a map nobody modifies.
 */
#ifndef CMQ_STRMAP_H
#define CMQ_STRMAP_H

#include <stddef.h>
#include <stdint.h>

struct cmq_strmap_slot {
	const char *key; /* NULL = empty slot */
	uint32_t key_len;
	uint32_t hash;
	void *value;
};

struct cmq_strmap {
	struct cmq_strmap_slot *slots;
	size_t cap; /* power of two, or 0 before the first insert */
	size_t count;
	uint32_t seed;
};

/* An empty map; allocates nothing until the first insert. */
void cmq_strmap_init(struct cmq_strmap *m);
/* Frees the table (not keys or values). */
void cmq_strmap_cleanup(struct cmq_strmap *m);

/*
 * Insert key -> value. Returns CMQ_OK, CMQ_ERR_EXISTS (map unchanged; if
 * existing != NULL it receives the present value) or CMQ_ERR_NOMEM (unchanged).
 */
int cmq_strmap_put(struct cmq_strmap *m, const char *key, size_t len, void *value, void **existing);

/* Replace or insert. Returns CMQ_OK or CMQ_ERR_NOMEM (unchanged). */
int cmq_strmap_set(struct cmq_strmap *m, const char *key, size_t len, void *value);

/* Value for key, or NULL. */
void *cmq_strmap_get(const struct cmq_strmap *m, const char *key, size_t len);

/* Remove key; returns its value or NULL if absent. */
void *cmq_strmap_del(struct cmq_strmap *m, const char *key, size_t len);

/* The map's hash of key under seed (hash.h); exposed for tests. */
uint32_t cmq_strmap_hash(uint32_t seed, const char *key, size_t len);

#endif
