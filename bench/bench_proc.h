/*
 * Processes for the benchmarks that need real ferry programs: spawn with
 * output to a log file, wait for a socket to appear, stop everything that
 * was started (by pid) at exit. One temporary directory per run holds the
 * sockets and logs and is removed at the end.
 */
#ifndef FERRY_BENCH_PROC_H
#define FERRY_BENCH_PROC_H

#include <stddef.h>
#include <sys/types.h>

/* Creates the run's directory (once) and returns it. */
const char *bproc_dir(void);

/* "<dir>/<name>" in @buf. Returns @buf. */
char *bproc_path(char *buf, size_t len, const char *name);

/* Starts @argv (NULL-terminated) with stdout and stderr in <dir>/<name>.log.
 * Returns its pid, or -errno. */
pid_t bproc_spawn(const char *name, char *const argv[]);

/* Waits up to @timeout_ms for @path to exist while @pid lives. 0, -ETIMEDOUT,
 * or -ECHILD when the process exited (its log is printed). */
int bproc_wait_path(const char *path, pid_t pid, int timeout_ms);

/* Searches <dir>/<name>.log for @prefix and copies the word after it into
 * @out. 0 or -ENOENT. */
int bproc_log_word(const char *name, const char *prefix, char *out, size_t len);

/* Stops one process: SIGTERM, then SIGKILL after @grace_ms. */
void bproc_stop(pid_t pid, int grace_ms);

/* Stops every process still running and removes the directory. Registered
 * with atexit() by the first bproc_spawn(). */
void bproc_cleanup(void);

#endif
