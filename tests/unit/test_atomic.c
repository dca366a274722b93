/*
 * test_atomic.c - core/atomic: a save replaces the file (new inode, exact mode, no temp left),
 * a stale temp is overwritten, and every failure - temp is a directory, a symlink or a hard
 * link, the directory is missing, the disk is full, the rename fails, memory runs out - leaves
 * the original as it was, removes only a temp of its own, and names the file and the step.
 * The JSON rendering matches the hand-written config files and always loads back.
 */
#include "cmq_test.h"

#include "atomic.h"
#include "error.h"
#include "jsonutil.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *tpath(const char *name)
{
	static char path[4][4096];
	static int next;
	char *p = path[next++ % 4];

	snprintf(p, sizeof(path[0]), "%s/%s", cmq_test_tmpdir(), name);
	return p;
}

/* The file's content (static buffer), or NULL if it cannot be read. */
static const char *slurp(const char *path)
{
	static char buf[64 * 1024];
	FILE *f = fopen(path, "rb");
	size_t n;

	if (f == NULL)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static void spit(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(text, f);
	fclose(f);
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

static const char *tmp_of(const char *path)
{
	static char buf[4200];

	snprintf(buf, sizeof(buf), "%s.tmp", path);
	return buf;
}

static void TEST_replaces_content_exact_mode_no_temp(void)
{
	const char *path = tpath("vendors.json"), *link_path = tpath("vendors.old");
	struct stat before, after;
	char err[512] = "x";
	mode_t old_umask;

	spit(path, "old content\n");
	CU_ASSERT_EQUAL_FATAL(chmod(path, 0644), 0);
	CU_ASSERT_EQUAL_FATAL(link(path, link_path), 0);
	CU_ASSERT_EQUAL_FATAL(stat(path, &before), 0);

	old_umask = umask(077); /* the mode asked for wins over the umask */
	CU_ASSERT_EQUAL(cmq_atomic_write(path, "new\n", 4, 0640, err, sizeof(err)), CMQ_OK);
	CU_ASSERT_STRING_EQUAL(err, "");
	CU_ASSERT_STRING_EQUAL(slurp(path), "new\n");
	CU_ASSERT_EQUAL_FATAL(stat(path, &after), 0);
	CU_ASSERT_EQUAL(after.st_mode & 07777, 0640);
	CU_ASSERT_FALSE(exists(tmp_of(path)));
	/* Replaced by a rename, not rewritten in place: the old inode still holds the old text. */
	CU_ASSERT_NOT_EQUAL(after.st_ino, before.st_ino);
	CU_ASSERT_STRING_EQUAL(slurp(link_path), "old content\n");

	CU_ASSERT_EQUAL(cmq_atomic_write(path, "again", 5, 0604, err, sizeof(err)), CMQ_OK);
	CU_ASSERT_STRING_EQUAL(slurp(path), "again");
	CU_ASSERT_EQUAL_FATAL(stat(path, &after), 0);
	CU_ASSERT_EQUAL(after.st_mode & 07777, 0604);
	umask(old_umask);

	/* A new file, and empty content. */
	path = tpath("new.json");
	CU_ASSERT_EQUAL(cmq_atomic_write(path, NULL, 0, 0600, err, sizeof(err)), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(stat(path, &after), 0);
	CU_ASSERT_EQUAL(after.st_size, 0);
	CU_ASSERT_EQUAL(after.st_mode & 07777, 0600);
	CU_ASSERT_FALSE(exists(tmp_of(path)));
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

/* A temp left by a crash (longer, looser mode) is overwritten, not appended to. */
static void TEST_stale_temp_is_overwritten(void)
{
	const char *path = tpath("consent.json");
	struct stat st;
	char err[512];

	spit(path, "original");
	spit(tmp_of(path), "a much longer half-written file from before the crash");
	CU_ASSERT_EQUAL_FATAL(chmod(tmp_of(path), 0666), 0);
	CU_ASSERT_EQUAL(cmq_atomic_write(path, "short", 5, 0640, err, sizeof(err)), CMQ_OK);
	CU_ASSERT_STRING_EQUAL(slurp(path), "short");
	CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 07777, 0640);
	CU_ASSERT_FALSE(exists(tmp_of(path)));
}

/* What is at <path>.tmp and is not a plain file of ours is left alone, and so is path. */
static void TEST_temp_is_directory(void)
{
	const char *path = tpath("policy.json");
	char err[512], want[4400];
	struct stat st;

	spit(path, "{\"keep\": true}\n");
	CU_ASSERT_EQUAL_FATAL(mkdir(tmp_of(path), 0700), 0);
	CU_ASSERT_EQUAL(cmq_atomic_write(path, "{}", 2, 0640, err, sizeof(err)), CMQ_ERR_IO);
	snprintf(want, sizeof(want), "%s: open: %s", tmp_of(path), strerror(EISDIR));
	CU_ASSERT_STRING_EQUAL(err, want);
	CU_ASSERT_STRING_EQUAL(slurp(path), "{\"keep\": true}\n");
	CU_ASSERT(stat(tmp_of(path), &st) == 0 && S_ISDIR(st.st_mode));
	CU_ASSERT_EQUAL(rmdir(tmp_of(path)), 0);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

static void TEST_temp_symlink_or_hard_link_not_followed(void)
{
	const char *path = tpath("operators.json"), *victim = tpath("victim");
	char err[512];

	spit(path, "original");
	spit(victim, "precious");
	CU_ASSERT_EQUAL_FATAL(symlink(victim, tmp_of(path)), 0);
	CU_ASSERT_EQUAL(cmq_atomic_write(path, "new", 3, 0640, err, sizeof(err)), CMQ_ERR_IO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, tmp_of(path)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, ": open: "));
	CU_ASSERT_STRING_EQUAL(slurp(victim), "precious");
	CU_ASSERT_STRING_EQUAL(slurp(path), "original");
	CU_ASSERT(exists(tmp_of(path))); /* not ours to remove */
	CU_ASSERT_EQUAL_FATAL(unlink(tmp_of(path)), 0);

	CU_ASSERT_EQUAL_FATAL(link(victim, tmp_of(path)), 0);
	CU_ASSERT_EQUAL(cmq_atomic_write(path, "new", 3, 0640, err, sizeof(err)), CMQ_ERR_IO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "has other hard links"));
	CU_ASSERT_STRING_EQUAL(slurp(victim), "precious");
	CU_ASSERT_STRING_EQUAL(slurp(path), "original");
	CU_ASSERT_EQUAL(unlink(tmp_of(path)), 0);
}

static void TEST_missing_directory(void)
{
	const char *path = tpath("no-such-dir/vendors.json");
	char err[512], want[4400];

	CU_ASSERT_EQUAL(cmq_atomic_write(path, "x", 1, 0640, err, sizeof(err)), CMQ_ERR_IO);
	snprintf(want, sizeof(want), "%s: open: %s", tmp_of(path), strerror(ENOENT));
	CU_ASSERT_STRING_EQUAL(err, want);
	CU_ASSERT_FALSE(exists(tpath("no-such-dir")));
	CU_ASSERT_EQUAL(cmq_atomic_fsync_dir(path, err, sizeof(err)), CMQ_ERR_IO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "no-such-dir: open directory: "));
	CU_ASSERT_EQUAL(cmq_atomic_fsync_dir("bare-name.json", err, sizeof(err)), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

/*
 * A full disk, simulated with RLIMIT_FSIZE in a child (write then fails with EFBIG, after a
 * short write): the original stays, the partial temp goes, err names the temp and "write".
 */
static void TEST_write_failure_leaves_original(void)
{
	const char *path = tpath("full.json");
	int status, fds[2];
	char err[512] = "", want[4400];
	pid_t pid;
	ssize_t n;

	spit(path, "original");
	CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		static char big[8192];
		struct rlimit rl = {1000, RLIM_INFINITY};
		int rc;

		close(fds[0]);
		signal(SIGXFSZ, SIG_IGN);
		getrlimit(RLIMIT_FSIZE, &rl);
		rl.rlim_cur = 1000;
		if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
			_exit(3);
		memset(big, 'x', sizeof(big));
		rc = cmq_atomic_write(path, big, sizeof(big), 0640, err, sizeof(err));
		if (write(fds[1], err, strlen(err) + 1) < 0)
			_exit(4);
		_exit(rc == CMQ_ERR_IO ? 0 : 2);
	}
	close(fds[1]);
	n = read(fds[0], err, sizeof(err) - 1);
	close(fds[0]);
	err[n > 0 ? n : 0] = '\0';
	CU_ASSERT_EQUAL_FATAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	snprintf(want, sizeof(want), "%s: write: %s", tmp_of(path), strerror(EFBIG));
	CU_ASSERT_STRING_EQUAL(err, want);
	CU_ASSERT_STRING_EQUAL(slurp(path), "original");
	CU_ASSERT_FALSE(exists(tmp_of(path)));
}

/* The last step before the directory fsync fails: the temp is removed again. */
static void TEST_rename_failure_removes_temp(void)
{
	const char *path = tpath("is-a-dir");
	char err[512];
	struct stat st;

	CU_ASSERT_EQUAL_FATAL(mkdir(path, 0700), 0);
	CU_ASSERT_EQUAL(cmq_atomic_write(path, "x", 1, 0640, err, sizeof(err)), CMQ_ERR_IO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, tmp_of(path)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, ": rename to "));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, strerror(EISDIR)));
	CU_ASSERT_FALSE(exists(tmp_of(path)));
	CU_ASSERT(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
}

