/* Device DMA dirty log: marking, read-and-clear reports at any page size, argument
 * checks, and a concurrent property test (no mark lost, none invented). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device/dirty_log.h"
#include "util/log.h"

#define K4 0x1000ull
#define K64 0x10000ull
#define M2 0x200000ull

typedef struct vfio_user_dma_logging_range lrange;

static int log_lines;
static char log_last[512];

static void capture(enum ferry_log_level lvl, const char *line, void *opaque)
{
	(void)opaque;
	if (lvl <= FERRY_LOG_WARN) {
		log_lines++;
		snprintf(log_last, sizeof(log_last), "%s", line);
	}
}

static int setup(void **state)
{
	struct dirty_log *l;

	ferry_log_set_sink(capture, NULL);
	ferry_log_set_level(FERRY_LOG_WARN);
	log_lines = 0;
	assert_int_equal(dirty_log_create(&l), 0);
	*state = l;
	return 0;
}

static int teardown(void **state)
{
	dirty_log_destroy(*state);
	ferry_log_set_sink(NULL, NULL);
	return 0;
}

#define assert_fails_logged(call, want, needle)                          \
	do {                                                             \
		int before_ = log_lines;                                 \
		assert_int_equal((call), (want));                        \
		assert_int_equal(log_lines, before_ + 1);                \
		assert_non_null(strstr(log_last, (needle)));             \
	} while (0)

/* Reports [iova, +len) at @ps into a fresh buffer (poisoned first, so every
 * word must be written). The caller frees it. */
static uint64_t *report(struct dirty_log *l, uint64_t iova, uint64_t len, uint64_t ps)
{
	uint64_t size = dirty_log_bitmap_size(len, ps);
	uint64_t *out = malloc(size);

	assert_non_null(out);
	memset(out, 0xa5, size);
	assert_int_equal(dirty_log_report(l, iova, len, ps, out), 0);
	return out;
}

static unsigned popcount_buf(const uint64_t *b, uint64_t words)
{
	unsigned n = 0;

	for (uint64_t i = 0; i < words; i++)
		n += (unsigned)__builtin_popcountll(b[i]);
	return n;
}

static void test_bitmap_size(void **state)
{
	(void)state;
	assert_int_equal(dirty_log_bitmap_size(K4, K4), 8);
	assert_int_equal(dirty_log_bitmap_size(64 * K4, K4), 8);
	assert_int_equal(dirty_log_bitmap_size(65 * K4, K4), 16);
	assert_int_equal(dirty_log_bitmap_size(64 * K4 + 1, K4), 16);
	assert_int_equal(dirty_log_bitmap_size(1, M2), 8);
	assert_int_equal(dirty_log_bitmap_size(64ull << 30, K4), 2ull << 20); /* 64 GiB: 2 MiB */
	assert_int_equal(dirty_log_bitmap_size(UINT64_MAX, K4), 1ull << 49);
	assert_int_equal(dirty_log_bitmap_size(UINT64_MAX, 1), 1ull << 61);
	assert_int_equal(dirty_log_bitmap_size(0, K4), 0);
	assert_int_equal(dirty_log_bitmap_size(K4, 0), 0);
}

static void test_start_stop(void **state)
{
	struct dirty_log *l = *state;
	const lrange rg[] = { { 0x100000, 0x100000 } };

	assert_false(dirty_log_is_started(l));
	assert_int_equal(dirty_log_page_size(l), 0);
	dirty_log_stop(l); /* no-op */
	assert_int_equal(dirty_log_start(l, K64, rg, 1), 0);
	assert_true(dirty_log_is_started(l));
	assert_int_equal(dirty_log_page_size(l), K64);
	assert_fails_logged(dirty_log_start(l, K64, rg, 1), -EBUSY, "already started");
	dirty_log_stop(l);
	assert_false(dirty_log_is_started(l));
	assert_int_equal(dirty_log_page_size(l), 0);
	/* restart: every page clean again */
	dirty_log_mark(l, 0x100000, 1);
	assert_int_equal(dirty_log_start(l, K4, rg, 1), 0);
	uint64_t *b = report(l, 0x100000, 0x100000, K4);
	assert_int_equal(popcount_buf(b, 4), 0);
	free(b);
}

static void test_mark_page_boundaries(void **state)
{
	struct dirty_log *l = *state;
	const lrange rg[] = { { 0x100000, 128 * K4 } };
	uint64_t *b;

	assert_int_equal(dirty_log_start(l, K4, rg, 1), 0);
	dirty_log_mark(l, 0x100fff, 1);             /* last byte of page 0 */
	dirty_log_mark(l, 0x102000, 1);             /* first byte of page 2 */
	dirty_log_mark(l, 0x103000, K4);            /* exactly page 3 */
	dirty_log_mark(l, 0x100000 + 63 * K4, 8);   /* page 63: end of word 0 */
	dirty_log_mark(l, 0x100000 + 64 * K4, 8);   /* page 64: start of word 1 */
	dirty_log_mark(l, 0x100000 + 127 * K4 + 0xfff, 1); /* last byte of the range */
	dirty_log_mark(l, 0x100000 + 128 * K4, 1);  /* first byte past it */
	dirty_log_mark(l, 0xfffff, 1);              /* last byte before it */
	dirty_log_mark(l, 0x100000 + 10 * K4, 0);   /* empty write */
	b = report(l, 0x100000, 128 * K4, K4);
	assert_int_equal(b[0], (1ull << 0) | (1ull << 2) | (1ull << 3) | (1ull << 63));
	assert_int_equal(b[1], (1ull << 0) | (1ull << 63));
	free(b);
}

