/*
 * A deliberately broken migratable device for testing `ferry check`.
 *
 * The model is a 256 KiB device memory behind a trapped BAR0, migrated as a
 * stream of records (broken_model.c). With BUG_NONE it is a correct device;
 * each other bug breaks one rule ferry check must catch:
 *
 *   no-validate        RESUMING -> STOP accepts an incomplete stream
 *   wrong-arc          PRE_COPY -> RUNNING reports success but lands in STOP
 *   reset-keeps-state  DEVICE_RESET leaves the migration state as it was
 *                      (libvfio-user's rule, PROTOCOL.md §8.6)
 *   short-stream       a stop-copy phase that follows pre-copy ends one
 *                      record early, so the restored device differs
 *
 * The first and last are bugs of the model. The two others are not
 * possible through libferry's device side, which owns the state machine and
 * reset; broken_proxy.c injects them between the client and the device.
 */
#ifndef FERRY_TEST_BROKEN_MODEL_H
#define FERRY_TEST_BROKEN_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include <ferry/device.h>

enum broken_bug {
	BUG_NONE,
	BUG_NO_VALIDATE,
	BUG_WRONG_ARC,
	BUG_RESET_KEEPS_STATE,
	BUG_SHORT_STREAM,
};

/* "none", "no-validate", ... to the bug; -EINVAL for an unknown name. */
int broken_bug_parse(const char *name, enum broken_bug *out);
const char *broken_bug_name(enum broken_bug bug);
/* True for the bugs broken_proxy.c injects. */
bool broken_bug_in_proxy(enum broken_bug bug);

struct broken_model;

/* Builds the device (not listening yet) with migration flags @mig_flags.
 * @seed makes the initial device memory differ between instances. With
 * @error_on_bad_stream, refusing an incomplete stream (RESUMING -> STOP)
 * also gives up the device: the library puts it in ERROR (a legal choice,
 * which lets ferry check examine ERROR). */
int broken_model_create(enum broken_bug bug, uint64_t mig_flags, uint32_t seed,
			bool error_on_bad_stream, struct broken_model **out);
struct ferry_device *broken_model_device(struct broken_model *m);
/* Destroys the device, then the model. NULL-safe. */
void broken_model_destroy(struct broken_model *m);

#endif
