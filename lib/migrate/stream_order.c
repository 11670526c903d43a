/* The order rules of the migration stream (see stream_order.h). */
#include "migrate/stream_order.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void mig_order_init(struct mig_order *o)
{
	memset(o, 0, sizeof(*o));
}

static int check_device(const struct mig_order *o, const struct mig_order_event *ev, char *why,
			size_t whylen)
{
	if (ev->device >= o->ndevices) {
		snprintf(why, whylen, "device %u out of range (the manifest lists %u)", ev->device,
			 o->ndevices);
		return -EBADMSG;
	}
	if (o->is_ended[ev->device]) {
		snprintf(why, whylen, "device %u already had its DEVICE_END", ev->device);
		return -EPROTO;
	}
	return 0;
}

int mig_order_check(const struct mig_order *o, const struct mig_order_event *ev, char *why,
		    size_t whylen)
{
	const char *no = NULL;

	if (o->has_end)
		no = "nothing may follow END";
	else if (!o->has_manifest && ev->type != MIG_SEC_MANIFEST)
		no = "the stream must open with a MANIFEST section";
	if (no) {
		snprintf(why, whylen, "%s", no);
		return -EPROTO;
	}

	switch (ev->type) {
	case MIG_SEC_MANIFEST:
		if (o->has_manifest)
			no = "a second MANIFEST";
		break;
	case MIG_SEC_GUEST_PAGES:
		if (o->has_checksums)
			no = "guest pages after CHECKSUMS";
		break;
	case MIG_SEC_DEVICE_DATA:
		return check_device(o, ev, why, whylen);
	case MIG_SEC_DEVICE_END:
		if (!o->has_switchover)
			no = "DEVICE_END before SWITCHOVER (a device stream ends in stop-copy)";
		else
			return check_device(o, ev, why, whylen);
		break;
	case MIG_SEC_ROUND_END:
		if (o->has_switchover) {
			no = "ROUND_END after SWITCHOVER";
		} else if (ev->round != o->last_round + 1 || o->last_round == UINT32_MAX) {
			snprintf(why, whylen, "round %u where round %u was expected", ev->round,
				 o->last_round + 1);
			return -EPROTO;
		}
		break;
	case MIG_SEC_SWITCHOVER:
		if (o->has_switchover)
			no = "a second SWITCHOVER";
		break;
	case MIG_SEC_CHECKSUMS:
	case MIG_SEC_END:
		if (ev->type == MIG_SEC_CHECKSUMS && o->has_checksums)
			no = "a second CHECKSUMS";
		else if (!o->has_switchover)
			no = ev->type == MIG_SEC_END ? "END before SWITCHOVER"
						     : "CHECKSUMS before SWITCHOVER";
		else if (o->nended < o->ndevices) {
			for (uint32_t i = 0; i < o->ndevices; i++) {
				if (!o->is_ended[i]) {
					snprintf(why, whylen,
						 "%s while device %u (and %u in all) has no DEVICE_END",
						 mig_section_type_str(ev->type), i,
						 o->ndevices - o->nended);
					return -EPROTO;
				}
			}
		} else if (ev->type == MIG_SEC_END && !o->has_checksums)
			no = "END before CHECKSUMS";
		break;
	default:
		snprintf(why, whylen, "unknown section type %u", ev->type);
		return -EBADMSG;
	}
	if (no) {
		snprintf(why, whylen, "%s", no);
		return -EPROTO;
	}
	return 0;
}

void mig_order_commit(struct mig_order *o, const struct mig_order_event *ev, uint32_t ndevices)
{
	switch (ev->type) {
	case MIG_SEC_MANIFEST:
		o->has_manifest = true;
		o->ndevices = ndevices < MIG_MAX_DEVICES ? ndevices : MIG_MAX_DEVICES;
		break;
	case MIG_SEC_DEVICE_END:
		if (ev->device < MIG_MAX_DEVICES && !o->is_ended[ev->device]) {
			o->is_ended[ev->device] = true;
			o->nended++;
		}
		break;
	case MIG_SEC_ROUND_END:
		o->last_round = ev->round;
		break;
	case MIG_SEC_SWITCHOVER:
		o->has_switchover = true;
		break;
	case MIG_SEC_CHECKSUMS:
		o->has_checksums = true;
		break;
	case MIG_SEC_END:
		o->has_end = true;
		break;
	default:
		break;
	}
}
