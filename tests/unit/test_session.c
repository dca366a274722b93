/*
 * test_session.c - the table of admitted clients (core/session.c) and how a
 * reloaded policy reaches them (cmq_session_check, cmq_sessions_revalidate).
 *
 * Seven clients are admitted against a base policy by the real connect checks
 * (certificates made in-process with OpenSSL 3, passwords hashed at run time):
 * two civitas devices, one nimbus device, and operators by certificate and by
 * password. The base policy is then freed - entries must not borrow from it -
 * and variants of vendors.json / operators.json written at run time are
 * loaded, each changing one thing, to see exactly which sessions each change
 * affects and why.
 */
#include "cmq_test.h"

#include "error.h"
#include "passwd.h"
#include "policy.h"
#include "session.h"
#include "trust.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- certificates and files (made once, freed at exit) ---- */

struct test_ca {
	X509 *cert;
	EVP_PKEY *key;
	char fp[100]; /* SHA-256 fingerprint, AB:CD:... */
};

static struct {
	bool made;
	EVP_PKEY *leaf_key;
	struct test_ca civitas, nimbus, civitas_next, operators;
	char bundle[4096];
	char policy[2048];
	char hash_gw[CMQ_PASSWD_STR_MAX], hash_dash[CMQ_PASSWD_STR_MAX],
	    hash_dash2[CMQ_PASSWD_STR_MAX], hash_tc[CMQ_PASSWD_STR_MAX];
} pki;

static X509 *sign_cert(const char *cn, EVP_PKEY *pub, const struct test_ca *issuer,
                       EVP_PKEY *issuer_key, uint64_t serial)
{
	X509 *c = X509_new();
	X509_NAME *name = X509_NAME_new();

	CU_ASSERT_FATAL(c != NULL && name != NULL);
	CU_ASSERT_FATAL(X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
	                                           (const unsigned char *)cn, -1, -1, 0) == 1);
	CU_ASSERT_FATAL(X509_set_version(c, 2) == 1);
	CU_ASSERT_FATAL(ASN1_INTEGER_set_uint64(X509_get_serialNumber(c), serial) == 1);
	CU_ASSERT_FATAL(X509_set_subject_name(c, name) == 1);
	CU_ASSERT_FATAL(
	    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer->cert) : name) == 1);
	CU_ASSERT_FATAL(X509_gmtime_adj(X509_getm_notBefore(c), -3600) != NULL);
	CU_ASSERT_FATAL(X509_gmtime_adj(X509_getm_notAfter(c), 86400L * 365) != NULL);
	CU_ASSERT_FATAL(X509_set_pubkey(c, pub) == 1);
	cmq_test_add_ext(c, issuer ? issuer->cert : c, NID_basic_constraints,
	                 issuer ? "critical,CA:FALSE" : "critical,CA:TRUE");
	CU_ASSERT_FATAL(X509_sign(c, issuer_key, EVP_sha256()) > 0);
	X509_NAME_free(name);
	return c;
}

static struct test_ca make_ca(const char *subject_cn)
{
	struct test_ca ca;
	uint8_t fp[32];
	unsigned n = 0;

	ca.key = EVP_EC_gen("P-256");
	CU_ASSERT_PTR_NOT_NULL_FATAL(ca.key);
	ca.cert = sign_cert(subject_cn, ca.key, NULL, ca.key, 1);
	CU_ASSERT_FATAL(X509_digest(ca.cert, EVP_sha256(), fp, &n) == 1 && n == 32);
	cmq_fingerprint_format(fp, ca.fp, sizeof(ca.fp));
	return ca;
}

static X509 *make_leaf(const struct test_ca *ca, const char *cn, uint64_t serial)
{
	return sign_cert(cn, pki.leaf_key, ca, ca->key, serial);
}

static void hash_password(const char *pw, char out[CMQ_PASSWD_STR_MAX])
{
	struct cmq_pbkdf2 h;

	CU_ASSERT_FATAL(cmq_passwd_hash(pw, strlen(pw), CMQ_PBKDF2_DEFAULT_ITERATIONS, &h) ==
	                CMQ_OK);
	CU_ASSERT_FATAL(cmq_passwd_format(&h, out, CMQ_PASSWD_STR_MAX) == CMQ_OK);
}

static void free_pki(void)
{
	struct test_ca *cas[] = {&pki.civitas, &pki.nimbus, &pki.civitas_next, &pki.operators};

	for (size_t i = 0; i < sizeof(cas) / sizeof(cas[0]); i++) {
		X509_free(cas[i]->cert);
		EVP_PKEY_free(cas[i]->key);
	}
	EVP_PKEY_free(pki.leaf_key);
}

