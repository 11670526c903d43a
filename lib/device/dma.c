/*
 * DMA (PROTOCOL.md §6): DMA_MAP / DMA_UNMAP from the client, and the public
 * helpers a model uses to read and write guest memory.
 *
 * The helpers look ranges up in the DMA table under its read lock and keep
 * that lock for the whole copy, so DMA_UNMAP (which takes the write lock)
 * returns only after every access to the range is over. A range the client
 * mapped with an fd is a memcpy through the table's mapping; a range mapped
 * without one is reached with DMA_READ / DMA_WRITE messages to the client,
 * chunked to the smaller of the two sides' max_data_xfer_size, on the twin
 * socket when negotiated. Accesses may span adjacent regions; every piece is
 * checked (mapped, permitted) before the first byte moves, so a failing
 * access changes nothing in guest memory.
 *
 * Every device write through a mapping is marked in the dirty log before the
 * read lock is dropped (dirty_log.h contract). Writes done by the client for
 * DMA_WRITE messages are the client's to log (§6.3).
 *
 * While the device is stopped for migration (STOP, STOP_COPY, RESUMING,
 * ERROR) the helpers refuse with -EBUSY: the model should have quiesced its
 * DMA in its arc; this is the library's safety net (migration.c).
 *
 * ferry_dma_ptr_get() returns with the read lock held; ptr_put drops it.
 * The read lock is not recursive (dma_table.h), so holds are counted per
 * thread: helpers called by a thread that holds a pointer reuse its lock
 * instead of taking it again.
 */
#include "device/device_priv.h"
#include "util/checked.h"
#include "util/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define DMA_PROT (VFIO_USER_F_DMA_REGION_READ | VFIO_USER_F_DMA_REGION_WRITE)

/* ---- per-thread holds of the read lock ---- */

/* A thread holding pointers into more devices than this at once gets
 * -EBUSY from ferry_dma_ptr_get (no model needs that many). */
#define MAX_HOLDS 4

struct dma_hold {
	struct ferry_device *dev;
	unsigned n;
};

static _Thread_local struct dma_hold holds[MAX_HOLDS];

static struct dma_hold *hold_find(struct ferry_device *dev)
{
	for (unsigned i = 0; i < MAX_HOLDS; i++)
		if (holds[i].dev == dev && holds[i].n)
			return &holds[i];
	return NULL;
}

bool dma_thread_holds(struct ferry_device *dev)
{
	return hold_find(dev) != NULL;
}

/* Takes the read lock unless this thread holds it already; returns whether
 * it was taken (pass that to dma_unlock). */
static bool dma_lock(struct ferry_device *dev)
{
	if (hold_find(dev))
		return false;
	dma_table_read_lock(dev->dma);
	return true;
}

static void dma_unlock(struct ferry_device *dev, bool taken)
{
	if (taken)
		dma_table_read_unlock(dev->dma);
}

void dma_set_channel(struct ferry_device *dev, struct wire_chan *ch, uint32_t xfer)
{
	dma_table_write_lock(dev->dma);
	dev->dma_chan = ch;
	dev->dma_xfer = xfer;
	dma_table_write_unlock(dev->dma);
}

/* ---- message-mode transfers (read lock held) ---- */

static int msg_read(struct ferry_device *dev, uint64_t iova, uint8_t *buf, uint64_t len)
{
	while (len) {
		uint64_t n = len < dev->dma_xfer ? len : dev->dma_xfer;
		struct vfio_user_dma_region_access req = {.addr = iova, .count = n}, rep;
		struct wire_msg reply;
		int r;

		if (!dev->dma_chan)
			return -EFAULT;
		r = wire_call_simple(dev->dma_chan, VFIO_USER_DMA_READ, &req, sizeof(req), &reply);
		if (r < 0) {
			log_err("%s: DMA_READ of %" PRIu64 " bytes at 0x%" PRIx64 ": %s", dev->name,
				n, iova, strerror(-r));
			return r;
		}
		if (reply.len >= sizeof(rep))
			memcpy(&rep, reply.payload, sizeof(rep));
		if (reply.len != sizeof(rep) + n || rep.addr != iova || rep.count != n) {
			log_err("%s: DMA_READ of %" PRIu64 " bytes at 0x%" PRIx64
				": malformed reply of %u bytes", dev->name, n, iova, reply.len);
			wire_msg_release(&reply);
			return -EIO;
		}
		memcpy(buf, reply.payload + sizeof(rep), n);
		wire_msg_release(&reply);
		iova += n;
		buf += n;
		len -= n;
	}
	return 0;
}

