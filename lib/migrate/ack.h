/*
 * The acknowledgement: after the stream, the destination tells the source,
 * over the transport's back-channel, whether it took over (it validated
 * everything and its devices and workloads run) or why not. The source
 * releases its devices only on a success ack; anything else (an error ack,
 * a closed connection, a timeout) means it resumes.
 *
 *   ack := "FERRYACK" status:u32 msg_len:u32 crc:u32 msg[msg_len]
 *
 * status is 0 for success or a positive errno; msg is UTF-8 text without
 * NUL, at most MIG_ACK_MSG_MAX bytes; crc is crc32_z over the 16 bytes
 * before it and the message. Sockets only: a file has no back-channel.
 *
 * Before it, after each ROUND_END, the destination sends a round ack once
 * it has applied everything up to that ROUND_END (every device has loaded
 * its data), in the same 20-byte frame:
 *
 *   round_ack := "FERRYRND" round:u32 0:u32 crc:u32
 *
 * The source waits for the last round's before it pauses the guest, so a
 * destination that lags (devices load slower than the link delivers) does
 * so while the guest still runs, not inside the downtime.
 */
#ifndef FERRY_MIGRATE_ACK_H
#define FERRY_MIGRATE_ACK_H

#include <stddef.h>

#include "migrate/transport.h"

#define MIG_ACK_MAGIC "FERRYACK"
#define MIG_ROUND_ACK_MAGIC "FERRYRND"
#define MIG_ACK_HEADER_LEN 20u
#define MIG_ACK_MSG_MAX 1024u

/* Destination: sends @status (0 or a positive errno) and @msg (may be NULL;
 * longer messages are cut). Returns 0, -EOPNOTSUPP without a back-channel,
 * or a transport error. */
int mig_ack_send(struct mig_transport *t, int status, const char *msg, int timeout_ms);

/* Destination: round @round was applied. Returns as mig_ack_send. */
int mig_ack_send_round(struct mig_transport *t, uint32_t round, int timeout_ms);

/* Source: waits up to @timeout_ms of silence for the round ack of @round
 * (earlier rounds' are skipped). Returns 0 when it came; 1 when the final
 * ack came instead (the destination gave up: *@status and @msg as for
 * mig_ack_recv); or a negative errno as for mig_ack_recv. */
int mig_ack_wait_round(struct mig_transport *t, uint32_t round, int timeout_ms, int *status,
		       char *msg, size_t msgcap);

/* Source: waits up to @timeout_ms of silence for the ack (skipping round
 * acks). Returns 0 with
 * *@status (0: the destination took over) and the message in @msg (NUL-
 * terminated, cut to @msgcap), or a negative errno: -EOPNOTSUPP without a
 * back-channel, -ENODATA if the connection closed first, -EBADMSG for a
 * damaged ack, or a transport error. */
int mig_ack_recv(struct mig_transport *t, int timeout_ms, int *status, char *msg,
		 size_t msgcap);

#endif
