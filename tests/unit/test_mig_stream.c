/*
 * The migration stream, its transports and its URIs: round trips of a
 * synthetic migration over a socketpair, TCP loopback, a UNIX socket, a file
 * and memory; and a rejection suite (truncation at every offset, every
 * single-bit flip, crafted sections that break one rule each).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "migrate/ack.h"
#include "migrate/manifest.h"
#include "migrate/stream.h"
#include "migrate/transport.h"
#include "migrate/uri.h"
#include "util/log.h"

#define PS 4096u
#define NPAGES 640u /* 2.5 MiB: two page windows */
#define MEM_SIZE ((uint64_t)NPAGES * PS)
#define MAX_MEM (1ull << 30)
#define DEV0_PRE (300u << 10)
#define DEV0_POST 100u
#define DEV1_LEN (1536u << 10)
#define TIMEOUT_MS 10000

/* ---- log capture: every failure logs exactly one line ---- */

static int log_lines;
static char log_last[512];

static void capture(enum ferry_log_level lvl, const char *line, void *opaque)
{
	(void)opaque;
	if (lvl <= FERRY_LOG_WARN) {
		__atomic_add_fetch(&log_lines, 1, __ATOMIC_RELAXED);
		snprintf(log_last, sizeof(log_last), "%s", line);
	}
}

static int setup(void **state)
{
	(void)state;
	ferry_log_set_sink(capture, NULL);
	ferry_log_set_level(FERRY_LOG_WARN);
	log_lines = 0;
	log_last[0] = '\0';
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ferry_log_set_sink(NULL, NULL);
	return 0;
}

#define assert_logged_once(needle)                                    \
	do {                                                          \
		assert_int_equal(log_lines, 1);                       \
		if (!strstr(log_last, (needle)))                      \
			fail_msg("log line '%s' lacks '%s'", log_last, (needle)); \
		log_lines = 0;                                        \
	} while (0)

/* ---- synthetic guest ---- */

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
}

static void make_manifest(struct mig_manifest *m, uint32_t ndev, uint64_t size, uint32_t ps,
			  enum mig_compression comp)
{
	memset(m, 0, sizeof(*m));
	strcpy(m->source_host, "src-host");
	m->mem_size = size;
	m->page_size = ps;
	m->compression = comp;
	m->ndevices = ndev;
	for (uint32_t i = 0; i < ndev; i++) {
		snprintf(m->devices[i].kind, sizeof(m->devices[i].kind), i ? "vram" : "dma");
		snprintf(m->devices[i].socket, sizeof(m->devices[i].socket), "/run/dev%u.sock", i);
		m->devices[i].migration_flags = i ? 7 : 1;
	}
}

/* Guest memory: every third page zero, every fifth compressible, the rest random. */
static uint8_t *make_guest(uint64_t npages, uint32_t ps)
{
	uint8_t *mem = aligned_alloc(4096, npages * ps);

	assert_non_null(mem);
	for (uint64_t p = 0; p < npages; p++) {
		uint8_t *pg = mem + p * ps;
		if (p % 3 == 0)
			memset(pg, 0, ps);
		else if (p % 5 == 0)
			memset(pg, (int)(p & 0xff) | 1, ps);
		else
			fill_random(pg, ps, p + 1);
	}
	return mem;
}

static void set_bit(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ull << (i % 64);
}

struct source_job {
	struct mig_transport *t;
	uint8_t *mem;
	uint64_t npages;
	uint32_t ps;
	enum mig_compression comp;
	uint8_t *dev0, *dev1;
	bool wants_ack;
	int ack_status;
	char ack_msg[128];
	struct mig_stream_stats stats;
	int rc;
};

#define CHECK(call)                      \
	do {                             \
		rc = (call);             \
		if (rc < 0)              \
			goto out;        \
	} while (0)

/* The source side of a migration: two pre-copy rounds, switchover, a
 * stop-copy round by reference, two devices, checksums, end. */
static void *run_source(void *arg)
{
	struct source_job *j = arg;
	struct mig_stream_writer *w = NULL;
	struct mig_manifest m;
	uint64_t words = (j->npages + 63) / 64;
	uint64_t *bm = calloc(words, sizeof(uint64_t));
	uint64_t last = j->npages - 1;
	int rc;

	make_manifest(&m, 2, j->npages * j->ps, j->ps, j->comp);
	CHECK(mig_stream_writer_create(j->t, &m, NULL, &w));

	/* round 1: everything, live */
	CHECK(mig_stream_write_pages(w, j->mem, NULL, 0, j->npages, 0));
	CHECK(mig_stream_write_device_data(w, 0, j->dev0, DEV0_PRE));
	CHECK(mig_stream_write_round_end(w, 1, j->npages, 3));

	/* round 2: three pages changed, far apart: a run with skipped pages */
	fill_random(j->mem + 1 * j->ps, j->ps, 1001);
	fill_random(j->mem + 4 * j->ps, j->ps, 1004);
	memset(j->mem + last * j->ps, 0x5a, j->ps);
	set_bit(bm, 1);
	set_bit(bm, 4);
	set_bit(bm, last);
	CHECK(mig_stream_write_pages(w, j->mem, bm, 0, j->npages, 0));
	CHECK(mig_stream_write_round_end(w, 2, 3, 2));
	CHECK(mig_stream_write_switchover(w));

	/* stop-copy: a data page becomes zero, a zero page gets data */
	memset(bm, 0, words * sizeof(uint64_t));
	memset(j->mem + 1 * j->ps, 0, j->ps);
	fill_random(j->mem + 3 * j->ps, j->ps, 3003);
	set_bit(bm, 1);
	set_bit(bm, 3);
	CHECK(mig_stream_write_pages(w, j->mem, bm, 0, j->npages, MIG_WRITE_STABLE));
	CHECK(mig_stream_write_device_data(w, 0, j->dev0 + DEV0_PRE, DEV0_POST));
	CHECK(mig_stream_write_device_data(w, 1, j->dev1, DEV1_LEN));
	CHECK(mig_stream_write_device_end(w, 0));
	CHECK(mig_stream_write_device_end(w, 1));
	CHECK(mig_stream_write_checksums(w, true,
					 (uint32_t)crc32_z(0, j->mem, j->npages * j->ps)));
	CHECK(mig_stream_write_end(w));
	mig_stream_writer_stats(w, &j->stats);
	if (j->wants_ack)
		rc = mig_ack_recv(j->t, TIMEOUT_MS, &j->ack_status, j->ack_msg,
				  sizeof(j->ack_msg));
out:
	mig_stream_writer_destroy(w);
	free(bm);
	j->rc = rc;
	return NULL;
}

struct dest_result {
	uint8_t *mem;
	uint8_t *dev[2];
	size_t dev_len[2];
	uint32_t rounds, page_sections, switchovers;
	bool has_checksums, has_end;
};

/* The destination side: reads to END, loading pages and device streams. */
static int run_dest(struct mig_transport *t, uint64_t npages, uint32_t ps,
		    struct dest_result *d)
{
	struct mig_stream_reader_opts o = {.max_mem_size = MAX_MEM, .timeout_ms = TIMEOUT_MS};
	struct mig_stream_reader *r;
	const struct mig_manifest *m;
	struct mig_section s;
	int rc;

