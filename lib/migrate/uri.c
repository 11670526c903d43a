/* Strict parsing of migration URIs (see uri.h). */
#include "migrate/uri.h"
#include "util/log.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

const char *mig_uri_kind_str(enum mig_uri_kind kind)
{
	switch (kind) {
	case MIG_URI_TCP:
		return "tcp";
	case MIG_URI_UNIX:
		return "unix";
	case MIG_URI_FILE:
		return "file";
	}
	return "?";
}

static bool has_ctl(const char *s)
{
	for (; *s; s++)
		if (iscntrl((unsigned char)*s))
			return true;
	return false;
}

/* Decimal 0..65535, digits only, no leading zeros except "0" itself. */
static int parse_port(const char *uri, const char *p, bool for_listen, uint16_t *out)
{
	unsigned long v = 0;
	size_t n = strlen(p);

	if (n == 0 || n > 5 || strspn(p, "0123456789") != n || (n > 1 && p[0] == '0')) {
		log_err("migration URI '%s': port '%s' is not a decimal number 0..65535", uri, p);
		return -EINVAL;
	}
	for (; *p; p++)
		v = v * 10 + (unsigned long)(*p - '0');
	if (v > 65535) {
		log_err("migration URI '%s': port %lu is above 65535", uri, v);
		return -EINVAL;
	}
	if (v == 0 && !for_listen) {
		log_err("migration URI '%s': port 0 only makes sense when listening", uri);
		return -EINVAL;
	}
	*out = (uint16_t)v;
	return 0;
}

static int parse_tcp(const char *uri, const char *rest, bool for_listen, struct mig_uri *out)
{
	const char *host, *port;
	size_t hlen;

	if (rest[0] == '[') {
		const char *close = strchr(rest, ']');
		if (!close) {
			log_err("migration URI '%s': '[' without ']' around the IPv6 address", uri);
			return -EINVAL;
		}
		host = rest + 1;
		hlen = (size_t)(close - host);
		if (close[1] != ':') {
			log_err("migration URI '%s': expected ':PORT' after ']'", uri);
			return -EINVAL;
		}
		port = close + 2;
		if (memchr(host, '[', hlen)) {
			log_err("migration URI '%s': stray '[' in the host", uri);
			return -EINVAL;
		}
	} else {
		const char *colon = strrchr(rest, ':');
		if (!colon) {
			log_err("migration URI '%s': expected tcp:HOST:PORT", uri);
			return -EINVAL;
		}
		host = rest;
		hlen = (size_t)(colon - rest);
		port = colon + 1;
		if (memchr(host, ':', hlen)) {
			log_err("migration URI '%s': an IPv6 address must be bracketed, as in tcp:[::1]:4444",
				uri);
			return -EINVAL;
		}
		if (memchr(host, ']', hlen)) {
			log_err("migration URI '%s': stray ']' in the host", uri);
			return -EINVAL;
		}
	}
	if (hlen == 0) {
		log_err("migration URI '%s': empty host (use 0.0.0.0 or [::] to listen on every address)",
			uri);
		return -EINVAL;
	}
	for (size_t i = 0; i < hlen; i++) {
		if (isspace((unsigned char)host[i])) {
			log_err("migration URI '%s': whitespace in the host", uri);
			return -EINVAL;
		}
	}
	if (hlen > MIG_URI_HOST_MAX) {
		log_err("migration URI '%s': host is %zu bytes, longer than %d", uri, hlen,
			MIG_URI_HOST_MAX);
		return -EINVAL;
	}
	int rc = parse_port(uri, port, for_listen, &out->port);
	if (rc < 0)
		return rc;
	memcpy(out->host, host, hlen);
	out->host[hlen] = '\0';
	out->kind = MIG_URI_TCP;
	return 0;
}

static int parse_path(const char *uri, const char *rest, enum mig_uri_kind kind,
		      struct mig_uri *out)
{
	size_t n = strlen(rest);
	size_t max = kind == MIG_URI_UNIX ? MIG_URI_UNIX_PATH_MAX - 1 : MIG_URI_MAX - 1;

	if (n == 0) {
		log_err("migration URI '%s': empty path", uri);
		return -EINVAL;
	}
	if (n > max) {
		log_err("migration URI '%s': %s path is %zu bytes, longer than %zu", uri,
			mig_uri_kind_str(kind), n, max);
		return -EINVAL;
	}
	memcpy(out->path, rest, n + 1);
	out->kind = kind;
	return 0;
}

int mig_uri_parse(const char *s, bool for_listen, struct mig_uri *out)
{
	static const struct {
		const char *prefix;
		enum mig_uri_kind kind;
	} schemes[] = {
		{"tcp:", MIG_URI_TCP},
		{"unix:", MIG_URI_UNIX},
		{"file:", MIG_URI_FILE},
	};

	if (!s || !out) {
		log_err("migration URI: missing");
		return -EINVAL;
	}
	memset(out, 0, sizeof(*out));
	if (strnlen(s, MIG_URI_MAX) >= MIG_URI_MAX) {
		log_err("migration URI: longer than %d bytes", MIG_URI_MAX - 1);
		return -EINVAL;
	}
	if (has_ctl(s)) {
		log_err("migration URI: contains control characters");
		return -EINVAL;
	}
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		size_t plen = strlen(schemes[i].prefix);
		if (strncmp(s, schemes[i].prefix, plen) != 0)
			continue;
		if (schemes[i].kind == MIG_URI_TCP)
			return parse_tcp(s, s + plen, for_listen, out);
		return parse_path(s, s + plen, schemes[i].kind, out);
	}
	log_err("migration URI '%s': unknown scheme (expected tcp:HOST:PORT, unix:PATH or file:PATH)",
		s);
	return -EINVAL;
}
