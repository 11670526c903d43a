/*
 * Regions: info with the argsz retry, sparse-mmap and type caps, caching,
 * mapping sparse areas from the region's fd, and trapped read/write split
 * by the server's max_data_xfer_size.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sys/mman.h>

#include "client_fake.h"

#define PG 4096u

static int make_memfd(size_t size, uint8_t seed)
{
	int fd = memfd_create("fake-bar", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	for (size_t i = 0; i < size; i++)
		p[i] = (uint8_t)(i / PG + seed);
	munmap(p, size);
	return fd;
}

/* 15 sparse areas plus a type cap need 32 + 16 + 240 + 16 bytes: more than
 * the client's first argsz, so it must ask twice. */
static void test_info_retry_sparse(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	const struct ferry_region_desc *d;
	fake_init(&f);
	struct fake_region *r = &f.regions[0];
	r->size = 32 * PG;
	r->flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
		   VFIO_REGION_INFO_FLAG_MMAP;
	r->fd = make_memfd(r->size, 0);
	r->nr_areas = 15;
	for (unsigned i = 0; i < 15; i++) {
		r->areas[i].offset = (uint64_t)i * 2 * PG;
		r->areas[i].size = PG;
	}
	r->has_type = true;
	r->type = 0x8086;
	r->subtype = 3;
	assert_int_equal(fake_connect(&f, NULL, &c), 0);

	assert_int_equal(ferry_client_region_info(c, 0, &d), 0);
	assert_int_equal(f.region_info_calls, 2);
	assert_int_equal(d->index, 0);
	assert_int_equal(d->size, 32 * PG);
	assert_true(d->flags & VFIO_REGION_INFO_FLAG_CAPS);
	assert_true(d->has_fd);
	assert_true(d->has_sparse);
	assert_int_equal(d->nr_areas, 15);
	for (unsigned i = 0; i < 15; i++) {
		assert_int_equal(d->areas[i].offset, i * 2 * PG);
		assert_int_equal(d->areas[i].size, PG);
	}
	assert_true(d->has_type);
	assert_int_equal(d->type, 0x8086);
	assert_int_equal(d->subtype, 3);

	/* cached: no new query */
	const struct ferry_region_desc *d2;
	assert_int_equal(ferry_client_region_info(c, 0, &d2), 0);
	assert_ptr_equal(d, d2);
	assert_int_equal(f.region_info_calls, 2);

	/* map: every area holds its page of the fd */
	int err = 1;
	uint8_t *base = ferry_client_region_map(c, 0, &err);
	assert_non_null(base);
	assert_int_equal(err, 0);
	assert_ptr_equal(ferry_client_region_map(c, 0, NULL), base);
	for (unsigned i = 0; i < 15; i++)
		assert_int_equal(base[i * 2 * PG + 5], (uint8_t)(i * 2));
	base[4 * PG] = 0xab; /* area 2 */
	uint8_t b;
	assert_int_equal(pread(r->fd, &b, 1, 4 * PG), 1);
	assert_int_equal(b, 0xab);
	/* the gaps are reserved but inaccessible */
	unsigned char vec;
	assert_int_equal(mincore(base + PG, PG, &vec), 0);
	ferry_client_region_unmap(c, 0);
	base = ferry_client_region_map(c, 0, &err);
	assert_non_null(base);
	assert_int_equal(base[4 * PG], 0xab);

	ferry_client_close(c); /* unmaps */
	fake_stop(&f);
	close(r->fd);
}

static void test_map_whole_and_no_fd(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	const struct ferry_region_desc *d;
	int err;
	fake_init(&f);
	f.regions[2].size = 4 * PG;
	f.regions[2].flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_MMAP;
	f.regions[2].fd = make_memfd(4 * PG, 10);
	f.regions[2].offset = 0;
	f.regions[3].size = PG;
	f.regions[3].flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
	assert_int_equal(fake_connect(&f, NULL, &c), 0);

	assert_int_equal(ferry_client_region_info(c, 2, &d), 0);
	assert_false(d->has_sparse);
	assert_int_equal(d->nr_areas, 0);
	assert_true(d->has_fd);
	assert_int_equal(f.region_info_calls, 1);
	uint8_t *base = ferry_client_region_map(c, 2, &err);
	assert_non_null(base);
	assert_int_equal(base[3 * PG], 13);

	assert_null(ferry_client_region_map(c, 3, &err));
	assert_int_equal(err, -ENODEV);
	assert_int_equal(ferry_client_region_info(c, 9, &d), -EINVAL);
	assert_null(ferry_client_region_map(c, 9, &err));
	assert_int_equal(err, -EINVAL);
	ferry_client_region_unmap(c, 3); /* not mapped: no-op */
	ferry_client_region_unmap(c, 8); /* never queried: no-op */

	ferry_client_close(c);
	fake_stop(&f);
	close(f.regions[2].fd);
}

static void test_rw_split(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	fake_init(&f);
	f.max_data_xfer_size = 4096;
	f.regions[1].size = 20000;
	f.regions[1].flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
	f.regions[1].mem = calloc(1, 20000);
	assert_int_equal(fake_connect(&f, NULL, &c), 0);

	uint8_t out[10000], in[10000];
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 31);
	assert_int_equal(ferry_client_region_write(c, 1, 100, out, sizeof(out)), 0);
	assert_int_equal(f.nwrites, 3);
	assert_int_equal(f.max_write_chunk, 4096);
	assert_memory_equal(f.regions[1].mem + 100, out, sizeof(out));
	assert_int_equal(ferry_client_region_read(c, 1, 100, in, sizeof(in)), 0);
	assert_int_equal(f.nreads, 3);
	assert_int_equal(f.max_read_chunk, 4096);
	assert_memory_equal(in, out, sizeof(out));

	uint32_t v32;
	uint64_t v64;
	assert_int_equal(ferry_client_write32(c, 1, 0, 0xdeadbeef), 0);
	assert_int_equal(ferry_client_read32(c, 1, 0, &v32), 0);
	assert_int_equal(v32, 0xdeadbeef);
	assert_int_equal(ferry_client_write64(c, 1, 8, 0x0123456789abcdefull), 0);
	assert_int_equal(ferry_client_read64(c, 1, 8, &v64), 0);
	assert_int_equal(v64, 0x0123456789abcdefull);

	/* the server's errors come back; zero-length is a no-op; wrap refused */
	assert_int_equal(ferry_client_read32(c, 1, 19998, &v32), -EINVAL);
	assert_int_equal(ferry_client_region_read(c, 1, 0, in, 0), 0);
	assert_int_equal(ferry_client_region_read(c, 1, UINT64_MAX - 2, in, 8), -EINVAL);

	ferry_client_close(c);
	fake_stop(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_info_retry_sparse),
		cmocka_unit_test(test_map_whole_and_no_fd),
		cmocka_unit_test(test_rw_split),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
