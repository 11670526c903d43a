/*
 * Dirty-tracking tests: a real ferry device served on a library thread over
 * a socketpair, driven by the real client library (not a raw wire client),
 * with guest memory in a memfd the test maps too. Header-only: each test
 * program includes it once.
 */
#ifndef FERRY_TEST_DIRTY_HARNESS_H
#define FERRY_TEST_DIRTY_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ferry/client.h>
#include <ferry/client_dirty.h>
#include <ferry/device.h>
#include <ferry/vfio_user.h>

#define K4 0x1000ull
#define K64 0x10000ull
#define M2 0x200000ull

struct dut {
	struct ferry_device *dev;
	struct ferry_client *c;
	int mem_fd;       /* guest memory, -1 until dut_guest() */
	uint8_t *mem;     /* the test's own mapping of it */
	uint64_t mem_size;
};

static int dut_region_access(void *opaque, unsigned region, uint64_t offset, void *buf,
			     uint32_t count, bool is_write)
{
	(void)opaque, (void)region, (void)offset;
	if (!is_write)
		memset(buf, 0, count);
	return 0;
}

static const struct ferry_device_ops dut_ops = {
	.size = sizeof(struct ferry_device_ops),
	.region_access = dut_region_access,
};

/* A device with one trapped BAR, connected to a ferry client; with
 * @extensions false the client offers none (so no dirty_shm). */
static void dut_start(struct dut *d, const char *name, bool extensions)
{
	struct ferry_device_info info = {
		.name = name,
		.id = {.vendor_id = 0xf377, .device_id = 0x00d1, .class_code = 0xff0000},
		.ops = &dut_ops,
	};
	struct ferry_client_options o = {
		.name = name, .timeout_ms = 20000, .no_extensions = !extensions,
	};
	int sv[2];

	memset(d, 0, sizeof(*d));
	d->mem_fd = -1;
	for (unsigned i = 0; i < FERRY_PCI_NUM_REGIONS; i++)
		info.regions[i].mmap_fd = -1;
	info.regions[0] = (struct ferry_region){.size = 4096, .mmap_fd = -1,
		.flags = FERRY_REGION_READ | FERRY_REGION_WRITE};
	assert_int_equal(ferry_device_create(&info, &d->dev), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(ferry_device_attach_fd(d->dev, sv[0]), 0);
	assert_int_equal(ferry_device_start(d->dev), 0);
	assert_int_equal(ferry_client_connect_fd(sv[1], &o, &d->c), 0);
	assert_int_equal(!!(ferry_client_server_caps(d->c)->extensions & FERRY_EXT_DIRTY_SHM),
			 extensions);
}

/* Guest memory of @size bytes (sparse), mapped into the device at @iova as
 * @nmaps adjacent DMA maps of equal size, all with the fd. */
static void dut_guest(struct dut *d, uint64_t iova, uint64_t size, unsigned nmaps)
{
	uint64_t part = size / nmaps;

	d->mem_fd = memfd_create("guest", MFD_CLOEXEC);
	assert_true(d->mem_fd >= 0);
	assert_int_equal(ftruncate(d->mem_fd, (off_t)size), 0);
	d->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, d->mem_fd, 0);
	assert_true(d->mem != MAP_FAILED);
	d->mem_size = size;
	for (unsigned i = 0; i < nmaps; i++)
		assert_int_equal(ferry_client_dma_map(d->c, iova + i * part, part,
						      VFIO_DMA_MAP_FLAG_READ |
							      VFIO_DMA_MAP_FLAG_WRITE,
						      d->mem_fd, i * part, d->mem + i * part),
				 0);
}

static void dut_stop(struct dut *d)
{
	ferry_client_close(d->c);
	ferry_device_destroy(d->dev); /* joins the library thread */
	if (d->mem)
		munmap(d->mem, d->mem_size);
	if (d->mem_fd >= 0)
		close(d->mem_fd);
}

/* xorshift64*: reproducible randomness per seed. */
static uint64_t dut_rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static bool bit_test(const uint64_t *b, uint64_t i)
{
	return b[i / 64] >> (i % 64) & 1;
}

#endif
