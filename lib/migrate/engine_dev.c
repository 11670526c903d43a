/*
 * The migration engine, one device at a time: state changes with their
 * recovery, reading the data stream, stop-copy size estimates.
 */
#include "migrate/engine_priv.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>

#include <ferry/client.h>
#include <ferry/client_migration.h>

#include "util/log.h"

int eng_dev_probe(struct eng_dev *d)
{
	enum ferry_mig_state st;
	int rc = ferry_client_mig_flags(d->c, &d->flags);

	if (rc < 0) {
		log_err("migration: device %u (%s) cannot migrate: %s", d->index, d->name,
			strerror(-rc));
		return rc == -ENOTTY ? -EOPNOTSUPP : rc;
	}
	if (!ferry_mig_flags_valid(d->flags)) {
		log_err("migration: device %u (%s) advertises migration flags %#" PRIx64
			", which ferry does not understand", d->index, d->name, d->flags);
		return -EOPNOTSUPP;
	}
	rc = ferry_client_mig_get_state(d->c, &st);
	if (rc < 0) {
		log_err("migration: device %u (%s): reading its migration state: %s", d->index,
			d->name, strerror(-rc));
		return rc;
	}
	d->state = st;
	d->is_state_known = true;
	d->has_data_size = true;
	d->has_precopy_info = true;
	return 0;
}

int eng_dev_set_state(struct eng_dev *d, enum ferry_mig_state to)
{
	enum ferry_mig_state now;
	int rc;

	if (d->is_state_known && d->state == to)
		return 0;
	d->is_touched = true;
	rc = ferry_client_mig_set_state(d->c, to);
	if (rc == 0) {
		d->state = to;
		d->is_state_known = true;
		return 0;
	}
	/* The client library logged from -> to and the state it saw after. */
	d->is_state_known = ferry_client_mig_get_state(d->c, &now) == 0;
	if (d->is_state_known)
		d->state = now;
	return rc;
}

struct set_job {
	struct eng_dev *d;
	enum ferry_mig_state to;
	int rc;
	pthread_t thread;
	bool has_thread;
};

static void *set_job_main(void *arg)
{
	struct set_job *j = arg;

	j->rc = eng_dev_set_state(j->d, j->to);
	return NULL;
}

int eng_devs_set_states(struct eng_dev *devs, unsigned n, const bool *want,
			const enum ferry_mig_state *to, int *rcs)
{
	struct set_job jobs[MIG_MAX_DEVICES];
	unsigned first = n;
	int rc = 0;

	for (unsigned i = 0; i < n && i < MIG_MAX_DEVICES; i++) {
		jobs[i] = (struct set_job){.d = &devs[i], .to = to[i]};
		if (!want[i])
			continue;
		if (first == n) {
			first = i; /* runs on this thread, below */
			continue;
		}
		jobs[i].has_thread = pthread_create(&jobs[i].thread, NULL, set_job_main,
						    &jobs[i]) == 0;
		if (!jobs[i].has_thread)
			set_job_main(&jobs[i]); /* no thread: in turn, then */
	}
	if (first < n)
		set_job_main(&jobs[first]);
	for (unsigned i = 0; i < n && i < MIG_MAX_DEVICES; i++) {
		if (jobs[i].has_thread)
			pthread_join(jobs[i].thread, NULL);
		rcs[i] = want[i] ? jobs[i].rc : 0;
		if (rcs[i] < 0 && !rc)
			rc = rcs[i];
	}
	return rc;
}

int eng_dev_read(struct eng_dev *d, uint8_t *buf, size_t cap, uint64_t limit,
		 int64_t deadline_ns, eng_sink_fn sink, void *opaque, uint64_t *bytes,
		 bool *drained)
{
	uint64_t got_total = 0, reads = 0;
	int64_t t0 = eng_now_ns();

	for (;; reads++) {
		size_t got = 0;
		int rc = ferry_client_mig_read(d->c, buf, cap, &got);

		if (rc < 0 || !got || (limit && got_total + got >= limit) ||
		    (deadline_ns && eng_now_ns() > deadline_ns))
			log_debug("migration: device %u (%s): %" PRIu64 " reads, %" PRIu64
				  " bytes in %.1f ms (limit %" PRIu64 ")", d->index, d->name,
				  reads + 1, got_total + got, eng_ms_since(t0), limit);

		if (rc < 0) {
			log_err("migration: device %u (%s): reading its data in %s: %s", d->index,
				d->name, ferry_mig_state_name(d->state), strerror(-rc));
			return rc;
		}
		if (!got) {
			*drained = true;
			return 0;
		}
		rc = sink(opaque, d->index, buf, got);
		if (rc < 0)
			return rc;
		*bytes += got;
		got_total += got;
		if (limit && got_total >= limit)
			return 0;
		if (deadline_ns && eng_now_ns() > deadline_ns)
			return 0;
	}
}

/* Errors that mean "this device does not offer it", as opposed to a
 * failure of a device that does. */
