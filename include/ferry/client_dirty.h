/*
 * libferry, client side: device DMA dirty logging (PROTOCOL.md §7.5), the
 * DMA_LOGGING_START / STOP / REPORT device features.
 *
 * While logging is started the device records which pages of the logging
 * ranges its DMA wrote; a report reads AND clears that record for a range,
 * at any power-of-two page size >= 4 KiB, into a bitmap: page p of the range
 * (the page holding iova + p * page_size) is bit p % 64 of word p / 64.
 * Logging ranges are IOVA ranges, independent of DMA_MAP / DMA_UNMAP (see
 * docs/dirty-tracking.md for the whole rule).
 *
 * What the device cannot log: bytes the library wrote into guest memory
 * while serving the device's DMA_WRITE requests (ranges mapped without an
 * fd). Those reach ferry_client_set_dirty_callback() (client.h) instead;
 * a complete dirty view needs both.
 *
 * Threads: any thread. Reports from several threads are correct but
 * serialised when the dirty_shm extension is in use (one shared area per
 * connection). Errors are negative errno values with one log line.
 */
#ifndef FERRY_CLIENT_DIRTY_H
#define FERRY_CLIENT_DIRTY_H

#include <stdint.h>

#include <ferry/client.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One logging range: [iova, iova + length). */
struct ferry_dirty_range {
	uint64_t iova;
	uint64_t length;
};

/*
 * DMA_LOGGING_START: track the device's writes to @n ranges (@ranges is
 * borrowed for the call) at @page_size granularity. @n == 0 asks for "every
 * range mapped now" (the SPEC's meaning; kernel-style servers refuse it).
 * The device may choose another tracking page size: it is stored in
 * *@tracked_page_size (may be NULL). The device checks the ranges (aligned
 * to page_size, non-empty, disjoint, no wrap) and answers its errno:
 * ferry's device -EINVAL / -EOVERFLOW / -E2BIG, -EBUSY while a different
 * START is in force. Locally: -EINVAL for a page size that is not a power
 * of two >= 4096 or ranges NULL with n > 0, -E2BIG for more ranges than
 * one message can carry to this server.
 */
FERRY_API int ferry_client_dirty_start(struct ferry_client *c, uint64_t page_size,
				       const struct ferry_dirty_range *ranges, unsigned n,
				       uint64_t *tracked_page_size);

/* DMA_LOGGING_STOP: the device forgets its logs. */
FERRY_API int ferry_client_dirty_stop(struct ferry_client *c);

/*
 * DMA_LOGGING_REPORT of [iova, iova + length) at @page_size, ORed into
 * @bitmap: page p of the range sets bit p (never clears one), so a caller
 * can accumulate several reports, or several devices, in one bitmap.
 * @bitmap holds ceil(ceil(length / page_size) / 64) words; bits past the
 * range's last page are left alone.
 *
 * The request is cut into chunks whose replies fit what this client
 * receives (8 + 24 + bitmap <= 1 MiB + 32 bytes: 8 Mi pages, 32 GiB at
 * 4 KiB), each starting on a 64-page boundary of @bitmap, so every reply
 * is ORed word by word straight from the received message into @bitmap,
 * with no other copy. With the dirty_shm extension the device writes the
 * bitmap into memory shared with this client instead, packed: only the
 * non-zero words move (docs/protocol-extensions.md).
 *
 * Errors: -EINVAL, with @bitmap untouched and nothing sent, for a page size
 * that is not a power of two >= 4096, length 0, a range that wraps, or a
 * NULL bitmap. Any failure after the first request went out (the device's
 * errno, -EPROTO for a malformed reply, a transport error) sets EVERY bit
 * of the range in @bitmap before returning: earlier chunks were read and
 * cleared on the device, the rest is unknown, and the UAPI rule is to
 * assume everything dirty.
 */
FERRY_API int ferry_client_dirty_report(struct ferry_client *c, uint64_t iova, uint64_t length,
					uint64_t page_size, uint64_t *bitmap);

/*
 * The same, with page p of the range ORed into bit @first_bit + p of
 * @bitmap (which then holds ceil((first_bit + pages) / 64) words): lets a
 * caller merge a device's window into a bitmap over all of guest memory.
 * When first_bit is not a multiple of 64, the first chunk ends on a word
 * boundary of @bitmap (a shift merge), every later chunk is a plain OR.
 */
FERRY_API int ferry_client_dirty_report_at(struct ferry_client *c, uint64_t iova,
					   uint64_t length, uint64_t page_size, uint64_t *bitmap,
					   uint64_t first_bit);

/* 0 if the device offers DMA_LOGGING_START and STOP (SET) and REPORT (GET);
 * else the first PROBE's negative errno (any PROBE error means "no", as
 * libvfio-user answers EINVAL where the kernel answers ENOTTY). Quiet: the
 * caller reports what it concludes. */
FERRY_API int ferry_client_dirty_probe(struct ferry_client *c);

#ifdef __cplusplus
}
#endif
#endif /* FERRY_CLIENT_DIRTY_H */
