/*
 * ferry-dev-dma: BAR2 scratch memory; see scratch.h.
 */
#include "scratch.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ferry/log.h>

int dma_scratch_create(struct dma_scratch *s, size_t size, const char *name)
{
	int rc;

	s->fd = memfd_create("ferry-dma-scratch", MFD_CLOEXEC);
	if (s->fd < 0) {
		rc = -errno;
		ferry_log(FERRY_LOG_ERR, "%s: memfd_create for the scratch BAR: %s", name,
			  strerror(-rc));
		return rc;
	}
	if (ftruncate(s->fd, (off_t)size) < 0) {
		rc = -errno;
		ferry_log(FERRY_LOG_ERR, "%s: sizing the scratch BAR to %zu bytes: %s", name, size,
			  strerror(-rc));
		goto out_fd;
	}
	s->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (s->mem == MAP_FAILED) {
		rc = -errno;
		s->mem = NULL;
		ferry_log(FERRY_LOG_ERR, "%s: mapping the scratch BAR: %s", name, strerror(-rc));
		goto out_fd;
	}
	s->size = size;
	return 0;

out_fd:
	close(s->fd);
	s->fd = -1;
	return rc;
}

void dma_scratch_destroy(struct dma_scratch *s)
{
	if (s->mem)
		munmap(s->mem, s->size);
	if (s->fd >= 0)
		close(s->fd);
	s->mem = NULL;
	s->fd = -1;
	s->size = 0;
}

int dma_scratch_access(struct dma_scratch *s, uint64_t offset, void *buf, uint32_t count,
		       bool is_write)
{
	if (offset > s->size || count > s->size - offset) {
		ferry_log(FERRY_LOG_WARN, "scratch BAR access of %" PRIu32 " bytes at %#" PRIx64
			  " is outside its %zu bytes", count, offset, s->size);
		return -EINVAL;
	}
	if (is_write)
		memcpy(s->mem + offset, buf, count);
	else
		memcpy(buf, s->mem + offset, count);
	return 0;
}
