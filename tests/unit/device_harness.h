/*
 * Test harness for the device side: a small model device served on a
 * library thread over a socketpair, and a raw client built on lib/wire
 * (not the client library), so tests see exactly what goes over the wire.
 *
 * The model:
 *   BAR0  4 KiB memory, trapped: a register file (bar0[])
 *   BAR2  64 KiB 64-bit prefetchable memory backed by a memfd, mappable in
 *         two sparse areas [0, 16K) and [32K, 64K); the hole is trapped
 *         (bar2_hole[])
 *   BAR4  16 KiB memory holding the MSI-X table (0x0) and PBA (0x1000);
 *         the rest trapped, reads zero
 *   INTx, 4 MSI, 8 MSI-X vectors, ERR, REQ; PCI Express.
 * Header-only on purpose: each test program includes it once.
 */
#ifndef FERRY_TEST_DEVICE_HARNESS_H
#define FERRY_TEST_DEVICE_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/pci_regs.h>

#include <ferry/device.h>
#include <ferry/vfio_user.h>
#include "wire/caps.h"
#include "wire/wire.h"

#define H_BAR0_SIZE 0x1000u
#define H_BAR2_SIZE 0x10000u
#define H_BAR4_SIZE 0x4000u
#define H_MSIX_VECTORS 8u
#define H_MSIX_TABLE 0x0u
#define H_MSIX_PBA 0x1000u

struct harness {
	struct ferry_device *dev;
	struct wire_chan *ch;
	struct wire_chan *twin; /* client end of the twin socket, if negotiated */
	struct wire_caps server;
	int bar2_fd;
	uint8_t bar0[H_BAR0_SIZE];
	uint8_t bar2_hole[0x4000];
	atomic_int resets, maps, unmaps, irq_changes, attached, detached;
	atomic_int reset_rc;
	uint64_t last_map_iova, last_map_size, last_unmap_iova, last_unmap_size;
};

static inline int h_region_access(void *opaque, unsigned region, uint64_t off, void *buf,
			   uint32_t count, bool is_write)
{
	struct harness *h = opaque;
	uint8_t *mem = NULL;
	uint64_t size = 0;

	if (region == 0 && off == 0xff8)
		return -EIO; /* a register that fails, to see errors reach the client */
	if (region == 0) {
		mem = h->bar0;
		size = sizeof(h->bar0);
	} else if (region == 2 && off >= 0x4000 && off < 0x8000) {
		mem = h->bar2_hole;
		size = sizeof(h->bar2_hole);
		off -= 0x4000;
	} else if (region == 4) {
		if (!is_write)
			memset(buf, 0, count);
		return 0;
	} else {
		return -EINVAL; /* the library must not send anything else here */
	}
	if (off + count > size)
		return -EFAULT;
	if (is_write)
		memcpy(mem + off, buf, count);
	else
		memcpy(buf, mem + off, count);
	return 0;
}

static inline int h_reset(void *opaque)
{
	struct harness *h = opaque;
	atomic_fetch_add(&h->resets, 1);
	return atomic_load(&h->reset_rc);
}

static inline void h_dma_mapped(void *opaque, uint64_t iova, uint64_t size, uint32_t prot)
{
	struct harness *h = opaque;
	(void)prot;
	h->last_map_iova = iova;
	h->last_map_size = size;
	atomic_fetch_add(&h->maps, 1);
}

static inline void h_dma_unmapping(void *opaque, uint64_t iova, uint64_t size)
{
	struct harness *h = opaque;
	h->last_unmap_iova = iova;
	h->last_unmap_size = size;
	atomic_fetch_add(&h->unmaps, 1);
}

static inline void h_irq_changed(void *opaque, unsigned index, unsigned start, unsigned count)
{
	struct harness *h = opaque;
	(void)index, (void)start, (void)count;
	atomic_fetch_add(&h->irq_changes, 1);
}

static inline void h_client_changed(void *opaque, bool attached)
{
	struct harness *h = opaque;
	atomic_fetch_add(attached ? &h->attached : &h->detached, 1);
}

