/*
 * Function reset: DEVICE_RESET (PROTOCOL.md §3.3) and a function-level reset
 * written through the PCI Express capability, which do the same thing:
 *   1. interrupts off: triggers are dropped from here on;
 *   2. the model's reset callback (it stops its work, registers to power-on);
 *   3. config space, MSI-X table and PBA, masks and pending bits back to
 *      power-on; bus mastering off; triggers accepted again.
 *   4. migration: any data session ends and the state is RUNNING, from
 *      every state, ERROR included (the kernel's rule; mig_reset.c), or
 *      ERROR if the model's reset failed.
 * Always with the state lock held: on the message thread by dispatch, on
 * another thread by ferry_device_reset (mig_reset.c).
 * Client state stays: DMA mappings, interrupt eventfds and DMA logging
 * belong to the client's session, not to the function. So does a low-power
 * entry: a reset is an access that wakes the device (power.c), after which
 * a plain entry goes back to low power and a wakeup entry is over.
 */
#include "device/device_priv.h"
#include "util/log.h"

#include <errno.h>
#include <string.h>

int device_reset(struct ferry_device *dev, const char *why)
{
	int r = 0;

	power_wake_for(dev, why); /* the reset needs the device; low power stays engaged */
	irq_reset_begin(dev);
	if (dev->ops.reset && (r = dev->ops.reset(dev->info.opaque)) > 0)
		r = 0;
	if (r < 0)
		log_err("%s: model reset (%s) failed: %s", dev->name, why, strerror(-r));
	irq_reset_end(dev);
	mig_after_reset(dev, r);
	irq_notify(dev, FERRY_IRQ_MSI, 0, dev->irq[FERRY_IRQ_MSI].count);
	irq_notify(dev, FERRY_IRQ_MSIX, 0, dev->irq[FERRY_IRQ_MSIX].count);
	log_debug("%s: reset (%s)", dev->name, why);
	power_wake_done(dev);
	return r;
}

int handle_device_reset(struct ferry_device *dev, struct conn *c, struct wire_msg *m)
{
	int r;

	if (m->len) {
		log_err("%s: DEVICE_RESET carries %u payload bytes, expected none", dev->name, m->len);
		return -EINVAL;
	}
	if ((r = device_reset(dev, "DEVICE_RESET")) < 0)
		return r;
	conn_reply(c, m, NULL, 0, NULL, 0);
	return 0;
}
