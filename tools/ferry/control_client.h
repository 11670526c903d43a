/*
 * A client of the `ferry host` control socket (docs/control-protocol.md):
 * JSON lines over a UNIX stream socket. One request object per line goes
 * out; reply and event objects come back one per line.
 *
 * Lines are read into one buffer of CTL_LINE_MAX bytes plus the newline.
 * A longer line is discarded up to its newline and reported as -EMSGSIZE;
 * a line that is not one JSON object is reported as -EBADMSG. Either way
 * the connection stays usable and the next call reads the next line, so a
 * caller can skip a bad event and go on.
 *
 * Errors are negative errno values; each failure logs one line through
 * ferry_log(). The peer closing the connection is -ECONNRESET (also in the
 * middle of a line). A call interrupted by a signal returns -EINTR with
 * nothing lost: the next call picks up where it stopped.
 *
 * A struct ctl_client belongs to one thread.
 */
#ifndef FERRY_TOOL_CONTROL_CLIENT_H
#define FERRY_TOOL_CONTROL_CLIENT_H

#include <stddef.h>

#include <json-c/json.h>

/* The longest line either side sends, newline not counted. */
#define CTL_LINE_MAX (64u * 1024u)

struct ctl_client;

/* Connects to the control socket at @path. Returns 0 and *@out, or
 * -ENAMETOOLONG, -ENOENT, -ECONNREFUSED, ... */
int ctl_connect(const char *path, struct ctl_client **out);

/* Wraps a connected stream socket; @fd is consumed (closed by ctl_close()
 * and on failure). For tests and callers that connect themselves. */
int ctl_from_fd(int fd, struct ctl_client **out);

/* Closes the connection and frees @c. NULL-safe. */
void ctl_close(struct ctl_client *c);

/* The socket, for poll(). Never read or write it directly. */
int ctl_fd(const struct ctl_client *c);

/* Sends @req as one line. Waits at most @timeout_ms (-1: forever) for the
 * socket to take it. Returns 0, -ETIMEDOUT, -EPIPE, -ENOMEM, ... */
int ctl_send(struct ctl_client *c, json_object *req, int timeout_ms);

/* Reads the next line, without its newline, NUL-terminated, in *@line
 * (borrowed: valid until the next call on @c) and its length in *@len.
 * Waits at most @timeout_ms (-1: forever). Returns 0, -ETIMEDOUT, -EINTR,
 * -EMSGSIZE (line too long, skipped), -ECONNRESET (peer closed), ... */
int ctl_read_line(struct ctl_client *c, int timeout_ms, const char **line, size_t *len);

/* Reads the next non-empty line and parses it as one JSON object: *@out is a
 * new reference. Returns 0, -EBADMSG (not one JSON object; skipped), or
 * what ctl_read_line() returns. */
int ctl_read_json(struct ctl_client *c, int timeout_ms, json_object **out);

/* One request, one reply: ctl_send() then ctl_read_json(), both within
 * @timeout_ms each. */
int ctl_call(struct ctl_client *c, json_object *req, int timeout_ms, json_object **reply);

/* A request with no arguments: {"cmd": @cmd}. Returns a new reference or
 * NULL when out of memory. */
json_object *ctl_request_new(const char *cmd);

#endif
