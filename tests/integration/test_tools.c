/*
 * test_tools.c - civicmq-sim and civicmq-dash as real processes against the example broker
 * with the plugin (civicmq_env.h): devices on the mutual-TLS port, operators by password on
 * the operator port. Every tool run is bounded (TOOL_TIMEOUT_MS, then SIGKILL by PID) and
 * judged by its exit status and its output (stdout and stderr share one log file).
 */
#include "civicmq_env.h"
#include "itest.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOOL_TIMEOUT_MS 20000

static struct cmq_env env;
static char build[CMQ_H_PATH_MAX];
static char tmp[CMQ_H_PATH_MAX];
static char sim_exe[CMQ_H_PATH_MAX + 32];
static char dash_exe[CMQ_H_PATH_MAX + 32];

static int suite_init(void)
{
	const char *b = getenv("CMQ_BUILD") ? getenv("CMQ_BUILD") : "build";

	cmq_h_init();
	if (realpath(b, build) == NULL) {
		fprintf(stderr, "test_tools: CMQ_BUILD \"%s\": %s\n", b, strerror(errno));
		return 1;
	}
	snprintf(sim_exe, sizeof(sim_exe), "%s/civicmq-sim", build);
	snprintf(dash_exe, sizeof(dash_exe), "%s/civicmq-dash", build);
	if (access(sim_exe, X_OK) != 0 || access(dash_exe, X_OK) != 0) {
		fprintf(stderr, "test_tools: %s or %s is missing (make first)\n", sim_exe,
		        dash_exe);
		return 1;
	}
	if (cmq_h_tmpdir("cmq-tools", tmp, sizeof(tmp)) != 0)
		return 1;
	if (cmq_env_init(&env, NULL) != 0 || cmq_env_start(&env, NULL) != 0)
		return 1;
	return 0;
}

static int suite_cleanup(void)
{
	cmq_env_stop(&env);
	return 0;
}

/* Fill cert/key with the absolute paths of a device's files (cmq_h_pki's buffer is reused). */
static void device_files(const char *vendor, const char *device, char *cert, char *key, size_t n)
{
	char rel[256];
	const char *p;

	snprintf(rel, sizeof(rel), "vendors/%s/devices/%s.pem", vendor, device);
	p = cmq_h_pki(rel);
	snprintf(cert, n, "%s", p ? p : "");
	snprintf(rel, sizeof(rel), "vendors/%s/devices/%s.key", vendor, device);
	p = cmq_h_pki(rel);
	snprintf(key, n, "%s", p ? p : "");
}

/* Run civicmq-sim as a device until it exits; its exit code. */
static int run_sim(const char *vendor, const char *device, const char *kind, const char *count,
                   const char *log)
{
	char cert[CMQ_H_PATH_MAX + 64], key[CMQ_H_PATH_MAX + 64], port[16];
	pid_t pid;

	device_files(vendor, device, cert, key, sizeof(cert));
	snprintf(port, sizeof(port), "%d", env.broker.port[0]);
	const char *argv[] = {sim_exe,    "--host",   "localhost", "--port", port,
	                      "--cafile", env.cafile, "--cert",    cert,     "--key",
	                      key,        "--device", device,      "--kind", kind,
	                      "--count",  count,      "--rate",    "50",     NULL};
	pid = cmq_h_spawn(argv, log);
	if (pid < 0)
		return -1;
	return cmq_h_proc_wait(pid, TOOL_TIMEOUT_MS);
}

static void log_path(const char *name, char *out, size_t n)
{
	snprintf(out, n, "%s/%s.log", tmp, name);
}

static bool output_has(const char *log, const char *needle)
{
	if (cmq_h_file_contains(log, 0, needle))
		return true;
	fprintf(stderr, "\n%s lacks \"%s\"; it holds:\n", log, needle);
	cmq_h_file_print(log, 0);
	return false;
}

static void TEST_sim_air_accepted(void)
{
	char log[CMQ_H_PATH_MAX + 64];

	log_path("sim-air", log, sizeof(log));
	CU_ASSERT_EQUAL(run_sim("civitas", "civitas-air-001", "air", "5", log), 0);
	CU_ASSERT_TRUE(output_has(log, "civicmq-sim: civitas-air-001: sent 5, refused 0\n"));
}

static void TEST_sim_blocked_vendor_refused(void)
{
	char log[CMQ_H_PATH_MAX + 64];

	log_path("sim-hawkeye", log, sizeof(log));
	CU_ASSERT_EQUAL(run_sim("hawkeye", "hawkeye-cam-001", "camera", "3", log), 1);
	CU_ASSERT_TRUE(
	    output_has(log, "civicmq-sim: broker refused the connection of hawkeye-cam-001: "));
	CU_ASSERT_TRUE(output_has(log, "(0x87)"));
	CU_ASSERT_FALSE(cmq_h_file_contains(log, 0, "sent "));
}

static void TEST_sim_restricted_vendor_publish_refused(void)
{
	char log[CMQ_H_PATH_MAX + 64];

	log_path("sim-nimbus", log, sizeof(log));
	CU_ASSERT_EQUAL(run_sim("nimbus", "nimbus-wifi-001", "footfall", "3", log), 1);
	CU_ASSERT_TRUE(output_has(log, "civicmq-sim: nimbus-wifi-001: sent 0, refused 3"));
	CU_ASSERT_TRUE(output_has(log, "3 x 0x87"));
}

