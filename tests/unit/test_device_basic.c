/*
 * Device side, basics: creation checks, VERSION, DEVICE_GET_INFO, region
 * info (sparse mmap + fd, argsz retry), region accesses (trapped, through
 * the fd, MSI-X), config space (ids, BAR sizing, capabilities, bus master),
 * WRITE_MULTI, IO_FDS, DEVICE_RESET and FLR, reconnect after disconnect.
 */
#include "device_harness.h"

#include <sys/un.h>

static void test_create_checks(void **state)
{
	(void)state;
	struct harness *h = h_new();
	struct ferry_device_info info;
	struct ferry_device *dev = NULL;
	struct ferry_device_ops ops = h_ops;
	struct ferry_mmap_area bad_area = {.offset = 0x100, .size = 0x1000};
	struct ferry_mmap_area msix_area = {.offset = 0, .size = 0x2000};

	assert_int_equal(ferry_device_create(NULL, &dev), -EINVAL);

	h_fill_info(h, &info);
	info.ops = NULL;
	assert_int_equal(ferry_device_create(&info, &dev), -EINVAL);

	h_fill_info(h, &info);
	ops.size = 3;
	info.ops = &ops;
	assert_int_equal(ferry_device_create(&info, &dev), -EINVAL);

	h_fill_info(h, &info);
	ops = h_ops;
	ops.region_access = NULL; /* BAR0 is trapped */
	info.ops = &ops;
	assert_int_equal(ferry_device_create(&info, &dev), -EINVAL);

	h_fill_info(h, &info);
	info.regions[2].areas = &bad_area;
	info.regions[2].nr_areas = 1;
	assert_int_equal(ferry_device_create(&info, &dev), -EINVAL);

	h_fill_info(h, &info); /* MSI-X table inside an mmap area */
	info.regions[4].mmap_fd = h->bar2_fd;
	info.regions[4].areas = &msix_area;
	info.regions[4].nr_areas = 1;
	assert_int_equal(ferry_device_create(&info, &dev), -EINVAL);

	h_fill_info(h, &info);
	info.irq_count[FERRY_IRQ_MSI] = 3;
	assert_int_equal(ferry_device_create(&info, &dev), -EINVAL);

	h_fill_info(h, &info);
	info.regions[0].flags |= 0x100;
	assert_int_equal(ferry_device_create(&info, &dev), -EINVAL);

	h_fill_info(h, &info);
	info.regions[1].size = 0x1000; /* BAR0 is 32-bit: slot 1 is free */
	info.regions[1].flags = FERRY_REGION_READ;
	assert_int_equal(ferry_device_create(&info, &dev), 0);
	ferry_device_destroy(dev);
	dev = NULL;

	h_fill_info(h, &info);
	info.regions[3].size = 0x1000; /* slot 3 is the upper half of 64-bit BAR2 */
	assert_int_equal(ferry_device_create(&info, &dev), -EINVAL);

	assert_int_equal(ferry_device_run(NULL), -EINVAL);
	ferry_device_destroy(NULL);
	close(h->bar2_fd);
	free(h);
}

static void test_version_and_info(void **state)
{
	(void)state;
	struct harness *h = h_start(true);
	struct vfio_user_device_info in = {.argsz = sizeof(in)}, out;
	struct wire_msg r;

	assert_int_equal(h->server.max_msg_fds, WIRE_MAX_FDS);
	assert_int_equal(h->server.max_data_xfer_size, 1024 * 1024);
	assert_int_equal(h->server.pgsizes, 4096);
	assert_true(h->server.write_multiple);
	assert_true(h->server.twin_socket);
	assert_int_equal(h->server.max_dma_maps, 65535);

	assert_int_equal(h_call(h, VFIO_USER_DEVICE_GET_INFO, &in, sizeof(in), &r), 0);
	assert_int_equal(r.len, sizeof(out));
	memcpy(&out, r.payload, sizeof(out));
	wire_msg_release(&r);
	assert_int_equal(out.argsz, 16);
	assert_int_equal(out.flags, VFIO_DEVICE_FLAGS_RESET | VFIO_DEVICE_FLAGS_PCI);
	assert_int_equal(out.num_regions, 9);
	assert_int_equal(out.num_irqs, 5);
	in.argsz = 8;
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_GET_INFO, &in, sizeof(in), NULL), -EINVAL);
	assert_int_equal(atomic_load(&h->attached), 1);

	/* a second VERSION is refused, the connection stays */
	struct vfio_user_version v = {.major = 0, .minor = 2};
	assert_int_equal(h_call(h, VFIO_USER_VERSION, &v, sizeof(v), NULL), -EINVAL);
	in.argsz = 16;
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_GET_INFO, &in, sizeof(in), NULL), 0);
	h_stop(h);
}

