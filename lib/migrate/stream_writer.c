/*
 * The migration stream writer (see stream.h for the concepts).
 *
 * Output is a list of iovecs handed to the transport in one write_all: pieces
 * of the writer's own buffer (headers, small payloads, copied or compressed
 * pages) interleaved with references to caller memory (stable pages, large
 * device chunks). A section is always complete before the batch is written
 * (its header is filled in last, once its length and checksum are known), so
 * before starting one the writer makes sure the buffer and the iovec array
 * can take the section's worst case, and flushes first if not.
 */
#include "migrate/stream.h"
#include "migrate/stream_order.h"
#include "util/checked.h"
#include "util/crc32.h"
#include "util/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

/* Write out once this much is pending: two 2 MiB page sections per write
 * keeps syscalls rare while the next batch's checksums can be computed as
 * the peer drains the socket buffer (MIG_SOCK_BUF_BYTES). */
#define BATCH_BYTES (4u << 20)
/* Device chunks shorter than this are copied into the buffer; longer ones
 * are sent from the caller's memory. */
#define COPY_BELOW (64u << 10)

struct dev_tally {
	uint64_t bytes;
	uint32_t crc; /* CRC-32 of the device's stream so far */
};

struct mig_stream_writer {
	struct mig_transport *t;
	struct mig_manifest m;
	int timeout_ms;
	int zstd_level;
	uint64_t npages;
	uint32_t pages_per_section;
	int err; /* sticky once the transport failed */
	uint32_t seq;
	struct mig_order order;
	struct dev_tally dev[MIG_MAX_DEVICES];
	struct mig_stream_stats st;

	uint8_t *buf;
	size_t cap, len;
	size_t seg;        /* start of the buffer bytes not yet in iov[] */
	struct iovec *iov;
	int niov, iov_cap;
	uint64_t pending;  /* bytes in iov[] plus buf[seg..len) */
	size_t sec_hdr;    /* where the open section's header sits in buf */

	ZSTD_CCtx *zc;
	uint8_t *scratch;  /* one page, for compressing live memory */
};

/* ---- output batch ---- */

static void close_segment(struct mig_stream_writer *w)
{
	if (w->len > w->seg) {
		w->iov[w->niov].iov_base = w->buf + w->seg;
		w->iov[w->niov].iov_len = w->len - w->seg;
		w->niov++;
		w->seg = w->len;
	}
}

int mig_stream_writer_flush(struct mig_stream_writer *w)
{
	int rc;

	if (!w)
		return -EINVAL;
	if (w->err)
		return w->err;
	close_segment(w);
	if (w->niov) {
		rc = mig_transport_write_all(w->t, w->iov, w->niov, w->timeout_ms);
		if (rc < 0) {
			w->err = rc; /* the stream is cut mid-section: nothing can follow */
			return rc;
		}
	}
	w->niov = 0;
	w->len = w->seg = 0;
	w->pending = 0;
	return 0;
}

/* Opens a section that will put at most @max_buf bytes of payload in the
 * buffer and at most @max_refs references to caller memory. */
static int sec_begin(struct mig_stream_writer *w, size_t max_buf, int max_refs)
{
	size_t need = MIG_SECTION_HEADER_LEN + max_buf;
	int need_iov = 2 * max_refs + 2;

	if (w->pending >= BATCH_BYTES || w->cap - w->len < need ||
	    w->iov_cap - w->niov < need_iov) {
		int rc = mig_stream_writer_flush(w);
		if (rc < 0)
			return rc;
	}
	w->sec_hdr = w->len;
	w->len += MIG_SECTION_HEADER_LEN;
	w->pending += MIG_SECTION_HEADER_LEN;
	return 0;
}

static void put(struct mig_stream_writer *w, const void *p, size_t n)
{
	if (n)
		memcpy(w->buf + w->len, p, n);
	w->len += n;
	w->pending += n;
}

/* Reserves @n buffer bytes that the caller fills in place. */
static uint8_t *put_space(struct mig_stream_writer *w, size_t n)
{
	uint8_t *p = w->buf + w->len;

	w->len += n;
	w->pending += n;
	return p;
}

static void put_ref(struct mig_stream_writer *w, const void *p, size_t n)
{
	struct iovec *last;

	close_segment(w);
	w->pending += n;
	/* Neighbouring pages of guest memory become one piece. */
	last = w->niov ? &w->iov[w->niov - 1] : NULL;
	if (last && (const uint8_t *)last->iov_base + last->iov_len == (const uint8_t *)p) {
		last->iov_len += n;
		return;
	}
	w->iov[w->niov].iov_base = (void *)p;
	w->iov[w->niov].iov_len = n;
	w->niov++;
}

