/*
 * The client's memory as a device server sees it (PROTOCOL.md §6.1-6.2).
 *
 * Concepts. The client names its memory with DMA_MAP messages: an IOVA
 * range, the device's access rights (READ/WRITE) and, usually, an fd plus a
 * file offset. With an fd the table mmaps the range (MAP_SHARED, protection
 * from the rights), so a device DMA is a memcpy through dma_region.vaddr.
 * Without an fd the range exists but can only be reached with DMA_READ /
 * DMA_WRITE messages; the table records it with vaddr NULL ("message mode")
 * and the device core does the messaging.
 *
 * Regions never overlap and are kept in an array sorted by IOVA, so a lookup
 * is a binary search (plus a check of the region the previous lookup hit):
 * O(log n), fast with tens of thousands of regions. Insertion and removal
 * move the tail of the array: O(n), fine for the rate at which clients map.
 *
 * Locking. One pthread rwlock inside the table. Readers (device worker
 * threads doing DMA, and anything iterating) bracket every use of a looked-up
 * region with dma_table_read_lock()/dma_table_read_unlock(); map and unmap
 * take the write lock, so dma_table_unmap() returns only after every access
 * that could have used the range has finished, and its mapping is gone.
 * The lock prefers writers (a stream of readers cannot starve DMA_UNMAP), so
 * the read lock is NOT recursive: a thread holding it must not take it again.
 *
 * Dirty logging (dirty_log.h) relies on this lock: a device thread marks its
 * DMA write with dirty_log_mark() before it drops the read lock, reports run
 * under the read lock, and the device core runs dirty_log_start()/_stop()
 * between dma_table_write_lock() and dma_table_write_unlock(), so no mark or
 * report is ever in flight while the log's ranges change.
 *
 * Ranges are half-open [iova, iova + size) and must not wrap: iova + size
 * must be at most 2^64 - 1, so the top page of the 64-bit space cannot be
 * mapped (simple on purpose: every end fits in a uint64_t).
 */
#ifndef FERRY_DEVICE_DMA_TABLE_H
#define FERRY_DEVICE_DMA_TABLE_H

#include <stdint.h>
#include <ferry/vfio_user.h>

/* Granularity of every iova, size and fd offset. */
#define DMA_TABLE_PAGE_SIZE 4096u

struct dma_region {
	uint64_t iova;
	uint64_t size;
	uint32_t prot;      /* VFIO_USER_F_DMA_REGION_READ | _WRITE */
	int fd;             /* owned by the table; -1 in message mode */
	uint64_t fd_offset; /* offset of iova in fd's file */
	void *vaddr;        /* mapping of [iova, iova + size); NULL: message mode */
};

struct dma_table;

/*
 * Creates an empty table holding at most @max_maps regions (> 0). The region
 * array grows on demand, so a large limit costs nothing until it is used.
 * Returns 0 and sets *@out, or -EINVAL (max_maps 0, out NULL), -ENOMEM.
 */
int dma_table_create(unsigned max_maps, struct dma_table **out);

/* Unmaps every region, closes their fds and frees the table. NULL-safe.
 * No other thread may be using the table. */
void dma_table_destroy(struct dma_table *t);

/*
 * Adds the region [iova, iova + size) with device rights @prot.
 *
 * @fd is CONSUMED, on success and on failure: on success it is kept in the
 * region (closed by unmap/destroy); otherwise, including the identical
 * re-map no-op below, it is closed before return. Pass -1 for message mode
 * (vaddr NULL); @fd_offset is then recorded but unused.
 *
 * Checks: size > 0; iova + size and fd_offset + size do not wrap; iova, size
 * and fd_offset are multiples of DMA_TABLE_PAGE_SIZE; prot has no bits other
 * than READ|WRITE; with an fd, fd_offset + size fits in off_t. Any of these
 * -> -EINVAL.
 * Overlap with an existing region -> -EEXIST, except an identical re-map
 * (same iova, size, prot, fd_offset, and the same file by fstat st_dev and
 * st_ino, or both message mode), which succeeds and changes nothing.
 * Table full -> -ENOSPC. mmap failure -> its -errno. Allocation -> -ENOMEM.
 * Every failure logs one line with the values.
 *
 * Takes the write lock: waits for readers. Call without holding the read lock.
 */
int dma_table_map(struct dma_table *t, uint64_t iova, uint64_t size, uint32_t prot,
		  int fd, uint64_t fd_offset);

/*
 * Removes the region that is exactly [iova, iova + size) (no partial unmap,
 * no range covering several regions): -ENOENT otherwise, logged. Returns
 * once no reader can still be using it; its mapping and fd are released.
 * Call without holding the read lock.
 */
int dma_table_unmap(struct dma_table *t, uint64_t iova, uint64_t size);

/* Removes every region (DMA_UNMAP with the ALL flag). Same locking as unmap. */
void dma_table_unmap_all(struct dma_table *t);

/* Bracket every use of a region returned by dma_table_lookup() or
 * dma_table_at(). Not recursive (see the Locking paragraph). */
void dma_table_read_lock(struct dma_table *t);
void dma_table_read_unlock(struct dma_table *t);

/*
 * The region fully containing [iova, iova + len), or NULL (len 0, a range
 * that is unmapped, straddles two regions or wraps). Caller holds the read
 * lock; the pointer is valid until it releases it. Does not log: a miss is
 * the caller's error to report. Safe to call from many threads at once.
 */
const struct dma_region *dma_table_lookup(const struct dma_table *t, uint64_t iova, uint64_t len);

/* Number of regions. Caller holds the read lock (or is the only thread that
 * maps and unmaps). */
unsigned dma_table_count(const struct dma_table *t);

/* Excludes every reader and writer, for work that must not overlap any DMA:
 * dirty_log_start()/dirty_log_stop(). Do not call map/unmap/unmap_all (they
 * take it themselves) or the read lock while holding it. */
void dma_table_write_lock(struct dma_table *t);
void dma_table_write_unlock(struct dma_table *t);

/* Region @i in IOVA order (0 <= i < count), or NULL past the end; for
 * "log every mapped range" at DMA_LOGGING_START. Caller holds the read lock. */
const struct dma_region *dma_table_at(const struct dma_table *t, unsigned i);

#endif /* FERRY_DEVICE_DMA_TABLE_H */
