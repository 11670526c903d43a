/*
 * ferry info, text output: sections like `lspci -vv`, flags as NAME+ /
 * NAME-, one thing per line.
 */
#include "info.h"

#include <errno.h>
#include <linux/pci_regs.h>
#include <string.h>

#include <ferry/migration.h>
#include <ferry/vfio_user.h>

static const char *human(uint64_t v, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	unsigned u = 0;
	while (u + 1 < sizeof(units) / sizeof(units[0]) && v >= 1024 && v % 1024 == 0) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%llu %s", (unsigned long long)v, units[u]);
	return buf;
}

static const char *pm(bool b)
{
	return b ? "+" : "-";
}

static void print_server(const struct info_report *r, FILE *out)
{
	const struct ferry_server_caps *s = &r->caps;
	char h[32];

	fprintf(out, "vfio-user device at %s\n", r->socket);
	fprintf(out, "Protocol: vfio-user %u.%u\n", s->major, s->minor);
	fprintf(out, "\tmax_msg_fds %u, max_data_xfer_size %u (%s), max_dma_maps %u, "
		     "pgsizes 0x%llx\n", s->max_msg_fds, s->max_data_xfer_size,
		human(s->max_data_xfer_size, h, sizeof(h)), s->max_dma_maps,
		(unsigned long long)s->pgsizes);
	fprintf(out, "\tTwinSocket%s WriteMultiple%s\n", pm(s->twin_socket), pm(s->write_multiple));
	fprintf(out, "\tferry extensions:%s%s%s%s%s\n",
		s->extensions & FERRY_EXT_PRECOPY_INFO ? " precopy_info" : "",
		s->extensions & FERRY_EXT_MIG_SHM ? " mig_shm" : "",
		s->extensions & FERRY_EXT_LOW_POWER ? " low_power" : "",
		s->extensions & FERRY_EXT_DIRTY_SHM ? " dirty_shm" : "",
		s->extensions ? "" : " none");
	fprintf(out, "Device: %s, Reset%s, %u regions, %u IRQ indexes\n",
		r->dev.flags & VFIO_DEVICE_FLAGS_PCI ? "PCI" : "not PCI",
		pm(r->dev.flags & VFIO_DEVICE_FLAGS_RESET), r->dev.num_regions, r->dev.num_irqs);
}

static void print_identity(const struct info_report *r, FILE *out)
{
	if (!r->has_pci) {
		if (r->cfg_err < 0 && r->cfg_err != -ENODEV)
			fprintf(out, "Config space: cannot read: %s\n", strerror(-r->cfg_err));
		return;
	}
	const struct pci_identity *id = &r->pci.id;
	fprintf(out, "Identity: vendor %04x device %04x, subsystem %04x:%04x, revision %02x\n",
		id->vendor, id->device, id->subsys_vendor, id->subsys, id->revision);
	fprintf(out, "\tClass %06x: %s, header type %02x\n", id->class_code,
		pci_class_name(id->class_code), id->header_type);
	fprintf(out, "\tCommand %04x: I/O%s Mem%s BusMaster%s INTxDisable%s; Status %04x: Cap%s\n",
		id->command, pm(id->command & PCI_COMMAND_IO), pm(id->command & PCI_COMMAND_MEMORY),
		pm(id->command & PCI_COMMAND_MASTER), pm(id->command & PCI_COMMAND_INTX_DISABLE),
		id->status, pm(id->status & PCI_STATUS_CAP_LIST));
}

