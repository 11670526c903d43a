/*
 * The capability chain of a DEVICE_GET_REGION_INFO reply (PROTOCOL.md §4.2):
 * 8-byte headers linked by `next`, an offset from the start of the
 * region-info struct, 0 ending the chain. Every offset and length comes from
 * the server, so each is checked against the reply's length before use, and
 * a chain may visit at most as many headers as fit in the reply (a longer
 * walk can only be a loop).
 */
#include "client/client_priv.h"
#include "util/checked.h"
#include "util/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int parse_sparse(const char *name, const uint8_t *buf, uint32_t len, uint32_t off,
			struct ferry_region_desc *d)
{
	struct vfio_user_sparse_mmap head;
	if (!range_ok(off, sizeof(head), len)) {
		log_err("%s: region %u: sparse-mmap cap at %u does not fit the %u-byte reply", name,
			d->index, off, len);
		return -EPROTO;
	}
	memcpy(&head, buf + off, sizeof(head));
	uint32_t room = (len - off - (uint32_t)sizeof(head)) /
			(uint32_t)sizeof(struct vfio_user_sparse_mmap_area);
	if (head.nr_areas > room) {
		log_err("%s: region %u: sparse-mmap cap at %u claims %u areas, room for %u", name,
			d->index, off, head.nr_areas, room);
		return -EPROTO;
	}
	if (head.nr_areas) {
		d->areas = calloc(head.nr_areas, sizeof(*d->areas));
		if (!d->areas)
			return -ENOMEM;
	}
	for (uint32_t i = 0; i < head.nr_areas; i++) {
		struct vfio_user_sparse_mmap_area a;
		memcpy(&a, buf + off + sizeof(head) + i * sizeof(a), sizeof(a));
		if (!range_ok(a.offset, a.size, d->size)) {
			log_err("%s: region %u: sparse area %u [0x%llx, +0x%llx) is outside the "
				"0x%llx-byte region", name, d->index, i, (unsigned long long)a.offset,
				(unsigned long long)a.size, (unsigned long long)d->size);
			return -EPROTO;
		}
		d->areas[i].offset = a.offset;
		d->areas[i].size = a.size;
	}
	d->nr_areas = head.nr_areas;
	return 0;
}

static int parse_type(const char *name, const uint8_t *buf, uint32_t len, uint32_t off,
		      struct ferry_region_desc *d)
{
	struct vfio_user_region_type t;
	if (!range_ok(off, sizeof(t), len)) {
		log_err("%s: region %u: type cap at %u does not fit the %u-byte reply", name,
			d->index, off, len);
		return -EPROTO;
	}
	memcpy(&t, buf + off, sizeof(t));
	d->has_type = true;
	d->type = t.type;
	d->subtype = t.subtype;
	return 0;
}

int client_region_caps_parse(const char *name, const uint8_t *buf, uint32_t len,
		      struct ferry_region_desc *d)
{
	const uint32_t fixed = sizeof(struct vfio_user_region_info);
	struct vfio_user_region_info ri;
	bool seen_sparse = false;

	if (len < fixed)
		return -EPROTO;
	memcpy(&ri, buf, sizeof(ri));
	if (!(ri.flags & VFIO_REGION_INFO_FLAG_CAPS))
		return 0;
	if (!ri.cap_offset) {
		/* The kernel's "buffer too small" shape; we asked big enough. */
		log_debug("%s: region %u: CAPS flag without a capability offset", name, d->index);
		return 0;
	}

	uint32_t max_hops = (len - fixed) / (uint32_t)sizeof(struct vfio_user_cap_header);
	uint32_t hops = 0;
	for (uint32_t off = ri.cap_offset; off; ) {
		struct vfio_user_cap_header h;
		if (++hops > max_hops) {
			log_err("%s: region %u: capability chain loops (more than %u links)", name,
				d->index, max_hops);
			return -EPROTO;
		}
		if (off < fixed || !range_ok(off, sizeof(h), len)) {
			log_err("%s: region %u: capability at offset %u is outside the reply "
				"[%u, %u)", name, d->index, off, fixed, len);
			return -EPROTO;
		}
		memcpy(&h, buf + off, sizeof(h));
		int r = 0;
		switch (h.id) {
		case VFIO_REGION_INFO_CAP_SPARSE_MMAP:
			if (seen_sparse) {
				log_err("%s: region %u: second sparse-mmap capability at %u", name,
					d->index, off);
				return -EPROTO;
			}
			seen_sparse = true;
			d->has_sparse = true;
			r = parse_sparse(name, buf, len, off, d);
			break;
		case VFIO_REGION_INFO_CAP_TYPE:
			r = parse_type(name, buf, len, off, d);
			break;
		default:
			log_debug("%s: region %u: skipping capability id %u at %u", name, d->index,
				  h.id, off);
			break;
		}
		if (r < 0)
			return r;
		off = h.next;
	}
	return 0;
}
