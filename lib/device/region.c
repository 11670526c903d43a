/*
 * Regions (PROTOCOL.md §3.1, §3.2, §3.4, §4): DEVICE_GET_INFO,
 * DEVICE_GET_REGION_INFO, DEVICE_GET_REGION_IO_FDS, REGION_READ,
 * REGION_WRITE and REGION_WRITE_MULTI.
 *
 * A client access is split into segments, each served by its owner:
 *   config space (region 7)          -> config.c (pci_config + events)
 *   MSI-X table / PBA in the MSI-X BAR -> irq.c (the library's copies)
 *   an mmap area of a region with fd -> pread/pwrite on that fd, so the
 *                                       bytes are the ones the client maps
 *   anything else                    -> the model's region_access callback
 * Bounds are checked once, overflow-safe, before any segment runs. Every
 * access outside config space needs the device powered: it is bracketed by
 * power_wake_for/power_wake_done (power.c), mmap areas included (the
 * message is the client's trapped path to them).
 *
 * Region info follows libvfio-user's retry convention: a mappable region is
 * always described with a SPARSE_MMAP capability (one whole-region area if
 * the model gave none) and its fd; when the request's argsz cannot hold the
 * capability, the reply is the 32-byte head with argsz = size needed, MMAP
 * set, CAPS clear and no fd, and the client asks again.
 */
#include "device/device_priv.h"
#include "util/checked.h"
#include "util/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint64_t region_size(const struct ferry_device *dev, unsigned index)
{
	if (index == FERRY_PCI_CONFIG)
		return pci_config_size(dev->cfg);
	return index < FERRY_PCI_NUM_REGIONS ? dev->info.regions[index].size : 0;
}

static uint32_t region_flags(const struct ferry_device *dev, unsigned index)
{
	if (index == FERRY_PCI_CONFIG)
		return VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
	uint32_t f = dev->info.regions[index].flags;
	return (f & FERRY_REGION_READ ? VFIO_REGION_INFO_FLAG_READ : 0) |
	       (f & FERRY_REGION_WRITE ? VFIO_REGION_INFO_FLAG_WRITE : 0);
}

/* ---- accesses ---- */

enum seg_kind { SEG_TRAP, SEG_MMAP, SEG_MSIX_TABLE, SEG_MSIX_PBA };

struct span {
	uint64_t off, len;
	enum seg_kind kind;
};

/* Kind of the byte at @pos of region @index and where that kind ends
 * (clipped to @end). */
static enum seg_kind classify(const struct ferry_device *dev, unsigned index, uint64_t pos,
			      uint64_t end, uint64_t *seg_end, uint64_t *seg_base)
{
	const struct ferry_region *r = &dev->info.regions[index];
	unsigned nvec = dev->info.irq_count[FERRY_IRQ_MSIX];
	uint64_t next = end; /* the nearest special range starting after pos */
	struct span sp[2 + DEV_MAX_MMAP_AREAS];
	unsigned n = 0;

	if (nvec && index == dev->info.msix_bar) {
		sp[n++] = (struct span){dev->info.msix_table_offset, (uint64_t)nvec * 16,
					SEG_MSIX_TABLE};
		sp[n++] = (struct span){dev->info.msix_pba_offset, (uint64_t)(nvec + 63) / 64 * 8,
					SEG_MSIX_PBA};
	}
	if (dev->region_fd[index] >= 0) {
		if (!r->nr_areas)
			sp[n++] = (struct span){0, r->size, SEG_MMAP};
		for (unsigned a = 0; a < r->nr_areas; a++)
			sp[n++] = (struct span){r->areas[a].offset, r->areas[a].size, SEG_MMAP};
	}
	for (unsigned i = 0; i < n; i++) {
		if (pos >= sp[i].off && pos - sp[i].off < sp[i].len) {
			uint64_t e = sp[i].off + sp[i].len;
			*seg_end = e < end ? e : end;
			*seg_base = sp[i].off;
			return sp[i].kind;
		}
		if (sp[i].off > pos && sp[i].off < next)
			next = sp[i].off;
	}
	*seg_end = next;
	*seg_base = 0;
	return SEG_TRAP;
}

