/*
 * ferry host: the workloads, one "vCPU" thread per device driving its guest
 * driver (devices/dma/driver.h, devices/vram/workload.h) at a modest,
 * steady rate. The drivers keep their state in guest memory and report every
 * byte they write there (host_mem_dirtied), so a migration carries them.
 *
 * A thread works in ticks of TICK_MS: one batch of operations, then a wait
 * on its condition variable until the next tick. Pausing (for a migration's
 * switchover, or verify) sets a flag and waits until every thread is parked
 * between two batches: the driver is never interrupted inside a call, which
 * is the contract of both drivers. Pauses nest.
 */
#include "host.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ferry/client.h>
#include <ferry/log.h>

#include "devices/dma/driver.h"
#include "devices/vram/workload.h"

#define TICK_MS 4
/* How long a pause may wait for a thread to park. A batch is a few ms. */
#define PAUSE_TIMEOUT_MS 5000
/* verify: how long to wait for the dma ops in flight to complete. */
#define DRAIN_TIMEOUT_MS 5000

struct host_workload {
	struct host *h;
	struct host_device *dev;
	pthread_t thread;
	bool has_thread;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool quit;
	bool pause_req;
	bool is_parked;
	bool is_running;     /* false once stopped by an error */
	int error;
	struct host_workload_stats st;

	bool is_up;          /* driver initialised or attached */
	union {
		struct dma_driver dma;
		struct vram_workload vram;
	} u;
};

/* ---- one step, per kind ---- */

static void dma_snapshot(struct host_workload *w)
{
	struct dma_driver_stats s;

	dma_driver_stats(&w->u.dma, &s);
	w->st.submitted = s.submitted;
	w->st.completed = s.reaped;
	w->st.verified = s.verified + s.bad_ok;
	w->st.errors = s.failures;
}

static void vram_snapshot(struct host_workload *w)
{
	const struct vram_wl_shared *sh = w->u.vram.sh;

	w->st.submitted = sh->writes;
	w->st.completed = sh->writes;
	w->st.verified = sh->verified;
	w->st.errors = sh->failures;
}

