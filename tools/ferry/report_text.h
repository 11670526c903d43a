/*
 * A migration REPORT (docs/control-protocol.md) as text: the table ferry
 * migrate prints at the end, and the short summary ferry status shows.
 *
 * Every field is type-checked: a missing or malformed one prints as "?",
 * logs one warning and is counted, so a broken host cannot pass zeros off
 * as figures. Optional fields (role, predicted_downtime_ms, memory_bytes,
 * pages_total, zero_pages_total) are shown only when present.
 */
#ifndef FERRY_TOOL_REPORT_TEXT_H
#define FERRY_TOOL_REPORT_TEXT_H

#include <stdio.h>

#include <json-c/json.h>

/* Rounds listed in full; a longer list shows its first and last rows. */
#define REPORT_ROUNDS_SHOWN 40u
/* Lines of lists (the downtime steps) wrap before this column. */
#define REPORT_WIDTH 88

/* Prints the whole report. Returns how many fields were missing or
 * malformed (0 for a well-formed report). */
unsigned report_print_text(json_object *report, FILE *out);

/* Prints a two-line summary, each line starting with @indent. Returns how
 * many fields were missing or malformed. */
unsigned report_print_summary(json_object *report, FILE *out, const char *indent);

#endif
