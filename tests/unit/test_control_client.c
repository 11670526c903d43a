/*
 * The control-socket client of ferry migrate / ferry status
 * (tools/ferry/control_client.c) over a real socketpair: line framing across
 * reads, the 64 KiB line limit, malformed lines, end of stream, timeouts,
 * connecting; then the typed field access (json_field.c) and the text forms
 * of a report and a progress event against malformed input.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <ferry/log.h>

#include "control_client.h"
#include "json_field.h"
#include "progress_bar.h"
#include "report_text.h"

struct pair {
	struct ctl_client *c;
	int peer; /* the host's end, written raw */
};

static void make_pair(struct pair *p)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(ctl_from_fd(sv[0], &p->c), 0);
	p->peer = sv[1];
}

static void free_pair(struct pair *p)
{
	ctl_close(p->c);
	if (p->peer >= 0)
		close(p->peer);
}

static void put(int fd, const char *s)
{
	assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* Reads one JSON line and checks its "n". */
static void expect_n(struct ctl_client *c, int64_t n)
{
	json_object *o, *v;

	assert_int_equal(ctl_read_json(c, 1000, &o), 0);
	assert_true(json_object_object_get_ex(o, "n", &v));
	assert_int_equal(json_object_get_int64(v), n);
	json_object_put(o);
}

static void test_lines_across_reads(void **state)
{
	struct pair p;
	const char *line;
	size_t len;

	(void)state;
	make_pair(&p);
	put(p.peer, "{\"n\":1}\n{\"n\":");
	expect_n(p.c, 1);
	put(p.peer, "2}\n{\"n\":3}\n{\"n\":4}\r\n\n  \n{\"n\":5}\n");
	expect_n(p.c, 2);
	expect_n(p.c, 3);
	expect_n(p.c, 4); /* CRLF accepted */
	expect_n(p.c, 5); /* blank lines skipped */
	put(p.peer, "raw line\n");
	assert_int_equal(ctl_read_line(p.c, 1000, &line, &len), 0);
	assert_string_equal(line, "raw line");
	assert_int_equal(len, 8);
	free_pair(&p);
}

struct big_write {
	int fd;
	char *data;
	size_t len;
};

static void *writer(void *arg)
{
	struct big_write *w = arg;
	size_t off = 0;

	while (off < w->len) {
		ssize_t n = write(w->fd, w->data + off, w->len - off);

		if (n <= 0)
			break;
		off += (size_t)n;
	}
	return NULL;
}

/* A line of exactly @len bytes that is one JSON object {"n":N,"pad":"xxx"}. */
static char *json_line_of(size_t len, int n)
{
	char head[32];
	int hl = snprintf(head, sizeof(head), "{\"n\":%d,\"pad\":\"", n);
	char *s = malloc(len + 2);

	assert_non_null(s);
	memcpy(s, head, (size_t)hl);
	memset(s + hl, 'x', len - (size_t)hl - 2);
	memcpy(s + len - 2, "\"}", 2);
	s[len] = '\n';
	s[len + 1] = '\0';
	return s;
}

static void test_line_limit(void **state)
{
	struct pair p;
	pthread_t t;
	char *max = json_line_of(CTL_LINE_MAX, 1);
	char *over = json_line_of(CTL_LINE_MAX + 1, 2);
	char *huge = json_line_of(3 * CTL_LINE_MAX + 17, 3);
	size_t a = strlen(max), b = strlen(over), h = strlen(huge);
	struct big_write w = {.len = a + b + h + 8};

	(void)state;
	make_pair(&p);
	w.fd = p.peer;
	w.data = malloc(w.len + 1);
	assert_non_null(w.data);
	memcpy(w.data, max, a);
	memcpy(w.data + a, over, b);
	memcpy(w.data + a + b, huge, h);
	memcpy(w.data + a + b + h, "{\"n\":4}\n", 8);
	assert_int_equal(pthread_create(&t, NULL, writer, &w), 0);

	expect_n(p.c, 1); /* exactly the limit: fine */
	json_object *o = NULL;
	assert_int_equal(ctl_read_json(p.c, 2000, &o), -EMSGSIZE);
	assert_null(o);
	assert_int_equal(ctl_read_json(p.c, 2000, &o), -EMSGSIZE);
	expect_n(p.c, 4); /* and the connection goes on */
	pthread_join(t, NULL);
	free(w.data);
	free(max);
	free(over);
	free(huge);
	free_pair(&p);
}

static void test_malformed(void **state)
{
	static const char *const bad[] = {
		"not json\n", "[1,2]\n", "{\"n\":1} trailing\n", "\"str\"\n", "42\n",
		"null\n", "{\"n\":\n", "{\"n\":1}{\"n\":2}\n",
	};
	struct pair p;
	json_object *o;

	(void)state;
	make_pair(&p);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		put(p.peer, bad[i]);
		o = (json_object *)1;
		assert_int_equal(ctl_read_json(p.c, 1000, &o), -EBADMSG);
		assert_null(o);
	}
	/* a NUL inside a line */
	assert_int_equal(write(p.peer, "{\"n\":1}\0x\n", 10), 10);
	assert_int_equal(ctl_read_json(p.c, 1000, &o), -EBADMSG);
	put(p.peer, "{\"n\":7}\n");
	expect_n(p.c, 7);
	free_pair(&p);
}

