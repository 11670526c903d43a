/*
 * The socket transport: a connected stream socket (TCP or UNIX), made
 * non-blocking so that every wait goes through poll() with the caller's
 * timeout, including waits in the middle of a large write.
 */
#include "migrate/transport.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Pieces handed to one sendmsg (the kernel's UIO_MAXIOV). */
#define SOCK_IOV_BATCH 1024

struct sock_transport {
	struct mig_transport base;
	int fd;
};

static struct sock_transport *to_sock(struct mig_transport *t)
{
	return (struct sock_transport *)t;
}

/* Waits for @events on @fd. Returns 0, -ETIMEDOUT or a negative errno. */
static int wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = events};

	for (;;) {
		int n = poll(&p, 1, timeout_ms < 0 ? -1 : timeout_ms);
		if (n > 0)
			return 0; /* ready, or an error the next call will report */
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int sock_write_all(struct mig_transport *t, const struct iovec *iov, int iovcnt,
			  int timeout_ms)
{
	struct sock_transport *s = to_sock(t);
	struct iovec batch[SOCK_IOV_BATCH];
	struct mig_iov_cursor c;

	mig_iov_cursor_init(&c, iov, iovcnt);
	while (!mig_iov_cursor_done(&c)) {
		struct msghdr mh = {.msg_iov = batch};
		mh.msg_iovlen = (size_t)mig_iov_cursor_fill(&c, batch, SOCK_IOV_BATCH);
		ssize_t n = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
		if (n >= 0) {
			mig_iov_cursor_advance(&c, (size_t)n);
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			int err = errno == ECONNRESET ? -EPIPE : -errno;
			log_err("migration %s: send failed: %s", t->desc, strerror(-err));
			return err;
		}
		int rc = wait_fd(s->fd, POLLOUT, timeout_ms);
		if (rc == -ETIMEDOUT) {
			log_err("migration %s: peer accepted no data for %d ms", t->desc, timeout_ms);
			return rc;
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

static ssize_t sock_read_full(struct mig_transport *t, void *buf, size_t len, int timeout_ms)
{
	struct sock_transport *s = to_sock(t);
	size_t got = 0;

	if (len > SSIZE_MAX)
		return -EINVAL;
	while (got < len) {
		ssize_t n = recv(s->fd, (char *)buf + got, len - got, 0);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0)
			break; /* end of stream */
		if (errno == EINTR)
			continue;
		if (errno == ECONNRESET)
			break; /* the peer is gone: same as end of stream to the caller */
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		int rc = wait_fd(s->fd, POLLIN, timeout_ms);
		if (rc == -ETIMEDOUT) {
			log_err("migration %s: no data for %d ms (%zu of %zu bytes read)", t->desc,
				timeout_ms, got, len);
			return rc;
		}
		if (rc < 0)
			return rc;
	}
	return (ssize_t)got;
}

static int sock_pending(struct mig_transport *t)
{
	char c;
	ssize_t n;

	do
		n = recv(to_sock(t)->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		return 1;
	if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNRESET)
		return 0;
	return -errno;
}

static void sock_shutdown(struct mig_transport *t)
{
	shutdown(to_sock(t)->fd, SHUT_RDWR);
}

static void sock_close(struct mig_transport *t)
{
	struct sock_transport *s = to_sock(t);

	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

static const struct mig_transport_ops sock_ops = {
	.write_all = sock_write_all,
	.read_full = sock_read_full,
	.pending = sock_pending,
	.shutdown = sock_shutdown,
	.close = sock_close,
};

int mig_transport_sock_create(int fd, const char *desc, struct mig_transport **out)
{
	struct sock_transport *s;
	int fl;

	if (fd < 0 || !out) {
		if (fd >= 0)
			close(fd);
		return -EINVAL;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		int err = -errno;
		log_err("migration socket %d: cannot make it non-blocking: %s", fd, strerror(errno));
		close(fd);
		return err;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		return -ENOMEM;
	}
	s->base.ops = &sock_ops;
	s->base.has_backchannel = true;
	snprintf(s->base.desc, sizeof(s->base.desc), "%s", desc ? desc : "socket");
	s->fd = fd;
	*out = &s->base;
	return 0;
}