	memset(d, 0, sizeof(*d));
	d->mem = calloc(npages, ps);
	d->dev[0] = malloc(DEV0_PRE + DEV0_POST);
	d->dev[1] = malloc(DEV1_LEN);
	rc = mig_stream_reader_create(t, &o, &r);
	if (rc < 0)
		return rc;
	m = mig_stream_reader_manifest(r);
	assert_int_equal(m->ndevices, 2);
	assert_string_equal(m->devices[1].kind, "vram");
	assert_string_equal(m->devices[0].socket, "/run/dev0.sock");
	assert_int_equal(m->devices[1].migration_flags, 7);
	assert_string_equal(m->source_host, "src-host");
	assert_int_equal(m->mem_size, npages * ps);
	while (!d->has_end) {
		rc = mig_stream_reader_next(r, &s);
		if (rc < 0)
			break;
		switch (s.type) {
		case MIG_SEC_GUEST_PAGES:
			d->page_sections++;
			rc = mig_stream_reader_load_pages(r, &s, d->mem, npages * ps);
			break;
		case MIG_SEC_DEVICE_DATA: {
			size_t cap = s.u.device_data.device ? DEV1_LEN : DEV0_PRE + DEV0_POST;
			size_t *len = &d->dev_len[s.u.device_data.device];
			assert_true(*len + s.u.device_data.len <= cap);
			memcpy(d->dev[s.u.device_data.device] + *len, s.u.device_data.data,
			       s.u.device_data.len);
			*len += s.u.device_data.len;
			break;
		}
		case MIG_SEC_ROUND_END:
			assert_int_equal(s.u.round_end.round, ++d->rounds);
			break;
		case MIG_SEC_SWITCHOVER:
			d->switchovers++;
			break;
		case MIG_SEC_DEVICE_END:
			assert_int_equal(s.u.device_end.total_bytes,
					 d->dev_len[s.u.device_end.device]);
			break;
		case MIG_SEC_CHECKSUMS:
			assert_true(s.u.checksums.has_memory);
			assert_int_equal(s.u.checksums.count, 3);
			assert_int_equal(s.u.checksums.memory_crc,
					 (uint32_t)crc32_z(0, d->mem, npages * ps));
			d->has_checksums = true;
			break;
		case MIG_SEC_END:
			d->has_end = true;
			break;
		default:
			fail_msg("unexpected section type %d", s.type);
		}
		if (rc < 0)
			break;
	}
	if (rc == 0) {
		/* A call after END is a caller bug. */
		assert_int_equal(mig_stream_reader_next(r, &s), -EPIPE);
		log_lines--;
	}
	mig_stream_reader_destroy(r);
	return rc;
}

static void free_dest(struct dest_result *d)
{
	free(d->mem);
	free(d->dev[0]);
	free(d->dev[1]);
}

struct synthetic {
	struct source_job src;
	uint8_t *orig_dev0, *orig_dev1;
};

static void synthetic_init(struct synthetic *sy, uint64_t npages, uint32_t ps,
			   enum mig_compression comp)
{
	memset(sy, 0, sizeof(*sy));
	sy->src.mem = make_guest(npages, ps);
	sy->src.npages = npages;
	sy->src.ps = ps;
	sy->src.comp = comp;
	sy->src.dev0 = malloc(DEV0_PRE + DEV0_POST);
	sy->src.dev1 = malloc(DEV1_LEN);
	fill_random(sy->src.dev0, DEV0_PRE + DEV0_POST, 77);
	fill_random(sy->src.dev1, DEV1_LEN, 78);
}

/* The destination ended with the source's final memory and both device streams. */
static void synthetic_verify(struct synthetic *sy, struct dest_result *d)
{
	assert_int_equal(sy->src.rc, 0);
	assert_true(d->has_end);
	assert_true(d->has_checksums);
	assert_int_equal(d->rounds, 2);
	assert_int_equal(d->switchovers, 1);
	assert_memory_equal(d->mem, sy->src.mem, sy->src.npages * sy->src.ps);
	assert_int_equal(d->dev_len[0], DEV0_PRE + DEV0_POST);
	assert_int_equal(d->dev_len[1], DEV1_LEN);
	assert_memory_equal(d->dev[0], sy->src.dev0, DEV0_PRE + DEV0_POST);
	assert_memory_equal(d->dev[1], sy->src.dev1, DEV1_LEN);
	assert_int_equal(log_lines, 0);
}

static void synthetic_free(struct synthetic *sy)
{
	free(sy->src.mem);
	free(sy->src.dev0);
	free(sy->src.dev1);
}

/* Source on a thread over @src_t, destination here over @dst_t; with a
 * back-channel the destination acknowledges. */
static void round_trip_threaded(struct mig_transport *src_t, struct mig_transport *dst_t)
{
	struct synthetic sy;
	struct dest_result d;
	pthread_t th;

	synthetic_init(&sy, NPAGES, PS, MIG_COMPRESS_NONE);
	sy.src.t = src_t;
	sy.src.wants_ack = dst_t->has_backchannel;
	assert_int_equal(pthread_create(&th, NULL, run_source, &sy.src), 0);
	assert_int_equal(run_dest(dst_t, NPAGES, PS, &d), 0);
	if (dst_t->has_backchannel)
		assert_int_equal(mig_ack_send(dst_t, 0, "resumed on dst", TIMEOUT_MS), 0);
	pthread_join(th, NULL);
	synthetic_verify(&sy, &d);
	if (dst_t->has_backchannel) {
		assert_int_equal(sy.src.ack_status, 0);
		assert_string_equal(sy.src.ack_msg, "resumed on dst");
	}
	/* Zero pages cost a flag: the first round sent a third of them as zero. */
	assert_true(sy.src.stats.pages_zero >= NPAGES / 3);
	assert_true(sy.src.stats.bytes < MEM_SIZE + DEV0_PRE + DEV1_LEN);
	free_dest(&d);
	synthetic_free(&sy);
}

/* ---- round trips ---- */

static void test_round_trip_socketpair(void **state)
{
	struct mig_transport *a, *b;
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(mig_transport_sock_create(sv[0], "pair-src", &a), 0);
	assert_int_equal(mig_transport_sock_create(sv[1], "pair-dst", &b), 0);
	round_trip_threaded(a, b);
	mig_transport_close(a);
	mig_transport_close(b);
}

struct connect_job {
	char uri[256];
	struct mig_transport *t;
	int rc;
};

static void *run_connect(void *arg)
{
	struct connect_job *c = arg;

	c->rc = mig_transport_connect(c->uri, TIMEOUT_MS, &c->t);
	return NULL;
}

/* Listens on @uri, connects to what it reports, runs the synthetic migration. */
static void round_trip_listen(const char *uri)
{
	struct mig_listener *l;
	struct mig_transport *dst, *extra;
	struct connect_job c = {0};
	pthread_t th;

	assert_int_equal(mig_transport_listen(uri, &l), 0);
	snprintf(c.uri, sizeof(c.uri), "%s", mig_listener_uri(l));
	assert_int_equal(pthread_create(&th, NULL, run_connect, &c), 0);
	assert_int_equal(mig_transport_accept(l, TIMEOUT_MS, &dst), 0);
	pthread_join(th, NULL);
	assert_int_equal(c.rc, 0);
	/* One connection only. */
	assert_int_equal(mig_transport_accept(l, 0, &extra), -EBUSY);
	assert_logged_once("already accepted");
	round_trip_threaded(c.t, dst);
	mig_transport_close(c.t);
	mig_transport_close(dst);
	mig_listener_close(l);
}

static void test_round_trip_tcp(void **state)
{
	struct mig_listener *l;

	(void)state;
	/* Port 0: the kernel picks, and the listener says which. */
	assert_int_equal(mig_transport_listen("tcp:127.0.0.1:0", &l), 0);
	assert_true(mig_listener_port(l) != 0);
	char want[64];
	snprintf(want, sizeof(want), "tcp:127.0.0.1:%u", mig_listener_port(l));
	assert_string_equal(mig_listener_uri(l), want);
	mig_listener_close(l);

	round_trip_listen("tcp:127.0.0.1:0");
}

static void test_round_trip_tcp6(void **state)
{
	struct mig_listener *l;
	int rc;

	(void)state;
	rc = mig_transport_listen("tcp:[::1]:0", &l);
	if (rc < 0) {
		log_lines = 0; /* no IPv6 loopback here */
		skip();
	}
	assert_non_null(strstr(mig_listener_uri(l), "tcp:[::1]:"));
	mig_listener_close(l);
	round_trip_listen("tcp:[::1]:0");
}

static void test_round_trip_unix(void **state)
{
	char dir[] = "/tmp/ferry-mig-XXXXXX";
	char uri[128];
	struct mig_listener *l;
	struct stat st;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(uri, sizeof(uri), "unix:%s/mig.sock", dir);
	round_trip_listen(uri);
	/* The socket file is gone once the connection was taken. */
	assert_int_equal(stat(uri + 5, &st), -1);

	/* An existing path is refused, not replaced. */
	assert_int_equal(mig_transport_listen(uri, &l), 0);
	struct mig_listener *l2;
	assert_int_equal(mig_transport_listen(uri, &l2), -EADDRINUSE);
	assert_logged_once("already exists");
	mig_listener_close(l);
	assert_int_equal(stat(uri + 5, &st), -1);
	rmdir(dir);
}