static void test_region_info(void **state)
{
	(void)state;
	struct harness *h = h_start(false);
	struct vfio_user_region_info in = {.argsz = sizeof(in), .index = 2}, out;
	struct vfio_user_sparse_mmap sp;
	struct vfio_user_sparse_mmap_area areas[2];
	struct wire_msg r;

	/* too small: head only, argsz = needed, MMAP without CAPS, no fd */
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_GET_REGION_INFO, &in, sizeof(in), &r), 0);
	assert_int_equal(r.len, sizeof(out));
	assert_int_equal(r.nfds, 0);
	memcpy(&out, r.payload, sizeof(out));
	wire_msg_release(&r);
	assert_int_equal(out.argsz, 32 + 16 + 2 * 16);
	assert_int_equal(out.size, H_BAR2_SIZE);
	assert_true(out.flags & VFIO_REGION_INFO_FLAG_MMAP);
	assert_false(out.flags & VFIO_REGION_INFO_FLAG_CAPS);

	/* retry with the size asked for */
	in.argsz = out.argsz;
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_GET_REGION_INFO, &in, sizeof(in), &r), 0);
	assert_int_equal(r.len, in.argsz);
	assert_int_equal(r.nfds, 1);
	memcpy(&out, r.payload, sizeof(out));
	memcpy(&sp, r.payload + 32, sizeof(sp));
	memcpy(areas, r.payload + 48, sizeof(areas));
	assert_int_equal(out.flags, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
					    VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS);
	assert_int_equal(out.cap_offset, 32);
	assert_int_equal(sp.header.id, VFIO_REGION_INFO_CAP_SPARSE_MMAP);
	assert_int_equal(sp.header.version, 1);
	assert_int_equal(sp.header.next, 0);
	assert_int_equal(sp.nr_areas, 2);
	assert_int_equal(areas[0].offset, 0);
	assert_int_equal(areas[0].size, 0x4000);
	assert_int_equal(areas[1].offset, 0x8000);
	assert_int_equal(areas[1].size, 0x8000);
	/* the fd maps the same memory the device sees */
	int fd = wire_msg_take_fd(&r, 0);
	wire_msg_release(&r);
	uint8_t *p = mmap(NULL, 0x8000, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
			  (off_t)(out.offset + 0x8000));
	assert_true(p != MAP_FAILED);
	close(fd);
	uint32_t v = 0xdeadbeef, got = 0;
	assert_int_equal(h_region_write(h, 2, 0x8010, &v, 4), 0);
	assert_memory_equal(p + 0x10, &v, 4);
	p[0x20] = 0x5a;
	assert_int_equal(h_region_read(h, 2, 0x8020, &got, 1), 0);
	assert_int_equal(got, 0x5a);
	munmap(p, 0x8000);

	/* config space: no mmap, size 4 KiB for PCIe */
	in = (struct vfio_user_region_info){.argsz = 512, .index = FERRY_PCI_CONFIG};
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_GET_REGION_INFO, &in, sizeof(in), &r), 0);
	memcpy(&out, r.payload, sizeof(out));
	assert_int_equal(r.nfds, 0);
	wire_msg_release(&r);
	assert_int_equal(out.size, 4096);
	assert_int_equal(out.flags, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE);
	assert_int_equal(out.argsz, 32);

	/* absent BAR and out-of-range index */
	in.index = 5;
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_GET_REGION_INFO, &in, sizeof(in), &r), 0);
	memcpy(&out, r.payload, sizeof(out));
	wire_msg_release(&r);
	assert_int_equal(out.size, 0);
	assert_int_equal(out.flags, 0);
	in.index = 9;
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_GET_REGION_INFO, &in, sizeof(in), NULL), -EINVAL);
	in.index = 0;
	in.argsz = 31;
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_GET_REGION_INFO, &in, sizeof(in), NULL), -EINVAL);

	/* GET_REGION_IO_FDS: nothing to offload */
	struct vfio_user_region_io_fds io = {.argsz = 64, .index = 0}, io_out;
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_GET_REGION_IO_FDS, &io, sizeof(io), &r), 0);
	memcpy(&io_out, r.payload, sizeof(io_out));
	wire_msg_release(&r);
	assert_int_equal(io_out.count, 0);
	assert_int_equal(io_out.argsz, 16);
	io.count = 1;
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_GET_REGION_IO_FDS, &io, sizeof(io), NULL),
			 -EINVAL);
	h_stop(h);
}

