/*
 * ferry-dev-vram: the datasheet. Register interface shared by the device
 * (vram.c, regs.c, engine.c) and its guest driver (workload.c).
 *
 * Concepts. The device owns VRAM_SIZE bytes of on-device memory (BAR2, a
 * power of two chosen with --size). The host maps it and reads and writes it
 * directly. An internal "engine" also writes it: while the device runs and
 * CONTROL.ENGINE is set, it rewrites ENGINE_RATE pages per second inside a
 * window of pages [ENGINE_FIRST, ENGINE_FIRST + ENGINE_COUNT), choosing the
 * page and its content deterministically from ENGINE_SEED and its own write
 * counter ENGINE_WRITES (vram_engine_page() and vram_engine_word() below), so
 * a host can replay what the engine did. The host should keep its own data
 * outside the engine window (the workload uses the lower half, the engine the
 * upper half by default).
 *
 * CHECKSUM: writing VRAM_CSUM_GO to CSUM_TRIGGER makes the device compute the
 * zlib crc32 of the whole VRAM, store it in CHECKSUM, increment CSUM_COUNT
 * and, if CONTROL.CSUM_IRQ is set, raise MSI-X vector 0. The write returns
 * when the value is ready. It is a snapshot only if nothing writes the VRAM
 * meanwhile: clear CONTROL.ENGINE first (that write returns once the engine
 * is idle) and stop writing through the mapping. Comparing CHECKSUM on the
 * source before a migration with CHECKSUM on the destination after it shows
 * the VRAM arrived intact.
 *
 * Migration and dirty tracking (PRE_COPY). The device streams its VRAM
 * itself, so it must know which pages changed since it sent them:
 *  - Engine writes and trapped BAR2 writes (REGION_WRITE) are tracked
 *    exactly: the writer sets the page's bit in an atomic dirty bitmap after
 *    the store (release); the sender clears the bit before copying the page
 *    (acquire), so a write racing with the copy leaves the bit set and the
 *    page is sent again.
 *  - Host writes through the client's mmap of BAR2 are invisible to the
 *    device (another process's page tables). For those the device keeps a
 *    64-bit hash per 4 KiB page of the exact bytes it sent (hash.h). While
 *    pre-copy rounds run, every round start rehashes a slice of the VRAM
 *    (VRAM_VERIFY_SLICE pages, wrapping around) and marks pages whose hash
 *    changed dirty. On entering STOP_COPY the device (engine stopped) rehashes
 *    every page: a page whose hash differs from what was sent, or is dirty, or
 *    was never sent, goes into the stop-copy data. So no write is ever lost;
 *    a mmap write only becomes visible to dirty_bytes once a slice covers it.
 *    The price is one pass over the VRAM's resident pages at STOP_COPY, at
 *    the speed of reading them (XXH3: about 3 ms for 40 MiB on the 2-vCPU
 *    build VM), on a thread of its own so that it overlaps what the VMM
 *    does next (save.c). A changed page whose 64-bit hash collides with the
 *    old one would be missed: probability 2^-64 per changed page, for data
 *    the host itself wrote (the device is not protecting against its own
 *    host).
 *  - The stream carries a digest of all page hashes; the destination
 *    recomputes it from what it received and refuses a mismatch.
 *  - Pages never written are holes in the memfd: scans find them with
 *    mincore() and SEEK_DATA instead of reading them (which would make the
 *    kernel allocate them), and send them as zero pages; on the destination
 *    a zero page that is still a hole is left alone. A sparse 1 GiB VRAM
 *    migrates without ever becoming resident on either side (CHECKSUM
 *    leaves holes alone too). initial_bytes counts holes as the zero
 *    records they become.
 * The stream format is described in stream.h.
 *
 * Migration states: the engine runs in RUNNING, RUNNING_P2P, PRE_COPY and
 * PRE_COPY_P2P (the device does no peer-to-peer DMA at all, so P2P changes
 * nothing) and is stopped, before the arc completes, in STOP, STOP_COPY and
 * RESUMING. In those three states BAR0 and BAR2 writes fail with -EBUSY
 * (reads work): the device state is frozen.
 *
 * Reset (DEVICE_RESET, or a reset through config space): the engine stops,
 * the registers return to the values below, any migration data session is
 * dropped. The VRAM contents are kept (memory is not cleared on reset).
 *
 * PCI identity: vendor 0xf377 is NOT assigned by the PCI-SIG; it is a made-up
 * id shared by ferry's test devices (see devices/dma/regs.h). Never ship it.
 *
 * Byte order: registers are little-endian.
 */