static int fd_access(struct ferry_device *dev, unsigned index, uint64_t off, void *buf,
		     uint32_t len, bool is_write)
{
	int fd = dev->region_fd[index];
	uint64_t foff = dev->info.regions[index].mmap_offset + off; /* checked at create */
	uint32_t done = 0;

	while (done < len) {
		ssize_t n = is_write ? pwrite(fd, (uint8_t *)buf + done, len - done, (off_t)(foff + done))
				     : pread(fd, (uint8_t *)buf + done, len - done, (off_t)(foff + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int r = n < 0 ? -errno : -EIO;
			log_err("%s: region %u %s of %u bytes at 0x%" PRIx64 " through its fd: %s",
				dev->name, index, is_write ? "write" : "read", len, off, strerror(-r));
			return r;
		}
		done += (uint32_t)n;
	}
	return 0;
}

int region_access(struct ferry_device *dev, unsigned index, uint64_t off, void *buf,
		  uint32_t count, bool is_write)
{
	uint64_t pos = off, end = off + count; /* bounds checked by the caller */
	int r = 0;

	if (!count)
		return 0;
	if (index == FERRY_PCI_CONFIG) /* reachable in D3hot: never wakes (power.c) */
		return config_access(dev, off, buf, count, is_write);
	power_wake_for(dev, is_write ? "a region write" : "a region read");
	while (pos < end && r == 0) {
		uint64_t seg_end, base;
		enum seg_kind k = classify(dev, index, pos, end, &seg_end, &base);
		uint8_t *p = (uint8_t *)buf + (pos - off);
		uint32_t len = (uint32_t)(seg_end - pos);

		switch (k) {
		case SEG_MSIX_TABLE:
			r = irq_msix_table_access(dev, pos - base, p, len, is_write);
			break;
		case SEG_MSIX_PBA:
			r = irq_msix_pba_access(dev, pos - base, p, len, is_write);
			break;
		case SEG_MMAP:
			r = fd_access(dev, index, pos, p, len, is_write);
			break;
		case SEG_TRAP:
			r = dev->ops.region_access(dev->info.opaque, index, pos, p, len, is_write);
			if (r > 0)
				r = 0;
			if (r < 0)
				log_err("%s: model failed %s of %u bytes at 0x%" PRIx64
					" of region %u: %s", dev->name, is_write ? "write" : "read",
					len, pos, index, strerror(-r));
			break;
		}
		pos = seg_end;
	}
	power_wake_done(dev);
	return r;
}

/* Checks a client access against the region and our transfer limit. */
static int check_access(const struct ferry_device *dev, const char *what, uint32_t index,
			uint64_t off, uint32_t count, bool is_write)
{
	const char *why = NULL;

	if (index >= FERRY_PCI_NUM_REGIONS)
		why = "no such region";
	else if (count > DEV_MAX_DATA_XFER)
		why = "count exceeds max_data_xfer_size";
	else if (!range_ok(off, count, region_size(dev, index)))
		why = "outside the region";
	else if (count && !(region_flags(dev, index) &
			    (is_write ? VFIO_REGION_INFO_FLAG_WRITE : VFIO_REGION_INFO_FLAG_READ)))
		why = is_write ? "region is not writable" : "region is not readable";
	if (!why)
		return 0;
	log_err("%s: %s of %u bytes at 0x%" PRIx64 " of region %u (size 0x%" PRIx64 "): %s",
		dev->name, what, count, off, index, region_size(dev, index), why);
	return -EINVAL;
}

int handle_region_read(struct ferry_device *dev, struct conn *c, struct wire_msg *m)
{
	struct vfio_user_region_access a;
	uint8_t *buf;
	int r;

	memcpy(&a, m->payload, sizeof(a));
	if (m->len != sizeof(a)) {
		log_err("%s: REGION_READ request of %u bytes, expected %zu", dev->name, m->len,
			sizeof(a));
		return -EINVAL;
	}
	if ((r = check_access(dev, "REGION_READ", a.region, a.offset, a.count, false)) < 0)
		return r;
	buf = malloc(sizeof(a) + a.count);
	if (!buf) {
		log_err("%s: REGION_READ: out of memory for %u bytes", dev->name, a.count);
		return -ENOMEM;
	}
	memcpy(buf, &a, sizeof(a));
	r = region_access(dev, a.region, a.offset, buf + sizeof(a), a.count, false);
	if (r == 0)
		conn_reply_buf(c, m, buf, sizeof(a) + a.count);
	free(buf);
	return r;
}

int handle_region_write(struct ferry_device *dev, struct conn *c, struct wire_msg *m)
{
	struct vfio_user_region_access a;
	int r;

	memcpy(&a, m->payload, sizeof(a));
	if (m->len - sizeof(a) != a.count) {
		log_err("%s: REGION_WRITE carries %zu data bytes but count is %u", dev->name,
			m->len - sizeof(a), a.count);
		return -EINVAL;
	}
	if ((r = check_access(dev, "REGION_WRITE", a.region, a.offset, a.count, true)) < 0)
		return r;
	r = region_access(dev, a.region, a.offset, m->payload + sizeof(a), a.count, true);
	if (r < 0)
		return r;
	conn_reply_buf(c, m, &a, sizeof(a));
	return 0;
}

int handle_region_write_multi(struct ferry_device *dev, struct conn *c, struct wire_msg *m)
{
	struct vfio_user_write_multi head;
	struct vfio_user_write_multi_entry e;
	uint64_t done = 0;
	int r;

	memcpy(&head, m->payload, sizeof(head));
	if (!head.wr_cnt || head.wr_cnt > VFIO_USER_MULTI_MAX ||
	    m->len != sizeof(head) + head.wr_cnt * sizeof(e)) {
		log_err("%s: REGION_WRITE_MULTI of %" PRIu64 " writes in %u bytes (1..%u writes "
			"of %zu bytes each)", dev->name, head.wr_cnt, m->len, VFIO_USER_MULTI_MAX,
			sizeof(e));
		return -EINVAL;
	}
	/* Every entry is checked before the first write is done. */
	for (uint64_t i = 0; i < head.wr_cnt; i++) {
		memcpy(&e, m->payload + sizeof(head) + i * sizeof(e), sizeof(e));
		if (!e.count || e.count > VFIO_USER_MULTI_DATA) {
			log_err("%s: REGION_WRITE_MULTI entry %" PRIu64 " has count %u (1..%u)",
				dev->name, i, e.count, VFIO_USER_MULTI_DATA);
			return -EINVAL;
		}
		if ((r = check_access(dev, "REGION_WRITE_MULTI", e.region, e.offset, e.count,
				      true)) < 0)
			return r;
	}
	/* A failing write ends the batch; the reply counts those completed. */
	for (; done < head.wr_cnt; done++) {
		memcpy(&e, m->payload + sizeof(head) + done * sizeof(e), sizeof(e));
		if (region_access(dev, e.region, e.offset, e.data, e.count, true) < 0)
			break;
	}
	head.wr_cnt = done;
	conn_reply_buf(c, m, &head, sizeof(head));
	return 0;
}

/* ---- information ---- */

int handle_device_get_info(struct ferry_device *dev, struct conn *c, struct wire_msg *m)
{
	struct vfio_user_device_info in, out = {
		.argsz = sizeof(out),
		.flags = VFIO_DEVICE_FLAGS_RESET | VFIO_DEVICE_FLAGS_PCI,
		.num_regions = FERRY_PCI_NUM_REGIONS,
		.num_irqs = FERRY_IRQ_NUM,
	};

	memcpy(&in, m->payload, sizeof(in));
	if (in.argsz < sizeof(out)) {
		log_err("%s: DEVICE_GET_INFO argsz %u < %zu", dev->name, in.argsz, sizeof(out));
		return -EINVAL;
	}
	conn_reply_buf(c, m, &out, sizeof(out));
	return 0;
}

int handle_get_region_info(struct ferry_device *dev, struct conn *c, struct wire_msg *m)
{
	struct vfio_user_region_info in, out;
	struct {
		struct vfio_user_sparse_mmap head;
		struct vfio_user_sparse_mmap_area areas[DEV_MAX_MMAP_AREAS];
	} __attribute__((packed)) cap;
	const struct ferry_region *r;
	struct iovec iov[2];
	int fd;

	memcpy(&in, m->payload, sizeof(in));
	if (in.argsz < sizeof(in) || in.index >= FERRY_PCI_NUM_REGIONS) {
		log_err("%s: DEVICE_GET_REGION_INFO argsz %u (at least %zu), index %u (below %u)",
			dev->name, in.argsz, sizeof(in), in.index, FERRY_PCI_NUM_REGIONS);
		return -EINVAL;
	}
	memset(&out, 0, sizeof(out));
	out.argsz = sizeof(out);
	out.index = in.index;
	out.size = region_size(dev, in.index);
	out.flags = out.size ? region_flags(dev, in.index) : 0;
	iov[0] = (struct iovec){.iov_base = &out, .iov_len = sizeof(out)};

	r = &dev->info.regions[in.index];
	fd = dev->region_fd[in.index];
	if (in.index == FERRY_PCI_CONFIG || fd < 0) {
		conn_reply(c, m, iov, 1, NULL, 0);
		return 0;
	}
	unsigned n = r->nr_areas ? r->nr_areas : 1;
	uint32_t cap_len = (uint32_t)(sizeof(cap.head) + n * sizeof(cap.areas[0]));
	out.argsz = (uint32_t)sizeof(out) + cap_len;
	out.flags |= VFIO_REGION_INFO_FLAG_MMAP;
	out.offset = r->mmap_offset;
	if (in.argsz < out.argsz) { /* the client retries with argsz = out.argsz */
		conn_reply(c, m, iov, 1, NULL, 0);
		return 0;
	}
	out.flags |= VFIO_REGION_INFO_FLAG_CAPS;
	out.cap_offset = sizeof(out);
	memset(&cap.head, 0, sizeof(cap.head));
	cap.head.header.id = VFIO_REGION_INFO_CAP_SPARSE_MMAP;
	cap.head.header.version = 1;
	cap.head.header.next = 0;
	cap.head.nr_areas = n;
	for (unsigned i = 0; i < n; i++) {
		cap.areas[i].offset = r->nr_areas ? r->areas[i].offset : 0;
		cap.areas[i].size = r->nr_areas ? r->areas[i].size : r->size;
	}
	iov[1] = (struct iovec){.iov_base = &cap, .iov_len = cap_len};
	conn_reply(c, m, iov, 2, &fd, 1);
	return 0;
}

/* No ioeventfd offload: every region answers with zero sub-regions, the
 * valid "nothing to offload" reply (PROTOCOL.md §4.3). */
int handle_get_region_io_fds(struct ferry_device *dev, struct conn *c, struct wire_msg *m)
{
	struct vfio_user_region_io_fds in, out;

	memcpy(&in, m->payload, sizeof(in));
	if (in.argsz < sizeof(in) || in.flags || in.count || in.index >= FERRY_PCI_NUM_REGIONS) {
		log_err("%s: DEVICE_GET_REGION_IO_FDS argsz %u, flags 0x%x, count %u, index %u: "
			"argsz >= %zu, flags and count 0, index below %u expected", dev->name,
			in.argsz, in.flags, in.count, in.index, sizeof(in), FERRY_PCI_NUM_REGIONS);
		return -EINVAL;
	}
	out = (struct vfio_user_region_io_fds){.argsz = sizeof(out), .index = in.index};
	conn_reply_buf(c, m, &out, sizeof(out));
	return 0;
}
