/*
 * Device side, interrupts: GET_IRQ_INFO, SET_IRQS validation and actions,
 * ferry_irq_trigger through eventfds with the guest's masks (MSI-X function
 * and vector masks, PBA, INTx disable, MSI), library masks, de-assignment,
 * triggers from several threads, eventfds closed on disconnect.
 */
#include "device_harness.h"

static int set_irqs(struct harness *h, uint32_t flags, uint32_t index, uint32_t start,
		    uint32_t count, const int *fds, unsigned nfds, const uint8_t *bools)
{
	uint8_t msg[sizeof(struct vfio_user_irq_set) + 64];
	struct vfio_user_irq_set s = {.argsz = sizeof(s), .flags = flags, .index = index,
				      .start = start, .count = count};
	size_t len = sizeof(s);
	if (bools) {
		s.argsz += count;
		memcpy(msg + sizeof(s), bools, count);
		len += count;
	}
	memcpy(msg, &s, sizeof(s));
	return h_call_fds(h, VFIO_USER_DEVICE_SET_IRQS, msg, len, fds, nfds, NULL);
}

#define EFD_TRIGGER (VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER)

static void test_irq_info(void **state)
{
	(void)state;
	struct harness *h = h_start(false);
	static const unsigned counts[] = {1, 4, H_MSIX_VECTORS, 1, 1};

	for (uint32_t i = 0; i < 5; i++) {
		struct vfio_user_irq_info in = {.argsz = 16, .index = i}, out;
		struct wire_msg r;
		assert_int_equal(h_call(h, VFIO_USER_DEVICE_GET_IRQ_INFO, &in, sizeof(in), &r), 0);
		memcpy(&out, r.payload, sizeof(out));
		wire_msg_release(&r);
		assert_int_equal(out.index, i);
		assert_int_equal(out.count, counts[i]);
		assert_true(out.flags & VFIO_IRQ_INFO_EVENTFD);
		assert_int_equal(!!(out.flags & VFIO_IRQ_INFO_MASKABLE), i < 3);
	}
	struct vfio_user_irq_info bad = {.argsz = 16, .index = 5};
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_GET_IRQ_INFO, &bad, sizeof(bad), NULL), -EINVAL);
	h_stop(h);
}

static void test_set_irqs_validation(void **state)
{
	(void)state;
	struct harness *h = h_start(false);
	int efd[2] = {eventfd(0, EFD_CLOEXEC), eventfd(0, EFD_CLOEXEC)};
	uint8_t b[2] = {1, 1};

	/* two data types / two actions / unknown bits */
	assert_int_equal(set_irqs(h, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL |
				       VFIO_IRQ_SET_ACTION_TRIGGER, 2, 0, 1, NULL, 0, NULL), -EINVAL);
	assert_int_equal(set_irqs(h, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK |
				       VFIO_IRQ_SET_ACTION_UNMASK, 2, 0, 1, NULL, 0, NULL), -EINVAL);
	assert_int_equal(set_irqs(h, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER | 0x100,
				  2, 0, 1, NULL, 0, NULL), -EINVAL);
	/* index / range */
	assert_int_equal(set_irqs(h, EFD_TRIGGER, 5, 0, 1, efd, 1, NULL), -EINVAL);
	assert_int_equal(set_irqs(h, EFD_TRIGGER, 2, 8, 1, efd, 1, NULL), -EINVAL);
	assert_int_equal(set_irqs(h, EFD_TRIGGER, 2, 7, 2, efd, 2, NULL), -EINVAL);
	assert_int_equal(set_irqs(h, EFD_TRIGGER, 2, UINT32_MAX, 2, efd, 2, NULL), -EINVAL);
	/* count 0 only as DATA_NONE|TRIGGER at start 0 */
	assert_int_equal(set_irqs(h, EFD_TRIGGER, 2, 0, 0, NULL, 0, NULL), -EINVAL);
	assert_int_equal(set_irqs(h, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 2, 1, 0,
				  NULL, 0, NULL), -EINVAL);
	/* ERR/REQ only trigger */
	assert_int_equal(set_irqs(h, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, 3, 0, 1,
				  NULL, 0, NULL), -EINVAL);
	/* fd count neither count nor 0; fds with DATA_NONE; mask with eventfds */
	assert_int_equal(set_irqs(h, EFD_TRIGGER, 2, 0, 2, efd, 1, NULL), -EINVAL);
	assert_int_equal(set_irqs(h, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 2, 0, 1,
				  efd, 1, NULL), -EINVAL);
	assert_int_equal(set_irqs(h, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_MASK, 2, 0, 1,
				  efd, 1, NULL), -EINVAL);
	/* BOOL payload length must be count */
	assert_int_equal(set_irqs(h, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_MASK, 2, 0, 2,
				  NULL, 0, b), 0);
	uint8_t msg[21];
	struct vfio_user_irq_set s = {.argsz = 21, .index = 2, .count = 2,
				      .flags = VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_MASK};
	memcpy(msg, &s, sizeof(s));
	msg[20] = 1;
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_SET_IRQS, msg, 21, NULL), -EINVAL);
	/* a non-eventfd fd is refused */
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(set_irqs(h, EFD_TRIGGER, 2, 0, 1, pfd, 1, NULL), -EINVAL);
	close(pfd[0]);
	close(pfd[1]);
	close(efd[0]);
	close(efd[1]);
	h_stop(h);
}