#ifndef FERRY_DEV_VRAM_REGS_H
#define FERRY_DEV_VRAM_REGS_H

#include <stdint.h>

/* ---- PCI identity ---- */
#define VRAM_PCI_VENDOR_ID  0xf377u  /* made up, see above */
#define VRAM_PCI_DEVICE_ID  0x0002u
#define VRAM_PCI_SUBSYS_VID 0xf377u
#define VRAM_PCI_SUBSYS_ID  0x0002u
#define VRAM_PCI_REVISION   0x01u
#define VRAM_PCI_CLASS      0x058000u /* memory controller, other */

/* ---- BARs ----
 * BAR0: 4 KiB, 32-bit memory, fully trapped. Registers below 0x800, the
 *       MSI-X table (1 vector) at 0x800 and its PBA at 0xc00 (both served by
 *       libferry).
 * BAR2: VRAM_SIZE bytes (a power of two, VRAM_MIN_SIZE..VRAM_MAX_SIZE),
 *       64-bit prefetchable memory, memfd-backed, one sparse mmap area
 *       covering all of it. Trapped accesses (REGION_READ/WRITE) read and
 *       write the same bytes, any size and alignment.
 */
#define VRAM_BAR_REGS          0
#define VRAM_BAR_REGS_SIZE     0x1000u
#define VRAM_MSIX_TABLE_OFFSET 0x800u
#define VRAM_MSIX_PBA_OFFSET   0xc00u
#define VRAM_MSIX_VECTORS      1u
#define VRAM_MSIX_VEC_CSUM     0u
#define VRAM_BAR_VRAM          2

#define VRAM_PAGE_SIZE 4096u              /* tracking and streaming granularity */
#define VRAM_MIN_SIZE  (64ull << 10)      /* 64 KiB */
#define VRAM_MAX_SIZE  (64ull << 30)      /* 64 GiB */

/* ---- BAR0 registers ----
 * Every register is 32 bits wide and 4-byte aligned; a 64-bit register is
 * two of them (low word first). Accesses are 4 bytes at a 4-aligned offset,
 * or 8 bytes at an 8-aligned offset (two registers at once; one atomic read
 * for a 64-bit register). Other widths or alignments fail (-EINVAL).
 * Undefined offsets below 0x800 read 0 and ignore writes.
 *
 *  off    name           access  reset  meaning
 *  0x000  ID             RO             VRAM_ID_VALUE
 *  0x004  VERSION        RO             VRAM_VERSION_VALUE (major << 16 | minor)
 *  0x008  CONTROL        RW      0      VRAM_CTRL_*. A write that clears ENGINE
 *                                       returns once the engine is idle.
 *  0x00c  STATUS         RO             VRAM_STS_*
 *  0x010  VRAM_SIZE      RO 64          bytes of VRAM (= BAR2 size)
 *  0x018  PAGE_SIZE      RO             VRAM_PAGE_SIZE
 *  0x01c  ENGINE_RATE    RW      1000   engine page writes per second; larger
 *                                       values are clamped to VRAM_RATE_MAX;
 *                                       0 keeps the engine idle
 *  0x020  ENGINE_SEED    RW      1      seed of the engine's page sequence
 *  0x024  ENGINE_FIRST   RW      N/2    first page of the engine window
 *  0x028  ENGINE_COUNT   RW      N/2    pages in the window; the window is
 *                                       clipped to the VRAM; empty: idle
 *  0x02c  CSUM_TRIGGER   WO             write VRAM_CSUM_GO: compute CHECKSUM;
 *                                       other values are ignored; reads 0
 *  0x030  CHECKSUM       RO      0      crc32 of the VRAM at the last trigger
 *  0x034  CSUM_COUNT     RO      0      checksums computed
 *  0x038  GENERATION     RO 64   0      migrations this device state went
 *                                       through: a restored device holds the
 *                                       source's value while stopped (a save
 *                                       of it equals the source's) and counts
 *                                       one more as it starts running
 *  0x040  ENGINE_WRITES  RO 64   0      page writes done by the engine; also
 *                                       the index of its next write
 * (N = VRAM_SIZE / VRAM_PAGE_SIZE.) Everything but ID, VERSION, STATUS,
 * VRAM_SIZE and PAGE_SIZE is device state carried by a migration.
 */
