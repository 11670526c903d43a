/*
 * What one migration did, as the engine saw it: the report of
 * docs/control-protocol.md (REPORT) and the live progress events, kept as
 * plain structs while the migration runs and turned into JSON at the end.
 *
 * Both sides fill the same struct: the source from what it sent, the
 * destination from what it received (its rounds come from the ROUND_END
 * sections, its downtime runs from SWITCHOVER to its acknowledgement).
 *
 * Thread-safety: a report belongs to one thread while it is filled; the JSON
 * functions only read it.
 */
#ifndef FERRY_MIGRATE_REPORT_H
#define FERRY_MIGRATE_REPORT_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "migrate/manifest.h"

enum mig_outcome {
	MIG_OUTCOME_RUNNING = 0, /* not finished yet */
	MIG_OUTCOME_SUCCESS,     /* the destination took over */
	MIG_OUTCOME_SAVED,       /* file: the stream is complete; the source resumed */
	MIG_OUTCOME_FAILED,
	MIG_OUTCOME_CANCELLED,
};

enum mig_verdict {
	MIG_VERDICT_SKIPPED = 0,
	MIG_VERDICT_MATCH,
	MIG_VERDICT_MISMATCH,
};

/* Phases of the progress event ("setup", "precopy", ...). */
enum mig_phase {
	MIG_PHASE_SETUP = 0,
	MIG_PHASE_PRECOPY,
	MIG_PHASE_SWITCHOVER,
	MIG_PHASE_STOPCOPY,
	MIG_PHASE_VERIFY,
	MIG_PHASE_DONE,
};

/* One live progress event (docs/control-protocol.md, "Progress event"). */
struct mig_progress {
	enum mig_phase phase;
	uint32_t round;
	uint64_t bytes_sent;      /* stream bytes so far */
	uint64_t bytes_remaining; /* dirty guest bytes + devices' stop-copy estimate */
	double rate_bytes_per_s;  /* measured over the last round */
	uint64_t predicted_downtime_ms;
	uint64_t dirty_pages;
	bool is_round_end;        /* this event closes round @round (not in JSON) */
};

struct mig_round_report {
	uint32_t round;
	uint64_t bytes;        /* stream bytes of the round */
	uint64_t pages;        /* guest pages sent (zero pages included) */
	uint64_t zero_pages;
	uint64_t dirty_pages;  /* still dirty when the round ended */
	uint64_t device_bytes; /* device pre-copy bytes of the round */
	double duration_ms;
};

struct mig_device_report {
	char kind[MIG_KIND_MAX + 1];
	uint64_t bytes;           /* precopy_bytes + stopcopy_bytes */
	uint64_t precopy_bytes;
	uint64_t stopcopy_bytes;
	const char *dirty_provider; /* static string or NULL */
};

/* One timed step of the downtime (source: pause, P2P quiesce, stop-copy
 * state change, last pages, device data, checksums, END, ack; destination:
 * stop-copy receive, verify, device start, workload resume, ack). */
struct mig_step {
	const char *name; /* static string */
	double ms;
};
#define MIG_REPORT_MAX_STEPS 16u

/* Rounds kept in a report; later rounds are counted but not listed. */
#define MIG_REPORT_MAX_ROUNDS 1000u

struct mig_report {
	bool is_destination;
	enum mig_outcome outcome;
	int error;                 /* negative errno when failed */
	char error_msg[512];       /* one sentence, "" if none */
	char uri[256];
	double total_ms;
	double downtime_ms;        /* source: pause -> ack; destination: SWITCHOVER -> ack */
	uint32_t downtime_budget_ms;
	double predicted_downtime_ms; /* the prediction that allowed the switchover */
	const char *switchover_reason; /* "converged", "round-limit" or NULL */
	uint32_t nrounds;
	struct mig_round_report rounds[MIG_REPORT_MAX_ROUNDS];
	uint32_t ndevices;
	struct mig_device_report devices[MIG_MAX_DEVICES];
	uint64_t bytes_total;      /* stream bytes */
	uint64_t memory_bytes;     /* guest memory size */
	uint64_t pages_total, zero_pages_total;
	uint64_t hole_pages;       /* never written: left out of round 1 */
	double bandwidth_bytes_per_s;          /* bytes_total / total_ms */
	double measured_bandwidth_bytes_per_s; /* the rounds' rate the prediction used */
	enum mig_verdict verify_memory, verify_devices;
	uint32_t nsteps;
	struct mig_step steps[MIG_REPORT_MAX_STEPS];
};

const char *mig_outcome_str(enum mig_outcome o);
const char *mig_verdict_str(enum mig_verdict v);
const char *mig_phase_str(enum mig_phase p);

/* Clears @r and records the uri and the downtime budget. */
void mig_report_init(struct mig_report *r, bool is_destination, const char *uri,
		     uint32_t downtime_budget_ms);

/* Appends a round (dropped past MIG_REPORT_MAX_ROUNDS); returns it or NULL. */
struct mig_round_report *mig_report_add_round(struct mig_report *r);

/* Records a downtime step that took @ms (dropped past the limit). */
void mig_report_step(struct mig_report *r, const char *name, double ms);

/* Marks @r failed (or cancelled when @err is -ECANCELED) with @err and a
 * printf-style message, unless it already carries an error: the first
 * failure is the one reported. */
void mig_report_fail(struct mig_report *r, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The REPORT object of docs/control-protocol.md (a new reference; NULL only
 * when out of memory). */
json_object *mig_report_to_json(const struct mig_report *r);

/* The progress event object: {"event":"progress",...}. */
json_object *mig_progress_to_json(const struct mig_progress *p);

#endif
