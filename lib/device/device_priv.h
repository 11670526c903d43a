/*
 * Device side internals shared by the files of lib/device (never installed).
 *
 * One struct ferry_device per emulated function. It owns:
 *  - the model's description (copied at creation) and its ops table;
 *  - the library-emulated state that outlives a client: config space, the
 *    MSI-X table and PBA, interrupt masks, the DMA table and the dirty log;
 *  - at most one client connection (struct conn) at a time.
 *
 * Files, one concern each:
 *   device.c    create/destroy, sockets, the message loop, connect/disconnect
 *   dispatch.c  the command table: the one place deciding what a peer may send
 *   version.c   VERSION negotiation and the twin socket
 *   region.c    DEVICE_GET_INFO, region info, REGION_READ/WRITE(_MULTI), IO_FDS
 *   config.c    config space accesses and their events (bus master, MSI, FLR)
 *   msix.c      MSI-X table and PBA storage
 *   irq.c       GET_IRQ_INFO, SET_IRQS, ferry_irq_trigger, masking, pending
 *   dma.c       DMA_MAP/UNMAP and the public DMA helpers
 *   feature.c   the DEVICE_FEATURE envelope and the feature registry
 *   logging.c   DMA_LOGGING_START/STOP/REPORT on top of dirty_log
 *   reset.c     DEVICE_RESET and function-level reset
 *
 * Locks (never taken in the reverse order; no ops callback runs under any):
 *   irq_lock   config space, MSI-X table/PBA, eventfds, masks, pending bits.
 *              Short holds; taken by ferry_irq_trigger from any thread.
 *   dma table  its rwlock (dma_table.h) also guards dma_chan/dma_xfer below
 *              and the dirty log (dirty_log.h contract).
 * Everything else is touched only by the message thread.
 */
#ifndef FERRY_DEVICE_PRIV_H
#define FERRY_DEVICE_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <ferry/device.h>
#include <ferry/vfio_user.h>

#include "device/dirty_log.h"
#include "device/dma_table.h"
#include "device/pci_config.h"
#include "wire/caps.h"
#include "wire/wire.h"

/* What ferry advertises in VERSION. */
#define DEV_MAX_DATA_XFER (1024u * 1024u)
#define DEV_PGSIZES 4096u
/* Most sparse mmap areas one region may have (keeps region info small). */
#define DEV_MAX_MMAP_AREAS 64u

struct msix; /* msix.c */

/* One client connection. */
struct conn {
	struct wire_chan *chan; /* client commands and our replies */
	struct wire_chan *twin; /* our DMA_READ/WRITE when negotiated, else NULL */
	bool is_negotiated;
	bool is_dropping;       /* a handler asked to close the connection */
	struct wire_caps client_caps;
	struct wire_caps caps;  /* ours, as negotiated */
};

/* Interrupt state of one index (irq.c). */
struct irq_index {
	unsigned count;
	int *efd;           /* [count] eventfds from the client, -1 when unset */
	uint64_t *lib_mask; /* SET_IRQS MASK/UNMASK bits, (count + 63) / 64 words */
	uint64_t *pending;  /* raised while masked, delivered on unmask */
};

struct ferry_device {
	char name[64];
	struct ferry_device_info info; /* copy: name, ops, areas point into this object */
	struct ferry_device_ops ops;
	struct ferry_mmap_area *areas[FERRY_PCI_NUM_REGIONS];
	int region_fd[FERRY_PCI_NUM_REGIONS]; /* duplicated mmap_fd or -1 */

	struct pci_config *cfg;
	struct msix *msix;
	struct dma_table *dma;
	struct dirty_log *log;

	/* irq.c; guarded by irq_lock */
	pthread_mutex_t irq_lock;
	bool has_irq_lock;
	struct irq_index irq[FERRY_IRQ_NUM];
	bool is_in_reset; /* triggers are dropped while the model resets */
	atomic_bool bus_master;

	/* Under the dma table lock: the channel DMA messages go out on and the
	 * largest data count one may carry. NULL between clients. */
	struct wire_chan *dma_chan;
	uint32_t dma_xfer;

	/* logging.c: the START request in force (for repeated STARTs) */
	uint64_t log_req_page_size;
	uint32_t log_req_nranges;
	struct vfio_user_dma_logging_range *log_req_ranges;

	/* migration state, for dispatch gating (RUNNING until migration lands) */
	uint32_t mig_state;

	/* device.c: sockets and the loop */
	int listen_fd;
	char *sock_path;
	int epoll_fd;
	int stop_fd;
	atomic_bool is_stopping;
	pthread_t thread;
	bool has_thread;
	struct conn *conn;
};

/* ---- dispatch.c ---- */
/* Handles one command taken from @c; consumes @m. */
void dispatch_command(struct ferry_device *dev, struct conn *c, struct wire_msg *m);

/* Sends a success reply; used by handlers (which then return 0). */
int conn_reply(struct conn *c, const struct wire_msg *m, const struct iovec *iov, int iovcnt,
	       const int *fds, unsigned nfds);
static inline int conn_reply_buf(struct conn *c, const struct wire_msg *m, const void *buf,
				 size_t len)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	return conn_reply(c, m, &iov, len ? 1 : 0, NULL, 0);
}

/* Handlers: return 0 after replying, or a negative errno for the dispatcher
 * to send as an error reply. The payload is at least the table's minimum. */
