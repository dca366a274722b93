/*
 * civicmq-passwd - make a password hash for operators.json.
 *
 *   civicmq-passwd                  read a password (twice from a terminal, once from a pipe)
 *   civicmq-passwd --generate       make a random 32-character secret; print it, then its hash
 *   civicmq-passwd --verify HASH    read a password; exit 0 if it matches HASH, 1 if not
 *   civicmq-passwd --iterations N   PBKDF2 iterations (default 1000; see core/passwd.h)
 *
 * The hash goes to stdout; prompts and errors to stderr. Exit codes: 0 ok,
 * 1 mismatch (--verify), 2 usage or input error.
 */
#include "error.h"
#include "passwd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

struct opts {
	unsigned long iterations;
	int generate;
	const char *verify;
	int help;
};

/* One table drives parsing and --help. */
static const struct {
	const char *name;
	int takes_value;
	const char *help;
} option_table[] = {
    {"--iterations", 1, "N  PBKDF2-SHA512 iterations (100..10000000, default 1000)"},
    {"--generate", 0, "   generate a random 32-character secret and print it before the hash"},
    {"--verify", 1, "HASH  check a password against HASH instead of making one"},
    {"--help", 0, "   this text"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: civicmq-passwd [options]\n"
	           "Reads a password and prints its hash for operators.json \"password_hash\".\n");
	for (size_t i = 0; i < sizeof(option_table) / sizeof(option_table[0]); i++)
		fprintf(f, "  %s %s\n", option_table[i].name, option_table[i].help);
}

static int parse(int argc, char **argv, struct opts *o)
{
	o->iterations = CMQ_PBKDF2_DEFAULT_ITERATIONS;
	for (int i = 1; i < argc; i++) {
		size_t k;

		for (k = 0; k < sizeof(option_table) / sizeof(option_table[0]); k++) {
			if (strcmp(argv[i], option_table[k].name) == 0)
				break;
		}
		if (k == sizeof(option_table) / sizeof(option_table[0])) {
			fprintf(stderr, "civicmq-passwd: unknown option \"%s\"\n", argv[i]);
			return -1;
		}
		if (option_table[k].takes_value && i + 1 >= argc) {
			fprintf(stderr, "civicmq-passwd: %s needs a value\n", argv[i]);
			return -1;
		}
		if (strcmp(argv[i], "--iterations") == 0) {
			char *end;

			o->iterations = strtoul(argv[++i], &end, 10);
			if (*end != '\0' || o->iterations < CMQ_PBKDF2_MIN_ITERATIONS ||
			    o->iterations > CMQ_PBKDF2_MAX_ITERATIONS) {
				fprintf(
				    stderr,
				    "civicmq-passwd: --iterations \"%s\": expected a number from "
				    "%u to %u\n",
				    argv[i], CMQ_PBKDF2_MIN_ITERATIONS, CMQ_PBKDF2_MAX_ITERATIONS);
				return -1;
			}
		} else if (strcmp(argv[i], "--generate") == 0) {
			o->generate = 1;
		} else if (strcmp(argv[i], "--verify") == 0) {
			o->verify = argv[++i];
		} else {
			o->help = 1;
		}
	}
	return 0;
}

/* Read one line without its newline; no echo on a terminal. */
static int read_password(const char *prompt, char *buf, size_t buflen)
{
	struct termios old, quiet;
	int tty = isatty(STDIN_FILENO);
	size_t len;

	if (tty) {
		fputs(prompt, stderr);
		tcgetattr(STDIN_FILENO, &old);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	if (fgets(buf, (int)buflen, stdin) == NULL)
		buf[0] = '\0';
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	len = strlen(buf);
	if (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	else if (len + 1 >= buflen)
		return -1; /* too long: the line did not fit */
	if (len > 0 && buf[len - 1] == '\r')
		buf[--len] = '\0';
	return 0;
}

int main(int argc, char **argv)
{
	char pw[CMQ_PASSWD_MAX_LEN + 2], again[CMQ_PASSWD_MAX_LEN + 2], out[CMQ_PASSWD_STR_MAX];
	struct cmq_pbkdf2 h;
	struct opts o = {0};
	const char *why = NULL;
	int rc;

	if (parse(argc, argv, &o) != 0) {
		usage(stderr);
		return 2;
	}
	if (o.help) {
		usage(stdout);
		return 0;
	}
	if (o.verify != NULL) {
		if (cmq_passwd_parse(o.verify, &h, &why) != CMQ_OK) {
			fprintf(stderr, "civicmq-passwd: not a password hash: %s\n", why);
			return 2;
		}
		if (read_password("Password: ", pw, sizeof(pw)) != 0)
			return 2;
		return cmq_passwd_verify(&h, pw, strlen(pw)) ? 0 : 1;
	}
	if (o.generate) {
		if (cmq_passwd_generate(pw, 32) != CMQ_OK) {
			fprintf(stderr, "civicmq-passwd: no randomness available\n");
			return 2;
		}
		printf("%s\n", pw);
	} else {
		if (read_password("Password: ", pw, sizeof(pw)) != 0) {
			fprintf(stderr, "civicmq-passwd: password longer than %u bytes\n",
			        CMQ_PASSWD_MAX_LEN);
			return 2;
		}
		if (isatty(STDIN_FILENO)) {
			if (read_password("Again: ", again, sizeof(again)) != 0 ||
			    strcmp(pw, again) != 0) {
				fprintf(stderr, "civicmq-passwd: the passwords differ\n");
				return 2;
			}
		}
		if (pw[0] == '\0') {
			fprintf(stderr, "civicmq-passwd: empty password\n");
			return 2;
		}
	}
	rc = cmq_passwd_hash(pw, strlen(pw), (uint32_t)o.iterations, &h);
	if (rc == CMQ_OK)
		rc = cmq_passwd_format(&h, out, sizeof(out));
	if (rc != CMQ_OK) {
		fprintf(stderr, "civicmq-passwd: %s\n", cmq_strerror(rc));
		return 2;
	}
	printf("%s\n", out);
	return 0;
}
