/*
 * The broken device's model: 256 KiB of device memory behind BAR0 and its
 * migration (see broken_model.h for the bugs).
 *
 * Stream: a sequence of records, each a 16-byte head {magic, type, offset,
 * length} and, for DATA, `length` bytes of memory at `offset`; one END
 * record closes it. Pre-copy sends the first half of the memory (the
 * "initial" data), then chunks written since they were sent; stop-copy
 * sends every chunk not sent yet or written since, then END. Restoring
 * clears the memory on entry to RESUMING and applies the records;
 * RESUMING -> STOP checks that the stream ended with END on a record
 * boundary.
 */
#include "broken_model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <ferry/device_migration.h>
#include <ferry/log.h>

#define BM_CHUNK 4096u
#define BM_NCHUNKS 64u
#define BM_INITIAL (BM_NCHUNKS / 2) /* chunks sent as pre-copy initial data */
#define BM_SIZE (BM_CHUNK * BM_NCHUNKS)
#define BM_MAGIC 0x444b5242u        /* "BRKD" */

enum { REC_DATA = 1, REC_END = 2 };

struct rec_head {
	uint32_t magic, type, offset, len;
};
#define BM_REC (sizeof(struct rec_head) + BM_CHUNK)

struct broken_model {
	struct ferry_device *dev;
	enum broken_bug bug;
	bool error_on_bad_stream;
	uint8_t mem[BM_SIZE];

	/* the saving session */
	bool is_saving, is_stop_phase, had_precopy, end_sent;
	bool sent[BM_NCHUNKS];  /* sent once in this session */
	bool dirty[BM_NCHUNKS]; /* written since it was sent */
	uint8_t stage[BM_REC];  /* the record being read out */
	size_t stage_len, stage_off;
	bool stage_initial;     /* ... is a first send of initial data */

	/* the restoring session */
	struct rec_head lh;
	size_t lh_got, ld_got;
	bool got_end;
};

static const struct {
	enum broken_bug bug;
	const char *name;
	bool in_proxy;
} bugs[] = {
	{BUG_NONE, "none", false},
	{BUG_NO_VALIDATE, "no-validate", false},
	{BUG_WRONG_ARC, "wrong-arc", true},
	{BUG_RESET_KEEPS_STATE, "reset-keeps-state", true},
	{BUG_SHORT_STREAM, "short-stream", false},
};

int broken_bug_parse(const char *name, enum broken_bug *out)
{
	for (size_t i = 0; i < sizeof(bugs) / sizeof(bugs[0]); i++)
		if (!strcmp(name, bugs[i].name)) {
			*out = bugs[i].bug;
			return 0;
		}
	return -EINVAL;
}

const char *broken_bug_name(enum broken_bug bug)
{
	return (size_t)bug < sizeof(bugs) / sizeof(bugs[0]) ? bugs[bug].name : "?";
}

bool broken_bug_in_proxy(enum broken_bug bug)
{
	return (size_t)bug < sizeof(bugs) / sizeof(bugs[0]) && bugs[bug].in_proxy;
}

/* ---- saving ---- */

static void session_start(struct broken_model *m, bool with_precopy)
{
	m->is_saving = true;
	m->is_stop_phase = !with_precopy;
	m->had_precopy = with_precopy;
	m->end_sent = false;
	memset(m->sent, 0, sizeof(m->sent));
	memset(m->dirty, 0, sizeof(m->dirty));
	m->stage_len = m->stage_off = 0;
}

static void session_end(struct broken_model *m)
{
	m->is_saving = false;
	m->stage_len = m->stage_off = 0;
}

static void stage_record(struct broken_model *m, uint32_t type, unsigned chunk, bool initial)
{
	struct rec_head h = {.magic = BM_MAGIC, .type = type};
	if (type == REC_DATA) {
		h.offset = chunk * BM_CHUNK;
		h.len = BM_CHUNK;
		memcpy(m->stage + sizeof(h), m->mem + h.offset, BM_CHUNK);
		m->sent[chunk] = true;
		m->dirty[chunk] = false;
	}
	memcpy(m->stage, &h, sizeof(h));
	m->stage_len = sizeof(h) + h.len;
	m->stage_off = 0;
	m->stage_initial = initial;
}

