/*
 * fuzz_acl.c - libFuzzer target for the decision path: the example city's policy is
 * loaded once; each input is split at NUL bytes into access, username, client id and
 * topic, and the ACL check (and for some inputs the password connect check) runs on it.
 * Nothing may crash, and a decision must always carry a reason inside the reason table.
 */
#include "acl.h"
#include "error.h"
#include "pcache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct cmq_policy *policy(void)
{
	static struct cmq_policy *p;
	static int tried;

	if (!tried) {
		struct cmq_policy_files f = {"config/policy.json", "config/vendors.json",
		                             "config/operators.json", NULL};
		struct cmq_diag d;

		tried = 1;
		cmq_diag_init(&d);
		if (cmq_policy_load(&f, &d, &p) != CMQ_OK)
			abort(); /* run from the source tree */
		cmq_diag_cleanup(&d);
	}
	return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char buf[4096];
	const char *field[4] = {"", "", "", ""};
	struct cmq_acl_request req;
	struct cmq_acl_result res;
	struct cmq_connect_result cr;
	size_t n = size < sizeof(buf) - 1 ? size : sizeof(buf) - 1;
	int f = 0;

	memcpy(buf, data, n);
	buf[n] = '\0';
	field[0] = buf;
	for (size_t i = 0; i < n && f < 3; i++) {
		if (buf[i] == '\0')
			field[++f] = buf + i + 1;
	}
	memset(&req, 0, sizeof(req));
	req.access = (enum cmq_access)(n > 0 ? (uint8_t)buf[0] % 4 : 0);
	req.username = field[1][0] ? field[1] : NULL;
	req.client_id = field[2];
	req.topic = field[3];
	req.payloadlen = (uint32_t)size * 37u;
	req.retain = size % 2 == 1;
	cmq_acl_check(policy(), &req, &res);
	if ((unsigned)res.reason >= CMQ_REASON__COUNT)
		abort();
	/* The principal cache, with clients crowding 16 slots: always the fresh answer. */
	{
		static struct cmq_pcache cache;
		static char clients[16];
		struct cmq_principal cached, fresh;
		const char *u = req.username ? req.username : "";
		enum cmq_reason a, b;

		if (cache.slots == NULL && cmq_pcache_init(&cache) != CMQ_OK)
			abort();
		a = cmq_pcache_resolve(&cache, policy(), &clients[n % 16], u, strlen(u), &cached);
		b = cmq_principal_resolve(policy(), u, strlen(u), &fresh);
		if (a != b || (a == CMQ_REASON_OK &&
		               (cached.kind != fresh.kind || cached.vendor != fresh.vendor ||
		                cached.op != fresh.op || cached.role != fresh.role)))
			abort();
	}
	/* PBKDF2 makes the password path slow; exercise it on one input in sixteen. */
	if (size % 16 == 0) {
		cmq_connect_check_password(policy(), req.username, field[3], field[2], &cr);
		if ((unsigned)cr.reason >= CMQ_REASON__COUNT)
			abort();
	}
	return 0;
}
