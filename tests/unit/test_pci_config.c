/* PCI configuration space emulation: header, BARs, capabilities, masks, events. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <linux/pci_regs.h>

#include "device/pci_config.h"
#include "util/checked.h"
#include "util/log.h"

/* Capability offsets the module documents. */
#define PM 0x40
#define MSI 0x48
#define MSIX 0x60
#define EXP 0x70

static char last_log[1024];
static int log_calls;

static void capture(enum ferry_log_level lvl, const char *line, void *opaque)
{
	(void)lvl;
	(void)opaque;
	snprintf(last_log, sizeof(last_log), "%s", line);
	log_calls++;
}

static int group_setup(void **state)
{
	(void)state;
	ferry_log_set_sink(capture, NULL);
	ferry_log_set_level(FERRY_LOG_WARN);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	ferry_log_set_sink(NULL, NULL);
	return 0;
}

static struct pci_config_desc base_desc(void)
{
	struct pci_config_desc d = {
		.name = "test",
		.vendor_id = 0x1234,
		.device_id = 0x11e8,
		.subsys_vendor_id = 0x1af4,
		.subsys_id = 0x1100,
		.revision = 0x02,
		.class_code = 0x088000,
		.intx_pin = 1,
	};
	d.bar_size[0] = 4096;                 /* 32-bit memory */
	d.bar_size[2] = UINT64_C(1) << 20;    /* 64-bit prefetchable, slots 2+3 */
	d.bar_flags[2] = PCI_CFG_BAR_MEM64 | PCI_CFG_BAR_PREFETCH;
	d.bar_size[4] = 32;                   /* I/O */
	d.bar_flags[4] = PCI_CFG_BAR_IO;
	return d;
}

static struct pci_config *make(const struct pci_config_desc *d)
{
	struct pci_config *cfg = NULL;
	assert_int_equal(pci_config_create(d, &cfg), 0);
	assert_non_null(cfg);
	return cfg;
}

static struct pci_config *make_full(bool pcie)
{
	struct pci_config_desc d = base_desc();
	d.msi_vectors = 8;
	d.msix_vectors = 16;
	d.msix_bar = 0;
	d.msix_table_offset = 0;
	d.msix_pba_offset = 0x800;
	d.pcie = pcie;
	return make(&d);
}

static uint32_t rd(struct pci_config *cfg, unsigned off, unsigned width)
{
	uint8_t b[4] = {0};
	uint32_t v = 0;
	assert_int_equal(pci_config_read(cfg, off, b, width), 0);
	for (unsigned i = 0; i < width; i++)
		v |= (uint32_t)b[i] << (8 * i);
	return v;
}

/* Writes @v (little-endian, @width bytes) and returns the events. */
static uint32_t wr(struct pci_config *cfg, unsigned off, unsigned width, uint32_t v)
{
	uint8_t b[4];
	uint32_t ev = 0xdeadbeef;
	for (unsigned i = 0; i < width; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	assert_int_equal(pci_config_write(cfg, off, b, width, &ev), 0);
	return ev;
}

/* ---- header ---- */

static void test_header_power_on(void **state)
{
	(void)state;
	struct pci_config *cfg = make_full(false);

	assert_int_equal(pci_config_size(cfg), 256);
	assert_int_equal(rd(cfg, PCI_VENDOR_ID, 2), 0x1234);
	assert_int_equal(rd(cfg, PCI_DEVICE_ID, 2), 0x11e8);
	assert_int_equal(rd(cfg, PCI_COMMAND, 2), 0);
	assert_int_equal(rd(cfg, PCI_STATUS, 2), PCI_STATUS_CAP_LIST);
	assert_int_equal(rd(cfg, PCI_CLASS_REVISION, 4), 0x08800002);
	assert_int_equal(rd(cfg, PCI_HEADER_TYPE, 1), PCI_HEADER_TYPE_NORMAL);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_0, 4), 0);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_2, 4),
			 PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_4, 4), PCI_BASE_ADDRESS_SPACE_IO);
	assert_int_equal(rd(cfg, PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
	assert_int_equal(rd(cfg, PCI_SUBSYSTEM_ID, 2), 0x1100);
	assert_int_equal(rd(cfg, PCI_CAPABILITY_LIST, 1), PM);
	assert_int_equal(rd(cfg, PCI_INTERRUPT_PIN, 1), 1);
	assert_int_equal(pci_config_power_state(cfg), 0);
	assert_false(pci_config_bus_master(cfg));
	assert_false(pci_config_msi_enabled(cfg));
	assert_false(pci_config_msix_enabled(cfg));
	pci_config_destroy(cfg);
	pci_config_destroy(NULL);
}

/* ---- BAR sizing ---- */

static void test_bar_mem32_sizing(void **state)
{
	(void)state;
	struct pci_config_desc d = base_desc();
	d.bar_flags[0] = PCI_CFG_BAR_PREFETCH;
	struct pci_config *cfg = make(&d);

	assert_int_equal(wr(cfg, PCI_BASE_ADDRESS_0, 4, 0xffffffff), PCI_CFG_EV_BAR);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_0, 4), 0xfffff000 | PCI_BASE_ADDRESS_MEM_PREFETCH);
	/* Low address bits below the size are not decoded. */
	assert_int_equal(wr(cfg, PCI_BASE_ADDRESS_0, 4, 0xfebf0abc), PCI_CFG_EV_BAR);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_0, 4), 0xfebf0000 | PCI_BASE_ADDRESS_MEM_PREFETCH);
	assert_int_equal(pci_config_bar_addr(cfg, 0), 0xfebf0000);
	/* Same value again: nothing changed, no event. */
	assert_int_equal(wr(cfg, PCI_BASE_ADDRESS_0, 4, 0xfebf0000), 0);
	pci_config_destroy(cfg);
}

