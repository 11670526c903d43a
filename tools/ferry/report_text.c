/*
 * The migration REPORT as text (report_text.h).
 *
 * Each figure goes through one of the fmt_* helpers below: they read one
 * field with its type checked and write either the formatted value or "?"
 * into a caller buffer, counting (and logging once) what was wrong.
 */
#include "report_text.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "human.h"
#include "json_field.h"

#define CELL 48

struct ctx {
	const char *what; /* "migration report", for warnings */
	unsigned bad;
};

static int check(struct ctx *x, int e, const char *key)
{
	if (e < 0) {
		x->bad++;
		jf_warn(e, x->what, key);
	}
	return e;
}

static const char *fmt_u64(struct ctx *x, json_object *o, const char *key, char *buf)
{
	uint64_t v;

	if (check(x, jf_u64(o, key, &v), key) < 0)
		return "?";
	snprintf(buf, CELL, "%" PRIu64, v);
	return buf;
}

static const char *fmt_bytes(struct ctx *x, json_object *o, const char *key, char *buf)
{
	uint64_t v;

	if (check(x, jf_u64(o, key, &v), key) < 0)
		return "?";
	return human_bytes(buf, CELL, v);
}

static const char *fmt_ms(struct ctx *x, json_object *o, const char *key, char *buf)
{
	double v;

	if (check(x, jf_double(o, key, &v), key) < 0 || v < 0) {
		if (v < 0)
			x->bad++;
		return "?";
	}
	return human_ms(buf, CELL, v);
}

static const char *fmt_rate(struct ctx *x, json_object *o, const char *key, char *buf)
{
	double v = 0;

	if (check(x, jf_double(o, key, &v), key) < 0 || v < 0)
		return "?";
	return human_rate(buf, CELL, v);
}

static const char *fmt_str(struct ctx *x, json_object *o, const char *key)
{
	const char *s;

	if (check(x, jf_str(o, key, &s), key) < 0)
		return "?";
	return s;
}

/* A string or null (shown as @if_null). */
static const char *fmt_str_null(struct ctx *x, json_object *o, const char *key,
				const char *if_null)
{
	const char *s;

	if (check(x, jf_str_or_null(o, key, &s), key) < 0)
		return "?";
	return s ? s : if_null;
}

static bool has(json_object *o, const char *key)
{
	return json_object_object_get_ex(o, key, NULL);
}

static void print_round(struct ctx *x, json_object *r, FILE *out)
{
	char b[7][CELL];

	if (!json_object_is_type(r, json_type_object)) {
		check(x, -EINVAL, "rounds[]");
		fprintf(out, "  %5s  (not an object)\n", "?");
		return;
	}
	fprintf(out, "  %5s %11s %9s %10s %11s %12s %10s\n", fmt_u64(x, r, "round", b[0]),
		fmt_bytes(x, r, "bytes", b[1]), fmt_u64(x, r, "pages", b[2]),
		fmt_u64(x, r, "zero_pages", b[3]), fmt_u64(x, r, "dirty_pages", b[4]),
		has(r, "device_bytes") ? fmt_bytes(x, r, "device_bytes", b[5]) : "-",
		fmt_ms(x, r, "duration_ms", b[6]));
}

static void print_rounds(struct ctx *x, json_object *report, FILE *out)
{
	json_object *a;

	if (check(x, jf_array(report, "rounds", &a), "rounds") < 0)
		return;
	size_t n = json_object_array_length(a);

	if (!n)
		return;
	fprintf(out, "\n  %5s %11s %9s %10s %11s %12s %10s\n", "round", "bytes", "pages",
		"zero pages", "dirty pages", "device bytes", "duration");
	for (size_t i = 0; i < n; i++) {
		if (n > REPORT_ROUNDS_SHOWN && i == REPORT_ROUNDS_SHOWN / 2) {
			size_t skip = n - REPORT_ROUNDS_SHOWN;

			fprintf(out, "  ... %zu rounds not shown\n", skip);
			i += skip - 1;
			continue;
		}
		print_round(x, json_object_array_get_idx(a, i), out);
	}
}