#define VRAM_REG_ID            0x000u
#define VRAM_REG_VERSION       0x004u
#define VRAM_REG_CONTROL       0x008u
#define VRAM_REG_STATUS        0x00cu
#define VRAM_REG_VRAM_SIZE     0x010u
#define VRAM_REG_VRAM_SIZE_HI  0x014u
#define VRAM_REG_PAGE_SIZE     0x018u
#define VRAM_REG_ENGINE_RATE   0x01cu
#define VRAM_REG_ENGINE_SEED   0x020u
#define VRAM_REG_ENGINE_FIRST  0x024u
#define VRAM_REG_ENGINE_COUNT  0x028u
#define VRAM_REG_CSUM_TRIGGER  0x02cu
#define VRAM_REG_CHECKSUM      0x030u
#define VRAM_REG_CSUM_COUNT    0x034u
#define VRAM_REG_GENERATION    0x038u
#define VRAM_REG_GENERATION_HI 0x03cu
#define VRAM_REG_ENGINE_WRITES 0x040u
#define VRAM_REG_ENGINE_WRITES_HI 0x044u
#define VRAM_REG_END           0x048u /* first offset past the register file */

#define VRAM_ID_VALUE      0x4d415256u /* "VRAM" */
#define VRAM_VERSION_VALUE 0x00010000u /* 1.0 */

#define VRAM_CTRL_ENGINE   (1u << 0) /* run the engine (while the device runs) */
#define VRAM_CTRL_CSUM_IRQ (1u << 1) /* raise MSI-X vector 0 when a checksum is ready */
#define VRAM_CTRL_MASK     (VRAM_CTRL_ENGINE | VRAM_CTRL_CSUM_IRQ)

#define VRAM_STS_ENGINE_ACTIVE (1u << 0) /* the engine is writing (not idle) */
#define VRAM_STS_FROZEN        (1u << 1) /* STOP, STOP_COPY or RESUMING */

#define VRAM_CSUM_GO 1u

#define VRAM_RATE_DEFAULT 1000u
#define VRAM_RATE_MAX     262144u /* pages/s: 1 GiB/s of engine writes */
#define VRAM_SEED_DEFAULT 1u

/* ---- The engine's write sequence ----
 * Write number n (n = ENGINE_WRITES before it) with seed s and a window of
 * count pages starting at first:
 *   r    = vram_mix64(((uint64_t)s << 32) ^ n ^ 0x5652414d454e47ull)
 *   page = first + r % count
 *   if (r >> 60) == 0 the page becomes all zeroes (1 write in 16),
 *   else 64-bit word i of the page (little-endian) = vram_engine_word(r, i).
 */
static inline uint64_t vram_mix64(uint64_t x)
{
	/* splitmix64's finalizer: a bijection with good avalanche. */
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static inline uint64_t vram_engine_draw(uint32_t seed, uint64_t n)
{
	return vram_mix64(((uint64_t)seed << 32) ^ n ^ 0x5652414d454e47ull);
}

static inline int vram_engine_zero(uint64_t r)
{
	return (r >> 60) == 0;
}

static inline uint64_t vram_engine_word(uint64_t r, uint64_t i)
{
	return vram_mix64(r + i * 0x9e3779b97f4a7c15ull);
}

#endif /* FERRY_DEV_VRAM_REGS_H */
