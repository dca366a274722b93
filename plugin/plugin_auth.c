/*
 * plugin_auth.c - MOSQ_EVT_BASIC_AUTH and MOSQ_EVT_DISCONNECT.
 *
 * BASIC_AUTH fires for every connection because civicmq requires listeners
 * with use_identity_as_username and use_subject_as_username off. A client
 * with a certificate (require_certificate true) is decided on its certificate
 * alone - any username/password it sent is ignored and its username becomes
 * the certificate CN; a client without one is decided on username and
 * password. Every refusal is logged with its reason. Admitted clients are
 * recorded in the session table so that a later policy change can reach them.
 * During a reload BASIC_AUTH is the broker re-checking clients it already has
 * (plugin.c, begin_recheck): those are judged by the policy, not re-authenticated.
 */
#include "plugin.h"

#include "diag.h"
#include "error.h"
#include "trust.h"

#include <openssl/x509.h>
#include <string.h>

/* A re-check of a known client during a reload (plugin.c): judged by the policy. */
static int recheck(struct cmq_plugin *pl, struct mosquitto_evt_basic_auth *ed)
{
	const char *cid = mosquitto_client_id(ed->client);
	const char *user = mosquitto_client_username(ed->client);
	enum cmq_reason why;
	enum cmq_decision d;

	d = cmq_session_recheck(pl->policy, &pl->sessions, ed->client, cid, user, &why);
	if (d != CMQ_ALLOW)
		cmq_plugin_log(
		    MOSQ_LOG_NOTICE, "dropping the session of \"%s\" (%s) at reload: %s: %s",
		    cid ? cid : "", user ? user : "", cmq_reason_name(why), cmq_reason_text(why));
	return cmq_plugin_rc(d, MOSQ_ERR_AUTH);
}

int cmq_plugin_on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	struct cmq_plugin *pl = userdata;
	struct cmq_connect_result r;
	const char *cid = mosquitto_client_id(ed->client);
	const char *addr = mosquitto_client_address(ed->client);
	X509 *cert = mosquitto_client_certificate(ed->client);
	enum cmq_decision d;
	char q[200];

	(void)event;
	if (pl->rechecking) {
		X509_free(cert);
		return recheck(pl, ed);
	}
	if (cert != NULL) {
		d = cmq_connect_check_cert(pl->policy, cert, cid, &r);
		X509_free(cert);
		if (d == CMQ_ALLOW &&
		    mosquitto_set_username(ed->client, r.identity) != MOSQ_ERR_SUCCESS) {
			d = CMQ_DENY;
			r.reason = CMQ_REASON_INTERNAL;
		}
	} else {
		d = cmq_connect_check_password(pl->policy, ed->username, ed->password, cid, &r);
	}
	if (d == CMQ_ALLOW &&
	    cmq_sessions_put(&pl->sessions, ed->client, cid, &r, r.serial[0] != '\0') != CMQ_OK) {
		d = CMQ_DENY;
		r.reason = CMQ_REASON_INTERNAL;
	}
	if (d == CMQ_ALLOW) {
		cmq_plugin_log(MOSQ_LOG_INFO, "accepted %s from %s: %s",
		               r.who.kind == CMQ_PRINCIPAL_DEVICE ? "device" : "operator",
		               addr ? addr : "?", r.detail);
	} else {
		if (pl->log_denials && cmq_plugin_log_budget(pl, &pl->connect_budget))
			cmq_plugin_log(
			    MOSQ_LOG_NOTICE, "refused connection %s from %s: %s: %s%s%s%s",
			    cmq_diag_quote(cid ? cid : "", cid ? strlen(cid) : 0, q, sizeof(q)),
			    addr ? addr : "?", cmq_reason_name(r.reason), cmq_reason_text(r.reason),
			    r.detail[0] ? " (" : "", r.detail, r.detail[0] ? ")" : "");
		cmq_plugin_audit_refusal(pl, cid, addr, r.reason, r.detail);
	}
	return cmq_plugin_rc(d, MOSQ_ERR_AUTH);
}

int cmq_plugin_on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;
	struct cmq_plugin *pl = userdata;

	(void)event;
	cmq_sessions_remove(&pl->sessions, ed->client, mosquitto_client_id(ed->client));
	cmq_pcache_forget(&pl->who, ed->client);
	return MOSQ_ERR_SUCCESS;
}