/* Stages the next record; false when there is nothing (more) to send. */
static bool next_record(struct broken_model *m)
{
	if (!m->is_stop_phase) {
		for (unsigned i = 0; i < BM_INITIAL; i++)
			if (!m->sent[i]) {
				stage_record(m, REC_DATA, i, true);
				return true;
			}
		for (unsigned i = 0; i < BM_NCHUNKS; i++)
			if (m->dirty[i]) {
				stage_record(m, REC_DATA, i, false);
				return true;
			}
		return false;
	}
	for (unsigned i = 0; i < BM_NCHUNKS; i++) {
		/* The bug: after pre-copy, the last chunk is taken as sent. */
		if (m->bug == BUG_SHORT_STREAM && m->had_precopy && i == BM_NCHUNKS - 1)
			continue;
		if (!m->sent[i] || m->dirty[i]) {
			stage_record(m, REC_DATA, i, false);
			return true;
		}
	}
	if (m->end_sent)
		return false;
	stage_record(m, REC_END, 0, false);
	m->end_sent = true;
	return true;
}

static ssize_t bm_save(void *opaque, void *buf, size_t len)
{
	struct broken_model *m = opaque;
	size_t n = 0;
	if (!m->is_saving)
		return -EINVAL;
	while (n < len) {
		if (m->stage_off == m->stage_len && !next_record(m))
			break;
		size_t k = m->stage_len - m->stage_off;
		k = k < len - n ? k : len - n;
		memcpy((uint8_t *)buf + n, m->stage + m->stage_off, k);
		m->stage_off += k;
		n += k;
	}
	return (ssize_t)n;
}

static int bm_precopy_info(void *opaque, uint64_t *initial_bytes, uint64_t *dirty_bytes)
{
	struct broken_model *m = opaque;
	uint64_t init = 0, dirty = 0, staged = m->stage_len - m->stage_off;
	for (unsigned i = 0; i < BM_NCHUNKS; i++) {
		init += i < BM_INITIAL && !m->sent[i] ? BM_REC : 0;
		dirty += m->dirty[i] ? BM_REC : 0;
	}
	*initial_bytes = init + (m->stage_initial ? staged : 0);
	*dirty_bytes = dirty + (m->stage_initial ? 0 : staged);
	return 0;
}

static int bm_stop_copy_size(void *opaque, uint64_t *bytes)
{
	struct broken_model *m = opaque;
	uint64_t n = 0;
	if (!m->is_saving) {
		*bytes = BM_NCHUNKS * BM_REC + sizeof(struct rec_head);
		return 0;
	}
	for (unsigned i = 0; i < BM_NCHUNKS; i++)
		n += !m->sent[i] || m->dirty[i] ? BM_REC : 0;
	*bytes = n + (m->end_sent ? 0 : sizeof(struct rec_head)) + (m->stage_len - m->stage_off);
	return 0;
}

/* ---- restoring ---- */

static void load_start(struct broken_model *m)
{
	memset(m->mem, 0, sizeof(m->mem));
	m->lh_got = m->ld_got = 0;
	m->got_end = false;
}

static int check_head(struct broken_model *m, const struct rec_head *h)
{
	if (h->magic != BM_MAGIC)
		return -EINVAL;
	if (h->type == REC_END)
		return h->len == 0 ? 0 : -EINVAL;
	if (h->type != REC_DATA || h->len == 0 || h->len > BM_CHUNK || h->offset > BM_SIZE ||
	    h->len > BM_SIZE - h->offset)
		return -EINVAL;
	(void)m;
	return 0;
}

static int bm_load(void *opaque, const void *buf, size_t len)
{
	struct broken_model *m = opaque;
	const uint8_t *p = buf;
	while (len) {
		if (m->got_end) {
			ferry_log(FERRY_LOG_ERR, "broken: data after the END record");
			return -EINVAL;
		}
		if (m->lh_got < sizeof(m->lh)) {
			size_t k = sizeof(m->lh) - m->lh_got;
			k = k < len ? k : len;
			memcpy((uint8_t *)&m->lh + m->lh_got, p, k);
			m->lh_got += k;
			p += k;
			len -= k;
			if (m->lh_got < sizeof(m->lh))
				break;
			if (check_head(m, &m->lh) < 0) {
				ferry_log(FERRY_LOG_ERR, "broken: bad record head");
				return -EINVAL;
			}
			if (m->lh.type == REC_END) {
				m->got_end = true;
				m->lh_got = 0;
			}
			continue;
		}
		size_t k = m->lh.len - m->ld_got;
		k = k < len ? k : len;
		memcpy(m->mem + m->lh.offset + m->ld_got, p, k);
		m->ld_got += k;
		p += k;
		len -= k;
		if (m->ld_got == m->lh.len)
			m->lh_got = m->ld_got = 0;
	}
	return 0;
}

