/*
 * ferry-dev-dma's migration data (devices/dma/mig_stream.h, mig_save.h,
 * mig_load.h) without processes: a source session's bytes fed to a
 * destination's parser in chunks of every size; every byte flipped, every
 * truncation, bytes past the end and impossible states (re-sealed with a
 * right crc) refused; the sizes a session reports.
 */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zlib.h>

#include <ferry/log.h>

#include "mig_load.h"
#include "mig_save.h"
#include "mig_stream.h"

#define MAX_STREAM (2 * DMA_MIG_REC_LEN)

/* A running engine's state, with two held peer writes. */
static struct dma_state busy_state(void)
{
	struct dma_state st = {
		.control = DMA_CTRL_ENABLE,
		.status = DMA_STS_RUNNING | DMA_STS_ERR_DESC,
		.ring_base = UINT64_C(0x100400000),
		.ring_size = 256,
		.irq_coalesce = 8,
		.head = 0xfffffff0u, /* head and tail wrap around 2^32 */
		.tail = 0x00000010u,
		.completed = 1000,
		.errors = 3,
		.irqs = 120,
		.peer_doorbell = UINT64_C(0x100100000),
		.since_irq = 5,
		.peer_held = 2,
		.peer_writes = 77,
	};

	st.held[0] = (struct dma_peer_write){ .addr = st.peer_doorbell, .value = 1 };
	st.held[1] = (struct dma_peer_write){ .addr = st.peer_doorbell + 8, .value = 2 };
	return st;
}

static void drop_line(enum ferry_log_level level, const char *line, void *opaque)
{
	(void)level;
	(void)line;
	(void)opaque;
}

/* A pre-copy session's whole stream: PRECOPY of @pre, FINAL of @fin. */
static size_t make_stream(uint8_t *out, const struct dma_state *pre, const struct dma_state *fin)
{
	struct dma_mig_save s;
	size_t len = 0;
	ssize_t n;

	dma_mig_save_begin(&s, pre);
	while ((n = dma_mig_save_read(&s, "test", out + len, 100)) > 0)
		len += (size_t)n;
	assert_int_equal(n, 0);
	dma_mig_save_final(&s, fin);
	while ((n = dma_mig_save_read(&s, "test", out + len, 100)) > 0)
		len += (size_t)n;
	assert_int_equal(n, 0);
	dma_mig_save_end(&s);
	return len;
}

/* Feeds @len bytes in chunks of @chunk; returns the first write error, or
 * finish's result with *@out. */
static int feed(const uint8_t *buf, size_t len, size_t chunk, struct dma_state *out)
{
	struct dma_mig_load l;
	int rc = 0;

	dma_mig_load_begin(&l);
	for (size_t off = 0; off < len && rc == 0; off += chunk) {
		size_t n = len - off < chunk ? len - off : chunk;

		rc = dma_mig_load_write(&l, "test", buf + off, n);
	}
	if (rc == 0)
		rc = dma_mig_load_finish(&l, "test", out);
	dma_mig_load_end(&l);
	return rc;
}

static void test_round_trip_any_chunks(void **state)
{
	struct dma_state pre = busy_state(), fin = busy_state(), got;
	uint8_t buf[MAX_STREAM];
	size_t len;

	(void)state;
	fin.head = fin.tail; /* it ran on before it stopped */
	fin.completed += 32;
	fin.since_irq = 0;
	len = make_stream(buf, &pre, &fin);
	assert_int_equal(len, 2 * DMA_MIG_REC_LEN);
	for (size_t chunk = 1; chunk <= len; chunk++) {
		memset(&got, 0xa5, sizeof(got));
		assert_int_equal(feed(buf, len, chunk, &got), 0);
		assert_memory_equal(&got, &fin, sizeof(fin)); /* the FINAL record wins */
	}
}

