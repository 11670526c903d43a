/*
 * Device side, migration (lib/device/migration.c, mig_*.c): registration
 * checks; every SET path for the four flag sets, checked arc by arc against
 * what the model saw; failing arcs (restored vs ERROR) and reset out of
 * ERROR; command gating and quiescing (DMA, interrupts); the stream's
 * prefix and trailer (config space round trip, a change during pre-copy, a
 * device of another kind, truncation, corruption); reads filled across
 * short model reads; writes in chunks of 1, 7 and 64 KiB; pre-copy sizes
 * with and without the extension; MIG_DATA_SIZE; deferred resets, from a
 * callback and under stress; disconnect back to RUNNING; mig_shm.
 */
#include "mig_harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <linux/pci_regs.h>

#include "client/client_priv.h"

#define S(x) FERRY_MIG_##x
#define DATA_LEN 300000u

static const uint64_t flag_sets[] = {F_SC, F_SC | F_PRE, F_SC | F_P2P, F_SC | F_P2P | F_PRE};

/* Library bytes around the model's: prefix + trailer of the test device. */
static size_t lib_bytes(struct th *t)
{
	size_t total;
	uint8_t *s;

	/* A model of 0 bytes would be simpler; measuring keeps it honest. */
	pthread_mutex_lock(&t->m.lock);
	size_t keep = t->m.data_len;
	t->m.data_len = 0;
	pthread_mutex_unlock(&t->m.lock);
	s = th_save(t, &total);
	free(s);
	pthread_mutex_lock(&t->m.lock);
	t->m.data_len = keep;
	pthread_mutex_unlock(&t->m.lock);
	assert_int_equal(ferry_client_reset(t->c), 0);
	return total;
}

/* ---- registration ---- */

static int no_transition(void *o, enum ferry_mig_state f, enum ferry_mig_state t, bool *r)
{
	(void)o, (void)f, (void)t, (void)r;
	return 0;
}

static void test_set_migration_checks(void **state)
{
	(void)state;
	struct tmodel m = {0};
	struct ferry_device_info info;
	struct ferry_device *dev;
	struct th fake = {0};
	struct ferry_migration_ops ops = t_mig_ops(F_SC | F_PRE);

	t_info(&fake, &info, 0x10f0, T_MSIX_VECTORS);
	info.opaque = &m;
	assert_int_equal(ferry_device_create(&info, &dev), 0);
	assert_int_equal(ferry_device_set_migration(dev, NULL), -EINVAL);
	ops.transition = NULL;
	assert_int_equal(ferry_device_set_migration(dev, &ops), -EINVAL);
	ops = t_mig_ops(F_SC | F_PRE);
	ops.precopy_info = NULL; /* required with PRE_COPY */
	assert_int_equal(ferry_device_set_migration(dev, &ops), -EINVAL);
	ops = t_mig_ops(F_PRE); /* no STOP_COPY */
	assert_int_equal(ferry_device_set_migration(dev, &ops), -EINVAL);
	ops = t_mig_ops(F_SC | 0x100);
	assert_int_equal(ferry_device_set_migration(dev, &ops), -EINVAL);
	ops = t_mig_ops(F_SC);
	ops.size = 8;
	assert_int_equal(ferry_device_set_migration(dev, &ops), -EINVAL);
	ops = t_mig_ops(F_SC);
	ops.precopy_info = NULL; /* fine without PRE_COPY */
	ops.transition = no_transition;
	assert_int_equal(ferry_device_set_migration(dev, &ops), 0);
	assert_int_equal(ferry_device_set_migration(dev, &ops), -EBUSY);
	assert_int_equal(ferry_device_mig_state(dev), S(RUNNING));
	ferry_device_destroy(dev);

	/* A migratable model needs a reset callback. */
	struct ferry_device_ops no_reset = t_dev_ops;
	no_reset.reset = NULL;
	info.ops = &no_reset;
	assert_int_equal(ferry_device_create(&info, &dev), 0);
	ops = t_mig_ops(F_SC);
	assert_int_equal(ferry_device_set_migration(dev, &ops), -EINVAL);
	ferry_device_destroy(dev);

	/* Too late once serving. */
	info.ops = &t_dev_ops;
	assert_int_equal(ferry_device_create(&info, &dev), 0);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(ferry_device_attach_fd(dev, sv[0]), 0);
	assert_int_equal(ferry_device_set_migration(dev, &ops), -EBUSY);
	close(sv[1]);
	ferry_device_destroy(dev);
	assert_int_equal(ferry_device_mig_state(NULL), S(RUNNING));
}

/* ---- every path ---- */

/* Puts @t in @s from RUNNING; a RESUMING device gets a valid stream. */
static void put_in(struct th *t, uint32_t s, const uint8_t *stream, size_t len)
{
	assert_int_equal(ferry_client_reset(t->c), 0);
	assert_int_equal(th_get(t), S(RUNNING));
	assert_int_equal(ferry_client_mig_set_state(t->c, (enum ferry_mig_state)s), 0);
	if (s == S(RESUMING))
		assert_int_equal(th_write(t, stream, len, 1 << 20), 0);
}

static void check_paths(uint64_t flags)
{
	struct th *t = th_start(flags, 3, 4096);
	struct tarc arcs[T_MAX_ARCS];
	uint32_t path[FERRY_MIG_NUM_STATES];
	size_t len;
	uint8_t *stream = th_save(t, &len); /* valid data for RESUMING -> ... */

	th_expect(t, 3, 4096);
	for (uint32_t from = 1; from < FERRY_MIG_NUM_STATES; from++) {
		if (!ferry_mig_state_supported(flags, from))
			continue;
		for (uint32_t to = 0; to < FERRY_MIG_NUM_STATES + 1; to++) {
			put_in(t, from, stream, len);
			th_clear_arcs(t);
			int steps = ferry_mig_path(flags, from, to, path);
			int r = ferry_client_mig_set_state(t->c, (enum ferry_mig_state)to);
			unsigned n = th_arcs(t, arcs, T_MAX_ARCS);
			if (steps < 0) {
				/* unsupported, ERROR, out of range, blocked: refused, no arc */
				assert_int_equal(r, -EINVAL);
				assert_int_equal(n, 0);
				assert_int_equal(th_get(t), from);
				continue;
			}
			assert_int_equal(r, 0);
			assert_int_equal(n, (unsigned)steps);
			uint32_t prev = from;
			for (int i = 0; i < steps; i++) {
				assert_int_equal(arcs[i].from, prev);
				assert_int_equal(arcs[i].to, path[i]);
				assert_true(ferry_mig_is_direct_arc(flags, prev, path[i]));
				prev = path[i];
			}
			assert_int_equal(th_get(t), to);
			assert_int_equal(ferry_device_mig_state(t->dev), to);
		}
	}
	assert_int_equal(t->m.bad_arcs, 0);
	free(stream);
	th_stop(t);
}

