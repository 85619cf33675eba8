/*
 * test_smseagle -- the SMSEagle connector's page reader over canned pages
 * (tests/fixtures/smseagle/, and hostile variants of them).
 */
#include "canned.h"
#include "t.h"

#define FIX "tests/fixtures/smseagle/"
#define CONF(extra) "sources = ( { name = \"sms\"; type = \"smseagle\";\n" \
	"  url = \"http://127.0.0.1:9/\"; token = \"eagle-token\";\n" \
	"  folders = [ \"inbox\", \"sent\", \"error\" ];" extra " } );\n"

static char *inbox, *errpage;

static int
start(struct ct *t, const char *conf)
{
	int r = ct_start(t, conf, NULL);

	CHECK(r == 0);
	return r == -1 ? -1 : 0;
}

static void
test_walk(void)
{
	struct sync_err e;
	struct ct t;
	char *cursor = NULL;
	const char *u;

	if (start(&t, CONF(" page_size = 2;")) == -1)
		return;
	ct_answer(&t, 200, NULL, inbox);
	ct_answer(&t, 404, NULL, "{\"message\":\"Resource(s) not found\"}");
	CHECK(ct_walk(&t, "inbox", SYNC_MODE_INCR, "1000", 10, &cursor, &e) ==
	    SYNC_OK);
	CHECK(t.bad[0] == '\0');
	CHECK(t.rows == 2 && t.fetched == 2);
	CHECK_STR(cursor, "1002");
	CHECK(sync_http_canned_asked(t.ctx.http) == 2);
	CHECK_STR(sync_http_canned_url(t.ctx.http, 0),
	    "http://127.0.0.1:9/api/v2/messages/inbox?id_from=1001&limit=2&"
	    "attachments=1");
	CHECK_STR(sync_http_canned_url(t.ctx.http, 1),
	    "http://127.0.0.1:9/api/v2/messages/inbox?id_from=1003&limit=2&"
	    "attachments=1");
	CHECK_STR(sync_http_canned_sent(t.ctx.http, "access-token:"),
	    "access-token: eagle-token");
	free(cursor);
	ct_close(&t);

	/* The token in the query: sent, never in what is logged. */
	if (start(&t, CONF(" token_in = \"query\";")) == -1)
		return;
	ct_answer(&t, 200, NULL, errpage);
	CHECK(ct_walk(&t, "error", SYNC_MODE_INCR, "1100", 10, &cursor, &e) ==
	    SYNC_OK);
	CHECK(t.rows == 1);
	CHECK_STR(cursor, "1197");
	u = sync_http_canned_url(t.ctx.http, 0);
	CHECK(u != NULL && strstr(u, "access_token=eagle-token") != NULL);
	CHECK(sync_http_canned_sent(t.ctx.http, "access-token:") == NULL);
	free(cursor);
	ct_close(&t);
}

static void
test_errors(void)
{
	static const struct {
		long		 status;
		const char	*body;
		enum sync_rc	 rc;
		const char	*msg;
	} c[] = {
		{ 401, "{\"message\":\"Invalid API key.\"}", SYNC_EPERM,
		    "credentials rejected" },
		{ 404, "{\"message\":\"Unknown folder\"}", SYNC_EUNAVAIL, "HTTP 404" },
		{ 404, "not json", SYNC_EUNAVAIL, "HTTP 404" },
		{ 200, "{\"id\":1}", SYNC_EDATA, "not an array of messages" },
		{ 200, "[{\"id\":1001,\"text\":", SYNC_EDATA, "not valid JSON" },
		{ 503, "busy", SYNC_EUNAVAIL, "HTTP 503" },
	};
	struct sync_err e;
	struct ct t;
	size_t i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		enum sync_rc rc;

		if (start(&t, CONF("")) == -1)
			return;
		ct_answer(&t, c[i].status, NULL, c[i].body);
		rc = ct_walk(&t, "inbox", SYNC_MODE_INCR, "5", 1, NULL, &e);
		CHECK(rc == c[i].rc && strstr(e.msg, c[i].msg) != NULL);
		if (rc != c[i].rc || strstr(e.msg, c[i].msg) == NULL)
			fprintf(stderr, "  case %zu: rc %d '%s'\n", i, (int)rc, e.msg);
		CHECK(t.bad[0] == '\0');
		ct_close(&t);
	}
}

