/*
 * ferry check: the restoring side of the data stream. Runs right after the
 * full save, while the source is still stopped in the state it saved.
 *
 * - Two more saves of the stopped source (STOP -> STOP_COPY -> STOP): if they
 *   are equal, the device's stream is deterministic and can be compared.
 * - The full save is restored into the peer (--peer), or into the device
 *   itself without one: RUNNING -> RESUMING, write, -> STOP must succeed;
 *   the restored device is saved the same way and compared byte for byte
 *   with the source's reference save; then -> RUNNING must succeed. A
 *   difference is a warning (a device may encode equal state differently,
 *   e.g. with timestamps), a failure with --strict.
 * - A stream cut in half must not restore into the device under test (not
 *   the peer: validating is its duty): RESUMING -> STOP must fail, or leave
 *   the device in ERROR.
 */
#include "check_priv.h"

#include <errno.h>
#include <string.h>

#define R_RESTORE "restore"
#define R_RUNNING "restore -> RUNNING"
#define R_COMPARE "restore compare"
#define R_TRUNC "truncated restore refused"

static void skip_all(struct chk_ctx *x, const char *why)
{
	chk_add(x, CHK_SKIP, R_RESTORE, "%s", why);
	chk_add(x, CHK_SKIP, R_COMPARE, "%s", why);
	chk_add(x, CHK_SKIP, R_RUNNING, "%s", why);
	chk_add(x, CHK_SKIP, R_TRUNC, "%s", why);
}

/* Offset of the first difference, or SIZE_MAX when equal. */
static size_t first_diff(const struct chk_stream *a, const struct chk_stream *b)
{
	size_t n = a->len < b->len ? a->len : b->len;
	for (size_t i = 0; i < n; i++)
		if (a->buf[i] != b->buf[i])
			return i;
	return a->len == b->len ? SIZE_MAX : n;
}

/* Source reference saves; returns 1 if deterministic, 0 if not, < 0 on error. */
static int reference_saves(struct chk_ctx *x, struct chk_stream *ref, char *why, size_t len)
{
	struct chk_stream again = {0};
	enum ferry_mig_state s;
	int r = chk_get(&x->dev, &s);
	if (r == 0 && s != FERRY_MIG_STOP) {
		snprintf(why, len, "the device left the save in %s, not STOP",
			 ferry_mig_state_name(s));
		return -EPROTO;
	}
	if (r == 0)
		r = chk_save_stopped(&x->dev, ref, why, len);
	if (r == 0)
		r = chk_save_stopped(&x->dev, &again, why, len);
	if (r < 0) {
		if (!why[0])
			snprintf(why, len, "GET failed: %s", strerror(-r));
		chk_stream_free(&again);
		return r;
	}
	r = first_diff(ref, &again) == SIZE_MAX;
	chk_stream_free(&again);
	return r;
}

/* @deterministic: 1, 0, or < 0 when the source could not be saved again. */
static void compare_row(struct chk_ctx *x, int deterministic, const struct chk_stream *ref,
			const struct chk_stream *out)
{
	if (deterministic < 0) {
		chk_add(x, CHK_SKIP, R_COMPARE, "no reference save of the source to compare with");
		return;
	}
	if (!deterministic) {
		chk_add(x, CHK_SKIP, R_COMPARE,
			"two saves of the stopped source differ: its stream is not deterministic");
		return;
	}
	size_t at = first_diff(ref, out);
	if (at == SIZE_MAX)
		chk_add(x, CHK_PASS, R_COMPARE, "a save of the restored device equals the source's (%zu bytes)",
			out->len);
	else
		chk_add(x, x->strict ? CHK_FAIL : CHK_WARN, R_COMPARE,
			"differs: a save of the restored device (%zu bytes) and the source's (%zu bytes) differ at byte %zu",
			out->len, ref->len, at);
}