static const struct ferry_device_ops h_ops = {
	.size = sizeof(struct ferry_device_ops),
	.region_access = h_region_access,
	.reset = h_reset,
	.dma_mapped = h_dma_mapped,
	.dma_unmapping = h_dma_unmapping,
	.irq_changed = h_irq_changed,
	.client_changed = h_client_changed,
};

static const struct ferry_mmap_area h_bar2_areas[] = {
	{.offset = 0, .size = 0x4000},
	{.offset = 0x8000, .size = 0x8000},
};

static inline void h_fill_info(struct harness *h, struct ferry_device_info *info)
{
	memset(info, 0, sizeof(*info));
	info->name = "test-dev";
	info->id = (struct ferry_pci_id){.vendor_id = 0x1af4, .device_id = 0x10f0,
					 .subsys_vendor_id = 0x1af4, .subsys_id = 0x1,
					 .revision = 2, .class_code = 0xff0000};
	for (unsigned i = 0; i < FERRY_PCI_NUM_REGIONS; i++)
		info->regions[i].mmap_fd = -1;
	info->regions[0] = (struct ferry_region){.size = H_BAR0_SIZE, .mmap_fd = -1,
		.flags = FERRY_REGION_READ | FERRY_REGION_WRITE};
	info->regions[2] = (struct ferry_region){.size = H_BAR2_SIZE, .mmap_fd = h->bar2_fd,
		.flags = FERRY_REGION_READ | FERRY_REGION_WRITE | FERRY_BAR_MEM64 | FERRY_BAR_PREFETCH,
		.areas = h_bar2_areas, .nr_areas = 2};
	info->regions[4] = (struct ferry_region){.size = H_BAR4_SIZE, .mmap_fd = -1,
		.flags = FERRY_REGION_READ | FERRY_REGION_WRITE};
	info->irq_count[FERRY_IRQ_INTX] = 1;
	info->irq_count[FERRY_IRQ_MSI] = 4;
	info->irq_count[FERRY_IRQ_MSIX] = H_MSIX_VECTORS;
	info->irq_count[FERRY_IRQ_ERR] = 1;
	info->irq_count[FERRY_IRQ_REQ] = 1;
	info->msix_bar = 4;
	info->msix_table_offset = H_MSIX_TABLE;
	info->msix_pba_offset = H_MSIX_PBA;
	info->pcie = true;
	info->ops = &h_ops;
	info->opaque = h;
}

static struct harness *h_new(void)
{
	struct harness *h = calloc(1, sizeof(*h));
	assert_non_null(h);
	h->bar2_fd = memfd_create("bar2", MFD_CLOEXEC);
	assert_true(h->bar2_fd >= 0);
	assert_int_equal(ftruncate(h->bar2_fd, H_BAR2_SIZE), 0);
	return h;
}

/* Creates the device, connects a client and negotiates (twin socket if
 * @twin). */
static struct harness *h_start(bool twin)
{
	struct harness *h = h_new();
	struct ferry_device_info info;
	struct wire_transport *tr;
	struct wire_chan_opts o = {.name = "test-client", .timeout_ms = 5000};
	struct wire_caps mine;
	int sv[2], twin_fd;

