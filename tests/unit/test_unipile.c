/*
 * test_unipile -- the Unipile connector's page reader over canned pages
 * (tests/fixtures/unipile/, and hostile variants of them).
 */
#include "canned.h"
#include "t.h"

#define FIX "tests/fixtures/unipile/"
#define CONF "sources = ( { name = \"uni\"; type = \"unipile\";\n" \
	"  url = \"http://127.0.0.1:9\"; token = \"unipile-key\";\n" \
	"  account_id = \"acc 1\"; page_size = 5; } );\n"
/* A watermark older than every fixture (a first pass may have a window). */
#define OLD "2026-11-01T00:00:00Z|a"

static char *chats1, *chats2, *att, *msgs, *cmsgs;

static int
start(struct ct *t)
{
	int r = ct_start(t, CONF, NULL);

	CHECK(r == 0);
	return r == -1 ? -1 : 0;
}

static void
test_chats(void)
{
	struct sync_err e;
	struct ct t;
	char *cursor = NULL;
	const char *u;
	enum sync_rc rc;

	if (start(&t) == -1)
		return;
	ct_answer(&t, 200, NULL, chats1);
	ct_answer(&t, 200, NULL, att);
	ct_answer(&t, 200, NULL, att);
	ct_answer(&t, 200, NULL, chats2);
	ct_answer(&t, 200, NULL, att);
	ct_answer(&t, 200, NULL, att);
	rc = ct_walk(&t, "chats", SYNC_MODE_INCR, OLD, 20, &cursor, &e);
	CHECK(rc == SYNC_OK);
	if (rc != SYNC_OK || t.bad[0] != '\0')
		fprintf(stderr, "  %s %s\n", e.msg, t.bad);
	CHECK(t.bad[0] == '\0');
	/* Chats are conversations, their attendees contacts. */
	CHECK(t.rows == 0 && t.fetched == 4);
	CHECK(t.side_rows[1] == 4 && t.side_rows[0] >= 2);
	CHECK(sync_http_canned_asked(t.ctx.http) == 6);
	CHECK(cursor != NULL && strstr(cursor, "Kp2Rq8StUv4WxYz6Ab0CdE") != NULL);
	u = sync_http_canned_url(t.ctx.http, 0);
	CHECK(u != NULL && strncmp(u, "http://127.0.0.1:9/api/v1/chats?", 32) == 0 &&
	    strstr(u, "account_id=acc+1") != NULL);
	u = sync_http_canned_url(t.ctx.http, 1);
	CHECK(u != NULL && strstr(u, "/chats/Kp2Rq8StUv4WxYz6Ab0CdE/attendees") !=
	    NULL);
	CHECK_STR(sync_http_canned_sent(t.ctx.http, "X-API-KEY:"),
	    "X-API-KEY: unipile-key");
	free(cursor);
	ct_close(&t);
}

/*
 * An unknown chat type names its kind by account_type, lower-cased into a
 * small buffer: a long one is left out, not cut inside a UTF-8 character
 * (fuzz_unipile: invalid UTF-8 in the COPY text).
 */
static void
test_long_account_type(void)
{
	static const char page[] = "{\"object\":\"ChatList\",\"items\":[{"
	    "\"object\":\"Chat\",\"id\":\"c1\",\"account_id\":\"acc 1\","
	    "\"account_type\":\"WHATSA\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
	    "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\",\"name\":\"n\","
	    "\"type\":9,\"timestamp\":\"2026-11-20T10:00:00.000Z\","
	    "\"unread_count\":0}],\"cursor\":null}";
	struct sync_err e;
	struct ct t;
	enum sync_rc rc;

	if (start(&t) == -1)
		return;
	ct_answer(&t, 200, NULL, page);
	ct_answer(&t, 200, NULL, att);
	rc = ct_walk(&t, "chats", SYNC_MODE_INCR, OLD, 5, NULL, &e);
	CHECK(rc == SYNC_OK);
	if (rc != SYNC_OK || t.bad[0] != '\0')
		fprintf(stderr, "  %s %s\n", e.msg, t.bad);
	CHECK(t.bad[0] == '\0');
	CHECK(t.side_rows[1] == 1);
	ct_close(&t);
}

static void
test_messages(void)
{
	struct sync_err e;
	struct ct t;
	char *cursor = NULL;
	enum sync_rc rc;

	if (start(&t) == -1)
		return;
	ct_answer(&t, 200, NULL, msgs);
	rc = ct_walk(&t, "messages", SYNC_MODE_INCR, OLD, 20, &cursor, &e);
	CHECK(rc == SYNC_OK);
	if (rc != SYNC_OK || t.bad[0] != '\0')
		fprintf(stderr, "  %s %s\n", e.msg, t.bad);
	CHECK(t.bad[0] == '\0');
	CHECK(t.rows == 5 && t.fetched == 5);
	CHECK(cursor != NULL && strstr(cursor, "Ms7aBc8dEf9gHi0jKl1mNo") != NULL);
	free(cursor);
	ct_close(&t);
}

/*
 * Attachments (SPEC §9): one row each, kind by variant and flags, size
 * also as a string, url_expires_at in milliseconds, unavailable ones
 * saying so; media_refresh() names the attachment endpoint.
 */
