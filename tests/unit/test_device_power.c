/*
 * Device side, low power (lib/device/power.c, docs/power.md): the features
 * LOW_POWER_ENTRY (3), LOW_POWER_ENTRY_WITH_WAKEUP (4), LOW_POWER_EXIT (5)
 * over the wire, seen by a raw client that negotiated ferry's low_power
 * extension: envelope rules and refusals (one log line each, fds closed),
 * PMCSR, the model's power_changed hook, wake on trapped access (plain:
 * back to low power; wakeup: the eventfd fires exactly once), config space
 * never waking, PMCSR writes while low, reset, FLR, disconnect, the
 * migration contract (power_wake_for), 1000 enter/exit cycles without an
 * fd leak, and ENOTTY for a client without the extension.
 */
#include "device_harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/un.h>

#include <ferry/log.h>
#include "device/device_priv.h"

#define F_SET VFIO_DEVICE_FEATURE_SET
#define F_GET VFIO_DEVICE_FEATURE_GET
#define F_PROBE VFIO_DEVICE_FEATURE_PROBE
#define LP_ENTRY VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY
#define LP_WAKEUP VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP
#define LP_EXIT VFIO_DEVICE_FEATURE_LOW_POWER_EXIT

/* ---- the model's view: power_changed calls and what ran while low ---- */

static atomic_int g_lows, g_wakes, g_misordered, g_work_while_low, g_is_low;

static void p_power_changed(void *opaque, bool low)
{
	(void)opaque;
	if (low == (bool)atomic_load(&g_is_low))
		atomic_fetch_add(&g_misordered, 1); /* calls must alternate */
	atomic_store(&g_is_low, low);
	atomic_fetch_add(low ? &g_lows : &g_wakes, 1);
}

static int p_region_access(void *opaque, unsigned region, uint64_t off, void *buf,
			   uint32_t count, bool is_write)
{
	if (atomic_load(&g_is_low))
		atomic_fetch_add(&g_work_while_low, 1);
	return h_region_access(opaque, region, off, buf, count, is_write);
}

static int p_reset(void *opaque)
{
	if (atomic_load(&g_is_low))
		atomic_fetch_add(&g_work_while_low, 1);
	return h_reset(opaque);
}

static struct ferry_device_ops p_ops;

static void model_reset_counters(void)
{
	atomic_store(&g_lows, 0);
	atomic_store(&g_wakes, 0);
	atomic_store(&g_misordered, 0);
	atomic_store(&g_work_while_low, 0);
	atomic_store(&g_is_low, 0);
}

/* ---- error log lines ---- */

static atomic_int g_err_lines;