/*
 * Rows without a usable id, huge ids, wrong types, NUL and bad UTF-8: the
 * usable row is stored, or (on_bad_row = fail) the page fails as data.
 */
static void
test_hostile_rows(void)
{
	static const char page[] = "[{\"id\":{}},{\"id\":\"x\"},{\"id\":-4},"
	    "{\"id\":1e300},{\"id\":9007199254740993},7,null,"
	    "{\"id\":\"1010\",\"number\":[1],\"text\":\"a\\u0000b\xff\","
	    "\"receive_date\":\"2025-13-45T99:99:99Z\",\"read\":\"yes\"}]";
	struct sync_err e;
	struct ct t;
	char *cursor = NULL;
	enum sync_rc rc;

	if (start(&t, CONF("")) == -1)
		return;
	ct_answer(&t, 200, NULL, page);
	rc = ct_walk(&t, "inbox", SYNC_MODE_INCR, "5", 1, &cursor, &e);
	CHECK(t.bad[0] == '\0');
	if (rc == SYNC_OK) {
		CHECK(t.fetched == 8 && t.rows == 1);
		CHECK_STR(cursor, "1010");
	} else
		CHECK(rc == SYNC_EDATA && strstr(e.msg, "inbox") != NULL);
	free(cursor);
	ct_close(&t);
}

/* status-poll: a pending message not in the sent items is in the errors. */
static void
test_poll(void)
{
	static const char *const ids[] = { "1197", "1300" };
	static const char *const folders[] = { "sent", NULL };
	struct sync_err e;
	struct ct t;
	char *body;
	size_t len;
	long found, i, broken = 0;
	enum sync_rc rc;
	const char *u;

	if (start(&t, CONF("")) == -1)
		return;
	ct_answer(&t, 404, NULL, "{\"message\":\"Resource(s) not found\"}");
	ct_answer(&t, 200, NULL, errpage);
	rc = ct_poll(&t, ids, folders, 2, &found, &e);
	CHECK(rc == SYNC_OK && found == 1);
	CHECK(t.bad[0] == '\0');
	u = sync_http_canned_url(t.ctx.http, 0);
	CHECK(u != NULL && strstr(u, "/messages/sent?id_from=1197&id_to=1300") !=
	    NULL);
	u = sync_http_canned_url(t.ctx.http, 1);
	CHECK(u != NULL && strstr(u, "/messages/error?") != NULL);
	ct_close(&t);

	/* Hostile answers to the lookup: an error, or rows that are theirs. */
	for (i = 0; ct_mutate(errpage, i, &body, &len) == 0; i++) {
		if (start(&t, CONF("")) == -1) {
			free(body);
			return;
		}
		ct_answer(&t, 200, NULL, "[]");
		sync_http_canned_add(t.ctx.http, 200, NULL, body, len);
		ct_poll(&t, ids, folders, 2, &found, &e);
		if (t.bad[0] != '\0') {
			fprintf(stderr, "  poll variant %ld: %s\n", i, t.bad);
			broken++;
		}
		ct_close(&t);
		free(body);
	}
	CHECK(broken == 0 && i > 100);
}

static void
test_hostile_variants(void)
{
	struct sync_config *cfg;
	struct sync_err e;
	long runs, errors;

	CHECK(ct_load(CONF(""), &cfg, &e) == SYNC_OK);
	if (cfg == NULL)
		return;
	CHECK(ct_hostile(cfg, NULL, "inbox", SYNC_MODE_INCR, "5", inbox, &runs,
	    &errors) == 0);
	CHECK(runs > 100 && errors > 10 && errors < runs);
	CHECK(ct_hostile(cfg, NULL, "error", SYNC_MODE_FULL, NULL, errpage, &runs,
	    &errors) == 0);
	CHECK(runs > 50);
	sync_config_free(cfg);
}

/* The attachment lines of a batch (COPY text), as one string. */
static const char *
att_text(const struct sync_page *pg)
{
	return pg->batch.att.data != NULL ? pg->batch.att.data : "";
}

