/*
 * Device side, DMA: DMA_MAP with a memfd and the helpers through the
 * mapping; DMA_MAP without an fd and the helpers through DMA_READ/DMA_WRITE
 * answered by the test (twin socket and main socket); UNMAP rules and
 * callbacks; pointers and mark_dirty; DMA logging START/REPORT/STOP; a
 * client that goes away while a worker waits in a DMA helper.
 */
#include "device_harness.h"

#define PAGE 4096u

static int dma_map(struct harness *h, uint64_t iova, uint64_t size, uint32_t flags, int fd,
		   uint64_t off)
{
	struct vfio_user_dma_map m = {.argsz = sizeof(m), .flags = flags, .offset = off,
				      .addr = iova, .size = size};
	return h_call_fds(h, VFIO_USER_DMA_MAP, &m, sizeof(m), &fd, fd >= 0 ? 1 : 0, NULL);
}

static int dma_unmap(struct harness *h, uint64_t iova, uint64_t size, uint32_t flags)
{
	struct vfio_user_dma_unmap u = {.argsz = sizeof(u), .flags = flags, .addr = iova,
					.size = size};
	struct wire_msg r;
	int rc = h_call(h, VFIO_USER_DMA_UNMAP, &u, sizeof(u), &r);
	if (rc == 0) {
		assert_int_equal(r.len, sizeof(u));
		assert_memory_equal(r.payload, &u, sizeof(u));
		wire_msg_release(&r);
	}
	return rc;
}

#define RW (VFIO_USER_F_DMA_REGION_READ | VFIO_USER_F_DMA_REGION_WRITE)