static void test_region_access(void **state)
{
	(void)state;
	struct harness *h = h_start(false);
	uint64_t v = 0x1122334455667788ull, got = 0;

	/* trapped BAR0: the model's register file */
	assert_int_equal(h_region_write(h, 0, 0x100, &v, 8), 0);
	assert_memory_equal(h->bar0 + 0x100, &v, 8);
	assert_int_equal(h_region_read(h, 0, 0x100, &got, 8), 0);
	assert_int_equal(got, v);
	/* BAR2: hole trapped, area through the fd, an access spanning both */
	uint8_t pattern[32];
	for (unsigned i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i + 1);
	assert_int_equal(h_region_write(h, 2, 0x4000 - 16, pattern, 32), 0);
	uint8_t fdbytes[16];
	assert_int_equal(pread(h->bar2_fd, fdbytes, 16, 0x4000 - 16), 16);
	assert_memory_equal(fdbytes, pattern, 16);
	assert_memory_equal(h->bar2_hole, pattern + 16, 16);
	uint8_t back[32];
	assert_int_equal(h_region_read(h, 2, 0x4000 - 16, back, 32), 0);
	assert_memory_equal(back, pattern, 32);

	/* limits */
	assert_int_equal(h_region_read(h, 0, H_BAR0_SIZE - 4, &got, 8), -EINVAL);
	assert_int_equal(h_region_read(h, 0, UINT64_MAX - 3, &got, 8), -EINVAL);
	assert_int_equal(h_region_read(h, 1, 0, &got, 4), -EINVAL); /* absent BAR */
	assert_int_equal(h_region_read(h, 9, 0, &got, 4), -EINVAL);
	/* count 0 is a successful empty access */
	assert_int_equal(h_region_read(h, 0, 0, &got, 0), 0);
	/* the model's error is the client's error */
	assert_int_equal(h_region_read(h, 0, 0xff8, &got, 8), -EIO);
	/* BAR4 outside the MSI-X table and PBA goes to the model */
	got = 1;
	assert_int_equal(h_region_read(h, 4, 0x2000, &got, 4), 0);
	assert_int_equal(got, 0);

	/* WRITE_MULTI: two 4-byte register writes */
	struct {
		struct vfio_user_write_multi head;
		struct vfio_user_write_multi_entry e[2];
	} __attribute__((packed)) wm = {
		.head.wr_cnt = 2,
		.e = {{.offset = 0x10, .region = 0, .count = 4, .data = {1, 2, 3, 4}},
		      {.offset = 0x20, .region = 0, .count = 4, .data = {5, 6, 7, 8}}},
	};
	struct wire_msg r;
	assert_int_equal(h_call(h, VFIO_USER_REGION_WRITE_MULTI, &wm, sizeof(wm), &r), 0);
	uint64_t done;
	memcpy(&done, r.payload, 8);
	wire_msg_release(&r);
	assert_int_equal(done, 2);
	assert_int_equal(h->bar0[0x10], 1);
	assert_int_equal(h->bar0[0x23], 8);
	wm.e[1].count = 9;
	assert_int_equal(h_call(h, VFIO_USER_REGION_WRITE_MULTI, &wm, sizeof(wm), NULL), -EINVAL);
	h_stop(h);
}

