/*
 * ferry info --json: the report as one JSON object (json-c). Numbers are
 * JSON numbers, flags are booleans next to the raw value, names are strings;
 * a failed query is an object with "error".
 */
#include "info.h"

#include <errno.h>
#include <json-c/json.h>
#include <linux/pci_regs.h>
#include <string.h>

#include <ferry/migration.h>
#include <ferry/vfio_user.h>

typedef json_object jobj;

static void put(jobj *o, const char *k, jobj *v)
{
	json_object_object_add(o, k, v);
}

static void put_u64(jobj *o, const char *k, uint64_t v)
{
	put(o, k, json_object_new_uint64(v));
}

static void put_bool(jobj *o, const char *k, bool v)
{
	put(o, k, json_object_new_boolean(v));
}

static void put_str(jobj *o, const char *k, const char *v)
{
	put(o, k, json_object_new_string(v));
}

static jobj *error_obj(int err)
{
	jobj *o = json_object_new_object();
	put_str(o, "error", strerror(-err));
	put(o, "errno", json_object_new_int(-err));
	return o;
}

static jobj *server_json(const struct info_report *r)
{
	const struct ferry_server_caps *s = &r->caps;
	jobj *o = json_object_new_object(), *ext = json_object_new_array();
	put_u64(o, "major", s->major);
	put_u64(o, "minor", s->minor);
	put_u64(o, "max_msg_fds", s->max_msg_fds);
	put_u64(o, "max_data_xfer_size", s->max_data_xfer_size);
	put_u64(o, "max_dma_maps", s->max_dma_maps);
	put_u64(o, "pgsizes", s->pgsizes);
	put_bool(o, "twin_socket", s->twin_socket);
	put_bool(o, "write_multiple", s->write_multiple);
	if (s->extensions & FERRY_EXT_PRECOPY_INFO)
		json_object_array_add(ext, json_object_new_string("precopy_info"));
	if (s->extensions & FERRY_EXT_MIG_SHM)
		json_object_array_add(ext, json_object_new_string("mig_shm"));
	if (s->extensions & FERRY_EXT_LOW_POWER)
		json_object_array_add(ext, json_object_new_string("low_power"));
	if (s->extensions & FERRY_EXT_DIRTY_SHM)
		json_object_array_add(ext, json_object_new_string("dirty_shm"));
	put(o, "extensions", ext);
	return o;
}

static jobj *device_json(const struct info_report *r)
{
	jobj *o = json_object_new_object();
	put_u64(o, "flags", r->dev.flags);
	put_bool(o, "pci", r->dev.flags & VFIO_DEVICE_FLAGS_PCI);
	put_bool(o, "reset", r->dev.flags & VFIO_DEVICE_FLAGS_RESET);
	put_u64(o, "num_regions", r->dev.num_regions);
	put_u64(o, "num_irqs", r->dev.num_irqs);
	return o;
}

static jobj *identity_json(const struct pci_identity *id)
{
	jobj *o = json_object_new_object();
	put_u64(o, "vendor_id", id->vendor);
	put_u64(o, "device_id", id->device);
	put_u64(o, "subsystem_vendor_id", id->subsys_vendor);
	put_u64(o, "subsystem_id", id->subsys);
	put_u64(o, "class_code", id->class_code);
	put_str(o, "class_name", pci_class_name(id->class_code));
	put_u64(o, "revision", id->revision);
	put_u64(o, "header_type", id->header_type);
	put_u64(o, "command", id->command);
	put_u64(o, "status", id->status);
	return o;
}

static jobj *bar_json(const struct info_report *r, unsigned index)
{
	if (!r->has_pci || index > VFIO_PCI_ROM_REGION_INDEX)
		return NULL;
	const struct pci_bar *b = &r->pci.bars[index];
	jobj *o = json_object_new_object();
	if (index == VFIO_PCI_ROM_REGION_INDEX) {
		put_str(o, "type", "rom");
		put_bool(o, "enabled", b->rom_enabled);
	} else if (b->is_upper) {
		put_str(o, "type", "upper");
	} else if (b->is_io) {
		put_str(o, "type", "io");
	} else {
		put_str(o, "type", "memory");
		put_u64(o, "bits", b->is_64 ? 64 : 32);
		put_bool(o, "prefetchable", b->prefetch);
	}
	return o;
}

