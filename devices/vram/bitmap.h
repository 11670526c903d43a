/*
 * Plain (non-atomic) page bitmaps for state owned by one thread: the save
 * session's round / pending sets and the load session's received set. One
 * bit per page, bit p in word p / 64 at position p % 64.
 */
#ifndef FERRY_DEV_VRAM_BITMAP_H
#define FERRY_DEV_VRAM_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline size_t bitmap_words(uint64_t nbits)
{
	return (size_t)((nbits + 63) / 64);
}

static inline bool bitmap_test(const uint64_t *bm, uint64_t i)
{
	return (bm[i / 64] >> (i % 64)) & 1;
}

static inline void bitmap_set(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ull << (i % 64);
}

static inline void bitmap_clear(uint64_t *bm, uint64_t i)
{
	bm[i / 64] &= ~(1ull << (i % 64));
}

/* The first set bit at or after @from, or @nbits if there is none. */
static inline uint64_t bitmap_next(const uint64_t *bm, uint64_t nbits, uint64_t from)
{
	while (from < nbits) {
		uint64_t w = bm[from / 64] >> (from % 64);

		if (w) {
			from += (uint64_t)__builtin_ctzll(w);
			return from < nbits ? from : nbits;
		}
		from = (from | 63) + 1;
	}
	return nbits;
}

#endif