/* Turns MSI-X on in config space and unmasks vector @v in the table. */
static void msix_enable(struct harness *h, bool fmask)
{
	unsigned cap = h_find_cap(h, PCI_CAP_ID_MSIX);
	h_cfg_write(h, cap + PCI_MSIX_FLAGS, 2,
		    PCI_MSIX_FLAGS_ENABLE | (fmask ? PCI_MSIX_FLAGS_MASKALL : 0));
}

static void msix_vector_mask(struct harness *h, unsigned v, bool masked)
{
	uint32_t ctrl = masked ? PCI_MSIX_ENTRY_CTRL_MASKBIT : 0;
	assert_int_equal(h_region_write(h, 4, H_MSIX_TABLE + v * 16 + 12, &ctrl, 4), 0);
}

static uint8_t pba_byte(struct harness *h)
{
	uint8_t b = 0;
	assert_int_equal(h_region_read(h, 4, H_MSIX_PBA, &b, 1), 0);
	return b;
}

static void test_msix_trigger(void **state)
{
	(void)state;
	struct harness *h = h_start(false);
	int efd[2] = {eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
	int changes = atomic_load(&h->irq_changes);

	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_MSIX, 0), -EAGAIN); /* MSI-X off */
	assert_int_equal(set_irqs(h, EFD_TRIGGER, FERRY_IRQ_MSIX, 0, 2, efd, 2, NULL), 0);
	assert_true(atomic_load(&h->irq_changes) > changes);
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_MSIX, 0), -EAGAIN); /* still off */
	assert_false(h_efd_fired(efd[0], 0));

	msix_enable(h, false);
	/* vector 0 still masked in the table: pending, PBA bit */
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_MSIX, 0), -EAGAIN);
	assert_int_equal(pba_byte(h), 0x1);
	assert_false(h_efd_fired(efd[0], 0));
	/* unmasking delivers the pending vector and clears the PBA bit */
	msix_vector_mask(h, 0, false);
	assert_true(h_efd_fired(efd[0], 1000));
	assert_int_equal(pba_byte(h), 0);
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_MSIX, 0), 0);
	assert_true(h_efd_fired(efd[0], 1000));
	/* function mask holds everything back */
	msix_enable(h, true);
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_MSIX, 0), -EAGAIN);
	msix_enable(h, false);
	assert_true(h_efd_fired(efd[0], 1000));
	/* library mask (SET_IRQS MASK) */
	assert_int_equal(set_irqs(h, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK,
				  FERRY_IRQ_MSIX, 0, 1, NULL, 0, NULL), 0);
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_MSIX, 0), -EAGAIN);
	assert_false(h_efd_fired(efd[0], 0));
	assert_int_equal(set_irqs(h, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
				  FERRY_IRQ_MSIX, 0, 1, NULL, 0, NULL), 0);
	assert_true(h_efd_fired(efd[0], 1000));
	/* loopback: DATA_BOOL trigger of vector 1 only (unmasked first) */
	msix_vector_mask(h, 1, false);
	uint8_t b[2] = {0, 1};
	assert_int_equal(set_irqs(h, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER,
				  FERRY_IRQ_MSIX, 0, 2, NULL, 0, b), 0);
	assert_true(h_efd_fired(efd[1], 1000));
	assert_false(h_efd_fired(efd[0], 0));
	/* de-assign vector 1 with no fds */
	assert_int_equal(set_irqs(h, EFD_TRIGGER, FERRY_IRQ_MSIX, 1, 1, NULL, 0, NULL), 0);
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_MSIX, 1), -ENOENT);
	/* disable the whole index */
	assert_int_equal(set_irqs(h, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
				  FERRY_IRQ_MSIX, 0, 0, NULL, 0, NULL), 0);
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_MSIX, 0), -ENOENT);
	/* bad vectors */
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_MSIX, H_MSIX_VECTORS), -EINVAL);
	assert_int_equal(ferry_irq_trigger(h->dev, 7, 0), -EINVAL);
	close(efd[0]);
	close(efd[1]);
	h_stop(h);
}

