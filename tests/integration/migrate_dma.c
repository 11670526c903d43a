/*
 * ferry-dev-dma live migration, end to end: two device processes A (the
 * source, dma.sock) and B (the destination, dma2.sock), the client library's
 * migration calls, and the guest driver (devices/dma/driver.h).
 *
 * Guest memory is one memfd this process owns and DMA-maps into both
 * devices: that is memory already migrated, so only the device state moves
 * through the migration stream. Once A has stopped for good, its mapping is
 * removed (a VMM discards the source's memory too): A must never run the
 * shared ring again.
 *
 * Usage: migrate_dma PATH-TO-ferry-dev-dma PATH-TO-ferry (meson passes
 * both). Every case starts its own two devices and, in teardown, stops them
 * with SIGTERM and requires exit status 0, so a crash fails one case.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/vfio.h>
#include <cmocka.h>
#include <zlib.h>

#include <ferry/client.h>
#include <ferry/client_migration.h>

#include "driver.h"
#include "mig_stream.h"
#include "regs.h"
#include "device_proc.h"

#define GUEST_SIZE    (64ull << 20)
#define GUEST_IOVA    (4ull << 30)  /* guest memory at 4 GiB */
#define MAILBOX_OFF   (1ull << 20)  /* the peer doorbell page the "host" watches */
#define AREA_OFF      (4ull << 20)  /* the driver's area */
#define AREA_SIZE     (48ull << 20)
#define OP_TIMEOUT_MS 20000
#define READ_CHUNK    1000u         /* MIG_DATA_READ size: several per record */
#define WRITE_CHUNK   777u          /* MIG_DATA_WRITE size: boundaries anywhere */
#define MAX_STREAM    (1u << 20)
#define BAR0 VFIO_PCI_BAR0_REGION_INDEX

static const char *dev_path, *ferry_path;

struct dev {
	char sock[160];
	pid_t pid;
	struct ferry_client *c;
};

struct stream {
	uint8_t *buf;
	size_t len;
};

struct fixture {
	char dir[64];
	struct dev a, b;
	int mem_fd;
	uint8_t *mem;
	struct dma_driver drv;
	bool is_drv_up;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- processes ---- */

static pid_t spawn_device(const char *sock)
{
	return devproc_spawn(dev_path, "--socket", sock, (char *)NULL);
}

static int connect_device(struct dev *d, const char *name)
{
	return devproc_connect(&d->pid, d->sock, name, 10000, &d->c);
}

static int map_into(struct fixture *f, struct dev *d)
{
	return ferry_client_dma_map(d->c, GUEST_IOVA, GUEST_SIZE,
				    VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, f->mem_fd, 0,
				    f->mem);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->mem_fd = -1;
	f->drv.irq_fd = -1;
	*state = f;
	snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-migdma-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->a.sock, sizeof(f->a.sock), "%s/dma.sock", f->dir);
	snprintf(f->b.sock, sizeof(f->b.sock), "%s/dma2.sock", f->dir);
	f->a.pid = spawn_device(f->a.sock);
	f->b.pid = spawn_device(f->b.sock);
	assert_true(f->a.pid > 0 && f->b.pid > 0);
	assert_int_equal(connect_device(&f->a, "dma-A"), 0);
	assert_int_equal(connect_device(&f->b, "dma-B"), 0);

	f->mem_fd = memfd_create("migrate-dma-guest", MFD_CLOEXEC);
	assert_true(f->mem_fd >= 0);
	assert_int_equal(ftruncate(f->mem_fd, GUEST_SIZE), 0);
	f->mem = mmap(NULL, GUEST_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->mem_fd, 0);
	assert_true(f->mem != MAP_FAILED);
	assert_int_equal(map_into(f, &f->a), 0);
	assert_int_equal(map_into(f, &f->b), 0);
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int rc_a, rc_b;

	if (!f)
		return 0;
	if (f->is_drv_up)
		dma_driver_fini(&f->drv);
	ferry_client_close(f->a.c);
	ferry_client_close(f->b.c);
	rc_a = devproc_stop(f->a.pid);
	rc_b = devproc_stop(f->b.pid);
	if (f->mem && f->mem != MAP_FAILED)
		munmap(f->mem, GUEST_SIZE);
	if (f->mem_fd >= 0)
		close(f->mem_fd);
	unlink(f->a.sock);
	unlink(f->b.sock);
	rmdir(f->dir);
	free(f);
	assert_int_equal(rc_a, 0);
	assert_int_equal(rc_b, 0);
	return 0;
}

