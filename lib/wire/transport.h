/*
 * Transport: how a wire channel moves bytes and fds. An ops table so tests
 * can put a fault-injecting or in-memory transport under a real channel; the
 * production one is a connected AF_UNIX stream socket (transport_sock.c).
 */
#ifndef FERRY_WIRE_TRANSPORT_H
#define FERRY_WIRE_TRANSPORT_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct wire_transport;

struct wire_transport_ops {
	/* Send all bytes of @iov as one message, with @fds attached to its first
	 * byte. Loops on partial writes. Returns 0 or a negative errno (-EPIPE
	 * when the peer is gone). Called with the channel's send lock held. */
	int (*send)(struct wire_transport *t, const struct iovec *iov, int iovcnt,
		    const int *fds, unsigned nfds);
	/* Receive at most @len bytes, waiting up to @timeout_ms (-1: forever,
	 * 0: not at all). Up to *@nfds fds may arrive with them; on return
	 * *@nfds holds how many did (the caller owns them). Returns the byte
	 * count, 0 at end of stream, -EAGAIN when the wait ran out, or another
	 * negative errno (-EPROTO if ancillary data was truncated). */
	ssize_t (*recv)(struct wire_transport *t, void *buf, size_t len,
			int *fds, unsigned *nfds, int timeout_ms);
	/* Makes a blocked or later recv return end of stream (another thread
	 * is shutting the channel down). */
	void (*shutdown)(struct wire_transport *t);
	/* The fd an event loop can poll for readability, or -1. */
	int (*fd)(struct wire_transport *t);
	/* Releases everything; the transport is gone afterwards. */
	void (*destroy)(struct wire_transport *t);
};

struct wire_transport {
	const struct wire_transport_ops *ops;
};

/* A transport over a connected AF_UNIX stream socket. Consumes @fd (closed
 * by destroy, and on failure). Returns 0 or a negative errno. */
int wire_transport_sock_create(int fd, struct wire_transport **out);

#endif
