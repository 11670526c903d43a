/* Config-space decoding for ferry info (see pci_decode.h). */
#include "pci_decode.h"

#include <errno.h>
#include <linux/pci_regs.h>
#include <stdio.h>
#include <string.h>

static uint16_t rd16(const uint8_t *cfg, size_t off)
{
	return (uint16_t)(cfg[off] | cfg[off + 1] << 8);
}

static uint32_t rd32(const uint8_t *cfg, size_t off)
{
	return (uint32_t)rd16(cfg, off) | (uint32_t)rd16(cfg, off + 2) << 16;
}

static void decode_identity(const uint8_t *cfg, struct pci_identity *id)
{
	id->vendor = rd16(cfg, PCI_VENDOR_ID);
	id->device = rd16(cfg, PCI_DEVICE_ID);
	id->command = rd16(cfg, PCI_COMMAND);
	id->status = rd16(cfg, PCI_STATUS);
	id->revision = cfg[PCI_REVISION_ID];
	id->class_code = rd32(cfg, PCI_CLASS_REVISION) >> 8;
	id->header_type = cfg[PCI_HEADER_TYPE];
	id->subsys_vendor = rd16(cfg, PCI_SUBSYSTEM_VENDOR_ID);
	id->subsys = rd16(cfg, PCI_SUBSYSTEM_ID);
}

static void decode_bars(const uint8_t *cfg, struct pci_bar bars[7])
{
	memset(bars, 0, sizeof(*bars) * 7);
	for (int i = 0; i < 6; i++) {
		if (bars[i].is_upper)
			continue;
		uint32_t v = rd32(cfg, PCI_BASE_ADDRESS_0 + 4 * (size_t)i);
		struct pci_bar *b = &bars[i];
		if (v & PCI_BASE_ADDRESS_SPACE_IO) {
			b->is_io = true;
			b->addr = v & PCI_BASE_ADDRESS_IO_MASK;
			continue;
		}
		b->prefetch = v & PCI_BASE_ADDRESS_MEM_PREFETCH;
		b->addr = v & PCI_BASE_ADDRESS_MEM_MASK;
		if ((v & PCI_BASE_ADDRESS_MEM_TYPE_MASK) == PCI_BASE_ADDRESS_MEM_TYPE_64 && i < 5) {
			b->is_64 = true;
			b->addr |= (uint64_t)rd32(cfg, PCI_BASE_ADDRESS_0 + 4 * (size_t)(i + 1)) << 32;
			bars[i + 1].is_upper = true;
		}
	}
	uint32_t rom = rd32(cfg, PCI_ROM_ADDRESS);
	bars[6].rom_enabled = rom & PCI_ROM_ADDRESS_ENABLE;
	bars[6].addr = rom & PCI_ROM_ADDRESS_MASK;
}

