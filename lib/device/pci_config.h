/*
 * PCI configuration space of one emulated function (device side, internal).
 *
 * Concepts. The space is a byte array (256 bytes, or 4096 for PCI Express)
 * built once from a struct pci_config_desc, plus per-bit masks that say what a
 * config write may do to each bit: read-write, write-1-to-clear (RW1C), or
 * nothing (read-only). The peer (the vfio-user client) reads and writes the
 * space through pci_config_read()/pci_config_write(); a write reports in a set
 * of PCI_CFG_EV_* bits what it changed, so the device core can react (start or
 * stop decoding and DMA, reprogram interrupts, change power state, reset).
 * The library itself changes a few bits the peer cannot (power state, error
 * and interrupt status, MSI pending bits) through the setters below.
 *
 * Layout: type-0 header; capabilities at fixed offsets, linked in this order,
 * absent ones skipped:
 *   0x40 Power Management (v3)          always
 *   0x48 MSI (64-bit, per-vector mask)  if desc.msi_vectors
 *   0x60 MSI-X                          if desc.msix_vectors
 *   0x70 PCI Express (v2, endpoint)     if desc.pcie
 * A PCI Express space has no extended capabilities: 0x100..0xfff reads 0.
 *
 * Not thread-safe: the device core serialises every call on one object.
 * Offsets and lengths from the peer are checked here; nothing else is.
 */
#ifndef FERRY_DEVICE_PCI_CONFIG_H
#define FERRY_DEVICE_PCI_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* bar_flags[] bits */
#define PCI_CFG_BAR_IO       0x1 /* I/O BAR (else memory) */
#define PCI_CFG_BAR_MEM64    0x2 /* 64-bit memory BAR: occupies this and the next BAR slot */
#define PCI_CFG_BAR_PREFETCH 0x4 /* prefetchable memory BAR */

/* pci_config_bar_addr() index of the expansion ROM (= VFIO_PCI_ROM_REGION_INDEX). */
#define PCI_CFG_ROM_BAR 6

struct pci_config_desc {
	const char *name; /* for log lines; optional, copied (truncated to 31 chars) */
	uint16_t vendor_id, device_id, subsys_vendor_id, subsys_id;
	uint8_t revision;
	uint32_t class_code;  /* 24-bit: base << 16 | sub << 8 | prog-if */
	/* 0 = unimplemented; a power of two: memory >= 16 (32-bit BARs <= 2 GiB),
	 * I/O 4..256. The slot after a PCI_CFG_BAR_MEM64 BAR must be left 0. */
	uint64_t bar_size[6];
	uint32_t bar_flags[6]; /* PCI_CFG_BAR_*; 0 for unimplemented slots */
	uint64_t rom_size;     /* 0 = none, else a power of two, 2 KiB..16 MiB */
	uint8_t intx_pin;      /* 0 = none, 1..4 = INTA#..INTD# */
	unsigned msi_vectors;  /* 0 (no MSI capability) or 1, 2, 4, 8, 16, 32 */
	unsigned msix_vectors; /* 0 (no MSI-X capability) .. 2048 */
	/* MSI-X table and PBA: both in memory BAR msix_bar, 8-byte aligned,
	 * inside the BAR and not overlapping each other. */
	uint8_t msix_bar;
	uint32_t msix_table_offset, msix_pba_offset;
	bool pcie; /* PCI Express endpoint: 4096-byte space, PCIe capability v2 with FLR */
};

/* What a config write changed (*events of pci_config_write()). */
enum pci_config_event {
	PCI_CFG_EV_COMMAND = 1 << 0, /* command register changed (memory/io/bus-master enable, ...) */
	PCI_CFG_EV_MSI = 1 << 1,     /* MSI enable / multiple-message-enable / address / data / mask changed */
	PCI_CFG_EV_MSIX = 1 << 2,    /* MSI-X enable or function mask changed */
	PCI_CFG_EV_POWER = 1 << 3,   /* PMCSR power state changed (D0 <-> D3hot) */
	PCI_CFG_EV_FLR = 1 << 4,     /* PCIe DevCtl initiate-FLR written as 1: the caller resets */
	PCI_CFG_EV_BAR = 1 << 5,     /* a BAR (or the ROM BAR, incl. its enable bit) changed */
};

struct pci_config;

/*
 * Validates @desc, then builds the power-on space into *@out. Returns 0, or
 * -EINVAL (one log line naming the bad field and its value) or -ENOMEM.
 * @desc is copied; it may be freed on return.
 */
int pci_config_create(const struct pci_config_desc *desc, struct pci_config **out);

