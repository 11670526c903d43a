/* Plain (non-atomic) u64-word bitmaps: bit p is word p / 64, bit p % 64. */
#ifndef FERRY_UTIL_BITMAP_H
#define FERRY_UTIL_BITMAP_H

#include <stdint.h>

/* Sets bits [first, first + n) of @bm; n > 0 and first + n must not wrap. */
static inline void bitmap_set_range(uint64_t *bm, uint64_t first, uint64_t n)
{
	uint64_t last = first + n - 1, w = first / 64, wl = last / 64;
	uint64_t lo = ~0ull << (first % 64), hi = ~0ull >> (63 - last % 64);

	if (w == wl) {
		bm[w] |= lo & hi;
		return;
	}
	bm[w] |= lo;
	for (w++; w < wl; w++)
		bm[w] = ~0ull;
	bm[wl] |= hi;
}

#endif
