/*
 * DMA: map/unmap bookkeeping and argument checks, and serving the server's
 * DMA_READ / DMA_WRITE (on the twin socket and on the main channel, through
 * our mapping and through the fd), with dirty reporting and the errors for
 * unmapped, forbidden and oversized requests.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sys/mman.h>

#include "client_fake.h"

#define PG 4096u
#define RW (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)

struct dirty_log {
	unsigned calls;
	uint64_t iova, len;
};

static void on_dirty(void *opaque, uint64_t iova, uint64_t len)
{
	struct dirty_log *d = opaque;
	d->calls++;
	d->iova = iova;
	d->len = len;
}

static void test_map_unmap(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	fake_init(&f);
	assert_int_equal(fake_connect(&f, NULL, &c), 0);
	int fd = memfd_create("guest", MFD_CLOEXEC);
	assert_int_equal(ftruncate(fd, 16 * PG), 0);
	uint8_t mem[4 * PG];

	assert_int_equal(ferry_client_dma_map(c, 0x100000, 16 * PG, RW, fd, 0, NULL), 0);
	assert_int_equal(ferry_client_dma_map(c, 0x200000, 4 * PG, VFIO_DMA_MAP_FLAG_READ, -1, 0,
					      mem), 0);
	assert_int_equal(f.nmaps, 2);
	assert_true(f.map_had_fd[0]);
	assert_false(f.map_had_fd[1]);
	assert_int_equal(f.maps[0].addr, 0x100000);
	assert_int_equal(f.maps[0].size, 16 * PG);
	assert_int_equal(f.maps[0].flags, RW);
	assert_int_equal(f.maps[1].flags, VFIO_DMA_MAP_FLAG_READ);

	/* refused locally, nothing sent */
	assert_int_equal(ferry_client_dma_map(c, 0x101000, PG, RW, fd, 0, NULL), -EEXIST);
	assert_int_equal(ferry_client_dma_map(c, 0x300100, PG, RW, fd, 0, NULL), -EINVAL);
	assert_int_equal(ferry_client_dma_map(c, 0x300000, 0, RW, fd, 0, NULL), -EINVAL);
	assert_int_equal(ferry_client_dma_map(c, UINT64_MAX - PG + 1, 2 * PG, RW, fd, 0, NULL),
			 -EINVAL);
	assert_int_equal(ferry_client_dma_map(c, 0x300000, PG, 0x4, fd, 0, NULL), -EINVAL);
	assert_int_equal(ferry_client_dma_map(c, 0x300000, PG, RW, -1, 0, NULL), -EINVAL);
	assert_int_equal(f.nmaps, 2);
	assert_int_equal(ferry_client_dma_unmap(c, 0x100000, PG), -ENOENT);
	assert_int_equal(f.nunmaps, 0);

	assert_int_equal(ferry_client_dma_unmap(c, 0x100000, 16 * PG), 0);
	assert_int_equal(f.nunmaps, 1);
	assert_int_equal(f.last_unmap_flags, 0);
	assert_int_equal(ferry_client_dma_unmap(c, 0x100000, 16 * PG), -ENOENT);
	/* the range is free again */
	assert_int_equal(ferry_client_dma_map(c, 0x100000, PG, RW, fd, 0, NULL), 0);
	assert_int_equal(ferry_client_dma_unmap_all(c), 0);
	assert_int_equal(f.last_unmap_flags, VFIO_DMA_UNMAP_FLAG_ALL);
	assert_int_equal(ferry_client_dma_unmap(c, 0x200000, 4 * PG), -ENOENT);

	ferry_client_close(c);
	fake_stop(&f);
	close(fd);
}

