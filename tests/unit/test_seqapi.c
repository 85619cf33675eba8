/*
 * test_seqapi -- the seqapi connector's page reader over canned pages
 * (tests/fixtures/seqapi/, and hostile variants of them).
 */
#include "canned.h"
#include "t.h"

#define FIX "tests/fixtures/seqapi/"
#define CONF "sources = ( { name = \"wa\"; type = \"seqapi\";\n" \
	"  url = \"http://127.0.0.1:9\"; integration_id = \"i 1\";\n" \
	"  token = \"seqapi-token\"; page_size = { messages = 2; }; } );\n"

static char *status_json, *page1, *page2;

/* Opens a source with the status answer queued. */
static int
start(struct ct *t)
{
	int r = ct_start(t, CONF, status_json);

	CHECK(r == 0);
	return r == -1 ? -1 : 0;
}

static void
test_walk(void)
{
	struct sync_err e;
	struct ct t;
	char *cursor = NULL;

	if (start(&t) == -1)
		return;
	ct_answer(&t, 200, NULL, page1);
	ct_answer(&t, 200, NULL, page2);
	CHECK(ct_walk(&t, "messages", SYNC_MODE_INCR, NULL, 10, &cursor, &e) ==
	    SYNC_OK);
	CHECK(t.bad[0] == '\0');
	CHECK(t.rows == 3 && t.fetched == 3);
	CHECK_STR(cursor, "3");
	CHECK(sync_http_canned_asked(t.ctx.http) == 3);
	CHECK_STR(sync_http_canned_url(t.ctx.http, 0),
	    "http://127.0.0.1:9/sync/status/i%201");
	CHECK_STR(sync_http_canned_url(t.ctx.http, 1),
	    "http://127.0.0.1:9/sync/messages/i%201?since_seq=0&limit=2");
	CHECK_STR(sync_http_canned_url(t.ctx.http, 2),
	    "http://127.0.0.1:9/sync/messages/i%201?since_seq=2&limit=2");
	CHECK_STR(sync_http_canned_sent(t.ctx.http, "Authorization:"),
	    "Authorization: Bearer seqapi-token");
	free(cursor);
	ct_close(&t);
}

/* One page with body, from cursor "0"; returns the fetch's rc. */
static enum sync_rc
one(const char *body, struct ct *t, struct sync_page *pg, struct sync_err *e)
{
	struct sync_stream st;

	memset(&st, 0, sizeof(st));
	st.name = "messages";
	st.mode = SYNC_MODE_INCR;
	st.first = 1;
	st.counts = &t->scounts;
	ct_answer(t, 200, NULL, body);
	return ct_fetch(t, &st, pg, e);
}

