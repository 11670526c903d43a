/*
 * The VFIO migration v2 state machine, shared by the device side and the
 * client side (PROTOCOL.md §8).
 *
 * Concepts:
 * - A device advertises migration flags (PROTOCOL.md §7.3): STOP_COPY is
 *   required; P2P adds RUNNING_P2P, PRE_COPY adds PRE_COPY, and both together
 *   add PRE_COPY_P2P. A state is "supported" when the device has every flag
 *   it needs. ERROR is never supported as a target.
 * - A "direct arc" is a single transition the device itself implements
 *   (§8.3). Every other request (cur -> target) is a combination transition:
 *   the shortest walk over direct arcs that does not pass through the saving
 *   group {PRE_COPY, PRE_COPY_P2P, STOP_COPY} (§8.4). A saving-group state
 *   may only start or end the walk, unless the whole walk stays inside the
 *   group (PRE_COPY -> PRE_COPY_P2P -> STOP_COPY: one data session); a walk
 *   that leaves the group never comes back, so STOP_COPY -> PRE_COPY(_P2P)
 *   is refused.
 * - This module owns the graph: it says which arc comes next. The caller owns
 *   the arcs: a device performs them one at a time, ideally with one block per
 *   (from, to) pair ending in a warn-and-fail, and updates its current state
 *   after each successful arc (§8.5):
 *
 *       while (cur != target) {
 *               rc = ferry_mig_next_state(flags, cur, target, &next);
 *               if (rc < 0)
 *                       return rc;
 *               rc = do_arc(dev, cur, next);
 *               if (rc < 0)
 *                       return rc;
 *               cur = next;
 *       }
 *
 * States are passed as uint32_t because they arrive from the wire
 * (MIG_DEVICE_STATE.device_state); every function range-checks them.
 * Everything here is pure: no allocation, no logging, no global state, so
 * every function is thread-safe.
 */
#ifndef FERRY_MIGRATION_H
#define FERRY_MIGRATION_H

#include <stdbool.h>
#include <stdint.h>
#include <ferry/common.h>
#include <ferry/vfio_compat.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The migration states. Values are the kernel's enum vfio_device_mig_state
 * (VFIO_DEVICE_STATE_*, and FERRY_STATE_PRE_COPY(_P2P) from vfio_compat.h),
 * so they go on the wire unchanged. */
enum ferry_mig_state {
	FERRY_MIG_ERROR = 0,
	FERRY_MIG_STOP = 1,
	FERRY_MIG_RUNNING = 2,
	FERRY_MIG_STOP_COPY = 3,
	FERRY_MIG_RESUMING = 4,
	FERRY_MIG_RUNNING_P2P = 5,
	FERRY_MIG_PRE_COPY = 6,
	FERRY_MIG_PRE_COPY_P2P = 7,
	FERRY_MIG_NUM_STATES = 8,
};

/*
 * The state's upper-case name ("RUNNING", "PRE_COPY_P2P", ...), for logs and
 * user interfaces. Returns "INVALID" for @state >= FERRY_MIG_NUM_STATES.
 * The string is static; never NULL.
 */
FERRY_API const char *ferry_mig_state_name(uint32_t state);

/*
 * Parses a state name as printed by ferry_mig_state_name(), ignoring case.
 * "ERROR" parses (it is a state) even though it can never be requested.
 * Returns 0 and sets *@out, or -EINVAL (NULL arguments or an unknown name;
 * *@out is then untouched).
 */
FERRY_API int ferry_mig_state_from_name(const char *name, enum ferry_mig_state *out);

/*
 * True if @mig_flags (VFIO_MIGRATION_* bits, PROTOCOL.md §7.3) is a set this
 * module understands: STOP_COPY present and no bits other than STOP_COPY, P2P
 * and PRE_COPY. Every function below refuses anything else.
 */
FERRY_API bool ferry_mig_flags_valid(uint64_t mig_flags);

/*
 * True if a device advertising @mig_flags has @state, i.e. it may be asked
 * for. False for ERROR (never a valid target), for @state >=
 * FERRY_MIG_NUM_STATES and whenever ferry_mig_flags_valid(@mig_flags) is
 * false.
 */
FERRY_API bool ferry_mig_state_supported(uint64_t mig_flags, uint32_t state);

/*
 * The next direct arc on the way from @cur to @target (PROTOCOL.md §8.4):
 * the algorithm of Linux vfio_mig_get_next_state(), with the guard that stops
 * the skip loop at ERROR.
 *
 * Returns 0 and stores the state to move to in *@next (*@next == @target when
 * @cur == @target, meaning "nothing to do"). Returns -EINVAL, leaving *@next
 * untouched, for: invalid @mig_flags, @cur or @target >= FERRY_MIG_NUM_STATES,
 * @cur or @target not supported (so @cur == ERROR and @target == ERROR are
 * refused), a blocked transition (STOP_COPY -> PRE_COPY, STOP_COPY ->
 * PRE_COPY_P2P), or @next == NULL.
 * When @cur != @target, (@cur, *@next) is a direct arc per
 * ferry_mig_is_direct_arc().
 */
FERRY_API int ferry_mig_next_state(uint64_t mig_flags, uint32_t cur, uint32_t target,
				   uint32_t *next);

/*
 * The whole walk from @cur to @target: fills @path with the states after @cur
 * up to and including @target, in order; each (previous, path[i]) is one arc
 * to perform. Returns the number of steps (0 when @cur == @target and the
 * state is supported; never more than FERRY_MIG_NUM_STATES) or -EINVAL for
 * the same reasons as ferry_mig_next_state(). @path may be NULL to only
 * validate and count. Entries past the returned count are not written; on
 * error nothing is written.
 */
FERRY_API int ferry_mig_path(uint64_t mig_flags, uint32_t cur, uint32_t target,
			     uint32_t path[FERRY_MIG_NUM_STATES]);

/*
 * True if (@from -> @to) is a direct arc a device advertising @mig_flags must
 * implement (PROTOCOL.md §8.3). Exactly these arcs appear as steps of paths
 * built by ferry_mig_next_state() for those flags. False for invalid flags,
 * out-of-range states and @from == @to.
 */
FERRY_API bool ferry_mig_is_direct_arc(uint64_t mig_flags, uint32_t from, uint32_t to);

/* True for the saving group {PRE_COPY, PRE_COPY_P2P, STOP_COPY}: the states
 * in which a device streams its state out (one data session). */
FERRY_API bool ferry_mig_state_is_saving(uint32_t state);

/* True for RUNNING_P2P and PRE_COPY_P2P: running, but initiating no P2P DMA. */
FERRY_API bool ferry_mig_state_is_p2p(uint32_t state);

/* True for the states in which the device operates (may DMA and raise
 * interrupts): RUNNING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P. */
FERRY_API bool ferry_mig_state_is_running(uint32_t state);

#ifdef __cplusplus
}
#endif
#endif /* FERRY_MIGRATION_H */
