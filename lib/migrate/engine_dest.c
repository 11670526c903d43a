/*
 * The migration engine, destination side (see engine.h): devices in
 * RESUMING before the source can connect, sections applied as they arrive,
 * everything validated after END, then devices running, workloads resumed
 * and the ack sent. Any failure discards: devices reset, nothing resumed,
 * an error ack when the transport still allows one.
 */
#include "migrate/engine_priv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/client.h>
#include <ferry/client_migration.h>

#include "migrate/ack.h"
#include "migrate/dest_feed.h"
#include "migrate/uri.h"
#include "util/log.h"

/* Chunk of the guest memory checksum cache: one GUEST_PAGES window. */
#define CRC_CHUNK MIG_PAGES_SECTION_BYTES
/* Progress events while receiving, at most one per this many bytes. */
#define PROGRESS_BYTES (64ull << 20)

struct mig_dest {
	struct mig_dest_config cfg;
	char uri[MIG_URI_MAX];
	unsigned ndev;
	struct eng_dev dev[MIG_MAX_DEVICES];
	int io_timeout_ms;
	struct mig_listener *l;

	pthread_mutex_t lock; /* t against cancel; the flags below */
	struct mig_transport *t;
	bool has_run, is_running, is_committed;
	atomic_bool is_cancelled;

	struct mig_stream_reader *r;
	struct dest_feed *feed[MIG_MAX_DEVICES]; /* device data, while receiving */
	struct mem_crc_cache cc;
	bool has_switchover;
	bool is_resumed;         /* hooks.resume succeeded */
	bool has_checksums;      /* the reader accepted CHECKSUMS */
	bool has_mem_crc;        /* ... with a guest memory record */
	uint32_t mem_crc;        /* the source's */
	unsigned nended;         /* DEVICE_END sections seen */
	bool is_stream_done;     /* END read */
	int64_t t_start, t_switch, t_round;
	uint64_t round_offset, round_zero, round_dev;
	uint64_t last_progress;
	struct mig_report *rep;
	struct mig_progress prog;
};

int eng_devices_copy(struct eng_dev *out, const struct mig_engine_device *in, unsigned n);

