/*
 * The migration stream: a writer on the source and a reader on the
 * destination (format: stream_format.h and docs/stream-format.md).
 *
 * Concepts:
 * - The writer turns calls into sections and batches them into large
 *   writes. Guest pages go out as runs of up to 2 MiB of memory per section
 *   (MIG_PAGES_SECTION_BYTES): one flag byte per page, and data only for
 *   pages that are not all zero. It checks its caller against the order
 *   rules (stream_order.h), so an engine bug fails before it reaches the
 *   wire.
 * - Live pages: while the guest runs, a page can change between the moment
 *   its checksum is computed and the moment the kernel copies it into the
 *   socket, and the destination would then refuse a perfectly good stream.
 *   So by default the writer copies each data page into its buffer and
 *   checksums the copy. When nothing can write guest memory (stop-copy),
 *   MIG_WRITE_STABLE may be passed: the pages then go to the kernel straight
 *   from guest memory (writev), with no copy. Measured on the 2-vCPU test VM
 *   (1 GiB of random 4 KiB pages over TCP loopback): the sender spends 0.5-0.6
 *   CPU-seconds per GB copying and 0.8-1.0 by reference, because the
 *   kernel's copy from cold guest memory is slower than from the writer's
 *   cache-hot buffer and the checksum reads guest memory once more. So the
 *   copy is the default; measure before choosing STABLE for speed.
 * - The reader returns one validated section at a time: type known, length
 *   within bounds and consistent with the type, checksum, sequence number,
 *   every field in range and the order rules. Anything else is refused with
 *   one log line naming the section number, type, stream offset and values;
 *   after a failure every call returns the same error. Payload pointers in a
 *   returned section are borrowed until the next reader call.
 * - Device streams are opaque: the writer sends any byte string in chunks;
 *   the reader checks each device's chunk total at DEVICE_END and its CRC-32
 *   at CHECKSUMS.
 *
 * Thread-safety: a writer or reader is used by one thread at a time.
 */
#ifndef FERRY_MIGRATE_STREAM_H
#define FERRY_MIGRATE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migrate/manifest.h"
#include "migrate/stream_format.h"
#include "migrate/transport.h"

/* Guest memory covered by one GUEST_PAGES section the writer emits: one 2 MiB
 * huge page, or 512 small ones (512 flag bytes, under 0.03%). */
#define MIG_PAGES_SECTION_BYTES (2u << 20)
/* Largest DEVICE_DATA chunk the writer emits. */
#define MIG_DEVICE_CHUNK_BYTES (1u << 20)
/* Transport inactivity limit when the options say 0. */
#define MIG_STREAM_DEFAULT_TIMEOUT_MS 30000

/* ---- writer ---- */

struct mig_stream_writer;

struct mig_stream_writer_opts {
	int timeout_ms; /* per-wait transport limit; 0: the default, -1: forever */
	int zstd_level; /* with compression "zstd"; 0: level 1 */
};

/* Bytes and pages the writer has put out so far (buffered ones included). */
struct mig_stream_stats {
	uint64_t bytes;         /* stream bytes, headers included */
	uint64_t sections;
	uint64_t pages_zero, pages_data, pages_zstd;
	uint64_t page_bytes;    /* bytes of page data (compressed size for zstd) */
	uint64_t device_bytes;  /* device stream bytes, all devices */
};

/* mig_stream_write_pages flag: guest memory cannot change until the call
 * returns; send pages by reference instead of copying them. */
#define MIG_WRITE_STABLE 1u

/*
 * Creates a writer on @t (borrowed: it must outlive the writer) and queues
 * the stream header and the MANIFEST section for @m (copied). @opts may be
 * NULL. Returns 0 or a negative errno (one log line).
 */
int mig_stream_writer_create(struct mig_transport *t, const struct mig_manifest *m,
			     const struct mig_stream_writer_opts *opts,
			     struct mig_stream_writer **out);

/*
 * Sends the guest pages in [@first, @first + @count) whose bit is set in
 * @bitmap (bit p of word p / 64 stands for page p; NULL: every page). @mem
 * is guest memory: page p lives at mem + p * page_size. Pages are checked
 * for zero, compressed when the manifest asks for zstd and it helps, and
 * sent in sections of at most MIG_PAGES_SECTION_BYTES of memory. @flags:
 * MIG_WRITE_STABLE or 0. @mem and @bitmap are borrowed for the call only.
 * Returns 0 or a negative errno.
 */
int mig_stream_write_pages(struct mig_stream_writer *w, const void *mem,
			   const uint64_t *bitmap, uint64_t first, uint64_t count, unsigned flags);

/* Sends @len bytes (> 0) of device @device's stream, in chunks of at most
 * MIG_DEVICE_CHUNK_BYTES. @buf is borrowed for the call only. */
