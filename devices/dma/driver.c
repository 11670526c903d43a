/*
 * The guest driver of ferry-dev-dma, bring-up: laying out (or validating)
 * the driver state in guest memory, programming the device, interrupts.
 * See driver.h for the concepts and the layout.
 */
#include "driver_priv.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <ferry/log.h>

#include "driver_pci.h"
#include "workload.h"

_Static_assert(sizeof(struct dma_drv_shared) == 144, "dma_drv_shared has no padding");

#define PAGE 4096u

#define DEFAULT_RING     256u
#define DEFAULT_BUF      (72u * 1024u)
#define DEFAULT_COALESCE 8u
#define DEFAULT_SEED     UINT64_C(0x6665727279646d61) /* "ferrydma" */

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

static void bind_pointers(struct dma_driver *d)
{
	d->ring = (struct dma_desc *)(d->area + d->sh->ring_off);
	d->kinds = d->area + d->sh->kinds_off;
	d->bufs = d->area + d->sh->bufs_off;
}

/* ---- device registers ---- */

int drv_reg_read(struct dma_driver *d, uint32_t off, uint32_t *val)
{
	int rc = ferry_client_read32(d->c, DRV_BAR0, off, val);

	if (rc < 0)
		ferry_log(FERRY_LOG_ERR, "%s: reading register %#x: %s", dname(d), off,
			  strerror(-rc));
	return rc;
}

int drv_reg_read64(struct dma_driver *d, uint32_t off, uint64_t *val)
{
	int rc = ferry_client_read64(d->c, DRV_BAR0, off, val);

	if (rc < 0)
		ferry_log(FERRY_LOG_ERR, "%s: reading register %#x: %s", dname(d), off,
			  strerror(-rc));
	return rc;
}

int drv_reg_write(struct dma_driver *d, uint32_t off, uint32_t val)
{
	int rc = ferry_client_write32(d->c, DRV_BAR0, off, val);

	if (rc < 0)
		ferry_log(FERRY_LOG_ERR, "%s: writing %#x to register %#x: %s", dname(d), val, off,
			  strerror(-rc));
	return rc;
}

/* ---- interrupts ---- */

static int irq_setup(struct dma_driver *d, const struct dma_driver_config *cfg)
{
	int rc;

	d->irq_fd = -1;
	if (cfg && cfg->no_irq)
		return 0;
	d->irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d->irq_fd < 0) {
		rc = -errno;
		ferry_log(FERRY_LOG_ERR, "%s: eventfd: %s", dname(d), strerror(-rc));
		return rc;
	}
	rc = ferry_client_set_irq_eventfds(d->c, VFIO_PCI_MSIX_IRQ_INDEX, DMA_MSIX_VEC_RING, 1,
					   &d->irq_fd);
	if (rc < 0) {
		ferry_log(FERRY_LOG_ERR, "%s: setting the MSI-X eventfd: %s", dname(d),
			  strerror(-rc));
		close(d->irq_fd);
		d->irq_fd = -1;
	}
	return rc;
}

void dma_driver_fini(struct dma_driver *d)
{
	if (d->irq_fd >= 0) {
		int none = -1;

		/* Best effort: the device may be gone already. */
		ferry_client_set_irq_eventfds(d->c, VFIO_PCI_MSIX_IRQ_INDEX, DMA_MSIX_VEC_RING, 1,
					      &none);
		close(d->irq_fd);
		d->irq_fd = -1;
	}
}

/* ---- bring-up ---- */

static void host_side(struct dma_driver *d, struct ferry_client *c, void *guest_base,
		      uint64_t area_off, const struct dma_driver_config *cfg)
{
	memset(d, 0, sizeof(*d));
	d->c = c;
	d->irq_fd = -1;
	d->area = (uint8_t *)guest_base + area_off;
	d->sh = (struct dma_drv_shared *)d->area;
	if (cfg) {
		d->dirty_fn = cfg->dirty_fn;
		d->dirty_opaque = cfg->dirty_opaque;
	}
}

