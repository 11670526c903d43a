/*
 * VERSION negotiation (PROTOCOL.md §2): the capabilities JSON object, parsed
 * and produced with json-c, and the two halves of the handshake.
 *
 * Each value describes what its sender can handle. Absent keys take the
 * spec's defaults; unknown keys are ignored; a known key of the wrong JSON
 * type is an error. ferry's own extensions live under "ferry" (see
 * docs/protocol-extensions.md), so a peer that does not know them ignores
 * them and a ferry peer sees them absent.
 */
#ifndef FERRY_WIRE_CAPS_H
#define FERRY_WIRE_CAPS_H

#include <stdbool.h>
#include <stdint.h>

#include "wire/wire.h"

/* ferry protocol extensions, negotiated in the "ferry" capability object:
 * each is on only if both sides list it. */
enum wire_ext {
	WIRE_EXT_PRECOPY_INFO = 1u << 0, /* pre-copy size information */
	WIRE_EXT_MIG_SHM = 1u << 1,      /* migration data through shared memory */
	WIRE_EXT_LOW_POWER = 1u << 2,    /* low-power features with wake-up eventfd */
	WIRE_EXT_DIRTY_SHM = 1u << 3,    /* DMA logging report through shared memory */
};

struct wire_caps {
	uint32_t max_msg_fds;
	uint32_t max_data_xfer_size;
	uint32_t max_dma_maps;
	uint64_t pgsizes;
	bool twin_socket;
	int twin_fd_index; /* reply only; -1 if absent */
	bool write_multiple;
	uint32_t ferry_ext; /* enum wire_ext bits */
	uint32_t migration_pgsize; /* legacy "migration":{"pgsize"}; 0 if absent; ignored */
	uint16_t major, minor; /* the peer's VERSION numbers; set by the handshake */
};

/* The spec's values for a peer that sends no capabilities at all. */
void wire_caps_default(struct wire_caps *c);

/* Parses @json (@len bytes including the terminating NUL, which must be
 * there) into @c, starting from the defaults. Returns 0 or -EINVAL with a
 * log line naming the key. */
int wire_caps_parse(const char *json, size_t len, struct wire_caps *c);

/* Formats @c as {"capabilities":{...}}; @is_reply adds twin_socket.fd_index.
 * Returns a malloc'd NUL-terminated string or NULL. */
char *wire_caps_format(const struct wire_caps *c, bool is_reply);

/* Client half: sends VERSION with @mine, reads the server's reply into
 * @theirs (a twin-socket fd, if the server sent one, is returned in
 * *@twin_fd, else -1). Checks major, minor and the reply's consistency. */
int wire_version_client(struct wire_chan *ch, const struct wire_caps *mine,
			struct wire_caps *theirs, int *twin_fd);

/* Server half: takes the first message, which must be VERSION without fds,
 * parses the client's caps into @theirs, and replies with @mine (whose
 * ferry_ext is narrowed to the common set and twin_socket to what the
 * client offered: the caller may read @mine back afterwards). If
 * @twin_fd_to_send >= 0 and the client offered twin_socket, it is sent as
 * fd 0 of the reply (not consumed). On a bad VERSION the error reply is sent
 * and a negative errno returned: the caller then drops the connection. */
int wire_version_server(struct wire_chan *ch, struct wire_caps *mine,
			struct wire_caps *theirs, int twin_fd_to_send);

/* wire_version_server for a VERSION command already taken from the channel
 * (an event-driven server reads its first message itself). Consumes @req
 * (released on return); anything but a valid VERSION gets an error reply and
 * a negative errno. */
int wire_version_server_msg(struct wire_chan *ch, struct wire_msg *req, struct wire_caps *mine,
			    struct wire_caps *theirs, int twin_fd_to_send);

#endif
