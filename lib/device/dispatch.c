/*
 * The one place that decides what a client may send.
 *
 * cmds[] is indexed by command id (enum vfio_user_command). An entry without
 * a handler is a command this server does not accept from a client (DMA_READ
 * and DMA_WRITE go the other way, 14 is the removed DIRTY_PAGES, migration
 * data commands arrive with migration support). For each command the table
 * says: the handler, the smallest payload it can parse, how many fds may come
 * with it, and in which migration states it is allowed (a mask of
 * 1 << enum ferry_mig_state; every state until migration lands).
 *
 * Checks, in order, each answered with an error reply:
 *   1. before a successful VERSION only VERSION is accepted: anything else is
 *      refused and the connection dropped (PROTOCOL.md §2.1, §2.3);
 *   2. unknown command id -> EINVAL (connection kept);
 *   3. more fds than the command takes -> EINVAL (the fds are closed);
 *   4. payload shorter than the fixed part -> EINVAL;
 *   5. command not allowed in the current migration state -> EINVAL;
 * then the handler validates the fields themselves.
 * Framing errors (sizes, truncation, message types) never get here: the
 * wire channel kills the connection for those.
 */
#include "device/device_priv.h"
#include "util/checked.h"
#include "util/log.h"

#include <errno.h>
#include <string.h>

#include <ferry/migration.h>

#define ALL_MIG_STATES ((1u << FERRY_MIG_NUM_STATES) - 1)

struct cmd_desc {
	const char *name;
	cmd_handler handle;
	uint32_t min_len;   /* payload bytes the handler needs at least */
	unsigned max_fds;   /* fds the command may carry */
	uint32_t mig_states; /* 1 << state for each state it is allowed in */
};

static const struct cmd_desc cmds[VFIO_USER_MAX_COMMAND] = {
	[VFIO_USER_VERSION] = {"VERSION", handle_version, 0, WIRE_MAX_FDS, ALL_MIG_STATES},
	[VFIO_USER_DMA_MAP] = {"DMA_MAP", handle_dma_map, sizeof(struct vfio_user_dma_map), 1,
			       ALL_MIG_STATES},
	[VFIO_USER_DMA_UNMAP] = {"DMA_UNMAP", handle_dma_unmap,
				 sizeof(struct vfio_user_dma_unmap), 0, ALL_MIG_STATES},
	[VFIO_USER_DEVICE_GET_INFO] = {"DEVICE_GET_INFO", handle_device_get_info,
				       sizeof(struct vfio_user_device_info), 0, ALL_MIG_STATES},
	[VFIO_USER_DEVICE_GET_REGION_INFO] = {"DEVICE_GET_REGION_INFO", handle_get_region_info,
					      sizeof(struct vfio_user_region_info), 0,
					      ALL_MIG_STATES},
	[VFIO_USER_DEVICE_GET_REGION_IO_FDS] = {"DEVICE_GET_REGION_IO_FDS",
						handle_get_region_io_fds,
						sizeof(struct vfio_user_region_io_fds), 0,
						ALL_MIG_STATES},
	[VFIO_USER_DEVICE_GET_IRQ_INFO] = {"DEVICE_GET_IRQ_INFO", handle_get_irq_info,
					   sizeof(struct vfio_user_irq_info), 0, ALL_MIG_STATES},
	/* eventfds: QEMU sends at most our max_msg_fds per message */
	[VFIO_USER_DEVICE_SET_IRQS] = {"DEVICE_SET_IRQS", handle_set_irqs,
				       sizeof(struct vfio_user_irq_set), WIRE_MAX_FDS,
				       ALL_MIG_STATES},
	[VFIO_USER_REGION_READ] = {"REGION_READ", handle_region_read,
				   sizeof(struct vfio_user_region_access), 0, ALL_MIG_STATES},
	[VFIO_USER_REGION_WRITE] = {"REGION_WRITE", handle_region_write,
				    sizeof(struct vfio_user_region_access), 0, ALL_MIG_STATES},
	[VFIO_USER_DEVICE_RESET] = {"DEVICE_RESET", handle_device_reset, 0, 0, ALL_MIG_STATES},
	[VFIO_USER_REGION_WRITE_MULTI] = {"REGION_WRITE_MULTI", handle_region_write_multi,
					  sizeof(struct vfio_user_write_multi), 0,
					  ALL_MIG_STATES},
	[VFIO_USER_DEVICE_FEATURE] = {"DEVICE_FEATURE", handle_device_feature,
				      sizeof(struct vfio_user_device_feature), 0, ALL_MIG_STATES},
};

int conn_reply(struct conn *c, const struct wire_msg *m, const struct iovec *iov, int iovcnt,
	       const int *fds, unsigned nfds)
{
	return wire_reply(c->chan, m, iov, iovcnt, fds, nfds);
}

void dispatch_command(struct ferry_device *dev, struct conn *c, struct wire_msg *m)
{
	uint16_t cmd = m->hdr.cmd;
	const struct cmd_desc *d = cmd < ARRAY_SIZE(cmds) && cmds[cmd].handle ? &cmds[cmd] : NULL;
	int r;

	if (!c->is_negotiated && cmd != VFIO_USER_VERSION) {
		log_err("%s: command %u (id %u) before VERSION: dropping the client", dev->name,
			cmd, m->hdr.msg_id);
		wire_reply_error(c->chan, m, EINVAL);
		c->is_dropping = true;
		goto release_msg;
	}
	if (!d) {
		log_err("%s: unknown or unsupported command %u (id %u, %u bytes)", dev->name, cmd,
			m->hdr.msg_id, m->len);
		r = -EINVAL;
		goto reply_error;
	}
	if (m->nfds > d->max_fds) {
		log_err("%s: %s (id %u) carries %u fds, at most %u", dev->name, d->name,
			m->hdr.msg_id, m->nfds, d->max_fds);
		r = -EINVAL;
		goto reply_error;
	}
	if (m->len < d->min_len) {
		log_err("%s: %s (id %u) payload of %u bytes, at least %u needed", dev->name, d->name,
			m->hdr.msg_id, m->len, d->min_len);
		r = -EINVAL;
		goto reply_error;
	}
	if (!(d->mig_states & (1u << dev->mig_state))) {
		log_err("%s: %s (id %u) not allowed in migration state %s", dev->name, d->name,
			m->hdr.msg_id, ferry_mig_state_name(dev->mig_state));
		r = -EINVAL;
		goto reply_error;
	}
	r = d->handle(dev, c, m);
	if (r >= 0)
		goto release_msg;
reply_error:
	wire_reply_error(c->chan, m, r);
release_msg:
	wire_msg_release(m);
}
