/*
 * libferry, device side: VFIO migration v2 for a device model.
 *
 * A model that can migrate registers a struct ferry_migration_ops. The
 * library owns everything generic: the MIGRATION / MIG_DEVICE_STATE /
 * MIG_DATA_SIZE features (and ferry's precopy_info and mig_shm extensions),
 * the multi-step paths (computed with ferry_mig_next_state, so the model
 * implements direct arcs only), the MIG_DATA_READ / MIG_DATA_WRITE stream,
 * pre-copy size reporting, which messages are allowed in which state, the
 * ERROR state, reset and disconnect.
 *
 * The data stream. The model's save() output is its own byte format: the
 * library never looks inside it. The bytes read in PRE_COPY and STOP_COPY
 * form one ordered stream that the destination's load() receives in order,
 * in chunks of any size. On the wire the library wraps it: a prefix in
 * front (the library's own device state: config space, MSI-X table and PBA,
 * pending interrupts; a destination of another kind refuses it at the first
 * write) and a trailer behind (the same state, final, taken when save()
 * returned 0 in STOP_COPY). The destination applies the prefix as soon as
 * it is complete, and the trailer at RESUMING -> STOP before the model's
 * arc validates its data. A stream cut short has no trailer: its last bytes
 * then go to load() too and the model's validation must refuse it. The
 * sizes the library reports (MIG_DATA_SIZE, precopy_info) include its own
 * bytes. docs/device-stream.md has the format.
 *
 * Quiescing. In STOP, STOP_COPY, RESUMING and ERROR the device must do no
 * DMA and raise no interrupt: the model stops its worker threads inside
 * transition() before returning from an arc into one of those states, and
 * may restart them inside the arc out of it. As a safety net the library
 * refuses DMA helpers with -EBUSY (ferry_dma_ptr_get: NULL, -EBUSY) and
 * keeps interrupts pending (ferry_irq_trigger: -EAGAIN; delivered when the
 * device runs again) in those states, from the end of an arc into one of
 * them to the start of an arc back into a running state. While stopped, a
 * client's region accesses reach config space only (lib/device/dispatch.c
 * has the table): the model's region_access is not called.
 *
 * Reset. DEVICE_RESET, a function-level reset through config space and
 * ferry_device_reset() return the migration state to RUNNING from every
 * state, ERROR included, and end any data session: the kernel's rule
 * (VFIO_DEVICE_RESET), which ferry follows; libvfio-user (since 2026) keeps
 * the migration state on reset instead. The model learns it through
 * ferry_device_ops.reset, which a migratable model must have: after it the
 * model is in RUNNING with no save or load session. If that reset fails the
 * device is in ERROR.
 *
 * Disconnect. When the client goes away the device returns to RUNNING
 * before the next client is served, as the kernel does when the device fd
 * is closed: from the saving and stopped states through the model's arcs
 * (so it ends its sessions as usual), from RESUMING and ERROR (or when an
 * arc fails) through a reset.
 *
 * Threads: every callback runs on the device's message thread (or, for
 * reset, on the thread calling ferry_device_reset), one at a time, never
 * concurrently with a ferry_device_ops callback: they all run under the
 * device's state lock. A migration SET is one critical section: a reset
 * asked for from another thread meanwhile runs right after it.
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
	 * bytes of the stream into @buf (borrowed for the call; with mig_shm it
	 * is the client's shared buffer). Returns the count; fill @buf unless
	 * the stream has no more for now (a short count is fine, e.g. at a
	 * round boundary: the library calls again until the client's request
	 * is full). 0 means: in STOP_COPY, the end of the device state (save()
	 * is not called again in that session); in the pre-copy states,
	 * nothing more at the moment (more may come as the device runs).
	 * A negative errno fails the client's read. Required. */
	ssize_t (*save)(void *opaque, void *buf, size_t len);

	/* In RESUMING: consumes all @len bytes of @buf (borrowed). Returns 0 or a
	 * negative errno when the data cannot be right (the client sees the
	 * error, and the restore cannot succeed any more). Chunk boundaries are
	 * arbitrary. @buf may be memory the client shares with the server (the
	 * mig_shm extension): read each byte once, copying fields before
	 * checking them, as a misbehaving client may change it meanwhile.
	 * Required. */
	int (*load)(void *opaque, const void *buf, size_t len);

	/* Estimated bytes STOP_COPY will still produce (VFIO's MIG_DATA_SIZE);
	 * called in any state. Optional: without it the feature is absent. */
	int (*stop_copy_size)(void *opaque, uint64_t *bytes);

	/* In the pre-copy states: bytes of the initial state not yet read, and
	 * bytes of state changed since they were read (the kernel's
	 * VFIO_MIG_GET_PRECOPY_INFO). Required with VFIO_MIGRATION_PRE_COPY. */
	int (*precopy_info)(void *opaque, uint64_t *initial_bytes, uint64_t *dirty_bytes);
};

/* Makes @dev migratable. Call once, before ferry_device_listen() or
 * ferry_device_attach_fd() (-EBUSY after). @ops is copied (ops->size bytes)
 * and checked: invalid flags, a missing required member (transition, save,
 * load; precopy_info with PRE_COPY) or a device without
 * ferry_device_ops.reset fail with -EINVAL and a log line naming it.
 * Callbacks receive the device's opaque. */
FERRY_API int ferry_device_set_migration(struct ferry_device *dev,
					 const struct ferry_migration_ops *ops);

/* The current migration state (FERRY_MIG_RUNNING for a device without
 * migration). Any thread. */
FERRY_API enum ferry_mig_state ferry_device_mig_state(const struct ferry_device *dev);

/* Resets the device from any thread (a model's watchdog, a management
 * thread) as DEVICE_RESET does: interrupts off, model reset, config space to
 * power-on, migration state RUNNING, data sessions ended; the client's DMA
 * mappings and eventfds stay. If a command (e.g. a migration state change)
 * is in progress on the message thread, the reset is deferred until it
 * completes, then wins; the call returns once the reset ran, with its
 * result. Called from inside a callback on the message thread, it only
 * schedules the reset for when that command ends and returns 0. Returns
 * -EDEADLK (nothing done) from a thread holding ferry_dma_ptr_get()
 * pointers: put them first. Do not call it from a thread that the model's
 * transition() or other callbacks wait for: the reset waits for them. */
FERRY_API int ferry_device_reset(struct ferry_device *dev);

#ifdef __cplusplus
}
#endif
#endif /* FERRY_DEVICE_MIGRATION_H */
