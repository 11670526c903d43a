/*
 * The dirty view: one bitmap over guest memory from device logs, all-dirty
 * devices, the client's DMA_WRITE callbacks and the host's own writes. See
 * dirty_view.h for the concepts; docs/dirty-tracking.md for the policy.
 */
#include "migrate/dirty_view.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/client.h>
#include <ferry/client_dirty.h>

#include "util/checked.h"
#include "util/bitmap.h"
#include "util/log.h"

struct view_dev {
	struct dirty_view *v;
	struct ferry_client *c;
	bool can_log;    /* the policy chose device logging when the device was added */
	bool is_logging; /* START in force on the device (between start and stop) */
	char added_why[sizeof(((struct dirty_view_device *)0)->why)]; /* that choice's why */
	struct dirty_view_device info;
};

struct dirty_view {
	uint64_t guest_size, page_size, pages;
	unsigned shift;
	size_t words;
	_Atomic uint64_t *marks; /* host writes, DMA_WRITE callbacks: any thread */
	uint64_t *collected;     /* reports, all-dirty windows: under lock */

	pthread_mutex_t lock;
	bool is_started;
	struct view_dev **devs;
	unsigned ndevs;
};

static const char *const policy_names[] = {
	[DIRTY_POLICY_AUTO] = "auto",
	[DIRTY_POLICY_DEVICE_LOGGING] = "device-logging",
	[DIRTY_POLICY_ALL_DIRTY] = "all-dirty",
};

static const char *const provider_names[] = {
	[DIRTY_PROVIDER_DEVICE_LOGGING] = "device-logging",
	[DIRTY_PROVIDER_ALL_DIRTY] = "all-dirty",
};

const char *dirty_policy_name(enum dirty_policy p)
{
	return (unsigned)p < ARRAY_SIZE(policy_names) ? policy_names[p] : "?";
}

const char *dirty_provider_name(enum dirty_provider p)
{
	return (unsigned)p < ARRAY_SIZE(provider_names) ? provider_names[p] : "?";
}

int dirty_policy_parse(const char *s, enum dirty_policy *out)
{
	for (unsigned i = 0; s && i < ARRAY_SIZE(policy_names); i++) {
		if (!strcmp(s, policy_names[i])) {
			*out = (enum dirty_policy)i;
			return 0;
		}
	}
	log_err("dirty tracking policy '%s': expected auto, device-logging or all-dirty",
		s ? s : "(null)");
	return -EINVAL;
}

int dirty_view_create(uint64_t guest_size, uint64_t page_size, struct dirty_view **out)
{
	struct dirty_view *v;
	uint64_t pages;

	*out = NULL;
	if (!is_pow2(page_size) || page_size < 4096 || !guest_size ||
	    guest_size & (page_size - 1)) {
		log_err("dirty view: guest size 0x%" PRIx64 " at page size 0x%" PRIx64 ": want a "
			"power-of-two page size >= 4096 dividing a non-zero size", guest_size,
			page_size);
		return -EINVAL;
	}
	pages = guest_size / page_size;
	if ((pages + 63) / 64 > SIZE_MAX / sizeof(uint64_t)) {
		log_err("dirty view: %" PRIu64 " pages cannot be addressed", pages);
		return -ENOMEM;
	}
	v = calloc(1, sizeof(*v));
	if (!v)
		goto nomem;
	v->guest_size = guest_size;
	v->page_size = page_size;
	v->shift = (unsigned)__builtin_ctzll(page_size);
	v->pages = pages;
	v->words = (size_t)((pages + 63) / 64);
	pthread_mutex_init(&v->lock, NULL);
	v->marks = calloc(v->words, sizeof(*v->marks));
	v->collected = calloc(v->words, sizeof(*v->collected));
	if (!v->marks || !v->collected) {
		dirty_view_destroy(v);
		goto nomem;
	}
	*out = v;
	return 0;
nomem:
	log_err("dirty view: out of memory for %" PRIu64 " pages", pages);
	return -ENOMEM;
}

