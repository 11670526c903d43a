/*
 * ferry-dev-dma: the datasheet. Register interface and descriptor format
 * shared by the device (engine.c, mmio.c) and its guest driver (driver.c).
 *
 * Concepts. The driver keeps a ring of fixed-size descriptors in guest
 * memory and tells the device where it is (RING_BASE, RING_SIZE). It fills
 * descriptors, then writes the index one past the last one to RING_TAIL (the
 * doorbell). The device executes descriptors in order from RING_HEAD to
 * RING_TAIL, writes each one's status word back into the ring, advances
 * RING_HEAD and raises MSI-X vector 0 every IRQ_COALESCE completions and
 * whenever the ring drains.
 *
 * RING_HEAD and RING_TAIL are free-running 32-bit counters, not slot
 * numbers: the slot of index i is i & (RING_SIZE - 1), the ring is empty when
 * head == tail and holds (tail - head) mod 2^32 <= RING_SIZE descriptors, so
 * a full ring and an empty ring cannot be confused.
 *
 * PCI identity: vendor 0xf377 is NOT assigned by the PCI-SIG; it is a made-up
 * id for this test device only (0x1af4 virtio, 0x1b36 QEMU and 0xffff
 * "invalid" were avoided on purpose). Never ship it on real hardware.
 *
 * Byte order: registers and descriptors are little-endian.
 */
#ifndef FERRY_DEV_DMA_REGS_H
#define FERRY_DEV_DMA_REGS_H

#include <stdint.h>

/* ---- PCI identity ---- */
#define DMA_PCI_VENDOR_ID   0xf377u   /* made up, see above */
#define DMA_PCI_DEVICE_ID   0x0001u
#define DMA_PCI_SUBSYS_VID  0xf377u
#define DMA_PCI_SUBSYS_ID   0x0001u
#define DMA_PCI_REVISION    0x01u
#define DMA_PCI_CLASS       0x088000u /* system peripheral, other */

/* ---- BARs ----
 * BAR0: 4 KiB, 32-bit memory, fully trapped. Registers below 0x800, the
 *       MSI-X table at 0x800 and its PBA at 0xc00 (served by libferry).
 * BAR2: 64 KiB, 64-bit prefetchable memory: device-local scratch memory.
 *       memfd-backed and mmap-able as one sparse area covering all of it;
 *       trapped accesses read and write the same bytes. The engine does
 *       not use it yet; it exists to exercise sparse mmap and, later, to
 *       carry device memory across a migration.
 */
#define DMA_BAR_REGS           0
#define DMA_BAR_REGS_SIZE      0x1000u
#define DMA_MSIX_TABLE_OFFSET  0x800u
#define DMA_MSIX_PBA_OFFSET    0xc00u
#define DMA_MSIX_VECTORS       4u
#define DMA_MSIX_VEC_RING      0u /* the only vector used: completions */
#define DMA_BAR_SCRATCH        2
#define DMA_BAR_SCRATCH_SIZE   0x10000u

/* ---- BAR0 registers ----
 * Every register is 32 bits wide and 4-byte aligned; a 64-bit register is
 * two of them (low word first) and may also be accessed with one aligned
 * 8-byte access. Other widths or alignments fail the access (-EINVAL).
 * Undefined offsets below 0x800 read 0 and ignore writes.
 *
 *  off    name           access  meaning
 *  0x000  ID             RO      DMA_ID_VALUE
 *  0x004  VERSION        RO      DMA_VERSION_VALUE (major << 16 | minor)
 *  0x008  CONTROL        RW      DMA_CTRL_*
 *  0x00c  STATUS         RO/W1C  DMA_STS_*; error bits are sticky, write 1 to clear
 *  0x010  RING_BASE      RW 64   guest address of the ring, DMA_DESC_SIZE aligned;
 *                                writes ignored while CONTROL.ENABLE is set
 *  0x018  RING_SIZE      RW      entries, a power of two, 1..DMA_RING_MAX_ENTRIES;
 *                                writes ignored while CONTROL.ENABLE is set
 *  0x01c  IRQ_COALESCE   RW      completions per interrupt (0 is taken as 1);
 *                                the device also interrupts when the ring drains
 *  0x020  RING_HEAD      RO      next index the device will fetch; the one before
 *                                it may still be in progress. A slot is free for
 *                                the driver when its status says DONE.
 *  0x024  RING_TAIL      RW      doorbell: index one past the last queued descriptor.
 *                                A tail with (tail - head) > RING_SIZE is ignored
 *                                and sets STATUS.ERR_DOORBELL.
 *  0x028  COMPLETED      RO 64   descriptors completed (with or without error)
 *  0x030  ERRORS         RO 64   descriptors completed with an error status
 *  0x038  IRQS           RO 64   completion interrupts raised
 *  0x040  PEER_DOORBELL  RW 64   bus address of a peer device's doorbell page,
 *                                8-byte aligned: where PEER_NOTIFY writes (below)
 *  0x048  MAX_XFER       RO      DMA_MAX_XFER: the largest descriptor len
 *  0x04c  MAX_RING       RO      DMA_RING_MAX_ENTRIES
 *  0x050  SCRATCH_SIZE   RO      DMA_BAR_SCRATCH_SIZE
 *  0x054  PEER_HELD      RO      peer writes held back (P2P quiesce, below),
 *                                0..DMA_PEER_HOLD_MAX
 *  0x058  PEER_WRITES    RO 64   peer writes delivered
 */
