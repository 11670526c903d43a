/*
 * The one place that decides what a client may send.
 *
 * cmds[] is indexed by command id (enum vfio_user_command). An entry without
 * a handler is a command this server does not accept from a client (DMA_READ
 * and DMA_WRITE go the other way, 14 is the removed DIRTY_PAGES). For each
 * command the table says: the handler, the smallest payload it can parse,
 * how many fds may come with it, in which migration states it is allowed,
 * and in which it is allowed for config space only (masks of
 * 1 << enum ferry_mig_state, MIG_STATES_* in device_priv.h).
 *
 * Migration gating (PROTOCOL.md §8.2, §8.5), kernel-friendly. A stopped
 * device (STOP, STOP_COPY, RESUMING) still answers config space, as Linux
 * requires of a stopped VFIO device (libvfio-user refuses more). The
 * model's registers (trapped BAR accesses) are not reached while it is
 * frozen, so nothing changes the state a stream is made of or loaded into.
 * RUN = RUNNING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P; cfg = config space
 * (region 7) only; - = EINVAL.
 *
 *   command                       RUN  STOP  STOP_COPY  RESUMING  ERROR
 *   VERSION, DEVICE_GET_INFO,      y    y     y          y         y
 *     GET_REGION_INFO, _IO_FDS,
 *     GET_IRQ_INFO                (information only)
 *   DMA_MAP, DMA_UNMAP             y    y     y          y         y
 *                                 (the client's IOMMU, as in the kernel; a
 *                                  stopped device does no DMA: helpers -EBUSY)
 *   DEVICE_SET_IRQS                y    y     y          y         y
 *                                 (eventfds and masks are the client's; a
 *                                  trigger while stopped is kept pending)
 *   REGION_READ                    y    cfg   cfg        cfg       cfg
 *   REGION_WRITE                   y    cfg   -          cfg       cfg
 *                                 (STOP_COPY: the stream is being taken;
 *                                  RESUMING: a VMM restores config space there;
 *                                  ERROR: an FLR through config space resets)
 *   REGION_WRITE_MULTI             y    -     -          -         -
 *                                 (posted BAR writes)
 *   DEVICE_RESET                   y    y     y          y         y
 *                                 (ends any session, state RUNNING: mig_reset.c)
 *   DEVICE_FEATURE                 y    y     y          y         y
 *                                 (each feature's own states: feature registry)
 *   MIG_DATA_READ                 PRE_COPY, PRE_COPY_P2P, STOP_COPY only
 *   MIG_DATA_WRITE                RESUMING only
 * MIG_DATA_READ/WRITE to a device without migration are unsupported
 * commands. The mig_shm variants (mig_shm.c) carry the same two masks.
 *
 * Checks, in order, each answered with an error reply:
 *   1. before a successful VERSION only VERSION is accepted: anything else is
 *      refused and the connection dropped (PROTOCOL.md §2.1, §2.3);
 *   2. unknown command id -> EINVAL (connection kept);
 *   3. more fds than the command takes -> EINVAL (the fds are closed);
 *   4. payload shorter than the fixed part -> EINVAL;
 *   5. command not allowed in the current migration state -> EINVAL;
 * then the handler validates the fields themselves. Steps 5 and the
 * handler run under the state lock (mig_reset.c), so the state checked is
 * the state the handler sees, and a migration SET is over before any reset
 * from another thread.
 * Framing errors (sizes, truncation, message types) never get here: the
 * wire channel kills the connection for those.
 */
#include "device/device_priv.h"
#include "util/checked.h"
#include "util/log.h"

#include <errno.h>
#include <string.h>

#include <ferry/migration.h>

#define ALL MIG_STATES_ALL
#define RUN MIG_STATES_RUNNING
#define CFG_R (MIG_STATES_STOPPED)                     /* config reads when stopped */
#define CFG_W (MIG_BIT(FERRY_MIG_STOP) | MIG_BIT(FERRY_MIG_RESUMING) | MIG_BIT(FERRY_MIG_ERROR))

struct cmd_desc {
	const char *name;
	cmd_handler handle;
	uint32_t min_len;    /* payload bytes the handler needs at least */
	unsigned max_fds;    /* fds the command may carry */
	uint32_t mig_states; /* states it is allowed in */
	uint32_t cfg_states; /* of those, states where only config space may be accessed */
	bool needs_mig;      /* unsupported without ferry_device_set_migration */
};

