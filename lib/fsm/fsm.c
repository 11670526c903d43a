/*
 * The migration v2 state machine: which arc comes next (PROTOCOL.md §8.3,
 * §8.4). Pure tables and lookups; callers perform the arcs and log with
 * ferry_mig_state_name().
 */
#include <ferry/migration.h>

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "util/checked.h"

/* The enum is the kernel's numbering; the wire carries it unchanged. */
#define SAME_VALUE(ours, kernel) _Static_assert((int)(ours) == (int)(kernel), #ours " != " #kernel)
SAME_VALUE(FERRY_MIG_ERROR, VFIO_DEVICE_STATE_ERROR);
SAME_VALUE(FERRY_MIG_STOP, VFIO_DEVICE_STATE_STOP);
SAME_VALUE(FERRY_MIG_RUNNING, VFIO_DEVICE_STATE_RUNNING);
SAME_VALUE(FERRY_MIG_STOP_COPY, VFIO_DEVICE_STATE_STOP_COPY);
SAME_VALUE(FERRY_MIG_RESUMING, VFIO_DEVICE_STATE_RESUMING);
SAME_VALUE(FERRY_MIG_RUNNING_P2P, VFIO_DEVICE_STATE_RUNNING_P2P);
SAME_VALUE(FERRY_MIG_PRE_COPY, FERRY_STATE_PRE_COPY);
SAME_VALUE(FERRY_MIG_PRE_COPY_P2P, FERRY_STATE_PRE_COPY_P2P);
#undef SAME_VALUE

#define F_STOP_COPY ((uint64_t)VFIO_MIGRATION_STOP_COPY)
#define F_P2P       ((uint64_t)VFIO_MIGRATION_P2P)
#define F_PRE_COPY  ((uint64_t)VFIO_MIGRATION_PRE_COPY)
#define F_ALL       (F_STOP_COPY | F_P2P | F_PRE_COPY)

/* Indexed by state. */
static const char *const state_names[] = {
	[FERRY_MIG_ERROR] = "ERROR",
	[FERRY_MIG_STOP] = "STOP",
	[FERRY_MIG_RUNNING] = "RUNNING",
	[FERRY_MIG_STOP_COPY] = "STOP_COPY",
	[FERRY_MIG_RESUMING] = "RESUMING",
	[FERRY_MIG_RUNNING_P2P] = "RUNNING_P2P",
	[FERRY_MIG_PRE_COPY] = "PRE_COPY",
	[FERRY_MIG_PRE_COPY_P2P] = "PRE_COPY_P2P",
};
_Static_assert(ARRAY_SIZE(state_names) == FERRY_MIG_NUM_STATES, "one name per state");

/*
 * Indexed by state: the migration flags a device must advertise to have that
 * state (PROTOCOL.md §8.1). ERROR needs every bit, including bits no valid
 * flag set has, so it is never supported and can never be requested.
 * RUNNING needs STOP_COPY only because every valid flag set has it.
 */
static const uint64_t state_needs[] = {
	[FERRY_MIG_ERROR] = UINT64_MAX,
	[FERRY_MIG_STOP] = F_STOP_COPY,
	[FERRY_MIG_RUNNING] = F_STOP_COPY,
	[FERRY_MIG_STOP_COPY] = F_STOP_COPY,
	[FERRY_MIG_RESUMING] = F_STOP_COPY,
	[FERRY_MIG_RUNNING_P2P] = F_STOP_COPY | F_P2P,
	[FERRY_MIG_PRE_COPY] = F_STOP_COPY | F_PRE_COPY,
	[FERRY_MIG_PRE_COPY_P2P] = F_STOP_COPY | F_P2P | F_PRE_COPY,
};
_Static_assert(ARRAY_SIZE(state_needs) == FERRY_MIG_NUM_STATES, "flags per state");

/*
 * next_hop[cur][target]: the first state to move to on the way from cur to
 * target for a device that has every optional state (the raw table T of
 * PROTOCOL.md §8.4; rows are the current state, columns the requested one).
 * An ERROR entry means "blocked". A device that lacks the state named here
 * re-reads the table from that state, next_hop[next_hop[cur][target]][target],
 * and so on (see ferry_mig_next_state()). Whatever state that yields, (cur,
 * state) is a direct arc of arcs[] below for that flag set; the unit tests
 * check it for every flag set and every pair.
 *
 * Rules behind the entries (UAPI, PROTOCOL.md §8.4): the shortest path over
 * the direct arcs of a device with every state, where a saving-group state
 * (PRE_COPY, PRE_COPY_P2P, STOP_COPY) may only be the first or last state of
 * a path unless the whole path stays inside the group (PRE_COPY ->
 * PRE_COPY_P2P -> STOP_COPY keeps one data session); a path that leaves the
 * group never re-enters it, hence STOP_COPY -> PRE_COPY(_P2P) is blocked.
 * The entries are chosen so that skipping a missing state (RUNNING_P2P,
 * PRE_COPY_P2P) lands on the shortest such path of the smaller graph too:
 * e.g. RUNNING -> STOP is RUNNING_P2P -> STOP with P2P, and RUNNING_P2P is
 * skipped to next_hop[RUNNING_P2P][STOP] = STOP without it.
 */
