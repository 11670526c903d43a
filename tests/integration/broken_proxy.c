/*
 * The broken device's proxy (broken_proxy.h): raw vfio-user framing over
 * two sockets, and the two injected bugs.
 *
 *   reset-keeps-state: on DEVICE_RESET, GET the state first; after the
 *     device's reset (which returns it to RUNNING) SET it back, then reply.
 *   wrong-arc: a SET RUNNING that arrives in PRE_COPY is sent on as SET STOP;
 *     the reply's echo is patched back to RUNNING, so the client sees
 *     success while the device sits in STOP.
 *
 * The proxy's own requests use msg_ids from 0xf000 up, different from the
 * one the client is waiting for; other traffic from the device meanwhile is
 * forwarded to the client.
 */
#include "broken_proxy.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <ferry/migration.h>
#include <ferry/vfio_user.h>

#define MAX_FDS 64
#define MAX_PAYLOAD (64u << 20)

struct frame {
	struct vfio_user_header h;
	uint8_t *p;
	int fds[MAX_FDS];
	unsigned nfds;
};

struct proxy {
	int cl, dv;
	enum broken_bug bug;
	uint16_t next_id;
};

static void frame_free(struct frame *f)
{
	for (unsigned i = 0; i < f->nfds; i++)
		close(f->fds[i]);
	free(f->p);
	memset(f, 0, sizeof(*f));
}

static uint32_t frame_len(const struct frame *f)
{
	return f->h.msg_size - (uint32_t)sizeof(f->h);
}

static int read_full(int fd, void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = read(fd, (uint8_t *)buf + done, len - done);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0 && errno != EINTR)
			return -errno;
		done += n > 0 ? (size_t)n : 0;
	}
	return 0;
}

/* One message: the header with whatever fds came along, then the payload. */
static int frame_recv(int fd, struct frame *f)
{
	union {
		char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = &f->h, .iov_len = sizeof(f->h)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf)};
	memset(f, 0, sizeof(*f));
	ssize_t n;
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n == 0 ? -ECONNRESET : -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		unsigned k = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		memcpy(f->fds + f->nfds, CMSG_DATA(c), k * sizeof(int));
		f->nfds += k;
	}
	int r = read_full(fd, (uint8_t *)&f->h + n, sizeof(f->h) - (size_t)n);
	if (r == 0 && (f->h.msg_size < sizeof(f->h) || f->h.msg_size - sizeof(f->h) > MAX_PAYLOAD))
		r = -EPROTO;
	if (r == 0 && frame_len(f)) {
		f->p = malloc(frame_len(f));
		r = f->p ? read_full(fd, f->p, frame_len(f)) : -ENOMEM;
	}
	if (r < 0)
		frame_free(f);
	return r;
}

