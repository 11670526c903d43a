/*
 * The mig_shm extension (docs/protocol-extensions.md): migration data moves
 * through a buffer the client shares with us, not through message payloads.
 *
 * Why: a MIG_DATA_READ carries its bytes through the socket (the model's
 * save() fills our buffer, the kernel copies it to the client, the client
 * copies it out, and the same again towards the destination). With a shared
 * buffer save() writes straight into the client's memory and, when the
 * client gives the same buffer to the destination, load() reads straight
 * from it: the client moves no byte at all, it only says where.
 *
 *   MIG_SHM (0xff02) SET + one fd: map the buffer (replaces the previous
 *       one); size 0 without an fd: drop it. The fd must be a memfd sealed
 *       with F_SEAL_SHRINK, so the client cannot truncate it under our
 *       mapping (a SIGBUS in the server). Connection state: dropped on
 *       disconnect. Allowed in every state.
 *   MIG_SHM_DATA (0xff03) GET {offset, size}: a MIG_DATA_READ whose bytes
 *       land in [offset, offset + size) of the buffer; the reply's size is
 *       the count (PRE_COPY, PRE_COPY_P2P, STOP_COPY only). SET {offset,
 *       size}: a MIG_DATA_WRITE of those bytes (RESUMING only).
 * The stream is the same one MIG_DATA_READ/WRITE carry; both ways may be
 * mixed. The client owns the buffer's layout (e.g. slots for pipelining);
 * a range must not be written by the client while we use it.
 */
#include "device/mig.h"
#include "util/checked.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest buffer we map: plenty for pipelining 1 MiB..64 MiB slots. */
#define MIG_SHM_MAX_SIZE (4ull << 30)

static bool has_shm(const struct ferry_device *dev)
{
	return dev->mig && dev->conn && (dev->conn->caps.ferry_ext & WIRE_EXT_MIG_SHM);
}

void mig_shm_release(struct ferry_device *dev)
{
	struct mig_shm *s = &dev->mig->shm;

	if (s->base) {
		munmap(s->base, s->size);
		log_debug("%s: mig_shm: buffer of %" PRIu64 " bytes dropped", dev->name, s->size);
	}
	s->base = NULL;
	s->size = 0;
}

static int shm_map(struct ferry_device *dev, int fd, uint64_t size)
{
	struct mig_shm *s = &dev->mig->shm;
	struct stat st;
	int seals;
	void *p;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < size) {
		log_err("%s: MIG_SHM of %" PRIu64 " bytes: the fd is not a memfd or file that large",
			dev->name, size);
		return -EINVAL;
	}
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
		log_err("%s: MIG_SHM: the memfd is not sealed with F_SEAL_SHRINK (seals 0x%x): it "
			"could be truncated under our mapping", dev->name, seals < 0 ? 0 : seals);
		return -EINVAL;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int r = -errno;
		log_err("%s: MIG_SHM: mmap of %" PRIu64 " bytes: %s", dev->name, size, strerror(-r));
		return r;
	}
	mig_shm_release(dev);
	s->base = p;
	s->size = size;
	log_debug("%s: mig_shm: buffer of %" PRIu64 " bytes mapped", dev->name, size);
	return 0;
}

static int shm_set(struct ferry_device *dev, uint8_t *data, uint32_t len, struct wire_msg *m)
{
	struct vfio_user_mig_shm v;
	int fd, r;

	(void)len; /* >= min_set_len */
	memcpy(&v, data, sizeof(v));
	if (v.flags || v.reserved || v.size > MIG_SHM_MAX_SIZE || (v.size && m->nfds != 1) ||
	    (!v.size && m->nfds)) {
		log_err("%s: MIG_SHM size %" PRIu64 " (at most %llu), flags 0x%x, reserved 0x%x, "
			"%u fds: one fd with a size, none to drop the buffer, flags 0",
			dev->name, v.size, MIG_SHM_MAX_SIZE, v.flags, v.reserved, m->nfds);
		return -EINVAL;
	}
	if (!v.size) {
		mig_shm_release(dev);
		return 0;
	}
	fd = wire_msg_take_fd(m, 0);
	r = shm_map(dev, fd, v.size);
	close(fd);
	return r;
}

/* The buffer range a data request names, or NULL (logged). */
static uint8_t *shm_range(struct ferry_device *dev, const struct vfio_user_mig_shm_data *v,
			  const char *what)
{
	const struct mig_shm *s = &dev->mig->shm;

	if (!s->base || v->flags || !range_ok(v->offset, v->size, s->size)) {
		log_err("%s: %s of %u bytes at 0x%" PRIx64 " (flags 0x%x) in %s: %s", dev->name,
			what, v->size, v->offset, v->flags, ferry_mig_state_name(mig_cur(dev)),
			!s->base ? "no MIG_SHM buffer" :
			v->flags ? "flags must be 0" : "outside the buffer");
		return NULL;
	}
	return s->base + v->offset;
}

static int shm_read(struct ferry_device *dev, const uint8_t *in, uint32_t in_len,
		    uint32_t max_out, struct feature_reply *out)
{
	struct vfio_user_mig_shm_data v;
	uint8_t *dst;
	ssize_t n;

	(void)in_len; /* >= min_get_len */
	memcpy(&v, in, sizeof(v));
	if (max_out < sizeof(v)) {
		log_err("%s: MIG_SHM read: argsz leaves room for %u data bytes, %zu needed",
			dev->name, max_out, sizeof(v));
		return -EINVAL;
	}
	if (!(dst = shm_range(dev, &v, "MIG_SHM read")))
		return -EINVAL;
	out->data = malloc(sizeof(v));
	if (!out->data)
		return -ENOMEM;
	power_wake_for(dev, "migration data");
	n = mig_save_fill(dev, dst, v.size, "MIG_SHM read");
	power_wake_done(dev);
	if (n < 0) {
		free(out->data);
		out->data = NULL;
		return (int)n;
	}
	v.size = (uint32_t)n;
	memcpy(out->data, &v, sizeof(v));
	out->len = sizeof(v);
	return 0;
}

static int shm_write(struct ferry_device *dev, uint8_t *data, uint32_t len)
{
	struct vfio_user_mig_shm_data v;
	uint8_t *src;
	int r;

	(void)len;
	memcpy(&v, data, sizeof(v));
	if (!(src = shm_range(dev, &v, "MIG_SHM write")))
		return -EINVAL;
	power_wake_for(dev, "migration data");
	r = mig_load_feed(dev, src, v.size, "MIG_SHM write");
	power_wake_done(dev);
	return r;
}

const struct feature_ops feature_mig_shm = {
	.index = FERRY_FEATURE_MIG_SHM,
	.name = "MIG_SHM",
	.ops = VFIO_DEVICE_FEATURE_SET,
	.min_set_len = sizeof(struct vfio_user_mig_shm),
	.is_present = has_shm,
	.max_fds = 1,
	.set_fds = shm_set,
};

const struct feature_ops feature_mig_shm_data = {
	.index = FERRY_FEATURE_MIG_SHM_DATA,
	.name = "MIG_SHM_DATA",
	.ops = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET,
	.min_get_len = sizeof(struct vfio_user_mig_shm_data),
	.min_set_len = sizeof(struct vfio_user_mig_shm_data),
	.is_present = has_shm,
	.get = shm_read,
	.set = shm_write,
	.get_states = MIG_STATES_SAVING,
	.set_states = MIG_STATES_RESUMING,
};
