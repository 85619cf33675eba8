/*
 * internal.h -- what crosses files inside lib/.  Not installed.
 */
#ifndef SYNC_INTERNAL_H
#define SYNC_INTERNAL_H

#include <signal.h>
#include <stdarg.h>
#include <syslog.h>

#include "connector.h"


/* ---- signals.c -------------------------------------------------------- */

void		sync_signals_install(void);

/* ---- names (cli.c, output.c) ---------------------------------------- */

const char     *sync_cmd_name(enum sync_cmd);
const char     *sync_status_name(enum sync_status);

/* ---- config.c --------------------------------------------------------- */

struct sync_config {
	char		*path;
	char		*conninfo;
	long		 http_timeout;
	long		 connect_timeout;
	long		 retries;
	double		 backoff;
	long long	 max_body;
	char		*ca_file;
	long		 batch_size;
	double		 max_runtime;
	long		 jobs;
	int		 log_level;
	int		 log_syslog;
	int		 log_json;
	struct sync_source_cfg *sources;
	size_t		 nsources;
};

/* ---- err.c ------------------------------------------------------------ */

/*
 * Formats into out (size bytes) with every secret masked before the text
 * is cut to size, so that a secret across the cut is masked whole.
 */
void		sync_vformat_redacted(char *out, size_t size, const char *fmt,
		    va_list);

/* ---- log.c ------------------------------------------------------------ */

void		sync_log_prog(const char *);

/* ---- http.c: the engine's side ---------------------------------------- */

/*
 * Creates the HTTP client of one source: a reused handle (keep-alive,
 * compression), timeouts, TLS trust from the source or the global
 * configuration.  Counters are added to *counts (which may be changed
 * with sync_http_set_counts()).  The caller frees it with sync_http_free().
 */
struct sync_http *sync_http_new(const struct sync_config *,
		    const struct sync_source_cfg *, struct sync_err *);
void		sync_http_free(struct sync_http *);
/*
 * Adds a request header line; -1 on ENOMEM.  A source's credentials are
 * placed by sync_http_new() as its connector declares (sync_auth).
 */
int		sync_http_add_header(struct sync_http *, const char *);
void		sync_http_set_counts(struct sync_http *, struct sync_counts *);
void		sync_http_set_deadline(struct sync_http *, double);
/*
 * Whether the last request failed because the deadline cut it (or left no
 * time for it): a clean stop, not an upstream failure.
 */
int		sync_http_cut(const struct sync_http *);
/* The wait (seconds) that the last rate-limit error asked for, or -1. */
double		sync_http_last_wait(const struct sync_http *);
void		sync_http_global(int);

/*
 * Tests only: a client that makes no request.  Each GET takes the next
 * answer given with sync_http_canned_add() -- its status as it is, no
 * retry (a 408, 429 or 5xx fails as after the last retry; the connector's
 * classifier runs as usual) -- and records the URL asked (as sent, with
 * the credentials of src, which may be NULL: none); with none left it
 * fails as an unreachable upstream would.  headers: "Name: value\n"
 * lines for sync_http_header(), or NULL.  Freed with sync_http_free().
 */
struct sync_http *sync_http_new_canned(const struct sync_config *,
		    const struct sync_source_cfg *);
/* Queues one answer (copied); -1 on ENOMEM. */
int		sync_http_canned_add(struct sync_http *, long status,
		    const char *headers, const void *body, size_t);
/* How many requests were made; the URL of request i (NULL past them). */
size_t		sync_http_canned_asked(const struct sync_http *);
const char     *sync_http_canned_url(const struct sync_http *, size_t);
/* The request header line that starts with prefix (any case), or NULL. */
const char     *sync_http_canned_sent(const struct sync_http *, const char *);
/* ---- db.c: the only user of libpq -------------------------------------- */

struct sync_db;

/*
 * Connects (applying migrations on first use, under an advisory lock) and
 * prepares the statements.  The caller frees it with sync_db_free().
 */
