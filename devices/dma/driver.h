/*
 * The guest driver of ferry-dev-dma: a workload that keeps the DMA engine
 * busy with random COPY and FILL operations and checks every result.
 *
 * Concepts. The caller owns guest memory (typically a memfd mapped at
 * guest_base in this process and DMA-mapped into the device at
 * guest_iova_base) and gives the driver an area of it. Everything the
 * driver must remember lives IN that area, so migrating guest memory (and
 * the device) migrates the driver: a driver on the destination calls
 * dma_driver_attach() on the copied memory and carries on where the source
 * stopped. struct dma_driver itself holds only host-side things (the
 * client, pointers, the interrupt eventfd).
 *
 * Area layout (offsets from area_off; all little-endian):
 *
 *   0x0000     struct dma_drv_shared: geometry, seed, sequence counters
 *   ring_off   the descriptor ring: ring_entries x 32 bytes (regs.h),
 *              4 KiB aligned
 *   kinds_off  one byte per ring slot: DMA_KIND_* of the op queued there
 *   bufs_off   two buffers of buf_size bytes per slot: src then dst
 *
 * Ops are numbered by a 64-bit sequence number seq (the descriptor cookie
 * is its low 32 bits) and use ring slot seq % ring_entries and that slot's
 * buffers, so a slot's buffers are never reused before its op is reaped.
 * Everything about an op (opcode, length, offsets, data, fill pattern, the
 * poison byte its destination window holds beforehand) is derived from
 * (seed, seq) by workload.h, so the checker recomputes rather than
 * remembers: a COPY's destination must equal the generated source data,
 * a FILL's the repeated pattern, and guard bytes around it must still hold
 * the poison.
 *
 * Peer ops (dma_driver_submit_peer) are PEER_NOTIFY descriptors: op seq
 * writes DMA_DRV_PEER_VALUE(seq) at offset 8 * (seq % slots) of the page
 * the caller programmed into PEER_DOORBELL, so the caller can tell from the
 * page which peer writes arrived, and (with slots smaller than the number
 * of ops) in which order. The driver checks their completions; the page is
 * the caller's to check.
 *
 * Exactly once: ops complete in ring order; poll() reaps a slot only when
 * its status word says DONE with the op's cookie echoed, so a lost
 * completion stalls (and run() times out naming it), and
 * dma_driver_check() compares the device's COMPLETED / ERRORS / RING_HEAD
 * with what the driver reaped, which catches an op executed twice.
 *
 * Threads: one thread at a time per struct dma_driver. Migration must
 * pause the workload between two calls.
 */
#ifndef FERRY_DEV_DMA_DRIVER_H
#define FERRY_DEV_DMA_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "regs.h"

struct ferry_client;

#define DMA_DRV_MAGIC   0x56524444u /* "DDRV" */
#define DMA_DRV_VERSION 2u /* 2: peer_ok */

/* An address bad ops use as "unmapped": the caller must not map it. */
#define DMA_DRV_UNMAPPED_IOVA UINT64_C(0xfff0000000000000)

/* What the op queued in a slot is meant to do (slot kind byte). */
enum dma_drv_kind {
	DMA_KIND_GOOD = 0,    /* a valid COPY or FILL: must succeed, data checked */
	DMA_KIND_BAD_SRC,     /* COPY from an unmapped address: DMA_ERR_FAULT */
	DMA_KIND_BAD_DST,     /* FILL to an unmapped address: DMA_ERR_FAULT */
	DMA_KIND_BAD_LEN,     /* len > MAX_XFER: DMA_ERR_LEN */
	DMA_KIND_BAD_OPCODE,  /* unknown opcode: DMA_ERR_OPCODE */
	DMA_KIND_BAD_RANGE,   /* dst + len wraps: DMA_ERR_RANGE */
	DMA_KIND_BAD_OVERLAP, /* COPY onto itself shifted by one: DMA_ERR_OVERLAP */
	DMA_KIND_BAD_PEER,    /* PEER_NOTIFY beyond the doorbell page: DMA_ERR_RANGE */
	DMA_KIND_PEER,        /* PEER_NOTIFY: must succeed and write no buffer */
	DMA_KIND_NUM,
};

