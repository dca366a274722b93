/*
 * diag.h - diagnostics collected while loading configuration.
 *
 * Loaders report every problem they find (not just the first) as one line:
 *     <file>: <json path>: <what is wrong, quoting the bad value>; <what is valid>
 * e.g.  vendors.json: $.vendors[2].tier: "trustworthy" is not a tier; valid: trusted,
 *       restricted, blocked
 * Errors make the load fail (the running policy stays); warnings (unknown keys,
 * weak settings) are reported and the load goes on. Values are quoted with
 * cmq_diag_quote(), which escapes control characters and truncates, so a hostile
 * file cannot forge log lines.
 *
 * Memory: entries are allocated through alloc.h; at most CMQ_DIAG_MAX entries are
 * kept, further ones are only counted. Thread: not thread-safe.
 */
#ifndef CMQ_DIAG_H
#define CMQ_DIAG_H

#include <stdarg.h>
#include <stddef.h>

#define CMQ_DIAG_MAX      100
#define CMQ_DIAG_LINE_MAX 1024

enum cmq_diag_level { CMQ_DIAG_ERROR, CMQ_DIAG_WARNING };

struct cmq_diag_entry {
	enum cmq_diag_level level;
	char *text; /* the whole line, NUL-terminated */
};

struct cmq_diag {
	struct cmq_diag_entry entries[CMQ_DIAG_MAX];
	size_t n;
	size_t errors;   /* all errors reported, kept or not */
	size_t warnings; /* all warnings reported, kept or not */
};

void cmq_diag_init(struct cmq_diag *d);
void cmq_diag_cleanup(struct cmq_diag *d);

/* Record "<file>: <path>: <fmt...>". file and path may be NULL (then omitted). */
void cmq_diag_add(struct cmq_diag *d, enum cmq_diag_level level, const char *file, const char *path,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void cmq_diag_vadd(struct cmq_diag *d, enum cmq_diag_level level, const char *file,
                   const char *path, const char *fmt, va_list ap);

/*
 * Quote s[0..len) as a JSON-like string literal into buf: "..." with \n, \t, \",
 * \\ and \xNN escapes, truncated with "..." after 80 characters. Returns buf.
 */
const char *cmq_diag_quote(const char *s, size_t len, char *buf, size_t buflen);

/* First entry whose text contains needle, or NULL (for tests and callers). */
const struct cmq_diag_entry *cmq_diag_find(const struct cmq_diag *d, const char *needle);

#endif
