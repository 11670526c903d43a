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

#endif
