/* The fingerprint hash of hash.h. */
#include "hash.h"

#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ferry assumes a little-endian host");

#define K1 0x9e3779b185ebca87ull
#define K2 0xc2b2ae3d27d4eb4full
#define K3 0x165667b19e3779f9ull
#define K4 0x85ebca77c2b2ae63ull
#define K5 0x27d4eb2f165667c5ull

static inline uint64_t rotl(uint64_t x, unsigned r)
{
	return (x << r) | (x >> (64 - r));
}

static inline uint64_t load64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint64_t lane(uint64_t acc, uint64_t w)
{
	return rotl(acc + w * K2, 31) * K1;
}

static inline uint64_t merge(uint64_t h, uint64_t acc)
{
	return (h ^ lane(0, acc)) * K1 + K4;
}

uint64_t vram_hash64(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	const unsigned char *end = p + len;
	uint64_t h;

	if (len >= 32) {
		uint64_t a = K1 + K2, b = K2, c = 0, d = 0 - K1;

		do {
			a = lane(a, load64(p));
			b = lane(b, load64(p + 8));
			c = lane(c, load64(p + 16));
			d = lane(d, load64(p + 24));
			p += 32;
		} while ((size_t)(end - p) >= 32);
		h = rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18);
		h = merge(h, a);
		h = merge(h, b);
		h = merge(h, c);
		h = merge(h, d);
	} else {
		h = K5;
	}
	h += (uint64_t)len;
	for (; (size_t)(end - p) >= 8; p += 8)
		h = rotl(h ^ lane(0, load64(p)), 27) * K1 + K4;
	for (; p < end; p++)
		h = rotl(h ^ (*p * K5), 11) * K1;
	h ^= h >> 33;
	h *= K2;
	h ^= h >> 29;
	h *= K3;
	h ^= h >> 32;
	return h;
}