static void test_straddling_marks(void **state)
{
	struct dirty_log *l = *state;
	/* two adjacent ranges and one further off, given unsorted */
	const lrange rg[] = { { 0x200000, 16 * K4 }, { 0x100000, 16 * K4 }, { 0x110000, 16 * K4 } };
	uint64_t *a, *b, *c;

	assert_int_equal(dirty_log_start(l, K4, rg, 3), 0);
	dirty_log_mark(l, 0x101ffe, 4);             /* pages 1 and 2 */
	dirty_log_mark(l, 0x10fff0, 0x20);          /* last of range 0x100000, first of 0x110000 */
	dirty_log_mark(l, 0xff000, 0x2000);         /* starts before the first range: page 0 */
	dirty_log_mark(l, 0x11e800, 0x100000);      /* pages 14,15 of 0x110000, gap, 0x200000 0..15 */
	dirty_log_mark(l, 0x105000, 3 * K4 + 1);    /* pages 5..8 */
	dirty_log_mark(l, 0x1ff000, 0x2000);        /* from the gap into 0x200000: page 0 */
	a = report(l, 0x100000, 16 * K4, K4);
	b = report(l, 0x110000, 16 * K4, K4);
	c = report(l, 0x200000, 16 * K4, K4);
	assert_int_equal(a[0], 0x1ull | 0x6ull | (0xfull << 5) | (1ull << 15));
	assert_int_equal(b[0], 0x1ull | (0x3ull << 14));
	assert_int_equal(c[0], 0xffffull);
	dirty_log_mark(l, 0x1ff000, 0x2000);
	free(c);
	c = report(l, 0x200000, 16 * K4, K4);
	assert_int_equal(c[0], 0x1ull);
	free(a);
	free(b);
	free(c);
	/* a write wrapping past 2^64 is clamped, not misread */
	dirty_log_mark(l, UINT64_MAX - 0xff, 0x1000);
	dirty_log_mark(l, 0x200000 + 15 * K4, UINT64_MAX);
	c = report(l, 0x200000, 16 * K4, K4);
	assert_int_equal(c[0], 1ull << 15);
	free(c);
}

static void test_report_clears(void **state)
{
	struct dirty_log *l = *state;
	const lrange rg[] = { { 0x0, 256 * K4 } };
	uint64_t *b;

	assert_int_equal(dirty_log_start(l, K4, rg, 1), 0);
	for (uint64_t p = 0; p < 256; p += 3)
		dirty_log_mark(l, p * K4, 1);
	b = report(l, 0, 256 * K4, K4);
	assert_int_equal(popcount_buf(b, 4), 86);
	assert_int_equal(b[0], 0x9249249249249249ull);
	free(b);
	b = report(l, 0, 256 * K4, K4);
	assert_int_equal(popcount_buf(b, 4), 0);
	free(b);
	/* a sub-range clears only itself */
	dirty_log_mark(l, 0, 256 * K4);
	b = report(l, 64 * K4, 64 * K4, K4);
	assert_int_equal(b[0], ~0ull);
	free(b);
	b = report(l, 0, 256 * K4, K4);
	assert_int_equal(b[0], ~0ull);
	assert_int_equal(b[1], 0);
	assert_int_equal(b[2], ~0ull);
	assert_int_equal(b[3], ~0ull);
	free(b);
	/* unaligned word offset (page 5) at the same page size */
	dirty_log_mark(l, 4 * K4, 70 * K4); /* pages 4..73 */
	b = report(l, 5 * K4, 100 * K4, K4);  /* bits 0..68 */
	assert_int_equal(b[0], ~0ull);
	assert_int_equal(b[1], 0x1full);
	free(b);
	b = report(l, 0, 256 * K4, K4);
	assert_int_equal(b[0], 1ull << 4); /* page 4 was outside that report */
	assert_int_equal(b[1] | b[2] | b[3], 0);
	free(b);
	/* offset by one page: output bit 63 is tracking page 64, in the next word */
	dirty_log_mark(l, 64 * K4, 1);
	dirty_log_mark(l, 65 * K4, 1);
	b = report(l, 1 * K4, 128 * K4, K4);
	assert_int_equal(b[0], 1ull << 63);
	assert_int_equal(b[1], 1ull << 0);
	free(b);
}

