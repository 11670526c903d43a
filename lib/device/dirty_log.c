/*
 * Dirty log: one atomic bitmap per logging range. See dirty_log.h for the
 * concepts and the concurrency contract.
 */
#include "device/dirty_log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util/checked.h"
#include "util/log.h"

struct log_range {
	uint64_t iova;
	uint64_t length;
	uint64_t npages;
	_Atomic uint64_t *bits; /* ceil(npages / 64) words; bit q = page q */
};

struct dirty_log {
	/* Written only under the dma_table write lock; the relaxed load in
	 * mark() is ordered by that lock, the atomic just keeps it race-free. */
	atomic_bool is_started;
	uint64_t page_size;
	unsigned page_shift;
	uint32_t nranges;
	struct log_range *ranges; /* sorted by iova, disjoint */
};

/* Mask of bits lo..hi of a word, 0 <= lo <= hi <= 63. */
static inline uint64_t bit_span(unsigned lo, unsigned hi)
{
	return (~0ull << lo) & (~0ull >> (63 - hi));
}

int dirty_log_create(struct dirty_log **out)
{
	struct dirty_log *l;

	if (!out)
		return -EINVAL;
	l = calloc(1, sizeof(*l));
	if (!l) {
		log_err("dirty log: out of memory");
		return -ENOMEM;
	}
	atomic_init(&l->is_started, false);
	*out = l;
	return 0;
}

void dirty_log_destroy(struct dirty_log *l)
{
	if (!l)
		return;
	dirty_log_stop(l);
	free(l);
}

static void free_ranges(struct log_range *r, uint32_t n)
{
	if (!r)
		return;
	for (uint32_t i = 0; i < n; i++)
		free((void *)r[i].bits);
	free(r);
}

static int cmp_range(const void *a, const void *b)
{
	const struct log_range *x = a, *y = b;

	return x->iova < y->iova ? -1 : x->iova > y->iova;
}

int dirty_log_start(struct dirty_log *l, uint64_t page_size,
		    const struct vfio_user_dma_logging_range *ranges, uint32_t n)
{
	struct log_range sorted[DIRTY_LOG_MAX_RANGES];
	struct log_range *r;
	uint64_t total_words = 0;

	if (atomic_load_explicit(&l->is_started, memory_order_relaxed)) {
		log_err("dirty log start: already started (page size 0x%" PRIx64 ")", l->page_size);
		return -EBUSY;
	}
	if (!is_pow2(page_size) || page_size < DIRTY_LOG_MIN_PAGE_SIZE ||
	    page_size > DIRTY_LOG_MAX_PAGE_SIZE) {
		log_err("dirty log start: page size 0x%" PRIx64 " not a power of two in "
			"[0x%llx, 0x%llx]", page_size, DIRTY_LOG_MIN_PAGE_SIZE, DIRTY_LOG_MAX_PAGE_SIZE);
		return -EINVAL;
	}
	if (n > DIRTY_LOG_MAX_RANGES) {
		log_err("dirty log start: %" PRIu32 " ranges, at most %u", n, DIRTY_LOG_MAX_RANGES);
		return -E2BIG;
	}
	if (n && !ranges) {
		log_err("dirty log start: %" PRIu32 " ranges but no array", n);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t iova = ranges[i].iova, len = ranges[i].length;

		if (!len || ((iova | len) & (page_size - 1))) {
			log_err("dirty log start: range %" PRIu32 " [0x%" PRIx64 ", +0x%" PRIx64
				") empty or not aligned to page size 0x%" PRIx64, i, iova, len, page_size);
			return -EINVAL;
		}
		if (len > UINT64_MAX - iova) {
			log_err("dirty log start: range %" PRIu32 " [0x%" PRIx64 ", +0x%" PRIx64
				") wraps", i, iova, len);
			return -EOVERFLOW;
		}
		sorted[i] = (struct log_range){ .iova = iova, .length = len, .npages = len / page_size };
		/* Each range is < 2^64 bytes, so its word count is < 2^52: no wrap. */
		total_words += (sorted[i].npages + 63) / 64;
		if (total_words > DIRTY_LOG_MAX_BITMAP / sizeof(uint64_t)) {
			log_err("dirty log start: %" PRIu32 " ranges up to [0x%" PRIx64 ", +0x%" PRIx64
				") need more than %llu bitmap bytes at page size 0x%" PRIx64
				" (use a larger page size)", n, iova, len, DIRTY_LOG_MAX_BITMAP, page_size);
			return -E2BIG;
		}
	}
	qsort(sorted, n, sizeof(sorted[0]), cmp_range);
	for (uint32_t i = 1; i < n; i++) {
		if (ranges_overlap(sorted[i - 1].iova, sorted[i - 1].length, sorted[i].iova,
				   sorted[i].length)) {
			log_err("dirty log start: ranges [0x%" PRIx64 ", +0x%" PRIx64 ") and [0x%" PRIx64
				", +0x%" PRIx64 ") overlap", sorted[i - 1].iova, sorted[i - 1].length,
				sorted[i].iova, sorted[i].length);
			return -EINVAL;
		}
	}

	r = calloc(n ? n : 1, sizeof(*r));
	if (!r)
		goto out_nomem;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t words = (sorted[i].npages + 63) / 64;

		r[i] = sorted[i];
		if (words > SIZE_MAX / sizeof(uint64_t))
			goto out_ranges;
		r[i].bits = calloc((size_t)words, sizeof(uint64_t));
		if (!r[i].bits)
			goto out_ranges;
	}
	l->ranges = r;
	l->nranges = n;
	l->page_size = page_size;
	l->page_shift = (unsigned)__builtin_ctzll(page_size);
	atomic_store_explicit(&l->is_started, true, memory_order_release);
	return 0;

