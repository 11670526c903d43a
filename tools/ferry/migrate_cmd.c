/*
 * ferry migrate --control PATH --to URI [--downtime-ms N] [--max-rounds N]
 *               [--json] [--idle-timeout-s N] [--no-progress]
 *
 * Sends one migrate request on the host's control socket, draws the
 * progress events on stderr and, when the done line arrives, prints its
 * report: a table on stdout, or with --json the REPORT object itself.
 *
 * The first SIGINT/SIGTERM asks the host to cancel (on a second
 * connection) and keeps waiting for the done line, whose outcome is then
 * "cancelled" and the source resumed; a second one gives up at once.
 *
 * If the host goes away before the done line (it crashed, or was killed)
 * the command says so and fails; with --json it still prints an object
 * with "outcome":"failed" and the reason, so scripts always get JSON.
 */
#include "migrate_cmd.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control_client.h"
#include "json_field.h"
#include "progress_bar.h"
#include "report_text.h"

#define SEND_TIMEOUT_MS 5000
#define CANCEL_TIMEOUT_MS 5000
/* Malformed lines tolerated before the host is deemed broken. */
#define MAX_MALFORMED 100

struct migrate_opts {
	const char *control;
	const char *to;
	long downtime_ms; /* -1: the host's default */
	long max_rounds;  /* -1: the host's default */
	bool json;
	bool progress;
	long idle_timeout_s; /* 0: wait as long as the host is there */
};

static volatile sig_atomic_t signals_seen;

static void on_signal(int sig)
{
	(void)sig;
	signals_seen++;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ferry migrate --control PATH --to URI [--downtime-ms N] [--max-rounds N]\n"
		"                     [--json] [--idle-timeout-s N] [--no-progress]\n"
		"  --control PATH       the host's control socket (ferry host --control)\n"
		"  --to URI             tcp:HOST:PORT, unix:PATH or file:PATH\n"
		"  --downtime-ms N      downtime budget (default: the host's, 300)\n"
		"  --max-rounds N       pre-copy round limit (default: the host's, 30)\n"
		"  --json               print the report as JSON on stdout\n"
		"  --idle-timeout-s N   give up when the host says nothing for N seconds\n"
		"  --no-progress        no progress line on stderr\n"
		"Exit status: 0 when the migration succeeded, 1 when not, 2 on a usage error.\n");
}

static int parse_long(const char *opt, const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "ferry migrate: %s wants %ld..%ld, not '%s'\n", opt, min, max, s);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static int parse_args(int argc, char **argv, struct migrate_opts *o)
{
	*o = (struct migrate_opts){.downtime_ms = -1, .max_rounds = -1, .progress = true};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool has_val = i + 1 < argc;
		int e = 0;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 1;
		} else if (!strcmp(a, "--json")) {
			o->json = true;
		} else if (!strcmp(a, "--no-progress")) {
			o->progress = false;
		} else if (!strcmp(a, "--control") && has_val) {
			o->control = argv[++i];
		} else if (!strcmp(a, "--to") && has_val) {
			o->to = argv[++i];
		} else if (!strcmp(a, "--downtime-ms") && has_val) {
			e = parse_long(a, argv[++i], 1, 3600000, &o->downtime_ms);
		} else if (!strcmp(a, "--max-rounds") && has_val) {
			e = parse_long(a, argv[++i], 1, 1000000, &o->max_rounds);
		} else if (!strcmp(a, "--idle-timeout-s") && has_val) {
			e = parse_long(a, argv[++i], 0, 86400, &o->idle_timeout_s);
		} else {
			fprintf(stderr, "ferry migrate: unexpected argument '%s'%s\n", a,
				a[0] == '-' && !has_val ? " (or its value is missing)" : "");
			e = -EINVAL;
		}
		if (e < 0)
			return e;
	}
	if (!o->control || !o->to) {
		fprintf(stderr, "ferry migrate: --control and --to are required\n");
		return -EINVAL;
	}
	return 0;
}

static json_object *migrate_request(const struct migrate_opts *o)
{
	json_object *req = ctl_request_new("migrate");

	if (!req)
		return NULL;
	json_object_object_add(req, "to", json_object_new_string(o->to));
	if (o->downtime_ms >= 0)
		json_object_object_add(req, "downtime_ms", json_object_new_int64(o->downtime_ms));
	if (o->max_rounds >= 0)
		json_object_object_add(req, "max_rounds", json_object_new_int64(o->max_rounds));
	return req;
}

/* Asks the host, on a connection of its own, to cancel the migration. */
static void send_cancel(const char *control)
{
	struct ctl_client *c;
	json_object *req = ctl_request_new("cancel"), *reply = NULL;
	bool cancelled = false;

	fprintf(stderr, "\nferry migrate: interrupted: asking the host to cancel "
			"(interrupt again to stop waiting)\n");
	if (!req || ctl_connect(control, &c) < 0) {
		json_object_put(req);
		return;
	}
	if (ctl_call(c, req, CANCEL_TIMEOUT_MS, &reply) == 0 &&
	    jf_bool(reply, "cancelled", &cancelled) == 0 && !cancelled)
		fprintf(stderr, "ferry migrate: the host had no migration left to cancel\n");
	json_object_put(reply);
	json_object_put(req);
	ctl_close(c);
}

/* The done line, or NULL with @why filled when the host went away. */
static json_object *wait_done(struct ctl_client *c, const struct migrate_opts *o,
			      struct progress_bar *bar, char *why, size_t why_len)
{
	unsigned malformed = 0;
	int handled_signals = 0;
	int timeout_ms = o->idle_timeout_s > 0 ? (int)o->idle_timeout_s * 1000 : -1;

