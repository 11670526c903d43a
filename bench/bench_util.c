#include "bench_util.h"

#include <errno.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void bench_parse(int argc, char **argv, struct bench_opts *o)
{
	o->json = false;
	o->quick = getenv("FERRY_BENCH_QUICK") != NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			o->json = true;
		else if (!strcmp(argv[i], "--quick"))
			o->quick = true;
		else {
			fprintf(stderr, "usage: %s [--json] [--quick]\n", argv[0]);
			exit(2);
		}
	}
}

double bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void bench_report(const struct bench_opts *o, const struct bench_row *rows, int n)
{
	for (int i = 0; i < n; i++) {
		const struct bench_row *r = &rows[i];
		if (o->json)
			printf("{\"bench\":\"%s\",\"value\":%.4f,\"unit\":\"%s\",\"limit\":\"%s\","
			       "\"limit_value\":%.4f,\"ratio\":%.3f,\"aim\":\"%s\"}\n",
			       r->name, r->value, r->unit, r->limit_name, r->limit, r->ratio, r->aim);
		else
			printf("%-28s %10.3f %-6s | %-22s %10.3f %-6s | ratio %6.3f (aim %s)\n",
			       r->name, r->value, r->unit, r->limit_name, r->limit, r->unit, r->ratio,
			       r->aim);
	}
	fflush(stdout);
}

void bench_die(const char *what)
{
	fprintf(stderr, "bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

#define PINGPONG_REQ 32   /* header + region_access */
#define PINGPONG_REPLY 36 /* header + region_access + 4 bytes */

void bench_pin_to(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		fprintf(stderr, "bench: cannot pin to CPU %d: %s (figures are noisier)\n", cpu,
			strerror(errno));
}

static int read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

void bench_pingpong_start(struct bench_pingpong *pp, int echo_cpu)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		bench_die("socketpair");
	pid_t pid = fork();
	if (pid < 0)
		bench_die("fork");
	if (pid == 0) {
		char req[PINGPONG_REQ], reply[PINGPONG_REPLY] = {0};
		if (echo_cpu >= 0)
			bench_pin_to(echo_cpu);
		close(sv[0]);
		while (read_full(sv[1], req, sizeof(req)) == 0)
			if (write(sv[1], reply, sizeof(reply)) != sizeof(reply))
				break;
		_exit(0);
	}
	close(sv[1]);
	pp->fd = sv[0];
	pp->pid = pid;
}

double bench_pingpong_run(struct bench_pingpong *pp, long iters)
{
	char req[PINGPONG_REQ] = {0}, reply[PINGPONG_REPLY];
	double t0 = bench_now();
	for (long i = 0; i < iters; i++)
		if (write(pp->fd, req, sizeof(req)) != sizeof(req) ||
		    read_full(pp->fd, reply, sizeof(reply)))
			bench_die("raw ping-pong failed");
	return (bench_now() - t0) / (double)iters;
}

void bench_pingpong_stop(struct bench_pingpong *pp)
{
	close(pp->fd);
	waitpid(pp->pid, NULL, 0);
}
