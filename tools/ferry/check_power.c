/*
 * ferry check: low power (LOW_POWER_ENTRY, LOW_POWER_ENTRY_WITH_WAKEUP,
 * LOW_POWER_EXIT; ferry's low_power extension, docs/protocol-extensions.md,
 * semantics in docs/power.md).
 *
 * Only for a device that negotiated low_power (vfio-user itself has no way
 * to pass the wakeup eventfd); otherwise one SKIP row. The features are
 * driven with raw DEVICE_FEATURE requests so the device's own answers are
 * checked; the power state is read from PMCSR (the PCI PM capability), and
 * config reads must not wake the device. A "trapped access" is a 4-byte
 * REGION_READ of the first readable BAR (at its first mmap area when it has
 * one, which has no side effects). Rows:
 *   entry, second entry refused, config space does not wake, a trapped
 *   access wakes for that access only (PMCSR D3hot again), exit, exit
 *   without entry; wakeup entry, its eventfd fires exactly once on access,
 *   exit after the wake-up is a no-op, exit before it signals; refusals
 *   (no fd, an fd that is not an eventfd, GET); reset and migration while
 *   low; the client library's mappings while low.
 * The device is always left out of low power.
 */
#include "check_priv.h"
#include "pci_decode.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <ferry/client_power.h>
#include <ferry/vfio_user.h>

#define LP_ENTRY VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY
#define LP_WAKEUP VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP
#define LP_EXIT VFIO_DEVICE_FEATURE_LOW_POWER_EXIT
#define CFG VFIO_PCI_CONFIG_REGION_INDEX
/* A wake-up is signalled before the reply to the access that caused it;
 * this only covers a server that signals from another thread. */
#define WAKE_WAIT_MS 500

struct pm_ctx {
	struct chk_ctx *x;
	struct ferry_client *c;
	unsigned pm_cap;    /* PMCSR at pm_cap + 4; 0: no PM capability */
	bool has_access;    /* a region to read for a trapped access */
	unsigned acc_index;
	uint64_t acc_off;
	int efd;
};

static int set_feature(struct pm_ctx *p, uint32_t feat, const void *data, size_t len,
		       const int *fds, unsigned nfds)
{
	return ferry_client_feature(p->c, feat | VFIO_DEVICE_FEATURE_SET, data, len, fds, nfds,
				    NULL, 0, NULL);
}

static int enter(struct pm_ctx *p)
{
	return set_feature(p, LP_ENTRY, NULL, 0, NULL, 0);
}

static int enter_wakeup(struct pm_ctx *p, int fd)
{
	struct vfio_user_low_power_entry_with_wakeup w = {.wakeup_eventfd = 0};
	return set_feature(p, LP_WAKEUP, &w, sizeof(w), &fd, fd >= 0 ? 1 : 0);
}

static int leave(struct pm_ctx *p)
{
	return set_feature(p, LP_EXIT, NULL, 0, NULL, 0);
}

/* PMCSR's power state 0..3, or -1 without a PM capability or on error. */
static int pmcsr(struct pm_ctx *p)
{
	uint16_t v;
	if (!p->pm_cap || ferry_client_region_read(p->c, CFG, p->pm_cap + 4, &v, 2) < 0)
		return -1;
	return v & 3;
}

static const char *dstate(int s)
{
	return s < 0 ? "unknown (no PM capability)" : pci_power_state_name((uint8_t)s);
}

/* True if PMCSR reads @want, or there is no PMCSR to read. */
static bool pm_is(struct pm_ctx *p, int want)
{
	int s = pmcsr(p);
	return s < 0 || s == want;
}

static int touch(struct pm_ctx *p)
{
	uint8_t buf[4];
	return ferry_client_region_read(p->c, p->acc_index, p->acc_off, buf, sizeof(buf));
}

