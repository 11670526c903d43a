/*
 * The wire channel (see wire.h for the concepts): framing, fd attribution,
 * reply routing and the command backlog.
 *
 * Locking: `lock` guards the pending table, the backlog, `rx_busy`, `dead`
 * and the call counters. Exactly one thread at a time reads the transport
 * (the one that set rx_busy); it drops `lock` while it reads, so the rx
 * state below the "receiver only" line needs no lock. `send_lock` keeps
 * whole messages from interleaving on the socket.
 */
#include "wire/wire.h"
#include "util/checked.h"
#include "util/log.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* Read-ahead buffer: one recvmsg usually brings a whole small message (and
 * maybe the next), so a trapped 4-byte access costs one receive syscall.
 * Bodies larger than half of it are read straight into their payload. */
#define RXBUF_SIZE (64u * 1024u)
#define MAX_PENDING 64
#define MAX_FD_BATCHES 4
#define DEFAULT_TIMEOUT_MS 30000
/* How long wire_wait_command stays off the socket after the last call it
 * saw start: far longer than the gap between back-to-back calls, so a burst
 * of calls never finds it there, and short enough that a command the peer
 * sends just after the burst (with no call left to queue it) waits little. */
#define WAIT_CMD_IDLE_MS 2

/* fds received by one recvmsg, with the stream offsets that read covered. */
struct fd_batch {
	uint64_t start, end;
	int fds[WIRE_MAX_FDS];
	unsigned n;
};

struct pending {
	bool used, done;
	uint16_t id, cmd;
	int err;
	struct wire_msg msg;
};

struct backlog_node {
	struct backlog_node *next;
	struct wire_msg msg;
};

struct wire_chan {
	struct wire_transport *tr;
	char name[64];
	uint32_t max_rx_size;
	unsigned max_rx_fds;
	int timeout_ms;
	int notify_fd;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_cond_t cmd_cond; /* a command was queued, or the channel died */
	pthread_mutex_t send_lock;
	bool rx_busy;
	bool notify_raised; /* notify_fd was written and not yet cleared */
	int dead;
	struct pending pend[MAX_PENDING];
	unsigned ncalls;   /* wire_call()s in progress */
	uint64_t call_seq; /* wire_call()s ever started */
	uint16_t next_id;
	struct backlog_node *bl_head, **bl_tail;

	/* receiver only */
	uint8_t *rxbuf;
	size_t rx_pos, rx_end;
	uint64_t rx_base; /* stream offset of rxbuf[0] */
	struct fd_batch batch[MAX_FD_BATCHES];
	unsigned nbatch;
};

void wire_msg_release(struct wire_msg *m)
{
	if (!m)
		return;
	free(m->payload);
	for (unsigned i = 0; i < m->nfds && i < WIRE_MAX_FDS; i++)
		if (m->fds[i] >= 0)
			close(m->fds[i]);
	memset(m, 0, sizeof(*m));
}

int wire_msg_take_fd(struct wire_msg *m, unsigned i)
{
	if (i >= m->nfds)
		return -1;
	int fd = m->fds[i];
	m->fds[i] = -1;
	return fd;
}

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

int wire_chan_create(struct wire_transport *tr, const struct wire_chan_opts *opts,
		     struct wire_chan **out)
{
	struct wire_chan *ch = calloc(1, sizeof(*ch));
	if (!ch || !(ch->rxbuf = malloc(RXBUF_SIZE))) {
		free(ch);
		tr->ops->destroy(tr);
		return -ENOMEM;
	}
	ch->tr = tr;
	snprintf(ch->name, sizeof(ch->name), "%s", opts && opts->name ? opts->name : "vfio-user");
	ch->max_rx_size = opts && opts->max_rx_size ? opts->max_rx_size
		: VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE + WIRE_MSG_OVERHEAD;
	ch->max_rx_fds = opts && opts->max_rx_fds && opts->max_rx_fds < WIRE_MAX_FDS
		? opts->max_rx_fds : WIRE_MAX_FDS;
	ch->timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
	ch->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ch->bl_tail = &ch->bl_head;
	pthread_mutex_init(&ch->lock, NULL);
	pthread_mutex_init(&ch->send_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ch->cond, &ca);
	pthread_cond_init(&ch->cmd_cond, &ca);
	pthread_condattr_destroy(&ca);
	*out = ch;
	return 0;
}

