/*
 * ferry-dev-dma: the direct arcs of VFIO migration v2 (migration.h). libferry
 * walks multi-step paths (ferry_mig_next_state) and calls transition() once
 * per direct arc; this file performs exactly the arcs of STOP_COPY | P2P |
 * PRE_COPY (PROTOCOL.md §8.3), one block each:
 *
 *   always     STOP -> RESUMING, RESUMING -> STOP, STOP -> STOP_COPY,
 *              STOP_COPY -> STOP
 *   P2P        RUNNING -> RUNNING_P2P, RUNNING_P2P -> RUNNING,
 *              RUNNING_P2P -> STOP, STOP -> RUNNING_P2P
 *   PRE_COPY   RUNNING -> PRE_COPY, PRE_COPY -> RUNNING,
 *   with P2P   PRE_COPY -> PRE_COPY_P2P, PRE_COPY_P2P -> PRE_COPY,
 *              PRE_COPY_P2P -> RUNNING_P2P, PRE_COPY_P2P -> STOP_COPY,
 *              RUNNING_P2P -> PRE_COPY_P2P
 *
 * With P2P there is no RUNNING <-> STOP arc: the core goes through
 * RUNNING_P2P, so the engine always stops (and starts) with peer writes
 * already quiesced.
 *
 * What the engine does per state:
 *   RUNNING, PRE_COPY          runs; PEER_NOTIFY writes at once
 *   RUNNING_P2P, PRE_COPY_P2P  runs; PEER_NOTIFY writes are held (regs.h)
 *   STOP, STOP_COPY, RESUMING  paused: the descriptor in progress completed
 *                              (with its interrupt) before the arc returned,
 *                              nothing else runs, no DMA, no interrupt
 * Held writes go out on the arcs that leave the P2P states for a running
 * state (RUNNING_P2P -> RUNNING, PRE_COPY_P2P -> PRE_COPY), in order, before
 * the engine fetches anything else.
 *
 * Only RESUMING -> STOP can fail (the data does not validate); it fails
 * before touching anything, so the device is still fully in RESUMING.
 */
#include "migration.h"

#include <errno.h>
#include <string.h>

#include <ferry/log.h>

#include "engine.h"

#define S(x) FERRY_MIG_##x

void dma_mig_init(struct dma_mig *m, const char *name, struct dma_engine *engine)
{
	memset(m, 0, sizeof(*m));
	m->name = name;
	m->engine = engine;
	m->state = S(RUNNING);
}

void dma_mig_reset(struct dma_mig *m)
{
	dma_mig_save_end(&m->save);
	dma_mig_load_end(&m->load);
	/* The engine's reset dropped the held writes: nothing to deliver. */
	dma_engine_p2p_quiesce(m->engine, false);
	dma_engine_pause(m->engine, DMA_PAUSE_MIGRATION, false);
	m->state = S(RUNNING);
}

/* A save session starting in a running state: its PRECOPY snapshot. */
static void start_precopy(struct dma_mig *m)
{
	struct dma_state now;

	dma_engine_get_state(m->engine, &now);
	dma_mig_save_begin(&m->save, &now);
}

/* Into STOP_COPY: the engine is paused; its state is final. */
static void queue_final(struct dma_mig *m)
{
	struct dma_state st;

	dma_engine_get_state(m->engine, &st);
	dma_mig_save_final(&m->save, &st);
}

