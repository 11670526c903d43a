/*
 * ferry-dev-vram end to end: real device processes, the client library, the
 * vram workload (devices/vram/workload.h) on a buffer of "guest memory".
 *
 * Usage: vram_device PATH-TO-ferry-dev-vram (meson passes it), or set
 * FERRY_DEV_VRAM. Every device is started per case and stopped with SIGTERM
 * in teardown, where it must exit 0, so a crash fails one case.
 *
 * The migration cases move a device with its engine running and the
 * workload writing through the mmap during pre-copy, from one process to
 * another, and check the VRAM (crc of the frozen source against the
 * restored destination) and the workload on the destination: once with the
 * stream in messages, once through a mig_shm buffer.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include <ferry/client.h>
#include <ferry/client_migration.h>

#include "regs.h"
#include "stream.h"
#include "workload.h"
#include "device_proc.h"

#define VRAM_SIZE_ARG "16M"
#define VRAM_BYTES    (16ull << 20)
#define AREA_IOVA     (1ull << 30)
#define BAR0 VRAM_BAR_REGS
#define BAR2 VRAM_BAR_VRAM

static const char *dev_path;

struct dev {
	char dir[64];
	char sock[128];
	pid_t pid;
	struct ferry_client *c;
};

struct fixture {
	struct dev src, dst;
	uint8_t *area, *area2; /* guest memory of the source and destination hosts */
	uint64_t area_size;
	struct vram_workload wl, wl2;
	int shm_fd; /* the mig_shm buffer shared with both devices, or -1 */
};

static int start_dev(struct dev *d, const char *name)
{
	snprintf(d->dir, sizeof(d->dir), "/tmp/ferry-vram-XXXXXX");
	if (!mkdtemp(d->dir))
		return -errno;
	snprintf(d->sock, sizeof(d->sock), "%s/vram.sock", d->dir);
	d->pid = devproc_spawn(dev_path, "--socket", d->sock, "--size", VRAM_SIZE_ARG, "--name",
			       name, (char *)NULL);
	if (d->pid < 0)
		return -errno;
	return devproc_connect(&d->pid, d->sock, name, 20000, &d->c);
}

/* SIGTERM, then the device must exit 0 within 10 s (else SIGKILL). */
static int stop_dev(struct dev *d)
{
	int rc = 0;

	ferry_client_close(d->c);
	d->c = NULL;
	if (d->pid > 0) {
		rc = devproc_stop(d->pid);
		d->pid = -1;
	}
	unlink(d->sock);
	rmdir(d->dir);
	return rc;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->src.pid = f->dst.pid = -1;
	f->shm_fd = -1;
	f->area_size = vram_workload_area_size(VRAM_BYTES);
	f->area = calloc(1, f->area_size);
	f->area2 = calloc(1, f->area_size);
	assert_non_null(f->area);
	assert_non_null(f->area2);
	*state = f;
	assert_int_equal(start_dev(&f->src, "vram-src"), 0);
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int rc_src, rc_dst = 0;

	vram_workload_fini(&f->wl);
	vram_workload_fini(&f->wl2);
	rc_src = stop_dev(&f->src);
	if (f->dst.c || f->dst.pid > 0)
		rc_dst = stop_dev(&f->dst);
	free(f->area);
	free(f->area2);
	if (f->shm_fd >= 0)
		close(f->shm_fd);
	free(f);
	assert_int_equal(rc_src, 0);
	assert_int_equal(rc_dst, 0);
	return 0;
}

static uint32_t reg(struct dev *d, uint32_t off)
{
	uint32_t v = 0xdeadbeef;

	assert_int_equal(ferry_client_read32(d->c, BAR0, off, &v), 0);
	return v;
}

static uint64_t reg64(struct dev *d, uint32_t off)
{
	uint64_t v = 0;

	assert_int_equal(ferry_client_read64(d->c, BAR0, off, &v), 0);
	return v;
}

static uint64_t wait_engine(struct dev *d, uint64_t above)
{
	uint64_t w = 0;

	for (int i = 0; i < 5000 && (w = reg64(d, VRAM_REG_ENGINE_WRITES)) <= above; i++)
		devproc_sleep_ms(1);
	assert_true(w > above);
	return w;
}