static jobj *regions_json(const struct info_report *r)
{
	jobj *a = json_object_new_array();
	char nb[16];
	for (unsigned i = 0; i < r->dev.num_regions; i++) {
		jobj *o = r->regions[i].err < 0 ? error_obj(r->regions[i].err)
						: json_object_new_object();
		put_u64(o, "index", i);
		put_str(o, "name", info_region_name(i, nb, sizeof(nb)));
		json_object_array_add(a, o);
		if (r->regions[i].err < 0)
			continue;
		const struct ferry_region_desc *d = r->regions[i].d;
		put_u64(o, "size", d->size);
		put_u64(o, "offset", d->offset);
		put_u64(o, "flags", d->flags);
		put_bool(o, "read", d->flags & VFIO_REGION_INFO_FLAG_READ);
		put_bool(o, "write", d->flags & VFIO_REGION_INFO_FLAG_WRITE);
		put_bool(o, "mmap", d->flags & VFIO_REGION_INFO_FLAG_MMAP);
		put_bool(o, "has_fd", d->has_fd);
		jobj *bar = bar_json(r, i);
		if (bar)
			put(o, "bar", bar);
		if (d->has_sparse) {
			jobj *areas = json_object_new_array();
			for (unsigned k = 0; k < d->nr_areas; k++) {
				jobj *ar = json_object_new_object();
				put_u64(ar, "offset", d->areas[k].offset);
				put_u64(ar, "size", d->areas[k].size);
				json_object_array_add(areas, ar);
			}
			put(o, "sparse_areas", areas);
		}
		if (d->has_type) {
			put_u64(o, "type", d->type);
			put_u64(o, "subtype", d->subtype);
		}
	}
	return a;
}

static jobj *cap_json(const struct pci_cap *c)
{
	jobj *o = json_object_new_object();
	const char *name = pci_cap_name(c->id);
	put_u64(o, "offset", c->off);
	put_u64(o, "id", c->id);
	if (name)
		put_str(o, "name", name);
	if (c->truncated) {
		put_bool(o, "truncated", true);
		return o;
	}
	switch (c->id) {
	case PCI_CAP_ID_PM:
		put_u64(o, "version", c->pm.version);
		put_str(o, "power_state", pci_power_state_name(c->pm.power_state));
		put_bool(o, "d1", c->pm.d1);
		put_bool(o, "d2", c->pm.d2);
		put_u64(o, "pme_support", c->pm.pme_support);
		break;
	case PCI_CAP_ID_MSI:
		put_u64(o, "vectors", c->msi.vectors);
		put_u64(o, "enabled_vectors", c->msi.enabled_vectors);
		put_bool(o, "enabled", c->msi.enabled);
		put_bool(o, "64bit", c->msi.is_64);
		put_bool(o, "maskable", c->msi.maskable);
		break;
	case PCI_CAP_ID_MSIX:
		put_u64(o, "table_size", c->msix.table_size);
		put_u64(o, "table_bir", c->msix.table_bir);
		put_u64(o, "table_offset", c->msix.table_off);
		put_u64(o, "pba_bir", c->msix.pba_bir);
		put_u64(o, "pba_offset", c->msix.pba_off);
		put_bool(o, "enabled", c->msix.enabled);
		put_bool(o, "masked", c->msix.masked);
		break;
	case PCI_CAP_ID_EXP:
		put_u64(o, "version", c->exp.version);
		put_u64(o, "type", c->exp.type);
		put_str(o, "type_name", pcie_type_name(c->exp.type));
		put_bool(o, "flr", c->exp.flr);
		break;
	default:
		break;
	}
	return o;
}

static void put_pci(jobj *root, const struct info_report *r)
{
	const struct pci_decoded *p = &r->pci;
	if (!r->has_pci) {
		if (r->cfg_err < 0 && r->cfg_err != -ENODEV)
			put(root, "config_space", error_obj(r->cfg_err));
		return;
	}
	put_u64(root, "config_space_size", r->cfg_len);
	put(root, "identity", identity_json(&p->id));
	jobj *caps = json_object_new_array();
	for (unsigned i = 0; i < p->ncaps; i++)
		json_object_array_add(caps, cap_json(&p->caps[i]));
	put(root, "capabilities", caps);
	if (p->cap_problem[0])
		put_str(root, "capabilities_problem", p->cap_problem);
	jobj *ext = json_object_new_array();
	for (unsigned i = 0; i < p->next; i++) {
		jobj *o = json_object_new_object();
		const char *name = pci_ext_cap_name(p->ext[i].id);
		put_u64(o, "offset", p->ext[i].off);
		put_u64(o, "id", p->ext[i].id);
		put_u64(o, "version", p->ext[i].version);
		if (name)
			put_str(o, "name", name);
		json_object_array_add(ext, o);
	}
	put(root, "extended_capabilities", ext);
	if (p->ext_problem[0])
		put_str(root, "extended_capabilities_problem", p->ext_problem);
}