static void TEST_sim_usage_errors(void)
{
	char log[CMQ_H_PATH_MAX + 64];
	pid_t pid;
	const char *bad_kind[] = {sim_exe, "--port", "1", "--device", "x", "--kind", "bus", NULL};
	const char *no_port[] = {dash_exe, "--topic", "city/#", NULL};

	log_path("usage", log, sizeof(log));
	pid = cmq_h_spawn(bad_kind, log);
	CU_ASSERT_EQUAL(cmq_h_proc_wait(pid, TOOL_TIMEOUT_MS), 2);
	CU_ASSERT_TRUE(output_has(log, "--kind \"bus\": expected one of air|noise"));
	pid = cmq_h_spawn(no_port, log);
	CU_ASSERT_EQUAL(cmq_h_proc_wait(pid, TOOL_TIMEOUT_MS), 2);
	CU_ASSERT_TRUE(output_has(log, "civicmq-dash: --port is required"));
}

/* Spawn civicmq-dash as an operator on the operator port. */
static pid_t spawn_dash(const char *user, const char *client_id, const char *topic,
                        const char *count, bool json, const char *log)
{
	char pwfile[CMQ_H_PATH_MAX + 64], port[16];
	FILE *f;

	snprintf(pwfile, sizeof(pwfile), "%s/%s.pw", tmp, user);
	f = fopen(pwfile, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "%s-secret\n", user);
	fclose(f);
	snprintf(port, sizeof(port), "%d", env.broker.port[1]);
	const char *argv[] = {dash_exe,  "--host",          "localhost", "--port",
	                      port,      "--cafile",        env.cafile,  "--username",
	                      user,      "--password-file", pwfile,      "--client-id",
	                      client_id, "--topic",         topic,       "--count",
	                      count,     "--timeout",       "15",        json ? "--json" : NULL,
	                      NULL};
	return cmq_h_spawn(argv, log);
}

static void TEST_dash_refused_subscription(void)
{
	char log[CMQ_H_PATH_MAX + 64];
	pid_t pid;

	log_path("dash-dashboard", log, sizeof(log));
	pid = spawn_dash("dashboard", "dashboard-tools", "raw/#", "1", false, log);
	CU_ASSERT_FATAL(pid > 0);
	CU_ASSERT_EQUAL(cmq_h_proc_wait(pid, TOOL_TIMEOUT_MS), 1);
	CU_ASSERT_TRUE(
	    output_has(log, "civicmq-dash: subscription to raw/# refused: not authorized"));
}

/* Every line of the dashboard's output that is a JSON object: checked and counted. */
static int check_json_lines(const char *text)
{
	int n = 0;
	char *copy = strdup(text), *save = NULL;

	for (char *line = strtok_r(copy, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		json_object *o, *v, *props, *prov;

		if (line[0] != '{')
			continue;
		o = json_tokener_parse(line);
		CU_ASSERT_PTR_NOT_NULL(o);
		if (o == NULL)
			continue;
		n++;
		CU_ASSERT_TRUE(json_object_object_get_ex(o, "topic", &v) &&
		               strcmp(json_object_get_string(v), "raw/north/air/civitas-air-001") ==
		                   0);
		CU_ASSERT_TRUE(json_object_object_get_ex(o, "payload", &v) &&
		               json_object_is_type(v, json_type_object) &&
		               json_object_object_get_ex(v, "no2", NULL));
		CU_ASSERT_TRUE(
		    json_object_object_get_ex(o, "properties", &props) &&
		    json_object_object_get_ex(props, "civicmq-provenance", &prov) &&
		    strncmp(json_object_get_string(prov), "civitas/civitas-air-001/", 24) == 0);
		json_object_put(o);
	}
	free(copy);
	return n;
}

static void TEST_dash_json_receives_provenance(void)
{
	char dlog[CMQ_H_PATH_MAX + 64], slog[CMQ_H_PATH_MAX + 64];
	size_t mark = cmq_h_log_mark(&env.broker);
	pid_t pid;
	char *out;

	log_path("dash-gateway", dlog, sizeof(dlog));
	log_path("sim-for-gateway", slog, sizeof(slog));
	pid = spawn_dash("gateway", "gateway-tools", "raw/#", "3", true, dlog);
	CU_ASSERT_FATAL(pid > 0);
	if (!cmq_h_log_wait(&env.broker, mark, "Sending SUBACK to gateway-tools", 10000)) {
		cmq_h_log_print(&env.broker, mark);
		cmq_h_proc_stop(pid, SIGTERM, 2000, NULL);
		CU_FAIL_FATAL("civicmq-dash did not subscribe");
	}
	CU_ASSERT_EQUAL(run_sim("civitas", "civitas-air-001", "air", "5", slog), 0);
	CU_ASSERT_EQUAL(cmq_h_proc_wait(pid, TOOL_TIMEOUT_MS), 0);
	out = cmq_h_file_read(dlog, 0, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_EQUAL(check_json_lines(out), 3);
	free(out);
}

int main(void)
{
	static const struct cmq_itest tests[] = {
	    {"sim_air_accepted", TEST_sim_air_accepted},
	    {"sim_blocked_vendor_refused", TEST_sim_blocked_vendor_refused},
	    {"sim_restricted_vendor_publish_refused", TEST_sim_restricted_vendor_publish_refused},
	    {"sim_usage_errors", TEST_sim_usage_errors},
	    {"dash_refused_subscription", TEST_dash_refused_subscription},
	    {"dash_json_receives_provenance", TEST_dash_json_receives_provenance},
	};

	return cmq_itest_run("tools", suite_init, suite_cleanup, tests,
	                     sizeof(tests) / sizeof(tests[0]));
}
