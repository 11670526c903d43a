/*
 * The wire channel over a real socketpair: framing, reply routing, fd
 * attribution, the command backlog, and VERSION negotiation.
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
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "wire/caps.h"
#include "wire/wire.h"

struct pair {
	struct wire_chan *a, *b;
	int raw_b; /* b's socket, for raw writes */
};

static void make_pair(struct pair *p, bool raw_b)
{
	int sv[2];
	struct wire_transport *ta, *tb;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct wire_chan_opts o = {.name = "test", .timeout_ms = 2000};
	assert_int_equal(wire_transport_sock_create(sv[0], &ta), 0);
	assert_int_equal(wire_chan_create(ta, &o, &p->a), 0);
	p->b = NULL;
	p->raw_b = -1;
	if (raw_b) {
		p->raw_b = sv[1];
		return;
	}
	assert_int_equal(wire_transport_sock_create(sv[1], &tb), 0);
	assert_int_equal(wire_chan_create(tb, &o, &p->b), 0);
}

static void free_pair(struct pair *p)
{
	wire_chan_destroy(p->a);
	wire_chan_destroy(p->b);
	if (p->raw_b >= 0)
		close(p->raw_b);
}

/* Echo server: replies to each command with its payload reversed-cmd; stops
 * at command 99. */
static void *echo_server(void *arg)
{
	struct wire_chan *ch = arg;
	for (;;) {
		struct wire_msg m;
		if (wire_next_command(ch, &m, -1) < 0)
			return NULL;
		if (m.hdr.cmd == 99) {
			wire_msg_release(&m);
			return NULL;
		}
		if (m.hdr.cmd == 98) {
			wire_reply_error(ch, &m, EPERM);
		} else {
			struct iovec iov = {m.payload, m.len};
			uint32_t nfds = m.nfds;
			struct iovec iov2[2] = {iov, {&nfds, sizeof(nfds)}};
			wire_reply(ch, &m, iov2, 2, NULL, 0);
		}
		wire_msg_release(&m);
	}
}

static void test_call_reply(void **state)
{
	(void)state;
	struct pair p;
	pthread_t t;
	make_pair(&p, false);
	pthread_create(&t, NULL, echo_server, p.b);

	for (int i = 0; i < 100; i++) {
		char buf[32];
		int n = snprintf(buf, sizeof(buf), "hello %d", i);
		struct wire_msg r;
		assert_int_equal(wire_call_simple(p.a, 9, buf, (size_t)n, &r), 0);
		assert_int_equal(r.len, n + 4);
		assert_memory_equal(r.payload, buf, (size_t)n);
		assert_int_equal(r.hdr.cmd, 9);
		wire_msg_release(&r);
	}
	assert_int_equal(wire_call_simple(p.a, 98, "x", 1, NULL), -EPERM);

	/* a large payload crosses the read-ahead buffer */
	size_t big = 900 * 1024;
	char *blob = malloc(big);
	for (size_t i = 0; i < big; i++)
		blob[i] = (char)(i * 7);
	struct wire_msg r;
	assert_int_equal(wire_call_simple(p.a, 10, blob, big, &r), 0);
	assert_int_equal(r.len, big + 4);
	assert_memory_equal(r.payload, blob, big);
	wire_msg_release(&r);
	free(blob);

	wire_send_command(p.a, 99, true, NULL, 0, NULL, 0);
	pthread_join(t, NULL);
	free_pair(&p);
}

/* Three back-to-back messages, only the middle one with fds: the fds must
 * land on the middle one although one read may bring all three. */
static void test_fd_attribution(void **state)
{
	(void)state;
	struct pair p;
	make_pair(&p, false);
	int efd = eventfd(0, EFD_CLOEXEC);
	int fds[2] = {efd, efd};
	char x = 'x';
	struct iovec iov = {&x, 1};
	assert_true(wire_send_command(p.b, 1, true, &iov, 1, NULL, 0) >= 0);
	assert_true(wire_send_command(p.b, 2, true, &iov, 1, fds, 2) >= 0);
	assert_true(wire_send_command(p.b, 3, true, &iov, 1, NULL, 0) >= 0);
	for (int i = 1; i <= 3; i++) {
		struct wire_msg m;
		assert_int_equal(wire_next_command(p.a, &m, 1000), 0);
		assert_int_equal(m.hdr.cmd, i);
		assert_int_equal(m.nfds, i == 2 ? 2 : 0);
		if (i == 2) {
			struct stat s1, s2;
			fstat(m.fds[0], &s1);
			fstat(efd, &s2);
			assert_int_equal(s1.st_ino, s2.st_ino);
		}
		wire_msg_release(&m);
	}
	close(efd);
	free_pair(&p);
}

