/*
 * canary.c - planted personal data and the search for it (see canary.h).
 *
 * The set is an open-addressing hash table of lower-cased strings (FNV-1a), grown at
 * half load, plus the list of distinct lengths: a search hashes every window of each
 * such length in the haystack and probes the table.
 */
#include "canary.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CANARY_MIN      4
#define CANARY_MAX      128
#define MAX_LENGTHS     (CANARY_MAX + 1)
#define GEN_TRIES       1000
#define INITIAL_BUCKETS 1024

struct canary {
	char *s; /* lower-cased */
	size_t len;
	const char *kind;
	uint64_t hash;
};

struct cmq_canary_set {
	struct canary *slots; /* s == NULL: empty */
	size_t nslots, n;
	bool has_len[MAX_LENGTHS];
};

static unsigned char lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static uint64_t hash_lower(const unsigned char *p, size_t len)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < len; i++) {
		h ^= lower(p[i]);
		h *= 1099511628211ull;
	}
	return h;
}

static bool eq_lower(const char *canary, const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)canary[i] != lower(p[i]))
			return false;
	}
	return true;
}

void cmq_canary_seed(struct cmq_canary_rng *r, uint64_t seed)
{
	r->s = seed != 0 ? seed : 0x9e3779b97f4a7c15ull;
}

uint64_t cmq_canary_next(struct cmq_canary_rng *r)
{
	uint64_t x = r->s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	r->s = x;
	return x * 0x2545f4914f6cdd1dull;
}

uint32_t cmq_canary_below(struct cmq_canary_rng *r, uint32_t n)
{
	return n == 0 ? 0 : (uint32_t)(cmq_canary_next(r) % n);
}

struct cmq_canary_set *cmq_canary_new(void)
{
	struct cmq_canary_set *set = calloc(1, sizeof(*set));

	if (set == NULL)
		return NULL;
	set->slots = calloc(INITIAL_BUCKETS, sizeof(*set->slots));
	if (set->slots == NULL) {
		free(set);
		return NULL;
	}
	set->nslots = INITIAL_BUCKETS;
	return set;
}

void cmq_canary_free(struct cmq_canary_set *set)
{
	if (set == NULL)
		return;
	for (size_t i = 0; i < set->nslots; i++)
		free(set->slots[i].s);
	free(set->slots);
	free(set);
}

static struct canary *lookup(const struct cmq_canary_set *set, const unsigned char *p, size_t len,
                             uint64_t h)
{
	size_t mask = set->nslots - 1;

	for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
		struct canary *c = &set->slots[i];

		if (c->s == NULL)
			return c;
		if (c->hash == h && c->len == len && eq_lower(c->s, p, len))
			return c;
	}
}

static int grow(struct cmq_canary_set *set)
{
	struct canary *old = set->slots;
	size_t nold = set->nslots;

	set->slots = calloc(nold * 2, sizeof(*set->slots));
	if (set->slots == NULL) {
		set->slots = old;
		return -1;
	}
	set->nslots = nold * 2;
	for (size_t i = 0; i < nold; i++) {
		if (old[i].s != NULL)
			*lookup(set, (const unsigned char *)old[i].s, old[i].len, old[i].hash) =
			    old[i];
	}
	free(old);
	return 0;
}

static bool contains(const struct cmq_canary_set *set, const char *s)
{
	size_t len = strlen(s);

	return lookup(set, (const unsigned char *)s, len, hash_lower((const unsigned char *)s, len))
	           ->s != NULL;
}

int cmq_canary_add(struct cmq_canary_set *set, const char *s, const char *kind)
{
	size_t len;
	uint64_t h;
	struct canary *slot;

	if (set == NULL || s == NULL)
		return -1;
	len = strlen(s);
	if (len < CANARY_MIN || len > CANARY_MAX)
		return -1;
	if (2 * (set->n + 1) > set->nslots && grow(set) != 0)
		return -1;
	h = hash_lower((const unsigned char *)s, len);
	slot = lookup(set, (const unsigned char *)s, len, h);
	if (slot->s != NULL)
		return 0;
	slot->s = malloc(len + 1);
	if (slot->s == NULL)
		return -1;
	for (size_t i = 0; i < len; i++)
		slot->s[i] = (char)lower((unsigned char)s[i]);
	slot->s[len] = '\0';
	slot->len = len;
	slot->kind = kind;
	slot->hash = h;
	set->n++;
	set->has_len[len] = true;
	return 0;
}

size_t cmq_canary_count(const struct cmq_canary_set *set, const char *kind)
{
	size_t n = 0;

	if (set == NULL)
		return 0;
	if (kind == NULL)
		return set->n;
	for (size_t i = 0; i < set->nslots; i++) {
		if (set->slots[i].s != NULL && set->slots[i].kind != NULL &&
		    strcmp(set->slots[i].kind, kind) == 0)
			n++;
	}
	return n;
}

const char *cmq_canary_find(const struct cmq_canary_set *set, const void *buf, size_t len,
                            const char **kind)
{
	const unsigned char *p = buf;

	if (kind != NULL)
		*kind = NULL;
	if (set == NULL || buf == NULL)
		return NULL;
	for (size_t l = CANARY_MIN; l < MAX_LENGTHS && l <= len; l++) {
		if (!set->has_len[l])
			continue;
		for (size_t i = 0; i + l <= len; i++) {
			struct canary *c = lookup(set, p + i, l, hash_lower(p + i, l));

			if (c->s != NULL) {
				if (kind != NULL)
					*kind = c->kind;
				return c->s;
			}
		}
	}
	return NULL;
}

