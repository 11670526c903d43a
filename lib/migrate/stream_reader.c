/*
 * The migration stream reader (see stream.h for the concepts).
 *
 * Each section is read with two transport reads: its 16-byte header, then
 * its payload into one buffer that grows to the largest section seen (never
 * past the length limit, checked before allocating). Simple on purpose: a
 * page section is 2 MiB, so the extra read per section costs nothing
 * measurable, and a read-ahead buffer would add a copy of every page.
 *
 * Checks run in this order, so that a damaged stream is reported by the
 * most specific check that can see it: header fields that bound the read
 * (type known, flags zero, length within limits for its type), then the
 * checksum over header and payload, then the sequence number, then the
 * payload's own fields, then the order rules (stream_order.h).
 */
#include "migrate/stream.h"
#include "migrate/stream_order.h"
#include "util/checked.h"
#include "util/crc32.h"
#include "util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

struct dev_tally {
	uint64_t bytes;
	uint32_t crc;
};

struct mig_stream_reader {
	struct mig_transport *t;
	int timeout_ms;
	uint32_t max_len;
	uint64_t max_mem;
	int err;           /* sticky */
	bool has_returned_end;
	uint64_t offset;   /* stream bytes consumed */
	uint32_t next_seq;
	struct mig_manifest m;
	uint64_t npages;
	struct mig_order order;
	struct dev_tally dev[MIG_MAX_DEVICES];
	struct mig_checksum sums[MIG_MAX_DEVICES + 1];

	uint8_t *buf;      /* payload of the current section */
	size_t cap;
	bool has_pages;    /* buf holds the GUEST_PAGES section last returned */
	uint32_t pages_seq;
	ZSTD_DCtx *dctx;   /* created when the first zstd page is loaded */

	/* the section being read, for error lines */
	uint32_t cur_seq;
	uint32_t cur_type;
	uint64_t cur_off;
};

/* Logs one line about the current section and makes @err sticky. */
static int bad(struct mig_stream_reader *r, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int bad(struct mig_stream_reader *r, int err, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (r->cur_type) /* 0 until a section header was read; never a valid type */
		log_err("migration stream (%s): section %u (%s, type %u) at offset %llu: %s",
			r->t->desc, r->cur_seq, mig_section_type_str(r->cur_type), r->cur_type,
			(unsigned long long)r->cur_off, why);
	else
		log_err("migration stream (%s): section %u at offset %llu: %s", r->t->desc,
			r->cur_seq, (unsigned long long)r->cur_off, why);
	r->err = err;
	return err;
}

/* Reads exactly @len bytes or explains why not. @what names the part. */
static int read_exact(struct mig_stream_reader *r, void *buf, size_t len, const char *what)
{
	ssize_t n = mig_transport_read_full(r->t, buf, len, r->timeout_ms);

	if (n < 0) {
		r->err = (int)n; /* the transport logged it */
		return (int)n;
	}
	r->offset += (uint64_t)n;
	if ((size_t)n < len)
		return bad(r, -ENODATA, "stream ends inside the %s: %zd of %zu bytes at offset %llu",
			   what, n, len, (unsigned long long)r->offset);
	return 0;
}

/* ---- stream header ---- */

static int read_stream_header(struct mig_stream_reader *r)
{
	uint8_t h[MIG_STREAM_HEADER_LEN];
	uint32_t version, hlen;
	ssize_t n;

	n = mig_transport_read_full(r->t, h, sizeof(h), r->timeout_ms);
	if (n < 0)
		return r->err = (int)n; /* the transport logged it */
	r->offset = (uint64_t)n;
	if ((size_t)n < sizeof(h)) {
		log_err("migration stream (%s): the stream ends inside its %zu-byte header, after %zd bytes",
			r->t->desc, sizeof(h), n);
		return r->err = -ENODATA;
	}
	if (memcmp(h, MIG_STREAM_MAGIC, MIG_STREAM_MAGIC_LEN) != 0) {
		log_err("migration stream (%s): not a ferry migration stream: magic %02x%02x%02x%02x%02x%02x%02x%02x, expected \"FERRYMIG\"",
			r->t->desc, h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]);
		return r->err = -EBADMSG;
	}
	version = mig_get_le32(h + 8);
	hlen = mig_get_le32(h + 12);
	if (version != MIG_STREAM_VERSION) {
		log_err("migration stream (%s): format version %u; this build reads version %u only",
			r->t->desc, version, MIG_STREAM_VERSION);
		return r->err = -EPROTONOSUPPORT;
	}
	if (hlen != MIG_STREAM_HEADER_LEN) {
		log_err("migration stream (%s): header length %u; version %u headers are %u bytes",
			r->t->desc, hlen, MIG_STREAM_VERSION, MIG_STREAM_HEADER_LEN);
		return r->err = -EBADMSG;
	}
	return 0;
}

