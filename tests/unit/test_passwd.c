/*
 * test_passwd.c - core/passwd: PBKDF2-SHA512 hash strings (parse, format,
 * verify against vectors computed independently with Python's hashlib),
 * rejection of every malformed string, and generated secrets.
 */
#include "cmq_test.h"

#include "error.h"
#include "passwd.h"

#include <stdio.h>
#include <string.h>

/*
 * Computed with Python 3:
 *   h = hashlib.pbkdf2_hmac('sha512', password, salt, iterations)
 *   '$pbkdf2-sha512$i=%d$%s$%s' % (iterations, b64(salt), b64(h))
 * where b64 is base64.b64encode(...).rstrip(b'=').
 */
static const struct {
	const char *password;
	const char *hash;
	uint32_t iterations;
	size_t salt_len;
} vectors[] = {
    {"pw",
     "$pbkdf2-sha512$i=1000$MDEyMzQ1Njc4OWFiY2RlZg$bk6AzDNPufwraG/VjmAl+642J4ug0Z1+aNrlKzX8aHwEs63X"
     "DUGVJTUkvPMmA3adUiWnwISWC+BX0WWY7QuPYQ",
     1000, 16},
    /* salt 00 01 fe 7f 80 ff 10 20: the shortest salt accepted */
    {"correct horse battery staple",
     "$pbkdf2-sha512$i=100$AAH+f4D/"
     "ECA$7ixWDNlS2uiE7ozIe4S9rVKZ7UDKvoH4LgkctTIQ8s0wSGiNKqOPwBu0ZraM21R"
     "cZ+bFHfV4moMH5Hz2VSle7A",
     100, 8},
    /* UTF-8 password, salt bytes 0..63: the longest salt accepted */
    {"p\xc3\xa4ssw\xc3\xb6rd",
     "$pbkdf2-sha512$i=1000$"
     "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1"
     "Njc4OTo7PD0+Pw$u2kfHFunJisdrj5AoASSxyQMBdD5HWfqWMNhZ/x2w1spBDSBFIfJUbercEctC0Fe0XP9cJqgPO/"
     "7oe8"
     "IhnY2XA",
     1000, 64},
    {"",
     "$pbkdf2-sha512$i=100$Y2l2aWNtcS1zYWx0LTE2Yg$"
     "tMnkqgCI1L7tohofYzx6hynR9n29cnYbmQqpOxEH9KKyT1tUTVrn"
     "XC3Pmscg+iEkDqOOYM6tqcuu8oo5pXWldQ",
     100, 16},
};

#define PFX    "$pbkdf2-sha512$i="
#define SALT16 "MDEyMzQ1Njc4OWFiY2RlZg"
#define HASH64                                                                                     \
	"bk6AzDNPufwraG/VjmAl+642J4ug0Z1+aNrlKzX8aHwEs63XDUGVJTUkvPMmA3adUiWnwISWC+BX0WWY7QuPYQ"
#define A84 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

static void TEST_python_vectors_verify(void)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		struct cmq_pbkdf2 h;
		const char *why = NULL;
		const char *pw = vectors[i].password;
		size_t len = strlen(pw);
		char buf[CMQ_PASSWD_STR_MAX], wrong[64];

		CU_ASSERT_EQUAL_FATAL(cmq_passwd_parse(vectors[i].hash, &h, &why), CMQ_OK);
		CU_ASSERT_EQUAL(h.iterations, vectors[i].iterations);
		CU_ASSERT_EQUAL(h.salt_len, vectors[i].salt_len);
		CU_ASSERT_TRUE(cmq_passwd_verify(&h, pw, len));
		/* Wrong passwords: one byte changed, one byte more, one byte less. */
		snprintf(wrong, sizeof(wrong), "%sx", pw);
		CU_ASSERT_FALSE(cmq_passwd_verify(&h, wrong, len + 1));
		if (len > 0) {
			wrong[0] ^= 1;
			CU_ASSERT_FALSE(cmq_passwd_verify(&h, wrong, len));
			CU_ASSERT_FALSE(cmq_passwd_verify(&h, pw, len - 1));
		}
		/* Formatting a parsed hash gives back the same string. */
		CU_ASSERT_EQUAL(cmq_passwd_format(&h, buf, sizeof(buf)), CMQ_OK);
		CU_ASSERT_STRING_EQUAL(buf, vectors[i].hash);
	}
	/* The length, not a NUL, ends the password; no password (NULL) never matches, not
	 * even the hash of the empty one. */
	{
		struct cmq_pbkdf2 h;

		CU_ASSERT_EQUAL_FATAL(cmq_passwd_parse(vectors[0].hash, &h, NULL), CMQ_OK);
		CU_ASSERT_TRUE(cmq_passwd_verify(&h, "pwned", 2));
		CU_ASSERT_EQUAL_FATAL(cmq_passwd_parse(vectors[3].hash, &h, NULL), CMQ_OK);
		CU_ASSERT_TRUE(cmq_passwd_verify(&h, "", 0));
		CU_ASSERT_FALSE(cmq_passwd_verify(&h, NULL, 0));
	}
}

