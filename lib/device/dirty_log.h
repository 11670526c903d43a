/*
 * Device DMA dirty logging: DMA_LOGGING_START / STOP / REPORT (PROTOCOL.md
 * §7.5).
 *
 * Concepts. While logging is started the device records which pages of a
 * set of IOVA "logging ranges" its DMA has written; REPORT reads and clears
 * that record for a sub-range, at a page size the client picks.
 *
 * The DMA_UNMAP / DMA_MAP rule. As in the kernel, logging ranges are plain
 * IOVA ranges, independent of the DMA mappings (dma_table.h):
 *  - a write is recorded iff its IOVA falls in a logging range, whatever is
 *    mapped there; writes outside every logging range are not recorded;
 *  - logging survives DMA_UNMAP and DMA_MAP of any range, inside or outside
 *    the logging ranges: neither starts, stops, clears nor moves a bit;
 *  - bits recorded before an UNMAP stay until a REPORT takes them, and a
 *    REPORT needs no mapping: the client can still collect the writes made
 *    to memory it has since unmapped (it must, before reusing that memory);
 *  - memory mapped after START is tracked only where a logging range covers
 *    it: a client that maps new memory while logging and wants it tracked
 *    either covered its IOVA in START already, or STOPs and STARTs again
 *    (after a final REPORT) with the new ranges;
 *  - num_ranges == 0 at START means "every range currently mapped": the
 *    device core passes the mapped ranges (dma_table_at()) in that case; this
 *    module only ever sees a list, frozen at START like any other. An empty
 *    list is valid and tracks nothing.
 * Only writes the device performs itself (through a mapped region) are
 * logged; writes the client makes for DMA_WRITE messages are the client's to
 * log (§6.3).
 *
 * Storage is one bitmap per range, one bit per tracking page, in atomic
 * 64-bit words: marking is a fetch_or, reporting an exchange, so no mark is
 * ever lost to a concurrent report and neither takes a lock.
 *
 * Concurrency contract (the device core enforces it with the dma_table lock):
 *  - dirty_log_mark() and dirty_log_report() may run on any threads at once;
 *    callers hold dma_table_read_lock() around them. A device thread marks
 *    AFTER its DMA stores are done and BEFORE it drops the read lock (a
 *    report that sees the bit then also sees the data).
 *  - dirty_log_start() and dirty_log_stop() run under dma_table_write_lock(),
 *    so no mark or report is in flight while the ranges change. They are
 *    not safe against each other or against mark/report otherwise.
 *  - create/destroy: no other call in flight.
 */
#ifndef FERRY_DEVICE_DIRTY_LOG_H
#define FERRY_DEVICE_DIRTY_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <ferry/vfio_user.h>

/* At most this many ranges per START (the kernel's PAGE_SIZE / 16). */
#define DIRTY_LOG_MAX_RANGES 256u
/* Tracking page size limits accepted by START. */
#define DIRTY_LOG_MIN_PAGE_SIZE 4096ull
#define DIRTY_LOG_MAX_PAGE_SIZE (1ull << 30)
/* Most bitmap memory one START may allocate: 1 GiB tracks 32 TiB at 4 KiB
 * pages (the bitmaps are lazily zeroed, so only marked words cost RAM). */
#define DIRTY_LOG_MAX_BITMAP (1ull << 30)

struct dirty_log; /* one per device */

/* Creates a stopped log. Returns 0 and sets *@out, or -EINVAL, -ENOMEM. */
int dirty_log_create(struct dirty_log **out);

/* Stops (frees the bitmaps) and frees the log. NULL-safe. */
void dirty_log_destroy(struct dirty_log *l);

/*
 * Starts tracking writes to @n ranges (copied; the array is borrowed for the
 * call) at @page_size granularity, every page clean.
 * Checks, in this order, nothing allocated before they pass:
 *  - already started -> -EBUSY (the caller decides whether a repeated START
 *    is idempotent: compare and accept, or stop first);
 *  - @page_size a power of two in [DIRTY_LOG_MIN_PAGE_SIZE,
 *    DIRTY_LOG_MAX_PAGE_SIZE], else -EINVAL;
 *  - @n <= DIRTY_LOG_MAX_RANGES, else -E2BIG; @ranges non-NULL when n > 0;
 *  - each range non-empty and its iova and length multiples of page_size,
 *    else -EINVAL; iova + length must not reach 2^64, else -EOVERFLOW;
 *  - no two ranges overlap (adjacent is fine), else -EINVAL;
 *  - all bitmaps together at most DIRTY_LOG_MAX_BITMAP bytes, else -E2BIG.
 * Then allocates one zeroed bitmap per range (-ENOMEM; large bitmaps come
 * from lazily-zeroed anonymous memory). Every failure logs one line.
 * Caller holds the dma_table write lock.
 */