out_ranges:
	free_ranges(r, n);
out_nomem:
	log_err("dirty log start: out of memory for %" PRIu32 " bitmaps at page size 0x%" PRIx64,
		n, page_size);
	return -ENOMEM;
}

void dirty_log_stop(struct dirty_log *l)
{
	if (!atomic_load_explicit(&l->is_started, memory_order_relaxed))
		return;
	atomic_store_explicit(&l->is_started, false, memory_order_relaxed);
	free_ranges(l->ranges, l->nranges);
	l->ranges = NULL;
	l->nranges = 0;
	l->page_size = 0;
	l->page_shift = 0;
}

bool dirty_log_is_started(const struct dirty_log *l)
{
	return atomic_load_explicit(&l->is_started, memory_order_relaxed);
}

uint64_t dirty_log_page_size(const struct dirty_log *l)
{
	return dirty_log_is_started(l) ? l->page_size : 0;
}

/* Index of the last range starting at or below @iova, or 0 if none does. */
static uint32_t range_at_or_below(const struct dirty_log *l, uint64_t iova)
{
	uint32_t lo = 0, hi = l->nranges;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (l->ranges[mid].iova <= iova)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo ? lo - 1 : 0;
}

/* Sets tracking pages first..last (inclusive) of one bitmap. Always a
 * fetch_or, even when the bits look set already, on purpose: skipping on a
 * plain load would not order the caller's data stores before a concurrent
 * report's exchange (x86 lets a load pass earlier stores), so the report
 * could take the bit while the new data is still invisible, and the write
 * would be lost. */
static void set_pages(_Atomic uint64_t *bits, uint64_t first, uint64_t last)
{
	uint64_t w = first / 64, wl = last / 64;

	if (w == wl) {
		atomic_fetch_or_explicit(&bits[w], bit_span(first % 64, last % 64),
					 memory_order_release);
		return;
	}
	atomic_fetch_or_explicit(&bits[w], bit_span(first % 64, 63), memory_order_release);
	for (w++; w < wl; w++)
		atomic_fetch_or_explicit(&bits[w], ~0ull, memory_order_release);
	atomic_fetch_or_explicit(&bits[wl], bit_span(0, last % 64), memory_order_release);
}

void dirty_log_mark(struct dirty_log *l, uint64_t iova, uint64_t len)
{
	uint64_t end;

	if (!atomic_load_explicit(&l->is_started, memory_order_relaxed) || !len)
		return;
	end = len > UINT64_MAX - iova ? UINT64_MAX : iova + len;
	for (uint32_t i = range_at_or_below(l, iova); i < l->nranges; i++) {
		const struct log_range *r = &l->ranges[i];
		uint64_t rend = r->iova + r->length;
		uint64_t a = iova > r->iova ? iova : r->iova;
		uint64_t b = end < rend ? end : rend;

		if (r->iova >= end)
			break;
		if (a >= b)
			continue;
		set_pages(r->bits, (a - r->iova) >> l->page_shift, (b - 1 - r->iova) >> l->page_shift);
	}
}

