/*
 * libferry, client side: attach any vfio-user device and drive it, as a VMM
 * does. One struct ferry_client is one connection to one device server.
 *
 * Threads: every function may be called from any thread; requests from
 * several threads are pipelined on the socket and matched by msg_id. The
 * server's own requests (DMA_READ/DMA_WRITE on guest memory mapped without
 * an fd) are served by a library thread, so the caller never has to poll.
 *
 * Errors are negative errno values; an error reply from the server comes
 * back as its errno, and every failure logs one line naming the device
 * (except DEVICE_FEATURE, whose failures are how support is discovered: the
 * caller reports them). A reply that breaks the protocol (too short, wrong
 * echo, unexpected fds: all closed) is -EPROTO; no reply within timeout_ms
 * is -ETIMEDOUT; a server that went away is -ECONNRESET, for this and every
 * later call.
 */
#ifndef FERRY_CLIENT_H
#define FERRY_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/common.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ferry_client;

struct ferry_client_options {
	const char *name;       /* for log lines; default: the socket path */
	int timeout_ms;         /* per request; 0: 30 s; -1: none */
	bool no_twin_socket;    /* do not offer a twin socket */
	bool no_extensions;     /* offer no ferry protocol extensions (interop testing) */
};

/* What the server announced in VERSION. */
struct ferry_server_caps {
	uint16_t major, minor;
	uint32_t max_msg_fds;
	uint32_t max_data_xfer_size;
	uint32_t max_dma_maps;
	uint64_t pgsizes;
	bool twin_socket;
	bool write_multiple;
	uint32_t extensions; /* ferry extensions both sides agreed on (FERRY_EXT_*) */
};

#define FERRY_EXT_PRECOPY_INFO (1u << 0)
#define FERRY_EXT_MIG_SHM      (1u << 1)
#define FERRY_EXT_LOW_POWER    (1u << 2)
#define FERRY_EXT_DIRTY_SHM    (1u << 3)

/* Connects to the server at @path and negotiates VERSION. @opts may be NULL.
 * We offer max_msg_fds 16, max_data_xfer_size 1 MiB, a twin socket (unless
 * no_twin_socket) and every ferry extension (unless no_extensions); a
 * library thread then serves the server's DMA_READ / DMA_WRITE. */
FERRY_API int ferry_client_connect(const char *path, const struct ferry_client_options *opts,
				   struct ferry_client **out);
/* Same over an already connected socket, which it consumes. */
FERRY_API int ferry_client_connect_fd(int fd, const struct ferry_client_options *opts,
				      struct ferry_client **out);
/* Unmaps every region mapping, stops the service thread, closes. NULL-safe.
 * Must not race with any other call on @c. */
FERRY_API void ferry_client_close(struct ferry_client *c);

FERRY_API const struct ferry_server_caps *ferry_client_server_caps(const struct ferry_client *c);
FERRY_API const char *ferry_client_name(const struct ferry_client *c);

/* ---- Device information ---- */

struct ferry_device_desc {
	uint32_t flags; /* VFIO_DEVICE_FLAGS_RESET | VFIO_DEVICE_FLAGS_PCI */
	uint32_t num_regions;
	uint32_t num_irqs;
};
FERRY_API int ferry_client_device_info(struct ferry_client *c, struct ferry_device_desc *out);

struct ferry_region_desc {
	uint32_t index;
	uint32_t flags;       /* VFIO_REGION_INFO_FLAG_READ | WRITE | MMAP | CAPS */
	uint64_t size;
	uint64_t offset;      /* mmap offset in the region's fd */
	bool has_fd;          /* the server sent an fd for mmap */
	bool has_sparse;      /* VFIO_REGION_INFO_CAP_SPARSE_MMAP present (else, with an
				 fd, the whole region is mappable) */
	unsigned nr_areas;    /* sparse mmap areas (VFIO_REGION_INFO_CAP_SPARSE_MMAP) */
	struct { uint64_t offset, size; } *areas; /* owned by the client object */
	bool has_type;        /* VFIO_REGION_INFO_CAP_TYPE present */
	uint32_t type, subtype;
};
/* Queries region @index (retrying with a larger argsz when the server asks),
 * once: later calls return the cached description, which stays valid until
 * the client is closed. The capability chain is validated (offsets inside
 * the reply, no loops, areas inside the region); the region's fd is kept
 * for ferry_client_region_map(). -EINVAL if @index >= num_regions. */
FERRY_API int ferry_client_region_info(struct ferry_client *c, unsigned index,
				       const struct ferry_region_desc **out);

/* Maps the mmap-able areas of region @index (all of them, each at its offset
 * inside one reserved range the size of the region; the rest of the range
 * is inaccessible). Mapping a mapped region returns the same base. Returns
 * the base address, valid until unmapped or close. Regions without an fd:
 * NULL and -ENODEV in *err; areas not page-aligned: -EINVAL. @err may be
 * NULL. */
FERRY_API void *ferry_client_region_map(struct ferry_client *c, unsigned index, int *err);
FERRY_API void ferry_client_region_unmap(struct ferry_client *c, unsigned index);

