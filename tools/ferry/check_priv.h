/*
 * ferry check, private: what its parts share.
 *
 * Concepts:
 * - A check is a row: a name, a result and a reason. The sections add rows in
 *   order (check.c runs them): negotiation and flags (check.c), the state
 *   machine (check_fsm.c), the data stream (check_save.c, check_restore.c),
 *   reset and ERROR (check_reset.c), DMA logging (check_dma.c), low power
 *   (check_power.c). check_report.c prints the rows as a table or as JSON.
 * - The device is driven only through libferry's public client API; state
 *   changes are single SETs, so the server computes every path itself and
 *   the checker compares the outcome with ferry_mig_path().
 * - Between steps the device goes back to RUNNING (chk_recover): a
 *   DEVICE_RESET when it offers one, then SET RUNNING if the reset left it
 *   elsewhere (loading the saved stream first if it sits in RESUMING). A
 *   device that cannot get back to RUNNING ends its checks.
 * - The first full save (check_save.c) is kept: whenever a step needs valid
 *   data in RESUMING (every arc out of RESUMING validates what was loaded),
 *   that stream is loaded.
 * - A device that enters ERROR is examined right there (chk_recover notices
 *   it before resetting); the ERROR rows are printed in their own section.
 */
#ifndef FERRY_TOOL_CHECK_PRIV_H
#define FERRY_TOOL_CHECK_PRIV_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <ferry/client.h>
#include <ferry/client_migration.h>
#include <ferry/migration.h>

enum chk_result { CHK_PASS, CHK_FAIL, CHK_WARN, CHK_SKIP };

#define CHK_NAME_MAX 64
#define CHK_REASON_MAX 400
/* Every (from, to) pair of 7 states is 49 rows; the rest are fewer than 60. */
#define CHK_MAX_ROWS 160

struct chk_row {
	char name[CHK_NAME_MAX];
	enum chk_result result;
	char reason[CHK_REASON_MAX];
};

/* One device server under test. */
struct chk_dev {
	const char *path;
	const char *role; /* "device" or "peer" */
	struct ferry_client *c;
	struct ferry_device_desc desc;
	bool has_mig;       /* GET MIGRATION answered with valid flags */
	uint64_t mig_flags;
	bool can_reset;     /* DEVICE_GET_INFO advertises VFIO_DEVICE_FLAGS_RESET */
	bool lost;          /* could not be brought back to RUNNING: stop using it */
};

/* A migration stream held in memory, bounded by CHK_STREAM_MAX. */
struct chk_stream {
	uint8_t *buf;
	size_t len, cap;
};
#define CHK_STREAM_MAX (1024u * 1024u * 1024u)

/* What the ERROR state did when the device entered it (check_reset.c). */
struct chk_error_obs {
	bool seen;                 /* examined once; later visits are ignored */
	char where[CHK_REASON_MAX]; /* what led there */
	int set_err;               /* SET RUNNING while in ERROR: must fail */
	bool set_moved;            /* ... and the state must stay ERROR */
	int read_err, write_err;   /* MIG_DATA_READ / WRITE in ERROR: must fail */
	bool reset_tried;
	int reset_err;
	enum ferry_mig_state after_reset;
};

struct chk_ctx {
	bool json, strict, verbose, progress_tty;
	int timeout_ms;
	struct chk_dev dev, peer;
	bool has_peer;

	struct chk_row rows[CHK_MAX_ROWS];
	unsigned nrows;
	unsigned dropped; /* rows beyond CHK_MAX_ROWS (a bug in the checker) */

	/* 64 MiB of guest memory (a memfd), DMA-mapped into the device. */
	int memfd;
	void *mem;
	uint64_t mem_iova, mem_size;
	bool mem_mapped;

	struct chk_stream saved; /* the device's first full save */
	bool have_saved;

	struct chk_error_obs error;
	char current[128]; /* what the last progress line announced */
};

/* ---- check_report.c ---- */

void chk_add(struct chk_ctx *x, enum chk_result r, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* One progress line on stderr (overwritten in place on a terminal). */
void chk_progress(struct chk_ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void chk_progress_done(struct chk_ctx *x);
void chk_print_text(const struct chk_ctx *x, FILE *out);
int chk_print_json(const struct chk_ctx *x, FILE *out);
unsigned chk_count(const struct chk_ctx *x, enum chk_result r);
const char *chk_result_name(enum chk_result r);

/* ---- check_dev.c: driving one device ---- */

int chk_dev_open(struct chk_ctx *x, struct chk_dev *d, char *why, size_t len);
void chk_dev_close(struct chk_dev *d);
/* GET / SET of the migration state; SET sends @state as is (any u32). */
int chk_get(struct chk_dev *d, enum ferry_mig_state *s);
int chk_set(struct chk_dev *d, uint32_t state);
/* Back to RUNNING (see the top of this file). Marks the device lost and
 * returns a negative errno with *@why filled when that fails. */
int chk_recover(struct chk_ctx *x, struct chk_dev *d, char *why, size_t len);
/* chk_recover, then one SET to @state and a GET that must confirm it. When
 * @state is RESUMING and @load is not NULL, @load is written once there. */
int chk_drive(struct chk_ctx *x, struct chk_dev *d, uint32_t state,
	      const struct chk_stream *load, char *why, size_t len);
/* MIG_DATA_READ until a reply of 0 bytes, appending to @s; at most @limit
 * bytes (then -EFBIG). @reads counts the non-empty replies. */
int chk_read_to_end(struct chk_dev *d, struct chk_stream *s, size_t limit, unsigned *reads);
/* Writes @len bytes of @buf in RESUMING. */
int chk_write(struct chk_dev *d, const void *buf, size_t len);
/* STOP -> STOP_COPY, read to the end, -> STOP: a save of a stopped device. */
int chk_save_stopped(struct chk_dev *d, struct chk_stream *s, char *why, size_t len);
/* "RUNNING -> STOP -> STOP_COPY" for the server's path, into @buf. */
const char *chk_path_str(uint64_t flags, uint32_t from, uint32_t to, char *buf, size_t len);
/* A state's name, or its number for values that are not states. */
const char *chk_state_str(uint32_t s, char *buf, size_t len);

int chk_stream_append(struct chk_stream *s, const void *buf, size_t len);
void chk_stream_free(struct chk_stream *s);

/* ---- the sections ---- */

void chk_section_fsm(struct chk_ctx *x);       /* check_fsm.c */
void chk_section_refusals(struct chk_ctx *x);  /* check_fsm.c */
void chk_section_data_gating(struct chk_ctx *x); /* check_save.c */
void chk_section_save(struct chk_ctx *x);      /* check_save.c */
void chk_section_restore(struct chk_ctx *x);   /* check_restore.c */
void chk_section_reset(struct chk_ctx *x);     /* check_reset.c */
void chk_section_error(struct chk_ctx *x);     /* check_reset.c */
/* Called by chk_recover when it finds the device in ERROR. */
void chk_observe_error(struct chk_ctx *x, struct chk_dev *d);
/* check_dma.c: 64 MiB of memfd guest memory DMA-mapped into the device
 * (one row), and its removal. */
int chk_dma_setup(struct chk_ctx *x);
void chk_dma_teardown(struct chk_ctx *x);
void chk_section_dma(struct chk_ctx *x);
void chk_section_power(struct chk_ctx *x);     /* check_power.c */

#endif
