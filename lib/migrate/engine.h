/*
 * The migration engine: one live migration of guest memory and vfio-user
 * devices from a source host to a destination host, over the migration
 * stream (stream.h), in the order DESIGN.md gives ("Migration, source side,
 * in order").
 *
 * Source (mig_source_*):
 *   setup       every device can migrate; transport connected; manifest
 *               sent; dirty tracking on (the caller's dirty view: device
 *               logging or all-dirty per device, plus the host's own
 *               writes); devices with PRE_COPY enter it.
 *   rounds      round 1 sends all of guest memory, later rounds what the
 *               view reports dirty; each round also reads every PRE_COPY
 *               device until it has nothing more for now. After each round
 *               the engine measures the bandwidth and predicts the downtime:
 *                 (dirty bytes + sum of the devices' stop-copy sizes) / bandwidth
 *               A device's stop-copy size is its MIG_DATA_SIZE, else its
 *               precopy_info bytes, else what its last pre-copy round
 *               produced (MIG_ENGINE_STOPCOPY_GUESS for a device without
 *               PRE_COPY). It switches over once the prediction fits the
 *               budget and every PRE_COPY device has drained its initial
 *               data once ("converged"), or after max_rounds ("round-limit").
 *   switchover  workloads paused (hooks.pause); every P2P device to
 *               RUNNING_P2P (PRE_COPY_P2P from PRE_COPY) before any device
 *               goes further; then every device to STOP_COPY; the last dirty
 *               pages; every device's stop-copy data; CHECKSUMS (per device,
 *               and guest memory as a whole); END.
 *   ack         on tcp: and unix:, the destination's acknowledgement. Only a
 *               success ack releases the source: devices to STOP, dirty
 *               tracking off, workloads stay paused (the guest lives on the
 *               destination now). file: has no back-channel: once the file
 *               is complete the source resumes as after a failure and the
 *               outcome is "saved".
 *   failure     anything before a success ack (including a cancel): every
 *               device back to RUNNING (P2P devices through RUNNING_P2P
 *               first; a device that refuses is reset), dirty tracking off,
 *               workloads resumed (hooks.resume), outcome "failed" or
 *               "cancelled" with the error.
 *
 * Destination (mig_dest_*): devices go to RESUMING before the source can
 * connect; sections are applied as they arrive (pages into guest memory,
 * device chunks through MIG_DATA_WRITE); after END the guest memory
 * checksum is compared, every device leaves RESUMING for STOP (where it
 * validates what it loaded), P2P devices go to RUNNING_P2P, then all to
 * RUNNING; hooks.resume re-attaches and starts the workloads; then the
 * success ack goes out. Any failure: an error ack (when possible), every
 * device reset, nothing resumed.
 *
 * Downtime is measured on the source from the pause to the ack (so it
 * includes the ack's one-way latency), on the destination from SWITCHOVER
 * to the ack.
 *
 * Threads: run() blocks the calling thread for the whole migration; hooks
 * are called on it. cancel() may be called from any thread meanwhile.
 * The clients must not be driven by anyone else for the state changes and
 * data (the workloads may keep using them until hooks.pause returns).
 */
#ifndef FERRY_MIGRATE_ENGINE_H
#define FERRY_MIGRATE_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "migrate/dirty_view.h"
#include "migrate/manifest.h"
#include "migrate/report.h"

struct ferry_client;

/* Downtime budget and round limit when the configuration says 0. */
#define MIG_ENGINE_DEFAULT_DOWNTIME_MS 300u
#define MIG_ENGINE_DEFAULT_MAX_ROUNDS 30u
/* Transport inactivity limit when the configuration says 0. */
#define MIG_ENGINE_DEFAULT_IO_TIMEOUT_MS 30000
/* Longest wait for the destination's acknowledgement after END. */
#define MIG_ENGINE_DEFAULT_ACK_TIMEOUT_MS 30000
/* Stop-copy size assumed for a device that can tell none and has no
 * pre-copy rounds to measure: ferry's sample devices' register state and
 * small queues are well under this. */
#define MIG_ENGINE_STOPCOPY_GUESS (1ull << 20)
/* Longest a pre-copy round reads one device before moving on: a device
 * dirtying its state faster than it can be read would otherwise hold the
 * round forever. It carries on in the next round. */
#define MIG_ENGINE_DEVICE_ROUND_MS 2000
/* Guest memory a round sends per write call: cancel and progress are
 * looked at in between (32 MiB: ~10 ms on loopback). */
#define MIG_ENGINE_PAGES_STEP (32ull << 20)

/* The acknowledgement's message from a ferry destination starts with the
 * verification verdicts, so the source can report them:
 *   "verification memory=match devices=match: <text>" */
#define MIG_ACK_VERIFY_PREFIX "verification"

/* One device as the engine sees it; index i is device i of the manifest. */
struct mig_engine_device {
	struct ferry_client *c; /* borrowed: attached, guest memory DMA-mapped */
	const char *kind;       /* workload kind, 1..MIG_KIND_MAX of [A-Za-z0-9_.-] */
	const char *socket;     /* informational (manifest), may be NULL */
};

