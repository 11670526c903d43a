/*
 * ferry-dev-dma: the sample DMA engine as a vfio-user server.
 *
 *   ferry-dev-dma --socket PATH [-v]
 *   ferry-dev-dma --socket-path=PATH        (vfio-user backend convention)
 *   ferry-dev-dma --fd=FDNUM                (same: an already connected socket)
 *
 * Serves one client at a time on PATH until SIGTERM or SIGINT, then exits 0;
 * with only --fd, until that client leaves. Migratable: STOP_COPY | P2P |
 * PRE_COPY (migration.h).
 * Does not daemonize; logs go to stderr (-v: info, -vv: debug; or FERRY_LOG).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/device.h>
#include <ferry/device_migration.h>
#include <ferry/log.h>

#include "engine.h"
#include "migration.h"
#include "regs.h"
#include "scratch.h"

#define DEV_NAME "ferry-dev-dma"

struct dma_server {
	struct ferry_device *dev;
	struct dma_engine *engine;
	struct dma_scratch scratch;
	struct dma_mig mig;
};

/* The device the signal handler stops; set before the handlers go in. */
static struct ferry_device *volatile stop_target;

static void on_signal(int sig)
{
	(void)sig;
	if (stop_target)
		ferry_device_stop(stop_target);
}

/* ---- device callbacks (message thread) ---- */

static int dma_region_access(void *opaque, unsigned region, uint64_t offset, void *buf,
			     uint32_t count, bool is_write)
{
	struct dma_server *s = opaque;

	switch (region) {
	case DMA_BAR_REGS:
		return dma_engine_mmio(s->engine, offset, buf, count, is_write);
	case DMA_BAR_SCRATCH:
		return dma_scratch_access(&s->scratch, offset, buf, count, is_write);
	default:
		ferry_log(FERRY_LOG_WARN, "%s: access to region %u, which has no registers",
			  DEV_NAME, region);
		return -EINVAL;
	}
}

/* DEVICE_RESET, FLR or ferry_device_reset(): power-on registers, and the
 * migration state is RUNNING again (device_migration.h, "Reset"). */
static int dma_reset(void *opaque)
{
	struct dma_server *s = opaque;

	dma_engine_reset(s->engine);
	dma_mig_reset(&s->mig);
	return 0;
}

static void dma_mapped(void *opaque, uint64_t iova, uint64_t size, uint32_t prot)
{
	struct dma_server *s = opaque;

	(void)prot;
	dma_engine_dma_mapped(s->engine, iova, size);
}

static void dma_unmapping(void *opaque, uint64_t iova, uint64_t size)
{
	struct dma_server *s = opaque;

	dma_engine_dma_unmapping(s->engine, iova, size);
}

/* The guest that programmed the ring is gone and its memory unmapped: go
 * back to power-on state rather than halt on the next doorbell. The scratch
 * BAR keeps its bytes, as device memory does. */
static void dma_client_changed(void *opaque, bool attached)
{
	struct dma_server *s = opaque;

	ferry_log(FERRY_LOG_INFO, "%s: client %s", DEV_NAME, attached ? "attached" : "detached");
	if (!attached)
		dma_engine_reset(s->engine);
}

/* The guest quiesced the device before asking for low power; pausing the
 * engine as well makes "no DMA, no interrupt while low" hold regardless. */
static void dma_power_changed(void *opaque, bool low_power)
{
	struct dma_server *s = opaque;

	ferry_log(FERRY_LOG_INFO, "%s: %s low power", DEV_NAME, low_power ? "entering" : "leaving");
	dma_engine_pause(s->engine, DMA_PAUSE_POWER, low_power);
}

/* ---- migration callbacks (message thread); see migration.h ---- */

static int dma_mig_transition_op(void *opaque, enum ferry_mig_state from,
				 enum ferry_mig_state to, bool *restored)
{
	struct dma_server *s = opaque;

	return dma_mig_transition(&s->mig, from, to, restored);
}

static ssize_t dma_mig_save_op(void *opaque, void *buf, size_t len)
{
	struct dma_server *s = opaque;

	return dma_mig_save(&s->mig, buf, len);
}