static void print_devices(struct ctx *x, json_object *report, FILE *out)
{
	json_object *a;
	char b[5][CELL];

	if (check(x, jf_array(report, "devices", &a), "devices") < 0)
		return;
	size_t n = json_object_array_length(a);

	if (!n)
		return;
	fprintf(out, "\n  %6s  %-6s %11s %11s %11s  %s\n", "device", "kind", "bytes", "pre-copy",
		"stop-copy", "dirty provider");
	for (size_t i = 0; i < n; i++) {
		json_object *d = json_object_array_get_idx(a, i);

		if (!json_object_is_type(d, json_type_object)) {
			check(x, -EINVAL, "devices[]");
			continue;
		}
		fprintf(out, "  %6s  %-6s %11s %11s %11s  %s\n",
			has(d, "index") ? fmt_u64(x, d, "index", b[0]) : (snprintf(b[0], CELL, "%zu", i), b[0]),
			fmt_str(x, d, "kind"), fmt_bytes(x, d, "bytes", b[1]),
			fmt_bytes(x, d, "precopy_bytes", b[2]), fmt_bytes(x, d, "stopcopy_bytes", b[3]),
			fmt_str_null(x, d, "dirty_provider", "none"));
	}
}

static void print_verification(struct ctx *x, json_object *report, FILE *out)
{
	json_object *v;

	if (check(x, jf_object_or_null(report, "verification", &v), "verification") < 0)
		return;
	if (!v) {
		fprintf(out, "\n  verification    not done\n");
		return;
	}
	fprintf(out, "\n  verification    guest memory %s, devices %s\n",
		fmt_str(x, v, "guest_memory"), fmt_str(x, v, "devices"));
}

/* Where the downtime went: "pause 0.1 ms, devices to STOP_COPY 2.0 ms, ..." */
static void print_steps(struct ctx *x, json_object *report, FILE *out)
{
	json_object *a;
	char b[CELL];

	if (check(x, jf_array(report, "downtime_steps", &a), "downtime_steps") < 0)
		return;
	int col = fprintf(out, "  downtime steps ");

	for (size_t i = 0; i < json_object_array_length(a); i++) {
		json_object *st = json_object_array_get_idx(a, i);
		const char *name = fmt_str(x, st, "step"), *ms = fmt_ms(x, st, "ms", b);

		if (i && col + (int)(strlen(name) + strlen(ms)) + 3 > REPORT_WIDTH)
			col = fprintf(out, ",\n%17s", "") - 1;
		else if (i)
			col += fprintf(out, ",");
		col += fprintf(out, " %s %s", name, ms);
	}
	fprintf(out, "\n");
}

/* "converged after 3 rounds" / "round-limit after 30 rounds" / "none". */
static void print_switchover(struct ctx *x, json_object *report, FILE *out)
{
	const char *reason = fmt_str_null(x, report, "switchover_reason", NULL);
	json_object *a;
	size_t n = 0;

	if (jf_array(report, "rounds", &a) == 0)
		n = json_object_array_length(a);
	if (!reason)
		fprintf(out, "  switchover      not reached\n");
	else
		fprintf(out, "  switchover      %s after %zu round%s\n", reason, n, n == 1 ? "" : "s");
}

