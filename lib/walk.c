/*
 * walk.c -- the keyset walk of a list served newest first (SPEC §2, §7.3,
 * §7.7), for every connector that has one: where a walk starts (the stored
 * watermark minus the lookback, a cold start's window, --since), when it
 * ends, what it saves as it goes, which times it refuses to follow, and
 * that its pagination moves on.
 *
 * A walk that cannot finish in one pass keeps its progress: the range
 * [low, top] it has stored, and the floor it walks down to.  The next pass
 * first takes what is newer than that top (down to top minus the lookback),
 * then goes on below low, down to the old floor; only then does the
 * watermark become the top.  An incremental walk keeps that range in its
 * cursor, a full walk in its checkpoint:
 *
 *	TIME|id				a watermark: the walk is complete
 *	~FLOOR TOPTIME|top LOWTIME|low	a walk under way (FLOOR "-": none;
 *					ids %-escaped)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define DEFAULT_SKEW		3600
#define DEFAULT_COLD_DAYS	7

/* ---- the pagination guard ---------------------------------------------- */

void
sync_pager_reset(struct sync_pager *g)
{
	const char *stream = g->stream;

	free(g->seen);
	memset(g, 0, sizeof(*g));
	g->stream = stream;
}

/* Whether h is in the set; adds it if not.  -1 on ENOMEM. */
static int
seen_add(struct sync_pager *g, uint64_t h)
{
	size_t i, mask;

	if (h == 0)
		h = 1;			/* 0 marks a free slot */
	if (2 * (g->n + 1) > g->cap) {
		size_t cap = g->cap ? 2 * g->cap : 64, j;
		uint64_t *v = calloc(cap, sizeof(*v));

		if (v == NULL)
			return -1;
		for (j = 0; j < g->cap; j++) {
			if (g->seen[j] == 0)
				continue;
			for (i = g->seen[j] & (cap - 1); v[i] != 0; i = (i + 1) & (cap - 1))
				;
			v[i] = g->seen[j];
		}
		free(g->seen);
		g->seen = v;
		g->cap = cap;
	}
	mask = g->cap - 1;
	for (i = h & mask; g->seen[i] != 0; i = (i + 1) & mask)
		if (g->seen[i] == h)
			return 1;
	g->seen[i] = h;
	g->n++;
	return 0;
}

enum sync_rc
sync_pager_next(struct sync_pager *g, const char *what, const char *next,
    long nitems, struct sync_err *err)
{
	const char *s = g->stream != NULL ? "stream '" : "";
	const char *e = g->stream != NULL ? "': " : "";
	const char *name = g->stream != NULL ? g->stream : "";
	int r;

	if (nitems > 0)
		g->empty = 0;
	else if (next != NULL && ++g->empty > SYNC_WALK_MAX_EMPTY)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "%s%s%s%s: pagination does not advance (more than %d empty "
		    "pages in a row)", s, name, e, what, SYNC_WALK_MAX_EMPTY);
	if (next == NULL)
		return SYNC_OK;
	if ((r = seen_add(g, sync_hash(SYNC_HASH_INIT, next, strlen(next)))) == -1)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
	if (r == 1)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "%s%s%s%s: pagination does not advance (a cursor seen "
		    "before in this walk)", s, name, e, what);
	return SYNC_OK;
}

/* ---- stored positions -------------------------------------------------- */

/* Appends id with the bytes that delimit a walk's fields %-escaped. */
static int
add_escaped(struct sync_buf *b, const char *id)
{
	for (; *id != '\0'; id++) {
		unsigned char c = (unsigned char)*id;

		if (c <= ' ' || c == '%' || c == '|' || c == 0x7f) {
			if (sync_buf_addf(b, "%%%02X", c) == -1)
				return -1;
		} else if (sync_buf_add(b, id, 1) == -1)
			return -1;
	}
	return 0;
}

/* The mark's time as stored, without its id: "...ffffffZ". */
static int
add_time(struct sync_buf *b, const struct sync_mark *m)
{
	char t[32];

	sync_time_format((time_t)m->t, t, sizeof(t));
	t[strlen(t) - 1] = '\0';
	return sync_buf_addf(b, "%s.%06dZ", t, m->us);
}

/* Parses "TIME|escaped-id" of n bytes at s; -1 if it is not one. */
static int
parse_escaped(const char *s, size_t n, struct sync_mark *m)
{
	char when[64], id[SYNC_MAX_ID + 1];
	const char *bar = memchr(s, '|', n), *p;
	size_t k = 0;

	if (bar == NULL || (size_t)(bar - s) >= sizeof(when))
		return -1;
	memcpy(when, s, (size_t)(bar - s));
	when[bar - s] = '\0';
	for (p = bar + 1; p < s + n; p++) {
		unsigned int c;

		if (k + 1 >= sizeof(id))
			return -1;
		if (*p == '%') {
			if (p + 2 >= s + n || sscanf(p + 1, "%2X", &c) != 1)
				return -1;
			id[k++] = (char)c;
			p += 2;
		} else
			id[k++] = *p;
	}
	id[k] = '\0';
	return sync_mark_set(m, when, id);
}

