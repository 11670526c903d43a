/*
 * PCI configuration space emulation; see pci_config.h for the concepts.
 *
 * How it works: create() lays out the power-on bytes (init[]) and, per bit,
 *   wmask   - writable by the peer (RW),
 *   w1cmask - cleared by the peer writing 1 (RW1C),
 *   dmask   - changed by the library itself (status, PMCSR, MSI pending),
 * plus ev_map[], the PCI_CFG_EV_* bit each header byte belongs to. A write
 * applies the masks byte by byte, then fixes up the few registers whose rules
 * are more than masks (fixup_after_write()), then compares the header before
 * and after through ev_map[] to report events. BAR sizing needs no special
 * case: a BAR's writable bits are exactly its address bits, so all-ones reads
 * back as the size mask with the read-only type bits below it (and the upper
 * slot of a 64-bit BAR as the upper half of the mask).
 *
 * Simple on purpose: capabilities sit at fixed offsets whichever are present,
 * and all arrays are 4 KiB even for a 256-byte space (20 KiB per function).
 * Byte-wise masking is not a hot path: config accesses are rare and small.
 */
#include "device/pci_config.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/pci_regs.h>

#include "util/checked.h"
#include "util/log.h"

#define NUM_BARS PCI_STD_NUM_BARS
#define BAR_FLAGS_ALL (PCI_CFG_BAR_IO | PCI_CFG_BAR_MEM64 | PCI_CFG_BAR_PREFETCH)

/* Capability offsets (fixed) and sizes. */
#define PM_OFF   0x40
#define MSI_OFF  0x48
#define MSIX_OFF 0x60
#define EXP_OFF  0x70
#define MSI_SIZEOF 0x18 /* 64-bit address, per-vector masking: ... mask, pending */
#define EXP_SIZEOF 0x3c /* v2 endpoint, through Slot Status 2 */

_Static_assert(PM_OFF + PCI_PM_SIZEOF <= MSI_OFF, "PM overlaps MSI");
_Static_assert(MSI_OFF + MSI_SIZEOF <= MSIX_OFF, "MSI overlaps MSI-X");
_Static_assert(MSIX_OFF + PCI_CAP_MSIX_SIZEOF <= EXP_OFF, "MSI-X overlaps PCIe");
_Static_assert(EXP_OFF + EXP_SIZEOF <= PCI_CFG_SPACE_SIZE, "PCIe cap past the header");

#define MSI_MAX_VECTORS  32
#define MSIX_MAX_VECTORS 2048
#define IO_BAR_MIN   4
#define IO_BAR_MAX   256 /* PCI 3.0 6.2.5.1: an I/O BAR must not claim more */
#define MEM_BAR_MIN  16
#define MEM32_BAR_MAX (UINT64_C(1) << 31)
#define ROM_MIN      2048
#define ROM_MAX      (16u << 20) /* PCI 3.0 6.3.1 */

#define CMD_WMASK (PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | \
		   PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE)
#define STATUS_W1C (PCI_STATUS_PARITY | PCI_STATUS_SIG_TARGET_ABORT | \
		    PCI_STATUS_REC_TARGET_ABORT | PCI_STATUS_REC_MASTER_ABORT | \
		    PCI_STATUS_SIG_SYSTEM_ERROR | PCI_STATUS_DETECTED_PARITY)
#define DEVCTL_WMASK (PCI_EXP_DEVCTL_CERE | PCI_EXP_DEVCTL_NFERE | PCI_EXP_DEVCTL_FERE | \
		      PCI_EXP_DEVCTL_URRE | PCI_EXP_DEVCTL_RELAX_EN | PCI_EXP_DEVCTL_PAYLOAD | \
		      PCI_EXP_DEVCTL_NOSNOOP_EN | PCI_EXP_DEVCTL_READRQ)
#define DEVSTA_W1C (PCI_EXP_DEVSTA_CED | PCI_EXP_DEVSTA_NFED | PCI_EXP_DEVSTA_FED | \
		    PCI_EXP_DEVSTA_URD)
#define LNKCTL_WMASK (PCI_EXP_LNKCTL_ASPMC | PCI_EXP_LNKCTL_CCC | PCI_EXP_LNKCTL_ES)
#define D3HOT 3u

enum bar_kind { BAR_NONE, BAR_IO, BAR_MEM32, BAR_MEM64, BAR_MEM64_HI };

