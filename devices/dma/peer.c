/*
 * ferry-dev-dma: PEER_NOTIFY and the P2P quiesce (regs.h, "P2P quiesce").
 *
 * Concepts. A PEER_NOTIFY is one 8-byte peer-to-peer write. Outside the P2P
 * states the worker does it at once, through ferry_dma_write(), before it
 * completes the descriptor. In RUNNING_P2P and PRE_COPY_P2P it appends the
 * write to st.held[] instead (device state: it migrates) and completes the
 * descriptor; with the queue full it gives the descriptor back (RES_STALL)
 * and the engine stalls at it. Leaving the P2P states delivers the queue in
 * order with the worker held off, so no later write overtakes a held one.
 *
 * The P2P decision is taken under the lock: the arc into a P2P state sets
 * p2p_quiesced and then waits for the descriptor in progress, so a peer
 * write that saw it clear is over before the arc returns ("outstanding P2P
 * completed before the arc finishes", PROTOCOL.md §8.2).
 */
#include "engine_priv.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <ferry/device.h>
#include <ferry/log.h>

#include "exec.h"

/* The write itself, without the lock. Returns 0 or a negative errno. */
static int peer_write(struct dma_engine *e, uint64_t addr, uint64_t value)
{
	uint64_t le = htole64(value);

	return ferry_dma_write(e->dev, addr, &le, sizeof(le));
}

/* Stores in *@addr the doorbell address @d targets and returns 0, or the
 * DMA_ERR_* code saying why the descriptor or PEER_DOORBELL allows none.
 * Under the lock. */
static int target_locked(struct dma_engine *e, const struct dma_desc *d, uint64_t *addr)
{
	uint64_t page = e->st.peer_doorbell;

	if (d->flags)
		return DMA_ERR_FLAGS;
	if (d->len != DMA_PEER_WRITE)
		return DMA_ERR_LEN;
	if (d->dst % DMA_PEER_WRITE || d->dst >= DMA_PEER_PAGE)
		return DMA_ERR_RANGE;
	if (!page || page % DMA_PEER_WRITE || page > UINT64_MAX - (DMA_PEER_PAGE - 1))
		return DMA_ERR_PEER;
	*addr = page + d->dst;
	return DMA_ERR_NONE;
}

int engine_peer_notify(struct dma_engine *e, const struct dma_desc *d)
{
	struct dma_state *st = &e->st;
	uint64_t addr = 0;
	int err, rc;

	pthread_mutex_lock(&e->lock);
	err = target_locked(e, d, &addr);
	if (err) {
		uint64_t page = st->peer_doorbell;

		pthread_mutex_unlock(&e->lock);
		ferry_log(FERRY_LOG_DEBUG, "%s: PEER_NOTIFY cookie %#" PRIx32 " refused: len %" PRIu32
			  " offset %#" PRIx64 ", PEER_DOORBELL %#" PRIx64 ": error %d", e->name,
			  d->cookie, d->len, d->dst, page, err);
		return err;
	}
	if (e->p2p_quiesced) {
		if (st->peer_held >= DMA_PEER_HOLD_MAX) {
			pthread_mutex_unlock(&e->lock);
			return RES_STALL;
		}
		st->held[st->peer_held++] = (struct dma_peer_write){ .addr = addr, .value = d->src };
		pthread_mutex_unlock(&e->lock);
		return DMA_ERR_NONE;
	}
	pthread_mutex_unlock(&e->lock);

	rc = peer_write(e, addr, d->src);
	if (rc < 0) {
		ferry_log(FERRY_LOG_DEBUG, "%s: PEER_NOTIFY cookie %#" PRIx32 " to %#" PRIx64 ": %s",
			  e->name, d->cookie, addr, strerror(-rc));
		return dma_exec_err_from_errno(rc);
	}
	pthread_mutex_lock(&e->lock);
	st->peer_writes++;
	pthread_mutex_unlock(&e->lock);
	return DMA_ERR_NONE;
}

/* Delivers the held writes in order. The worker is held off, the message
 * thread (ours) is the only one changing registers, and PEER_NOTIFY only
 * appends while p2p_quiesced, which is still set: the queue cannot change
 * under us while the lock is dropped for the writes. */
static void release_locked(struct dma_engine *e)
{
	struct dma_state *st = &e->st;
	struct dma_peer_write held[DMA_PEER_HOLD_MAX];
	uint32_t n = st->peer_held, failed = 0;
	uint64_t first_bad = 0;
	int first_rc = 0;

	if (!n)
		return;
	memcpy(held, st->held, sizeof(held));
	pthread_mutex_unlock(&e->lock);
	for (uint32_t i = 0; i < n; i++) {
		int rc = peer_write(e, held[i].addr, held[i].value);

		if (rc < 0 && !failed++) {
			first_bad = held[i].addr;
			first_rc = rc;
		}
	}
	pthread_mutex_lock(&e->lock);
	st->peer_writes += n - failed;
	st->peer_held = 0;
	memset(st->held, 0, sizeof(st->held));
	if (failed) {
		st->status |= DMA_STS_ERR_PEER;
		ferry_log(FERRY_LOG_WARN, "%s: %" PRIu32 " of %" PRIu32 " held peer writes failed, the "
			  "first to %#" PRIx64 ": %s; STATUS.ERR_PEER set", e->name, failed, n,
			  first_bad, strerror(-first_rc));
	} else {
		ferry_log(FERRY_LOG_INFO, "%s: %" PRIu32 " held peer writes delivered", e->name, n);
	}
}

void dma_engine_p2p_quiesce(struct dma_engine *e, bool quiesce)
{
	pthread_mutex_lock(&e->lock);
	if (quiesce) {
		e->p2p_quiesced = true;
		engine_hold_locked(e); /* a peer write in progress finishes */
		engine_unhold_locked(e);
	} else {
		engine_hold_locked(e);
		release_locked(e);
		e->p2p_quiesced = false;
		e->stalled = false;
		engine_unhold_locked(e);
	}
	pthread_mutex_unlock(&e->lock);
}