static int do_arc(struct dma_mig *m, enum ferry_mig_state from, enum ferry_mig_state to)
{
	struct dma_engine *e = m->engine;
	struct dma_state st;
	int rc;

	/* Always present (STOP_COPY). */
	if (from == S(STOP) && to == S(RESUMING)) {
		dma_mig_load_begin(&m->load);
		return 0;
	}
	if (from == S(RESUMING) && to == S(STOP)) {
		rc = dma_mig_load_finish(&m->load, m->name, &st);
		if (rc < 0)
			return rc;
		dma_engine_restore(e, &st);
		dma_mig_load_end(&m->load);
		return 0;
	}
	if (from == S(STOP) && to == S(STOP_COPY)) {
		dma_mig_save_begin(&m->save, NULL);
		queue_final(m);
		return 0;
	}
	if (from == S(STOP_COPY) && to == S(STOP)) {
		dma_mig_save_end(&m->save);
		return 0;
	}

	/* P2P. */
	if (from == S(RUNNING) && to == S(RUNNING_P2P)) {
		dma_engine_p2p_quiesce(e, true);
		return 0;
	}
	if (from == S(RUNNING_P2P) && to == S(RUNNING)) {
		dma_engine_p2p_quiesce(e, false); /* delivers the held writes */
		return 0;
	}
	if (from == S(RUNNING_P2P) && to == S(STOP)) {
		dma_engine_pause(e, DMA_PAUSE_MIGRATION, true);
		return 0;
	}
	if (from == S(STOP) && to == S(RUNNING_P2P)) {
		/* Quiesced already (the way into STOP came through a P2P
		 * state); said again so a restored queue can never leak. */
		dma_engine_p2p_quiesce(e, true);
		dma_engine_pause(e, DMA_PAUSE_MIGRATION, false);
		return 0;
	}

	/* PRE_COPY, with P2P. */
	if (from == S(RUNNING) && to == S(PRE_COPY)) {
		start_precopy(m);
		return 0;
	}
	if (from == S(RUNNING_P2P) && to == S(PRE_COPY_P2P)) {
		start_precopy(m);
		return 0;
	}
	if (from == S(PRE_COPY) && to == S(RUNNING)) {
		dma_mig_save_end(&m->save);
		return 0;
	}
	if (from == S(PRE_COPY_P2P) && to == S(RUNNING_P2P)) {
		dma_mig_save_end(&m->save);
		return 0;
	}
	if (from == S(PRE_COPY) && to == S(PRE_COPY_P2P)) {
		dma_engine_p2p_quiesce(e, true);
		return 0;
	}
	if (from == S(PRE_COPY_P2P) && to == S(PRE_COPY)) {
		dma_engine_p2p_quiesce(e, false); /* delivers the held writes */
		return 0;
	}
	if (from == S(PRE_COPY_P2P) && to == S(STOP_COPY)) {
		dma_engine_pause(e, DMA_PAUSE_MIGRATION, true);
		queue_final(m);
		return 0;
	}

	ferry_log(FERRY_LOG_WARN, "%s: migration: %s -> %s is not a direct arc of this device",
		  m->name, ferry_mig_state_name(from), ferry_mig_state_name(to));
	return -EINVAL;
}

int dma_mig_transition(struct dma_mig *m, enum ferry_mig_state from, enum ferry_mig_state to,
		       bool *restored)
{
	int rc;

	if (from != m->state)
		ferry_log(FERRY_LOG_WARN, "%s: migration: asked for %s -> %s while the device is in %s",
			  m->name, ferry_mig_state_name(from), ferry_mig_state_name(to),
			  ferry_mig_state_name(m->state));
	rc = do_arc(m, from, to);
	if (rc < 0) {
		*restored = true; /* every failing arc fails before changing anything */
		return rc;
	}
	m->state = to;
	ferry_log(FERRY_LOG_INFO, "%s: migration: %s -> %s", m->name, ferry_mig_state_name(from),
		  ferry_mig_state_name(to));
	return 0;
}

ssize_t dma_mig_save(struct dma_mig *m, void *buf, size_t len)
{
	if (!ferry_mig_state_is_saving(m->state)) {
		ferry_log(FERRY_LOG_ERR, "%s: migration: save() in %s", m->name,
			  ferry_mig_state_name(m->state));
		return -EINVAL;
	}
	return dma_mig_save_read(&m->save, m->name, buf, len);
}

int dma_mig_load(struct dma_mig *m, const void *buf, size_t len)
{
	if (m->state != S(RESUMING)) {
		ferry_log(FERRY_LOG_ERR, "%s: migration: load() in %s", m->name,
			  ferry_mig_state_name(m->state));
		return -EINVAL;
	}
	return dma_mig_load_write(&m->load, m->name, buf, len);
}

int dma_mig_stop_copy_size(struct dma_mig *m, uint64_t *bytes)
{
	*bytes = dma_mig_save_stop_copy_size(&m->save);
	return 0;
}

int dma_mig_precopy_info(struct dma_mig *m, uint64_t *initial_bytes, uint64_t *dirty_bytes)
{
	struct dma_state now;

	if (m->state != S(PRE_COPY) && m->state != S(PRE_COPY_P2P)) {
		ferry_log(FERRY_LOG_ERR, "%s: migration: precopy_info in %s", m->name,
			  ferry_mig_state_name(m->state));
		return -EINVAL;
	}
	dma_engine_get_state(m->engine, &now);
	dma_mig_save_precopy_info(&m->save, &now, initial_bytes, dirty_bytes);
	return 0;
}