static void make_pki(void)
{
	BIO *bio;
	BUF_MEM *mem;
	const char *src = getenv("CMQ_SRC");

	if (pki.made)
		return;
	pki.made = true;
	atexit(free_pki);
	pki.leaf_key = EVP_EC_gen("P-256");
	CU_ASSERT_PTR_NOT_NULL_FATAL(pki.leaf_key);
	pki.civitas = make_ca("Civitas Device CA");
	pki.nimbus = make_ca("Nimbus Device CA");
	pki.civitas_next = make_ca("Civitas Device CA 2027");
	pki.operators = make_ca("Example City Operator CA");
	bio = BIO_new(BIO_s_mem());
	CU_ASSERT_PTR_NOT_NULL_FATAL(bio);
	CU_ASSERT_FATAL(PEM_write_bio_X509(bio, pki.civitas.cert) == 1);
	CU_ASSERT_FATAL(PEM_write_bio_X509(bio, pki.nimbus.cert) == 1);
	CU_ASSERT_FATAL(PEM_write_bio_X509(bio, pki.civitas_next.cert) == 1);
	CU_ASSERT_FATAL(PEM_write_bio_X509(bio, pki.operators.cert) == 1);
	CU_ASSERT_FATAL(BIO_write(bio, "", 1) == 1);
	BIO_get_mem_ptr(bio, &mem);
	snprintf(pki.bundle, sizeof(pki.bundle), "%s", cmq_test_write_file("ca.pem", mem->data));
	BIO_free(bio);
	snprintf(pki.policy, sizeof(pki.policy), "%s/config/policy.json", src ? src : ".");
	hash_password("gw-secret", pki.hash_gw);
	hash_password("dash-secret", pki.hash_dash);
	hash_password("dash-secret", pki.hash_dash2); /* same password, new salt */
	hash_password("tc-secret", pki.hash_tc);
}

/* ---- policy variants ---- */

struct vendor_spec {
	const char *id; /* NULL: vendor left out */
	const char *tier;
	const char *prefix;
	const char *pins;    /* JSON array body of fingerprints */
	const char *revoked; /* JSON array body */
};

struct operator_spec {
	const char *username; /* NULL ends the list */
	const char *role;
	const char *hash; /* NULL: no password */
	bool cert;
	const char *description;
};

struct variant {
	struct vendor_spec civitas, nimbus;
	struct operator_spec ops[6];
	bool pin_operator_ca;
};

static char pin_civ[110], pin_nim[110], pin_next[110], pin_civ_and_next[220], pin_nim_and_civ[220];

static struct variant base_variant(void)
{
	struct variant v;

	make_pki();
	snprintf(pin_civ, sizeof(pin_civ), "\"%s\"", pki.civitas.fp);
	snprintf(pin_nim, sizeof(pin_nim), "\"%s\"", pki.nimbus.fp);
	snprintf(pin_next, sizeof(pin_next), "\"%s\"", pki.civitas_next.fp);
	snprintf(pin_civ_and_next, sizeof(pin_civ_and_next), "\"%s\", \"%s\"", pki.civitas_next.fp,
	         pki.civitas.fp);
	snprintf(pin_nim_and_civ, sizeof(pin_nim_and_civ), "\"%s\", \"%s\"", pki.nimbus.fp,
	         pki.civitas.fp);
	memset(&v, 0, sizeof(v));
	v.civitas = (struct vendor_spec){"civitas", "trusted", "civitas-", pin_civ, "\"DEAD\""};
	v.nimbus = (struct vendor_spec){"nimbus", "restricted", "nimbus-", pin_nim, ""};
	v.ops[0] = (struct operator_spec){"gateway", "gateway", pki.hash_gw, true, "gw"};
	v.ops[1] = (struct operator_spec){"dashboard", "dashboard", pki.hash_dash, false, "dash"};
	v.ops[2] = (struct operator_spec){"admin", "admin", NULL, true, "admin"};
	v.ops[3] =
	    (struct operator_spec){"traffic-centre", "traffic-control", pki.hash_tc, false, "tc"};
	v.pin_operator_ca = true;
	return v;
}

