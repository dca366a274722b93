/*
 * fuzz_policy.c - libFuzzer target for the policy loader: the input is up to three JSON
 * documents (policy, vendors, operators) separated by 0xFF bytes, parsed and loaded the way
 * cmq_policy_load does. Whatever the bytes, the loader must not crash, leak (ASan) or
 * accept a document with errors.
 */
#include "alloc.h"
#include "error.h"
#include "jsonutil.h"
#include "policy_internal.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void load_part(struct cmq_load *l, const uint8_t *s, size_t n, const char *name,
                      void (*fn)(struct cmq_load *, const char *, struct json_object *))
{
	struct json_object *root = NULL;

	if (cmq_json_parse((const char *)s, n, name, l->diag, &root) == CMQ_OK) {
		fn(l, name, root);
		json_object_put(root);
	}
}

/* policy.json goes the way the loader takes it: topic_rules parsed element by element. */
static void load_policy_part(struct cmq_load *l, const uint8_t *s, size_t n)
{
	struct json_object *root = NULL;
	struct cmq_json_split rules;
	char *text = cmq_malloc(n + 1);

	if (text == NULL)
		return;
	memcpy(text, s, n);
	text[n] = '\0';
	if (cmq_json_split_text(text, n, "policy.json", "topic_rules", l->diag, &root, &rules) !=
	    CMQ_OK)
		return;
	cmq_load_policy_json(l, "policy.json", root, &rules);
	(void)cmq_json_split_finish(&rules, l->diag);
	cmq_json_split_cleanup(&rules);
	json_object_put(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static void (*const loaders[3])(struct cmq_load *, const char *, struct json_object *) = {
	    NULL, cmq_load_vendors_json, cmq_load_operators_json};
	static const char *const names[3] = {"policy.json", "vendors.json", "operators.json"};
	struct cmq_diag diag;
	struct cmq_load l = {0};
	size_t start = 0;
	int part = 0;

	cmq_diag_init(&diag);
	l.diag = &diag;
	l.p = cmq_calloc(1, sizeof(*l.p));
	if (l.p == NULL)
		return 0;
	cmq_strmap_init(&l.p->operator_by_name);
	cmq_strmap_init(&l.p->vendor_by_id);
	cmq_strmap_init(&l.p->vendor_by_prefix);
	for (size_t i = 0; i <= size && part < 3; i++) {
		if (i == size || data[i] == 0xff) {
			if (part == 0)
				load_policy_part(&l, data + start, i - start);
			else
				load_part(&l, data + start, i - start, names[part], loaders[part]);
			part++;
			start = i + 1;
		}
	}
	cmq_policy_free(l.p);
	cmq_diag_cleanup(&diag);
	return 0;
}
