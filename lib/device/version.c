/*
 * VERSION (PROTOCOL.md §2): the first command of every connection.
 *
 * ferry offers: max_msg_fds WIRE_MAX_FDS, max_data_xfer_size 1 MiB,
 * max_dma_maps from the model (65535 by default), pgsizes 4 KiB,
 * write_multiple, and a twin socket when the client offers one (server to
 * client DMA_READ/DMA_WRITE then never mix with the client's commands), and
 * the ferry extensions low_power, dirty_shm, and with migration mig_shm and
 * (PRE_COPY) precopy_info (docs/protocol-extensions.md).
 * Unknown capabilities are ignored; a malformed VERSION gets an error reply
 * and the connection is dropped. A second VERSION is refused with EINVAL and
 * the connection kept.
 */
#include "device/device_priv.h"
#include "util/log.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void our_caps(const struct ferry_device *dev, struct wire_caps *c)
{
	wire_caps_default(c);
	c->max_msg_fds = WIRE_MAX_FDS;
	c->max_data_xfer_size = DEV_MAX_DATA_XFER;
	c->max_dma_maps = dev->info.max_dma_maps ? dev->info.max_dma_maps
						 : VFIO_USER_DEFAULT_MAX_DMA_MAPS;
	c->pgsizes = DEV_PGSIZES;
	c->write_multiple = true;
	c->twin_socket = true;
	c->ferry_ext |= WIRE_EXT_LOW_POWER; /* power.c; narrowed to what the client offers */
	c->ferry_ext |= WIRE_EXT_DIRTY_SHM; /* logging_shm.c */
	c->ferry_ext |= mig_wire_ext(dev);  /* migration.c: precopy_info, mig_shm */
}

int handle_version(struct ferry_device *dev, struct conn *c, struct wire_msg *m)
{
	struct wire_chan_opts opts = {.name = dev->name};
	struct wire_transport *tr;
	struct wire_caps mine, theirs;
	int sv[2];
	int r;

	if (c->is_negotiated) {
		log_err("%s: second VERSION (id %u) refused", dev->name, m->hdr.msg_id);
		return -EINVAL;
	}
	/* The twin socket is offered if the client asks; made up front because
	 * the reply carries it. */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		r = -errno;
		log_err("%s: socketpair for the twin socket: %s", dev->name, strerror(-r));
		return r;
	}
	our_caps(dev, &mine);
	r = wire_version_server_msg(c->chan, m, &mine, &theirs, sv[1]); /* replies, even errors */
	close(sv[1]);
	if (r < 0) {
		close(sv[0]);
		c->is_dropping = true;
		return 0;
	}
	if (mine.twin_socket) {
		if ((r = wire_transport_sock_create(sv[0], &tr)) < 0 ||
		    (r = wire_chan_create(tr, &opts, &c->twin)) < 0) {
			log_err("%s: twin socket channel: %s", dev->name, strerror(-r));
			c->is_dropping = true; /* the client believes in a twin socket */
			return 0;
		}
	} else {
		close(sv[0]);
	}
	c->caps = mine;
	c->client_caps = theirs;
	c->is_negotiated = true;
	wire_chan_set_max_rx_size(c->chan, DEV_MAX_DATA_XFER + WIRE_MSG_OVERHEAD);
	if (c->twin)
		wire_chan_set_max_rx_size(c->twin, DEV_MAX_DATA_XFER + WIRE_MSG_OVERHEAD);
	/* DMA messages go both ways sized by the smaller limit: the client's
	 * for our requests, ours for its replies. */
	dma_set_channel(dev, c->twin ? c->twin : c->chan,
			theirs.max_data_xfer_size < DEV_MAX_DATA_XFER ? theirs.max_data_xfer_size
								      : DEV_MAX_DATA_XFER);
	log_info("%s: client negotiated version 0.%u (max_data_xfer_size %u, twin socket %s)",
		 dev->name, theirs.minor, theirs.max_data_xfer_size, c->twin ? "yes" : "no");
	if (dev->ops.client_changed)
		dev->ops.client_changed(dev->info.opaque, true);
	return 0;
}
