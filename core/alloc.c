/*
 * alloc.c - allocation hooks (see alloc.h). Hooks are process-wide by design:
 * there is one allocator per process (the broker's, or the test harness').
 */
#include "alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct cmq_allocator hooks = {malloc, realloc, free};

void cmq_set_allocator(const struct cmq_allocator *a)
{
	if (a == NULL || a->malloc_fn == NULL || a->realloc_fn == NULL || a->free_fn == NULL) {
		hooks.malloc_fn = malloc;
		hooks.realloc_fn = realloc;
		hooks.free_fn = free;
		return;
	}
	hooks = *a;
}

void *cmq_malloc(size_t size)
{
	return hooks.malloc_fn(size ? size : 1);
}

void *cmq_calloc(size_t nmemb, size_t size)
{
	void *p;

	if (size != 0 && nmemb > SIZE_MAX / size)
		return NULL;
	p = cmq_malloc(nmemb * size);
	if (p != NULL)
		memset(p, 0, (nmemb * size) != 0 ? nmemb * size : 1);
	return p;
}

void *cmq_realloc(void *ptr, size_t size)
{
	return hooks.realloc_fn(ptr, size ? size : 1);
}

void *cmq_reallocarray(void *ptr, size_t nmemb, size_t size)
{
	if (size != 0 && nmemb > SIZE_MAX / size)
		return NULL;
	return cmq_realloc(ptr, nmemb * size);
}

void cmq_free(void *ptr)
{
	if (ptr != NULL)
		hooks.free_fn(ptr);
}

char *cmq_strdup(const char *s)
{
	if (s == NULL)
		return NULL;
	return cmq_strndup(s, strlen(s));
}

char *cmq_strndup(const char *s, size_t n)
{
	char *p;

	if (s == NULL || n == SIZE_MAX)
		return NULL;
	p = cmq_malloc(n + 1);
	if (p == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}