static void test_round_trip_file(void **state)
{
	char dir[] = "/tmp/ferry-mig-XXXXXX";
	char uri[128];
	struct mig_transport *src, *dst;
	struct mig_listener *l;
	struct synthetic sy;
	struct dest_result d;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(uri, sizeof(uri), "file:%s/stream.bin", dir);
	synthetic_init(&sy, NPAGES, PS, MIG_COMPRESS_NONE);
	assert_int_equal(mig_transport_connect(uri, TIMEOUT_MS, &src), 0);
	assert_false(src->has_backchannel);
	sy.src.t = src;
	run_source(&sy.src);
	assert_int_equal(sy.src.rc, 0);
	/* No back-channel on a file. */
	int st;
	assert_int_equal(mig_ack_recv(src, 10, &st, NULL, 0), -EOPNOTSUPP);
	assert_logged_once("no back-channel");
	mig_transport_close(src);

	assert_int_equal(mig_transport_listen(uri, &l), 0);
	assert_int_equal(mig_listener_port(l), 0);
	assert_int_equal(mig_transport_accept(l, TIMEOUT_MS, &dst), 0);
	assert_int_equal(run_dest(dst, NPAGES, PS, &d), 0);
	synthetic_verify(&sy, &d);
	mig_transport_close(dst);
	mig_listener_close(l);
	free_dest(&d);
	synthetic_free(&sy);
	unlink(uri + 5);
	rmdir(dir);
}

/* Memory transport; @comp and @ps vary. */
static void round_trip_mem(uint64_t npages, uint32_t ps, enum mig_compression comp)
{
	struct mig_transport *t;
	struct synthetic sy;
	struct dest_result d;

	assert_int_equal(mig_transport_mem_create(64u << 20, &t), 0);
	synthetic_init(&sy, npages, ps, comp);
	sy.src.t = t;
	run_source(&sy.src);
	assert_int_equal(sy.src.rc, 0);
	assert_int_equal(run_dest(t, npages, ps, &d), 0);
	synthetic_verify(&sy, &d);
	if (comp == MIG_COMPRESS_ZSTD)
		assert_true(sy.src.stats.pages_zstd > 0);
	else
		assert_int_equal(sy.src.stats.pages_zstd, 0);
	free_dest(&d);
	synthetic_free(&sy);
	mig_transport_close(t);
}

static void test_round_trip_mem_zstd(void **state)
{
	(void)state;
	round_trip_mem(NPAGES, PS, MIG_COMPRESS_NONE);
	round_trip_mem(NPAGES, PS, MIG_COMPRESS_ZSTD);
}

static void test_round_trip_huge_pages(void **state)
{
	(void)state;
	/* 2 MiB pages: one page per section. */
	round_trip_mem(6, 2u << 20, MIG_COMPRESS_NONE);
	round_trip_mem(6, 2u << 20, MIG_COMPRESS_ZSTD);
}

/* ---- the small stream the rejection suite damages ---- */

struct small_stream {
	uint8_t *bytes;
	size_t len;
};

#define SMALL_PAGES 16u

/* Manifest, a page run (zero, data, zstd, skipped, zero), a round, switchover,
 * a device chunk, device end, checksums, end: a few KiB. */
static void build_small(struct small_stream *ss)
{
	struct mig_transport *t;
	struct mig_stream_writer *w;
	struct mig_manifest m;
	uint8_t *mem = calloc(SMALL_PAGES, PS);
	uint64_t bm = 0;
	const uint8_t *p;
	uint8_t dev[10] = "devicedat";

	fill_random(mem + 1 * PS, PS, 5);     /* data */
	memset(mem + 2 * PS, 0x11, PS);       /* compressible */
	bm = (1u << 0) | (1u << 1) | (1u << 2) | (1u << 4);
	make_manifest(&m, 1, SMALL_PAGES * PS, PS, MIG_COMPRESS_ZSTD);
	assert_int_equal(mig_transport_mem_create(1u << 20, &t), 0);
	assert_int_equal(mig_stream_writer_create(t, &m, NULL, &w), 0);
	assert_int_equal(mig_stream_write_pages(w, mem, &bm, 0, SMALL_PAGES, 0), 0);
	assert_int_equal(mig_stream_write_round_end(w, 1, 4, 0), 0);
	assert_int_equal(mig_stream_write_switchover(w), 0);
	assert_int_equal(mig_stream_write_device_data(w, 0, dev, sizeof(dev)), 0);
	assert_int_equal(mig_stream_write_device_end(w, 0), 0);
	assert_int_equal(mig_stream_write_checksums(w, true,
						    (uint32_t)crc32_z(0, mem, SMALL_PAGES * PS)), 0);
	assert_int_equal(mig_stream_write_end(w), 0);
	struct mig_stream_stats st;
	mig_stream_writer_stats(w, &st);
	assert_int_equal(st.pages_zero, 2); /* pages 0 and 4; page 3 is skipped */
	assert_int_equal(st.pages_data, 1);
	assert_int_equal(st.pages_zstd, 1);
	mig_stream_writer_destroy(w);
	p = mig_transport_mem_data(t, &ss->len);
	ss->bytes = malloc(ss->len);
	memcpy(ss->bytes, p, ss->len);
	mig_transport_close(t);
	free(mem);
}

/* Reads @len bytes as a whole stream, loading pages. Returns 0 if it
 * reached END, else the first error. */
static int read_all(const uint8_t *bytes, size_t len, uint64_t max_mem)
{
	struct mig_stream_reader_opts o = {.max_mem_size = max_mem, .timeout_ms = 1000};
	struct mig_transport *t;
	struct mig_stream_reader *r;
	struct mig_section s;
	static uint8_t *mem;
	int rc;

	if (!mem)
		mem = malloc(SMALL_PAGES * PS); /* freed at exit */
	assert_int_equal(mig_transport_mem_create(len + 1, &t), 0);
	assert_int_equal(mig_transport_write(t, bytes, len, 0), 0);
	rc = mig_stream_reader_create(t, &o, &r);
	while (rc == 0) {
		rc = mig_stream_reader_next(r, &s);
		if (rc == 0 && s.type == MIG_SEC_GUEST_PAGES)
			rc = mig_stream_reader_load_pages(r, &s, mem,
							  mig_stream_reader_manifest(r)->mem_size);
		if (rc == 0 && s.type == MIG_SEC_END)
			break;
	}
	mig_stream_reader_destroy(r);
	mig_transport_close(t);
	return rc;
}

static void test_small_stream_valid(void **state)
{
	struct small_stream ss;

	(void)state;
	build_small(&ss);
	assert_true(ss.len < 8192);
	assert_int_equal(read_all(ss.bytes, ss.len, MAX_MEM), 0);
	assert_int_equal(log_lines, 0);
	/* The header, byte by byte (docs/stream-format.md). */
	assert_memory_equal(ss.bytes, "FERRYMIG\2\0\0\0\x10\0\0\0", 16);
	/* The first section is MANIFEST, seq 0, flags 0. */
	assert_memory_equal(ss.bytes + 16, "\1\0\0\0", 4);
	assert_memory_equal(ss.bytes + 24, "\0\0\0\0", 4);
	assert_int_equal(ss.bytes[32], '{');
	/* Memory above the reader's limit is refused. */
	assert_int_equal(read_all(ss.bytes, ss.len, SMALL_PAGES * PS - 1), -EFBIG);
	assert_logged_once("above this host's limit");
	free(ss.bytes);
}

static void test_truncated_everywhere(void **state)
{
	struct small_stream ss;

	(void)state;
	build_small(&ss);
	for (size_t n = 0; n < ss.len; n++) {
		int rc = read_all(ss.bytes, n, MAX_MEM);
		if (rc != -ENODATA || log_lines != 1)
			fail_msg("truncated at %zu of %zu: rc %d, %d log lines, last '%s'", n,
				 ss.len, rc, log_lines, log_last);
		log_lines = 0;
	}
	free(ss.bytes);
}

