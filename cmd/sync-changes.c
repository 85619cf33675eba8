/* sync-changes -- see sync-changes(1). */
#include <stdio.h>

#include "sync.h"

/* Writes one line of the feed to stdout. */
static int
put_line(void *arg, const char *line, size_t len)
{
	(void)arg;
	return fwrite(line, 1, len, stdout) == len ? 0 : -1;
}

int
main(int argc, char **argv)
{
	struct sync_opts o;
	struct sync_config *cfg = NULL;
	struct sync_err err = { SYNC_OK, SYNC_ERR_NONE, "" };
	char **errors = NULL;
	size_t i;
	int code = 0;

	switch (sync_cli_parse(&o, SYNC_CMD_CHANGES, argc, argv, &err)) {
	case SYNC_OK:
		break;
	case SYNC_EHELP:
		if (o.version)
			printf("sync-changes (msgsync) %s\n", SYNC_VERSION);
		else
			fputs(sync_cli_usage(SYNC_CMD_CHANGES), stdout);
		return fflush(stdout) == 0 ? 0 : 74;
	default:
		sync_log_setup(NULL, &o);
		sync_log_usage(err.msg, sync_cli_usage(SYNC_CMD_CHANGES));
		return 64;
	}
	sync_log_setup(NULL, &o);
	/* No upstream secret is read: a follower needs none. */
	if (sync_config_load_all(&o, &cfg, &errors, &err) == SYNC_OK) {
		sync_log_setup(cfg, &o);
		sync_changes_run(cfg, &o, put_line, NULL, &err);
	} else
		for (i = 0; errors != NULL && errors[i] != NULL; i++)
			sync_log(LOG_ERR, "%s", errors[i]);
	if (err.rc != SYNC_OK && !ferror(stdout)) {
		if (errors == NULL)
			sync_log(LOG_ERR, "%s", err.msg);
		code = sync_rc_exit_code(err.rc);
	}
	sync_strv_free(errors);
	sync_config_free(cfg);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		sync_log(LOG_ERR, "cannot write the change feed to stdout");
		return 74;
	}
	return code;
}
