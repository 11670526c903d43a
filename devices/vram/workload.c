/* The vram guest driver / workload of workload.h. */
#include "workload.h"

#include <errno.h>
#include <string.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include <ferry/client.h>
#include <ferry/log.h>

#include "regs.h"

#define CFG VFIO_PCI_CONFIG_REGION_INDEX
#define LOG_BAD_PAGES 5 /* verify logs this many mismatches, then counts */

static const char *wl_name(const struct vram_workload *w)
{
	return ferry_client_name(w->c);
}

static uint64_t wl_page(const struct vram_wl_shared *sh, uint64_t seq)
{
	return sh->first_page + vram_mix64(sh->seed ^ (seq * 0xd6e8feb86659fd93ull)) % sh->npages;
}

/* Word @i of the pattern write @seq leaves in VRAM page @page. */
static uint64_t wl_word(uint64_t seed, uint64_t seq, uint64_t page, uint64_t i)
{
	return vram_mix64((seed * 0x9e3779b97f4a7c15ull) ^ (seq << 20) ^ (page << 44) ^ i);
}

uint64_t vram_workload_area_size(uint64_t vram_size)
{
	return VRAM_WL_HDR + (vram_size / VRAM_PAGE_SIZE / 2) * sizeof(uint64_t);
}

static void mark(struct vram_workload *w, const void *p, uint64_t len)
{
	if (w->dirty_fn)
		w->dirty_fn(w->dirty_opaque,
			    w->area_iova + (uint64_t)((const uint8_t *)p - (const uint8_t *)w->sh), len);
}

/* Checks the device is a ferry-dev-vram and reads its VRAM size. */
static int probe(struct vram_workload *w, uint64_t *vram_size)
{
	uint32_t id, version;
	uint16_t cmd;
	int rc;

	rc = ferry_client_read32(w->c, VRAM_BAR_REGS, VRAM_REG_ID, &id);
	if (rc == 0)
		rc = ferry_client_read32(w->c, VRAM_BAR_REGS, VRAM_REG_VERSION, &version);
	if (rc == 0)
		rc = ferry_client_read64(w->c, VRAM_BAR_REGS, VRAM_REG_VRAM_SIZE, vram_size);
	if (rc < 0)
		return rc;
	if (id != VRAM_ID_VALUE || version >> 16 != VRAM_VERSION_VALUE >> 16) {
		ferry_log(FERRY_LOG_ERR, "%s: not a ferry-dev-vram (ID 0x%08x, VERSION 0x%08x)",
			  wl_name(w), id, version);
		return -ENODEV;
	}
	if (*vram_size < VRAM_MIN_SIZE || *vram_size > VRAM_MAX_SIZE ||
	    (*vram_size & (*vram_size - 1))) {
		ferry_log(FERRY_LOG_ERR, "%s: device reports VRAM_SIZE %llu", wl_name(w),
			  (unsigned long long)*vram_size);
		return -ENODEV;
	}
	/* Memory decode on, as a guest kernel does before touching BARs. */
	rc = ferry_client_region_read(w->c, CFG, PCI_COMMAND, &cmd, sizeof(cmd));
	if (rc < 0)
		return rc;
	if (!(cmd & PCI_COMMAND_MEMORY)) {
		cmd |= PCI_COMMAND_MEMORY;
		rc = ferry_client_region_write(w->c, CFG, PCI_COMMAND, &cmd, sizeof(cmd));
	}
	return rc;
}

static int map_vram(struct vram_workload *w, uint64_t vram_size)
{
	int err = 0;

	w->vram = ferry_client_region_map(w->c, VRAM_BAR_VRAM, &err);
	if (!w->vram) {
		ferry_log(FERRY_LOG_ERR, "%s: cannot map BAR2 (VRAM): %s", wl_name(w),
			  strerror(-err));
		return err ? err : -ENODEV;
	}
	w->vram_size = vram_size;
	return 0;
}

static int setup(struct vram_workload *w, struct ferry_client *c, void *area, uint64_t area_iova,
		 uint64_t area_size, const struct vram_workload_config *cfg, uint64_t *vram_size)
{
	if (!w || !c || !area || area_size < VRAM_WL_HDR || ((uintptr_t)area % 8)) {
		ferry_log(FERRY_LOG_ERR, "vram workload: bad arguments (area %p, %llu bytes)", area,
			  (unsigned long long)area_size);
		return -EINVAL;
	}
	memset(w, 0, sizeof(*w));
	w->c = c;
	w->sh = area;
	w->last_seq = (uint64_t *)((uint8_t *)area + VRAM_WL_HDR);
	w->area_iova = area_iova;
	if (cfg) {
		w->dirty_fn = cfg->dirty_fn;
		w->dirty_opaque = cfg->dirty_opaque;
	}
	return probe(w, vram_size);
}