#define DMA_REG_ID            0x000u
#define DMA_REG_VERSION       0x004u
#define DMA_REG_CONTROL       0x008u
#define DMA_REG_STATUS        0x00cu
#define DMA_REG_RING_BASE     0x010u
#define DMA_REG_RING_BASE_HI  0x014u
#define DMA_REG_RING_SIZE     0x018u
#define DMA_REG_IRQ_COALESCE  0x01cu
#define DMA_REG_RING_HEAD     0x020u
#define DMA_REG_RING_TAIL     0x024u
#define DMA_REG_COMPLETED     0x028u
#define DMA_REG_ERRORS        0x030u
#define DMA_REG_IRQS          0x038u
#define DMA_REG_PEER_DOORBELL 0x040u
#define DMA_REG_MAX_XFER      0x048u
#define DMA_REG_MAX_RING      0x04cu
#define DMA_REG_SCRATCH_SIZE  0x050u
#define DMA_REG_PEER_HELD     0x054u
#define DMA_REG_PEER_WRITES   0x058u
#define DMA_REG_END           0x060u /* first offset past the register file */

#define DMA_ID_VALUE      0x46444d41u /* "FDMA" */
#define DMA_VERSION_VALUE 0x00010001u /* 1.1: PEER_NOTIFY, PEER_HELD, PEER_WRITES */

/* CONTROL. Setting ENABLE checks RING_BASE/RING_SIZE: if they are invalid
 * the engine does not start and STATUS.ERR_CONFIG is set. Clearing ENABLE
 * returns after the descriptor in progress (if any) has completed. RESET
 * (write-only, reads 0) returns the whole device to power-on state, like
 * DEVICE_RESET, after stopping the engine. */
#define DMA_CTRL_ENABLE (1u << 0)
#define DMA_CTRL_RESET  (1u << 1)

/* STATUS. RUNNING: ENABLE is set and the engine has not halted. The engine
 * halts (RUNNING clears, ENABLE stays set) when it cannot read a descriptor
 * or write a status word back (ERR_RING), with RING_HEAD at that
 * descriptor; clear ENABLE and set it again to retry it, or reset. The
 * ERR_* bits are sticky and cleared by writing 1. */
#define DMA_STS_RUNNING      (1u << 0)
#define DMA_STS_ERR_DESC     (1u << 1) /* a descriptor completed with an error */
#define DMA_STS_ERR_RING     (1u << 2) /* ring unreachable: engine halted */
#define DMA_STS_ERR_CONFIG   (1u << 3) /* ENABLE with an invalid ring */
#define DMA_STS_ERR_DOORBELL (1u << 4) /* RING_TAIL write beyond the ring */
#define DMA_STS_ERR_PEER     (1u << 5) /* a held peer write failed when released */
#define DMA_STS_ERR_MASK     (DMA_STS_ERR_DESC | DMA_STS_ERR_RING | DMA_STS_ERR_CONFIG | \
			      DMA_STS_ERR_DOORBELL | DMA_STS_ERR_PEER)

#define DMA_RING_MAX_ENTRIES 65536u
#define DMA_MAX_XFER         (1u << 20) /* 1 MiB per descriptor */

