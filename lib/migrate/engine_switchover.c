/*
 * The migration engine, source side, from the pause on: the switchover
 * (P2P quiesce of every device before any device stops, then STOP_COPY),
 * the stop-copy part of the stream, the checksums, END, the ack, and then
 * either the release (success) or the recovery (anything else). See
 * engine.h for the order and why.
 */
#include "migrate/engine_source.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <ferry/client.h>

#include "migrate/ack.h"
#include "util/log.h"

static int stopcopy_sink(void *opaque, unsigned device, const void *buf, size_t len)
{
	struct mig_source *s = opaque;

	return mig_stream_write_device_data(s->w, device, buf, len);
}

/* RUNNING_P2P (or PRE_COPY_P2P) for every P2P device, then STOP_COPY for
 * all: no device may stop while a peer could still DMA into it. Within each
 * step the devices change state at the same time. */
static int stop_devices(struct mig_source *s)
{
	bool want[MIG_MAX_DEVICES];
	enum ferry_mig_state to[MIG_MAX_DEVICES];
	int rcs[MIG_MAX_DEVICES], rc;

	for (unsigned i = 0; i < s->ndev; i++) {
		want[i] = eng_dev_has_p2p(&s->dev[i]);
		to[i] = s->dev[i].state == FERRY_MIG_PRE_COPY ? FERRY_MIG_PRE_COPY_P2P
							       : FERRY_MIG_RUNNING_P2P;
	}
	for (int step = 0; step < 2; step++) {
		rc = eng_devs_set_states(s->dev, s->ndev, want, to, rcs);
		for (unsigned i = 0; rc < 0 && i < s->ndev; i++)
			if (rcs[i] < 0)
				return src_fail(s, rcs[i], "device %u (%s) to %s", i,
						s->dev[i].name, ferry_mig_state_name(to[i]));
		if ((rc = src_check_cancel(s)) < 0)
			return rc;
		for (unsigned i = 0; i < s->ndev; i++) {
			want[i] = true;
			to[i] = FERRY_MIG_STOP_COPY;
		}
	}
	return 0;
}

/* Records the step that ran since *@t, and restarts the clock. */
static void step_done(struct mig_source *s, const char *name, int64_t *t)
{
	int64_t now = eng_now_ns();

	mig_report_step(s->rep, name, (double)(now - *t) / 1e6);
	*t = now;
}

/* The last pages: what the last round left dirty plus what was written
 * since, now that nothing can write any more. Two steps of the report: the
 * devices' dirty reports, then the pages. */
static int final_pages(struct mig_source *s, int64_t *t)
{
	uint64_t n = 0;

	if (dirty_view_collect(s->cfg.dv) < 0)
		return src_fail(s, -EIO, "collecting the last dirty pages");
	step_done(s, "last dirty collection", t);
	dirty_view_take(s->cfg.dv, s->scratch);
	for (size_t w = 0; w < s->words; w++) {
		s->bitmap[w] |= s->scratch[w];
		n += (uint64_t)__builtin_popcountll(s->bitmap[w]);
	}
	s->prog.dirty_pages = n;
	log_info("migration to %s: stop-copy: %" PRIu64 " dirty pages", s->uri, n);
	return src_send_pages(s, s->bitmap, 0);
}

static int stopcopy_devices(struct mig_source *s)
{
	for (unsigned i = 0; i < s->ndev; i++) {
		struct eng_dev *d = &s->dev[i];
		bool drained = false;
		int rc = eng_dev_read(d, s->buf, s->buf_len, 0, 0, stopcopy_sink, s,
				      &d->stopcopy_bytes, &drained);

		if (rc < 0)
			return src_fail(s, rc, "device %u (%s): stop-copy data", i, d->name);
		rc = mig_stream_write_device_end(s->w, i);
		if (rc < 0)
			return src_fail(s, rc, "device %u (%s): ending its stream", i, d->name);
		if ((rc = src_check_cancel(s)) < 0)
			return rc;
	}
	return 0;
}

static enum mig_verdict parse_verdict(const char *msg, const char *key)
{
	const char *p = strstr(msg, key);

	if (!p)
		return MIG_VERDICT_SKIPPED;
	p += strlen(key);
	if (!strncmp(p, "match", 5))
		return MIG_VERDICT_MATCH;
	if (!strncmp(p, "mismatch", 8))
		return MIG_VERDICT_MISMATCH;
	return MIG_VERDICT_SKIPPED;
}

static int wait_ack(struct mig_source *s)
{
	char msg[MIG_ACK_MSG_MAX + 1] = "";
	int status = 0;
	int rc = mig_ack_recv(s->t, s->ack_timeout_ms, &status, msg, sizeof(msg));

	s->rep->downtime_ms = eng_ms_since(s->t_pause);
	if (rc < 0)
		return src_fail(s, rc, "no acknowledgement from the destination");
	if (!strncmp(msg, MIG_ACK_VERIFY_PREFIX, strlen(MIG_ACK_VERIFY_PREFIX))) {
		s->rep->verify_memory = parse_verdict(msg, "memory=");
		s->rep->verify_devices = parse_verdict(msg, "devices=");
	}
	if (status != 0)
		return src_fail(s, -status, "the destination refused the migration (%s)", msg);
	return 0;
}