/* ---- section framing ---- */

/* Length rules that can be checked before reading the payload. */
static int check_length(struct mig_stream_reader *r, uint32_t type, uint32_t len)
{
	uint32_t want = UINT32_MAX, min = 0, max = r->max_len;

	switch (type) {
	case MIG_SEC_MANIFEST:
		min = 1;
		max = MIG_MANIFEST_MAX_LEN;
		break;
	case MIG_SEC_GUEST_PAGES:
		min = MIG_PAGES_FIXED_LEN + 1;
		break;
	case MIG_SEC_DEVICE_DATA:
		min = MIG_DEVICE_DATA_FIXED_LEN + 1;
		break;
	case MIG_SEC_DEVICE_END:
		want = MIG_DEVICE_END_LEN;
		break;
	case MIG_SEC_ROUND_END:
		want = MIG_ROUND_END_LEN;
		break;
	case MIG_SEC_SWITCHOVER:
	case MIG_SEC_END:
		want = 0;
		break;
	case MIG_SEC_CHECKSUMS:
		min = MIG_CHECKSUMS_FIXED_LEN;
		max = MIG_CHECKSUMS_FIXED_LEN + (MIG_MAX_DEVICES + 1) * MIG_CHECKSUM_RECORD_LEN;
		break;
	default:
		return bad(r, -EBADMSG, "unknown section type %u", type);
	}
	if (want != UINT32_MAX && len != want)
		return bad(r, -EBADMSG, "length %u, a %s payload is %u bytes", len,
			   mig_section_type_str(type), want);
	if (max > r->max_len)
		max = r->max_len;
	if (len > max)
		return bad(r, -EMSGSIZE, "length %u is above the limit %u for this type", len, max);
	if (len < min)
		return bad(r, -EBADMSG, "length %u is below the minimum %u for this type", len, min);
	return 0;
}

static int grow_buf(struct mig_stream_reader *r, uint32_t len)
{
	size_t cap;
	uint8_t *nb;

	if (len <= r->cap)
		return 0;
	cap = r->cap ? r->cap : 4096;
	while (cap < len)
		cap *= 2;
	if (cap > r->max_len)
		cap = r->max_len; /* len <= max_len was checked */
	nb = realloc(r->buf, cap);
	if (!nb)
		return bad(r, -ENOMEM, "no memory for a %u-byte payload", len);
	r->buf = nb;
	r->cap = cap;
	return 0;
}

/* Reads one section's header and payload and checks the framing. */
static int read_section(struct mig_stream_reader *r, uint32_t *type, uint32_t *len)
{
	uint8_t h[MIG_SECTION_HEADER_LEN];
	uint32_t flags, seq, crc, got;
	ssize_t n;
	int rc;

	r->cur_seq = r->next_seq;
	r->cur_off = r->offset;
	r->cur_type = 0;
	*type = *len = 0;
	n = mig_transport_read_full(r->t, h, sizeof(h), r->timeout_ms);
	if (n < 0)
		return r->err = (int)n;
	r->offset += (uint64_t)n;
	if (n == 0)
		return bad(r, -ENODATA, "the stream ends here, before END");
	if ((size_t)n < sizeof(h))
		return bad(r, -ENODATA, "the stream ends inside the section header (%zd of %zu bytes)",
			   n, sizeof(h));
	*type = r->cur_type = mig_get_le16(h);
	flags = mig_get_le16(h + 2);
	*len = mig_get_le32(h + 4);
	seq = mig_get_le32(h + 8);
	crc = mig_get_le32(h + 12);

	rc = check_length(r, *type, *len);
	if (rc < 0)
		return rc;
	if (flags != 0)
		return bad(r, -EBADMSG, "flags 0x%04x; version %u defines none", flags,
			   MIG_STREAM_VERSION);
	rc = grow_buf(r, *len);
	if (rc < 0)
		return rc;
	r->has_pages = false; /* the buffer is about to be overwritten */
	rc = read_exact(r, r->buf, *len, "payload");
	if (rc < 0)
		return rc;
	/* Not r->buf: zlib treats a NULL buffer as "give me the initial value". */
	got = ferry_crc32(ferry_crc32(0, h, MIG_SECTION_CRC_COVERS),
				*len ? r->buf : (const uint8_t *)"", *len);
	if (got != crc)
		return bad(r, -EBADMSG, "checksum mismatch: header says 0x%08x, the %u bytes give 0x%08x",
			   crc, *len, got);
	if (seq != r->next_seq)
		return bad(r, -EBADMSG, "sequence number %u where %u was expected", seq,
			   r->next_seq);
	r->next_seq++;
	return 0;
}