static void test_paths_all_flag_sets(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++)
		check_paths(flag_sets[i]);
}

/* A few paths written out, independent of lib/fsm. */
static void test_paths_literal(void **state)
{
	(void)state;
	static const struct {
		uint64_t flags;
		uint32_t from, to;
		unsigned n;
		uint32_t arcs[5];
	} cases[] = {
		{F_SC | F_PRE, S(RUNNING), S(STOP_COPY), 2, {S(STOP), S(STOP_COPY)}},
		{F_SC | F_PRE, S(RESUMING), S(PRE_COPY), 3, {S(STOP), S(RUNNING), S(PRE_COPY)}},
		{F_SC | F_PRE, S(PRE_COPY), S(STOP), 2, {S(RUNNING), S(STOP)}},
		{F_SC | F_PRE, S(PRE_COPY), S(STOP_COPY), 1, {S(STOP_COPY)}},
		{F_SC | F_P2P | F_PRE, S(PRE_COPY), S(STOP_COPY), 2, {S(PRE_COPY_P2P), S(STOP_COPY)}},
		{F_SC | F_P2P, S(RUNNING), S(RESUMING), 3, {S(RUNNING_P2P), S(STOP), S(RESUMING)}},
		{F_SC, S(STOP_COPY), S(RUNNING), 2, {S(STOP), S(RUNNING)}},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct th *t = th_start(cases[i].flags, 9, 1000);
		struct tarc arcs[16];
		size_t len;
		uint8_t *stream = th_save(t, &len);

		th_expect(t, 9, 1000);
		put_in(t, cases[i].from, stream, len);
		th_clear_arcs(t);
		assert_int_equal(ferry_client_mig_set_state(t->c, cases[i].to), 0);
		assert_int_equal(th_arcs(t, arcs, 16), cases[i].n);
		uint32_t prev = cases[i].from;
		for (unsigned k = 0; k < cases[i].n; k++) {
			assert_int_equal(arcs[k].from, prev);
			assert_int_equal(arcs[k].to, cases[i].arcs[k]);
			prev = cases[i].arcs[k];
		}
		free(stream);
		th_stop(t);
	}
}

/* ---- failing arcs, ERROR, reset ---- */

static void test_failing_arc_restored(void **state)
{
	(void)state;
	struct th *t = th_start(F_SC | F_PRE, 1, 1000);
	struct tarc arcs[8];

	t->m.fail_from = S(STOP);
	t->m.fail_to = S(STOP_COPY);
	t->m.fail_restored = true;
	assert_int_equal(ferry_client_mig_set_state(t->c, S(STOP_COPY)), -EIO);
	/* RUNNING -> STOP happened, STOP -> STOP_COPY did not: stays in STOP */
	assert_int_equal(th_get(t), S(STOP));
	assert_int_equal(th_arcs(t, arcs, 8), 2);
	assert_int_equal(arcs[0].to, S(STOP));
	assert_int_equal(arcs[1].to, S(STOP_COPY));
	/* still usable */
	t->m.fail_from = -1;
	assert_int_equal(ferry_client_mig_set_state(t->c, S(RUNNING)), 0);
	assert_int_equal(t->m.bad_arcs, 0);
	th_stop(t);
}

