/* test_jsonf -- fields of upstream JSON objects (lib/jsonf.c). */
#include <cjson/cJSON.h>

#include "internal.h"
#include "t.h"

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
	return t_done("test_jsonf");
}
