/*
 * atomic.h - replace a file so that a crash leaves either the old content or the new, never
 * a mix: write <path>.tmp, fsync it, rename it over path, fsync the directory.
 *
 * Every configuration change civicmq-admin and the control API make is saved this way (see
 * DESIGN.md, "Administration, audit, transparency"); a failed save is reported to the caller,
 * who keeps the old file and the old policy.
 *
 * The temporary file is named exactly "<path>.tmp" rather than something unique, so a temp
 * left behind by a crash is overwritten by the next save instead of piling up. The price: two
 * writers of the same path at the same time would write into one temp file. Callers must be
 * the only writer of a given file at a time (civicmq serialises saves on the broker's main
 * thread; civicmq-admin's offline mode must not run beside a broker that saves the same files).
 * A stale temp that is a symbolic link, a hard link to another file or not a regular file is
 * refused (and left in place), never followed or emptied.
 *
 * Errors name the file, the step and the system's reason, e.g.
 *     /etc/civicmq/vendors.json.tmp: write: No space left on device
 *
 * Thread: any, for different paths. Cost: one write of the data, two fsyncs (file and
 * directory) and a rename; allocation: the temp and directory names.
 */
#ifndef CMQ_ATOMIC_H
#define CMQ_ATOMIC_H

#include <json-c/json.h>
#include <stddef.h>
#include <sys/types.h>

/* Largest document cmq_atomic_write_json() renders, bytes. */
#define CMQ_ATOMIC_JSON_MAX (256u * 1024u * 1024u)

/*
 * Replace path with data[0..len) and permission bits mode (exactly mode: umask does not
 * apply). data may be NULL when len is 0.
 *
 * Returns CMQ_OK; CMQ_ERR_INVAL (path NULL or empty, data NULL with len > 0);
 * CMQ_ERR_NOMEM; or CMQ_ERR_IO, with err (if errlen > 0) holding "<file>: <step>: <reason>".
 * On every error path is untouched and the temp is removed - except in one case: when only
 * the final fsync of the directory fails, path already holds the new content (the rename
 * happened; it may not survive a power failure), and err says so ("... was replaced, but").
 * err is set to "" first and is always NUL-terminated.
 */
int cmq_atomic_write(const char *path, const void *data, size_t len, mode_t mode, char *err,
                     size_t errlen);

/*
 * cmq_atomic_write() of o rendered as the hand-written files in config/ are: 2-space
 * indentation, "key": value, one member or element per line; on one line instead: arrays of
 * scalars ("categories": ["a", "b"]), empty containers ("revoked_serials": []), and an object
 * below the top whose values are scalars or arrays of scalars, if the line stays within 100
 * columns ({"id": "resident-0001", "categories": ["energy"], "updated": "..."}). '/' is not
 * escaped, non-ASCII UTF-8 is kept as is, and the file ends with a newline. config/vendors.json
 * and config/consent.json come out byte for byte as they are. o is borrowed (json-c may cache
 * text in it) and may be NULL (written as null).
 *
 * Returns as cmq_atomic_write(), plus CMQ_ERR_INVAL for a value JSON cannot hold (a NaN or
 * infinite number, nesting deeper than CMQ_JSON_MAX_DEPTH) and CMQ_ERR_TOO_BIG past
 * CMQ_ATOMIC_JSON_MAX bytes; then nothing is written.
 */
int cmq_atomic_write_json(const char *path, struct json_object *o, mode_t mode, char *err,
                          size_t errlen);

/*
 * The text cmq_atomic_write_json() would write, into *out (NUL-terminated, cmq_free), *len
 * its length without the NUL: to validate exactly the bytes that will be saved. Returns
 * CMQ_OK, CMQ_ERR_INVAL, CMQ_ERR_TOO_BIG or CMQ_ERR_NOMEM as above (*out NULL on failure).
 */
int cmq_json_render(struct json_object *o, char **out, size_t *len);

/*
 * fsync the directory that holds path ("." for a bare name), so that a rename or a file
 * creation in it survives a power failure. A file system that cannot fsync directories
 * (EINVAL) counts as success. Returns CMQ_OK, CMQ_ERR_NOMEM or CMQ_ERR_IO with err as above.
 */
int cmq_atomic_fsync_dir(const char *path, char *err, size_t errlen);

#endif
