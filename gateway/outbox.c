/*
 * outbox.c - the MQTT client's persistent store (Paho's MQTTClient_persistence
 * interface) on core/kvlog.c: one append-only log per client in state_dir,
 * "<state_dir>/outbox-<client id>.log".
 *
 * Paho persists every QoS 1 publish command before MQTTAsync_sendMessage
 * returns, reads it back when it sends it, persists the in-flight copy, and
 * removes both when the broker acknowledges; it restores what is left when the
 * client is created after a crash. Buffers Paho frees are allocated with
 * MQTTAsync_malloc (Debian's Paho tracks its heap and would not free ours).
 * Paho may call in from its send thread, its receive thread and ours: one mutex.
 *
 * Which writes wait (kvlog.h "deferred"): Paho's keys say what a record is. A
 * queued publish ("c"...) and a queued incoming message ("q"...) are written before
 * Paho goes on - the first is the scrubbed copy of a raw message the broker is about
 * to be told is settled. The in-flight copy ("s"...) and every removal are deferred
 * to the next such write or the main loop's flush: losing them in a crash leaves the
 * queued copy on disk, which Paho resends (a duplicate, never a loss).
 */
#include "gateway.h"

#include "error.h"
#include "kvlog.h"

#include <MQTTClientPersistence.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct outbox {
	pthread_mutex_t lock;
	struct cmq_kvlog *kv;
};

