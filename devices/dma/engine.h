/*
 * ferry-dev-dma: the DMA engine (device model core).
 *
 * Concepts. struct dma_state is the whole architectural state of the
 * device: the register file, the ring position, the counters and the peer
 * writes held back in the P2P states (regs.h). It holds no pointers and has
 * a fixed layout; migration (mig_stream.h) saves it field by field and a
 * destination loads it with dma_engine_restore(). Everything else in the
 * engine (lock, worker thread, bounce buffers, whether it is paused or
 * P2P-quiesced) is rebuilt from scratch in a fresh process or follows the
 * migration state, not the guest.
 *
 * Descriptors in flight at a stop. The worker fetches a descriptor (RING_HEAD
 * moves) and completes it (status word, COMPLETED) without a stop in
 * between: dma_engine_pause() waits for the one in progress to complete
 * (at most DMA_MAX_XFER bytes) and starts no other. So a stopped engine's
 * state has no descriptor fetched but not completed: everything before
 * RING_HEAD completed exactly once, everything from it on runs after the
 * restart, wherever that is.
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

#include "regs.h"

/* 2: peer_held, peer_writes and held[] (PEER_NOTIFY, device 1.1). */
#define DMA_STATE_VERSION 2u

/* A peer write held back in a P2P state: 8 bytes of @value at @addr. */
struct dma_peer_write {
	uint64_t addr;
	uint64_t value;
};

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
	uint64_t peer_doorbell; /* PEER_DOORBELL */
	uint32_t since_irq;    /* completions since the last interrupt */
	uint32_t peer_held;    /* PEER_HELD: entries of held[] in use, oldest first */
	uint64_t peer_writes;  /* PEER_WRITES */
	/* Unused entries are zero (dma_state_check() insists). */
	struct dma_peer_write held[DMA_PEER_HOLD_MAX];
};
_Static_assert(sizeof(struct dma_state) == 80 + 16 * DMA_PEER_HOLD_MAX,
	       "dma_state has no padding");

/* True if RING_BASE and RING_SIZE describe a usable ring (RING_SIZE a power
 * of two, 1..DMA_RING_MAX_ENTRIES; RING_BASE DMA_DESC_SIZE aligned; the
 * ring not wrapping around 2^64) holding RING_TAIL - RING_HEAD <= RING_SIZE
 * descriptors: what setting CONTROL.ENABLE checks. Pure. */
bool dma_state_ring_valid(const struct dma_state *st);

/* NULL if @st is a state this engine can be in (the invariants its
 * register file and worker maintain, so the only states a source can
 * have saved), else what is wrong, for a log line. Pure. */
const char *dma_state_check(const struct dma_state *st);

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

/* Why the engine is paused: each reason pauses it on its own. */
#define DMA_PAUSE_POWER     (1u << 0) /* low power (server.c) */
#define DMA_PAUSE_MIGRATION (1u << 1) /* STOP, STOP_COPY, RESUMING (migration.c) */

/* @pause: sets @reason and returns once the descriptor in progress (if
 * any) has completed, its interrupt included, and starts no other: no DMA,
 * no interrupt, registers still answer. !@pause: clears @reason; the engine
 * carries on when no reason is left. Not architectural state (a power or
 * migration state of the function), so not in struct dma_state and kept
 * across reset. */
void dma_engine_pause(struct dma_engine *e, unsigned reason, bool pause);

/* Migration's P2P quiesce (regs.h, "P2P quiesce"). @quiesce: from now on
 * PEER_NOTIFY writes are held; returns once a peer write in progress is
 * done. !@quiesce: delivers the held writes in order (with the worker held
 * off, so nothing overtakes them; failures set STATUS.ERR_PEER), then lets
 * PEER_NOTIFY write again and a stalled engine go on. Needs DMA: call it
 * while the device may do DMA. Not architectural state; kept across reset. */
void dma_engine_p2p_quiesce(struct dma_engine *e, bool quiesce);

/* Replaces the whole state with @st, which dma_state_check() accepted
 * (a migration restore). Call it with the engine paused
 * (DMA_PAUSE_MIGRATION); it runs from @st's RING_HEAD when unpaused. */
void dma_engine_restore(struct dma_engine *e, const struct dma_state *st);

/* The client mapped [iova, iova + size). */
void dma_engine_dma_mapped(struct dma_engine *e, uint64_t iova, uint64_t size);

/* The client is about to unmap [iova, iova + size); see engine.c. */
void dma_engine_dma_unmapping(struct dma_engine *e, uint64_t iova, uint64_t size);

/* A copy of the state, consistent (taken under the engine lock). */
void dma_engine_get_state(struct dma_engine *e, struct dma_state *out);

#endif /* FERRY_DEV_DMA_ENGINE_H */
