/* test_walk -- the engine's keyset walk (lib/walk.c). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "t.h"

/* A walk under way, as the engine stores it. */
static char *
open_walk(const char *floor, const char *top, const char *topid,
    const char *low, const char *lowid)
{
	static struct sync_walk w;
	struct sync_page pg;
	struct sync_err err;

	memset(&w, 0, sizeof(w));
	memset(&pg, 0, sizeof(pg));
	sync_err_clear(&err);
	if (floor != NULL) {
		sync_mark_set(&w.base, floor, "");
		w.have_base = 1;
	}
	w.have_top = sync_mark_set(&w.top, top, topid) == 0;
	w.have_low = sync_mark_set(&w.low, low, lowid) == 0;
	w.limit = INT64_MAX;
	if (sync_walk_save(&w, &pg, 0, &err) != SYNC_OK || pg.checkpoint != NULL)
		return NULL;
	return pg.cursor;
}

static void
test_pager(void)
{
	struct sync_pager g;
	struct sync_err err;
	char cur[32];
	int i;

	memset(&g, 0, sizeof(g));
	g.stream = "messages";
	sync_err_clear(&err);
	CHECK(sync_pager_next(&g, "list", "A", 3, &err) == SYNC_OK);
	CHECK(sync_pager_next(&g, "list", "B", 3, &err) == SYNC_OK);
	/* A cycle, not only the same cursor twice in a row. */
	CHECK(sync_pager_next(&g, "list", "A", 3, &err) == SYNC_EDATA);
	CHECK(err.kind == SYNC_ERR_PROTOCOL);
	CHECK(strstr(err.msg, "stream 'messages'") != NULL);
	sync_pager_reset(&g);
	CHECK_STR(g.stream, "messages");
	sync_err_clear(&err);
	CHECK(sync_pager_next(&g, "list", "A", 3, &err) == SYNC_OK);
	/* Many cursors: the set grows, none is taken for another. */
	for (i = 0; i < 5000; i++) {
		snprintf(cur, sizeof(cur), "c%d", i);
		if (sync_pager_next(&g, "list", cur, 1, &err) != SYNC_OK)
			break;
	}
	CHECK(i == 5000);
	CHECK(sync_pager_next(&g, "list", "c4321", 1, &err) == SYNC_EDATA);
	sync_pager_reset(&g);
	/* Empty pages with fresh cursors: a bounded number in a row. */
	sync_err_clear(&err);
	for (i = 0; i < 100; i++) {
		snprintf(cur, sizeof(cur), "e%d", i);
		if (sync_pager_next(&g, "list", cur, 0, &err) != SYNC_OK)
			break;
		if (i == 10)	/* one page with items starts the count again */
			CHECK(sync_pager_next(&g, "list", "full", 1, &err) == SYNC_OK);
	}
	CHECK(i == SYNC_WALK_MAX_EMPTY + 11);
	/* The last page, empty: the end, not a loop. */
	sync_pager_reset(&g);
	sync_err_clear(&err);
	CHECK(sync_pager_next(&g, "list", NULL, 0, &err) == SYNC_OK);
	sync_pager_reset(&g);
}

