/*
 * Migration data throughput: the whole device state of a 256 MiB
 * ferry-dev-vram moved from a source server process to a destination one
 * through libferry's client, next to the physical limit measured in the same
 * run: one memcpy of the same number of bytes (both buffers resident), the
 * least any migration of that state from one process to another costs.
 *
 * Each round: the source goes RUNNING -> STOP_COPY (its stop-copy scan is
 * not timed), the destination RUNNING -> RESUMING; the stream is pumped
 * from the first read to the last write (timed); the destination goes to
 * STOP (it validates: timed separately, reported in the log line), both
 * back to RUNNING. Two client threads pipeline: one reads chunk k+1 from
 * the source while the other writes chunk k to the destination.
 *   plain   MIG_DATA_READ / MIG_DATA_WRITE messages of 1 MiB (the
 *           protocol's limit), through a ring of 4 buffers;
 *   mig_shm one memfd shared with both servers, 4 slots: the source's
 *           save() writes into a slot, the destination's load() reads it
 *           there; the client moves no data byte.
 * The VRAM is filled with incompressible data first (no zero or hole page
 * shortcuts), so every byte travels.
 *
 * A second pair of servers, "memdev" (forked here, built on libferry like
 * any device), has the simplest model possible: its state is 256 MiB of
 * memory, save() and load() are one memcpy each. The vram model's own work
 * per byte (it copies each page to stage it, crc32s the stream and
 * fingerprints every page on both sides) bounds the vram rows; the memdev
 * rows show what libferry's data path itself costs.
 *
 * The log line on stderr gives the CPU time each process spent per
 * migration, which says which side bounds a row.
 *
 * Usage: bench_mig_data [--json] [--quick]; the server binary is
 * $FERRY_DEV_VRAM, else the build tree's devices/vram/ferry-dev-vram
 * (found from argv[0], or the path meson compiled in).
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ferry/client.h>
#include <ferry/client_migration.h>
#include <ferry/device.h>
#include <ferry/device_migration.h>
#include <ferry/log.h>

#include "bench_util.h"

#ifndef FERRY_DEV_VRAM_PATH
#define FERRY_DEV_VRAM_PATH "ferry-dev-vram"
#endif

#define VRAM_BAR 2
#define CHUNK (1u << 20)   /* plain: the protocol's max_data_xfer_size */
#define SLOTS 4            /* ring depth, both modes */
/* mig_shm slot size. Measured on the 2-vCPU build VM (memdev ratio, noisy
 * +-20%): 256 KiB 0.18, 512 KiB 0.49, 1 MiB 0.35, 2 MiB 0.39, 4 MiB
 * 0.49-0.68, 8 MiB 0.61, 16 MiB 0.60: below 4 MiB the round trips show,
 * above it nothing more is won. -DSHM_SLOT=... to try others. */
#ifndef SHM_SLOT
#define SHM_SLOT (4u << 20)
#endif

struct dev {
	pid_t pid;
	char sock[160];
	struct ferry_client *c;
};

