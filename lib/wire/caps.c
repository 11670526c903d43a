/* VERSION negotiation: capabilities JSON (json-c) and the handshake. */
#include "wire/caps.h"
#include "util/log.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ferry extension names as they appear in "ferry":{"<name>":true}. */
static const struct {
	const char *name;
	uint32_t bit;
} ext_names[] = {
	{"precopy_info", WIRE_EXT_PRECOPY_INFO},
	{"mig_shm", WIRE_EXT_MIG_SHM},
	{"low_power", WIRE_EXT_LOW_POWER},
	{"dirty_shm", WIRE_EXT_DIRTY_SHM},
};

/* Limits on what a peer may claim, so later arithmetic stays small. */
#define MAX_PEER_FDS 1024u
#define MAX_PEER_XFER (64u * 1024u * 1024u)

void wire_caps_default(struct wire_caps *c)
{
	memset(c, 0, sizeof(*c));
	c->max_msg_fds = 1;
	c->max_data_xfer_size = VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE;
	c->max_dma_maps = VFIO_USER_DEFAULT_MAX_DMA_MAPS;
	c->pgsizes = VFIO_USER_DEFAULT_PGSIZES;
	c->twin_fd_index = -1;
}

static int get_uint(json_object *obj, const char *key, uint64_t max, uint64_t *out, bool *found)
{
	json_object *v;
	*found = false;
	if (!json_object_object_get_ex(obj, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_int)) {
		log_err("VERSION: capability \"%s\" is not an integer", key);
		return -EINVAL;
	}
	/* json-c keeps large positive integers as uint64; negatives as int64 */
	if (json_object_get_int64(v) < 0 || json_object_get_uint64(v) > max) {
		log_err("VERSION: capability \"%s\" out of range", key);
		return -EINVAL;
	}
	*out = json_object_get_uint64(v);
	*found = true;
	return 0;
}

static int get_bool(json_object *obj, const char *key, bool *out)
{
	json_object *v;
	if (!json_object_object_get_ex(obj, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_boolean)) {
		log_err("VERSION: capability \"%s\" is not a boolean", key);
		return -EINVAL;
	}
	*out = json_object_get_boolean(v);
	return 0;
}

static int parse_caps_object(json_object *caps, struct wire_caps *c)
{
	json_object *v;
	uint64_t u;
	bool found;
	int r;

	if ((r = get_uint(caps, "max_msg_fds", MAX_PEER_FDS, &u, &found)) < 0)
		return r;
	if (found)
		c->max_msg_fds = (uint32_t)u;
	if ((r = get_uint(caps, "max_data_xfer_size", MAX_PEER_XFER, &u, &found)) < 0)
		return r;
	if (found) {
		/* The spec sets no floor (libvfio-user's sample client
		 * announces 1024); 0 would leave no way to make progress. */
		if (u == 0) {
			log_err("VERSION: max_data_xfer_size is 0");
			return -EINVAL;
		}
		c->max_data_xfer_size = (uint32_t)u;
	}
	if ((r = get_uint(caps, "max_dma_maps", UINT32_MAX, &u, &found)) < 0)
		return r;
	if (found)
		c->max_dma_maps = (uint32_t)u;
	if ((r = get_uint(caps, "pgsizes", UINT64_MAX, &u, &found)) < 0)
		return r;
	if (found) {
		if (!u || (u & 4095)) {
			log_err("VERSION: pgsizes 0x%llx has bits below 4096", (unsigned long long)u);
			return -EINVAL;
		}
		c->pgsizes = u;
	}
	if ((r = get_bool(caps, "write_multiple", &c->write_multiple)) < 0)
		return r;

	if (json_object_object_get_ex(caps, "twin_socket", &v)) {
		if (!json_object_is_type(v, json_type_object)) {
			log_err("VERSION: twin_socket is not an object");
			return -EINVAL;
		}
		if ((r = get_bool(v, "supported", &c->twin_socket)) < 0)
			return r;
		if ((r = get_uint(v, "fd_index", MAX_PEER_FDS, &u, &found)) < 0)
			return r;
		if (found)
			c->twin_fd_index = (int)u;
	}
	/* Legacy migration v1 capability: accepted and ignored (PROTOCOL.md §2.2). */
	if (json_object_object_get_ex(caps, "migration", &v) &&
	    json_object_is_type(v, json_type_object)) {
		if (get_uint(v, "pgsize", UINT32_MAX, &u, &found) == 0 && found)
			c->migration_pgsize = (uint32_t)u;
	}
	if (json_object_object_get_ex(caps, "ferry", &v)) {
		if (!json_object_is_type(v, json_type_object)) {
			log_err("VERSION: ferry capability is not an object");
			return -EINVAL;
		}
		for (size_t i = 0; i < sizeof(ext_names) / sizeof(ext_names[0]); i++) {
			bool on = false;
			if ((r = get_bool(v, ext_names[i].name, &on)) < 0)
				return r;
			if (on)
				c->ferry_ext |= ext_names[i].bit;
		}
	}
	return 0;
}

