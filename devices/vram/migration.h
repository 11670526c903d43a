/*
 * The vram device's struct ferry_migration_ops (device_migration.h): flags
 * STOP_COPY | P2P | PRE_COPY. The opaque pointer is the struct vram.
 */
#ifndef FERRY_DEV_VRAM_MIGRATION_H
#define FERRY_DEV_VRAM_MIGRATION_H

#include <ferry/device_migration.h>

extern const struct ferry_migration_ops vram_migration_ops;

#endif
