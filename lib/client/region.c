/*
 * Regions: DEVICE_GET_REGION_INFO (cached per index, with the mmap fd kept
 * for mapping) and mapping a region's mmap-able areas (PROTOCOL.md §4.2).
 *
 * A region's first query asks for a modest argsz; a server whose answer
 * needs more says so in the reply's argsz and the query is repeated with
 * that size (libvfio-user only attaches the fd once the caps fit).
 */
#include "client/client_priv.h"
#include "util/checked.h"
#include "util/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define REGION_INFO_FIRST_ARGSZ 256u
#define REGION_INFO_MAX_ARGSZ (64u * 1024u)
#define REGION_INFO_ATTEMPTS 3

static void region_free(struct client_region *reg)
{
	if (!reg)
		return;
	if (reg->map_base)
		munmap(reg->map_base, reg->map_len);
	if (reg->fd >= 0)
		close(reg->fd);
	free(reg->desc.areas);
	free(reg);
}

void client_regions_free(struct ferry_client *c)
{
	if (!c->regions)
		return;
	for (uint32_t i = 0; i < c->device.num_regions; i++)
		region_free(c->regions[i]);
	free(c->regions);
	c->regions = NULL;
}

/* Builds the region from a reply that fit in @argsz. Takes the reply's fd. */
static int region_from_reply(struct ferry_client *c, unsigned index, struct wire_msg *m,
			     uint32_t argsz, struct client_region **out)
{
	struct vfio_user_region_info ri;
	memcpy(&ri, m->payload, sizeof(ri));

	if (m->len > argsz) {
		log_err("%s: region %u info reply of %u bytes exceeds the %u we allowed", c->name,
			index, m->len, argsz);
		return -EPROTO;
	}
	if (m->nfds && !(ri.flags & VFIO_REGION_INFO_FLAG_MMAP)) {
		log_err("%s: region %u info reply carried an fd but no MMAP flag", c->name, index);
		return -EPROTO;
	}
	struct client_region *reg = calloc(1, sizeof(*reg));
	if (!reg)
		return -ENOMEM;
	reg->fd = -1;
	reg->desc.index = index;
	reg->desc.flags = ri.flags;
	reg->desc.size = ri.size;
	reg->desc.offset = ri.offset;
	uint32_t len = m->len < ri.argsz ? m->len : ri.argsz;
	int r = client_region_caps_parse(c->name, m->payload, len, &reg->desc);
	if (r < 0) {
		region_free(reg);
		return r;
	}
	if (m->nfds) {
		reg->fd = wire_msg_take_fd(m, 0);
		reg->desc.has_fd = true;
	}
	*out = reg;
	return 0;
}

static int query_region(struct ferry_client *c, unsigned index, struct client_region **out)
{
	uint32_t argsz = REGION_INFO_FIRST_ARGSZ;

	for (int attempt = 0; attempt < REGION_INFO_ATTEMPTS; attempt++) {
		struct vfio_user_region_info req = {.argsz = argsz, .index = index}, ri;
		struct wire_msg m;
		struct iovec iov = {.iov_base = &req, .iov_len = sizeof(req)};
		struct client_req cr = {
			.what = "DEVICE_GET_REGION_INFO", .cmd = VFIO_USER_DEVICE_GET_REGION_INFO,
			.iov = &iov, .iovcnt = 1, .min_reply = sizeof(ri), .max_reply_fds = 1,
		};
		int r = client_call(c, &cr, &m);
		if (r < 0)
			return r;
		memcpy(&ri, m.payload, sizeof(ri));
		if (ri.index != index || ri.argsz < sizeof(ri)) {
			log_err("%s: region %u info reply names region %u with argsz %u", c->name,
				index, ri.index, ri.argsz);
			r = -EPROTO;
		} else if (ri.argsz > argsz) {
			if (ri.argsz > REGION_INFO_MAX_ARGSZ) {
				log_err("%s: region %u info needs %u bytes, more than %u", c->name,
					index, ri.argsz, REGION_INFO_MAX_ARGSZ);
				r = -EPROTO;
			} else {
				argsz = ri.argsz; /* ask again, big enough; fds closed below */
				wire_msg_release(&m);
				continue;
			}
		} else {
			r = region_from_reply(c, index, &m, argsz, out);
		}
		wire_msg_release(&m);
		return r;
	}
	log_err("%s: region %u info: server asked for a larger argsz %d times", c->name, index,
		REGION_INFO_ATTEMPTS);
	return -EPROTO;
}

/* The cached region @index, or NULL. Lock held. */
static struct client_region *cached_locked(struct ferry_client *c, unsigned index)
{
	return c->regions && index < c->device.num_regions ? c->regions[index] : NULL;
}