static void test_bar_mem64_sizing(void **state)
{
	(void)state;
	struct pci_config_desc d = base_desc();
	struct pci_config *cfg = make(&d);
	const uint32_t type = PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH;

	/* 1 MiB pair in slots 2+3. */
	assert_int_equal(wr(cfg, PCI_BASE_ADDRESS_2, 4, 0xffffffff), PCI_CFG_EV_BAR);
	assert_int_equal(wr(cfg, PCI_BASE_ADDRESS_3, 4, 0xffffffff), PCI_CFG_EV_BAR);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_2, 4), 0xfff00000 | type);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_3, 4), 0xffffffff);
	wr(cfg, PCI_BASE_ADDRESS_2, 4, 0x12300000);
	wr(cfg, PCI_BASE_ADDRESS_3, 4, 0x00000045);
	assert_int_equal(pci_config_bar_addr(cfg, 2), UINT64_C(0x4512300000));
	assert_int_equal(pci_config_bar_addr(cfg, 3), 0); /* upper slot is not a BAR */
	pci_config_destroy(cfg);

	/* 8 GiB: the size mask reaches into the upper slot. */
	d.bar_size[2] = UINT64_C(1) << 33;
	d.bar_flags[2] = PCI_CFG_BAR_MEM64;
	cfg = make(&d);
	uint8_t ones[8];
	memset(ones, 0xff, sizeof(ones));
	assert_int_equal(pci_config_write(cfg, PCI_BASE_ADDRESS_2, ones, 8, NULL), 0);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_2, 4), PCI_BASE_ADDRESS_MEM_TYPE_64);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_3, 4), 0xfffffffe);
	assert_int_equal(pci_config_bar_addr(cfg, 2), UINT64_C(0xfffffffe00000000));
	pci_config_destroy(cfg);
}

static void test_bar_io_sizing(void **state)
{
	(void)state;
	struct pci_config_desc d = base_desc();
	struct pci_config *cfg = make(&d);

	assert_int_equal(wr(cfg, PCI_BASE_ADDRESS_4, 4, 0xffffffff), PCI_CFG_EV_BAR);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_4, 4), 0xffffffe0 | PCI_BASE_ADDRESS_SPACE_IO);
	wr(cfg, PCI_BASE_ADDRESS_4, 4, 0xc000);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_4, 4), 0xc000 | PCI_BASE_ADDRESS_SPACE_IO);
	assert_int_equal(pci_config_bar_addr(cfg, 4), 0xc000);
	pci_config_destroy(cfg);

	/* The smallest I/O BAR: only bit 1 (reserved) and the space bit are fixed. */
	d.bar_size[4] = 4;
	cfg = make(&d);
	wr(cfg, PCI_BASE_ADDRESS_4, 4, 0xffffffff);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_4, 4), 0xfffffffc | PCI_BASE_ADDRESS_SPACE_IO);
	wr(cfg, PCI_BASE_ADDRESS_4, 4, 0xc004);
	assert_int_equal(pci_config_bar_addr(cfg, 4), 0xc004);
	pci_config_destroy(cfg);
}

static void test_bar_rom_sizing(void **state)
{
	(void)state;
	struct pci_config_desc d = base_desc();
	d.rom_size = 64 * 1024;
	struct pci_config *cfg = make(&d);

	assert_int_equal(rd(cfg, PCI_ROM_ADDRESS, 4), 0);
	/* Linux sizes with the enable bit clear (PCI_ROM_ADDRESS_MASK). */
	assert_int_equal(wr(cfg, PCI_ROM_ADDRESS, 4, PCI_ROM_ADDRESS_MASK), PCI_CFG_EV_BAR);
	assert_int_equal(rd(cfg, PCI_ROM_ADDRESS, 4), 0xffff0000);
	assert_int_equal(wr(cfg, PCI_ROM_ADDRESS, 4, 0xffffffff), PCI_CFG_EV_BAR);
	assert_int_equal(rd(cfg, PCI_ROM_ADDRESS, 4), 0xffff0000 | PCI_ROM_ADDRESS_ENABLE);
	wr(cfg, PCI_ROM_ADDRESS, 4, 0xfeb00000 | PCI_ROM_ADDRESS_ENABLE | 0x7fe);
	assert_int_equal(rd(cfg, PCI_ROM_ADDRESS, 4), 0xfeb00000 | PCI_ROM_ADDRESS_ENABLE);
	assert_int_equal(pci_config_bar_addr(cfg, PCI_CFG_ROM_BAR), 0xfeb00000);
	pci_config_destroy(cfg);

	/* No ROM: the register is hardwired to 0. */
	d.rom_size = 0;
	cfg = make(&d);
	assert_int_equal(wr(cfg, PCI_ROM_ADDRESS, 4, 0xffffffff), 0);
	assert_int_equal(rd(cfg, PCI_ROM_ADDRESS, 4), 0);
	assert_int_equal(pci_config_bar_addr(cfg, PCI_CFG_ROM_BAR), 0);
	pci_config_destroy(cfg);
}

static void test_bar_unimplemented(void **state)
{
	(void)state;
	struct pci_config_desc d = base_desc();
	struct pci_config *cfg = make(&d);

	/* Slots 1 and 5 are unimplemented. */
	assert_int_equal(wr(cfg, PCI_BASE_ADDRESS_1, 4, 0xffffffff), 0);
	assert_int_equal(wr(cfg, PCI_BASE_ADDRESS_5, 4, 0xffffffff), 0);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_1, 4), 0);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_5, 4), 0);
	assert_int_equal(pci_config_bar_addr(cfg, 1), 0);
	assert_int_equal(pci_config_bar_addr(cfg, 5), 0);
	assert_int_equal(pci_config_bar_addr(cfg, 7), 0);
	pci_config_destroy(cfg);
}

/* ---- masks ---- */

