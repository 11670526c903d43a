/*
 * ferry-dev-dma end to end: a real device process, the client library, the
 * guest driver on a 64 MiB memfd of "guest memory".
 *
 * Usage: dma_device PATH-TO-ferry-dev-dma (meson passes it), or set
 * FERRY_DEV_DMA. Every case starts its own device and, in teardown, stops
 * it with SIGTERM and requires exit status 0, so a crash fails one case.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <cmocka.h>

#include <ferry/client.h>
#include <ferry/client_power.h>

#include "driver.h"
#include "regs.h"
#include "device_proc.h"

#define GUEST_SIZE  (64ull << 20)
#define GUEST_IOVA  (4ull << 30)  /* guest memory at 4 GiB */
#define AREA_OFF    (4ull << 20)  /* the driver's area inside it */
#define AREA_SIZE   (48ull << 20)
#define OP_TIMEOUT_MS 20000
#define BAR0 VFIO_PCI_BAR0_REGION_INDEX
#define BAR2 VFIO_PCI_BAR2_REGION_INDEX
#define CFG  VFIO_PCI_CONFIG_REGION_INDEX

static const char *dev_path;

struct fixture {
	char dir[64];
	char sock[128];
	pid_t pid;
	pid_t extra_pid;   /* a second device a case started, or 0 */
	struct ferry_client *c;
	int mem_fd;
	uint8_t *mem;
	struct dma_driver drv;
};

static pid_t spawn_device(const char *sock)
{
	return devproc_spawn(dev_path, "--socket", sock, (char *)NULL);
}

static int connect_device(struct fixture *f)
{
	return devproc_connect(&f->pid, f->sock, "dma-test", 10000, &f->c);
}

static int map_guest(struct fixture *f)
{
	f->mem_fd = memfd_create("dma-test-guest", MFD_CLOEXEC);
	if (f->mem_fd < 0 || ftruncate(f->mem_fd, GUEST_SIZE) < 0)
		return -errno;
	f->mem = mmap(NULL, GUEST_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->mem_fd, 0);
	if (f->mem == MAP_FAILED) {
		f->mem = NULL;
		return -errno;
	}
	return ferry_client_dma_map(f->c, GUEST_IOVA, GUEST_SIZE,
				    VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, f->mem_fd, 0,
				    f->mem);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->mem_fd = -1;
	f->drv.irq_fd = -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-dma-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->sock, sizeof(f->sock), "%s/dma.sock", f->dir);
	f->pid = spawn_device(f->sock);
	assert_true(f->pid > 0);
	*state = f;
	assert_int_equal(connect_device(f), 0);
	assert_int_equal(map_guest(f), 0);
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int rc;

	if (!f)
		return 0;
	if (f->c)
		dma_driver_fini(&f->drv);
	ferry_client_close(f->c);
	rc = devproc_stop(f->pid);
	if (f->extra_pid > 0) {
		kill(f->extra_pid, SIGKILL);
		waitpid(f->extra_pid, NULL, 0);
	}
	if (f->mem)
		munmap(f->mem, GUEST_SIZE);
	if (f->mem_fd >= 0)
		close(f->mem_fd);
	unlink(f->sock);
	rmdir(f->dir);
	free(f);
	assert_int_equal(rc, 0);
	return 0;
}

static uint32_t reg(struct fixture *f, uint32_t off)
{
	uint32_t v = 0xdeadbeef;

	assert_int_equal(ferry_client_read32(f->c, BAR0, off, &v), 0);
	return v;
}

static uint64_t reg64(struct fixture *f, uint32_t off)
{
	uint64_t v = 0;

	assert_int_equal(ferry_client_read64(f->c, BAR0, off, &v), 0);
	return v;
}

static void init_driver(struct fixture *f, const struct dma_driver_config *cfg)
{
	assert_int_equal(dma_driver_init(&f->drv, f->c, f->mem, GUEST_IOVA, AREA_OFF, AREA_SIZE,
					 cfg), 0);
}

static void expect_clean(struct fixture *f, uint64_t verified, uint64_t bad_ok)
{
	struct dma_driver_stats s;

	dma_driver_stats(&f->drv, &s);
	assert_int_equal(s.failures, 0);
	assert_int_equal(s.in_flight, 0);
	assert_int_equal(s.verified, verified);
	assert_int_equal(s.bad_ok, bad_ok);
	assert_int_equal(dma_driver_check(&f->drv), 0);
}

