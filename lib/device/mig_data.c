/*
 * The migration data stream (PROTOCOL.md §7.7): MIG_DATA_READ on a source,
 * MIG_DATA_WRITE on a destination, and the library's part of the stream
 * around the model's bytes (mig.h: prefix | model | trailer).
 *
 * Source. A read is filled completely unless the stream has nothing more:
 * the unread prefix first, then save() is called until the request is full
 * or it returns 0 (a model may return short counts at its round
 * boundaries: those do not end the reply). In PRE_COPY a 0 from save()
 * ends the reply ("nothing now"); in STOP_COPY it ends the model's data,
 * the trailer is taken then (the device is stopped: the state is final),
 * handed out, and every later read returns 0. A reply with size 0 in
 * STOP_COPY is therefore the end, forever, as the kernel's read() of 0.
 *
 * Destination. Chunks of any size: the prefix is gathered (checked as soon
 * as its header is in, applied once complete: in RESUMING nothing runs),
 * then every byte goes to load() except the newest trailer_len ones, kept
 * in a ring until RESUMING -> STOP shows whether they are the trailer.
 * Every write is consumed whole or refused; a refusal sticks until the
 * next RESUMING, so a restore cannot succeed with a hole in its stream.
 *
 * The same fill and feed serve the mig_shm extension (mig_shm.c), which
 * only changes where the bytes are.
 */
#include "device/mig.h"
#include "util/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* ---- source ---- */

void mig_save_begin(struct ferry_device *dev)
{
	struct mig_save *s = &dev->mig->save;

	s->is_active = true;
	s->is_model_done = false;
	s->prefix_off = s->trailer_off = 0;
	s->model_bytes = 0;
	prefix_build(dev, s->prefix);
}

void mig_save_end(struct ferry_device *dev)
{
	struct mig_save *s = &dev->mig->save;

	if (s->is_active)
		log_debug("%s: migration: saving session over (%" PRIu64 " model bytes%s)",
			  dev->name, s->model_bytes, s->is_model_done ? ", complete" : "");
	s->is_active = false;
}

ssize_t mig_save_fill(struct ferry_device *dev, uint8_t *out, size_t cap, const char *what)
{
	struct mig *g = dev->mig;
	struct mig_save *s = &g->save;
	size_t n = 0, k;

	if (!s->is_active) { /* gating keeps this out; a safety net */
		log_err("%s: %s in %s without a saving session", dev->name, what,
			ferry_mig_state_name(mig_cur(dev)));
		return -EINVAL;
	}
	k = min_sz(cap, g->prefix_len - s->prefix_off);
	memcpy(out, s->prefix + s->prefix_off, k);
	s->prefix_off += k;
	n += k;
	while (n < cap && !s->is_model_done) {
		ssize_t r = g->ops.save(g->opaque, out + n, cap - n);
		if (r < 0) {
			log_err("%s: %s of %zu bytes in %s: the model's save() failed after %" PRIu64
				" bytes of its stream: %s", dev->name, what, cap,
				ferry_mig_state_name(mig_cur(dev)), s->model_bytes, strerror((int)-r));
			return r;
		}
		if ((size_t)r > cap - n) {
			log_err("%s: %s: the model's save() returned %zd for a %zu-byte buffer",
				dev->name, what, r, cap - n);
			return -EIO;
		}
		if (r == 0) {
			if (mig_cur(dev) != FERRY_MIG_STOP_COPY)
				break; /* pre-copy: nothing more for now */
			s->is_model_done = true;
			trailer_build(dev, s->trailer);
			log_debug("%s: migration: model data complete (%" PRIu64 " bytes), trailer "
				  "of %zu bytes next", dev->name, s->model_bytes, g->trailer_len);
			break;
		}
		n += (size_t)r;
		s->model_bytes += (uint64_t)r;
	}
	if (s->is_model_done) {
		k = min_sz(cap - n, g->trailer_len - s->trailer_off);
		memcpy(out + n, s->trailer + s->trailer_off, k);
		s->trailer_off += k;
		n += k;
	}
	return (ssize_t)n;
}

uint64_t mig_save_lib_left(const struct ferry_device *dev, uint64_t *prefix_left)
{
	const struct mig *g = dev->mig;
	const struct mig_save *s = &g->save;
	uint64_t p = g->prefix_len, t = g->trailer_len;

	if (s->is_active) {
		p -= s->prefix_off;
		if (s->is_model_done)
			t -= s->trailer_off;
	}
	if (prefix_left)
		*prefix_left = p;
	return p + t;
}