static const struct cmd_desc cmds[VFIO_USER_MAX_COMMAND] = {
	[VFIO_USER_VERSION] = {"VERSION", handle_version, 0, WIRE_MAX_FDS, ALL},
	[VFIO_USER_DMA_MAP] = {"DMA_MAP", handle_dma_map, sizeof(struct vfio_user_dma_map), 1,
			       ALL},
	[VFIO_USER_DMA_UNMAP] = {"DMA_UNMAP", handle_dma_unmap,
				 sizeof(struct vfio_user_dma_unmap), 0, ALL},
	[VFIO_USER_DEVICE_GET_INFO] = {"DEVICE_GET_INFO", handle_device_get_info,
				       sizeof(struct vfio_user_device_info), 0, ALL},
	[VFIO_USER_DEVICE_GET_REGION_INFO] = {"DEVICE_GET_REGION_INFO", handle_get_region_info,
					      sizeof(struct vfio_user_region_info), 0, ALL},
	[VFIO_USER_DEVICE_GET_REGION_IO_FDS] = {"DEVICE_GET_REGION_IO_FDS",
						handle_get_region_io_fds,
						sizeof(struct vfio_user_region_io_fds), 0, ALL},
	[VFIO_USER_DEVICE_GET_IRQ_INFO] = {"DEVICE_GET_IRQ_INFO", handle_get_irq_info,
					   sizeof(struct vfio_user_irq_info), 0, ALL},
	/* eventfds: QEMU sends at most our max_msg_fds per message */
	[VFIO_USER_DEVICE_SET_IRQS] = {"DEVICE_SET_IRQS", handle_set_irqs,
				       sizeof(struct vfio_user_irq_set), WIRE_MAX_FDS, ALL},
	[VFIO_USER_REGION_READ] = {"REGION_READ", handle_region_read,
				   sizeof(struct vfio_user_region_access), 0, RUN | CFG_R, CFG_R},
	[VFIO_USER_REGION_WRITE] = {"REGION_WRITE", handle_region_write,
				    sizeof(struct vfio_user_region_access), 0, RUN | CFG_W, CFG_W},
	[VFIO_USER_DEVICE_RESET] = {"DEVICE_RESET", handle_device_reset, 0, 0, ALL},
	[VFIO_USER_REGION_WRITE_MULTI] = {"REGION_WRITE_MULTI", handle_region_write_multi,
					  sizeof(struct vfio_user_write_multi), 0, RUN},
	/* one fd: the low_power extension's wakeup eventfd, mig_shm's buffer
	 * (feature.c says which) */
	[VFIO_USER_DEVICE_FEATURE] = {"DEVICE_FEATURE", handle_device_feature,
				      sizeof(struct vfio_user_device_feature), 1, ALL},
	[VFIO_USER_MIG_DATA_READ] = {"MIG_DATA_READ", handle_mig_data_read,
				     sizeof(struct vfio_user_mig_data), 0, MIG_STATES_SAVING, 0,
				     true},
	[VFIO_USER_MIG_DATA_WRITE] = {"MIG_DATA_WRITE", handle_mig_data_write,
				      sizeof(struct vfio_user_mig_data), 0, MIG_STATES_RESUMING, 0,
				      true},
};

/* REGION_READ / REGION_WRITE of config space (payload >= min_len). */
static bool is_config_access(const struct wire_msg *m)
{
	struct vfio_user_region_access a;

	memcpy(&a, m->payload, sizeof(a));
	return a.region == FERRY_PCI_CONFIG;
}

int conn_reply(struct conn *c, const struct wire_msg *m, const struct iovec *iov, int iovcnt,
	       const int *fds, unsigned nfds)
{
	return wire_reply(c->chan, m, iov, iovcnt, fds, nfds);
}

void dispatch_command(struct ferry_device *dev, struct conn *c, struct wire_msg *m)
{
	uint16_t cmd = m->hdr.cmd;
	const struct cmd_desc *d = cmd < ARRAY_SIZE(cmds) && cmds[cmd].handle &&
				   (!cmds[cmd].needs_mig || dev->mig) ? &cmds[cmd] : NULL;
	uint32_t st;
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
	dev_lock(dev);
	st = atomic_load(&dev->mig_state);
	if (!(d->mig_states & MIG_BIT(st))) {
		log_err("%s: %s (id %u) not allowed in migration state %s", dev->name, d->name,
			m->hdr.msg_id, ferry_mig_state_name(st));
		r = -EINVAL;
	} else if ((d->cfg_states & MIG_BIT(st)) && !is_config_access(m)) {
		log_err("%s: %s (id %u) of a BAR in migration state %s: only config space is "
			"accessible while the device is stopped", dev->name, d->name,
			m->hdr.msg_id, ferry_mig_state_name(st));
		r = -EINVAL;
	} else {
		r = d->handle(dev, c, m);
	}
	if (r < 0)
		wire_reply_error(c->chan, m, r);
	dev_unlock(dev);
	goto release_msg;
reply_error:
	wire_reply_error(c->chan, m, r);
release_msg:
	wire_msg_release(m);
}
