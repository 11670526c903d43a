/*
 * Logging shared by every libferry layer. One line per event, to stderr by
 * default, prefixed with the level and (where known) the device's name.
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdarg.h>
#include <ferry/common.h>

#ifdef __cplusplus
extern "C" {
#endif

enum ferry_log_level {
	FERRY_LOG_ERR = 0,
	FERRY_LOG_WARN = 1,
	FERRY_LOG_INFO = 2,
	FERRY_LOG_DEBUG = 3,
};

/* Messages above @level are dropped. Default: FERRY_LOG_WARN, or the value of
 * the FERRY_LOG environment variable (err, warn, info, debug). Thread-safe. */
FERRY_API void ferry_log_set_level(enum ferry_log_level level);
FERRY_API enum ferry_log_level ferry_log_get_level(void);

/* Replaces the sink (NULL restores stderr). @fn receives one formatted line
 * without a trailing newline; it may be called from any libferry thread. */
typedef void (*ferry_log_fn)(enum ferry_log_level level, const char *line, void *opaque);
FERRY_API void ferry_log_set_sink(ferry_log_fn fn, void *opaque);

FERRY_API void ferry_log(enum ferry_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
FERRY_API void ferry_vlog(enum ferry_log_level level, const char *fmt, va_list ap);

#ifdef __cplusplus
}
#endif
#endif /* FERRY_LOG_H */
