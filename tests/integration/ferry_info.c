/*
 * `ferry info` as a user runs it: a real process against a real socket.
 *
 * 1. Against ferry-dev-dma: text and --json succeed and describe the device
 *    (identity, sparse BAR, MSI-X, features).
 * 2. Against a fake device whose config space is hostile (capability list
 *    that loops, pointers out of range, an extended list that loops): the
 *    walk stops, says why, and the tool still exits 0.
 *
 * usage: ferry_info FERRY_BINARY FERRY_DEV_DMA_BINARY
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <json-c/json.h>
#include <linux/pci_regs.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wire/caps.h"
#include "wire/wire.h"

extern char **environ;

static const char *ferry_bin, *dev_dma_bin;
static char tmpdir[64];

/* Runs ferry with @args; returns its exit status, stdout in *@out (malloc'd). */
static int run_ferry(const char *const *args, char **out)
{
	int p[2];
	posix_spawn_file_actions_t fa;
	char *argv[8];
	int n = 0;
	pid_t pid;

	argv[n++] = (char *)ferry_bin;
	for (; args[n - 1] && n < 7; n++)
		argv[n] = (char *)args[n - 1];
	argv[n] = NULL;
	assert_int_equal(pipe(p), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_addclose(&fa, p[0]);
	assert_int_equal(posix_spawn(&pid, ferry_bin, &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);

	size_t len = 0, cap = 1 << 16;
	*out = malloc(cap);
	for (;;) {
		if (len + 1 == cap)
			*out = realloc(*out, cap *= 2);
		ssize_t r = read(p[0], *out + len, cap - len - 1);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	(*out)[len] = '\0';
	close(p[0]);
	int status;
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static json_object *get(json_object *o, const char *path)
{
	char buf[128], *save, *tok;
	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok && o; tok = strtok_r(NULL, ".", &save)) {
		json_object *next = NULL;
		if (json_object_is_type(o, json_type_array))
			next = json_object_array_get_idx(o, (size_t)atoi(tok));
		else
			json_object_object_get_ex(o, tok, &next);
		o = next;
	}
	assert_non_null(o);
	return o;
}

static int64_t get_int(json_object *o, const char *path)
{
	return json_object_get_int64(get(o, path));
}

static void wait_socket(const char *path)
{
	for (int i = 0; i < 100; i++) {
		if (access(path, F_OK) == 0) {
			usleep(50000); /* bound; give it the time to listen */
			return;
		}
		usleep(20000);
	}
	fail_msg("no socket at %s", path);
}

static void test_dev_dma(void **state)
{
	(void)state;
	char sock[128], *out;
	pid_t pid;
	snprintf(sock, sizeof(sock), "%s/dma.sock", tmpdir);
	char *argv[] = {(char *)dev_dma_bin, "--socket", sock, NULL};
	assert_int_equal(posix_spawn(&pid, dev_dma_bin, NULL, NULL, argv, environ), 0);
	wait_socket(sock);

	const char *text_args[] = {"info", sock, NULL};
	assert_int_equal(run_ferry(text_args, &out), 0);
	assert_non_null(strstr(out, "Protocol: vfio-user 0."));
	assert_non_null(strstr(out, "Capabilities:"));
	assert_non_null(strstr(out, "MSI-X"));
	assert_non_null(strstr(out, "Interrupts:"));
	assert_non_null(strstr(out, "Device features:"));
	free(out);

	const char *json_args[] = {"info", sock, "--json", NULL};
	assert_int_equal(run_ferry(json_args, &out), 0);
	json_object *j = json_tokener_parse(out);
	assert_non_null(j);
	assert_int_equal(get_int(j, "server.major"), 0);
	assert_true(json_object_get_boolean(get(j, "server.twin_socket")));
	assert_int_equal(get_int(j, "device.num_regions"), 9);
	assert_int_equal(get_int(j, "device.num_irqs"), 5);
	assert_int_equal(get_int(j, "regions.7.index"), 7);
	assert_string_equal(json_object_get_string(get(j, "regions.7.name")), "CONFIG");
	get(j, "identity.vendor_id");
	assert_true(json_object_get_boolean(get(j, "regions.7.read")));
	assert_true(json_object_array_length(get(j, "capabilities")) >= 1);
	assert_int_equal(get_int(j, "failed_queries"), 0);
	get(j, "features.migration.supported");
	get(j, "features.dma_logging.start");
	json_object_put(j);
	free(out);

	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	unlink(sock);
}

/* ---- a fake device with a hostile config space ---- */

struct hostile {
	char path[100];
	uint8_t cfg[4096];
	uint32_t cfg_size;
	int lfd;
	pthread_t thread;
};

static void reply(struct wire_chan *ch, struct wire_msg *m, const void *p, size_t n)
{
	struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
	wire_reply(ch, m, &iov, n ? 1 : 0, NULL, 0);
}

static void serve(struct hostile *h, struct wire_chan *ch)
{
	struct wire_caps mine, theirs;
	wire_caps_default(&mine);
	mine.max_msg_fds = 4;
	if (wire_version_server(ch, &mine, &theirs, -1) < 0)
		return;
	for (;;) {
		struct wire_msg m;
		if (wire_next_command(ch, &m, -1) < 0)
			return;
		switch (m.hdr.cmd) {
		case VFIO_USER_DEVICE_GET_INFO: {
			struct vfio_user_device_info di = {16, VFIO_DEVICE_FLAGS_PCI, 9, 5};
			reply(ch, &m, &di, sizeof(di));
			break;
		}
		case VFIO_USER_DEVICE_GET_REGION_INFO: {
			struct vfio_user_region_info ri;
			memcpy(&ri, m.payload, sizeof(ri));
			ri.argsz = sizeof(ri);
			ri.cap_offset = 0;
			ri.offset = 0;
			ri.flags = ri.index == VFIO_PCI_CONFIG_REGION_INDEX
				? VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE : 0;
			ri.size = ri.index == VFIO_PCI_CONFIG_REGION_INDEX ? h->cfg_size : 0;
			reply(ch, &m, &ri, sizeof(ri));
			break;
		}
		case VFIO_USER_REGION_READ: {
			struct vfio_user_region_access a;
			memcpy(&a, m.payload, sizeof(a));
			if (a.region != VFIO_PCI_CONFIG_REGION_INDEX || a.offset > h->cfg_size ||
			    a.count > h->cfg_size - a.offset) {
				wire_reply_error(ch, &m, EINVAL);
				break;
			}
			struct iovec iov[2] = {{&a, sizeof(a)}, {h->cfg + a.offset, a.count}};
			wire_reply(ch, &m, iov, 2, NULL, 0);
			break;
		}
		case VFIO_USER_DEVICE_GET_IRQ_INFO: {
			struct vfio_user_irq_info q;
			memcpy(&q, m.payload, sizeof(q));
			q.flags = VFIO_IRQ_INFO_EVENTFD;
			q.count = q.index == 2 ? 8 : 1;
			reply(ch, &m, &q, sizeof(q));
			break;
		}
		default:
			wire_reply_error(ch, &m, ENOTTY);
		}
		wire_msg_release(&m);
	}
}

static void *hostile_main(void *arg)
{
	struct hostile *h = arg;
	int fd = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC);
	struct wire_transport *tr;
	struct wire_chan *ch;
	struct wire_chan_opts o = {.name = "hostile", .timeout_ms = 5000};
	if (fd < 0 || wire_transport_sock_create(fd, &tr) < 0 ||
	    wire_chan_create(tr, &o, &ch) < 0)
		return NULL;
	serve(h, ch);
	wire_chan_destroy(ch);
	return NULL;
}

static void hostile_start(struct hostile *h, const char *name)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(h->path, sizeof(h->path), "%s/%s.sock", tmpdir, name);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", h->path);
	h->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(h->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(h->lfd, 1), 0);
	pthread_create(&h->thread, NULL, hostile_main, h);
}

static void hostile_stop(struct hostile *h)
{
	pthread_join(h->thread, NULL);
	close(h->lfd);
	unlink(h->path);
}

static void base_header(struct hostile *h, uint32_t size)
{
	memset(h->cfg, 0, sizeof(h->cfg));
	h->cfg_size = size;
	h->cfg[PCI_VENDOR_ID] = 0x34;
	h->cfg[PCI_VENDOR_ID + 1] = 0x12;
	h->cfg[PCI_DEVICE_ID] = 0x78;
	h->cfg[PCI_DEVICE_ID + 1] = 0x56;
	h->cfg[PCI_STATUS] = PCI_STATUS_CAP_LIST;
	h->cfg[PCI_CLASS_DEVICE + 1] = 0x02; /* network */
	/* BAR0: 64-bit prefetchable memory, BAR2: I/O */
	h->cfg[PCI_BASE_ADDRESS_0] = PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH;
	h->cfg[PCI_BASE_ADDRESS_2] = PCI_BASE_ADDRESS_SPACE_IO;
}

static json_object *info_json(struct hostile *h)
{
	char *out;
	const char *args[] = {"info", h->path, "--json", NULL};
	assert_int_equal(run_ferry(args, &out), 0);
	json_object *j = json_tokener_parse(out);
	free(out);
	assert_non_null(j);
	return j;
}

static void test_cap_loop(void **state)
{
	(void)state;
	struct hostile h;
	base_header(&h, 256);
	h.cfg[PCI_CAPABILITY_LIST] = 0x40;
	h.cfg[0x40] = PCI_CAP_ID_MSI;
	h.cfg[0x41] = 0x50;
	uint16_t msi_flags = PCI_MSI_FLAGS_64BIT | PCI_MSI_FLAGS_MASKBIT | (3 << 1); /* 8 vectors */
	memcpy(h.cfg + 0x42, &msi_flags, 2);
	h.cfg[0x50] = 0x42; /* an id nobody knows */
	h.cfg[0x51] = 0x40; /* back to the first */
	hostile_start(&h, "loop");
	json_object *j = info_json(&h);
	assert_int_equal(json_object_array_length(get(j, "capabilities")), 2);
	assert_int_equal(get_int(j, "capabilities.0.vectors"), 8);
	assert_true(json_object_get_boolean(get(j, "capabilities.0.64bit")));
	assert_int_equal(get_int(j, "capabilities.1.id"), 0x42);
	assert_non_null(strstr(json_object_get_string(get(j, "capabilities_problem")), "loops"));
	assert_string_equal(json_object_get_string(get(j, "regions.0.bar.type")), "memory");
	assert_int_equal(get_int(j, "regions.0.bar.bits"), 64);
	assert_string_equal(json_object_get_string(get(j, "regions.1.bar.type")), "upper");
	assert_string_equal(json_object_get_string(get(j, "regions.2.bar.type")), "io");
	assert_string_equal(json_object_get_string(get(j, "identity.class_name")),
			    "Network controller");
	json_object_put(j);
	hostile_stop(&h);
}

static void test_cap_out_of_range(void **state)
{
	(void)state;
	struct hostile h;
	base_header(&h, 256);
	h.cfg[PCI_CAPABILITY_LIST] = 0x40;
	h.cfg[0x40] = PCI_CAP_ID_PM;
	h.cfg[0x41] = 0xfc; /* the MSI-X cap there does not fit */
	h.cfg[0xfc] = PCI_CAP_ID_MSIX;
	h.cfg[0xfd] = 0x20; /* and then into the header */
	hostile_start(&h, "range");
	json_object *j = info_json(&h);
	assert_int_equal(json_object_array_length(get(j, "capabilities")), 2);
	assert_true(json_object_get_boolean(get(j, "capabilities.1.truncated")));
	assert_non_null(strstr(json_object_get_string(get(j, "capabilities_problem")),
			       "outside"));
	json_object_put(j);

	/* the text form says the same */
	char *out;
	const char *args[] = {"info", h.path, NULL};
	hostile_stop(&h);
	hostile_start(&h, "range");
	assert_int_equal(run_ferry(args, &out), 0);
	assert_non_null(strstr(out, "walk stopped"));
	free(out);
	hostile_stop(&h);
}

static void test_ext_cap_loop(void **state)
{
	(void)state;
	struct hostile h;
	base_header(&h, 4096);
	h.cfg[PCI_STATUS] = 0; /* no standard list */
	/* 0x100: AER -> 0x200: DSN -> 0x100 */
	uint32_t a = PCI_EXT_CAP_ID_ERR | 1u << 16 | 0x200u << 20;
	uint32_t b = PCI_EXT_CAP_ID_DSN | 1u << 16 | 0x100u << 20;
	memcpy(h.cfg + 0x100, &a, 4);
	memcpy(h.cfg + 0x200, &b, 4);
	hostile_start(&h, "ext");
	json_object *j = info_json(&h);
	assert_int_equal(json_object_array_length(get(j, "capabilities")), 0);
	assert_int_equal(json_object_array_length(get(j, "extended_capabilities")), 2);
	assert_int_equal(get_int(j, "extended_capabilities.1.offset"), 0x200);
	assert_non_null(strstr(json_object_get_string(get(j, "extended_capabilities_problem")),
			       "loops"));
	json_object_put(j);
	hostile_stop(&h);
}

static void test_usage_errors(void **state)
{
	(void)state;
	char *out;
	const char *none[] = {"info", NULL};
	assert_int_equal(run_ferry(none, &out), 2);
	free(out);
	const char *missing[] = {"info", "/nonexistent/dev.sock", NULL};
	assert_int_equal(run_ferry(missing, &out), 1);
	free(out);
	const char *later[] = {"migrate", "--control", "x", NULL};
	assert_int_equal(run_ferry(later, &out), 2);
	free(out);
	const char *unknown[] = {"frobnicate", NULL};
	assert_int_equal(run_ferry(unknown, &out), 2);
	free(out);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s FERRY FERRY_DEV_DMA\n", argv[0]);
		return 2;
	}
	ferry_bin = argv[1];
	dev_dma_bin = argv[2];
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ferry-info-test.XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dev_dma),
		cmocka_unit_test(test_cap_loop),
		cmocka_unit_test(test_cap_out_of_range),
		cmocka_unit_test(test_ext_cap_loop),
		cmocka_unit_test(test_usage_errors),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	rmdir(tmpdir);
	return r;
}
