/*
 * broken_device --socket PATH --bug NAME [--flags HEX] [--seed N]
 *               [--error-on-bad-stream]
 *
 * A migratable test device with one deliberate bug (broken_model.h), to
 * prove that `ferry check` catches it. --bug none is a correct device.
 * --flags: VFIO_MIGRATION_* bits (default STOP_COPY | P2P | PRE_COPY, so
 * every state exists). --seed: initial device memory (default: the pid, so
 * two instances differ). --error-on-bad-stream: refusing an incomplete
 * stream leaves the device in ERROR (correct behaviour too).
 *
 * Bugs of the model run the device on PATH; the proxy bugs run it on
 * PATH.inner with broken_proxy.c listening on PATH.
 */
#include "broken_model.h"
#include "broken_proxy.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ferry/device_migration.h>

static struct ferry_device *g_dev;

static void on_term(int sig)
{
	(void)sig;
	if (g_dev)
		ferry_device_stop(g_dev); /* async-signal-safe */
	else
		_exit(0);
}

static int usage(void)
{
	fprintf(stderr, "usage: broken_device --socket PATH --bug "
			"none|no-validate|wrong-arc|reset-keeps-state|short-stream "
			"[--flags HEX] [--seed N] [--error-on-bad-stream]\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	enum broken_bug bug = BUG_NONE;
	uint64_t flags = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY;
	uint32_t seed = (uint32_t)getpid();
	bool error_on_bad_stream = false;
	struct broken_model *m;
	char inner[256];
	int r;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--socket") && i + 1 < argc)
			path = argv[++i];
		else if (!strcmp(argv[i], "--bug") && i + 1 < argc) {
			if (broken_bug_parse(argv[++i], &bug) < 0)
				return usage();
		} else if (!strcmp(argv[i], "--flags") && i + 1 < argc)
			flags = strtoull(argv[++i], NULL, 16);
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = (uint32_t)strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--error-on-bad-stream"))
			error_on_bad_stream = true;
		else
			return usage();
	}
	if (!path)
		return usage();

	if ((r = broken_model_create(bug, flags, seed, error_on_bad_stream, &m)) < 0) {
		fprintf(stderr, "broken_device: cannot create the device: %s\n", strerror(-r));
		return 1;
	}
	struct sigaction sa = {.sa_handler = on_term};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	struct ferry_device *dev = broken_model_device(m);
	bool proxied = broken_bug_in_proxy(bug);
	snprintf(inner, sizeof(inner), "%s.inner", path);
	r = ferry_device_listen(dev, proxied ? inner : path);
	if (r == 0 && proxied) {
		r = ferry_device_start(dev);
		if (r == 0)
			r = broken_proxy_run(path, inner, bug); /* returns on error only */
	} else if (r == 0) {
		g_dev = dev;
		r = ferry_device_run(dev);
		g_dev = NULL;
	}
	if (r < 0)
		fprintf(stderr, "broken_device: %s\n", strerror(-r));
	broken_model_destroy(m);
	return r < 0 ? 1 : 0;
}
