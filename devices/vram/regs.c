/*
 * BAR0 registers and trapped BAR2 accesses (map in regs.h), and the
 * register block that migrates.
 */
#include <errno.h>
#include <string.h>

#include "engine.h"
#include "regs.h"
#include "vram.h"

static bool is_frozen(const struct vram *v)
{
	return v->state == FERRY_MIG_STOP || v->state == FERRY_MIG_STOP_COPY ||
	       v->state == FERRY_MIG_RESUMING || v->state == FERRY_MIG_ERROR;
}

void vram_regs_reset(struct vram *v)
{
	struct vram_reg_block r = {
		.rate = VRAM_RATE_DEFAULT,
		.seed = VRAM_SEED_DEFAULT,
		.engine_first = (uint32_t)(v->npages / 2),
		.engine_count = (uint32_t)(v->npages - v->npages / 2),
	};

	vram_regs_restore(v, &r);
}

void vram_regs_snapshot(const struct vram *v, struct vram_reg_block *out)
{
	const struct vram_regs *r = &v->regs;

	out->control = atomic_load(&r->control);
	out->rate = atomic_load(&r->rate);
	out->seed = atomic_load(&r->seed);
	out->engine_first = atomic_load(&r->engine_first);
	out->engine_count = atomic_load(&r->engine_count);
	out->checksum = r->checksum;
	out->csum_count = r->csum_count;
	out->engine_writes = atomic_load(&r->engine_writes);
	out->generation = r->generation;
}

void vram_regs_restore(struct vram *v, const struct vram_reg_block *in)
{
	struct vram_regs *r = &v->regs;

	atomic_store(&r->control, in->control & VRAM_CTRL_MASK);
	atomic_store(&r->rate, in->rate > VRAM_RATE_MAX ? VRAM_RATE_MAX : in->rate);
	atomic_store(&r->seed, in->seed);
	atomic_store(&r->engine_first, in->engine_first);
	atomic_store(&r->engine_count, in->engine_count);
	r->checksum = in->checksum;
	r->csum_count = in->csum_count;
	atomic_store(&r->engine_writes, in->engine_writes);
	r->generation = in->generation;
}

static uint32_t reg_read(struct vram *v, uint32_t off)
{
	struct vram_regs *r = &v->regs;

	switch (off) {
	case VRAM_REG_ID:
		return VRAM_ID_VALUE;
	case VRAM_REG_VERSION:
		return VRAM_VERSION_VALUE;
	case VRAM_REG_CONTROL:
		return atomic_load(&r->control);
	case VRAM_REG_STATUS:
		return (vram_engine_active(v->engine) ? VRAM_STS_ENGINE_ACTIVE : 0) |
		       (is_frozen(v) ? VRAM_STS_FROZEN : 0);
	case VRAM_REG_VRAM_SIZE:
		return (uint32_t)v->size;
	case VRAM_REG_VRAM_SIZE_HI:
		return (uint32_t)(v->size >> 32);
	case VRAM_REG_PAGE_SIZE:
		return VRAM_PAGE_SIZE;
	case VRAM_REG_ENGINE_RATE:
		return atomic_load(&r->rate);
	case VRAM_REG_ENGINE_SEED:
		return atomic_load(&r->seed);
	case VRAM_REG_ENGINE_FIRST:
		return atomic_load(&r->engine_first);
	case VRAM_REG_ENGINE_COUNT:
		return atomic_load(&r->engine_count);
	case VRAM_REG_CHECKSUM:
		return r->checksum;
	case VRAM_REG_CSUM_COUNT:
		return r->csum_count;
	case VRAM_REG_GENERATION:
		return (uint32_t)r->generation;
	case VRAM_REG_GENERATION_HI:
		return (uint32_t)(r->generation >> 32);
	case VRAM_REG_ENGINE_WRITES:
		return (uint32_t)atomic_load(&r->engine_writes);
	case VRAM_REG_ENGINE_WRITES_HI:
		return (uint32_t)(atomic_load(&r->engine_writes) >> 32);
	default: /* CSUM_TRIGGER (write-only) and undefined offsets */
		return 0;
	}
}

