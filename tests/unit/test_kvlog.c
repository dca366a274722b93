/*
 * test_kvlog.c - the gateway outbox's store: what was put survives a reopen (a crash
 * is a close without anything else), deletes survive too, a torn last record is cut
 * off, compaction keeps exactly the live records, and allocation failures leave the
 * store as it was.
 */
#include "cmq_test.h"

#include "error.h"
#include "kvlog.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *log_path(const char *name)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s/%s", cmq_test_tmpdir(), name);
	return path;
}

static struct cmq_kvlog *open_ok(const char *path)
{
	struct cmq_kvlog *kv = NULL;
	struct cmq_diag d;

	cmq_diag_init(&d);
	CU_ASSERT_EQUAL(cmq_kvlog_open(path, false, &d, &kv), CMQ_OK);
	cmq_diag_cleanup(&d);
	return kv;
}

static void put_str(struct cmq_kvlog *kv, const char *key, const char *a, const char *b)
{
	struct iovec iov[2] = {{(void *)a, strlen(a)}, {(void *)b, b != NULL ? strlen(b) : 0}};

	CU_ASSERT_EQUAL(cmq_kvlog_put(kv, key, iov, b != NULL ? 2 : 1, false), CMQ_OK);
}

static bool has(const struct cmq_kvlog *kv, const char *key, const char *want)
{
	const void *data;
	size_t len;

	if (cmq_kvlog_get(kv, key, &data, &len) != CMQ_OK)
		return want == NULL;
	return want != NULL && len == strlen(want) && memcmp(data, want, len) == 0;
}

static void TEST_put_get_del_survive_reopen(void)
{
	const char *path = log_path("a.log");
	struct cmq_kvlog *kv = open_ok(path);

	CU_ASSERT_PTR_NOT_NULL_FATAL(kv);
	put_str(kv, "c5-1", "hello ", "world");
	put_str(kv, "c5-2", "two", NULL);
	put_str(kv, "s5-1", "inflight", NULL);
	put_str(kv, "c5-2", "two again", NULL); /* replaces */
	CU_ASSERT_EQUAL(cmq_kvlog_del(kv, "s5-1", false), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_kvlog_del(kv, "s5-1", false), CMQ_ERR_NOT_FOUND);
	CU_ASSERT(has(kv, "c5-1", "hello world"));
	CU_ASSERT(has(kv, "c5-2", "two again"));
	CU_ASSERT(has(kv, "s5-1", NULL));
	CU_ASSERT_EQUAL(cmq_kvlog_count(kv), 2);
	cmq_kvlog_close(kv); /* as after kill -9: nothing but what write(2) stored */

	kv = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kv);
	CU_ASSERT_EQUAL(cmq_kvlog_count(kv), 2);
	CU_ASSERT(has(kv, "c5-1", "hello world"));
	CU_ASSERT(has(kv, "c5-2", "two again"));
	CU_ASSERT(has(kv, "s5-1", NULL));
	CU_ASSERT_EQUAL(cmq_kvlog_clear(kv), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_kvlog_count(kv), 0);
	cmq_kvlog_close(kv);
	kv = open_ok(path);
	CU_ASSERT_EQUAL(cmq_kvlog_count(kv), 0);
	cmq_kvlog_close(kv);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

/* A crash in the middle of a write leaves a torn record: it is cut off with a warning
 * and everything before it is kept. Corrupt bytes in a record end the replay there too. */