static void serve_checks(bool twin)
{
	struct fake_server f;
	struct ferry_client *c;
	struct wire_msg rep;
	struct dirty_log dl = {0};
	uint8_t *a = aligned_alloc(PG, 4 * PG), *b = aligned_alloc(PG, PG);
	fake_init(&f);
	f.offer_twin = twin;
	assert_int_equal(fake_connect(&f, NULL, &c), 0);
	assert_int_equal(ferry_client_server_caps(c)->twin_socket, twin);
	memset(a, 0, 4 * PG);
	for (unsigned i = 0; i < PG; i++)
		b[i] = (uint8_t)i;
	assert_int_equal(ferry_client_dma_map(c, 0x10000, 4 * PG, RW, -1, 0, a), 0);
	assert_int_equal(ferry_client_dma_map(c, 0x40000, PG, VFIO_DMA_MAP_FLAG_READ, -1, 0, b),
			 0);
	ferry_client_set_dirty_callback(c, on_dirty, &dl);

	uint8_t data[100];
	memset(data, 0x5a, sizeof(data));
	assert_int_equal(fake_dma_call(&f, 0x10000 + 3 * PG + 7, sizeof(data), data, &rep), 0);
	assert_int_equal(rep.len, 16); /* SPEC / libvfio-user: addr + count echoed */
	wire_msg_release(&rep);
	assert_memory_equal(a + 3 * PG + 7, data, sizeof(data));
	assert_int_equal(dl.calls, 1);
	assert_int_equal(dl.iova, 0x10000 + 3 * PG + 7);
	assert_int_equal(dl.len, sizeof(data));

	assert_int_equal(fake_dma_call(&f, 0x40010, 32, NULL, &rep), 0);
	assert_int_equal(rep.len, 16 + 32);
	assert_memory_equal(rep.payload + 16, b + 0x10, 32);
	wire_msg_release(&rep);

	/* errors: unmapped, straddling, wrapping, forbidden, too big */
	assert_int_equal(fake_dma_call(&f, 0x90000, 8, NULL, NULL), -EFAULT);
	assert_int_equal(fake_dma_call(&f, 0x10000 + 4 * PG - 4, 8, NULL, NULL), -EFAULT);
	assert_int_equal(fake_dma_call(&f, UINT64_MAX - 3, 8, NULL, NULL), -EFAULT);
	assert_int_equal(fake_dma_call(&f, 0x40000, 8, data, NULL), -EPERM);
	assert_int_equal(fake_dma_call(&f, 0x10000, 2u << 20, NULL, NULL), -E2BIG);
	assert_int_equal(dl.calls, 1);

	/* the device reaches guest memory while the client waits for a reply */
	f.regions[1].size = PG;
	f.regions[1].flags = VFIO_REGION_INFO_FLAG_READ;
	f.dma_on_read = true;
	f.dma_on_read_region = 1;
	f.dma_on_read_addr = 0x40020;
	uint64_t v;
	assert_int_equal(ferry_client_read64(c, 1, 0, &v), 0);
	assert_int_equal(f.dma_on_read_rc, 0);
	assert_memory_equal(&v, b + 0x20, 8);

	/* an unknown server command */
	assert_int_equal(wire_call(fake_cmd_chan(&f), 77, NULL, 0, NULL, 0, NULL), -ENOSYS);

	ferry_client_set_dirty_callback(c, NULL, NULL);
	assert_int_equal(fake_dma_call(&f, 0x10000, 4, data, NULL), 0);
	assert_int_equal(dl.calls, 1);
	assert_int_equal(ferry_client_dma_unmap(c, 0x10000, 4 * PG), 0);
	assert_int_equal(fake_dma_call(&f, 0x10000, 4, NULL, NULL), -EFAULT);

	ferry_client_close(c);
	fake_stop(&f);
	free(a);
	free(b);
}

static void test_serve_twin(void **state)
{
	(void)state;
	serve_checks(true);
}

static void test_serve_main_channel(void **state)
{
	(void)state;
	serve_checks(false);
}

/* Without our own mapping the library serves through the fd. */
static void test_serve_through_fd(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	struct wire_msg rep;
	fake_init(&f);
	assert_int_equal(fake_connect(&f, NULL, &c), 0);
	int fd = memfd_create("guest", MFD_CLOEXEC);
	assert_int_equal(ftruncate(fd, 8 * PG), 0);
	assert_int_equal(ferry_client_dma_map(c, 0x0, 4 * PG, RW, fd, 4 * PG, NULL), 0);

	uint8_t big[64 * 1024], back[64 * 1024];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 3);
	/* 4 pages only: writes past them fault */
	assert_int_equal(fake_dma_call(&f, 0, sizeof(big), big, NULL), -EFAULT);
	assert_int_equal(fake_dma_call(&f, 100, 3 * PG, big, NULL), 0);
	assert_int_equal(pread(fd, back, 3 * PG, 4 * PG + 100), 3 * PG);
	assert_memory_equal(back, big, 3 * PG);
	assert_int_equal(fake_dma_call(&f, 100, 3 * PG, NULL, &rep), 0);
	assert_int_equal(rep.len, 16 + 3 * PG);
	assert_memory_equal(rep.payload + 16, big, 3 * PG);
	wire_msg_release(&rep);

	ferry_client_close(c); /* closes the duplicated fd */
	fake_stop(&f);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_map_unmap),
		cmocka_unit_test(test_serve_twin),
		cmocka_unit_test(test_serve_main_channel),
		cmocka_unit_test(test_serve_through_fd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