struct pci_config {
	char name[32];
	struct pci_config_desc desc; /* desc.name points at name[] */
	size_t size;
	enum bar_kind bar_kind[NUM_BARS];
	uint8_t pm_off, msi_off, msix_off, exp_off; /* 0 = absent */
	uint8_t ev_map[PCI_CFG_SPACE_SIZE];  /* PCI_CFG_EV_* per header byte */
	uint8_t bytes[PCI_CFG_SPACE_EXP_SIZE];
	uint8_t init[PCI_CFG_SPACE_EXP_SIZE];
	uint8_t wmask[PCI_CFG_SPACE_EXP_SIZE];
	uint8_t w1cmask[PCI_CFG_SPACE_EXP_SIZE];
	uint8_t dmask[PCI_CFG_SPACE_EXP_SIZE];
};
_Static_assert(PCI_CFG_EV_BAR <= UINT8_MAX, "ev_map entries are 8 bits");

/* Little-endian accessors: PCI config space is little-endian on every host. */
static uint32_t get_le(const uint8_t *p, unsigned off, unsigned width)
{
	uint32_t v = 0;
	for (unsigned i = 0; i < width; i++)
		v |= (uint32_t)p[off + i] << (8 * i);
	return v;
}

static void put_le(uint8_t *p, unsigned off, unsigned width, uint32_t v)
{
	for (unsigned i = 0; i < width; i++)
		p[off + i] = (uint8_t)(v >> (8 * i));
}

static uint16_t cfg16(const struct pci_config *cfg, unsigned off)
{
	return (uint16_t)get_le(cfg->bytes, off, 2);
}

static uint32_t cfg32(const struct pci_config *cfg, unsigned off)
{
	return get_le(cfg->bytes, off, 4);
}

static unsigned log2u(uint64_t x)
{
	return (unsigned)__builtin_ctzll(x);
}

/* ---- descriptor validation ---- */

static bool is_upper_slot(const struct pci_config_desc *d, unsigned i)
{
	return i > 0 && d->bar_size[i - 1] && (d->bar_flags[i - 1] & PCI_CFG_BAR_MEM64) &&
	       !(d->bar_flags[i - 1] & PCI_CFG_BAR_IO);
}

static int validate_bar(const struct pci_config_desc *d, const char *name, unsigned i)
{
	uint64_t sz = d->bar_size[i];
	uint32_t fl = d->bar_flags[i];

	if (fl & ~BAR_FLAGS_ALL) {
		log_err("%s: bar_flags[%u] = %#x has unknown bits", name, i, fl);
		return -EINVAL;
	}
	if (is_upper_slot(d, i)) {
		if (sz || fl) {
			log_err("%s: bar_size[%u] = %#" PRIx64 ", bar_flags[%u] = %#x: slot %u is the upper half of 64-bit BAR %u and must be 0",
				name, i, sz, i, fl, i, i - 1);
			return -EINVAL;
		}
		return 0;
	}
	if (!sz) {
		if (fl) {
			log_err("%s: bar_flags[%u] = %#x set on an unimplemented BAR (bar_size[%u] = 0)",
				name, i, fl, i);
			return -EINVAL;
		}
		return 0;
	}
	if (!is_pow2(sz)) {
		log_err("%s: bar_size[%u] = %#" PRIx64 " is not a power of two", name, i, sz);
		return -EINVAL;
	}
	if (fl & PCI_CFG_BAR_IO) {
		if (fl & (PCI_CFG_BAR_MEM64 | PCI_CFG_BAR_PREFETCH)) {
			log_err("%s: bar_flags[%u] = %#x: an I/O BAR cannot be 64-bit or prefetchable",
				name, i, fl);
			return -EINVAL;
		}
		if (sz < IO_BAR_MIN || sz > IO_BAR_MAX) {
			log_err("%s: bar_size[%u] = %#" PRIx64 ": an I/O BAR is %u..%u bytes",
				name, i, sz, IO_BAR_MIN, IO_BAR_MAX);
			return -EINVAL;
		}
		return 0;
	}
	if (sz < MEM_BAR_MIN) {
		log_err("%s: bar_size[%u] = %#" PRIx64 ": a memory BAR is at least %u bytes",
			name, i, sz, MEM_BAR_MIN);
		return -EINVAL;
	}
	if ((fl & PCI_CFG_BAR_MEM64) && i == NUM_BARS - 1) {
		log_err("%s: bar_flags[5] = %#x: a 64-bit BAR in slot 5 has no upper slot", name, fl);
		return -EINVAL;
	}
	if (!(fl & PCI_CFG_BAR_MEM64) && sz > MEM32_BAR_MAX) {
		log_err("%s: bar_size[%u] = %#" PRIx64 " is too large for a 32-bit BAR (use PCI_CFG_BAR_MEM64)",
			name, i, sz);
		return -EINVAL;
	}
	return 0;
}