static void test_failing_arc_error(void **state)
{
	(void)state;
	struct th *t = th_start(F_SC | F_PRE, 1, 1000);
	uint8_t buf[64];
	size_t got;

	t->m.fail_from = S(RUNNING);
	t->m.fail_to = S(PRE_COPY);
	t->m.fail_restored = false;
	assert_int_equal(ferry_client_mig_set_state(t->c, S(PRE_COPY)), -EIO);
	assert_int_equal(th_get(t), S(ERROR));
	assert_int_equal(ferry_device_mig_state(t->dev), S(ERROR));
	t->m.fail_from = -1;
	/* every SET refused, even to ERROR itself or RUNNING; data refused */
	for (uint32_t s = 0; s < FERRY_MIG_NUM_STATES; s++)
		assert_int_equal(ferry_client_mig_set_state(t->c, (enum ferry_mig_state)s), -EINVAL);
	assert_int_equal(ferry_client_mig_read(t->c, buf, sizeof(buf), &got), -EINVAL);
	assert_int_equal(ferry_client_mig_write(t->c, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(th_get(t), S(ERROR));
	/* only a reset leaves, to RUNNING */
	int resets = t->m.resets;
	assert_int_equal(ferry_client_reset(t->c), 0);
	assert_int_equal(th_get(t), S(RUNNING));
	assert_int_equal(t->m.resets, resets + 1);
	assert_int_equal(ferry_client_mig_set_state(t->c, S(PRE_COPY)), 0);

	/* ferry_device_reset() from another thread leaves ERROR too */
	t->m.fail_from = S(PRE_COPY);
	t->m.fail_to = S(RUNNING);
	assert_int_equal(ferry_client_mig_set_state(t->c, S(RUNNING)), -EIO);
	assert_int_equal(th_get(t), S(ERROR));
	t->m.fail_from = -1;
	assert_int_equal(ferry_device_reset(t->dev), 0);
	assert_int_equal(th_get(t), S(RUNNING));
	assert_int_equal(t->m.state, S(RUNNING));
	th_stop(t);
}

/* Reset in every state lands in RUNNING and ends the session. */
static void test_reset_every_state(void **state)
{
	(void)state;
	struct th *t = th_start(F_SC | F_P2P | F_PRE, 2, 5000);
	size_t len;
	uint8_t *stream = th_save(t, &len);
	uint8_t buf[16];
	size_t got;

	for (uint32_t s = 1; s < FERRY_MIG_NUM_STATES; s++) {
		put_in(t, s, stream, len);
		assert_int_equal(ferry_client_reset(t->c), 0);
		assert_int_equal(th_get(t), S(RUNNING));
		assert_int_equal(t->m.state, S(RUNNING));
		/* the session is over: data refused in RUNNING */
		assert_int_equal(ferry_client_mig_read(t->c, buf, sizeof(buf), &got), -EINVAL);
	}
	/* a new saving session after a reset starts with a fresh prefix */
	assert_int_equal(ferry_client_mig_set_state(t->c, S(STOP_COPY)), 0);
	assert_int_equal(ferry_client_mig_read(t->c, buf, 8, &got), 0);
	assert_memory_equal(buf, "FERRYMIG", 8);
	free(stream);
	th_stop(t);
}

/* ---- gating ---- */

static int raw(struct th *t, uint16_t cmd, const void *req, size_t len)
{
	struct wire_msg m;
	int r = client_call_simple(t->c, "raw", cmd, req, len, 0, &m);
	if (r == 0)
		wire_msg_release(&m);
	return r;
}

static int bar0_read(struct th *t, uint32_t *v)
{
	return ferry_client_read32(t->c, 0, 0x10, v);
}

static void test_gating(void **state)
{
	(void)state;
	struct th *t = th_start(F_SC | F_PRE, 5, 2000);
	uint32_t v = 0, cmd;
	uint8_t buf[64];
	size_t got;
	struct {
		struct vfio_user_write_multi h;
		struct vfio_user_write_multi_entry e;
	} __attribute__((packed)) wm = {.h = {.wr_cnt = 1}, .e = {.offset = 0x20, .count = 4}};
	uint64_t ib, db;

	/* RUNNING: no data either way, registers fine, precopy_info refused */
	assert_int_equal(ferry_client_mig_read(t->c, buf, sizeof(buf), &got), -EINVAL);
	assert_int_equal(ferry_client_mig_write(t->c, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(bar0_read(t, &v), 0);
	assert_int_equal(ferry_client_mig_precopy_info(t->c, &ib, &db), -EINVAL);

	/* STOP: config space only; no data */
	assert_int_equal(ferry_client_mig_set_state(t->c, S(STOP)), 0);
	assert_int_equal(bar0_read(t, &v), -EINVAL);
	assert_int_equal(ferry_client_write32(t->c, 0, 0x10, 1), -EINVAL);
	assert_int_equal(raw(t, VFIO_USER_REGION_WRITE_MULTI, &wm, sizeof(wm)), -EINVAL);
	assert_int_equal(ferry_client_region_read(t->c, FERRY_PCI_CONFIG, 0, &v, 4), 0);
	assert_int_equal(v, 0x10f01af4);
	assert_int_equal(ferry_client_region_read(t->c, FERRY_PCI_CONFIG, PCI_COMMAND, &cmd, 2), 0);
	assert_int_equal(ferry_client_region_write(t->c, FERRY_PCI_CONFIG, PCI_COMMAND, &cmd, 2), 0);
	assert_int_equal(ferry_client_mig_read(t->c, buf, sizeof(buf), &got), -EINVAL);
	assert_int_equal(ferry_client_mig_write(t->c, buf, sizeof(buf)), -EINVAL);

	/* STOP_COPY: reads yes, config read-only, no writes of data */
	assert_int_equal(ferry_client_mig_set_state(t->c, S(STOP_COPY)), 0);
	assert_int_equal(ferry_client_region_read(t->c, FERRY_PCI_CONFIG, 0, &v, 4), 0);
	assert_int_equal(ferry_client_region_write(t->c, FERRY_PCI_CONFIG, PCI_COMMAND, &cmd, 2),
			 -EINVAL);
	assert_int_equal(bar0_read(t, &v), -EINVAL);
	assert_int_equal(ferry_client_mig_write(t->c, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(ferry_client_mig_read(t->c, buf, sizeof(buf), &got), 0);
	assert_int_equal(got, sizeof(buf));
	assert_int_equal(ferry_client_mig_precopy_info(t->c, &ib, &db), -EINVAL);

	/* RESUMING: writes yes, reads no, config writable */
	assert_int_equal(ferry_client_mig_set_state(t->c, S(RESUMING)), 0);
	assert_int_equal(ferry_client_mig_read(t->c, buf, sizeof(buf), &got), -EINVAL);
	assert_int_equal(ferry_client_region_write(t->c, FERRY_PCI_CONFIG, PCI_COMMAND, &cmd, 2), 0);
	assert_int_equal(bar0_read(t, &v), -EINVAL);

	/* PRE_COPY: running: registers and reads */
	assert_int_equal(ferry_client_reset(t->c), 0);
	assert_int_equal(ferry_client_mig_set_state(t->c, S(PRE_COPY)), 0);
	assert_int_equal(bar0_read(t, &v), 0);
	assert_int_equal(raw(t, VFIO_USER_REGION_WRITE_MULTI, &wm, sizeof(wm)), 0);
	assert_int_equal(ferry_client_mig_read(t->c, buf, sizeof(buf), &got), 0);
	assert_int_equal(ferry_client_mig_write(t->c, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(ferry_client_mig_precopy_info(t->c, &ib, &db), 0);

	/* DEVICE_RESET and DMA_MAP/UNMAP in a stopped state are fine */
	assert_int_equal(ferry_client_mig_set_state(t->c, S(STOP_COPY)), 0);
	int fd = memfd_create("g", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 16), 0);
	assert_int_equal(ferry_client_dma_map(t->c, 1 << 20, 1 << 16, VFIO_DMA_MAP_FLAG_READ |
					      VFIO_DMA_MAP_FLAG_WRITE, fd, 0, NULL), 0);
	assert_int_equal(ferry_client_dma_unmap(t->c, 1 << 20, 1 << 16), 0);
	close(fd);
	assert_int_equal(ferry_client_reset(t->c), 0);
	assert_int_equal(th_get(t), S(RUNNING));
	th_stop(t);
}

static void test_bad_data_requests(void **state)
{
	(void)state;
	struct th *t = th_start(F_SC, 5, 2000);
	struct vfio_user_mig_data r = {.argsz = 8 + 16, .size = 16};
	uint8_t wr[8 + 16] = {0};

	assert_int_equal(ferry_client_mig_set_state(t->c, S(STOP_COPY)), 0);
	assert_int_equal(raw(t, VFIO_USER_MIG_DATA_READ, &r, sizeof(r)), 0);
	r.argsz = 8 + 15; /* cannot hold the data */
	assert_int_equal(raw(t, VFIO_USER_MIG_DATA_READ, &r, sizeof(r)), -EINVAL);
	r = (struct vfio_user_mig_data){.argsz = UINT32_MAX, .size = (1u << 20) + 1};
	assert_int_equal(raw(t, VFIO_USER_MIG_DATA_READ, &r, sizeof(r)), -EINVAL);
	r = (struct vfio_user_mig_data){.argsz = 24, .size = 16};
	assert_int_equal(raw(t, VFIO_USER_MIG_DATA_READ, wr, sizeof(wr)), -EINVAL); /* payload */

	assert_int_equal(ferry_client_reset(t->c), 0);
	assert_int_equal(ferry_client_mig_set_state(t->c, S(RESUMING)), 0);
	struct vfio_user_mig_data w = {.argsz = 8 + 16, .size = 17}; /* payload holds 16 */
	memcpy(wr, &w, 8);
	assert_int_equal(raw(t, VFIO_USER_MIG_DATA_WRITE, wr, sizeof(wr)), -EINVAL);
	w = (struct vfio_user_mig_data){.argsz = 8 + 15, .size = 16};
	memcpy(wr, &w, 8);
	assert_int_equal(raw(t, VFIO_USER_MIG_DATA_WRITE, wr, sizeof(wr)), -EINVAL);
	th_stop(t);

	/* A device without migration: no features, no data commands. */
	struct th fake = {0};
	struct tmodel m = {0};
	struct ferry_device_info info;
	struct ferry_device *dev;
	struct ferry_client *c;
	struct ferry_client_options o = {.name = "plain"};
	int sv[2];
	uint64_t flags;

	pthread_mutex_init(&m.lock, NULL);
	t_info(&fake, &info, 0x10f0, 0);
	info.opaque = &m;
	assert_int_equal(ferry_device_create(&info, &dev), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(ferry_device_attach_fd(dev, sv[0]), 0);
	assert_int_equal(ferry_device_start(dev), 0);
	assert_int_equal(ferry_client_connect_fd(sv[1], &o, &c), 0);
	assert_int_equal(ferry_client_mig_flags(c, &flags), -ENOTTY);
	assert_int_equal(ferry_client_server_caps(c)->extensions &
			 (FERRY_EXT_MIG_SHM | FERRY_EXT_PRECOPY_INFO), 0);
	struct wire_msg msg;
	r = (struct vfio_user_mig_data){.argsz = 24, .size = 16};
	assert_int_equal(client_call_simple(c, "raw", VFIO_USER_MIG_DATA_READ, &r, sizeof(r), 0,
					    &msg), -EINVAL);
	assert_int_equal(ferry_device_reset(dev), 0);
	ferry_client_close(c);
	ferry_device_destroy(dev);
	pthread_mutex_destroy(&m.lock);
}

/* ---- quiescing: DMA and interrupts while stopped ---- */

static void test_quiesce_dma_irq(void **state)
{
	(void)state;
	struct th *t = th_start(F_SC, 5, 2000);
	int fd = memfd_create("guest", MFD_CLOEXEC), efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	uint8_t b[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	uint16_t cmd = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, ctl;
	uint32_t vctl = 0;
	eventfd_t ev;
	int err;

	assert_true(fd >= 0 && efd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 16), 0);
	assert_int_equal(ferry_client_dma_map(t->c, 1 << 20, 1 << 16, VFIO_DMA_MAP_FLAG_READ |
					      VFIO_DMA_MAP_FLAG_WRITE, fd, 0, NULL), 0);
	assert_int_equal(ferry_client_set_irq_eventfds(t->c, FERRY_IRQ_MSIX, 1, 1, &efd), 0);
	assert_int_equal(ferry_client_region_write(t->c, FERRY_PCI_CONFIG, PCI_COMMAND, &cmd, 2), 0);
	/* MSI-X on, vector 1 unmasked */
	unsigned cap = 0x60; /* pci_config.h: MSI-X at 0x60 when present */
	assert_int_equal(ferry_client_region_read(t->c, FERRY_PCI_CONFIG, cap + PCI_MSIX_FLAGS,
						  &ctl, 2), 0);
	ctl |= PCI_MSIX_FLAGS_ENABLE;
	assert_int_equal(ferry_client_region_write(t->c, FERRY_PCI_CONFIG, cap + PCI_MSIX_FLAGS,
						   &ctl, 2), 0);
	assert_int_equal(ferry_client_write32(t->c, 0, T_MSIX_TABLE + 16 + PCI_MSIX_ENTRY_VECTOR_CTRL,
					      vctl), 0);

	/* RUNNING: both work */
	assert_int_equal(ferry_dma_write(t->dev, 1 << 20, b, sizeof(b)), 0);
	assert_int_equal(ferry_irq_trigger(t->dev, FERRY_IRQ_MSIX, 1), 0);
	assert_int_equal(eventfd_read(efd, &ev), 0);

	/* STOP: refused; the trigger is kept pending */
	assert_int_equal(ferry_client_mig_set_state(t->c, S(STOP)), 0);
	assert_int_equal(ferry_dma_write(t->dev, 1 << 20, b, sizeof(b)), -EBUSY);
	assert_int_equal(ferry_dma_read(t->dev, 1 << 20, b, sizeof(b)), -EBUSY);
	assert_null(ferry_dma_ptr_get(t->dev, 1 << 20, 8, false, &err));
	assert_int_equal(err, -EBUSY);
	assert_int_equal(ferry_irq_trigger(t->dev, FERRY_IRQ_MSIX, 1), -EAGAIN);
	assert_int_equal(ferry_irq_trigger(t->dev, FERRY_IRQ_MSIX, 1), -EAGAIN);
	assert_int_equal(eventfd_read(efd, &ev), -1); /* nothing raised */
	/* a config write that would deliver pending vectors does not either */
	assert_int_equal(ferry_client_region_write(t->c, FERRY_PCI_CONFIG, cap + PCI_MSIX_FLAGS,
						   &ctl, 2), 0);
	assert_int_equal(eventfd_read(efd, &ev), -1);
	/* still stopped in STOP_COPY; the save carries the pending bit */
	assert_int_equal(ferry_client_mig_set_state(t->c, S(STOP_COPY)), 0);
	assert_int_equal(ferry_dma_read(t->dev, 1 << 20, b, sizeof(b)), -EBUSY);
	/* running again: delivered once */
	assert_int_equal(ferry_client_mig_set_state(t->c, S(RUNNING)), 0);
	struct pollfd p = {.fd = efd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 2000), 1);
	assert_int_equal(eventfd_read(efd, &ev), 0);
	assert_int_equal(ev, 1);
	assert_int_equal(ferry_dma_read(t->dev, 1 << 20, b, sizeof(b)), 0);

	/* ferry_device_reset with a DMA pointer held: refused, no deadlock */
	void *ptr = ferry_dma_ptr_get(t->dev, 1 << 20, 8, false, &err);
	assert_non_null(ptr);
	assert_int_equal(ferry_device_reset(t->dev), -EDEADLK);
	ferry_dma_ptr_put(t->dev);
	assert_int_equal(ferry_device_reset(t->dev), 0);
	close(fd);
	close(efd);
	th_stop(t);
}

/* ---- the stream ---- */

/* Sets MSI-X table entry @v to (@addr, @data, unmasked) through BAR0. */
static void msix_entry(struct th *t, unsigned v, uint64_t addr, uint32_t data)
{
	uint32_t off = T_MSIX_TABLE + v * 16;
	assert_int_equal(ferry_client_write64(t->c, 0, off, addr), 0);
	assert_int_equal(ferry_client_write32(t->c, 0, off + 8, data), 0);
	assert_int_equal(ferry_client_write32(t->c, 0, off + 12, 0), 0);
}

static void read_config(struct th *t, uint8_t *cfg)
{
	for (uint32_t off = 0; off < 4096; off += 256)
		assert_int_equal(ferry_client_region_read(t->c, FERRY_PCI_CONFIG, off, cfg + off, 256),
				 0);
}

static void test_stream_config_round_trip(void **state)
{
	(void)state;
	struct th *src = th_start(F_SC | F_PRE, 11, DATA_LEN);
	struct th *dst = th_start(F_SC | F_PRE, 99, DATA_LEN);
	uint16_t cmd = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, ctl;
	static uint8_t c1[4096], c2[4096];
	uint8_t e1[64], e2[64];
	size_t len;

	assert_int_equal(ferry_client_region_write(src->c, FERRY_PCI_CONFIG, PCI_COMMAND, &cmd, 2),
			 0);
	assert_int_equal(ferry_client_region_read(src->c, FERRY_PCI_CONFIG, 0x60 + PCI_MSIX_FLAGS,
						  &ctl, 2), 0);
	ctl |= PCI_MSIX_FLAGS_ENABLE;
	assert_int_equal(ferry_client_region_write(src->c, FERRY_PCI_CONFIG, 0x60 + PCI_MSIX_FLAGS,
						   &ctl, 2), 0);
	msix_entry(src, 1, 0xfee00000, 0x4041);
	assert_true(ferry_device_bus_master(src->dev));
	assert_false(ferry_device_bus_master(dst->dev));

	/* pre-copy: the initial half, then a change of vector 2, then stop-copy */
	assert_int_equal(ferry_client_mig_set_state(src->c, S(PRE_COPY)), 0);
	size_t n1, n2;
	uint8_t *pre = th_read_all(src, 65536, &n1);
	msix_entry(src, 2, 0xfee01000, 0x5051); /* after the prefix was read */
	assert_int_equal(ferry_client_mig_set_state(src->c, S(STOP_COPY)), 0);
	uint8_t *sc = th_read_all(src, 65536, &n2);
	len = n1 + n2;
	uint8_t *stream = malloc(len);
	memcpy(stream, pre, n1);
	memcpy(stream + n1, sc, n2);
	free(pre);
	free(sc);
	read_config(src, c1);

	th_expect(dst, 11, DATA_LEN);
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(RESUMING)), 0);
	assert_int_equal(th_write(dst, stream, len, 1 << 20), 0);
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(RUNNING)), 0);
	assert_memory_equal(dst->m.data, src->m.data, DATA_LEN);
	read_config(dst, c2);
	assert_memory_equal(c1, c2, sizeof(c1));
	assert_true(ferry_device_bus_master(dst->dev));
	assert_int_equal(ferry_client_mig_set_state(src->c, S(RUNNING)), 0);
	assert_int_equal(ferry_client_region_read(src->c, 0, T_MSIX_TABLE, e1, 64), 0);
	assert_int_equal(ferry_client_region_read(dst->c, 0, T_MSIX_TABLE, e2, 64), 0);
	assert_memory_equal(e1, e2, 64);
	uint32_t data2;
	memcpy(&data2, e2 + 2 * 16 + 8, 4);
	assert_int_equal(data2, 0x5051); /* the pre-copy change came with the trailer */
	free(stream);
	th_stop(src);
	th_stop(dst);
}

static void test_stream_other_device(void **state)
{
	(void)state;
	struct th *src = th_start(F_SC, 1, 1000);
	size_t len;
	uint8_t *stream = th_save(src, &len);

	/* another device id: the same layout, refused by config space */
	struct th *d1 = th_new(F_SC, 1, 1000, 0x10f1, T_MSIX_VECTORS);
	th_connect(d1, true);
	assert_int_equal(ferry_client_mig_set_state(d1->c, S(RESUMING)), 0);
	assert_int_equal(th_write(d1, stream, len, 1 << 20), -EINVAL);
	assert_int_equal(ferry_client_mig_set_state(d1->c, S(STOP)), -EINVAL);
	assert_int_equal(th_get(d1), S(RESUMING));
	assert_int_equal(d1->m.got_len, 0); /* the model saw nothing */
	th_stop(d1);

	/* another layout (MSI-X count): refused at the 32-byte header */
	struct th *d2 = th_new(F_SC, 1, 1000, 0x10f0, 8);
	th_connect(d2, true);
	assert_int_equal(ferry_client_mig_set_state(d2->c, S(RESUMING)), 0);
	assert_int_equal(th_write(d2, stream, 32, 32), -EINVAL);
	assert_int_equal(ferry_client_mig_set_state(d2->c, S(STOP)), -EINVAL);
	/* a reset starts over */
	assert_int_equal(ferry_client_reset(d2->c), 0);
	assert_int_equal(th_get(d2), S(RUNNING));
	th_stop(d2);
	free(stream);
	th_stop(src);
}

static void test_stream_truncated_corrupt(void **state)
{
	(void)state;
	struct th *src = th_start(F_SC, 4, 20000);
	struct th *dst = th_start(F_SC, 0, 20000);
	size_t len, lib;
	uint8_t *stream = th_save(src, &len);

	lib = len - 20000;
	th_expect(dst, 4, 20000);
	/* cut inside the prefix */
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(RESUMING)), 0);
	assert_int_equal(th_write(dst, stream, 20, 7), 0);
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(STOP)), -EINVAL);
	assert_int_equal(th_get(dst), S(RESUMING));
	assert_int_equal(ferry_client_reset(dst->c), 0);

	/* corrupt magic: refused at once, and sticky */
	uint8_t *bad = malloc(len);
	memcpy(bad, stream, len);
	bad[0] ^= 0x20;
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(RESUMING)), 0);
	assert_int_equal(th_write(dst, bad, 64, 64), -EINVAL);
	assert_int_equal(th_write(dst, stream + 64, 64, 64), -EINVAL);
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(STOP)), -EINVAL);
	assert_int_equal(ferry_client_reset(dst->c), 0);

	/* a flipped bit in the prefix's state: crc */
	memcpy(bad, stream, len);
	bad[100] ^= 1;
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(RESUMING)), 0);
	assert_int_equal(th_write(dst, bad, len, 4096), -EINVAL);
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(STOP)), -EINVAL);
	assert_int_equal(ferry_client_reset(dst->c), 0);

	/* cut inside the model's bytes: no trailer; the held-back bytes go to
	 * the model at RESUMING -> STOP and its validation refuses */
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(RESUMING)), 0);
	assert_int_equal(th_write(dst, stream, len / 2, 4096), 0);
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(STOP)), -EINVAL);
	assert_int_equal(th_get(dst), S(RESUMING));
	/* the prefix and the trailer are the same size: state + 32 bytes */
	assert_int_equal(dst->m.got_len, len / 2 - lib / 2);
	assert_int_equal(ferry_client_reset(dst->c), 0);

	/* a damaged trailer is not a trailer: it reaches the model as data */
	memcpy(bad, stream, len);
	bad[len - 1] ^= 1;
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(RESUMING)), 0);
	assert_int_equal(th_write(dst, bad, len, 65536), 0);
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(STOP)), -EINVAL);
	assert_int_equal(ferry_client_reset(dst->c), 0);

	/* and the intact stream passes; writing after its end is refused */
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(RESUMING)), 0);
	assert_int_equal(th_write(dst, stream, len, 65536), 0);
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(STOP)), 0);
	assert_int_equal(dst->m.got_len, 20000);
	free(bad);
	free(stream);
	th_stop(src);
	th_stop(dst);
}