void dirty_view_destroy(struct dirty_view *v)
{
	if (!v)
		return;
	dirty_view_stop(v);
	for (unsigned i = 0; i < v->ndevs; i++)
		free(v->devs[i]);
	free(v->devs);
	free((void *)v->marks);
	free(v->collected);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

size_t dirty_view_words(const struct dirty_view *v)
{
	return v->words;
}

uint64_t dirty_view_pages(const struct dirty_view *v)
{
	return v->pages;
}

uint64_t dirty_view_page_size(const struct dirty_view *v)
{
	return v->page_size;
}

/* ---- marking ---- */

/* Pages p0..p1 (inclusive) in an atomic bitmap. */
static void set_atomic(_Atomic uint64_t *bm, uint64_t p0, uint64_t p1)
{
	uint64_t w = p0 / 64, wl = p1 / 64;
	uint64_t lo = ~0ull << (p0 % 64), hi = ~0ull >> (63 - p1 % 64);

	if (w == wl) {
		atomic_fetch_or_explicit(&bm[w], lo & hi, memory_order_release);
		return;
	}
	atomic_fetch_or_explicit(&bm[w], lo, memory_order_release);
	for (w++; w < wl; w++)
		atomic_fetch_or_explicit(&bm[w], ~0ull, memory_order_release);
	atomic_fetch_or_explicit(&bm[wl], hi, memory_order_release);
}

void dirty_view_mark(struct dirty_view *v, uint64_t gpa, uint64_t len)
{
	uint64_t end;

	if (!len || gpa >= v->guest_size)
		return;
	end = len > v->guest_size - gpa ? v->guest_size : gpa + len;
	set_atomic(v->marks, gpa >> v->shift, (end - 1) >> v->shift);
}

void dirty_view_mark_all(struct dirty_view *v)
{
	set_atomic(v->marks, 0, v->pages - 1);
}

/* The client library wrote guest memory for a device's DMA_WRITE: IOVA is
 * the guest-physical address. Runs on that client's service thread. */
static void on_client_write(void *opaque, uint64_t iova, uint64_t len)
{
	struct view_dev *d = opaque;

	dirty_view_mark(d->v, iova, len);
}

/* The device's whole window, dirty. Lock held. */
static void window_dirty(struct dirty_view *v, const struct view_dev *d)
{
	uint64_t p0 = d->info.iova_base >> v->shift;
	uint64_t p1 = (d->info.iova_base + d->info.size - 1) >> v->shift;

	bitmap_set_range(v->collected, p0, p1 - p0 + 1);
}

/* ---- devices ---- */

static void set_why(struct view_dev *d, enum dirty_provider p, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_why(struct view_dev *d, enum dirty_provider p, const char *fmt, ...)
{
	va_list ap;

	d->info.provider = p;
	va_start(ap, fmt);
	vsnprintf(d->info.why, sizeof(d->info.why), fmt, ap);
	va_end(ap);
}

/* START on the window; *@tracked gets the device's page size. */
static int start_logging(struct dirty_view *v, struct view_dev *d, uint64_t *tracked)
{
	struct ferry_dirty_range r = {.iova = d->info.iova_base, .length = d->info.size};

	return ferry_client_dirty_start(d->c, v->page_size, &r, 1, tracked);
}

/* Applies the policy: probe, trial START + STOP. Lock held. Returns the
 * provider, or the errno when DEVICE_LOGGING cannot be had. */
static int choose_provider(struct dirty_view *v, struct view_dev *d)
{
	const char *name = ferry_client_name(d->c);
	uint64_t tracked = 0;
	int r;

	if (d->info.policy == DIRTY_POLICY_ALL_DIRTY) {
		set_why(d, DIRTY_PROVIDER_ALL_DIRTY, "policy all-dirty: the device is not asked");
		return DIRTY_PROVIDER_ALL_DIRTY;
	}
	r = ferry_client_dirty_probe(d->c);
	if (r < 0) {
		set_why(d, DIRTY_PROVIDER_ALL_DIRTY,
			"the device does not offer DMA logging (PROBE: %s)", strerror(-r));
	} else if ((r = start_logging(v, d, &tracked)) < 0) {
		set_why(d, DIRTY_PROVIDER_ALL_DIRTY,
			"DMA_LOGGING_START at page size %" PRIu64 " refused: %s", v->page_size,
			strerror(-r));
	} else if ((r = ferry_client_dirty_stop(d->c)) < 0) {
		set_why(d, DIRTY_PROVIDER_ALL_DIRTY, "DMA_LOGGING_STOP after a trial START "
			"failed: %s", strerror(-r));
	} else {
		d->info.tracked_page_size = tracked;
		set_why(d, DIRTY_PROVIDER_DEVICE_LOGGING,
			"policy %s: the device logs its DMA (tracks at %" PRIu64 " bytes); a "
			"REPORT moves %" PRIu64 " bitmap bytes a round instead of resending %" PRIu64
			" bytes", dirty_policy_name(d->info.policy), tracked,
			(d->info.size / v->page_size + 63) / 64 * 8, d->info.size);
		return DIRTY_PROVIDER_DEVICE_LOGGING;
	}
	if (d->info.policy == DIRTY_POLICY_DEVICE_LOGGING) {
		log_err("%s: dirty tracking policy device-logging, but %s", name, d->info.why);
		return r;
	}
	log_info("%s: dirty tracking falls back to all-dirty: %s", name, d->info.why);
	return DIRTY_PROVIDER_ALL_DIRTY;
}

int dirty_view_add_device(struct dirty_view *v, struct ferry_client *c, uint64_t iova_base,
			  uint64_t size, enum dirty_policy policy)
{
	struct view_dev *d, **devs;
	int r;

	if (!c || (unsigned)policy >= ARRAY_SIZE(policy_names) || !size ||
	    !range_ok(iova_base, size, v->guest_size) || ((iova_base | size) & (v->page_size - 1))) {
		log_err("dirty view: device window [0x%" PRIx64 ", +0x%" PRIx64 ") policy %d: want "
			"a page-aligned non-empty window inside 0x%" PRIx64 " bytes of guest memory",
			iova_base, size, (int)policy, v->guest_size);
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		log_err("dirty view: out of memory for a device");
		return -ENOMEM;
	}
	*d = (struct view_dev){.v = v, .c = c,
			       .info = {.policy = policy, .iova_base = iova_base, .size = size}};
	pthread_mutex_lock(&v->lock);
	if (v->is_started) {
		log_err("%s: dirty view: devices are added before start", ferry_client_name(c));
		r = -EINVAL;
		goto out_free;
	}
	devs = realloc(v->devs, (v->ndevs + 1) * sizeof(*devs));
	if (!devs) {
		log_err("dirty view: out of memory for %u devices", v->ndevs + 1);
		r = -ENOMEM;
		goto out_free;
	}
	v->devs = devs;
	r = choose_provider(v, d);
	if (r < 0)
		goto out_free;
	d->can_log = r == DIRTY_PROVIDER_DEVICE_LOGGING;
	memcpy(d->added_why, d->info.why, sizeof(d->added_why));
	v->devs[v->ndevs++] = d;
	pthread_mutex_unlock(&v->lock);
	return r;
out_free:
	pthread_mutex_unlock(&v->lock);
	free(d);
	return r;
}

/* ---- rounds ---- */

/* Undoes dirty_view_start's work on devices [0, n). Lock held. */
static int stop_devices(struct dirty_view *v, unsigned n)
{
	int first = 0;

	for (unsigned i = 0; i < n; i++) {
		struct view_dev *d = v->devs[i];

		ferry_client_set_dirty_callback(d->c, NULL, NULL);
		if (!d->is_logging)
			continue;
		d->is_logging = false;
		int r = ferry_client_dirty_stop(d->c);
		if (r < 0 && !first)
			first = r;
	}
	return first;
}

int dirty_view_start(struct dirty_view *v)
{
	int r = 0;

	pthread_mutex_lock(&v->lock);
	if (v->is_started) {
		log_err("dirty view: already started");
		r = -EINVAL;
		goto out;
	}
	for (unsigned i = 0; i < v->ndevs; i++) {
		struct view_dev *d = v->devs[i];
		uint64_t tracked = 0;

		ferry_client_set_dirty_callback(d->c, on_client_write, d);
		if (!d->can_log)
			continue;
		r = start_logging(v, d, &tracked);
		if (r == 0) { /* (again, after a fallback at an earlier start) */
			d->is_logging = true;
			d->info.tracked_page_size = tracked;
			d->info.provider = DIRTY_PROVIDER_DEVICE_LOGGING;
			memcpy(d->info.why, d->added_why, sizeof(d->info.why));
			continue;
		}
		if (d->info.policy == DIRTY_POLICY_DEVICE_LOGGING) {
			log_err("%s: dirty view start: DMA_LOGGING_START failed (%s) under policy "
				"device-logging", ferry_client_name(d->c), strerror(-r));
			stop_devices(v, i + 1);
			goto out;
		}
		set_why(d, DIRTY_PROVIDER_ALL_DIRTY, "DMA_LOGGING_START worked when probed, "
			"then failed at start (%s); tried again at the next start", strerror(-r));
		log_info("%s: dirty tracking falls back to all-dirty: %s", ferry_client_name(d->c),
			 d->info.why);
		d->info.tracked_page_size = 0;
		r = 0;
	}
	v->is_started = true;
out:
	pthread_mutex_unlock(&v->lock);
	return r;
}

int dirty_view_collect(struct dirty_view *v)
{
	int failed = 0;

	pthread_mutex_lock(&v->lock);
	if (!v->is_started) {
		pthread_mutex_unlock(&v->lock);
		log_err("dirty view: collect before start");
		return -EINVAL;
	}
	for (unsigned i = 0; i < v->ndevs; i++) {
		struct view_dev *d = v->devs[i];
		int r;

		d->info.collects++;
		if (!d->is_logging) {
			window_dirty(v, d);
			continue;
		}
		/* ORed straight into the view; on failure the client library has
		 * already set the whole window, and logged the reason. */
		r = ferry_client_dirty_report_at(d->c, d->info.iova_base, d->info.size,
						 v->page_size, v->collected,
						 d->info.iova_base >> v->shift);
		if (r == 0) {
			d->info.bitmap_bytes += (d->info.size / v->page_size + 63) / 64 * 8;
			continue;
		}
		/* Whatever the error, never trust a partial report. The client
		 * library logged the failure and that the range counts dirty; the
		 * record says so for the migration report. */
		window_dirty(v, d);
		d->info.report_errors++;
		d->info.last_error = r;
		failed++;
	}
	pthread_mutex_unlock(&v->lock);
	return failed;
}

uint64_t dirty_view_take(struct dirty_view *v, uint64_t *out)
{
	uint64_t n = 0;

	pthread_mutex_lock(&v->lock);
	for (size_t w = 0; w < v->words; w++) {
		uint64_t m = atomic_load_explicit(&v->marks[w], memory_order_relaxed);
		uint64_t c = v->collected[w];

		if (m) /* acquire pairs with the markers' release */
			m = atomic_exchange_explicit(&v->marks[w], 0, memory_order_acquire);
		if (c)
			v->collected[w] = 0;
		out[w] = m | c;
		n += (uint64_t)__builtin_popcountll(m | c);
	}
	pthread_mutex_unlock(&v->lock);
	return n;
}

int dirty_view_stop(struct dirty_view *v)
{
	int r = 0;

	pthread_mutex_lock(&v->lock);
	if (v->is_started) {
		r = stop_devices(v, v->ndevs);
		v->is_started = false;
	}
	pthread_mutex_unlock(&v->lock);
	return r;
}

unsigned dirty_view_device_count(struct dirty_view *v)
{
	unsigned n;

	pthread_mutex_lock(&v->lock);
	n = v->ndevs;
	pthread_mutex_unlock(&v->lock);
	return n;
}

int dirty_view_device_get(struct dirty_view *v, unsigned i, struct dirty_view_device *out)
{
	int r = -EINVAL;

	pthread_mutex_lock(&v->lock);
	if (i < v->ndevs) {
		*out = v->devs[i]->info;
		r = 0;
	}
	pthread_mutex_unlock(&v->lock);
	return r;
}
