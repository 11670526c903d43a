/*
 * Config space accesses from the client and what they set off.
 *
 * pci_config does the emulation and reports, per write, what changed. This
 * file turns those events into device behaviour:
 *   COMMAND  bus mastering (ferry_device_bus_master) and INTx disable;
 *   MSI      enable / vector count / per-vector masks: pending MSIs go out;
 *   MSI-X    enable / function mask: pending MSI-X vectors go out;
 *   FLR      a function-level reset, the same as DEVICE_RESET;
 *   POWER    the guest's PMCSR writes are emulation only, except that a
 *            device in low power keeps reading D3hot (power.c);
 *   BAR      nothing beyond the emulation yet.
 * The config space is read by ferry_irq_trigger on other threads, so every
 * access runs under irq_lock; the model's callbacks run after it is dropped.
 */
#include "device/device_priv.h"
#include "util/log.h"

#include <errno.h>

int config_access(struct ferry_device *dev, uint64_t off, void *buf, uint32_t count,
		  bool is_write)
{
	uint32_t ev = 0;
	int r;

	pthread_mutex_lock(&dev->irq_lock);
	if (!is_write) {
		r = pci_config_read(dev->cfg, off, buf, count);
		pthread_mutex_unlock(&dev->irq_lock);
		return r;
	}
	r = pci_config_write(dev->cfg, off, buf, count, &ev);
	if (ev & PCI_CFG_EV_POWER)
		power_pmcsr_written_locked(dev);
	if (ev & PCI_CFG_EV_COMMAND) {
		atomic_store_explicit(&dev->bus_master, pci_config_bus_master(dev->cfg),
				      memory_order_release);
		irq_deliver_pending_locked(dev, FERRY_IRQ_INTX);
	}
	if (ev & PCI_CFG_EV_MSI) {
		irq_deliver_pending_locked(dev, FERRY_IRQ_MSI);
		irq_deliver_pending_locked(dev, FERRY_IRQ_INTX); /* MSI off: INTx may fire */
	}
	if (ev & PCI_CFG_EV_MSIX) {
		irq_deliver_pending_locked(dev, FERRY_IRQ_MSIX);
		irq_deliver_pending_locked(dev, FERRY_IRQ_INTX);
	}
	pthread_mutex_unlock(&dev->irq_lock);

	if (ev & PCI_CFG_EV_MSI)
		irq_notify(dev, FERRY_IRQ_MSI, 0, dev->irq[FERRY_IRQ_MSI].count);
	if (ev & PCI_CFG_EV_MSIX)
		irq_notify(dev, FERRY_IRQ_MSIX, 0, dev->irq[FERRY_IRQ_MSIX].count);
	if (ev & PCI_CFG_EV_FLR) {
		log_info("%s: function-level reset through config space", dev->name);
		r = device_reset(dev, "FLR");
	}
	return r;
}
