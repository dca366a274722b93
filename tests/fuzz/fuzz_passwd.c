/*
 * fuzz_passwd.c - libFuzzer target for the password-hash parser: any string either parses
 * into a hash that formats back to the same string, or is rejected with a reason.
 */
#include "error.h"
#include "passwd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char in[512], out[CMQ_PASSWD_STR_MAX];
	struct cmq_pbkdf2 h;
	const char *why = NULL;

	if (size >= sizeof(in))
		return 0;
	memcpy(in, data, size);
	in[size] = '\0';
	if (cmq_passwd_parse(in, &h, &why) != CMQ_OK) {
		if (why == NULL)
			abort();
		return 0;
	}
	/* Canonical encodings only: what parses must format back byte for byte. */
	if (cmq_passwd_format(&h, out, sizeof(out)) != CMQ_OK || strcmp(in, out) != 0)
		abort();
	return 0;
}