static void test_every_bit_flip(void **state)
{
	struct small_stream ss;

	(void)state;
	build_small(&ss);
	for (size_t i = 0; i < ss.len * 8; i++) {
		ss.bytes[i / 8] ^= (uint8_t)(1u << (i % 8));
		int rc = read_all(ss.bytes, ss.len, MAX_MEM);
		ss.bytes[i / 8] ^= (uint8_t)(1u << (i % 8));
		if (rc >= 0 || log_lines != 1)
			fail_msg("bit %zu (byte %zu) flipped: rc %d, %d log lines, last '%s'", i % 8,
				 i / 8, rc, log_lines, log_last);
		log_lines = 0;
	}
	free(ss.bytes);
}

/* ---- crafted streams: each breaks one rule ---- */

struct craft {
	uint8_t buf[16384];
	size_t len;
	uint32_t seq;
};

static void craft_header(struct craft *c, uint32_t version)
{
	memcpy(c->buf, "FERRYMIG", 8);
	mig_put_le32(c->buf + 8, version);
	mig_put_le32(c->buf + 12, 16);
	c->len = 16;
	c->seq = 0;
}

/* Appends a section with a correct checksum and the next sequence number. */
static void craft_raw(struct craft *c, uint16_t type, uint16_t flags, uint32_t len_field,
		      uint32_t seq, const void *payload, size_t n)
{
	uint8_t *h = c->buf + c->len;

	assert_true(c->len + 16 + n <= sizeof(c->buf));
	mig_put_le16(h, type);
	mig_put_le16(h + 2, flags);
	mig_put_le32(h + 4, len_field);
	mig_put_le32(h + 8, seq);
	if (n)
		memcpy(h + 16, payload, n);
	mig_put_le32(h + 12, (uint32_t)crc32_z(crc32_z(0, h, 12), h + 16, n));
	c->len += 16 + n;
}

static void craft(struct craft *c, uint16_t type, const void *payload, size_t n)
{
	craft_raw(c, type, 0, (uint32_t)n, c->seq++, payload, n);
}

static const char MANIFEST_1DEV[] =
	"{\"source_host\":\"h\",\"memory\":{\"size\":65536,\"page_size\":4096},"
	"\"options\":{\"compression\":\"none\"},"
	"\"devices\":[{\"index\":0,\"kind\":\"dma\",\"socket\":\"\",\"migration_flags\":1}]}";

static void craft_start(struct craft *c)
{
	craft_header(c, MIG_STREAM_VERSION);
	craft(c, MIG_SEC_MANIFEST, MANIFEST_1DEV, strlen(MANIFEST_1DEV));
}

static void craft_dev_data(struct craft *c, uint32_t dev, const char *data)
{
	uint8_t p[64];
	size_t n = strlen(data);

	mig_put_le32(p, dev);
	memcpy(p + 4, data, n);
	craft(c, MIG_SEC_DEVICE_DATA, p, 4 + n);
}

static void craft_dev_end(struct craft *c, uint32_t dev, uint64_t total)
{
	uint8_t p[16] = {0};

	mig_put_le32(p, dev);
	mig_put_le64(p + 8, total);
	craft(c, MIG_SEC_DEVICE_END, p, sizeof(p));
}

static void craft_round(struct craft *c, uint32_t round)
{
	uint8_t p[24] = {0};

	mig_put_le32(p, round);
	craft(c, MIG_SEC_ROUND_END, p, sizeof(p));
}

/* A run of @count pages at @start, all ZERO. */
static void craft_zero_run(struct craft *c, uint64_t start, uint32_t count)
{
	uint8_t p[16 + 64];

	mig_put_le64(p, start);
	mig_put_le32(p + 8, count);
	mig_put_le32(p + 12, 0);
	memset(p + 16, MIG_PAGE_ZERO, count < 64 ? count : 64);
	craft(c, MIG_SEC_GUEST_PAGES, p, 16 + (count < 64 ? count : 64));
}

static void craft_checksums(struct craft *c, const char *dev0_stream)
{
	uint8_t p[8 + 16] = {0};
	size_t n = strlen(dev0_stream);

	mig_put_le32(p, 1);
	mig_put_le32(p + 8, 0);
	mig_put_le32(p + 12, (uint32_t)crc32_z(0, (const uint8_t *)dev0_stream, n));
	mig_put_le64(p + 16, n);
	craft(c, MIG_SEC_CHECKSUMS, p, sizeof(p));
}

/* A complete valid crafted stream: device 0 sends "abc". */
static void craft_valid_tail(struct craft *c)
{
	craft(c, MIG_SEC_SWITCHOVER, NULL, 0);
	craft_dev_data(c, 0, "abc");
	craft_dev_end(c, 0, 3);
	craft_checksums(c, "abc");
	craft(c, MIG_SEC_END, NULL, 0);
}

#define expect_refused(c, err, needle)                                   \
	do {                                                             \
		int rc_ = read_all((c)->buf, (c)->len, MAX_MEM);         \
		if (rc_ != (err))                                        \
			fail_msg("rc %d, expected %d; log: %s", rc_, (err), log_last); \
		assert_logged_once(needle);                              \
	} while (0)

static void test_crafted_valid(void **state)
{
	struct craft c;

	(void)state;
	craft_start(&c);
	craft_zero_run(&c, 0, 16);
	craft_round(&c, 1);
	craft_valid_tail(&c);
	assert_int_equal(read_all(c.buf, c.len, MAX_MEM), 0);
	assert_int_equal(log_lines, 0);
}

static void test_bad_header(void **state)
{
	struct craft c;

	(void)state;
	craft_start(&c);
	c.buf[0] = 'X';
	expect_refused(&c, -EBADMSG, "not a ferry migration stream");

	/* Version 1 had no round acks: its source would misread ours. */
	craft_header(&c, 1);
	craft(&c, MIG_SEC_MANIFEST, MANIFEST_1DEV, strlen(MANIFEST_1DEV));
	expect_refused(&c, -EPROTONOSUPPORT, "format version 1");
	craft_header(&c, MIG_STREAM_VERSION + 1);
	craft(&c, MIG_SEC_MANIFEST, MANIFEST_1DEV, strlen(MANIFEST_1DEV));
	expect_refused(&c, -EPROTONOSUPPORT, "format version 3");

	craft_start(&c);
	mig_put_le32(c.buf + 12, 24);
	expect_refused(&c, -EBADMSG, "header length 24");
}

static void test_oversize_lengths(void **state)
{
	static const uint32_t lens[] = {0xffffffffu, 0xfffffff0u, 0x80000000u,
					MIG_SECTION_MAX_LEN + 1};
	struct craft c;

	(void)state;
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		/* Refused from the header alone: nothing is allocated or read. */
		craft_start(&c);
		craft_raw(&c, MIG_SEC_DEVICE_DATA, 0, lens[i], 1, NULL, 0);
		expect_refused(&c, -EMSGSIZE, "above the limit");
		craft_start(&c);
		craft_raw(&c, MIG_SEC_GUEST_PAGES, 0, lens[i], 1, NULL, 0);
		expect_refused(&c, -EMSGSIZE, "above the limit");
	}
	/* A manifest longer than 64 KiB. */
	craft_header(&c, MIG_STREAM_VERSION);
	craft_raw(&c, MIG_SEC_MANIFEST, 0, MIG_MANIFEST_MAX_LEN + 1, 0, NULL, 0);
	expect_refused(&c, -EMSGSIZE, "above the limit");
	/* Fixed-size sections with another length. */
	craft_start(&c);
	craft_raw(&c, MIG_SEC_SWITCHOVER, 0, 1, 1, "x", 1);
	expect_refused(&c, -EBADMSG, "payload is 0 bytes");
	craft_start(&c);
	craft_raw(&c, MIG_SEC_ROUND_END, 0, 0xffffffffu, 1, NULL, 0);
	expect_refused(&c, -EBADMSG, "payload is 24 bytes");
	/* Flags are reserved. */
	craft_start(&c);
	craft_raw(&c, MIG_SEC_SWITCHOVER, 0x8000, 0, 1, NULL, 0);
	expect_refused(&c, -EBADMSG, "flags 0x8000");
}

