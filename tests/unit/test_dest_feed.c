/*
 * The destination's per-device feeder (lib/migrate/dest_feed.c) against a
 * real device (mig_harness.h): a stream pushed in chunks of every size,
 * through a queue it overfills many times, arrives whole and in order (the
 * device validates it); a device that refuses makes push and drain fail,
 * and stopping with chunks still queued leaks nothing.
 */
#include "mig_harness.h"

#include "migrate/dest_feed.h"

#define S(x) FERRY_MIG_##x
#define MODEL_LEN (24u << 20) /* three times the queue bound */

static uint8_t *save_stream(uint8_t seed, size_t *len)
{
	struct th *src = th_start(F_SC, seed, MODEL_LEN);
	uint8_t *s = th_save(src, len);

	th_stop(src);
	return s;
}

static void test_order_and_bound(void **state)
{
	static const size_t sizes[] = {1, 4096, 1u << 20, 7, 3u << 20, 65536, 999};
	struct th *dst = th_start(F_SC, 9, 0);
	struct dest_feed *f;
	size_t len, off = 0;
	uint8_t *s = save_stream(9, &len);

	(void)state;
	th_expect(dst, 9, MODEL_LEN);
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(RESUMING)), 0);
	assert_int_equal(dest_feed_start(dst->c, 0, &f), 0);
	for (unsigned i = 0; off < len; i++) {
		size_t n = sizes[i % (sizeof(sizes) / sizeof(sizes[0]))];

		n = n < len - off ? n : len - off;
		assert_int_equal(dest_feed_push(f, s + off, n), 0);
		off += n;
	}
	assert_int_equal(dest_feed_drain(f), 0);
	assert_int_equal(dest_feed_written(f), len);
	dest_feed_stop(f);
	/* RESUMING -> STOP validates: every byte, in order. */
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(STOP)), 0);
	free(s);
	th_stop(dst);
}

static void test_refusal(void **state)
{
	struct th *dst = th_start(F_SC, 3, 0); /* RUNNING: every write is refused */
	struct dest_feed *f;
	uint8_t chunk[4096] = {0};
	int rc = 0;

	(void)state;
	assert_int_equal(dest_feed_start(dst->c, 0, &f), 0);
	assert_int_equal(dest_feed_push(f, chunk, sizeof(chunk)), 0);
	assert_true(dest_feed_drain(f) < 0);
	for (int i = 0; i < 10 && rc == 0; i++)
		rc = dest_feed_push(f, chunk, sizeof(chunk));
	assert_true(rc < 0); /* the first error sticks */
	assert_int_equal(dest_feed_written(f), 0);
	dest_feed_stop(f);
	th_stop(dst);
}

/* Stopped with chunks likely still queued: whatever is left is freed. */
static void test_stop_with_queue(void **state)
{
	struct th *dst = th_start(F_SC, 5, 0);
	struct dest_feed *f;
	size_t len;
	uint8_t *s = save_stream(5, &len);

	(void)state;
	assert_int_equal(ferry_client_mig_set_state(dst->c, S(RESUMING)), 0);
	assert_int_equal(dest_feed_start(dst->c, 0, &f), 0);
	for (size_t off = 0; off + (1u << 20) <= 6u << 20; off += 1u << 20)
		assert_int_equal(dest_feed_push(f, s + off, 1u << 20), 0);
	dest_feed_stop(f);
	free(s);
	th_stop(dst);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_and_bound),
		cmocka_unit_test(test_refusal),
		cmocka_unit_test(test_stop_with_queue),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
