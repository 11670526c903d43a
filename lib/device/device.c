/*
 * The device object: creation (validating the model's description and
 * naming what is wrong), the listening socket, the message loop in its
 * three forms (ferry_device_run, a library thread, or the caller's event
 * loop through one epoll fd), and the client connection's life cycle.
 *
 * One client at a time: while a client is connected the listening socket
 * is left out of the epoll set, so further clients wait in the kernel's
 * backlog until the current one goes away.
 *
 * Disconnect (conn_close) keeps the device's state and drops the client's:
 * it kills the channels first, so a worker thread blocked in a DMA helper
 * waiting for the client returns, then takes the DMA table's write lock
 * (which waits for every helper to leave), unmaps all DMA, stops dirty
 * logging, closes the interrupt eventfds, and only then frees the channels.
 */
#include "device/device_priv.h"
#include "util/checked.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <ferry/migration.h>

#define LISTEN_BACKLOG 8
/* Commands handled per ferry_device_dispatch call before returning to the
 * caller's loop (fairness with the caller's other fds). */
#define DISPATCH_BUDGET 64
/*
 * While a client sends commands back to back, ferry_device_run polls the
 * socket (non-blocking receives) for this long after each reply before it
 * goes back to sleep in poll. The cause it works around: on our test VMs
 * (PVM guests, no guest halt-polling) waking a halted vCPU costs 10-30 us,
 * paid once per trapped access by a server that sleeps between commands:
 * bench_rtt measured 37-41 us per 4-byte REGION_READ against 23-27 us for
 * a raw ping-pong. Polling keeps our CPU awake across the client's turnaround
 * (its own wake-up plus a few us): 23-24 us, as fast as the raw pair. It must
 * cover a wake-up of the client; 30 and 60 us measured the same.
 * Spinning only follows a command that arrived within this window of our
 * previous reply (see serve_ready), so a client that pauses costs at most one
 * window of CPU per pause.
 */
#define BURST_POLL_NS 50000

/* ---- validation of struct ferry_device_info ---- */

static const char *const region_names[FERRY_PCI_NUM_REGIONS] = {
	"BAR0", "BAR1", "BAR2", "BAR3", "BAR4", "BAR5", "ROM", "config", "VGA",
};

static bool is_bar(unsigned i)
{
	return i <= FERRY_PCI_BAR5;
}

static int validate_region_fd(const char *name, unsigned i, const struct ferry_region *r)
{
	uint64_t end = r->nr_areas ? 0 : r->size; /* how much of the file is mapped */
	struct stat st;

	for (unsigned a = 0; a < r->nr_areas; a++) /* areas were checked inside the region */
		if (r->areas[a].offset + r->areas[a].size > end)
			end = r->areas[a].offset + r->areas[a].size;
	if (fstat(r->mmap_fd, &st) < 0) {
		log_err("%s: regions[%u] (%s): mmap_fd %d: %s", name, i, region_names[i], r->mmap_fd,
			strerror(errno));
		return -EINVAL;
	}
	if (!S_ISREG(st.st_mode)) {
		log_err("%s: regions[%u] (%s): mmap_fd %d is not a regular file or memfd", name, i,
			region_names[i], r->mmap_fd);
		return -EINVAL;
	}
	if (r->mmap_offset % DEV_PGSIZES || end > UINT64_MAX - r->mmap_offset ||
	    r->mmap_offset + end > (uint64_t)st.st_size) {
		log_err("%s: regions[%u] (%s): mmap_offset 0x%" PRIx64 " + 0x%" PRIx64
			" is unaligned or beyond mmap_fd's %lld bytes", name, i, region_names[i],
			r->mmap_offset, end, (long long)st.st_size);
		return -EINVAL;
	}
	return 0;
}

