/*
 * trust.c - connect decisions and principal resolution (see trust.h).
 */
#include "trust.h"

#include "passwd.h"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <stdio.h>
#include <string.h>

static void reset(struct cmq_connect_result *out)
{
	memset(out, 0, sizeof(*out));
	out->reason = CMQ_REASON_INTERNAL;
}

static enum cmq_decision deny(struct cmq_connect_result *out, enum cmq_reason r)
{
	out->reason = r;
	out->who.kind = CMQ_PRINCIPAL_NONE;
	return CMQ_DENY;
}

/* The pinned CA whose key signed cert, or NULL. */
static const struct cmq_pinned_ca *find_issuer(const struct cmq_policy *p, X509 *cert)
{
	const X509_NAME *issuer = X509_get_issuer_name(cert);

	for (size_t i = 0; i < p->n_cas; i++) {
		const struct cmq_pinned_ca *ca = &p->cas[i];
		EVP_PKEY *key;

		if (ca->cert == NULL || X509_NAME_cmp(issuer, X509_get_subject_name(ca->cert)) != 0)
			continue;
		key = X509_get0_pubkey(ca->cert);
		if (key != NULL && X509_verify(cert, key) == 1)
			return ca;
		ERR_clear_error();
	}
	return NULL;
}

/*
 * The single CN as UTF-8 (free with OPENSSL_free). NULL if absent or repeated
 * (*present false), or if present but not convertible to UTF-8, e.g. a CN
 * encoded as a BIT STRING (*present true: the CN is there, it is just not an
 * acceptable identity).
 */
static unsigned char *subject_cn(X509 *cert, size_t *len, bool *present)
{
	const X509_NAME *name = X509_get_subject_name(cert);
	int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	unsigned char *utf8 = NULL;
	int n;

	*present = false;
	if (idx < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0)
		return NULL;
	*present = true;
	n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
	if (n < 0) {
		ERR_clear_error();
		return NULL;
	}
	/* Embedded NULs stay in: the identity check refuses them with a clear reason. */
	*len = (size_t)n;
	return utf8;
}

static bool cert_serial(X509 *cert, char out[CMQ_SERIAL_HEX_MAX + 1])
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;
	bool ok = hex != NULL && hex[0] != '-' && cmq_serial_normalise(hex, out);

	OPENSSL_free(hex);
	BN_free(bn);
	if (!ok)
		ERR_clear_error();
	return ok;
}

/*
 * An operator's client id is its username or "<username>-<suffix>", so no account can
 * take over another account's (or a device's) session by reusing its client id.
 */
static bool operator_owns_client_id(const char *username, const char *client_id,
                                    struct cmq_connect_result *out)
{
	size_t ulen = strlen(username);
	char q[160];

	if (strncmp(client_id, username, ulen) == 0 &&
	    (client_id[ulen] == '\0' || (client_id[ulen] == '-' && client_id[ulen + 1] != '\0')))
		return true;
	snprintf(out->detail, sizeof(out->detail), "client id %s for operator \"%s\"",
	         cmq_diag_quote(client_id, strlen(client_id), q, sizeof(q)), username);
	return false;
}

static bool check_client_id(const char *client_id, struct cmq_connect_result *out)
{
	const char *why = "is missing";
	char q[160];

	if (client_id != NULL && cmq_identity_check(client_id, strlen(client_id), &why))
		return true;
	snprintf(out->detail, sizeof(out->detail), "client id %s %s",
	         cmq_diag_quote(client_id ? client_id : "", client_id ? strlen(client_id) : 0, q,
	                        sizeof(q)),
	         why);
	return false;
}

