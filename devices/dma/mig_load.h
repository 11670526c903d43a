/*
 * ferry-dev-dma: the destination side of a migration data session: parses
 * the records of mig_stream.h incrementally, across chunk boundaries of any
 * size, and validates them. Pure: applying the state is the caller's
 * (migration.c, at RESUMING -> STOP).
 *
 * Each record header is checked as soon as its DMA_MIG_HDR_LEN bytes are in
 * (a stream of another kind or version fails at its first write), each
 * record as soon as it is complete (crc, state). The first failure logs one
 * line and poisons the session: every later write and finish fail. A stream
 * that is merely incomplete does not poison: finish fails, and more data
 * may still follow.
 *
 * Memory: one record's worth, fixed; nothing is allocated from stream
 * fields. Message thread only.
 */
#ifndef FERRY_DEV_DMA_MIG_LOAD_H
#define FERRY_DEV_DMA_MIG_LOAD_H

#include <stddef.h>
#include <stdint.h>

#include "mig_stream.h"

enum dma_mig_load_phase {
	DMA_LOAD_IDLE,   /* no session */
	DMA_LOAD_HEADER, /* gathering a record header */
	DMA_LOAD_STATE,  /* gathering its state */
	DMA_LOAD_DONE,   /* the FINAL record is in: nothing may follow */
	DMA_LOAD_FAILED, /* refused: sticky until the next session */
};

struct dma_mig_load {
	enum dma_mig_load_phase phase;
	uint8_t acc[DMA_MIG_REC_LEN]; /* the record being gathered */
	size_t acc_len;
	uint64_t offset;              /* stream bytes taken, for log lines */
	uint64_t records;             /* records accepted */
	struct dma_state final;       /* DMA_LOAD_DONE: the state to apply */
};

/* STOP -> RESUMING: a fresh parser, nothing received. */
void dma_mig_load_begin(struct dma_mig_load *l);
/* Drops the session. */
void dma_mig_load_end(struct dma_mig_load *l);

/* The migration op load(): takes all @len bytes, or fails with -EINVAL
 * (logged with @name) and poisons the session. */
int dma_mig_load_write(struct dma_mig_load *l, const char *name, const void *buf, size_t len);

/* RESUMING -> STOP: 0 and the state to apply in *@out if a complete valid
 * stream came in; else -EINVAL with one log line, *@out untouched. */
int dma_mig_load_finish(const struct dma_mig_load *l, const char *name, struct dma_state *out);

#endif /* FERRY_DEV_DMA_MIG_LOAD_H */