static int validate_region(const struct ferry_device_info *info, const char *name, unsigned i)
{
	const struct ferry_region *r = &info->regions[i];
	uint32_t known = FERRY_REGION_READ | FERRY_REGION_WRITE;

	if (i == FERRY_PCI_CONFIG || !r->size)
		return 0; /* config space is the library's; absent regions are ignored */
	if (is_bar(i))
		known |= FERRY_BAR_IO | FERRY_BAR_MEM64 | FERRY_BAR_PREFETCH;
	if (r->flags & ~known) {
		log_err("%s: regions[%u] (%s).flags 0x%x has unknown bits 0x%x", name, i,
			region_names[i], r->flags, r->flags & ~known);
		return -EINVAL;
	}
	if (r->nr_areas && r->mmap_fd < 0) {
		log_err("%s: regions[%u] (%s) has %u mmap areas but no mmap_fd", name, i,
			region_names[i], r->nr_areas);
		return -EINVAL;
	}
	if (r->mmap_fd < 0)
		return 0;
	if (r->flags & FERRY_BAR_IO) {
		log_err("%s: regions[%u] (%s) is an I/O BAR: it cannot have an mmap_fd", name, i,
			region_names[i]);
		return -EINVAL;
	}
	if (r->nr_areas > DEV_MAX_MMAP_AREAS || (r->nr_areas && !r->areas)) {
		log_err("%s: regions[%u] (%s): nr_areas %u (at most %u, areas non-NULL)", name, i,
			region_names[i], r->nr_areas, DEV_MAX_MMAP_AREAS);
		return -EINVAL;
	}
	for (unsigned a = 0; a < r->nr_areas; a++) {
		const struct ferry_mmap_area *ar = &r->areas[a];
		if (!ar->size || (ar->offset | ar->size) % DEV_PGSIZES ||
		    !range_ok(ar->offset, ar->size, r->size)) {
			log_err("%s: regions[%u] (%s): area %u [0x%" PRIx64 ", +0x%" PRIx64
				") is empty, not page aligned or outside the 0x%" PRIx64 "-byte region",
				name, i, region_names[i], a, ar->offset, ar->size, r->size);
			return -EINVAL;
		}
	}
	return validate_region_fd(name, i, r);
}

/* The MSI-X table and PBA are served by the library: they must stay out of
 * every mmap area of their BAR (pci_config checks they fit in it). */
static int validate_msix(const struct ferry_device_info *info, const char *name)
{
	unsigned n = info->irq_count[FERRY_IRQ_MSIX];
	const struct ferry_region *r;
	uint64_t tlen = (uint64_t)n * 16, plen = (uint64_t)(n + 63) / 64 * 8;

	if (!n)
		return 0;
	if (info->msix_bar > FERRY_PCI_BAR5) {
		log_err("%s: msix_bar %u is not a BAR", name, info->msix_bar);
		return -EINVAL;
	}
	r = &info->regions[info->msix_bar];
	if ((r->flags & (FERRY_REGION_READ | FERRY_REGION_WRITE)) !=
	    (FERRY_REGION_READ | FERRY_REGION_WRITE)) {
		log_err("%s: msix_bar %u (flags 0x%x) must be readable and writable", name,
			info->msix_bar, r->flags);
		return -EINVAL;
	}
	if (r->mmap_fd < 0)
		return 0;
	if (!r->nr_areas) {
		log_err("%s: msix_bar %u is wholly mappable: the MSI-X table needs a trapped part "
			"(give sparse areas around it)", name, info->msix_bar);
		return -EINVAL;
	}
	for (unsigned a = 0; a < r->nr_areas; a++) {
		const struct ferry_mmap_area *ar = &r->areas[a];
		if (ranges_overlap(ar->offset, ar->size, info->msix_table_offset, tlen) ||
		    ranges_overlap(ar->offset, ar->size, info->msix_pba_offset, plen)) {
			log_err("%s: BAR%u mmap area %u [0x%" PRIx64 ", +0x%" PRIx64
				") overlaps the MSI-X table (0x%x) or PBA (0x%x)", name,
				info->msix_bar, a, ar->offset, ar->size, info->msix_table_offset,
				info->msix_pba_offset);
			return -EINVAL;
		}
	}
	return 0;
}

