/*
 * Guest memory the device may reach: DMA_MAP / DMA_UNMAP, the client's own
 * table of what it mapped, and serving the server's DMA_READ / DMA_WRITE
 * requests (PROTOCOL.md §6) from that table.
 *
 * Concepts:
 * - The table holds every range the server was told about. An entry goes in
 *   before DMA_MAP is sent (the server may DMA_READ it before it replies)
 *   and comes out after DMA_UNMAP's reply (the server drops its references
 *   before replying, but may use the range until then).
 * - A request is served only if [addr, addr + count) lies inside one entry
 *   (EFAULT otherwise) whose protection allows it (EPERM). Entries are few
 *   (one per guest memory block), so the lookup is a linear scan on purpose.
 * - Bytes written for DMA_WRITE never reach the server's dirty log, so they
 *   are reported to the dirty callback (§6.3).
 */
#include "client/client_priv.h"
#include "util/checked.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DMA_PROT_MASK (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)

void client_dma_init(struct client_dma_table *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
}

static void entry_release(struct client_dma_entry *e)
{
	if (e->fd >= 0)
		close(e->fd);
	e->fd = -1;
}

void client_dma_destroy(struct client_dma_table *t)
{
	for (unsigned i = 0; i < t->n; i++)
		entry_release(&t->v[i]);
	free(t->v);
	pthread_mutex_destroy(&t->lock);
}

/* Index of the entry exactly matching (iova, size), or -1. Lock held. */
static int find_exact_locked(struct client_dma_table *t, uint64_t iova, uint64_t size)
{
	for (unsigned i = 0; i < t->n; i++)
		if (t->v[i].iova == iova && t->v[i].size == size)
			return (int)i;
	return -1;
}

/* Removes entry @i and returns it (the caller releases it). Lock held. */
static struct client_dma_entry remove_locked(struct client_dma_table *t, unsigned i)
{
	struct client_dma_entry e = t->v[i];
	t->v[i] = t->v[--t->n];
	return e;
}

static int table_add(struct ferry_client *c, const struct client_dma_entry *e)
{
	struct client_dma_table *t = &c->dma;
	int r = 0;

	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < t->n; i++) {
		if (ranges_overlap(e->iova, e->size, t->v[i].iova, t->v[i].size)) {
			log_err("%s: DMA_MAP [0x%llx, +0x%llx) overlaps [0x%llx, +0x%llx)", c->name,
				(unsigned long long)e->iova, (unsigned long long)e->size,
				(unsigned long long)t->v[i].iova, (unsigned long long)t->v[i].size);
			r = -EEXIST;
			goto out;
		}
	}
	if (t->n >= c->caps.max_dma_maps) {
		log_err("%s: DMA_MAP would exceed the server's %u mappings", c->name,
			c->caps.max_dma_maps);
		r = -ENOSPC;
		goto out;
	}
	if (t->n == t->cap) {
		unsigned cap = t->cap ? t->cap * 2 : 8;
		struct client_dma_entry *v = realloc(t->v, sizeof(*v) * cap);
		if (!v) {
			r = -ENOMEM;
			goto out;
		}
		t->v = v;
		t->cap = cap;
	}
	t->v[t->n++] = *e;
out:
	pthread_mutex_unlock(&t->lock);
	return r;
}

static void table_drop(struct ferry_client *c, uint64_t iova, uint64_t size)
{
	struct client_dma_entry e = {.fd = -1};
	pthread_mutex_lock(&c->dma.lock);
	int i = find_exact_locked(&c->dma, iova, size);
	if (i >= 0)
		e = remove_locked(&c->dma, (unsigned)i);
	pthread_mutex_unlock(&c->dma.lock);
	entry_release(&e);
}

static int check_map_args(struct ferry_client *c, uint64_t iova, uint64_t size, uint32_t prot,
			  int fd, uint64_t fd_offset, void *vaddr)
{
	uint64_t pg_mask = c->dma_min_page - 1;

	if (!size || size > UINT64_MAX - iova) {
		log_err("%s: DMA_MAP [0x%llx, +0x%llx) is empty or wraps", c->name,
			(unsigned long long)iova, (unsigned long long)size);
		return -EINVAL;
	}
	if (!prot || (prot & ~DMA_PROT_MASK)) {
		log_err("%s: DMA_MAP protection 0x%x is not READ and/or WRITE", c->name, prot);
		return -EINVAL;
	}
	if ((iova | size | (fd >= 0 ? fd_offset : 0)) & pg_mask) {
		log_err("%s: DMA_MAP iova 0x%llx size 0x%llx offset 0x%llx not aligned to 0x%llx",
			c->name, (unsigned long long)iova, (unsigned long long)size,
			(unsigned long long)fd_offset, (unsigned long long)c->dma_min_page);
		return -EINVAL;
	}
	if (fd < 0 && !vaddr) {
		log_err("%s: DMA_MAP of 0x%llx needs an fd or an address", c->name,
			(unsigned long long)iova);
		return -EINVAL;
	}
	if (fd >= 0 && c->caps.max_msg_fds < 1) {
		log_err("%s: server accepts no fds, cannot DMA_MAP 0x%llx with one", c->name,
			(unsigned long long)iova);
		return -EINVAL;
	}
	if (!vaddr && fd_offset > (uint64_t)INT64_MAX - size) {
		log_err("%s: DMA_MAP fd offset 0x%llx is out of range", c->name,
			(unsigned long long)fd_offset);
		return -EINVAL;
	}
	return 0;
}

