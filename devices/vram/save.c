/*
 * Producing the stream (save.h, format in stream.h).
 *
 * One record at a time is built where it goes: straight into the caller's
 * buffer while a whole page record fits in what is left of it (the page is
 * copied once, VRAM to buffer), else in a staging buffer handed out across
 * as many save() calls as the caller's buffer sizes need. The page bytes
 * are copied first, so the fingerprint and the zero-page decision are taken
 * on exactly the bytes that go out, even while the engine or the host keeps
 * writing the page. Records are added to the stream crc when built (the
 * bytes are still in cache); a record is built only once the previous one
 * is drained, so at the trailer the crc covers everything before it.
 *
 * Order of a session: header; the initial pass (pre-copy only: every page in
 * index order); in pre-copy, rounds: a save() call that finds nothing left
 * rehashes one verify slice, takes the dirty bitmap and, if it is not empty,
 * starts a round with a ROUND record (so a short read marks a round end, a
 * 0 read "nothing dirty now"); in STOP_COPY, the pending set fixed by
 * vram_save_finalize(), then the trailer, then 0 forever.
 */
#include "save.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bitmap.h"
#include "hash.h"
#include "stream.h"
#include "vram.h"
#include "util/crc32.h"

/* Pages rehashed per round start to find host writes made through the
 * mmap. Hashing resident VRAM runs at the speed of reading it (hash.h:
 * 64 MiB in about 3 ms on the 2-core build VM), so 8192 pages (32 MiB)
 * cost about 1.5 ms per round: small beside the round's own copying, and a
 * 1 GiB VRAM is covered every 32 rounds. Holes cost no hashing at all. */
#define VERIFY_SLICE 8192u

enum stage_kind {
	STAGE_INITIAL, /* header or an initial-pass page: counts in initial_bytes */
	STAGE_DIRTY,   /* a round's marker or page, or an initial-pass page that
			* was a hole at the start: counts in dirty_bytes */
	STAGE_FINAL,   /* stop-copy */
};

struct vram_save {
	bool active, precopy, final, trailer_staged;
	bool header_staged;
	uint64_t init_cursor; /* initial pass: pages below were staged */
	/* Pages that were data (not holes) when the session started, and how
	 * many of them the initial pass has still to reach: initial_bytes
	 * counts those as page records and the rest as zero records. */
	uint64_t *init_data, init_data_left;
	uint64_t *round;      /* pages of the current round still to send */
	uint64_t round_cursor, round_left, round_no;
	uint64_t verify_cursor;
	struct vram_hole_cursor holes; /* for the initial pass */
	uint64_t *pending, *pending_zero; /* stop-copy: pages to send, and which are zero */
	unsigned char *resident; /* whole-VRAM scans: mincore() of every page */
	uint64_t pend_cursor, pend_left;
	uint8_t stage[VRAM_PAGE_REC_LEN];
	size_t stage_len, stage_off;
	enum stage_kind stage_kind;
	/* Where stage_*() build the next record: the caller's buffer when a
	 * whole page record fits in what is left of it, else stage[]; and the
	 * length of the record built. */
	uint8_t *rec;
	size_t rec_len;
	uint32_t crc;
	uint64_t page_records;
	uint64_t sc_total, sc_emitted; /* stop-copy bytes: fixed at finalize, and read since */
	/* The stop-copy scan runs on scan_thread while is_scanning: it owns
	 * this struct and v->dirty until scan_wait() joins it. */
	pthread_t scan_thread;
	bool is_scanning;
};

static void scan_wait(struct vram_save *s)
{
	if (s->is_scanning) {
		pthread_join(s->scan_thread, NULL);
		s->is_scanning = false;
	}
}

int vram_save_create(struct vram *v)
{
	struct vram_save *s = calloc(1, sizeof(*s));
	size_t words = bitmap_words(v->npages);

	if (!s)
		return -ENOMEM;
	v->save = s;
	s->round = calloc(words, sizeof(uint64_t));
	s->pending = calloc(words, sizeof(uint64_t));
	s->pending_zero = calloc(words, sizeof(uint64_t));
	s->resident = malloc((size_t)v->npages);
	s->init_data = calloc(words, sizeof(uint64_t));
	if (!s->round || !s->pending || !s->pending_zero || !s->resident || !s->init_data)
		return -ENOMEM;
	return 0;
}

