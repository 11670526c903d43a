/*
 * ferry-dev-dma: the invariants of struct dma_state (engine.h), for
 * enabling the engine and for refusing a migrated state the engine could
 * never have been in.
 *
 * What the register file and the worker maintain, and so what is checked:
 *   - CONTROL holds ENABLE only (RESET is write-only); STATUS holds known
 *     bits only; RUNNING implies ENABLE and a usable ring, which ENABLE
 *     checked, with head..tail inside it (the doorbell refuses more);
 *   - ERRORS <= COMPLETED, and completions not yet signalled <= COMPLETED;
 *   - at most DMA_PEER_HOLD_MAX held peer writes, each to an 8-byte aligned
 *     address whose 8 bytes do not wrap, and the unused entries zero.
 * Not checked, because a guest can legitimately leave them so: the ring
 * registers of a stopped engine (RING_BASE / RING_SIZE take any value while
 * ENABLE is clear, and halt or a refused enable keeps ENABLE without
 * RUNNING), IRQ_COALESCE (0 means 1) and PEER_DOORBELL (checked when a
 * PEER_NOTIFY uses it).
 */
#include "engine.h"

#include <stdint.h>

bool dma_state_ring_valid(const struct dma_state *st)
{
	uint64_t bytes = (uint64_t)st->ring_size * DMA_DESC_SIZE;

	return st->ring_size && st->ring_size <= DMA_RING_MAX_ENTRIES &&
	       !(st->ring_size & (st->ring_size - 1)) && !(st->ring_base % DMA_DESC_SIZE) &&
	       bytes - 1 <= UINT64_MAX - st->ring_base &&
	       (uint32_t)(st->tail - st->head) <= st->ring_size;
}

static bool held_valid(const struct dma_state *st)
{
	for (uint32_t i = 0; i < DMA_PEER_HOLD_MAX; i++) {
		const struct dma_peer_write *w = &st->held[i];

		if (i >= st->peer_held) {
			if (w->addr || w->value)
				return false;
		} else if (w->addr % DMA_PEER_WRITE ||
			   w->addr > UINT64_MAX - (DMA_PEER_WRITE - 1)) {
			return false;
		}
	}
	return true;
}

const char *dma_state_check(const struct dma_state *st)
{
	if (st->control & ~DMA_CTRL_ENABLE)
		return "CONTROL has bits other than ENABLE";
	if (st->status & ~(DMA_STS_RUNNING | DMA_STS_ERR_MASK))
		return "STATUS has unknown bits";
	if ((st->status & DMA_STS_RUNNING) && !(st->control & DMA_CTRL_ENABLE))
		return "STATUS.RUNNING without CONTROL.ENABLE";
	if ((st->status & DMA_STS_RUNNING) && !dma_state_ring_valid(st))
		return "running on an invalid ring (size not a power of two up to the maximum, "
		       "base unaligned or wrapping, or tail - head beyond the ring)";
	if (st->errors > st->completed)
		return "more errors than completions";
	if (st->since_irq > st->completed)
		return "more unsignalled completions than completions";
	if (st->peer_held > DMA_PEER_HOLD_MAX)
		return "more held peer writes than the device holds";
	if (!held_valid(st))
		return "a held peer write is unaligned or wraps, or an unused entry is not zero";
	return NULL;
}