static void test_write_chunk_boundaries(void **state)
{
	(void)state;
	static const size_t chunks[] = {1, 7, 65536};
	struct th *src = th_start(F_SC | F_PRE, 21, 70000);
	struct th *dst = th_start(F_SC | F_PRE, 0, 70000);
	size_t len;
	uint8_t *stream = th_save(src, &len);

	th_expect(dst, 21, 70000);
	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		assert_int_equal(ferry_client_reset(dst->c), 0);
		assert_int_equal(ferry_client_mig_set_state(dst->c, S(RESUMING)), 0);
		assert_int_equal(th_write(dst, stream, len, chunks[i]), 0);
		assert_int_equal(ferry_client_mig_set_state(dst->c, S(STOP)), 0);
		assert_int_equal(dst->m.got_len, 70000);
		assert_memory_equal(dst->m.got, src->m.data, 70000);
	}
	free(stream);
	th_stop(src);
	th_stop(dst);
}

static void test_read_fills_across_short_saves(void **state)
{
	(void)state;
	struct th *t = th_start(F_SC | F_PRE, 8, DATA_LEN);
	uint8_t *buf = malloc(65536);
	size_t got, total = 0, lib = lib_bytes(t);
	unsigned short_replies = 0;

	t->m.short_max = 100; /* the model returns 100 bytes per call */
	assert_int_equal(ferry_client_mig_set_state(t->c, S(STOP_COPY)), 0);
	do {
		assert_int_equal(ferry_client_mig_read(t->c, buf, 65536, &got), 0);
		total += got;
		if (got && got < 65536)
			short_replies++;
	} while (got);
	assert_int_equal(total, DATA_LEN + lib);
	assert_int_equal(short_replies, 1); /* only the last one */
	/* the end is final */
	assert_int_equal(ferry_client_mig_read(t->c, buf, 65536, &got), 0);
	assert_int_equal(got, 0);

	/* pre-copy: replies are full until the model's initial part ends */
	assert_int_equal(ferry_client_reset(t->c), 0);
	assert_int_equal(ferry_client_mig_set_state(t->c, S(PRE_COPY)), 0);
	total = 0;
	short_replies = 0;
	do {
		assert_int_equal(ferry_client_mig_read(t->c, buf, 4096, &got), 0);
		total += got;
		if (got && got < 4096)
			short_replies++;
	} while (got);
	assert_true(short_replies <= 1);
	assert_int_equal(total, DATA_LEN / 2 + lib / 2); /* prefix + the model's initial half */
	free(buf);
	th_stop(t);
}

