/*
 * cursor.c -- cursors that are whole numbers (sequence numbers, message
 * ids), stored as decimal text, for the connectors that use them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

long long
sync_cursor_int(const char *s)
{
	char *end;
	long long v;

	if (s == NULL)
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 0)
		return -1;
	return v;
}

char *
sync_cursor_from_int(long long v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%lld", v);
	return strdup(buf);
}

char *
sync_cursor_max_int(const char *a, const char *b)
{
	long long x = sync_cursor_int(a), y = sync_cursor_int(b);

	if (a == NULL || x < 0)
		return b != NULL ? strdup(b) : NULL;
	if (b == NULL || y < 0)
		return strdup(a);
	return strdup(x >= y ? a : b);
}
