/*
 * gateway.h - civicmq-gateway: the only reader of raw/ topics. It republishes
 * each raw message on its scrubbed city/ topic after core/pipeline.c has
 * checked and scrubbed it, and drops (and counts) everything else.
 *
 * Threads: Paho's receive thread runs on_message (the pipeline, under gw->lock);
 * the main thread handles signals, reloads, aggregate flushes and metrics (also
 * under gw->lock for anything shared). Paho's own send thread writes packets.
 *
 * No loss: on_message hands the scrubbed copy to Paho, which persists it in
 * state_dir before returning, and only then returns 1 - which is when Paho
 * acknowledges the raw message to the broker. A gateway killed at any point
 * either has not acknowledged (the broker redelivers into the persistent
 * session) or has the scrubbed copy on disk (Paho resends it after restart):
 * at-least-once, never lost. Aggregate contributions are journaled likewise.
 */
#ifndef CMQ_GATEWAY_H
#define CMQ_GATEWAY_H

#include "aggregate.h"
#include "consent.h"
#include "drop.h"
#include "pipeline.h"
#include "policy.h"
#include "pseudo.h"

#include <MQTTAsync.h>
#include <MQTTClientPersistence.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

/* ---- configuration (config.c): one table drives parsing, --help and the example ---- */

struct cmq_gw_config {
	char *broker;
	char *client_id;
	char *username;
	char *password_file;
	char *cafile;
	char *certfile;
	char *keyfile;
	char *share_group;
	char *policy;
	char *vendors;
	char *consent;
	char *pseudonym_key;
	char *state_dir;
	char *metrics_topic;
	char *log_level;
	uint32_t pseudonym_epoch;
	uint32_t metrics_interval;
	uint32_t max_depth;
	uint32_t keepalive;
	uint32_t reconnect_min;
	uint32_t reconnect_max;
	uint32_t session_expiry;
	uint32_t max_inflight;
	uint32_t aggregate_max_groups;
	uint32_t drop_log_rate;
	uint32_t tcp_nodelay;
	uint32_t state_sync;
};

/* Defaults from the table. Returns 0, or -1 (message printed) on allocation failure. */
int cmq_gw_config_defaults(struct cmq_gw_config *c);
/* Read "name value" lines from path. Returns 0, or -1 with a message naming file:line. */
int cmq_gw_config_file(struct cmq_gw_config *c, const char *path);
/* Set one option by name (from the command line). Returns 0 or -1 with a message. */
int cmq_gw_config_set(struct cmq_gw_config *c, const char *name, const char *value,
                      const char *where);
/* Required options present and consistent. Returns 0 or -1 with a message. */
int cmq_gw_config_check(const struct cmq_gw_config *c);
void cmq_gw_config_cleanup(struct cmq_gw_config *c);
void cmq_gw_config_help(FILE *f);
void cmq_gw_config_example(FILE *f);

/* ---- logging (log.c) ---- */

enum cmq_gw_level { GW_ERROR, GW_WARNING, GW_NOTICE, GW_INFO, GW_DEBUG };

int cmq_gw_log_level_parse(const char *s);
void cmq_gw_log_set_level(int level);
bool cmq_gw_log_enabled(int level);
void cmq_gw_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- metrics (metrics.c) ---- */

#define CMQ_GW_HIST_BUCKETS 256

struct cmq_gw_metrics {
	uint64_t received;  /* raw messages settled (forwarded + absorbed + dropped) */
	uint64_t forwarded; /* scrubbed copies handed to the client */
	uint64_t absorbed;  /* contributions to aggregate windows */
	uint64_t dropped[CMQ_DROP__COUNT];
	uint64_t retried; /* messages left with Paho for redelivery (client busy) */
	uint64_t agg_published;
	uint64_t agg_suppressed;
	uint64_t lat_hist[CMQ_GW_HIST_BUCKETS]; /* processing time, log-linear microseconds */
	uint64_t lat_max_us;
	int64_t started;
};