/* ---- cases ---- */

/* What the device offers: regions, sparse mmap of BAR2, IRQs, PCI ids. */
static void test_identity(void **state)
{
	struct fixture *f = *state;
	const struct ferry_region_desc *r;
	struct ferry_irq_desc irq;
	uint16_t ids[2];
	uint32_t class_rev, v;
	uint8_t *scratch;
	int err = 0;

	assert_int_equal(ferry_client_region_info(f->c, BAR0, &r), 0);
	assert_int_equal(r->size, DMA_BAR_REGS_SIZE);
	assert_int_equal(ferry_client_region_info(f->c, BAR2, &r), 0);
	assert_int_equal(r->size, DMA_BAR_SCRATCH_SIZE);
	assert_true(r->has_fd);
	assert_int_equal(r->nr_areas, 1);
	assert_int_equal(r->areas[0].offset, 0);
	assert_int_equal(r->areas[0].size, DMA_BAR_SCRATCH_SIZE);

	assert_int_equal(ferry_client_irq_info(f->c, VFIO_PCI_MSIX_IRQ_INDEX, &irq), 0);
	assert_int_equal(irq.count, DMA_MSIX_VECTORS);
	assert_int_equal(ferry_client_irq_info(f->c, VFIO_PCI_MSI_IRQ_INDEX, &irq), 0);
	assert_int_equal(irq.count, 1);
	assert_int_equal(ferry_client_irq_info(f->c, VFIO_PCI_INTX_IRQ_INDEX, &irq), 0);
	assert_int_equal(irq.count, 1);

	assert_int_equal(ferry_client_region_read(f->c, CFG, PCI_VENDOR_ID, ids, sizeof(ids)), 0);
	assert_int_equal(ids[0], DMA_PCI_VENDOR_ID);
	assert_int_equal(ids[1], DMA_PCI_DEVICE_ID);
	assert_int_equal(ferry_client_read32(f->c, CFG, PCI_CLASS_REVISION, &class_rev), 0);
	assert_int_equal(class_rev >> 8, DMA_PCI_CLASS);

	assert_int_equal(reg(f, DMA_REG_ID), DMA_ID_VALUE);
	assert_int_equal(reg(f, DMA_REG_VERSION), DMA_VERSION_VALUE);
	assert_int_equal(reg(f, DMA_REG_MAX_XFER), DMA_MAX_XFER);
	/* Odd widths are refused, undefined registers read 0. */
	assert_true(ferry_client_region_read(f->c, BAR0, DMA_REG_ID, &v, 2) < 0);
	assert_int_equal(reg(f, 0x7fc), 0);

	/* BAR2: the mapping and trapped accesses see the same bytes. */
	scratch = ferry_client_region_map(f->c, BAR2, &err);
	assert_non_null(scratch);
	memcpy(scratch + 0x100, "ferry", 5);
	assert_int_equal(ferry_client_region_read(f->c, BAR2, 0x100, &v, 4), 0);
	assert_memory_equal(&v, "ferr", 4);
	v = 0x12345678;
	assert_int_equal(ferry_client_region_write(f->c, BAR2, DMA_BAR_SCRATCH_SIZE - 4, &v, 4), 0);
	assert_memory_equal(scratch + DMA_BAR_SCRATCH_SIZE - 4, &v, 4);
	assert_true(ferry_client_region_write(f->c, BAR2, DMA_BAR_SCRATCH_SIZE - 2, &v, 4) < 0);
	ferry_client_region_unmap(f->c, BAR2);
}

/* 20,000 random ops, every destination checked byte by byte. */
static void test_workload(void **state)
{
	struct fixture *f = *state;
	struct dma_driver_stats s;

	init_driver(f, NULL);
	assert_int_equal(dma_driver_run(&f->drv, 20000, OP_TIMEOUT_MS), 0);
	expect_clean(f, 20000, 0);
	dma_driver_stats(&f->drv, &s);
	assert_true(s.irqs > 0);
	assert_int_equal(reg64(f, DMA_REG_COMPLETED), 20000);
	assert_int_equal(reg64(f, DMA_REG_ERRORS), 0);
	assert_true(reg64(f, DMA_REG_IRQS) > 0);
	assert_int_equal(reg(f, DMA_REG_STATUS), DMA_STS_RUNNING);
}