/* A command that arrives while a caller waits for its reply is queued and
 * handed out afterwards, in order. */
static void *reply_after_command(void *arg)
{
	struct wire_chan *ch = arg;
	struct wire_msg m;
	if (wire_next_command(ch, &m, -1) < 0)
		return NULL;
	wire_send_command(ch, 11, true, NULL, 0, NULL, 0); /* server's own request first */
	wire_reply(ch, &m, NULL, 0, NULL, 0);
	wire_msg_release(&m);
	return NULL;
}

static void test_backlog(void **state)
{
	(void)state;
	struct pair p;
	pthread_t t;
	make_pair(&p, false);
	pthread_create(&t, NULL, reply_after_command, p.b);
	assert_int_equal(wire_call_simple(p.a, 4, "abcd", 4, NULL), 0);
	pthread_join(t, NULL);
	struct wire_msg m;
	assert_int_equal(wire_next_command(p.a, &m, 0), 0);
	assert_int_equal(m.hdr.cmd, 11);
	wire_msg_release(&m);
	assert_int_equal(wire_next_command(p.a, &m, 0), -EAGAIN);
	free_pair(&p);
}

/* wire_wait_command beside callers: commands the peer sends during a call,
 * just after one, and while nothing is going on all reach the dispatcher,
 * every caller gets its own reply, and a call whose reply waits for the
 * dispatcher to answer the peer completes. */
static void *commands_around_replies(void *arg)
{
	struct wire_chan *ch = arg;
	for (;;) {
		struct wire_msg m;
		if (wire_next_command(ch, &m, -1) < 0 || m.hdr.cmd == 99) {
			wire_msg_release(&m);
			return NULL;
		}
		wire_send_command(ch, 30, true, NULL, 0, NULL, 0); /* during the call */
		/* a request the dispatcher must answer before we reply (a
		 * device's DMA_READ from inside a REGION_READ) */
		if (m.hdr.cmd == 21 && wire_call(ch, 33, NULL, 0, NULL, 0, NULL) < 0) {
			wire_msg_release(&m);
			return NULL;
		}
		wire_reply(ch, &m, m.payload ? &(struct iovec){m.payload, m.len} : NULL,
			   m.payload ? 1 : 0, NULL, 0);
		wire_send_command(ch, 31, true, NULL, 0, NULL, 0); /* after it */
		wire_msg_release(&m);
	}
}

struct dispatcher {
	struct wire_chan *ch;
	pthread_mutex_t mx;
	unsigned seen[3]; /* commands 30, 31, 32 */
};

static void *dispatcher_main(void *arg)
{
	struct dispatcher *d = arg;
	struct wire_msg m;
	while (wire_wait_command(d->ch, &m) == 0) {
		pthread_mutex_lock(&d->mx);
		if (m.hdr.cmd >= 30 && m.hdr.cmd <= 32)
			d->seen[m.hdr.cmd - 30]++;
		pthread_mutex_unlock(&d->mx);
		if (m.hdr.cmd == 33)
			wire_reply(d->ch, &m, NULL, 0, NULL, 0);
		wire_msg_release(&m);
	}
	return NULL;
}

static bool wait_seen(struct dispatcher *d, unsigned i, unsigned want)
{
	for (int ms = 0; ms < 5000; ms++) {
		pthread_mutex_lock(&d->mx);
		unsigned n = d->seen[i];
		pthread_mutex_unlock(&d->mx);
		if (n == want)
			return true;
		usleep(1000);
	}
	return false;
}