static void test_config_space(void **state)
{
	(void)state;
	struct harness *h = h_start(false);

	assert_int_equal(h_cfg_read(h, PCI_VENDOR_ID, 2), 0x1af4);
	assert_int_equal(h_cfg_read(h, PCI_DEVICE_ID, 2), 0x10f0);
	assert_int_equal(h_cfg_read(h, PCI_CLASS_REVISION, 4), 0xff000002);
	/* BAR sizing */
	h_cfg_write(h, PCI_BASE_ADDRESS_0, 4, 0xffffffff);
	assert_int_equal(h_cfg_read(h, PCI_BASE_ADDRESS_0, 4), ~(H_BAR0_SIZE - 1));
	h_cfg_write(h, PCI_BASE_ADDRESS_2, 4, 0xffffffff);
	assert_int_equal(h_cfg_read(h, PCI_BASE_ADDRESS_2, 4),
			 ~(H_BAR2_SIZE - 1) | PCI_BASE_ADDRESS_MEM_TYPE_64 |
				 PCI_BASE_ADDRESS_MEM_PREFETCH);
	assert_int_equal(h_cfg_read(h, PCI_BASE_ADDRESS_1, 4), 0);
	/* capabilities */
	assert_true(h_cfg_read(h, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	assert_int_not_equal(h_find_cap(h, PCI_CAP_ID_PM), 0);
	assert_int_not_equal(h_find_cap(h, PCI_CAP_ID_MSI), 0);
	assert_int_not_equal(h_find_cap(h, PCI_CAP_ID_EXP), 0);
	unsigned msix = h_find_cap(h, PCI_CAP_ID_MSIX);
	assert_int_not_equal(msix, 0);
	assert_int_equal(h_cfg_read(h, msix + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_QSIZE,
			 H_MSIX_VECTORS - 1);
	assert_int_equal(h_cfg_read(h, msix + PCI_MSIX_TABLE, 4), H_MSIX_TABLE | 4);
	assert_int_equal(h_cfg_read(h, msix + PCI_MSIX_PBA, 4), H_MSIX_PBA | 4);
	/* bus master follows the command register */
	assert_false(ferry_device_bus_master(h->dev));
	h_cfg_write(h, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	assert_true(ferry_device_bus_master(h->dev));
	/* MSI-X table is the library's: power-on masked, writable */
	uint32_t ctrl = 0;
	assert_int_equal(h_region_read(h, 4, H_MSIX_TABLE + 12, &ctrl, 4), 0);
	assert_int_equal(ctrl, PCI_MSIX_ENTRY_CTRL_MASKBIT);
	uint32_t data = 0x4242;
	assert_int_equal(h_region_write(h, 4, H_MSIX_TABLE + 16 + 8, &data, 4), 0);
	assert_int_equal(h_region_read(h, 4, H_MSIX_TABLE + 16 + 8, &ctrl, 4), 0);
	assert_int_equal(ctrl, 0x4242);
	/* accesses past the 4 KiB space fail */
	uint32_t x;
	assert_int_equal(h_region_read(h, FERRY_PCI_CONFIG, 4094, &x, 4), -EINVAL);
	h_stop(h);
}

static void test_reset(void **state)
{
	(void)state;
	struct harness *h = h_start(false);

	h_cfg_write(h, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	h_cfg_write(h, PCI_BASE_ADDRESS_0, 4, 0xfe000000);
	assert_true(ferry_device_bus_master(h->dev));
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_RESET, NULL, 0, NULL), 0);
	assert_int_equal(atomic_load(&h->resets), 1);
	assert_false(ferry_device_bus_master(h->dev));
	assert_int_equal(h_cfg_read(h, PCI_COMMAND, 2), 0);
	assert_int_equal(h_cfg_read(h, PCI_BASE_ADDRESS_0, 4), 0);
	/* reset carries no payload */
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_RESET, "x", 1, NULL), -EINVAL);
	/* the model's failure is reported, the library state is still reset */
	atomic_store(&h->reset_rc, -EIO);
	h_cfg_write(h, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_RESET, NULL, 0, NULL), -EIO);
	assert_int_equal(h_cfg_read(h, PCI_COMMAND, 2), 0);
	atomic_store(&h->reset_rc, 0);
	/* FLR through the PCIe capability does the same */
	unsigned exp = h_find_cap(h, PCI_CAP_ID_EXP);
	h_cfg_write(h, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
	h_cfg_write(h, exp + PCI_EXP_DEVCTL, 2,
		    h_cfg_read(h, exp + PCI_EXP_DEVCTL, 2) | PCI_EXP_DEVCTL_BCR_FLR);
	assert_int_equal(atomic_load(&h->resets), 3);
	assert_int_equal(h_cfg_read(h, PCI_COMMAND, 2), 0);
	h_stop(h);
}

/* A listening device serves one client after the other; device state is
 * kept across clients. */
static void test_listen_reconnect(void **state)
{
	(void)state;
	struct harness *h = h_new();
	struct ferry_device_info info;
	char dir[] = "/tmp/ferry-test-XXXXXX", path[128];

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/dev.sock", dir);
	/* a stale socket file from a server that died */
	struct sockaddr_un stale = {.sun_family = AF_UNIX};
	int sfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memcpy(stale.sun_path, path, strlen(path) + 1);
	assert_int_equal(bind(sfd, (struct sockaddr *)&stale, sizeof(stale)), 0);
	close(sfd);
	h_fill_info(h, &info);
	assert_int_equal(ferry_device_create(&info, &h->dev), 0);
	assert_int_equal(ferry_device_listen(h->dev, path), 0);
	assert_int_equal(ferry_device_listen(h->dev, path), -EBUSY);
	struct ferry_device *other;
	assert_int_equal(ferry_device_create(&info, &other), 0);
	assert_int_equal(ferry_device_listen(other, path), -EADDRINUSE); /* live, not stale */
	ferry_device_destroy(other);
	assert_int_equal(ferry_device_start(h->dev), 0);

	for (int round = 0; round < 3; round++) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		struct wire_transport *tr;
		struct wire_chan_opts o = {.name = "c", .timeout_ms = 5000};
		struct wire_caps mine, theirs;
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), twin;

		memcpy(sa.sun_path, path, strlen(path) + 1);
		assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(wire_transport_sock_create(fd, &tr), 0);
		assert_int_equal(wire_chan_create(tr, &o, &h->ch), 0);
		wire_caps_default(&mine);
		assert_int_equal(wire_version_client(h->ch, &mine, &theirs, &twin), 0);
		if (round == 0)
			h_cfg_write(h, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
		else
			assert_int_equal(h_cfg_read(h, PCI_COMMAND, 2), PCI_COMMAND_MASTER);
		h_disconnect(h);
	}
	ferry_device_stop(h->dev);
	ferry_device_destroy(h->dev);
	assert_int_equal(access(path, F_OK), -1); /* socket file removed */
	rmdir(dir);
	close(h->bar2_fd);
	free(h);
}

