/* The migration report and progress events as JSON (see report.h). */
#include "migrate/report.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *mig_outcome_str(enum mig_outcome o)
{
	switch (o) {
	case MIG_OUTCOME_RUNNING: return "running";
	case MIG_OUTCOME_SUCCESS: return "success";
	case MIG_OUTCOME_SAVED: return "saved";
	case MIG_OUTCOME_FAILED: return "failed";
	case MIG_OUTCOME_CANCELLED: return "cancelled";
	}
	return "unknown";
}

const char *mig_verdict_str(enum mig_verdict v)
{
	switch (v) {
	case MIG_VERDICT_SKIPPED: return "skipped";
	case MIG_VERDICT_MATCH: return "match";
	case MIG_VERDICT_MISMATCH: return "mismatch";
	}
	return "unknown";
}

const char *mig_phase_str(enum mig_phase p)
{
	static const char *const names[] = {
		[MIG_PHASE_SETUP] = "setup",
		[MIG_PHASE_PRECOPY] = "precopy",
		[MIG_PHASE_SWITCHOVER] = "switchover",
		[MIG_PHASE_STOPCOPY] = "stopcopy",
		[MIG_PHASE_VERIFY] = "verify",
		[MIG_PHASE_DONE] = "done",
	};

	if ((unsigned)p >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[p];
}

void mig_report_init(struct mig_report *r, bool is_destination, const char *uri,
		     uint32_t downtime_budget_ms)
{
	memset(r, 0, sizeof(*r));
	r->is_destination = is_destination;
	r->downtime_budget_ms = downtime_budget_ms;
	if (uri)
		snprintf(r->uri, sizeof(r->uri), "%s", uri);
}

struct mig_round_report *mig_report_add_round(struct mig_report *r)
{
	if (r->nrounds >= MIG_REPORT_MAX_ROUNDS)
		return NULL;
	struct mig_round_report *rr = &r->rounds[r->nrounds++];

	memset(rr, 0, sizeof(*rr));
	rr->round = r->nrounds;
	return rr;
}

void mig_report_step(struct mig_report *r, const char *name, double ms)
{
	if (r->nsteps < MIG_REPORT_MAX_STEPS)
		r->steps[r->nsteps++] = (struct mig_step){.name = name, .ms = ms};
}

void mig_report_fail(struct mig_report *r, int err, const char *fmt, ...)
{
	va_list ap;

	if (r->error)
		return;
	r->error = err < 0 ? err : -EIO;
	r->outcome = err == -ECANCELED ? MIG_OUTCOME_CANCELLED : MIG_OUTCOME_FAILED;
	va_start(ap, fmt);
	vsnprintf(r->error_msg, sizeof(r->error_msg), fmt, ap);
	va_end(ap);
}

static void add_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

/* Milliseconds with 0.1 ms resolution: enough, and short to print. */
static void add_ms(json_object *o, const char *key, double ms)
{
	double tenths = (double)(int64_t)(ms * 10.0 + 0.5);

	json_object_object_add(o, key, json_object_new_double(tenths / 10.0));
}

static json_object *rounds_json(const struct mig_report *r)
{
	json_object *a = json_object_new_array();

	for (uint32_t i = 0; a && i < r->nrounds; i++) {
		const struct mig_round_report *rr = &r->rounds[i];
		json_object *o = json_object_new_object();

		if (!o)
			break;
		add_u64(o, "round", rr->round);
		add_u64(o, "bytes", rr->bytes);
		add_u64(o, "pages", rr->pages);
		add_u64(o, "zero_pages", rr->zero_pages);
		add_u64(o, "dirty_pages", rr->dirty_pages);
		add_u64(o, "device_bytes", rr->device_bytes);
		add_ms(o, "duration_ms", rr->duration_ms);
		json_object_array_add(a, o);
	}
	return a;
}

static json_object *devices_json(const struct mig_report *r)
{
	json_object *a = json_object_new_array();

	for (uint32_t i = 0; a && i < r->ndevices; i++) {
		const struct mig_device_report *d = &r->devices[i];
		json_object *o = json_object_new_object();

		if (!o)
			break;
		add_u64(o, "index", i);
		json_object_object_add(o, "kind", json_object_new_string(d->kind));
		add_u64(o, "bytes", d->bytes);
		add_u64(o, "precopy_bytes", d->precopy_bytes);
		add_u64(o, "stopcopy_bytes", d->stopcopy_bytes);
		json_object_object_add(o, "dirty_provider",
				       d->dirty_provider ? json_object_new_string(d->dirty_provider)
							 : NULL);
		json_object_array_add(a, o);
	}
	return a;
}

json_object *mig_report_to_json(const struct mig_report *r)
{
	json_object *o = json_object_new_object();
	json_object *v;

	if (!o)
		return NULL;
	json_object_object_add(o, "outcome", json_object_new_string(mig_outcome_str(r->outcome)));
	json_object_object_add(o, "error",
			       r->error_msg[0] ? json_object_new_string(r->error_msg) : NULL);
	json_object_object_add(o, "role", json_object_new_string(r->is_destination ? "destination"
										     : "source"));
	json_object_object_add(o, "uri", json_object_new_string(r->uri));
	add_ms(o, "total_ms", r->total_ms);
	add_ms(o, "downtime_ms", r->downtime_ms);
	add_u64(o, "downtime_budget_ms", r->downtime_budget_ms);
	add_ms(o, "predicted_downtime_ms", r->predicted_downtime_ms);
	json_object_object_add(o, "switchover_reason",
			       r->switchover_reason ? json_object_new_string(r->switchover_reason)
						    : NULL);
	json_object_object_add(o, "rounds", rounds_json(r));
	json_object_object_add(o, "devices", devices_json(r));
	add_u64(o, "bytes_total", r->bytes_total);
	add_u64(o, "memory_bytes", r->memory_bytes);
	add_u64(o, "pages_total", r->pages_total);
	add_u64(o, "zero_pages_total", r->zero_pages_total);
	add_u64(o, "hole_pages", r->hole_pages);
	json_object_object_add(o, "bandwidth_bytes_per_s",
			       json_object_new_double((double)(uint64_t)r->bandwidth_bytes_per_s));
	if (r->measured_bandwidth_bytes_per_s > 0.0)
		json_object_object_add(o, "measured_bandwidth_bytes_per_s",
				       json_object_new_double(
					       (double)(uint64_t)r->measured_bandwidth_bytes_per_s));
	v = json_object_new_array();
	for (uint32_t i = 0; v && i < r->nsteps; i++) {
		json_object *st = json_object_new_object();

		if (!st)
			break;
		json_object_object_add(st, "step", json_object_new_string(r->steps[i].name));
		add_ms(st, "ms", r->steps[i].ms);
		json_object_array_add(v, st);
	}
	json_object_object_add(o, "downtime_steps", v);
	v = json_object_new_object();
	if (v) {
		json_object_object_add(v, "guest_memory",
				       json_object_new_string(mig_verdict_str(r->verify_memory)));
		json_object_object_add(v, "devices",
				       json_object_new_string(mig_verdict_str(r->verify_devices)));
	}
	json_object_object_add(o, "verification", v);
	return o;
}

json_object *mig_progress_to_json(const struct mig_progress *p)
{
	json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "event", json_object_new_string("progress"));
	json_object_object_add(o, "phase", json_object_new_string(mig_phase_str(p->phase)));
	add_u64(o, "round", p->round);
	add_u64(o, "bytes_sent", p->bytes_sent);
	add_u64(o, "bytes_remaining", p->bytes_remaining);
	add_u64(o, "rate_bytes_per_s", (uint64_t)p->rate_bytes_per_s);
	add_u64(o, "predicted_downtime_ms", p->predicted_downtime_ms);
	add_u64(o, "dirty_pages", p->dirty_pages);
	return o;
}
