/*
 * libferry client side, private: the connection object and what its parts
 * (client.c, call.c, service.c, region*.c, irq.c, dma.c, feature.c,
 * migration.c, power.c) share.
 *
 * Concepts:
 * - One struct ferry_client is one vfio-user connection. Requests go through
 *   client_call(), which adds the reply checks every command needs (size,
 *   unexpected fds) on top of wire_call()'s msg_id / cmd / error matching.
 * - The service thread takes the server's own commands (DMA_READ /
 *   DMA_WRITE) from the twin socket when one was negotiated, else from the
 *   main channel (the wire layer routes replies to their callers, so it can
 *   share the socket with them), and answers them from the DMA table.
 * - Locks, never nested except where noted: `lock` guards the device and
 *   region caches and region mappings (and the low-power state); the DMA
 *   table has its own lock (dma.c) and the dirty callback another (held
 *   while it runs). No lock is held across a wire call, except power.c's
 *   op_lock, which serialises low-power requests and is taken before `lock`,
 *   and dirty_shm.c's area lock (one report chunk at a time), likewise.
 */
#ifndef FERRY_CLIENT_PRIV_H
#define FERRY_CLIENT_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ferry/client.h>
#include "wire/caps.h"
#include "wire/wire.h"

/* What we offer in VERSION (PROTOCOL.md §2.2): fds we accept per message,
 * and the largest DMA_READ/DMA_WRITE count we serve. */
#define CLIENT_MAX_MSG_FDS 16u
#define CLIENT_MAX_XFER (1024u * 1024u)

/* Sanity bounds on what DEVICE_GET_INFO may announce (a PCI device has 9
 * regions and 5 irq indexes; device-specific regions come on top). */
#define CLIENT_MAX_REGIONS 256u
#define CLIENT_MAX_IRQS 256u

/* One region's cached description, its mmap fd and its mapping. */
struct client_region {
	struct ferry_region_desc desc;
	int fd;          /* -1 when the server sent none */
	void *map_base;  /* NULL while not mapped */
	size_t map_len;
};

struct client_dma_entry {
	uint64_t iova, size;
	uint32_t prot;     /* VFIO_DMA_MAP_FLAG_READ | WRITE */
	uint8_t *vaddr;    /* our own mapping, or NULL */
	int fd;            /* our duplicate of the backing fd when vaddr is NULL, else -1 */
	uint64_t fd_offset;
};

struct client_power; /* power.c */

struct client_dma_table {
	pthread_mutex_t lock;
	struct client_dma_entry *v;
	unsigned n, cap;
};

struct ferry_client {
	char name[128];
	struct wire_chan *ch;
	struct wire_chan *twin; /* server commands; NULL without a twin socket */
	struct ferry_server_caps caps;

	pthread_t service;
	bool service_running;

	pthread_mutex_t lock;
	bool has_device_desc;
	struct ferry_device_desc device;
	struct client_region **regions; /* device.num_regions slots, filled lazily */
	uint32_t rx_limit;              /* current max payload of the main channel */
	int32_t mig_last_state;         /* last migration state confirmed; -1: unknown */
	struct client_power *pm;        /* low power (power.c); NULL until first used */

	struct client_dma_table dma;
	uint64_t dma_min_page; /* smallest page size the server allows for DMA_MAP */

	pthread_mutex_t dirty_lock;
	ferry_client_dirty_fn dirty_fn;
	void *dirty_opaque;

	struct client_dirty *dirty; /* dirty_shm.c: DMA logging's shared area, lazily */
};

/* ---- call.c: requests and reply checks ---- */

/* One request as client_call() sends it. */
struct client_req {
	const char *what;          /* names the request in log lines */
	uint16_t cmd;
	const struct iovec *iov;
	int iovcnt;
	const int *fds;            /* not consumed */
	unsigned nfds;
	uint32_t min_reply;        /* smallest acceptable reply payload */
	unsigned max_reply_fds;    /* fds the reply may carry */
	bool quiet;                /* failures are the caller's to report (probing) */
};

/* wire_call() plus the checks every reply needs: no more fds than
 * @req->max_reply_fds (all are closed then, -EPROTO) and a payload of at
 * least @req->min_reply bytes (-EPROTO). Logs one line on failure (at debug
 * level when @req->quiet). @reply may be NULL when no payload is wanted. */
int client_call(struct ferry_client *c, const struct client_req *req, struct wire_msg *reply);
/* The common case: one contiguous request payload, no fds either way. */
int client_call_simple(struct ferry_client *c, const char *what, uint16_t cmd,
		       const void *payload, size_t len, uint32_t min_reply,
		       struct wire_msg *reply);
/* Makes sure the main channel accepts replies of @payload bytes. */
int client_allow_rx(struct ferry_client *c, uint64_t payload);
/* Device info, fetched once and cached. */
int client_device_desc(struct ferry_client *c, struct ferry_device_desc *out);

/* ---- service.c: the thread serving the server's commands ---- */

int client_service_start(struct ferry_client *c);
/* Joins the thread; the channels must have been killed first. */
void client_service_join(struct ferry_client *c);

/* ---- dma.c ---- */

void client_dma_init(struct client_dma_table *t);
void client_dma_destroy(struct client_dma_table *t);
/* Serves one DMA_READ / DMA_WRITE on @ch; replies itself. */
void client_dma_serve(struct ferry_client *c, struct wire_chan *ch, struct wire_msg *cmd);

/* ---- dirty_shm.c (dirty.c is the DMA logging API) ---- */

/* Unmaps the dirty_shm area and frees its state (close). */
void client_dirty_free(struct ferry_client *c);

/* ---- region.c ---- */

void client_regions_free(struct ferry_client *c);

/* ---- power.c ---- */

/* @reg was just mapped (lock held): in low power its areas are made
 * inaccessible; if that fails it is unmapped again. 0 or a negative errno. */
int client_power_mapped_locked(struct ferry_client *c, struct client_region *reg);
/* Frees the low-power state and closes the watched eventfd (close). */
void client_power_free(struct ferry_client *c);

/* ---- region_caps.c: the region-info capability chain ---- */

/* Parses the capability chain of a region-info reply @buf of @len bytes
 * (the fixed part included) into @d (areas allocated, type filled). Checks
 * every offset and size against @len, refuses loops and duplicates, skips
 * unknown ids. Returns 0 or -EPROTO with one log line. */
int client_region_caps_parse(const char *name, const uint8_t *buf, uint32_t len,
		      struct ferry_region_desc *d);

#endif
