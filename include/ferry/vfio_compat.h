/*
 * The one place that defines what the system's <linux/vfio.h> may lack.
 *
 * Debian 12 ships 6.1-era uAPI headers: they have migration v2, DMA logging
 * and low power, but not PRE_COPY, MIG_DATA_SIZE or the pre-copy info struct
 * (added in Linux 6.2). Values are the kernel's; each is guarded so a newer
 * header wins.
 */
#ifndef FERRY_VFIO_COMPAT_H
#define FERRY_VFIO_COMPAT_H

#include <linux/vfio.h>
#include <linux/types.h>

#ifndef VFIO_MIGRATION_PRE_COPY
#define VFIO_MIGRATION_PRE_COPY (1 << 2)
#endif

/* enum vfio_device_mig_state gained these two in 6.2; enum values cannot be
 * tested with #ifdef, so ferry names the states with its own macros. */
#define FERRY_STATE_PRE_COPY     6
#define FERRY_STATE_PRE_COPY_P2P 7

#ifndef VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
#define VFIO_DEVICE_FEATURE_MIG_DATA_SIZE 9
struct vfio_device_feature_mig_data_size {
	__aligned_u64 stop_copy_length;
};
#endif

#ifndef VFIO_MIG_GET_PRECOPY_INFO
struct vfio_precopy_info {
	__u32 argsz;
	__u32 flags;
	__aligned_u64 initial_bytes;
	__aligned_u64 dirty_bytes;
};
#define VFIO_MIG_GET_PRECOPY_INFO _IO(VFIO_TYPE, VFIO_BASE + 21)
#endif

#ifndef VFIO_DMA_UNMAP_FLAG_ALL
#define VFIO_DMA_UNMAP_FLAG_ALL (1 << 1)
#endif

#endif /* FERRY_VFIO_COMPAT_H */