int ferry_client_dma_map(struct ferry_client *c, uint64_t iova, uint64_t size, uint32_t prot,
			 int fd, uint64_t fd_offset, void *vaddr)
{
	int r = check_map_args(c, iova, size, prot, fd, fd_offset, vaddr);
	if (r < 0)
		return r;

	struct client_dma_entry e = {
		.iova = iova, .size = size, .prot = prot, .vaddr = vaddr, .fd = -1,
		.fd_offset = fd_offset,
	};
	if (!vaddr) {
		/* We serve DMA_READ/WRITE on this range through the fd. */
		e.fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (e.fd < 0) {
			r = -errno;
			log_err("%s: cannot duplicate DMA fd %d: %s", c->name, fd, strerror(-r));
			return r;
		}
	}
	r = table_add(c, &e);
	if (r < 0) {
		entry_release(&e);
		return r;
	}

	struct vfio_user_dma_map req = {
		.argsz = sizeof(req),
		.flags = prot,
		.offset = fd >= 0 ? fd_offset : 0,
		.addr = iova,
		.size = size,
	};
	struct iovec iov = {.iov_base = &req, .iov_len = sizeof(req)};
	struct client_req cr = {
		.what = "DMA_MAP", .cmd = VFIO_USER_DMA_MAP, .iov = &iov, .iovcnt = 1,
		.fds = fd >= 0 ? &fd : NULL, .nfds = fd >= 0 ? 1 : 0,
	};
	r = client_call(c, &cr, NULL);
	if (r < 0)
		table_drop(c, iova, size);
	return r;
}

/* A DMA_UNMAP reply is the request echoed (SPEC); header-only replies (as
 * some servers send) are accepted, anything in between is malformed. */
static int check_unmap_reply(struct ferry_client *c, const struct wire_msg *m,
			     const struct vfio_user_dma_unmap *req)
{
	struct vfio_user_dma_unmap rep;
	if (m->len == 0)
		return 0;
	if (m->len < sizeof(rep)) {
		log_err("%s: DMA_UNMAP reply of %u bytes is neither empty nor %zu", c->name, m->len,
			sizeof(rep));
		return -EPROTO;
	}
	memcpy(&rep, m->payload, sizeof(rep));
	if (rep.addr != req->addr || rep.size != req->size) {
		log_err("%s: DMA_UNMAP reply names [0x%llx, +0x%llx), we unmapped [0x%llx, +0x%llx)",
			c->name, (unsigned long long)rep.addr, (unsigned long long)rep.size,
			(unsigned long long)req->addr, (unsigned long long)req->size);
		return -EPROTO;
	}
	return 0;
}

static int send_unmap(struct ferry_client *c, uint32_t flags, uint64_t iova, uint64_t size)
{
	struct vfio_user_dma_unmap req = {
		.argsz = sizeof(req), .flags = flags, .addr = iova, .size = size,
	};
	struct wire_msg reply;
	int r = client_call_simple(c, "DMA_UNMAP", VFIO_USER_DMA_UNMAP, &req, sizeof(req), 0,
				   &reply);
	if (r < 0)
		return r;
	r = check_unmap_reply(c, &reply, &req);
	wire_msg_release(&reply);
	return r;
}

int ferry_client_dma_unmap(struct ferry_client *c, uint64_t iova, uint64_t size)
{
	pthread_mutex_lock(&c->dma.lock);
	int i = find_exact_locked(&c->dma, iova, size);
	pthread_mutex_unlock(&c->dma.lock);
	if (i < 0) {
		log_err("%s: DMA_UNMAP [0x%llx, +0x%llx) matches no mapping", c->name,
			(unsigned long long)iova, (unsigned long long)size);
		return -ENOENT;
	}
	int r = send_unmap(c, 0, iova, size);
	if (r == 0)
		table_drop(c, iova, size);
	return r;
}

int ferry_client_dma_unmap_all(struct ferry_client *c)
{
	int r = send_unmap(c, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->dma.lock);
	for (unsigned i = 0; i < c->dma.n; i++)
		entry_release(&c->dma.v[i]);
	c->dma.n = 0;
	pthread_mutex_unlock(&c->dma.lock);
	return 0;
}