static size_t vendor_json(char *buf, size_t len, const struct vendor_spec *s, bool comma)
{
	int n;

	if (s->id == NULL)
		return 0;
	n = snprintf(buf, len,
	             "%s {\"id\": \"%s\", \"name\": \"%s Ltd\", \"tier\": \"%s\",\n"
	             "  \"device_id_prefix\": \"%s\", \"ca_sha256\": [%s],\n"
	             "  \"categories\": [\"environment\", \"mobility\"], \"revoked_serials\": "
	             "[%s]}\n",
	             comma ? "," : "", s->id, s->id, s->tier, s->prefix, s->pins, s->revoked);
	CU_ASSERT_FATAL(n > 0 && (size_t)n < len);
	return (size_t)n;
}

/* Load a variant (with the CA bundle); NULL if it does not load. */
static struct cmq_policy *load_variant(const struct variant *v)
{
	static char text[16384];
	char vendors[4096], operators[4096];
	struct cmq_policy_files files;
	size_t off;

	off = (size_t)snprintf(text, sizeof(text), "{\"vendors\": [\n");
	off += vendor_json(text + off, sizeof(text) - off, &v->civitas, false);
	off += vendor_json(text + off, sizeof(text) - off, &v->nimbus, v->civitas.id != NULL);
	snprintf(text + off, sizeof(text) - off, "]}\n");
	snprintf(vendors, sizeof(vendors), "%s", cmq_test_write_file("vendors.json", text));

	off = (size_t)snprintf(text, sizeof(text),
	                       "{\"operator_ca_sha256\": [%s%s%s],\n"
	                       " \"operators\": [\n",
	                       v->pin_operator_ca ? "\"" : "",
	                       v->pin_operator_ca ? pki.operators.fp : "",
	                       v->pin_operator_ca ? "\"" : "");
	for (size_t i = 0; v->ops[i].username != NULL; i++) {
		const struct operator_spec *o = &v->ops[i];
		int n =
		    snprintf(text + off, sizeof(text) - off,
		             "%s  {\"username\": \"%s\", \"role\": \"%s\", \"certificate\": %s, "
		             "\"description\": \"%s\"%s%s%s}\n",
		             i ? "," : "", o->username, o->role, o->cert ? "true" : "false",
		             o->description, o->hash ? ", \"password_hash\": \"" : "",
		             o->hash ? o->hash : "", o->hash ? "\"" : "");

		CU_ASSERT_FATAL(n > 0 && (size_t)n < sizeof(text) - off);
		off += (size_t)n;
	}
	snprintf(text + off, sizeof(text) - off, "]}\n");
	snprintf(operators, sizeof(operators), "%s", cmq_test_write_file("operators.json", text));

	files.policy = pki.policy;
	files.vendors = vendors;
	files.operators = operators;
	files.ca_file = pki.bundle;
	return cmq_test_load_clean(&files, true);
}

/* ---- the admitted clients ---- */

static const char clients[8]; /* their addresses stand for the broker's client objects */

enum { CIV1, CIV2, NIM1, GW, DASH, TC, ADMIN, N_CLIENTS };

static const char *const client_ids[N_CLIENTS] = {
    "civitas-air-001", "civitas-air-002",  "nimbus-air-001", "gateway-1",
    "dashboard-1",     "traffic-centre-1", "admin-1"};

