/*
 * tool_opts.c - the option table parser of tool_opts.h.
 */
#include "tool_opts.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int set_value(const char *prog, const struct tool_opt *d, const char *v, void *dst)
{
	void *field = (char *)dst + d->off;
	char *end = NULL;

	if (d->type == TOOL_OPT_FLAG) {
		*(int *)field = 1;
		return 0;
	}
	if (*v == '\0') {
		fprintf(stderr, "%s: %s: empty value\n", prog, d->name);
		return -1;
	}
	switch (d->type) {
	case TOOL_OPT_STR:
		*(const char **)field = v;
		return 0;
	case TOOL_OPT_CALL:
		return d->set(dst, v);
	case TOOL_OPT_LONG: {
		long n;

		errno = 0;
		n = strtol(v, &end, 10);
		if (errno != 0 || end == v || *end != '\0' || (double)n < d->min ||
		    (double)n > d->max) {
			fprintf(stderr, "%s: %s \"%s\": not an integer in %.0f..%.0f\n", prog,
			        d->name, v, d->min, d->max);
			return -1;
		}
		*(long *)field = n;
		return 0;
	}
	case TOOL_OPT_DOUBLE:
	default: {
		double x;

		errno = 0;
		x = strtod(v, &end);
		if (errno != 0 || end == v || *end != '\0' || !isfinite(x) || x < d->min ||
		    x > d->max) {
			fprintf(stderr, "%s: %s \"%s\": not a number in %g..%g\n", prog, d->name, v,
			        d->min, d->max);
			return -1;
		}
		*(double *)field = x;
		return 0;
	}
	}
}

int tool_opts_parse(const char *prog, const struct tool_opt *table, size_t n, int argc, char **argv,
                    void *dst)
{
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *eq = strchr(arg, '='), *value = NULL;
		size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
		size_t k;

		for (k = 0; k < n; k++) {
			if (strlen(table[k].name) == len && strncmp(arg, table[k].name, len) == 0)
				break;
		}
		if (k == n) {
			fprintf(stderr, "%s: unknown option \"%s\" (try --help)\n", prog, arg);
			return -1;
		}
		if (table[k].type == TOOL_OPT_FLAG) {
			if (eq != NULL) {
				fprintf(stderr, "%s: %s takes no value\n", prog, table[k].name);
				return -1;
			}
		} else if (eq != NULL) {
			value = eq + 1;
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			fprintf(stderr, "%s: %s needs a value (%s)\n", prog, table[k].name,
			        table[k].arg);
			return -1;
		}
		if (set_value(prog, &table[k], value, dst) != 0)
			return -1;
	}
	return 0;
}

void tool_opts_usage(FILE *f, const struct tool_opt *table, size_t n, int width)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, "  %-*s %-6s %s\n", width, table[i].name, table[i].arg, table[i].help);
}
