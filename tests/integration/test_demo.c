/*
 * test_demo.c - `make demo`'s program (build/civicmq-demo) run end to end as a child
 * process, and its outcome checked two ways: its own summary.json (blocked vendor,
 * impostor CA, restricted vendor's personal data and the dashboard's raw/# read all
 * refused; every message accounted for; consent honoured; zero canaries leaked), and
 * independently of the demo's own checks, by reading what its two readers printed: no
 * raw topic, no e-mail address, phone number, MAC, resident or device id, meter id,
 * NGSI id or 7-decimal coordinate anywhere, and every ANPR plate a 32-hex pseudonym.
 * It also checks that the run took under a minute and that no process the demo
 * started outlived it.
 */
#include "harness.h"
#include "itest.h"

#include <CUnit/Basic.h>
#include <ctype.h>
#include <errno.h>
#include <json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEMO_TIMEOUT_MS 90000
#define DEMO_MAX_S      60 /* the "in under a minute" */

static char out[CMQ_H_PATH_MAX];
static char demo_exe[CMQ_H_PATH_MAX + 32];
static int demo_rc = -1;
static long demo_seconds = -1;
static json_object *summary;

static int suite_init(void)
{
	const char *b = getenv("CMQ_BUILD") ? getenv("CMQ_BUILD") : "build";
	const char *src = getenv("CMQ_SRC") ? getenv("CMQ_SRC") : ".";
	char build[CMQ_H_PATH_MAX], log[CMQ_H_PATH_MAX + 32], path[CMQ_H_PATH_MAX + 32];
	struct timespec t0, t1;
	pid_t pid;

	cmq_h_init();
	if (realpath(b, build) == NULL) {
		fprintf(stderr, "test_demo: CMQ_BUILD \"%s\": %s\n", b, strerror(errno));
		return 1;
	}
	snprintf(demo_exe, sizeof(demo_exe), "%s/civicmq-demo", build);
	if (access(demo_exe, X_OK) != 0) {
		fprintf(stderr, "test_demo: %s is missing (make it first)\n", demo_exe);
		return 1;
	}
	if (cmq_h_tmpdir("cmq-demo", out, sizeof(out)) != 0)
		return 1;
	/* The demo makes its own PKI in its output directory, as on a fresh machine. */
	unsetenv("CMQ_PKI_DIR");
	snprintf(log, sizeof(log), "%s/demo.out", out);
	const char *argv[] = {demo_exe, "--src", src, "--build", build, "--out", out, NULL};
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid = cmq_h_spawn(argv, log);
	if (pid < 0)
		return 1;
	demo_rc = cmq_h_proc_wait(pid, DEMO_TIMEOUT_MS);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	demo_seconds = (long)(t1.tv_sec - t0.tv_sec);
	if (demo_rc != 0) {
		fprintf(stderr, "test_demo: the demo exited with %d; its output:\n", demo_rc);
		cmq_h_file_print(log, 0);
	}
	snprintf(path, sizeof(path), "%s/summary.json", out);
	summary = json_object_from_file(path);
	return 0;
}

static int suite_cleanup(void)
{
	json_object_put(summary);
	return 0;
}

/* summary.json value at a dotted path ("gateway.dropped_by_reason.no_consent"), or NULL. */
static json_object *get(const char *dotted)
{
	char buf[128], *save = NULL;
	json_object *o = summary;

	snprintf(buf, sizeof(buf), "%s", dotted);
	for (char *k = strtok_r(buf, ".", &save); k != NULL && o != NULL;
	     k = strtok_r(NULL, ".", &save)) {
		if (!json_object_object_get_ex(o, k, &o))
			o = NULL;
	}
	if (o == NULL)
		fprintf(stderr, "\ntest_demo: summary.json has no %s\n", dotted);
	return o;
}

static long long num(const char *dotted)
{
	json_object *o = get(dotted);

	return o ? json_object_get_int64(o) : -1;
}

static bool yes(const char *dotted)
{
	json_object *o = get(dotted);

	return o != NULL && json_object_is_type(o, json_type_boolean) && json_object_get_boolean(o);
}

