/*
 * ferry status: what a running `ferry host` is doing (status_cmd.c: the
 * requests and the exit status; status_text.c: the text form).
 */
#ifndef FERRY_TOOL_STATUS_CMD_H
#define FERRY_TOOL_STATUS_CMD_H

#include <stdio.h>

#include <json-c/json.h>

/* @argv starts at "status". Exit status: 0 when the host answered (and,
 * with --verify, found no mismatch), 1 otherwise, 2 on a usage error. */
int cmd_status(int argc, char **argv);

/* Prints the status reply @st (and the verify reply @verify, or NULL) as
 * text. Returns how many fields were missing or malformed. */
unsigned status_print_text(json_object *st, json_object *verify, FILE *out);

#endif