static void TEST_bad_arguments(void)
{
	char err[512];

	CU_ASSERT_EQUAL(cmq_atomic_write(NULL, "x", 1, 0640, err, sizeof(err)), CMQ_ERR_INVAL);
	CU_ASSERT_NOT_EQUAL(err[0], '\0');
	CU_ASSERT_EQUAL(cmq_atomic_write("", "x", 1, 0640, err, sizeof(err)), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(cmq_atomic_write(tpath("a"), NULL, 1, 0640, err, sizeof(err)),
	                CMQ_ERR_INVAL);
	CU_ASSERT_FALSE(exists(tpath("a")));
	/* No room for a message is fine too. */
	CU_ASSERT_EQUAL(cmq_atomic_write(tpath("b"), "x", 1, 0640, NULL, 0), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_atomic_write(tpath("nodir/b"), "x", 1, 0640, NULL, 0), CMQ_ERR_IO);
	CU_ASSERT_EQUAL(cmq_atomic_write_json(NULL, NULL, 0640, err, sizeof(err)), CMQ_ERR_INVAL);
}

static struct json_object *parse(const char *text)
{
	struct json_object *o = NULL;
	struct cmq_diag d;

	cmq_diag_init(&d);
	CU_ASSERT_EQUAL(cmq_json_parse(text, strlen(text), "test", &d, &o), CMQ_OK);
	cmq_diag_cleanup(&d);
	return o;
}

/* 83 and 84 characters: {"text": "<83>"}, indented by 4 and followed by a comma, ends in
 * column 100, the last one a flat object may use on one line. */
#define D83 "01234567890123456789012345678901234567890123456789012345678901234567890123456789012"
#define D84 D83 "3"

/* The layout, byte for byte, and the text parses back to the same document. */
static void TEST_json_layout(void)
{
	static const char input[] =
	    "{\"description\":\"a/b \\\"q\\\" "
	    "caf\\u00e9\\n\\t\\\\\\u0000\\u0001\\u007f\",\"n\":[1,-2.5,true,null],"
	    "\"empty\":[],\"nothing\":{},\"small\":{\"id\":\"r-1\",\"categories\":[\"energy\"]},"
	    "\"nested\":[{\"a\":{\"b\":1}}],\"long\":[{\"text\":\"" D83 "\"},{\"text\":\"" D84
	    "\"}],\"big\":18446744073709551615}";
	static const char expect[] =
	    "{\n"
	    "  \"description\": \"a/b \\\"q\\\" caf\xc3\xa9\\n\\t\\\\\\u0000\\u0001\\u007f\",\n"
	    "  \"n\": [1, -2.5, true, null],\n"
	    "  \"empty\": [],\n"
	    "  \"nothing\": {},\n"
	    "  \"small\": {\"id\": \"r-1\", \"categories\": [\"energy\"]},\n"
	    "  \"nested\": [\n"
	    "    {\n"
	    "      \"a\": {\"b\": 1}\n"
	    "    }\n"
	    "  ],\n"
	    "  \"long\": [\n"
	    "    {\"text\": \"" D83 "\"},\n" /* ends in column 100 */
	    "    {\n"
	    "      \"text\": \"" D84 "\"\n" /* would end in column 101 */
	    "    }\n"
	    "  ],\n"
	    "  \"big\": 18446744073709551615\n"
	    "}\n";
	const char *path = tpath("layout.json");
	struct json_object *o = parse(input), *back;
	char err[512];

	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT_EQUAL(cmq_atomic_write_json(path, o, 0640, err, sizeof(err)), CMQ_OK);
	CU_ASSERT_STRING_EQUAL(slurp(path), expect);
	back = parse(slurp(path));
	CU_ASSERT(json_object_equal(o, back));
	json_object_put(back);
	json_object_put(o);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

/* The config files the admin tool rewrites come out exactly as they are in the repository. */
static void TEST_json_config_files_round_trip(void)
{
	static const char *const files[] = {"config/vendors.json", "config/consent.json",
	                                    "tests/unit/data/consent/good.json"};

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct json_object *o = NULL;
		struct cmq_diag d;
		char err[512], orig[64 * 1024];
		const char *text = slurp(files[i]);

		if (text == NULL) {
			fprintf(stderr, "\n  skipping %s: not found (run from the repository root)",
			        files[i]);
			continue;
		}
		snprintf(orig, sizeof(orig), "%s", text);
		cmq_diag_init(&d);
		CU_ASSERT_EQUAL_FATAL(
		    cmq_json_load_file(files[i], files[i], 1u << 20, &d, &o, NULL), CMQ_OK);
		cmq_diag_cleanup(&d);
		CU_ASSERT_EQUAL(
		    cmq_atomic_write_json(tpath("copy.json"), o, 0640, err, sizeof(err)), CMQ_OK);
		CU_ASSERT_STRING_EQUAL(slurp(tpath("copy.json")), orig);
		json_object_put(o);
	}
}

/* Nothing JSON cannot hold is written; whatever is written loads back (depth included). */
static void TEST_json_refuses_what_cannot_load(void)
{
	const char *path = tpath("refused.json");
	struct json_object *o = json_object_new_object(), *root, *cur;
	char err[512];
	int depth;

	json_object_object_add(o, "x", json_object_new_double(NAN));
	CU_ASSERT_EQUAL(cmq_atomic_write_json(path, o, 0640, err, sizeof(err)), CMQ_ERR_INVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "not written"));
	CU_ASSERT_FALSE(exists(path));
	json_object_object_add(o, "x", json_object_new_double(INFINITY));
	CU_ASSERT_EQUAL(cmq_atomic_write_json(path, o, 0640, err, sizeof(err)), CMQ_ERR_INVAL);
	json_object_put(o);

	for (depth = 1; depth <= CMQ_JSON_MAX_DEPTH + 2; depth++) {
		struct json_object *back = NULL;
		struct cmq_diag d;
		int rc, lrc;

		root = json_object_new_array();
		cur = root;
		for (int i = 1; i < depth; i++) {
			struct json_object *a = json_object_new_array();

			json_object_array_add(cur, a);
			cur = a;
		}
		unlink(path);
		rc = cmq_atomic_write_json(path, root, 0640, err, sizeof(err));
		cmq_diag_init(&d);
		lrc = cmq_json_load_file(path, path, 1u << 20, &d, &back, NULL);
		cmq_diag_cleanup(&d);
		if (depth <= CMQ_JSON_MAX_DEPTH) {
			CU_ASSERT_EQUAL(rc, CMQ_OK);
			CU_ASSERT_EQUAL(lrc, CMQ_OK);
		} else {
			CU_ASSERT_EQUAL(rc, CMQ_ERR_INVAL);
			CU_ASSERT_FALSE(exists(path));
		}
		json_object_put(back);
		json_object_put(root);
	}
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

/* Allocation N fails, for every N: a clean CMQ_ERR_NOMEM, no leak, the original intact. */
static void TEST_oom_sweep(void)
{
	const char *path = tpath("oom.json");
	struct json_object *o = parse("{\"vendors\":[{\"id\":\"a\",\"tier\":\"trusted\"}]}");
	bool done_raw = false, done_json = false;

	for (long n = 0; n < 100 && !(done_raw && done_json); n++) {
		char err[512];
		int rc;

		spit(path, "original");
		cmq_test_fail_after(n);
		rc = cmq_atomic_write(path, "new", 3, 0640, err, sizeof(err));
		cmq_test_fail_after(-1);
		CU_ASSERT(rc == CMQ_OK || rc == CMQ_ERR_NOMEM);
		CU_ASSERT_STRING_EQUAL(slurp(path), rc == CMQ_OK ? "new" : "original");
		if (rc == CMQ_ERR_NOMEM)
			CU_ASSERT_PTR_NOT_NULL(strstr(err, "out of memory"));
		done_raw = done_raw || rc == CMQ_OK;
		CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);

		spit(path, "original");
		cmq_test_fail_after(n);
		rc = cmq_atomic_write_json(path, o, 0640, err, sizeof(err));
		cmq_test_fail_after(-1);
		CU_ASSERT(rc == CMQ_OK || rc == CMQ_ERR_NOMEM);
		if (rc != CMQ_OK)
			CU_ASSERT_STRING_EQUAL(slurp(path), "original");
		done_json = done_json || rc == CMQ_OK;
		CU_ASSERT_FALSE(exists(tmp_of(path)));
		CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
	}
	CU_ASSERT(done_raw && done_json);
	json_object_put(o);
}

int main(void)
{
	static const struct cmq_test_case cases[] = {
	    {"replaces content, exact mode, no temp", TEST_replaces_content_exact_mode_no_temp},
	    {"stale temp is overwritten", TEST_stale_temp_is_overwritten},
	    {"temp is a directory", TEST_temp_is_directory},
	    {"temp symlink or hard link not followed", TEST_temp_symlink_or_hard_link_not_followed},
	    {"missing directory", TEST_missing_directory},
	    {"write failure leaves original", TEST_write_failure_leaves_original},
	    {"rename failure removes temp", TEST_rename_failure_removes_temp},
	    {"bad arguments", TEST_bad_arguments},
	    {"json layout", TEST_json_layout},
	    {"json config files round trip", TEST_json_config_files_round_trip},
	    {"json refuses what cannot load", TEST_json_refuses_what_cannot_load},
	    {"oom sweep", TEST_oom_sweep},
	    {NULL, NULL},
	};

	return cmq_test_run("atomic", cases);
}
