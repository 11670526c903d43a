/* The dirty bitmap and page fingerprints of dirty.h. */
#include "dirty.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "regs.h"

int dirty_init(struct vram_dirty *d, uint64_t npages)
{
	memset(d, 0, sizeof(*d));
	if (npages == 0 || npages > SIZE_MAX / sizeof(uint64_t))
		return -EINVAL;
	d->npages = npages;
	d->nwords = (size_t)((npages + 63) / 64);
	d->bits = calloc(d->nwords, sizeof(*d->bits));
	d->hash = malloc((size_t)npages * sizeof(*d->hash));
	if (!d->bits || !d->hash)
		return -ENOMEM;
	for (size_t w = 0; w < d->nwords; w++)
		atomic_init(&d->bits[w], 0);

	static const uint64_t zero[VRAM_PAGE_SIZE / sizeof(uint64_t)];
	d->zero_hash = page_fingerprint(zero);
	for (uint64_t p = 0; p < npages; p++)
		d->hash[p] = d->zero_hash;
	return 0;
}

void dirty_fini(struct vram_dirty *d)
{
	free(d->bits);
	free(d->hash);
	memset(d, 0, sizeof(*d));
}

void dirty_mark(struct vram_dirty *d, uint64_t page)
{
	if (page < d->npages)
		atomic_fetch_or_explicit(&d->bits[page / 64], 1ull << (page % 64),
					 memory_order_release);
}

void dirty_mark_bytes(struct vram_dirty *d, uint64_t off, uint64_t len)
{
	if (len == 0)
		return;
	uint64_t first = off / VRAM_PAGE_SIZE;
	uint64_t last = (off + (len - 1)) / VRAM_PAGE_SIZE; /* caller checked the range */

	for (uint64_t p = first; p <= last && p < d->npages; p++)
		dirty_mark(d, p);
}

bool dirty_test_clear(struct vram_dirty *d, uint64_t page)
{
	uint64_t bit = 1ull << (page % 64);

	return atomic_fetch_and_explicit(&d->bits[page / 64], ~bit, memory_order_acquire) & bit;
}

bool dirty_test(const struct vram_dirty *d, uint64_t page)
{
	return (atomic_load_explicit(&d->bits[page / 64], memory_order_acquire) >> (page % 64)) & 1;
}

uint64_t dirty_take_word(struct vram_dirty *d, size_t w)
{
	return atomic_exchange_explicit(&d->bits[w], 0, memory_order_acquire);
}

void dirty_clear_all(struct vram_dirty *d)
{
	for (size_t w = 0; w < d->nwords; w++)
		atomic_store_explicit(&d->bits[w], 0, memory_order_relaxed);
}

uint64_t dirty_count_below(const struct vram_dirty *d, uint64_t limit)
{
	uint64_t n = 0;

	if (limit > d->npages)
		limit = d->npages;
	for (size_t w = 0; w < limit / 64; w++)
		n += (uint64_t)__builtin_popcountll(
			atomic_load_explicit(&d->bits[w], memory_order_relaxed));
	if (limit % 64) {
		uint64_t word = atomic_load_explicit(&d->bits[limit / 64], memory_order_relaxed);

		n += (uint64_t)__builtin_popcountll(word & ((1ull << (limit % 64)) - 1));
	}
	return n;
}

uint64_t page_fingerprint(const void *page)
{
	return vram_hash64(page, VRAM_PAGE_SIZE);
}

bool page_is_zero(const void *page)
{
	const unsigned char *p = page;
	uint64_t acc = 0;

	/* The first cache line answers for most pages with data, without
	 * reading the rest (the stop-copy scan tests pages it does not hash:
	 * those it will copy anyway). */
	for (size_t i = 0; i < 64; i += sizeof(uint64_t)) {
		uint64_t w;

		memcpy(&w, p + i, sizeof(w));
		acc |= w;
	}
	if (acc)
		return false;
	/* Then a whole-page OR: branch-free, vectorises; pages are rarely
	 * half zero. */
	for (size_t i = 64; i < VRAM_PAGE_SIZE; i += sizeof(uint64_t)) {
		uint64_t w;

		memcpy(&w, p + i, sizeof(w));
		acc |= w;
	}
	return acc == 0;
}
