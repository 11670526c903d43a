/*
 * ferry host --mem SIZE --device KIND:SOCKET ... --control PATH [--incoming URI]
 *
 * The command line, the host's lifetime and its main loop: set up guest
 * memory and devices, start the workloads (or wait for an incoming
 * migration), serve the control socket, and shut down cleanly on `quit`,
 * SIGTERM or SIGINT. See host.h for the parts.
 */
#include "host.h"
#include "util/size_arg.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <ferry/client.h>
#include <ferry/log.h>

#define DEFAULT_DMA_OPS_PER_S 2000u
#define DEFAULT_VRAM_WRITES_PER_S 1000u

static void usage(FILE *out)
{
	fprintf(out,
		"usage: ferry host --mem SIZE --device KIND:SOCKET [--device ...] --control PATH\n"
		"                  [--incoming URI] [--fill SIZE] [--fill-dense] [--prealloc]\n"
		"                  [--dma-rate N] [--vram-rate N] [-v]\n"
		"  Owns SIZE bytes of guest memory (suffix K, M or G), attaches each vfio-user\n"
		"  device at SOCKET, DMA-maps guest memory into it at iova 0 and drives it with\n"
		"  the workload KIND (dma, vram or none). Serves the control socket at PATH\n"
		"  (docs/control-protocol.md): status, migrate, cancel, verify, quit.\n"
		"  --incoming URI  wait for a migration on URI (tcp:HOST:PORT, unix:PATH,\n"
		"                  file:PATH) instead of starting the workloads; exit 1 if it\n"
		"                  fails. Start it with the same --mem and device kinds.\n"
		"  --fill SIZE     write a pattern into the first SIZE bytes of guest memory\n"
		"                  (one page in eight left zero, as real guests have many)\n"
		"  --fill-dense    no zero pages in the --fill pattern\n"
		"  --prealloc      allocate and map all guest memory at start (as QEMU's\n"
		"                  prealloc=on), not page by page on first touch\n"
		"  --dma-rate N    dma workload operations per second (default %u)\n"
		"  --vram-rate N   vram workload page writes per second (default %u)\n"
		"  -v              more log lines (twice: debug)\n",
		DEFAULT_DMA_OPS_PER_S, DEFAULT_VRAM_WRITES_PER_S);
}

static int parse_uint(const char *s, unsigned *out)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || n > 10000000)
		return -EINVAL;
	*out = (unsigned)n;
	return 0;
}

static int parse_device(struct host_options *o, char *arg)
{
	char *colon = strchr(arg, ':');

	if (o->ndev >= HOST_MAX_DEVICES) {
		fprintf(stderr, "ferry host: at most %u devices\n", HOST_MAX_DEVICES);
		return -E2BIG;
	}
	if (!colon || colon == arg || !colon[1]) {
		fprintf(stderr, "ferry host: --device wants KIND:SOCKET, not '%s'\n", arg);
		return -EINVAL;
	}
	*colon = '\0';
	if (host_kind_parse(arg, &o->dev[o->ndev].kind) < 0) {
		fprintf(stderr, "ferry host: unknown device kind '%s' (dma, vram or none)\n", arg);
		return -EINVAL;
	}
	if (strlen(colon + 1) >= HOST_SOCKET_MAX) {
		fprintf(stderr, "ferry host: socket path too long: %s\n", colon + 1);
		return -EINVAL;
	}
	o->dev[o->ndev++].socket = colon + 1;
	return 0;
}

/* 0, 1 for --help, or -EINVAL (already reported). */
static int parse_args(int argc, char **argv, struct host_options *o)
{
	int verbose = 0;

	*o = (struct host_options){.dma_ops_per_s = DEFAULT_DMA_OPS_PER_S,
				   .vram_writes_per_s = DEFAULT_VRAM_WRITES_PER_S};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		char *v = i + 1 < argc ? argv[i + 1] : NULL;
		int rc = 0;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 1;
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			verbose++;
			continue;
		} else if (!strcmp(a, "--fill-dense")) {
			o->is_fill_dense = true;
			continue;
		} else if (!strcmp(a, "--prealloc")) {
			o->is_prealloc = true;
			continue;
		}
		if (!v) {
			fprintf(stderr, "ferry host: %s needs a value (or is unknown)\n", a);
			return -EINVAL;
		}
		i++;
		if (!strcmp(a, "--mem"))
			rc = parse_size_arg(v, &o->mem_size);
		else if (!strcmp(a, "--fill"))
			rc = parse_size_arg(v, &o->fill_bytes);
		else if (!strcmp(a, "--device"))
			rc = parse_device(o, v);
		else if (!strcmp(a, "--control"))
			o->control_path = v;
		else if (!strcmp(a, "--incoming"))
			o->incoming = v;
		else if (!strcmp(a, "--dma-rate"))
			rc = parse_uint(v, &o->dma_ops_per_s);
		else if (!strcmp(a, "--vram-rate"))
			rc = parse_uint(v, &o->vram_writes_per_s);
		else {
			fprintf(stderr, "ferry host: unknown option %s\n", a);
			return -EINVAL;
		}
		if (rc < 0) {
			fprintf(stderr, "ferry host: bad value for %s: '%s'\n", a, v);
			return -EINVAL;
		}
	}
	if (verbose)
		ferry_log_set_level(verbose > 1 ? FERRY_LOG_DEBUG : FERRY_LOG_INFO);
	if (!o->mem_size || o->mem_size % HOST_AREA_ALIGN) {
		fprintf(stderr, "ferry host: --mem SIZE is required, a multiple of 2 MiB\n");
		return -EINVAL;
	}
	if (!o->control_path) {
		fprintf(stderr, "ferry host: --control PATH is required\n");
		return -EINVAL;
	}
	if (o->fill_bytes % HOST_PAGE_SIZE) {
		fprintf(stderr, "ferry host: --fill must be a multiple of 4 KiB\n");
		return -EINVAL;
	}
	return 0;
}