static int msg_write(struct ferry_device *dev, uint64_t iova, const uint8_t *buf, uint64_t len)
{
	while (len) {
		uint64_t n = len < dev->dma_xfer ? len : dev->dma_xfer;
		struct vfio_user_dma_region_access req = {.addr = iova, .count = n};
		struct iovec iov[2] = {
			{.iov_base = &req, .iov_len = sizeof(req)},
			{.iov_base = (void *)buf, .iov_len = n},
		};
		struct wire_msg reply;
		uint64_t addr;
		int r;

		if (!dev->dma_chan)
			return -EFAULT;
		r = wire_call(dev->dma_chan, VFIO_USER_DMA_WRITE, iov, 2, NULL, 0, &reply);
		if (r < 0) {
			log_err("%s: DMA_WRITE of %" PRIu64 " bytes at 0x%" PRIx64 ": %s", dev->name,
				n, iova, strerror(-r));
			return r;
		}
		/* SPEC replies addr + count (12 or 16 bytes); accept any that echo addr */
		if (reply.len >= sizeof(addr)) {
			memcpy(&addr, reply.payload, sizeof(addr));
			if (addr != iova) {
				log_err("%s: DMA_WRITE at 0x%" PRIx64 ": reply names 0x%" PRIx64,
					dev->name, iova, addr);
				wire_msg_release(&reply);
				return -EIO;
			}
		}
		wire_msg_release(&reply);
		iova += n;
		buf += n;
		len -= n;
	}
	return 0;
}

/* ---- the helpers ---- */

/* Checks that [iova, iova + len) is mapped with @prot, region by region.
 * Read lock held. */
static int check_range(struct ferry_device *dev, uint64_t iova, uint64_t len, uint32_t prot,
		       const char *what)
{
	uint64_t pos = iova, left = len;

	if (len - 1 > UINT64_MAX - iova) {
		log_err("%s: %s of %" PRIu64 " bytes at 0x%" PRIx64 " wraps", dev->name, what, len,
			iova);
		return -EFAULT;
	}
	while (left) {
		const struct dma_region *r = dma_table_lookup(dev->dma, pos, 1);
		if (!r) {
			log_err("%s: %s of %" PRIu64 " bytes at 0x%" PRIx64 ": 0x%" PRIx64
				" is not mapped", dev->name, what, len, iova, pos);
			return -EFAULT;
		}
		if ((r->prot & prot) != prot) {
			log_err("%s: %s of %" PRIu64 " bytes at 0x%" PRIx64 ": region 0x%" PRIx64
				" is mapped with prot 0x%x", dev->name, what, len, iova, r->iova,
				r->prot);
			return -EPERM;
		}
		uint64_t n = r->size - (pos - r->iova);
		n = n < left ? n : left;
		pos += n;
		left -= n;
	}
	return 0;
}

/* Copies between @buf and guest memory, piece by piece. Read lock held;
 * check_range passed. */
static int copy_range(struct ferry_device *dev, uint64_t iova, uint8_t *buf, uint64_t len,
		      bool is_write)
{
	while (len) {
		const struct dma_region *r = dma_table_lookup(dev->dma, iova, 1);
		uint64_t off = iova - r->iova;
		uint64_t n = r->size - off < len ? r->size - off : len;
		int ret = 0;

		if (r->vaddr && is_write) {
			memcpy((uint8_t *)r->vaddr + off, buf, n);
			dirty_log_mark(dev->log, iova, n);
		} else if (r->vaddr) {
			memcpy(buf, (uint8_t *)r->vaddr + off, n);
		} else {
			ret = is_write ? msg_write(dev, iova, buf, n) : msg_read(dev, iova, buf, n);
		}
		if (ret < 0)
			return ret;
		iova += n;
		buf += n;
		len -= n;
	}
	return 0;
}

static int dma_rw(struct ferry_device *dev, uint64_t iova, void *buf, size_t len, bool is_write)
{
	const char *what = is_write ? "DMA write" : "DMA read";
	bool taken;
	int r;

	if (!dev || (!buf && len)) {
		log_err("%s: %s: invalid arguments", ferry_device_name(dev), what);
		return -EINVAL;
	}
	if (!len)
		return 0;
	if (dev_is_quiesced(dev)) { /* stopped for migration: no DMA (migration.c) */
		mig_note_quiesced(dev, what);
		return -EBUSY;
	}
	taken = dma_lock(dev);
	r = check_range(dev, iova, len, is_write ? VFIO_USER_F_DMA_REGION_WRITE
						 : VFIO_USER_F_DMA_REGION_READ, what);
	if (r == 0)
		r = copy_range(dev, iova, buf, len, is_write);
	dma_unlock(dev, taken);
	return r;
}

