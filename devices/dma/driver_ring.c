/*
 * The guest driver of ferry-dev-dma, the running part: queueing ops,
 * reaping and checking their completions, waiting for interrupts.
 */
#include "driver_priv.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ferry/log.h>

#include "workload.h"

/* While waiting on the interrupt eventfd, look at the ring this often
 * anyway: a lost interrupt costs latency, never progress. */
#define IRQ_RECHECK_MS 5

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- submitting ---- */

/* Turns the generated op for @seq into what @kind asks for. A bad or peer
 * op's dst window is the whole dst buffer, which must come back untouched.
 * @slots: the doorbell slots of a peer op. */
static void make_desc(struct dma_driver *d, uint64_t seq, uint8_t kind, unsigned slots,
		      struct dma_wl_op *op, struct dma_desc *out)
{
	uint32_t slot = slot_of(d, seq);
	uint64_t src = buf_iova(d, src_buf(d, slot)) + op->src_off;
	uint64_t dst = buf_iova(d, dst_buf(d, slot)) + op->dst_off;

	out->opcode = op->opcode;
	out->flags = 0;
	out->len = op->len;
	out->src = op->opcode == DMA_OP_FILL ? op->pattern : src;
	out->dst = dst;
	switch (kind) {
	case DMA_KIND_BAD_SRC:
		out->opcode = DMA_OP_COPY;
		out->src = DMA_DRV_UNMAPPED_IOVA;
		break;
	case DMA_KIND_BAD_DST:
		out->opcode = DMA_OP_FILL;
		out->dst = DMA_DRV_UNMAPPED_IOVA;
		break;
	case DMA_KIND_BAD_LEN:
		out->len = DMA_MAX_XFER + 1;
		break;
	case DMA_KIND_BAD_OPCODE:
		out->opcode = 0x7f;
		break;
	case DMA_KIND_BAD_RANGE:
		out->opcode = DMA_OP_FILL;
		out->dst = UINT64_MAX - 15;
		out->len = 64;
		break;
	case DMA_KIND_BAD_OVERLAP:
		out->opcode = DMA_OP_COPY;
		out->src = dst;
		out->dst = dst + 1;
		out->len = op->len > 2 ? op->len - 1 : 2; /* len 1 would not overlap */
		break;
	case DMA_KIND_BAD_PEER:
		out->opcode = DMA_OP_PEER_NOTIFY;
		out->len = DMA_PEER_WRITE;
		out->src = DMA_DRV_PEER_VALUE(seq);
		out->dst = DMA_PEER_PAGE;
		break;
	case DMA_KIND_PEER:
		out->opcode = DMA_OP_PEER_NOTIFY;
		out->len = DMA_PEER_WRITE;
		out->src = DMA_DRV_PEER_VALUE(seq);
		out->dst = (seq % slots) * DMA_PEER_WRITE;
		break;
	}
}

static uint32_t expected_err(uint8_t kind)
{
	static const uint32_t errs[DMA_KIND_NUM] = {
		[DMA_KIND_GOOD] = DMA_ERR_NONE,
		[DMA_KIND_BAD_SRC] = DMA_ERR_FAULT,
		[DMA_KIND_BAD_DST] = DMA_ERR_FAULT,
		[DMA_KIND_BAD_LEN] = DMA_ERR_LEN,
		[DMA_KIND_BAD_OPCODE] = DMA_ERR_OPCODE,
		[DMA_KIND_BAD_RANGE] = DMA_ERR_RANGE,
		[DMA_KIND_BAD_OVERLAP] = DMA_ERR_OVERLAP,
		[DMA_KIND_BAD_PEER] = DMA_ERR_RANGE,
		[DMA_KIND_PEER] = DMA_ERR_NONE,
	};
	return kind < DMA_KIND_NUM ? errs[kind] : UINT32_MAX;
}

/* The part of the dst buffer that is poisoned before and checked after. */
static void dst_window(const struct dma_driver *d, uint8_t kind, const struct dma_wl_op *op,
		       uint32_t *start, uint32_t *len)
{
	if (kind != DMA_KIND_GOOD) {
		*start = 0;
		*len = d->sh->buf_size;
		return;
	}
	*start = op->dst_off - DMA_WL_GUARD;
	*len = op->len + 2 * DMA_WL_GUARD;
}

