/*
 * The service thread: takes the server's commands and answers them. A
 * client serves only DMA_READ and DMA_WRITE (PROTOCOL.md §1.5); anything
 * else gets ENOSYS, as QEMU answers. Commands arrive on the twin socket when
 * one was negotiated, else on the main channel, where the wire layer hands
 * replies to their waiting callers and queues commands for us.
 */
#include "client/client_priv.h"
#include "util/log.h"

#include <errno.h>
#include <string.h>

static void serve_one(struct ferry_client *c, struct wire_chan *ch, struct wire_msg *m)
{
	if (m->nfds) {
		/* No server command carries fds; wire_msg_release closes them. */
		log_err("%s: server command %u carried %u fds", c->name, m->hdr.cmd, m->nfds);
		wire_reply_error(ch, m, EINVAL);
		return;
	}
	switch (m->hdr.cmd) {
	case VFIO_USER_DMA_READ:
	case VFIO_USER_DMA_WRITE:
		client_dma_serve(c, ch, m);
		return;
	default:
		log_err("%s: server sent command %u, which a client does not serve", c->name,
			m->hdr.cmd);
		wire_reply_error(ch, m, ENOSYS);
		return;
	}
}

static void *service_main(void *arg)
{
	struct ferry_client *c = arg;
	struct wire_chan *ch = c->twin ? c->twin : c->ch;

	for (;;) {
		struct wire_msg m;
		/* On the main channel, callers receive their own replies. */
		int r = c->twin ? wire_next_command(ch, &m, -1) : wire_wait_command(ch, &m);
		if (r < 0) {
			log_debug("%s: service thread stops: %s", c->name, strerror(-r));
			/* Without its twin socket the server cannot reach guest
			 * memory by message any more: the connection is over. */
			if (c->twin)
				wire_chan_kill(c->ch, r);
			return NULL;
		}
		serve_one(c, ch, &m);
		wire_msg_release(&m);
	}
}

int client_service_start(struct ferry_client *c)
{
	int r = pthread_create(&c->service, NULL, service_main, c);
	if (r) {
		log_err("%s: cannot start the service thread: %s", c->name, strerror(r));
		return -r;
	}
	c->service_running = true;
	return 0;
}

void client_service_join(struct ferry_client *c)
{
	if (!c->service_running)
		return;
	pthread_join(c->service, NULL);
	c->service_running = false;
}
