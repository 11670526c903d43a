/*
 * VFIO migration v2 for the vram device: the direct arcs and the
 * ferry_migration_ops table. The library walks multi-step paths and calls
 * transition() once per direct arc; save/load/sizes live in save.c and
 * load.c.
 *
 * Arcs, for flags STOP_COPY | P2P | PRE_COPY (PROTOCOL.md §8.3):
 *   STOP -> RESUMING, RESUMING -> STOP, STOP -> STOP_COPY, STOP_COPY -> STOP,
 *   RUNNING <-> RUNNING_P2P, RUNNING_P2P -> STOP, STOP -> RUNNING_P2P,
 *   RUNNING -> PRE_COPY, PRE_COPY -> RUNNING, PRE_COPY <-> PRE_COPY_P2P,
 *   PRE_COPY_P2P -> RUNNING_P2P, RUNNING_P2P -> PRE_COPY_P2P,
 *   PRE_COPY_P2P -> STOP_COPY.
 * This device initiates no DMA at all, peer-to-peer or otherwise, so the
 * P2P states quiesce nothing and the engine keeps running in them. Every
 * arc into STOP, STOP_COPY or RESUMING returns with the engine idle
 * (vram_set_state()).
 *
 * Only RESUMING -> STOP can fail (the stream does not validate); it fails
 * before touching anything, so the device is still fully in RESUMING.
 */
#include "migration.h"

#include <errno.h>

#include "load.h"
#include "save.h"
#include "vram.h"

#define S(x) FERRY_MIG_##x

static int do_arc(struct vram *v, enum ferry_mig_state from, enum ferry_mig_state to)
{
	int rc;

	/* Always present (STOP_COPY). */
	if (from == S(STOP) && to == S(RESUMING)) {
		vram_set_state(v, to);
		vram_load_begin(v);
		return 0;
	}
	if (from == S(RESUMING) && to == S(STOP)) {
		rc = vram_load_finish(v);
		if (rc < 0)
			return rc;
		vram_load_end(v);
		vram_set_state(v, to);
		return 0;
	}
	if (from == S(STOP) && to == S(STOP_COPY)) {
		vram_set_state(v, to);
		vram_save_begin(v, false);
		vram_save_finalize(v);
		return 0;
	}
	if (from == S(STOP_COPY) && to == S(STOP)) {
		vram_save_end(v);
		vram_set_state(v, to);
		return 0;
	}

	/* P2P: nothing to quiesce (no peer DMA). */
	if (from == S(RUNNING) && to == S(RUNNING_P2P)) {
		vram_set_state(v, to);
		return 0;
	}
	if (from == S(RUNNING_P2P) && to == S(RUNNING)) {
		vram_set_state(v, to);
		return 0;
	}
	if (from == S(RUNNING_P2P) && to == S(STOP)) {
		vram_set_state(v, to); /* stops the engine */
		return 0;
	}
	if (from == S(STOP) && to == S(RUNNING_P2P)) {
		vram_set_state(v, to); /* the engine may run again */
		return 0;
	}

	/* PRE_COPY (with P2P). */
	if (from == S(RUNNING) && to == S(PRE_COPY)) {
		vram_save_begin(v, true);
		vram_set_state(v, to);
		return 0;
	}
	if (from == S(RUNNING_P2P) && to == S(PRE_COPY_P2P)) {
		vram_save_begin(v, true);
		vram_set_state(v, to);
		return 0;
	}
	if (from == S(PRE_COPY) && to == S(RUNNING)) {
		vram_save_end(v);
		vram_set_state(v, to);
		return 0;
	}
	if (from == S(PRE_COPY_P2P) && to == S(RUNNING_P2P)) {
		vram_save_end(v);
		vram_set_state(v, to);
		return 0;
	}
	if (from == S(PRE_COPY) && to == S(PRE_COPY_P2P)) {
		vram_set_state(v, to);
		return 0;
	}
	if (from == S(PRE_COPY_P2P) && to == S(PRE_COPY)) {
		vram_set_state(v, to);
		return 0;
	}
	if (from == S(PRE_COPY_P2P) && to == S(STOP_COPY)) {
		vram_set_state(v, to); /* engine idle before the final scan */
		vram_save_finalize(v);
		return 0;
	}

	vram_err(v, "migration: %s -> %s is not a direct arc of this device",
		 ferry_mig_state_name(from), ferry_mig_state_name(to));
	return -EINVAL;
}

static int vram_mig_transition(void *opaque, enum ferry_mig_state from, enum ferry_mig_state to,
			       bool *restored)
{
	struct vram *v = opaque;
	int rc;

	if (from != v->state)
		vram_warn(v, "migration: asked for %s -> %s while the device thinks it is in %s",
			  ferry_mig_state_name(from), ferry_mig_state_name(to),
			  ferry_mig_state_name(v->state));
	rc = do_arc(v, from, to);
	if (rc < 0) {
		*restored = true; /* every failing arc fails before changing anything */
		return rc;
	}
	vram_info(v, "migration: %s -> %s", ferry_mig_state_name(from), ferry_mig_state_name(to));
	return 0;
}

static ssize_t vram_mig_save(void *opaque, void *buf, size_t len)
{
	struct vram *v = opaque;

	if (!ferry_mig_state_is_saving(v->state)) {
		vram_err(v, "migration: save() in %s", ferry_mig_state_name(v->state));
		return -EINVAL;
	}
	return vram_save_read(v, buf, len);
}

static int vram_mig_load(void *opaque, const void *buf, size_t len)
{
	struct vram *v = opaque;

	if (v->state != S(RESUMING)) {
		vram_err(v, "migration: load() in %s", ferry_mig_state_name(v->state));
		return -EINVAL;
	}
	return vram_load_write(v, buf, len);
}

static int vram_mig_stop_copy_size(void *opaque, uint64_t *bytes)
{
	*bytes = vram_save_stop_copy_size(opaque);
	return 0;
}

static int vram_mig_precopy_info(void *opaque, uint64_t *initial_bytes, uint64_t *dirty_bytes)
{
	return vram_save_precopy_info(opaque, initial_bytes, dirty_bytes);
}

const struct ferry_migration_ops vram_migration_ops = {
	.size = sizeof(struct ferry_migration_ops),
	.flags = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY,
	.transition = vram_mig_transition,
	.save = vram_mig_save,
	.load = vram_mig_load,
	.stop_copy_size = vram_mig_stop_copy_size,
	.precopy_info = vram_mig_precopy_info,
};
