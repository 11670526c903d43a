/*
 * The migration engine in one process, without devices: a source engine and
 * a destination engine (on a thread) move guest memory over a UNIX socket
 * or a file while a "vCPU" thread keeps writing it (and marking what it
 * writes in the dirty view, as ferry host's workloads do). Checks the
 * outcome, the report, the hooks the engine calls and that destination
 * memory equals the source's. Plus the pieces: hole-aware memory CRCs,
 * the per-chunk CRC cache, the report's JSON.
 *
 * Devices are covered end to end by tests/integration/migrate_basic.py.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "migrate/engine.h"
#include "migrate/engine_priv.h"

#define PAGE 4096u
#define MEM (16ull << 20)
#define FILLED (4ull << 20) /* the start of memory holds data; the rest are holes */

struct mem {
	int fd;
	uint8_t *p;
	uint64_t size;
};

static void mem_make(struct mem *m, uint64_t size)
{
	m->size = size;
	m->fd = memfd_create("test-guest", MFD_CLOEXEC);
	assert_true(m->fd >= 0);
	assert_int_equal(ftruncate(m->fd, (off_t)size), 0);
	m->p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	assert_true(m->p != MAP_FAILED);
}

static void mem_free(struct mem *m)
{
	munmap(m->p, m->size);
	close(m->fd);
}

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void fill(uint8_t *p, uint64_t len, uint64_t seed)
{
	for (uint64_t i = 0; i < len / 8; i++) {
		uint64_t v = mix(seed + i);

		memcpy(p + i * 8, &v, 8);
	}
}

/* CRC of the bytes as they are, read with pread (no faults on holes). */
static uint32_t crc_by_pread(const struct mem *m)
{
	static uint8_t buf[1 << 20];
	uint32_t crc = 0;

	for (uint64_t off = 0; off < m->size; off += sizeof(buf)) {
		size_t n = m->size - off < sizeof(buf) ? m->size - off : sizeof(buf);

		assert_int_equal(pread(m->fd, buf, n, (off_t)off), (ssize_t)n);
		crc = (uint32_t)crc32_z(crc, buf, n);
	}
	return crc;
}

/* ---- the pieces ---- */

static void test_mem_crc_holes(void **state)
{
	struct mem m;
	uint64_t d, e;

	(void)state;
	mem_make(&m, MEM);
	fill(m.p, FILLED, 1);
	fill(m.p + 9 * PAGE * 256, PAGE, 2); /* one data page in the middle of holes */
	memset(m.p + MEM - PAGE, 0, PAGE);   /* an allocated page of zeros at the end */
	assert_int_equal(mem_next_data(m.fd, 0, MEM, &d, &e), 0);
	assert_int_equal(d, 0);
	assert_int_equal(e, FILLED);
	assert_int_equal(mem_next_data(m.fd, FILLED, MEM, &d, &e), 0);
	assert_int_equal(d, 9 * PAGE * 256);
	assert_int_equal(e, 9 * PAGE * 256 + PAGE);
	assert_true(mem_fd_usable(m.fd, MEM));
	assert_false(mem_fd_usable(-1, MEM));

	uint32_t want = crc_by_pread(&m);

	assert_int_equal(mem_crc(m.p, m.fd, MEM), want);
	assert_int_equal(mem_crc(m.p, -1, MEM), want);
	/* Every block allocated: no holes, told without a scan. */
	assert_int_equal(fallocate(m.fd, 0, 0, MEM), 0);
	assert_int_equal(mem_next_data(m.fd, PAGE, MEM - PAGE, &d, &e), 0);
	assert_int_equal(d, PAGE);
	assert_int_equal(e, MEM - PAGE);
	assert_int_equal(mem_crc(m.p, m.fd, MEM), want);
	mem_free(&m);
}