static bool area_args_ok(struct ferry_client *c, void *guest_base, uint64_t iova_base,
			 uint64_t area_off, uint64_t area_size)
{
	const char *name = c ? ferry_client_name(c) : "dma driver";

	if (!c || !guest_base) {
		ferry_log(FERRY_LOG_ERR, "%s: no client or no guest memory", name);
		return false;
	}
	if (area_off > UINT64_MAX - area_size || iova_base > UINT64_MAX - area_off ||
	    (iova_base + area_off) % PAGE || area_off % PAGE) {
		ferry_log(FERRY_LOG_ERR,
			  "%s: area at offset %#" PRIx64 " size %#" PRIx64 " (guest %#" PRIx64
			  ") must be 4 KiB aligned and not wrap", name, area_off, area_size,
			  iova_base);
		return false;
	}
	return true;
}

/* Lays out the area for @entries slots of @buf bytes; false if it does not fit. */
static bool layout(struct dma_drv_shared *sh, uint64_t area_size, uint32_t entries, uint32_t buf)
{
	sh->ring_entries = entries;
	sh->buf_size = buf;
	sh->ring_off = PAGE;
	sh->kinds_off = sh->ring_off + align_up((uint64_t)entries * DMA_DESC_SIZE, PAGE);
	sh->bufs_off = sh->kinds_off + align_up(entries, PAGE);
	return sh->bufs_off + (uint64_t)entries * 2 * buf <= area_size;
}

static int init_layout(struct dma_driver *d, uint64_t iova, uint64_t area_size,
		       const struct dma_driver_config *cfg)
{
	struct dma_drv_shared *sh = d->sh;
	uint32_t entries = cfg && cfg->ring_entries ? cfg->ring_entries : 0;
	uint32_t buf = cfg && cfg->buf_size ? cfg->buf_size : DEFAULT_BUF;
	bool fits;

	if (buf < DMA_WL_MIN_BUF || (entries && (entries & (entries - 1))) ||
	    entries > DMA_RING_MAX_ENTRIES || area_size < PAGE) {
		ferry_log(FERRY_LOG_ERR, "%s: bad geometry: %u entries of %u bytes, area %" PRIu64,
			  dname(d), entries, buf, area_size);
		return -EINVAL;
	}
	memset(sh, 0, sizeof(*sh));
	if (entries) {
		fits = layout(sh, area_size, entries, buf);
	} else {
		entries = DEFAULT_RING;
		while (!(fits = layout(sh, area_size, entries, buf)) && entries > 1)
			entries /= 2;
	}
	if (!fits) {
		ferry_log(FERRY_LOG_ERR, "%s: %" PRIu64 " bytes hold no ring of %u-byte buffers",
			  dname(d), area_size, buf);
		return -ENOSPC;
	}
	sh->magic = DMA_DRV_MAGIC;
	sh->version = DMA_DRV_VERSION;
	sh->area_size = area_size;
	sh->area_iova = iova;
	sh->seed = cfg && cfg->seed ? cfg->seed : DEFAULT_SEED;
	sh->irq_coalesce = cfg && cfg->irq_coalesce ? cfg->irq_coalesce : DEFAULT_COALESCE;
	bind_pointers(d);
	memset(d->ring, 0, (size_t)entries * DMA_DESC_SIZE);
	memset(d->kinds, 0, entries);
	dirtied(d, sh, sh->bufs_off); /* header, ring, kinds; buffers as ops use them */
	return 0;
}

static int check_identity(struct dma_driver *d)
{
	uint32_t id, version;
	int rc = drv_reg_read(d, DMA_REG_ID, &id);

	if (!rc)
		rc = drv_reg_read(d, DMA_REG_VERSION, &version);
	if (rc < 0)
		return rc;
	if (id != DMA_ID_VALUE || version >> 16 != DMA_VERSION_VALUE >> 16) {
		ferry_log(FERRY_LOG_ERR, "%s: not a ferry-dev-dma 1.x: ID %#x VERSION %#x",
			  dname(d), id, version);
		return -ENODEV;
	}
	return 0;
}

