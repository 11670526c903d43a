/*
 * Device-side migration internals, shared by lib/device/migration.c,
 * mig_*.c (never installed). The public contract is
 * include/ferry/device_migration.h; the stream format is docs/device-stream.md.
 *
 * Concepts:
 * - struct mig exists once the model called ferry_device_set_migration();
 *   dev->mig is NULL otherwise and every migration feature is absent.
 * - The stream a client reads, one per saving session (PRE_COPY ..
 *   STOP_COPY, or STOP_COPY alone), is
 *
 *       prefix  |  the model's bytes (ops.save)  |  trailer
 *
 *   The prefix (header + the library's device state when the session
 *   starts: config space, MSI-X table and PBA, pending interrupts) comes
 *   first so that a destination of another kind refuses the stream at its
 *   first write. The trailer carries the same state again, taken when the
 *   model's stop-copy data ended: in PRE_COPY the guest still runs and may
 *   change config space or the MSI-X table (irqbalance does), so only the
 *   trailer's copy is final. The model's bytes are passed through without a
 *   copy of our own and without framing.
 * - The destination parses the prefix incrementally and applies it when it
 *   is complete (RESUMING: nothing runs), then passes every byte to
 *   ops.load except the newest trailer_len ones, which it holds back in a
 *   ring: at RESUMING -> STOP those either are a valid trailer (applied
 *   before the model validates its own data) or, for a stream cut short,
 *   belong to the model and are handed to it then, so that the model's
 *   validation (not ours) judges a truncated stream, as the API promises.
 * - All of it runs under the state lock (dispatch holds it per command).
 */
#ifndef FERRY_DEVICE_MIG_H
#define FERRY_DEVICE_MIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ferry/device_migration.h>

#include "device/device_priv.h"

/* Fixed parts of the prefix and the trailer (docs/device-stream.md). */
#define MIG_HDR_LEN 32u
#define MIG_FOOTER_LEN 32u
#define MIG_STATE_HDR_LEN 32u
#define MIG_STREAM_VERSION 1u
#define MIG_PREFIX_MAGIC "FERRYMIG"
#define MIG_TRAILER_MAGIC "FERRYEND"

/* Source side: one saving session. */
struct mig_save {
	bool is_active;     /* PRE_COPY(_P2P) or STOP_COPY reached from outside */
	bool is_model_done; /* save() returned 0 in STOP_COPY: the trailer is built */
	size_t prefix_off;  /* prefix bytes handed out */
	size_t trailer_off; /* trailer bytes handed out */
	uint64_t model_bytes;
	uint8_t *prefix;    /* [prefix_len], built at session start */
	uint8_t *trailer;   /* [trailer_len], built when the model's data ends */
};

/* Destination side: one RESUMING session. */
struct mig_load {
	bool is_active;
	bool is_prefix_done; /* prefix checked and applied */
	bool is_ended;       /* RESUMING -> STOP looked at the end: no more data */
	int err;             /* sticky: the stream was refused (negative errno) */
	size_t prefix_got;
	uint8_t *prefix;     /* [prefix_len] */
	uint8_t *ring;       /* [trailer_len]: the newest bytes, maybe the trailer */
	size_t ring_head, ring_len;
	uint8_t *scratch;    /* [trailer_len]: the ring made contiguous */
	uint64_t offset;     /* stream bytes taken, for log lines */
	uint64_t model_bytes;
};

/* mig_shm: the client's shared buffer, for this connection. */
struct mig_shm {
	uint8_t *base; /* NULL when none */
	uint64_t size;
};

struct mig {
	struct ferry_migration_ops ops;
	void *opaque;
	size_t state_len;   /* the library's state block */
	size_t prefix_len;  /* MIG_HDR_LEN + state_len */
	size_t trailer_len; /* state_len + MIG_FOOTER_LEN */
	struct mig_save save;
	struct mig_load load;
	struct mig_shm shm;
	uint8_t *xfer;      /* MIG_DATA_READ reply buffer, allocated on first use */
};

static inline enum ferry_mig_state mig_cur(const struct ferry_device *dev)
{
	return (enum ferry_mig_state)atomic_load(&dev->mig_state);
}

/* ---- migration.c ---- */
/* Walks from the current state to @target, one arc at a time (state lock
 * held). Returns 0, -EINVAL for an unsupported or blocked target (logged),
 * or the failing arc's errno (logged; the state is then where the arc left
 * it: its start if restored, else ERROR). */
int mig_set_state(struct ferry_device *dev, uint32_t target);

/* ---- mig_libstate.c: the library's state in the stream ---- */
size_t libstate_len(const struct ferry_device *dev);
/* Builds the prefix / trailer with the state as it is now (irq_lock taken). */
void prefix_build(struct ferry_device *dev, uint8_t *out);
void trailer_build(struct ferry_device *dev, uint8_t *out);
/* Checks a complete prefix (header, identity, crc); applies its state to
 * the device if @apply. Returns 0 or -EINVAL with one log line. */
int prefix_load(struct ferry_device *dev, const uint8_t *p, bool apply);
/* Checks the first MIG_HDR_LEN bytes of a prefix, so that a stream of
 * another kind is refused before its state arrives. */
int prefix_check_header(struct ferry_device *dev, const uint8_t *hdr);
/* True if @t (trailer_len bytes) is a well-formed trailer for this device:
 * magic, version, lengths and crc. */
bool trailer_is_valid(const struct ferry_device *dev, const uint8_t *t);
/* Applies a valid trailer's state. Returns 0 or -EINVAL (logged). */
int trailer_apply(struct ferry_device *dev, const uint8_t *t);

/* ---- mig_data.c: the stream ---- */
void mig_save_begin(struct ferry_device *dev);
void mig_save_end(struct ferry_device *dev);
/* Fills @out with up to @cap stream bytes: prefix, model, trailer. Calls
 * save() until @cap is full or it returns 0. Returns the count or a
 * negative errno (logged). */
ssize_t mig_save_fill(struct ferry_device *dev, uint8_t *out, size_t cap, const char *what);
/* Stream bytes the library itself still has to hand out in this session
 * (unread prefix, unread or future trailer). */
uint64_t mig_save_lib_left(const struct ferry_device *dev, uint64_t *prefix_left);
void mig_load_begin(struct ferry_device *dev);
void mig_load_end(struct ferry_device *dev);
/* Takes @len stream bytes in order (RESUMING). 0 or a negative errno. */
int mig_load_feed(struct ferry_device *dev, const uint8_t *p, size_t len, const char *what);
/* RESUMING -> STOP, before the model's arc: the prefix must be complete;
 * the trailer is applied, or the held-back bytes go to the model. */
int mig_load_finish(struct ferry_device *dev);

/* ---- mig_shm.c ---- */
/* Unmaps the client's buffer (disconnect). */
void mig_shm_release(struct ferry_device *dev);

#endif /* FERRY_DEVICE_MIG_H */
