/*
 * Interrupts (PROTOCOL.md §5): DEVICE_GET_IRQ_INFO, DEVICE_SET_IRQS and
 * ferry_irq_trigger.
 *
 * Concepts. The client hands over one eventfd per vector (SET_IRQS
 * DATA_EVENTFD|ACTION_TRIGGER); raising a vector is an 8-byte write to it.
 * Whether a vector may be raised follows the guest's view of the device:
 *   INTx   blocked by Command.INTx-Disable, and while MSI or MSI-X is on;
 *   MSI    needs MSI enabled and the vector allotted (Multiple Message
 *          Enable); masked by its per-vector mask bit;
 *   MSI-X  needs MSI-X enabled; masked by the function mask and by the
 *          vector's mask bit in the library's MSI-X table;
 *   ERR, REQ  never blocked.
 * On top of that the client may mask vectors with SET_IRQS ACTION_MASK
 * (INTx, MSI, MSI-X). A trigger on a masked vector is recorded as pending
 * (also in the MSI-X PBA or the MSI pending bits) and delivered when the
 * vector is unmasked; a trigger on a disabled vector is dropped, as real
 * hardware does not signal through a disabled mechanism. While the device
 * is stopped for migration (STOP, STOP_COPY, RESUMING, ERROR) every trigger
 * is held pending the same way and goes out when it runs again.
 *
 * Locking: irq_lock guards all of it (and config space, see config.c). It is
 * a plain mutex held for a few loads and one write(), so ferry_irq_trigger
 * is cheap from any thread. No callback runs under it.
 */
#include "device/device_priv.h"
#include "util/checked.h"
#include "util/log.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/pci_regs.h>

static const char *const irq_names[FERRY_IRQ_NUM] = {"INTx", "MSI", "MSI-X", "ERR", "REQ"};

#define SET_IRQS_DATA (VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD)
#define SET_IRQS_ACTION (VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | \
			 VFIO_IRQ_SET_ACTION_TRIGGER)

static bool bit_get(const uint64_t *b, unsigned i)
{
	return b[i / 64] >> (i % 64) & 1;
}

static void bit_set(uint64_t *b, unsigned i, bool v)
{
	if (v)
		b[i / 64] |= 1ull << (i % 64);
	else
		b[i / 64] &= ~(1ull << (i % 64));
}

static bool is_maskable(unsigned index)
{
	return index == FERRY_IRQ_INTX || index == FERRY_IRQ_MSI || index == FERRY_IRQ_MSIX;
}

int irq_init(struct ferry_device *dev)
{
	int r;

	if ((r = -pthread_mutex_init(&dev->irq_lock, NULL)) < 0)
		return r;
	dev->has_irq_lock = true;
	for (unsigned i = 0; i < FERRY_IRQ_NUM; i++) {
		struct irq_index *q = &dev->irq[i];
		unsigned n = dev->info.irq_count[i];
		size_t words = (n + 63) / 64 ? (n + 63) / 64 : 1;

		q->efd = malloc((n ? n : 1) * sizeof(int));
		q->lib_mask = calloc(words, sizeof(uint64_t));
		q->pending = calloc(words, sizeof(uint64_t));
		if (!q->efd || !q->lib_mask || !q->pending)
			return -ENOMEM; /* irq_fini frees what was allocated */
		for (unsigned v = 0; v < n; v++)
			q->efd[v] = -1;
		q->count = n;
	}
	return msix_create(dev->info.irq_count[FERRY_IRQ_MSIX], &dev->msix);
}

static void close_efd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

void irq_fini(struct ferry_device *dev)
{
	for (unsigned i = 0; i < FERRY_IRQ_NUM; i++) {
		struct irq_index *q = &dev->irq[i];
		for (unsigned v = 0; q->efd && v < q->count; v++)
			close_efd(&q->efd[v]);
		free(q->efd);
		free(q->lib_mask);
		free(q->pending);
		memset(q, 0, sizeof(*q));
	}
	msix_destroy(dev->msix);
	dev->msix = NULL;
	if (dev->has_irq_lock)
		pthread_mutex_destroy(&dev->irq_lock);
	dev->has_irq_lock = false;
}

/* ---- delivery (irq_lock held) ---- */

