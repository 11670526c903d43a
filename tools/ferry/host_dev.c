/*
 * ferry host: attaching the devices. Each --device KIND:SOCKET becomes a
 * client connection with all of guest memory DMA-mapped at iova 0 (with
 * the memfd, so the device maps it too), its migration flags read, and a
 * place in the dirty view under the auto policy (device logging when it
 * can, all-dirty otherwise).
 */
#include "host.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/vfio.h>

#include <ferry/client.h>
#include <ferry/client_migration.h>

/* A device server started just before us may not have its socket yet. */
#define CONNECT_WAIT_MS 10000
#define DEVICE_TIMEOUT_MS 30000

static const char *const kind_names[] = {
	[HOST_KIND_NONE] = "none",
	[HOST_KIND_DMA] = "dma",
	[HOST_KIND_VRAM] = "vram",
};

const char *host_kind_str(enum host_kind k)
{
	return (unsigned)k < sizeof(kind_names) / sizeof(kind_names[0]) ? kind_names[k] : "?";
}

int host_kind_parse(const char *s, enum host_kind *out)
{
	for (unsigned i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++) {
		if (!strcmp(s, kind_names[i])) {
			*out = (enum host_kind)i;
			return 0;
		}
	}
	return -EINVAL;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static int connect_device(struct host_device *d)
{
	struct ferry_client_options opts = {.name = d->name, .timeout_ms = DEVICE_TIMEOUT_MS};
	int rc = -ENOENT;

	for (int waited = 0; waited <= CONNECT_WAIT_MS; waited += 20) {
		if (access(d->socket, F_OK) == 0) {
			rc = ferry_client_connect(d->socket, &opts, &d->c);
			if (rc == 0)
				return 0;
			if (rc != -ECONNREFUSED && rc != -ENOENT)
				break;
		}
		sleep_ms(20);
	}
	fprintf(stderr, "ferry host: %s: cannot attach the device at %s: %s\n", d->name,
		d->socket, strerror(-rc));
	return rc;
}

static int attach_one(struct host *h, struct host_device *d)
{
	int rc = connect_device(d);

	if (rc < 0)
		return rc;
	rc = ferry_client_dma_map(d->c, 0, h->mem_size,
				  VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, h->mem_fd, 0,
				  h->mem);
	if (rc < 0) {
		fprintf(stderr, "ferry host: %s: mapping guest memory into the device: %s\n",
			d->name, strerror(-rc));
		return rc;
	}
	if (ferry_client_mig_flags(d->c, &d->mig_flags) < 0) {
		fprintf(stderr, "ferry host: %s: the device cannot migrate (no MIGRATION "
			"feature); a migration of this host will fail\n", d->name);
		d->mig_flags = 0;
	}
	rc = dirty_view_add_device(h->dv, d->c, 0, h->mem_size, DIRTY_POLICY_AUTO);
	if (rc < 0) {
		fprintf(stderr, "ferry host: %s: dirty tracking setup: %s\n", d->name,
			strerror(-rc));
		return rc;
	}
	d->has_dirty_logging = rc == DIRTY_PROVIDER_DEVICE_LOGGING;
	return 0;
}

int host_devices_attach(struct host *h)
{
	h->ndev = h->opt.ndev;
	for (unsigned i = 0; i < h->ndev; i++) {
		struct host_device *d = &h->dev[i];
		int rc;

		d->index = i;
		d->kind = h->opt.dev[i].kind;
		snprintf(d->socket, sizeof(d->socket), "%s", h->opt.dev[i].socket);
		snprintf(d->name, sizeof(d->name), "dev%u-%s", i, host_kind_str(d->kind));
		rc = attach_one(h, d);
		if (rc < 0)
			return rc;
	}
	return 0;
}

void host_devices_detach(struct host *h)
{
	for (unsigned i = 0; i < h->ndev; i++) {
		ferry_client_close(h->dev[i].c);
		h->dev[i].c = NULL;
	}
}

void host_engine_devices(const struct host *h, struct mig_engine_device *out)
{
	for (unsigned i = 0; i < h->ndev; i++) {
		out[i].c = h->dev[i].c;
		out[i].kind = host_kind_str(h->dev[i].kind);
		out[i].socket = h->dev[i].socket;
	}
}
