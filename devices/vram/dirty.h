/*
 * The device's own dirty tracking for pre-copy (scheme: regs.h, "Migration
 * and dirty tracking").
 *
 * Two pieces per VRAM page:
 *  - a bit in an atomic bitmap, set by every device-side writer (engine
 *    thread, trapped BAR2 writes) after its store, and cleared by the sender
 *    before it copies the page: a write that races with the copy leaves the
 *    bit set, so the page is sent again;
 *  - a 64-bit fingerprint (hash.h) of the bytes last sent (source) or
 *    received (destination). Rehashing a page and comparing finds host
 *    writes made through the client's mmap, which set no bit.
 *
 * Threads: dirty_mark() from any thread; everything else from the thread
 * that owns the migration session (the message thread).
 */
#ifndef FERRY_DEV_VRAM_DIRTY_H
#define FERRY_DEV_VRAM_DIRTY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vram_dirty {
	uint64_t npages;
	size_t nwords;
	_Atomic uint64_t *bits;
	uint64_t *hash;     /* per page: fingerprint of the bytes last sent or loaded */
	uint64_t zero_hash; /* fingerprint of an all-zero page */
};

/* Allocates the bitmap (all clean) and the fingerprints (all zero_hash).
 * Returns 0 or -ENOMEM; dirty_fini() is safe afterwards either way. */
int dirty_init(struct vram_dirty *d, uint64_t npages);
void dirty_fini(struct vram_dirty *d);

/* Marks @page dirty with release order: call after the store to it. */
void dirty_mark(struct vram_dirty *d, uint64_t page);
/* Marks every page touched by bytes [off, off + len) of the VRAM. */
void dirty_mark_bytes(struct vram_dirty *d, uint64_t off, uint64_t len);
/* Clears @page's bit (acquire) and says whether it was set. */
bool dirty_test_clear(struct vram_dirty *d, uint64_t page);
bool dirty_test(const struct vram_dirty *d, uint64_t page);
/* Takes and clears word @w (pages 64w .. 64w + 63). */
uint64_t dirty_take_word(struct vram_dirty *d, size_t w);
void dirty_clear_all(struct vram_dirty *d);
/* Dirty pages among [0, @limit). */
uint64_t dirty_count_below(const struct vram_dirty *d, uint64_t limit);

/* Fingerprint of one VRAM_PAGE_SIZE page. */
uint64_t page_fingerprint(const void *page);
bool page_is_zero(const void *page);

#endif
