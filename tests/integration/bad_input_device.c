/*
 * The malformed-message catalogue: a device served on a library thread
 * behind a real UNIX socket, and a raw client (plain sockets, no ferry
 * client code) that sends one bad message per case and checks the exact
 * outcome: an error reply with the expected errno, a clean disconnect, or a
 * message that is ignored. After every case a fresh client must still get a
 * DEVICE_GET_INFO answered, so no case may wedge or kill the device.
 *
 * Prints one line per case (name, expected, got, PASS/FAIL); exits 1 if
 * any case fails. Device log lines go to stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <ferry/device.h>
#include <ferry/log.h>
#include <ferry/vfio_user.h>

#define TIMEOUT_MS 3000
#define QUIET_MS 300 /* how long "no reply" is waited for */
#define PAGE 4096u

static char sock_path[108];
static int guest_fd = -1;
static uint16_t next_id = 1;

/* ---- the device ---- */

static uint8_t bar0[4096];

static int model_access(void *opaque, unsigned region, uint64_t off, void *buf, uint32_t count,
			bool is_write)
{
	(void)opaque;
	if (region != 0) {
		if (!is_write)
			memset(buf, 0, count);
		return 0;
	}
	if (is_write)
		memcpy(bar0 + off, buf, count);
	else
		memcpy(buf, bar0 + off, count);
	return 0;
}

static const struct ferry_device_ops model_ops = {
	.size = sizeof(struct ferry_device_ops),
	.region_access = model_access,
};

static struct ferry_device *start_device(const char *path, int bar2_fd)
{
	static const struct ferry_mmap_area areas[] = {{0, 0x4000}, {0x8000, 0x8000}};
	struct ferry_device_info info = {
		.name = "bad-input",
		.id = {.vendor_id = 0x1af4, .device_id = 0x10f1, .class_code = 0xff0000},
		.irq_count = {1, 4, 8, 1, 1},
		.msix_bar = 4,
		.msix_table_offset = 0,
		.msix_pba_offset = 0x1000,
		.pcie = true,
		.ops = &model_ops,
	};
	struct ferry_device *dev;

	for (unsigned i = 0; i < FERRY_PCI_NUM_REGIONS; i++)
		info.regions[i].mmap_fd = -1;
	info.regions[0] = (struct ferry_region){.size = 4096, .mmap_fd = -1,
		.flags = FERRY_REGION_READ | FERRY_REGION_WRITE};
	info.regions[2] = (struct ferry_region){.size = 0x10000, .mmap_fd = bar2_fd,
		.flags = FERRY_REGION_READ | FERRY_REGION_WRITE | FERRY_BAR_MEM64,
		.areas = areas, .nr_areas = 2};
	info.regions[4] = (struct ferry_region){.size = 0x4000, .mmap_fd = -1,
		.flags = FERRY_REGION_READ | FERRY_REGION_WRITE};
	if (ferry_device_create(&info, &dev) < 0 || ferry_device_listen(dev, path) < 0 ||
	    ferry_device_start(dev) < 0) {
		fprintf(stderr, "cannot start the device\n");
		exit(2);
	}
	return dev;
}

/* ---- a raw client ---- */

static int cl_connect(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect");
		exit(2);
	}
	return fd;
}

static int send_raw(int fd, const void *buf, size_t len, const int *fds, unsigned nfds)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 128)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

	if (nfds) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	return sendmsg(fd, &mh, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

/* Sends header + payload (msg_size = 16 + len unless @size_override). */
static uint16_t send_msg(int fd, uint16_t cmd, uint32_t flags, const void *payload, size_t len,
			 const int *fds, unsigned nfds)
{
	uint8_t *buf = malloc(16 + len);
	struct vfio_user_header h = {.msg_id = next_id++, .cmd = cmd,
				     .msg_size = (uint32_t)(16 + len), .flags = flags};
	memcpy(buf, &h, 16);
	if (len)
		memcpy(buf + 16, payload, len);
	send_raw(fd, buf, 16 + len, fds, nfds);
	free(buf);
	return h.msg_id;
}

static uint16_t send_cmd(int fd, uint16_t cmd, const void *payload, size_t len)
{
	return send_msg(fd, cmd, 0, payload, len, NULL, 0);
}

enum obs_kind { OBS_OK, OBS_ERR, OBS_CLOSED, OBS_NONE, OBS_BAD };

struct obs {
	enum obs_kind kind;
	int err;          /* OBS_ERR */
	uint16_t id, cmd; /* of the reply */
	uint32_t len;
	uint8_t *payload;  /* OBS_OK, malloc'd */
};

static void obs_free(struct obs *o)
{
	free(o->payload);
	o->payload = NULL;
}

static int read_full(int fd, void *buf, size_t len, int timeout_ms, int *fds, unsigned *nfds)
{
	size_t got = 0;
	while (got < len) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, timeout_ms) != 1)
			return -ETIMEDOUT;
		union {
			char b[CMSG_SPACE(sizeof(int) * 16)];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = {.iov_base = (uint8_t *)buf + got, .iov_len = len - got};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
				    .msg_controllen = sizeof(ctl.b)};
		ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -ECONNRESET;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			unsigned cnt = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (unsigned i = 0; i < cnt; i++) {
				int f;
				memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(f));
				if (fds && *nfds < 16)
					fds[(*nfds)++] = f;
				else
					close(f);
			}
		}
		got += (size_t)n;
	}
	return 0;
}

