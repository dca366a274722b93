/*
 * mqtt.c - the gateway's Paho MQTT C (async, MQTT v5) client: one client both
 * consumes $share/<group>/raw/# at QoS 1 and publishes city/ at QoS 1.
 *
 * Acknowledgement order is what makes the gateway lossless (Paho 1.3
 * MQTTProtocol_handlePublishes): for an incoming QoS 1 message Paho calls
 * on_message first and sends PUBACK only after it returns. on_message hands the
 * scrubbed copy to MQTTAsync_sendMessage, which writes it to the persistent
 * outbox in state_dir before returning (MQTTCLIENT_PERSISTENCE_DEFAULT), then
 * returns 1. If on_message returns 0 (client busy), Paho keeps the raw message
 * in its own persisted queue and calls again later. The store is outbox.c: one
 * append-only log, one write(2) per record (Paho's default, a file per message,
 * cost most of the gateway's CPU). The session is persistent
 * (clean start off, session expiry set), so raw messages that arrive while the
 * gateway is down wait in the broker.
 *
 * Locking: Paho holds its own mutex while it runs a callback, and on_message
 * takes gw->lock inside it. The main thread therefore never calls Paho while
 * holding gw->lock (that order would deadlock).
 */
#include "gateway.h"

#include "error.h"
#include "topic.h"

#include <MQTTAsync.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define PROP_PROVENANCE "civicmq-provenance"

/* The civicmq-provenance value into buf; NULL if absent, "" if present twice or too long. */
static const char *provenance_of(const MQTTProperties *props, char *buf, size_t bufsize)
{
	const char *found = NULL;

	for (int i = 0; i < props->count; i++) {
		const MQTTProperty *p = &props->array[i];

		if (p->identifier != MQTTPROPERTY_CODE_USER_PROPERTY ||
		    (size_t)p->value.data.len != strlen(PROP_PROVENANCE) ||
		    memcmp(p->value.data.data, PROP_PROVENANCE, strlen(PROP_PROVENANCE)) != 0)
			continue;
		if (found != NULL || (size_t)p->value.value.len >= bufsize ||
		    memchr(p->value.value.data, '\0', (size_t)p->value.value.len) != NULL) {
			buf[0] = '\0';
			return buf;
		}
		memcpy(buf, p->value.value.data, (size_t)p->value.value.len);
		buf[p->value.value.len] = '\0';
		found = buf;
	}
	return found;
}

static void log_drop(struct cmq_gw *gw, const char *topic, const struct cmq_pipeline_result *r)
{
	int64_t now = cmq_gw_now();
	char q[200];

	if (now != gw->drop_log_window) {
		if (gw->drop_log_suppressed > 0)
			cmq_gw_log(GW_NOTICE, "drop: %llu more drops not logged in the last second",
			           (unsigned long long)gw->drop_log_suppressed);
		gw->drop_log_window = now;
		gw->drop_log_count = 0;
		gw->drop_log_suppressed = 0;
	}
	if (gw->drop_log_count >= gw->cfg.drop_log_rate) {
		gw->drop_log_suppressed++;
		return;
	}
	gw->drop_log_count++;
	cmq_diag_quote(topic, strlen(topic), q, sizeof(q));
	cmq_gw_log(GW_NOTICE, "drop: %s topic=%s rule=%s%s%s%s%s (%s)", cmq_drop_name(r->reason), q,
	           r->rule != NULL ? r->rule->id : "-", r->fail.path[0] ? " path=" : "",
	           r->fail.path, r->fail.detail[0] ? " detail=" : "", r->fail.detail,
	           cmq_drop_text(r->reason));
}

/* Resident-linked rules need fresh consent before each message. */
static bool needs_consent(const struct cmq_policy *p, const char *topic, size_t len)
{
	uint32_t idx;

	return cmq_trie_match(p->rule_trie, topic, len, NULL, &idx) && idx < p->n_rules &&
	       p->categories[p->rules[idx].category].resident_linked;
}

