/*
 * pass.c -- what full-sync, incr-sync and status-poll share: parse argv,
 * load the configuration, run one pass, print the result, exit with the
 * code of SPEC §3.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "pass.h"

/*
 * --login's questions, on the terminal (/dev/tty), else on stderr and
 * stdin; a secret answer is read without echo.
 */
static int
ask(void *arg, const char *question, int secret, char *buf, size_t n)
{
	FILE *in = fopen("/dev/tty", "r+"), *out;
	struct termios old, quiet;
	int restore = 0, ok;
	size_t len;

	(void)arg;
	out = in != NULL ? in : stderr;
	if (in == NULL)
		in = stdin;
	fputs(question, out);
	fflush(out);
	if (secret && tcgetattr(fileno(in), &old) == 0) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		restore = tcsetattr(fileno(in), TCSAFLUSH, &quiet) == 0;
	}
	ok = fgets(buf, (int)n, in) != NULL;
	if (!isatty(fileno(in)))
		fputc('\n', out);	/* the answer was not echoed */
	else if (restore) {
		tcsetattr(fileno(in), TCSAFLUSH, &old);
		fputc('\n', out);
	}
	if (in != stdin)
		fclose(in);
	if (!ok)
		return -1;
	len = strcspn(buf, "\r\n");
	buf[len] = '\0';
	return 0;
}

static int
finish(int code)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		sync_log(LOG_ERR, "stdout: %s", strerror(errno));
		return code != 0 ? code : 74;
	}
	return code;
}

/* Milliseconds since t0 (CLOCK_MONOTONIC). */
static long long
since_ms(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)(t.tv_sec - t0->tv_sec) * 1000 +
	    (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/*
 * An error that stopped the pass before any source ran: with --json, its
 * JSON object on stdout (SPEC §5).  Returns the exit code of code.
 */
static int
failed(const struct sync_opts *o, time_t started, const struct timespec *t0,
    const struct sync_err *err, char *const *errors, int code)
{
	char *out;

	if (o->json) {
		if ((out = sync_error_format(o->cmd, started, since_ms(t0), err,
		    errors)) == NULL)
			sync_log(LOG_ERR, "out of memory formatting the error");
		else
			fputs(out, stdout);
		free(out);
	}
	return finish(code);
}

int
pass_main(enum sync_cmd cmd, int argc, char **argv)
{
	struct sync_opts o;
	struct sync_config *cfg = NULL;
	struct sync_result res;
	struct sync_err err = { SYNC_OK, SYNC_ERR_NONE, "" };
	const char *name = argc > 0 ? argv[0] : "msgsync";
	time_t started = time(NULL);
	struct timespec t0;
	char *out, **errors = NULL;
	size_t i;
	int code;

#ifdef M_MXFAST
	/*
	 * A page's JSON is thousands of small blocks freed together: glibc's
	 * fastbins kept them apart, and every large free after that merged
	 * them all again (perf on make bench: malloc_consolidate and
	 * unlink_chunk, 13% of a first load's CPU).  Without fastbins, 12% less.
	 * A process setting: it belongs to the program, not to libsync.
	 */
	mallopt(M_MXFAST, 0);
#endif
	clock_gettime(CLOCK_MONOTONIC, &t0);
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
		sync_log_setup(NULL, &o);
		sync_log_usage(err.msg, sync_cli_usage(cmd));
		return failed(&o, started, &t0, &err, NULL, 64);
	}
	sync_log_setup(NULL, &o);
	if (sync_config_load_all(&o, &cfg, &errors, &err) != SYNC_OK) {
		/* Every error of the file, one line each. */
		for (i = 0; errors != NULL && errors[i] != NULL; i++)
			sync_log_failure("%s", errors[i]);
		if (errors == NULL || errors[0] == NULL)
			sync_log_failure("%s", err.msg);
		code = failed(&o, started, &t0, &err, errors,
		    sync_rc_exit_code(err.rc));
		sync_strv_free(errors);
		return code;
	}
	sync_log_setup(cfg, &o);
	if (o.login) {
		code = 0;
		if (sync_login_run(cfg, &o, ask, NULL, &err) != SYNC_OK) {
			sync_log(LOG_ERR, "%s", err.msg);
			code = sync_rc_exit_code(err.rc);
		} else if (!o.quiet)
			printf("%s: signed in\n", o.sources[0]);
		sync_config_free(cfg);
		return finish(code);
	}
	if (sync_pass_run(cfg, &o, &res, &err) != SYNC_OK) {
		sync_log_failure("%s", err.msg);	/* on stderr too (SPEC §2) */
		sync_config_free(cfg);
		return failed(&o, started, &t0, &err, NULL,
		    sync_rc_exit_code(err.rc));
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
