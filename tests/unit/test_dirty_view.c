/*
 * The migration engine's dirty view (lib/migrate/dirty_view.h) over three
 * devices and the host's own writes:
 *   A  a real ferry device that logs (policy auto -> device logging), with
 *      fd-backed memory and a range mapped without an fd (its writes there
 *      come back through the client's DMA_WRITE callback);
 *   B  a fake server without DMA logging (auto -> all-dirty), whose
 *      DMA_WRITE messages also reach the view through the callback;
 *   C  a real device forced to all-dirty by policy.
 * Rounds of collect + take run while A's threads, host threads and B write;
 * the union of the takes must hold every page written, and outside the
 * all-dirty windows nothing else; every take after a collect holds the
 * all-dirty windows whole.
 */
#include "dirty_harness.h"
#include "client_fake.h"

#include <pthread.h>
#include <stdatomic.h>

#include "migrate/dirty_view.h"
#include "util/log.h"

#define GUEST (64ull << 20)
#define PAGES (GUEST / K4)
#define WORDS (PAGES / 64)

#define A_FD_SIZE (32ull << 20)          /* [0, 32M): two fd maps */
#define A_MSG_IOVA A_FD_SIZE             /* [32M, +256K): no fd */
#define A_MSG_SIZE (256ull << 10)
#define A_WINDOW (A_FD_SIZE + A_MSG_SIZE)
#define B_IOVA ((40ull << 20) + 3 * K4)  /* not on a 64-page boundary */
#define B_SIZE (8ull << 20)
#define C_IOVA (56ull << 20)
#define C_SIZE (4ull << 20)

static uint8_t a_msg_mem[A_MSG_SIZE];
static uint8_t b_mem[B_SIZE];

static void discard(enum ferry_log_level lvl, const char *line, void *opaque)
{
	(void)lvl, (void)line, (void)opaque;
}

struct world {
	struct dut a, c;
	struct fake_server fb;
	struct ferry_client *b;
	struct dirty_view *v;
	_Atomic uint64_t truth[WORDS];
	atomic_bool stop;
	atomic_uint writes; /* by A's workers and the host */
};

static void truth_mark(struct world *w, uint64_t gpa, uint64_t len)
{
	for (uint64_t a = gpa; a < gpa + len; a = (a | (K4 - 1)) + 1)
		atomic_fetch_or(&w->truth[a / K4 / 64], 1ull << (a / K4 % 64));
}

static bool in_window(uint64_t page, uint64_t iova, uint64_t size)
{
	return page >= iova / K4 && page < (iova + size) / K4;
}

static void world_up(struct world *w)
{
	memset(w, 0, sizeof(*w));
	dut_start(&w->a, "dev-a", true);
	dut_guest(&w->a, 0, A_FD_SIZE, 2);
	assert_int_equal(ferry_client_dma_map(w->a.c, A_MSG_IOVA, A_MSG_SIZE,
					      VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, -1,
					      0, a_msg_mem), 0);
	dut_start(&w->c, "dev-c", false);
	fake_init(&w->fb);
	struct ferry_client_options o = {.name = "dev-b", .timeout_ms = 20000};
	assert_int_equal(fake_connect(&w->fb, &o, &w->b), 0);
	assert_int_equal(ferry_client_dma_map(w->b, B_IOVA, B_SIZE, VFIO_DMA_MAP_FLAG_READ |
					      VFIO_DMA_MAP_FLAG_WRITE, -1, 0, b_mem), 0);
	assert_int_equal(dirty_view_create(GUEST, K4, &w->v), 0);
}

static void world_down(struct world *w)
{
	dirty_view_destroy(w->v);
	dut_stop(&w->a);
	dut_stop(&w->c);
	ferry_client_close(w->b);
	fake_stop(&w->fb);
}

/* Device A's worker: fd-backed writes (logged by the device) and writes to
 * the fd-less range (DMA_WRITE messages: the client's callback). */
static void *a_worker(void *arg)
{
	static atomic_uint n;
	struct world *w = arg;
	uint64_t seed = 0xa5a5 + atomic_fetch_add(&n, 1);
	uint8_t data[300];

	memset(data, 0x42, sizeof(data));
	while (!atomic_load(&w->stop)) {
		uint64_t r = dut_rnd(&seed), gpa, len = 1 + (r >> 50) % sizeof(data);

		if (r & 7)
			gpa = (r >> 8) % (A_FD_SIZE - len);
		else
			gpa = A_MSG_IOVA + (r >> 8) % (A_MSG_SIZE - len);
		assert_int_equal(ferry_dma_write(w->a.dev, gpa, data, len), 0);
		truth_mark(w, gpa, len);
		atomic_fetch_add(&w->writes, 1);
	}
	return NULL;
}

