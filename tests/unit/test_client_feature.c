/*
 * DEVICE_FEATURE: the envelope (GET / SET / PROBE), and the migration
 * wrappers of client_migration.h: flags, device state, data stream,
 * MIG_DATA_SIZE, precopy_info negotiation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ferry/client_migration.h>

#include "client_fake.h"

static void test_feature_envelope(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	fake_init(&f);
	f.mig_flags = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY;
	assert_int_equal(fake_connect(&f, NULL, &c), 0);

	uint64_t flags = 0;
	size_t got = 0;
	assert_int_equal(ferry_client_feature(c, VFIO_DEVICE_FEATURE_MIGRATION |
						      VFIO_DEVICE_FEATURE_GET,
					      NULL, 0, NULL, 0, &flags, sizeof(flags), &got), 0);
	assert_int_equal(got, 8);
	assert_int_equal(flags, VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY);
	/* a buffer too small receives what fits, out_len says what came */
	uint8_t small[3];
	assert_int_equal(ferry_client_feature(c, VFIO_DEVICE_FEATURE_MIGRATION |
						      VFIO_DEVICE_FEATURE_GET,
					      NULL, 0, NULL, 0, small, sizeof(small), &got), 0);
	assert_int_equal(got, 8);

	assert_int_equal(ferry_client_feature_probe(c, VFIO_DEVICE_FEATURE_MIGRATION,
						    VFIO_DEVICE_FEATURE_GET), 0);
	assert_int_equal(ferry_client_feature_probe(c, VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
						    VFIO_DEVICE_FEATURE_SET), -ENOTTY);
	assert_int_equal(ferry_client_feature_probe(c, 0x10000, 0), -EINVAL);
	assert_int_equal(ferry_client_feature(c, 1u << 20, NULL, 0, NULL, 0, NULL, 0, NULL),
			 -EINVAL);
	ferry_client_close(c);
	fake_stop(&f);
}

static void test_migration_wrappers(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	fake_init(&f);
	f.mig_flags = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY;
	f.max_data_xfer_size = 4096;
	f.data_size = 123456;
	assert_int_equal(fake_connect(&f, NULL, &c), 0);

	uint64_t flags;
	enum ferry_mig_state st;
	assert_int_equal(ferry_client_mig_flags(c, &flags), 0);
	assert_int_equal(flags, VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY);
	assert_int_equal(ferry_client_mig_get_state(c, &st), 0);
	assert_int_equal(st, FERRY_MIG_RUNNING);
	assert_int_equal(ferry_client_mig_set_state(c, FERRY_MIG_STOP_COPY), 0);
	assert_int_equal(ferry_client_mig_get_state(c, &st), 0);
	assert_int_equal(st, FERRY_MIG_STOP_COPY);
	assert_int_equal(ferry_client_mig_set_state(c, FERRY_MIG_ERROR), -EINVAL);

	/* the stream comes in short reads; only 0 ends it */
	uint8_t buf[4000];
	size_t total = 0, got;
	int reads = 0;
	do {
		assert_int_equal(ferry_client_mig_read(c, buf + total, sizeof(buf) - total, &got), 0);
		total += got;
		reads++;
	} while (got && reads < 10);
	assert_int_equal(total, sizeof(f.mig_stream));
	assert_memory_equal(buf, f.mig_stream, total);
	assert_int_equal(reads, 4);

	uint8_t out[4096];
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i ^ 0x55);
	assert_int_equal(ferry_client_mig_write(c, out, sizeof(out)), 0);
	assert_int_equal(f.mig_in_len, sizeof(out));
	assert_memory_equal(f.mig_in, out, sizeof(out));

	uint64_t sz;
	assert_int_equal(ferry_client_mig_data_size(c, &sz), 0);
	assert_int_equal(sz, 123456);
	uint64_t ib, db;
	assert_int_equal(ferry_client_mig_precopy_info(c, &ib, &db), -EOPNOTSUPP);

	ferry_client_close(c);
	fake_stop(&f);
}

static void test_no_migration(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	fake_init(&f);
	assert_int_equal(fake_connect(&f, NULL, &c), 0);
	uint64_t flags, sz;
	enum ferry_mig_state st;
	assert_int_equal(ferry_client_mig_flags(c, &flags), -ENOTTY);
	assert_int_equal(ferry_client_mig_get_state(c, &st), -ENOTTY);
	assert_int_equal(ferry_client_mig_data_size(c, &sz), -ENOTTY);
	ferry_client_close(c);
	fake_stop(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_feature_envelope),
		cmocka_unit_test(test_migration_wrappers),
		cmocka_unit_test(test_no_migration),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