static void count_sink(enum ferry_log_level level, const char *line, void *opaque)
{
	(void)line, (void)opaque;
	if (level == FERRY_LOG_ERR)
		atomic_fetch_add(&g_err_lines, 1);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* ---- a device and a raw client offering @ext ---- */

static struct harness *p_start_ext(uint32_t ext)
{
	struct harness *h = h_new();
	struct ferry_device_info info;
	struct wire_transport *tr;
	struct wire_chan_opts o = {.name = "test-client", .timeout_ms = 5000};
	struct wire_caps mine;
	int sv[2], twin_fd;

	model_reset_counters();
	h_fill_info(h, &info);
	p_ops = h_ops;
	p_ops.region_access = p_region_access;
	p_ops.reset = p_reset;
	p_ops.power_changed = p_power_changed;
	info.ops = &p_ops;
	assert_int_equal(ferry_device_create(&info, &h->dev), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(ferry_device_attach_fd(h->dev, sv[0]), 0);
	assert_int_equal(ferry_device_start(h->dev), 0);
	assert_int_equal(wire_transport_sock_create(sv[1], &tr), 0);
	assert_int_equal(wire_chan_create(tr, &o, &h->ch), 0);
	wire_caps_default(&mine);
	mine.max_msg_fds = 16;
	mine.ferry_ext = ext;
	assert_int_equal(wire_version_client(h->ch, &mine, &h->server, &twin_fd), 0);
	assert_int_equal(twin_fd, -1);
	/* One round trip: the device has finished with VERSION (and closed
	 * its spare twin-socket pair) before any test counts fds. */
	assert_int_equal(h_cfg_read(h, PCI_VENDOR_ID, 2), 0x1af4);
	return h;
}

static struct harness *p_start(void)
{
	struct harness *h = p_start_ext(WIRE_EXT_LOW_POWER);
	assert_true(h->server.ferry_ext & WIRE_EXT_LOW_POWER);
	return h;
}

/* A SET of feature @feat with @data and @fds; returns 0 or -errno. */
static int p_set(struct harness *h, uint32_t feat, const void *data, size_t len, const int *fds,
		 unsigned nfds)
{
	uint8_t msg[64];
	struct vfio_user_device_feature f = {.argsz = (uint32_t)(8 + len), .flags = feat | F_SET};
	struct wire_msg r;
	assert_true(len <= sizeof(msg) - 8);
	memcpy(msg, &f, 8);
	if (len)
		memcpy(msg + 8, data, len);
	int rc = h_call_fds(h, VFIO_USER_DEVICE_FEATURE, msg, 8 + len, fds, nfds, &r);
	if (rc == 0) {
		assert_int_equal(r.len, 8 + len); /* SET echoes the request */
		assert_int_equal(r.nfds, 0);
		wire_msg_release(&r);
	}
	return rc;
}

static int p_enter(struct harness *h)
{
	return p_set(h, LP_ENTRY, NULL, 0, NULL, 0);
}

static int p_enter_wakeup(struct harness *h, int efd)
{
	struct vfio_user_low_power_entry_with_wakeup w = {.wakeup_eventfd = 0};
	return p_set(h, LP_WAKEUP, &w, sizeof(w), &efd, 1);
}

static int p_exit(struct harness *h)
{
	return p_set(h, LP_EXIT, NULL, 0, NULL, 0);
}

static unsigned p_pmcsr_state(struct harness *h)
{
	unsigned pm = h_find_cap(h, PCI_CAP_ID_PM);
	assert_true(pm != 0);
	return h_cfg_read(h, pm + PCI_PM_CTRL, 2) & PCI_PM_CTRL_STATE_MASK;
}

/* The eventfd's count, read (and so cleared); 0 when none. */
static uint64_t efd_take(int efd)
{
	eventfd_t v = 0;
	if (eventfd_read(efd, &v) < 0) {
		assert_int_equal(errno, EAGAIN);
		return 0;
	}
	return v;
}

static void bar0_touch(struct harness *h)
{
	uint32_t v = 0x5a5a5a5a, back = 0;
	assert_int_equal(h_region_write(h, 0, 0x10, &v, 4), 0);
	assert_int_equal(h_region_read(h, 0, 0x10, &back, 4), 0);
	assert_int_equal(back, v);
}

/* ---- tests ---- */

static void test_not_negotiated(void **state)
{
	(void)state;
	struct harness *h = h_start(false); /* the harness client offers no extension */
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct wire_msg r;

	assert_int_equal(h->server.ferry_ext, 0);
	assert_int_equal(p_enter(h), -ENOTTY);
	assert_int_equal(p_enter_wakeup(h, efd), -ENOTTY);
	assert_int_equal(p_exit(h), -ENOTTY);
	assert_int_equal(h_feature(h, LP_ENTRY | F_PROBE | F_SET, 8, NULL, 0, &r), -ENOTTY);
	assert_int_equal(p_pmcsr_state(h), 0);
	assert_int_equal(efd_take(efd), 0);
	close(efd);
	h_stop(h);

	/* A client offering other extensions only: same. */
	h = p_start_ext(WIRE_EXT_PRECOPY_INFO);
	assert_false(h->server.ferry_ext & WIRE_EXT_LOW_POWER);
	assert_int_equal(p_enter(h), -ENOTTY);
	h_stop(h);
}

static void test_envelope(void **state)
{
	(void)state;
	struct harness *h = p_start();
	struct wire_msg r;
	uint32_t feats[] = {LP_ENTRY, LP_WAKEUP, LP_EXIT};

	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(h_feature(h, feats[i] | F_PROBE | F_SET, 8, NULL, 0, &r), 0);
		wire_msg_release(&r);
		assert_int_equal(h_feature(h, feats[i] | F_PROBE, 8, NULL, 0, &r), 0);
		wire_msg_release(&r);
		assert_int_equal(h_feature(h, feats[i] | F_PROBE | F_GET, 8, NULL, 0, &r), -EINVAL);
		assert_int_equal(h_feature(h, feats[i] | F_GET, 64, NULL, 0, &r), -EINVAL);
	}
	/* Data shorter than the wakeup struct. */
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	uint32_t four = 0;
	assert_int_equal(p_set(h, LP_WAKEUP, &four, sizeof(four), &efd, 1), -EINVAL);
	/* fds where none are taken: the plain entry, the exit, a PROBE, DMA logging. */
	assert_int_equal(p_set(h, LP_ENTRY, NULL, 0, &efd, 1), -EINVAL);
	assert_int_equal(p_set(h, LP_EXIT, NULL, 0, &efd, 1), -EINVAL);
	assert_int_equal(p_set(h, LP_WAKEUP | F_PROBE, NULL, 0, &efd, 1), -EINVAL);
	assert_int_equal(p_set(h, VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, NULL, 0, &efd, 1),
			 -EINVAL);
	/* Nothing of it engaged low power. */
	assert_int_equal(p_pmcsr_state(h), 0);
	assert_int_equal(atomic_load(&g_lows), 0);
	close(efd);
	h_stop(h);
}

static void test_plain_entry(void **state)
{
	(void)state;
	struct harness *h = p_start();
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	assert_int_equal(p_exit(h), 0); /* no entry: a no-op */
	assert_int_equal(atomic_load(&g_wakes), 0);

	assert_int_equal(p_enter(h), 0);
	assert_int_equal(p_pmcsr_state(h), 3);
	assert_int_equal(atomic_load(&g_lows), 1);

	/* A second entry of either kind is refused, with one log line. */
	ferry_log_set_sink(count_sink, NULL);
	atomic_store(&g_err_lines, 0);
	assert_int_equal(p_enter(h), -EINVAL);
	assert_int_equal(atomic_load(&g_err_lines), 1);
	atomic_store(&g_err_lines, 0);
	assert_int_equal(p_enter_wakeup(h, efd), -EINVAL);
	assert_int_equal(atomic_load(&g_err_lines), 1);
	ferry_log_set_sink(NULL, NULL);

	/* Config space does not wake it. */
	for (int i = 0; i < 8; i++)
		assert_int_equal(p_pmcsr_state(h), 3);
	assert_int_equal(atomic_load(&g_wakes), 0);

	/* A trapped access wakes it for the access only; the model saw it awake. */
	bar0_touch(h);
	assert_int_equal(atomic_load(&g_wakes), 2);
	assert_int_equal(atomic_load(&g_lows), 3);
	assert_int_equal(p_pmcsr_state(h), 3);
	/* The MSI-X table (library-emulated, in a BAR) and the ROM-less BAR4. */
	uint32_t v;
	assert_int_equal(h_region_read(h, 4, H_MSIX_TABLE, &v, 4), 0);
	assert_int_equal(h_region_read(h, 4, 0x2000, &v, 4), 0);
	assert_int_equal(atomic_load(&g_wakes), 4);
	assert_int_equal(p_pmcsr_state(h), 3);

	/* EXIT: D0, the model is told, nothing signalled. */
	assert_int_equal(p_exit(h), 0);
	assert_int_equal(p_pmcsr_state(h), 0);
	assert_int_equal(atomic_load(&g_wakes), 5);
	assert_int_equal(p_exit(h), 0); /* again: no-op */
	assert_int_equal(atomic_load(&g_wakes), 5);
	bar0_touch(h);
	assert_int_equal(atomic_load(&g_lows), 5);

	assert_int_equal(efd_take(efd), 0);
	assert_int_equal(atomic_load(&g_misordered), 0);
	assert_int_equal(atomic_load(&g_work_while_low), 0);
	close(efd);
	h_stop(h);
}

static void test_wakeup_entry(void **state)
{
	(void)state;
	struct harness *h = p_start();
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	assert_int_equal(p_enter_wakeup(h, efd), 0);
	assert_int_equal(p_pmcsr_state(h), 3);
	assert_int_equal(efd_take(efd), 0); /* config reads did not wake it */
	assert_int_equal(p_enter(h), -EINVAL);

	/* The first trapped access: one signal, and the entry is over. */
	bar0_touch(h);
	assert_int_equal(efd_take(efd), 1);
	assert_int_equal(p_pmcsr_state(h), 0);
	assert_int_equal(atomic_load(&g_lows), 1);
	assert_int_equal(atomic_load(&g_wakes), 1);
	bar0_touch(h); /* no second signal, no re-entry */
	assert_int_equal(efd_take(efd), 0);
	assert_int_equal(atomic_load(&g_lows), 1);

	/* EXIT after the wake-up: a no-op success, no signal. */
	assert_int_equal(p_exit(h), 0);
	assert_int_equal(efd_take(efd), 0);
	assert_int_equal(atomic_load(&g_wakes), 1);

	/* A new entry is allowed; EXIT before any access signals, as the
	 * kernel's EXIT resumes the suspended device. */
	assert_int_equal(p_enter_wakeup(h, efd), 0);
	assert_int_equal(p_exit(h), 0);
	assert_int_equal(efd_take(efd), 1);
	assert_int_equal(p_pmcsr_state(h), 0);
	assert_int_equal(p_exit(h), 0);
	assert_int_equal(efd_take(efd), 0);

	/* A message access to a sparse mmap area wakes it too. */
	assert_int_equal(p_enter_wakeup(h, efd), 0);
	assert_int_equal(h_region_read(h, 2, 0, &(uint32_t){0}, 4), 0);
	assert_int_equal(efd_take(efd), 1);

	/* The device kept its own duplicate: closing ours after the entry is fine. */
	int efd2 = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int dup_fd = dup(efd2);
	assert_int_equal(p_enter_wakeup(h, dup_fd), 0);
	close(dup_fd);
	bar0_touch(h);
	assert_int_equal(efd_take(efd2), 1);
	close(efd2);

	assert_int_equal(atomic_load(&g_misordered), 0);
	assert_int_equal(atomic_load(&g_work_while_low), 0);
	close(efd);
	h_stop(h);
}

static void test_wakeup_bad_args(void **state)
{
	(void)state;
	struct harness *h = p_start();
	struct vfio_user_low_power_entry_with_wakeup w = {.wakeup_eventfd = 0};
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int pfd[2];
	int mfd = memfd_create("not-an-eventfd", MFD_CLOEXEC);
	int two[2] = {efd, efd};

	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	int before = count_fds();
	ferry_log_set_sink(count_sink, NULL);
	struct {
		int32_t idx;
		uint32_t reserved;
		const int *fds;
		unsigned nfds;
	} bad[] = {
		{0, 0, NULL, 0},      /* no fd */
		{0, 0, &pfd[0], 1},   /* a pipe */
		{0, 0, &mfd, 1},      /* a memfd */
		{0, 0, &h->bar2_fd, 1},
		{1, 0, &efd, 1},      /* index past the fds */
		{-1, 0, &efd, 1},     /* the kernel's fd < 0 */
		{0, 1, &efd, 1},      /* reserved */
		{0, 0, two, 2},       /* two fds (the dispatcher's limit) */
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		w.wakeup_eventfd = bad[i].idx;
		w.reserved = bad[i].reserved;
		atomic_store(&g_err_lines, 0);
		assert_int_equal(p_set(h, LP_WAKEUP, &w, sizeof(w), bad[i].fds, bad[i].nfds),
				 -EINVAL);
		assert_int_equal(atomic_load(&g_err_lines), 1);
	}
	ferry_log_set_sink(NULL, NULL);
	assert_int_equal(p_pmcsr_state(h), 0);
	assert_int_equal(atomic_load(&g_lows), 0);
	assert_int_equal(count_fds(), before); /* the server closed every fd it got */
	assert_int_equal(efd_take(efd), 0);

	close(pfd[0]);
	close(pfd[1]);
	close(mfd);
	close(efd);
	h_stop(h);
}

static void test_pmcsr_writes(void **state)
{
	(void)state;
	struct harness *h = p_start();
	unsigned pm = h_find_cap(h, PCI_CAP_ID_PM);
	uint32_t ctrl = h_cfg_read(h, pm + PCI_PM_CTRL, 2);

	/* Low: a guest write of D0 neither wakes it nor shows. */
	assert_int_equal(p_enter(h), 0);
	h_cfg_write(h, pm + PCI_PM_CTRL, 2, ctrl & ~PCI_PM_CTRL_STATE_MASK);
	assert_int_equal(p_pmcsr_state(h), 3);
	assert_int_equal(atomic_load(&g_wakes), 0);
	assert_int_equal(p_exit(h), 0);
	assert_int_equal(p_pmcsr_state(h), 0);

	/* Awake: PMCSR is the guest's. A guest in D3hot enters; the exit
	 * reads D0, as the kernel moves the device to D0 around runtime PM. */
	h_cfg_write(h, pm + PCI_PM_CTRL, 2, (ctrl & ~PCI_PM_CTRL_STATE_MASK) | 3);
	assert_int_equal(p_pmcsr_state(h), 3);
	assert_int_equal(atomic_load(&g_lows), 1); /* no hook for the guest's own write */
	assert_int_equal(p_enter(h), 0);
	assert_int_equal(p_exit(h), 0);
	assert_int_equal(p_pmcsr_state(h), 0);
	h_stop(h);
}

static void test_reset_and_flr(void **state)
{
	(void)state;
	struct harness *h = p_start();
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct wire_msg r;

	/* Plain: the reset runs with the device awake; low power stays engaged. */
	assert_int_equal(p_enter(h), 0);
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_RESET, NULL, 0, &r), 0);
	wire_msg_release(&r);
	assert_int_equal(atomic_load(&h->resets), 1);
	assert_int_equal(p_pmcsr_state(h), 3);
	assert_int_equal(atomic_load(&g_wakes), 1);
	assert_int_equal(atomic_load(&g_lows), 2);
	assert_int_equal(p_enter(h), -EINVAL); /* still engaged */

	/* FLR through config space: the same. */
	unsigned exp = h_find_cap(h, PCI_CAP_ID_EXP);
	assert_true(exp != 0);
	h_cfg_write(h, exp + PCI_EXP_DEVCTL, 2, PCI_EXP_DEVCTL_BCR_FLR);
	assert_int_equal(atomic_load(&h->resets), 2);
	assert_int_equal(p_pmcsr_state(h), 3);
	assert_int_equal(p_exit(h), 0);

	/* Wakeup: the reset is the wake-up. */
	assert_int_equal(p_enter_wakeup(h, efd), 0);
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_RESET, NULL, 0, &r), 0);
	wire_msg_release(&r);
	assert_int_equal(efd_take(efd), 1);
	assert_int_equal(p_pmcsr_state(h), 0);
	assert_int_equal(p_exit(h), 0);
	assert_int_equal(efd_take(efd), 0);

	assert_int_equal(atomic_load(&g_misordered), 0);
	assert_int_equal(atomic_load(&g_work_while_low), 0);
	close(efd);
	h_stop(h);
}