/* ---- device access ---- */

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

static void set_state(struct dev *d, enum ferry_mig_state s)
{
	enum ferry_mig_state got;

	assert_int_equal(ferry_client_mig_set_state(d->c, s), 0);
	assert_int_equal(ferry_client_mig_get_state(d->c, &got), 0);
	assert_int_equal(got, s);
}

static enum ferry_mig_state get_state(struct dev *d)
{
	enum ferry_mig_state s;

	assert_int_equal(ferry_client_mig_get_state(d->c, &s), 0);
	return s;
}

/* ---- the driver ---- */

static void init_driver(struct fixture *f)
{
	assert_int_equal(dma_driver_init(&f->drv, f->a.c, f->mem, GUEST_IOVA, AREA_OFF, AREA_SIZE,
					 NULL), 0);
	f->is_drv_up = true;
}

/* The driver moves to B: let go of A (its eventfd), attach to B's state. */
static void move_driver_to_b(struct fixture *f)
{
	dma_driver_fini(&f->drv);
	f->is_drv_up = false;
	assert_int_equal(dma_driver_attach(&f->drv, f->b.c, f->mem, GUEST_IOVA, AREA_OFF,
					   AREA_SIZE, NULL), 0);
	f->is_drv_up = true;
}

static struct dma_driver_stats stats(struct fixture *f)
{
	struct dma_driver_stats s;

	dma_driver_stats(&f->drv, &s);
	return s;
}

/* Reaps until @reaped ops are, or fails the case after @timeout_ms. */
static void wait_reaped(struct fixture *f, uint64_t reaped, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	while (stats(f).reaped < reaped) {
		assert_true(dma_driver_poll(&f->drv) >= 0);
		if (now_ms() > deadline)
			fail_msg("only %llu of %llu ops reaped", (unsigned long long)stats(f).reaped,
				 (unsigned long long)reaped);
		dma_driver_wait(&f->drv, 5);
	}
}

/* Every op ever submitted completed exactly once with the right result. */
static void expect_all_done(struct fixture *f, uint64_t bad, uint64_t peer)
{
	struct dma_driver_stats s = stats(f);

	assert_int_equal(s.failures, 0);
	assert_int_equal(s.in_flight, 0);
	assert_int_equal(s.reaped, s.submitted);
	assert_int_equal(s.bad_ok, bad);
	assert_int_equal(s.peer_ok, peer);
	assert_int_equal(s.verified, s.submitted - bad - peer);
	assert_int_equal(dma_driver_check(&f->drv), 0);
}

/* Descriptors the device has not run yet (status still 0), of those queued. */
static unsigned not_run(struct fixture *f)
{
	struct dma_driver_stats s = stats(f);
	unsigned n = 0;

	for (uint64_t seq = s.reaped; seq < s.submitted; seq++) {
		const struct dma_desc *d = &f->drv.ring[seq & (f->drv.sh->ring_entries - 1)];

		if (!(__atomic_load_n(&d->status, __ATOMIC_ACQUIRE) & htole32(DMA_ST_DONE)))
			n++;
	}
	return n;
}

/* A stopped device does no DMA and raises no interrupt: for 30 ms no status
 * word in the ring changes and the interrupt eventfd stays silent. */
static void expect_quiet(struct fixture *f)
{
	size_t ring_bytes = (size_t)f->drv.sh->ring_entries * DMA_DESC_SIZE;
	uint8_t *before = malloc(ring_bytes);
	uint64_t cnt;

	assert_non_null(before);
	while (read(f->drv.irq_fd, &cnt, sizeof(cnt)) == sizeof(cnt))
		; /* raised before the stop */
	memcpy(before, f->drv.ring, ring_bytes);
	devproc_sleep_ms(30);
	assert_memory_equal(before, f->drv.ring, ring_bytes);
	assert_int_equal(read(f->drv.irq_fd, &cnt, sizeof(cnt)), -1);
	assert_int_equal(errno, EAGAIN);
	free(before);
}

