/*
 * ferry-dev-dma: BAR2, device-local scratch memory.
 *
 * A memfd the client may mmap (one sparse area covering the whole BAR) and
 * the device maps too, so trapped REGION_READ/WRITE accesses and the
 * client's mapping see the same bytes. fd starts at -1; destroy is safe on
 * a half-built object.
 */
#ifndef FERRY_DEV_DMA_SCRATCH_H
#define FERRY_DEV_DMA_SCRATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dma_scratch {
	int fd;       /* memfd, owned; -1 when absent */
	uint8_t *mem; /* the device's own mapping; NULL when absent */
	size_t size;
};

#define DMA_SCRATCH_INIT { .fd = -1, .mem = NULL, .size = 0 }

/* Creates a zeroed memfd of @size bytes and maps it. Returns 0 or -errno. */
int dma_scratch_create(struct dma_scratch *s, size_t size, const char *name);

/* Unmaps and closes. Safe on a DMA_SCRATCH_INIT or half-built object. */
void dma_scratch_destroy(struct dma_scratch *s);

/* A trapped access to the BAR: any width, inside the BAR. 0 or -EINVAL. */
int dma_scratch_access(struct dma_scratch *s, uint64_t offset, void *buf, uint32_t count,
		       bool is_write);

#endif /* FERRY_DEV_DMA_SCRATCH_H */