/*
 * MMS parts (SPEC §9): each becomes an attachment with its bytes decoded,
 * external id its index; under media = "download" the stored raw keeps a
 * reference instead of the base64, never dropping what cannot be decoded.
 */
static void
test_mms(void)
{
	static const char page[] = "[{\"id\":7,\"number\":\"+48600\","
	    "\"text\":\"pic\",\"receive_date\":\"2026-11-20T10:00:00Z\","
	    "\"attachments\":[{\"name\":\"a.jpg\",\"content_type\":"
	    "\"image/jpeg\",\"content\":\"aGVs\nbG8=\"},{\"name\":\"b.txt\","
	    "\"content_type\":\"text/plain\",\"content\":\"!!not base64\"},"
	    "{\"name\":\"c.amr\",\"content_type\":\"audio/amr\",\"content\":"
	    "\"AAEC/w\"}]}]";
	static const char *const media[] = { "", " media = \"link\";" };
	struct sync_stream st;
	struct sync_page pg;
	struct sync_err e;
	struct sync_buf conf = SYNC_BUF_INIT(0);
	struct ct t;
	size_t i;

	for (i = 0; i < 2; i++) {
		const char *a, *c;

		sync_buf_reset(&conf);
		sync_buf_addf(&conf, "sources = ( { name = \"sms\"; type = "
		    "\"smseagle\"; url = \"http://127.0.0.1:9/\"; token = "
		    "\"eagle-token\"; folders = [ \"inbox\" ];%s } );\n", media[i]);
		if (start(&t, conf.data) == -1)
			break;
		ct_answer(&t, 200, NULL, page);
		memset(&st, 0, sizeof(st));
		st.name = "inbox";
		st.mode = SYNC_MODE_INCR;
		st.first = 1;
		st.counts = &t.scounts;
		st.state.cursor = (char *)"6";
		CHECK(ct_fetch(&t, &st, &pg, &e) == SYNC_OK);
		CHECK(t.bad[0] == '\0');
		CHECK(pg.batch.nrows == 1 && pg.batch.natt == 3);
		a = att_text(&pg);
		c = pg.batch.copy.data != NULL ? pg.batch.copy.data : "";
		/* "hello" and 00 01 02 ff, decoded; the bad one unavailable. */
		CHECK(strstr(a, "in:7\t0\timage\timage/jpeg\ta.jpg\t5\t") != NULL);
		CHECK(strstr(a, "\\\\x68656c6c6f\t\\N\n") != NULL);
		CHECK(strstr(a, "in:7\t1\ttext\ttext/plain\tb.txt\t\\N\t") != NULL);
		CHECK(strstr(a, "\t\\N\tits content is not valid base64 (a "
		    "character outside the base64 alphabet)\n") != NULL);
		CHECK(strstr(a, "in:7\t2\taudio\taudio/amr\tc.amr\t4\t") != NULL);
		CHECK(strstr(a, "\\\\x000102ff\t\\N\n") != NULL);
		/* The raw: references (download), or the content as sent. */
		if (i == 0) {
			CHECK(strstr(c, "aGVs") == NULL && strstr(c, "AAEC") == NULL);
			CHECK(strstr(c, "{\"msgsync_attachment\":\"0\",\"bytes\":5}") !=
			    NULL);
			CHECK(strstr(c, "{\"msgsync_attachment\":\"2\",\"bytes\":4}") !=
			    NULL);
		} else
			CHECK(strstr(c, "aGVs") != NULL && strstr(c, "AAEC/w") != NULL);
		CHECK(strstr(c, "!!not base64") != NULL);
		st.state.cursor = NULL;
		sync_page_release(&pg);
		ct_close(&t);
	}
	sync_buf_release(&conf);
}

int
main(void)
{
	inbox = ct_fixture(FIX "v2_inbox_page.constructed.json");
	errpage = ct_fixture(FIX "v2_error_folder_page.constructed.json");
	if (inbox == NULL || errpage == NULL)
		return 1;
	test_walk();
	test_errors();
	test_hostile_rows();
	test_poll();
	test_mms();
	test_hostile_variants();
	free(inbox);
	free(errpage);
	return t_done("test_smseagle");
}
