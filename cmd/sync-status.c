/* sync-status -- see sync-status(1). */
#include <stdio.h>
#include <stdlib.h>

#include "sync.h"

int
main(int argc, char **argv)
{
	struct sync_opts o;
	struct sync_config *cfg = NULL;
	struct sync_err err = { SYNC_OK, SYNC_ERR_NONE, "" };
	char *out = NULL;
	int code = 0;

	switch (sync_cli_parse(&o, SYNC_CMD_STATUS, argc, argv, &err)) {
	case SYNC_OK:
		break;
	case SYNC_EHELP:
		if (o.version)
			printf("sync-status (msgsync) %s\n", SYNC_VERSION);
		else
			fputs(sync_cli_usage(SYNC_CMD_STATUS), stdout);
		return fflush(stdout) == 0 ? 0 : 74;
	default:
		fprintf(stderr, "sync-status: %s\n%s", err.msg,
		    sync_cli_usage(SYNC_CMD_STATUS));
		return o.check ? 3 : 64;
	}
	sync_log_setup(NULL, &o);
	if (sync_config_load(&o, &cfg, &err) == SYNC_OK) {
		sync_log_setup(cfg, &o);
		sync_status_report(cfg, &o, &out, &code, &err);
	}
	if (err.rc != SYNC_OK) {
		/* Monitoring convention: a check that cannot look is UNKNOWN. */
		if (o.check)
			printf("MSGSYNC UNKNOWN - %s\n", err.msg);
		else
			sync_log(LOG_ERR, "%s", err.msg);
		code = o.check ? 3 : sync_rc_exit_code(err.rc);
	} else if (!o.quiet || o.check || o.json || o.prometheus)
		fputs(out, stdout);
	free(out);
	sync_config_free(cfg);
	if (fflush(stdout) != 0 || ferror(stdout))
		return o.check ? 3 : 74;
	return code;
}
