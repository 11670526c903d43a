/*
 * Client side, low power (lib/client/power.c, include/ferry/client_power.h)
 * against the real device side (the harness model on a library thread):
 * mappings made by ferry_client_region_map fault while low (SIGSEGV,
 * SEGV_ACCERR) and come back after the exit or the observed wake-up,
 * mappings made while low are inaccessible too, the caller's eventfd count
 * is left alone, argument errors, a client without the extension, and 1000
 * enter/exit cycles without an fd leak.
 */
#include "device_harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>

#include <ferry/client.h>
#include <ferry/client_power.h>

/* ---- faults ---- */

static sigjmp_buf g_jmp;
static volatile sig_atomic_t g_si_code;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	g_si_code = si->si_code;
	siglongjmp(g_jmp, 1);
}

/* True if touching @p faults; the fault must be an access-rights one. */
static bool touch_faults(volatile uint8_t *p, bool is_write)
{
	struct sigaction sa, old;
	volatile bool faulted = false;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGSEGV, &sa, &old), 0);
	g_si_code = 0;
	if (sigsetjmp(g_jmp, 1) == 0) {
		if (is_write)
			*p = 0x42;
		else
			(void)*p;
	} else {
		faulted = true;
	}
	sigaction(SIGSEGV, &old, NULL);
	if (faulted)
		assert_int_equal(g_si_code, SEGV_ACCERR);
	return faulted;
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

static uint64_t efd_take(int efd)
{
	eventfd_t v = 0;
	if (eventfd_read(efd, &v) < 0) {
		assert_int_equal(errno, EAGAIN);
		return 0;
	}
	return v;
}

/* ---- a device and a library client ---- */

struct setup {
	struct harness *h;
	struct ferry_client *c;
};