/* The host's own writes, anywhere in guest memory. */
static void *host_worker(void *arg)
{
	struct world *w = arg;
	uint64_t seed = 0x40575eed;

	while (!atomic_load(&w->stop)) {
		uint64_t r = dut_rnd(&seed), len = 1 + (r >> 48) % (3 * K4);
		uint64_t gpa = (r >> 4) % (GUEST - len);

		truth_mark(w, gpa, len); /* before: the view may see it from now on */
		dirty_view_mark(w->v, gpa, len);
		atomic_fetch_add(&w->writes, 1);
		sched_yield();
	}
	return NULL;
}

static void check_info(struct world *w)
{
	struct dirty_view_device i;

	assert_int_equal(dirty_view_device_count(w->v), 3);
	assert_int_equal(dirty_view_device_get(w->v, 0, &i), 0);
	assert_int_equal(i.provider, DIRTY_PROVIDER_DEVICE_LOGGING);
	assert_int_equal(i.tracked_page_size, K4);
	assert_non_null(strstr(i.why, "logs its DMA"));
	assert_int_equal(dirty_view_device_get(w->v, 1, &i), 0);
	assert_int_equal(i.provider, DIRTY_PROVIDER_ALL_DIRTY);
	assert_non_null(strstr(i.why, "does not offer DMA logging"));
	assert_int_equal(dirty_view_device_get(w->v, 2, &i), 0);
	assert_int_equal(i.provider, DIRTY_PROVIDER_ALL_DIRTY);
	assert_non_null(strstr(i.why, "policy all-dirty"));
	assert_int_equal(dirty_view_device_get(w->v, 3, &i), -EINVAL);
}

/* Every take after a collect holds the all-dirty windows whole. */
static void take_round(struct world *w, uint64_t *take, uint64_t *uni)
{
	assert_int_equal(dirty_view_collect(w->v), 0);
	dirty_view_take(w->v, take);
	for (uint64_t p = B_IOVA / K4; p < (B_IOVA + B_SIZE) / K4; p++)
		assert_true(bit_test(take, p));
	for (uint64_t p = C_IOVA / K4; p < (C_IOVA + C_SIZE) / K4; p++)
		assert_true(bit_test(take, p));
	for (uint64_t i = 0; i < WORDS; i++)
		uni[i] |= take[i];
}

