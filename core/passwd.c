/*
 * passwd.c - PBKDF2-SHA512 operator password hashes (see passwd.h).
 *
 * Base64 here is the standard alphabet without padding, encoded and decoded by
 * hand so that parsing rejects every malformed string explicitly instead of
 * relying on EVP_DecodeBlock's lenient padding rules.
 */
#include "passwd.h"

#include "error.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "$pbkdf2-sha512$i="

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(char c)
{
	const char *p;

	if (c == '\0')
		return -1;
	p = strchr(b64_alphabet, c);
	return p ? (int)(p - b64_alphabet) : -1;
}

/* Encode without padding; returns chars written (excluding NUL) or 0 if out is too small. */
static size_t b64_encode(const uint8_t *in, size_t len, char *out, size_t outlen)
{
	size_t need = (len * 4 + 2) / 3;
	size_t o = 0;

	if (outlen < need + 1)
		return 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		size_t n = len - i;

		if (n > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (n > 2)
			v |= in[i + 2];
		out[o++] = b64_alphabet[(v >> 18) & 63];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		if (n > 1)
			out[o++] = b64_alphabet[(v >> 6) & 63];
		if (n > 2)
			out[o++] = b64_alphabet[v & 63];
	}
	out[o] = '\0';
	return o;
}

/* Decode unpadded base64 of exactly len chars; returns bytes or -1 if malformed or too long. */
static long b64_decode(const char *in, size_t len, uint8_t *out, size_t outmax)
{
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;

	if (len % 4 == 1)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int v = b64_value(in[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= outmax)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* Leftover bits must be zero, or the encoding was not canonical. */
	if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
		return -1;
	return (long)o;
}

int cmq_passwd_parse(const char *s, struct cmq_pbkdf2 *out, const char **why)
{
	const char *p, *salt, *hash, *end;
	char *num_end;
	unsigned long iter;
	long n;

	memset(out, 0, sizeof(*out));
	if (s == NULL || strncmp(s, PREFIX, strlen(PREFIX)) != 0) {
		if (why)
			*why =
			    "must start with \"$pbkdf2-sha512$i=\" (make one with civicmq-passwd)";
		return CMQ_ERR_PARSE;
	}
	p = s + strlen(PREFIX);
	if (*p < '1' || *p > '9') {
		if (why)
			*why = "iteration count must be a decimal number without leading zeros";
		return CMQ_ERR_PARSE;
	}
	iter = strtoul(p, &num_end, 10);
	if (*num_end != '$' || iter < CMQ_PBKDF2_MIN_ITERATIONS ||
	    iter > CMQ_PBKDF2_MAX_ITERATIONS) {
		if (why)
			*why = "iteration count must be between 100 and 10000000";
		return CMQ_ERR_PARSE;
	}
	salt = num_end + 1;
	hash = strchr(salt, '$');
	if (hash == NULL) {
		if (why)
			*why = "missing '$' between salt and hash";
		return CMQ_ERR_PARSE;
	}
	n = b64_decode(salt, (size_t)(hash - salt), out->salt, sizeof(out->salt));
	if (n < 8) {
		if (why)
			*why = "salt must be 8 to 64 bytes of unpadded base64";
		memset(out, 0, sizeof(*out));
		return CMQ_ERR_PARSE;
	}
	out->salt_len = (size_t)n;
	hash++;
	end = hash + strlen(hash);
	n = b64_decode(hash, (size_t)(end - hash), out->hash, sizeof(out->hash));
	if (n != (long)CMQ_PBKDF2_HASH_LEN) {
		if (why)
			*why = "hash must be 64 bytes (86 characters) of unpadded base64";
		memset(out, 0, sizeof(*out));
		return CMQ_ERR_PARSE;
	}
	out->iterations = (uint32_t)iter;
	return CMQ_OK;
}

static int derive(const char *password, size_t len, const uint8_t *salt, size_t salt_len,
                  uint32_t iterations, uint8_t key[CMQ_PBKDF2_HASH_LEN])
{
	if (len > CMQ_PASSWD_MAX_LEN)
		return CMQ_ERR_INVAL;
	if (PKCS5_PBKDF2_HMAC(password ? password : "", (int)len, salt, (int)salt_len,
	                      (int)iterations, EVP_sha512(), (int)CMQ_PBKDF2_HASH_LEN, key) != 1)
		return CMQ_ERR_CRYPTO;
	return CMQ_OK;
}

int cmq_passwd_hash(const char *password, size_t len, uint32_t iterations, struct cmq_pbkdf2 *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (iterations < CMQ_PBKDF2_MIN_ITERATIONS || iterations > CMQ_PBKDF2_MAX_ITERATIONS)
		return CMQ_ERR_INVAL;
	out->salt_len = CMQ_PBKDF2_SALT_LEN;
	if (RAND_bytes(out->salt, (int)out->salt_len) != 1) {
		memset(out, 0, sizeof(*out));
		return CMQ_ERR_CRYPTO;
	}
	out->iterations = iterations;
	rc = derive(password, len, out->salt, out->salt_len, iterations, out->hash);
	if (rc != CMQ_OK)
		memset(out, 0, sizeof(*out));
	return rc;
}

int cmq_passwd_format(const struct cmq_pbkdf2 *h, char *buf, size_t buflen)
{
	char salt[CMQ_PBKDF2_SALT_MAX * 2], hash[CMQ_PBKDF2_HASH_LEN * 2];
	int n;

	if (h->salt_len == 0 || h->salt_len > CMQ_PBKDF2_SALT_MAX ||
	    b64_encode(h->salt, h->salt_len, salt, sizeof(salt)) == 0 ||
	    b64_encode(h->hash, CMQ_PBKDF2_HASH_LEN, hash, sizeof(hash)) == 0)
		return CMQ_ERR_INVAL;
	n = snprintf(buf, buflen, PREFIX "%u$%s$%s", (unsigned)h->iterations, salt, hash);
	if (n < 0 || (size_t)n >= buflen)
		return CMQ_ERR_TOO_BIG;
	return CMQ_OK;
}

void cmq_passwd_burn(uint32_t iterations, const char *password, size_t len)
{
	static const uint8_t salt[CMQ_PBKDF2_SALT_LEN] = "civicmq-dummy-s";
	uint8_t key[CMQ_PBKDF2_HASH_LEN];

	if (iterations < CMQ_PBKDF2_MIN_ITERATIONS || iterations > CMQ_PBKDF2_MAX_ITERATIONS)
		iterations = CMQ_PBKDF2_DEFAULT_ITERATIONS;
	(void)derive(password, len > CMQ_PASSWD_MAX_LEN ? 0 : len, salt, sizeof(salt), iterations,
	             key);
	OPENSSL_cleanse(key, sizeof(key));
}

bool cmq_passwd_verify(const struct cmq_pbkdf2 *h, const char *password, size_t len)
{
	uint8_t key[CMQ_PBKDF2_HASH_LEN];
	bool ok;

	if (h == NULL || h->iterations == 0 || h->salt_len == 0) {
		cmq_passwd_burn(CMQ_PBKDF2_DEFAULT_ITERATIONS, password, len);
		return false;
	}
	/* Too long, or no password at all: refuse, at the cost of a real check. */
	if (password == NULL || len > CMQ_PASSWD_MAX_LEN) {
		cmq_passwd_burn(h->iterations, "", 0);
		return false;
	}
	if (derive(password, len, h->salt, h->salt_len, h->iterations, key) != CMQ_OK)
		return false;
	ok = CRYPTO_memcmp(key, h->hash, sizeof(key)) == 0;
	OPENSSL_cleanse(key, sizeof(key));
	return ok;
}

int cmq_passwd_generate(char *buf, size_t len)
{
	/* 64 symbols: 6 bits of entropy per character, no rejection sampling needed. */
	static const char sym[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	uint8_t rnd[256];

	if (len == 0 || len > sizeof(rnd))
		return CMQ_ERR_INVAL;
	if (RAND_bytes(rnd, (int)len) != 1)
		return CMQ_ERR_CRYPTO;
	for (size_t i = 0; i < len; i++)
		buf[i] = sym[rnd[i] & 63];
	buf[len] = '\0';
	OPENSSL_cleanse(rnd, sizeof(rnd));
	return CMQ_OK;
}
