/*
 * The vram device model: VRAM (a memfd), its registers, the engine, the
 * dirty tracker and the migration sessions, independent of the vfio-user
 * server around it (server.c glues it to libferry; the unit tests drive it
 * directly).
 *
 * Threads: everything here runs on the device's message thread, one call at
 * a time (the libferry contract for device and migration callbacks), except
 * the engine's own thread (engine.h), which touches only the VRAM, the dirty
 * bitmap and the atomic registers, and the stop-copy scan (save.h), which
 * owns the save session and the dirty tracker until the next save call
 * joins it (the engine is idle and writes are refused meanwhile).
 */
#ifndef FERRY_DEV_VRAM_VRAM_H
#define FERRY_DEV_VRAM_VRAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/log.h>
#include <ferry/migration.h>

#include "dirty.h"
#include "stream.h"

#define vram_log(v, lvl, fmt, ...) ferry_log(lvl, "%s: " fmt, (v)->name, ##__VA_ARGS__)
#define vram_err(v, fmt, ...)  vram_log(v, FERRY_LOG_ERR, fmt, ##__VA_ARGS__)
#define vram_warn(v, fmt, ...) vram_log(v, FERRY_LOG_WARN, fmt, ##__VA_ARGS__)
#define vram_info(v, fmt, ...) vram_log(v, FERRY_LOG_INFO, fmt, ##__VA_ARGS__)

/* The register file (regs.h). Atomic where the engine thread reads or
 * writes; the rest belongs to the message thread. */
struct vram_regs {
	_Atomic uint32_t control, rate, seed, engine_first, engine_count;
	uint32_t checksum, csum_count;
	uint64_t generation;
	_Atomic uint64_t engine_writes;
};

struct vram_engine;
struct vram_save;
struct vram_load;

struct vram {
	char name[64];
	uint64_t size;   /* bytes, a power of two */
	uint64_t npages; /* size / VRAM_PAGE_SIZE */
	int memfd;       /* backs BAR2; owned */
	uint8_t *mem;    /* our mapping of it */
	struct vram_regs regs;
	struct vram_dirty dirty;
	struct vram_engine *engine;
	enum ferry_mig_state state; /* as last set by a migration arc or reset */
	/* Restored from a stream and not run since: the registers are exactly
	 * the source's; GENERATION goes up on the way to running (regs.h). */
	bool is_restored;
	struct vram_save *save;     /* session state, allocated up front */
	struct vram_load *load;
	/* Raises an MSI-X vector; NULL: interrupts go nowhere (unit tests). */
	void (*raise_irq)(void *arg, unsigned vector);
	void *irq_arg;
};

/* Validates @size (a power of two within VRAM_MIN_SIZE..VRAM_MAX_SIZE),
 * creates the memfd, maps it, allocates every per-page structure and starts
 * the (idle) engine thread. Registers at reset values, state RUNNING.
 * Returns 0 and *@out, or a negative errno (one log line). */
int vram_create(const char *name, uint64_t size, struct vram **out);

/* Stops the engine, frees everything. NULL-safe, safe on a half-built one. */
void vram_destroy(struct vram *v);

/* Device reset (regs.h "Reset"). Returns 0. */
int vram_reset(struct vram *v);

/* Records the migration state after an arc and lets the engine run only in
 * the running states; returns once the engine obeys (idle if stopped). A
 * restored device (is_restored) counts its migration in GENERATION as it
 * enters a running state. */
void vram_set_state(struct vram *v, enum ferry_mig_state state);

/* The registers as a block, and back (restore keeps the engine as it is:
 * the caller decides when it may run). */
void vram_regs_snapshot(const struct vram *v, struct vram_reg_block *out);
void vram_regs_restore(struct vram *v, const struct vram_reg_block *in);
void vram_regs_reset(struct vram *v);

/* A trapped access to BAR0 (registers) or BAR2 (VRAM), regs.c. */
int vram_region_access(struct vram *v, unsigned region, uint64_t offset, void *buf,
		       uint32_t count, bool is_write);

/*
 * Holes: VRAM pages never written are holes in the memfd. Reading one
 * through a mapping makes the kernel allocate it (about 15 us a page, and
 * the whole VRAM ends up resident), so scans ask the kernel first.
 *
 * A cursor serves scans in (mostly) increasing page order: mincore() over a
 * window of VRAM_MINCORE_WINDOW pages says which are resident (resident
 * means data, no further question); for a page that is not resident,
 * lseek(SEEK_DATA/SEEK_HOLE) tells a hole from swapped-out data and yields
 * the whole extent around it. The answer may be stale by the time it is
 * used if someone writes meanwhile, so only callers that re-check later
 * (the source, whose STOP_COPY rescan re-fingerprints every page) may keep
 * a cursor across time. Errors answer "data" (then the page is read).
 */
#define VRAM_MINCORE_WINDOW 512u /* pages: one 2 MiB mincore() call */

struct vram_hole_cursor {
	uint64_t lo, hi; /* pages [lo, hi) are known to be ... */
	bool hole;       /* ... a hole (or data), from lseek */
	bool has_window;
	uint64_t win_base, win_len;
	unsigned char win[VRAM_MINCORE_WINDOW]; /* mincore() of [win_base, +win_len) */
	/* vram_hole_cursor_whole(): mincore() of every page, and whether a
	 * page it says is not resident is a hole for sure. */
	const unsigned char *map;
	bool map_exact;
};
bool vram_page_is_hole(const struct vram *v, struct vram_hole_cursor *c, uint64_t page);

/*
 * A cursor for a scan of every page of a frozen VRAM, in any order. One
 * mincore() over the whole VRAM into @map (npages bytes, the caller's) and
 * one fstat(): when the memfd's allocated blocks equal the resident pages,
 * nothing is swapped out, so every page that is not resident is a hole and
 * no lseek() is needed. That matters: the scan of a written-here-and-there
 * 64 MiB VRAM made one lseek per hole extent, 2000-odd of them, 4-7 ms on
 * the 2-vCPU build VM (syscalls are dear in a VM), against ~0.1 ms for
 * this. Otherwise (swap in use, or mincore failed) the cursor falls back to
 * the lseek per extent. Pages that become data while the scan runs (they
 * should not: the device is frozen) are still resident, hence read.
 */
void vram_hole_cursor_whole(const struct vram *v, struct vram_hole_cursor *c, unsigned char *map);

/* One exact answer for one page, now (a single lseek). */
bool vram_page_is_hole_now(const struct vram *v, uint64_t page);

/* crc32 of the whole VRAM (the CHECKSUM register's value). Holes count as
 * the zeroes they read as, without being touched (allocated). */
uint32_t vram_checksum(const struct vram *v);

#endif