static void queue_one(struct dma_driver *d, uint8_t kind, unsigned slots)
{
	struct dma_drv_shared *sh = d->sh;
	uint64_t seq = sh->submitted;
	uint32_t slot = slot_of(d, seq), wstart, wlen;
	struct dma_desc *desc = &d->ring[slot], nd;
	struct dma_wl_op op;

	dma_wl_gen_op(sh->seed, seq, sh->buf_size, &op);
	if (op.opcode == DMA_OP_COPY && kind == DMA_KIND_GOOD) {
		dma_wl_gen_data(sh->seed, seq, src_buf(d, slot) + op.src_off, op.len);
		dirtied(d, src_buf(d, slot) + op.src_off, op.len);
	}
	dst_window(d, kind, &op, &wstart, &wlen);
	memset(dst_buf(d, slot) + wstart, op.poison, wlen);
	dirtied(d, dst_buf(d, slot) + wstart, wlen);

	make_desc(d, seq, kind, slots, &op, &nd);
	desc->opcode = htole16(nd.opcode);
	desc->flags = 0;
	desc->len = htole32(nd.len);
	desc->src = htole64(nd.src);
	desc->dst = htole64(nd.dst);
	desc->cookie = htole32((uint32_t)seq);
	__atomic_store_n(&desc->status, 0, __ATOMIC_RELAXED);
	dirtied(d, desc, sizeof(*desc));
	d->kinds[slot] = kind;
	dirtied(d, &d->kinds[slot], 1);
	sh->submitted = seq + 1;
}

/* @kind: DMA_KIND_GOOD, DMA_KIND_PEER, or any bad one for a cycle of them. */
static int submit(struct dma_driver *d, unsigned n, uint8_t kind, unsigned slots)
{
	struct dma_drv_shared *sh = d->sh;
	uint64_t room = sh->ring_entries - (sh->submitted - sh->reaped);
	unsigned queued = 0;
	int rc;

	for (; queued < n && queued < room; queued++) {
		uint8_t k = kind;

		if (k != DMA_KIND_GOOD && k != DMA_KIND_PEER)
			k = (uint8_t)(1 + sh->submitted % DMA_KIND_NUM_BAD);
		queue_one(d, k, slots);
	}
	dirtied(d, sh, sizeof(*sh));
	if (!queued)
		return 0;
	/* Descriptors before the doorbell (the write is a message: a syscall
	 * orders it after our stores; the fence says so to the compiler). */
	atomic_thread_fence(memory_order_release);
	rc = drv_reg_write(d, DMA_REG_RING_TAIL, (uint32_t)sh->submitted);
	return rc < 0 ? rc : (int)queued;
}

int dma_driver_submit(struct dma_driver *d, unsigned n)
{
	return submit(d, n, DMA_KIND_GOOD, 1);
}

int dma_driver_submit_bad(struct dma_driver *d, unsigned n)
{
	return submit(d, n, DMA_KIND_BAD_SRC, 1);
}

int dma_driver_submit_peer(struct dma_driver *d, unsigned n, unsigned slots)
{
	if (!slots || slots > DMA_DRV_PEER_SLOTS) {
		ferry_log(FERRY_LOG_ERR, "%s: %u peer doorbell slots: 1..%u", dname(d), slots,
			  DMA_DRV_PEER_SLOTS);
		return -EINVAL;
	}
	return submit(d, n, DMA_KIND_PEER, slots);
}

/* ---- reaping ---- */

static uint32_t load_status(const struct dma_desc *desc)
{
	return le32toh(__atomic_load_n(&desc->status, __ATOMIC_ACQUIRE));
}

static bool oldest_done(const struct dma_driver *d)
{
	const struct dma_drv_shared *sh = d->sh;

	return sh->reaped != sh->submitted &&
	       (load_status(&d->ring[slot_of(d, sh->reaped)]) & DMA_ST_DONE);
}

/* Checks op @seq against its completion @status. Returns NULL when right,
 * else what is wrong (and *@at, the dst offset of a wrong byte, if any). */
static const char *check_op(struct dma_driver *d, uint64_t seq, uint32_t status, int64_t *at,
			    unsigned *got, unsigned *want)
{
	uint32_t slot = slot_of(d, seq), wstart, wlen;
	uint8_t kind = d->kinds[slot], w = 0;
	const uint8_t *dst = dst_buf(d, slot);
	struct dma_wl_op op;
	size_t i;

	*at = -1;
	if (((status & DMA_ST_ECHO_MASK) >> DMA_ST_ECHO_SHIFT) != (seq & 0xffff))
		return "status echoes another descriptor's cookie";
	if (kind >= DMA_KIND_NUM)
		return "slot kind byte corrupted";
	if ((status & DMA_ST_ERR_MASK) != expected_err(kind))
		return kind == DMA_KIND_GOOD ? "good op failed"
		       : kind == DMA_KIND_PEER ? "peer op failed"
					       : "bad op got the wrong error";

	dma_wl_gen_op(d->sh->seed, seq, d->sh->buf_size, &op);
	dst_window(d, kind, &op, &wstart, &wlen);
	if (kind != DMA_KIND_GOOD) {
		i = dma_wl_check_byte(op.poison, dst, wlen);
		w = op.poison;
		if (i == wlen)
			return NULL;
		*at = (int64_t)i;
		*got = dst[i];
		*want = w;
		return kind == DMA_KIND_PEER ? "peer op wrote its destination buffer"
					      : "bad op wrote its destination buffer";
	}
	i = dma_wl_check_byte(op.poison, dst + wstart, DMA_WL_GUARD);
	if (i < DMA_WL_GUARD) {
		*at = (int64_t)(wstart + i);
		w = op.poison;
		goto wrong;
	}
	i = dma_wl_check_byte(op.poison, dst + op.dst_off + op.len, DMA_WL_GUARD);
	if (i < DMA_WL_GUARD) {
		*at = (int64_t)(op.dst_off + op.len + i);
		w = op.poison;
		goto wrong;
	}
	if (op.opcode == DMA_OP_COPY)
		i = dma_wl_check_data(d->sh->seed, seq, dst + op.dst_off, op.len, &w);
	else
		i = dma_wl_check_fill(op.pattern, dst + op.dst_off, op.len, &w);
	if (i == op.len)
		return NULL;
	*at = (int64_t)(op.dst_off + i);
wrong:
	*got = dst[*at];
	*want = w;
	return "destination bytes wrong";
}