/* The eventfd's count (cleared), after waiting up to @wait_ms for one. */
static uint64_t efd_take(struct pm_ctx *p, int wait_ms)
{
	struct pollfd pf = {.fd = p->efd, .events = POLLIN};
	eventfd_t v = 0;
	if (poll(&pf, 1, wait_ms) == 1 && eventfd_read(p->efd, &v) == 0)
		return v;
	return 0;
}

static void find_pm_cap(struct pm_ctx *p)
{
	uint8_t cfg[256];
	struct pci_decoded dec;

	if (ferry_client_region_read(p->c, CFG, 0, cfg, sizeof(cfg)) < 0 ||
	    pci_decode(cfg, sizeof(cfg), &dec) < 0)
		return;
	for (unsigned i = 0; i < dec.ncaps; i++)
		if (dec.caps[i].id == 0x01 /* PCI_CAP_ID_PM */ && !dec.caps[i].truncated)
			p->pm_cap = dec.caps[i].off;
}

static void find_access(struct pm_ctx *p)
{
	for (unsigned i = 0; i <= 5 && !p->has_access; i++) {
		const struct ferry_region_desc *d;
		if (ferry_client_region_info(p->c, i, &d) < 0 || d->size < 4 ||
		    !(d->flags & VFIO_REGION_INFO_FLAG_READ))
			continue;
		p->has_access = true;
		p->acc_index = i;
		p->acc_off = d->has_fd && d->nr_areas && d->areas[0].size >= 4 ? d->areas[0].offset : 0;
	}
}

/* One row for an expected refusal: EINVAL passes, success fails. */
static void refusal_row(struct pm_ctx *p, const char *name, int r, const char *what)
{
	if (r == -EINVAL)
		chk_add(p->x, CHK_PASS, name, "%s refused (EINVAL)", what);
	else if (r == 0)
		chk_add(p->x, CHK_FAIL, name, "%s accepted", what);
	else
		chk_add(p->x, CHK_WARN, name, "%s refused with %s (the kernel's answer is EINVAL)",
			what, strerror(-r));
}

/* ---- the rows ---- */

static void rows_plain(struct pm_ctx *p)
{
	struct chk_ctx *x = p->x;
	int r;

	chk_progress(x, "low power: entry");
	if ((r = enter(p)) < 0) {
		chk_add(x, CHK_FAIL, "low power: entry", "LOW_POWER_ENTRY failed: %s", strerror(-r));
		return;
	}
	int s = pmcsr(p);
	chk_add(x, s < 0 || s == 3 ? CHK_PASS : CHK_FAIL, "low power: entry",
		"LOW_POWER_ENTRY accepted; PMCSR reads %s", dstate(s));
	refusal_row(p, "low power: second entry", enter(p), "a second LOW_POWER_ENTRY");
	refusal_row(p, "low power: entry while engaged", enter_wakeup(p, p->efd),
		    "LOW_POWER_ENTRY_WITH_WAKEUP while engaged");

	if (!p->has_access) {
		chk_add(x, CHK_SKIP, "low power: wake on access", "no readable BAR to access");
	} else {
		chk_progress(x, "low power: wake on access");
		r = touch(p);
		s = pmcsr(p);
		if (r < 0)
			chk_add(x, CHK_FAIL, "low power: wake on access",
				"REGION_READ of region %u at 0x%llx failed in low power: %s "
				"(an access must wake the device)", p->acc_index,
				(unsigned long long)p->acc_off, strerror(-r));
		else
			chk_add(x, s < 0 || s == 3 ? CHK_PASS : CHK_FAIL, "low power: wake on access",
				"REGION_READ of region %u served; afterwards PMCSR reads %s (back "
				"in low power after the access)", p->acc_index, dstate(s));
	}

	chk_progress(x, "low power: exit");
	r = leave(p);
	s = pmcsr(p);
	if (r < 0)
		chk_add(x, CHK_FAIL, "low power: exit", "LOW_POWER_EXIT failed: %s", strerror(-r));
	else
		chk_add(x, s < 0 || s == 0 ? CHK_PASS : CHK_FAIL, "low power: exit",
			"LOW_POWER_EXIT accepted; PMCSR reads %s", dstate(s));
	if ((r = leave(p)) < 0)
		chk_add(x, CHK_FAIL, "low power: exit without entry", "LOW_POWER_EXIT failed: %s",
			strerror(-r));
	else
		chk_add(x, CHK_PASS, "low power: exit without entry",
			"LOW_POWER_EXIT succeeds (nothing to do)");
}