static char dir[] = "/tmp/ferry-bench-mig-XXXXXX";

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static void start_dev(struct dev *d, const char *bin, const char *name, const char *size)
{
	struct ferry_client_options o = {.name = name, .timeout_ms = 120000};

	snprintf(d->sock, sizeof(d->sock), "%s/%s.sock", dir, name);
	d->pid = fork();
	if (d->pid == 0) {
		execl(bin, bin, "--socket", d->sock, "--size", size, "--name", name, (char *)NULL);
		fprintf(stderr, "bench: exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	if (d->pid < 0)
		bench_die("fork");
	for (int i = 0; i < 1000; i++) {
		int st;
		if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
			fprintf(stderr, "bench: %s exited at start (is %s built?)\n", name, bin);
			exit(1);
		}
		if (access(d->sock, F_OK) == 0 && ferry_client_connect(d->sock, &o, &d->c) == 0)
			return;
		sleep_ms(10);
	}
	bench_die("device server did not come up");
}

/* ---- memdev: the simplest migratable device ---- */

struct memdev {
	uint8_t *mem;
	size_t size, off;
	enum ferry_mig_state state;
};

static int md_access(void *o, unsigned region, uint64_t off, void *buf, uint32_t count,
		     bool is_write)
{
	(void)o, (void)region, (void)off;
	if (!is_write)
		memset(buf, 0, count);
	return 0;
}

static int md_reset(void *o)
{
	struct memdev *m = o;
	m->state = FERRY_MIG_RUNNING;
	return 0;
}

static int md_transition(void *o, enum ferry_mig_state from, enum ferry_mig_state to,
			 bool *restored)
{
	struct memdev *m = o;
	(void)from;
	if (from == FERRY_MIG_RESUMING && to == FERRY_MIG_STOP && m->off != m->size) {
		*restored = true;
		return -EINVAL;
	}
	if (to == FERRY_MIG_STOP_COPY || to == FERRY_MIG_RESUMING)
		m->off = 0;
	m->state = to;
	return 0;
}

static ssize_t md_save(void *o, void *buf, size_t len)
{
	struct memdev *m = o;
	size_t n = m->size - m->off < len ? m->size - m->off : len;
	memcpy(buf, m->mem + m->off, n);
	m->off += n;
	return (ssize_t)n;
}

static int md_load(void *o, const void *buf, size_t len)
{
	struct memdev *m = o;
	if (len > m->size - m->off)
		return -EINVAL;
	memcpy(m->mem + m->off, buf, len);
	m->off += len;
	return 0;
}

static const struct ferry_device_ops md_ops = {
	.size = sizeof(struct ferry_device_ops),
	.region_access = md_access,
	.reset = md_reset,
};

static const struct ferry_migration_ops md_mig = {
	.size = sizeof(struct ferry_migration_ops),
	.flags = VFIO_MIGRATION_STOP_COPY,
	.transition = md_transition,
	.save = md_save,
	.load = md_load,
};

static void fill(uint8_t *p, size_t len, uint64_t seed);

static struct ferry_device *md_dev;

static void md_on_term(int sig)
{
	(void)sig;
	if (md_dev)
		ferry_device_stop(md_dev);
}

static void memdev_child(const char *path, size_t size)
{
	struct memdev m = {.size = size, .state = FERRY_MIG_RUNNING};
	struct ferry_device_info info = {
		.name = "memdev",
		.id = {.vendor_id = 0xf377, .device_id = 0x0002, .class_code = 0xff0000},
		.ops = &md_ops,
		.opaque = &m,
	};
	for (unsigned i = 0; i < FERRY_PCI_NUM_REGIONS; i++)
		info.regions[i].mmap_fd = -1;
	info.regions[0].size = 4096;
	info.regions[0].flags = FERRY_REGION_READ | FERRY_REGION_WRITE;
	m.mem = malloc(size);
	if (!m.mem)
		_exit(1);
	fill(m.mem, size, (uint64_t)getpid());
	if (ferry_device_create(&info, &md_dev) < 0 ||
	    ferry_device_set_migration(md_dev, &md_mig) < 0 || ferry_device_listen(md_dev, path) < 0)
		_exit(1);
	signal(SIGTERM, md_on_term);
	ferry_device_run(md_dev);
	ferry_device_destroy(md_dev);
	_exit(0);
}

static void start_memdev(struct dev *d, const char *name, size_t size)
{
	struct ferry_client_options o = {.name = name, .timeout_ms = 120000};

	snprintf(d->sock, sizeof(d->sock), "%s/%s.sock", dir, name);
	d->pid = fork();
	if (d->pid == 0)
		memdev_child(d->sock, size);
	if (d->pid < 0)
		bench_die("fork");
	for (int i = 0; i < 2000; i++) {
		if (access(d->sock, F_OK) == 0 && ferry_client_connect(d->sock, &o, &d->c) == 0)
			return;
		sleep_ms(10);
	}
	bench_die("memdev did not come up");
}

/* CPU seconds process @pid used so far (utime + stime). */
static double cpu_of(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "r")))
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void stop_dev(struct dev *d)
{
	ferry_client_close(d->c);
	kill(d->pid, SIGTERM);
	waitpid(d->pid, NULL, 0);
	unlink(d->sock);
}

static void set(struct dev *d, enum ferry_mig_state s)
{
	if (ferry_client_mig_set_state(d->c, s) < 0) {
		fprintf(stderr, "bench: %s -> %s failed\n", d->sock, ferry_mig_state_name(s));
		exit(1);
	}
}