static void test_report_coarser(void **state)
{
	struct dirty_log *l = *state;
	const lrange rg[] = { { 0x40000000, 8 * M2 } }; /* 1 GiB, 16 MiB */
	uint64_t *b;

	assert_int_equal(dirty_log_start(l, K4, rg, 1), 0);
	dirty_log_mark(l, 0x40000000 + 17 * K4, 1);      /* 64K granule 1, 2M granule 0 */
	dirty_log_mark(l, 0x40000000 + 3 * M2 + 5, 1);   /* 64K granule 96, 2M granule 3 */
	dirty_log_mark(l, 0x40000000 + 3 * M2 + K4, 1);  /* same granules */
	dirty_log_mark(l, 0x40000000 + 8 * M2 - 1, 1);   /* 64K granule 255, 2M granule 7 */
	b = report(l, 0x40000000, 8 * M2, K64);
	assert_int_equal(b[0], 1ull << 1);
	assert_int_equal(b[1], 1ull << 32);
	assert_int_equal(b[2], 0);
	assert_int_equal(b[3], 1ull << 63);
	free(b);
	b = report(l, 0x40000000, 8 * M2, M2);
	assert_int_equal(b[0], 0); /* the 64K report cleared them */
	free(b);

	dirty_log_mark(l, 0x40000000 + 17 * K4, 1);
	dirty_log_mark(l, 0x40000000 + 3 * M2 + 5, 1);
	dirty_log_mark(l, 0x40000000 + 8 * M2 - 1, 1);
	b = report(l, 0x40000000, 8 * M2, M2);
	assert_int_equal(b[0], (1ull << 0) | (1ull << 3) | (1ull << 7));
	free(b);
	/* a granule far coarser than the range: one bit */
	dirty_log_mark(l, 0x40000000 + M2, 1);
	b = report(l, 0x40000000, 8 * M2, 1ull << 40);
	assert_int_equal(b[0], 1);
	free(b);
	b = report(l, 0x40000000, 8 * M2, K4);
	assert_int_equal(popcount_buf(b, 64), 0);
	free(b);
}

static void test_report_finer(void **state)
{
	struct dirty_log *l = *state;
	const lrange rg[] = { { 0x0, 4 * M2 } };
	uint64_t *b;

	/* tracked at 64K, reported at 4K: each bit replicated 16 times */
	assert_int_equal(dirty_log_start(l, K64, rg, 1), 0);
	dirty_log_mark(l, K64 + 0x123, 1);      /* tracked page 1 */
	dirty_log_mark(l, 7 * K64 + 0xffff, 1); /* tracked page 7 */
	b = report(l, 0, 16 * K64, K4);         /* 256 bits */
	assert_int_equal(b[0], 0xffffull << 16);
	assert_int_equal(b[1], 0xffffull << 48);
	assert_int_equal(b[2] | b[3], 0);
	free(b);
	dirty_log_stop(l);

	/* tracked at 2M, reported at 4K and 64K */
	assert_int_equal(dirty_log_start(l, M2, rg, 1), 0);
	dirty_log_mark(l, M2 + 1, 1);
	b = report(l, 0, 4 * M2, K64); /* 32 bits per tracked page */
	assert_int_equal(b[0], 0xffffffffull << 32);
	assert_int_equal(b[1], 0);
	free(b);
	dirty_log_mark(l, 3 * M2, 1);
	b = report(l, 0, 4 * M2, K4); /* 512 bits per tracked page: words 24..31 */
	for (unsigned w = 0; w < 32; w++)
		assert_int_equal(b[w], w >= 24 ? ~0ull : 0);
	free(b);
	b = report(l, 0, 4 * M2, K4);
	assert_int_equal(popcount_buf(b, 32), 0);
	free(b);
}

static void test_bits_past_end_zero(void **state)
{
	struct dirty_log *l = *state;
	const lrange rg[] = { { 0x100000, 100 * K4 } };
	uint64_t *b;

	assert_int_equal(dirty_log_start(l, K4, rg, 1), 0);
	dirty_log_mark(l, 0x100000, 100 * K4);
	b = report(l, 0x100000, 100 * K4, K4);
	assert_int_equal(b[0], ~0ull);
	assert_int_equal(b[1], (1ull << 36) - 1);
	free(b);
	dirty_log_mark(l, 0x100000, 100 * K4);
	b = report(l, 0x100000, 100 * K4, K64); /* 100 pages = 6.25 granules: 7 bits */
	assert_int_equal(b[0], 0x7f);
	free(b);
	dirty_log_mark(l, 0x100000, 100 * K4);
	b = report(l, 0x100000, 99 * K4 + 1, M2); /* 1 bit */
	assert_int_equal(b[0], 1);
	free(b);
	dirty_log_stop(l);

	/* finer than tracking, range ending mid tracked page */
	const lrange rg2[] = { { 0x0, 2 * M2 } };
	assert_int_equal(dirty_log_start(l, M2, rg2, 1), 0);
	dirty_log_mark(l, 0, 2 * M2);
	b = report(l, 0, 100 * K4, K4);
	assert_int_equal(b[0], ~0ull);
	assert_int_equal(b[1], (1ull << 36) - 1);
	free(b);
}

