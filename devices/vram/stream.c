/* Encoding and checking the fixed parts of the stream (format: stream.h). */
#include "stream.h"

#include <errno.h>
#include <string.h>

#include <ferry/log.h>

#include "util/crc32.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the stream is little-endian");

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, sizeof(v));
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

void vram_regs_encode(uint8_t out[VRAM_REGS_LEN], const struct vram_reg_block *r)
{
	put32(out + 0, r->control);
	put32(out + 4, r->rate);
	put32(out + 8, r->seed);
	put32(out + 12, r->engine_first);
	put32(out + 16, r->engine_count);
	put32(out + 20, r->checksum);
	put32(out + 24, r->csum_count);
	put32(out + 28, 0);
	put64(out + 32, r->engine_writes);
	put64(out + 40, r->generation);
}

int vram_regs_decode(const char *name, const uint8_t in[VRAM_REGS_LEN],
		     struct vram_reg_block *r)
{
	r->control = get32(in + 0);
	r->rate = get32(in + 4);
	r->seed = get32(in + 8);
	r->engine_first = get32(in + 12);
	r->engine_count = get32(in + 16);
	r->checksum = get32(in + 20);
	r->csum_count = get32(in + 24);
	r->engine_writes = get64(in + 32);
	r->generation = get64(in + 40);
	if (r->control & ~VRAM_CTRL_MASK) {
		ferry_log(FERRY_LOG_ERR, "%s: stream: CONTROL 0x%x has unknown bits", name,
			  r->control);
		return -EINVAL;
	}
	if (r->rate > VRAM_RATE_MAX) {
		ferry_log(FERRY_LOG_ERR, "%s: stream: ENGINE_RATE %u > %u", name, r->rate,
			  VRAM_RATE_MAX);
		return -EINVAL;
	}
	if (get32(in + 28) != 0) {
		ferry_log(FERRY_LOG_ERR, "%s: stream: register block reserved word not 0", name);
		return -EINVAL;
	}
	return 0;
}

void vram_header_encode(uint8_t out[VRAM_HDR_LEN], const struct vram_stream_header *h)
{
	memcpy(out, VRAM_STREAM_MAGIC, 8);
	put32(out + 8, VRAM_STREAM_VERSION);
	put32(out + 12, VRAM_HDR_LEN);
	put32(out + 16, VRAM_PAGE_SIZE);
	put32(out + 20, VRAM_REGS_LEN);
	put64(out + 24, h->vram_size);
	put64(out + 32, h->npages);
	vram_regs_encode(out + 40, &h->regs);
	put32(out + 88, 0);
	put32(out + 92, ferry_crc32(0, out, 92));
}

int vram_header_decode(const char *name, const uint8_t in[VRAM_HDR_LEN],
		       struct vram_stream_header *h)
{
	if (memcmp(in, VRAM_STREAM_MAGIC, 8) != 0) {
		ferry_log(FERRY_LOG_ERR, "%s: stream: bad magic (not a vram device stream)", name);
		return -EINVAL;
	}
	if (get32(in + 8) != VRAM_STREAM_VERSION) {
		ferry_log(FERRY_LOG_ERR, "%s: stream: version %u, this device reads %u", name,
			  get32(in + 8), VRAM_STREAM_VERSION);
		return -EINVAL;
	}
	if (get32(in + 92) != ferry_crc32(0, in, 92)) {
		ferry_log(FERRY_LOG_ERR, "%s: stream: header checksum mismatch", name);
		return -EINVAL;
	}
	if (get32(in + 12) != VRAM_HDR_LEN || get32(in + 16) != VRAM_PAGE_SIZE ||
	    get32(in + 20) != VRAM_REGS_LEN || get32(in + 88) != 0) {
		ferry_log(FERRY_LOG_ERR,
			  "%s: stream: header_len %u page_size %u regs_len %u flags 0x%x, "
			  "expected %u %u %u 0",
			  name, get32(in + 12), get32(in + 16), get32(in + 20), get32(in + 88),
			  VRAM_HDR_LEN, VRAM_PAGE_SIZE, VRAM_REGS_LEN);
		return -EINVAL;
	}
	h->vram_size = get64(in + 24);
	h->npages = get64(in + 32);
	if (h->vram_size % VRAM_PAGE_SIZE || h->npages != h->vram_size / VRAM_PAGE_SIZE) {
		ferry_log(FERRY_LOG_ERR, "%s: stream: vram_size %llu and npages %llu disagree",
			  name, (unsigned long long)h->vram_size, (unsigned long long)h->npages);
		return -EINVAL;
	}
	return vram_regs_decode(name, in + 40, &h->regs);
}

void vram_rec_encode(uint8_t out[VRAM_REC_LEN], uint32_t type, uint32_t aux, uint64_t arg)
{
	put32(out, type);
	put32(out + 4, aux);
	put64(out + 8, arg);
}

void vram_rec_decode(const uint8_t in[VRAM_REC_LEN], struct vram_rec *r)
{
	r->type = get32(in);
	r->aux = get32(in + 4);
	r->arg = get64(in + 8);
}

void vram_trailer_encode(uint8_t out[VRAM_TRAILER_LEN], const struct vram_trailer *t)
{
	uint8_t *b = out + VRAM_REC_LEN;

	vram_rec_encode(out, VRAM_REC_TRAILER, VRAM_TRAILER_BODY, 0);
	put64(b + 0, t->page_records);
	put64(b + 8, t->vram_digest);
	put32(b + 16, t->stream_crc);
	put32(b + 20, 0);
	vram_regs_encode(b + 24, &t->regs);
	put32(b + 72, ferry_crc32(0, out, VRAM_REC_LEN + 72));
	put32(b + 76, 0);
}

int vram_trailer_decode(const char *name, const uint8_t in[VRAM_TRAILER_LEN],
			struct vram_trailer *t)
{
	const uint8_t *b = in + VRAM_REC_LEN;

	if (get32(b + 72) != ferry_crc32(0, in, VRAM_REC_LEN + 72)) {
		ferry_log(FERRY_LOG_ERR, "%s: stream: trailer checksum mismatch", name);
		return -EINVAL;
	}
	if (get32(b + 20) != 0 || get32(b + 76) != 0) {
		ferry_log(FERRY_LOG_ERR, "%s: stream: trailer reserved words not 0", name);
		return -EINVAL;
	}
	t->page_records = get64(b + 0);
	t->vram_digest = get64(b + 8);
	t->stream_crc = get32(b + 16);
	return vram_regs_decode(name, b + 24, &t->regs);
}
