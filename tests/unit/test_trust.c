/*
 * test_trust.c - connect decisions (certificate and password) and username ->
 * principal resolution (core/trust.c).
 *
 * Every certificate is made in-process with OpenSSL 3 (EC P-256): one CA per
 * vendor, an operator CA, a CA that sits in the bundle but is pinned by
 * nobody, and a FOREIGN CA whose subject is byte-identical to the civitas
 * vendor CA but whose key is not. The CA PEMs go into a bundle file, and
 * vendors.json / operators.json pinning their SHA-256 fingerprints are
 * written at run time next to the example config/policy.json, so the policy
 * under test is loaded exactly as the plugin loads it. Passwords are hashed
 * at run time with the default PBKDF2 cost.
 *
 * Each test loads its own policy and frees it, and asserts that every core
 * allocation was returned.
 */
#include "cmq_test.h"

#include "alloc.h"
#include "error.h"
#include "passwd.h"
#include "policy.h"
#include "trust.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- certificates ---- */

struct test_ca {
	X509 *cert;
	EVP_PKEY *key;
};

/* Shared by every test: made once, freed at exit. */
static struct {
	bool made;
	EVP_PKEY *leaf_key;
	struct test_ca civitas, nimbus, hawkeye, operators, unpinned, foreign;
	char bundle[4096];
	char vendors[4096];
	char operators_json[4096];
	char policy[4096];
} pki;

static EVP_PKEY *make_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	CU_ASSERT_PTR_NOT_NULL_FATAL(k);
	return k;
}

/* A certificate for subject/pub, signed by issuer_key; issuer NULL = self-signed. */
static X509 *sign_cert(const X509_NAME *subject, EVP_PKEY *pub, X509 *issuer, EVP_PKEY *issuer_key,
                       int64_t serial, bool is_ca)
{
	X509 *c = X509_new();

	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_FATAL(X509_set_version(c, 2) == 1);
	CU_ASSERT_FATAL(ASN1_INTEGER_set_int64(X509_get_serialNumber(c), serial) == 1);
	CU_ASSERT_FATAL(X509_set_subject_name(c, subject) == 1);
	CU_ASSERT_FATAL(X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : subject) ==
	                1);
	CU_ASSERT_FATAL(X509_gmtime_adj(X509_getm_notBefore(c), -3600) != NULL);
	CU_ASSERT_FATAL(X509_gmtime_adj(X509_getm_notAfter(c), 86400L * 365) != NULL);
	CU_ASSERT_FATAL(X509_set_pubkey(c, pub) == 1);
	if (is_ca) {
		cmq_test_add_ext(c, issuer ? issuer : c, NID_basic_constraints, "critical,CA:TRUE");
		cmq_test_add_ext(c, issuer ? issuer : c, NID_key_usage,
		                 "critical,keyCertSign,cRLSign");
	} else {
		cmq_test_add_ext(c, issuer ? issuer : c, NID_basic_constraints,
		                 "critical,CA:FALSE");
	}
	CU_ASSERT_FATAL(X509_sign(c, issuer_key, EVP_sha256()) > 0);
	return c;
}

static struct test_ca make_ca(const char *subject_cn, const char *org)
{
	struct test_ca ca;
	X509_NAME *name = X509_NAME_new();

	CU_ASSERT_PTR_NOT_NULL_FATAL(name);
	CU_ASSERT_FATAL(X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_UTF8,
	                                           (const unsigned char *)org, -1, -1, 0) == 1);
	CU_ASSERT_FATAL(X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
	                                           (const unsigned char *)subject_cn, -1, -1,
	                                           0) == 1);
	ca.key = make_key();
	ca.cert = sign_cert(name, ca.key, NULL, ca.key, 1, true);
	X509_NAME_free(name);
	return ca;
}

/*
 * A leaf whose subject has n_cn common names, each the raw bytes cn[0..cn_len)
 * stored as an ASN.1 string of the given type without conversion or checking
 * (so NULs and control characters reach the certificate as they are). The
 * leaf goes through DER and back, so the test sees what a TLS stack would
 * hand the plugin.
 */
static X509 *make_leaf_typed(const struct test_ca *ca, int type, const char *cn, int cn_len,
                             int n_cn, int64_t serial)
{
	X509_NAME *name = X509_NAME_new();
	X509 *c, *back;
	unsigned char *der = NULL;
	const unsigned char *in;
	int len;

	CU_ASSERT_PTR_NOT_NULL_FATAL(name);
	CU_ASSERT_FATAL(X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_UTF8,
	                                           (const unsigned char *)"Devices", -1, -1,
	                                           0) == 1);
	for (int i = 0; i < n_cn; i++)
		CU_ASSERT_FATAL(X509_NAME_add_entry_by_NID(name, NID_commonName, type,
		                                           (const unsigned char *)cn, cn_len, -1,
		                                           0) == 1);
	c = sign_cert(name, pki.leaf_key, ca->cert, ca->key, serial, false);
	X509_NAME_free(name);
	len = i2d_X509(c, &der);
	CU_ASSERT_FATAL(len > 0);
	in = der;
	back = d2i_X509(NULL, &in, len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(back);
	OPENSSL_free(der);
	X509_free(c);
	return back;
}

static X509 *make_leaf_raw(const struct test_ca *ca, const char *cn, int cn_len, int n_cn,
                           int64_t serial)
{
	return make_leaf_typed(ca, V_ASN1_UTF8STRING, cn, cn_len, n_cn, serial);
}

static X509 *make_leaf(const struct test_ca *ca, const char *cn, int64_t serial)
{
	return make_leaf_raw(ca, cn, (int)strlen(cn), 1, serial);
}

static void fingerprint(X509 *cert, char out[100])
{
	uint8_t fp[32];
	unsigned n = 0;

	CU_ASSERT_FATAL(X509_digest(cert, EVP_sha256(), fp, &n) == 1 && n == 32);
	cmq_fingerprint_format(fp, out, 100);
}

