/*
 * vfio-user wire format: every message struct, command id and flag, in one
 * place. Layouts are protocol facts (QEMU docs/interop/vfio-user.rst); see
 * shared/reference/PROTOCOL.md for the section numbers cited below.
 *
 * All integers are in host byte order; all structs are packed and their
 * sizes are asserted at the bottom. VFIO constants shared with the kernel
 * (region/irq flags, feature indexes, migration states) come from
 * <linux/vfio.h> through vfio_compat.h; only vfio-user's own are here.
 */
#ifndef FERRY_VFIO_USER_H
#define FERRY_VFIO_USER_H

#include <stdint.h>
#include <ferry/vfio_compat.h>

/* §1.2 header flags */
#define VFIO_USER_F_TYPE_MASK    0xfu
#define VFIO_USER_F_TYPE_COMMAND 0x0u
#define VFIO_USER_F_TYPE_REPLY   0x1u
#define VFIO_USER_F_NO_REPLY     0x10u
#define VFIO_USER_F_ERROR        0x20u

/* §3 commands */
enum vfio_user_command {
	VFIO_USER_VERSION = 1,
	VFIO_USER_DMA_MAP = 2,
	VFIO_USER_DMA_UNMAP = 3,
	VFIO_USER_DEVICE_GET_INFO = 4,
	VFIO_USER_DEVICE_GET_REGION_INFO = 5,
	VFIO_USER_DEVICE_GET_REGION_IO_FDS = 6,
	VFIO_USER_DEVICE_GET_IRQ_INFO = 7,
	VFIO_USER_DEVICE_SET_IRQS = 8,
	VFIO_USER_REGION_READ = 9,
	VFIO_USER_REGION_WRITE = 10,
	VFIO_USER_DMA_READ = 11,
	VFIO_USER_DMA_WRITE = 12,
	VFIO_USER_DEVICE_RESET = 13,
	/* 14 was DIRTY_PAGES (migration v1): never implemented. */
	VFIO_USER_REGION_WRITE_MULTI = 15,
	VFIO_USER_DEVICE_FEATURE = 16,
	VFIO_USER_MIG_DATA_READ = 17,
	VFIO_USER_MIG_DATA_WRITE = 18,
	VFIO_USER_MAX_COMMAND = 19,
};

#define VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE (1024u * 1024u)
#define VFIO_USER_DEFAULT_MAX_DMA_MAPS 65535u
#define VFIO_USER_DEFAULT_PGSIZES 4096u
#define VFIO_USER_MAJOR 0
#define VFIO_USER_MINOR 2

/* §6.1 DMA_MAP flags (0x4/0x8 are a libvfio-user extension) */
#define VFIO_USER_F_DMA_REGION_READ  0x1u
#define VFIO_USER_F_DMA_REGION_WRITE 0x2u
#define VFIO_USER_F_DMA_REGION_MMAP  0x4u
#define VFIO_USER_F_DMA_REGION_FILE_IO 0x8u

struct vfio_user_header {
	uint16_t msg_id;
	uint16_t cmd;
	uint32_t msg_size; /* includes this header */
	uint32_t flags;
	uint32_t error_no;
} __attribute__((packed));

/* §2.1 VERSION: followed by NUL-terminated JSON capabilities */
struct vfio_user_version {
	uint16_t major;
	uint16_t minor;
	char data[];
} __attribute__((packed));

/* §6.1 */
struct vfio_user_dma_map {
	uint32_t argsz;
	uint32_t flags;
	uint64_t offset;
	uint64_t addr;
	uint64_t size;
} __attribute__((packed));

/* §6.2 */
struct vfio_user_dma_unmap {
	uint32_t argsz;
	uint32_t flags;
	uint64_t addr;
	uint64_t size;
} __attribute__((packed));

/* §3.1: the kernel's vfio_device_info without cap_offset */
struct vfio_user_device_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t num_regions;
	uint32_t num_irqs;
} __attribute__((packed));

/* §4.2: same layout as the kernel's struct vfio_region_info */
struct vfio_user_region_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t cap_offset;
	uint64_t size;
	uint64_t offset;
} __attribute__((packed));

struct vfio_user_cap_header {
	uint16_t id;
	uint16_t version;
	uint32_t next;
} __attribute__((packed));

struct vfio_user_sparse_mmap_area {
	uint64_t offset;
	uint64_t size;
} __attribute__((packed));

struct vfio_user_sparse_mmap {
	struct vfio_user_cap_header header;
	uint32_t nr_areas;
	uint32_t reserved;
	struct vfio_user_sparse_mmap_area areas[];
} __attribute__((packed));

struct vfio_user_region_type {
	struct vfio_user_cap_header header;
	uint32_t type;
	uint32_t subtype;
} __attribute__((packed));

