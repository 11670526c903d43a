/* The log sink and level filter: what libferry's error lines go through. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "util/log.h"

static char last[256];
static int calls;

static void capture(enum ferry_log_level lvl, const char *line, void *opaque)
{
	(void)lvl;
	(void)opaque;
	strncpy(last, line, sizeof(last) - 1);
	calls++;
}

static void test_level_filters(void **state)
{
	(void)state;
	ferry_log_set_sink(capture, NULL);
	ferry_log_set_level(FERRY_LOG_WARN);
	calls = 0;
	log_info("dropped %d", 1);
	assert_int_equal(calls, 0);
	log_err("kept %d", 2);
	assert_int_equal(calls, 1);
	assert_string_equal(last, "kept 2");
	ferry_log_set_sink(NULL, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_level_filters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
