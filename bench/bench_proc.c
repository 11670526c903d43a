/* Processes for the benchmarks (bench_proc.h). */
#include "bench_proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 64

extern char **environ;

static char dir[64];
static struct {
	pid_t pid; /* 0: reaped */
	char name[48];
} procs[MAX_PROCS];
static int nprocs;
static bool has_atexit;

const char *bproc_dir(void)
{
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/ferry-bench.XXXXXX");
		if (!mkdtemp(dir)) {
			perror("bench: mkdtemp");
			exit(1);
		}
	}
	return dir;
}

char *bproc_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", bproc_dir(), name);
	return buf;
}

pid_t bproc_spawn(const char *name, char *const argv[])
{
	char log[256], lname[96];
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int fd, e;

	if (nprocs == MAX_PROCS)
		return -EMFILE;
	if (!has_atexit)
		atexit(bproc_cleanup);
	has_atexit = true;
	snprintf(lname, sizeof(lname), "%s.log", name);
	fd = open(bproc_path(log, sizeof(log), lname), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		  0644);
	if (fd < 0)
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd, 1);
	posix_spawn_file_actions_adddup2(&fa, fd, 2);
	e = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fd);
	if (e) {
		fprintf(stderr, "bench: cannot start %s: %s\n", argv[0], strerror(e));
		return -e;
	}
	procs[nprocs].pid = pid;
	snprintf(procs[nprocs].name, sizeof(procs[nprocs].name), "%s", name);
	nprocs++;
	return pid;
}

static int slot_of(pid_t pid)
{
	for (int i = 0; i < nprocs; i++)
		if (procs[i].pid == pid)
			return i;
	return -1;
}

/* The last lines of a process's log, to stderr. */
static void print_log_of(pid_t pid)
{
	char path[256], lname[96], line[1024], lines[8][1024];
	int i = slot_of(pid), n = 0;
	FILE *f;

	if (i < 0)
		return;
	snprintf(lname, sizeof(lname), "%s.log", procs[i].name);
	f = fopen(bproc_path(path, sizeof(path), lname), "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		memcpy(lines[n++ % 8], line, sizeof(line));
	fclose(f);
	fprintf(stderr, "---- %s\n", lname);
	for (int k = n > 8 ? n - 8 : 0; k < n; k++)
		fputs(lines[k % 8], stderr);
}

static void reaped(pid_t pid)
{
	int i = slot_of(pid);

	if (i >= 0)
		procs[i].pid = 0;
}

int bproc_wait_path(const char *path, pid_t pid, int timeout_ms)
{
	struct stat st;

	for (int waited = 0; stat(path, &st) < 0; waited += 10) {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			fprintf(stderr, "bench: process %d exited before %s appeared\n", (int)pid, path);
			print_log_of(pid);
			reaped(pid);
			return -ECHILD;
		}
		if (waited >= timeout_ms)
			return -ETIMEDOUT;
		usleep(10000);
	}
	return 0;
}

int bproc_log_word(const char *name, const char *prefix, char *out, size_t len)
{
	char path[256], lname[96], line[1024];
	FILE *f;
	int rc = -ENOENT;

	snprintf(lname, sizeof(lname), "%s.log", name);
	f = fopen(bproc_path(path, sizeof(path), lname), "r");
	if (!f)
		return -errno;
	while (rc && fgets(line, sizeof(line), f)) {
		char *p = strstr(line, prefix);

		if (!p)
			continue;
		p += strlen(prefix);
		size_t n = strcspn(p, " \t\n");

		if (n && n < len) {
			memcpy(out, p, n);
			out[n] = '\0';
			rc = 0;
		}
	}
	fclose(f);
	return rc;
}

void bproc_stop(pid_t pid, int grace_ms)
{
	if (pid <= 0 || slot_of(pid) < 0)
		return; /* not ours, or already reaped */
	kill(pid, SIGTERM);
	for (int waited = 0; waited < grace_ms; waited += 10) {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			reaped(pid);
			return;
		}
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	reaped(pid);
}

void bproc_cleanup(void)
{
	DIR *d;
	struct dirent *e;
	char path[512];

	for (int i = 0; i < nprocs; i++)
		bproc_stop(procs[i].pid, 2000);
	nprocs = 0;
	if (!dir[0] || !(d = opendir(dir)))
		return;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			unlink(path);
		}
	closedir(d);
	rmdir(dir);
	dir[0] = '\0';
}
