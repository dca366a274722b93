/*
 * hash.h - the byte-string hash of the trie's literal tables and of strmap.
 *
 * Eight bytes per multiply, then a final avalanche (splitmix64's finaliser) so that the
 * low bits used as table indexes depend on every input byte. seed lets a table key its
 * hash (strmap seeds each map randomly; the trie uses 0: its tables hold operator-written
 * patterns, and a topic costs at most one table's probes per level). Not cryptographic.
 *
 * Thread: any. Cost: about len/8 multiplies; no allocation.
 */
#ifndef CMQ_HASH_H
#define CMQ_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t cmq_hash(uint64_t seed, const char *s, size_t len)
{
	uint64_t h = (0x9e3779b97f4a7c15u ^ seed) ^ len;
	uint64_t w;

	while (len >= 8) {
		memcpy(&w, s, 8);
		h = (h ^ w) * 0xbf58476d1ce4e5b9u;
		h ^= h >> 31;
		s += 8;
		len -= 8;
	}
	if (len > 0) {
		w = 0;
		for (size_t i = 0; i < len; i++)
			w |= (uint64_t)(unsigned char)s[i] << (8 * i);
		h = (h ^ w) * 0xbf58476d1ce4e5b9u;
	}
	h ^= h >> 29;
	h *= 0x94d049bb133111ebu;
	h ^= h >> 32;
	return (uint32_t)h;
}

#endif
