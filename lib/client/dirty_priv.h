/*
 * Client DMA logging internals shared by dirty.c (the API, START / STOP,
 * reports over messages) and dirty_shm.c (reports through the dirty_shm
 * shared area).
 *
 * A report is cut into chunks; chunk k covers pages [done, done + n) of the
 * caller's range and lands at bit first_bit + done of the caller's bitmap.
 * Every chunk but the first starts on a word of that bitmap, so merging is
 * a plain word OR; only a first chunk at an unaligned first_bit shifts.
 */
#ifndef FERRY_CLIENT_DIRTY_PRIV_H
#define FERRY_CLIENT_DIRTY_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "client/client_priv.h"

/* The dirty_shm area of one connection, made on first use. */
struct client_dirty {
	/* One report chunk at a time uses the area: held across that chunk's
	 * wire call (the one lock of the client library held so; nothing the
	 * service thread needs). */
	pthread_mutex_t lock;
	bool is_tried;        /* setup attempted (it is not retried) */
	const uint8_t *area;  /* our read-only mapping, NULL if unusable */
	uint64_t size;
};

/* ORs @v, the bits of 64 consecutive pages, into @dst at bit @bit: one word
 * when bit is a multiple of 64, else two shifted halves. Bits of @v must be
 * 0 past the range (the caller masks the last word), so nothing outside the
 * caller's bitmap is touched. */
static inline void dirty_merge_word(uint64_t *dst, uint64_t bit, uint64_t v)
{
	unsigned sh = (unsigned)(bit % 64);
	uint64_t *d = dst + bit / 64;

	if (!sh) {
		d[0] |= v;
		return;
	}
	d[0] |= v << sh;
	if (v >> (64 - sh))
		d[1] |= v >> (64 - sh);
}

/* Mask of the valid bits of a chunk's last word (@npages > 0). */
static inline uint64_t dirty_tail_mask(uint64_t npages)
{
	return npages % 64 ? (1ull << (npages % 64)) - 1 : ~0ull;
}

/* Whether reports on @c go through the shared area: the extension was
 * negotiated and the area is (or now gets) registered. A failed setup is
 * logged once and reports keep to messages. */
bool dirty_shm_usable(struct ferry_client *c);

/* Pages one shared-area report may cover. */
uint64_t dirty_shm_max_pages(const struct ferry_client *c);

/* One chunk through the area: REPORT [iova, iova + len) at @page_size
 * (@npages pages) ORed into @bitmap at @bit. 0 or a negative errno (the
 * caller logs). */
int dirty_shm_chunk(struct ferry_client *c, uint64_t iova, uint64_t len, uint64_t page_size,
		    uint64_t npages, uint64_t *bitmap, uint64_t bit);

#endif