static void p_connect(struct harness *h, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct wire_transport *tr;
	struct wire_chan_opts o = {.name = "test-client", .timeout_ms = 5000};
	struct wire_caps mine;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), twin;

	memcpy(sa.sun_path, path, strlen(path) + 1);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(wire_transport_sock_create(fd, &tr), 0);
	assert_int_equal(wire_chan_create(tr, &o, &h->ch), 0);
	wire_caps_default(&mine);
	mine.ferry_ext = WIRE_EXT_LOW_POWER;
	assert_int_equal(wire_version_client(h->ch, &mine, &h->server, &twin), 0);
}

static void test_disconnect(void **state)
{
	(void)state;
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int before = count_fds();
	struct harness *h = h_new();
	struct ferry_device_info info;
	char dir[] = "/tmp/ferry-power-XXXXXX", path[128];

	model_reset_counters();
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/dev.sock", dir);
	h_fill_info(h, &info);
	p_ops = h_ops;
	p_ops.power_changed = p_power_changed;
	info.ops = &p_ops;
	assert_int_equal(ferry_device_create(&info, &h->dev), 0);
	assert_int_equal(ferry_device_listen(h->dev, path), 0);
	assert_int_equal(ferry_device_start(h->dev), 0);

	/* A client that comes and goes: the fds of an idle device. */
	p_connect(h, path);
	h_disconnect(h);
	for (int i = 0; i < 1000 && atomic_load(&h->detached) < 1; i++)
		usleep(2000);
	int idle = count_fds();

	/* One that leaves in low power: the device leaves it without
	 * signalling and closes its duplicate of the eventfd. */
	p_connect(h, path);
	assert_int_equal(p_enter_wakeup(h, efd), 0);
	h_disconnect(h);
	for (int i = 0; i < 1000 && atomic_load(&h->detached) < 2; i++)
		usleep(2000);
	assert_int_equal(atomic_load(&h->detached), 2);
	assert_int_equal(atomic_load(&g_wakes), 1);
	assert_int_equal(efd_take(efd), 0);
	assert_int_equal(count_fds(), idle);

	/* The next client finds it in D0, free to enter. */
	p_connect(h, path);
	assert_int_equal(p_pmcsr_state(h), 0);
	assert_int_equal(p_enter(h), 0);
	assert_int_equal(p_exit(h), 0);
	h_disconnect(h);
	ferry_device_stop(h->dev);
	ferry_device_destroy(h->dev);
	rmdir(dir);
	close(h->bar2_fd);
	free(h);
	assert_int_equal(count_fds(), before);
	assert_int_equal(efd_take(efd), 0);
	assert_int_equal(atomic_load(&g_misordered), 0);
	close(efd);
}

