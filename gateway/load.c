/*
 * load.c - loading and reloading what the pipeline enforces: the policy (with
 * vendors), the consent table and the pseudonym key.
 *
 * Each is built completely off the lock and swapped in under it; a file that
 * fails to load is reported (file, JSON path, value, what is valid) and the
 * old value stays. Consent is also refreshed whenever its file changes on disk
 * (inode, size or mtime - an atomic rename by civicmq-admin changes the inode),
 * checked before each resident-linked message, so a withdrawal applies to the
 * very next message of that resident.
 */
#include "gateway.h"

#include "error.h"

#include <string.h>

static void log_diag(const struct cmq_diag *d, int level)
{
	for (size_t i = 0; i < d->n; i++) {
		const struct cmq_diag_entry *e = &d->entries[i];

		cmq_gw_log(e->level == CMQ_DIAG_ERROR ? level : GW_WARNING, "%s", e->text);
	}
}

int cmq_gw_load_policy(const struct cmq_gw_config *cfg, struct cmq_policy **out)
{
	struct cmq_policy_files files = {cfg->policy, cfg->vendors, NULL, NULL};
	struct cmq_diag d;
	int rc;

	cmq_diag_init(&d);
	rc = cmq_policy_load(&files, &d, out);
	log_diag(&d, GW_ERROR);
	cmq_diag_cleanup(&d);
	return rc;
}

int cmq_gw_load_consent(const struct cmq_gw_config *cfg, const struct cmq_policy *p,
                        struct cmq_consent **out, struct stat *st)
{
	struct cmq_diag d;
	int rc;

	memset(st, 0, sizeof(*st));
	if (cfg->consent == NULL)
		return cmq_consent_new_empty(out);
	if (stat(cfg->consent, st) != 0)
		memset(st, 0, sizeof(*st));
	cmq_diag_init(&d);
	rc = cmq_consent_load(cfg->consent, p, &d, out);
	log_diag(&d, GW_ERROR);
	cmq_diag_cleanup(&d);
	return rc;
}

int cmq_gw_load_pseudo(const struct cmq_gw_config *cfg, struct cmq_pseudo **out)
{
	struct cmq_diag d;
	int rc;

	*out = NULL;
	if (cfg->pseudonym_key == NULL)
		return CMQ_OK;
	cmq_diag_init(&d);
	rc = cmq_pseudo_load(cfg->pseudonym_key, cfg->pseudonym_epoch, &d, out);
	log_diag(&d, GW_ERROR);
	cmq_diag_cleanup(&d);
	return rc;
}