typedef int (*cmd_handler)(struct ferry_device *dev, struct conn *c, struct wire_msg *m);
int handle_version(struct ferry_device *dev, struct conn *c, struct wire_msg *m);
int handle_dma_map(struct ferry_device *dev, struct conn *c, struct wire_msg *m);
int handle_dma_unmap(struct ferry_device *dev, struct conn *c, struct wire_msg *m);
int handle_device_get_info(struct ferry_device *dev, struct conn *c, struct wire_msg *m);
int handle_get_region_info(struct ferry_device *dev, struct conn *c, struct wire_msg *m);
int handle_get_region_io_fds(struct ferry_device *dev, struct conn *c, struct wire_msg *m);
int handle_get_irq_info(struct ferry_device *dev, struct conn *c, struct wire_msg *m);
int handle_set_irqs(struct ferry_device *dev, struct conn *c, struct wire_msg *m);
int handle_region_read(struct ferry_device *dev, struct conn *c, struct wire_msg *m);
int handle_region_write(struct ferry_device *dev, struct conn *c, struct wire_msg *m);
int handle_region_write_multi(struct ferry_device *dev, struct conn *c, struct wire_msg *m);
int handle_device_reset(struct ferry_device *dev, struct conn *c, struct wire_msg *m);
int handle_device_feature(struct ferry_device *dev, struct conn *c, struct wire_msg *m);

/* ---- region.c ---- */
/* Size of region @index as the client sees it (config space included). */
uint64_t region_size(const struct ferry_device *dev, unsigned index);
/* A client access to region @index, already bounds-checked. */
int region_access(struct ferry_device *dev, unsigned index, uint64_t off, void *buf,
		  uint32_t count, bool is_write);

/* ---- config.c ---- */
int config_access(struct ferry_device *dev, uint64_t off, void *buf, uint32_t count,
		  bool is_write);

/* ---- msix.c (callers hold irq_lock) ---- */
int msix_create(unsigned vectors, struct msix **out);
void msix_destroy(struct msix *x);
void msix_reset(struct msix *x);
uint64_t msix_table_size(const struct msix *x);
uint64_t msix_pba_size(const struct msix *x);
bool msix_vector_masked(const struct msix *x, unsigned v);
void msix_set_pending(struct msix *x, unsigned v, bool pending);
void msix_table_read(const struct msix *x, uint64_t off, void *buf, uint32_t len);
void msix_table_write(struct msix *x, uint64_t off, const void *buf, uint32_t len);
void msix_pba_read(const struct msix *x, uint64_t off, void *buf, uint32_t len);

/* ---- irq.c ---- */
int irq_init(struct ferry_device *dev);
void irq_fini(struct ferry_device *dev);
/* Closes every eventfd and clears library masks and pending bits
 * (client disconnect). */
void irq_release_client(struct ferry_device *dev);
/* Delivers what became deliverable after a config change or an MSI-X
 * table write. Caller holds irq_lock. */
void irq_deliver_pending_locked(struct ferry_device *dev, unsigned index);
/* MSI-X table/PBA accesses from the client (take irq_lock). */
int irq_msix_table_access(struct ferry_device *dev, uint64_t off, void *buf, uint32_t len,
			  bool is_write);
int irq_msix_pba_access(struct ferry_device *dev, uint64_t off, void *buf, uint32_t len,
			bool is_write);
/* Reset: drop interrupts while the model resets, then power-on values. */
void irq_reset_begin(struct ferry_device *dev);
void irq_reset_end(struct ferry_device *dev);
/* Calls ops.irq_changed if the model has it. Message thread, no lock held. */
void irq_notify(struct ferry_device *dev, unsigned index, unsigned start, unsigned count);

/* ---- dma.c ---- */
/* Client gone: forget the DMA channel, tell the model, unmap everything. */
void dma_release_client(struct ferry_device *dev);
void dma_set_channel(struct ferry_device *dev, struct wire_chan *ch, uint32_t xfer);

/* ---- logging.c ---- */
void logging_stop(struct ferry_device *dev);

/* ---- feature.c registry entries (defined where the feature lives) ---- */
struct feature_reply {
	void *data; /* malloc'd by the handler, freed by the envelope */
	uint32_t len;
};

struct feature_ops {
	uint16_t index;
	const char *name;
	uint32_t ops; /* VFIO_DEVICE_FEATURE_GET | _SET */
	uint32_t min_get_len, min_set_len; /* request data bytes */
	/* Whether this device offers the feature; NULL: always. */
	bool (*is_present)(const struct ferry_device *dev);
	/* GET: @in (request data, @in_len bytes); fill @out with at most
	 * @max_out bytes of reply data (else -EINVAL). */
	int (*get)(struct ferry_device *dev, const uint8_t *in, uint32_t in_len,
		   uint32_t max_out, struct feature_reply *out);
	/* SET: @data may be edited in place: it is echoed back. */
	int (*set)(struct ferry_device *dev, uint8_t *data, uint32_t len);
};

extern const struct feature_ops feature_dma_logging_start;
extern const struct feature_ops feature_dma_logging_stop;
extern const struct feature_ops feature_dma_logging_report;

/* ---- reset.c ---- */
/* The whole function reset: DEVICE_RESET and FLR. Message thread. */
int device_reset(struct ferry_device *dev, const char *why);

#endif /* FERRY_DEVICE_PRIV_H */
