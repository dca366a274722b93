/*
 * tool_mqtt.h - what civicmq-sim and civicmq-dash share about one libmosquitto
 * connection driven from the main thread: the CONNACK and disconnect state, bounded
 * slices of network work, and waiting for the CONNACK with a clear message when the
 * broker refuses.
 *
 * The tools' own state structs start with a struct tool_conn, and that struct is the
 * libmosquitto user data, so tool_conn_callbacks()' callbacks can fill it in.
 * Thread: main thread only.
 */
#ifndef CMQ_TOOL_MQTT_H
#define CMQ_TOOL_MQTT_H

#include <mosquitto.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

struct tool_conn {
	int connack;          /* CONNACK reason, -1 until it arrives */
	char *connack_reason; /* the CONNACK's reason-string property, or NULL (owned) */
	bool disconnected;    /* the connection is gone */
	int disconnect_rc;    /* why (on_disconnect's rc or the loop's error) */
};

/* A fresh state (connack -1). */
void tool_conn_init(struct tool_conn *c);
/* Free what it owns. */
void tool_conn_cleanup(struct tool_conn *c);
/* Install the connect and disconnect callbacks that fill in the user data's tool_conn. */
void tool_conn_callbacks(struct mosquitto *mosq);

/*
 * The first line of path (without its line end) into buf (n bytes): an operator's
 * password for --password-file. Returns 0, or -1 after printing "<prog>: --password-file
 * ...: why" (unreadable, or the first line is empty).
 */
int tool_read_password(const char *prog, const char *path, char *buf, size_t n);

/* What a tool connects with. Strings borrowed; NULL where not used. */
struct tool_client_opts {
	const char *client_id; /* NULL: the broker assigns one */
	const char *username;
	const char *password;
	const char *cafile; /* NULL: no TLS */
	const char *cert;
	const char *key;
};

/*
 * A new MQTT v5 client whose user data is obj (a struct starting with a struct tool_conn),
 * with tool_conn_callbacks() installed and the credentials and TLS files set. Returns it, or
 * NULL after printing "<prog>: ..." with the option and file at fault.
 */
struct mosquitto *tool_client_new(const char *prog, const struct tool_client_opts *o, void *obj);
/* Start connecting to host:port (keepalive 30 s). 0, or -1 after printing why ("who" names
 * the client in the message). Then wait with tool_await_connack(). */
int tool_client_connect(const char *prog, struct mosquitto *mosq, const char *who, const char *host,
                        long port);

/* Why a connection ended, from on_disconnect's rc: an MQTT v5 reason the broker sent
 * (0x80 and up), else a libmosquitto error; "closed by the broker" when libmosquitto only
 * saw the socket close. */
const char *tool_disconnect_text(int rc);

/* Monotonic milliseconds. */
long long tool_now_ms(void);

/* One slice of network work of at most min(wait_ms, slice_ms); false once the connection is
 * unusable (recorded in c). */
bool tool_pump(struct mosquitto *mosq, struct tool_conn *c, long long wait_ms, int slice_ms);

/*
 * Wait (at most timeout_ms, or until *stop) for the CONNACK. Returns 0 if accepted, 1
 * otherwise, after printing "<prog>: broker refused the connection of <who>: ..." or why
 * no answer came (hint, if non-NULL, is added when the connection closed first).
 */
int tool_await_connack(const char *prog, struct mosquitto *mosq, struct tool_conn *c,
                       const volatile sig_atomic_t *stop, const char *who, const char *host,
                       long port, int timeout_ms, int slice_ms, const char *hint);

#endif
