/*
 * ferry check SOCKET [--peer SOCKET2] [--json] [--strict] [--verbose]
 *                    [--timeout-ms N]
 *
 * A conformance test of a vfio-user device's migration support: runs every
 * check (see check_priv.h for how the parts fit), prints a table of
 * PASS / FAIL / WARN / SKIP rows with the reason for each (JSON with
 * --json), and exits 0 when no row failed, 1 when one did, 2 on a usage
 * error. WARN and SKIP do not fail the run; --strict makes a restored
 * device whose saved stream differs from the source's a failure.
 *
 * The sections run in this order because the later ones depend on the
 * earlier: the full save provides the stream that RESUMING needs, and the
 * restore section must run while the source is still stopped in the state
 * it saved.
 */
#include "check.h"
#include "check_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ferry/log.h>

#define CHK_DEFAULT_TIMEOUT_MS 10000

static void usage(FILE *out)
{
	fprintf(out,
		"usage: ferry check SOCKET [--peer SOCKET2] [--json] [--strict] [--verbose]\n"
		"                   [--timeout-ms N]\n"
		"\n"
		"Conformance test of the vfio-user device at SOCKET's migration support: the\n"
		"state machine (every pair of states), refusals, the data stream, pre-copy\n"
		"sizes, reset, ERROR and DMA logging. With --peer, the saved state is restored\n"
		"into the device at SOCKET2 (a fresh server of the same kind) and compared;\n"
		"without it, into the device itself. The device is reset and driven through\n"
		"every state: do not point it at a device in use.\n"
		"\n"
		"  --json          print the rows as JSON\n"
		"  --strict        a restored device whose state differs fails (else: warning)\n"
		"  --verbose       show libferry's log lines (expected refusals included)\n"
		"  --timeout-ms N  per request (default %d)\n"
		"\n"
		"Exit status: 0 when no check failed, 1 when one did, 2 on a usage error.\n",
		CHK_DEFAULT_TIMEOUT_MS);
}

/* The checker provokes refusals on purpose; libferry logs each. They are
 * noise next to the table unless asked for. */
static void log_sink(enum ferry_log_level level, const char *line, void *opaque)
{
	struct chk_ctx *x = opaque;
	(void)level;
	if (x->verbose)
		fprintf(stderr, "  libferry: %s\n", line);
}

static int parse_args(struct chk_ctx *x, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--json")) {
			x->json = true;
		} else if (!strcmp(a, "--strict")) {
			x->strict = true;
		} else if (!strcmp(a, "--verbose")) {
			x->verbose = true;
		} else if (!strcmp(a, "--peer") && i + 1 < argc) {
			x->peer.path = argv[++i];
			x->has_peer = true;
		} else if (!strcmp(a, "--timeout-ms") && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end || v < 1 || v > 3600000) {
				fprintf(stderr, "ferry check: bad --timeout-ms '%s'\n", argv[i]);
				return -EINVAL;
			}
			x->timeout_ms = (int)v;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			exit(0);
		} else if (a[0] != '-' && !x->dev.path) {
			x->dev.path = a;
		} else {
			fprintf(stderr, "ferry check: unexpected argument '%s'\n", a);
			return -EINVAL;
		}
	}
	if (!x->dev.path) {
		usage(stderr);
		return -EINVAL;
	}
	return 0;
}

static void negotiation_row(struct chk_ctx *x)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} ext[] = {
		{FERRY_EXT_PRECOPY_INFO, "precopy_info"}, {FERRY_EXT_MIG_SHM, "mig_shm"},
		{FERRY_EXT_LOW_POWER, "low_power"}, {FERRY_EXT_DIRTY_SHM, "dirty_shm"},
	};
	const struct ferry_server_caps *s = ferry_client_server_caps(x->dev.c);
	char names[96] = "";
	for (size_t i = 0, off = 0; i < sizeof(ext) / sizeof(ext[0]); i++)
		if (s->extensions & ext[i].bit && off < sizeof(names))
			off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s",
						off ? " " : "", ext[i].name);
	chk_add(x, CHK_PASS, "negotiation",
		"vfio-user %u.%u; max_data_xfer_size %u; max_msg_fds %u; %s; ferry extensions: %s",
		s->major, s->minor, s->max_data_xfer_size, s->max_msg_fds,
		s->twin_socket ? "twin socket" : "no twin socket", names[0] ? names : "none");
}