/* Tracking pages only partly inside a report are reported, not cleared. */
static void test_partial_pages_kept(void **state)
{
	struct dirty_log *l = *state;
	const lrange rg[] = { { 0x0, 4 * K64 } };
	uint64_t *b;

	assert_int_equal(dirty_log_start(l, K64, rg, 1), 0);
	dirty_log_mark(l, 0, 1);
	dirty_log_mark(l, 3 * K64 + 0x8000, 1);
	b = report(l, 0, K4, K4); /* first 4K of tracked page 0 */
	assert_int_equal(b[0], 1);
	free(b);
	b = report(l, 0, K4, K4);
	assert_int_equal(b[0], 1); /* still there */
	free(b);
	b = report(l, 0x800, 2 * K64, K4); /* unaligned start: page 0 partial, page 1 whole, page 2 partial */
	assert_int_equal(b[0], 0xffffull); /* bits 0..15: [0x800, 0x10800) overlaps page 0 */
	free(b);
	b = report(l, 2 * K64 + 0x800, 2 * K64 - 0x800, K64); /* page 3 whole */
	assert_int_equal(b[0], 0x3); /* granule 1 = [0x30800, 0x40000) overlaps page 3; granule 0 too */
	free(b);
	b = report(l, 0, 4 * K64, K64);
	assert_int_equal(b[0], 0x1); /* page 0 survived the partial reports; page 3 was cleared */
	free(b);
	/* same page size, range ending inside a tracking page: that page stays */
	dirty_log_mark(l, K64, 1);
	b = report(l, 0, K64 + K4, K64); /* page 0 clean, page 1 partial */
	assert_int_equal(b[0], 0x2);
	free(b);
	b = report(l, 0, 4 * K64, K64);
	assert_int_equal(b[0], 0x2);
	free(b);
}

static void test_start_bad_args(void **state)
{
	struct dirty_log *l = *state;
	lrange many[DIRTY_LOG_MAX_RANGES + 1];
	const lrange ok[] = { { 0x0, 0x10000 } };
	const lrange misaligned_iova[] = { { 0x1000, 0x10000 } };
	const lrange misaligned_len[] = { { 0x0, 0x11000 } };
	const lrange empty[] = { { 0x10000, 0 } };
	const lrange overlap[] = { { 0x40000, 0x20000 }, { 0x0, 0x10000 }, { 0x50000, 0x10000 } };
	const lrange wrap[] = { { 0x0, 0x10000 }, { UINT64_MAX - 0xffff, 0x10000 } };
	const lrange wrap2[] = { { 0x10000, UINT64_MAX - 0xffff } };

	for (unsigned i = 0; i <= DIRTY_LOG_MAX_RANGES; i++)
		many[i] = (lrange){ i * 0x20000ull, 0x10000 };

	assert_fails_logged(dirty_log_start(l, 0x3000, ok, 1), -EINVAL, "0x3000");
	assert_fails_logged(dirty_log_start(l, 0x800, ok, 1), -EINVAL, "0x800");
	assert_fails_logged(dirty_log_start(l, 0, ok, 1), -EINVAL, "page size");
	const lrange big[] = { { 0x0, 1ull << 32 } };
	assert_fails_logged(dirty_log_start(l, 1ull << 31, big, 1), -EINVAL, "0x80000000");
	assert_fails_logged(dirty_log_start(l, K64, misaligned_iova, 1), -EINVAL, "0x1000");
	assert_fails_logged(dirty_log_start(l, K64, misaligned_len, 1), -EINVAL, "0x11000");
	assert_fails_logged(dirty_log_start(l, K64, empty, 1), -EINVAL, "empty");
	assert_fails_logged(dirty_log_start(l, K64, overlap, 3), -EINVAL, "overlap");
	assert_fails_logged(dirty_log_start(l, K64, wrap, 2), -EOVERFLOW, "wraps");
	assert_fails_logged(dirty_log_start(l, K64, wrap2, 1), -EOVERFLOW, "wraps");
	assert_fails_logged(dirty_log_start(l, K64, many, DIRTY_LOG_MAX_RANGES + 1), -E2BIG, "257");
	assert_fails_logged(dirty_log_start(l, K64, NULL, 1), -EINVAL, "no array");
	assert_false(dirty_log_is_started(l));

	/* the limits themselves are fine */
	assert_int_equal(dirty_log_start(l, K64, many, DIRTY_LOG_MAX_RANGES), 0);
	dirty_log_stop(l);
	assert_int_equal(dirty_log_start(l, 1ull << 30, NULL, 0), 0);
	dirty_log_stop(l);
	const lrange top[] = { { UINT64_MAX - 0x1ffff, 0x10000 } }; /* ends at 2^64 - 0x10000 */
	assert_int_equal(dirty_log_start(l, K64, top, 1), 0);
	dirty_log_mark(l, UINT64_MAX - 0x10000, 1);
	uint64_t *b = report(l, UINT64_MAX - 0x1ffff, 0x10000, K4);
	assert_int_equal(b[0], 0xffffull); /* one 64K tracking page, 16 bits at 4K */
	free(b);
}

