/*
 * fuzz_scrub.c - libFuzzer target for the scrub engine: each input is a payload,
 * parsed once with cmq_scrub_parse and scrubbed with every profile of the golden
 * policy (tests/unit/data/scrub/policy.json, loaded once; run from the source tree).
 * The raw bytes also go through cmq_redact with every pattern mask.
 *
 * Besides not crashing or leaking (ASan), it checks:
 *  - a failed scrub returns no output; a successful one prints as JSON that parses
 *    again;
 *  - nothing unnamed leaks: the canary "QQQQ" may appear in a profile's output only if
 *    the input has it inside a value some keep or redact op of that profile names
 *    (found here by an independent walk of the op paths). Every other op writes only
 *    values it computes (hex pseudonyms, geohashes, numbers, labels, times), which
 *    cannot spell it, and output keys come from the policy.
 *  - cmq_redact never needs more than 2 * len + 16 bytes (the engine's buffer bound).
 */
#include "policy.h"
#include "pseudo.h"
#include "scrub.h"

#include "error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CANARY "QQQQ"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct env {
	struct cmq_policy *policy;
	struct cmq_pseudo *pseudo;
};

static struct env *env(void)
{
	static struct env e;
	static int tried;

	if (!tried) {
		static const uint8_t secret[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
		struct cmq_policy_files f = {"tests/unit/data/scrub/policy.json",
		                             "tests/unit/data/policy/good/vendors.json", NULL,
		                             NULL};
		struct cmq_diag d;

		tried = 1;
		cmq_diag_init(&d);
		if (cmq_policy_load(&f, &d, &e.policy) != CMQ_OK ||
		    cmq_pseudo_new(secret, 86400, &e.pseudo) != CMQ_OK)
			abort(); /* run from the source tree */
		cmq_diag_cleanup(&d);
	}
	return &e;
}

/* Whether the canary is in any value the path p names below v (segment k on). */
static int exposed(struct json_object *v, const struct cmq_scrub_path *p, size_t k)
{
	const struct cmq_scrub_seg *seg;
	struct json_object *child = NULL;

	if (k == p->n)
		return strstr(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), CANARY) !=
		       NULL;
	seg = &p->seg[k];
	if (!json_object_is_type(v, json_type_object) ||
	    !json_object_object_get_ex(v, seg->key, &child))
		return 0;
	if (seg->index == CMQ_SEG_KEY)
		return exposed(child, p, k + 1);
	if (!json_object_is_type(child, json_type_array))
		return 0;
	for (size_t i = 0; i < json_object_array_length(child); i++) {
		if ((seg->index < 0 || (size_t)seg->index == i) &&
		    exposed(json_object_array_get_idx(child, i), p, k + 1))
			return 1;
	}
	return 0;
}

static int may_show_canary(const struct cmq_profile *prof, struct json_object *in)
{
	for (size_t i = 0; i < prof->n_ops; i++) {
		const struct cmq_scrub_op *op = &prof->ops[i];

		if ((op->kind == CMQ_SCRUB_KEEP || op->kind == CMQ_SCRUB_REDACT) &&
		    exposed(in, &op->cpath, 0))
			return 1;
	}
	return 0;
}

static void redact_all_masks(const uint8_t *data, size_t size)
{
	size_t cap = 2 * size + 16;
	char *buf = malloc(cap);

	if (buf == NULL)
		return;
	for (unsigned mask = 0; mask < 16; mask++) {
		size_t out_len = 0;
		int n = cmq_redact_len((const char *)data, size, mask, buf, cap, &out_len);

		if (n < 0 || out_len >= cap || buf[out_len] != '\0')
			abort();
	}
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct env *e = env();
	struct cmq_scrub_env senv = {e->pseudo, 1764331200};
	struct json_object *in = NULL;

	redact_all_masks(data, size);
	if (cmq_scrub_parse(data, size, 65536, 16, &in) != CMQ_DROP_NONE) {
		if (in != NULL)
			abort();
		return 0;
	}
	for (size_t i = 0; i < e->policy->n_profiles; i++) {
		const struct cmq_profile *prof = &e->policy->profiles[i];
		struct json_object *out = (struct json_object *)e, *again = NULL;
		struct cmq_scrub_fail fail;
		struct cmq_scrub_agg agg;
		enum cmq_drop rc = cmq_scrub_apply(prof, in, &senv, &out, &agg, &fail);
		const char *text;

		if (rc != CMQ_DROP_NONE) {
			if (out != NULL || fail.reason != rc)
				abort();
			continue;
		}
		if (prof->aggregates) {
			if (out != NULL || agg.op != &prof->ops[0] || agg.group[0] == '\0' ||
			    agg.count > 1000000000u)
				abort();
			continue;
		}
		if (out == NULL)
			abort();
		text = json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN |
		                                               JSON_C_TO_STRING_NOSLASHESCAPE);
		if (cmq_scrub_parse(text, strlen(text), 1 << 20, 64, &again) != CMQ_DROP_NONE)
			abort(); /* the output is not valid JSON */
		json_object_put(again);
		if (strstr(text, CANARY) != NULL && !may_show_canary(prof, in))
			abort(); /* something no keep or redact named reached the output */
		json_object_put(out);
	}
	json_object_put(in);
	return 0;
}
