/*
 * ferry check: the saving side of the data stream.
 *
 * - Gating: MIG_DATA_READ only in the saving states, MIG_DATA_WRITE only in
 *   RESUMING.
 * - One full save, as a VMM does it: RUNNING -> (PRE_COPY, read until a
 *   reply of 0 bytes) -> STOP_COPY, read until 0. Its stream is kept for the
 *   other sections.
 * - The stop-copy size estimate (MIG_DATA_SIZE). Rule: the estimate taken
 *   in STOP_COPY before the first read — the device is stopped, so what is
 *   left is fixed — must be at least the bytes STOP_COPY then produces. An
 *   estimate below makes a VMM overrun its downtime budget: FAIL. One above
 *   2 x actual + 1 MiB makes it iterate pre-copy for nothing: WARN. Absent
 *   feature: SKIP (it is a kernel feature, optional in vfio-user).
 * - Pre-copy sizes (ferry's precopy_info extension): refused outside the
 *   pre-copy states, initial_bytes never grows while data is read, and is 0
 *   once a read returned 0. An initial_bytes at entry above twice the bytes
 *   pre-copy then produced (+ 1 MiB) is a WARN: it counts something other
 *   than stream bytes (e.g. memory before compression).
 */
#include "check_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Pre-copy reads give up here when the device never reports "drained". */
#define PRECOPY_LIMIT (512u * 1024u * 1024u)
/* Small enough that precopy_info is sampled many times even for a small
 * device; 512 MiB at this size is 16k round trips, well under a minute. */
#define PRECOPY_CHUNK (32u * 1024u)
/* Estimates within 2 x actual + this are fine (headers, rounding). */
#define PRECOPY_SLACK (1024u * 1024u)

static void add_state(char *list, size_t len, uint32_t s)
{
	size_t off = strlen(list);
	snprintf(list + off, len - off, "%s%s", off ? ", " : "", ferry_mig_state_name(s));
}

void chk_section_data_gating(struct chk_ctx *x)
{
	struct chk_dev *d = &x->dev;
	uint64_t f = d->mig_flags;
	char ok_r[160] = "", bad_r[160] = "", ok_w[160] = "", bad_w[160] = "";
	char why[CHK_REASON_MAX] = "";
	uint8_t buf[64] = {0};
	size_t got;

	chk_progress(x, "MIG_DATA_READ / MIG_DATA_WRITE gating");
	for (uint32_t s = 1; s < FERRY_MIG_NUM_STATES && !d->lost; s++) {
		if (!ferry_mig_state_supported(f, s))
			continue;
		if (!ferry_mig_state_is_saving(s)) {
			if (chk_drive(x, d, s, NULL, why, sizeof(why)) < 0)
				break;
			if (ferry_client_mig_read(d->c, buf, sizeof(buf), &got) == 0)
				add_state(bad_r, sizeof(bad_r), s);
			else
				add_state(ok_r, sizeof(ok_r), s);
		}
		if (s != FERRY_MIG_RESUMING) {
			if (chk_drive(x, d, s, NULL, why, sizeof(why)) < 0)
				break;
			if (chk_write(d, buf, 16) == 0)
				add_state(bad_w, sizeof(bad_w), s);
			else
				add_state(ok_w, sizeof(ok_w), s);
		}
	}
	const char *rn = "MIG_DATA_READ outside saving states";
	const char *wn = "MIG_DATA_WRITE outside RESUMING";
	if (why[0]) {
		chk_add(x, CHK_FAIL, rn, "%s", why);
		chk_add(x, CHK_FAIL, wn, "%s", why);
		return;
	}
	if (bad_r[0])
		chk_add(x, CHK_FAIL, rn, "accepted in %s", bad_r);
	else
		chk_add(x, CHK_PASS, rn, "refused in %s", ok_r);
	if (bad_w[0])
		chk_add(x, CHK_FAIL, wn, "accepted in %s", bad_w);
	else
		chk_add(x, CHK_PASS, wn, "refused in %s", ok_w);
}

/* What the full save observed, for the rows after it. */
struct save_obs {
	size_t pre_bytes, stop_bytes;
	unsigned pre_reads, stop_reads;
	bool pre_drained;
	bool end_final;       /* a read after the end returned 0 again */
	int size_err;         /* MIG_DATA_SIZE in STOP_COPY, before reading */
	uint64_t size_est;
	int size_pre_err;     /* ... and in PRE_COPY after draining (information) */
	uint64_t size_pre;
	/* precopy_info */
	int info_running_err; /* in RUNNING: must fail */
	int info_err;         /* first failure in PRE_COPY */
	unsigned info_samples;
	uint64_t info_first, info_last;
	bool info_grew;
	uint64_t grew_from, grew_to;
	size_t grew_at;       /* pre-copy bytes read when it grew */
	bool info_final_ok;
	uint64_t info_final;
	int info_stop_err;    /* in STOP_COPY: must fail */
};

