/* test_coverage -- what a page's walk tells of conversations (lib/coverage.c). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "t.h"

static struct sync_history
fact(const char *conv)
{
	struct sync_history h;

	memset(&h, 0, sizeof(h));
	h.conversation = conv;
	h.upstream_count = h.unrecoverable = h.gaps = -1;
	return h;
}

int
main(void)
{
	struct sync_page pg;
	struct sync_history h;
	const struct sync_history_row *r;

	memset(&pg, 0, sizeof(pg));
	/* A conversation without an id is nothing to report. */
	h = fact(NULL);
	CHECK(sync_page_history(&pg, &h) == 0 && pg.nhistory == 0);
	h = fact("");
	CHECK(sync_page_history(&pg, &h) == 0 && pg.nhistory == 0);

	/* Unknown facts stay unknown (-1, NULL). */
	h = fact("c1");
	CHECK(sync_page_history(&pg, &h) == 0 && pg.nhistory == 1);
	r = &pg.history[0];
	CHECK_STR(r->conversation, "c1");
	CHECK(r->reached_start == 0 && r->upstream_count == -1 &&
	    r->unrecoverable == -1 && r->gaps == -1 && r->listable_from == NULL);

	/* The same conversation again: later facts win, the id is copied. */
	h = fact("c1");
	h.reached_start = 1;
	h.upstream_count = 25;
	h.unrecoverable = 5;
	h.listable_from = "2026-11-21T09:15:02+0000";
	CHECK(sync_page_history(&pg, &h) == 0 && pg.nhistory == 1);
	h = fact("c1");			/* knows less: forgets nothing */
	h.gaps = 0;
	CHECK(sync_page_history(&pg, &h) == 0 && pg.nhistory == 1);
	r = &pg.history[0];
	CHECK(r->reached_start == 1 && r->upstream_count == 25 &&
	    r->unrecoverable == 5 && r->gaps == 0);
	CHECK_STR(r->listable_from, "2026-11-21T09:15:02+0000");
	h = fact("c1");			/* now all can be listed */
	h.listable_from = "";
	CHECK(sync_page_history(&pg, &h) == 0);
	CHECK_STR(pg.history[0].listable_from, "");

	/* Another conversation: a row of its own. */
	h = fact("c2");
	h.gaps = 1;
	CHECK(sync_page_history(&pg, &h) == 0 && pg.nhistory == 2);
	CHECK(pg.history[1].gaps == 1 && pg.history[0].gaps == 0);

	/* The page's release frees them, and leaves an empty page. */
	sync_page_release(&pg);
	CHECK(pg.nhistory == 0 && pg.history == NULL);
	sync_page_release(&pg);
	return t_done("test_coverage");
}