static void
test_hostile_cases(void)
{
	static const struct {
		const char	*body;
		enum sync_rc	 rc;
		const char	*msg;	/* in the error, or NULL */
		long		 rows;
		long		 sanitized;	/* at least */
		int		 bad_row;	/* on_bad_row may fail it */
	} c[] = {
		{ "{\"messages\":[{\"id\":\"m1\",\"seq\":1", SYNC_EDATA,
		    "not valid JSON", 0, 0, 0 },
		{ "", SYNC_EDATA, "empty response body", 0, 0, 0 },
		{ "{\"messages\":[{\"id\":\"m1\",\"seq\":1e300}],\"latest_seq\":1,"
		    "\"has_more\":false}", SYNC_EDATA, "no valid 'seq'", 0, 0, 0 },
		{ "{\"messages\":[{\"id\":\"m1\",\"seq\":9007199254740993}],"
		    "\"has_more\":false}", SYNC_EDATA, "no valid 'seq'", 0, 0, 0 },
		{ "{\"messages\":[],\"latest_seq\":-1,\"has_more\":false}",
		    SYNC_EDATA, "'latest_seq' is not a sequence number", 0, 0, 0 },
		{ "{\"messages\":{},\"latest_seq\":1}", SYNC_EDATA,
		    "no 'messages' array", 0, 0, 0 },
		{ "[1,2]", SYNC_EDATA, "no 'messages' array", 0, 0, 0 },
		{ "{\"messages\":[],\"has_more\":\"yes\"}", SYNC_EDATA,
		    "'has_more' is not a boolean", 0, 0, 0 },
		{ "{\"messages\":[{\"id\":\"m1\",\"seq\":1,\"body\":\"a\\u0000b\","
		    "\"sent_at\":\"2026-11-20T10:00:00Z\"}],\"latest_seq\":1,"
		    "\"has_more\":false}", SYNC_OK, NULL, 1, 1, 0 },
		{ "{\"messages\":[{\"id\":\"m1\",\"seq\":1,\"body\":\"a\xff\xfe b\","
		    "\"sent_at\":\"2026-11-20T10:00:00Z\"}],\"latest_seq\":1,"
		    "\"has_more\":false}", SYNC_OK, NULL, 1, 1, 0 },
		{ "{\"messages\":[{\"id\":\"m1\",\"seq\":1,\"body\":\"\\ud800\"}],"
		    "\"latest_seq\":1,\"has_more\":false}", SYNC_OK, NULL, 1, 1, 0 },
		{ "{\"messages\":[{\"id\":\"m1\",\"seq\":1,\"body\":[[[[[[[[[[1]]]]]]]]]],"
		    "\"sent_at\":\"yesterday\",\"from_me\":\"no\"}],"
		    "\"latest_seq\":1,\"has_more\":false}", SYNC_OK, NULL, 1, 1, 1 },
	};
	struct sync_page pg;
	struct sync_err e;
	struct ct t;
	size_t i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		enum sync_rc rc;

		if (start(&t) == -1)
			return;
		rc = one(c[i].body, &t, &pg, &e);
		if (c[i].bad_row && rc == SYNC_EDATA)
			rc = SYNC_OK;		/* a bad row failed the page */
		CHECK(rc == c[i].rc);
		if (c[i].msg != NULL)
			CHECK(rc != SYNC_OK && strstr(e.msg, c[i].msg) != NULL);
		if (rc == SYNC_OK && pg.fetched > 0) {
			CHECK(pg.batch.nrows == c[i].rows);
			CHECK(pg.batch.sanitized >= c[i].sanitized);
		}
		if (rc != c[i].rc || t.bad[0] != '\0')
			fprintf(stderr, "  case %zu: rc %d, '%s' %s\n", i, (int)rc,
			    e.msg, t.bad);
		CHECK(t.bad[0] == '\0');
		sync_page_release(&pg);
		ct_close(&t);
	}
}

/* A raw NUL byte inside a string: the row is cut there, never stored with it. */
static void
test_nul_byte(void)
{
	static const char body[] = "{\"messages\":[{\"id\":\"m1\",\"seq\":1,"
	    "\"body\":\"a\0b\"}],\"latest_seq\":1,\"has_more\":false}";
	struct sync_stream st;
	struct sync_page pg;
	struct sync_err e;
	struct ct t;
	enum sync_rc rc;

	if (start(&t) == -1)
		return;
	sync_http_canned_add(t.ctx.http, 200, NULL, body, sizeof(body) - 1);
	memset(&st, 0, sizeof(st));
	st.name = "messages";
	st.first = 1;
	st.counts = &t.scounts;
	rc = ct_fetch(&t, &st, &pg, &e);
	CHECK(rc == SYNC_OK || e.msg[0] != '\0');
	CHECK(t.bad[0] == '\0');
	sync_page_release(&pg);
	ct_close(&t);
}

/*
 * An empty id is no id (fuzz_seqapi found rows stored under ""; every
 * such message of a source would land on one row): no row has one, in
 * any stream; the page skips the row or fails as data.
 */
static void
test_empty_id(void)
{
	static const char *const streams[] = { "messages", "conversations",
	    "contacts" };
	struct sync_buf b = SYNC_BUF_INIT(0);
	struct sync_err e;
	struct ct t;
	size_t i;

	for (i = 0; i < 3; i++) {
		enum sync_rc rc;

		if (start(&t) == -1)
			break;
		sync_buf_reset(&b);
		sync_buf_addf(&b, "{\"%s\":[{\"id\":\"\",\"seq\":1},"
		    "{\"id\":\"ok\",\"seq\":2}],\"latest_seq\":2,"
		    "\"has_more\":false}", streams[i]);
		ct_answer(&t, 200, NULL, b.data);
		rc = ct_walk(&t, streams[i], SYNC_MODE_INCR, NULL, 2, NULL, &e);
		CHECK(t.bad[0] == '\0');
		if (t.bad[0] != '\0')
			fprintf(stderr, "  %s: %s\n", streams[i], t.bad);
		CHECK(rc == SYNC_OK ? t.rows + t.side_rows[0] + t.side_rows[1] == 1 :
		    rc == SYNC_EDATA);
		ct_close(&t);
	}
	sync_buf_release(&b);
}