	h_fill_info(h, &info);
	assert_int_equal(ferry_device_create(&info, &h->dev), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(ferry_device_attach_fd(h->dev, sv[0]), 0);
	assert_int_equal(ferry_device_start(h->dev), 0);
	assert_int_equal(wire_transport_sock_create(sv[1], &tr), 0);
	assert_int_equal(wire_chan_create(tr, &o, &h->ch), 0);
	wire_caps_default(&mine);
	mine.max_msg_fds = 16;
	mine.twin_socket = twin;
	mine.max_data_xfer_size = 4096; /* small, so DMA messages get chunked */
	assert_int_equal(wire_version_client(h->ch, &mine, &h->server, &twin_fd), 0);
	if (twin) {
		assert_true(twin_fd >= 0);
		o.name = "test-twin";
		assert_int_equal(wire_transport_sock_create(twin_fd, &tr), 0);
		assert_int_equal(wire_chan_create(tr, &o, &h->twin), 0);
	} else {
		assert_int_equal(twin_fd, -1);
	}
	return h;
}

static inline void h_disconnect(struct harness *h)
{
	wire_chan_destroy(h->twin);
	wire_chan_destroy(h->ch);
	h->twin = h->ch = NULL;
}

static inline void h_stop(struct harness *h)
{
	h_disconnect(h);
	ferry_device_destroy(h->dev); /* joins the library thread */
	close(h->bar2_fd);
	free(h);
}

static inline int h_call(struct harness *h, uint16_t cmd, const void *req, size_t len,
		  struct wire_msg *reply)
{
	return wire_call_simple(h->ch, cmd, req, len, reply);
}

static inline int h_call_fds(struct harness *h, uint16_t cmd, const void *req, size_t len,
		      const int *fds, unsigned nfds, struct wire_msg *reply)
{
	struct iovec iov = {.iov_base = (void *)req, .iov_len = len};
	return wire_call(h->ch, cmd, &iov, len ? 1 : 0, fds, nfds, reply);
}

static inline int h_region_read(struct harness *h, uint32_t region, uint64_t off, void *buf,
			 uint32_t count)
{
	struct vfio_user_region_access a = {.offset = off, .region = region, .count = count};
	struct wire_msg r;
	int rc = h_call(h, VFIO_USER_REGION_READ, &a, sizeof(a), &r);
	if (rc < 0)
		return rc;
	assert_int_equal(r.len, sizeof(a) + count);
	memcpy(buf, r.payload + sizeof(a), count);
	wire_msg_release(&r);
	return 0;
}

static inline int h_region_write(struct harness *h, uint32_t region, uint64_t off, const void *buf,
			  uint32_t count)
{
	uint8_t msg[sizeof(struct vfio_user_region_access) + 64];
	struct vfio_user_region_access a = {.offset = off, .region = region, .count = count};
	struct wire_msg r;
	assert_true(count <= 64);
	memcpy(msg, &a, sizeof(a));
	memcpy(msg + sizeof(a), buf, count);
	int rc = h_call(h, VFIO_USER_REGION_WRITE, msg, sizeof(a) + count, &r);
	if (rc == 0) {
		assert_int_equal(r.len, sizeof(a));
		wire_msg_release(&r);
	}
	return rc;
}

static inline uint32_t h_cfg_read(struct harness *h, uint64_t off, unsigned width)
{
	uint32_t v = 0;
	assert_int_equal(h_region_read(h, FERRY_PCI_CONFIG, off, &v, width), 0);
	return v;
}

static inline void h_cfg_write(struct harness *h, uint64_t off, unsigned width, uint32_t v)
{
	assert_int_equal(h_region_write(h, FERRY_PCI_CONFIG, off, &v, width), 0);
}

/* Offset of capability @id in config space, walking the list. */
static inline unsigned h_find_cap(struct harness *h, uint8_t id)
{
	unsigned off = h_cfg_read(h, PCI_CAPABILITY_LIST, 1);
	for (int guard = 0; off && guard < 48; guard++) {
		if (h_cfg_read(h, off, 1) == id)
			return off;
		off = h_cfg_read(h, off + 1, 1);
	}
	return 0;
}

static inline int h_feature(struct harness *h, uint32_t flags, uint32_t argsz, const void *data,
		     size_t len, struct wire_msg *reply)
{
	uint8_t *msg = malloc(8 + len);
	struct vfio_user_device_feature f = {.argsz = argsz, .flags = flags};
	assert_non_null(msg);
	memcpy(msg, &f, 8);
	if (len)
		memcpy(msg + 8, data, len);
	int rc = h_call(h, VFIO_USER_DEVICE_FEATURE, msg, 8 + len, reply);
	free(msg);
	return rc;
}

static inline bool h_efd_fired(int efd, int timeout_ms)
{
	struct pollfd p = {.fd = efd, .events = POLLIN};
	if (poll(&p, 1, timeout_ms) != 1)
		return false;
	eventfd_t v;
	return eventfd_read(efd, &v) == 0 && v > 0;
}

#endif
