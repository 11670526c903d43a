/*
 * DEVICE_FEATURE (PROTOCOL.md §7.1): the envelope rules in one place, the
 * features themselves in a registry.
 *
 * Envelope rules (the kernel's vfio_check_feature plus the vfio-user
 * argsz convention):
 *   argsz < 8, unknown flag bits, GET|SET without PROBE, none of
 *   GET/SET/PROBE                                           -> EINVAL
 *   feature not in the registry or not offered by this device -> ENOTTY
 *   PROBE: GET/SET bits given must be supported, else EINVAL; the reply
 *   echoes the request (argsz must hold it)
 *   GET: supported, data >= the feature's minimum, reply = 8-byte envelope
 *   (argsz = 8 + data) + data, which must fit the request's argsz
 *   SET: supported, data >= minimum, argsz >= request; reply echoes the
 *   request (the handler may edit the data first, e.g. a chosen page size)
 *
 * A feature plugs in by adding its struct feature_ops to features[] (and
 * an is_present() when only some devices offer it, and get_states /
 * set_states when an operation is valid only in some migration states:
 * EINVAL elsewhere, the masks dispatch.c gates commands with). Requests
 * carry no fds (EINVAL) except the SET of a feature that declares max_fds
 * (an extension's: vfio-user features carry none); its set_fds() may take
 * them.
 */
#include "device/device_priv.h"
#include "util/checked.h"
#include "util/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FEATURE_FLAGS_KNOWN (VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_GET | \
			     VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE)

/* The registry: searched by feature index. */
static const struct feature_ops *const features[] = {
	&feature_dma_logging_start,
	&feature_dma_logging_stop,
	&feature_dma_logging_report,
	&feature_dirty_shm,
	&feature_low_power_entry,
	&feature_low_power_entry_wakeup,
	&feature_low_power_exit,
	&feature_migration,
	&feature_mig_device_state,
	&feature_mig_data_size,
	&feature_precopy_info,
	&feature_mig_shm,
	&feature_mig_shm_data,
};

static const struct feature_ops *find_feature(const struct ferry_device *dev, uint32_t index)
{
	for (size_t i = 0; i < ARRAY_SIZE(features); i++)
		if (features[i]->index == index &&
		    (!features[i]->is_present || features[i]->is_present(dev)))
			return features[i];
	return NULL;
}

int handle_device_feature(struct ferry_device *dev, struct conn *c, struct wire_msg *m)
{
	struct vfio_user_device_feature f;
	const struct feature_ops *fo;
	uint8_t *data = m->payload + sizeof(f);
	uint32_t dlen = m->len - (uint32_t)sizeof(f);
	uint32_t index, op;
	bool is_probe;
	const char *why = NULL;
	int r;

	memcpy(&f, m->payload, sizeof(f));
	index = f.flags & VFIO_DEVICE_FEATURE_MASK;
	op = f.flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET);
	is_probe = f.flags & VFIO_DEVICE_FEATURE_PROBE;
	if (f.argsz < sizeof(f))
		why = "argsz smaller than the envelope";
	else if (f.flags & ~FEATURE_FLAGS_KNOWN)
		why = "unknown flag bits";
	else if (op == (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET) && !is_probe)
		why = "GET and SET together without PROBE";
	else if (!op && !is_probe)
		why = "none of GET, SET, PROBE";
	if (why) {
		log_err("%s: DEVICE_FEATURE argsz %u flags 0x%x: %s", dev->name, f.argsz, f.flags,
			why);
		return -EINVAL;
	}
	fo = find_feature(dev, index);
	if (!fo) {
		log_debug("%s: DEVICE_FEATURE %u is not offered", dev->name, index);
		return -ENOTTY;
	}
	if (op & ~fo->ops)
		why = "operation not supported by this feature";
	else if (!is_probe && op == VFIO_DEVICE_FEATURE_GET && dlen < fo->min_get_len)
		why = "request data too short";
	else if (!is_probe && op == VFIO_DEVICE_FEATURE_SET && dlen < fo->min_set_len)
		why = "request data too short";
	else if ((is_probe || op == VFIO_DEVICE_FEATURE_SET) && f.argsz < m->len)
		why = "argsz cannot hold the echoed request";
	else if (m->nfds && (is_probe || op != VFIO_DEVICE_FEATURE_SET || m->nfds > fo->max_fds))
		why = "carries fds this request does not take";
	if (why) {
		log_err("%s: DEVICE_FEATURE %s (%u) flags 0x%x argsz %u, %u data bytes: %s",
			dev->name, fo->name, index, f.flags, f.argsz, dlen, why);
		return -EINVAL;
	}
	if (is_probe) {
		conn_reply_buf(c, m, m->payload, m->len);
		return 0;
	}
	/* Migration-state gating of the feature's operation (its table entry). */
	uint32_t states = op == VFIO_DEVICE_FEATURE_SET ? fo->set_states : fo->get_states;
	uint32_t st = atomic_load(&dev->mig_state);
	if (states && !(states & MIG_BIT(st))) {
		log_err("%s: DEVICE_FEATURE %s %s not allowed in migration state %s", dev->name,
			op == VFIO_DEVICE_FEATURE_SET ? "SET" : "GET", fo->name,
			ferry_mig_state_name(st));
		return -EINVAL;
	}
	if (op == VFIO_DEVICE_FEATURE_SET) {
		r = fo->set_fds ? fo->set_fds(dev, data, dlen, m) : fo->set(dev, data, dlen);
		if (r < 0)
			return r;
		conn_reply_buf(c, m, m->payload, m->len);
		return 0;
	}

	struct feature_reply out = {0};
	if ((r = fo->get(dev, data, dlen, f.argsz - (uint32_t)sizeof(f), &out)) < 0)
		return r;
	f.argsz = (uint32_t)sizeof(f) + out.len; /* out.len <= argsz - 8: no wrap */
	struct iovec iov[2] = {
		{.iov_base = &f, .iov_len = sizeof(f)},
		{.iov_base = out.data, .iov_len = out.len},
	};
	conn_reply(c, m, iov, out.len ? 2 : 1, NULL, 0);
	free(out.data);
	return 0;
}
