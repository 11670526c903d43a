/*
 * Client connection: connect, VERSION negotiation, close, device info and
 * reset. See client_priv.h for how the parts fit together.
 */
#include "client/client_priv.h"
#include "util/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Every ferry extension this client knows (include/ferry/client.h). */
#define CLIENT_KNOWN_EXTENSIONS \
	(WIRE_EXT_PRECOPY_INFO | WIRE_EXT_MIG_SHM | WIRE_EXT_LOW_POWER | WIRE_EXT_DIRTY_SHM)

_Static_assert(FERRY_EXT_PRECOPY_INFO == WIRE_EXT_PRECOPY_INFO &&
		       FERRY_EXT_MIG_SHM == WIRE_EXT_MIG_SHM &&
		       FERRY_EXT_LOW_POWER == WIRE_EXT_LOW_POWER &&
		       FERRY_EXT_DIRTY_SHM == WIRE_EXT_DIRTY_SHM,
	       "public extension bits are the wire's");

static void offer_caps(const struct ferry_client_options *o, struct wire_caps *mine)
{
	wire_caps_default(mine);
	mine->max_msg_fds = CLIENT_MAX_MSG_FDS;
	mine->max_data_xfer_size = CLIENT_MAX_XFER;
	mine->twin_socket = !(o && o->no_twin_socket);
	mine->ferry_ext = o && o->no_extensions ? 0 : CLIENT_KNOWN_EXTENSIONS;
}

static int open_twin(struct ferry_client *c, int fd, int timeout_ms)
{
	struct wire_transport *tr;
	char name[160];
	int r = wire_transport_sock_create(fd, &tr);
	if (r < 0)
		return r;
	snprintf(name, sizeof(name), "%s (twin)", c->name);
	struct wire_chan_opts o = {
		.name = name,
		.max_rx_size = CLIENT_MAX_XFER + WIRE_MSG_OVERHEAD,
		.max_rx_fds = 1, /* the server has no fds to send here */
		.timeout_ms = timeout_ms,
	};
	return wire_chan_create(tr, &o, &c->twin);
}

static int negotiate(struct ferry_client *c, const struct ferry_client_options *o)
{
	struct wire_caps mine, theirs;
	int twin_fd = -1;
	offer_caps(o, &mine);
	int r = wire_version_client(c->ch, &mine, &theirs, &twin_fd);
	if (r < 0)
		return r; /* logged by the wire layer */

	struct ferry_server_caps *s = &c->caps;
	s->major = theirs.major;
	s->minor = theirs.minor;
	s->max_msg_fds = theirs.max_msg_fds;
	s->max_data_xfer_size = theirs.max_data_xfer_size;
	s->max_dma_maps = theirs.max_dma_maps;
	s->pgsizes = theirs.pgsizes;
	s->twin_socket = twin_fd >= 0;
	s->write_multiple = theirs.write_multiple;
	s->extensions = mine.ferry_ext & theirs.ferry_ext;
	/* pgsizes has no bit below 4096 (checked by the parser) */
	c->dma_min_page = theirs.pgsizes & -theirs.pgsizes;

	if (twin_fd >= 0) {
		r = open_twin(c, twin_fd, o ? o->timeout_ms : 0);
		if (r < 0) {
			log_err("%s: cannot use the twin socket: %s", c->name, strerror(-r));
			return r;
		}
	}
	log_debug("%s: server speaks vfio-user %u.%u, max_msg_fds %u, max_data_xfer_size %u%s",
		  c->name, s->major, s->minor, s->max_msg_fds, s->max_data_xfer_size,
		  s->twin_socket ? ", twin socket" : "");
	return 0;
}

int ferry_client_connect_fd(int fd, const struct ferry_client_options *opts,
			    struct ferry_client **out)
{
	struct wire_transport *tr;
	int r;

