/*
 * plugin_acl.c - MOSQ_EVT_ACL_CHECK and MOSQ_EVT_MESSAGE.
 *
 * ACL_CHECK is the hot path: the broker asks on every publish (WRITE), on
 * every delivery to every subscriber (READ) and on every subscription. It
 * borrows the broker's strings, takes the client's principal from the cache
 * (core/pcache.h), asks core/acl.c, and allocates nothing.
 *
 * MESSAGE stamps provenance on each accepted raw message a device published: the
 * MQTT v5 user property civicmq-provenance, "<vendor>/<device>/<tier>/<policy>",
 * carrying the identity verified at connect (core/acl.h). The properties are appended to the
 * message's own list in place, never by replacing the list: Mosquitto 2.0.11
 * leaks a replaced list and 2.0.15+ frees it, so replacing is wrong on one or
 * the other. Because a list cannot be shortened in place through the public
 * API, a message whose client already set any civicmq-* property is refused
 * (NOT_AUTHORIZED) rather than "cleaned": forged provenance never reaches a
 * subscriber, and the attempt is logged. Bridges keep the stamps their
 * district broker set. Wills and plugin-published messages never reach
 * MESSAGE, so they carry no stamp and the gateway drops them. Cost per
 * message: one first-level compare for non-raw topics; for a raw message one
 * username resolution, a scan of the client's user properties and one
 * property (three small allocations inside Mosquitto).
 */
#include "plugin.h"

#include "acl.h"
#include "diag.h"
#include "error.h"

#include <string.h>

static enum cmq_access access_of(int mosq_access)
{
	switch (mosq_access) {
	case MOSQ_ACL_READ:
		return CMQ_ACCESS_READ;
	case MOSQ_ACL_WRITE:
		return CMQ_ACCESS_WRITE;
	case MOSQ_ACL_SUBSCRIBE:
		return CMQ_ACCESS_SUBSCRIBE;
	default:
		return CMQ_ACCESS_UNSUBSCRIBE;
	}
}

static void log_denial(struct cmq_plugin *pl, int level, const char *what, const char *topic,
                       const char *username, const char *cid, enum cmq_reason reason,
                       const struct cmq_rule *rule)
{
	char qt[200], qu[160], qc[160];

	/* Filtered deliveries have their own budget, so they never crowd out refusals. */
	if (!pl->log_denials ||
	    !cmq_plugin_log_budget(pl,
	                           level == MOSQ_LOG_DEBUG ? &pl->read_budget : &pl->deny_budget))
		return;
	cmq_plugin_log(
	    level, "denied %s %s for %s/%s: %s: %s%s%s", what,
	    cmq_diag_quote(topic ? topic : "", topic ? strlen(topic) : 0, qt, sizeof(qt)),
	    cmq_diag_quote(username ? username : "", username ? strlen(username) : 0, qu,
	                   sizeof(qu)),
	    cmq_diag_quote(cid ? cid : "", cid ? strlen(cid) : 0, qc, sizeof(qc)),
	    cmq_reason_name(reason), cmq_reason_text(reason), rule ? " by rule " : "",
	    rule ? rule->id : "");
}

int cmq_plugin_on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	struct cmq_plugin *pl = userdata;
	struct cmq_acl_request req;
	struct cmq_acl_result res;
	struct cmq_principal who;
	enum cmq_decision d;

	(void)event;
	req.username = mosquitto_client_username(ed->client);
	req.client_id = mosquitto_client_id(ed->client);
	req.access = access_of(ed->access);
	req.topic = ed->topic;
	req.payloadlen = ed->payloadlen;
	req.retain = ed->retain;
	req.who = NULL;
	if (req.username != NULL && req.access != CMQ_ACCESS_UNSUBSCRIBE &&
	    cmq_pcache_resolve(&pl->who, pl->policy, ed->client, req.username, strlen(req.username),
	                       &who) == CMQ_REASON_OK)
		req.who = &who;
	d = cmq_acl_check(pl->policy, &req, &res);
	/* A refused delivery is the normal filtering of a subscription that only partly
	 * overlaps a deny (a dashboard on city/# and a deny on city/+/anpr): debug level. */
	if (d != CMQ_ALLOW)
		log_denial(pl, req.access == CMQ_ACCESS_READ ? MOSQ_LOG_DEBUG : MOSQ_LOG_NOTICE,
		           cmq_access_name(req.access), req.topic, req.username, req.client_id,
		           res.reason, res.rule);
	return cmq_plugin_rc(d, MOSQ_ERR_ACL_DENIED);
}

/* Whether the client set a property in our namespace. */
static bool has_forged_property(const mosquitto_property *props)
{
	for (const mosquitto_property *p = props; p != NULL; p = mosquitto_property_next(p)) {
		char *name = NULL, *value = NULL;
		bool ours;

		if (mosquitto_property_identifier(p) != MQTT_PROP_USER_PROPERTY)
			continue;
		if (mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value,
		                                        false) == NULL)
			return true; /* unreadable: treat as forged, fail closed */
		ours = name != NULL && strncmp(name, CMQ_PROP_PREFIX, strlen(CMQ_PROP_PREFIX)) == 0;
		mosquitto_free(name);
		mosquitto_free(value);
		if (ours)
			return true;
	}
	return false;
}

int cmq_plugin_on_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ed = event_data;
	struct cmq_plugin *pl = userdata;
	const char *username = mosquitto_client_username(ed->client);
	struct cmq_provenance prov;
	struct cmq_principal who;
	char value[CMQ_PROVENANCE_MAX];

	(void)event;
	/* Only a device's raw message is stamped. The WRITE check already admitted this message;
	 * a bridge's raw messages keep the stamps its district broker set, and city/ messages
	 * come only from the gateway, which names its own properties. */
	if (username == NULL || ed->topic == NULL || strncmp(ed->topic, "raw/", 4) != 0)
		return MOSQ_ERR_SUCCESS;
	if (cmq_pcache_resolve(&pl->who, pl->policy, ed->client, username, strlen(username),
	                       &who) != CMQ_REASON_OK ||
	    !cmq_provenance_of(pl->policy, &who, username, ed->topic, &prov))
		return MOSQ_ERR_SUCCESS;
	if (has_forged_property(ed->properties)) {
		log_denial(pl, MOSQ_LOG_NOTICE, "message", ed->topic, username,
		           mosquitto_client_id(ed->client), CMQ_REASON_FORGED_PROVENANCE, NULL);
		return cmq_plugin_rc(CMQ_DENY, MOSQ_ERR_ACL_DENIED);
	}
	/* Appending keeps the list head unless the list was empty (see the file comment). */
	if (cmq_provenance_format(&prov, value, sizeof(value)) == CMQ_OK &&
	    mosquitto_property_add_string_pair(&ed->properties, MQTT_PROP_USER_PROPERTY,
	                                       CMQ_PROP_PROVENANCE, value) == MOSQ_ERR_SUCCESS)
		return MOSQ_ERR_SUCCESS;
	/* Out of memory: refuse rather than forward a message without its provenance. */
	log_denial(pl, MOSQ_LOG_NOTICE, "message", ed->topic, username,
	           mosquitto_client_id(ed->client), CMQ_REASON_INTERNAL, NULL);
	return cmq_plugin_rc(CMQ_DENY, MOSQ_ERR_ACL_DENIED);
}
