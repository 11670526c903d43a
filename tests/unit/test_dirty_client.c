/*
 * DMA logging end to end: the client API (include/ferry/client_dirty.h)
 * against a real device server, over messages and over dirty_shm.
 *
 * The property test: device worker threads write random pages (through
 * ferry_dma_write and through ferry_dma_ptr_get + ferry_dma_mark_dirty)
 * while the test thread reports random sub-ranges into one union bitmap;
 * after the workers are done and a last report, the union must be exactly
 * the granules holding a written page: no written page missing (ever), no
 * granule set that holds none. Page sizes 4 KiB, 64 KiB, 2 MiB; the memory
 * is two adjacent DMA maps with logging ranges across the boundary.
 */
#include "dirty_harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>

#include "util/log.h"

#define GUEST_IOVA (1ull << 30)
#define GUEST_SIZE (32ull << 20) /* two maps of 16 MiB */
#define GUEST_PAGES (GUEST_SIZE / K4)

#define NWORKERS 4
#define WRITES_PER_WORKER 4000
#define ROUNDS 4

/* Which path reports take: the fixture's state. */
struct mode {
	bool is_shm;
};

static const struct mode msg_mode = {.is_shm = false}, shm_mode = {.is_shm = true};

static void discard(enum ferry_log_level lvl, const char *line, void *opaque)
{
	(void)lvl, (void)line, (void)opaque;
}

static int quiet_setup(void **state)
{
	(void)state;
	ferry_log_set_sink(discard, NULL); /* the bad-argument tests fail on purpose */
	return 0;
}

/* ---- the property test ---- */

struct prop {
	struct dut *d;
	uint64_t ps;
	uint64_t hot[256]; /* 4 KiB page indexes the workers write */
	unsigned nhot;
	_Atomic uint64_t truth[GUEST_PAGES / 64]; /* 4 KiB pages written */
	struct worker {
		struct prop *p;
		unsigned id;
		uint64_t seed;
		int errors;
	} w[NWORKERS];
};

static void truth_set(struct prop *p, uint64_t page)
{
	atomic_fetch_or(&p->truth[page / 64], 1ull << (page % 64));
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct prop *p = w->p;
	uint8_t data[1024];

	for (unsigned i = 0; i < WRITES_PER_WORKER; i++) {
		uint64_t r = dut_rnd(&w->seed);
		uint64_t page = p->hot[r % p->nhot];
		/* Workers share pages and bitmap words but not bytes: worker i
		 * writes inside [i K + 512, (i + 1) K + 512) of a page (the last
		 * one into the next page's first 512 bytes), so the data itself is
		 * race-free and ThreadSanitizer stays quiet. */
		uint64_t off = w->id * 1024 + 512 + (r >> 20) % 512;
		uint64_t len = 1 + (r >> 40) % (1024 - (off % 1024 + 512) % 1024);
		uint64_t iova = GUEST_IOVA + page * K4 + off;

		memset(data, (int)r, sizeof(data));
		if (r & (1ull << 63)) {
			/* a pointer inside one 4 KiB page (so inside one map) */
			if (off + len > K4)
				len = K4 - off;
			int err;
			uint8_t *ptr = ferry_dma_ptr_get(p->d->dev, iova, len, true, &err);
			if (!ptr) {
				w->errors++;
				continue;
			}
			memcpy(ptr, data, len);
			ferry_dma_mark_dirty(p->d->dev, iova, len);
			ferry_dma_ptr_put(p->d->dev);
		} else {
			if (page * K4 + off + len > GUEST_SIZE)
				len = GUEST_SIZE - page * K4 - off;
			/* may straddle into the next page, and the two maps */
			if (ferry_dma_write(p->d->dev, iova, data, len) < 0) {
				w->errors++;
				continue;
			}
		}
		/* recorded after the write returned: the truth only grows */
		for (uint64_t a = page * K4 + off; a < page * K4 + off + len; a = (a | (K4 - 1)) + 1)
			truth_set(p, a / K4);
	}
	return NULL;
}

