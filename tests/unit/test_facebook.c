/*
 * test_facebook -- the Facebook Graph connector's page reader over canned
 * pages (tests/fixtures/facebook/, and hostile variants of them).
 */
#include "canned.h"
#include "t.h"

#define FIX "tests/fixtures/facebook/"
#define CONF "sources = ( { name = \"fb\"; type = \"facebook\";\n" \
	"  url = \"http://127.0.0.1:9\"; token = \"fb-page-token\";\n" \
	"  page_id = \"104000000000001\"; } );\n"

/* A watermark older than every fixture (a first pass may have a window). */
#define OLD "2026-11-01T00:00:00Z|a"

static char *list1, *list2, *msgs, *nested;

static int
start(struct ct *t)
{
	int r = ct_start(t, CONF, NULL);

	CHECK(r == 0);
	return r == -1 ? -1 : 0;
}

/* Two listing pages, three conversations, two messages each. */
static void
test_walk(void)
{
	struct sync_err e;
	struct ct t;
	char *cursor = NULL;
	const char *u;
	size_t i;

	if (start(&t) == -1)
		return;
	ct_answer(&t, 200, NULL, list1);
	ct_answer(&t, 200, NULL, msgs);
	ct_answer(&t, 200, NULL, msgs);
	ct_answer(&t, 200, NULL, list2);
	ct_answer(&t, 200, NULL, msgs);
	CHECK(ct_walk(&t, "conversations", SYNC_MODE_INCR, OLD, 20, &cursor, &e) ==
	    SYNC_OK);
	if (t.bad[0] != '\0' || e.msg[0] != '\0')
		fprintf(stderr, "  %s %s\n", t.bad, e.msg);
	CHECK(t.bad[0] == '\0');
	CHECK(t.rows == 6);
	CHECK(sync_http_canned_asked(t.ctx.http) == 5);
	/* The newest conversation is the watermark. */
	CHECK(cursor != NULL && strstr(cursor, "t_1200000000000001") != NULL);
	u = sync_http_canned_url(t.ctx.http, 0);
	CHECK(u != NULL && strstr(u, "/v21.0/104000000000001/conversations?") !=
	    NULL && strstr(u, "access_token=fb-page-token") != NULL);
	u = sync_http_canned_url(t.ctx.http, 3);
	CHECK(u != NULL && strstr(u, "after=") != NULL);
	for (i = 1; i < 5; i++)
		if (i != 3) {
			u = sync_http_canned_url(t.ctx.http, i);
			CHECK(u != NULL && strstr(u, "/messages?") != NULL);
		}
	free(cursor);
	ct_close(&t);
}

/* Graph's errors: by error.code, whatever the HTTP status. */
static void
test_errors(void)
{
	static const struct {
		const char	*fixture;
		enum sync_rc	 rc;
		enum sync_errkind kind;
	} c[] = {
		{ FIX "error_app_rate_limit_code4.json", SYNC_ETEMP,
		    SYNC_ERR_RATE_LIMIT },
		{ FIX "error_invalid_token_code190.json", SYNC_EPERM, SYNC_ERR_AUTH },
	};
	struct sync_err e;
	struct ct t;
	size_t i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		char *body = ct_fixture(c[i].fixture);
		enum sync_rc rc;

		if (body == NULL || start(&t) == -1) {
			free(body);
			CHECK(!"fixture");
			return;
		}
		ct_answer(&t, 400, "x-app-usage: {\"call_count\":100}\n", body);
		rc = ct_walk(&t, "conversations", SYNC_MODE_INCR, NULL, 2, NULL, &e);
		CHECK(rc == c[i].rc && e.kind == c[i].kind);
		CHECK(strstr(e.msg, "fb-page-token") == NULL);
		CHECK(t.bad[0] == '\0');
		ct_close(&t);
		free(body);
	}
}

/*
 * An HTTP 429 is a rate limit whatever the body a gateway in front of the
 * Graph API sends (here one whose error.code is not a Graph code).
 */
static void
test_gateway_429(void)
{
	static const char body[] = "{\"error\":{\"code\":429,\"status\":"
	    "\"RESOURCE_EXHAUSTED\",\"message\":\"Quota exceeded\"}}";
	struct sync_err e;
	struct ct t;
	enum sync_rc rc;

	if (start(&t) == -1)
		return;
	ct_answer(&t, 429, "retry-after: 2\n", body);
	rc = ct_walk(&t, "conversations", SYNC_MODE_INCR, NULL, 2, NULL, &e);
	CHECK(rc == SYNC_ETEMP && e.kind == SYNC_ERR_RATE_LIMIT);
	CHECK(sync_http_last_wait(t.ctx.http) == 2);
	ct_close(&t);
}

