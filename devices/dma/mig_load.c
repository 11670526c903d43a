/*
 * ferry-dev-dma: parsing the migration data (mig_load.h): a small state
 * machine fed by arbitrary chunks, gathering one fixed-size record at a
 * time in an accumulator.
 */
#include "mig_load.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <ferry/log.h>

static const char *const phase_names[] = {
	[DMA_LOAD_IDLE] = "no session", [DMA_LOAD_HEADER] = "a record header",
	[DMA_LOAD_STATE] = "a record's state", [DMA_LOAD_DONE] = "done",
	[DMA_LOAD_FAILED] = "failed",
};

void dma_mig_load_begin(struct dma_mig_load *l)
{
	memset(l, 0, sizeof(*l));
	l->phase = DMA_LOAD_HEADER;
}

void dma_mig_load_end(struct dma_mig_load *l)
{
	memset(l, 0, sizeof(*l));
}

static int fail(struct dma_mig_load *l)
{
	l->phase = DMA_LOAD_FAILED;
	return -EINVAL;
}

/* Moves bytes into the accumulator until it holds @want; true when it does. */
static bool gather(struct dma_mig_load *l, size_t want, const uint8_t **p, size_t *len)
{
	size_t n = want - l->acc_len;

	if (n > *len)
		n = *len;
	memcpy(l->acc + l->acc_len, *p, n);
	l->acc_len += n;
	l->offset += n;
	*p += n;
	*len -= n;
	return l->acc_len == want;
}

static int on_record(struct dma_mig_load *l, const char *name)
{
	uint64_t at = l->offset - DMA_MIG_REC_LEN;
	enum dma_mig_kind kind;
	struct dma_state st;

	if (dma_mig_record_decode(name, at, l->acc, &kind, &st) < 0)
		return fail(l);
	l->records++;
	l->acc_len = 0;
	if (kind == DMA_MIG_FINAL) {
		l->final = st;
		l->phase = DMA_LOAD_DONE;
	} else {
		l->phase = DMA_LOAD_HEADER; /* a pre-copy snapshot: checked, superseded */
	}
	return 0;
}

int dma_mig_load_write(struct dma_mig_load *l, const char *name, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		switch (l->phase) {
		case DMA_LOAD_HEADER:
			if (!gather(l, DMA_MIG_HDR_LEN, &p, &len))
				break;
			if (dma_mig_header_check(name, l->offset - DMA_MIG_HDR_LEN, l->acc) < 0)
				return fail(l);
			l->phase = DMA_LOAD_STATE;
			break;
		case DMA_LOAD_STATE:
			if (gather(l, DMA_MIG_REC_LEN, &p, &len) && on_record(l, name) < 0)
				return -EINVAL;
			break;
		case DMA_LOAD_DONE:
			ferry_log(FERRY_LOG_ERR, "%s: migration data @%" PRIu64 ": %zu bytes after the "
				  "final record", name, l->offset, len);
			return fail(l);
		case DMA_LOAD_FAILED:
			ferry_log(FERRY_LOG_ERR, "%s: migration data after the stream was refused",
				  name);
			return -EINVAL;
		case DMA_LOAD_IDLE:
		default:
			ferry_log(FERRY_LOG_ERR, "%s: migration: load() without a data session", name);
			return -EINVAL;
		}
	}
	return 0;
}

int dma_mig_load_finish(const struct dma_mig_load *l, const char *name, struct dma_state *out)
{
	if (l->phase != DMA_LOAD_DONE) {
		ferry_log(FERRY_LOG_ERR, "%s: migration: RESUMING -> STOP with %s data: %" PRIu64
			  " bytes, %" PRIu64 " records in, stopped in %s (%zu bytes of it)", name,
			  l->phase == DMA_LOAD_FAILED ? "invalid" : "incomplete", l->offset, l->records,
			  phase_names[l->phase], l->acc_len);
		return -EINVAL;
	}
	*out = l->final;
	return 0;
}