int wire_caps_parse(const char *json, size_t len, struct wire_caps *c)
{
	wire_caps_default(c);
	if (!len)
		return 0;
	if (json[len - 1] != '\0') {
		log_err("VERSION: capabilities JSON is not NUL-terminated");
		return -EINVAL;
	}
	if (strlen(json) != len - 1) {
		log_err("VERSION: capabilities JSON has an embedded NUL");
		return -EINVAL;
	}
	if (len == 1)
		return 0;

	json_tokener *tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	json_object *root = json_tokener_parse_ex(tok, json, (int)len - 1);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	json_tokener_free(tok);
	if (!root || jerr != json_tokener_success) {
		log_err("VERSION: capabilities are not valid JSON: %s",
			jerr == json_tokener_continue ? "truncated" : json_tokener_error_desc(jerr));
		json_object_put(root);
		return -EINVAL;
	}
	int r = 0;
	json_object *caps;
	if (!json_object_is_type(root, json_type_object)) {
		log_err("VERSION: capabilities JSON is not an object");
		r = -EINVAL;
	} else if (json_object_object_get_ex(root, "capabilities", &caps)) {
		if (!json_object_is_type(caps, json_type_object)) {
			log_err("VERSION: \"capabilities\" is not an object");
			r = -EINVAL;
		} else {
			r = parse_caps_object(caps, c);
		}
	}
	json_object_put(root);
	return r;
}

char *wire_caps_format(const struct wire_caps *c, bool is_reply)
{
	json_object *root = json_object_new_object();
	json_object *caps = json_object_new_object();
	json_object_object_add(root, "capabilities", caps);
	json_object_object_add(caps, "max_msg_fds", json_object_new_int64(c->max_msg_fds));
	json_object_object_add(caps, "max_data_xfer_size",
			       json_object_new_int64(c->max_data_xfer_size));
	json_object_object_add(caps, "max_dma_maps", json_object_new_int64(c->max_dma_maps));
	json_object_object_add(caps, "pgsizes", json_object_new_int64((int64_t)c->pgsizes));
	if (c->write_multiple)
		json_object_object_add(caps, "write_multiple", json_object_new_boolean(1));
	if (c->twin_socket) {
		json_object *twin = json_object_new_object();
		json_object_object_add(twin, "supported", json_object_new_boolean(1));
		if (is_reply && c->twin_fd_index >= 0)
			json_object_object_add(twin, "fd_index",
					       json_object_new_int(c->twin_fd_index));
		json_object_object_add(caps, "twin_socket", twin);
	}
	if (c->ferry_ext) {
		json_object *ext = json_object_new_object();
		for (size_t i = 0; i < sizeof(ext_names) / sizeof(ext_names[0]); i++)
			if (c->ferry_ext & ext_names[i].bit)
				json_object_object_add(ext, ext_names[i].name,
						       json_object_new_boolean(1));
		json_object_object_add(caps, "ferry", ext);
	}
	char *s = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
	json_object_put(root);
	return s;
}

static int send_version(struct wire_chan *ch, const struct wire_msg *req, uint16_t minor,
			const struct wire_caps *c, const int *fds, unsigned nfds,
			struct wire_msg *reply)
{
	struct vfio_user_version v = {.major = VFIO_USER_MAJOR, .minor = minor};
	char *json = wire_caps_format(c, req != NULL);
	if (!json)
		return -ENOMEM;
	struct iovec iov[2] = {
		{.iov_base = &v, .iov_len = sizeof(v)},
		{.iov_base = json, .iov_len = strlen(json) + 1},
	};
	int r = req ? wire_reply(ch, req, iov, 2, fds, nfds)
		    : wire_call(ch, VFIO_USER_VERSION, iov, 2, NULL, 0, reply);
	free(json);
	return r;
}

