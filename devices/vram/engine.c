/* The engine thread of engine.h. */
#include "engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "regs.h"
#include "vram.h"

/* Pages per batch: the longest a stop request waits for (64 x 4 KiB is a
 * few microseconds of writing). */
#define ENGINE_BATCH 64u

struct vram_engine {
	struct vram *v;
	pthread_t thread;
	bool has_thread;
	pthread_mutex_t lock;
	pthread_cond_t wake; /* to the thread: something changed */
	pthread_cond_t idle; /* from the thread: not in a batch */
	/* Under lock: */
	bool allowed, quit, busy;
	uint64_t gen; /* bumped on every change: restarts pacing */
	atomic_bool active;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t vram_engine_step(struct vram *v)
{
	struct vram_regs *r = &v->regs;
	uint32_t first = atomic_load_explicit(&r->engine_first, memory_order_relaxed);
	uint32_t count = atomic_load_explicit(&r->engine_count, memory_order_relaxed);
	uint32_t seed = atomic_load_explicit(&r->seed, memory_order_relaxed);
	uint64_t n = atomic_load_explicit(&r->engine_writes, memory_order_relaxed);

	if (first >= v->npages || count == 0)
		return UINT64_MAX;
	uint64_t window = count < v->npages - first ? count : v->npages - first;
	uint64_t draw = vram_engine_draw(seed, n);
	uint64_t page = first + draw % window;
	uint8_t *dst = v->mem + page * VRAM_PAGE_SIZE;

	if (vram_engine_zero(draw)) {
		memset(dst, 0, VRAM_PAGE_SIZE);
	} else {
		for (uint64_t i = 0; i < VRAM_PAGE_SIZE / 8; i++) {
			uint64_t w = vram_engine_word(draw, i);

			memcpy(dst + i * 8, &w, 8);
		}
	}
	dirty_mark(&v->dirty, page);
	atomic_store_explicit(&r->engine_writes, n + 1, memory_order_release);
	return page;
}

static bool should_run(const struct vram_engine *e)
{
	const struct vram_regs *r = &e->v->regs;

	return e->allowed && !e->quit &&
	       (atomic_load(&r->control) & VRAM_CTRL_ENGINE) && atomic_load(&r->rate) > 0 &&
	       atomic_load(&r->engine_first) < e->v->npages && atomic_load(&r->engine_count) > 0;
}

static void wait_until(struct vram_engine *e, uint64_t deadline_ns)
{
	struct timespec ts = {
		.tv_sec = (time_t)(deadline_ns / 1000000000ull),
		.tv_nsec = (long)(deadline_ns % 1000000000ull),
	};

	pthread_cond_timedwait(&e->wake, &e->lock, &ts);
}

static void *engine_main(void *arg)
{
	struct vram_engine *e = arg;
	struct vram_regs *r = &e->v->regs;
	bool pacing = false;
	uint64_t seen_gen = 0, t0 = 0, base = 0;

	pthread_mutex_lock(&e->lock);
	while (!e->quit) {
		if (!should_run(e)) {
			pacing = false;
			atomic_store(&e->active, false);
			pthread_cond_broadcast(&e->idle);
			pthread_cond_wait(&e->wake, &e->lock);
			continue;
		}
		atomic_store(&e->active, true);
		uint64_t now = now_ns();
		uint64_t done = atomic_load(&r->engine_writes);
		uint64_t rate = atomic_load(&r->rate);

		if (!pacing || seen_gen != e->gen) {
			pacing = true;
			seen_gen = e->gen;
			t0 = now;
			base = done;
		}
		uint64_t target = (uint64_t)((unsigned __int128)rate * (now - t0) / 1000000000u);
		uint64_t sent = done - base;

		if (sent >= target) {
			/* Next write due at t0 + (sent + 1) / rate seconds. */
			uint64_t due = t0 + (uint64_t)((unsigned __int128)(sent + 1) * 1000000000u /
						       rate);
			wait_until(e, due);
			continue;
		}
		uint64_t n = target - sent;

		if (n > rate / 4 + ENGINE_BATCH) { /* > 250 ms behind: drop the backlog */
			t0 = now;
			base = done;
			n = 1;
		}
		if (n > ENGINE_BATCH)
			n = ENGINE_BATCH;
		e->busy = true;
		pthread_mutex_unlock(&e->lock);
		for (uint64_t i = 0; i < n; i++)
			vram_engine_step(e->v);
		pthread_mutex_lock(&e->lock);
		e->busy = false;
		pthread_cond_broadcast(&e->idle);
	}
	atomic_store(&e->active, false);
	pthread_cond_broadcast(&e->idle);
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

int vram_engine_create(struct vram *v, struct vram_engine **out)
{
	struct vram_engine *e = calloc(1, sizeof(*e));
	pthread_condattr_t ca;
	int rc;

	if (!e)
		return -ENOMEM;
	e->v = v;
	atomic_init(&e->active, false);
	pthread_mutex_init(&e->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&e->wake, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&e->idle, NULL);
	rc = pthread_create(&e->thread, NULL, engine_main, e);
	if (rc) {
		vram_err(v, "engine: pthread_create: %s", strerror(rc));
		vram_engine_destroy(e);
		return -rc;
	}
	e->has_thread = true;
	*out = e;
	return 0;
}

void vram_engine_destroy(struct vram_engine *e)
{
	if (!e)
		return;
	if (e->has_thread) {
		pthread_mutex_lock(&e->lock);
		e->quit = true;
		pthread_cond_broadcast(&e->wake);
		pthread_mutex_unlock(&e->lock);
		pthread_join(e->thread, NULL);
	}
	pthread_cond_destroy(&e->idle);
	pthread_cond_destroy(&e->wake);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

static void update(struct vram_engine *e, const bool *allowed)
{
	pthread_mutex_lock(&e->lock);
	if (allowed)
		e->allowed = *allowed;
	e->gen++;
	pthread_cond_broadcast(&e->wake);
	while (e->busy)
		pthread_cond_wait(&e->idle, &e->lock);
	if (!should_run(e))
		atomic_store(&e->active, false);
	pthread_mutex_unlock(&e->lock);
}

void vram_engine_allow(struct vram_engine *e, bool allowed)
{
	update(e, &allowed);
}

void vram_engine_sync(struct vram_engine *e)
{
	update(e, NULL);
}

bool vram_engine_active(const struct vram_engine *e)
{
	return atomic_load(&e->active);
}
