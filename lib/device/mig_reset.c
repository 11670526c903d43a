/*
 * The state lock, resets from any thread, and what a disconnect does to the
 * migration state.
 *
 * The state lock serialises everything that changes the device as a whole.
 * The message thread takes it around each command it dispatches, so a
 * migration SET (several arcs, each a model callback) is one critical
 * section and no other thread can reset the device half-way through it.
 *
 * Reset from another thread (ferry_device_reset: a model's watchdog, a
 * management thread) is the mlx5 "deferred reset" idea (Linux
 * drivers/vfio/pci/mlx5/main.c, mlx5vf_state_mutex_unlock): if the lock is
 * free, the caller takes it and resets. If a command is in progress, the
 * caller records the request under a small meta mutex and waits; the holder
 * notices the request when it unlocks, runs the reset itself (so the reset
 * comes right after the change, and wins: the device ends in RUNNING), then
 * releases the lock. Requests that pile up meanwhile are served by one reset.
 * The holder releases the state lock with the meta mutex held, so a request
 * cannot slip in between its last look and the unlock. On the thread that
 * holds the lock (a model callback asking for a reset) the request is only
 * recorded and runs when that command ends.
 *
 * Lock order (device_priv.h): state lock, then the DMA table lock, then
 * irq_lock; the meta mutex is a leaf held for a few stores. A thread that
 * holds DMA pointers (ferry_dma_ptr_get) is refused with -EDEADLK: the
 * holder of the state lock may be waiting for the DMA table's write lock
 * (a DMA_UNMAP), which that thread's pointers block.
 *
 * A reset returns the migration state to RUNNING from any state, ERROR
 * included, and ends any data session: the kernel's VFIO_DEVICE_RESET rule
 * (PROTOCOL.md §8.6), which ferry follows (libvfio-user since 2026 keeps the
 * state instead). The model's reset callback is its signal to drop its
 * sessions too.
 *
 * Disconnect: the device returns to RUNNING before the next client is
 * served, as the kernel does when the last fd closes: the saving and
 * stopped states walk back through their arcs (the model ends its
 * sessions the usual way), RESUMING and ERROR (or an arc that fails) are
 * left through a reset, since a half-written stream cannot pass RESUMING ->
 * STOP.
 */
#include "device/mig.h"
#include "util/log.h"

#include <errno.h>
#include <string.h>

int state_lock_init(struct ferry_device *dev)
{
	struct state_lock *l = &dev->state;
	int r;

	if ((r = -pthread_mutex_init(&l->mx, NULL)) < 0)
		return r;
	if ((r = -pthread_mutex_init(&l->meta, NULL)) < 0) {
		pthread_mutex_destroy(&l->mx);
		return r;
	}
	if ((r = -pthread_cond_init(&l->reset_cv, NULL)) < 0) {
		pthread_mutex_destroy(&l->meta);
		pthread_mutex_destroy(&l->mx);
		return r;
	}
	l->is_init = true;
	return 0;
}

void state_lock_fini(struct ferry_device *dev)
{
	struct state_lock *l = &dev->state;

	if (!l->is_init)
		return;
	pthread_cond_destroy(&l->reset_cv);
	pthread_mutex_destroy(&l->meta);
	pthread_mutex_destroy(&l->mx);
	l->is_init = false;
}

void dev_lock(struct ferry_device *dev)
{
	struct state_lock *l = &dev->state;

	pthread_mutex_lock(&l->mx);
	pthread_mutex_lock(&l->meta);
	l->is_held = true;
	l->holder = pthread_self();
	pthread_mutex_unlock(&l->meta);
}

void dev_unlock(struct ferry_device *dev)
{
	struct state_lock *l = &dev->state;

	pthread_mutex_lock(&l->meta);
	while (l->resets_asked != l->resets_done) {
		uint64_t upto = l->resets_asked;
		pthread_mutex_unlock(&l->meta);
		int r = device_reset(dev, "deferred ferry_device_reset");
		pthread_mutex_lock(&l->meta);
		l->resets_done = upto;
		l->reset_rc = r;
		pthread_cond_broadcast(&l->reset_cv);
	}
	l->is_held = false;
	pthread_mutex_unlock(&l->mx); /* with meta held: no request slips past */
	pthread_mutex_unlock(&l->meta);
}

int ferry_device_reset(struct ferry_device *dev)
{
	struct state_lock *l;
	uint64_t ticket;
	int r;

	if (!dev) {
		log_err("ferry_device_reset: dev is NULL");
		return -EINVAL;
	}
	if (dma_thread_holds(dev)) {
		log_err("%s: ferry_device_reset from a thread holding DMA pointers: put them first",
			dev->name);
		return -EDEADLK;
	}
	l = &dev->state;
	pthread_mutex_lock(&l->meta);
	if (l->is_held && pthread_equal(l->holder, pthread_self())) {
		/* From inside a command (a model callback): after it. */
		l->resets_asked++;
		pthread_mutex_unlock(&l->meta);
		log_debug("%s: reset requested during a command: runs when it ends", dev->name);
		return 0;
	}
	if (pthread_mutex_trylock(&l->mx) == 0) {
		l->is_held = true;
		l->holder = pthread_self();
		pthread_mutex_unlock(&l->meta);
		r = device_reset(dev, "ferry_device_reset");
		dev_unlock(dev); /* serves requests that came meanwhile */
		return r;
	}
	ticket = ++l->resets_asked;
	log_debug("%s: reset requested while a command is in progress: deferred to its end",
		  dev->name);
	while (l->resets_done < ticket)
		pthread_cond_wait(&l->reset_cv, &l->meta);
	r = l->reset_rc;
	pthread_mutex_unlock(&l->meta);
	return r;
}

void mig_client_gone(struct ferry_device *dev)
{
	enum ferry_mig_state s;

	if (!dev->mig)
		return;
	mig_shm_release(dev);
	s = mig_cur(dev);
	if (s != FERRY_MIG_RUNNING) {
		log_info("%s: client gone in migration state %s: back to RUNNING", dev->name,
			 ferry_mig_state_name(s));
		if (s == FERRY_MIG_RESUMING || s == FERRY_MIG_ERROR ||
		    mig_set_state(dev, FERRY_MIG_RUNNING) < 0)
			device_reset(dev, "client disconnect");
	}
}
