/*
 * ferry-dev-dma: VFIO migration v2 with STOP_COPY | P2P | PRE_COPY
 * (include/ferry/device_migration.h). migration.c performs the direct arcs
 * on the engine and runs the data sessions (mig_save.h, mig_load.h);
 * server.c puts these functions in its struct ferry_migration_ops and
 * registers it.
 *
 * Every function runs on the device's message thread (dma_mig_reset() also
 * on a thread calling ferry_device_reset()), under libferry's state lock:
 * never two at once.
 */
#ifndef FERRY_DEV_DMA_MIGRATION_H
#define FERRY_DEV_DMA_MIGRATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ferry/migration.h>

#include "mig_load.h"
#include "mig_save.h"

struct dma_engine;

#define DMA_MIG_FLAGS (VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY)

struct dma_mig {
	const char *name;          /* for log lines; not owned */
	struct dma_engine *engine; /* not owned */
	enum ferry_mig_state state; /* as far as the arcs went */
	struct dma_mig_save save;
	struct dma_mig_load load;
};

/* In RUNNING with no session, for @engine (which must outlive it). */
void dma_mig_init(struct dma_mig *m, const char *name, struct dma_engine *engine);

/* The device was reset (ferry_device_ops.reset, after dma_engine_reset()):
 * the migration state is RUNNING again, sessions are gone, the engine
 * runs and PEER_NOTIFY writes at once. */
void dma_mig_reset(struct dma_mig *m);

/* The ops, with the meaning device_migration.h gives them. */
int dma_mig_transition(struct dma_mig *m, enum ferry_mig_state from, enum ferry_mig_state to,
		       bool *restored);
ssize_t dma_mig_save(struct dma_mig *m, void *buf, size_t len);
int dma_mig_load(struct dma_mig *m, const void *buf, size_t len);
int dma_mig_stop_copy_size(struct dma_mig *m, uint64_t *bytes);
int dma_mig_precopy_info(struct dma_mig *m, uint64_t *initial_bytes, uint64_t *dirty_bytes);

#endif /* FERRY_DEV_DMA_MIGRATION_H */
