/*
 * libferry, device side: write an emulated PCI device as a vfio-user server.
 *
 * A device model describes its PCI identity, regions and interrupts in a
 * struct ferry_device_info, fills a small struct ferry_device_ops, and hands
 * both to ferry_device_create(). The library owns the protocol: it validates
 * every message, emulates PCI config space (header, BARs, PM, MSI, MSI-X and
 * PCI Express capabilities), keeps the DMA table, routes interrupts, and
 * calls the model only for what is device-specific (trapped register
 * accesses, reset, notifications).
 *
 * Threads: one thread serves the client's messages (ferry_device_run, or a
 * library thread via ferry_device_start, or the caller's event loop via
 * ferry_device_poll_fd + ferry_device_dispatch). Every ferry_device_ops
 * callback runs on that thread, one at a time (except a reset asked for with
 * ferry_device_reset(), which may run on the asking thread, still one at a
 * time). The DMA and IRQ helpers at the bottom may be called from any
 * thread, e.g. a model's worker threads.
 *
 * Errors are negative errno values; every failure logs one line naming the
 * device.
 */
#ifndef FERRY_DEVICE_H
#define FERRY_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Region indexes of a PCI device (VFIO_PCI_*_REGION_INDEX). */
enum ferry_pci_region {
	FERRY_PCI_BAR0 = 0,
	FERRY_PCI_BAR5 = 5,
	FERRY_PCI_ROM = 6,
	FERRY_PCI_CONFIG = 7,
	FERRY_PCI_VGA = 8,
	FERRY_PCI_NUM_REGIONS = 9,
};

/* Interrupt indexes (VFIO_PCI_*_IRQ_INDEX). */
enum ferry_pci_irq {
	FERRY_IRQ_INTX = 0,
	FERRY_IRQ_MSI = 1,
	FERRY_IRQ_MSIX = 2,
	FERRY_IRQ_ERR = 3,
	FERRY_IRQ_REQ = 4,
	FERRY_IRQ_NUM = 5,
};

/* struct ferry_region.flags */
#define FERRY_REGION_READ     (1u << 0)
#define FERRY_REGION_WRITE    (1u << 1)
#define FERRY_BAR_IO          (1u << 2) /* I/O space BAR (else memory) */
#define FERRY_BAR_MEM64       (1u << 3) /* 64-bit BAR: uses the next BAR slot too */
#define FERRY_BAR_PREFETCH    (1u << 4)

/* A directly mappable part of a region, relative to the region's start. */
struct ferry_mmap_area {
	uint64_t offset;
	uint64_t size;
};

struct ferry_region {
	uint64_t size; /* 0: region absent. BARs: a power of two */
	uint32_t flags;
	/* Optional memory backing for the mmap-able areas: the client maps
	 * mmap_fd at mmap_offset + area.offset. The library duplicates the fd.
	 * -1 (and zero areas): every access is trapped. */
	int mmap_fd;
	uint64_t mmap_offset;
	/* Sparse mmap areas (copied). With an mmap_fd and nr_areas == 0 the
	 * whole region is mappable. Accesses outside the areas are trapped. */
	const struct ferry_mmap_area *areas;
	unsigned nr_areas;
};

/*
 * Device callbacks. All run one at a time under the device's state lock,
 * on the message thread (reset also on a thread calling
 * ferry_device_reset(), device_migration.h), with no other library lock
 * held: they may call every function of this header. Members marked
 * optional may be NULL. Buffers passed in are borrowed for the call.
 */
struct ferry_device_ops {
	/* sizeof(struct ferry_device_ops) as the model was compiled: lets the
	 * table grow without breaking older models. Required. */
	uint32_t size;

	/* A trapped access to region @region (a BAR, the ROM or VGA; config
	 * space is emulated by the library) at @offset, @count bytes (1..8 for
	 * register-style accesses, larger for bulk). Writes take their data from
	 * @buf; reads fill it. Return 0 or a negative errno (sent to the client
	 * as the error of the access). Required if any region is trapped. */
	int (*region_access)(void *opaque, unsigned region, uint64_t offset, void *buf,
			     uint32_t count, bool is_write);

	/* Device reset (DEVICE_RESET or a function-level reset through config
	 * space). The library has already disabled interrupts; the model
	 * stops its work and returns its registers to power-on values.
	 * Optional: without it the device still advertises reset support and
	 * only the library's own state is reset. */
	int (*reset)(void *opaque);

	/* The client mapped guest memory [iova, iova + size). Optional. */
	void (*dma_mapped)(void *opaque, uint64_t iova, uint64_t size, uint32_t prot);

	/* The client is about to unmap [iova, iova + size): after this returns
	 * the library waits for DMA helpers in flight on that range, then
	 * removes it. A model that keeps pointers from ferry_dma_ptr_get()
	 * across calls must drop those into the range here. Optional. */
	void (*dma_unmapping)(void *opaque, uint64_t iova, uint64_t size);