int ferry_dma_read(struct ferry_device *dev, uint64_t iova, void *buf, size_t len)
{
	return dma_rw(dev, iova, buf, len, false);
}

int ferry_dma_write(struct ferry_device *dev, uint64_t iova, const void *buf, size_t len)
{
	return dma_rw(dev, iova, (void *)buf, len, true);
}

void *ferry_dma_ptr_get(struct ferry_device *dev, uint64_t iova, size_t len, bool writable,
			int *err)
{
	struct dma_hold *h;
	const struct dma_region *r;
	uint32_t prot = VFIO_USER_F_DMA_REGION_READ | (writable ? VFIO_USER_F_DMA_REGION_WRITE : 0);
	int e = 0;

	if (!dev || !len) {
		log_err("%s: ferry_dma_ptr_get: invalid arguments (len %zu)", ferry_device_name(dev),
			len);
		e = -EINVAL;
		goto out;
	}
	if (dev_is_quiesced(dev)) { /* stopped for migration: no DMA (migration.c) */
		mig_note_quiesced(dev, "ferry_dma_ptr_get");
		e = -EBUSY;
		goto out;
	}
	h = hold_find(dev);
	if (!h) {
		for (unsigned i = 0; i < MAX_HOLDS && !h; i++)
			if (!holds[i].n)
				h = &holds[i];
		if (!h) {
			log_err("%s: ferry_dma_ptr_get: this thread holds pointers of %u devices",
				dev->name, MAX_HOLDS);
			e = -EBUSY;
			goto out;
		}
		dma_table_read_lock(dev->dma);
		*h = (struct dma_hold){.dev = dev, .n = 0};
	}
	r = dma_table_lookup(dev->dma, iova, len);
	if (!r) {
		log_err("%s: ferry_dma_ptr_get of %zu bytes at 0x%" PRIx64
			": not inside one mapped region", dev->name, len, iova);
		e = -EFAULT;
	} else if ((r->prot & prot) != prot) {
		log_err("%s: ferry_dma_ptr_get of %zu bytes at 0x%" PRIx64 ": region prot 0x%x, "
			"wanted 0x%x", dev->name, len, iova, r->prot, prot);
		e = -EPERM;
	} else if (!r->vaddr) {
		log_err("%s: ferry_dma_ptr_get of %zu bytes at 0x%" PRIx64
			": mapped without an fd (use ferry_dma_read/write)", dev->name, len, iova);
		e = -ENOTSUP;
	}
	if (e) {
		if (!h->n) {
			dma_table_read_unlock(dev->dma);
			h->dev = NULL;
		}
		goto out;
	}
	h->n++;
	if (err)
		*err = 0;
	return (uint8_t *)r->vaddr + (iova - r->iova);
out:
	if (err)
		*err = e;
	return NULL;
}

void ferry_dma_ptr_put(struct ferry_device *dev)
{
	struct dma_hold *h = dev ? hold_find(dev) : NULL;

	if (!h) {
		log_err("%s: ferry_dma_ptr_put without a pointer held by this thread",
			ferry_device_name(dev));
		return;
	}
	if (--h->n == 0) {
		h->dev = NULL;
		dma_table_read_unlock(dev->dma);
	}
}

void ferry_dma_mark_dirty(struct ferry_device *dev, uint64_t iova, size_t len)
{
	bool taken;

	if (!dev || !len)
		return;
	taken = dma_lock(dev);
	dirty_log_mark(dev->log, iova, len);
	dma_unlock(dev, taken);
}

/* ---- DMA_MAP / DMA_UNMAP ---- */

