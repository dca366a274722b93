/*
 * pseudo.h - keyed, rotating pseudonyms: HMAC-SHA256 under a per-epoch key.
 *
 * The key file holds a 256-bit master secret as 64 hex digits (whitespace around it
 * allowed); it must be a regular file not readable by group or others (refused
 * otherwise, as ssh refuses loose private keys). Time is cut into epochs of
 * epoch_seconds (default one day); epoch n's key is
 *     K_n = HMAC-SHA256(master, "civicmq-pseudonym-epoch/" + decimal(n))
 * and the pseudonym of value v in domain d (the gateway passes the profile id and
 * the op's path) is the first 16 bytes, as 32 lowercase hex digits, of
 *     HMAC-SHA256(K_n, d || 0x00 || v).
 * So pseudonyms are stable within an epoch and unlinkable across epochs and across
 * domains for anyone without the master key; replacing the key file (SIGHUP) also
 * makes them unlinkable for whoever held the old key once it is destroyed.
 *
 * Cost: the epoch key is derived once per epoch and kept pre-keyed in an EVP_MAC
 * context that each call re-initialises from its saved pads (EVP_MAC_init with no
 * key: ~0.2 us per pseudonym on OpenSSL 3.0, against ~0.5 us for EVP_MAC_CTX_dup and
 * ~0.95 us for re-keying), never re-keyed per call.
 * Thread: not thread-safe (the epoch context is cached); serialise calls.
 * Memory: secrets are cleansed (OPENSSL_cleanse) when freed.
 */
#ifndef CMQ_PSEUDO_H
#define CMQ_PSEUDO_H

#include "diag.h"

#include <stddef.h>
#include <stdint.h>

#define CMQ_PSEUDO_HEX           32 /* characters in a pseudonym */
#define CMQ_PSEUDO_DEFAULT_EPOCH 86400u

struct cmq_pseudo;

/*
 * Load key_file. Returns CMQ_OK and *out, or CMQ_ERR_IO / CMQ_ERR_CONFIG (a diagnostic
 * naming the file and what is wrong: missing, mode, not 64 hex digits) / CMQ_ERR_NOMEM,
 * with *out NULL. epoch_seconds must be >= 1 (CMQ_ERR_INVAL otherwise).
 */
int cmq_pseudo_load(const char *key_file, uint32_t epoch_seconds, struct cmq_diag *diag,
                    struct cmq_pseudo **out);
/* The same from a 32-byte secret in memory (tests, benchmarks). */
int cmq_pseudo_new(const uint8_t secret[32], uint32_t epoch_seconds, struct cmq_pseudo **out);
/* cmq_pseudo_free(NULL) is a no-op. */
void cmq_pseudo_free(struct cmq_pseudo *ps);

/* The epoch that Unix time now falls in (floor(now / epoch_seconds); 0 before 1970). */
uint64_t cmq_pseudo_epoch(const struct cmq_pseudo *ps, int64_t now);
uint32_t cmq_pseudo_epoch_seconds(const struct cmq_pseudo *ps);

/*
 * Pseudonym of value[0..vlen) in domain[0..dlen) at time now into out (33 bytes:
 * 32 hex + NUL). Returns CMQ_OK or CMQ_ERR_CRYPTO / CMQ_ERR_NOMEM (out is then "").
 */
int cmq_pseudo_compute(struct cmq_pseudo *ps, int64_t now, const char *domain, size_t dlen,
                       const char *value, size_t vlen, char out[CMQ_PSEUDO_HEX + 1]);

#endif
