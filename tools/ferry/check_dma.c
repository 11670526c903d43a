/*
 * ferry check: guest memory and DMA logging (PROTOCOL.md §7.5).
 *
 * The checker owns 64 MiB of guest memory (a memfd) and DMA-maps it into
 * the device at CHK_IOVA. DMA logging is then checked on that range:
 * REPORT before START is refused; START refuses a bad page size and an
 * unaligned range; a valid START and REPORT succeed with consistent
 * replies; REPORT refuses a bad page size and a range outside what is
 * logged; STOP succeeds and REPORT is refused after it.
 * ferry's rule is the kernel's: power-of-two page sizes, START ranges
 * aligned to the page size (libvfio-user, which ignores START's ranges,
 * fails that row). A REPORT range need not be aligned: the kernel counts
 * pages from the range's own start (PROTOCOL.md §7.5), so it is not checked.
 */
#include "check_priv.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ferry/vfio_user.h>

#define CHK_IOVA (1ull << 30)
#define CHK_MEM_SIZE (64ull << 20)
#define CHK_PAGE 4096ull

int chk_dma_setup(struct chk_ctx *x)
{
	struct chk_dev *d = &x->dev;
	const char *n = "DMA_MAP 64 MiB";
	x->mem_iova = CHK_IOVA;
	x->mem_size = CHK_MEM_SIZE;
	x->memfd = memfd_create("ferry-check-guest", MFD_CLOEXEC);
	if (x->memfd < 0 || ftruncate(x->memfd, (off_t)x->mem_size) < 0) {
		int e = errno;
		chk_add(x, CHK_FAIL, n, "cannot create guest memory: %s", strerror(e));
		return -e;
	}
	x->mem = mmap(NULL, x->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, x->memfd, 0);
	if (x->mem == MAP_FAILED) {
		int e = errno;
		x->mem = NULL;
		chk_add(x, CHK_FAIL, n, "cannot map guest memory: %s", strerror(e));
		return -e;
	}
	int r = ferry_client_dma_map(d->c, x->mem_iova, x->mem_size,
				     VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, x->memfd, 0,
				     x->mem);
	if (r < 0) {
		chk_add(x, CHK_FAIL, n, "DMA_MAP of [0x%llx, +64 MiB) with a memfd failed: %s",
			(unsigned long long)x->mem_iova, strerror(-r));
		return r;
	}
	x->mem_mapped = true;
	chk_add(x, CHK_PASS, n, "memfd-backed guest memory at IOVA 0x%llx",
		(unsigned long long)x->mem_iova);
	return 0;
}

void chk_dma_teardown(struct chk_ctx *x)
{
	if (x->mem_mapped && x->dev.c)
		ferry_client_dma_unmap(x->dev.c, x->mem_iova, x->mem_size);
	x->mem_mapped = false;
	if (x->mem)
		munmap(x->mem, x->mem_size);
	x->mem = NULL;
	if (x->memfd >= 0)
		close(x->memfd);
	x->memfd = -1;
}

struct log_start_req {
	struct vfio_user_dma_logging_control head;
	struct vfio_user_dma_logging_range range;
} __attribute__((packed));

static int log_start(struct chk_dev *d, uint64_t page_size, uint64_t iova, uint64_t len,
		     uint64_t *chosen)
{
	struct log_start_req req = {
		.head = {.page_size = page_size, .num_ranges = 1},
		.range = {.iova = iova, .length = len},
	};
	struct log_start_req rep;
	size_t got = 0;
	int r = ferry_client_feature(d->c, VFIO_DEVICE_FEATURE_SET |
						   VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
				     &req, sizeof(req), NULL, 0, &rep, sizeof(rep), &got);
	if (r == 0 && chosen)
		*chosen = got >= sizeof(rep.head) ? rep.head.page_size : 0;
	return r;
}

static int log_stop(struct chk_dev *d)
{
	return ferry_client_feature(d->c, VFIO_DEVICE_FEATURE_SET |
						  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
				    NULL, 0, NULL, 0, NULL, 0, NULL);
}

/* REPORT of [iova, iova + len) at @page_size. The bitmap of a 64 MiB range
 * at 4 KiB pages is 2 KiB; @out has room for it. *@echo_ok says whether the
 * reply echoes the request and carries the whole bitmap; *@dirty counts
 * the bits set. */
static int log_report(struct chk_dev *d, uint64_t iova, uint64_t len, uint64_t page_size,
		      bool *echo_ok, uint64_t *dirty)
{
	struct vfio_user_dma_logging_report req = {.iova = iova, .length = len,
						    .page_size = page_size};
	static uint64_t out[3 + (CHK_MEM_SIZE / CHK_PAGE) / 64];
	size_t got = 0;
	int r = ferry_client_feature(d->c, VFIO_DEVICE_FEATURE_GET |
						   VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
				     &req, sizeof(req), NULL, 0, out, sizeof(out), &got);
	if (r < 0 || !echo_ok)
		return r;
	uint64_t pages = page_size ? (len + page_size - 1) / page_size : 0;
	size_t bitmap = (size_t)((pages + 63) / 64 * 8);
	*echo_ok = got >= sizeof(req) + bitmap && bitmap <= sizeof(out) - sizeof(req) &&
		   out[0] == iova && out[1] == len && out[2] == page_size;
	*dirty = 0;
	if (*echo_ok)
		for (size_t i = 0; i < bitmap / 8; i++)
			*dirty += (uint64_t)__builtin_popcountll(out[3 + i]);
	return 0;
}