static void test_eof(void **state)
{
	struct pair p;
	json_object *o;

	(void)state;
	make_pair(&p);
	put(p.peer, "{\"n\":1}\n{\"n\":2}\n{\"n\"");
	close(p.peer);
	p.peer = -1;
	expect_n(p.c, 1);
	expect_n(p.c, 2); /* complete lines before the end are still read */
	assert_int_equal(ctl_read_json(p.c, 1000, &o), -ECONNRESET);
	assert_int_equal(ctl_read_json(p.c, 1000, &o), -ECONNRESET);
	free_pair(&p);

	make_pair(&p);
	close(p.peer);
	p.peer = -1;
	assert_int_equal(ctl_read_json(p.c, 1000, &o), -ECONNRESET);
	free_pair(&p);
}

static void test_timeout(void **state)
{
	struct pair p;
	json_object *o;

	(void)state;
	make_pair(&p);
	assert_int_equal(ctl_read_json(p.c, 30, &o), -ETIMEDOUT);
	put(p.peer, "{\"n\":");
	assert_int_equal(ctl_read_json(p.c, 30, &o), -ETIMEDOUT);
	put(p.peer, "9}\n");
	expect_n(p.c, 9); /* nothing lost across the timeout */
	free_pair(&p);
}

static void test_send(void **state)
{
	struct pair p;
	char buf[256];
	json_object *req = ctl_request_new("status"), *arr = json_object_new_array();

	(void)state;
	make_pair(&p);
	json_object_object_add(req, "to", json_object_new_string("line\nbreak"));
	assert_int_equal(ctl_send(p.c, req, 1000), 0);
	ssize_t n = read(p.peer, buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	/* one line: the embedded newline is escaped */
	assert_string_equal(buf, "{\"cmd\":\"status\",\"to\":\"line\\nbreak\"}\n");
	assert_int_equal(ctl_send(p.c, arr, 1000), -EINVAL);
	close(p.peer);
	p.peer = -1;
	assert_int_equal(ctl_send(p.c, req, 1000), -EPIPE);
	json_object_put(req);
	json_object_put(arr);
	free_pair(&p);
}

struct server {
	int listen_fd;
};

static void *serve_one(void *arg)
{
	struct server *s = arg;
	char buf[256];
	int fd = accept(s->listen_fd, NULL, NULL);

	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, sizeof(buf));
	assert_true(n > 0);
	put(fd, "{\"ok\":true,\"role\":\"idle\"}\n");
	close(fd);
	return NULL;
}