static int validate_msix(const struct pci_config_desc *d, const char *name)
{
	unsigned n = d->msix_vectors;
	uint64_t table_len = (uint64_t)n * PCI_MSIX_ENTRY_SIZE;
	uint64_t pba_len = (uint64_t)(n + 63) / 64 * 8;
	unsigned b = d->msix_bar;
	uint64_t bar_size;

	if (n > MSIX_MAX_VECTORS) {
		log_err("%s: msix_vectors = %u exceeds %u", name, n, MSIX_MAX_VECTORS);
		return -EINVAL;
	}
	if (!n)
		return 0;
	if (b >= NUM_BARS || !d->bar_size[b] || is_upper_slot(d, b) ||
	    (d->bar_flags[b] & PCI_CFG_BAR_IO)) {
		log_err("%s: msix_bar = %u is not an implemented memory BAR", name, b);
		return -EINVAL;
	}
	bar_size = d->bar_size[b];
	if ((d->msix_table_offset & 7) || (d->msix_pba_offset & 7)) {
		log_err("%s: msix_table_offset = %#x / msix_pba_offset = %#x must be 8-byte aligned",
			name, d->msix_table_offset, d->msix_pba_offset);
		return -EINVAL;
	}
	if (!range_ok(d->msix_table_offset, table_len, bar_size)) {
		log_err("%s: MSI-X table (msix_table_offset = %#x, %" PRIu64 " bytes) is not inside BAR %u (%#" PRIx64 " bytes)",
			name, d->msix_table_offset, table_len, b, bar_size);
		return -EINVAL;
	}
	if (!range_ok(d->msix_pba_offset, pba_len, bar_size)) {
		log_err("%s: MSI-X PBA (msix_pba_offset = %#x, %" PRIu64 " bytes) is not inside BAR %u (%#" PRIx64 " bytes)",
			name, d->msix_pba_offset, pba_len, b, bar_size);
		return -EINVAL;
	}
	if (ranges_overlap(d->msix_table_offset, table_len, d->msix_pba_offset, pba_len)) {
		log_err("%s: MSI-X table (msix_table_offset = %#x, %" PRIu64 " bytes) overlaps the PBA (msix_pba_offset = %#x, %" PRIu64 " bytes)",
			name, d->msix_table_offset, table_len, d->msix_pba_offset, pba_len);
		return -EINVAL;
	}
	return 0;
}

static int validate_desc(const struct pci_config_desc *d, const char *name)
{
	int rc;

	if (d->vendor_id == 0xffff) {
		log_err("%s: vendor_id = 0xffff means \"no device\"", name);
		return -EINVAL;
	}
	if (d->class_code > 0xffffff) {
		log_err("%s: class_code = %#x is wider than 24 bits", name, d->class_code);
		return -EINVAL;
	}
	if (d->intx_pin > 4) {
		log_err("%s: intx_pin = %u (0 = none, 1..4 = INTA#..INTD#)", name, d->intx_pin);
		return -EINVAL;
	}
	for (unsigned i = 0; i < NUM_BARS; i++) {
		rc = validate_bar(d, name, i);
		if (rc)
			return rc;
	}
	if (d->rom_size && (!is_pow2(d->rom_size) || d->rom_size < ROM_MIN || d->rom_size > ROM_MAX)) {
		log_err("%s: rom_size = %#" PRIx64 " must be a power of two from %u to %u",
			name, d->rom_size, ROM_MIN, ROM_MAX);
		return -EINVAL;
	}
	if (d->msi_vectors && (!is_pow2(d->msi_vectors) || d->msi_vectors > MSI_MAX_VECTORS)) {
		log_err("%s: msi_vectors = %u must be 0, 1, 2, 4, 8, 16 or 32", name, d->msi_vectors);
		return -EINVAL;
	}
	return validate_msix(d, name);
}

/* ---- building the power-on space ---- */

/* Defines register [@off, @off + @width) of the power-on space. */
static void def_reg(struct pci_config *cfg, unsigned off, unsigned width, uint32_t val,
		    uint32_t wmask, uint32_t w1c)
{
	assert(off + width <= cfg->size);
	put_le(cfg->init, off, width, val);
	put_le(cfg->wmask, off, width, wmask);
	put_le(cfg->w1cmask, off, width, w1c);
}

static void def_lib_bits(struct pci_config *cfg, unsigned off, unsigned width, uint32_t dmask)
{
	put_le(cfg->dmask, off, width, dmask);
}

