/*
 * A fake vfio-user device server for the client unit tests, built on
 * lib/wire over a socketpair. It serves what the client asks from a small
 * configurable device model and records what it received, so a test can
 * check how the client split its requests. The test thread can also send
 * the server's own commands (DMA_READ / DMA_WRITE) with fake_dma_call().
 *
 * Included by each tests/unit/test_client_*.c (the unit meson builds one
 * source per test), so every function is static and marked unused.
 */
#ifndef CLIENT_FAKE_H
#define CLIENT_FAKE_H

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ferry/client.h>
#include "wire/caps.h"
#include "wire/wire.h"

#define FAKE_UNUSED __attribute__((unused))
#define FAKE_MAX_REGIONS 10
#define FAKE_MAX_RECORDS 64

struct fake_region {
	uint64_t size;
	uint32_t flags;      /* VFIO_REGION_INFO_FLAG_READ | WRITE | MMAP */
	int fd;              /* sent with the info when MMAP; -1: none */
	uint64_t offset;     /* mmap offset in fd */
	unsigned nr_areas;   /* > 0: a sparse-mmap cap */
	struct { uint64_t offset, size; } areas[16];
	bool has_type;
	uint32_t type, subtype;
	uint8_t *mem;        /* backing store for trapped access (size bytes) */
};

struct fake_irq_set {
	uint32_t flags, index, start, count;
	unsigned nfds;
};

struct fake_server {
	struct wire_chan *ch;
	struct wire_chan *twin; /* server end of the twin socket, if negotiated */
	pthread_t thread;
	int handshake_rc;
	sem_t handshake_done; /* posted once the twin channel (if any) is set up */

	/* configuration, set before fake_start */
	bool offer_twin;
	uint32_t max_msg_fds;
	uint32_t max_data_xfer_size;
	uint32_t ferry_ext;
	uint32_t num_regions, num_irqs;
	struct fake_region regions[FAKE_MAX_REGIONS];
	struct vfio_user_irq_info irqs[5];
	uint64_t mig_flags;      /* 0: no migration feature */
	uint32_t mig_state;
	uint8_t mig_stream[3000]; /* what MIG_DATA_READ returns, once */
	size_t mig_stream_pos;
	uint8_t mig_in[4096];    /* what MIG_DATA_WRITE received */
	size_t mig_in_len;
	uint64_t data_size;      /* MIG_DATA_SIZE; 0: feature absent */
	/* A REGION_READ of this region is answered with what a DMA_READ of
	 * dma_on_read_addr returns: the device reaches guest memory while the
	 * client waits for a reply. */
	bool dma_on_read;
	uint32_t dma_on_read_region;
	uint64_t dma_on_read_addr;
	int dma_on_read_rc;

	/* records, under lock */
	pthread_mutex_t lock;
	unsigned region_info_calls;
	uint32_t max_read_chunk, max_write_chunk;
	unsigned nreads, nwrites;
	struct fake_irq_set irq_sets[FAKE_MAX_RECORDS];
	unsigned nirq_sets;
	struct vfio_user_dma_map maps[FAKE_MAX_RECORDS];
	bool map_had_fd[FAKE_MAX_RECORDS];
	unsigned nmaps, nunmaps;
	uint32_t last_unmap_flags;
	unsigned resets;
	struct wire_caps client_caps;
};

static FAKE_UNUSED void fake_init(struct fake_server *f)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	sem_init(&f->handshake_done, 0, 0);
	f->offer_twin = true;
	f->max_msg_fds = 8;
	f->max_data_xfer_size = VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE;
	f->num_regions = 9;
	f->num_irqs = 5;
	for (int i = 0; i < FAKE_MAX_REGIONS; i++)
		f->regions[i].fd = -1;
	for (uint32_t i = 0; i < 5; i++)
		f->irqs[i] = (struct vfio_user_irq_info){
			.argsz = 16, .flags = VFIO_IRQ_INFO_EVENTFD, .index = i, .count = 1};
	f->mig_state = VFIO_DEVICE_STATE_RUNNING;
	for (size_t i = 0; i < sizeof(f->mig_stream); i++)
		f->mig_stream[i] = (uint8_t)(i * 13 + 7);
}