static void test_cycles_no_leak(void **state)
{
	(void)state;
	struct harness *h = p_start();
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int before = count_fds();

	for (int i = 0; i < 1000; i++) {
		assert_int_equal(p_enter(h), 0);
		if (i % 2)
			bar0_touch(h);
		assert_int_equal(p_exit(h), 0);

		assert_int_equal(p_enter_wakeup(h, efd), 0);
		if (i % 2) { /* woken by an access, then an optional EXIT */
			bar0_touch(h);
			assert_int_equal(efd_take(efd), 1);
		}
		assert_int_equal(p_exit(h), 0);
		if (!(i % 2))
			assert_int_equal(efd_take(efd), 1);
		assert_int_equal(efd_take(efd), 0);
	}
	assert_int_equal(count_fds(), before);
	assert_int_equal(p_pmcsr_state(h), 0);
	/* entries 2000, plain accesses 500 x 2 (each wakes and sleeps again) */
	assert_int_equal(atomic_load(&g_lows), 3000);
	assert_int_equal(atomic_load(&g_wakes), 3000);
	assert_int_equal(atomic_load(&g_misordered), 0);
	assert_int_equal(atomic_load(&g_work_while_low), 0);
	close(efd);
	h_stop(h);
}

/* The contract the migration module relies on, driven directly on a
 * device without a thread (power_wake_for is message-thread-only). */