static void test_report_bad_args(void **state)
{
	struct dirty_log *l = *state;
	const lrange rg[] = { { 0x100000, 0x100000 }, { 0x200000, 0x100000 }, { 0x400000, 0x1000 } };
	uint64_t out[64];

	assert_fails_logged(dirty_log_report(l, 0x100000, 0x1000, K4, out), -EINVAL, "not started");
	assert_int_equal(dirty_log_start(l, K4, rg, 3), 0);
	dirty_log_mark(l, 0x100000, 0x300000);
	memset(out, 0x5a, sizeof(out));
	/* partly outside, wholly outside, in the gap, reaching past two adjacent ranges */
	assert_fails_logged(dirty_log_report(l, 0xff000, 0x2000, K4, out), -EINVAL, "0xff000");
	assert_fails_logged(dirty_log_report(l, 0x2ff000, 0x2000, K4, out), -EINVAL, "0x300000");
	assert_fails_logged(dirty_log_report(l, 0x300000, 0x1000, K4, out), -EINVAL, "0x300000");
	assert_fails_logged(dirty_log_report(l, 0x0, 0x1000, K4, out), -EINVAL,
			    "not in any logging range");
	assert_fails_logged(dirty_log_report(l, 0x1ff000, 0x202000, K4, out), -EINVAL,
			    "0x300000 is not in any logging range");
	assert_fails_logged(dirty_log_report(l, 0x400000, 0x1001, K4, out), -EINVAL, "0x1001");
	/* page size */
	assert_fails_logged(dirty_log_report(l, 0x100000, 0x1000, 0x3000, out), -EINVAL, "0x3000");
	assert_fails_logged(dirty_log_report(l, 0x100000, 0x1000, 0x800, out), -EINVAL, "0x800");
	assert_fails_logged(dirty_log_report(l, 0x100000, 0x1000, 0, out), -EINVAL, "page size");
	/* empty, wrapping, no buffer */
	assert_fails_logged(dirty_log_report(l, 0x100000, 0, K4, out), -EINVAL, "empty");
	assert_fails_logged(dirty_log_report(l, 0x100000, UINT64_MAX, K4, out), -EINVAL, "wraps");
	assert_fails_logged(dirty_log_report(l, 0x100000, 0x1000, K4, NULL), -EINVAL, "bitmap");
	for (unsigned i = 0; i < 64; i++)
		assert_int_equal(out[i], 0x5a5a5a5a5a5a5a5aull); /* untouched */
	/* failed reports cleared nothing */
	uint64_t *b = report(l, 0x100000, 0x100000, K4);
	assert_int_equal(popcount_buf(b, 4), 256);
	free(b);
	dirty_log_stop(l);

	/* START with no range: started, nothing tracked, nothing to report */
	assert_int_equal(dirty_log_start(l, K4, NULL, 0), 0);
	assert_true(dirty_log_is_started(l));
	dirty_log_mark(l, 0x100000, 0x1000);
	assert_fails_logged(dirty_log_report(l, 0x100000, 0x1000, K4, out), -EINVAL,
			    "not in any logging range");
	dirty_log_stop(l);

	/* too much bitmap for one START */
	const lrange huge[] = { { 0x0, 1ull << 46 }, { 1ull << 46, 1ull << 46 } };
	assert_fails_logged(dirty_log_start(l, K4, huge, 2), -E2BIG, "larger page size");
	assert_int_equal(dirty_log_start(l, K64, huge, 2), 0);
}

/* A report may span adjacent logging ranges (at any page size), as one
 * logging range would; what it takes is cleared in both. */
static void test_report_spans_adjacent(void **state)
{
	struct dirty_log *l = *state;
	const lrange rg[] = { { 0x200000, 0x100000 }, { 0x100000, 0x100000 } };
	uint64_t *b;

	assert_int_equal(dirty_log_start(l, K4, rg, 2), 0);
	dirty_log_mark(l, 0x1ff000, 0x2000); /* the last page of one, the first of the next */
	dirty_log_mark(l, 0x100000, 1);
	dirty_log_mark(l, 0x2ff000, 1);
	b = report(l, 0x1fe000, 0x4000, K4);
	assert_int_equal(b[0], 0x6);
	free(b);
	b = report(l, 0x1fe000, 0x4000, K4);
	assert_int_equal(b[0], 0);
	free(b);
	dirty_log_mark(l, 0x1ff000, 0x2000);
	/* one 2 MiB bit straddling both ranges; then the whole at 64 KiB */
	b = report(l, 0x100000, 0x200000, M2);
	assert_int_equal(b[0], 0x1);
	free(b);
	b = report(l, 0x100000, 0x200000, K4); /* the 2 MiB report cleared both */
	assert_int_equal(popcount_buf(b, 8), 0);
	free(b);
	dirty_log_mark(l, 0x1ff000, 0x2000);
	b = report(l, 0x100000, 0x200000, K64);
	assert_int_equal(b[0], (1ull << 15) | (1ull << 16));
	free(b);
	b = report(l, 0x100000, 0x200000, K4);
	assert_int_equal(popcount_buf(b, 8), 0);
	free(b);
}

