/*
 * test_strmap.c - core/strmap: put/get/del/set, growth to 10,000 entries,
 * backward-shift deletion (random order, and a wrap-around cluster built
 * on purpose), and an out-of-memory sweep over growth.
 */
#include "cmq_test.h"

#include "error.h"
#include "strmap.h"

#include <stdio.h>
#include <string.h>

#define MANY 10000

static char keys[MANY][16];

static void make_keys(void)
{
	for (int i = 0; i < MANY; i++)
		snprintf(keys[i], sizeof(keys[i]), "key-%d", i);
}

static void *get(const struct cmq_strmap *m, const char *k)
{
	return cmq_strmap_get(m, k, strlen(k));
}

/* Deterministic shuffle (xorshift), so a failure can be replayed. */
static void shuffle(int *a, int n, uint32_t seed)
{
	uint32_t x = seed;

	for (int i = 0; i < n; i++)
		a[i] = i;
	for (int i = n - 1; i > 0; i--) {
		int j;

		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		j = (int)(x % (uint32_t)(i + 1));
		int t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
}

static void TEST_put_get_del_set(void)
{
	long before = cmq_test_live_allocations();
	struct cmq_strmap m;
	int va = 1, vb = 2, vc = 3;
	void *existing = NULL;
	char other_a[] = "a";

	cmq_strmap_init(&m);
	CU_ASSERT_EQUAL(m.cap, 0);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), before); /* nothing until the first insert */
	CU_ASSERT_PTR_NULL(get(&m, "a"));
	CU_ASSERT_PTR_NULL(cmq_strmap_del(&m, "a", 1));

	CU_ASSERT_EQUAL(cmq_strmap_put(&m, "a", 1, &va, NULL), CMQ_OK);
	CU_ASSERT_EQUAL(m.count, 1);
	CU_ASSERT_PTR_EQUAL(get(&m, "a"), &va);
	CU_ASSERT_PTR_EQUAL(get(&m, other_a), &va); /* compared by content, not pointer */

	/* put never replaces; it reports what is there. */
	CU_ASSERT_EQUAL(cmq_strmap_put(&m, "a", 1, &vb, &existing), CMQ_ERR_EXISTS);
	CU_ASSERT_PTR_EQUAL(existing, &va);
	CU_ASSERT_EQUAL(cmq_strmap_put(&m, "a", 1, &vb, NULL), CMQ_ERR_EXISTS);
	CU_ASSERT_PTR_EQUAL(get(&m, "a"), &va);
	CU_ASSERT_EQUAL(m.count, 1);

	/* set replaces or inserts. */
	CU_ASSERT_EQUAL(cmq_strmap_set(&m, "a", 1, &vb), CMQ_OK);
	CU_ASSERT_PTR_EQUAL(get(&m, "a"), &vb);
	CU_ASSERT_EQUAL(m.count, 1);
	CU_ASSERT_EQUAL(cmq_strmap_set(&m, "b", 1, &vc), CMQ_OK);
	CU_ASSERT_EQUAL(m.count, 2);
	CU_ASSERT_PTR_EQUAL(get(&m, "b"), &vc);

	/* Lengths, not NULs, delimit keys. */
	CU_ASSERT_EQUAL(cmq_strmap_put(&m, "ab", 2, &vc, NULL), CMQ_OK);
	CU_ASSERT_PTR_EQUAL(cmq_strmap_get(&m, "abc", 2), &vc);
	CU_ASSERT_PTR_EQUAL(cmq_strmap_get(&m, "abc", 1), &vb);
	CU_ASSERT_PTR_NULL(cmq_strmap_get(&m, "abc", 3));
	CU_ASSERT_EQUAL(cmq_strmap_put(&m, "a\0b", 3, &va, NULL), CMQ_OK);
	CU_ASSERT_PTR_EQUAL(cmq_strmap_get(&m, "a\0b", 3), &va);
	CU_ASSERT_PTR_EQUAL(cmq_strmap_get(&m, "a\0c", 1), &vb);
	CU_ASSERT_EQUAL(cmq_strmap_put(&m, "", 0, &va, NULL), CMQ_OK);
	CU_ASSERT_PTR_EQUAL(cmq_strmap_get(&m, "", 0), &va);
	CU_ASSERT_EQUAL(m.count, 5);

	CU_ASSERT_PTR_EQUAL(cmq_strmap_del(&m, "a", 1), &vb);
	CU_ASSERT_PTR_NULL(get(&m, "a"));
	CU_ASSERT_PTR_NULL(cmq_strmap_del(&m, "a", 1));
	CU_ASSERT_EQUAL(m.count, 4);
	CU_ASSERT_PTR_EQUAL(cmq_strmap_get(&m, "a\0b", 3), &va);
	CU_ASSERT_PTR_EQUAL(cmq_strmap_get(&m, "ab", 2), &vc);
	CU_ASSERT_EQUAL(cmq_strmap_put(&m, "a", 1, &va, NULL), CMQ_OK); /* no tombstone left */
	CU_ASSERT_PTR_EQUAL(get(&m, "a"), &va);

	CU_ASSERT_EQUAL(cmq_strmap_put(&m, NULL, 0, &va, NULL), CMQ_ERR_INVAL);
	CU_ASSERT_EQUAL(cmq_strmap_set(&m, NULL, 0, &va), CMQ_ERR_INVAL);
	CU_ASSERT_PTR_NULL(cmq_strmap_get(&m, NULL, 0));
	CU_ASSERT_PTR_NULL(cmq_strmap_del(&m, NULL, 0));

	cmq_strmap_cleanup(&m);
	CU_ASSERT_EQUAL(m.count, 0);
	CU_ASSERT_EQUAL(m.cap, 0);
	CU_ASSERT_PTR_NULL(get(&m, "b"));
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
	cmq_strmap_cleanup(&m); /* twice is harmless */
}