/* Every business use case limit (80000-80014) is a rate limit. */
static void
test_buc_codes(void)
{
	static const long long codes[] = { 80001, 80004, 80008, 80014 };
	char body[160];
	struct sync_err e;
	struct ct t;
	size_t i;

	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		if (start(&t) == -1)
			return;
		snprintf(body, sizeof(body), "{\"error\":{\"message\":\"(#%lld) "
		    "There have been too many calls\",\"code\":%lld}}", codes[i],
		    codes[i]);
		ct_answer(&t, 400, NULL, body);
		CHECK(ct_walk(&t, "conversations", SYNC_MODE_INCR, NULL, 2, NULL,
		    &e) == SYNC_ETEMP && e.kind == SYNC_ERR_RATE_LIMIT);
		ct_close(&t);
	}
}

/*
 * A token that Graph echoes in its error message across the point where
 * the message is cut is masked whole, not left with its prefix.
 */
static void
test_echo_across_cut(void)
{
	struct sync_buf b = SYNC_BUF_INIT(0);
	struct sync_err e;
	struct ct t;
	enum sync_rc rc;
	int i;

	if (start(&t) == -1)
		return;
	sync_buf_adds(&b, "{\"error\":{\"code\":100,\"message\":\"");
	for (i = 0; i < 193; i++)
		sync_buf_adds(&b, "x");
	sync_buf_adds(&b, "fb-page-token is not valid here\"}}");
	ct_answer(&t, 400, NULL, b.data);
	rc = ct_walk(&t, "conversations", SYNC_MODE_INCR, NULL, 2, NULL, &e);
	CHECK(rc == SYNC_EDATA && e.kind == SYNC_ERR_PROTOCOL);
	CHECK(strstr(e.msg, "xfb") == NULL);
	CHECK(strstr(e.msg, "xxx***") != NULL);
	if (strstr(e.msg, "xxx***") == NULL)
		fprintf(stderr, "  %s\n", e.msg);
	sync_buf_release(&b);
	ct_close(&t);
}

/*
 * An empty id is no id (fuzz_facebook's rule): not for a conversation, a
 * message or a person; the row is skipped or the page fails as data.
 */
static void
test_empty_id(void)
{
	static const char list[] = "{\"data\":[{\"id\":\"\","
	    "\"updated_time\":\"2026-11-21T09:15:02+0000\"},{\"id\":\"t_1\","
	    "\"updated_time\":\"2026-11-21T09:15:01+0000\",\"participants\":"
	    "{\"data\":[{\"id\":\"\",\"name\":\"Nobody\"}]}}]}";
	static const char page[] = "{\"data\":[{\"id\":\"\","
	    "\"created_time\":\"2026-11-21T09:15:01+0000\",\"from\":"
	    "{\"id\":\"7\"},\"message\":\"x\"},{\"id\":\"m_1\","
	    "\"created_time\":\"2026-11-21T09:15:00+0000\",\"from\":"
	    "{\"id\":\"\"},\"message\":\"y\"}]}";
	struct sync_err e;
	struct ct t;
	enum sync_rc rc;

	if (start(&t) == -1)
		return;
	ct_answer(&t, 200, NULL, list);
	ct_answer(&t, 200, NULL, page);
	rc = ct_walk(&t, "conversations", SYNC_MODE_INCR, OLD, 5, NULL, &e);
	CHECK(t.bad[0] == '\0');
	if (t.bad[0] != '\0')
		fprintf(stderr, "  %s\n", t.bad);
	CHECK(rc == SYNC_OK ? t.rows == 1 && t.side_rows[1] == 1 : rc == SYNC_EDATA);
	ct_close(&t);
}

static void
test_hostile_variants(void)
{
	const char *pre[] = { NULL, NULL };
	struct sync_config *cfg;
	struct sync_err e;
	long runs, errors;

	CHECK(ct_load(CONF, &cfg, &e) == SYNC_OK);
	if (cfg == NULL)
		return;
	CHECK(ct_hostile(cfg, NULL, "conversations", SYNC_MODE_INCR, NULL, list2,
	    &runs, &errors) == 0);
	CHECK(runs > 100 && errors > 10);
	pre[0] = list2;
	CHECK(ct_hostile(cfg, pre, "conversations", SYNC_MODE_INCR, NULL, msgs,
	    &runs, &errors) == 0);
	CHECK(runs > 100);
	CHECK(ct_hostile(cfg, pre, "conversations", SYNC_MODE_FULL, NULL, nested,
	    &runs, &errors) == 0);
	CHECK(runs > 100);
	sync_config_free(cfg);
}