/* A stored walk under way: its floor (if any), top and low. */
struct open_walk {
	int		 have_floor;
	struct sync_mark floor, top, low;
};

/* Parses "~FLOOR TOP LOW"; -1 if s is not one. */
static int
parse_open(const char *s, struct open_walk *o)
{
	const char *a, *b;

	memset(o, 0, sizeof(*o));
	if (s == NULL || s[0] != '~' || (a = strchr(s + 1, ' ')) == NULL ||
	    (b = strchr(a + 1, ' ')) == NULL)
		return -1;
	if (!(a - s == 2 && s[1] == '-')) {
		char when[64];
		int64_t t;
		int us;

		if ((size_t)(a - s - 1) >= sizeof(when))
			return -1;
		memcpy(when, s + 1, (size_t)(a - s - 1));
		when[a - s - 1] = '\0';
		if (sync_time_parse(when, &t, &us) == -1)
			return -1;
		o->floor.t = t;
		o->floor.us = us;
		o->have_floor = 1;
	}
	if (parse_escaped(a + 1, (size_t)(b - a - 1), &o->top) == -1 ||
	    parse_escaped(b + 1, strlen(b + 1), &o->low) == -1 ||
	    sync_mark_cmp(&o->low, &o->top) > 0)
		return -1;
	return 0;
}

static char *
format_open(const struct open_walk *o)
{
	struct sync_buf b = SYNC_BUF_INIT(0);
	int bad = sync_buf_adds(&b, "~") == -1;

	if (o->have_floor)
		bad = bad || add_time(&b, &o->floor) == -1;
	else
		bad = bad || sync_buf_adds(&b, "-") == -1;
	bad = bad || sync_buf_adds(&b, " ") == -1 || add_time(&b, &o->top) == -1 ||
	    sync_buf_adds(&b, "|") == -1 || add_escaped(&b, o->top.id) == -1 ||
	    sync_buf_adds(&b, " ") == -1 || add_time(&b, &o->low) == -1 ||
	    sync_buf_adds(&b, "|") == -1 || add_escaped(&b, o->low.id) == -1;
	if (bad) {
		sync_buf_release(&b);
		return NULL;
	}
	return b.data;
}

char *
sync_walk_max(const char *a, const char *b)
{
	struct open_walk x, y;
	struct sync_mark c;
	int ox, oy;

	ox = parse_open(a, &x) == 0;
	oy = parse_open(b, &y) == 0;
	if (!ox && (a == NULL || sync_mark_parse(a, &c) == -1))
		return sync_strdup(b);
	if (!oy && (b == NULL || sync_mark_parse(b, &c) == -1))
		return sync_strdup(a);
	if (!ox && !oy)
		return sync_mark_max(a, b);
	if (ox && oy) {
		/* Of two walks the later one: the higher top, then the lower low. */
		int t = sync_mark_cmp(&x.top, &y.top);

		return sync_strdup(t > 0 || (t == 0 &&
		    sync_mark_cmp(&x.low, &y.low) <= 0) ? a : b);
	}
	/* A watermark c (everything up to it is stored) and a walk o. */
	{
		const struct open_walk *o = ox ? &x : &y;
		const char *ws = ox ? b : a, *os = ox ? a : b;

		sync_mark_parse(ws, &c);
		if (sync_mark_cmp(&c, &o->top) >= 0)
			return sync_strdup(ws);
		if (sync_mark_cmp(&c, &o->low) >= 0)	/* they meet */
			return sync_mark_format(&o->top);
		return sync_strdup(os);
	}
}

/* ---- the walk ------------------------------------------------------------ */

void
sync_walk_begin(struct sync_walk *w, const struct sync_ctx *ctx,
    const struct sync_stream *st, long long lookback, int by_before)
{
	struct open_walk o;
	struct sync_mark m;
	const char *saved = st->mode == SYNC_MODE_FULL ? st->from : st->state.cursor;
	long long days;
	time_t now = time(NULL);
	char when[32];

	sync_walk_release(w);
	memset(w, 0, sizeof(*w));
	w->source = ctx->src->name;
	w->stream = st->name;
	w->counts = st->counts;
	w->full = st->mode == SYNC_MODE_FULL;
	w->lookback = lookback;
	w->by_before = by_before;
	w->pager.stream = st->name;
	w->limit = (int64_t)now + sync_cfg_int(ctx->src, "max_clock_skew",
	    DEFAULT_SKEW);
	if (w->full && st->restart)
		saved = NULL;
	if (parse_open(saved, &o) == 0) {
		/* A walk under way: above its range first, then below it. */
		w->have_base = o.have_floor;
		w->base = o.floor;
		w->resumed = 1;
		w->rtop = o.top;
		w->rlow = o.low;
		w->top = o.top;
		w->have_top = 1;
		sync_mark_floor(&o.top, lookback, &w->floor);
		w->have_floor = 1;
		if (w->have_base && sync_mark_cmp(&w->floor, &w->base) < 0)
			w->floor = w->base;
		sync_time_format((time_t)o.low.t, when, sizeof(when));
		sync_log(LOG_INFO, "source '%s': stream '%s': continuing the walk "
		    "stored down to %s", w->source, w->stream, when);
		return;
	}
	if (!w->full && sync_mark_parse(saved, &m) == 0) {
		sync_mark_floor(&m, lookback, &w->base);
		w->have_base = 1;
		w->from_mark = 1;
	} else if (w->full && st->since > 0) {
		w->base.t = (int64_t)st->since;
		w->have_base = 1;
	} else if (!w->full && (days = sync_cfg_int(ctx->src, "cold_start_days",
	    DEFAULT_COLD_DAYS)) > 0) {
		/* A stream without a watermark: its cold-start window only. */
		w->base.t = (int64_t)now - days * 86400;
		w->have_base = 1;
		sync_log(LOG_INFO, "source '%s': stream '%s': first pass: the "
		    "last %lld day(s) (cold_start_days)", w->source, w->stream, days);
	}
	w->have_floor = w->have_base;
	w->floor = w->base;
}