	for (;;) {
		json_object *ev = NULL;
		const char *s;
		int e = ctl_read_json(c, timeout_ms, &ev);

		if (signals_seen != handled_signals) {
			if (signals_seen > 1 || handled_signals) {
				snprintf(why, why_len, "interrupted; the host may still be migrating");
				json_object_put(ev);
				return NULL;
			}
			handled_signals = signals_seen;
			progress_finish(bar);
			send_cancel(o->control);
		}
		if (e == -EINTR)
			continue;
		if (e == -EBADMSG || e == -EMSGSIZE) {
			if (++malformed > MAX_MALFORMED) {
				snprintf(why, why_len, "the host sent %u malformed lines; giving up",
					 malformed);
				return NULL;
			}
			continue;
		}
		if (e == -ECONNRESET) {
			snprintf(why, why_len,
				 "the host closed the control connection before the migration "
				 "finished (did ferry host exit or crash?)");
			return NULL;
		}
		if (e == -ETIMEDOUT) {
			snprintf(why, why_len, "no word from the host for %ld s", o->idle_timeout_s);
			return NULL;
		}
		if (e < 0) {
			snprintf(why, why_len, "reading from the host: %s", strerror(-e));
			return NULL;
		}
		if (jf_str(ev, "event", &s) == 0 && !strcmp(s, "progress")) {
			if (o->progress)
				progress_update(bar, ev);
			json_object_put(ev);
			continue;
		}
		if (jf_str(ev, "event", &s) == 0 && !strcmp(s, "done"))
			return ev;
		if (json_object_object_get_ex(ev, "ok", NULL) &&
		    !json_object_object_get_ex(ev, "event", NULL))
			return ev; /* a plain reply: the request was refused */
		/* an event this version does not know: skip it */
		json_object_put(ev);
	}
}

/* A REPORT-shaped object for a migration whose done line never came. */
static json_object *failure_report(const struct migrate_opts *o, const char *why)
{
	json_object *r = json_object_new_object();

	if (!r)
		return NULL;
	json_object_object_add(r, "outcome", json_object_new_string("failed"));
	json_object_object_add(r, "error", json_object_new_string(why));
	json_object_object_add(r, "uri", json_object_new_string(o->to));
	return r;
}

static void print_json(json_object *o)
{
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							      JSON_C_TO_STRING_NOSLASHESCAPE);

	printf("%s\n", s ? s : "null");
}

/* Prints the outcome of a done line (or refusal) @done; returns the exit
 * status. */
static int finish(const struct migrate_opts *o, json_object *done)
{
	json_object *report = NULL;
	const char *error = NULL, *outcome = NULL;
	bool ok = false;

	if (jf_bool(done, "ok", &ok) < 0)
		jf_warn(-EINVAL, "migrate reply", "ok");
	if (jf_str(done, "error", &error) < 0)
		error = NULL;
	if (jf_object(done, "report", &report) < 0)
		report = NULL;
	if (report && jf_str(report, "outcome", &outcome) < 0)
		jf_warn(-EINVAL, "migration report", "outcome");

	if (!report) {
		char why[512];

		snprintf(why, sizeof(why), "%s", error ? error : "the host sent no report");
		json_object *r = failure_report(o, why);

		if (o->json && r)
			print_json(r);
		json_object_put(r);
		if (jf_str(done, "event", &outcome) == 0 && !strcmp(outcome, "done"))
			fprintf(stderr, "ferry migrate: migration failed: %s\n", why);
		else
			fprintf(stderr, "ferry migrate: the host refused: %s\n", why);
		return 1;
	}
	if (o->json)
		print_json(report);
	else
		report_print_text(report, stdout);
	fflush(stdout);

	bool success = ok && outcome &&
		       (!strcmp(outcome, "success") ||
			(!strcmp(outcome, "saved") && !strncmp(o->to, "file:", 5)));
	if (!success)
		fprintf(stderr, "ferry migrate: migration %s: %s\n", outcome ? outcome : "failed",
			error ? error : "see the report");
	return success ? 0 : 1;
}

int cmd_migrate(int argc, char **argv)
{
	struct migrate_opts o;
	struct progress_bar bar;
	struct ctl_client *c;
	json_object *req, *done;
	char why[512];
	int e = parse_args(argc, argv, &o);

	if (e > 0)
		return 0;
	if (e < 0) {
		usage(stderr);
		return 2;
	}
	e = ctl_connect(o.control, &c);
	if (e < 0) {
		fprintf(stderr, "ferry migrate: cannot reach the host at %s: %s (is `ferry host "
				"--control %s` running?)\n",
			o.control, strerror(-e), o.control);
		if (o.json) {
			snprintf(why, sizeof(why), "cannot reach the host at %s: %s", o.control,
				 strerror(-e));
			json_object *r = failure_report(&o, why);

			if (r)
				print_json(r);
			json_object_put(r);
		}
		return 1;
	}

	struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: poll sees EINTR */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	req = migrate_request(&o);
	e = req ? ctl_send(c, req, SEND_TIMEOUT_MS) : -ENOMEM;
	json_object_put(req);
	if (e < 0) {
		fprintf(stderr, "ferry migrate: cannot send the request: %s\n", strerror(-e));
		ctl_close(c);
		return 1;
	}
	progress_init(&bar, stderr, isatty(STDERR_FILENO));
	done = wait_done(c, &o, &bar, why, sizeof(why));
	progress_finish(&bar);
	ctl_close(c);
	if (!done) {
		fprintf(stderr, "ferry migrate: %s\n", why);
		if (o.json) {
			json_object *r = failure_report(&o, why);

			if (r)
				print_json(r);
			json_object_put(r);
		}
		return 1;
	}
	e = finish(&o, done);
	json_object_put(done);
	return e;
}