/* Every hostile variant of each fixture: an error or a storable page. */
static void
test_hostile_variants(void)
{
	const char *pre[] = { NULL, NULL };
	struct sync_config *cfg;
	struct sync_err e;
	long runs, errors;
	char *conv = ct_fixture(FIX "conversations_last.json");
	char *cont = ct_fixture(FIX "contacts_last.json");

	pre[0] = status_json;
	CHECK(ct_load(CONF, &cfg, &e) == SYNC_OK);
	if (cfg == NULL || conv == NULL || cont == NULL)
		goto out;
	CHECK(ct_hostile(cfg, pre, "messages", SYNC_MODE_INCR, NULL, page1, &runs,
	    &errors) == 0);
	CHECK(runs > 100 && errors > 10 && errors < runs);
	CHECK(ct_hostile(cfg, pre, "conversations", SYNC_MODE_FULL, NULL, conv,
	    &runs, &errors) == 0);
	CHECK(runs > 50);
	CHECK(ct_hostile(cfg, pre, "contacts", SYNC_MODE_INCR, NULL, cont, &runs,
	    &errors) == 0);
	CHECK(runs > 50);
	/* begin()'s own page. */
	CHECK(ct_hostile(cfg, NULL, "messages", SYNC_MODE_INCR, NULL, status_json,
	    &runs, &errors) == 0);
out:
	free(conv);
	free(cont);
	sync_config_free(cfg);
}

/*
 * A message's `media` become its attachments (SPEC §9): the media id,
 * the kind from the message's type (else the MIME type), and the link
 * without its token, also in the raw.
 */
static void
test_media(void)
{
	static const char page[] = "{\"messages\":[{\"id\":\"m1\",\"seq\":1,"
	    "\"type\":\"image\",\"media\":[{\"id\":\"med1\",\"mime_type\":"
	    "\"image/jpeg\",\"size\":1234,\"url\":\"http://f.test/files/med1?"
	    "expires=1900000000&token=sekrit-link-1\",\"file_name\":\"a.jpg\"},"
	    "{\"id\":77,\"mime_type\":\"video/mp4\",\"size\":null,\"url\":null,"
	    "\"file_name\":null},{\"mime_type\":\"x/y\"}]},{\"id\":\"m2\","
	    "\"seq\":2,\"type\":\"text\",\"media\":[{\"id\":\"med2\","
	    "\"mime_type\":\"audio/ogg\"}]}],\"latest_seq\":2,\"has_more\":false}";
	struct sync_page pg;
	struct sync_err e;
	struct ct t;
	const char *a, *c;

	if (start(&t) == -1)
		return;
	CHECK(one(page, &t, &pg, &e) == SYNC_OK);
	CHECK(t.bad[0] == '\0');
	CHECK(pg.batch.nrows == 2 && pg.batch.natt == 3);
	a = pg.batch.att.data != NULL ? pg.batch.att.data : "";
	c = pg.batch.copy.data != NULL ? pg.batch.copy.data : "";
	CHECK(strstr(a, "0\tm1\tmed1\timage\timage/jpeg\ta.jpg\t1234\t"
	    "http://f.test/files/med1?expires=1900000000\t2030-03-17T17:46:40Z\tt\t")
	    != NULL);
	CHECK(strstr(a, "0\tm1\t77\timage\tvideo/mp4\t\\N\t\\N\t\\N\t\\N\tf\t")
	    != NULL);
	CHECK(strstr(a, "1\tm2\tmed2\taudio\taudio/ogg\t") != NULL);
	CHECK(strstr(a, "sekrit") == NULL && strstr(c, "sekrit") == NULL);
	CHECK(pg.batch.sanitized >= 1);		/* the media without an id */
	sync_page_release(&pg);
	ct_close(&t);
}