/* §4.3 GET_REGION_IO_FDS: head, then `count` entries of the SPEC layout */
struct vfio_user_region_io_fds {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t count;
} __attribute__((packed));

struct vfio_user_ioeventfd {
	uint64_t offset;
	uint64_t size;
	uint32_t fd_index;
	uint32_t type; /* 0 = ioeventfd */
	uint32_t flags;
	uint32_t padding;
	uint64_t datamatch;
} __attribute__((packed));

/* §5.2 */
struct vfio_user_irq_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t count;
} __attribute__((packed));

/* §5.3: DATA_BOOL adds `count` bytes; eventfds travel as SCM_RIGHTS */
struct vfio_user_irq_set {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t start;
	uint32_t count;
	uint8_t data[];
} __attribute__((packed));

/* §3.2 REGION_READ / REGION_WRITE */
struct vfio_user_region_access {
	uint64_t offset;
	uint32_t region;
	uint32_t count;
	uint8_t data[];
} __attribute__((packed));

/* §6.3 DMA_READ / DMA_WRITE (SPEC / libvfio-user layout) */
struct vfio_user_dma_region_access {
	uint64_t addr;
	uint64_t count;
	uint8_t data[];
} __attribute__((packed));

/* §3.4 REGION_WRITE_MULTI */
#define VFIO_USER_MULTI_DATA 8
#define VFIO_USER_MULTI_MAX 200
struct vfio_user_write_multi_entry {
	uint64_t offset;
	uint32_t region;
	uint32_t count;
	uint8_t data[VFIO_USER_MULTI_DATA];
} __attribute__((packed));

struct vfio_user_write_multi {
	uint64_t wr_cnt;
	struct vfio_user_write_multi_entry wrs[];
} __attribute__((packed));

/* §7.1 DEVICE_FEATURE envelope */
struct vfio_user_device_feature {
	uint32_t argsz;
	uint32_t flags; /* VFIO_DEVICE_FEATURE_MASK | GET | SET | PROBE */
	uint8_t data[];
} __attribute__((packed));

/* §7.3 */
struct vfio_user_feature_migration {
	uint64_t flags;
} __attribute__((packed));

/* §7.4 */
struct vfio_user_feature_mig_state {
	uint32_t device_state;
	int32_t data_fd; /* unused in vfio-user */
} __attribute__((packed));

/* §7.5: ranges and bitmap are inline, not pointers as in the kernel */
struct vfio_user_dma_logging_range {
	uint64_t iova;
	uint64_t length;
} __attribute__((packed));

struct vfio_user_dma_logging_control {
	uint64_t page_size;
	uint32_t num_ranges;
	uint32_t reserved;
	struct vfio_user_dma_logging_range ranges[];
} __attribute__((packed));

struct vfio_user_dma_logging_report {
	uint64_t iova;
	uint64_t length;
	uint64_t page_size;
	uint64_t bitmap[];
} __attribute__((packed));

/* §7.6 LOW_POWER_ENTRY_WITH_WAKEUP (in vfio-user the eventfd is an SCM_RIGHTS fd) */
struct vfio_user_low_power_entry_with_wakeup {
	int32_t wakeup_eventfd;
	uint32_t reserved;
} __attribute__((packed));

/* §7.7 MIG_DATA_READ / MIG_DATA_WRITE */
struct vfio_user_mig_data {
	uint32_t argsz;
	uint32_t size;
	uint8_t data[];
} __attribute__((packed));

/*
 * ferry extension "precopy_info" (docs/protocol-extensions.md): DEVICE_FEATURE
 * index FERRY_FEATURE_PRECOPY_INFO, GET only, reply data = struct
 * vfio_user_precopy_info (the kernel's struct vfio_precopy_info, argsz 24).
 * Used only when both peers listed "precopy_info" under "ferry" in VERSION.
 * The index lies far above the kernel's feature numbers so it cannot collide.
 */
#define FERRY_FEATURE_PRECOPY_INFO 0xff01u

struct vfio_user_precopy_info {
	uint32_t argsz;
	uint32_t flags;
	uint64_t initial_bytes;
	uint64_t dirty_bytes;
} __attribute__((packed));

/*
 * ferry extension "dirty_shm" (docs/protocol-extensions.md): DMA logging
 * reports written into memory the client shares with the server.
 * DEVICE_FEATURE index FERRY_FEATURE_DIRTY_SHM:
 *   SET, data struct vfio_user_dirty_shm_set + one sealed memfd: registers
 *       the area (size 0 and no fd: unregisters);
 *   GET, request data struct vfio_user_dma_logging_report (no bitmap):
 *       DMA_LOGGING_REPORT into the area; reply data struct
 *       vfio_user_dirty_shm_report. Area layout for a report of N bitmap
 *       words: S = ceil(N / 64) summary words at offset 0 (bit i set iff
 *       bitmap word i is non-zero; all S written), then from offset 8 * S
 *       the non-zero bitmap words only, packed, in increasing i. The area
 *       must hold S + N words (the worst case).
 */
