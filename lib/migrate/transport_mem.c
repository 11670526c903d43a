/*
 * The memory transport: a bounded buffer that what is written can be read
 * back from. For tests and fuzzers that feed the stream reader crafted or
 * damaged bytes; simple on purpose (one thread, a flat realloc'd buffer).
 */
#include "migrate/transport.h"
#include "util/log.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct mem_transport {
	struct mig_transport base;
	uint8_t *buf;
	size_t len, cap, max;
	size_t rpos;
	bool is_shut;
};

static struct mem_transport *to_mem(struct mig_transport *t)
{
	return (struct mem_transport *)t;
}

static int mem_reserve(struct mem_transport *m, size_t add)
{
	size_t need;

	if (add > m->max - m->len)
		return -ENOSPC;
	need = m->len + add;
	if (need <= m->cap)
		return 0;
	size_t cap = m->cap ? m->cap : 4096;
	while (cap < need)
		cap = cap > m->max / 2 ? m->max : cap * 2;
	uint8_t *nb = realloc(m->buf, cap);
	if (!nb)
		return -ENOMEM;
	m->buf = nb;
	m->cap = cap;
	return 0;
}

static int mem_write_all(struct mig_transport *t, const struct iovec *iov, int iovcnt,
			 int timeout_ms)
{
	struct mem_transport *m = to_mem(t);
	size_t total = 0;

	(void)timeout_ms;
	if (m->is_shut)
		return -EPIPE;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > SIZE_MAX - total)
			return -EOVERFLOW;
		total += iov[i].iov_len;
	}
	int rc = mem_reserve(m, total);
	if (rc < 0) {
		log_err("migration %s: %zu more bytes would pass its %zu-byte limit", t->desc,
			total, m->max);
		return rc;
	}
	for (int i = 0; i < iovcnt; i++) {
		if (!iov[i].iov_len)
			continue;
		memcpy(m->buf + m->len, iov[i].iov_base, iov[i].iov_len);
		m->len += iov[i].iov_len;
	}
	return 0;
}

static ssize_t mem_read_full(struct mig_transport *t, void *buf, size_t len, int timeout_ms)
{
	struct mem_transport *m = to_mem(t);
	size_t n = m->len - m->rpos;

	(void)timeout_ms;
	if (m->is_shut)
		return 0;
	if (len > SSIZE_MAX)
		return -EINVAL;
	if (n > len)
		n = len;
	if (n)
		memcpy(buf, m->buf + m->rpos, n);
	m->rpos += n;
	return (ssize_t)n;
}

static int mem_pending(struct mig_transport *t)
{
	struct mem_transport *m = to_mem(t);

	return !m->is_shut && m->rpos < m->len;
}

static void mem_shutdown(struct mig_transport *t)
{
	to_mem(t)->is_shut = true;
}

static void mem_close(struct mig_transport *t)
{
	struct mem_transport *m = to_mem(t);

	free(m->buf);
	free(m);
}

static const struct mig_transport_ops mem_ops = {
	.write_all = mem_write_all,
	.read_full = mem_read_full,
	.pending = mem_pending,
	.shutdown = mem_shutdown,
	.close = mem_close,
};

int mig_transport_mem_create(size_t max_bytes, struct mig_transport **out)
{
	struct mem_transport *m;

	if (!out)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->base.ops = &mem_ops;
	m->base.has_backchannel = false;
	strcpy(m->base.desc, "memory");
	m->max = max_bytes;
	*out = &m->base;
	return 0;
}

const uint8_t *mig_transport_mem_data(struct mig_transport *t, size_t *len)
{
	if (!t || t->ops != &mem_ops)
		return NULL;
	struct mem_transport *m = to_mem(t);
	if (len)
		*len = m->len - m->rpos;
	return m->buf ? m->buf + m->rpos : (const uint8_t *)"";
}