void vram_save_destroy(struct vram *v)
{
	struct vram_save *s = v->save;

	if (!s)
		return;
	scan_wait(s);
	free(s->round);
	free(s->pending);
	free(s->pending_zero);
	free(s->resident);
	free(s->init_data);
	free(s);
	v->save = NULL;
}

void vram_save_begin(struct vram *v, bool precopy)
{
	struct vram_save *s = v->save;
	size_t bytes = bitmap_words(v->npages) * sizeof(uint64_t);
	uint64_t *round = s->round, *pending = s->pending, *pending_zero = s->pending_zero;
	uint64_t *init_data = s->init_data;
	unsigned char *resident = s->resident;

	scan_wait(s);
	memset(round, 0, bytes);
	memset(pending, 0, bytes);
	memset(pending_zero, 0, bytes);
	memset(init_data, 0, bytes);
	memset(s, 0, sizeof(*s));
	s->round = round;
	s->pending = pending;
	s->pending_zero = pending_zero;
	s->init_data = init_data;
	s->resident = resident;
	s->active = true;
	s->precopy = precopy;
	/* The initial pass (or the finalize of a stop-copy-only session) covers
	 * every page: older marks mean nothing. */
	dirty_clear_all(&v->dirty);
	if (precopy) {
		/* Which pages hold data now, for initial_bytes: the stream sends
		 * holes and zero pages as 16-byte zero records. A fresh VRAM is
		 * all hole; one that was a migration's destination is resident
		 * (load.c populates it), zero pages included. One mincore() (and
		 * no lseek() without swap): ~0.1 ms for 64 MiB; the zero check
		 * reads only resident pages. The engine may fill pages meanwhile:
		 * those go out as dirty data (stage_live_page()). */
		struct vram_hole_cursor holes;

		vram_hole_cursor_whole(v, &holes, s->resident);
		for (uint64_t p = 0; p < v->npages; p++) {
			if (!vram_page_is_hole(v, &holes, p) &&
			    !page_is_zero(v->mem + p * VRAM_PAGE_SIZE)) {
				bitmap_set(s->init_data, p);
				s->init_data_left++;
			}
		}
	}
	vram_info(v, "migration: save session started (%s)", precopy ? "pre-copy" : "stop-copy");
}

void vram_save_end(struct vram *v)
{
	struct vram_save *s = v->save;

	scan_wait(s);
	if (s->active)
		vram_info(v, "migration: save session ended (%llu page records, %llu rounds)",
			  (unsigned long long)s->page_records, (unsigned long long)s->round_no);
	s->active = false;
	s->final = false;
}

/* The record at s->rec is complete: into the stream crc (all but the
 * trailer), and pending in stage[] if it was built there. */
static void stage_done(struct vram_save *s, size_t len, enum stage_kind kind, bool in_crc)
{
	if (in_crc)
		s->crc = ferry_crc32(s->crc, s->rec, len);
	s->rec_len = len;
	if (s->rec == s->stage) {
		s->stage_len = len;
		s->stage_off = 0;
		s->stage_kind = kind;
	}
}

static void stage_header(struct vram *v)
{
	struct vram_stream_header h = { .vram_size = v->size, .npages = v->npages };

	vram_regs_snapshot(v, &h.regs);
	vram_header_encode(v->save->rec, &h);
	v->save->header_staged = true;
	stage_done(v->save, VRAM_HDR_LEN, STAGE_INITIAL, true);
}

/* Pre-copy: the page as it is now. Clearing the dirty bit before copying
 * means a write racing with the copy leaves it set (resent next round).
 * In the initial pass, a page that is a hole in the memfd goes out as a
 * zero record without being touched; the hole cursor may be stale, but only
 * for pages written through the mmap since it looked (a device write sets
 * the dirty bit, which makes us read the page), and the verify slices and
 * the STOP_COPY rescan compare fingerprints of every page, so such a page
 * is resent. Round pages are known to be written: always read. */