static void test_readonly_fields(void **state)
{
	(void)state;
	struct pci_config *cfg = make_full(true);
	uint8_t before[4096], ones[4096];
	uint32_t ev;

	assert_int_equal(pci_config_save(cfg, before, sizeof(before)), 4096);
	/* One write of all-ones over the whole space. */
	memset(ones, 0xff, sizeof(ones));
	assert_int_equal(pci_config_write(cfg, 0, ones, sizeof(ones), &ev), 0);
	assert_true(ev & PCI_CFG_EV_COMMAND);

	assert_int_equal(rd(cfg, PCI_VENDOR_ID, 4), 0x11e81234);
	assert_int_equal(rd(cfg, PCI_COMMAND, 2),
			 PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
			 PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
	assert_int_equal(rd(cfg, PCI_STATUS, 2), PCI_STATUS_CAP_LIST);
	assert_int_equal(rd(cfg, PCI_CLASS_REVISION, 4), 0x08800002);
	assert_int_equal(rd(cfg, PCI_HEADER_TYPE, 1), 0);
	assert_int_equal(rd(cfg, PCI_LATENCY_TIMER, 1), 0);
	assert_int_equal(rd(cfg, PCI_BIST, 1), 0);
	assert_int_equal(rd(cfg, PCI_CARDBUS_CIS, 4), 0);
	assert_int_equal(rd(cfg, PCI_SUBSYSTEM_VENDOR_ID, 4), 0x11001af4);
	assert_int_equal(rd(cfg, PCI_CAPABILITY_LIST, 1), PM);
	assert_int_equal(rd(cfg, PCI_INTERRUPT_LINE, 1), 0xff); /* RW */
	assert_int_equal(rd(cfg, PCI_INTERRUPT_PIN, 1), 1);
	assert_int_equal(rd(cfg, PCI_MIN_GNT, 2), 0);
	/* Capability headers and read-only capability registers. */
	assert_int_equal(rd(cfg, PM, 2), MSI << 8 | PCI_CAP_ID_PM);
	assert_int_equal(rd(cfg, PM + PCI_PM_PMC, 2), 3);
	assert_int_equal(rd(cfg, MSI, 2), MSIX << 8 | PCI_CAP_ID_MSI);
	assert_int_equal(rd(cfg, MSI + PCI_MSI_ADDRESS_LO, 4), 0xfffffffc);
	assert_int_equal(rd(cfg, MSI + PCI_MSI_MASK_64, 4), 0xff); /* 8 vectors */
	assert_int_equal(rd(cfg, MSI + PCI_MSI_PENDING_64, 4), 0);
	assert_int_equal(rd(cfg, MSIX, 2), EXP << 8 | PCI_CAP_ID_MSIX);
	assert_int_equal(rd(cfg, MSIX + PCI_MSIX_TABLE, 4), 0);
	assert_int_equal(rd(cfg, MSIX + PCI_MSIX_PBA, 4), 0x800);
	assert_int_equal(rd(cfg, EXP, 4), (PCI_EXP_TYPE_ENDPOINT << 4 | 2) << 16 | PCI_CAP_ID_EXP);
	assert_int_equal(rd(cfg, EXP + PCI_EXP_DEVCAP, 4), PCI_EXP_DEVCAP_RBER | PCI_EXP_DEVCAP_FLR);
	assert_int_equal(rd(cfg, EXP + PCI_EXP_DEVCTL, 2) & PCI_EXP_DEVCTL_BCR_FLR, 0);
	assert_int_equal(rd(cfg, EXP + PCI_EXP_LNKCAP, 4), PCI_EXP_LNKCAP_SLS_2_5GB | 1 << 4);
	assert_int_equal(rd(cfg, EXP + PCI_EXP_LNKSTA, 2),
			 PCI_EXP_LNKSTA_CLS_2_5GB | PCI_EXP_LNKSTA_NLW_X1);
	/* Reserved bytes between and after capabilities, and the extended space. */
	for (unsigned o = 0x100; o < 4096; o++)
		if (rd(cfg, o, 1) != 0)
			fail_msg("extended space byte %#x = %#x", o, rd(cfg, o, 1));
	for (unsigned o = EXP + 0x3c; o < 0x100; o++)
		if (rd(cfg, o, 1) != 0)
			fail_msg("reserved byte %#x = %#x", o, rd(cfg, o, 1));
	pci_config_destroy(cfg);
}

static void test_status_rw1c(void **state)
{
	(void)state;
	struct pci_config *cfg = make_full(false);
	const uint16_t errs = PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_SIG_TARGET_ABORT |
			      PCI_STATUS_DETECTED_PARITY;

	pci_config_status_raise(cfg, errs);
	pci_config_set_intx_status(cfg, true);
	assert_int_equal(rd(cfg, PCI_STATUS, 2), PCI_STATUS_CAP_LIST | PCI_STATUS_INTERRUPT | errs);
	/* Writing 0 keeps RW1C bits; the peer cannot clear interrupt status. */
	wr(cfg, PCI_STATUS, 2, 0);
	assert_int_equal(rd(cfg, PCI_STATUS, 2), PCI_STATUS_CAP_LIST | PCI_STATUS_INTERRUPT | errs);
	/* Writing 1 clears exactly those bits; read-only ones are untouched. */
	wr(cfg, PCI_STATUS, 2, PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_CAP_LIST | PCI_STATUS_INTERRUPT);
	assert_int_equal(rd(cfg, PCI_STATUS, 2), PCI_STATUS_CAP_LIST | PCI_STATUS_INTERRUPT |
			 PCI_STATUS_SIG_TARGET_ABORT | PCI_STATUS_DETECTED_PARITY);
	/* Byte write of the high half clears the rest. */
	wr(cfg, PCI_STATUS + 1, 1, 0xff);
	assert_int_equal(rd(cfg, PCI_STATUS, 2), PCI_STATUS_CAP_LIST | PCI_STATUS_INTERRUPT);
	pci_config_set_intx_status(cfg, false);
	assert_int_equal(rd(cfg, PCI_STATUS, 2), PCI_STATUS_CAP_LIST);
	/* Non-error bits cannot be raised. */
	pci_config_status_raise(cfg, PCI_STATUS_66MHZ);
	assert_int_equal(rd(cfg, PCI_STATUS, 2), PCI_STATUS_CAP_LIST);
	pci_config_destroy(cfg);
}

/* ---- capabilities ---- */

static void test_cap_chain_all_combinations(void **state)
{
	(void)state;
	for (unsigned combo = 0; combo < 8; combo++) {
		struct pci_config_desc d = base_desc();
		bool msi = combo & 1, msix = combo & 2, pcie = combo & 4;
		uint8_t want[4], got[8];
		unsigned nwant = 0, ngot = 0;
		unsigned want_off[4], got_off[8];

		want[nwant] = PCI_CAP_ID_PM, want_off[nwant++] = PM;
		if (msi) {
			d.msi_vectors = 4;
			want[nwant] = PCI_CAP_ID_MSI, want_off[nwant++] = MSI;
		}
		if (msix) {
			d.msix_vectors = 3;
			d.msix_pba_offset = 0x100;
			want[nwant] = PCI_CAP_ID_MSIX, want_off[nwant++] = MSIX;
		}
		if (pcie) {
			d.pcie = true;
			want[nwant] = PCI_CAP_ID_EXP, want_off[nwant++] = EXP;
		}
		struct pci_config *cfg = make(&d);

		assert_int_equal(pci_config_size(cfg), pcie ? 4096 : 256);
		assert_true(rd(cfg, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
		for (unsigned p = rd(cfg, PCI_CAPABILITY_LIST, 1); p; p = rd(cfg, p + PCI_CAP_LIST_NEXT, 1)) {
			if (ngot == ARRAY_SIZE(got))
				fail_msg("combo %u: capability list does not terminate", combo);
			if (p < 0x40 || p > 0xfc || (p & 3))
				fail_msg("combo %u: capability at bad offset %#x", combo, p);
			got_off[ngot] = p;
			got[ngot++] = (uint8_t)rd(cfg, p + PCI_CAP_LIST_ID, 1);
		}
		assert_int_equal(ngot, nwant);
		for (unsigned i = 0; i < nwant; i++) {
			assert_int_equal(got[i], want[i]);
			assert_int_equal(got_off[i], want_off[i]);
			assert_int_equal(pci_config_cap_offset(cfg, want[i]), want_off[i]);
		}
		assert_int_equal(pci_config_cap_offset(cfg, PCI_CAP_ID_MSI), msi ? MSI : 0);
		assert_int_equal(pci_config_cap_offset(cfg, PCI_CAP_ID_MSIX), msix ? MSIX : 0);
		assert_int_equal(pci_config_cap_offset(cfg, PCI_CAP_ID_EXP), pcie ? EXP : 0);
		if (pcie)
			assert_int_equal(rd(cfg, 0x100, 4), 0); /* no extended capabilities */
		pci_config_destroy(cfg);
	}
}

static void test_msix_cap(void **state)
{
	(void)state;
	struct pci_config_desc d = base_desc();
	static const unsigned counts[] = {1, 5, 64, 2048};

	for (size_t i = 0; i < ARRAY_SIZE(counts); i++) {
		d.msix_vectors = counts[i];
		d.msix_bar = 2;
		d.msix_table_offset = 0x1000;
		d.msix_pba_offset = 0x9000;
		struct pci_config *cfg = make(&d);
		assert_int_equal(rd(cfg, MSIX + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_QSIZE, counts[i] - 1);
		assert_int_equal(rd(cfg, MSIX + PCI_MSIX_TABLE, 4), 0x1000 | 2);
		assert_int_equal(rd(cfg, MSIX + PCI_MSIX_PBA, 4), 0x9000 | 2);
		pci_config_destroy(cfg);
	}

	struct pci_config *cfg = make(&d);
	/* Table size is read-only; enable and function mask are writable. */
	assert_int_equal(wr(cfg, MSIX + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_MASKALL), PCI_CFG_EV_MSIX);
	assert_true(pci_config_msix_masked(cfg));
	assert_false(pci_config_msix_enabled(cfg));
	assert_int_equal(wr(cfg, MSIX + PCI_MSIX_FLAGS, 2, 0xffff), PCI_CFG_EV_MSIX);
	assert_true(pci_config_msix_enabled(cfg));
	assert_int_equal(rd(cfg, MSIX + PCI_MSIX_FLAGS, 2),
			 PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL | 2047);
	assert_int_equal(wr(cfg, MSIX + PCI_MSIX_FLAGS + 1, 1, 0x80), PCI_CFG_EV_MSIX);
	assert_false(pci_config_msix_masked(cfg));
	assert_true(pci_config_msix_enabled(cfg));
	/* BIR/offset registers are read-only. */
	assert_int_equal(wr(cfg, MSIX + PCI_MSIX_TABLE, 4, 0), 0);
	assert_int_equal(rd(cfg, MSIX + PCI_MSIX_TABLE, 4), 0x1000 | 2);
	pci_config_destroy(cfg);
}

static void test_msi_cap(void **state)
{
	(void)state;
	struct pci_config_desc d = base_desc();
	d.msi_vectors = 8;
	struct pci_config *cfg = make(&d);
	uint16_t flags = (uint16_t)rd(cfg, MSI + PCI_MSI_FLAGS, 2);

	assert_int_equal(flags, PCI_MSI_FLAGS_64BIT | PCI_MSI_FLAGS_MASKBIT | 3 << 1);
	assert_int_equal(pci_config_msi_vectors_enabled(cfg), 0);
	/* MME = 4 vectors, enabled. */
	assert_int_equal(wr(cfg, MSI + PCI_MSI_FLAGS, 2, 2 << 4 | PCI_MSI_FLAGS_ENABLE), PCI_CFG_EV_MSI);
	assert_true(pci_config_msi_enabled(cfg));
	assert_int_equal(pci_config_msi_vectors_enabled(cfg), 4);
	/* MME above MMC is clamped; MMC and the capability bits stay. */
	wr(cfg, MSI + PCI_MSI_FLAGS, 2, 0xffff);
	assert_int_equal(rd(cfg, MSI + PCI_MSI_FLAGS, 2), flags | 3 << 4 | PCI_MSI_FLAGS_ENABLE);
	assert_int_equal(pci_config_msi_vectors_enabled(cfg), 8);
	/* Address/data: events; dword alignment of the address. */
	assert_int_equal(wr(cfg, MSI + PCI_MSI_ADDRESS_LO, 4, 0xfee00003), PCI_CFG_EV_MSI);
	assert_int_equal(rd(cfg, MSI + PCI_MSI_ADDRESS_LO, 4), 0xfee00000);
	assert_int_equal(wr(cfg, MSI + PCI_MSI_DATA_64, 2, 0x4041), PCI_CFG_EV_MSI);
	assert_int_equal(wr(cfg, MSI + PCI_MSI_DATA_64, 2, 0x4041), 0);
	/* Mask bits exist for the 8 vectors only. */
	assert_int_equal(wr(cfg, MSI + PCI_MSI_MASK_64, 4, 0xffff0005), PCI_CFG_EV_MSI);
	assert_int_equal(rd(cfg, MSI + PCI_MSI_MASK_64, 4), 0x05);
	assert_true(pci_config_msi_vector_masked(cfg, 0));
	assert_false(pci_config_msi_vector_masked(cfg, 1));
	assert_true(pci_config_msi_vector_masked(cfg, 8));
	/* Pending bits: set by the library, read-only to the peer. */
	pci_config_msi_set_pending(cfg, 2, true);
	pci_config_msi_set_pending(cfg, 9, true); /* past the vectors: ignored */
	assert_int_equal(wr(cfg, MSI + PCI_MSI_PENDING_64, 4, 0), 0);
	assert_int_equal(rd(cfg, MSI + PCI_MSI_PENDING_64, 4), 1u << 2);
	pci_config_msi_set_pending(cfg, 2, false);
	assert_int_equal(rd(cfg, MSI + PCI_MSI_PENDING_64, 4), 0);
	/* Disable. */
	assert_int_equal(wr(cfg, MSI + PCI_MSI_FLAGS, 1, 0), PCI_CFG_EV_MSI);
	assert_int_equal(pci_config_msi_vectors_enabled(cfg), 0);
	pci_config_destroy(cfg);
}

static void test_pm_d3hot(void **state)
{
	(void)state;
	struct pci_config *cfg = make_full(false);
	const unsigned pmcsr = PM + PCI_PM_CTRL;

	assert_int_equal(rd(cfg, pmcsr, 2), PCI_PM_CTRL_NO_SOFT_RESET);
	assert_int_equal(wr(cfg, pmcsr, 2, 3), PCI_CFG_EV_POWER);
	assert_int_equal(pci_config_power_state(cfg), 3);
	assert_int_equal(rd(cfg, pmcsr, 2), PCI_PM_CTRL_NO_SOFT_RESET | 3);
	/* D1/D2 are unsupported: the write is discarded. */
	assert_int_equal(wr(cfg, pmcsr, 2, 1), 0);
	assert_int_equal(pci_config_power_state(cfg), 3);
	assert_int_equal(wr(cfg, pmcsr, 1, 2), 0);
	assert_int_equal(pci_config_power_state(cfg), 3);
	/* NoSoftReset, PME bits are read-only. */
	assert_int_equal(wr(cfg, pmcsr, 2, 0xffff), 0);
	assert_int_equal(rd(cfg, pmcsr, 2), PCI_PM_CTRL_NO_SOFT_RESET | 3);
	assert_int_equal(wr(cfg, pmcsr, 2, 0), PCI_CFG_EV_POWER);
	assert_int_equal(pci_config_power_state(cfg), 0);
	/* The library moves it without an event. */
	pci_config_set_power_state(cfg, 3);
	assert_int_equal(rd(cfg, pmcsr, 2), PCI_PM_CTRL_NO_SOFT_RESET | 3);
	pci_config_set_power_state(cfg, 2); /* rejected */
	assert_int_equal(pci_config_power_state(cfg), 3);
	pci_config_destroy(cfg);
}

static void test_flr(void **state)
{
	(void)state;
	struct pci_config *cfg = make_full(true);
	const unsigned devctl = EXP + PCI_EXP_DEVCTL;
	uint16_t init = (uint16_t)rd(cfg, devctl, 2);

	assert_int_equal(init, PCI_EXP_DEVCTL_RELAX_EN | PCI_EXP_DEVCTL_NOSNOOP_EN |
			       PCI_EXP_DEVCTL_READRQ_512B);
	assert_int_equal(wr(cfg, devctl, 2, init | PCI_EXP_DEVCTL_BCR_FLR), PCI_CFG_EV_FLR);
	assert_int_equal(rd(cfg, devctl, 2), init);
	/* As a byte write of the high half, together with other bits. */
	assert_int_equal(wr(cfg, devctl + 1, 1, 0x80 | 0x10), PCI_CFG_EV_FLR);
	assert_int_equal(rd(cfg, devctl, 2), (init & 0xff) | 0x1000);
	/* Without the bit: no FLR. */
	assert_int_equal(wr(cfg, devctl, 2, PCI_EXP_DEVCTL_CERE), 0);
	assert_int_equal(rd(cfg, devctl, 2), PCI_EXP_DEVCTL_CERE);
	/* A write ending just before the FLR byte does not count, whatever follows it. */
	uint8_t flr_bits[8];
	uint32_t ev = 0xffffffff;
	memset(flr_bits, 0x80, sizeof(flr_bits));
	assert_int_equal(pci_config_write(cfg, devctl - 3, flr_bits, 4, &ev), 0);
	assert_int_equal(ev, 0);
	pci_config_destroy(cfg);

	/* Conventional PCI: no PCIe capability, nothing at that offset. */
	cfg = make_full(false);
	assert_int_equal(wr(cfg, devctl, 2, 0xffff), 0);
	assert_int_equal(rd(cfg, devctl, 2), 0);
	pci_config_destroy(cfg);
}

static void test_pcie_devsta_rw1c(void **state)
{
	(void)state;
	struct pci_config *cfg = make_full(true);
	uint8_t img[4096];
	const unsigned devsta = EXP + PCI_EXP_DEVSTA;

	/* Error bits arrive through a migrated image (library-writable). */
	pci_config_save(cfg, img, sizeof(img));
	img[devsta] = PCI_EXP_DEVSTA_CED | PCI_EXP_DEVSTA_URD;
	assert_int_equal(pci_config_load(cfg, img, sizeof(img)), 0);
	wr(cfg, devsta, 2, PCI_EXP_DEVSTA_URD);
	assert_int_equal(rd(cfg, devsta, 2), PCI_EXP_DEVSTA_CED);
	pci_config_destroy(cfg);
}

static void test_command_events(void **state)
{
	(void)state;
	struct pci_config *cfg = make_full(false);

	assert_int_equal(wr(cfg, PCI_COMMAND, 2, PCI_COMMAND_MASTER), PCI_CFG_EV_COMMAND);
	assert_true(pci_config_bus_master(cfg));
	assert_int_equal(pci_config_command(cfg), PCI_COMMAND_MASTER);
	assert_int_equal(wr(cfg, PCI_COMMAND, 2, PCI_COMMAND_MASTER), 0);
	/* Bits that are not implemented read 0 and change nothing. */
	assert_int_equal(wr(cfg, PCI_COMMAND, 2, PCI_COMMAND_MASTER | PCI_COMMAND_SPECIAL |
			    PCI_COMMAND_INVALIDATE | PCI_COMMAND_FAST_BACK), 0);
	assert_int_equal(pci_config_command(cfg), PCI_COMMAND_MASTER);
	assert_int_equal(wr(cfg, PCI_COMMAND, 2, PCI_COMMAND_MEMORY), PCI_CFG_EV_COMMAND);
	assert_false(pci_config_bus_master(cfg));
	/* Interrupt line is RW with no event. */
	assert_int_equal(wr(cfg, PCI_INTERRUPT_LINE, 1, 11), 0);
	assert_int_equal(rd(cfg, PCI_INTERRUPT_LINE, 1), 11);
	/* One write across command and a BAR reports both. */
	uint8_t buf[16] = {0};
	buf[0] = PCI_COMMAND_IO;  /* at 0x04 */
	buf[12] = 0x10;           /* at 0x10: BAR0 bit 4 (below its 4 KiB size: not decoded) */
	buf[13] = 0x20;           /* 0x2000 */
	uint32_t ev = 0;
	assert_int_equal(pci_config_write(cfg, PCI_COMMAND, buf, sizeof(buf), &ev), 0);
	assert_int_equal(ev, PCI_CFG_EV_COMMAND | PCI_CFG_EV_BAR);
	assert_int_equal(pci_config_bar_addr(cfg, 0), 0x2000);
	pci_config_destroy(cfg);
}

/* ---- access shapes ---- */

static void test_unaligned_access(void **state)
{
	(void)state;
	struct pci_config *cfg = make_full(false);
	uint8_t b[8];

	/* Read 3 bytes straddling vendor and device id. */
	assert_int_equal(pci_config_read(cfg, 1, b, 3), 0);
	assert_int_equal(b[0], 0x12);
	assert_int_equal(b[1], 0xe8);
	assert_int_equal(b[2], 0x11);
	/* Write 2 bytes across device-id high byte (RO) and command low byte (RW). */
	b[0] = 0xaa;
	b[1] = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	uint32_t ev = 0;
	assert_int_equal(pci_config_write(cfg, 3, b, 2, &ev), 0);
	assert_int_equal(ev, PCI_CFG_EV_COMMAND);
	assert_int_equal(rd(cfg, PCI_DEVICE_ID, 2), 0x11e8);
	assert_int_equal(pci_config_command(cfg), PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	/* 5-byte write from the middle of BAR0 into BAR1 (unimplemented). */
	memset(b, 0xff, sizeof(b));
	assert_int_equal(pci_config_write(cfg, PCI_BASE_ADDRESS_0 + 1, b, 5, &ev), 0);
	assert_int_equal(ev, PCI_CFG_EV_BAR);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_0, 4), 0xfffff000);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_1, 4), 0);
	/* Odd-length read of everything from offset 1 matches byte reads. */
	uint8_t all[255];
	assert_int_equal(pci_config_read(cfg, 1, all, sizeof(all)), 0);
	for (unsigned o = 1; o < 256; o++)
		assert_int_equal(all[o - 1], rd(cfg, o, 1));
	/* Last byte of the space is reachable. */
	assert_int_equal(pci_config_read(cfg, 255, b, 1), 0);
	pci_config_destroy(cfg);
}

static void test_out_of_range(void **state)
{
	(void)state;
	struct pci_config *cfg = make_full(true);
	uint8_t before[4096], after[4096], buf[8] = {0xff, 0xff, 0xff, 0xff};
	static const struct { uint64_t off; size_t len; } bad[] = {
		{ 4096, 1 }, { 4095, 2 }, { 4093, 4 }, { 0, 4097 }, { 0, 0 }, { 100, 0 },
		{ UINT64_MAX - 1, 4 }, { UINT64_MAX, 1 }, { UINT64_MAX - 3, 4 },
		{ 1, SIZE_MAX }, { 4096, SIZE_MAX }, { UINT32_MAX + UINT64_C(4), 4 },
	};

	pci_config_save(cfg, before, sizeof(before));
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		uint32_t ev = 0xffffffff;
		/* The oversized lengths never reach the buffer: they fail the check. */
		log_calls = 0;
		assert_int_equal(pci_config_read(cfg, bad[i].off, buf, bad[i].len), -EINVAL);
		assert_int_equal(pci_config_write(cfg, bad[i].off, buf, bad[i].len, &ev), -EINVAL);
		assert_int_equal(ev, 0);
		assert_int_equal(log_calls, 2);
	}
	assert_int_equal(pci_config_read(cfg, 0, NULL, 4), -EINVAL);
	assert_int_equal(pci_config_write(cfg, 0, NULL, 4, NULL), -EINVAL);
	pci_config_save(cfg, after, sizeof(after));
	assert_memory_equal(before, after, sizeof(before));
	/* The edges themselves are fine. */
	assert_int_equal(pci_config_read(cfg, 4092, buf, 4), 0);
	assert_int_equal(pci_config_write(cfg, 4095, buf, 1, NULL), 0);
	pci_config_destroy(cfg);

	/* Conventional: 256 bytes. */
	cfg = make_full(false);
	assert_int_equal(pci_config_read(cfg, 0x100, buf, 4), -EINVAL);
	assert_int_equal(pci_config_read(cfg, 0xfe, buf, 4), -EINVAL);
	assert_int_equal(pci_config_read(cfg, 0xfc, buf, 4), 0);
	pci_config_destroy(cfg);
}