static void append_pem(BIO *bio, X509 *cert)
{
	CU_ASSERT_FATAL(PEM_write_bio_X509(bio, cert) == 1);
}

static char *hash_password(const char *pw, char out[CMQ_PASSWD_STR_MAX])
{
	struct cmq_pbkdf2 h;

	CU_ASSERT_FATAL(cmq_passwd_hash(pw, strlen(pw), CMQ_PBKDF2_DEFAULT_ITERATIONS, &h) ==
	                CMQ_OK);
	CU_ASSERT_FATAL(cmq_passwd_format(&h, out, CMQ_PASSWD_STR_MAX) == CMQ_OK);
	return out;
}

static void free_ca(struct test_ca *ca)
{
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	ca->cert = NULL;
	ca->key = NULL;
}

static void free_pki(void)
{
	free_ca(&pki.civitas);
	free_ca(&pki.nimbus);
	free_ca(&pki.hawkeye);
	free_ca(&pki.operators);
	free_ca(&pki.unpinned);
	free_ca(&pki.foreign);
	EVP_PKEY_free(pki.leaf_key);
	pki.leaf_key = NULL;
}

static const char *config_dir(void)
{
	const char *src = getenv("CMQ_SRC");
	static char buf[2048];

	snprintf(buf, sizeof(buf), "%s/config", src ? src : ".");
	return buf;
}

/* Make the CAs and write bundle, vendors.json and operators.json (once). */
static void make_pki(void)
{
	char fp_civ[100], fp_nim[100], fp_hawk[100], fp_op[100], gw[CMQ_PASSWD_STR_MAX],
	    dash[CMQ_PASSWD_STR_MAX], tc[CMQ_PASSWD_STR_MAX], kiosk[CMQ_PASSWD_STR_MAX];
	static char text[16384];
	BIO *bio;
	BUF_MEM *mem;

	if (pki.made)
		return;
	pki.made = true;
	atexit(free_pki);
	pki.leaf_key = make_key();
	pki.civitas = make_ca("Civitas Device CA", "Civitas Sensing Ltd");
	pki.nimbus = make_ca("Nimbus Device CA", "Nimbus Weather Co");
	pki.hawkeye = make_ca("Hawkeye Device CA", "Hawkeye Vision Systems");
	pki.operators = make_ca("Example City Operator CA", "Example City");
	pki.unpinned = make_ca("Some Other CA", "Unrelated Ltd");
	/* Same organisation and CN as the civitas CA, built the same way: only the key differs. */
	pki.foreign = make_ca("Civitas Device CA", "Civitas Sensing Ltd");

	/* The foreign CA comes first: pins are matched by fingerprint, not by order or name. */
	bio = BIO_new(BIO_s_mem());
	CU_ASSERT_PTR_NOT_NULL_FATAL(bio);
	append_pem(bio, pki.foreign.cert);
	append_pem(bio, pki.civitas.cert);
	append_pem(bio, pki.nimbus.cert);
	append_pem(bio, pki.hawkeye.cert);
	append_pem(bio, pki.operators.cert);
	append_pem(bio, pki.unpinned.cert);
	CU_ASSERT_FATAL(BIO_write(bio, "", 1) == 1);
	BIO_get_mem_ptr(bio, &mem);
	snprintf(pki.bundle, sizeof(pki.bundle), "%s", cmq_test_write_file("ca.pem", mem->data));
	BIO_free(bio);

	fingerprint(pki.civitas.cert, fp_civ);
	fingerprint(pki.nimbus.cert, fp_nim);
	fingerprint(pki.hawkeye.cert, fp_hawk);
	fingerprint(pki.operators.cert, fp_op);
	snprintf(
	    text, sizeof(text),
	    "{\"vendors\": [\n"
	    " {\"id\": \"civitas\", \"name\": \"Civitas Sensing Ltd\", \"tier\": \"trusted\",\n"
	    "  \"device_id_prefix\": \"civitas-\", \"ca_sha256\": [\"%s\"],\n"
	    "  \"categories\": [\"environment\", \"mobility\", \"energy\", \"safety\"],\n"
	    "  \"revoked_serials\": [\"00:0a:bc:13\", \"0000DEAD\"]},\n"
	    " {\"id\": \"nimbus\", \"name\": \"Nimbus Weather Co\", \"tier\": \"restricted\",\n"
	    "  \"device_id_prefix\": \"nimbus-\", \"ca_sha256\": [\"%s\"],\n"
	    "  \"categories\": [\"environment\"]},\n"
	    " {\"id\": \"hawkeye\", \"name\": \"Hawkeye Vision\", \"tier\": \"blocked\",\n"
	    "  \"device_id_prefix\": \"hawkeye-\", \"ca_sha256\": [\"%s\"],\n"
	    "  \"categories\": [\"safety\"]}\n"
	    "]}\n",
	    fp_civ, fp_nim, fp_hawk);
	snprintf(pki.vendors, sizeof(pki.vendors), "%s", cmq_test_write_file("vendors.json", text));
	snprintf(
	    text, sizeof(text),
	    "{\"operator_ca_sha256\": [\"%s\"],\n"
	    " \"operators\": [\n"
	    "  {\"username\": \"gateway\", \"role\": \"gateway\", \"certificate\": true,\n"
	    "   \"password_hash\": \"%s\"},\n"
	    "  {\"username\": \"dashboard\", \"role\": \"dashboard\", \"password_hash\": \"%s\"},\n"
	    "  {\"username\": \"admin\", \"role\": \"admin\", \"certificate\": true},\n"
	    "  {\"username\": \"traffic-centre\", \"role\": \"traffic-control\",\n"
	    "   \"password_hash\": \"%s\"},\n"
	    "  {\"username\": \"kiosk\", \"role\": \"dashboard\", \"password_hash\": \"%s\"}\n"
	    "]}\n",
	    fp_op, hash_password("gw-secret", gw), hash_password("dash-secret", dash),
	    hash_password("tc-secret", tc), hash_password("", kiosk));
	snprintf(pki.operators_json, sizeof(pki.operators_json), "%s",
	         cmq_test_write_file("operators.json", text));
	snprintf(pki.policy, sizeof(pki.policy), "%s/policy.json", config_dir());
}