/*
 * Guest memory as this process maps it; page_size 0 means 4096. @fd is the
 * memfd (or any file) behind it at offset 0, or -1: with it the engine
 * finds the holes (pages never written, SEEK_DATA / SEEK_HOLE) and never
 * reads them, which would make the kernel allocate them (measured: a CRC
 * over a fresh 256 MiB memfd takes 6.8 s, over a written one 0.27 s):
 * round 1 leaves them out of the stream (the destination's memory is fresh,
 * so they are zero there too; the memory checksum proves it) and the
 * checksums count them as zeros. Borrowed, not consumed.
 */
struct mig_guest_memory {
	uint8_t *base;
	uint64_t size;
	uint32_t page_size;
	int fd;
};

/* ---- source ---- */

struct mig_source_hooks {
	void *opaque;
	/* Parks every workload between two of its operations; returns once
	 * all are parked (0) or a negative errno (the engine then resumes
	 * them and fails). Required. */
	int (*pause)(void *opaque);
	/* Lets the workloads run again. Required. */
	void (*resume)(void *opaque);
	/* Progress events, on the engine's thread. Optional. */
	void (*progress)(void *opaque, const struct mig_progress *p);
};

struct mig_source_config {
	const char *uri;               /* tcp:HOST:PORT, unix:PATH, file:PATH */
	const char *host_name;         /* manifest source_host; NULL: gethostname */
	struct mig_guest_memory mem;
	/* The host's dirty view over mem (borrowed): device i of the view is
	 * device i here; the host marks its own writes in it. The engine
	 * starts and stops it. */
	struct dirty_view *dv;
	unsigned ndevices;             /* 0 .. MIG_MAX_DEVICES */
	const struct mig_engine_device *devices; /* copied */
	uint32_t downtime_ms;          /* 0: MIG_ENGINE_DEFAULT_DOWNTIME_MS */
	uint32_t max_rounds;           /* 0: MIG_ENGINE_DEFAULT_MAX_ROUNDS */
	enum mig_compression compression;
	bool no_memory_checksum;       /* leave guest memory out of CHECKSUMS */
	int io_timeout_ms;             /* 0: default; -1: none */
	int ack_timeout_ms;            /* 0: default */
	struct mig_source_hooks hooks;
};

struct mig_source;

/* Checks @cfg and copies it (strings and the device array are copied; the
 * clients, the view and guest memory are borrowed until destroy). Nothing
 * is sent and no device is touched. Returns 0 or -EINVAL (one log line). */
int mig_source_create(const struct mig_source_config *cfg, struct mig_source **out);

/* Runs the whole migration (see the top of this file) and fills @report
 * (owned by the caller, initialised here). Returns 0 when the outcome is
 * "success" or "saved", else the negative errno the report carries. Once
 * only per mig_source. */
int mig_source_run(struct mig_source *s, struct mig_report *report);

/* Asks a running migration to stop: it fails with -ECANCELED at its next
 * step (a blocked transport write is cut off). Returns false when it is too
 * late (END is sent: the destination may have taken over) or it is over. */
bool mig_source_cancel(struct mig_source *s);

/* NULL-safe; not while run() is running. */
void mig_source_destroy(struct mig_source *s);

/* ---- destination ---- */

struct mig_dest_hooks {
	void *opaque;
	/* Every device runs again with its migrated state: re-attach the
	 * workloads from guest memory and start them. 0 or a negative errno
	 * (the engine then fails: it calls stop, resets the devices and sends
	 * an error ack). Required. */
	int (*resume)(void *opaque);
	/* Stops what resume started (the ack could not be sent, so the source
	 * takes the guest back). Required. */
	void (*stop)(void *opaque);
	/* As for the source. Optional. */
	void (*progress)(void *opaque, const struct mig_progress *p);
};

struct mig_dest_config {
	const char *uri;               /* where to listen (tcp: port 0: any) */
	struct mig_guest_memory mem;   /* fresh: all zero, as the devices are new */
	unsigned ndevices;
	const struct mig_engine_device *devices; /* copied */
	int io_timeout_ms;             /* 0: default; -1: none */
	int accept_timeout_ms;         /* -1 or 0: wait until cancelled */
	struct mig_dest_hooks hooks;
};

struct mig_dest;

/* Listens on cfg->uri and moves every device to RESUMING (from RUNNING,
 * through STOP), so that nothing the source sends can find a device not
 * ready. On failure the devices already moved are reset. Returns 0 or a
 * negative errno (one log line). */
int mig_dest_create(const struct mig_dest_config *cfg, struct mig_dest **out);

/* The URI a source should use (tcp: port 0 resolved). Owned by @d. */
const char *mig_dest_uri(const struct mig_dest *d);

/* Accepts the source, receives and applies the stream, validates, resumes
 * (see the top of this file) and fills @report. Returns 0 once the
 * destination runs the guest (the ack is sent), else a negative errno: the
 * devices are reset and nothing runs. Once only per mig_dest. */
int mig_dest_run(struct mig_dest *d, struct mig_report *report);

/* Makes a waiting or running mig_dest_run() fail with -ECANCELED (before
 * the ack). Any thread. Returns false if it is over or too late. */
bool mig_dest_cancel(struct mig_dest *d);

/* NULL-safe; not while run() is running. */
void mig_dest_destroy(struct mig_dest *d);

#endif
