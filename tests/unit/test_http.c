/* test_http -- URL building and checking (lib/http.c); no network. */
#include <stdlib.h>

#include "internal.h"
#include "t.h"

static void
test_build(void)
{
	const char *q[] = { "since_seq", "10", "limit", "a b&c", NULL };
	struct sync_err e;
	char *u = NULL, *esc;

	sync_err_clear(&e);
	CHECK(sync_url_build("https://h.example/base/", "/sync/messages/x", q, &u,
	    &e) == SYNC_OK);
	CHECK_STR(u, "https://h.example/base/sync/messages/x?since_seq=10&limit=a+b%26c");
	free(u);
	CHECK(sync_url_build("http://127.0.0.1:8080", "/sync/status/i", NULL, &u,
	    &e) == SYNC_OK);
	CHECK_STR(u, "http://127.0.0.1:8080/sync/status/i");
	free(u);
	esc = sync_url_escape("a/b c?");
	CHECK_STR(esc, "a%2Fb%20c%3F");
	free(esc);
}

static void
test_check(void)
{
	char why[200];

	CHECK(sync_url_check("https://gw.example", 0, why, sizeof(why)) == SYNC_OK);
	CHECK(sync_url_check("http://127.0.0.1:9", 0, why, sizeof(why)) == SYNC_OK);
	CHECK(sync_url_check("http://localhost/", 0, why, sizeof(why)) == SYNC_OK);
	CHECK(sync_url_check("http://[::1]:80/", 0, why, sizeof(why)) == SYNC_OK);
	CHECK(sync_url_check("http://gw.example", 0, why, sizeof(why)) == SYNC_ECONFIG);
	CHECK(strstr(why, "loopback") != NULL);
	CHECK(sync_url_check("http://127.0.0.1.evil.example", 0, why, sizeof(why)) ==
	    SYNC_ECONFIG);
	CHECK(sync_url_check("http://gw.example", 1, why, sizeof(why)) == SYNC_OK);
	CHECK(sync_url_check("ftp://gw.example", 1, why, sizeof(why)) == SYNC_ECONFIG);
	CHECK(sync_url_check("https://u:p@gw.example", 0, why, sizeof(why)) ==
	    SYNC_ECONFIG);
	CHECK(sync_url_check("not a url", 0, why, sizeof(why)) == SYNC_ECONFIG);
}

/*
 * The body excerpt of an error masks a secret the upstream echoes, also
 * JSON-escaped, and also where the excerpt's cut falls inside it.
 */
static void
test_excerpt(void)
{
	struct sync_http_resp r;
	struct sync_err e;
	char body[400];

	sync_secret_add("excerpt-secret-0123456789");
	sync_secret_add("tok\"en\\quoted-77");
	memset(&r, 0, sizeof(r));
	r.status = 500;
	memset(body, 'a', 150);
	snprintf(body + 150, sizeof(body) - 150, "excerpt-secret-0123456789 tail");
	r.body.data = body;
	r.body.len = strlen(body);
	sync_err_clear(&e);
	sync_http_status_error(&r, "/x", &e);
	CHECK(strstr(e.msg, "excerpt") == NULL);
	CHECK(strstr(e.msg, "HTTP 500 aaaa") != NULL);
	snprintf(body, sizeof(body), "{\"error\":\"bad token tok\\\"en\\\\quoted-77\"}");
	r.status = 401;
	r.body.len = strlen(body);
	sync_err_clear(&e);
	sync_http_status_error(&r, "/x", &e);
	CHECK_STR(e.msg, "'/x': credentials rejected: HTTP 401 {\"error\":\"bad token ***\"}");
	sync_secrets_clear();
}

int
main(void)
{
	test_build();
	test_check();
	test_excerpt();
	return t_done("test_http");
}