static void def_events(struct pci_config *cfg, unsigned off, unsigned len, uint8_t ev)
{
	for (unsigned i = 0; i < len; i++)
		cfg->ev_map[off + i] |= ev;
}

static void build_bars(struct pci_config *cfg)
{
	const struct pci_config_desc *d = &cfg->desc;

	for (unsigned i = 0; i < NUM_BARS; i++) {
		unsigned off = PCI_BASE_ADDRESS_0 + 4 * i;
		uint64_t sz = d->bar_size[i];
		uint32_t fl = d->bar_flags[i];
		uint32_t type;

		if (is_upper_slot(d, i)) {
			uint64_t mask = ~(d->bar_size[i - 1] - 1);
			cfg->bar_kind[i] = BAR_MEM64_HI;
			def_reg(cfg, off, 4, 0, (uint32_t)(mask >> 32), 0);
		} else if (!sz) {
			cfg->bar_kind[i] = BAR_NONE;
		} else if (fl & PCI_CFG_BAR_IO) {
			cfg->bar_kind[i] = BAR_IO;
			def_reg(cfg, off, 4, PCI_BASE_ADDRESS_SPACE_IO,
				(uint32_t)~(sz - 1) & (uint32_t)PCI_BASE_ADDRESS_IO_MASK, 0);
		} else {
			type = (fl & PCI_CFG_BAR_PREFETCH) ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0;
			if (fl & PCI_CFG_BAR_MEM64)
				type |= PCI_BASE_ADDRESS_MEM_TYPE_64;
			cfg->bar_kind[i] = (fl & PCI_CFG_BAR_MEM64) ? BAR_MEM64 : BAR_MEM32;
			def_reg(cfg, off, 4, type,
				(uint32_t)~(sz - 1) & (uint32_t)PCI_BASE_ADDRESS_MEM_MASK, 0);
		}
	}
	def_events(cfg, PCI_BASE_ADDRESS_0, 4 * NUM_BARS, PCI_CFG_EV_BAR);

	if (d->rom_size)
		def_reg(cfg, PCI_ROM_ADDRESS, 4, 0,
			((uint32_t)~(d->rom_size - 1) & PCI_ROM_ADDRESS_MASK) | PCI_ROM_ADDRESS_ENABLE, 0);
	def_events(cfg, PCI_ROM_ADDRESS, 4, PCI_CFG_EV_BAR);
}

static void build_header(struct pci_config *cfg)
{
	const struct pci_config_desc *d = &cfg->desc;

	def_reg(cfg, PCI_VENDOR_ID, 2, d->vendor_id, 0, 0);
	def_reg(cfg, PCI_DEVICE_ID, 2, d->device_id, 0, 0);
	def_reg(cfg, PCI_COMMAND, 2, 0, CMD_WMASK, 0);
	def_events(cfg, PCI_COMMAND, 2, PCI_CFG_EV_COMMAND);
	def_reg(cfg, PCI_STATUS, 2, PCI_STATUS_CAP_LIST, 0, STATUS_W1C);
	def_lib_bits(cfg, PCI_STATUS, 2, STATUS_W1C | PCI_STATUS_INTERRUPT);
	def_reg(cfg, PCI_CLASS_REVISION, 4, d->class_code << 8 | d->revision, 0, 0);
	/* Cache line size: RW and without effect (PCIe keeps it for software compatibility). */
	def_reg(cfg, PCI_CACHE_LINE_SIZE, 1, 0, 0xff, 0);
	def_reg(cfg, PCI_HEADER_TYPE, 1, PCI_HEADER_TYPE_NORMAL, 0, 0);
	build_bars(cfg);
	def_reg(cfg, PCI_SUBSYSTEM_VENDOR_ID, 2, d->subsys_vendor_id, 0, 0);
	def_reg(cfg, PCI_SUBSYSTEM_ID, 2, d->subsys_id, 0, 0);
	def_reg(cfg, PCI_INTERRUPT_LINE, 1, 0, 0xff, 0);
	def_reg(cfg, PCI_INTERRUPT_PIN, 1, d->intx_pin, 0, 0);
}

static void build_pm(struct pci_config *cfg, unsigned off)
{
	/* D0 and D3hot only, no PME; NoSoftReset: D3hot -> D0 keeps the state. */
	def_reg(cfg, off + PCI_PM_PMC, 2, 3 /* version 3 */, 0, 0);
	def_reg(cfg, off + PCI_PM_CTRL, 2, PCI_PM_CTRL_NO_SOFT_RESET, PCI_PM_CTRL_STATE_MASK, 0);
	def_lib_bits(cfg, off + PCI_PM_CTRL, 2, PCI_PM_CTRL_STATE_MASK);
	def_events(cfg, off + PCI_PM_CTRL, 2, PCI_CFG_EV_POWER);
}