struct sync_db *sync_db_open(const struct sync_config *, struct sync_err *);
void		sync_db_free(struct sync_db *);
/*
 * Whether the connection can serve the next source of the pass: connected,
 * no transaction open, no source lock held.  If so, forgets what it cached
 * about the last source and returns 1; else 0 (the caller frees it).
 */
int		sync_db_reusable(struct sync_db *);
/*
 * Registers as secrets the password of a libpq conninfo (key=value or
 * URI, as libpq reads it) and PGPASSWORD's: config.c calls it at load, so
 * every error and log line masks them.  0, or -1 on ENOMEM.
 */
int		sync_db_conninfo_secrets(const char *);
/* Ensures the source row exists; *id gets its id. */
enum sync_rc	sync_db_source(struct sync_db *, const struct sync_source_cfg *, int *,
		    struct sync_err *);
/*
 * Tries lock `which` (the pass command) of a source: *got is 1 if this
 * session now holds it.
 */
/*
 * Records a pass over stream that stored nothing and left its cursor: its
 * last_sync_at, in one statement.  *touched: the stream has a stored
 * cursor, which *cur gets (the caller frees it); 0: nothing was done.
 */
enum sync_rc	sync_db_state_touch(struct sync_db *, int, const char *, char **,
		    int *, struct sync_err *);
enum sync_rc	sync_db_lock(struct sync_db *, int, int, int *, struct sync_err *);
enum sync_rc	sync_db_unlock(struct sync_db *, int, int, struct sync_err *);
/* *until gets next_allowed_at (0 if none or past). */
enum sync_rc	sync_db_next_allowed(struct sync_db *, int, time_t *, struct sync_err *);
enum sync_rc	sync_db_set_next_allowed(struct sync_db *, int, time_t, struct sync_err *);
/* Loads a stream's state; the caller releases it with sync_state_release(). */
enum sync_rc	sync_db_state_load(struct sync_db *, int, const char *, struct sync_state *,
		    struct sync_err *);
void		sync_state_release(struct sync_state *);

enum sync_rc	sync_db_begin(struct sync_db *, struct sync_err *);
enum sync_rc	sync_db_commit(struct sync_db *, struct sync_err *);
void		sync_db_rollback(struct sync_db *);

/*
 * Marks the messages with these external ids deleted upstream (inside a
 * transaction), keeping their rows; adds the ones newly marked to updated.
 */
enum sync_rc	sync_db_mark_deleted(struct sync_db *, int, char *const *ids, size_t,
		    struct sync_counts *, struct sync_err *);

/* Writes a batch (inside a transaction): adds to inserted/updated/unchanged. */
enum sync_rc	sync_db_apply(struct sync_db *, int, struct sync_batch *, struct sync_counts *,
		    struct sync_err *);

enum sync_state_how {
	SYNC_SAVE_INCR,		/* the cursor only */
	SYNC_SAVE_FULL,		/* cursor and full-walk checkpoint */
	SYNC_SAVE_FULL_START,	/* a full walk begins: checkpoint, started_at */
	SYNC_SAVE_FULL_DONE	/* a full walk ended: clear checkpoint */
};

/*
 * Reads a stream's stored cursor and fingerprint and locks its row until
 * the end of the transaction (a concurrent pass of the other kind may have
 * moved it).  The caller frees *cur and *fp.
 */
enum sync_rc	sync_db_state_cursor(struct sync_db *, int, const char *, char **cur,
		    char **fp, struct sync_err *);
/* Saves a stream's cursor/checkpoint (inside the batch's transaction). */
enum sync_rc	sync_db_state_save(struct sync_db *, int, const char *,
		    const struct sync_state *, enum sync_state_how, struct sync_err *);
/* Records a stream's outcome (own transaction): success or error. */
enum sync_rc	sync_db_stream_outcome(struct sync_db *, int, const char *,
		    const struct sync_err *, struct sync_err *);

/*
 * Loads up to max pending messages of source id that come after position
 * `after` (NULL: from the start) in expiry order.  The caller releases the
 * list with sync_pending_release().
 */
