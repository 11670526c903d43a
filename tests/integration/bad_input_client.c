/*
 * The client-side malformed-message catalogue: a misbehaving server, written
 * with raw socket I/O so it can send anything, answers libferry's client
 * badly, one way per case. For each case the client call must return the
 * expected error, without crashing, hanging or leaking: every case runs in
 * its own process (a crash or a sanitizer report fails that case only), with
 * an alarm (a hang fails it), and counts its open fds before and after.
 *
 * Output: one line per case: name, expected, got, PASS/FAIL. Exit status 0
 * only if every case passed. `bad_input_client NAME...` runs only those.
 *
 * "got" is the client call's negative errno, or, for the server's own
 * requests (DMA_READ/DMA_WRITE, unknown commands), minus the error_no the
 * client answered with.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ferry/client.h>
#include <ferry/client_migration.h>
#include <ferry/vfio_user.h>

/* A case that expects a timeout waits this long; every other case gets the
 * generous limit, so a slow sanitizer build under load cannot turn a wrong
 * reply into a timeout. */
#define CLIENT_TIMEOUT_MS 300
#define CLIENT_SLOW_TIMEOUT_MS 5000
#define CASE_ALARM_S 10
#define STD_CAPS "{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":1048576}}"

/* ---- the raw server ---- */

struct srv {
	int fd;
	int result;        /* what the server observed: -error_no of the client's reply */
	sem_t script_done; /* posted when the case's server script has finished */
	pthread_t thread;
	void (*script)(struct srv *s);
	bool closed;       /* the script closed the socket itself */
};

struct raw_msg {
	struct vfio_user_header h;
	uint8_t p[4096];
	uint32_t len;
};

static int read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

/* Reads one message; fds that came with it are closed. Returns 0 or -1 at
 * end of stream. Payload beyond 4096 bytes is read and dropped. */
static int raw_recv(struct srv *s, struct raw_msg *m)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = &m->h, .iov_len = sizeof(m->h)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			    .msg_controllen = sizeof(ctl.buf)};
	ssize_t n;
	do
		n = recvmsg(s->fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < cnt; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			close(fd);
		}
	}
	if ((size_t)n < sizeof(m->h) && read_full(s->fd, (char *)&m->h + n, sizeof(m->h) - (size_t)n))
		return -1;
	if (m->h.msg_size < sizeof(m->h))
		return -1;
	m->len = m->h.msg_size - (uint32_t)sizeof(m->h);
	uint32_t keep = m->len < sizeof(m->p) ? m->len : (uint32_t)sizeof(m->p);
	if (read_full(s->fd, m->p, keep))
		return -1;
	for (uint32_t left = m->len - keep; left; ) {
		uint8_t junk[4096];
		uint32_t k = left < sizeof(junk) ? left : (uint32_t)sizeof(junk);
		if (read_full(s->fd, junk, k))
			return -1;
		left -= k;
	}
	return 0;
}

/* Sends header @h (msg_size as given) with @len payload bytes and @fds. */
static void raw_send_hdr(struct srv *s, struct vfio_user_header h, const void *p, uint32_t len,
			 const int *fds, unsigned nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)p, len}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
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
	if (sendmsg(s->fd, &mh, MSG_NOSIGNAL) < 0)
		perror("bad_input_client: server sendmsg");
}

static void raw_send(struct srv *s, uint16_t id, uint16_t cmd, uint32_t flags, uint32_t err,
		     const void *p, uint32_t len, const int *fds, unsigned nfds)
{
	struct vfio_user_header h = {.msg_id = id, .cmd = cmd, .msg_size = 16 + len,
				     .flags = flags, .error_no = err};
	raw_send_hdr(s, h, p, len, fds, nfds);
}

static void reply(struct srv *s, const struct raw_msg *req, const void *p, uint32_t len)
{
	raw_send(s, req->h.msg_id, req->h.cmd, VFIO_USER_F_TYPE_REPLY, 0, p, len, NULL, 0);
}

static void reply_fds(struct srv *s, const struct raw_msg *req, const void *p, uint32_t len,
		      const int *fds, unsigned nfds)
{
	raw_send(s, req->h.msg_id, req->h.cmd, VFIO_USER_F_TYPE_REPLY, 0, p, len, fds, nfds);
}

