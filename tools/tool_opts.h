/*
 * tool_opts.h - the command-line options of civicmq-sim and civicmq-dash: one table per
 * tool gives each option's name, type, field, range and help, and drives both parsing
 * and --help. "--name value" and "--name=value" are both accepted; errors name the
 * option and the value and what would be valid.
 *
 * Thread: main thread only. Memory: values are borrowed from argv.
 */
#ifndef CMQ_TOOL_OPTS_H
#define CMQ_TOOL_OPTS_H

#include <stddef.h>
#include <stdio.h>

enum tool_opt_type {
	TOOL_OPT_STR,    /* const char * */
	TOOL_OPT_LONG,   /* long, within [min, max] */
	TOOL_OPT_DOUBLE, /* double, finite, within [min, max] */
	TOOL_OPT_FLAG,   /* int, set to 1; takes no value */
	TOOL_OPT_CALL,   /* set(dst, value): the tool's own check and store (e.g. repeatable) */
};

struct tool_opt {
	const char *name; /* "--port" */
	enum tool_opt_type type;
	size_t off; /* offset of the field in the tool's options struct */
	double min, max;
	const char *arg;                          /* placeholder in --help, e.g. "N" */
	const char *help;                         /* one line */
	int (*set)(void *dst, const char *value); /* TOOL_OPT_CALL: 0, or -1 (reported) */
};

/*
 * Parse argv[1..argc) into dst (defaults already set by the caller). Returns 0, or -1
 * after printing "<prog>: ..." on stderr.
 */
int tool_opts_parse(const char *prog, const struct tool_opt *table, size_t n, int argc, char **argv,
                    void *dst);

/* One "  --name ARG help" line per option, names padded to width. */
void tool_opts_usage(FILE *f, const struct tool_opt *table, size_t n, int width);

#endif