static void TEST_demo_exits_zero_within_a_minute(void)
{
	CU_ASSERT_EQUAL(demo_rc, 0);
	CU_ASSERT_TRUE(demo_seconds >= 0 && demo_seconds < DEMO_MAX_S);
	CU_ASSERT_PTR_NOT_NULL_FATAL(summary);
	CU_ASSERT_EQUAL(num("checks_failed"), 0);
}

static void TEST_demo_refusals(void)
{
	char log[CMQ_H_PATH_MAX + 32];

	CU_ASSERT_PTR_NOT_NULL_FATAL(summary);
	CU_ASSERT_TRUE(yes("refused.blocked_vendor"));
	CU_ASSERT_TRUE(yes("refused.foreign_ca"));
	CU_ASSERT_TRUE(yes("refused.restricted_personal"));
	CU_ASSERT_TRUE(yes("refused.dashboard_raw"));
	/* ... and the reader is told why, in the plugin's words. */
	snprintf(log, sizeof(log), "%s/demo.out", out);
	CU_ASSERT_TRUE(cmq_h_file_contains(log, 0, "VENDOR_BLOCKED"));
	CU_ASSERT_TRUE(cmq_h_file_contains(log, 0, "CERT_ISSUER_UNKNOWN"));
	CU_ASSERT_TRUE(cmq_h_file_contains(log, 0, "TIER_RESTRICTED"));
	CU_ASSERT_TRUE(cmq_h_file_contains(log, 0, "RAW_READ_FORBIDDEN"));
	/* Act 5: a vendor blocked on the running system loses its connected device. */
	CU_ASSERT_TRUE(yes("live.block_cut_off"));
	CU_ASSERT_TRUE(yes("live.audit_intact"));
	CU_ASSERT_TRUE(cmq_h_file_contains(log, 0, "disconnecting \"nimbus-air-001\""));
	CU_ASSERT_TRUE(cmq_h_file_contains(log, 0, "hash chain intact"));
}

static void TEST_demo_every_message_accounted(void)
{
	long long sent = num("sent");

	CU_ASSERT_PTR_NOT_NULL_FATAL(summary);
	CU_ASSERT_EQUAL(sent, 260);
	CU_ASSERT_EQUAL(num("gateway.received"), sent);
	CU_ASSERT_EQUAL(num("gateway.forwarded") + num("gateway.absorbed") + num("gateway.dropped"),
	                sent);
	/* resident-0002 has not opted in: exactly their 10 readings dropped, for that reason. */
	CU_ASSERT_EQUAL(num("gateway.dropped_by_reason.no_consent"), 10);
	CU_ASSERT_EQUAL(num("gateway.dropped"), 10);
	CU_ASSERT_EQUAL(num("dashboard_energy"), 10);
	/* The camera's 60 readings only leave as k-thresholded window counts. */
	CU_ASSERT_EQUAL(num("gateway.absorbed"), 60);
	CU_ASSERT_TRUE(num("dashboard_aggregates") >= 1);
	/* ANPR goes to the enforcement office, never to the public dashboard. */
	CU_ASSERT_EQUAL(num("dashboard_anpr"), 0);
	CU_ASSERT_EQUAL(num("enforcement_anpr"), 30);
	CU_ASSERT_TRUE(num("canaries_planted") >= 500);
	CU_ASSERT_EQUAL(num("canaries_leaked"), 0);
}

/* Case-insensitive substring search. */
static bool has(const char *line, const char *needle)
{
	size_t n = strlen(needle);

	for (const char *p = line; *p != '\0'; p++) {
		if (strncasecmp(p, needle, n) == 0)
			return true;
	}
	return false;
}

/* A coordinate as the sensors print it: digits, '.', then 7 digits. */
static bool has_exact_coordinate(const char *line)
{
	for (const char *p = line; *p != '\0'; p++) {
		int digits = 0;

		if (*p != '.' || p == line || !isdigit((unsigned char)p[-1]))
			continue;
		while (isdigit((unsigned char)p[1 + digits]))
			digits++;
		if (digits == 7)
			return true;
	}
	return false;
}

