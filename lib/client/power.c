/*
 * Low power, client side (include/ferry/client_power.h, docs/power.md): the
 * LOW_POWER_ENTRY(_WITH_WAKEUP) / LOW_POWER_EXIT requests of ferry's
 * low_power extension, and what they mean for this process's mappings of
 * the device's regions.
 *
 * State (struct client_power, created on first use): whether the mappings
 * are held inaccessible (is_low) and, for a wakeup entry, a duplicate of
 * the caller's eventfd, watched with poll() and never read. Both are
 * guarded by the client's `lock`, like the mappings. op_lock serialises
 * the requests themselves and is held across the call: two threads
 * entering at once get one entry and one -EINVAL, never two half-applied
 * mapping changes.
 *
 * Order of an entry: mappings off first, then the request (as the kernel
 * zaps the mappings before engaging), then back on if the device refused.
 * An exit gives them back only once the device answered.
 */
#include "client/client_priv.h"
#include "util/log.h"

#include <ferry/client_power.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct client_power {
	pthread_mutex_t op_lock; /* serialises entry / exit requests */
	bool is_low;             /* under c->lock: mappings held inaccessible */
	int wake_fd;             /* under c->lock: our duplicate of the wakeup eventfd, or -1 */
};

static int get_power(struct ferry_client *c, struct client_power **out)
{
	pthread_mutex_lock(&c->lock);
	if (!c->pm) {
		struct client_power *pm = calloc(1, sizeof(*pm));
		if (pm) {
			pthread_mutex_init(&pm->op_lock, NULL);
			pm->wake_fd = -1;
			c->pm = pm;
		}
	}
	*out = c->pm;
	pthread_mutex_unlock(&c->lock);
	if (!*out) {
		log_err("%s: low power: out of memory", c->name);
		return -ENOMEM;
	}
	return 0;
}

void client_power_free(struct ferry_client *c)
{
	struct client_power *pm = c->pm;
	if (!pm)
		return;
	if (pm->wake_fd >= 0)
		close(pm->wake_fd);
	pthread_mutex_destroy(&pm->op_lock);
	free(pm);
	c->pm = NULL;
}

/* ---- mappings ---- */

static int protect(struct ferry_client *c, struct client_region *reg, uint64_t off,
		   uint64_t size, int prot)
{
	if (!size || mprotect((uint8_t *)reg->map_base + off, (size_t)size, prot) == 0)
		return 0;
	int e = -errno;
	log_err("%s: region %u: mprotect of 0x%llx+0x%llx to %s failed: %s", c->name,
		reg->desc.index, (unsigned long long)off, (unsigned long long)size,
		prot == PROT_NONE ? "no access" : "its access", strerror(-e));
	return e;
}

/* Makes the mapped areas of @reg inaccessible, or gives them back their
 * access. The gaps between sparse areas stay inaccessible either way. */
static int set_region_access(struct ferry_client *c, struct client_region *reg, bool on)
{
	const struct ferry_region_desc *d = &reg->desc;
	int prot = PROT_NONE;
	int r = 0;

	if (!reg->map_base)
		return 0;
	if (on)
		prot = (d->flags & VFIO_REGION_INFO_FLAG_READ ? PROT_READ : 0) |
		       (d->flags & VFIO_REGION_INFO_FLAG_WRITE ? PROT_WRITE : 0);
	if (!d->has_sparse)
		return protect(c, reg, 0, d->size, prot);
	for (unsigned i = 0; i < d->nr_areas && r == 0; i++)
		r = protect(c, reg, d->areas[i].offset, d->areas[i].size, prot);
	return r;
}

/* Every mapping on or off. Turning off stops at the first failure after
 * turning the others back on; turning on does all it can. Lock held. */
static int set_all_access_locked(struct ferry_client *c, bool on)
{
	int r = 0;

	for (uint32_t i = 0; c->regions && i < c->device.num_regions; i++) {
		if (!c->regions[i])
			continue;
		int e = set_region_access(c, c->regions[i], on);
		if (e < 0 && !on) {
			for (uint32_t j = 0; j <= i; j++)
				if (c->regions[j])
					set_region_access(c, c->regions[j], true);
			return e;
		}
		if (e < 0 && r == 0)
			r = e;
	}
	return r;
}

int client_power_mapped_locked(struct ferry_client *c, struct client_region *reg)
{
	if (!c->pm || !c->pm->is_low)
		return 0;
	int r = set_region_access(c, reg, false);
	if (r < 0) {
		munmap(reg->map_base, reg->map_len);
		reg->map_base = NULL;
		reg->map_len = 0;
	}
	return r;
}

/* Low power is over (exit or wake-up): mappings back, eventfd dropped. */
static void leave_locked(struct ferry_client *c)
{
	struct client_power *pm = c->pm;
	if (pm->is_low)
		set_all_access_locked(c, true);
	pm->is_low = false;
	if (pm->wake_fd >= 0)
		close(pm->wake_fd);
	pm->wake_fd = -1;
}