/* The mechanism is off: a trigger goes nowhere and is not remembered. */
static bool is_disabled_locked(const struct ferry_device *dev, unsigned index, unsigned v)
{
	switch (index) {
	case FERRY_IRQ_INTX:
		return pci_config_msi_enabled(dev->cfg) || pci_config_msix_enabled(dev->cfg);
	case FERRY_IRQ_MSI:
		return v >= pci_config_msi_vectors_enabled(dev->cfg);
	case FERRY_IRQ_MSIX:
		return !pci_config_msix_enabled(dev->cfg);
	default:
		return false;
	}
}

/* The vector is held back: a trigger becomes pending. */
static bool is_masked_locked(const struct ferry_device *dev, unsigned index, unsigned v)
{
	if (is_maskable(index) && bit_get(dev->irq[index].lib_mask, v))
		return true;
	switch (index) {
	case FERRY_IRQ_INTX:
		return pci_config_command(dev->cfg) & PCI_COMMAND_INTX_DISABLE;
	case FERRY_IRQ_MSI:
		return pci_config_msi_vector_masked(dev->cfg, v);
	case FERRY_IRQ_MSIX:
		return pci_config_msix_masked(dev->cfg) || msix_vector_masked(dev->msix, v);
	default:
		return false;
	}
}

static void set_pending_locked(struct ferry_device *dev, unsigned index, unsigned v, bool on)
{
	bit_set(dev->irq[index].pending, v, on);
	if (index == FERRY_IRQ_MSIX)
		msix_set_pending(dev->msix, v, on);
	else if (index == FERRY_IRQ_MSI)
		pci_config_msi_set_pending(dev->cfg, v, on);
}

static int signal_locked(struct ferry_device *dev, unsigned index, unsigned v)
{
	int fd = dev->irq[index].efd[v];
	uint64_t one = 1;

	if (fd < 0)
		return -ENOENT;
	/* The eventfd is the client's and may be in blocking mode: a counter it
	 * filled up would block write() with irq_lock held. Check first; a
	 * saturated counter already tells the client to look. */
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT))
		return 0;
	if (write(fd, &one, sizeof(one)) != sizeof(one)) {
		/* EAGAIN: the counter is saturated, the client has plenty to read */
		if (errno != EAGAIN)
			log_warn("%s: %s vector %u: eventfd write: %s", dev->name,
				 irq_names[index], v, strerror(errno));
	}
	return 0;
}

static int raise_locked(struct ferry_device *dev, unsigned index, unsigned v)
{
	if (dev->is_in_reset || is_disabled_locked(dev, index, v))
		return -EAGAIN;
	/* Masked, or the device is stopped for migration (migration.c): held
	 * as pending, delivered when unmasked and running. */
	if (is_masked_locked(dev, index, v) || dev_is_quiesced(dev)) {
		if (dev_is_quiesced(dev))
			mig_note_quiesced(dev, "an interrupt");
		set_pending_locked(dev, index, v, true);
		return -EAGAIN;
	}
	return signal_locked(dev, index, v);
}

void irq_deliver_pending_locked(struct ferry_device *dev, unsigned index)
{
	struct irq_index *q = &dev->irq[index];

	if (dev_is_quiesced(dev))
		return; /* migration.c delivers them when the device runs again */

	for (unsigned w = 0; w < (q->count + 63) / 64; w++) {
		uint64_t bits = q->pending[w];
		while (bits) {
			unsigned v = w * 64 + (unsigned)__builtin_ctzll(bits);
			bits &= bits - 1;
			if (dev->is_in_reset || is_disabled_locked(dev, index, v) ||
			    is_masked_locked(dev, index, v))
				continue;
			set_pending_locked(dev, index, v, false);
			signal_locked(dev, index, v);
		}
	}
}

int ferry_irq_trigger(struct ferry_device *dev, unsigned index, unsigned vector)
{
	int r;

	if (!dev || index >= FERRY_IRQ_NUM || vector >= dev->irq[index].count) {
		log_err("%s: trigger of %s vector %u: no such vector (%u)", ferry_device_name(dev),
			dev && index < FERRY_IRQ_NUM ? irq_names[index] : "?", vector,
			dev && index < FERRY_IRQ_NUM ? dev->irq[index].count : 0);
		return -EINVAL;
	}
	pthread_mutex_lock(&dev->irq_lock);
	r = raise_locked(dev, index, vector);
	pthread_mutex_unlock(&dev->irq_lock);
	return r;
}

