/*
 * ferry-dev-dma: engine internals shared by engine.c (worker, lifecycle),
 * mmio.c (register file) and peer.c (PEER_NOTIFY, P2P quiesce). Not for
 * server.c.
 *
 * Locking: e->lock guards st, busy, quiescing, paused, p2p_quiesced,
 * stalled, stopping and the log-once flags. The worker drops it while it
 * executes a descriptor (busy set) and while it raises an interrupt;
 * functions named *_locked expect it held.
 */
#ifndef FERRY_DEV_DMA_ENGINE_PRIV_H
#define FERRY_DEV_DMA_ENGINE_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "engine.h"

struct dma_engine {
	char name[64];
	struct ferry_device *dev;   /* not owned; NULL until started */
	pthread_mutex_t lock;
	pthread_cond_t wake;        /* the worker waits here for work */
	pthread_cond_t idle;        /* quiesce waits here for !busy */
	pthread_t thread;
	bool has_thread;
	bool stopping;              /* destroy: the worker exits */
	bool busy;                  /* a descriptor is in progress outside the lock */
	unsigned quiescing;         /* > 0: someone waits for !busy; start nothing */
	unsigned paused;            /* DMA_PAUSE_* reasons: no DMA, no interrupts */
	bool p2p_quiesced;          /* PEER_NOTIFY writes are held (regs.h) */
	bool stalled;               /* a PEER_NOTIFY found the hold queue full */
	atomic_bool abort;          /* asks the descriptor in progress to stop */
	/* The last status store found the ring mapped without an fd: store
	 * by DMA_WRITE until the mappings change (ferry_dma_ptr_get logs every
	 * -ENOTSUP, so asking each time would flood the log). A stale true
	 * (a remap racing with a store) only means a 4-byte DMA_WRITE-path
	 * copy instead of the atomic store until the next map change. */
	atomic_bool ring_by_msg;
	uint32_t warned;            /* WARN_* bits: guest mistakes logged once per reset */
	struct dma_state st;
	uint8_t *bounce;            /* DMA_EXEC_CHUNK bytes, worker only */
};

/* Guest mistakes are logged once per reset, so a guest cannot flood the log. */
#define WARN_RING_WHILE_ENABLED (1u << 0)
#define WARN_DOORBELL           (1u << 1)
#define WARN_CONFIG             (1u << 2)
#define WARN_ACCESS             (1u << 3)

/* Register side effects, called by mmio.c under e->lock. */
void engine_set_control_locked(struct dma_engine *e, uint32_t val);
void engine_doorbell_locked(struct dma_engine *e, uint32_t tail);
void engine_reset_locked(struct dma_engine *e);

/* Holding the worker off: hold waits until no descriptor is in progress and
 * keeps the worker from starting another (the wait drops the lock) until
 * the matching unhold, which wakes it. Holds nest. */
void engine_hold_locked(struct dma_engine *e);
void engine_unhold_locked(struct dma_engine *e);

/* process_one() result: the descriptor did not run and must be fetched
 * again later (the engine stalls at it). Besides DMA_ERR_* codes and
 * DMA_EXEC_ABORTED. */
#define RES_STALL (-3)

/* Runs PEER_NOTIFY @d (fields in host order); called by the worker without
 * the lock. Returns a DMA_ERR_* code or RES_STALL (peer.c). */
int engine_peer_notify(struct dma_engine *e, const struct dma_desc *d);

#endif /* FERRY_DEV_DMA_ENGINE_PRIV_H */