/* The identifier of an ANPR line's plate, if it is a 32-hex-digit pseudonym. */
static bool plate_is_pseudonym(const char *line)
{
	const char *p = strstr(line, "\"identifier\":\"");

	if (p == NULL)
		return false;
	p += strlen("\"identifier\":\"");
	for (int i = 0; i < 32; i++) {
		if (!isxdigit((unsigned char)p[i]))
			return false;
	}
	return p[32] == '"';
}

/* Check one reader's output line by line; returns the number of city/ messages. */
static long check_reader_output(const char *name)
{
	static const char *const personal[] = {
	    "@example.org", "+44 7700",    "3c:22:fb",     "RES-",       "resident-00",
	    "civitas-",     "nimbus-",     "hawkeye-",     "MTR-",       "urn:ngsi-ld",
	    "refImages",    "installedBy", "contactPhone", "gatewayMac", "residentId",
	};
	char path[CMQ_H_PATH_MAX + 32], *text, *save = NULL;
	bool in_register = false;
	long city = 0, registers = 0;

	snprintf(path, sizeof(path), "%s/%s", out, name);
	text = cmq_h_file_read(path, 0, NULL);
	CU_ASSERT_PTR_NOT_NULL(text);
	if (text == NULL)
		return -1;
	for (char *line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		bool clean = true;

		/*
		 * The transparency register (retained, pretty-printed over many lines) is the
		 * public policy: it names field paths such as residentId and the vendors' device
		 * id prefixes, never anyone's data. Its lines run until the next message.
		 */
		if (strncmp(line, "city/", 5) == 0)
			in_register = strncmp(line, "city/transparency/register ", 27) == 0;
		if (in_register) {
			registers += strncmp(line, "city/transparency/register ", 27) == 0;
			continue;
		}
		CU_ASSERT_FALSE(strncmp(line, "raw/", 4) == 0);
		for (size_t i = 0; i < sizeof(personal) / sizeof(personal[0]); i++) {
			if (has(line, personal[i])) {
				fprintf(stderr, "\n%s carries \"%s\": %.300s\n", name, personal[i],
				        line);
				clean = false;
			}
		}
		if (has_exact_coordinate(line)) {
			fprintf(stderr, "\n%s carries an exact coordinate: %.300s\n", name, line);
			clean = false;
		}
		CU_ASSERT_TRUE(clean);
		if (strncmp(line, "city/", 5) == 0)
			city++;
		if (strncmp(line, "city/north/anpr ", 16) == 0)
			CU_ASSERT_TRUE(plate_is_pseudonym(line));
	}
	free(text);
	if (strcmp(name, "dashboard.log") == 0)
		CU_ASSERT_EQUAL(registers,
		                1); /* the retained register, read like any city/ topic */
	return city;
}

static void TEST_demo_readers_saw_only_scrubbed_data(void)
{
	/* Air 60, noise 30, footfall 30, parking 30, energy 10, crowd >= 1, metrics. */
	CU_ASSERT_TRUE(check_reader_output("dashboard.log") >= 161);
	CU_ASSERT_EQUAL(check_reader_output("lez-office.log"), 30);
}

static void TEST_demo_left_no_process_running(void)
{
	json_object *pids = get("pids");
	size_t n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(pids);
	n = json_object_array_length(pids);
	CU_ASSERT_TRUE(n >= 18); /* broker, gateway, 2 readers, 4 refusals, 9 sensors, act 5 */
	for (size_t i = 0; i < n; i++) {
		pid_t pid = (pid_t)json_object_get_int(json_object_array_get_idx(pids, i));

		CU_ASSERT_TRUE(pid > 0 && kill(pid, 0) == -1 && errno == ESRCH);
	}
}

int main(void)
{
	static const struct cmq_itest tests[] = {
	    {"demo_exits_zero_within_a_minute", TEST_demo_exits_zero_within_a_minute},
	    {"demo_refusals", TEST_demo_refusals},
	    {"demo_every_message_accounted", TEST_demo_every_message_accounted},
	    {"demo_readers_saw_only_scrubbed_data", TEST_demo_readers_saw_only_scrubbed_data},
	    {"demo_left_no_process_running", TEST_demo_left_no_process_running},
	};

	return cmq_itest_run("demo", suite_init, suite_cleanup, tests,
	                     sizeof(tests) / sizeof(tests[0]));
}
