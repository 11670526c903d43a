/*
 * Producing the stream (save.h, format in stream.h).
 *
 * One record at a time is built in a staging buffer and handed out across
 * as many save() calls as the caller's buffer sizes need; the page bytes are
 * copied into the staging buffer first, so the fingerprint and the zero-page
 * decision are taken on exactly the bytes that go out, even while the engine
 * or the host keeps writing the page. Records are added to the stream crc
 * when staged; a record is staged only once the previous one is drained, so
 * at the trailer the crc covers everything before it.
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
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "hash.h"
#include "stream.h"
#include "vram.h"

/* Pages rehashed per round start to find host writes made through the
 * mmap. vram_hash64 measured 3.3-6 GB/s on the 2-core build machine (under
 * load), so 8192 pages (32 MiB) cost 5-10 ms per round: small beside the
 * round's own copying, and a 1 GiB VRAM is covered every 32 rounds. Holes
 * cost no hashing at all. */
#define VERIFY_SLICE 8192u

enum stage_kind {
	STAGE_INITIAL, /* header or an initial-pass page: counts in initial_bytes */
	STAGE_DIRTY,   /* a round's marker or page: counts in dirty_bytes */
	STAGE_FINAL,   /* stop-copy */
};

struct vram_save {
	bool active, precopy, final, trailer_staged;
	bool header_staged;
	uint64_t init_cursor; /* initial pass: pages below were staged */
	uint64_t *round;      /* pages of the current round still to send */
	uint64_t round_cursor, round_left, round_no;
	uint64_t verify_cursor;
	struct vram_hole_cursor holes; /* for the initial pass */
	uint64_t *pending, *pending_zero; /* stop-copy: pages to send, and which are zero */
	uint64_t pend_cursor, pend_left;
	uint8_t stage[VRAM_PAGE_REC_LEN];
	size_t stage_len, stage_off;
	enum stage_kind stage_kind;
	uint32_t crc;
	uint64_t page_records;
	uint64_t digest;
	uint64_t sc_total, sc_emitted; /* stop-copy bytes: fixed at finalize, and read since */
};

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
	if (!s->round || !s->pending || !s->pending_zero)
		return -ENOMEM;
	return 0;
}

void vram_save_destroy(struct vram *v)
{
	struct vram_save *s = v->save;

	if (!s)
		return;
	free(s->round);
	free(s->pending);
	free(s->pending_zero);
	free(s);
	v->save = NULL;
}

void vram_save_begin(struct vram *v, bool precopy)
{
	struct vram_save *s = v->save;
	size_t bytes = bitmap_words(v->npages) * sizeof(uint64_t);
	uint64_t *round = s->round, *pending = s->pending, *pending_zero = s->pending_zero;

	memset(round, 0, bytes);
	memset(pending, 0, bytes);
	memset(pending_zero, 0, bytes);
	memset(s, 0, sizeof(*s));
	s->round = round;
	s->pending = pending;
	s->pending_zero = pending_zero;
	s->active = true;
	s->precopy = precopy;
	/* The initial pass (or the finalize of a stop-copy-only session) covers
	 * every page: older marks mean nothing. */
	dirty_clear_all(&v->dirty);
	vram_info(v, "migration: save session started (%s)", precopy ? "pre-copy" : "stop-copy");
}

void vram_save_end(struct vram *v)
{
	struct vram_save *s = v->save;

	if (s->active)
		vram_info(v, "migration: save session ended (%llu page records, %llu rounds)",
			  (unsigned long long)s->page_records, (unsigned long long)s->round_no);
	s->active = false;
	s->final = false;
}

static void stage_done(struct vram_save *s, size_t len, enum stage_kind kind)
{
	s->stage_len = len;
	s->stage_off = 0;
	s->stage_kind = kind;
	s->crc = vram_crc32(s->crc, s->stage, len);
}

static void stage_header(struct vram *v)
{
	struct vram_stream_header h = { .vram_size = v->size, .npages = v->npages };

	vram_regs_snapshot(v, &h.regs);
	vram_header_encode(v->save->stage, &h);
	v->save->header_staged = true;
	stage_done(v->save, VRAM_HDR_LEN, STAGE_INITIAL);
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
	uint8_t *data = s->stage + VRAM_REC_LEN;
	bool was_dirty = dirty_test_clear(&v->dirty, p);

	s->page_records++;
	if (kind == STAGE_INITIAL && !was_dirty && vram_page_is_hole(v, &s->holes, p)) {
		v->dirty.hash[p] = v->dirty.zero_hash;
		vram_rec_encode(s->stage, VRAM_REC_ZERO, 0, p);
		stage_done(s, VRAM_ZERO_REC_LEN, kind);
		return;
	}
	memcpy(data, v->mem + p * VRAM_PAGE_SIZE, VRAM_PAGE_SIZE);
	if (page_is_zero(data)) {
		v->dirty.hash[p] = v->dirty.zero_hash;
		vram_rec_encode(s->stage, VRAM_REC_ZERO, 0, p);
		stage_done(s, VRAM_ZERO_REC_LEN, kind);
	} else {
		v->dirty.hash[p] = page_fingerprint(data);
		vram_rec_encode(s->stage, VRAM_REC_PAGE, 0, p);
		stage_done(s, VRAM_PAGE_REC_LEN, kind);
	}
}

