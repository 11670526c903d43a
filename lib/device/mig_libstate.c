/*
 * The library's own device state in the migration stream: the prefix in
 * front of the model's bytes and the trailer behind them (mig.h says why
 * both; docs/device-stream.md is the format).
 *
 * The state block is what the library emulates for the model and what a
 * restored device must show its guest: the PCI config space image
 * (pci_config_save/load: the load is strict, so a device of another kind or
 * layout is refused, naming the offset), the MSI-X table and PBA, and the
 * interrupts recorded as pending (raised while masked or while stopped).
 * Not in it, because they are the client's and a new client sets them up:
 * interrupt eventfds, SET_IRQS masks, DMA mappings, DMA logging.
 *
 * Every length is computed from this device's own description, never taken
 * from the stream: a peer's fields are compared against them, so nothing is
 * allocated or indexed by a peer's number.
 */
#include "device/mig.h"
#include "util/log.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <zlib.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the stream is little-endian");

struct state_hdr {
	uint32_t cfg_len;
	uint32_t irq_count[FERRY_IRQ_NUM];
	uint32_t flags;
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct state_hdr) == MIG_STATE_HDR_LEN, "state header");

/* Prefix header and trailer footer share one layout. */
struct mig_mark {
	char magic[8];
	uint32_t version;
	uint32_t mark_len; /* MIG_HDR_LEN / MIG_FOOTER_LEN */
	uint64_t length;   /* the whole prefix / trailer */
	uint32_t flags;
	uint32_t crc;
} __attribute__((packed));
_Static_assert(sizeof(struct mig_mark) == MIG_HDR_LEN && MIG_HDR_LEN == MIG_FOOTER_LEN, "mark");

static size_t words_of(unsigned n)
{
	return (n + 63u) / 64u;
}

static size_t pending_len(const struct ferry_device *dev)
{
	size_t len = 0;

	for (unsigned i = 0; i < FERRY_IRQ_NUM; i++)
		len += words_of(dev->irq[i].count) * sizeof(uint64_t);
	return len;
}

size_t libstate_len(const struct ferry_device *dev)
{
	return MIG_STATE_HDR_LEN + pci_config_size(dev->cfg) + msix_table_size(dev->msix) +
	       msix_pba_size(dev->msix) + pending_len(dev);
}

static void local_hdr(const struct ferry_device *dev, struct state_hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->cfg_len = (uint32_t)pci_config_size(dev->cfg);
	for (unsigned i = 0; i < FERRY_IRQ_NUM; i++)
		h->irq_count[i] = dev->irq[i].count;
}

/* The state block as it is now. */
static void capture(struct ferry_device *dev, uint8_t *out)
{
	struct state_hdr h;
	size_t cfg_len = pci_config_size(dev->cfg);
	uint64_t tlen = msix_table_size(dev->msix), plen = msix_pba_size(dev->msix);
	uint8_t *p = out + sizeof(h);

	local_hdr(dev, &h);
	memcpy(out, &h, sizeof(h));
	pthread_mutex_lock(&dev->irq_lock);
	pci_config_save(dev->cfg, p, cfg_len);
	p += cfg_len;
	msix_table_read(dev->msix, 0, p, (uint32_t)tlen);
	p += tlen;
	msix_pba_read(dev->msix, 0, p, (uint32_t)plen);
	p += plen;
	for (unsigned i = 0; i < FERRY_IRQ_NUM; i++) {
		size_t n = words_of(dev->irq[i].count) * sizeof(uint64_t);
		memcpy(p, dev->irq[i].pending, n);
		p += n;
	}
	pthread_mutex_unlock(&dev->irq_lock);
}

/* Checks a state block from the stream against this device and, if
 * @apply, makes it the device's state. Nothing changes on failure. */
static int state_load(struct ferry_device *dev, const uint8_t *in, bool apply, const char *where)
{
	struct state_hdr h, mine;
	size_t cfg_len = pci_config_size(dev->cfg);
	uint64_t tlen = msix_table_size(dev->msix), plen = msix_pba_size(dev->msix);
	const uint8_t *cfg = in + sizeof(h), *table = cfg + cfg_len, *pba = table + tlen;
	const uint8_t *pend = pba + plen;
	int r = 0;

	memcpy(&h, in, sizeof(h));
	local_hdr(dev, &mine);
	if (h.cfg_len != mine.cfg_len || memcmp(h.irq_count, mine.irq_count, sizeof(h.irq_count))) {
		log_err("%s: migration stream %s: source has %u bytes of config space and "
			"interrupts INTx %u MSI %u MSI-X %u ERR %u REQ %u; this device %u and "
			"%u %u %u %u %u", dev->name, where, h.cfg_len, h.irq_count[0], h.irq_count[1],
			h.irq_count[2], h.irq_count[3], h.irq_count[4], mine.cfg_len,
			mine.irq_count[0], mine.irq_count[1], mine.irq_count[2], mine.irq_count[3],
			mine.irq_count[4]);
		return -EINVAL;
	}
	if (h.flags || h.reserved) {
		log_err("%s: migration stream %s: state flags 0x%x, reserved 0x%x (must be 0)",
			dev->name, where, h.flags, h.reserved);
		return -EINVAL;
	}
	/* Pending bits past each index's vectors would be delivered nowhere. */
	const uint8_t *q = pend;
	for (unsigned i = 0; i < FERRY_IRQ_NUM; i++) {
		unsigned n = dev->irq[i].count;
		size_t words = words_of(n);
		if (n % 64) {
			uint64_t last;
			memcpy(&last, q + (words - 1) * sizeof(uint64_t), sizeof(last));
			if (last >> (n % 64)) {
				log_err("%s: migration stream %s: pending bits beyond the %u vectors "
					"of interrupt index %u", dev->name, where, n, i);
				return -EINVAL;
			}
		}
		q += words * sizeof(uint64_t);
	}
	if (!apply) /* the config space check needs a load: done when applying */
		return 0;

	pthread_mutex_lock(&dev->irq_lock);
	r = pci_config_load(dev->cfg, cfg, cfg_len); /* strict; unchanged on error */
	if (r == 0) {
		msix_table_write(dev->msix, 0, table, (uint32_t)tlen);
		for (unsigned v = 0; v < dev->irq[FERRY_IRQ_MSIX].count; v++)
			msix_set_pending(dev->msix, v, pba[v / 8] >> (v % 8) & 1);
		q = pend;
		for (unsigned i = 0; i < FERRY_IRQ_NUM; i++) {
			size_t n = words_of(dev->irq[i].count) * sizeof(uint64_t);
			memcpy(dev->irq[i].pending, q, n);
			q += n;
		}
		atomic_store_explicit(&dev->bus_master, pci_config_bus_master(dev->cfg),
				      memory_order_release);
	}
	pthread_mutex_unlock(&dev->irq_lock);
	if (r < 0) {
		log_err("%s: migration stream %s: config space refused (another kind of device?)",
			dev->name, where);
		return -EINVAL;
	}
	/* The guest's MSI / MSI-X setup may have changed under the model. */
	irq_notify(dev, FERRY_IRQ_MSI, 0, dev->irq[FERRY_IRQ_MSI].count);
	irq_notify(dev, FERRY_IRQ_MSIX, 0, dev->irq[FERRY_IRQ_MSIX].count);
	log_debug("%s: migration: library state applied from the %s", dev->name, where);
	return 0;
}

