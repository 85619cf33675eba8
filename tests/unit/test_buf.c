/* test_buf -- buffers and the JSON sanitiser (lib/buf.c). */
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "internal.h"
#include "t.h"

static long
sanitize(const char *in, size_t n, struct sync_buf *b)
{
	sync_buf_reset(b);
	sync_buf_add(b, in, n);
	return sync_json_sanitize(b);
}

static void
test_cap(void)
{
	struct sync_buf b = SYNC_BUF_INIT(8);

	CHECK(sync_buf_adds(&b, "1234") == 0);
	CHECK(sync_buf_adds(&b, "5678") == 0);
	CHECK(sync_buf_adds(&b, "9") == -1);	/* over max: refused */
	CHECK(b.len == 8);
	CHECK_STR(b.data, "12345678");
	sync_buf_release(&b);
	CHECK(b.data == NULL);
}

static void
test_sanitize(void)
{
	struct sync_buf b = SYNC_BUF_INIT(0);
	cJSON *j;

	/* Clean text is left alone. */
	CHECK(sanitize("{\"a\":\"caf\xc3\xa9\"}", 12, &b) == 0);
	/* \u0000 inside a string becomes \ufffd, also after other escapes. */
	CHECK(sanitize("{\"a\":\"x\\u0000y\"}", 16, &b) == 1);
	CHECK_STR(b.data, "{\"a\":\"x\\ufffdy\"}");
	CHECK(sanitize("{\"a\":\"\\\\u0000\"}", 15, &b) == 0);	/* escaped backslash */
	/* Invalid UTF-8 bytes become U+FFFD, the rest of the text stays. */
	CHECK(sanitize("{\"a\":\"\xff\xfeok\"}", 12, &b) == 2);
	CHECK_STR(b.data, "{\"a\":\"\xef\xbf\xbd\xef\xbf\xbdok\"}");
	/* Overlong and surrogate encodings are invalid too. */
	CHECK(sanitize("\"\xc0\xaf\"", 4, &b) == 2);
	CHECK(sanitize("\"\xed\xa0\x80\"", 5, &b) == 3);
	/* A truncated sequence at the end. */
	CHECK(sanitize("\"ab\xe2\x82", 5, &b) == 2);
	/* Lone surrogate escapes; a proper pair is kept. */
	CHECK(sanitize("[\"\\ud800x\"]", 11, &b) == 1);
	CHECK_STR(b.data, "[\"\\ufffdx\"]");
	CHECK(sanitize("[\"\\ud83d\\ude00\"]", 16, &b) == 0);
	CHECK(sanitize("[\"\\udc00\"]", 10, &b) == 1);
	/* A raw NUL byte inside a string. */
	CHECK(sanitize("[\"a\0b\"]", 7, &b) == 1);
	CHECK((j = cJSON_Parse(b.data)) != NULL);
	CHECK_STR(cJSON_GetArrayItem(j, 0)->valuestring, "a\xef\xbf\xbd" "b");
	cJSON_Delete(j);
	/* After sanitising, cJSON keeps the text after the former NUL. */
	sanitize("{\"body\":\"before\\u0000after\"}", 28, &b);
	CHECK((j = cJSON_Parse(b.data)) != NULL);
	CHECK_STR(cJSON_GetObjectItem(j, "body")->valuestring,
	    "before\xef\xbf\xbd" "after");
	cJSON_Delete(j);
	sync_buf_release(&b);
}

int
main(void)
{
	test_cap();
	test_sanitize();
	return t_done("test_buf");
}