static void reply_error(struct srv *s, const struct raw_msg *req, uint32_t err)
{
	raw_send(s, req->h.msg_id, req->h.cmd, VFIO_USER_F_TYPE_REPLY | VFIO_USER_F_ERROR, err,
		 NULL, 0, NULL, 0);
}

/* Receives the client's VERSION and answers with @json (NUL included
 * unless @no_nul), @major.@minor and @fds. */
static void version_reply(struct srv *s, uint16_t major, uint16_t minor, const char *json,
			  bool no_nul, const int *fds, unsigned nfds)
{
	struct raw_msg m;
	uint8_t buf[512];
	if (raw_recv(s, &m))
		return;
	struct vfio_user_version v = {.major = major, .minor = minor};
	uint32_t jl = (uint32_t)strlen(json) + (no_nul ? 0 : 1);
	memcpy(buf, &v, sizeof(v));
	memcpy(buf + sizeof(v), json, jl);
	reply_fds(s, &m, buf, (uint32_t)sizeof(v) + jl, fds, nfds);
}

static void handshake(struct srv *s)
{
	version_reply(s, 0, 2, STD_CAPS, false, NULL, 0);
}

/* Receives the next request, which the case expects to be @cmd. */
static int expect(struct srv *s, struct raw_msg *m, uint16_t cmd)
{
	if (raw_recv(s, m))
		return -1;
	if (m->h.cmd != cmd) {
		fprintf(stderr, "bad_input_client: server expected command %u, got %u\n", cmd,
			m->h.cmd);
		return -1;
	}
	return 0;
}

static void answer_device_info(struct srv *s)
{
	struct raw_msg m;
	struct vfio_user_device_info di = {.argsz = 16, .flags = VFIO_DEVICE_FLAGS_PCI,
					   .num_regions = 9, .num_irqs = 5};
	if (expect(s, &m, VFIO_USER_DEVICE_GET_INFO) == 0)
		reply(s, &m, &di, sizeof(di));
}

static void answer_dma_map(struct srv *s)
{
	struct raw_msg m;
	if (expect(s, &m, VFIO_USER_DMA_MAP) == 0)
		reply(s, &m, NULL, 0);
}

/* Sends a server command and records the client's answer in s->result. */
static void server_command(struct srv *s, uint16_t cmd, const void *p, uint32_t len,
			   const int *fds, unsigned nfds)
{
	struct raw_msg m;
	raw_send(s, 0x4242, cmd, VFIO_USER_F_TYPE_COMMAND, 0, p, len, fds, nfds);
	if (raw_recv(s, &m)) {
		s->result = -ECONNRESET;
		return;
	}
	if (m.h.msg_id != 0x4242 || (m.h.flags & VFIO_USER_F_TYPE_MASK) != VFIO_USER_F_TYPE_REPLY)
		s->result = -EPROTO;
	else
		s->result = m.h.flags & VFIO_USER_F_ERROR ? -(int)m.h.error_no : 0;
}

static void dma_request(struct srv *s, uint16_t cmd, uint64_t addr, uint64_t count,
			uint32_t data_len)
{
	static uint8_t data[4096];
	uint8_t buf[16 + sizeof(data)];
	struct vfio_user_dma_region_access a = {.addr = addr, .count = count};
	memcpy(buf, &a, sizeof(a));
	memcpy(buf + sizeof(a), data, data_len);
	server_command(s, cmd, buf, 16 + data_len, NULL, 0);
}