static void rows_wakeup(struct pm_ctx *p)
{
	struct chk_ctx *x = p->x;
	const char *n = "low power: wakeup fires once";
	int r;

	chk_progress(x, "low power: wakeup entry");
	efd_take(p, 0);
	if ((r = enter_wakeup(p, p->efd)) < 0) {
		chk_add(x, CHK_FAIL, "low power: wakeup entry",
			"LOW_POWER_ENTRY_WITH_WAKEUP with an eventfd failed: %s", strerror(-r));
		return;
	}
	int s = pmcsr(p); /* a config read: must not wake it */
	uint64_t early = efd_take(p, 0);
	chk_add(x, early == 0 && (s < 0 || s == 3) ? CHK_PASS : CHK_FAIL, "low power: wakeup entry",
		"accepted; PMCSR reads %s; %s", dstate(s),
		early ? "the eventfd fired on a config read (config space must not wake it)"
		      : "config reads did not wake it");

	if (!p->has_access) {
		chk_add(x, CHK_SKIP, n, "no readable BAR to access");
		leave(p);
		efd_take(p, WAKE_WAIT_MS);
	} else {
		r = touch(p);
		uint64_t first = efd_take(p, WAKE_WAIT_MS);
		int r2 = touch(p);
		uint64_t again = efd_take(p, 50);
		s = pmcsr(p);
		if (r < 0 || r2 < 0)
			chk_add(x, CHK_FAIL, n, "REGION_READ in low power failed: %s",
				strerror(-(r < 0 ? r : r2)));
		else if (first != 1 || again)
			chk_add(x, CHK_FAIL, n,
				"the eventfd counted %llu on the first access and %llu more on the "
				"next (expected 1 and 0)", (unsigned long long)first,
				(unsigned long long)again);
		else
			chk_add(x, s < 0 || s == 0 ? CHK_PASS : CHK_FAIL, n,
				"signalled once; the device stays awake (PMCSR %s)", dstate(s));
		const char *xn = "low power: exit after wake-up";
		r = leave(p);
		uint64_t extra = efd_take(p, 50);
		if (r < 0)
			chk_add(x, CHK_FAIL, xn, "LOW_POWER_EXIT failed: %s", strerror(-r));
		else if (extra)
			chk_add(x, CHK_FAIL, xn, "LOW_POWER_EXIT signalled the eventfd again");
		else
			chk_add(x, CHK_PASS, xn, "LOW_POWER_EXIT is a no-op success");
	}

	/* EXIT before any access: the kernel's EXIT resumes a suspended device,
	 * whose resume signals ("may itself generate a wakeup"). */
	const char *en = "low power: exit signals wakeup";
	if ((r = enter_wakeup(p, p->efd)) < 0) {
		chk_add(x, CHK_FAIL, en, "a new LOW_POWER_ENTRY_WITH_WAKEUP failed: %s",
			strerror(-r));
		return;
	}
	r = leave(p);
	uint64_t got = efd_take(p, WAKE_WAIT_MS);
	if (r < 0)
		chk_add(x, CHK_FAIL, en, "LOW_POWER_EXIT failed: %s", strerror(-r));
	else
		chk_add(x, got == 1 ? CHK_PASS : CHK_WARN, en,
			got == 1 ? "LOW_POWER_EXIT signalled the unfired eventfd once"
				 : "LOW_POWER_EXIT did not signal the eventfd (the kernel does when "
				   "the device had entered low power)");
}