enum sync_rc	sync_db_pending_load(struct sync_db *, int, const char *after, size_t max,
		    struct sync_pending_list *, struct sync_err *);
void		sync_pending_release(struct sync_pending_list *);
/*
 * Claims the loaded messages (inside a transaction): locks those that no
 * other pass has changed since they were loaded, and sets their `claimed`.
 * The others were settled meanwhile, with newer data than the poll's.
 */
enum sync_rc	sync_db_pending_claim(struct sync_db *, int, struct sync_pending_list *,
		    struct sync_err *);
/*
 * Settles the claimed messages (inside a transaction): a final one leaves
 * tracking, an expired one leaves it marked 'expired', the others are
 * marked as polled.  Adds to finalized/expired/still_pending.
 */
enum sync_rc	sync_db_pending_settle(struct sync_db *, int,
		    const struct sync_pending_list *, struct sync_poll_counts *,
		    struct sync_err *);

/* A row that could not be stored (SPEC §7.9), as sync_page_reject() keeps it. */
struct sync_reject {
	char		*position;	/* NULL: the page's, filled by the engine */
	char		*reason;	/* "field 'id': an object" */
	char		*raw;		/* the row as received, JSON text */
};

/* Frees a page's rejections and resolutions (batch.c). */
/* Frees everything a page holds and empties it (a zeroed page is empty). */
void		sync_page_release(struct sync_page *);

/*
 * cJSON_PrintUnformatted() of j, but whole numbers from 10^15 up keep all
 * their digits (raw rows hold big ids).  j is changed during the call and
 * restored.  The caller frees the text with cJSON_free(); NULL on ENOMEM.
 */
char	       *sync_json_print(const struct cJSON *);

/* Adds the positions of the stream's unresolved rejected rows to *open. */
enum sync_rc	sync_db_rejected_open(struct sync_db *, int, const char *stream,
		    struct sync_strmap *open, struct sync_err *);
/*
 * Records a rejected row (inside the page's transaction): the same one,
 * unresolved, seen again bumps times_seen and last_seen_at.
 */
enum sync_rc	sync_db_reject(struct sync_db *, int, const char *stream,
		    const struct sync_reject *, struct sync_err *);
/* Resolves the unresolved rejected rows read at position (inside a transaction). */
enum sync_rc	sync_db_rejected_resolve(struct sync_db *, int, const char *stream,
		    const char *position, struct sync_err *);

/* sync_run rows: start (marks abandoned runs), finish. */
enum sync_rc	sync_db_run_start(struct sync_db *, int, const char *, long long *,
		    struct sync_err *);
enum sync_rc	sync_db_run_finish(struct sync_db *, long long, const struct sync_source_result *,
		    struct sync_err *);

/* One query returning rows of text: for sync-status.  NULL-safe helpers. */
struct sync_rows;
enum sync_rc	sync_db_query(struct sync_db *, const char *sql, int nparams,
		    const char *const *params, struct sync_rows **, struct sync_err *);
int		sync_rows_count(const struct sync_rows *);
/* Value at (row, col), or NULL for SQL NULL. */
const char     *sync_rows_get(const struct sync_rows *, int, int);
void		sync_rows_free(struct sync_rows *);

/* ---- registry.c: the connectors this build knows ---------------------- */

extern const struct sync_connector sync_seqapi_connector;
extern const struct sync_connector sync_smseagle_connector;
extern const struct sync_connector sync_facebook_connector;
extern const struct sync_connector sync_unipile_connector;
extern const struct sync_connector sync_telegram_connector;

const struct sync_connector *sync_connector_find(const char *);
/* "seqapi, smseagle, ...": the types this build knows. */
const char     *sync_connector_types(void);

/* ---- migrations (generated) -------------------------------------------- */

struct sync_migration {
	int		 version;
	const char	*name;
	const char	*sql;
};

extern const struct sync_migration sync_migrations[];
extern const size_t sync_nmigrations;

#endif /* SYNC_INTERNAL_H */