static int guest_memfd(size_t size)
{
	int fd = memfd_create("guest", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	return fd;
}

static void test_map_fd(void **state)
{
	(void)state;
	struct harness *h = h_start(false);
	int mem = guest_memfd(16 * PAGE);
	uint8_t *g = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mem, 0);
	char buf[64];

	assert_true(g != MAP_FAILED);
	/* two adjacent regions from one file; the helpers span them */
	assert_int_equal(dma_map(h, 0x100000, 8 * PAGE, RW, mem, 0), 0);
	assert_int_equal(dma_map(h, 0x100000 + 8 * PAGE, 8 * PAGE, VFIO_USER_F_DMA_REGION_READ,
				 mem, 8 * PAGE), 0);
	assert_int_equal(atomic_load(&h->maps), 2);
	assert_int_equal(h->last_map_iova, 0x100000 + 8 * PAGE);

	assert_int_equal(ferry_dma_write(h->dev, 0x100010, "hello guest", 12), 0);
	assert_string_equal((char *)g + 0x10, "hello guest");
	memcpy(g + 8 * PAGE - 4, "spanning", 9);
	assert_int_equal(ferry_dma_read(h->dev, 0x100000 + 8 * PAGE - 4, buf, 9), 0);
	assert_string_equal(buf, "spanning");
	/* the second region is read-only: a write is refused and nothing lands */
	assert_int_equal(ferry_dma_write(h->dev, 0x100000 + 8 * PAGE - 4, "XXXXXXXX", 8), -EPERM);
	assert_memory_equal(g + 8 * PAGE - 4, "spanning", 9);
	assert_int_equal(ferry_dma_read(h->dev, 0x100000 + 16 * PAGE - 4, buf, 8), -EFAULT);
	assert_int_equal(ferry_dma_read(h->dev, 0x0, buf, 8), -EFAULT);
	assert_int_equal(ferry_dma_read(h->dev, UINT64_MAX - 3, buf, 8), -EFAULT);

	/* pointers: nested holds, mark_dirty inside, unmap waits for put */
	int err = 1;
	uint8_t *p = ferry_dma_ptr_get(h->dev, 0x100000, PAGE, true, &err);
	assert_non_null(p);
	assert_int_equal(err, 0);
	uint8_t *q = ferry_dma_ptr_get(h->dev, 0x100000 + PAGE, 16, false, &err);
	assert_non_null(q);
	assert_int_equal(ferry_dma_write(h->dev, 0x100000 + 0x40, "nested", 7), 0); /* no relock */
	p[0x80] = 0x77;
	ferry_dma_mark_dirty(h->dev, 0x100080, 1);
	ferry_dma_ptr_put(h->dev);
	ferry_dma_ptr_put(h->dev);
	assert_int_equal(g[0x80], 0x77);
	assert_null(ferry_dma_ptr_get(h->dev, 0x100000 + 8 * PAGE, 16, true, &err));
	assert_int_equal(err, -EPERM);
	assert_null(ferry_dma_ptr_get(h->dev, 0x100000 + 7 * PAGE, 2 * PAGE, false, &err));
	assert_int_equal(err, -EFAULT); /* pointers stay within one region */

	/* map rules */
	assert_int_equal(dma_map(h, 0x100000, 8 * PAGE, RW, mem, 0), 0); /* identical: no-op */
	assert_int_equal(atomic_load(&h->maps), 2);
	assert_int_equal(dma_map(h, 0x100000 + PAGE, PAGE, RW, mem, 0), -EEXIST);
	assert_int_equal(dma_map(h, 0x100001, PAGE, RW, mem, 0), -EINVAL);
	assert_int_equal(dma_map(h, UINT64_MAX - PAGE + 1, 2 * PAGE, RW, mem, 0), -EINVAL);
	assert_int_equal(dma_map(h, 0x900000, PAGE, RW | 0x10, mem, 0), -EINVAL);
	assert_int_equal(dma_map(h, 0x900000, PAGE, RW | VFIO_USER_F_DMA_REGION_MMAP, -1, 0),
			 -EINVAL);
	int two[2] = {mem, mem};
	struct vfio_user_dma_map m2 = {.argsz = 32, .flags = RW, .addr = 0x900000, .size = PAGE};
	assert_int_equal(h_call_fds(h, VFIO_USER_DMA_MAP, &m2, sizeof(m2), two, 2, NULL), -EINVAL);

	/* unmap rules */
	assert_int_equal(dma_unmap(h, 0x100000, PAGE, 0), -ENOENT); /* partial */
	assert_int_equal(dma_unmap(h, 0x200000, PAGE, 0), -ENOENT); /* unmapped */
	assert_int_equal(dma_unmap(h, 0x100000, 16 * PAGE, 0), -ENOENT); /* two regions */
	assert_int_equal(dma_unmap(h, 0x100000, 0, VFIO_DMA_UNMAP_FLAG_ALL), -EINVAL);
	assert_int_equal(dma_unmap(h, 0x100000, 8 * PAGE, 0x1), -EINVAL); /* legacy bitmap */
	assert_int_equal(dma_unmap(h, 0x100000, 8 * PAGE, 0), 0);
	assert_int_equal(atomic_load(&h->unmaps), 1);
	assert_int_equal(h->last_unmap_iova, 0x100000);
	assert_int_equal(ferry_dma_read(h->dev, 0x100000, buf, 8), -EFAULT);
	assert_int_equal(dma_unmap(h, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL), 0);
	assert_int_equal(atomic_load(&h->unmaps), 2);
	assert_int_equal(ferry_dma_read(h->dev, 0x100000 + 8 * PAGE, buf, 8), -EFAULT);

	munmap(g, 16 * PAGE);
	close(mem);
	h_stop(h);
}

/* The test's side of message-mode DMA: guest memory in a buffer, served on
 * a channel until told to stop. */
struct dma_server {
	struct wire_chan *ch;
	uint64_t base;
	uint8_t mem[64 * 1024];
	atomic_int reads, writes;
	atomic_bool silent; /* take requests but never answer */
};

static void *dma_server_thread(void *arg)
{
	struct dma_server *s = arg;
	for (;;) {
		struct wire_msg m;
		struct vfio_user_dma_region_access a;
		if (wire_next_command(s->ch, &m, -1) < 0)
			return NULL;
		if (atomic_load(&s->silent) || m.len < sizeof(a)) {
			wire_msg_release(&m);
			continue;
		}
		memcpy(&a, m.payload, sizeof(a));
		assert_true(a.count <= 4096); /* our max_data_xfer_size */
		assert_true(a.addr >= s->base && a.addr + a.count <= s->base + sizeof(s->mem));
		uint8_t *p = s->mem + (a.addr - s->base);
		if (m.hdr.cmd == VFIO_USER_DMA_READ) {
			struct iovec iov[2] = {{&a, sizeof(a)}, {p, a.count}};
			atomic_fetch_add(&s->reads, 1);
			wire_reply(s->ch, &m, iov, 2, NULL, 0);
		} else {
			assert_int_equal(m.hdr.cmd, VFIO_USER_DMA_WRITE);
			assert_int_equal(m.len, sizeof(a) + a.count);
			memcpy(p, m.payload + sizeof(a), a.count);
			atomic_fetch_add(&s->writes, 1);
			wire_reply(s->ch, &m, &(struct iovec){&a, sizeof(a)}, 1, NULL, 0);
		}
		wire_msg_release(&m);
	}
}

