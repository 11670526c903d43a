/*
 * Trapped-access round trip: a 4-byte REGION_READ through libferry (client
 * library -> device server process -> back), next to the physical limit
 * measured in the same run: a raw AF_UNIX stream ping-pong between two
 * processes with the same message sizes (32-byte request, 36-byte reply),
 * one write and one read per side.
 *
 * Both are timed in alternating rounds and the median round is reported, so
 * a noisy neighbour affects both figures alike.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ferry/client.h>
#include <ferry/device.h>

#include "bench_util.h"


/* Both pairs run pinned the same way, client on CPU 0 and server on CPU 1,
 * so neither figure carries the scheduler's migration noise (on a 2-vCPU VM
 * unpinned runs swung the ratio between 0.77 and 1.64). */

/* The device under test: one 4 KiB BAR of trapped registers. */
static int reg_access(void *opaque, unsigned region, uint64_t offset, void *buf, uint32_t count,
		      bool is_write)
{
	(void)opaque;
	(void)region;
	if (!is_write) {
		uint32_t v = (uint32_t)offset ^ 0x5a5a5a5au;
		memcpy(buf, &v, count < 4 ? count : 4);
	}
	return 0;
}

static const struct ferry_device_ops bench_ops = {
	.size = sizeof(struct ferry_device_ops),
	.region_access = reg_access,
};

static void device_child(const char *path, int ready_fd)
{
	struct ferry_device_info info = {
		.name = "bench",
		.id = {.vendor_id = 0xf377, .device_id = 0x0001, .class_code = 0xff0000},
		.ops = &bench_ops,
	};
	for (unsigned i = 0; i < FERRY_PCI_NUM_REGIONS; i++)
		info.regions[i].mmap_fd = -1;
	info.regions[0].size = 4096;
	info.regions[0].flags = FERRY_REGION_READ | FERRY_REGION_WRITE;
	struct ferry_device *dev;
	if (ferry_device_create(&info, &dev) < 0 || ferry_device_listen(dev, path) < 0)
		_exit(1);
	if (write(ready_fd, "r", 1) != 1)
		_exit(1);
	close(ready_fd);
	ferry_device_run(dev);
	ferry_device_destroy(dev);
	_exit(0);
}

static double ferry_round(struct ferry_client *c, long iters)
{
	uint32_t v;
	double t0 = bench_now();
	for (long i = 0; i < iters; i++) {
		if (ferry_client_read32(c, 0, 0x10, &v) < 0 || v != (0x10u ^ 0x5a5a5a5au))
			bench_die("REGION_READ failed");
	}
	return (bench_now() - t0) / (double)iters;
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	bench_parse(argc, argv, &o);
	long iters = o.quick ? 5000 : 50000;
	int rounds = o.quick ? 3 : 7;

	struct bench_pingpong echo;
	bench_pingpong_start(&echo, 1);

	char dir[] = "/tmp/ferry-bench-XXXXXX", path[128];
	if (!mkdtemp(dir))
		bench_die("mkdtemp");
	snprintf(path, sizeof(path), "%s/dev.sock", dir);
	int ready[2];
	if (pipe(ready) < 0)
		bench_die("pipe");
	pid_t dev = fork();
	if (dev == 0) {
		bench_pin_to(1);
		close(ready[0]);
		device_child(path, ready[1]);
	}
	close(ready[1]);
	char ch;
	if (read(ready[0], &ch, 1) != 1)
		bench_die("device server did not start");
	close(ready[0]);

	bench_pin_to(0);
	struct ferry_client *c;
	if (ferry_client_connect(path, NULL, &c) < 0)
		bench_die("connect");

	double raw[16], fer[16];
	bench_pingpong_run(&echo, iters / 10); /* warm-up */
	ferry_round(c, iters / 10);
	for (int r = 0; r < rounds; r++) {
		raw[r] = bench_pingpong_run(&echo, iters);
		fer[r] = ferry_round(c, iters);
	}
	double raw_us = bench_median(raw, rounds) * 1e6;
	double fer_us = bench_median(fer, rounds) * 1e6;

	ferry_client_close(c);
	kill(dev, SIGTERM);
	waitpid(dev, NULL, 0);
	bench_pingpong_stop(&echo);
	unlink(path);
	rmdir(dir);

	struct bench_row row = {
		.name = "region_read_4B_rtt",
		.unit = "us",
		.value = fer_us,
		.limit_name = "raw_unix_pingpong",
		.limit = raw_us,
		.ratio = fer_us / raw_us,
		.aim = "<= 1.10x",
	};
	bench_report(&o, &row, 1);
	return 0;
}