/* ---- sizes ---- */

static void test_precopy_info(void **state)
{
	(void)state;
	struct th *t = th_start(F_SC | F_PRE, 6, DATA_LEN);
	uint64_t ib, db, lib = lib_bytes(t);
	uint8_t buf[4096];
	size_t got;

	assert_int_equal(ferry_client_server_caps(t->c)->extensions & FERRY_EXT_PRECOPY_INFO,
			 FERRY_EXT_PRECOPY_INFO);
	assert_int_equal(ferry_client_mig_set_state(t->c, S(PRE_COPY)), 0);
	assert_int_equal(ferry_client_mig_precopy_info(t->c, &ib, &db), 0);
	uint64_t prefix = ib - DATA_LEN / 2;
	assert_true(prefix > 32 && prefix < lib);
	assert_int_equal(db, 0);
	/* the prefix counts as initial data, byte by byte */
	assert_int_equal(ferry_client_mig_read(t->c, buf, 10, &got), 0);
	assert_int_equal(ferry_client_mig_precopy_info(t->c, &ib, &db), 0);
	assert_int_equal(ib, DATA_LEN / 2 + prefix - 10);
	assert_int_equal(ferry_client_mig_read(t->c, buf, sizeof(buf), &got), 0);
	assert_int_equal(ferry_client_mig_precopy_info(t->c, &ib, &db), 0);
	assert_int_equal(ib, DATA_LEN / 2 + prefix - 10 - sizeof(buf));
	do
		assert_int_equal(ferry_client_mig_read(t->c, buf, sizeof(buf), &got), 0);
	while (got);
	assert_int_equal(ferry_client_mig_precopy_info(t->c, &ib, &db), 0);
	assert_int_equal(ib, 0);
	th_stop(t);

	/* without the extension: not offered, not answered */
	t = th_start_ext(F_SC | F_PRE, 6, 1000, false);
	assert_int_equal(ferry_client_server_caps(t->c)->extensions & FERRY_EXT_PRECOPY_INFO, 0);
	assert_int_equal(ferry_client_mig_set_state(t->c, S(PRE_COPY)), 0);
	assert_int_equal(ferry_client_mig_precopy_info(t->c, &ib, &db), -EOPNOTSUPP);
	size_t n;
	assert_int_equal(ferry_client_feature(t->c, FERRY_FEATURE_PRECOPY_INFO |
					      VFIO_DEVICE_FEATURE_GET, NULL, 0, NULL, 0, buf,
					      sizeof(buf), &n), -ENOTTY);
	th_stop(t);

	/* a device without PRE_COPY does not offer it */
	t = th_start(F_SC, 6, 1000);
	assert_int_equal(ferry_client_server_caps(t->c)->extensions & FERRY_EXT_PRECOPY_INFO, 0);
	assert_int_equal(ferry_client_server_caps(t->c)->extensions & FERRY_EXT_MIG_SHM,
			 FERRY_EXT_MIG_SHM);
	th_stop(t);
}