/* Two-letter names, used by next_hop[] and arcs[] only. */
#define ER FERRY_MIG_ERROR
#define ST FERRY_MIG_STOP
#define RU FERRY_MIG_RUNNING
#define SC FERRY_MIG_STOP_COPY
#define RE FERRY_MIG_RESUMING
#define RP FERRY_MIG_RUNNING_P2P
#define PC FERRY_MIG_PRE_COPY
#define PP FERRY_MIG_PRE_COPY_P2P
static const uint8_t next_hop[][FERRY_MIG_NUM_STATES] = {
	/*             target:       ER  ST  RU  SC  RE  RP  PC  PP */
	[FERRY_MIG_ERROR]        = { ER, ER, ER, ER, ER, ER, ER, ER },
	[FERRY_MIG_STOP]         = { ER, ST, RP, SC, RE, RP, RP, RP },
	[FERRY_MIG_RUNNING]      = { ER, RP, RU, RP, RP, RP, PC, RP },
	[FERRY_MIG_STOP_COPY]    = { ER, ST, ST, SC, ST, ST, ER, ER },
	[FERRY_MIG_RESUMING]     = { ER, ST, ST, ST, RE, ST, ST, ST },
	[FERRY_MIG_RUNNING_P2P]  = { ER, ST, RU, ST, ST, RP, RU, PP },
	[FERRY_MIG_PRE_COPY]     = { ER, RU, RU, PP, RU, RU, PC, PP },
	[FERRY_MIG_PRE_COPY_P2P] = { ER, RP, RP, SC, RP, RP, PC, PP },
};
_Static_assert(ARRAY_SIZE(next_hop) == FERRY_MIG_NUM_STATES, "one row per state");

/*
 * The direct arcs a device must implement (PROTOCOL.md §8.3, from the comment
 * in Linux vfio_mig_get_next_state()):
 *
 *   always:            RESUMING -> STOP, STOP -> RESUMING,
 *                      STOP -> STOP_COPY, STOP_COPY -> STOP
 *   without P2P:       RUNNING -> STOP, STOP -> RUNNING
 *   with P2P:          RUNNING -> RUNNING_P2P, RUNNING_P2P -> RUNNING,
 *                      RUNNING_P2P -> STOP, STOP -> RUNNING_P2P
 *   with PRE_COPY:     RUNNING -> PRE_COPY, PRE_COPY -> RUNNING
 *     and without P2P: PRE_COPY -> STOP_COPY
 *     and with P2P:    PRE_COPY -> PRE_COPY_P2P, PRE_COPY_P2P -> PRE_COPY,
 *                      PRE_COPY_P2P -> RUNNING_P2P, PRE_COPY_P2P -> STOP_COPY,
 *                      RUNNING_P2P -> PRE_COPY_P2P
 *
 * An arc exists when the device has every flag in .needs and none in
 * .excludes. Nothing indexes this table; it is searched.
 */
static const struct {
	uint8_t from, to;
	uint64_t needs, excludes;
} arcs[] = {
	{ RE, ST, F_STOP_COPY, 0 },
	{ ST, RE, F_STOP_COPY, 0 },
	{ ST, SC, F_STOP_COPY, 0 },
	{ SC, ST, F_STOP_COPY, 0 },

	{ RU, ST, F_STOP_COPY, F_P2P },
	{ ST, RU, F_STOP_COPY, F_P2P },

	{ RU, RP, F_STOP_COPY | F_P2P, 0 },
	{ RP, RU, F_STOP_COPY | F_P2P, 0 },
	{ RP, ST, F_STOP_COPY | F_P2P, 0 },
	{ ST, RP, F_STOP_COPY | F_P2P, 0 },

	{ RU, PC, F_STOP_COPY | F_PRE_COPY, 0 },
	{ PC, RU, F_STOP_COPY | F_PRE_COPY, 0 },
	{ PC, SC, F_STOP_COPY | F_PRE_COPY, F_P2P },

	{ PC, PP, F_ALL, 0 },
	{ PP, PC, F_ALL, 0 },
	{ PP, RP, F_ALL, 0 },
	{ PP, SC, F_ALL, 0 },
	{ RP, PP, F_ALL, 0 },
};
#undef ER
#undef ST
#undef RU
#undef SC
#undef RE
#undef RP
#undef PC
#undef PP

