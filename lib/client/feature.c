/*
 * DEVICE_FEATURE (PROTOCOL.md §7.1): the envelope, GET / SET / PROBE. The
 * request's argsz is the largest reply we accept: the request data for SET
 * and PROBE (echoed back), the caller's buffer for GET.
 *
 * Failures are logged at debug level only: support is discovered by trying
 * (ferry info probes every feature), so the caller decides what a failure
 * means and reports it.
 */
#include "client/client_priv.h"
#include "util/log.h"

#include <errno.h>
#include <string.h>

#define FEATURE_OPS (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE)

int ferry_client_feature(struct ferry_client *c, uint32_t flags, const void *in, size_t in_len,
			 const int *fds, unsigned nfds, void *out, size_t out_cap, size_t *out_len)
{
	struct vfio_user_device_feature req, rep;
	size_t data_max = in_len > out_cap ? in_len : out_cap;

	if (out_len)
		*out_len = 0;
	if ((flags & ~(VFIO_DEVICE_FEATURE_MASK | FEATURE_OPS)) || (in_len && !in) ||
	    (out_cap && !out) || (nfds && !fds) || data_max > UINT32_MAX - sizeof(req) - 16) {
		log_err("%s: DEVICE_FEATURE 0x%x: bad arguments", c->name, flags);
		return -EINVAL;
	}
	if (nfds > c->caps.max_msg_fds || nfds > WIRE_MAX_FDS) {
		log_err("%s: DEVICE_FEATURE 0x%x: %u fds, server accepts %u", c->name, flags, nfds,
			c->caps.max_msg_fds);
		return -EINVAL;
	}
	req.argsz = (uint32_t)(sizeof(req) + data_max);
	req.flags = flags;
	int r = client_allow_rx(c, req.argsz);
	if (r < 0)
		return r;

	struct iovec iov[2] = {
		{.iov_base = &req, .iov_len = sizeof(req)},
		{.iov_base = (void *)in, .iov_len = in_len},
	};
	struct client_req cr = {
		.what = "DEVICE_FEATURE", .cmd = VFIO_USER_DEVICE_FEATURE, .iov = iov,
		.iovcnt = in_len ? 2 : 1, .fds = fds, .nfds = nfds, .min_reply = sizeof(rep),
		.quiet = true,
	};
	struct wire_msg m;
	r = client_call(c, &cr, &m);
	if (r < 0)
		return r;
	memcpy(&rep, m.payload, sizeof(rep));
	if ((rep.flags & VFIO_DEVICE_FEATURE_MASK) != (flags & VFIO_DEVICE_FEATURE_MASK) ||
	    rep.argsz < sizeof(rep)) {
		log_err("%s: DEVICE_FEATURE %u reply names feature %u with argsz %u", c->name,
			flags & VFIO_DEVICE_FEATURE_MASK, rep.flags & VFIO_DEVICE_FEATURE_MASK,
			rep.argsz);
		wire_msg_release(&m);
		return -EPROTO;
	}
	/* argsz says how much of the payload is data; some servers pad. */
	size_t data = (m.len < rep.argsz ? m.len : rep.argsz) - sizeof(rep);
	if (out)
		memcpy(out, m.payload + sizeof(rep), data < out_cap ? data : out_cap);
	if (out_len)
		*out_len = data;
	wire_msg_release(&m);
	return 0;
}

int ferry_client_feature_probe(struct ferry_client *c, uint32_t feature, uint32_t ops)
{
	if (feature > VFIO_DEVICE_FEATURE_MASK ||
	    (ops & ~(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET))) {
		log_err("%s: feature probe of %u with ops 0x%x: bad arguments", c->name, feature, ops);
		return -EINVAL;
	}
	return ferry_client_feature(c, feature | ops | VFIO_DEVICE_FEATURE_PROBE, NULL, 0, NULL, 0,
				    NULL, 0, NULL);
}
