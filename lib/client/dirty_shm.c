/*
 * The dirty_shm extension, client half (docs/protocol-extensions.md): one
 * sealed memfd per connection, registered with a SET of
 * FERRY_FEATURE_DIRTY_SHM on the first report; each report chunk is then a
 * GET of that feature, and the device writes the bitmap into the area:
 * a summary word per 64 bitmap words, then only the non-zero bitmap words,
 * packed in order. We read both sequentially and OR just those words into
 * the caller's bitmap, so a report of a mostly clean range costs about 1/64
 * of its bitmap on either side, and no bitmap crosses the socket.
 *
 * The area is sized once: AREA_BITMAP_BYTES of bitmap (1 Mi words: 64 Mi
 * pages, 256 GiB at 4 KiB) plus its summary. A memfd costs memory only
 * where the device writes, so the size is free until used.
 */
#include "client/dirty_priv.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define AREA_BITMAP_WORDS (1ull << 20)
#define AREA_SUMMARY_WORDS (AREA_BITMAP_WORDS / 64)
#define AREA_SIZE ((AREA_BITMAP_WORDS + AREA_SUMMARY_WORDS) * sizeof(uint64_t))

uint64_t dirty_shm_max_pages(const struct ferry_client *c)
{
	(void)c;
	return AREA_BITMAP_WORDS * 64;
}

/* Makes, seals, maps and registers the area. Dirty lock held. */
static int area_setup(struct ferry_client *c, struct client_dirty *d)
{
	struct vfio_user_dirty_shm_set set = {.size = AREA_SIZE};
	void *p;
	int fd, r;

	fd = memfd_create("ferry-dirty-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	/* Sealed against shrinking, so the device can trust its mapping. */
	if (ftruncate(fd, (off_t)AREA_SIZE) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		r = -errno;
		goto out_fd;
	}
	p = mmap(NULL, AREA_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		r = -errno;
		goto out_fd;
	}
	r = ferry_client_feature(c, FERRY_FEATURE_DIRTY_SHM | VFIO_DEVICE_FEATURE_SET, &set,
				 sizeof(set), &fd, 1, NULL, 0, NULL);
	if (r < 0) {
		munmap(p, AREA_SIZE);
		goto out_fd;
	}
	d->area = p;
	d->size = AREA_SIZE;
out_fd:
	close(fd); /* the device holds its own reference */
	return r;
}

static void dirty_free(struct client_dirty *d)
{
	if (d->area)
		munmap((void *)d->area, d->size);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

void client_dirty_free(struct ferry_client *c)
{
	if (c->dirty)
		dirty_free(c->dirty);
	c->dirty = NULL;
}

/* The connection's state, made on first use. */
static struct client_dirty *get_dirty(struct ferry_client *c)
{
	struct client_dirty *d;

	pthread_mutex_lock(&c->lock);
	d = c->dirty;
	if (!d && (d = calloc(1, sizeof(*d)))) {
		pthread_mutex_init(&d->lock, NULL);
		c->dirty = d;
	}
	pthread_mutex_unlock(&c->lock);
	return d;
}

bool dirty_shm_usable(struct ferry_client *c)
{
	struct client_dirty *d;
	bool ok;

	if (!(c->caps.extensions & FERRY_EXT_DIRTY_SHM) || !(d = get_dirty(c)))
		return false;
	pthread_mutex_lock(&d->lock);
	if (!d->is_tried) {
		int r = area_setup(c, d);
		d->is_tried = true;
		if (r < 0)
			log_warn("%s: dirty_shm negotiated but the area could not be set up (%s): "
				 "DMA logging reports go by message", c->name, strerror(-r));
	}
	ok = d->area != NULL;
	pthread_mutex_unlock(&d->lock);
	return ok;
}

/* ORs the packed words into @bitmap where the summary says they belong.
 * The device may scribble on the area at any time: every word is read once,
 * at most @nonzero packed words (<= the chunk's words: checked) are used,
 * and only positions inside this chunk, so the worst it can do is report
 * wrong bits. */
static void merge_area(const struct client_dirty *d, uint64_t npages, uint64_t nonzero,
		       uint64_t *bitmap, uint64_t bit)
{
	const uint64_t words = (npages + 63) / 64, swords = (words + 63) / 64;
	const volatile uint64_t *sum = (const volatile uint64_t *)d->area;
	const volatile uint64_t *packed = sum + swords;
	uint64_t k = 0;

	for (uint64_t s = 0; s < swords && k < nonzero; s++) {
		uint64_t m = sum[s];

		if (s + 1 == swords && words % 64)
			m &= (1ull << (words % 64)) - 1;
		for (; m && k < nonzero; m &= m - 1) {
			uint64_t w = s * 64 + (unsigned)__builtin_ctzll(m);
			uint64_t v = packed[k++];

			if (w + 1 == words)
				v &= dirty_tail_mask(npages);
			dirty_merge_word(bitmap, bit + 64 * w, v);
		}
	}
}

int dirty_shm_chunk(struct ferry_client *c, uint64_t iova, uint64_t len, uint64_t page_size,
		    uint64_t npages, uint64_t *bitmap, uint64_t bit)
{
	struct client_dirty *d = c->dirty; /* made by dirty_shm_usable() */
	struct vfio_user_dma_logging_report req = {
		.iova = iova, .length = len, .page_size = page_size,
	};
	struct vfio_user_dirty_shm_report rep;
	const uint64_t words = (npages + 63) / 64;
	size_t got = 0;
	int r;

	pthread_mutex_lock(&d->lock);
	r = ferry_client_feature(c, FERRY_FEATURE_DIRTY_SHM | VFIO_DEVICE_FEATURE_GET, &req,
				 sizeof(req), NULL, 0, &rep, sizeof(rep), &got);
	if (r == 0 && (got < sizeof(rep) || rep.iova != iova || rep.length != len ||
		       rep.page_size != page_size || rep.nonzero_words > words)) {
		log_debug("%s: dirty_shm report reply of %zu bytes does not match the request",
			  c->name, got);
		r = -EPROTO;
	}
	if (r == 0)
		merge_area(d, npages, rep.nonzero_words, bitmap, bit);
	pthread_mutex_unlock(&d->lock);
	return r;
}
