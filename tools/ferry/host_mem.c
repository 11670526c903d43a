/*
 * ferry host: guest memory (one memfd, mapped here and DMA-mapped into every
 * device at iova 0) and the workload areas carved from its top (host.h).
 */
#include "host.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ferry/client.h>
#include <ferry/log.h>

#include "devices/vram/workload.h"
#include "util/prefault.h"

int host_mem_create(struct host *h, uint64_t size, bool is_prealloc)
{
	int rc;

	h->mem_fd = memfd_create("ferry-guest-memory", MFD_CLOEXEC);
	if (h->mem_fd < 0) {
		rc = -errno;
		fprintf(stderr, "ferry host: memfd_create: %s\n", strerror(-rc));
		return rc;
	}
	if (ftruncate(h->mem_fd, (off_t)size) < 0) {
		rc = -errno;
		fprintf(stderr, "ferry host: sizing guest memory to %" PRIu64 " bytes: %s\n", size,
			strerror(-rc));
		return rc;
	}
	h->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, h->mem_fd, 0);
	if (h->mem == MAP_FAILED) {
		rc = -errno;
		h->mem = NULL;
		fprintf(stderr, "ferry host: mapping %" PRIu64 " bytes of guest memory: %s\n", size,
			strerror(-rc));
		return rc;
	}
	h->mem_size = size;
	rc = is_prealloc ? mem_prefault(h->mem_fd, h->mem, size, HOST_PAGE_SIZE) : 0;
	if (rc < 0)
		fprintf(stderr, "ferry host: preallocating %" PRIu64 " bytes of guest memory: %s\n",
			size, strerror(-rc));
	return rc;
}

void host_mem_destroy(struct host *h)
{
	if (h->mem)
		munmap(h->mem, h->mem_size);
	h->mem = NULL;
	if (h->mem_fd >= 0)
		close(h->mem_fd);
	h->mem_fd = -1;
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

/* Bytes of guest memory the workload of @d needs. */
static int area_bytes(struct host_device *d, uint64_t *out)
{
	const struct ferry_region_desc *bar2;
	int rc;

	switch (d->kind) {
	case HOST_KIND_NONE:
		*out = 0;
		return 0;
	case HOST_KIND_DMA:
		*out = HOST_DMA_AREA_BYTES;
		return 0;
	case HOST_KIND_VRAM:
		/* The workload's record is sized by the VRAM: BAR2's size. */
		rc = ferry_client_region_info(d->c, 2, &bar2);
		if (rc < 0 || !bar2->size) {
			fprintf(stderr, "ferry host: %s: cannot read the VRAM size (BAR2): %s\n",
				d->name, rc < 0 ? strerror(-rc) : "empty BAR2");
			return rc < 0 ? rc : -ENODEV;
		}
		*out = align_up(vram_workload_area_size(bar2->size), HOST_AREA_ALIGN);
		return 0;
	}
	return -EINVAL;
}

int host_mem_layout(struct host *h)
{
	uint64_t top = h->mem_size;
	int rc;

	for (unsigned i = 0; i < h->ndev; i++) {
		struct host_device *d = &h->dev[i];
		uint64_t bytes;

		rc = area_bytes(d, &bytes);
		if (rc < 0)
			return rc;
		d->area_size = bytes;
		if (!bytes)
			continue;
		if (bytes > top) {
			fprintf(stderr, "ferry host: guest memory (%" PRIu64 " bytes) is too small "
				"for the workload areas (device %u needs %" PRIu64 ")\n",
				h->mem_size, i, bytes);
			return -ENOSPC;
		}
		top = (top - bytes) & ~((uint64_t)HOST_AREA_ALIGN - 1);
		d->area_off = top;
		ferry_log(FERRY_LOG_INFO, "%s: workload area at guest %#" PRIx64 ", %" PRIu64
			  " bytes", d->name, d->area_off, d->area_size);
	}
	if (h->opt.fill_bytes > top) {
		fprintf(stderr, "ferry host: --fill %" PRIu64 " overlaps the workload areas "
			"(free guest memory ends at %#" PRIx64 ")\n", h->opt.fill_bytes, top);
		return -ENOSPC;
	}
	return 0;
}

/* splitmix64 */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

void host_mem_fill(struct host *h)
{
	uint64_t *p = (uint64_t *)h->mem;
	uint64_t words = h->opt.fill_bytes / sizeof(uint64_t);

	/* One page in eight stays zero, as real guests have many, unless
	 * --fill-dense. */
	for (uint64_t i = 0; i < words; i++)
		p[i] = !h->opt.is_fill_dense && (i / (HOST_PAGE_SIZE / 8)) % 8 == 7 ? 0 : mix(i);
}

void host_mem_dirtied(void *opaque, uint64_t iova, uint64_t len)
{
	struct host *h = opaque;

	dirty_view_mark(h->dv, iova, len);
}