void wire_chan_destroy(struct wire_chan *ch)
{
	if (!ch)
		return;
	wire_chan_kill(ch, -ECONNRESET);
	ch->tr->ops->destroy(ch->tr);
	for (unsigned i = 0; i < MAX_PENDING; i++)
		wire_msg_release(&ch->pend[i].msg);
	while (ch->bl_head) {
		struct backlog_node *n = ch->bl_head;
		ch->bl_head = n->next;
		wire_msg_release(&n->msg);
		free(n);
	}
	for (unsigned i = 0; i < ch->nbatch; i++)
		close_fds(ch->batch[i].fds, ch->batch[i].n);
	if (ch->notify_fd >= 0)
		close(ch->notify_fd);
	pthread_cond_destroy(&ch->cond);
	pthread_cond_destroy(&ch->cmd_cond);
	pthread_mutex_destroy(&ch->lock);
	pthread_mutex_destroy(&ch->send_lock);
	free(ch->rxbuf);
	free(ch);
}

static void kill_locked(struct wire_chan *ch, int err)
{
	if (ch->dead)
		return;
	ch->dead = err < 0 ? err : -ECONNRESET;
	ch->tr->ops->shutdown(ch->tr);
	pthread_cond_broadcast(&ch->cond);
	pthread_cond_broadcast(&ch->cmd_cond);
	if (ch->notify_fd >= 0) {
		eventfd_write(ch->notify_fd, 1);
		ch->notify_raised = true;
	}
}

void wire_chan_kill(struct wire_chan *ch, int err)
{
	pthread_mutex_lock(&ch->lock);
	kill_locked(ch, err);
	pthread_mutex_unlock(&ch->lock);
}

int wire_chan_error(struct wire_chan *ch)
{
	pthread_mutex_lock(&ch->lock);
	int e = ch->dead;
	pthread_mutex_unlock(&ch->lock);
	return e;
}

const char *wire_chan_name(const struct wire_chan *ch)
{
	return ch->name;
}

void wire_chan_set_max_rx_size(struct wire_chan *ch, uint32_t max_payload)
{
	pthread_mutex_lock(&ch->lock);
	ch->max_rx_size = max_payload;
	pthread_mutex_unlock(&ch->lock);
}

void wire_chan_set_timeout(struct wire_chan *ch, int timeout_ms)
{
	pthread_mutex_lock(&ch->lock);
	ch->timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
	pthread_mutex_unlock(&ch->lock);
}

bool wire_chan_has_buffered(struct wire_chan *ch)
{
	pthread_mutex_lock(&ch->lock);
	/* While another thread receives, what it reads is queued and
	 * announced through notify_fd, so it is not ours to report. */
	bool r = ch->bl_head || (!ch->rx_busy && ch->rx_end > ch->rx_pos);
	pthread_mutex_unlock(&ch->lock);
	return r;
}

int wire_chan_poll_fds(struct wire_chan *ch, int fds[2])
{
	int n = 0, fd = ch->tr->ops->fd(ch->tr);
	if (fd >= 0)
		fds[n++] = fd;
	if (ch->notify_fd >= 0)
		fds[n++] = ch->notify_fd;
	return n;
}

/* ---- sending ---- */

