/* test_changes -- sync-changes' positions and command line (lib/changes.c, lib/cli.c). */
#include "internal.h"
#include "t.h"

static enum sync_rc
parse(struct sync_opts *o, const char *a1, const char *a2, const char *a3,
    const char *a4, struct sync_err *e)
{
	char *argv[6] = { (char *)"sync-changes", (char *)a1, (char *)a2,
	    (char *)a3, (char *)a4, NULL };
	int argc = 1 + (a1 != NULL) + (a2 != NULL) + (a3 != NULL) + (a4 != NULL);

	sync_err_clear(e);
	return sync_cli_parse(o, SYNC_CMD_CHANGES, argc, argv, e);
}

int
main(void)
{
	static const char *const good[] = { "0", "v1.0.0", "v1.954.4",
	    "v1.123456789012345678.1", "v1.1.123456789012345678" };
	static const char *const bad[] = { "", "00", "1", "v1", "v1.", "v1.1",
	    "v1.1.", "v1..1", "v1.a.2", "v1.1.2x", "v2.1.2", "V1.1.2", " v1.1.2",
	    "v1.1.2 ", "-1", "v1.-1.2", "v1.1234567890123456789.1",
	    "v1.1.1234567890123456789", "v1.1.2.3" };
	struct sync_opts o;
	struct sync_err e;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK(sync_changes_token_ok(good[i]));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!sync_changes_token_ok(bad[i]));

	CHECK(parse(&o, "--since", "0", NULL, NULL, &e) == SYNC_OK);
	CHECK_STR(o.since, "0");
	CHECK(o.limit == 1000 && o.ntables == 0 && o.nsources == 0);
	CHECK(parse(&o, "--since", "v1.9.12", "--limit", "5", &e) == SYNC_OK);
	CHECK(o.limit == 5);
	CHECK(parse(&o, "--since", "0", "--table", "message", &e) == SYNC_OK);
	CHECK(o.ntables == 1);
	CHECK_STR(o.tables[0], "message");
	CHECK(parse(&o, "--since", "0", "-s", "wa", &e) == SYNC_OK && o.nsources == 1);
	/* Errors name what is wrong. */
	CHECK(parse(&o, "--limit", "5", NULL, NULL, &e) == SYNC_EUSAGE);
	CHECK(strstr(e.msg, "--since") != NULL);
	CHECK(parse(&o, "--since", "v1.x.1", NULL, NULL, &e) == SYNC_EUSAGE);
	CHECK(strstr(e.msg, "'v1.x.1'") != NULL);
	CHECK(parse(&o, "--since", "0", "--table", "person", &e) == SYNC_EUSAGE);
	CHECK(strstr(e.msg, "'person'") != NULL);
	CHECK(parse(&o, "--since", "0", "--limit", "0", &e) == SYNC_EUSAGE);
	CHECK(parse(&o, "--since", "0", "--limit", "-3", &e) == SYNC_EUSAGE);
	CHECK(parse(&o, "--since", "0", "--limit", "2.5", &e) == SYNC_EUSAGE);
	CHECK(parse(&o, "--since", "0", "--restart", NULL, &e) == SYNC_EUSAGE);
	/* --since of full-sync is still a date, not a position. */
	sync_err_clear(&e);
	{
		char *argv[4] = { (char *)"full-sync", (char *)"--since",
		    (char *)"v1.1.1", NULL };

		CHECK(sync_cli_parse(&o, SYNC_CMD_FULL, 3, argv, &e) == SYNC_EUSAGE);
	}
	CHECK(strstr(sync_cli_usage(SYNC_CMD_CHANGES), "--since token") != NULL);
	CHECK(strcmp(sync_cmd_name(SYNC_CMD_CHANGES), "sync-changes") == 0);
	return t_done("test_changes");
}