/* The next message from the device, within @timeout_ms. */
static struct obs recv_obs(int fd, int timeout_ms)
{
	struct obs o = {.kind = OBS_NONE};
	struct vfio_user_header h;
	int fds[16];
	unsigned nfds = 0;
	int r = read_full(fd, &h, sizeof(h), timeout_ms, fds, &nfds);

	if (r == -ETIMEDOUT)
		return o;
	if (r < 0) {
		o.kind = OBS_CLOSED;
		return o;
	}
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	if (h.msg_size < 16 || (h.flags & VFIO_USER_F_TYPE_MASK) != VFIO_USER_F_TYPE_REPLY) {
		o.kind = OBS_BAD;
		return o;
	}
	o.id = h.msg_id;
	o.cmd = h.cmd;
	o.len = h.msg_size - 16;
	if (o.len) {
		o.payload = malloc(o.len);
		if (read_full(fd, o.payload, o.len, TIMEOUT_MS, NULL, NULL) < 0) {
			obs_free(&o);
			o.kind = OBS_CLOSED;
			return o;
		}
	}
	if (h.flags & VFIO_USER_F_ERROR) {
		o.kind = OBS_ERR;
		o.err = (int)h.error_no;
		obs_free(&o);
	} else {
		o.kind = OBS_OK;
	}
	return o;
}

static struct obs call(int fd, uint16_t cmd, const void *payload, size_t len, const int *fds,
		       unsigned nfds)
{
	uint16_t id = send_msg(fd, cmd, 0, payload, len, fds, nfds);
	struct obs o = recv_obs(fd, TIMEOUT_MS);
	if ((o.kind == OBS_OK || o.kind == OBS_ERR) && o.id != id)
		o.kind = OBS_BAD;
	return o;
}

static int negotiate(int fd)
{
	static const char json[] = "{\"capabilities\":{\"max_msg_fds\":8}}";
	uint8_t buf[4 + sizeof(json)];
	struct vfio_user_version v = {.major = 0, .minor = 2};
	memcpy(buf, &v, 4);
	memcpy(buf + 4, json, sizeof(json));
	struct obs o = call(fd, VFIO_USER_VERSION, buf, sizeof(buf), NULL, 0);
	obs_free(&o);
	return o.kind == OBS_OK ? 0 : -1;
}

static bool get_info_ok(int fd)
{
	struct vfio_user_device_info in = {.argsz = sizeof(in)};
	struct obs o = call(fd, VFIO_USER_DEVICE_GET_INFO, &in, sizeof(in), NULL, 0);
	bool ok = o.kind == OBS_OK && o.len == 16;
	obs_free(&o);
	return ok;
}

/* ---- expectations ---- */

enum expect_kind {
	EXP_ERR,       /* error reply with errno, connection kept */
	EXP_ERR_CLOSE, /* error reply with errno, then the device closes */
	EXP_CLOSE,     /* the device closes (error replies before it allowed) */
	EXP_IGNORED,   /* no reply at all; the connection keeps working */
	EXP_OK,        /* success reply */
};

struct expect {
	enum expect_kind kind;
	int err;
};

#define ERR(e) ((struct expect){EXP_ERR, (e)})
#define ERR_CLOSE(e) ((struct expect){EXP_ERR_CLOSE, (e)})
#define CLOSE ((struct expect){EXP_CLOSE, 0})
#define IGNORED ((struct expect){EXP_IGNORED, 0})
#define OK ((struct expect){EXP_OK, 0})

static void describe_expect(struct expect e, char *buf, size_t len)
{
	switch (e.kind) {
	case EXP_ERR:
		snprintf(buf, len, "error %s", strerrorname_np(e.err));
		break;
	case EXP_ERR_CLOSE:
		snprintf(buf, len, "error %s+close", strerrorname_np(e.err));
		break;
	case EXP_CLOSE:
		snprintf(buf, len, "close");
		break;
	case EXP_IGNORED:
		snprintf(buf, len, "no reply");
		break;
	case EXP_OK:
		snprintf(buf, len, "ok");
		break;
	}
}

/* What the device did after the bad message, judged against @e. Returns
 * whether it matched; @got describes it. */
static bool judge(int fd, uint16_t id, struct expect e, char *got, size_t len)
{
	struct obs o = recv_obs(fd, e.kind == EXP_IGNORED ? QUIET_MS : TIMEOUT_MS);
	bool ok = false;

	if ((o.kind == OBS_OK || o.kind == OBS_ERR) && o.id != id && e.kind != EXP_CLOSE) {
		snprintf(got, len, "reply to id %u, not %u", o.id, id);
		obs_free(&o);
		return false;
	}
	switch (o.kind) {
	case OBS_OK:
		snprintf(got, len, "ok");
		ok = e.kind == EXP_OK;
		break;
	case OBS_ERR:
		snprintf(got, len, "error %s", strerrorname_np(o.err) ? strerrorname_np(o.err) : "?");
		if (e.kind == EXP_ERR)
			ok = o.err == e.err;
		if (e.kind == EXP_ERR_CLOSE || e.kind == EXP_CLOSE) {
			struct obs o2 = recv_obs(fd, TIMEOUT_MS);
			bool closed = o2.kind == OBS_CLOSED;
			obs_free(&o2);
			snprintf(got + strlen(got), len - strlen(got), "%s", closed ? "+close" : "+open");
			ok = closed && (e.kind == EXP_CLOSE || o.err == e.err);
		}
		break;
	case OBS_CLOSED:
		snprintf(got, len, "close");
		ok = e.kind == EXP_CLOSE;
		break;
	case OBS_NONE:
		snprintf(got, len, "no reply");
		ok = e.kind == EXP_IGNORED && get_info_ok(fd);
		if (e.kind == EXP_IGNORED && !ok)
			snprintf(got, len, "no reply, then dead");
		break;
	case OBS_BAD:
		snprintf(got, len, "malformed reply");
		break;
	}
	if (ok && e.kind == EXP_ERR && !get_info_ok(fd)) {
		snprintf(got + strlen(got), len - strlen(got), ", then dead");
		ok = false;
	}
	obs_free(&o);
	return ok;
}