static void fake_reply(struct fake_server *f, struct wire_msg *m, const void *p, size_t n)
{
	struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
	wire_reply(f->ch, m, &iov, n ? 1 : 0, NULL, 0);
}

static void fake_region_info(struct fake_server *f, struct wire_msg *m)
{
	struct vfio_user_region_info req;
	uint8_t buf[1024];

	memcpy(&req, m->payload, sizeof(req));
	if (req.index >= f->num_regions) {
		wire_reply_error(f->ch, m, EINVAL);
		return;
	}
	struct fake_region *r = &f->regions[req.index];
	struct vfio_user_region_info ri = {
		.index = req.index, .flags = r->flags, .size = r->size, .offset = r->offset,
	};
	uint32_t len = sizeof(ri);
	uint32_t *prev_next = NULL;
	memset(buf, 0, sizeof(buf));
	if (r->nr_areas) {
		struct vfio_user_sparse_mmap sp = {
			.header = {.id = VFIO_REGION_INFO_CAP_SPARSE_MMAP, .version = 1},
			.nr_areas = r->nr_areas,
		};
		ri.cap_offset = len;
		memcpy(buf + len, &sp, sizeof(sp));
		prev_next = (uint32_t *)(buf + len + 4);
		len += sizeof(sp);
		for (unsigned i = 0; i < r->nr_areas; i++) {
			struct vfio_user_sparse_mmap_area a = {r->areas[i].offset, r->areas[i].size};
			memcpy(buf + len, &a, sizeof(a));
			len += sizeof(a);
		}
	}
	if (r->has_type) {
		struct vfio_user_region_type t = {
			.header = {.id = VFIO_REGION_INFO_CAP_TYPE, .version = 1},
			.type = r->type, .subtype = r->subtype,
		};
		if (prev_next)
			memcpy(prev_next, &len, sizeof(len));
		else
			ri.cap_offset = len;
		memcpy(buf + len, &t, sizeof(t));
		len += sizeof(t);
	}
	if (len > sizeof(ri))
		ri.flags |= VFIO_REGION_INFO_FLAG_CAPS;
	ri.argsz = len;
	pthread_mutex_lock(&f->lock);
	f->region_info_calls++;
	pthread_mutex_unlock(&f->lock);
	if (req.argsz < len) {
		/* libvfio-user's shape: fixed part only, no caps, no fd */
		ri.flags &= ~(uint32_t)VFIO_REGION_INFO_FLAG_CAPS;
		ri.cap_offset = 0;
		fake_reply(f, m, &ri, sizeof(ri));
		return;
	}
	memcpy(buf, &ri, sizeof(ri));
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	bool send_fd = (r->flags & VFIO_REGION_INFO_FLAG_MMAP) && r->fd >= 0;
	wire_reply(f->ch, m, &iov, 1, send_fd ? &r->fd : NULL, send_fd ? 1 : 0);
}

static int fake_dma_call(struct fake_server *f, uint64_t addr, uint64_t count,
			 const void *data, struct wire_msg *reply);