static void test_mark_when_stopped(void **state)
{
	struct dirty_log *l = *state;
	const lrange rg[] = { { 0x0, 64 * K4 } };
	uint64_t *b;

	dirty_log_mark(l, 0, 64 * K4); /* nothing to do, no crash */
	assert_int_equal(dirty_log_start(l, K4, rg, 1), 0);
	dirty_log_mark(l, K4, 1);
	dirty_log_stop(l);
	dirty_log_mark(l, 2 * K4, 1);
	assert_int_equal(dirty_log_start(l, K4, rg, 1), 0);
	dirty_log_mark(l, 3 * K4, 1);
	b = report(l, 0, 64 * K4, K4);
	assert_int_equal(b[0], 1ull << 3);
	free(b);
	assert_int_equal(log_lines, 0);
}

/* ---- reference model: a bool per tracking page, brute force ---- */

struct model {
	uint64_t iova, length, tps, npages;
	bool *dirty;
};

static void model_init(struct model *m, uint64_t iova, uint64_t length, uint64_t tps)
{
	m->iova = iova;
	m->length = length;
	m->tps = tps;
	m->npages = length / tps;
	m->dirty = calloc(m->npages, 1);
	assert_non_null(m->dirty);
}

static void model_mark(struct model *m, uint64_t iova, uint64_t len)
{
	for (uint64_t q = 0; q < m->npages; q++) {
		uint64_t a = m->iova + q * m->tps;
		if (a < iova + len && iova < a + m->tps)
			m->dirty[q] = true;
	}
}

/* Expected report bitmap; clears the pages wholly inside the range. */
static void model_report(struct model *m, uint64_t iova, uint64_t len, uint64_t rps, uint64_t *exp)
{
	uint64_t nout = (len + rps - 1) / rps, end = iova + len;

	memset(exp, 0, dirty_log_bitmap_size(len, rps));
	for (uint64_t p = 0; p < nout; p++) {
		/* granule [a, b) against every tracking page it overlaps */
		uint64_t a = iova + p * rps, b = a + rps < end ? a + rps : end;
		for (uint64_t q = (a - m->iova) / m->tps; q <= (b - 1 - m->iova) / m->tps; q++)
			if (m->dirty[q])
				exp[p / 64] |= 1ull << (p % 64);
	}
	for (uint64_t q = 0; q < m->npages; q++) {
		uint64_t qa = m->iova + q * m->tps;
		if (qa >= iova && qa + m->tps <= end)
			m->dirty[q] = false;
	}
}

static uint64_t rnd_state;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * 2685821657736338717ull;
}

/* Random marks, then random sub-range reports at every page size pairing,
 * each checked bit for bit against the model. */
static void test_report_matches_model(void **state)
{
	struct dirty_log *l = *state;
	static const uint64_t sizes[] = { K4, 0x4000, K64, M2 };
	const uint64_t base = 0x80000000ull, length = 8 * M2; /* 4096 4K pages */
	uint64_t *exp = malloc(dirty_log_bitmap_size(length, K4));
	unsigned checks = 0;

	rnd_state = 0xd1e7f00d;
	for (unsigned ti = 0; ti < 4; ti++) {
		const lrange rg[] = { { base, length } };
		struct model m;

		model_init(&m, base, length, sizes[ti]);
		assert_int_equal(dirty_log_start(l, sizes[ti], rg, 1), 0);
		for (unsigned round = 0; round < 40; round++) {
			uint64_t rps = sizes[rnd() % 4], iova, len, *got;

			for (unsigned k = 0; k < 1 + rnd() % 20; k++) {
				uint64_t a = base + rnd() % length, n = 1 + rnd() % (3 * sizes[ti]);
				if (n > base + length - a)
					n = base + length - a;
				dirty_log_mark(l, a, n);
				model_mark(&m, a, n);
			}
			/* aligned most of the time; sometimes any 512-byte offset */
			if (round % 4 == 3) {
				iova = base + (rnd() % (length / 512)) * 512;
				len = 512 * (1 + rnd() % ((base + length - iova) / 512));
			} else {
				iova = base + (rnd() % (length / rps)) * rps;
				len = rps * (1 + rnd() % ((base + length - iova) / rps));
			}
			got = report(l, iova, len, rps);
			model_report(&m, iova, len, rps, exp);
			assert_memory_equal(got, exp, dirty_log_bitmap_size(len, rps));
			free(got);
			checks++;
		}
		/* the whole range at the tracking size empties the model */
		uint64_t *got = report(l, base, length, sizes[ti]);
		model_report(&m, base, length, sizes[ti], exp);
		assert_memory_equal(got, exp, dirty_log_bitmap_size(length, sizes[ti]));
		free(got);
		got = report(l, base, length, K4);
		assert_int_equal(popcount_buf(got, 64), 0);
		free(got);
		dirty_log_stop(l);
		free(m.dirty);
	}
	assert_int_equal(checks, 160);
	free(exp);
}

