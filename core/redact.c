/*
 * redact.c - replaces MAC addresses, licence plates, e-mail addresses and phone
 * numbers inside free text (the scrub engine's redact op, scrub.h) with "[mac]",
 * "[plate]", "[email]", "[phone]".
 *
 * Hand-written scanners, not regular expressions: one left-to-right pass, each
 * detector looks ahead a bounded distance (e-mail: the run of address characters it
 * starts), so the cost is linear in the string and nothing is allocated. ASCII
 * letters and digits are "alnum"; every other byte (punctuation, space, UTF-8) is a
 * boundary. At each position the detectors are tried in this order, and the first
 * match is replaced and skipped:
 *
 *  email  at the start of a run of [A-Za-z0-9._%+-] and UTF-8 bytes: that whole run
 *         as local part, '@', then labels of [A-Za-z0-9-] and UTF-8 bytes joined by
 *         '.'; at least two labels and the last one (the TLD) 2+ ASCII letters only.
 *         The longest such domain is taken, and a sentence's full stop after it is
 *         not ("mail a@b.example.org." keeps the '.').
 *  mac    at a boundary, followed by a boundary:
 *           six pairs of hex digits joined by ':' or '-', the same all through
 *             ("00:1a:2B:3c:4d:5e", "00-1A-2B-3C-4D-5E");
 *           three groups of four hex digits joined by '.' (Cisco, "001a.2b3c.4d5e");
 *           twelve hex digits in a row with at least one letter and one digit
 *             ("001a2b3c4d5e"; "123456789012" is left to the phone rule).
 *  phone  at a boundary that does not continue a run of digit groups (a position
 *         right after "<digit><separator>" is inside a number): an optional '+',
 *         then digit groups joined by one separator each (' ', '-' or '.'), a group
 *         optionally in parentheses and then followed by the next group with or
 *         without a separator ("+44 (0)20 7946 0958", "(555)123-4567"), with 9 to
 *         15 digits in total. Groups are taken greedily while the total stays <= 15.
 *         Not part of a phone number: a group touching a letter, also through a '-'
 *         ("2024-11-28T...", "1-ABC-123"), a group followed by ':' and a digit (an
 *         hour), a date (below) after the
 *         first group, and a decimal number: two groups joined by the run's first
 *         '.' when no further ".<digit>" follows ("12.345678901", "52.3702157").
 *  plate  at a boundary: one to three groups of uppercase letters and digits joined
 *         by a single '-' or ' ', followed by a boundary; the longest such token of
 *         5 to 8 letters and digits in total, with at least one letter and one digit,
 *         in which no letters-only group is longer than 3 and no digits-only group
 *         longer than 6 ("1-ABC-123", "3456ABC", "3456 BCD", "AB12 CDE", "B-AB 1234",
 *         "AB-123-CD", "12-BD-34", "WA 12345", and also "AB12 NOX": a group that looks
 *         like a pollutant's name does not make a token a reading, because real plates
 *         contain such groups).
 *
 * Dates and times are copied unchanged before the phone and plate rules see them, so
 * ISO 8601 timestamps survive: at a boundary, YYYY-MM-DD, YYYY.MM.DD, YYYY/MM/DD and
 * DD-MM-YYYY (also '.', '/'; month 1..12, day 1..31), optionally followed by 'T', 't'
 * or ' ' and a time; a time is H[H]:MM[:SS[.fraction]] with an optional 'Z' or
 * +/-HH[[:]MM] zone.
 *
 * Known limits, accepted because a miss leaks and a false hit only hides: upper-case
 * words with digits are taken for plates ("BME280", "ISO 8601", "AQI 42", "NO2 41"), long digit
 * strings of 9-15 digits for phone numbers (counters, IPv4 addresses), and
 * lower-case plates are not recognised. Structural removal (drop, keep) is the
 * primary defence; redaction is the backstop for free text.
 *
 * Thread: any (no state). Memory: none; the caller's buffer only.
 */
#include "scrub.h"

#include <stdbool.h>
#include <string.h>

#define PHONE_MIN_DIGITS 9
#define PHONE_MAX_DIGITS 15
#define PLATE_MIN        5
#define PLATE_MAX        8
#define PLATE_GROUPS     3

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_upper(unsigned char c)
{
	return c >= 'A' && c <= 'Z';
}

static bool is_alpha(unsigned char c)
{
	return is_upper(c) || (c >= 'a' && c <= 'z');
}

static bool is_alnum(unsigned char c)
{
	return is_digit(c) || is_alpha(c);
}

