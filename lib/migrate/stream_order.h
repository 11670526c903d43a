/*
 * The order rules of the migration stream: the one place that decides which
 * section may come next. The writer checks its caller against them (a bug
 * in the engine fails before it reaches the wire) and the reader checks the
 * peer against them.
 *
 *   MANIFEST      first, exactly once
 *   GUEST_PAGES   any time before CHECKSUMS
 *   DEVICE_DATA   device < ndevices, before that device's DEVICE_END
 *   DEVICE_END    after SWITCHOVER, once per device
 *   ROUND_END     before SWITCHOVER, rounds numbered 1, 2, 3, ...
 *   SWITCHOVER    at most once
 *   CHECKSUMS     once, after SWITCHOVER and every DEVICE_END
 *   END           after CHECKSUMS; nothing may follow it
 *
 * Pure: no allocation, no logging.
 */
#ifndef FERRY_MIGRATE_STREAM_ORDER_H
#define FERRY_MIGRATE_STREAM_ORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migrate/stream_format.h"

struct mig_order {
	uint32_t ndevices; /* set from the manifest once it is accepted */
	bool has_manifest, has_switchover, has_checksums, has_end;
	uint32_t last_round;
	uint32_t nended;
	bool is_ended[MIG_MAX_DEVICES];
};

/* What a section claims, as far as the rules care. */
struct mig_order_event {
	uint32_t type;
	uint32_t device; /* DEVICE_DATA, DEVICE_END */
	uint32_t round;  /* ROUND_END */
};

void mig_order_init(struct mig_order *o);

/* Returns 0 if @ev may come next, else -EPROTO (-EBADMSG for a device index
 * out of range) with the reason in @why. Changes nothing. */
int mig_order_check(const struct mig_order *o, const struct mig_order_event *ev, char *why,
		    size_t whylen);

/* Records @ev, which mig_order_check accepted. For MANIFEST, @ndevices is
 * the manifest's device count (ignored otherwise). */
void mig_order_commit(struct mig_order *o, const struct mig_order_event *ev, uint32_t ndevices);

#endif