/* Per tick: reap and check what completed, keep the ring half full. */
static int dma_step(struct host_workload *w, unsigned batch)
{
	struct dma_driver *d = &w->u.dma;
	struct dma_driver_stats s;
	int rc = dma_driver_poll(d);

	if (rc < 0)
		return rc;
	dma_driver_stats(d, &s);
	if (s.in_flight < d->sh->ring_entries / 2) {
		rc = dma_driver_submit(d, batch);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int step(struct host_workload *w)
{
	const struct host_options *o = &w->h->opt;
	unsigned per_tick;
	int rc = 0;

	switch (w->dev->kind) {
	case HOST_KIND_DMA:
		per_tick = (o->dma_ops_per_s * TICK_MS + 999) / 1000;
		rc = dma_step(w, per_tick ? per_tick : 1);
		break;
	case HOST_KIND_VRAM:
		per_tick = (o->vram_writes_per_s * TICK_MS + 999) / 1000;
		vram_workload_run(&w->u.vram, per_tick ? per_tick : 1);
		break;
	case HOST_KIND_NONE:
		break;
	}
	return rc;
}

static void snapshot(struct host_workload *w)
{
	if (w->dev->kind == HOST_KIND_DMA)
		dma_snapshot(w);
	else if (w->dev->kind == HOST_KIND_VRAM)
		vram_snapshot(w);
}

static void deadline_after(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_nsec += (long)ms * 1000000;
	ts->tv_sec += ts->tv_nsec / 1000000000;
	ts->tv_nsec %= 1000000000;
}

static void *workload_main(void *arg)
{
	struct host_workload *w = arg;
	struct timespec next;

	pthread_mutex_lock(&w->lock);
	while (!w->quit) {
		if (w->pause_req || !w->is_running) {
			w->is_parked = true;
			pthread_cond_broadcast(&w->cond);
			pthread_cond_wait(&w->cond, &w->lock);
			continue;
		}
		w->is_parked = false;
		pthread_mutex_unlock(&w->lock);
		deadline_after(&next, TICK_MS);
		int rc = step(w);

		pthread_mutex_lock(&w->lock);
		snapshot(w);
		if (rc < 0) {
			w->error = rc;
			w->is_running = false;
			w->st.running = false;
			ferry_log(FERRY_LOG_ERR, "%s: workload stopped: %s", w->dev->name,
				  strerror(-rc));
			continue;
		}
		while (!w->quit && !w->pause_req &&
		       pthread_cond_timedwait(&w->cond, &w->lock, &next) != ETIMEDOUT)
			;
	}
	w->is_parked = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* ---- bring-up ---- */

static int driver_up(struct host_workload *w, bool attach)
{
	struct host *h = w->h;
	struct host_device *d = w->dev;
	int rc = 0;

	if (d->kind == HOST_KIND_DMA) {
		struct dma_driver_config cfg = {.dirty_fn = host_mem_dirtied, .dirty_opaque = h};

		if (attach)
			rc = dma_driver_attach(&w->u.dma, d->c, h->mem, 0, d->area_off,
					       d->area_size, &cfg);
		else
			rc = dma_driver_init(&w->u.dma, d->c, h->mem, 0, d->area_off, d->area_size,
					     &cfg);
	} else if (d->kind == HOST_KIND_VRAM) {
		struct vram_workload_config cfg = {.dirty_fn = host_mem_dirtied, .dirty_opaque = h};

		if (attach)
			rc = vram_workload_attach(&w->u.vram, d->c, h->mem + d->area_off,
						  d->area_off, d->area_size, &cfg);
		else
			rc = vram_workload_init(&w->u.vram, d->c, h->mem + d->area_off,
						d->area_off, d->area_size, &cfg);
	}
	if (rc < 0)
		fprintf(stderr, "ferry host: %s: %s the %s workload: %s\n", d->name,
			attach ? "re-attaching" : "starting", host_kind_str(d->kind),
			strerror(-rc));
	w->is_up = rc == 0;
	return rc;
}

static void driver_down(struct host_workload *w)
{
	if (!w->is_up)
		return;
	if (w->dev->kind == HOST_KIND_DMA)
		dma_driver_fini(&w->u.dma);
	else if (w->dev->kind == HOST_KIND_VRAM)
		vram_workload_fini(&w->u.vram);
	w->is_up = false;
}

static void workload_free(struct host_workload *w)
{
	if (!w)
		return;
	if (w->has_thread) {
		pthread_mutex_lock(&w->lock);
		w->quit = true;
		pthread_cond_broadcast(&w->cond);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
	}
	driver_down(w);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

static int workload_start(struct host *h, struct host_device *d, bool attach)
{
	struct host_workload *w = calloc(1, sizeof(*w));
	pthread_condattr_t ca;
	int rc;

	if (!w)
		return -ENOMEM;
	w->h = h;
	w->dev = d;
	w->u.dma.irq_fd = -1;
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	rc = driver_up(w, attach);
	if (rc < 0)
		goto out;
	snapshot(w);
	w->is_running = w->st.running = true;
	/* Born paused when the host is paused (a pause is in force). */
	pthread_mutex_lock(&h->wl_lock);
	w->pause_req = h->wl_pause_depth > 0;
	pthread_mutex_unlock(&h->wl_lock);
	rc = -pthread_create(&w->thread, NULL, workload_main, w);
	if (rc < 0)
		goto out;
	w->has_thread = true;
	d->wl = w;
	return 0;
out:
	workload_free(w);
	return rc;
}

int host_workloads_start(struct host *h, bool attach)
{
	for (unsigned i = 0; i < h->ndev; i++) {
		int rc;

		if (h->dev[i].kind == HOST_KIND_NONE || h->dev[i].wl)
			continue;
		rc = workload_start(h, &h->dev[i], attach);
		if (rc < 0) {
			host_workloads_stop(h);
			return rc;
		}
	}
	return 0;
}

void host_workloads_stop(struct host *h)
{
	for (unsigned i = 0; i < h->ndev; i++) {
		workload_free(h->dev[i].wl);
		h->dev[i].wl = NULL;
	}
}

/* ---- pause / resume ---- */

static int park(struct host_workload *w)
{
	struct timespec deadline;
	int rc = 0;

	deadline_after(&deadline, PAUSE_TIMEOUT_MS);
	pthread_mutex_lock(&w->lock);
	w->pause_req = true;
	pthread_cond_broadcast(&w->cond);
	while (!w->is_parked && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&w->cond, &w->lock, &deadline);
	rc = w->is_parked ? 0 : -ETIMEDOUT;
	pthread_mutex_unlock(&w->lock);
	if (rc < 0)
		ferry_log(FERRY_LOG_ERR, "%s: workload did not pause within %d ms",
			  w->dev->name, PAUSE_TIMEOUT_MS);
	return rc;
}

int host_workloads_pause(struct host *h)
{
	int first = 0;

	pthread_mutex_lock(&h->wl_lock);
	if (h->wl_pause_depth++ == 0) {
		/* Ask them all first, then wait: the pauses overlap. */
		for (unsigned i = 0; i < h->ndev; i++) {
			struct host_workload *w = h->dev[i].wl;

			if (!w)
				continue;
			pthread_mutex_lock(&w->lock);
			w->pause_req = true;
			pthread_cond_broadcast(&w->cond);
			pthread_mutex_unlock(&w->lock);
		}
		for (unsigned i = 0; i < h->ndev; i++) {
			int rc = h->dev[i].wl ? park(h->dev[i].wl) : 0;

			if (rc < 0 && !first)
				first = rc;
		}
	}
	pthread_mutex_unlock(&h->wl_lock);
	return first;
}

void host_workloads_resume(struct host *h)
{
	pthread_mutex_lock(&h->wl_lock);
	if (h->wl_pause_depth && --h->wl_pause_depth == 0) {
		for (unsigned i = 0; i < h->ndev; i++) {
			struct host_workload *w = h->dev[i].wl;

			if (!w)
				continue;
			pthread_mutex_lock(&w->lock);
			w->pause_req = false;
			pthread_cond_broadcast(&w->cond);
			pthread_mutex_unlock(&w->lock);
		}
	}
	pthread_mutex_unlock(&h->wl_lock);
}

void host_workload_stats(const struct host_device *d, struct host_workload_stats *out)
{
	struct host_workload *w = d->wl;

	memset(out, 0, sizeof(*out));
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	*out = w->st;
	out->running = w->is_running && !w->pause_req;
	pthread_mutex_unlock(&w->lock);
}

/* ---- verify ---- */

/* Workload parked: its driver is ours for the moment. */
static int64_t verify_one(struct host_workload *w)
{
	int64_t bad = 0;
	int rc;

	if (w->dev->kind == HOST_KIND_DMA) {
		struct dma_driver *d = &w->u.dma;

		dma_driver_poll(d);
		rc = dma_driver_drain(d, DRAIN_TIMEOUT_MS);
		if (rc == -ETIMEDOUT || rc == -EIO) {
			/* A lost or wrong completion is a mismatch, logged by the driver. */
			bad++;
		} else if (rc < 0) {
			return rc;
		}
		if (dma_driver_check(d) < 0)
			bad++;
		bad += (int64_t)d->sh->failures;
	} else if (w->dev->kind == HOST_KIND_VRAM) {
		/* Failures are counted in guest memory, cumulatively (those seen
		 * before a migration too): this run's are added to them. */
		vram_workload_verify(&w->u.vram);
		bad += (int64_t)w->u.vram.sh->failures;
	}
	pthread_mutex_lock(&w->lock);
	snapshot(w);
	pthread_mutex_unlock(&w->lock);
	return bad;
}

int64_t host_workloads_verify(struct host *h)
{
	int64_t total = 0;
	int rc = host_workloads_pause(h);

	for (unsigned i = 0; rc == 0 && i < h->ndev; i++) {
		struct host_workload *w = h->dev[i].wl;
		int64_t bad;

		if (!w || !w->is_up)
			continue;
		bad = verify_one(w);
		if (bad < 0) {
			rc = (int)bad;
			break;
		}
		if (bad)
			ferry_log(FERRY_LOG_ERR, "%s: verify: %" PRId64 " mismatches", w->dev->name,
				  bad);
		total += bad;
	}
	host_workloads_resume(h);
	return rc < 0 ? rc : total;
}