static void TEST_torn_tail_is_cut_off(void)
{
	const char *path = log_path("torn.log");
	struct cmq_kvlog *kv = open_ok(path);
	struct cmq_diag d;
	struct stat st;
	size_t full;
	int fd;

	put_str(kv, "k1", "first", NULL);
	put_str(kv, "k2", "second", NULL);
	cmq_kvlog_close(kv);
	CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
	full = (size_t)st.st_size;
	CU_ASSERT_EQUAL_FATAL(truncate(path, (off_t)(full - 3)), 0); /* tear k2 */

	cmq_diag_init(&d);
	CU_ASSERT_EQUAL(cmq_kvlog_open(path, false, &d, &kv), CMQ_OK);
	CU_ASSERT_EQUAL(d.errors, 0);
	CU_ASSERT_EQUAL(d.warnings, 1);
	CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&d, "torn or corrupt"));
	cmq_diag_cleanup(&d);
	CU_ASSERT(has(kv, "k1", "first"));
	CU_ASSERT(has(kv, "k2", NULL));
	put_str(kv, "k3", "third", NULL); /* appends after the cut, not after the garbage */
	cmq_kvlog_close(kv);
	kv = open_ok(path);
	CU_ASSERT(has(kv, "k1", "first"));
	CU_ASSERT(has(kv, "k3", "third"));
	cmq_kvlog_close(kv);

	/* Flip one data byte of the second record: its check fails, the first survives. */
	kv = open_ok(path);
	cmq_kvlog_close(kv);
	CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
	fd = open(path, O_WRONLY);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(pwrite(fd, "X", 1, st.st_size - 1), 1);
	close(fd);
	cmq_diag_init(&d);
	CU_ASSERT_EQUAL(cmq_kvlog_open(path, false, &d, &kv), CMQ_OK);
	CU_ASSERT_EQUAL(d.warnings, 1);
	cmq_diag_cleanup(&d);
	CU_ASSERT_EQUAL(cmq_kvlog_count(kv), 1);
	cmq_kvlog_close(kv);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

/* Many puts and deletes: the file is compacted, and only the live records survive. */
static void TEST_compaction_keeps_live_records(void)
{
	const char *path = log_path("compact.log");
	struct cmq_kvlog *kv = open_ok(path);
	char key[32], val[300];
	size_t max_bytes = 0;

	memset(val, 'v', sizeof(val) - 1);
	val[sizeof(val) - 1] = '\0';
	for (int i = 0; i < 20000; i++) {
		snprintf(key, sizeof(key), "c5-%d", i);
		put_str(kv, key, val, NULL);
		if (i % 100 != 0)
			CU_ASSERT_EQUAL(cmq_kvlog_del(kv, key, true), CMQ_OK);
		if (cmq_kvlog_file_bytes(kv) > max_bytes)
			max_bytes = cmq_kvlog_file_bytes(kv);
	}
	CU_ASSERT_EQUAL(cmq_kvlog_count(kv), 200);
	/* 20,000 records of ~320 bytes would be 6 MB uncompacted. */
	CU_ASSERT(max_bytes < 3u * 1024u * 1024u);
	cmq_kvlog_close(kv);
	kv = open_ok(path);
	CU_ASSERT_EQUAL(cmq_kvlog_count(kv), 200);
	CU_ASSERT(has(kv, "c5-19900", val));
	CU_ASSERT(has(kv, "c5-19901", NULL));
	cmq_kvlog_close(kv);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

/* Deferred records are written with the next one that is not deferred, in order; a
 * crash (a child that exits without closing) loses only deferred ones. */
static void TEST_deferred_records(void)
{
	const char *path = log_path("defer.log");
	struct iovec v = {(void *)"v", 1};
	struct cmq_kvlog *kv;
	pid_t pid;
	int status;

	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		struct cmq_diag d;

		cmq_diag_init(&d);
		if (cmq_kvlog_open(path, false, &d, &kv) != CMQ_OK ||
		    cmq_kvlog_put(kv, "c-1", &v, 1, false) != CMQ_OK || /* written */
		    cmq_kvlog_put(kv, "s-1", &v, 1, true) != CMQ_OK ||  /* deferred ... */
		    cmq_kvlog_del(kv, "c-1", true) != CMQ_OK ||         /* ... */
		    cmq_kvlog_put(kv, "c-2", &v, 1, false) != CMQ_OK || /* all three written */
		    cmq_kvlog_del(kv, "s-1", true) != CMQ_OK ||         /* lost in the crash */
		    cmq_kvlog_del(kv, "c-2", true) != CMQ_OK)           /* lost in the crash */
			_exit(2);
		_exit(0); /* no close: a crash */
	}
	CU_ASSERT_EQUAL_FATAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	kv = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kv);
	CU_ASSERT(has(kv, "c-1", NULL));
	CU_ASSERT(has(kv, "s-1", "v"));
	CU_ASSERT(has(kv, "c-2", "v"));
	CU_ASSERT_EQUAL(cmq_kvlog_count(kv), 2);
	/* An explicit flush, or an orderly close, writes what is deferred. */
	CU_ASSERT_EQUAL(cmq_kvlog_del(kv, "s-1", true), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_kvlog_flush(kv), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_kvlog_del(kv, "c-2", true), CMQ_OK);
	cmq_kvlog_close(kv);
	kv = open_ok(path);
	CU_ASSERT_EQUAL(cmq_kvlog_count(kv), 0);
	cmq_kvlog_close(kv);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