static void test_stop_copy_only(void **state)
{
	struct dma_state fin = busy_state(), got;
	struct dma_mig_save s = {0}; /* a device that never opened a session */
	uint8_t buf[MAX_STREAM];
	uint64_t size;
	ssize_t n;

	(void)state;
	memset(&fin.held, 0, sizeof(fin.held));
	fin.peer_held = 0;
	assert_int_equal(dma_mig_save_stop_copy_size(&s), DMA_MIG_REC_LEN); /* no session */
	dma_mig_save_begin(&s, NULL);
	dma_mig_save_final(&s, &fin);
	size = dma_mig_save_stop_copy_size(&s);
	assert_int_equal(size, DMA_MIG_REC_LEN);
	n = dma_mig_save_read(&s, "test", buf, sizeof(buf));
	assert_int_equal(n, (ssize_t)size);
	assert_int_equal(dma_mig_save_stop_copy_size(&s), 0);
	assert_int_equal(dma_mig_save_read(&s, "test", buf, sizeof(buf)), 0);
	assert_int_equal(dma_mig_save_read(&s, "test", buf, sizeof(buf)), 0); /* final */
	dma_mig_save_end(&s);
	assert_int_equal(dma_mig_save_read(&s, "test", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(feed(buf, (size_t)n, 7, &got), 0);
	assert_memory_equal(&got, &fin, sizeof(fin));
}

/* Sizes while pre-copy runs: initial drains, dirty follows the state, the
 * stop-copy size is exact at every point (also mid-record). */
static void test_sizes(void **state)
{
	struct dma_state now = busy_state(), later = busy_state();
	struct dma_mig_save s;
	uint8_t buf[MAX_STREAM];
	uint64_t initial, dirty, sc;
	size_t got = 0;
	ssize_t n;

	(void)state;
	later.completed++;
	dma_mig_save_begin(&s, &now);
	dma_mig_save_precopy_info(&s, &now, &initial, &dirty);
	assert_int_equal(initial, DMA_MIG_REC_LEN);
	assert_int_equal(dirty, 0);
	assert_int_equal(dma_mig_save_stop_copy_size(&s), 2 * DMA_MIG_REC_LEN);

	n = dma_mig_save_read(&s, "test", buf, 100);
	assert_int_equal(n, 100);
	got += 100;
	dma_mig_save_precopy_info(&s, &later, &initial, &dirty);
	assert_int_equal(initial, DMA_MIG_REC_LEN - 100);
	assert_int_equal(dirty, DMA_MIG_REC_LEN);
	sc = dma_mig_save_stop_copy_size(&s);
	assert_int_equal(sc, 2 * DMA_MIG_REC_LEN - 100);

	/* STOP_COPY in the middle of the PRECOPY record: the rest comes first,
	 * and exactly the promised bytes follow. */
	dma_mig_save_final(&s, &later);
	assert_int_equal(dma_mig_save_stop_copy_size(&s), sc);
	while ((n = dma_mig_save_read(&s, "test", buf + got, 33)) > 0)
		got += (size_t)n;
	assert_int_equal(got, 2 * DMA_MIG_REC_LEN);
	dma_mig_save_end(&s);
	{
		struct dma_state out;

		assert_int_equal(feed(buf, got, 5, &out), 0);
		assert_memory_equal(&out, &later, sizeof(later));
	}
}

/* Every byte of the stream flipped (each bit in turn for the first record's
 * header) is refused, by a write or by finish. */
static void test_every_flip_refused(void **state)
{
	struct dma_state st = busy_state(), out;
	uint8_t buf[MAX_STREAM];
	size_t len = make_stream(buf, &st, &st);

	(void)state;
	ferry_log_set_sink(drop_line, NULL); /* one refusal line per case: ~1000 */
	for (size_t i = 0; i < len; i++) {
		for (unsigned bit = 0; bit < 8; bit++) {
			if (i >= DMA_MIG_HDR_LEN && bit) /* one bit per state byte */
				break;
			buf[i] ^= (uint8_t)(1u << bit);
			assert_int_not_equal(feed(buf, len, 64, &out), 0);
			buf[i] ^= (uint8_t)(1u << bit);
		}
	}
	ferry_log_set_sink(NULL, NULL);
}

/* Cut short anywhere: no write fails (more may come), finish does. A byte
 * past the end fails the write. A session-less write fails. */
static void test_truncated_and_trailing(void **state)
{
	struct dma_state st = busy_state(), out;
	struct dma_mig_load l;
	uint8_t buf[MAX_STREAM + 1];
	size_t len = make_stream(buf, &st, &st);

	(void)state;
	ferry_log_set_sink(drop_line, NULL); /* one refusal line per cut */
	for (size_t cut = 0; cut < len; cut++) {
		dma_mig_load_begin(&l);
		assert_int_equal(dma_mig_load_write(&l, "test", buf, cut), 0);
		assert_int_equal(dma_mig_load_finish(&l, "test", &out), -EINVAL);
		/* ... and the rest still completes it. */
		assert_int_equal(dma_mig_load_write(&l, "test", buf + cut, len - cut), 0);
		assert_int_equal(dma_mig_load_finish(&l, "test", &out), 0);
	}
	ferry_log_set_sink(NULL, NULL);
	buf[len] = 0;
	assert_int_equal(feed(buf, len + 1, len + 1, &out), -EINVAL);

	dma_mig_load_end(&l);
	assert_int_equal(dma_mig_load_write(&l, "test", buf, 1), -EINVAL);
	/* Poisoned stays poisoned, even for good bytes. */
	dma_mig_load_begin(&l);
	assert_int_equal(dma_mig_load_write(&l, "test", "XXXXXXXXXXXXXXXXXXXXXXXX", 24), -EINVAL);
	assert_int_equal(dma_mig_load_write(&l, "test", buf, len), -EINVAL);
	assert_int_equal(dma_mig_load_finish(&l, "test", &out), -EINVAL);
}

/* Re-seals a record after a change, so only the checks behind the crc see it. */
static void reseal(uint8_t *rec)
{
	uLong crc = crc32(0L, Z_NULL, 0);
	uint32_t le;

	crc = crc32(crc, rec, 16);
	crc = crc32(crc, rec + DMA_MIG_HDR_LEN, DMA_MIG_STATE_LEN);
	le = htole32((uint32_t)crc);
	memcpy(rec + 16, &le, 4);
}

/* A header field changed and re-sealed: refused at the header (its first
 * 24 bytes), before the state arrives. */
static void test_header_fields(void **state)
{
	static const struct { size_t off; uint8_t val; } cases[] = {
		{ 4, 2 },   /* version 2 */
		{ 6, 3 },   /* kind 3 */
		{ 6, 0 },   /* kind 0 */
		{ 8, 0x51 },/* state length 337 */
		{ 12, 1 },  /* state version 1 */
		{ 20, 1 },  /* reserved */
		{ 0, 'X' }, /* magic */
	};
	struct dma_state st = busy_state();
	uint8_t rec[DMA_MIG_REC_LEN];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dma_mig_load l;

		dma_mig_record_encode(rec, DMA_MIG_FINAL, &st);
		rec[cases[i].off] = cases[i].val;
		reseal(rec);
		dma_mig_load_begin(&l);
		assert_int_equal(dma_mig_load_write(&l, "test", rec, DMA_MIG_HDR_LEN), -EINVAL);
	}
}

typedef void (*mutate_fn)(struct dma_state *st);

static void m_ring_not_pow2(struct dma_state *st) { st->ring_size = 3; }
static void m_ring_too_big(struct dma_state *st) { st->ring_size = DMA_RING_MAX_ENTRIES * 2; }
static void m_ring_unaligned(struct dma_state *st) { st->ring_base += 8; }
static void m_ring_wraps(struct dma_state *st) { st->ring_base = UINT64_MAX - 31; }
static void m_tail_beyond(struct dma_state *st) { st->tail = st->head + st->ring_size + 1; }
static void m_running_disabled(struct dma_state *st) { st->control = 0; }
static void m_control_bits(struct dma_state *st) { st->control |= DMA_CTRL_RESET; }
static void m_status_bits(struct dma_state *st) { st->status |= 1u << 20; }
static void m_errors(struct dma_state *st) { st->errors = st->completed + 1; }
static void m_since_irq(struct dma_state *st) { st->since_irq = (uint32_t)st->completed + 1; }
static void m_held_count(struct dma_state *st) { st->peer_held = DMA_PEER_HOLD_MAX + 1; }
static void m_held_unaligned(struct dma_state *st) { st->held[1].addr += 4; }
static void m_held_wraps(struct dma_state *st) { st->held[0].addr = UINT64_MAX - 3; }
static void m_held_unused(struct dma_state *st) { st->held[5].value = 9; }

/* An impossible state, re-sealed: refused when the record completes. */
static void test_state_invariants(void **state)
{
	static const mutate_fn bad[] = {
		m_ring_not_pow2, m_ring_too_big, m_ring_unaligned, m_ring_wraps, m_tail_beyond,
		m_running_disabled, m_control_bits, m_status_bits, m_errors, m_since_irq,
		m_held_count, m_held_unaligned, m_held_wraps, m_held_unused,
	};
	uint8_t rec[DMA_MIG_REC_LEN];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct dma_state st = busy_state(), out;
		enum dma_mig_kind kind;

		bad[i](&st);
		assert_non_null(dma_state_check(&st));
		dma_mig_record_encode(rec, DMA_MIG_FINAL, &st); /* a right crc */
		assert_int_equal(dma_mig_record_decode("test", 0, rec, &kind, &out), -EINVAL);
		assert_int_not_equal(feed(rec, sizeof(rec), 11, &out), 0);
	}
}

