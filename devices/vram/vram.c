/* The vram model object (vram.h): lifecycle, reset, state, checksum. */
#include "vram.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine.h"
#include "load.h"
#include "save.h"

int vram_create(const char *name, uint64_t size, struct vram **out)
{
	struct vram *v;
	int rc;

	if (!name || !out)
		return -EINVAL;
	if (size < VRAM_MIN_SIZE || size > VRAM_MAX_SIZE || (size & (size - 1))) {
		ferry_log(FERRY_LOG_ERR, "%s: VRAM size %llu is not a power of two in %llu..%llu",
			  name, (unsigned long long)size, (unsigned long long)VRAM_MIN_SIZE,
			  (unsigned long long)VRAM_MAX_SIZE);
		return -EINVAL;
	}
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	snprintf(v->name, sizeof(v->name), "%s", name);
	v->size = size;
	v->npages = size / VRAM_PAGE_SIZE;
	v->memfd = -1;
	v->mem = MAP_FAILED;
	v->state = FERRY_MIG_RUNNING;

	v->memfd = memfd_create("ferry-vram", MFD_CLOEXEC);
	if (v->memfd < 0) {
		rc = -errno;
		vram_err(v, "memfd_create: %s", strerror(errno));
		goto out_destroy;
	}
	if (ftruncate(v->memfd, (off_t)size) < 0) {
		rc = -errno;
		vram_err(v, "ftruncate VRAM to %llu: %s", (unsigned long long)size, strerror(errno));
		goto out_destroy;
	}
	v->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, v->memfd, 0);
	if (v->mem == MAP_FAILED) {
		rc = -errno;
		vram_err(v, "mmap VRAM: %s", strerror(errno));
		goto out_destroy;
	}
	rc = dirty_init(&v->dirty, v->npages);
	if (rc == 0)
		rc = vram_save_create(v);
	if (rc == 0)
		rc = vram_load_create(v);
	if (rc < 0) {
		vram_err(v, "allocating per-page state for %llu pages: %s",
			 (unsigned long long)v->npages, strerror(-rc));
		goto out_destroy;
	}
	vram_regs_reset(v);
	rc = vram_engine_create(v, &v->engine);
	if (rc < 0)
		goto out_destroy;
	vram_set_state(v, FERRY_MIG_RUNNING); /* the engine may run (once enabled) */
	*out = v;
	return 0;

out_destroy:
	vram_destroy(v);
	return rc;
}

void vram_destroy(struct vram *v)
{
	if (!v)
		return;
	vram_engine_destroy(v->engine); /* first: it writes the VRAM */
	vram_load_destroy(v);
	vram_save_destroy(v);
	dirty_fini(&v->dirty);
	if (v->mem != MAP_FAILED)
		munmap(v->mem, v->size);
	if (v->memfd >= 0)
		close(v->memfd);
	free(v);
}

void vram_set_state(struct vram *v, enum ferry_mig_state state)
{
	v->state = state;
	vram_engine_allow(v->engine, ferry_mig_state_is_running(state));
}

int vram_reset(struct vram *v)
{
	/* Engine off first, then registers: nothing writes while they change. */
	vram_engine_allow(v->engine, false);
	vram_save_end(v);
	vram_load_end(v);
	vram_regs_reset(v);
	vram_set_state(v, FERRY_MIG_RUNNING);
	vram_info(v, "reset");
	return 0;
}

bool vram_page_is_hole_now(const struct vram *v, uint64_t page)
{
	off_t off = (off_t)(page * VRAM_PAGE_SIZE);
	off_t data = lseek(v->memfd, off, SEEK_DATA);

	if (data < 0)
		return errno == ENXIO; /* ENXIO: no data from here to the end */
	return data >= off + (off_t)VRAM_PAGE_SIZE;
}

/* The lseek extent around @page (not resident: a hole or swapped out). */
static bool extent_is_hole(const struct vram *v, struct vram_hole_cursor *c, uint64_t page)
{
	off_t off = (off_t)(page * VRAM_PAGE_SIZE), data, hole;

	c->lo = page;
	c->hi = page + 1;
	c->hole = false;
	data = lseek(v->memfd, off, SEEK_DATA);
	if (data < 0) {
		if (errno == ENXIO) {
			c->hole = true;
			c->hi = v->npages;
		}
		return c->hole;
	}
	if (data >= off + (off_t)VRAM_PAGE_SIZE) {
		c->hole = true;
		c->hi = (uint64_t)data / VRAM_PAGE_SIZE;
		return true;
	}
	hole = lseek(v->memfd, off, SEEK_HOLE);
	if (hole > off) {
		uint64_t end = ((uint64_t)hole + VRAM_PAGE_SIZE - 1) / VRAM_PAGE_SIZE;

		c->hi = end < v->npages ? end : v->npages;
	}
	return false;
}

bool vram_page_is_hole(const struct vram *v, struct vram_hole_cursor *c, uint64_t page)
{
	if (page >= c->lo && page < c->hi)
		return c->hole;
	if (!c->has_window || page < c->win_base || page >= c->win_base + c->win_len) {
		uint64_t n = v->npages - page;

		c->win_base = page;
		c->win_len = n < VRAM_MINCORE_WINDOW ? n : VRAM_MINCORE_WINDOW;
		c->has_window = mincore(v->mem + page * VRAM_PAGE_SIZE,
					c->win_len * VRAM_PAGE_SIZE, c->win) == 0;
	}
	if (c->has_window && (c->win[page - c->win_base] & 1))
		return false; /* resident: data */
	return extent_is_hole(v, c, page);
}

uint32_t vram_checksum(const struct vram *v)
{
	return vram_crc32(0, v->mem, v->size);
}