static bool is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Bytes of UTF-8 sequences count as address characters (RFC 6531 addresses). */
static bool is_local(unsigned char c)
{
	return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-' || c >= 0x80;
}

static bool is_label(unsigned char c)
{
	return is_alnum(c) || c == '-' || c >= 0x80;
}

/* ---- e-mail ---- */

static size_t match_email(const char *s, size_t len, size_t i)
{
	size_t k = i, p, best = 0, labels = 0;

	while (k < len && is_local((unsigned char)s[k]))
		k++;
	if (k == i || k >= len || s[k] != '@')
		return 0;
	p = k + 1;
	for (;;) {
		size_t start = p;
		bool letters = true;

		while (p < len && is_label((unsigned char)s[p])) {
			letters &= is_alpha((unsigned char)s[p]);
			p++;
		}
		if (p == start)
			break;
		labels++;
		if (labels >= 2 && letters && p - start >= 2)
			best = p;
		if (p + 1 < len && s[p] == '.' && is_label((unsigned char)s[p + 1])) {
			p++;
			continue;
		}
		break;
	}
	return best;
}

/* ---- MAC addresses ---- */

static bool boundary_at(const char *s, size_t len, size_t e)
{
	return e >= len || !is_alnum((unsigned char)s[e]);
}

static bool hex_run(const char *s, size_t i, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		if (!is_hex((unsigned char)s[i + k]))
			return false;
	}
	return true;
}

static size_t match_mac(const char *s, size_t len, size_t i)
{
	if (len - i >= 17 && (s[i + 2] == ':' || s[i + 2] == '-')) {
		char sep = s[i + 2];
		bool ok = hex_run(s, i, 2);

		for (size_t g = 1; ok && g < 6; g++)
			ok = s[i + 3 * g - 1] == sep && hex_run(s, i + 3 * g, 2);
		if (ok && boundary_at(s, len, i + 17))
			return i + 17;
	}
	if (len - i >= 14 && s[i + 4] == '.' && s[i + 9] == '.' && hex_run(s, i, 4) &&
	    hex_run(s, i + 5, 4) && hex_run(s, i + 10, 4) && boundary_at(s, len, i + 14))
		return i + 14;
	if (len - i >= 12 && hex_run(s, i, 12) && boundary_at(s, len, i + 12)) {
		bool letter = false, digit = false;

		for (size_t k = i; k < i + 12; k++) {
			if (is_digit((unsigned char)s[k]))
				digit = true;
			else
				letter = true;
		}
		if (letter && digit)
			return i + 12;
	}
	return 0;
}

/* ---- dates and times (kept) ---- */

/* 1..max digits at s[*p]; their value. */
static bool digits(const char *s, size_t len, size_t *p, size_t min, size_t max, unsigned *val)
{
	size_t n = 0;

	*val = 0;
	while (*p < len && n < max && is_digit((unsigned char)s[*p])) {
		*val = *val * 10 + (unsigned)(s[*p] - '0');
		(*p)++;
		n++;
	}
	return n >= min && !(*p < len && is_digit((unsigned char)s[*p]));
}

static size_t match_date(const char *s, size_t len, size_t i)
{
	size_t p = i;
	unsigned a, b, c;
	char sep;

	if (!digits(s, len, &p, 1, 4, &a) || p >= len)
		return 0;
	sep = s[p];
	if (sep != '-' && sep != '.' && sep != '/')
		return 0;
	if (p - i == 4) { /* YYYY-MM-DD */
		p++;
		if (!digits(s, len, &p, 1, 2, &b) || p >= len || s[p] != sep)
			return 0;
		p++;
		if (!digits(s, len, &p, 1, 2, &c))
			return 0;
		return b >= 1 && b <= 12 && c >= 1 && c <= 31 ? p : 0;
	}
	if (p - i > 2) /* DD-MM-YYYY (or MM-DD-YYYY) */
		return 0;
	p++;
	if (!digits(s, len, &p, 1, 2, &b) || p >= len || s[p] != sep)
		return 0;
	p++;
	{
		size_t ys = p;

		if (!digits(s, len, &p, 4, 4, &c) || p - ys != 4)
			return 0;
	}
	return a >= 1 && b >= 1 && a <= 31 && b <= 31 && (a <= 12 || b <= 12) ? p : 0;
}

