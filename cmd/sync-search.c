/* sync-search -- see sync-search(1). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "sync.h"

int
main(int argc, char **argv)
{
	struct sync_opts o;
	struct sync_config *cfg = NULL;
	struct sync_err err = { SYNC_OK, SYNC_ERR_NONE, "" };
	char *out = NULL;
	long hits = 0;
	int code = 0;

	switch (sync_cli_parse(&o, SYNC_CMD_SEARCH, argc, argv, &err)) {
	case SYNC_OK:
		break;
	case SYNC_EHELP:
		if (o.version)
			printf("sync-search (msgsync) %s\n", SYNC_VERSION);
		else
			fputs(sync_cli_usage(SYNC_CMD_SEARCH), stdout);
		return fflush(stdout) == 0 ? 0 : 74;
	default:
		sync_log_setup(NULL, &o);
		sync_log_usage(err.msg, sync_cli_usage(SYNC_CMD_SEARCH));
		return 64;
	}
	sync_log_setup(NULL, &o);
	o.tty = !o.json && isatty(STDOUT_FILENO);
	if (sync_config_load(&o, &cfg, &err) == SYNC_OK) {
		sync_log_setup(cfg, &o);
		sync_search_run(cfg, &o, &out, &hits, &err);
	}
	if (err.rc != SYNC_OK) {
		sync_log(LOG_ERR, "%s", err.msg);
		code = sync_rc_exit_code(err.rc);
	} else if (hits == 0 && !o.json)
		sync_log(LOG_NOTICE, "no message matches");
	else
		fputs(out, stdout);
	free(out);
	sync_config_free(cfg);
	if (fflush(stdout) != 0 || ferror(stdout))
		return 74;
	return code;
}