static void fake_region_rw(struct fake_server *f, struct wire_msg *m, bool is_write)
{
	struct vfio_user_region_access a;
	memcpy(&a, m->payload, sizeof(a));
	if (!is_write && f->dma_on_read && a.region == f->dma_on_read_region) {
		struct wire_msg rep;
		f->dma_on_read_rc = fake_dma_call(f, f->dma_on_read_addr, a.count, NULL, &rep);
		if (f->dma_on_read_rc == 0 && rep.len != 16 + a.count) {
			wire_msg_release(&rep);
			f->dma_on_read_rc = -EPROTO;
		}
		if (f->dma_on_read_rc < 0) {
			wire_reply_error(f->ch, m, -f->dma_on_read_rc);
			return;
		}
		struct iovec iov[2] = {{&a, sizeof(a)}, {rep.payload + 16, a.count}};
		wire_reply(f->ch, m, iov, 2, NULL, 0);
		wire_msg_release(&rep);
		return;
	}
	struct fake_region *r = a.region < f->num_regions ? &f->regions[a.region] : NULL;
	if (!r || !r->mem || a.offset > r->size || a.count > r->size - a.offset ||
	    a.count > f->max_data_xfer_size || (is_write && m->len != sizeof(a) + a.count)) {
		wire_reply_error(f->ch, m, EINVAL);
		return;
	}
	pthread_mutex_lock(&f->lock);
	if (is_write) {
		f->nwrites++;
		if (a.count > f->max_write_chunk)
			f->max_write_chunk = a.count;
	} else {
		f->nreads++;
		if (a.count > f->max_read_chunk)
			f->max_read_chunk = a.count;
	}
	pthread_mutex_unlock(&f->lock);
	if (is_write) {
		memcpy(r->mem + a.offset, m->payload + sizeof(a), a.count);
		fake_reply(f, m, &a, sizeof(a));
		return;
	}
	struct iovec iov[2] = {{&a, sizeof(a)}, {r->mem + a.offset, a.count}};
	wire_reply(f->ch, m, iov, 2, NULL, 0);
}

static void fake_feature(struct fake_server *f, struct wire_msg *m)
{
	struct vfio_user_device_feature h;
	memcpy(&h, m->payload, sizeof(h));
	uint32_t idx = h.flags & VFIO_DEVICE_FEATURE_MASK;
	bool probe = h.flags & VFIO_DEVICE_FEATURE_PROBE;
	bool get = h.flags & VFIO_DEVICE_FEATURE_GET, set = h.flags & VFIO_DEVICE_FEATURE_SET;
	uint8_t out[64];
	size_t n = 0;

	bool known = (idx == VFIO_DEVICE_FEATURE_MIGRATION && f->mig_flags && !set) ||
		     (idx == VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE && f->mig_flags) ||
		     (idx == VFIO_DEVICE_FEATURE_MIG_DATA_SIZE && f->data_size && !set);
	if (!known) {
		wire_reply_error(f->ch, m, ENOTTY);
		return;
	}
	if (probe) {
		fake_reply(f, m, m->payload, m->len);
		return;
	}
	if (idx == VFIO_DEVICE_FEATURE_MIGRATION) {
		memcpy(out + 8, &f->mig_flags, 8);
		n = 8;
	} else if (idx == VFIO_DEVICE_FEATURE_MIG_DATA_SIZE) {
		memcpy(out + 8, &f->data_size, 8);
		n = 8;
	} else if (get) {
		struct vfio_user_feature_mig_state st = {.device_state = f->mig_state};
		memcpy(out + 8, &st, sizeof(st));
		n = sizeof(st);
	} else {
		struct vfio_user_feature_mig_state st;
		if (m->len < sizeof(h) + sizeof(st)) {
			wire_reply_error(f->ch, m, EINVAL);
			return;
		}
		memcpy(&st, m->payload + sizeof(h), sizeof(st));
		if (st.device_state == VFIO_DEVICE_STATE_ERROR || st.device_state > 7) {
			wire_reply_error(f->ch, m, EINVAL);
			return;
		}
		f->mig_state = st.device_state;
		fake_reply(f, m, m->payload, m->len);
		return;
	}
	h.argsz = (uint32_t)(8 + n);
	memcpy(out, &h, sizeof(h));
	fake_reply(f, m, out, 8 + n);
}