/* A request the device must refuse; when it accepts a START, logging is
 * stopped again so the next row starts clean. */
static void expect_refused(struct chk_ctx *x, const char *name, int r, bool was_start,
			   const char *what)
{
	if (r < 0) {
		chk_add(x, CHK_PASS, name, "%s refused (%s)", what, strerror(-r));
		return;
	}
	chk_add(x, CHK_FAIL, name, "%s accepted; it must fail", what);
	if (was_start)
		log_stop(&x->dev);
}

void chk_section_dma(struct chk_ctx *x)
{
	struct chk_dev *d = &x->dev;
	uint64_t iova = x->mem_iova, len = x->mem_size, chosen = 0, dirty = 0;
	bool echo = false;
	char what[96];

	chk_progress(x, "DMA logging");
	int r = ferry_client_feature_probe(d->c, VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
					   VFIO_DEVICE_FEATURE_SET);
	if (!x->mem_mapped || r < 0) {
		const char *why = !x->mem_mapped ? "no guest memory mapped"
						 : "the device does not offer DMA logging";
		chk_add(x, CHK_SKIP, "DMA logging", "%s%s%s", why, r < 0 ? ": PROBE " : "",
			r < 0 ? strerror(-r) : "");
		return;
	}
	chk_add(x, CHK_PASS, "DMA logging", "START, STOP and REPORT offered");

	expect_refused(x, "DMA logging REPORT before START",
		       log_report(d, iova, len, CHK_PAGE, NULL, NULL), false, "REPORT before START");
	expect_refused(x, "DMA logging START page size 0", log_start(d, 0, iova, len, NULL), true,
		       "START with page size 0");
	expect_refused(x, "DMA logging START page size 12 KiB",
		       log_start(d, 3 * CHK_PAGE, iova, 3 * CHK_PAGE, NULL), true,
		       "START with a page size that is not a power of two");
	expect_refused(x, "DMA logging START unaligned range",
		       log_start(d, CHK_PAGE, iova + 512, len - CHK_PAGE, NULL), true,
		       "START with a range not aligned to the page size");

	r = log_start(d, CHK_PAGE, iova, len, &chosen);
	if (r < 0) {
		chk_add(x, CHK_FAIL, "DMA logging START", "START of the mapped 64 MiB at 4 KiB pages failed: %s",
			strerror(-r));
		return;
	}
	if (!chosen || (chosen & (chosen - 1)))
		chk_add(x, CHK_FAIL, "DMA logging START", "the reply's page size %llu is not a power of two",
			(unsigned long long)chosen);
	else
		chk_add(x, CHK_PASS, "DMA logging START", "64 MiB at 4 KiB pages (the device tracks at %llu)",
			(unsigned long long)chosen);

	r = log_report(d, iova, len, CHK_PAGE, &echo, &dirty);
	if (r < 0)
		chk_add(x, CHK_FAIL, "DMA logging REPORT", "REPORT of the logged range failed: %s",
			strerror(-r));
	else if (!echo)
		chk_add(x, CHK_FAIL, "DMA logging REPORT",
			"the reply does not echo iova, length and page size, or its bitmap is short");
	else
		chk_add(x, CHK_PASS, "DMA logging REPORT", "%llu of %llu pages dirty",
			(unsigned long long)dirty, (unsigned long long)(len / CHK_PAGE));

	expect_refused(x, "DMA logging REPORT page size 0", log_report(d, iova, len, 0, NULL, NULL),
		       false, "REPORT with page size 0");
	expect_refused(x, "DMA logging REPORT page size 12 KiB",
		       log_report(d, iova, 3 * CHK_PAGE, 3 * CHK_PAGE, NULL, NULL), false,
		       "REPORT with a page size that is not a power of two");
	snprintf(what, sizeof(what), "REPORT of [0x%llx, +1 MiB), outside the logged range",
		 (unsigned long long)(iova + len));
	expect_refused(x, "DMA logging REPORT outside range",
		       log_report(d, iova + len, 1 << 20, CHK_PAGE, NULL, NULL), false, what);

	r = log_stop(d);
	if (r < 0)
		chk_add(x, CHK_FAIL, "DMA logging STOP", "STOP failed: %s", strerror(-r));
	else
		chk_add(x, CHK_PASS, "DMA logging STOP", "stopped");
	expect_refused(x, "DMA logging REPORT after STOP",
		       log_report(d, iova, len, CHK_PAGE, NULL, NULL), false, "REPORT after STOP");
}