static uint32_t crc_of(const uint8_t *p, uint64_t len)
{
	return (uint32_t)crc32(0, p, (uInt)len);
}

/* ---- cases ---- */

static void test_registers(void **state)
{
	struct fixture *f = *state;
	uint32_t b;

	assert_int_equal(reg(&f->src, VRAM_REG_ID), VRAM_ID_VALUE);
	assert_int_equal(reg(&f->src, VRAM_REG_VERSION), VRAM_VERSION_VALUE);
	assert_int_equal(reg64(&f->src, VRAM_REG_VRAM_SIZE), VRAM_BYTES);
	assert_int_equal(reg(&f->src, VRAM_REG_PAGE_SIZE), VRAM_PAGE_SIZE);
	assert_int_equal(reg(&f->src, VRAM_REG_CONTROL), 0);
	/* A misaligned register access is the device's error, not a crash. */
	assert_true(ferry_client_region_read(f->src.c, BAR0, 2, &b, 4) < 0);
	const struct ferry_region_desc *rd;

	assert_int_equal(ferry_client_region_info(f->src.c, BAR2, &rd), 0);
	assert_int_equal(rd->size, VRAM_BYTES);
	assert_true(rd->has_fd);
	assert_int_equal(rd->nr_areas, 1);
	assert_int_equal(rd->areas[0].size, VRAM_BYTES);
}

/* The workload writes through the mmap; the device sees the same bytes
 * (trapped reads, its CHECKSUM) and its engine writes are visible in the
 * mapping. */
static void test_workload_and_checksum(void **state)
{
	struct fixture *f = *state;
	struct vram_workload_config cfg = { .engine_rate = 20000 };
	struct vram_workload_stats st;
	uint32_t dev_crc, word;

	assert_int_equal(vram_workload_init(&f->wl, f->src.c, f->area, AREA_IOVA, f->area_size,
					    &cfg), 0);
	assert_int_equal(vram_workload_run(&f->wl, 1000), 1000);
	wait_engine(&f->src, 100);
	assert_int_equal(vram_workload_verify(&f->wl), 0);
	vram_workload_stats(&f->wl, &st);
	assert_int_equal(st.writes, 1000);
	assert_true(st.pages_used > 500);
	assert_int_equal(st.failures, 0);

	/* Snapshot: engine off, device crc == crc of our mapping. */
	assert_int_equal(vram_workload_checksum(&f->wl, true, &dev_crc), 0);
	assert_false(reg(&f->src, VRAM_REG_STATUS) & VRAM_STS_ENGINE_ACTIVE);
	assert_int_equal(dev_crc, crc_of(f->wl.vram, VRAM_BYTES));
	assert_int_equal(reg(&f->src, VRAM_REG_CSUM_COUNT), 1);

	/* Trapped access and the mapping are one memory. */
	memcpy(&word, f->wl.vram + VRAM_BYTES - 4, 4);
	uint32_t via_msg = ~word;

	assert_int_equal(ferry_client_region_read(f->src.c, BAR2, VRAM_BYTES - 4, &via_msg, 4), 0);
	assert_int_equal(via_msg, word);
	word = 0xa5a5a5a5;
	assert_int_equal(ferry_client_region_write(f->src.c, BAR2, 8, &word, 4), 0);
	assert_memory_equal(f->wl.vram + 8, &word, 4);
}

/* The workload's state is its guest memory: a second attach (as on a
 * migration destination) carries on; a damaged state is refused. */
