/*
 * The vram device's migration stream, version 2: what save.c writes and
 * load.c reads. Version 1 (refused) had the same layout but a digest made
 * with a hand-written hash instead of XXH3. The library carries it opaquely (device_migration.h), in
 * chunks of any size. All integers are little-endian.
 *
 *   stream  = header record* trailer
 *
 * header (VRAM_HDR_LEN = 96 bytes):
 *   0   8  magic       "FERRYVRM"
 *   8   4  version     2
 *   12  4  header_len  96
 *   16  4  page_size   4096 (VRAM_PAGE_SIZE)
 *   20  4  regs_len    48 (VRAM_REGS_LEN)
 *   24  8  vram_size   bytes; must equal the destination's
 *   32  8  npages      vram_size / page_size
 *   40  48 regs        register block at the start of the session (below)
 *   88  4  flags       0
 *   92  4  crc         crc32 (zlib's) of bytes 0..91
 *
 * record header (VRAM_REC_LEN = 16 bytes): type u32 @0, aux u32 @4, arg u64 @8
 *   PAGE    (1): aux 0, arg = page index < npages; followed by page_size bytes
 *   ZERO    (2): aux 0, arg = page index < npages; the page is all zeroes
 *   ROUND   (3): aux 0, arg = pre-copy round number (1, 2, ...; increasing):
 *                the pages of that round follow (informational)
 *   TRAILER (4): aux = VRAM_TRAILER_BODY (80), arg 0; followed by the body.
 *                Nothing may follow it.
 *   Any other type is refused.
 *
 * trailer body (80 bytes):
 *   0   8  page_records  PAGE + ZERO records in the stream
 *   8   8  vram_digest   XXH3_64bits of the npages page fingerprints (each
 *                        a u64, in page order) of the source VRAM at stop;
 *                        a page's fingerprint is XXH3_64bits of its bytes
 *   16  4  stream_crc    crc32 of every stream byte before the trailer's
 *                        record header
 *   20  4  reserved      0
 *   24  48 regs          final register block: applied on RESUMING -> STOP
 *   72  4  trailer_crc   crc32 of the trailer record header + body bytes 0..71
 *   76  4  reserved      0
 *
 * register block (VRAM_REGS_LEN = 48 bytes), the migrated registers:
 *   0 control u32 (only VRAM_CTRL_MASK bits), 4 rate u32 (<= VRAM_RATE_MAX),
 *   8 seed u32, 12 engine_first u32, 16 engine_count u32, 20 checksum u32,
 *   24 csum_count u32, 28 reserved u32 (0), 32 engine_writes u64,
 *   40 generation u64.
 *
 * Every page appears at least once; a later record for a page replaces the
 * earlier one. Pre-copy sends every page once in order (the initial pass),
 * then rounds of pages dirtied since; stop-copy sends the pages still dirty,
 * then the trailer. A stream from a session that started in STOP_COPY is the
 * header, every page once, and the trailer.
 *
 * The destination accepts a stream only if: every field above checks, every
 * page was received, page_records matches, stream_crc and trailer_crc match
 * (a flipped bit anywhere is caught), and the digest of the fingerprints of
 * what it received equals vram_digest (its VRAM equals the source's).
 */
#ifndef FERRY_DEV_VRAM_STREAM_H
#define FERRY_DEV_VRAM_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "regs.h"

#define VRAM_STREAM_MAGIC   "FERRYVRM"
#define VRAM_STREAM_VERSION 2u
#define VRAM_HDR_LEN        96u
#define VRAM_REC_LEN        16u
#define VRAM_REGS_LEN       48u
#define VRAM_TRAILER_BODY   80u
#define VRAM_TRAILER_LEN    (VRAM_REC_LEN + VRAM_TRAILER_BODY)
#define VRAM_PAGE_REC_LEN   (VRAM_REC_LEN + VRAM_PAGE_SIZE)
#define VRAM_ZERO_REC_LEN   VRAM_REC_LEN

enum vram_rec_type {
	VRAM_REC_PAGE = 1,
	VRAM_REC_ZERO = 2,
	VRAM_REC_ROUND = 3,
	VRAM_REC_TRAILER = 4,
};

/* The migrated registers, as plain values (a snapshot). */
struct vram_reg_block {
	uint32_t control, rate, seed, engine_first, engine_count;
	uint32_t checksum, csum_count;
	uint64_t engine_writes, generation;
};

struct vram_stream_header {
	uint64_t vram_size, npages;
	struct vram_reg_block regs;
};

struct vram_rec {
	uint32_t type, aux;
	uint64_t arg;
};

struct vram_trailer {
	uint64_t page_records, vram_digest;
	uint32_t stream_crc;
	struct vram_reg_block regs;
};

/* Encoders fill exactly the documented number of bytes. */
void vram_header_encode(uint8_t out[VRAM_HDR_LEN], const struct vram_stream_header *h);
void vram_rec_encode(uint8_t out[VRAM_REC_LEN], uint32_t type, uint32_t aux, uint64_t arg);
/* @out: VRAM_TRAILER_LEN bytes: record header and body, crc included. */
void vram_trailer_encode(uint8_t out[VRAM_TRAILER_LEN], const struct vram_trailer *t);

/* Decoders check every field that has a fixed or bounded value; they log
 * one line naming @name and return -EINVAL when something is wrong. Checks
 * that need the destination's own sizes are left to the caller. */
int vram_header_decode(const char *name, const uint8_t in[VRAM_HDR_LEN],
		       struct vram_stream_header *h);
void vram_rec_decode(const uint8_t in[VRAM_REC_LEN], struct vram_rec *r);
/* @in: the whole trailer record (header + body). */
int vram_trailer_decode(const char *name, const uint8_t in[VRAM_TRAILER_LEN],
			struct vram_trailer *t);

/* Register block validity (known control bits, rate bound, reserved 0). */
int vram_regs_decode(const char *name, const uint8_t in[VRAM_REGS_LEN],
		     struct vram_reg_block *r);
void vram_regs_encode(uint8_t out[VRAM_REGS_LEN], const struct vram_reg_block *r);

#endif