static int validate_info(const struct ferry_device_info *info, const char *name)
{
	static const unsigned max_irqs[FERRY_IRQ_NUM] = {1, 32, 2048, 1, 1};
	static const char *const irq_names[FERRY_IRQ_NUM] = {"INTx", "MSI", "MSI-X", "ERR", "REQ"};
	const struct ferry_device_ops *ops = info->ops;
	size_t min_ops = offsetof(struct ferry_device_ops, region_access) + sizeof(ops->region_access);
	bool is_trapped = false;
	int r;

	if (!ops) {
		log_err("%s: info->ops is NULL", name);
		return -EINVAL;
	}
	if (ops->size < min_ops || ops->size > sizeof(struct ferry_device_ops)) {
		log_err("%s: ops->size %u: this library knows tables of %zu..%zu bytes "
			"(set it to sizeof(struct ferry_device_ops))", name, ops->size, min_ops,
			sizeof(struct ferry_device_ops));
		return -EINVAL;
	}
	for (unsigned i = 0; i < FERRY_IRQ_NUM; i++) {
		if (info->irq_count[i] > max_irqs[i]) {
			log_err("%s: irq_count[%u] (%s) = %u, at most %u", name, i, irq_names[i],
				info->irq_count[i], max_irqs[i]);
			return -EINVAL;
		}
	}
	if (info->max_dma_maps > VFIO_USER_DEFAULT_MAX_DMA_MAPS) {
		log_err("%s: max_dma_maps %u exceeds %u (clients refuse more)", name,
			info->max_dma_maps, VFIO_USER_DEFAULT_MAX_DMA_MAPS);
		return -EINVAL;
	}
	for (unsigned i = 0; i < FERRY_PCI_NUM_REGIONS; i++) {
		const struct ferry_region *reg = &info->regions[i];
		if ((r = validate_region(info, name, i)) < 0)
			return r;
		if (i != FERRY_PCI_CONFIG && reg->size && !(reg->mmap_fd >= 0 && !reg->nr_areas))
			is_trapped = true;
	}
	if ((r = validate_msix(info, name)) < 0)
		return r;
	if (is_trapped && !ops->region_access) {
		log_err("%s: ops->region_access is NULL but some region has trapped parts "
			"(no mmap_fd, or sparse areas)", name);
		return -EINVAL;
	}
	return 0;
}

static void fill_config_desc(const struct ferry_device_info *info, const char *name,
			     struct pci_config_desc *d)
{
	memset(d, 0, sizeof(*d));
	d->name = name;
	d->vendor_id = info->id.vendor_id;
	d->device_id = info->id.device_id;
	d->subsys_vendor_id = info->id.subsys_vendor_id;
	d->subsys_id = info->id.subsys_id;
	d->revision = info->id.revision;
	d->class_code = info->id.class_code;
	for (unsigned i = 0; i <= FERRY_PCI_BAR5; i++) {
		const struct ferry_region *r = &info->regions[i];
		if (!r->size)
			continue;
		d->bar_size[i] = r->size;
		d->bar_flags[i] = (r->flags & FERRY_BAR_IO ? PCI_CFG_BAR_IO : 0) |
				  (r->flags & FERRY_BAR_MEM64 ? PCI_CFG_BAR_MEM64 : 0) |
				  (r->flags & FERRY_BAR_PREFETCH ? PCI_CFG_BAR_PREFETCH : 0);
	}
	d->rom_size = info->regions[FERRY_PCI_ROM].size;
	d->intx_pin = info->irq_count[FERRY_IRQ_INTX] ? 1 : 0;
	d->msi_vectors = info->irq_count[FERRY_IRQ_MSI];
	d->msix_vectors = info->irq_count[FERRY_IRQ_MSIX];
	d->msix_bar = info->msix_bar;
	d->msix_table_offset = info->msix_table_offset;
	d->msix_pba_offset = info->msix_pba_offset;
	d->pcie = info->pcie;
}

