/*
 * sync.h -- the public interface of libsync, the msgsync engine.
 *
 * The binaries in cmd/ include only this header.  A binary parses its
 * arguments with sync_cli_parse(), loads the configuration with
 * sync_config_load(), runs one pass with sync_pass_run() or
 * sync_status_report(), formats the result and maps it to an exit code.
 * The library never exits and never writes to stdout.
 */
#ifndef SYNC_H
#define SYNC_H

#include <stddef.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>

#define SYNC_VERSION "0.1.0"

/* Result of a library call.  Each value maps to one exit code (SPEC §3). */
enum sync_rc {
	SYNC_OK = 0,
	SYNC_EUSAGE,		/* bad command line: 64 */
	SYNC_EDATA,		/* upstream data not understood: 65 */
	SYNC_EUNAVAIL,		/* upstream unavailable after retries: 69 */
	SYNC_ETEMP,		/* database down, rate limited: 75 */
	SYNC_EPERM,		/* credentials rejected: 77 */
	SYNC_ECONFIG,		/* configuration error: 78 */
	SYNC_EINTR,		/* interrupted by a signal */
	SYNC_ENOMEM,		/* out of memory or another internal failure */
	SYNC_EHELP		/* --help or --version was asked for */
};

/* What went wrong, as reported in the JSON "error.kind". */
enum sync_errkind {
	SYNC_ERR_NONE = 0,
	SYNC_ERR_CONFIG,
	SYNC_ERR_AUTH,
	SYNC_ERR_NETWORK,
	SYNC_ERR_HTTP,
	SYNC_ERR_RATE_LIMIT,
	SYNC_ERR_PROTOCOL,
	SYNC_ERR_DATA,
	SYNC_ERR_DATABASE,
	SYNC_ERR_INTERRUPTED
};

struct sync_err {
	enum sync_rc	 rc;
	enum sync_errkind kind;
	char		 msg[512];
};

/* Keeps the first error only; returns rc so callers can return it. */
enum sync_rc	sync_err_set(struct sync_err *, enum sync_rc, enum sync_errkind,
		    const char *, ...) __attribute__((format(printf, 4, 5)));
void		sync_err_clear(struct sync_err *);
const char     *sync_errkind_name(enum sync_errkind);

enum sync_cmd {
	SYNC_CMD_FULL,
	SYNC_CMD_INCR,
	SYNC_CMD_POLL,
	SYNC_CMD_STATUS,
	SYNC_CMD_MEDIA,
	SYNC_CMD_SEARCH,
	SYNC_CMD_CHANGES
};

#define SYNC_MAX_SELECT 64

/* Command-line options of all four binaries; see sync_cli_parse(). */
struct sync_opts {
	enum sync_cmd	 cmd;
	const char	*prog;
	const char	*config_path;	/* NULL: $MSGSYNC_CONFIG or default */
	const char	*sources[SYNC_MAX_SELECT];
	size_t		 nsources;
	const char	*streams[SYNC_MAX_SELECT];
	size_t		 nstreams;
	int		 json;
	int		 quiet;
	int		 verbose;
	int		 restart;
	int		 dry_run;
	double		 max_runtime;	/* < 0: from the configuration */
	const char	*since;		/* as given */
	time_t		 since_t;	/* parsed, 0 if none */
	int		 check;
	int		 prometheus;
	long		 max_lag;
	long		 warn_lag;	/* default: half of max_lag */
	long		 max_failures;
	int		 version;	/* -V was given */
	int		 login;		/* full-sync --login */
	const char	*import;	/* full-sync --import FILE */
	int		 progress;	/* 1 --progress, -1 --no-progress, 0 auto */
	int		 prune;		/* full-sync --prune */
	long		 prune_window;	/* --prune-window days, 0: none */
	long long	 max_bytes;	/* media-sync --max-bytes, 0: none */
	/* sync-search (since_t is --since) */
	const char	*query;		/* QUERY, web-search syntax */
	const char	*conversation;	/* --conversation EXTERNAL_ID */
	time_t		 until_t;	/* --until, 0 if none */
	long		 limit;		/* --limit: 20 (sync-search), 1000 (sync-changes) */
	int		 tty;		/* stdout is a terminal: bold matches */
	/* sync-changes: --since is the token (since), and the tables */
	const char	*tables[SYNC_MAX_SELECT];	/* --table */
	size_t		 ntables;
};

/*
 * Parses argv for the binary cmd into *o (argv is borrowed: o points into
 * it).  Returns SYNC_EHELP when --help or --version was given (the text to
 * print is sync_cli_usage() or sync_cli_version()), SYNC_EUSAGE with a
 * message in err on bad usage.
 */