/* The bad kinds are 1 .. DMA_KIND_NUM_BAD. */
#define DMA_KIND_NUM_BAD ((unsigned)DMA_KIND_BAD_PEER)

/* Peer ops: what op @seq writes, and the most doorbell slots. */
#define DMA_DRV_PEER_VALUE(seq) (UINT64_C(0x5045455200000000) | ((uint64_t)(seq) + 1))
#define DMA_DRV_PEER_SLOTS      (DMA_PEER_PAGE / DMA_PEER_WRITE)

/* The driver's memory, at offset 0 of its area (in guest memory). */
struct dma_drv_shared {
	uint32_t magic;            /* DMA_DRV_MAGIC */
	uint32_t version;          /* DMA_DRV_VERSION */
	uint32_t ring_entries;     /* power of two */
	uint32_t buf_size;         /* bytes per src or dst buffer */
	uint64_t area_size;        /* bytes of the area the layout fits in */
	uint64_t area_iova;        /* guest address of the area */
	uint64_t ring_off, kinds_off, bufs_off; /* from the area start */
	uint64_t seed;
	uint32_t irq_coalesce;     /* as programmed */
	uint32_t reserved;
	uint64_t submitted;        /* ops queued = seq of the next op = RING_TAIL (mod 2^32) */
	uint64_t reaped;           /* ops whose completion was consumed */
	uint64_t verified;         /* good ops that completed with exactly the right data */
	uint64_t bad_ok;           /* bad ops that failed with exactly the right error */
	uint64_t failures;         /* ops whose completion, error or data was wrong */
	uint64_t err_completions;  /* reaped completions carrying an error code */
	uint64_t dev_completed_base; /* device COMPLETED when the driver initialised it */
	uint64_t dev_errors_base;    /* device ERRORS then */
	uint64_t peer_ok;          /* peer ops that completed successfully */
};

/* Host-side options. Zero means the default. */
typedef void (*dma_driver_dirty_fn)(void *opaque, uint64_t iova, uint64_t len);

struct dma_driver_config {
	uint32_t ring_entries; /* init: power of two; 0: the largest <= 256 that fits */
	uint32_t buf_size;     /* init: per slot buffer; 0: 72 KiB (ops up to ~72 KiB) */
	uint32_t irq_coalesce; /* init: IRQ_COALESCE; 0: 8 */
	uint64_t seed;         /* init: 0: a fixed seed */
	bool no_irq;           /* init/attach: poll status words, set no eventfd */
	/* init/attach: called for every range the driver writes in guest
	 * memory (the host tracks its workloads' dirty pages); optional. */
	dma_driver_dirty_fn dirty_fn;
	void *dirty_opaque;
};

struct dma_driver {
	struct ferry_client *c;
	uint8_t *area;             /* guest_base + area_off */
	struct dma_drv_shared *sh; /* == area */
	struct dma_desc *ring;
	uint8_t *kinds;
	uint8_t *bufs;
	int irq_fd;                /* eventfd of MSI-X vector 0, or -1 */
	uint64_t irqs;             /* interrupts seen on irq_fd */
	dma_driver_dirty_fn dirty_fn;
	void *dirty_opaque;
};

struct dma_driver_stats {
	uint64_t submitted, reaped, in_flight;
	uint64_t verified, bad_ok, peer_ok, failures;
	uint64_t irqs; /* host-side: interrupts this struct dma_driver saw */
};

