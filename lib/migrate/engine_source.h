/* The source side's state, shared by engine_source.c and engine_switchover.c. */
#ifndef FERRY_MIGRATE_ENGINE_SOURCE_H
#define FERRY_MIGRATE_ENGINE_SOURCE_H

#include "migrate/engine_priv.h"
#include "migrate/uri.h"

struct mig_source {
	struct mig_source_config cfg; /* devices: see dev[] */
	char uri[MIG_URI_MAX];
	char host_name[MIG_HOST_NAME_MAX + 1];
	unsigned ndev;
	struct eng_dev dev[MIG_MAX_DEVICES];
	uint32_t downtime_ms, max_rounds;
	int io_timeout_ms, ack_timeout_ms;
	uint64_t npages;
	size_t words;
	int mem_fd;                 /* cfg.mem.fd if it tells holes, else -1 */

	/* lock: t against cancel; the flags below. */
	pthread_mutex_t lock;
	struct mig_transport *t;
	bool has_run, is_running;
	bool is_committed;          /* END is out: too late to cancel */
	atomic_bool is_cancelled;

	/* The engine thread's own. */
	struct mig_stream_writer *w;
	bool has_backchannel;
	uint64_t *bitmap;           /* pages to send next */
	uint64_t *scratch;          /* the final collection */
	uint8_t *buf;               /* device data */
	size_t buf_len;
	bool is_tracking;           /* dirty view started */
	bool is_paused;             /* hooks.pause succeeded */
	double bw;                  /* bytes/s, smoothed; 0 until measured */
	/* For the prediction: how fast guest memory is checksummed (measured
	 * in setup; 0: not measured) over how many bytes of data. */
	double crc_bytes_per_s;
	uint64_t data_bytes;
	int64_t t_start, t_pause, t_progress;
	uint64_t round_first_byte;  /* stream offset where the current round began */
	uint64_t round_to_send;     /* its estimated size */
	struct mig_report *rep;
	struct mig_progress prog;
};

int eng_devices_copy(struct eng_dev *out, const struct mig_engine_device *in, unsigned n);

/* -ECANCELED (recorded in the report) once cancel was asked, else 0. */
int src_check_cancel(struct mig_source *s);
/* Records and logs a failure ("what: strerror"); returns the errno. */
int src_fail(struct mig_source *s, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void src_progress(struct mig_source *s, enum mig_phase phase);
/* Sends the pages set in @bitmap, with cancel checks in between. */
int src_send_pages(struct mig_source *s, const uint64_t *bitmap, unsigned flags);

/* engine_switchover.c: from the pause to the ack and the release. */
int src_switchover(struct mig_source *s);
/* Back to where the migration started: devices RUNNING, tracking off,
 * workloads resumed. */
void src_recover(struct mig_source *s);

#endif
