/*
 * ferry-dev-dma: executing one descriptor.
 *
 * The descriptor was copied out of guest memory by the caller; every field
 * is guest-controlled and is validated here with overflow-safe arithmetic
 * before any transfer. Transfers go through libferry's DMA helpers in
 * chunks of DMA_EXEC_CHUNK bytes through a bounce buffer, so no guest
 * pointer is held between two helper calls (an unmap in the middle of a
 * transfer makes the next chunk fail cleanly with DMA_ERR_FAULT).
 */
#ifndef FERRY_DEV_DMA_EXEC_H
#define FERRY_DEV_DMA_EXEC_H

#include <stdatomic.h>
#include <stdint.h>

#include "regs.h"

struct ferry_device;

/* Bytes moved per helper call. 64 KiB: large enough that per-call overhead
 * (a DMA table lookup under a read lock) is noise next to the memcpy, small
 * enough that an abort request is seen within microseconds. */
#define DMA_EXEC_CHUNK (64u * 1024u)

struct dma_exec {
	struct ferry_device *dev;
	uint8_t *bounce; /* DMA_EXEC_CHUNK bytes */
	const atomic_bool *abort; /* checked between chunks */
	const char *name; /* for log lines */
};

/* dma_exec_desc() result when *abort was seen: the descriptor must not be
 * completed (the device is being reset). */
#define DMA_EXEC_ABORTED (-1)

/* Executes @d (fields in host byte order). Returns a DMA_ERR_* code (0 on
 * success) or DMA_EXEC_ABORTED. Never fails otherwise. */
int dma_exec_desc(const struct dma_exec *x, const struct dma_desc *d);

/* The DMA_ERR_* code for a failed DMA helper's negative errno @rc. */
int dma_exec_err_from_errno(int rc);

#endif /* FERRY_DEV_DMA_EXEC_H */
