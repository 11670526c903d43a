/* ferry migrate: asks a running `ferry host` to live-migrate (migrate_cmd.c). */
#ifndef FERRY_TOOL_MIGRATE_CMD_H
#define FERRY_TOOL_MIGRATE_CMD_H

/* @argv starts at "migrate". Exit status: 0 when the migration succeeded
 * (outcome "success", or "saved" for a file: URI), 1 when it did not or the
 * host could not be reached or went away, 2 on a usage error. */
int cmd_migrate(int argc, char **argv);

#endif
