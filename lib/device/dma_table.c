/*
 * DMA table: a sorted array of non-overlapping regions behind a rwlock.
 * See dma_table.h for the concepts and the locking contract.
 */
#include "device/dma_table.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/checked.h"
#include "util/log.h"

#define DMA_PROT_MASK (VFIO_USER_F_DMA_REGION_READ | VFIO_USER_F_DMA_REGION_WRITE)

/* First array allocation; it then doubles, capped at max_maps. */
#define DMA_INITIAL_CAPACITY 16u

struct dma_table {
	pthread_rwlock_t lock;
	bool has_lock;              /* lock initialised: destroy() may run half-built */
	struct dma_region *regions; /* sorted by iova, non-overlapping */
	unsigned count;
	unsigned capacity;
	unsigned max_maps;
	/*
	 * Index of the region the last lookup returned. A hint only: readers
	 * update it concurrently (relaxed, the one field they write) and every
	 * use is validated against count and the region's bounds, so a stale
	 * value after map/unmap just costs the binary search.
	 */
	atomic_uint last_hit;
};

static bool region_contains(const struct dma_region *r, uint64_t iova, uint64_t len)
{
	return iova >= r->iova && range_ok(iova - r->iova, len, r->size);
}

/* Index of the first region whose iova is > @iova (count if none). */
static unsigned upper_bound(const struct dma_table *t, uint64_t iova)
{
	unsigned lo = 0, hi = t->count;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (t->regions[mid].iova <= iova)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

/* Drops the mapping and the fd of a region already out of the table. */
static void region_release(struct dma_region *r)
{
	if (r->vaddr) {
		if (munmap(r->vaddr, r->size))
			log_warn("dma [0x%" PRIx64 ", +0x%" PRIx64 "): munmap: %s",
				 r->iova, r->size, strerror(errno));
		r->vaddr = NULL;
	}
	close_fd(&r->fd);
}

int dma_table_create(unsigned max_maps, struct dma_table **out)
{
	pthread_rwlockattr_t attr;
	struct dma_table *t;
	int ret;

	if (!out || !max_maps) {
		log_err("dma table: invalid arguments (max_maps %u)", max_maps);
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		log_err("dma table: out of memory");
		return -ENOMEM;
	}
	t->max_maps = max_maps;

	ret = -pthread_rwlockattr_init(&attr);
	if (ret)
		goto out_table;
	/* Writer preference: DMA_UNMAP must not wait behind a stream of DMAs. */
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	ret = -pthread_rwlock_init(&t->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	if (ret)
		goto out_table;
	t->has_lock = true;
	*out = t;
	return 0;

out_table:
	log_err("dma table: rwlock init: %s", strerror(-ret));
	dma_table_destroy(t);
	return ret;
}

void dma_table_destroy(struct dma_table *t)
{
	if (!t)
		return;
	if (t->has_lock) {
		dma_table_unmap_all(t);
		pthread_rwlock_destroy(&t->lock);
	}
	free(t->regions);
	free(t);
}

static int check_map_args(uint64_t iova, uint64_t size, uint32_t prot, int fd, uint64_t off)
{
	const char *why = NULL;

	if (!size)
		why = "empty";
	else if (size > UINT64_MAX - iova)
		why = "iova + size wraps";
	else if (size > UINT64_MAX - off)
		why = "offset + size wraps";
	else if ((iova | size | off) & (DMA_TABLE_PAGE_SIZE - 1))
		why = "not page aligned";
	else if (prot & ~DMA_PROT_MASK)
		why = "unknown prot bits";
	else if (fd >= 0 && off + size > (uint64_t)INT64_MAX)
		why = "offset + size beyond off_t";
	if (!why)
		return 0;
	log_err("dma map [0x%" PRIx64 ", +0x%" PRIx64 ") prot 0x%x fd %d offset 0x%" PRIx64 ": %s",
		iova, size, prot, fd, off, why);
	return -EINVAL;
}

/* Same file: both message mode, or both fds naming one inode. */
static bool same_file(int a, int b)
{
	struct stat sa, sb;

	if (a < 0 || b < 0)
		return a < 0 && b < 0;
	if (fstat(a, &sa) || fstat(b, &sb))
		return false;
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static bool is_identical(const struct dma_region *r, uint64_t iova, uint64_t size,
			 uint32_t prot, int fd, uint64_t off)
{
	return r->iova == iova && r->size == size && r->prot == prot &&
	       r->fd_offset == off && same_file(r->fd, fd);
}

static int grow(struct dma_table *t)
{
	unsigned cap;
	struct dma_region *n;

	if (t->count < t->capacity)
		return 0;
	cap = t->capacity ? t->capacity * 2 : DMA_INITIAL_CAPACITY;
	if (cap > t->max_maps || cap < t->capacity)
		cap = t->max_maps;
	n = realloc(t->regions, (size_t)cap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	t->regions = n;
	t->capacity = cap;
	return 0;
}

static int map_prot(uint32_t prot)
{
	int p = PROT_NONE;

	if (prot & VFIO_USER_F_DMA_REGION_READ)
		p |= PROT_READ;
	if (prot & VFIO_USER_F_DMA_REGION_WRITE)
		p |= PROT_WRITE;
	return p;
}

/*
 * Everything, mmap included, runs under the write lock: the error order is
 * then simply arguments, overlap, room, mmap. An mmap of a shared file
 * without MAP_POPULATE takes microseconds, so readers barely notice; the
 * slow part of a teardown (munmap) runs after the lock is dropped.
 */
int dma_table_map(struct dma_table *t, uint64_t iova, uint64_t size, uint32_t prot,
		  int fd, uint64_t fd_offset)
{
	struct dma_region new = {
		.iova = iova, .size = size, .prot = prot, .fd = fd, .fd_offset = fd_offset,
	};
	const struct dma_region *clash = NULL;
	unsigned pos;
	int ret;

	ret = check_map_args(iova, size, prot, fd, fd_offset);
	if (ret)
		goto out_fd;

	pthread_rwlock_wrlock(&t->lock);
	pos = upper_bound(t, iova);
	/* Sorted and disjoint: only the neighbours around pos can overlap. */
	if (pos > 0 && ranges_overlap(t->regions[pos - 1].iova, t->regions[pos - 1].size, iova, size))
		clash = &t->regions[pos - 1];
	else if (pos < t->count && ranges_overlap(t->regions[pos].iova, t->regions[pos].size, iova, size))
		clash = &t->regions[pos];

	if (clash) {
		if (is_identical(clash, iova, size, prot, fd, fd_offset)) {
			log_debug("dma map [0x%" PRIx64 ", +0x%" PRIx64 "): identical re-map, no-op",
				  iova, size);
			ret = 0;
		} else {
			log_err("dma map [0x%" PRIx64 ", +0x%" PRIx64 ") prot 0x%x: overlaps "
				"[0x%" PRIx64 ", +0x%" PRIx64 ") prot 0x%x",
				iova, size, prot, clash->iova, clash->size, clash->prot);
			ret = -EEXIST;
		}
		goto out_unlock;
	}
	if (t->count >= t->max_maps) {
		log_err("dma map [0x%" PRIx64 ", +0x%" PRIx64 "): table full (%u regions)",
			iova, size, t->max_maps);
		ret = -ENOSPC;
		goto out_unlock;
	}
	ret = grow(t);
	if (ret) {
		log_err("dma map [0x%" PRIx64 ", +0x%" PRIx64 "): out of memory for %u regions",
			iova, size, t->count + 1);
		goto out_unlock;
	}
	if (fd >= 0) {
		void *p = mmap(NULL, size, map_prot(prot), MAP_SHARED, fd, (off_t)fd_offset);
		if (p == MAP_FAILED) {
			ret = -errno;
			log_err("dma map [0x%" PRIx64 ", +0x%" PRIx64 ") fd %d offset 0x%" PRIx64
				": mmap: %s", iova, size, fd, fd_offset, strerror(-ret));
			goto out_unlock;
		}
		new.vaddr = p;
	}
	memmove(&t->regions[pos + 1], &t->regions[pos], (t->count - pos) * sizeof(new));
	t->regions[pos] = new;
	t->count++;
	pthread_rwlock_unlock(&t->lock);
	return 0;

out_unlock:
	pthread_rwlock_unlock(&t->lock);
out_fd:
	close_fd(&fd);
	return ret;
}

int dma_table_unmap(struct dma_table *t, uint64_t iova, uint64_t size)
{
	struct dma_region victim;
	bool found = false;
	unsigned pos;

	pthread_rwlock_wrlock(&t->lock);
	pos = upper_bound(t, iova);
	if (pos > 0 && t->regions[pos - 1].iova == iova && t->regions[pos - 1].size == size) {
		pos--;
		victim = t->regions[pos];
		memmove(&t->regions[pos], &t->regions[pos + 1], (t->count - pos - 1) * sizeof(victim));
		t->count--;
		found = true;
	}
	pthread_rwlock_unlock(&t->lock);

	if (!found) {
		log_err("dma unmap [0x%" PRIx64 ", +0x%" PRIx64 "): no region matches exactly",
			iova, size);
		return -ENOENT;
	}
	/* No reader can reach it any more: the write lock drained them. */
	region_release(&victim);
	return 0;
}

void dma_table_unmap_all(struct dma_table *t)
{
	struct dma_region *regions;
	unsigned count;

	pthread_rwlock_wrlock(&t->lock);
	regions = t->regions;
	count = t->count;
	t->regions = NULL;
	t->count = 0;
	t->capacity = 0;
	pthread_rwlock_unlock(&t->lock);

	for (unsigned i = 0; i < count; i++)
		region_release(&regions[i]);
	free(regions);
}

void dma_table_read_lock(struct dma_table *t)
{
	pthread_rwlock_rdlock(&t->lock);
}

void dma_table_read_unlock(struct dma_table *t)
{
	pthread_rwlock_unlock(&t->lock);
}

void dma_table_write_lock(struct dma_table *t)
{
	pthread_rwlock_wrlock(&t->lock);
}

void dma_table_write_unlock(struct dma_table *t)
{
	pthread_rwlock_unlock(&t->lock);
}

const struct dma_region *dma_table_lookup(const struct dma_table *t, uint64_t iova, uint64_t len)
{
	/* The table is never a const object: last_hit is meant to be written. */
	atomic_uint *hint = &((struct dma_table *)t)->last_hit;
	unsigned h, pos;

	if (!len)
		return NULL;
	h = atomic_load_explicit(hint, memory_order_relaxed);
	if (h < t->count && region_contains(&t->regions[h], iova, len))
		return &t->regions[h];

	pos = upper_bound(t, iova);
	if (!pos || !region_contains(&t->regions[pos - 1], iova, len))
		return NULL;
	atomic_store_explicit(hint, pos - 1, memory_order_relaxed);
	return &t->regions[pos - 1];
}

unsigned dma_table_count(const struct dma_table *t)
{
	return t->count;
}

const struct dma_region *dma_table_at(const struct dma_table *t, unsigned i)
{
	return i < t->count ? &t->regions[i] : NULL;
}
