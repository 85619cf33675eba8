/*
 * test_telegram -- the telegram source's cursor map (lib/connectors/telegram/telegram.c), as
 * the engine merges it (sync_connector.cursor_max): chat by chat, never
 * back, gaps of interrupted walks kept, closed or replaced.
 */
#include <stdlib.h>

#include "internal.h"
#include "t.h"

static char *(*merge)(const char *, const char *);

/* Checks merge(a, b) == want, and frees the result. */
static void
merged(const char *a, const char *b, const char *want)
{
	char *m = merge(a, b);

	CHECK_STR(m, want);
	free(m);
}

int
main(void)
{
	merge = sync_telegram_connector.cursor_max;
	CHECK(merge != NULL);
	CHECK(sync_telegram_connector.import_stream != NULL);

	/* Chat by chat, the higher id; sorted by chat id; `me` kept. */
	merged("me:5 -100:1048576 7:2097152", "me:5 7:1048576 8:3145728",
	    "me:5 -100:1048576 7:2097152 8:3145728");
	merged(NULL, "me:5 1:1048576", "me:5 1:1048576");
	merged("me:5 1:1048576", NULL, "me:5 1:1048576");
	/* The stored account wins: a mismatch is refused before a write. */
	merged("me:5 1:1", "me:6 1:2", "me:5 1:2");
	merged("1:1", "me:6", "me:6 1:1");
	/* An unreadable stored map yields to the new one, and vice versa. */
	merged("garbage", "me:5 1:1", "me:5 1:1");
	merged("me:5 1:1", "1:x", "me:5 1:1");
	merged("me:5 1:1", "1:2:3", "me:5 1:1");
	merged("me:5 1:1", "1:-2", "me:5 1:1");

	/* A gap beside a cursor: [low, top] is stored above it. */
	merged("me:5 9:10", "me:5 9:10/30/50", "me:5 9:10/30/50");
	/* A later walk (higher top, lower low) replaces an older gap. */
	merged("me:5 9:10/30/50", "me:5 9:10/20/60", "me:5 9:10/20/60");
	merged("me:5 9:10/20/60", "me:5 9:10/30/50", "me:5 9:10/20/60");
	merged("me:5 9:10/30/50", "me:5 9:10/25/50", "me:5 9:10/25/50");
	/* A cursor raised into the gap closes it at its top. */
	merged("me:5 9:10/30/50", "me:5 9:40", "me:5 9:50");
	merged("me:5 9:10/30/50", "me:5 9:70", "me:5 9:70");
	/* ... and a gap at or below the cursor is none. */
	merged("me:5 9:40", "me:5 9:10/30/50", "me:5 9:50");
	/* A walk without a cursor (a cold start) may leave one too. */
	merged(NULL, "me:5 9:0/30/50", "me:5 9:0/30/50");
	merged("me:5 9:0/30/50", "me:5 9:20", "me:5 9:20/30/50");
	/* Malformed gaps. */
	merged("me:5 9:10", "me:5 9:10/30", "me:5 9:10");
	merged("me:5 9:10", "me:5 9:10/50/30", "me:5 9:10");
	return t_done("test_telegram");
}