/* Admit every client against the base policy, which is freed before returning. */
static void admit_all(struct cmq_sessions *s)
{
	struct variant v = base_variant();
	struct cmq_policy *p = load_variant(&v);
	struct cmq_connect_result r;
	X509 *leaf;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	cmq_sessions_init(s);
	static const struct {
		int who;
		const struct test_ca *ca;
		const char *cn;
		uint64_t serial;
	} certs[] = {{CIV1, &pki.civitas, "civitas-air-001", 0x101},
	             {CIV2, &pki.civitas, "civitas-air-002", 0x102},
	             {NIM1, &pki.nimbus, "nimbus-air-001", 0x201},
	             {GW, &pki.operators, "gateway", 0x301},
	             {ADMIN, &pki.operators, "admin", 0x302}};
	for (size_t i = 0; i < sizeof(certs) / sizeof(certs[0]); i++) {
		leaf = make_leaf(certs[i].ca, certs[i].cn, certs[i].serial);
		CU_ASSERT_EQUAL_FATAL(cmq_connect_check_cert(p, leaf, client_ids[certs[i].who], &r),
		                      CMQ_ALLOW);
		X509_free(leaf);
		CU_ASSERT_EQUAL_FATAL(
		    cmq_sessions_put(s, &clients[certs[i].who], client_ids[certs[i].who], &r, true),
		    CMQ_OK);
	}
	CU_ASSERT_EQUAL_FATAL(
	    cmq_connect_check_password(p, "dashboard", "dash-secret", client_ids[DASH], &r),
	    CMQ_ALLOW);
	CU_ASSERT_EQUAL_FATAL(cmq_sessions_put(s, &clients[DASH], client_ids[DASH], &r, false),
	                      CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(
	    cmq_connect_check_password(p, "traffic-centre", "tc-secret", client_ids[TC], &r),
	    CMQ_ALLOW);
	CU_ASSERT_EQUAL_FATAL(cmq_sessions_put(s, &clients[TC], client_ids[TC], &r, false), CMQ_OK);
	CU_ASSERT_EQUAL(s->count, N_CLIENTS);
	cmq_policy_free(p);
}

struct kick {
	int calls[N_CLIENTS];
	enum cmq_reason why[N_CLIENTS];
	int strangers;
};

static void collect(const struct cmq_session *e, enum cmq_reason why, void *ud)
{
	struct kick *k = ud;

	for (int i = 0; i < N_CLIENTS; i++) {
		if (strcmp(e->client_id, client_ids[i]) == 0 && e->client == &clients[i]) {
			k->calls[i]++;
			k->why[i] = why;
			return;
		}
	}
	k->strangers++;
}

/*
 * Check every session against v: want[i] is the reason for client i (OK if
 * unaffected). Both cmq_session_check and cmq_sessions_revalidate must agree,
 * and revalidate must call back exactly once for each affected entry.
 */
static void expect(const struct variant *v, const enum cmq_reason want[N_CLIENTS])
{
	long live = cmq_test_live_allocations();
	struct cmq_sessions s;
	struct cmq_policy *p;
	struct kick k;

	admit_all(&s);
	p = load_variant(v);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	for (int i = 0; i < N_CLIENTS; i++) {
		const struct cmq_session *e = cmq_sessions_find(&s, client_ids[i]);
		enum cmq_reason got;

		CU_ASSERT_PTR_NOT_NULL_FATAL(e);
		got = cmq_session_check(p, e);
		if (got != want[i])
			fprintf(stderr, "\n  %s: got %s, want %s", client_ids[i],
			        cmq_reason_name(got), cmq_reason_name(want[i]));
		CU_ASSERT_EQUAL(got, want[i]);
	}
	memset(&k, 0, sizeof(k));
	cmq_sessions_revalidate(&s, p, collect, &k);
	CU_ASSERT_EQUAL(k.strangers, 0);
	for (int i = 0; i < N_CLIENTS; i++) {
		CU_ASSERT_EQUAL(k.calls[i], want[i] == CMQ_REASON_OK ? 0 : 1);
		if (want[i] != CMQ_REASON_OK) {
			CU_ASSERT_EQUAL(k.why[i], want[i]);
		}
	}
	cmq_policy_free(p);
	cmq_sessions_cleanup(&s);
	CU_ASSERT_EQUAL(s.count, 0);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), live);
}

#define OK_ALL                                                                                     \
	{                                                                                          \
		[CIV1] = CMQ_REASON_OK, [CIV2] = CMQ_REASON_OK, [NIM1] = CMQ_REASON_OK,            \
		[GW] = CMQ_REASON_OK, [DASH] = CMQ_REASON_OK, [TC] = CMQ_REASON_OK,                \
		[ADMIN] = CMQ_REASON_OK                                                            \
	}

/* ---- the table ---- */