static void build_msi(struct pci_config *cfg, unsigned off)
{
	unsigned n = cfg->desc.msi_vectors;
	uint32_t vec_mask = n == 32 ? UINT32_MAX : (UINT32_C(1) << n) - 1;

	def_reg(cfg, off + PCI_MSI_FLAGS, 2,
		PCI_MSI_FLAGS_64BIT | PCI_MSI_FLAGS_MASKBIT | log2u(n) << 1,
		PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE, 0);
	def_reg(cfg, off + PCI_MSI_ADDRESS_LO, 4, 0, 0xfffffffc, 0);
	def_reg(cfg, off + PCI_MSI_ADDRESS_HI, 4, 0, 0xffffffff, 0);
	def_reg(cfg, off + PCI_MSI_DATA_64, 2, 0, 0xffff, 0);
	def_reg(cfg, off + PCI_MSI_MASK_64, 4, 0, vec_mask, 0);
	def_lib_bits(cfg, off + PCI_MSI_PENDING_64, 4, vec_mask);
	def_events(cfg, off + PCI_MSI_FLAGS, PCI_MSI_PENDING_64 - PCI_MSI_FLAGS, PCI_CFG_EV_MSI);
}

static void build_msix(struct pci_config *cfg, unsigned off)
{
	const struct pci_config_desc *d = &cfg->desc;

	def_reg(cfg, off + PCI_MSIX_FLAGS, 2, d->msix_vectors - 1,
		PCI_MSIX_FLAGS_MASKALL | PCI_MSIX_FLAGS_ENABLE, 0);
	def_reg(cfg, off + PCI_MSIX_TABLE, 4, d->msix_table_offset | d->msix_bar, 0, 0);
	def_reg(cfg, off + PCI_MSIX_PBA, 4, d->msix_pba_offset | d->msix_bar, 0, 0);
	def_events(cfg, off + PCI_MSIX_FLAGS, 2, PCI_CFG_EV_MSIX);
}

static void build_exp(struct pci_config *cfg, unsigned off)
{
	/* A plain x1 2.5 GT/s endpoint, 128-byte payload, FLR capable. Slot and
	 * root registers do not apply to an endpoint and stay 0. */
	def_reg(cfg, off + PCI_EXP_FLAGS, 2, 2 | PCI_EXP_TYPE_ENDPOINT << 4, 0, 0);
	def_reg(cfg, off + PCI_EXP_DEVCAP, 4, PCI_EXP_DEVCAP_RBER | PCI_EXP_DEVCAP_FLR, 0, 0);
	/* Spec defaults: relaxed ordering and no-snoop on, MRRS 512 bytes. */
	def_reg(cfg, off + PCI_EXP_DEVCTL, 2,
		PCI_EXP_DEVCTL_RELAX_EN | PCI_EXP_DEVCTL_NOSNOOP_EN | PCI_EXP_DEVCTL_READRQ_512B,
		DEVCTL_WMASK, 0);
	def_reg(cfg, off + PCI_EXP_DEVSTA, 2, 0, 0, DEVSTA_W1C);
	def_lib_bits(cfg, off + PCI_EXP_DEVSTA, 2, DEVSTA_W1C);
	def_reg(cfg, off + PCI_EXP_LNKCAP, 4, PCI_EXP_LNKCAP_SLS_2_5GB | 1 << 4 /* x1 */, 0, 0);
	def_reg(cfg, off + PCI_EXP_LNKCTL, 2, 0, LNKCTL_WMASK, 0);
	def_reg(cfg, off + PCI_EXP_LNKSTA, 2, PCI_EXP_LNKSTA_CLS_2_5GB | PCI_EXP_LNKSTA_NLW_X1, 0, 0);
	def_reg(cfg, off + PCI_EXP_LNKCAP2, 4, PCI_EXP_LNKCAP2_SLS_2_5GB, 0, 0);
	def_reg(cfg, off + PCI_EXP_LNKCTL2, 2, PCI_EXP_LNKCTL2_TLS_2_5GT, 0, 0);
}