enum cmq_decision cmq_connect_check_cert(const struct cmq_policy *p, X509 *cert,
                                         const char *client_id, struct cmq_connect_result *out)
{
	const struct cmq_pinned_ca *ca;
	char cn[CMQ_ID_MAX + 1], q[200], issuer[160];
	unsigned char *raw_cn;
	size_t cn_len = 0;
	const char *why = NULL;
	bool cn_present = false;

	reset(out);
	if (p == NULL)
		return deny(out, CMQ_REASON_NO_POLICY);
	if (cert == NULL)
		return deny(out, CMQ_REASON_NO_CREDENTIALS);
	ca = find_issuer(p, cert);
	if (ca == NULL) {
		X509_NAME_oneline(X509_get_issuer_name(cert), issuer, sizeof(issuer));
		snprintf(out->detail, sizeof(out->detail), "issuer %s",
		         cmq_diag_quote(issuer, strlen(issuer), q, sizeof(q)));
		return deny(out, CMQ_REASON_CERT_ISSUER_UNKNOWN);
	}
	memcpy(out->ca_sha256, ca->sha256, 32);
	raw_cn = subject_cn(cert, &cn_len, &cn_present);
	if (raw_cn == NULL && cn_present) {
		snprintf(out->detail, sizeof(out->detail), "CN is not a character string");
		return deny(out, CMQ_REASON_CERT_CN_INVALID);
	}
	if (raw_cn == NULL)
		return deny(out, CMQ_REASON_CERT_NO_CN);
	if (!cmq_identity_check((const char *)raw_cn, cn_len, &why)) {
		snprintf(out->detail, sizeof(out->detail), "CN %s %s",
		         cmq_diag_quote((const char *)raw_cn, cn_len, q, sizeof(q)), why);
		OPENSSL_free(raw_cn);
		return deny(out, CMQ_REASON_CERT_CN_INVALID);
	}
	/* The identity check bounds cn_len by CMQ_ID_MAX. */
	memcpy(cn, raw_cn, cn_len);
	cn[cn_len] = '\0';
	OPENSSL_free(raw_cn);
	memcpy(out->identity, cn, cn_len + 1);
	if (!cert_serial(cert, out->serial))
		return deny(out, CMQ_REASON_CERT_SERIAL_INVALID);

	if (ca->owner == CMQ_CA_VENDOR) {
		const struct cmq_vendor *v = &p->vendors[ca->vendor];

		snprintf(out->detail, sizeof(out->detail), "device %s of vendor %s (%s)", cn, v->id,
		         cmq_tier_name(v->tier));
		out->who.vendor = v;
		if (v->tier == CMQ_TIER_BLOCKED)
			return deny(out, CMQ_REASON_VENDOR_BLOCKED);
		if (cn_len <= v->prefix_len || memcmp(cn, v->prefix, v->prefix_len) != 0) {
			snprintf(out->detail, sizeof(out->detail),
			         "CN %s lacks vendor %s's device id prefix \"%s\"", cn, v->id,
			         v->prefix);
			return deny(out, CMQ_REASON_CN_PREFIX);
		}
		if (cmq_vendor_is_revoked(v, out->serial)) {
			snprintf(out->detail, sizeof(out->detail),
			         "device %s of vendor %s, serial %s", cn, v->id, out->serial);
			return deny(out, CMQ_REASON_SERIAL_REVOKED);
		}
		if (!check_client_id(client_id, out))
			return deny(out, CMQ_REASON_CLIENT_ID_INVALID);
		if (strcmp(client_id, cn) != 0) {
			snprintf(out->detail, sizeof(out->detail),
			         "client id %s but certificate CN \"%s\"",
			         cmq_diag_quote(client_id, strlen(client_id), q, sizeof(q)), cn);
			return deny(out, CMQ_REASON_CLIENT_ID_MISMATCH);
		}
		out->who.kind = CMQ_PRINCIPAL_DEVICE;
		out->who.role = &p->roles[CMQ_ROLE_SENSOR];
		out->reason = CMQ_REASON_OK;
		return CMQ_ALLOW;
	}

	out->who.op = cmq_policy_operator_find(p, cn, cn_len);
	snprintf(out->detail, sizeof(out->detail), "operator certificate CN \"%s\"", cn);
	if (out->who.op == NULL)
		return deny(out, CMQ_REASON_UNKNOWN_OPERATOR);
	if (!out->who.op->cert_auth)
		return deny(out, CMQ_REASON_CERT_NOT_ALLOWED);
	if (!check_client_id(client_id, out))
		return deny(out, CMQ_REASON_CLIENT_ID_INVALID);
	if (!operator_owns_client_id(cn, client_id, out))
		return deny(out, CMQ_REASON_CLIENT_ID_NOT_OWNED);
	out->who.kind = CMQ_PRINCIPAL_OPERATOR;
	out->who.role = &p->roles[out->who.op->role];
	out->reason = CMQ_REASON_OK;
	return CMQ_ALLOW;
}

