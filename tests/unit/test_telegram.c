/*
 * test_telegram -- the telegram source's cursor map (lib/connectors/telegram/telegram.c), as
 * the engine merges it (sync_connector.cursor_max): chat by chat, never
 * back, gaps of interrupted walks kept, closed or replaced.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"
#include "tgexport.h"
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

/* The file of a TDLib message content (SPEC §9). */
static void
content_file(const char *json, int has, const char *uid, const char *kind,
    const char *mime, const char *name, long long size, long long fid)
{
	cJSON *ct = cJSON_Parse(json);
	struct sync_attachment a;
	long long id;

	CHECK(ct != NULL);
	CHECK(sync_tg_content_file(ct, &a, &id) == has);
	if (has) {
		CHECK_STR(a.external_id, uid);
		CHECK_STR(a.kind, kind);
		CHECK(mime == NULL ? a.mime_type == NULL :
		    a.mime_type != NULL && strcmp(a.mime_type, mime) == 0);
		CHECK(name == NULL ? a.name == NULL :
		    a.name != NULL && strcmp(a.name, name) == 0);
		CHECK(a.size == size);
		CHECK(id == fid);
		CHECK(a.url == NULL && a.path == NULL && a.unavailable == NULL);
	}
	cJSON_Delete(ct);
}

static void
test_content_files(void)
{
	/* A photo: its largest size. */
	content_file("{\"@type\":\"messagePhoto\",\"photo\":{\"sizes\":["
	    "{\"type\":\"m\",\"photo\":{\"id\":7,\"size\":900,\"remote\":"
	    "{\"unique_id\":\"small\"}}},{\"type\":\"y\",\"photo\":{\"id\":8,"
	    "\"size\":0,\"expected_size\":81234,\"remote\":{\"unique_id\":"
	    "\"AQADbig\"}}}]},\"caption\":{\"text\":\"hi\"}}", 1, "AQADbig",
	    "photo", "image/jpeg", NULL, 81234, 8);
	content_file("{\"@type\":\"messageDocument\",\"document\":{"
	    "\"file_name\":\"r.pdf\",\"mime_type\":\"application/pdf\","
	    "\"document\":{\"id\":9,\"size\":1234,\"remote\":{\"unique_id\":"
	    "\"AgADdoc\"}}}}", 1, "AgADdoc", "document", "application/pdf",
	    "r.pdf", 1234, 9);
	content_file("{\"@type\":\"messageVoiceNote\",\"voice_note\":{"
	    "\"mime_type\":\"audio/ogg\",\"voice\":{\"id\":10,\"size\":55,"
	    "\"remote\":{}}}}", 1, "0", "voice", "audio/ogg", NULL, 55, 10);
	content_file("{\"@type\":\"messageVideoNote\",\"video_note\":{"
	    "\"video\":{\"id\":11,\"remote\":{\"unique_id\":\"vn\"}}}}", 1,
	    "vn", "video_note", NULL, NULL, -1, 11);
	content_file("{\"@type\":\"messageSticker\",\"sticker\":{"
	    "\"sticker\":{\"id\":12,\"size\":3,\"remote\":{\"unique_id\":"
	    "\"st\"}}}}", 1, "st", "sticker", NULL, NULL, 3, 12);
	content_file("{\"@type\":\"messageText\",\"text\":{\"text\":\"x\"}}",
	    0, NULL, NULL, NULL, NULL, 0, 0);
	content_file("{\"@type\":\"messagePhoto\",\"photo\":{\"sizes\":[]}}",
	    0, NULL, NULL, NULL, NULL, 0, 0);
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
	test_content_files();
	return t_done("test_telegram");
}
