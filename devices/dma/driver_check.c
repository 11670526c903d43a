/*
 * The guest driver of ferry-dev-dma: cross-checking the device's counters
 * against the driver's (exactly once), and statistics.
 */
#include "driver_priv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <time.h>

#include <ferry/log.h>


/* One look at the device's counters. Returns 0, -EAGAIN (an idle ring
 * whose last completion the device has not accounted for yet: its status
 * store comes just before the counter update) or -EIO after logging. */
static int check_once(struct dma_driver *d, bool last_try)
{
	const struct dma_drv_shared *sh = d->sh;
	uint64_t completed, errors, done_by_dev, in_flight = sh->submitted - sh->reaped;
	uint32_t head, tail, status;
	int rc;

	/* COMPLETED before RING_HEAD: RING_HEAD moves first (at fetch), then
	 * COMPLETED, so completed <= what head implies even while running. */
	if ((rc = drv_reg_read64(d, DMA_REG_COMPLETED, &completed)) < 0 ||
	    (rc = drv_reg_read64(d, DMA_REG_ERRORS, &errors)) < 0 ||
	    (rc = drv_reg_read(d, DMA_REG_RING_HEAD, &head)) < 0 ||
	    (rc = drv_reg_read(d, DMA_REG_RING_TAIL, &tail)) < 0 ||
	    (rc = drv_reg_read(d, DMA_REG_STATUS, &status)) < 0)
		return rc;
	completed -= sh->dev_completed_base;
	errors -= sh->dev_errors_base;
	done_by_dev = (uint32_t)(head - (uint32_t)sh->reaped);

	if (tail != (uint32_t)sh->submitted) {
		ferry_log(FERRY_LOG_ERR, "%s: device tail %u, driver queued up to %" PRIu64, dname(d),
			  tail, sh->submitted);
		return -EIO;
	}
	if (done_by_dev > in_flight) {
		ferry_log(FERRY_LOG_ERR, "%s: device head %u is outside [reaped %" PRIu64
			  ", submitted %" PRIu64 "]", dname(d), head, sh->reaped, sh->submitted);
		return -EIO;
	}
	if (completed > sh->reaped + done_by_dev) {
		ferry_log(FERRY_LOG_ERR, "%s: device completed %" PRIu64 " ops, the ring holds %" PRIu64
			  ": some op ran twice", dname(d), completed, sh->reaped + done_by_dev);
		return -EIO;
	}
	if (status & DMA_STS_ERR_RING) {
		ferry_log(FERRY_LOG_ERR, "%s: engine halted on a ring error: STATUS %#x", dname(d),
			  status);
		return -EIO;
	}
	if (in_flight)
		return 0;
	if ((completed != sh->reaped || errors != sh->err_completions) && !last_try)
		return -EAGAIN;
	if (completed != sh->reaped || errors != sh->err_completions) {
		ferry_log(FERRY_LOG_ERR, "%s: idle device completed %" PRIu64 " (%" PRIu64
			  " errors), driver reaped %" PRIu64 " (%" PRIu64 " errors)", dname(d),
			  completed, errors, sh->reaped, sh->err_completions);
		return -EIO;
	}
	return 0;
}

int dma_driver_check(struct dma_driver *d)
{
	struct timespec ms = { .tv_nsec = 1000 * 1000 };
	int rc;

	for (int i = 0; i < 100; i++) {
		rc = check_once(d, i == 99);
		if (rc != -EAGAIN)
			return rc;
		nanosleep(&ms, NULL);
	}
	return rc;
}

void dma_driver_stats(const struct dma_driver *d, struct dma_driver_stats *out)
{
	const struct dma_drv_shared *sh = d->sh;

	*out = (struct dma_driver_stats){
		.submitted = sh->submitted,
		.reaped = sh->reaped,
		.in_flight = sh->submitted - sh->reaped,
		.verified = sh->verified,
		.bad_ok = sh->bad_ok,
		.peer_ok = sh->peer_ok,
		.failures = sh->failures,
		.irqs = d->irqs,
	};
}