static void rows_refusals(struct pm_ctx *p)
{
	struct chk_ctx *x = p->x;
	struct vfio_user_low_power_entry_with_wakeup w = {.wakeup_eventfd = 0};
	int pfd[2];
	int r;

	chk_progress(x, "low power: refusals");
	r = set_feature(p, LP_WAKEUP, &w, sizeof(w), NULL, 0);
	refusal_row(p, "low power: wakeup without fd", r, "LOW_POWER_ENTRY_WITH_WAKEUP without an fd");
	if (r == 0)
		leave(p);
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		chk_add(x, CHK_SKIP, "low power: wakeup non-eventfd", "pipe: %s", strerror(errno));
	} else {
		r = enter_wakeup(p, pfd[0]);
		refusal_row(p, "low power: wakeup non-eventfd", r,
			    "LOW_POWER_ENTRY_WITH_WAKEUP with a pipe instead of an eventfd");
		if (r == 0)
			leave(p);
		close(pfd[0]);
		close(pfd[1]);
	}

	const uint32_t feats[] = {LP_ENTRY, LP_WAKEUP, LP_EXIT};
	uint8_t out[64];
	int accepted = 0, other = 0;
	for (unsigned i = 0; i < 3; i++) {
		r = ferry_client_feature(p->c, feats[i] | VFIO_DEVICE_FEATURE_GET, NULL, 0, NULL, 0,
					 out, sizeof(out), NULL);
		accepted += r == 0;
		other += r < 0 && r != -EINVAL;
	}
	chk_add(x, accepted ? CHK_FAIL : other ? CHK_WARN : CHK_PASS, "low power: GET refused",
		accepted ? "GET of a SET-only low-power feature succeeded"
			 : other ? "GET refused, but not with the kernel's EINVAL"
				 : "GET of features 3, 4 and 5 refused (EINVAL)");
}

static void row_reset(struct pm_ctx *p)
{
	struct chk_ctx *x = p->x;
	const char *n = "low power: reset while low";
	struct chk_dev *d = &x->dev;

	if (!d->can_reset) {
		chk_add(x, CHK_SKIP, n, "the device does not advertise DEVICE_RESET");
		return;
	}
	chk_progress(x, "%s", n);
	int r = enter(p);
	int rr = r < 0 ? r : ferry_client_reset(p->c);
	bool plain_low = pm_is(p, 3);
	int again = r < 0 ? r : enter(p); /* still engaged: refused */
	leave(p);
	int rw = enter_wakeup(p, p->efd);
	int rr2 = rw < 0 ? rw : ferry_client_reset(p->c);
	uint64_t fired = rw < 0 ? 0 : efd_take(p, WAKE_WAIT_MS);
	leave(p);
	efd_take(p, 0);
	if (r < 0 || rw < 0 || rr < 0 || rr2 < 0)
		chk_add(x, CHK_FAIL, n, "entry or DEVICE_RESET failed: %s",
			strerror(-(r < 0 ? r : rw < 0 ? rw : rr < 0 ? rr : rr2)));
	else if (!plain_low || again != -EINVAL || fired != 1)
		chk_add(x, CHK_FAIL, n,
			"a reset is an access: a plain entry must stay engaged (%s, PMCSR %s) and "
			"a wakeup entry must signal once (counted %llu)",
			again == -EINVAL ? "it did" : "it did not", plain_low ? "D3hot" : "not D3hot",
			(unsigned long long)fired);
	else
		chk_add(x, CHK_PASS, n,
			"plain entry: woken for the reset and back in low power; wakeup entry: "
			"the reset signalled it once");
}

