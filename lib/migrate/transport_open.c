/*
 * Opening transports from URIs: listen/accept on the destination, connect
 * on the source, for tcp:, unix: and file:.
 *
 * Socket choices:
 * - TCP_NODELAY on. The stream writer already batches into multi-megabyte
 *   writes, so Nagle has nothing left to coalesce; all it could do is hold
 *   back the small final write of a flush (SWITCHOVER, END, the ack) until
 *   the previous segment is acknowledged, which with delayed ACKs adds up to
 *   40 ms on Linux to the downtime.
 * - SO_SNDBUF/SO_RCVBUF: see MIG_SOCK_BUF_BYTES. Set before connect() and
 *   before listen() (accepted sockets inherit it), so the window scale
 *   negotiated in the handshake can use it.
 */
#include "migrate/transport.h"
#include "migrate/uri.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct mig_listener {
	struct mig_uri uri;
	int fd;             /* listening socket; -1 for file: or once accepted */
	bool has_accepted;
	bool owns_path;     /* unix: we created the socket file */
	uint16_t port;      /* tcp: the bound port */
	char bound_uri[MIG_URI_MAX + 16];
};

/* The system's limit for one buffer, or 0 if unknown. */
static unsigned long read_sysctl(const char *path)
{
	unsigned long v = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return 0;
	if (fscanf(f, "%lu", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

static void tune_buffers(int fd)
{
	int sz = (int)MIG_SOCK_BUF_BYTES;

	if (read_sysctl("/proc/sys/net/core/wmem_max") >= MIG_SOCK_BUF_BYTES)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	if (read_sysctl("/proc/sys/net/core/rmem_max") >= MIG_SOCK_BUF_BYTES)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
}

static void set_nodelay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* "HOST:PORT" for @sa, bracketing IPv6. */
static void addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	} else {
		snprintf(buf, len, "?");
	}
}

static int resolve(const struct mig_uri *u, bool passive, struct addrinfo **res)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
	};
	char port[8];
	int rc;

	snprintf(port, sizeof(port), "%u", u->port);
	rc = getaddrinfo(u->host, port, &hints, res);
	if (rc != 0) {
		log_err("migration tcp:%s:%u: cannot resolve '%s': %s", u->host, u->port, u->host,
			rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	return 0;
}

static int make_unix_addr(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	strcpy(sun->sun_path, path);
	return 0;
}

/* ---- destination ---- */

static int listen_tcp(struct mig_listener *l)
{
	const struct mig_uri *u = &l->uri;
	struct addrinfo *res, *ai;
	int err = -EADDRNOTAVAIL;
	int rc = resolve(u, true, &res);

	if (rc < 0)
		return rc;
	for (ai = res; ai; ai = ai->ai_next) {
		int one = 1;
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		tune_buffers(fd);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1) < 0) {
			err = -errno;
			close(fd);
			continue;
		}
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
			err = -errno;
			close(fd);
			continue;
		}
		l->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
						   : ntohs(((struct sockaddr_in *)&ss)->sin_port);
		l->fd = fd;
		break;
	}
	freeaddrinfo(res);
	if (l->fd < 0) {
		log_err("migration tcp:%s:%u: cannot listen: %s", u->host, u->port, strerror(-err));
		return err;
	}
	if (strchr(u->host, ':'))
		snprintf(l->bound_uri, sizeof(l->bound_uri), "tcp:[%s]:%u", u->host, l->port);
	else
		snprintf(l->bound_uri, sizeof(l->bound_uri), "tcp:%s:%u", u->host, l->port);
	return 0;
}

static int listen_unix(struct mig_listener *l)
{
	struct sockaddr_un sun;
	int fd, err;

	if (make_unix_addr(l->uri.path, &sun) < 0)
		return -ENAMETOOLONG; /* uri.c already bounds it */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	tune_buffers(fd);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		err = -errno;
		if (err == -EADDRINUSE)
			log_err("migration unix:%s: the path already exists (a stale socket? remove it)",
				l->uri.path);
		else
			log_err("migration unix:%s: cannot bind: %s", l->uri.path, strerror(-err));
		close(fd);
		return err;
	}
	l->owns_path = true;
	if (listen(fd, 1) < 0) {
		err = -errno;
		log_err("migration unix:%s: cannot listen: %s", l->uri.path, strerror(-err));
		close(fd);
		return err;
	}
	l->fd = fd;
	snprintf(l->bound_uri, sizeof(l->bound_uri), "unix:%s", l->uri.path);
	return 0;
}

int mig_transport_listen(const char *uri, struct mig_listener **out)
{
	struct mig_listener *l;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->fd = -1;
	rc = mig_uri_parse(uri, true, &l->uri);
	if (rc < 0)
		goto out_free;
	switch (l->uri.kind) {
	case MIG_URI_TCP:
		rc = listen_tcp(l);
		break;
	case MIG_URI_UNIX:
		rc = listen_unix(l);
		break;
	case MIG_URI_FILE:
		snprintf(l->bound_uri, sizeof(l->bound_uri), "file:%s", l->uri.path);
		rc = 0;
		break;
	}
	if (rc < 0)
		goto out_free;
	*out = l;
	return 0;

out_free:
	mig_listener_close(l);
	return rc;
}

uint16_t mig_listener_port(const struct mig_listener *l)
{
	return l ? l->port : 0;
}

const char *mig_listener_uri(const struct mig_listener *l)
{
	return l ? l->bound_uri : NULL;
}

static void stop_listening(struct mig_listener *l)
{
	if (l->fd >= 0) {
		close(l->fd);
		l->fd = -1;
	}
	if (l->owns_path) {
		unlink(l->uri.path);
		l->owns_path = false;
	}
}