int ferry_client_region_info(struct ferry_client *c, unsigned index,
			     const struct ferry_region_desc **out)
{
	struct ferry_device_desc dev;
	int r = client_device_desc(c, &dev);
	if (r < 0)
		return r;
	if (index >= dev.num_regions) {
		log_err("%s: region %u does not exist (%u regions)", c->name, index,
			dev.num_regions);
		return -EINVAL;
	}

	pthread_mutex_lock(&c->lock);
	struct client_region *reg = cached_locked(c, index);
	pthread_mutex_unlock(&c->lock);
	if (reg) {
		*out = &reg->desc;
		return 0;
	}

	r = query_region(c, index, &reg);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->lock);
	if (!c->regions)
		c->regions = calloc(c->device.num_regions, sizeof(*c->regions));
	if (!c->regions) {
		r = -ENOMEM;
	} else if (c->regions[index]) {
		region_free(reg); /* a concurrent query got there first */
	} else {
		c->regions[index] = reg;
		reg = NULL;
	}
	if (r == 0)
		*out = &c->regions[index]->desc;
	pthread_mutex_unlock(&c->lock);
	if (r < 0)
		region_free(reg);
	return r;
}

static uint64_t page_size(void)
{
	long p = sysconf(_SC_PAGESIZE);
	return p > 0 ? (uint64_t)p : 4096;
}

/* Maps one area of @reg at @base. Lock held. */
static int map_area(struct ferry_client *c, struct client_region *reg, uint8_t *base,
		    uint64_t off, uint64_t size, int prot)
{
	const struct ferry_region_desc *d = &reg->desc;
	uint64_t pg = page_size();

	if (!size)
		return 0;
	if (off & (pg - 1) || d->offset > (uint64_t)INT64_MAX - off ||
	    (d->offset + off) & (pg - 1)) {
		log_err("%s: region %u area at 0x%llx (file offset 0x%llx + 0x%llx) is not "
			"page-aligned", c->name, d->index, (unsigned long long)off,
			(unsigned long long)d->offset, (unsigned long long)off);
		return -EINVAL;
	}
	void *p = mmap(base + off, (size_t)size, prot, MAP_SHARED | MAP_FIXED, reg->fd,
		       (off_t)(d->offset + off));
	if (p == MAP_FAILED) {
		int e = -errno;
		log_err("%s: region %u: mmap of area 0x%llx+0x%llx failed: %s", c->name, d->index,
			(unsigned long long)off, (unsigned long long)size, strerror(-e));
		return e;
	}
	return 0;
}

static int map_locked(struct ferry_client *c, struct client_region *reg)
{
	const struct ferry_region_desc *d = &reg->desc;
	uint64_t pg = page_size();
	int prot = (d->flags & VFIO_REGION_INFO_FLAG_READ ? PROT_READ : 0) |
		   (d->flags & VFIO_REGION_INFO_FLAG_WRITE ? PROT_WRITE : 0);

	if (reg->fd < 0 || !(d->flags & VFIO_REGION_INFO_FLAG_MMAP) ||
	    (d->has_sparse && !d->nr_areas)) {
		log_err("%s: region %u has nothing to map", c->name, d->index);
		return -ENODEV;
	}
	if (!d->size || d->size > SIZE_MAX - pg || !prot) {
		log_err("%s: region %u of 0x%llx bytes with flags 0x%x cannot be mapped", c->name,
			d->index, (unsigned long long)d->size, d->flags);
		return -EINVAL;
	}
	size_t len = (size_t)((d->size + pg - 1) & ~(pg - 1));
	uint8_t *base = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			     -1, 0);
	if (base == MAP_FAILED) {
		int e = -errno;
		log_err("%s: region %u: cannot reserve 0x%zx bytes: %s", c->name, d->index, len,
			strerror(-e));
		return e;
	}
	int r = 0;
	if (!d->has_sparse)
		r = map_area(c, reg, base, 0, d->size, prot);
	for (unsigned i = 0; r == 0 && i < d->nr_areas; i++)
		r = map_area(c, reg, base, d->areas[i].offset, d->areas[i].size, prot);
	if (r < 0) {
		munmap(base, len);
		return r;
	}
	reg->map_base = base;
	reg->map_len = len;
	return 0;
}

void *ferry_client_region_map(struct ferry_client *c, unsigned index, int *err)
{
	const struct ferry_region_desc *d;
	int r = ferry_client_region_info(c, index, &d);
	void *base = NULL;

	if (r == 0) {
		pthread_mutex_lock(&c->lock);
		struct client_region *reg = cached_locked(c, index);
		if (!reg->map_base && (r = map_locked(c, reg)) == 0)
			r = client_power_mapped_locked(c, reg); /* inaccessible in low power */
		base = reg->map_base;
		pthread_mutex_unlock(&c->lock);
	}
	if (err)
		*err = r;
	return r < 0 ? NULL : base;
}

void ferry_client_region_unmap(struct ferry_client *c, unsigned index)
{
	pthread_mutex_lock(&c->lock);
	struct client_region *reg = cached_locked(c, index);
	if (reg && reg->map_base) {
		munmap(reg->map_base, reg->map_len);
		reg->map_base = NULL;
		reg->map_len = 0;
	}
	pthread_mutex_unlock(&c->lock);
}
