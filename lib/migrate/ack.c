/* The destination's acknowledgement (see ack.h). */
#include "migrate/ack.h"
#include "migrate/stream_format.h"
#include "util/log.h"

#include <errno.h>
#include <string.h>
#include <zlib.h>

int mig_ack_send(struct mig_transport *t, int status, const char *msg, int timeout_ms)
{
	uint8_t h[MIG_ACK_HEADER_LEN];
	size_t n = msg ? strnlen(msg, MIG_ACK_MSG_MAX) : 0;
	uLong crc;

	if (!t || status < 0)
		return -EINVAL;
	if (!t->has_backchannel) {
		log_err("migration %s: no back-channel for the acknowledgement", t->desc);
		return -EOPNOTSUPP;
	}
	memcpy(h, MIG_ACK_MAGIC, 8);
	mig_put_le32(h + 8, (uint32_t)status);
	mig_put_le32(h + 12, (uint32_t)n);
	crc = crc32_z(crc32_z(0, h, 16), (const Bytef *)(msg ? msg : ""), n);
	mig_put_le32(h + 16, (uint32_t)crc);

	struct iovec iov[2] = {
		{.iov_base = h, .iov_len = sizeof(h)},
		{.iov_base = (void *)(msg ? msg : ""), .iov_len = n},
	};
	return mig_transport_write_all(t, iov, 2, timeout_ms);
}

int mig_ack_send_round(struct mig_transport *t, uint32_t round, int timeout_ms)
{
	uint8_t h[MIG_ACK_HEADER_LEN];

	if (!t)
		return -EINVAL;
	if (!t->has_backchannel)
		return -EOPNOTSUPP;
	memcpy(h, MIG_ROUND_ACK_MAGIC, 8);
	mig_put_le32(h + 8, round);
	mig_put_le32(h + 12, 0);
	mig_put_le32(h + 16, (uint32_t)crc32_z(0, h, 16));
	return mig_transport_write(t, h, sizeof(h), timeout_ms);
}

/*
 * Reads one back-channel frame: a round ack (*@round set, returns 1) or
 * the final ack (*@status and @msg set, returns 0); or a negative errno.
 */
static int read_frame(struct mig_transport *t, int timeout_ms, uint32_t *round, int *status,
		      char *msg, size_t msgcap)
{
	uint8_t h[MIG_ACK_HEADER_LEN];
	char text[MIG_ACK_MSG_MAX];
	uint32_t st, n, crc;
	ssize_t got;

	got = mig_transport_read_full(t, h, sizeof(h), timeout_ms);
	if (got < 0)
		return (int)got;
	if ((size_t)got < sizeof(h)) {
		log_err("migration %s: the destination closed the connection without an acknowledgement (%zd of %u bytes)",
			t->desc, got, MIG_ACK_HEADER_LEN);
		return -ENODATA;
	}
	if (memcmp(h, MIG_ROUND_ACK_MAGIC, 8) == 0) {
		if (mig_get_le32(h + 12) != 0 ||
		    (uint32_t)crc32_z(0, h, 16) != mig_get_le32(h + 16)) {
			log_err("migration %s: a round acknowledgement is damaged", t->desc);
			return -EBADMSG;
		}
		*round = mig_get_le32(h + 8);
		return 1;
	}
	if (memcmp(h, MIG_ACK_MAGIC, 8) != 0) {
		log_err("migration %s: the acknowledgement has a bad magic", t->desc);
		return -EBADMSG;
	}
	st = mig_get_le32(h + 8);
	n = mig_get_le32(h + 12);
	crc = mig_get_le32(h + 16);
	if (n > MIG_ACK_MSG_MAX || st > 4095) {
		log_err("migration %s: acknowledgement with status %u and a %u-byte message: out of range",
			t->desc, st, n);
		return -EBADMSG;
	}
	got = mig_transport_read_full(t, text, n, timeout_ms);
	if (got < 0)
		return (int)got;
	if ((size_t)got < n) {
		log_err("migration %s: the acknowledgement message is cut short (%zd of %u bytes)",
			t->desc, got, n);
		return -ENODATA;
	}
	if ((uint32_t)crc32_z(crc32_z(0, h, 16), (const Bytef *)text, n) != crc ||
	    memchr(text, '\0', n)) {
		log_err("migration %s: the acknowledgement is damaged (checksum or NUL byte)", t->desc);
		return -EBADMSG;
	}
	*status = (int)st;
	if (msg && msgcap) {
		size_t k = n < msgcap - 1 ? n : msgcap - 1;
		memcpy(msg, text, k);
		msg[k] = '\0';
	}
	return 0;
}

int mig_ack_wait_round(struct mig_transport *t, uint32_t round, int timeout_ms, int *status,
		       char *msg, size_t msgcap)
{
	uint32_t got_round = 0;
	int rc;

	if (!t || !status)
		return -EINVAL;
	if (!t->has_backchannel)
		return -EOPNOTSUPP;
	do {
		rc = read_frame(t, timeout_ms, &got_round, status, msg, msgcap);
		if (rc == 0)
			return 1; /* the final ack, early */
	} while (rc == 1 && got_round < round);
	if (rc == 1 && got_round > round) {
		log_err("migration %s: round %u acknowledged while waiting for round %u", t->desc,
			got_round, round);
		return -EPROTO;
	}
	return rc < 0 ? rc : 0;
}

int mig_ack_recv(struct mig_transport *t, int timeout_ms, int *status, char *msg,
		 size_t msgcap)
{
	uint32_t round;
	int rc;

	if (!t || !status)
		return -EINVAL;
	if (!t->has_backchannel) {
		log_err("migration %s: no back-channel for the acknowledgement", t->desc);
		return -EOPNOTSUPP;
	}
	do
		rc = read_frame(t, timeout_ms, &round, status, msg, msgcap);
	while (rc == 1); /* rounds the source did not wait for */
	return rc;
}
