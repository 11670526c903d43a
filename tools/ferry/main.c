/*
 * The ferry command: subcommand dispatch. Each subcommand lives in its own
 * file and gets argv starting at its own name.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "host.h"
#include "info.h"
#include "migrate_cmd.h"
#include "status_cmd.h"

struct subcommand {
	const char *name;
	const char *usage;
	int (*run)(int argc, char **argv); /* NULL: not in this build yet */
};

/* In the order `ferry help` lists them. */
static const struct subcommand subcommands[] = {
	{"info", "info SOCKET [--json]            what a vfio-user device offers", cmd_info},
	{"check", "check SOCKET [--peer SOCKET2] [--json]  conformance of a device's migration support",
	 cmd_check},
	{"host", "host --mem SIZE --device KIND:SOCKET ... --control PATH [--incoming URI]",
	 cmd_host},
	{"migrate", "migrate --control PATH --to URI [--downtime-ms N] [--max-rounds N] [--json]",
	 cmd_migrate},
	{"status", "status --control PATH [--json] [--verify]", cmd_status},
};

static void usage(FILE *out)
{
	fprintf(out, "usage: ferry COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		fprintf(out, "  ferry %s%s\n", subcommands[i].usage,
			subcommands[i].run ? "" : "  (not implemented yet)");
	fprintf(out, "\n`ferry COMMAND --help` describes one command.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "help") || !strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
		if (strcmp(cmd, subcommands[i].name))
			continue;
		if (!subcommands[i].run) {
			fprintf(stderr, "ferry %s: not implemented yet\n", cmd);
			return 2;
		}
		return subcommands[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "ferry: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