static void test_connect(void **state)
{
	char dir[] = "/tmp/ferry-ctl-test.XXXXXX", path[128], longpath[200];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct ctl_client *c;
	struct server s;
	pthread_t t;
	json_object *req, *reply;
	bool ok;
	const char *role;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ctl.sock", dir);
	assert_int_equal(ctl_connect(path, &c), -ENOENT);
	assert_null(c);
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(ctl_connect(longpath, &c), -ENAMETOOLONG);
	assert_int_equal(ctl_connect("", &c), -EINVAL);

	s.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s.listen_fd >= 0);
	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	assert_int_equal(bind(s.listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s.listen_fd, 1), 0);
	assert_int_equal(pthread_create(&t, NULL, serve_one, &s), 0);
	assert_int_equal(ctl_connect(path, &c), 0);
	req = ctl_request_new("status");
	assert_int_equal(ctl_call(c, req, 2000, &reply), 0);
	assert_int_equal(jf_bool(reply, "ok", &ok), 0);
	assert_true(ok);
	assert_int_equal(jf_str(reply, "role", &role), 0);
	assert_string_equal(role, "idle");
	json_object_put(reply);
	json_object_put(req);
	pthread_join(t, NULL);
	ctl_close(c);
	ctl_close(NULL);
	close(s.listen_fd);
	unlink(path);
	rmdir(dir);
}

static void test_fields(void **state)
{
	json_object *o = json_tokener_parse(
		"{\"u\":5,\"neg\":-1,\"big\":18446744073709551615,\"d\":1.5,\"s\":\"x\","
		"\"n\":null,\"b\":true,\"a\":[],\"o\":{},\"su\":\"5\"}");
	uint64_t u;
	double d;
	const char *s;
	bool b;
	json_object *v;

	(void)state;
	assert_non_null(o);
	assert_int_equal(jf_u64(o, "u", &u), 0);
	assert_int_equal(u, 5);
	assert_int_equal(jf_u64(o, "big", &u), 0);
	assert_true(u == UINT64_MAX);
	assert_int_equal(jf_u64(o, "neg", &u), -EINVAL);
	assert_int_equal(jf_u64(o, "d", &u), -EINVAL);
	assert_int_equal(jf_u64(o, "su", &u), -EINVAL);
	assert_int_equal(jf_u64(o, "n", &u), -EINVAL);
	assert_int_equal(jf_u64(o, "missing", &u), -ENOENT);
	assert_int_equal(jf_double(o, "d", &d), 0);
	assert_true(d == 1.5);
	assert_int_equal(jf_double(o, "u", &d), 0); /* an integer is a number */
	assert_true(d == 5.0);
	assert_int_equal(jf_double(o, "s", &d), -EINVAL);
	assert_int_equal(jf_str(o, "s", &s), 0);
	assert_string_equal(s, "x");
	assert_int_equal(jf_str(o, "n", &s), -EINVAL);
	assert_int_equal(jf_str_or_null(o, "n", &s), 0);
	assert_null(s);
	assert_int_equal(jf_str_or_null(o, "u", &s), -EINVAL);
	assert_int_equal(jf_str_or_null(o, "missing", &s), -ENOENT);
	assert_int_equal(jf_bool(o, "b", &b), 0);
	assert_true(b);
	assert_int_equal(jf_bool(o, "u", &b), -EINVAL);
	assert_int_equal(jf_array(o, "a", &v), 0);
	assert_int_equal(jf_array(o, "o", &v), -EINVAL);
	assert_int_equal(jf_object(o, "o", &v), 0);
	assert_int_equal(jf_object_or_null(o, "n", &v), 0);
	assert_null(v);
	assert_int_equal(jf_object_or_null(o, "a", &v), -EINVAL);
	assert_int_equal(jf_u64(NULL, "u", &u), -EINVAL);
	json_object_put(o);
}

/* Renders @json with report_print_text(); returns the count of bad fields
 * and the text in *@text (malloc'd). */
static unsigned render_report(const char *json, char **text)
{
	size_t len;
	FILE *f = open_memstream(text, &len);
	json_object *r = json_tokener_parse(json);

	assert_non_null(f);
	assert_non_null(r);
	unsigned bad = report_print_text(r, f);

	fclose(f);
	json_object_put(r);
	return bad;
}

