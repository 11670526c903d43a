/*
 * ferry check: DEVICE_RESET and the ERROR state.
 *
 * ferry's rule is the kernel's: a reset returns the migration state to
 * RUNNING from every state, ending any data session. libvfio-user keeps the
 * state on reset (PROTOCOL.md §8.6); ferry check reports that as a failure.
 *
 * ERROR cannot be requested: a device enters it only when an arc fails and
 * it cannot restore a valid state. Whenever chk_recover finds the device
 * there, chk_observe_error examines it once (SET and data refused, reset
 * leaves it); the rows are printed in this file's section.
 */
#include "check_priv.h"

#include <errno.h>
#include <string.h>

void chk_section_reset(struct chk_ctx *x)
{
	struct chk_dev *d = &x->dev;
	char name[CHK_NAME_MAX], why[CHK_REASON_MAX];
	enum ferry_mig_state now;

	if (!d->can_reset) {
		chk_add(x, CHK_SKIP, "reset from every state",
			"the device does not advertise DEVICE_RESET");
		return;
	}
	for (uint32_t s = 1; s < FERRY_MIG_NUM_STATES && !d->lost; s++) {
		if (!ferry_mig_state_supported(d->mig_flags, s))
			continue;
		snprintf(name, sizeof(name), "reset from %s", ferry_mig_state_name(s));
		chk_progress(x, "%s", name);
		if (chk_drive(x, d, s, NULL, why, sizeof(why)) < 0) {
			chk_add(x, CHK_FAIL, name, "could not reach %s: %s", ferry_mig_state_name(s),
				why);
			continue;
		}
		int r = ferry_client_reset(d->c);
		int g = chk_get(d, &now);
		if (r < 0)
			chk_add(x, CHK_FAIL, name, "DEVICE_RESET failed: %s", strerror(-r));
		else if (g < 0)
			chk_add(x, CHK_FAIL, name, "GET after the reset failed: %s", strerror(-g));
		else if (now != FERRY_MIG_RUNNING)
			chk_add(x, CHK_FAIL, name,
				"reset did not return to RUNNING: the device stays in %s (libvfio-user's rule, PROTOCOL.md 8.6; ferry requires the kernel's)",
				ferry_mig_state_name(now));
		else
			chk_add(x, CHK_PASS, name, "back in RUNNING");
	}
}

void chk_observe_error(struct chk_ctx *x, struct chk_dev *d)
{
	struct chk_error_obs *e = &x->error;
	enum ferry_mig_state now = FERRY_MIG_ERROR;
	uint8_t buf[16] = {0};
	size_t got;

	if (e->seen)
		return;
	e->seen = true;
	snprintf(e->where, sizeof(e->where), "the %s entered ERROR during \"%s\"", d->role,
		 x->current);
	e->set_err = chk_set(d, FERRY_MIG_RUNNING);
	e->set_moved = chk_get(d, &now) < 0 || now != FERRY_MIG_ERROR;
	e->read_err = ferry_client_mig_read(d->c, buf, sizeof(buf), &got);
	e->write_err = chk_write(d, buf, sizeof(buf));
	if (!d->can_reset)
		return;
	e->reset_tried = true;
	e->reset_err = ferry_client_reset(d->c);
	if (chk_get(d, &e->after_reset) < 0)
		e->after_reset = FERRY_MIG_ERROR;
}

void chk_section_error(struct chk_ctx *x)
{
	const struct chk_error_obs *e = &x->error;
	const char *sn = "ERROR refuses SET", *dn = "ERROR refuses data", *rn = "ERROR reset";

	if (!e->seen) {
		const char *why = "the device never entered ERROR during the checks (it cannot be requested)";
		chk_add(x, CHK_SKIP, sn, "%s", why);
		chk_add(x, CHK_SKIP, dn, "%s", why);
		chk_add(x, CHK_SKIP, rn, "%s", why);
		return;
	}
	if (e->set_err == 0 || e->set_moved)
		chk_add(x, CHK_FAIL, sn, "%s; SET RUNNING there %s", e->where,
			e->set_err == 0 ? "succeeded" : "failed but the state changed");
	else
		chk_add(x, CHK_PASS, sn, "%s; SET RUNNING refused (%s), still ERROR", e->where,
			strerror(-e->set_err));
	if (e->set_moved)
		chk_add(x, CHK_SKIP, dn, "the device left ERROR on a SET");
	else if (e->read_err == 0 || e->write_err == 0)
		chk_add(x, CHK_FAIL, dn, "MIG_DATA_%s accepted in ERROR",
			e->read_err == 0 ? "READ" : "WRITE");
	else
		chk_add(x, CHK_PASS, dn, "MIG_DATA_READ and MIG_DATA_WRITE refused");
	if (!e->reset_tried)
		chk_add(x, CHK_SKIP, rn, "the device does not advertise DEVICE_RESET");
	else if (e->reset_err < 0)
		chk_add(x, CHK_FAIL, rn, "DEVICE_RESET in ERROR failed: %s", strerror(-e->reset_err));
	else if (e->after_reset != FERRY_MIG_RUNNING)
		chk_add(x, CHK_FAIL, rn, "reset did not return to RUNNING (device in %s)",
			ferry_mig_state_name(e->after_reset));
	else
		chk_add(x, CHK_PASS, rn, "DEVICE_RESET returns ERROR to RUNNING");
}
