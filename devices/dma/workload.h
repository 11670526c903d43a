/*
 * ferry-dev-dma driver: the deterministic workload. Every property of op
 * number seq is a pure function of (seed, seq), so the checker recomputes
 * what an op must have produced instead of storing it, and a driver on a
 * migration destination generates exactly what the source would have.
 */
#ifndef FERRY_DEV_DMA_WORKLOAD_H
#define FERRY_DEV_DMA_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

/* Bytes around an op's destination range that must keep their poison. */
#define DMA_WL_GUARD 64u

/* The smallest buffer the generator can place an op in. */
#define DMA_WL_MIN_BUF (4 * DMA_WL_GUARD)

struct dma_wl_op {
	uint16_t opcode;  /* DMA_OP_COPY or DMA_OP_FILL */
	uint32_t len;     /* 1 .. buf_size - 2 * DMA_WL_GUARD */
	uint32_t src_off; /* COPY: offset of the source in the slot's src buffer */
	uint32_t dst_off; /* offset in the slot's dst buffer, >= DMA_WL_GUARD */
	uint64_t pattern; /* FILL */
	uint8_t poison;   /* what the dst window holds before the op */
};

/* splitmix64: a good 64-bit mixer. */
uint64_t dma_wl_mix(uint64_t x);

/* A good op for (@seed, @seq) fitting buffers of @buf_size >= DMA_WL_MIN_BUF
 * bytes, with DMA_WL_GUARD bytes free on both sides of the dst range.
 * Lengths: 60% up to 256 bytes, 35% up to 8 KiB, 5% up to the maximum
 * (which crosses the device's 64 KiB chunk with the default buffers). */
void dma_wl_gen_op(uint64_t seed, uint64_t seq, uint32_t buf_size, struct dma_wl_op *op);

/* Writes the @len source bytes of COPY (@seed, @seq) to @dst. */
void dma_wl_gen_data(uint64_t seed, uint64_t seq, uint8_t *dst, size_t len);

/* Index of the first of @len bytes at @p that differs from COPY (@seed,
 * @seq)'s data, or @len if all match. *@want gets the expected byte. */
size_t dma_wl_check_data(uint64_t seed, uint64_t seq, const uint8_t *p, size_t len,
			 uint8_t *want);

/* Same for a FILL with @pattern. */
size_t dma_wl_check_fill(uint64_t pattern, const uint8_t *p, size_t len, uint8_t *want);

/* Same for @len bytes that must all be @byte. */
size_t dma_wl_check_byte(uint8_t byte, const uint8_t *p, size_t len);

#endif /* FERRY_DEV_DMA_WORKLOAD_H */