uint64_t dirty_log_bitmap_size(uint64_t length, uint64_t page_size)
{
	uint64_t pages, words;

	if (!length || !page_size)
		return 0;
	pages = length / page_size + (length % page_size != 0);
	words = pages / 64 + (pages % 64 != 0);
	if (words > UINT64_MAX / 8)
		return 0;
	return words * 8;
}

/*
 * Takes the bits @read of one tracking word, clearing those in @clear (a
 * subset of @read). A word with none of @read set is left alone (no write,
 * no cache-line bounce): a mark racing with that load lands in the next
 * report. Acquire pairs with mark()'s release.
 */
static uint64_t take_word(_Atomic uint64_t *w, uint64_t read, uint64_t clear)
{
	uint64_t v = atomic_load_explicit(w, memory_order_relaxed);

	if (!(v & read))
		return 0;
	if (clear == ~0ull)
		v = atomic_exchange_explicit(w, 0, memory_order_acquire);
	else if (clear)
		v = atomic_fetch_and_explicit(w, ~clear, memory_order_acquire);
	else
		v = atomic_load_explicit(w, memory_order_acquire);
	return v & read;
}

/* @n (1..64) tracking bits from page @q, as bits 0..n-1; the first @nclear
 * of them are cleared. Spans at most two words. */
static uint64_t take_bits(_Atomic uint64_t *bits, uint64_t q, unsigned n, unsigned nclear)
{
	uint64_t read = n == 64 ? ~0ull : (1ull << n) - 1;
	uint64_t clear = nclear == 64 ? ~0ull : (1ull << nclear) - 1;
	uint64_t w = q / 64;
	unsigned off = q % 64;
	uint64_t v = take_word(&bits[w], read << off, clear << off) >> off;

	if (off && off + n > 64)
		v |= take_word(&bits[w + 1], read >> (64 - off), clear >> (64 - off)) << (64 - off);
	return v;
}

/* Sets output bits p0..p1 (inclusive) of a caller's (non-shared) bitmap. */
static void set_out(uint64_t *out, uint64_t p0, uint64_t p1)
{
	uint64_t w = p0 / 64, wl = p1 / 64;

	if (w == wl) {
		out[w] |= bit_span(p0 % 64, p1 % 64);
		return;
	}
	out[w] |= bit_span(p0 % 64, 63);
	for (w++; w < wl; w++)
		out[w] = ~0ull;
	out[wl] |= bit_span(0, p1 % 64);
}

/*
 * Output words that are whole tracking words: when q0 is a multiple of 64,
 * every output word but a partial last one (fewer than 64 bits, or holding
 * the tracking page only partly reported) is tracking word q0 / 64 + w.
 * Those go through the tight loops below (a relaxed load, and an exchange
 * only when non-zero: about a memcpy); the rest through take_bits().
 */
static uint64_t whole_words(uint64_t q0, uint64_t nout, bool tail_partial)
{
	if (q0 % 64)
		return 0;
	return nout / 64 - (tail_partial && nout % 64 == 0);
}

static inline uint64_t take_whole(_Atomic uint64_t *w)
{
	uint64_t v = atomic_load_explicit(w, memory_order_relaxed);

	return v ? atomic_exchange_explicit(w, 0, memory_order_acquire) : 0;
}

/* Same page size, iova on a tracking page boundary: output bit p is
 * tracking bit q0 + p, so copy (and clear) 64 bits at a time. */
static void report_same(const struct log_range *r, uint64_t q0, uint64_t nout,
			bool tail_partial, uint64_t *out)
{
	const uint64_t whole = whole_words(q0, nout, tail_partial);
	_Atomic uint64_t *src = r->bits + q0 / 64;
	uint64_t w;

	for (w = 0; w < whole; w++)
		out[w] = take_whole(&src[w]);
	for (; w * 64 < nout; w++) {
		unsigned n = nout - w * 64 < 64 ? (unsigned)(nout - w * 64) : 64;
		bool last = (w + 1) * 64 >= nout;

		out[w] = take_bits(r->bits, q0 + w * 64, n, last && tail_partial ? n - 1 : n);
	}
}

/*
 * Any page sizes and alignment: walk the dirty tracking pages of [iova, end),
 * a part of range @r, and OR in the output bits each overlaps; output bit p
 * covers [origin + p * rps, +rps) (origin <= iova: the start of the whole
 * report, which may span several ranges). When the output is coarser, the
 * tracking pages that can only feed an output bit already set are skipped,
 * so the cost is per word plus per output bit set, not per dirty page.
 */
