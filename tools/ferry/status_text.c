/*
 * The status reply as text (status_cmd.h). Every field is type-checked: a
 * missing or malformed one prints as "?" and is counted.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "human.h"
#include "json_field.h"
#include "progress_bar.h"
#include "report_text.h"
#include "status_cmd.h"

#define CELL 48

struct ctx {
	const char *what;
	unsigned bad;
};

static bool ok_or_count(struct ctx *x, int e, const char *key)
{
	if (e < 0) {
		x->bad++;
		jf_warn(e, x->what, key);
		return false;
	}
	return true;
}

static const char *u64_cell(struct ctx *x, json_object *o, const char *key, char *buf)
{
	uint64_t v;

	if (!ok_or_count(x, jf_u64(o, key, &v), key))
		return "?";
	snprintf(buf, CELL, "%" PRIu64, v);
	return buf;
}

static const char *str_cell(struct ctx *x, json_object *o, const char *key, const char *if_null)
{
	const char *s;
	int e = if_null ? jf_str_or_null(o, key, &s) : jf_str(o, key, &s);

	if (!ok_or_count(x, e, key))
		return "?";
	return s ? s : if_null;
}

static const char *bool_cell(struct ctx *x, json_object *o, const char *key)
{
	bool b;

	if (!ok_or_count(x, jf_bool(o, key, &b), key))
		return "?";
	return b ? "yes" : "no";
}

/* "STOP_COPY,P2P,PRE_COPY", or "-" when empty. */
static const char *flags_cell(struct ctx *x, json_object *d, char *buf, size_t len)
{
	json_object *a;
	size_t pos = 0;

	if (!ok_or_count(x, jf_array(d, "mig_flags", &a), "mig_flags"))
		return "?";
	buf[0] = '\0';
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		json_object *f = json_object_array_get_idx(a, i);
		const char *s = json_object_is_type(f, json_type_string) ? json_object_get_string(f)
									  : "?";

		if (!json_object_is_type(f, json_type_string))
			ok_or_count(x, -EINVAL, "mig_flags[]");
		int n = snprintf(buf + pos, len - pos, "%s%s", pos ? "," : "", s);

		if (n < 0 || (size_t)n >= len - pos)
			break;
		pos += (size_t)n;
	}
	return pos ? buf : "-";
}

static void print_devices(struct ctx *x, json_object *st, FILE *out)
{
	json_object *a;
	char b[2][CELL], flags[128];

	if (!ok_or_count(x, jf_array(st, "devices", &a), "devices"))
		return;
	fprintf(out, "\nDevices\n  %3s  %-5s %-14s %-15s %-24s %s\n", "#", "kind", "state",
		"dirty provider", "migration flags", "socket");
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		json_object *d = json_object_array_get_idx(a, i);

		if (!json_object_is_type(d, json_type_object)) {
			ok_or_count(x, -EINVAL, "devices[]");
			continue;
		}
		fprintf(out, "  %3s  %-5s %-14s %-15s %-24s %s\n", u64_cell(x, d, "index", b[0]),
			str_cell(x, d, "kind", NULL), str_cell(x, d, "state", NULL),
			str_cell(x, d, "dirty_provider", "none"),
			flags_cell(x, d, flags, sizeof(flags)), str_cell(x, d, "socket", NULL));
	}
}

static void print_workloads(struct ctx *x, json_object *wl, FILE *out)
{
	char b[5][CELL];

	fprintf(out, "\nWorkloads\n  %6s  %-5s %-7s %12s %12s %12s %8s\n", "device", "kind",
		"running", "submitted", "completed", "verified", "errors");
	for (size_t i = 0; i < json_object_array_length(wl); i++) {
		json_object *w = json_object_array_get_idx(wl, i);

		if (!json_object_is_type(w, json_type_object)) {
			ok_or_count(x, -EINVAL, "workloads[]");
			continue;
		}
		fprintf(out, "  %6s  %-5s %-7s %12s %12s %12s %8s\n", u64_cell(x, w, "device", b[0]),
			str_cell(x, w, "kind", NULL), bool_cell(x, w, "running"),
			u64_cell(x, w, "submitted", b[1]), u64_cell(x, w, "completed", b[2]),
			u64_cell(x, w, "verified", b[3]), u64_cell(x, w, "errors", b[4]));
	}
}

static void print_migration(struct ctx *x, json_object *st, FILE *out)
{
	json_object *m, *last;
	char line[512];

	if (ok_or_count(x, jf_object_or_null(st, "migration", &m), "migration") && m) {
		x->bad += progress_format(m, line, sizeof(line), NULL);
		fprintf(out, "\nMigration in progress\n  %s\n", line);
	}
	if (!ok_or_count(x, jf_object_or_null(st, "last_migration", &last), "last_migration"))
		return;
	fprintf(out, "\nLast migration\n");
	if (!last)
		fprintf(out, "  none\n");
	else
		x->bad += report_print_summary(last, out, "  ");
}

static void print_verify(struct ctx *x, json_object *v, FILE *out)
{
	json_object *wl;
	uint64_t mismatches;
	bool ok;
	const char *error;

	fprintf(out, "\nVerify\n");
	if (!ok_or_count(x, jf_bool(v, "ok", &ok), "ok")) {
		fprintf(out, "  malformed verify reply\n");
		return;
	}
	if (!ok) {
		if (jf_str(v, "error", &error) < 0)
			error = "(no reason given)";
		fprintf(out, "  failed: %s\n", error);
	}
	if (jf_u64(v, "mismatches", &mismatches) < 0) {
		if (ok)
			ok_or_count(x, jf_u64(v, "mismatches", &mismatches), "mismatches");
		return;
	}
	fprintf(out, "  %" PRIu64 " mismatch%s: %s\n", mismatches, mismatches == 1 ? "" : "es",
		ok && !mismatches ? "every completed operation's data checks out" : "DATA DIFFERS");
	if (mismatches && jf_array(v, "workloads", &wl) == 0)
		print_workloads(x, wl, out); /* which workloads' data differs */
}

unsigned status_print_text(json_object *st, json_object *verify, FILE *out)
{
	struct ctx x = {.what = "status reply"};
	char b[HUMAN_MAX];
	uint64_t mem;
	json_object *wl;

	fprintf(out, "Host: %s", str_cell(&x, st, "role", NULL));
	if (ok_or_count(&x, jf_u64(st, "mem_bytes", &mem), "mem_bytes"))
		fprintf(out, ", guest memory %s", human_bytes(b, sizeof(b), mem));
	fprintf(out, "\n");
	print_devices(&x, st, out);
	if (ok_or_count(&x, jf_array(st, "workloads", &wl), "workloads"))
		print_workloads(&x, wl, out);
	print_migration(&x, st, out);
	if (verify) {
		x.what = "verify reply";
		print_verify(&x, verify, out);
	}
	if (x.bad)
		fprintf(out, "\n(%u field%s missing or malformed: shown as ?)\n", x.bad,
			x.bad == 1 ? "" : "s");
	return x.bad;
}