/* The destination runs the guest: this side lets go of it. */
static void release(struct mig_source *s)
{
	for (unsigned i = 0; i < s->ndev; i++) {
		int rc = eng_dev_set_state(&s->dev[i], FERRY_MIG_STOP);

		if (rc < 0)
			log_warn("migration to %s: device %u (%s) did not leave STOP_COPY for STOP"
				 " (%s); the guest runs on the destination anyway", s->uri, i,
				 s->dev[i].name, strerror(-rc));
	}
	dirty_view_stop(s->cfg.dv);
	s->is_tracking = false;
	/* Workloads stay parked: their guest is elsewhere now. */
}

int src_switchover(struct mig_source *s)
{
	int64_t t;
	struct mem_crc_job job;
	bool has_crc = !s->cfg.no_memory_checksum;
	uint32_t crc = 0;
	int rc;

	s->has_backchannel = s->t->has_backchannel;
	src_progress(s, MIG_PHASE_SWITCHOVER);
	s->t_pause = t = eng_now_ns();
	s->is_paused = true; /* even a failed pause is undone with resume */
	rc = s->cfg.hooks.pause(s->cfg.hooks.opaque);
	if (rc < 0)
		return src_fail(s, rc, "pausing the workloads");
	step_done(s, "pause", &t);
	if ((rc = stop_devices(s)) < 0)
		return rc;
	step_done(s, "devices to STOP_COPY", &t);
	rc = mig_stream_write_switchover(s->w);
	if (rc < 0)
		return src_fail(s, rc, "sending SWITCHOVER");
	src_progress(s, MIG_PHASE_STOPCOPY);

	/* Memory is frozen from here (workloads parked, every device stopped):
	 * checksum it while the last pages and the device data go out. */
	if (has_crc)
		mem_crc_job_start(&job, s->cfg.mem.base, s->mem_fd, s->cfg.mem.size);
	rc = final_pages(s, &t);
	if (rc == 0) {
		step_done(s, "last dirty pages", &t);
		rc = stopcopy_devices(s);
	}
	step_done(s, "device stop-copy data", &t);
	if (has_crc)
		crc = mem_crc_job_finish(&job);
	if (rc < 0)
		return rc;
	step_done(s, "memory checksum (rest)", &t);
	rc = mig_stream_write_checksums(s->w, has_crc, crc);
	if (rc < 0)
		return src_fail(s, rc, "sending CHECKSUMS");
	if ((rc = src_check_cancel(s)) < 0)
		return rc;

	pthread_mutex_lock(&s->lock);
	s->is_committed = true;
	pthread_mutex_unlock(&s->lock);
	rc = mig_stream_write_end(s->w);
	if (rc < 0)
		return src_fail(s, rc, "sending END");
	step_done(s, "checksums and END", &t);
	src_progress(s, MIG_PHASE_VERIFY);

	if (!s->has_backchannel) {
		/* file: complete. Nobody takes over; the caller resumes. */
		s->rep->downtime_ms = eng_ms_since(s->t_pause);
		s->rep->outcome = MIG_OUTCOME_SAVED;
		return 0;
	}
	rc = wait_ack(s);
	step_done(s, "acknowledgement", &t);
	if (rc < 0)
		return rc;
	release(s);
	s->rep->outcome = MIG_OUTCOME_SUCCESS;
	return 0;
}

void src_recover(struct mig_source *s)
{
	int rc;

	/* The destination must see the stream break before anything resumes
	 * here, so it can never complete it afterwards. */
	pthread_mutex_lock(&s->lock);
	if (s->t && s->rep->outcome != MIG_OUTCOME_SAVED)
		mig_transport_shutdown(s->t);
	pthread_mutex_unlock(&s->lock);

	rc = eng_devs_back_to_running(s->dev, s->ndev);
	if (rc < 0) {
		if (s->rep->outcome == MIG_OUTCOME_SAVED) {
			s->rep->outcome = MIG_OUTCOME_RUNNING; /* let fail() record it */
			src_fail(s, rc, "saved, but the devices could not run again");
		} else {
			log_err("migration to %s: some devices could not run again: %s", s->uri,
				strerror(-rc));
		}
	}
	if (s->is_tracking) {
		dirty_view_stop(s->cfg.dv);
		s->is_tracking = false;
	}
	if (s->is_paused) {
		s->cfg.hooks.resume(s->cfg.hooks.opaque);
		s->is_paused = false;
		/* The guest stood still from the pause until now. */
		s->rep->downtime_ms = eng_ms_since(s->t_pause);
	}
}
