/*
 * ferry-dev-dma: the worker thread, the ring protocol and the engine's
 * lifecycle; see engine.h for the concepts and engine_priv.h for locking.
 *
 * Per descriptor the worker: takes the slot at RING_HEAD and advances it,
 * drops the lock, copies the descriptor out of guest memory, executes it
 * (exec.c; PEER_NOTIFY in peer.c), stores the status word with one release
 * store, retakes the lock, updates the counters and decides whether to
 * interrupt. A PEER_NOTIFY that must wait for the P2P quiesce to end
 * (regs.h) is given back instead: RING_HEAD steps back to it and the
 * engine stalls until peer.c lets it go on. A failure to
 * read a descriptor or to write its status back halts the engine
 * (STATUS.ERR_RING): the ring itself is unusable, so there is nowhere to
 * report a per-descriptor error.
 *
 * Simple on purpose: one descriptor per lock round trip. The lock is
 * uncontended almost always (register accesses are rare next to
 * descriptors), so batching would buy little and complicate reset.
 */
#include "engine_priv.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ferry/device.h>
#include <ferry/log.h>

#include "exec.h"
#include "regs.h"

/* How often the worker rechecks bus mastering while it has work but the
 * guest has bus mastering off: libferry gives no notification when the
 * command register changes. */
#define BUS_MASTER_POLL_NS (10 * 1000 * 1000)

/* process_one() results besides DMA_ERR_* codes and DMA_EXEC_ABORTED. */
#define RES_RING_FAULT (-2)

int dma_engine_create(const char *name, struct dma_engine **out)
{
	struct dma_engine *e = calloc(1, sizeof(*e));
	pthread_condattr_t attr;

	if (!e) {
		ferry_log(FERRY_LOG_ERR, "%s: out of memory for the DMA engine", name);
		return -ENOMEM;
	}
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->bounce = malloc(DMA_EXEC_CHUNK);
	if (!e->bounce) {
		ferry_log(FERRY_LOG_ERR, "%s: out of memory for the bounce buffer", name);
		free(e);
		return -ENOMEM;
	}
	pthread_mutex_init(&e->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&e->wake, &attr);
	pthread_condattr_destroy(&attr);
	pthread_cond_init(&e->idle, NULL);
	atomic_init(&e->abort, false);
	atomic_init(&e->ring_by_msg, false);
	*out = e;
	return 0;
}

/* ---- one descriptor ---- */

static void desc_from_le(struct dma_desc *d)
{
	d->opcode = le16toh(d->opcode);
	d->flags = le16toh(d->flags);
	d->len = le32toh(d->len);
	d->src = le64toh(d->src);
	d->dst = le64toh(d->dst);
	d->cookie = le32toh(d->cookie);
	d->status = le32toh(d->status);
}

/* The completion store: one aligned 4-byte store with release semantics, so
 * a driver that sees DONE sees the data written before it. Through a mapped
 * pointer where the library has one; otherwise a DMA_WRITE message, which
 * the client applies after every earlier one. */
static int write_status(struct dma_engine *e, uint64_t iova, uint32_t status)
{
	uint32_t le = htole32(status);
	uint32_t *p = NULL;
	int err = -ENOTSUP;

	if (!atomic_load_explicit(&e->ring_by_msg, memory_order_relaxed))
		p = ferry_dma_ptr_get(e->dev, iova, sizeof(le), true, &err);
	if (p) {
		if (!((uintptr_t)p & (sizeof(le) - 1))) {
			__atomic_store_n(p, le, __ATOMIC_RELEASE);
			ferry_dma_mark_dirty(e->dev, iova, sizeof(le));
			ferry_dma_ptr_put(e->dev);
			return 0;
		}
		ferry_dma_ptr_put(e->dev);
	} else if (err != -ENOTSUP) {
		return err;
	} else {
		atomic_store_explicit(&e->ring_by_msg, true, memory_order_relaxed);
	}
	atomic_thread_fence(memory_order_release);
	return ferry_dma_write(e->dev, iova, &le, sizeof(le));
}