/* Consumes pending interrupts (counting them), as an interrupt handler
 * acknowledges before it reaps; never blocks. */
static void irq_ack(struct dma_driver *d)
{
	uint64_t cnt;

	if (d->irq_fd >= 0 && read(d->irq_fd, &cnt, sizeof(cnt)) == sizeof(cnt))
		d->irqs += cnt;
}

int dma_driver_poll(struct dma_driver *d)
{
	struct dma_drv_shared *sh = d->sh;
	int n = 0;

	irq_ack(d);

	while (sh->reaped != sh->submitted && n < INT32_MAX) {
		uint64_t seq = sh->reaped;
		uint32_t status = load_status(&d->ring[slot_of(d, seq)]);
		const char *why;
		unsigned got = 0, want = 0;
		int64_t at;

		if (!(status & DMA_ST_DONE))
			break;
		why = check_op(d, seq, status, &at, &got, &want);
		if (status & DMA_ST_ERR_MASK)
			sh->err_completions++;
		if (why) {
			sh->failures++;
			ferry_log(FERRY_LOG_ERR,
				  "%s: op %" PRIu64 " (slot %u, kind %u): %s: status %#x, dst byte %" PRId64
				  " is %#x, want %#x", dname(d), seq, slot_of(d, seq),
				  d->kinds[slot_of(d, seq)], why, status, at, got, want);
		} else if (d->kinds[slot_of(d, seq)] == DMA_KIND_GOOD) {
			sh->verified++;
		} else if (d->kinds[slot_of(d, seq)] == DMA_KIND_PEER) {
			sh->peer_ok++;
		} else {
			sh->bad_ok++;
		}
		sh->reaped = seq + 1;
		n++;
	}
	if (n)
		dirtied(d, sh, sizeof(*sh));
	return n;
}

int dma_driver_wait(struct dma_driver *d, int timeout_ms)
{
	int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);

	for (;;) {
		int64_t left;

		if (oldest_done(d))
			return 1;
		if (d->sh->reaped == d->sh->submitted)
			return 0;
		left = deadline - now_ms();
		if (left <= 0)
			return 0;
		if (d->irq_fd >= 0) {
			struct pollfd pfd = { .fd = d->irq_fd, .events = POLLIN };

			if (poll(&pfd, 1, left < IRQ_RECHECK_MS ? (int)left : IRQ_RECHECK_MS) > 0)
				irq_ack(d);
		} else {
			struct timespec ts = { .tv_nsec = 20 * 1000 };

			nanosleep(&ts, NULL);
		}
	}
}

static int reap_until(struct dma_driver *d, uint64_t submit_goal, int timeout_ms)
{
	struct dma_drv_shared *sh = d->sh;
	uint64_t failures = sh->failures;
	int64_t last = now_ms();

	while (sh->reaped < submit_goal || sh->reaped != sh->submitted) {
		int rc;

		if (sh->submitted < submit_goal) {
			uint64_t want = submit_goal - sh->submitted;

			rc = dma_driver_submit(d, want > sh->ring_entries ? sh->ring_entries
									   : (unsigned)want);
			if (rc < 0)
				return rc;
		}
		if (dma_driver_poll(d) > 0) {
			last = now_ms();
			continue;
		}
		if (now_ms() - last > timeout_ms) {
			ferry_log(FERRY_LOG_ERR,
				  "%s: no completion for %d ms: op %" PRIu64 " (slot %u) still pending, %"
				  PRIu64 " in flight", dname(d), timeout_ms, sh->reaped,
				  slot_of(d, sh->reaped), sh->submitted - sh->reaped);
			return -ETIMEDOUT;
		}
		dma_driver_wait(d, IRQ_RECHECK_MS * 4);
	}
	return sh->failures != failures ? -EIO : 0;
}

int dma_driver_run(struct dma_driver *d, uint64_t nr_ops, int timeout_ms)
{
	return reap_until(d, d->sh->submitted + nr_ops, timeout_ms);
}

int dma_driver_drain(struct dma_driver *d, int timeout_ms)
{
	return reap_until(d, d->sh->submitted, timeout_ms);
}
