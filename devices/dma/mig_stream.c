/*
 * ferry-dev-dma: encoding and checking migration records (mig_stream.h).
 * The state is converted field by field, never copied as a struct, so the
 * format does not depend on the host's byte order or the compiler's layout.
 */
#include "mig_stream.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <zlib.h>

#include <ferry/log.h>

/* Header offsets. */
#define H_MAGIC     0u
#define H_VERSION   4u
#define H_KIND      6u
#define H_STATE_LEN 8u
#define H_STATE_VER 12u
#define H_CRC       16u
#define H_RESERVED  20u

struct cursor {
	uint8_t *p;
	const uint8_t *q;
};

static void put16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static void w32(struct cursor *c, uint32_t v)
{
	put32(c->p, v);
	c->p += 4;
}

static void w64(struct cursor *c, uint64_t v)
{
	put64(c->p, v);
	c->p += 8;
}

static uint32_t r32(struct cursor *c)
{
	uint32_t v = get32(c->q);

	c->q += 4;
	return v;
}

static uint64_t r64(struct cursor *c)
{
	uint64_t v = get64(c->q);

	c->q += 8;
	return v;
}

static void state_encode(uint8_t *out, const struct dma_state *st)
{
	struct cursor c = { .p = out };

	w32(&c, st->control);
	w32(&c, st->status);
	w64(&c, st->ring_base);
	w32(&c, st->ring_size);
	w32(&c, st->irq_coalesce);
	w32(&c, st->head);
	w32(&c, st->tail);
	w64(&c, st->completed);
	w64(&c, st->errors);
	w64(&c, st->irqs);
	w64(&c, st->peer_doorbell);
	w32(&c, st->since_irq);
	w32(&c, st->peer_held);
	w64(&c, st->peer_writes);
	for (unsigned i = 0; i < DMA_PEER_HOLD_MAX; i++) {
		w64(&c, st->held[i].addr);
		w64(&c, st->held[i].value);
	}
}

static void state_decode(const uint8_t *in, struct dma_state *st)
{
	struct cursor c = { .q = in };

	st->control = r32(&c);
	st->status = r32(&c);
	st->ring_base = r64(&c);
	st->ring_size = r32(&c);
	st->irq_coalesce = r32(&c);
	st->head = r32(&c);
	st->tail = r32(&c);
	st->completed = r64(&c);
	st->errors = r64(&c);
	st->irqs = r64(&c);
	st->peer_doorbell = r64(&c);
	st->since_irq = r32(&c);
	st->peer_held = r32(&c);
	st->peer_writes = r64(&c);
	for (unsigned i = 0; i < DMA_PEER_HOLD_MAX; i++) {
		st->held[i].addr = r64(&c);
		st->held[i].value = r64(&c);
	}
}

/* crc32 of header bytes 0..15, then the state. */
static uint32_t record_crc(const uint8_t *rec)
{
	uLong crc = crc32(0L, Z_NULL, 0);

	crc = crc32(crc, rec, H_CRC);
	crc = crc32(crc, rec + DMA_MIG_HDR_LEN, DMA_MIG_STATE_LEN);
	return (uint32_t)crc;
}

void dma_mig_record_encode(uint8_t out[DMA_MIG_REC_LEN], enum dma_mig_kind kind,
			   const struct dma_state *st)
{
	memcpy(out + H_MAGIC, DMA_MIG_MAGIC, 4);
	put16(out + H_VERSION, DMA_MIG_VERSION);
	put16(out + H_KIND, (uint16_t)kind);
	put32(out + H_STATE_LEN, DMA_MIG_STATE_LEN);
	put32(out + H_STATE_VER, DMA_STATE_VERSION);
	put32(out + H_RESERVED, 0);
	state_encode(out + DMA_MIG_HDR_LEN, st);
	put32(out + H_CRC, record_crc(out));
}

int dma_mig_header_check(const char *name, uint64_t at, const uint8_t hdr[DMA_MIG_HDR_LEN])
{
	uint16_t version = get16(hdr + H_VERSION), kind = get16(hdr + H_KIND);
	uint32_t len = get32(hdr + H_STATE_LEN), state_ver = get32(hdr + H_STATE_VER);
	uint32_t reserved = get32(hdr + H_RESERVED);

	if (memcmp(hdr + H_MAGIC, DMA_MIG_MAGIC, 4)) {
		ferry_log(FERRY_LOG_ERR, "%s: migration data @%" PRIu64 ": no record magic "
			  "(%02x %02x %02x %02x): not a ferry-dev-dma stream", name, at, hdr[0],
			  hdr[1], hdr[2], hdr[3]);
		return -EINVAL;
	}
	if (version != DMA_MIG_VERSION || state_ver != DMA_STATE_VERSION) {
		ferry_log(FERRY_LOG_ERR, "%s: migration data @%" PRIu64 ": record version %u with "
			  "state version %" PRIu32 ", this device reads %u with %u", name, at, version,
			  state_ver, DMA_MIG_VERSION, DMA_STATE_VERSION);
		return -EINVAL;
	}
	if ((kind != DMA_MIG_PRECOPY && kind != DMA_MIG_FINAL) || len != DMA_MIG_STATE_LEN ||
	    reserved) {
		ferry_log(FERRY_LOG_ERR, "%s: migration data @%" PRIu64 ": record kind %u, state "
			  "length %" PRIu32 " (want %" PRIu32 "), reserved %#" PRIx32, name, at, kind,
			  len, DMA_MIG_STATE_LEN, reserved);
		return -EINVAL;
	}
	return 0;
}

int dma_mig_record_decode(const char *name, uint64_t at, const uint8_t rec[DMA_MIG_REC_LEN],
			  enum dma_mig_kind *kind, struct dma_state *st)
{
	uint32_t want = get32(rec + H_CRC), got;
	const char *why;

	if (dma_mig_header_check(name, at, rec) < 0)
		return -EINVAL;
	got = record_crc(rec);
	if (got != want) {
		ferry_log(FERRY_LOG_ERR, "%s: migration data @%" PRIu64 ": record crc %#010" PRIx32
			  ", the source sent %#010" PRIx32 ": corrupted", name, at, got, want);
		return -EINVAL;
	}
	state_decode(rec + DMA_MIG_HDR_LEN, st);
	why = dma_state_check(st);
	if (why) {
		ferry_log(FERRY_LOG_ERR, "%s: migration data @%" PRIu64 ": impossible device state: "
			  "%s", name, at, why);
		return -EINVAL;
	}
	*kind = (enum dma_mig_kind)get16(rec + H_KIND);
	return 0;
}
