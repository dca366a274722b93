/*
 * canary.h - personal data planted in test payloads, remembered, and searched for in
 * everything a subscriber receives: a leak test fails on the first canary that comes
 * out of the gateway in any topic, property or payload byte.
 *
 * A canary set holds unique strings with the kind of data each stands for (MAC address,
 * licence plate, e-mail address, phone number, coordinate, resident id, device id...).
 * Matching is ASCII case-insensitive, so a MAC that comes out upper-cased still counts
 * as leaked. The generators make values that cannot be confused with what the gateway
 * legitimately emits: MACs have colons, plates and ids contain letters beyond 'f' (a
 * pseudonym is lowercase hex), coordinates have 7 decimals (readings in the tests have
 * at most one).
 *
 * Random values come from a xorshift generator with an explicit seed, so a failing run
 * can be repeated exactly (the tests print the seed).
 *
 * Cost: cmq_canary_find is O(len x distinct canary lengths x length) hash probes; a few
 * hundred KB against tens of thousands of canaries takes a fraction of a second.
 * Memory: the set owns copies of its strings. Threads: none; one thread at a time.
 */
#ifndef CMQ_CANARY_H
#define CMQ_CANARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cmq_canary_set;

struct cmq_canary_rng {
	uint64_t s; /* never 0 */
};

/* Seed a generator (seed 0 is replaced by a fixed constant). */
void cmq_canary_seed(struct cmq_canary_rng *r, uint64_t seed);
/* Next 64 random bits; a value in [0, n) (n > 0). */
uint64_t cmq_canary_next(struct cmq_canary_rng *r);
uint32_t cmq_canary_below(struct cmq_canary_rng *r, uint32_t n);

/* A new empty set, or NULL (out of memory). cmq_canary_free(NULL) is a no-op. */
struct cmq_canary_set *cmq_canary_new(void);
void cmq_canary_free(struct cmq_canary_set *set);

/*
 * Remember s (at least 4 bytes, at most 128) as a canary of the given kind (a static
 * string such as "mac"). Adding the same string twice is fine (kept once). Returns 0,
 * or -1 (too short or long, out of memory).
 */
int cmq_canary_add(struct cmq_canary_set *set, const char *s, const char *kind);
/* Number of distinct canaries; those of one kind (kind NULL: all). */
size_t cmq_canary_count(const struct cmq_canary_set *set, const char *kind);

/*
 * The first canary found anywhere in buf[0..len) (case-insensitive), or NULL. *kind (may
 * be NULL) is set to its kind. The result is borrowed from the set.
 */
const char *cmq_canary_find(const struct cmq_canary_set *set, const void *buf, size_t len,
                            const char **kind);

/*
 * Generators: write a fresh value into out (NUL-terminated; n bytes, at least 40), add it
 * to set (unless set is NULL) and return out. Values are unique within one set.
 *   mac    "02:5e:a1:0c:77:3b" (locally administered, lower case)
 *   plate  "KX17 WZP" (UK style: two letters, two digits, space, three letters)
 *   email  "<word>.<n>@<word>.example"
 *   phone  "+44 7700 900123" (Ofcom drama range), varied digits
 *   id     prefix + "-" + 10 letters from g..z (e.g. a meter id "mtr-kqzhwtrmxp")
 * cmq_canary_coord writes a decimal with 7 fractional digits within +-span of centre,
 * e.g. "52.5200081", and stores the number in *value (may be NULL).
 */
const char *cmq_canary_mac(struct cmq_canary_set *set, struct cmq_canary_rng *r, char *out,
                           size_t n);
/* MAC spellings: "02:5e:a1:0c:77:3b", "02-5E-A1-0C-77-3B", "025e.a10c.773b", and
 * "025ea10c773b" (always with a hex letter, so it is not just a number). */
enum cmq_mac_style { CMQ_MAC_COLON, CMQ_MAC_DASH_UPPER, CMQ_MAC_DOTTED, CMQ_MAC_BARE };
const char *cmq_canary_mac_style(struct cmq_canary_set *set, struct cmq_canary_rng *r,
                                 enum cmq_mac_style style, char *out, size_t n);
const char *cmq_canary_plate(struct cmq_canary_set *set, struct cmq_canary_rng *r, char *out,
                             size_t n);
const char *cmq_canary_email(struct cmq_canary_set *set, struct cmq_canary_rng *r, char *out,
                             size_t n);
const char *cmq_canary_phone(struct cmq_canary_set *set, struct cmq_canary_rng *r, char *out,
                             size_t n);
const char *cmq_canary_id(struct cmq_canary_set *set, struct cmq_canary_rng *r, const char *prefix,
                          char *out, size_t n);
const char *cmq_canary_coord(struct cmq_canary_set *set, struct cmq_canary_rng *r, double centre,
                             double span, char *out, size_t n, double *value);

#endif