/* The policy every test runs against; free with done(). */
static struct cmq_policy *load(long *live_before)
{
	struct cmq_policy_files files;
	struct cmq_policy *p = NULL;

	make_pki();
	*live_before = cmq_test_live_allocations();
	files.policy = pki.policy;
	files.vendors = pki.vendors;
	files.operators = pki.operators_json;
	files.ca_file = pki.bundle;
	p = cmq_test_load_clean(&files, false);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	return p;
}

static void done(struct cmq_policy *p, long live_before)
{
	cmq_policy_free(p);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), live_before);
}

/* Decide a leaf, free it, and check the reason; returns the decision. */
static enum cmq_decision check_leaf(const struct cmq_policy *p, X509 *leaf, const char *client_id,
                                    struct cmq_connect_result *r, enum cmq_reason want)
{
	enum cmq_decision d;

	memset(r, 0x5a, sizeof(*r)); /* the result must be reset, whatever it held */
	d = cmq_connect_check_cert(p, leaf, client_id, r);
	X509_free(leaf);
	if (r->reason != want)
		fprintf(stderr, "\n  got %s, want %s (%s)", cmq_reason_name(r->reason),
		        cmq_reason_name(want), r->detail);
	CU_ASSERT_EQUAL(r->reason, want);
	CU_ASSERT_EQUAL(d, want == CMQ_REASON_OK ? CMQ_ALLOW : CMQ_DENY);
	if (want != CMQ_REASON_OK) {
		CU_ASSERT_EQUAL(r->who.kind, CMQ_PRINCIPAL_NONE);
	}
	return d;
}

static void expect_cn(const struct cmq_policy *p, const char *cn, int len, int n_cn,
                      enum cmq_reason want)
{
	struct cmq_connect_result r;

	check_leaf(p, make_leaf_raw(&pki.civitas, cn, len, n_cn, 0x42), "civitas-air-001", &r,
	           want);
}

static void ca_sha256(X509 *cert, uint8_t out[32])
{
	unsigned n = 0;

	CU_ASSERT_FATAL(X509_digest(cert, EVP_sha256(), out, &n) == 1 && n == 32);
}

/* ---- certificate connections: devices ---- */

static void TEST_device_of_trusted_vendor_is_admitted(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;
	uint8_t fp[32];

	check_leaf(p, make_leaf(&pki.civitas, "civitas-air-001", 0x00abc12), "civitas-air-001", &r,
	           CMQ_REASON_OK);
	CU_ASSERT_EQUAL(r.who.kind, CMQ_PRINCIPAL_DEVICE);
	CU_ASSERT_PTR_EQUAL(r.who.vendor, cmq_policy_vendor_find(p, "civitas"));
	CU_ASSERT_PTR_NULL(r.who.op);
	CU_ASSERT_PTR_EQUAL(r.who.role, &p->roles[CMQ_ROLE_SENSOR]);
	CU_ASSERT_STRING_EQUAL(r.identity, "civitas-air-001");
	/* BN_bn2hex gives "0ABC12": normalised drops the leading zero. */
	CU_ASSERT_STRING_EQUAL(r.serial, "ABC12");
	ca_sha256(pki.civitas.cert, fp);
	CU_ASSERT_EQUAL(memcmp(r.ca_sha256, fp, 32), 0);

	/* A restricted vendor's device is admitted too (its limits are ACL matters). */
	check_leaf(p, make_leaf(&pki.nimbus, "nimbus-air-001", 7), "nimbus-air-001", &r,
	           CMQ_REASON_OK);
	CU_ASSERT_PTR_EQUAL(r.who.vendor, cmq_policy_vendor_find(p, "nimbus"));
	CU_ASSERT_STRING_EQUAL(r.serial, "7");
	done(p, live);
}

static void TEST_client_id_must_equal_cn(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;

	check_leaf(p, make_leaf(&pki.civitas, "civitas-air-001", 2), "civitas-air-002", &r,
	           CMQ_REASON_CLIENT_ID_MISMATCH);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.detail, "civitas-air-002"));
	/* Case and trailing bytes matter. */
	check_leaf(p, make_leaf(&pki.civitas, "civitas-air-001", 2), "CIVITAS-AIR-001", &r,
	           CMQ_REASON_CLIENT_ID_MISMATCH);
	check_leaf(p, make_leaf(&pki.civitas, "civitas-air-001", 2), "civitas-air-0011", &r,
	           CMQ_REASON_CLIENT_ID_MISMATCH);
	done(p, live);
}

static void TEST_client_id_missing_or_invalid(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;
	static const char *const bad[] = {"civitas-air+001", "civitas-air#", "civitas/air", "",
	                                  "civitas-\x01"};

	check_leaf(p, make_leaf(&pki.civitas, "civitas-air-001", 2), NULL, &r,
	           CMQ_REASON_CLIENT_ID_INVALID);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		check_leaf(p, make_leaf(&pki.civitas, "civitas-air-001", 2), bad[i], &r,
		           CMQ_REASON_CLIENT_ID_INVALID);
	done(p, live);
}

static void TEST_blocked_vendor_is_refused(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;

	check_leaf(p, make_leaf(&pki.hawkeye, "hawkeye-cam-001", 3), "hawkeye-cam-001", &r,
	           CMQ_REASON_VENDOR_BLOCKED);
	done(p, live);
}