/* Fills in the open section's header; @payload_crc covers its payload. */
static void sec_end(struct mig_stream_writer *w, uint16_t type, uint32_t len,
		    uint32_t payload_crc)
{
	uint8_t *h = w->buf + w->sec_hdr;
	uLong crc;

	mig_put_le16(h, type);
	mig_put_le16(h + 2, 0);
	mig_put_le32(h + 4, len);
	mig_put_le32(h + 8, w->seq);
	crc = ferry_crc32(0, h, MIG_SECTION_CRC_COVERS);
	crc = crc32_combine(crc, payload_crc, (z_off_t)len);
	mig_put_le32(h + 12, (uint32_t)crc);
	w->seq++;
	w->st.sections++;
	w->st.bytes += MIG_SECTION_HEADER_LEN + (uint64_t)len;
}

/* A section whose whole payload is in @p (small, fixed-size ones). */
static int small_section(struct mig_stream_writer *w, uint16_t type, const void *p, uint32_t len)
{
	int rc = sec_begin(w, len, 0);

	if (rc < 0)
		return rc;
	put(w, p, len);
	sec_end(w, type, len, ferry_crc32(0, p, len));
	return 0;
}

/* ---- order and arguments ---- */

static int check_order(struct mig_stream_writer *w, uint32_t type, uint32_t device,
		       uint32_t round)
{
	struct mig_order_event ev = {.type = type, .device = device, .round = round};
	char why[160];
	int rc;

	if (w->err)
		return w->err;
	rc = mig_order_check(&w->order, &ev, why, sizeof(why));
	if (rc < 0) {
		log_err("migration stream writer (%s): cannot send %s: %s", w->t->desc,
			mig_section_type_str(type), why);
		return -EINVAL;
	}
	return 0;
}

static void commit(struct mig_stream_writer *w, uint32_t type, uint32_t device, uint32_t round)
{
	struct mig_order_event ev = {.type = type, .device = device, .round = round};

	mig_order_commit(&w->order, &ev, w->m.ndevices);
}

/* ---- guest pages ---- */

/* All zero? Page sizes are multiples of 64, so whole 64-byte blocks. */
static bool is_zero_page(const uint8_t *p, size_t n)
{
	for (size_t off = 0; off < n; off += 64) {
		uint64_t acc = 0, v;
		for (int i = 0; i < 8; i++) {
			memcpy(&v, p + off + 8 * i, sizeof(v));
			acc |= v;
		}
		if (acc)
			return false;
	}
	return true;
}

static bool bit_is_set(const uint64_t *bm, uint64_t i)
{
	return !bm || (bm[i / 64] >> (i % 64)) & 1;
}

/* First set bit in [from, to), or @to. */
static uint64_t next_set(const uint64_t *bm, uint64_t from, uint64_t to)
{
	if (!bm)
		return from;
	while (from < to) {
		uint64_t word = bm[from / 64] >> (from % 64);
		if (word) {
			uint64_t i = from + (uint64_t)__builtin_ctzll(word);
			return i < to ? i : to;
		}
		from = (from / 64 + 1) * 64;
	}
	return to;
}

/* Last set bit in [from, to), which holds at least one. */
static uint64_t last_set(const uint64_t *bm, uint64_t from, uint64_t to)
{
	uint64_t i = to - 1;

	while (bm && i > from && !bit_is_set(bm, i))
		i--;
	return i;
}

/*
 * Compresses the page at @src into @dst (room for page_size - 5 bytes
 * after a 4-byte length) when that saves something. Returns the bytes
 * used (4 + clen), or 0 to send the page raw.
 */
static size_t try_zstd(struct mig_stream_writer *w, const uint8_t *src, uint8_t *dst)
{
	size_t ps = w->m.page_size;
	size_t c = ZSTD_compressCCtx(w->zc, dst + 4, ps - 5, src, ps, w->zstd_level);

	if (ZSTD_isError(c) || c == 0)
		return 0;
	mig_put_le32(dst, (uint32_t)c);
	return 4 + c;
}

/* One GUEST_PAGES section for pages [start, start + n), whose first and
 * last pages are selected by @bm. */