/* Fills the capability-specific fields of @c; the header is in range. */
static void decode_cap(const uint8_t *cfg, size_t len, struct pci_cap *c)
{
	size_t o = c->off;
	switch (c->id) {
	case PCI_CAP_ID_PM: {
		if (o + PCI_PM_CTRL + 2 > len)
			goto truncated;
		uint16_t pmc = rd16(cfg, o + PCI_PM_PMC);
		c->pm.version = pmc & PCI_PM_CAP_VER_MASK;
		c->pm.d1 = pmc & PCI_PM_CAP_D1;
		c->pm.d2 = pmc & PCI_PM_CAP_D2;
		c->pm.pme_support = (uint8_t)((pmc & PCI_PM_CAP_PME_MASK) >> PCI_PM_CAP_PME_SHIFT);
		c->pm.power_state = rd16(cfg, o + PCI_PM_CTRL) & PCI_PM_CTRL_STATE_MASK;
		return;
	}
	case PCI_CAP_ID_MSI: {
		if (o + PCI_MSI_FLAGS + 2 > len)
			goto truncated;
		uint16_t f = rd16(cfg, o + PCI_MSI_FLAGS);
		c->msi.vectors = 1u << ((f & PCI_MSI_FLAGS_QMASK) >> 1);
		c->msi.enabled_vectors = 1u << ((f & PCI_MSI_FLAGS_QSIZE) >> 4);
		c->msi.is_64 = f & PCI_MSI_FLAGS_64BIT;
		c->msi.maskable = f & PCI_MSI_FLAGS_MASKBIT;
		c->msi.enabled = f & PCI_MSI_FLAGS_ENABLE;
		return;
	}
	case PCI_CAP_ID_MSIX: {
		if (o + PCI_MSIX_PBA + 4 > len)
			goto truncated;
		uint16_t f = rd16(cfg, o + PCI_MSIX_FLAGS);
		uint32_t t = rd32(cfg, o + PCI_MSIX_TABLE), p = rd32(cfg, o + PCI_MSIX_PBA);
		c->msix.table_size = (f & PCI_MSIX_FLAGS_QSIZE) + 1u;
		c->msix.enabled = f & PCI_MSIX_FLAGS_ENABLE;
		c->msix.masked = f & PCI_MSIX_FLAGS_MASKALL;
		c->msix.table_bir = t & PCI_MSIX_TABLE_BIR;
		c->msix.table_off = t & PCI_MSIX_TABLE_OFFSET;
		c->msix.pba_bir = p & PCI_MSIX_PBA_BIR;
		c->msix.pba_off = p & PCI_MSIX_PBA_OFFSET;
		return;
	}
	case PCI_CAP_ID_EXP: {
		if (o + PCI_EXP_DEVCAP + 4 > len)
			goto truncated;
		uint16_t f = rd16(cfg, o + PCI_EXP_FLAGS);
		c->exp.version = f & PCI_EXP_FLAGS_VERS;
		c->exp.type = (uint8_t)((f & PCI_EXP_FLAGS_TYPE) >> 4);
		c->exp.flr = rd32(cfg, o + PCI_EXP_DEVCAP) & PCI_EXP_DEVCAP_FLR;
		return;
	}
	default:
		return;
	}
truncated:
	c->truncated = true;
}

/* The standard list lives in the first 256 bytes, after the header; each
 * entry is dword-aligned, so a visited bitmap of 64 dwords finds loops. */
static void walk_caps(const uint8_t *cfg, size_t len, struct pci_decoded *d)
{
	uint64_t visited = 0;
	size_t limit = len < PCI_CFG_SPACE_SIZE ? len : PCI_CFG_SPACE_SIZE;

	if (!(d->id.status & PCI_STATUS_CAP_LIST))
		return;
	uint8_t ptr = cfg[PCI_CAPABILITY_LIST] & ~3u;
	while (ptr) {
		if (ptr < PCI_STD_HEADER_SIZEOF || (size_t)ptr + 2 > limit) {
			snprintf(d->cap_problem, sizeof(d->cap_problem),
				 "pointer 0x%02x is outside [0x40, 0x%zx)", ptr, limit);
			return;
		}
		uint64_t bit = 1ull << (ptr / 4);
		if (visited & bit) {
			snprintf(d->cap_problem, sizeof(d->cap_problem),
				 "list loops back to 0x%02x", ptr);
			return;
		}
		visited |= bit;
		if (d->ncaps == PCI_DECODE_MAX_CAPS) {
			snprintf(d->cap_problem, sizeof(d->cap_problem), "more than %d capabilities",
				 PCI_DECODE_MAX_CAPS);
			return;
		}
		struct pci_cap *c = &d->caps[d->ncaps++];
		memset(c, 0, sizeof(*c));
		c->off = ptr;
		c->id = cfg[ptr + PCI_CAP_LIST_ID];
		decode_cap(cfg, limit, c);
		ptr = cfg[ptr + PCI_CAP_LIST_NEXT] & ~3u;
	}
}