/* Runs the descriptor at @iova. Called without the lock. */
static int process_one(struct dma_engine *e, uint64_t iova)
{
	const struct dma_exec x = {
		.dev = e->dev, .bounce = e->bounce, .abort = &e->abort, .name = e->name,
	};
	struct dma_desc d;
	int rc, res;

	rc = ferry_dma_read(e->dev, iova, &d, sizeof(d));
	if (rc < 0) {
		ferry_log(FERRY_LOG_ERR, "%s: cannot read descriptor at %#" PRIx64 ": %s; engine halted",
			  e->name, iova, strerror(-rc));
		return RES_RING_FAULT;
	}
	desc_from_le(&d);
	if (d.opcode == DMA_OP_PEER_NOTIFY)
		res = engine_peer_notify(e, &d);
	else
		res = dma_exec_desc(&x, &d);
	if (res == DMA_EXEC_ABORTED || res == RES_STALL)
		return res;
	rc = write_status(e, iova + DMA_DESC_OFF_STATUS, DMA_ST_MAKE(res, d.cookie));
	if (rc < 0) {
		ferry_log(FERRY_LOG_ERR, "%s: cannot write status at %#" PRIx64 ": %s; engine halted",
			  e->name, iova + DMA_DESC_OFF_STATUS, strerror(-rc));
		return RES_RING_FAULT;
	}
	return res;
}

/* Accounts for a finished descriptor. Returns true if an interrupt is due. */
static bool commit_locked(struct dma_engine *e, int res)
{
	struct dma_state *st = &e->st;
	uint32_t coalesce = st->irq_coalesce ? st->irq_coalesce : 1;

	if (res == DMA_EXEC_ABORTED)
		return false;
	if (res == RES_STALL) {
		/* Not run: fetch it again once the quiesce ends. The engine
		 * makes no progress meanwhile, so signal what completed. */
		st->head--;
		e->stalled = true;
		if ((uint32_t)(st->tail - st->head) > st->ring_size) {
			/* The guest rang for the slot given back, which is not
			 * DONE (no driver does): that doorbell went beyond the
			 * ring. Keep tail - head <= RING_SIZE (dma_state_check). */
			st->tail = st->head + st->ring_size;
			st->status |= DMA_STS_ERR_DOORBELL;
		}
		if (!st->since_irq)
			return false;
		st->since_irq = 0;
		st->irqs++;
		return true;
	}
	if (res == RES_RING_FAULT) {
		/* Halt AT the descriptor: a restart retries it (COPY and FILL
		 * are idempotent; overlapping copies are refused). */
		st->head--;
		st->status &= ~DMA_STS_RUNNING;
		st->status |= DMA_STS_ERR_RING;
		st->since_irq = 0;
		st->irqs++;
		return true; /* tell the driver: it will find ERR_RING in STATUS */
	}
	st->completed++;
	if (res != DMA_ERR_NONE) {
		st->errors++;
		st->status |= DMA_STS_ERR_DESC;
	}
	st->since_irq++;
	if (st->since_irq >= coalesce || st->head == st->tail) {
		st->since_irq = 0;
		st->irqs++;
		return true;
	}
	return false;
}

/* MSI-X vector 0 when the client set it up, else MSI, else INTx. -EAGAIN
 * (masked) leaves the interrupt pending in the library, which is what a
 * device does; a client with no eventfd at all polls the ring. */
static void raise_irq(struct dma_engine *e)
{
	int rc = ferry_irq_trigger(e->dev, FERRY_IRQ_MSIX, DMA_MSIX_VEC_RING);

	if (rc == -ENOENT)
		rc = ferry_irq_trigger(e->dev, FERRY_IRQ_MSI, 0);
	if (rc == -ENOENT)
		rc = ferry_irq_trigger(e->dev, FERRY_IRQ_INTX, 0);
	if (rc < 0 && rc != -ENOENT && rc != -EAGAIN)
		ferry_log(FERRY_LOG_WARN, "%s: raising the completion interrupt failed: %s",
			  e->name, strerror(-rc));
}

static void run_one_locked(struct dma_engine *e)
{
	const struct dma_state *st = &e->st;
	uint64_t iova = st->ring_base + (uint64_t)(st->head & (st->ring_size - 1)) * DMA_DESC_SIZE;
	bool irq;
	int res;

	/* The descriptor is consumed when it is fetched (virtio's
	 * last_avail_idx): its status may say DONE, freeing the slot for the
	 * driver, before this thread retakes the lock to account for it, so
	 * the doorbell check must already count it as gone.
	 * While busy, nothing else changes ring_base, ring_size or head:
	 * ring writes are ignored while enabled, and disable and reset wait
	 * for !busy. */
	e->st.head++;
	e->busy = true;
	pthread_mutex_unlock(&e->lock);
	res = process_one(e, iova);
	pthread_mutex_lock(&e->lock);
	irq = commit_locked(e, res);
	if (irq) {
		/* Outside our lock: the library may hold its own lock while it
		 * calls into mmio.c, so never take ours before one of its. */
		pthread_mutex_unlock(&e->lock);
		raise_irq(e);
		pthread_mutex_lock(&e->lock);
	}
	e->busy = false;
	pthread_cond_broadcast(&e->idle);
}

