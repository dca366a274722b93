/*
 * bench_callgrind.h - counting instructions with valgrind's callgrind, the two ways the
 * benchmarks do it. Instruction counts are deterministic where wall-clock times on a shared
 * machine are not, so every benchmark has a callgrind mode.
 *
 * In process (acl_bench, scrub_bench): the program runs as
 *     valgrind --tool=callgrind --instr-atstart=no --toggle-collect='bench_*' PROGRAM ...
 * BENCH_INSTRUMENT_ON() switches instrumentation on once setup is done (so loading 100,000
 * rules costs no instrumented time), and only what runs inside a function named bench_* is
 * collected. Each measured function is marked BENCH_FN (never inlined, so it keeps its name)
 * and no bench_* function may run inside another: entering one toggles collection, so a
 * call from a measured function into a bench_* helper of bench_common.h that the compiler
 * did not inline would switch collection off for the rest of that call.
 *
 * Out of process (throughput, gateway_e2e): the broker or the gateway runs under
 * `valgrind --tool=callgrind --instr-atstart=no`; bench_callgrind_control() switches its
 * instrumentation on when the clients are ready and dumps it after the last message, and
 * bench_callgrind_dump_total() reads the dump's instruction total.
 *
 * Include bench_common.h first. Thread: the main thread (the control helpers fork).
 */
#ifndef CMQ_BENCH_CALLGRIND_H
#define CMQ_BENCH_CALLGRIND_H

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

/* The client request is a no-op outside valgrind. Without valgrind's header (Debian package
 * valgrind) nothing would be collected, which bench/run.sh reports. */
#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define BENCH_INSTRUMENT_ON() CALLGRIND_START_INSTRUMENTATION
#endif
#endif
#ifndef BENCH_INSTRUMENT_ON
#define BENCH_INSTRUMENT_ON() ((void)0)
#endif

/* A measured function: kept out of line so that --toggle-collect='bench_*' finds it. */
#define BENCH_FN __attribute__((noinline))

/*
 * Run `callgrind_control ARG PID` (e.g. "--instr=on", "--dump=measured") with its stdout
 * discarded, killing it after timeout_ms: it waits for the target to answer, and a wedged
 * target must not hang the benchmark. Returns 0 if it exited with 0, else -1 with a
 * message on stderr prefixed prog.
 */
static inline int bench_callgrind_control(const char *prog, const char *arg, pid_t pid,
                                          int timeout_ms)
{
	char pidbuf[16];
	uint64_t deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
	pid_t c;
	int status;

	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)pid);
	c = fork();
	if (c < 0)
		return -1;
	if (c == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0)
			dup2(null, 1);
		execlp("callgrind_control", "callgrind_control", arg, pidbuf, (char *)NULL);
		_exit(127);
	}
	for (;;) {
		pid_t w = waitpid(c, &status, WNOHANG);

		if (w == c)
			break;
		if (bench_now_ns() > deadline) {
			kill(c, SIGKILL);
			waitpid(c, &status, 0);
			fprintf(stderr, "%s: callgrind_control %s %d timed out\n", prog, arg,
			        (int)pid);
			return -1;
		}
		usleep(10000);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "%s: callgrind_control %s %d failed\n", prog, arg, (int)pid);
		return -1;
	}
	return 0;
}

/*
 * The instructions in the callgrind dump at path (its "summary:" or "totals:" line). The
 * target writes the dump after callgrind_control has returned, so this polls for it, every
 * 20 ms for up to wait_ms. Returns the total, or -1 with a message on stderr prefixed prog.
 */
static inline long long bench_callgrind_dump_total(const char *prog, const char *path, int wait_ms)
{
	char line[256];
	long long total = -1;

	for (int i = 0; i < wait_ms / 20; i++) {
		FILE *f = fopen(path, "r");

		if (f != NULL) {
			while (fgets(line, sizeof(line), f) != NULL) {
				if (strncmp(line, "summary:", 8) == 0 ||
				    strncmp(line, "totals:", 7) == 0)
					total = strtoll(strchr(line, ':') + 1, NULL, 10);
			}
			fclose(f);
			if (total >= 0)
				return total;
		}
		usleep(20000);
	}
	fprintf(stderr, "%s: no callgrind dump %s\n", prog, path);
	return -1;
}

#endif