/* ---- create / destroy ---- */

int ferry_device_create(const struct ferry_device_info *info, struct ferry_device **out)
{
	struct pci_config_desc desc;
	struct ferry_device *dev;
	const char *name;
	int r;

	if (!info || !out) {
		log_err("ferry_device_create: %s is NULL", info ? "out" : "info");
		return -EINVAL;
	}
	name = info->name && info->name[0] ? info->name : "ferry-device";
	if ((r = validate_info(info, name)) < 0)
		return r;

	dev = calloc(1, sizeof(*dev));
	if (!dev) {
		log_err("%s: out of memory", name);
		return -ENOMEM;
	}
	dev->listen_fd = dev->epoll_fd = dev->stop_fd = -1;
	for (unsigned i = 0; i < FERRY_PCI_NUM_REGIONS; i++)
		dev->region_fd[i] = -1;
	snprintf(dev->name, sizeof(dev->name), "%s", name);
	dev->info = *info;
	dev->info.name = dev->name;
	memcpy(&dev->ops, info->ops, info->ops->size);
	dev->info.ops = &dev->ops;
	atomic_init(&dev->mig_state, FERRY_MIG_RUNNING);
	atomic_init(&dev->is_quiesced, false);
	atomic_init(&dev->has_logged_quiesced, false);
	atomic_init(&dev->bus_master, false);
	atomic_init(&dev->is_stopping, false);
	power_init(dev);
	if ((r = state_lock_init(dev)) < 0) {
		log_err("%s: state lock: %s", name, strerror(-r));
		goto out_dev;
	}

	for (unsigned i = 0; i < FERRY_PCI_NUM_REGIONS; i++) {
		struct ferry_region *reg = &dev->info.regions[i];
		if (i == FERRY_PCI_CONFIG || !reg->size) {
			memset(reg, 0, sizeof(*reg));
			reg->mmap_fd = -1;
			continue;
		}
		if (reg->nr_areas) {
			dev->areas[i] = calloc(reg->nr_areas, sizeof(*dev->areas[i]));
			if (!dev->areas[i]) {
				r = -ENOMEM;
				goto out_dev;
			}
			memcpy(dev->areas[i], reg->areas, reg->nr_areas * sizeof(*reg->areas));
		}
		reg->areas = dev->areas[i];
		if (reg->mmap_fd >= 0) {
			dev->region_fd[i] = fcntl(reg->mmap_fd, F_DUPFD_CLOEXEC, 3);
			if (dev->region_fd[i] < 0) {
				r = -errno;
				log_err("%s: regions[%u]: dup of mmap_fd %d: %s", name, i,
					reg->mmap_fd, strerror(-r));
				goto out_dev;
			}
		}
		reg->mmap_fd = dev->region_fd[i];
	}

	fill_config_desc(&dev->info, dev->name, &desc);
	if ((r = pci_config_create(&desc, &dev->cfg)) < 0)
		goto out_dev;
	if ((r = irq_init(dev)) < 0)
		goto out_dev;
	if ((r = dma_table_create(info->max_dma_maps ? info->max_dma_maps
						     : VFIO_USER_DEFAULT_MAX_DMA_MAPS, &dev->dma)) < 0)
		goto out_dev;
	if ((r = dirty_log_create(&dev->log)) < 0)
		goto out_dev;
	dev->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	dev->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (dev->epoll_fd < 0 || dev->stop_fd < 0) {
		r = -errno;
		log_err("%s: epoll/eventfd: %s", name, strerror(-r));
		goto out_dev;
	}
	*out = dev;
	return 0;

out_dev:
	if (r == -ENOMEM)
		log_err("%s: out of memory", name);
	ferry_device_destroy(dev);
	return r;
}

static void conn_close(struct ferry_device *dev);

