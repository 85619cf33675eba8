/* test_jsonf -- fields of upstream JSON objects (lib/jsonf.c). */
#include <cjson/cJSON.h>

#include "internal.h"
#include "t.h"

/*
 * sync_json_copy() writes what sync_json_print() prints, escaped for COPY
 * as a field of that text would be (the row hash is taken over it).
 */
static void
copy_same(const char *json)
{
	struct sync_buf got = SYNC_BUF_INIT(0), want = SYNC_BUF_INIT(0);
	cJSON *j = cJSON_Parse(json);
	char *p, *c;

	CHECK(j != NULL);
	if (j == NULL)
		return;
	p = sync_json_print(j);
	CHECK(p != NULL);
	for (c = p; c != NULL && *c != '\0'; c++) {
		const char *e = *c == '\\' ? "\\\\" : *c == '\n' ? "\\n" :
		    *c == '\r' ? "\\r" : *c == '\t' ? "\\t" : NULL;

		CHECK(e != NULL ? sync_buf_adds(&want, e) == 0 :
		    sync_buf_add(&want, c, 1) == 0);
	}
	CHECK(sync_buf_adds(&got, "x") == 0);
	CHECK(sync_json_copy(&got, j) == 0);
	CHECK(got.len == want.len + 1);
	if (got.len != want.len + 1 || memcmp(got.data + 1, want.data, want.len) != 0)
		fprintf(stderr, "copy_same: %s\n  got  %s\n  want %s\n", json,
		    got.data + 1, want.data);
	else
		CHECK(memcmp(got.data + 1, want.data, want.len) == 0);
	cJSON_free(p);
	cJSON_Delete(j);
	sync_buf_release(&got);
	sync_buf_release(&want);
}

int
main(void)
{
	cJSON *o = cJSON_Parse("{\"s\":\"abc\",\"n\":654,\"f\":1.5,\"big\":1e300,"
	    "\"neg\":-3,\"nul\":null,\"t\":true,\"no\":false,\"arr\":[1],"
	    "\"obj\":{}}");
	char num[40];
	long bad = 0;

	CHECK(o != NULL);
	CHECK_STR(sync_json_str(o, "s", num, sizeof(num), &bad), "abc");
	CHECK_STR(sync_json_str(o, "n", num, sizeof(num), &bad), "654");
	CHECK_STR(sync_json_str(o, "neg", num, sizeof(num), &bad), "-3");
	CHECK_STR(sync_json_str(o, "f", num, sizeof(num), &bad), "1.5");
	CHECK_STR(sync_json_str(o, "big", num, sizeof(num), &bad), "1.0000000000000001e+300");
	CHECK(bad == 0);
	/* Absent and null are not bad; a number without a buffer and other types are. */
	CHECK(sync_json_str(o, "missing", num, sizeof(num), &bad) == NULL);
	CHECK(sync_json_str(o, "nul", num, sizeof(num), &bad) == NULL);
	CHECK(bad == 0);
	CHECK(sync_json_str(o, "n", NULL, 0, &bad) == NULL);
	CHECK(sync_json_str(o, "t", num, sizeof(num), &bad) == NULL);
	CHECK(sync_json_str(o, "arr", num, sizeof(num), &bad) == NULL);
	CHECK(sync_json_str(o, "obj", num, sizeof(num), &bad) == NULL);
	CHECK(bad == 4);
	CHECK(sync_json_bool(o, "t") == 1);
	CHECK(sync_json_bool(o, "no") == 0);
	CHECK(sync_json_bool(o, "n") == -1);
	CHECK(sync_json_bool(o, "missing") == -1);
	cJSON_Delete(o);

	/* Raw rows keep big whole numbers whole (cJSON alone prints ...990). */
	{
		cJSON *r = cJSON_Parse("{\"id\":9007199254740991,\"a\":[1e15,"
		    "-1234567890123456,{\"k\":4012345678901234}],\"f\":1.5,"
		    "\"s\":\"9007199254740991\"}");
		char *p = sync_json_print(r);

		CHECK(r != NULL && p != NULL);
		CHECK_STR(p, "{\"id\":9007199254740991,\"a\":[1000000000000000,"
		    "-1234567890123456,{\"k\":4012345678901234}],\"f\":1.5,"
		    "\"s\":\"9007199254740991\"}");
		/* The tree is as it was. */
		CHECK(cJSON_IsNumber(cJSON_GetObjectItem(r, "id")));
		CHECK(cJSON_GetObjectItem(r, "id")->valuestring == NULL);
		cJSON_free(p);
		cJSON_Delete(r);
	}
	copy_same("{\"id\":\"m1\",\"seq\":7,\"conversation_id\":\"c1\","
	    "\"sender_id\":null,\"from_me\":true,\"body\":\"quote \\\"1\\\" and a "
	    "newline\\nsecond\\ttab \\\\ back \\/ slash \\u00e9t\\u00e9 \\ud83d\\udc4b\","
	    "\"deleted\":false,\"media\":[{\"id\":\"media3\",\"size\":1003,"
	    "\"file_name\":null}],\"reply_to_id\":null}");
	copy_same("{\"c\":\"\\u0001\\u001f\\b\\f\\r\\u007f \\u00ff\",\"k\\\"ey\\n\":1}");
	copy_same("[0,-0,-0.0,1,-1,2147483647,2147483648,-2147483649,"
	    "999999999999999,-999999999999999,1e15,-1e15,9007199254740993,"
	    "1e19,-1e19,1e300,1.5,0.1,-2.5e-7,3.141592653589793,123456.789,1e-300]");
	copy_same("{\"a\":[],\"o\":{},\"n\":[[[]],{\"x\":{\"y\":[true,false,null]}}],"
	    "\"\":\"\"}");
	copy_same("\"just a string\"");
	copy_same("42");
	{
		/* A raw node (as exact_numbers() makes them) is copied as it is. */
		struct sync_buf b = SYNC_BUF_INIT(0);
		cJSON *r = cJSON_CreateRaw("{\"a\":\"x\\\\y\"}");

		CHECK(sync_json_copy(&b, r) == 0);
		CHECK_STR(b.data, "{\"a\":\"x\\\\\\\\y\"}");
		cJSON_Delete(r);
		sync_buf_release(&b);
	}
	return t_done("test_jsonf");
}