int wire_version_client(struct wire_chan *ch, const struct wire_caps *mine,
			struct wire_caps *theirs, int *twin_fd)
{
	struct wire_msg reply;
	struct vfio_user_version v;
	int r;

	*twin_fd = -1;
	r = send_version(ch, NULL, VFIO_USER_MINOR, mine, NULL, 0, &reply);
	if (r < 0) {
		log_err("%s: VERSION refused: %s", wire_chan_name(ch), strerror(-r));
		return r;
	}
	r = -EPROTO;
	if (reply.len < sizeof(v)) {
		log_err("%s: VERSION reply of %u bytes is too short", wire_chan_name(ch), reply.len);
		goto out;
	}
	memcpy(&v, reply.payload, sizeof(v));
	if (v.major != VFIO_USER_MAJOR || v.minor > VFIO_USER_MINOR) {
		log_err("%s: server speaks version %u.%u, we proposed %u.%u", wire_chan_name(ch),
			v.major, v.minor, VFIO_USER_MAJOR, VFIO_USER_MINOR);
		goto out;
	}
	if (wire_caps_parse((char *)reply.payload + sizeof(v), reply.len - sizeof(v), theirs) < 0)
		goto out;
	theirs->major = v.major;
	theirs->minor = v.minor;
	if (theirs->twin_socket) {
		if (!mine->twin_socket || theirs->twin_fd_index < 0 ||
		    (unsigned)theirs->twin_fd_index >= reply.nfds) {
			log_err("%s: server's twin_socket reply is inconsistent", wire_chan_name(ch));
			goto out;
		}
		*twin_fd = wire_msg_take_fd(&reply, (unsigned)theirs->twin_fd_index);
	}
	if (reply.nfds > (*twin_fd >= 0 ? 1u : 0u)) {
		log_err("%s: VERSION reply carried %u unexpected fds", wire_chan_name(ch),
			reply.nfds - (*twin_fd >= 0 ? 1u : 0u));
		goto out;
	}
	r = 0;
out:
	if (r < 0 && *twin_fd >= 0) {
		close(*twin_fd);
		*twin_fd = -1;
	}
	wire_msg_release(&reply);
	return r;
}

int wire_version_server(struct wire_chan *ch, struct wire_caps *mine, struct wire_caps *theirs,
			int twin_fd_to_send)
{
	struct wire_msg req;
	int r = wire_next_command(ch, &req, -1);
	if (r < 0)
		return r;
	return wire_version_server_msg(ch, &req, mine, theirs, twin_fd_to_send);
}

int wire_version_server_msg(struct wire_chan *ch, struct wire_msg *req, struct wire_caps *mine,
			    struct wire_caps *theirs, int twin_fd_to_send)
{
	struct vfio_user_version v;
	int r = -EINVAL;

	if (req->hdr.cmd != VFIO_USER_VERSION) {
		log_err("%s: first command is %u, not VERSION", wire_chan_name(ch), req->hdr.cmd);
		goto fail;
	}
	if (req->nfds) {
		log_err("%s: VERSION carried %u fds", wire_chan_name(ch), req->nfds);
		goto fail;
	}
	if (req->len < sizeof(v)) {
		log_err("%s: VERSION of %u bytes is too short", wire_chan_name(ch), req->len);
		goto fail;
	}
	memcpy(&v, req->payload, sizeof(v));
	if (v.major != VFIO_USER_MAJOR) {
		log_err("%s: client speaks major version %u, we speak %u", wire_chan_name(ch),
			v.major, VFIO_USER_MAJOR);
		goto fail;
	}
	if (wire_caps_parse((char *)req->payload + sizeof(v), req->len - sizeof(v), theirs) < 0)
		goto fail;
	theirs->major = v.major;
	theirs->minor = v.minor;

	mine->ferry_ext &= theirs->ferry_ext;
	mine->twin_socket = mine->twin_socket && theirs->twin_socket && twin_fd_to_send >= 0;
	mine->twin_fd_index = mine->twin_socket ? 0 : -1;
	uint16_t minor = v.minor < VFIO_USER_MINOR ? v.minor : VFIO_USER_MINOR;
	r = send_version(ch, req, minor, mine, &twin_fd_to_send, mine->twin_socket ? 1 : 0, NULL);
	wire_msg_release(req);
	return r;
fail:
	wire_reply_error(ch, req, r);
	wire_msg_release(req);
	return r;
}
