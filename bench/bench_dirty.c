/*
 * Dirty-page tracking costs, each beside its physical limit measured in the
 * same run.
 *
 * 1. DMA_LOGGING_REPORT of 64 GiB of mapped guest memory at 4 KiB pages
 *    (a 2 MiB bitmap) through the client API, over a real UNIX socket, to a
 *    device served on its own thread, after the device wrote a scattered
 *    set of pages. Guest memory is a sparse 64 GiB memfd: only the written
 *    pages cost RAM. Limit: what any report must at least do, a memcpy of
 *    the 2 MiB bitmap plus one message round trip of REGION_READ size (a
 *    raw AF_UNIX ping-pong with a process, 32-byte request, 36-byte reply).
 *    Aim: <= 2x, on the dirty_shm path (the device writes the bitmap into
 *    shared memory, sparsely). The plain message path (two 1 MiB replies:
 *    the transfer limit) is printed too, for comparison.
 * 2. The marking cost on the DMA hot path: ns per ferry_dma_write of 64
 *    bytes with logging on and off, beside a plain 64-byte memcpy, and the
 *    difference (the mark) beside one atomic fetch_or.
 *
 * Rounds alternate the figure and its limits, and each is reported as its
 * best round: on a shared machine a round's time is mostly how soon the
 * scheduler wakes the device thread (or the echo process), which says
 * nothing about ferry; the best round of each is what the code and the
 * hardware cost. The medians are printed underneath for comparison.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ferry/client.h>
#include <ferry/client_dirty.h>
#include <ferry/device.h>
#include <ferry/vfio_user.h>

#include "bench_util.h"

#define GUEST_SIZE (64ull << 30)
#define PAGE 4096ull
#define PAGES (GUEST_SIZE / PAGE)
#define BITMAP_BYTES (PAGES / 8) /* 2 MiB */
#define DIRTY_PAGES 16384        /* one page in 1024, scattered */

/* ---- the device: one trapped BAR; guest memory comes by DMA_MAP ---- */

static int reg_access(void *opaque, unsigned region, uint64_t offset, void *buf, uint32_t count,
		      bool is_write)
{
	(void)opaque, (void)region, (void)offset;
	if (!is_write)
		memset(buf, 0, count);
	return 0;
}

static const struct ferry_device_ops bench_ops = {
	.size = sizeof(struct ferry_device_ops),
	.region_access = reg_access,
};

static struct ferry_device *device_up(const char *path)
{
	struct ferry_device_info info = {
		.name = "bench-dirty",
		.id = {.vendor_id = 0xf377, .device_id = 0x0002, .class_code = 0xff0000},
		.ops = &bench_ops,
	};
	struct ferry_device *dev;

	for (unsigned i = 0; i < FERRY_PCI_NUM_REGIONS; i++)
		info.regions[i].mmap_fd = -1;
	info.regions[0].size = 4096;
	info.regions[0].flags = FERRY_REGION_READ | FERRY_REGION_WRITE;
	if (ferry_device_create(&info, &dev) < 0 || ferry_device_listen(dev, path) < 0 ||
	    ferry_device_start(dev) < 0)
		bench_die("device");
	return dev;
}

/* ---- 1. REPORT ---- */

static uint64_t dirty_page(unsigned i)
{
	/* scattered: a multiplicative hash of i, distinct for distinct i */
	return ((uint64_t)i * 2654435761u) % PAGES;
}

/* The device writes its scattered pages (not timed). */
static void device_writes(struct ferry_device *dev)
{
	uint64_t v = 0x1234;
	for (unsigned i = 0; i < DIRTY_PAGES; i++)
		if (ferry_dma_write(dev, dirty_page(i) * PAGE + (i % 512) * 8, &v, sizeof(v)) < 0)
			bench_die("ferry_dma_write");
}

static uint64_t popcount(const uint64_t *b, size_t words)
{
	uint64_t n = 0;
	for (size_t i = 0; i < words; i++)
		n += (uint64_t)__builtin_popcountll(b[i]);
	return n;
}

struct report_figures {
	double report, memcpy, rtt;          /* seconds, best rounds */
	double med_report, med_memcpy, med_rtt; /* medians */
	bool is_shm;
};