static void drain(struct srv *s)
{
	struct raw_msg m;
	while (raw_recv(s, &m) == 0) {
		if ((m.h.flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_TYPE_COMMAND &&
		    !(m.h.flags & VFIO_USER_F_NO_REPLY))
			reply_error(s, &m, EINVAL);
	}
}

static void *server_main(void *arg)
{
	struct srv *s = arg;
	s->script(s);
	sem_post(&s->script_done);
	if (!s->closed)
		drain(s);
	return NULL;
}

static void hang_up(struct srv *s)
{
	shutdown(s->fd, SHUT_RDWR);
	s->closed = true;
}

/* ---- server scripts: one misbehaviour each ---- */

static void s_info_short(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	if (expect(s, &m, VFIO_USER_DEVICE_GET_INFO) == 0)
		reply(s, &m, "12345678", 8);
}

static void s_wrong_id(struct srv *s)
{
	struct raw_msg m;
	struct vfio_user_device_info di = {.argsz = 16, .num_regions = 9, .num_irqs = 5};
	handshake(s);
	if (expect(s, &m, VFIO_USER_DEVICE_GET_INFO) == 0)
		raw_send(s, (uint16_t)(m.h.msg_id + 1), m.h.cmd, VFIO_USER_F_TYPE_REPLY, 0, &di,
			 sizeof(di), NULL, 0);
}

static void s_wrong_cmd(struct srv *s)
{
	struct raw_msg m;
	struct vfio_user_device_info di = {.argsz = 16, .num_regions = 9, .num_irqs = 5};
	handshake(s);
	if (expect(s, &m, VFIO_USER_DEVICE_GET_INFO) == 0)
		raw_send(s, m.h.msg_id, VFIO_USER_REGION_READ, VFIO_USER_F_TYPE_REPLY, 0, &di,
			 sizeof(di), NULL, 0);
}

static void s_unexpected_fd(struct srv *s)
{
	struct raw_msg m;
	struct vfio_user_device_info di = {.argsz = 16, .num_regions = 9, .num_irqs = 5};
	int e = eventfd(0, EFD_CLOEXEC);
	handshake(s);
	if (expect(s, &m, VFIO_USER_DEVICE_GET_INFO) == 0)
		reply_fds(s, &m, &di, sizeof(di), &e, 1);
	close(e);
}

static void s_bad_type(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	if (expect(s, &m, VFIO_USER_DEVICE_GET_INFO) == 0)
		raw_send(s, m.h.msg_id, m.h.cmd, 0x3, 0, NULL, 0, NULL, 0);
}

static void s_size_below_header(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	if (expect(s, &m, VFIO_USER_DEVICE_GET_INFO) == 0) {
		struct vfio_user_header h = {.msg_id = m.h.msg_id, .cmd = m.h.cmd, .msg_size = 8,
					     .flags = VFIO_USER_F_TYPE_REPLY};
		raw_send_hdr(s, h, NULL, 0, NULL, 0);
	}
}

static void s_size_huge(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	if (expect(s, &m, VFIO_USER_DEVICE_GET_INFO) == 0) {
		struct vfio_user_header h = {.msg_id = m.h.msg_id, .cmd = m.h.cmd,
					     .msg_size = 64u << 20, .flags = VFIO_USER_F_TYPE_REPLY};
		raw_send_hdr(s, h, NULL, 0, NULL, 0);
	}
}

static void s_errno_zero(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	if (expect(s, &m, VFIO_USER_DEVICE_GET_INFO) == 0)
		reply_error(s, &m, 0);
}

static void s_errno_huge(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	if (expect(s, &m, VFIO_USER_DEVICE_GET_INFO) == 0)
		reply_error(s, &m, 99999);
}

static void s_close_mid_reply(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	if (expect(s, &m, VFIO_USER_DEVICE_GET_INFO) == 0) {
		struct vfio_user_header h = {.msg_id = m.h.msg_id, .cmd = m.h.cmd, .msg_size = 116,
					     .flags = VFIO_USER_F_TYPE_REPLY};
		raw_send_hdr(s, h, "0123456789", 10, NULL, 0);
	}
	hang_up(s);
}

static void s_close_before_reply(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	expect(s, &m, VFIO_USER_DEVICE_GET_INFO);
	hang_up(s);
}

/* Region 0 info answers. @body is the reply payload after the fixed part. */
static void region_reply(struct srv *s, struct vfio_user_region_info ri, const void *body,
			 uint32_t body_len, const int *fds, unsigned nfds)
{
	struct raw_msg m;
	uint8_t buf[1024];
	answer_device_info(s);
	if (expect(s, &m, VFIO_USER_DEVICE_GET_REGION_INFO))
		return;
	memcpy(buf, &ri, sizeof(ri));
	if (body_len)
		memcpy(buf + sizeof(ri), body, body_len);
	reply_fds(s, &m, buf, (uint32_t)sizeof(ri) + body_len, fds, nfds);
}

static struct vfio_user_region_info region0(uint32_t flags, uint32_t argsz, uint32_t cap_offset)
{
	return (struct vfio_user_region_info){.argsz = argsz, .flags = flags, .index = 0,
					      .cap_offset = cap_offset, .size = 0x10000};
}

static void s_cap_offset_oob(struct srv *s)
{
	handshake(s);
	region_reply(s, region0(VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_CAPS, 48,
				0x1000), "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16, NULL, 0);
}

static void s_cap_offset_in_header(struct srv *s)
{
	handshake(s);
	region_reply(s, region0(VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_CAPS, 48, 16),
		     "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16, NULL, 0);
}

static void s_cap_loop(struct srv *s)
{
	/* 32 -> 48 -> 32 -> ...; unknown ids so only the walk itself checks */
	struct vfio_user_cap_header caps[2] = {{.id = 0x77, .next = 48}, {.id = 0x78, .next = 32}};
	uint8_t body[32] = {0};
	memcpy(body, &caps[0], 8);
	memcpy(body + 16, &caps[1], 8);
	handshake(s);
	region_reply(s, region0(VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_CAPS, 64, 32),
		     body, sizeof(body), NULL, 0);
}

static void s_cap_self_loop(struct srv *s)
{
	struct vfio_user_region_type t = {.header = {.id = VFIO_REGION_INFO_CAP_TYPE, .next = 32}};
	handshake(s);
	region_reply(s, region0(VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_CAPS, 48, 32),
		     &t, sizeof(t), NULL, 0);
}

static void s_sparse_overflow(struct srv *s)
{
	struct vfio_user_sparse_mmap sp = {
		.header = {.id = VFIO_REGION_INFO_CAP_SPARSE_MMAP, .version = 1},
		.nr_areas = 0xffffffffu,
	};
	uint8_t body[48] = {0};
	memcpy(body, &sp, sizeof(sp));
	handshake(s);
	region_reply(s, region0(VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_CAPS, 80, 32),
		     body, sizeof(body), NULL, 0);
}

static void s_sparse_area_outside(struct srv *s)
{
	struct vfio_user_sparse_mmap sp = {
		.header = {.id = VFIO_REGION_INFO_CAP_SPARSE_MMAP, .version = 1}, .nr_areas = 1,
	};
	struct vfio_user_sparse_mmap_area a = {.offset = 0xf000, .size = UINT64_MAX - 0x1000};
	uint8_t body[32];
	memcpy(body, &sp, sizeof(sp));
	memcpy(body + sizeof(sp), &a, sizeof(a));
	handshake(s);
	region_reply(s, region0(VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_CAPS, 64, 32),
		     body, sizeof(body), NULL, 0);
}

static void s_region_fd_no_mmap(struct srv *s)
{
	int e = eventfd(0, EFD_CLOEXEC);
	handshake(s);
	region_reply(s, region0(VFIO_REGION_INFO_FLAG_READ, 32, 0), NULL, 0, &e, 1);
	close(e);
}

static void s_region_two_fds(struct srv *s)
{
	int e[2] = {eventfd(0, EFD_CLOEXEC), eventfd(0, EFD_CLOEXEC)};
	handshake(s);
	region_reply(s, region0(VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_MMAP, 32, 0),
		     NULL, 0, e, 2);
	close(e[0]);
	close(e[1]);
}

static void s_region_wrong_index(struct srv *s)
{
	struct vfio_user_region_info ri = region0(VFIO_REGION_INFO_FLAG_READ, 32, 0);
	ri.index = 3;
	handshake(s);
	region_reply(s, ri, NULL, 0, NULL, 0);
}

static void s_region_argsz_grows(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	answer_device_info(s);
	while (expect(s, &m, VFIO_USER_DEVICE_GET_REGION_INFO) == 0) {
		struct vfio_user_region_info req;
		memcpy(&req, m.p, sizeof(req));
		struct vfio_user_region_info ri = region0(VFIO_REGION_INFO_FLAG_READ,
							  req.argsz + 8, 0);
		reply(s, &m, &ri, sizeof(ri));
	}
}

static void s_read_count_mismatch(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	if (expect(s, &m, VFIO_USER_REGION_READ) == 0) {
		struct vfio_user_region_access a;
		uint8_t buf[16 + 4] = {0};
		memcpy(&a, m.p, sizeof(a));
		a.count = 2;
		memcpy(buf, &a, sizeof(a));
		reply(s, &m, buf, 16 + 2);
	}
}

static void s_read_short_data(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	if (expect(s, &m, VFIO_USER_REGION_READ) == 0) {
		uint8_t buf[16 + 2] = {0};
		memcpy(buf, m.p, 16); /* count stays 4, 2 data bytes follow */
		reply(s, &m, buf, sizeof(buf));
	}
}

static void s_read_reply_other_offset(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	if (expect(s, &m, VFIO_USER_REGION_READ) == 0) {
		struct vfio_user_region_access a;
		uint8_t buf[16 + 4] = {0};
		memcpy(&a, m.p, sizeof(a));
		a.offset += 4;
		memcpy(buf, &a, sizeof(a));
		reply(s, &m, buf, sizeof(buf));
	}
}

static void s_version_major(struct srv *s)
{
	version_reply(s, 1, 0, STD_CAPS, false, NULL, 0);
}

static void s_version_minor(struct srv *s)
{
	version_reply(s, 0, 3, STD_CAPS, false, NULL, 0);
}

static void s_version_bad_json(struct srv *s)
{
	version_reply(s, 0, 2, "{\"capabilities\":{\"max_msg_fds\":", false, NULL, 0);
}

static void s_version_no_nul(struct srv *s)
{
	version_reply(s, 0, 2, STD_CAPS, true, NULL, 0);
}

static void s_version_bad_type(struct srv *s)
{
	version_reply(s, 0, 2, "{\"capabilities\":{\"max_msg_fds\":\"eight\"}}", false, NULL, 0);
}

static void s_version_short(struct srv *s)
{
	struct raw_msg m;
	if (raw_recv(s, &m) == 0)
		reply(s, &m, "\0", 1);
}

static void s_twin_index_oob(struct srv *s)
{
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	version_reply(s, 0, 2,
		      "{\"capabilities\":{\"twin_socket\":{\"supported\":true,\"fd_index\":3}}}",
		      false, &sv[1], 1);
	close(sv[0]);
	close(sv[1]);
}

static void s_twin_missing_fd(struct srv *s)
{
	version_reply(s, 0, 2,
		      "{\"capabilities\":{\"twin_socket\":{\"supported\":true,\"fd_index\":0}}}",
		      false, NULL, 0);
}

static void s_twin_unrequested(struct srv *s)
{
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	version_reply(s, 0, 2,
		      "{\"capabilities\":{\"twin_socket\":{\"supported\":true,\"fd_index\":0}}}",
		      false, &sv[1], 1);
	close(sv[0]);
	close(sv[1]);
}

static void s_version_extra_fds(struct srv *s)
{
	int sv[2], e = eventfd(0, EFD_CLOEXEC);
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	int fds[2] = {sv[1], e};
	version_reply(s, 0, 2,
		      "{\"capabilities\":{\"twin_socket\":{\"supported\":true,\"fd_index\":0}}}",
		      false, fds, 2);
	close(sv[0]);
	close(sv[1]);
	close(e);
}

static void s_dma_outside(struct srv *s)
{
	handshake(s);
	answer_dma_map(s);
	dma_request(s, VFIO_USER_DMA_READ, 0x200000, 8, 0);
}

static void s_dma_too_big(struct srv *s)
{
	handshake(s);
	answer_dma_map(s);
	dma_request(s, VFIO_USER_DMA_READ, 0x100000, 2u << 20, 0);
}

static void s_dma_wrap(struct srv *s)
{
	handshake(s);
	answer_dma_map(s);
	dma_request(s, VFIO_USER_DMA_READ, UINT64_MAX - 3, 8, 0);
}

static void s_dma_straddle(struct srv *s)
{
	handshake(s);
	answer_dma_map(s);
	dma_request(s, VFIO_USER_DMA_READ, 0x100000 + 4096 - 4, 8, 0);
}

static void s_dma_write_readonly(struct srv *s)
{
	handshake(s);
	answer_dma_map(s);
	dma_request(s, VFIO_USER_DMA_WRITE, 0x100000, 8, 8);
}

static void s_dma_write_len_mismatch(struct srv *s)
{
	handshake(s);
	answer_dma_map(s);
	dma_request(s, VFIO_USER_DMA_WRITE, 0x100000, 100, 50);
}

static void s_dma_short_request(struct srv *s)
{
	handshake(s);
	answer_dma_map(s);
	server_command(s, VFIO_USER_DMA_READ, "12345678", 8, NULL, 0);
}

static void s_unknown_command(struct srv *s)
{
	handshake(s);
	answer_dma_map(s);
	server_command(s, 42, "12345678", 8, NULL, 0);
}

static void s_command_with_fd(struct srv *s)
{
	struct vfio_user_dma_region_access a = {.addr = 0x100000, .count = 8};
	int e = eventfd(0, EFD_CLOEXEC);
	handshake(s);
	answer_dma_map(s);
	server_command(s, VFIO_USER_DMA_READ, &a, sizeof(a), &e, 1);
	close(e);
}

static void s_feature_wrong_index(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	if (expect(s, &m, VFIO_USER_DEVICE_FEATURE) == 0) {
		struct vfio_user_device_feature f = {.argsz = 16, .flags = VFIO_DEVICE_FEATURE_GET |
								     VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE};
		uint8_t buf[16] = {0};
		memcpy(buf, &f, sizeof(f));
		buf[8] = VFIO_MIGRATION_STOP_COPY;
		reply(s, &m, buf, sizeof(buf));
	}
}

static void s_feature_short_data(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	if (expect(s, &m, VFIO_USER_DEVICE_FEATURE) == 0) {
		struct vfio_user_device_feature f = {.argsz = 12, .flags = VFIO_DEVICE_FEATURE_GET |
								     VFIO_DEVICE_FEATURE_MIGRATION};
		uint8_t buf[12] = {0};
		memcpy(buf, &f, sizeof(f));
		reply(s, &m, buf, sizeof(buf));
	}
}

static void s_unmap_mismatch(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	answer_dma_map(s);
	if (expect(s, &m, VFIO_USER_DMA_UNMAP) == 0) {
		struct vfio_user_dma_unmap u;
		memcpy(&u, m.p, sizeof(u));
		u.addr += 4096;
		reply(s, &m, &u, sizeof(u));
	}
}

static void s_irq_wrong_index(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	if (expect(s, &m, VFIO_USER_DEVICE_GET_IRQ_INFO) == 0) {
		struct vfio_user_irq_info q = {.argsz = 16, .index = 4, .count = 1};
		reply(s, &m, &q, sizeof(q));
	}
}

static void s_mig_read_oversize(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	if (expect(s, &m, VFIO_USER_MIG_DATA_READ) == 0) {
		struct vfio_user_mig_data d = {.argsz = 8 + 64, .size = 64};
		uint8_t buf[8 + 64] = {0};
		memcpy(buf, &d, sizeof(d));
		reply(s, &m, buf, sizeof(buf));
	}
}

static void s_mig_read_size_lies(struct srv *s)
{
	struct raw_msg m;
	handshake(s);
	if (expect(s, &m, VFIO_USER_MIG_DATA_READ) == 0) {
		struct vfio_user_mig_data d = {.argsz = 8 + 16, .size = 16};
		uint8_t buf[8 + 4] = {0};
		memcpy(buf, &d, sizeof(d));
		reply(s, &m, buf, sizeof(buf));
	}
}

/* ---- client actions ---- */

static uint8_t guest[2 * 4096] __attribute__((aligned(4096)));

static int c_device_info(struct ferry_client *c, struct srv *s)
{
	(void)s;
	struct ferry_device_desc d;
	return ferry_client_device_info(c, &d);
}

static int c_region0(struct ferry_client *c, struct srv *s)
{
	(void)s;
	const struct ferry_region_desc *d;
	return ferry_client_region_info(c, 0, &d);
}

static int c_read4(struct ferry_client *c, struct srv *s)
{
	(void)s;
	uint32_t v;
	return ferry_client_read32(c, 0, 0, &v);
}

static int wait_script(struct srv *s)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	while (sem_timedwait(&s->script_done, &ts) < 0)
		if (errno != EINTR)
			return -ETIMEDOUT;
	return s->result;
}

/* Maps one page read-only and one more, then lets the server misbehave. */
static int c_dma_readonly(struct ferry_client *c, struct srv *s)
{
	int r = ferry_client_dma_map(c, 0x100000, 4096, VFIO_DMA_MAP_FLAG_READ, -1, 0, guest);
	return r < 0 ? r : wait_script(s);
}

static int c_unmap(struct ferry_client *c, struct srv *s)
{
	(void)s;
	int r = ferry_client_dma_map(c, 0x100000, 4096, VFIO_DMA_MAP_FLAG_READ, -1, 0, guest);
	return r < 0 ? r : ferry_client_dma_unmap(c, 0x100000, 4096);
}

static int c_mig_flags(struct ferry_client *c, struct srv *s)
{
	(void)s;
	uint64_t f;
	return ferry_client_mig_flags(c, &f);
}

static int c_irq_info(struct ferry_client *c, struct srv *s)
{
	(void)s;
	struct ferry_irq_desc d;
	return ferry_client_irq_info(c, 2, &d);
}

static int c_mig_read(struct ferry_client *c, struct srv *s)
{
	(void)s;
	uint8_t buf[16];
	size_t got;
	return ferry_client_mig_read(c, buf, sizeof(buf), &got);
}

/* ---- the catalogue ---- */

struct bad_case {
	const char *name;
	int expected;
	void (*script)(struct srv *s);
	int (*client)(struct ferry_client *c, struct srv *s); /* NULL: connecting is the test */
	bool no_twin; /* the client does not offer a twin socket */
};

static const struct bad_case cases[] = {
	{"reply-too-short", -EPROTO, s_info_short, c_device_info},
	{"reply-wrong-msg-id", -ETIMEDOUT, s_wrong_id, c_device_info},
	{"reply-wrong-cmd", -EPROTO, s_wrong_cmd, c_device_info},
	{"reply-unexpected-fd", -EPROTO, s_unexpected_fd, c_device_info},
	{"reply-bad-type", -EPROTO, s_bad_type, c_device_info},
	{"reply-msg-size-below-header", -EPROTO, s_size_below_header, c_device_info},
	{"reply-msg-size-huge", -EPROTO, s_size_huge, c_device_info},
	{"error-reply-errno-0", -EINVAL, s_errno_zero, c_device_info},
	{"error-reply-errno-99999", -EINVAL, s_errno_huge, c_device_info},
	{"close-mid-reply", -ECONNRESET, s_close_mid_reply, c_device_info},
	{"close-before-reply", -ECONNRESET, s_close_before_reply, c_device_info},
	{"region-cap-offset-out-of-bounds", -EPROTO, s_cap_offset_oob, c_region0},
	{"region-cap-offset-in-fixed-part", -EPROTO, s_cap_offset_in_header, c_region0},
	{"region-cap-chain-loop", -EPROTO, s_cap_loop, c_region0},
	{"region-cap-chain-self-loop", -EPROTO, s_cap_self_loop, c_region0},
	{"region-sparse-nr-areas-overflow", -EPROTO, s_sparse_overflow, c_region0},
	{"region-sparse-area-outside-region", -EPROTO, s_sparse_area_outside, c_region0},
	{"region-fd-without-mmap", -EPROTO, s_region_fd_no_mmap, c_region0},
	{"region-two-fds", -EPROTO, s_region_two_fds, c_region0},
	{"region-info-wrong-index", -EPROTO, s_region_wrong_index, c_region0},
	{"region-argsz-grows-forever", -EPROTO, s_region_argsz_grows, c_region0},
	{"region-read-count-mismatch", -EPROTO, s_read_count_mismatch, c_read4},
	{"region-read-short-data", -EPROTO, s_read_short_data, c_read4},
	{"region-read-other-offset", -EPROTO, s_read_reply_other_offset, c_read4},
	{"version-other-major", -EPROTO, s_version_major, NULL},
	{"version-higher-minor", -EPROTO, s_version_minor, NULL},
	{"version-bad-json", -EPROTO, s_version_bad_json, NULL},
	{"version-json-without-nul", -EPROTO, s_version_no_nul, NULL},
	{"version-cap-wrong-type", -EPROTO, s_version_bad_type, NULL},
	{"version-reply-too-short", -EPROTO, s_version_short, NULL},
	{"version-twin-fd-index-out-of-range", -EPROTO, s_twin_index_oob, NULL},
	{"version-twin-without-fd", -EPROTO, s_twin_missing_fd, NULL},
	{"version-twin-not-offered", -EPROTO, s_twin_unrequested, NULL, true},
	{"version-extra-fds", -EPROTO, s_version_extra_fds, NULL},
	{"dma-read-outside-map", -EFAULT, s_dma_outside, c_dma_readonly},
	{"dma-read-count-over-max", -E2BIG, s_dma_too_big, c_dma_readonly},
	{"dma-read-addr-count-wraps", -EFAULT, s_dma_wrap, c_dma_readonly},
	{"dma-read-straddles-map-end", -EFAULT, s_dma_straddle, c_dma_readonly},
	{"dma-write-to-read-only", -EPERM, s_dma_write_readonly, c_dma_readonly},
	{"dma-write-count-not-payload", -EINVAL, s_dma_write_len_mismatch, c_dma_readonly},
	{"dma-request-too-short", -EINVAL, s_dma_short_request, c_dma_readonly},
	{"server-command-unknown", -ENOSYS, s_unknown_command, c_dma_readonly},
	{"server-command-with-fd", -EINVAL, s_command_with_fd, c_dma_readonly},
	{"feature-reply-other-feature", -EPROTO, s_feature_wrong_index, c_mig_flags},
	{"feature-reply-short-data", -EPROTO, s_feature_short_data, c_mig_flags},
	{"dma-unmap-reply-mismatch", -EPROTO, s_unmap_mismatch, c_unmap},
	{"irq-info-wrong-index", -EPROTO, s_irq_wrong_index, c_irq_info},
	{"mig-read-more-than-asked", -EPROTO, s_mig_read_oversize, c_mig_read},
	{"mig-read-size-beyond-payload", -EPROTO, s_mig_read_size_lies, c_mig_read},
};

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d)); )
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own fd */
}