static void test_page_runs(void **state)
{
	struct craft c;
	uint8_t p[64];

	(void)state;
	/* Beyond the 16 pages of memory. */
	craft_start(&c);
	craft_zero_run(&c, 15, 2);
	expect_refused(&c, -EBADMSG, "beyond guest memory");
	/* start + count wraps around 2^64. */
	craft_start(&c);
	craft_zero_run(&c, UINT64_MAX, 2);
	expect_refused(&c, -EBADMSG, "beyond guest memory");
	/* A count larger than the flag bytes present. */
	craft_start(&c);
	mig_put_le64(p, 0);
	mig_put_le32(p + 8, 0xffffffffu);
	mig_put_le32(p + 12, 0);
	p[16] = MIG_PAGE_ZERO;
	craft(&c, MIG_SEC_GUEST_PAGES, p, 17);
	expect_refused(&c, -EBADMSG, "does not fit");
	/* A DATA page without its data. */
	craft_start(&c);
	mig_put_le32(p + 8, 1);
	p[16] = MIG_PAGE_DATA;
	craft(&c, MIG_SEC_GUEST_PAGES, p, 17);
	expect_refused(&c, -EBADMSG, "run past the payload end");
	/* ZSTD page while the manifest says none. */
	craft_start(&c);
	p[16] = MIG_PAGE_ZSTD;
	memset(p + 17, 0, 8);
	craft(&c, MIG_SEC_GUEST_PAGES, p, 25);
	expect_refused(&c, -EBADMSG, "compression \"none\"");
	/* Unknown flag. */
	craft_start(&c);
	mig_put_le32(p + 8, 2);
	p[16] = MIG_PAGE_ZERO;
	p[17] = 9;
	craft(&c, MIG_SEC_GUEST_PAGES, p, 18);
	expect_refused(&c, -EBADMSG, "unknown flag 9");
	/* Leading skipped page. */
	craft_start(&c);
	p[16] = MIG_PAGE_SKIP;
	p[17] = MIG_PAGE_ZERO;
	craft(&c, MIG_SEC_GUEST_PAGES, p, 18);
	expect_refused(&c, -EBADMSG, "skipped page");
	/* Bytes after the last page. */
	craft_start(&c);
	p[16] = MIG_PAGE_ZERO;
	p[17] = MIG_PAGE_ZERO;
	p[18] = 0;
	craft(&c, MIG_SEC_GUEST_PAGES, p, 19);
	expect_refused(&c, -EBADMSG, "follow the last page");
	/* Reserved field. */
	craft_start(&c);
	mig_put_le32(p + 12, 1);
	craft(&c, MIG_SEC_GUEST_PAGES, p, 18);
	expect_refused(&c, -EBADMSG, "reserved");
}

static void test_unknown_type(void **state)
{
	struct craft c;

	(void)state;
	craft_start(&c);
	craft(&c, 99, "x", 1);
	expect_refused(&c, -EBADMSG, "unknown section type 99");
	craft_start(&c);
	craft(&c, 0, NULL, 0);
	expect_refused(&c, -EBADMSG, "unknown section type 0");
}

static void test_order_rules(void **state)
{
	struct craft c;

	(void)state;
	/* Something before the manifest. */
	craft_header(&c, MIG_STREAM_VERSION);
	craft(&c, MIG_SEC_SWITCHOVER, NULL, 0);
	expect_refused(&c, -EPROTO, "must open with a MANIFEST");
	/* A second manifest. */
	craft_start(&c);
	craft(&c, MIG_SEC_MANIFEST, MANIFEST_1DEV, strlen(MANIFEST_1DEV));
	expect_refused(&c, -EPROTO, "a second MANIFEST");
	/* DEVICE_END before SWITCHOVER. */
	craft_start(&c);
	craft_dev_end(&c, 0, 0);
	expect_refused(&c, -EPROTO, "DEVICE_END before SWITCHOVER");
	/* DEVICE_DATA after DEVICE_END. */
	craft_start(&c);
	craft(&c, MIG_SEC_SWITCHOVER, NULL, 0);
	craft_dev_end(&c, 0, 0);
	craft_dev_data(&c, 0, "late");
	expect_refused(&c, -EPROTO, "already had its DEVICE_END");
	/* Duplicate SWITCHOVER. */
	craft_start(&c);
	craft(&c, MIG_SEC_SWITCHOVER, NULL, 0);
	craft(&c, MIG_SEC_SWITCHOVER, NULL, 0);
	expect_refused(&c, -EPROTO, "a second SWITCHOVER");
	/* Rounds out of sequence, and after switchover. */
	craft_start(&c);
	craft_round(&c, 1);
	craft_round(&c, 3);
	expect_refused(&c, -EPROTO, "round 3 where round 2");
	craft_start(&c);
	craft(&c, MIG_SEC_SWITCHOVER, NULL, 0);
	craft_round(&c, 1);
	expect_refused(&c, -EPROTO, "ROUND_END after SWITCHOVER");
	/* END without SWITCHOVER; END with a device not ended; END without CHECKSUMS. */
	craft_start(&c);
	craft(&c, MIG_SEC_END, NULL, 0);
	expect_refused(&c, -EPROTO, "END before SWITCHOVER");
	craft_start(&c);
	craft(&c, MIG_SEC_SWITCHOVER, NULL, 0);
	craft(&c, MIG_SEC_END, NULL, 0);
	expect_refused(&c, -EPROTO, "device 0 (and 1 in all) has no DEVICE_END");
	craft_start(&c);
	craft(&c, MIG_SEC_SWITCHOVER, NULL, 0);
	craft_dev_end(&c, 0, 0);
	craft(&c, MIG_SEC_END, NULL, 0);
	expect_refused(&c, -EPROTO, "END before CHECKSUMS");
	/* Pages after CHECKSUMS. */
	craft_start(&c);
	craft(&c, MIG_SEC_SWITCHOVER, NULL, 0);
	craft_dev_end(&c, 0, 0);
	craft_checksums(&c, "");
	craft_zero_run(&c, 0, 1);
	expect_refused(&c, -EPROTO, "guest pages after CHECKSUMS");
	/* A section after END. */
	craft_start(&c);
	craft_valid_tail(&c);
	craft(&c, MIG_SEC_SWITCHOVER, NULL, 0);
	expect_refused(&c, -EPROTO, "more bytes follow END");
	/* One stray byte after END. */
	craft_start(&c);
	craft_valid_tail(&c);
	c.buf[c.len++] = 0;
	expect_refused(&c, -EPROTO, "more bytes follow END");
	/* The stream simply stops before END. */
	craft_start(&c);
	craft(&c, MIG_SEC_SWITCHOVER, NULL, 0);
	expect_refused(&c, -ENODATA, "before END");
}

static void test_sequence_numbers(void **state)
{
	struct craft c;

	(void)state;
	craft_start(&c);
	craft_raw(&c, MIG_SEC_SWITCHOVER, 0, 0, 2, NULL, 0); /* skips 1 */
	expect_refused(&c, -EBADMSG, "sequence number 2 where 1");
	craft_start(&c);
	craft_raw(&c, MIG_SEC_SWITCHOVER, 0, 0, 0, NULL, 0); /* repeats 0 */
	expect_refused(&c, -EBADMSG, "sequence number 0 where 1");
}

