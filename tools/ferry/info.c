/*
 * ferry info SOCKET [--json] [--timeout-ms N]: attach a vfio-user device,
 * ask it everything it will tell without changing its state, print it.
 */
#include "info.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/client_migration.h>
#include <ferry/vfio_user.h>

#define INFO_DEFAULT_TIMEOUT_MS 5000

const char *info_region_name(unsigned index, char *buf, size_t len)
{
	static const char *const names[] = {
		[VFIO_PCI_BAR0_REGION_INDEX] = "BAR0", [VFIO_PCI_BAR1_REGION_INDEX] = "BAR1",
		[VFIO_PCI_BAR2_REGION_INDEX] = "BAR2", [VFIO_PCI_BAR3_REGION_INDEX] = "BAR3",
		[VFIO_PCI_BAR4_REGION_INDEX] = "BAR4", [VFIO_PCI_BAR5_REGION_INDEX] = "BAR5",
		[VFIO_PCI_ROM_REGION_INDEX] = "ROM", [VFIO_PCI_CONFIG_REGION_INDEX] = "CONFIG",
		[VFIO_PCI_VGA_REGION_INDEX] = "VGA",
	};
	if (index < sizeof(names) / sizeof(names[0]))
		return names[index];
	snprintf(buf, len, "%u", index);
	return buf;
}

const char *info_irq_name(unsigned index, char *buf, size_t len)
{
	static const char *const names[] = {
		[VFIO_PCI_INTX_IRQ_INDEX] = "INTx", [VFIO_PCI_MSI_IRQ_INDEX] = "MSI",
		[VFIO_PCI_MSIX_IRQ_INDEX] = "MSI-X", [VFIO_PCI_ERR_IRQ_INDEX] = "ERR",
		[VFIO_PCI_REQ_IRQ_INDEX] = "REQ",
	};
	if (index < sizeof(names) / sizeof(names[0]))
		return names[index];
	snprintf(buf, len, "%u", index);
	return buf;
}

const char *info_bar_kind(const struct info_report *r, unsigned index, char *buf, size_t len)
{
	if (!r->has_pci || index > VFIO_PCI_ROM_REGION_INDEX)
		return NULL;
	const struct pci_bar *b = &r->pci.bars[index];
	if (index == VFIO_PCI_ROM_REGION_INDEX)
		snprintf(buf, len, "expansion ROM, %s", b->rom_enabled ? "enabled" : "disabled");
	else if (b->is_upper)
		snprintf(buf, len, "upper half of 64-bit BAR%u", index - 1);
	else if (b->is_io)
		snprintf(buf, len, "I/O ports");
	else
		snprintf(buf, len, "%s memory, %sprefetchable", b->is_64 ? "64-bit" : "32-bit",
			 b->prefetch ? "" : "non-");
	return buf;
}

static void gather_config(struct ferry_client *c, struct info_report *r)
{
	const struct ferry_region_desc *d;

	r->cfg_err = -ENODEV;
	if (!(r->dev.flags & VFIO_DEVICE_FLAGS_PCI) ||
	    r->dev.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX)
		return;
	r->cfg_err = r->regions[VFIO_PCI_CONFIG_REGION_INDEX].err;
	if (r->cfg_err < 0)
		return;
	d = r->regions[VFIO_PCI_CONFIG_REGION_INDEX].d;
	size_t len = d->size < INFO_CONFIG_MAX ? (size_t)d->size : INFO_CONFIG_MAX;
	r->cfg_err = ferry_client_region_read(c, VFIO_PCI_CONFIG_REGION_INDEX, 0, r->cfg, len);
	if (r->cfg_err < 0) {
		r->failures++;
		return;
	}
	r->cfg_len = len;
	r->has_pci = pci_decode(r->cfg, len, &r->pci) == 0;
}

static void gather_features(struct ferry_client *c, struct info_report *r)
{
	struct info_features *f = &r->feat;
	enum ferry_mig_state st = FERRY_MIG_ERROR;
	const uint32_t set = VFIO_DEVICE_FEATURE_SET, get = VFIO_DEVICE_FEATURE_GET;

	f->mig_err = ferry_client_mig_flags(c, &f->mig_flags);
	f->state_err = ferry_client_mig_get_state(c, &st);
	f->state = (uint32_t)st;
	f->log_start_err = ferry_client_feature_probe(c, VFIO_DEVICE_FEATURE_DMA_LOGGING_START, set);
	f->log_stop_err = ferry_client_feature_probe(c, VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, set);
	f->log_report_err =
		ferry_client_feature_probe(c, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, get);
	f->lp_entry_err = ferry_client_feature_probe(c, VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, set);
	f->lp_wakeup_err = ferry_client_feature_probe(
		c, VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP, set);
	f->lp_exit_err = ferry_client_feature_probe(c, VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, set);
	f->data_size_err = ferry_client_mig_data_size(c, &f->data_size);
	f->precopy_info_negotiated = r->caps.extensions & FERRY_EXT_PRECOPY_INFO;
	f->precopy_info_err = f->precopy_info_negotiated
		? ferry_client_feature_probe(c, FERRY_FEATURE_PRECOPY_INFO, get) : -EOPNOTSUPP;
}

