/*
 * ferry-dev-dma: the DMA engine (device model core).
 *
 * Concepts. struct dma_state is the whole architectural state of the
 * device: the register file, the ring position and the counters. It holds
 * no pointers and has a fixed layout so that a later migration step can save
 * and load it as bytes. Everything else in the engine (lock, worker thread,
 * bounce buffers) is rebuilt from scratch in a fresh process.
 *
 * One worker thread per engine executes descriptors (exec.h) while the ring
 * is non-empty, CONTROL.ENABLE is set, the engine has not halted and the
 * guest has bus mastering on. Register accesses (mmio.c) arrive on the
 * library's message thread; they and the worker share the state under one
 * mutex. The worker never holds that mutex while it does DMA or raises an
 * interrupt, so a message-thread callback waits at most for one descriptor.
 */
#ifndef FERRY_DEV_DMA_ENGINE_H
#define FERRY_DEV_DMA_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ferry_device;

#define DMA_STATE_VERSION 1u

struct dma_state {
	uint32_t control;      /* CONTROL: DMA_CTRL_ENABLE */
	uint32_t status;       /* STATUS: DMA_STS_* */
	uint64_t ring_base;    /* RING_BASE */
	uint32_t ring_size;    /* RING_SIZE */
	uint32_t irq_coalesce; /* IRQ_COALESCE */
	uint32_t head;         /* RING_HEAD, free-running */
	uint32_t tail;         /* RING_TAIL, free-running */
	uint64_t completed;    /* COMPLETED */
	uint64_t errors;       /* ERRORS */
	uint64_t irqs;         /* IRQS */
	uint64_t peer_doorbell; /* PEER_DOORBELL (reserved) */
	uint32_t since_irq;    /* completions since the last interrupt */
	uint32_t reserved;     /* 0; keeps the size a multiple of 8 */
};
_Static_assert(sizeof(struct dma_state) == 72, "dma_state has no padding");

struct dma_engine;

/* Allocates an engine in power-on state; @name (copied) prefixes log lines.
 * No thread yet. Returns 0 and *@out, or -ENOMEM. */
int dma_engine_create(const char *name, struct dma_engine **out);

/* Starts the worker thread, which reaches guest memory through @dev (not
 * owned). Call once, after ferry_device_create(). Returns 0 or -errno. */
int dma_engine_start(struct dma_engine *e, struct ferry_device *dev);

/* Stops and joins the worker, abandoning the descriptor in progress between
 * two chunks. Every other function keeps working (on the state alone), so
 * device callbacks may still arrive: ferry_device_destroy() makes some for
 * a client still connected. Idempotent; NULL-safe. Call it after the device
 * stopped serving, before ferry_device_destroy(): the worker does DMA
 * through the device. */
void dma_engine_stop(struct dma_engine *e);

/* dma_engine_stop(), then frees. NULL-safe; safe on an engine never
 * started. Call it after ferry_device_destroy(). */
void dma_engine_destroy(struct dma_engine *e);

/* A trapped BAR0 access (the region_access op for DMA_BAR_REGS). @count is
 * 4 (any register) or 8 (a 64-bit register, 8-byte aligned). Returns 0 or
 * -EINVAL for other widths, misalignment or offsets outside BAR0. */
int dma_engine_mmio(struct dma_engine *e, uint64_t offset, void *buf, uint32_t count,
		    bool is_write);

/* Device reset: stops the worker between two chunks, drops the descriptor
 * in progress (no status is written for it) and zeroes the state. */
void dma_engine_reset(struct dma_engine *e);

/* @pause: returns once the descriptor in progress (if any) has completed,
 * and starts no other: no DMA, no interrupt, registers still answer. Not
 * architectural state (a power or migration state of the function), so
 * not in struct dma_state and kept across reset. !@pause: carry on. */
void dma_engine_pause(struct dma_engine *e, bool pause);

/* The client mapped [iova, iova + size). */
void dma_engine_dma_mapped(struct dma_engine *e, uint64_t iova, uint64_t size);

/* The client is about to unmap [iova, iova + size); see engine.c. */
void dma_engine_dma_unmapping(struct dma_engine *e, uint64_t iova, uint64_t size);

/* A copy of the state, consistent (taken under the engine lock). */
void dma_engine_get_state(struct dma_engine *e, struct dma_state *out);

#endif /* FERRY_DEV_DMA_ENGINE_H */
