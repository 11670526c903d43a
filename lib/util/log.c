#include "util/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

static atomic_int level = -1; /* -1: not yet read from the environment */
static ferry_log_fn sink;
static void *sink_opaque;
static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static int level_from_env(void)
{
	const char *s = getenv("FERRY_LOG");
	if (s) {
		for (int i = 0; i <= FERRY_LOG_DEBUG; i++)
			if (!strcmp(s, level_names[i]) || (!strcmp(s, "err") && i == 0))
				return i;
	}
	return FERRY_LOG_WARN;
}

enum ferry_log_level ferry_log_get_level(void)
{
	int l = atomic_load_explicit(&level, memory_order_relaxed);
	if (l < 0) {
		l = level_from_env();
		atomic_store(&level, l);
	}
	return (enum ferry_log_level)l;
}

void ferry_log_set_level(enum ferry_log_level l)
{
	atomic_store(&level, (int)l);
}

void ferry_log_set_sink(ferry_log_fn fn, void *opaque)
{
	pthread_mutex_lock(&sink_lock);
	sink = fn;
	sink_opaque = opaque;
	pthread_mutex_unlock(&sink_lock);
}

void ferry_vlog(enum ferry_log_level l, const char *fmt, va_list ap)
{
	char line[1024];

	if ((int)l > (int)ferry_log_get_level())
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	pthread_mutex_lock(&sink_lock);
	if (sink)
		sink(l, line, sink_opaque);
	else
		fprintf(stderr, "ferry %s: %s\n", level_names[l], line);
	pthread_mutex_unlock(&sink_lock);
}

void ferry_log(enum ferry_log_level l, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	ferry_vlog(l, fmt, ap);
	va_end(ap);
}