static void TEST_put_find_remove(void)
{
	long live = cmq_test_live_allocations();
	struct cmq_sessions s;
	const struct cmq_session *e;
	uint8_t fp[32];
	unsigned n = 0;

	admit_all(&s); /* the policy they were admitted by is gone already */
	e = cmq_sessions_find(&s, "civitas-air-001");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_PTR_EQUAL(e->client, &clients[CIV1]);
	CU_ASSERT_STRING_EQUAL(e->client_id, "civitas-air-001");
	CU_ASSERT_STRING_EQUAL(e->username, "civitas-air-001");
	CU_ASSERT_EQUAL(e->kind, CMQ_PRINCIPAL_DEVICE);
	CU_ASSERT_STRING_EQUAL(e->vendor_id, "civitas");
	CU_ASSERT_STRING_EQUAL(e->serial, "101");
	CU_ASSERT_TRUE(e->by_cert);
	CU_ASSERT_FATAL(X509_digest(pki.civitas.cert, EVP_sha256(), fp, &n) == 1);
	CU_ASSERT_EQUAL(memcmp(e->ca_sha256, fp, 32), 0);

	e = cmq_sessions_find(&s, "dashboard-1");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(e->username, "dashboard");
	CU_ASSERT_EQUAL(e->kind, CMQ_PRINCIPAL_OPERATOR);
	CU_ASSERT_PTR_NULL(e->vendor_id);
	CU_ASSERT_STRING_EQUAL(e->serial, "");
	CU_ASSERT_FALSE(e->by_cert);

	e = cmq_sessions_find(&s, "gateway-1");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(e->username, "gateway");
	CU_ASSERT_TRUE(e->by_cert);

	CU_ASSERT_PTR_NULL(cmq_sessions_find(&s, "civitas-air-003"));
	CU_ASSERT_PTR_NULL(cmq_sessions_find(&s, "civitas-air-00"));
	CU_ASSERT_PTR_NULL(cmq_sessions_find(&s, "dashboard")); /* keyed by client id */
	CU_ASSERT_PTR_NULL(cmq_sessions_find(&s, NULL));

	/* Removal needs the owning client; unknown ids and NULL are ignored. */
	cmq_sessions_remove(&s, &clients[CIV2], "civitas-air-001");
	CU_ASSERT_PTR_NOT_NULL(cmq_sessions_find(&s, "civitas-air-001"));
	cmq_sessions_remove(&s, &clients[CIV1], "civitas-air-001");
	CU_ASSERT_PTR_NULL(cmq_sessions_find(&s, "civitas-air-001"));
	CU_ASSERT_EQUAL(s.count, N_CLIENTS - 1);
	cmq_sessions_remove(&s, &clients[CIV1], "civitas-air-001");
	cmq_sessions_remove(&s, &clients[CIV1], "nope");
	cmq_sessions_remove(&s, &clients[CIV1], NULL);
	CU_ASSERT_EQUAL(s.count, N_CLIENTS - 1);
	/* Everyone else is still found after the deletion shuffled the table. */
	for (int i = 0; i < N_CLIENTS; i++) {
		if (i != CIV1) {
			CU_ASSERT_PTR_NOT_NULL(cmq_sessions_find(&s, client_ids[i]));
		}
	}
	for (int i = 0; i < N_CLIENTS; i++)
		cmq_sessions_remove(&s, &clients[i], client_ids[i]);
	CU_ASSERT_EQUAL(s.count, 0);
	cmq_sessions_cleanup(&s);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), live);
}

static void TEST_put_refuses_missing_client_id(void)
{
	long live = cmq_test_live_allocations();
	struct cmq_sessions s;
	struct cmq_connect_result r;

	memset(&r, 0, sizeof(r));
	snprintf(r.identity, sizeof(r.identity), "dashboard");
	r.who.kind = CMQ_PRINCIPAL_OPERATOR;
	cmq_sessions_init(&s);
	CU_ASSERT_EQUAL(cmq_sessions_put(&s, &clients[0], NULL, &r, false), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(s.count, 0);
	cmq_sessions_cleanup(&s);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), live);
}

/* The same client id connecting again replaces the entry; the old connection's late
 * disconnect must not remove the new one. */
static void TEST_takeover(void)
{
	long live = cmq_test_live_allocations();
	struct cmq_sessions s;
	const struct cmq_session *e;
	struct cmq_connect_result r;
	char id[32];

	admit_all(&s);
	e = cmq_sessions_find(&s, "dashboard-1");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	r = (struct cmq_connect_result){0};
	snprintf(r.identity, sizeof(r.identity), "traffic-centre");
	r.who.kind = CMQ_PRINCIPAL_OPERATOR;
	/* The key is copied: the caller's buffer may change afterwards. */
	snprintf(id, sizeof(id), "dashboard-1");
	CU_ASSERT_EQUAL(cmq_sessions_put(&s, &clients[7], id, &r, false), CMQ_OK);
	memset(id, 'x', sizeof(id) - 1);
	CU_ASSERT_EQUAL(s.count, N_CLIENTS);
	e = cmq_sessions_find(&s, "dashboard-1");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_PTR_EQUAL(e->client, &clients[7]);
	CU_ASSERT_STRING_EQUAL(e->username, "traffic-centre");

	cmq_sessions_remove(&s, &clients[DASH], "dashboard-1"); /* the old connection goes */
	e = cmq_sessions_find(&s, "dashboard-1");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_PTR_EQUAL(e->client, &clients[7]);
	CU_ASSERT_EQUAL(s.count, N_CLIENTS);

	cmq_sessions_remove(&s, &clients[7], "dashboard-1");
	CU_ASSERT_PTR_NULL(cmq_sessions_find(&s, "dashboard-1"));
	CU_ASSERT_EQUAL(s.count, N_CLIENTS - 1);
	cmq_sessions_cleanup(&s);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), live);
}