static int program_ring(struct dma_driver *d)
{
	const struct dma_drv_shared *sh = d->sh;
	uint64_t ring = area_iova(d, sh->ring_off);
	uint32_t status;
	int rc;

	if ((rc = drv_reg_write(d, DMA_REG_RING_BASE, (uint32_t)ring)) < 0 ||
	    (rc = drv_reg_write(d, DMA_REG_RING_BASE_HI, (uint32_t)(ring >> 32))) < 0 ||
	    (rc = drv_reg_write(d, DMA_REG_RING_SIZE, sh->ring_entries)) < 0 ||
	    (rc = drv_reg_write(d, DMA_REG_IRQ_COALESCE, sh->irq_coalesce)) < 0 ||
	    (rc = drv_reg_write(d, DMA_REG_CONTROL, DMA_CTRL_ENABLE)) < 0 ||
	    (rc = drv_reg_read(d, DMA_REG_STATUS, &status)) < 0)
		return rc;
	if (!(status & DMA_STS_RUNNING)) {
		ferry_log(FERRY_LOG_ERR, "%s: engine did not start: STATUS %#x (ring %#" PRIx64
			  ", %u entries)", dname(d), status, ring, sh->ring_entries);
		return -EIO;
	}
	return 0;
}

int dma_driver_init(struct dma_driver *d, struct ferry_client *c, void *guest_base,
		    uint64_t guest_iova_base, uint64_t area_off, uint64_t area_size,
		    const struct dma_driver_config *cfg)
{
	int rc;

	if (!d || !area_args_ok(c, guest_base, guest_iova_base, area_off, area_size))
		return -EINVAL;
	host_side(d, c, guest_base, area_off, cfg);

	if ((rc = check_identity(d)) < 0 ||
	    (rc = drv_reg_write(d, DMA_REG_CONTROL, DMA_CTRL_RESET)) < 0 ||
	    (rc = init_layout(d, guest_iova_base + area_off, area_size, cfg)) < 0)
		return rc;
	if ((rc = drv_reg_read64(d, DMA_REG_COMPLETED, &d->sh->dev_completed_base)) < 0 ||
	    (rc = drv_reg_read64(d, DMA_REG_ERRORS, &d->sh->dev_errors_base)) < 0)
		return rc;

	rc = dma_pci_enable_master(c, !(cfg && cfg->no_irq));
	if (rc < 0) {
		ferry_log(FERRY_LOG_ERR, "%s: enabling bus mastering: %s", dname(d), strerror(-rc));
		return rc;
	}
	if (!(cfg && cfg->no_irq)) {
		rc = irq_setup(d, cfg);
		if (!rc)
			rc = dma_pci_enable_msix(c, DMA_MSIX_VEC_RING);
		if (rc < 0)
			goto out_irq;
	}
	rc = program_ring(d);
	if (rc < 0)
		goto out_irq;
	ferry_log(FERRY_LOG_INFO, "%s: dma driver up: %u slots of 2 x %u bytes at guest %#" PRIx64,
		  dname(d), d->sh->ring_entries, d->sh->buf_size, d->sh->area_iova);
	return 0;

out_irq:
	dma_driver_fini(d);
	return rc;
}