void ferry_device_destroy(struct ferry_device *dev)
{
	if (!dev)
		return;
	if (dev->has_thread)
		ferry_device_stop(dev);
	if (dev->conn)
		conn_close(dev);
	if (dev->listen_fd >= 0)
		close(dev->listen_fd);
	if (dev->sock_path) {
		unlink(dev->sock_path);
		free(dev->sock_path);
	}
	if (dev->epoll_fd >= 0)
		close(dev->epoll_fd);
	if (dev->stop_fd >= 0)
		close(dev->stop_fd);
	mig_destroy(dev);
	dirty_log_destroy(dev->log);
	dma_table_destroy(dev->dma);
	irq_fini(dev);
	pci_config_destroy(dev->cfg);
	free(dev->log_req_ranges);
	for (unsigned i = 0; i < FERRY_PCI_NUM_REGIONS; i++) {
		if (dev->region_fd[i] >= 0)
			close(dev->region_fd[i]);
		free(dev->areas[i]);
	}
	state_lock_fini(dev);
	free(dev);
}

const char *ferry_device_name(const struct ferry_device *dev)
{
	return dev ? dev->name : "(null)";
}

bool ferry_device_bus_master(const struct ferry_device *dev)
{
	return dev && atomic_load_explicit(&dev->bus_master, memory_order_acquire);
}

/* ---- epoll set ---- */