static int check_order(struct mig_stream_reader *r, uint32_t type, uint32_t device,
		       uint32_t round)
{
	struct mig_order_event ev = {.type = type, .device = device, .round = round};
	char why[160];
	int rc = mig_order_check(&r->order, &ev, why, sizeof(why));

	if (rc < 0)
		return bad(r, rc, "%s", why);
	return 0;
}

static void commit(struct mig_stream_reader *r, uint32_t type, uint32_t device, uint32_t round)
{
	struct mig_order_event ev = {.type = type, .device = device, .round = round};

	mig_order_commit(&r->order, &ev, r->m.ndevices);
}

/* ---- payloads ---- */

static int parse_manifest(struct mig_stream_reader *r, uint32_t len)
{
	char why[192];
	int rc = check_order(r, MIG_SEC_MANIFEST, 0, 0);

	if (rc < 0)
		return rc;
	rc = mig_manifest_decode(r->buf, len, r->max_mem, &r->m, why, sizeof(why));
	if (rc < 0)
		return bad(r, rc, "%s", why);
	r->npages = r->m.mem_size / r->m.page_size;
	commit(r, MIG_SEC_MANIFEST, 0, 0);
	return 0;
}

/* Checks a zstd page: 1 <= clen < page_size, one frame of exactly clen bytes
 * that declares page_size bytes of content. */
static int check_zstd_page(struct mig_stream_reader *r, const uint8_t *p, uint32_t clen,
			   uint64_t page)
{
	unsigned long long content;
	size_t frame;

	if (clen == 0 || clen >= r->m.page_size)
		return bad(r, -EBADMSG, "page %llu: compressed length %u, expected 1..%u",
			   (unsigned long long)page, clen, r->m.page_size - 1);
	content = ZSTD_getFrameContentSize(p, clen);
	frame = ZSTD_findFrameCompressedSize(p, clen);
	if (content != r->m.page_size || ZSTD_isError(frame) || frame != clen)
		return bad(r, -EBADMSG, "page %llu: not one zstd frame of %u bytes decoding to %u bytes",
			   (unsigned long long)page, clen, r->m.page_size);
	return 0;
}

static int parse_pages(struct mig_stream_reader *r, uint32_t len, struct mig_section *s)
{
	const uint8_t *p = r->buf;
	const uint32_t ps = r->m.page_size;
	uint64_t start = mig_get_le64(p);
	uint32_t count = mig_get_le32(p + 8);
	uint32_t reserved = mig_get_le32(p + 12);
	const uint8_t *flags = p + MIG_PAGES_FIXED_LEN;
	uint64_t off;
	int rc;

	rc = check_order(r, MIG_SEC_GUEST_PAGES, 0, 0);
	if (rc < 0)
		return rc;
	if (reserved)
		return bad(r, -EBADMSG, "reserved field 0x%x is not zero", reserved);
	if (count == 0 || count > len - MIG_PAGES_FIXED_LEN)
		return bad(r, -EBADMSG, "page count %u does not fit a %u-byte payload", count, len);
	if (!range_ok(start, count, r->npages))
		return bad(r, -EBADMSG, "pages %llu..%llu lie beyond guest memory (%llu pages)",
			   (unsigned long long)start, (unsigned long long)start + count - 1,
			   (unsigned long long)r->npages);
	if (flags[0] == MIG_PAGE_SKIP || flags[count - 1] == MIG_PAGE_SKIP)
		return bad(r, -EBADMSG, "the run of %u pages at %llu starts or ends with a skipped page",
			   count, (unsigned long long)start);

	memset(&s->u.pages, 0, sizeof(s->u.pages));
	off = MIG_PAGES_FIXED_LEN + (uint64_t)count;
	for (uint32_t i = 0; i < count; i++) {
		uint64_t page = start + i;
		uint32_t clen;

		switch (flags[i]) {
		case MIG_PAGE_SKIP:
			break;
		case MIG_PAGE_ZERO:
			s->u.pages.nzero++;
			break;
		case MIG_PAGE_DATA:
			if (len - off < ps)
				return bad(r, -EBADMSG, "page %llu: its %u data bytes run past the payload end",
					   (unsigned long long)page, ps);
			off += ps;
			s->u.pages.ndata++;
			break;
		case MIG_PAGE_ZSTD:
			if (r->m.compression != MIG_COMPRESS_ZSTD)
				return bad(r, -EBADMSG, "page %llu is zstd-compressed but the manifest says compression \"none\"",
					   (unsigned long long)page);
			if (len - off < 4)
				return bad(r, -EBADMSG, "page %llu: its compressed length runs past the payload end",
					   (unsigned long long)page);
			clen = mig_get_le32(p + off);
			off += 4;
			if (len - off < clen)
				return bad(r, -EBADMSG, "page %llu: %u compressed bytes run past the payload end",
					   (unsigned long long)page, clen);
			rc = check_zstd_page(r, p + off, clen, page);
			if (rc < 0)
				return rc;
			off += clen;
			s->u.pages.nzstd++;
			break;
		default:
			return bad(r, -EBADMSG, "page %llu: unknown flag %u", (unsigned long long)page,
				   flags[i]);
		}
	}
	if (off != len)
		return bad(r, -EBADMSG, "%llu bytes follow the last page's data",
			   (unsigned long long)(len - off));
	s->u.pages.start = start;
	s->u.pages.count = count;
	s->u.pages.flags = flags;
	r->has_pages = true;
	r->pages_seq = s->seq;
	return 0;
}