static jobj *irqs_json(const struct info_report *r)
{
	jobj *a = json_object_new_array();
	char nb[16];
	for (unsigned i = 0; i < r->dev.num_irqs; i++) {
		jobj *o = r->irqs[i].err < 0 ? error_obj(r->irqs[i].err) : json_object_new_object();
		put_u64(o, "index", i);
		put_str(o, "name", info_irq_name(i, nb, sizeof(nb)));
		json_object_array_add(a, o);
		if (r->irqs[i].err < 0)
			continue;
		const struct ferry_irq_desc *d = &r->irqs[i].d;
		put_u64(o, "count", d->count);
		put_u64(o, "flags", d->flags);
		put_bool(o, "eventfd", d->flags & VFIO_IRQ_INFO_EVENTFD);
		put_bool(o, "maskable", d->flags & VFIO_IRQ_INFO_MASKABLE);
		put_bool(o, "automasked", d->flags & VFIO_IRQ_INFO_AUTOMASKED);
		put_bool(o, "noresize", d->flags & VFIO_IRQ_INFO_NORESIZE);
	}
	return a;
}

static jobj *features_json(const struct info_report *r)
{
	const struct info_features *f = &r->feat;
	jobj *o = json_object_new_object(), *m = json_object_new_object();

	put_bool(m, "supported", !f->mig_err);
	if (!f->mig_err) {
		put_u64(m, "flags", f->mig_flags);
		put_bool(m, "stop_copy", f->mig_flags & VFIO_MIGRATION_STOP_COPY);
		put_bool(m, "p2p", f->mig_flags & VFIO_MIGRATION_P2P);
		put_bool(m, "pre_copy", f->mig_flags & VFIO_MIGRATION_PRE_COPY);
	}
	put(o, "migration", m);

	m = json_object_new_object();
	put_bool(m, "supported", !f->state_err);
	if (!f->state_err)
		put_str(m, "state", ferry_mig_state_name(f->state));
	put(o, "mig_device_state", m);

	m = json_object_new_object();
	put_bool(m, "start", !f->log_start_err);
	put_bool(m, "stop", !f->log_stop_err);
	put_bool(m, "report", !f->log_report_err);
	put(o, "dma_logging", m);

	m = json_object_new_object();
	put_bool(m, "entry", !f->lp_entry_err);
	put_bool(m, "entry_with_wakeup", !f->lp_wakeup_err);
	put_bool(m, "exit", !f->lp_exit_err);
	put(o, "low_power", m);

	m = json_object_new_object();
	put_bool(m, "supported", !f->data_size_err);
	if (!f->data_size_err)
		put_u64(m, "stop_copy_bytes", f->data_size);
	put(o, "mig_data_size", m);

	m = json_object_new_object();
	put_bool(m, "negotiated", f->precopy_info_negotiated);
	put_bool(m, "supported", f->precopy_info_negotiated && !f->precopy_info_err);
	put(o, "precopy_info", m);
	return o;
}

int info_print_json(const struct info_report *r, FILE *out)
{
	jobj *root = json_object_new_object();
	if (!root)
		return -ENOMEM;
	put_str(root, "socket", r->socket);
	put(root, "server", server_json(r));
	put(root, "device", device_json(r));
	put_pci(root, r);
	put(root, "regions", regions_json(r));
	put(root, "irqs", irqs_json(r));
	put(root, "features", features_json(r));
	put_u64(root, "failed_queries", r->failures);
	const char *s = json_object_to_json_string_ext(
		root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
	int e = s ? 0 : -ENOMEM;
	if (s)
		fprintf(out, "%s\n", s);
	json_object_put(root);
	return e;
}
