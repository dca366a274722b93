/*
 * plugin.h - state and glue shared by the civicmq Mosquitto plugin's files.
 *
 * The plugin is a thin adapter: it turns broker events into core decisions
 * (core/trust.h, core/acl.h) and decisions back into broker return codes, in
 * exactly one place (cmq_plugin_rc). All state lives in one struct
 * cmq_plugin, passed to every callback as user data; nothing is global.
 *
 * Everything here runs on the broker's single main thread.
 */
#ifndef CMQ_PLUGIN_H
#define CMQ_PLUGIN_H

#include "decision.h"
#include "pcache.h"
#include "policy.h"
#include "session.h"

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

/* Plugin options (plugin_opt_<name> in mosquitto.conf), declared once in plugin.c. */
enum cmq_opt_type { CMQ_OPT_PATH, CMQ_OPT_BOOL, CMQ_OPT_UINT };

struct cmq_option {
	const char *name;
	enum cmq_opt_type type;
	size_t offset;             /* of the field in struct cmq_plugin */
	const char *default_value; /* NULL = required */
	unsigned long min, max;    /* for CMQ_OPT_UINT */
	const char *help;
};

/* A simple per-second budget so hostile clients cannot flood the broker log. */
struct cmq_log_budget {
	time_t window;
	unsigned used;
	unsigned long suppressed;
};

/* What a file looked like when the running policy was loaded from it. */
struct cmq_file_stamp {
	ino_t ino;
	off_t size;
	time_t mtime_s;
	long mtime_ns;
	bool exists;
};

struct cmq_audit;

struct cmq_plugin {
	mosquitto_plugin_id_t *id;
	struct cmq_policy *policy; /* never NULL after a successful init */
	char *policy_path;
	char *vendors_path;
	char *operators_path;
	char *ca_file;
	char *consent_path; /* optional: consent commands of the control API */
	char *audit_path;   /* optional: without it the control API changes nothing */
	struct cmq_audit *audit;
	struct cmq_log_budget audit_budget; /* refused connections audited one by one */
	struct cmq_file_stamp seen[3];      /* policy, vendors, operators as loaded */
	time_t watch_at;                    /* last second the files were checked */
	bool log_denials;
	unsigned deny_log_rate;
	struct cmq_log_budget deny_budget;    /* refused publishes and subscriptions */
	struct cmq_log_budget read_budget;    /* deliveries filtered out (debug level) */
	struct cmq_log_budget connect_budget; /* refused connections */
	struct cmq_sessions sessions;
	struct cmq_pcache who; /* principal of each client, for the per-message checks */
	bool ticks_seen; /* MOSQ_EVT_TICK arrives (it does not with per_listener_settings true) */
	bool rechecking; /* between a reload and the next tick: BASIC_AUTH is a re-check */
};

/* The one mapping from a decision to a broker return code. */
int cmq_plugin_rc(enum cmq_decision d, int deny_rc);

/* Logging with the "civicmq: " prefix; budgeted variants return silently when over. */
void cmq_plugin_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool cmq_plugin_log_budget(struct cmq_plugin *pl, struct cmq_log_budget *b);

/* Callbacks (plugin_auth.c, plugin_acl.c). */
int cmq_plugin_on_basic_auth(int event, void *event_data, void *userdata);
int cmq_plugin_on_disconnect(int event, void *event_data, void *userdata);
int cmq_plugin_on_acl_check(int event, void *event_data, void *userdata);
int cmq_plugin_on_message(int event, void *event_data, void *userdata);
int cmq_plugin_on_tick(int event, void *event_data, void *userdata);

/* Load the policy files; returns the new policy or NULL after logging every problem. */
struct cmq_policy *cmq_plugin_load(struct cmq_plugin *pl, const char *why);

/* Disconnect every connected client the current policy no longer admits. */
void cmq_plugin_enforce(struct cmq_plugin *pl);

/* Administration (plugin_control.c). */
int cmq_plugin_on_control(int event, void *event_data, void *userdata);
/* Open the audit log. 0, or -1 after logging why. */
int cmq_plugin_control_init(struct cmq_plugin *pl);
void cmq_plugin_control_cleanup(struct cmq_plugin *pl);
/* Put p in force (the old policy is freed): kick whom it refuses, republish the register. */
void cmq_plugin_swap(struct cmq_plugin *pl, struct cmq_policy *p);
/* Retain the transparency register of the running policy on city/transparency/register. */
void cmq_plugin_publish_register(struct cmq_plugin *pl);
/* Record the policy files' state; called just before they are read. */
void cmq_plugin_remember_files(struct cmq_plugin *pl);
/* At most once a second: reload if a policy file changed on disk. */
void cmq_plugin_watch_files(struct cmq_plugin *pl);
/* Audit a refused connection (at most 100 a second one by one, then a summary). */
void cmq_plugin_audit_refusal(struct cmq_plugin *pl, const char *client_id, const char *addr,
                              enum cmq_reason reason, const char *detail);

#endif
