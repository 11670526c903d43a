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
 *   logging_shm.c  the dirty_shm extension: REPORT into client-shared memory
 *   reset.c     DEVICE_RESET and function-level reset
 *   power.c     low power: LOW_POWER_ENTRY(_WITH_WAKEUP)/EXIT, wake on access
 *   migration.c     ferry_device_set_migration, the state machine driver, quiescing
 *   mig_features.c  MIGRATION, MIG_DEVICE_STATE, MIG_DATA_SIZE, precopy_info
 *   mig_data.c      MIG_DATA_READ/WRITE and the stream around the model's bytes
 *   mig_libstate.c  the library's own device state in the stream (prefix, trailer)
 *   mig_shm.c       the mig_shm extension: migration data through shared memory
 *   mig_reset.c     the state lock, deferred reset, ferry_device_reset, disconnect
 *
 * Locks, outermost first (never taken in the reverse order):
 *   state lock struct state_lock (mig_reset.c). Held by the message thread
 *              around every command it dispatches (so a migration SET is one
 *              critical section from request to reply, and every ops callback
 *              on the message thread runs under it), by a disconnect while
 *              the device returns to RUNNING, and by ferry_device_reset().
 *              That one, finding the lock busy, leaves a deferred reset which
 *              the holder runs before it unlocks (the caller waits for it). A
 *              thread holding DMA pointers must not ask (-EDEADLK): the holder
 *              may be waiting for the DMA table's write lock.
 * No ops callback runs under the two below:
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
#include <ferry/migration.h>
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
struct mig;  /* migration.c */

/* Sets of migration states, as masks of 1 << enum ferry_mig_state: the
 * gating tables (dispatch.c, the feature registry) are written with these. */
#define MIG_BIT(s) (1u << (s))
#define MIG_STATES_ALL ((1u << FERRY_MIG_NUM_STATES) - 1)
#define MIG_STATES_RUNNING (MIG_BIT(FERRY_MIG_RUNNING) | MIG_BIT(FERRY_MIG_RUNNING_P2P) | \
			    MIG_BIT(FERRY_MIG_PRE_COPY) | MIG_BIT(FERRY_MIG_PRE_COPY_P2P))
#define MIG_STATES_PRECOPY (MIG_BIT(FERRY_MIG_PRE_COPY) | MIG_BIT(FERRY_MIG_PRE_COPY_P2P))
#define MIG_STATES_SAVING (MIG_STATES_PRECOPY | MIG_BIT(FERRY_MIG_STOP_COPY))
#define MIG_STATES_RESUMING MIG_BIT(FERRY_MIG_RESUMING)
#define MIG_STATES_STOPPED (MIG_BIT(FERRY_MIG_STOP) | MIG_BIT(FERRY_MIG_STOP_COPY) | \
			    MIG_BIT(FERRY_MIG_RESUMING) | MIG_BIT(FERRY_MIG_ERROR))

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
	/* logging_shm.c, message thread only: the dirty_shm area, or NULL */
	void *log_shm;
	uint64_t log_shm_size;

	/* power.c, message thread only (PMCSR itself is config space: irq_lock) */
	uint8_t pm_entry;        /* enum power_entry: the client's low-power entry */
	bool pm_is_asleep;       /* the model was told to idle; PMCSR reads D3hot */
	unsigned pm_wake_depth;  /* power_wake_for() brackets in progress */
	int pm_wake_fd;          /* wakeup eventfd of a WITH_WAKEUP entry, else -1 */

	/* Migration (migration.c). mig is NULL for a model without migration.
	 * mig_state is the FSM state (dispatch gating, GET); written under the
	 * state lock, read from any thread. is_quiesced is true in STOP,
	 * STOP_COPY, RESUMING and ERROR, and while an arc leaves a running
	 * state: DMA helpers return -EBUSY, triggers become pending. */
	struct mig *mig;
	atomic_uint mig_state;
	atomic_bool is_quiesced;
	atomic_bool has_logged_quiesced; /* one debug line per stopped period */
	struct state_lock {
		pthread_mutex_t mx;      /* the state lock itself */
		pthread_mutex_t meta;    /* guards the rest; never held across work */
		pthread_cond_t reset_cv; /* resets_done moved */
		bool is_init, is_held;
		pthread_t holder;
		uint64_t resets_asked, resets_done;
		int reset_rc;            /* of the last deferred reset */
	} state;

	/* device.c: sockets and the loop */
	int listen_fd;
	char *sock_path;
	int epoll_fd;
	int stop_fd;
	atomic_bool is_stopping;
	bool is_burst;          /* ferry_device_run polls between commands */
	int64_t last_reply_ns;  /* CLOCK_MONOTONIC when the last command was done */
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
/* ---- logging_shm.c ---- */
/* Client gone: unmap the dirty_shm area. Message thread. */
void logging_shm_release(struct ferry_device *dev);

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
	/* Features whose SET carries fds (ferry extensions): at most max_fds
	 * (every other request of any feature must carry none), and set_fds
	 * instead of set, with the request @m whose fds it may take
	 * (wire_msg_take_fd); those left are closed with the message. */
	unsigned max_fds;
	int (*set_fds)(struct ferry_device *dev, uint8_t *data, uint32_t len, struct wire_msg *m);
	/* Migration states (MIG_STATES_* masks) in which a GET / SET is
	 * allowed, EINVAL elsewhere; 0: every state. PROBE is never gated. */
	uint32_t get_states, set_states;
};