/* ---- descriptor validation ---- */

struct bad_desc {
	const char *what;   /* expected in the log line */
	void (*mutate)(struct pci_config_desc *d);
};

static void bad_vendor(struct pci_config_desc *d) { d->vendor_id = 0xffff; }
static void bad_class(struct pci_config_desc *d) { d->class_code = 0x1000000; }
static void bad_pin(struct pci_config_desc *d) { d->intx_pin = 5; }
static void bar_not_pow2(struct pci_config_desc *d) { d->bar_size[0] = 3000; }
static void bar_too_small(struct pci_config_desc *d) { d->bar_size[0] = 8; }
static void bar32_too_big(struct pci_config_desc *d) { d->bar_size[0] = UINT64_C(1) << 32; }
static void bar64_slot5(struct pci_config_desc *d)
{
	d->bar_size[5] = 4096;
	d->bar_flags[5] = PCI_CFG_BAR_MEM64;
}
static void bar64_overlap(struct pci_config_desc *d) { d->bar_size[3] = 4096; }
static void bar64_overlap_flags(struct pci_config_desc *d) { d->bar_flags[3] = PCI_CFG_BAR_PREFETCH; }
static void bar_flags_unknown(struct pci_config_desc *d) { d->bar_flags[0] = 0x10; }
static void bar_flags_unimpl(struct pci_config_desc *d) { d->bar_flags[1] = PCI_CFG_BAR_PREFETCH; }
static void io_too_big(struct pci_config_desc *d) { d->bar_size[4] = 512; }
static void io_too_small(struct pci_config_desc *d) { d->bar_size[4] = 2; }
static void io_64(struct pci_config_desc *d) { d->bar_flags[4] |= PCI_CFG_BAR_MEM64; }
static void io_prefetch(struct pci_config_desc *d) { d->bar_flags[4] |= PCI_CFG_BAR_PREFETCH; }
static void rom_not_pow2(struct pci_config_desc *d) { d->rom_size = 3 * 4096; }
static void rom_too_small(struct pci_config_desc *d) { d->rom_size = 1024; }
static void rom_too_big(struct pci_config_desc *d) { d->rom_size = 32u << 20; }
static void msi_3(struct pci_config_desc *d) { d->msi_vectors = 3; }
static void msi_64(struct pci_config_desc *d) { d->msi_vectors = 64; }
static void msix_too_many(struct pci_config_desc *d) { d->msix_vectors = 2049; d->bar_size[0] = 65536; }
static void msix_bar_none(struct pci_config_desc *d) { d->msix_vectors = 4; d->msix_bar = 1; }
static void msix_bar_upper(struct pci_config_desc *d) { d->msix_vectors = 4; d->msix_bar = 3; }
static void msix_bar_io(struct pci_config_desc *d) { d->msix_vectors = 4; d->msix_bar = 4; }
static void msix_bar_6(struct pci_config_desc *d) { d->msix_vectors = 4; d->msix_bar = 6; }
static void msix_table_unaligned(struct pci_config_desc *d)
{
	d->msix_vectors = 4;
	d->msix_table_offset = 4;
	d->msix_pba_offset = 0x800;
}
static void msix_pba_unaligned(struct pci_config_desc *d)
{
	d->msix_vectors = 4;
	d->msix_pba_offset = 0x804 + 2;
}
static void msix_table_outside(struct pci_config_desc *d)
{
	d->msix_vectors = 4; /* 64 bytes at 0xfd0 run past the 4 KiB BAR by 16 */
	d->msix_table_offset = 0xfd0;
	d->msix_pba_offset = 0;
}
static void msix_table_wraps(struct pci_config_desc *d)
{
	d->msix_vectors = 4;
	d->msix_table_offset = 0xfffffff8;
	d->msix_pba_offset = 0x800;
}
static void msix_pba_outside(struct pci_config_desc *d)
{
	d->msix_vectors = 4;
	d->msix_table_offset = 0;
	d->msix_pba_offset = 0x1000;
}
static void msix_overlap(struct pci_config_desc *d)
{
	d->msix_vectors = 4; /* table 0..0x40, PBA at 0x38 */
	d->msix_table_offset = 0;
	d->msix_pba_offset = 0x38;
}