static void test_view_mixed(void **state)
{
	(void)state;
	struct world *w = calloc(1, sizeof(*w));
	uint64_t *take = calloc(WORDS, 8), *uni = calloc(WORDS, 8);
	pthread_t ta[2], th;
	uint64_t seed = 0xb0b;
	uint8_t data[64];

	assert_non_null(w);
	world_up(w);
	assert_int_equal(dirty_view_add_device(w->v, w->a.c, 0, A_WINDOW, DIRTY_POLICY_AUTO),
			 DIRTY_PROVIDER_DEVICE_LOGGING);
	/* B cannot log: insisting fails, auto falls back */
	assert_int_equal(dirty_view_add_device(w->v, w->b, B_IOVA, B_SIZE,
					       DIRTY_POLICY_DEVICE_LOGGING), -ENOTTY);
	assert_int_equal(dirty_view_add_device(w->v, w->b, B_IOVA, B_SIZE, DIRTY_POLICY_AUTO),
			 DIRTY_PROVIDER_ALL_DIRTY);
	assert_int_equal(dirty_view_add_device(w->v, w->c.c, C_IOVA, C_SIZE,
					       DIRTY_POLICY_ALL_DIRTY), DIRTY_PROVIDER_ALL_DIRTY);
	check_info(w);
	assert_int_equal(dirty_view_start(w->v), 0);
	assert_int_equal(dirty_view_start(w->v), -EINVAL);
	assert_int_equal(dirty_view_add_device(w->v, w->c.c, 0, K4, DIRTY_POLICY_AUTO), -EINVAL);

	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&ta[i], NULL, a_worker, w), 0);
	assert_int_equal(pthread_create(&th, NULL, host_worker, w), 0);
	/* at least 30 rounds, and enough writes to see them race the rounds */
	unsigned rounds = 0;
	for (; rounds < 30 || atomic_load(&w->writes) < 4000; rounds++) {
		/* B's device writes its window by message: the callback's work */
		for (int k = 0; k < 8; k++) {
			uint64_t r = dut_rnd(&seed), gpa = B_IOVA + r % (B_SIZE - sizeof(data));
			struct wire_msg reply;
			memset(data, (int)r, sizeof(data));
			assert_int_equal(fake_dma_call(&w->fb, gpa, sizeof(data), data, &reply), 0);
			wire_msg_release(&reply);
			truth_mark(w, gpa, sizeof(data));
		}
		take_round(w, take, uni);
	}
	atomic_store(&w->stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(ta[i], NULL);
	pthread_join(th, NULL);
	take_round(w, take, uni);

	unsigned written = 0;
	for (uint64_t p = 0; p < PAGES; p++) {
		bool t = atomic_load(&w->truth[p / 64]) >> (p % 64) & 1;
		bool all_dirty = in_window(p, B_IOVA, B_SIZE) || in_window(p, C_IOVA, C_SIZE);
		if (t && !bit_test(uni, p))
			fail_msg("page %llu written but never taken", (unsigned long long)p);
		if (!t && !all_dirty && bit_test(uni, p))
			fail_msg("page %llu taken but never written", (unsigned long long)p);
		written += t;
	}
	assert_true(written > 1000);

	/* The view made every REPORT: the bitmap bytes add up. */
	struct dirty_view_device i;
	assert_int_equal(dirty_view_device_get(w->v, 0, &i), 0);
	assert_int_equal(i.collects, rounds + 1);
	assert_int_equal(i.report_errors, 0);
	assert_int_equal(i.bitmap_bytes, (rounds + 1) * ((A_WINDOW / K4 + 63) / 64 * 8));

	/* A REPORT that fails (logging stopped behind the view's back): A's
	 * whole window counts dirty, and the view says so. */
	dirty_view_take(w->v, take);
	assert_int_equal(ferry_client_dirty_stop(w->a.c), 0);
	assert_int_equal(dirty_view_collect(w->v), 1);
	assert_int_equal(dirty_view_take(w->v, take), (A_WINDOW + B_SIZE + C_SIZE) / K4);
	for (uint64_t p = 0; p < A_WINDOW / K4; p++)
		assert_true(bit_test(take, p));
	assert_int_equal(dirty_view_device_get(w->v, 0, &i), 0);
	assert_int_equal(i.report_errors, 1);
	assert_int_equal(i.last_error, -EINVAL);
	assert_int_equal(i.provider, DIRTY_PROVIDER_DEVICE_LOGGING);

	assert_int_equal(dirty_view_stop(w->v), 0);
	assert_int_equal(dirty_view_collect(w->v), -EINVAL);
	/* after stop, B's messages no longer reach the view */
	struct wire_msg reply;
	assert_int_equal(fake_dma_call(&w->fb, B_IOVA, sizeof(data), data, &reply), 0);
	wire_msg_release(&reply);
	assert_int_equal(dirty_view_take(w->v, take), 0);
	world_down(w);
	free(take);
	free(uni);
	free(w);
}

/* Under auto, a device whose START fails at start time falls back; under
 * device-logging the start fails and undoes itself. */
static void test_view_start_fallback(void **state)
{
	(void)state;
	struct dut a;
	struct dirty_view *v;
	struct dirty_view_device i;
	uint64_t *take = calloc(WORDS, 8);
	struct ferry_dirty_range other = {GUEST, K4};

	dut_start(&a, "dev-a", false);
	dut_guest(&a, 0, GUEST, 1);
	assert_int_equal(dirty_view_create(GUEST, K4, &v), 0);
	assert_int_equal(dirty_view_add_device(v, a.c, 0, GUEST, DIRTY_POLICY_AUTO),
			 DIRTY_PROVIDER_DEVICE_LOGGING);
	/* someone else starts logging with other ranges: our START gets EBUSY */
	assert_int_equal(ferry_client_dirty_start(a.c, K4, &other, 1, NULL), 0);
	assert_int_equal(dirty_view_start(v), 0);
	assert_int_equal(dirty_view_device_get(v, 0, &i), 0);
	assert_int_equal(i.provider, DIRTY_PROVIDER_ALL_DIRTY);
	assert_non_null(strstr(i.why, "failed at start"));
	assert_int_equal(dirty_view_collect(v), 0);
	assert_int_equal(dirty_view_take(v, take), PAGES);
	assert_int_equal(dirty_view_stop(v), 0);
	/* the next start (the next migration) logs again */
	assert_int_equal(ferry_client_dirty_stop(a.c), 0);
	assert_int_equal(dirty_view_start(v), 0);
	assert_int_equal(dirty_view_device_get(v, 0, &i), 0);
	assert_int_equal(i.provider, DIRTY_PROVIDER_DEVICE_LOGGING);
	assert_non_null(strstr(i.why, "logs its DMA"));
	assert_int_equal(ferry_dma_write(a.dev, 5 * K4, "z", 1), 0);
	assert_int_equal(dirty_view_collect(v), 0);
	assert_int_equal(dirty_view_take(v, take), 1);
	assert_int_equal(take[0], 1ull << 5);
	assert_int_equal(dirty_view_stop(v), 0);
	dirty_view_destroy(v);

	assert_int_equal(dirty_view_create(GUEST, K4, &v), 0);
	assert_int_equal(dirty_view_add_device(v, a.c, 0, GUEST, DIRTY_POLICY_DEVICE_LOGGING),
			 DIRTY_PROVIDER_DEVICE_LOGGING);
	assert_int_equal(ferry_client_dirty_start(a.c, K4, &other, 1, NULL), 0);
	assert_int_equal(dirty_view_start(v), -EBUSY);
	dirty_view_destroy(v);
	dut_stop(&a);
	free(take);
}