/* Frees @cfg. NULL-safe. */
void pci_config_destroy(struct pci_config *cfg);

/* 256 (conventional) or 4096 (PCI Express). */
size_t pci_config_size(const struct pci_config *cfg);

/*
 * Peer accesses: any length 1..size at any offset inside the space, no
 * alignment required. Returns 0, or -EINVAL (logged) if @buf is NULL, @len is
 * 0 or [@off, @off + @len) is not inside the space (checked without wrapping).
 *
 * A write applies the masks byte by byte (read-only bits keep their value,
 * RW1C bits clear where 1 is written), so writing all-ones to a BAR then
 * reading it returns its size mask with its type bits. Register rules on top:
 * PMCSR ignores writes of the unsupported D1/D2 states, MSI multiple-message
 * enable is clamped to the multiple-message capable value, and initiate-FLR
 * reads back 0. @events (may be NULL) receives PCI_CFG_EV_* bits for what
 * changed; 0 on error. The caller acts on PCI_CFG_EV_FLR (device reset, then
 * pci_config_reset()).
 */
int pci_config_read(struct pci_config *cfg, uint64_t off, void *buf, size_t len);
int pci_config_write(struct pci_config *cfg, uint64_t off, const void *buf, size_t len,
		     uint32_t *events);

/* Accessors for the device core (current values). */
uint16_t pci_config_command(const struct pci_config *cfg);
bool pci_config_bus_master(const struct pci_config *cfg);
unsigned pci_config_power_state(const struct pci_config *cfg); /* 0 = D0, 3 = D3hot */
bool pci_config_msix_enabled(const struct pci_config *cfg);
bool pci_config_msix_masked(const struct pci_config *cfg); /* MSI-X function mask */
bool pci_config_msi_enabled(const struct pci_config *cfg);
/* Vectors software allotted (1 << MME) while MSI is enabled; 0 when disabled or absent. */
unsigned pci_config_msi_vectors_enabled(const struct pci_config *cfg);
/* True if MSI vector @v is masked (vectors past msi_vectors count as masked). */
bool pci_config_msi_vector_masked(const struct pci_config *cfg, unsigned v);
/* Offset of capability @cap_id (PCI_CAP_ID_PM/MSI/MSIX/EXP), 0 if absent. */
unsigned pci_config_cap_offset(const struct pci_config *cfg, uint8_t cap_id);

/*
 * Base address programmed in BAR @bar (0..5; type bits stripped, both halves
 * of a 64-bit BAR), or of the ROM BAR for PCI_CFG_ROM_BAR (enable bit
 * stripped). 0 for unimplemented slots and the upper slot of a 64-bit BAR.
 * While software sizes a BAR this is its size mask.
 */
uint64_t pci_config_bar_addr(const struct pci_config *cfg, unsigned bar);

/* Library-side changes; none of them reports an event. */
/* Moves PMCSR to @d (0 = D0 or 3 = D3hot; anything else is logged and ignored). */
void pci_config_set_power_state(struct pci_config *cfg, unsigned d);
/* Sets status register error bits (the RW1C ones: PCI_STATUS_PARITY,
 * _SIG_TARGET_ABORT, _REC_TARGET_ABORT, _REC_MASTER_ABORT, _SIG_SYSTEM_ERROR,
 * _DETECTED_PARITY); other bits in @bits are logged and ignored. */
void pci_config_status_raise(struct pci_config *cfg, uint16_t bits);
/* Sets or clears the status register's Interrupt Status bit (INTx asserted). */
void pci_config_set_intx_status(struct pci_config *cfg, bool asserted);
/* Sets or clears MSI pending bit @v (ignored past msi_vectors). */
void pci_config_msi_set_pending(struct pci_config *cfg, unsigned v, bool pending);

/* Back to the power-on values (function reset). */
void pci_config_reset(struct pci_config *cfg);

/*
 * Migration: the whole space as bytes. save() needs @len >= pci_config_size()
 * and returns the number of bytes written, or -EINVAL. load() needs @len ==
 * pci_config_size() and checks the bytes against this device before taking
 * them: every bit neither software- nor library-writable must equal this
 * device's power-on value (same ids, BAR sizes and types, capabilities), the
 * power state must be D0 or D3hot and MSI MME <= MMC. Returns 0 or -EINVAL
 * (logged, naming the offset); on error @cfg is unchanged.
 */
int pci_config_save(const struct pci_config *cfg, void *buf, size_t len);
int pci_config_load(struct pci_config *cfg, const void *buf, size_t len);

#endif