/* ---- the cases ---- */

/* A case sends its bad message (after any good setup) on a connection that
 * was negotiated unless the case says otherwise, and returns the id of the
 * message the expectation is about (0 if none is expected to be answered).
 * Returning -1 means the setup itself failed. */
struct bad_case {
	const char *name;
	bool raw; /* no VERSION first */
	struct expect expect;
	int (*run)(int fd, const struct bad_case *c);
	/* for the generic one-message cases */
	uint16_t cmd;
	uint32_t flags;
	const void *payload;
	size_t len;
	unsigned nfds; /* eventfds to attach */
};

static int run_generic(int fd, const struct bad_case *c)
{
	int fds[128];
	for (unsigned i = 0; i < c->nfds; i++)
		fds[i] = eventfd(0, EFD_CLOEXEC);
	int id = send_msg(fd, c->cmd, c->flags, c->payload, c->len, fds, c->nfds);
	for (unsigned i = 0; i < c->nfds; i++)
		close(fds[i]);
	return id;
}

static int run_bytes(int fd, const struct bad_case *c)
{
	send_raw(fd, c->payload, c->len, NULL, 0);
	if (c->flags) /* then close our sending side */
		shutdown(fd, SHUT_WR);
	return 0;
}

static int do_map(int fd, uint64_t iova, uint64_t size, uint64_t off)
{
	struct vfio_user_dma_map m = {.argsz = 32, .flags = 3, .offset = off, .addr = iova,
				      .size = size};
	struct obs o = call(fd, VFIO_USER_DMA_MAP, &m, sizeof(m), &guest_fd, 1);
	obs_free(&o);
	return o.kind == OBS_OK ? 0 : -1;
}

static int run_map_overlap(int fd, const struct bad_case *c)
{
	(void)c;
	if (do_map(fd, 0x100000, 4 * PAGE, 0) < 0)
		return -1;
	struct vfio_user_dma_map m = {.argsz = 32, .flags = 3, .offset = 0, .addr = 0x102000,
				      .size = 4 * PAGE};
	return send_msg(fd, VFIO_USER_DMA_MAP, 0, &m, sizeof(m), &guest_fd, 1);
}

static int run_unmap_partial(int fd, const struct bad_case *c)
{
	(void)c;
	if (do_map(fd, 0x100000, 4 * PAGE, 0) < 0)
		return -1;
	struct vfio_user_dma_unmap u = {.argsz = 24, .addr = 0x100000, .size = PAGE};
	return send_cmd(fd, VFIO_USER_DMA_UNMAP, &u, sizeof(u));
}

static int run_set_irqs_pipe(int fd, const struct bad_case *c)
{
	(void)c;
	int p[2];
	if (pipe(p) < 0)
		return -1;
	struct vfio_user_irq_set s = {.argsz = 20, .flags = 0x24, .index = 2, .start = 0,
				      .count = 1};
	int id = send_msg(fd, VFIO_USER_DEVICE_SET_IRQS, 0, &s, sizeof(s), p, 1);
	close(p[0]);
	close(p[1]);
	return id;
}

static int feature(int fd, uint32_t flags, uint32_t argsz, const void *data, size_t len)
{
	uint8_t buf[8 + 8192];
	struct vfio_user_device_feature f = {.argsz = argsz, .flags = flags};
	memcpy(buf, &f, 8);
	memcpy(buf + 8, data, len);
	return send_cmd(fd, VFIO_USER_DEVICE_FEATURE, buf, 8 + len);
}

#define F_SET VFIO_DEVICE_FEATURE_SET
#define F_GET VFIO_DEVICE_FEATURE_GET
#define LOG_START (F_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START)
#define LOG_REPORT (F_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT)

static int log_start(int fd, uint64_t page_size, uint32_t n, const uint64_t *pairs, size_t len)
{
	uint8_t data[16 + 300 * 16] = {0};
	struct vfio_user_dma_logging_control c = {.page_size = page_size, .num_ranges = n};
	memcpy(data, &c, sizeof(c));
	if (pairs)
		memcpy(data + 16, pairs, len - 16);
	return feature(fd, LOG_START, 8 + (uint32_t)len, data, len);
}

static int run_log_page0(int fd, const struct bad_case *c)
{
	(void)c;
	return log_start(fd, 0, 0, NULL, 16);
}

static int run_log_page3000(int fd, const struct bad_case *c)
{
	(void)c;
	return log_start(fd, 3000, 0, NULL, 16);
}

static int run_log_too_many(int fd, const struct bad_case *c)
{
	(void)c;
	return log_start(fd, PAGE, 257, NULL, 16 + 257 * 16);
}