static void test_wait_command(void **state)
{
	(void)state;
	enum { CALLS = 300 };
	struct pair p;
	pthread_t srv, disp;
	struct dispatcher d = {.mx = PTHREAD_MUTEX_INITIALIZER};
	make_pair(&p, false);
	d.ch = p.a;
	pthread_create(&srv, NULL, commands_around_replies, p.b);
	pthread_create(&disp, NULL, dispatcher_main, &d);

	for (int i = 0; i < CALLS; i++) {
		struct wire_msg r;
		assert_int_equal(wire_call_simple(p.a, 20, &i, sizeof(i), &r), 0);
		assert_int_equal(r.len, sizeof(i));
		assert_memory_equal(r.payload, &i, sizeof(i));
		wire_msg_release(&r);
		if (i % 100 == 0)
			usleep(5000); /* let the dispatcher go back to the socket */
	}
	for (int i = 0; i < CALLS; i++) {
		assert_int_equal(wire_call_simple(p.a, 21, NULL, 0, NULL), 0);
		if (i % 2)
			usleep(3000); /* the dispatcher is back in poll */
	}
	assert_true(wait_seen(&d, 0, 2 * CALLS));
	assert_true(wait_seen(&d, 1, 2 * CALLS));
	usleep(10000); /* idle: no caller will read the next one */
	assert_true(wire_send_command(p.b, 32, true, NULL, 0, NULL, 0) >= 0);
	assert_true(wait_seen(&d, 2, 1));

	wire_send_command(p.a, 99, true, NULL, 0, NULL, 0);
	pthread_join(srv, NULL);
	wire_chan_kill(p.a, -ECONNRESET);
	pthread_join(disp, NULL);
	free_pair(&p);
}

static void test_framing_errors(void **state)
{
	(void)state;
	struct pair p;
	struct wire_msg m;

	/* msg_size below the header size */
	make_pair(&p, true);
	struct vfio_user_header h = {.msg_id = 1, .cmd = 4, .msg_size = 8};
	assert_int_equal(write(p.raw_b, &h, sizeof(h)), sizeof(h));
	assert_int_equal(wire_next_command(p.a, &m, 1000), -EPROTO);
	free_pair(&p);

	/* a size near 2^32 */
	make_pair(&p, true);
	h.msg_size = 0xfffffff0u;
	assert_int_equal(write(p.raw_b, &h, sizeof(h)), sizeof(h));
	assert_int_equal(wire_next_command(p.a, &m, 1000), -EPROTO);
	free_pair(&p);

	/* short header, then the peer goes away */
	make_pair(&p, true);
	assert_int_equal(write(p.raw_b, &h, 7), 7);
	close(p.raw_b);
	p.raw_b = -1;
	assert_int_equal(wire_next_command(p.a, &m, 1000), -ECONNRESET);
	free_pair(&p);

	/* payload shorter than msg_size says, then EOF */
	make_pair(&p, true);
	h.msg_size = 16 + 100;
	assert_int_equal(write(p.raw_b, &h, sizeof(h)), sizeof(h));
	assert_int_equal(write(p.raw_b, "abc", 3), 3);
	shutdown(p.raw_b, SHUT_WR);
	assert_int_equal(wire_next_command(p.a, &m, 1000), -ECONNRESET);
	free_pair(&p);
}