static void test_device_rules(void **state)
{
	struct craft c;
	uint8_t p[24] = {0};

	(void)state;
	/* Device index out of range, in each place one appears. */
	craft_start(&c);
	craft_dev_data(&c, 1, "x");
	expect_refused(&c, -EBADMSG, "device 1 out of range");
	craft_start(&c);
	craft(&c, MIG_SEC_SWITCHOVER, NULL, 0);
	craft_dev_end(&c, 0xffffffffu, 0);
	expect_refused(&c, -EBADMSG, "device 4294967295 out of range");
	craft_start(&c);
	craft(&c, MIG_SEC_SWITCHOVER, NULL, 0);
	craft_dev_end(&c, 0, 0);
	uint8_t q[8 + 32] = {0};
	mig_put_le32(q, 2);       /* two records: device 0, then device 5 */
	mig_put_le32(q + 24, 5);
	craft(&c, MIG_SEC_CHECKSUMS, q, sizeof(q));
	expect_refused(&c, -EBADMSG, "device 5 out of range");
	/* DEVICE_END total differs from what arrived. */
	craft_start(&c);
	craft(&c, MIG_SEC_SWITCHOVER, NULL, 0);
	craft_dev_data(&c, 0, "abc");
	craft_dev_end(&c, 0, 4);
	expect_refused(&c, -EBADMSG, "DEVICE_END says 4 bytes, 3 arrived");
	/* CHECKSUMS disagree with the device stream. */
	craft_start(&c);
	craft(&c, MIG_SEC_SWITCHOVER, NULL, 0);
	craft_dev_data(&c, 0, "abc");
	craft_dev_end(&c, 0, 3);
	craft_checksums(&c, "abd");
	expect_refused(&c, -EBADMSG, "device 0: the source sent");
	/* CHECKSUMS missing a device; memory record of the wrong size. */
	craft_start(&c);
	craft(&c, MIG_SEC_SWITCHOVER, NULL, 0);
	craft_dev_end(&c, 0, 0);
	memset(p, 0, sizeof(p));
	craft(&c, MIG_SEC_CHECKSUMS, p, 8);
	expect_refused(&c, -EBADMSG, "no record for device 0");
	craft_start(&c);
	craft(&c, MIG_SEC_SWITCHOVER, NULL, 0);
	craft_dev_end(&c, 0, 0);
	mig_put_le32(p, 1);
	mig_put_le32(p + 8, MIG_CHECKSUM_MEMORY);
	mig_put_le64(p + 16, 4096);
	craft(&c, MIG_SEC_CHECKSUMS, p, 24);
	expect_refused(&c, -EBADMSG, "covers 4096 bytes, memory is 65536");
	/* Round counters beyond memory. */
	craft_start(&c);
	memset(p, 0, sizeof(p));
	mig_put_le32(p, 1);
	mig_put_le64(p + 16, 17);
	craft(&c, MIG_SEC_ROUND_END, p, 24);
	expect_refused(&c, -EBADMSG, "more than the 16 pages");
}

/* ---- manifest schema ---- */

static void expect_manifest_refused(const char *json, int err, const char *needle)
{
	struct craft c;

	craft_header(&c, MIG_STREAM_VERSION);
	craft(&c, MIG_SEC_MANIFEST, json, strlen(json));
	int rc = read_all(c.buf, c.len, MAX_MEM);
	if (rc != err)
		fail_msg("%s: rc %d, expected %d; log: %s", json, rc, err, log_last);
	assert_logged_once(needle);
}

#define MF(mem, opts, devs) \
	"{\"source_host\":\"h\",\"memory\":" mem ",\"options\":" opts ",\"devices\":" devs "}"
#define MEM_OK "{\"size\":65536,\"page_size\":4096}"
#define OPT_OK "{\"compression\":\"none\"}"
#define DEV_OK "[{\"index\":0,\"kind\":\"dma\",\"socket\":\"\",\"migration_flags\":1}]"

static void test_manifest_schema(void **state)
{
	char big[8192];

	(void)state;
	expect_manifest_refused("{", -EBADMSG, "not valid JSON");
	expect_manifest_refused("[]", -EBADMSG, "not a JSON object");
	expect_manifest_refused(MF(MEM_OK, OPT_OK, DEV_OK) "{}", -EBADMSG, "not valid JSON");
	expect_manifest_refused("{\"source_host\":\"h\",\"memory\":" MEM_OK ",\"options\":" OPT_OK
				",\"devices\":" DEV_OK ",\"extra\":1}",
				-EBADMSG, "unknown key \"extra\"");
	expect_manifest_refused("{\"source_host\":\"h\",\"memory\":" MEM_OK ",\"options\":" OPT_OK
				"}",
				-EBADMSG, "\"devices\" missing");
	expect_manifest_refused("{\"source_host\":\"\",\"memory\":" MEM_OK ",\"options\":" OPT_OK
				",\"devices\":[]}",
				-EBADMSG, "source_host: empty");
	expect_manifest_refused(MF("{\"size\":65536,\"page_size\":3000}", OPT_OK, DEV_OK),
				-EBADMSG, "page_size 3000");
	expect_manifest_refused(MF("{\"size\":8388608,\"page_size\":4194304}", OPT_OK, DEV_OK),
				-EBADMSG, "page_size 4194304");
	expect_manifest_refused(MF("{\"size\":65536,\"page_size\":2048}", OPT_OK, DEV_OK),
				-EBADMSG, "page_size 2048");
	expect_manifest_refused(MF("{\"size\":65537,\"page_size\":4096}", OPT_OK, DEV_OK),
				-EBADMSG, "multiple of the page size");
	expect_manifest_refused(MF("{\"size\":0,\"page_size\":4096}", OPT_OK, DEV_OK), -EBADMSG,
				"multiple of the page size");
	expect_manifest_refused(MF("{\"size\":-4096,\"page_size\":4096}", OPT_OK, DEV_OK),
				-EBADMSG, "negative");
	expect_manifest_refused(MF("{\"size\":4096.0,\"page_size\":4096}", OPT_OK, DEV_OK),
				-EBADMSG, "not an integer");
	expect_manifest_refused(MF("{\"size\":18446744073709551615,\"page_size\":4096}", OPT_OK,
				   DEV_OK),
				-EBADMSG, "multiple of the page size");
	expect_manifest_refused(MF("{\"size\":2199023255552,\"page_size\":4096}", OPT_OK, DEV_OK),
				-EFBIG, "above this host's limit");
	expect_manifest_refused(MF(MEM_OK, "{\"compression\":\"lz4\"}", DEV_OK), -EBADMSG,
				"\"lz4\"");
	expect_manifest_refused(MF(MEM_OK, OPT_OK, "[{\"index\":0,\"kind\":\"\",\"socket\":\"\",\"migration_flags\":1}]"),
				-EBADMSG, "devices[0].kind: empty");
	expect_manifest_refused(MF(MEM_OK, OPT_OK, "[{\"index\":0,\"kind\":\"a b\",\"socket\":\"\",\"migration_flags\":1}]"),
				-EBADMSG, "devices[0].kind: byte 0x20");
	expect_manifest_refused(MF(MEM_OK, OPT_OK, "[{\"index\":1,\"kind\":\"dma\",\"socket\":\"\",\"migration_flags\":1}]"),
				-EBADMSG, "must equal its position 0");
	expect_manifest_refused(MF(MEM_OK, OPT_OK, "[{\"index\":0,\"kind\":\"dma\",\"socket\":\"\",\"migration_flags\":4}]"),
				-EBADMSG, "STOP_COPY");
	expect_manifest_refused(MF(MEM_OK, OPT_OK, "[{\"index\":0,\"kind\":\"dma\",\"socket\":\"\",\"migration_flags\":9}]"),
				-EBADMSG, "unknown bits 0x8");
	expect_manifest_refused(MF(MEM_OK, OPT_OK, "[{\"index\":0,\"kind\":\"dma\",\"socket\":\"x\\u0000y\",\"migration_flags\":1}]"),
				-EBADMSG, "contains a NUL");
	expect_manifest_refused(MF(MEM_OK, OPT_OK, "[{\"index\":0,\"kind\":\"dma\",\"socket\":\"\",\"migration_flags\":1,\"x\":0}]"),
				-EBADMSG, "unknown key \"x\"");
	expect_manifest_refused(MF(MEM_OK, OPT_OK, "[1]"), -EBADMSG, "devices[0]: not a JSON object");
	expect_manifest_refused(MF(MEM_OK, OPT_OK, "[[[[[[1]]]]]]"), -EBADMSG, "not valid JSON");

	/* 65 devices. */
	size_t n = (size_t)snprintf(big, sizeof(big), "{\"source_host\":\"h\",\"memory\":" MEM_OK
				    ",\"options\":" OPT_OK ",\"devices\":[");
	for (int i = 0; i < 65; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n,
				      "%s{\"index\":%d,\"kind\":\"k\",\"socket\":\"\",\"migration_flags\":1}",
				      i ? "," : "", i);
	snprintf(big + n, sizeof(big) - n, "]}");
	expect_manifest_refused(big, -EBADMSG, "65 of them");
	/* Not JSON at all, and with a NUL byte. */
	struct craft c;
	craft_header(&c, MIG_STREAM_VERSION);
	craft(&c, MIG_SEC_MANIFEST, "{\"a\0", 4);
	assert_int_equal(read_all(c.buf, c.len, MAX_MEM), -EBADMSG);
	assert_logged_once("NUL");
}

