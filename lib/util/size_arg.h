/*
 * Sizes on command lines: "64M" -> 67108864. A decimal count with an
 * optional K, M or G (powers of 1024), optionally followed by "i" and/or
 * "B" ("64MiB", "64MB" and "64M" are the same). Header-only, so the sample
 * devices' servers share it with `ferry` without linking libferry's
 * internals.
 */
#ifndef FERRY_UTIL_SIZE_ARG_H
#define FERRY_UTIL_SIZE_ARG_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/* Returns 0 and *@out, or -EINVAL (garbage, a sign, overflow). */
static inline int parse_size_arg(const char *s, uint64_t *out)
{
	char *end;
	unsigned shift = 0;
	unsigned long long n;

	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: break;
	}
	if (shift && *end == 'i')
		end++;
	if (shift && (*end == 'b' || *end == 'B'))
		end++;
	if (*end || n > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)n << shift;
	return 0;
}

#endif