/* ---- migration ---- */

/* MIG_DATA_READs until one returns 0 bytes, appending to @s; between two
 * reads, @busy (if set) keeps the driver going. Returns the bytes read. */
static size_t read_until_empty(struct dev *d, struct stream *s, struct fixture *busy)
{
	size_t start = s->len, got;

	do {
		assert_true(s->len + READ_CHUNK <= MAX_STREAM);
		assert_int_equal(ferry_client_mig_read(d->c, s->buf + s->len, READ_CHUNK, &got), 0);
		s->len += got;
		if (busy) {
			assert_true(dma_driver_poll(&busy->drv) >= 0);
			assert_true(dma_driver_submit(&busy->drv, 16) >= 0);
		}
	} while (got);
	return s->len - start;
}

/* The source's half: from RUNNING through PRE_COPY (or from RUNNING_P2P
 * through PRE_COPY_P2P), reading pre-copy data until drained, to STOP_COPY,
 * reading the rest, then STOP. With @f->is_drv_up the driver keeps A busy
 * in pre-copy and fills the ring just before the stop. Then A's guest
 * memory goes away. Returns the stream (free it). */
static struct stream save_source(struct fixture *f, enum ferry_mig_state precopy)
{
	struct stream s = { .buf = malloc(MAX_STREAM) };
	struct fixture *busy = f->is_drv_up ? f : NULL;
	uint64_t initial, dirty, stop_copy;
	size_t n;

	assert_non_null(s.buf);
	set_state(&f->a, precopy);
	assert_int_equal(ferry_client_mig_precopy_info(f->a.c, &initial, &dirty), 0);
	assert_true(initial > 0);
	n = read_until_empty(&f->a, &s, busy);
	assert_true(n >= initial);
	assert_int_equal(ferry_client_mig_precopy_info(f->a.c, &initial, &dirty), 0);
	assert_int_equal(initial, 0);
	if (busy) {
		/* The device ran on: its state differs from the snapshot. */
		assert_int_equal(dma_driver_run(&f->drv, 200, OP_TIMEOUT_MS), 0);
		assert_int_equal(ferry_client_mig_precopy_info(f->a.c, &initial, &dirty), 0);
		assert_true(dirty > 0);
	}
	if (precopy == FERRY_MIG_PRE_COPY)
		set_state(&f->a, FERRY_MIG_PRE_COPY_P2P);
	if (busy)
		assert_true(dma_driver_submit(&f->drv, 1000) >= 0); /* a full ring at the stop */

	set_state(&f->a, FERRY_MIG_STOP_COPY);
	if (busy)
		expect_quiet(f);
	assert_int_equal(ferry_client_mig_data_size(f->a.c, &stop_copy), 0);
	n = read_until_empty(&f->a, &s, NULL);
	assert_int_equal(n, stop_copy); /* exact */
	set_state(&f->a, FERRY_MIG_STOP);

	assert_int_equal(ferry_client_dma_unmap(f->a.c, GUEST_IOVA, GUEST_SIZE), 0);
	return s;
}

/* The destination's half up to RUNNING_P2P: RESUMING, the stream in
 * WRITE_CHUNK pieces, STOP (the device validates), RUNNING_P2P. */
static void restore_dest(struct fixture *f, const struct stream *s)
{
	set_state(&f->b, FERRY_MIG_RESUMING);
	for (size_t off = 0; off < s->len; off += WRITE_CHUNK) {
		size_t n = s->len - off < WRITE_CHUNK ? s->len - off : WRITE_CHUNK;

		assert_int_equal(ferry_client_mig_write(f->b.c, s->buf + off, n), 0);
	}
	set_state(&f->b, FERRY_MIG_STOP);
	set_state(&f->b, FERRY_MIG_RUNNING_P2P);
}

/* ---- cases ---- */

/* The driver runs on A under load; A migrates to B in the middle of it
 * (pre-copy while busy, a full ring at the stop); the driver re-attaches
 * to B and carries on. Every op, before and after, completes exactly once
 * with the right data; B's counters carry on from A's; interrupts work. */