static void test_intx_msi_err(void **state)
{
	(void)state;
	struct harness *h = h_start(false);
	int e_intx = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int e_msi = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int e_err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	assert_int_equal(set_irqs(h, EFD_TRIGGER, FERRY_IRQ_INTX, 0, 1, &e_intx, 1, NULL), 0);
	assert_int_equal(set_irqs(h, EFD_TRIGGER, FERRY_IRQ_MSI, 0, 1, &e_msi, 1, NULL), 0);
	assert_int_equal(set_irqs(h, EFD_TRIGGER, FERRY_IRQ_ERR, 0, 1, &e_err, 1, NULL), 0);

	/* INTx: delivered, held by INTx-Disable, released when it clears */
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_INTX, 0), 0);
	assert_true(h_efd_fired(e_intx, 1000));
	h_cfg_write(h, PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_INTX, 0), -EAGAIN);
	assert_false(h_efd_fired(e_intx, 0));
	h_cfg_write(h, PCI_COMMAND, 2, 0);
	assert_true(h_efd_fired(e_intx, 1000));

	/* MSI: off until enabled; per-vector mask makes it pending */
	unsigned msi = h_find_cap(h, PCI_CAP_ID_MSI);
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_MSI, 0), -EAGAIN);
	h_cfg_write(h, msi + PCI_MSI_MASK_64, 4, 1);
	h_cfg_write(h, msi + PCI_MSI_FLAGS, 2, PCI_MSI_FLAGS_ENABLE);
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_MSI, 0), -EAGAIN);
	assert_int_equal(h_cfg_read(h, msi + PCI_MSI_PENDING_64, 4), 1);
	/* INTx is off while MSI is on */
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_INTX, 0), -EAGAIN);
	h_cfg_write(h, msi + PCI_MSI_MASK_64, 4, 0);
	assert_true(h_efd_fired(e_msi, 1000));
	assert_int_equal(h_cfg_read(h, msi + PCI_MSI_PENDING_64, 4), 0);
	/* vector 1 is not allotted (MME = 0) */
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_MSI, 1), -EAGAIN);

	/* ERR: never masked */
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_ERR, 0), 0);
	assert_true(h_efd_fired(e_err, 1000));
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_REQ, 0), -ENOENT);

	/* reset: MSI off again, eventfds stay */
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_RESET, NULL, 0, NULL), 0);
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_MSI, 0), -EAGAIN);
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_ERR, 0), 0);
	assert_true(h_efd_fired(e_err, 1000));

	/* disconnect closes the device's copies: triggers find no eventfd */
	h_disconnect(h);
	for (int i = 0; i < 200 && atomic_load(&h->detached) == 0; i++)
		usleep(5000);
	assert_int_equal(atomic_load(&h->detached), 1);
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_ERR, 0), -ENOENT);
	close(e_intx);
	close(e_msi);
	close(e_err);
	h_stop(h);
}

struct trig_arg {
	struct ferry_device *dev;
	atomic_int delivered;
};

static void *trigger_loop(void *p)
{
	struct trig_arg *a = p;
	for (int i = 0; i < 2000; i++)
		if (ferry_irq_trigger(a->dev, FERRY_IRQ_MSIX, (unsigned)i % 2) == 0)
			atomic_fetch_add(&a->delivered, 1);
	return NULL;
}

/* Triggers from worker threads race with SET_IRQS and table writes. */
static void test_trigger_threads(void **state)
{
	(void)state;
	struct harness *h = h_start(false);
	int efd[2] = {eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
	struct trig_arg a = {.dev = h->dev};
	pthread_t t[4];

	msix_enable(h, false);
	msix_vector_mask(h, 0, false);
	msix_vector_mask(h, 1, false);
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, trigger_loop, &a);
	for (int i = 0; i < 50; i++) {
		assert_int_equal(set_irqs(h, EFD_TRIGGER, FERRY_IRQ_MSIX, 0, 2, efd, 2, NULL), 0);
		msix_vector_mask(h, i % 2, i % 3 == 0);
		assert_int_equal(set_irqs(h, EFD_TRIGGER, FERRY_IRQ_MSIX, 0, 2, NULL, 0, NULL), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	close(efd[0]);
	close(efd[1]);
	h_stop(h);
}

/* A client eventfd in blocking mode with its counter full must not hang
 * the trigger (which holds the interrupt lock). */
static void test_saturated_eventfd(void **state)
{
	(void)state;
	struct harness *h = h_start(false);
	int efd = eventfd(0, EFD_CLOEXEC); /* blocking */
	uint64_t max = 0xfffffffffffffffeull;

	assert_int_equal(write(efd, &max, sizeof(max)), sizeof(max));
	assert_int_equal(set_irqs(h, EFD_TRIGGER, FERRY_IRQ_ERR, 0, 1, &efd, 1, NULL), 0);
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_ERR, 0), 0);
	assert_true(h_efd_fired(efd, 1000));
	assert_int_equal(ferry_irq_trigger(h->dev, FERRY_IRQ_ERR, 0), 0);
	assert_true(h_efd_fired(efd, 1000));
	close(efd);
	h_stop(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_irq_info),
		cmocka_unit_test(test_set_irqs_validation),
		cmocka_unit_test(test_msix_trigger),
		cmocka_unit_test(test_intx_msi_err),
		cmocka_unit_test(test_trigger_threads),
		cmocka_unit_test(test_saturated_eventfd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