void irq_notify(struct ferry_device *dev, unsigned index, unsigned start, unsigned count)
{
	if (dev->ops.irq_changed && dev->irq[index].count)
		dev->ops.irq_changed(dev->info.opaque, index, start, count);
}

/* ---- the MSI-X BAR ranges ---- */

int irq_msix_table_access(struct ferry_device *dev, uint64_t off, void *buf, uint32_t len,
			  bool is_write)
{
	pthread_mutex_lock(&dev->irq_lock);
	if (!is_write) {
		msix_table_read(dev->msix, off, buf, len);
	} else {
		msix_table_write(dev->msix, off, buf, len);
		irq_deliver_pending_locked(dev, FERRY_IRQ_MSIX); /* a vector may be unmasked */
	}
	pthread_mutex_unlock(&dev->irq_lock);
	return 0;
}

int irq_msix_pba_access(struct ferry_device *dev, uint64_t off, void *buf, uint32_t len,
			bool is_write)
{
	if (is_write) /* read-only; writes are ignored (PCI 3.0 §6.8.2.10) */
		return 0;
	pthread_mutex_lock(&dev->irq_lock);
	msix_pba_read(dev->msix, off, buf, len);
	pthread_mutex_unlock(&dev->irq_lock);
	return 0;
}

/* ---- client and reset life cycle ---- */

static void clear_index_locked(struct ferry_device *dev, unsigned index, bool close_fds)
{
	struct irq_index *q = &dev->irq[index];
	size_t words = (q->count + 63) / 64;

	for (unsigned v = 0; close_fds && v < q->count; v++)
		close_efd(&q->efd[v]);
	if (words)
		memset(q->lib_mask, 0, words * sizeof(uint64_t));
}

void irq_release_client(struct ferry_device *dev)
{
	pthread_mutex_lock(&dev->irq_lock);
	for (unsigned i = 0; i < FERRY_IRQ_NUM; i++)
		clear_index_locked(dev, i, true);
	pthread_mutex_unlock(&dev->irq_lock);
}

void irq_reset_begin(struct ferry_device *dev)
{
	pthread_mutex_lock(&dev->irq_lock);
	dev->is_in_reset = true;
	pthread_mutex_unlock(&dev->irq_lock);
}

void irq_reset_end(struct ferry_device *dev)
{
	pthread_mutex_lock(&dev->irq_lock);
	pci_config_reset(dev->cfg);
	msix_reset(dev->msix);
	for (unsigned i = 0; i < FERRY_IRQ_NUM; i++) {
		struct irq_index *q = &dev->irq[i];
		size_t words = (q->count + 63) / 64;
		clear_index_locked(dev, i, false); /* the eventfds stay the client's */
		if (words)
			memset(q->pending, 0, words * sizeof(uint64_t));
	}
	atomic_store_explicit(&dev->bus_master, false, memory_order_release);
	dev->is_in_reset = false;
	pthread_mutex_unlock(&dev->irq_lock);
}

/* ---- messages ---- */

int handle_get_irq_info(struct ferry_device *dev, struct conn *c, struct wire_msg *m)
{
	struct vfio_user_irq_info in, out;

	memcpy(&in, m->payload, sizeof(in));
	if (in.argsz < sizeof(out) || in.index >= FERRY_IRQ_NUM) {
		log_err("%s: DEVICE_GET_IRQ_INFO argsz %u (at least %zu), index %u (below %u)",
			dev->name, in.argsz, sizeof(out), in.index, FERRY_IRQ_NUM);
		return -EINVAL;
	}
	out = (struct vfio_user_irq_info){
		.argsz = sizeof(out),
		.flags = VFIO_IRQ_INFO_EVENTFD | (is_maskable(in.index) ? VFIO_IRQ_INFO_MASKABLE : 0),
		.index = in.index,
		.count = dev->irq[in.index].count,
	};
	conn_reply_buf(c, m, &out, sizeof(out));
	return 0;
}

/* Only eventfds go into the table: anything else would receive our writes. */
static bool is_eventfd(int fd)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return true; /* no /proc: cannot tell, trust the client */
	target[n] = '\0';
	return strcmp(target, "anon_inode:[eventfd]") == 0;
}

