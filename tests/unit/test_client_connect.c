/*
 * Client connection: VERSION negotiation (caps both ways, twin socket,
 * extensions, options), connect by path, device info, reset, and what
 * happens when the server goes away.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <sys/un.h>

#include "client_fake.h"

static void test_negotiate_twin(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	fake_init(&f);
	f.max_msg_fds = 8;
	f.max_data_xfer_size = 65536;
	f.ferry_ext = WIRE_EXT_PRECOPY_INFO | WIRE_EXT_LOW_POWER;
	struct ferry_client_options o = {.name = "dev0", .timeout_ms = 5000};
	assert_int_equal(fake_connect(&f, &o, &c), 0);

	const struct ferry_server_caps *s = ferry_client_server_caps(c);
	assert_int_equal(s->major, 0);
	assert_int_equal(s->minor, VFIO_USER_MINOR);
	assert_int_equal(s->max_msg_fds, 8);
	assert_int_equal(s->max_data_xfer_size, 65536);
	assert_int_equal(s->max_dma_maps, VFIO_USER_DEFAULT_MAX_DMA_MAPS);
	assert_int_equal(s->pgsizes, 4096);
	assert_true(s->twin_socket);
	assert_int_equal(s->extensions, FERRY_EXT_PRECOPY_INFO | FERRY_EXT_LOW_POWER);
	assert_string_equal(ferry_client_name(c), "dev0");

	/* what the client offered */
	assert_int_equal(f.client_caps.max_msg_fds, 16);
	assert_int_equal(f.client_caps.max_data_xfer_size, 1024 * 1024);
	assert_true(f.client_caps.twin_socket);
	assert_int_equal(f.client_caps.ferry_ext, WIRE_EXT_PRECOPY_INFO | WIRE_EXT_MIG_SHM |
						       WIRE_EXT_LOW_POWER | WIRE_EXT_DIRTY_SHM);
	assert_non_null(f.twin);

	ferry_client_close(c);
	fake_stop(&f);
}

static void test_negotiate_options(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	fake_init(&f);
	f.ferry_ext = WIRE_EXT_PRECOPY_INFO;
	struct ferry_client_options o = {.no_twin_socket = true, .no_extensions = true};
	assert_int_equal(fake_connect(&f, &o, &c), 0);
	const struct ferry_server_caps *s = ferry_client_server_caps(c);
	assert_false(s->twin_socket);
	assert_int_equal(s->extensions, 0);
	assert_false(f.client_caps.twin_socket);
	assert_int_equal(f.client_caps.ferry_ext, 0);
	assert_null(f.twin);
	assert_string_equal(ferry_client_name(c), "vfio-user device");
	ferry_client_close(c);
	fake_stop(&f);
}

static void test_server_without_twin(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	fake_init(&f);
	f.offer_twin = false;
	assert_int_equal(fake_connect(&f, NULL, &c), 0);
	assert_false(ferry_client_server_caps(c)->twin_socket);
	assert_true(f.client_caps.twin_socket); /* offered, declined */
	ferry_client_close(c);
	fake_stop(&f);
}

static void test_device_info_reset(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	struct ferry_device_desc d;
	fake_init(&f);
	f.num_regions = 10;
	assert_int_equal(fake_connect(&f, NULL, &c), 0);
	assert_int_equal(ferry_client_device_info(c, &d), 0);
	assert_int_equal(d.num_regions, 10);
	assert_int_equal(d.num_irqs, 5);
	assert_int_equal(d.flags, VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET);
	assert_int_equal(ferry_client_reset(c), 0);
	assert_int_equal(ferry_client_reset(c), 0);
	ferry_client_close(c);
	fake_stop(&f);
	assert_int_equal(f.resets, 2);
}

struct accept_arg {
	int lfd;
	struct fake_server *f;
};

static void *accept_then_serve(void *arg)
{
	struct accept_arg *a = arg;
	struct wire_transport *tr;
	struct wire_chan_opts o = {.name = "fake server", .timeout_ms = 5000};
	int fd = accept4(a->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0 || wire_transport_sock_create(fd, &tr) < 0 ||
	    wire_chan_create(tr, &o, &a->f->ch) < 0)
		return NULL;
	return fake_main(a->f);
}

static void test_connect_path(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	pthread_t t;

	fake_init(&f);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/ferry-test-client-%d.sock", getpid());
	unlink(sa.sun_path);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	struct accept_arg a = {lfd, &f};
	pthread_create(&t, NULL, accept_then_serve, &a);

	assert_int_equal(ferry_client_connect(sa.sun_path, NULL, &c), 0);
	assert_string_equal(ferry_client_name(c), sa.sun_path);
	struct ferry_device_desc d;
	assert_int_equal(ferry_client_device_info(c, &d), 0);
	ferry_client_close(c);
	pthread_join(t, NULL);
	wire_chan_destroy(f.twin);
	wire_chan_destroy(f.ch);
	close(lfd);
	unlink(sa.sun_path);

	assert_int_equal(ferry_client_connect("/nonexistent/ferry.sock", NULL, &c), -ENOENT);
	assert_null(c);
	char longpath[200];
	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(ferry_client_connect(longpath, NULL, &c), -ENAMETOOLONG);
}

static void test_server_gone(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	struct ferry_device_desc d;
	fake_init(&f);
	struct ferry_client_options o = {.timeout_ms = 2000};
	assert_int_equal(fake_connect(&f, &o, &c), 0);
	wire_chan_kill(f.ch, -ECONNRESET); /* the server hangs up */
	pthread_join(f.thread, NULL);
	assert_int_equal(ferry_client_device_info(c, &d), -ECONNRESET);
	assert_int_equal(ferry_client_reset(c), -ECONNRESET);
	ferry_client_close(c);
	wire_chan_destroy(f.twin);
	wire_chan_destroy(f.ch);
}

static void test_close_null(void **state)
{
	(void)state;
	ferry_client_close(NULL);
	struct ferry_client *c = (void *)1;
	assert_int_equal(ferry_client_connect_fd(-1, NULL, &c), -EBADF);
	assert_null(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_negotiate_twin),
		cmocka_unit_test(test_negotiate_options),
		cmocka_unit_test(test_server_without_twin),
		cmocka_unit_test(test_device_info_reset),
		cmocka_unit_test(test_connect_path),
		cmocka_unit_test(test_server_gone),
		cmocka_unit_test(test_close_null),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