static void TEST_revoked_serial_is_refused(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;

	/* vendors.json lists "00:0a:bc:13" and "0000DEAD". */
	check_leaf(p, make_leaf(&pki.civitas, "civitas-air-001", 0xabc13), "civitas-air-001", &r,
	           CMQ_REASON_SERIAL_REVOKED);
	CU_ASSERT_STRING_EQUAL(r.serial, "ABC13");
	check_leaf(p, make_leaf(&pki.civitas, "civitas-air-009", 0xdead), "civitas-air-009", &r,
	           CMQ_REASON_SERIAL_REVOKED);
	/* Neighbouring serials are not. */
	check_leaf(p, make_leaf(&pki.civitas, "civitas-air-001", 0xabc14), "civitas-air-001", &r,
	           CMQ_REASON_OK);
	check_leaf(p, make_leaf(&pki.civitas, "civitas-air-001", 0xabc130), "civitas-air-001", &r,
	           CMQ_REASON_OK);
	/* Revocation is per vendor: the same serial from nimbus is fine. */
	check_leaf(p, make_leaf(&pki.nimbus, "nimbus-air-001", 0xabc13), "nimbus-air-001", &r,
	           CMQ_REASON_OK);
	done(p, live);
}

/* RFC 5280 serials are positive; a negative one is refused with its own reason. */
static void TEST_negative_serial(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;

	check_leaf(p, make_leaf(&pki.civitas, "civitas-air-001", -0xabc12), "civitas-air-001", &r,
	           CMQ_REASON_CERT_SERIAL_INVALID);
	done(p, live);
}

static void TEST_cn_without_vendor_prefix(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;

	check_leaf(p, make_leaf(&pki.civitas, "air-001", 4), "air-001", &r, CMQ_REASON_CN_PREFIX);
	/* Another vendor's prefix from the civitas CA: the CA decides the vendor. */
	check_leaf(p, make_leaf(&pki.civitas, "nimbus-air-001", 4), "nimbus-air-001", &r,
	           CMQ_REASON_CN_PREFIX);
	/* A vendor CA cannot mint an operator. */
	check_leaf(p, make_leaf(&pki.civitas, "gateway", 4), "gateway", &r, CMQ_REASON_CN_PREFIX);
	/* The prefix alone names no device. */
	check_leaf(p, make_leaf(&pki.civitas, "civitas-", 4), "civitas-", &r, CMQ_REASON_CN_PREFIX);
	check_leaf(p, make_leaf(&pki.civitas, "civitas", 4), "civitas", &r, CMQ_REASON_CN_PREFIX);
	done(p, live);
}

static void TEST_unacceptable_cn(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	char longcn[200];

	memset(longcn, 'a', sizeof(longcn));
	memcpy(longcn, "civitas-", 8);
	expect_cn(p, "civitas-a+b", 11, 1, CMQ_REASON_CERT_CN_INVALID);
	expect_cn(p, "civitas-a#b", 11, 1, CMQ_REASON_CERT_CN_INVALID);
	expect_cn(p, "civitas-a/b", 11, 1, CMQ_REASON_CERT_CN_INVALID);
	expect_cn(p, "civitas-a\nb", 11, 1, CMQ_REASON_CERT_CN_INVALID);
	expect_cn(p, "civitas-a\x7f", 10, 1, CMQ_REASON_CERT_CN_INVALID);
	expect_cn(p, "civitas-a\xc2\x85", 11, 1, CMQ_REASON_CERT_CN_INVALID); /* C1 NEL */
	/* An embedded NUL: "civitas-air-001\0evil" must not pass as "civitas-air-001". */
	expect_cn(p, "civitas-air-001\0evil", 20, 1, CMQ_REASON_CERT_CN_INVALID);
	/* 129 bytes is one too many; 128 is fine (checked below). */
	expect_cn(p, longcn, CMQ_ID_MAX + 1, 1, CMQ_REASON_CERT_CN_INVALID);
	expect_cn(p, longcn, (int)sizeof(longcn), 1, CMQ_REASON_CERT_CN_INVALID);
	done(p, live);
}

/* Whether OpenSSL can DER-encode a subject whose CN is these raw UTF8String bytes. */
static bool utf8_cn_encodes(const char *cn, int len)
{
	X509_NAME *name = X509_NAME_new();
	unsigned char *der = NULL;
	int n;

	CU_ASSERT_FATAL(X509_NAME_add_entry_by_NID(name, NID_commonName, V_ASN1_UTF8STRING,
	                                           (const unsigned char *)cn, len, -1, 0) == 1);
	n = i2d_X509_NAME(name, &der);
	OPENSSL_free(der);
	X509_NAME_free(name);
	ERR_clear_error();
	return n > 0;
}

/*
 * Invalid UTF-8 cannot reach the plugin inside a UTF8String: OpenSSL 3
 * canonicalises names when encoding and decoding them, and refuses. What can
 * reach it is a CN that is not a character string at all (a BIT STRING decodes
 * as a DirectoryString-ish ASN1_PRINTABLE) and has no UTF-8 form: a CN is
 * there, it is just not an acceptable identity. String types that OpenSSL
 * reads as Latin-1 always give valid UTF-8.
 */
