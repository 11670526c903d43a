/*
 * ferry check: low power (LOW_POWER_ENTRY, LOW_POWER_ENTRY_WITH_WAKEUP,
 * LOW_POWER_EXIT; ferry's low_power extension, docs/protocol-extensions.md).
 *
 * The rows land with the low-power work: entry and exit, wake-up on access
 * and the wake-up eventfd, refusal of a second entry, mmap access while
 * engaged, and their interplay with the migration states. This build has
 * none of it, and says so in one row.
 */
#include "check_priv.h"

void chk_section_power(struct chk_ctx *x)
{
	chk_add(x, CHK_SKIP, "low power", "skipped: not implemented in this build");
}
