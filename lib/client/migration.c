/*
 * Migration from the client's side (include/ferry/client_migration.h): the
 * MIGRATION, MIG_DEVICE_STATE, MIG_DATA_SIZE and ferry precopy_info features
 * and the data stream, through messages or ferry's mig_shm buffer
 * (PROTOCOL.md §7.3, §7.4, §7.6, §7.7; docs/protocol-extensions.md). Policy (which state, when) belongs to
 * lib/migrate; this file only speaks the messages.
 *
 * The last state the device confirmed is remembered so that a failed
 * transition can be logged as "from -> to".
 */
#include "client/client_priv.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ferry/client_migration.h>

/* GETs feature @feature into @out, which must come back whole. */
static int get_exact(struct ferry_client *c, const char *what, uint32_t feature, void *out,
		     size_t len)
{
	size_t got;
	int r = ferry_client_feature(c, feature | VFIO_DEVICE_FEATURE_GET, NULL, 0, NULL, 0, out,
				     len, &got);
	if (r == 0 && got < len) {
		log_err("%s: %s reply carries %zu bytes of data, not %zu", c->name, what, got, len);
		r = -EPROTO;
	}
	return r;
}

static void remember_state(struct ferry_client *c, int32_t state)
{
	pthread_mutex_lock(&c->lock);
	c->mig_last_state = state;
	pthread_mutex_unlock(&c->lock);
}

int ferry_client_mig_flags(struct ferry_client *c, uint64_t *flags)
{
	struct vfio_user_feature_migration mig;
	int r = get_exact(c, "MIGRATION", VFIO_DEVICE_FEATURE_MIGRATION, &mig, sizeof(mig));
	if (r == 0)
		*flags = mig.flags;
	return r;
}

int ferry_client_mig_get_state(struct ferry_client *c, enum ferry_mig_state *state)
{
	struct vfio_user_feature_mig_state st;
	int r = get_exact(c, "MIG_DEVICE_STATE", VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &st,
			  sizeof(st));
	if (r == 0 && st.device_state >= FERRY_MIG_NUM_STATES) {
		log_err("%s: device reports migration state %u, which does not exist", c->name,
			st.device_state);
		r = -EPROTO;
	}
	if (r < 0)
		return r;
	*state = (enum ferry_mig_state)st.device_state;
	remember_state(c, (int32_t)st.device_state);
	return 0;
}

int ferry_client_mig_set_state(struct ferry_client *c, enum ferry_mig_state state)
{
	struct vfio_user_feature_mig_state st = {.device_state = (uint32_t)state, .data_fd = -1};
	pthread_mutex_lock(&c->lock);
	int32_t from = c->mig_last_state;
	pthread_mutex_unlock(&c->lock);

	int r = ferry_client_feature(c, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE |
					    VFIO_DEVICE_FEATURE_SET,
				     &st, sizeof(st), NULL, 0, NULL, 0, NULL);
	if (r == 0) {
		remember_state(c, (int32_t)state);
		return 0;
	}
	remember_state(c, -1);
	enum ferry_mig_state now;
	bool known = wire_chan_error(c->ch) == 0 && ferry_client_mig_get_state(c, &now) == 0;
	log_err("%s: migration state %s -> %s failed: %s (device now %s)", c->name,
		from >= 0 ? ferry_mig_state_name((uint32_t)from) : "(unknown)",
		ferry_mig_state_name((uint32_t)state), strerror(-r),
		known ? ferry_mig_state_name(now) : "unknown");
	return r;
}

/* Largest MIG_DATA_READ / MIG_DATA_WRITE size for one message: the server's
 * announced max_data_xfer_size bounds what it accepts, and libvfio-user
 * also refuses sizes above the client's own (PROTOCOL.md §1.6). */
static uint32_t mig_chunk(const struct ferry_client *c)
{
	uint32_t n = c->caps.max_data_xfer_size;
	return n && n < CLIENT_MAX_XFER ? n : CLIENT_MAX_XFER;
}