unsigned report_print_text(json_object *report, FILE *out)
{
	struct ctx x = {.what = "migration report"};
	char b[8][CELL];

	if (!json_object_is_type(report, json_type_object)) {
		fprintf(out, "migration report: (not an object)\n");
		jf_warn(-EINVAL, x.what, "report");
		return 1;
	}
	const char *error = fmt_str_null(&x, report, "error", NULL);

	fprintf(out, "Migration %s %s: %s\n",
		has(report, "role") && !strcmp(fmt_str(&x, report, "role"), "destination") ? "from"
											   : "to",
		fmt_str(&x, report, "uri"), fmt_str(&x, report, "outcome"));
	if (error)
		fprintf(out, "  error           %s\n", error);
	fprintf(out, "  total time      %s\n", fmt_ms(&x, report, "total_ms", b[0]));
	fprintf(out, "  downtime        %s (budget %s", fmt_ms(&x, report, "downtime_ms", b[1]),
		fmt_u64(&x, report, "downtime_budget_ms", b[2]));
	if (has(report, "predicted_downtime_ms"))
		fprintf(out, " ms, predicted %s)\n",
			fmt_ms(&x, report, "predicted_downtime_ms", b[3]));
	else
		fprintf(out, " ms)\n");
	if (has(report, "downtime_steps"))
		print_steps(&x, report, out);
	print_switchover(&x, report, out);
	fprintf(out, "  bandwidth       %s", fmt_rate(&x, report, "bandwidth_bytes_per_s", b[4]));
	if (has(report, "measured_bandwidth_bytes_per_s"))
		fprintf(out, " on average, %s measured in the rounds",
			fmt_rate(&x, report, "measured_bandwidth_bytes_per_s", b[7]));
	fprintf(out, "\n");
	fprintf(out, "  bytes sent      %s", fmt_bytes(&x, report, "bytes_total", b[5]));
	if (has(report, "memory_bytes"))
		fprintf(out, " (guest memory %s", fmt_bytes(&x, report, "memory_bytes", b[6]));
	if (has(report, "pages_total"))
		fprintf(out, "%s %s pages", has(report, "memory_bytes") ? ";" : " (",
			fmt_u64(&x, report, "pages_total", b[7]));
	if (has(report, "zero_pages_total"))
		fprintf(out, ", %s zero", fmt_u64(&x, report, "zero_pages_total", b[7]));
	fprintf(out, "%s\n", has(report, "memory_bytes") || has(report, "pages_total") ? ")" : "");
	print_rounds(&x, report, out);
	print_devices(&x, report, out);
	print_verification(&x, report, out);
	if (x.bad)
		fprintf(out, "\n  (%u field%s of this report %s missing or malformed: shown as ?)\n",
			x.bad, x.bad == 1 ? "" : "s", x.bad == 1 ? "was" : "were");
	return x.bad;
}

unsigned report_print_summary(json_object *report, FILE *out, const char *indent)
{
	struct ctx x = {.what = "last migration report"};
	char b[6][CELL];
	json_object *a;
	size_t n = 0;

	if (!json_object_is_type(report, json_type_object)) {
		fprintf(out, "%s(malformed report)\n", indent);
		jf_warn(-EINVAL, x.what, "last_migration");
		return 1;
	}
	if (jf_array(report, "rounds", &a) == 0)
		n = json_object_array_length(a);
	const char *error = fmt_str_null(&x, report, "error", NULL);

	const char *role = NULL;
	bool is_dest = jf_str(report, "role", &role) == 0 && !strcmp(role, "destination");

	if (is_dest) {
		/* the receiving side: no budget nor switchover decision of its own */
		fprintf(out, "%sincoming %s, %s: total %s, downtime here %s, %zu round%s\n", indent,
			fmt_str(&x, report, "outcome"), fmt_str(&x, report, "uri"),
			fmt_ms(&x, report, "total_ms", b[0]), fmt_ms(&x, report, "downtime_ms", b[1]),
			n, n == 1 ? "" : "s");
		fprintf(out, "%s%s received at %s", indent, fmt_bytes(&x, report, "bytes_total", b[3]),
			fmt_rate(&x, report, "bandwidth_bytes_per_s", b[4]));
	} else {
		fprintf(out, "%s%s, %s: total %s, downtime %s (budget %s ms), %zu round%s\n", indent,
			fmt_str(&x, report, "outcome"), fmt_str(&x, report, "uri"),
			fmt_ms(&x, report, "total_ms", b[0]), fmt_ms(&x, report, "downtime_ms", b[1]),
			fmt_u64(&x, report, "downtime_budget_ms", b[2]), n, n == 1 ? "" : "s");
		fprintf(out, "%s%s sent at %s, switchover %s", indent,
			fmt_bytes(&x, report, "bytes_total", b[3]),
			fmt_rate(&x, report, "bandwidth_bytes_per_s", b[4]),
			fmt_str_null(&x, report, "switchover_reason", "not reached"));
	}
	if (error)
		fprintf(out, ", error: %s", error);
	fprintf(out, "\n");
	return x.bad;
}
