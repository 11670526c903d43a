/*
 * The migration device features (PROTOCOL.md §7.3, §7.4, §7.6;
 * docs/protocol-extensions.md for precopy_info), as entries of the feature
 * registry (feature.c owns the envelope: GET/SET/PROBE rules, argsz, fds,
 * and the migration-state masks below).
 *
 *   MIGRATION (1)        GET   the model's VFIO_MIGRATION_* flags
 *   MIG_DEVICE_STATE (2) GET   the current state, data_fd -1
 *                        SET   the whole (multi-arc) transition, then the reply
 *   MIG_DATA_SIZE (9)    GET   bytes STOP_COPY still produces; only with
 *                              ops.stop_copy_size; any state
 *   PRECOPY_INFO (0xff01) GET  only when the client negotiated precopy_info
 *                              and the device has PRE_COPY; PRE_COPY(_P2P)
 *                              only (EINVAL elsewhere)
 *
 * The sizes include the library's own bytes (prefix, trailer): they are part
 * of what a client reads. The unread prefix counts as initial data.
 */
#include "device/mig.h"
#include "util/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static bool has_mig(const struct ferry_device *dev)
{
	return dev->mig != NULL;
}

static bool has_size(const struct ferry_device *dev)
{
	return dev->mig && dev->mig->ops.stop_copy_size;
}

static bool has_precopy_info(const struct ferry_device *dev)
{
	return dev->mig && (dev->mig->ops.flags & VFIO_MIGRATION_PRE_COPY) && dev->conn &&
	       (dev->conn->caps.ferry_ext & WIRE_EXT_PRECOPY_INFO);
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Copies @len bytes of @src into a malloc'd reply, if the client can take it. */
static int reply_copy(struct ferry_device *dev, const char *what, const void *src, uint32_t len,
		      uint32_t max_out, struct feature_reply *out)
{
	if (max_out < len) {
		log_err("%s: DEVICE_FEATURE GET %s: argsz leaves room for %u data bytes, %u needed",
			dev->name, what, max_out, len);
		return -EINVAL;
	}
	out->data = malloc(len);
	if (!out->data) {
		log_err("%s: DEVICE_FEATURE GET %s: out of memory", dev->name, what);
		return -ENOMEM;
	}
	memcpy(out->data, src, len);
	out->len = len;
	return 0;
}

static int migration_get(struct ferry_device *dev, const uint8_t *in, uint32_t in_len,
			 uint32_t max_out, struct feature_reply *out)
{
	struct vfio_user_feature_migration v = {.flags = dev->mig->ops.flags};

	(void)in, (void)in_len;
	return reply_copy(dev, "MIGRATION", &v, sizeof(v), max_out, out);
}

static int state_get(struct ferry_device *dev, const uint8_t *in, uint32_t in_len,
		     uint32_t max_out, struct feature_reply *out)
{
	struct vfio_user_feature_mig_state v = {.device_state = mig_cur(dev), .data_fd = -1};

	(void)in, (void)in_len;
	return reply_copy(dev, "MIG_DEVICE_STATE", &v, sizeof(v), max_out, out);
}

static int state_set(struct ferry_device *dev, uint8_t *data, uint32_t len)
{
	struct vfio_user_feature_mig_state v;
	int r;

	(void)len; /* >= min_set_len */
	memcpy(&v, data, sizeof(v));
	if ((r = mig_set_state(dev, v.device_state)) < 0)
		return r;
	v.data_fd = -1; /* unused in vfio-user; echoed as the kernel reports it */
	memcpy(data, &v, sizeof(v));
	return 0;
}

static int size_get(struct ferry_device *dev, const uint8_t *in, uint32_t in_len,
		    uint32_t max_out, struct feature_reply *out)
{
	struct mig *g = dev->mig;
	uint64_t model = 0, total;
	int r;

	(void)in, (void)in_len;
	if ((r = g->ops.stop_copy_size(g->opaque, &model)) > 0)
		r = 0;
	if (r < 0) {
		log_err("%s: MIG_DATA_SIZE in %s: the model's stop_copy_size() failed: %s", dev->name,
			ferry_mig_state_name(mig_cur(dev)), strerror(-r));
		return r;
	}
	if (g->save.is_model_done)
		model = 0; /* the model said so already: 0 forever */
	total = add_sat(model, mig_save_lib_left(dev, NULL));
	return reply_copy(dev, "MIG_DATA_SIZE", &total, sizeof(total), max_out, out);
}

static int precopy_get(struct ferry_device *dev, const uint8_t *in, uint32_t in_len,
		       uint32_t max_out, struct feature_reply *out)
{
	struct mig *g = dev->mig;
	struct vfio_user_precopy_info v = {.argsz = sizeof(v)};
	uint64_t prefix_left = 0, initial = 0, dirty = 0;
	int r;

	(void)in, (void)in_len;
	if ((r = g->ops.precopy_info(g->opaque, &initial, &dirty)) > 0)
		r = 0;
	if (r < 0) {
		log_err("%s: PRECOPY_INFO in %s: the model's precopy_info() failed: %s", dev->name,
			ferry_mig_state_name(mig_cur(dev)), strerror(-r));
		return r;
	}
	mig_save_lib_left(dev, &prefix_left);
	v.initial_bytes = add_sat(initial, prefix_left);
	v.dirty_bytes = dirty;
	return reply_copy(dev, "PRECOPY_INFO", &v, sizeof(v), max_out, out);
}

const struct feature_ops feature_migration = {
	.index = VFIO_DEVICE_FEATURE_MIGRATION,
	.name = "MIGRATION",
	.ops = VFIO_DEVICE_FEATURE_GET,
	.is_present = has_mig,
	.get = migration_get,
};

const struct feature_ops feature_mig_device_state = {
	.index = VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
	.name = "MIG_DEVICE_STATE",
	.ops = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET,
	.min_set_len = sizeof(struct vfio_user_feature_mig_state),
	.is_present = has_mig,
	.get = state_get,
	.set = state_set,
};

const struct feature_ops feature_mig_data_size = {
	.index = VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
	.name = "MIG_DATA_SIZE",
	.ops = VFIO_DEVICE_FEATURE_GET,
	.is_present = has_size,
	.get = size_get,
};

const struct feature_ops feature_precopy_info = {
	.index = FERRY_FEATURE_PRECOPY_INFO,
	.name = "PRECOPY_INFO",
	.ops = VFIO_DEVICE_FEATURE_GET,
	.is_present = has_precopy_info,
	.get = precopy_get,
	.get_states = MIG_STATES_PRECOPY,
};
