/*
 * ferry check: driving one device under test — connecting, the state
 * helpers every section uses, recovery to RUNNING, and stream transfers.
 */
#include "check_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Bytes asked for per MIG_DATA_READ call (the library splits further). */
#define CHK_READ_CHUNK (1024u * 1024u)

int chk_dev_open(struct chk_ctx *x, struct chk_dev *d, char *why, size_t len)
{
	struct ferry_client_options o = {.name = d->path, .timeout_ms = x->timeout_ms};
	int r = ferry_client_connect(d->path, &o, &d->c);
	if (r < 0) {
		snprintf(why, len, "cannot connect to %s: %s", d->path, strerror(-r));
		return r;
	}
	r = ferry_client_device_info(d->c, &d->desc);
	if (r < 0) {
		snprintf(why, len, "DEVICE_GET_INFO failed: %s", strerror(-r));
		return r;
	}
	d->can_reset = d->desc.flags & VFIO_DEVICE_FLAGS_RESET;
	return 0;
}

void chk_dev_close(struct chk_dev *d)
{
	ferry_client_close(d->c);
	d->c = NULL;
}

const char *chk_state_str(uint32_t s, char *buf, size_t len)
{
	if (s < FERRY_MIG_NUM_STATES)
		return ferry_mig_state_name(s);
	if (s > 0xffff)
		snprintf(buf, len, "0x%x", s);
	else
		snprintf(buf, len, "%u", s);
	return buf;
}

const char *chk_path_str(uint64_t flags, uint32_t from, uint32_t to, char *buf, size_t len)
{
	uint32_t path[FERRY_MIG_NUM_STATES];
	int n = ferry_mig_path(flags, from, to, path);
	if (n < 0) {
		snprintf(buf, len, "no path");
		return buf;
	}
	size_t off = (size_t)snprintf(buf, len, "%s", ferry_mig_state_name(from));
	for (int i = 0; i < n && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, " -> %s", ferry_mig_state_name(path[i]));
	return buf;
}

int chk_get(struct chk_dev *d, enum ferry_mig_state *s)
{
	return ferry_client_mig_get_state(d->c, s);
}

int chk_set(struct chk_dev *d, uint32_t state)
{
	/* The library sends the value unchanged, even one that is no state:
	 * refusing it is the server's job, and what we check. */
	return ferry_client_mig_set_state(d->c, (enum ferry_mig_state)state);
}

int chk_recover(struct chk_ctx *x, struct chk_dev *d, char *why, size_t len)
{
	enum ferry_mig_state s = FERRY_MIG_ERROR;
	if (d->lost) {
		snprintf(why, len, "the %s could not be brought back to RUNNING earlier", d->role);
		return -EIO;
	}
	int r = chk_get(d, &s);
	if (r == 0 && s == FERRY_MIG_ERROR)
		chk_observe_error(x, d);
	if (d->can_reset)
		ferry_client_reset(d->c); /* judged by the state it leaves */
	r = chk_get(d, &s);
	if (r == 0 && s == FERRY_MIG_RUNNING)
		return 0;
	if (r == 0 && s != FERRY_MIG_ERROR) {
		/* e.g. a device whose reset keeps the migration state. Leaving
		 * RESUMING validates what was loaded: if the device refuses,
		 * give it the saved stream and try once more. */
		r = chk_set(d, FERRY_MIG_RUNNING);
		if (r < 0 && s == FERRY_MIG_RESUMING && x->have_saved &&
		    chk_write(d, x->saved.buf, x->saved.len) == 0)
			r = chk_set(d, FERRY_MIG_RUNNING);
		if (r == 0)
			r = chk_get(d, &s);
		if (r == 0 && s == FERRY_MIG_RUNNING)
			return 0;
	}
	d->lost = true;
	if (r < 0)
		snprintf(why, len, "cannot bring the %s back to RUNNING: %s", d->role, strerror(-r));
	else
		snprintf(why, len, "cannot bring the %s back to RUNNING: it stays in %s", d->role,
			 ferry_mig_state_name(s));
	return -EIO;
}