static const struct bad_desc bad_descs[] = {
	{ "vendor_id", bad_vendor },
	{ "class_code", bad_class },
	{ "intx_pin", bad_pin },
	{ "bar_size[0]", bar_not_pow2 },
	{ "bar_size[0]", bar_too_small },
	{ "bar_size[0]", bar32_too_big },
	{ "bar_flags[5]", bar64_slot5 },
	{ "bar_size[3]", bar64_overlap },
	{ "bar_flags[3]", bar64_overlap_flags },
	{ "bar_flags[0]", bar_flags_unknown },
	{ "bar_flags[1]", bar_flags_unimpl },
	{ "bar_size[4]", io_too_big },
	{ "bar_size[4]", io_too_small },
	{ "bar_flags[4]", io_64 },
	{ "bar_flags[4]", io_prefetch },
	{ "rom_size", rom_not_pow2 },
	{ "rom_size", rom_too_small },
	{ "rom_size", rom_too_big },
	{ "msi_vectors", msi_3 },
	{ "msi_vectors", msi_64 },
	{ "msix_vectors", msix_too_many },
	{ "msix_bar", msix_bar_none },
	{ "msix_bar", msix_bar_upper },
	{ "msix_bar", msix_bar_io },
	{ "msix_bar", msix_bar_6 },
	{ "msix_table_offset", msix_table_unaligned },
	{ "msix_pba_offset", msix_pba_unaligned },
	{ "msix_table_offset", msix_table_outside },
	{ "msix_table_offset", msix_table_wraps },
	{ "msix_pba_offset", msix_pba_outside },
	{ "overlaps", msix_overlap },
};

