/*
 * gaps.c -- the gaps of since_seq streams (SPEC §7.7, issue 12): positions
 * a page skipped may be rows a concurrent writer commits later (a lower
 * seq made visible after higher ones were served).  The engine keeps them
 * in stream_gap; the connector re-reads the open ones on later passes
 * (struct sync_stream's gaps) and says what each page read (read_from,
 * read_to) and found missing.  A gap found filled is closed; one still
 * missing once the source's gap_window has passed since it was found is
 * unrecoverable: reported once, no longer re-read.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int
sync_page_missing(struct sync_page *pg, long long lo, long long hi)
{
	struct sync_gap *v;
	size_t cap;

	if (hi < lo)
		return 0;
	/* Adjacent ranges are one gap. */
	if (pg->nmissing > 0 && pg->missing[pg->nmissing - 1].hi + 1 == lo) {
		pg->missing[pg->nmissing - 1].hi = hi;
		return 0;
	}
	if (pg->nmissing == pg->missingcap) {
		cap = pg->missingcap ? pg->missingcap * 2 : 8;
		if ((v = realloc(pg->missing, cap * sizeof(*v))) == NULL)
			return -1;
		pg->missing = v;
		pg->missingcap = cap;
	}
	pg->missing[pg->nmissing].lo = lo;
	pg->missing[pg->nmissing].hi = hi;
	pg->nmissing++;
	return 0;
}

enum sync_rc
sync_gaps_load(struct sync_db *db, int id, const char *stream,
    const struct sync_gapsum *sum, size_t nsum, struct sync_gaps *g,
    struct sync_err *err)
{
	size_t i;

	g->open = 0;
	g->top = -1;
	for (i = 0; i < nsum; i++)
		if (strcmp(sum[i].stream, stream) == 0) {
			g->open = sum[i].open;
			g->top = sum[i].top;
		}
	if (g->open == 0)
		return SYNC_OK;
	return sync_db_gaps_load(db, id, stream, SYNC_GAPS_MAX, &g->v, &g->n, err);
}

void
sync_gaps_release(struct sync_gaps *g)
{
	free(g->v);
	g->v = NULL;
	g->n = 0;
}

/*
 * Whether position x was read and found present by the page: inside its
 * range and in none of its missing ranges (sorted, disjoint).
 */
static int
seen(const struct sync_page *pg, long long x)
{
	size_t i;

	if (x <= pg->read_from || x > pg->read_to)
		return 0;
	for (i = 0; i < pg->nmissing; i++)
		if (x >= pg->missing[i].lo && x <= pg->missing[i].hi)
			return 0;
	return 1;
}

/*
 * The parts of lo..hi that are still missing after the page (not seen),
 * stored through put(); the number of parts in *parts.  Walks the
 * boundaries of the page's ranges only, never position by position.
 */
static enum sync_rc
remaining(const struct sync_page *pg, long long lo, long long hi,
    enum sync_rc (*put)(void *, long long, long long, struct sync_err *),
    void *arg, int *parts, struct sync_err *err)
{
	long long x = lo, end, next;
	enum sync_rc rc;
	size_t i;

	*parts = 0;
	while (x <= hi) {
		if (seen(pg, x)) {
			/* Skip to the next missing range or the end of the read. */
			next = pg->read_to + 1;
			for (i = 0; i < pg->nmissing; i++)
				if (pg->missing[i].lo > x) {
					next = pg->missing[i].lo;
					break;
				}
			x = next;
			continue;
		}
		/* Missing from x up to the next seen position. */
		if (x <= pg->read_from)
			end = pg->read_from;
		else if (x > pg->read_to)
			end = hi;
		else {
			end = pg->read_to;
			for (i = 0; i < pg->nmissing; i++)
				if (x >= pg->missing[i].lo && x <= pg->missing[i].hi) {
					end = pg->missing[i].hi;
					break;
				}
		}
		if (end > hi)
			end = hi;
		if ((rc = put(arg, x, end, err)) != SYNC_OK)
			return rc;
		(*parts)++;
		x = end + 1;
	}
	return SYNC_OK;
}