/* ---- destination ---- */

void mig_load_begin(struct ferry_device *dev)
{
	struct mig_load *l = &dev->mig->load;

	l->is_active = true;
	l->is_prefix_done = l->is_ended = false;
	l->err = 0;
	l->prefix_got = 0;
	l->ring_head = l->ring_len = 0;
	l->offset = l->model_bytes = 0;
}

void mig_load_end(struct ferry_device *dev)
{
	struct mig_load *l = &dev->mig->load;

	if (l->is_active)
		log_debug("%s: migration: restore session over (%" PRIu64 " stream bytes, %" PRIu64
			  " to the model)", dev->name, l->offset, l->model_bytes);
	l->is_active = false;
}

static int give_model(struct ferry_device *dev, const uint8_t *p, size_t len, const char *what)
{
	struct mig *g = dev->mig;
	struct mig_load *l = &g->load;
	int r;

	if (!len)
		return 0;
	r = g->ops.load(g->opaque, p, len);
	if (r > 0)
		r = 0;
	if (r < 0) {
		l->err = r;
		log_err("%s: %s: the model's load() refused %zu bytes at offset %" PRIu64
			" of its stream: %s", dev->name, what, len, l->model_bytes, strerror(-r));
		return r;
	}
	l->model_bytes += len;
	return 0;
}

/* Hands the oldest @n held-back bytes to the model. */
static int ring_release(struct ferry_device *dev, size_t n, const char *what)
{
	struct mig *g = dev->mig;
	struct mig_load *l = &g->load;
	size_t first = min_sz(n, g->trailer_len - l->ring_head);
	int r;

	if ((r = give_model(dev, l->ring + l->ring_head, first, what)) < 0 ||
	    (r = give_model(dev, l->ring, n - first, what)) < 0)
		return r;
	l->ring_head = (l->ring_head + n) % g->trailer_len;
	l->ring_len -= n;
	return 0;
}

/* Appends @n bytes (n <= free space) to the ring. */
static void ring_append(struct mig *g, const uint8_t *p, size_t n)
{
	struct mig_load *l = &g->load;
	size_t tail = (l->ring_head + l->ring_len) % g->trailer_len;
	size_t first = min_sz(n, g->trailer_len - tail);

	memcpy(l->ring + tail, p, first);
	memcpy(l->ring, p + first, n - first);
	l->ring_len += n;
}

static int take_prefix(struct ferry_device *dev, const uint8_t **p, size_t *len)
{
	struct mig *g = dev->mig;
	struct mig_load *l = &g->load;
	size_t before = l->prefix_got, k = min_sz(*len, g->prefix_len - before);
	int r;

	memcpy(l->prefix + before, *p, k);
	l->prefix_got += k;
	*p += k;
	*len -= k;
	if (before < MIG_HDR_LEN && l->prefix_got >= MIG_HDR_LEN &&
	    (r = prefix_check_header(dev, l->prefix)) < 0)
		return r;
	if (l->prefix_got == g->prefix_len) {
		if ((r = prefix_load(dev, l->prefix, true)) < 0)
			return r;
		l->is_prefix_done = true;
	}
	return 0;
}

int mig_load_feed(struct ferry_device *dev, const uint8_t *p, size_t len, const char *what)
{
	struct mig *g = dev->mig;
	struct mig_load *l = &g->load;
	size_t total = len;
	int r;

	if (!l->is_active || l->err || l->is_ended) {
		log_err("%s: %s of %zu bytes at stream offset %" PRIu64 " refused: %s", dev->name,
			what, len, l->offset,
			!l->is_active ? "no restore session" :
			l->err ? "the stream was refused earlier (reset to start again)" :
				 "RESUMING -> STOP already took the end of the stream");
		return -EINVAL;
	}
	if (!l->is_prefix_done && (r = take_prefix(dev, &p, &len)) < 0) {
		l->err = r;
		return r;
	}
	if (len) {
		/* Everything but the newest trailer_len bytes goes to the model. */
		if (l->ring_len + len > g->trailer_len) {
			size_t excess = l->ring_len + len - g->trailer_len;
			size_t from_ring = min_sz(excess, l->ring_len);

			if ((r = ring_release(dev, from_ring, what)) < 0 ||
			    (r = give_model(dev, p, excess - from_ring, what)) < 0)
				return r;
			p += excess - from_ring;
			len -= excess - from_ring;
		}
		ring_append(g, p, len);
	}
	l->offset += total;
	return 0;
}