static bool has_work_locked(const struct dma_engine *e)
{
	const struct dma_state *st = &e->st;

	return !e->quiescing && !e->paused && !e->stalled && (st->control & DMA_CTRL_ENABLE) &&
	       (st->status & DMA_STS_RUNNING) && st->head != st->tail;
}

static void wait_bus_master_locked(struct dma_engine *e)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += BUS_MASTER_POLL_NS;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&e->wake, &e->lock, &ts);
}

static void *worker_main(void *arg)
{
	struct dma_engine *e = arg;

	pthread_mutex_lock(&e->lock);
	while (!e->stopping) {
		if (!has_work_locked(e))
			pthread_cond_wait(&e->wake, &e->lock);
		else if (!ferry_device_bus_master(e->dev))
			wait_bus_master_locked(e);
		else
			run_one_locked(e);
	}
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

/* ---- lifecycle ---- */

int dma_engine_start(struct dma_engine *e, struct ferry_device *dev)
{
	sigset_t all, old;
	int rc;

	if (e->has_thread)
		return -EBUSY;
	e->dev = dev;
	/* Signals belong to the main thread (server.c stops on SIGTERM). */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&e->thread, NULL, worker_main, e);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		ferry_log(FERRY_LOG_ERR, "%s: cannot start the DMA worker: %s", e->name, strerror(rc));
		return -rc;
	}
	e->has_thread = true;
	return 0;
}

void dma_engine_stop(struct dma_engine *e)
{
	if (!e || !e->has_thread)
		return;
	pthread_mutex_lock(&e->lock);
	e->stopping = true;
	atomic_store(&e->abort, true);
	pthread_cond_signal(&e->wake);
	pthread_mutex_unlock(&e->lock);
	pthread_join(e->thread, NULL);
	e->has_thread = false;
}

void dma_engine_destroy(struct dma_engine *e)
{
	if (!e)
		return;
	dma_engine_stop(e);
	pthread_cond_destroy(&e->idle);
	pthread_cond_destroy(&e->wake);
	pthread_mutex_destroy(&e->lock);
	free(e->bounce);
	free(e);
}

void engine_hold_locked(struct dma_engine *e)
{
	e->quiescing++;
	while (e->busy)
		pthread_cond_wait(&e->idle, &e->lock);
}

void engine_unhold_locked(struct dma_engine *e)
{
	e->quiescing--;
	pthread_cond_signal(&e->wake);
}

/* Waits until no descriptor is in progress, keeping the worker from
 * starting another meanwhile (the wait drops the lock). With @abort the one
 * in progress stops at its next chunk and is not completed. The caller
 * changes the state before it unlocks, then the worker re-evaluates. */
static void quiesce_locked(struct dma_engine *e, bool abort)
{
	if (abort)
		atomic_store(&e->abort, true);
	engine_hold_locked(e);
	if (abort && !e->stopping)
		atomic_store(&e->abort, false);
	engine_unhold_locked(e);
}

void engine_reset_locked(struct dma_engine *e)
{
	quiesce_locked(e, true);
	memset(&e->st, 0, sizeof(e->st)); /* held peer writes are dropped */
	e->stalled = false;
	e->warned = 0;
}

void dma_engine_reset(struct dma_engine *e)
{
	pthread_mutex_lock(&e->lock);
	engine_reset_locked(e);
	pthread_mutex_unlock(&e->lock);
	ferry_log(FERRY_LOG_INFO, "%s: reset", e->name);
}

void dma_engine_pause(struct dma_engine *e, unsigned reason, bool pause)
{
	pthread_mutex_lock(&e->lock);
	if (pause) {
		e->paused |= reason;
		quiesce_locked(e, false);
	} else {
		e->paused &= ~reason;
		pthread_cond_signal(&e->wake);
	}
	pthread_mutex_unlock(&e->lock);
}

