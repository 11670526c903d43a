/* The device side's DMA table: validation, overlap rules, lookups, mmaps, locking. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "device/dma_table.h"
#include "util/log.h"

#define R VFIO_USER_F_DMA_REGION_READ
#define W VFIO_USER_F_DMA_REGION_WRITE
#define RW (R | W)
#define PG 0x1000ull

/* Log capture: every failure must log exactly one line. */
static int log_lines;
static char log_last[512];

static void capture(enum ferry_log_level lvl, const char *line, void *opaque)
{
	(void)opaque;
	if (lvl <= FERRY_LOG_WARN) {
		log_lines++;
		snprintf(log_last, sizeof(log_last), "%s", line);
	}
}

/* The read lock, tracked: a failed assertion longjmps out of the test, and
 * teardown's destroy would deadlock on a read lock left held. */
static struct dma_table *held;

static void rlock(struct dma_table *t)
{
	dma_table_read_lock(t);
	held = t;
}

static void runlock(struct dma_table *t)
{
	held = NULL;
	dma_table_read_unlock(t);
}

static int setup(void **state)
{
	struct dma_table *t;

	ferry_log_set_sink(capture, NULL);
	ferry_log_set_level(FERRY_LOG_WARN);
	log_lines = 0;
	assert_int_equal(dma_table_create(VFIO_USER_DEFAULT_MAX_DMA_MAPS, &t), 0);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	if (held)
		runlock(held);
	dma_table_destroy(*state);
	ferry_log_set_sink(NULL, NULL);
	return 0;
}

