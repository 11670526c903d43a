/*
 * ferry-dev-vram: the vram sample device as a vfio-user server.
 *
 *   ferry-dev-vram --socket PATH --size SIZE [--name NAME] [--verbose]
 *
 * SIZE: bytes with an optional K, M or G suffix (powers of 1024), a power of
 * two (regs.h: VRAM_MIN_SIZE..VRAM_MAX_SIZE). Serves one client at a time
 * until SIGTERM or SIGINT.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/device.h>
#include <ferry/device_migration.h>
#include <ferry/log.h>

#include "migration.h"
#include "regs.h"
#include "util/size_arg.h"
#include "vram.h"

static struct ferry_device *running_dev; /* for the signal handler */

static void on_signal(int sig)
{
	(void)sig;
	if (running_dev)
		ferry_device_stop(running_dev); /* async-signal-safe (device.h) */
}

static void usage(FILE *f)
{
	fprintf(f, "usage: ferry-dev-vram --socket PATH --size SIZE [--name NAME] [--verbose]\n"
		   "  --socket PATH, --socket-path=PATH  UNIX socket to listen on\n"
		   "  --size SIZE   VRAM bytes, a power of two, suffix K, M or G (e.g. 256M)\n"
		   "  --name NAME   name for log lines (default: vram)\n"
		   "  --verbose     log at info level\n");
}

static void raise_irq(void *arg, unsigned vector)
{
	ferry_irq_trigger(arg, FERRY_IRQ_MSIX, vector);
}

static int vram_dev_region_access(void *opaque, unsigned region, uint64_t offset, void *buf,
				  uint32_t count, bool is_write)
{
	return vram_region_access(opaque, region, offset, buf, count, is_write);
}

static int vram_dev_reset(void *opaque)
{
	return vram_reset(opaque);
}

static void vram_dev_client_changed(void *opaque, bool attached)
{
	struct vram *v = opaque;

	vram_info(v, "client %s", attached ? "attached" : "detached");
}

static const struct ferry_device_ops vram_device_ops = {
	.size = sizeof(struct ferry_device_ops),
	.region_access = vram_dev_region_access,
	.reset = vram_dev_reset,
	.client_changed = vram_dev_client_changed,
};

static int serve(const char *name, const char *socket_path, uint64_t size)
{
	struct vram *v = NULL;
	struct ferry_device *dev = NULL;
	int rc;

	rc = vram_create(name, size, &v);
	if (rc < 0)
		return rc;

	struct ferry_mmap_area vram_area = { .offset = 0, .size = size };
	struct ferry_device_info info = {
		.name = name,
		.id = {
			.vendor_id = VRAM_PCI_VENDOR_ID,
			.device_id = VRAM_PCI_DEVICE_ID,
			.subsys_vendor_id = VRAM_PCI_SUBSYS_VID,
			.subsys_id = VRAM_PCI_SUBSYS_ID,
			.revision = VRAM_PCI_REVISION,
			.class_code = VRAM_PCI_CLASS,
		},
		.irq_count = { [FERRY_IRQ_MSIX] = VRAM_MSIX_VECTORS },
		.msix_bar = VRAM_BAR_REGS,
		.msix_table_offset = VRAM_MSIX_TABLE_OFFSET,
		.msix_pba_offset = VRAM_MSIX_PBA_OFFSET,
		.pcie = true,
		.ops = &vram_device_ops,
		.opaque = v,
	};
	for (unsigned i = 0; i < FERRY_PCI_NUM_REGIONS; i++)
		info.regions[i].mmap_fd = -1;
	info.regions[VRAM_BAR_REGS].size = VRAM_BAR_REGS_SIZE;
	info.regions[VRAM_BAR_REGS].flags = FERRY_REGION_READ | FERRY_REGION_WRITE;
	info.regions[VRAM_BAR_VRAM] = (struct ferry_region){
		.size = size,
		.flags = FERRY_REGION_READ | FERRY_REGION_WRITE | FERRY_BAR_MEM64 |
			 FERRY_BAR_PREFETCH,
		.mmap_fd = v->memfd, /* duplicated by the library */
		.mmap_offset = 0,
		.areas = &vram_area,
		.nr_areas = 1,
	};

	rc = ferry_device_create(&info, &dev);
	if (rc < 0)
		goto out_vram;
	v->raise_irq = raise_irq;
	v->irq_arg = dev;
	rc = ferry_device_set_migration(dev, &vram_migration_ops);
	if (rc < 0)
		goto out_dev;
	rc = ferry_device_listen(dev, socket_path);
	if (rc < 0)
		goto out_dev;

	running_dev = dev;
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	ferry_log(FERRY_LOG_INFO, "%s: %llu MiB of VRAM, listening on %s", name,
		  (unsigned long long)(size >> 20), socket_path);
	rc = ferry_device_run(dev);

	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	running_dev = NULL;
out_dev:
	ferry_device_destroy(dev); /* stops the message loop before the model goes */
out_vram:
	vram_destroy(v);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "socket-path", required_argument, NULL, 's' },
		{ "size", required_argument, NULL, 'z' },
		{ "name", required_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *socket_path = NULL, *name = "vram";
	uint64_t size = 0;
	int c;

	while ((c = getopt_long(argc, argv, "s:z:n:vh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			socket_path = optarg;
			break;
		case 'z':
			if (parse_size_arg(optarg, &size) < 0) {
				fprintf(stderr, "ferry-dev-vram: bad --size '%s'\n", optarg);
				return 2;
			}
			break;
		case 'n':
			name = optarg;
			break;
		case 'v':
			ferry_log_set_level(FERRY_LOG_INFO);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!socket_path || !size || optind != argc) {
		usage(stderr);
		return 2;
	}
	int rc = serve(name, socket_path, size);

	if (rc < 0) {
		fprintf(stderr, "ferry-dev-vram: %s\n", strerror(-rc));
		return 1;
	}
	return 0;
}