static void sample_info(struct chk_dev *d, struct save_obs *o)
{
	uint64_t ib, db;
	if (o->info_err)
		return;
	int r = ferry_client_mig_precopy_info(d->c, &ib, &db);
	if (r < 0) {
		o->info_err = r;
		return;
	}
	if (o->info_samples && ib > o->info_last && !o->info_grew) {
		o->info_grew = true;
		o->grew_from = o->info_last;
		o->grew_to = ib;
		o->grew_at = o->pre_bytes;
	}
	if (!o->info_samples)
		o->info_first = ib;
	o->info_last = ib;
	o->info_samples++;
}

/* RUNNING -> PRE_COPY, reading until the device has nothing more for now. */
static int precopy_phase(struct chk_ctx *x, struct save_obs *o, char *why, size_t len)
{
	struct chk_dev *d = &x->dev;
	uint8_t *buf = malloc(PRECOPY_CHUNK);
	if (!buf) {
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	int r = chk_set(d, FERRY_MIG_PRE_COPY);
	if (r < 0) {
		snprintf(why, len, "RUNNING -> PRE_COPY failed: %s", strerror(-r));
		goto out;
	}
	sample_info(d, o);
	while (o->pre_bytes < PRECOPY_LIMIT) {
		size_t got = 0;
		r = ferry_client_mig_read(d->c, buf, PRECOPY_CHUNK, &got);
		if (r < 0) {
			snprintf(why, len, "pre-copy MIG_DATA_READ failed after %zu bytes: %s",
				 o->pre_bytes, strerror(-r));
			goto out;
		}
		if (!got) {
			o->pre_drained = true;
			break;
		}
		r = chk_stream_append(&x->saved, buf, got);
		if (r < 0) {
			snprintf(why, len, "keeping the stream: %s", strerror(-r));
			goto out;
		}
		o->pre_bytes += got;
		o->pre_reads++;
		sample_info(d, o);
	}
	if (o->pre_drained && !o->info_err) {
		uint64_t db;
		o->info_final_ok = ferry_client_mig_precopy_info(d->c, &o->info_final, &db) == 0;
	}
	o->size_pre_err = ferry_client_mig_data_size(d->c, &o->size_pre);
	r = 0;
out:
	free(buf);
	return r;
}

static int full_save(struct chk_ctx *x, struct save_obs *o, char *why, size_t len)
{
	struct chk_dev *d = &x->dev;
	uint64_t ib, db;
	int r = chk_recover(x, d, why, len);
	if (r < 0)
		return r;
	o->info_running_err = ferry_client_mig_precopy_info(d->c, &ib, &db);
	if (d->mig_flags & VFIO_MIGRATION_PRE_COPY) {
		r = precopy_phase(x, o, why, len);
		if (r < 0)
			return r;
	}
	r = chk_set(d, FERRY_MIG_STOP_COPY);
	if (r < 0) {
		snprintf(why, len, "-> STOP_COPY failed: %s", strerror(-r));
		return r;
	}
	o->info_stop_err = ferry_client_mig_precopy_info(d->c, &ib, &db);
	o->size_err = ferry_client_mig_data_size(d->c, &o->size_est);
	size_t before = x->saved.len;
	r = chk_read_to_end(d, &x->saved, CHK_STREAM_MAX, &o->stop_reads);
	o->stop_bytes = x->saved.len - before;
	if (r < 0) {
		snprintf(why, len, "stop-copy MIG_DATA_READ failed after %zu bytes: %s",
			 o->stop_bytes, strerror(-r));
		return r;
	}
	uint8_t extra[64];
	size_t got = 0;
	o->end_final = ferry_client_mig_read(d->c, extra, sizeof(extra), &got) == 0 && got == 0;
	r = chk_set(d, FERRY_MIG_STOP);
	if (r < 0) {
		snprintf(why, len, "STOP_COPY -> STOP after the save failed: %s", strerror(-r));
		return r;
	}
	return 0;
}

static void size_row(struct chk_ctx *x, const struct save_obs *o)
{
	const char *n = "stop-copy size estimate";
	char pre[96] = "";
	if (o->size_err < 0) {
		chk_add(x, CHK_SKIP, n, "MIG_DATA_SIZE not offered (%s); actual stop-copy bytes %zu",
			strerror(-o->size_err), o->stop_bytes);
		return;
	}
	if (o->size_pre_err == 0 && (x->dev.mig_flags & VFIO_MIGRATION_PRE_COPY))
		snprintf(pre, sizeof(pre), "; %llu in PRE_COPY after draining",
			 (unsigned long long)o->size_pre);
	unsigned long long est = o->size_est, act = o->stop_bytes;
	if (est < act)
		chk_add(x, CHK_FAIL, n,
			"estimate %llu in STOP_COPY is below the %llu bytes STOP_COPY produced%s",
			est, act, pre);
	else if (est > 2 * act + 1024 * 1024)
		chk_add(x, CHK_WARN, n,
			"estimate %llu in STOP_COPY is more than twice the %llu bytes produced%s", est,
			act, pre);
	else
		chk_add(x, CHK_PASS, n, "estimate %llu in STOP_COPY, actual %llu%s", est, act, pre);
}

static void precopy_rows(struct chk_ctx *x, const struct save_obs *o)
{
	const char *in = "precopy-info", *dn = "precopy-drain";
	bool ext = ferry_client_server_caps(x->dev.c)->extensions & FERRY_EXT_PRECOPY_INFO;
	if (!(x->dev.mig_flags & VFIO_MIGRATION_PRE_COPY)) {
		chk_add(x, CHK_SKIP, in, "the device has no PRE_COPY");
		chk_add(x, CHK_SKIP, dn, "the device has no PRE_COPY");
		return;
	}
	if (!ext) {
		chk_add(x, CHK_SKIP, in, "the server did not negotiate ferry's precopy_info");
		chk_add(x, CHK_SKIP, dn, "the server did not negotiate ferry's precopy_info");
		return;
	}
	if (o->info_err < 0 || !o->info_samples)
		chk_add(x, CHK_FAIL, in, "negotiated, but GET in PRE_COPY failed: %s",
			strerror(o->info_err < 0 ? -o->info_err : EIO));
	else if (o->info_running_err == 0)
		chk_add(x, CHK_FAIL, in, "GET succeeded in RUNNING; it must fail outside PRE_COPY");
	else if (o->info_stop_err == 0)
		chk_add(x, CHK_FAIL, in, "GET succeeded in STOP_COPY; it must fail outside PRE_COPY");
	else
		chk_add(x, CHK_PASS, in,
			"answers in PRE_COPY (initial_bytes %llu at entry), refused in RUNNING and STOP_COPY",
			(unsigned long long)o->info_first);

	if (o->info_err < 0 || !o->info_samples)
		chk_add(x, CHK_SKIP, dn, "no precopy_info to follow");
	else if (o->info_grew)
		chk_add(x, CHK_FAIL, dn, "initial_bytes grew from %llu to %llu after %zu bytes read",
			(unsigned long long)o->grew_from, (unsigned long long)o->grew_to, o->grew_at);
	else if (!o->pre_drained)
		chk_add(x, CHK_WARN, dn, "pre-copy never returned 0 bytes within %u MiB",
			PRECOPY_LIMIT >> 20);
	else if (!o->info_final_ok)
		chk_add(x, CHK_FAIL, dn, "GET after draining failed");
	else if (o->info_final != 0)
		chk_add(x, CHK_FAIL, dn, "initial_bytes is %llu after a read returned 0 (must be 0)",
			(unsigned long long)o->info_final);
	else if (o->info_first > 2 * (uint64_t)o->pre_bytes + PRECOPY_SLACK)
		chk_add(x, CHK_WARN, dn,
			"initial_bytes %llu at entry is more than twice the %zu bytes pre-copy produced: a VMM judging convergence by it is misled (count stream bytes)",
			(unsigned long long)o->info_first, o->pre_bytes);
	else
		chk_add(x, CHK_PASS, dn,
			"initial_bytes %llu -> 0 over %u reads (%zu bytes), never growing",
			(unsigned long long)o->info_first, o->pre_reads, o->pre_bytes);
}

void chk_section_save(struct chk_ctx *x)
{
	struct save_obs o = {0};
	char why[CHK_REASON_MAX];
	const char *n = "save";

	chk_progress(x, "full save");
	if (full_save(x, &o, why, sizeof(why)) < 0) {
		chk_add(x, CHK_FAIL, n, "%s", why);
		chk_add(x, CHK_SKIP, "stop-copy end is final", "the save failed");
		chk_add(x, CHK_SKIP, "stop-copy size estimate", "the save failed");
		chk_add(x, CHK_SKIP, "precopy-info", "the save failed");
		chk_add(x, CHK_SKIP, "precopy-drain", "the save failed");
		return;
	}
	x->have_saved = true;
	if (x->dev.mig_flags & VFIO_MIGRATION_PRE_COPY)
		chk_add(x, o.pre_drained ? CHK_PASS : CHK_WARN, n,
			"%zu bytes: %zu in PRE_COPY (%u reads%s), %zu in STOP_COPY (%u reads)",
			x->saved.len, o.pre_bytes, o.pre_reads,
			o.pre_drained ? ", then 0" : ", never drained", o.stop_bytes, o.stop_reads);
	else
		chk_add(x, CHK_PASS, n, "%zu bytes in STOP_COPY (%u reads)", x->saved.len,
			o.stop_reads);
	if (o.end_final)
		chk_add(x, CHK_PASS, "stop-copy end is final", "a read after the end returns 0 again");
	else
		chk_add(x, CHK_FAIL, "stop-copy end is final",
			"a MIG_DATA_READ after the end of STOP_COPY did not return 0 bytes");
	size_row(x, &o);
	precopy_rows(x, &o);
}
