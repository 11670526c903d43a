/*
 * The file transport: a file descriptor opened for reading or for writing,
 * usually a regular file (file:PATH). Blocking I/O; timeouts do not apply.
 * One direction only, so there is no back-channel.
 */
#include "migrate/transport.h"
#include "util/log.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Pieces handed to one writev (the kernel's UIO_MAXIOV). */
#define FILE_IOV_BATCH 1024

struct file_transport {
	struct mig_transport base;
	int fd;
};

static struct file_transport *to_file(struct mig_transport *t)
{
	return (struct file_transport *)t;
}

static int file_write_all(struct mig_transport *t, const struct iovec *iov, int iovcnt,
			  int timeout_ms)
{
	struct file_transport *f = to_file(t);
	struct iovec batch[FILE_IOV_BATCH];
	struct mig_iov_cursor c;

	(void)timeout_ms;
	mig_iov_cursor_init(&c, iov, iovcnt);
	while (!mig_iov_cursor_done(&c)) {
		int n = mig_iov_cursor_fill(&c, batch, FILE_IOV_BATCH);
		ssize_t w = writev(f->fd, batch, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int err = w < 0 ? -errno : -EIO;
			log_err("migration %s: write failed: %s", t->desc, strerror(-err));
			return err;
		}
		mig_iov_cursor_advance(&c, (size_t)w);
	}
	return 0;
}

static ssize_t file_read_full(struct mig_transport *t, void *buf, size_t len, int timeout_ms)
{
	struct file_transport *f = to_file(t);
	size_t got = 0;

	(void)timeout_ms;
	if (len > SSIZE_MAX)
		return -EINVAL;
	while (got < len) {
		ssize_t n = read(f->fd, (char *)buf + got, len - got);
		if (n > 0)
			got += (size_t)n;
		else if (n == 0)
			break;
		else if (errno != EINTR) {
			int err = -errno;
			log_err("migration %s: read failed: %s", t->desc, strerror(errno));
			return err;
		}
	}
	return (ssize_t)got;
}

/* Regular file: compares the offset with the size. Pipe or FIFO: asks poll
 * (a writer that closed shows as POLLHUP without POLLIN). */
static int file_pending(struct mig_transport *t)
{
	struct file_transport *f = to_file(t);
	struct stat st;

	if (fstat(f->fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode)) {
		off_t pos = lseek(f->fd, 0, SEEK_CUR);
		if (pos < 0)
			return -errno;
		return pos < st.st_size;
	}
	struct pollfd p = {.fd = f->fd, .events = POLLIN};
	int n = poll(&p, 1, 0);
	if (n < 0)
		return -errno;
	return n > 0 && (p.revents & POLLIN);
}

static void file_close(struct mig_transport *t)
{
	struct file_transport *f = to_file(t);

	if (f->fd >= 0)
		close(f->fd);
	free(f);
}

static const struct mig_transport_ops file_ops = {
	.write_all = file_write_all,
	.read_full = file_read_full,
	.pending = file_pending,
	.close = file_close,
};

int mig_transport_file_create(int fd, const char *desc, struct mig_transport **out)
{
	struct file_transport *f;

	if (fd < 0 || !out) {
		if (fd >= 0)
			close(fd);
		return -EINVAL;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	f->base.ops = &file_ops;
	f->base.has_backchannel = false;
	snprintf(f->base.desc, sizeof(f->base.desc), "%s", desc ? desc : "file");
	f->fd = fd;
	*out = &f->base;
	return 0;
}
