/*
 * ferry info: everything a vfio-user device offers, gathered once into a
 * report (info.c), then printed as text (info_text.c) or JSON (info_json.c)
 * from the same data, so both outputs always say the same thing.
 *
 * A query the device refuses is recorded with its errno and shown in place;
 * feature probes that fail mean "not supported", not an error.
 */
#ifndef FERRY_TOOL_INFO_H
#define FERRY_TOOL_INFO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <ferry/client.h>

#include "pci_decode.h"

#define INFO_CONFIG_MAX 4096

struct info_region {
	int err;                        /* 0, or the query's negative errno */
	const struct ferry_region_desc *d; /* owned by the client */
};

struct info_irq {
	int err;
	struct ferry_irq_desc d;
};

/* A feature and whether the device supports it; err is the probe's result. */
struct info_features {
	int mig_err;
	uint64_t mig_flags;
	int state_err;
	uint32_t state;
	int log_start_err, log_stop_err, log_report_err;
	int lp_entry_err, lp_wakeup_err, lp_exit_err;
	int data_size_err;
	uint64_t data_size;
	bool precopy_info_negotiated;
	int precopy_info_err;
};

struct info_report {
	const char *socket;
	struct ferry_server_caps caps;
	struct ferry_device_desc dev;

	int cfg_err;                    /* reading the config region */
	uint8_t cfg[INFO_CONFIG_MAX];
	size_t cfg_len;
	bool has_pci;                   /* cfg decoded into pci */
	struct pci_decoded pci;

	struct info_region *regions;    /* dev.num_regions */
	struct info_irq *irqs;          /* dev.num_irqs */
	struct info_features feat;
	unsigned failures;              /* queries that failed (not feature probes) */
};

/* Fills @r from the connected client. Returns 0 or -ENOMEM; query failures
 * are recorded in the report. */
int info_gather(struct ferry_client *c, const char *socket, struct info_report *r);
void info_report_free(struct info_report *r);

void info_print_text(const struct info_report *r, FILE *out);
/* Returns 0 or -ENOMEM. */
int info_print_json(const struct info_report *r, FILE *out);

/* Names shared by both outputs. */
const char *info_region_name(unsigned index, char *buf, size_t len);
const char *info_irq_name(unsigned index, char *buf, size_t len);
/* "32-bit memory", "64-bit memory, prefetchable", "I/O", ... or NULL. */
const char *info_bar_kind(const struct info_report *r, unsigned index, char *buf, size_t len);

/* The ferry info subcommand. */
int cmd_info(int argc, char **argv);

#endif