static int accept_file(struct mig_listener *l, struct mig_transport **out)
{
	char desc[sizeof(((struct mig_transport *)0)->desc)];
	int fd = open(l->uri.path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		int err = -errno;
		log_err("migration file:%s: cannot open for reading: %s", l->uri.path,
			strerror(errno));
		return err;
	}
	snprintf(desc, sizeof(desc), "file %.110s", l->uri.path);
	return mig_transport_file_create(fd, desc, out);
}

int mig_transport_accept(struct mig_listener *l, int timeout_ms, struct mig_transport **out)
{
	char desc[sizeof(((struct mig_transport *)0)->desc)];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd, rc;

	if (!l || !out)
		return -EINVAL;
	*out = NULL;
	if (l->has_accepted) {
		log_err("migration %s: a connection was already accepted", l->bound_uri);
		return -EBUSY;
	}
	if (l->uri.kind == MIG_URI_FILE) {
		rc = accept_file(l, out);
		l->has_accepted = rc == 0;
		return rc;
	}

	struct pollfd p = {.fd = l->fd, .events = POLLIN};
	do
		rc = poll(&p, 1, timeout_ms < 0 ? -1 : timeout_ms);
	while (rc < 0 && errno == EINTR);
	if (rc == 0) {
		log_err("migration %s: no source connected within %d ms", l->bound_uri, timeout_ms);
		return -ETIMEDOUT;
	}
	if (rc < 0)
		return -errno;
	do
		fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		rc = -errno;
		log_err("migration %s: accept failed: %s", l->bound_uri, strerror(errno));
		return rc;
	}
	l->has_accepted = true;
	stop_listening(l);
	if (l->uri.kind == MIG_URI_TCP) {
		char peer[64];
		set_nodelay(fd);
		addr_str((struct sockaddr *)&ss, peer, sizeof(peer));
		snprintf(desc, sizeof(desc), "tcp from %s", peer);
	} else {
		snprintf(desc, sizeof(desc), "unix %.110s", l->uri.path);
	}
	return mig_transport_sock_create(fd, desc, out);
}

void mig_listener_close(struct mig_listener *l)
{
	if (!l)
		return;
	stop_listening(l);
	free(l);
}

/* ---- source ---- */

/* One non-blocking connect bounded by @timeout_ms. Returns the connected fd
 * or a negative errno. */
static int connect_one(const struct addrinfo *ai, int timeout_ms)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			ai->ai_protocol);
	int err = 0;
	socklen_t el = sizeof(err);

	if (fd < 0)
		return -errno;
	tune_buffers(fd);
	set_nodelay(fd);
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		err = -errno;
		close(fd);
		return err;
	}
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	int n;
	do
		n = poll(&p, 1, timeout_ms < 0 ? -1 : timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		close(fd);
		return n == 0 ? -ETIMEDOUT : -errno;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		err = errno;
	if (err) {
		close(fd);
		return -err;
	}
	return fd;
}

static int connect_tcp(const struct mig_uri *u, int timeout_ms, struct mig_transport **out)
{
	char desc[sizeof(((struct mig_transport *)0)->desc)];
	char peer[64];
	struct addrinfo *res, *ai;
	int fd = -EHOSTUNREACH;
	int rc = resolve(u, false, &res);

	if (rc < 0)
		return rc;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = connect_one(ai, timeout_ms);
		if (fd >= 0) {
			addr_str(ai->ai_addr, peer, sizeof(peer));
			break;
		}
	}
	freeaddrinfo(res);
	if (fd < 0) {
		log_err("migration tcp:%s:%u: cannot connect: %s", u->host, u->port, strerror(-fd));
		return fd;
	}
	snprintf(desc, sizeof(desc), "tcp to %s", peer);
	return mig_transport_sock_create(fd, desc, out);
}

/* Local and immediate, so a blocking connect is fine. */
static int connect_unix(const struct mig_uri *u, struct mig_transport **out)
{
	char desc[sizeof(((struct mig_transport *)0)->desc)];
	struct sockaddr_un sun;
	int fd, rc;

	if (make_unix_addr(u->path, &sun) < 0)
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	tune_buffers(fd);
	do
		rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	while (rc < 0 && errno == EINTR);
	if (rc < 0) {
		rc = -errno;
		log_err("migration unix:%s: cannot connect: %s", u->path, strerror(errno));
		close(fd);
		return rc;
	}
	snprintf(desc, sizeof(desc), "unix %.110s", u->path);
	return mig_transport_sock_create(fd, desc, out);
}

static int create_file(const struct mig_uri *u, struct mig_transport **out)
{
	char desc[sizeof(((struct mig_transport *)0)->desc)];
	int fd = open(u->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0) {
		int err = -errno;
		log_err("migration file:%s: cannot create: %s", u->path, strerror(errno));
		return err;
	}
	snprintf(desc, sizeof(desc), "file %.110s", u->path);
	return mig_transport_file_create(fd, desc, out);
}

int mig_transport_connect(const char *uri, int timeout_ms, struct mig_transport **out)
{
	struct mig_uri *u;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	u = malloc(sizeof(*u)); /* 8 KiB: keep it off small thread stacks */
	if (!u)
		return -ENOMEM;
	rc = mig_uri_parse(uri, false, u);
	if (rc == 0) {
		switch (u->kind) {
		case MIG_URI_TCP:
			rc = connect_tcp(u, timeout_ms, out);
			break;
		case MIG_URI_UNIX:
			rc = connect_unix(u, out);
			break;
		case MIG_URI_FILE:
			rc = create_file(u, out);
			break;
		}
	}
	free(u);
	return rc;
}