/*
 * Resets the device (CONTROL.RESET), lays out a fresh driver state in
 * [area_off, area_off + area_size) of guest memory, turns on memory decode
 * and bus mastering, enables MSI-X vector 0 with an eventfd (unless
 * cfg->no_irq), programs the ring and enables the engine. @cfg may be NULL.
 * The area must be DMA-mapped read-write and 4 KiB aligned in guest
 * addresses. Returns 0, or -EINVAL (arguments), -ENOSPC (area too small),
 * -ENODEV (not a ferry-dev-dma), -EIO (the device refused the ring) or a
 * client error; one log line says why. Call dma_driver_fini() before
 * initialising the same struct again.
 */
int dma_driver_init(struct dma_driver *d, struct ferry_client *c, void *guest_base,
		    uint64_t guest_iova_base, uint64_t area_off, uint64_t area_size,
		    const struct dma_driver_config *cfg);

/*
 * Attaches to a driver state already in guest memory (after a migration),
 * validating it, without changing the device's registers or the state.
 * The device must be the one that state drives (after a migration: the
 * restored destination, in a running migration state): it is cross-checked
 * by reading ID, VERSION, CONTROL, RING_BASE, RING_SIZE, RING_HEAD and
 * RING_TAIL, which must describe this driver's ring with head between the
 * ops reaped and those submitted. Sets up the interrupt eventfd unless
 * cfg->no_irq. Returns 0, -EINVAL (bad arguments or a state that does not
 * fit the area: log says which field), -ENODEV (not a ferry-dev-dma 1.x),
 * -ESTALE (a device that does not hold this ring, e.g. a fresh one the
 * state was not restored into: log says which register) or a client error.
 */
int dma_driver_attach(struct dma_driver *d, struct ferry_client *c, void *guest_base,
		      uint64_t guest_iova_base, uint64_t area_off, uint64_t area_size,
		      const struct dma_driver_config *cfg);

/* Tears down the interrupt eventfd (best effort on the device) and closes
 * it. Leaves the device and the guest state alone. Safe to call twice. */
void dma_driver_fini(struct dma_driver *d);

/* Queues up to @n good ops (fewer if the ring is full) and rings the
 * doorbell. Returns the number queued or a client error. */
int dma_driver_submit(struct dma_driver *d, unsigned n);

/* Same with ops that must fail, cycling through the DMA_KIND_BAD_* kinds. */
int dma_driver_submit_bad(struct dma_driver *d, unsigned n);

/* Same with peer ops over @slots doorbell slots (1..DMA_DRV_PEER_SLOTS;
 * -EINVAL otherwise). PEER_DOORBELL is the caller's to program. */
int dma_driver_submit_peer(struct dma_driver *d, unsigned n, unsigned slots);

/* Reaps and checks every completed op, in order. Returns the number
 * reaped; check failures are counted (stats.failures) and logged. */
int dma_driver_poll(struct dma_driver *d);

/* Waits up to @timeout_ms for the oldest op in flight to complete (on the
 * interrupt eventfd, re-checking the ring every few ms in case an interrupt
 * is lost). Returns 1 when one is ready, 0 on timeout or when nothing is in
 * flight. */
int dma_driver_wait(struct dma_driver *d, int timeout_ms);

/* Submits @nr_ops good ops and reaps until all, and every op queued
 * before, are reaped. Fails with -ETIMEDOUT when nothing completes for
 * @timeout_ms, -EIO if a check failed meanwhile, or a client error. */
int dma_driver_run(struct dma_driver *d, uint64_t nr_ops, int timeout_ms);

/* Reaps until nothing is in flight: 0, -ETIMEDOUT or -EIO as run(). */
int dma_driver_drain(struct dma_driver *d, int timeout_ms);

/* Cross-checks the device's counters and ring head against the driver's:
 * the device never ran past the tail, completed no op twice and lost none
 * (exactly, when nothing is in flight). Returns 0, -EIO (log says what
 * disagrees) or a client error. */
int dma_driver_check(struct dma_driver *d);

void dma_driver_stats(const struct dma_driver *d, struct dma_driver_stats *out);

#endif /* FERRY_DEV_DMA_DRIVER_H */
