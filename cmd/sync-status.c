/* sync-status -- see sync-status(1). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sync.h"

static struct timespec t0;

/* An error before any report: with --json, its JSON object (SPEC §5). */
static void
print_error(const struct sync_opts *o, time_t started, const struct sync_err *err,
    char *const *errors)
{
	struct timespec t;
	char *out;

	if (!o->json || o->check || o->prometheus)
		return;
	clock_gettime(CLOCK_MONOTONIC, &t);
	if ((out = sync_error_format(SYNC_CMD_STATUS, started,
	    (long long)(t.tv_sec - t0.tv_sec) * 1000 +
	    (t.tv_nsec - t0.tv_nsec) / 1000000, err, errors)) != NULL)
		fputs(out, stdout);
	free(out);
}

int
main(int argc, char **argv)
{
	struct sync_opts o;
	struct sync_config *cfg = NULL;
	struct sync_err err = { SYNC_OK, SYNC_ERR_NONE, "" };
	time_t started = time(NULL);
	char *out = NULL, **errors = NULL;
	size_t i;
	int code = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
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
		sync_log_setup(NULL, &o);
		sync_log_usage(err.msg, sync_cli_usage(SYNC_CMD_STATUS));
		print_error(&o, started, &err, NULL);
		if (fflush(stdout) != 0)
			return o.check ? 3 : 74;
		return o.check ? 3 : 64;
	}
	sync_log_setup(NULL, &o);
	/* No upstream secret is read: a monitoring user needs none. */
	if (sync_config_load_all(&o, &cfg, &errors, &err) == SYNC_OK) {
		sync_log_setup(cfg, &o);
		sync_status_report(cfg, &o, &out, &code, &err);
	} else
		for (i = 0; errors != NULL && errors[i] != NULL; i++)
			if (i > 0 || !o.check)
				sync_log(LOG_ERR, "%s", errors[i]);
	if (err.rc != SYNC_OK) {
		/* Monitoring convention: a check that cannot look is UNKNOWN. */
		for (i = 0; errors != NULL && errors[i] != NULL; i++)
			;
		if (o.check && i > 1)
			printf("MSGSYNC UNKNOWN - %s (and %zu more configuration "
			    "errors)\n", err.msg, i - 1);
		else if (o.check)
			printf("MSGSYNC UNKNOWN - %s\n", err.msg);
		else if (errors == NULL)
			sync_log(LOG_ERR, "%s", err.msg);
		print_error(&o, started, &err, errors);
		code = o.check ? 3 : sync_rc_exit_code(err.rc);
	} else if (!o.quiet || o.check || o.json || o.prometheus)
		fputs(out, stdout);
	free(out);
	sync_strv_free(errors);
	sync_config_free(cfg);
	if (fflush(stdout) != 0 || ferror(stdout))
		return o.check ? 3 : 74;
	return code;
}