/* ---- revalidation against a reloaded policy ---- */

static void TEST_unchanged_policy_keeps_everyone(void)
{
	struct variant v = base_variant();
	static const enum cmq_reason want[N_CLIENTS] = OK_ALL;

	expect(&v, want);
	/* Descriptions are not credentials. */
	v.ops[1].description = "the new dashboard";
	expect(&v, want);
	/* A second CA pinned next to the one in use (a CA rollover) keeps everyone. */
	v = base_variant();
	v.civitas.pins = pin_civ_and_next;
	expect(&v, want);
}

static void TEST_no_policy(void)
{
	struct cmq_sessions s;

	admit_all(&s);
	CU_ASSERT_EQUAL(cmq_session_check(NULL, cmq_sessions_find(&s, "gateway-1")),
	                CMQ_REASON_NO_POLICY);
	cmq_sessions_cleanup(&s);
}

static void TEST_vendor_blocked(void)
{
	struct variant v = base_variant();
	enum cmq_reason want[N_CLIENTS] = OK_ALL;

	v.civitas.tier = "blocked";
	want[CIV1] = want[CIV2] = CMQ_REASON_VENDOR_BLOCKED;
	expect(&v, want);
	/* Restricting is not a reason to kick: decisions catch what is no longer allowed. */
	v = base_variant();
	v.civitas.tier = "restricted";
	want[CIV1] = want[CIV2] = CMQ_REASON_OK;
	expect(&v, want);
}

static void TEST_serial_revoked(void)
{
	struct variant v = base_variant();
	enum cmq_reason want[N_CLIENTS] = OK_ALL;

	v.civitas.revoked = "\"DEAD\", \"00:01:01\"";
	want[CIV1] = CMQ_REASON_SERIAL_REVOKED;
	expect(&v, want);
	/* The same serial revoked by another vendor is not this device's. */
	v = base_variant();
	v.nimbus.revoked = "\"0101\"";
	want[CIV1] = CMQ_REASON_OK;
	expect(&v, want);
}

static void TEST_vendor_removed(void)
{
	struct variant v = base_variant();
	enum cmq_reason want[N_CLIENTS] = OK_ALL;

	v.civitas.id = NULL;
	want[CIV1] = want[CIV2] = CMQ_REASON_NO_IDENTITY;
	expect(&v, want);
	/* A changed prefix no longer names these devices. */
	v = base_variant();
	v.civitas.prefix = "civ-";
	expect(&v, want);
	/* Nor does the same prefix under another vendor id. */
	v = base_variant();
	v.civitas.id = "civitas2";
	expect(&v, want);
}

static void TEST_ca_replaced(void)
{
	struct variant v = base_variant();
	enum cmq_reason want[N_CLIENTS] = OK_ALL;

	v.civitas.pins = pin_next;
	want[CIV1] = want[CIV2] = CMQ_REASON_CERT_ISSUER_UNKNOWN;
	expect(&v, want);
	/* The old CA now pinned by another vendor does not vouch for civitas devices. */
	v.nimbus.pins = pin_nim_and_civ;
	expect(&v, want);
}

static void TEST_operator_removed(void)
{
	struct variant v = base_variant();
	enum cmq_reason want[N_CLIENTS] = OK_ALL;

	v.ops[1] = v.ops[3]; /* dashboard goes, traffic-centre moves up */
	v.ops[3] = (struct operator_spec){0};
	want[DASH] = CMQ_REASON_UNKNOWN_OPERATOR;
	expect(&v, want);
}

