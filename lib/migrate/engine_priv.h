/*
 * Internals shared by the migration engine's files:
 *   engine_dev.c        one device: states with recovery, data, size estimates
 *   engine_source.c     source: setup, rounds, the switchover policy
 *   engine_switchover.c source: switchover, stop-copy, ack, release, recovery
 *   engine_dest.c       destination
 *   mem_crc.c           guest memory checksums
 */
#ifndef FERRY_MIGRATE_ENGINE_PRIV_H
#define FERRY_MIGRATE_ENGINE_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <ferry/migration.h>

#include "migrate/engine.h"
#include "migrate/stream.h"
#include "migrate/transport.h"

static inline int64_t eng_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline double eng_ms_since(int64_t t0)
{
	return (double)(eng_now_ns() - t0) / 1e6;
}

/* ---- one device (engine_dev.c) ---- */

struct eng_dev {
	unsigned index;
	struct ferry_client *c;
	const char *name;            /* the client's name, for log lines */
	char kind[MIG_KIND_MAX + 1];
	char socket[MIG_SOCKET_NAME_MAX + 1];
	uint64_t flags;              /* VFIO_MIGRATION_* */
	enum ferry_mig_state state;  /* as last confirmed */
	bool is_state_known;         /* false after a failed SET we could not GET */
	bool is_touched;             /* the engine asked it for a state: recovery's */
	bool has_data_size;          /* MIG_DATA_SIZE answered (or not tried yet) */
	bool has_precopy_info;       /* precopy_info answered (or not tried yet) */
	bool is_drained;             /* a pre-copy read returned 0 at least once */
	uint64_t precopy_bytes, stopcopy_bytes;
	uint64_t round_bytes;        /* pre-copy bytes of the current round */
	uint64_t last_round_bytes;   /* ... of the previous round */
};

static inline bool eng_dev_has_p2p(const struct eng_dev *d)
{
	return d->flags & VFIO_MIGRATION_P2P;
}

static inline bool eng_dev_has_precopy(const struct eng_dev *d)
{
	return d->flags & VFIO_MIGRATION_PRE_COPY;
}

/* Reads the device's migration flags and state: it must be able to
 * migrate and be RUNNING. 0 or a negative errno (logged). */
int eng_dev_probe(struct eng_dev *d);

/* One SET to @to (the device walks the path itself). On failure GETs the
 * state the device is left in. 0 or a negative errno (logged by the client
 * library with both states). */
int eng_dev_set_state(struct eng_dev *d, enum ferry_mig_state to);

/* Where each chunk of device data goes. Returns 0 or a negative errno. */
typedef int (*eng_sink_fn)(void *opaque, unsigned device, const void *buf, size_t len);

/* Moves every device i with @want[i] to @to[i], all at once: one thread
 * per device beyond the first, so slow transitions (a device hashing its
 * memory on entering STOP_COPY) overlap instead of adding up in the
 * downtime. @rcs[i] gets each result (0 where not wanted). Returns 0 or
 * the first error in device order. */
int eng_devs_set_states(struct eng_dev *devs, unsigned n, const bool *want,
			const enum ferry_mig_state *to, int *rcs);

/* Reads the device's data stream into @sink until a read returns 0, or
 * @limit bytes were read (0: no limit), or @deadline_ns passes (0: none).
 * @buf holds @cap bytes. Adds to *@bytes; sets *@drained when a read
 * returned 0. 0 or a negative errno. */
int eng_dev_read(struct eng_dev *d, uint8_t *buf, size_t cap, uint64_t limit,
		 int64_t deadline_ns, eng_sink_fn sink, void *opaque, uint64_t *bytes,
		 bool *drained);

/* In a pre-copy state: what the device has pending now (initial + dirty
 * bytes, precopy_info), or 0 when it cannot tell. Sets *@initial_done when
 * it reports its initial data all read. */
uint64_t eng_dev_precopy_pending(struct eng_dev *d, bool *initial_done);

/* The device's stop-copy size estimate (see engine.h). */
uint64_t eng_dev_stopcopy_estimate(struct eng_dev *d);

/* Back to RUNNING, as the recovery path does it: every P2P device not yet
 * running to RUNNING_P2P first, then every device to RUNNING; a device that
 * refuses is reset (and asked again). Returns 0, or the first error of a
 * device that could not be brought back (each one logged). */
int eng_devs_back_to_running(struct eng_dev *devs, unsigned n);

/* Every device from STOP (or RESUMING->STOP done) to RUNNING_P2P when it
 * has P2P, then every device to RUNNING. 0 or the first error. */
int eng_devs_start(struct eng_dev *devs, unsigned n);

/* DEVICE_RESET, then RUNNING if the device is not there yet. Logged. */
void eng_dev_reset(struct eng_dev *d);

/* ---- guest memory checksums and holes (mem_crc.c) ---- */

/* The next data (non-hole) range of @fd at or after @pos, below @end:
 * [*data, *data_end), both @end when only holes are left. @fd -1: all of
 * [pos, end) is data. 0 or a negative errno from lseek. */
int mem_next_data(int fd, uint64_t pos, uint64_t end, uint64_t *data, uint64_t *data_end);

/* True if @fd tells its holes (SEEK_DATA works on it). */
bool mem_fd_usable(int fd, uint64_t size);

/* CRC-32 (crc32_z) of @len bytes at @p, the holes of @fd (-1: none known)
 * counted as zeros without being read. */
uint32_t mem_crc(const uint8_t *p, int fd, uint64_t len);

/* The checksum of memory that changes only by known loads (the
 * destination): per-chunk CRCs, recomputed only for chunks marked stale,
 * combined at the end. @is_zero: the memory is known to be all zero now
 * (a destination's fresh memory), so nothing needs reading yet. */
struct mem_crc_cache {
	const uint8_t *base;
	int fd;
	uint64_t size;
	uint64_t chunk;     /* bytes per chunk (the last may be shorter) */
	uint64_t nchunks;
	uint32_t *crc;
	uint8_t *is_stale;
	uint64_t nstale;
};

int mem_crc_cache_init(struct mem_crc_cache *cc, const uint8_t *base, int fd, uint64_t size,
		       uint64_t chunk, bool is_zero);
void mem_crc_cache_fini(struct mem_crc_cache *cc);
/* [off, off + len) changed. */
void mem_crc_cache_stale(struct mem_crc_cache *cc, uint64_t off, uint64_t len);
/* Recomputes the stale chunks. */
void mem_crc_cache_refresh(struct mem_crc_cache *cc);
/* Refreshes, then returns the CRC-32 of the whole memory. */
uint32_t mem_crc_cache_value(struct mem_crc_cache *cc);

/* An asynchronous mem_crc() (the source overlaps it with the stop-copy
 * transfer): a thread works through the memory in MEM_CRC_JOB_PIECE pieces,
 * and finish lends the caller's thread to the pieces left, so a caller with
 * nothing else to do halves the wait on a 2-CPU machine. */
#define MEM_CRC_JOB_PIECE (32ull << 20)
struct mem_crc_job {
	pthread_t thread;
	const uint8_t *p;
	int fd;
	uint64_t len;
	uint64_t npieces;
	atomic_uint_fast64_t next; /* the next piece to claim */
	uint32_t *piece_crc;       /* NULL: no memory for pieces, one pass */
	uint32_t crc;
	bool is_started;
};
int mem_crc_job_start(struct mem_crc_job *j, const uint8_t *p, int fd, uint64_t len);
uint32_t mem_crc_job_finish(struct mem_crc_job *j);

#endif
