/*
 * ferry host: the control socket (docs/control-protocol.md). JSON lines on a
 * UNIX stream socket: an accept thread, and one thread per connection that
 * serves its requests in order (a `migrate` holds its connection until the
 * migration is over, streaming progress; other connections carry on).
 *
 * Simple on purpose: a thread per connection. Control clients are a few
 * humans and scripts, not thousands.
 */
#include "host.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <ferry/client.h>
#include <ferry/client_migration.h>
#include <ferry/log.h>
#include <ferry/migration.h>

#define LINE_MAX_BYTES (64u << 10)
/* A client that does not read its replies for this long is dropped. */
#define SEND_TIMEOUT_MS 5000
#define MAX_CONNECTIONS 64

struct conn {
	struct host_control *ctl;
	int fd;
	pthread_t thread;
	bool is_done;
	struct conn *next;
};

struct host_control {
	struct host *h;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int lfd;
	int stop_fd; /* eventfd: the accept thread returns */
	pthread_t thread;
	bool has_thread;
	pthread_mutex_t lock;
	struct conn *conns;
	unsigned nconns;
};

/* ---- replies ---- */

int host_control_send(int fd, json_object *o)
{
	size_t len;
	const char *s = json_object_to_json_string_length(
		o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	char *line;
	size_t off = 0;
	int rc = 0;

	if (!s)
		return -ENOMEM;
	line = malloc(len + 1);
	if (!line)
		return -ENOMEM;
	memcpy(line, s, len);
	line[len++] = '\n';
	while (off < len) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		ssize_t n = send(fd, line + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			rc = -errno;
			break;
		}
		n = poll(&p, 1, SEND_TIMEOUT_MS);
		if (n == 0) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	free(line);
	return rc;
}

static int send_error(int fd, int err, const char *msg)
{
	json_object *o = json_object_new_object();
	int rc;

	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "errno", json_object_new_int(err));
	json_object_object_add(o, "error", json_object_new_string(msg));
	rc = host_control_send(fd, o);
	json_object_put(o);
	return rc;
}

static int send_ok(int fd, json_object *o)
{
	int rc;

	json_object_object_add(o, "ok", json_object_new_boolean(1));
	rc = host_control_send(fd, o);
	json_object_put(o);
	return rc;
}

/* ---- status ---- */

static const char *const role_names[] = {
	[HOST_ROLE_IDLE] = "idle",
	[HOST_ROLE_SOURCE] = "source",
	[HOST_ROLE_DESTINATION] = "destination",
	[HOST_ROLE_MIGRATED] = "migrated",
};

static json_object *mig_flags_json(uint64_t flags)
{
	json_object *a = json_object_new_array();

	if (flags & VFIO_MIGRATION_STOP_COPY)
		json_object_array_add(a, json_object_new_string("STOP_COPY"));
	if (flags & VFIO_MIGRATION_P2P)
		json_object_array_add(a, json_object_new_string("P2P"));
	if (flags & VFIO_MIGRATION_PRE_COPY)
		json_object_array_add(a, json_object_new_string("PRE_COPY"));
	return a;
}

static json_object *device_json(struct host *h, struct host_device *d)
{
	json_object *o = json_object_new_object();
	struct dirty_view_device info;
	enum ferry_mig_state st;

	json_object_object_add(o, "index", json_object_new_int((int)d->index));
	json_object_object_add(o, "kind", json_object_new_string(host_kind_str(d->kind)));
	json_object_object_add(o, "socket", json_object_new_string(d->socket));
	if (d->mig_flags && ferry_client_mig_get_state(d->c, &st) == 0)
		json_object_object_add(o, "state",
				       json_object_new_string(ferry_mig_state_name(st)));
	else
		json_object_object_add(o, "state", json_object_new_string(d->mig_flags ? "unknown"
										      : "RUNNING"));
	json_object_object_add(o, "mig_flags", mig_flags_json(d->mig_flags));
	if (dirty_view_device_get(h->dv, d->index, &info) == 0)
		json_object_object_add(o, "dirty_provider",
				       json_object_new_string(dirty_provider_name(info.provider)));
	else
		json_object_object_add(o, "dirty_provider", NULL);
	return o;
}