/* 64 GiB at 4 KiB: the 2 MiB-bitmap case the fast path is for. */
static void test_large_range(void **state)
{
	struct dirty_log *l = *state;
	const uint64_t len = 64ull << 30;
	const lrange rg[] = { { 1ull << 40, len } };
	uint64_t *b;

	assert_int_equal(dirty_log_start(l, K4, rg, 1), 0);
	rnd_state = 0xb16b00b5;
	for (unsigned i = 0; i < 1000; i++)
		dirty_log_mark(l, (1ull << 40) + (rnd() % (len / K4)) * K4, 1);
	dirty_log_mark(l, (1ull << 40) + len - 1, 1);
	b = report(l, 1ull << 40, len, K4);
	assert_true(popcount_buf(b, 256 * 1024) > 990);
	assert_int_equal(b[256 * 1024 - 1] >> 63, 1);
	free(b);
	b = report(l, 1ull << 40, len, K4);
	assert_int_equal(popcount_buf(b, 256 * 1024), 0);
	free(b);
}

/* ---- property: concurrent marks and reports lose nothing, invent nothing ---- */

#define NMARKERS 4
#define MARKS_PER_THREAD 20000
/* Each round is a fresh race with its own seeds: repetition is what makes a
 * lost mark (a window of nanoseconds) show up. */
#define PROPERTY_ROUNDS 8
/* Far more pages than marks, so most marked pages are marked once and a
 * lost mark is not hidden by a later one. */
#define PAGES_PER_RANGE 65536

struct prop {
	struct dirty_log *l;
	uint64_t tps, rps;
	lrange ranges[2];
	/* each logging range is reported as two parts, split here (bytes from its start) */
	uint64_t split;
	unsigned nmarks; /* per marker, <= MARKS_PER_THREAD */
	atomic_bool done;
	atomic_uint reports;
	atomic_uint errors;
	uint64_t *uni[2][2]; /* union of reports per range and part */
	uint64_t *buf;       /* one report, the reporter's (then main's) */
	struct marker {
		uint64_t seed;
		uint64_t iova[MARKS_PER_THREAD], len[MARKS_PER_THREAD];
	} markers[NMARKERS];
};

static uint64_t part_iova(const struct prop *p, int r, int h)
{
	return p->ranges[r].iova + (h ? p->split : 0);
}

static uint64_t part_len(const struct prop *p, int r, int h)
{
	return h ? p->ranges[r].length - p->split : p->split;
}

static void report_all_into_union(struct prop *p)
{
	uint64_t *buf = p->buf;

	for (int r = 0; r < 2; r++) {
		for (int h = 0; h < 2; h++) {
			uint64_t iova = part_iova(p, r, h), len = part_len(p, r, h);
			uint64_t words = dirty_log_bitmap_size(len, p->rps) / 8;
			uint64_t nout = (len + p->rps - 1) / p->rps;

			if (dirty_log_report(p->l, iova, len, p->rps, buf)) {
				atomic_fetch_add(&p->errors, 1);
				continue;
			}
			if (nout % 64 && buf[words - 1] >> (nout % 64))
				atomic_fetch_add(&p->errors, 1); /* bit past the end */
			for (uint64_t w = 0; w < words; w++)
				p->uni[r][h][w] |= buf[w];
		}
	}
}

static void *reporter(void *arg)
{
	struct prop *p = arg;

	while (!atomic_load(&p->done)) {
		report_all_into_union(p);
		atomic_fetch_add(&p->reports, 1);
	}
	return NULL;
}

struct marker_arg {
	struct prop *p;
	int idx;
};

static void *marker_main(void *arg)
{
	struct marker_arg *ma = arg;
	struct prop *p = ma->p;
	struct marker *mk = &p->markers[ma->idx];
	uint64_t s = mk->seed;
	/* from one tracking page below the first range to one above the second */
	uint64_t lo = p->ranges[0].iova - p->tps;
	uint64_t span = p->ranges[1].iova + p->ranges[1].length + p->tps - lo;

	/* start once the reporter is going, so the two really overlap */
	while (!atomic_load(&p->reports))
		;
	for (unsigned i = 0; i < p->nmarks; i++) {
		uint64_t a, n;

		s ^= s >> 12;
		s ^= s << 25;
		s ^= s >> 27;
		a = lo + (s * 2685821657736338717ull) % span;
		s ^= s >> 12;
		s ^= s << 25;
		s ^= s >> 27;
		n = 1 + (s * 2685821657736338717ull) % (i % 8 ? 64 : 3 * p->tps);
		mk->iova[i] = a;
		mk->len[i] = n;
		dirty_log_mark(p->l, a, n);
	}
	return NULL;
}

