/*
 * A vfio-user message proxy that injects the broken device's protocol-level
 * bugs (wrong-arc, reset-keeps-state; see broken_model.h) between a client
 * and a correct libferry device.
 *
 * It forwards whole messages both ways unchanged, fds included (a twin
 * socket fd in the VERSION reply passes straight to the client, so the
 * device's own DMA requests bypass the proxy). Where a bug applies, it
 * sends its own commands to the device and rewrites what the client sees.
 * One client at a time, like a device server. Test code: simple on purpose.
 */
#ifndef FERRY_TEST_BROKEN_PROXY_H
#define FERRY_TEST_BROKEN_PROXY_H

#include "broken_model.h"

/* Listens on @path and serves clients forever, connecting each to the
 * device listening at @device_path. Returns only on a socket error (a
 * negative errno). */
int broken_proxy_run(const char *path, const char *device_path, enum broken_bug bug);

#endif