static void test_migrate_under_load(void **state)
{
	struct fixture *f = *state;
	struct dma_driver stray;
	struct stream s;
	uint64_t pending;
	unsigned unrun;

	init_driver(f);
	assert_int_equal(dma_driver_run(&f->drv, 2000, OP_TIMEOUT_MS), 0);
	/* One op of each failing kind: error counters and STATUS migrate. */
	assert_int_equal(dma_driver_submit_bad(&f->drv, DMA_KIND_NUM_BAD), DMA_KIND_NUM_BAD);
	assert_true(dma_driver_submit(&f->drv, 100) > 0);

	s = save_source(f, FERRY_MIG_PRE_COPY);
	pending = stats(f).in_flight;
	unrun = not_run(f);
	assert_true(pending > 0);

	/* A fresh device does not hold the driver's ring: attach refuses. */
	assert_int_equal(dma_driver_attach(&stray, f->b.c, f->mem, GUEST_IOVA, AREA_OFF, AREA_SIZE,
					   &(struct dma_driver_config){ .no_irq = true }), -ESTALE);

	restore_dest(f, &s);
	set_state(&f->b, FERRY_MIG_RUNNING);
	free(s.buf);
	move_driver_to_b(f);
	assert_int_equal(dma_driver_drain(&f->drv, OP_TIMEOUT_MS), 0);
	assert_int_equal(dma_driver_run(&f->drv, 2000, OP_TIMEOUT_MS), 0);
	expect_all_done(f, DMA_KIND_NUM_BAD, 0);
	assert_int_equal(reg64(&f->b, DMA_REG_COMPLETED), stats(f).submitted);
	assert_int_equal(reg64(&f->b, DMA_REG_ERRORS), DMA_KIND_NUM_BAD);
	assert_int_equal(reg(&f->b, DMA_REG_STATUS), DMA_STS_RUNNING | DMA_STS_ERR_DESC);
	assert_true(stats(f).irqs > 0);
	print_message("%llu ops; at the switchover %llu queued, %u of them not run by A\n",
		      (unsigned long long)stats(f).submitted, (unsigned long long)pending, unrun);
}

/* The same with guest memory mapped without an fd: every device access is
 * a DMA_READ / DMA_WRITE message, so the stop waits for a descriptor whose
 * transfers are messages to this process, which serves them meanwhile. */
static void test_migrate_message_mode(void **state)
{
	const struct dma_driver_config cfg = { .ring_entries = 64, .buf_size = 16384 };
	struct fixture *f = *state;
	struct stream s;

	for (int i = 0; i < 2; i++) {
		struct dev *d = i ? &f->b : &f->a;

		assert_int_equal(ferry_client_dma_unmap(d->c, GUEST_IOVA, GUEST_SIZE), 0);
		assert_int_equal(ferry_client_dma_map(d->c, GUEST_IOVA, GUEST_SIZE,
						      VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
						      -1, 0, f->mem), 0);
	}
	assert_int_equal(dma_driver_init(&f->drv, f->a.c, f->mem, GUEST_IOVA, AREA_OFF, AREA_SIZE,
					 &cfg), 0);
	f->is_drv_up = true;
	assert_int_equal(dma_driver_run(&f->drv, 300, OP_TIMEOUT_MS), 0);
	assert_true(dma_driver_submit(&f->drv, 64) > 0);

	s = save_source(f, FERRY_MIG_PRE_COPY);
	restore_dest(f, &s);
	set_state(&f->b, FERRY_MIG_RUNNING);
	free(s.buf);
	move_driver_to_b(f);
	assert_int_equal(dma_driver_drain(&f->drv, OP_TIMEOUT_MS), 0);
	assert_int_equal(dma_driver_run(&f->drv, 300, OP_TIMEOUT_MS), 0);
	expect_all_done(f, 0, 0);
}

static uint64_t mailbox(struct fixture *f, unsigned slot)
{
	uint64_t v;

	memcpy(&v, f->mem + MAILBOX_OFF + (uint64_t)slot * DMA_PEER_WRITE, sizeof(v));
	return le64toh(v);
}

static void snapshot_mailbox(struct fixture *f, uint64_t out[DMA_DRV_PEER_SLOTS])
{
	for (unsigned i = 0; i < DMA_DRV_PEER_SLOTS; i++)
		out[i] = mailbox(f, i);
}

