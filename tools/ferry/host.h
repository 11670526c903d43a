/*
 * ferry host: plays the VMM's part without vCPUs (DESIGN.md, "The roles").
 *
 *   host.c           command line, lifetime, signals, the main loop
 *   host_mem.c       guest memory (one memfd) and the workload areas in it
 *   host_dev.c       attaching the devices (client library, DMA_MAP)
 *   host_workload.c  one "vCPU" thread per device driving its guest driver
 *   host_control.c   the control socket (docs/control-protocol.md)
 *   host_migrate.c   migrate / incoming: glue to the engine (lib/migrate)
 *
 * Guest memory layout. Guest memory is one memfd of --mem bytes, mapped in
 * this process and DMA-mapped read-write into every device at iova 0. The
 * workloads' state areas are carved from the TOP of guest memory, in
 * device order: device 0's area ends at the top, device 1's right below
 * it, and so on, each 2 MiB aligned:
 *   dma   HOST_DMA_AREA_BYTES (the driver's ring, slot kinds and buffers)
 *   vram  vram_workload_area_size(BAR2 size), rounded up to 2 MiB
 *   none  no area
 * The rest, from 0 up, is free guest memory (--fill writes a deterministic
 * pattern into its start so migrations carry non-zero pages too). The
 * destination host computes the same layout from the same arguments, which
 * is why it must be started with the same --mem and device kinds.
 *
 * Locking: host->lock protects role, the migration pointer and the last
 * report; each workload has its own lock (host_workload.c).
 */
#ifndef FERRY_TOOLS_HOST_H
#define FERRY_TOOLS_HOST_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "migrate/dirty_view.h"
#include "migrate/engine.h"

#define HOST_MAX_DEVICES 16u
#define HOST_PAGE_SIZE 4096u
#define HOST_AREA_ALIGN (2u << 20)
#define HOST_DMA_AREA_BYTES (16u << 20)
#define HOST_SOCKET_MAX 108

enum host_kind {
	HOST_KIND_NONE = 0,
	HOST_KIND_DMA,
	HOST_KIND_VRAM,
};

enum host_role {
	HOST_ROLE_IDLE = 0,    /* runs its guest, no migration under way */
	HOST_ROLE_SOURCE,      /* migrating its guest out */
	HOST_ROLE_DESTINATION, /* started with --incoming */
	HOST_ROLE_MIGRATED,    /* the guest now lives on the destination */
};

struct host_workload;
struct host_migration;
struct host_control;

struct host_device {
	unsigned index;
	enum host_kind kind;
	char socket[HOST_SOCKET_MAX];
	char name[32];              /* "dev0-dma", for log lines */
	struct ferry_client *c;
	uint64_t mig_flags;         /* VFIO_MIGRATION_*, 0 if it cannot migrate */
	bool has_dirty_logging;     /* DMA logging offered (auto dirty policy) */
	uint64_t area_off, area_size; /* the workload's area; size 0 for none */
	struct host_workload *wl;   /* NULL: no workload (kind none, or not started) */
};

struct host_options {
	uint64_t mem_size;
	uint64_t fill_bytes;        /* --fill */
	bool is_fill_dense;         /* --fill-dense */
	bool is_prealloc;           /* --prealloc */
	const char *control_path;
	const char *incoming;       /* --incoming URI or NULL */
	unsigned dma_ops_per_s;     /* --dma-rate */
	unsigned vram_writes_per_s; /* --vram-rate */
	unsigned ndev;
	struct {
		enum host_kind kind;
		const char *socket;
	} dev[HOST_MAX_DEVICES];
};

struct host {
	struct host_options opt;
	uint64_t mem_size;
	int mem_fd;
	uint8_t *mem;
	unsigned ndev;
	struct host_device dev[HOST_MAX_DEVICES];
	struct dirty_view *dv;       /* the host's dirty view over guest memory */
	struct host_control *ctl;
	pthread_mutex_t wl_lock;     /* pause depth; one pause or resume at a time */
	unsigned wl_pause_depth;
	int quit_fd;                 /* eventfd: the main loop should stop */
	int exit_code;               /* what the process exits with */
	bool is_quitting;            /* no new migration may start */

	pthread_mutex_t lock;
	enum host_role role;
	struct host_migration *mig;  /* running (or finished, not yet joined) */
	json_object *last_report;    /* REPORT of the last migration, or NULL */
};

/* ---- host_mem.c ---- */
int host_mem_create(struct host *h, uint64_t size, bool is_prealloc);
void host_mem_destroy(struct host *h);
/* Places every device's workload area (needs the devices attached). */
int host_mem_layout(struct host *h);
/* Writes the --fill pattern into the start of guest memory. */
void host_mem_fill(struct host *h);
/* The workloads' dirty callback: marks [iova, iova + len) in the dirty view. */
void host_mem_dirtied(void *opaque, uint64_t iova, uint64_t len);

/* ---- host_dev.c ---- */
int host_devices_attach(struct host *h);
void host_devices_detach(struct host *h);
const char *host_kind_str(enum host_kind k);
int host_kind_parse(const char *s, enum host_kind *out);
/* Fills the engine's view of the devices. */
void host_engine_devices(const struct host *h, struct mig_engine_device *out);

/* ---- host_workload.c ---- */
struct host_workload_stats {
	bool running;
	uint64_t submitted, completed, verified, errors;
};
/* Starts (@attach false: fresh state; true: state already in guest
 * memory, after a migration) every device's workload thread. */
int host_workloads_start(struct host *h, bool attach);
/* Stops and frees every workload (threads joined). */
void host_workloads_stop(struct host *h);
/* Parks every workload between two operations; returns once all are
 * parked (or -ETIMEDOUT, with the others parked). Nests with resume. */
int host_workloads_pause(struct host *h);
void host_workloads_resume(struct host *h);
void host_workload_stats(const struct host_device *d, struct host_workload_stats *out);
/* Pauses, checks every workload's data, resumes. Returns mismatches
 * (>= 0) or a negative errno. */
int64_t host_workloads_verify(struct host *h);

/* ---- host_control.c ---- */
int host_control_start(struct host *h, const char *path);
void host_control_stop(struct host *h);
/* Writes one JSON object as a line to connection fd @fd (with a timeout). */
int host_control_send(int fd, json_object *o);
/* The status reply's body. */
json_object *host_status_json(struct host *h);

/* ---- host_migrate.c ---- */
/* Starts an outgoing migration described by request @req (already
 * validated for shape) and streams its events to connection @fd until it
 * ends. Returns once the done line was sent (or the client went away). */
void host_migrate_serve(struct host *h, int fd, json_object *req);
/* True while a migration (outgoing or incoming) is under way. */
bool host_migrate_is_busy(struct host *h);
/* Cancels the running migration: true if one was running. */
bool host_migrate_cancel(struct host *h);
/* The running migration's latest progress as JSON, or NULL. */
json_object *host_migrate_progress_json(struct host *h);
/* Waits for a running migration to end (after cancelling it). */
void host_migrate_join(struct host *h);
/* --incoming: runs the destination side on a thread; host->quit_fd is
 * signalled with exit_code set if it fails. */
int host_incoming_start(struct host *h);
void host_incoming_join(struct host *h);

void host_request_quit(struct host *h, int exit_code);

/* ---- host.c ---- */
int cmd_host(int argc, char **argv);

#endif
