/*
 * The migration engine's dirty view: one bitmap over all of guest memory,
 * fed by every source of writes to it (docs/dirty-tracking.md).
 *
 * Concepts.
 *  - Guest memory is [0, guest_size), tracked at one page size (4 KiB for
 *    ferry host). Devices see it at IOVA == guest-physical address, as ferry
 *    host maps it (a VMM without a vIOMMU does the same); each device is
 *    added with the window [iova_base, iova_base + size) it has mapped.
 *  - Providers, per device:
 *      DEVICE_LOGGING  the device logs its DMA writes (DMA_LOGGING_*);
 *                      each collect ORs its REPORT of the window in;
 *      ALL_DIRTY       the device cannot log: each collect counts its whole
 *                      window dirty (it may have written anywhere there).
 *    Plus, for every device, the bytes the client library wrote for the
 *    device's DMA_WRITE messages (its dirty callback: no device log sees
 *    them, PROTOCOL.md §6.3), and the host's own writes (dirty_view_mark).
 *  - Policy, per device: AUTO probes the DMA logging features and tries a
 *    START at the view's page size over the window: device logging if it
 *    works, else all-dirty. DEVICE_LOGGING insists (adding fails if the
 *    device cannot); ALL_DIRTY never asks the device. The view records,
 *    per device, which provider it uses and why, for the migration report.
 *  - Errors: a REPORT that fails makes the device's whole window dirty for
 *    that round (the UAPI rule: on error assume everything is dirty), is
 *    counted, and its reason kept; the next collect tries REPORT again.
 *
 * Storage: two bitmaps of ceil(pages / 64) words. `marks` takes the host's
 * writes and the DMA_WRITE callbacks from any thread (atomic fetch_or);
 * `collected` takes reports and all-dirty windows under the view's lock
 * (plain ORs: the client library merges REPORT replies straight into it).
 * dirty_view_take() hands out their union and clears both, word by word,
 * a word that is zero costing a load and no write.
 *
 * Threads: dirty_view_mark() and dirty_view_mark_all() from any thread at
 * any time (lock-free); every other call takes the view's mutex, so they
 * may come from several threads but run one at a time (collect holds it
 * across the devices' round trips).
 */
#ifndef FERRY_MIGRATE_DIRTY_VIEW_H
#define FERRY_MIGRATE_DIRTY_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ferry_client;

enum dirty_policy {
	DIRTY_POLICY_AUTO = 0,
	DIRTY_POLICY_DEVICE_LOGGING,
	DIRTY_POLICY_ALL_DIRTY,
};

enum dirty_provider {
	DIRTY_PROVIDER_DEVICE_LOGGING = 0,
	DIRTY_PROVIDER_ALL_DIRTY,
};

/* What the view knows about one device, for the migration report. */
struct dirty_view_device {
	enum dirty_policy policy;
	enum dirty_provider provider;
	char why[192];              /* why this provider, in words */
	uint64_t iova_base, size;   /* the window */
	uint64_t tracked_page_size; /* the device's, from START's reply; 0 if all-dirty */
	uint64_t collects;          /* collects that asked this device */
	uint64_t report_errors;     /* of which failed: the window counted dirty */
	int last_error;             /* negative errno of the last failure, 0 if none */
	uint64_t bitmap_bytes;      /* REPORT bitmap bytes received in all (logging) */
};

struct dirty_view;

/* A view over [0, @guest_size) at @page_size (a power of two >= 4096;
 * guest_size a non-zero multiple of it), nothing dirty, no device.
 * Returns 0 and *@out, or -EINVAL, -ENOMEM (one log line). */
int dirty_view_create(uint64_t guest_size, uint64_t page_size, struct dirty_view **out);

/* Stops it if started, frees. NULL-safe. No other call may be in flight. */
void dirty_view_destroy(struct dirty_view *v);

/*
 * Adds a device (the client is borrowed: it must outlive the view or at
 * least dirty_view_stop) whose window [iova_base, iova_base + size) lies in
 * guest memory, both multiples of the page size. Applies @policy now: AUTO
 * and DEVICE_LOGGING probe and try START + STOP on the window (so the
 * device must not be logging for someone else). Returns the provider
 * chosen (>= 0; the device's number is the count of devices added before
 * it), or -EINVAL (bad window or policy, view started), -ENOMEM, or for
 * DEVICE_LOGGING the device's errno when it cannot log.
 */
int dirty_view_add_device(struct dirty_view *v, struct ferry_client *c, uint64_t iova_base,
			  uint64_t size, enum dirty_policy policy);

/*
 * Starts tracking: takes over each device's client dirty callback
 * (ferry_client_set_dirty_callback) and STARTs logging on each logging
 * device. A device that now refuses START falls back to ALL_DIRTY under
 * AUTO for this session (its why says so; the next start tries logging
 * again); under DEVICE_LOGGING the start fails: the devices already started
 * are stopped again and the errno returned. -EINVAL if already started. A
 * view may be started and stopped many times (one migration each).
 */
int dirty_view_start(struct dirty_view *v);

/*
 * One round's device side: REPORTs every logging device's window into the
 * view (read-and-clear on the device) and counts every all-dirty device's
 * window dirty. A failing REPORT counts that device's window dirty, and is
 * logged and recorded in its dirty_view_device. Returns how many devices
 * failed (0: all reported), or -EINVAL if not started.
 */
int dirty_view_collect(struct dirty_view *v);

/*
 * Read-and-clear, for one migration round: @out (dirty_view_words() words)
 * receives everything marked or collected since the last take; the view
 * is clean afterwards (marks racing with the take land in this round or
 * the next, never nowhere). Returns the number of dirty pages.
 */
uint64_t dirty_view_take(struct dirty_view *v, uint64_t *out);

/*
 * Stops tracking: STOP on each logging device, gives the dirty callbacks
 * back (NULL). What was marked stays until taken. Returns 0, or the first
 * STOP error (every device is still visited). No-op if not started.
 */
int dirty_view_stop(struct dirty_view *v);

/* The host wrote guest memory [gpa, gpa + len): marks the pages it touches.
 * The part outside guest memory is ignored. Any thread, lock-free: call it
 * after the write's stores. */
void dirty_view_mark(struct dirty_view *v, uint64_t gpa, uint64_t len);

/* Every page dirty (the first round sends everything). Any thread. */
void dirty_view_mark_all(struct dirty_view *v);

/* Bitmap words of the view (what dirty_view_take writes), pages, page size. */
size_t dirty_view_words(const struct dirty_view *v);
uint64_t dirty_view_pages(const struct dirty_view *v);
uint64_t dirty_view_page_size(const struct dirty_view *v);

/* Number of devices added, and a copy of device @i's record (-EINVAL past
 * the end). */
unsigned dirty_view_device_count(struct dirty_view *v);
int dirty_view_device_get(struct dirty_view *v, unsigned i, struct dirty_view_device *out);

/* "auto", "device-logging", "all-dirty" (and the reverse: 0 or -EINVAL). */
const char *dirty_policy_name(enum dirty_policy p);
int dirty_policy_parse(const char *s, enum dirty_policy *out);
/* "device-logging", "all-dirty". */
const char *dirty_provider_name(enum dirty_provider p);

#endif
