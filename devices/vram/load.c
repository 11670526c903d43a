/*
 * Parsing the stream (load.h, format in stream.h): a small state machine
 * fed by arbitrary chunks. Fixed-size parts (header, record headers, the
 * trailer) are gathered in an accumulator; page data goes straight into the
 * VRAM page the record named, which was range-checked first. Each page is
 * fingerprinted when its last byte is in, so at the trailer the digest of
 * the fingerprints says whether the VRAM equals the source's.
 */
#include "load.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bitmap.h"
#include "hash.h"
#include "stream.h"
#include "vram.h"
#include "util/crc32.h"
#include "util/prefault.h" /* MADV_POPULATE_WRITE where the libc lacks it */

enum load_state {
	L_IDLE,    /* no session */
	L_HEADER,  /* gathering the header */
	L_REC,     /* gathering a record header */
	L_PAGE,    /* copying a page's data */
	L_TRAILER, /* gathering the trailer body */
	L_DONE,    /* trailer checked: nothing may follow */
	L_FAILED,  /* refused: sticky until the next session */
};

static const char *const state_names[] = {
	[L_IDLE] = "idle", [L_HEADER] = "header", [L_REC] = "record header",
	[L_PAGE] = "page data", [L_TRAILER] = "trailer", [L_DONE] = "done",
	[L_FAILED] = "failed",
};

struct vram_load {
	enum load_state st;
	uint8_t acc[VRAM_TRAILER_LEN]; /* the largest fixed part */
	size_t acc_len;
	uint64_t page;     /* L_PAGE: the page being filled */
	size_t page_off;   /* and how much of it is in */
	uint32_t crc;      /* of the stream bytes before the trailer */
	uint64_t *received;
	uint64_t nreceived, page_records, last_round;
	uint64_t offset;   /* stream bytes consumed: for log lines */
	struct vram_trailer trailer;
	pthread_t populate;  /* makes VRAM resident while the stream arrives */
	bool has_populate;
};

_Static_assert(VRAM_HDR_LEN <= VRAM_TRAILER_LEN && VRAM_REC_LEN <= VRAM_TRAILER_LEN,
	       "the accumulator holds every fixed part");

/*
 * A session's stream rewrites VRAM, and a fresh VRAM is all holes: every
 * page it carries would take a page fault first (12-19 us each on the
 * shadow-paged build VM, most of what loading a stop-copy part cost).
 * MADV_POPULATE_WRITE allocates and maps all of VRAM in one call (1.5 us a
 * page) without touching contents, so it can run while pages land. VRAM
 * is resident on a real card anyway; the price is that its zero pages are
 * data afterwards, which a later save reads instead of skipping.
 */
static void *populate_main(void *arg)
{
	struct vram *v = arg;

	if (madvise(v->mem, v->size, MADV_POPULATE_WRITE) < 0)
		vram_info(v, "migration: cannot populate VRAM ahead of the stream: %s",
			  strerror(errno));
	return NULL;
}

static void populate_join(struct vram_load *l)
{
	if (l->has_populate)
		pthread_join(l->populate, NULL);
	l->has_populate = false;
}

int vram_load_create(struct vram *v)
{
	struct vram_load *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	v->load = l;
	l->received = calloc(bitmap_words(v->npages), sizeof(uint64_t));
	return l->received ? 0 : -ENOMEM;
}

void vram_load_destroy(struct vram *v)
{
	if (!v->load)
		return;
	populate_join(v->load);
	free(v->load->received);
	free(v->load);
	v->load = NULL;
}

void vram_load_begin(struct vram *v)
{
	struct vram_load *l = v->load;
	uint64_t *received = l->received;

	populate_join(l);
	memset(received, 0, bitmap_words(v->npages) * sizeof(uint64_t));
	memset(l, 0, sizeof(*l));
	l->received = received;
	l->st = L_HEADER;
	l->has_populate = pthread_create(&l->populate, NULL, populate_main, v) == 0;
	vram_info(v, "migration: load session started");
}

