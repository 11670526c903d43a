/*
 * The source side of a migration data session: produces the stream of
 * stream.h from the VRAM, the dirty tracker and the registers.
 *
 * A session starts on RUNNING(_P2P) -> PRE_COPY(_P2P) (pre-copy: initial
 * pass, then rounds) or on STOP -> STOP_COPY (everything at once), is
 * finalised when it enters STOP_COPY (the engine is stopped by then: the
 * exact set of pages still to send is fixed and the VRAM digest computed),
 * and ends on the arcs out of the saving group. All on the message thread,
 * but for the stop-copy scan (vram_save_finalize()).
 */
#ifndef FERRY_DEV_VRAM_SAVE_H
#define FERRY_DEV_VRAM_SAVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct vram;

/* Allocates v->save (sized for v->npages). 0 or -ENOMEM. */
int vram_save_create(struct vram *v);
void vram_save_destroy(struct vram *v);

/* Starts a session: @precopy for one starting in PRE_COPY(_P2P). */
void vram_save_begin(struct vram *v, bool precopy);
/* Entering STOP_COPY (engine stopped): starts computing the stop-copy set
 * on a thread of its own and returns; every other vram_save_* call (and
 * vram_save_destroy()) waits for it first. */
void vram_save_finalize(struct vram *v);
/* Ends the session (whatever was not read is dropped). */
void vram_save_end(struct vram *v);

/* The next at most @len stream bytes into @buf (the migration op save()).
 * 0: nothing now (pre-copy) or end of stream (STOP_COPY). -EINVAL outside a
 * session. */
ssize_t vram_save_read(struct vram *v, void *buf, size_t len);

/* The precopy_info op: valid in PRE_COPY(_P2P) only (-EINVAL otherwise). */
int vram_save_precopy_info(struct vram *v, uint64_t *initial_bytes, uint64_t *dirty_bytes);

/* The stop_copy_size op, in any state: exact in STOP_COPY and STOP, an upper
 * bound as of now in the running states (regs.h explains what it cannot see
 * yet). */
uint64_t vram_save_stop_copy_size(struct vram *v);

#endif