static void test_data_size(void **state)
{
	(void)state;
	struct th *t = th_start(F_SC | F_PRE, 6, DATA_LEN);
	uint64_t est;
	size_t len;
	uint8_t *s;

	assert_int_equal(ferry_client_mig_data_size(t->c, &est), 0);
	s = th_save(t, &len);
	free(s);
	assert_int_equal(est, len); /* the full stream, library bytes included */
	assert_int_equal(ferry_client_reset(t->c), 0);

	/* in STOP_COPY before reading: exactly what comes; after: 0 */
	assert_int_equal(ferry_client_mig_set_state(t->c, S(STOP_COPY)), 0);
	assert_int_equal(ferry_client_mig_data_size(t->c, &est), 0);
	s = th_read_all(t, 1 << 20, &len);
	free(s);
	assert_int_equal(est, len);
	assert_int_equal(ferry_client_mig_data_size(t->c, &est), 0);
	assert_int_equal(est, 0);
	th_stop(t);
}

/* ---- resets from other threads ---- */

/* A reset asked for inside a callback runs when the command ends. */
static void test_reset_from_callback(void **state)
{
	(void)state;
	struct th *t = th_start(F_SC, 6, 1000);
	int resets = t->m.resets;

	t->m.reset_in_arc = true;
	assert_int_equal(ferry_client_mig_set_state(t->c, S(STOP)), 0); /* the SET completes */
	assert_int_equal(th_get(t), S(RUNNING));                      /* then the reset won */
	assert_int_equal(t->m.resets, resets + 1);
	assert_int_equal(t->m.bad_arcs, 0);
	th_stop(t);
}

