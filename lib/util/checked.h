/*
 * Overflow-safe arithmetic for peer-supplied lengths, offsets and counts.
 * Every range a peer names goes through range_ok() before it is used.
 */
#ifndef FERRY_UTIL_CHECKED_H
#define FERRY_UTIL_CHECKED_H

#include <stdbool.h>
#include <stdint.h>

/* True if [off, off + len) lies inside [0, size), without wrapping. */
static inline bool range_ok(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

/* True if [a, a + alen) and [b, b + blen) overlap; lengths must not wrap. */
static inline bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return alen && blen && a < b + blen && b < a + alen;
}

static inline bool is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