static int send_msg(struct wire_chan *ch, uint16_t id, uint16_t cmd, uint32_t flags,
		    uint32_t error_no, const struct iovec *iov, int iovcnt,
		    const int *fds, unsigned nfds)
{
	struct iovec v[16];
	struct vfio_user_header hdr = {.msg_id = id, .cmd = cmd, .flags = flags,
				       .error_no = error_no};
	uint64_t size = sizeof(hdr);

	if (iovcnt < 0 || iovcnt >= (int)ARRAY_SIZE(v) || nfds > WIRE_MAX_FDS)
		return -EINVAL;
	v[0].iov_base = &hdr;
	v[0].iov_len = sizeof(hdr);
	for (int i = 0; i < iovcnt; i++) {
		v[i + 1] = iov[i];
		size += iov[i].iov_len;
	}
	if (size > UINT32_MAX) {
		log_err("%s: message of %llu bytes does not fit the 32-bit size field", ch->name,
			(unsigned long long)size);
		return -EMSGSIZE;
	}
	hdr.msg_size = (uint32_t)size;
	pthread_mutex_lock(&ch->send_lock);
	int r = ch->tr->ops->send(ch->tr, v, iovcnt + 1, fds, nfds);
	pthread_mutex_unlock(&ch->send_lock);
	if (r < 0) {
		log_debug("%s: send of command %u failed: %s", ch->name, cmd, strerror(-r));
		wire_chan_kill(ch, r == -EPIPE ? -ECONNRESET : r);
	}
	return r;
}

int wire_reply(struct wire_chan *ch, const struct wire_msg *req, const struct iovec *iov,
	       int iovcnt, const int *fds, unsigned nfds)
{
	if (!wire_msg_wants_reply(req))
		return 0;
	return send_msg(ch, req->hdr.msg_id, req->hdr.cmd, VFIO_USER_F_TYPE_REPLY, 0, iov,
			iovcnt, fds, nfds);
}

int wire_reply_error(struct wire_chan *ch, const struct wire_msg *req, int err)
{
	if (!wire_msg_wants_reply(req))
		return 0;
	if (err < 0)
		err = -err;
	if (err == 0)
		err = EINVAL;
	return send_msg(ch, req->hdr.msg_id, req->hdr.cmd,
			VFIO_USER_F_TYPE_REPLY | VFIO_USER_F_ERROR, (uint32_t)err, NULL, 0, NULL, 0);
}

/* ---- receiving (receiver only) ---- */

/* Reads more bytes into the buffer. Returns 0, -EAGAIN (nothing within
 * @timeout_ms), -ECONNRESET at end of stream, or another negative errno. */
static int rx_fill(struct wire_chan *ch, int timeout_ms)
{
	struct fd_batch b;

	if (ch->rx_pos == ch->rx_end) {
		ch->rx_base += ch->rx_end;
		ch->rx_pos = ch->rx_end = 0;
	} else if (ch->rx_end == RXBUF_SIZE) {
		memmove(ch->rxbuf, ch->rxbuf + ch->rx_pos, ch->rx_end - ch->rx_pos);
		ch->rx_base += ch->rx_pos;
		ch->rx_end -= ch->rx_pos;
		ch->rx_pos = 0;
	}
	b.n = ch->max_rx_fds;
	ssize_t n = ch->tr->ops->recv(ch->tr, ch->rxbuf + ch->rx_end, RXBUF_SIZE - ch->rx_end,
				       b.fds, &b.n, timeout_ms);
	if (n == 0)
		return -ECONNRESET;
	if (n < 0)
		return (int)n;
	if (b.n) {
		b.start = ch->rx_base + ch->rx_end;
		b.end = b.start + (uint64_t)n;
		if (ch->nbatch == MAX_FD_BATCHES) {
			log_err("%s: peer sent fds with too many messages at once", ch->name);
			close_fds(b.fds, b.n);
			return -EPROTO;
		}
		ch->batch[ch->nbatch++] = b;
	}
	ch->rx_end += (size_t)n;
	return 0;
}

/*
 * The kernel delivers a message's fds with the recvmsg that reads its first
 * byte and ends that recvmsg at the end of the fd-carrying segment. So a
 * batch belongs to the last header that starts inside the bytes its read
 * covered: the header at @off of @size bytes owns it iff it starts in the
 * window and no later header does. Batches that end before @off belonged to
 * no header (a peer sending fds mid-message): they are closed.
 */
