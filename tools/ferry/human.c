/* Numbers for people (human.h). */
#include "human.h"

#include <stdio.h>

static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};

static const char *scaled(char *buf, size_t len, double v, const char *suffix)
{
	unsigned u = 0;

	if (!(v >= 0))
		v = 0; /* NaN and negatives: shown as 0 */
	while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%.0f %s%s", v, units[u], suffix);
	else
		snprintf(buf, len, "%.*f %s%s", v < 10 ? 2 : v < 100 ? 1 : 0, v, units[u], suffix);
	return buf;
}

const char *human_bytes(char *buf, size_t len, uint64_t bytes)
{
	return scaled(buf, len, (double)bytes, "");
}

const char *human_rate(char *buf, size_t len, double bytes_per_s)
{
	return scaled(buf, len, bytes_per_s, "/s");
}

const char *human_ms(char *buf, size_t len, double ms)
{
	if (!(ms >= 0))
		ms = 0;
	if (ms >= 10000.0)
		snprintf(buf, len, "%.1f s", ms / 1000.0);
	else if (ms >= 1000.0)
		snprintf(buf, len, "%.2f s", ms / 1000.0);
	else
		snprintf(buf, len, "%.1f ms", ms);
	return buf;
}
