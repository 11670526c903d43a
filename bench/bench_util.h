/*
 * Shared by the benchmarks: timing, medians, and the report every benchmark
 * prints: its figure beside the physical limit measured in the same run, as
 * a table or (with --json) one JSON object per line.
 */
#ifndef FERRY_BENCH_UTIL_H
#define FERRY_BENCH_UTIL_H

#include <stdbool.h>

struct bench_opts {
	bool json;
	bool quick; /* fewer iterations: for a smoke run */
};

struct bench_row {
	const char *name;
	const char *unit;
	double value;
	const char *limit_name;
	double limit;
	double ratio; /* value / limit for times, value / limit for rates: see aim */
	const char *aim;
};

void bench_parse(int argc, char **argv, struct bench_opts *o);
double bench_now(void);
double bench_median(double *v, int n);
void bench_report(const struct bench_opts *o, const struct bench_row *rows, int n);
void bench_die(const char *what) __attribute__((noreturn));

/*
 * The physical limit of a small vfio-user exchange: a raw AF_UNIX stream
 * ping-pong with another process, a 32-byte request and a 36-byte reply (a
 * 4-byte REGION_READ's sizes), one write and one read per side.
 */
struct bench_pingpong {
	int fd;    /* our end */
	int pid;   /* the echo process */
};
/* Forks the echo process, pinned to @echo_cpu (-1: not pinned). */
void bench_pingpong_start(struct bench_pingpong *pp, int echo_cpu);
/* Seconds per round trip over @iters round trips. */
double bench_pingpong_run(struct bench_pingpong *pp, long iters);
void bench_pingpong_stop(struct bench_pingpong *pp);
/* Pins the calling process to @cpu; says so on stderr if it cannot. */
void bench_pin_to(int cpu);

#endif