static double best(const double *v, int n)
{
	double m = v[0];
	for (int i = 1; i < n; i++)
		m = v[i] < m ? v[i] : m;
	return m;
}

static void report_session(const char *path, struct ferry_device *dev,
			   struct bench_pingpong *echo, int memfd,
			   bool extensions, int rounds, struct report_figures *out)
{
	struct ferry_client_options o = {.name = "bench", .no_extensions = !extensions};
	struct ferry_dirty_range all = {0, GUEST_SIZE};
	struct ferry_client *c;
	uint64_t *bm = malloc(BITMAP_BYTES);
	uint8_t *src = malloc(BITMAP_BYTES), *dst = malloc(BITMAP_BYTES);
	double rep[64], cpy[64], rtt[64];

	if (!bm || !src || !dst)
		bench_die("malloc");
	memset(src, 0x5a, BITMAP_BYTES);
	memset(dst, 0, BITMAP_BYTES);
	if (ferry_client_connect(path, &o, &c) < 0)
		bench_die("connect");
	out->is_shm = ferry_client_server_caps(c)->extensions & FERRY_EXT_DIRTY_SHM;
	if (ferry_client_dma_map(c, 0, GUEST_SIZE, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
				 memfd, 0, NULL) < 0 ||
	    ferry_client_dirty_start(c, PAGE, &all, 1, NULL) < 0)
		bench_die("DMA_MAP / DMA_LOGGING_START");
	for (int r = -2; r < rounds; r++) { /* two warm-up rounds */
		device_writes(dev);
		memset(bm, 0, BITMAP_BYTES);
		double t0 = bench_now();
		if (ferry_client_dirty_report(c, 0, GUEST_SIZE, PAGE, bm) < 0)
			bench_die("report");
		double t1 = bench_now();
		if (popcount(bm, BITMAP_BYTES / 8) != DIRTY_PAGES)
			bench_die("the report lost or invented pages");
		memcpy(dst, src, BITMAP_BYTES);
		__asm__ volatile("" ::"r"(dst) : "memory");
		double t2 = bench_now();
		double ping = bench_pingpong_run(echo, 20);
		if (r >= 0) {
			rep[r] = t1 - t0;
			cpy[r] = t2 - t1;
			rtt[r] = ping;
		}
	}
	out->report = best(rep, rounds);
	out->memcpy = best(cpy, rounds);
	out->rtt = best(rtt, rounds);
	out->med_report = bench_median(rep, rounds);
	out->med_memcpy = bench_median(cpy, rounds);
	out->med_rtt = bench_median(rtt, rounds);
	ferry_client_close(c);
	free(bm);
	free(src);
	free(dst);
}

/* ---- 2. marking ---- */

static double time_dma_writes(struct ferry_device *dev, long iters)
{
	uint8_t buf[64] = {1};
	double t0 = bench_now();
	for (long i = 0; i < iters; i++)
		if (ferry_dma_write(dev, (uint64_t)(i & 63) * 64, buf, sizeof(buf)) < 0)
			bench_die("ferry_dma_write");
	return (bench_now() - t0) / (double)iters;
}

static double time_memcpy64(long iters)
{
	static uint8_t src[64], dst[64 * 64];
	double t0 = bench_now();
	for (long i = 0; i < iters; i++) {
		memcpy(dst + (i & 63) * 64, src, 64);
		__asm__ volatile("" ::"r"(dst) : "memory");
	}
	return (bench_now() - t0) / (double)iters;
}

static double time_fetch_or(long iters)
{
	static _Atomic uint64_t word;
	double t0 = bench_now();
	for (long i = 0; i < iters; i++)
		atomic_fetch_or_explicit(&word, 1ull << (i & 63), memory_order_release);
	return (bench_now() - t0) / (double)iters;
}

