/*
 * The guest driver of ferry-dev-vram: a workload that writes deterministic
 * patterns into VRAM pages through the client's mapping of BAR2, remembers
 * in guest memory which pattern each page holds, and verifies them later,
 * while the device's engine rewrites the other half of the VRAM.
 *
 * Concepts. The caller owns guest memory and gives the workload an area of
 * it. Everything the workload must remember lives IN that area, so
 * migrating guest memory (and the device) migrates the workload: on the
 * destination vram_workload_attach() on the copied memory carries on where
 * the source stopped, and vram_workload_verify() checks that every page
 * written before the migration still holds its pattern afterwards, which
 * proves the device migrated VRAM the host wrote through the mmap (writes
 * the device never saw). struct vram_workload holds only host-side things.
 *
 * Area layout (little-endian), at the start of the area:
 *   0x00  struct vram_wl_shared (128 bytes): geometry, seed, counters
 *   0x80  last_seq[npages]: u64 per workload page, the sequence number of
 *         the pattern write the page holds, 0 = never written
 * so the area needs VRAM_WL_HDR + 8 x npages bytes (vram_workload_area_size).
 *
 * Pattern write number seq (1, 2, ...) with seed s: page
 * first_page + vram_mix64(s ^ seq * K) % npages gets, as 64-bit word i,
 * vram_wl_word(s, seq, page, i) (workload.c). The page content is written
 * through the mapping first, then last_seq[] and the counters, so a workload
 * paused between two calls always has a record that matches the VRAM.
 *
 * The workload's pages are [first_page, first_page + npages): the lower half
 * of the VRAM (fewer pages if the area is small); init points the engine at
 * the upper half, so the two never write the same page.
 *
 * Threads: one thread at a time per struct vram_workload; migration pauses
 * the workload between two calls.
 */
#ifndef FERRY_DEV_VRAM_WORKLOAD_H
#define FERRY_DEV_VRAM_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ferry_client;

#define VRAM_WL_MAGIC   0x4c4b5756u /* "VWKL" */
#define VRAM_WL_VERSION 1u
#define VRAM_WL_HDR     128u

/* The workload's memory, at offset 0 of its area (in guest memory). */
struct vram_wl_shared {
	uint32_t magic;        /* VRAM_WL_MAGIC */
	uint32_t version;      /* VRAM_WL_VERSION */
	uint64_t area_size;    /* bytes of the area the layout fits in */
	uint64_t vram_size;    /* the device's VRAM_SIZE at init */
	uint32_t page_size;    /* VRAM_PAGE_SIZE */
	uint32_t engine_rate;  /* as programmed (0: engine left off) */
	uint64_t first_page;   /* the workload's pages in the VRAM */
	uint64_t npages;
	uint64_t seed;
	uint64_t writes;       /* pattern writes done = seq of the last one */
	uint64_t verified;     /* page checks that matched (cumulative) */
	uint64_t failures;     /* page checks that did not */
	uint64_t verify_runs;  /* vram_workload_verify() calls */
	uint64_t reserved[5];
};
_Static_assert(sizeof(struct vram_wl_shared) == VRAM_WL_HDR, "workload header layout");

typedef void (*vram_workload_dirty_fn)(void *opaque, uint64_t iova, uint64_t len);

/* Host-side options. Zero means the default. */
struct vram_workload_config {
	uint64_t seed;          /* init: 0 picks a fixed seed */
	uint32_t engine_rate;   /* init: ENGINE_RATE, 0: VRAM_RATE_DEFAULT */
	bool no_engine;         /* init: leave the engine off */
	/* init/attach: called for every range the workload writes in guest
	 * memory (the host tracks its workloads' dirty pages). Optional. */
	vram_workload_dirty_fn dirty_fn;
	void *dirty_opaque;
};

struct vram_workload {
	struct ferry_client *c;
	uint8_t *vram;               /* the client's mapping of BAR2 */
	uint64_t vram_size;
	struct vram_wl_shared *sh;   /* the area, in guest memory */
	uint64_t *last_seq;
	uint64_t area_iova;
	vram_workload_dirty_fn dirty_fn;
	void *dirty_opaque;
};

struct vram_workload_stats {
	uint64_t writes, verified, failures, verify_runs;
	uint64_t pages_used;     /* workload pages holding a pattern */
	uint64_t engine_writes;  /* the device's ENGINE_WRITES (0 if unreadable) */
	uint64_t generation;     /* the device's GENERATION: migrations survived */
};

/* Area bytes needed for a device with @vram_size bytes of VRAM when the
 * workload uses the whole lower half. */
uint64_t vram_workload_area_size(uint64_t vram_size);

/*
 * Checks the device (ID, VERSION), enables memory decode, maps BAR2, lays
 * out a fresh workload state in @area (@area_size bytes at guest address
 * @area_iova) and programs and enables the engine on the upper half of the
 * VRAM (unless cfg->no_engine). @cfg may be NULL. Returns 0, -EINVAL
 * (arguments), -ENODEV (not a ferry-dev-vram), -ENOSPC (area too small for
 * one page) or a client error; one log line says why.
 */
int vram_workload_init(struct vram_workload *w, struct ferry_client *c, void *area,
		       uint64_t area_iova, uint64_t area_size,
		       const struct vram_workload_config *cfg);

/*
 * Attaches to a workload state already in guest memory (after a migration),
 * validating every field against the area and the device, without touching
 * the device's registers. Returns 0, -EINVAL (a state that does not fit:
 * the log says which field), -ENODEV or a client error.
 */
int vram_workload_attach(struct vram_workload *w, struct ferry_client *c, void *area,
			 uint64_t area_iova, uint64_t area_size,
			 const struct vram_workload_config *cfg);

/* Unmaps BAR2. Leaves the device and the guest state alone. Safe twice. */
void vram_workload_fini(struct vram_workload *w);

/* Does @n pattern writes. Returns @n. */
int vram_workload_run(struct vram_workload *w, unsigned n);

/* Checks every page that holds a pattern. Returns the number of pages that
 * do not hold what was recorded (0: all good), counted in the stats and the
 * first few logged. */
int64_t vram_workload_verify(struct vram_workload *w);

/* Has the device checksum its VRAM (clearing CONTROL.ENGINE first when
 * @stop_engine, so the value is a snapshot) and returns it in *@crc.
 * Returns 0 or a client error. */
int vram_workload_checksum(struct vram_workload *w, bool stop_engine, uint32_t *crc);

void vram_workload_stats(const struct vram_workload *w, struct vram_workload_stats *out);

#endif /* FERRY_DEV_VRAM_WORKLOAD_H */