/* set stores the new key pointer, so the old key's storage may then be freed. */
static void TEST_set_takes_the_new_key(void)
{
	struct cmq_strmap m;
	char old_key[] = "operator", new_key[] = "operator";
	int v1 = 1, v2 = 2;

	cmq_strmap_init(&m);
	CU_ASSERT_EQUAL(cmq_strmap_put(&m, old_key, 8, &v1, NULL), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_strmap_set(&m, new_key, 8, &v2), CMQ_OK);
	memset(old_key, 'X', 8);
	CU_ASSERT_PTR_EQUAL(cmq_strmap_get(&m, "operator", 8), &v2);
	CU_ASSERT_PTR_NULL(cmq_strmap_get(&m, "XXXXXXXX", 8));
	cmq_strmap_cleanup(&m);
}

static void TEST_growth_to_many_entries(void)
{
	long before = cmq_test_live_allocations();
	struct cmq_strmap m;

	make_keys();
	cmq_strmap_init(&m);
	for (int i = 0; i < MANY; i++) {
		CU_ASSERT_EQUAL_FATAL(cmq_strmap_put(&m, keys[i], strlen(keys[i]), keys[i], NULL),
		                      CMQ_OK);
		/* At most half full, and the capacity is a power of two. */
		CU_ASSERT_TRUE_FATAL(m.count * 2 <= m.cap);
		CU_ASSERT_EQUAL_FATAL(m.cap & (m.cap - 1), 0);
	}
	CU_ASSERT_EQUAL(m.count, MANY);
	CU_ASSERT_EQUAL(m.cap, 32768);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), before + 1); /* one table */
	for (int i = 0; i < MANY; i++)
		CU_ASSERT_PTR_EQUAL_FATAL(get(&m, keys[i]), keys[i]);
	CU_ASSERT_PTR_NULL(get(&m, "key-10000"));
	CU_ASSERT_PTR_NULL(get(&m, "key-"));
	CU_ASSERT_PTR_NULL(get(&m, "key-01"));
	CU_ASSERT_PTR_NULL(get(&m, "Key-1"));
	/* Duplicates are still refused at this size. */
	for (int i = 0; i < MANY; i += 97) {
		void *existing = NULL;

		CU_ASSERT_EQUAL(cmq_strmap_put(&m, keys[i], strlen(keys[i]), NULL, &existing),
		                CMQ_ERR_EXISTS);
		CU_ASSERT_PTR_EQUAL(existing, keys[i]);
	}
	CU_ASSERT_EQUAL(m.count, MANY);
	cmq_strmap_cleanup(&m);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
}