static int ob_open(void **handle, const char *client_id, const char *server_uri, void *context)
{
	struct cmq_gw_outbox *ctx = context;
	const char *dir = ctx->dir;
	struct outbox *ob;
	struct cmq_diag d;
	char path[4096];
	size_t o;
	int rc;

	(void)server_uri;
	o = (size_t)snprintf(path, sizeof(path), "%s/outbox-", dir);
	/* Client ids are [A-Za-z0-9_.-] in practice; anything else becomes '_'. */
	for (const char *c = client_id; *c != '\0' && o + 5 < sizeof(path); c++) {
		char ch = *c;

		path[o++] = ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		             (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.')
		                ? ch
		                : '_';
	}
	memcpy(path + o, ".log", 5);
	ob = calloc(1, sizeof(*ob));
	if (ob == NULL)
		return MQTTCLIENT_PERSISTENCE_ERROR;
	pthread_mutex_init(&ob->lock, NULL);
	cmq_diag_init(&d);
	rc = cmq_kvlog_open(path, ctx->sync, &d, &ob->kv);
	for (size_t i = 0; i < d.n; i++)
		cmq_gw_log(d.entries[i].level == CMQ_DIAG_ERROR ? GW_ERROR : GW_WARNING,
		           "outbox: %s", d.entries[i].text);
	cmq_diag_cleanup(&d);
	if (rc != CMQ_OK) {
		pthread_mutex_destroy(&ob->lock);
		free(ob);
		return MQTTCLIENT_PERSISTENCE_ERROR;
	}
	if (cmq_kvlog_count(ob->kv) > 0)
		cmq_gw_log(GW_NOTICE,
		           "outbox: %s holds %zu records from before; the client resends "
		           "what they describe",
		           path, cmq_kvlog_count(ob->kv));
	*handle = ob;
	ctx->ob = ob;
	return 0;
}

static int ob_close(void *handle)
{
	struct outbox *ob = handle;

	cmq_kvlog_close(ob->kv);
	pthread_mutex_destroy(&ob->lock);
	free(ob);
	return 0;
}

static int ob_put(void *handle, char *key, int bufcount, char *buffers[], int buflens[])
{
	struct outbox *ob = handle;
	struct iovec iov[16];
	int rc;

	if (bufcount < 0 || bufcount > 16)
		return MQTTCLIENT_PERSISTENCE_ERROR;
	for (int i = 0; i < bufcount; i++) {
		iov[i].iov_base = buffers[i];
		iov[i].iov_len = (size_t)buflens[i];
	}
	pthread_mutex_lock(&ob->lock);
	rc = cmq_kvlog_put(ob->kv, key, iov, bufcount, key[0] == 's');
	pthread_mutex_unlock(&ob->lock);
	if (rc != CMQ_OK) {
		cmq_gw_log(GW_ERROR, "outbox: cannot store %s: %s", key, cmq_strerror(rc));
		return MQTTCLIENT_PERSISTENCE_ERROR;
	}
	return 0;
}

static int ob_get(void *handle, char *key, char **buffer, int *buflen)
{
	struct outbox *ob = handle;
	const void *data;
	size_t len;
	int rc = MQTTCLIENT_PERSISTENCE_ERROR;

	pthread_mutex_lock(&ob->lock);
	if (cmq_kvlog_get(ob->kv, key, &data, &len) == CMQ_OK) {
		*buffer = MQTTAsync_malloc(len > 0 ? len : 1);
		if (*buffer != NULL) {
			memcpy(*buffer, data, len);
			*buflen = (int)len;
			rc = 0;
		}
	}
	pthread_mutex_unlock(&ob->lock);
	return rc;
}

static int ob_remove(void *handle, char *key)
{
	struct outbox *ob = handle;
	int rc;

	pthread_mutex_lock(&ob->lock);
	rc = cmq_kvlog_del(ob->kv, key, true);
	pthread_mutex_unlock(&ob->lock);
	if (rc == CMQ_ERR_IO)
		cmq_gw_log(GW_ERROR, "outbox: cannot remove %s: %s", key, cmq_strerror(rc));
	/* Absent already is what removing wants. */
	return rc == CMQ_OK || rc == CMQ_ERR_NOT_FOUND ? 0 : MQTTCLIENT_PERSISTENCE_ERROR;
}

struct key_list {
	char **keys;
	int n;
};

static int add_key(void *arg, const char *key)
{
	struct key_list *l = arg;
	size_t len = strlen(key) + 1;

	l->keys[l->n] = MQTTAsync_malloc(len);
	if (l->keys[l->n] == NULL)
		return -1;
	memcpy(l->keys[l->n++], key, len);
	return 0;
}

static int ob_keys(void *handle, char ***keys, int *nkeys)
{
	struct outbox *ob = handle;
	struct key_list l = {NULL, 0};
	size_t n;
	int rc = 0;

	*keys = NULL;
	*nkeys = 0;
	pthread_mutex_lock(&ob->lock);
	n = cmq_kvlog_count(ob->kv);
	if (n > 0) {
		l.keys = MQTTAsync_malloc(n * sizeof(char *));
		if (l.keys == NULL || cmq_kvlog_each(ob->kv, add_key, &l) != 0) {
			for (int i = 0; i < l.n; i++)
				MQTTAsync_free(l.keys[i]);
			if (l.keys != NULL)
				MQTTAsync_free(l.keys);
			l.keys = NULL;
			l.n = 0;
			rc = MQTTCLIENT_PERSISTENCE_ERROR;
		}
	}
	pthread_mutex_unlock(&ob->lock);
	*keys = l.keys;
	*nkeys = l.n;
	return rc;
}

static int ob_clear(void *handle)
{
	struct outbox *ob = handle;
	int rc;

	pthread_mutex_lock(&ob->lock);
	rc = cmq_kvlog_clear(ob->kv);
	pthread_mutex_unlock(&ob->lock);
	return rc == CMQ_OK ? 0 : MQTTCLIENT_PERSISTENCE_ERROR;
}

static int ob_containskey(void *handle, char *key)
{
	struct outbox *ob = handle;
	const void *data;
	size_t len;
	int rc;

	pthread_mutex_lock(&ob->lock);
	rc = cmq_kvlog_get(ob->kv, key, &data, &len);
	pthread_mutex_unlock(&ob->lock);
	return rc == CMQ_OK ? 0 : MQTTCLIENT_PERSISTENCE_ERROR;
}

void cmq_gw_outbox_flush(struct cmq_gw_outbox *ctx)
{
	struct outbox *ob = ctx->ob;

	if (ob == NULL)
		return;
	pthread_mutex_lock(&ob->lock);
	if (cmq_kvlog_flush(ob->kv) != CMQ_OK)
		cmq_gw_log(GW_ERROR, "outbox: cannot write to %s: %s", ctx->dir, strerror(errno));
	pthread_mutex_unlock(&ob->lock);
}

void cmq_gw_outbox_init(struct cmq_gw_outbox *ctx, MQTTClient_persistence *p, const char *state_dir,
                        bool sync)
{
	ctx->dir = state_dir;
	ctx->sync = sync;
	ctx->ob = NULL;
	memset(p, 0, sizeof(*p));
	p->context = ctx;
	p->popen = ob_open;
	p->pclose = ob_close;
	p->pput = ob_put;
	p->pget = ob_get;
	p->premove = ob_remove;
	p->pkeys = ob_keys;
	p->pclear = ob_clear;
	p->pcontainskey = ob_containskey;
}