static void test_workload_reattach(void **state)
{
	struct fixture *f = *state;
	struct vram_workload_config cfg = { .no_engine = true };

	assert_int_equal(vram_workload_init(&f->wl, f->src.c, f->area, AREA_IOVA, f->area_size,
					    &cfg), 0);
	vram_workload_run(&f->wl, 300);
	vram_workload_fini(&f->wl);

	memcpy(f->area2, f->area, f->area_size);
	assert_int_equal(vram_workload_attach(&f->wl2, f->src.c, f->area2, AREA_IOVA,
					      f->area_size, NULL), 0);
	assert_int_equal(vram_workload_verify(&f->wl2), 0);
	vram_workload_run(&f->wl2, 300);
	assert_int_equal(vram_workload_verify(&f->wl2), 0);
	vram_workload_fini(&f->wl2);

	/* A page the device (through a trapped write) changed behind the
	 * workload's back is reported. */
	struct vram_wl_shared *sh = (struct vram_wl_shared *)f->area2;
	uint64_t *last = (uint64_t *)(f->area2 + VRAM_WL_HDR), page = 0;

	while (!last[page])
		page++;
	uint32_t junk = 0;

	assert_int_equal(ferry_client_region_write(f->src.c, BAR2,
						   (sh->first_page + page) * VRAM_PAGE_SIZE + 100,
						   &junk, 4), 0);
	assert_int_equal(vram_workload_attach(&f->wl2, f->src.c, f->area2, AREA_IOVA,
					      f->area_size, NULL), 0);
	assert_int_equal(vram_workload_verify(&f->wl2), 1);
	vram_workload_fini(&f->wl2);

	/* Damaged guest state. */
	sh->npages = VRAM_BYTES; /* more pages than the VRAM has */
	assert_int_equal(vram_workload_attach(&f->wl2, f->src.c, f->area2, AREA_IOVA,
					      f->area_size, NULL), -EINVAL);
	sh->magic ^= 1;
	assert_int_equal(vram_workload_attach(&f->wl2, f->src.c, f->area2, AREA_IOVA,
					      f->area_size, NULL), -EINVAL);
}

/* DEVICE_RESET: registers back to reset values, engine stopped, VRAM kept. */
static void test_reset(void **state)
{
	struct fixture *f = *state;
	struct vram_workload_config cfg = { .engine_rate = 5000 };

	assert_int_equal(vram_workload_init(&f->wl, f->src.c, f->area, AREA_IOVA, f->area_size,
					    &cfg), 0);
	vram_workload_run(&f->wl, 200);
	wait_engine(&f->src, 0);
	assert_int_equal(ferry_client_reset(f->src.c), 0);
	assert_int_equal(reg(&f->src, VRAM_REG_CONTROL), 0);
	assert_int_equal(reg64(&f->src, VRAM_REG_ENGINE_WRITES), 0);
	assert_int_equal(reg(&f->src, VRAM_REG_ENGINE_RATE), VRAM_RATE_DEFAULT);
	assert_int_equal(vram_workload_verify(&f->wl), 0);
}

/* Forwards what the source has now: until a 0 read, or in pre-copy until
 * @budget bytes went (a device whose engine keeps dirtying pages may never
 * read 0 while it runs: the library fills each read across the model's
 * round boundaries, so a VMM bounds its rounds, as here). */
static uint64_t forward_budget(struct fixture *f, uint8_t *buf, size_t len, uint64_t budget)
{
	uint64_t total = 0;
	size_t got;

	do {
		if (f->shm_fd >= 0) { /* the stream through the shared buffer, no copy here */
			uint32_t n = 0;
			assert_int_equal(ferry_client_mig_read_shm(f->src.c, 0, (uint32_t)len, &n), 0);
			if (n)
				assert_int_equal(ferry_client_mig_write_shm(f->dst.c, 0, n), 0);
			got = n;
		} else {
			assert_int_equal(ferry_client_mig_read(f->src.c, buf, len, &got), 0);
			if (got)
				assert_int_equal(ferry_client_mig_write(f->dst.c, buf, got), 0);
		}
		total += got;
	} while (got && total < budget);
	return total;
}

static uint64_t forward(struct fixture *f, uint8_t *buf, size_t len)
{
	return forward_budget(f, buf, len, UINT64_MAX);
}