static void fake_mig_data(struct fake_server *f, struct wire_msg *m, bool is_write)
{
	struct vfio_user_mig_data d;
	memcpy(&d, m->payload, sizeof(d));
	if (is_write) {
		if (m->len != sizeof(d) + d.size || d.size > sizeof(f->mig_in) - f->mig_in_len) {
			wire_reply_error(f->ch, m, EINVAL);
			return;
		}
		memcpy(f->mig_in + f->mig_in_len, m->payload + sizeof(d), d.size);
		f->mig_in_len += d.size;
		fake_reply(f, m, NULL, 0);
		return;
	}
	size_t left = sizeof(f->mig_stream) - f->mig_stream_pos;
	size_t n = d.size < left ? d.size : left;
	if (n > 1000)
		n = 1000; /* short reads that are not the end, as libvfio-user may do */
	struct vfio_user_mig_data rep = {.argsz = (uint32_t)(sizeof(rep) + n), .size = (uint32_t)n};
	struct iovec iov[2] = {{&rep, sizeof(rep)}, {f->mig_stream + f->mig_stream_pos, n}};
	f->mig_stream_pos += n;
	wire_reply(f->ch, m, iov, 2, NULL, 0);
}

static void fake_handle(struct fake_server *f, struct wire_msg *m)
{
	switch (m->hdr.cmd) {
	case VFIO_USER_DEVICE_GET_INFO: {
		struct vfio_user_device_info di = {
			.argsz = 16, .flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET,
			.num_regions = f->num_regions, .num_irqs = f->num_irqs,
		};
		fake_reply(f, m, &di, sizeof(di));
		return;
	}
	case VFIO_USER_DEVICE_GET_REGION_INFO:
		fake_region_info(f, m);
		return;
	case VFIO_USER_DEVICE_GET_IRQ_INFO: {
		struct vfio_user_irq_info q;
		memcpy(&q, m->payload, sizeof(q));
		if (q.index >= f->num_irqs || q.index >= 5) {
			wire_reply_error(f->ch, m, EINVAL);
			return;
		}
		fake_reply(f, m, &f->irqs[q.index], sizeof(q));
		return;
	}
	case VFIO_USER_DEVICE_SET_IRQS: {
		struct vfio_user_irq_set s;
		memcpy(&s, m->payload, sizeof(s));
		pthread_mutex_lock(&f->lock);
		if (f->nirq_sets < FAKE_MAX_RECORDS)
			f->irq_sets[f->nirq_sets++] = (struct fake_irq_set){
				s.flags, s.index, s.start, s.count, m->nfds};
		pthread_mutex_unlock(&f->lock);
		if (m->nfds && m->nfds != s.count)
			wire_reply_error(f->ch, m, EINVAL);
		else
			fake_reply(f, m, NULL, 0);
		return;
	}
	case VFIO_USER_REGION_READ:
	case VFIO_USER_REGION_WRITE:
		fake_region_rw(f, m, m->hdr.cmd == VFIO_USER_REGION_WRITE);
		return;
	case VFIO_USER_DMA_MAP: {
		pthread_mutex_lock(&f->lock);
		if (f->nmaps < FAKE_MAX_RECORDS) {
			memcpy(&f->maps[f->nmaps], m->payload, sizeof(f->maps[0]));
			f->map_had_fd[f->nmaps++] = m->nfds == 1;
		}
		pthread_mutex_unlock(&f->lock);
		fake_reply(f, m, NULL, 0);
		return;
	}
	case VFIO_USER_DMA_UNMAP: {
		struct vfio_user_dma_unmap u;
		memcpy(&u, m->payload, sizeof(u));
		pthread_mutex_lock(&f->lock);
		f->nunmaps++;
		f->last_unmap_flags = u.flags;
		pthread_mutex_unlock(&f->lock);
		fake_reply(f, m, &u, sizeof(u));
		return;
	}
	case VFIO_USER_DEVICE_RESET:
		pthread_mutex_lock(&f->lock);
		f->resets++;
		pthread_mutex_unlock(&f->lock);
		fake_reply(f, m, NULL, 0);
		return;
	case VFIO_USER_DEVICE_FEATURE:
		fake_feature(f, m);
		return;
	case VFIO_USER_MIG_DATA_READ:
	case VFIO_USER_MIG_DATA_WRITE:
		fake_mig_data(f, m, m->hdr.cmd == VFIO_USER_MIG_DATA_WRITE);
		return;
	default:
		wire_reply_error(f->ch, m, EINVAL);
	}
}

