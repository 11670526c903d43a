/*
 * ferry-dev-dma driver: PCI config space bring-up; see driver_pci.h.
 */
#include "driver_pci.h"

#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include <ferry/client.h>
#include <ferry/log.h>

#define CFG VFIO_PCI_CONFIG_REGION_INDEX

/* The MSI message the table entry gets: any value works over vfio-user (the
 * client's eventfd is what fires), these are what an x86 guest would use. */
#define MSI_ADDR_X86 0xfee00000u
#define MSI_DATA     0x4021u

/* Config space is little-endian: these convert. */
static int cfg_read16(struct ferry_client *c, unsigned off, uint16_t *val)
{
	int rc = ferry_client_region_read(c, CFG, off, val, sizeof(*val));

	*val = le16toh(*val);
	return rc;
}

static int cfg_read32(struct ferry_client *c, unsigned off, uint32_t *val)
{
	int rc = ferry_client_region_read(c, CFG, off, val, sizeof(*val));

	*val = le32toh(*val);
	return rc;
}

static int cfg_read8(struct ferry_client *c, unsigned off, uint8_t *val)
{
	return ferry_client_region_read(c, CFG, off, val, 1);
}

static int cfg_write16(struct ferry_client *c, unsigned off, uint16_t val)
{
	val = htole16(val);
	return ferry_client_region_write(c, CFG, off, &val, sizeof(val));
}

int dma_pci_enable_master(struct ferry_client *c, bool no_intx)
{
	uint16_t cmd;
	int rc = cfg_read16(c, PCI_COMMAND, &cmd);

	if (rc < 0)
		return rc;
	cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	if (no_intx)
		cmd |= PCI_COMMAND_INTX_DISABLE;
	return cfg_write16(c, PCI_COMMAND, cmd);
}

/* Offset of capability @id, 0 if absent, or a negative client error. The
 * walk is bounded: a looping list from a broken device cannot hang us. */
static int find_cap(struct ferry_client *c, uint8_t id)
{
	uint16_t status;
	uint8_t pos, cap_id;
	int rc = cfg_read16(c, PCI_STATUS, &status);

	if (rc < 0)
		return rc;
	if (!(status & PCI_STATUS_CAP_LIST))
		return 0;
	rc = cfg_read8(c, PCI_CAPABILITY_LIST, &pos);
	if (rc < 0)
		return rc;
	for (unsigned hops = 0; hops < 48 && pos >= PCI_STD_HEADER_SIZEOF; hops++) {
		pos &= ~3u;
		if ((rc = cfg_read8(c, pos + PCI_CAP_LIST_ID, &cap_id)) < 0)
			return rc;
		if (cap_id == id)
			return pos;
		if ((rc = cfg_read8(c, pos + PCI_CAP_LIST_NEXT, &pos)) < 0)
			return rc;
	}
	return 0;
}

int dma_pci_enable_msix(struct ferry_client *c, unsigned vector)
{
	uint32_t table, entry[4] = {MSI_ADDR_X86, 0, MSI_DATA, 0 /* unmasked */};
	uint16_t flags;
	uint64_t entry_off;
	int pos = find_cap(c, PCI_CAP_ID_MSIX), rc;

	if (pos < 0)
		return pos;
	if (!pos) {
		ferry_log(FERRY_LOG_ERR, "%s: no MSI-X capability", ferry_client_name(c));
		return -ENODEV;
	}
	rc = cfg_read16(c, (unsigned)pos + PCI_MSIX_FLAGS, &flags);
	if (rc < 0)
		return rc;
	if (vector > (flags & PCI_MSIX_FLAGS_QSIZE)) {
		ferry_log(FERRY_LOG_ERR, "%s: MSI-X vector %u beyond the table of %u",
			  ferry_client_name(c), vector, (flags & PCI_MSIX_FLAGS_QSIZE) + 1u);
		return -EINVAL;
	}
	rc = cfg_read32(c, (unsigned)pos + PCI_MSIX_TABLE, &table);
	if (rc < 0)
		return rc;

	/* Enable with everything masked, program the entry, then unmask. */
	flags |= PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL;
	rc = cfg_write16(c, (unsigned)pos + PCI_MSIX_FLAGS, flags);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < 4; i++)
		entry[i] = htole32(entry[i]);
	entry_off = (table & PCI_MSIX_TABLE_OFFSET) + (uint64_t)vector * PCI_MSIX_ENTRY_SIZE;
	rc = ferry_client_region_write(c, table & PCI_MSIX_TABLE_BIR, entry_off, entry,
				       sizeof(entry));
	if (rc < 0)
		return rc;
	flags &= ~PCI_MSIX_FLAGS_MASKALL;
	return cfg_write16(c, (unsigned)pos + PCI_MSIX_FLAGS, flags);
}
