/*
 * passwd.h - operator password hashes: PBKDF2-HMAC-SHA512, salted, checked in
 * constant time.
 *
 * Stored form (one string, PHC style, base64 without padding):
 *     $pbkdf2-sha512$i=<iterations>$<salt>$<hash>
 * e.g. "$pbkdf2-sha512$i=1000$3q2+7w...$Zm9v..." with a 16-byte salt and a
 * 64-byte derived key. The iteration count is stored per hash so it can be
 * raised without invalidating old entries.
 *
 * Cost: a check runs PBKDF2 on the broker's single thread (Mosquitto 2.0 has no
 * deferred authentication), about 0.65 us per iteration on a 2-vCPU VM, so the
 * default of CMQ_PBKDF2_DEFAULT_ITERATIONS keeps a connect under a millisecond.
 * Machine operators (gateway, dashboards) should use long random secrets
 * (civicmq-passwd --generate), for which the iteration count is not what
 * protects them. Unknown usernames are checked against a dummy hash so timing
 * does not reveal which operators exist.
 *
 * Thread: any. Memory: no allocation except inside OpenSSL.
 */
#ifndef CMQ_PASSWD_H
#define CMQ_PASSWD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CMQ_PBKDF2_DEFAULT_ITERATIONS 1000u
#define CMQ_PBKDF2_MIN_ITERATIONS     100u
#define CMQ_PBKDF2_MAX_ITERATIONS     10000000u
#define CMQ_PBKDF2_SALT_LEN           16u
#define CMQ_PBKDF2_SALT_MAX           64u
#define CMQ_PBKDF2_HASH_LEN           64u
/* Longest formatted hash string including the NUL. */
#define CMQ_PASSWD_STR_MAX 256u
/* Longest password accepted (MQTT allows 65535; nobody needs more). */
#define CMQ_PASSWD_MAX_LEN 1024u

struct cmq_pbkdf2 {
	uint32_t iterations;
	size_t salt_len;
	uint8_t salt[CMQ_PBKDF2_SALT_MAX];
	uint8_t hash[CMQ_PBKDF2_HASH_LEN];
};

/*
 * Parse a stored hash string. Returns CMQ_OK, or CMQ_ERR_PARSE with *why (if
 * non-NULL) a static sentence naming the problem and what is valid. *out is
 * zeroed first.
 */
int cmq_passwd_parse(const char *s, struct cmq_pbkdf2 *out, const char **why);

/*
 * Hash a password with a fresh random salt (OpenSSL RAND_bytes). iterations
 * must be within [CMQ_PBKDF2_MIN_ITERATIONS, CMQ_PBKDF2_MAX_ITERATIONS].
 * Returns CMQ_OK, CMQ_ERR_INVAL or CMQ_ERR_CRYPTO. *out is zeroed first.
 */
int cmq_passwd_hash(const char *password, size_t len, uint32_t iterations, struct cmq_pbkdf2 *out);

/* Format into buf (>= CMQ_PASSWD_STR_MAX bytes). Returns CMQ_OK or CMQ_ERR_TOO_BIG. */
int cmq_passwd_format(const struct cmq_pbkdf2 *h, char *buf, size_t buflen);

/*
 * Check a password against a hash in constant time (CRYPTO_memcmp over the
 * whole derived key). A NULL or over-long password is refused after a
 * derivation of the same cost. h == NULL costs one derivation at the default
 * iteration count and returns false.
 */
bool cmq_passwd_verify(const struct cmq_pbkdf2 *h, const char *password, size_t len);

/*
 * Spend what a check at `iterations` costs and discard the result: what an
 * unknown username costs, so timing does not reveal which names exist.
 */
void cmq_passwd_burn(uint32_t iterations, const char *password, size_t len);

/* Fill buf with a random printable secret of len characters plus NUL (len+1 bytes). */
int cmq_passwd_generate(char *buf, size_t len);

#endif