static void expect_mailbox_unchanged(struct fixture *f, const uint64_t was[DMA_DRV_PEER_SLOTS])
{
	for (unsigned i = 0; i < DMA_DRV_PEER_SLOTS; i++)
		if (mailbox(f, i) != was[i])
			fail_msg("doorbell slot %u changed to %#llx while peer writes are held", i,
				 (unsigned long long)mailbox(f, i));
}

/* Peer ops @first .. @first + @n over @slots: each slot holds the value of
 * the last op that targets it (so they arrived, and in order). */
static void expect_mailbox(struct fixture *f, uint64_t first, unsigned n, unsigned slots)
{
	for (uint64_t seq = first; seq < first + n; seq++) {
		if (seq + slots < first + n)
			continue; /* overwritten by a later op */
		if (mailbox(f, (unsigned)(seq % slots)) != DMA_DRV_PEER_VALUE(seq))
			fail_msg("doorbell slot %u holds %#llx, want %#llx (op %llu)",
				 (unsigned)(seq % slots),
				 (unsigned long long)mailbox(f, (unsigned)(seq % slots)),
				 (unsigned long long)DMA_DRV_PEER_VALUE(seq), (unsigned long long)seq);
	}
}

/* Submits 20 peer ops over @slots and 10 good ones while the device is in
 * a P2P state: 16 complete with their writes held, the 17th stalls the
 * engine. Returns the first peer op's sequence number. */
static uint64_t fill_hold_queue(struct fixture *f, struct dev *d, unsigned slots)
{
	uint64_t first = stats(f).submitted;

	assert_int_equal(dma_driver_submit_peer(&f->drv, 20, slots), 20);
	assert_int_equal(dma_driver_submit(&f->drv, 10), 10);
	wait_reaped(f, first + DMA_PEER_HOLD_MAX, OP_TIMEOUT_MS);
	devproc_sleep_ms(30);
	assert_true(dma_driver_poll(&f->drv) >= 0);
	assert_int_equal(stats(f).reaped, first + DMA_PEER_HOLD_MAX); /* stalled */
	assert_int_equal(reg(d, DMA_REG_PEER_HELD), DMA_PEER_HOLD_MAX);
	assert_int_equal(reg(d, DMA_REG_RING_HEAD), (uint32_t)(first + DMA_PEER_HOLD_MAX));
	return first;
}

/* PEER_NOTIFY writes at once in RUNNING; in RUNNING_P2P they are held (and
 * the engine stalls when the queue is full) until RUNNING, then delivered
 * in order; held writes and the stalled ring survive a migration and reach
 * the mailbox only when B reaches RUNNING. */