static json_object *workloads_json(struct host *h)
{
	json_object *a = json_object_new_array();

	for (unsigned i = 0; i < h->ndev; i++) {
		struct host_device *d = &h->dev[i];
		struct host_workload_stats st;
		json_object *o;

		if (d->kind == HOST_KIND_NONE)
			continue;
		host_workload_stats(d, &st);
		o = json_object_new_object();
		json_object_object_add(o, "device", json_object_new_int((int)i));
		json_object_object_add(o, "kind", json_object_new_string(host_kind_str(d->kind)));
		json_object_object_add(o, "running", json_object_new_boolean(st.running));
		json_object_object_add(o, "submitted", json_object_new_uint64(st.submitted));
		json_object_object_add(o, "completed", json_object_new_uint64(st.completed));
		json_object_object_add(o, "verified", json_object_new_uint64(st.verified));
		json_object_object_add(o, "errors", json_object_new_uint64(st.errors));
		json_object_array_add(a, o);
	}
	return a;
}

json_object *host_status_json(struct host *h)
{
	json_object *o = json_object_new_object();
	json_object *devs = json_object_new_array();
	enum host_role role;
	json_object *last;

	pthread_mutex_lock(&h->lock);
	role = h->role;
	last = h->last_report ? json_object_get(h->last_report) : NULL;
	pthread_mutex_unlock(&h->lock);

	json_object_object_add(o, "role", json_object_new_string(role_names[role]));
	json_object_object_add(o, "mem_bytes", json_object_new_uint64(h->mem_size));
	for (unsigned i = 0; i < h->ndev; i++)
		json_object_array_add(devs, device_json(h, &h->dev[i]));
	json_object_object_add(o, "devices", devs);
	json_object_object_add(o, "workloads", workloads_json(h));
	json_object_object_add(o, "migration", host_migrate_progress_json(h));
	json_object_object_add(o, "last_migration", last);
	return o;
}

/* ---- requests ---- */

static void handle_status(struct host *h, int fd)
{
	send_ok(fd, host_status_json(h));
}

static void handle_cancel(struct host *h, int fd)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "cancelled", json_object_new_boolean(host_migrate_cancel(h)));
	send_ok(fd, o);
}

static void handle_verify(struct host *h, int fd)
{
	enum host_role role;
	int64_t bad;
	json_object *o;

	pthread_mutex_lock(&h->lock);
	role = h->role;
	pthread_mutex_unlock(&h->lock);
	if (host_migrate_is_busy(h)) {
		send_error(fd, EBUSY, "a migration is running; verify after it");
		return;
	}
	if (role == HOST_ROLE_MIGRATED) {
		send_error(fd, ESRCH, "the guest has migrated away: nothing to verify here");
		return;
	}
	bad = host_workloads_verify(h);
	if (bad < 0) {
		char msg[160];

		snprintf(msg, sizeof(msg), "verify failed: %s", strerror((int)-bad));
		send_error(fd, (int)-bad, msg);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "ok", json_object_new_boolean(bad == 0));
	json_object_object_add(o, "workloads", workloads_json(h));
	json_object_object_add(o, "mismatches", json_object_new_int64(bad));
	if (bad)
		json_object_object_add(o, "error",
				       json_object_new_string("workload data does not match"));
	host_control_send(fd, o);
	json_object_put(o);
}

static void handle_quit(struct host *h, int fd)
{
	send_ok(fd, json_object_new_object());
	host_request_quit(h, 0);
}

