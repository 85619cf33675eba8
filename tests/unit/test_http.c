/*
 * test_http -- URL building and checking, and where a source's
 * credentials travel (lib/http.c); no network.
 */
#include <stdlib.h>

#include "canned.h"
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

/* hex HMAC-SHA256 of "fb-T0KEN-abc" keyed with "app-s3cret-value" */
#define PROOF	"79f2b575725b67b6592ba5bca69a0a67899f47797f1231d812f4deb543abed45"

#define SRC(type, tok, more) "sources = ( { name = \"s\"; type = \"" type \
	"\";\n  url = \"http://127.0.0.1:9\"; token = \"" tok "\";\n  " \
	more " } );\n"

/*
 * One GET of url by a canned client of the first source of conf: the URL
 * sent must be sent, and the error (a 500) must name url and nothing of
 * the credentials; *hdr gets the header line sent that starts with
 * hprefix (NULL: none).
 */
static void
placed(const char *conf, const char *url, const char *sent, const char *hprefix,
    const char *hdr)
{
	struct sync_http_resp r = { 0, SYNC_BUF_INIT(0) };
	struct sync_config *cfg = NULL;
	struct sync_http *h = NULL;
	struct sync_err e;
	char want[512];
	const char *got;

	if (ct_load(conf, &cfg, &e) != SYNC_OK) {
		CHECK(!"ct_load");
		fprintf(stderr, "  %s\n", e.msg);
		return;
	}
	if ((h = sync_http_new_canned(cfg, &cfg->sources[0])) == NULL ||
	    sync_http_canned_add(h, 500, NULL, "oops", 4) == -1) {
		CHECK(!"canned");
		goto out;
	}
	sync_err_clear(&e);
	CHECK(sync_http_get(h, url, &r, &e) == SYNC_EUNAVAIL);
	got = sync_http_canned_url(h, 0);
	CHECK_STR(got, sent);
	snprintf(want, sizeof(want), "cannot fetch '%s': HTTP 500", url);
	CHECK(strstr(e.msg, want) != NULL);
	CHECK(strstr(e.msg, "access_token") == NULL);
	CHECK(strstr(e.msg, "appsecret_proof") == NULL);
	got = sync_http_canned_sent(h, hprefix);
	if (hdr == NULL)
		CHECK(got == NULL);
	else
		CHECK_STR(got, hdr);
	/* Errors made from the answer name the URL as given, too. */
	sync_err_clear(&e);
	sync_http_status_error(&r, url, &e);
	CHECK(strstr(e.msg, "access_token") == NULL);
out:
	sync_buf_release(&r.body);
	sync_http_free(h);
	sync_config_free(cfg);
}

/*
 * The engine places each connector's credentials as it declares them:
 * in a header, or in the query of the URL sent (URL-encoded), never in
 * the URL that errors and logs name.
 */
static void
test_auth(void)
{
	static const char u[] = "http://127.0.0.1:9/api/v2/messages/inbox?limit=2";

	placed(SRC("seqapi", "seq-token-1", "integration_id = \"i\";"),
	    "http://127.0.0.1:9/sync/status/i", "http://127.0.0.1:9/sync/status/i",
	    "Authorization:", "Authorization: Bearer seq-token-1");
	placed(SRC("unipile", "uni-key-123", "account_id = \"a\";"),
	    "http://127.0.0.1:9/api/v1/chats?limit=5",
	    "http://127.0.0.1:9/api/v1/chats?limit=5", "X-API-KEY:",
	    "X-API-KEY: uni-key-123");
	/* SMSEagle: a header by default, the query if token_in says so. */
	placed(SRC("smseagle", "eagle+tok/en=x&y", ""), u, u, "access-token:",
	    "access-token: eagle+tok/en=x&y");
	placed(SRC("smseagle", "eagle+tok/en=x&y", "token_in = \"header\";"), u, u,
	    "access-token:", "access-token: eagle+tok/en=x&y");
	placed(SRC("smseagle", "eagle+tok/en=x&y", "token_in = \"query\";"), u,
	    "http://127.0.0.1:9/api/v2/messages/inbox?limit=2"
	    "&access_token=eagle%2btok%2fen%3dx%26y", "access-token:", NULL);
	/* Graph: the token, and the proof when there is an app secret. */
	placed(SRC("facebook", "fb-tok+en/1=", "page_id = \"1\";"),
	    "http://127.0.0.1:9/v21.0/1/conversations?fields=id",
	    "http://127.0.0.1:9/v21.0/1/conversations?fields=id"
	    "&access_token=fb-tok%2ben%2f1%3d", "access_token", NULL);
	setenv("TEST_HTTP_APP_SECRET", "app-s3cret-value", 1);
	placed(SRC("facebook", "fb-T0KEN-abc", "page_id = \"1\"; "
	    "app_secret_env = \"TEST_HTTP_APP_SECRET\";"),
	    "http://127.0.0.1:9/v21.0/1", "http://127.0.0.1:9/v21.0/1"
	    "?access_token=fb-T0KEN-abc&appsecret_proof="
	    PROOF, "access_token", NULL);
	unsetenv("TEST_HTTP_APP_SECRET");
	sync_secrets_clear();
}

/* Every connector with a token says where it travels. */
static void
test_declared(void)
{
	char types[128], *t, *save = NULL;
	const struct sync_connector *c;

	snprintf(types, sizeof(types), "%s", sync_connector_types());
	for (t = strtok_r(types, ", ", &save); t != NULL;
	    t = strtok_r(NULL, ", ", &save)) {
		CHECK((c = sync_connector_find(t)) != NULL);
		if (c == NULL)
			continue;
		if (!(c->flags & SYNC_CONN_NO_TOKEN))
			CHECK(c->auth.header != NULL || c->auth.query != NULL);
		CHECK((c->proof != NULL) == (c->auth.proof_query != NULL));
		CHECK(c->auth.choice == NULL || (c->auth.header != NULL &&
		    c->auth.query != NULL));
	}
}

int
main(void)
{
	test_declared();
	test_auth();
	test_build();
	test_check();
	test_excerpt();
	return t_done("test_http");
}