static const char good_report[] =
	"{\"outcome\":\"success\",\"error\":null,\"uri\":\"tcp:127.0.0.1:4444\","
	"\"total_ms\":1234.5,\"downtime_ms\":56.7,\"downtime_budget_ms\":300,"
	"\"switchover_reason\":\"converged\","
	"\"rounds\":[{\"round\":1,\"bytes\":1048576,\"pages\":256,\"zero_pages\":10,"
	"\"dirty_pages\":7,\"device_bytes\":0,\"duration_ms\":3.5}],"
	"\"devices\":[{\"index\":0,\"kind\":\"dma\",\"bytes\":4096,\"precopy_bytes\":0,"
	"\"stopcopy_bytes\":4096,\"dirty_provider\":\"device-logging\"}],"
	"\"bytes_total\":1052672,\"bandwidth_bytes_per_s\":1e9,"
	"\"verification\":{\"guest_memory\":\"match\",\"devices\":\"match\"}}";

static void test_report_text(void **state)
{
	char *text;

	(void)state;
	assert_int_equal(render_report(good_report, &text), 0);
	assert_non_null(strstr(text, "tcp:127.0.0.1:4444: success"));
	assert_non_null(strstr(text, "56.7 ms (budget 300 ms)"));
	assert_non_null(strstr(text, "converged after 1 round"));
	assert_non_null(strstr(text, "device-logging"));
	assert_non_null(strstr(text, "guest memory match, devices match"));
	free(text);

	/* wrong types everywhere: shown as ?, counted, never a crash */
	assert_true(render_report("{\"outcome\":1,\"uri\":null,\"total_ms\":\"x\","
				  "\"downtime_ms\":-5,\"rounds\":[7,{\"round\":\"a\"}],"
				  "\"devices\":{},\"verification\":[]}",
				  &text) >= 8);
	assert_non_null(strstr(text, "missing or malformed"));
	free(text);
	assert_true(render_report("[]", &text) == 1);
	free(text);
}

static void test_progress_format(void **state)
{
	char line[512];
	const char *first_bad;
	json_object *ev = json_tokener_parse(
		"{\"event\":\"progress\",\"phase\":\"precopy\",\"round\":3,\"bytes_sent\":3145728,"
		"\"bytes_remaining\":1048576,\"rate_bytes_per_s\":1073741824,"
		"\"predicted_downtime_ms\":42,\"dirty_pages\":1234}");

	(void)state;
	assert_int_equal(progress_format(ev, line, sizeof(line), &first_bad), 0);
	assert_null(first_bad);
	assert_non_null(strstr(line, "precopy"));
	assert_non_null(strstr(line, "round 3"));
	assert_non_null(strstr(line, "[############....]")); /* 3/4 of 16 cells */
	assert_non_null(strstr(line, "1.00 GiB/s"));
	assert_non_null(strstr(line, "~42 ms"));
	json_object_put(ev);

	ev = json_tokener_parse("{\"event\":\"progress\",\"phase\":7,\"round\":-1}");
	assert_int_equal(progress_format(ev, line, sizeof(line), &first_bad), 7);
	assert_string_equal(first_bad, "phase");
	json_object_put(ev);
	/* a tiny buffer is cut, not overrun */
	ev = json_tokener_parse("{}");
	assert_true(progress_format(ev, line, 8, NULL) > 0);
	assert_true(strlen(line) < 8);
	json_object_put(ev);
}

static void quiet(enum ferry_log_level level, const char *line, void *opaque)
{
	(void)level;
	(void)line;
	(void)opaque;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines_across_reads),
		cmocka_unit_test(test_line_limit),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_eof),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_send),
		cmocka_unit_test(test_connect),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_report_text),
		cmocka_unit_test(test_progress_format),
	};

	ferry_log_set_sink(quiet, NULL); /* the failures here are the expected ones */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