static void test_p2p_hold(void **state)
{
	struct fixture *f = *state;
	uint64_t was[DMA_DRV_PEER_SLOTS], first;
	struct stream s;
	uint64_t peer = 0;

	init_driver(f);
	assert_int_equal(ferry_client_write64(f->a.c, BAR0, DMA_REG_PEER_DOORBELL,
					      GUEST_IOVA + MAILBOX_OFF), 0);

	/* RUNNING: at once. */
	first = stats(f).submitted;
	assert_int_equal(dma_driver_submit_peer(&f->drv, 8, DMA_DRV_PEER_SLOTS), 8);
	assert_int_equal(dma_driver_drain(&f->drv, OP_TIMEOUT_MS), 0);
	peer += 8;
	expect_mailbox(f, first, 8, DMA_DRV_PEER_SLOTS);
	assert_int_equal(reg64(&f->a, DMA_REG_PEER_WRITES), 8);

	/* RUNNING_P2P: held, in order, delivered on the way back. Four slots
	 * for 20 writes: a slot ends with its last write only in order. */
	set_state(&f->a, FERRY_MIG_RUNNING_P2P);
	snapshot_mailbox(f, was);
	first = fill_hold_queue(f, &f->a, 4);
	expect_mailbox_unchanged(f, was);
	set_state(&f->a, FERRY_MIG_RUNNING);
	assert_int_equal(dma_driver_drain(&f->drv, OP_TIMEOUT_MS), 0);
	peer += 20;
	expect_mailbox(f, first, 20, 4);
	assert_int_equal(reg(&f->a, DMA_REG_PEER_HELD), 0);
	assert_int_equal(reg64(&f->a, DMA_REG_PEER_WRITES), peer);
	expect_all_done(f, 0, peer);

	/* Held across a migration: A stalls in RUNNING_P2P with a full queue,
	 * migrates through PRE_COPY_P2P; B holds them in RUNNING_P2P too and
	 * delivers them, then runs the rest of the ring, on RUNNING. */
	set_state(&f->a, FERRY_MIG_RUNNING_P2P);
	first = fill_hold_queue(f, &f->a, DMA_DRV_PEER_SLOTS);
	snapshot_mailbox(f, was);
	dma_driver_fini(&f->drv); /* not busy: the ring is stalled anyway */
	f->is_drv_up = false;
	s = save_source(f, FERRY_MIG_PRE_COPY_P2P);
	expect_mailbox_unchanged(f, was);
	restore_dest(f, &s);
	free(s.buf);
	devproc_sleep_ms(30);
	expect_mailbox_unchanged(f, was);
	assert_int_equal(reg(&f->b, DMA_REG_PEER_HELD), DMA_PEER_HOLD_MAX);
	assert_int_equal(reg(&f->b, DMA_REG_RING_HEAD), (uint32_t)(first + DMA_PEER_HOLD_MAX));
	set_state(&f->b, FERRY_MIG_RUNNING);
	move_driver_to_b(f);
	assert_int_equal(dma_driver_drain(&f->drv, OP_TIMEOUT_MS), 0);
	peer += 20;
	expect_mailbox(f, first, 20, DMA_DRV_PEER_SLOTS);
	assert_int_equal(reg(&f->b, DMA_REG_PEER_HELD), 0);
	assert_int_equal(reg64(&f->b, DMA_REG_PEER_WRITES), peer);
	assert_int_equal(dma_driver_run(&f->drv, 500, OP_TIMEOUT_MS), 0);
	expect_all_done(f, 0, peer);
}

/* Offset of the last record of the model's data in @s (its magic). */
static size_t last_record(const struct stream *s)
{
	for (size_t i = s->len - 4; i > 0; i--)
		if (!memcmp(s->buf + i, DMA_MIG_MAGIC, 4))
			return i;
	fail_msg("no ferry-dev-dma record in the stream");
	return 0;
}

/* Re-seals a record's crc after a deliberate change (mig_stream.h). */
static void reseal(uint8_t *rec)
{
	uLong crc = crc32(0L, Z_NULL, 0);
	uint32_t le;

	crc = crc32(crc, rec, 16);
	crc = crc32(crc, rec + DMA_MIG_HDR_LEN, DMA_MIG_STATE_LEN);
	le = htole32((uint32_t)crc);
	memcpy(rec + 16, &le, 4);
}

/* Loads @len bytes of @buf into B; the restore must fail, leaving B in
 * RESUMING (or, if the write itself was refused, anywhere but STOP). Then
 * a reset returns B to RUNNING for the next try. */
static void expect_refused(struct fixture *f, const uint8_t *buf, size_t len, const char *what)
{
	int rc = 0;

	set_state(&f->b, FERRY_MIG_RESUMING);
	for (size_t off = 0; off < len && rc == 0; off += WRITE_CHUNK)
		rc = ferry_client_mig_write(f->b.c, buf + off,
					    len - off < WRITE_CHUNK ? len - off : WRITE_CHUNK);
	if (rc == 0) {
		if (ferry_client_mig_set_state(f->b.c, FERRY_MIG_STOP) == 0)
			fail_msg("%s: B accepted it", what);
	}
	assert_int_equal(get_state(&f->b), FERRY_MIG_RESUMING);
	assert_int_equal(ferry_client_reset(f->b.c), 0);
	assert_int_equal(get_state(&f->b), FERRY_MIG_RUNNING);
}

/* Truncated, corrupted, wrong-version and impossible-state streams are
 * refused at B's RESUMING -> STOP (or at the write); A, asked back to
 * RUNNING, carries on as if nothing happened. */