static void rx_take_fds(struct wire_chan *ch, struct wire_msg *m, uint64_t off, uint64_t size)
{
	unsigned keep = 0;
	for (unsigned i = 0; i < ch->nbatch; i++) {
		struct fd_batch *b = &ch->batch[i];
		if (b->start <= off && off < b->end && off + size >= b->end) {
			memcpy(m->fds, b->fds, sizeof(int) * b->n);
			m->nfds = b->n;
		} else if (b->end <= off) {
			log_warn("%s: dropping %u fds sent outside any message header", ch->name, b->n);
			close_fds(b->fds, b->n);
		} else {
			ch->batch[keep++] = *b;
		}
	}
	ch->nbatch = keep;
}

/* Reads one whole message. @timeout_ms applies until its first byte; once a
 * message has started, the channel timeout bounds each stall. Returns 0,
 * -EAGAIN if nothing arrived in time, or a fatal negative errno. */
static int rx_one(struct wire_chan *ch, struct wire_msg *m, int timeout_ms)
{
	struct vfio_user_header hdr;
	int r;

	memset(m, 0, sizeof(*m));
	while (ch->rx_end - ch->rx_pos < sizeof(hdr)) {
		bool started = ch->rx_end > ch->rx_pos;
		r = rx_fill(ch, started ? ch->timeout_ms : timeout_ms);
		if (r == -EAGAIN && started) {
			log_err("%s: peer stalled inside a message header", ch->name);
			return -ETIMEDOUT;
		}
		if (r < 0)
			return r;
	}
	memcpy(&hdr, ch->rxbuf + ch->rx_pos, sizeof(hdr));
	uint64_t off = ch->rx_base + ch->rx_pos;
	if (hdr.msg_size < sizeof(hdr)) {
		log_err("%s: message size %u is smaller than the header", ch->name, hdr.msg_size);
		return -EPROTO;
	}
	uint32_t len = hdr.msg_size - (uint32_t)sizeof(hdr);
	if (len > ch->max_rx_size) {
		log_err("%s: message of %u bytes (command %u) exceeds the limit of %u",
			ch->name, hdr.msg_size, hdr.cmd, ch->max_rx_size);
		return -EPROTO;
	}
	uint32_t type = hdr.flags & VFIO_USER_F_TYPE_MASK;
	if (type != VFIO_USER_F_TYPE_COMMAND && type != VFIO_USER_F_TYPE_REPLY) {
		log_err("%s: message type %u is neither command nor reply", ch->name, type);
		return -EPROTO;
	}
	m->hdr = hdr;
	m->len = len;
	ch->rx_pos += sizeof(hdr);
	rx_take_fds(ch, m, off, hdr.msg_size);
	if (!len)
		return 0;

	m->payload = malloc(len);
	if (!m->payload) {
		wire_msg_release(m);
		return -ENOMEM;
	}
	uint32_t got = 0;
	while (got < len) {
		size_t avail = ch->rx_end - ch->rx_pos;
		if (avail) {
			size_t n = avail < len - got ? avail : len - got;
			memcpy(m->payload + got, ch->rxbuf + ch->rx_pos, n);
			ch->rx_pos += n;
			got += (uint32_t)n;
			continue;
		}
		if (len - got > RXBUF_SIZE / 2) {
			/* Large body: straight into the payload, bounded to this
			 * message so no later header (or its fds) is touched. */
			int fds[WIRE_MAX_FDS];
			unsigned nfds = ch->max_rx_fds;
			ssize_t n = ch->tr->ops->recv(ch->tr, m->payload + got, len - got, fds,
						       &nfds, ch->timeout_ms);
			if (nfds) {
				log_warn("%s: dropping %u fds sent inside a message body", ch->name, nfds);
				close_fds(fds, nfds);
			}
			r = n == 0 ? -ECONNRESET : n == -EAGAIN ? -ETIMEDOUT : (int)(n < 0 ? n : 0);
			if (r < 0)
				goto fail;
			ch->rx_base += (uint64_t)n; /* bytes that bypassed the buffer */
			got += (uint32_t)n;
			continue;
		}
		r = rx_fill(ch, ch->timeout_ms);
		if (r == -EAGAIN)
			r = -ETIMEDOUT;
		if (r < 0)
			goto fail;
	}
	return 0;
fail:
	if (r == -ETIMEDOUT)
		log_err("%s: peer stalled inside a %u-byte message", ch->name, hdr.msg_size);
	else if (r == -ECONNRESET)
		log_err("%s: peer closed the connection inside a %u-byte message", ch->name,
			hdr.msg_size);
	wire_msg_release(m);
	return r;
}