/* Stop-copy: the device is frozen; fingerprint and zero-ness were fixed by
 * vram_save_finalize(), so the size it promised is exactly what goes out. */
static void stage_final_page(struct vram *v, uint64_t p)
{
	struct vram_save *s = v->save;

	s->page_records++;
	if (bitmap_test(s->pending_zero, p)) {
		vram_rec_encode(s->stage, VRAM_REC_ZERO, 0, p);
		stage_done(s, VRAM_ZERO_REC_LEN, STAGE_FINAL);
	} else {
		memcpy(s->stage + VRAM_REC_LEN, v->mem + p * VRAM_PAGE_SIZE, VRAM_PAGE_SIZE);
		vram_rec_encode(s->stage, VRAM_REC_PAGE, 0, p);
		stage_done(s, VRAM_PAGE_REC_LEN, STAGE_FINAL);
	}
}

static void stage_trailer(struct vram *v)
{
	struct vram_save *s = v->save;
	struct vram_trailer t = {
		.page_records = s->page_records,
		.vram_digest = s->digest,
		.stream_crc = s->crc,
	};

	vram_regs_snapshot(v, &t.regs);
	vram_trailer_encode(s->stage, &t);
	s->trailer_staged = true;
	/* Not through stage_done: the trailer is not part of its own crc. */
	s->stage_len = VRAM_TRAILER_LEN;
	s->stage_off = 0;
	s->stage_kind = STAGE_FINAL;
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
	vram_rec_encode(s->stage, VRAM_REC_ROUND, 0, s->round_no);
	stage_done(s, VRAM_REC_LEN, STAGE_DIRTY);
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
		/* A round starts only at the beginning of a call: a short read
		 * ends the round before it. */
		if (!stage_next(v, done == 0))
			break;
	}
	return (ssize_t)done;
}

void vram_save_finalize(struct vram *v)
{
	struct vram_save *s = v->save;
	struct vram_dirty *d = &v->dirty;
	struct vram_hole_cursor holes = { 0 }; /* frozen: exact */
	uint64_t bytes = 0;

	for (uint64_t p = 0; p < v->npages; p++) {
		const uint8_t *page = v->mem + p * VRAM_PAGE_SIZE;
		bool hole = vram_page_is_hole(v, &holes, p);
		uint64_t h = hole ? d->zero_hash : page_fingerprint(page);
		bool zero = hole || (h == d->zero_hash && page_is_zero(page));
		bool was_dirty = dirty_test_clear(d, p);
		bool send = !s->precopy || p >= s->init_cursor || was_dirty ||
			    bitmap_test(s->round, p) || h != d->hash[p];

		d->hash[p] = h;
		if (send) {
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
	s->digest = vram_hash64(d->hash, v->npages * sizeof(uint64_t));
	s->final = true;
	s->sc_emitted = 0;
	s->sc_total = (s->stage_len - s->stage_off) + (s->header_staged ? 0 : VRAM_HDR_LEN) +
		      bytes + VRAM_TRAILER_LEN;
	vram_info(v, "migration: stop-copy: %llu pages left, %llu bytes",
		  (unsigned long long)s->pend_left, (unsigned long long)s->sc_total);
}

int vram_save_precopy_info(struct vram *v, uint64_t *initial_bytes, uint64_t *dirty_bytes)
{
	struct vram_save *s = v->save;

	if (!s->active || s->final ||
	    (v->state != FERRY_MIG_PRE_COPY && v->state != FERRY_MIG_PRE_COPY_P2P)) {
		vram_err(v, "migration: precopy_info in %s", ferry_mig_state_name(v->state));
		return -EINVAL;
	}
	uint64_t staged = s->stage_len - s->stage_off;
	uint64_t initial = (v->npages - s->init_cursor) * VRAM_PAGE_REC_LEN;
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
		struct vram_hole_cursor holes = { 0 };

		for (uint64_t p = 0; p < v->npages; p++) {
			bool zero = vram_page_is_hole(v, &holes, p) ||
				    page_is_zero(v->mem + p * VRAM_PAGE_SIZE);

			bytes += zero ? VRAM_ZERO_REC_LEN : VRAM_PAGE_REC_LEN;
		}
		return bytes;
	}
	return bytes + v->npages * VRAM_PAGE_REC_LEN;
}