static void *fake_main(void *arg)
{
	struct fake_server *f = arg;
	struct wire_caps mine;
	int sv[2] = {-1, -1};

	wire_caps_default(&mine);
	mine.max_msg_fds = f->max_msg_fds;
	mine.max_data_xfer_size = f->max_data_xfer_size;
	mine.ferry_ext = f->ferry_ext;
	mine.twin_socket = f->offer_twin;
	if (f->offer_twin)
		socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	f->handshake_rc = wire_version_server(f->ch, &mine, &f->client_caps, sv[1]);
	if (sv[1] >= 0)
		close(sv[1]);
	if (f->handshake_rc == 0 && mine.twin_socket) {
		struct wire_transport *tr;
		struct wire_chan_opts o = {.name = "fake twin", .timeout_ms = 5000};
		if (wire_transport_sock_create(sv[0], &tr) == 0)
			wire_chan_create(tr, &o, &f->twin);
	} else if (sv[0] >= 0) {
		close(sv[0]);
	}
	sem_post(&f->handshake_done);
	if (f->handshake_rc < 0)
		return NULL;
	for (;;) {
		struct wire_msg m;
		if (wire_next_command(f->ch, &m, -1) < 0)
			return NULL;
		fake_handle(f, &m);
		wire_msg_release(&m);
	}
}

/* Starts the server on one end of a socketpair; returns the client's end. */
static FAKE_UNUSED int fake_start(struct fake_server *f)
{
	int sv[2];
	struct wire_transport *tr;
	struct wire_chan_opts o = {.name = "fake server", .timeout_ms = 5000};
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	if (wire_transport_sock_create(sv[0], &tr) < 0 || wire_chan_create(tr, &o, &f->ch) < 0) {
		close(sv[1]);
		return -ENOMEM;
	}
	pthread_create(&f->thread, NULL, fake_main, f);
	return sv[1];
}

/* Connects a client to a freshly started fake server. */
static FAKE_UNUSED int fake_connect(struct fake_server *f, const struct ferry_client_options *o,
				    struct ferry_client **out)
{
	int fd = fake_start(f);
	if (fd < 0)
		return fd;
	int r = ferry_client_connect_fd(fd, o, out);
	/* the client may return before the server has set up its twin end */
	sem_wait(&f->handshake_done);
	return r;
}

/* The channel the server sends its own commands on. */
static FAKE_UNUSED struct wire_chan *fake_cmd_chan(struct fake_server *f)
{
	return f->twin ? f->twin : f->ch;
}

/* The server's DMA_READ (@data NULL, @count bytes) or DMA_WRITE (@data).
 * Returns 0 with the reply in @reply, or the client's negative errno. */
static int fake_dma_call(struct fake_server *f, uint64_t addr, uint64_t count,
			 const void *data, struct wire_msg *reply)
{
	struct vfio_user_dma_region_access a = {.addr = addr, .count = count};
	struct iovec iov[2] = {{&a, sizeof(a)}, {(void *)data, data ? count : 0}};
	return wire_call(fake_cmd_chan(f), data ? VFIO_USER_DMA_WRITE : VFIO_USER_DMA_READ, iov,
			 data ? 2 : 1, NULL, 0, reply);
}

/* Waits for the server thread (the client must have closed) and frees. */
static FAKE_UNUSED void fake_stop(struct fake_server *f)
{
	pthread_join(f->thread, NULL);
	wire_chan_destroy(f->twin);
	wire_chan_destroy(f->ch);
	for (int i = 0; i < FAKE_MAX_REGIONS; i++)
		free(f->regions[i].mem);
	pthread_mutex_destroy(&f->lock);
	sem_destroy(&f->handshake_done);
}

#endif /* CLIENT_FAKE_H */
