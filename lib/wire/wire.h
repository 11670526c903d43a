/*
 * The wire channel: one vfio-user connection seen as a bidirectional stream
 * of messages. Both ends of the protocol use the same object: each side
 * sends commands and waits for their replies (wire_call), and takes the
 * peer's commands one at a time (wire_next_command) and answers them
 * (wire_reply / wire_reply_error).
 *
 * Concepts:
 * - Framing: a 16-byte header then msg_size - 16 payload bytes; fds arrive
 *   with the header (SCM_RIGHTS). Input is read through a buffer so a small
 *   message costs one recvmsg; fds are attributed to the message whose header
 *   arrived with them.
 * - Receiving is done by whichever thread needs a message next: the
 *   dispatcher waiting for commands, or a thread waiting for its reply.
 *   Replies are routed to their waiter by msg_id; commands that arrive while
 *   a caller waits for a reply are queued (the backlog) and handed out by
 *   wire_next_command in arrival order. So a device callback may issue a DMA
 *   request to the client and wait for the answer on the same socket without
 *   deadlock, and the client can pipeline.
 * - Any framing error or end of stream kills the channel: every waiter
 *   returns the error (-ECONNRESET at end of stream, -EPROTO for framing).
 *
 * Thread-safety: every function may be called from any thread, except that
 * wire_chan_destroy must not race with any other call.
 */
#ifndef FERRY_WIRE_H
#define FERRY_WIRE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <ferry/vfio_user.h>
#include "wire/transport.h"

/* Most fds one message may carry into this process (our advertised
 * max_msg_fds). MSI-X eventfds are set up in chunks of at most this. */
#define WIRE_MAX_FDS 64

/* Payload bytes beyond max_data_xfer_size that a message may carry for its
 * own fixed fields (headers of REGION_READ replies, logging bitmaps are
 * bounded separately by their request). */
#define WIRE_MSG_OVERHEAD 4096u

struct wire_msg {
	struct vfio_user_header hdr;
	uint8_t *payload; /* msg_size - 16 bytes; owned; NULL when empty */
	uint32_t len;
	int fds[WIRE_MAX_FDS]; /* owned until taken; -1 once taken */
	unsigned nfds;
};

/* Frees the payload and closes every fd not taken. Safe on a zeroed msg. */
void wire_msg_release(struct wire_msg *m);
/* Takes ownership of fd @i (returns it, or -1 if absent or already taken). */
int wire_msg_take_fd(struct wire_msg *m, unsigned i);

static inline bool wire_msg_is_reply(const struct wire_msg *m)
{
	return (m->hdr.flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_TYPE_REPLY;
}

static inline bool wire_msg_wants_reply(const struct wire_msg *m)
{
	return !(m->hdr.flags & VFIO_USER_F_NO_REPLY);
}

struct wire_chan_opts {
	const char *name;     /* for log lines: device or peer name */
	uint32_t max_rx_size; /* largest payload accepted; 0: default xfer + overhead */
	unsigned max_rx_fds;  /* fds accepted per message, <= WIRE_MAX_FDS; 0: WIRE_MAX_FDS */
	int timeout_ms;       /* reply and mid-message stall timeout; 0: 30 s; -1: none */
};

struct wire_chan;

/* Creates a channel over @tr, which it consumes (destroyed on failure too). */
int wire_chan_create(struct wire_transport *tr, const struct wire_chan_opts *opts,
		     struct wire_chan **out);
/* Closes the transport, wakes every waiter with -ECONNRESET, frees. NULL-safe. */
void wire_chan_destroy(struct wire_chan *ch);
/* Shuts the channel down without freeing: waiters and the dispatcher return
 * @err (negative errno). Idempotent; the first error sticks. */
void wire_chan_kill(struct wire_chan *ch, int err);
/* 0 while usable, else the negative errno that killed it. */
int wire_chan_error(struct wire_chan *ch);
const char *wire_chan_name(const struct wire_chan *ch);

/* Limits learned in VERSION negotiation. */
void wire_chan_set_max_rx_size(struct wire_chan *ch, uint32_t max_payload);
void wire_chan_set_timeout(struct wire_chan *ch, int timeout_ms);

/* Sends a command without waiting (adds VFIO_USER_F_NO_REPLY if @no_reply).
 * Returns the msg_id used (>= 0) or a negative errno. */
int wire_send_command(struct wire_chan *ch, uint16_t cmd, bool no_reply,
		      const struct iovec *iov, int iovcnt, const int *fds, unsigned nfds);

/* Sends a command and waits for its reply. On success returns 0 and fills
 * @reply (release it with wire_msg_release); an error reply returns
 * -error_no (EINVAL if the peer sent 0 or a value outside 1..4095) and
 * leaves @reply empty. @reply may be NULL when the payload is not wanted.
 * Waits at most the channel timeout (-ETIMEDOUT). @fds are not consumed. */
int wire_call(struct wire_chan *ch, uint16_t cmd, const struct iovec *iov, int iovcnt,
	      const int *fds, unsigned nfds, struct wire_msg *reply);
/* wire_call with one contiguous request payload. */
int wire_call_simple(struct wire_chan *ch, uint16_t cmd, const void *req, size_t req_len,
		     struct wire_msg *reply);

/* Takes the next command from the peer. @timeout_ms: -1 blocks, 0 polls
 * (-EAGAIN when none is ready). Returns 0 with @cmd filled, or a negative
 * errno (the channel's error once it is dead). */
int wire_next_command(struct wire_chan *ch, struct wire_msg *cmd, int timeout_ms);
/* wire_next_command(-1) for a thread that takes the peer's commands on a
 * channel where other threads make calls (a client without a twin socket).
 * It never blocks in a receive: it polls the transport while no call is in
 * progress and leaves receiving to the callers while calls go on (they queue
 * its commands), so a caller reads its own reply with one wake-up. The cost
 * is latency for a command that arrives just after a burst of calls: up to
 * a few ms (WAIT_CMD_IDLE_MS). Falls back to wire_next_command when there is
 * no fd to poll. */
int wire_wait_command(struct wire_chan *ch, struct wire_msg *cmd);

/* Replies to @req with payload @iov and @fds (not consumed). Does nothing
 * for a command sent with No_reply. */
int wire_reply(struct wire_chan *ch, const struct wire_msg *req,
	       const struct iovec *iov, int iovcnt, const int *fds, unsigned nfds);
/* Header-only error reply carrying @err (either sign). */
int wire_reply_error(struct wire_chan *ch, const struct wire_msg *req, int err);

/* True if a command can be taken without reading the transport: one is
 * queued, or bytes of one are already buffered. An event loop that polls the
 * transport fd must drain these first, since poll cannot see them. */
bool wire_chan_has_buffered(struct wire_chan *ch);

/* fds an external event loop polls for readability: the transport's and an
 * eventfd raised when commands were queued by a thread waiting for a reply.
 * Returns how many were written to @fds (at most 2). */
int wire_chan_poll_fds(struct wire_chan *ch, int fds[2]);

#endif