int chk_drive(struct chk_ctx *x, struct chk_dev *d, uint32_t state,
	      const struct chk_stream *load, char *why, size_t len)
{
	enum ferry_mig_state s;
	int r = chk_recover(x, d, why, len);
	if (r < 0 || state == FERRY_MIG_RUNNING)
		return r;
	r = chk_set(d, state);
	if (r < 0) {
		snprintf(why, len, "SET %s from RUNNING failed: %s", ferry_mig_state_name(state),
			 strerror(-r));
		return r;
	}
	r = chk_get(d, &s);
	if (r < 0) {
		snprintf(why, len, "GET after SET %s failed: %s", ferry_mig_state_name(state),
			 strerror(-r));
		return r;
	}
	if (s != state) {
		snprintf(why, len, "SET %s from RUNNING succeeded but the device reports %s",
			 ferry_mig_state_name(state), ferry_mig_state_name(s));
		return -EPROTO;
	}
	if (state == FERRY_MIG_RESUMING && load) {
		r = chk_write(d, load->buf, load->len);
		if (r < 0) {
			snprintf(why, len, "loading the saved stream (%zu bytes) failed: %s",
				 load->len, strerror(-r));
			return r;
		}
	}
	return 0;
}

static int stream_reserve(struct chk_stream *s, size_t more)
{
	if (more > CHK_STREAM_MAX - s->len)
		return -EFBIG;
	if (s->len + more <= s->cap)
		return 0;
	size_t cap = s->cap ? s->cap : 64 * 1024;
	while (cap < s->len + more)
		cap *= 2;
	uint8_t *b = realloc(s->buf, cap);
	if (!b)
		return -ENOMEM;
	s->buf = b;
	s->cap = cap;
	return 0;
}

int chk_stream_append(struct chk_stream *s, const void *buf, size_t len)
{
	int r = stream_reserve(s, len);
	if (r < 0)
		return r;
	if (len)
		memcpy(s->buf + s->len, buf, len);
	s->len += len;
	return 0;
}

void chk_stream_free(struct chk_stream *s)
{
	free(s->buf);
	*s = (struct chk_stream){0};
}

int chk_read_to_end(struct chk_dev *d, struct chk_stream *s, size_t limit, unsigned *reads)
{
	for (;;) {
		if (s->len >= limit)
			return -EFBIG;
		size_t want = limit - s->len < CHK_READ_CHUNK ? limit - s->len : CHK_READ_CHUNK;
		int r = stream_reserve(s, want);
		if (r < 0)
			return r;
		size_t got = 0;
		r = ferry_client_mig_read(d->c, s->buf + s->len, want, &got);
		if (r < 0)
			return r;
		if (!got)
			return 0;
		s->len += got;
		if (reads)
			(*reads)++;
	}
}

int chk_write(struct chk_dev *d, const void *buf, size_t len)
{
	return ferry_client_mig_write(d->c, buf, len);
}

int chk_save_stopped(struct chk_dev *d, struct chk_stream *s, char *why, size_t len)
{
	int r = chk_set(d, FERRY_MIG_STOP_COPY);
	if (r < 0) {
		snprintf(why, len, "STOP -> STOP_COPY failed: %s", strerror(-r));
		return r;
	}
	r = chk_read_to_end(d, s, CHK_STREAM_MAX, NULL);
	if (r < 0) {
		snprintf(why, len, "reading the stop-copy stream failed after %zu bytes: %s",
			 s->len, strerror(-r));
		return r;
	}
	r = chk_set(d, FERRY_MIG_STOP);
	if (r < 0) {
		snprintf(why, len, "STOP_COPY -> STOP failed: %s", strerror(-r));
		return r;
	}
	return 0;
}