static void start(struct setup *s, bool no_extensions)
{
	struct ferry_device_info info;
	struct ferry_client_options o = {.name = "power-client", .timeout_ms = 5000,
					 .no_extensions = no_extensions};
	int sv[2];

	s->h = h_new();
	h_fill_info(s->h, &info);
	assert_int_equal(ferry_device_create(&info, &s->h->dev), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(ferry_device_attach_fd(s->h->dev, sv[0]), 0);
	assert_int_equal(ferry_device_start(s->h->dev), 0);
	assert_int_equal(ferry_client_connect_fd(sv[1], &o, &s->c), 0);
}

static void stop(struct setup *s)
{
	ferry_client_close(s->c);
	ferry_device_destroy(s->h->dev);
	close(s->h->bar2_fd);
	free(s->h);
}

static void bar0_touch(struct ferry_client *c)
{
	uint32_t v;
	assert_int_equal(ferry_client_read32(c, 0, 0x20, &v), 0);
}

/* BAR2: areas [0, 16K) and [32K, 64K), a trapped hole between. */
static void assert_bar2(uint8_t *base, bool accessible)
{
	assert_int_equal(touch_faults(base, false), !accessible);
	assert_int_equal(touch_faults(base + 0x3fff, true), !accessible);
	assert_int_equal(touch_faults(base + 0x8000, true), !accessible);
	assert_int_equal(touch_faults(base + 0xffff, false), !accessible);
	assert_true(touch_faults(base + 0x4000, false)); /* the hole, always */
}

/* ---- tests ---- */

static void test_no_extension(void **state)
{
	(void)state;
	struct setup s;
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	start(&s, true);
	assert_int_equal(ferry_client_server_caps(s.c)->extensions & FERRY_EXT_LOW_POWER, 0);
	assert_int_equal(ferry_client_low_power_enter(s.c), -EOPNOTSUPP);
	assert_int_equal(ferry_client_low_power_enter_wakeup(s.c, efd), -EOPNOTSUPP);
	assert_int_equal(ferry_client_low_power_exit(s.c), -EOPNOTSUPP);
	assert_int_equal(ferry_client_low_power_poll(s.c), 0);
	/* The raw feature gets the device's answer: not offered. */
	assert_int_equal(ferry_client_feature(s.c, VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY |
						 VFIO_DEVICE_FEATURE_SET, NULL, 0, NULL, 0, NULL, 0,
					      NULL), -ENOTTY);
	stop(&s);
	close(efd);
}

static void test_mappings(void **state)
{
	(void)state;
	struct setup s;
	int err;

	start(&s, false);
	assert_true(ferry_client_server_caps(s.c)->extensions & FERRY_EXT_LOW_POWER);
	assert_false(ferry_client_region_access_ok(s.c, 2)); /* not mapped yet */
	uint8_t *base = ferry_client_region_map(s.c, 2, &err);
	assert_non_null(base);
	assert_true(ferry_client_region_access_ok(s.c, 2));
	base[0x10] = 0x77;
	assert_bar2(base, true);

	assert_int_equal(ferry_client_low_power_enter(s.c), 0);
	assert_int_equal(ferry_client_low_power_poll(s.c), 1);
	assert_false(ferry_client_region_access_ok(s.c, 2));
	assert_bar2(base, false);
	/* Trapped accesses are served (the device wakes for each) and do not
	 * give the mappings back: a plain entry lasts until the exit. */
	bar0_touch(s.c);
	uint8_t b = 0;
	assert_int_equal(ferry_client_region_read(s.c, 2, 0x10, &b, 1), 0);
	assert_int_equal(b, 0x77);
	assert_false(ferry_client_region_access_ok(s.c, 2));
	/* So is a reset; still low after it. */
	assert_int_equal(ferry_client_reset(s.c), 0);
	assert_int_equal(ferry_client_low_power_poll(s.c), 1);
	/* Mapping again returns the same, still inaccessible. */
	assert_ptr_equal(ferry_client_region_map(s.c, 2, &err), base);
	assert_bar2(base, false);
	/* A mapping made while low is inaccessible too. */
	ferry_client_region_unmap(s.c, 2);
	base = ferry_client_region_map(s.c, 2, &err);
	assert_non_null(base);
	assert_bar2(base, false);
	/* A second entry is refused locally, nothing changes. */
	assert_int_equal(ferry_client_low_power_enter(s.c), -EINVAL);
	assert_int_equal(ferry_client_low_power_poll(s.c), 1);

	assert_int_equal(ferry_client_low_power_exit(s.c), 0);
	assert_int_equal(ferry_client_low_power_poll(s.c), 0);
	assert_true(ferry_client_region_access_ok(s.c, 2));
	assert_bar2(base, true);
	assert_int_equal(base[0x10], 0x77); /* the same memory */
	assert_int_equal(ferry_client_low_power_exit(s.c), 0); /* again: fine */
	stop(&s);
}

static void test_wakeup(void **state)
{
	(void)state;
	struct setup s;
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int err;

	start(&s, false);
	uint8_t *base = ferry_client_region_map(s.c, 2, &err);
	assert_non_null(base);

	/* Woken by an access: noticed without reading the caller's count. */
	assert_int_equal(ferry_client_low_power_enter_wakeup(s.c, efd), 0);
	assert_int_equal(ferry_client_low_power_poll(s.c), 1);
	assert_bar2(base, false);
	bar0_touch(s.c);
	assert_true(ferry_client_region_access_ok(s.c, 2));
	assert_int_equal(ferry_client_low_power_poll(s.c), 0);
	assert_bar2(base, true);
	assert_int_equal(efd_take(efd), 1); /* exactly once, and still ours */
	assert_int_equal(ferry_client_low_power_exit(s.c), 0); /* optional, a no-op */
	assert_int_equal(efd_take(efd), 0);

	/* Exit before any access: the eventfd fires (the kernel's rule). */
	assert_int_equal(ferry_client_low_power_enter_wakeup(s.c, efd), 0);
	assert_int_equal(ferry_client_low_power_exit(s.c), 0);
	assert_int_equal(efd_take(efd), 1);
	assert_bar2(base, true);

	/* A caller that reads the eventfd first gets the mappings back by EXIT. */
	assert_int_equal(ferry_client_low_power_enter_wakeup(s.c, efd), 0);
	bar0_touch(s.c);
	assert_int_equal(efd_take(efd), 1);
	assert_int_equal(ferry_client_low_power_poll(s.c), 1); /* it cannot tell now */
	assert_int_equal(ferry_client_low_power_exit(s.c), 0);
	assert_int_equal(ferry_client_low_power_poll(s.c), 0);
	assert_int_equal(efd_take(efd), 0);

	/* Argument errors: nothing engaged, mappings untouched. */
	int pfd[2];
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	assert_int_equal(ferry_client_low_power_enter_wakeup(s.c, -1), -EINVAL);
	int closed = dup(pfd[0]);
	close(closed);
	assert_int_equal(ferry_client_low_power_enter_wakeup(s.c, closed), -EBADF);
	assert_int_equal(ferry_client_low_power_enter_wakeup(s.c, pfd[0]), -EINVAL);
	assert_true(ferry_client_region_access_ok(s.c, 2));
	assert_bar2(base, true);
	assert_int_equal(eventfd_write(efd, 1), 0);
	assert_int_equal(ferry_client_low_power_enter_wakeup(s.c, efd), -EINVAL); /* count 1 */
	assert_int_equal(efd_take(efd), 1);
	assert_int_equal(ferry_client_low_power_poll(s.c), 0);
	/* Plain entry then a wakeup entry: the second is refused. */
	assert_int_equal(ferry_client_low_power_enter(s.c), 0);
	assert_int_equal(ferry_client_low_power_enter_wakeup(s.c, efd), -EINVAL);
	assert_int_equal(ferry_client_low_power_exit(s.c), 0);
	assert_int_equal(efd_take(efd), 0);

	close(pfd[0]);
	close(pfd[1]);
	stop(&s);
	close(efd);
}

static void test_cycles_no_leak(void **state)
{
	(void)state;
	struct setup s;
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int err;

	start(&s, false);
	uint8_t *base = ferry_client_region_map(s.c, 2, &err);
	assert_non_null(base);
	int before = count_fds();
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(ferry_client_low_power_enter(s.c), 0);
		assert_false(ferry_client_region_access_ok(s.c, 2));
		assert_int_equal(ferry_client_low_power_exit(s.c), 0);
		assert_true(ferry_client_region_access_ok(s.c, 2));

		assert_int_equal(ferry_client_low_power_enter_wakeup(s.c, efd), 0);
		if (i % 2) {
			bar0_touch(s.c);
			assert_int_equal(ferry_client_low_power_poll(s.c), 0);
		} else {
			assert_int_equal(ferry_client_low_power_exit(s.c), 0);
		}
		assert_int_equal(efd_take(efd), 1);
		assert_true(ferry_client_region_access_ok(s.c, 2));
	}
	assert_int_equal(count_fds(), before);
	base[0] = 1; /* accessible at the end */
	stop(&s);
	close(efd);
}

int main(void)
{
	(void)h_start; /* the harness's raw client is not used here */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_extension),
		cmocka_unit_test(test_mappings),
		cmocka_unit_test(test_wakeup),
		cmocka_unit_test(test_cycles_no_leak),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