static int parse_device_data(struct mig_stream_reader *r, uint32_t len, struct mig_section *s)
{
	uint32_t dev = mig_get_le32(r->buf);
	uint32_t n = len - MIG_DEVICE_DATA_FIXED_LEN;
	const uint8_t *data = r->buf + MIG_DEVICE_DATA_FIXED_LEN;
	int rc = check_order(r, MIG_SEC_DEVICE_DATA, dev, 0);

	if (rc < 0)
		return rc;
	struct dev_tally *d = &r->dev[dev];
	if (d->bytes > UINT64_MAX - n)
		return bad(r, -EBADMSG, "device %u: stream longer than 2^64 bytes", dev);
	d->crc = ferry_crc32(d->crc, data, n);
	d->bytes += n;
	s->u.device_data.device = dev;
	s->u.device_data.data = data;
	s->u.device_data.len = n;
	return 0;
}

static int parse_device_end(struct mig_stream_reader *r, struct mig_section *s)
{
	uint32_t dev = mig_get_le32(r->buf);
	uint32_t reserved = mig_get_le32(r->buf + 4);
	uint64_t total = mig_get_le64(r->buf + 8);
	int rc = check_order(r, MIG_SEC_DEVICE_END, dev, 0);

	if (rc < 0)
		return rc;
	if (reserved)
		return bad(r, -EBADMSG, "reserved field 0x%x is not zero", reserved);
	if (total != r->dev[dev].bytes)
		return bad(r, -EBADMSG, "device %u: DEVICE_END says %llu bytes, %llu arrived", dev,
			   (unsigned long long)total, (unsigned long long)r->dev[dev].bytes);
	commit(r, MIG_SEC_DEVICE_END, dev, 0);
	s->u.device_end.device = dev;
	s->u.device_end.total_bytes = total;
	return 0;
}

static int parse_round_end(struct mig_stream_reader *r, struct mig_section *s)
{
	uint32_t round = mig_get_le32(r->buf);
	uint32_t reserved = mig_get_le32(r->buf + 4);
	uint64_t sent = mig_get_le64(r->buf + 8);
	uint64_t dirty = mig_get_le64(r->buf + 16);
	int rc = check_order(r, MIG_SEC_ROUND_END, 0, round);

	if (rc < 0)
		return rc;
	if (reserved)
		return bad(r, -EBADMSG, "reserved field 0x%x is not zero", reserved);
	if (sent > r->npages || dirty > r->npages)
		return bad(r, -EBADMSG, "round %u: %llu pages sent, %llu dirty: more than the %llu pages of guest memory",
			   round, (unsigned long long)sent, (unsigned long long)dirty,
			   (unsigned long long)r->npages);
	commit(r, MIG_SEC_ROUND_END, 0, round);
	s->u.round_end.round = round;
	s->u.round_end.pages_sent = sent;
	s->u.round_end.dirty_remaining = dirty;
	return 0;
}