int mig_load_finish(struct ferry_device *dev)
{
	struct mig *g = dev->mig;
	struct mig_load *l = &g->load;
	size_t first;
	int r;

	if (l->err) {
		log_err("%s: RESUMING -> STOP: the stream was refused at offset %" PRIu64,
			dev->name, l->offset);
		return -EINVAL;
	}
	if (!l->is_prefix_done) {
		log_err("%s: RESUMING -> STOP: the stream ended after %" PRIu64 " bytes, inside the "
			"library's %zu-byte prefix", dev->name, l->offset, g->prefix_len);
		return -EINVAL;
	}
	if (l->is_ended)
		return 0; /* a retry after the model refused: nothing new came */
	l->is_ended = true;
	if (l->ring_len == g->trailer_len) {
		first = g->trailer_len - l->ring_head;
		memcpy(l->scratch, l->ring + l->ring_head, first);
		memcpy(l->scratch + first, l->ring, l->ring_head);
		if (trailer_is_valid(dev, l->scratch)) {
			l->ring_len = 0;
			if ((r = trailer_apply(dev, l->scratch)) < 0)
				l->err = r;
			return r;
		}
	}
	/* No trailer: the stream was cut (or comes from a session that never
	 * finished STOP_COPY). The held-back bytes are the model's; its
	 * validation decides. The library state from the prefix stays. */
	log_warn("%s: RESUMING -> STOP: no library trailer after %" PRIu64 " stream bytes: the "
		 "stream looks cut short; the model validates its data", dev->name, l->offset);
	return ring_release(dev, l->ring_len, "RESUMING -> STOP");
}

/* ---- messages ---- */

int handle_mig_data_read(struct ferry_device *dev, struct conn *c, struct wire_msg *m)
{
	struct vfio_user_mig_data req, rep;
	uint32_t max = c->client_caps.max_data_xfer_size < DEV_MAX_DATA_XFER
			       ? c->client_caps.max_data_xfer_size : DEV_MAX_DATA_XFER;
	struct mig *g = dev->mig;
	ssize_t n;

	memcpy(&req, m->payload, sizeof(req));
	if (m->len != sizeof(req) || req.size > max ||
	    req.argsz < sizeof(req) + (uint64_t)req.size) {
		log_err("%s: MIG_DATA_READ in %s: %u payload bytes (expected %zu), size %u (at most "
			"%u), argsz %u (at least 8 + size)", dev->name,
			ferry_mig_state_name(mig_cur(dev)), m->len, sizeof(req), req.size, max,
			req.argsz);
		return -EINVAL;
	}
	if (!g->xfer && !(g->xfer = malloc(sizeof(rep) + DEV_MAX_DATA_XFER))) {
		log_err("%s: MIG_DATA_READ: out of memory", dev->name);
		return -ENOMEM;
	}
	power_wake_for(dev, "migration data");
	n = mig_save_fill(dev, g->xfer + sizeof(rep), req.size, "MIG_DATA_READ");
	power_wake_done(dev);
	if (n < 0)
		return (int)n;
	rep = (struct vfio_user_mig_data){.argsz = (uint32_t)(sizeof(rep) + (size_t)n),
					  .size = (uint32_t)n};
	memcpy(g->xfer, &rep, sizeof(rep));
	conn_reply_buf(c, m, g->xfer, sizeof(rep) + (size_t)n);
	return 0;
}

int handle_mig_data_write(struct ferry_device *dev, struct conn *c, struct wire_msg *m)
{
	struct vfio_user_mig_data req;
	int r;

	memcpy(&req, m->payload, sizeof(req));
	if (req.size > DEV_MAX_DATA_XFER || m->len - sizeof(req) != req.size ||
	    req.argsz < sizeof(req) + (uint64_t)req.size) {
		log_err("%s: MIG_DATA_WRITE: size %u (at most %u), %zu data bytes carried, argsz %u "
			"(at least 8 + size)", dev->name, req.size, DEV_MAX_DATA_XFER,
			m->len - sizeof(req), req.argsz);
		return -EINVAL;
	}
	power_wake_for(dev, "migration data");
	r = mig_load_feed(dev, m->payload + sizeof(req), req.size, "MIG_DATA_WRITE");
	power_wake_done(dev);
	if (r < 0)
		return r;
	conn_reply(c, m, NULL, 0, NULL, 0);
	return 0;
}