void host_request_quit(struct host *h, int exit_code)
{
	uint64_t one = 1;

	pthread_mutex_lock(&h->lock);
	if (exit_code && !h->exit_code)
		h->exit_code = exit_code;
	pthread_mutex_unlock(&h->lock);
	if (write(h->quit_fd, &one, sizeof(one)) < 0)
		ferry_log(FERRY_LOG_ERR, "ferry host: cannot signal the main loop: %s",
			  strerror(errno));
}

/* Waits for `quit`, SIGTERM/SIGINT or a failed incoming migration. */
static void main_loop(struct host *h, int sig_fd)
{
	for (;;) {
		struct pollfd p[2] = {{.fd = sig_fd, .events = POLLIN},
				      {.fd = h->quit_fd, .events = POLLIN}};

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sig_fd, &si, sizeof(si)) == sizeof(si))
				fprintf(stderr, "ferry host: %s: shutting down\n",
					strsignal((int)si.ssi_signo));
			return;
		}
		if (p[1].revents & POLLIN)
			return;
	}
}

static int host_setup(struct host *h)
{
	int rc = host_mem_create(h, h->opt.mem_size, h->opt.is_prealloc);

	if (rc < 0)
		return rc;
	rc = dirty_view_create(h->mem_size, HOST_PAGE_SIZE, &h->dv);
	if (rc < 0)
		return rc;
	rc = host_devices_attach(h);
	if (rc < 0)
		return rc;
	rc = host_mem_layout(h);
	if (rc < 0)
		return rc;
	if (h->opt.incoming)
		return host_incoming_start(h);
	if (h->opt.fill_bytes)
		host_mem_fill(h);
	rc = host_workloads_start(h, false);
	if (rc < 0)
		fprintf(stderr, "ferry host: the workloads did not start\n");
	return rc;
}

static void host_teardown(struct host *h)
{
	host_migrate_join(h);
	host_control_stop(h);
	host_workloads_stop(h);
	host_devices_detach(h);
	dirty_view_destroy(h->dv);
	h->dv = NULL;
	host_mem_destroy(h);
	json_object_put(h->last_report);
	h->last_report = NULL;
}

int cmd_host(int argc, char **argv)
{
	struct host *h = calloc(1, sizeof(*h));
	sigset_t sigs;
	int sig_fd = -1, rc;

	if (!h)
		return 1;
	h->mem_fd = h->quit_fd = -1;
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->wl_lock, NULL);
	rc = parse_args(argc, argv, &h->opt);
	if (rc != 0) {
		free(h);
		return rc > 0 ? 0 : 2;
	}

	/* Signals go to the main loop only: block them before any thread. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC);
	h->quit_fd = eventfd(0, EFD_CLOEXEC);
	if (sig_fd < 0 || h->quit_fd < 0) {
		fprintf(stderr, "ferry host: signalfd/eventfd: %s\n", strerror(errno));
		rc = -errno;
		goto out;
	}

	rc = host_setup(h);
	if (rc == 0)
		rc = host_control_start(h, h->opt.control_path);
	if (rc < 0)
		goto out;
	fprintf(stderr, "ferry host: %" PRIu64 " MiB of guest memory, %u devices, control "
		"socket %s%s\n", h->mem_size >> 20, h->ndev, h->opt.control_path,
		h->opt.incoming ? " (destination)" : "");
	main_loop(h, sig_fd);
	rc = 0;
out:
	host_teardown(h);
	if (sig_fd >= 0)
		close(sig_fd);
	if (h->quit_fd >= 0)
		close(h->quit_fd);
	pthread_mutex_lock(&h->lock);
	int code = rc < 0 ? 1 : h->exit_code;
	pthread_mutex_unlock(&h->lock);
	pthread_mutex_destroy(&h->wl_lock);
	pthread_mutex_destroy(&h->lock);
	free(h);
	return code;
}
