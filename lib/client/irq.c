/*
 * Interrupts: DEVICE_GET_IRQ_INFO and DEVICE_SET_IRQS (PROTOCOL.md §5).
 *
 * vfio-user carries eventfds as SCM_RIGHTS, not in the payload, so one
 * message cannot both set some vectors and tear others down: a message with
 * `count` fds sets vectors [start, start + count), one with none tears them
 * down. A caller's array mixing fds and -1 is therefore sent as runs of one
 * kind, and runs of fds are cut to the server's max_msg_fds.
 */
#include "client/client_priv.h"
#include "util/log.h"

#include <errno.h>
#include <string.h>

int ferry_client_irq_info(struct ferry_client *c, unsigned index, struct ferry_irq_desc *out)
{
	struct vfio_user_irq_info req = {.argsz = sizeof(req), .index = index}, rep;
	struct wire_msg m;
	int r = client_call_simple(c, "DEVICE_GET_IRQ_INFO", VFIO_USER_DEVICE_GET_IRQ_INFO, &req,
				   sizeof(req), sizeof(rep), &m);
	if (r < 0)
		return r;
	memcpy(&rep, m.payload, sizeof(rep));
	wire_msg_release(&m);
	if (rep.index != index || rep.argsz < sizeof(rep)) {
		log_err("%s: irq %u info reply names index %u with argsz %u", c->name, index,
			rep.index, rep.argsz);
		return -EPROTO;
	}
	out->index = rep.index;
	out->flags = rep.flags;
	out->count = rep.count;
	return 0;
}

static int set_irqs(struct ferry_client *c, uint32_t flags, unsigned index, unsigned start,
		    unsigned count, const int *fds, unsigned nfds)
{
	struct vfio_user_irq_set req = {
		.argsz = sizeof(req), .flags = flags, .index = index, .start = start,
		.count = count,
	};
	struct iovec iov = {.iov_base = &req, .iov_len = sizeof(req)};
	struct client_req cr = {
		.what = "DEVICE_SET_IRQS", .cmd = VFIO_USER_DEVICE_SET_IRQS, .iov = &iov,
		.iovcnt = 1, .fds = fds, .nfds = nfds,
	};
	return client_call(c, &cr, NULL);
}

int ferry_client_set_irq_eventfds(struct ferry_client *c, unsigned index, unsigned start,
				  unsigned count, const int *fds)
{
	const uint32_t flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
	unsigned per_msg = c->caps.max_msg_fds < WIRE_MAX_FDS ? c->caps.max_msg_fds : WIRE_MAX_FDS;

	if (!count || !fds || count > UINT32_MAX - start) {
		log_err("%s: irq %u: bad eventfd range start %u count %u", c->name, index, start,
			count);
		return -EINVAL;
	}
	for (unsigned i = 0; i < count; ) {
		bool is_set = fds[i] >= 0;
		unsigned j = i + 1;
		while (j < count && (fds[j] >= 0) == is_set && (!is_set || j - i < per_msg))
			j++;
		if (is_set && !per_msg) {
			log_err("%s: irq %u: server accepts no fds, cannot set eventfds", c->name,
				index);
			return -EINVAL;
		}
		int r = set_irqs(c, flags, index, start + i, j - i, is_set ? fds + i : NULL,
				 is_set ? j - i : 0);
		if (r < 0)
			return r;
		i = j;
	}
	return 0;
}

int ferry_client_disable_irqs(struct ferry_client *c, unsigned index)
{
	return set_irqs(c, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, 0,
			NULL, 0);
}

int ferry_client_irq_action(struct ferry_client *c, unsigned index, unsigned start,
			    unsigned count, uint32_t action)
{
	if (action != VFIO_IRQ_SET_ACTION_MASK && action != VFIO_IRQ_SET_ACTION_UNMASK &&
	    action != VFIO_IRQ_SET_ACTION_TRIGGER) {
		log_err("%s: irq %u: action 0x%x is not one of MASK, UNMASK, TRIGGER", c->name,
			index, action);
		return -EINVAL;
	}
	return set_irqs(c, VFIO_IRQ_SET_DATA_NONE | action, index, start, count, NULL, 0);
}