struct stress {
	struct th *t;
	atomic_bool stop, done;
	atomic_int sets, resets, failures;
};

static void *stress_setter(void *arg)
{
	struct stress *s = arg;
	static const enum ferry_mig_state seq[] = {S(STOP_COPY), S(STOP), S(PRE_COPY), S(RUNNING),
						   S(STOP_COPY), S(RUNNING)};
	for (unsigned i = 0; !atomic_load(&s->stop); i++) {
		if (ferry_client_mig_set_state(s->t->c, seq[i % 6]) < 0)
			atomic_fetch_add(&s->failures, 1);
		atomic_fetch_add(&s->sets, 1);
	}
	return NULL;
}

static void *stress_resetter(void *arg)
{
	struct stress *s = arg;
	while (!atomic_load(&s->stop)) {
		if (ferry_device_reset(s->t->dev) < 0)
			atomic_fetch_add(&s->failures, 1);
		atomic_fetch_add(&s->resets, 1);
		usleep(200);
	}
	return NULL;
}

static void *watchdog(void *arg)
{
	struct stress *s = arg;
	for (int i = 0; i < 300 && !atomic_load(&s->done); i++)
		usleep(100000);
	if (!atomic_load(&s->done)) {
		fprintf(stderr, "reset stress: no progress in 30 s: deadlock\n");
		abort();
	}
	return NULL;
}

static void test_reset_stress(void **state)
{
	(void)state;
	struct stress s = {0};
	pthread_t a, b, w;

	s.t = th_start(F_SC | F_P2P | F_PRE, 6, 4096);
	s.t->m.arc_delay_us = 300;
	assert_int_equal(pthread_create(&w, NULL, watchdog, &s), 0);
	assert_int_equal(pthread_create(&a, NULL, stress_setter, &s), 0);
	assert_int_equal(pthread_create(&b, NULL, stress_resetter, &s), 0);
	usleep(1500000);
	atomic_store(&s.stop, true);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	assert_int_equal(ferry_device_reset(s.t->dev), 0); /* the last one */
	atomic_store(&s.done, true);
	pthread_join(w, NULL);
	assert_int_equal(atomic_load(&s.failures), 0);
	assert_true(atomic_load(&s.sets) > 10);
	assert_true(atomic_load(&s.resets) > 10);
	assert_int_equal(ferry_device_mig_state(s.t->dev), S(RUNNING));
	assert_int_equal(th_get(s.t), S(RUNNING));
	assert_int_equal(s.t->m.state, S(RUNNING));
	assert_int_equal(s.t->m.bad_arcs, 0); /* never an arc from a state it was not in */
	th_stop(s.t);
}

/* ---- disconnect ---- */