static void message_mode(bool twin)
{
	struct harness *h = h_start(twin);
	struct dma_server *s = calloc(1, sizeof(*s));
	pthread_t t;
	uint8_t buf[10000];

	s->ch = twin ? h->twin : h->ch;
	s->base = 0x40000000;
	for (size_t i = 0; i < sizeof(s->mem); i++)
		s->mem[i] = (uint8_t)(i * 13);
	pthread_create(&t, NULL, dma_server_thread, s);

	assert_int_equal(dma_map(h, s->base, sizeof(s->mem), RW, -1, 0), 0);
	/* 10000 bytes from a 4 KiB-limited client: three DMA_READs */
	assert_int_equal(ferry_dma_read(h->dev, s->base + 100, buf, sizeof(buf)), 0);
	assert_memory_equal(buf, s->mem + 100, sizeof(buf));
	assert_int_equal(atomic_load(&s->reads), 3);
	memset(buf, 0xab, sizeof(buf));
	assert_int_equal(ferry_dma_write(h->dev, s->base + 5000, buf, 5000), 0);
	assert_int_equal(atomic_load(&s->writes), 2);
	assert_memory_equal(s->mem + 5000, buf, 5000);
	/* no pointers into message-mode memory */
	int err;
	assert_null(ferry_dma_ptr_get(h->dev, s->base, 16, false, &err));
	assert_int_equal(err, -ENOTSUP);
	/* commands keep working meanwhile */
	struct vfio_user_device_info in = {.argsz = 16};
	assert_int_equal(h_call(h, VFIO_USER_DEVICE_GET_INFO, &in, sizeof(in), NULL), 0);

	wire_chan_kill(s->ch, -ECONNRESET); /* ends the server thread */
	pthread_join(t, NULL);
	free(s);
	h_stop(h);
}

static void test_message_mode_twin(void **state)
{
	(void)state;
	message_mode(true);
}

static void test_message_mode_main_socket(void **state)
{
	(void)state;
	message_mode(false);
}

struct blocked_read {
	struct ferry_device *dev;
	uint64_t iova;
	atomic_int rc;
	atomic_bool done;
};

static void *blocked_reader(void *arg)
{
	struct blocked_read *b = arg;
	uint8_t buf[64];
	atomic_store(&b->rc, ferry_dma_read(b->dev, b->iova, buf, sizeof(buf)));
	atomic_store(&b->done, true);
	return NULL;
}

/* A worker waits in a DMA helper for a client that never answers; the
 * client disconnects: the helper returns an error, nothing is freed under it. */
static void test_disconnect_during_dma(void **state)
{
	(void)state;
	struct harness *h = h_start(true);
	struct dma_server *s = calloc(1, sizeof(*s));
	struct blocked_read b = {.dev = h->dev, .iova = 0x40000000};
	pthread_t ts, tw;

	s->ch = h->twin;
	s->base = 0x40000000;
	atomic_store(&s->silent, true);
	pthread_create(&ts, NULL, dma_server_thread, s);
	assert_int_equal(dma_map(h, s->base, sizeof(s->mem), RW, -1, 0), 0);
	pthread_create(&tw, NULL, blocked_reader, &b);
	usleep(50000);
	assert_false(atomic_load(&b.done));
	wire_chan_kill(h->ch, -ECONNRESET); /* the client goes away */
	wire_chan_kill(h->twin, -ECONNRESET);
	pthread_join(ts, NULL);
	pthread_join(tw, NULL);
	assert_true(atomic_load(&b.rc) < 0);
	/* the device is back to no memory at all */
	uint8_t x;
	for (int i = 0; i < 200 && atomic_load(&h->detached) == 0; i++)
		usleep(5000);
	assert_int_equal(ferry_dma_read(h->dev, s->base, &x, 1), -EFAULT);
	assert_int_equal(atomic_load(&h->unmaps), 1);
	free(s);
	h_stop(h);
}