static void test_view_args(void **state)
{
	(void)state;
	struct dirty_view *v;
	enum dirty_policy p;
	uint64_t take[2];

	assert_int_equal(dirty_view_create(0, K4, &v), -EINVAL);
	assert_int_equal(dirty_view_create(K4 + 1, K4, &v), -EINVAL);
	assert_int_equal(dirty_view_create(K4, 0x3000, &v), -EINVAL);
	assert_int_equal(dirty_view_create(K4, 0x800, &v), -EINVAL);
	assert_int_equal(dirty_view_create(100 * K4, K4, &v), 0);
	assert_int_equal(dirty_view_words(v), 2);
	assert_int_equal(dirty_view_pages(v), 100);
	/* windows: outside, unaligned, empty, no client */
	struct ferry_client *fake_client = (struct ferry_client *)v; /* never dereferenced */
	assert_int_equal(dirty_view_add_device(v, fake_client, 96 * K4, 8 * K4,
					       DIRTY_POLICY_ALL_DIRTY), -EINVAL);
	assert_int_equal(dirty_view_add_device(v, fake_client, 100, K4, DIRTY_POLICY_ALL_DIRTY),
			 -EINVAL);
	assert_int_equal(dirty_view_add_device(v, fake_client, 0, 0, DIRTY_POLICY_ALL_DIRTY),
			 -EINVAL);
	assert_int_equal(dirty_view_add_device(v, NULL, 0, K4, DIRTY_POLICY_ALL_DIRTY), -EINVAL);
	assert_int_equal(dirty_view_add_device(v, fake_client, 0, K4, (enum dirty_policy)7),
			 -EINVAL);
	/* host marks: clipped to guest memory, any length */
	dirty_view_mark(v, 99 * K4 + 5, 1ull << 40);
	dirty_view_mark(v, 100 * K4, 1);
	dirty_view_mark(v, UINT64_MAX, 10);
	dirty_view_mark(v, 0, 0);
	dirty_view_mark(v, 63 * K4, K4 + 1);
	assert_int_equal(dirty_view_take(v, take), 3);
	assert_int_equal(take[0], 1ull << 63);
	assert_int_equal(take[1], (1ull << 0) | (1ull << 35));
	dirty_view_mark_all(v);
	assert_int_equal(dirty_view_take(v, take), 100);
	assert_int_equal(dirty_view_take(v, take), 0);
	dirty_view_destroy(v);
	dirty_view_destroy(NULL);

	assert_int_equal(dirty_policy_parse("auto", &p), 0);
	assert_int_equal(p, DIRTY_POLICY_AUTO);
	assert_int_equal(dirty_policy_parse("all-dirty", &p), 0);
	assert_int_equal(p, DIRTY_POLICY_ALL_DIRTY);
	assert_int_equal(dirty_policy_parse("device-logging", &p), 0);
	assert_int_equal(p, DIRTY_POLICY_DEVICE_LOGGING);
	assert_int_equal(dirty_policy_parse("sometimes", &p), -EINVAL);
	assert_int_equal(dirty_policy_parse(NULL, &p), -EINVAL);
	assert_string_equal(dirty_policy_name(DIRTY_POLICY_DEVICE_LOGGING), "device-logging");
	assert_string_equal(dirty_provider_name(DIRTY_PROVIDER_ALL_DIRTY), "all-dirty");
	assert_string_equal(dirty_provider_name((enum dirty_provider)9), "?");
}

static int quiet(void **state)
{
	(void)state;
	ferry_log_set_sink(discard, NULL);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_view_args),
		cmocka_unit_test(test_view_mixed),
		cmocka_unit_test(test_view_start_fallback),
	};
	return cmocka_run_group_tests(tests, quiet, NULL);
}