static void test_invalid_descs(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad_descs); i++) {
		struct pci_config_desc d = base_desc();
		struct pci_config *cfg = NULL;

		bad_descs[i].mutate(&d);
		last_log[0] = 0;
		log_calls = 0;
		if (pci_config_create(&d, &cfg) != -EINVAL)
			fail_msg("case %zu (%s) was accepted", i, bad_descs[i].what);
		assert_null(cfg);
		assert_int_equal(log_calls, 1);
		if (!strstr(last_log, bad_descs[i].what) || !strstr(last_log, "test"))
			fail_msg("case %zu: log line \"%s\" does not name %s", i, last_log,
				 bad_descs[i].what);
	}
	struct pci_config *cfg = NULL;
	assert_int_equal(pci_config_create(NULL, &cfg), -EINVAL);
	struct pci_config_desc d = base_desc();
	assert_int_equal(pci_config_create(&d, NULL), -EINVAL);
}

/* The limits themselves are accepted, so the checks above are not too wide. */
static void test_valid_edges(void **state)
{
	(void)state;
	struct pci_config_desc d = base_desc();
	struct pci_config *cfg;

	d.bar_size[0] = UINT64_C(1) << 31;  /* largest 32-bit BAR */
	d.bar_size[1] = 16;                  /* smallest memory BAR */
	d.bar_size[2] = UINT64_C(1) << 63;   /* largest 64-bit BAR */
	d.bar_flags[4] = PCI_CFG_BAR_MEM64;
	d.rom_size = 16u << 20;
	d.msi_vectors = 32;
	d.bar_size[4] = 65536;               /* 64-bit BAR in slot 4 */
	d.msix_vectors = 2048;               /* table 32 KiB; PBA 256 bytes ending at the BAR end */
	d.msix_bar = 4;
	d.msix_table_offset = 0;
	d.msix_pba_offset = 65536 - 256;
	d.intx_pin = 4;
	d.pcie = true;
	cfg = make(&d);
	uint8_t ones[4] = {0xff, 0xff, 0xff, 0xff};
	pci_config_write(cfg, PCI_BASE_ADDRESS_0, ones, 4, NULL);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_0, 4), 0x80000000);
	pci_config_write(cfg, PCI_BASE_ADDRESS_1, ones, 4, NULL);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_1, 4), 0xfffffff0);
	pci_config_write(cfg, PCI_BASE_ADDRESS_3, ones, 4, NULL);
	assert_int_equal(rd(cfg, PCI_BASE_ADDRESS_3, 4), 0x80000000);
	assert_int_equal(rd(cfg, MSI + PCI_MSI_FLAGS, 2) & PCI_MSI_FLAGS_QMASK, 5 << 1);
	wr(cfg, MSI + PCI_MSI_MASK_64, 4, 0xffffffff);
	assert_int_equal(rd(cfg, MSI + PCI_MSI_MASK_64, 4), 0xffffffff);
	pci_config_destroy(cfg);

	/* I/O limits, and a zeroed descriptor (no BARs, no caps but PM). */
	d = base_desc();
	d.bar_size[4] = 256;
	pci_config_destroy(make(&d));
	d.bar_size[4] = 4;
	pci_config_destroy(make(&d));
	struct pci_config_desc zero = {0};
	cfg = make(&zero);
	assert_int_equal(rd(cfg, PCI_CAPABILITY_LIST, 1), PM);
	assert_int_equal(rd(cfg, PM + PCI_CAP_LIST_NEXT, 1), 0);
	pci_config_destroy(cfg);
}