static void test_migration_contract(void **state)
{
	(void)state;
	struct harness *h = h_new();
	struct ferry_device_info info;
	struct ferry_device *dev;
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct vfio_user_low_power_entry_with_wakeup w = {.wakeup_eventfd = 0};
	struct wire_msg m = {.nfds = 1};

	model_reset_counters();
	h_fill_info(h, &info);
	p_ops = h_ops;
	p_ops.power_changed = p_power_changed;
	info.ops = &p_ops;
	assert_int_equal(ferry_device_create(&info, &dev), 0);

	/* Plain: awake for the state change, low again after it; nests. */
	assert_int_equal(feature_low_power_entry.set(dev, NULL, 0), 0);
	assert_int_equal(pci_config_power_state(dev->cfg), 3);
	power_wake_for(dev, "a migration state change");
	assert_int_equal(pci_config_power_state(dev->cfg), 0);
	power_wake_for(dev, "migration data");
	power_wake_done(dev);
	assert_int_equal(pci_config_power_state(dev->cfg), 0);
	assert_int_equal(atomic_load(&g_wakes), 1);
	power_wake_done(dev);
	assert_int_equal(pci_config_power_state(dev->cfg), 3);
	assert_int_equal(atomic_load(&g_lows), 2);
	assert_int_equal(feature_low_power_exit.set(dev, NULL, 0), 0);

	/* Wakeup: the state change is the wake-up. */
	for (unsigned i = 0; i < WIRE_MAX_FDS; i++)
		m.fds[i] = -1;
	m.fds[0] = dup(efd);
	assert_int_equal(feature_low_power_entry_wakeup.set_fds(dev, (uint8_t *)&w, sizeof(w), &m),
			 0);
	assert_int_equal(m.fds[0], -1); /* taken */
	power_wake_for(dev, "a migration state change");
	assert_int_equal(efd_take(efd), 1);
	power_wake_done(dev);
	assert_int_equal(pci_config_power_state(dev->cfg), 0);
	assert_int_equal(efd_take(efd), 0);
	/* Awake and not engaged: brackets change nothing. */
	power_wake_for(dev, "a migration state change");
	power_wake_done(dev);
	assert_int_equal(atomic_load(&g_lows), 3);
	assert_int_equal(atomic_load(&g_misordered), 0);

	ferry_device_destroy(dev);
	close(h->bar2_fd);
	free(h);
	close(efd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_not_negotiated),
		cmocka_unit_test(test_envelope),
		cmocka_unit_test(test_plain_entry),
		cmocka_unit_test(test_wakeup_entry),
		cmocka_unit_test(test_wakeup_bad_args),
		cmocka_unit_test(test_pmcsr_writes),
		cmocka_unit_test(test_reset_and_flr),
		cmocka_unit_test(test_disconnect),
		cmocka_unit_test(test_cycles_no_leak),
		cmocka_unit_test(test_migration_contract),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