static void checksum_now(struct vram *v)
{
	v->regs.checksum = vram_checksum(v);
	v->regs.csum_count++;
	if ((atomic_load(&v->regs.control) & VRAM_CTRL_CSUM_IRQ) && v->raise_irq)
		v->raise_irq(v->irq_arg, VRAM_MSIX_VEC_CSUM);
}

static void reg_write(struct vram *v, uint32_t off, uint32_t val)
{
	struct vram_regs *r = &v->regs;

	switch (off) {
	case VRAM_REG_CONTROL:
		atomic_store(&r->control, val & VRAM_CTRL_MASK);
		break;
	case VRAM_REG_ENGINE_RATE:
		atomic_store(&r->rate, val > VRAM_RATE_MAX ? VRAM_RATE_MAX : val);
		break;
	case VRAM_REG_ENGINE_SEED:
		atomic_store(&r->seed, val);
		break;
	case VRAM_REG_ENGINE_FIRST:
		atomic_store(&r->engine_first, val);
		break;
	case VRAM_REG_ENGINE_COUNT:
		atomic_store(&r->engine_count, val);
		break;
	case VRAM_REG_CSUM_TRIGGER:
		if (val == VRAM_CSUM_GO)
			checksum_now(v);
		return;
	default: /* read-only and undefined registers ignore writes */
		return;
	}
	vram_engine_sync(v->engine);
}

static int bar0_access(struct vram *v, uint64_t off, void *buf, uint32_t count, bool is_write)
{
	uint32_t vals[2];
	unsigned n = count / 4;

	if (!((count == 4 && off % 4 == 0) || (count == 8 && off % 8 == 0)) ||
	    off >= VRAM_BAR_REGS_SIZE) {
		vram_err(v, "BAR0: %s of %u bytes at 0x%llx: registers take aligned 4 or 8 bytes",
			 is_write ? "write" : "read", count, (unsigned long long)off);
		return -EINVAL;
	}
	if (is_write) {
		memcpy(vals, buf, count);
		for (unsigned i = 0; i < n; i++)
			reg_write(v, (uint32_t)off + 4 * i, vals[i]);
		return 0;
	}
	if (count == 8 && off == VRAM_REG_ENGINE_WRITES) {
		/* One atomic read: the engine may be counting. */
		uint64_t w = atomic_load(&v->regs.engine_writes);

		memcpy(buf, &w, 8);
		return 0;
	}
	for (unsigned i = 0; i < n; i++)
		vals[i] = reg_read(v, (uint32_t)off + 4 * i);
	memcpy(buf, vals, count);
	return 0;
}

static int bar2_access(struct vram *v, uint64_t off, void *buf, uint32_t count, bool is_write)
{
	if (off > v->size || count > v->size - off) {
		vram_err(v, "BAR2: %s of %u bytes at 0x%llx beyond the %llu-byte VRAM",
			 is_write ? "write" : "read", count, (unsigned long long)off,
			 (unsigned long long)v->size);
		return -EINVAL;
	}
	if (is_write) {
		memcpy(v->mem + off, buf, count);
		dirty_mark_bytes(&v->dirty, off, count);
	} else {
		memcpy(buf, v->mem + off, count);
	}
	return 0;
}

int vram_region_access(struct vram *v, unsigned region, uint64_t offset, void *buf,
		       uint32_t count, bool is_write)
{
	if (is_write && is_frozen(v)) {
		vram_warn(v, "region %u: write at 0x%llx refused in %s (device frozen)", region,
			  (unsigned long long)offset, ferry_mig_state_name(v->state));
		return -EBUSY;
	}
	switch (region) {
	case VRAM_BAR_REGS:
		return bar0_access(v, offset, buf, count, is_write);
	case VRAM_BAR_VRAM:
		return bar2_access(v, offset, buf, count, is_write);
	default:
		vram_err(v, "access to region %u, which this device does not trap", region);
		return -EINVAL;
	}
}
