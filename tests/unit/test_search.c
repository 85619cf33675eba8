/*
 * test_search -- sync-search's command line (lib/cli.c) and the names of
 * text search configurations that may be embedded in SQL (lib/search.c).
 */
#include "internal.h"
#include "t.h"

static void
test_lang_ok(void)
{
	CHECK(sync_search_lang_ok("simple"));
	CHECK(sync_search_lang_ok("english"));
	CHECK(sync_search_lang_ok("pg_catalog.english"));
	CHECK(sync_search_lang_ok("my_cfg2"));
	CHECK(!sync_search_lang_ok(NULL));
	CHECK(!sync_search_lang_ok(""));
	CHECK(!sync_search_lang_ok("English"));
	CHECK(!sync_search_lang_ok("simple'::regconfig); DROP TABLE message; --"));
	CHECK(!sync_search_lang_ok("a b"));
	CHECK(!sync_search_lang_ok("a\"b"));
	CHECK(!sync_search_lang_ok(".english"));
	CHECK(!sync_search_lang_ok("english."));
	CHECK(sync_search_lang_ok(
	    "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc"));
	CHECK(!sync_search_lang_ok(
	    "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd"));
}

static enum sync_rc
parse(struct sync_opts *o, const char *a0, const char *a1, const char *a2,
    const char *a3, const char *a4)
{
	char *argv[6] = { "sync-search", (char *)a0, (char *)a1, (char *)a2,
	    (char *)a3, (char *)a4 };
	struct sync_err err = { SYNC_OK, SYNC_ERR_NONE, "" };
	int argc = 1;

	while (argc < 6 && argv[argc] != NULL)
		argc++;
	return sync_cli_parse(o, SYNC_CMD_SEARCH, argc, argv, &err);
}

static void
test_cli(void)
{
	struct sync_opts o;

	CHECK(parse(&o, "fox", NULL, NULL, NULL, NULL) == SYNC_OK);
	CHECK_STR(o.query, "fox");
	CHECK(o.limit == 20 && o.until_t == 0 && o.since == NULL &&
	    o.conversation == NULL);
	CHECK(parse(&o, "--limit", "5", "-j", "quick fox", NULL) == SYNC_OK);
	CHECK(o.limit == 5 && o.json);
	CHECK_STR(o.query, "quick fox");
	CHECK(parse(&o, "--conversation", "c1", "--since", "2026-11-22", "x") ==
	    SYNC_OK);
	CHECK_STR(o.conversation, "c1");
	CHECK(o.since_t == 1795305600);
	/* --until: a day reaches to its end, a time to the end of its second. */
	CHECK(parse(&o, "--until", "2026-11-22", "x", NULL, NULL) == SYNC_OK);
	CHECK(o.until_t == 1795305600 + 86400);
	CHECK(parse(&o, "--until", "2026-11-22T10:00:00Z", "x", NULL, NULL) ==
	    SYNC_OK);
	CHECK(o.until_t == 1795341600 + 1);
	CHECK(parse(&o, "-s", "a", "--source", "b", "x") == SYNC_OK);
	CHECK(o.nsources == 2);
	CHECK(parse(&o, "--", "-excluded", NULL, NULL, NULL) == SYNC_OK);
	CHECK_STR(o.query, "-excluded");

	CHECK(parse(&o, NULL, NULL, NULL, NULL, NULL) == SYNC_EUSAGE);
	CHECK(parse(&o, "a", "b", NULL, NULL, NULL) == SYNC_EUSAGE);
	CHECK(parse(&o, "--limit", "0", "x", NULL, NULL) == SYNC_EUSAGE);
	CHECK(parse(&o, "--limit", "10001", "x", NULL, NULL) == SYNC_EUSAGE);
	CHECK(parse(&o, "--limit", "1.5", "x", NULL, NULL) == SYNC_EUSAGE);
	CHECK(parse(&o, "--since", "soon", "x", NULL, NULL) == SYNC_EUSAGE);
	CHECK(parse(&o, "--until", "2026-02-30", "x", NULL, NULL) == SYNC_EUSAGE);
	/* Options of other commands are not sync-search's. */
	CHECK(parse(&o, "--restart", "x", NULL, NULL, NULL) == SYNC_EUSAGE);
	CHECK(parse(&o, "--check", "x", NULL, NULL, NULL) == SYNC_EUSAGE);
	CHECK(parse(&o, "-h", NULL, NULL, NULL, NULL) == SYNC_EHELP);
	CHECK(strstr(sync_cli_usage(SYNC_CMD_SEARCH), "usage: sync-search") != NULL);
	CHECK_STR(sync_cmd_name(SYNC_CMD_SEARCH), "sync-search");
}

int
main(void)
{
	test_lang_ok();
	test_cli();
	return t_done("test_search");
}