static void test_mem_crc_cache(void **state)
{
	struct mem m;
	struct mem_crc_cache cc;

	(void)state;
	mem_make(&m, MEM + 3 * PAGE); /* a short last chunk */
	fill(m.p, FILLED, 3);
	/* Extents that start and end inside chunks, so the extent cursor
	 * carries holes and data across chunk boundaries. */
	fill(m.p + (10u << 20) - 3 * PAGE, 5 * PAGE, 4);
	fill(m.p + 5 * (1u << 20) + PAGE, 3 * (1u << 20), 5);
	assert_int_equal(mem_crc_cache_init(&cc, m.p, m.fd, m.size, 2u << 20, false), 0);
	assert_int_equal(mem_crc_cache_value(&cc), crc_by_pread(&m));
	/* A change is seen once marked stale, and only then. */
	m.p[5 * PAGE + 7] ^= 0x5a;
	m.p[m.size - 1] = 1;
	mem_crc_cache_stale(&cc, 5 * PAGE, PAGE);
	mem_crc_cache_stale(&cc, m.size - 1, 1);
	assert_int_equal(mem_crc_cache_value(&cc), crc_by_pread(&m));
	assert_int_equal(cc.nstale, 0);
	mem_crc_cache_fini(&cc);
	mem_free(&m);
}

/* Fresh memory is known zero: the cache reads nothing until told of a
 * change, and agrees with the bytes all along. */
static void test_mem_crc_cache_zero(void **state)
{
	struct mem m;
	struct mem_crc_cache cc;
	uint64_t d, e;

	(void)state;
	mem_make(&m, MEM);
	assert_int_equal(mem_crc_cache_init(&cc, m.p, m.fd, m.size, 2u << 20, true), 0);
	assert_int_equal(mem_crc_cache_value(&cc), crc_by_pread(&m));
	assert_int_equal(mem_next_data(m.fd, 0, MEM, &d, &e), 0);
	assert_int_equal(d, MEM); /* still all holes: nothing was read */
	fill(m.p + 3 * PAGE, 2 * PAGE, 6);
	mem_crc_cache_stale(&cc, 3 * PAGE, 2 * PAGE);
	assert_int_equal(mem_crc_cache_value(&cc), crc_by_pread(&m));
	mem_crc_cache_fini(&cc);
	mem_free(&m);
}

/* The asynchronous checksum, its pieces shared between its thread and the
 * caller's, equals the one-pass checksum, with data across piece borders. */
static void test_mem_crc_job(void **state)
{
	const uint64_t size = 2 * MEM_CRC_JOB_PIECE + 5 * PAGE; /* a short last piece */
	struct mem m;
	struct mem_crc_job j;

	(void)state;
	mem_make(&m, size);
	fill(m.p + MEM_CRC_JOB_PIECE - 3 * PAGE, 6 * PAGE, 8);
	fill(m.p + 2 * MEM_CRC_JOB_PIECE - PAGE, 3 * PAGE, 9);
	fill(m.p, PAGE, 10);
	uint32_t want = crc_by_pread(&m);

	assert_int_equal(mem_crc(m.p, m.fd, size), want);
	assert_int_equal(mem_crc_job_start(&j, m.p, m.fd, size), 0);
	assert_int_equal(mem_crc_job_finish(&j), want); /* at once: both threads work */
	assert_int_equal(mem_crc_job_start(&j, m.p, -1, size), 0);
	usleep(20000); /* the thread alone, most likely */
	assert_int_equal(mem_crc_job_finish(&j), want);
	mem_free(&m);
}

static void test_report_json(void **state)
{
	struct mig_report *r = calloc(1, sizeof(*r));
	json_object *o, *v;

	(void)state;
	assert_non_null(r);
	mig_report_init(r, false, "tcp:127.0.0.1:1", 300);
	struct mig_round_report *rr = mig_report_add_round(r);

	assert_non_null(rr);
	assert_int_equal(rr->round, 1);
	mig_report_step(r, "pause", 1.25);
	mig_report_fail(r, -ECONNREFUSED, "connecting to %s", "x");
	mig_report_fail(r, -EIO, "a second failure is not the one reported");
	assert_int_equal(r->outcome, MIG_OUTCOME_FAILED);
	o = mig_report_to_json(r);
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "outcome", &v));
	assert_string_equal(json_object_get_string(v), "failed");
	assert_true(json_object_object_get_ex(o, "error", &v));
	assert_string_equal(json_object_get_string(v), "connecting to x");
	assert_true(json_object_object_get_ex(o, "rounds", &v));
	assert_int_equal(json_object_array_length(v), 1);
	assert_true(json_object_object_get_ex(o, "downtime_steps", &v));
	assert_int_equal(json_object_array_length(v), 1);
	assert_true(json_object_object_get_ex(o, "verification", &v));
	assert_true(json_object_object_get_ex(o, "switchover_reason", &v));
	assert_null(v);
	json_object_put(o);

	mig_report_init(r, true, NULL, 0);
	mig_report_fail(r, -ECANCELED, "cancelled");
	assert_int_equal(r->outcome, MIG_OUTCOME_CANCELLED);
	free(r);
}