static void run_property(struct dirty_log *l, uint64_t tps, uint64_t rps, uint64_t split,
			 unsigned nmarks, uint64_t seed)
{
	struct prop *p = calloc(1, sizeof(*p));
	struct marker_arg args[NMARKERS];
	pthread_t th[NMARKERS], rep;

	assert_non_null(p);
	p->l = l;
	p->tps = tps;
	p->rps = rps;
	p->split = split;
	p->nmarks = nmarks;
	p->ranges[0] = (lrange){ 64 * tps, PAGES_PER_RANGE * tps };
	p->ranges[1] = (lrange){ (64 + PAGES_PER_RANGE + 3) * tps, PAGES_PER_RANGE * tps };
	for (int r = 0; r < 2; r++)
		for (int h = 0; h < 2; h++) {
			p->uni[r][h] = calloc(1, dirty_log_bitmap_size(part_len(p, r, h), rps));
			assert_non_null(p->uni[r][h]);
		}
	p->buf = malloc(dirty_log_bitmap_size(p->ranges[0].length, rps));
	assert_non_null(p->buf);
	assert_int_equal(dirty_log_start(l, tps, p->ranges, 2), 0);

	assert_int_equal(pthread_create(&rep, NULL, reporter, p), 0);
	for (int i = 0; i < NMARKERS; i++) {
		p->markers[i].seed = seed * 0x1234567ull * (uint64_t)(i + 1) + tps + rps;
		args[i] = (struct marker_arg){ p, i };
		assert_int_equal(pthread_create(&th[i], NULL, marker_main, &args[i]), 0);
	}
	for (int i = 0; i < NMARKERS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	atomic_store(&p->done, true);
	assert_int_equal(pthread_join(rep, NULL), 0);
	report_all_into_union(p); /* the final report */
	assert_int_equal(atomic_load(&p->errors), 0);
	assert_true(atomic_load(&p->reports) > 0);

	/* expected: every output granule overlapping a marked tracking page */
	for (int r = 0; r < 2; r++) {
		struct model m;
		uint64_t *exp = p->buf;

		model_init(&m, p->ranges[r].iova, p->ranges[r].length, tps);
		for (int t = 0; t < NMARKERS; t++)
			for (unsigned i = 0; i < nmarks; i++) {
				/* clip to the range, then pages by arithmetic (the model's
				 * loop is too slow for 80,000 marks) */
				uint64_t a = p->markers[t].iova[i], e = a + p->markers[t].len[i];
				if (a < m.iova)
					a = m.iova;
				if (e > m.iova + m.length)
					e = m.iova + m.length;
				for (uint64_t q = (a - m.iova) / tps; a < e && q <= (e - 1 - m.iova) / tps; q++)
					m.dirty[q] = true;
			}
		for (int h = 0; h < 2; h++) {
			uint64_t len = part_len(p, r, h);
			unsigned set;

			model_report(&m, part_iova(p, r, h), len, rps, exp);
			assert_memory_equal(p->uni[r][h], exp, dirty_log_bitmap_size(len, rps));
			set = popcount_buf(exp, dirty_log_bitmap_size(len, rps) / 8);
			assert_true(set > 0);
			free(p->uni[r][h]);
		}
		free(m.dirty);
	}
	dirty_log_stop(l);
	free(p->buf);
	free(p);
}

static void test_concurrent_same_size(void **state)
{
	/* split off a word boundary: the second part takes bits across two words */
	for (uint64_t round = 1; round <= PROPERTY_ROUNDS; round++)
		run_property(*state, K4, K4, 100 * K4, MARKS_PER_THREAD, round);
}

static void test_concurrent_coarser(void **state)
{
	/* fewer marks: a lost one must not hide behind another in its 64K granule */
	for (uint64_t round = 1; round <= PROPERTY_ROUNDS; round++)
		run_property(*state, K4, K64, 96 * K4, MARKS_PER_THREAD / 8, round);
}

static void test_concurrent_finer(void **state)
{
	for (uint64_t round = 1; round <= PROPERTY_ROUNDS; round++)
		run_property(*state, K64, K4, 5 * K64, MARKS_PER_THREAD, round);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bitmap_size),
		cmocka_unit_test_setup_teardown(test_start_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mark_page_boundaries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_straddling_marks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_report_clears, setup, teardown),
		cmocka_unit_test_setup_teardown(test_report_coarser, setup, teardown),
		cmocka_unit_test_setup_teardown(test_report_finer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bits_past_end_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partial_pages_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_bad_args, setup, teardown),
		cmocka_unit_test_setup_teardown(test_report_bad_args, setup, teardown),
		cmocka_unit_test_setup_teardown(test_report_spans_adjacent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mark_when_stopped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_report_matches_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_same_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_coarser, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_finer, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
