/*
 * ferry-dev-dma: producing the migration data (mig_save.h).
 */
#include "mig_save.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <ferry/log.h>

static void queue_record(struct dma_mig_save *s, enum dma_mig_kind kind,
			 const struct dma_state *st)
{
	/* Drop what was read, then append: at most two records are queued
	 * (an unread PRECOPY one and the FINAL one), which buf holds. */
	memmove(s->buf, s->buf + s->off, s->len - s->off);
	s->len -= s->off;
	s->off = 0;
	dma_mig_record_encode(s->buf + s->len, kind, st);
	s->len += DMA_MIG_REC_LEN;
}

void dma_mig_save_begin(struct dma_mig_save *s, const struct dma_state *now)
{
	memset(s, 0, sizeof(*s));
	s->is_active = true;
	if (now) {
		s->snapshot = *now;
		s->has_snapshot = true;
		queue_record(s, DMA_MIG_PRECOPY, now);
	}
}

void dma_mig_save_final(struct dma_mig_save *s, const struct dma_state *stopped)
{
	if (s->is_final)
		return;
	queue_record(s, DMA_MIG_FINAL, stopped);
	s->is_final = true;
}

void dma_mig_save_end(struct dma_mig_save *s)
{
	memset(s, 0, sizeof(*s));
}

ssize_t dma_mig_save_read(struct dma_mig_save *s, const char *name, void *buf, size_t len)
{
	size_t n = s->len - s->off;

	if (!s->is_active) {
		ferry_log(FERRY_LOG_ERR, "%s: migration: save() without a data session", name);
		return -EINVAL;
	}
	if (n > len)
		n = len;
	if (n > SSIZE_MAX)
		n = SSIZE_MAX;
	memcpy(buf, s->buf + s->off, n);
	s->off += n;
	return (ssize_t)n;
}

void dma_mig_save_precopy_info(const struct dma_mig_save *s, const struct dma_state *now,
			       uint64_t *initial, uint64_t *dirty)
{
	*initial = s->is_final ? 0 : s->len - s->off;
	*dirty = s->has_snapshot && memcmp(&s->snapshot, now, sizeof(*now)) ? DMA_MIG_REC_LEN : 0;
}

uint64_t dma_mig_save_stop_copy_size(const struct dma_mig_save *s)
{
	if (!s->is_active)
		return DMA_MIG_REC_LEN;
	return s->len - s->off + (s->is_final ? 0 : DMA_MIG_REC_LEN);
}