static void TEST_operator_changed(void)
{
	struct variant v = base_variant();
	enum cmq_reason want[N_CLIENTS] = OK_ALL;

	/* Role changed. */
	v.ops[1].role = "admin";
	want[DASH] = CMQ_REASON_CREDENTIALS_CHANGED;
	expect(&v, want);
	/* Same password, new hash (another salt). */
	v = base_variant();
	v.ops[1].hash = pki.hash_dash2;
	expect(&v, want);
	/* Certificate login withdrawn from an operator that connected with one. */
	v = base_variant();
	v.ops[0].cert = false;
	want[DASH] = CMQ_REASON_OK;
	want[GW] = CMQ_REASON_CREDENTIALS_CHANGED;
	expect(&v, want);
	/* A custom role's operator: role changed to another custom role. */
	v = base_variant();
	v.ops[3].role = "maintenance";
	want[GW] = CMQ_REASON_OK;
	want[TC] = CMQ_REASON_CREDENTIALS_CHANGED;
	expect(&v, want);
}

static void TEST_operator_ca_unpinned(void)
{
	struct variant v = base_variant();
	enum cmq_reason want[N_CLIENTS] = OK_ALL;

	v.pin_operator_ca = false;
	want[GW] = want[ADMIN] = CMQ_REASON_CERT_ISSUER_UNKNOWN;
	expect(&v, want);
}

static void TEST_several_changes_at_once(void)
{
	struct variant v = base_variant();
	enum cmq_reason want[N_CLIENTS] = OK_ALL;

	v.civitas.revoked = "\"102\"";
	v.nimbus.tier = "blocked";
	v.ops[2].role = "dashboard";
	want[CIV2] = CMQ_REASON_SERIAL_REVOKED;
	want[NIM1] = CMQ_REASON_VENDOR_BLOCKED;
	want[ADMIN] = CMQ_REASON_CREDENTIALS_CHANGED;
	expect(&v, want);
}

/* ---- out of memory ---- */

/*
 * Fail allocation n of cmq_sessions_put for n = 0, 1, ... until it succeeds:
 * each failure is CMQ_ERR_NOMEM and leaves the table as it was, nothing leaks.
 */
static void oom_sweep(struct cmq_sessions *s, const void *client, const char *client_id,
                      const struct cmq_connect_result *r, bool by_cert)
{
	const struct cmq_session *old = cmq_sessions_find(s, client_id);
	const void *old_client = old ? old->client : NULL;
	size_t count = s->count;
	long n, live = cmq_test_live_allocations();
	int rc = CMQ_ERR_NOMEM;

	for (n = 0; n < 100; n++) {
		const struct cmq_session *e;
		bool fired;

		cmq_test_fail_after(n);
		rc = cmq_sessions_put(s, client, client_id, r, by_cert);
		fired = cmq_test_failure_fired();
		cmq_test_fail_after(-1); /* disarm (this also clears the fired flag) */
		if (rc == CMQ_OK) {
			CU_ASSERT_FALSE(fired);
			break;
		}
		CU_ASSERT_TRUE(fired);
		CU_ASSERT_EQUAL(rc, CMQ_ERR_NOMEM);
		CU_ASSERT_EQUAL(s->count, count);
		CU_ASSERT_EQUAL(cmq_test_live_allocations(), live);
		e = cmq_sessions_find(s, client_id);
		if (old_client == NULL) {
			CU_ASSERT_PTR_NULL(e);
		} else {
			CU_ASSERT_PTR_NOT_NULL_FATAL(e);
			CU_ASSERT_PTR_EQUAL(e->client, old_client);
		}
	}
	CU_ASSERT_EQUAL(rc, CMQ_OK);
	CU_ASSERT(n >= 3); /* entry, client id, username: at least three allocations */
	CU_ASSERT_EQUAL(s->count, old_client ? count : count + 1);
	CU_ASSERT_PTR_EQUAL(cmq_sessions_find(s, client_id)->client, client);
}

/* The broker re-checks every client it knows at a reload: connected ones by their session,
 * offline ones (another client object, or none in the table) by their username. */