void
sync_walk_release(struct sync_walk *w)
{
	sync_pager_reset(&w->pager);
}

/* The walk has come down to the range it stored before: on below it. */
static void
enter_below(struct sync_walk *w)
{
	w->resumed = 0;
	w->below = 1;
	w->have_floor = w->have_base;
	w->floor = w->base;
	if (w->by_before) {
		/* This page is all of the walk above the range: they meet. */
		if (!w->have_low || sync_mark_cmp(&w->rlow, &w->low) < 0) {
			w->low = w->rlow;
			w->have_low = 1;
		}
		w->restart = 1;
		w->before = w->rlow;
		w->have_before = 1;
	}
}

enum sync_walk_at
sync_walk_item(struct sync_walk *w, const struct sync_mark *m)
{
	if (m->t > w->limit) {
		/* Stored as data; the watermark does not follow it. */
		w->outliers++;
		w->page_outliers++;
		if (w->counts != NULL)
			w->counts->outliers++;
		return SYNC_WALK_TAKE;
	}
	if (w->resumed && sync_mark_cmp(m, &w->floor) < 0) {
		enter_below(w);
		if (w->have_floor && sync_mark_cmp(m, &w->floor) < 0) {
			w->restart = 0;		/* nothing is left below */
			return SYNC_WALK_BELOW;
		}
		if (w->by_before)
			return SYNC_WALK_BELOW;
	}
	if (w->have_floor && sync_mark_cmp(m, &w->floor) < 0)
		return SYNC_WALK_BELOW;
	if (!w->have_top || sync_mark_cmp(m, &w->top) > 0) {
		w->top = *m;
		w->have_top = 1;
	}
	return SYNC_WALK_TAKE;
}

int
sync_walk_older(const struct sync_walk *w, const struct sync_mark *m)
{
	return w->have_base && sync_mark_cmp(m, &w->base) < 0;
}

int
sync_walk_stored(const struct sync_walk *w, const struct sync_mark *m)
{
	return w->below && !w->by_before && sync_mark_cmp(m, &w->rlow) >= 0 &&
	    m->t <= w->limit;
}

void
sync_walk_reached(struct sync_walk *w, const struct sync_mark *m)
{
	if (m->t > w->limit)
		return;
	/* Below the items before it lies what an earlier pass stored. */
	if (w->below && !w->by_before && sync_mark_cmp(m, &w->rlow) >= 0)
		m = &w->rlow;
	if (!w->have_low || sync_mark_cmp(m, &w->low) < 0) {
		w->low = *m;
		w->have_low = 1;
	}
}

int
sync_walk_listed(struct sync_walk *w)
{
	if (w->resumed)
		enter_below(w);
	if (w->restart) {
		w->restart = 0;
		sync_pager_reset(&w->pager);
		return 1;
	}
	return 0;
}

enum sync_rc
sync_walk_save(struct sync_walk *w, struct sync_page *page, int complete,
    struct sync_err *err)
{
	if (w->page_outliers > 0) {
		sync_log(LOG_WARNING, "source '%s': stream '%s': %ld item(s) dated "
		    "later than now plus max_clock_skew: stored, but the watermark "
		    "does not follow them", w->source, w->stream, w->page_outliers);
		w->page_outliers = 0;
	}
	if (complete) {
		page->done = 1;
		if (w->have_top && (page->cursor = sync_mark_format(&w->top)) == NULL)
			goto nomem;
		return SYNC_OK;
	}
	/*
	 * Above a stored range the progress is not a range of its own until
	 * it meets that range.
	 */
	if (w->below && !w->by_before && (!w->have_low ||
	    sync_mark_cmp(&w->low, &w->rlow) > 0))
		return SYNC_OK;
	if (!w->resumed && w->have_top && w->have_low) {
		struct open_walk o;
		char *s;

		o.have_floor = w->have_base;
		o.floor = w->base;
		o.top = w->top;
		o.low = w->low;
		if ((s = format_open(&o)) == NULL)
			goto nomem;
		if (w->full)
			page->checkpoint = s;
		else
			page->cursor = s;
	}
	return SYNC_OK;
nomem:
	return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
}
