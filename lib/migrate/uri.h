/*
 * Migration URIs: where a migration stream goes or comes from.
 *
 *   tcp:HOST:PORT     HOST is a name, an IPv4 literal or a bracketed IPv6
 *                     literal ("tcp:[::1]:4444"); PORT is decimal 0..65535
 *                     (0 only when listening: the kernel picks one).
 *   unix:PATH         a UNIX stream socket; PATH shorter than sun_path.
 *   file:PATH         a file the source writes and the destination reads.
 *
 * Parsing is strict: no control characters, no empty parts, no whitespace or
 * unbracketed ':' in a host, no signs, spaces or leading zeros in a port.
 * Each failure logs one line that quotes the URI and says what is wrong.
 */
#ifndef FERRY_MIGRATE_URI_H
#define FERRY_MIGRATE_URI_H

#include <stdbool.h>
#include <stdint.h>

/* Longest URI accepted, and longest HOST (a DNS name is at most 253). */
#define MIG_URI_MAX 4096
#define MIG_URI_HOST_MAX 255
/* sizeof(((struct sockaddr_un *)0)->sun_path) on Linux, NUL included. */
#define MIG_URI_UNIX_PATH_MAX 108

enum mig_uri_kind {
	MIG_URI_TCP,
	MIG_URI_UNIX,
	MIG_URI_FILE,
};

struct mig_uri {
	enum mig_uri_kind kind;
	char host[MIG_URI_HOST_MAX + 1]; /* tcp: without brackets */
	uint16_t port;                   /* tcp */
	char path[MIG_URI_MAX];          /* unix, file */
};

/* Parses @s into @out. @for_listen allows tcp port 0. Returns 0, or -EINVAL
 * with one log line. */
int mig_uri_parse(const char *s, bool for_listen, struct mig_uri *out);

/* "tcp", "unix" or "file". */
const char *mig_uri_kind_str(enum mig_uri_kind kind);

#endif
