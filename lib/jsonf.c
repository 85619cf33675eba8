/*
 * jsonf.c -- reading fields of upstream JSON objects, for the connectors:
 * the type quirks every API has (ids as numbers or strings, nulls
 * anywhere) are handled once, here.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "internal.h"

const char *
sync_json_str(const cJSON *o, const char *key, char *num, size_t n, long *bad)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (v == NULL || cJSON_IsNull(v))
		return NULL;
	if (cJSON_IsString(v))
		return v->valuestring;
	if (cJSON_IsNumber(v) && num != NULL) {
		if (fabs(v->valuedouble) < 1e15 && floor(v->valuedouble) == v->valuedouble)
			snprintf(num, n, "%.0f", v->valuedouble);
		else
			snprintf(num, n, "%.17g", v->valuedouble);
		return num;
	}
	(*bad)++;
	return NULL;
}

int
sync_json_bool(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (cJSON_IsBool(v))
		return cJSON_IsTrue(v) ? 1 : 0;
	return -1;
}

long long
sync_json_int(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (cJSON_IsBool(v))
		return cJSON_IsTrue(v) ? 1 : 0;
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < 9e15))
		return -1;
	return (long long)v->valuedouble;
}

int
sync_json_id(const cJSON *o, const char *key, long long *v)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
	const char *s;
	char *end;
	long long n;

	if (cJSON_IsNumber(x)) {
		if (!(fabs(x->valuedouble) <= 9007199254740992.0) ||
		    floor(x->valuedouble) != x->valuedouble)
			return -1;
		*v = (long long)x->valuedouble;
		return 0;
	}
	if ((s = cJSON_GetStringValue(x)) == NULL || *s == '\0')
		return -1;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*v = n;
	return 0;
}
