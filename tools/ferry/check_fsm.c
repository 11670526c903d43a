/*
 * ferry check: the state machine. Every (from, to) pair of the states the
 * device advertises, and the targets it must refuse.
 *
 * A pair: back to RUNNING, one SET to `from` (the server walks the path),
 * then one SET to `to`. ferry_mig_path() says whether `to` is reachable from
 * `from`: if so the SET must succeed and GET must report `to`; if not
 * (STOP_COPY -> PRE_COPY and PRE_COPY_P2P) the SET must fail and the state
 * must not change. Arcs out of RESUMING validate what was loaded, so
 * `from` = RESUMING is entered with the device's own saved stream loaded.
 */
#include "check_priv.h"

#include <errno.h>
#include <string.h>

static void check_pair(struct chk_ctx *x, uint32_t from, uint32_t to)
{
	struct chk_dev *d = &x->dev;
	char name[CHK_NAME_MAX], why[CHK_REASON_MAX], path[160];
	enum ferry_mig_state now;

	snprintf(name, sizeof(name), "fsm %s -> %s", ferry_mig_state_name(from),
		 ferry_mig_state_name(to));
	if (from == FERRY_MIG_RESUMING && !x->have_saved) {
		chk_add(x, CHK_SKIP, name, "no valid stream to load in RESUMING: the save failed");
		return;
	}
	chk_progress(x, "%s", name);
	if (chk_drive(x, d, from, &x->saved, why, sizeof(why)) < 0) {
		chk_add(x, CHK_FAIL, name, "could not reach %s: %s", ferry_mig_state_name(from), why);
		return;
	}
	bool reachable = ferry_mig_path(d->mig_flags, from, to, NULL) >= 0;
	int r = chk_set(d, to);
	int g = chk_get(d, &now);
	if (g < 0) {
		chk_add(x, CHK_FAIL, name, "SET %s %s, then GET failed: %s", ferry_mig_state_name(to),
			r < 0 ? "failed" : "succeeded", strerror(-g));
		return;
	}
	chk_path_str(d->mig_flags, from, to, path, sizeof(path));
	if (reachable && r < 0)
		chk_add(x, CHK_FAIL, name, "refused (%s), expected success along %s; device now in %s",
			strerror(-r), path, ferry_mig_state_name(now));
	else if (reachable && now != to)
		chk_add(x, CHK_FAIL, name, "SET succeeded but the device reports %s (expected %s)",
			ferry_mig_state_name(now), path);
	else if (reachable)
		chk_add(x, CHK_PASS, name, "%s", from == to ? "no change, as required" : path);
	else if (r == 0)
		chk_add(x, CHK_FAIL, name,
			"accepted, but %s -> %s is blocked (a saving session cannot restart); device now in %s",
			ferry_mig_state_name(from), ferry_mig_state_name(to), ferry_mig_state_name(now));
	else if (now != from)
		chk_add(x, CHK_FAIL, name, "refused (%s) as required, but the state changed to %s",
			strerror(-r), ferry_mig_state_name(now));
	else
		chk_add(x, CHK_PASS, name, "refused (%s) as required; state unchanged", strerror(-r));
}

void chk_section_fsm(struct chk_ctx *x)
{
	uint64_t f = x->dev.mig_flags;
	for (uint32_t from = 0; from < FERRY_MIG_NUM_STATES; from++) {
		if (!ferry_mig_state_supported(f, from))
			continue;
		for (uint32_t to = 0; to < FERRY_MIG_NUM_STATES; to++)
			if (ferry_mig_state_supported(f, to) && !x->dev.lost)
				check_pair(x, from, to);
	}
}

/* A target the device must refuse from RUNNING, leaving the state alone. */
static void check_refusal(struct chk_ctx *x, uint32_t target, const char *why_refused)
{
	struct chk_dev *d = &x->dev;
	char name[CHK_NAME_MAX], why[CHK_REASON_MAX], num[16];
	enum ferry_mig_state now;

	const char *tname = chk_state_str(target, num, sizeof(num));
	snprintf(name, sizeof(name), "refuse %s", tname);
	if (!why_refused) {
		chk_add(x, CHK_SKIP, name, "the device supports %s", tname);
		return;
	}
	chk_progress(x, "%s", name);
	if (chk_recover(x, d, why, sizeof(why)) < 0) {
		chk_add(x, CHK_FAIL, name, "%s", why);
		return;
	}
	int r = chk_set(d, target);
	int g = chk_get(d, &now);
	if (r == 0)
		chk_add(x, CHK_FAIL, name, "SET %s from RUNNING succeeded; it must fail (%s)",
			tname, why_refused);
	else if (g < 0)
		chk_add(x, CHK_FAIL, name, "refused (%s), then GET failed: %s", strerror(-r),
			strerror(-g));
	else if (now != FERRY_MIG_RUNNING)
		chk_add(x, CHK_FAIL, name, "refused (%s) but the state changed to %s", strerror(-r),
			ferry_mig_state_name(now));
	else
		chk_add(x, CHK_PASS, name, "refused (%s): %s", strerror(-r), why_refused);
}

void chk_section_refusals(struct chk_ctx *x)
{
	uint64_t f = x->dev.mig_flags;
	bool p2p = f & VFIO_MIGRATION_P2P, pre = f & VFIO_MIGRATION_PRE_COPY;

	check_refusal(x, FERRY_MIG_RUNNING_P2P, p2p ? NULL : "no P2P flag");
	check_refusal(x, FERRY_MIG_PRE_COPY, pre ? NULL : "no PRE_COPY flag");
	check_refusal(x, FERRY_MIG_PRE_COPY_P2P,
		      p2p && pre ? NULL : "needs both P2P and PRE_COPY flags");
	check_refusal(x, FERRY_MIG_ERROR, "ERROR can never be requested");
	check_refusal(x, FERRY_MIG_NUM_STATES, "8 is not a state");
	check_refusal(x, 0xffffffffu, "0xffffffff is not a state");
}
