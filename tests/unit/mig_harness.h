/*
 * Test harness for the device side's migration: a tiny migratable model
 * served on a library thread over a socketpair, driven with libferry's
 * client (and raw requests through its call layer where a test needs to
 * send something the client API would not).
 *
 * The model:
 *   - its state is data[data_len], a pattern of its seed; its stream is
 *     exactly those bytes: in PRE_COPY the first initial_len of them, then
 *     "nothing now"; in STOP_COPY the rest, then the end. save() returns at
 *     most short_max bytes per call when set (round boundaries).
 *   - load() appends to got[]; RESUMING -> STOP checks got[] is the pattern
 *     of expect_seed, expect_len bytes long (validate), and fails restored.
 *   - every arc is logged; an arc from a state the model is not in counts
 *     in bad_arcs; fail_from/fail_to inject a failing arc (restored or not).
 *   - reset() ends its sessions and returns it to RUNNING.
 * The device: BAR0 16 KiB trapped (regs[]), MSI-X 4 vectors with the table
 * at 0x2000 and PBA at 0x3000 of BAR0, PCI Express (4 KiB config space).
 * Header-only on purpose: one test program includes it.
 */
#ifndef FERRY_TEST_MIG_HARNESS_H
#define FERRY_TEST_MIG_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ferry/client.h>
#include <ferry/client_migration.h>
#include <ferry/device.h>
#include <ferry/device_migration.h>

#define T_BAR0_SIZE 0x4000u
#define T_MSIX_VECTORS 4u
#define T_MSIX_TABLE 0x2000u
#define T_MSIX_PBA 0x3000u
#define T_MAX_ARCS 512

#define F_SC VFIO_MIGRATION_STOP_COPY
#define F_P2P VFIO_MIGRATION_P2P
#define F_PRE VFIO_MIGRATION_PRE_COPY

struct tarc {
	uint8_t from, to;
};

struct tmodel {
	pthread_mutex_t lock;
	enum ferry_mig_state state;
	struct tarc arcs[T_MAX_ARCS];
	unsigned narcs;
	int bad_arcs;
	int resets;
	/* failure injection: the arc fail_from -> fail_to fails (-1: none) */
	int fail_from, fail_to;
	bool fail_restored;
	int arc_delay_us;
	bool reset_in_arc; /* the next arc asks for ferry_device_reset (deferred) */
	struct ferry_device *dev;
	/* the state and its stream */
	uint8_t seed;
	uint8_t *data;
	size_t data_len, initial_len, short_max;
	bool is_saving;
	size_t save_off;
	/* restore */
	bool is_loading, validate;
	uint8_t expect_seed;
	size_t expect_len;
	uint8_t *got;
	size_t got_len, got_cap;
	uint8_t regs[T_BAR0_SIZE];
};

static inline uint8_t t_pattern(uint8_t seed, size_t i)
{
	return (uint8_t)(i * 131u + seed * 7u + (i >> 8));
}

static inline void t_fill(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = t_pattern(seed, i);
}

static inline int t_transition(void *opaque, enum ferry_mig_state from, enum ferry_mig_state to,
			       bool *restored)
{
	struct tmodel *m = opaque;
	int rc = 0;
	bool ask_reset;

	if (m->arc_delay_us)
		usleep((useconds_t)(rand() % m->arc_delay_us));
	pthread_mutex_lock(&m->lock);
	if (from != m->state)
		m->bad_arcs++;
	if (m->narcs < T_MAX_ARCS)
		m->arcs[m->narcs++] = (struct tarc){(uint8_t)from, (uint8_t)to};
	if ((int)from == m->fail_from && (int)to == m->fail_to) {
		*restored = m->fail_restored;
		pthread_mutex_unlock(&m->lock);
		return -EIO;
	}
	if (from == FERRY_MIG_RESUMING && to == FERRY_MIG_STOP && m->validate) {
		bool ok = m->got_len == m->expect_len;
		for (size_t i = 0; ok && i < m->got_len; i++)
			ok = m->got[i] == t_pattern(m->expect_seed, i);
		if (!ok) {
			*restored = true;
			pthread_mutex_unlock(&m->lock);
			return -EINVAL;
		}
		memcpy(m->data, m->got, m->got_len < m->data_len ? m->got_len : m->data_len);
		m->seed = m->expect_seed;
	}
	if (ferry_mig_state_is_saving(to) && !ferry_mig_state_is_saving(from)) {
		m->is_saving = true;
		m->save_off = 0;
	}
	if (!ferry_mig_state_is_saving(to))
		m->is_saving = false;
	if (to == FERRY_MIG_RESUMING) {
		m->is_loading = true;
		m->got_len = 0;
	}
	if (from == FERRY_MIG_RESUMING)
		m->is_loading = false;
	m->state = to;
	ask_reset = m->reset_in_arc;
	m->reset_in_arc = false;
	pthread_mutex_unlock(&m->lock);
	if (ask_reset)
		rc = ferry_device_reset(m->dev); /* deferred: we are inside a command */
	return rc;
}