static size_t match_time(const char *s, size_t len, size_t i)
{
	size_t p = i, q;
	unsigned h, m, sec, zh, zm;

	if (!digits(s, len, &p, 1, 2, &h) || h > 23 || p >= len || s[p] != ':')
		return 0;
	p++;
	q = p;
	if (!digits(s, len, &p, 2, 2, &m) || p - q != 2 || m > 59)
		return 0;
	if (p + 2 < len && s[p] == ':' && is_digit((unsigned char)s[p + 1])) {
		q = ++p;
		if (!digits(s, len, &p, 2, 2, &sec) || p - q != 2 || sec > 60)
			return 0;
		if (p + 1 < len && (s[p] == '.' || s[p] == ',') &&
		    is_digit((unsigned char)s[p + 1])) {
			p++;
			while (p < len && is_digit((unsigned char)s[p]))
				p++;
		}
	}
	if (p < len && (s[p] == 'Z' || s[p] == 'z'))
		return p + 1;
	if (p + 2 < len && (s[p] == '+' || s[p] == '-') && is_digit((unsigned char)s[p + 1])) {
		q = p + 1;
		if (digits(s, len, &q, 2, 2, &zh) && q - p == 3 && zh <= 23) {
			size_t r = q + (q < len && s[q] == ':');

			p = q;
			if (r + 1 < len && is_digit((unsigned char)s[r]) &&
			    digits(s, len, &r, 2, 2, &zm) && zm <= 59)
				p = r;
		}
	}
	return p;
}

static size_t match_datetime(const char *s, size_t len, size_t i)
{
	size_t e = match_date(s, len, i);

	if (e != 0) {
		if (e < len && (s[e] == 'T' || s[e] == 't' || s[e] == ' ')) {
			size_t t = match_time(s, len, e + 1);

			if (t != 0)
				e = t;
		}
		return e;
	}
	return match_time(s, len, i);
}

/* ---- phone numbers ---- */

static bool phone_sep(unsigned char c)
{
	return c == ' ' || c == '-' || c == '.';
}

/*
 * Whether a phone number may start at i: '+', '(' or a digit, not touching a letter or
 * digit, and not continuing a digit group run ("12 34": "34" is not a start) unless a
 * kept date or time ended right before the separator (barrier).
 */
static bool phone_start(const char *s, size_t i, size_t barrier)
{
	unsigned char c = (unsigned char)s[i], p;

	if (!is_digit(c) && c != '+' && c != '(')
		return false;
	if (i == 0)
		return true;
	p = (unsigned char)s[i - 1];
	if (is_alnum(p) || p == '+' || p == '(' || p == ')')
		return false;
	if (phone_sep(p) && i >= 2 && (is_digit((unsigned char)s[i - 2]) || s[i - 2] == ')') &&
	    barrier != i - 1)
		return false;
	return true;
}

/* A digit group at p: digits, or '(' digits ')'; returns its end or 0, *n its digits. */
static size_t phone_group(const char *s, size_t len, size_t p, unsigned *n)
{
	bool paren = p < len && s[p] == '(';
	size_t q = p + paren;

	*n = 0;
	while (q < len && is_digit((unsigned char)s[q]) && *n <= PHONE_MAX_DIGITS) {
		q++;
		(*n)++;
	}
	if (*n == 0 || *n > PHONE_MAX_DIGITS)
		return 0;
	if (paren) {
		if (q >= len || s[q] != ')')
			return 0;
		q++;
	}
	return q;
}

/* "a.b" at p (a group, '.', a group) with no further ".<digit>": a decimal number. */
static bool decimal_at(const char *s, size_t len, size_t dot)
{
	size_t q = dot + 1;

	while (q < len && is_digit((unsigned char)s[q]))
		q++;
	return !(q + 1 < len && s[q] == '.' && is_digit((unsigned char)s[q + 1]));
}

static size_t match_phone(const char *s, size_t len, size_t i)
{
	size_t p = i + (s[i] == '+'), end = 0;
	unsigned total = 0;
	bool dots = false;

	for (size_t groups = 0;; groups++) {
		unsigned n;
		size_t q = phone_group(s, len, p, &n);
		unsigned char c;

		if (q == 0 || total + n > PHONE_MAX_DIGITS)
			break;
		if (groups > 0 && match_date(s, len, p) != 0)
			break;
		c = q < len ? (unsigned char)s[q] : 0;
		if (is_alpha(c) || ((c == ':' || c == '-') && q + 1 < len &&
		                    (c == ':' ? is_digit((unsigned char)s[q + 1])
		                              : is_alpha((unsigned char)s[q + 1]))))
			break; /* touches a letter ("1-ABC"), or is the hour of a time */
		if (c == '.' && !dots && q + 1 < len && is_digit((unsigned char)s[q + 1]) &&
		    decimal_at(s, len, q))
			break; /* this group starts a decimal number */
		total += n;
		end = q;
		if (s[q - 1] == ')' && is_digit(c)) {
			p = q;
			continue;
		}
		if (phone_sep(c) && q + 1 < len &&
		    (is_digit((unsigned char)s[q + 1]) || s[q + 1] == '(')) {
			dots |= c == '.';
			p = q + 1;
			continue;
		}
		break;
	}
	return total >= PHONE_MIN_DIGITS ? end : 0;
}

