/*
 * Device servers as child processes, for integration tests: start one,
 * attach to it once its socket exists (noticing if it died first), and stop
 * it with SIGTERM, returning its exit status: a device must exit 0 on
 * SIGTERM (the vfio-user backend convention).
 */
#ifndef FERRY_TEST_DEVICE_PROC_H
#define FERRY_TEST_DEVICE_PROC_H

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ferry/client.h>

#define DEVPROC_MAX_ARGS 16

static inline void devproc_sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

/* Starts @path with the NULL-terminated arguments that follow (argv[0] is
 * @path). Returns the child's pid, or -1. */
static inline pid_t devproc_spawn(const char *path, ...)
{
	const char *argv[DEVPROC_MAX_ARGS + 2] = {path};
	va_list ap;
	unsigned n = 1;

	va_start(ap, path);
	while (n <= DEVPROC_MAX_ARGS && (argv[n] = va_arg(ap, const char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid == 0) {
		execv(path, (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	return pid;
}

/* Attaches to the device at @sock, retrying for 10 s while it starts.
 * Returns -ECHILD (and sets *@pid to -1) if the device exited first. */
static inline int devproc_connect(pid_t *pid, const char *sock, const char *name,
				  int timeout_ms, struct ferry_client **out)
{
	struct ferry_client_options opts = {.name = name, .timeout_ms = timeout_ms};
	int rc = -ENOENT, status;

	for (int i = 0; i < 1000; i++) {
		if (waitpid(*pid, &status, WNOHANG) == *pid) {
			fprintf(stderr, "%s exited early (status %#x)\n", name, status);
			*pid = -1;
			return -ECHILD;
		}
		/* Wait for the socket file first: fewer failed connects to log. */
		if (access(sock, F_OK) == 0) {
			rc = ferry_client_connect(sock, &opts, out);
			if (rc == 0)
				return 0;
		}
		devproc_sleep_ms(10);
	}
	return rc;
}

/* SIGTERM, then the device must exit within 10 s (else SIGKILL). Returns
 * its exit status, 128 + signal if killed, or -1. */
static inline int devproc_stop(pid_t pid)
{
	int status;

	if (pid <= 0)
		return -1;
	kill(pid, SIGTERM);
	for (int i = 0; i < 1000; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		devproc_sleep_ms(10);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	fprintf(stderr, "device ignored SIGTERM for 10 s\n");
	return -1;
}

#endif
