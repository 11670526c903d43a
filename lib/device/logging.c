/*
 * DMA logging features (PROTOCOL.md §7.5) on top of dirty_log.h:
 * DMA_LOGGING_START (SET), DMA_LOGGING_STOP (SET), DMA_LOGGING_REPORT (GET).
 *
 * START with num_ranges 0 means "every range mapped now" (SPEC): the mapped
 * ranges are widened to the tracking page size and merged where they touch,
 * so a report of any one mapping falls inside one logging range. A repeated
 * START identical to the one in force succeeds; a different one is refused
 * with EBUSY (STOP first). Logging stops when the client disconnects.
 *
 * START and STOP run under the DMA table's write lock, REPORT under its read
 * lock (the dirty_log.h contract), so no DMA write is half-logged while the
 * ranges change.
 */
#include "device/device_priv.h"
#include "util/checked.h"
#include "util/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Largest report bitmap we build: 256 MiB covers 8 TiB at 4 KiB pages
 * (QEMU's legacy max_bitmap_size). */
#define REPORT_MAX_BITMAP (256ull << 20)

static void forget_request(struct ferry_device *dev)
{
	free(dev->log_req_ranges);
	dev->log_req_ranges = NULL;
	dev->log_req_nranges = 0;
	dev->log_req_page_size = 0;
}

void logging_stop(struct ferry_device *dev)
{
	dma_table_write_lock(dev->dma);
	dirty_log_stop(dev->log);
	forget_request(dev);
	dma_table_write_unlock(dev->dma);
}

/* The mapped ranges, widened to @page_size and merged. Write lock held. */
static int mapped_ranges(struct ferry_device *dev, uint64_t page_size,
			 struct vfio_user_dma_logging_range **out, uint32_t *n_out)
{
	unsigned count = dma_table_count(dev->dma);
	struct vfio_user_dma_logging_range *v = calloc(count ? count : 1, sizeof(*v));
	uint32_t n = 0;

	if (!v)
		return -ENOMEM;
	for (unsigned i = 0; i < count; i++) { /* in iova order */
		const struct dma_region *r = dma_table_at(dev->dma, i);
		uint64_t start = r->iova & ~(page_size - 1);
		uint64_t last = r->iova + r->size - 1; /* no wrap: the table forbids it */
		uint64_t end_page = last & ~(page_size - 1);
		if (end_page > UINT64_MAX - page_size) {
			log_err("%s: DMA_LOGGING_START: mapping at 0x%" PRIx64 " reaches the top of "
				"the address space at page size 0x%" PRIx64, dev->name, r->iova,
				page_size);
			free(v);
			return -EOVERFLOW;
		}
		uint64_t end = end_page + page_size;
		if (n && v[n - 1].iova + v[n - 1].length >= start) {
			if (end > v[n - 1].iova + v[n - 1].length)
				v[n - 1].length = end - v[n - 1].iova;
		} else {
			v[n++] = (struct vfio_user_dma_logging_range){start, end - start};
		}
	}
	*out = v;
	*n_out = n;
	return 0;
}

static bool is_same_request(const struct ferry_device *dev, uint64_t page_size,
			    const struct vfio_user_dma_logging_range *ranges, uint32_t n)
{
	return dev->log_req_page_size == page_size && dev->log_req_nranges == n &&
	       (!n || !memcmp(dev->log_req_ranges, ranges, n * sizeof(*ranges)));
}

static int logging_start(struct ferry_device *dev, uint8_t *data, uint32_t len)
{
	struct vfio_user_dma_logging_control ctl;
	struct vfio_user_dma_logging_range *req = NULL, *built = NULL;
	const struct vfio_user_dma_logging_range *list;
	uint32_t nlist;
	int r;

	memcpy(&ctl, data, sizeof(ctl));
	if (ctl.num_ranges > DIRTY_LOG_MAX_RANGES) {
		log_err("%s: DMA_LOGGING_START with %u ranges, at most %u", dev->name,
			ctl.num_ranges, DIRTY_LOG_MAX_RANGES);
		return -E2BIG;
	}
	const char *why = NULL;
	if (len - sizeof(ctl) < (uint64_t)ctl.num_ranges * sizeof(*req))
		why = "fewer inline ranges than num_ranges";
	else if (ctl.reserved)
		why = "reserved is not 0";
	else if (!is_pow2(ctl.page_size) || ctl.page_size < DIRTY_LOG_MIN_PAGE_SIZE ||
		 ctl.page_size > DIRTY_LOG_MAX_PAGE_SIZE)
		why = "page size is not a power of two from 4 KiB to 1 GiB";
	if (why) {
		log_err("%s: DMA_LOGGING_START page_size 0x%" PRIx64 " num_ranges %u reserved %u in "
			"%u bytes: %s", dev->name, ctl.page_size, ctl.num_ranges, ctl.reserved, len,
			why);
		return -EINVAL;
	}
	if (ctl.num_ranges) {
		req = malloc(ctl.num_ranges * sizeof(*req)); /* aligned copy of the inline array */
		if (!req)
			return -ENOMEM;
		memcpy(req, data + sizeof(ctl), ctl.num_ranges * sizeof(*req));
	}

	dma_table_write_lock(dev->dma);
	if (dirty_log_is_started(dev->log)) {
		r = is_same_request(dev, ctl.page_size, req, ctl.num_ranges) ? 0 : -EBUSY;
		if (r)
			log_err("%s: DMA_LOGGING_START while logging with a different request "
				"(page size 0x%" PRIx64 "): stop first", dev->name,
				dev->log_req_page_size);
		goto out_unlock;
	}
	if (ctl.num_ranges) {
		list = req;
		nlist = ctl.num_ranges;
	} else if ((r = mapped_ranges(dev, ctl.page_size, &built, &nlist)) < 0) {
		goto out_unlock;
	} else {
		list = built;
	}
	r = dirty_log_start(dev->log, ctl.page_size, list, nlist);
	if (r < 0) {
		log_err("%s: DMA_LOGGING_START page_size 0x%" PRIx64 " with %u ranges: %s",
			dev->name, ctl.page_size, nlist, strerror(-r));
		goto out_unlock;
	}
	dev->log_req_page_size = ctl.page_size;
	dev->log_req_nranges = ctl.num_ranges;
	dev->log_req_ranges = req;
	req = NULL;
	log_info("%s: DMA logging started: page size 0x%" PRIx64 ", %u ranges", dev->name,
		 ctl.page_size, nlist);
out_unlock:
	dma_table_write_unlock(dev->dma);
	free(built);
	free(req);
	return r;
}

static int logging_stop_set(struct ferry_device *dev, uint8_t *data, uint32_t len)
{
	(void)data, (void)len; /* any trailing control struct is ignored (LVU does too) */
	logging_stop(dev);
	return 0;
}

static int logging_report(struct ferry_device *dev, const uint8_t *in, uint32_t in_len,
			  uint32_t max_out, struct feature_reply *out)
{
	struct vfio_user_dma_logging_report rep;
	uint64_t bm;
	uint8_t *buf;
	int r;

	(void)in_len;
	memcpy(&rep, in, sizeof(rep));
	bm = dirty_log_bitmap_size(rep.length, rep.page_size);
	if (!bm || rep.length > UINT64_MAX - rep.iova || !is_pow2(rep.page_size) ||
	    rep.page_size < DIRTY_LOG_MIN_PAGE_SIZE) {
		log_err("%s: DMA_LOGGING_REPORT [0x%" PRIx64 ", +0x%" PRIx64 ") page size 0x%" PRIx64
			": empty or wrapping range, or bad page size", dev->name, rep.iova,
			rep.length, rep.page_size);
		return -EINVAL;
	}
	if (bm > REPORT_MAX_BITMAP) {
		log_err("%s: DMA_LOGGING_REPORT bitmap of %" PRIu64 " bytes exceeds %llu", dev->name,
			bm, REPORT_MAX_BITMAP);
		return -E2BIG;
	}
	if (sizeof(rep) + bm > max_out) {
		log_err("%s: DMA_LOGGING_REPORT needs argsz %" PRIu64 ", got %zu", dev->name,
			sizeof(rep) + bm + sizeof(struct vfio_user_device_feature),
			max_out + sizeof(struct vfio_user_device_feature));
		return -EINVAL;
	}
	buf = malloc(sizeof(rep) + bm);
	if (!buf) {
		log_err("%s: DMA_LOGGING_REPORT: out of memory for %" PRIu64 " bytes", dev->name, bm);
		return -ENOMEM;
	}
	memcpy(buf, &rep, sizeof(rep));
	dma_table_read_lock(dev->dma);
	r = dirty_log_report(dev->log, rep.iova, rep.length, rep.page_size,
			     (uint64_t *)(buf + sizeof(rep)));
	dma_table_read_unlock(dev->dma);
	if (r < 0) {
		free(buf);
		return r;
	}
	out->data = buf;
	out->len = (uint32_t)(sizeof(rep) + bm);
	return 0;
}

const struct feature_ops feature_dma_logging_start = {
	.index = VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
	.name = "DMA_LOGGING_START",
	.ops = VFIO_DEVICE_FEATURE_SET,
	.min_set_len = sizeof(struct vfio_user_dma_logging_control),
	.set = logging_start,
};

const struct feature_ops feature_dma_logging_stop = {
	.index = VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
	.name = "DMA_LOGGING_STOP",
	.ops = VFIO_DEVICE_FEATURE_SET,
	.set = logging_stop_set,
};

const struct feature_ops feature_dma_logging_report = {
	.index = VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
	.name = "DMA_LOGGING_REPORT",
	.ops = VFIO_DEVICE_FEATURE_GET,
	.min_get_len = sizeof(struct vfio_user_dma_logging_report),
	.get = logging_report,
};