/* One request line. */
static void dispatch(struct host *h, int fd, const char *line, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	json_object *req = NULL, *cmd;
	const char *name;

	if (tok) {
		req = json_tokener_parse_ex(tok, line, (int)len);
		if (json_tokener_get_error(tok) != json_tokener_success ||
		    tok->char_offset < (int)len) {
			/* Trailing garbage after the object is malformed too. */
			bool only_space = true;

			for (size_t i = (size_t)(tok->char_offset > 0 ? tok->char_offset : 0);
			     req && i < len; i++)
				only_space &= line[i] == ' ' || line[i] == '\t' || line[i] == '\r';
			if (!req || !only_space) {
				json_object_put(req);
				req = NULL;
			}
		}
		json_tokener_free(tok);
	}
	if (!req || !json_object_is_type(req, json_type_object)) {
		send_error(fd, EINVAL, "malformed request: one JSON object per line expected");
		json_object_put(req);
		return;
	}
	if (!json_object_object_get_ex(req, "cmd", &cmd) ||
	    !json_object_is_type(cmd, json_type_string)) {
		send_error(fd, EINVAL, "request without a \"cmd\" string");
		json_object_put(req);
		return;
	}
	name = json_object_get_string(cmd);
	if (!strcmp(name, "status"))
		handle_status(h, fd);
	else if (!strcmp(name, "migrate"))
		host_migrate_serve(h, fd, req);
	else if (!strcmp(name, "cancel"))
		handle_cancel(h, fd);
	else if (!strcmp(name, "verify"))
		handle_verify(h, fd);
	else if (!strcmp(name, "quit"))
		handle_quit(h, fd);
	else {
		char msg[128];

		snprintf(msg, sizeof(msg), "unknown cmd \"%.64s\"", name);
		send_error(fd, EINVAL, msg);
	}
	json_object_put(req);
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	struct host *h = c->ctl->h;
	char *buf = malloc(LINE_MAX_BYTES + 1);
	size_t have = 0;
	bool is_skipping = false; /* inside an over-long line */

	while (buf) {
		ssize_t n = recv(c->fd, buf + have, LINE_MAX_BYTES + 1 - have, 0);
		char *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
		while ((nl = memchr(buf, '\n', have))) {
			size_t len = (size_t)(nl - buf);

			if (!is_skipping && len)
				dispatch(h, c->fd, buf, len);
			is_skipping = false;
			memmove(buf, nl + 1, have - len - 1);
			have -= len + 1;
		}
		if (have > LINE_MAX_BYTES) {
			if (!is_skipping)
				send_error(c->fd, EMSGSIZE, "request line longer than 64 KiB");
			is_skipping = true;
			have = 0;
		}
	}
	free(buf);
	pthread_mutex_lock(&c->ctl->lock);
	c->is_done = true;
	pthread_mutex_unlock(&c->ctl->lock);
	return NULL;
}

/* Joins and frees finished connections. Lock held. */
static void reap(struct host_control *ctl, bool all)
{
	struct conn **pp = &ctl->conns;

	while (*pp) {
		struct conn *c = *pp;

		if (!all && !c->is_done) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		ctl->nconns--;
		pthread_mutex_unlock(&ctl->lock);
		pthread_join(c->thread, NULL);
		close(c->fd);
		free(c);
		pthread_mutex_lock(&ctl->lock);
	}
}

static void accept_one(struct host_control *ctl)
{
	int fd = accept4(ctl->lfd, NULL, NULL, SOCK_CLOEXEC);
	struct conn *c;

	if (fd < 0)
		return;
	pthread_mutex_lock(&ctl->lock);
	reap(ctl, false);
	if (ctl->nconns >= MAX_CONNECTIONS) {
		pthread_mutex_unlock(&ctl->lock);
		send_error(fd, EMFILE, "too many control connections");
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		pthread_mutex_unlock(&ctl->lock);
		close(fd);
		return;
	}
	c->ctl = ctl;
	c->fd = fd;
	if (pthread_create(&c->thread, NULL, conn_main, c) != 0) {
		pthread_mutex_unlock(&ctl->lock);
		free(c);
		close(fd);
		return;
	}
	c->next = ctl->conns;
	ctl->conns = c;
	ctl->nconns++;
	pthread_mutex_unlock(&ctl->lock);
}