struct apply {
	struct sync_db	*db;
	int		 id;
	const char	*stream;
	const struct sync_gaps *g;
	struct sync_gaprow row;		/* the stored gap being re-read */
	long long	 open;		/* open gaps after minus before */
	long long	 marked;
	struct sync_gap	 first;		/* the first one marked */
};

static enum sync_rc
put_part(void *arg, long long lo, long long hi, struct sync_err *err)
{
	struct apply *a = arg;
	struct sync_gaprow r = a->row;
	int open, marked;
	enum sync_rc rc;

	r.lo = lo;
	r.hi = hi;
	if ((rc = sync_db_gap_put(a->db, a->id, a->stream, &r, a->g->window, &open,
	    &marked, err)) != SYNC_OK)
		return rc;
	a->open += open;
	if (marked && a->marked++ == 0) {
		a->first.lo = lo;
		a->first.hi = hi;
	}
	return SYNC_OK;
}

/* A new gap: the part of lo..hi above the floor and in no stored gap. */
static enum sync_rc
put_new(struct apply *a, long long lo, long long hi, const struct sync_gaprow *in,
    size_t nin, struct sync_err *err)
{
	enum sync_rc rc;
	size_t i;

	if (lo <= a->g->floor)
		lo = a->g->floor + 1;
	memset(&a->row, 0, sizeof(a->row));
	for (i = 0; i < nin && lo <= hi; i++) {
		if (in[i].hi < lo || in[i].lo > hi)
			continue;
		if (in[i].lo > lo && (rc = put_part(a, lo, in[i].lo - 1, err)) !=
		    SYNC_OK)
			return rc;
		lo = in[i].hi + 1;
	}
	if (lo <= hi)
		return put_part(a, lo, hi, err);
	return SYNC_OK;
}

enum sync_rc
sync_gaps_apply(struct sync_db *db, int id, const char *source,
    const char *stream, const struct sync_gaps *g, const struct sync_page *pg,
    struct sync_counts *c, struct sync_err *err)
{
	struct apply a;
	struct sync_gaprow *in = NULL;
	size_t nin = 0, i;
	enum sync_rc rc = SYNC_OK;
	int parts;

	if (pg->read_to <= pg->read_from)
		return SYNC_OK;
	/* Nothing missing, and no stored gap in the range: nothing to do. */
	if (pg->nmissing == 0 && pg->read_from >= g->top)
		return SYNC_OK;
	memset(&a, 0, sizeof(a));
	a.db = db;
	a.id = id;
	a.stream = stream;
	a.g = g;
	if (pg->read_from < g->top && (rc = sync_db_gaps_in(db, id, stream,
	    pg->read_from, pg->read_to, &in, &nin, err)) != SYNC_OK)
		goto out;
	/* The stored gaps the page read: closed, shrunk or re-read. */
	for (i = 0; i < nin; i++) {
		a.row = in[i];
		a.row.reads++;
		if (in[i].unrec[0] == '\0')
			a.open--;
		if ((rc = sync_db_gap_drop(db, id, stream, in[i].lo, err)) != SYNC_OK ||
		    (rc = remaining(pg, in[i].lo, in[i].hi, put_part, &a, &parts,
		    err)) != SYNC_OK)
			goto out;
		if (parts == 0)
			c->gaps_healed++;
	}
	/* What the page found missing that no stored gap holds: new gaps. */
	for (i = 0; i < pg->nmissing; i++)
		if ((rc = put_new(&a, pg->missing[i].lo, pg->missing[i].hi, in, nin,
		    err)) != SYNC_OK)
			goto out;
	c->gaps_open += a.open;
	c->gaps_unrecoverable += a.marked;
	if (a.marked > 0)
		sync_log(LOG_WARNING, "source '%s': stream '%s': %lld gap(s) still "
		    "missing after gap_window (%lld s), reported unrecoverable and no "
		    "longer re-read (the first: seqs %lld..%lld; rows updated or "
		    "deleted before they were read leave such gaps too)", source,
		    stream, a.marked, g->window, a.first.lo, a.first.hi);
out:
	free(in);
	return rc;
}
