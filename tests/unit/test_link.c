/* test_link -- credentials out of provider links, their expiry (lib/link.c). */
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "internal.h"
#include "t.h"

static void
test_clean(void)
{
	long long exp;
	int stripped;
	char *s;

	s = sync_link_clean("https://cdn.example/f/1.jpg?oe=6A1B2C3D&token=abc&w=2",
	    &stripped, &exp);
	CHECK_STR(s, "https://cdn.example/f/1.jpg?oe=6A1B2C3D&w=2");
	CHECK(stripped == 1 && exp == 0x6A1B2C3D);
	free(s);
	s = sync_link_clean("https://x.example/a?access_token=zz", &stripped, &exp);
	CHECK_STR(s, "https://x.example/a");
	CHECK(stripped == 1 && exp == -1);
	free(s);
	s = sync_link_clean("https://x.example/a?Token=zz#frag", &stripped, NULL);
	CHECK_STR(s, "https://x.example/a#frag");
	CHECK(stripped == 1);
	free(s);
	s = sync_link_clean("https://x.example/a?expires=1790000000000&n=1", &stripped,
	    &exp);
	CHECK_STR(s, "https://x.example/a?expires=1790000000000&n=1");
	CHECK(stripped == 0 && exp == 1790000000);
	free(s);
	/* A configured secret, under any name. */
	CHECK(sync_secret_add("Sup3r-S3cret-Value") == 0);
	s = sync_link_clean("http://127.0.0.1/m?a=1&sess=Sup3r-S3cret-Value&b=2",
	    &stripped, NULL);
	CHECK_STR(s, "http://127.0.0.1/m?a=1&b=2");
	CHECK(stripped == 1);
	free(s);
	s = sync_link_clean("http://127.0.0.1/plain", &stripped, NULL);
	CHECK_STR(s, "http://127.0.0.1/plain");
	CHECK(stripped == 0);
	free(s);
	sync_secrets_clear();
}

static void
test_scrub(void)
{
	struct sync_buf b = SYNC_BUF_INIT(0);
	char out[128];

	CHECK(sync_buf_adds(&b, "x\t{\"url\":\"https://h/f?token=T1&oe=AB\",\"u2\":"
	    "\"http://h/g?a=1\",\"t\":\"see https://h/x?access_token=Q now\"}") == 0);
	CHECK(sync_link_scrub(&b, 2) == 2);
	CHECK_STR(b.data, "x\t{\"url\":\"https://h/f?oe=AB\",\"u2\":\"http://h/g?a=1\","
	    "\"t\":\"see https://h/x now\"}");
	sync_buf_release(&b);
	sync_link_safe("https://h/f?token=T1", out, sizeof(out));
	CHECK_STR(out, "https://h/f?...");
}

static void
test_batch_attachments(void)
{
	struct sync_batch b;
	struct sync_attachment a[2];
	struct sync_message m;
	cJSON *raw = cJSON_Parse("{\"media\":[{\"url\":\"https://h/f?token=T\"}]}");

	memset(a, 0, sizeof(a));
	memset(&m, 0, sizeof(m));
	a[0].external_id = "med1";
	a[0].kind = "image";
	a[0].size = 3;
	a[0].url = "https://h/f?token=T&expires=1790000000";
	a[1].external_id = "0";
	a[1].data = "\x01\xff";
	a[1].len = 2;
	m.external_id = "m1";
	m.raw = raw;
	m.att = a;
	m.natt = 2;
	sync_batch_init(&b, SYNC_ENT_MESSAGE);
	CHECK(sync_batch_add_message(&b, &m) == 0);
	CHECK(b.natt == 2);
	CHECK(strstr(b.copy.data, "token") == NULL);
	CHECK(strstr(b.att.data, "token") == NULL);
	CHECK(strstr(b.att.data, "0\tm1\tmed1\timage\t\\N\t\\N\t3\thttps://h/f?"
	    "expires=1790000000\t2026-09-21T14:13:20Z\tt\t\\N\t\\N\t\\N\n") != NULL);
	CHECK(strstr(b.att.data, "0\tm1\t0\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\tf\t\\N\t"
	    "\\\\x01ff\t\\N\n") != NULL);
	sync_batch_release(&b);
	cJSON_Delete(raw);
}

int
main(void)
{
	test_clean();
	test_scrub();
	test_batch_attachments();
	return t_done("test_link");
}