	*out = NULL;
	if (fd < 0)
		return -EBADF;
	struct ferry_client *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	snprintf(c->name, sizeof(c->name), "%s",
		 opts && opts->name ? opts->name : "vfio-user device");
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->dirty_lock, NULL);
	client_dma_init(&c->dma);
	c->rx_limit = CLIENT_MAX_XFER + WIRE_MSG_OVERHEAD;
	c->mig_last_state = -1;

	r = wire_transport_sock_create(fd, &tr);
	if (r < 0)
		goto fail;
	struct wire_chan_opts co = {
		.name = c->name,
		.max_rx_size = c->rx_limit,
		.max_rx_fds = CLIENT_MAX_MSG_FDS,
		.timeout_ms = opts ? opts->timeout_ms : 0,
	};
	r = wire_chan_create(tr, &co, &c->ch);
	if (r < 0)
		goto fail;
	r = negotiate(c, opts);
	if (r < 0)
		goto fail;
	r = client_service_start(c);
	if (r < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	ferry_client_close(c);
	return r;
}

int ferry_client_connect(const char *path, const struct ferry_client_options *opts,
			 struct ferry_client **out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct ferry_client_options o = opts ? *opts : (struct ferry_client_options){0};

	*out = NULL;
	if (!path)
		return -EINVAL;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_err("%s: socket path is longer than %zu bytes", path, sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;
		log_err("%s: cannot connect: %s", path, strerror(-e));
		close(fd);
		return e;
	}
	if (!o.name)
		o.name = path;
	return ferry_client_connect_fd(fd, &o, out);
}

void ferry_client_close(struct ferry_client *c)
{
	if (!c)
		return;
	/* Stop the service thread first: it may be reading either channel. */
	if (c->ch)
		wire_chan_kill(c->ch, -ECONNRESET);
	if (c->twin)
		wire_chan_kill(c->twin, -ECONNRESET);
	client_service_join(c);
	client_power_free(c);
	client_regions_free(c);
	client_dirty_free(c);
	wire_chan_destroy(c->twin);
	wire_chan_destroy(c->ch);
	client_dma_destroy(&c->dma);
	pthread_mutex_destroy(&c->dirty_lock);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

const struct ferry_server_caps *ferry_client_server_caps(const struct ferry_client *c)
{
	return &c->caps;
}

const char *ferry_client_name(const struct ferry_client *c)
{
	return c->name;
}

static int fetch_device_desc(struct ferry_client *c, struct ferry_device_desc *out)
{
	struct vfio_user_device_info req = {.argsz = sizeof(req)}, rep;
	struct wire_msg reply;
	int r = client_call_simple(c, "DEVICE_GET_INFO", VFIO_USER_DEVICE_GET_INFO, &req,
				   sizeof(req), sizeof(rep), &reply);
	if (r < 0)
		return r;
	memcpy(&rep, reply.payload, sizeof(rep));
	wire_msg_release(&reply);
	if (rep.argsz < sizeof(rep)) {
		log_err("%s: DEVICE_GET_INFO reply argsz %u is below %zu", c->name, rep.argsz,
			sizeof(rep));
		return -EPROTO;
	}
	if (rep.num_regions > CLIENT_MAX_REGIONS || rep.num_irqs > CLIENT_MAX_IRQS) {
		log_err("%s: DEVICE_GET_INFO announces %u regions and %u irq indexes (at most %u and %u)",
			c->name, rep.num_regions, rep.num_irqs, CLIENT_MAX_REGIONS, CLIENT_MAX_IRQS);
		return -EPROTO;
	}
	out->flags = rep.flags;
	out->num_regions = rep.num_regions;
	out->num_irqs = rep.num_irqs;
	return 0;
}

int client_device_desc(struct ferry_client *c, struct ferry_device_desc *out)
{
	pthread_mutex_lock(&c->lock);
	bool have = c->has_device_desc;
	if (have)
		*out = c->device;
	pthread_mutex_unlock(&c->lock);
	if (have)
		return 0;

	struct ferry_device_desc d;
	int r = fetch_device_desc(c, &d);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->lock);
	if (!c->has_device_desc) {
		c->device = d;
		c->has_device_desc = true;
	}
	*out = c->device; /* a racing first query wins; both saw the same server */
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int ferry_client_device_info(struct ferry_client *c, struct ferry_device_desc *out)
{
	return client_device_desc(c, out);
}

int ferry_client_reset(struct ferry_client *c)
{
	return client_call_simple(c, "DEVICE_RESET", VFIO_USER_DEVICE_RESET, NULL, 0, 0, NULL);
}
