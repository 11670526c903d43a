/*
 * DMA logging from the client (PROTOCOL.md §7.5): DMA_LOGGING_START, STOP
 * and REPORT. See include/ferry/client_dirty.h for the contract and
 * dirty_priv.h for how reports are cut and merged.
 *
 * The REPORT path makes no copy of the bitmap of its own: the wire layer
 * receives each reply into one buffer, and the reply's words are ORed from
 * there into the caller's bitmap (or, with dirty_shm, the non-zero words
 * are ORed from the shared area).
 */
#include "client/dirty_priv.h"
#include "util/checked.h"
#include "util/bitmap.h"
#include "util/log.h"

#include <ferry/client_dirty.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(struct ferry_dirty_range) == sizeof(struct vfio_user_dma_logging_range),
	       "a ferry_dirty_range array is sent as it is");

/* Bitmap bytes per REPORT reply: our max_data_xfer_size. The envelope and
 * the echoed request (32 bytes) fit in the WIRE_MSG_OVERHEAD our channel
 * accepts on top, so a reply is at most 1 MiB + 32 bytes (what libvfio-user
 * accepts as a message, too). A multiple of 8: chunks are whole words. */
#define REPORT_CHUNK_BYTES ((uint64_t)CLIENT_MAX_XFER)
#define REPORT_CHUNK_PAGES (REPORT_CHUNK_BYTES * 8)

struct report_req {
	struct vfio_user_device_feature f;
	struct vfio_user_dma_logging_report r;
} __attribute__((packed));

int ferry_client_dirty_probe(struct ferry_client *c)
{
	int r = ferry_client_feature_probe(c, VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
					   VFIO_DEVICE_FEATURE_SET);
	if (!r)
		r = ferry_client_feature_probe(c, VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
					       VFIO_DEVICE_FEATURE_SET);
	if (!r)
		r = ferry_client_feature_probe(c, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
					       VFIO_DEVICE_FEATURE_GET);
	return r;
}

int ferry_client_dirty_start(struct ferry_client *c, uint64_t page_size,
			     const struct ferry_dirty_range *ranges, unsigned n,
			     uint64_t *tracked_page_size)
{
	struct vfio_user_dma_logging_control ctl = {.page_size = page_size, .num_ranges = n};
	struct vfio_user_dma_logging_control echo;
	uint64_t len = sizeof(ctl) + (uint64_t)n * sizeof(*ranges);
	size_t got = 0;
	uint8_t *buf;
	int r;

	if (!is_pow2(page_size) || page_size < 4096 || (n && !ranges)) {
		log_err("%s: DMA_LOGGING_START page size 0x%" PRIx64 " with %u ranges%s: bad "
			"arguments", c->name, page_size, n, n && !ranges ? " (no array)" : "");
		return -EINVAL;
	}
	if (len > c->caps.max_data_xfer_size) {
		log_err("%s: DMA_LOGGING_START with %u ranges needs %" PRIu64 " bytes, the server "
			"takes %u", c->name, n, len, c->caps.max_data_xfer_size);
		return -E2BIG;
	}
	buf = malloc((size_t)len);
	if (!buf) {
		log_err("%s: DMA_LOGGING_START: out of memory for %u ranges", c->name, n);
		return -ENOMEM;
	}
	memcpy(buf, &ctl, sizeof(ctl));
	if (n)
		memcpy(buf + sizeof(ctl), ranges, (size_t)n * sizeof(*ranges));
	r = ferry_client_feature(c, VFIO_DEVICE_FEATURE_DMA_LOGGING_START | VFIO_DEVICE_FEATURE_SET, buf,
				 (size_t)len, NULL, 0, &echo, sizeof(echo), &got);
	free(buf);
	if (r < 0) {
		log_err("%s: DMA_LOGGING_START page size 0x%" PRIx64 " with %u ranges: %s", c->name,
			page_size, n, strerror(-r));
		return r;
	}
	/* The echo carries the page size the device chose (a hint, §7.5). */
	if (got < sizeof(echo) || !is_pow2(echo.page_size)) {
		log_err("%s: DMA_LOGGING_START reply of %zu bytes names page size 0x%" PRIx64,
			c->name, got, got < sizeof(echo) ? 0 : echo.page_size);
		return -EPROTO;
	}
	if (tracked_page_size)
		*tracked_page_size = echo.page_size;
	return 0;
}

int ferry_client_dirty_stop(struct ferry_client *c)
{
	/* The control struct, though STOP needs no data: libvfio-user refuses
	 * payload-less commands and ignores it. */
	struct vfio_user_dma_logging_control ctl = {0};
	int r = ferry_client_feature(c, VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP | VFIO_DEVICE_FEATURE_SET, &ctl,
				     sizeof(ctl), NULL, 0, NULL, 0, NULL);
	if (r < 0)
		log_err("%s: DMA_LOGGING_STOP: %s", c->name, strerror(-r));
	return r;
}