struct case_result {
	int got;
	int leaked_fds;
};

/* Runs in the child process. */
static int run_case(const struct bad_case *bc, struct case_result *res)
{
	struct srv s = {0};
	struct ferry_client *c = NULL;
	int sv[2];

	int before = count_fds();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	s.fd = sv[0];
	s.script = bc->script;
	sem_init(&s.script_done, 0, 0);
	pthread_create(&s.thread, NULL, server_main, &s);

	struct ferry_client_options o = {.name = bc->name,
					 .timeout_ms = bc->expected == -ETIMEDOUT ? CLIENT_TIMEOUT_MS
										: CLIENT_SLOW_TIMEOUT_MS,
					 .no_twin_socket = bc->no_twin};
	res->got = ferry_client_connect_fd(sv[1], &o, &c);
	if (res->got == 0 && bc->client)
		res->got = bc->client(c, &s);
	ferry_client_close(c);
	/* the client is gone: the server sees end of stream and stops */
	shutdown(sv[0], SHUT_RDWR);
	pthread_join(s.thread, NULL);
	close(sv[0]);
	sem_destroy(&s.script_done);
	res->leaked_fds = count_fds() - before;
	return 0;
}

static const char *errname(int e)
{
	static char buf[32];
	if (e == 0)
		return "0";
	const char *n = strerrorname_np(e < 0 ? -e : e);
	snprintf(buf, sizeof(buf), "%s%s", e < 0 ? "-" : "", n ? n : "?");
	return buf;
}

