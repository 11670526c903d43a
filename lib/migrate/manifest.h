/*
 * The stream manifest: what a migration carries, sent once as the first
 * section (MANIFEST) as a JSON object, so the destination can check it has
 * the right memory and devices before any data arrives.
 *
 *   {"source_host": "src1",
 *    "memory": {"size": 1073741824, "page_size": 4096},
 *    "options": {"compression": "none"},
 *    "devices": [{"index": 0, "kind": "dma", "socket": "/run/dma0.sock",
 *                 "migration_flags": 5}]}
 *
 * Decoding is strict: every key present with the right JSON type, no other
 * key, every value in range (see mig_manifest_check and
 * docs/stream-format.md). Pure functions: thread-safe, no logging; failures
 * describe themselves in @why so the caller can log them with context.
 */
#ifndef FERRY_MIGRATE_MANIFEST_H
#define FERRY_MIGRATE_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "migrate/stream_format.h"

#define MIG_HOST_NAME_MAX 255
#define MIG_KIND_MAX 32
#define MIG_SOCKET_NAME_MAX 107

enum mig_compression {
	MIG_COMPRESS_NONE = 0,
	MIG_COMPRESS_ZSTD = 1,
};

struct mig_manifest_device {
	char kind[MIG_KIND_MAX + 1];          /* 1.. of [A-Za-z0-9_.-] */
	char socket[MIG_SOCKET_NAME_MAX + 1]; /* informational; may be empty */
	uint32_t migration_flags;             /* VFIO_MIGRATION_*; STOP_COPY set */
};

struct mig_manifest {
	char source_host[MIG_HOST_NAME_MAX + 1]; /* 1.. printable ASCII */
	uint64_t mem_size;   /* bytes; a non-zero multiple of page_size */
	uint32_t page_size;  /* power of two, 4 KiB .. 2 MiB */
	enum mig_compression compression;
	uint32_t ndevices;   /* 0 .. MIG_MAX_DEVICES; device i has index i */
	struct mig_manifest_device devices[MIG_MAX_DEVICES];
};

/* Checks every field of @m, with guest memory at most @max_mem_size bytes.
 * Returns 0, or -EBADMSG (-EFBIG for memory over the limit) with the reason
 * in @why. */
int mig_manifest_check(const struct mig_manifest *m, uint64_t max_mem_size, char *why,
		       size_t whylen);

/* Encodes a checked @m as compact JSON into a malloc'd buffer (*@json, not
 * NUL-terminated, *@len bytes; the caller frees it). Returns 0, -ENOMEM, or
 * the mig_manifest_check error. */
int mig_manifest_encode(const struct mig_manifest *m, char **json, size_t *len, char *why,
			size_t whylen);

/* Decodes and checks @len bytes of JSON into @out. Returns 0, -EBADMSG,
 * -EFBIG or -ENOMEM, with the reason in @why. */
int mig_manifest_decode(const uint8_t *buf, size_t len, uint64_t max_mem_size,
			struct mig_manifest *out, char *why, size_t whylen);

/* "none" or "zstd". */
const char *mig_compression_str(enum mig_compression c);

#endif