/* Hands a received message to its owner. Called with `lock` held. Returns
 * true if it was queued as a command. */
static bool route_locked(struct wire_chan *ch, struct wire_msg *m)
{
	if (!wire_msg_is_reply(m)) {
		struct backlog_node *n = malloc(sizeof(*n));
		if (!n) {
			log_err("%s: out of memory queueing command %u", ch->name, m->hdr.cmd);
			wire_msg_release(m);
			kill_locked(ch, -ENOMEM);
			return false;
		}
		n->next = NULL;
		n->msg = *m;
		*ch->bl_tail = n;
		ch->bl_tail = &n->next;
		pthread_cond_broadcast(&ch->cond);
		pthread_cond_broadcast(&ch->cmd_cond);
		return true;
	}
	for (unsigned i = 0; i < MAX_PENDING; i++) {
		struct pending *p = &ch->pend[i];
		if (!p->used || p->done || p->id != m->hdr.msg_id)
			continue;
		if (m->hdr.cmd != p->cmd) {
			log_err("%s: reply %u names command %u, expected %u", ch->name,
				m->hdr.msg_id, m->hdr.cmd, p->cmd);
			p->err = -EPROTO;
			wire_msg_release(m);
		} else if (m->hdr.flags & VFIO_USER_F_ERROR) {
			uint32_t e = m->hdr.error_no;
			p->err = e >= 1 && e < 4096 ? -(int)e : -EINVAL;
			wire_msg_release(m);
		} else {
			p->msg = *m;
		}
		p->done = true;
		pthread_cond_broadcast(&ch->cond);
		return false;
	}
	log_warn("%s: dropping reply %u to command %u that nobody waits for", ch->name,
		 m->hdr.msg_id, m->hdr.cmd);
	wire_msg_release(m);
	return false;
}

static struct backlog_node *backlog_pop_locked(struct wire_chan *ch)
{
	struct backlog_node *n = ch->bl_head;
	if (n) {
		ch->bl_head = n->next;
		if (!ch->bl_head)
			ch->bl_tail = &ch->bl_head;
	}
	return n;
}

