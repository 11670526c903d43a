/*
 * libferry, client side: driving a device's VFIO migration v2 over vfio-user.
 *
 * These calls map one to one onto protocol messages: the server computes
 * multi-step paths itself, so ferry_client_mig_set_state() is one
 * DEVICE_FEATURE SET even for RUNNING -> STOP_COPY. Failures log the device,
 * the from-state and the to-state by name.
 */
#ifndef FERRY_CLIENT_MIGRATION_H
#define FERRY_CLIENT_MIGRATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/client.h>
#include <ferry/common.h>
#include <ferry/migration.h>

#ifdef __cplusplus
extern "C" {
#endif

/* DEVICE_FEATURE GET MIGRATION: the device's VFIO_MIGRATION_* flags.
 * -ENOTTY (or the server's errno) when the device cannot migrate. */
FERRY_API int ferry_client_mig_flags(struct ferry_client *c, uint64_t *flags);

/* MIG_DEVICE_STATE GET / SET. SET returns once the device is in @state; on
 * failure the device may be in any state along the path: GET tells. */
FERRY_API int ferry_client_mig_get_state(struct ferry_client *c, enum ferry_mig_state *state);
FERRY_API int ferry_client_mig_set_state(struct ferry_client *c, enum ferry_mig_state state);

/* One MIG_DATA_READ of at most @len bytes (split by the negotiated transfer
 * size). *@got is what the device returned: 0 means end of stream in
 * STOP_COPY and "nothing now" in the pre-copy states. */
FERRY_API int ferry_client_mig_read(struct ferry_client *c, void *buf, size_t len, size_t *got);

/* MIG_DATA_WRITE of all @len bytes (chunked as needed), in RESUMING. */
FERRY_API int ferry_client_mig_write(struct ferry_client *c, const void *buf, size_t len);

/* MIG_DATA_SIZE: estimated bytes STOP_COPY will produce. -ENOTTY if absent. */
FERRY_API int ferry_client_mig_data_size(struct ferry_client *c, uint64_t *stop_copy_bytes);

/* Pre-copy sizes (ferry extension "precopy_info", docs/protocol-extensions.md):
 * valid in PRE_COPY / PRE_COPY_P2P. -EOPNOTSUPP when the server did not
 * negotiate the extension. */
FERRY_API int ferry_client_mig_precopy_info(struct ferry_client *c, uint64_t *initial_bytes,
					    uint64_t *dirty_bytes);

/* ---- mig_shm: the data stream through shared memory ----
 *
 * Ferry extension "mig_shm" (docs/protocol-extensions.md). The client hands
 * a server a memfd; a read then has the device's save() write straight into
 * it, a write has load() read straight from it, and no data byte travels in
 * a message. Give the same memfd to a source and a destination and the
 * client copies nothing: read into a range on the source, write that range
 * to the destination. How the buffer is divided (e.g. slots, to pipeline
 * reads and writes from two threads) is the caller's business; a range must
 * not be reused before the call using it returned. Every call below returns
 * -EOPNOTSUPP, sending nothing, when the server did not negotiate mig_shm.
 */

/* Creates a memfd of @size bytes sealed against shrinking and growing (the
 * servers require F_SEAL_SHRINK so it cannot be truncated under their
 * mappings). The caller owns *@fd and maps it itself if it wants to look at
 * the data. Returns 0 or a negative errno. */
FERRY_API int ferry_mig_shm_create(uint64_t size, int *fd);

/* Hands @fd (@size bytes; duplicated in transit, not consumed) to the
 * server as its migration buffer, replacing any earlier one. The server
 * drops it on disconnect or ferry_client_mig_shm_release(). */
FERRY_API int ferry_client_mig_shm_setup(struct ferry_client *c, int fd, uint64_t size);
FERRY_API int ferry_client_mig_shm_release(struct ferry_client *c);

/* MIG_DATA_READ into [@offset, @offset + @len) of the buffer: *@got bytes
 * were written there, 0 meaning what it means for ferry_client_mig_read().
 * The server fills the range unless the stream has nothing more; @len is
 * not limited by max_data_xfer_size (only by the buffer). */
FERRY_API int ferry_client_mig_read_shm(struct ferry_client *c, uint64_t offset, uint32_t len,
					uint32_t *got);

/* MIG_DATA_WRITE of [@offset, @offset + @len) of the buffer, in RESUMING. */
FERRY_API int ferry_client_mig_write_shm(struct ferry_client *c, uint64_t offset, uint32_t len);

#ifdef __cplusplus
}
#endif
#endif /* FERRY_CLIENT_MIGRATION_H */
