/*
 * error.h - the one return-code enum of civicmq and its strings.
 *
 * Every fallible function in core/ returns an `enum cmq_err` (CMQ_OK is 0) and
 * delivers results through out-parameters that it sets to a safe value first.
 * A *decision* (allow/deny) is not an error: see acl.h for `enum cmq_decision`.
 * The table below is the single place that names each code, in the style of
 * libuv's UV_ERRNO_MAP, so cmq_strerror() and cmq_err_name() cannot drift.
 *
 * Thread: any. Cost: O(1).
 */
#ifndef CMQ_ERROR_H
#define CMQ_ERROR_H

#define CMQ_ERR_MAP(X)                                                                             \
	X(OK, "success")                                                                           \
	X(NOMEM, "out of memory")                                                                  \
	X(INVAL, "invalid argument")                                                               \
	X(IO, "input/output error")                                                                \
	X(PARSE, "malformed input")                                                                \
	X(CONFIG, "invalid configuration")                                                         \
	X(NOT_FOUND, "not found")                                                                  \
	X(EXISTS, "already exists")                                                                \
	X(TOO_BIG, "limit exceeded")                                                               \
	X(CRYPTO, "cryptographic operation failed")                                                \
	X(AUTH, "authentication failed")

enum cmq_err {
#define CMQ_ERR_ENUM(name, text) CMQ_ERR_##name,
	CMQ_ERR_MAP(CMQ_ERR_ENUM)
#undef CMQ_ERR_ENUM
	    CMQ_ERR__COUNT
};

#define CMQ_OK CMQ_ERR_OK

/* Human-readable text for rc; never NULL, also for out-of-range values. */
const char *cmq_strerror(int rc);

/* Symbolic name ("NOMEM") for rc; never NULL. */
const char *cmq_err_name(int rc);

#endif