void vram_load_end(struct vram *v)
{
	populate_join(v->load);
	v->load->st = L_IDLE;
}

static int fail(struct vram *v)
{
	v->load->st = L_FAILED;
	return -EINVAL;
}

/* Copies up to what @want needs into the accumulator; true when full. */
static bool gather(struct vram_load *l, size_t want, const uint8_t **p, size_t *len)
{
	size_t n = want - l->acc_len;

	if (n > *len)
		n = *len;
	memcpy(l->acc + l->acc_len, *p, n);
	l->acc_len += n;
	*p += n;
	*len -= n;
	l->offset += n;
	return l->acc_len == want;
}

static void page_loaded(struct vram *v, uint64_t page, uint64_t fingerprint)
{
	struct vram_load *l = v->load;

	v->dirty.hash[page] = fingerprint;
	if (!bitmap_test(l->received, page)) {
		bitmap_set(l->received, page);
		l->nreceived++;
	}
	l->page_records++;
}

static int on_header(struct vram *v)
{
	struct vram_load *l = v->load;
	struct vram_stream_header h;

	if (vram_header_decode(v->name, l->acc, &h) < 0)
		return fail(v);
	if (h.vram_size != v->size) {
		vram_err(v, "stream: source VRAM is %llu bytes, this device has %llu",
			 (unsigned long long)h.vram_size, (unsigned long long)v->size);
		return fail(v);
	}
	l->crc = ferry_crc32(l->crc, l->acc, VRAM_HDR_LEN);
	l->acc_len = 0;
	l->st = L_REC;
	return 0;
}

static int on_record(struct vram *v)
{
	struct vram_load *l = v->load;
	struct vram_rec r;

	vram_rec_decode(l->acc, &r);
	if (r.type == VRAM_REC_TRAILER) {
		if (r.aux != VRAM_TRAILER_BODY || r.arg != 0) {
			vram_err(v, "stream @%llu: trailer with length %u, arg %llu",
				 (unsigned long long)(l->offset - VRAM_REC_LEN), r.aux,
				 (unsigned long long)r.arg);
			return fail(v);
		}
		l->st = L_TRAILER; /* keep the record header: the trailer crc covers it */
		return 0;
	}
	if (r.aux != 0) {
		vram_err(v, "stream @%llu: record type %u with aux %u",
			 (unsigned long long)(l->offset - VRAM_REC_LEN), r.type, r.aux);
		return fail(v);
	}
	switch (r.type) {
	case VRAM_REC_PAGE:
	case VRAM_REC_ZERO:
		if (r.arg >= v->npages) {
			vram_err(v, "stream @%llu: page %llu beyond the %llu pages of the VRAM",
				 (unsigned long long)(l->offset - VRAM_REC_LEN), (unsigned long long)r.arg,
				 (unsigned long long)v->npages);
			return fail(v);
		}
		break;
	case VRAM_REC_ROUND:
		if (r.arg <= l->last_round) {
			vram_err(v, "stream @%llu: round %llu after round %llu",
				 (unsigned long long)(l->offset - VRAM_REC_LEN), (unsigned long long)r.arg,
				 (unsigned long long)l->last_round);
			return fail(v);
		}
		l->last_round = r.arg;
		break;
	default:
		vram_err(v, "stream @%llu: unknown record type %u",
			 (unsigned long long)(l->offset - VRAM_REC_LEN), r.type);
		return fail(v);
	}
	l->crc = ferry_crc32(l->crc, l->acc, VRAM_REC_LEN);
	l->acc_len = 0;
	if (r.type == VRAM_REC_PAGE) {
		l->page = r.arg;
		l->page_off = 0;
		l->st = L_PAGE;
	} else if (r.type == VRAM_REC_ZERO) {
		/* A hole already reads as zeroes: do not make the kernel
		 * allocate it. Asked afresh each time (our own page writes
		 * would make a cached answer stale). */
		if (!vram_page_is_hole_now(v, r.arg))
			memset(v->mem + r.arg * VRAM_PAGE_SIZE, 0, VRAM_PAGE_SIZE);
		page_loaded(v, r.arg, v->dirty.zero_hash);
	}
	return 0;
}