struct ferry_irq_desc {
	uint32_t index;
	uint32_t flags; /* VFIO_IRQ_INFO_* */
	uint32_t count;
};
FERRY_API int ferry_client_irq_info(struct ferry_client *c, unsigned index,
				    struct ferry_irq_desc *out);

/* ---- Region access (trapped): split into chunks the server accepts ---- */

FERRY_API int ferry_client_region_read(struct ferry_client *c, unsigned index, uint64_t offset,
				       void *buf, size_t len);
FERRY_API int ferry_client_region_write(struct ferry_client *c, unsigned index,
					uint64_t offset, const void *buf, size_t len);
/* Convenience for 4- and 8-byte registers (one REGION_READ / REGION_WRITE). */
FERRY_API int ferry_client_read32(struct ferry_client *c, unsigned index, uint64_t offset,
				  uint32_t *val);
FERRY_API int ferry_client_write32(struct ferry_client *c, unsigned index, uint64_t offset,
				   uint32_t val);
FERRY_API int ferry_client_read64(struct ferry_client *c, unsigned index, uint64_t offset,
				  uint64_t *val);
FERRY_API int ferry_client_write64(struct ferry_client *c, unsigned index, uint64_t offset,
				   uint64_t val);

/* ---- Interrupts ---- */

/* Sets eventfds for vectors [start, start + count) of @index: fds[i] for
 * vector start + i, -1 to tear that vector down. fds are duplicated by the
 * kernel in transit: the caller keeps its own. Split into messages of at most
 * the server's max_msg_fds and into runs of set / torn-down vectors; if one
 * message fails, the earlier ones stay applied. */
FERRY_API int ferry_client_set_irq_eventfds(struct ferry_client *c, unsigned index,
					    unsigned start, unsigned count, const int *fds);
/* Tears down every vector of @index (DATA_NONE|TRIGGER, count 0). */
FERRY_API int ferry_client_disable_irqs(struct ferry_client *c, unsigned index);
/* MASK / UNMASK / TRIGGER (VFIO_IRQ_SET_ACTION_*) on a vector range, DATA_NONE. */
FERRY_API int ferry_client_irq_action(struct ferry_client *c, unsigned index, unsigned start,
				      unsigned count, uint32_t action);

/* ---- DMA: guest memory the device may access ---- */

/* Maps guest memory [iova, iova + size). @fd (duplicated in transit; -1 for
 * none) is what the server mmaps, at @fd_offset. @vaddr is this process's
 * own mapping of the same memory: the library serves the server's
 * DMA_READ/DMA_WRITE requests on it (required when fd is -1; without it the
 * library keeps its own duplicate of @fd and serves them with pread/pwrite).
 * @prot: VFIO_DMA_MAP_FLAG_READ | WRITE, which also bounds what the server's
 * requests may do (-EPERM answers otherwise). iova, size and fd_offset must
 * be aligned to the server's smallest page size. Overlapping an existing
 * mapping: -EEXIST, nothing sent. */
FERRY_API int ferry_client_dma_map(struct ferry_client *c, uint64_t iova, uint64_t size,
				   uint32_t prot, int fd, uint64_t fd_offset, void *vaddr);
/* Unmaps exactly one earlier mapping (-ENOENT otherwise, nothing sent). The
 * server's requests on the range are served until its reply arrives. */
FERRY_API int ferry_client_dma_unmap(struct ferry_client *c, uint64_t iova, uint64_t size);
/* DMA_UNMAP with VFIO_DMA_UNMAP_FLAG_ALL: forgets every mapping. */
FERRY_API int ferry_client_dma_unmap_all(struct ferry_client *c);

/* Guest memory the library wrote while serving DMA_WRITE requests is
 * reported to this callback (the server cannot log it: PROTOCOL.md §6.3), as
 * the exact byte range written: round it out to your page size. Called on
 * the service thread, never concurrently with itself; it must not call
 * ferry_client_set_dirty_callback(). Setting a new callback (or NULL, which
 * disables) waits for a call in progress, so the old @opaque may be freed
 * once this returns. */
typedef void (*ferry_client_dirty_fn)(void *opaque, uint64_t iova, uint64_t len);
FERRY_API void ferry_client_set_dirty_callback(struct ferry_client *c, ferry_client_dirty_fn fn,
					       void *opaque);

/* ---- Reset and device features ---- */

FERRY_API int ferry_client_reset(struct ferry_client *c);

/* The DEVICE_FEATURE envelope. @flags is the feature index | GET / SET /
 * PROBE. @in (@in_len bytes) is the request data; for GET, @out receives up
 * to @out_cap bytes of reply data and *@out_len the length the server sent.
 * @fds (not consumed) travel with the request. */
FERRY_API int ferry_client_feature(struct ferry_client *c, uint32_t flags, const void *in,
				   size_t in_len, const int *fds, unsigned nfds, void *out,
				   size_t out_cap, size_t *out_len);
/* 0 if the server supports @feature with the operations in @ops
 * (VFIO_DEVICE_FEATURE_GET / SET), a negative errno otherwise. */
FERRY_API int ferry_client_feature_probe(struct ferry_client *c, uint32_t feature, uint32_t ops);

#ifdef __cplusplus
}
#endif
#endif /* FERRY_CLIENT_H */