static void TEST_recheck_at_reload(void)
{
	long live = cmq_test_live_allocations();
	static const char offline; /* a client object the table does not know */
	struct variant v = base_variant();
	struct cmq_sessions s;
	struct cmq_policy *p;
	enum cmq_reason why;

	admit_all(&s);
	v.civitas.revoked = "\"0101\"";
	p = load_variant(&v);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	/* Connected, judged by the session: CIV1's serial is now revoked, NIM1 is fine. */
	CU_ASSERT_EQUAL(
	    cmq_session_recheck(p, &s, &clients[CIV1], client_ids[CIV1], "civitas-air-001", &why),
	    CMQ_DENY);
	CU_ASSERT_EQUAL(why, CMQ_REASON_SERIAL_REVOKED);
	CU_ASSERT_EQUAL(
	    cmq_session_recheck(p, &s, &clients[NIM1], client_ids[NIM1], "nimbus-air-001", &why),
	    CMQ_ALLOW);
	CU_ASSERT_EQUAL(why, CMQ_REASON_OK);
	/* Offline sessions, judged by their username alone. */
	CU_ASSERT_EQUAL(
	    cmq_session_recheck(p, &s, &offline, "civitas-air-009", "civitas-air-009", &why),
	    CMQ_ALLOW);
	CU_ASSERT_EQUAL(cmq_session_recheck(p, &s, &offline, "gateway-9", "gateway", &why),
	                CMQ_ALLOW);
	CU_ASSERT_EQUAL(cmq_session_recheck(p, &s, &offline, "x", "mallory", &why), CMQ_DENY);
	CU_ASSERT_EQUAL(why, CMQ_REASON_NO_IDENTITY);
	CU_ASSERT_EQUAL(cmq_session_recheck(p, &s, &offline, "x", NULL, &why), CMQ_DENY);
	CU_ASSERT_EQUAL(why, CMQ_REASON_NO_IDENTITY);
	/* Same client id, another client object: not the connected session, so by name. */
	CU_ASSERT_EQUAL(
	    cmq_session_recheck(p, &s, &offline, client_ids[CIV1], "civitas-air-001", &why),
	    CMQ_ALLOW);
	cmq_policy_free(p);
	/* A blocked vendor's offline sessions go. */
	v = base_variant();
	v.civitas.tier = "blocked";
	p = load_variant(&v);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(
	    cmq_session_recheck(p, &s, &offline, "civitas-air-009", "civitas-air-009", &why),
	    CMQ_DENY);
	CU_ASSERT_EQUAL(why, CMQ_REASON_VENDOR_BLOCKED);
	CU_ASSERT_EQUAL(cmq_session_recheck(p, &s, &offline, "nimbus-x", "nimbus-air-009", &why),
	                CMQ_ALLOW);
	cmq_policy_free(p);
	cmq_sessions_cleanup(&s);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), live);
}

static void TEST_put_out_of_memory(void)
{
	long live = cmq_test_live_allocations();
	struct variant v = base_variant();
	struct cmq_policy *p = load_variant(&v);
	struct cmq_sessions s;
	struct cmq_connect_result dev, op;
	X509 *leaf = make_leaf(&pki.civitas, "civitas-air-001", 0x101);
	char id[32];

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(cmq_connect_check_cert(p, leaf, "civitas-air-001", &dev), CMQ_ALLOW);
	X509_free(leaf);
	CU_ASSERT_EQUAL(cmq_connect_check_password(p, "dashboard", "dash-secret", "dashboard", &op),
	                CMQ_ALLOW);
	cmq_sessions_init(&s);
	/* The first entry (the table is allocated), a device (vendor id copied too). */
	oom_sweep(&s, &clients[0], "civitas-air-001", &dev, true);
	/* Up to the entry that makes the table grow (more than half of 8 slots). */
	for (int i = 1; i <= 4; i++) {
		snprintf(id, sizeof(id), "dash-%d", i);
		oom_sweep(&s, &clients[1], id, &op, false);
	}
	CU_ASSERT_EQUAL(s.count, 5);
	/* A takeover: on failure the old connection keeps its entry. */
	oom_sweep(&s, &clients[2], "civitas-air-001", &dev, true);
	CU_ASSERT_EQUAL(s.count, 5);
	cmq_sessions_cleanup(&s);
	cmq_policy_free(p);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), live);
}

static const struct cmq_test_case cases[] = {
    {"put, find, remove", TEST_put_find_remove},
    {"put refuses a missing client id", TEST_put_refuses_missing_client_id},
    {"takeover", TEST_takeover},
    {"unchanged policy keeps everyone", TEST_unchanged_policy_keeps_everyone},
    {"no policy", TEST_no_policy},
    {"vendor blocked", TEST_vendor_blocked},
    {"serial revoked", TEST_serial_revoked},
    {"vendor removed", TEST_vendor_removed},
    {"CA replaced", TEST_ca_replaced},
    {"operator removed", TEST_operator_removed},
    {"operator changed", TEST_operator_changed},
    {"operator CA unpinned", TEST_operator_ca_unpinned},
    {"several changes at once", TEST_several_changes_at_once},
    {"recheck at reload", TEST_recheck_at_reload},
    {"put out of memory", TEST_put_out_of_memory},
    {NULL, NULL},
};

int main(void)
{
	return cmq_test_run("session", cases);
}
