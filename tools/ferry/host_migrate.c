/*
 * ferry host: migrations, outgoing (`migrate` on the control socket) and
 * incoming (--incoming). The engine (lib/migrate/engine.h) does the work on
 * a thread of its own; this file gives it the host's memory, devices, dirty
 * view and workloads, and turns its progress into control-socket events.
 *
 * A struct host_migration is shared by the host (host->mig, until the next
 * migration or shutdown joins its thread) and by the connection streaming
 * its events; it is reference counted and freed by the last one.
 * Lock order: host->lock, then host_migration->lock.
 */
#include "host.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/log.h>

#include "migrate/uri.h"

#define MAX_DOWNTIME_MS 3600000
/* Progress events kept for the streaming connection: phases move fast at
 * the switchover, and a client should see each. A client that falls
 * further behind skips to the newest ones. */
#define EVENT_RING 64u

struct host_migration {
	struct host *h;
	bool is_incoming;
	enum host_role prev_role;
	pthread_t thread;
	bool has_thread;
	struct mig_source *src;
	struct mig_dest *dst;
	struct mig_engine_device devs[HOST_MAX_DEVICES];

	pthread_mutex_t lock;
	pthread_cond_t cond;
	int refs;
	uint64_t seq;            /* progress events so far */
	struct mig_progress prog; /* the newest */
	struct mig_progress ring[EVENT_RING]; /* event n is ring[n % EVENT_RING] */
	bool is_over;
	int rc;
	json_object *report;     /* the final REPORT */

	struct mig_report rep;   /* the engine thread's */
};

static struct host_migration *mig_new(struct host *h, bool incoming)
{
	struct host_migration *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->h = h;
	m->is_incoming = incoming;
	m->refs = 1;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	host_engine_devices(h, m->devs);
	return m;
}

static void mig_get(struct host_migration *m)
{
	pthread_mutex_lock(&m->lock);
	m->refs++;
	pthread_mutex_unlock(&m->lock);
}

