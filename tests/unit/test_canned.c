/*
 * test_canned -- the HTTP client's canned mode (http.c) and the harness
 * that the page-reader tests and the fuzz targets share (canned.h).
 */
#include "canned.h"
#include "t.h"

#define CONF "http = { max_body = 1024; };\n" \
	"sources = ( { name = \"wa\"; type = \"seqapi\";\n" \
	"  url = \"http://127.0.0.1:9\"; integration_id = \"i1\";\n" \
	"  token = \"canned-token\"; } );\n"

static void
test_answers(void)
{
	static const char text[] = "{\"a\":1}\n----\nHTTP 429\nRetry-After: 7\n"
	    "X-Two:  two \n\n{\"e\":2}\n----\nHTTP 204\n\n\n----\nplain";
	struct sync_http_resp r = { 0, SYNC_BUF_INIT(0) };
	struct sync_err e;
	struct ct t;

	if (ct_open(&t, CONF, &e) != SYNC_OK) {
		CHECK(!"ct_open");
		fprintf(stderr, "  %s\n", e.msg);
		return;
	}
	CHECK(ct_answers(&t, text, sizeof(text) - 1) == 0);
	/* The source's token, placed as seqapi declares it. */
	CHECK_STR(sync_http_canned_sent(t.ctx.http, "authorization:"),
	    "Authorization: Bearer canned-token");

	CHECK(sync_http_get(t.ctx.http, "http://h/1", &r, &e) == SYNC_OK);
	CHECK(r.status == 200 && r.body.len == 7);
	CHECK_STR(r.body.data, "{\"a\":1}");
	CHECK(sync_http_header(t.ctx.http, "retry-after") == NULL);

	sync_err_clear(&e);
	CHECK(sync_http_get(t.ctx.http, "http://h/2", &r, &e) == SYNC_ETEMP);
	CHECK(e.kind == SYNC_ERR_RATE_LIMIT && strstr(e.msg, "HTTP 429") != NULL);
	CHECK_STR(sync_http_header(t.ctx.http, "retry-after"), "7");
	CHECK(sync_http_last_wait(t.ctx.http) == 7);
	CHECK_STR(sync_http_header(t.ctx.http, "x-two"), "two ");
	CHECK(sync_http_header(t.ctx.http, "x-tw") == NULL);

	sync_err_clear(&e);
	CHECK(sync_http_get(t.ctx.http, "http://h/3", &r, &e) == SYNC_OK);
	CHECK(r.status == 204 && r.body.len == 0);
	CHECK(sync_http_get(t.ctx.http, "http://h/4", &r, &e) == SYNC_OK);
	CHECK_STR(r.body.data, "plain");

	/* None left: as an unreachable upstream. */
	sync_err_clear(&e);
	CHECK(sync_http_get(t.ctx.http, "http://h/5", &r, &e) == SYNC_EUNAVAIL);
	CHECK(e.kind == SYNC_ERR_NETWORK && strstr(e.msg, "http://h/5") != NULL);

	CHECK(sync_http_canned_asked(t.ctx.http) == 5);
	CHECK_STR(sync_http_canned_url(t.ctx.http, 0), "http://h/1");
	CHECK_STR(sync_http_canned_url(t.ctx.http, 4), "http://h/5");
	CHECK(sync_http_canned_url(t.ctx.http, 5) == NULL);
	CHECK(t.counts.api_calls == 5);
	sync_buf_release(&r.body);
	ct_close(&t);
}

static void
test_max_body(void)
{
	struct sync_http_resp r = { 0, SYNC_BUF_INIT(0) };
	char big[1025];
	struct sync_err e;
	struct ct t;

	memset(big, 'x', sizeof(big));
	if (ct_open(&t, CONF, &e) != SYNC_OK) {
		CHECK(!"ct_open");
		return;
	}
	CHECK(sync_http_canned_add(t.ctx.http, 200, NULL, big, 1024) == 0);
	CHECK(sync_http_canned_add(t.ctx.http, 200, NULL, big, 1025) == 0);
	CHECK(sync_http_get(t.ctx.http, "http://h/1", &r, &e) == SYNC_OK);
	CHECK(r.body.len == 1024);
	CHECK(sync_http_get(t.ctx.http, "http://h/2", &r, &e) == SYNC_EDATA);
	CHECK(strstr(e.msg, "max_body") != NULL);
	sync_buf_release(&r.body);
	ct_close(&t);
}

/* The page checks catch what the store would refuse. */
static void
test_checks(void)
{
	struct sync_batch b;
	struct sync_contact k;
	struct ct t;

	memset(&t, 0, sizeof(t));
	sync_batch_init(&b, SYNC_ENT_CONTACT);
	memset(&k, 0, sizeof(k));
	k.external_id = "k1";
	k.display_name = "Zażółć\tgęślą\njaźń";
	CHECK(sync_batch_add_contact(&b, &k) == 0);
	ct_check_batch(&t, &b, "contacts");
	CHECK(t.bad[0] == '\0');
	if (t.bad[0] != '\0')
		fprintf(stderr, "  %s\n", t.bad);
	b.copy.data[2] = (char)0xc3;		/* a lead byte alone */
	ct_check_batch(&t, &b, "contacts");
	CHECK(strstr(t.bad, "UTF-8") != NULL);
	sync_batch_release(&b);

	CHECK(ct_utf8((const unsigned char *)"\xed\xa0\x80", 3) == 0);
	CHECK(ct_utf8((const unsigned char *)"\xc0\xaf", 2) == 0);
	CHECK(ct_utf8((const unsigned char *)"\xf4\x90\x80\x80", 4) == 0);
	CHECK(ct_utf8((const unsigned char *)"\xf0\x9f\x98\x80", 4) == 1);
}

int
main(void)
{
	test_answers();
	test_max_body();
	test_checks();
	return t_done("test_canned");
}