/* Delete n keys in shuffled order; check all survivors every `every` deletions. */
static void delete_in_random_order(int n, int every, uint32_t seed)
{
	static int order[MANY];
	static bool gone[MANY];
	struct cmq_strmap m;
	long bad = 0;

	make_keys();
	cmq_strmap_init(&m);
	for (int i = 0; i < n; i++)
		CU_ASSERT_EQUAL_FATAL(cmq_strmap_put(&m, keys[i], strlen(keys[i]), keys[i], NULL),
		                      CMQ_OK);
	shuffle(order, n, seed);
	memset(gone, 0, sizeof(gone));
	for (int d = 0; d < n; d++) {
		const char *k = keys[order[d]];

		CU_ASSERT_PTR_EQUAL_FATAL(cmq_strmap_del(&m, k, strlen(k)), k);
		gone[order[d]] = true;
		CU_ASSERT_PTR_NULL(get(&m, k));
		CU_ASSERT_EQUAL(m.count, (size_t)(n - d - 1));
		if (d % every != 0 && d < n - 200)
			continue;
		for (int i = 0; i < n; i++) {
			void *v = get(&m, keys[i]);

			if (v != (gone[i] ? NULL : keys[i]) && bad++ < 5)
				fprintf(stderr, "\n  after deleting %d keys: %s %s\n", d + 1,
				        keys[i], gone[i] ? "still found" : "lost");
		}
	}
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT_EQUAL(m.count, 0);
	/* Emptied by deletion, the table takes everything back. */
	for (int i = 0; i < n; i++)
		CU_ASSERT_EQUAL_FATAL(cmq_strmap_put(&m, keys[i], strlen(keys[i]), keys[i], NULL),
		                      CMQ_OK);
	for (int i = 0; i < n; i++)
		CU_ASSERT_PTR_EQUAL_FATAL(get(&m, keys[i]), keys[i]);
	cmq_strmap_cleanup(&m);
}

static void TEST_delete_random_order_small(void)
{
	/* Every survivor checked after every deletion. */
	delete_in_random_order(1000, 1, 0x9e3779b9u);
	delete_in_random_order(37, 1, 12345u);
}

static void TEST_delete_random_order_many(void)
{
	delete_in_random_order(MANY, 250, 0x2545f491u);
}

/* Interleaved inserts and deletes keep probe runs intact too. */
static void TEST_churn(void)
{
	static bool in[MANY];
	struct cmq_strmap m;
	uint32_t x = 0xdeadbeefu;
	long bad = 0;

	make_keys();
	memset(in, 0, sizeof(in));
	cmq_strmap_init(&m);
	for (int step = 0; step < 50000; step++) {
		int i;

		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		i = (int)(x % 2000);
		if (in[i]) {
			CU_ASSERT_PTR_EQUAL_FATAL(cmq_strmap_del(&m, keys[i], strlen(keys[i])),
			                          keys[i]);
		} else {
			CU_ASSERT_EQUAL_FATAL(
			    cmq_strmap_put(&m, keys[i], strlen(keys[i]), keys[i], NULL), CMQ_OK);
		}
		in[i] = !in[i];
		if (step % 5000 == 0 || step == 49999) {
			for (int k = 0; k < 2000; k++)
				bad += get(&m, keys[k]) != (in[k] ? keys[k] : NULL);
		}
	}
	CU_ASSERT_EQUAL(bad, 0);
	cmq_strmap_cleanup(&m);
}