void ferry_client_set_dirty_callback(struct ferry_client *c, ferry_client_dirty_fn fn,
				     void *opaque)
{
	/* Waits for a callback in progress, so @opaque of the old one may be
	 * freed once this returns. */
	pthread_mutex_lock(&c->dirty_lock);
	c->dirty_fn = fn;
	c->dirty_opaque = opaque;
	pthread_mutex_unlock(&c->dirty_lock);
}

static void report_dirty(struct ferry_client *c, uint64_t iova, uint64_t len)
{
	if (!len)
		return;
	pthread_mutex_lock(&c->dirty_lock);
	if (c->dirty_fn)
		c->dirty_fn(c->dirty_opaque, iova, len);
	pthread_mutex_unlock(&c->dirty_lock);
}

/* Copies between @buf and the guest memory of entry @e at @off, through
 * our mapping or, without one, the fd. */
static int copy_guest(const struct client_dma_entry *e, uint64_t off, void *buf, size_t len,
		      bool to_guest)
{
	if (!len)
		return 0;
	if (e->vaddr) {
		if (to_guest)
			memcpy(e->vaddr + off, buf, len);
		else
			memcpy(buf, e->vaddr + off, len);
		return 0;
	}
	size_t done = 0;
	while (done < len) {
		off_t pos = (off_t)(e->fd_offset + off + done);
		ssize_t n = to_guest ? pwrite(e->fd, (uint8_t *)buf + done, len - done, pos)
				     : pread(e->fd, (uint8_t *)buf + done, len - done, pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return 0;
}

/* Finds the entry holding [addr, addr + count) and checks @need; copies.
 * Returns 0 or the positive errno for the reply. */
static int access_guest(struct ferry_client *c, uint64_t addr, uint64_t count, uint32_t need,
			void *buf, bool to_guest)
{
	struct client_dma_table *t = &c->dma;
	int err = EFAULT;

	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < t->n; i++) {
		const struct client_dma_entry *e = &t->v[i];
		if (addr < e->iova || !range_ok(addr - e->iova, count, e->size))
			continue;
		if (!(e->prot & need)) {
			err = EPERM;
			break;
		}
		int r = copy_guest(e, addr - e->iova, buf, (size_t)count, to_guest);
		err = r < 0 ? EFAULT : 0;
		break;
	}
	pthread_mutex_unlock(&t->lock);
	return err;
}

void client_dma_serve(struct ferry_client *c, struct wire_chan *ch, struct wire_msg *m)
{
	struct vfio_user_dma_region_access a;
	bool is_write = m->hdr.cmd == VFIO_USER_DMA_WRITE;
	const char *what = is_write ? "DMA_WRITE" : "DMA_READ";
	uint8_t *buf = NULL;
	int err;

	if (m->len < sizeof(a)) {
		log_err("%s: %s of %u bytes is too short", c->name, what, m->len);
		err = EINVAL;
		goto fail;
	}
	memcpy(&a, m->payload, sizeof(a));
	if (a.count > CLIENT_MAX_XFER) {
		log_err("%s: %s of %llu bytes exceeds our max_data_xfer_size %u", c->name, what,
			(unsigned long long)a.count, CLIENT_MAX_XFER);
		err = E2BIG;
		goto fail;
	}
	uint32_t want = (uint32_t)sizeof(a) + (is_write ? (uint32_t)a.count : 0);
	if (m->len != want) {
		log_err("%s: %s of %llu bytes came in a %u-byte payload", c->name, what,
			(unsigned long long)a.count, m->len);
		err = EINVAL;
		goto fail;
	}
	if (is_write) {
		buf = m->payload + sizeof(a);
	} else if (a.count) {
		buf = malloc(a.count);
		if (!buf) {
			err = ENOMEM;
			goto fail;
		}
	}
	err = access_guest(c, a.addr, a.count,
			   is_write ? VFIO_DMA_MAP_FLAG_WRITE : VFIO_DMA_MAP_FLAG_READ, buf,
			   is_write);
	if (err) {
		log_err("%s: %s [0x%llx, +0x%llx): %s", c->name, what, (unsigned long long)a.addr,
			(unsigned long long)a.count,
			err == EFAULT ? "not mapped" : err == EPERM ? "not permitted" : strerror(err));
		goto fail;
	}
	if (is_write)
		report_dirty(c, a.addr, a.count);

	struct iovec iov[2] = {
		{.iov_base = &a, .iov_len = sizeof(a)},
		{.iov_base = buf, .iov_len = is_write ? 0 : (size_t)a.count},
	};
	wire_reply(ch, m, iov, is_write || !a.count ? 1 : 2, NULL, 0);
	if (!is_write)
		free(buf);
	return;
fail:
	if (!is_write)
		free(buf);
	wire_reply_error(ch, m, err);
}