static int run_log_overlap(int fd, const struct bad_case *c)
{
	(void)c;
	uint64_t r[4] = {0x100000, 4 * PAGE, 0x102000, 4 * PAGE};
	return log_start(fd, PAGE, 2, r, 16 + 32);
}

static int run_log_unaligned(int fd, const struct bad_case *c)
{
	(void)c;
	uint64_t r[2] = {0x100800, 4 * PAGE};
	return log_start(fd, PAGE, 1, r, 16 + 16);
}

static int run_log_truncated(int fd, const struct bad_case *c)
{
	(void)c;
	uint64_t r[2] = {0x100000, 4 * PAGE};
	return log_start(fd, PAGE, 2, r, 16 + 16); /* 2 ranges announced, 1 sent */
}

static int run_log_wrap(int fd, const struct bad_case *c)
{
	(void)c;
	uint64_t r[2] = {UINT64_MAX - PAGE + 1, PAGE};
	return log_start(fd, PAGE, 1, r, 16 + 16);
}

static int run_report_small(int fd, const struct bad_case *c)
{
	(void)c;
	if (do_map(fd, 0x100000, 128 * PAGE, 0) < 0)
		return -1;
	int id = log_start(fd, PAGE, 0, NULL, 16);
	struct obs o = recv_obs(fd, TIMEOUT_MS);
	obs_free(&o);
	if (o.kind != OBS_OK || o.id != id)
		return -1;
	struct vfio_user_dma_logging_report r = {.iova = 0x100000, .length = 128 * PAGE,
						 .page_size = PAGE};
	return feature(fd, LOG_REPORT, 8 + 24 + 8 /* bitmap needs 16 */, &r, sizeof(r));
}

static int run_report_not_started(int fd, const struct bad_case *c)
{
	(void)c;
	struct vfio_user_dma_logging_report r = {.iova = 0x100000, .length = 128 * PAGE,
						 .page_size = PAGE};
	return feature(fd, LOG_REPORT, 4096, &r, sizeof(r));
}

static int run_report_bad_page(int fd, const struct bad_case *c)
{
	(void)c;
	struct vfio_user_dma_logging_report r = {.iova = 0x100000, .length = 128 * PAGE,
						 .page_size = 3 * PAGE};
	return feature(fd, LOG_REPORT, 4096, &r, sizeof(r));
}

static int run_no_reply_error(int fd, const struct bad_case *c)
{
	(void)c;
	struct vfio_user_device_info in = {.argsz = 1};
	send_msg(fd, VFIO_USER_DEVICE_GET_INFO, VFIO_USER_F_NO_REPLY, &in, sizeof(in), NULL, 0);
	return 0;
}

static int run_reply_as_command(int fd, const struct bad_case *c)
{
	(void)c;
	struct vfio_user_device_info in = {.argsz = 16};
	send_msg(fd, VFIO_USER_DEVICE_GET_INFO, VFIO_USER_F_TYPE_REPLY, &in, sizeof(in), NULL, 0);
	return 0;
}

/* payloads of the generic cases */
static const struct vfio_user_header hdr_small = {.msg_id = 1, .cmd = 4, .msg_size = 8};
static const struct vfio_user_header hdr_long = {.msg_id = 1, .cmd = 4, .msg_size = 16 + 100};
static const struct vfio_user_header hdr_huge = {.msg_id = 1, .cmd = 4, .msg_size = 0xfffffff0u};
static const struct vfio_user_header hdr_over = {.msg_id = 1, .cmd = 10,
						 .msg_size = 16 + (1u << 20) + 4096 + 1};
static const struct vfio_user_header hdr_type2 = {.msg_id = 1, .cmd = 4, .msg_size = 16 + 16,
						  .flags = 2};
static const struct vfio_user_device_info info16 = {.argsz = 16};
static const struct vfio_user_device_info info_small = {.argsz = 15};

#define VER(json) "\0\0\2\0" json
static const char ver_good[] = VER("{\"capabilities\":{}}");
static const char ver_badjson[] = VER("{\"capabilities\":{");
static const char ver_types[] = VER("{\"capabilities\":{\"max_msg_fds\":\"many\"}}");
static const char ver_major[] = "\1\0\2\0{}";

static const struct vfio_user_region_access rr_past = {.offset = 4094, .region = 0, .count = 4};
static const struct vfio_user_region_access rr_at_end = {.offset = 4096, .region = 0, .count = 1};
static const struct vfio_user_region_access rr_wrap = {.offset = UINT64_MAX - 1, .region = 0,
						       .count = 4};
static const struct vfio_user_region_access rr_big = {.offset = 0, .region = 7,
						      .count = (1u << 20) + 1};
static const struct vfio_user_region_access rr_idx9 = {.offset = 0, .region = 9, .count = 4};
static const struct vfio_user_region_access rr_idxmax = {.offset = 0, .region = UINT32_MAX,
							 .count = 4};
static const struct {
	struct vfio_user_region_access a;
	uint8_t data[4];
} __attribute__((packed)) rw_short = {{.offset = 0, .region = 0, .count = 8}, {1, 2, 3, 4}},
			  rw_long = {{.offset = 0, .region = 0, .count = 2}, {1, 2, 3, 4}},
			  rr_trailing = {{.offset = 0, .region = 0, .count = 4}, {1, 2, 3, 4}},
			  rw_past = {{.offset = 4094, .region = 0, .count = 4}, {1, 2, 3, 4}};