/* A messages page of the first listed conversation: three files. */
#define ATT_PAGE "{\"data\":[{\"id\":\"m_att1\"," \
	"\"created_time\":\"2026-11-21T09:15:02+0000\"," \
	"\"from\":{\"id\":\"6710000000000011\",\"name\":\"Alice\"}," \
	"\"message\":\"\",\"attachments\":{\"data\":[" \
	"{\"id\":\"1400000000000001\",\"mime_type\":\"image/jpeg\"," \
	"\"name\":\"a.jpg\",\"size\":81234,\"image_data\":{\"url\":" \
	"\"https://cdn.example/v/a.jpg?oe=6A000000&token=sekrit1\"}}," \
	"{\"name\":\"s.png\",\"image_data\":{\"url\":\"https://cdn.example/s.png\"," \
	"\"render_as_sticker\":true}}," \
	"{\"id\":\"1400000000000003\",\"mime_type\":\"audio/mpeg\",\"name\":" \
	"\"v.mp3\",\"file_url\":\"https://cdn.example/v.mp3?access_token=x\"}," \
	"{\"id\":\"1400000000000004\",\"video_data\":{\"url\":" \
	"\"https://cdn.example/v.mp4\"}}," \
	"{\"id\":\"1400000000000005\",\"generic_template\":{}}]}}]}"

/* Graph's attachments.data become the message's files (SPEC §9). */
static void
test_attachments(void)
{
	struct sync_stream st;
	struct sync_page pg;
	struct sync_err e;
	struct ct t;
	const char *a;

	if (start(&t) == -1)
		return;
	ct_answer(&t, 200, NULL, list1);
	ct_answer(&t, 200, NULL, ATT_PAGE);
	memset(&st, 0, sizeof(st));
	st.name = "conversations";
	st.mode = SYNC_MODE_INCR;
	st.first = 1;
	st.counts = &t.scounts;
	st.state.cursor = strdup(OLD);
	CHECK(ct_fetch(&t, &st, &pg, &e) == SYNC_OK);
	free(pg.cursor);
	free(pg.checkpoint);
	free(pg.fingerprint);
	pg.cursor = pg.checkpoint = pg.fingerprint = NULL;
	sync_page_release(&pg);
	st.first = 0;
	CHECK(ct_fetch(&t, &st, &pg, &e) == SYNC_OK);
	CHECK(pg.batch.nrows == 1);
	CHECK(pg.batch.natt == 5);
	a = pg.batch.att.data != NULL ? pg.batch.att.data : "";
	/* id, kind, mime, name, size, the link without its token, oe= expiry */
	CHECK(strstr(a, "\tm_att1\t1400000000000001\timage\timage/jpeg\ta.jpg\t"
	    "81234\thttps://cdn.example/v/a.jpg?oe=6A000000\t2026-") != NULL);
	CHECK(strstr(a, "sekrit1") == NULL);
	/* No id: its index; render_as_sticker: a sticker. */
	CHECK(strstr(a, "\tm_att1\t1\tsticker\t\\N\ts.png\t\\N\t"
	    "https://cdn.example/s.png\t") != NULL);
	CHECK(strstr(a, "\t1400000000000003\taudio\taudio/mpeg\t") != NULL);
	CHECK(strstr(a, "access_token") == NULL);
	CHECK(strstr(a, "\t1400000000000004\tvideo\t") != NULL);
	/* No link at all: no file there, ever. */
	CHECK(strstr(a, "\t1400000000000005\tfile\t") != NULL &&
	    strstr(a, "no file behind the attachment upstream\n") != NULL);
	if (pg.batch.natt != 5)
		fprintf(stderr, "  %s\n", a);
	sync_page_release(&pg);
	free(st.state.cursor);
	free(st.state.checkpoint);
	free(st.state.fingerprint);
	ct_close(&t);
}