static void walk_ext_caps(const uint8_t *cfg, size_t len, struct pci_decoded *d)
{
	uint64_t visited[PCI_CFG_SPACE_EXP_SIZE / 4 / 64] = {0};

	d->has_ext_space = len >= PCI_CFG_SPACE_EXP_SIZE;
	if (!d->has_ext_space)
		return;
	size_t off = PCI_CFG_SPACE_SIZE;
	uint32_t h = rd32(cfg, off);
	if (h == 0 || h == 0xffffffffu)
		return;
	for (;;) {
		unsigned slot = (unsigned)(off / 4);
		if (visited[slot / 64] & (1ull << (slot % 64))) {
			snprintf(d->ext_problem, sizeof(d->ext_problem),
				 "list loops back to 0x%03zx", off);
			return;
		}
		visited[slot / 64] |= 1ull << (slot % 64);
		if (d->next == PCI_DECODE_MAX_EXT_CAPS) {
			snprintf(d->ext_problem, sizeof(d->ext_problem),
				 "more than %d extended capabilities", PCI_DECODE_MAX_EXT_CAPS);
			return;
		}
		h = rd32(cfg, off);
		d->ext[d->next++] = (struct pci_ext_cap){
			.off = (uint16_t)off,
			.id = (uint16_t)PCI_EXT_CAP_ID(h),
			.version = (uint8_t)PCI_EXT_CAP_VER(h),
		};
		size_t next = PCI_EXT_CAP_NEXT(h);
		if (!next)
			return;
		if (next < PCI_CFG_SPACE_SIZE || next + 4 > PCI_CFG_SPACE_EXP_SIZE) {
			snprintf(d->ext_problem, sizeof(d->ext_problem),
				 "pointer 0x%03zx is outside [0x100, 0x1000)", next);
			return;
		}
		off = next;
	}
}

int pci_decode(const uint8_t *cfg, size_t len, struct pci_decoded *out)
{
	memset(out, 0, sizeof(*out));
	if (len < PCI_STD_HEADER_SIZEOF)
		return -EINVAL;
	decode_identity(cfg, &out->id);
	decode_bars(cfg, out->bars);
	walk_caps(cfg, len, out);
	walk_ext_caps(cfg, len, out);
	return 0;
}

const char *pci_cap_name(uint8_t id)
{
	/* Indexed by PCI_CAP_ID_*. */
	static const char *const names[] = {
		[PCI_CAP_ID_PM] = "Power Management",
		[PCI_CAP_ID_AGP] = "AGP",
		[PCI_CAP_ID_VPD] = "Vital Product Data",
		[PCI_CAP_ID_SLOTID] = "Slot Identification",
		[PCI_CAP_ID_MSI] = "MSI",
		[PCI_CAP_ID_CHSWP] = "CompactPCI Hot Swap",
		[PCI_CAP_ID_PCIX] = "PCI-X",
		[PCI_CAP_ID_HT] = "HyperTransport",
		[PCI_CAP_ID_VNDR] = "Vendor Specific",
		[PCI_CAP_ID_DBG] = "Debug Port",
		[PCI_CAP_ID_CCRC] = "CompactPCI Central Resource Control",
		[PCI_CAP_ID_SHPC] = "PCI Hot-Plug Controller",
		[PCI_CAP_ID_SSVID] = "Subsystem ID",
		[PCI_CAP_ID_AGP3] = "AGP 3.0",
		[PCI_CAP_ID_SECDEV] = "Secure Device",
		[PCI_CAP_ID_EXP] = "PCI Express",
		[PCI_CAP_ID_MSIX] = "MSI-X",
		[PCI_CAP_ID_SATA] = "SATA",
		[PCI_CAP_ID_AF] = "Advanced Features",
		[PCI_CAP_ID_EA] = "Enhanced Allocation",
	};
	return id < sizeof(names) / sizeof(names[0]) && names[id] ? names[id] : NULL;
}