static const struct vfio_user_region_info ri_small = {.argsz = 31, .index = 0};
static const struct vfio_user_region_info ri_idx = {.argsz = 32, .index = 9};

static const struct vfio_user_dma_map map_wrap = {.argsz = 32, .flags = 3,
						  .addr = UINT64_MAX - PAGE + 1, .size = 2 * PAGE};
static const struct vfio_user_dma_map map_misaligned = {.argsz = 32, .flags = 3,
							.addr = 0x200800, .size = PAGE};
static const struct vfio_user_dma_map map_flags = {.argsz = 32, .flags = 3 | 0x100,
						   .addr = 0x200000, .size = PAGE};
static const struct vfio_user_dma_map map_ok = {.argsz = 32, .flags = 3, .addr = 0x200000,
						.size = PAGE};
static const struct vfio_user_dma_map map_size0 = {.argsz = 32, .flags = 3, .addr = 0x200000};
static const struct vfio_user_dma_map map_argsz = {.argsz = 16, .flags = 3, .addr = 0x200000,
						   .size = PAGE};
static const struct vfio_user_dma_unmap unmap_none = {.argsz = 24, .addr = 0x300000, .size = PAGE};
static const struct vfio_user_dma_unmap unmap_all_addr = {.argsz = 24, .flags = 2,
							  .addr = 0x300000};
static const struct vfio_user_dma_unmap unmap_bitmap = {.argsz = 24, .flags = 1,
							.addr = 0x300000, .size = PAGE};

#define IRQ(f, i, s, n) ((struct vfio_user_irq_set){.argsz = 20, .flags = (f), .index = (i), \
						   .start = (s), .count = (n)})
static const struct vfio_user_irq_set irq_idx = IRQ(0x21, 5, 0, 1);
static const struct vfio_user_irq_set irq_start = IRQ(0x21, 2, 8, 1);
static const struct vfio_user_irq_set irq_wrap = IRQ(0x21, 2, UINT32_MAX, 2);
static const struct vfio_user_irq_set irq_two_data = IRQ(0x23, 2, 0, 1);
static const struct vfio_user_irq_set irq_no_action = IRQ(0x01, 2, 0, 1);
static const struct vfio_user_irq_set irq_unknown = IRQ(0x121, 2, 0, 1);
static const struct vfio_user_irq_set irq_efd2 = IRQ(0x24, 2, 0, 2);
static const struct vfio_user_irq_set irq_none_fd = IRQ(0x21, 2, 0, 1);
static const struct vfio_user_irq_set irq_count0_mask = IRQ(0x09, 2, 0, 0);
static const struct vfio_user_irq_set irq_err_unmask = IRQ(0x11, 3, 0, 1);
static const struct vfio_user_irq_set irq_efd_mask = IRQ(0x0c, 2, 0, 1);
static const struct {
	struct vfio_user_irq_set s;
	uint8_t b[3];
} __attribute__((packed)) irq_bool_len = {{.argsz = 23, .flags = 0x22, .index = 2, .count = 2},
					  {1, 1, 1}};
static const struct vfio_user_irq_info irqinfo_idx = {.argsz = 16, .index = 5};

static const struct vfio_user_device_feature feat_argsz = {.argsz = 4, .flags = F_SET | 7};
static const struct vfio_user_device_feature feat_getset = {.argsz = 64, .flags = F_GET | F_SET | 6};
static const struct vfio_user_device_feature feat_unknown = {.argsz = 64, .flags = F_GET | 0x1234};
static const struct vfio_user_device_feature feat_migration = {.argsz = 64, .flags = F_GET | 1};
static const struct vfio_user_device_feature feat_flags = {.argsz = 64, .flags = (1u << 25) | F_SET | 7};
static const struct vfio_user_device_feature feat_noop = {.argsz = 64, .flags = 7};
static const struct vfio_user_device_feature feat_low_power = {.argsz = 64, .flags = F_SET | 3};

static const struct {
	struct vfio_user_write_multi h;
	struct vfio_user_write_multi_entry e;
} __attribute__((packed)) multi_count9 = {{.wr_cnt = 1}, {.offset = 0, .region = 0, .count = 9}},
			  multi_cnt0 = {{.wr_cnt = 0}, {.offset = 0, .region = 0, .count = 4}},
			  multi_cnt2 = {{.wr_cnt = 2}, {.offset = 0, .region = 0, .count = 4}};
static const struct vfio_user_region_io_fds iofds_flags = {.argsz = 16, .flags = 1, .index = 0};

/* A header announcing 100 payload bytes, 10 of them, then end of stream. */
static int run_truncated_body(int fd, const struct bad_case *c)
{
	uint8_t buf[16 + 10] = {0};
	(void)c;
	memcpy(buf, &hdr_long, sizeof(hdr_long));
	send_raw(fd, buf, sizeof(buf), NULL, 0);
	shutdown(fd, SHUT_WR);
	return 0;
}

#define G(n, e, c, p) {.name = n, .expect = e, .run = run_generic, .cmd = c, .payload = &(p), \
		       .len = sizeof(p)}
#define GF(n, e, c, p, nf) {.name = n, .expect = e, .run = run_generic, .cmd = c, \
			    .payload = &(p), .len = sizeof(p), .nfds = nf}
#define GL(n, e, c, p, l) {.name = n, .expect = e, .run = run_generic, .cmd = c, \
			   .payload = (p), .len = (l)}