static void TEST_cn_not_utf8(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;

	CU_ASSERT_FALSE(utf8_cn_encodes("civitas-\xff\xfe", 10));
	CU_ASSERT_FALSE(utf8_cn_encodes("civitas-\xc0\xaf", 10));     /* overlong '/' */
	CU_ASSERT_FALSE(utf8_cn_encodes("civitas-\xed\xa0\x80", 11)); /* surrogate */
	CU_ASSERT_FALSE(utf8_cn_encodes("civitas-\xe2\x82", 10));     /* truncated */
	CU_ASSERT_TRUE(utf8_cn_encodes("civitas-\xe2\x82\xac", 11));  /* the euro sign */

	check_leaf(p, make_leaf_typed(&pki.civitas, V_ASN1_BIT_STRING, "civitas-air-001", 15, 1, 3),
	           "civitas-air-001", &r, CMQ_REASON_CERT_CN_INVALID);
	/* T61String bytes are read as Latin-1: 0xff is U+00FF, valid UTF-8 "\xc3\xbf". */
	check_leaf(p, make_leaf_typed(&pki.civitas, V_ASN1_T61STRING, "civitas-\xff", 9, 1, 3),
	           "civitas-\xc3\xbf", &r, CMQ_REASON_OK);
	CU_ASSERT_STRING_EQUAL(r.identity, "civitas-\xc3\xbf");
	/* ...but the identity check still applies to what they convert to. */
	check_leaf(p, make_leaf_typed(&pki.civitas, V_ASN1_T61STRING, "civitas-\x85", 9, 1, 3),
	           "civitas-\xc2\x85", &r, CMQ_REASON_CERT_CN_INVALID); /* C1 control NEL */
	check_leaf(p,
	           make_leaf_typed(&pki.civitas, V_ASN1_PRINTABLESTRING, "civitas-a+b", 11, 1, 3),
	           "civitas-a+b", &r, CMQ_REASON_CERT_CN_INVALID);
	done(p, live);
}

static void TEST_longest_acceptable_cn(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;
	char cn[CMQ_ID_MAX + 1];

	memset(cn, 'z', CMQ_ID_MAX);
	memcpy(cn, "civitas-", 8);
	cn[CMQ_ID_MAX] = '\0';
	check_leaf(p, make_leaf(&pki.civitas, cn, 9), cn, &r, CMQ_REASON_OK);
	CU_ASSERT_EQUAL(strlen(r.identity), CMQ_ID_MAX);
	/* Non-ASCII UTF-8 is fine. */
	check_leaf(p,
	           make_leaf(&pki.civitas,
	                     "civitas-stra\xc3\x9f"
	                     "e-1",
	                     9),
	           "civitas-stra\xc3\x9f"
	           "e-1",
	           &r, CMQ_REASON_OK);
	done(p, live);
}

static void TEST_no_single_cn(void)
{
	long live;
	struct cmq_policy *p = load(&live);

	expect_cn(p, "civitas-air-001", 15, 0, CMQ_REASON_CERT_NO_CN);
	expect_cn(p, "civitas-air-001", 15, 2, CMQ_REASON_CERT_NO_CN);
	done(p, live);
}

static void TEST_unpinned_ca_in_bundle_is_unknown(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;
	static const uint8_t zero[32];

	check_leaf(p, make_leaf(&pki.unpinned, "civitas-air-001", 5), "civitas-air-001", &r,
	           CMQ_REASON_CERT_ISSUER_UNKNOWN);
	CU_ASSERT_EQUAL(memcmp(r.ca_sha256, zero, 32), 0);
	CU_ASSERT_PTR_NULL(r.who.vendor);
	CU_ASSERT_STRING_EQUAL(r.identity, "");
	/* A CA certificate itself (self-signed) is not a device either. */
	X509_up_ref(pki.unpinned.cert);
	check_leaf(p, pki.unpinned.cert, "civitas-air-001", &r, CMQ_REASON_CERT_ISSUER_UNKNOWN);
	done(p, live);
}

/* The key attack: a CA copying a pinned vendor CA's subject byte for byte. */
static void TEST_foreign_ca_with_copied_subject_is_unknown(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;
	uint8_t fp_real[32], fp_foreign[32];
	unsigned char *der_real = NULL, *der_foreign = NULL;
	int n_real, n_foreign;

	/* Preconditions: identical subject DER, different certificates. */
	n_real = i2d_X509_NAME(X509_get_subject_name(pki.civitas.cert), &der_real);
	n_foreign = i2d_X509_NAME(X509_get_subject_name(pki.foreign.cert), &der_foreign);
	CU_ASSERT_FATAL(n_real > 0 && n_real == n_foreign);
	CU_ASSERT_EQUAL(memcmp(der_real, der_foreign, (size_t)n_real), 0);
	OPENSSL_free(der_real);
	OPENSSL_free(der_foreign);
	ca_sha256(pki.civitas.cert, fp_real);
	ca_sha256(pki.foreign.cert, fp_foreign);
	CU_ASSERT_NOT_EQUAL(memcmp(fp_real, fp_foreign, 32), 0);

	check_leaf(p, make_leaf(&pki.foreign, "civitas-air-001", 0x00abc12), "civitas-air-001", &r,
	           CMQ_REASON_CERT_ISSUER_UNKNOWN);
	CU_ASSERT_PTR_NULL(r.who.vendor);
	CU_ASSERT_STRING_EQUAL(r.identity, "");
	/* And the real CA's leaf with the same CN and serial still works. */
	check_leaf(p, make_leaf(&pki.civitas, "civitas-air-001", 0x00abc12), "civitas-air-001", &r,
	           CMQ_REASON_OK);
	done(p, live);
}

/* ---- certificate connections: operators ---- */

static void TEST_operator_certificate(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;
	uint8_t fp[32];

	check_leaf(p, make_leaf(&pki.operators, "gateway", 0x10), "gateway-1", &r, CMQ_REASON_OK);
	CU_ASSERT_EQUAL(r.who.kind, CMQ_PRINCIPAL_OPERATOR);
	CU_ASSERT_PTR_EQUAL(r.who.op, cmq_policy_operator_find(p, "gateway", 7));
	CU_ASSERT_PTR_NULL(r.who.vendor);
	CU_ASSERT_PTR_EQUAL(r.who.role, &p->roles[CMQ_ROLE_GATEWAY]);
	CU_ASSERT_STRING_EQUAL(r.identity, "gateway");
	CU_ASSERT_STRING_EQUAL(r.serial, "10");
	ca_sha256(pki.operators.cert, fp);
	CU_ASSERT_EQUAL(memcmp(r.ca_sha256, fp, 32), 0);
	/* Certificate-only operator. */
	check_leaf(p, make_leaf(&pki.operators, "admin", 0x11), "admin", &r, CMQ_REASON_OK);
	CU_ASSERT_PTR_EQUAL(r.who.role, &p->roles[CMQ_ROLE_ADMIN]);
	/* Operators still need an acceptable client id. */
	check_leaf(p, make_leaf(&pki.operators, "admin", 0x11), "admin/1", &r,
	           CMQ_REASON_CLIENT_ID_INVALID);
	check_leaf(p, make_leaf(&pki.operators, "admin", 0x11), NULL, &r,
	           CMQ_REASON_CLIENT_ID_INVALID);
	done(p, live);
}