static void deadline_after(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static int ms_until(const struct timespec *ts)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long long ms = (ts->tv_sec - now.tv_sec) * 1000LL + (ts->tv_nsec - now.tv_nsec) / 1000000L;
	return ms <= 0 ? 0 : ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

/* Becomes the receiver for one message: drops `lock` while reading, retakes
 * it and wakes anyone waiting for the receiver role. Called with `lock` held
 * and rx_busy clear. Returns rx_one's result; a fatal error kills the channel. */
static int receive_locked(struct wire_chan *ch, struct wire_msg *m, int timeout_ms)
{
	ch->rx_busy = true;
	pthread_mutex_unlock(&ch->lock);
	int r = rx_one(ch, m, timeout_ms);
	pthread_mutex_lock(&ch->lock);
	ch->rx_busy = false;
	pthread_cond_broadcast(&ch->cond);
	if (r < 0 && r != -EAGAIN)
		kill_locked(ch, r);
	return r;
}

/* ---- commands out, replies in ---- */

static struct pending *pending_alloc_locked(struct wire_chan *ch)
{
	for (unsigned i = 0; i < MAX_PENDING; i++) {
		if (ch->pend[i].used)
			continue;
		struct pending *p = &ch->pend[i];
		/* ids stay unique among our in-flight requests */
		for (;;) {
			uint16_t id = ch->next_id++;
			bool busy = false;
			for (unsigned j = 0; j < MAX_PENDING; j++)
				busy |= ch->pend[j].used && ch->pend[j].id == id;
			if (!busy) {
				p->id = id;
				break;
			}
		}
		p->used = true;
		p->done = false;
		p->err = 0;
		return p;
	}
	return NULL;
}

int wire_send_command(struct wire_chan *ch, uint16_t cmd, bool no_reply,
		      const struct iovec *iov, int iovcnt, const int *fds, unsigned nfds)
{
	pthread_mutex_lock(&ch->lock);
	int dead = ch->dead;
	uint16_t id = ch->next_id++;
	pthread_mutex_unlock(&ch->lock);
	if (dead)
		return dead;
	int r = send_msg(ch, id, cmd, VFIO_USER_F_TYPE_COMMAND | (no_reply ? VFIO_USER_F_NO_REPLY : 0),
			 0, iov, iovcnt, fds, nfds);
	return r < 0 ? r : id;
}

int wire_call(struct wire_chan *ch, uint16_t cmd, const struct iovec *iov, int iovcnt,
	      const int *fds, unsigned nfds, struct wire_msg *reply)
{
	struct timespec deadline;
	struct pending *p;
	int r;

	if (reply)
		memset(reply, 0, sizeof(*reply));
	pthread_mutex_lock(&ch->lock);
	if (ch->dead) {
		r = ch->dead;
		pthread_mutex_unlock(&ch->lock);
		return r;
	}
	p = pending_alloc_locked(ch);
	if (!p) {
		pthread_mutex_unlock(&ch->lock);
		log_err("%s: more than %d requests in flight", ch->name, MAX_PENDING);
		return -EBUSY;
	}
	p->cmd = cmd;
	uint16_t id = p->id;
	int timeout = ch->timeout_ms;
	ch->ncalls++;
	ch->call_seq++;
	pthread_mutex_unlock(&ch->lock);

	r = send_msg(ch, id, cmd, VFIO_USER_F_TYPE_COMMAND, 0, iov, iovcnt, fds, nfds);
	if (timeout > 0)
		deadline_after(&deadline, timeout);

	pthread_mutex_lock(&ch->lock);
	while (r == 0 && !p->done) {
		if (ch->dead) {
			r = ch->dead;
			break;
		}
		int left = timeout > 0 ? ms_until(&deadline) : -1;
		if (left == 0) {
			log_err("%s: no reply to command %u (id %u) within %d ms", ch->name, cmd, id,
				timeout);
			r = -ETIMEDOUT;
			break;
		}
		if (ch->rx_busy) {
			if (timeout > 0)
				pthread_cond_timedwait(&ch->cond, &ch->lock, &deadline);
			else
				pthread_cond_wait(&ch->cond, &ch->lock);
			continue;
		}
		struct wire_msg m;
		if (receive_locked(ch, &m, left) < 0)
			continue; /* timed out (re-checked above) or dead */
		if (route_locked(ch, &m) && ch->notify_fd >= 0 && !ch->notify_raised) {
			eventfd_write(ch->notify_fd, 1); /* a command waits for the dispatcher */
			ch->notify_raised = true;
		}
	}
	if (r == 0) {
		r = p->err;
		if (reply && r == 0)
			*reply = p->msg;
		else
			wire_msg_release(&p->msg);
		memset(&p->msg, 0, sizeof(p->msg));
	}
	p->used = false;
	ch->ncalls--;
	if (!ch->rx_busy && ch->rx_pos != ch->rx_end && ch->notify_fd >= 0 &&
	    !ch->notify_raised) {
		/* Our last read also brought (part of) a later message: it
		 * sits in the buffer, where a dispatcher polling the socket
		 * cannot see it. */
		eventfd_write(ch->notify_fd, 1);
		ch->notify_raised = true;
	}
	pthread_mutex_unlock(&ch->lock);
	return r;
}

int wire_call_simple(struct wire_chan *ch, uint16_t cmd, const void *req, size_t req_len,
		     struct wire_msg *reply)
{
	struct iovec iov = {.iov_base = (void *)req, .iov_len = req_len};
	return wire_call(ch, cmd, &iov, req_len ? 1 : 0, NULL, 0, reply);
}

/* A queued command into @cmd (1), the channel's death (its error), or
 * nothing queued (0: notify_fd is clear then). Lock held. */
static int take_queued_locked(struct wire_chan *ch, struct wire_msg *cmd)
{
	struct backlog_node *n = backlog_pop_locked(ch);

	if (n) {
		*cmd = n->msg;
		free(n);
		return 1;
	}
	if (ch->dead)
		return ch->dead;
	if (ch->notify_raised) {
		eventfd_t v;

		eventfd_read(ch->notify_fd, &v); /* backlog drained: clear */
		ch->notify_raised = false;
	}
	return 0;
}

int wire_next_command(struct wire_chan *ch, struct wire_msg *cmd, int timeout_ms)
{
	struct timespec deadline;
	int r = 0;

	memset(cmd, 0, sizeof(*cmd));
	if (timeout_ms > 0)
		deadline_after(&deadline, timeout_ms);
	pthread_mutex_lock(&ch->lock);
	for (;;) {
		r = take_queued_locked(ch, cmd);
		if (r != 0) {
			r = r > 0 ? 0 : r;
			break;
		}
		int left = timeout_ms > 0 ? ms_until(&deadline) : timeout_ms;
		if (ch->rx_busy) {
			if (left == 0) {
				r = -EAGAIN;
				break;
			}
			if (left > 0)
				pthread_cond_timedwait(&ch->cond, &ch->lock, &deadline);
			else
				pthread_cond_wait(&ch->cond, &ch->lock);
			continue;
		}
		struct wire_msg m;
		r = receive_locked(ch, &m, left);
		if (r == -EAGAIN)
			break;
		if (r < 0) {
			r = ch->dead;
			break;
		}
		if (!wire_msg_is_reply(&m) && !ch->bl_head) {
			*cmd = m; /* the common case: no queue round trip */
			r = 0;
			break;
		}
		route_locked(ch, &m);
	}
	pthread_mutex_unlock(&ch->lock);
	return r;
}

int wire_wait_command(struct wire_chan *ch, struct wire_msg *cmd)
{
	int fd = ch->tr->ops->fd(ch->tr), r;
	bool is_readable = false;

	if (fd < 0 || ch->notify_fd < 0)
		return wire_next_command(ch, cmd, -1); /* nothing to poll */
	memset(cmd, 0, sizeof(*cmd));
	pthread_mutex_lock(&ch->lock);
	uint64_t seen = ch->call_seq;
	for (;;) {
		r = take_queued_locked(ch, cmd);
		if (r != 0) {
			r = r > 0 ? 0 : r;
			break;
		}
		if (ch->ncalls || ch->rx_busy || ch->call_seq != seen) {
			/* Callers are receiving (or just were): they queue what is
			 * ours and signal cmd_cond. Waiting on `cond` instead would
			 * cost every call a futex wake. */
			struct timespec deadline;
			seen = ch->call_seq;
			is_readable = false;
			deadline_after(&deadline, WAIT_CMD_IDLE_MS);
			pthread_cond_timedwait(&ch->cmd_cond, &ch->lock, &deadline);
			continue;
		}
		if (!is_readable && ch->rx_pos == ch->rx_end) {
			/* Wait for input without the receiver role, so that a call
			 * starting meanwhile reads its reply itself (one wake-up)
			 * instead of through us and `cond` (two). notify_fd (clear
			 * now) wakes us for a command such a call queues for us. */
			pthread_mutex_unlock(&ch->lock);
			struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
					      {.fd = ch->notify_fd, .events = POLLIN}};
			int pr = poll(p, 2, -1);
			int e = errno;
			pthread_mutex_lock(&ch->lock);
			if (pr < 0 && e != EINTR) {
				log_err("%s: poll for commands: %s", ch->name, strerror(e));
				kill_locked(ch, -e);
			}
			is_readable = pr > 0;
			continue; /* a call that started meanwhile takes precedence */
		}
		is_readable = false;
		struct wire_msg m;
		r = receive_locked(ch, &m, 0);
		if (r == -EAGAIN)
			continue;
		if (r < 0) {
			r = ch->dead;
			break;
		}
		if (!wire_msg_is_reply(&m) && !ch->bl_head) {
			*cmd = m;
			r = 0;
			break;
		}
		route_locked(ch, &m);
	}
	pthread_mutex_unlock(&ch->lock);
	return r;
}