static bool is_readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Notices a wake-up signalled on the wakeup eventfd. Lock held. */
static void refresh_locked(struct ferry_client *c)
{
	struct client_power *pm = c->pm;
	if (!pm || !pm->is_low || pm->wake_fd < 0 || !is_readable(pm->wake_fd))
		return;
	log_info("%s: the device woke from low power (wakeup eventfd): mappings accessible again",
		 c->name);
	leave_locked(c);
}

/* ---- requests ---- */

static int check_negotiated(struct ferry_client *c, const char *what)
{
	if (c->caps.extensions & FERRY_EXT_LOW_POWER)
		return 0;
	log_err("%s: %s: the server did not negotiate the low_power extension", c->name, what);
	return -EOPNOTSUPP;
}

/* Sends an entry (@wake_fd >= 0: with wakeup, consumed) with the mappings
 * off, keeping them off if the device agrees. */
static int enter(struct ferry_client *c, uint32_t feature, const char *what, int wake_fd)
{
	struct vfio_user_low_power_entry_with_wakeup w = {.wakeup_eventfd = 0};
	struct client_power *pm;
	int r;

	if ((r = check_negotiated(c, what)) < 0 || (r = get_power(c, &pm)) < 0) {
		if (wake_fd >= 0)
			close(wake_fd);
		return r;
	}
	pthread_mutex_lock(&pm->op_lock);
	pthread_mutex_lock(&c->lock);
	refresh_locked(c);
	if (pm->is_low) {
		r = -EINVAL;
		log_err("%s: %s: low power is already engaged", c->name, what);
	} else if ((r = set_all_access_locked(c, false)) == 0) {
		pm->is_low = true;
	}
	pthread_mutex_unlock(&c->lock);

	if (r == 0) {
		r = ferry_client_feature(c, feature | VFIO_DEVICE_FEATURE_SET,
					 wake_fd >= 0 ? &w : NULL, wake_fd >= 0 ? sizeof(w) : 0,
					 &wake_fd, wake_fd >= 0 ? 1 : 0, NULL, 0, NULL);
		pthread_mutex_lock(&c->lock);
		if (r < 0) {
			log_err("%s: %s refused by the device: %s", c->name, what, strerror(-r));
			set_all_access_locked(c, true);
			pm->is_low = false;
		} else if (wake_fd >= 0) {
			pm->wake_fd = wake_fd;
			wake_fd = -1;
		}
		pthread_mutex_unlock(&c->lock);
	}
	if (wake_fd >= 0)
		close(wake_fd);
	pthread_mutex_unlock(&pm->op_lock);
	return r;
}

int ferry_client_low_power_enter(struct ferry_client *c)
{
	return enter(c, VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, "LOW_POWER_ENTRY", -1);
}

int ferry_client_low_power_enter_wakeup(struct ferry_client *c, int eventfd)
{
	const char *what = "LOW_POWER_ENTRY_WITH_WAKEUP";
	int fd;

	if (eventfd < 0) {
		log_err("%s: %s: eventfd %d", c->name, what, eventfd);
		return -EINVAL;
	}
	if ((fd = fcntl(eventfd, F_DUPFD_CLOEXEC, 3)) < 0) {
		int e = -errno;
		log_err("%s: %s: eventfd %d: %s", c->name, what, eventfd, strerror(-e));
		return e;
	}
	if (is_readable(fd)) {
		log_err("%s: %s: eventfd %d has a count already: drain it first, or a wake-up "
			"could not be told", c->name, what, eventfd);
		close(fd);
		return -EINVAL;
	}
	return enter(c, VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP, what, fd);
}

int ferry_client_low_power_exit(struct ferry_client *c)
{
	struct client_power *pm;
	int r;

	if ((r = check_negotiated(c, "LOW_POWER_EXIT")) < 0 || (r = get_power(c, &pm)) < 0)
		return r;
	pthread_mutex_lock(&pm->op_lock);
	r = ferry_client_feature(c, VFIO_DEVICE_FEATURE_LOW_POWER_EXIT | VFIO_DEVICE_FEATURE_SET,
				 NULL, 0, NULL, 0, NULL, 0, NULL);
	if (r < 0) {
		log_err("%s: LOW_POWER_EXIT refused by the device: %s", c->name, strerror(-r));
	} else {
		pthread_mutex_lock(&c->lock);
		leave_locked(c);
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_unlock(&pm->op_lock);
	return r;
}

int ferry_client_low_power_poll(struct ferry_client *c)
{
	pthread_mutex_lock(&c->lock);
	refresh_locked(c);
	int r = c->pm && c->pm->is_low;
	pthread_mutex_unlock(&c->lock);
	return r;
}

bool ferry_client_region_access_ok(struct ferry_client *c, unsigned index)
{
	pthread_mutex_lock(&c->lock);
	refresh_locked(c);
	struct client_region *reg =
		c->regions && index < c->device.num_regions ? c->regions[index] : NULL;
	bool ok = reg && reg->map_base && !(c->pm && c->pm->is_low);
	pthread_mutex_unlock(&c->lock);
	return ok;
}