static void TEST_hash_round_trip(void)
{
	struct cmq_pbkdf2 h, parsed, other;
	char buf[CMQ_PASSWD_STR_MAX];

	CU_ASSERT_EQUAL_FATAL(cmq_passwd_hash("s3cret", 6, 1000, &h), CMQ_OK);
	CU_ASSERT_EQUAL(h.iterations, 1000);
	CU_ASSERT_EQUAL(h.salt_len, CMQ_PBKDF2_SALT_LEN);
	CU_ASSERT_TRUE(cmq_passwd_verify(&h, "s3cret", 6));
	CU_ASSERT_FALSE(cmq_passwd_verify(&h, "s3creT", 6));
	CU_ASSERT_FALSE(cmq_passwd_verify(&h, "s3cret", 5));

	CU_ASSERT_EQUAL_FATAL(cmq_passwd_format(&h, buf, sizeof(buf)), CMQ_OK);
	CU_ASSERT_EQUAL(strncmp(buf, PFX "1000$", strlen(PFX "1000$")), 0);
	/* prefix, "1000", '$', 22 salt characters, '$', 86 hash characters */
	CU_ASSERT_EQUAL(strlen(buf), strlen(PFX) + 4 + 1 + 22 + 1 + 86);
	CU_ASSERT_EQUAL_FATAL(cmq_passwd_parse(buf, &parsed, NULL), CMQ_OK);
	CU_ASSERT_EQUAL(parsed.iterations, h.iterations);
	CU_ASSERT_EQUAL(parsed.salt_len, h.salt_len);
	CU_ASSERT_EQUAL(memcmp(parsed.salt, h.salt, h.salt_len), 0);
	CU_ASSERT_EQUAL(memcmp(parsed.hash, h.hash, sizeof(h.hash)), 0);
	CU_ASSERT_TRUE(cmq_passwd_verify(&parsed, "s3cret", 6));

	/* A fresh salt each time. */
	CU_ASSERT_EQUAL_FATAL(cmq_passwd_hash("s3cret", 6, 1000, &other), CMQ_OK);
	CU_ASSERT_NOT_EQUAL(memcmp(other.salt, h.salt, CMQ_PBKDF2_SALT_LEN), 0);
	CU_ASSERT_NOT_EQUAL(memcmp(other.hash, h.hash, CMQ_PBKDF2_HASH_LEN), 0);

	/* Iteration bounds and the password length cap; *out is zeroed on failure. */
	CU_ASSERT_EQUAL(cmq_passwd_hash("x", 1, CMQ_PBKDF2_MIN_ITERATIONS, &h), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_passwd_hash("x", 1, CMQ_PBKDF2_MIN_ITERATIONS - 1, &h), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(h.iterations, 0);
	CU_ASSERT_EQUAL(h.salt_len, 0);
	CU_ASSERT_EQUAL(cmq_passwd_hash("x", 1, CMQ_PBKDF2_MAX_ITERATIONS + 1, &h), CMQ_ERR_INVAL);
	{
		char big[CMQ_PASSWD_MAX_LEN + 1];

		memset(big, 'p', sizeof(big));
		CU_ASSERT_EQUAL(cmq_passwd_hash(big, CMQ_PASSWD_MAX_LEN, 100, &h), CMQ_OK);
		CU_ASSERT_TRUE(cmq_passwd_verify(&h, big, CMQ_PASSWD_MAX_LEN));
		CU_ASSERT_FALSE(cmq_passwd_verify(&h, big, CMQ_PASSWD_MAX_LEN + 1));
		CU_ASSERT_EQUAL(cmq_passwd_hash(big, CMQ_PASSWD_MAX_LEN + 1, 100, &h),
		                CMQ_ERR_INVAL);
		CU_ASSERT_EQUAL(h.salt_len, 0);
	}
}

static const char *const why_prefix = "must start with \"$pbkdf2-sha512$i=\"";
static const char *const why_digits =
    "iteration count must be a decimal number without leading zeros";
static const char *const why_range = "iteration count must be between 100 and 10000000";
static const char *const why_dollar = "missing '$' between salt and hash";
static const char *const why_salt = "salt must be 8 to 64 bytes of unpadded base64";
static const char *const why_hash = "hash must be 64 bytes (86 characters) of unpadded base64";

static void TEST_parse_rejects_malformed(void)
{
	const struct {
		const char *s;
		const char *const *why;
	} cases[] = {
	    {"", &why_prefix},
	    {"pbkdf2-sha512$i=1000$" SALT16 "$" HASH64, &why_prefix},
	    {"$pbkdf2-sha256$i=1000$" SALT16 "$" HASH64, &why_prefix},
	    {"$PBKDF2-SHA512$i=1000$" SALT16 "$" HASH64, &why_prefix},
	    {"$pbkdf2-sha512$1000$" SALT16 "$" HASH64, &why_prefix},
	    {" " PFX "1000$" SALT16 "$" HASH64, &why_prefix},
	    /* iterations */
	    {PFX "0$" SALT16 "$" HASH64, &why_digits},
	    {PFX "01000$" SALT16 "$" HASH64, &why_digits},
	    {PFX "$" SALT16 "$" HASH64, &why_digits},
	    {PFX "-1000$" SALT16 "$" HASH64, &why_digits},
	    {PFX "+1000$" SALT16 "$" HASH64, &why_digits},
	    {PFX " 1000$" SALT16 "$" HASH64, &why_digits},
	    {PFX "99$" SALT16 "$" HASH64, &why_range},
	    {PFX "10000001$" SALT16 "$" HASH64, &why_range},
	    {PFX "99999999999999999999999$" SALT16 "$" HASH64, &why_range},
	    {PFX "1000x$" SALT16 "$" HASH64, &why_range},
	    {PFX "1000", &why_range},
	    /* salt */
	    {PFX "1000$" SALT16, &why_dollar},
	    {PFX "1000$" SALT16 HASH64, &why_dollar},
	    {PFX "1000$$" HASH64, &why_salt},
	    {PFX "1000$MDEyMzQ1Ng$" HASH64, &why_salt},               /* 7 bytes */
	    {PFX "1000$MDEyMzQ1Njc4OWFi*2RlZg$" HASH64, &why_salt},   /* bad character */
	    {PFX "1000$MDEyMzQ1Njc4OWFi-2RlZg$" HASH64, &why_salt},   /* URL-safe alphabet */
	    {PFX "1000$MDEyMzQ1Njc4OWFiY2RlZg==$" HASH64, &why_salt}, /* padding */
	    {PFX "1000$MDEyMzQ1Njc4OWFiY2RlZh$" HASH64, &why_salt},   /* trailing bits set */
	    {PFX "1000$MDEyMzQ1Njc4OWFiY2RlZ$" HASH64, &why_salt},    /* 4n+1 characters */
	    {PFX "1000$MDEy MzQ1Njc4OWFiY2RlZg$" HASH64, &why_salt},  /* space */
	    {PFX "1000$" A84 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$" HASH64,
	     &why_salt}, /* far too long */
	    {PFX "1000$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4"
	         "OTo7PD0+P0A$" HASH64,
	     &why_salt}, /* 65 bytes */
	    /* hash */
	    {PFX "1000$" SALT16 "$", &why_hash},
	    {PFX "1000$" SALT16 "$" A84, &why_hash},         /* 63 bytes */
	    {PFX "1000$" SALT16 "$" A84 "AAA", &why_hash},   /* 65 bytes */
	    {PFX "1000$" SALT16 "$" A84 "A", &why_hash},     /* 4n+1 characters */
	    {PFX "1000$" SALT16 "$" HASH64 "==", &why_hash}, /* padding */
	    {PFX "1000$" SALT16 "$" HASH64 "$", &why_hash},  /* trailing '$' */
	    {PFX "1000$" SALT16 "$" HASH64 "\n", &why_hash}, /* trailing newline */
	    {PFX "1000$" SALT16
	         "$bk6AzDNPufwraG/VjmAl+642J4ug0Z1+aNrlKzX8aHwEs63XDUGVJTUkvPMmA3adUiWnwISWC"
	         "+BX0WWY7QuPYR",
	     &why_hash}, /* trailing bits set */
	    {PFX "1000$" SALT16
	         "$bk6AzDNPufwraG/VjmAl+642J4ug0Z1+aNrlKzX8aHwEs63XDUGVJTUkvPMmA3adUiWnwISWC"
	         "+BX0WWY7QuP.Q",
	     &why_hash}, /* bad character */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cmq_pbkdf2 h;
		const char *why = NULL;
		int rc;

		memset(&h, 0xa5, sizeof(h));
		rc = cmq_passwd_parse(cases[i].s, &h, &why);
		CU_ASSERT_EQUAL(rc, CMQ_ERR_PARSE);
		CU_ASSERT_PTR_NOT_NULL(why);
		if (why != NULL)
			CU_ASSERT_EQUAL(strncmp(why, *cases[i].why, strlen(*cases[i].why)), 0);
		if (rc != CMQ_ERR_PARSE || why == NULL ||
		    strncmp(why, *cases[i].why, strlen(*cases[i].why)) != 0)
			fprintf(stderr, "\n  \"%s\": rc=%s why=%s\n", cases[i].s, cmq_err_name(rc),
			        why ? why : "(null)");
		/* A rejected hash is zeroed, so it can never verify. */
		CU_ASSERT_EQUAL(h.iterations, 0);
		CU_ASSERT_EQUAL(h.salt_len, 0);
		CU_ASSERT_FALSE(cmq_passwd_verify(&h, "", 0));
		/* why is optional. */
		CU_ASSERT_EQUAL(cmq_passwd_parse(cases[i].s, &h, NULL), CMQ_ERR_PARSE);
	}
	{
		const char *why = NULL;
		struct cmq_pbkdf2 h;

		CU_ASSERT_EQUAL(cmq_passwd_parse(NULL, &h, &why), CMQ_ERR_PARSE);
		CU_ASSERT_PTR_NOT_NULL_FATAL(why);
		CU_ASSERT_EQUAL(strncmp(why, why_prefix, strlen(why_prefix)), 0);
	}
	/* The boundaries that are accepted. */
	{
		struct cmq_pbkdf2 h;

		CU_ASSERT_EQUAL(cmq_passwd_parse(PFX "100$" SALT16 "$" HASH64, &h, NULL), CMQ_OK);
		CU_ASSERT_EQUAL(cmq_passwd_parse(PFX "10000000$" SALT16 "$" HASH64, &h, NULL),
		                CMQ_OK);
		CU_ASSERT_EQUAL(h.iterations, 10000000);
		CU_ASSERT_EQUAL(cmq_passwd_parse(PFX "1000$MDEyMzQ1Njc$" HASH64, &h, NULL), CMQ_OK);
		CU_ASSERT_EQUAL(h.salt_len, 8);
		/* the 64-byte hash of zeroes, the hash of another password: format is all parse
		 * checks */
		CU_ASSERT_EQUAL(cmq_passwd_parse(PFX "1000$" SALT16 "$" A84 "AA", &h, NULL),
		                CMQ_OK);
		CU_ASSERT_FALSE(cmq_passwd_verify(&h, "pw", 2));
	}
}

static void TEST_verify_without_hash_is_false(void)
{
	struct cmq_pbkdf2 zero;

	memset(&zero, 0, sizeof(zero));
	CU_ASSERT_FALSE(cmq_passwd_verify(NULL, "pw", 2));
	CU_ASSERT_FALSE(cmq_passwd_verify(NULL, NULL, 0));
	CU_ASSERT_FALSE(cmq_passwd_verify(NULL, "", 0));
	CU_ASSERT_FALSE(cmq_passwd_verify(&zero, "", 0));
	/* The dummy path must not choke on an over-long password either. */
	{
		char big[CMQ_PASSWD_MAX_LEN + 10];

		memset(big, 'x', sizeof(big));
		CU_ASSERT_FALSE(cmq_passwd_verify(NULL, big, sizeof(big)));
	}
}

static void TEST_format_limits(void)
{
	struct cmq_pbkdf2 h;
	char buf[CMQ_PASSWD_STR_MAX];
	size_t len = strlen(vectors[0].hash);

	CU_ASSERT_EQUAL_FATAL(cmq_passwd_parse(vectors[0].hash, &h, NULL), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_passwd_format(&h, buf, len + 1), CMQ_OK);
	CU_ASSERT_STRING_EQUAL(buf, vectors[0].hash);
	CU_ASSERT_EQUAL(cmq_passwd_format(&h, buf, len), CMQ_ERR_TOO_BIG);
	CU_ASSERT_EQUAL(cmq_passwd_format(&h, buf, 10), CMQ_ERR_TOO_BIG);
	h.salt_len = 0;
	CU_ASSERT_EQUAL(cmq_passwd_format(&h, buf, sizeof(buf)), CMQ_ERR_INVAL);
	h.salt_len = CMQ_PBKDF2_SALT_MAX + 1;
	CU_ASSERT_EQUAL(cmq_passwd_format(&h, buf, sizeof(buf)), CMQ_ERR_INVAL);
	/* The longest hash string (64-byte salt, 8-digit iterations) fits CMQ_PASSWD_STR_MAX. */
	CU_ASSERT_EQUAL_FATAL(cmq_passwd_parse(vectors[2].hash, &h, NULL), CMQ_OK);
	h.iterations = CMQ_PBKDF2_MAX_ITERATIONS;
	CU_ASSERT_EQUAL(cmq_passwd_format(&h, buf, sizeof(buf)), CMQ_OK);
	CU_ASSERT_TRUE(strlen(buf) < CMQ_PASSWD_STR_MAX);
}

static void TEST_generate(void)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char a[300], b[300];
	bool seen[64] = {false};
	size_t distinct = 0;

	memset(a, '#', sizeof(a));
	CU_ASSERT_EQUAL_FATAL(cmq_passwd_generate(a, 32), CMQ_OK);
	CU_ASSERT_EQUAL(strlen(a), 32);
	CU_ASSERT_EQUAL(a[33], '#'); /* len + 1 bytes written, no more */
	CU_ASSERT_EQUAL(strspn(a, alphabet), 32);
	CU_ASSERT_EQUAL_FATAL(cmq_passwd_generate(b, 32), CMQ_OK);
	CU_ASSERT_STRING_NOT_EQUAL(a, b);

	/* 256 characters at once: the whole alphabet shows up, nothing else. */
	CU_ASSERT_EQUAL_FATAL(cmq_passwd_generate(a, 256), CMQ_OK);
	CU_ASSERT_EQUAL(strlen(a), 256);
	CU_ASSERT_EQUAL(strspn(a, alphabet), 256);
	for (int round = 0; round < 8; round++) {
		CU_ASSERT_EQUAL_FATAL(cmq_passwd_generate(a, 256), CMQ_OK);
		for (size_t i = 0; i < 256; i++) {
			const char *p = strchr(alphabet, a[i]);

			if (p != NULL && !seen[p - alphabet]) {
				seen[p - alphabet] = true;
				distinct++;
			}
		}
	}
	CU_ASSERT_EQUAL(distinct, 64);

	CU_ASSERT_EQUAL(cmq_passwd_generate(a, 1), CMQ_OK);
	CU_ASSERT_EQUAL(strlen(a), 1);
	CU_ASSERT_EQUAL(cmq_passwd_generate(a, 0), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(cmq_passwd_generate(a, 257), CMQ_ERR_INVAL);
}

int main(void)
{
	static const struct cmq_test_case cases[] = {
	    {"python_vectors_verify", TEST_python_vectors_verify},
	    {"hash_round_trip", TEST_hash_round_trip},
	    {"parse_rejects_malformed", TEST_parse_rejects_malformed},
	    {"verify_without_hash_is_false", TEST_verify_without_hash_is_false},
	    {"format_limits", TEST_format_limits},
	    {"generate", TEST_generate},
	    {NULL, NULL},
	};

	return cmq_test_run("passwd", cases);
}