/* Instagram keeps links only unless the source says otherwise. */
static void
test_instagram_links(void)
{
	static const char *const confs[] = {
	    "sources = ( { name = \"ig\"; type = \"facebook\"; token = \"token-12345\";\n"
	    "  page_id = \"1\"; platform = \"instagram\"; } );\n",
	    "sources = ( { name = \"ig\"; type = \"facebook\"; token = \"token-12345\";\n"
	    "  page_id = \"1\"; platform = \"instagram\"; media = \"download\"; } );\n",
	    "sources = ( { name = \"fb\"; type = \"facebook\"; token = \"token-12345\";\n"
	    "  page_id = \"1\"; } );\n",
	};
	static const enum sync_media want[] = { SYNC_MEDIA_LINK,
	    SYNC_MEDIA_DOWNLOAD, SYNC_MEDIA_DOWNLOAD };
	struct sync_config *cfg;
	struct sync_err e;
	size_t i;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (ct_load(confs[i], &cfg, &e) != SYNC_OK) {
			fprintf(stderr, "  %s\n", e.msg);
			CHECK(0);
			continue;
		}
		CHECK(cfg->nsources == 1 && cfg->sources[0].media == want[i]);
		sync_config_free(cfg);
	}
}

/* media-sync: a fresh read of the message gives the attachment's link. */
static void
test_media_refresh(void)
{
	struct sync_media_item it;
	struct sync_media_link l;
	struct sync_err e;
	struct ct t;
	const char *u;

	if (start(&t) == -1)
		return;
	memset(&it, 0, sizeof(it));
	it.message_id = "m_att1";
	it.external_id = "1400000000000001";
	it.size = -1;
	ct_answer(&t, 200, NULL, "{\"id\":\"m_att1\",\"attachments\":{\"data\":["
	    "{\"id\":\"1400000000000009\",\"file_url\":\"https://x/9\"},"
	    "{\"id\":\"1400000000000001\",\"image_data\":{\"url\":"
	    "\"https://cdn.example/a.jpg?oe=6A000000&token=fresh\"}}]}}");
	memset(&l, 0, sizeof(l));
	sync_err_clear(&e);
	CHECK(t.conn->media_refresh(&t.ctx, &it, &l, &e) == SYNC_OK);
	CHECK_STR(l.url, "https://cdn.example/a.jpg?oe=6A000000&token=fresh");
	CHECK_STR(l.expires_at, "2026-05-10T03:48:16Z");
	CHECK(l.unavailable[0] == '\0');
	u = sync_http_canned_url(t.ctx.http, 0);
	CHECK(u != NULL && strstr(u, "/v21.0/m_att1?fields=attachments") != NULL &&
	    strstr(u, "access_token=fb-page-token") != NULL);
	free(l.url);
	free(l.expires_at);

	/* The attachment is no longer on the message. */
	it.external_id = "1400000000000002";
	ct_answer(&t, 200, NULL, "{\"id\":\"m_att1\"}");
	memset(&l, 0, sizeof(l));
	sync_err_clear(&e);
	CHECK(t.conn->media_refresh(&t.ctx, &it, &l, &e) == SYNC_OK);
	CHECK(l.url == NULL && strstr(l.unavailable, "gone") != NULL);

	/* The message is gone. */
	ct_answer(&t, 400, NULL, "{\"error\":{\"message\":\"Unsupported get "
	    "request. Object with ID 'm_att1' does not exist\",\"type\":"
	    "\"GraphMethodException\",\"code\":100,\"error_subcode\":33}}");
	memset(&l, 0, sizeof(l));
	sync_err_clear(&e);
	CHECK(t.conn->media_refresh(&t.ctx, &it, &l, &e) == SYNC_OK);
	CHECK(l.url == NULL &&
	    strstr(l.unavailable, "the message is gone upstream") != NULL);

	/* A bad token is no verdict on the file: an auth error. */
	ct_answer(&t, 400, NULL, "{\"error\":{\"message\":\"Invalid OAuth "
	    "access token\",\"type\":\"OAuthException\",\"code\":190}}");
	memset(&l, 0, sizeof(l));
	sync_err_clear(&e);
	CHECK(t.conn->media_refresh(&t.ctx, &it, &l, &e) == SYNC_EPERM);
	CHECK(l.url == NULL && l.unavailable[0] == '\0');
	ct_close(&t);
}

int
main(void)
{
	list1 = ct_fixture(FIX "conversations_messenger_page1.json");
	list2 = ct_fixture(FIX "conversations_messenger_page2_last.json");
	msgs = ct_fixture(FIX "conversation_messages_edge_last_page.json");
	nested = ct_fixture(FIX "conversation_messages_nested_page1.json");
	if (list1 == NULL || list2 == NULL || msgs == NULL || nested == NULL)
		return 1;
	test_walk();
	test_errors();
	test_gateway_429();
	test_buc_codes();
	test_echo_across_cut();
	test_empty_id();
	test_hostile_variants();
	test_attachments();
	test_instagram_links();
	test_media_refresh();
	free(list1);
	free(list2);
	free(msgs);
	free(nested);
	return t_done("test_facebook");
}