static int dma_mig_load_op(void *opaque, const void *buf, size_t len)
{
	struct dma_server *s = opaque;

	return dma_mig_load(&s->mig, buf, len);
}

static int dma_mig_stop_copy_size_op(void *opaque, uint64_t *bytes)
{
	struct dma_server *s = opaque;

	return dma_mig_stop_copy_size(&s->mig, bytes);
}

static int dma_mig_precopy_info_op(void *opaque, uint64_t *initial_bytes, uint64_t *dirty_bytes)
{
	struct dma_server *s = opaque;

	return dma_mig_precopy_info(&s->mig, initial_bytes, dirty_bytes);
}

/* ---- setup ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " DEV_NAME " --socket PATH [-v]...\n"
		"       " DEV_NAME " --socket-path=PATH | --fd=FDNUM [-v]...\n"
		"A sample vfio-user PCI device: a descriptor-ring DMA engine.\n"
		"  --socket, --socket-path PATH  UNIX socket to listen on\n"
		"  --fd FDNUM                    serve this connected socket (exit when it closes)\n"
		"  -v, --verbose                 more log lines (repeat for debug)\n"
		"  -h, --help                    this text\n");
}

struct args {
	const char *socket_path; /* NULL: none */
	int fd;                  /* -1: none */
};

static int parse_fd(const char *s, int *fd)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > INT32_MAX)
		return -EINVAL;
	*fd = (int)v;
	return 0;
}