/* Polling mode, one-slot ring, coalescing of 1: the edges of the ring logic. */
static void test_small_ring_no_irq(void **state)
{
	struct fixture *f = *state;
	const struct dma_driver_config cfg = {
		.ring_entries = 1, .buf_size = 4096, .irq_coalesce = 1, .no_irq = true,
	};

	init_driver(f, &cfg);
	assert_int_equal(dma_driver_run(&f->drv, 500, OP_TIMEOUT_MS), 0);
	expect_clean(f, 500, 0);
}

/* Bad descriptors complete with the right error; the device keeps going. */
static void test_bad_descriptors(void **state)
{
	struct fixture *f = *state;
	unsigned bad = 0;

	init_driver(f, NULL);
	assert_int_equal(dma_driver_run(&f->drv, 300, OP_TIMEOUT_MS), 0);
	for (int round = 0; round < 6; round++) {
		int n = dma_driver_submit_bad(&f->drv, 3);

		assert_true(n > 0);
		bad += (unsigned)n;
		assert_true(dma_driver_submit(&f->drv, 20) >= 0);
		assert_int_equal(dma_driver_drain(&f->drv, OP_TIMEOUT_MS), 0);
	}
	assert_int_equal(dma_driver_check(&f->drv), 0); /* device counters settled */
	assert_int_equal(reg64(f, DMA_REG_ERRORS), bad);
	assert_true(reg(f, DMA_REG_STATUS) & DMA_STS_ERR_DESC);
	assert_true(reg(f, DMA_REG_STATUS) & DMA_STS_RUNNING);

	/* A doorbell beyond the ring is ignored and flagged. */
	assert_int_equal(ferry_client_write32(f->c, BAR0, DMA_REG_RING_TAIL,
					      reg(f, DMA_REG_RING_HEAD) + 100000), 0);
	assert_true(reg(f, DMA_REG_STATUS) & DMA_STS_ERR_DOORBELL);
	/* Error bits are write-1-to-clear. */
	assert_int_equal(ferry_client_write32(f->c, BAR0, DMA_REG_STATUS, DMA_STS_ERR_MASK), 0);
	assert_int_equal(reg(f, DMA_REG_STATUS), DMA_STS_RUNNING);

	assert_int_equal(dma_driver_run(&f->drv, 2000, OP_TIMEOUT_MS), 0);
	{
		struct dma_driver_stats s;

		dma_driver_stats(&f->drv, &s);
		expect_clean(f, s.submitted - bad, bad);
	}
}

/* Clearing ENABLE mid-run pauses the engine; setting it resumes it, and
 * every op still completes exactly once. Same with bus mastering. */
static void test_pause_resume(void **state)
{
	struct fixture *f = *state;
	uint16_t cmd;
	uint32_t head;
	int n;

	init_driver(f, NULL);
	n = dma_driver_submit(&f->drv, 10000);
	assert_true(n > 0);
	assert_int_equal(ferry_client_write32(f->c, BAR0, DMA_REG_CONTROL, 0), 0);
	assert_false(reg(f, DMA_REG_STATUS) & DMA_STS_RUNNING);
	head = reg(f, DMA_REG_RING_HEAD);
	devproc_sleep_ms(50);
	assert_int_equal(reg(f, DMA_REG_RING_HEAD), head);
	assert_int_equal(ferry_client_write32(f->c, BAR0, DMA_REG_CONTROL, DMA_CTRL_ENABLE), 0);
	assert_int_equal(dma_driver_drain(&f->drv, OP_TIMEOUT_MS), 0);

	assert_int_equal(ferry_client_region_read(f->c, CFG, PCI_COMMAND, &cmd, 2), 0);
	cmd &= (uint16_t)~PCI_COMMAND_MASTER;
	assert_int_equal(ferry_client_region_write(f->c, CFG, PCI_COMMAND, &cmd, 2), 0);
	head = reg(f, DMA_REG_RING_HEAD);
	assert_true(dma_driver_submit(&f->drv, 50) > 0);
	devproc_sleep_ms(50);
	assert_int_equal(reg(f, DMA_REG_RING_HEAD), head);
	cmd |= PCI_COMMAND_MASTER;
	assert_int_equal(ferry_client_region_write(f->c, CFG, PCI_COMMAND, &cmd, 2), 0);
	assert_int_equal(dma_driver_drain(&f->drv, OP_TIMEOUT_MS), 0);
	expect_clean(f, (uint64_t)n + 50, 0);
}