static void print_regions(const struct info_report *r, FILE *out)
{
	char nb[16], kb[64], h[32];

	fprintf(out, "Regions:\n");
	for (unsigned i = 0; i < r->dev.num_regions; i++) {
		const char *name = info_region_name(i, nb, sizeof(nb));
		if (r->regions[i].err < 0) {
			fprintf(out, "\t%-7s query failed: %s\n", name, strerror(-r->regions[i].err));
			continue;
		}
		const struct ferry_region_desc *d = r->regions[i].d;
		if (!d->size) {
			fprintf(out, "\t%-7s not implemented\n", name);
			continue;
		}
		fprintf(out, "\t%-7s size 0x%llx (%s), %s%s%s", name, (unsigned long long)d->size,
			human(d->size, h, sizeof(h)),
			d->flags & VFIO_REGION_INFO_FLAG_READ ? "r" : "-",
			d->flags & VFIO_REGION_INFO_FLAG_WRITE ? "w" : "-",
			d->flags & VFIO_REGION_INFO_FLAG_MMAP ? " mmap" : "");
		if ((d->flags & VFIO_REGION_INFO_FLAG_MMAP) && !d->has_fd)
			fprintf(out, " (no fd sent)");
		const char *kind = info_bar_kind(r, i, kb, sizeof(kb));
		fprintf(out, "%s%s\n", kind ? ", " : "", kind ? kind : "");
		if (d->has_fd && d->offset)
			fprintf(out, "\t\tmmap offset 0x%llx in the region's fd\n",
				(unsigned long long)d->offset);
		if (d->has_sparse) {
			fprintf(out, "\t\tsparse mmap areas: %u%s\n", d->nr_areas,
				d->nr_areas ? "" : " (nothing mappable)");
			for (unsigned a = 0; a < d->nr_areas; a++)
				fprintf(out, "\t\t  [%u] offset 0x%llx size 0x%llx (%s)\n", a,
					(unsigned long long)d->areas[a].offset,
					(unsigned long long)d->areas[a].size,
					human(d->areas[a].size, h, sizeof(h)));
		} else if (d->has_fd) {
			fprintf(out, "\t\tmmap: whole region\n");
		}
		if (d->has_type)
			fprintf(out, "\t\ttype 0x%x subtype 0x%x\n", d->type, d->subtype);
	}
}

static void print_cap(const struct pci_cap *c, FILE *out)
{
	const char *name = pci_cap_name(c->id);
	fprintf(out, "\t[%02x] ", c->off);
	if (name)
		fprintf(out, "%s", name);
	else
		fprintf(out, "Capability id 0x%02x", c->id);
	if (c->truncated) {
		fprintf(out, ": (truncated by the end of config space)\n");
		return;
	}
	switch (c->id) {
	case PCI_CAP_ID_PM:
		fprintf(out, " v%u: state %s, D1%s D2%s, PME from 0x%02x\n", c->pm.version,
			pci_power_state_name(c->pm.power_state), pm(c->pm.d1), pm(c->pm.d2),
			c->pm.pme_support);
		return;
	case PCI_CAP_ID_MSI:
		fprintf(out, ": %u vector%s (%u enabled), Enable%s 64bit%s Maskable%s\n",
			c->msi.vectors, c->msi.vectors == 1 ? "" : "s", c->msi.enabled_vectors,
			pm(c->msi.enabled), pm(c->msi.is_64),
			pm(c->msi.maskable));
		return;
	case PCI_CAP_ID_MSIX:
		fprintf(out, ": table size %u, Enable%s Masked%s\n", c->msix.table_size,
			pm(c->msix.enabled), pm(c->msix.masked));
		fprintf(out, "\t\tVector table: BAR%u offset 0x%08x\n", c->msix.table_bir,
			c->msix.table_off);
		fprintf(out, "\t\tPBA: BAR%u offset 0x%08x\n", c->msix.pba_bir, c->msix.pba_off);
		return;
	case PCI_CAP_ID_EXP:
		fprintf(out, " v%u: %s, FLReset%s\n", c->exp.version, pcie_type_name(c->exp.type),
			pm(c->exp.flr));
		return;
	default:
		fprintf(out, "\n");
	}
}