static int on_message(void *context, char *topic_name, int topic_len, MQTTAsync_message *msg)
{
	struct cmq_gw *gw = context;
	uint64_t t0 = cmq_gw_mono_us();
	size_t tlen = topic_len > 0 ? (size_t)topic_len : strlen(topic_name);
	char topic[CMQ_PIPELINE_TOPIC_MAX];
	char provbuf[512];
	const char *prov = provenance_of(&msg->properties, provbuf, sizeof(provbuf));
	struct cmq_pipeline_result res;
	struct cmq_pipeline pl;
	int settled = 1;

	/* Topics with NUL inside or beyond our limit cannot match a rule. */
	if (tlen >= sizeof(topic) || memchr(topic_name, '\0', tlen) != NULL)
		tlen = 0;
	memcpy(topic, topic_name, tlen);
	topic[tlen] = '\0';

	pthread_mutex_lock(&gw->lock);
	cmq_gw_policy_catch_up(gw, prov);
	if (gw->cfg.consent != NULL && needs_consent(gw->gen.policy, topic, tlen))
		cmq_gw_consent_refresh(gw);
	pl.policy = gw->gen.policy;
	pl.consent = gw->gen.consent;
	pl.env.pseudo = gw->gen.pseudo;
	pl.env.now = cmq_gw_now();
	pl.max_depth = (int)gw->cfg.max_depth;
	cmq_pipeline_run(&pl, topic, tlen, msg->payload, (size_t)msg->payloadlen, prov, &res);

	switch (res.outcome) {
	case CMQ_OUTCOME_FORWARD:
		if (cmq_gw_publish(gw, res.topic, res.payload, res.payload_len, 1, res.profile->id,
		                   cmq_profile_pseudonymises(res.profile)) != 0) {
			settled = 0;
			break;
		}
		gw->metrics.forwarded++;
		cmq_gw_log(GW_DEBUG, "forward: %s -> %s (%zu -> %zu bytes, profile %s)", topic,
		           res.topic, (size_t)msg->payloadlen, res.payload_len, res.profile->id);
		break;
	case CMQ_OUTCOME_ABSORB: {
		struct cmq_agg_params ap = {res.agg.op->u.agg.window_seconds, res.agg.op->u.agg.k,
		                            res.agg.op->u.agg.epsilon};
		int rc =
		    cmq_agg_add(gw->agg, res.topic, res.agg.group, &ap, pl.env.now, res.agg.count);

		if (rc == CMQ_OK) {
			gw->metrics.absorbed++;
		} else if (rc == CMQ_ERR_TOO_BIG || rc == CMQ_ERR_INVAL) {
			res.reason =
			    rc == CMQ_ERR_TOO_BIG ? CMQ_DROP_AGGREGATE_FULL : CMQ_DROP_BAD_VALUE;
			gw->metrics.dropped[res.reason]++;
			log_drop(gw, topic, &res);
		} else {
			settled = 0;
		}
		break;
	}
	case CMQ_OUTCOME_DROP:
		gw->metrics.dropped[res.reason]++;
		log_drop(gw, topic, &res);
		break;
	}
	if (settled) {
		gw->metrics.received++;
		cmq_gw_metrics_latency(&gw->metrics, cmq_gw_mono_us() - t0);
	} else {
		gw->metrics.retried++;
		if (gw->metrics.retried % 1000 == 1)
			cmq_gw_log(GW_WARNING,
			           "busy: could not settle %s now; the client keeps it and "
			           "retries (%llu so far)",
			           topic, (unsigned long long)gw->metrics.retried);
	}
	pthread_mutex_unlock(&gw->lock);
	cmq_pipeline_result_cleanup(&res);
	if (!settled)
		return 0;
	MQTTAsync_freeMessage(&msg);
	MQTTAsync_free(topic_name);
	return 1;
}

static void add_user_property(MQTTProperties *props, const char *name, const char *value)
{
	MQTTProperty p;

	memset(&p, 0, sizeof(p));
	p.identifier = MQTTPROPERTY_CODE_USER_PROPERTY;
	p.value.data.data = (char *)name;
	p.value.data.len = (int)strlen(name);
	p.value.value.data = (char *)value;
	p.value.value.len = (int)strlen(value);
	MQTTProperties_add(props, &p);
}

int cmq_gw_publish(struct cmq_gw *gw, const char *topic, const char *payload, size_t len, int qos,
                   const char *profile, bool epoch)
{
	MQTTAsync_message msg = MQTTAsync_message_initializer;
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	char epoch_value[48];
	int rc;

	msg.payload = (void *)payload;
	msg.payloadlen = (int)len;
	msg.qos = qos;
	msg.retained = 0;
	if (gw->gen.policy != NULL)
		add_user_property(&msg.properties, "civicmq-policy", gw->gen.policy->stamp);
	if (profile != NULL)
		add_user_property(&msg.properties, "civicmq-profile", profile);
	if (epoch && gw->gen.pseudo != NULL) {
		snprintf(epoch_value, sizeof(epoch_value), "%llu/%u",
		         (unsigned long long)cmq_pseudo_epoch(gw->gen.pseudo, cmq_gw_now()),
		         cmq_pseudo_epoch_seconds(gw->gen.pseudo));
		add_user_property(&msg.properties, "civicmq-key-epoch", epoch_value);
	}
	rc = MQTTAsync_sendMessage(gw->client, topic, &msg, &ro);
	MQTTProperties_free(&msg.properties);
	if (rc != MQTTASYNC_SUCCESS) {
		cmq_gw_log(GW_WARNING, "publish %s: %s", topic, MQTTAsync_strerror(rc));
		return -1;
	}
	return 0;
}