/* ---- Descriptor: 32 bytes in guest memory, DMA_DESC_SIZE aligned ----
 *
 *  off  size  field    written by  meaning
 *  0    2     opcode   driver      DMA_OP_*
 *  2    2     flags    driver      reserved, must be 0 (else DMA_ERR_FLAGS)
 *  4    4     len      driver      bytes, 0..MAX_XFER (0: completes at once)
 *  8    8     src      driver      COPY: source guest address;
 *                                  FILL: the 8-byte pattern (little-endian);
 *                                  PEER_NOTIFY: the 8-byte value to write
 *  16   8     dst      driver      destination guest address;
 *                                  PEER_NOTIFY: offset in the doorbell page
 *  24   4     cookie   driver      free for the driver (a sequence number)
 *  28   4     status   device      0 while pending; DMA_ST_DONE | echo | error
 *
 * Completion is atomic: the device writes the data, then the status word
 * with a single aligned 4-byte store with release semantics; a driver that
 * sees DMA_ST_DONE (with an acquire load) sees the destination bytes. The
 * device reads but never writes the other fields. The driver writes status
 * = 0 when it queues a descriptor.
 *
 * status: bit 31 DONE; bits 23..8 the low 16 bits of the cookie the device
 * read (so the driver can tell the completion belongs to this descriptor);
 * bits 7..0 an error code (DMA_ERR_*, 0 = success).
 *
 * COPY copies len bytes from src to dst; overlapping ranges are refused
 * (DMA_ERR_OVERLAP). FILL writes byte i of dst as byte (i % 8) of the
 * pattern. A failing descriptor may have written part of dst (a fault in
 * the middle of a transfer); one refused before any transfer (every error
 * but DMA_ERR_FAULT / DMA_ERR_PERM) has written nothing.
 *
 * PEER_NOTIFY rings a peer device's doorbell: one 8-byte write of src
 * (little-endian) to PEER_DOORBELL + dst, a peer-to-peer write. len must be
 * 8 (else DMA_ERR_LEN); dst must be 8-byte aligned and below DMA_PEER_PAGE
 * (else DMA_ERR_RANGE); PEER_DOORBELL must be non-zero and 8-byte aligned,
 * with the page not wrapping around 2^64 (else DMA_ERR_PEER). The value is
 * the one the descriptor holds; the doorbell address is PEER_DOORBELL as it
 * is when the descriptor executes. In vfio-user a peer's doorbell is reached
 * through the host: here it is a bus address the host watches (a mailbox in
 * guest memory), written like any other DMA.
 *
 * P2P quiesce. In the migration states RUNNING_P2P and PRE_COPY_P2P the
 * device initiates no peer-to-peer write (PROTOCOL.md §8.2). A PEER_NOTIFY
 * executed then completes at once (DONE, success, like a posted write) and
 * its write is held: queued in the device, in order, up to
 * DMA_PEER_HOLD_MAX (PEER_HELD counts them). The next PEER_NOTIFY finds the
 * queue full and stalls the engine: RING_HEAD stays at it (no status is
 * written), completions not yet signalled are signalled, and nothing more
 * runs until the device leaves the P2P states. Held writes are device
 * state: they survive STOP and migrate with the device, and go out in order,
 * before anything else runs, when the device (the source, or after a
 * migration the destination) reaches RUNNING or PRE_COPY. A write that then
 * fails sets STATUS.ERR_PEER (its descriptor completed long ago). A reset
 * drops them.
 */
#define DMA_DESC_SIZE 32u

struct dma_desc {
	uint16_t opcode;
	uint16_t flags;
	uint32_t len;
	uint64_t src;
	uint64_t dst;
	uint32_t cookie;
	uint32_t status;
};
_Static_assert(sizeof(struct dma_desc) == DMA_DESC_SIZE, "descriptor layout");

#define DMA_DESC_OFF_STATUS 28u

#define DMA_OP_COPY        1u
#define DMA_OP_FILL        2u
#define DMA_OP_PEER_NOTIFY 3u

#define DMA_PEER_PAGE     4096u /* the doorbell page PEER_NOTIFY's dst indexes */
#define DMA_PEER_WRITE    8u    /* bytes per peer write (PEER_NOTIFY len) */
#define DMA_PEER_HOLD_MAX 16u   /* peer writes held in the P2P states */

#define DMA_ST_DONE         (1u << 31)
#define DMA_ST_ECHO_SHIFT   8
#define DMA_ST_ECHO_MASK    (0xffffu << DMA_ST_ECHO_SHIFT)
#define DMA_ST_ERR_MASK     0xffu
#define DMA_ST_MAKE(err, cookie) \
	(DMA_ST_DONE | (((uint32_t)(cookie) & 0xffffu) << DMA_ST_ECHO_SHIFT) | \
	 ((uint32_t)(err) & DMA_ST_ERR_MASK))

/* Error codes in status bits 7..0. */
#define DMA_ERR_NONE    0u
#define DMA_ERR_OPCODE  1u /* unknown opcode */
#define DMA_ERR_FLAGS   2u /* reserved flags set */
#define DMA_ERR_LEN     3u /* len > MAX_XFER */
#define DMA_ERR_RANGE   4u /* src or dst + len wraps around 2^64 */
#define DMA_ERR_OVERLAP 5u /* COPY with overlapping src and dst */
#define DMA_ERR_FAULT   6u /* an address is not mapped */
#define DMA_ERR_PERM    7u /* mapped without the access the op needs */
#define DMA_ERR_IO      8u /* any other transfer failure */
#define DMA_ERR_PEER    9u /* PEER_NOTIFY without a usable PEER_DOORBELL */

#endif /* FERRY_DEV_DMA_REGS_H */
