/*
 * The migration stream on the wire: constants, layouts and little-endian
 * accessors shared by the writer and the reader. docs/stream-format.md is
 * the byte-by-byte description; keep the two in step.
 *
 *   stream  := header section*
 *   header  := "FERRYMIG" version:u32 header_len:u32            (16 bytes)
 *   section := type:u16 flags:u16 length:u32 seq:u32 crc:u32    (16 bytes)
 *              payload[length]
 *
 * All integers are little-endian. crc is zlib's CRC-32 (crc32_z) over the
 * first 12 bytes of the section header followed by the payload, so a damaged
 * type, flags, length or seq is caught as surely as a damaged payload.
 */
#ifndef FERRY_MIGRATE_STREAM_FORMAT_H
#define FERRY_MIGRATE_STREAM_FORMAT_H

#include <stdint.h>
#include <string.h>

#define MIG_STREAM_MAGIC "FERRYMIG"
#define MIG_STREAM_MAGIC_LEN 8
/* The one format version this build writes and reads (see the versioning
 * policy in docs/stream-format.md). */
#define MIG_STREAM_VERSION 2u
#define MIG_STREAM_HEADER_LEN 16u
#define MIG_SECTION_HEADER_LEN 16u
/* Bytes of the section header the crc covers (all but the crc itself). */
#define MIG_SECTION_CRC_COVERS 12u

/* Largest payload any section may have; a reader may set a lower limit. */
#define MIG_SECTION_MAX_LEN (64u << 20)
#define MIG_MANIFEST_MAX_LEN (64u << 10)
#define MIG_MAX_DEVICES 64u
#define MIG_PAGE_SIZE_MIN 4096u
#define MIG_PAGE_SIZE_MAX (2u << 20)

/* Section types. Numbering is part of the format; never reuse a number. */
enum mig_section_type {
	MIG_SEC_MANIFEST = 1,
	MIG_SEC_GUEST_PAGES = 2,
	MIG_SEC_DEVICE_DATA = 3,
	MIG_SEC_DEVICE_END = 4,
	MIG_SEC_ROUND_END = 5,
	MIG_SEC_SWITCHOVER = 6,
	MIG_SEC_CHECKSUMS = 7,
	MIG_SEC_END = 8,
};
#define MIG_SEC_FIRST MIG_SEC_MANIFEST
#define MIG_SEC_LAST MIG_SEC_END

/* GUEST_PAGES payload: a fixed part, then one flag byte per page of the run,
 * then the data of DATA and ZSTD pages in page order. */
#define MIG_PAGES_FIXED_LEN 16u /* start:u64 count:u32 reserved:u32 */
enum mig_page_flag {
	MIG_PAGE_SKIP = 0, /* not sent: the destination keeps what it has */
	MIG_PAGE_ZERO = 1, /* all zero bytes; no data */
	MIG_PAGE_DATA = 2, /* page_size raw bytes */
	MIG_PAGE_ZSTD = 3, /* clen:u32 then one zstd frame of clen bytes that
			    * decodes to page_size bytes; 1 <= clen < page_size */
};
#define MIG_PAGE_FLAG_LAST MIG_PAGE_ZSTD

/* Fixed payload sizes. DEVICE_DATA is device:u32 then 1.. chunk bytes. */
#define MIG_DEVICE_DATA_FIXED_LEN 4u  /* device:u32 */
#define MIG_DEVICE_END_LEN 16u        /* device:u32 reserved:u32 total_bytes:u64 */
#define MIG_ROUND_END_LEN 24u         /* round:u32 reserved:u32 pages_sent:u64 dirty:u64 */
#define MIG_CHECKSUMS_FIXED_LEN 8u    /* count:u32 reserved:u32 */
#define MIG_CHECKSUM_RECORD_LEN 16u   /* subject:u32 crc:u32 bytes:u64 */
/* CHECKSUMS subject for guest memory; other subjects are device indexes. */
#define MIG_CHECKSUM_MEMORY 0xffffffffu

/* The name of a section type for log lines, "unknown" if not one. */
static inline const char *mig_section_type_str(uint32_t type)
{
	static const char *const names[] = {
		[MIG_SEC_MANIFEST] = "MANIFEST",
		[MIG_SEC_GUEST_PAGES] = "GUEST_PAGES",
		[MIG_SEC_DEVICE_DATA] = "DEVICE_DATA",
		[MIG_SEC_DEVICE_END] = "DEVICE_END",
		[MIG_SEC_ROUND_END] = "ROUND_END",
		[MIG_SEC_SWITCHOVER] = "SWITCHOVER",
		[MIG_SEC_CHECKSUMS] = "CHECKSUMS",
		[MIG_SEC_END] = "END",
	};

	if (type >= sizeof(names) / sizeof(names[0]) || !names[type])
		return "unknown";
	return names[type];
}

static inline void mig_put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void mig_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void mig_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t mig_get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t mig_get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline uint64_t mig_get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

#endif