static uint32_t crc_of(uint32_t crc, const void *p, size_t len)
{
	return (uint32_t)crc32(crc, p, (uInt)len); /* len <= libstate_len: fits */
}

static void mark_fill(struct mig_mark *k, const char *magic, uint64_t length)
{
	memset(k, 0, sizeof(*k));
	memcpy(k->magic, magic, sizeof(k->magic));
	k->version = MIG_STREAM_VERSION;
	k->mark_len = sizeof(*k);
	k->length = length;
}

void prefix_build(struct ferry_device *dev, uint8_t *out)
{
	const struct mig *g = dev->mig;
	struct mig_mark k;

	capture(dev, out + MIG_HDR_LEN);
	mark_fill(&k, MIG_PREFIX_MAGIC, g->prefix_len);
	k.crc = crc_of(crc_of(0, &k, offsetof(struct mig_mark, crc)), out + MIG_HDR_LEN,
		       g->state_len);
	memcpy(out, &k, sizeof(k));
}

void trailer_build(struct ferry_device *dev, uint8_t *out)
{
	const struct mig *g = dev->mig;
	struct mig_mark k;

	capture(dev, out);
	mark_fill(&k, MIG_TRAILER_MAGIC, g->trailer_len);
	k.crc = crc_of(crc_of(0, out, g->state_len), &k, offsetof(struct mig_mark, crc));
	memcpy(out + g->state_len, &k, sizeof(k));
}

int prefix_check_header(struct ferry_device *dev, const uint8_t *hdr)
{
	const struct mig *g = dev->mig;
	struct mig_mark k;

	memcpy(&k, hdr, sizeof(k));
	if (memcmp(k.magic, MIG_PREFIX_MAGIC, sizeof(k.magic))) {
		log_err("%s: migration stream does not start with ferry's prefix (magic %.8s "
			"expected): not a ferry device's stream", dev->name, MIG_PREFIX_MAGIC);
		return -EINVAL;
	}
	if (k.version != MIG_STREAM_VERSION || k.mark_len != MIG_HDR_LEN || k.flags) {
		log_err("%s: migration stream prefix version %u, header length %u, flags 0x%x: "
			"this library reads version %u, %u, 0", dev->name, k.version, k.mark_len,
			k.flags, MIG_STREAM_VERSION, MIG_HDR_LEN);
		return -EINVAL;
	}
	if (k.length != g->prefix_len) {
		log_err("%s: migration stream prefix of %" PRIu64 " bytes; this device's is %zu "
			"(another kind of device)", dev->name, k.length, g->prefix_len);
		return -EINVAL;
	}
	return 0;
}

int prefix_load(struct ferry_device *dev, const uint8_t *p, bool apply)
{
	const struct mig *g = dev->mig;
	struct mig_mark k;
	int r;

	if ((r = prefix_check_header(dev, p)) < 0)
		return r;
	memcpy(&k, p, sizeof(k));
	uint32_t crc = crc_of(crc_of(0, &k, offsetof(struct mig_mark, crc)), p + MIG_HDR_LEN,
			      g->state_len);
	if (crc != k.crc) {
		log_err("%s: migration stream prefix crc 0x%08x, computed 0x%08x: corrupted",
			dev->name, k.crc, crc);
		return -EINVAL;
	}
	return state_load(dev, p + MIG_HDR_LEN, apply, "prefix");
}

bool trailer_is_valid(const struct ferry_device *dev, const uint8_t *t)
{
	const struct mig *g = dev->mig;
	struct mig_mark k;

	memcpy(&k, t + g->state_len, sizeof(k));
	if (memcmp(k.magic, MIG_TRAILER_MAGIC, sizeof(k.magic)) || k.version != MIG_STREAM_VERSION ||
	    k.mark_len != MIG_FOOTER_LEN || k.length != g->trailer_len || k.flags)
		return false;
	return crc_of(crc_of(0, t, g->state_len), &k, offsetof(struct mig_mark, crc)) == k.crc;
}

int trailer_apply(struct ferry_device *dev, const uint8_t *t)
{
	return state_load(dev, t, true, "trailer");
}