static bool selected(int argc, char **argv, const char *name)
{
	if (argc < 2)
		return true;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], name))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	unsigned run = 0, failed = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("%-38s %-12s %-24s %s\n", "case", "expected", "got", "result");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_case *bc = &cases[i];
		if (!selected(argc, argv, bc->name))
			continue;
		int p[2];
		if (pipe2(p, O_CLOEXEC) < 0)
			return 1;
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			struct case_result res = {0};
			close(p[0]);
			alarm(CASE_ALARM_S);
			int r = run_case(bc, &res);
			if (write(p[1], &res, sizeof(res)) != (ssize_t)sizeof(res) || r < 0)
				exit(3);
			close(p[1]);
			exit(res.got == bc->expected && res.leaked_fds == 0 ? 0 : 1);
		}
		close(p[1]);
		struct case_result res = {.got = 1};
		bool have = read(p[0], &res, sizeof(res)) == (ssize_t)sizeof(res);
		close(p[0]);
		int status = 0;
		waitpid(pid, &status, 0);

		char got[64];
		if (WIFSIGNALED(status))
			snprintf(got, sizeof(got), "killed by signal %d%s", WTERMSIG(status),
				 WTERMSIG(status) == SIGALRM ? " (hang)" : "");
		else if (!have)
			snprintf(got, sizeof(got), "no result (exit %d)", WEXITSTATUS(status));
		else if (res.leaked_fds)
			snprintf(got, sizeof(got), "%s, %d fds leaked", errname(res.got),
				 res.leaked_fds);
		else if (WEXITSTATUS(status) && res.got == bc->expected)
			snprintf(got, sizeof(got), "%s, exit %d (sanitizer?)", errname(res.got),
				 WEXITSTATUS(status));
		else
			snprintf(got, sizeof(got), "%s", errname(res.got));
		bool pass = WIFEXITED(status) && WEXITSTATUS(status) == 0;
		printf("%-38s %-12s %-24s %s\n", bc->name, errname(bc->expected), got,
		       pass ? "PASS" : "FAIL");
		run++;
		failed += !pass;
	}
	printf("%u cases, %u failed\n", run, failed);
	return failed || !run ? 1 : 0;
}