static void test_manifest_encode_decode(void **state)
{
	struct mig_manifest m, back;
	char why[160];
	char *json;
	size_t len;

	(void)state;
	make_manifest(&m, 64, 1ull << 40, 2u << 20, MIG_COMPRESS_ZSTD);
	assert_int_equal(mig_manifest_encode(&m, &json, &len, why, sizeof(why)), 0);
	assert_int_equal(mig_manifest_decode((uint8_t *)json, len, 1ull << 40, &back, why,
					     sizeof(why)), 0);
	assert_memory_equal(&m, &back, sizeof(m));
	free(json);
	m.ndevices = 65;
	assert_int_equal(mig_manifest_encode(&m, &json, &len, why, sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "65 of them"));
}

/* ---- the writer refuses its caller's mistakes ---- */

static void test_writer_misuse(void **state)
{
	struct mig_transport *t;
	struct mig_stream_writer *w;
	struct mig_manifest m;
	uint8_t *mem = calloc(SMALL_PAGES, PS);

	(void)state;
	assert_int_equal(mig_transport_mem_create(1u << 20, &t), 0);
	make_manifest(&m, 1, SMALL_PAGES * PS, PS, MIG_COMPRESS_NONE);
	m.page_size = 1000;
	assert_int_equal(mig_stream_writer_create(t, &m, NULL, &w), -EBADMSG);
	assert_logged_once("page_size 1000");
	m.page_size = PS;
	assert_int_equal(mig_stream_writer_create(t, &m, NULL, &w), 0);
	assert_int_equal(mig_stream_write_pages(w, mem, NULL, 10, 7, 0), -EINVAL);
	assert_logged_once("outside guest memory");
	assert_int_equal(mig_stream_write_pages(w, mem, NULL, UINT64_MAX, 2, 0), -EINVAL);
	assert_logged_once("outside guest memory");
	assert_int_equal(mig_stream_write_device_end(w, 0), -EINVAL);
	assert_logged_once("DEVICE_END before SWITCHOVER");
	assert_int_equal(mig_stream_write_device_data(w, 1, "x", 1), -EINVAL);
	assert_logged_once("device 1 out of range");
	assert_int_equal(mig_stream_write_round_end(w, 2, 0, 0), -EINVAL);
	assert_logged_once("round 2 where round 1");
	assert_int_equal(mig_stream_write_round_end(w, 1, SMALL_PAGES + 1, 0), -EINVAL);
	assert_logged_once("more than the 16 pages");
	assert_int_equal(mig_stream_write_end(w), -EINVAL);
	assert_logged_once("END before SWITCHOVER");
	assert_int_equal(mig_stream_write_switchover(w), 0);
	assert_int_equal(mig_stream_write_switchover(w), -EINVAL);
	assert_logged_once("a second SWITCHOVER");
	assert_int_equal(mig_stream_write_checksums(w, false, 0), -EINVAL);
	assert_logged_once("has no DEVICE_END");
	assert_int_equal(mig_stream_write_device_end(w, 0), 0);
	assert_int_equal(mig_stream_write_device_data(w, 0, "x", 1), -EINVAL);
	assert_logged_once("already had its DEVICE_END");
	assert_int_equal(mig_stream_write_checksums(w, false, 0), 0);
	assert_int_equal(mig_stream_write_end(w), 0);
	assert_int_equal(mig_stream_write_end(w), -EINVAL);
	assert_logged_once("nothing may follow END");
	mig_stream_writer_destroy(w);

	/* What it wrote despite the refusals is a valid stream. */
	size_t len;
	const uint8_t *p = mig_transport_mem_data(t, &len);
	assert_int_equal(read_all(p, len, MAX_MEM), 0);
	assert_int_equal(log_lines, 0);

	/* A transport failure sticks. */
	mig_transport_close(t);
	assert_int_equal(mig_transport_mem_create(100, &t), 0);
	assert_int_equal(mig_stream_writer_create(t, &m, NULL, &w), 0);
	assert_int_equal(mig_stream_writer_flush(w), -ENOSPC);
	assert_logged_once("limit");
	assert_int_equal(mig_stream_write_switchover(w), -ENOSPC);
	assert_int_equal(log_lines, 0);
	mig_stream_writer_destroy(w);
	mig_transport_close(t);
	free(mem);
}

/* ---- transports, URIs, the ack ---- */

static void test_uri_parse(void **state)
{
	static const struct {
		const char *uri;
		bool listen;
		const char *needle; /* NULL: valid */
	} cases[] = {
		{"tcp:127.0.0.1:4444", false, NULL},
		{"tcp:host.example:1", false, NULL},
		{"tcp:[::1]:65535", false, NULL},
		{"tcp:0.0.0.0:0", true, NULL},
		{"unix:/tmp/x.sock", false, NULL},
		{"file:/tmp/my stream", false, NULL},
		{"tcp:127.0.0.1:0", false, "port 0 only"},
		{"tcp:127.0.0.1:65536", false, "above 65535"},
		{"tcp:127.0.0.1:+80", false, "not a decimal"},
		{"tcp:127.0.0.1:080", false, "not a decimal"},
		{"tcp:127.0.0.1:", false, "not a decimal"},
		{"tcp:127.0.0.1:80x", false, "not a decimal"},
		{"tcp::80", false, "empty host"},
		{"tcp:::1:80", false, "must be bracketed"},
		{"tcp:[::1:80", false, "without ']'"},
		{"tcp:[::1]80", false, "expected ':PORT'"},
		{"tcp:a b:80", false, "whitespace"},
		{"tcp:localhost", false, "expected tcp:HOST:PORT"},
		{"unix:", false, "empty path"},
		{"file:", false, "empty path"},
		{"unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		 false, "longer than 107"},
		{"http://x", false, "unknown scheme"},
		{"TCP:1.2.3.4:5", false, "unknown scheme"},
		{"file:/tmp/a\nb", false, "control characters"},
		{"", false, "unknown scheme"},
	};
	struct mig_uri u;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = mig_uri_parse(cases[i].uri, cases[i].listen, &u);
		if (!cases[i].needle) {
			if (rc != 0)
				fail_msg("'%s' refused: %s", cases[i].uri, log_last);
			continue;
		}
		if (rc != -EINVAL)
			fail_msg("'%s' accepted", cases[i].uri);
		assert_logged_once(cases[i].needle);
	}
	assert_int_equal(mig_uri_parse("tcp:[fe80::1]:7", false, &u), 0);
	assert_string_equal(u.host, "fe80::1");
	assert_int_equal(u.port, 7);
	assert_int_equal(mig_uri_parse("unix:/a", false, &u), 0);
	assert_int_equal(u.kind, MIG_URI_UNIX);
	assert_string_equal(u.path, "/a");
}

