/*
 * The dirty_shm extension, device half (docs/protocol-extensions.md):
 * DMA_LOGGING_REPORT written into memory the client shares with us, so a
 * large, mostly clean bitmap costs neither a socket transfer nor a full
 * write: dirty_log_report_sparse() writes a summary word per 64 bitmap
 * words and only the non-zero bitmap words.
 *
 * FERRY_FEATURE_DIRTY_SHM (offered only when the extension was negotiated):
 *   SET + one fd: registers the area (replacing an earlier one); size 0 and
 *       no fd unregisters. The fd must be a memfd sealed against shrinking
 *       (F_SEAL_SHRINK), at least `size` bytes long: a client that could
 *       shrink it under our mapping would make our writes fault (SIGBUS).
 *   GET: the REPORT request struct; the result goes to the area, the reply
 *       is the echo plus the count of non-zero words.
 * The area lives until replaced, unregistered or the client disconnects.
 * Everything here runs on the message thread, so the area needs no lock;
 * the report itself runs under the DMA table's read lock (dirty_log.h).
 */
#include "device/device_priv.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest area we map: 1 GiB of bitmap (32 TiB at 4 KiB) and its summary. */
#define SHM_MAX_SIZE ((1ull << 30) + (1ull << 24))

void logging_shm_release(struct ferry_device *dev)
{
	if (dev->log_shm)
		munmap(dev->log_shm, (size_t)dev->log_shm_size);
	dev->log_shm = NULL;
	dev->log_shm_size = 0;
}

static bool is_present(const struct ferry_device *dev)
{
	return dev->conn && (dev->conn->caps.ferry_ext & WIRE_EXT_DIRTY_SHM);
}

/* Maps @fd (not consumed) after checking it can be trusted for @size bytes. */
static int map_area(struct ferry_device *dev, int fd, uint64_t size, void **out)
{
	struct stat st;
	int seals = fcntl(fd, F_GET_SEALS);
	void *p;

	if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
		log_err("%s: dirty_shm: the area is not a memfd sealed against shrinking (seals "
			"0x%x)", dev->name, seals < 0 ? 0 : seals);
		return -EINVAL;
	}
	if (fstat(fd, &st) < 0 || st.st_size < 0 || (uint64_t)st.st_size < size) {
		log_err("%s: dirty_shm: the area holds %lld bytes, %" PRIu64 " announced", dev->name,
			(long long)st.st_size, size);
		return -EINVAL;
	}
	p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int r = -errno;
		log_err("%s: dirty_shm: mmap of %" PRIu64 " bytes: %s", dev->name, size,
			strerror(-r));
		return r;
	}
	*out = p;
	return 0;
}

static int shm_set(struct ferry_device *dev, uint8_t *data, uint32_t len, struct wire_msg *m)
{
	struct vfio_user_dirty_shm_set set;
	void *p = NULL;
	int fd, r;

	(void)len; /* >= min_set_len; a longer request may append fields later */
	memcpy(&set, data, sizeof(set));
	if (set.flags || (set.size % 8) || set.size > SHM_MAX_SIZE || !set.size != !m->nfds) {
		log_err("%s: dirty_shm SET size %" PRIu64 " flags 0x%" PRIx64 " with %u fds: want "
			"flags 0 and a multiple of 8 up to %llu with one fd, or size 0 without",
			dev->name, set.size, set.flags, m->nfds, SHM_MAX_SIZE);
		return -EINVAL;
	}
	if (set.size) {
		fd = wire_msg_take_fd(m, 0);
		r = map_area(dev, fd, set.size, &p);
		close(fd);
		if (r < 0)
			return r;
	}
	logging_shm_release(dev);
	dev->log_shm = p;
	dev->log_shm_size = set.size;
	log_debug("%s: dirty_shm area of %" PRIu64 " bytes %s", dev->name, set.size,
		  set.size ? "registered" : "unregistered");
	return 0;
}

static int shm_get(struct ferry_device *dev, const uint8_t *in, uint32_t in_len,
		   uint32_t max_out, struct feature_reply *out)
{
	struct vfio_user_dirty_shm_report *rep;
	struct vfio_user_dma_logging_report req;
	const char *why = NULL;
	uint64_t words, swords;
	int64_t n;
	int err = -EINVAL;

	(void)in_len;
	memcpy(&req, in, sizeof(req));
	words = dirty_log_bitmap_size(req.length, req.page_size) / 8; /* 0 on overflow */
	swords = (words + 63) / 64;
	if (!dev->log_shm)
		why = "no area registered";
	else if (!words || req.length > UINT64_MAX - req.iova)
		why = "empty or wrapping range, or page size 0";
	else if (max_out < sizeof(*rep))
		why = "argsz cannot hold the reply";
	else if (words + swords > dev->log_shm_size / 8) {
		why = "bitmap and summary exceed the area";
		err = -E2BIG;
	}
	if (why) {
		log_err("%s: dirty_shm report [0x%" PRIx64 ", +0x%" PRIx64 ") page size 0x%" PRIx64
			": %s", dev->name, req.iova, req.length, req.page_size, why);
		return err;
	}
	if (!(rep = malloc(sizeof(*rep)))) {
		log_err("%s: dirty_shm report: out of memory", dev->name);
		return -ENOMEM;
	}
	dma_table_read_lock(dev->dma);
	n = dirty_log_report_sparse(dev->log, req.iova, req.length, req.page_size,
				    (uint64_t *)dev->log_shm, (uint64_t *)dev->log_shm + swords);
	dma_table_read_unlock(dev->dma);
	if (n < 0) {
		free(rep);
		return (int)n;
	}
	*rep = (struct vfio_user_dirty_shm_report){
		.iova = req.iova, .length = req.length, .page_size = req.page_size,
		.nonzero_words = (uint64_t)n,
	};
	out->data = rep;
	out->len = sizeof(*rep);
	return 0;
}

const struct feature_ops feature_dirty_shm = {
	.index = FERRY_FEATURE_DIRTY_SHM,
	.name = "DIRTY_SHM",
	.ops = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET,
	.min_get_len = sizeof(struct vfio_user_dma_logging_report),
	.min_set_len = sizeof(struct vfio_user_dirty_shm_set),
	.is_present = is_present,
	.get = shm_get,
	.max_fds = 1,
	.set_fds = shm_set,
};
