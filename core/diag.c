/*
 * diag.c - see diag.h.
 */
#include "diag.h"

#include "alloc.h"

#include <stdio.h>
#include <string.h>

void cmq_diag_init(struct cmq_diag *d)
{
	memset(d, 0, sizeof(*d));
}

void cmq_diag_cleanup(struct cmq_diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		cmq_free(d->entries[i].text);
	memset(d, 0, sizeof(*d));
}

void cmq_diag_vadd(struct cmq_diag *d, enum cmq_diag_level level, const char *file,
                   const char *path, const char *fmt, va_list ap)
{
	char line[CMQ_DIAG_LINE_MAX];
	int off = 0, n;

	if (level == CMQ_DIAG_ERROR)
		d->errors++;
	else
		d->warnings++;
	if (d->n >= CMQ_DIAG_MAX)
		return;
	if (file != NULL)
		off = snprintf(line, sizeof(line), "%s: ", file);
	if (path != NULL && off >= 0 && (size_t)off < sizeof(line))
		off += snprintf(line + off, sizeof(line) - (size_t)off, "%s: ", path);
	if (off < 0 || (size_t)off >= sizeof(line))
		off = 0;
	n = vsnprintf(line + off, sizeof(line) - (size_t)off, fmt, ap);
	if (n < 0)
		return;
	d->entries[d->n].text = cmq_strdup(line);
	if (d->entries[d->n].text == NULL)
		return; /* the count above still makes the load fail */
	d->entries[d->n].level = level;
	d->n++;
}

void cmq_diag_add(struct cmq_diag *d, enum cmq_diag_level level, const char *file, const char *path,
                  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cmq_diag_vadd(d, level, file, path, fmt, ap);
	va_end(ap);
}

const char *cmq_diag_quote(const char *s, size_t len, char *buf, size_t buflen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, shown = 0;

	if (buflen < 8) {
		if (buflen > 0)
			buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (size_t i = 0; s != NULL && i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[5];
		size_t elen = 0;

		if (shown >= 80) {
			if (o + 5 <= buflen) {
				memcpy(buf + o, "\"...", 4);
				o += 4;
			}
			buf[o < buflen ? o : buflen - 1] = '\0';
			return buf;
		}
		if (c == '"' || c == '\\') {
			esc[elen++] = '\\';
			esc[elen++] = (char)c;
		} else if (c == '\n') {
			esc[elen++] = '\\';
			esc[elen++] = 'n';
		} else if (c == '\t') {
			esc[elen++] = '\\';
			esc[elen++] = 't';
		} else if (c < 0x20 || c == 0x7f) {
			esc[elen++] = '\\';
			esc[elen++] = 'x';
			esc[elen++] = hex[c >> 4];
			esc[elen++] = hex[c & 15];
		} else {
			esc[elen++] = (char)c;
		}
		if (o + elen + 2 > buflen)
			break;
		memcpy(buf + o, esc, elen);
		o += elen;
		shown++;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

const struct cmq_diag_entry *cmq_diag_find(const struct cmq_diag *d, const char *needle)
{
	for (size_t i = 0; i < d->n; i++) {
		if (strstr(d->entries[i].text, needle) != NULL)
			return &d->entries[i];
	}
	return NULL;
}