/* Lays out the capabilities present, in offset order, and links them. */
static void build_caps(struct pci_config *cfg)
{
	const struct pci_config_desc *d = &cfg->desc;
	struct { uint8_t id, off; bool present; void (*build)(struct pci_config *, unsigned); } caps[] = {
		{ PCI_CAP_ID_PM, PM_OFF, true, build_pm },
		{ PCI_CAP_ID_MSI, MSI_OFF, d->msi_vectors != 0, build_msi },
		{ PCI_CAP_ID_MSIX, MSIX_OFF, d->msix_vectors != 0, build_msix },
		{ PCI_CAP_ID_EXP, EXP_OFF, d->pcie, build_exp },
	};
	unsigned link = PCI_CAPABILITY_LIST; /* where the next offset goes */

	for (size_t i = 0; i < ARRAY_SIZE(caps); i++) {
		if (!caps[i].present)
			continue;
		cfg->init[link] = caps[i].off;
		def_reg(cfg, caps[i].off + PCI_CAP_LIST_ID, 1, caps[i].id, 0, 0);
		caps[i].build(cfg, caps[i].off);
		link = caps[i].off + PCI_CAP_LIST_NEXT;
	}
	cfg->init[link] = 0;
	cfg->pm_off = PM_OFF;
	cfg->msi_off = d->msi_vectors ? MSI_OFF : 0;
	cfg->msix_off = d->msix_vectors ? MSIX_OFF : 0;
	cfg->exp_off = d->pcie ? EXP_OFF : 0;
}

int pci_config_create(const struct pci_config_desc *desc, struct pci_config **out)
{
	const char *name;
	struct pci_config *cfg;
	int rc;

	if (!desc || !out) {
		log_err("pci_config_create: %s is NULL", desc ? "out" : "desc");
		return -EINVAL;
	}
	name = desc->name ? desc->name : "pci";
	rc = validate_desc(desc, name);
	if (rc)
		return rc;

	cfg = calloc(1, sizeof(*cfg));
	if (!cfg) {
		log_err("%s: out of memory for config space", name);
		return -ENOMEM;
	}
	snprintf(cfg->name, sizeof(cfg->name), "%s", name);
	cfg->desc = *desc;
	cfg->desc.name = cfg->name;
	cfg->size = desc->pcie ? PCI_CFG_SPACE_EXP_SIZE : PCI_CFG_SPACE_SIZE;
	build_header(cfg);
	build_caps(cfg);
	pci_config_reset(cfg);
	*out = cfg;
	return 0;
}

void pci_config_destroy(struct pci_config *cfg)
{
	free(cfg);
}

size_t pci_config_size(const struct pci_config *cfg)
{
	return cfg->size;
}

void pci_config_reset(struct pci_config *cfg)
{
	memcpy(cfg->bytes, cfg->init, cfg->size);
}

/* ---- peer accesses ---- */

static bool access_ok(const struct pci_config *cfg, const char *what, uint64_t off,
		      const void *buf, size_t len)
{
	if (!buf || !len || !range_ok(off, len, cfg->size)) {
		log_err("%s: config %s of %zu bytes at %#" PRIx64 " is outside the %zu-byte space",
			cfg->name, what, len, off, cfg->size);
		return false;
	}
	return true;
}

int pci_config_read(struct pci_config *cfg, uint64_t off, void *buf, size_t len)
{
	if (!access_ok(cfg, "read", off, buf, len))
		return -EINVAL;
	memcpy(buf, cfg->bytes + off, len);
	return 0;
}

/* Register rules beyond the masks; @old is the header before the write. */
static void fixup_after_write(struct pci_config *cfg, const uint8_t *old)
{
	unsigned pmcsr = cfg->pm_off + PCI_PM_CTRL;
	unsigned state = cfg16(cfg, pmcsr) & PCI_PM_CTRL_STATE_MASK;

	/* PM 1.2 5.4.2: writing an unsupported state completes, data discarded. */
	if (state != 0 && state != D3HOT)
		put_le(cfg->bytes, pmcsr, 2, (cfg16(cfg, pmcsr) & ~PCI_PM_CTRL_STATE_MASK) |
					     (get_le(old, pmcsr, 2) & PCI_PM_CTRL_STATE_MASK));

	/* MME above MMC is undefined; clamp as QEMU does, so vectors_enabled stays true. */
	if (cfg->msi_off) {
		unsigned flags_off = cfg->msi_off + PCI_MSI_FLAGS;
		uint16_t flags = cfg16(cfg, flags_off);
		unsigned mmc = (flags & PCI_MSI_FLAGS_QMASK) >> 1;
		unsigned mme = (flags & PCI_MSI_FLAGS_QSIZE) >> 4;

		if (mme > mmc)
			put_le(cfg->bytes, flags_off, 2, (flags & ~PCI_MSI_FLAGS_QSIZE) | mmc << 4);
	}
}