static void on_subscribed(void *context, MQTTAsync_successData5 *resp)
{
	struct cmq_gw *gw = context;

	if (resp->reasonCode >= 0x80)
		cmq_gw_log(GW_ERROR,
		           "subscribe %s refused by the broker: %s (is this account in the "
		           "gateway role?)",
		           gw->share_filter, MQTTReasonCode_toString(resp->reasonCode));
	else
		cmq_gw_log(GW_NOTICE, "subscribed %s (QoS %d)", gw->share_filter, resp->reasonCode);
}

static void on_subscribe_failed(void *context, MQTTAsync_failureData5 *resp)
{
	struct cmq_gw *gw = context;

	cmq_gw_log(GW_ERROR, "subscribe %s failed: %s %s", gw->share_filter,
	           MQTTReasonCode_toString(resp->reasonCode),
	           resp->message != NULL ? resp->message : "");
}

/*
 * Paho 1.3 does not set TCP_NODELAY, so a PUBACK or a small PUBLISH can wait for the
 * peer's delayed ACK (40 ms on Linux). The gateway's only TCP sockets are its broker
 * connections: set it on each.
 */
static void set_nodelay(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa);
		int type = 0, one = 1;
		socklen_t tlen = sizeof(type);
		char *end;
		long fd = strtol(e->d_name, &end, 10);

		if (*end != '\0' || fd < 0 || fd == dirfd(d))
			continue;
		if (getsockname((int)fd, (struct sockaddr *)&sa, &len) != 0 ||
		    (sa.ss_family != AF_INET && sa.ss_family != AF_INET6) ||
		    getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 ||
		    type != SOCK_STREAM)
			continue;
		(void)setsockopt((int)fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	closedir(d);
}

static void on_connected(void *context, char *cause)
{
	struct cmq_gw *gw = context;
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	int rc;

	(void)cause;
	if (gw->cfg.tcp_nodelay)
		set_nodelay();
	gw->connected = 1;
	gw->connecting = 0;
	gw->backoff = gw->cfg.reconnect_min;
	cmq_gw_log(GW_NOTICE, "connected to %s as %s (client id %s)", gw->cfg.broker,
	           gw->cfg.username, gw->cfg.client_id);
	ro.onSuccess5 = on_subscribed;
	ro.onFailure5 = on_subscribe_failed;
	ro.context = gw;
	rc = MQTTAsync_subscribe(gw->client, gw->share_filter, 1, &ro);
	if (rc != MQTTASYNC_SUCCESS)
		cmq_gw_log(GW_ERROR, "subscribe %s: %s", gw->share_filter, MQTTAsync_strerror(rc));
}

/* CONNACK: warn when the broker's receive window would stall Paho 1.3 (see config/mosquitto.conf).
 */
static void on_connect_ok(void *context, MQTTAsync_successData5 *resp)
{
	struct cmq_gw *gw = context;
	int rmax = 65535;

	if (MQTTProperties_hasProperty(&resp->properties, MQTTPROPERTY_CODE_RECEIVE_MAXIMUM))
		rmax = MQTTProperties_getNumericValue(&resp->properties,
		                                      MQTTPROPERTY_CODE_RECEIVE_MAXIMUM);
	cmq_gw_log(GW_INFO, "session %s; the broker accepts %d messages in flight",
	           resp->alt.connect.sessionPresent ? "resumed" : "new", rmax);
	if (rmax < (int)gw->cfg.max_inflight)
		cmq_gw_log(
		    GW_WARNING,
		    "the broker accepts only %d unacknowledged messages in flight (receive "
		    "maximum), fewer than max_inflight %u; Paho MQTT C 1.3 then pauses up to "
		    "1 s whenever the window is full: set max_inflight_messages %u in "
		    "mosquitto.conf",
		    rmax, gw->cfg.max_inflight, gw->cfg.max_inflight);
}

static void on_connect_failed(void *context, MQTTAsync_failureData5 *resp)
{
	struct cmq_gw *gw = context;

	cmq_gw_log(GW_WARNING, "connect to %s failed: %s%s%s; retrying in %u s", gw->cfg.broker,
	           resp->reasonCode ? MQTTReasonCode_toString(resp->reasonCode) : "",
	           resp->message != NULL ? " " : "", resp->message != NULL ? resp->message : "",
	           gw->backoff);
	gw->next_connect = cmq_gw_now() + gw->backoff;
	gw->backoff =
	    gw->backoff * 2 > gw->cfg.reconnect_max ? gw->cfg.reconnect_max : gw->backoff * 2;
	gw->connecting = 0;
}

