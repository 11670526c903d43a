#include "bench_util.h"

#include <errno.h>
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