static int memfd(uint64_t size)
{
	int fd = memfd_create("ferry-test-dma", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	return fd;
}

static bool fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

/* A bad call returns @want and logs exactly one line mentioning @needle. */
#define assert_fails_logged(call, want, needle)                          \
	do {                                                             \
		int before_ = log_lines;                                 \
		assert_int_equal((call), (want));                        \
		assert_int_equal(log_lines, before_ + 1);                \
		assert_non_null(strstr(log_last, (needle)));             \
	} while (0)

static void test_create_args(void **state)
{
	struct dma_table *t = NULL;

	(void)state;
	assert_int_equal(dma_table_create(0, &t), -EINVAL);
	assert_null(t);
	assert_int_equal(dma_table_create(1, NULL), -EINVAL);
	dma_table_destroy(NULL);
}

static void test_map_lookup_unmap(void **state)
{
	struct dma_table *t = *state;
	const struct dma_region *r;

	assert_int_equal(dma_table_map(t, 0x10000, 0x4000, RW, -1, 0), 0);
	assert_int_equal(dma_table_map(t, 0x14000, 0x1000, R, -1, 0), 0); /* adjacent */
	assert_int_equal(dma_table_map(t, 0x1000, 0x1000, W, -1, 0), 0);
	assert_int_equal(dma_table_count(t), 3);

	rlock(t);
	/* dma_table_at walks in IOVA order. */
	assert_int_equal(dma_table_at(t, 0)->iova, 0x1000);
	assert_int_equal(dma_table_at(t, 1)->iova, 0x10000);
	assert_int_equal(dma_table_at(t, 2)->iova, 0x14000);
	assert_null(dma_table_at(t, 3));

	r = dma_table_lookup(t, 0x10000, 0x4000);
	assert_non_null(r);
	assert_int_equal(r->iova, 0x10000);
	assert_int_equal(r->size, 0x4000);
	assert_int_equal(r->prot, RW);
	assert_int_equal(r->fd, -1);
	assert_null(r->vaddr); /* message mode */
	assert_ptr_equal(dma_table_lookup(t, 0x13fff, 1), r);
	assert_int_equal(dma_table_lookup(t, 0x14000, 1)->iova, 0x14000);
	assert_int_equal(dma_table_lookup(t, 0x1800, 8)->iova, 0x1000);
	/* straddling two adjacent regions, past the end, in a gap, empty */
	assert_null(dma_table_lookup(t, 0x13ff0, 0x20));
	assert_null(dma_table_lookup(t, 0x14800, 0x1000));
	assert_null(dma_table_lookup(t, 0x2000, 1));
	assert_null(dma_table_lookup(t, 0x0, 1));
	assert_null(dma_table_lookup(t, 0x10000, 0));
	assert_null(dma_table_lookup(t, 0x10000, UINT64_MAX));
	assert_null(dma_table_lookup(t, UINT64_MAX, 2));
	runlock(t);

	assert_int_equal(dma_table_unmap(t, 0x10000, 0x4000), 0);
	assert_int_equal(dma_table_count(t), 2);
	rlock(t);
	assert_null(dma_table_lookup(t, 0x10000, 1));
	assert_non_null(dma_table_lookup(t, 0x14000, 1));
	runlock(t);
	assert_int_equal(log_lines, 0);
}

static void test_overlap_eexist(void **state)
{
	struct dma_table *t = *state;

	assert_int_equal(dma_table_map(t, 0x10000, 0x10000, RW, -1, 0), 0);
	assert_fails_logged(dma_table_map(t, 0xf000, 0x2000, RW, -1, 0), -EEXIST, "0xf000"); /* left */
	assert_fails_logged(dma_table_map(t, 0x1f000, 0x2000, RW, -1, 0), -EEXIST, "0x1f000"); /* right */
	assert_fails_logged(dma_table_map(t, 0x11000, 0x1000, RW, -1, 0), -EEXIST, "0x11000"); /* inside */
	assert_fails_logged(dma_table_map(t, 0x0, 0x40000, RW, -1, 0), -EEXIST, "0x40000"); /* covering */
	/* same range, other rights: not identical */
	assert_fails_logged(dma_table_map(t, 0x10000, 0x10000, R, -1, 0), -EEXIST, "0x10000");
	/* covering two regions, the first of which starts after it */
	assert_int_equal(dma_table_map(t, 0x30000, 0x1000, RW, -1, 0), 0);
	assert_fails_logged(dma_table_map(t, 0x28000, 0x10000, RW, -1, 0), -EEXIST, "0x28000");
	/* touching on either side is fine */
	assert_int_equal(dma_table_map(t, 0xf000, 0x1000, RW, -1, 0), 0);
	assert_int_equal(dma_table_map(t, 0x20000, 0x1000, RW, -1, 0), 0);
	assert_int_equal(dma_table_count(t), 4);
}

static void test_identical_remap(void **state)
{
	struct dma_table *t = *state;
	int fd = memfd(4 * PG), other = memfd(4 * PG), dup1, dup2, dup3;
	const struct dma_region *r;
	void *vaddr;

	/* message mode */
	assert_int_equal(dma_table_map(t, 0x100000, 0x2000, RW, -1, 0), 0);
	assert_int_equal(dma_table_map(t, 0x100000, 0x2000, RW, -1, 0), 0);
	assert_int_equal(dma_table_count(t), 1);

	/* fd mode: the re-map comes with a new fd to the same file */
	dup1 = dup(fd);
	assert_int_equal(dma_table_map(t, 0x200000, 0x2000, RW, dup1, PG), 0);
	rlock(t);
	vaddr = dma_table_lookup(t, 0x200000, 1)->vaddr;
	runlock(t);
	dup2 = dup(fd);
	assert_int_equal(dma_table_map(t, 0x200000, 0x2000, RW, dup2, PG), 0);
	assert_false(fd_is_open(dup2)); /* consumed: closed, not kept */
	assert_true(fd_is_open(dup1));  /* the kept one */
	assert_int_equal(dma_table_count(t), 2);
	rlock(t);
	r = dma_table_lookup(t, 0x200000, 1);
	assert_ptr_equal(r->vaddr, vaddr); /* untouched */
	assert_int_equal(r->fd, dup1);
	runlock(t);

	/* another file, another offset, message mode over fd mode: conflicts */
	assert_fails_logged(dma_table_map(t, 0x200000, 0x2000, RW, other, PG), -EEXIST, "0x200000");
	assert_false(fd_is_open(other));
	dup3 = dup(fd);
	assert_fails_logged(dma_table_map(t, 0x200000, 0x2000, RW, dup3, 0), -EEXIST, "0x200000");
	assert_false(fd_is_open(dup3));
	assert_fails_logged(dma_table_map(t, 0x200000, 0x2000, RW, -1, PG), -EEXIST, "0x200000");
	dup3 = dup(fd);
	assert_fails_logged(dma_table_map(t, 0x100000, 0x2000, RW, dup3, 0), -EEXIST, "0x100000");
	assert_false(fd_is_open(dup3));
	assert_int_equal(dma_table_count(t), 2);

	/* unmap closes the kept fd */
	assert_int_equal(dma_table_unmap(t, 0x200000, 0x2000), 0);
	assert_false(fd_is_open(dup1));
	close(fd);
}

static void test_unmap_exact_only(void **state)
{
	struct dma_table *t = *state;

	assert_int_equal(dma_table_map(t, 0x10000, 0x4000, RW, -1, 0), 0);
	assert_int_equal(dma_table_map(t, 0x14000, 0x4000, RW, -1, 0), 0);
	assert_fails_logged(dma_table_unmap(t, 0x10000, 0x1000), -ENOENT, "0x10000"); /* prefix */
	assert_fails_logged(dma_table_unmap(t, 0x11000, 0x3000), -ENOENT, "0x11000"); /* suffix */
	assert_fails_logged(dma_table_unmap(t, 0x10000, 0x8000), -ENOENT, "0x8000");  /* both */
	assert_fails_logged(dma_table_unmap(t, 0x0, 0x20000), -ENOENT, "0x20000");    /* covering */
	assert_fails_logged(dma_table_unmap(t, 0x30000, 0x4000), -ENOENT, "0x30000"); /* nothing */
	assert_int_equal(dma_table_count(t), 2);
	assert_int_equal(dma_table_unmap(t, 0x14000, 0x4000), 0);
	assert_fails_logged(dma_table_unmap(t, 0x14000, 0x4000), -ENOENT, "0x14000"); /* twice */
	assert_int_equal(dma_table_unmap(t, 0x10000, 0x4000), 0);
	assert_int_equal(dma_table_count(t), 0);
}

static void test_unmap_all(void **state)
{
	struct dma_table *t = *state;
	int fd = memfd(PG), kept = dup(fd);

	for (uint64_t i = 0; i < 10; i++)
		assert_int_equal(dma_table_map(t, i * 0x10000, PG, RW, -1, 0), 0);
	assert_int_equal(dma_table_map(t, 0x100000, PG, RW, kept, 0), 0);
	assert_int_equal(dma_table_count(t), 11);
	dma_table_unmap_all(t);
	assert_int_equal(dma_table_count(t), 0);
	assert_false(fd_is_open(kept));
	rlock(t);
	assert_null(dma_table_lookup(t, 0, 1));
	assert_null(dma_table_at(t, 0));
	runlock(t);
	/* usable again */
	assert_int_equal(dma_table_map(t, 0x0, PG, RW, -1, 0), 0);
	assert_int_equal(dma_table_count(t), 1);
	dma_table_unmap_all(t);
	dma_table_unmap_all(t);
	close(fd);
}

static void test_wraparound(void **state)
{
	struct dma_table *t = *state;
	int fd = memfd(PG), d;

	/* iova + size reaching or passing 2^64 */
	assert_fails_logged(dma_table_map(t, UINT64_MAX - PG + 1, PG, RW, -1, 0), -EINVAL,
			    "0xfffffffffffff000");
	assert_fails_logged(dma_table_map(t, 0x2000, UINT64_MAX - PG + 1, RW, -1, 0), -EINVAL,
			    "0xfffffffffffff000");
	assert_fails_logged(dma_table_map(t, UINT64_MAX - 0xfff, 0x2000, RW, -1, 0), -EINVAL,
			    "wraps");
	/* fd_offset + size */
	d = dup(fd);
	assert_fails_logged(dma_table_map(t, 0x0, 0x2000, RW, d, UINT64_MAX - PG + 1), -EINVAL,
			    "0xfffffffffffff000");
	assert_false(fd_is_open(d));
	assert_fails_logged(dma_table_map(t, 0x0, 0x2000, RW, -1, UINT64_MAX - PG + 1), -EINVAL,
			    "offset + size wraps");
	/* fits in u64 but not in off_t */
	d = dup(fd);
	assert_fails_logged(dma_table_map(t, 0x0, PG, RW, d, 1ull << 63), -EINVAL, "off_t");
	assert_false(fd_is_open(d));
	/* the highest mappable page still works */
	assert_int_equal(dma_table_map(t, UINT64_MAX - 2 * PG + 1, PG, RW, -1, 0), 0);
	rlock(t);
	assert_non_null(dma_table_lookup(t, UINT64_MAX - PG, 1));
	assert_null(dma_table_lookup(t, UINT64_MAX - PG, 0x2000));
	assert_null(dma_table_lookup(t, UINT64_MAX - 0x10, 0x20));
	runlock(t);
	assert_int_equal(dma_table_count(t), 1);
	close(fd);
}

static void test_alignment_and_flags(void **state)
{
	struct dma_table *t = *state;
	int fd = memfd(PG), d = dup(fd);

	assert_fails_logged(dma_table_map(t, 0x1001, PG, RW, -1, 0), -EINVAL, "0x1001");
	assert_fails_logged(dma_table_map(t, 0x1000, 0x1001, RW, -1, 0), -EINVAL, "0x1001");
	assert_fails_logged(dma_table_map(t, 0x1000, 0x800, RW, -1, 0), -EINVAL, "0x800");
	assert_fails_logged(dma_table_map(t, 0x1000, PG, RW, d, 0x200), -EINVAL, "0x200");
	assert_false(fd_is_open(d));
	assert_fails_logged(dma_table_map(t, 0x1000, PG, RW, -1, 0x200), -EINVAL, "aligned");
	assert_fails_logged(dma_table_map(t, 0x1000, 0, RW, -1, 0), -EINVAL, "empty");
	assert_fails_logged(dma_table_map(t, 0x1000, PG, RW | VFIO_USER_F_DMA_REGION_MMAP, -1, 0),
			    -EINVAL, "prot");
	assert_fails_logged(dma_table_map(t, 0x1000, PG, 0x80000000u, -1, 0), -EINVAL, "prot");
	assert_int_equal(dma_table_count(t), 0);
	close(fd);
}

static void test_too_many(void **state)
{
	struct dma_table *t;
	int fd = memfd(PG), d = dup(fd);

	(void)state;
	assert_int_equal(dma_table_create(3, &t), 0);
	for (uint64_t i = 0; i < 3; i++)
		assert_int_equal(dma_table_map(t, i * PG, PG, RW, -1, 0), 0);
	assert_fails_logged(dma_table_map(t, 0x100000, PG, RW, d, 0), -ENOSPC, "0x100000");
	assert_false(fd_is_open(d));
	/* an identical re-map is not a new region: allowed when full */
	assert_int_equal(dma_table_map(t, PG, PG, RW, -1, 0), 0);
	assert_int_equal(dma_table_unmap(t, PG, PG), 0);
	assert_int_equal(dma_table_map(t, 0x100000, PG, RW, -1, 0), 0);
	assert_int_equal(dma_table_count(t), 3);
	dma_table_destroy(t);
	close(fd);
}

static void test_mmap_failure(void **state)
{
	struct dma_table *t = *state;
	int fd = open("/dev/null", O_RDONLY);

	/* write access to a read-only fd: mmap's EACCES comes back */
	assert_true(fd >= 0);
	assert_fails_logged(dma_table_map(t, 0x0, PG, RW, fd, 0), -EACCES, "mmap");
	assert_false(fd_is_open(fd));
	assert_int_equal(dma_table_count(t), 0);
}

static uint64_t rnd_state;

static uint64_t rnd(void)
{
	/* xorshift64*: fixed seeds, reproducible */
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * 2685821657736338717ull;
}

#define NREG 10000u

static void test_ten_thousand(void **state)
{
	struct dma_table *t = *state;
	unsigned order[NREG];
	uint64_t sum = 0;

	rnd_state = 0x5eed0001;
	/* region i: [i * 16 pages + 4 pages, + (1 + i % 8) pages), mapped in random order */
	for (unsigned i = 0; i < NREG; i++)
		order[i] = i;
	for (unsigned i = NREG - 1; i > 0; i--) {
		unsigned j = (unsigned)(rnd() % (i + 1)), tmp = order[i];
		order[i] = order[j];
		order[j] = tmp;
	}
	for (unsigned k = 0; k < NREG; k++) {
		unsigned i = order[k];
		assert_int_equal(dma_table_map(t, (i * 16ull + 4) * PG, (1 + i % 8) * PG, RW, -1, i * PG), 0);
	}
	assert_int_equal(dma_table_count(t), NREG);

	rlock(t);
	for (unsigned i = 0; i < NREG; i++) {
		uint64_t base = (i * 16ull + 4) * PG, size = (1 + i % 8) * PG;
		const struct dma_region *r = dma_table_lookup(t, base, size);

		assert_non_null(r);
		assert_int_equal(r->fd_offset, i * PG);
		assert_ptr_equal(dma_table_at(t, i), r);
		assert_ptr_equal(dma_table_lookup(t, base + size - 1, 1), r);
		assert_null(dma_table_lookup(t, base - 1, 1));
		assert_null(dma_table_lookup(t, base + size, 1));
		assert_null(dma_table_lookup(t, base, size + 1));
	}
	/* 1e6 random probes, each checked against the layout */
	for (unsigned k = 0; k < 1000000; k++) {
		uint64_t a = rnd() % ((NREG * 16ull + 8) * PG), len = 1 + rnd() % 64;
		uint64_t i = a / (16 * PG), base = (i * 16 + 4) * PG, size = (1 + i % 8) * PG;
		bool inside = i < NREG && a >= base && a + len <= base + size;
		const struct dma_region *r = dma_table_lookup(t, a, len);

		if (inside) {
			assert_non_null(r);
			assert_int_equal(r->iova, base);
			sum += r->size;
		} else {
			assert_null(r);
		}
	}
	runlock(t);
	assert_true(sum > 0);

	/* drop every other region; lookups follow */
	for (unsigned i = 0; i < NREG; i += 2)
		assert_int_equal(dma_table_unmap(t, (i * 16ull + 4) * PG, (1 + i % 8) * PG), 0);
	assert_int_equal(dma_table_count(t), NREG / 2);
	rlock(t);
	for (unsigned i = 0; i < NREG; i++) {
		const struct dma_region *r = dma_table_lookup(t, (i * 16ull + 4) * PG, 1);
		if (i % 2)
			assert_int_equal(r->fd_offset, i * PG);
		else
			assert_null(r);
	}
	runlock(t);
}

static void test_memfd_write_visible(void **state)
{
	struct dma_table *t = *state;
	int fd = memfd(4 * PG);
	const struct dma_region *r;
	char buf[32] = {0};
	static const char msg[] = "written by device DMA";

	assert_int_equal(dma_table_map(t, 0x100000, 2 * PG, RW, dup(fd), 2 * PG), 0);
	assert_int_equal(dma_table_map(t, 0x200000, PG, R, dup(fd), 0), 0);
	rlock(t);
	r = dma_table_lookup(t, 0x101000 + 0x10, sizeof(msg));
	assert_non_null(r);
	assert_non_null(r->vaddr);
	assert_true(r->fd >= 0);
	memcpy((char *)r->vaddr + (0x101010 - r->iova), msg, sizeof(msg));
	runlock(t);
	/* iova 0x101010 is file offset 2 pages + 0x1010 */
	assert_int_equal(pread(fd, buf, sizeof(msg), 3 * PG + 0x10), (ssize_t)sizeof(msg));
	assert_string_equal(buf, msg);

	/* and the other way: a file write is visible through the read-only map */
	assert_int_equal(pwrite(fd, "hello", 6, 0x20), 6);
	rlock(t);
	r = dma_table_lookup(t, 0x200020, 6);
	assert_string_equal((const char *)r->vaddr + 0x20, "hello");
	runlock(t);
	close(fd);
}

/* unmap must wait for a reader holding the read lock. */
struct unmap_race {
	struct dma_table *t;
	atomic_bool unmapped;
	int ret;
};

/* No cmocka asserts off the main thread: report through u->ret. */
static void *unmap_thread(void *arg)
{
	struct unmap_race *u = arg;

	u->ret = dma_table_unmap(u->t, 0x10000, PG);
	atomic_store(&u->unmapped, true);
	return NULL;
}

static void test_unmap_waits_for_readers(void **state)
{
	struct unmap_race u = { .t = *state };
	const struct dma_region *r;
	pthread_t th;
	struct timespec ts = { 0, 50 * 1000 * 1000 };

	assert_int_equal(dma_table_map(u.t, 0x10000, PG, RW, memfd(PG), 0), 0);
	rlock(u.t);
	r = dma_table_lookup(u.t, 0x10000, 8);
	assert_non_null(r);
	assert_int_equal(pthread_create(&th, NULL, unmap_thread, &u), 0);
	nanosleep(&ts, NULL);
	/* still ours: unmap is blocked and the mapping is live */
	assert_false(atomic_load(&u.unmapped));
	memset(r->vaddr, 0xab, 8);
	runlock(u.t);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_true(atomic_load(&u.unmapped));
	assert_int_equal(u.ret, 0);
	assert_int_equal(dma_table_count(u.t), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_args),
		cmocka_unit_test_setup_teardown(test_map_lookup_unmap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlap_eexist, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identical_remap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unmap_exact_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unmap_all, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wraparound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alignment_and_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mmap_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ten_thousand, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memfd_write_visible, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unmap_waits_for_readers, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
