/*
 * Low power: the kernel's LOW_POWER_ENTRY (3), LOW_POWER_ENTRY_WITH_WAKEUP
 * (4) and LOW_POWER_EXIT (5) device features (PROTOCOL.md §7.6, UAPI
 * <linux/vfio.h>), offered only to a client that negotiated ferry's
 * low_power extension: vfio-user has no way to pass the wakeup eventfd,
 * ferry sends it as an fd (docs/protocol-extensions.md). Semantics, in a
 * table: docs/power.md.
 *
 * Concepts.
 * - An *entry* is the client's permission for the device to be in low
 *   power: none, plain (3), or with a wakeup eventfd (4). A second entry
 *   while one is engaged is refused (EINVAL), as in the kernel.
 * - While an entry is engaged and no work needs the device, it is *asleep*:
 *   PMCSR reads D3hot and the model was told power_changed(true).
 * - Work that needs the device (a region access outside config space, a
 *   reset, migration work) is bracketed by power_wake_for/power_wake_done.
 *   A plain entry wakes for the work and sleeps again after it; a wakeup
 *   entry wakes, signals its eventfd once and is over (the kernel's
 *   one-shot rule: no re-entry without a new ENTRY, EXIT optional).
 * - EXIT ends an entry; a wakeup entry whose eventfd has not fired gets it
 *   signalled, as the kernel's EXIT ioctl resumes the suspended device and
 *   its resume path signals. EXIT without an entry succeeds (no-op).
 * - A disconnect ends the entry without signalling (the kernel's close).
 * - Config space never wakes the device (a D3hot function answers config
 *   cycles); a PMCSR write cannot take an asleep device out of D3hot:
 *   power is the client's (host's) decision, as the kernel keeps runtime PM
 *   apart from the guest's PMCSR. On waking PMCSR reads D0, whatever the
 *   guest wrote before the entry (the kernel moves the device to D0 before
 *   suspending it).
 *
 * Simple on purpose: the device sleeps at once on entry (the kernel's
 * runtime PM may wait for idleness first; nothing a client can observe
 * depends on it but PMCSR, which then reads D3hot right away), and device-
 * initiated wakes (PME) do not exist: a model in low power starts nothing.
 *
 * Everything here runs on the message thread; PMCSR is config space, so it
 * is written under irq_lock.
 */
#include "device/device_priv.h"
#include "util/log.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum power_entry {
	POWER_ENTRY_NONE,
	POWER_ENTRY_PLAIN,  /* LOW_POWER_ENTRY */
	POWER_ENTRY_WAKEUP, /* LOW_POWER_ENTRY_WITH_WAKEUP */
};

#define PMCSR_D0 0u
#define PMCSR_D3HOT 3u

void power_init(struct ferry_device *dev)
{
	dev->pm_entry = POWER_ENTRY_NONE;
	dev->pm_is_asleep = false;
	dev->pm_wake_depth = 0;
	dev->pm_wake_fd = -1;
}

static void set_asleep(struct ferry_device *dev, bool asleep)
{
	pthread_mutex_lock(&dev->irq_lock);
	pci_config_set_power_state(dev->cfg, asleep ? PMCSR_D3HOT : PMCSR_D0);
	pthread_mutex_unlock(&dev->irq_lock);
	dev->pm_is_asleep = asleep;
	if (dev->ops.power_changed)
		dev->ops.power_changed(dev->info.opaque, asleep);
}

/* Ends the engaged entry: the device wakes, then (@signal) the eventfd of a
 * wakeup entry is signalled; the eventfd is closed either way. */
static void end_entry(struct ferry_device *dev, bool signal, const char *why)
{
	if (dev->pm_is_asleep)
		set_asleep(dev, false);
	if (dev->pm_entry == POWER_ENTRY_WAKEUP && signal) {
		if (eventfd_write(dev->pm_wake_fd, 1) < 0)
			log_err("%s: low power ends (%s) but the wakeup eventfd cannot be "
				"signalled: %s", dev->name, why, strerror(errno));
		else
			log_info("%s: low power ends (%s): wakeup eventfd signalled", dev->name, why);
	} else {
		log_info("%s: low power ends (%s)", dev->name, why);
	}
	if (dev->pm_wake_fd >= 0)
		close(dev->pm_wake_fd);
	dev->pm_wake_fd = -1;
	dev->pm_entry = POWER_ENTRY_NONE;
}

void power_wake_for(struct ferry_device *dev, const char *why)
{
	if (dev->pm_wake_depth++ || !dev->pm_is_asleep)
		return;
	if (dev->pm_entry == POWER_ENTRY_WAKEUP) {
		end_entry(dev, true, why);
		return;
	}
	log_debug("%s: awake from low power for %s", dev->name, why);
	set_asleep(dev, false);
}

void power_wake_done(struct ferry_device *dev)
{
	assert(dev->pm_wake_depth > 0);
	if (--dev->pm_wake_depth || dev->pm_entry != POWER_ENTRY_PLAIN || dev->pm_is_asleep)
		return;
	set_asleep(dev, true);
}