static int epoll_add(struct ferry_device *dev, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	if (epoll_ctl(dev->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int r = -errno;
		log_err("%s: epoll add fd %d: %s", dev->name, fd, strerror(-r));
		return r;
	}
	return 0;
}

static void epoll_del(struct ferry_device *dev, int fd)
{
	epoll_ctl(dev->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
}

/* ---- connections ---- */

static void conn_close(struct ferry_device *dev)
{
	struct conn *c = dev->conn;
	int fds[2];
	int n;

	if (!c)
		return;
	/* 1. Waiters (worker threads in DMA helpers) return with an error. */
	wire_chan_kill(c->chan, -ECONNRESET);
	if (c->twin)
		wire_chan_kill(c->twin, -ECONNRESET);
	n = wire_chan_poll_fds(c->chan, fds);
	for (int i = 0; i < n; i++)
		epoll_del(dev, fds[i]);
	/* 2. Under the state lock (no reset from another thread meanwhile):
	 *    migration back to RUNNING (mig_reset.c), then the client's state:
	 *    DMA (waits for helpers in flight), logging, eventfds, a low-power
	 *    entry. */
	dev_lock(dev);
	mig_client_gone(dev);
	dma_release_client(dev);
	irq_release_client(dev);
	power_release_client(dev);
	/* 3. Nobody can reach the channels any more. */
	wire_chan_destroy(c->twin);
	wire_chan_destroy(c->chan);
	dev->conn = NULL;
	if (c->is_negotiated) {
		log_info("%s: client disconnected", dev->name);
		if (dev->ops.client_changed)
			dev->ops.client_changed(dev->info.opaque, false);
	}
	dev_unlock(dev);
	free(c);
	if (dev->listen_fd >= 0)
		epoll_add(dev, dev->listen_fd);
}

static int conn_open(struct ferry_device *dev, int fd)
{
	struct wire_chan_opts opts = {.name = dev->name};
	struct wire_transport *tr;
	struct conn *c;
	int fds[2], n, r;

	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		log_err("%s: out of memory for a connection", dev->name);
		return -ENOMEM;
	}
	if ((r = wire_transport_sock_create(fd, &tr)) < 0 ||
	    (r = wire_chan_create(tr, &opts, &c->chan)) < 0) {
		log_err("%s: cannot set up the connection: %s", dev->name, strerror(-r));
		free(c);
		return r;
	}
	dev->conn = c;
	if (dev->listen_fd >= 0)
		epoll_del(dev, dev->listen_fd);
	n = wire_chan_poll_fds(c->chan, fds);
	for (int i = 0; i < n; i++) {
		if ((r = epoll_add(dev, fds[i])) < 0) {
			conn_close(dev);
			return r;
		}
	}
	log_debug("%s: client connected (fd %d)", dev->name, fd);
	return 0;
}

int ferry_device_attach_fd(struct ferry_device *dev, int fd)
{
	if (!dev || fd < 0) {
		log_err("%s: attach of fd %d refused", ferry_device_name(dev), fd);
		if (fd >= 0)
			close(fd);
		return -EINVAL;
	}
	if (dev->conn) {
		log_err("%s: attach of fd %d: a client is already connected", dev->name, fd);
		close(fd);
		return -EBUSY;
	}
	return conn_open(dev, fd);
}

int ferry_device_listen(struct ferry_device *dev, const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct stat st;
	int fd, r;

	if (!dev || !path) {
		log_err("%s: listen: path is NULL", ferry_device_name(dev));
		return -EINVAL;
	}
	if (dev->listen_fd >= 0) {
		log_err("%s: listen on %s: already listening on %s", dev->name, path,
			dev->sock_path ? dev->sock_path : "?");
		return -EBUSY;
	}
	if (strlen(path) >= sizeof(addr.sun_path)) {
		log_err("%s: socket path %s is longer than %zu bytes", dev->name, path,
			sizeof(addr.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(addr.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		r = -errno;
		log_err("%s: socket: %s", dev->name, strerror(-r));
		return r;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_err("%s: %s exists and is not a socket", dev->name, path);
			r = -EEXIST;
			goto out_fd;
		}
		/* Stale only if nobody listens there any more. */
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool is_live = probe >= 0 &&
			       connect(probe, (struct sockaddr *)&addr, sizeof(addr)) == 0;
		if (probe >= 0)
			close(probe);
		if (is_live) {
			log_err("%s: another server is listening on %s", dev->name, path);
			r = -EADDRINUSE;
			goto out_fd;
		}
		unlink(path);
	}
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		r = -errno;
		log_err("%s: bind/listen on %s: %s", dev->name, path, strerror(-r));
		goto out_fd;
	}
	dev->sock_path = strdup(path);
	if (!dev->sock_path) {
		r = -ENOMEM;
		goto out_unlink;
	}
	if (!dev->conn && (r = epoll_add(dev, fd)) < 0)
		goto out_path;
	dev->listen_fd = fd;
	log_info("%s: listening on %s", dev->name, path);
	return 0;

out_path:
	free(dev->sock_path);
	dev->sock_path = NULL;
out_unlink:
	unlink(path);
out_fd:
	close(fd);
	return r;
}

/* Accepts one pending client, if any. */
static int accept_client(struct ferry_device *dev)
{
	int fd = accept4(dev->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
		    errno == ECONNABORTED)
			return 0;
		int r = -errno;
		log_err("%s: accept on %s: %s", dev->name, dev->sock_path, strerror(-r));
		return r;
	}
	return conn_open(dev, fd);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Takes the next command; with @poll_ns > 0 keeps trying without blocking
 * for that long. Returns wire_next_command's result. */
static int next_command(struct conn *c, struct wire_msg *m, int64_t poll_ns)
{
	int64_t end = poll_ns > 0 ? now_ns() + poll_ns : 0;
	int r;

	while ((r = wire_next_command(c->chan, m, 0)) == -EAGAIN && poll_ns > 0 &&
	       now_ns() < end)
		;
	return r;
}

/* Handles the commands that are ready, without blocking for new ones. With
 * @can_poll (ferry_device_run), during a burst it also polls for the next
 * one (BURST_POLL_NS). */
static void serve_ready(struct ferry_device *dev, bool can_poll)
{
	for (int i = 0; i < DISPATCH_BUDGET && dev->conn; i++) {
		struct conn *c = dev->conn;
		struct wire_msg m;
		bool is_polling = can_poll && dev->is_burst && i > 0;
		int r = next_command(c, &m, is_polling ? BURST_POLL_NS : 0);

		if (can_poll) {
			/* A burst: the command came within a window of our
			 * last reply, so polling would have caught it. */
			dev->is_burst = r == 0 && (is_polling ||
						   now_ns() - dev->last_reply_ns < BURST_POLL_NS);
		}
		if (r == -EAGAIN)
			return;
		if (r < 0) {
			if (r != -ECONNRESET)
				log_err("%s: connection failed: %s", dev->name, strerror(-r));
			conn_close(dev);
			return;
		}
		dispatch_command(dev, c, &m);
		if (c->is_dropping || wire_chan_error(c->chan)) {
			conn_close(dev);
			return;
		}
		if (can_poll)
			dev->last_reply_ns = now_ns();
		/* Back to poll unless a command is already buffered (or a
		 * burst is on): another receive would mostly cost an EAGAIN. */
		if (!(can_poll && dev->is_burst) && !wire_chan_has_buffered(c->chan))
			return;
		if (atomic_load(&dev->is_stopping))
			return;
	}
}

int ferry_device_poll_fd(struct ferry_device *dev)
{
	return dev ? dev->epoll_fd : -EINVAL;
}

static int dispatch(struct ferry_device *dev, bool can_poll)
{
	int r;

	if (!dev->conn && dev->listen_fd >= 0 && (r = accept_client(dev)) < 0)
		return r;
	if (dev->conn)
		serve_ready(dev, can_poll);
	return 0;
}

int ferry_device_dispatch(struct ferry_device *dev)
{
	return dev ? dispatch(dev, false) : -EINVAL;
}

int ferry_device_run(struct ferry_device *dev)
{
	int r = 0;

	if (!dev)
		return -EINVAL;
	if (dev->listen_fd < 0 && !dev->conn) {
		log_err("%s: run: neither listening nor attached to a client", dev->name);
		return -ENOTCONN;
	}
	while (!atomic_load(&dev->is_stopping)) {
		struct pollfd p[2] = {
			{.fd = dev->epoll_fd, .events = POLLIN},
			{.fd = dev->stop_fd, .events = POLLIN},
		};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			log_err("%s: poll: %s", dev->name, strerror(-r));
			break;
		}
		if (p[1].revents)
			break;
		if ((r = dispatch(dev, true)) < 0)
			break;
		if (dev->listen_fd < 0 && !dev->conn)
			break; /* the attached client left: nothing more to serve */
	}
	eventfd_t v;
	eventfd_read(dev->stop_fd, &v);
	atomic_store(&dev->is_stopping, false);
	return r;
}

static void *run_thread(void *arg)
{
	ferry_device_run(arg);
	return NULL;
}

int ferry_device_start(struct ferry_device *dev)
{
	sigset_t all, old;
	int r;

	if (!dev)
		return -EINVAL;
	if (dev->has_thread) {
		log_err("%s: start: already started", dev->name);
		return -EBUSY;
	}
	if (dev->listen_fd < 0 && !dev->conn) {
		log_err("%s: start: neither listening nor attached to a client", dev->name);
		return -ENOTCONN;
	}
	/* The library thread takes no signals: they stay with the program. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&dev->thread, NULL, run_thread, dev);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		log_err("%s: start: pthread_create: %s", dev->name, strerror(-r));
		return r;
	}
	dev->has_thread = true;
	return 0;
}

void ferry_device_stop(struct ferry_device *dev)
{
	if (!dev)
		return;
	/* Async-signal-safe part: a lock-free atomic store and a write(). */
	atomic_store(&dev->is_stopping, true);
	if (dev->stop_fd >= 0) {
		uint64_t one = 1;
		ssize_t n = write(dev->stop_fd, &one, sizeof(one));
		(void)n;
	}
	if (dev->has_thread && !pthread_equal(pthread_self(), dev->thread)) {
		pthread_join(dev->thread, NULL);
		dev->has_thread = false;
	}
}