static int emit_run(struct mig_stream_writer *w, const uint8_t *mem, const uint64_t *bm,
		    uint64_t start, uint32_t n, bool is_stable)
{
	const size_t ps = w->m.page_size;
	const bool is_zstd = w->zc != NULL;
	const bool copies = !is_stable || is_zstd;
	uint8_t fixed[MIG_PAGES_FIXED_LEN];
	uint8_t *flags;
	uint32_t data_crc = 0; /* of the data area alone; the flags come first */
	uint64_t data_len = 0;
	int rc;

	rc = sec_begin(w, MIG_PAGES_FIXED_LEN + n + (copies ? (size_t)n * ps : 0),
		       is_stable ? (int)n : 0);
	if (rc < 0)
		return rc;
	mig_put_le64(fixed, start);
	mig_put_le32(fixed + 8, n);
	mig_put_le32(fixed + 12, 0);
	put(w, fixed, sizeof(fixed));
	flags = put_space(w, n);

	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *page = mem + (start + i) * ps;
		const uint8_t *sent;
		size_t used;

		if (!bit_is_set(bm, start + i)) {
			flags[i] = MIG_PAGE_SKIP;
			continue;
		}
		if (is_zero_page(page, ps)) {
			flags[i] = MIG_PAGE_ZERO;
			w->st.pages_zero++;
			continue;
		}
		if (!is_stable) {
			/* Snapshot first, so what is checksummed is what is sent:
			 * straight into the buffer, or aside to be compressed. */
			uint8_t *copy = is_zstd ? w->scratch : w->buf + w->len;
			memcpy(copy, page, ps);
			page = copy;
		}
		used = is_zstd ? try_zstd(w, page, w->buf + w->len) : 0;
		if (used) {
			flags[i] = MIG_PAGE_ZSTD;
			w->st.pages_zstd++;
			sent = put_space(w, used);
		} else {
			flags[i] = MIG_PAGE_DATA;
			w->st.pages_data++;
			used = ps;
			if (is_stable) {
				put_ref(w, page, ps);
				sent = page;
			} else if (page == w->scratch) {
				sent = w->buf + w->len;
				put(w, page, ps);
			} else {
				sent = put_space(w, ps); /* the copy is already there */
			}
		}
		data_crc = ferry_crc32(data_crc, sent, used); /* data in order */
		data_len += used;
		w->st.page_bytes += used;
	}

	uLong crc = ferry_crc32(ferry_crc32(0, fixed, sizeof(fixed)), flags, n);
	crc = crc32_combine(crc, data_crc, (z_off_t)data_len);
	sec_end(w, MIG_SEC_GUEST_PAGES, (uint32_t)(MIG_PAGES_FIXED_LEN + n + data_len),
		(uint32_t)crc);
	return 0;
}

int mig_stream_write_pages(struct mig_stream_writer *w, const void *mem,
			   const uint64_t *bitmap, uint64_t first, uint64_t count, unsigned flags)
{
	uint64_t end, win;
	int rc;

	if (!w || !mem || (flags & ~MIG_WRITE_STABLE))
		return -EINVAL;
	if (!range_ok(first, count, w->npages)) {
		log_err("migration stream writer (%s): pages [%llu, +%llu) outside guest memory of %llu pages",
			w->t->desc, (unsigned long long)first, (unsigned long long)count,
			(unsigned long long)w->npages);
		return -EINVAL;
	}
	rc = check_order(w, MIG_SEC_GUEST_PAGES, 0, 0);
	if (rc < 0)
		return rc;

	end = first + count;
	for (win = first; win < end;) {
		uint64_t win_end = (win / w->pages_per_section + 1) * w->pages_per_section;
		if (win_end > end)
			win_end = end;
		uint64_t s = next_set(bitmap, win, win_end);
		if (s < win_end) {
			uint64_t e = last_set(bitmap, s, win_end) + 1;
			rc = emit_run(w, mem, bitmap, s, (uint32_t)(e - s), flags & MIG_WRITE_STABLE);
			if (rc < 0)
				return rc;
		}
		win = win_end;
	}
	/* Stable pages are borrowed for this call only. */
	if (flags & MIG_WRITE_STABLE)
		return mig_stream_writer_flush(w);
	return 0;
}

/* ---- device streams ---- */

