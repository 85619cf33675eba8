/* test_mark -- keyset watermarks (lib/mark.c). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "t.h"

int
main(void)
{
	static struct sync_mark a, b, f;
	char *s, *m, id[SYNC_MAX_ID + 2];

	CHECK(sync_mark_set(&a, "2026-11-21T09:15:02+0000", "t_1") == 0);
	CHECK(sync_mark_set(&b, "2026-11-21T11:15:02+02:00", "t_2") == 0);
	CHECK(sync_mark_cmp(&a, &b) < 0);		/* same instant: by id */
	CHECK(sync_mark_cmp(&b, &a) > 0);
	CHECK(sync_mark_cmp(&a, &a) == 0);
	CHECK(sync_mark_set(&a, "not a time", "x") == -1);
	CHECK(sync_mark_set(&a, "2026-11-21T09:15:02.120Z", "m|1") == 0);
	s = sync_mark_format(&a);
	CHECK_STR(s, "2026-11-21T09:15:02.120000Z|m|1");
	CHECK(sync_mark_parse(s, &b) == 0 && sync_mark_cmp(&a, &b) == 0);
	CHECK_STR(b.id, "m|1");
	CHECK(sync_mark_parse("no bar", &b) == -1);
	CHECK(sync_mark_parse("garbage|x", &b) == -1);
	/* The whole boundary instant is read again, with or without lookback. */
	sync_mark_floor(&a, 300, &f);
	CHECK(f.t == a.t - 300 && f.us == a.us && f.id[0] == '\0');
	sync_mark_floor(&a, 0, &f);
	CHECK(f.t == a.t && f.id[0] == '\0' && sync_mark_cmp(&f, &a) < 0);
	m = sync_mark_max(s, "2026-11-21T09:15:02.120000Z|m|2");
	CHECK_STR(m, "2026-11-21T09:15:02.120000Z|m|2");
	free(m);
	m = sync_mark_max(NULL, s);
	CHECK_STR(m, s);
	free(m);
	m = sync_mark_max("bad", s);
	CHECK_STR(m, s);
	free(m);
	free(s);

	/* Every id that can be stored is kept whole, also past 255 bytes. */
	memset(id, 'x', SYNC_MAX_ID);
	id[SYNC_MAX_ID] = '\0';
	id[0] = '|';
	CHECK(sync_mark_set(&a, "2026-11-21T09:15:02Z", id) == 0);
	CHECK(strlen(a.id) == SYNC_MAX_ID);
	s = sync_mark_format(&a);
	CHECK(s != NULL && sync_mark_parse(s, &b) == 0);
	CHECK_STR(b.id, id);
	CHECK(sync_mark_cmp(&a, &b) == 0);
	id[299] = 'y';				/* differs past byte 255 */
	CHECK(sync_mark_set(&f, "2026-11-21T09:15:02Z", id) == 0);
	CHECK(sync_mark_cmp(&a, &f) < 0);
	free(s);
	/* A longer one is not an id that could have been stored. */
	id[SYNC_MAX_ID] = 'x';
	id[SYNC_MAX_ID + 1] = '\0';
	CHECK(sync_mark_set(&a, "2026-11-21T09:15:02Z", id) == -1);
	return t_done("test_mark");
}