void cmq_gw_gen_free(struct cmq_gw_gen *g)
{
	cmq_policy_free(g->policy);
	cmq_consent_free(g->consent);
	cmq_pseudo_free(g->pseudo);
	memset(g, 0, sizeof(*g));
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

void cmq_gw_consent_refresh(struct cmq_gw *gw)
{
	struct cmq_consent *c = NULL;
	struct stat st;

	if (gw->cfg.consent == NULL || stat(gw->cfg.consent, &st) != 0 ||
	    same_file(&st, &gw->gen.consent_st))
		return;
	if (cmq_gw_load_consent(&gw->cfg, gw->gen.policy, &c, &st) != CMQ_OK) {
		/* Remember the broken version so it is reported once, not per message. */
		gw->gen.consent_st = st;
		cmq_gw_log(GW_ERROR,
		           "consent: %s changed but does not load; keeping the %zu "
		           "residents loaded before",
		           gw->cfg.consent, cmq_consent_count(gw->gen.consent));
		return;
	}
	cmq_consent_free(gw->gen.consent);
	gw->gen.consent = c;
	gw->gen.consent_st = st;
	cmq_gw_log(GW_NOTICE, "consent: %s changed; %zu residents listed", gw->cfg.consent,
	           cmq_consent_count(c));
}

/* The policy and vendors files' identity now (zeroed when a file is missing). */
static void policy_files_now(const struct cmq_gw *gw, struct stat *p, struct stat *v)
{
	if (stat(gw->cfg.policy, p) != 0)
		memset(p, 0, sizeof(*p));
	if (stat(gw->cfg.vendors, v) != 0)
		memset(v, 0, sizeof(*v));
}

/* Whether they differ from what the loaded policy came from; if so, note them. With
 * gw->lock held: the main thread and the receive thread both check. */
static bool policy_files_changed(struct cmq_gw *gw)
{
	struct stat p, v;

	policy_files_now(gw, &p, &v);
	if (same_file(&p, &gw->gen.policy_st) && same_file(&v, &gw->gen.vendors_st))
		return false;
	gw->gen.policy_st = p;
	gw->gen.vendors_st = v;
	return true;
}

void cmq_gw_policy_seen(struct cmq_gw *gw)
{
	pthread_mutex_lock(&gw->lock);
	(void)policy_files_changed(gw);
	pthread_mutex_unlock(&gw->lock);
}

void cmq_gw_policy_watch(struct cmq_gw *gw)
{
	bool changed;

	pthread_mutex_lock(&gw->lock);
	changed = policy_files_changed(gw);
	pthread_mutex_unlock(&gw->lock);
	if (!changed)
		return;
	cmq_gw_log(GW_NOTICE, "reload: %s or %s changed on disk", gw->cfg.policy, gw->cfg.vendors);
	cmq_gw_reload(gw);
}

void cmq_gw_policy_catch_up(struct cmq_gw *gw, const char *provenance)
{
	const char *stamp = provenance ? strrchr(provenance, '/') : NULL;
	struct cmq_policy *p = NULL;

	if (stamp == NULL || strcmp(stamp + 1, gw->gen.policy->stamp) == 0 ||
	    !policy_files_changed(gw))
		return;
	if (cmq_gw_load_policy(&gw->cfg, &p) != CMQ_OK) {
		cmq_gw_log(GW_ERROR,
		           "policy: %s or %s changed but does not load; still enforcing %s",
		           gw->cfg.policy, gw->cfg.vendors, gw->gen.policy->stamp);
		return;
	}
	cmq_gw_log(GW_NOTICE,
	           "policy: a message was stamped with policy %s; loaded %s from the changed "
	           "files (was %s)",
	           stamp + 1, p->stamp, gw->gen.policy->stamp);
	cmq_policy_free(gw->gen.policy);
	gw->gen.policy = p;
}

void cmq_gw_reload(struct cmq_gw *gw)
{
	struct cmq_policy *p = NULL;
	struct cmq_consent *c = NULL;
	struct cmq_pseudo *ps = NULL;
	struct stat st;
	bool policy_ok, consent_ok, key_ok;
	const struct cmq_policy *for_consent;
	size_t residents;

	cmq_gw_log(GW_NOTICE, "reload: reading %s, %s%s%s%s%s", gw->cfg.policy, gw->cfg.vendors,
	           gw->cfg.consent ? ", " : "", gw->cfg.consent ? gw->cfg.consent : "",
	           gw->cfg.pseudonym_key ? ", " : "",
	           gw->cfg.pseudonym_key ? gw->cfg.pseudonym_key : "");
	/* Noted before reading, so a change made meanwhile is seen at the next check. */
	cmq_gw_policy_seen(gw);
	policy_ok = cmq_gw_load_policy(&gw->cfg, &p) == CMQ_OK;
	/* Consent is checked against the policy that will be in force. The old policy is
	 * only read here, and only this thread replaces it. */
	for_consent = policy_ok ? p : gw->gen.policy;
	consent_ok = cmq_gw_load_consent(&gw->cfg, for_consent, &c, &st) == CMQ_OK;
	key_ok = cmq_gw_load_pseudo(&gw->cfg, &ps) == CMQ_OK;

	pthread_mutex_lock(&gw->lock);
	if (policy_ok) {
		cmq_policy_free(gw->gen.policy);
		gw->gen.policy = p;
	}
	if (consent_ok) {
		cmq_consent_free(gw->gen.consent);
		gw->gen.consent = c;
		gw->gen.consent_st = st;
	}
	if (key_ok && gw->cfg.pseudonym_key != NULL) {
		cmq_pseudo_free(gw->gen.pseudo);
		gw->gen.pseudo = ps;
	}
	/* Read under the lock: the receive thread may replace the consent table. */
	residents = cmq_consent_count(gw->gen.consent);
	pthread_mutex_unlock(&gw->lock);

	cmq_gw_log(policy_ok && consent_ok && key_ok ? GW_NOTICE : GW_ERROR,
	           "reload: policy %s (%s, %zu rules), consent %s (%zu residents), key %s",
	           policy_ok ? "loaded" : "BROKEN, kept the old one", gw->gen.policy->stamp,
	           gw->gen.policy->n_rules, consent_ok ? "loaded" : "BROKEN, kept the old one",
	           residents,
	           gw->cfg.pseudonym_key == NULL ? "not configured"
	           : key_ok                      ? "loaded"
	                                         : "BROKEN, kept the old one");
}
