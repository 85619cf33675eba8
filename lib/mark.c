/*
 * mark.c -- keyset watermarks for APIs that list items newest first by
 * time, without sequence numbers (SPEC §7.7): a mark is (timestamp, id),
 * stored as "YYYY-MM-DDTHH:MM:SS.ffffffZ|id" and compared strictly, time
 * first, then id.  A pass re-reads everything down to its mark minus the
 * source's lookback, so items that share the boundary second, or arrive
 * late, are never lost; the upserts absorb the overlap.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int
sync_mark_set(struct sync_mark *m, const char *when, const char *id)
{
	int64_t t;
	int us;
	size_t n = id != NULL ? strlen(id) : 0;

	/* Every id that can be stored fits; a longer one is not an id. */
	if (when == NULL || sync_time_parse(when, &t, &us) == -1 ||
	    n >= sizeof(m->id))
		return -1;
	m->t = t;
	m->us = us;
	memcpy(m->id, n > 0 ? id : "", n);
	m->id[n] = '\0';
	return 0;
}

int
sync_mark_parse(const char *s, struct sync_mark *m)
{
	const char *bar;
	char when[64];
	size_t n;

	if (s == NULL || (bar = strchr(s, '|')) == NULL ||
	    (n = (size_t)(bar - s)) >= sizeof(when))
		return -1;
	memcpy(when, s, n);
	when[n] = '\0';
	return sync_mark_set(m, when, bar + 1);
}

char *
sync_mark_format(const struct sync_mark *m)
{
	struct sync_buf b = SYNC_BUF_INIT(0);
	char t[32];

	sync_time_format((time_t)m->t, t, sizeof(t));
	t[strlen(t) - 1] = '\0';		/* the Z goes after the fraction */
	if (sync_buf_addf(&b, "%s.%06dZ|%s", t, m->us, m->id) == -1) {
		sync_buf_release(&b);
		return NULL;
	}
	return b.data;
}

int
sync_mark_cmp(const struct sync_mark *a, const struct sync_mark *b)
{
	if (a->t != b->t)
		return a->t < b->t ? -1 : 1;
	if (a->us != b->us)
		return a->us < b->us ? -1 : 1;
	return strcmp(a->id, b->id);
}

void
sync_mark_floor(const struct sync_mark *w, long long lookback, struct sync_mark *f)
{
	f->t = w->t - lookback;
	f->us = w->us;
	/*
	 * All of that instant, whatever the lookback: an item of the same
	 * instant whose id sorts below w's may arrive after w was stored.
	 */
	f->id[0] = '\0';
}

char *
sync_mark_max(const char *a, const char *b)
{
	struct sync_mark x, y;

	if (a == NULL || sync_mark_parse(a, &x) == -1)
		return b != NULL ? strdup(b) : NULL;
	if (b == NULL || sync_mark_parse(b, &y) == -1)
		return strdup(a);
	return strdup(sync_mark_cmp(&x, &y) >= 0 ? a : b);
}
