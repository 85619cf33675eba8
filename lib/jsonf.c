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

/* sync_buf_add() without the call while the text fits (most of the time). */
static inline int
put(struct sync_buf *o, const void *p, size_t n)
{
	if (o->max == 0 && o->cap > 0 && n < o->cap - o->len) {
		memcpy(o->data + o->len, p, n);
		o->len += n;
		o->data[o->len] = '\0';
		return 0;
	}
	return sync_buf_add(o, p, n);
}

/*
 * A JSON string as cJSON prints it ("\"" and "\\" escaped, \b \f \n \r \t
 * by letter, other bytes below 32 as \u00XX, the rest as they are), then
 * escaped for COPY: each backslash of the JSON text is doubled.
 */
static int
copy_string(struct sync_buf *o, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)(s != NULL ? s : ""), *run;
	char u[8] = "\\\\u00";

	if (put(o, "\"", 1) == -1)
		return -1;
	for (run = p;; p++) {
		const char *esc;
		size_t n = 3;

		while (*p >= 32 && *p != '"' && *p != '\\')
			p++;
		if (*p == '\0')
			break;
		switch (*p) {
		case '"':	esc = "\\\\\""; break;
		case '\\':	esc = "\\\\\\\\"; n = 4; break;
		case '\b':	esc = "\\\\b"; break;
		case '\f':	esc = "\\\\f"; break;
		case '\n':	esc = "\\\\n"; break;
		case '\r':	esc = "\\\\r"; break;
		case '\t':	esc = "\\\\t"; break;
		default:
			u[5] = hex[*p >> 4];
			u[6] = hex[*p & 0xf];
			esc = u;
			n = 7;
			break;
		}
		if (put(o, run, (size_t)(p - run)) == -1 ||
		    put(o, esc, n) == -1)
			return -1;
		run = p + 1;
	}
	if (put(o, run, (size_t)(p - run)) == -1)
		return -1;
	return put(o, "\"", 1);
}

/* A number as sync_json_print() prints it. */
static int
copy_number(struct sync_buf *o, const cJSON *j)
{
	char digits[32], *s;
	double d = j->valuedouble;
	unsigned long long v;
	size_t k = sizeof(digits);
	int rc;

	if (d == floor(d) && fabs(d) < 1e15 && (d != 0 || !signbit(d))) {
		/* A whole number: its digits, as "%1.15g" prints them. */
		v = (unsigned long long)fabs(d);
		do {
			digits[--k] = (char)('0' + v % 10);
			v /= 10;
		} while (v > 0);
		if (d < 0)
			digits[--k] = '-';
		return put(o, digits + k, sizeof(digits) - k);
	}
	if (fabs(d) >= 1e15 && fabs(d) < 1e19 && floor(d) == d) {
		snprintf(digits, sizeof(digits), "%.0f", d);
		return sync_buf_adds(o, digits);
	}
	/* Anything else: cJSON's own text. */
	if ((s = cJSON_PrintUnformatted(j)) == NULL)
		return -1;
	rc = sync_copy_text(o, s);
	cJSON_free(s);
	return rc;
}

static int
copy_value(struct sync_buf *o, const cJSON *j)
{
	const cJSON *k;

	switch (j->type & 0xff) {
	case cJSON_NULL:
		return put(o, "null", 4);
	case cJSON_False:
		return put(o, "false", 5);
	case cJSON_True:
		return put(o, "true", 4);
	case cJSON_Number:
		return copy_number(o, j);
	case cJSON_String:
		return copy_string(o, j->valuestring);
	case cJSON_Raw:
		if (j->valuestring == NULL)
			return -1;
		return sync_copy_text(o, j->valuestring);
	case cJSON_Array:
		if (put(o, "[", 1) == -1)
			return -1;
		for (k = j->child; k != NULL; k = k->next)
			if ((k != j->child && put(o, ",", 1) == -1) ||
			    copy_value(o, k) == -1)
				return -1;
		return put(o, "]", 1);
	case cJSON_Object:
		if (put(o, "{", 1) == -1)
			return -1;
		for (k = j->child; k != NULL; k = k->next)
			if ((k != j->child && put(o, ",", 1) == -1) ||
			    copy_string(o, k->string) == -1 ||
			    put(o, ":", 1) == -1 || copy_value(o, k) == -1)
				return -1;
		return put(o, "}", 1);
	default:
		return -1;
	}
}

int
sync_json_copy(struct sync_buf *o, const cJSON *j)
{
	size_t len = o->len;

	if (copy_value(o, j) == -1) {
		o->len = len;
		if (o->data != NULL)
			o->data[len] = '\0';
		return -1;
	}
	return 0;
}
