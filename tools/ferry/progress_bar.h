/*
 * The live progress line of ferry migrate, drawn from the host's progress
 * events (docs/control-protocol.md, "Progress event").
 *
 * On a terminal the line is redrawn in place (\r, erase to end of line) at
 * most every PROGRESS_TTY_MS and cut to the terminal's width; otherwise one
 * line is written per update at most every PROGRESS_LOG_MS, so a log file
 * shows the migration's course without a line per event. A change of phase
 * is always shown at once.
 *
 * Fields are type-checked; a malformed one shows as "?" and the first
 * malformed event logs one warning (later ones are only counted).
 */
#ifndef FERRY_TOOL_PROGRESS_BAR_H
#define FERRY_TOOL_PROGRESS_BAR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#define PROGRESS_TTY_MS 100
#define PROGRESS_LOG_MS 1000
#define PROGRESS_BAR_CELLS 16

struct progress_bar {
	FILE *out;
	bool is_tty;
	bool drawn;         /* a TTY line is on screen */
	int64_t last_ms;    /* when the last line was drawn */
	char phase[16];     /* the last phase drawn */
	unsigned events;    /* progress events seen */
	unsigned malformed; /* events with a missing or malformed field */
	bool has_pending;   /* not a TTY: the latest event was throttled away */
	char pending[512];  /* ... and its line, written by progress_finish() */
};

void progress_init(struct progress_bar *p, FILE *out, bool is_tty);

/* Takes one progress event (borrowed) and draws it if it is time to. */
void progress_update(struct progress_bar *p, json_object *event);

/* Ends the live line so other output can follow: on a TTY erases it,
 * otherwise writes the latest event if throttling held it back. */
void progress_finish(struct progress_bar *p);

/* Formats @event into @buf (for tests and for progress_update()). Returns
 * the number of missing or malformed fields and, if @first_bad is not NULL,
 * the first one's name in *@first_bad (NULL if none). */
unsigned progress_format(json_object *event, char *buf, size_t len, const char **first_bad);

#endif