int mig_stream_write_device_data(struct mig_stream_writer *w, uint32_t device, const void *buf,
				 size_t len)
{
	const uint8_t *p = buf;
	bool has_refs = false;
	int rc;

	if (!w || !buf || len == 0)
		return -EINVAL;
	rc = check_order(w, MIG_SEC_DEVICE_DATA, device, 0);
	if (rc < 0)
		return rc;
	while (len) {
		uint32_t chunk = len < MIG_DEVICE_CHUNK_BYTES ? (uint32_t)len : MIG_DEVICE_CHUNK_BYTES;
		bool is_copy = chunk < COPY_BELOW;
		uint8_t idx[MIG_DEVICE_DATA_FIXED_LEN];
		uint32_t chunk_crc = ferry_crc32(0, p, chunk);

		rc = sec_begin(w, sizeof(idx) + (is_copy ? chunk : 0), is_copy ? 0 : 1);
		if (rc < 0)
			return rc;
		mig_put_le32(idx, device);
		put(w, idx, sizeof(idx));
		if (is_copy) {
			put(w, p, chunk);
		} else {
			put_ref(w, p, chunk);
			has_refs = true;
		}
		uLong crc = crc32_combine(ferry_crc32(0, idx, sizeof(idx)), chunk_crc, (z_off_t)chunk);
		sec_end(w, MIG_SEC_DEVICE_DATA, sizeof(idx) + chunk, (uint32_t)crc);

		struct dev_tally *d = &w->dev[device];
		d->crc = (uint32_t)crc32_combine(d->crc, chunk_crc, (z_off_t)chunk);
		d->bytes += chunk;
		w->st.device_bytes += chunk;
		p += chunk;
		len -= chunk;
	}
	/* Large chunks are borrowed for this call only. */
	return has_refs ? mig_stream_writer_flush(w) : 0;
}

int mig_stream_write_device_end(struct mig_stream_writer *w, uint32_t device)
{
	uint8_t p[MIG_DEVICE_END_LEN];
	int rc;

	if (!w)
		return -EINVAL;
	rc = check_order(w, MIG_SEC_DEVICE_END, device, 0);
	if (rc < 0)
		return rc;
	mig_put_le32(p, device);
	mig_put_le32(p + 4, 0);
	mig_put_le64(p + 8, w->dev[device].bytes);
	rc = small_section(w, MIG_SEC_DEVICE_END, p, sizeof(p));
	if (rc == 0)
		commit(w, MIG_SEC_DEVICE_END, device, 0);
	return rc;
}

/* ---- markers ---- */

int mig_stream_write_round_end(struct mig_stream_writer *w, uint32_t round,
			       uint64_t pages_sent, uint64_t dirty_remaining)
{
	uint8_t p[MIG_ROUND_END_LEN];
	int rc;

	if (!w)
		return -EINVAL;
	if (pages_sent > w->npages || dirty_remaining > w->npages) {
		log_err("migration stream writer (%s): round %u: %llu pages sent, %llu dirty: more than the %llu pages of guest memory",
			w->t->desc, round, (unsigned long long)pages_sent,
			(unsigned long long)dirty_remaining, (unsigned long long)w->npages);
		return -EINVAL;
	}
	rc = check_order(w, MIG_SEC_ROUND_END, 0, round);
	if (rc < 0)
		return rc;
	mig_put_le32(p, round);
	mig_put_le32(p + 4, 0);
	mig_put_le64(p + 8, pages_sent);
	mig_put_le64(p + 16, dirty_remaining);
	rc = small_section(w, MIG_SEC_ROUND_END, p, sizeof(p));
	if (rc == 0) {
		commit(w, MIG_SEC_ROUND_END, 0, round);
		rc = mig_stream_writer_flush(w);
	}
	return rc;
}

int mig_stream_write_switchover(struct mig_stream_writer *w)
{
	int rc;

	if (!w)
		return -EINVAL;
	rc = check_order(w, MIG_SEC_SWITCHOVER, 0, 0);
	rc = rc ?: small_section(w, MIG_SEC_SWITCHOVER, NULL, 0);
	if (rc == 0) {
		commit(w, MIG_SEC_SWITCHOVER, 0, 0);
		rc = mig_stream_writer_flush(w);
	}
	return rc;
}

int mig_stream_write_checksums(struct mig_stream_writer *w, bool has_memory_crc,
			       uint32_t memory_crc)
{
	uint8_t p[MIG_CHECKSUMS_FIXED_LEN + (MIG_MAX_DEVICES + 1) * MIG_CHECKSUM_RECORD_LEN];
	uint32_t count;
	uint8_t *r;
	int rc;

	if (!w)
		return -EINVAL;
	rc = check_order(w, MIG_SEC_CHECKSUMS, 0, 0);
	if (rc < 0)
		return rc;
	count = w->m.ndevices + (has_memory_crc ? 1 : 0);
	mig_put_le32(p, count);
	mig_put_le32(p + 4, 0);
	r = p + MIG_CHECKSUMS_FIXED_LEN;
	for (uint32_t i = 0; i < w->m.ndevices; i++, r += MIG_CHECKSUM_RECORD_LEN) {
		mig_put_le32(r, i);
		mig_put_le32(r + 4, w->dev[i].crc);
		mig_put_le64(r + 8, w->dev[i].bytes);
	}
	if (has_memory_crc) {
		mig_put_le32(r, MIG_CHECKSUM_MEMORY);
		mig_put_le32(r + 4, memory_crc);
		mig_put_le64(r + 8, w->m.mem_size);
	}
	rc = small_section(w, MIG_SEC_CHECKSUMS, p,
			   MIG_CHECKSUMS_FIXED_LEN + count * MIG_CHECKSUM_RECORD_LEN);
	if (rc == 0)
		commit(w, MIG_SEC_CHECKSUMS, 0, 0);
	return rc;
}