/* ---- licence plates ---- */

static size_t match_plate(const char *s, size_t len, size_t i)
{
	size_t start[PLATE_GROUPS], end[PLATE_GROUPS];
	size_t n = 0, p = i;

	while (n < PLATE_GROUPS) {
		size_t q = p;

		while (q < len && q - p <= PLATE_MAX &&
		       (is_upper((unsigned char)s[q]) || is_digit((unsigned char)s[q])))
			q++;
		if (q == p || !boundary_at(s, len, q))
			break;
		start[n] = p;
		end[n] = q;
		n++;
		if (q + 1 < len && (s[q] == '-' || s[q] == ' ') &&
		    (is_upper((unsigned char)s[q + 1]) || is_digit((unsigned char)s[q + 1])))
			p = q + 1;
		else
			break;
	}
	for (size_t k = n; k >= 1; k--) {
		size_t total = 0;
		bool letter = false, digit = false, ok = true;

		for (size_t g = 0; g < k && ok; g++) {
			size_t l = 0, d = 0;

			for (size_t x = start[g]; x < end[g]; x++) {
				if (is_digit((unsigned char)s[x]))
					d++;
				else
					l++;
			}
			if ((d == 0 && l > 3) || (l == 0 && d > 6))
				ok = false;
			letter |= l > 0;
			digit |= d > 0;
			total += l + d;
		}
		if (ok && letter && digit && total >= PLATE_MIN && total <= PLATE_MAX)
			return end[k - 1];
	}
	return 0;
}

/* ---- the scan ---- */

static bool put(char *buf, size_t bufsize, size_t *o, const char *src, size_t n)
{
	if (bufsize - *o <= n) /* keep room for the NUL */
		return false;
	memcpy(buf + *o, src, n);
	*o += n;
	return true;
}

int cmq_redact_len(const char *s, size_t len, unsigned mask, char *buf, size_t bufsize,
                   size_t *out_len)
{
	size_t i = 0, o = 0, barrier = (size_t)-1;
	bool dates = (mask & (CMQ_REDACT_PHONE | CMQ_REDACT_PLATE)) != 0;
	int count = 0;

	if (out_len != NULL)
		*out_len = 0;
	if (buf == NULL || bufsize == 0)
		return -1;
	buf[0] = '\0';
	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		bool boundary = i == 0 || !is_alnum((unsigned char)s[i - 1]);
		const char *rep = NULL;
		size_t end = 0;

		if ((mask & CMQ_REDACT_EMAIL) && is_local(c) &&
		    (i == 0 || !is_local((unsigned char)s[i - 1])) &&
		    (end = match_email(s, len, i)) != 0) {
			rep = "[email]";
		} else if (boundary && is_alnum(c)) {
			if ((mask & CMQ_REDACT_MAC) && (end = match_mac(s, len, i)) != 0) {
				rep = "[mac]";
			} else if (dates && is_digit(c) && (end = match_datetime(s, len, i)) != 0) {
				/* Kept as it is; a phone number may start right after it. */
				if (!put(buf, bufsize, &o, s + i, end - i))
					return -1;
				barrier = end;
				i = end;
				continue;
			} else if ((mask & CMQ_REDACT_PHONE) && phone_start(s, i, barrier) &&
			           (end = match_phone(s, len, i)) != 0) {
				rep = "[phone]";
			} else if ((mask & CMQ_REDACT_PLATE) &&
			           (end = match_plate(s, len, i)) != 0) {
				rep = "[plate]";
			}
		} else if (boundary && (c == '+' || c == '(') && (mask & CMQ_REDACT_PHONE) &&
		           phone_start(s, i, barrier) && (end = match_phone(s, len, i)) != 0) {
			rep = "[phone]";
		}
		if (rep != NULL) {
			if (!put(buf, bufsize, &o, rep, strlen(rep)))
				return -1;
			count++;
			i = end;
		} else {
			if (!put(buf, bufsize, &o, s + i, 1))
				return -1;
			i++;
		}
	}
	buf[o] = '\0';
	if (out_len != NULL)
		*out_len = o;
	return count;
}

int cmq_redact(const char *s, size_t len, unsigned mask, char *buf, size_t bufsize)
{
	return cmq_redact_len(s, len, mask, buf, bufsize, NULL);
}