static void print_caps(const struct info_report *r, FILE *out)
{
	if (!r->has_pci)
		return;
	const struct pci_decoded *p = &r->pci;
	fprintf(out, "Capabilities:%s\n", p->ncaps || p->cap_problem[0] ? "" : " none");
	for (unsigned i = 0; i < p->ncaps; i++)
		print_cap(&p->caps[i], out);
	if (p->cap_problem[0])
		fprintf(out, "\t(walk stopped: %s)\n", p->cap_problem);
	if (!p->has_ext_space) {
		fprintf(out, "Extended capabilities: none (%zu-byte config space)\n", r->cfg_len);
		return;
	}
	fprintf(out, "Extended capabilities:%s\n", p->next || p->ext_problem[0] ? "" : " none");
	for (unsigned i = 0; i < p->next; i++) {
		const char *name = pci_ext_cap_name(p->ext[i].id);
		fprintf(out, "\t[%03x] ", p->ext[i].off);
		if (name)
			fprintf(out, "%s v%u\n", name, p->ext[i].version);
		else
			fprintf(out, "Extended capability id 0x%04x v%u\n", p->ext[i].id,
				p->ext[i].version);
	}
	if (p->ext_problem[0])
		fprintf(out, "\t(walk stopped: %s)\n", p->ext_problem);
}

static void print_irqs(const struct info_report *r, FILE *out)
{
	char nb[16];
	fprintf(out, "Interrupts:\n");
	for (unsigned i = 0; i < r->dev.num_irqs; i++) {
		const char *name = info_irq_name(i, nb, sizeof(nb));
		if (r->irqs[i].err < 0) {
			fprintf(out, "\t%-6s query failed: %s\n", name, strerror(-r->irqs[i].err));
			continue;
		}
		const struct ferry_irq_desc *d = &r->irqs[i].d;
		fprintf(out, "\t%-6s %u vector%s, EventFD%s Maskable%s AutoMasked%s NoResize%s\n",
			name, d->count, d->count == 1 ? "" : "s",
			pm(d->flags & VFIO_IRQ_INFO_EVENTFD), pm(d->flags & VFIO_IRQ_INFO_MASKABLE),
			pm(d->flags & VFIO_IRQ_INFO_AUTOMASKED),
			pm(d->flags & VFIO_IRQ_INFO_NORESIZE));
	}
}

static void print_features(const struct info_report *r, FILE *out)
{
	const struct info_features *f = &r->feat;
	char h[32];

	fprintf(out, "Device features:\n");
	if (f->mig_err < 0)
		fprintf(out, "\tMIGRATION: not supported (%s)\n", strerror(-f->mig_err));
	else
		fprintf(out, "\tMIGRATION: STOP_COPY%s P2P%s PRE_COPY%s (flags 0x%llx)\n",
			pm(f->mig_flags & VFIO_MIGRATION_STOP_COPY),
			pm(f->mig_flags & VFIO_MIGRATION_P2P),
			pm(f->mig_flags & VFIO_MIGRATION_PRE_COPY),
			(unsigned long long)f->mig_flags);
	if (f->state_err < 0)
		fprintf(out, "\tMIG_DEVICE_STATE: not supported (%s)\n", strerror(-f->state_err));
	else
		fprintf(out, "\tMIG_DEVICE_STATE: %s\n", ferry_mig_state_name(f->state));
	fprintf(out, "\tDMA_LOGGING: START%s STOP%s REPORT%s\n", pm(!f->log_start_err),
		pm(!f->log_stop_err), pm(!f->log_report_err));
	fprintf(out, "\tLOW_POWER: ENTRY%s ENTRY_WITH_WAKEUP%s EXIT%s\n", pm(!f->lp_entry_err),
		pm(!f->lp_wakeup_err), pm(!f->lp_exit_err));
	if (f->data_size_err < 0)
		fprintf(out, "\tMIG_DATA_SIZE: not supported\n");
	else
		fprintf(out, "\tMIG_DATA_SIZE: %llu bytes (%s) in STOP_COPY\n",
			(unsigned long long)f->data_size, human(f->data_size, h, sizeof(h)));
	if (f->precopy_info_negotiated)
		fprintf(out, "\tPRECOPY_INFO (ferry extension): %s\n",
			f->precopy_info_err ? "not available" : "supported");
}

void info_print_text(const struct info_report *r, FILE *out)
{
	print_server(r, out);
	print_identity(r, out);
	print_regions(r, out);
	print_caps(r, out);
	print_irqs(r, out);
	print_features(r, out);
}
