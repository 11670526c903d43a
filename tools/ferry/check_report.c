/*
 * ferry check: the rows, progress lines, and the two outputs (a table, or
 * JSON with --json) printed from the same rows.
 */
#include "check_priv.h"

#include <errno.h>
#include <json-c/json.h>
#include <string.h>

const char *chk_result_name(enum chk_result r)
{
	switch (r) {
	case CHK_PASS:
		return "PASS";
	case CHK_FAIL:
		return "FAIL";
	case CHK_WARN:
		return "WARN";
	case CHK_SKIP:
		return "SKIP";
	}
	return "?";
}

void chk_add(struct chk_ctx *x, enum chk_result r, const char *name, const char *fmt, ...)
{
	va_list ap;
	if (x->nrows >= CHK_MAX_ROWS) {
		x->dropped++;
		return;
	}
	struct chk_row *row = &x->rows[x->nrows++];
	snprintf(row->name, sizeof(row->name), "%s", name);
	row->result = r;
	va_start(ap, fmt);
	vsnprintf(row->reason, sizeof(row->reason), fmt, ap);
	va_end(ap);
}

unsigned chk_count(const struct chk_ctx *x, enum chk_result r)
{
	unsigned n = 0;
	for (unsigned i = 0; i < x->nrows; i++)
		n += x->rows[i].result == r;
	return n;
}

void chk_progress(struct chk_ctx *x, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(x->current, sizeof(x->current), fmt, ap);
	va_end(ap);
	fputs(x->progress_tty ? "\r\033[K" : "", stderr);
	fprintf(stderr, "ferry check: [%u] %s", x->nrows + 1, x->current);
	fputs(x->progress_tty ? "" : "\n", stderr);
	fflush(stderr);
}

void chk_progress_done(struct chk_ctx *x)
{
	if (x->progress_tty)
		fputs("\r\033[K", stderr);
}

void chk_print_text(const struct chk_ctx *x, FILE *out)
{
	int w = (int)strlen("CHECK");
	for (unsigned i = 0; i < x->nrows; i++) {
		int n = (int)strlen(x->rows[i].name);
		w = n > w ? n : w;
	}
	fprintf(out, "ferry check %s%s%s%s\n\n", x->dev.path, x->has_peer ? " --peer " : "",
		x->has_peer ? x->peer.path : "", x->strict ? " --strict" : "");
	fprintf(out, "%-6s %-*s  %s\n", "RESULT", w, "CHECK", "REASON");
	for (unsigned i = 0; i < x->nrows; i++) {
		const struct chk_row *r = &x->rows[i];
		fprintf(out, "%-6s %-*s  %s\n", chk_result_name(r->result), w, r->name, r->reason);
	}
	if (x->dropped)
		fprintf(out, "(%u more rows did not fit: a bug in ferry check)\n", x->dropped);
	fprintf(out, "\n%u checks: %u passed, %u failed, %u warnings, %u skipped\n", x->nrows,
		chk_count(x, CHK_PASS), chk_count(x, CHK_FAIL), chk_count(x, CHK_WARN),
		chk_count(x, CHK_SKIP));
}

int chk_print_json(const struct chk_ctx *x, FILE *out)
{
	json_object *root = json_object_new_object(), *rows = json_object_new_array();
	json_object *sum = json_object_new_object();
	if (!root || !rows || !sum) {
		json_object_put(root);
		json_object_put(rows);
		json_object_put(sum);
		return -ENOMEM;
	}
	json_object_object_add(root, "device", json_object_new_string(x->dev.path));
	json_object_object_add(root, "peer",
			       x->has_peer ? json_object_new_string(x->peer.path) : NULL);
	json_object_object_add(root, "strict", json_object_new_boolean(x->strict));
	for (unsigned i = 0; i < x->nrows; i++) {
		const struct chk_row *r = &x->rows[i];
		json_object *o = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(r->name));
		json_object_object_add(o, "result", json_object_new_string(chk_result_name(r->result)));
		json_object_object_add(o, "reason", json_object_new_string(r->reason));
		json_object_array_add(rows, o);
	}
	json_object_object_add(root, "checks", rows);
	json_object_object_add(sum, "total", json_object_new_int((int)x->nrows));
	json_object_object_add(sum, "pass", json_object_new_int((int)chk_count(x, CHK_PASS)));
	json_object_object_add(sum, "fail", json_object_new_int((int)chk_count(x, CHK_FAIL)));
	json_object_object_add(sum, "warn", json_object_new_int((int)chk_count(x, CHK_WARN)));
	json_object_object_add(sum, "skip", json_object_new_int((int)chk_count(x, CHK_SKIP)));
	json_object_object_add(root, "summary", sum);
	json_object_object_add(root, "ok",
			       json_object_new_boolean(!chk_count(x, CHK_FAIL) && !x->dropped));
	fprintf(out, "%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
								  JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
	return 0;
}
