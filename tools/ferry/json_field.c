/* Typed JSON field access (json_field.h). */
#include "json_field.h"

#include <errno.h>
#include <math.h>

#include <ferry/log.h>

static int get(json_object *o, const char *key, json_type type, json_object **v)
{
	*v = NULL;
	if (!o || !json_object_is_type(o, json_type_object))
		return -EINVAL;
	if (!json_object_object_get_ex(o, key, v))
		return -ENOENT;
	if (!json_object_is_type(*v, type))
		return -EINVAL;
	return 0;
}

int jf_u64(json_object *o, const char *key, uint64_t *out)
{
	json_object *v;
	int e = get(o, key, json_type_int, &v);

	if (e < 0)
		return e;
	/* json-c keeps values above INT64_MAX as unsigned: get_int64 is then
	 * INT64_MAX, never negative */
	if (json_object_get_int64(v) < 0)
		return -EINVAL;
	*out = json_object_get_uint64(v);
	return 0;
}

int jf_double(json_object *o, const char *key, double *out)
{
	json_object *v;
	int e = get(o, key, json_type_double, &v);

	if (e == -EINVAL && v && json_object_is_type(v, json_type_int))
		e = 0;
	if (e < 0)
		return e;
	double d = json_object_get_double(v);

	if (!isfinite(d))
		return -EINVAL;
	*out = d;
	return 0;
}

int jf_bool(json_object *o, const char *key, bool *out)
{
	json_object *v;
	int e = get(o, key, json_type_boolean, &v);

	if (e < 0)
		return e;
	*out = json_object_get_boolean(v);
	return 0;
}

int jf_str(json_object *o, const char *key, const char **out)
{
	json_object *v;
	int e = get(o, key, json_type_string, &v);

	if (e < 0)
		return e;
	*out = json_object_get_string(v);
	return 0;
}

int jf_str_or_null(json_object *o, const char *key, const char **out)
{
	json_object *v;
	int e = get(o, key, json_type_string, &v);

	*out = NULL;
	if (e == -EINVAL && v == NULL && o && json_object_is_type(o, json_type_object) &&
	    json_object_object_get_ex(o, key, NULL))
		return 0; /* present and null */
	if (e < 0)
		return e;
	*out = json_object_get_string(v);
	return 0;
}

int jf_array(json_object *o, const char *key, json_object **out)
{
	return get(o, key, json_type_array, out);
}

int jf_object(json_object *o, const char *key, json_object **out)
{
	return get(o, key, json_type_object, out);
}

int jf_object_or_null(json_object *o, const char *key, json_object **out)
{
	int e = get(o, key, json_type_object, out);

	if (e == -EINVAL && *out == NULL && o && json_object_is_type(o, json_type_object) &&
	    json_object_object_get_ex(o, key, NULL))
		return 0;
	return e;
}

int jf_warn(int e, const char *what, const char *key)
{
	ferry_log(FERRY_LOG_WARN, "%s: field \"%s\" is %s", what, key,
		  e == -ENOENT ? "missing" : "not of the expected type or range");
	return e;
}
