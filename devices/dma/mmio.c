/*
 * ferry-dev-dma: the BAR0 register file (see regs.h for the map).
 *
 * An access is one or two 32-bit register accesses done under one hold of
 * the engine lock, so an 8-byte read of a 64-bit counter is never torn.
 */
#include "engine_priv.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <ferry/log.h>

#include "regs.h"

static uint32_t lo32(uint64_t v)
{
	return (uint32_t)v;
}

static uint32_t hi32(uint64_t v)
{
	return (uint32_t)(v >> 32);
}

static uint64_t set_lo32(uint64_t v, uint32_t lo)
{
	return (v & ~(uint64_t)UINT32_MAX) | lo;
}

static uint64_t set_hi32(uint64_t v, uint32_t hi)
{
	return (v & UINT32_MAX) | ((uint64_t)hi << 32);
}

static uint32_t reg_read_locked(struct dma_engine *e, uint32_t off)
{
	const struct dma_state *st = &e->st;

	switch (off) {
	case DMA_REG_ID:            return DMA_ID_VALUE;
	case DMA_REG_VERSION:       return DMA_VERSION_VALUE;
	case DMA_REG_CONTROL:       return st->control & DMA_CTRL_ENABLE;
	case DMA_REG_STATUS:        return st->status;
	case DMA_REG_RING_BASE:     return lo32(st->ring_base);
	case DMA_REG_RING_BASE_HI:  return hi32(st->ring_base);
	case DMA_REG_RING_SIZE:     return st->ring_size;
	case DMA_REG_IRQ_COALESCE:  return st->irq_coalesce;
	case DMA_REG_RING_HEAD:     return st->head;
	case DMA_REG_RING_TAIL:     return st->tail;
	case DMA_REG_COMPLETED:     return lo32(st->completed);
	case DMA_REG_COMPLETED + 4: return hi32(st->completed);
	case DMA_REG_ERRORS:        return lo32(st->errors);
	case DMA_REG_ERRORS + 4:    return hi32(st->errors);
	case DMA_REG_IRQS:          return lo32(st->irqs);
	case DMA_REG_IRQS + 4:      return hi32(st->irqs);
	case DMA_REG_PEER_DOORBELL: return lo32(st->peer_doorbell);
	case DMA_REG_PEER_DOORBELL + 4: return hi32(st->peer_doorbell);
	case DMA_REG_MAX_XFER:      return DMA_MAX_XFER;
	case DMA_REG_MAX_RING:      return DMA_RING_MAX_ENTRIES;
	case DMA_REG_SCRATCH_SIZE:  return DMA_BAR_SCRATCH_SIZE;
	case DMA_REG_PEER_HELD:     return st->peer_held;
	case DMA_REG_PEER_WRITES:   return lo32(st->peer_writes);
	case DMA_REG_PEER_WRITES + 4: return hi32(st->peer_writes);
	default:                    return 0;
	}
}

/* RING_BASE and RING_SIZE describe the ring the engine is using: frozen
 * while enabled. */
static bool ring_writable_locked(struct dma_engine *e, uint32_t off)
{
	if (!(e->st.control & DMA_CTRL_ENABLE))
		return true;
	if (!(e->warned & WARN_RING_WHILE_ENABLED))
		ferry_log(FERRY_LOG_WARN, "%s: write to ring register %#" PRIx32 " while enabled ignored",
			  e->name, off);
	e->warned |= WARN_RING_WHILE_ENABLED;
	return false;
}

static void reg_write_locked(struct dma_engine *e, uint32_t off, uint32_t val)
{
	struct dma_state *st = &e->st;

	switch (off) {
	case DMA_REG_CONTROL:
		engine_set_control_locked(e, val);
		break;
	case DMA_REG_STATUS:
		st->status &= ~(val & DMA_STS_ERR_MASK);
		break;
	case DMA_REG_RING_BASE:
		if (ring_writable_locked(e, off))
			st->ring_base = set_lo32(st->ring_base, val);
		break;
	case DMA_REG_RING_BASE_HI:
		if (ring_writable_locked(e, off))
			st->ring_base = set_hi32(st->ring_base, val);
		break;
	case DMA_REG_RING_SIZE:
		if (ring_writable_locked(e, off))
			st->ring_size = val;
		break;
	case DMA_REG_IRQ_COALESCE:
		st->irq_coalesce = val;
		break;
	case DMA_REG_RING_TAIL:
		engine_doorbell_locked(e, val);
		break;
	case DMA_REG_PEER_DOORBELL:
		st->peer_doorbell = set_lo32(st->peer_doorbell, val);
		break;
	case DMA_REG_PEER_DOORBELL + 4:
		st->peer_doorbell = set_hi32(st->peer_doorbell, val);
		break;
	default:
		break; /* read-only or undefined: ignored, as hardware does */
	}
}

int dma_engine_mmio(struct dma_engine *e, uint64_t offset, void *buf, uint32_t count,
		    bool is_write)
{
	uint32_t w[2] = {0, 0};
	unsigned nr = count / 4;

	if ((count != 4 && count != 8) || offset % count || offset >= DMA_BAR_REGS_SIZE ||
	    count > DMA_BAR_REGS_SIZE - offset) {
		pthread_mutex_lock(&e->lock);
		if (!(e->warned & WARN_ACCESS))
			ferry_log(FERRY_LOG_WARN, "%s: BAR0 %s of %" PRIu32 " bytes at %#" PRIx64
				  " refused: registers take aligned 4- or 8-byte accesses",
				  e->name, is_write ? "write" : "read", count, offset);
		e->warned |= WARN_ACCESS;
		pthread_mutex_unlock(&e->lock);
		return -EINVAL;
	}

	pthread_mutex_lock(&e->lock);
	if (is_write) {
		memcpy(w, buf, count);
		for (unsigned i = 0; i < nr; i++)
			reg_write_locked(e, (uint32_t)offset + 4 * i, le32toh(w[i]));
	} else {
		for (unsigned i = 0; i < nr; i++)
			w[i] = htole32(reg_read_locked(e, (uint32_t)offset + 4 * i));
		memcpy(buf, w, count);
	}
	pthread_mutex_unlock(&e->lock);
	return 0;
}
