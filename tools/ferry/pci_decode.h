/*
 * Decoding a PCI function's config space as read from a vfio-user device:
 * identity, BAR types, the capability list and the PCIe extended
 * capability list. The bytes come from the device, so every pointer is
 * range-checked and both walks stop on a loop (a capability visited twice)
 * or an out-of-range pointer, recording what they saw in `problem`.
 */
#ifndef FERRY_TOOL_PCI_DECODE_H
#define FERRY_TOOL_PCI_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pci_identity {
	uint16_t vendor, device;
	uint16_t subsys_vendor, subsys;
	uint32_t class_code; /* base << 16 | sub << 8 | prog-if */
	uint8_t revision, header_type;
	uint16_t command, status;
};

/* One BAR slot (0..5) or the ROM (index 6) as the config space describes it. */
struct pci_bar {
	bool is_io;
	bool is_64;       /* 64-bit memory BAR: the next slot is its upper half */
	bool is_upper;    /* this slot is the upper half of the previous BAR */
	bool prefetch;
	bool rom_enabled; /* ROM only */
	uint64_t addr;
};

struct pci_cap {
	uint8_t off, id;
	bool truncated; /* the body does not fit the config space read */
	union {
		struct {
			uint8_t version;
			uint8_t power_state; /* 0..3 = D0..D3hot */
			bool d1, d2;
			uint8_t pme_support; /* PMC bits 15:11 */
		} pm;
		struct {
			unsigned vectors, enabled_vectors;
			bool is_64, maskable, enabled;
		} msi;
		struct {
			unsigned table_size;
			uint8_t table_bir, pba_bir;
			uint32_t table_off, pba_off;
			bool enabled, masked;
		} msix;
		struct {
			uint8_t version, type;
			bool flr;
		} exp;
	};
};

struct pci_ext_cap {
	uint16_t off, id;
	uint8_t version;
};

#define PCI_DECODE_MAX_CAPS 48
#define PCI_DECODE_MAX_EXT_CAPS 64

struct pci_decoded {
	struct pci_identity id;
	struct pci_bar bars[7];
	struct pci_cap caps[PCI_DECODE_MAX_CAPS];
	unsigned ncaps;
	char cap_problem[96];     /* empty when the walk ended normally */
	struct pci_ext_cap ext[PCI_DECODE_MAX_EXT_CAPS];
	unsigned next;
	bool has_ext_space;       /* config space of 4096 bytes was read */
	char ext_problem[96];
};

/* Decodes @len bytes of config space (at least 64). Returns 0, or -EINVAL
 * when @len is too short for a header. */
int pci_decode(const uint8_t *cfg, size_t len, struct pci_decoded *out);

const char *pci_cap_name(uint8_t id);
const char *pci_ext_cap_name(uint16_t id);
const char *pci_class_name(uint32_t class_code);
const char *pcie_type_name(uint8_t type);
/* "D0".."D3hot" */
const char *pci_power_state_name(uint8_t state);

#endif