/* Picks the hot pages: a random half of the granules, pages inside them,
 * some on map and granule edges. */
static void pick_hot(struct prop *p, uint64_t *seed)
{
	const uint64_t per = p->ps / K4, ngran = GUEST_SIZE / p->ps;

	p->nhot = 0;
	p->hot[p->nhot++] = GUEST_PAGES / 2 - 1; /* last page of the first map */
	p->hot[p->nhot++] = GUEST_PAGES / 2;     /* first page of the second */
	p->hot[p->nhot++] = GUEST_PAGES - 1;
	while (p->nhot < 96) {
		uint64_t g = dut_rnd(seed) % ngran;
		if ((g * 2654435761u) >> 7 & 1) /* half of the granules never get hot pages */
			continue;
		p->hot[p->nhot++] = g * per + dut_rnd(seed) % per;
	}
}

/* START over the guest as one range or as two adjacent ranges. */
static void start_logging(struct prop *p, uint64_t *seed)
{
	struct ferry_dirty_range r[2];
	unsigned n = 1;
	uint64_t tracked = 0, ngran = GUEST_SIZE / p->ps;

	r[0] = (struct ferry_dirty_range){GUEST_IOVA, GUEST_SIZE};
	if (dut_rnd(seed) & 1) {
		uint64_t split = (1 + dut_rnd(seed) % (ngran - 1)) * p->ps;
		r[0].length = split;
		r[1] = (struct ferry_dirty_range){GUEST_IOVA + split, GUEST_SIZE - split};
		n = 2;
	}
	assert_int_equal(ferry_client_dirty_start(p->d->c, p->ps, r, n, &tracked), 0);
	assert_int_equal(tracked, p->ps);
}

static void property_round(struct prop *p, uint64_t seed, uint64_t *uni)
{
	const uint64_t ngran = GUEST_SIZE / p->ps, words = (ngran + 63) / 64, seed0 = seed;
	pthread_t th[NWORKERS];
	unsigned reports = 0;

	memset(uni, 0, words * 8);
	for (uint64_t i = 0; i < GUEST_PAGES / 64; i++)
		atomic_store(&p->truth[i], 0);
	pick_hot(p, &seed);
	start_logging(p, &seed);
	for (int i = 0; i < NWORKERS; i++) {
		p->w[i] = (struct worker){.p = p, .id = (unsigned)i, .seed = seed * 31 + (uint64_t)i + 1};
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &p->w[i]), 0);
	}
	/* Random sub-ranges while the workers write: unaligned bit offsets
	 * exercise the shift merge. */
	bool joined[NWORKERS] = {false};
	for (unsigned left = NWORKERS; left || reports < 20;) {
		uint64_t k0 = dut_rnd(&seed) % ngran;
		uint64_t n = 1 + dut_rnd(&seed) % (ngran - k0);

		assert_int_equal(ferry_client_dirty_report_at(p->d->c, GUEST_IOVA + k0 * p->ps,
							      n * p->ps, p->ps, uni, k0), 0);
		reports++;
		for (int i = 0; i < NWORKERS; i++)
			if (!joined[i] && pthread_tryjoin_np(th[i], NULL) == 0) {
				joined[i] = true;
				left--;
			}
	}
	for (int i = 0; i < NWORKERS; i++)
		assert_int_equal(p->w[i].errors, 0);
	assert_int_equal(ferry_client_dirty_report(p->d->c, GUEST_IOVA, GUEST_SIZE, p->ps, uni), 0);

	/* exactly the granules holding a written page */
	const uint64_t per = p->ps / K4;
	unsigned written = 0;
	for (uint64_t g = 0; g < ngran; g++) {
		bool any = false;
		for (uint64_t q = g * per; q < (g + 1) * per && !any; q++)
			any = atomic_load(&p->truth[q / 64]) >> (q % 64) & 1;
		if (any != bit_test(uni, g))
			fail_msg("page size 0x%llx seed %llu: granule %llu reported %d, written %d",
				 (unsigned long long)p->ps, (unsigned long long)seed0,
				 (unsigned long long)g, bit_test(uni, g), any);
		written += any;
	}
	assert_true(written > 0);
	/* read and clear: nothing left */
	memset(uni, 0, words * 8);
	assert_int_equal(ferry_client_dirty_report(p->d->c, GUEST_IOVA, GUEST_SIZE, p->ps, uni), 0);
	for (uint64_t w = 0; w < words; w++)
		assert_int_equal(uni[w], 0);
	assert_int_equal(ferry_client_dirty_stop(p->d->c), 0);
}

