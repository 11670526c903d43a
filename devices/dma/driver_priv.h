/*
 * ferry-dev-dma driver internals shared by driver.c (bring-up),
 * driver_ring.c (submitting and reaping) and driver_check.c.
 */
#ifndef FERRY_DEV_DMA_DRIVER_PRIV_H
#define FERRY_DEV_DMA_DRIVER_PRIV_H

#include <stdint.h>
#include <linux/vfio.h>

#include <ferry/client.h>

#include "driver.h"

#define DRV_BAR0 VFIO_PCI_BAR0_REGION_INDEX

static inline const char *dname(const struct dma_driver *d)
{
	return ferry_client_name(d->c);
}

/* ---- guest memory ---- */

static inline uint64_t area_iova(const struct dma_driver *d, uint64_t off)
{
	return d->sh->area_iova + off;
}

static inline uint8_t *src_buf(const struct dma_driver *d, uint32_t slot)
{
	return d->bufs + (uint64_t)slot * 2 * d->sh->buf_size;
}

static inline uint8_t *dst_buf(const struct dma_driver *d, uint32_t slot)
{
	return src_buf(d, slot) + d->sh->buf_size;
}

static inline uint64_t buf_iova(const struct dma_driver *d, const void *p)
{
	return area_iova(d, (uint64_t)((const uint8_t *)p - d->area));
}

static inline uint32_t slot_of(const struct dma_driver *d, uint64_t seq)
{
	return (uint32_t)(seq & (d->sh->ring_entries - 1));
}

/* Every write the driver makes to guest memory goes through here or
 * through an explicit dirtied() call, so the host can track it. */
static inline void dirtied(const struct dma_driver *d, const void *p, uint64_t len)
{
	if (d->dirty_fn && len)
		d->dirty_fn(d->dirty_opaque, buf_iova(d, p), len);
}

/* ---- device registers (driver.c): 0 or a client error, logged ---- */

int drv_reg_read(struct dma_driver *d, uint32_t off, uint32_t *val);
int drv_reg_read64(struct dma_driver *d, uint32_t off, uint64_t *val);
int drv_reg_write(struct dma_driver *d, uint32_t off, uint32_t val);

#endif /* FERRY_DEV_DMA_DRIVER_PRIV_H */