static void truncated_row(struct chk_ctx *x, struct chk_dev *t)
{
	char why[CHK_REASON_MAX];
	enum ferry_mig_state now;
	size_t cut = x->saved.len / 2;

	if (x->saved.len < 2) {
		chk_add(x, CHK_SKIP, R_TRUNC, "the stream has %zu bytes: nothing to cut",
			x->saved.len);
		return;
	}
	chk_progress(x, "restoring a truncated stream");
	if (chk_drive(x, t, FERRY_MIG_RESUMING, NULL, why, sizeof(why)) < 0) {
		chk_add(x, CHK_FAIL, R_TRUNC, "%s", why);
		return;
	}
	int r = chk_write(t, x->saved.buf, cut);
	if (r < 0) {
		chk_add(x, CHK_PASS, R_TRUNC, "the first %zu of %zu bytes were refused while loading (%s)",
			cut, x->saved.len, strerror(-r));
		return;
	}
	r = chk_set(t, FERRY_MIG_STOP);
	int g = chk_get(t, &now);
	if (r < 0)
		chk_add(x, CHK_PASS, R_TRUNC,
			"RESUMING -> STOP refused a stream cut to %zu of %zu bytes (%s); device now in %s",
			cut, x->saved.len, strerror(-r), g == 0 ? ferry_mig_state_name(now) : "?");
	else if (g == 0 && now == FERRY_MIG_ERROR)
		chk_add(x, CHK_PASS, R_TRUNC, "a stream cut to %zu of %zu bytes left the device in ERROR",
			cut, x->saved.len);
	else
		chk_add(x, CHK_FAIL, R_TRUNC,
			"RESUMING -> STOP accepted a stream cut to %zu of %zu bytes: the device does not validate what it loads",
			cut, x->saved.len);
	chk_recover(x, t, why, sizeof(why)); /* notices ERROR; a failure shows later */
}

void chk_section_restore(struct chk_ctx *x)
{
	struct chk_dev *t = x->has_peer ? &x->peer : &x->dev;
	const char *into = x->has_peer ? "the peer" : "the device itself (no --peer)";
	struct chk_stream ref = {0}, out = {0};
	char why[CHK_REASON_MAX] = "";

	if (!x->have_saved) {
		skip_all(x, "the save failed");
		return;
	}
	if (x->has_peer && !t->has_mig) {
		skip_all(x, "the peer does not offer migration");
		return;
	}
	chk_progress(x, "reference saves of the stopped source");
	int det = reference_saves(x, &ref, why, sizeof(why));
	if (det < 0) /* the restore still runs; there is just nothing to compare */
		chk_add(x, CHK_FAIL, "save again from STOP", "%s", why);

	chk_progress(x, "restoring %zu bytes into %s", x->saved.len, into);
	int r = chk_drive(x, t, FERRY_MIG_RESUMING, &x->saved, why, sizeof(why));
	if (r == 0) {
		r = chk_set(t, FERRY_MIG_STOP);
		if (r < 0)
			snprintf(why, sizeof(why), "RESUMING -> STOP refused the complete stream: %s",
				 strerror(-r));
	}
	if (r < 0) {
		chk_add(x, CHK_FAIL, R_RESTORE, "into %s: %s", into, why);
		chk_add(x, CHK_SKIP, R_COMPARE, "the restore failed");
		chk_add(x, CHK_SKIP, R_RUNNING, "the restore failed");
		goto truncated;
	}
	chk_add(x, CHK_PASS, R_RESTORE, "%zu bytes loaded into %s; RESUMING -> STOP accepted them",
		x->saved.len, into);

	chk_progress(x, "saving the restored device");
	if (chk_save_stopped(t, &out, why, sizeof(why)) < 0)
		chk_add(x, CHK_FAIL, R_COMPARE, "saving the restored device: %s", why);
	else
		compare_row(x, det, &ref, &out);

	r = chk_set(t, FERRY_MIG_RUNNING);
	if (r < 0)
		chk_add(x, CHK_FAIL, R_RUNNING, "STOP -> RUNNING after the restore failed: %s",
			strerror(-r));
	else
		chk_add(x, CHK_PASS, R_RUNNING, "the restored device runs");
truncated:
	/* Validation is the device under test's duty, whatever the peer does. */
	truncated_row(x, &x->dev);
	chk_stream_free(&ref);
	chk_stream_free(&out);
}
