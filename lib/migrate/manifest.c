/* The stream manifest: checking, JSON encoding and strict JSON decoding. */
#include "migrate/manifest.h"
#include "util/checked.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>
#include <ferry/vfio_compat.h>

#define KNOWN_MIG_FLAGS \
	(VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY)
/* Nesting the schema needs (object > array > object) plus slack. */
#define JSON_MAX_DEPTH 4

static int fail(int err, char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(int err, char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why && whylen) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return err;
}

const char *mig_compression_str(enum mig_compression c)
{
	switch (c) {
	case MIG_COMPRESS_NONE:
		return "none";
	case MIG_COMPRESS_ZSTD:
		return "zstd";
	}
	return "?";
}

static bool is_kind_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.';
}

/* NUL-terminated within @cap, and every byte allowed. */
static int check_text(const char *s, size_t cap, bool may_be_empty, bool is_kind,
		      const char *what, char *why, size_t whylen)
{
	size_t n = strnlen(s, cap);

	if (n == cap)
		return fail(-EBADMSG, why, whylen, "%s: longer than %zu bytes", what, cap - 1);
	if (n == 0 && !may_be_empty)
		return fail(-EBADMSG, why, whylen, "%s: empty", what);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		bool ok = is_kind ? is_kind_char((char)c) : (c > 0x20 && c != 0x7f);
		if (!ok)
			return fail(-EBADMSG, why, whylen, "%s: byte 0x%02x at %zu not allowed", what,
				    c, i);
	}
	return 0;
}

int mig_manifest_check(const struct mig_manifest *m, uint64_t max_mem_size, char *why,
		       size_t whylen)
{
	char what[64];
	int rc;

	rc = check_text(m->source_host, sizeof(m->source_host), false, false, "source_host", why,
			whylen);
	if (rc < 0)
		return rc;
	if (!is_pow2(m->page_size) || m->page_size < MIG_PAGE_SIZE_MIN ||
	    m->page_size > MIG_PAGE_SIZE_MAX)
		return fail(-EBADMSG, why, whylen,
			    "memory.page_size %u: not a power of two in %u..%u", m->page_size,
			    MIG_PAGE_SIZE_MIN, MIG_PAGE_SIZE_MAX);
	if (m->mem_size == 0 || m->mem_size % m->page_size)
		return fail(-EBADMSG, why, whylen,
			    "memory.size %llu: not a non-zero multiple of the page size %u",
			    (unsigned long long)m->mem_size, m->page_size);
	if (m->mem_size > max_mem_size)
		return fail(-EFBIG, why, whylen, "memory.size %llu: above this host's limit %llu",
			    (unsigned long long)m->mem_size, (unsigned long long)max_mem_size);
	if (m->compression != MIG_COMPRESS_NONE && m->compression != MIG_COMPRESS_ZSTD)
		return fail(-EBADMSG, why, whylen, "options.compression %d: unknown",
			    (int)m->compression);
	if (m->ndevices > MIG_MAX_DEVICES)
		return fail(-EBADMSG, why, whylen, "devices: %u of them, more than %u", m->ndevices,
			    MIG_MAX_DEVICES);
	for (uint32_t i = 0; i < m->ndevices; i++) {
		const struct mig_manifest_device *d = &m->devices[i];

		snprintf(what, sizeof(what), "devices[%u].kind", i);
		rc = check_text(d->kind, sizeof(d->kind), false, true, what, why, whylen);
		if (rc < 0)
			return rc;
		snprintf(what, sizeof(what), "devices[%u].socket", i);
		rc = check_text(d->socket, sizeof(d->socket), true, false, what, why, whylen);
		if (rc < 0)
			return rc;
		if (d->migration_flags & ~(uint32_t)KNOWN_MIG_FLAGS)
			return fail(-EBADMSG, why, whylen,
				    "devices[%u].migration_flags 0x%x: unknown bits 0x%x", i,
				    d->migration_flags, d->migration_flags & ~(uint32_t)KNOWN_MIG_FLAGS);
		if (!(d->migration_flags & VFIO_MIGRATION_STOP_COPY))
			return fail(-EBADMSG, why, whylen,
				    "devices[%u].migration_flags 0x%x: STOP_COPY (0x%x) missing", i,
				    d->migration_flags, (unsigned)VFIO_MIGRATION_STOP_COPY);
	}
	return 0;
}

