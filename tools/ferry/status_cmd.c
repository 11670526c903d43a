/*
 * ferry status --control PATH [--json] [--verify] [--timeout-ms N]
 *
 * Sends {"cmd":"status"} and prints the reply: as text (status_text.c) or,
 * with --json, the reply object itself, pretty-printed. --verify then sends
 * {"cmd":"verify"} (the host pauses its workloads, checks every completed
 * operation's data and resumes them) and fails unless it reports zero
 * mismatches; with --json its reply is added to the printed object as
 * "verify".
 */
#include "status_cmd.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control_client.h"
#include "json_field.h"

#define STATUS_TIMEOUT_MS 10000
/* verify pauses every workload and re-reads its data: allow for big guests */
#define VERIFY_TIMEOUT_MS 120000

struct status_opts {
	const char *control;
	bool json;
	bool verify;
	long timeout_ms;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: ferry status --control PATH [--json] [--verify] [--timeout-ms N]\n"
		   "  --control PATH   the host's control socket (ferry host --control)\n"
		   "  --json           print the host's status object as JSON\n"
		   "  --verify         also check every workload's data (fails on a mismatch)\n"
		   "  --timeout-ms N   wait at most N ms for each reply (default 10000 for\n"
		   "                   status, 120000 for verify)\n"
		   "Exit status: 0 when the host answered (and --verify found no mismatch),\n"
		   "1 otherwise, 2 on a usage error.\n");
}

static int parse_args(int argc, char **argv, struct status_opts *o)
{
	*o = (struct status_opts){.timeout_ms = -1};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 1;
		} else if (!strcmp(a, "--json")) {
			o->json = true;
		} else if (!strcmp(a, "--verify")) {
			o->verify = true;
		} else if (!strcmp(a, "--control") && i + 1 < argc) {
			o->control = argv[++i];
		} else if (!strcmp(a, "--timeout-ms") && i + 1 < argc) {
			char *end;

			errno = 0;
			o->timeout_ms = strtol(argv[++i], &end, 10);
			if (errno || *end || end == argv[i] || o->timeout_ms < 1 ||
			    o->timeout_ms > 3600000) {
				fprintf(stderr, "ferry status: --timeout-ms wants 1..3600000, not '%s'\n",
					argv[i]);
				return -EINVAL;
			}
		} else {
			fprintf(stderr, "ferry status: unexpected argument '%s'\n", a);
			return -EINVAL;
		}
	}
	if (!o->control) {
		fprintf(stderr, "ferry status: --control is required\n");
		return -EINVAL;
	}
	return 0;
}

/* Sends {"cmd": @cmd} and returns the reply in *@reply. Prints why not. */
static int call(struct ctl_client *c, const char *cmd, int timeout_ms, json_object **reply)
{
	json_object *req = ctl_request_new(cmd);
	int e = req ? ctl_call(c, req, timeout_ms, reply) : -ENOMEM;

	json_object_put(req);
	if (e < 0) {
		const char *why = e == -ECONNRESET ? "the host closed the connection"
				  : e == -EBADMSG  ? "the host's reply is not one JSON object"
						   : strerror(-e);
		fprintf(stderr, "ferry status: %s request: %s\n", cmd, why);
	}
	return e;
}

/* True if @reply says "ok": true; otherwise prints the host's error. */
static bool reply_ok(const char *cmd, json_object *reply)
{
	bool ok = false;
	const char *error = NULL;

	if (jf_bool(reply, "ok", &ok) < 0) {
		fprintf(stderr, "ferry status: the %s reply has no boolean \"ok\"\n", cmd);
		return false;
	}
	if (!ok) {
		if (jf_str(reply, "error", &error) < 0)
			error = "(no reason given)";
		fprintf(stderr, "ferry status: the host refused %s: %s\n", cmd, error);
	}
	return ok;
}

/* Verify passed: ok and zero mismatches. Prints why not. */
static bool verify_passed(json_object *v)
{
	uint64_t mismatches = 0;
	bool has_count = jf_u64(v, "mismatches", &mismatches) == 0;

	if (mismatches) {
		fprintf(stderr, "ferry status: verify found %llu mismatch%s\n",
			(unsigned long long)mismatches, mismatches == 1 ? "" : "es");
		return false;
	}
	if (!reply_ok("verify", v))
		return false;
	if (!has_count) {
		fprintf(stderr, "ferry status: the verify reply has no count of \"mismatches\"\n");
		return false;
	}
	return true;
}

int cmd_status(int argc, char **argv)
{
	struct status_opts o;
	struct ctl_client *c;
	json_object *st = NULL, *verify = NULL;
	int status = 1;
	int e = parse_args(argc, argv, &o);

	if (e > 0)
		return 0;
	if (e < 0) {
		usage(stderr);
		return 2;
	}
	e = ctl_connect(o.control, &c);
	if (e < 0) {
		fprintf(stderr, "ferry status: cannot reach the host at %s: %s\n", o.control,
			strerror(-e));
		return 1;
	}
	if (call(c, "status", o.timeout_ms > 0 ? (int)o.timeout_ms : STATUS_TIMEOUT_MS, &st) < 0)
		goto out;
	if (!reply_ok("status", st))
		goto out;
	if (o.verify &&
	    call(c, "verify", o.timeout_ms > 0 ? (int)o.timeout_ms : VERIFY_TIMEOUT_MS, &verify) < 0)
		goto out;

	if (o.json) {
		if (verify)
			json_object_object_add(st, "verify", json_object_get(verify));
		printf("%s\n", json_object_to_json_string_ext(st, JSON_C_TO_STRING_PRETTY |
								      JSON_C_TO_STRING_NOSLASHESCAPE));
	} else {
		status_print_text(st, verify, stdout);
	}
	fflush(stdout);
	status = verify && !verify_passed(verify) ? 1 : 0;
out:
	json_object_put(verify);
	json_object_put(st);
	ctl_close(c);
	return status;
}