/* States a guest can legitimately leave behind are accepted. */
static void test_state_legit_edges(void **state)
{
	struct dma_state zero = { 0 }, st;

	(void)state;
	assert_null(dma_state_check(&zero)); /* power-on */

	st = zero; /* disabled, garbage ring registers, counters wrapped */
	st.ring_size = 3;
	st.ring_base = 7;
	st.head = 5;
	st.tail = 1000;
	assert_null(dma_state_check(&st));

	st = busy_state(); /* enabled but halted (ERR_RING) or refused (ERR_CONFIG) */
	st.status = DMA_STS_ERR_CONFIG;
	st.ring_size = 0;
	assert_null(dma_state_check(&st));

	st = busy_state(); /* a full hold queue */
	st.peer_held = DMA_PEER_HOLD_MAX;
	for (unsigned i = 0; i < DMA_PEER_HOLD_MAX; i++)
		st.held[i] = (struct dma_peer_write){ .addr = 8 * i, .value = i };
	assert_null(dma_state_check(&st));

	st = busy_state(); /* a full ring, max size */
	st.ring_size = DMA_RING_MAX_ENTRIES;
	st.tail = st.head + DMA_RING_MAX_ENTRIES;
	assert_null(dma_state_check(&st));
}

/* PRECOPY records may repeat; a PRECOPY after the FINAL one may not, and a
 * stream without a FINAL record never completes. */