/* ---- encoding ---- */

static int add(struct json_object *obj, const char *key, struct json_object *val)
{
	if (!val)
		return -ENOMEM;
	if (json_object_object_add(obj, key, val) < 0) {
		json_object_put(val);
		return -ENOMEM;
	}
	return 0;
}

static int encode_device(const struct mig_manifest_device *d, uint32_t index,
			 struct json_object *arr)
{
	struct json_object *o = json_object_new_object();
	int rc;

	if (!o)
		return -ENOMEM;
	rc = add(o, "index", json_object_new_int64(index));
	rc = rc ?: add(o, "kind", json_object_new_string(d->kind));
	rc = rc ?: add(o, "socket", json_object_new_string(d->socket));
	rc = rc ?: add(o, "migration_flags", json_object_new_int64(d->migration_flags));
	if (rc == 0 && json_object_array_add(arr, o) < 0)
		rc = -ENOMEM;
	if (rc < 0)
		json_object_put(o);
	return rc;
}

/* Fills @root; sub-objects are attached first, so @root owns everything
 * whatever fails. */
static int build(const struct mig_manifest *m, struct json_object *root)
{
	struct json_object *mem, *opts, *devs;
	int rc;

	rc = add(root, "source_host", json_object_new_string(m->source_host));
	rc = rc ?: add(root, "memory", json_object_new_object());
	rc = rc ?: add(root, "options", json_object_new_object());
	rc = rc ?: add(root, "devices", json_object_new_array());
	if (rc < 0)
		return rc;
	mem = json_object_object_get(root, "memory");
	opts = json_object_object_get(root, "options");
	devs = json_object_object_get(root, "devices");
	rc = add(mem, "size", json_object_new_uint64(m->mem_size));
	rc = rc ?: add(mem, "page_size", json_object_new_int64(m->page_size));
	rc = rc ?: add(opts, "compression",
		       json_object_new_string(mig_compression_str(m->compression)));
	for (uint32_t i = 0; rc == 0 && i < m->ndevices; i++)
		rc = encode_device(&m->devices[i], i, devs);
	return rc;
}