static void
test_max(void)
{
	char *o, *o2, *m;

	o = open_walk(NULL, "2026-11-21T10:00:00Z", "t|1 x%",
	    "2026-11-20T10:00:00Z", "t_2");
	CHECK_STR(o, "~- 2026-11-21T10:00:00.000000Z|t%7C1%20x%25 "
	    "2026-11-20T10:00:00.000000Z|t_2");
	o2 = open_walk("2026-11-14T10:00:00Z", "2026-11-21T10:00:00Z", "t|1 x%",
	    "2026-11-19T10:00:00Z", "t_3");
	CHECK(o2 != NULL && strncmp(o2, "~2026-11-14T10:00:00.000000Z ", 29) == 0);
	/* Two walks: the higher top, then the lower low. */
	m = sync_walk_max(o, o2);
	CHECK_STR(m, o2);
	free(m);
	m = sync_walk_max(o2, o);
	CHECK_STR(m, o2);
	free(m);
	/* A watermark at or above the walk's top covers it. */
	m = sync_walk_max(o, "2026-11-22T00:00:00.000000Z|z");
	CHECK_STR(m, "2026-11-22T00:00:00.000000Z|z");
	free(m);
	/* One that reaches the walk's low closes it: the top, whole. */
	m = sync_walk_max("2026-11-20T12:00:00.000000Z|z", o);
	CHECK_STR(m, "2026-11-21T10:00:00.000000Z|t|1 x%");
	free(m);
	/* One below it leaves the walk under way. */
	m = sync_walk_max("2026-11-01T00:00:00.000000Z|a", o);
	CHECK_STR(m, o);
	free(m);
	/* Garbage yields to the other; two watermarks as before. */
	m = sync_walk_max("~garbage", o);
	CHECK_STR(m, o);
	free(m);
	m = sync_walk_max(o, NULL);
	CHECK_STR(m, o);
	free(m);
	m = sync_walk_max("2026-11-01T00:00:00.000000Z|a",
	    "2026-11-01T00:00:00.000000Z|b");
	CHECK_STR(m, "2026-11-01T00:00:00.000000Z|b");
	free(m);
	free(o);
	free(o2);
}

static void
test_walk(void)
{
	static struct sync_walk w;
	struct sync_mark m, top;
	struct sync_counts c;

	/* A resumed walk of an API that lists below a mark (by_before). */
	memset(&w, 0, sizeof(w));
	memset(&c, 0, sizeof(c));
	w.counts = &c;
	w.by_before = 1;
	w.limit = 4102444800LL;			/* 2100-01-01 */
	w.resumed = 1;
	sync_mark_set(&w.rtop, "2026-11-21T10:00:00Z", "b");
	sync_mark_set(&w.rlow, "2026-11-10T10:00:00Z", "a");
	sync_mark_set(&w.base, "2026-11-01T00:00:00Z", "");
	w.have_base = 1;
	w.top = w.rtop;
	w.have_top = 1;
	sync_mark_floor(&w.rtop, 300, &w.floor);
	w.have_floor = 1;
	/* An outlier is taken, counted and moves nothing. */
	sync_mark_set(&m, "2100-06-01T00:00:00Z", "x");
	CHECK(sync_walk_item(&w, &m) == SYNC_WALK_TAKE);
	CHECK(w.outliers == 1 && c.outliers == 1);
	CHECK(sync_mark_cmp(&w.top, &w.rtop) == 0);
	sync_mark_set(&top, "2026-11-22T10:00:00Z", "c");
	CHECK(sync_walk_item(&w, &top) == SYNC_WALK_TAKE);
	CHECK(sync_mark_cmp(&w.top, &top) == 0);
	sync_walk_reached(&w, &top);
	/* Down to the stored range: a new listing below its low. */
	sync_mark_set(&m, "2026-11-20T00:00:00Z", "d");
	CHECK(sync_walk_item(&w, &m) == SYNC_WALK_BELOW);
	CHECK(w.below && !w.resumed && w.have_before);
	CHECK(sync_mark_cmp(&w.before, &w.rlow) == 0);
	CHECK(sync_mark_cmp(&w.low, &w.rlow) == 0);
	CHECK(sync_walk_listed(&w) == 1 && !w.restart);
	/* Below the walk's floor: the walk ends. */
	sync_mark_set(&m, "2026-10-01T00:00:00Z", "e");
	CHECK(sync_walk_item(&w, &m) == SYNC_WALK_BELOW);
	CHECK(sync_walk_listed(&w) == 0);
	sync_walk_release(&w);
}

int
main(void)
{
	test_pager();
	test_max();
	test_walk();
	return t_done("test_walk");
}
