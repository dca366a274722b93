/*
 * decision.h - the outcome of a civicmq check: allow or deny, and why.
 *
 * A decision is not an error (error.h): every check yields CMQ_ALLOW or
 * CMQ_DENY plus a reason, and any internal error inside a check becomes
 * CMQ_DENY with CMQ_REASON_INTERNAL (fail closed). The plugin maps a decision
 * to a broker return code in exactly one function (plugin/plugin.h).
 * CMQ_REASON_MAP is the single table of reasons and the sentences operators
 * see in the broker log.
 */
#ifndef CMQ_DECISION_H
#define CMQ_DECISION_H

enum cmq_decision { CMQ_DENY = 0, CMQ_ALLOW = 1 };

#define CMQ_REASON_MAP(X)                                                                          \
	X(OK, "allowed")                                                                           \
	X(INTERNAL, "internal error (denied: civicmq fails closed)")                               \
	X(NO_POLICY, "no policy is loaded")                                                        \
	X(NO_IDENTITY, "username names no operator and no vendor's device")                        \
	/* connect */                                                                              \
	X(NO_CREDENTIALS, "no client certificate and no username")                                 \
	X(CERT_ISSUER_UNKNOWN, "certificate was not issued by any pinned vendor or operator CA")   \
	X(CERT_NO_CN, "certificate subject has no single common name (CN)")                        \
	X(CERT_CN_INVALID, "certificate CN is not an acceptable identity")                         \
	X(CN_PREFIX,                                                                               \
	  "device id (certificate CN) does not start with its vendor's device id prefix")          \
	X(SERIAL_REVOKED, "certificate serial is revoked in the vendor list")                      \
	X(CLIENT_ID_INVALID, "client id is not an acceptable identity")                            \
	X(CLIENT_ID_MISMATCH, "client id must equal the certificate CN")                           \
	X(CLIENT_ID_NOT_OWNED,                                                                     \
	  "an operator's client id must be its username or start with '<username>-'")              \
	X(CERT_SERIAL_INVALID, "certificate serial number is not a positive integer")              \
	X(USERNAME_INVALID, "username is not an acceptable identity")                              \
	X(UNKNOWN_OPERATOR, "unknown operator username")                                           \
	X(BAD_PASSWORD, "wrong password")                                                          \
	X(PASSWORD_NOT_ALLOWED, "this operator may not authenticate by password")                  \
	X(CERT_NOT_ALLOWED, "this operator may not authenticate by certificate")                   \
	X(CREDENTIALS_CHANGED, "the operator's role or credentials changed")                       \
	/* devices */                                                                              \
	X(VENDOR_UNKNOWN, "device's vendor is not in the vendor list")                             \
	X(VENDOR_BLOCKED, "vendor is blocked")                                                     \
	X(TIER_RESTRICTED, "restricted vendors may publish only public-class data")                \
	X(RESTRICTED_NO_SUBSCRIBE, "restricted vendors may not subscribe or receive")              \
	X(NO_RULE, "no topic rule covers this raw topic")                                          \
	X(NOT_OWN_DEVICE, "devices may publish only to raw topics ending in their own device id")  \
	X(DEVICE_ID_IN_TOPIC, "the device id may appear only as the last level of a raw topic, "   \
	                      "never where it would reach a scrubbed topic")                       \
	X(CATEGORY_NOT_PERMITTED, "vendor is not permitted to feed this data category")            \
	X(RETAIN_PERSONAL, "retained messages are refused on personal and sensitive raw topics")   \
	X(PAYLOAD_TOO_LARGE, "payload exceeds the size limit")                                     \
	X(FORGED_PROVENANCE, "message carries civicmq provenance properties set by the client")    \
	/* topics and roles */                                                                     \
	X(RAW_READ_FORBIDDEN, "only the gateway role reads raw topics")                            \
	X(RAW_WRITE_FORBIDDEN, "only devices (and bridges) publish raw topics")                    \
	X(CITY_WRITE_FORBIDDEN, "only the gateway publishes city/ topics")                         \
	X(RESERVED_TOPIC, "topics starting with '$' are reserved")                                 \
	X(BAD_TOPIC, "topic or filter is malformed")                                               \
	X(EXPLICIT_DENY, "an explicit deny of the role matches")                                   \
	X(NO_GRANT, "no grant of the role allows this (default deny)")                             \
	X(CONTROL_FORBIDDEN, "only the admin role may use the civicmq control API")

enum cmq_reason {
#define CMQ_REASON_ENUM(name, text) CMQ_REASON_##name,
	CMQ_REASON_MAP(CMQ_REASON_ENUM)
#undef CMQ_REASON_ENUM
	    CMQ_REASON__COUNT
};

/* The sentence for a reason; never NULL. */
const char *cmq_reason_text(enum cmq_reason r);
/* The symbolic name ("VENDOR_BLOCKED"); never NULL. */
const char *cmq_reason_name(enum cmq_reason r);

#endif
