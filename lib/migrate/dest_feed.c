/* A device's data written on its own thread (see dest_feed.h). */
#include "migrate/dest_feed.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/client_migration.h>

#include "util/log.h"

struct chunk {
	struct chunk *next;
	size_t len;
	uint8_t data[];
};

struct dest_feed {
	struct ferry_client *c;
	unsigned index;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* the queue or the busy flag changed */
	struct chunk *head, *tail;
	size_t queued;       /* bytes in the queue */
	bool is_busy;        /* the thread is writing a chunk it took */
	bool is_stopping;
	int err;             /* the device's first error */
	uint64_t written;
};

static void *feed_main(void *arg)
{
	struct dest_feed *f = arg;

	pthread_mutex_lock(&f->lock);
	for (;;) {
		while (!f->head && !f->is_stopping)
			pthread_cond_wait(&f->cond, &f->lock);
		if (f->is_stopping)
			break;
		struct chunk *ch = f->head;

		f->head = ch->next;
		if (!f->head)
			f->tail = NULL;
		f->is_busy = true;
		pthread_mutex_unlock(&f->lock);

		int rc = f->err ? f->err : ferry_client_mig_write(f->c, ch->data, ch->len);

		if (rc < 0 && !f->err)
			log_err("incoming migration: device %u refused %zu bytes of its data: %s",
				f->index, ch->len, strerror(-rc));
		pthread_mutex_lock(&f->lock);
		if (rc < 0 && !f->err)
			f->err = rc;
		if (rc == 0)
			f->written += ch->len;
		f->queued -= ch->len;
		f->is_busy = false;
		free(ch);
		pthread_cond_broadcast(&f->cond);
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

int dest_feed_start(struct ferry_client *c, unsigned index, struct dest_feed **out)
{
	struct dest_feed *f = calloc(1, sizeof(*f));
	int rc;

	*out = NULL;
	if (!f)
		return -ENOMEM;
	f->c = c;
	f->index = index;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	rc = pthread_create(&f->thread, NULL, feed_main, f);
	if (rc) {
		log_err("incoming migration: no thread for device %u's data: %s", index,
			strerror(rc));
		pthread_cond_destroy(&f->cond);
		pthread_mutex_destroy(&f->lock);
		free(f);
		return -rc;
	}
	*out = f;
	return 0;
}

int dest_feed_push(struct dest_feed *f, const void *buf, size_t len)
{
	struct chunk *ch;
	int rc;

	if (!len)
		return 0;
	ch = malloc(sizeof(*ch) + len);
	if (!ch)
		return -ENOMEM;
	ch->next = NULL;
	ch->len = len;
	memcpy(ch->data, buf, len);
	pthread_mutex_lock(&f->lock);
	/* A chunk larger than the bound still goes in, alone. */
	while (!f->err && f->queued && f->queued + len > DEST_FEED_QUEUE_BYTES)
		pthread_cond_wait(&f->cond, &f->lock);
	rc = f->err;
	if (rc == 0) {
		if (f->tail)
			f->tail->next = ch;
		else
			f->head = ch;
		f->tail = ch;
		f->queued += len;
		pthread_cond_broadcast(&f->cond);
	}
	pthread_mutex_unlock(&f->lock);
	if (rc < 0)
		free(ch);
	return rc;
}

int dest_feed_drain(struct dest_feed *f)
{
	int rc;

	pthread_mutex_lock(&f->lock);
	while (!f->err && (f->head || f->is_busy))
		pthread_cond_wait(&f->cond, &f->lock);
	rc = f->err;
	pthread_mutex_unlock(&f->lock);
	return rc;
}

uint64_t dest_feed_written(struct dest_feed *f)
{
	uint64_t n;

	pthread_mutex_lock(&f->lock);
	n = f->written;
	pthread_mutex_unlock(&f->lock);
	return n;
}

void dest_feed_stop(struct dest_feed *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->is_stopping = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	pthread_join(f->thread, NULL);
	while (f->head) {
		struct chunk *ch = f->head;

		f->head = ch->next;
		free(ch);
	}
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
	free(f);
}
