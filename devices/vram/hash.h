/*
 * A fast non-cryptographic 64-bit hash of a byte buffer: the per-page
 * fingerprints of the dirty tracker and the VRAM digest of the migration
 * stream (regs.h, stream.h).
 *
 * Shape: four independent 64-bit lanes eat 32-byte stripes (multiply-rotate
 * rounds in the manner of xxHash64), then the lanes are merged, the tail is
 * folded in and the result is avalanched. Four lanes keep four multiplies in
 * flight, which is what makes hashing a 4 KiB page cost about as much as
 * reading it (several GB/s). Not keyed, not collision-resistant against an
 * adversary: it detects change, it does not authenticate.
 *
 * The value depends only on the bytes (read little-endian), never on their
 * alignment. Thread-safe.
 */
#ifndef FERRY_DEV_VRAM_HASH_H
#define FERRY_DEV_VRAM_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t vram_hash64(const void *buf, size_t len);

#endif