/* The caller's own event loop: poll_fd + dispatch. */
static atomic_bool client_done;

static void *client_thread_get_info(void *arg)
{
	struct wire_chan *ch = arg;
	void *ret = NULL;
	struct wire_caps mine, theirs;
	int twin;
	wire_caps_default(&mine);
	struct vfio_user_device_info in = {.argsz = 16};
	if (wire_version_client(ch, &mine, &theirs, &twin) < 0)
		ret = (void *)1;
	for (int i = 0; !ret && i < 20; i++)
		if (wire_call_simple(ch, VFIO_USER_DEVICE_GET_INFO, &in, sizeof(in), NULL) < 0)
			ret = (void *)2;
	atomic_store(&client_done, true);
	return ret;
}

static void test_poll_dispatch(void **state)
{
	(void)state;
	struct harness *h = h_new();
	struct ferry_device_info info;
	struct wire_transport *tr;
	struct wire_chan_opts o = {.name = "c", .timeout_ms = 5000};
	pthread_t t;
	void *ret;
	int sv[2];

	h_fill_info(h, &info);
	assert_int_equal(ferry_device_create(&info, &h->dev), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(ferry_device_attach_fd(h->dev, sv[0]), 0);
	assert_int_equal(wire_transport_sock_create(sv[1], &tr), 0);
	assert_int_equal(wire_chan_create(tr, &o, &h->ch), 0);
	atomic_store(&client_done, false);
	pthread_create(&t, NULL, client_thread_get_info, h->ch);
	int pfd = ferry_device_poll_fd(h->dev);
	assert_true(pfd >= 0);
	for (int i = 0; i < 500 && !atomic_load(&client_done); i++) {
		struct pollfd p = {.fd = pfd, .events = POLLIN};
		if (poll(&p, 1, 10) == 1)
			assert_int_equal(ferry_device_dispatch(h->dev), 0);
	}
	pthread_join(t, &ret);
	assert_int_equal(atomic_load(&h->attached), 1);
	assert_null(ret);
	h_stop(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_checks),
		cmocka_unit_test(test_version_and_info),
		cmocka_unit_test(test_region_info),
		cmocka_unit_test(test_region_access),
		cmocka_unit_test(test_config_space),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_listen_reconnect),
		cmocka_unit_test(test_poll_dispatch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