static bool is_absent(int rc)
{
	return rc == -ENOTTY || rc == -EOPNOTSUPP || rc == -EINVAL;
}

uint64_t eng_dev_precopy_pending(struct eng_dev *d, bool *initial_done)
{
	uint64_t initial, dirty;
	int rc;

	if (!d->has_precopy_info)
		return 0;
	rc = ferry_client_mig_precopy_info(d->c, &initial, &dirty);
	if (rc < 0) {
		if (is_absent(rc))
			d->has_precopy_info = false;
		return 0;
	}
	if (!initial)
		*initial_done = true;
	return initial + dirty;
}

uint64_t eng_dev_stopcopy_estimate(struct eng_dev *d)
{
	uint64_t bytes, initial, dirty;
	int rc;

	if (d->has_data_size) {
		rc = ferry_client_mig_data_size(d->c, &bytes);
		if (rc == 0)
			return bytes;
		if (is_absent(rc))
			d->has_data_size = false;
	}
	if (d->has_precopy_info && eng_dev_has_precopy(d) &&
	    (d->state == FERRY_MIG_PRE_COPY || d->state == FERRY_MIG_PRE_COPY_P2P)) {
		rc = ferry_client_mig_precopy_info(d->c, &initial, &dirty);
		if (rc == 0)
			return initial + dirty;
		if (is_absent(rc))
			d->has_precopy_info = false;
	}
	if (eng_dev_has_precopy(d))
		return d->last_round_bytes;
	return MIG_ENGINE_STOPCOPY_GUESS;
}

void eng_dev_reset(struct eng_dev *d)
{
	enum ferry_mig_state st;
	int rc = ferry_client_reset(d->c);

	if (rc < 0) {
		log_err("migration: device %u (%s): reset failed: %s", d->index, d->name,
			strerror(-rc));
		d->is_state_known = false;
		return;
	}
	d->is_state_known = ferry_client_mig_get_state(d->c, &st) == 0;
	if (d->is_state_known)
		d->state = st;
	if (!d->is_state_known || d->state != FERRY_MIG_RUNNING) {
		rc = eng_dev_set_state(d, FERRY_MIG_RUNNING);
		if (rc < 0)
			log_err("migration: device %u (%s): still not RUNNING after a reset: %s",
				d->index, d->name, strerror(-rc));
	}
}

/* Moves every device to @to (only those with P2P when @p2p_only), in
 * index order. A device that fails is reset when @reset_on_failure.
 * Returns the first error. */
static int all_to(struct eng_dev *devs, unsigned n, enum ferry_mig_state to, bool p2p_only,
		  bool reset_on_failure)
{
	int first = 0;

	for (unsigned i = 0; i < n; i++) {
		struct eng_dev *d = &devs[i];

		/* Recovery leaves alone a device the engine never moved. */
		if (reset_on_failure && !d->is_touched)
			continue;
		if (p2p_only && !eng_dev_has_p2p(d))
			continue;
		if (p2p_only && d->is_state_known && ferry_mig_state_is_running(d->state))
			continue; /* already running: no P2P stop needed on the way back */
		int rc = eng_dev_set_state(d, to);

		if (rc == 0)
			continue;
		if (!first)
			first = rc;
		if (reset_on_failure) {
			log_warn("migration: device %u (%s) did not go back to %s: resetting it",
				 d->index, d->name, ferry_mig_state_name(to));
			eng_dev_reset(d);
		}
	}
	return first;
}

int eng_devs_back_to_running(struct eng_dev *devs, unsigned n)
{
	int rc;

	/* No device resumes P2P DMA towards a peer that is still stopped. */
	all_to(devs, n, FERRY_MIG_RUNNING_P2P, true, true);
	rc = all_to(devs, n, FERRY_MIG_RUNNING, false, true);
	for (unsigned i = 0; i < n; i++) {
		if (devs[i].is_touched &&
		    (!devs[i].is_state_known || devs[i].state != FERRY_MIG_RUNNING)) {
			log_err("migration: device %u (%s) could not be brought back to RUNNING",
				devs[i].index, devs[i].name);
			return rc < 0 ? rc : -EIO;
		}
	}
	return 0;
}

int eng_devs_start(struct eng_dev *devs, unsigned n)
{
	/* zeroed: gcc -O2 cannot see that only the first n are read */
	bool want[MIG_MAX_DEVICES] = {false};
	enum ferry_mig_state to[MIG_MAX_DEVICES] = {FERRY_MIG_ERROR};
	int rcs[MIG_MAX_DEVICES], rc;

	for (unsigned i = 0; i < n; i++) {
		want[i] = eng_dev_has_p2p(&devs[i]);
		to[i] = FERRY_MIG_RUNNING_P2P;
	}
	rc = eng_devs_set_states(devs, n, want, to, rcs);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < n; i++) {
		want[i] = true;
		to[i] = FERRY_MIG_RUNNING;
	}
	return eng_devs_set_states(devs, n, want, to, rcs);
}