/* The state came from guest memory: trust nothing in it. */
static int validate_shared(struct dma_driver *d, uint64_t iova, uint64_t area_size)
{
	const struct dma_drv_shared *sh = d->sh;
	/* Both bounded (2^16 x 32 and 2^16 x 2 x 2^32): no overflow. */
	uint64_t ring_bytes = (uint64_t)sh->ring_entries * DMA_DESC_SIZE;
	uint64_t buf_bytes = (uint64_t)sh->ring_entries * 2 * sh->buf_size;
	const char *bad = NULL;

	if (area_size < sizeof(*sh))
		bad = "area smaller than the header";
	else if (sh->magic != DMA_DRV_MAGIC || sh->version != DMA_DRV_VERSION)
		bad = "magic/version";
	else if (!sh->ring_entries || sh->ring_entries > DMA_RING_MAX_ENTRIES ||
		 (sh->ring_entries & (sh->ring_entries - 1)))
		bad = "ring_entries";
	else if (sh->buf_size < DMA_WL_MIN_BUF)
		bad = "buf_size";
	else if (sh->area_size != area_size || sh->area_iova != iova)
		bad = "area size or address";
	else if (sh->ring_off < sizeof(*sh) || sh->ring_off % PAGE || sh->ring_off > area_size ||
		 ring_bytes > area_size - sh->ring_off)
		bad = "ring offset";
	else if (sh->kinds_off < sh->ring_off + ring_bytes || sh->kinds_off > area_size ||
		 sh->ring_entries > area_size - sh->kinds_off)
		bad = "kinds offset";
	else if (sh->bufs_off < sh->kinds_off + sh->ring_entries || sh->bufs_off > area_size ||
		 buf_bytes > area_size - sh->bufs_off)
		bad = "buffers offset";
	else if (sh->reaped > sh->submitted || sh->submitted - sh->reaped > sh->ring_entries)
		bad = "submitted/reaped counters";
	if (bad) {
		ferry_log(FERRY_LOG_ERR, "%s: driver state in guest memory is invalid: %s", dname(d),
			  bad);
		return -EINVAL;
	}
	return 0;
}

/* The device must hold this driver's ring (after a migration: the restored
 * destination, not a fresh device), or the first doorbell would be refused
 * or, worse, start a ring the device does not know from index 0. */
static int check_device(struct dma_driver *d)
{
	const struct dma_drv_shared *sh = d->sh;
	uint64_t base, ring = area_iova(d, sh->ring_off);
	uint32_t control, size, head, tail;
	const char *bad = NULL;
	int rc;

	if ((rc = check_identity(d)) < 0 ||
	    (rc = drv_reg_read(d, DMA_REG_CONTROL, &control)) < 0 ||
	    (rc = drv_reg_read64(d, DMA_REG_RING_BASE, &base)) < 0 ||
	    (rc = drv_reg_read(d, DMA_REG_RING_SIZE, &size)) < 0 ||
	    (rc = drv_reg_read(d, DMA_REG_RING_HEAD, &head)) < 0 ||
	    (rc = drv_reg_read(d, DMA_REG_RING_TAIL, &tail)) < 0)
		return rc;
	if (!(control & DMA_CTRL_ENABLE))
		bad = "CONTROL.ENABLE is clear";
	else if (base != ring)
		bad = "RING_BASE is another ring";
	else if (size != sh->ring_entries)
		bad = "RING_SIZE differs";
	else if (tail != (uint32_t)sh->submitted)
		bad = "RING_TAIL is not what the driver queued";
	else if ((uint32_t)(head - (uint32_t)sh->reaped) > sh->submitted - sh->reaped)
		bad = "RING_HEAD is outside the ops in flight";
	if (bad) {
		ferry_log(FERRY_LOG_ERR, "%s: the device does not hold this driver's ring (not "
			  "restored?): %s: ring %#" PRIx64 " x %u head %u tail %u, driver ring %#"
			  PRIx64 " x %u, ops %" PRIu64 "..%" PRIu64, dname(d), bad, base, size, head,
			  tail, ring, sh->ring_entries, sh->reaped, sh->submitted);
		return -ESTALE;
	}
	return 0;
}

int dma_driver_attach(struct dma_driver *d, struct ferry_client *c, void *guest_base,
		      uint64_t guest_iova_base, uint64_t area_off, uint64_t area_size,
		      const struct dma_driver_config *cfg)
{
	int rc;

	if (!d || !area_args_ok(c, guest_base, guest_iova_base, area_off, area_size))
		return -EINVAL;
	host_side(d, c, guest_base, area_off, cfg);
	rc = validate_shared(d, guest_iova_base + area_off, area_size);
	if (rc < 0)
		return rc;
	bind_pointers(d);
	rc = check_device(d);
	if (rc < 0)
		return rc;
	return irq_setup(d, cfg);
}