static int parse_checksums(struct mig_stream_reader *r, uint32_t len, struct mig_section *s)
{
	uint32_t count = mig_get_le32(r->buf);
	uint32_t reserved = mig_get_le32(r->buf + 4);
	bool seen[MIG_MAX_DEVICES] = {false};
	int rc = check_order(r, MIG_SEC_CHECKSUMS, 0, 0);

	if (rc < 0)
		return rc;
	if (reserved)
		return bad(r, -EBADMSG, "reserved field 0x%x is not zero", reserved);
	if ((uint64_t)count * MIG_CHECKSUM_RECORD_LEN != len - MIG_CHECKSUMS_FIXED_LEN)
		return bad(r, -EBADMSG, "%u records do not fill a %u-byte payload", count, len);
	memset(&s->u.checksums, 0, sizeof(s->u.checksums));
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *p = r->buf + MIG_CHECKSUMS_FIXED_LEN + i * MIG_CHECKSUM_RECORD_LEN;
		struct mig_checksum *c = &r->sums[i];

		c->subject = mig_get_le32(p);
		c->crc = mig_get_le32(p + 4);
		c->bytes = mig_get_le64(p + 8);
		if (c->subject == MIG_CHECKSUM_MEMORY) {
			if (s->u.checksums.has_memory)
				return bad(r, -EBADMSG, "two guest memory records");
			if (c->bytes != r->m.mem_size)
				return bad(r, -EBADMSG, "the guest memory record covers %llu bytes, memory is %llu",
					   (unsigned long long)c->bytes,
					   (unsigned long long)r->m.mem_size);
			s->u.checksums.has_memory = true;
			s->u.checksums.memory_crc = c->crc;
			s->u.checksums.memory_bytes = c->bytes;
			continue;
		}
		if (c->subject >= r->m.ndevices)
			return bad(r, -EBADMSG, "record %u: device %u out of range (the manifest lists %u)",
				   i, c->subject, r->m.ndevices);
		if (seen[c->subject])
			return bad(r, -EBADMSG, "two records for device %u", c->subject);
		seen[c->subject] = true;
		const struct dev_tally *d = &r->dev[c->subject];
		if (c->crc != d->crc || c->bytes != d->bytes)
			return bad(r, -EBADMSG, "device %u: the source sent %llu bytes with CRC 0x%08x, %llu bytes with CRC 0x%08x arrived",
				   c->subject, (unsigned long long)c->bytes, c->crc,
				   (unsigned long long)d->bytes, d->crc);
	}
	for (uint32_t i = 0; i < r->m.ndevices; i++)
		if (!seen[i])
			return bad(r, -EBADMSG, "no record for device %u", i);
	commit(r, MIG_SEC_CHECKSUMS, 0, 0);
	s->u.checksums.count = count;
	s->u.checksums.records = r->sums;
	return 0;
}

static int parse_end(struct mig_stream_reader *r)
{
	int rc = check_order(r, MIG_SEC_END, 0, 0);

	if (rc < 0)
		return rc;
	rc = mig_transport_pending(r->t);
	if (rc < 0)
		return bad(r, rc, "cannot check what follows END: %s", strerror(-rc));
	if (rc > 0)
		return bad(r, -EPROTO, "more bytes follow END at offset %llu",
			   (unsigned long long)r->offset);
	commit(r, MIG_SEC_END, 0, 0);
	return 0;
}

/* ---- API ---- */

int mig_stream_reader_next(struct mig_stream_reader *r, struct mig_section *s)
{
	uint32_t type = 0, len = 0;
	int rc;

	if (!r || !s)
		return -EINVAL;
	if (r->err)
		return r->err;
	if (r->has_returned_end) {
		log_err("migration stream (%s): read past END", r->t->desc);
		return -EPIPE;
	}
	memset(s, 0, sizeof(*s));
	rc = read_section(r, &type, &len);
	if (rc < 0)
		return rc;
	s->type = (enum mig_section_type)type;
	s->seq = r->cur_seq;
	s->offset = r->cur_off;
	s->length = len;

	switch (type) {
	case MIG_SEC_MANIFEST:
		rc = parse_manifest(r, len);
		break;
	case MIG_SEC_GUEST_PAGES:
		rc = parse_pages(r, len, s);
		break;
	case MIG_SEC_DEVICE_DATA:
		rc = parse_device_data(r, len, s);
		break;
	case MIG_SEC_DEVICE_END:
		rc = parse_device_end(r, s);
		break;
	case MIG_SEC_ROUND_END:
		rc = parse_round_end(r, s);
		break;
	case MIG_SEC_SWITCHOVER:
		rc = check_order(r, MIG_SEC_SWITCHOVER, 0, 0);
		if (rc == 0)
			commit(r, MIG_SEC_SWITCHOVER, 0, 0);
		break;
	case MIG_SEC_CHECKSUMS:
		rc = parse_checksums(r, len, s);
		break;
	case MIG_SEC_END:
		rc = parse_end(r);
		if (rc == 0)
			r->has_returned_end = true;
		break;
	default: /* check_length refused it already */
		rc = bad(r, -EBADMSG, "unknown section type %u", type);
		break;
	}
	return rc;
}