/* Initiate-FLR is write-only: it is never stored, only seen in the written data. */
static bool flr_written(const struct pci_config *cfg, uint64_t off, const uint8_t *src,
			size_t len)
{
	uint64_t flr_byte = cfg->exp_off + PCI_EXP_DEVCTL + 1;

	return cfg->exp_off && off <= flr_byte && flr_byte - off < len &&
	       (src[flr_byte - off] & (PCI_EXP_DEVCTL_BCR_FLR >> 8));
}

int pci_config_write(struct pci_config *cfg, uint64_t off, const void *buf, size_t len,
		     uint32_t *events)
{
	const uint8_t *src = buf;
	uint8_t old[PCI_CFG_SPACE_SIZE];
	uint32_t ev = 0;

	if (events)
		*events = 0;
	if (!access_ok(cfg, "write", off, buf, len))
		return -EINVAL;

	memcpy(old, cfg->bytes, sizeof(old));
	for (size_t i = 0; i < len; i++) {
		size_t o = (size_t)off + i;
		uint8_t b = cfg->bytes[o];

		b = (uint8_t)((b & ~cfg->wmask[o]) | (src[i] & cfg->wmask[o]));
		b &= (uint8_t)~(src[i] & cfg->w1cmask[o]);
		cfg->bytes[o] = b;
	}
	fixup_after_write(cfg, old);

	if (flr_written(cfg, off, src, len))
		ev |= PCI_CFG_EV_FLR;
	for (size_t o = (size_t)off; o < off + len && o < PCI_CFG_SPACE_SIZE; o++)
		if (old[o] != cfg->bytes[o])
			ev |= cfg->ev_map[o];
	if (events)
		*events = ev;
	return 0;
}

/* ---- accessors ---- */

uint16_t pci_config_command(const struct pci_config *cfg)
{
	return cfg16(cfg, PCI_COMMAND);
}

bool pci_config_bus_master(const struct pci_config *cfg)
{
	return pci_config_command(cfg) & PCI_COMMAND_MASTER;
}

unsigned pci_config_power_state(const struct pci_config *cfg)
{
	return cfg16(cfg, cfg->pm_off + PCI_PM_CTRL) & PCI_PM_CTRL_STATE_MASK;
}

void pci_config_set_power_state(struct pci_config *cfg, unsigned d)
{
	unsigned off = cfg->pm_off + PCI_PM_CTRL;

	if (d != 0 && d != D3HOT) {
		log_warn("%s: power state D%u is not supported (D0, D3hot only)", cfg->name, d);
		return;
	}
	put_le(cfg->bytes, off, 2, (cfg16(cfg, off) & ~PCI_PM_CTRL_STATE_MASK) | d);
}

bool pci_config_msix_enabled(const struct pci_config *cfg)
{
	return cfg->msix_off && (cfg16(cfg, cfg->msix_off + PCI_MSIX_FLAGS) & PCI_MSIX_FLAGS_ENABLE);
}

bool pci_config_msix_masked(const struct pci_config *cfg)
{
	return cfg->msix_off && (cfg16(cfg, cfg->msix_off + PCI_MSIX_FLAGS) & PCI_MSIX_FLAGS_MASKALL);
}

bool pci_config_msi_enabled(const struct pci_config *cfg)
{
	return cfg->msi_off && (cfg16(cfg, cfg->msi_off + PCI_MSI_FLAGS) & PCI_MSI_FLAGS_ENABLE);
}

unsigned pci_config_msi_vectors_enabled(const struct pci_config *cfg)
{
	if (!pci_config_msi_enabled(cfg))
		return 0;
	return 1u << ((cfg16(cfg, cfg->msi_off + PCI_MSI_FLAGS) & PCI_MSI_FLAGS_QSIZE) >> 4);
}

bool pci_config_msi_vector_masked(const struct pci_config *cfg, unsigned v)
{
	if (!cfg->msi_off || v >= cfg->desc.msi_vectors)
		return true;
	return cfg32(cfg, cfg->msi_off + PCI_MSI_MASK_64) & (UINT32_C(1) << v);
}

void pci_config_msi_set_pending(struct pci_config *cfg, unsigned v, bool pending)
{
	unsigned off = cfg->msi_off + PCI_MSI_PENDING_64;
	uint32_t bits;

	if (!cfg->msi_off || v >= cfg->desc.msi_vectors)
		return;
	bits = cfg32(cfg, off);
	bits = pending ? bits | UINT32_C(1) << v : bits & ~(UINT32_C(1) << v);
	put_le(cfg->bytes, off, 4, bits);
}