/* ---- the pump: a reader thread and a writer thread around a ring ---- */

struct pump {
	struct dev *src, *dst;
	bool use_shm;
	uint8_t *bufs[SLOTS]; /* plain */
	pthread_mutex_t lock;
	pthread_cond_t cv;
	uint64_t produced, consumed; /* chunks */
	uint32_t len[SLOTS];         /* bytes in each full slot */
	bool is_eof;
	uint64_t bytes;
	int err;
	double t_read, t_write; /* seconds inside the read / write calls */
};

static void *reader(void *arg)
{
	struct pump *p = arg;

	for (uint64_t k = 0;; k++) {
		pthread_mutex_lock(&p->lock);
		while (k - p->consumed >= SLOTS && !p->err)
			pthread_cond_wait(&p->cv, &p->lock);
		pthread_mutex_unlock(&p->lock);
		unsigned s = k % SLOTS;
		uint32_t got = 0;
		int r;
		double t0 = bench_now();
		if (p->use_shm) {
			r = ferry_client_mig_read_shm(p->src->c, (uint64_t)s * SHM_SLOT, SHM_SLOT, &got);
		} else {
			size_t n = 0;
			r = ferry_client_mig_read(p->src->c, p->bufs[s], CHUNK, &n);
			got = (uint32_t)n;
		}
		pthread_mutex_lock(&p->lock);
		p->t_read += bench_now() - t0;
		if (r < 0)
			p->err = r;
		if (r < 0 || !got)
			p->is_eof = true;
		else {
			p->len[s] = got;
			p->produced = k + 1;
		}
		pthread_cond_broadcast(&p->cv);
		bool done = p->is_eof;
		pthread_mutex_unlock(&p->lock);
		if (done)
			return NULL;
	}
}

static void *writer(void *arg)
{
	struct pump *p = arg;

	for (uint64_t k = 0;; k++) {
		pthread_mutex_lock(&p->lock);
		while (k >= p->produced && !p->is_eof)
			pthread_cond_wait(&p->cv, &p->lock);
		bool done = k >= p->produced;
		uint32_t n = done ? 0 : p->len[k % SLOTS];
		pthread_mutex_unlock(&p->lock);
		if (done)
			return NULL;
		unsigned s = k % SLOTS;
		double t0 = bench_now();
		int r = p->use_shm ? ferry_client_mig_write_shm(p->dst->c, (uint64_t)s * SHM_SLOT, n)
				   : ferry_client_mig_write(p->dst->c, p->bufs[s], n);
		pthread_mutex_lock(&p->lock);
		p->t_write += bench_now() - t0;
		if (r < 0) {
			p->err = r;
			p->is_eof = true;
		}
		p->bytes += n;
		p->consumed = k + 1;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->lock);
		if (r < 0)
			return NULL;
	}
}

/* One migration of the whole state; returns the pump's seconds. */
static double migrate_once(struct dev *src, struct dev *dst, bool use_shm, uint8_t **bufs,
			   uint64_t *bytes, double *validate_s)
{
	struct pump p = {.src = src, .dst = dst, .use_shm = use_shm};
	pthread_t rt, wt;

	memcpy(p.bufs, bufs, sizeof(p.bufs));
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.cv, NULL);
	set(src, FERRY_MIG_STOP_COPY);
	set(dst, FERRY_MIG_RESUMING);

	double t0 = bench_now();
	if (pthread_create(&rt, NULL, reader, &p) || pthread_create(&wt, NULL, writer, &p))
		bench_die("pthread_create");
	pthread_join(rt, NULL);
	pthread_join(wt, NULL);
	double t1 = bench_now();
	if (p.err) {
		errno = -p.err;
		bench_die("pumping the stream");
	}
	set(dst, FERRY_MIG_STOP); /* the destination validates the stream */
	*validate_s = bench_now() - t1;
	set(dst, FERRY_MIG_RUNNING);
	set(src, FERRY_MIG_RUNNING);
	pthread_mutex_destroy(&p.lock);
	pthread_cond_destroy(&p.cv);
	*bytes = p.bytes;
	if (getenv("FERRY_BENCH_VERBOSE"))
		fprintf(stderr, "  %s: %.3f s: %.3f s in reads, %.3f s in writes\n",
			use_shm ? "mig_shm" : "plain", t1 - t0, p.t_read, p.t_write);
	return t1 - t0;
}