int info_gather(struct ferry_client *c, const char *socket, struct info_report *r)
{
	memset(r, 0, sizeof(*r));
	r->socket = socket;
	r->caps = *ferry_client_server_caps(c);
	int e = ferry_client_device_info(c, &r->dev);
	if (e < 0)
		return e;
	r->regions = calloc(r->dev.num_regions ? r->dev.num_regions : 1, sizeof(*r->regions));
	r->irqs = calloc(r->dev.num_irqs ? r->dev.num_irqs : 1, sizeof(*r->irqs));
	if (!r->regions || !r->irqs) {
		info_report_free(r);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < r->dev.num_regions; i++) {
		r->regions[i].err = ferry_client_region_info(c, i, &r->regions[i].d);
		r->failures += r->regions[i].err < 0;
	}
	for (unsigned i = 0; i < r->dev.num_irqs; i++) {
		r->irqs[i].err = ferry_client_irq_info(c, i, &r->irqs[i].d);
		r->failures += r->irqs[i].err < 0;
	}
	gather_config(c, r);
	gather_features(c, r);
	return 0;
}

void info_report_free(struct info_report *r)
{
	free(r->regions);
	free(r->irqs);
	r->regions = NULL;
	r->irqs = NULL;
}

/* Config space in the `lspci -xxxx` dump format, so that pciutils can decode
 * any vfio-user device: ferry info SOCK --hexdump > f; lspci -F f -vvv */
static int print_hexdump(const struct info_report *r, FILE *out)
{
	if (r->cfg_err < 0 || !r->cfg_len)
		return r->cfg_err < 0 ? r->cfg_err : -ENODATA;
	fprintf(out, "00:00.0 vfio-user device at %s\n", r->socket);
	for (size_t off = 0; off < r->cfg_len; off += 16) {
		fprintf(out, "%02zx:", off);
		for (size_t i = off; i < off + 16 && i < r->cfg_len; i++)
			fprintf(out, " %02x", r->cfg[i]);
		fputc('\n', out);
	}
	fputc('\n', out);
	return 0;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: ferry info SOCKET [--json | --hexdump] [--timeout-ms N]\n"
		     "  Attach the vfio-user device at SOCKET and print what it offers:\n"
		     "  protocol capabilities, PCI identity and capabilities, regions,\n"
		     "  interrupts and device features. Changes nothing on the device.\n"
		     "  --hexdump prints config space as `lspci -xxxx` does, for `lspci -F`.\n");
}

int cmd_info(int argc, char **argv)
{
	const char *socket = NULL;
	bool json = false, hexdump = false;
	struct ferry_client_options opts = {.timeout_ms = INFO_DEFAULT_TIMEOUT_MS};

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--hexdump")) {
			hexdump = true;
		} else if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end || v <= 0 || v > 3600000) {
				fprintf(stderr, "ferry info: --timeout-ms wants 1..3600000, not %s\n",
					argv[i]);
				return 2;
			}
			opts.timeout_ms = (int)v;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] == '-' || socket) {
			fprintf(stderr, "ferry info: unexpected argument '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		} else {
			socket = argv[i];
		}
	}
	if (!socket) {
		usage(stderr);
		return 2;
	}

	struct ferry_client *c;
	int e = ferry_client_connect(socket, &opts, &c);
	if (e < 0) {
		fprintf(stderr, "ferry info: cannot attach the device at %s: %s\n", socket,
			strerror(-e));
		return 1;
	}
	struct info_report r;
	e = info_gather(c, socket, &r);
	if (e < 0) {
		fprintf(stderr, "ferry info: %s: cannot read the device description: %s\n", socket,
			strerror(-e));
		ferry_client_close(c);
		return 1;
	}
	if (hexdump)
		e = print_hexdump(&r, stdout);
	else if (json)
		e = info_print_json(&r, stdout);
	else
		info_print_text(&r, stdout);
	unsigned failures = r.failures;
	info_report_free(&r); /* region descriptions live in the client: free it last */
	ferry_client_close(c);
	if (e < 0) {
		fprintf(stderr, "ferry info: cannot format the report: %s\n", strerror(-e));
		return 1;
	}
	if (fflush(stdout) != 0) {
		fprintf(stderr, "ferry info: cannot write the report: %s\n", strerror(errno));
		return 1;
	}
	if (failures) {
		fprintf(stderr, "ferry info: %s: %u queries failed (shown in the report)\n", socket,
			failures);
		return 1;
	}
	return 0;
}