	/* Interrupt vectors [start, start + count) of @index were set up or torn
	 * down, or the guest changed MSI/MSI-X enables in config space.
	 * Optional: models that just call ferry_irq_trigger need not care. */
	void (*irq_changed)(void *opaque, unsigned index, unsigned start, unsigned count);

	/* A client connected (@attached true) or went away (false). After a
	 * disconnect the library has unmapped all DMA and closed all IRQ
	 * eventfds; device state is kept for the next client. Optional. */
	void (*client_changed)(void *opaque, bool attached);

	/* The device entered (@low_power true) or left (false) a low-power
	 * state the client asked for with the low-power device features
	 * (docs/power.md). While low the model may really idle: it receives no
	 * trapped access and no reset without being told false first, and it
	 * must start no DMA and raise no interrupt (the guest quiesced it
	 * before asking for low power). Calls alternate, starting with true.
	 * Optional. */
	void (*power_changed)(void *opaque, bool low_power);
};

struct ferry_pci_id {
	uint16_t vendor_id;
	uint16_t device_id;
	uint16_t subsys_vendor_id;
	uint16_t subsys_id;
	uint8_t revision;
	uint32_t class_code; /* base << 16 | sub << 8 | prog-if */
};

struct ferry_device_info {
	const char *name; /* for log lines; copied */
	struct ferry_pci_id id;
	/* Indexes 0..5 BARs, 6 ROM, 8 VGA. Index 7 (config) is ignored: the
	 * library emulates config space from the fields below. */
	struct ferry_region regions[FERRY_PCI_NUM_REGIONS];
	/* Vectors per interrupt index: INTx 0/1, MSI 0,1,2,4..32, MSI-X
	 * 0..2048, ERR 0/1, REQ 0/1. */
	unsigned irq_count[FERRY_IRQ_NUM];
	/* With MSI-X vectors: the BAR holding the table and PBA, and their
	 * offsets. The library serves accesses to them; keep them out of the
	 * BAR's mmap areas. */
	uint8_t msix_bar;
	uint32_t msix_table_offset;
	uint32_t msix_pba_offset;
	bool pcie; /* PCI Express endpoint: 4 KiB config space, Express capability */
	unsigned max_dma_maps; /* 0: 65535 */
	const struct ferry_device_ops *ops; /* copied; required */
	void *opaque;                       /* passed to every callback */
};

struct ferry_device;

/* Validates @info (failing early, naming what is wrong) and builds the
 * device. No socket yet. Returns 0 and *@out, or a negative errno. */
FERRY_API int ferry_device_create(const struct ferry_device_info *info,
				  struct ferry_device **out);

/* Stops serving, closes every fd, frees. NULL-safe; safe on a device whose
 * ferry_device_start() thread is running (it is stopped and joined first).
 * The model's own threads must be done calling the DMA and IRQ helpers. */
FERRY_API void ferry_device_destroy(struct ferry_device *dev);

/* Creates a listening UNIX socket at @path (a stale socket file there is
 * replaced). Returns 0 or a negative errno. */
FERRY_API int ferry_device_listen(struct ferry_device *dev, const char *path);

/* Serves an already connected vfio-user socket (the backend convention's
 * --fd=FDNUM, or one end of a socketpair) as the current client, instead of
 * or before accepting from a listening socket. Consumes @fd (closed on
 * failure too). -EBUSY if a client is connected. Call it before
 * ferry_device_run/start, or from the thread that runs the loop. Without a
 * listening socket, ferry_device_run returns 0 once this client leaves. */
FERRY_API int ferry_device_attach_fd(struct ferry_device *dev, int fd);

/* Serves clients: accepts one, serves it until it disconnects, accepts the
 * next; returns 0 after ferry_device_stop(), or a negative errno if the
 * listening socket fails. One client at a time: the next waits in the
 * listen backlog. A disconnect keeps the device's state (config space,
 * MSI-X table, model state) and drops the client's: DMA mappings, interrupt
 * eventfds, DMA logging. -ENOTCONN if neither listening nor attached. */
FERRY_API int ferry_device_run(struct ferry_device *dev);

/* ferry_device_run on a library thread. */
FERRY_API int ferry_device_start(struct ferry_device *dev);

/* Makes ferry_device_run return (after the command in progress, if any).
 * With a ferry_device_start thread it also joins that thread, unless called
 * on it. The request itself is an atomic store and an eventfd write, so
 * ferry_device_stop is async-signal-safe for a device served by
 * ferry_device_run (no start thread): call it from a SIGTERM handler there.
 * With a start thread, call it from a thread (pthread_join is not
 * async-signal-safe). A connected client stays connected; run again to
 * serve it, or destroy to drop it. */
FERRY_API void ferry_device_stop(struct ferry_device *dev);