enum sync_rc	sync_cli_parse(struct sync_opts *, enum sync_cmd, int, char **,
		    struct sync_err *);
const char     *sync_cli_usage(enum sync_cmd);

struct sync_config;

/*
 * Loads and validates the configuration named by o->config_path (or the
 * default).  The caller owns *cfg on SYNC_OK and frees it with
 * sync_config_free().  Errors are SYNC_ECONFIG with "FILE:LINE: message".
 */
enum sync_rc	sync_config_load(const struct sync_opts *, struct sync_config **,
		    struct sync_err *);
/*
 * As sync_config_load(), reporting every error of the file, not only the
 * first: on failure *errors (when errors is not NULL) gets them all, one
 * "FILE:LINE: message" each, in the order found, the first being err's;
 * a NULL-terminated array the caller frees with sync_strv_free() (NULL
 * on success).
 *
 * Credentials (token, token_file, token_env and the connectors' secret
 * keys: api_hash_file, app_secret_file, ...) are read, and required, only
 * for the sources that may run: enabled ones, and disabled ones selected
 * with --source.  For sync-status (o->cmd) none is read at all, and no
 * secret file's mode is checked.  Every key is still checked for its name
 * and type.  The file's log.format is applied to the logger as soon as it
 * is read, so that the file's own errors come out in it.
 */
enum sync_rc	sync_config_load_all(const struct sync_opts *, struct sync_config **,
		    char ***errors, struct sync_err *);
void		sync_strv_free(char **);
void		sync_config_free(struct sync_config *);

/*
 * Sets up logging from the configuration (NULL: none yet, the format is
 * MSGSYNC_LOG_FORMAT's, "text" or "json") and the -q/-v flags.
 */
void		sync_log_setup(const struct sync_config *, const struct sync_opts *);

enum sync_status {
	SYNC_ST_OK,
	SYNC_ST_PARTIAL,
	SYNC_ST_FAILED,
	SYNC_ST_SKIPPED,
	SYNC_ST_INTERRUPTED
};

struct sync_counts {
	long long	 fetched;
	long long	 inserted;
	long long	 updated;
	long long	 unchanged;
	long long	 api_calls;
	long long	 retries;
	long long	 gaps;
	long long	 sanitized;
	long long	 outliers;	/* times beyond now + max_clock_skew */
	long long	 rejected;	/* rows quarantined (on_bad_row) */
	long long	 missing;	/* --prune: newly found missing */
	long long	 pruned;	/* --prune: confirmed deleted */
	/* since_seq streams' gaps (gaps.c) */
	long long	 gaps_healed;	/* closed: every position found */
	long long	 gaps_unrecoverable;	/* reported: the window passed */
	long long	 gaps_open;	/* still re-read (after the pass) */
};

/* Rows of another entity written along with a stream's pages (SPEC §5). */
struct sync_related {
	long long	 inserted;
	long long	 updated;
};

enum {
	SYNC_REL_CONTACTS,
	SYNC_REL_CONVERSATIONS,
	SYNC_REL_N
};

struct sync_stream_result {
	char		 name[32];
	char		*cursor_before;	/* owned, may be NULL */
	char		*cursor_after;	/* owned, may be NULL */
	char		*checkpoint;	/* owned: an unfinished full walk's */
	int		 gaps_kept;	/* reports the gaps_* counters */
	struct sync_counts c;
	int		 whole;		/* full-sync walked it whole, from its
					   beginning, in this pass */
};

struct sync_poll_counts {
	long long	 polled;
	long long	 updated;
	long long	 finalized;
	long long	 expired;
	long long	 still_pending;
	long long	 api_calls;
};

/* media-sync, per source (SPEC §9). */
struct sync_media_counts {
	long long	 downloaded;	/* attachments newly stored */
	long long	 bytes;		/* their bytes */
	long long	 deduplicated;	/* of them, content already in the store */
	long long	 refreshed;	/* links refreshed through the provider */
	long long	 unavailable;	/* found never to come back */
	long long	 failed;	/* given up (state failed) */
	long long	 still_pending;	/* left pending after the pass */
};

struct sync_source_result {
	const char	*name;		/* borrowed from the configuration */
	const char	*type;
	enum sync_status status;
	char		 reason[160];	/* for skipped and partial */
	struct sync_err	 err;
	struct sync_stream_result streams[16];
	size_t		 nstreams;
	struct sync_counts totals;	/* streams plus source-level calls */
	struct sync_related related[SYNC_REL_N];	/* contacts, conversations */
	struct sync_poll_counts poll;
	struct sync_media_counts media;
};