int mig_stream_write_end(struct mig_stream_writer *w)
{
	int rc;

	if (!w)
		return -EINVAL;
	rc = check_order(w, MIG_SEC_END, 0, 0);
	rc = rc ?: small_section(w, MIG_SEC_END, NULL, 0);
	if (rc == 0) {
		commit(w, MIG_SEC_END, 0, 0);
		rc = mig_stream_writer_flush(w);
	}
	return rc;
}

void mig_stream_writer_stats(const struct mig_stream_writer *w, struct mig_stream_stats *st)
{
	if (w && st)
		*st = w->st;
}

/* ---- life cycle ---- */

void mig_stream_writer_destroy(struct mig_stream_writer *w)
{
	if (!w)
		return;
	ZSTD_freeCCtx(w->zc);
	free(w->scratch);
	free(w->iov);
	free(w->buf);
	free(w);
}

static int write_preamble(struct mig_stream_writer *w)
{
	uint8_t hdr[MIG_STREAM_HEADER_LEN];
	char why[160];
	char *json;
	size_t jlen;
	int rc;

	rc = mig_manifest_encode(&w->m, &json, &jlen, why, sizeof(why));
	if (rc < 0) {
		log_err("migration stream writer (%s): manifest: %s", w->t->desc, why);
		return rc;
	}
	memcpy(hdr, MIG_STREAM_MAGIC, MIG_STREAM_MAGIC_LEN);
	mig_put_le32(hdr + 8, MIG_STREAM_VERSION);
	mig_put_le32(hdr + 12, MIG_STREAM_HEADER_LEN);
	put(w, hdr, sizeof(hdr));
	w->st.bytes += sizeof(hdr);
	rc = small_section(w, MIG_SEC_MANIFEST, json, (uint32_t)jlen);
	free(json);
	if (rc == 0)
		commit(w, MIG_SEC_MANIFEST, 0, 0);
	return rc;
}

int mig_stream_writer_create(struct mig_transport *t, const struct mig_manifest *m,
			     const struct mig_stream_writer_opts *opts,
			     struct mig_stream_writer **out)
{
	struct mig_stream_writer *w;
	char why[160];
	size_t section_max;
	int rc;

	if (!t || !m || !out)
		return -EINVAL;
	*out = NULL;
	rc = mig_manifest_check(m, UINT64_MAX, why, sizeof(why));
	if (rc < 0) {
		log_err("migration stream writer (%s): manifest: %s", t->desc, why);
		return rc;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->t = t;
	w->m = *m;
	w->timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : MIG_STREAM_DEFAULT_TIMEOUT_MS;
	w->zstd_level = opts && opts->zstd_level ? opts->zstd_level : 1;
	w->npages = m->mem_size / m->page_size;
	w->pages_per_section = MIG_PAGES_SECTION_BYTES / m->page_size;
	mig_order_init(&w->order);

	/* Room for two worst-case page sections (or a manifest or device chunk,
	 * both smaller). */
	section_max = MIG_SECTION_HEADER_LEN + MIG_PAGES_FIXED_LEN + w->pages_per_section +
		      (size_t)w->pages_per_section * m->page_size;
	w->cap = 2 * section_max;
	w->buf = malloc(w->cap);
	w->iov_cap = 4 * (int)w->pages_per_section + 16;
	w->iov = calloc((size_t)w->iov_cap, sizeof(*w->iov));
	if (!w->buf || !w->iov) {
		rc = -ENOMEM;
		goto out_destroy;
	}
	if (m->compression == MIG_COMPRESS_ZSTD) {
		w->zc = ZSTD_createCCtx();
		w->scratch = malloc(m->page_size);
		if (!w->zc || !w->scratch) {
			rc = -ENOMEM;
			goto out_destroy;
		}
	}
	rc = write_preamble(w);
	if (rc < 0)
		goto out_destroy;
	*out = w;
	return 0;

out_destroy:
	mig_stream_writer_destroy(w);
	return rc;
}
