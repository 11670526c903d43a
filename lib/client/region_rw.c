/*
 * Trapped region access: REGION_READ / REGION_WRITE (PROTOCOL.md §3.2),
 * split into chunks no larger than the server's max_data_xfer_size (nor our
 * own, which bounds the replies we accept). A reply must echo the offset,
 * region and count of its request: a short read or write is an error, never
 * a partial result.
 */
#include "client/client_priv.h"
#include "util/log.h"

#include <errno.h>
#include <string.h>

static int check_echo(struct ferry_client *c, const char *what,
		      const struct vfio_user_region_access *req,
		      const struct vfio_user_region_access *rep)
{
	if (rep->offset == req->offset && rep->region == req->region && rep->count == req->count)
		return 0;
	log_err("%s: %s reply names region %u offset 0x%llx count %u, we asked region %u "
		"offset 0x%llx count %u", c->name, what, rep->region,
		(unsigned long long)rep->offset, rep->count, req->region,
		(unsigned long long)req->offset, req->count);
	return -EPROTO;
}

static int read_chunk(struct ferry_client *c, unsigned index, uint64_t offset, uint8_t *buf,
		      uint32_t n)
{
	struct vfio_user_region_access req = {.offset = offset, .region = index, .count = n}, rep;
	struct wire_msg m;
	int r = client_call_simple(c, "REGION_READ", VFIO_USER_REGION_READ, &req, sizeof(req),
				   sizeof(rep), &m);
	if (r < 0)
		return r;
	memcpy(&rep, m.payload, sizeof(rep));
	r = check_echo(c, "REGION_READ", &req, &rep);
	if (r == 0 && m.len != sizeof(rep) + n) {
		log_err("%s: REGION_READ of %u bytes at region %u offset 0x%llx: reply carries %u "
			"data bytes", c->name, n, index, (unsigned long long)offset,
			m.len - (uint32_t)sizeof(rep));
		r = -EPROTO;
	}
	if (r == 0)
		memcpy(buf, m.payload + sizeof(rep), n);
	wire_msg_release(&m);
	return r;
}

static int write_chunk(struct ferry_client *c, unsigned index, uint64_t offset,
		       const uint8_t *buf, uint32_t n)
{
	struct vfio_user_region_access req = {.offset = offset, .region = index, .count = n}, rep;
	struct iovec iov[2] = {
		{.iov_base = &req, .iov_len = sizeof(req)},
		{.iov_base = (void *)buf, .iov_len = n},
	};
	struct client_req cr = {
		.what = "REGION_WRITE", .cmd = VFIO_USER_REGION_WRITE, .iov = iov, .iovcnt = 2,
		.min_reply = sizeof(rep),
	};
	struct wire_msg m;
	int r = client_call(c, &cr, &m);
	if (r < 0)
		return r;
	memcpy(&rep, m.payload, sizeof(rep));
	r = check_echo(c, "REGION_WRITE", &req, &rep);
	wire_msg_release(&m);
	return r;
}

static int region_access(struct ferry_client *c, unsigned index, uint64_t offset, void *buf,
			 size_t len, bool is_write)
{
	uint32_t chunk = c->caps.max_data_xfer_size < CLIENT_MAX_XFER
		? c->caps.max_data_xfer_size : CLIENT_MAX_XFER;

	if (!len)
		return 0;
	if (!buf || len - 1 > UINT64_MAX - offset) {
		log_err("%s: region %u access of %zu bytes at 0x%llx wraps", c->name, index, len,
			(unsigned long long)offset);
		return -EINVAL;
	}
	for (size_t done = 0; done < len; ) {
		uint32_t n = len - done < chunk ? (uint32_t)(len - done) : chunk;
		int r = is_write ? write_chunk(c, index, offset + done, (uint8_t *)buf + done, n)
				 : read_chunk(c, index, offset + done, (uint8_t *)buf + done, n);
		if (r < 0)
			return r;
		done += n;
	}
	return 0;
}

int ferry_client_region_read(struct ferry_client *c, unsigned index, uint64_t offset,
			     void *buf, size_t len)
{
	return region_access(c, index, offset, buf, len, false);
}

int ferry_client_region_write(struct ferry_client *c, unsigned index, uint64_t offset,
			      const void *buf, size_t len)
{
	return region_access(c, index, offset, (void *)buf, len, true);
}

int ferry_client_read32(struct ferry_client *c, unsigned index, uint64_t offset, uint32_t *val)
{
	return region_access(c, index, offset, val, sizeof(*val), false);
}

int ferry_client_write32(struct ferry_client *c, unsigned index, uint64_t offset, uint32_t val)
{
	return region_access(c, index, offset, &val, sizeof(val), true);
}

int ferry_client_read64(struct ferry_client *c, unsigned index, uint64_t offset, uint64_t *val)
{
	return region_access(c, index, offset, val, sizeof(*val), false);
}

int ferry_client_write64(struct ferry_client *c, unsigned index, uint64_t offset, uint64_t val)
{
	return region_access(c, index, offset, &val, sizeof(val), true);
}