/* Event-loop integration instead of ferry_device_run: poll this fd for
 * readability and call ferry_device_dispatch, which handles whatever is
 * ready (an incoming connection, messages) without blocking. Returns 0, or
 * a negative errno if the device cannot continue. */
FERRY_API int ferry_device_poll_fd(struct ferry_device *dev);
FERRY_API int ferry_device_dispatch(struct ferry_device *dev);

/* The name given at creation. */
FERRY_API const char *ferry_device_name(const struct ferry_device *dev);

/* True while the guest has bus mastering enabled in the command register:
 * a well-behaved model does no DMA without it. Any thread. */
FERRY_API bool ferry_device_bus_master(const struct ferry_device *dev);

/* ---- DMA: the device reading and writing guest memory. Any thread. ----
 *
 * Every device write to guest memory goes through these so that DMA dirty
 * logging sees it. Ranges the client mapped with an fd are reached through
 * the library's mapping (a memcpy); ranges mapped without one are reached
 * with DMA_READ/DMA_WRITE messages to the client (on the twin socket when
 * negotiated), chunked to the client's max_data_xfer_size.
 *
 * Locking: each helper holds the DMA table's read lock for the whole
 * access, so a DMA_UNMAP of the range waits until it is over (and the
 * client's unmap is not answered before). For message-mode ranges that
 * includes the round trip to the client. A thread holding a pointer from
 * ferry_dma_ptr_get() may call the other helpers; they reuse its hold.
 * An access may span adjacent mappings; every part is checked before any
 * byte moves, so a failed access changes nothing.
 *
 * A device stopped for migration (STOP, STOP_COPY, RESUMING, ERROR:
 * device_migration.h) does no DMA: the helpers return -EBUSY then.
 */

/* Copies @len bytes at guest address @iova into @buf. -EFAULT if any byte is
 * unmapped (or the client is gone), -EPERM if the range is not readable.
 * Message-mode ranges: the client's error, -ECONNRESET if it disconnects
 * meanwhile, -ETIMEDOUT if it does not answer, -EIO for a malformed answer. */
FERRY_API int ferry_dma_read(struct ferry_device *dev, uint64_t iova, void *buf, size_t len);

/* Copies @buf to guest address @iova and marks the pages dirty. -EFAULT if
 * any byte is unmapped, -EPERM if the range is not writable; message-mode
 * errors as for ferry_dma_read (the client logs those writes itself). */
FERRY_API int ferry_dma_write(struct ferry_device *dev, uint64_t iova, const void *buf,
			      size_t len);

/* Direct access to fd-backed guest memory, for models that parse rings in
 * place. Returns a pointer to @len bytes at @iova (inside one mapping) and
 * holds the DMA table's read lock against unmapping until
 * ferry_dma_ptr_put(); the hold is short (no blocking while holding: an
 * unmap waits for it, and new DMA from other threads waits behind that
 * unmap). Holds nest per thread: each get needs one put, on the same
 * thread. On failure returns NULL with *@err (may be NULL) set: -EFAULT /
 * -EPERM as above, -ENOTSUP for ranges mapped without an fd (use
 * ferry_dma_read/write there), -EBUSY if this thread holds pointers into 4
 * other devices. @writable asks for a writable range. */
FERRY_API void *ferry_dma_ptr_get(struct ferry_device *dev, uint64_t iova, size_t len,
				  bool writable, int *err);
FERRY_API void ferry_dma_ptr_put(struct ferry_device *dev);

/* Records that the device wrote [iova, iova + len) through a pointer from
 * ferry_dma_ptr_get(). Call it for every such write, before
 * ferry_dma_ptr_put() (so a concurrent report that sees the mark also sees
 * the data). Lock-free when logging is off. */
FERRY_API void ferry_dma_mark_dirty(struct ferry_device *dev, uint64_t iova, size_t len);

/* ---- Interrupts. Any thread. ---- */

/* Raises vector @vector of @index (an eventfd write). 0 if delivered;
 * -ENOENT if the client set no eventfd for it; -EAGAIN if the vector is
 * masked (the library records it as pending: MSI-X PBA bit, MSI pending bit,
 * and delivers it on unmask), or if its mechanism is off in config space
 * (MSI-X or MSI disabled, an MSI vector not allotted, INTx while MSI/MSI-X
 * is on, the function in reset): then nothing is recorded, as hardware
 * sends nothing. A device stopped for migration (device_migration.h)
 * raises nothing either: the vector is recorded pending (-EAGAIN) and
 * delivered once the device runs again. Masks are the guest's (MSI-X
 * function and vector masks, MSI per-vector masks, Command.INTx-Disable) and
 * the client's SET_IRQS MASK. -EINVAL for a vector the device does not have. Takes the device's
 * interrupt mutex for a few loads and one write(); never blocks on the
 * client. */
FERRY_API int ferry_irq_trigger(struct ferry_device *dev, unsigned index, unsigned vector);

#ifdef __cplusplus
}
#endif
#endif /* FERRY_DEVICE_H */
