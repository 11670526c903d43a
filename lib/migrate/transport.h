/*
 * Migration transports: how a migration stream's bytes move between the
 * source host and the destination host.
 *
 * Concepts:
 * - A transport is an ops table over one byte stream, opened from a URI
 *   (uri.h): the source calls mig_transport_connect(); the destination calls
 *   mig_transport_listen() then mig_transport_accept(), which takes exactly
 *   one connection (or, for file:, opens the file for reading).
 * - Sockets (tcp:, unix:) are two-way: after the stream, the destination
 *   writes its acknowledgement on the same connection and the source reads
 *   it (the back-channel, ack.h). A file has no back-channel.
 * - Timeouts are inactivity limits: every wait for the socket to become
 *   readable or writable lasts at most timeout_ms (-1: forever), so a slow
 *   but moving transfer never times out and a stalled one does. Files ignore
 *   them.
 * - The memory transport (mig_transport_mem_create) keeps the bytes in a
 *   bounded buffer: what is written can be read back. Tests and fuzzers use
 *   it to feed the stream reader crafted or damaged input.
 *
 * Thread-safety: one thread writes and one thread reads at a time;
 * mig_transport_shutdown may be called from any thread to make both fail.
 * Processes using socket transports need not ignore SIGPIPE (sends use
 * MSG_NOSIGNAL); a file: URI naming a pipe or FIFO can still raise it.
 */
#ifndef FERRY_MIGRATE_TRANSPORT_H
#define FERRY_MIGRATE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct mig_transport;

struct mig_transport_ops {
	/* Writes every byte of @iov (any @iovcnt; the array is not modified).
	 * Returns 0, -ETIMEDOUT, -EPIPE when the peer is gone, or another
	 * negative errno. Required. */
	int (*write_all)(struct mig_transport *t, const struct iovec *iov, int iovcnt,
			 int timeout_ms);
	/* Reads exactly @len bytes unless the stream ends first. Returns the
	 * byte count (less than @len only at end of stream), -ETIMEDOUT, or
	 * another negative errno. Required. */
	ssize_t (*read_full)(struct mig_transport *t, void *buf, size_t len, int timeout_ms);
	/* Without waiting or consuming anything: 1 if more bytes can be read
	 * right now, 0 if not (none yet, or end of stream), or a negative
	 * errno. Required. */
	int (*pending)(struct mig_transport *t);
	/* Makes blocked and later reads and writes fail. Optional. */
	void (*shutdown)(struct mig_transport *t);
	/* Releases everything; the transport is gone afterwards. Required. */
	void (*close)(struct mig_transport *t);
};

struct mig_transport {
	const struct mig_transport_ops *ops;
	bool has_backchannel;  /* the destination can write back (sockets) */
	char desc[128];        /* for log lines: "tcp 127.0.0.1:4444", "file /x" */
};

/* A listening endpoint on the destination. */
struct mig_listener;

/* Socket buffer size asked for on tcp: and unix: sockets (SO_SNDBUF and
 * SO_RCVBUF), only when net.core.wmem_max / rmem_max allow it: an explicit
 * size turns the kernel's autotuning off and is silently clamped to that
 * maximum, so asking for more than it allows would make things worse.
 * Measured on loopback with 2 MiB writes (2 vCPUs, noisy): autotuning
 * 3.3-3.6 GB/s, 4 MiB 3.5-4.4 GB/s; on a real link a fixed large buffer
 * also opens the window from the first byte instead of after a ramp-up. */
#define MIG_SOCK_BUF_BYTES (4u << 20)

/*
 * Opens @uri for listening (destination side). tcp: binds the first address
 * HOST resolves to (port 0: the kernel picks; see mig_listener_port), with
 * SO_REUSEADDR. unix: creates the socket file, refusing an existing one;
 * the listener removes it once a connection is accepted or on close. file:
 * only records the path. Returns 0 or a negative errno (one log line).
 */
int mig_transport_listen(const char *uri, struct mig_listener **out);

/* The bound TCP port (0 for unix: and file:). */
uint16_t mig_listener_port(const struct mig_listener *l);

/* A URI a source can pass to mig_transport_connect to reach @l (for tcp:
 * with port 0, the port the kernel chose). Owned by @l. */
const char *mig_listener_uri(const struct mig_listener *l);

/*
 * Waits up to @timeout_ms (-1: forever) for one connection and returns it as
 * a transport; the listening socket is closed then (a second source cannot
 * connect). file: opens the file for reading. Returns 0, -ETIMEDOUT, -EBUSY
 * if a connection was already accepted, or another negative errno.
 */
int mig_transport_accept(struct mig_listener *l, int timeout_ms, struct mig_transport **out);

/* Closes the listening socket (if still open) and removes a unix: socket
 * file it created. NULL-safe. */
void mig_listener_close(struct mig_listener *l);

/*
 * Opens @uri as the source: connects to tcp: (every resolved address in
 * turn, each attempt bounded by @timeout_ms) or unix:, or creates/truncates
 * a file: (mode 0600). Returns 0 or a negative errno (one log line).
 */
int mig_transport_connect(const char *uri, int timeout_ms, struct mig_transport **out);

/* A transport over a connected stream socket (a socketpair, or one from
 * elsewhere). Consumes @fd (closed by close, and on failure); makes it
 * non-blocking. @desc names it in log lines. Returns 0 or a negative errno. */
int mig_transport_sock_create(int fd, const char *desc, struct mig_transport **out);

/* A transport over an open file descriptor: a regular file, a pipe or a
 * FIFO, opened for reading or for writing. Consumes @fd. No back-channel. */
int mig_transport_file_create(int fd, const char *desc, struct mig_transport **out);

/* A transport over a growable buffer of at most @max_bytes: writes append
 * (-ENOSPC past the limit), reads consume from the front. No back-channel. */
int mig_transport_mem_create(size_t max_bytes, struct mig_transport **out);

/* The bytes written to memory transport @t and not yet read (borrowed until
 * its next write or close); NULL if @t is not a memory transport. */
const uint8_t *mig_transport_mem_data(struct mig_transport *t, size_t *len);

/* Wrappers over the ops table. write is write_all for one buffer. close is
 * NULL-safe. shutdown does nothing if the transport has no shutdown op. */
int mig_transport_write_all(struct mig_transport *t, const struct iovec *iov, int iovcnt,
			    int timeout_ms);
int mig_transport_write(struct mig_transport *t, const void *buf, size_t len, int timeout_ms);
ssize_t mig_transport_read_full(struct mig_transport *t, void *buf, size_t len, int timeout_ms);
int mig_transport_pending(struct mig_transport *t);
void mig_transport_shutdown(struct mig_transport *t);
void mig_transport_close(struct mig_transport *t);

/* Walks an iovec array without modifying it, for write_all implementations:
 * fill() copies the next at most @max non-empty pieces (the first trimmed
 * by what was already written) into @dst; advance() consumes @n bytes. */
struct mig_iov_cursor {
	const struct iovec *iov;
	int cnt;
	int idx;
	size_t off;
};

void mig_iov_cursor_init(struct mig_iov_cursor *c, const struct iovec *iov, int cnt);
int mig_iov_cursor_fill(struct mig_iov_cursor *c, struct iovec *dst, int max);
void mig_iov_cursor_advance(struct mig_iov_cursor *c, size_t n);
bool mig_iov_cursor_done(struct mig_iov_cursor *c);

#endif