static void test_caps_parse(void **state)
{
	(void)state;
	struct wire_caps c;
#define J(s) s, sizeof(s)
	assert_int_equal(wire_caps_parse(J("{}"), &c), 0);
	assert_int_equal(c.max_msg_fds, 1);
	assert_int_equal(c.max_data_xfer_size, VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE);
	assert_int_equal(c.pgsizes, 4096);
	assert_int_equal(wire_caps_parse(J("{\"capabilities\":{\"max_msg_fds\":16,"
		"\"max_data_xfer_size\":2097152,\"unknown\":[1,2],\"twin_socket\":{\"supported\":true},"
		"\"migration\":{\"pgsize\":4096},\"ferry\":{\"precopy_info\":true,\"future\":true}}}"), &c), 0);
	assert_int_equal(c.max_msg_fds, 16);
	assert_int_equal(c.max_data_xfer_size, 2097152);
	assert_true(c.twin_socket);
	assert_int_equal(c.ferry_ext, WIRE_EXT_PRECOPY_INFO);
	assert_int_equal(wire_caps_parse(J("{\"capabilities\":{\"max_msg_fds\":\"16\"}}"), &c), -EINVAL);
	assert_int_equal(wire_caps_parse(J("{\"capabilities\":{\"max_msg_fds\":-1}}"), &c), -EINVAL);
	assert_int_equal(wire_caps_parse(J("{\"capabilities\":{\"pgsizes\":512}}"), &c), -EINVAL);
	/* libvfio-user's sample client announces 1024: no floor but 0 */
	assert_int_equal(wire_caps_parse(J("{\"capabilities\":{\"max_data_xfer_size\":1024}}"), &c), 0);
	assert_int_equal(c.max_data_xfer_size, 1024);
	assert_int_equal(wire_caps_parse(J("{\"capabilities\":{\"max_data_xfer_size\":0}}"), &c), -EINVAL);
	assert_int_equal(wire_caps_parse(J("{\"capabilities\":{\"write_multiple\":1}}"), &c), -EINVAL);
	assert_int_equal(wire_caps_parse(J("{\"capabilities\":{"), &c), -EINVAL);
	assert_int_equal(wire_caps_parse("{}", 2, &c), -EINVAL); /* no NUL */
	assert_int_equal(wire_caps_parse(J("[1]"), &c), -EINVAL);

	/* what we format, we parse back */
	struct wire_caps mine, back;
	wire_caps_default(&mine);
	mine.max_msg_fds = 64;
	mine.ferry_ext = WIRE_EXT_MIG_SHM | WIRE_EXT_LOW_POWER;
	mine.twin_socket = true;
	mine.twin_fd_index = 0;
	char *s = wire_caps_format(&mine, true);
	assert_int_equal(wire_caps_parse(s, strlen(s) + 1, &back), 0);
	assert_int_equal(back.max_msg_fds, 64);
	assert_int_equal(back.ferry_ext, mine.ferry_ext);
	assert_int_equal(back.twin_fd_index, 0);
	free(s);
}

struct srv_args {
	struct wire_chan *ch;
	struct wire_caps mine, theirs;
	int r;
	int twin;
};

static void *version_server(void *arg)
{
	struct srv_args *a = arg;
	a->r = wire_version_server(a->ch, &a->mine, &a->theirs, a->twin);
	return NULL;
}

static void test_version(void **state)
{
	(void)state;
	struct pair p;
	pthread_t t;
	struct srv_args a = {0};
	struct wire_caps mine, theirs;
	int sv[2], twin = -1;

	make_pair(&p, false);
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	a.ch = p.b;
	wire_caps_default(&a.mine);
	a.mine.max_msg_fds = 8;
	a.mine.twin_socket = true;
	a.mine.ferry_ext = WIRE_EXT_PRECOPY_INFO | WIRE_EXT_MIG_SHM;
	a.twin = sv[1];
	pthread_create(&t, NULL, version_server, &a);
	wire_caps_default(&mine);
	mine.max_msg_fds = 16;
	mine.twin_socket = true;
	mine.ferry_ext = WIRE_EXT_PRECOPY_INFO | WIRE_EXT_LOW_POWER;
	assert_int_equal(wire_version_client(p.a, &mine, &theirs, &twin), 0);
	pthread_join(t, NULL);
	assert_int_equal(a.r, 0);
	assert_int_equal(a.theirs.max_msg_fds, 16);
	assert_int_equal(theirs.max_msg_fds, 8);
	assert_int_equal(theirs.ferry_ext, WIRE_EXT_PRECOPY_INFO); /* the common set */
	assert_true(theirs.twin_socket);
	assert_true(twin >= 0);
	close(twin);
	close(sv[0]);
	close(sv[1]);
	free_pair(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_call_reply),
		cmocka_unit_test(test_fd_attribution),
		cmocka_unit_test(test_backlog),
		cmocka_unit_test(test_wait_command),
		cmocka_unit_test(test_framing_errors),
		cmocka_unit_test(test_caps_parse),
		cmocka_unit_test(test_version),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
