/*
 * ferry-dev-dma: the source side of a migration data session (format in
 * mig_stream.h). Pure: the caller (migration.c) passes engine states in.
 *
 * The device state is small (DMA_MIG_REC_LEN bytes), so pre-copy is a
 * single snapshot: a session starting in PRE_COPY(_P2P) queues one PRECOPY
 * record of the state at that moment; save() hands it out and then returns
 * 0 ("nothing more now") for as long as the device runs. The running engine
 * keeps changing its state (every descriptor moves RING_HEAD and the
 * counters), so a new snapshot would be stale before it was read: changes
 * are reported as dirty_bytes instead and go out once, in the FINAL record
 * queued when the stopped engine enters STOP_COPY. What the pre-copy record
 * buys is an early check at the destination (kind, version, a plausible
 * state) while the source still runs.
 *
 * Message thread only (all migration callbacks), so no locking.
 */
#ifndef FERRY_DEV_DMA_MIG_SAVE_H
#define FERRY_DEV_DMA_MIG_SAVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mig_stream.h"

struct dma_mig_save {
	bool is_active;
	bool is_final;              /* the FINAL record is queued */
	bool has_snapshot;          /* a PRECOPY record was queued */
	struct dma_state snapshot;  /* what it holds */
	uint8_t buf[2 * DMA_MIG_REC_LEN]; /* records not read yet: [off, len) */
	size_t off, len;
};

/* Starts a session: with @now (the running engine's state) one starting in
 * PRE_COPY(_P2P), which queues the PRECOPY record; with NULL one starting in
 * STOP_COPY. */
void dma_mig_save_begin(struct dma_mig_save *s, const struct dma_state *now);

/* Entering STOP_COPY: queues the FINAL record of @stopped (the state of the
 * stopped engine) behind whatever is unread. */
void dma_mig_save_final(struct dma_mig_save *s, const struct dma_state *stopped);

/* Ends the session; unread bytes are dropped. */
void dma_mig_save_end(struct dma_mig_save *s);

/* The next at most @len bytes into @buf. Returns the count; 0: nothing now
 * (pre-copy) or the end (after the FINAL record). -EINVAL (logged with
 * @name) outside a session. */
ssize_t dma_mig_save_read(struct dma_mig_save *s, const char *name, void *buf, size_t len);

/* Pre-copy sizes: @initial the unread bytes of the PRECOPY record; @dirty
 * one record when @now differs from the snapshot it holds (the FINAL
 * record will carry the change), else 0. */
void dma_mig_save_precopy_info(const struct dma_mig_save *s, const struct dma_state *now,
			       uint64_t *initial, uint64_t *dirty);

/* Bytes STOP_COPY still produces, exactly: in STOP_COPY what is unread; in
 * pre-copy what is unread plus the FINAL record; without a session one
 * record (a session starting in STOP_COPY). */
uint64_t dma_mig_save_stop_copy_size(const struct dma_mig_save *s);

#endif /* FERRY_DEV_DMA_MIG_SAVE_H */