static void TEST_operator_certificate_refusals(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;

	check_leaf(p, make_leaf(&pki.operators, "mallory", 0x12), "mallory", &r,
	           CMQ_REASON_UNKNOWN_OPERATOR);
	/* The operator CA cannot mint devices. */
	check_leaf(p, make_leaf(&pki.operators, "civitas-air-001", 0x13), "civitas-air-001", &r,
	           CMQ_REASON_UNKNOWN_OPERATOR);
	/* dashboard has a password and no "certificate": true. */
	check_leaf(p, make_leaf(&pki.operators, "dashboard", 0x14), "dashboard", &r,
	           CMQ_REASON_CERT_NOT_ALLOWED);
	/* An operator name from a vendor CA is not an operator. */
	check_leaf(p, make_leaf(&pki.nimbus, "admin", 0x15), "admin", &r, CMQ_REASON_CN_PREFIX);
	done(p, live);
}

static void TEST_cert_check_without_policy_or_cert(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;

	make_pki();
	check_leaf(NULL, make_leaf(&pki.civitas, "civitas-air-001", 2), "civitas-air-001", &r,
	           CMQ_REASON_NO_POLICY);
	memset(&r, 0x5a, sizeof(r));
	CU_ASSERT_EQUAL(cmq_connect_check_cert(p, NULL, "civitas-air-001", &r), CMQ_DENY);
	CU_ASSERT_EQUAL(r.reason, CMQ_REASON_NO_CREDENTIALS);
	CU_ASSERT_EQUAL(r.who.kind, CMQ_PRINCIPAL_NONE);
	done(p, live);
}

/* ---- password connections ---- */

static enum cmq_decision pw(const struct cmq_policy *p, const char *user, const char *pass,
                            const char *client_id, struct cmq_connect_result *r,
                            enum cmq_reason want)
{
	enum cmq_decision d;

	memset(r, 0x5a, sizeof(*r));
	d = cmq_connect_check_password(p, user, pass, client_id, r);
	if (r->reason != want)
		fprintf(stderr, "\n  %s: got %s, want %s (%s)", user ? user : "(null)",
		        cmq_reason_name(r->reason), cmq_reason_name(want), r->detail);
	CU_ASSERT_EQUAL(r->reason, want);
	CU_ASSERT_EQUAL(d, want == CMQ_REASON_OK ? CMQ_ALLOW : CMQ_DENY);
	if (want != CMQ_REASON_OK) {
		CU_ASSERT_EQUAL(r->who.kind, CMQ_PRINCIPAL_NONE);
		CU_ASSERT_STRING_EQUAL(r->identity, "");
	}
	CU_ASSERT_STRING_EQUAL(r->serial, "");
	return d;
}

static void TEST_password_right(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;
	static const uint8_t zero[32];

	pw(p, "dashboard", "dash-secret", "dashboard-1", &r, CMQ_REASON_OK);
	CU_ASSERT_EQUAL(r.who.kind, CMQ_PRINCIPAL_OPERATOR);
	CU_ASSERT_PTR_EQUAL(r.who.op, cmq_policy_operator_find(p, "dashboard", 9));
	CU_ASSERT_PTR_EQUAL(r.who.role, &p->roles[CMQ_ROLE_DASHBOARD]);
	CU_ASSERT_PTR_NULL(r.who.vendor);
	CU_ASSERT_STRING_EQUAL(r.identity, "dashboard");
	CU_ASSERT_EQUAL(memcmp(r.ca_sha256, zero, 32), 0);
	pw(p, "traffic-centre", "tc-secret", "traffic-centre-console", &r, CMQ_REASON_OK);
	CU_ASSERT_PTR_EQUAL(r.who.role, cmq_policy_role_find(p, "traffic-control"));
	/* An operator with both methods may use its password. */
	pw(p, "gateway", "gw-secret", "gateway", &r, CMQ_REASON_OK);
	/* ...but still needs an acceptable client id. */
	pw(p, "gateway", "gw-secret", NULL, &r, CMQ_REASON_CLIENT_ID_INVALID);
	pw(p, "gateway", "gw-secret", "gateway#1", &r, CMQ_REASON_CLIENT_ID_INVALID);
	/* An operator's client ids are its username and "<username>-<suffix>": no account can
	 * take over a device's or another account's session by reusing its client id. */
	pw(p, "gateway", "gw-secret", "gw-1", &r, CMQ_REASON_CLIENT_ID_NOT_OWNED);
	pw(p, "gateway", "gw-secret", "gateway-", &r, CMQ_REASON_CLIENT_ID_NOT_OWNED);
	pw(p, "gateway", "gw-secret", "gatewayx", &r, CMQ_REASON_CLIENT_ID_NOT_OWNED);
	pw(p, "dashboard", "dash-secret", "gateway-1", &r, CMQ_REASON_CLIENT_ID_NOT_OWNED);
	pw(p, "dashboard", "dash-secret", "civitas-air-001", &r, CMQ_REASON_CLIENT_ID_NOT_OWNED);
	done(p, live);
}

