/*
 * ferry-dev-dma's migration data, version 1: what mig_save.c writes and
 * mig_load.c reads. libferry carries it opaquely between its own prefix and
 * trailer (device_migration.h), in chunks of any size. Little-endian.
 *
 *   stream = PRECOPY-record* FINAL-record
 *
 * A session that starts in PRE_COPY(_P2P) sends one PRECOPY record (the
 * state when it started) and, at STOP_COPY, the FINAL record (the state of
 * the stopped engine); one that starts in STOP_COPY sends the FINAL record
 * only. The destination checks every record as soon as it is in and applies
 * the FINAL one at RESUMING -> STOP. Nothing may follow it.
 *
 * record = header (DMA_MIG_HDR_LEN = 24) + state (DMA_MIG_STATE_LEN = 336)
 *
 * header:
 *   0   4  magic          "FDMS"
 *   4   2  version        1 (DMA_MIG_VERSION)
 *   6   2  kind           1 PRECOPY: checked, not applied; 2 FINAL
 *   8   4  state_len      336: the length of what follows
 *   12  4  state_version  DMA_STATE_VERSION (2)
 *   16  4  crc            crc32 (zlib) of header bytes 0..15, then the state
 *   20  4  reserved       0
 *
 * state: struct dma_state (engine.h) field by field, in declaration order,
 * at its natural offsets (it has no padding): control u32 @0, status u32 @4,
 * ring_base u64 @8, ring_size u32 @16, irq_coalesce u32 @20, head u32 @24,
 * tail u32 @28, completed u64 @32, errors u64 @40, irqs u64 @48,
 * peer_doorbell u64 @56, since_irq u32 @64, peer_held u32 @68,
 * peer_writes u64 @72, then DMA_PEER_HOLD_MAX held writes {addr u64,
 * value u64} @80.
 *
 * A record is accepted only if every header field has its value, the crc
 * matches (a flipped bit anywhere is caught) and dma_state_check() accepts
 * the state. Any other version is refused: there is only one.
 */
#ifndef FERRY_DEV_DMA_MIG_STREAM_H
#define FERRY_DEV_DMA_MIG_STREAM_H

#include <stdint.h>

#include "engine.h"

#define DMA_MIG_MAGIC      "FDMS"
#define DMA_MIG_VERSION    1u
#define DMA_MIG_HDR_LEN    24u
#define DMA_MIG_STATE_LEN  ((uint32_t)sizeof(struct dma_state))
#define DMA_MIG_REC_LEN    (DMA_MIG_HDR_LEN + DMA_MIG_STATE_LEN)

_Static_assert(sizeof(struct dma_state) == 336, "the stream's state layout (mig_stream.h)");

enum dma_mig_kind {
	DMA_MIG_PRECOPY = 1,
	DMA_MIG_FINAL = 2,
};

/* Fills @out with a whole record of @kind holding @st. */
void dma_mig_record_encode(uint8_t out[DMA_MIG_REC_LEN], enum dma_mig_kind kind,
			   const struct dma_state *st);

/* Checks a record header on its own (everything but the crc), so a stream
 * of another kind or version is refused at its first bytes. Returns 0 or
 * -EINVAL with one log line naming @name and stream offset @at. */
int dma_mig_header_check(const char *name, uint64_t at, const uint8_t hdr[DMA_MIG_HDR_LEN]);

/* Checks a whole record (header, crc, state) and decodes it. Returns 0 with
 * *@kind and *@st, or -EINVAL with one log line. */
int dma_mig_record_decode(const char *name, uint64_t at, const uint8_t rec[DMA_MIG_REC_LEN],
			  enum dma_mig_kind *kind, struct dma_state *st);

#endif /* FERRY_DEV_DMA_MIG_STREAM_H */
