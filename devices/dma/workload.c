/*
 * ferry-dev-dma driver: the deterministic workload; see workload.h.
 *
 * COPY data is a xorshift64* stream seeded from (seed, seq): one multiply
 * per 8 bytes, so generating and checking cost about as much as a memcpy.
 */
#include "workload.h"

#include <string.h>

#include "regs.h"

#define GOLDEN UINT64_C(0x9e3779b97f4a7c15)

uint64_t dma_wl_mix(uint64_t x)
{
	x += GOLDEN;
	x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
	return x ^ (x >> 31);
}

/* The r-th random word of op seq (independent streams per purpose). */
static uint64_t rnd(uint64_t seed, uint64_t seq, unsigned r)
{
	return dma_wl_mix(seed ^ dma_wl_mix(seq * 8 + r));
}

void dma_wl_gen_op(uint64_t seed, uint64_t seq, uint32_t buf_size, struct dma_wl_op *op)
{
	uint32_t max = buf_size - 2 * DMA_WL_GUARD;
	uint64_t r0 = rnd(seed, seq, 0);
	uint32_t pick = (uint32_t)(r0 % 100), cap;

	if (pick < 60)
		cap = 256;
	else if (pick < 95)
		cap = 8192;
	else
		cap = max;
	if (cap > max)
		cap = max;

	memset(op, 0, sizeof(*op));
	op->opcode = (r0 >> 32) & 1 ? DMA_OP_FILL : DMA_OP_COPY;
	op->len = 1 + (uint32_t)(rnd(seed, seq, 1) % cap);
	/* dst in [GUARD, buf_size - GUARD - len]; src anywhere it fits. */
	op->dst_off = DMA_WL_GUARD + (uint32_t)(rnd(seed, seq, 2) % (max - op->len + 1));
	op->src_off = (uint32_t)(rnd(seed, seq, 3) % (buf_size - op->len + 1));
	op->pattern = rnd(seed, seq, 4);
	op->poison = (uint8_t)(rnd(seed, seq, 5) | 1); /* never 0: fresh memory reads 0 */
}

static uint64_t stream_seed(uint64_t seed, uint64_t seq)
{
	uint64_t s = rnd(seed, seq, 6);

	return s ? s : GOLDEN; /* xorshift state must not be 0 */
}

static uint64_t stream_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * UINT64_C(0x2545f4914f6cdd1d);
}

void dma_wl_gen_data(uint64_t seed, uint64_t seq, uint8_t *dst, size_t len)
{
	uint64_t s = stream_seed(seed, seq);
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t w = stream_next(&s);
		for (unsigned b = 0; b < 8; b++)
			dst[i + b] = (uint8_t)(w >> (8 * b));
	}
	if (i < len) {
		uint64_t w = stream_next(&s);
		for (unsigned b = 0; i < len; b++, i++)
			dst[i] = (uint8_t)(w >> (8 * b));
	}
}

size_t dma_wl_check_data(uint64_t seed, uint64_t seq, const uint8_t *p, size_t len,
			 uint8_t *want)
{
	uint64_t s = stream_seed(seed, seq), w = 0;

	for (size_t i = 0; i < len; i++) {
		if (!(i & 7))
			w = stream_next(&s);
		if (p[i] != (uint8_t)(w >> (8 * (i & 7)))) {
			*want = (uint8_t)(w >> (8 * (i & 7)));
			return i;
		}
	}
	return len;
}

size_t dma_wl_check_fill(uint64_t pattern, const uint8_t *p, size_t len, uint8_t *want)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] != (uint8_t)(pattern >> (8 * (i & 7)))) {
			*want = (uint8_t)(pattern >> (8 * (i & 7)));
			return i;
		}
	}
	return len;
}

size_t dma_wl_check_byte(uint8_t byte, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != byte)
			return i;
	return len;
}