static void mig_put(struct host_migration *m)
{
	bool last;

	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	last = --m->refs == 0;
	pthread_mutex_unlock(&m->lock);
	if (!last)
		return;
	mig_source_destroy(m->src);
	mig_dest_destroy(m->dst);
	json_object_put(m->report);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static bool mig_is_over(struct host_migration *m)
{
	bool over;

	pthread_mutex_lock(&m->lock);
	over = m->is_over;
	pthread_mutex_unlock(&m->lock);
	return over;
}

/* ---- engine hooks ---- */

/* One stderr line per round and per phase: long operations show progress. */
static void print_progress(struct host_migration *m, const struct mig_progress *p)
{
	if (p->phase == MIG_PHASE_PRECOPY && p->is_round_end && !m->is_incoming)
		fprintf(stderr, "ferry host: outgoing migration: round %u done, %.1f MB sent, "
			"%llu pages dirty, %.0f MB/s, %llu ms downtime predicted\n", p->round,
			(double)p->bytes_sent / 1e6, (unsigned long long)p->dirty_pages,
			p->rate_bytes_per_s / 1e6, (unsigned long long)p->predicted_downtime_ms);
	else if (p->phase == MIG_PHASE_PRECOPY && p->is_round_end)
		fprintf(stderr, "ferry host: incoming migration: round %u done, %.1f MB received, "
			"%llu pages dirty\n", p->round, (double)p->bytes_sent / 1e6,
			(unsigned long long)p->dirty_pages);
	else if (p->phase != m->prog.phase && p->phase != MIG_PHASE_PRECOPY &&
		 p->phase != MIG_PHASE_DONE)
		fprintf(stderr, "ferry host: %s migration: %s\n",
			m->is_incoming ? "incoming" : "outgoing", mig_phase_str(p->phase));
}

static void on_progress(void *opaque, const struct mig_progress *p)
{
	struct host_migration *m = opaque;

	print_progress(m, p);
	pthread_mutex_lock(&m->lock);
	m->prog = *p;
	m->ring[m->seq % EVENT_RING] = *p;
	m->seq++;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

static int on_pause(void *opaque)
{
	struct host_migration *m = opaque;

	return host_workloads_pause(m->h);
}

static void on_resume(void *opaque)
{
	struct host_migration *m = opaque;

	host_workloads_resume(m->h);
}

static int on_dest_resume(void *opaque)
{
	struct host_migration *m = opaque;

	return host_workloads_start(m->h, true);
}

static void on_dest_stop(void *opaque)
{
	struct host_migration *m = opaque;

	host_workloads_stop(m->h);
}

/* The engine thread's last act: publish the result. */
static void finish(struct host_migration *m, int rc)
{
	struct host *h = m->h;
	json_object *report = mig_report_to_json(&m->rep);

	pthread_mutex_lock(&h->lock);
	if (m->is_incoming)
		h->role = HOST_ROLE_DESTINATION;
	else if (m->rep.outcome == MIG_OUTCOME_SUCCESS)
		h->role = HOST_ROLE_MIGRATED;
	else
		h->role = m->prev_role;
	json_object_put(h->last_report);
	h->last_report = report ? json_object_get(report) : NULL;
	pthread_mutex_unlock(&h->lock);

	pthread_mutex_lock(&m->lock);
	m->rc = rc;
	m->report = report;
	m->is_over = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

static void *source_main(void *arg)
{
	struct host_migration *m = arg;
	int rc = mig_source_run(m->src, &m->rep);

	if (rc == 0)
		fprintf(stderr, "ferry host: migration to %s: %s in %.1f ms, downtime %.1f ms, "
			"%.0f MB/s\n", m->rep.uri, mig_outcome_str(m->rep.outcome), m->rep.total_ms,
			m->rep.downtime_ms, m->rep.bandwidth_bytes_per_s / 1e6);
	else
		fprintf(stderr, "ferry host: migration to %s %s: %s\n", m->rep.uri,
			mig_outcome_str(m->rep.outcome), m->rep.error_msg);
	finish(m, rc);
	return NULL;
}

static void *dest_main(void *arg)
{
	struct host_migration *m = arg;
	int rc = mig_dest_run(m->dst, &m->rep);

	finish(m, rc);
	if (rc < 0) {
		fprintf(stderr, "ferry host: incoming migration failed: %s\n", m->rep.error_msg);
		host_request_quit(m->h, 1);
	} else {
		fprintf(stderr, "ferry host: incoming migration done in %.1f ms (downtime here "
			"%.1f ms); the guest runs here\n", m->rep.total_ms, m->rep.downtime_ms);
	}
	return NULL;
}

/* ---- the control socket's side ---- */

static void reply_error(int fd, int err, const char *msg)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "errno", json_object_new_int(err));
	json_object_object_add(o, "error", json_object_new_string(msg));
	host_control_send(fd, o);
	json_object_put(o);
}

/* An optional integer member in [lo, hi]: 0 and *@out, 1 if absent, -1 bad. */
static int get_int(json_object *req, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
	json_object *v;

	if (!json_object_object_get_ex(req, key, &v))
		return 1;
	if (!json_object_is_type(v, json_type_int))
		return -1;
	*out = json_object_get_int64(v);
	return *out >= lo && *out <= hi ? 0 : -1;
}

static int parse_request(json_object *req, struct mig_source_config *cfg, char *why,
			 size_t whylen)
{
	json_object *v;
	struct mig_uri u;
	int64_t n;
	int r;

	if (!json_object_object_get_ex(req, "to", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		snprintf(why, whylen, "migrate needs \"to\": a tcp:, unix: or file: URI");
		return -EINVAL;
	}
	cfg->uri = json_object_get_string(v);
	if (mig_uri_parse(cfg->uri, false, &u) < 0) {
		snprintf(why, whylen, "\"to\": \"%.200s\" is not a tcp:HOST:PORT, unix:PATH or "
			 "file:PATH URI", cfg->uri);
		return -EINVAL;
	}
	r = get_int(req, "downtime_ms", 1, MAX_DOWNTIME_MS, &n);
	if (r < 0) {
		snprintf(why, whylen, "\"downtime_ms\" must be an integer from 1 to %d",
			 MAX_DOWNTIME_MS);
		return -EINVAL;
	}
	cfg->downtime_ms = r == 0 ? (uint32_t)n : MIG_ENGINE_DEFAULT_DOWNTIME_MS;
	r = get_int(req, "max_rounds", 1, MIG_REPORT_MAX_ROUNDS, &n);
	if (r < 0) {
		snprintf(why, whylen, "\"max_rounds\" must be an integer from 1 to %u",
			 MIG_REPORT_MAX_ROUNDS);
		return -EINVAL;
	}
	cfg->max_rounds = r == 0 ? (uint32_t)n : MIG_ENGINE_DEFAULT_MAX_ROUNDS;
	if (json_object_object_get_ex(req, "compression", &v)) {
		const char *c = json_object_get_string(v);

		if (!json_object_is_type(v, json_type_string) ||
		    (strcmp(c, "none") && strcmp(c, "zstd"))) {
			snprintf(why, whylen, "\"compression\" must be \"none\" or \"zstd\"");
			return -EINVAL;
		}
		cfg->compression = strcmp(c, "zstd") ? MIG_COMPRESS_NONE : MIG_COMPRESS_ZSTD;
	}
	if (json_object_object_get_ex(req, "memory_checksum", &v)) {
		if (!json_object_is_type(v, json_type_boolean)) {
			snprintf(why, whylen, "\"memory_checksum\" must be true or false");
			return -EINVAL;
		}
		cfg->no_memory_checksum = !json_object_get_boolean(v);
	}
	return 0;
}

/* Creates and starts an outgoing migration; h->lock held. */
static int start_source(struct host *h, struct host_migration *m, struct mig_source_config *cfg,
			char *why, size_t whylen)
{
	int rc;

	cfg->mem = (struct mig_guest_memory){.base = h->mem, .size = h->mem_size,
					     .page_size = HOST_PAGE_SIZE, .fd = h->mem_fd};
	cfg->dv = h->dv;
	cfg->ndevices = h->ndev;
	cfg->devices = m->devs;
	cfg->hooks = (struct mig_source_hooks){.opaque = m, .pause = on_pause,
					       .resume = on_resume, .progress = on_progress};
	rc = mig_source_create(cfg, &m->src);
	if (rc < 0) {
		snprintf(why, whylen, "cannot set up the migration: %s", strerror(-rc));
		return rc;
	}
	rc = -pthread_create(&m->thread, NULL, source_main, m);
	if (rc < 0) {
		snprintf(why, whylen, "no thread for the migration: %s", strerror(-rc));
		return rc;
	}
	m->has_thread = true;
	return 0;
}

/* Joins a finished migration's thread and drops the host's reference. */
static void retire(struct host_migration *m)
{
	if (!m)
		return;
	if (m->has_thread)
		pthread_join(m->thread, NULL);
	m->has_thread = false;
	mig_put(m);
}

static void stream_events(struct host_migration *m, int fd)
{
	uint64_t sent = 0;
	bool is_gone = false;
	json_object *report, *o;
	int rc;

	pthread_mutex_lock(&m->lock);
	for (;;) {
		if (m->seq != sent) {
			struct mig_progress p;

			if (m->seq - sent > EVENT_RING)
				sent = m->seq - EVENT_RING;
			p = m->ring[sent % EVENT_RING];
			sent++;
			pthread_mutex_unlock(&m->lock);
			o = mig_progress_to_json(&p);
			is_gone = o && host_control_send(fd, o) < 0;
			json_object_put(o);
			pthread_mutex_lock(&m->lock);
			if (is_gone)
				break;
			continue;
		}
		if (m->is_over)
			break;
		pthread_cond_wait(&m->cond, &m->lock);
	}
	report = m->report ? json_object_get(m->report) : NULL;
	rc = m->rc;
	pthread_mutex_unlock(&m->lock);
	if (is_gone) {
		json_object_put(report);
		return; /* the client left; the migration went on without it */
	}
	o = json_object_new_object();
	json_object_object_add(o, "ok", json_object_new_boolean(rc == 0));
	json_object_object_add(o, "event", json_object_new_string("done"));
	if (rc < 0) {
		json_object_object_add(o, "errno", json_object_new_int(-rc));
		const char *err = m->rep.error_msg[0] ? m->rep.error_msg : strerror(-rc);

		json_object_object_add(o, "error", json_object_new_string(err));
	}
	json_object_object_add(o, "report", report);
	host_control_send(fd, o);
	json_object_put(o);
}

void host_migrate_serve(struct host *h, int fd, json_object *req)
{
	struct mig_source_config cfg = {0};
	struct host_migration *m, *old = NULL;
	char why[300];
	int rc;

	rc = parse_request(req, &cfg, why, sizeof(why));
	if (rc < 0) {
		reply_error(fd, -rc, why);
		return;
	}
	m = mig_new(h, false);
	if (!m) {
		reply_error(fd, ENOMEM, "out of memory");
		return;
	}
	pthread_mutex_lock(&h->lock);
	if (h->is_quitting) {
		pthread_mutex_unlock(&h->lock);
		mig_put(m);
		reply_error(fd, ESHUTDOWN, "the host is shutting down");
		return;
	}
	if (h->mig && !mig_is_over(h->mig)) {
		pthread_mutex_unlock(&h->lock);
		mig_put(m);
		reply_error(fd, EBUSY, "a migration is already running");
		return;
	}
	if (h->role == HOST_ROLE_MIGRATED) {
		pthread_mutex_unlock(&h->lock);
		mig_put(m);
		reply_error(fd, ESRCH, "the guest has already migrated away from this host");
		return;
	}
	m->prev_role = h->role;
	rc = start_source(h, m, &cfg, why, sizeof(why));
	if (rc < 0) {
		pthread_mutex_unlock(&h->lock);
		mig_put(m);
		reply_error(fd, -rc, why);
		return;
	}
	old = h->mig;
	h->mig = m;
	h->role = HOST_ROLE_SOURCE;
	mig_get(m); /* ours, for streaming */
	pthread_mutex_unlock(&h->lock);
	retire(old);

	stream_events(m, fd);
	mig_put(m);
}

bool host_migrate_is_busy(struct host *h)
{
	bool busy;

	pthread_mutex_lock(&h->lock);
	busy = h->mig && !mig_is_over(h->mig);
	pthread_mutex_unlock(&h->lock);
	return busy;
}

bool host_migrate_cancel(struct host *h)
{
	struct host_migration *m;
	bool ok = false;

	pthread_mutex_lock(&h->lock);
	m = h->mig;
	if (m && !mig_is_over(m))
		ok = m->is_incoming ? mig_dest_cancel(m->dst) : mig_source_cancel(m->src);
	pthread_mutex_unlock(&h->lock);
	return ok;
}

json_object *host_migrate_progress_json(struct host *h)
{
	struct host_migration *m;
	json_object *o = NULL;

	pthread_mutex_lock(&h->lock);
	m = h->mig;
	if (m) {
		pthread_mutex_lock(&m->lock);
		if (!m->is_over) {
			o = mig_progress_to_json(&m->prog);
			json_object_object_del(o, "event");
			json_object_object_add(o, "direction",
					       json_object_new_string(m->is_incoming ? "incoming"
										     : "outgoing"));
		}
		pthread_mutex_unlock(&m->lock);
	}
	pthread_mutex_unlock(&h->lock);
	return o;
}

void host_migrate_join(struct host *h)
{
	struct host_migration *m;

	pthread_mutex_lock(&h->lock);
	h->is_quitting = true;
	m = h->mig;
	h->mig = NULL;
	if (m && !mig_is_over(m)) {
		if (m->is_incoming)
			mig_dest_cancel(m->dst);
		else
			mig_source_cancel(m->src);
	}
	pthread_mutex_unlock(&h->lock);
	retire(m);
}

/* ---- incoming ---- */

int host_incoming_start(struct host *h)
{
	struct host_migration *m = mig_new(h, true);
	struct mig_dest_config cfg = {
		.uri = h->opt.incoming,
		.mem = {.base = h->mem, .size = h->mem_size, .page_size = HOST_PAGE_SIZE,
			.fd = h->mem_fd},
		.ndevices = h->ndev,
		.accept_timeout_ms = -1,
	};
	int rc;

	if (!m)
		return -ENOMEM;
	cfg.devices = m->devs;
	cfg.hooks = (struct mig_dest_hooks){.opaque = m, .resume = on_dest_resume,
					    .stop = on_dest_stop, .progress = on_progress};
	rc = mig_dest_create(&cfg, &m->dst);
	if (rc < 0) {
		fprintf(stderr, "ferry host: cannot wait for a migration on %s: %s\n",
			h->opt.incoming, strerror(-rc));
		mig_put(m);
		return rc;
	}
	fprintf(stderr, "ferry host: waiting for an incoming migration on %s\n",
		mig_dest_uri(m->dst));
	pthread_mutex_lock(&h->lock);
	h->role = HOST_ROLE_DESTINATION;
	h->mig = m;
	rc = -pthread_create(&m->thread, NULL, dest_main, m);
	m->has_thread = rc == 0;
	if (rc < 0)
		h->mig = NULL;
	pthread_mutex_unlock(&h->lock);
	if (rc < 0) {
		fprintf(stderr, "ferry host: no thread for the incoming migration: %s\n",
			strerror(-rc));
		mig_put(m);
	}
	return rc;
}

void host_incoming_join(struct host *h)
{
	host_migrate_join(h);
}