void dma_engine_restore(struct dma_engine *e, const struct dma_state *st)
{
	pthread_mutex_lock(&e->lock);
	quiesce_locked(e, false); /* paused already: nothing is in progress */
	e->st = *st;
	e->stalled = false; /* a held-up PEER_NOTIFY is simply fetched again */
	e->warned = 0;
	pthread_mutex_unlock(&e->lock);
	ferry_log(FERRY_LOG_INFO, "%s: state restored: ring %#" PRIx64 " x %" PRIu32 ", head %" PRIu32
		  ", tail %" PRIu32 ", %" PRIu64 " completed, %" PRIu32 " peer writes held",
		  e->name, st->ring_base, st->ring_size, st->head, st->tail, st->completed,
		  st->peer_held);
}

/* ---- register side effects ---- */

static bool ring_valid_locked(const struct dma_engine *e)
{
	return dma_state_ring_valid(&e->st);
}

void engine_set_control_locked(struct dma_engine *e, uint32_t val)
{
	struct dma_state *st = &e->st;
	bool was = st->control & DMA_CTRL_ENABLE;

	if (val & DMA_CTRL_RESET) {
		engine_reset_locked(e);
		ferry_log(FERRY_LOG_INFO, "%s: reset through CONTROL", e->name);
		return;
	}
	if ((val & DMA_CTRL_ENABLE) && !was) {
		st->control |= DMA_CTRL_ENABLE;
		if (!ring_valid_locked(e)) {
			st->status |= DMA_STS_ERR_CONFIG;
			if (!(e->warned & WARN_CONFIG))
				ferry_log(FERRY_LOG_WARN,
					  "%s: enable refused: ring base %#" PRIx64 " size %" PRIu32
					  " head %" PRIu32 " tail %" PRIu32,
					  e->name, st->ring_base, st->ring_size, st->head, st->tail);
			e->warned |= WARN_CONFIG;
			return;
		}
		st->status |= DMA_STS_RUNNING;
		pthread_cond_signal(&e->wake);
	} else if (!(val & DMA_CTRL_ENABLE) && was) {
		st->control &= ~DMA_CTRL_ENABLE;
		st->status &= ~DMA_STS_RUNNING;
		quiesce_locked(e, false);
	}
}

void engine_doorbell_locked(struct dma_engine *e, uint32_t tail)
{
	struct dma_state *st = &e->st;

	if ((uint32_t)(tail - st->head) > st->ring_size) {
		st->status |= DMA_STS_ERR_DOORBELL;
		if (!(e->warned & WARN_DOORBELL))
			ferry_log(FERRY_LOG_WARN,
				  "%s: doorbell %" PRIu32 " ignored: head %" PRIu32 ", ring size %" PRIu32,
				  e->name, tail, st->head, st->ring_size);
		e->warned |= WARN_DOORBELL;
		return;
	}
	st->tail = tail;
	pthread_cond_signal(&e->wake);
}

/* ---- notifications ---- */

/* The mappings changed: find out again how the ring is reached. */
void dma_engine_dma_mapped(struct dma_engine *e, uint64_t iova, uint64_t size)
{
	atomic_store(&e->ring_by_msg, false);
	ferry_log(FERRY_LOG_DEBUG, "%s: mapped [%#" PRIx64 ", +%#" PRIx64 ")", e->name, iova, size);
}

/*
 * Nothing to drop: the engine holds no pointer into guest memory between two
 * library calls (descriptors are copied out, transfers go chunk by chunk
 * through the helpers, the status store holds its pointer for one store).
 * The library waits for the helper in flight; the next chunk of a transfer
 * into the range then fails with -EFAULT and the descriptor completes with
 * DMA_ERR_FAULT, and a ring inside the range halts the engine (ERR_RING).
 */
void dma_engine_dma_unmapping(struct dma_engine *e, uint64_t iova, uint64_t size)
{
	atomic_store(&e->ring_by_msg, false);
	ferry_log(FERRY_LOG_DEBUG, "%s: unmapping [%#" PRIx64 ", +%#" PRIx64 ")", e->name, iova,
		  size);
}

void dma_engine_get_state(struct dma_engine *e, struct dma_state *out)
{
	pthread_mutex_lock(&e->lock);
	*out = e->st;
	pthread_mutex_unlock(&e->lock);
}
