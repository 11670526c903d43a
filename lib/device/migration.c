/*
 * VFIO migration v2 on the device side (include/ferry/device_migration.h):
 * registering the model's ops, and driving the state machine.
 *
 * The graph is lib/fsm's: a SET loops "ask ferry_mig_next_state() for the
 * next direct arc, have the model perform it" until the target is reached,
 * storing the state after every arc (PROTOCOL.md §8.4, §8.5), so the model
 * implements direct arcs only and a failed SET leaves the device in the
 * last state it fully reached. A failing arc that the model undid
 * (*restored) stays in its start state; any other failure is ERROR, which
 * refuses every SET and every data transfer; only a reset (DEVICE_RESET,
 * FLR, ferry_device_reset) leaves it, to RUNNING.
 *
 * Around the model's arcs the library keeps its own part consistent:
 *   - its data sessions (mig_data.c): entering the saving group from
 *     outside starts one (the prefix is taken), leaving it ends one;
 *     STOP -> RESUMING starts a restore, RESUMING -> STOP finishes it (the
 *     library's checks and state first, then the model's validation);
 *   - quiescing: in STOP, STOP_COPY, RESUMING and ERROR the library does no
 *     DMA and raises no interrupt for the device (DMA helpers -EBUSY,
 *     ferry_irq_trigger records the vector pending and returns -EAGAIN).
 *     The model stops its own work inside its arcs; this is the safety net.
 *     The flag is lowered before an arc into a running state (the model may
 *     restart work during it) and raised after an arc out of one (it may
 *     flush work with DMA during it); pending interrupts go out once the
 *     device runs again.
 * Everything here runs under the state lock (mig_reset.c), which dispatch
 * holds for the whole command: a SET's reply is sent only when it is over.
 */
#include "device/mig.h"
#include "util/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- quiescing ---- */

static void set_quiesced(struct ferry_device *dev, bool on)
{
	if (on)
		atomic_store(&dev->has_logged_quiesced, false); /* a new stopped period */
	atomic_store_explicit(&dev->is_quiesced, on, memory_order_release);
}

void mig_note_quiesced(struct ferry_device *dev, const char *what)
{
	if (!atomic_exchange(&dev->has_logged_quiesced, true))
		log_debug("%s: %s refused: the device is in migration state %s, where the "
			  "library does no DMA and raises no interrupt (quiesce the model in "
			  "its arcs)", dev->name, what, ferry_mig_state_name(mig_cur(dev)));
}

static void deliver_pending(struct ferry_device *dev)
{
	pthread_mutex_lock(&dev->irq_lock);
	for (unsigned i = 0; i < FERRY_IRQ_NUM; i++)
		irq_deliver_pending_locked(dev, i);
	pthread_mutex_unlock(&dev->irq_lock);
}

static void end_sessions(struct ferry_device *dev)
{
	mig_save_end(dev);
	mig_load_end(dev);
}

static void enter_error(struct ferry_device *dev)
{
	set_quiesced(dev, true);
	end_sessions(dev);
	atomic_store(&dev->mig_state, FERRY_MIG_ERROR);
}

/* ---- the state machine driver ---- */

static const char *name_of(uint32_t s)
{
	return ferry_mig_state_name(s);
}

/* One direct arc (ferry_mig_is_direct_arc(flags, from, to)). */
static int do_arc(struct ferry_device *dev, uint32_t from, uint32_t to, uint32_t target)
{
	struct mig *g = dev->mig;
	bool is_to_running = ferry_mig_state_is_running(to);
	bool is_from_running = ferry_mig_state_is_running(from);
	bool restored = false;
	int r;

	if (from == FERRY_MIG_RESUMING && to == FERRY_MIG_STOP &&
	    (r = mig_load_finish(dev)) < 0) {
		log_err("%s: migration arc RESUMING -> STOP (towards %s) refused by the library's "
			"stream checks: the device stays in RESUMING", dev->name, name_of(target));
		return r;
	}
	if (is_to_running)
		set_quiesced(dev, false);
	r = g->ops.transition(g->opaque, (enum ferry_mig_state)from, (enum ferry_mig_state)to,
			      &restored);
	if (r > 0)
		r = 0;
	if (r < 0) {
		if (restored) {
			set_quiesced(dev, !is_from_running);
			log_err("%s: migration arc %s -> %s (towards %s) failed: %s; the device stays "
				"in %s", dev->name, name_of(from), name_of(to), name_of(target),
				strerror(-r), name_of(from));
		} else {
			enter_error(dev);
			log_err("%s: migration arc %s -> %s (towards %s) failed: %s; the device is "
				"in ERROR until reset", dev->name, name_of(from), name_of(to),
				name_of(target), strerror(-r));
		}
		return r;
	}
	if (ferry_mig_state_is_saving(to) && !ferry_mig_state_is_saving(from))
		mig_save_begin(dev);
	else if (ferry_mig_state_is_saving(from) && !ferry_mig_state_is_saving(to))
		mig_save_end(dev);
	if (to == FERRY_MIG_RESUMING)
		mig_load_begin(dev);
	else if (from == FERRY_MIG_RESUMING)
		mig_load_end(dev);
	atomic_store(&dev->mig_state, to);
	if (!is_to_running)
		set_quiesced(dev, true);
	else if (!is_from_running)
		deliver_pending(dev);
	log_debug("%s: migration arc %s -> %s", dev->name, name_of(from), name_of(to));
	return 0;
}

