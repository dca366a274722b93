/*
 * alloc.h - the allocator every core/ allocation goes through.
 *
 * The broker plugin binds these hooks to mosquitto_malloc/mosquitto_free so the
 * broker's memory accounting sees civicmq; unit tests bind them to a
 * fault-injecting allocator for out-of-memory sweeps (see tests/unit/cmq_test.h).
 * json-c and OpenSSL keep their own allocators: their objects never outlive a
 * core call except OpenSSL X509 objects owned by a policy.
 *
 * cmq_free(NULL) is a no-op. cmq_set_allocator() is not thread-safe: call it
 * once, before any other core function.
 */
#ifndef CMQ_ALLOC_H
#define CMQ_ALLOC_H

#include <stddef.h>

struct cmq_allocator {
	void *(*malloc_fn)(size_t size);
	void *(*realloc_fn)(void *ptr, size_t size);
	void (*free_fn)(void *ptr);
};

/* Install hooks; NULL restores libc malloc/realloc/free. */
void cmq_set_allocator(const struct cmq_allocator *a);

void *cmq_malloc(size_t size);
/* Zeroed allocation; fails (NULL) on nmemb*size overflow. */
void *cmq_calloc(size_t nmemb, size_t size);
void *cmq_realloc(void *ptr, size_t size);
/* Grow-array helper: realloc to nmemb*size, NULL on overflow or failure (ptr kept). */
void *cmq_reallocarray(void *ptr, size_t nmemb, size_t size);
void cmq_free(void *ptr);
/* Copy of s (NULL if s is NULL or on failure); free with cmq_free. */
char *cmq_strdup(const char *s);
/* Copy of the first n bytes of s plus a NUL; free with cmq_free. */
char *cmq_strndup(const char *s, size_t n);

#endif