struct sync_result {
	enum sync_cmd	 cmd;
	enum sync_status status;
	time_t		 started_at;
	long long	 duration_ms;
	int		 signo;		/* signal that interrupted the pass */
	int		 dry_run;
	int		 prune;		/* full-sync --prune */
	struct sync_source_result *sources;	/* owned */
	size_t		 nsources;
	struct sync_err	 err;		/* after the sources: the identity
					   resolution's failure (top-level) */
};

/*
 * Runs one pass of o->cmd (full, incr or poll) over the selected sources.
 * Fills *res (the caller releases it with sync_result_release()) and
 * returns SYNC_OK when the pass ran at all, whatever the sources' fates;
 * the per-source outcome is in res.  Returns an error (with err) only when
 * no source could be attempted, e.g. an unknown --source name or a database
 * that cannot be used (then no source has run: the cause is reported once).
 */
enum sync_rc	sync_pass_run(const struct sync_config *, const struct sync_opts *,
		    struct sync_result *, struct sync_err *);
void		sync_result_release(struct sync_result *);

/* Formats res as JSON (json != 0) or as a short human summary; caller frees. */
char	       *sync_result_format(const struct sync_result *, int json);
/*
 * The JSON object (SPEC §5) of an error that stopped command cmd before any
 * source ran (usage, configuration, database): status "failed", err as
 * "error", every message of errors (or err's alone when NULL) in "errors",
 * no sources.  started_at and duration_ms are the command's.  Caller frees;
 * NULL on ENOMEM.
 */
char	       *sync_error_format(enum sync_cmd cmd, time_t started_at,
		    long long duration_ms, const struct sync_err *err,
		    char *const *errors);

/* Maps a pass result to its exit code (SPEC §3). */
int		sync_result_exit_code(const struct sync_result *);
/* Maps an error code to its exit code. */
int		sync_rc_exit_code(enum sync_rc);

/*
 * sync-status: reads the state of the configured sources and formats it as
 * text, JSON, a monitoring-plugin line (--check) or Prometheus text.  The
 * caller frees *out.  *exit_code is the code to exit with.
 */
enum sync_rc	sync_status_report(const struct sync_config *, const struct sync_opts *,
		    char **out, int *exit_code, struct sync_err *);

/*
 * sync-search: full-text search over the stored messages (SPEC §2),
 * through a read-only connection, best match first.  *out (the caller
 * frees it) gets one block of text per hit, or one JSON object per line
 * with o->json; "" when nothing matches.  *hits is their number.
 */
enum sync_rc	sync_search_run(const struct sync_config *, const struct sync_opts *,
		    char **out, long *hits, struct sync_err *);

/*
 * sync-changes (SPEC §2): streams the change feed after position o->since
 * (msgsync_changes() of migrations/008_changes.sql), one JSON line per
 * change, oldest first, then the line {"next":TOKEN,"has_more":BOOL};
 * each line, with its newline, is handed to emit as it arrives (the
 * library holds one row at a time).  emit returns 0, or -1 to stop (a
 * write failed: SYNC_EINTR).  Errors: SYNC_EUSAGE for a --source that is
 * not configured, database errors as for a pass.
 */
typedef int	(*sync_emit_fn)(void *arg, const char *line, size_t len);
enum sync_rc	sync_changes_run(const struct sync_config *, const struct sync_opts *,
		    sync_emit_fn emit, void *arg, struct sync_err *);

/*
 * Asks the operator a question (a login's phone number, code, password):
 * secret answers are not echoed.  Writes the answer (without its newline)
 * to buf; returns 0, or -1 when there is no answer (end of input).
 */
typedef int	(*sync_prompt_fn)(void *arg, const char *question, int secret,
		    char *buf, size_t n);

/*
 * full-sync --login: signs in the one selected source, asking through ask.
 * SYNC_OK when it is signed in; errors as for a pass (SYNC_EPERM when the
 * upstream refused the answers, SYNC_EUSAGE for a source that has no
 * login).
 */
enum sync_rc	sync_login_run(const struct sync_config *, const struct sync_opts *,
		    sync_prompt_fn ask, void *arg, struct sync_err *);

/* Logging: one function, syslog priorities (LOG_ERR ... LOG_DEBUG). */
void		sync_log(int, const char *, ...) __attribute__((format(printf, 2, 3)));
/*
 * A failure's summary line (LOG_ERR): also written on stderr when logs go
 * to syslog, so that cron mails every failure, even under -q (SPEC §2).
 */
void		sync_log_failure(const char *, ...)
		    __attribute__((format(printf, 1, 2)));
/*
 * A usage error: msg then the usage text on stderr (with JSON logs, msg
 * alone as one JSON line).  Call sync_log_setup(NULL, o) first.
 */
void		sync_log_usage(const char *msg, const char *usage);

#endif /* SYNC_H */
