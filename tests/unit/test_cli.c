/* test_cli -- command lines (lib/cli.c). */
#include "internal.h"
#include "t.h"

static enum sync_rc
parse(struct sync_opts *o, enum sync_cmd cmd, const char *a1, const char *a2,
    const char *a3, struct sync_err *e)
{
	char *argv[5] = { (char *)"prog", (char *)a1, (char *)a2, (char *)a3, NULL };
	int argc = 1 + (a1 != NULL) + (a2 != NULL) + (a3 != NULL);

	sync_err_clear(e);
	return sync_cli_parse(o, cmd, argc, argv, e);
}

int
main(void)
{
	struct sync_opts o;
	struct sync_err e;

	CHECK(parse(&o, SYNC_CMD_FULL, "-s", "wa", "--restart", &e) == SYNC_OK);
	CHECK(o.nsources == 1 && o.restart == 1 && o.max_runtime < 0);
	CHECK(parse(&o, SYNC_CMD_FULL, "--since", "2026-01-02", NULL, &e) == SYNC_OK);
	CHECK(o.since_t == 1767312000);
	CHECK(parse(&o, SYNC_CMD_FULL, "--since", "last week", NULL, &e) == SYNC_EUSAGE);
	CHECK(parse(&o, SYNC_CMD_INCR, "--restart", NULL, NULL, &e) == SYNC_EUSAGE);
	CHECK(strstr(e.msg, "--restart") != NULL);
	CHECK(parse(&o, SYNC_CMD_INCR, "--max-runtime", "2.5", "-q", &e) == SYNC_OK);
	CHECK(o.max_runtime == 2.5 && o.quiet == 1);
	CHECK(parse(&o, SYNC_CMD_INCR, "--max-runtime", "soon", NULL, &e) == SYNC_EUSAGE);
	CHECK(parse(&o, SYNC_CMD_INCR, "-c", NULL, NULL, &e) == SYNC_EUSAGE);
	CHECK(parse(&o, SYNC_CMD_INCR, "extra", NULL, NULL, &e) == SYNC_EUSAGE);
	CHECK(parse(&o, SYNC_CMD_POLL, "-h", NULL, NULL, &e) == SYNC_EHELP);
	CHECK(parse(&o, SYNC_CMD_POLL, "-V", NULL, NULL, &e) == SYNC_EHELP && o.version);
	CHECK(parse(&o, SYNC_CMD_STATUS, "--check", "--max-lag", "60", &e) == SYNC_OK);
	CHECK(o.check && o.max_lag == 60 && o.max_failures == 3 && o.warn_lag == 30);
	CHECK(parse(&o, SYNC_CMD_STATUS, "--check", "--warn-lag", "600", &e) == SYNC_OK);
	CHECK(o.max_lag == 3600 && o.warn_lag == 600);
	CHECK(parse(&o, SYNC_CMD_STATUS, "--check", "--warn-lag", "7200", &e) ==
	    SYNC_EUSAGE);
	CHECK(parse(&o, SYNC_CMD_STATUS, "--warn-lag", "60", NULL, &e) == SYNC_EUSAGE);
	CHECK(parse(&o, SYNC_CMD_STATUS, "--check", "--warn-lag", "0", &e) ==
	    SYNC_EUSAGE);
	CHECK(strstr(sync_cli_usage(SYNC_CMD_STATUS), "--warn-lag") != NULL);
	CHECK(parse(&o, SYNC_CMD_STATUS, "--max-lag", "60", NULL, &e) == SYNC_EUSAGE);
	CHECK(parse(&o, SYNC_CMD_STATUS, "--check", "--prometheus", NULL, &e) ==
	    SYNC_EUSAGE);
	CHECK(parse(&o, SYNC_CMD_STATUS, "--dry-run", NULL, NULL, &e) == SYNC_EUSAGE);
	/* --progress and --no-progress: the last one wins; not sync-status's. */
	CHECK(parse(&o, SYNC_CMD_FULL, "-q", NULL, NULL, &e) == SYNC_OK &&
	    o.progress == 0);
	CHECK(parse(&o, SYNC_CMD_INCR, "--progress", "-q", NULL, &e) == SYNC_OK &&
	    o.progress == 1);
	CHECK(parse(&o, SYNC_CMD_POLL, "--progress", "--no-progress", NULL, &e) ==
	    SYNC_OK && o.progress == -1);
	CHECK(parse(&o, SYNC_CMD_STATUS, "--progress", NULL, NULL, &e) == SYNC_EUSAGE);
	CHECK(strstr(sync_cli_usage(SYNC_CMD_POLL), "--no-progress") != NULL);
	CHECK(strstr(sync_cli_usage(SYNC_CMD_FULL), "--dry-run") != NULL);
	CHECK(strstr(sync_cli_usage(SYNC_CMD_INCR), "--dry-run") == NULL);
	return t_done("test_cli");
}