/* ORs @npages bits from the reply words at @src into @dst at bit @bit. */
static void merge_run(uint64_t *dst, uint64_t bit, const uint8_t *src, uint64_t npages)
{
	const uint64_t words = (npages + 63) / 64;
	uint64_t w, v;

	if (bit % 64 == 0) {
		uint64_t *d = dst + bit / 64;
		for (w = 0; w + 1 < words; w++) { /* the plain OR every later chunk takes */
			memcpy(&v, src + 8 * w, sizeof(v));
			d[w] |= v;
		}
	} else {
		for (w = 0; w + 1 < words; w++) {
			memcpy(&v, src + 8 * w, sizeof(v));
			dirty_merge_word(dst, bit + 64 * w, v);
		}
	}
	memcpy(&v, src + 8 * w, sizeof(v));
	dirty_merge_word(dst, bit + 64 * w, v & dirty_tail_mask(npages));
}

/* One REPORT message, its reply ORed into @bitmap at @bit. Quiet: the
 * caller logs. */
static int report_msg_chunk(struct ferry_client *c, uint64_t iova, uint64_t len,
			    uint64_t page_size, uint64_t npages, uint64_t *bitmap, uint64_t bit)
{
	const uint64_t bm = (npages + 63) / 64 * 8; /* <= REPORT_CHUNK_BYTES */
	const uint32_t want = (uint32_t)(sizeof(struct report_req) + bm);
	struct report_req req = {
		.f = {.argsz = want,
		      .flags = VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT | VFIO_DEVICE_FEATURE_GET},
		.r = {.iova = iova, .length = len, .page_size = page_size},
	};
	struct iovec iov = {.iov_base = &req, .iov_len = sizeof(req)};
	struct client_req cr = {
		.what = "DMA_LOGGING_REPORT", .cmd = VFIO_USER_DEVICE_FEATURE, .iov = &iov,
		.iovcnt = 1, .min_reply = sizeof(req), .quiet = true,
	};
	struct report_req rep;
	struct wire_msg m;
	int r = client_allow_rx(c, want); /* within the default limit: no change */

	if (r < 0 || (r = client_call(c, &cr, &m)) < 0)
		return r;
	memcpy(&rep, m.payload, sizeof(rep));
	/* argsz says how much of the payload is data; some servers pad */
	if ((rep.f.flags & VFIO_DEVICE_FEATURE_MASK) != VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT ||
	    rep.f.argsz < want || m.len < want || rep.r.iova != iova || rep.r.length != len ||
	    rep.r.page_size != page_size) {
		log_debug("%s: DMA_LOGGING_REPORT reply: feature %u, argsz %u, %u bytes, "
			  "[0x%" PRIx64 ", +0x%" PRIx64 ") page size 0x%" PRIx64, c->name,
			  rep.f.flags & VFIO_DEVICE_FEATURE_MASK, rep.f.argsz, m.len, rep.r.iova,
			  rep.r.length, rep.r.page_size);
		wire_msg_release(&m);
		return -EPROTO;
	}
	merge_run(bitmap, bit, m.payload + sizeof(rep), npages);
	wire_msg_release(&m);
	return 0;
}

int ferry_client_dirty_report_at(struct ferry_client *c, uint64_t iova, uint64_t length,
				 uint64_t page_size, uint64_t *bitmap, uint64_t first_bit)
{
	unsigned shift;
	uint64_t total, done, max_pages;
	bool is_shm;

	if (!is_pow2(page_size) || page_size < 4096 || !length || length > UINT64_MAX - iova ||
	    !bitmap) {
		log_err("%s: DMA_LOGGING_REPORT [0x%" PRIx64 ", +0x%" PRIx64 ") page size 0x%" PRIx64
			": bad arguments", c->name, iova, length, page_size);
		return -EINVAL;
	}
	shift = (unsigned)__builtin_ctzll(page_size);
	total = ((length - 1) >> shift) + 1;
	if (first_bit > UINT64_MAX - 64 - total) {
		log_err("%s: DMA_LOGGING_REPORT of %" PRIu64 " pages at bit %" PRIu64 ": bitmap "
			"offset too large", c->name, total, first_bit);
		return -EINVAL;
	}
	is_shm = dirty_shm_usable(c);
	max_pages = is_shm ? dirty_shm_max_pages(c) : REPORT_CHUNK_PAGES;
	for (done = 0; done < total;) {
		uint64_t bit = first_bit + done;
		uint64_t n = max_pages - bit % 64; /* so that the next chunk starts on a word */
		uint64_t off = done << shift;      /* < length */
		uint64_t len;
		int r;

		if (n > total - done)
			n = total - done;
		len = done + n == total ? length - off : n << shift;
		r = is_shm ? dirty_shm_chunk(c, iova + off, len, page_size, n, bitmap, bit)
			   : report_msg_chunk(c, iova + off, len, page_size, n, bitmap, bit);
		if (r < 0) {
			log_err("%s: DMA_LOGGING_REPORT [0x%" PRIx64 ", +0x%" PRIx64 ") page size "
				"0x%" PRIx64 "%s: %s; every page of [0x%" PRIx64 ", +0x%" PRIx64
				") counted dirty", c->name, iova + off, len, page_size,
				is_shm ? " (dirty_shm)" : "", strerror(-r), iova, length);
			bitmap_set_range(bitmap, first_bit, total);
			return r;
		}
		done += n;
	}
	return 0;
}

int ferry_client_dirty_report(struct ferry_client *c, uint64_t iova, uint64_t length,
			      uint64_t page_size, uint64_t *bitmap)
{
	return ferry_client_dirty_report_at(c, iova, length, page_size, bitmap, 0);
}