int mig_stream_reader_load_pages(struct mig_stream_reader *r, const struct mig_section *s,
				 void *mem, uint64_t mem_size)
{
	const uint32_t ps = r ? r->m.page_size : 0;
	const uint8_t *p;
	uint8_t *dst;

	if (!r || !s || !mem || s->type != MIG_SEC_GUEST_PAGES)
		return -EINVAL;
	if (r->err)
		return r->err;
	if (!r->has_pages || s->seq != r->pages_seq) {
		log_err("migration stream (%s): section %u is not the page section just read",
			r->t->desc, s->seq);
		return -EINVAL;
	}
	if (mem_size != r->m.mem_size) {
		log_err("migration stream (%s): guest memory is %llu bytes, the manifest says %llu",
			r->t->desc, (unsigned long long)mem_size,
			(unsigned long long)r->m.mem_size);
		return -EINVAL;
	}
	/* parse_pages validated the layout; this walk trusts it. */
	p = r->buf + MIG_PAGES_FIXED_LEN + s->u.pages.count;
	dst = (uint8_t *)mem + s->u.pages.start * ps;
	for (uint32_t i = 0; i < s->u.pages.count; i++, dst += ps) {
		uint32_t clen;
		size_t n;

		switch (s->u.pages.flags[i]) {
		case MIG_PAGE_ZERO:
			memset(dst, 0, ps);
			break;
		case MIG_PAGE_DATA:
			memcpy(dst, p, ps);
			p += ps;
			break;
		case MIG_PAGE_ZSTD:
			if (!r->dctx)
				r->dctx = ZSTD_createDCtx(); /* on first use */
			if (!r->dctx) {
				log_err("migration stream (%s): no memory for a zstd context",
					r->t->desc);
				return -ENOMEM;
			}
			clen = mig_get_le32(p);
			n = ZSTD_decompressDCtx(r->dctx, dst, ps, p + 4, clen);
			if (ZSTD_isError(n) || n != ps) {
				r->cur_seq = s->seq;
				r->cur_type = s->type;
				r->cur_off = s->offset;
				return bad(r, -EBADMSG, "page %llu: zstd data does not decode to %u bytes: %s",
					   (unsigned long long)(s->u.pages.start + i), ps,
					   ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short");
			}
			p += 4 + clen;
			break;
		default:
			break;
		}
	}
	return 0;
}

const struct mig_manifest *mig_stream_reader_manifest(const struct mig_stream_reader *r)
{
	return r ? &r->m : NULL;
}

uint64_t mig_stream_reader_offset(const struct mig_stream_reader *r)
{
	return r ? r->offset : 0;
}

void mig_stream_reader_destroy(struct mig_stream_reader *r)
{
	if (!r)
		return;
	ZSTD_freeDCtx(r->dctx);
	free(r->buf);
	free(r);
}

int mig_stream_reader_create(struct mig_transport *t, const struct mig_stream_reader_opts *opts,
			     struct mig_stream_reader **out)
{
	struct mig_stream_reader *r;
	struct mig_section s;
	int rc;

	if (!t || !opts || !out || opts->max_mem_size == 0 ||
	    opts->max_section_len > MIG_SECTION_MAX_LEN)
		return -EINVAL;
	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->t = t;
	r->timeout_ms = opts->timeout_ms ? opts->timeout_ms : MIG_STREAM_DEFAULT_TIMEOUT_MS;
	r->max_len = opts->max_section_len ? opts->max_section_len : MIG_SECTION_MAX_LEN;
	r->max_mem = opts->max_mem_size;
	mig_order_init(&r->order);

	rc = read_stream_header(r);
	if (rc == 0)
		rc = mig_stream_reader_next(r, &s); /* the order rules demand MANIFEST */
	if (rc < 0) {
		mig_stream_reader_destroy(r);
		return rc;
	}
	*out = r;
	return 0;
}
