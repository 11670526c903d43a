/*
 * MSI-X table and PBA storage (PCI 3.0 §6.8.2). The library serves the
 * client's accesses to both ranges of the MSI-X BAR, so the guest's vector
 * masks live here and ferry_irq_trigger can honour them.
 *
 * Both are kept as little-endian byte arrays, exactly as the guest sees
 * them, so any access size and alignment inside a range is a memcpy.
 * Entry layout: address low/high, data, vector control (bit 0 = masked).
 * The PBA is read-only to the guest: its bits are set by triggers on masked
 * vectors and cleared when they are delivered.
 *
 * Callers hold the device's irq_lock; offsets are checked by them.
 */
#include "device/device_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/pci_regs.h>

struct msix {
	unsigned n;
	uint8_t *table; /* n * PCI_MSIX_ENTRY_SIZE */
	uint8_t *pba;   /* (n + 63) / 64 * 8: whole qwords, as guests read them */
};

uint64_t msix_table_size(const struct msix *x)
{
	return (uint64_t)x->n * PCI_MSIX_ENTRY_SIZE;
}

uint64_t msix_pba_size(const struct msix *x)
{
	return (uint64_t)(x->n + 63) / 64 * 8;
}

int msix_create(unsigned vectors, struct msix **out)
{
	struct msix *x = calloc(1, sizeof(*x));

	if (!x)
		return -ENOMEM;
	x->n = vectors;
	x->table = calloc(vectors ? vectors : 1, PCI_MSIX_ENTRY_SIZE);
	x->pba = calloc(msix_pba_size(x) ? msix_pba_size(x) : 1, 1);
	if (!x->table || !x->pba) {
		msix_destroy(x);
		return -ENOMEM;
	}
	msix_reset(x);
	*out = x;
	return 0;
}

void msix_destroy(struct msix *x)
{
	if (!x)
		return;
	free(x->table);
	free(x->pba);
	free(x);
}

/* Power-on: every vector masked, nothing pending (PCI 3.0 §6.8.2.9). */
void msix_reset(struct msix *x)
{
	memset(x->table, 0, msix_table_size(x));
	for (unsigned v = 0; v < x->n; v++)
		x->table[v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL] =
			PCI_MSIX_ENTRY_CTRL_MASKBIT;
	memset(x->pba, 0, msix_pba_size(x));
}

bool msix_vector_masked(const struct msix *x, unsigned v)
{
	if (v >= x->n)
		return true;
	return x->table[v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL] &
	       PCI_MSIX_ENTRY_CTRL_MASKBIT;
}

void msix_set_pending(struct msix *x, unsigned v, bool pending)
{
	if (v >= x->n)
		return;
	if (pending)
		x->pba[v / 8] |= (uint8_t)(1u << (v % 8));
	else
		x->pba[v / 8] &= (uint8_t)~(1u << (v % 8));
}

void msix_table_read(const struct msix *x, uint64_t off, void *buf, uint32_t len)
{
	memcpy(buf, x->table + off, len);
}

void msix_table_write(struct msix *x, uint64_t off, const void *buf, uint32_t len)
{
	memcpy(x->table + off, buf, len);
}

void msix_pba_read(const struct msix *x, uint64_t off, void *buf, uint32_t len)
{
	memcpy(buf, x->pba + off, len);
}