/* DEVICE_RESET with a full ring: registers back to zero, then a fresh
 * driver works. CONTROL.RESET mid-run the same way. */
static void test_reset_mid_run(void **state)
{
	struct fixture *f = *state;

	init_driver(f, NULL);
	assert_true(dma_driver_submit(&f->drv, 10000) > 0);
	assert_int_equal(ferry_client_reset(f->c), 0);
	assert_int_equal(reg(f, DMA_REG_CONTROL), 0);
	assert_int_equal(reg(f, DMA_REG_STATUS), 0);
	assert_int_equal(reg64(f, DMA_REG_RING_BASE), 0);
	assert_int_equal(reg(f, DMA_REG_RING_SIZE), 0);
	assert_int_equal(reg(f, DMA_REG_RING_HEAD), 0);
	assert_int_equal(reg(f, DMA_REG_RING_TAIL), 0);
	assert_int_equal(reg64(f, DMA_REG_COMPLETED), 0);
	dma_driver_fini(&f->drv);

	init_driver(f, NULL);
	assert_int_equal(dma_driver_run(&f->drv, 3000, OP_TIMEOUT_MS), 0);
	assert_true(dma_driver_submit(&f->drv, 10000) > 0);
	assert_int_equal(ferry_client_write32(f->c, BAR0, DMA_REG_CONTROL, DMA_CTRL_RESET), 0);
	assert_int_equal(reg(f, DMA_REG_RING_HEAD), 0);
	dma_driver_fini(&f->drv);

	init_driver(f, NULL);
	assert_int_equal(dma_driver_run(&f->drv, 3000, OP_TIMEOUT_MS), 0);
	expect_clean(f, 3000, 0);
}

/* A second driver attaches to the state in guest memory (as after a
 * migration) and finishes what the first one queued. */
static void test_attach(void **state)
{
	struct fixture *f = *state;
	struct dma_driver second;
	struct dma_driver_stats s;
	int n;

	init_driver(f, NULL);
	assert_int_equal(dma_driver_run(&f->drv, 1000, OP_TIMEOUT_MS), 0);
	n = dma_driver_submit(&f->drv, 200);
	assert_true(n > 0);
	dma_driver_fini(&f->drv);

	assert_int_equal(dma_driver_attach(&second, f->c, f->mem, GUEST_IOVA, AREA_OFF, AREA_SIZE,
					   NULL), 0);
	assert_int_equal(dma_driver_run(&second, 1000, OP_TIMEOUT_MS), 0);
	dma_driver_stats(&second, &s);
	assert_int_equal(s.verified, 2000 + (uint64_t)n);
	assert_int_equal(s.failures, 0);
	assert_int_equal(dma_driver_check(&second), 0);
	f->drv = second;

	/* Wrong geometry is refused. */
	assert_int_equal(dma_driver_attach(&second, f->c, f->mem, GUEST_IOVA, AREA_OFF,
					   AREA_SIZE / 2, &(struct dma_driver_config){.no_irq = true}),
			 -EINVAL);
}

/* Guest memory vanishes under a busy engine: no crash; a remap, reset and
 * re-init bring it back. */
static void test_unmap_under_load(void **state)
{
	struct fixture *f = *state;

	init_driver(f, NULL);
	assert_true(dma_driver_submit(&f->drv, 10000) > 0);
	assert_int_equal(ferry_client_dma_unmap(f->c, GUEST_IOVA, GUEST_SIZE), 0);
	devproc_sleep_ms(20);
	/* The engine halted on the ring or drained into faults; either way it
	 * still answers. */
	(void)reg(f, DMA_REG_STATUS);
	dma_driver_fini(&f->drv);

	assert_int_equal(ferry_client_dma_map(f->c, GUEST_IOVA, GUEST_SIZE,
					      VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
					      f->mem_fd, 0, f->mem), 0);
	init_driver(f, NULL);
	assert_int_equal(dma_driver_run(&f->drv, 2000, OP_TIMEOUT_MS), 0);
	expect_clean(f, 2000, 0);
}