/* Keep generating until the value is new to the set (bounded). */
#define GENERATE(set, out, n, kind, make)                                                          \
	do {                                                                                       \
		for (int try_ = 0; try_ < GEN_TRIES; try_++) {                                     \
			make;                                                                      \
			if ((set) == NULL || !contains((set), (out)))                              \
				break;                                                             \
		}                                                                                  \
		if ((set) != NULL && cmq_canary_add((set), (out), (kind)) != 0)                    \
			fprintf(stderr, "canary: cannot remember %s\n", (out));                    \
	} while (0)

static char letter(struct cmq_canary_rng *r, char from, char to)
{
	return (char)(from + (char)cmq_canary_below(r, (uint32_t)(to - from + 1)));
}

const char *cmq_canary_mac(struct cmq_canary_set *set, struct cmq_canary_rng *r, char *out,
                           size_t n)
{
	return cmq_canary_mac_style(set, r, CMQ_MAC_COLON, out, n);
}

static void format_mac(enum cmq_mac_style style, uint64_t v, char *out, size_t n)
{
	unsigned b[6];

	b[0] = 0x02; /* locally administered: never a real vendor's */
	for (int i = 1; i < 6; i++)
		b[i] = (unsigned)((v >> (8 * (i - 1))) & 0xff);
	/* Bare twelve digits need a letter to be a MAC rather than a number. */
	if (style == CMQ_MAC_BARE && (b[5] & 0x0f) < 10)
		b[5] = (b[5] & 0xf0) | 0x0c;
	switch (style) {
	case CMQ_MAC_DASH_UPPER:
		snprintf(out, n, "%02X-%02X-%02X-%02X-%02X-%02X", b[0], b[1], b[2], b[3], b[4],
		         b[5]);
		break;
	case CMQ_MAC_DOTTED:
		snprintf(out, n, "%02x%02x.%02x%02x.%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
		break;
	case CMQ_MAC_BARE:
		snprintf(out, n, "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
		break;
	default:
		snprintf(out, n, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4],
		         b[5]);
		break;
	}
}

const char *cmq_canary_mac_style(struct cmq_canary_set *set, struct cmq_canary_rng *r,
                                 enum cmq_mac_style style, char *out, size_t n)
{
	GENERATE(set, out, n, "mac", format_mac(style, cmq_canary_next(r), out, n));
	return out;
}

const char *cmq_canary_plate(struct cmq_canary_set *set, struct cmq_canary_rng *r, char *out,
                             size_t n)
{
	GENERATE(set, out, n, "plate", {
		/* The last letter is beyond F, so no plate can be read as hex. */
		snprintf(out, n, "%c%c%u%u %c%c%c", letter(r, 'A', 'Z'), letter(r, 'A', 'Z'),
		         cmq_canary_below(r, 10), cmq_canary_below(r, 10), letter(r, 'A', 'Z'),
		         letter(r, 'A', 'Z'), letter(r, 'G', 'Z'));
	});
	return out;
}

const char *cmq_canary_email(struct cmq_canary_set *set, struct cmq_canary_rng *r, char *out,
                             size_t n)
{
	static const char *const users[] = {"anna", "bert", "chloe", "dmitri", "emre", "fatou"};
	static const char *const hosts[] = {"mailbox", "post", "inbox", "letters"};

	GENERATE(set, out, n, "email", {
		snprintf(out, n, "%s.%u@%s.example", users[cmq_canary_below(r, 6)],
		         cmq_canary_below(r, 1000000), hosts[cmq_canary_below(r, 4)]);
	});
	return out;
}

const char *cmq_canary_phone(struct cmq_canary_set *set, struct cmq_canary_rng *r, char *out,
                             size_t n)
{
	GENERATE(set, out, n, "phone",
	         { snprintf(out, n, "+44 7700 %06u", cmq_canary_below(r, 1000000)); });
	return out;
}

const char *cmq_canary_id(struct cmq_canary_set *set, struct cmq_canary_rng *r, const char *prefix,
                          char *out, size_t n)
{
	GENERATE(set, out, n, "id", {
		char tail[11];

		for (int i = 0; i < 10; i++)
			tail[i] = letter(r, 'g', 'z');
		tail[10] = '\0';
		snprintf(out, n, "%s-%s", prefix, tail);
	});
	return out;
}

const char *cmq_canary_coord(struct cmq_canary_set *set, struct cmq_canary_rng *r, double centre,
                             double span, char *out, size_t n, double *value)
{
	double v = centre;

	GENERATE(set, out, n, "coordinate", {
		/* Seven decimals; the payload carries exactly this text. */
		long steps =
		    (long)cmq_canary_below(r, (uint32_t)(2 * span * 1e6)) - (long)(span * 1e6);

		v = centre + (double)steps * 1e-6 + (double)(1 + cmq_canary_below(r, 9)) * 1e-7;
		snprintf(out, n, "%.7f", v);
		v = strtod(out, NULL);
	});
	if (value != NULL)
		*value = v;
	return out;
}