static int parse_args(int argc, char **argv, struct args *a)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"socket-path", required_argument, NULL, 's'},
		{"fd", required_argument, NULL, 'f'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int verbose = 0, c;

	*a = (struct args){ .socket_path = NULL, .fd = -1 };
	while ((c = getopt_long(argc, argv, "s:vh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			a->socket_path = optarg;
			break;
		case 'f':
			if (parse_fd(optarg, &a->fd) < 0) {
				fprintf(stderr, DEV_NAME ": --fd %s: not a file descriptor number\n",
					optarg);
				return -EINVAL;
			}
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc || (!a->socket_path && a->fd < 0)) {
		usage(stderr);
		return -EINVAL;
	}
	if (verbose)
		ferry_log_set_level(verbose > 1 ? FERRY_LOG_DEBUG : FERRY_LOG_INFO);
	return 0;
}

static const struct ferry_mmap_area scratch_areas[] = {
	{ .offset = 0, .size = DMA_BAR_SCRATCH_SIZE },
};

static const struct ferry_device_ops dma_ops = {
	.size = sizeof(struct ferry_device_ops),
	.region_access = dma_region_access,
	.reset = dma_reset,
	.dma_mapped = dma_mapped,
	.dma_unmapping = dma_unmapping,
	.client_changed = dma_client_changed,
	.power_changed = dma_power_changed,
};

static const struct ferry_migration_ops dma_mig_ops = {
	.size = sizeof(struct ferry_migration_ops),
	.flags = DMA_MIG_FLAGS,
	.transition = dma_mig_transition_op,
	.save = dma_mig_save_op,
	.load = dma_mig_load_op,
	.stop_copy_size = dma_mig_stop_copy_size_op,
	.precopy_info = dma_mig_precopy_info_op,
};

static void fill_info(struct dma_server *s, struct ferry_device_info *info)
{
	memset(info, 0, sizeof(*info));
	info->name = DEV_NAME;
	info->id = (struct ferry_pci_id){
		.vendor_id = DMA_PCI_VENDOR_ID,
		.device_id = DMA_PCI_DEVICE_ID,
		.subsys_vendor_id = DMA_PCI_SUBSYS_VID,
		.subsys_id = DMA_PCI_SUBSYS_ID,
		.revision = DMA_PCI_REVISION,
		.class_code = DMA_PCI_CLASS,
	};
	/* A zeroed region would name fd 0 as its backing: say "none". */
	for (unsigned i = 0; i < FERRY_PCI_NUM_REGIONS; i++)
		info->regions[i].mmap_fd = -1;
	info->regions[DMA_BAR_REGS] = (struct ferry_region){
		.size = DMA_BAR_REGS_SIZE,
		.flags = FERRY_REGION_READ | FERRY_REGION_WRITE,
		.mmap_fd = -1,
	};
	info->regions[DMA_BAR_SCRATCH] = (struct ferry_region){
		.size = DMA_BAR_SCRATCH_SIZE,
		.flags = FERRY_REGION_READ | FERRY_REGION_WRITE | FERRY_BAR_MEM64 |
			 FERRY_BAR_PREFETCH,
		.mmap_fd = s->scratch.fd,
		.mmap_offset = 0,
		.areas = scratch_areas,
		.nr_areas = 1,
	};
	info->irq_count[FERRY_IRQ_INTX] = 1;
	info->irq_count[FERRY_IRQ_MSI] = 1;
	info->irq_count[FERRY_IRQ_MSIX] = DMA_MSIX_VECTORS;
	info->msix_bar = DMA_BAR_REGS;
	info->msix_table_offset = DMA_MSIX_TABLE_OFFSET;
	info->msix_pba_offset = DMA_MSIX_PBA_OFFSET;
	info->pcie = true;
	info->ops = &dma_ops;
	info->opaque = s;
}

/* SIGTERM and SIGINT are blocked from the start, so every thread the
 * library or the engine creates inherits the block; the main thread
 * unblocks them only while it runs the device, so the handler runs there
 * and never races with destroy. */
static void stop_signals_block(bool block)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

static int install_signals(struct ferry_device *dev)
{
	struct sigaction sa = { .sa_handler = on_signal };

	stop_target = dev;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
		return -errno;
	signal(SIGPIPE, SIG_IGN); /* a vanished client is an error return, not a signal */
	return 0;
}

static void log_final_state(struct dma_server *s)
{
	struct dma_state st;

	dma_engine_get_state(s->engine, &st);
	ferry_log(FERRY_LOG_INFO, "%s: stopping: %llu completed, %llu errors, %llu interrupts",
		  DEV_NAME, (unsigned long long)st.completed, (unsigned long long)st.errors,
		  (unsigned long long)st.irqs);
}

int main(int argc, char **argv)
{
	struct dma_server s = { .scratch = DMA_SCRATCH_INIT };
	struct ferry_device_info info;
	struct args args;
	int rc;

	if (parse_args(argc, argv, &args) < 0)
		return 2;
	stop_signals_block(true);

	rc = dma_engine_create(DEV_NAME, &s.engine);
	if (rc < 0)
		goto out;
	rc = dma_scratch_create(&s.scratch, DMA_BAR_SCRATCH_SIZE, DEV_NAME);
	if (rc < 0)
		goto out_engine;
	fill_info(&s, &info);
	rc = ferry_device_create(&info, &s.dev);
	if (rc < 0)
		goto out_scratch;
	dma_mig_init(&s.mig, DEV_NAME, s.engine);
	rc = ferry_device_set_migration(s.dev, &dma_mig_ops);
	if (rc < 0)
		goto out_device;
	rc = dma_engine_start(s.engine, s.dev);
	if (rc < 0)
		goto out_device;
	rc = install_signals(s.dev);
	if (rc < 0) {
		ferry_log(FERRY_LOG_ERR, "%s: installing signal handlers: %s", DEV_NAME,
			  strerror(-rc));
		goto out_device;
	}
	if (args.socket_path && (rc = ferry_device_listen(s.dev, args.socket_path)) < 0)
		goto out_device;
	if (args.fd >= 0 && (rc = ferry_device_attach_fd(s.dev, args.fd)) < 0)
		goto out_device;

	stop_signals_block(false);
	rc = ferry_device_run(s.dev);
	stop_signals_block(true);
	if (rc < 0)
		ferry_log(FERRY_LOG_ERR, "%s: serving failed: %s", DEV_NAME, strerror(-rc));
	log_final_state(&s);

out_device:
	/* The worker reaches guest memory through the device: stop it first.
	 * The engine itself stays: destroying the device with a client still
	 * connected calls dma_unmapping and client_changed. */
	dma_engine_stop(s.engine);
	stop_target = NULL;
	ferry_device_destroy(s.dev);
out_scratch:
	dma_scratch_destroy(&s.scratch);
out_engine:
	dma_engine_destroy(s.engine);
out:
	return rc < 0 ? 1 : 0;
}
