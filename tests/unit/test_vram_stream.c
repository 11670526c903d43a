/*
 * The vram device's migration, driven through its ferry_migration_ops on two
 * model instances in one process (no sockets): the direct arcs, pre-copy
 * with the engine running, exact stop-copy sizes, the stream's integrity
 * checks, and chunking independence on both sides.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "hash.h"
#include "migration.h"
#include "regs.h"
#include "stream.h"
#include "util/crc32.h"
#include "vram.h"

#define MIB (1024u * 1024u)
#define TEST_SIZE (8u * MIB)     /* 2048 pages: seconds even under ASan */
#define SMALL_SIZE (256u * 1024) /* 64 pages: for the corruption sweeps */

static const struct ferry_migration_ops *ops = &vram_migration_ops;

/* ---- helpers ---- */

struct buf {
	uint8_t *data;
	size_t len, cap;
};

static void buf_append(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->data = realloc(b->data, b->cap);
		assert_non_null(b->data);
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static void buf_free(struct buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Engine progress depends on scheduling: poll (up to 5 s) instead of
 * trusting a fixed sleep, so a loaded machine slows the test but never
 * fails it. */
static uint64_t reg_read64(struct vram *v, uint32_t off);

static uint64_t wait_writes_above(struct vram *v, uint64_t than)
{
	uint64_t w = 0;

	for (int i = 0; i < 5000; i++) {
		w = reg_read64(v, VRAM_REG_ENGINE_WRITES);
		if (w > than)
			break;
		sleep_ms(1);
	}
	assert_true(w > than);
	return w;
}

static struct vram *make(const char *name, uint64_t size)
{
	struct vram *v = NULL;

	assert_int_equal(vram_create(name, size, &v), 0);
	return v;
}

static int arc(struct vram *v, enum ferry_mig_state from, enum ferry_mig_state to)
{
	bool restored = false;
	int rc = ops->transition(v, from, to, &restored);

	if (rc < 0)
		assert_true(restored);
	return rc;
}

/* Walks to @target over the library's paths, one direct arc at a time. */
static void walk(struct vram *v, enum ferry_mig_state target)
{
	while (v->state != target) {
		uint32_t next;

		assert_int_equal(ferry_mig_next_state(ops->flags, v->state, target, &next), 0);
		assert_true(ferry_mig_is_direct_arc(ops->flags, v->state, next));
		assert_int_equal(arc(v, v->state, (enum ferry_mig_state)next), 0);
	}
}

static void reg_write(struct vram *v, uint32_t off, uint32_t val)
{
	assert_int_equal(vram_region_access(v, VRAM_BAR_REGS, off, &val, 4, true), 0);
}

static uint32_t reg_read(struct vram *v, uint32_t off)
{
	uint32_t val = 0xdeadbeef;

	assert_int_equal(vram_region_access(v, VRAM_BAR_REGS, off, &val, 4, false), 0);
	return val;
}

static uint64_t reg_read64(struct vram *v, uint32_t off)
{
	uint64_t val = 0;

	assert_int_equal(vram_region_access(v, VRAM_BAR_REGS, off, &val, 8, false), 0);
	return val;
}

static void fill_page(struct vram *v, uint64_t page, uint64_t salt)
{
	for (uint64_t i = 0; i < VRAM_PAGE_SIZE / 8; i++) {
		uint64_t w = vram_mix64(salt ^ (page << 32) ^ i);

		memcpy(v->mem + page * VRAM_PAGE_SIZE + i * 8, &w, 8);
	}
}

/* Some content: every third page of the lower half filled, the rest zero. */
static void fill_some(struct vram *v, uint64_t salt)
{
	for (uint64_t p = 0; p < v->npages / 2; p += 3)
		fill_page(v, p, salt);
}

/* Pages fill_some() wrote. */
static uint64_t data_pages_filled(const struct vram *v)
{
	return (v->npages / 2 + 2) / 3;
}

/* Pages that are not holes in the memfd now. */
static uint64_t data_pages_now(const struct vram *v)
{
	uint64_t n = 0;

	for (uint64_t p = 0; p < v->npages; p++)
		n += !vram_page_is_hole_now(v, p);
	return n;
}

/* initial_bytes at PRE_COPY entry for a VRAM with @data pages of data. */
static uint64_t initial_estimate(uint64_t npages, uint64_t data)
{
	return VRAM_HDR_LEN + data * VRAM_PAGE_REC_LEN + (npages - data) * VRAM_ZERO_REC_LEN;
}

/* save() in @chunk pieces until it returns 0 (or a short read if
 * @stop_short). Returns bytes appended. */
static size_t drain(struct vram *v, size_t chunk, struct buf *out, bool stop_short)
{
	uint8_t *tmp = malloc(chunk);
	size_t total = 0;

	assert_non_null(tmp);
	for (;;) {
		ssize_t n = ops->save(v, tmp, chunk);

		assert_true(n >= 0);
		buf_append(out, tmp, (size_t)n);
		total += (size_t)n;
		if (n == 0 || (stop_short && (size_t)n < chunk))
			break;
	}
	free(tmp);
	return total;
}

/* load() in @chunk pieces; returns the first error (0 if none). */
static int feed(struct vram *v, const uint8_t *data, size_t len, size_t chunk)
{
	for (size_t off = 0; off < len; off += chunk) {
		size_t n = len - off < chunk ? len - off : chunk;
		int rc = ops->load(v, data + off, n);

		if (rc < 0)
			return rc;
	}
	return 0;
}

/* A whole stop-copy-only stream of @v (left in STOP afterwards). */
static void capture_stopcopy(struct vram *v, size_t chunk, struct buf *out)
{
	uint64_t expect;

	walk(v, FERRY_MIG_STOP);
	assert_int_equal(ops->stop_copy_size(v, &expect), 0);
	walk(v, FERRY_MIG_STOP_COPY);
	uint64_t in_sc;

	assert_int_equal(ops->stop_copy_size(v, &in_sc), 0);
	assert_int_equal(in_sc, expect);
	assert_int_equal(drain(v, chunk, out, false), expect);
	assert_int_equal(ops->save(v, out->data, 1), 0); /* 0 forever */
	walk(v, FERRY_MIG_STOP);
}

/* Loads @stream into a fresh destination of @size; returns the load error
 * or the RESUMING -> STOP error. The destination is left for inspection. */
static int load_into(struct vram *dst, const uint8_t *stream, size_t len, size_t chunk)
{
	walk(dst, FERRY_MIG_RESUMING);
	int rc = feed(dst, stream, len, chunk);

	if (rc < 0) {
		/* A refused stream keeps refusing, and STOP fails. */
		assert_int_equal(ops->load(dst, stream, 1), -EINVAL);
		assert_int_equal(arc(dst, FERRY_MIG_RESUMING, FERRY_MIG_STOP), -EINVAL);
		assert_int_equal(dst->state, FERRY_MIG_RESUMING);
		return rc;
	}
	rc = arc(dst, FERRY_MIG_RESUMING, FERRY_MIG_STOP);
	if (rc < 0)
		assert_int_equal(dst->state, FERRY_MIG_RESUMING);
	return rc;
}

static void assert_same_device(struct vram *src, struct vram *dst)
{
	struct vram_reg_block a, b;

	memset(&a, 0, sizeof(a)); /* padding too: compared as bytes below */
	memset(&b, 0, sizeof(b));
	assert_int_equal(src->size, dst->size);
	assert_memory_equal(src->mem, dst->mem, src->size);
	vram_regs_snapshot(src, &a);
	vram_regs_snapshot(dst, &b);
	/* Restored and not run yet: GENERATION too is the source's. */
	assert_true(dst->is_restored);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_int_equal(vram_checksum(src), vram_checksum(dst));
}

/* ---- the state machine: exactly the direct arcs ---- */

static void test_direct_arcs(void **state)
{
	(void)state;
	struct vram *v = make("arcs", SMALL_SIZE);
	unsigned arcs = 0;

	for (uint32_t from = 0; from < FERRY_MIG_NUM_STATES; from++) {
		if (!ferry_mig_state_supported(ops->flags, from))
			continue;
		for (uint32_t to = 0; to < FERRY_MIG_NUM_STATES; to++) {
			bool direct = ferry_mig_is_direct_arc(ops->flags, from, to);

			vram_reset(v);
			walk(v, from);
			int rc = arc(v, from, to);

			if (from == FERRY_MIG_RESUMING && to == FERRY_MIG_STOP) {
				/* Direct, but there is no stream: must fail. */
				assert_true(direct);
				assert_int_equal(rc, -EINVAL);
				assert_int_equal(v->state, FERRY_MIG_RESUMING);
				arcs++;
			} else if (direct) {
				assert_int_equal(rc, 0);
				assert_int_equal(v->state, to);
				arcs++;
			} else {
				assert_int_equal(rc, -EINVAL);
				assert_int_equal(v->state, from);
			}
		}
	}
	assert_int_equal(arcs, 15); /* PROTOCOL.md §8.3 for STOP_COPY|P2P|PRE_COPY */
	vram_destroy(v);
}

/* ---- registers ---- */

static int irqs;
static void count_irq(void *arg, unsigned vector)
{
	(void)arg;
	assert_int_equal(vector, VRAM_MSIX_VEC_CSUM);
	irqs++;
}

static void test_registers(void **state)
{
	(void)state;
	struct vram *v = make("regs", SMALL_SIZE);
	uint8_t b = 0;
	uint32_t val = 1;

	assert_int_equal(reg_read(v, VRAM_REG_ID), VRAM_ID_VALUE);
	assert_int_equal(reg_read64(v, VRAM_REG_VRAM_SIZE), SMALL_SIZE);
	assert_int_equal(reg_read(v, VRAM_REG_PAGE_SIZE), VRAM_PAGE_SIZE);
	assert_int_equal(reg_read(v, VRAM_REG_ENGINE_FIRST), SMALL_SIZE / VRAM_PAGE_SIZE / 2);
	assert_int_equal(reg_read(v, 0x7fc), 0); /* undefined: reads 0 */
	/* Bad widths and alignments, out of range. */
	assert_int_equal(vram_region_access(v, VRAM_BAR_REGS, 0, &b, 1, false), -EINVAL);
	assert_int_equal(vram_region_access(v, VRAM_BAR_REGS, 2, &val, 4, false), -EINVAL);
	assert_int_equal(vram_region_access(v, VRAM_BAR_REGS, 4, &val, 8, false), -EINVAL);
	assert_int_equal(vram_region_access(v, VRAM_BAR_REGS, 0x1000, &val, 4, false), -EINVAL);
	assert_int_equal(vram_region_access(v, VRAM_BAR_VRAM, SMALL_SIZE - 2, &val, 4, false),
			 -EINVAL);
	assert_int_equal(vram_region_access(v, VRAM_BAR_VRAM, UINT64_MAX, &val, 4, true), -EINVAL);
	assert_int_equal(vram_region_access(v, 1, 0, &val, 4, false), -EINVAL);
	/* Clamps and masks. */
	reg_write(v, VRAM_REG_ENGINE_RATE, UINT32_MAX);
	assert_int_equal(reg_read(v, VRAM_REG_ENGINE_RATE), VRAM_RATE_MAX);
	reg_write(v, VRAM_REG_CONTROL, 0xffffffff);
	assert_int_equal(reg_read(v, VRAM_REG_CONTROL), VRAM_CTRL_MASK);
	reg_write(v, VRAM_REG_CONTROL, 0);
	/* Checksum and its interrupt. */
	v->raise_irq = count_irq;
	fill_page(v, 3, 7);
	reg_write(v, VRAM_REG_CSUM_TRIGGER, VRAM_CSUM_GO);
	assert_int_equal(reg_read(v, VRAM_REG_CHECKSUM), vram_checksum(v));
	assert_int_equal(reg_read(v, VRAM_REG_CSUM_COUNT), 1);
	assert_int_equal(irqs, 0);
	reg_write(v, VRAM_REG_CONTROL, VRAM_CTRL_CSUM_IRQ);
	reg_write(v, VRAM_REG_CSUM_TRIGGER, 2); /* not GO: ignored */
	reg_write(v, VRAM_REG_CSUM_TRIGGER, VRAM_CSUM_GO);
	assert_int_equal(irqs, 1);
	assert_int_equal(reg_read(v, VRAM_REG_CSUM_COUNT), 2);
	/* Trapped BAR2 writes land and are tracked. */
	val = 0x12345678;
	assert_int_equal(vram_region_access(v, VRAM_BAR_VRAM, 5 * VRAM_PAGE_SIZE - 2, &val, 4,
					    true), 0);
	assert_true(dirty_test(&v->dirty, 4));
	assert_true(dirty_test(&v->dirty, 5));
	/* Frozen: writes refused, reads work. */
	walk(v, FERRY_MIG_STOP);
	assert_int_equal(vram_region_access(v, VRAM_BAR_REGS, VRAM_REG_CONTROL, &val, 4, true),
			 -EBUSY);
	assert_int_equal(vram_region_access(v, VRAM_BAR_VRAM, 0, &val, 4, true), -EBUSY);
	assert_int_equal(reg_read(v, VRAM_REG_STATUS) & VRAM_STS_FROZEN, VRAM_STS_FROZEN);
	/* Reset: registers back, state RUNNING. */
	vram_reset(v);
	assert_int_equal(v->state, FERRY_MIG_RUNNING);
	assert_int_equal(reg_read(v, VRAM_REG_CONTROL), 0);
	assert_int_equal(reg_read(v, VRAM_REG_ENGINE_RATE), VRAM_RATE_DEFAULT);
	vram_destroy(v);
}

/* ---- the engine obeys the states ---- */

static void test_engine_states(void **state)
{
	(void)state;
	struct vram *v = make("engine", SMALL_SIZE);
	uint64_t w0, w1;

	reg_write(v, VRAM_REG_ENGINE_RATE, 20000);
	reg_write(v, VRAM_REG_CONTROL, VRAM_CTRL_ENGINE);
	w0 = wait_writes_above(v, 0);
	assert_true(reg_read(v, VRAM_REG_STATUS) & VRAM_STS_ENGINE_ACTIVE);
	/* RUNNING_P2P: no peer DMA, keeps running. */
	walk(v, FERRY_MIG_RUNNING_P2P);
	wait_writes_above(v, w0);
	/* STOP: stopped when the arc returns. */
	walk(v, FERRY_MIG_STOP);
	w0 = reg_read64(v, VRAM_REG_ENGINE_WRITES);
	assert_false(reg_read(v, VRAM_REG_STATUS) & VRAM_STS_ENGINE_ACTIVE);
	sleep_ms(20);
	assert_int_equal(reg_read64(v, VRAM_REG_ENGINE_WRITES), w0);
	walk(v, FERRY_MIG_RUNNING);
	wait_writes_above(v, w0);
	/* Clearing CONTROL.ENGINE returns with the engine idle. */
	reg_write(v, VRAM_REG_CONTROL, 0);
	w1 = reg_read64(v, VRAM_REG_ENGINE_WRITES);
	sleep_ms(10);
	assert_int_equal(reg_read64(v, VRAM_REG_ENGINE_WRITES), w1);
	/* Deterministic: the writes follow the datasheet's sequence. */
	uint64_t n = w1, r = vram_engine_draw(VRAM_SEED_DEFAULT, n);
	uint64_t first = v->npages / 2, page = vram_engine_step(v);

	assert_int_equal(page, first + r % (v->npages - first));
	if (!vram_engine_zero(r)) {
		uint64_t word;

		memcpy(&word, v->mem + page * VRAM_PAGE_SIZE + 8, 8);
		assert_int_equal(word, vram_engine_word(r, 1));
	}
	vram_destroy(v);
}

/* ---- pre-copy with the engine running, then switchover ---- */

static void test_precopy_roundtrip(void **state)
{
	(void)state;
	struct vram *src = make("src", TEST_SIZE);
	struct buf stream = { 0 };
	uint64_t initial, dirty, prev_initial;
	const size_t chunk = 64 * 1024;

	fill_some(src, 1);
	reg_write(src, VRAM_REG_ENGINE_RATE, 20000);
	reg_write(src, VRAM_REG_CONTROL, VRAM_CTRL_ENGINE | VRAM_CTRL_CSUM_IRQ);
	reg_write(src, VRAM_REG_CSUM_TRIGGER, VRAM_CSUM_GO);

	walk(src, FERRY_MIG_PRE_COPY);
	assert_int_equal(ops->precopy_info(src, &initial, &dirty), 0);
	/* Page records for the pages holding data (fill_some()'s, and the
	 * engine's so far), zero records for the holes. */
	assert_true(initial >= initial_estimate(src->npages, data_pages_filled(src)));
	assert_true(initial <= initial_estimate(src->npages, data_pages_now(src)));
	assert_int_equal(dirty, 0);

	/* The initial pass: initial_bytes falls to 0. */
	prev_initial = initial;
	while (initial > 0) {
		uint8_t tmp[64 * 1024];
		ssize_t n = ops->save(src, tmp, sizeof(tmp));

		assert_true(n > 0);
		buf_append(&stream, tmp, (size_t)n);
		assert_int_equal(ops->precopy_info(src, &initial, &dirty), 0);
		assert_true(initial < prev_initial);
		prev_initial = initial;
	}

	/* Host writes through the mapping: no dirty bit; found by hashing. */
	fill_page(src, 1, 99);
	fill_page(src, 2, 99);

	/* Rounds: the engine dirties pages, dirty_bytes shows them. */
	unsigned rounds_with_data = 0;

	for (int round = 0; round < 8; round++) {
		/* Let the engine dirty something (~300 pages per 15 ms). */
		uint64_t w = reg_read64(src, VRAM_REG_ENGINE_WRITES);

		sleep_ms(15);
		wait_writes_above(src, w);
		assert_int_equal(ops->precopy_info(src, &initial, &dirty), 0);
		assert_int_equal(initial, 0);
		assert_true(dirty > 0);
		if (drain(src, chunk, &stream, true) > 0)
			rounds_with_data++;
	}
	assert_true(rounds_with_data >= 2);

	/* A host write after the last round: the stop-copy rehash finds it. */
	fill_page(src, 4, 1234);

	/* Switchover: every device to PRE_COPY_P2P, then STOP_COPY. */
	walk(src, FERRY_MIG_PRE_COPY_P2P);
	sleep_ms(5); /* P2P: the engine still runs */
	walk(src, FERRY_MIG_STOP_COPY);
	assert_int_equal(ops->precopy_info(src, &initial, &dirty), -EINVAL);
	uint64_t sc, sc_bytes;

	assert_int_equal(ops->stop_copy_size(src, &sc), 0);
	assert_true(sc >= VRAM_TRAILER_LEN);
	sc_bytes = drain(src, 7000, &stream, false);
	assert_int_equal(sc_bytes, sc); /* exact */
	assert_int_equal(ops->stop_copy_size(src, &sc), 0);
	assert_int_equal(sc, 0);
	assert_int_equal(ops->save(src, stream.data, 16), 0);

	/* Same stream, three chunkings, identical destinations. */
	static const size_t chunks[] = { 1, 7, MIB };
	struct vram *dst[3];

	for (int i = 0; i < 3; i++) {
		dst[i] = make("dst", TEST_SIZE);
		assert_int_equal(load_into(dst[i], stream.data, stream.len, chunks[i]), 0);
		assert_same_device(src, dst[i]);
	}
	assert_memory_equal(dst[0]->mem, dst[2]->mem, TEST_SIZE);
	assert_int_equal(reg_read(dst[1], VRAM_REG_CHECKSUM), reg_read(src, VRAM_REG_CHECKSUM));

	/* The destination's engine carries on from the source's position. */
	uint64_t at = reg_read64(dst[0], VRAM_REG_ENGINE_WRITES);

	assert_int_equal(at, reg_read64(src, VRAM_REG_ENGINE_WRITES));
	assert_int_equal(reg_read64(dst[0], VRAM_REG_GENERATION), 0);
	walk(dst[0], FERRY_MIG_RUNNING);
	assert_int_equal(reg_read64(dst[0], VRAM_REG_GENERATION), 1); /* counted as it runs */
	wait_writes_above(dst[0], at);

	/* The source ends its session (STOP_COPY -> STOP) and may run again. */
	walk(src, FERRY_MIG_STOP);
	walk(src, FERRY_MIG_RUNNING);

	for (int i = 0; i < 3; i++)
		vram_destroy(dst[i]);
	vram_destroy(src);
	buf_free(&stream);
}

/* Switchover before the initial pass is done: the rest goes in stop-copy. */
static void test_early_switchover(void **state)
{
	(void)state;
	struct vram *src = make("src", TEST_SIZE), *dst = make("dst", TEST_SIZE);
	struct buf stream = { 0 };
	uint8_t tmp[10000];
	uint64_t sc;

	fill_some(src, 2);
	reg_write(src, VRAM_REG_CONTROL, VRAM_CTRL_ENGINE);
	walk(src, FERRY_MIG_PRE_COPY);
	ssize_t n = ops->save(src, tmp, sizeof(tmp)); /* header + part of two pages */

	assert_int_equal(n, sizeof(tmp));
	buf_append(&stream, tmp, (size_t)n);
	walk(src, FERRY_MIG_STOP_COPY);
	assert_int_equal(ops->stop_copy_size(src, &sc), 0);
	assert_int_equal(drain(src, 4096, &stream, false), sc);
	/* A destination whose VRAM held something else: zero records clear. */
	memset(dst->mem, 0x5a, TEST_SIZE);
	assert_int_equal(load_into(dst, stream.data, stream.len, 4096), 0);
	assert_same_device(src, dst);
	vram_destroy(dst);
	vram_destroy(src);
	buf_free(&stream);
}

/* A fresh VRAM is one big memfd hole: the initial pass sends zero records
 * without touching it. Writes into the hole behind the pass's back must
 * still arrive: device writes through the dirty bit, mmap writes through
 * the verify slices (switch == 0) or the STOP_COPY rescan (switch == 1). */
static void test_hole_writes(void **state)
{
	(void)state;
	for (int sw = 0; sw < 2; sw++) {
		struct vram *src = make("src", TEST_SIZE), *dst = make("dst", TEST_SIZE);
		struct buf stream = { 0 };
		uint8_t tmp[200];
		uint64_t initial, dirty;

		walk(src, FERRY_MIG_PRE_COPY);
		assert_int_equal(ops->save(src, tmp, sizeof(tmp)), sizeof(tmp)); /* cursor: all hole */
		buf_append(&stream, tmp, sizeof(tmp));
		fill_page(src, 1500, 42);         /* "mmap" write: no dirty bit */
		uint64_t page = vram_engine_step(src); /* device write: dirty bit */

		assert_true(page >= src->npages / 2);
		if (sw == 0) {
			drain(src, 65536, &stream, false); /* pass + rounds until quiet */
			assert_int_equal(ops->precopy_info(src, &initial, &dirty), 0);
			assert_int_equal(initial + dirty, 0);
		}
		walk(src, FERRY_MIG_STOP_COPY);
		drain(src, 65536, &stream, false);
		assert_int_equal(load_into(dst, stream.data, stream.len, 65536), 0);
		assert_same_device(src, dst);
		vram_destroy(dst);
		vram_destroy(src);
		buf_free(&stream);
	}
}

/* initial_bytes is what the initial pass produces: exactly, when nothing
 * writes (zero records for holes, ferry check's "precopy-drain"), and it
 * never grows when something does: a hole filled behind its back goes out
 * as dirty data. A checksum leaves holes alone. */
static void test_initial_bytes(void **state)
{
	(void)state;
	struct vram *src = make("src", TEST_SIZE), *dst = make("dst", TEST_SIZE);
	uint64_t initial, dirty, at_entry, prev, hole_page = TEST_SIZE / VRAM_PAGE_SIZE - 3;
	struct buf stream = { 0 };
	uint8_t tmp[32 * 1024];

	/* Fresh: all hole; a checksum does not change that. */
	reg_write(src, VRAM_REG_CSUM_TRIGGER, VRAM_CSUM_GO);
	assert_int_equal(data_pages_now(src), 0);
	walk(src, FERRY_MIG_PRE_COPY);
	assert_int_equal(ops->precopy_info(src, &initial, &dirty), 0);
	assert_int_equal(initial, initial_estimate(src->npages, 0));
	vram_destroy(src);

	/* Resident but zero (as after being a migration's destination, which
	 * populates VRAM): zero pages go out as zero records, and count so. */
	src = make("src", TEST_SIZE);
	memset(src->mem, 0, TEST_SIZE);
	fill_some(src, 8);
	walk(src, FERRY_MIG_PRE_COPY);
	assert_int_equal(ops->precopy_info(src, &initial, &dirty), 0);
	assert_int_equal(initial, initial_estimate(src->npages, data_pages_filled(src)));
	vram_destroy(src);

	/* A fresh source each time: comparing VRAMs allocates their holes. */
	for (int pass = 0; pass < 2; pass++) {
		size_t read = 0;

		src = make("src", TEST_SIZE);
		fill_some(src, 8);
		assert_int_equal(data_pages_now(src), data_pages_filled(src));
		walk(src, FERRY_MIG_PRE_COPY);
		assert_int_equal(ops->precopy_info(src, &at_entry, &dirty), 0);
		assert_int_equal(at_entry, initial_estimate(src->npages, data_pages_filled(src)));
		prev = at_entry;
		buf_free(&stream);
		for (;;) {
			ssize_t n = ops->save(src, tmp, sizeof(tmp));

			assert_true(n > 0);
			buf_append(&stream, tmp, (size_t)n);
			read += (size_t)n;
			if (pass == 1 && read == sizeof(tmp))
				fill_page(src, hole_page, 9); /* a hole ahead of the pass, via "mmap" */
			assert_int_equal(ops->precopy_info(src, &initial, &dirty), 0);
			assert_true(initial <= prev);
			prev = initial;
			if (initial == 0)
				break;
		}
		if (pass == 0) {
			assert_int_equal(read, at_entry); /* nothing wrote: exact */
		} else {
			/* The filled hole went out as data, counted as dirty. */
			assert_int_equal(read + dirty, at_entry - VRAM_ZERO_REC_LEN + VRAM_PAGE_REC_LEN);
		}
		drain(src, sizeof(tmp), &stream, false);
		walk(src, FERRY_MIG_STOP_COPY);
		drain(src, sizeof(tmp), &stream, false);
		vram_reset(dst);
		assert_int_equal(load_into(dst, stream.data, stream.len, MIB), 0);
		assert_same_device(src, dst);
		vram_destroy(src);
	}
	vram_destroy(dst);
	buf_free(&stream);
}

/* Ending pre-copy (back to RUNNING) and starting again gives a new stream. */
static void test_precopy_abort_restart(void **state)
{
	(void)state;
	struct vram *src = make("src", SMALL_SIZE), *dst = make("dst", SMALL_SIZE);
	struct buf junk = { 0 }, stream = { 0 };

	fill_some(src, 3);
	walk(src, FERRY_MIG_PRE_COPY);
	drain(src, 3000, &junk, false);
	walk(src, FERRY_MIG_RUNNING); /* PRE_COPY -> RUNNING ends the session */
	assert_int_equal(ops->save(src, junk.data, 1), -EINVAL);
	walk(src, FERRY_MIG_PRE_COPY);
	drain(src, 3000, &stream, false);
	walk(src, FERRY_MIG_STOP_COPY);
	drain(src, 3000, &stream, false);
	assert_int_equal(load_into(dst, stream.data, stream.len, 5000), 0);
	assert_same_device(src, dst);
	/* Reset during pre-copy drops the session too. */
	walk(src, FERRY_MIG_RUNNING);
	walk(src, FERRY_MIG_PRE_COPY);
	vram_reset(src);
	assert_int_equal(src->state, FERRY_MIG_RUNNING);
	assert_int_equal(ops->save(src, junk.data, 1), -EINVAL);
	vram_destroy(dst);
	vram_destroy(src);
	buf_free(&junk);
	buf_free(&stream);
}

/* ---- stop-copy only: exact sizes, chunking on the save side ---- */

static void test_stopcopy_chunking(void **state)
{
	(void)state;
	struct vram *src = make("src", TEST_SIZE);
	struct buf s1 = { 0 }, s7 = { 0 }, s1m = { 0 };
	uint64_t sz;

	/* All-zero VRAM: every page is a zero record. */
	walk(src, FERRY_MIG_STOP);
	assert_int_equal(ops->stop_copy_size(src, &sz), 0);
	assert_int_equal(sz, VRAM_HDR_LEN + src->npages * VRAM_ZERO_REC_LEN + VRAM_TRAILER_LEN);
	walk(src, FERRY_MIG_RUNNING);

	fill_some(src, 4);
	capture_stopcopy(src, 1, &s1);
	capture_stopcopy(src, 7, &s7);
	capture_stopcopy(src, MIB, &s1m);
	assert_int_equal(s1.len, s7.len);
	assert_int_equal(s1.len, s1m.len);
	assert_memory_equal(s1.data, s7.data, s1.len);
	assert_memory_equal(s1.data, s1m.data, s1.len);

	/* A destination of the same stream twice over (one session each). */
	struct vram *dst = make("dst", TEST_SIZE);

	assert_int_equal(load_into(dst, s7.data, s7.len, 7), 0);
	assert_same_device(src, dst);
	assert_int_equal(load_into(dst, s1m.data, s1m.len, MIB), 0);
	vram_destroy(dst);
	vram_destroy(src);
	buf_free(&s1);
	buf_free(&s7);
	buf_free(&s1m);
}

/* A save of a restored device (still stopped) is byte for byte the
 * source's save: nothing is left out of the restore, GENERATION included
 * (ferry check's "restore compare"). It counts the migration once the
 * device runs, and a reset forgets it. */
static void test_restore_is_exact(void **state)
{
	(void)state;
	struct vram *src = make("src", TEST_SIZE), *dst = make("dst", TEST_SIZE);
	struct buf s1 = { 0 }, s2 = { 0 }, s3 = { 0 };

	fill_some(src, 6);
	reg_write(src, VRAM_REG_ENGINE_SEED, 5);
	reg_write(src, VRAM_REG_CSUM_TRIGGER, VRAM_CSUM_GO);
	capture_stopcopy(src, MIB, &s1);
	assert_int_equal(load_into(dst, s1.data, s1.len, MIB), 0);
	capture_stopcopy(dst, MIB, &s2);
	assert_int_equal(s2.len, s1.len);
	assert_memory_equal(s2.data, s1.data, s1.len);

	/* Running (STOP -> RUNNING_P2P) counts the migration, once. */
	walk(dst, FERRY_MIG_RUNNING);
	assert_int_equal(reg_read64(dst, VRAM_REG_GENERATION), 1);
	walk(dst, FERRY_MIG_STOP);
	walk(dst, FERRY_MIG_RUNNING);
	assert_int_equal(reg_read64(dst, VRAM_REG_GENERATION), 1);
	/* A second hop: restored from dst, 2 once it runs. */
	capture_stopcopy(dst, MIB, &s3);
	vram_reset(src);
	assert_int_equal(load_into(src, s3.data, s3.len, MIB), 0);
	assert_int_equal(reg_read64(src, VRAM_REG_GENERATION), 1);
	walk(src, FERRY_MIG_RUNNING);
	assert_int_equal(reg_read64(src, VRAM_REG_GENERATION), 2);
	/* Restored then reset: nothing to count. */
	walk(dst, FERRY_MIG_STOP);
	walk(dst, FERRY_MIG_RESUMING);
	assert_int_equal(feed(dst, s3.data, s3.len, MIB), 0);
	assert_int_equal(arc(dst, FERRY_MIG_RESUMING, FERRY_MIG_STOP), 0);
	vram_reset(dst);
	assert_int_equal(reg_read64(dst, VRAM_REG_GENERATION), 0);
	assert_false(dst->is_restored);
	vram_destroy(dst);
	vram_destroy(src);
	buf_free(&s1);
	buf_free(&s2);
	buf_free(&s3);
}

/* The stop-copy scan runs on a thread of its own: whatever comes next
 * (a reset, leaving STOP_COPY, destroying the device) waits for it. */
static void test_scan_thread_joined(void **state)
{
	(void)state;
	for (int how = 0; how < 3; how++) {
		struct vram *v = make("v", TEST_SIZE);
		uint64_t sz;

		fill_some(v, 10);
		walk(v, FERRY_MIG_PRE_COPY);
		walk(v, FERRY_MIG_STOP_COPY);
		if (how == 0) {
			vram_reset(v);
			assert_int_equal(v->state, FERRY_MIG_RUNNING);
		} else if (how == 1) {
			walk(v, FERRY_MIG_STOP);
			assert_int_equal(ops->stop_copy_size(v, &sz), 0);
			assert_int_equal(sz, VRAM_HDR_LEN + VRAM_TRAILER_LEN +
					     data_pages_filled(v) * VRAM_PAGE_REC_LEN +
					     (v->npages - data_pages_filled(v)) * VRAM_ZERO_REC_LEN);
		}
		vram_destroy(v); /* how == 2: still scanning, maybe */
	}
}

/* ---- hostile and broken streams ---- */

static struct buf small_stream(struct vram **src_out)
{
	struct vram *src = make("src", SMALL_SIZE);
	struct buf s = { 0 };

	fill_some(src, 5);
	reg_write(src, VRAM_REG_ENGINE_SEED, 77);
	capture_stopcopy(src, 4096, &s);
	*src_out = src;
	return s;
}

static void test_truncated(void **state)
{
	(void)state;
	struct vram *src;
	struct buf s = small_stream(&src);
	const size_t cuts[] = { 0, 1, 95, 96, 97, 111, 112, 113, 2000, s.len / 2,
				s.len - VRAM_TRAILER_LEN, s.len - 1 };

	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		struct vram *dst = make("dst", SMALL_SIZE);

		/* The prefix loads, but RESUMING -> STOP refuses it... */
		assert_int_equal(load_into(dst, s.data, cuts[i], 333), -EINVAL);
		/* ...and the device, still RESUMING, takes the rest. */
		assert_int_equal(feed(dst, s.data + cuts[i], s.len - cuts[i], 1000), 0);
		assert_int_equal(arc(dst, FERRY_MIG_RESUMING, FERRY_MIG_STOP), 0);
		assert_same_device(src, dst);
		vram_destroy(dst);
	}
	vram_destroy(src);
	buf_free(&s);
}

static void swallow_log(enum ferry_log_level level, const char *line, void *opaque)
{
	(void)level;
	(void)line;
	(void)opaque;
}

static void test_flipped_bytes(void **state)
{
	(void)state;
	struct vram *src;
	struct buf s = small_stream(&src);
	struct vram *dst = make("dst", SMALL_SIZE);
	uint8_t *copy = malloc(s.len);
	unsigned tried = 0;

	assert_non_null(copy);
	ferry_log_set_sink(swallow_log, NULL); /* thousands of expected refusals */
	/* Every byte of the header, record headers and trailer; every 61st
	 * byte of page data. */
	for (size_t pos = 0; pos < s.len; pos++) {
		bool structural = pos < VRAM_HDR_LEN || pos >= s.len - VRAM_TRAILER_LEN ||
				  (pos - VRAM_HDR_LEN) % VRAM_PAGE_REC_LEN < VRAM_REC_LEN;

		if (!structural && pos % 61)
			continue;
		memcpy(copy, s.data, s.len);
		copy[pos] ^= (uint8_t)(1u << (pos % 8));
		vram_reset(dst);
		int rc = load_into(dst, copy, s.len, 4096 + 16);

		if (rc != -EINVAL)
			fail_msg("flipped byte %zu accepted (rc %d)", pos, rc);
		tried++;
	}
	ferry_log_set_sink(NULL, NULL);
	assert_true(tried > 1000);
	/* And the original still loads into the same device afterwards. */
	vram_reset(dst);
	assert_int_equal(load_into(dst, s.data, s.len, 4096), 0);
	assert_same_device(src, dst);
	free(copy);
	vram_destroy(dst);
	vram_destroy(src);
	buf_free(&s);
}

static void test_bad_header(void **state)
{
	(void)state;
	struct vram *src;
	struct buf s = small_stream(&src);
	struct vram *dst = make("dst", SMALL_SIZE), *big = make("big", 2 * SMALL_SIZE);
	uint8_t hdr[VRAM_HDR_LEN];
	struct vram_stream_header h = { .vram_size = SMALL_SIZE,
					.npages = SMALL_SIZE / VRAM_PAGE_SIZE };

	/* A stream from a smaller device. */
	assert_int_equal(load_into(big, s.data, s.len, 4096), -EINVAL);
	/* Well-formed header, then nonsense. */
	vram_header_encode(hdr, &h);
	memcpy(s.data, hdr, sizeof(hdr));
	memcpy(s.data, "FERRYVRX", 8);
	assert_int_equal(load_into(dst, s.data, VRAM_HDR_LEN, 1), -EINVAL);
	/* Right crc, wrong version / sizes: re-encode then patch and re-crc. */
	const struct { size_t off; uint32_t val; } patches[] = {
		{ 8, VRAM_STREAM_VERSION + 1 }, { 8, VRAM_STREAM_VERSION - 1 }, /* v1: old digest */
		{ 12, 97 }, { 16, 8192 }, { 20, 40 }, { 88, 1 },
		{ 40, 0x80 /* CONTROL unknown bit */ }, { 44, VRAM_RATE_MAX + 1 }, { 68, 1 },
	};
	for (size_t i = 0; i < sizeof(patches) / sizeof(patches[0]); i++) {
		vram_header_encode(hdr, &h);
		memcpy(hdr + patches[i].off, &patches[i].val, 4);
		uint32_t crc = ferry_crc32(0, hdr, 92);

		memcpy(hdr + 92, &crc, 4);
		vram_reset(dst);
		assert_int_equal(load_into(dst, hdr, sizeof(hdr), 5), -EINVAL);
	}
	/* npages inconsistent with vram_size. */
	h.npages++;
	vram_header_encode(hdr, &h);
	vram_reset(dst);
	assert_int_equal(load_into(dst, hdr, sizeof(hdr), 96), -EINVAL);
	vram_destroy(big);
	vram_destroy(dst);
	vram_destroy(src);
	buf_free(&s);
}

/* Streams written by hand: each must be refused at the right place. */
static void test_crafted_records(void **state)
{
	(void)state;
	struct vram *dst = make("dst", SMALL_SIZE);
	uint64_t npages = SMALL_SIZE / VRAM_PAGE_SIZE;
	struct vram_stream_header h = { .vram_size = SMALL_SIZE, .npages = npages };
	const struct { uint32_t type, aux; uint64_t arg; } bad[] = {
		{ VRAM_REC_PAGE, 0, npages },             /* one past the end */
		{ VRAM_REC_PAGE, 0, UINT64_MAX / 4096 + 1 }, /* would overflow index * page */
		{ VRAM_REC_ZERO, 0, UINT64_MAX },
		{ VRAM_REC_PAGE, 1, 0 },                  /* aux must be 0 */
		{ VRAM_REC_ROUND, 0, 0 },                 /* rounds start at 1 */
		{ 0, 0, 0 }, { 5, 0, 0 }, { 0xffffffff, 0, 0 }, /* unknown types */
		{ VRAM_REC_TRAILER, 79, 0 },              /* wrong trailer length */
		{ VRAM_REC_TRAILER, VRAM_TRAILER_BODY, 1 },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t s[VRAM_HDR_LEN + VRAM_REC_LEN];

		vram_header_encode(s, &h);
		vram_rec_encode(s + VRAM_HDR_LEN, bad[i].type, bad[i].aux, bad[i].arg);
		vram_reset(dst);
		assert_int_equal(load_into(dst, s, sizeof(s), 3), -EINVAL);
	}

	/* Well-formed records but a page missing, or a round going backwards,
	 * or bytes after the trailer: built with the real encoders. */
	for (int variant = 0; variant < 4; variant++) {
		struct buf s = { 0 };
		uint8_t rec[VRAM_TRAILER_LEN];
		uint32_t crc;
		struct vram_trailer t = { 0 };

		vram_header_encode(rec, &h);
		buf_append(&s, rec, VRAM_HDR_LEN);
		for (uint64_t p = 0; p < npages; p++) {
			if (variant == 0 && p == 17)
				continue; /* never sent */
			if (variant == 1 && (p == 10 || p == 20)) {
				vram_rec_encode(rec, VRAM_REC_ROUND, 0, 5); /* 5, then 5 again */
				buf_append(&s, rec, VRAM_REC_LEN);
			}
			vram_rec_encode(rec, VRAM_REC_ZERO, 0, p);
			buf_append(&s, rec, VRAM_REC_LEN);
			t.page_records++;
		}
		crc = ferry_crc32(0, s.data, s.len);
		t.stream_crc = crc;
		t.regs.rate = 10;
		t.vram_digest = 0;
		{
			uint64_t *hashes = calloc(npages, 8);
			uint8_t zero[VRAM_PAGE_SIZE] = { 0 };

			for (uint64_t p = 0; p < npages; p++)
				hashes[p] = vram_hash64(zero, sizeof(zero));
			t.vram_digest = vram_hash64(hashes, npages * 8);
			free(hashes);
		}
		if (variant == 2)
			t.page_records++; /* count disagrees */
		vram_trailer_encode(rec, &t);
		buf_append(&s, rec, VRAM_TRAILER_LEN);
		if (variant == 3)
			buf_append(&s, "x", 1); /* after the trailer */
		vram_reset(dst);
		assert_int_equal(load_into(dst, s.data, s.len, 100), -EINVAL);
		if (variant == 3) {
			/* Without the extra byte it is a good stream. */
			vram_reset(dst);
			assert_int_equal(load_into(dst, s.data, s.len - 1, 100), 0);
			assert_int_equal(reg_read(dst, VRAM_REG_ENGINE_RATE), 10);
		}
		buf_free(&s);
	}
	vram_destroy(dst);
}

static void test_wrong_state_ops(void **state)
{
	(void)state;
	struct vram *v = make("v", SMALL_SIZE);
	uint8_t b[16] = { 0 };
	uint64_t i, d;

	assert_int_equal(ops->save(v, b, sizeof(b)), -EINVAL);        /* RUNNING */
	assert_int_equal(ops->load(v, b, sizeof(b)), -EINVAL);
	assert_int_equal(ops->precopy_info(v, &i, &d), -EINVAL);
	walk(v, FERRY_MIG_STOP_COPY);
	assert_int_equal(ops->load(v, b, sizeof(b)), -EINVAL);
	assert_int_equal(ops->precopy_info(v, &i, &d), -EINVAL);
	walk(v, FERRY_MIG_RESUMING);
	assert_int_equal(ops->save(v, b, sizeof(b)), -EINVAL);
	vram_destroy(v);
}

static void test_create_args(void **state)
{
	(void)state;
	struct vram *v = NULL;

	assert_int_equal(vram_create("x", 3 * MIB, &v), -EINVAL);
	assert_int_equal(vram_create("x", 4096, &v), -EINVAL);
	assert_int_equal(vram_create("x", VRAM_MAX_SIZE * 2, &v), -EINVAL);
	assert_null(v);
	vram_destroy(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_args),
		cmocka_unit_test(test_direct_arcs),
		cmocka_unit_test(test_registers),
		cmocka_unit_test(test_engine_states),
		cmocka_unit_test(test_wrong_state_ops),
		cmocka_unit_test(test_precopy_roundtrip),
		cmocka_unit_test(test_early_switchover),
		cmocka_unit_test(test_hole_writes),
		cmocka_unit_test(test_initial_bytes),
		cmocka_unit_test(test_precopy_abort_restart),
		cmocka_unit_test(test_stopcopy_chunking),
		cmocka_unit_test(test_restore_is_exact),
		cmocka_unit_test(test_scan_thread_joined),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_flipped_bytes),
		cmocka_unit_test(test_bad_header),
		cmocka_unit_test(test_crafted_records),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