enum cmq_decision cmq_connect_check_password(const struct cmq_policy *p, const char *username,
                                             const char *password, const char *client_id,
                                             struct cmq_connect_result *out)
{
	const struct cmq_operator *op;
	size_t pwlen = password ? strlen(password) : 0;
	const char *why = NULL;
	char q[160];

	reset(out);
	if (p == NULL)
		return deny(out, CMQ_REASON_NO_POLICY);
	if (username == NULL)
		return deny(out, CMQ_REASON_NO_CREDENTIALS);
	if (!cmq_identity_check(username, strlen(username), &why)) {
		snprintf(out->detail, sizeof(out->detail), "username %s %s",
		         cmq_diag_quote(username, strlen(username), q, sizeof(q)), why);
		return deny(out, CMQ_REASON_USERNAME_INVALID);
	}
	snprintf(out->detail, sizeof(out->detail), "operator \"%s\"", username);
	op = cmq_policy_operator_find(p, username, strlen(username));
	if (op == NULL || !op->password_auth) {
		/* Same cost as a real check, so timing does not reveal which operators exist. */
		cmq_passwd_burn(p->max_pw_iterations, password, pwlen);
		return deny(out, op == NULL ? CMQ_REASON_UNKNOWN_OPERATOR
		                            : CMQ_REASON_PASSWORD_NOT_ALLOWED);
	}
	/* A missing or over-long password costs a full check too (see cmq_passwd_verify). */
	if (!cmq_passwd_verify(&op->pw, password, pwlen))
		return deny(out, CMQ_REASON_BAD_PASSWORD);
	if (!check_client_id(client_id, out))
		return deny(out, CMQ_REASON_CLIENT_ID_INVALID);
	if (!operator_owns_client_id(username, client_id, out))
		return deny(out, CMQ_REASON_CLIENT_ID_NOT_OWNED);
	memcpy(out->identity, username, strlen(username) + 1);
	out->who.kind = CMQ_PRINCIPAL_OPERATOR;
	out->who.op = op;
	out->who.role = &p->roles[op->role];
	out->reason = CMQ_REASON_OK;
	return CMQ_ALLOW;
}

enum cmq_reason cmq_principal_resolve(const struct cmq_policy *p, const char *username, size_t len,
                                      struct cmq_principal *out)
{
	memset(out, 0, sizeof(*out));
	if (p == NULL || username == NULL)
		return CMQ_REASON_NO_IDENTITY;
	out->op = cmq_policy_operator_find(p, username, len);
	if (out->op != NULL) {
		out->kind = CMQ_PRINCIPAL_OPERATOR;
		out->role = &p->roles[out->op->role];
		return CMQ_REASON_OK;
	}
	out->vendor = cmq_policy_vendor_for_device(p, username, len);
	if (out->vendor != NULL) {
		out->kind = CMQ_PRINCIPAL_DEVICE;
		out->role = &p->roles[CMQ_ROLE_SENSOR];
		return CMQ_REASON_OK;
	}
	return CMQ_REASON_NO_IDENTITY;
}
