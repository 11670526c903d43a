/*
 * The destination side of a migration data session: parses the stream of
 * stream.h incrementally, across chunk boundaries of any size, straight into
 * the VRAM, and validates it.
 *
 * Every field is checked as soon as its bytes are in, against fixed values
 * and against this device's own sizes; the first failure logs one line and
 * poisons the session (every later write and the RESUMING -> STOP arc fail).
 * A stream that is merely incomplete does not poison: RESUMING -> STOP fails,
 * the device stays in RESUMING and more data may follow.
 * All on the message thread.
 */
#ifndef FERRY_DEV_VRAM_LOAD_H
#define FERRY_DEV_VRAM_LOAD_H

#include <stddef.h>
#include <stdint.h>

struct vram;

/* Allocates v->load. 0 or -ENOMEM. */
int vram_load_create(struct vram *v);
void vram_load_destroy(struct vram *v);

/* STOP -> RESUMING: a fresh parser, nothing received. */
void vram_load_begin(struct vram *v);
/* Drops the session. */
void vram_load_end(struct vram *v);

/* The migration op load(): consumes all @len bytes or fails (-EINVAL). */
int vram_load_write(struct vram *v, const void *buf, size_t len);

/* RESUMING -> STOP: 0 if a complete, valid stream was loaded (then the
 * registers are restored from the trailer, exactly, and v->is_restored set:
 * GENERATION counts this migration once the device runs); -EINVAL with one
 * log line otherwise. */
int vram_load_finish(struct vram *v);

#endif
