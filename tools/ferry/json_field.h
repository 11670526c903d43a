/*
 * Typed access to the fields of a JSON object from the host. Every value the
 * host sends is checked for its type before use: a field that is missing
 * gives -ENOENT, one of the wrong type (or out of range) -EINVAL, so a
 * malformed reply is shown as such instead of as zeros.
 *
 * These functions do not log: the caller knows what the field means and
 * says so (see jf_warn()).
 */
#ifndef FERRY_TOOL_JSON_FIELD_H
#define FERRY_TOOL_JSON_FIELD_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

/* A non-negative integer. */
int jf_u64(json_object *o, const char *key, uint64_t *out);
/* A number (integer or not). */
int jf_double(json_object *o, const char *key, double *out);
int jf_bool(json_object *o, const char *key, bool *out);
/* A string: *@out is borrowed from @o. */
int jf_str(json_object *o, const char *key, const char **out);
/* A string or null (*@out NULL). */
int jf_str_or_null(json_object *o, const char *key, const char **out);
/* An array or an object (borrowed). */
int jf_array(json_object *o, const char *key, json_object **out);
int jf_object(json_object *o, const char *key, json_object **out);
/* An object or null (*@out NULL). */
int jf_object_or_null(json_object *o, const char *key, json_object **out);

/* Logs one warning that @what's field @key is missing or malformed (@e is
 * what the jf_ function returned) and returns @e. */
int jf_warn(int e, const char *what, const char *key);

#endif
