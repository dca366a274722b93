/*
 * test_pcache.c - the principal cache (core/pcache.h) against the example city: whatever
 * sequence of clients and usernames it sees, its answer is the one cmq_principal_resolve
 * gives, and hits skip the lookups.
 */
#include "cmq_test.h"

#include "error.h"
#include "pcache.h"
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct cmq_policy *example(void)
{
	static char pol[4096], ven[4096], ops[4096];
	const char *src = getenv("CMQ_SRC");
	struct cmq_policy_files f;

	snprintf(pol, sizeof(pol), "%s/config/policy.json", src ? src : ".");
	snprintf(ven, sizeof(ven), "%s/config/vendors.json", src ? src : ".");
	snprintf(ops, sizeof(ops), "%s/config/operators.json", src ? src : ".");
	f.policy = pol;
	f.vendors = ven;
	f.operators = ops;
	f.ca_file = NULL;
	return cmq_test_load_clean(&f, false);
}

/* The cached answer must be the fresh one, field for field. */
static void same_as_fresh(struct cmq_pcache *c, const struct cmq_policy *p, const void *client,
                          const char *username)
{
	struct cmq_principal cached, fresh;
	size_t len = username ? strlen(username) : 0;
	enum cmq_reason rc = cmq_pcache_resolve(c, p, client, username, len, &cached);
	enum cmq_reason rf = cmq_principal_resolve(p, username, len, &fresh);

	CU_ASSERT_EQUAL(rc, rf);
	if (rc == CMQ_REASON_OK && rf == CMQ_REASON_OK) {
		CU_ASSERT_EQUAL(cached.kind, fresh.kind);
		CU_ASSERT_PTR_EQUAL(cached.vendor, fresh.vendor);
		CU_ASSERT_PTR_EQUAL(cached.op, fresh.op);
		CU_ASSERT_PTR_EQUAL(cached.role, fresh.role);
	}
}

static void TEST_hits_and_revalidation(void)
{
	struct cmq_policy *p = example();
	struct cmq_pcache c;
	struct cmq_principal who;
	static const char a = 0, b = 0;
	long live;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	live = cmq_test_live_allocations();
	CU_ASSERT_EQUAL_FATAL(cmq_pcache_init(&c), CMQ_OK);
	CU_ASSERT_EQUAL(cmq_pcache_resolve(&c, p, &a, "civitas-air-001", 15, &who), CMQ_REASON_OK);
	CU_ASSERT_EQUAL(c.misses, 1);
	CU_ASSERT_EQUAL(cmq_pcache_resolve(&c, p, &a, "civitas-air-001", 15, &who), CMQ_REASON_OK);
	CU_ASSERT_EQUAL(c.hits, 1);
	CU_ASSERT_EQUAL(who.kind, CMQ_PRINCIPAL_DEVICE);
	CU_ASSERT_STRING_EQUAL(who.vendor->id, "civitas");
	/* The same client object with another username: checked, not trusted. */
	same_as_fresh(&c, p, &a, "gateway");
	same_as_fresh(&c, p, &a, "nimbus-air-001");
	same_as_fresh(&c, p, &a, "nimbus-air-001");
	same_as_fresh(&c, p, &a, "civitas-");        /* a prefix alone names no device */
	same_as_fresh(&c, p, &a, "civitas-air-002"); /* same vendor: a hit, and right */
	same_as_fresh(&c, p, &a, "gatewayX");
	same_as_fresh(&c, p, &a, "dashboard");
	same_as_fresh(&c, p, &a, "dashboar");
	same_as_fresh(&c, p, &a, "");
	same_as_fresh(&c, p, &b, "admin");
	/* Forgetting and clearing empty the slots. */
	CU_ASSERT_EQUAL(cmq_pcache_resolve(&c, p, &b, "admin", 5, &who), CMQ_REASON_OK);
	c.hits = c.misses = 0;
	cmq_pcache_forget(&c, &b);
	CU_ASSERT_EQUAL(cmq_pcache_resolve(&c, p, &b, "admin", 5, &who), CMQ_REASON_OK);
	CU_ASSERT_EQUAL(c.misses, 1);
	cmq_pcache_clear(&c);
	CU_ASSERT_EQUAL(cmq_pcache_resolve(&c, p, &b, "admin", 5, &who), CMQ_REASON_OK);
	CU_ASSERT_EQUAL(c.misses, 2);
	CU_ASSERT_EQUAL(c.hits, 0);
	/* No policy, no username, no client: the plain answer. */
	same_as_fresh(&c, NULL, &a, "gateway");
	same_as_fresh(&c, p, &a, NULL);
	same_as_fresh(&c, p, NULL, "gateway");
	cmq_pcache_cleanup(&c);
	CU_ASSERT_EQUAL(cmq_test_live_allocations(), live);
	cmq_policy_free(p);
}

/* Many clients sharing few slots, usernames changing under them: never a stale answer. */
static void TEST_random_sequences_match_fresh_resolution(void)
{
	static const char *const names[] = {
	    "civitas-air-001", "civitas-air-002", "civitas-", "civitas",   "nimbus-air-001",
	    "nimbus-x",        "hawkeye-cam-001", "gateway",  "gateway-1", "dashboard",
	    "admin",           "traffic-centre",  "nobody",   "c",         "nimbus-"};
	static char clients[CMQ_PCACHE_SLOTS * 3];
	struct cmq_policy *p = example();
	struct cmq_pcache c;
	unsigned seed = 12345;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL_FATAL(cmq_pcache_init(&c), CMQ_OK);
	for (int i = 0; i < 200000; i++) {
		seed = seed * 1103515245u + 12345u;
		const void *client = &clients[(seed >> 8) % sizeof(clients)];

		seed = seed * 1103515245u + 12345u;
		same_as_fresh(&c, p, client,
		              names[(seed >> 8) % (sizeof(names) / sizeof(names[0]))]);
	}
	CU_ASSERT_TRUE(c.hits > 0);
	CU_ASSERT_TRUE(c.misses > 0);
	cmq_pcache_cleanup(&c);
	cmq_policy_free(p);
}

/* Without its table (no memory at init) the cache is inert, and still right. */
static void TEST_inert_without_memory(void)
{
	struct cmq_policy *p = example();
	struct cmq_pcache c;
	static const char a = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	cmq_test_fail_after(0);
	CU_ASSERT_EQUAL(cmq_pcache_init(&c), CMQ_ERR_NOMEM);
	cmq_test_fail_after(-1);
	same_as_fresh(&c, p, &a, "civitas-air-001");
	same_as_fresh(&c, p, &a, "gateway");
	cmq_pcache_forget(&c, &a);
	cmq_pcache_clear(&c);
	cmq_pcache_cleanup(&c);
	cmq_policy_free(p);
}

static const struct cmq_test_case cases[] = {
    {"hits and revalidation", TEST_hits_and_revalidation},
    {"random sequences match fresh resolution", TEST_random_sequences_match_fresh_resolution},
    {"inert without memory", TEST_inert_without_memory},
    {NULL, NULL},
};

int main(void)
{
	return cmq_test_run("pcache", cases);
}
