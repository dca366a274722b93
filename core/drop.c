/*
 * drop.c - names and texts of the drop reasons declared in drop.h.
 */
#include "drop.h"

static const char *const names[CMQ_DROP__COUNT] = {
#define CMQ_DROP_NAME(name, id, text) id,
    CMQ_DROP_MAP(CMQ_DROP_NAME)
#undef CMQ_DROP_NAME
};

static const char *const texts[CMQ_DROP__COUNT] = {
#define CMQ_DROP_TEXT(name, id, text) text,
    CMQ_DROP_MAP(CMQ_DROP_TEXT)
#undef CMQ_DROP_TEXT
};

const char *cmq_drop_name(enum cmq_drop d)
{
	return (unsigned)d < CMQ_DROP__COUNT ? names[d] : "unknown";
}

const char *cmq_drop_text(enum cmq_drop d)
{
	return (unsigned)d < CMQ_DROP__COUNT ? texts[d] : "unknown drop reason";
}