static int on_trailer(struct vram *v)
{
	struct vram_load *l = v->load;
	struct vram_trailer *t = &l->trailer;

	if (vram_trailer_decode(v->name, l->acc, t) < 0)
		return fail(v);
	if (t->stream_crc != l->crc) {
		vram_err(v, "stream: crc 0x%08x, the source sent 0x%08x: data corrupted in transit",
			 l->crc, t->stream_crc);
		return fail(v);
	}
	if (t->page_records != l->page_records || l->nreceived != v->npages) {
		vram_err(v, "stream: %llu page records (source says %llu), %llu of %llu pages",
			 (unsigned long long)l->page_records, (unsigned long long)t->page_records,
			 (unsigned long long)l->nreceived, (unsigned long long)v->npages);
		return fail(v);
	}
	uint64_t digest = vram_hash64(v->dirty.hash, v->npages * sizeof(uint64_t));

	if (digest != t->vram_digest) {
		vram_err(v, "stream: VRAM digest 0x%016llx, the source had 0x%016llx",
			 (unsigned long long)digest, (unsigned long long)t->vram_digest);
		return fail(v);
	}
	l->acc_len = 0;
	l->st = L_DONE;
	return 0;
}

int vram_load_write(struct vram *v, const void *buf, size_t len)
{
	struct vram_load *l = v->load;
	const uint8_t *p = buf;
	int rc = 0;

	while (len && rc == 0) {
		switch (l->st) {
		case L_HEADER:
			if (gather(l, VRAM_HDR_LEN, &p, &len))
				rc = on_header(v);
			break;
		case L_REC:
			if (gather(l, VRAM_REC_LEN, &p, &len))
				rc = on_record(v);
			break;
		case L_TRAILER:
			if (gather(l, VRAM_TRAILER_LEN, &p, &len))
				rc = on_trailer(v);
			break;
		case L_PAGE: {
			size_t n = VRAM_PAGE_SIZE - l->page_off;
			uint8_t *dst = v->mem + l->page * VRAM_PAGE_SIZE;

			if (n > len)
				n = len;
			memcpy(dst + l->page_off, p, n);
			l->crc = ferry_crc32(l->crc, p, n);
			l->page_off += n;
			l->offset += n;
			p += n;
			len -= n;
			if (l->page_off == VRAM_PAGE_SIZE) {
				page_loaded(v, l->page, page_fingerprint(dst));
				l->st = L_REC;
			}
			break;
		}
		case L_DONE:
			vram_err(v, "stream: %zu bytes after the trailer", len);
			rc = fail(v);
			break;
		case L_FAILED:
			vram_err(v, "stream: data after the stream was refused");
			rc = -EINVAL;
			break;
		case L_IDLE:
		default:
			vram_err(v, "migration: load() in %s without a data session",
				 ferry_mig_state_name(v->state));
			rc = -EINVAL;
			break;
		}
	}
	return rc;
}

int vram_load_finish(struct vram *v)
{
	struct vram_load *l = v->load;

	if (l->st != L_DONE) {
		vram_err(v, "migration: RESUMING -> STOP with an %s stream: %llu bytes in, "
			 "stopped in %s, %llu of %llu pages",
			 l->st == L_FAILED ? "invalid" : "incomplete", (unsigned long long)l->offset,
			 state_names[l->st], (unsigned long long)l->nreceived,
			 (unsigned long long)v->npages);
		return -EINVAL;
	}
	vram_regs_restore(v, &l->trailer.regs);
	v->is_restored = true;
	vram_info(v, "migration: restored %llu pages, generation %llu (+1 when it runs)",
		  (unsigned long long)v->npages, (unsigned long long)l->trailer.regs.generation);
	return 0;
}
