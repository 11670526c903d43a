/* Internal logging macros: one line per failure, at the place it fails. */
#ifndef FERRY_UTIL_LOG_H
#define FERRY_UTIL_LOG_H

#include <ferry/log.h>

#define log_err(...)   ferry_log(FERRY_LOG_ERR, __VA_ARGS__)
#define log_warn(...)  ferry_log(FERRY_LOG_WARN, __VA_ARGS__)
#define log_info(...)  ferry_log(FERRY_LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { \
		if (ferry_log_get_level() >= FERRY_LOG_DEBUG) \
			ferry_log(FERRY_LOG_DEBUG, __VA_ARGS__); \
	} while (0)

#endif