static void stage_live_page(struct vram *v, uint64_t p, enum stage_kind kind)
{
	struct vram_save *s = v->save;
	uint8_t *data = s->rec + VRAM_REC_LEN;
	bool was_dirty = dirty_test_clear(&v->dirty, p);
	bool was_data = kind == STAGE_INITIAL && bitmap_test(s->init_data, p);

	s->page_records++;
	if (was_data)
		s->init_data_left--;
	if (kind == STAGE_INITIAL && !was_dirty && vram_page_is_hole(v, &s->holes, p)) {
		v->dirty.hash[p] = v->dirty.zero_hash;
		vram_rec_encode(s->rec, VRAM_REC_ZERO, 0, p);
		stage_done(s, VRAM_ZERO_REC_LEN, kind, true);
		return;
	}
	memcpy(data, v->mem + p * VRAM_PAGE_SIZE, VRAM_PAGE_SIZE);
	if (page_is_zero(data)) {
		v->dirty.hash[p] = v->dirty.zero_hash;
		vram_rec_encode(s->rec, VRAM_REC_ZERO, 0, p);
		stage_done(s, VRAM_ZERO_REC_LEN, kind, true);
	} else {
		v->dirty.hash[p] = page_fingerprint(data);
		vram_rec_encode(s->rec, VRAM_REC_PAGE, 0, p);
		/* A hole at the start counted as a zero record in initial_bytes:
		 * its data came since, so it counts as dirty (initial_bytes never
		 * grows). */
		stage_done(s, VRAM_PAGE_REC_LEN,
			   kind == STAGE_INITIAL && !was_data ? STAGE_DIRTY : kind, true);
	}
}

/* Stop-copy: the device is frozen; zero-ness was fixed by the stop-copy
 * scan, so the size it promised is exactly what goes out. The fingerprint
 * is taken on the copy, for the digest. */
static void stage_final_page(struct vram *v, uint64_t p)
{
	struct vram_save *s = v->save;

	s->page_records++;
	if (bitmap_test(s->pending_zero, p)) {
		v->dirty.hash[p] = v->dirty.zero_hash;
		vram_rec_encode(s->rec, VRAM_REC_ZERO, 0, p);
		stage_done(s, VRAM_ZERO_REC_LEN, STAGE_FINAL, true);
	} else {
		memcpy(s->rec + VRAM_REC_LEN, v->mem + p * VRAM_PAGE_SIZE, VRAM_PAGE_SIZE);
		v->dirty.hash[p] = page_fingerprint(s->rec + VRAM_REC_LEN);
		vram_rec_encode(s->rec, VRAM_REC_PAGE, 0, p);
		stage_done(s, VRAM_PAGE_REC_LEN, STAGE_FINAL, true);
	}
}

static void stage_trailer(struct vram *v)
{
	struct vram_save *s = v->save;
	struct vram_trailer t = {
		.page_records = s->page_records,
		/* Every pending page has its fingerprint now. */
		.vram_digest = vram_hash64(v->dirty.hash, v->npages * sizeof(uint64_t)),
		.stream_crc = s->crc,
	};

	vram_regs_snapshot(v, &t.regs);
	vram_trailer_encode(s->rec, &t);
	s->trailer_staged = true;
	stage_done(s, VRAM_TRAILER_LEN, STAGE_FINAL, false); /* not in its own crc */
}

/* Host writes through the mmap set no dirty bit: rehash a slice of pages
 * and mark those that no longer match what was sent. */
static void verify_slice(struct vram *v)
{
	struct vram_save *s = v->save;
	struct vram_hole_cursor holes = { 0 };
	uint64_t n = v->npages < VERIFY_SLICE ? v->npages : VERIFY_SLICE;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t p = s->verify_cursor, h;

		s->verify_cursor = p + 1 < v->npages ? p + 1 : 0;
		if (dirty_test(&v->dirty, p))
			continue;
		h = vram_page_is_hole(v, &holes, p) ? v->dirty.zero_hash
						    : page_fingerprint(v->mem + p * VRAM_PAGE_SIZE);
		if (h != v->dirty.hash[p])
			dirty_mark(&v->dirty, p);
	}
}

static bool start_round(struct vram *v)
{
	struct vram_save *s = v->save;
	uint64_t count = 0;

	verify_slice(v);
	for (size_t w = 0; w < v->dirty.nwords; w++) {
		s->round[w] = dirty_take_word(&v->dirty, w);
		count += (uint64_t)__builtin_popcountll(s->round[w]);
	}
	if (count == 0)
		return false;
	s->round_no++;
	s->round_cursor = 0;
	s->round_left = count;
	vram_rec_encode(s->rec, VRAM_REC_ROUND, 0, s->round_no);
	stage_done(s, VRAM_REC_LEN, STAGE_DIRTY, true);
	return true;
}