static int program_engine(struct vram_workload *w, uint32_t rate)
{
	uint64_t pages = w->vram_size / VRAM_PAGE_SIZE;
	struct { uint32_t off, val; } seq[] = {
		{ VRAM_REG_CONTROL, 0 },
		{ VRAM_REG_ENGINE_FIRST, (uint32_t)(pages / 2) },
		{ VRAM_REG_ENGINE_COUNT, (uint32_t)(pages - pages / 2) },
		{ VRAM_REG_ENGINE_SEED, (uint32_t)w->sh->seed },
		{ VRAM_REG_ENGINE_RATE, rate },
		{ VRAM_REG_CONTROL, rate ? VRAM_CTRL_ENGINE : 0 },
	};

	for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		int rc = ferry_client_write32(w->c, VRAM_BAR_REGS, seq[i].off, seq[i].val);

		if (rc < 0)
			return rc;
	}
	return 0;
}

int vram_workload_init(struct vram_workload *w, struct ferry_client *c, void *area,
		       uint64_t area_iova, uint64_t area_size,
		       const struct vram_workload_config *cfg)
{
	uint64_t vram_size;
	int rc = setup(w, c, area, area_iova, area_size, cfg, &vram_size);

	if (rc < 0)
		return rc;
	uint64_t npages = vram_size / VRAM_PAGE_SIZE / 2;
	uint64_t fit = (area_size - VRAM_WL_HDR) / sizeof(uint64_t);

	if (npages > fit)
		npages = fit;
	if (npages == 0) {
		ferry_log(FERRY_LOG_ERR, "%s: workload area of %llu bytes holds no page record",
			  wl_name(w), (unsigned long long)area_size);
		return -ENOSPC;
	}
	struct vram_wl_shared *sh = w->sh;

	memset(sh, 0, VRAM_WL_HDR);
	sh->magic = VRAM_WL_MAGIC;
	sh->version = VRAM_WL_VERSION;
	sh->area_size = area_size;
	sh->vram_size = vram_size;
	sh->page_size = VRAM_PAGE_SIZE;
	sh->first_page = 0;
	sh->npages = npages;
	sh->seed = cfg && cfg->seed ? cfg->seed : 0x5652414d574b4cull;
	sh->engine_rate = cfg && cfg->no_engine ? 0
			  : cfg && cfg->engine_rate ? cfg->engine_rate : VRAM_RATE_DEFAULT;
	memset(w->last_seq, 0, npages * sizeof(uint64_t));
	mark(w, sh, VRAM_WL_HDR + npages * sizeof(uint64_t));

	rc = map_vram(w, vram_size);
	if (rc == 0)
		rc = program_engine(w, sh->engine_rate);
	if (rc < 0)
		vram_workload_fini(w);
	return rc;
}

static int bad_field(struct vram_workload *w, const char *field, uint64_t val)
{
	ferry_log(FERRY_LOG_ERR, "%s: workload state in guest memory: bad %s (%llu)", wl_name(w),
		  field, (unsigned long long)val);
	return -EINVAL;
}

int vram_workload_attach(struct vram_workload *w, struct ferry_client *c, void *area,
			 uint64_t area_iova, uint64_t area_size,
			 const struct vram_workload_config *cfg)
{
	uint64_t vram_size;
	int rc = setup(w, c, area, area_iova, area_size, cfg, &vram_size);

	if (rc < 0)
		return rc;
	const struct vram_wl_shared *sh = w->sh;
	uint64_t vram_pages = vram_size / VRAM_PAGE_SIZE;

	if (sh->magic != VRAM_WL_MAGIC)
		return bad_field(w, "magic", sh->magic);
	if (sh->version != VRAM_WL_VERSION)
		return bad_field(w, "version", sh->version);
	if (sh->area_size > area_size)
		return bad_field(w, "area_size", sh->area_size);
	if (sh->page_size != VRAM_PAGE_SIZE)
		return bad_field(w, "page_size", sh->page_size);
	if (sh->vram_size != vram_size)
		return bad_field(w, "vram_size (differs from the device's)", sh->vram_size);
	if (sh->npages == 0 || sh->first_page > vram_pages ||
	    sh->npages > vram_pages - sh->first_page)
		return bad_field(w, "page window", sh->npages);
	if (sh->npages > (sh->area_size - VRAM_WL_HDR) / sizeof(uint64_t))
		return bad_field(w, "npages (beyond the area)", sh->npages);
	return map_vram(w, vram_size);
}

