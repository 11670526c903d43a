/*
 * The migration engine, source side: configuration, setup, the pre-copy
 * rounds and the switchover policy. The switchover itself, the ack and
 * what happens after are in engine_switchover.c. See engine.h.
 */
#include "migrate/engine_source.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ferry/client.h>
#include <ferry/client_migration.h>

#include "migrate/ack.h"
#include "migrate/uri.h"
#include "util/crc32.h"
#include "util/log.h"

/* A bandwidth measurement needs a round of at least this many bytes: a
 * round of a few pages measures the round trips, not the link. */
#define BW_MIN_ROUND_BYTES (1ull << 20)
/* Progress events within a round, at most this often. */
#define PROGRESS_EVERY_NS (100 * 1000000ll)
/* Bandwidth assumed before any measurement (only the first prediction
 * could use it, and round 1 always measures). */
#define BW_INITIAL (100.0 * 1e6)

/* ---- configuration ---- */

static bool kind_ok(const char *k)
{
	size_t n = k ? strlen(k) : 0;

	if (!n || n > MIG_KIND_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = k[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-'))
			return false;
	}
	return true;
}

int eng_devices_copy(struct eng_dev *out, const struct mig_engine_device *in, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct eng_dev *d = &out[i];

		if (!in[i].c || !kind_ok(in[i].kind)) {
			log_err("migration: device %u: %s", i,
				!in[i].c ? "no client" : "kind must be 1..32 of [A-Za-z0-9_.-]");
			return -EINVAL;
		}
		memset(d, 0, sizeof(*d));
		d->index = i;
		d->c = in[i].c;
		d->name = ferry_client_name(in[i].c);
		snprintf(d->kind, sizeof(d->kind), "%s", in[i].kind);
		/* The manifest's socket is informational: keep what fits, printable. */
		for (size_t k = 0, j = 0; in[i].socket && in[i].socket[k] &&
					  j < sizeof(d->socket) - 1; k++) {
			unsigned char ch = (unsigned char)in[i].socket[k];

			if (ch > 0x20 && ch != 0x7f)
				d->socket[j++] = (char)ch;
		}
	}
	return 0;
}

