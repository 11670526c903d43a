/*
 * The vram engine: a worker thread that keeps rewriting VRAM pages while it
 * is allowed to (regs.h: CONTROL.ENGINE set, ENGINE_RATE > 0, a non-empty
 * window, and the device in a running migration state).
 *
 * Pacing: ENGINE_RATE pages per second against CLOCK_MONOTONIC, in batches
 * of at most ENGINE_BATCH pages, sleeping until the next write is due. A
 * thread that falls far behind (the process was descheduled) drops the
 * backlog instead of bursting. Every write follows the datasheet's
 * deterministic sequence and marks its page dirty after the store.
 *
 * Stopping is synchronous: vram_engine_allow(e, false) and
 * vram_engine_sync() return only when the thread is between batches and
 * will not start another unless allowed again, so a migration arc into STOP
 * or a CONTROL write clearing ENGINE never races with a page write.
 */
#ifndef FERRY_DEV_VRAM_ENGINE_H
#define FERRY_DEV_VRAM_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

struct vram;
struct vram_engine;

/* Starts the thread, idle (not allowed). Returns 0 or a negative errno. */
int vram_engine_create(struct vram *v, struct vram_engine **out);
/* Stops and joins the thread, frees. NULL-safe. */
void vram_engine_destroy(struct vram_engine *e);

/* The migration state allows running (or not). Returns once obeyed. */
void vram_engine_allow(struct vram_engine *e, bool allowed);
/* The engine registers changed: re-read them. Returns once obeyed (after the
 * batch in progress, if any). */
void vram_engine_sync(struct vram_engine *e);
/* STATUS.ENGINE_ACTIVE: the engine is pacing writes (not idle). */
bool vram_engine_active(const struct vram_engine *e);

/* One engine write with the current registers: picks the page, rewrites it,
 * marks it dirty, advances ENGINE_WRITES. Returns the page, or UINT64_MAX if
 * the window is empty. Used by the thread; tests call it for exact control
 * (only while the thread is idle). */
uint64_t vram_engine_step(struct vram *v);

#endif