int dirty_log_start(struct dirty_log *l, uint64_t page_size,
		    const struct vfio_user_dma_logging_range *ranges, uint32_t n);

/* Stops logging and frees the bitmaps; no-op if not started. Caller holds
 * the dma_table write lock. */
void dirty_log_stop(struct dirty_log *l);

/* Whether START succeeded and STOP has not run since. Meaningful under the
 * dma_table lock (either side). */
bool dirty_log_is_started(const struct dirty_log *l);

/* The tracking page size, 0 when stopped. */
uint64_t dirty_log_page_size(const struct dirty_log *l);

/*
 * Hot path. Records that the device wrote [iova, iova + len): sets the bit
 * of every tracking page of every logging range the write touches (a write
 * straddling a page boundary or two ranges marks all of them; the parts
 * outside every logging range are ignored). Lock-free: one relaxed atomic
 * load when logging is off, else one atomic fetch_or per bitmap word
 * touched (release order, pairing with the report's acquire). A range that
 * would wrap is clamped at 2^64 - 1. Any thread; caller holds the dma_table
 * read lock and calls it after the write's stores.
 */
void dirty_log_mark(struct dirty_log *l, uint64_t iova, uint64_t len);

/*
 * Reads and clears the record of [iova, iova + length) into @out, a bitmap of
 * u64 words at the client's @page_size: bit p (word p / 64, bit p % 64) is
 * set iff a dirty tracking page overlaps [iova + p * page_size, +page_size)
 * clipped to the range; bits past the last page are zero. @out must hold
 * dirty_log_bitmap_size(length, page_size) bytes; it is fully written.
 *
 * @page_size is any power of two >= 4096, independent of the tracking page
 * size: a finer request replicates a tracking bit into several output bits,
 * a coarser one ORs several tracking pages into one bit. @iova and @length
 * need no alignment, but tracking pages only partly inside the requested
 * range are reported and NOT cleared (clearing them would lose writes to the
 * part outside); clients reporting page-aligned ranges never see this.
 *
 * The requested range must be covered by logging ranges without a gap: it
 * may span adjacent ones (a coarse output bit straddling two of them ORs
 * both), but an IOVA no range covers is an error, never a silent zero (the
 * device may have written there untracked). Errors, each logged, @out
 * untouched: not started, length 0, iova + length wraps, bad page_size,
 * part of the range not in any logging range -> -EINVAL.
 *
 * Each bitmap word is taken with an atomic exchange (a word that reads zero
 * is skipped without a write), so a concurrent mark lands either in this
 * report or in the next one, never nowhere. When the page sizes match and
 * iova is a tracking page boundary inside one logging range this is one
 * load per output word plus one exchange per non-zero word: about a memcpy
 * of the bitmap. Any thread; caller holds the dma_table read
 * lock.
 */
int dirty_log_report(struct dirty_log *l, uint64_t iova, uint64_t length, uint64_t page_size,
		     uint64_t *out);

/*
 * dirty_log_report() for the dirty_shm extension, packed: @summary
 * (ceil(words / 64) words, all written) has bit w set iff output word w is
 * non-zero, and the non-zero words are written to @out[0], @out[1], ... in
 * order of w. So a report of a mostly clean range writes about 1/64 of the
 * bitmap, sequentially. @out must still hold the whole bitmap (a report at
 * another page size or alignment builds it there before packing). Same
 * checks, errors and concurrency as dirty_log_report(); @summary NULL ->
 * -EINVAL. Returns the number of non-zero words.
 */
int64_t dirty_log_report_sparse(struct dirty_log *l, uint64_t iova, uint64_t length,
				uint64_t page_size, uint64_t *summary, uint64_t *out);

/* Bytes of a report bitmap: ceil(ceil(length / page_size) / 64) * 8.
 * 0 when length or page_size is 0 (or on overflow). */
uint64_t dirty_log_bitmap_size(uint64_t length, uint64_t page_size);

#endif /* FERRY_DEVICE_DIRTY_LOG_H */
