/* The production transport: a connected AF_UNIX stream socket. */
#include "wire/transport.h"
#include "wire/wire.h"
#include "util/log.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct sock_transport {
	struct wire_transport base;
	int fd;
	int rcv_timeout_ms; /* what SO_RCVTIMEO is set to; -1: none */
};

static struct sock_transport *to_sock(struct wire_transport *t)
{
	return (struct sock_transport *)t;
}

static int sock_send(struct wire_transport *t, const struct iovec *iov_in, int iovcnt,
		     const int *fds, unsigned nfds)
{
	struct sock_transport *s = to_sock(t);
	union {
		char buf[CMSG_SPACE(sizeof(int) * WIRE_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov[16];
	struct msghdr mh = {0};

	if (iovcnt > (int)(sizeof(iov) / sizeof(iov[0])) || nfds > WIRE_MAX_FDS)
		return -EINVAL;
	memcpy(iov, iov_in, sizeof(*iov) * (size_t)iovcnt);
	mh.msg_iov = iov;
	mh.msg_iovlen = (size_t)iovcnt;
	if (nfds) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	for (;;) {
		ssize_t n = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd p = {.fd = s->fd, .events = POLLOUT};
				poll(&p, 1, -1);
				continue;
			}
			return -errno;
		}
		/* fds went with the first byte; drop them from later sends. */
		mh.msg_control = NULL;
		mh.msg_controllen = 0;
		while (n > 0 && mh.msg_iovlen) {
			if ((size_t)n >= mh.msg_iov->iov_len) {
				n -= (ssize_t)mh.msg_iov->iov_len;
				mh.msg_iov++;
				mh.msg_iovlen--;
			} else {
				mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + n;
				mh.msg_iov->iov_len -= (size_t)n;
				n = 0;
			}
		}
		while (mh.msg_iovlen && mh.msg_iov->iov_len == 0) {
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (!mh.msg_iovlen)
			return 0;
	}
}

/* Applies @timeout_ms as SO_RCVTIMEO, only when it changes, so a blocking
 * receive stays one syscall. */
static int set_timeout(struct sock_transport *s, int timeout_ms)
{
	if (timeout_ms == s->rcv_timeout_ms)
		return 0;
	struct timeval tv = {0};
	if (timeout_ms > 0) {
		tv.tv_sec = timeout_ms / 1000;
		tv.tv_usec = (timeout_ms % 1000) * 1000;
	}
	if (setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	s->rcv_timeout_ms = timeout_ms;
	return 0;
}

static ssize_t sock_recv(struct wire_transport *t, void *buf, size_t len, int *fds,
			 unsigned *nfds, int timeout_ms)
{
	struct sock_transport *s = to_sock(t);
	union {
		char buf[CMSG_SPACE(sizeof(int) * WIRE_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	unsigned cap = *nfds;
	int flags = MSG_CMSG_CLOEXEC;
	ssize_t n;

	*nfds = 0;
	if (timeout_ms == 0)
		flags |= MSG_DONTWAIT;
	else {
		int r = set_timeout(s, timeout_ms < 0 ? -1 : timeout_ms);
		if (r < 0)
			return r;
	}
	mh.msg_control = ctl.buf;
	mh.msg_controllen = sizeof(ctl.buf);
	do
		n = recvmsg(s->fd, &mh, flags);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		return errno == ECONNRESET ? 0 : -errno;
	}

	bool bad = mh.msg_flags & MSG_CTRUNC;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		unsigned char *in = CMSG_DATA(c);
		for (size_t i = 0; i < cnt; i++) {
			int fd;
			memcpy(&fd, in + i * sizeof(int), sizeof(fd));
			if (*nfds < cap)
				fds[(*nfds)++] = fd;
			else {
				close(fd);
				bad = true;
			}
		}
	}
	if (bad) {
		for (unsigned i = 0; i < *nfds; i++)
			close(fds[i]);
		*nfds = 0;
		log_err("socket %d: peer sent more fds than the %u allowed per message", s->fd, cap);
		return -EPROTO;
	}
	return n;
}

static void sock_shutdown(struct wire_transport *t)
{
	shutdown(to_sock(t)->fd, SHUT_RDWR);
}

static int sock_fd(struct wire_transport *t)
{
	return to_sock(t)->fd;
}

static void sock_destroy(struct wire_transport *t)
{
	struct sock_transport *s = to_sock(t);
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

static const struct wire_transport_ops sock_ops = {
	.send = sock_send,
	.recv = sock_recv,
	.shutdown = sock_shutdown,
	.fd = sock_fd,
	.destroy = sock_destroy,
};

int wire_transport_sock_create(int fd, struct wire_transport **out)
{
	struct sock_transport *s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		return -ENOMEM;
	}
	s->base.ops = &sock_ops;
	s->fd = fd;
	s->rcv_timeout_ms = -1;
	*out = &s->base;
	return 0;
}