static void TEST_password_refusals(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;

	pw(p, "dashboard", "dash-secreT", "d", &r, CMQ_REASON_BAD_PASSWORD);
	pw(p, "dashboard", "", "d", &r, CMQ_REASON_BAD_PASSWORD);
	pw(p, "dashboard", NULL, "d", &r, CMQ_REASON_BAD_PASSWORD);
	pw(p, "dashboard", "gw-secret", "d", &r, CMQ_REASON_BAD_PASSWORD); /* another's password */
	pw(p, "mallory", "dash-secret", "d", &r, CMQ_REASON_UNKNOWN_OPERATOR);
	pw(p, "Dashboard", "dash-secret", "d", &r, CMQ_REASON_UNKNOWN_OPERATOR);
	/* Device ids are not operators, even with a right password of someone else. */
	pw(p, "civitas-air-001", "dash-secret", "civitas-air-001", &r, CMQ_REASON_UNKNOWN_OPERATOR);
	pw(p, "admin", "anything", "a", &r, CMQ_REASON_PASSWORD_NOT_ALLOWED);
	pw(p, NULL, "dash-secret", "d", &r, CMQ_REASON_NO_CREDENTIALS);
	pw(p, "dash#board", "dash-secret", "d", &r, CMQ_REASON_USERNAME_INVALID);
	pw(p, "dash+", "x", "d", &r, CMQ_REASON_USERNAME_INVALID);
	pw(p, "a/b", "x", "d", &r, CMQ_REASON_USERNAME_INVALID);
	pw(p, "", "x", "d", &r, CMQ_REASON_USERNAME_INVALID);
	pw(p, "dash\tboard", "x", "d", &r, CMQ_REASON_USERNAME_INVALID);
	pw(NULL, "dashboard", "dash-secret", "d", &r, CMQ_REASON_NO_POLICY);
	done(p, live);
}

/* kiosk's password is "": no password and an over-long one are still not it. */
static void TEST_empty_password(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;
	static char huge[CMQ_PASSWD_MAX_LEN + 2];

	memset(huge, 'x', sizeof(huge) - 1);
	pw(p, "kiosk", "", "kiosk", &r, CMQ_REASON_OK);
	pw(p, "kiosk", NULL, "k", &r, CMQ_REASON_BAD_PASSWORD);
	pw(p, "kiosk", huge, "k", &r, CMQ_REASON_BAD_PASSWORD);
	/* The longest password accepted is checked like any other. */
	huge[CMQ_PASSWD_MAX_LEN] = '\0';
	pw(p, "kiosk", huge, "k", &r, CMQ_REASON_BAD_PASSWORD);
	pw(p, "dashboard", huge, "k", &r, CMQ_REASON_BAD_PASSWORD);
	done(p, live);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

#define TIMING_ROUNDS 21

/* A refusal whose time is measured. */
struct timed_login {
	const char *label;
	const char *user;
	const char *password;
	enum cmq_reason want;
};

/* Median time of three password checks for each login, interleaved round by round. */
static void median_times(const struct cmq_policy *p, const struct timed_login *logins, size_t n,
                         double medians[])
{
	double t[8][TIMING_ROUNDS];
	struct cmq_connect_result r;

	CU_ASSERT_FATAL(n <= 8);
	for (int round = 0; round < TIMING_ROUNDS; round++) {
		for (size_t k = 0; k < n; k++) {
			double t0 = now();

			for (int rep = 0; rep < 3; rep++)
				(void)cmq_connect_check_password(p, logins[k].user,
				                                 logins[k].password, "c", &r);
			t[k][round] = now() - t0;
			CU_ASSERT_EQUAL(r.reason, logins[k].want);
		}
	}
	for (size_t k = 0; k < n; k++) {
		qsort(t[k], TIMING_ROUNDS, sizeof(double), cmp_double);
		medians[k] = t[k][TIMING_ROUNDS / 2];
	}
}

/*
 * Whether an operator exists must not show in the time a refusal takes: an
 * unknown name, an operator without a password, and a known operator given no
 * password or an over-long one must each cost at least half of a real check
 * (the first row). Medians of interleaved rounds keep this robust on a busy
 * machine; the real ratios are about 1.
 */
static void TEST_unknown_user_costs_like_a_real_check(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	static char huge[CMQ_PASSWD_MAX_LEN + 100];
	const struct timed_login logins[] = {
	    {"known, wrong password", "dashboard", "wrong", CMQ_REASON_BAD_PASSWORD},
	    {"unknown name", "mallory", "wrong", CMQ_REASON_UNKNOWN_OPERATOR},
	    {"operator without password", "admin", "wrong", CMQ_REASON_PASSWORD_NOT_ALLOWED},
	    {"known, no password", "dashboard", NULL, CMQ_REASON_BAD_PASSWORD},
	    {"known, over-long password", "dashboard", huge, CMQ_REASON_BAD_PASSWORD},
	    {"unknown, over-long password", "mallory", huge, CMQ_REASON_UNKNOWN_OPERATOR},
	};
	const size_t n = sizeof(logins) / sizeof(logins[0]);
	double m[sizeof(logins) / sizeof(logins[0])];

	memset(huge, 'x', sizeof(huge) - 1);
	median_times(p, logins, n, m);
	for (size_t k = 1; k < n; k++) {
		if (m[k] < 0.5 * m[0])
			fprintf(stderr, "\n  %s: %.3f ms, but a real check: %.3f ms",
			        logins[k].label, m[k] * 1e3, m[0] * 1e3);
		CU_ASSERT(m[k] >= 0.5 * m[0]);
	}
	done(p, live);
}

/* ---- principal resolution ---- */

static void TEST_principal_resolve(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_principal who;
	static const struct {
		const char *name;
		const char *vendor; /* NULL: operator or none */
	} devices[] = {{"civitas-air-001", "civitas"},
	               {"nimbus-air-001", "nimbus"},
	               {"hawkeye-cam-001", "hawkeye"}};

	CU_ASSERT_EQUAL(cmq_principal_resolve(p, "gateway", 7, &who), CMQ_REASON_OK);
	CU_ASSERT_EQUAL(who.kind, CMQ_PRINCIPAL_OPERATOR);
	CU_ASSERT_PTR_EQUAL(who.op, cmq_policy_operator_find(p, "gateway", 7));
	CU_ASSERT_PTR_EQUAL(who.role, &p->roles[CMQ_ROLE_GATEWAY]);
	CU_ASSERT_PTR_NULL(who.vendor);
	CU_ASSERT_EQUAL(cmq_principal_resolve(p, "traffic-centre", 14, &who), CMQ_REASON_OK);
	CU_ASSERT_PTR_EQUAL(who.role, cmq_policy_role_find(p, "traffic-control"));
	CU_ASSERT_EQUAL(who.role->kind, CMQ_ROLE_CUSTOM);

	for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++) {
		memset(&who, 0x5a, sizeof(who));
		CU_ASSERT_EQUAL(
		    cmq_principal_resolve(p, devices[i].name, strlen(devices[i].name), &who),
		    CMQ_REASON_OK);
		CU_ASSERT_EQUAL(who.kind, CMQ_PRINCIPAL_DEVICE);
		CU_ASSERT_PTR_EQUAL(who.vendor, cmq_policy_vendor_find(p, devices[i].vendor));
		CU_ASSERT_PTR_EQUAL(who.role, &p->roles[CMQ_ROLE_SENSOR]);
		CU_ASSERT_PTR_NULL(who.op);
	}
	CU_ASSERT_EQUAL(cmq_policy_vendor_find(p, "hawkeye")->tier, CMQ_TIER_BLOCKED);

	/* Only the first len bytes count. */
	CU_ASSERT_EQUAL(cmq_principal_resolve(p, "gatewayX", 7, &who), CMQ_REASON_OK);
	CU_ASSERT_EQUAL(who.kind, CMQ_PRINCIPAL_OPERATOR);

	static const char *const nobody[] = {"mallory", "civitas-", "civitas",      "Gateway",
	                                     "",        "nimbus",   "acme-air-001", "gateway "};
	for (size_t i = 0; i < sizeof(nobody) / sizeof(nobody[0]); i++) {
		memset(&who, 0x5a, sizeof(who));
		CU_ASSERT_EQUAL(cmq_principal_resolve(p, nobody[i], strlen(nobody[i]), &who),
		                CMQ_REASON_NO_IDENTITY);
		CU_ASSERT_EQUAL(who.kind, CMQ_PRINCIPAL_NONE);
		CU_ASSERT_PTR_NULL(who.vendor);
		CU_ASSERT_PTR_NULL(who.op);
		CU_ASSERT_PTR_NULL(who.role);
	}
	CU_ASSERT_EQUAL(cmq_principal_resolve(p, NULL, 0, &who), CMQ_REASON_NO_IDENTITY);
	CU_ASSERT_EQUAL(cmq_principal_resolve(NULL, "gateway", 7, &who), CMQ_REASON_NO_IDENTITY);
	CU_ASSERT_EQUAL(who.kind, CMQ_PRINCIPAL_NONE);
	done(p, live);
}