static int frame_send(int fd, const struct frame *f)
{
	union {
		char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov[2] = {{.iov_base = (void *)&f->h, .iov_len = sizeof(f->h)},
			       {.iov_base = f->p, .iov_len = frame_len(f)}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = frame_len(f) ? 2 : 1};
	if (f->nfds) {
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(f->nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(f->nfds * sizeof(int));
		memcpy(CMSG_DATA(c), f->fds, f->nfds * sizeof(int));
	}
	size_t left = f->h.msg_size;
	while (left) {
		ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		left -= (size_t)n;
		mh.msg_control = NULL; /* fds go with the first byte only */
		mh.msg_controllen = 0;
		while (n > 0 && mh.msg_iovlen) {
			size_t k = (size_t)n < mh.msg_iov->iov_len ? (size_t)n : mh.msg_iov->iov_len;
			mh.msg_iov->iov_base = (uint8_t *)mh.msg_iov->iov_base + k;
			mh.msg_iov->iov_len -= k;
			n -= (ssize_t)k;
			if (!mh.msg_iov->iov_len) {
				mh.msg_iov++;
				mh.msg_iovlen--;
			}
		}
	}
	return 0;
}

static bool is_reply(const struct frame *f)
{
	return (f->h.flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_TYPE_REPLY;
}

/* Waits for the device's reply to (@id, @cmd), forwarding everything else
 * from the device to the client. */
static int wait_reply(struct proxy *p, uint16_t id, uint16_t cmd, struct frame *reply)
{
	for (;;) {
		int r = frame_recv(p->dv, reply);
		if (r < 0)
			return r;
		if (is_reply(reply) && reply->h.msg_id == id && reply->h.cmd == cmd)
			return 0;
		r = frame_send(p->cl, reply);
		frame_free(reply);
		if (r < 0)
			return r;
	}
}

/* DEVICE_FEATURE on MIG_DEVICE_STATE from the proxy itself. @state is
 * read (GET) or sent (SET). Returns 0 or -EIO. */
static int proxy_mig_state(struct proxy *p, uint16_t avoid_id, bool set, uint32_t *state)
{
	struct {
		struct vfio_user_device_feature f;
		struct vfio_user_feature_mig_state s;
	} __attribute__((packed)) req = {
		.f = {.argsz = sizeof(req),
		      .flags = VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE |
			       (set ? VFIO_DEVICE_FEATURE_SET : VFIO_DEVICE_FEATURE_GET)},
		.s = {.device_state = set ? *state : 0, .data_fd = -1},
	};
	uint16_t id = (uint16_t)(0xf000u | (p->next_id++ & 0xfffu));
	if (id == avoid_id)
		id ^= 1;
	struct frame f = {.h = {.msg_id = id, .cmd = VFIO_USER_DEVICE_FEATURE,
				.msg_size = (uint32_t)(sizeof(f.h) + (set ? sizeof(req) : sizeof(req.f))),
				.flags = VFIO_USER_F_TYPE_COMMAND},
			  .p = (uint8_t *)&req};
	struct frame rep;
	int r = frame_send(p->dv, &f);
	if (r == 0)
		r = wait_reply(p, id, VFIO_USER_DEVICE_FEATURE, &rep);
	if (r < 0)
		return r;
	if ((rep.h.flags & VFIO_USER_F_ERROR) || frame_len(&rep) < sizeof(req))
		r = -EIO;
	else if (!set)
		memcpy(state, rep.p + sizeof(req.f), sizeof(*state));
	frame_free(&rep);
	return r;
}

/* Forwards the client's command @f and waits for its reply (not sent). */
static int forward_call(struct proxy *p, const struct frame *f, struct frame *reply)
{
	int r = frame_send(p->dv, f);
	return r < 0 ? r : wait_reply(p, f->h.msg_id, f->h.cmd, reply);
}

static int reset_keeps_state(struct proxy *p, const struct frame *f)
{
	uint32_t before = FERRY_MIG_RUNNING;
	struct frame reply;
	int r = proxy_mig_state(p, f->h.msg_id, false, &before);
	if (r == -EIO)
		before = FERRY_MIG_RUNNING;
	else if (r < 0)
		return r;
	if ((r = forward_call(p, f, &reply)) < 0)
		return r;
	if (!(reply.h.flags & VFIO_USER_F_ERROR) && before != FERRY_MIG_RUNNING &&
	    before != FERRY_MIG_ERROR)
		proxy_mig_state(p, f->h.msg_id, true, &before); /* best effort */
	r = frame_send(p->cl, &reply);
	frame_free(&reply);
	return r;
}

/* True for a SET of MIG_DEVICE_STATE; *@target then points at its state. */
static bool is_set_state(const struct frame *f, uint8_t **target)
{
	struct vfio_user_device_feature h;
	if (f->h.cmd != VFIO_USER_DEVICE_FEATURE ||
	    frame_len(f) < sizeof(h) + sizeof(struct vfio_user_feature_mig_state))
		return false;
	memcpy(&h, f->p, sizeof(h));
	*target = f->p + sizeof(h);
	return h.flags == (VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE);
}

static int wrong_arc(struct proxy *p, struct frame *f, uint8_t *target)
{
	uint32_t to, now = FERRY_MIG_ERROR, stop = FERRY_MIG_STOP;
	struct frame reply;
	memcpy(&to, target, sizeof(to));
	int r = proxy_mig_state(p, f->h.msg_id, false, &now);
	if (r < 0 && r != -EIO)
		return r;
	bool rewrite = to == FERRY_MIG_RUNNING && now == FERRY_MIG_PRE_COPY;
	if (rewrite)
		memcpy(target, &stop, sizeof(stop));
	if ((r = forward_call(p, f, &reply)) < 0)
		return r;
	if (rewrite && frame_len(&reply) >= frame_len(f))
		memcpy(reply.p + (target - f->p), &to, sizeof(to));
	r = frame_send(p->cl, &reply);
	frame_free(&reply);
	return r;
}

static int from_client(struct proxy *p, struct frame *f)
{
	uint8_t *target;
	if (!is_reply(f) && p->bug == BUG_RESET_KEEPS_STATE && f->h.cmd == VFIO_USER_DEVICE_RESET)
		return reset_keeps_state(p, f);
	if (!is_reply(f) && p->bug == BUG_WRONG_ARC && is_set_state(f, &target))
		return wrong_arc(p, f, target);
	return frame_send(p->dv, f);
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

/* Pumps messages until either side goes away. */
static void serve(struct proxy *p)
{
	for (;;) {
		struct pollfd pf[2] = {{.fd = p->cl, .events = POLLIN}, {.fd = p->dv, .events = POLLIN}};
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		/* One message per poll: handling the client's may drain the
		 * device's socket, making the other revents stale. */
		int i = pf[0].revents ? 0 : 1;
		if (!pf[i].revents)
			continue;
		struct frame f;
		int r = frame_recv(pf[i].fd, &f);
		if (r == 0)
			r = i == 0 ? from_client(p, &f) : frame_send(p->cl, &f);
		frame_free(&f);
		if (r < 0)
			return;
	}
}

int broken_proxy_run(const char *path, const char *device_path, enum broken_bug bug)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	unlink(path);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return -errno;
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4) < 0) {
		int e = -errno;
		close(lfd);
		return e;
	}
	for (;;) {
		int cl = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (cl < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			int e = -errno;
			close(lfd);
			return e;
		}
		int dv = connect_to(device_path);
		if (dv < 0) {
			fprintf(stderr, "broken proxy: cannot reach the device at %s: %s\n",
				device_path, strerror(-dv));
			close(cl);
			continue;
		}
		struct proxy p = {.cl = cl, .dv = dv, .bug = bug};
		serve(&p);
		close(dv);
		close(cl);
	}
}
