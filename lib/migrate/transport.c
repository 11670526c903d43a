/* Transport wrappers and the iovec cursor shared by the implementations. */
#include "migrate/transport.h"

#include <errno.h>

void mig_iov_cursor_init(struct mig_iov_cursor *c, const struct iovec *iov, int cnt)
{
	c->iov = iov;
	c->cnt = cnt > 0 ? cnt : 0;
	c->idx = 0;
	c->off = 0;
	mig_iov_cursor_advance(c, 0);
}

/* Skips empty pieces and pieces already fully written. */
static void skip_done(struct mig_iov_cursor *c)
{
	while (c->idx < c->cnt && c->off >= c->iov[c->idx].iov_len) {
		c->idx++;
		c->off = 0;
	}
}

int mig_iov_cursor_fill(struct mig_iov_cursor *c, struct iovec *dst, int max)
{
	int n = 0;
	int i = c->idx;
	size_t off = c->off;

	for (; i < c->cnt && n < max; i++, off = 0) {
		if (c->iov[i].iov_len <= off)
			continue;
		dst[n].iov_base = (char *)c->iov[i].iov_base + off;
		dst[n].iov_len = c->iov[i].iov_len - off;
		n++;
	}
	return n;
}

void mig_iov_cursor_advance(struct mig_iov_cursor *c, size_t n)
{
	skip_done(c);
	while (n && c->idx < c->cnt) {
		size_t left = c->iov[c->idx].iov_len - c->off;
		if (n < left) {
			c->off += n;
			return;
		}
		n -= left;
		c->idx++;
		c->off = 0;
		skip_done(c);
	}
}

bool mig_iov_cursor_done(struct mig_iov_cursor *c)
{
	skip_done(c);
	return c->idx >= c->cnt;
}

int mig_transport_write_all(struct mig_transport *t, const struct iovec *iov, int iovcnt,
			    int timeout_ms)
{
	if (!t || iovcnt < 0 || (iovcnt && !iov))
		return -EINVAL;
	return t->ops->write_all(t, iov, iovcnt, timeout_ms);
}

int mig_transport_write(struct mig_transport *t, const void *buf, size_t len, int timeout_ms)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};

	return mig_transport_write_all(t, &iov, 1, timeout_ms);
}

ssize_t mig_transport_read_full(struct mig_transport *t, void *buf, size_t len, int timeout_ms)
{
	if (!t || (len && !buf))
		return -EINVAL;
	return t->ops->read_full(t, buf, len, timeout_ms);
}

int mig_transport_pending(struct mig_transport *t)
{
	if (!t)
		return -EINVAL;
	return t->ops->pending(t);
}

void mig_transport_shutdown(struct mig_transport *t)
{
	if (t && t->ops->shutdown)
		t->ops->shutdown(t);
}

void mig_transport_close(struct mig_transport *t)
{
	if (t)
		t->ops->close(t);
}