static void report_general(const struct dirty_log *l, const struct log_range *r, uint64_t origin,
			   uint64_t iova, uint64_t end, unsigned rshift, uint64_t nout,
			   uint64_t *out)
{
	const unsigned tshift = l->page_shift;
	const uint64_t tmask = l->page_size - 1;
	const uint64_t q_first = (iova - r->iova) >> tshift;
	const uint64_t q_last = (end - 1 - r->iova) >> tshift;
	const bool head_partial = (iova - r->iova) & tmask;
	const bool tail_partial = (end - r->iova) & tmask;

	for (uint64_t w = q_first / 64; w <= q_last / 64; w++) {
		unsigned lo = w == q_first / 64 ? q_first % 64 : 0;
		unsigned hi = w == q_last / 64 ? q_last % 64 : 63;
		uint64_t read = bit_span(lo, hi), clear = read, v;

		if (head_partial && w == q_first / 64)
			clear &= ~(1ull << (q_first % 64));
		if (tail_partial && w == q_last / 64)
			clear &= ~(1ull << (q_last % 64));
		v = take_word(&r->bits[w], read, clear);

		while (v) {
			uint64_t q = w * 64 + (unsigned)__builtin_ctzll(v);
			uint64_t pstart = r->iova + (q << tshift);
			uint64_t a = pstart > iova ? pstart : iova;
			uint64_t b = end - pstart > l->page_size ? pstart + l->page_size : end;
			uint64_t p1 = (b - 1 - origin) >> rshift, qn;

			set_out(out, (a - origin) >> rshift, p1);
			v &= v - 1;
			if (p1 + 1 >= nout) {
				v = 0; /* later pages only feed the last bit, already set */
				break;
			}
			/* Skip pages wholly before output page p1 + 1; (p1 + 1) << rshift
			 * < the report's length, so no overflow; that page starts after
			 * b - 1 >= r->iova. */
			qn = (origin + ((p1 + 1) << rshift) - r->iova) >> tshift;
			if (qn >= (w + 1) * 64)
				v = 0;
			else if (qn > w * 64)
				v &= ~0ull << (qn - w * 64);
		}
	}
}

/*
 * The ranges covering [iova, end) without a gap: returns the index of the
 * first and sets *@n to how many there are, or returns -1 (with *@gap the
 * first address not covered).
 */
static int64_t covering_ranges(const struct dirty_log *l, uint64_t iova, uint64_t end,
			       uint32_t *n, uint64_t *gap)
{
	uint32_t first, i;
	uint64_t pos = iova;

	*gap = iova;
	if (!l->nranges)
		return -1;
	first = range_at_or_below(l, iova);
	for (i = first; i < l->nranges && pos < end; i++) {
		const struct log_range *r = &l->ranges[i];

		if (r->iova > pos || r->iova + r->length <= pos) {
			*gap = pos;
			return -1;
		}
		pos = r->iova + r->length;
	}
	if (pos < end) {
		*gap = pos;
		return -1;
	}
	*n = i - first;
	return first;
}

/* The checks both reports share; on success the covering ranges. */
static int report_check(const struct dirty_log *l, uint64_t iova, uint64_t length,
			uint64_t page_size, const void *out, const struct log_range **r,
			uint32_t *n)
{
	const char *why = NULL;
	uint64_t gap = 0;
	int64_t first;

	if (!atomic_load_explicit(&l->is_started, memory_order_relaxed))
		why = "logging not started";
	else if (!is_pow2(page_size) || page_size < DIRTY_LOG_MIN_PAGE_SIZE)
		why = "page size not a power of two >= 4096";
	else if (!length)
		why = "empty range";
	else if (length > UINT64_MAX - iova)
		why = "range wraps";
	else if (!out)
		why = "no bitmap";
	if (why) {
		log_err("dirty log report [0x%" PRIx64 ", +0x%" PRIx64 ") page size 0x%" PRIx64 ": %s",
			iova, length, page_size, why);
		return -EINVAL;
	}
	first = covering_ranges(l, iova, iova + length, n, &gap);
	if (first < 0) {
		log_err("dirty log report [0x%" PRIx64 ", +0x%" PRIx64 ") page size 0x%" PRIx64
			": 0x%" PRIx64 " is not in any logging range", iova, length, page_size, gap);
		return -EINVAL;
	}
	*r = &l->ranges[first];
	return 0;
}