/* ---- engines ---- */

struct source_side {
	struct mem m;
	struct dirty_view *dv;
	pthread_t writer;
	atomic_bool stop_writer;
	bool has_writer;
	atomic_ullong writes;
	int pauses, resumes, progress;
};

/* The "vCPU": rewrites pages of the data area and marks them, until paused. */
static void *writer_main(void *arg)
{
	struct source_side *s = arg;
	uint64_t n = 0;

	while (!atomic_load(&s->stop_writer)) {
		uint64_t page = mix(n * 7919) % (FILLED / PAGE);

		fill(s->m.p + page * PAGE, PAGE, n + 100);
		dirty_view_mark(s->dv, page * PAGE, PAGE);
		atomic_fetch_add(&s->writes, 1);
		if (++n % 64 == 0) {
			struct timespec ts = {.tv_nsec = 200 * 1000};

			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

static int src_pause(void *opaque)
{
	struct source_side *s = opaque;

	s->pauses++;
	atomic_store(&s->stop_writer, true);
	if (s->has_writer)
		pthread_join(s->writer, NULL);
	s->has_writer = false;
	return 0;
}

static void src_resume(void *opaque)
{
	struct source_side *s = opaque;

	s->resumes++;
}

static void src_progress_hook(void *opaque, const struct mig_progress *p)
{
	struct source_side *s = opaque;

	(void)p;
	s->progress++;
}

static void source_init(struct source_side *s, uint64_t size)
{
	memset(s, 0, sizeof(*s));
	mem_make(&s->m, size);
	fill(s->m.p, FILLED, 7);
	assert_int_equal(dirty_view_create(size, PAGE, &s->dv), 0);
}

static void source_start_writer(struct source_side *s)
{
	atomic_store(&s->stop_writer, false);
	assert_int_equal(pthread_create(&s->writer, NULL, writer_main, s), 0);
	s->has_writer = true;
}

static void source_fini(struct source_side *s)
{
	src_pause(s);
	dirty_view_destroy(s->dv);
	mem_free(&s->m);
}

static int run_source(struct source_side *s, const char *uri, struct mig_report *rep)
{
	struct mig_source_config cfg = {
		.uri = uri,
		.host_name = "unit-src",
		.mem = {.base = s->m.p, .size = s->m.size, .page_size = PAGE, .fd = s->m.fd},
		.dv = s->dv,
		.downtime_ms = 300,
		.max_rounds = 10,
		.io_timeout_ms = 10000,
		.ack_timeout_ms = 10000,
		.hooks = {.opaque = s, .pause = src_pause, .resume = src_resume,
			  .progress = src_progress_hook},
	};
	struct mig_source *src;
	int rc = mig_source_create(&cfg, &src);

	assert_int_equal(rc, 0);
	rc = mig_source_run(src, rep);
	mig_source_destroy(src);
	return rc;
}

struct dest_side {
	struct mem m;
	struct mig_dest *d;
	pthread_t thread;
	struct mig_report rep;
	int rc;
	int resumes, stops;
};

static int dst_resume(void *opaque)
{
	struct dest_side *d = opaque;

	d->resumes++;
	return 0;
}

static void dst_stop(void *opaque)
{
	struct dest_side *d = opaque;

	d->stops++;
}

static void *dest_main(void *arg)
{
	struct dest_side *d = arg;

	d->rc = mig_dest_run(d->d, &d->rep);
	return NULL;
}

static void dest_start(struct dest_side *d, uint64_t size, const char *uri)
{
	struct mig_dest_config cfg = {
		.uri = uri,
		.io_timeout_ms = 10000,
		.accept_timeout_ms = 20000,
		.hooks = {.opaque = d, .resume = dst_resume, .stop = dst_stop},
	};

	memset(d, 0, sizeof(*d));
	mem_make(&d->m, size);
	cfg.mem = (struct mig_guest_memory){.base = d->m.p, .size = size, .page_size = PAGE,
					    .fd = d->m.fd};
	assert_int_equal(mig_dest_create(&cfg, &d->d), 0);
	assert_int_equal(pthread_create(&d->thread, NULL, dest_main, d), 0);
}

static void dest_join(struct dest_side *d)
{
	pthread_join(d->thread, NULL);
	mig_dest_destroy(d->d);
}

static char tmpdir[64];

static int group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ferry-engine-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	char path[128];

	(void)state;
	snprintf(path, sizeof(path), "%s/mig.img", tmpdir);
	unlink(path);
	rmdir(tmpdir);
	return 0;
}

static void test_migrate_unix(void **state)
{
	static struct source_side s;
	static struct dest_side d;
	static struct mig_report rep;
	char uri[128];

	(void)state;
	snprintf(uri, sizeof(uri), "unix:%s/a.sock", tmpdir);
	source_init(&s, MEM);
	dest_start(&d, MEM, uri);
	source_start_writer(&s);
	assert_int_equal(run_source(&s, uri, &rep), 0);
	dest_join(&d);

	assert_int_equal(d.rc, 0);
	assert_int_equal(rep.outcome, MIG_OUTCOME_SUCCESS);
	assert_int_equal(d.rep.outcome, MIG_OUTCOME_SUCCESS);
	assert_int_equal(rep.verify_memory, MIG_VERDICT_MATCH);
	assert_int_equal(rep.verify_devices, MIG_VERDICT_MATCH);
	assert_int_equal(d.rep.verify_memory, MIG_VERDICT_MATCH);
	assert_true(rep.nrounds >= 1);
	/* Round 1 sent what was ever written; the rest are holes. */
	assert_int_equal(rep.hole_pages, (MEM - FILLED) / PAGE);
	assert_int_equal(rep.rounds[0].pages, FILLED / PAGE);
	assert_non_null(rep.switchover_reason);
	assert_true(rep.downtime_ms > 0.0 && rep.downtime_ms < rep.total_ms);
	assert_int_equal(s.pauses, 1);
	assert_int_equal(s.resumes, 0); /* the guest lives on the destination now */
	assert_true(s.progress > 2);
	assert_int_equal(d.resumes, 1);
	assert_int_equal(d.stops, 0);
	assert_true(atomic_load(&s.writes) > 0);
	assert_memory_equal(s.m.p, d.m.p, MEM);
	source_fini(&s);
	mem_free(&d.m);
}

/* The destination refuses (another memory size): the source takes back. */
static void test_refused(void **state)
{
	static struct source_side s;
	static struct dest_side d;
	static struct mig_report rep;
	char uri[128];

	(void)state;
	snprintf(uri, sizeof(uri), "unix:%s/b.sock", tmpdir);
	source_init(&s, MEM);
	dest_start(&d, MEM / 2, uri);
	source_start_writer(&s);
	assert_true(run_source(&s, uri, &rep) < 0);
	dest_join(&d);
	assert_int_equal(d.rc, -EFBIG); /* the reader refuses memory it cannot hold */
	assert_int_equal(rep.outcome, MIG_OUTCOME_FAILED);
	assert_int_equal(rep.error, -EFBIG); /* the destination's errno, through the ack */
	assert_true(strlen(rep.error_msg) > 0);
	assert_int_equal(s.resumes, s.pauses); /* whatever was paused was resumed */
	assert_int_equal(d.resumes, 0);
	source_fini(&s);
	mem_free(&d.m);
}

/* file: the source resumes ("saved"); a destination loads the file later. */
static void test_file(void **state)
{
	static struct source_side s;
	static struct dest_side d;
	static struct mig_report rep;
	char uri[128];

	(void)state;
	snprintf(uri, sizeof(uri), "file:%s/mig.img", tmpdir);
	source_init(&s, MEM);
	assert_int_equal(run_source(&s, uri, &rep), 0);
	assert_int_equal(rep.outcome, MIG_OUTCOME_SAVED);
	assert_int_equal(s.pauses, 1);
	assert_int_equal(s.resumes, 1);
	assert_int_equal(rep.verify_memory, MIG_VERDICT_SKIPPED); /* nobody to ask */

	dest_start(&d, MEM, uri);
	dest_join(&d);
	assert_int_equal(d.rc, 0);
	assert_int_equal(d.rep.verify_memory, MIG_VERDICT_MATCH);
	assert_int_equal(d.resumes, 1);
	assert_memory_equal(s.m.p, d.m.p, MEM);
	source_fini(&s);
	mem_free(&d.m);
}

/* A destination that accepts and never reads: cancel cuts the blocked write. */
struct canceller {
	struct mig_source *src;
	int delay_ms;
	bool ok;
};

static void *cancel_main(void *arg)
{
	struct canceller *c = arg;
	struct timespec ts = {.tv_sec = c->delay_ms / 1000,
			      .tv_nsec = (long)(c->delay_ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
	c->ok = mig_source_cancel(c->src);
	return NULL;
}

static void test_cancel(void **state)
{
	static struct source_side s;
	static struct mig_report rep;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct canceller c = {.delay_ms = 300};
	pthread_t t;
	char uri[128];
	int lfd;

	(void)state;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/c.sock", tmpdir);
	snprintf(uri, sizeof(uri), "unix:%s", sa.sun_path);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 1), 0);

	source_init(&s, MEM);
	fill(s.m.p, MEM, 9); /* more than the socket buffers hold */
	struct mig_source_config cfg = {
		.uri = uri,
		.mem = {.base = s.m.p, .size = s.m.size, .page_size = PAGE, .fd = s.m.fd},
		.dv = s.dv,
		.ack_timeout_ms = 3000,
		.hooks = {.opaque = &s, .pause = src_pause, .resume = src_resume},
	};
	assert_int_equal(mig_source_create(&cfg, &c.src), 0);
	assert_int_equal(pthread_create(&t, NULL, cancel_main, &c), 0);
	assert_int_equal(mig_source_run(c.src, &rep), -ECANCELED);
	pthread_join(t, NULL);
	assert_true(c.ok);
	assert_false(mig_source_cancel(c.src)); /* over */
	assert_int_equal(rep.outcome, MIG_OUTCOME_CANCELLED);
	assert_int_equal(s.resumes, s.pauses);
	mig_source_destroy(c.src);
	close(lfd);
	unlink(sa.sun_path);
	source_fini(&s);
}

static void test_bad_config(void **state)
{
	static struct source_side s;
	struct mig_source *src = NULL;
	struct mig_dest *dst = NULL;

	(void)state;
	source_init(&s, MEM);
	struct mig_source_config cfg = {
		.uri = "unix:/nonexistent/x.sock",
		.mem = {.base = s.m.p, .size = s.m.size, .page_size = PAGE, .fd = s.m.fd},
		.dv = s.dv,
		.hooks = {.opaque = &s, .pause = src_pause, .resume = src_resume},
	};

	cfg.hooks.pause = NULL;
	assert_int_equal(mig_source_create(&cfg, &src), -EINVAL);
	cfg.hooks.pause = src_pause;
	cfg.mem.size = MEM / 2; /* the dirty view covers MEM */
	assert_int_equal(mig_source_create(&cfg, &src), -EINVAL);
	cfg.mem.size = MEM;
	cfg.ndevices = 1; /* no device array, and the view has none */
	assert_int_equal(mig_source_create(&cfg, &src), -EINVAL);
	assert_null(src);

	struct mig_dest_config dc = {.uri = "tcp:127.0.0.1:0",
				     .mem = {.base = s.m.p, .size = MEM, .fd = -1}};
	assert_int_equal(mig_dest_create(&dc, &dst), -EINVAL); /* no hooks */
	assert_null(dst);
	source_fini(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mem_crc_holes),
		cmocka_unit_test(test_mem_crc_cache),
		cmocka_unit_test(test_mem_crc_cache_zero),
		cmocka_unit_test(test_mem_crc_job),
		cmocka_unit_test(test_report_json),
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_migrate_unix),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_file),
		cmocka_unit_test(test_cancel),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
