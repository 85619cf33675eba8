/*
 * jsonf.c -- reading fields of upstream JSON objects, for the connectors:
 * the type quirks every API has (ids as numbers or strings, nulls
 * anywhere) are handled once, here.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* The nodes exact_numbers() changed, to be changed back. */
struct changed {
	cJSON	       **v;
	size_t		 n, cap;
};

/*
 * Whole numbers from 10^15 up (ids, mostly) are printed by cJSON with 15
 * significant digits, which loses the last ones (2^53 - 1 comes out as
 * ...990): each becomes, for the time of one print, a raw node holding
 * its exact digits.  -1 on ENOMEM.
 */
static int
exact_numbers(cJSON *j, struct changed *c)
{
	char digits[32], *s;
	cJSON **v, *k;
	double d = j->valuedouble;

	if (cJSON_IsNumber(j) && fabs(d) >= 1e15 && fabs(d) < 1e19 &&
	    floor(d) == d) {
		snprintf(digits, sizeof(digits), "%.0f", d);
		if (c->n == c->cap) {
			size_t cap = c->cap ? 2 * c->cap : 8;

			if ((v = realloc(c->v, cap * sizeof(*v))) == NULL)
				return -1;
			c->v = v;
			c->cap = cap;
		}
		if ((s = strdup(digits)) == NULL)
			return -1;
		j->valuestring = s;
		j->type = cJSON_Raw | (j->type & ~0xff);
		c->v[c->n++] = j;
	}
	/* j's own members only: its siblings (the page's other rows) are not its. */
	for (k = j->child; k != NULL; k = k->next)
		if (exact_numbers(k, c) == -1)
			return -1;
	return 0;
}

char *
sync_json_print(const cJSON *j)
{
	struct changed c = { NULL, 0, 0 };
	char *s = NULL;
	size_t i;

	/* The tree is changed for the print only, and back before return. */
	if (exact_numbers((cJSON *)(uintptr_t)j, &c) == 0)
		s = cJSON_PrintUnformatted(j);
	for (i = 0; i < c.n; i++) {
		free(c.v[i]->valuestring);
		c.v[i]->valuestring = NULL;
		c.v[i]->type = cJSON_Number | (c.v[i]->type & ~0xff);
	}
	free(c.v);
	return s;
}
