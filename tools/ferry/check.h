/* ferry check: conformance test of a vfio-user device's migration support. */
#ifndef FERRY_TOOL_CHECK_H
#define FERRY_TOOL_CHECK_H

/* The ferry check subcommand; @argv starts at "check". Exit status: 0 when
 * no check failed, 1 when one did, 2 on a usage error. */
int cmd_check(int argc, char **argv);

#endif