/* Guest memory mapped without an fd: every device access is a DMA_READ /
 * DMA_WRITE message the client library serves. Also a reset while the
 * worker waits for such a reply. */
static void test_message_mode(void **state)
{
	struct fixture *f = *state;
	const struct dma_driver_config cfg = { .ring_entries = 64, .buf_size = 16384 };

	assert_int_equal(ferry_client_dma_unmap(f->c, GUEST_IOVA, GUEST_SIZE), 0);
	assert_int_equal(ferry_client_dma_map(f->c, GUEST_IOVA, GUEST_SIZE,
					      VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
					      -1, 0, f->mem), 0);
	init_driver(f, &cfg);
	assert_int_equal(dma_driver_run(&f->drv, 2000, OP_TIMEOUT_MS), 0);
	expect_clean(f, 2000, 0);

	assert_true(dma_driver_submit(&f->drv, 64) > 0);
	assert_int_equal(ferry_client_reset(f->c), 0);
	assert_int_equal(reg(f, DMA_REG_RING_HEAD), 0);
	dma_driver_fini(&f->drv);
	init_driver(f, &cfg);
	assert_int_equal(dma_driver_run(&f->drv, 500, OP_TIMEOUT_MS), 0);
	expect_clean(f, 500, 0);
}

/* Low power and back (when the server offers it): the engine carries on. */
static void test_low_power(void **state)
{
	struct fixture *f = *state;
	int rc;

	init_driver(f, NULL);
	assert_int_equal(dma_driver_run(&f->drv, 1000, OP_TIMEOUT_MS), 0);
	rc = ferry_client_low_power_enter(f->c);
	if (rc == -EOPNOTSUPP)
		skip();
	assert_int_equal(rc, 0);
	devproc_sleep_ms(20);
	assert_int_equal(ferry_client_low_power_exit(f->c), 0);
	assert_int_equal(dma_driver_run(&f->drv, 1000, OP_TIMEOUT_MS), 0);
	expect_clean(f, 2000, 0);
}

/* The backend convention's --fd=FDNUM: an already connected socket; the
 * device exits 0 by itself when that client leaves. */
static void test_fd_handoff(void **state)
{
	struct ferry_client_options opts = { .name = "dma-test-fd", .timeout_ms = 10000 };
	struct fixture *f = *state;
	char arg[32];
	int sv[2], status = -1;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		snprintf(arg, sizeof(arg), "--fd=%d", sv[1]);
		execl(dev_path, dev_path, arg, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	f->extra_pid = pid;

	/* The fixture's device stays idle; this case drives the second one. */
	dma_driver_fini(&f->drv);
	ferry_client_close(f->c);
	f->c = NULL;
	assert_int_equal(ferry_client_connect_fd(sv[0], &opts, &f->c), 0);
	assert_int_equal(ferry_client_dma_map(f->c, GUEST_IOVA, GUEST_SIZE,
					      VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
					      f->mem_fd, 0, f->mem), 0);
	init_driver(f, NULL);
	assert_int_equal(dma_driver_run(&f->drv, 1000, OP_TIMEOUT_MS), 0);
	expect_clean(f, 1000, 0);
	dma_driver_fini(&f->drv);
	ferry_client_close(f->c);
	f->c = NULL;

	for (int i = 0; i < 1000 && waitpid(pid, &status, WNOHANG) != pid; i++)
		devproc_sleep_ms(10);
	if (!WIFEXITED(status)) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	f->extra_pid = 0;
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_workload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_small_ring_no_irq, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_descriptors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_mid_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_attach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unmap_under_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_message_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_low_power, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fd_handoff, setup, teardown),
	};

	dev_path = argc > 1 ? argv[1] : getenv("FERRY_DEV_DMA");
	if (!dev_path) {
		fprintf(stderr, "usage: %s PATH-TO-ferry-dev-dma (or set FERRY_DEV_DMA)\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