int handle_dma_map(struct ferry_device *dev, struct conn *c, struct wire_msg *m)
{
	struct vfio_user_dma_map map;
	const struct dma_region *old;
	bool existed;
	int fd, r;

	memcpy(&map, m->payload, sizeof(map));
	if (m->len != sizeof(map) || map.argsz != sizeof(map) ||
	    (map.flags & ~(DMA_PROT | VFIO_USER_F_DMA_REGION_MMAP)) ||
	    ((map.flags & VFIO_USER_F_DMA_REGION_MMAP) && !m->nfds)) {
		log_err("%s: DMA_MAP of %u bytes, argsz %u, flags 0x%x, %u fds: expected %zu "
			"bytes, flags READ|WRITE (MMAP with an fd)", dev->name, m->len, map.argsz,
			map.flags, m->nfds, sizeof(map));
		return -EINVAL;
	}
	dma_table_read_lock(dev->dma);
	old = dma_table_lookup(dev->dma, map.addr, map.size);
	existed = old && old->iova == map.addr && old->size == map.size;
	dma_table_read_unlock(dev->dma);

	fd = wire_msg_take_fd(m, 0); /* -1 without one; consumed by the table */
	r = dma_table_map(dev->dma, map.addr, map.size, map.flags & DMA_PROT, fd, map.offset);
	if (r < 0) {
		log_err("%s: DMA_MAP [0x%" PRIx64 ", +0x%" PRIx64 ") refused: %s", dev->name,
			map.addr, map.size, strerror(-r));
		return r;
	}
	if (!existed && dev->ops.dma_mapped) /* an identical re-map is a no-op */
		dev->ops.dma_mapped(dev->info.opaque, map.addr, map.size, map.flags & DMA_PROT);
	conn_reply(c, m, NULL, 0, NULL, 0);
	return 0;
}

struct range {
	uint64_t iova, size;
};

/* Snapshot of the mapped ranges (for dma_unmapping callbacks). */
static struct range *snapshot(struct ferry_device *dev, unsigned *n)
{
	struct range *v;

	dma_table_read_lock(dev->dma);
	*n = dma_table_count(dev->dma);
	v = calloc(*n ? *n : 1, sizeof(*v));
	for (unsigned i = 0; v && i < *n; i++) {
		const struct dma_region *r = dma_table_at(dev->dma, i);
		v[i] = (struct range){r->iova, r->size};
	}
	dma_table_read_unlock(dev->dma);
	if (!v) {
		log_err("%s: out of memory listing %u DMA regions", dev->name, *n);
		*n = 0;
	}
	return v;
}

static void unmap_all(struct ferry_device *dev)
{
	unsigned n;
	struct range *v = dev->ops.dma_unmapping ? snapshot(dev, &n) : NULL;

	for (unsigned i = 0; v && i < n; i++)
		dev->ops.dma_unmapping(dev->info.opaque, v[i].iova, v[i].size);
	free(v);
	dma_table_unmap_all(dev->dma);
}

int handle_dma_unmap(struct ferry_device *dev, struct conn *c, struct wire_msg *m)
{
	struct vfio_user_dma_unmap u;
	const struct dma_region *r;
	bool found;
	int ret;

	memcpy(&u, m->payload, sizeof(u));
	if (m->len != sizeof(u) || u.argsz < sizeof(u) || (u.flags & ~VFIO_DMA_UNMAP_FLAG_ALL) ||
	    ((u.flags & VFIO_DMA_UNMAP_FLAG_ALL) && (u.addr || u.size))) {
		log_err("%s: DMA_UNMAP of %u bytes, argsz %u, flags 0x%x, [0x%" PRIx64 ", +0x%" PRIx64
			"): expected %zu bytes, argsz >= that, flags 0 or ALL (with addr and size 0)",
			dev->name, m->len, u.argsz, u.flags, u.addr, u.size, sizeof(u));
		return -EINVAL;
	}
	if (u.flags & VFIO_DMA_UNMAP_FLAG_ALL) {
		unmap_all(dev);
	} else {
		dma_table_read_lock(dev->dma);
		r = dma_table_lookup(dev->dma, u.addr, u.size);
		found = r && r->iova == u.addr && r->size == u.size;
		dma_table_read_unlock(dev->dma);
		if (!found) {
			log_err("%s: DMA_UNMAP [0x%" PRIx64 ", +0x%" PRIx64
				"): no mapping is exactly that range", dev->name, u.addr, u.size);
			return -ENOENT;
		}
		if (dev->ops.dma_unmapping)
			dev->ops.dma_unmapping(dev->info.opaque, u.addr, u.size);
		if ((ret = dma_table_unmap(dev->dma, u.addr, u.size)) < 0)
			return ret;
	}
	conn_reply_buf(c, m, &u, sizeof(u));
	return 0;
}

void dma_release_client(struct ferry_device *dev)
{
	/* Waits for helpers in flight; the channels are dead so they finish. */
	dma_set_channel(dev, NULL, 0);
	logging_stop(dev);
	logging_shm_release(dev);
	unmap_all(dev);
}