/* ---- the limit ---- */

/* Seconds per copy of @len bytes, over @reps copies: a run about as long as
 * a migration, so that a busy machine slows both alike. */
static double memcpy_time(uint8_t *dst, const uint8_t *src, size_t len, int reps)
{
	double t0 = bench_now();
	for (int i = 0; i < reps; i++) {
		memcpy(dst, src, len);
		__asm__ volatile("" : : "r"(dst) : "memory");
	}
	return (bench_now() - t0) / reps;
}

/* Incompressible, not zero, quick to make. */
static void fill(uint8_t *p, size_t len, uint64_t seed)
{
	uint64_t x = seed | 1;
	for (size_t i = 0; i + 8 <= len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
}

static const char *vram_binary(const char *argv0, char *buf, size_t len)
{
	const char *env = getenv("FERRY_DEV_VRAM");
	char tmp[PATH_MAX];

	if (env)
		return env;
	snprintf(tmp, sizeof(tmp), "%s", argv0);
	snprintf(buf, len, "%s/../devices/vram/ferry-dev-vram", dirname(tmp));
	if (access(buf, X_OK) == 0)
		return buf;
	return FERRY_DEV_VRAM_PATH;
}

/* The memcpy limit, measured between migrations. */
static uint8_t *copy_a, *copy_b;
static size_t copy_len;
static double t_copy[32];
static int n_copy;

static double copy_cpu; /* CPU seconds per copy, summed over measurements */

static double thread_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void measure_copy(void)
{
	if (n_copy < 32) {
		double c0 = thread_cpu();
		t_copy[n_copy++] = memcpy_time(copy_b, copy_a, copy_len, 8);
		copy_cpu += (thread_cpu() - c0) / 8;
	}
}

struct pair_result {
	double plain_mbs, shm_mbs, validate_ms;
	double cpu_src, cpu_dst, cpu_client; /* per shm migration, seconds */
	uint64_t bytes;
	bool has_shm;
};

/* Rounds of plain and mig_shm migrations between @src and @dst (after a
 * warm-up); medians in MB/s. */
static void run_pair(struct dev *src, struct dev *dst, int rounds, struct pair_result *out)
{
	uint8_t *bufs[SLOTS];
	double t_plain[8], t_shm[8], v = 0, v_sum = 0;
	int shm_fd = -1;

	memset(out, 0, sizeof(*out));
	for (int i = 0; i < SLOTS; i++)
		if (!(bufs[i] = malloc(CHUNK)))
			bench_die("malloc");
	/* The shared buffer, handed to both servers. */
	out->has_shm = (ferry_client_server_caps(src->c)->extensions & FERRY_EXT_MIG_SHM) &&
		       ferry_mig_shm_create((uint64_t)SLOTS * SHM_SLOT, &shm_fd) == 0 &&
		       ferry_client_mig_shm_setup(src->c, shm_fd, (uint64_t)SLOTS * SHM_SLOT) == 0 &&
		       ferry_client_mig_shm_setup(dst->c, shm_fd, (uint64_t)SLOTS * SHM_SLOT) == 0;
	/* warm-up: faults the destination's memory in, as a second migration finds it */
	migrate_once(src, dst, out->has_shm, bufs, &out->bytes, &v);
	for (int r = 0; r < rounds; r++) {
		measure_copy();
		t_plain[r] = migrate_once(src, dst, false, bufs, &out->bytes, &v);
		measure_copy();
		if (out->has_shm) {
			double c0 = cpu_of(src->pid), c1 = cpu_of(dst->pid), c2 = self_cpu();
			t_shm[r] = migrate_once(src, dst, true, bufs, &out->bytes, &v);
			out->cpu_src += cpu_of(src->pid) - c0;
			out->cpu_dst += cpu_of(dst->pid) - c1;
			out->cpu_client += self_cpu() - c2;
		}
		v_sum += v;
	}
	out->plain_mbs = (double)out->bytes / bench_median(t_plain, rounds) / 1e6;
	if (out->has_shm)
		out->shm_mbs = (double)out->bytes / bench_median(t_shm, rounds) / 1e6;
	out->validate_ms = v_sum / rounds * 1e3;
	out->cpu_src /= rounds;
	out->cpu_dst /= rounds;
	out->cpu_client /= rounds;
	for (int i = 0; i < SLOTS; i++)
		free(bufs[i]);
	if (shm_fd >= 0)
		close(shm_fd);
}

static void log_pair(const char *name, const struct pair_result *r)
{
	fprintf(stderr, "bench_mig_data: %s: %llu stream bytes; destination validation %.0f ms; "
		"CPU per mig_shm migration: source %.3f s, destination %.3f s, client %.3f s%s\n",
		name, (unsigned long long)r->bytes, r->validate_ms, r->cpu_src, r->cpu_dst,
		r->cpu_client, r->has_shm ? "" : " (mig_shm not offered)");
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	char binbuf[PATH_MAX];
	const char *bin = vram_binary(argv[0], binbuf, sizeof(binbuf));

	bench_parse(argc, argv, &o);
	ferry_log_set_level(FERRY_LOG_WARN);
	const char *size_arg = o.quick ? "64M" : "256M";
	size_t vram = o.quick ? (64u << 20) : (256u << 20);
	int rounds = o.quick ? 1 : 5;

	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(dir))
		bench_die("mkdtemp");

	/* The limit: a memcpy of the same size, both buffers resident; taken
	 * between the migrations (run_pair), 8 copies a time. */
	uint8_t *a = malloc(vram), *b = malloc(vram);
	if (!a || !b)
		bench_die("malloc");
	fill(a, vram, 7);
	memset(b, 1, vram);
	memcpy_time(b, a, vram, 1);
	copy_a = a;
	copy_b = b;
	copy_len = vram;

	/* vram: the real device */
	struct dev src = {0}, dst = {0};
	struct pair_result rv, rm;
	start_dev(&src, bin, "bench-src", size_arg);
	start_dev(&dst, bin, "bench-dst", size_arg);
	int err = 0;
	uint8_t *map = ferry_client_region_map(src.c, VRAM_BAR, &err);
	if (!map) {
		errno = -err;
		bench_die("mapping the source VRAM");
	}
	fill(map, vram, 0x9e3779b97f4a7c15ull); /* incompressible, no zero pages */
	run_pair(&src, &dst, rounds, &rv);
	stop_dev(&src);
	stop_dev(&dst);

	/* memdev: the library's own path */
	start_memdev(&src, "memdev-src", vram);
	start_memdev(&dst, "memdev-dst", vram);
	run_pair(&src, &dst, rounds, &rm);
	stop_dev(&src);
	stop_dev(&dst);
	rmdir(dir);
	free(a);
	free(b);
	double copy_mbs = (double)vram / bench_median(t_copy, n_copy) / 1e6;

	log_pair("vram", &rv);
	log_pair("memdev", &rm);
	fprintf(stderr, "bench_mig_data: memcpy of %zu MiB: %.3f s CPU (%.0f MB per CPU second); "
		"a busy machine moves the MB/s figures, the CPU times much less\n", vram >> 20,
		copy_cpu / n_copy, (double)vram / (copy_cpu / n_copy) / 1e6);
	struct bench_row rows[4] = {
		{.name = "mig_vram_plain", .unit = "MB/s", .value = rv.plain_mbs,
		 .limit_name = "memcpy_same_size", .limit = copy_mbs,
		 .ratio = rv.plain_mbs / copy_mbs, .aim = ">= 0.60"},
		{.name = "mig_vram_shm", .unit = "MB/s", .value = rv.shm_mbs,
		 .limit_name = "memcpy_same_size", .limit = copy_mbs,
		 .ratio = rv.shm_mbs / copy_mbs, .aim = ">= 0.60"},
		{.name = "mig_memdev_plain", .unit = "MB/s", .value = rm.plain_mbs,
		 .limit_name = "memcpy_same_size", .limit = copy_mbs,
		 .ratio = rm.plain_mbs / copy_mbs, .aim = ">= 0.60"},
		{.name = "mig_memdev_shm", .unit = "MB/s", .value = rm.shm_mbs,
		 .limit_name = "memcpy_same_size", .limit = copy_mbs,
		 .ratio = rm.shm_mbs / copy_mbs, .aim = ">= 0.60"},
	};
	bench_report(&o, rows, 4);
	return 0;
}