/* A key whose home slot in a table of `cap` slots is `home`, not among `avoid`. */
static const char *key_with_home(const struct cmq_strmap *m, size_t cap, size_t home, int *next)
{
	while (*next < MANY) {
		const char *k = keys[(*next)++];

		if ((cmq_strmap_hash(m->seed, k, strlen(k)) & (cap - 1)) == home)
			return k;
	}
	return NULL;
}

/*
 * A probe run that wraps around the end of the table: deleting its head must
 * pull the wrapped entries back, and must not move an entry out of its home.
 */
static void TEST_backward_shift_across_the_wrap(void)
{
	struct cmq_strmap m;
	const char *a, *b, *c, *d;
	int next = 0;

	make_keys();
	cmq_strmap_init(&m);
	m.seed = 0x5eed; /* fixed, so the layout is known */
	/* The first insert makes 8 slots, which hold 4 entries before growing. */
	a = key_with_home(&m, 8, 7, &next);
	b = key_with_home(&m, 8, 7, &next);
	c = key_with_home(&m, 8, 0, &next);
	d = key_with_home(&m, 8, 6, &next);
	CU_ASSERT_FATAL(a != NULL && b != NULL && c != NULL && d != NULL);
	CU_ASSERT_EQUAL(cmq_strmap_put(&m, a, strlen(a), (void *)a, NULL), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_strmap_put(&m, b, strlen(b), (void *)b, NULL), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_strmap_put(&m, c, strlen(c), (void *)c, NULL), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_strmap_put(&m, d, strlen(d), (void *)d, NULL), CMQ_OK);
	CU_ASSERT_EQUAL_FATAL(m.cap, 8);
	/* a at its home 7; b wrapped to 0; c displaced to 1; d at its home 6. */
	CU_ASSERT_PTR_EQUAL(m.slots[7].key, a);
	CU_ASSERT_PTR_EQUAL(m.slots[0].key, b);
	CU_ASSERT_PTR_EQUAL(m.slots[1].key, c);
	CU_ASSERT_PTR_EQUAL(m.slots[6].key, d);

	CU_ASSERT_PTR_EQUAL(cmq_strmap_del(&m, a, strlen(a)), a);
	CU_ASSERT_PTR_EQUAL(m.slots[7].key, b); /* back across the wrap */
	CU_ASSERT_PTR_EQUAL(m.slots[0].key, c); /* now at its home */
	CU_ASSERT_PTR_NULL(m.slots[1].key);
	CU_ASSERT_PTR_EQUAL(get(&m, b), b);
	CU_ASSERT_PTR_EQUAL(get(&m, c), c);
	CU_ASSERT_PTR_EQUAL(get(&m, d), d);

	/* Deleting d (slot 6) must leave b at its home 7. */
	CU_ASSERT_PTR_EQUAL(cmq_strmap_del(&m, d, strlen(d)), d);
	CU_ASSERT_PTR_NULL(m.slots[6].key);
	CU_ASSERT_PTR_EQUAL(m.slots[7].key, b);
	CU_ASSERT_PTR_EQUAL(get(&m, b), b);
	CU_ASSERT_PTR_EQUAL(get(&m, c), c);
	CU_ASSERT_EQUAL(m.count, 2);
	cmq_strmap_cleanup(&m);
}