static inline ssize_t t_save(void *opaque, void *buf, size_t len)
{
	struct tmodel *m = opaque;
	size_t end, n;

	pthread_mutex_lock(&m->lock);
	if (!m->is_saving) {
		pthread_mutex_unlock(&m->lock);
		return -EINVAL;
	}
	end = m->state == FERRY_MIG_STOP_COPY ? m->data_len : m->initial_len;
	n = m->save_off < end ? end - m->save_off : 0;
	if (n > len)
		n = len;
	if (m->short_max && n > m->short_max)
		n = m->short_max;
	memcpy(buf, m->data + m->save_off, n);
	m->save_off += n;
	pthread_mutex_unlock(&m->lock);
	return (ssize_t)n;
}

static inline int t_load(void *opaque, const void *buf, size_t len)
{
	struct tmodel *m = opaque;

	pthread_mutex_lock(&m->lock);
	if (!m->is_loading) {
		pthread_mutex_unlock(&m->lock);
		return -EINVAL;
	}
	if (m->got_len + len > m->got_cap) {
		size_t cap = (m->got_len + len) * 2;
		uint8_t *p = realloc(m->got, cap);
		if (!p) {
			pthread_mutex_unlock(&m->lock);
			return -ENOMEM;
		}
		m->got = p;
		m->got_cap = cap;
	}
	memcpy(m->got + m->got_len, buf, len);
	m->got_len += len;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static inline int t_stop_copy_size(void *opaque, uint64_t *bytes)
{
	struct tmodel *m = opaque;

	pthread_mutex_lock(&m->lock);
	*bytes = m->data_len - (m->is_saving ? m->save_off : 0);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static inline int t_precopy_info(void *opaque, uint64_t *initial, uint64_t *dirty)
{
	struct tmodel *m = opaque;

	pthread_mutex_lock(&m->lock);
	*initial = m->save_off < m->initial_len ? m->initial_len - m->save_off : 0;
	*dirty = 0;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static inline int t_region_access(void *opaque, unsigned region, uint64_t off, void *buf,
				  uint32_t count, bool is_write)
{
	struct tmodel *m = opaque;

	if (region != 0 || off + count > sizeof(m->regs))
		return -EINVAL;
	if (is_write)
		memcpy(m->regs + off, buf, count);
	else
		memcpy(buf, m->regs + off, count);
	return 0;
}

static inline int t_reset(void *opaque)
{
	struct tmodel *m = opaque;

	pthread_mutex_lock(&m->lock);
	m->resets++;
	m->state = FERRY_MIG_RUNNING;
	m->is_saving = m->is_loading = false;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static const struct ferry_device_ops t_dev_ops = {
	.size = sizeof(struct ferry_device_ops),
	.region_access = t_region_access,
	.reset = t_reset,
};

struct th {
	struct tmodel m;
	struct ferry_device *dev;
	struct ferry_client *c;
	uint64_t flags;
};

static inline void t_info(struct th *t, struct ferry_device_info *info, uint16_t device_id,
			  unsigned msix)
{
	memset(info, 0, sizeof(*info));
	info->name = "mig-test";
	info->id = (struct ferry_pci_id){.vendor_id = 0x1af4, .device_id = device_id,
					 .class_code = 0xff0000};
	for (unsigned i = 0; i < FERRY_PCI_NUM_REGIONS; i++)
		info->regions[i].mmap_fd = -1;
	info->regions[0] = (struct ferry_region){.size = T_BAR0_SIZE, .mmap_fd = -1,
		.flags = FERRY_REGION_READ | FERRY_REGION_WRITE};
	info->irq_count[FERRY_IRQ_MSIX] = msix;
	info->msix_bar = 0;
	info->msix_table_offset = T_MSIX_TABLE;
	info->msix_pba_offset = T_MSIX_PBA;
	info->pcie = true;
	info->ops = &t_dev_ops;
	info->opaque = &t->m;
}

static inline struct ferry_migration_ops t_mig_ops(uint64_t flags)
{
	return (struct ferry_migration_ops){
		.size = sizeof(struct ferry_migration_ops),
		.flags = flags,
		.transition = t_transition,
		.save = t_save,
		.load = t_load,
		.stop_copy_size = t_stop_copy_size,
		.precopy_info = t_precopy_info,
	};
}

/* Creates the device (not serving yet). */
static inline struct th *th_new(uint64_t flags, uint8_t seed, size_t data_len,
				uint16_t device_id, unsigned msix)
{
	struct th *t = calloc(1, sizeof(*t));
	struct ferry_device_info info;
	struct ferry_migration_ops ops = t_mig_ops(flags);

	assert_non_null(t);
	pthread_mutex_init(&t->m.lock, NULL);
	t->flags = flags;
	t->m.state = FERRY_MIG_RUNNING;
	t->m.fail_from = t->m.fail_to = -1;
	t->m.seed = seed;
	t->m.data_len = data_len;
	t->m.initial_len = data_len / 2;
	t->m.data = malloc(data_len ? data_len : 1);
	assert_non_null(t->m.data);
	t_fill(t->m.data, data_len, seed);
	t_info(t, &info, device_id, msix);
	assert_int_equal(ferry_device_create(&info, &t->dev), 0);
	t->m.dev = t->dev;
	assert_int_equal(ferry_device_set_migration(t->dev, &ops), 0);
	return t;
}

/* Serves a fresh client over a socketpair on a library thread. */
static inline void th_connect(struct th *t, bool extensions)
{
	struct ferry_client_options o = {.name = "mig-test-client", .timeout_ms = 20000,
					 .no_extensions = !extensions};
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(ferry_device_attach_fd(t->dev, sv[0]), 0);
	assert_int_equal(ferry_device_start(t->dev), 0);
	assert_int_equal(ferry_client_connect_fd(sv[1], &o, &t->c), 0);
}

/* Serves clients on a listening socket at @path instead (several clients
 * one after the other); connect with th_connect_path. */
static inline void th_listen(struct th *t, const char *path)
{
	assert_int_equal(ferry_device_listen(t->dev, path), 0);
	assert_int_equal(ferry_device_start(t->dev), 0);
}

static inline void th_connect_path(struct th *t, const char *path)
{
	struct ferry_client_options o = {.name = "mig-test-client", .timeout_ms = 20000};

	assert_int_equal(ferry_client_connect(path, &o, &t->c), 0);
}

static inline struct th *th_start_ext(uint64_t flags, uint8_t seed, size_t data_len,
				      bool extensions)
{
	struct th *t = th_new(flags, seed, data_len, 0x10f0, T_MSIX_VECTORS);
	th_connect(t, extensions);
	return t;
}

static inline struct th *th_start(uint64_t flags, uint8_t seed, size_t data_len)
{
	return th_start_ext(flags, seed, data_len, true);
}

static inline void th_stop(struct th *t)
{
	if (!t)
		return;
	ferry_client_close(t->c);
	ferry_device_destroy(t->dev);
	free(t->m.data);
	free(t->m.got);
	pthread_mutex_destroy(&t->m.lock);
	free(t);
}

static inline unsigned th_arcs(struct th *t, struct tarc *out, unsigned max)
{
	pthread_mutex_lock(&t->m.lock);
	unsigned n = t->m.narcs < max ? t->m.narcs : max;
	memcpy(out, t->m.arcs, n * sizeof(*out));
	pthread_mutex_unlock(&t->m.lock);
	return n;
}

static inline void th_clear_arcs(struct th *t)
{
	pthread_mutex_lock(&t->m.lock);
	t->m.narcs = 0;
	pthread_mutex_unlock(&t->m.lock);
}

static inline enum ferry_mig_state th_get(struct th *t)
{
	enum ferry_mig_state s = FERRY_MIG_ERROR;
	assert_int_equal(ferry_client_mig_get_state(t->c, &s), 0);
	return s;
}

/* Reads the whole remaining stream (until a read of 0) into a malloc'd
 * buffer, @chunk bytes per request. */
static inline uint8_t *th_read_all(struct th *t, size_t chunk, size_t *len)
{
	size_t cap = 1 << 16, n = 0, got;
	uint8_t *buf = malloc(cap);

	assert_non_null(buf);
	for (;;) {
		if (n + chunk > cap) {
			cap = (n + chunk) * 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		assert_int_equal(ferry_client_mig_read(t->c, buf + n, chunk, &got), 0);
		if (!got)
			break;
		n += got;
	}
	*len = n;
	return buf;
}

/* A full stop-copy save of @t (RUNNING -> STOP_COPY, read, -> STOP). */
static inline uint8_t *th_save(struct th *t, size_t *len)
{
	assert_int_equal(ferry_client_mig_set_state(t->c, FERRY_MIG_STOP_COPY), 0);
	uint8_t *s = th_read_all(t, 1 << 20, len);
	assert_int_equal(ferry_client_mig_set_state(t->c, FERRY_MIG_STOP), 0);
	return s;
}

/* Writes @len bytes of @s in chunks of @chunk. */
static inline int th_write(struct th *t, const uint8_t *s, size_t len, size_t chunk)
{
	for (size_t off = 0; off < len; off += chunk) {
		size_t n = len - off < chunk ? len - off : chunk;
		int r = ferry_client_mig_write(t->c, s + off, n);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The destination expects the pattern of @seed, @len bytes. */
static inline void th_expect(struct th *t, uint8_t seed, size_t len)
{
	pthread_mutex_lock(&t->m.lock);
	t->m.validate = true;
	t->m.expect_seed = seed;
	t->m.expect_len = len;
	pthread_mutex_unlock(&t->m.lock);
}

#endif