static void TEST_checks_allocate_nothing(void)
{
	long live;
	struct cmq_policy *p = load(&live);
	struct cmq_connect_result r;
	struct cmq_principal who;
	X509 *leaf = make_leaf(&pki.civitas, "civitas-air-001", 0x77);
	long before = cmq_test_live_allocations();

	cmq_test_fail_after(0);
	CU_ASSERT_EQUAL(cmq_connect_check_cert(p, leaf, "civitas-air-001", &r), CMQ_ALLOW);
	CU_ASSERT_EQUAL(cmq_connect_check_password(p, "dashboard", "dash-secret", "dashboard", &r),
	                CMQ_ALLOW);
	CU_ASSERT_EQUAL(cmq_principal_resolve(p, "nimbus-air-001", 14, &who), CMQ_REASON_OK);
	CU_ASSERT_FALSE(cmq_test_failure_fired());
	cmq_test_fail_after(-1);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
	X509_free(leaf);
	done(p, live);
}

static const struct cmq_test_case cases[] = {
    {"device of a trusted vendor is admitted", TEST_device_of_trusted_vendor_is_admitted},
    {"client id must equal the CN", TEST_client_id_must_equal_cn},
    {"client id missing or invalid", TEST_client_id_missing_or_invalid},
    {"blocked vendor is refused", TEST_blocked_vendor_is_refused},
    {"revoked serial is refused", TEST_revoked_serial_is_refused},
    {"negative serial", TEST_negative_serial},
    {"CN without the vendor prefix", TEST_cn_without_vendor_prefix},
    {"unacceptable CN", TEST_unacceptable_cn},
    {"CN not UTF-8", TEST_cn_not_utf8},
    {"longest acceptable CN", TEST_longest_acceptable_cn},
    {"no single CN", TEST_no_single_cn},
    {"unpinned CA in the bundle is unknown", TEST_unpinned_ca_in_bundle_is_unknown},
    {"foreign CA with a copied subject is unknown", TEST_foreign_ca_with_copied_subject_is_unknown},
    {"operator certificate", TEST_operator_certificate},
    {"operator certificate refusals", TEST_operator_certificate_refusals},
    {"cert check without policy or cert", TEST_cert_check_without_policy_or_cert},
    {"password right", TEST_password_right},
    {"password refusals", TEST_password_refusals},
    {"empty password", TEST_empty_password},
    {"unknown user costs like a real check", TEST_unknown_user_costs_like_a_real_check},
    {"principal resolve", TEST_principal_resolve},
    {"checks allocate nothing", TEST_checks_allocate_nothing},
    {NULL, NULL},
};

int main(void)
{
	return cmq_test_run("trust", cases);
}
