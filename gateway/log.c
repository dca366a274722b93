/*
 * log.c - one log line per event on stderr: "<UTC time> <level>: <message>".
 * systemd's journal and the tests read the same lines. Thread-safe (one
 * fprintf per line, stderr is unbuffered).
 */
#include "gateway.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const level_names[] = {"error", "warning", "notice", "info", "debug"};
static volatile int current_level = GW_NOTICE;

int cmq_gw_log_level_parse(const char *s)
{
	for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++) {
		if (strcmp(s, level_names[i]) == 0)
			return i;
	}
	return -1;
}

void cmq_gw_log_set_level(int level)
{
	current_level = level;
}

bool cmq_gw_log_enabled(int level)
{
	return level <= current_level;
}

void cmq_gw_log(int level, const char *fmt, ...)
{
	char msg[2048], ts[32];
	struct timespec now;
	struct tm tm;
	va_list ap;

	if (!cmq_gw_log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s.%03ldZ %s: %s\n", ts, now.tv_nsec / 1000000L, level_names[level], msg);
}
