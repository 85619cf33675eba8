/*
 * pass.c -- what full-sync, incr-sync and status-poll share: parse argv,
 * load the configuration, run one pass, print the result, exit with the
 * code of SPEC §3.
 */
#include <stdio.h>
#include <stdlib.h>

#include "pass.h"

static int
finish(int code)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		perror("stdout");
		return code != 0 ? code : 74;
	}
	return code;
}

int
pass_main(enum sync_cmd cmd, int argc, char **argv)
{
	struct sync_opts o;
	struct sync_config *cfg = NULL;
	struct sync_result res;
	struct sync_err err = { SYNC_OK, SYNC_ERR_NONE, "" };
	const char *name = argc > 0 ? argv[0] : "msgsync";
	char *out;
	int code;

	switch (sync_cli_parse(&o, cmd, argc, argv, &err)) {
	case SYNC_OK:
		break;
	case SYNC_EHELP:
		if (o.version)
			printf("%s (msgsync) %s\n", name, SYNC_VERSION);
		else
			fputs(sync_cli_usage(cmd), stdout);
		return finish(0);
	default:
		fprintf(stderr, "%s: %s\n%s", name, err.msg, sync_cli_usage(cmd));
		return 64;
	}
	sync_log_setup(NULL, &o);
	if (sync_config_load(&o, &cfg, &err) != SYNC_OK) {
		sync_log(LOG_ERR, "%s", err.msg);
		return sync_rc_exit_code(err.rc);
	}
	sync_log_setup(cfg, &o);
	if (sync_pass_run(cfg, &o, &res, &err) != SYNC_OK) {
		sync_log(LOG_ERR, "%s", err.msg);
		sync_config_free(cfg);
		return sync_rc_exit_code(err.rc);
	}
	code = sync_result_exit_code(&res);
	/* -q: nothing on success; a failure is still reported. */
	if (o.json || !o.quiet || code != 0) {
		if ((out = sync_result_format(&res, o.json)) == NULL) {
			sync_log(LOG_ERR, "out of memory formatting the result");
			code = code != 0 ? code : 70;
		} else {
			if (o.json || !o.quiet)
				fputs(out, stdout);
			free(out);
		}
	}
	sync_result_release(&res);
	sync_config_free(cfg);
	return finish(code);
}