static bool load_complete(const struct broken_model *m)
{
	return m->got_end && m->lh_got == 0;
}

/* ---- arcs, reset, registers ---- */

static int bm_transition(void *opaque, enum ferry_mig_state from, enum ferry_mig_state to,
			 bool *restored)
{
	struct broken_model *m = opaque;
	*restored = true;
	if (from == FERRY_MIG_RESUMING && !load_complete(m) && m->bug != BUG_NO_VALIDATE) {
		*restored = !m->error_on_bad_stream;
		ferry_log(FERRY_LOG_ERR, "broken: RESUMING -> %s: the stream is incomplete",
			  ferry_mig_state_name(to));
		return -EINVAL;
	}
	if (to == FERRY_MIG_RESUMING)
		load_start(m);
	if (ferry_mig_state_is_saving(to) && !ferry_mig_state_is_saving(from))
		session_start(m, to != FERRY_MIG_STOP_COPY);
	if (to == FERRY_MIG_STOP_COPY)
		m->is_stop_phase = true;
	if (!ferry_mig_state_is_saving(to) && ferry_mig_state_is_saving(from))
		session_end(m);
	return 0;
}

/* Reset ends any session; the device memory stays (it is memory). */
static int bm_reset(void *opaque)
{
	struct broken_model *m = opaque;
	session_end(m);
	m->lh_got = m->ld_got = 0;
	m->got_end = false;
	return 0;
}

static int bm_region_access(void *opaque, unsigned region, uint64_t offset, void *buf,
			    uint32_t count, bool is_write)
{
	struct broken_model *m = opaque;
	if (region != FERRY_PCI_BAR0 || offset > BM_SIZE || count > BM_SIZE - offset)
		return -EINVAL;
	if (!is_write) {
		memcpy(buf, m->mem + offset, count);
		return 0;
	}
	memcpy(m->mem + offset, buf, count);
	for (uint64_t c = offset / BM_CHUNK; count && c <= (offset + count - 1) / BM_CHUNK; c++)
		if (m->is_saving && m->sent[c])
			m->dirty[c] = true;
	return 0;
}

static const struct ferry_device_ops bm_ops = {
	.size = sizeof(struct ferry_device_ops),
	.region_access = bm_region_access,
	.reset = bm_reset,
};

int broken_model_create(enum broken_bug bug, uint64_t mig_flags, uint32_t seed,
			bool error_on_bad_stream, struct broken_model **out)
{
	char name[64];
	int r;

	struct broken_model *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->bug = bug;
	m->error_on_bad_stream = error_on_bad_stream;
	for (size_t i = 0; i < BM_SIZE; i++)
		m->mem[i] = (uint8_t)(seed * 131u + i * 7u + (i >> 12));

	snprintf(name, sizeof(name), "broken-%s", broken_bug_name(bug));
	struct ferry_device_info info = {
		.name = name,
		.id = {.vendor_id = 0x1de5, .device_id = 0xb0b0, .class_code = 0xff0000},
		.regions[FERRY_PCI_BAR0] = {.size = BM_SIZE,
					    .flags = FERRY_REGION_READ | FERRY_REGION_WRITE,
					    .mmap_fd = -1},
		.ops = &bm_ops,
		.opaque = m,
	};
	for (unsigned i = 0; i < FERRY_PCI_NUM_REGIONS; i++)
		if (i != FERRY_PCI_BAR0)
			info.regions[i].mmap_fd = -1;
	struct ferry_migration_ops mig = {
		.size = sizeof(mig),
		.flags = mig_flags,
		.transition = bm_transition,
		.save = bm_save,
		.load = bm_load,
		.stop_copy_size = bm_stop_copy_size,
		.precopy_info = bm_precopy_info,
	};
	if ((r = ferry_device_create(&info, &m->dev)) < 0 ||
	    (r = ferry_device_set_migration(m->dev, &mig)) < 0) {
		broken_model_destroy(m);
		return r;
	}
	*out = m;
	return 0;
}

struct ferry_device *broken_model_device(struct broken_model *m)
{
	return m->dev;
}

void broken_model_destroy(struct broken_model *m)
{
	if (!m)
		return;
	ferry_device_destroy(m->dev);
	free(m);
}