static void on_connection_lost(void *context, char *cause)
{
	struct cmq_gw *gw = context;

	gw->connected = 0;
	gw->connecting = 0;
	gw->next_connect = cmq_gw_now() + gw->backoff;
	cmq_gw_log(GW_WARNING, "connection to %s lost%s%s; reconnecting in %u s", gw->cfg.broker,
	           cause != NULL ? ": " : "", cause != NULL ? cause : "", gw->backoff);
}

int cmq_gw_mqtt_create(struct cmq_gw *gw)
{
	MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer5;
	int rc;

	co.sendWhileDisconnected = 1;
	co.maxBufferedMessages = 1000000;
	co.persistQoS0 = 0;
	co.restoreMessages = 1;
	co.deleteOldestMessages = 0;
	/* Paho's own trace buffer formats a line per packet at its default level: only errors. */
	if (getenv("MQTT_C_CLIENT_TRACE") == NULL)
		MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
	cmq_gw_outbox_init(&gw->outbox, &gw->persistence, gw->cfg.state_dir,
	                   gw->cfg.state_sync != 0);
	rc = MQTTAsync_createWithOptions(&gw->client, gw->cfg.broker, gw->cfg.client_id,
	                                 MQTTCLIENT_PERSISTENCE_USER, &gw->persistence, &co);
	if (rc != MQTTASYNC_SUCCESS) {
		cmq_gw_log(GW_ERROR, "cannot create the MQTT client for %s (state_dir %s): %s",
		           gw->cfg.broker, gw->cfg.state_dir, MQTTAsync_strerror(rc));
		return -1;
	}
	MQTTAsync_setCallbacks(gw->client, gw, on_connection_lost, on_message, NULL);
	MQTTAsync_setConnected(gw->client, gw, on_connected);
	gw->backoff = gw->cfg.reconnect_min;
	return 0;
}

static void connect_now(struct cmq_gw *gw)
{
	MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer5;
	MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
	MQTTProperties props = MQTTProperties_initializer;
	MQTTProperty p;
	int rc;

	memset(&p, 0, sizeof(p));
	p.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
	p.value.integer4 = gw->cfg.session_expiry;
	MQTTProperties_add(&props, &p);
	opts.keepAliveInterval = (int)gw->cfg.keepalive;
	opts.cleanstart = 0;
	opts.username = gw->cfg.username;
	opts.password = gw->password;
	opts.maxInflight = (int)gw->cfg.max_inflight;
	opts.automaticReconnect = 0; /* our own backoff, in cmq_gw_mqtt_tick */
	opts.connectProperties = &props;
	opts.onSuccess5 = on_connect_ok;
	opts.onFailure5 = on_connect_failed;
	opts.context = gw;
	if (strncmp(gw->cfg.broker, "ssl://", 6) == 0) {
		ssl.trustStore = gw->cfg.cafile;
		ssl.keyStore = gw->cfg.certfile;
		ssl.privateKey = gw->cfg.keyfile;
		ssl.enableServerCertAuth = 1;
		ssl.verify = 1;
		ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
		opts.ssl = &ssl;
	}
	gw->connecting = 1;
	rc = MQTTAsync_connect(gw->client, &opts);
	MQTTProperties_free(&props);
	if (rc != MQTTASYNC_SUCCESS) {
		gw->connecting = 0;
		gw->next_connect = cmq_gw_now() + gw->backoff;
		cmq_gw_log(GW_WARNING, "connect to %s: %s", gw->cfg.broker, MQTTAsync_strerror(rc));
	}
}

void cmq_gw_mqtt_tick(struct cmq_gw *gw, int64_t now)
{
	if (!gw->connected && !gw->connecting && now >= gw->next_connect)
		connect_now(gw);
}

void cmq_gw_mqtt_destroy(struct cmq_gw *gw)
{
	if (gw->client == NULL)
		return;
	if (gw->connected) {
		MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer5;

		d.timeout = 2000; /* let in-flight publishes complete */
		MQTTAsync_disconnect(gw->client, &d);
		for (int i = 0; i < 40 && MQTTAsync_isConnected(gw->client); i++) {
			struct timespec ts = {0, 50 * 1000 * 1000};

			nanosleep(&ts, NULL);
		}
	}
	MQTTAsync_destroy(&gw->client);
	gw->client = NULL;
}