static void test_record_order(void **state)
{
	struct dma_state st = busy_state(), out;
	uint8_t buf[3 * DMA_MIG_REC_LEN];

	(void)state;
	dma_mig_record_encode(buf, DMA_MIG_PRECOPY, &st);
	dma_mig_record_encode(buf + DMA_MIG_REC_LEN, DMA_MIG_PRECOPY, &st);
	assert_int_equal(feed(buf, 2 * DMA_MIG_REC_LEN, 50, &out), -EINVAL);
	dma_mig_record_encode(buf + 2 * DMA_MIG_REC_LEN, DMA_MIG_FINAL, &st);
	assert_int_equal(feed(buf, sizeof(buf), 50, &out), 0);

	dma_mig_record_encode(buf, DMA_MIG_FINAL, &st);
	dma_mig_record_encode(buf + DMA_MIG_REC_LEN, DMA_MIG_PRECOPY, &st);
	assert_int_equal(feed(buf, 2 * DMA_MIG_REC_LEN, 50, &out), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_any_chunks),
		cmocka_unit_test(test_stop_copy_only),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_every_flip_refused),
		cmocka_unit_test(test_truncated_and_trailing),
		cmocka_unit_test(test_header_fields),
		cmocka_unit_test(test_state_invariants),
		cmocka_unit_test(test_state_legit_edges),
		cmocka_unit_test(test_record_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
