/*
 * error.c - strings for enum cmq_err and enum cmq_reason, generated from their X-macro
 * tables in error.h and decision.h.
 */
#include "error.h"

#include "decision.h"

static const char *const err_text[] = {
#define CMQ_ERR_TEXT(name, text) text,
    CMQ_ERR_MAP(CMQ_ERR_TEXT)
#undef CMQ_ERR_TEXT
};

static const char *const err_names[] = {
#define CMQ_ERR_NAME(name, text) #name,
    CMQ_ERR_MAP(CMQ_ERR_NAME)
#undef CMQ_ERR_NAME
};

const char *cmq_strerror(int rc)
{
	if (rc < 0 || rc >= CMQ_ERR__COUNT)
		return "unknown error";
	return err_text[rc];
}

const char *cmq_err_name(int rc)
{
	if (rc < 0 || rc >= CMQ_ERR__COUNT)
		return "UNKNOWN";
	return err_names[rc];
}

/* Reasons live beside errors: both are tables of names and sentences. */

static const char *const reason_text[] = {
#define CMQ_REASON_TEXT(name, text) text,
    CMQ_REASON_MAP(CMQ_REASON_TEXT)
#undef CMQ_REASON_TEXT
};

static const char *const reason_names[] = {
#define CMQ_REASON_NAME(name, text) #name,
    CMQ_REASON_MAP(CMQ_REASON_NAME)
#undef CMQ_REASON_NAME
};

const char *cmq_reason_text(enum cmq_reason r)
{
	if ((int)r < 0 || r >= CMQ_REASON__COUNT)
		return "unknown reason";
	return reason_text[r];
}

const char *cmq_reason_name(enum cmq_reason r)
{
	if ((int)r < 0 || r >= CMQ_REASON__COUNT)
		return "UNKNOWN";
	return reason_names[r];
}