static void *accept_main(void *arg)
{
	struct host_control *ctl = arg;

	for (;;) {
		struct pollfd p[2] = {{.fd = ctl->lfd, .events = POLLIN},
				      {.fd = ctl->stop_fd, .events = POLLIN}};

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents & POLLIN)
			accept_one(ctl);
	}
	return NULL;
}

/* Whether a host already serves @path (else it is stale or absent). */
static bool is_live(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live;

	if (fd < 0)
		return false;
	memcpy(sa.sun_path, path, strlen(path));
	live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return live;
}

/*
 * Binds a temporary name next to @path, listens, then renames it to @path:
 * whoever sees @path can connect (a client polling for the file never
 * meets a socket that is bound but not listening yet). A stale socket at
 * @path is replaced; a live one is left alone (-EADDRINUSE).
 */
static int bind_listen(int fd, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s.%d", path, (int)getpid());
	int rc;

	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path); /* no room: in place */
	if (is_live(path)) {
		fprintf(stderr, "ferry host: another host serves %s\n", path);
		return -EADDRINUSE;
	}
	unlink(sa.sun_path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0 ||
	    (strcmp(sa.sun_path, path) && rename(sa.sun_path, path) < 0)) {
		rc = -errno;
		fprintf(stderr, "ferry host: control socket %s: %s\n", path, strerror(-rc));
		unlink(sa.sun_path);
		return rc;
	}
	return 0;
}

int host_control_start(struct host *h, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct host_control *ctl;
	int rc;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "ferry host: control socket path too long: %s\n", path);
		return -ENAMETOOLONG;
	}
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	ctl->h = h;
	ctl->lfd = ctl->stop_fd = -1;
	pthread_mutex_init(&ctl->lock, NULL);
	snprintf(ctl->path, sizeof(ctl->path), "%s", path);
	memcpy(sa.sun_path, path, strlen(path));
	h->ctl = ctl;

	ctl->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ctl->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (ctl->lfd < 0 || ctl->stop_fd < 0) {
		rc = -errno;
		fprintf(stderr, "ferry host: control socket: %s\n", strerror(-rc));
		goto fail;
	}
	rc = bind_listen(ctl->lfd, path);
	if (rc < 0)
		goto fail;
	rc = -pthread_create(&ctl->thread, NULL, accept_main, ctl);
	if (rc < 0)
		goto fail_unlink;
	ctl->has_thread = true;
	return 0;

fail_unlink:
	unlink(path);
fail:
	host_control_stop(h);
	return rc;
}

void host_control_stop(struct host *h)
{
	struct host_control *ctl = h->ctl;
	uint64_t one = 1;

	if (!ctl)
		return;
	if (ctl->has_thread) {
		if (write(ctl->stop_fd, &one, sizeof(one)) < 0)
			ferry_log(FERRY_LOG_WARN, "control socket: cannot stop the accept thread");
		pthread_join(ctl->thread, NULL);
		unlink(ctl->path);
	}
	/* Wake every connection thread out of recv(), then join them. */
	pthread_mutex_lock(&ctl->lock);
	for (struct conn *c = ctl->conns; c; c = c->next)
		shutdown(c->fd, SHUT_RDWR);
	reap(ctl, true);
	pthread_mutex_unlock(&ctl->lock);
	if (ctl->lfd >= 0)
		close(ctl->lfd);
	if (ctl->stop_fd >= 0)
		close(ctl->stop_fd);
	pthread_mutex_destroy(&ctl->lock);
	free(ctl);
	h->ctl = NULL;
}