static const struct bad_case cases[] = {
	/* framing: the channel cannot be trusted any more, so the device closes */
	{.name = "short header, then close", .expect = CLOSE, .run = run_bytes,
	 .payload = &hdr_small, .len = 8, .flags = 1},
	{.name = "short header before VERSION, then close", .raw = true, .expect = CLOSE,
	 .run = run_bytes, .payload = &hdr_small, .len = 8, .flags = 1},
	{.name = "msg_size smaller than the header", .expect = CLOSE, .run = run_bytes,
	 .payload = &hdr_small, .len = 16},
	{.name = "msg_size larger than the payload, close", .expect = CLOSE,
	 .run = run_truncated_body},
	{.name = "msg_size near 2^32", .expect = CLOSE, .run = run_bytes, .payload = &hdr_huge,
	 .len = 16},
	{.name = "payload larger than the maximum", .expect = CLOSE, .run = run_bytes,
	 .payload = &hdr_over, .len = 16},
	{.name = "message type 2 (neither command nor reply)", .expect = CLOSE, .run = run_bytes,
	 .payload = &hdr_type2, .len = 16},
	{.name = "more fds than max_msg_fds (65)", .expect = CLOSE, .run = run_generic,
	 .cmd = VFIO_USER_DEVICE_GET_INFO, .payload = &info16, .len = 16, .nfds = 65},
	/* commands */
	G("unknown command 0", ERR(EINVAL), 0, info16),
	G("unknown command 14 (removed DIRTY_PAGES)", ERR(EINVAL), 14, info16),
	G("unknown command 19", ERR(EINVAL), 19, info16),
	G("unknown command 0xffff", ERR(EINVAL), 0xffff, info16),
	G("DMA_READ sent by the client", ERR(EINVAL), VFIO_USER_DMA_READ, info16),
	G("MIG_DATA_READ without migration", ERR(EINVAL), VFIO_USER_MIG_DATA_READ, info16),
	{.name = "a reply where a command is expected", .expect = IGNORED,
	 .run = run_reply_as_command},
	{.name = "failing command with No_reply", .expect = IGNORED, .run = run_no_reply_error},
	GF("fds on DEVICE_GET_INFO", ERR(EINVAL), VFIO_USER_DEVICE_GET_INFO, info16, 1),
	G("DEVICE_GET_INFO argsz 15", ERR(EINVAL), VFIO_USER_DEVICE_GET_INFO, info_small),
	GL("DEVICE_GET_INFO payload of 8 bytes", ERR(EINVAL), VFIO_USER_DEVICE_GET_INFO, &info16, 8),
	/* VERSION */
	{.name = "command before VERSION", .raw = true, .expect = ERR_CLOSE(EINVAL),
	 .run = run_generic, .cmd = VFIO_USER_DEVICE_GET_INFO, .payload = &info16, .len = 16},
	GL("VERSION twice", ERR(EINVAL), VFIO_USER_VERSION, ver_good, sizeof(ver_good)),
	{.name = "VERSION with malformed JSON", .raw = true, .expect = ERR_CLOSE(EINVAL),
	 .run = run_generic, .cmd = VFIO_USER_VERSION, .payload = ver_badjson,
	 .len = sizeof(ver_badjson)},
	{.name = "VERSION JSON without NUL", .raw = true, .expect = ERR_CLOSE(EINVAL),
	 .run = run_generic, .cmd = VFIO_USER_VERSION, .payload = ver_good,
	 .len = sizeof(ver_good) - 1},
	{.name = "VERSION JSON with wrong types", .raw = true, .expect = ERR_CLOSE(EINVAL),
	 .run = run_generic, .cmd = VFIO_USER_VERSION, .payload = ver_types,
	 .len = sizeof(ver_types)},
	{.name = "VERSION carrying an fd", .raw = true, .expect = ERR_CLOSE(EINVAL),
	 .run = run_generic, .cmd = VFIO_USER_VERSION, .payload = ver_good,
	 .len = sizeof(ver_good), .nfds = 1},
	{.name = "VERSION major 1", .raw = true, .expect = ERR_CLOSE(EINVAL), .run = run_generic,
	 .cmd = VFIO_USER_VERSION, .payload = ver_major, .len = sizeof(ver_major)},
	{.name = "VERSION of 2 bytes", .raw = true, .expect = ERR_CLOSE(EINVAL),
	 .run = run_generic, .cmd = VFIO_USER_VERSION, .payload = ver_good, .len = 2},
	/* regions */
	G("REGION_READ offset+count past the end", ERR(EINVAL), VFIO_USER_REGION_READ, rr_past),
	G("REGION_READ at the region's end", ERR(EINVAL), VFIO_USER_REGION_READ, rr_at_end),
	G("REGION_READ offset+count wraps 2^64", ERR(EINVAL), VFIO_USER_REGION_READ, rr_wrap),
	G("REGION_READ count > max_data_xfer_size", ERR(EINVAL), VFIO_USER_REGION_READ, rr_big),
	G("REGION_READ region 9", ERR(EINVAL), VFIO_USER_REGION_READ, rr_idx9),
	G("REGION_READ region 0xffffffff", ERR(EINVAL), VFIO_USER_REGION_READ, rr_idxmax),
	G("REGION_READ with trailing data", ERR(EINVAL), VFIO_USER_REGION_READ, rr_trailing),
	GL("REGION_READ payload of 8 bytes", ERR(EINVAL), VFIO_USER_REGION_READ, &rr_past, 8),
	G("REGION_WRITE count > data", ERR(EINVAL), VFIO_USER_REGION_WRITE, rw_short),
	G("REGION_WRITE count < data", ERR(EINVAL), VFIO_USER_REGION_WRITE, rw_long),
	G("REGION_WRITE past the end", ERR(EINVAL), VFIO_USER_REGION_WRITE, rw_past),
	G("REGION_WRITE_MULTI entry count 9", ERR(EINVAL), VFIO_USER_REGION_WRITE_MULTI,
	  multi_count9),
	G("REGION_WRITE_MULTI wr_cnt 0", ERR(EINVAL), VFIO_USER_REGION_WRITE_MULTI, multi_cnt0),
	G("REGION_WRITE_MULTI wr_cnt > entries", ERR(EINVAL), VFIO_USER_REGION_WRITE_MULTI,
	  multi_cnt2),
	G("GET_REGION_INFO argsz 31", ERR(EINVAL), VFIO_USER_DEVICE_GET_REGION_INFO, ri_small),
	G("GET_REGION_INFO index 9", ERR(EINVAL), VFIO_USER_DEVICE_GET_REGION_INFO, ri_idx),
	GL("GET_REGION_INFO payload of 16 bytes", ERR(EINVAL), VFIO_USER_DEVICE_GET_REGION_INFO,
	   &ri_idx, 16),
	G("GET_REGION_IO_FDS flags 1", ERR(EINVAL), VFIO_USER_DEVICE_GET_REGION_IO_FDS,
	  iofds_flags),
	/* DMA */
	{.name = "DMA_MAP overlapping a mapping", .expect = ERR(EEXIST), .run = run_map_overlap},
	GF("DMA_MAP wrapping 2^64", ERR(EINVAL), VFIO_USER_DMA_MAP, map_wrap, 1),
	GF("DMA_MAP misaligned", ERR(EINVAL), VFIO_USER_DMA_MAP, map_misaligned, 1),
	GF("DMA_MAP unknown flags", ERR(EINVAL), VFIO_USER_DMA_MAP, map_flags, 1),
	GF("DMA_MAP with 2 fds", ERR(EINVAL), VFIO_USER_DMA_MAP, map_ok, 2),
	G("DMA_MAP size 0", ERR(EINVAL), VFIO_USER_DMA_MAP, map_size0),
	G("DMA_MAP argsz 16", ERR(EINVAL), VFIO_USER_DMA_MAP, map_argsz),
	GL("DMA_MAP payload of 24 bytes", ERR(EINVAL), VFIO_USER_DMA_MAP, &map_ok, 24),
	G("DMA_UNMAP of an unmapped range", ERR(ENOENT), VFIO_USER_DMA_UNMAP, unmap_none),
	{.name = "DMA_UNMAP of part of a mapping", .expect = ERR(ENOENT), .run = run_unmap_partial},
	G("DMA_UNMAP ALL with addr != 0", ERR(EINVAL), VFIO_USER_DMA_UNMAP, unmap_all_addr),
	G("DMA_UNMAP legacy dirty-bitmap flag", ERR(EINVAL), VFIO_USER_DMA_UNMAP, unmap_bitmap),
	GL("DMA_UNMAP payload of 16 bytes", ERR(EINVAL), VFIO_USER_DMA_UNMAP, &unmap_none, 16),
	/* interrupts */
	G("GET_IRQ_INFO index 5", ERR(EINVAL), VFIO_USER_DEVICE_GET_IRQ_INFO, irqinfo_idx),
	G("SET_IRQS index 5", ERR(EINVAL), VFIO_USER_DEVICE_SET_IRQS, irq_idx),
	G("SET_IRQS start past the vectors", ERR(EINVAL), VFIO_USER_DEVICE_SET_IRQS, irq_start),
	G("SET_IRQS start+count wraps", ERR(EINVAL), VFIO_USER_DEVICE_SET_IRQS, irq_wrap),
	G("SET_IRQS two data types", ERR(EINVAL), VFIO_USER_DEVICE_SET_IRQS, irq_two_data),
	G("SET_IRQS no action", ERR(EINVAL), VFIO_USER_DEVICE_SET_IRQS, irq_no_action),
	G("SET_IRQS unknown flag bits", ERR(EINVAL), VFIO_USER_DEVICE_SET_IRQS, irq_unknown),
	GF("SET_IRQS 1 eventfd for count 2", ERR(EINVAL), VFIO_USER_DEVICE_SET_IRQS, irq_efd2, 1),
	GF("SET_IRQS 3 eventfds for count 2", ERR(EINVAL), VFIO_USER_DEVICE_SET_IRQS, irq_efd2, 3),
	GF("SET_IRQS fd with DATA_NONE", ERR(EINVAL), VFIO_USER_DEVICE_SET_IRQS, irq_none_fd, 1),
	G("SET_IRQS count 0 with ACTION_MASK", ERR(EINVAL), VFIO_USER_DEVICE_SET_IRQS,
	  irq_count0_mask),
	G("SET_IRQS ERR index with UNMASK", ERR(EINVAL), VFIO_USER_DEVICE_SET_IRQS, irq_err_unmask),
	GF("SET_IRQS eventfd with ACTION_MASK", ERR(EINVAL), VFIO_USER_DEVICE_SET_IRQS,
	   irq_efd_mask, 1),
	G("SET_IRQS DATA_BOOL length != count", ERR(EINVAL), VFIO_USER_DEVICE_SET_IRQS,
	  irq_bool_len),
	{.name = "SET_IRQS with a pipe for an eventfd", .expect = ERR(EINVAL),
	 .run = run_set_irqs_pipe},
	/* device features */
	G("DEVICE_FEATURE argsz 4", ERR(EINVAL), VFIO_USER_DEVICE_FEATURE, feat_argsz),
	G("DEVICE_FEATURE GET|SET", ERR(EINVAL), VFIO_USER_DEVICE_FEATURE, feat_getset),
	G("DEVICE_FEATURE unknown feature 0x1234", ERR(ENOTTY), VFIO_USER_DEVICE_FEATURE,
	  feat_unknown),
	G("DEVICE_FEATURE MIGRATION (not offered)", ERR(ENOTTY), VFIO_USER_DEVICE_FEATURE,
	  feat_migration),
	G("DEVICE_FEATURE LOW_POWER_ENTRY", ERR(ENOTTY), VFIO_USER_DEVICE_FEATURE, feat_low_power),
	G("DEVICE_FEATURE unknown flag bits", ERR(EINVAL), VFIO_USER_DEVICE_FEATURE, feat_flags),
	G("DEVICE_FEATURE no GET/SET/PROBE", ERR(EINVAL), VFIO_USER_DEVICE_FEATURE, feat_noop),
	GL("DEVICE_FEATURE payload of 4 bytes", ERR(EINVAL), VFIO_USER_DEVICE_FEATURE, &feat_noop, 4),
	{.name = "DMA_LOGGING_START page size 0", .expect = ERR(EINVAL), .run = run_log_page0},
	{.name = "DMA_LOGGING_START page size 3000", .expect = ERR(EINVAL),
	 .run = run_log_page3000},
	{.name = "DMA_LOGGING_START 257 ranges", .expect = ERR(E2BIG), .run = run_log_too_many},
	{.name = "DMA_LOGGING_START overlapping ranges", .expect = ERR(EINVAL),
	 .run = run_log_overlap},
	{.name = "DMA_LOGGING_START unaligned range", .expect = ERR(EINVAL),
	 .run = run_log_unaligned},
	{.name = "DMA_LOGGING_START fewer ranges than num_ranges", .expect = ERR(EINVAL),
	 .run = run_log_truncated},
	{.name = "DMA_LOGGING_START range wraps", .expect = ERR(EOVERFLOW), .run = run_log_wrap},
	{.name = "DMA_LOGGING_REPORT argsz too small", .expect = ERR(EINVAL),
	 .run = run_report_small},
	{.name = "DMA_LOGGING_REPORT without START", .expect = ERR(EINVAL),
	 .run = run_report_not_started},
	{.name = "DMA_LOGGING_REPORT page size 3 pages", .expect = ERR(EINVAL),
	 .run = run_report_bad_page},
	/* reset */
	GL("DEVICE_RESET with a payload", ERR(EINVAL), VFIO_USER_DEVICE_RESET, &info16, 4),
};