static void
test_attachments(void)
{
	static const char page[] = "{\"object\":\"MessageList\",\"items\":[{"
	    "\"object\":\"Message\",\"id\":\"msg1\",\"chat_id\":\"c1\","
	    "\"provider_id\":\"p1\",\"timestamp\":\"2026-11-20T10:00:00.000Z\","
	    "\"is_sender\":0,\"text\":null,\"attachments\":[{\"id\":\"a/1\","
	    "\"type\":\"img\",\"unavailable\":false,\"file_size\":84211,"
	    "\"mimetype\":\"image/jpeg\",\"url\":\"http://127.0.0.1:9/files/a1?"
	    "token=lnk-secret\",\"url_expires_at\":1900000000000,\"sticker\":"
	    "false},{\"id\":\"a2\",\"type\":\"audio\",\"voice_note\":true,"
	    "\"unavailable\":true,\"file_size\":\"5000\"},{\"id\":\"a3\","
	    "\"type\":\"file\",\"unavailable\":false,\"file_name\":"
	    "\"inv.pdf\",\"mimetype\":\"application/pdf\"},{\"type\":\"img\"}]}],"
	    "\"cursor\":null}";
	struct sync_media_item it;
	struct sync_media_link out;
	struct sync_err e;
	struct ct t;
	const char *a;

	if (start(&t) == -1)
		return;
	ct_answer(&t, 200, NULL, page);
	memset(&t.scounts, 0, sizeof(t.scounts));
	{
		struct sync_stream st;
		struct sync_page pg;

		memset(&st, 0, sizeof(st));
		st.name = "messages";
		st.mode = SYNC_MODE_INCR;
		st.first = 1;
		st.counts = &t.scounts;
		st.state.cursor = (char *)OLD;
		CHECK(ct_fetch(&t, &st, &pg, &e) == SYNC_OK);
		CHECK(t.bad[0] == '\0');
		CHECK(pg.batch.nrows == 1 && pg.batch.natt == 3);
		a = pg.batch.att.data != NULL ? pg.batch.att.data : "";
		CHECK(strstr(a, "0\tmsg1\ta/1\timage\timage/jpeg\t\\N\t84211\t"
		    "http://127.0.0.1:9/files/a1\t2030-03-17T17:46:40Z\tt\t") != NULL);
		CHECK(strstr(a, "0\tmsg1\ta2\tvoice\t\\N\t\\N\t5000\t\\N\t\\N\tf"
		    "\t\\N\t\\N\tthe provider marks it unavailable\n") != NULL);
		CHECK(strstr(a, "0\tmsg1\ta3\tfile\tapplication/pdf\tinv.pdf\t\\N\t")
		    != NULL);
		CHECK(strstr(a, "lnk-secret") == NULL &&
		    strstr(pg.batch.copy.data, "lnk-secret") == NULL);
		sync_page_release(&pg);
	}
	memset(&it, 0, sizeof(it));
	memset(&out, 0, sizeof(out));
	it.message_id = "msg 1";
	it.external_id = "a/1";
	it.size = -1;
	sync_err_clear(&e);
	CHECK(t.conn->media_refresh(&t.ctx, &it, &out, &e) == SYNC_OK);
	CHECK_STR(out.url,
	    "http://127.0.0.1:9/api/v1/messages/msg%201/attachments/a%2f1");
	CHECK(sync_http_canned_asked(t.ctx.http) == 1);	/* no request */
	free(out.url);
	ct_close(&t);
}

static void
test_errors(void)
{
	static const struct {
		long		 status;
		const char	*fixture;
		enum sync_rc	 rc;
		enum sync_errkind kind;
	} c[] = {
		{ 429, FIX "error_429_too_many_requests.json", SYNC_ETEMP,
		    SYNC_ERR_RATE_LIMIT },
		{ 401, FIX "error_401_disconnected_account.json", SYNC_EPERM,
		    SYNC_ERR_AUTH },
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
		ct_answer(&t, c[i].status, "Retry-After: 3\n", body);
		rc = ct_walk(&t, "messages", SYNC_MODE_INCR, NULL, 2, NULL, &e);
		CHECK(rc == c[i].rc && e.kind == c[i].kind);
		if (rc != c[i].rc || e.kind != c[i].kind)
			fprintf(stderr, "  case %zu: rc %d kind %d: %s\n", i, (int)rc,
			    (int)e.kind, e.msg);
		CHECK(t.bad[0] == '\0');
		ct_close(&t);
		free(body);
	}
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
	CHECK(ct_hostile(cfg, NULL, "messages", SYNC_MODE_INCR, NULL, msgs, &runs,
	    &errors) == 0);
	CHECK(runs > 100 && errors > 10);
	CHECK(ct_hostile(cfg, NULL, "messages", SYNC_MODE_FULL, NULL, cmsgs, &runs,
	    &errors) == 0);
	CHECK(runs > 100);
	CHECK(ct_hostile(cfg, NULL, "chats", SYNC_MODE_INCR, NULL, chats2, &runs,
	    &errors) == 0);
	CHECK(runs > 100);
	pre[0] = chats2;
	CHECK(ct_hostile(cfg, pre, "chats", SYNC_MODE_INCR, NULL, att, &runs,
	    &errors) == 0);
	CHECK(runs > 50);
	sync_config_free(cfg);
}

int
main(void)
{
	chats1 = ct_fixture(FIX "chats_page1.json");
	chats2 = ct_fixture(FIX "chats_page2_last.json");
	att = ct_fixture(FIX "chat_attendees.json");
	msgs = ct_fixture(FIX "messages_all_after_page1.json");
	cmsgs = ct_fixture(FIX "chat_messages_page1.json");
	if (chats1 == NULL || chats2 == NULL || att == NULL || msgs == NULL ||
	    cmsgs == NULL)
		return 1;
	test_chats();
	test_long_account_type();
	test_messages();
	test_attachments();
	test_errors();
	test_hostile_variants();
	free(chats1);
	free(chats2);
	free(att);
	free(msgs);
	free(cmsgs);
	return t_done("test_unipile");
}
