/* Numbers for people: byte counts, rates and durations in short fixed forms. */
#ifndef FERRY_TOOL_HUMAN_H
#define FERRY_TOOL_HUMAN_H

#include <stddef.h>
#include <stdint.h>

#define HUMAN_MAX 32 /* enough for every form below */

/* "512 B", "4.0 KiB", "1.25 GiB". Returns @buf. */
const char *human_bytes(char *buf, size_t len, uint64_t bytes);
/* "1.25 GiB/s". */
const char *human_rate(char *buf, size_t len, double bytes_per_s);
/* "0.4 ms", "56.7 ms", "1.23 s". */
const char *human_ms(char *buf, size_t len, double ms);

#endif