static int log_start(struct harness *h, uint64_t page_size, uint32_t n,
		     const struct vfio_user_dma_logging_range *ranges, struct wire_msg *reply)
{
	uint8_t data[16 + 4 * 16];
	struct vfio_user_dma_logging_control c = {.page_size = page_size, .num_ranges = n};
	memcpy(data, &c, sizeof(c));
	if (n)
		memcpy(data + 16, ranges, n * 16);
	return h_feature(h, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
			 8 + 16 + n * 16, data, 16 + n * 16, reply);
}

static int log_report(struct harness *h, uint64_t iova, uint64_t len, uint64_t page_size,
		      uint32_t argsz, uint64_t *bitmap, size_t words)
{
	struct vfio_user_dma_logging_report r = {.iova = iova, .length = len,
						 .page_size = page_size};
	struct wire_msg reply;
	int rc = h_feature(h, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
			   argsz, &r, sizeof(r), &reply);
	if (rc < 0)
		return rc;
	struct vfio_user_device_feature f;
	memcpy(&f, reply.payload, 8);
	assert_int_equal(f.argsz, reply.len);
	assert_int_equal(reply.len, 8 + 24 + words * 8);
	assert_memory_equal(reply.payload + 8, &r, sizeof(r));
	memcpy(bitmap, reply.payload + 32, words * 8);
	wire_msg_release(&reply);
	return 0;
}