#define FERRY_FEATURE_DIRTY_SHM 0xff03u

struct vfio_user_dirty_shm_set {
	uint64_t size;  /* bytes of the area, a multiple of 8; 0: unregister */
	uint64_t flags; /* 0 */
} __attribute__((packed));

struct vfio_user_dirty_shm_report {
	uint64_t iova;          /* echo of the request */
	uint64_t length;
	uint64_t page_size;
	uint64_t nonzero_words; /* packed words written (= summary bits set) */
} __attribute__((packed));

/*
 * ferry extension "mig_shm" (docs/protocol-extensions.md): migration data
 * through a shared memory buffer instead of message payloads.
 * FERRY_FEATURE_MIG_SHM, SET with one fd (a memfd sealed against
 * shrinking): data = struct vfio_user_mig_shm; size 0 and no fd drops it.
 * FERRY_FEATURE_MIG_SHM_DATA, data = struct vfio_user_mig_shm_data:
 * GET = MIG_DATA_READ into [offset, offset + size) of the buffer (the reply
 * carries the same struct with size = bytes produced), SET = MIG_DATA_WRITE
 * from there.
 */
#define FERRY_FEATURE_MIG_SHM 0xff02u
#define FERRY_FEATURE_MIG_SHM_DATA 0xff04u

struct vfio_user_mig_shm {
	uint64_t size;     /* bytes of the fd to map; 0: drop the buffer */
	uint32_t flags;    /* 0 */
	uint32_t reserved; /* 0 */
} __attribute__((packed));

struct vfio_user_mig_shm_data {
	uint64_t offset; /* in the buffer */
	uint32_t size;   /* request: bytes wanted / given; GET reply: bytes produced */
	uint32_t flags;  /* 0 */
} __attribute__((packed));

_Static_assert(sizeof(struct vfio_user_header) == 16, "header");
_Static_assert(sizeof(struct vfio_user_version) == 4, "version");
_Static_assert(sizeof(struct vfio_user_dma_map) == 32, "dma_map");
_Static_assert(sizeof(struct vfio_user_dma_unmap) == 24, "dma_unmap");
_Static_assert(sizeof(struct vfio_user_device_info) == 16, "device_info");
_Static_assert(sizeof(struct vfio_user_region_info) == 32, "region_info");
_Static_assert(sizeof(struct vfio_user_cap_header) == 8, "cap header");
_Static_assert(sizeof(struct vfio_user_sparse_mmap) == 16, "sparse head");
_Static_assert(sizeof(struct vfio_user_sparse_mmap_area) == 16, "sparse area");
_Static_assert(sizeof(struct vfio_user_region_io_fds) == 16, "io_fds head");
_Static_assert(sizeof(struct vfio_user_ioeventfd) == 40, "ioeventfd");
_Static_assert(sizeof(struct vfio_user_irq_info) == 16, "irq_info");
_Static_assert(sizeof(struct vfio_user_irq_set) == 20, "irq_set");
_Static_assert(sizeof(struct vfio_user_region_access) == 16, "region_access");
_Static_assert(sizeof(struct vfio_user_dma_region_access) == 16, "dma access");
_Static_assert(sizeof(struct vfio_user_write_multi_entry) == 24, "multi entry");
_Static_assert(sizeof(struct vfio_user_device_feature) == 8, "feature");
_Static_assert(sizeof(struct vfio_user_feature_migration) == 8, "migration");
_Static_assert(sizeof(struct vfio_user_feature_mig_state) == 8, "mig_state");
_Static_assert(sizeof(struct vfio_user_dma_logging_control) == 16, "log control");
_Static_assert(sizeof(struct vfio_user_dma_logging_range) == 16, "log range");
_Static_assert(sizeof(struct vfio_user_dma_logging_report) == 24, "log report");
_Static_assert(sizeof(struct vfio_user_mig_data) == 8, "mig_data");
_Static_assert(sizeof(struct vfio_user_precopy_info) == 24, "precopy_info");
_Static_assert(sizeof(struct vfio_user_mig_shm) == 16, "mig_shm");
_Static_assert(sizeof(struct vfio_user_mig_shm_data) == 16, "mig_shm_data");
_Static_assert(sizeof(struct vfio_user_dirty_shm_set) == 16, "dirty_shm set");
_Static_assert(sizeof(struct vfio_user_dirty_shm_report) == 32, "dirty_shm report");

#endif /* FERRY_VFIO_USER_H */