/* media-sync's refresh: the message read again at its seq - 1, limit 1. */
static void
test_media_refresh(void)
{
	static const struct {
		const char	*answer;
		enum sync_rc	 rc;
		const char	*url;		/* the fresh link, or */
		const char	*msg;		/* in the error or unavailable */
	} c[] = {
		{ "{\"messages\":[{\"id\":\"m9\",\"seq\":41,\"media\":[{\"id\":"
		    "\"x\"},{\"id\":\"med9\",\"url\":\"http://f.test/f?token=t2\"}]}],"
		    "\"latest_seq\":41,\"has_more\":true}", SYNC_OK,
		    "http://f.test/f?token=t2", NULL },
		{ "{\"messages\":[{\"id\":\"m10\",\"seq\":42,\"media\":[]}],"
		    "\"latest_seq\":42,\"has_more\":true}", SYNC_EDATA, NULL,
		    "the message changed since its link was stored" },
		{ "{\"messages\":[],\"latest_seq\":40,\"has_more\":false}",
		    SYNC_EDATA, NULL, "the message changed since its link was stored" },
		{ "{\"messages\":[{\"id\":\"m9\",\"seq\":41,\"media\":[{\"id\":"
		    "\"x\"}]}],\"latest_seq\":41,\"has_more\":false}", SYNC_EDATA,
		    NULL, "the message changed since its link was stored" },
		{ "{\"messages\":[{\"id\":\"m9\",\"seq\":41,\"deleted\":true,"
		    "\"media\":[]}],\"latest_seq\":41,\"has_more\":false}", SYNC_OK,
		    NULL, "deleted" },
	};
	struct sync_media_item it;
	struct sync_media_link out;
	struct sync_err e;
	struct ct t;
	cJSON *raw = cJSON_Parse("{\"id\":\"m9\",\"seq\":41}");
	size_t i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		enum sync_rc rc;

		if (start(&t) == -1)
			break;
		memset(&it, 0, sizeof(it));
		memset(&out, 0, sizeof(out));
		it.message_id = "m9";
		it.external_id = "med9";
		it.raw = raw;
		it.size = -1;
		sync_err_clear(&e);
		ct_answer(&t, 200, NULL, c[i].answer);
		rc = t.conn->media_refresh(&t.ctx, &it, &out, &e);
		CHECK(rc == c[i].rc);
		CHECK_STR(sync_http_canned_url(t.ctx.http, 1),
		    "http://127.0.0.1:9/sync/messages/i%201?since_seq=40&limit=1");
		if (c[i].url != NULL)
			CHECK_STR(out.url, c[i].url);
		else
			CHECK(out.url == NULL);
		if (c[i].msg != NULL)
			CHECK(strstr(rc == SYNC_OK ? out.unavailable : e.msg,
			    c[i].msg) != NULL);
		free(out.url);
		free(out.expires_at);
		free(out.path);
		ct_close(&t);
	}
	/* media-sync's begin() asks nothing (no stream is read). */
	if (ct_open(&t, CONF, &e) == SYNC_OK) {
		t.opts.cmd = SYNC_CMD_MEDIA;
		CHECK(ct_begin(&t, &e) == SYNC_OK);
		CHECK(sync_http_canned_asked(t.ctx.http) == 0);
		ct_close(&t);
	}
	/* A row without its seq cannot be found again: no request. */
	if (start(&t) == 0) {
		memset(&it, 0, sizeof(it));
		memset(&out, 0, sizeof(out));
		it.message_id = "m9";
		it.external_id = "med9";
		sync_err_clear(&e);
		CHECK(t.conn->media_refresh(&t.ctx, &it, &out, &e) == SYNC_EDATA);
		CHECK(sync_http_canned_asked(t.ctx.http) == 1);
		ct_close(&t);
	}
	cJSON_Delete(raw);
}

int
main(void)
{
	status_json = ct_fixture(FIX "status.json");
	page1 = ct_fixture(FIX "messages_page1.json");
	page2 = ct_fixture(FIX "messages_page2_last.json");
	if (status_json == NULL || page1 == NULL || page2 == NULL)
		return 1;
	test_walk();
	test_hostile_cases();
	test_nul_byte();
	test_empty_id();
	test_media();
	test_media_refresh();
	test_hostile_variants();
	free(status_json);
	free(page1);
	free(page2);
	return t_done("test_seqapi");
}