int ferry_client_mig_read(struct ferry_client *c, void *buf, size_t len, size_t *got)
{
	uint32_t chunk = mig_chunk(c);
	uint32_t n = len < chunk ? (uint32_t)len : chunk;
	struct vfio_user_mig_data req = {.argsz = (uint32_t)sizeof(req) + n, .size = n}, rep;
	struct wire_msg m;

	*got = 0;
	if (!n)
		return 0;
	if (!buf)
		return -EINVAL;
	int r = client_call_simple(c, "MIG_DATA_READ", VFIO_USER_MIG_DATA_READ, &req,
				   sizeof(req), sizeof(rep), &m);
	if (r < 0)
		return r;
	memcpy(&rep, m.payload, sizeof(rep));
	/* size, not msg_size, says how much is data: libvfio-user pads. */
	if (rep.size > n || rep.size > m.len - sizeof(rep)) {
		log_err("%s: MIG_DATA_READ of %u bytes: reply claims %u in a %u-byte payload",
			c->name, n, rep.size, m.len);
		r = -EPROTO;
	} else if (rep.argsz < sizeof(rep) + (uint64_t)rep.size) {
		log_err("%s: MIG_DATA_READ reply argsz %u is below 8 + size %u", c->name,
			rep.argsz, rep.size);
		r = -EPROTO;
	} else {
		memcpy(buf, m.payload + sizeof(rep), rep.size);
		*got = rep.size;
	}
	wire_msg_release(&m);
	return r;
}

int ferry_client_mig_write(struct ferry_client *c, const void *buf, size_t len)
{
	uint32_t chunk = mig_chunk(c);

	if (len && !buf)
		return -EINVAL;
	for (size_t done = 0; done < len; ) {
		uint32_t n = len - done < chunk ? (uint32_t)(len - done) : chunk;
		struct vfio_user_mig_data req = {.argsz = (uint32_t)sizeof(req) + n, .size = n};
		struct iovec iov[2] = {
			{.iov_base = &req, .iov_len = sizeof(req)},
			{.iov_base = (uint8_t *)buf + done, .iov_len = n},
		};
		struct client_req cr = {
			.what = "MIG_DATA_WRITE", .cmd = VFIO_USER_MIG_DATA_WRITE, .iov = iov,
			.iovcnt = 2,
		};
		int r = client_call(c, &cr, NULL);
		if (r < 0)
			return r;
		done += n;
	}
	return 0;
}

int ferry_client_mig_data_size(struct ferry_client *c, uint64_t *stop_copy_bytes)
{
	uint64_t v;
	int r = get_exact(c, "MIG_DATA_SIZE", VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, &v, sizeof(v));
	if (r == 0)
		*stop_copy_bytes = v;
	return r;
}

int ferry_client_mig_precopy_info(struct ferry_client *c, uint64_t *initial_bytes,
				  uint64_t *dirty_bytes)
{
	struct vfio_user_precopy_info info;

	if (!(c->caps.extensions & FERRY_EXT_PRECOPY_INFO))
		return -EOPNOTSUPP;
	int r = get_exact(c, "PRECOPY_INFO", FERRY_FEATURE_PRECOPY_INFO, &info, sizeof(info));
	if (r == 0 && info.argsz < sizeof(info)) {
		log_err("%s: PRECOPY_INFO argsz %u is below %zu", c->name, info.argsz, sizeof(info));
		r = -EPROTO;
	}
	if (r < 0)
		return r;
	*initial_bytes = info.initial_bytes;
	*dirty_bytes = info.dirty_bytes;
	return 0;
}

/* ---- mig_shm ---- */