int mig_source_create(const struct mig_source_config *cfg, struct mig_source **out)
{
	struct mig_source *s;
	uint32_t ps = cfg && cfg->mem.page_size ? cfg->mem.page_size : 4096;
	int rc;

	*out = NULL;
	if (!cfg || !cfg->uri || strlen(cfg->uri) >= MIG_URI_MAX || !cfg->mem.base ||
	    !cfg->mem.size || (ps & (ps - 1)) || ps < MIG_PAGE_SIZE_MIN || cfg->mem.size % ps ||
	    !cfg->dv || cfg->ndevices > MIG_MAX_DEVICES || (cfg->ndevices && !cfg->devices) ||
	    !cfg->hooks.pause || !cfg->hooks.resume) {
		log_err("migration: incomplete source configuration");
		return -EINVAL;
	}
	if (dirty_view_page_size(cfg->dv) != ps ||
	    dirty_view_pages(cfg->dv) != cfg->mem.size / ps ||
	    dirty_view_device_count(cfg->dv) != cfg->ndevices) {
		log_err("migration: the dirty view covers %" PRIu64 " pages of %" PRIu64
			" bytes and %u devices; guest memory has %" PRIu64 " pages of %u and there"
			" are %u devices", dirty_view_pages(cfg->dv), dirty_view_page_size(cfg->dv),
			dirty_view_device_count(cfg->dv), cfg->mem.size / ps, ps, cfg->ndevices);
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	s->cfg.devices = NULL;
	s->cfg.mem.page_size = ps;
	snprintf(s->uri, sizeof(s->uri), "%s", cfg->uri);
	s->cfg.uri = s->uri;
	if (cfg->host_name)
		snprintf(s->host_name, sizeof(s->host_name), "%s", cfg->host_name);
	else if (gethostname(s->host_name, sizeof(s->host_name) - 1) < 0 || !s->host_name[0])
		snprintf(s->host_name, sizeof(s->host_name), "ferry-host");
	s->ndev = cfg->ndevices;
	rc = eng_devices_copy(s->dev, cfg->devices, cfg->ndevices);
	if (rc < 0) {
		free(s);
		return rc;
	}
	s->downtime_ms = cfg->downtime_ms ? cfg->downtime_ms : MIG_ENGINE_DEFAULT_DOWNTIME_MS;
	s->max_rounds = cfg->max_rounds ? cfg->max_rounds : MIG_ENGINE_DEFAULT_MAX_ROUNDS;
	s->io_timeout_ms = cfg->io_timeout_ms ? cfg->io_timeout_ms
					      : MIG_ENGINE_DEFAULT_IO_TIMEOUT_MS;
	s->ack_timeout_ms = cfg->ack_timeout_ms > 0 ? cfg->ack_timeout_ms
						    : MIG_ENGINE_DEFAULT_ACK_TIMEOUT_MS;
	s->npages = cfg->mem.size / ps;
	s->mem_fd = mem_fd_usable(cfg->mem.fd, cfg->mem.size) ? cfg->mem.fd : -1;
	s->words = dirty_view_words(cfg->dv);
	pthread_mutex_init(&s->lock, NULL);
	*out = s;
	return 0;
}

void mig_source_destroy(struct mig_source *s)
{
	if (!s)
		return;
	mig_stream_writer_destroy(s->w);
	mig_transport_close(s->t);
	free(s->bitmap);
	free(s->scratch);
	free(s->buf);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

bool mig_source_cancel(struct mig_source *s)
{
	bool ok;

	pthread_mutex_lock(&s->lock);
	ok = s->is_running && !s->is_committed;
	if (ok) {
		atomic_store(&s->is_cancelled, true);
		/* A write blocked on a stalled destination returns now. */
		if (s->t)
			mig_transport_shutdown(s->t);
	}
	pthread_mutex_unlock(&s->lock);
	if (ok)
		log_info("migration to %s: cancel requested", s->uri);
	return ok;
}

int src_check_cancel(struct mig_source *s)
{
	if (!atomic_load(&s->is_cancelled))
		return 0;
	mig_report_fail(s->rep, -ECANCELED, "cancelled");
	return -ECANCELED;
}

/* A failure: the report keeps the first; -ECANCELED wins over the
 * transport error a cancel provokes. */
int src_fail(struct mig_source *s, int rc, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	if (atomic_load(&s->is_cancelled))
		return src_check_cancel(s);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mig_report_fail(s->rep, rc, "%s: %s", msg, strerror(rc < 0 ? -rc : EIO));
	log_err("migration to %s failed: %s: %s", s->uri, msg, strerror(rc < 0 ? -rc : EIO));
	return rc < 0 ? rc : -EIO;
}

/* What the round about to start should send: its pages and what the
 * pre-copy devices have pending. */
static uint64_t round_estimate(struct mig_source *s)
{
	uint64_t pages = 0, bytes;
	bool unused;

	for (size_t w = 0; w < s->words; w++)
		pages += (uint64_t)__builtin_popcountll(s->bitmap[w]);
	bytes = pages * s->cfg.mem.page_size;
	for (unsigned i = 0; i < s->ndev; i++)
		if (eng_dev_has_precopy(&s->dev[i]))
			bytes += eng_dev_precopy_pending(&s->dev[i], &unused);
	return bytes;
}

void src_progress(struct mig_source *s, enum mig_phase phase)
{
	struct mig_stream_stats st;

	s->t_progress = eng_now_ns();
	if (s->w) {
		mig_stream_writer_stats(s->w, &st);
		s->prog.bytes_sent = st.bytes;
		/* Within a round: what is left of it. */
		if (phase == MIG_PHASE_PRECOPY && !s->prog.is_round_end) {
			uint64_t done = st.bytes - s->round_first_byte;

			s->prog.bytes_remaining =
				done < s->round_to_send ? s->round_to_send - done : 0;
		}
	}
	s->prog.phase = phase;
	s->prog.rate_bytes_per_s = s->bw;
	if (s->cfg.hooks.progress)
		s->cfg.hooks.progress(s->cfg.hooks.opaque, &s->prog);
}

/* ---- setup ---- */

static void build_manifest(struct mig_source *s, struct mig_manifest *m)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->source_host, sizeof(m->source_host), "%s", s->host_name);
	for (char *p = m->source_host; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			*p = '_';
	m->mem_size = s->cfg.mem.size;
	m->page_size = s->cfg.mem.page_size;
	m->compression = s->cfg.compression;
	m->ndevices = s->ndev;
	for (unsigned i = 0; i < s->ndev; i++) {
		snprintf(m->devices[i].kind, sizeof(m->devices[i].kind), "%s", s->dev[i].kind);
		snprintf(m->devices[i].socket, sizeof(m->devices[i].socket), "%s",
			 s->dev[i].socket);
		m->devices[i].migration_flags = (uint32_t)s->dev[i].flags;
	}
}

/*
 * Round 1 without the holes of guest memory: pages never written, which the
 * destination's fresh memory already holds as zeros. A hole written from
 * now on is dirty, so it goes in a later round.
 */
static int leave_out_holes(struct mig_source *s)
{
	const uint64_t ps = s->cfg.mem.page_size, size = s->cfg.mem.size;
	uint64_t pos = 0, holes = 0;

	memset(s->bitmap, 0, s->words * sizeof(uint64_t));
	while (pos < size) {
		uint64_t d, e;
		int rc = mem_next_data(s->mem_fd, pos, size, &d, &e);

		if (rc < 0)
			return src_fail(s, rc, "looking for holes in guest memory");
		holes += (d - pos) / ps;
		for (uint64_t p = d / ps; p < (e + ps - 1) / ps; p++)
			s->bitmap[p / 64] |= 1ull << (p % 64);
		pos = e > d ? e : size;
	}
	s->rep->hole_pages = holes;
	s->data_bytes = size - holes * ps;
	log_info("migration to %s: %" PRIu64 " of %" PRIu64 " guest pages were never written: "
		 "not sent", s->uri, holes, s->npages);
	return 0;
}

/* Bytes checksummed in setup to time the memory checksum: large enough to
 * come from memory rather than the cache, small enough to cost under 1 ms. */
#define CRC_SAMPLE_BYTES (8u << 20)

/*
 * Times the checksum over the first data of guest memory, for the
 * prediction: at the switchover, what the checksum takes beyond the stop-
 * copy transfer it overlaps is downtime (50 ms per GiB on the build VM).
 * The sample starts at the first data (SEEK_DATA) and takes only resident
 * pages (mincore: a hole would be allocated by reading it; asking SEEK_HOLE
 * where the data ends would scan all of full memory). No sample without
 * data worth timing: holes cost nearly nothing then.
 */
static void measure_crc_rate(struct mig_source *s)
{
	const uint64_t ps = s->cfg.mem.page_size, sys = (uint64_t)sysconf(_SC_PAGESIZE);
	unsigned char vec[CRC_SAMPLE_BYTES / 4096];
	uint64_t d = 0, n;
	int64_t t0;

	if (sys != 4096)
		return; /* vec[] is sized for 4 KiB system pages */
	if (s->mem_fd >= 0) {
		off_t o = lseek(s->mem_fd, 0, SEEK_DATA);

		if (o < 0)
			return;
		d = (uint64_t)o / ps * ps;
	}
	n = s->cfg.mem.size - d < CRC_SAMPLE_BYTES ? s->cfg.mem.size - d : CRC_SAMPLE_BYTES;
	if (mincore(s->cfg.mem.base + d, n, vec) < 0)
		return;
	for (uint64_t p = 0; p < n / sys; p++) {
		if (!(vec[p] & 1)) {
			n = p * sys / ps * ps;
			break;
		}
	}
	if (n < CRC_SAMPLE_BYTES / 8)
		return;
	t0 = eng_now_ns();
	(void)ferry_crc32(0, s->cfg.mem.base + d, n);
	t0 = eng_now_ns() - t0;
	if (t0 > 0)
		s->crc_bytes_per_s = (double)n / ((double)t0 / 1e9);
}

static int setup(struct mig_source *s)
{
	struct mig_stream_writer_opts wo = {.timeout_ms = s->io_timeout_ms};
	struct mig_transport *t = NULL;
	struct mig_manifest m;
	int rc;

	for (unsigned i = 0; i < s->ndev; i++) {
		struct dirty_view_device info;

		rc = eng_dev_probe(&s->dev[i]);
		if (rc < 0)
			return src_fail(s, rc, "device %u (%s) cannot be migrated", i,
					s->dev[i].name);
		if (s->dev[i].state != FERRY_MIG_RUNNING)
			return src_fail(s, -EBUSY, "device %u (%s) is in %s, not RUNNING", i,
					s->dev[i].name, ferry_mig_state_name(s->dev[i].state));
		snprintf(s->rep->devices[i].kind, sizeof(s->rep->devices[i].kind), "%s",
			 s->dev[i].kind);
		if (dirty_view_device_get(s->cfg.dv, i, &info) == 0)
			s->rep->devices[i].dirty_provider = dirty_provider_name(info.provider);
	}
	s->rep->ndevices = s->ndev;

	s->bitmap = calloc(s->words, sizeof(uint64_t));
	s->scratch = calloc(s->words, sizeof(uint64_t));
	s->buf_len = MIG_DEVICE_CHUNK_BYTES;
	s->buf = malloc(s->buf_len);
	if (!s->bitmap || !s->scratch || !s->buf)
		return src_fail(s, -ENOMEM, "allocating the dirty bitmaps");

	rc = mig_transport_connect(s->uri, s->io_timeout_ms, &t);
	if (rc < 0)
		return src_fail(s, rc, "connecting to %s", s->uri);
	pthread_mutex_lock(&s->lock);
	s->t = t;
	if (atomic_load(&s->is_cancelled))
		mig_transport_shutdown(t);
	pthread_mutex_unlock(&s->lock);
	if ((rc = src_check_cancel(s)) < 0)
		return rc;

	build_manifest(s, &m);
	rc = mig_stream_writer_create(s->t, &m, &wo, &s->w);
	if (rc < 0)
		return src_fail(s, rc, "starting the stream");

	/* Dirty tracking before anything is sent: every write from now on is
	 * seen, and the first round sends everything. */
	rc = dirty_view_start(s->cfg.dv);
	if (rc < 0)
		return src_fail(s, rc, "starting dirty tracking");
	s->is_tracking = true;
	dirty_view_mark_all(s->cfg.dv);
	dirty_view_take(s->cfg.dv, s->bitmap); /* round 1: everything... */
	s->data_bytes = s->cfg.mem.size; /* (less the holes, when the fd tells them) */
	if (s->mem_fd >= 0)
		rc = leave_out_holes(s); /* ...that was ever written */
	if (rc < 0)
		return rc;

	for (unsigned i = 0; i < s->ndev; i++) {
		if (!eng_dev_has_precopy(&s->dev[i]))
			continue;
		rc = eng_dev_set_state(&s->dev[i], FERRY_MIG_PRE_COPY);
		if (rc < 0)
			return src_fail(s, rc, "device %u (%s) did not enter PRE_COPY", i,
					s->dev[i].name);
	}
	if (!s->cfg.no_memory_checksum)
		measure_crc_rate(s);
	return src_check_cancel(s);
}

/* ---- rounds ---- */

static int device_sink(void *opaque, unsigned device, const void *buf, size_t len)
{
	struct mig_source *s = opaque;
	int rc = mig_stream_write_device_data(s->w, device, buf, len);

	if (rc == 0 && eng_now_ns() - s->t_progress > PROGRESS_EVERY_NS)
		src_progress(s, s->prog.phase);
	return rc;
}

int src_send_pages(struct mig_source *s, const uint64_t *bitmap, unsigned flags)
{
	uint64_t step = MIG_ENGINE_PAGES_STEP / s->cfg.mem.page_size;
	int rc;

	if (!step)
		step = 1;
	step = (step + 63) & ~63ull; /* whole bitmap words per call */
	for (uint64_t first = 0; first < s->npages; first += step) {
		uint64_t count = s->npages - first < step ? s->npages - first : step;
		bool any = false;

		/* Skip clean stretches without asking the writer. */
		for (uint64_t w = first / 64; !any && w < (first + count + 63) / 64; w++)
			any = bitmap[w] != 0;
		if (!any)
			continue;
		rc = mig_stream_write_pages(s->w, s->cfg.mem.base, bitmap, first, count, flags);
		if (rc < 0)
			return src_fail(s, rc, "sending guest pages %" PRIu64 "..%" PRIu64, first,
					first + count - 1);
		if (eng_now_ns() - s->t_progress > PROGRESS_EVERY_NS)
			src_progress(s, s->prog.phase);
		if ((rc = src_check_cancel(s)) < 0)
			return rc;
	}
	return 0;
}

/*
 * Reads every PRE_COPY device until it has nothing more for now (a read of
 * 0), or until it has given what it had pending when the round started (its
 * precopy_info): a device that keeps changing its state while running would
 * otherwise always have a little more, and what it changes during this
 * round is the next round's business, as for guest pages.
 */
static int read_precopy(struct mig_source *s)
{
	for (unsigned i = 0; i < s->ndev; i++) {
		struct eng_dev *d = &s->dev[i];
		int64_t deadline = eng_now_ns() + (int64_t)MIG_ENGINE_DEVICE_ROUND_MS * 1000000;
		bool drained = false, initial_done = false;
		uint64_t pending;
		int rc;

		if (!eng_dev_has_precopy(d))
			continue;
		d->round_bytes = 0;
		pending = eng_dev_precopy_pending(d, &initial_done);
		rc = eng_dev_read(d, s->buf, s->buf_len, pending, deadline, device_sink, s,
				  &d->round_bytes, &drained);
		if (rc < 0)
			return src_fail(s, rc, "device %u (%s): pre-copy data", i, d->name);
		if (!drained && !d->is_drained)
			eng_dev_precopy_pending(d, &drained); /* initial data all read? */
		if (drained)
			d->is_drained = true;
		if (!drained && eng_now_ns() > deadline)
			log_info("migration: device %u (%s) still had pre-copy data after %d "
				 "ms: the next round carries on", i, d->name,
				 MIG_ENGINE_DEVICE_ROUND_MS);
		d->precopy_bytes += d->round_bytes;
		d->last_round_bytes = d->round_bytes;
		if ((rc = src_check_cancel(s)) < 0)
			return rc;
	}
	return 0;
}

static void measure_bandwidth(struct mig_source *s, uint64_t bytes, double ms)
{
	double bw;

	if (bytes < BW_MIN_ROUND_BYTES || ms <= 0.0)
		return;
	bw = (double)bytes / (ms / 1000.0);
	/* Smoothed, so one noisy round does not swing the decision. */
	s->bw = s->bw > 0.0 ? 0.5 * s->bw + 0.5 * bw : bw;
}

/*
 * The prediction after a round: what the stop-copy part would carry now at
 * the measured bandwidth, or the memory checksum it overlaps if that takes
 * longer. Not in it: the devices' own stop and load times, which no
 * earlier step measures (entering PRE_COPY can cost a device far more or
 * far less than leaving it).
 */
static double predict_ms(struct mig_source *s, uint64_t dirty_pages, uint64_t *remaining)
{
	uint64_t bytes = dirty_pages * s->cfg.mem.page_size;
	double bw = s->bw > 0.0 ? s->bw : BW_INITIAL;
	double transfer_ms, crc_ms = 0.0;

	for (unsigned i = 0; i < s->ndev; i++)
		bytes += eng_dev_stopcopy_estimate(&s->dev[i]);
	*remaining = bytes;
	transfer_ms = (double)bytes / bw * 1000.0;
	if (s->crc_bytes_per_s > 0.0)
		crc_ms = (double)s->data_bytes / s->crc_bytes_per_s * 1000.0;
	return transfer_ms > crc_ms ? transfer_ms : crc_ms;
}

static bool all_drained(const struct mig_source *s)
{
	for (unsigned i = 0; i < s->ndev; i++)
		if (eng_dev_has_precopy(&s->dev[i]) && !s->dev[i].is_drained)
			return false;
	return true;
}

/*
 * Before the pause: the destination has applied everything up to the last
 * ROUND_END (ack.h, round ack). Whatever it still had to load would
 * otherwise be loaded after the pause, inside the downtime; now the guest
 * runs meanwhile, and what it dirties goes into the stop-copy part.
 */
static int wait_caught_up(struct mig_source *s, uint32_t round)
{
	char msg[MIG_ACK_MSG_MAX + 1] = "";
	int64_t t0 = eng_now_ns();
	int status = 0, rc;

	if (!s->t->has_backchannel)
		return 0;
	rc = mig_ack_wait_round(s->t, round, s->ack_timeout_ms, &status, msg, sizeof(msg));
	if (rc == 1) /* the destination gave up and said why */
		return src_fail(s, status ? -status : -EPROTO,
				"the destination refused the migration (%s)", msg);
	if (rc < 0)
		return src_fail(s, rc, "waiting for the destination to apply round %u", round);
	log_info("migration to %s: the destination applied round %u %.1f ms after it was sent",
		 s->uri, round, eng_ms_since(t0));
	return 0;
}

/*
 * One pre-copy round: the pages in s->bitmap and the devices' pre-copy
 * data; then the next dirty set is collected into s->bitmap and the
 * downtime predicted. Sets *@done when the migration should switch over.
 */
static int precopy_round(struct mig_source *s, uint32_t round, bool *done)
{
	struct mig_round_report *rr = mig_report_add_round(s->rep);
	struct mig_stream_stats before, after;
	int64_t t0 = eng_now_ns();
	uint64_t dirty, pages, remaining, dev_bytes = 0;
	double ms, predicted, t_pages;
	int rc;

	mig_stream_writer_stats(s->w, &before);
	s->prog.round = round;
	s->prog.phase = MIG_PHASE_PRECOPY;
	s->round_first_byte = before.bytes;
	s->round_to_send = round_estimate(s);
	if ((rc = src_send_pages(s, s->bitmap, 0)) < 0)
		return rc;
	t_pages = eng_ms_since(t0);
	if ((rc = read_precopy(s)) < 0)
		return rc;
	rc = mig_stream_writer_flush(s->w);
	if (rc < 0)
		return src_fail(s, rc, "round %u", round);

	/* What the next round (or the stop-copy part) must send. */
	if (dirty_view_collect(s->cfg.dv) < 0)
		return src_fail(s, -EIO, "collecting dirty pages");
	dirty = dirty_view_take(s->cfg.dv, s->bitmap);

	mig_stream_writer_stats(s->w, &after);
	pages = (after.pages_zero + after.pages_data + after.pages_zstd) -
		(before.pages_zero + before.pages_data + before.pages_zstd);
	rc = mig_stream_write_round_end(s->w, round, pages, dirty);
	mig_stream_writer_stats(s->w, &after);
	ms = eng_ms_since(t0);
	for (unsigned i = 0; i < s->ndev; i++)
		dev_bytes += eng_dev_has_precopy(&s->dev[i]) ? s->dev[i].round_bytes : 0;
	if (rr) {
		rr->bytes = after.bytes - before.bytes;
		rr->pages = pages;
		rr->zero_pages = after.pages_zero - before.pages_zero;
		rr->dirty_pages = dirty;
		rr->device_bytes = dev_bytes;
		rr->duration_ms = ms;
	}
	if (rc < 0)
		return src_fail(s, rc, "ending round %u", round);
	measure_bandwidth(s, after.bytes - before.bytes, ms);

	predicted = predict_ms(s, dirty, &remaining);
	s->prog.dirty_pages = dirty;
	s->prog.bytes_remaining = remaining;
	s->prog.predicted_downtime_ms = (uint64_t)(predicted + 0.5);
	s->prog.is_round_end = true;
	s->rep->predicted_downtime_ms = predicted;
	s->rep->measured_bandwidth_bytes_per_s = s->bw;
	log_info("migration to %s: round %u: %" PRIu64 " bytes in %.1f ms (pages %.1f ms), %" PRIu64
		 " pages dirty, %" PRIu64 " bytes to stop-copy at %.0f MB/s: %.1f ms predicted"
		 " (budget %u)", s->uri, round, after.bytes - before.bytes, ms, t_pages, dirty,
		 remaining, s->bw / 1e6, predicted, s->downtime_ms);
	src_progress(s, MIG_PHASE_PRECOPY);
	s->prog.is_round_end = false;

	if (predicted <= (double)s->downtime_ms && all_drained(s)) {
		s->rep->switchover_reason = "converged";
		*done = true;
	} else if (round >= s->max_rounds) {
		s->rep->switchover_reason = "round-limit";
		log_info("migration to %s: %u rounds without fitting %u ms (%.1f ms predicted):"
			 " switching over anyway", s->uri, round, s->downtime_ms, predicted);
		*done = true;
	}
	return src_check_cancel(s);
}

static void fill_totals(struct mig_source *s)
{
	struct mig_stream_stats st;
	struct mig_report *r = s->rep;

	r->total_ms = eng_ms_since(s->t_start);
	r->memory_bytes = s->cfg.mem.size;
	if (s->w) {
		mig_stream_writer_stats(s->w, &st);
		r->bytes_total = st.bytes;
		r->pages_total = st.pages_zero + st.pages_data + st.pages_zstd;
		r->zero_pages_total = st.pages_zero;
	}
	r->bandwidth_bytes_per_s = r->total_ms > 0.0 ? (double)r->bytes_total /
							(r->total_ms / 1000.0) : 0.0;
	for (unsigned i = 0; i < s->ndev; i++) {
		r->devices[i].precopy_bytes = s->dev[i].precopy_bytes;
		r->devices[i].stopcopy_bytes = s->dev[i].stopcopy_bytes;
		r->devices[i].bytes = s->dev[i].precopy_bytes + s->dev[i].stopcopy_bytes;
	}
}

int mig_source_run(struct mig_source *s, struct mig_report *report)
{
	bool done = false;
	int rc;

	mig_report_init(report, false, s->uri, s->downtime_ms);
	pthread_mutex_lock(&s->lock);
	if (s->has_run) {
		pthread_mutex_unlock(&s->lock);
		mig_report_fail(report, -EINVAL, "a mig_source runs once");
		return -EINVAL;
	}
	s->has_run = s->is_running = true;
	pthread_mutex_unlock(&s->lock);
	s->rep = report;
	s->t_start = eng_now_ns();
	log_info("migration to %s: starting (%" PRIu64 " bytes of guest memory, %u devices,"
		 " downtime budget %u ms, at most %u rounds)", s->uri, s->cfg.mem.size, s->ndev,
		 s->downtime_ms, s->max_rounds);
	src_progress(s, MIG_PHASE_SETUP);

	rc = setup(s);
	uint32_t round = 0;

	while (rc == 0 && !done)
		rc = precopy_round(s, ++round, &done);
	if (rc == 0)
		rc = wait_caught_up(s, round);
	if (rc == 0)
		rc = src_switchover(s);
	if (rc < 0 || !s->has_backchannel)
		src_recover(s); /* failed, or file: saved; the guest carries on here */
	if (rc < 0 && report->outcome == MIG_OUTCOME_RUNNING)
		mig_report_fail(report, rc, "%s", strerror(-rc));
	if (report->outcome != MIG_OUTCOME_SUCCESS && report->outcome != MIG_OUTCOME_SAVED)
		rc = report->error < 0 ? report->error : -EIO;

	fill_totals(s);
	pthread_mutex_lock(&s->lock);
	s->is_running = false;
	pthread_mutex_unlock(&s->lock);
	src_progress(s, MIG_PHASE_DONE);
	if (rc < 0)
		log_err("migration to %s: %s after %.1f ms: %s", s->uri,
			mig_outcome_str(report->outcome), report->total_ms, report->error_msg);
	else
		log_info("migration to %s: %s in %.1f ms, downtime %.1f ms", s->uri,
			 mig_outcome_str(report->outcome), report->total_ms, report->downtime_ms);
	return rc;
}