static void row_migration(struct pm_ctx *p)
{
	struct chk_ctx *x = p->x;
	struct chk_dev *d = &x->dev;
	const char *n = "low power: migration wakes";
	char why[CHK_REASON_MAX];
	enum ferry_mig_state now;

	if (!d->has_mig || d->lost) {
		chk_add(x, CHK_SKIP, n, "no usable migration support");
		return;
	}
	chk_progress(x, "%s", n);
	if (chk_recover(x, d, why, sizeof(why)) < 0) {
		chk_add(x, CHK_SKIP, n, "cannot bring the device to RUNNING: %s", why);
		return;
	}
	int r = enter_wakeup(p, p->efd);
	int rs = r < 0 ? r : chk_set(d, FERRY_MIG_STOP);
	uint64_t fired = efd_take(p, WAKE_WAIT_MS);
	int g = chk_get(d, &now);
	leave(p);
	efd_take(p, 0);
	chk_recover(x, d, why, sizeof(why));
	if (r < 0 || rs < 0)
		chk_add(x, CHK_FAIL, n, "%s failed in low power: %s",
			r < 0 ? "LOW_POWER_ENTRY_WITH_WAKEUP" : "SET STOP", strerror(-(r < 0 ? r : rs)));
	else if (g < 0 || now != FERRY_MIG_STOP)
		chk_add(x, CHK_FAIL, n, "the device did not reach STOP");
	else if (fired != 1)
		chk_add(x, CHK_FAIL, n,
			"RUNNING -> STOP in low power: the eventfd counted %llu (expected 1)",
			(unsigned long long)fired);
	else
		chk_add(x, CHK_PASS, n,
			"RUNNING -> STOP in low power woke the device and signalled once");
}

/* The client library's side: mappings of the device's regions while low. */
static void row_mappings(struct pm_ctx *p)
{
	struct chk_ctx *x = p->x;
	const char *n = "low power: mappings while low";
	int idx = -1, err;

	for (unsigned i = 0; i <= 5 && idx < 0; i++) {
		const struct ferry_region_desc *d;
		if (ferry_client_region_info(p->c, i, &d) == 0 && d->has_fd &&
		    (d->flags & VFIO_REGION_INFO_FLAG_MMAP) && (!d->has_sparse || d->nr_areas))
			idx = (int)i;
	}
	if (idx < 0) {
		chk_add(x, CHK_SKIP, n, "no mappable region");
		return;
	}
	if (!ferry_client_region_map(p->c, (unsigned)idx, &err)) {
		chk_add(x, CHK_FAIL, n, "mapping region %d failed: %s", idx, strerror(-err));
		return;
	}
	int r = ferry_client_low_power_enter(p->c);
	bool off = !ferry_client_region_access_ok(p->c, (unsigned)idx);
	int rx = ferry_client_low_power_exit(p->c);
	bool on = ferry_client_region_access_ok(p->c, (unsigned)idx);
	ferry_client_region_unmap(p->c, (unsigned)idx);
	if (r < 0 || rx < 0)
		chk_add(x, CHK_FAIL, n, "ferry_client_low_power_%s failed: %s", r < 0 ? "enter" : "exit",
			strerror(-(r < 0 ? r : rx)));
	else
		chk_add(x, off && on ? CHK_PASS : CHK_FAIL, n,
			"region %d's mapping %s while low and %s after the exit", idx,
			off ? "inaccessible" : "still accessible", on ? "back" : "still inaccessible");
}

void chk_section_power(struct chk_ctx *x)
{
	struct pm_ctx p = {.x = x, .c = x->dev.c, .efd = -1};

	if (!p.c || x->dev.lost)
		return;
	if (!(ferry_client_server_caps(p.c)->extensions & FERRY_EXT_LOW_POWER)) {
		chk_add(x, CHK_SKIP, "low power",
			"skipped: the device did not negotiate ferry's low_power extension "
			"(vfio-user alone cannot pass the wakeup eventfd)");
		return;
	}
	p.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p.efd < 0) {
		chk_add(x, CHK_SKIP, "low power", "skipped: eventfd: %s", strerror(errno));
		return;
	}
	find_pm_cap(&p);
	find_access(&p);
	leave(&p); /* start from no entry, whatever came before */

	rows_plain(&p);
	rows_wakeup(&p);
	rows_refusals(&p);
	row_reset(&p);
	row_migration(&p);
	row_mappings(&p);

	leave(&p);
	close(p.efd);
}