int ferry_mig_shm_create(uint64_t size, int *fd)
{
	int f, r;

	if (!fd || !size || size > (uint64_t)INT64_MAX) {
		log_err("ferry_mig_shm_create: size %" PRIu64 " or fd pointer invalid", size);
		return -EINVAL;
	}
	f = memfd_create("ferry-mig-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (f < 0) {
		r = -errno;
		log_err("ferry_mig_shm_create: memfd_create: %s", strerror(-r));
		return r;
	}
	if (ftruncate(f, (off_t)size) < 0 ||
	    fcntl(f, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		r = -errno;
		log_err("ferry_mig_shm_create: %" PRIu64 " bytes, sealed: %s", size, strerror(-r));
		close(f);
		return r;
	}
	*fd = f;
	return 0;
}

static bool has_shm(struct ferry_client *c)
{
	return c->caps.extensions & FERRY_EXT_MIG_SHM;
}

int ferry_client_mig_shm_setup(struct ferry_client *c, int fd, uint64_t size)
{
	struct vfio_user_mig_shm v = {.size = size};
	int r;

	if (!has_shm(c))
		return -EOPNOTSUPP;
	if (fd < 0 || !size) {
		log_err("%s: MIG_SHM setup with fd %d, size %" PRIu64 ": both needed", c->name, fd,
			size);
		return -EINVAL;
	}
	r = ferry_client_feature(c, FERRY_FEATURE_MIG_SHM | VFIO_DEVICE_FEATURE_SET, &v, sizeof(v),
				 &fd, 1, NULL, 0, NULL);
	if (r < 0)
		log_err("%s: MIG_SHM setup of %" PRIu64 " bytes failed: %s", c->name, size,
			strerror(-r));
	return r;
}

int ferry_client_mig_shm_release(struct ferry_client *c)
{
	struct vfio_user_mig_shm v = {0};
	int r;

	if (!has_shm(c))
		return -EOPNOTSUPP;
	r = ferry_client_feature(c, FERRY_FEATURE_MIG_SHM | VFIO_DEVICE_FEATURE_SET, &v, sizeof(v),
				 NULL, 0, NULL, 0, NULL);
	if (r < 0)
		log_err("%s: MIG_SHM release failed: %s", c->name, strerror(-r));
	return r;
}

int ferry_client_mig_read_shm(struct ferry_client *c, uint64_t offset, uint32_t len,
			      uint32_t *got)
{
	struct vfio_user_mig_shm_data req = {.offset = offset, .size = len}, rep;
	size_t n = 0;
	int r;

	*got = 0;
	if (!has_shm(c))
		return -EOPNOTSUPP;
	r = ferry_client_feature(c, FERRY_FEATURE_MIG_SHM_DATA | VFIO_DEVICE_FEATURE_GET, &req,
				 sizeof(req), NULL, 0, &rep, sizeof(rep), &n);
	if (r < 0) {
		log_err("%s: MIG_SHM read of %u bytes at 0x%" PRIx64 " failed: %s", c->name, len,
			offset, strerror(-r));
		return r;
	}
	if (n < sizeof(rep) || rep.offset != offset || rep.size > len) {
		log_err("%s: MIG_SHM read of %u bytes at 0x%" PRIx64 ": reply of %zu bytes names "
			"%u bytes at 0x%" PRIx64, c->name, len, offset, n,
			n >= sizeof(rep) ? rep.size : 0, n >= sizeof(rep) ? rep.offset : 0);
		return -EPROTO;
	}
	*got = rep.size;
	return 0;
}

int ferry_client_mig_write_shm(struct ferry_client *c, uint64_t offset, uint32_t len)
{
	struct vfio_user_mig_shm_data req = {.offset = offset, .size = len};
	int r;

	if (!has_shm(c))
		return -EOPNOTSUPP;
	r = ferry_client_feature(c, FERRY_FEATURE_MIG_SHM_DATA | VFIO_DEVICE_FEATURE_SET, &req,
				 sizeof(req), NULL, 0, NULL, 0, NULL);
	if (r < 0)
		log_err("%s: MIG_SHM write of %u bytes at 0x%" PRIx64 " failed: %s", c->name, len,
			offset, strerror(-r));
	return r;
}
