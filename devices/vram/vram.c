/* The vram model object (vram.h): lifecycle, reset, state, checksum. */
#include "vram.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "load.h"
#include "save.h"
#include "util/crc32.h"

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
	if (v->is_restored && ferry_mig_state_is_running(state)) {
		v->regs.generation++;
		v->is_restored = false;
	} else if (state == FERRY_MIG_RESUMING) {
		v->is_restored = false; /* a new stream replaces the restored one */
	}
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
	v->is_restored = false; /* GENERATION is 0 after a reset */
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

void vram_hole_cursor_whole(const struct vram *v, struct vram_hole_cursor *c, unsigned char *map)
{
	struct stat st;
	uint64_t resident = 0;

	memset(c, 0, sizeof(*c));
	if (mincore(v->mem, v->size, map) < 0)
		return; /* a plain cursor: windows and lseek */
	for (uint64_t p = 0; p < v->npages; p++)
		resident += map[p] & 1;
	c->map = map;
	/* st_blocks counts 512-byte units of every allocated page, swapped
	 * out or not (shmem's "alloced"); resident pages are a subset of
	 * them. Equal counts: no page is out. */
	c->map_exact = fstat(v->memfd, &st) == 0 &&
		       (uint64_t)st.st_blocks == resident * (VRAM_PAGE_SIZE / 512);
}

bool vram_page_is_hole(const struct vram *v, struct vram_hole_cursor *c, uint64_t page)
{
	if (c->map) {
		if (c->map[page] & 1)
			return false; /* resident: data */
		if (c->map_exact)
			return true;
	}
	if (page >= c->lo && page < c->hi)
		return c->hole;
	if (c->map)
		return extent_is_hole(v, c, page);
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
	/* Holes are summed as zeroes from here: reading them through the
	 * mapping would make the kernel allocate the whole VRAM. */
	static const uint8_t zero[VRAM_PAGE_SIZE];
	struct vram_hole_cursor holes = { 0 };
	uint64_t run = 0; /* data pages [p - run, p) not summed yet */
	uint32_t crc = 0;

	for (uint64_t p = 0; p < v->npages; p++) {
		if (!vram_page_is_hole(v, &holes, p)) {
			run++;
			continue;
		}
		crc = ferry_crc32(crc, v->mem + (p - run) * VRAM_PAGE_SIZE, run * VRAM_PAGE_SIZE);
		crc = ferry_crc32(crc, zero, VRAM_PAGE_SIZE);
		run = 0;
	}
	return ferry_crc32(crc, v->mem + (v->npages - run) * VRAM_PAGE_SIZE, run * VRAM_PAGE_SIZE);
}