/* Stages the next record. False: nothing now (pre-copy) or the end. */
static bool stage_next(struct vram *v, bool may_start_round)
{
	struct vram_save *s = v->save;
	uint64_t p;

	if (!s->header_staged) {
		stage_header(v);
		return true;
	}
	if (s->init_cursor < v->npages) {
		stage_live_page(v, s->init_cursor++, STAGE_INITIAL);
		return true;
	}
	if (s->final) {
		p = bitmap_next(s->pending, v->npages, s->pend_cursor);
		if (p < v->npages) {
			bitmap_clear(s->pending, p);
			s->pend_cursor = p + 1;
			s->pend_left--;
			stage_final_page(v, p);
			return true;
		}
		if (!s->trailer_staged) {
			stage_trailer(v);
			return true;
		}
		return false;
	}
	p = bitmap_next(s->round, v->npages, s->round_cursor);
	if (p < v->npages) {
		bitmap_clear(s->round, p);
		s->round_cursor = p + 1;
		s->round_left--;
		stage_live_page(v, p, STAGE_DIRTY);
		return true;
	}
	return may_start_round && start_round(v);
}

ssize_t vram_save_read(struct vram *v, void *buf, size_t len)
{
	struct vram_save *s = v->save;
	uint8_t *out = buf;
	size_t done = 0;

	scan_wait(s);
	if (!s->active) {
		vram_err(v, "migration: save() in %s without a data session",
			 ferry_mig_state_name(v->state));
		return -EINVAL;
	}
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	while (done < len) {
		if (s->stage_off < s->stage_len) {
			size_t n = s->stage_len - s->stage_off;

			if (n > len - done)
				n = len - done;
			memcpy(out + done, s->stage + s->stage_off, n);
			s->stage_off += n;
			done += n;
			if (s->final)
				s->sc_emitted += n;
			continue;
		}
		/* Straight into @buf if any record fits (no copy of our own);
		 * the tail of a call goes through stage[]. */
		bool is_direct = len - done >= VRAM_PAGE_REC_LEN;

		s->rec = is_direct ? out + done : s->stage;
		/* A round starts only at the beginning of a call: a short read
		 * ends the round before it. */
		if (!stage_next(v, done == 0))
			break;
		if (is_direct) {
			done += s->rec_len;
			if (s->final)
				s->sc_emitted += s->rec_len;
		}
	}
	return (ssize_t)done;
}

/* The stop-copy set: a page that is dirty or was never sent is pending;
 * every other page is rehashed (holes excepted) to find mmap writes, and
 * pending if it differs from what was sent. Fixes the stop-copy size (hence
 * the zero test of every pending page). A pending page is fingerprinted as
 * it goes out (stage_final_page(): the copy is in cache then, so a
 * stop-copy-only session reads its VRAM once, not twice). */