extern const struct feature_ops feature_dma_logging_start;
extern const struct feature_ops feature_dma_logging_stop;
extern const struct feature_ops feature_dma_logging_report;
extern const struct feature_ops feature_dirty_shm; /* ferry extension dirty_shm */

/* ---- mig_reset.c: the state lock ---- */
int state_lock_init(struct ferry_device *dev);
void state_lock_fini(struct ferry_device *dev);
/* Takes the state lock. */
void dev_lock(struct ferry_device *dev);
/* Runs the resets deferred meanwhile, then releases the state lock. */
void dev_unlock(struct ferry_device *dev);
/* Client gone (state lock held): back to RUNNING, as the kernel does on
 * close: saving and stopped states through their arcs, RESUMING and ERROR
 * (or a failing arc) through a reset; the client's mig_shm buffer goes. */
void mig_client_gone(struct ferry_device *dev);

/* ---- migration.c ---- */
/* The reset (device_reset, state lock held) is over: data sessions ended,
 * state RUNNING, or ERROR if the model failed to reset (@rc < 0). */
void mig_after_reset(struct ferry_device *dev, int rc);
void mig_destroy(struct ferry_device *dev);
/* The ferry extensions migration offers in VERSION (WIRE_EXT_* bits). */
uint32_t mig_wire_ext(const struct ferry_device *dev);
/* STOP, STOP_COPY, RESUMING, ERROR (or an arc out of a running state): the
 * library does no DMA and raises no interrupt for the device. Any thread. */
static inline bool dev_is_quiesced(const struct ferry_device *dev)
{
	return atomic_load_explicit(&dev->is_quiesced, memory_order_acquire);
}
/* One debug line per stopped period for a refused DMA or trigger. */
void mig_note_quiesced(struct ferry_device *dev, const char *what);

/* MIG_DATA_READ / MIG_DATA_WRITE (mig_data.c). */
int handle_mig_data_read(struct ferry_device *dev, struct conn *c, struct wire_msg *m);
int handle_mig_data_write(struct ferry_device *dev, struct conn *c, struct wire_msg *m);

/* ferry_dma_ptr_get holds of the calling thread on @dev (dma.c). */
bool dma_thread_holds(struct ferry_device *dev);

extern const struct feature_ops feature_migration;
extern const struct feature_ops feature_mig_device_state;
extern const struct feature_ops feature_mig_data_size;
extern const struct feature_ops feature_precopy_info;
extern const struct feature_ops feature_mig_shm;
extern const struct feature_ops feature_mig_shm_data;

/* ---- power.c (message thread only) ---- */
void power_init(struct ferry_device *dev);
/* Brackets work that needs the device powered: a trapped region access, a
 * reset, a migration state change or migration data. A device in low power
 * wakes at the outermost power_wake_for(): with a wakeup eventfd it is
 * signalled once and the entry is over; without one the device goes back
 * to low power at the matching power_wake_done(). Nests. @why names the
 * work in the log line. */
void power_wake_for(struct ferry_device *dev, const char *why);
void power_wake_done(struct ferry_device *dev);
/* A config write changed PMCSR's power state (irq_lock held): while the
 * device is asleep it keeps reading D3hot. */
void power_pmcsr_written_locked(struct ferry_device *dev);
/* Client gone: leave low power without signalling, close the eventfd. */
void power_release_client(struct ferry_device *dev);

extern const struct feature_ops feature_low_power_entry;
extern const struct feature_ops feature_low_power_entry_wakeup;
extern const struct feature_ops feature_low_power_exit;

/* ---- reset.c ---- */
/* The whole function reset: DEVICE_RESET and FLR. Message thread. */
int device_reset(struct ferry_device *dev, const char *why);

#endif /* FERRY_DEVICE_PRIV_H */