static void test_transport_errors(void **state)
{
	struct mig_transport *a, *b, *t;
	struct mig_listener *l;
	uint8_t buf[8];
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(mig_transport_sock_create(sv[0], "pair-a", &a), 0);
	assert_int_equal(mig_transport_sock_create(sv[1], "pair-b", &b), 0);
	/* Nothing arrives: a read times out. */
	assert_int_equal(mig_transport_read_full(b, buf, sizeof(buf), 50), -ETIMEDOUT);
	assert_logged_once("no data for 50 ms");
	assert_int_equal(mig_transport_pending(b), 0);
	assert_int_equal(mig_transport_write(a, "abc", 3, 1000), 0);
	assert_int_equal(mig_transport_pending(b), 1);
	assert_int_equal(mig_transport_read_full(b, buf, 3, 1000), 3);
	/* The peer stops reading: a write times out. */
	static uint8_t big[64u << 20];
	assert_int_equal(mig_transport_write(a, big, sizeof(big), 50), -ETIMEDOUT);
	assert_logged_once("accepted no data for 50 ms");
	/* The peer is gone: writes fail, reads see the end. */
	mig_transport_close(b);
	assert_int_equal(mig_transport_write(a, "x", 1, 1000), -EPIPE);
	assert_logged_once("send failed");
	assert_int_equal(mig_transport_read_full(a, buf, sizeof(buf), 1000), 0);
	mig_transport_close(a);

	/* Nobody connects. */
	assert_int_equal(mig_transport_listen("tcp:127.0.0.1:0", &l), 0);
	assert_int_equal(mig_transport_accept(l, 20, &t), -ETIMEDOUT);
	assert_logged_once("no source connected within 20 ms");
	char uri[64];
	snprintf(uri, sizeof(uri), "%s", mig_listener_uri(l));
	mig_listener_close(l);
	/* Nobody listens. */
	assert_int_equal(mig_transport_connect(uri, 1000, &t), -ECONNREFUSED);
	assert_logged_once("cannot connect");
	assert_int_equal(mig_transport_connect("unix:/nonexistent/ferry.sock", 1000, &t), -ENOENT);
	assert_logged_once("cannot connect");
	assert_int_equal(mig_transport_connect("tcp:no-such-host.invalid:1", 1000, &t),
			 -EHOSTUNREACH);
	assert_logged_once("cannot resolve");
	assert_int_equal(mig_transport_listen("file:/nonexistent/f", &l), 0);
	assert_int_equal(mig_transport_accept(l, 0, &t), -ENOENT);
	assert_logged_once("cannot open for reading");
	mig_listener_close(l);
	assert_int_equal(mig_transport_connect("file:/nonexistent/f", 0, &t), -ENOENT);
	assert_logged_once("cannot create");
	assert_int_equal(mig_transport_listen("bogus:x", &l), -EINVAL);
	assert_logged_once("unknown scheme");

	/* The memory transport: bounded, and data can be read back. */
	assert_int_equal(mig_transport_mem_create(4, &t), 0);
	assert_int_equal(mig_transport_write(t, "abcd", 4, 0), 0);
	assert_int_equal(mig_transport_write(t, "e", 1, 0), -ENOSPC);
	assert_logged_once("limit");
	assert_int_equal(mig_transport_read_full(t, buf, 8, 0), 4);
	assert_memory_equal(buf, "abcd", 4);
	mig_transport_close(t);
}

/* write_all takes any number of pieces (more than one writev allows), empty
 * ones included, and a cursor never modifies the caller's array. */
static void test_iov_cursor(void **state)
{
	enum { N = 3000 };
	static struct iovec iov[N];
	static uint8_t src[N * 3], back[N * 3];
	char path[] = "/tmp/ferry-mig-iov-XXXXXX";
	struct mig_transport *t;
	struct mig_iov_cursor c;
	struct iovec out[4];
	size_t total = 0;
	int fd;

	(void)state;
	fill_random(src, sizeof(src), 9);
	for (int i = 0; i < N; i++) {
		iov[i].iov_base = src + total;
		iov[i].iov_len = i % 4 == 3 ? 0 : (size_t)(i % 4 + 1); /* 1, 2, 3, 0, ... */
		total += iov[i].iov_len;
	}
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(mig_transport_file_create(fd, "iov", &t), 0);
	assert_int_equal(mig_transport_write_all(t, iov, N, 0), 0);
	mig_transport_close(t);
	fd = open(path, O_RDONLY);
	assert_int_equal(read(fd, back, sizeof(back)), (ssize_t)total);
	assert_memory_equal(back, src, total);
	close(fd);
	unlink(path);

	/* Partial progress lands inside a piece and skips empty ones. */
	mig_iov_cursor_init(&c, iov, 4); /* lengths 1, 2, 3, 0 */
	mig_iov_cursor_advance(&c, 2);
	assert_int_equal(mig_iov_cursor_fill(&c, out, 4), 2);
	assert_ptr_equal(out[0].iov_base, src + 2);
	assert_int_equal(out[0].iov_len, 1);
	assert_int_equal(out[1].iov_len, 3);
	mig_iov_cursor_advance(&c, 4);
	assert_true(mig_iov_cursor_done(&c));
	assert_int_equal(iov[1].iov_len, 2);
}

static void test_ack(void **state)
{
	struct mig_transport *a, *b;
	char msg[8];
	int sv[2], st;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(mig_transport_sock_create(sv[0], "src", &a), 0);
	assert_int_equal(mig_transport_sock_create(sv[1], "dst", &b), 0);
	/* A failure ack carries the errno and a (cut) message. */
	assert_int_equal(mig_ack_send(b, EPROTO, "device 1 refused its state", 1000), 0);
	assert_int_equal(mig_ack_recv(a, 1000, &st, msg, sizeof(msg)), 0);
	assert_int_equal(st, EPROTO);
	assert_string_equal(msg, "device ");
	/* A damaged ack. */
	uint8_t raw[20] = "FERRYACK";
	assert_int_equal(mig_transport_write(b, raw, sizeof(raw), 1000), 0);
	assert_int_equal(mig_ack_recv(a, 1000, &st, NULL, 0), -EBADMSG);
	assert_logged_once("damaged");
	/* The destination went away without a word. */
	mig_transport_close(b);
	assert_int_equal(mig_ack_recv(a, 1000, &st, NULL, 0), -ENODATA);
	assert_logged_once("without an acknowledgement");
	mig_transport_close(a);
}

/* Round acks: waited for in order, skipped by the final ack's reader; a
 * final ack while waiting for a round is the destination giving up. */
static void test_round_ack(void **state)
{
	struct mig_transport *a, *b;
	char msg[32];
	int sv[2], st = -1;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(mig_transport_sock_create(sv[0], "src", &a), 0);
	assert_int_equal(mig_transport_sock_create(sv[1], "dst", &b), 0);
	for (uint32_t r = 1; r <= 3; r++)
		assert_int_equal(mig_ack_send_round(b, r, 1000), 0);
	assert_int_equal(mig_ack_wait_round(a, 2, 1000, &st, msg, sizeof(msg)), 0);
	/* Round 3's is still there: the final ack's reader skips it. */
	assert_int_equal(mig_ack_send(b, 0, "resumed", 1000), 0);
	assert_int_equal(mig_ack_recv(a, 1000, &st, msg, sizeof(msg)), 0);
	assert_int_equal(st, 0);
	assert_string_equal(msg, "resumed");
	/* Waiting for round 4, the destination gives up instead. */
	assert_int_equal(mig_ack_send(b, EIO, "device 0 refused its data", 1000), 0);
	assert_int_equal(mig_ack_wait_round(a, 4, 1000, &st, msg, sizeof(msg)), 1);
	assert_int_equal(st, EIO);
	assert_string_equal(msg, "device 0 refused its data");
	/* A round ack from the future is a protocol error. */
	assert_int_equal(mig_ack_send_round(b, 9, 1000), 0);
	assert_int_equal(mig_ack_wait_round(a, 5, 1000, &st, NULL, 0), -EPROTO);
	assert_logged_once("round 9 acknowledged");
	/* A damaged one. */
	uint8_t raw[20] = "FERRYRND";
	assert_int_equal(mig_transport_write(b, raw, sizeof(raw), 1000), 0);
	assert_int_equal(mig_ack_wait_round(a, 6, 1000, &st, NULL, 0), -EBADMSG);
	assert_logged_once("round acknowledgement is damaged");
	mig_transport_close(b);
	mig_transport_close(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip_socketpair, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_tcp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_tcp6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_unix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_mem_zstd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_huge_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_small_stream_valid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_everywhere, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_bit_flip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crafted_valid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversize_lengths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_page_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_type, setup, teardown),
		cmocka_unit_test_setup_teardown(test_order_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sequence_numbers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_manifest_schema, setup, teardown),
		cmocka_unit_test_setup_teardown(test_manifest_encode_decode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_misuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uri_parse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transport_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_iov_cursor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ack, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_ack, setup, teardown),
	};

	return cmocka_run_group_tests_name("mig_stream", tests, NULL, NULL);
}