/* GET MIGRATION: STOP_COPY present and known bits only. */
static int read_flags(struct chk_dev *d, char *why, size_t len)
{
	const uint64_t known = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P |
			       VFIO_MIGRATION_PRE_COPY;
	uint64_t f;
	int r = ferry_client_mig_flags(d->c, &f);
	if (r < 0) {
		snprintf(why, len, "GET MIGRATION failed (%s): the device cannot migrate",
			 strerror(-r));
		return r;
	}
	if (!(f & VFIO_MIGRATION_STOP_COPY) || (f & ~known)) {
		snprintf(why, len, "flags 0x%llx: %s", (unsigned long long)f,
			 !(f & VFIO_MIGRATION_STOP_COPY) ? "STOP_COPY is missing (it is mandatory)"
							 : "unknown bits are set");
		return -EPROTO;
	}
	d->mig_flags = f;
	d->has_mig = true;
	snprintf(why, len, "STOP_COPY%s%s (0x%llx)", f & VFIO_MIGRATION_P2P ? " | P2P" : "",
		 f & VFIO_MIGRATION_PRE_COPY ? " | PRE_COPY" : "", (unsigned long long)f);
	return 0;
}

static void open_peer(struct chk_ctx *x)
{
	char why[CHK_REASON_MAX], flags[CHK_REASON_MAX];
	chk_progress(x, "connecting to the peer");
	if (chk_dev_open(x, &x->peer, why, sizeof(why)) < 0) {
		chk_add(x, CHK_FAIL, "peer", "%s", why);
		return;
	}
	if (read_flags(&x->peer, flags, sizeof(flags)) < 0) {
		chk_add(x, CHK_FAIL, "peer", "%s", flags);
		return;
	}
	const char *mem = "";
	if (x->mem_mapped &&
	    ferry_client_dma_map(x->peer.c, x->mem_iova, x->mem_size,
				 VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, x->memfd, 0,
				 x->mem) < 0)
		mem = "; DMA_MAP of the guest memory failed";
	chk_add(x, x->peer.mig_flags == x->dev.mig_flags && !mem[0] ? CHK_PASS : CHK_WARN, "peer",
		"%s: %s%s%s", x->peer.path, flags,
		x->peer.mig_flags != x->dev.mig_flags ? " (differs from the device's)" : "", mem);
}

static void run(struct chk_ctx *x)
{
	char why[CHK_REASON_MAX];

	chk_progress(x, "negotiation");
	if (chk_dev_open(x, &x->dev, why, sizeof(why)) < 0) {
		chk_add(x, CHK_FAIL, "negotiation", "%s", why);
		return;
	}
	negotiation_row(x);
	chk_progress(x, "migration flags");
	chk_add(x, read_flags(&x->dev, why, sizeof(why)) < 0 ? CHK_FAIL : CHK_PASS,
		"migration flags", "%s", why);
	chk_dma_setup(x);
	if (x->has_peer)
		open_peer(x);

	if (x->dev.has_mig) {
		chk_section_save(x);
		chk_section_restore(x);
		chk_section_fsm(x);
		chk_section_refusals(x);
		chk_section_data_gating(x);
		chk_section_reset(x);
		chk_section_error(x);
		if (x->dev.lost)
			chk_add(x, CHK_FAIL, "device usable to the end",
				"the device could not be brought back to RUNNING; checks after that were not run");
	} else {
		chk_add(x, CHK_SKIP, "migration checks", "the device offers no valid migration flags");
	}
	chk_section_dma(x);
	chk_section_power(x);

	/* Leave both devices running, as found. */
	if (x->dev.has_mig && !x->dev.lost)
		chk_recover(x, &x->dev, why, sizeof(why));
	if (x->has_peer && x->peer.has_mig && !x->peer.lost)
		chk_recover(x, &x->peer, why, sizeof(why));
}

int cmd_check(int argc, char **argv)
{
	struct chk_ctx *x = calloc(1, sizeof(*x));
	if (!x) {
		fprintf(stderr, "ferry check: out of memory\n");
		return 2;
	}
	x->memfd = -1;
	x->timeout_ms = CHK_DEFAULT_TIMEOUT_MS;
	x->dev.role = "device";
	x->peer.role = "peer";
	if (parse_args(x, argc, argv) < 0) {
		free(x);
		return 2;
	}
	x->progress_tty = isatty(STDERR_FILENO);
	ferry_log_set_sink(log_sink, x);

	run(x);
	chk_progress_done(x);

	chk_dma_teardown(x);
	chk_dev_close(&x->peer);
	chk_dev_close(&x->dev);
	ferry_log_set_sink(NULL, NULL);
	chk_stream_free(&x->saved);

	int rc = 0;
	if (x->json)
		rc = chk_print_json(x, stdout);
	else
		chk_print_text(x, stdout);
	if (rc < 0)
		fprintf(stderr, "ferry check: cannot format JSON: %s\n", strerror(-rc));
	int status = rc < 0 || chk_count(x, CHK_FAIL) || x->dropped ? 1 : 0;
	free(x);
	return status;
}
