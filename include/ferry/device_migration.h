/*
 * libferry, device side: VFIO migration v2 for a device model.
 *
 * A model that can migrate registers a struct ferry_migration_ops. The
 * library owns everything generic: the MIGRATION / MIG_DEVICE_STATE /
 * MIG_DATA_SIZE features, the multi-step paths (computed with
 * ferry_mig_next_state, so the model implements direct arcs only), the
 * MIG_DATA_READ / MIG_DATA_WRITE stream chunking, pre-copy size reporting,
 * which messages are allowed in which state, the ERROR state, and reset.
 *
 * The data stream is the model's own byte format: the library never looks
 * inside it. The bytes read in PRE_COPY and STOP_COPY form one ordered stream
 * that the destination's load() receives in order, in chunks of any size.
 *
 * Threads: every callback runs on the device's message thread, one at a
 * time, never concurrently with a ferry_device_ops callback. A model whose
 * worker threads do DMA or raise interrupts must quiesce them inside
 * transition() before returning from an arc into a state that forbids it
 * (STOP, STOP_COPY, RESUMING: no DMA, no interrupts; the P2P states: no
 * peer-to-peer writes initiated).
 */
#ifndef FERRY_DEVICE_MIGRATION_H
#define FERRY_DEVICE_MIGRATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ferry/common.h>
#include <ferry/device.h>
#include <ferry/migration.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ferry_migration_ops {
	/* sizeof(struct ferry_migration_ops) as compiled by the model. Required. */
	uint32_t size;

	/* VFIO_MIGRATION_STOP_COPY (required) | VFIO_MIGRATION_P2P |
	 * VFIO_MIGRATION_PRE_COPY. Required. */
	uint64_t flags;

	/* Performs one direct arc @from -> @to (ferry_mig_is_direct_arc() is
	 * true for it). Returns 0 when the device is fully in @to. On failure
	 * returns a negative errno and sets *@restored to true if the device is
	 * still fully in @from (the library then stays in @from); otherwise the
	 * device is considered broken and enters ERROR, which only a reset
	 * leaves. The RESUMING -> STOP arc validates everything load() took and
	 * fails on incomplete or inconsistent data. Required. */
	int (*transition)(void *opaque, enum ferry_mig_state from, enum ferry_mig_state to,
			  bool *restored);

	/* In PRE_COPY, PRE_COPY_P2P or STOP_COPY: copies the next at most @len
	 * bytes of the stream into @buf (borrowed for the call). Returns the
	 * count; fill @buf unless the stream has no more for now. 0 means: in
	 * STOP_COPY, the end of the device state; in the pre-copy states,
	 * nothing more at the moment (more may come as the device runs).
	 * Required. */
	ssize_t (*save)(void *opaque, void *buf, size_t len);

	/* In RESUMING: consumes all @len bytes of @buf (borrowed). Returns 0 or a
	 * negative errno when the data cannot be right (the client sees the
	 * error). Chunk boundaries are arbitrary. Required. */
	int (*load)(void *opaque, const void *buf, size_t len);

	/* Estimated bytes STOP_COPY will still produce (VFIO's MIG_DATA_SIZE);
	 * called in any state. Optional: without it the feature is absent. */
	int (*stop_copy_size)(void *opaque, uint64_t *bytes);

	/* In the pre-copy states: bytes of the initial state not yet read, and
	 * bytes of state changed since they were read (the kernel's
	 * VFIO_MIG_GET_PRECOPY_INFO). Required with VFIO_MIGRATION_PRE_COPY. */
	int (*precopy_info)(void *opaque, uint64_t *initial_bytes, uint64_t *dirty_bytes);
};

/* Makes @dev migratable. Call once, before ferry_device_listen(). @ops is
 * copied and checked: a missing required member fails with -EINVAL and a log
 * line naming it. Callbacks receive the device's opaque. */
FERRY_API int ferry_device_set_migration(struct ferry_device *dev,
					 const struct ferry_migration_ops *ops);

/* The current migration state (FERRY_MIG_RUNNING for a device without
 * migration). Any thread. */
FERRY_API enum ferry_mig_state ferry_device_mig_state(const struct ferry_device *dev);

/* Resets the device from any thread (a model's watchdog, a management
 * thread) as DEVICE_RESET does: interrupts off, model reset, migration state
 * RUNNING. If a state change is in progress the reset is deferred until the
 * change completes, then wins. Returns 0 or a negative errno. */
FERRY_API int ferry_device_reset(struct ferry_device *dev);

#ifdef __cplusplus
}
#endif
#endif /* FERRY_DEVICE_MIGRATION_H */