static void test_disconnect_back_to_running(void **state)
{
	(void)state;
	char path[64];
	struct tarc arcs[8];
	uint8_t buf[16];
	size_t got;

	snprintf(path, sizeof(path), "/tmp/ferry-mig-test-%d.sock", (int)getpid());
	struct th *t = th_new(F_SC, 6, 1000, 0x10f0, T_MSIX_VECTORS);
	th_listen(t, path);
	th_connect_path(t, path);
	assert_int_equal(ferry_client_mig_set_state(t->c, S(STOP_COPY)), 0);
	assert_int_equal(ferry_client_mig_read(t->c, buf, sizeof(buf), &got), 0);
	th_clear_arcs(t);
	ferry_client_close(t->c);
	/* the next client is served only after the device is back in RUNNING */
	th_connect_path(t, path);
	assert_int_equal(th_get(t), S(RUNNING));
	assert_int_equal(th_arcs(t, arcs, 8), 2); /* through the arcs */
	assert_int_equal(arcs[0].from, S(STOP_COPY));
	assert_int_equal(arcs[0].to, S(STOP));
	assert_int_equal(arcs[1].to, S(RUNNING));
	assert_int_equal(t->m.state, S(RUNNING));

	/* RESUMING: through a reset (a half stream cannot pass RESUMING -> STOP) */
	assert_int_equal(ferry_client_mig_set_state(t->c, S(RESUMING)), 0);
	assert_int_equal(ferry_client_mig_write(t->c, buf, 5), 0);
	pthread_mutex_lock(&t->m.lock);
	int resets = t->m.resets;
	pthread_mutex_unlock(&t->m.lock);
	ferry_client_close(t->c);
	th_connect_path(t, path);
	assert_int_equal(th_get(t), S(RUNNING));
	assert_int_equal(t->m.resets, resets + 1);
	assert_int_equal(t->m.state, S(RUNNING));
	/* and a new restore starts from a clean stream */
	size_t len;
	uint8_t *stream = th_save(t, &len);
	th_expect(t, 6, 1000);
	assert_int_equal(ferry_client_mig_set_state(t->c, S(RESUMING)), 0);
	assert_int_equal(th_write(t, stream, len, 4096), 0);
	assert_int_equal(ferry_client_mig_set_state(t->c, S(RUNNING)), 0);
	free(stream);
	th_stop(t);
}

/* ---- mig_shm ---- */

static void test_mig_shm(void **state)
{
	(void)state;
	struct th *src = th_start(F_SC | F_PRE, 31, DATA_LEN);
	struct th *dst = th_start(F_SC | F_PRE, 0, DATA_LEN);
	const uint32_t slot = 65536;
	uint64_t size = 4 * slot;
	uint32_t got;
	int fd;

	assert_int_equal(ferry_mig_shm_create(size, &fd), 0);
	assert_int_equal(ferry_client_mig_shm_setup(src->c, fd, size), 0);
	assert_int_equal(ferry_client_mig_shm_setup(dst->c, fd, size), 0);
	/* not in RUNNING */
	assert_int_equal(ferry_client_mig_read_shm(src->c, 0, slot, &got), -EINVAL);

	th_expect(dst, 31, DATA_LEN);
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(RESUMING)), 0);
	assert_int_equal(ferry_client_mig_set_state(src->c, S(PRE_COPY)), 0);
	unsigned k = 0;
	for (int phase = 0; phase < 2; phase++) {
		for (;; k++) {
			uint64_t off = (k % 4) * slot;
			if (k % 3 == 2) { /* mixing both ways in one stream is fine */
				uint8_t buf[1000];
				size_t n;
				assert_int_equal(ferry_client_mig_read(src->c, buf, sizeof(buf), &n), 0);
				got = (uint32_t)n;
				if (got)
					assert_int_equal(ferry_client_mig_write(dst->c, buf, n), 0);
			} else {
				assert_int_equal(ferry_client_mig_read_shm(src->c, off, slot, &got), 0);
				if (got)
					assert_int_equal(ferry_client_mig_write_shm(dst->c, off, got), 0);
			}
			if (!got)
				break;
		}
		if (phase == 0)
			assert_int_equal(ferry_client_mig_set_state(src->c, S(STOP_COPY)), 0);
	}
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(STOP)), 0);
	assert_memory_equal(dst->m.data, src->m.data, DATA_LEN);

	/* the end is final; range and buffer checks in a new session */
	assert_int_equal(ferry_client_mig_read_shm(src->c, 0, slot, &got), 0);
	assert_int_equal(got, 0);
	assert_int_equal(ferry_client_reset(src->c), 0);
	assert_int_equal(ferry_client_mig_set_state(src->c, S(STOP_COPY)), 0);
	assert_int_equal(ferry_client_mig_read_shm(src->c, size - 10, 11, &got), -EINVAL);
	assert_int_equal(ferry_client_mig_read_shm(src->c, UINT64_MAX - 4, 10, &got), -EINVAL);
	assert_int_equal(ferry_client_mig_read_shm(src->c, size - 10, 10, &got), 0);
	assert_int_equal(got, 10);
	assert_int_equal(ferry_client_mig_shm_release(src->c), 0);
	assert_int_equal(ferry_client_mig_read_shm(src->c, 0, 10, &got), -EINVAL);
	/* a memfd that could shrink is refused */
	int loose = memfd_create("loose", MFD_CLOEXEC);
	assert_int_equal(ftruncate(loose, 4096), 0);
	assert_int_equal(ferry_client_mig_shm_setup(src->c, loose, 4096), -EINVAL);
	assert_int_equal(ferry_client_mig_shm_setup(src->c, fd, size + 4096), -EINVAL);
	close(loose);
	close(fd);
	th_stop(src);
	th_stop(dst);

	/* without the extension the calls send nothing */
	struct th *t = th_start_ext(F_SC, 1, 100, false);
	assert_int_equal(ferry_client_mig_shm_setup(t->c, 0, 4096), -EOPNOTSUPP);
	assert_int_equal(ferry_client_mig_read_shm(t->c, 0, 10, &got), -EOPNOTSUPP);
	assert_int_equal(ferry_client_mig_write_shm(t->c, 0, 10), -EOPNOTSUPP);
	th_stop(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_migration_checks),
		cmocka_unit_test(test_paths_all_flag_sets),
		cmocka_unit_test(test_paths_literal),
		cmocka_unit_test(test_failing_arc_restored),
		cmocka_unit_test(test_failing_arc_error),
		cmocka_unit_test(test_reset_every_state),
		cmocka_unit_test(test_gating),
		cmocka_unit_test(test_bad_data_requests),
		cmocka_unit_test(test_quiesce_dma_irq),
		cmocka_unit_test(test_stream_config_round_trip),
		cmocka_unit_test(test_stream_other_device),
		cmocka_unit_test(test_stream_truncated_corrupt),
		cmocka_unit_test(test_write_chunk_boundaries),
		cmocka_unit_test(test_read_fills_across_short_saves),
		cmocka_unit_test(test_precopy_info),
		cmocka_unit_test(test_data_size),
		cmocka_unit_test(test_reset_from_callback),
		cmocka_unit_test(test_reset_stress),
		cmocka_unit_test(test_disconnect_back_to_running),
		cmocka_unit_test(test_mig_shm),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