/* ---- migration and reset ---- */

static void program(struct pci_config *cfg)
{
	wr(cfg, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	wr(cfg, PCI_BASE_ADDRESS_0, 4, 0xfebf0000);
	wr(cfg, PCI_BASE_ADDRESS_2, 4, 0xc0000000);
	wr(cfg, PCI_BASE_ADDRESS_3, 4, 0x1);
	wr(cfg, PCI_INTERRUPT_LINE, 1, 10);
	wr(cfg, MSI + PCI_MSI_ADDRESS_LO, 4, 0xfee00000);
	wr(cfg, MSI + PCI_MSI_FLAGS, 2, 1 << 4 | PCI_MSI_FLAGS_ENABLE);
	wr(cfg, MSIX + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_MASKALL);
	wr(cfg, PM + PCI_PM_CTRL, 2, 3);
	pci_config_status_raise(cfg, PCI_STATUS_REC_MASTER_ABORT);
	pci_config_msi_set_pending(cfg, 1, true);
}

static void test_save_load_roundtrip(void **state)
{
	(void)state;
	struct pci_config *src = make_full(true), *dst = make_full(true);
	uint8_t img[4096], img2[4096], fresh[4096];

	program(src);
	assert_int_equal(pci_config_save(src, img, sizeof(img)), 4096);
	assert_int_equal(pci_config_save(dst, fresh, sizeof(fresh)), 4096);
	assert_memory_not_equal(img, fresh, sizeof(img));
	assert_int_equal(pci_config_load(dst, img, sizeof(img)), 0);
	assert_int_equal(pci_config_save(dst, img2, sizeof(img2)), 4096);
	assert_memory_equal(img, img2, sizeof(img));
	assert_true(pci_config_bus_master(dst));
	assert_int_equal(pci_config_bar_addr(dst, 2), UINT64_C(0x1c0000000));
	assert_int_equal(pci_config_power_state(dst), 3);
	assert_int_equal(pci_config_msi_vectors_enabled(dst), 2);
	assert_true(pci_config_msix_masked(dst));
	pci_config_destroy(dst);

	/* Rejections leave the target unchanged. */
	dst = make_full(true);
	log_calls = 0;
	assert_int_equal(pci_config_save(src, img2, 4095), -EINVAL);
	assert_int_equal(pci_config_load(dst, img, 4095), -EINVAL);
	assert_int_equal(pci_config_load(dst, img, 256), -EINVAL);
	assert_int_equal(pci_config_load(dst, NULL, 4096), -EINVAL);
	assert_int_equal(log_calls, 4);

	static const struct { unsigned off; uint8_t xor_bits; } corrupt[] = {
		{ PCI_DEVICE_ID, 0x01 },               /* another device */
		{ PCI_BASE_ADDRESS_0 + 1, 0x08 },      /* BAR size bits */
		{ PCI_BASE_ADDRESS_2, 0x04 },          /* BAR type */
		{ MSIX + PCI_MSIX_FLAGS, 0x01 },       /* table size */
		{ EXP + PCI_EXP_DEVCTL + 1, 0x80 },    /* FLR bit never stored */
		{ PCI_COMMAND, PCI_COMMAND_SPECIAL },  /* unimplemented command bit */
		{ 0x200, 0x01 },                       /* extended space */
		{ PM + PCI_PM_CTRL, 0x02 },            /* D3hot -> D1: unsupported state */
		{ MSI + PCI_MSI_FLAGS, 0x60 },         /* MME 1 -> 7 > MMC 3 */
	};
	uint8_t before[4096];
	pci_config_save(dst, before, sizeof(before));
	for (size_t i = 0; i < ARRAY_SIZE(corrupt); i++) {
		memcpy(img2, img, sizeof(img));
		img2[corrupt[i].off] ^= corrupt[i].xor_bits;
		if (pci_config_load(dst, img2, sizeof(img2)) != -EINVAL)
			fail_msg("corruption %zu at %#x accepted", i, corrupt[i].off);
		uint8_t now[4096];
		pci_config_save(dst, now, sizeof(now));
		assert_memory_equal(before, now, sizeof(now));
	}
	pci_config_destroy(dst);

	/* A conventional device refuses a PCIe image. */
	dst = make_full(false);
	assert_int_equal(pci_config_load(dst, img, sizeof(img)), -EINVAL);
	pci_config_destroy(dst);
	pci_config_destroy(src);
}

static void test_reset(void **state)
{
	(void)state;
	struct pci_config *cfg = make_full(true);
	uint8_t fresh[4096], now[4096];

	pci_config_save(cfg, fresh, sizeof(fresh));
	program(cfg);
	uint8_t ones[8];
	memset(ones, 0xff, sizeof(ones));
	pci_config_write(cfg, PCI_ROM_ADDRESS, ones, 4, NULL);
	pci_config_write(cfg, EXP + PCI_EXP_DEVCTL, ones, 2, NULL);
	pci_config_save(cfg, now, sizeof(now));
	assert_memory_not_equal(fresh, now, sizeof(now));
	pci_config_reset(cfg);
	pci_config_save(cfg, now, sizeof(now));
	assert_memory_equal(fresh, now, sizeof(now));
	assert_int_equal(pci_config_power_state(cfg), 0);
	assert_false(pci_config_bus_master(cfg));
	assert_false(pci_config_msi_enabled(cfg));
	assert_int_equal(pci_config_bar_addr(cfg, 0), 0);
	pci_config_destroy(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_power_on),
		cmocka_unit_test(test_bar_mem32_sizing),
		cmocka_unit_test(test_bar_mem64_sizing),
		cmocka_unit_test(test_bar_io_sizing),
		cmocka_unit_test(test_bar_rom_sizing),
		cmocka_unit_test(test_bar_unimplemented),
		cmocka_unit_test(test_readonly_fields),
		cmocka_unit_test(test_status_rw1c),
		cmocka_unit_test(test_cap_chain_all_combinations),
		cmocka_unit_test(test_msix_cap),
		cmocka_unit_test(test_msi_cap),
		cmocka_unit_test(test_pm_d3hot),
		cmocka_unit_test(test_flr),
		cmocka_unit_test(test_pcie_devsta_rw1c),
		cmocka_unit_test(test_command_events),
		cmocka_unit_test(test_unaligned_access),
		cmocka_unit_test(test_out_of_range),
		cmocka_unit_test(test_invalid_descs),
		cmocka_unit_test(test_valid_edges),
		cmocka_unit_test(test_save_load_roundtrip),
		cmocka_unit_test(test_reset),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
