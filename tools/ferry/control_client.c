/*
 * The control-socket client (control_client.h).
 *
 * The read buffer holds at most one line plus its newline. Lines are handed
 * out in place (the newline becomes a NUL); the bytes after it are moved to
 * the front on the next read. Simple on purpose: control lines are short
 * and rare next to the migration they describe.
 */
#include "control_client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <ferry/log.h>

#define BUF_SIZE (CTL_LINE_MAX + 1u) /* one line and its newline */

struct ctl_client {
	int fd;
	char *buf;
	size_t start;     /* first byte not yet handed out */
	size_t end;       /* bytes in buf */
	bool discarding;  /* skipping the rest of an over-long line */
	bool eof;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until @deadline (-1: none) for poll(). */
static int left_ms(int64_t deadline)
{
	if (deadline < 0)
		return -1;
	int64_t left = deadline - now_ms();
	return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

static int64_t deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Waits for @events on @fd. Returns 0, -ETIMEDOUT or -EINTR. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	int n = poll(&p, 1, left_ms(deadline));

	if (n < 0)
		return -errno;
	if (n == 0)
		return -ETIMEDOUT;
	return 0;
}

int ctl_from_fd(int fd, struct ctl_client **out)
{
	struct ctl_client *c;

	*out = NULL;
	if (fd < 0)
		return -EBADF;
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	c->buf = malloc(BUF_SIZE + 1); /* + 1: room for the NUL of a full buffer */
	if (!c->buf) {
		ctl_close(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

int ctl_connect(const char *path, struct ctl_client **out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, e;

	*out = NULL;
	if (!path || !*path || strlen(path) >= sizeof(sa.sun_path)) {
		ferry_log(FERRY_LOG_ERR, "control: socket path '%s' is empty or longer than %zu bytes",
			  path ? path : "", sizeof(sa.sun_path) - 1);
		return path && *path ? -ENAMETOOLONG : -EINVAL;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		e = -errno;
		ferry_log(FERRY_LOG_ERR, "control: socket(): %s", strerror(-e));
		return e;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = -errno;
		ferry_log(FERRY_LOG_ERR, "control: cannot connect to %s: %s", path, strerror(-e));
		close(fd);
		return e;
	}
	return ctl_from_fd(fd, out);
}

void ctl_close(struct ctl_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	free(c);
}

int ctl_fd(const struct ctl_client *c)
{
	return c->fd;
}

static int write_all(int fd, const char *p, size_t len, int64_t deadline)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			int e = -errno;

			if (e == -EAGAIN || e == -EINTR) {
				e = wait_fd(fd, POLLOUT, deadline);
				if (e < 0 && e != -EINTR)
					return e;
				continue;
			}
			return e;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int ctl_send(struct ctl_client *c, json_object *req, int timeout_ms)
{
	const char *s;
	size_t len;
	char *line;
	int e;

	if (!req || !json_object_is_type(req, json_type_object)) {
		ferry_log(FERRY_LOG_ERR, "control: a request must be a JSON object");
		return -EINVAL;
	}
	s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	if (!s)
		return -ENOMEM;
	len = strlen(s);
	if (len > CTL_LINE_MAX) {
		ferry_log(FERRY_LOG_ERR, "control: request of %zu bytes exceeds the %u-byte line limit",
			  len, CTL_LINE_MAX);
		return -EMSGSIZE;
	}
	line = malloc(len + 1);
	if (!line)
		return -ENOMEM;
	memcpy(line, s, len);
	line[len] = '\n'; /* plain JSON never holds a raw newline: one line */
	e = write_all(c->fd, line, len + 1, deadline_of(timeout_ms));
	free(line);
	if (e < 0)
		ferry_log(FERRY_LOG_ERR, "control: sending a request: %s", strerror(-e));
	return e;
}

/* Reads more bytes into the buffer. Returns 0, -ECONNRESET at end of
 * stream, -ETIMEDOUT, -EINTR or another negative errno. */
static int fill(struct ctl_client *c, int64_t deadline)
{
	if (c->start) {
		memmove(c->buf, c->buf + c->start, c->end - c->start);
		c->end -= c->start;
		c->start = 0;
	}
	for (;;) {
		int e = wait_fd(c->fd, POLLIN, deadline);

		if (e < 0)
			return e;
		ssize_t n = recv(c->fd, c->buf + c->end, BUF_SIZE - c->end, MSG_DONTWAIT);

		if (n > 0) {
			c->end += (size_t)n;
			return 0;
		}
		if (n == 0) {
			c->eof = true;
			return -ECONNRESET;
		}
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		if (errno == EINTR)
			return -EINTR;
	}
}

int ctl_read_line(struct ctl_client *c, int timeout_ms, const char **line, size_t *len)
{
	int64_t deadline = deadline_of(timeout_ms);
	size_t scanned = c->start; /* bytes before this offset hold no newline */

	*line = NULL;
	*len = 0;
	for (;;) {
		char *nl = memchr(c->buf + scanned, '\n', c->end - scanned);

		if (nl) {
			size_t from = c->start;

			*nl = '\0';
			c->start = (size_t)(nl - c->buf) + 1;
			if (c->discarding) {
				c->discarding = false;
				ferry_log(FERRY_LOG_ERR,
					  "control: the host sent a line longer than %u bytes; skipped",
					  CTL_LINE_MAX);
				return -EMSGSIZE;
			}
			*len = (size_t)(nl - (c->buf + from));
			if (*len && nl[-1] == '\r')
				nl[-1] = '\0', (*len)--;
			*line = c->buf + from;
			return 0;
		}
		if (c->eof) {
			if (c->end > c->start || c->discarding)
				ferry_log(FERRY_LOG_ERR,
					  "control: the host closed the connection in the middle of a line");
			return -ECONNRESET;
		}
		size_t pending = c->end - c->start;

		if (pending == BUF_SIZE) {
			/* a full buffer and no newline: drop it, skip to the next one */
			c->discarding = true;
			c->start = c->end = pending = 0;
		}
		int e = fill(c, deadline);

		scanned = pending; /* fill() moved the pending bytes to the front */
		if (e == -ECONNRESET)
			continue; /* report a complete last line first */
		if (e < 0) {
			if (e != -ETIMEDOUT && e != -EINTR)
				ferry_log(FERRY_LOG_ERR, "control: reading: %s", strerror(-e));
			return e;
		}
	}
}

static bool is_blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t')
			return false;
	return true;
}

int ctl_read_json(struct ctl_client *c, int timeout_ms, json_object **out)
{
	int64_t deadline = deadline_of(timeout_ms);
	const char *line;
	size_t len;
	int e;

	*out = NULL;
	do {
		e = ctl_read_line(c, left_ms(deadline), &line, &len);
		if (e < 0)
			return e;
	} while (is_blank(line, len));

	json_tokener *tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	json_object *o = json_tokener_parse_ex(tok, line, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t used = jerr == json_tokener_success ? json_tokener_get_parse_end(tok) : 0;

	json_tokener_free(tok);
	if (jerr != json_tokener_success || !o) {
		ferry_log(FERRY_LOG_ERR, "control: malformed line from the host (%s): %.80s%s",
			  o || jerr != json_tokener_success ? json_tokener_error_desc(jerr) : "null",
			  line, len > 80 ? "..." : "");
		json_object_put(o);
		return -EBADMSG;
	}
	if (!is_blank(line + used, len - used) || !json_object_is_type(o, json_type_object)) {
		ferry_log(FERRY_LOG_ERR, "control: line from the host is not one JSON object: %.80s%s",
			  line, len > 80 ? "..." : "");
		json_object_put(o);
		return -EBADMSG;
	}
	*out = o;
	return 0;
}

int ctl_call(struct ctl_client *c, json_object *req, int timeout_ms, json_object **reply)
{
	int e = ctl_send(c, req, timeout_ms);

	*reply = NULL;
	if (e < 0)
		return e;
	return ctl_read_json(c, timeout_ms, reply);
}

json_object *ctl_request_new(const char *cmd)
{
	json_object *o = json_object_new_object();
	json_object *s = json_object_new_string(cmd);

	if (!o || !s || json_object_object_add(o, "cmd", s) < 0) {
		json_object_put(o);
		json_object_put(s);
		return NULL;
	}
	return o;
}
