/*
 * Requests to the server and the checks every reply gets. wire_call()
 * already matches msg_id and cmd and turns error replies into errnos; here
 * we add what depends on the command: how much payload the reply must have
 * and how many fds it may carry.
 */
#include "client/client_priv.h"
#include "util/log.h"

#include <errno.h>
#include <string.h>

int client_call(struct ferry_client *c, const struct client_req *req, struct wire_msg *reply)
{
	struct wire_msg local;
	struct wire_msg *m = reply ? reply : &local;
	int r = wire_call(c->ch, req->cmd, req->iov, req->iovcnt, req->fds, req->nfds, m);
	if (r == -EPIPE)
		r = -ECONNRESET; /* the server is gone, whichever direction noticed */
	if (r < 0) {
		if (req->quiet)
			log_debug("%s: %s failed: %s", c->name, req->what, strerror(-r));
		else
			log_err("%s: %s failed: %s", c->name, req->what, strerror(-r));
		return r;
	}
	if (m->nfds > req->max_reply_fds) {
		log_err("%s: %s reply carried %u fds, expected at most %u", c->name, req->what,
			m->nfds, req->max_reply_fds);
		r = -EPROTO;
	} else if (m->len < req->min_reply) {
		log_err("%s: %s reply of %u bytes is shorter than %u", c->name, req->what, m->len,
			req->min_reply);
		r = -EPROTO;
	}
	if (r < 0 || !reply)
		wire_msg_release(m); /* closes every fd it carried */
	return r;
}

int client_call_simple(struct ferry_client *c, const char *what, uint16_t cmd,
		       const void *payload, size_t len, uint32_t min_reply,
		       struct wire_msg *reply)
{
	struct iovec iov = {.iov_base = (void *)payload, .iov_len = len};
	struct client_req req = {
		.what = what,
		.cmd = cmd,
		.iov = &iov,
		.iovcnt = len ? 1 : 0,
		.min_reply = min_reply,
	};
	return client_call(c, &req, reply);
}

int client_allow_rx(struct ferry_client *c, uint64_t payload)
{
	if (payload > UINT32_MAX - sizeof(struct vfio_user_header)) {
		log_err("%s: a reply of %llu bytes cannot be framed", c->name,
			(unsigned long long)payload);
		return -EMSGSIZE;
	}
	pthread_mutex_lock(&c->lock);
	if (payload > c->rx_limit) {
		c->rx_limit = (uint32_t)payload;
		wire_chan_set_max_rx_size(c->ch, c->rx_limit);
	}
	pthread_mutex_unlock(&c->lock);
	return 0;
}