static void run_property(const struct mode *m, uint64_t ps)
{
	struct dut d;
	struct prop *p = calloc(1, sizeof(*p));
	uint64_t *uni = calloc((GUEST_SIZE / ps + 63) / 64, 8);

	assert_non_null(p);
	assert_non_null(uni);
	dut_start(&d, "prop-dev", m->is_shm);
	dut_guest(&d, GUEST_IOVA, GUEST_SIZE, 2);
	p->d = &d;
	p->ps = ps;
	for (uint64_t round = 0; round < ROUNDS; round++)
		property_round(p, 0x5eed0000 + round * 7919 + ps, uni);
	dut_stop(&d);
	free(uni);
	free(p);
}

static void test_property_4k(void **state)
{
	run_property(*state, K4);
}

static void test_property_64k(void **state)
{
	run_property(*state, K64);
}

static void test_property_2m(void **state)
{
	run_property(*state, M2);
}

/* ---- chunking: reports larger than one reply, at bit offsets ---- */

static void check_chunked(struct dut *d, uint64_t len, uint64_t first_bit)
{
	const uint64_t pages = len / K4;
	const uint64_t words = (first_bit + pages + 63) / 64 + 1; /* one spare word */
	uint64_t *bm = malloc(words * 8);
	uint64_t seed = 0xc0ffee ^ first_bit;
	uint64_t marked[64];
	unsigned n = 0;

	assert_non_null(bm);
	/* Around the message chunk (8 Mi pages) and dirty_shm chunk (64 Mi
	 * pages) boundaries, the ends, and random pages. */
	const uint64_t edges[] = {0, 1, 63, 64, (8ull << 20) - 1, 8ull << 20, (8ull << 20) + 1,
				  (64ull << 20) - 1, 64ull << 20, pages - 2, pages - 1};
	for (unsigned i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		if (edges[i] < pages)
			marked[n++] = edges[i];
	while (n < 40)
		marked[n++] = dut_rnd(&seed) % pages;
	for (unsigned i = 0; i < n; i++)
		ferry_dma_mark_dirty(d->dev, marked[i] * K4, 1);

	/* bits before first_bit set, after the range clear: ORing must leave both */
	memset(bm, 0, words * 8);
	for (uint64_t b = 0; b < first_bit; b++)
		bm[b / 64] |= 1ull << (b % 64);
	assert_int_equal(ferry_client_dirty_report_at(d->c, 0, len, K4, bm, first_bit), 0);
	for (uint64_t b = 0; b < first_bit; b++)
		assert_true(bit_test(bm, b));
	for (unsigned i = 0; i < n; i++) {
		assert_true(bit_test(bm, first_bit + marked[i]));
		bm[(first_bit + marked[i]) / 64] &= ~(1ull << ((first_bit + marked[i]) % 64));
	}
	for (uint64_t w = first_bit / 64; w < words; w++) {
		uint64_t v = bm[w];
		if (w == first_bit / 64)
			v &= ~0ull << (first_bit % 64);
		if (v)
			fail_msg("page %llu set, never marked",
				 (unsigned long long)(w * 64 + (unsigned)__builtin_ctzll(v) - first_bit));
	}
	free(bm);
}

static void test_chunked_reports(void **state)
{
	const struct mode *m = *state;
	struct dut d;
	/* Logging ranges need no mapping: 300 GiB is 75 Mi pages, more than one
	 * dirty_shm chunk and ten message chunks. */
	const uint64_t len = 300ull << 30;
	struct ferry_dirty_range r = {0, len};

	dut_start(&d, "chunk-dev", m->is_shm);
	assert_int_equal(ferry_client_dirty_start(d.c, K4, &r, 1, NULL), 0);
	check_chunked(&d, len, 0);
	check_chunked(&d, len, 37);
	check_chunked(&d, len, 64 * 3);
	assert_int_equal(ferry_client_dirty_stop(d.c), 0);
	dut_stop(&d);
}

/* ---- reports at another page size, unaligned, with a partial last page ---- */

/* Expected report of [iova, +len) at @ps when the 4 KiB pages in
 * @marked[0..n) were written and tracking is at @tps: a bit per output page
 * overlapping a dirty tracking page. */
static bool expect_bit(const uint64_t *marked, unsigned n, uint64_t tps, uint64_t iova,
		       uint64_t len, uint64_t ps, uint64_t p)
{
	uint64_t a = iova + p * ps, b = a + ps < iova + len ? a + ps : iova + len;

	for (unsigned i = 0; i < n; i++) {
		uint64_t t0 = marked[i] * K4 / tps * tps; /* its tracking page */
		if (t0 < b && a < t0 + tps)
			return true;
	}
	return false;
}

static void check_report(struct dut *d, const uint64_t *marked, unsigned n, uint64_t tps,
			 uint64_t iova, uint64_t len, uint64_t ps)
{
	const uint64_t pages = (len + ps - 1) / ps;
	uint64_t *bm = calloc((pages + 63) / 64 + 1, 8);

	assert_int_equal(ferry_client_dirty_report(d->c, iova, len, ps, bm), 0);
	for (uint64_t p = 0; p < pages; p++)
		if (bit_test(bm, p) != expect_bit(marked, n, tps, iova, len, ps, p))
			fail_msg("tracking 0x%llx, report [0x%llx, +0x%llx) at 0x%llx: bit %llu is %d",
				 (unsigned long long)tps, (unsigned long long)iova,
				 (unsigned long long)len, (unsigned long long)ps,
				 (unsigned long long)p, bit_test(bm, p));
	for (uint64_t p = pages; p < ((pages + 63) / 64 + 1) * 64; p++)
		assert_false(bit_test(bm, p));
	free(bm);
}

static void test_report_page_sizes(void **state)
{
	const struct mode *m = *state;
	const struct ferry_dirty_range two[] = {{0, 8 * M2}, {8 * M2, 8 * M2}};
	struct dut d;
	uint64_t marked[200], seed = 0x9a9e;
	unsigned n = 0;

	dut_start(&d, "sizes-dev", m->is_shm);
	while (n < 200)
		marked[n++] = dut_rnd(&seed) % (16 * M2 / K4);
	marked[0] = 8 * M2 / K4 - 1; /* both sides of the range boundary */
	marked[1] = 8 * M2 / K4;
	for (uint64_t tps = K4; tps <= K64; tps *= 16) {
		/* coarser, finer, unaligned start, partial last page, across the
		 * two ranges; each report marks afresh (reports clear) */
		const struct { uint64_t iova, len, ps; } cases[] = {
			{0, 16 * M2, K64},          {0, 16 * M2, M2},
			{0, 16 * M2, K4},           {K4, 16 * M2 - K4, K64},
			{3 * K4, 5 * M2 + 123, K4}, {7 * M2 + K4, M2 + 5 * K4 + 1, K64},
		};
		assert_int_equal(ferry_client_dirty_start(d.c, tps, two, 2, NULL), 0);
		for (unsigned c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
			for (unsigned i = 0; i < n; i++)
				ferry_dma_mark_dirty(d.dev, marked[i] * K4, 1);
			check_report(&d, marked, n, tps, cases[c].iova, cases[c].len, cases[c].ps);
			/* a report of the whole at the tracking size clears what is left */
			uint64_t *junk = calloc(16 * M2 / tps / 64 + 1, 8);
			assert_int_equal(ferry_client_dirty_report(d.c, 0, 16 * M2, tps, junk), 0);
			free(junk);
		}
		assert_int_equal(ferry_client_dirty_stop(d.c), 0);
	}
	dut_stop(&d);
}

/* ---- argument checks, on both sides ---- */

/* A raw START through the feature envelope: what the device itself says. */
static int raw_start(struct dut *d, uint64_t ps, uint32_t num, uint32_t reserved,
		     const struct ferry_dirty_range *r, unsigned inline_n)
{
	uint8_t buf[16 + 16 * 260];
	struct vfio_user_dma_logging_control ctl = {
		.page_size = ps, .num_ranges = num, .reserved = reserved};

	memcpy(buf, &ctl, sizeof(ctl));
	memcpy(buf + 16, r, 16 * inline_n);
	return ferry_client_feature(d->c, VFIO_DEVICE_FEATURE_DMA_LOGGING_START |
				    VFIO_DEVICE_FEATURE_SET, buf, 16 + 16 * inline_n, NULL, 0, NULL,
				    0, NULL);
}

static int raw_report(struct dut *d, uint64_t iova, uint64_t len, uint64_t ps, size_t cap)
{
	struct vfio_user_dma_logging_report rep = {iova, len, ps};
	uint8_t *out = malloc(cap + 1);
	size_t got;
	int r = ferry_client_feature(d->c, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT |
				     VFIO_DEVICE_FEATURE_GET, &rep, sizeof(rep), NULL, 0, out, cap,
				     &got);
	free(out);
	return r;
}

static void test_bad_start(void **state)
{
	const struct mode *m = *state;
	struct dut d;
	struct ferry_dirty_range many[257];
	const struct ferry_dirty_range ok[] = {{GUEST_IOVA, GUEST_SIZE}};
	const struct ferry_dirty_range unaligned[] = {{GUEST_IOVA + K4, K64}};
	const struct ferry_dirty_range overlap[] = {{GUEST_IOVA, 2 * K64}, {GUEST_IOVA + K64, K64}};
	const struct ferry_dirty_range wrap[] = {{UINT64_MAX - K64 + 1, K64}};
	const struct ferry_dirty_range empty[] = {{GUEST_IOVA, 0}};

	for (unsigned i = 0; i < 257; i++)
		many[i] = (struct ferry_dirty_range){i * 2 * K64, K64};
	dut_start(&d, "args-dev", m->is_shm);
	dut_guest(&d, GUEST_IOVA, GUEST_SIZE, 2);
	/* refused here, nothing sent */
	assert_int_equal(ferry_client_dirty_start(d.c, 0x3000, ok, 1, NULL), -EINVAL);
	assert_int_equal(ferry_client_dirty_start(d.c, 0x800, ok, 1, NULL), -EINVAL);
	assert_int_equal(ferry_client_dirty_start(d.c, K4, NULL, 1, NULL), -EINVAL);
	/* refused by the device */
	assert_int_equal(raw_start(&d, 0x3000, 1, 0, ok, 1), -EINVAL);
	assert_int_equal(ferry_client_dirty_start(d.c, 2ull << 30, ok, 1, NULL), -EINVAL);
	assert_int_equal(ferry_client_dirty_start(d.c, K64, unaligned, 1, NULL), -EINVAL);
	assert_int_equal(ferry_client_dirty_start(d.c, K64, overlap, 2, NULL), -EINVAL);
	assert_int_equal(ferry_client_dirty_start(d.c, K64, wrap, 1, NULL), -EOVERFLOW);
	assert_int_equal(ferry_client_dirty_start(d.c, K64, empty, 1, NULL), -EINVAL);
	assert_int_equal(ferry_client_dirty_start(d.c, K64, many, 257, NULL), -E2BIG);
	assert_int_equal(raw_start(&d, K4, 3, 0, ok, 1), -EINVAL);  /* fewer inline than said */
	assert_int_equal(raw_start(&d, K4, 1, 7, ok, 1), -EINVAL);  /* reserved */
	assert_int_equal(raw_start(&d, K4, 0xffffffffu, 0, ok, 1), -E2BIG);
	/* every power of two from 4 KiB to 1 GiB, several ranges */
	for (uint64_t ps = K4; ps <= (1ull << 30); ps <<= 1) {
		struct ferry_dirty_range two[] = {{0, ps}, {4ull << 30, 2 * ps}};
		uint64_t tracked = 0;
		assert_int_equal(ferry_client_dirty_start(d.c, ps, two, 2, &tracked), 0);
		assert_int_equal(tracked, ps);
		assert_int_equal(ferry_client_dirty_stop(d.c), 0);
	}
	assert_int_equal(ferry_client_dirty_start(d.c, K4, many, 256, NULL), 0);
	/* the same START again is fine, another one is not */
	assert_int_equal(ferry_client_dirty_start(d.c, K4, many, 256, NULL), 0);
	assert_int_equal(ferry_client_dirty_start(d.c, K4, ok, 1, NULL), -EBUSY);
	assert_int_equal(ferry_client_dirty_stop(d.c), 0);
	assert_int_equal(ferry_client_dirty_stop(d.c), 0); /* STOP when stopped: fine */
	dut_stop(&d);
}

static void test_bad_report(void **state)
{
	const struct mode *m = *state;
	struct dut d;
	const struct ferry_dirty_range ok[] = {{GUEST_IOVA, GUEST_SIZE}};
	uint64_t bm[GUEST_PAGES / 64 + 1];

	dut_start(&d, "args-dev", m->is_shm);
	dut_guest(&d, GUEST_IOVA, GUEST_SIZE, 2);
	/* not started: the device refuses, the client counts all dirty */
	memset(bm, 0, sizeof(bm));
	assert_int_equal(ferry_client_dirty_report(d.c, GUEST_IOVA, 64 * K4, K4, bm), -EINVAL);
	assert_int_equal(bm[0], ~0ull);
	assert_int_equal(bm[1], 0);

	assert_int_equal(ferry_client_dirty_start(d.c, K4, ok, 1, NULL), 0);
	assert_int_equal(ferry_dma_write(d.dev, GUEST_IOVA, "x", 1), 0);
	/* refused here: bitmap untouched, nothing sent, nothing cleared */
	memset(bm, 0, sizeof(bm));
	assert_int_equal(ferry_client_dirty_report(d.c, GUEST_IOVA, K4, 0x800, bm), -EINVAL);
	assert_int_equal(ferry_client_dirty_report(d.c, GUEST_IOVA, K4, 0x3000, bm), -EINVAL);
	assert_int_equal(ferry_client_dirty_report(d.c, GUEST_IOVA, 0, K4, bm), -EINVAL);
	assert_int_equal(ferry_client_dirty_report(d.c, UINT64_MAX - K4, 2 * K4, K4, bm), -EINVAL);
	assert_int_equal(ferry_client_dirty_report(d.c, GUEST_IOVA, K4, K4, NULL), -EINVAL);
	assert_int_equal(bm[0], 0);
	/* refused by the device: all dirty, the real log untouched */
	assert_int_equal(ferry_client_dirty_report(d.c, GUEST_IOVA - K4, 2 * K4, K4, bm), -EINVAL);
	assert_int_equal(bm[0], 3);
	assert_int_equal(raw_report(&d, GUEST_IOVA, K4, 0x3000, 64), -EINVAL);
	assert_int_equal(raw_report(&d, GUEST_IOVA, 0, K4, 64), -EINVAL);
	assert_int_equal(raw_report(&d, GUEST_IOVA, UINT64_MAX, K4, 64), -EINVAL);
	assert_int_equal(raw_report(&d, GUEST_IOVA, GUEST_SIZE, K4, 24), -EINVAL); /* argsz */
	assert_int_equal(raw_report(&d, 0, 1ull << 62, K4, 64), -E2BIG); /* absurd bitmap */
	memset(bm, 0, sizeof(bm));
	assert_int_equal(ferry_client_dirty_report(d.c, GUEST_IOVA, GUEST_SIZE, K4, bm), 0);
	assert_int_equal(bm[0], 1);
	for (unsigned i = 1; i < GUEST_PAGES / 64; i++)
		assert_int_equal(bm[i], 0);
	dut_stop(&d);
}

/* ---- the rules around mappings ---- */

/* Logging ranges are IOVA ranges: UNMAP clears nothing, REPORT needs no
 * mapping, a re-map is tracked again; writes the client makes for
 * DMA_WRITE messages reach its dirty callback, not the device log. */
struct cb_log {
	_Atomic uint64_t iova, len; /* atomics: the socket orders them, TSan cannot see it */
	atomic_int calls;
};

static void on_write(void *opaque, uint64_t iova, uint64_t len)
{
	struct cb_log *l = opaque;
	atomic_store(&l->iova, iova);
	atomic_store(&l->len, len);
	atomic_fetch_add(&l->calls, 1);
}

static void test_unmap_map_rule(void **state)
{
	const struct mode *m = *state;
	struct dut d;
	const struct ferry_dirty_range all[] = {{GUEST_IOVA, GUEST_SIZE + 64 * K4}};
	const uint64_t half = GUEST_SIZE / 2, msg_iova = GUEST_IOVA + GUEST_SIZE;
	uint64_t bm[(GUEST_PAGES + 64) / 64];
	static uint8_t msg_mem[64 * K4];
	static struct cb_log cb;

	atomic_store(&cb.calls, 0);
	dut_start(&d, "rule-dev", m->is_shm);
	dut_guest(&d, GUEST_IOVA, GUEST_SIZE, 2);
	/* 64 pages more, mapped without an fd: reached by DMA_WRITE messages */
	assert_int_equal(ferry_client_dma_map(d.c, msg_iova, sizeof(msg_mem),
					      VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, -1,
					      0, msg_mem), 0);
	ferry_client_set_dirty_callback(d.c, on_write, &cb);
	assert_int_equal(ferry_client_dirty_start(d.c, K4, all, 1, NULL), 0);

	assert_int_equal(ferry_dma_write(d.dev, GUEST_IOVA + half + 5 * K4, "a", 1), 0);
	assert_int_equal(ferry_client_dma_unmap(d.c, GUEST_IOVA + half, half), 0);
	memset(bm, 0, sizeof(bm));
	assert_int_equal(ferry_client_dirty_report(d.c, GUEST_IOVA, GUEST_SIZE + 64 * K4, K4, bm),
			 0);
	assert_true(bit_test(bm, half / K4 + 5)); /* survived the unmap */
	/* re-mapped: tracked again, nothing left over */
	assert_int_equal(ferry_client_dma_map(d.c, GUEST_IOVA + half, half,
					      VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
					      d.mem_fd, half, d.mem + half), 0);
	assert_int_equal(ferry_dma_write(d.dev, GUEST_IOVA + half + 9 * K4, "b", 1), 0);
	/* the message-mode write: the callback's, not the log's */
	assert_int_equal(ferry_dma_write(d.dev, msg_iova + 3 * K4 + 10, "cc", 2), 0);
	assert_int_equal(atomic_load(&cb.calls), 1);
	assert_int_equal(atomic_load(&cb.iova), msg_iova + 3 * K4 + 10);
	assert_int_equal(atomic_load(&cb.len), 2);
	assert_memory_equal(msg_mem + 3 * K4 + 10, "cc", 2);
	memset(bm, 0, sizeof(bm));
	assert_int_equal(ferry_client_dirty_report(d.c, GUEST_IOVA, GUEST_SIZE + 64 * K4, K4, bm),
			 0);
	for (uint64_t p = 0; p < GUEST_PAGES + 64; p++)
		assert_int_equal(bit_test(bm, p), p == half / K4 + 9);
	ferry_client_set_dirty_callback(d.c, NULL, NULL);
	dut_stop(&d);
}

/* ---- dirty_shm specifics ---- */

/* A device that refuses a bad area: not sealed, too small, wrong flags. */
static void test_shm_area_checks(void **state)
{
	(void)state;
	struct dut d;
	struct vfio_user_dirty_shm_set set = {.size = 1 << 20};
	int fd;

	dut_start(&d, "shm-dev", true);
	fd = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	const uint32_t f = FERRY_FEATURE_DIRTY_SHM | VFIO_DEVICE_FEATURE_SET;
	assert_int_equal(ferry_client_feature(d.c, f, &set, sizeof(set), &fd, 1, NULL, 0, NULL),
			 -EINVAL); /* not sealed */
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	set.size = 2 << 20;
	assert_int_equal(ferry_client_feature(d.c, f, &set, sizeof(set), &fd, 1, NULL, 0, NULL),
			 -EINVAL); /* larger than the file */
	set.size = 1 << 20;
	set.flags = 1;
	assert_int_equal(ferry_client_feature(d.c, f, &set, sizeof(set), &fd, 1, NULL, 0, NULL),
			 -EINVAL);
	set.flags = 0;
	assert_int_equal(ferry_client_feature(d.c, f, &set, sizeof(set), NULL, 0, NULL, 0, NULL),
			 -EINVAL); /* no fd */
	assert_int_equal(ferry_client_feature(d.c, f, &set, sizeof(set), &fd, 1, NULL, 0, NULL),
			 0);
	/* a report larger than the area */
	struct ferry_dirty_range r = {0, 1ull << 40};
	struct vfio_user_dma_logging_report q = {0, 1ull << 40, K4};
	struct vfio_user_dirty_shm_report rep;
	assert_int_equal(ferry_client_dirty_start(d.c, K4, &r, 1, NULL), 0);
	assert_int_equal(ferry_client_feature(d.c, FERRY_FEATURE_DIRTY_SHM |
					      VFIO_DEVICE_FEATURE_GET, &q, sizeof(q), NULL, 0,
					      &rep, sizeof(rep), NULL), -E2BIG);
	/* unregister, then a report has nowhere to go */
	set.size = 0;
	assert_int_equal(ferry_client_feature(d.c, f, &set, sizeof(set), NULL, 0, NULL, 0, NULL),
			 0);
	q.length = K64;
	assert_int_equal(ferry_client_feature(d.c, FERRY_FEATURE_DIRTY_SHM |
					      VFIO_DEVICE_FEATURE_GET, &q, sizeof(q), NULL, 0,
					      &rep, sizeof(rep), NULL), -EINVAL);
	close(fd);
	dut_stop(&d);
}

/* Without the extension negotiated the feature does not exist. */
static void test_shm_not_negotiated(void **state)
{
	(void)state;
	struct dut d;

	dut_start(&d, "plain-dev", false);
	assert_int_equal(ferry_client_feature_probe(d.c, FERRY_FEATURE_DIRTY_SHM,
						    VFIO_DEVICE_FEATURE_GET), -ENOTTY);
	assert_int_equal(ferry_client_dirty_probe(d.c), 0);
	dut_stop(&d);
}

int main(void)
{
	void *msg = (void *)&msg_mode, *shm = (void *)&shm_mode;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_prestate(test_property_4k, msg),
		cmocka_unit_test_prestate(test_property_64k, msg),
		cmocka_unit_test_prestate(test_property_2m, msg),
		cmocka_unit_test_prestate(test_property_4k, shm),
		cmocka_unit_test_prestate(test_property_64k, shm),
		cmocka_unit_test_prestate(test_property_2m, shm),
		cmocka_unit_test_prestate(test_chunked_reports, msg),
		cmocka_unit_test_prestate(test_chunked_reports, shm),
		cmocka_unit_test_prestate(test_report_page_sizes, msg),
		cmocka_unit_test_prestate(test_report_page_sizes, shm),
		cmocka_unit_test_prestate(test_bad_start, msg),
		cmocka_unit_test_prestate(test_bad_report, msg),
		cmocka_unit_test_prestate(test_bad_report, shm),
		cmocka_unit_test_prestate(test_unmap_map_rule, msg),
		cmocka_unit_test_prestate(test_unmap_map_rule, shm),
		cmocka_unit_test(test_shm_area_checks),
		cmocka_unit_test(test_shm_not_negotiated),
	};
	return cmocka_run_group_tests(tests, quiet_setup, NULL);
}
