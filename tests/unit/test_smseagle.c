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
	    "http://127.0.0.1:9/api/v2/messages/inbox?id_from=1001&limit=2");
	CHECK_STR(sync_http_canned_url(t.ctx.http, 1),
	    "http://127.0.0.1:9/api/v2/messages/inbox?id_from=1003&limit=2");
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
	test_hostile_variants();
	free(inbox);
	free(errpage);
	return t_done("test_smseagle");
}