/* Whether the one-word-per-word path applies: one range, same page size,
 * iova on a tracking page boundary. */
static bool is_word_path(const struct dirty_log *l, const struct log_range *r, uint32_t n,
			 uint64_t iova, uint64_t page_size)
{
	return n == 1 && page_size == l->page_size && !((iova - r->iova) & (page_size - 1));
}

/* Any other case: every output word written, ORed range by range. */
static void report_ranges(const struct dirty_log *l, const struct log_range *r, uint32_t n,
			  uint64_t iova, uint64_t end, unsigned rshift, uint64_t nout,
			  uint64_t *out)
{
	memset(out, 0, (size_t)dirty_log_bitmap_size(end - iova, (uint64_t)1 << rshift));
	for (uint32_t i = 0; i < n; i++, r++) {
		uint64_t a = iova > r->iova ? iova : r->iova;
		uint64_t b = end < r->iova + r->length ? end : r->iova + r->length;

		report_general(l, r, iova, a, b, rshift, nout, out);
	}
}

int dirty_log_report(struct dirty_log *l, uint64_t iova, uint64_t length, uint64_t page_size,
		     uint64_t *out)
{
	const struct log_range *r = NULL;
	uint32_t n = 0;
	unsigned rshift;
	uint64_t nout, end = iova + length;
	int ret = report_check(l, iova, length, page_size, out, &r, &n);

	if (ret < 0)
		return ret;
	rshift = (unsigned)__builtin_ctzll(page_size);
	nout = ((length - 1) >> rshift) + 1;
	if (is_word_path(l, r, n, iova, page_size)) /* writes every output word itself */
		report_same(r, (iova - r->iova) >> rshift, nout, (end - r->iova) & (page_size - 1),
			    out);
	else
		report_ranges(l, r, n, iova, end, rshift, nout, out);
	return 0;
}

int64_t dirty_log_report_sparse(struct dirty_log *l, uint64_t iova, uint64_t length,
				uint64_t page_size, uint64_t *summary, uint64_t *out)
{
	const struct log_range *r = NULL;
	uint32_t n = 0;
	unsigned rshift;
	uint64_t nout, words, end = iova + length;
	int64_t nonzero = 0;
	int ret = report_check(l, iova, length, page_size, out, &r, &n);

	if (ret < 0)
		return ret;
	if (!summary) {
		log_err("dirty log report [0x%" PRIx64 ", +0x%" PRIx64 "): no summary", iova, length);
		return -EINVAL;
	}
	rshift = (unsigned)__builtin_ctzll(page_size);
	nout = ((length - 1) >> rshift) + 1;
	words = (nout + 63) / 64;
	memset(summary, 0, (size_t)((words + 63) / 64) * sizeof(uint64_t));
	if (is_word_path(l, r, n, iova, page_size)) {
		const uint64_t q0 = (iova - r->iova) >> rshift;
		const bool tail_partial = (end - r->iova) & (page_size - 1);
		const uint64_t whole = whole_words(q0, nout, tail_partial);
		_Atomic uint64_t *src = r->bits + q0 / 64;
		uint64_t w;

		for (w = 0; w < whole; w++) {
			uint64_t v = take_whole(&src[w]);
			if (v) {
				out[nonzero++] = v;
				summary[w / 64] |= 1ull << (w % 64);
			}
		}
		for (; w < words; w++) {
			unsigned k = nout - w * 64 < 64 ? (unsigned)(nout - w * 64) : 64;
			uint64_t v = take_bits(r->bits, q0 + w * 64, k,
					       w + 1 == words && tail_partial ? k - 1 : k);
			if (v) {
				out[nonzero++] = v;
				summary[w / 64] |= 1ull << (w % 64);
			}
		}
		return nonzero;
	}
	/* Rare (other page size, unaligned, several ranges): build the whole
	 * bitmap, then pack it in place (nonzero <= w: nothing unread is
	 * overwritten). */
	report_ranges(l, r, n, iova, end, rshift, nout, out);
	for (uint64_t w = 0; w < words; w++) {
		if (out[w]) {
			out[nonzero++] = out[w];
			summary[w / 64] |= 1ull << (w % 64);
		}
	}
	return nonzero;
}