static void TEST_hash(void)
{
	uint32_t h = cmq_strmap_hash(1, "abc", 3);

	CU_ASSERT_EQUAL(cmq_strmap_hash(1, "abc", 3), h);
	CU_ASSERT_EQUAL(cmq_strmap_hash(1, "abcdef", 3), h);
	CU_ASSERT_NOT_EQUAL(cmq_strmap_hash(2, "abc", 3), h);
	CU_ASSERT_NOT_EQUAL(cmq_strmap_hash(1, "abd", 3), h);
	CU_ASSERT_NOT_EQUAL(cmq_strmap_hash(1, "abc", 2), h);
	/* The low bits (the slot index) depend on the last byte too. */
	{
		bool differ = false;

		for (int c = 'a'; c <= 'z' && !differ; c++) {
			char k[3] = {'x', 'y', (char)c};

			differ =
			    (cmq_strmap_hash(7, k, 3) & 15) != (cmq_strmap_hash(7, "xya", 3) & 15);
		}
		CU_ASSERT_TRUE(differ);
	}
	/* Two maps get different seeds. */
	{
		struct cmq_strmap m1, m2;

		cmq_strmap_init(&m1);
		cmq_strmap_init(&m2);
		CU_ASSERT_NOT_EQUAL(m1.seed, m2.seed);
	}
}

/*
 * Fail allocation n while inserting 200 keys: the failing put returns
 * CMQ_ERR_NOMEM and leaves the map as it was; nothing leaks.
 */
static void TEST_oom_sweep_on_growth(void)
{
	long before = cmq_test_live_allocations(), n;
	bool done = false;

	make_keys();
	for (n = 0; n < 100 && !done; n++) {
		struct cmq_strmap m;
		int failed_at = -1;

		cmq_strmap_init(&m);
		cmq_test_fail_after(n);
		for (int i = 0; i < 200 && failed_at < 0; i++) {
			size_t cap = m.cap;
			int rc = i % 2 ? cmq_strmap_put(&m, keys[i], strlen(keys[i]), keys[i], NULL)
			               : cmq_strmap_set(&m, keys[i], strlen(keys[i]), keys[i]);

			if (rc != CMQ_OK) {
				CU_ASSERT_EQUAL(rc, CMQ_ERR_NOMEM);
				CU_ASSERT_EQUAL(m.count, (size_t)i);
				CU_ASSERT_EQUAL(m.cap, cap);
				CU_ASSERT_PTR_NULL(get(&m, keys[i]));
				failed_at = i;
			}
		}
		done = !cmq_test_failure_fired();
		cmq_test_fail_after(-1);
		if (failed_at >= 0) {
			for (int i = 0; i < failed_at; i++)
				CU_ASSERT_PTR_EQUAL(get(&m, keys[i]), keys[i]);
			/* The map still works after the failure. */
			CU_ASSERT_EQUAL(cmq_strmap_put(&m, keys[failed_at], strlen(keys[failed_at]),
			                               keys[failed_at], NULL),
			                CMQ_OK);
			CU_ASSERT_PTR_EQUAL(get(&m, keys[failed_at]), keys[failed_at]);
		}
		CU_ASSERT_EQUAL(done, failed_at < 0);
		cmq_strmap_cleanup(&m);
		CU_ASSERT_EQUAL(cmq_test_live_allocations(), before);
	}
	CU_ASSERT_TRUE(done);
	/* 200 entries need 512 slots: growths to 8, 16, ..., 512 are 7 allocations. */
	CU_ASSERT_EQUAL(n, 8);
}

int main(void)
{
	static const struct cmq_test_case cases[] = {
	    {"put_get_del_set", TEST_put_get_del_set},
	    {"set_takes_the_new_key", TEST_set_takes_the_new_key},
	    {"growth_to_many_entries", TEST_growth_to_many_entries},
	    {"delete_random_order_small", TEST_delete_random_order_small},
	    {"delete_random_order_many", TEST_delete_random_order_many},
	    {"churn", TEST_churn},
	    {"backward_shift_across_the_wrap", TEST_backward_shift_across_the_wrap},
	    {"hash", TEST_hash},
	    {"oom_sweep_on_growth", TEST_oom_sweep_on_growth},
	    {NULL, NULL},
	};

	return cmq_test_run("strmap", cases);
}