void power_pmcsr_written_locked(struct ferry_device *dev)
{
	if (!dev->pm_is_asleep)
		return;
	log_debug("%s: PMCSR power state write ignored: the device is in low power (D3hot) "
		  "until the client's LOW_POWER_EXIT or a wake", dev->name);
	pci_config_set_power_state(dev->cfg, PMCSR_D3HOT);
}

void power_release_client(struct ferry_device *dev)
{
	if (dev->pm_entry != POWER_ENTRY_NONE)
		end_entry(dev, false, "the client disconnected; eventfd not signalled");
}

/* ---- the features ---- */

static const char *entry_name(enum power_entry e)
{
	return e == POWER_ENTRY_WAKEUP ? "LOW_POWER_ENTRY_WITH_WAKEUP" : "LOW_POWER_ENTRY";
}

static bool is_offered(const struct ferry_device *dev)
{
	return dev->conn && dev->conn->is_negotiated &&
	       (dev->conn->caps.ferry_ext & WIRE_EXT_LOW_POWER);
}

static int check_not_engaged(struct ferry_device *dev, enum power_entry e)
{
	if (dev->pm_entry == POWER_ENTRY_NONE)
		return 0;
	log_err("%s: %s refused: %s is already engaged", dev->name, entry_name(e),
		entry_name(dev->pm_entry));
	return -EINVAL;
}

/* Consumes @wake_fd (-1 for none). */
static void enter(struct ferry_device *dev, enum power_entry e, int wake_fd)
{
	dev->pm_entry = (uint8_t)e;
	dev->pm_wake_fd = wake_fd;
	if (!dev->pm_wake_depth)
		set_asleep(dev, true);
	log_info("%s: low power entered (%s)", dev->name, entry_name(e));
}

static int set_entry(struct ferry_device *dev, uint8_t *data, uint32_t len)
{
	int r;

	(void)data, (void)len; /* no data; more is ignored, as the kernel does */
	if ((r = check_not_engaged(dev, POWER_ENTRY_PLAIN)) < 0)
		return r;
	enter(dev, POWER_ENTRY_PLAIN, -1);
	return 0;
}

/* What /proc says the fd is: eventfds are anonymous inodes named so (the
 * one reliable test from userspace; without /proc every fd is refused). */
static bool is_eventfd(int fd)
{
	char path[40], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return !strcmp(target, "anon_inode:[eventfd]");
}

static int set_entry_wakeup(struct ferry_device *dev, uint8_t *data, uint32_t len,
			    struct wire_msg *m)
{
	struct vfio_user_low_power_entry_with_wakeup w;
	const char *why = NULL;
	int r;

	(void)len; /* >= sizeof(w): the envelope checked min_set_len */
	memcpy(&w, data, sizeof(w));
	if (m->nfds != 1)
		why = "exactly one fd, the wakeup eventfd, must come with it";
	else if (w.wakeup_eventfd != 0)
		why = "wakeup_eventfd must be 0, the index of the attached fd";
	else if (w.reserved)
		why = "reserved must be 0";
	else if (!is_eventfd(m->fds[0]))
		why = "the attached fd is not an eventfd";
	if (why) {
		log_err("%s: LOW_POWER_ENTRY_WITH_WAKEUP with wakeup_eventfd %d, reserved 0x%x, "
			"%u fds: %s", dev->name, w.wakeup_eventfd, w.reserved, m->nfds, why);
		return -EINVAL;
	}
	if ((r = check_not_engaged(dev, POWER_ENTRY_WAKEUP)) < 0)
		return r;
	enter(dev, POWER_ENTRY_WAKEUP, wire_msg_take_fd(m, 0));
	return 0;
}

static int set_exit(struct ferry_device *dev, uint8_t *data, uint32_t len)
{
	(void)data, (void)len;
	if (dev->pm_entry == POWER_ENTRY_NONE) {
		log_debug("%s: LOW_POWER_EXIT without an entry (or after a wake-up): nothing to do",
			  dev->name);
		return 0;
	}
	end_entry(dev, true, "LOW_POWER_EXIT");
	return 0;
}

const struct feature_ops feature_low_power_entry = {
	.index = VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
	.name = "LOW_POWER_ENTRY",
	.ops = VFIO_DEVICE_FEATURE_SET,
	.is_present = is_offered,
	.set = set_entry,
};

const struct feature_ops feature_low_power_entry_wakeup = {
	.index = VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP,
	.name = "LOW_POWER_ENTRY_WITH_WAKEUP",
	.ops = VFIO_DEVICE_FEATURE_SET,
	.min_set_len = sizeof(struct vfio_user_low_power_entry_with_wakeup),
	.is_present = is_offered,
	.max_fds = 1,
	.set_fds = set_entry_wakeup,
};

const struct feature_ops feature_low_power_exit = {
	.index = VFIO_DEVICE_FEATURE_LOW_POWER_EXIT,
	.name = "LOW_POWER_EXIT",
	.ops = VFIO_DEVICE_FEATURE_SET,
	.is_present = is_offered,
	.set = set_exit,
};