static void migrate(struct fixture *f, bool use_shm)
{
	struct vram_workload_config cfg = { .engine_rate = 20000 };
	uint64_t flags = 0, sc = 0, sent;
	const size_t chunk = 1 << 20;
	uint8_t *buf;

	assert_int_equal(ferry_client_mig_flags(f->src.c, &flags), 0);
	assert_int_equal(flags, VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P |
				VFIO_MIGRATION_PRE_COPY);
	assert_int_equal(start_dev(&f->dst, "vram-dst"), 0);
	buf = malloc(chunk);
	assert_non_null(buf);
	if (use_shm) {
		assert_int_equal(ferry_mig_shm_create(chunk, &f->shm_fd), 0);
		assert_int_equal(ferry_client_mig_shm_setup(f->src.c, f->shm_fd, chunk), 0);
		assert_int_equal(ferry_client_mig_shm_setup(f->dst.c, f->shm_fd, chunk), 0);
	}

	assert_int_equal(vram_workload_init(&f->wl, f->src.c, f->area, AREA_IOVA, f->area_size,
					    &cfg), 0);
	vram_workload_run(&f->wl, 500);
	wait_engine(&f->src, 100);

	assert_int_equal(ferry_client_mig_set_state(f->dst.c, FERRY_MIG_RESUMING), 0);
	assert_int_equal(ferry_client_mig_set_state(f->src.c, FERRY_MIG_PRE_COPY), 0);
	/* The initial pass: every page, holes as 16-byte zero records. Then
	 * rounds until the engine (20000 pages/s) leaves a round start with
	 * nothing dirty, or the budget. Either way the pass is done: how much
	 * more depends on scheduling, so only that is checked. */
	sent = forward_budget(f, buf, chunk, 2 * VRAM_BYTES);
	assert_true(sent >= VRAM_BYTES / VRAM_PAGE_SIZE * VRAM_ZERO_REC_LEN);
	uint64_t initial = 1, dirty;

	assert_int_equal(ferry_client_mig_precopy_info(f->src.c, &initial, &dirty), 0);
	assert_int_equal(initial, 0);
	for (int round = 0; round < 5; round++) {
		vram_workload_run(&f->wl, 50); /* mmap writes the device cannot see */
		devproc_sleep_ms(10);
		forward_budget(f, buf, chunk, VRAM_BYTES / 2);
	}
	vram_workload_run(&f->wl, 50);
	/* Switchover: workload paused from here. */
	assert_int_equal(ferry_client_mig_set_state(f->src.c, FERRY_MIG_STOP_COPY), 0);
	if (ferry_client_mig_data_size(f->src.c, &sc) < 0)
		sc = 0;
	sent = forward(f, buf, chunk);
	if (sc)
		assert_int_equal(sent, sc);
	uint32_t src_crc = crc_of(f->wl.vram, VRAM_BYTES); /* frozen: stable */

	assert_int_equal(ferry_client_mig_set_state(f->dst.c, FERRY_MIG_STOP), 0);
	assert_int_equal(ferry_client_mig_set_state(f->src.c, FERRY_MIG_STOP), 0);

	/* Restored and still stopped: the destination's VRAM (seen through
	 * the mapping: a stopped device answers no BAR access) is the source's. */
	int err = 0;
	uint8_t *dst_vram = ferry_client_region_map(f->dst.c, BAR2, &err);

	assert_non_null(dst_vram);
	assert_int_equal(crc_of(dst_vram, VRAM_BYTES), src_crc);

	/* The destination host: guest memory copied, device running, workload
	 * attached. */
	assert_int_equal(ferry_client_mig_set_state(f->dst.c, FERRY_MIG_RUNNING), 0);
	memcpy(f->area2, f->area, f->area_size);
	assert_int_equal(vram_workload_attach(&f->wl2, f->dst.c, f->area2, AREA_IOVA,
					      f->area_size, NULL), 0);
	assert_int_equal(reg64(&f->dst, VRAM_REG_GENERATION), 1);
	assert_int_equal(vram_workload_verify(&f->wl2), 0);
	vram_workload_run(&f->wl2, 100);
	assert_int_equal(vram_workload_verify(&f->wl2), 0);
	wait_engine(&f->dst, reg64(&f->dst, VRAM_REG_ENGINE_WRITES)); /* carries on */
	free(buf);
}

/* The stream in MIG_DATA_READ / MIG_DATA_WRITE messages. */
static void test_migrate(void **state)
{
	migrate(*state, false);
}

/* The same through a mig_shm buffer both devices map. */
static void test_migrate_shm(void **state)
{
	migrate(*state, true);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_workload_and_checksum, setup, teardown),
		cmocka_unit_test_setup_teardown(test_workload_reattach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_shm, setup, teardown),
	};

	dev_path = argc > 1 ? argv[1] : getenv("FERRY_DEV_VRAM");
	if (!dev_path) {
		fprintf(stderr, "usage: %s PATH-TO-ferry-dev-vram\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