void vram_workload_fini(struct vram_workload *w)
{
	if (w && w->vram) {
		ferry_client_region_unmap(w->c, VRAM_BAR_VRAM);
		w->vram = NULL;
	}
}

int vram_workload_run(struct vram_workload *w, unsigned n)
{
	struct vram_wl_shared *sh = w->sh;

	for (unsigned k = 0; k < n; k++) {
		uint64_t seq = sh->writes + 1;
		uint64_t page = wl_page(sh, seq);
		uint8_t *dst = w->vram + page * VRAM_PAGE_SIZE;

		for (uint64_t i = 0; i < VRAM_PAGE_SIZE / 8; i++) {
			uint64_t word = wl_word(sh->seed, seq, page, i);

			memcpy(dst + i * 8, &word, 8);
		}
		/* Content first, then the record saying it is there. */
		__atomic_thread_fence(__ATOMIC_RELEASE);
		w->last_seq[page - sh->first_page] = seq;
		sh->writes = seq;
		mark(w, &w->last_seq[page - sh->first_page], sizeof(uint64_t));
	}
	mark(w, sh, VRAM_WL_HDR);
	return (int)n;
}

int64_t vram_workload_verify(struct vram_workload *w)
{
	struct vram_wl_shared *sh = w->sh;
	int64_t bad = 0;
	uint64_t good = 0;

	for (uint64_t rel = 0; rel < sh->npages; rel++) {
		uint64_t seq = w->last_seq[rel];
		uint64_t page = sh->first_page + rel;
		const uint8_t *p = w->vram + page * VRAM_PAGE_SIZE;
		uint64_t i = 0;

		if (seq == 0)
			continue;
		if (seq <= sh->writes) {
			for (; i < VRAM_PAGE_SIZE / 8; i++) {
				uint64_t have;

				memcpy(&have, p + i * 8, 8);
				if (have != wl_word(sh->seed, seq, page, i))
					break;
			}
		}
		if (i == VRAM_PAGE_SIZE / 8) {
			good++;
			continue;
		}
		if (bad++ < LOG_BAD_PAGES)
			ferry_log(FERRY_LOG_ERR,
				  "%s: VRAM page %llu does not hold pattern write %llu (word %llu)",
				  wl_name(w), (unsigned long long)page, (unsigned long long)seq,
				  (unsigned long long)i);
	}
	sh->verified += good;
	sh->failures += (uint64_t)bad;
	sh->verify_runs++;
	mark(w, sh, VRAM_WL_HDR);
	return bad;
}

int vram_workload_checksum(struct vram_workload *w, bool stop_engine, uint32_t *crc)
{
	uint32_t ctl;
	int rc = 0;

	if (stop_engine) {
		rc = ferry_client_read32(w->c, VRAM_BAR_REGS, VRAM_REG_CONTROL, &ctl);
		if (rc == 0) /* returns once the engine is idle (regs.h) */
			rc = ferry_client_write32(w->c, VRAM_BAR_REGS, VRAM_REG_CONTROL,
						  ctl & ~VRAM_CTRL_ENGINE);
	}
	if (rc == 0)
		rc = ferry_client_write32(w->c, VRAM_BAR_REGS, VRAM_REG_CSUM_TRIGGER, VRAM_CSUM_GO);
	if (rc == 0)
		rc = ferry_client_read32(w->c, VRAM_BAR_REGS, VRAM_REG_CHECKSUM, crc);
	return rc;
}

void vram_workload_stats(const struct vram_workload *w, struct vram_workload_stats *out)
{
	const struct vram_wl_shared *sh = w->sh;

	memset(out, 0, sizeof(*out));
	out->writes = sh->writes;
	out->verified = sh->verified;
	out->failures = sh->failures;
	out->verify_runs = sh->verify_runs;
	for (uint64_t rel = 0; rel < sh->npages; rel++)
		out->pages_used += w->last_seq[rel] != 0;
	if (ferry_client_read64(w->c, VRAM_BAR_REGS, VRAM_REG_ENGINE_WRITES, &out->engine_writes) < 0)
		out->engine_writes = 0;
	if (ferry_client_read64(w->c, VRAM_BAR_REGS, VRAM_REG_GENERATION, &out->generation) < 0)
		out->generation = 0;
}