static void test_dma_logging(void **state)
{
	(void)state;
	struct harness *h = h_start(false);
	int mem = guest_memfd(256 * PAGE);
	uint64_t bm[4];
	struct wire_msg r;

	assert_int_equal(dma_map(h, 0x10000000, 128 * PAGE, RW, mem, 0), 0);
	assert_int_equal(dma_map(h, 0x20000000, 128 * PAGE, RW, mem, 128 * PAGE), 0);
	/* PROBE: START is SET-only */
	assert_int_equal(h_feature(h, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET |
					      VFIO_DEVICE_FEATURE_DMA_LOGGING_START, 8, NULL, 0, NULL), 0);
	assert_int_equal(h_feature(h, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET |
					      VFIO_DEVICE_FEATURE_DMA_LOGGING_START, 8, NULL, 0, NULL),
			 -EINVAL);
	/* not started: REPORT fails */
	assert_int_equal(log_report(h, 0x10000000, 128 * PAGE, PAGE, 8 + 24 + 16, bm, 2), -EINVAL);
	/* START on every mapped range */
	assert_int_equal(log_start(h, PAGE, 0, NULL, &r), 0);
	assert_int_equal(r.len, 8 + 16);
	wire_msg_release(&r);
	/* same START again: fine; different: EBUSY */
	assert_int_equal(log_start(h, PAGE, 0, NULL, NULL), 0);
	assert_int_equal(log_start(h, 2 * PAGE, 0, NULL, NULL), -EBUSY);

	assert_int_equal(ferry_dma_write(h->dev, 0x10000000 + 3 * PAGE + 10, "x", 1), 0);
	assert_int_equal(ferry_dma_write(h->dev, 0x10000000 + 70 * PAGE - 1, "yz", 2), 0);
	int err;
	uint8_t *p = ferry_dma_ptr_get(h->dev, 0x20000000, PAGE, true, &err);
	assert_non_null(p);
	p[0] = 1;
	ferry_dma_mark_dirty(h->dev, 0x20000000, 1);
	ferry_dma_ptr_put(h->dev);

	/* argsz too small for the bitmap */
	assert_int_equal(log_report(h, 0x10000000, 128 * PAGE, PAGE, 8 + 24 + 8, bm, 2), -EINVAL);
	memset(bm, 0, sizeof(bm));
	assert_int_equal(log_report(h, 0x10000000, 128 * PAGE, PAGE, 8 + 24 + 16, bm, 2), 0);
	assert_int_equal(bm[0], 1ull << 3);                         /* page 3 */
	assert_int_equal(bm[1], 1ull << (69 - 64) | 1ull << (70 - 64)); /* a write across 69|70 */
	/* read and clear */
	assert_int_equal(log_report(h, 0x10000000, 128 * PAGE, PAGE, 8 + 24 + 16, bm, 2), 0);
	assert_int_equal(bm[0] | bm[1], 0);
	assert_int_equal(log_report(h, 0x20000000, 128 * PAGE, PAGE, 1024, bm, 2), 0);
	assert_int_equal(bm[0], 1);
	/* a range in no logging range */
	assert_int_equal(log_report(h, 0x30000000, PAGE, PAGE, 1024, bm, 1), -EINVAL);

	/* STOP, then explicit ranges with validation */
	assert_int_equal(h_feature(h, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
				   8, NULL, 0, NULL), 0);
	struct vfio_user_dma_logging_range rg[2] = {{0x10000000, 64 * PAGE}, {0x10000000 + PAGE, PAGE}};
	assert_int_equal(log_start(h, 3000, 1, rg, NULL), -EINVAL);  /* page size */
	assert_int_equal(log_start(h, PAGE, 2, rg, NULL), -EINVAL);  /* overlap */
	rg[0].length = 100;
	assert_int_equal(log_start(h, PAGE, 1, rg, NULL), -EINVAL);  /* unaligned */
	rg[0] = (struct vfio_user_dma_logging_range){UINT64_MAX - PAGE + 1, PAGE};
	assert_int_equal(log_start(h, PAGE, 1, rg, NULL), -EOVERFLOW);
	rg[0] = (struct vfio_user_dma_logging_range){0x10000000, 64 * PAGE};
	assert_int_equal(log_start(h, PAGE, 1, rg, NULL), 0);
	assert_int_equal(ferry_dma_write(h->dev, 0x10000000 + 100 * PAGE, "q", 1), 0); /* outside */
	assert_int_equal(ferry_dma_write(h->dev, 0x10000000, "q", 1), 0);
	assert_int_equal(log_report(h, 0x10000000, 64 * PAGE, PAGE, 1024, bm, 1), 0);
	assert_int_equal(bm[0], 1);
	/* coarser report page: 64 KiB per bit */
	assert_int_equal(ferry_dma_write(h->dev, 0x10000000 + 17 * PAGE, "q", 1), 0);
	assert_int_equal(log_report(h, 0x10000000, 64 * PAGE, 16 * PAGE, 1024, bm, 1), 0);
	assert_int_equal(bm[0], 2);
	h_stop(h); /* disconnect stops logging; destroy frees it */
	close(mem);
}

static void test_feature_envelope(void **state)
{
	(void)state;
	struct harness *h = h_start(false);
	/* argsz below the envelope, unknown flags, GET|SET, nothing asked */
	assert_int_equal(h_feature(h, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
				   4, NULL, 0, NULL), -EINVAL);
	assert_int_equal(h_feature(h, (1u << 20) | VFIO_DEVICE_FEATURE_SET | 7, 8, NULL, 0, NULL),
			 -EINVAL);
	assert_int_equal(h_feature(h, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | 7, 8, NULL,
				   0, NULL), -EINVAL);
	assert_int_equal(h_feature(h, 7, 8, NULL, 0, NULL), -EINVAL);
	/* absent features: ENOTTY, also on PROBE */
	assert_int_equal(h_feature(h, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION, 16,
				   NULL, 0, NULL), -ENOTTY);
	assert_int_equal(h_feature(h, VFIO_DEVICE_FEATURE_PROBE | 0x1234, 8, NULL, 0, NULL), -ENOTTY);
	/* unsupported op on a present feature */
	assert_int_equal(h_feature(h, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
				   64, NULL, 0, NULL), -EINVAL);
	/* START data too short */
	assert_int_equal(h_feature(h, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
				   16, "12345678", 8, NULL), -EINVAL);
	h_stop(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_map_fd),
		cmocka_unit_test(test_message_mode_twin),
		cmocka_unit_test(test_message_mode_main_socket),
		cmocka_unit_test(test_disconnect_during_dma),
		cmocka_unit_test(test_dma_logging),
		cmocka_unit_test(test_feature_envelope),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