int mig_stream_write_device_data(struct mig_stream_writer *w, uint32_t device, const void *buf,
				 size_t len);

/* Device @device's stream is complete (only after SWITCHOVER). */
int mig_stream_write_device_end(struct mig_stream_writer *w, uint32_t device);

/* Pre-copy round @round (1, 2, ...) is over; informational. Flushes. */
int mig_stream_write_round_end(struct mig_stream_writer *w, uint32_t round,
			       uint64_t pages_sent, uint64_t dirty_remaining);

/* The source is paused; what follows is the stop-copy part. Flushes. */
int mig_stream_write_switchover(struct mig_stream_writer *w);

/* Sends CHECKSUMS: one record per device (the CRC-32 and length of its whole
 * stream, which the writer computed as it went) and, if @has_memory_crc, one
 * for guest memory: @memory_crc is crc32_z over all mem_size bytes. */
int mig_stream_write_checksums(struct mig_stream_writer *w, bool has_memory_crc,
			       uint32_t memory_crc);

/* Sends END and flushes everything. */
int mig_stream_write_end(struct mig_stream_writer *w);

/* Writes out everything buffered. */
int mig_stream_writer_flush(struct mig_stream_writer *w);

void mig_stream_writer_stats(const struct mig_stream_writer *w, struct mig_stream_stats *st);

/* Frees @w without flushing. NULL-safe. */
void mig_stream_writer_destroy(struct mig_stream_writer *w);

/* ---- reader ---- */

struct mig_stream_reader;

struct mig_stream_reader_opts {
	uint64_t max_mem_size;    /* largest guest memory accepted; required */
	int timeout_ms;           /* per-wait transport limit; 0: the default, -1: forever */
	uint32_t max_section_len; /* 0: MIG_SECTION_MAX_LEN, which is also the ceiling */
};

/* One CHECKSUMS record. */
struct mig_checksum {
	uint32_t subject; /* device index, or MIG_CHECKSUM_MEMORY */
	uint32_t crc;
	uint64_t bytes;
};

/* A validated section. Pointers are borrowed until the next reader call. */
struct mig_section {
	enum mig_section_type type;
	uint32_t seq;    /* section number: 0 is the MANIFEST */
	uint64_t offset; /* stream offset of its header */
	uint32_t length; /* payload bytes */
	union {
		struct {
			uint64_t start;      /* first page index */
			uint32_t count;      /* pages in the run, flags[] entries */
			const uint8_t *flags; /* enum mig_page_flag per page */
			uint32_t nzero, ndata, nzstd;
		} pages;
		struct {
			uint32_t device;
			const uint8_t *data;
			uint32_t len;
		} device_data;
		struct {
			uint32_t device;
			uint64_t total_bytes;
		} device_end;
		struct {
			uint32_t round;
			uint64_t pages_sent;
			uint64_t dirty_remaining;
		} round_end;
		struct {
			/* Device records were verified by the reader; the memory
			 * record (if any) is for the caller to verify. */
			bool has_memory;
			uint32_t memory_crc;
			uint64_t memory_bytes;
			uint32_t count;
			const struct mig_checksum *records;
		} checksums;
	} u;
};

/*
 * Creates a reader on @t (borrowed) and reads and validates the stream
 * header and the MANIFEST. Returns 0 or a negative errno (one log line):
 * -EBADMSG bad magic, malformed or corrupt; -EPROTONOSUPPORT another format
 * version; -EFBIG memory above opts->max_mem_size; -ENODATA the stream
 * ended early; -ETIMEDOUT; -EMSGSIZE a length over the limit.
 */
int mig_stream_reader_create(struct mig_transport *t, const struct mig_stream_reader_opts *opts,
			     struct mig_stream_reader **out);

/* The validated manifest (owned by @r). */
const struct mig_manifest *mig_stream_reader_manifest(const struct mig_stream_reader *r);

/*
 * Reads the next section into @s. Returns 0, or a negative errno (errors as
 * for create, plus -EPROTO for a section the order rules refuse). END is
 * returned only once nothing else is already waiting behind it; a call after
 * END returns -EPIPE.
 */
int mig_stream_reader_next(struct mig_stream_reader *r, struct mig_section *s);

/* Copies GUEST_PAGES section @s (just returned by @r) into guest memory @mem
 * of @mem_size bytes (must equal the manifest's): zero pages are cleared,
 * data pages copied, zstd pages decompressed, skipped pages left alone.
 * Returns 0 or a negative errno. */
int mig_stream_reader_load_pages(struct mig_stream_reader *r, const struct mig_section *s,
				 void *mem, uint64_t mem_size);

/* Stream bytes consumed so far. */
uint64_t mig_stream_reader_offset(const struct mig_stream_reader *r);

/* NULL-safe. */
void mig_stream_reader_destroy(struct mig_stream_reader *r);

#endif