static int set_irqs_validate(struct ferry_device *dev, const struct vfio_user_irq_set *s,
			     const struct wire_msg *m)
{
	uint32_t data = s->flags & SET_IRQS_DATA, action = s->flags & SET_IRQS_ACTION;
	uint32_t data_len = data == VFIO_IRQ_SET_DATA_BOOL ? s->count : 0;
	unsigned n = s->index < FERRY_IRQ_NUM ? dev->irq[s->index].count : 0;
	const char *why = NULL;

	if (s->flags & ~(SET_IRQS_DATA | SET_IRQS_ACTION))
		why = "unknown flag bits";
	else if (!is_pow2(data) || !is_pow2(action))
		why = "not exactly one data type and one action";
	else if (s->index >= FERRY_IRQ_NUM)
		why = "no such index";
	else if (s->count == 0 && (s->start || data != VFIO_IRQ_SET_DATA_NONE ||
				   action != VFIO_IRQ_SET_ACTION_TRIGGER))
		why = "count 0 is only DATA_NONE|ACTION_TRIGGER at start 0 (disable)";
	else if (s->count && (s->start >= n || s->count > n - s->start))
		why = "vectors outside the index";
	else if (!is_maskable(s->index) && action != VFIO_IRQ_SET_ACTION_TRIGGER)
		why = "ERR and REQ only take ACTION_TRIGGER";
	else if (data == VFIO_IRQ_SET_DATA_EVENTFD && action != VFIO_IRQ_SET_ACTION_TRIGGER)
		why = "eventfds only with ACTION_TRIGGER";
	else if (m->len - sizeof(*s) != data_len)
		why = "payload length does not match the data type and count";
	else if (s->argsz < sizeof(*s) + (uint64_t)data_len)
		why = "argsz smaller than the request";
	else if (data == VFIO_IRQ_SET_DATA_EVENTFD ? m->nfds && m->nfds != s->count : m->nfds)
		why = "fd count is neither count nor 0 (eventfds), or fds without DATA_EVENTFD";
	if (!why) {
		for (unsigned i = 0; i < m->nfds; i++) {
			if (!is_eventfd(m->fds[i])) {
				why = "an fd is not an eventfd";
				break;
			}
		}
	}
	if (!why)
		return 0;
	log_err("%s: DEVICE_SET_IRQS argsz %u flags 0x%x index %u start %u count %u "
		"(%u vectors), %u fds, %u bytes: %s", dev->name, s->argsz, s->flags, s->index,
		s->start, s->count, n, m->nfds, m->len, why);
	return -EINVAL;
}

int handle_set_irqs(struct ferry_device *dev, struct conn *c, struct wire_msg *m)
{
	struct vfio_user_irq_set s;
	struct irq_index *q;
	uint32_t data, action;
	bool is_changed = false;
	int r;

	memcpy(&s, m->payload, sizeof(s));
	if ((r = set_irqs_validate(dev, &s, m)) < 0)
		return r;
	data = s.flags & SET_IRQS_DATA;
	action = s.flags & SET_IRQS_ACTION;
	q = &dev->irq[s.index];

	pthread_mutex_lock(&dev->irq_lock);
	if (s.count == 0) {
		/* DATA_NONE|TRIGGER, count 0: the whole index off */
		clear_index_locked(dev, s.index, true);
		is_changed = true;
		s.start = 0;
		s.count = q->count;
	} else if (data == VFIO_IRQ_SET_DATA_EVENTFD) {
		for (uint32_t i = 0; i < s.count; i++) {
			close_efd(&q->efd[s.start + i]);
			q->efd[s.start + i] = wire_msg_take_fd(m, i); /* -1 when none were sent */
		}
		is_changed = true;
	} else {
		const uint8_t *bools = m->payload + sizeof(s);
		for (uint32_t i = 0; i < s.count; i++) {
			unsigned v = s.start + i;
			if (data == VFIO_IRQ_SET_DATA_BOOL && !bools[i])
				continue;
			if (action == VFIO_IRQ_SET_ACTION_TRIGGER)
				raise_locked(dev, s.index, v); /* loopback test */
			else
				bit_set(q->lib_mask, v, action == VFIO_IRQ_SET_ACTION_MASK);
		}
		if (action == VFIO_IRQ_SET_ACTION_UNMASK)
			irq_deliver_pending_locked(dev, s.index);
	}
	pthread_mutex_unlock(&dev->irq_lock);

	if (is_changed)
		irq_notify(dev, s.index, s.start, s.count);
	conn_reply(c, m, NULL, 0, NULL, 0);
	return 0;
}