void cmq_gw_metrics_latency(struct cmq_gw_metrics *m, uint64_t us);
/* Latency at quantile q (0..1) in microseconds (upper bound of its bucket). */
uint64_t cmq_gw_metrics_quantile(const struct cmq_gw_metrics *m, double q);
/* JSON document of the counters into buf; returns its length or -1 if too small. */
int cmq_gw_metrics_json(const struct cmq_gw_metrics *m, const char *client_id,
                        const char *policy_stamp, size_t open_groups, int64_t now, char *buf,
                        size_t bufsize);

/* ---- the gateway ---- */

/* The outbox's context: its directory and, once Paho opened it, the store. */
struct cmq_gw_outbox {
	const char *dir;
	bool sync; /* fdatasync each write (state_sync) */
	void *ob;
};

/* What a reload replaces, loaded together and swapped under the lock. */
struct cmq_gw_gen {
	struct cmq_policy *policy;
	struct cmq_consent *consent;
	struct cmq_pseudo *pseudo;
	struct stat consent_st; /* consent file identity when loaded (changes trigger a reload) */
	struct stat policy_st;  /* policy and vendors files as last read, under gw->lock */
	struct stat vendors_st;
};

struct cmq_gw {
	struct cmq_gw_config cfg;
	pthread_mutex_t lock; /* guards gen, agg, metrics, drop log budget */
	struct cmq_gw_gen gen;
	struct cmq_agg *agg;
	struct cmq_gw_metrics metrics;
	MQTTAsync client;
	MQTTClient_persistence persistence; /* outbox.c: the client's store in state_dir */
	struct cmq_gw_outbox outbox;
	char *password;
	char share_filter[512];
	char metrics_topic[512];
	volatile int connected;
	volatile int connecting;
	int64_t next_connect;
	uint32_t backoff;
	int64_t drop_log_window;
	uint32_t drop_log_count;
	uint64_t drop_log_suppressed;
};

/* load.c: build policy, consent and key from the configured files. */
int cmq_gw_load_policy(const struct cmq_gw_config *cfg, struct cmq_policy **out);
int cmq_gw_load_consent(const struct cmq_gw_config *cfg, const struct cmq_policy *p,
                        struct cmq_consent **out, struct stat *st);
int cmq_gw_load_pseudo(const struct cmq_gw_config *cfg, struct cmq_pseudo **out);
/* SIGHUP: reload each of the three; a broken one keeps its old value. */
void cmq_gw_reload(struct cmq_gw *gw);
/* Reload consent if its file changed on disk (called with gw->lock held). */
void cmq_gw_consent_refresh(struct cmq_gw *gw);
/* Note the policy files' identity (just before loading them). Takes gw->lock. */
void cmq_gw_policy_seen(struct cmq_gw *gw);
/* Main thread, once a second: a full reload if the policy or vendors file changed on disk
 * (civicmq-admin or the control API rewrote it), as on SIGHUP. */
void cmq_gw_policy_watch(struct cmq_gw *gw);
/*
 * Receive thread, gw->lock held: a message stamped with another policy than the one loaded
 * means the broker may already enforce changed files (it saves before it applies); if the
 * files changed, load them now rather than at the next second, so a vendor trusted again is
 * not refused here meanwhile. Costs a string compare per message, and two stat calls while
 * the stamps differ.
 */
void cmq_gw_policy_catch_up(struct cmq_gw *gw, const char *provenance);
void cmq_gw_gen_free(struct cmq_gw_gen *g);

/* outbox.c: Paho's persistence interface on core/kvlog.c. */
void cmq_gw_outbox_init(struct cmq_gw_outbox *ctx, MQTTClient_persistence *p, const char *state_dir,
                        bool sync);
/* Write the outbox's deferred records (main loop; takes the outbox's own lock). */
void cmq_gw_outbox_flush(struct cmq_gw_outbox *ctx);

/* mqtt.c */
int cmq_gw_mqtt_create(struct cmq_gw *gw);
void cmq_gw_mqtt_tick(struct cmq_gw *gw, int64_t now); /* (re)connect with backoff */
int cmq_gw_publish(struct cmq_gw *gw, const char *topic, const char *payload, size_t len, int qos,
                   const char *profile, bool epoch);
void cmq_gw_mqtt_destroy(struct cmq_gw *gw);

int64_t cmq_gw_now(void);      /* Unix time, seconds */
uint64_t cmq_gw_mono_us(void); /* monotonic microseconds */

#endif