static int dest_fail(struct mig_dest *d, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int dest_fail(struct mig_dest *d, int rc, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	if (atomic_load(&d->is_cancelled))
		rc = -ECANCELED;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mig_report_fail(d->rep, rc, "%s: %s", msg, strerror(rc < 0 ? -rc : EIO));
	log_err("incoming migration on %s failed: %s: %s", d->uri, msg,
		strerror(rc < 0 ? -rc : EIO));
	return rc < 0 ? rc : -EIO;
}

static void dest_progress(struct mig_dest *d, enum mig_phase phase)
{
	d->prog.phase = phase;
	if (d->r)
		d->prog.bytes_sent = mig_stream_reader_offset(d->r);
	d->last_progress = d->prog.bytes_sent;
	if (d->cfg.hooks.progress)
		d->cfg.hooks.progress(d->cfg.hooks.opaque, &d->prog);
}

static void reset_all(struct mig_dest *d)
{
	for (unsigned i = 0; i < d->ndev; i++)
		eng_dev_reset(&d->dev[i]);
}

int mig_dest_create(const struct mig_dest_config *cfg, struct mig_dest **out)
{
	struct mig_dest *d;
	uint32_t ps = cfg && cfg->mem.page_size ? cfg->mem.page_size : 4096;
	int rc;

	*out = NULL;
	if (!cfg || !cfg->uri || strlen(cfg->uri) >= MIG_URI_MAX || !cfg->mem.base ||
	    !cfg->mem.size || cfg->mem.size % ps || cfg->ndevices > MIG_MAX_DEVICES ||
	    (cfg->ndevices && !cfg->devices) || !cfg->hooks.resume || !cfg->hooks.stop) {
		log_err("incoming migration: incomplete destination configuration");
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->cfg = *cfg;
	d->cfg.devices = NULL;
	d->cfg.mem.page_size = ps;
	snprintf(d->uri, sizeof(d->uri), "%s", cfg->uri);
	d->cfg.uri = d->uri;
	d->ndev = cfg->ndevices;
	d->io_timeout_ms = cfg->io_timeout_ms ? cfg->io_timeout_ms
					      : MIG_ENGINE_DEFAULT_IO_TIMEOUT_MS;
	pthread_mutex_init(&d->lock, NULL);
	rc = eng_devices_copy(d->dev, cfg->devices, cfg->ndevices);
	if (rc < 0)
		goto out_free;
	rc = mig_transport_listen(d->uri, &d->l);
	if (rc < 0)
		goto out_free;

	/* RESUMING before any byte can arrive: RUNNING -> STOP -> RESUMING. */
	for (unsigned i = 0; i < d->ndev; i++) {
		rc = eng_dev_probe(&d->dev[i]);
		if (rc == 0)
			rc = eng_dev_set_state(&d->dev[i], FERRY_MIG_RESUMING);
		if (rc < 0) {
			log_err("incoming migration: device %u (%s) cannot receive a migration: %s",
				i, d->dev[i].name, strerror(-rc));
			for (unsigned k = 0; k <= i; k++)
				eng_dev_reset(&d->dev[k]);
			goto out_listener;
		}
	}
	*out = d;
	return 0;

out_listener:
	mig_listener_close(d->l);
out_free:
	pthread_mutex_destroy(&d->lock);
	free(d);
	return rc;
}

const char *mig_dest_uri(const struct mig_dest *d)
{
	return d->l ? mig_listener_uri(d->l) : d->uri;
}

static void stop_feeds(struct mig_dest *d);

void mig_dest_destroy(struct mig_dest *d)
{
	if (!d)
		return;
	stop_feeds(d);
	mig_stream_reader_destroy(d->r);
	mig_transport_close(d->t);
	mig_listener_close(d->l);
	mem_crc_cache_fini(&d->cc);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/* Ends a blocking accept with a connection of our own. Lock held. */
static void wake_listener(struct mig_dest *d)
{
	struct mig_transport *t = NULL;
	struct mig_uri u;
	const char *uri = mig_listener_uri(d->l);

	if (mig_uri_parse(uri, false, &u) < 0 || u.kind == MIG_URI_FILE)
		return;
	if (mig_transport_connect(uri, 1000, &t) == 0)
		mig_transport_close(t);
}

bool mig_dest_cancel(struct mig_dest *d)
{
	bool ok;

	pthread_mutex_lock(&d->lock);
	ok = !d->is_committed && (d->is_running || !d->has_run);
	if (ok) {
		atomic_store(&d->is_cancelled, true);
		if (d->t)
			mig_transport_shutdown(d->t);
		else if (d->l)
			wake_listener(d);
	}
	pthread_mutex_unlock(&d->lock);
	return ok;
}

/* ---- receiving ---- */

/*
 * Waits for the source. The wait is one blocking accept (a timeout would
 * log a line per slice); a cancel wakes it by connecting to the listener
 * itself (wake_listener), and the engine then sees the cancel.
 */
static int accept_source(struct mig_dest *d)
{
	struct mig_transport *t = NULL;
	int rc = mig_transport_accept(d->l, d->cfg.accept_timeout_ms > 0 ?
					       d->cfg.accept_timeout_ms : -1, &t);

	if (rc < 0)
		return dest_fail(d, rc, "waiting for the source");
	pthread_mutex_lock(&d->lock);
	d->t = t;
	mig_listener_close(d->l);
	d->l = NULL;
	pthread_mutex_unlock(&d->lock);
	if (atomic_load(&d->is_cancelled))
		return dest_fail(d, -ECANCELED, "waiting for the source");
	log_info("incoming migration: source connected (%s)", t->desc);
	return 0;
}

static int check_manifest(struct mig_dest *d, const struct mig_manifest *m)
{
	if (m->mem_size != d->cfg.mem.size)
		return dest_fail(d, -EINVAL, "the source has %" PRIu64 " bytes of guest memory, "
				 "this host %" PRIu64, m->mem_size, d->cfg.mem.size);
	if (m->ndevices != d->ndev)
		return dest_fail(d, -EINVAL, "the source has %u devices, this host %u",
				 m->ndevices, d->ndev);
	for (unsigned i = 0; i < d->ndev; i++) {
		if (strcmp(m->devices[i].kind, d->dev[i].kind))
			return dest_fail(d, -EINVAL, "device %u is a '%s' on the source and a '%s' "
					 "here", i, m->devices[i].kind, d->dev[i].kind);
		if (m->devices[i].migration_flags != d->dev[i].flags)
			log_warn("incoming migration: device %u (%s) has migration flags %#x on the"
				 " source and %#" PRIx64 " here", i, d->dev[i].name,
				 m->devices[i].migration_flags, d->dev[i].flags);
	}
	log_info("incoming migration from %s: %" PRIu64 " bytes of memory in %u-byte pages, "
		 "%u devices, compression %s", m->source_host, m->mem_size, m->page_size,
		 m->ndevices, mig_compression_str(m->compression));
	return 0;
}

static int round_end(struct mig_dest *d, const struct mig_section *s)
{
	struct mig_round_report *rr = mig_report_add_round(d->rep);
	uint64_t off = mig_stream_reader_offset(d->r);

	if (rr) {
		rr->round = s->u.round_end.round;
		rr->bytes = off - d->round_offset;
		rr->pages = s->u.round_end.pages_sent;
		rr->zero_pages = d->round_zero;
		rr->dirty_pages = s->u.round_end.dirty_remaining;
		rr->device_bytes = d->round_dev;
		rr->duration_ms = eng_ms_since(d->t_round);
	}
	d->round_offset = off;
	d->round_zero = d->round_dev = 0;
	/* Applied means loaded by the devices too; then the source may pause
	 * (ack.h: round ack). */
	for (unsigned i = 0; i < d->ndev; i++) {
		int rc = dest_feed_drain(d->feed[i]);

		if (rc < 0)
			return dest_fail(d, rc, "device %u (%s) refused its data", i,
					 d->dev[i].name);
	}
	if (d->t->has_backchannel) {
		int rc = mig_ack_send_round(d->t, s->u.round_end.round, d->io_timeout_ms);

		if (rc < 0)
			return dest_fail(d, rc, "acknowledging round %u", s->u.round_end.round);
	}
	d->t_round = eng_now_ns();
	/* The guest is still running on the source: checksum what this round
	 * loaded now, outside the downtime (and after the round ack, which the
	 * source may be waiting for). */
	mem_crc_cache_refresh(&d->cc);
	d->prog.round = s->u.round_end.round;
	d->prog.dirty_pages = s->u.round_end.dirty_remaining;
	d->prog.bytes_remaining = s->u.round_end.dirty_remaining * d->cfg.mem.page_size;
	d->prog.is_round_end = true;
	dest_progress(d, MIG_PHASE_PRECOPY);
	d->prog.is_round_end = false;
	return 0;
}

static int apply(struct mig_dest *d, const struct mig_section *s)
{
	const uint64_t ps = d->cfg.mem.page_size;
	struct eng_dev *dev;
	int rc;

	switch (s->type) {
	case MIG_SEC_GUEST_PAGES:
		rc = mig_stream_reader_load_pages(d->r, s, d->cfg.mem.base, d->cfg.mem.size);
		if (rc < 0)
			return dest_fail(d, rc, "loading guest pages");
		mem_crc_cache_stale(&d->cc, s->u.pages.start * ps, (uint64_t)s->u.pages.count * ps);
		d->round_zero += s->u.pages.nzero;
		d->rep->pages_total += s->u.pages.nzero + s->u.pages.ndata + s->u.pages.nzstd;
		d->rep->zero_pages_total += s->u.pages.nzero;
		return 0;
	case MIG_SEC_DEVICE_DATA:
		dev = &d->dev[s->u.device_data.device]; /* the reader checked the index */
		rc = dest_feed_push(d->feed[dev->index], s->u.device_data.data,
				    s->u.device_data.len);
		if (rc < 0)
			return dest_fail(d, rc, "device %u (%s) refused its data", dev->index,
					 dev->name);
		if (d->has_switchover)
			dev->stopcopy_bytes += s->u.device_data.len;
		else
			dev->precopy_bytes += s->u.device_data.len;
		d->round_dev += s->u.device_data.len;
		return 0;
	case MIG_SEC_DEVICE_END:
		d->nended++; /* the reader checked the total */
		return 0;
	case MIG_SEC_ROUND_END:
		return round_end(d, s);
	case MIG_SEC_SWITCHOVER:
		d->has_switchover = true;
		d->t_switch = eng_now_ns();
		dest_progress(d, MIG_PHASE_STOPCOPY);
		return 0;
	case MIG_SEC_CHECKSUMS:
		/* Device records: the reader verified them. Guest memory: ours. */
		d->has_checksums = true;
		d->has_mem_crc = s->u.checksums.has_memory;
		d->mem_crc = s->u.checksums.memory_crc;
		return 0;
	case MIG_SEC_END:
		d->is_stream_done = true;
		return 0;
	default:
		return dest_fail(d, -EPROTO, "unexpected %s section",
				 mig_section_type_str(s->type));
	}
}

static int receive(struct mig_dest *d)
{
	struct mig_stream_reader_opts o = {.max_mem_size = d->cfg.mem.size,
					   .timeout_ms = d->io_timeout_ms};
	struct mig_section s;
	int rc;

	rc = mig_stream_reader_create(d->t, &o, &d->r);
	if (rc < 0)
		return dest_fail(d, rc, "reading the stream header and manifest");
	rc = check_manifest(d, mig_stream_reader_manifest(d->r));
	if (rc < 0)
		return rc;
	rc = mem_crc_cache_init(&d->cc, d->cfg.mem.base,
				mem_fd_usable(d->cfg.mem.fd, d->cfg.mem.size) ? d->cfg.mem.fd : -1,
				d->cfg.mem.size, CRC_CHUNK, true /* fresh memory: see engine.h */);
	if (rc < 0)
		return dest_fail(d, rc, "setting up the memory checksum");
	for (unsigned i = 0; i < d->ndev; i++) {
		rc = dest_feed_start(d->dev[i].c, i, &d->feed[i]);
		if (rc < 0)
			return dest_fail(d, rc, "starting device %u's data feeder", i);
	}
	d->t_round = eng_now_ns();
	dest_progress(d, MIG_PHASE_PRECOPY);

	while (!d->is_stream_done) {
		rc = mig_stream_reader_next(d->r, &s);
		if (rc < 0) {
			/* Every stream ended and CHECKSUMS refused: a device's bytes differ. */
			if (rc == -EBADMSG && d->nended == d->ndev && !d->has_checksums)
				d->rep->verify_devices = MIG_VERDICT_MISMATCH;
			return dest_fail(d, rc, "reading the stream");
		}
		rc = apply(d, &s);
		if (rc < 0)
			return rc;
		if (mig_stream_reader_offset(d->r) - d->last_progress >= PROGRESS_BYTES)
			dest_progress(d, d->has_switchover ? MIG_PHASE_STOPCOPY
							   : MIG_PHASE_PRECOPY);
	}
	/* Every device has all its bytes before anything validates them. */
	for (unsigned i = 0; i < d->ndev; i++) {
		rc = dest_feed_drain(d->feed[i]);
		if (rc < 0)
			return dest_fail(d, rc, "device %u (%s) refused its data", i,
					 d->dev[i].name);
	}
	return 0;
}

/* The feeders are done with the devices (or must stop using them: the
 * discard resets them). What is still queued after a failure is dropped. */
static void stop_feeds(struct mig_dest *d)
{
	for (unsigned i = 0; i < d->ndev; i++) {
		dest_feed_stop(d->feed[i]);
		d->feed[i] = NULL;
	}
}

/* After END: memory checksum, then every device validates what it got. */
static int verify(struct mig_dest *d)
{
	bool want[MIG_MAX_DEVICES];
	enum ferry_mig_state to[MIG_MAX_DEVICES];
	int rcs[MIG_MAX_DEVICES];
	int64_t t = eng_now_ns();
	int rc;

	if (d->t_switch)
		mig_report_step(d->rep, "stop-copy part received", (double)(t - d->t_switch) / 1e6);
	dest_progress(d, MIG_PHASE_VERIFY);
	if (d->has_mem_crc) {
		uint32_t got = mem_crc_cache_value(&d->cc);

		d->rep->verify_memory = got == d->mem_crc ? MIG_VERDICT_MATCH
							  : MIG_VERDICT_MISMATCH;
		if (got != d->mem_crc)
			return dest_fail(d, -EBADMSG, "guest memory checksum %08x, the source's "
					 "%08x", got, d->mem_crc);
	}
	mig_report_step(d->rep, "memory checksum", eng_ms_since(t));
	t = eng_now_ns();
	for (unsigned i = 0; i < d->ndev; i++) {
		want[i] = true;
		to[i] = FERRY_MIG_STOP;
	}
	rc = eng_devs_set_states(d->dev, d->ndev, want, to, rcs);
	for (unsigned i = 0; rc < 0 && i < d->ndev; i++) {
		if (rcs[i] < 0) {
			d->rep->verify_devices = MIG_VERDICT_MISMATCH;
			return dest_fail(d, rcs[i], "device %u (%s) rejected its migrated state",
					 i, d->dev[i].name);
		}
	}
	d->rep->verify_devices = MIG_VERDICT_MATCH;
	mig_report_step(d->rep, "devices validate (RESUMING to STOP)", eng_ms_since(t));
	return 0;
}

static void ack_message(struct mig_dest *d, char *buf, size_t len, const char *text)
{
	snprintf(buf, len, "%s memory=%s devices=%s: %s", MIG_ACK_VERIFY_PREFIX,
		 mig_verdict_str(d->rep->verify_memory), mig_verdict_str(d->rep->verify_devices),
		 text);
}

/* Devices running, workloads resumed, ack out. */
static int take_over(struct mig_dest *d)
{
	char msg[MIG_ACK_MSG_MAX];
	int64_t t = eng_now_ns();
	int rc = eng_devs_start(d->dev, d->ndev);

	if (rc < 0)
		return dest_fail(d, rc, "starting the devices");
	mig_report_step(d->rep, "devices to RUNNING", eng_ms_since(t));
	t = eng_now_ns();
	pthread_mutex_lock(&d->lock);
	d->is_committed = !atomic_load(&d->is_cancelled);
	pthread_mutex_unlock(&d->lock);
	if (!d->is_committed)
		return dest_fail(d, -ECANCELED, "before resuming");
	rc = d->cfg.hooks.resume(d->cfg.hooks.opaque);
	if (rc < 0)
		return dest_fail(d, rc, "resuming the workloads");
	d->is_resumed = true;
	mig_report_step(d->rep, "workloads resume", eng_ms_since(t));
	t = eng_now_ns();
	if (!d->t->has_backchannel) {
		d->rep->downtime_ms = d->t_switch ? eng_ms_since(d->t_switch) : 0.0;
		return 0;
	}
	ack_message(d, msg, sizeof(msg), "the destination runs the guest");
	rc = mig_ack_send(d->t, 0, msg, d->io_timeout_ms);
	mig_report_step(d->rep, "acknowledgement", eng_ms_since(t));
	d->rep->downtime_ms = d->t_switch ? eng_ms_since(d->t_switch) : 0.0;
	if (rc < 0)
		return dest_fail(d, rc, "sending the acknowledgement (the source keeps the guest)");
	return 0;
}

/* Nothing of this migration may run: stop what started, reset devices,
 * tell the source why. */
static void discard(struct mig_dest *d)
{
	char msg[MIG_ACK_MSG_MAX];
	int status = d->rep->error < 0 ? -d->rep->error : EIO;

	if (d->is_resumed) {
		d->cfg.hooks.stop(d->cfg.hooks.opaque);
		d->is_resumed = false;
	}
	if (d->t && d->t->has_backchannel && !atomic_load(&d->is_cancelled)) {
		ack_message(d, msg, sizeof(msg), d->rep->error_msg);
		mig_ack_send(d->t, status, msg, 2000); /* best effort: it may be gone */
	}
	reset_all(d);
	log_err("incoming migration on %s discarded: every device reset, nothing resumed", d->uri);
}

int mig_dest_run(struct mig_dest *d, struct mig_report *report)
{
	int rc;

	mig_report_init(report, true, d->uri, 0);
	pthread_mutex_lock(&d->lock);
	if (d->has_run) {
		pthread_mutex_unlock(&d->lock);
		mig_report_fail(report, -EINVAL, "a mig_dest runs once");
		return -EINVAL;
	}
	d->has_run = d->is_running = true;
	pthread_mutex_unlock(&d->lock);
	d->rep = report;
	report->ndevices = d->ndev;
	report->memory_bytes = d->cfg.mem.size;
	for (unsigned i = 0; i < d->ndev; i++)
		snprintf(report->devices[i].kind, sizeof(report->devices[i].kind), "%s",
			 d->dev[i].kind);
	dest_progress(d, MIG_PHASE_SETUP);

	/* The report names where the source connected (tcp: port 0 resolved). */
	if (d->l)
		snprintf(report->uri, sizeof(report->uri), "%s", mig_listener_uri(d->l));
	rc = accept_source(d);
	d->t_start = eng_now_ns();
	if (rc == 0)
		rc = receive(d);
	stop_feeds(d);
	if (rc == 0)
		rc = verify(d);
	if (rc == 0)
		rc = take_over(d);
	if (rc < 0) {
		discard(d);
	} else {
		report->outcome = MIG_OUTCOME_SUCCESS;
	}

	report->total_ms = eng_ms_since(d->t_start);
	report->bytes_total = d->r ? mig_stream_reader_offset(d->r) : 0;
	report->bandwidth_bytes_per_s = report->total_ms > 0.0 ?
		(double)report->bytes_total / (report->total_ms / 1000.0) : 0.0;
	for (unsigned i = 0; i < d->ndev; i++) {
		report->devices[i].precopy_bytes = d->dev[i].precopy_bytes;
		report->devices[i].stopcopy_bytes = d->dev[i].stopcopy_bytes;
		report->devices[i].bytes = d->dev[i].precopy_bytes + d->dev[i].stopcopy_bytes;
	}
	pthread_mutex_lock(&d->lock);
	d->is_running = false;
	pthread_mutex_unlock(&d->lock);
	dest_progress(d, MIG_PHASE_DONE);
	if (rc == 0)
		log_info("incoming migration on %s: done in %.1f ms (downtime here %.1f ms)",
			 d->uri, report->total_ms, report->downtime_ms);
	return rc;
}