unsigned pci_config_cap_offset(const struct pci_config *cfg, uint8_t cap_id)
{
	switch (cap_id) {
	case PCI_CAP_ID_PM:
		return cfg->pm_off;
	case PCI_CAP_ID_MSI:
		return cfg->msi_off;
	case PCI_CAP_ID_MSIX:
		return cfg->msix_off;
	case PCI_CAP_ID_EXP:
		return cfg->exp_off;
	default:
		return 0;
	}
}

uint64_t pci_config_bar_addr(const struct pci_config *cfg, unsigned bar)
{
	unsigned off = PCI_BASE_ADDRESS_0 + 4 * bar;

	if (bar == PCI_CFG_ROM_BAR)
		return cfg32(cfg, PCI_ROM_ADDRESS) & PCI_ROM_ADDRESS_MASK;
	if (bar >= NUM_BARS)
		return 0;
	switch (cfg->bar_kind[bar]) {
	case BAR_IO:
		return cfg32(cfg, off) & (uint32_t)PCI_BASE_ADDRESS_IO_MASK;
	case BAR_MEM32:
		return cfg32(cfg, off) & (uint32_t)PCI_BASE_ADDRESS_MEM_MASK;
	case BAR_MEM64:
		return (cfg32(cfg, off) & (uint32_t)PCI_BASE_ADDRESS_MEM_MASK) |
		       (uint64_t)cfg32(cfg, off + 4) << 32;
	case BAR_NONE:
	case BAR_MEM64_HI:
		break;
	}
	return 0;
}

void pci_config_status_raise(struct pci_config *cfg, uint16_t bits)
{
	if (bits & ~STATUS_W1C)
		log_warn("%s: status bits %#x are not error bits; ignored", cfg->name,
			 bits & ~STATUS_W1C);
	put_le(cfg->bytes, PCI_STATUS, 2, cfg16(cfg, PCI_STATUS) | (bits & STATUS_W1C));
}

void pci_config_set_intx_status(struct pci_config *cfg, bool asserted)
{
	uint16_t st = cfg16(cfg, PCI_STATUS);

	st = asserted ? st | PCI_STATUS_INTERRUPT : st & ~PCI_STATUS_INTERRUPT;
	put_le(cfg->bytes, PCI_STATUS, 2, st);
}

/* ---- migration ---- */

int pci_config_save(const struct pci_config *cfg, void *buf, size_t len)
{
	if (!buf || len < cfg->size) {
		log_err("%s: config save needs %zu bytes, got %zu", cfg->name, cfg->size,
			buf ? len : 0);
		return -EINVAL;
	}
	memcpy(buf, cfg->bytes, cfg->size);
	return (int)cfg->size;
}

int pci_config_load(struct pci_config *cfg, const void *buf, size_t len)
{
	const uint8_t *src = buf;
	unsigned state, flags;

	if (!buf || len != cfg->size) {
		log_err("%s: saved config space is %zu bytes, this device's is %zu", cfg->name,
			buf ? len : 0, cfg->size);
		return -EINVAL;
	}
	for (size_t o = 0; o < cfg->size; o++) {
		uint8_t fixed = (uint8_t)~(cfg->wmask[o] | cfg->w1cmask[o] | cfg->dmask[o]);

		if ((src[o] ^ cfg->init[o]) & fixed) {
			log_err("%s: saved config space differs from this device in read-only bits at %#zx (saved %#04x, expected %#04x under mask %#04x)",
				cfg->name, o, src[o], cfg->init[o], fixed);
			return -EINVAL;
		}
	}
	state = get_le(src, cfg->pm_off + PCI_PM_CTRL, 2) & PCI_PM_CTRL_STATE_MASK;
	if (state != 0 && state != D3HOT) {
		log_err("%s: saved power state D%u is not supported", cfg->name, state);
		return -EINVAL;
	}
	if (cfg->msi_off) {
		flags = get_le(src, cfg->msi_off + PCI_MSI_FLAGS, 2);
		if (((flags & PCI_MSI_FLAGS_QSIZE) >> 4) > ((flags & PCI_MSI_FLAGS_QMASK) >> 1)) {
			log_err("%s: saved MSI flags %#06x enable more vectors than capable",
				cfg->name, flags);
			return -EINVAL;
		}
	}
	memcpy(cfg->bytes, src, cfg->size);
	return 0;
}
