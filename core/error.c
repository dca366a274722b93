/*
 * error.c - strings for enum cmq_err, generated from CMQ_ERR_MAP in error.h.
 */
#include "error.h"

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
