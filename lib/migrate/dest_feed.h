/*
 * Destination: each device's data written to it on a thread of its own.
 *
 * Why: the stream interleaves every device's chunks with guest pages, and a
 * device takes a while to load a chunk. Written inline, every device waited
 * for the one before and the stream was not read meanwhile: in the demo on
 * the 2-vCPU build VM, loading the vram devices' 6.6 MiB of stop-copy data
 * took 27 ms of the 30 ms the destination spent on the stop-copy part. With a feeder per device,
 * devices load at the same time, and the stream reader goes on.
 *
 * Order within a device is kept (one queue, one thread); across devices
 * nothing is ordered, as nothing in the protocol needs it. Chunks are
 * copied into the queue (the reader's buffer is reused at the next
 * section), and the queue is bounded, so a slow device slows the stream
 * instead of filling memory.
 *
 * Thread-safety: push, error and drain are called by one thread (the
 * engine's); the feeder threads are internal.
 */
#ifndef FERRY_MIGRATE_DEST_FEED_H
#define FERRY_MIGRATE_DEST_FEED_H

#include <stddef.h>
#include <stdint.h>

struct ferry_client;
struct dest_feed;

/* Bytes a device's queue may hold before push waits. */
#define DEST_FEED_QUEUE_BYTES (8u << 20)

/* A feeder for device @index (for log lines) whose data goes to @c
 * (borrowed; only the feeder thread uses it until drain returns).
 * Returns 0 or a negative errno. */
int dest_feed_start(struct ferry_client *c, unsigned index, struct dest_feed **out);

/* Queues a copy of @len bytes. Waits while the queue is full. Returns 0,
 * or the device's first error (then nothing more is written to it). */
int dest_feed_push(struct dest_feed *f, const void *buf, size_t len);

/* Waits until everything queued was written; returns 0 or the device's
 * first error. The feeder stays usable. */
int dest_feed_drain(struct dest_feed *f);

/* Bytes the device accepted so far. */
uint64_t dest_feed_written(struct dest_feed *f);

/* Stops the thread, dropping what is still queued. NULL-safe. */
void dest_feed_stop(struct dest_feed *f);

#endif