const char *pci_ext_cap_name(uint16_t id)
{
	/* Indexed by PCI_EXT_CAP_ID_*; the common ones only. */
	static const char *const names[] = {
		[PCI_EXT_CAP_ID_ERR] = "Advanced Error Reporting",
		[PCI_EXT_CAP_ID_VC] = "Virtual Channel",
		[PCI_EXT_CAP_ID_DSN] = "Device Serial Number",
		[PCI_EXT_CAP_ID_PWR] = "Power Budgeting",
		[PCI_EXT_CAP_ID_VNDR] = "Vendor Specific",
		[PCI_EXT_CAP_ID_ACS] = "Access Control Services",
		[PCI_EXT_CAP_ID_ARI] = "Alternative Routing-ID",
		[PCI_EXT_CAP_ID_ATS] = "Address Translation Services",
		[PCI_EXT_CAP_ID_SRIOV] = "SR-IOV",
		[PCI_EXT_CAP_ID_PRI] = "Page Request Interface",
		[PCI_EXT_CAP_ID_REBAR] = "Resizable BAR",
		[PCI_EXT_CAP_ID_TPH] = "TPH Requester",
		[PCI_EXT_CAP_ID_LTR] = "Latency Tolerance Reporting",
		[PCI_EXT_CAP_ID_SECPCI] = "Secondary PCI Express",
		[PCI_EXT_CAP_ID_PASID] = "PASID",
		[PCI_EXT_CAP_ID_DPC] = "Downstream Port Containment",
		[PCI_EXT_CAP_ID_L1SS] = "L1 PM Substates",
		[PCI_EXT_CAP_ID_PTM] = "Precision Time Measurement",
		[PCI_EXT_CAP_ID_DVSEC] = "Designated Vendor-Specific",
	};
	return id < sizeof(names) / sizeof(names[0]) && names[id] ? names[id] : NULL;
}

const char *pci_class_name(uint32_t class_code)
{
	/* Indexed by the base class (bits 23:16). */
	static const char *const names[] = {
		[0x00] = "Unclassified device",
		[0x01] = "Mass storage controller",
		[0x02] = "Network controller",
		[0x03] = "Display controller",
		[0x04] = "Multimedia controller",
		[0x05] = "Memory controller",
		[0x06] = "Bridge",
		[0x07] = "Communication controller",
		[0x08] = "Generic system peripheral",
		[0x09] = "Input device controller",
		[0x0a] = "Docking station",
		[0x0b] = "Processor",
		[0x0c] = "Serial bus controller",
		[0x0d] = "Wireless controller",
		[0x0e] = "Intelligent controller",
		[0x0f] = "Satellite communications controller",
		[0x10] = "Encryption controller",
		[0x11] = "Signal processing controller",
		[0x12] = "Processing accelerators",
		[0x13] = "Non-Essential Instrumentation",
	};
	unsigned base = (class_code >> 16) & 0xff;
	if (base == 0xff)
		return "Unassigned class";
	return base < sizeof(names) / sizeof(names[0]) && names[base] ? names[base]
								       : "Unknown class";
}

const char *pcie_type_name(uint8_t type)
{
	/* Indexed by PCI_EXP_TYPE_*. */
	static const char *const names[] = {
		[PCI_EXP_TYPE_ENDPOINT] = "Endpoint",
		[PCI_EXP_TYPE_LEG_END] = "Legacy Endpoint",
		[PCI_EXP_TYPE_ROOT_PORT] = "Root Port",
		[PCI_EXP_TYPE_UPSTREAM] = "Upstream Port",
		[PCI_EXP_TYPE_DOWNSTREAM] = "Downstream Port",
		[PCI_EXP_TYPE_PCI_BRIDGE] = "PCIe to PCI Bridge",
		[PCI_EXP_TYPE_PCIE_BRIDGE] = "PCI to PCIe Bridge",
		[PCI_EXP_TYPE_RC_END] = "Root Complex Integrated Endpoint",
		[PCI_EXP_TYPE_RC_EC] = "Root Complex Event Collector",
	};
	return type < sizeof(names) / sizeof(names[0]) && names[type] ? names[type]
								      : "Unknown type";
}

const char *pci_power_state_name(uint8_t state)
{
	static const char *const names[] = {"D0", "D1", "D2", "D3hot"};
	return names[state & 3];
}