static const char *why_refused(uint64_t flags, uint32_t cur, uint32_t target)
{
	if (target >= FERRY_MIG_NUM_STATES)
		return "no such state";
	if (target == FERRY_MIG_ERROR)
		return "ERROR cannot be requested";
	if (cur == FERRY_MIG_ERROR)
		return "the device is in ERROR: only a reset leaves it";
	if (!ferry_mig_state_supported(flags, target))
		return "the device does not offer that state";
	return "no path between them (STOP_COPY cannot return to pre-copy)";
}

int mig_set_state(struct ferry_device *dev, uint32_t target)
{
	struct mig *g = dev->mig;
	uint32_t cur = mig_cur(dev), next;
	int r;

	power_wake_for(dev, "a migration state change");
	for (;;) {
		r = ferry_mig_next_state(g->ops.flags, cur, target, &next);
		if (r < 0) {
			log_err("%s: migration state %s -> %s (%u) refused: %s", dev->name,
				name_of(cur), name_of(target), target,
				why_refused(g->ops.flags, cur, target));
			break;
		}
		if (cur == target)
			break;
		if ((r = do_arc(dev, cur, next, target)) < 0)
			break;
		cur = next;
	}
	power_wake_done(dev);
	return r;
}

/* ---- reset ---- */

void mig_after_reset(struct ferry_device *dev, int rc)
{
	if (!dev->mig)
		return;
	if (rc < 0) {
		/* The model could not reset: nothing about it can be trusted. */
		log_err("%s: migration: the model's reset failed (%s): the device is in ERROR",
			dev->name, strerror(-rc));
		enter_error(dev);
		return;
	}
	end_sessions(dev);
	atomic_store(&dev->mig_state, FERRY_MIG_RUNNING);
	set_quiesced(dev, false);
}

/* ---- registration ---- */

uint32_t mig_wire_ext(const struct ferry_device *dev)
{
	if (!dev->mig)
		return 0;
	return WIRE_EXT_MIG_SHM |
	       (dev->mig->ops.flags & VFIO_MIGRATION_PRE_COPY ? WIRE_EXT_PRECOPY_INFO : 0);
}

enum ferry_mig_state ferry_device_mig_state(const struct ferry_device *dev)
{
	return dev ? mig_cur(dev) : FERRY_MIG_RUNNING;
}

void mig_destroy(struct ferry_device *dev)
{
	struct mig *g = dev->mig;

	if (!g)
		return;
	mig_shm_release(dev);
	free(g->save.prefix);
	free(g->save.trailer);
	free(g->load.prefix);
	free(g->load.ring);
	free(g->load.scratch);
	free(g->xfer);
	free(g);
	dev->mig = NULL;
}

/* Required members, named in the error. */
static const char *missing_member(const struct ferry_migration_ops *o)
{
	if (!o->transition)
		return "transition";
	if (!o->save)
		return "save";
	if (!o->load)
		return "load";
	if ((o->flags & VFIO_MIGRATION_PRE_COPY) && !o->precopy_info)
		return "precopy_info (required with VFIO_MIGRATION_PRE_COPY)";
	return NULL;
}

int ferry_device_set_migration(struct ferry_device *dev, const struct ferry_migration_ops *ops)
{
	size_t min_size = offsetof(struct ferry_migration_ops, load) + sizeof(ops->load);
	const char *name = ferry_device_name(dev), *missing;
	struct mig *g;

	if (!dev || !ops) {
		log_err("%s: ferry_device_set_migration: %s is NULL", name, dev ? "ops" : "dev");
		return -EINVAL;
	}
	if (dev->mig || dev->conn || dev->listen_fd >= 0) {
		log_err("%s: ferry_device_set_migration: %s", name,
			dev->mig ? "migration is already set" :
			"call it before the device listens or serves a client");
		return -EBUSY;
	}
	if (ops->size < min_size || ops->size > sizeof(*ops)) {
		log_err("%s: migration ops->size %u: this library knows tables of %zu..%zu bytes "
			"(set it to sizeof(struct ferry_migration_ops))", name, ops->size, min_size,
			sizeof(*ops));
		return -EINVAL;
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		log_err("%s: migration: out of memory", name);
		return -ENOMEM;
	}
	memcpy(&g->ops, ops, ops->size); /* members past ops->size stay NULL */
	if (!ferry_mig_flags_valid(g->ops.flags)) {
		log_err("%s: migration ops->flags 0x%" PRIx64 ": VFIO_MIGRATION_STOP_COPY is "
			"required, P2P and PRE_COPY optional, nothing else known", name,
			g->ops.flags);
		free(g);
		return -EINVAL;
	}
	if ((missing = missing_member(&g->ops))) {
		log_err("%s: migration ops->%s is NULL", name, missing);
		free(g);
		return -EINVAL;
	}
	if (!dev->ops.reset) {
		log_err("%s: migration needs ferry_device_ops.reset: a reset ends the model's data "
			"sessions and returns it to RUNNING", name);
		free(g);
		return -EINVAL;
	}
	g->opaque = dev->info.opaque;
	dev->mig = g;
	g->state_len = libstate_len(dev);
	g->prefix_len = MIG_HDR_LEN + g->state_len;
	g->trailer_len = g->state_len + MIG_FOOTER_LEN;
	g->save.prefix = malloc(g->prefix_len);
	g->save.trailer = malloc(g->trailer_len);
	g->load.prefix = malloc(g->prefix_len);
	g->load.ring = malloc(g->trailer_len);
	g->load.scratch = malloc(g->trailer_len);
	if (!g->save.prefix || !g->save.trailer || !g->load.prefix || !g->load.ring ||
	    !g->load.scratch) {
		log_err("%s: migration: out of memory", name);
		mig_destroy(dev);
		return -ENOMEM;
	}
	log_debug("%s: migration flags 0x%" PRIx64 ", library state %zu bytes", name,
		  g->ops.flags, g->state_len);
	return 0;
}