static void marking(const char *path, struct ferry_device *dev, int memfd, long iters,
		    int rounds, struct bench_row *rows)
{
	struct ferry_dirty_range all = {0, GUEST_SIZE};
	struct ferry_client *c;
	double on[64], off[64], cpy[64], aop[64];

	if (ferry_client_connect(path, NULL, &c) < 0 ||
	    ferry_client_dma_map(c, 0, GUEST_SIZE, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
				 memfd, 0, NULL) < 0)
		bench_die("connect / DMA_MAP");
	for (int r = -1; r < rounds; r++) {
		if (ferry_client_dirty_start(c, PAGE, &all, 1, NULL) < 0)
			bench_die("DMA_LOGGING_START");
		double t_on = time_dma_writes(dev, iters);
		if (ferry_client_dirty_stop(c) < 0)
			bench_die("DMA_LOGGING_STOP");
		double t_off = time_dma_writes(dev, iters);
		double t_cpy = time_memcpy64(iters);
		double t_aop = time_fetch_or(iters);
		if (r >= 0) {
			on[r] = t_on * 1e9;
			off[r] = t_off * 1e9;
			cpy[r] = t_cpy * 1e9;
			aop[r] = t_aop * 1e9;
		}
	}
	ferry_client_close(c);
	double m_on = best(on, rounds), m_off = best(off, rounds);
	double m_cpy = best(cpy, rounds), m_aop = best(aop, rounds);
	double mark = m_on > m_off ? m_on - m_off : 0;
	rows[0] = (struct bench_row){"dma_write_64B_log_off", "ns", m_off, "memcpy_64B", m_cpy,
				     m_off / m_cpy, "info: lock + lookup"};
	rows[1] = (struct bench_row){"dma_write_64B_log_on", "ns", m_on, "memcpy_64B", m_cpy,
				     m_on / m_cpy, "info"};
	rows[2] = (struct bench_row){"dirty_mark_cost", "ns", mark, "atomic_fetch_or", m_aop,
				     mark / m_aop, "<= 2x"};
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	bench_parse(argc, argv, &o);
	int rounds = o.quick ? 5 : 21;
	long iters = o.quick ? 200000 : 2000000;

	signal(SIGPIPE, SIG_IGN);
	struct bench_pingpong echo;
	bench_pingpong_start(&echo, -1);

	char dir[] = "/tmp/ferry-bench-XXXXXX", path[128];
	if (!mkdtemp(dir))
		bench_die("mkdtemp");
	snprintf(path, sizeof(path), "%s/dev.sock", dir);
	int memfd = memfd_create("guest", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, (off_t)GUEST_SIZE) < 0)
		bench_die("64 GiB sparse memfd");
	struct ferry_device *dev = device_up(path);

	struct report_figures shm, msg;
	report_session(path, dev, &echo, memfd, true, rounds, &shm);
	report_session(path, dev, &echo, memfd, false, rounds, &msg);
	struct bench_row rows[5];
	double limit = (shm.memcpy + shm.rtt) * 1e6;
	rows[0] = (struct bench_row){shm.is_shm ? "dirty_report_64G_shm" : "dirty_report_64G(no shm)",
				     "us", shm.report * 1e6, "memcpy_2M+rtt", limit,
				     shm.report * 1e6 / limit, "<= 2x"};
	double mlimit = (msg.memcpy + msg.rtt) * 1e6;
	rows[1] = (struct bench_row){"dirty_report_64G_msg", "us", msg.report * 1e6,
				     "memcpy_2M+rtt", mlimit, msg.report * 1e6 / mlimit,
				     "info: 2 x 1 MiB replies"};
	marking(path, dev, memfd, iters, rounds, rows + 2);
	bench_report(&o, rows, 5);
	if (!o.json)
		printf("  (best of %d rounds; %u of %llu pages dirty; memcpy 2 MiB %.1f us, raw rtt "
		       "%.1f us;\n   medians: shm %.1f us, msg %.1f us, memcpy %.1f us, rtt %.1f us)\n",
		       rounds, DIRTY_PAGES, (unsigned long long)PAGES, shm.memcpy * 1e6,
		       shm.rtt * 1e6, shm.med_report * 1e6, msg.med_report * 1e6,
		       shm.med_memcpy * 1e6, shm.med_rtt * 1e6);

	ferry_device_destroy(dev);
	close(memfd);
	bench_pingpong_stop(&echo);
	unlink(path);
	rmdir(dir);
	return 0;
}
