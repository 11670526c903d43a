/*
 * ferry-dev-dma: validation and execution of one descriptor; see exec.h.
 */
#include "exec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include <ferry/device.h>
#include <ferry/log.h>

/* True if [addr, addr + len) does not wrap around 2^64 (len > 0). */
static bool range_fits(uint64_t addr, uint64_t len)
{
	return len - 1 <= UINT64_MAX - addr;
}

/* [a, a + len) and [b, b + len) overlap; both known not to wrap (len > 0).
 * Inclusive ends: a + len itself may be 2^64. */
static bool overlaps(uint64_t a, uint64_t b, uint64_t len)
{
	return a <= b + (len - 1) && b <= a + (len - 1);
}

int dma_exec_err_from_errno(int rc)
{
	switch (rc) {
	case -EFAULT:
		return DMA_ERR_FAULT;
	case -EPERM:
	case -EACCES:
		return DMA_ERR_PERM;
	default:
		return DMA_ERR_IO;
	}
}

static int validate(const struct dma_exec *x, const struct dma_desc *d)
{
	int err = DMA_ERR_NONE;

	if (d->flags)
		err = DMA_ERR_FLAGS;
	else if (d->opcode != DMA_OP_COPY && d->opcode != DMA_OP_FILL)
		err = DMA_ERR_OPCODE;
	else if (d->len > DMA_MAX_XFER)
		err = DMA_ERR_LEN;
	else if (d->len && !range_fits(d->dst, d->len))
		err = DMA_ERR_RANGE;
	else if (d->len && d->opcode == DMA_OP_COPY && !range_fits(d->src, d->len))
		err = DMA_ERR_RANGE;
	else if (d->len && d->opcode == DMA_OP_COPY && overlaps(d->src, d->dst, d->len))
		err = DMA_ERR_OVERLAP;

	if (err)
		ferry_log(FERRY_LOG_DEBUG,
			  "%s: bad descriptor cookie %#" PRIx32 ": opcode %u flags %#x len %" PRIu32
			  " src %#" PRIx64 " dst %#" PRIx64 ": error %d",
			  x->name, d->cookie, d->opcode, d->flags, d->len, d->src, d->dst, err);
	return err;
}

static bool aborted(const struct dma_exec *x)
{
	return atomic_load_explicit(x->abort, memory_order_acquire);
}

static int transfer_failed(const struct dma_exec *x, const struct dma_desc *d, const char *what,
			   uint64_t addr, int rc)
{
	ferry_log(FERRY_LOG_DEBUG, "%s: descriptor cookie %#" PRIx32 ": %s at %#" PRIx64 " failed: %s",
		  x->name, d->cookie, what, addr, strerror(-rc));
	return dma_exec_err_from_errno(rc);
}

static int exec_copy(const struct dma_exec *x, const struct dma_desc *d)
{
	for (uint64_t done = 0; done < d->len;) {
		size_t n = d->len - done < DMA_EXEC_CHUNK ? (size_t)(d->len - done) : DMA_EXEC_CHUNK;
		int rc;

		if (aborted(x))
			return DMA_EXEC_ABORTED;
		rc = ferry_dma_read(x->dev, d->src + done, x->bounce, n);
		if (rc < 0)
			return transfer_failed(x, d, "read", d->src + done, rc);
		rc = ferry_dma_write(x->dev, d->dst + done, x->bounce, n);
		if (rc < 0)
			return transfer_failed(x, d, "write", d->dst + done, rc);
		done += n;
	}
	return DMA_ERR_NONE;
}

static int exec_fill(const struct dma_exec *x, const struct dma_desc *d)
{
	size_t first = d->len < DMA_EXEC_CHUNK ? d->len : DMA_EXEC_CHUNK;
	uint8_t pattern[8];

	/* The pattern is little-endian in the descriptor: byte i of dst is
	 * byte (i % 8) of it. DMA_EXEC_CHUNK is a multiple of 8, so every
	 * chunk starts at pattern byte 0. */
	for (unsigned i = 0; i < 8; i++)
		pattern[i] = (uint8_t)(d->src >> (8 * i));
	for (size_t i = 0; i < first; i++)
		x->bounce[i] = pattern[i & 7];

	for (uint64_t done = 0; done < d->len;) {
		size_t n = d->len - done < DMA_EXEC_CHUNK ? (size_t)(d->len - done) : DMA_EXEC_CHUNK;
		int rc;

		if (aborted(x))
			return DMA_EXEC_ABORTED;
		rc = ferry_dma_write(x->dev, d->dst + done, x->bounce, n);
		if (rc < 0)
			return transfer_failed(x, d, "write", d->dst + done, rc);
		done += n;
	}
	return DMA_ERR_NONE;
}

_Static_assert(DMA_EXEC_CHUNK % 8 == 0, "fill chunks keep the pattern phase");

int dma_exec_desc(const struct dma_exec *x, const struct dma_desc *d)
{
	int err = validate(x, d);

	if (err)
		return err;
	switch (d->opcode) {
	case DMA_OP_COPY:
		return exec_copy(x, d);
	case DMA_OP_FILL:
		return exec_fill(x, d);
	}
	return DMA_ERR_OPCODE; /* unreachable: validate() checked */
}