/* With sync on, every write is also flushed to the disk; what is stored is the same. */
static void TEST_sync_mode(void)
{
	const char *path = log_path("sync.log");
	struct iovec v = {(void *)"v", 1};
	struct cmq_kvlog *kv = NULL;
	struct cmq_diag d;

	cmq_diag_init(&d);
	CU_ASSERT_EQUAL_FATAL(cmq_kvlog_open(path, true, &d, &kv), CMQ_OK);
	cmq_diag_cleanup(&d);
	CU_ASSERT_EQUAL(cmq_kvlog_put(kv, "c-1", &v, 1, false), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_kvlog_put(kv, "s-1", &v, 1, true), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_kvlog_flush(kv), CMQ_OK);
	cmq_kvlog_close(kv);
	kv = open_ok(path);
	CU_ASSERT(has(kv, "c-1", "v"));
	CU_ASSERT(has(kv, "s-1", "v"));
	cmq_kvlog_close(kv);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

static void TEST_bad_arguments_and_io(void)
{
	struct cmq_kvlog *kv = open_ok(log_path("bad.log"));
	struct cmq_diag d;
	char longkey[CMQ_KVLOG_KEY_MAX + 2];

	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	CU_ASSERT_EQUAL(cmq_kvlog_put(kv, "", NULL, 0, false), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(cmq_kvlog_put(kv, longkey, NULL, 0, false), CMQ_ERR_INVAL);
	cmq_kvlog_close(kv);

	cmq_diag_init(&d);
	CU_ASSERT_EQUAL(cmq_kvlog_open("/nonexistent-dir/x.log", false, &d, &kv), CMQ_ERR_IO);
	CU_ASSERT_PTR_NULL(kv);
	CU_ASSERT_PTR_NOT_NULL(cmq_diag_find(&d, "/nonexistent-dir/x.log"));
	cmq_diag_cleanup(&d);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
}

static void TEST_oom_sweep(void)
{
	const char *path = log_path("oom.log");
	struct cmq_kvlog *kv = open_ok(path);

	put_str(kv, "k1", "one", NULL);
	put_str(kv, "k2", "two", NULL);
	cmq_kvlog_close(kv);
	for (long n = 0; n < 100; n++) {
		struct cmq_diag d;
		struct iovec iov = {(void *)"three", 5};
		int rc;

		cmq_diag_init(&d);
		cmq_test_fail_after(n);
		rc = cmq_kvlog_open(path, false, &d, &kv);
		if (rc == CMQ_OK)
			rc = cmq_kvlog_put(kv, "k3", &iov, 1, false);
		cmq_test_fail_after(-1);
		cmq_diag_cleanup(&d);
		CU_ASSERT(rc == CMQ_OK || rc == CMQ_ERR_NOMEM);
		if (kv != NULL) {
			/* Whatever failed, what was stored before is intact. */
			CU_ASSERT(has(kv, "k1", "one"));
			cmq_kvlog_close(kv);
			kv = NULL;
		}
		CU_ASSERT_EQUAL(cmq_test_live_allocations(), 0);
		if (rc == CMQ_OK)
			break;
	}
	kv = open_ok(path);
	CU_ASSERT(has(kv, "k1", "one"));
	CU_ASSERT(has(kv, "k2", "two"));
	cmq_kvlog_close(kv);
}

int main(void)
{
	static const struct cmq_test_case cases[] = {
	    {"put get del survive reopen", TEST_put_get_del_survive_reopen},
	    {"torn tail is cut off", TEST_torn_tail_is_cut_off},
	    {"compaction keeps live records", TEST_compaction_keeps_live_records},
	    {"deferred records", TEST_deferred_records},
	    {"sync mode", TEST_sync_mode},
	    {"bad arguments and io", TEST_bad_arguments_and_io},
	    {"oom sweep", TEST_oom_sweep},
	    {NULL, NULL},
	};

	return cmq_test_run("kvlog", cases);
}