const char *ferry_mig_state_name(uint32_t state)
{
	if (state >= ARRAY_SIZE(state_names))
		return "INVALID";
	return state_names[state];
}

int ferry_mig_state_from_name(const char *name, enum ferry_mig_state *out)
{
	if (!name || !out)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(state_names); i++) {
		if (!strcasecmp(name, state_names[i])) {
			*out = (enum ferry_mig_state)i;
			return 0;
		}
	}
	return -EINVAL;
}

bool ferry_mig_flags_valid(uint64_t mig_flags)
{
	return (mig_flags & F_STOP_COPY) && !(mig_flags & ~F_ALL);
}

/* Like ferry_mig_state_supported() for flags already known to be valid. */
static bool has_state(uint64_t mig_flags, uint32_t state)
{
	if (state >= ARRAY_SIZE(state_needs))
		return false;
	return (mig_flags & state_needs[state]) == state_needs[state];
}

bool ferry_mig_state_supported(uint64_t mig_flags, uint32_t state)
{
	return ferry_mig_flags_valid(mig_flags) && has_state(mig_flags, state);
}

int ferry_mig_next_state(uint64_t mig_flags, uint32_t cur, uint32_t target, uint32_t *next)
{
	uint32_t hop;

	if (!next || !ferry_mig_flags_valid(mig_flags))
		return -EINVAL;
	/* has_state() bounds both with >= before anything indexes next_hop. */
	if (!has_state(mig_flags, cur) || !has_state(mig_flags, target))
		return -EINVAL;

	/*
	 * Skip the states this device lacks. Stop at ERROR: without that guard
	 * a blocked entry (ERROR is never supported) would be re-read forever,
	 * as upstream Linux does for STOP_COPY -> PRE_COPY (PROTOCOL.md §8.4).
	 * The table has no cycle through missing states (the unit tests walk
	 * every flag set); the bound turns a future table mistake into a
	 * refusal rather than a hang.
	 */
	hop = next_hop[cur][target];
	for (int i = 0; hop != FERRY_MIG_ERROR && !has_state(mig_flags, hop); i++) {
		if (i >= FERRY_MIG_NUM_STATES)
			return -EINVAL;
		hop = next_hop[hop][target];
	}
	if (hop == FERRY_MIG_ERROR)
		return -EINVAL;
	*next = hop;
	return 0;
}

int ferry_mig_path(uint64_t mig_flags, uint32_t cur, uint32_t target,
		   uint32_t path[FERRY_MIG_NUM_STATES])
{
	uint32_t steps[FERRY_MIG_NUM_STATES];
	int n = 0;

	/* Validates everything, even when cur == target. */
	if (ferry_mig_next_state(mig_flags, cur, target, &steps[0]) < 0)
		return -EINVAL;
	while (cur != target) {
		/* A shortest path visits each state once; more is a table bug. */
		if (n >= FERRY_MIG_NUM_STATES)
			return -EINVAL;
		if (ferry_mig_next_state(mig_flags, cur, target, &steps[n]) < 0)
			return -EINVAL;
		cur = steps[n++];
	}
	if (path)
		memcpy(path, steps, (size_t)n * sizeof(steps[0]));
	return n;
}

bool ferry_mig_is_direct_arc(uint64_t mig_flags, uint32_t from, uint32_t to)
{
	if (!ferry_mig_flags_valid(mig_flags))
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(arcs); i++) {
		if (arcs[i].from == from && arcs[i].to == to &&
		    (mig_flags & arcs[i].needs) == arcs[i].needs &&
		    !(mig_flags & arcs[i].excludes))
			return true;
	}
	return false;
}

bool ferry_mig_state_is_saving(uint32_t state)
{
	return state == FERRY_MIG_PRE_COPY || state == FERRY_MIG_PRE_COPY_P2P ||
	       state == FERRY_MIG_STOP_COPY;
}

bool ferry_mig_state_is_p2p(uint32_t state)
{
	return state == FERRY_MIG_RUNNING_P2P || state == FERRY_MIG_PRE_COPY_P2P;
}

bool ferry_mig_state_is_running(uint32_t state)
{
	return state == FERRY_MIG_RUNNING || state == FERRY_MIG_RUNNING_P2P ||
	       state == FERRY_MIG_PRE_COPY || state == FERRY_MIG_PRE_COPY_P2P;
}
