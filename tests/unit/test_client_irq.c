/*
 * Interrupts: IRQ info, SET_IRQS split into runs of set / torn-down vectors
 * and into chunks of the server's max_msg_fds, disable and actions.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sys/eventfd.h>

#include "client_fake.h"

static const uint32_t EVENTFD_TRIGGER = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;

static void check_set(const struct fake_irq_set *s, uint32_t flags, uint32_t index,
		      uint32_t start, uint32_t count, unsigned nfds)
{
	assert_int_equal(s->flags, flags);
	assert_int_equal(s->index, index);
	assert_int_equal(s->start, start);
	assert_int_equal(s->count, count);
	assert_int_equal(s->nfds, nfds);
}

static void test_irq_info(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	struct ferry_irq_desc d;
	fake_init(&f);
	f.irqs[2].count = 2048;
	f.irqs[2].flags = VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE;
	assert_int_equal(fake_connect(&f, NULL, &c), 0);
	assert_int_equal(ferry_client_irq_info(c, 2, &d), 0);
	assert_int_equal(d.index, 2);
	assert_int_equal(d.count, 2048);
	assert_int_equal(d.flags, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE);
	assert_int_equal(ferry_client_irq_info(c, 7, &d), -EINVAL);
	ferry_client_close(c);
	fake_stop(&f);
}

static void test_irq_split(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	fake_init(&f);
	f.max_msg_fds = 3;
	assert_int_equal(fake_connect(&f, NULL, &c), 0);

	int e = eventfd(0, EFD_CLOEXEC);
	int fds[9] = {e, e, e, e, -1, -1, e, e, -1};
	assert_int_equal(ferry_client_set_irq_eventfds(c, 2, 10, 9, fds), 0);
	assert_int_equal(f.nirq_sets, 5);
	check_set(&f.irq_sets[0], EVENTFD_TRIGGER, 2, 10, 3, 3);
	check_set(&f.irq_sets[1], EVENTFD_TRIGGER, 2, 13, 1, 1);
	check_set(&f.irq_sets[2], EVENTFD_TRIGGER, 2, 14, 2, 0);
	check_set(&f.irq_sets[3], EVENTFD_TRIGGER, 2, 16, 2, 2);
	check_set(&f.irq_sets[4], EVENTFD_TRIGGER, 2, 18, 1, 0);

	/* a long run of teardowns is one message */
	int none[40];
	for (int i = 0; i < 40; i++)
		none[i] = -1;
	assert_int_equal(ferry_client_set_irq_eventfds(c, 2, 0, 40, none), 0);
	assert_int_equal(f.nirq_sets, 6);
	check_set(&f.irq_sets[5], EVENTFD_TRIGGER, 2, 0, 40, 0);

	assert_int_equal(ferry_client_set_irq_eventfds(c, 2, 0, 0, fds), -EINVAL);
	assert_int_equal(ferry_client_set_irq_eventfds(c, 2, UINT32_MAX, 2, fds), -EINVAL);
	assert_int_equal(f.nirq_sets, 6);
	ferry_client_close(c);
	fake_stop(&f);
	close(e);
}

static void test_irq_no_fds_server(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	fake_init(&f);
	f.max_msg_fds = 0;
	assert_int_equal(fake_connect(&f, NULL, &c), 0);
	int e = eventfd(0, EFD_CLOEXEC);
	int fds[2] = {-1, e};
	/* the teardown run goes out, the eventfd run cannot */
	assert_int_equal(ferry_client_set_irq_eventfds(c, 1, 0, 2, fds), -EINVAL);
	assert_int_equal(f.nirq_sets, 1);
	ferry_client_close(c);
	fake_stop(&f);
	close(e);
}

static void test_irq_disable_action(void **state)
{
	(void)state;
	struct fake_server f;
	struct ferry_client *c;
	fake_init(&f);
	assert_int_equal(fake_connect(&f, NULL, &c), 0);
	assert_int_equal(ferry_client_disable_irqs(c, 2), 0);
	assert_int_equal(ferry_client_irq_action(c, 0, 0, 1, VFIO_IRQ_SET_ACTION_UNMASK), 0);
	assert_int_equal(ferry_client_irq_action(c, 0, 0, 1, VFIO_IRQ_SET_ACTION_MASK |
							     VFIO_IRQ_SET_ACTION_UNMASK),
			 -EINVAL);
	assert_int_equal(f.nirq_sets, 2);
	check_set(&f.irq_sets[0], VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 2, 0, 0,
		  0);
	check_set(&f.irq_sets[1], VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1,
		  0);
	ferry_client_close(c);
	fake_stop(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_irq_info),
		cmocka_unit_test(test_irq_split),
		cmocka_unit_test(test_irq_no_fds_server),
		cmocka_unit_test(test_irq_disable_action),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