static void final_scan(struct vram *v)
{
	struct vram_save *s = v->save;
	struct vram_dirty *d = &v->dirty;
	struct vram_hole_cursor holes;
	uint64_t bytes = 0, hashed = 0;
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	vram_hole_cursor_whole(v, &holes, s->resident); /* frozen: exact */
	for (uint64_t p = 0; p < v->npages; p++) {
		const uint8_t *page = v->mem + p * VRAM_PAGE_SIZE;
		bool hole = vram_page_is_hole(v, &holes, p);
		bool was_dirty = dirty_test_clear(d, p);
		bool send = !s->precopy || p >= s->init_cursor || was_dirty ||
			    bitmap_test(s->round, p);

		if (!send) {
			uint64_t h = hole ? d->zero_hash : page_fingerprint(page);

			hashed += !hole;
			send = h != d->hash[p];
			d->hash[p] = h;
		}
		if (send) {
			bool zero = hole || page_is_zero(page);

			bitmap_set(s->pending, p);
			if (zero)
				bitmap_set(s->pending_zero, p);
			s->pend_left++;
			bytes += zero ? VRAM_ZERO_REC_LEN : VRAM_PAGE_REC_LEN;
		}
	}
	memset(s->round, 0, bitmap_words(v->npages) * sizeof(uint64_t));
	s->round_left = 0;
	s->init_cursor = v->npages;
	s->pend_cursor = 0;
	s->final = true;
	s->sc_emitted = 0;
	s->sc_total = (s->stage_len - s->stage_off) + (s->header_staged ? 0 : VRAM_HDR_LEN) +
		      bytes + VRAM_TRAILER_LEN;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	vram_log(v, FERRY_LOG_DEBUG, "migration: stop-copy scan: %.2f ms, %llu of %llu pages hashed",
		 (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6,
		 (unsigned long long)hashed, (unsigned long long)v->npages);
	vram_info(v, "migration: stop-copy: %llu pages left, %llu bytes",
		  (unsigned long long)s->pend_left, (unsigned long long)s->sc_total);
}

static void *scan_main(void *arg)
{
	final_scan(arg);
	return NULL;
}

/*
 * The scan is the whole cost of the PRE_COPY_P2P -> STOP_COPY arc (3-12 ms
 * for a 64 MiB VRAM written here and there, on the 2-vCPU build VM), and
 * the arc is downtime. On a thread of its own it overlaps what the VMM does
 * next (the other devices' arcs, its last dirty pages, other devices'
 * stop-copy data); whatever needs its result waits for it (scan_wait()).
 */
void vram_save_finalize(struct vram *v)
{
	struct vram_save *s = v->save;
	int rc;

	rc = pthread_create(&s->scan_thread, NULL, scan_main, v);
	if (rc == 0) {
		s->is_scanning = true;
		return;
	}
	vram_warn(v, "migration: starting the stop-copy scan thread: %s; scanning here",
		  strerror(rc));
	final_scan(v);
}

int vram_save_precopy_info(struct vram *v, uint64_t *initial_bytes, uint64_t *dirty_bytes)
{
	struct vram_save *s = v->save;

	scan_wait(s);
	if (!s->active || s->final ||
	    (v->state != FERRY_MIG_PRE_COPY && v->state != FERRY_MIG_PRE_COPY_P2P)) {
		vram_err(v, "migration: precopy_info in %s", ferry_mig_state_name(v->state));
		return -EINVAL;
	}
	/* What the initial pass will produce if nothing writes meanwhile:
	 * page records for the pages that held data at the start, zero
	 * records for the rest (holes; and a data page that turns out all
	 * zero makes it smaller still). */
	uint64_t staged = s->stage_len - s->stage_off;
	uint64_t left = v->npages - s->init_cursor;
	uint64_t initial = s->init_data_left * VRAM_PAGE_REC_LEN +
			   (left - s->init_data_left) * VRAM_ZERO_REC_LEN;
	uint64_t dirty = (dirty_count_below(&v->dirty, s->init_cursor) + s->round_left) *
			 VRAM_PAGE_REC_LEN;

	if (!s->header_staged)
		initial += VRAM_HDR_LEN;
	if (s->stage_kind == STAGE_INITIAL)
		initial += staged;
	else
		dirty += staged;
	*initial_bytes = initial;
	*dirty_bytes = dirty;
	return 0;
}

uint64_t vram_save_stop_copy_size(struct vram *v)
{
	struct vram_save *s = v->save;
	uint64_t bytes = VRAM_HDR_LEN + VRAM_TRAILER_LEN;

	scan_wait(s);
	if (s->active && s->final)
		return s->sc_total - s->sc_emitted;
	if (s->active) {
		/* Pre-copy: what would remain if the device stopped now. */
		bytes = (s->stage_len - s->stage_off) + (s->header_staged ? 0 : VRAM_HDR_LEN) +
			VRAM_TRAILER_LEN;
		bytes += (v->npages - s->init_cursor + dirty_count_below(&v->dirty, s->init_cursor) +
			  s->round_left) * VRAM_PAGE_REC_LEN;
		return bytes;
	}
	if (v->state == FERRY_MIG_STOP) {
		/* Frozen: exactly what STOP -> STOP_COPY will produce. */
		struct vram_hole_cursor holes;

		vram_hole_cursor_whole(v, &holes, s->resident);
		for (uint64_t p = 0; p < v->npages; p++) {
			bool zero = vram_page_is_hole(v, &holes, p) ||
				    page_is_zero(v->mem + p * VRAM_PAGE_SIZE);

			bytes += zero ? VRAM_ZERO_REC_LEN : VRAM_PAGE_REC_LEN;
		}
		return bytes;
	}
	return bytes + v->npages * VRAM_PAGE_REC_LEN;
}
