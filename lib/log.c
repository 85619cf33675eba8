/*
 * log.c -- the one logging function: stderr ("prog: message") or syslog,
 * text or JSON lines.  Every line is redacted before it is written.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "internal.h"

static const char *prog = "msgsync";
static int	   level = LOG_WARNING;
static int	   use_syslog;
static int	   use_json;

void
sync_log_prog(const char *p)
{
	const char *s = strrchr(p, '/');

	prog = s != NULL ? s + 1 : p;
}

int
sync_log_env_json(void)
{
	const char *f = getenv("MSGSYNC_LOG_FORMAT");

	return f != NULL && strcmp(f, "json") == 0;
}

void
sync_log_format(int json)
{
	use_json = json;
}

int
sync_log_is_json(void)
{
	return use_json;
}

void
sync_log_setup(const struct sync_config *cfg, const struct sync_opts *o)
{
	int base = cfg != NULL ? cfg->log_level : LOG_INFO;

	if (o != NULL && o->prog != NULL)
		sync_log_prog(o->prog);
	/*
	 * -q: quiet on success.  Below warning nothing is printed, so that
	 * cron mails only what needs attention.  -v raises the level.
	 */
	if (o != NULL && o->quiet)
		level = base < LOG_WARNING ? base : LOG_WARNING;
	else
		level = base + (o != NULL ? o->verbose : 0);
	if (level > LOG_DEBUG)
		level = LOG_DEBUG;
	/* Before the configuration is read: as MSGSYNC_LOG_FORMAT says. */
	use_json = cfg != NULL ? cfg->log_json : sync_log_env_json();
	if (cfg != NULL && cfg->log_syslog && !use_syslog) {
		openlog(prog, LOG_PID, LOG_DAEMON);
		use_syslog = 1;
	}
}

static const char *
pri_name(int pri)
{
	switch (pri) {
	case LOG_EMERG: case LOG_ALERT: case LOG_CRIT: return "critical";
	case LOG_ERR:		return "error";
	case LOG_WARNING:	return "warning";
	case LOG_NOTICE:	return "notice";
	case LOG_INFO:		return "info";
	default:		return "debug";
	}
}

/*
 * Writes msg (redacted) to stderr, as text or as a JSON object: one line
 * of valid UTF-8 (an invalid byte from upstream becomes U+FFFD).
 */
static void
to_stderr(int pri, const char *msg)
{
	char ts[32], clean[3 * 2048 + 1];
	cJSON *o;
	char *s;

	if (!use_json) {
		fprintf(stderr, "%s: %s\n", prog, msg);
		return;
	}
	sync_time_format(time(NULL), ts, sizeof(ts));
	sync_utf8_copy(clean, sizeof(clean), msg);
	if ((o = cJSON_CreateObject()) == NULL)
		return;
	cJSON_AddStringToObject(o, "time", ts);
	cJSON_AddStringToObject(o, "prog", prog);
	cJSON_AddStringToObject(o, "level", pri_name(pri));
	cJSON_AddStringToObject(o, "message", clean);
	if ((s = cJSON_PrintUnformatted(o)) != NULL) {
		fprintf(stderr, "%s\n", s);
		cJSON_free(s);
	}
	cJSON_Delete(o);
}

void
sync_log(int pri, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	if (pri > level)
		return;
	va_start(ap, fmt);
	sync_vformat_redacted(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (use_syslog)
		syslog(pri, "%s", msg);
	else {
		sync_progress_log_begin();	/* the progress area steps aside */
		to_stderr(pri, msg);
		sync_progress_log_end();
	}
}

void
sync_log_line(int pri, const char *msg)
{
	to_stderr(pri, msg);
	fflush(stderr);
}

void
sync_log_failure(const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	sync_vformat_redacted(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (use_syslog)
		syslog(LOG_ERR, "%s", msg);
	sync_progress_log_begin();
	to_stderr(LOG_ERR, msg);
	sync_progress_log_end();
}

void
sync_log_usage(const char *msg, const char *usage)
{
	char line[2048];

	snprintf(line, sizeof(line), "%s", msg);
	sync_redact(line);
	if (use_json)
		to_stderr(LOG_ERR, line);
	else
		fprintf(stderr, "%s: %s\n%s", prog, line, usage);
}