static void test_bad_stream(void **state)
{
	struct fixture *f = *state;
	struct stream s = { .buf = malloc(MAX_STREAM) };
	uint8_t *bad = malloc(MAX_STREAM);
	size_t rec;

	assert_non_null(s.buf);
	assert_non_null(bad);
	init_driver(f);
	assert_int_equal(dma_driver_run(&f->drv, 500, OP_TIMEOUT_MS), 0);
	assert_true(dma_driver_submit(&f->drv, 200) > 0);

	set_state(&f->a, FERRY_MIG_STOP_COPY); /* RUNNING -> RUNNING_P2P -> STOP -> STOP_COPY */
	read_until_empty(&f->a, &s, NULL);
	rec = last_record(&s);
	assert_true(rec + DMA_MIG_REC_LEN <= s.len);

	/* Cut inside the record, and cut by one byte at the end. */
	expect_refused(f, s.buf, rec + 100, "a stream cut inside the device record");
	expect_refused(f, s.buf, s.len - 1, "a stream one byte short");
	/* One flipped bit in the state. */
	memcpy(bad, s.buf, s.len);
	bad[rec + DMA_MIG_HDR_LEN + 40] ^= 0x10; /* ERRORS */
	expect_refused(f, bad, s.len, "a flipped bit");
	/* Version 2, re-sealed. */
	memcpy(bad, s.buf, s.len);
	bad[rec + 4] = 2;
	reseal(bad + rec);
	expect_refused(f, bad, s.len, "record version 2");
	/* A running engine on a ring of 3 entries, re-sealed. */
	memcpy(bad, s.buf, s.len);
	bad[rec + DMA_MIG_HDR_LEN + 16] = 3; /* RING_SIZE, little-endian */
	bad[rec + DMA_MIG_HDR_LEN + 17] = 0;
	reseal(bad + rec);
	expect_refused(f, bad, s.len, "ring size 3");
	/* The intact stream restores (so the refusals were for their reasons);
	 * B is reset before it could run the shared ring. */
	set_state(&f->b, FERRY_MIG_RESUMING);
	assert_int_equal(ferry_client_mig_write(f->b.c, s.buf, s.len), 0);
	set_state(&f->b, FERRY_MIG_STOP);
	assert_int_equal(ferry_client_reset(f->b.c), 0);

	/* The migration is abandoned: the source runs on. */
	set_state(&f->a, FERRY_MIG_RUNNING);
	assert_int_equal(dma_driver_drain(&f->drv, OP_TIMEOUT_MS), 0);
	assert_int_equal(dma_driver_run(&f->drv, 500, OP_TIMEOUT_MS), 0);
	expect_all_done(f, 0, 0);
	assert_int_equal(reg64(&f->a, DMA_REG_COMPLETED), stats(f).submitted);
	free(bad);
	free(s.buf);
}

/* `ferry check ./dma.sock --peer ./dma2.sock` from the sockets' directory
 * passes (exit 0, no FAIL row); its output goes to a file shown on failure. */
static void test_ferry_check(void **state)
{
	struct fixture *f = *state;
	char out[128];
	int status;
	pid_t pid;

	/* One client at a time: the checker's. */
	ferry_client_close(f->a.c);
	ferry_client_close(f->b.c);
	f->a.c = f->b.c = NULL;
	snprintf(out, sizeof(out), "%s/check.out", f->dir);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fd < 0 || chdir(f->dir) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		execl(ferry_path, ferry_path, "check", "./dma.sock", "--peer", "./dma2.sock",
		      (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char line[512];
		FILE *fp = fopen(out, "r");

		while (fp && fgets(line, sizeof(line), fp))
			fputs(line, stderr);
		if (fp)
			fclose(fp);
	}
	unlink(out);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_migrate_under_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_message_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_p2p_hold, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ferry_check, setup, teardown),
	};

	dev_path = argc > 1 ? argv[1] : getenv("FERRY_DEV_DMA");
	ferry_path = argc > 2 ? argv[2] : getenv("FERRY");
	if (!dev_path || !ferry_path) {
		fprintf(stderr, "usage: %s PATH-TO-ferry-dev-dma PATH-TO-ferry "
			"(or set FERRY_DEV_DMA and FERRY)\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
