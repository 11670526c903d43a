/*
 * ferry-dev-dma driver: the PCI side of bringing a function up, done through
 * the client's config-space region as a guest kernel would: memory decode
 * and bus mastering in the command register, MSI-X found by walking the
 * capability list.
 */
#ifndef FERRY_DEV_DMA_DRIVER_PCI_H
#define FERRY_DEV_DMA_DRIVER_PCI_H

#include <stdbool.h>

struct ferry_client;

/* Sets memory decode and bus mastering (and INTx disable when @no_intx).
 * Returns 0 or a client error. */
int dma_pci_enable_master(struct ferry_client *c, bool no_intx);

/* Enables MSI-X and unmasks vector @vector in the table (wherever the
 * capability says it is). -ENODEV without an MSI-X capability, -EINVAL if
 * @vector is beyond the table, or a client error. */
int dma_pci_enable_msix(struct ferry_client *c, unsigned vector);

#endif /* FERRY_DEV_DMA_DRIVER_PCI_H */