/* A new client must get through VERSION and GET_INFO. */
static bool fresh_client_ok(void)
{
	int fd = cl_connect();
	bool ok = negotiate(fd) == 0 && get_info_ok(fd);
	close(fd);
	return ok;
}

int main(void)
{
	char dir[] = "/tmp/ferry-bad-input-XXXXXX";
	unsigned failed = 0;

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 2;
	}
	snprintf(sock_path, sizeof(sock_path), "%s/dev.sock", dir);
	guest_fd = memfd_create("guest", MFD_CLOEXEC);
	int bar2_fd = memfd_create("bar2", MFD_CLOEXEC);
	if (guest_fd < 0 || bar2_fd < 0 || ftruncate(guest_fd, 1 << 20) < 0 ||
	    ftruncate(bar2_fd, 0x10000) < 0) {
		perror("memfd");
		return 2;
	}
	struct ferry_device *dev = start_device(sock_path, bar2_fd);

	if (!fresh_client_ok()) {
		fprintf(stderr, "the device does not serve a good client\n");
		return 2;
	}
	printf("%-48s %-22s %-22s %s\n", "case", "expected", "got", "result");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_case *c = &cases[i];
		char exp[64], got[96] = "";
		bool ok;
		int fd = cl_connect();

		describe_expect(c->expect, exp, sizeof(exp));
		if (!c->raw && negotiate(fd) < 0) {
			snprintf(got, sizeof(got), "VERSION failed");
			ok = false;
		} else {
			int id = c->run(fd, c);
			if (id < 0) {
				snprintf(got, sizeof(got), "setup failed");
				ok = false;
			} else {
				ok = judge(fd, (uint16_t)id, c->expect, got, sizeof(got));
			}
		}
		close(fd);
		if (ok && !fresh_client_ok()) {
			snprintf(got + strlen(got), sizeof(got) - strlen(got), ", device dead");
			ok = false;
		}
		printf("%-48s %-22s %-22s %s\n", c->name, exp, got, ok ? "PASS" : "FAIL");
		fflush(stdout);
		failed += !ok;
	}
	printf("%zu cases, %u failed\n", sizeof(cases) / sizeof(cases[0]), failed);

	ferry_device_stop(dev);
	ferry_device_destroy(dev);
	close(guest_fd);
	close(bar2_fd);
	rmdir(dir);
	return failed ? 1 : 0;
}
