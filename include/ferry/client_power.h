/*
 * libferry, client side: device low power (the kernel's VFIO
 * LOW_POWER_ENTRY, LOW_POWER_ENTRY_WITH_WAKEUP and LOW_POWER_EXIT device
 * features) over vfio-user, through ferry's low_power protocol extension.
 * Semantics: docs/power.md; wire format: docs/protocol-extensions.md.
 *
 * Mappings. As the kernel disables mmap access on entry until the exit,
 * the library makes every mapping made by ferry_client_region_map()
 * inaccessible (PROT_NONE) before it asks for low power, and gives it back
 * after the exit or once it has seen the wake-up. Touching such a mapping
 * meanwhile faults with SIGSEGV (SEGV_ACCERR) (the kernel's vfio-pci sends
 * SIGBUS there): the library installs no signal handler, because a handler
 * is process-wide state a library must not take. Callers that may race
 * with low power ask ferry_client_region_access_ok() first, or go through
 * ferry_client_region_read/write, which are always served (a trapped
 * access wakes the device, see docs/power.md). Mappings made while in low
 * power are inaccessible too.
 *
 * Wake-up. A device that entered with a wakeup eventfd wakes for good on
 * the first access that needs it and signals the eventfd once. The library
 * keeps a duplicate of the eventfd and watches it without reading it (the
 * count stays the caller's): ferry_client_low_power_poll() and
 * ferry_client_region_access_ok() notice the wake-up and give the mappings
 * back. A caller that reads the eventfd first should call
 * ferry_client_low_power_exit() afterwards (a no-op on the device once the
 * wake-up was signalled) to get the mappings back.
 *
 * Raw DEVICE_FEATURE requests of these features (ferry_client_feature)
 * bypass all of this: mappings are not touched.
 *
 * Threads: every function may be called from any thread; entries and exits
 * are serialised. Errors are negative errno values with one log line.
 */
#ifndef FERRY_CLIENT_POWER_H
#define FERRY_CLIENT_POWER_H

#include <stdbool.h>

#include <ferry/client.h>

#ifdef __cplusplus
extern "C" {
#endif

/* LOW_POWER_ENTRY: the device may stay in low power; each access that needs
 * it wakes it for that access only. Mappings stay inaccessible until
 * ferry_client_low_power_exit(). -EOPNOTSUPP (nothing sent) if the server
 * did not negotiate low_power; -EINVAL if low power is already engaged;
 * the server's errno otherwise (the mappings are given back then). */
FERRY_API int ferry_client_low_power_enter(struct ferry_client *c);

/* LOW_POWER_ENTRY_WITH_WAKEUP: as ferry_client_low_power_enter(), but the
 * first wake-up is final and signals @eventfd once. @eventfd is duplicated
 * (in transit and for watching), never consumed; its count must be 0 on
 * entry (-EINVAL otherwise: the library could not tell a wake-up). -EBADF
 * if it is not an open fd; the server refuses an fd that is not an eventfd
 * (-EINVAL). Other errors as for ferry_client_low_power_enter(). */
FERRY_API int ferry_client_low_power_enter_wakeup(struct ferry_client *c, int eventfd);

/* LOW_POWER_EXIT: the device leaves low power (signalling the wakeup
 * eventfd if it had one that had not fired, as the kernel does) and the
 * mappings come back. Succeeds without an entry, and after a wake-up.
 * -EOPNOTSUPP (nothing sent) if low_power was not negotiated. */
FERRY_API int ferry_client_low_power_exit(struct ferry_client *c);

/* Whether the library still holds the device in low power: 1 yes (mappings
 * inaccessible), 0 no (never entered, exited, or the wakeup eventfd fired:
 * the mappings were given back by this call). Sends nothing. */
FERRY_API int ferry_client_low_power_poll(struct ferry_client *c);

/* True if region @index is mapped by ferry_client_region_map() and its
 * mapping may be touched now (not held inaccessible for low power; a
 * wake-up is noticed as by ferry_client_low_power_poll()). */
FERRY_API bool ferry_client_region_access_ok(struct ferry_client *c, unsigned index);

#ifdef __cplusplus
}
#endif
#endif /* FERRY_CLIENT_POWER_H */