int mig_manifest_encode(const struct mig_manifest *m, char **json, size_t *len, char *why,
			size_t whylen)
{
	struct json_object *root;
	const char *s;
	size_t n;
	int rc;

	rc = mig_manifest_check(m, UINT64_MAX, why, whylen);
	if (rc < 0)
		return rc;
	root = json_object_new_object();
	if (!root)
		return fail(-ENOMEM, why, whylen, "out of memory");
	rc = build(m, root);
	if (rc < 0) {
		json_object_put(root);
		return fail(rc, why, whylen, "out of memory");
	}
	s = json_object_to_json_string_length(
		root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
	if (!s || n > MIG_MANIFEST_MAX_LEN) {
		json_object_put(root);
		return fail(s ? -EMSGSIZE : -ENOMEM, why, whylen, "manifest JSON is %zu bytes", n);
	}
	*json = malloc(n);
	if (!*json) {
		json_object_put(root);
		return fail(-ENOMEM, why, whylen, "out of memory");
	}
	memcpy(*json, s, n);
	*len = n;
	json_object_put(root);
	return 0;
}

/* ---- decoding ---- */

/* @obj is an object holding exactly @keys. */
static int want_keys(struct json_object *obj, const char *where, const char *const *keys,
		     size_t n, char *why, size_t whylen)
{
	if (!json_object_is_type(obj, json_type_object))
		return fail(-EBADMSG, why, whylen, "%s: not a JSON object", where);
	json_object_object_foreach(obj, key, val) {
		size_t i;
		(void)val;
		for (i = 0; i < n && strcmp(key, keys[i]) != 0; i++)
			;
		if (i == n)
			return fail(-EBADMSG, why, whylen, "%s: unknown key \"%.64s\"", where, key);
	}
	for (size_t i = 0; i < n; i++)
		if (!json_object_object_get_ex(obj, keys[i], NULL))
			return fail(-EBADMSG, why, whylen, "%s: key \"%s\" missing", where, keys[i]);
	return 0;
}

static int get_uint(struct json_object *obj, const char *key, const char *where, uint64_t max,
		    uint64_t *out, char *why, size_t whylen)
{
	struct json_object *v = json_object_object_get(obj, key);

	if (!json_object_is_type(v, json_type_int))
		return fail(-EBADMSG, why, whylen, "%s.%s: not an integer", where, key);
	if (json_object_get_int64(v) < 0)
		return fail(-EBADMSG, why, whylen, "%s.%s: negative", where, key);
	*out = json_object_get_uint64(v);
	if (*out > max)
		return fail(-EBADMSG, why, whylen, "%s.%s %llu: above %llu", where, key,
			    (unsigned long long)*out, (unsigned long long)max);
	return 0;
}

/* Copies a JSON string into @dst (@cap bytes with the NUL); the content is
 * judged later by mig_manifest_check. */
static int get_str(struct json_object *obj, const char *key, const char *where, char *dst,
		   size_t cap, char *why, size_t whylen)
{
	struct json_object *v = json_object_object_get(obj, key);
	const char *s;
	size_t n;

	if (!json_object_is_type(v, json_type_string))
		return fail(-EBADMSG, why, whylen, "%s.%s: not a string", where, key);
	s = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	if (n >= cap)
		return fail(-EBADMSG, why, whylen, "%s.%s: %zu bytes, longer than %zu", where, key,
			    n, cap - 1);
	if (strlen(s) != n)
		return fail(-EBADMSG, why, whylen, "%s.%s: contains a NUL", where, key);
	memcpy(dst, s, n + 1);
	return 0;
}

static int decode_device(struct json_object *o, uint32_t i, struct mig_manifest_device *d,
			 char *why, size_t whylen)
{
	static const char *const keys[] = {"index", "kind", "socket", "migration_flags"};
	char where[32];
	uint64_t v;
	int rc;

	snprintf(where, sizeof(where), "devices[%u]", i);
	rc = want_keys(o, where, keys, ARRAY_SIZE(keys), why, whylen);
	rc = rc ?: get_uint(o, "index", where, UINT32_MAX, &v, why, whylen);
	if (rc < 0)
		return rc;
	if (v != i)
		return fail(-EBADMSG, why, whylen, "%s.index %llu: must equal its position %u", where,
			    (unsigned long long)v, i);
	rc = get_str(o, "kind", where, d->kind, sizeof(d->kind), why, whylen);
	rc = rc ?: get_str(o, "socket", where, d->socket, sizeof(d->socket), why, whylen);
	rc = rc ?: get_uint(o, "migration_flags", where, UINT32_MAX, &v, why, whylen);
	if (rc < 0)
		return rc;
	d->migration_flags = (uint32_t)v;
	return 0;
}

static int decode_root(struct json_object *root, struct mig_manifest *m, char *why,
		       size_t whylen)
{
	static const char *const root_keys[] = {"source_host", "memory", "options", "devices"};
	static const char *const mem_keys[] = {"size", "page_size"};
	static const char *const opt_keys[] = {"compression"};
	struct json_object *mem, *opts, *devs, *comp;
	uint64_t v;
	int rc;

	rc = want_keys(root, "manifest", root_keys, ARRAY_SIZE(root_keys), why, whylen);
	if (rc < 0)
		return rc;
	rc = get_str(root, "source_host", "manifest", m->source_host, sizeof(m->source_host), why,
		     whylen);
	if (rc < 0)
		return rc;

	mem = json_object_object_get(root, "memory");
	rc = want_keys(mem, "memory", mem_keys, ARRAY_SIZE(mem_keys), why, whylen);
	rc = rc ?: get_uint(mem, "size", "memory", UINT64_MAX, &m->mem_size, why, whylen);
	rc = rc ?: get_uint(mem, "page_size", "memory", UINT32_MAX, &v, why, whylen);
	if (rc < 0)
		return rc;
	m->page_size = (uint32_t)v;

	opts = json_object_object_get(root, "options");
	rc = want_keys(opts, "options", opt_keys, ARRAY_SIZE(opt_keys), why, whylen);
	if (rc < 0)
		return rc;
	comp = json_object_object_get(opts, "compression");
	if (!json_object_is_type(comp, json_type_string))
		return fail(-EBADMSG, why, whylen, "options.compression: not a string");
	if (strcmp(json_object_get_string(comp), "none") == 0)
		m->compression = MIG_COMPRESS_NONE;
	else if (strcmp(json_object_get_string(comp), "zstd") == 0)
		m->compression = MIG_COMPRESS_ZSTD;
	else
		return fail(-EBADMSG, why, whylen,
			    "options.compression \"%.32s\": expected \"none\" or \"zstd\"",
			    json_object_get_string(comp));

	devs = json_object_object_get(root, "devices");
	if (!json_object_is_type(devs, json_type_array))
		return fail(-EBADMSG, why, whylen, "devices: not an array");
	size_t n = json_object_array_length(devs);
	if (n > MIG_MAX_DEVICES)
		return fail(-EBADMSG, why, whylen, "devices: %zu of them, more than %u", n,
			    MIG_MAX_DEVICES);
	m->ndevices = (uint32_t)n;
	for (uint32_t i = 0; i < m->ndevices; i++) {
		rc = decode_device(json_object_array_get_idx(devs, i), i, &m->devices[i], why,
				   whylen);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int mig_manifest_decode(const uint8_t *buf, size_t len, uint64_t max_mem_size,
			struct mig_manifest *out, char *why, size_t whylen)
{
	struct json_tokener *tok;
	struct json_object *root;
	int rc;

	memset(out, 0, sizeof(*out));
	if (len == 0 || len > MIG_MANIFEST_MAX_LEN)
		return fail(-EBADMSG, why, whylen, "manifest is %zu bytes, expected 1..%u", len,
			    MIG_MANIFEST_MAX_LEN);
	if (memchr(buf, '\0', len))
		return fail(-EBADMSG, why, whylen, "manifest contains a NUL byte");
	tok = json_tokener_new_ex(JSON_MAX_DEPTH);
	if (!tok)
		return fail(-ENOMEM, why, whylen, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	root = json_tokener_parse_ex(tok, (const char *)buf, (int)len);
	if (!root) {
		enum json_tokener_error e = json_tokener_get_error(tok);
		rc = fail(-EBADMSG, why, whylen, "manifest is not valid JSON: %s at byte %zu",
			  e == json_tokener_continue ? "unexpected end"
						     : json_tokener_error_desc(e),
			  json_tokener_get_parse_end(tok));
		json_tokener_free(tok);
		return rc;
	}
	if (json_tokener_get_parse_end(tok) != len) {
		rc = fail(-EBADMSG, why, whylen, "manifest: %zu bytes after the JSON object",
			  len - json_tokener_get_parse_end(tok));
		goto out;
	}
	rc = decode_root(root, out, why, whylen);
	rc = rc ?: mig_manifest_check(out, max_mem_size, why, whylen);
out:
	json_object_put(root);
	json_tokener_free(tok);
	return rc;
}
