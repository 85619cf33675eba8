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
/* SIGUSR1 arrived: progress.c prints a status line per running stream. */
extern volatile sig_atomic_t sync_info_signal;

/* ---- progress.c: the live progress display (SPEC §2) ----------------- */

struct sync_progress;

/* Decides from o and stderr whether and how progress is shown. */
void		sync_progress_setup(const struct sync_opts *);
/* Erases the display at the end of a pass; nothing is shown after it. */
void		sync_progress_end(void);
/*
 * A running stream's line (NULL on ENOMEM: every call accepts NULL).
 * Closing it prints its last line (--progress without a terminal):
 * complete says whether the stream got to its end.
 */
struct sync_progress *sync_progress_open(const char *source, const char *stream);
void		sync_progress_close(struct sync_progress *, int complete);
/*
 * At a page boundary: adds items fetched and stored, redraws at most
 * every 0.1 s, and answers a pending SIGUSR1.
 */
void		sync_progress_add(struct sync_progress *, long long fetched,
		    long long stored);
/* log.c, around every line written to stderr: the display steps aside. */
void		sync_progress_log_begin(void);
void		sync_progress_log_end(void);

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
	/* media = { ... } (SPEC §4, §9) */
	char		*media_store;	/* "dir" or "database" */
	char		*media_dir;
	long long	 media_max_bytes;
	long		 default_calling_code;	/* identity: 0 none */
	char		*search_language;	/* search: text search configuration */
	struct sync_source_cfg *sources;
	size_t		 nsources;
};

/* ---- phone.c, identity.c: one person across sources (SPEC §6) ------- */

struct sync_db;

/*
 * Normalises the phone number in (any written form, a WhatsApp id, tel:)
 * to E.164, "+<digits>", into out (n >= 17 bytes): national numbers with
 * default_cc (0: none, they are not normalisable).  0, or -1 when in is
 * not a phone number it can read (phone.c says which forms and limits).
 */
int		sync_phone_e164(const char *in, long default_cc, char *out, size_t n);
/*
 * The calling code batch.c normalises contact phones with (the engine
 * sets it from identity.default_calling_code before a pass; 0: none).
 */
void		sync_batch_calling_code(long);
/*
 * The identity resolution at the end of a pass (identity.c): the persons
 * of the contacts changed since the last one, of those named by
 * person_override rows added, changed or removed, or of all contacts when
 * identity.default_calling_code changed.  One transaction over db (the
 * pass's, borrowed; NULL or one that cannot serve: a connection of its
 * own); an error leaves the store as it was.
 */
enum sync_rc	sync_identity_resolve(const struct sync_config *, struct sync_db *,
		    struct sync_err *);

/*
 * Every -s/--source of o names a source of cfg, or SYNC_EUSAGE naming the
 * one that does not (config.c).
 */
enum sync_rc	sync_config_check_sources(const struct sync_config *,
		    const struct sync_opts *, struct sync_err *);

/* ---- media.c: media-sync (SPEC §9) ------------------------------------ */

struct sync_db;

/* Starts a media-sync pass: its --max-bytes budget, shared by its sources. */
void		sync_media_pass_begin(const struct sync_opts *);
/*
 * media-sync's work for the source id (its connector begun in ctx): its
 * pending attachments, soonest expiry first, into the store, until none
 * is left, the deadline (monotonic, 0: none) or the pass's byte budget
 * stops it (*stopped), or a signal or an error of the whole source.
 */
enum sync_rc	sync_media_source(struct sync_db *, int id, struct sync_ctx *,
		    double deadline, struct sync_media_counts *, int *stopped,
		    struct sync_err *);

/* ---- link.c: provider links to files (SPEC §9) ------------------------ */

/*
 * A copy of url without the query parameters that carry a credential
 * (access_token, token, key, ... or a registered secret); *stripped says
 * whether any was removed, *expires (may be NULL) the expiry the link
 * shows (expires=, exp=, oe=), -1 when none.  NULL on ENOMEM.
 */
char	       *sync_link_clean(const char *url, int *stripped, long long *expires);
/* Cleans every http(s) link in the JSON text b->data[from..); the count. */
long		sync_link_scrub(struct sync_buf *, size_t from);
/* url as it may be printed: without its query, secrets masked. */
void		sync_link_safe(const char *url, char *out, size_t size);

/* ---- err.c ------------------------------------------------------------ */

/*
 * Formats into out (size bytes) with every secret masked before the text
 * is cut to size, so that a secret across the cut is masked whole.
 */
void		sync_vformat_redacted(char *out, size_t size, const char *fmt,
		    va_list);

/* ---- buf.c ------------------------------------------------------------ */

/*
 * Copies s into out (size bytes) as valid UTF-8: invalid sequences become
 * U+FFFD, a cut falls between characters.
 */
void		sync_utf8_copy(char *out, size_t size, const char *s);

/* ---- log.c ------------------------------------------------------------ */

void		sync_log_prog(const char *);
/*
 * The log format (0 text, 1 JSON) as soon as the configuration file says
 * it, before the rest is validated: its own errors come out in it.
 */
void		sync_log_format(int);
/* Whether MSGSYNC_LOG_FORMAT asks for JSON lines (the default format). */
int		sync_log_env_json(void);
/* Whether stderr's lines are JSON objects now. */
int		sync_log_is_json(void);
/*
 * One line on stderr in the log format, without stepping the progress area
 * aside: for progress.c's own plain lines (it holds its lock).
 */
void		sync_log_line(int pri, const char *msg);

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

/*
 * Where sync_http_download() puts a 2xx body: write() takes each piece
 * (-1: the sink failed, e.g. ENOSPC: the download stops), reset() starts
 * over (before every attempt).
 */
struct sync_http_sink {
	int		(*write)(void *arg, const void *, size_t);
	int		(*reset)(void *arg);
	void		*arg;
};
/*
 * GETs url into sink, streamed (media-sync, SPEC §9): the source's
 * credentials are sent only when url is on the source's own origin
 * (scheme, host, port), redirects are followed (each judged again), the
 * body is taken as sent (no content decoding), a body over max bytes
 * stops it (SYNC_EDATA), and network errors, 408, 429 and 5xx are retried
 * as sync_http_get() does.  The whole transfer is bounded by the deadline
 * only; a stall of http.timeout seconds fails it.  SYNC_OK with *status
 * the final answer's (the sink holds the body of a 2xx, nothing else);
 * sync_http_sink_failed() tells a sink's failure from the others.  url
 * is named in messages without its query.
 */
enum sync_rc	sync_http_download(struct sync_http *, const char *url,
		    long long max, const struct sync_http_sink *, long *status,
		    struct sync_err *);
int		sync_http_sink_failed(const struct sync_http *);
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

/* ---- tls.c: a ca_file's certificates (OpenSSL; for http.c, config.c) -- */

struct sync_tls_cas;

/*
 * Reads the certificates of the PEM file path (one or more; other PEM
 * blocks are skipped).  NULL, with the reason in why (n bytes: an errno
 * text, or that it holds no certificate or a broken one), when it cannot
 * be read or holds none.  The caller frees it with sync_tls_cas_free().
 */
struct sync_tls_cas *sync_tls_cas_load(const char *path, char *why, size_t n);
void		sync_tls_cas_free(struct sync_tls_cas *);
/*
 * Adds the certificates to the trust store of ssl_ctx (an OpenSSL
 * SSL_CTX *), beside what is there; one already there is no error.  0, or
 * -1 when one could not be added.
 */
int		sync_tls_cas_add(const struct sync_tls_cas *, void *ssl_ctx);
/*
 * Whether libcurl's TLS backend, as curl_version_info() names it, is the
 * OpenSSL this program is linked with (then its SSL_CTX may be handed to
 * sync_tls_cas_add()).
 */
int		sync_tls_is_ours(const char *ssl_version);

/* ---- db.c: the only user of libpq -------------------------------------- */

/*
 * Connects (applying migrations on first use, under an advisory lock) and
 * prepares the statements.  The caller frees it with sync_db_free().
 */
struct sync_db *sync_db_open(const struct sync_config *, struct sync_err *);
/*
 * Connects for reading only (full-sync --dry-run, sync-status): migrates
 * and creates nothing, every transaction is read-only.  On a database
 * without the schema every read finds nothing: sync_db_source() gives id
 * 0 (also for a source without a row), and with id 0 there is no lock to
 * take, no rate-limit window and no cursor.  Errors as sync_db_open().
 */
struct sync_db *sync_db_open_readonly(const struct sync_config *, struct sync_err *);
/* Whether the schema is there (a read-only connection may find none). */
int		sync_db_has_schema(const struct sync_db *);
/* sync-changes: whether s is a position its --since takes (changes.c). */
int		sync_changes_token_ok(const char *s);
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
/*
 * Which locks of a source some session holds, without taking any: bit n of
 * *held is lock n (the pass command).  Read from pg_locks.
 */
enum sync_rc	sync_db_locks_held(struct sync_db *, int, unsigned *,
		    struct sync_err *);
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

/*
 * full-sync --prune (SPEC §8).  sync_db_prune_begin() starts a source's
 * pruning walks: from then on the connection notes every stored message
 * its pages see; start gets the database's time (the walks' start).
 * sync_db_prune() then reconciles the messages of the streams walked whole
 * (streams[0..n-1]) sent since window (NULL: all), of the conversations
 * convs[0..nconvs-1] (upstream ids) if convs is not NULL, else of all:
 * missing[i] gets how
 * many of streams[i] were newly found missing, pruned[i] how many were
 * confirmed deleted.  Either ends the noting, as does sync_db_prune_end().
 */
enum sync_rc	sync_db_prune_begin(struct sync_db *, char *start, size_t,
		    struct sync_err *);
enum sync_rc	sync_db_prune(struct sync_db *, int, char *const *streams, size_t n,
		    const char *start, const char *window, char *const *convs,
		    size_t nconvs, long long *missing, long long *pruned,
		    struct sync_err *);
void		sync_db_prune_end(struct sync_db *);

/* Writes a batch (inside a transaction): adds to inserted/updated/unchanged. */
/* media-sync's queue (SPEC §9): one pending attachment. */
struct sync_media_row {
	long long	 id;
	char		*external_id, *kind, *url, *local_path;
	char		*message_id, *conversation_id;	/* external ids */
	char		*raw;		/* the message's raw, text */
	int		 stripped;	/* the link lost a credential */
	int		 expired;	/* its link expires within 30 s */
	int		 inline_content;
	long long	 size;		/* -1 unknown */
	int		 attempts;
	char		 key[96];	/* where the next chunk starts */
};

struct sync_media_rows {
	struct sync_media_row *v;
	size_t		 n;
};

/* Linked rows (and, restart, failed ones) of source id become pending. */
enum sync_rc	sync_db_media_prepare(struct sync_db *, int id, int restart,
		    struct sync_err *);
/* At most max pending attachments after key (NULL: the first). */
enum sync_rc	sync_db_media_load(struct sync_db *, int id, const char *after,
		    size_t max, struct sync_media_rows *, struct sync_err *);
void		sync_media_rows_release(struct sync_media_rows *);
/* An attachment's inline bytes into out. */
enum sync_rc	sync_db_media_content(struct sync_db *, long long att,
		    struct sync_buf *out, struct sync_err *);
/* Marks a pending attachment stored with its content's hash and size. */
enum sync_rc	sync_db_media_stored(struct sync_db *, long long att,
		    const char *sha256, long long size, struct sync_err *);
/*
 * Records an attempt (counts: it counts as one) that did not store the
 * bytes: state "pending" (failed once attempts reach max_attempts),
 * "failed" or "unavailable", why in last_error.  *now_state: the state
 * the row has now ("" if it was no longer pending).
 */
enum sync_rc	sync_db_media_attempt(struct sync_db *, long long att,
		    const char *state, const char *why, int counts,
		    int max_attempts, char *now_state, size_t n, struct sync_err *);
enum sync_rc	sync_db_media_pending(struct sync_db *, int id, long long *n,
		    struct sync_err *);
/*
 * store = "database": begins a transaction with a new large object,
 * written by lo_write() (-1 on failure; sync_db_error_text() says why),
 * emptied by lo_reset(); lo_commit() records the content (dropping the
 * object when that content is stored already: *dedup), marks attachment
 * att stored and commits; lo_abort() rolls all of it back.
 */
enum sync_rc	sync_db_lo_begin(struct sync_db *, struct sync_err *);
int		sync_db_lo_write(struct sync_db *, const void *, size_t);
int		sync_db_lo_reset(struct sync_db *);
enum sync_rc	sync_db_lo_commit(struct sync_db *, long long att,
		    const char *sha256, long long size, int *dedup,
		    struct sync_err *);
void		sync_db_lo_abort(struct sync_db *);
const char     *sync_db_error_text(const struct sync_db *);

/* full-sync --import: the attachments' local files are read (SPEC §9). */
void		sync_db_trust_paths(struct sync_db *, int);
enum sync_rc	sync_db_apply(struct sync_db *, int, struct sync_batch *, struct sync_counts *,
		    struct sync_err *);

enum sync_state_how {
	SYNC_SAVE_INCR,		/* the cursor only */
	SYNC_SAVE_FULL,		/* cursor and full-walk checkpoint */
	SYNC_SAVE_FULL_START,	/* a full walk begins: checkpoint, started_at */
	SYNC_SAVE_FULL_DONE	/* a full walk ended: clear checkpoint */
};

/*
 * A page's transaction, each pair of statements in one round trip (SAVEPOINT
 * and COPY aside, a page costs two): BEGIN, then read the stream's stored
 * cursor and fingerprint and lock its row until the end of the transaction
 * (a concurrent pass of the other kind may have moved it; the caller frees
 * *cur and *fp); and the cursor/checkpoint's save, then COMMIT.  On failure
 * the caller rolls back.
 */
enum sync_rc	sync_db_begin_cursor(struct sync_db *, int, const char *, char **cur,
		    char **fp, struct sync_err *);
enum sync_rc	sync_db_save_commit(struct sync_db *, int, const char *,
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

/* A sync_page_history() report, as the page keeps it (coverage.c). */
struct sync_history_row {
	char		*conversation;
	char		*listable_from;	/* "": all listable; NULL: unknown */
	int		 reached_start;
	int		 walked;
	long long	 upstream_count, unrecoverable, gaps;	/* -1 unknown */
};

/* Frees a page's history reports (coverage.c). */
void		sync_page_history_release(struct sync_page *);

/* ---- coverage.c: the coverage table (SPEC §6) ----------------------- */

/* What a source's pass remembers at its start, for its end. */
struct sync_coverage_pass {
	long long	 seq;		/* msgsync_seq before the pass wrote */
	int		 ready;		/* the above were read */
	int		 dirty;		/* a page reported history, or a walk
					   from the start completed */
	int		 refresh_all;	/* a walk from the start completed for
					   the first time */
};

/* Before a pass first writes: what sync_coverage_end() needs (one statement). */
enum sync_rc	sync_coverage_begin(struct sync_db *, struct sync_coverage_pass *,
		    struct sync_err *);
/* A page's history reports (inside its transaction). */
enum sync_rc	sync_coverage_page(struct sync_db *, int, const struct sync_page *,
		    struct sync_err *);
/*
 * Inside the transaction of the page that ends a walk of stream which
 * began at the start of its history: sets its history_complete_at; *first
 * is set if it had none (every coverage row of the source is then due).
 */
enum sync_rc	sync_coverage_walked(struct sync_db *, int, const char *stream,
		    int *first, struct sync_err *);
/*
 * At a pass's end: recomputes the coverage rows of the conversations the
 * pass touched (their messages', conversations' or coverage rows' seq
 * above cp->seq) and those whose completeness changed with the source's
 * stream gaps, or of all its conversations with cp->refresh_all.  One
 * statement.
 */
enum sync_rc	sync_coverage_end(struct sync_db *, int, const struct sync_source_cfg *,
		    const struct sync_coverage_pass *, struct sync_err *);

/* Frees a page's rejections and resolutions (batch.c). */
/* Frees everything a page holds and empties it (a zeroed page is empty). */
void		sync_page_release(struct sync_page *);

/*
 * cJSON_PrintUnformatted() of j, but whole numbers from 10^15 up keep all
 * their digits (raw rows hold big ids).  j is changed during the call and
 * restored.  The caller frees the text with cJSON_free(); NULL on ENOMEM.
 */
char	       *sync_json_print(const struct cJSON *);
/*
 * Appends sync_json_print(j) escaped for COPY text to o, as the COPY field
 * of that text would be, without building the text first.  -1 on ENOMEM
 * (o is as it was).
 */
int		sync_json_copy(struct sync_buf *, const struct cJSON *);
/* Appends s escaped for COPY text (backslash, newline, CR, tab) (batch.c). */
int		sync_copy_text(struct sync_buf *, const char *);

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

/* ---- gaps.c, and their rows in stream_gap (db.c) ---------------------- */

/* A stored gap, as read in a page's transaction. */
struct sync_gaprow {
	long long	 lo, hi;
	char		 found[48];	/* found_at as text ("": now) */
	int		 reads;
	char		 unrec[48];	/* unrecoverable_at as text, "": open */
};

/* One stream's gaps in one pass. */
struct sync_gaps {
	struct sync_gap	*v;		/* the open ones to re-read, lowest first */
	size_t		 n;
	long long	 open;		/* open gaps stored before the pass */
	long long	 top;		/* the highest position of any stored gap, -1 */
	long long	 floor;		/* new gaps are recorded only above it */
	long long	 window;	/* the source's gap_window */
};

/* A stream's gaps in a word: how many are open, the highest position. */
struct sync_gapsum {
	char		 stream[32];
	long long	 open, top;
};

/* The gaps of each stream of a source that has any (at most max streams). */
enum sync_rc	sync_db_gaps_summary(struct sync_db *, int, struct sync_gapsum *,
		    size_t max, size_t *n, struct sync_err *);
/* Loads the open gaps of a stream (at most max, lowest first). */
enum sync_rc	sync_db_gaps_load(struct sync_db *, int, const char *stream,
		    size_t max, struct sync_gap **v, size_t *n, struct sync_err *);
/* The stored gaps overlapping (from, to], locked (in a transaction). */
enum sync_rc	sync_db_gaps_in(struct sync_db *, int, const char *stream,
		    long long from, long long to, struct sync_gaprow **, size_t *,
		    struct sync_err *);
/* Deletes the gap at lo (lo < 0: all of the stream's). */
enum sync_rc	sync_db_gap_drop(struct sync_db *, int, const char *stream,
		    long long lo, struct sync_err *);
/*
 * Stores gap g (inserted, or the one at g->lo updated): *open says it is
 * still open, *marked that it became unrecoverable now.
 */
enum sync_rc	sync_db_gap_put(struct sync_db *, int, const char *stream,
		    const struct sync_gaprow *, long long window, int *open,
		    int *marked, struct sync_err *);

/*
 * Loads a stream's gaps for a pass (g->floor and g->window are the
 * caller's): sum is the source's summary (one query per source, not per
 * stream: a pass with nothing to re-read stays cheap).
 */
enum sync_rc	sync_gaps_load(struct sync_db *, int, const char *stream,
		    const struct sync_gapsum *sum, size_t nsum, struct sync_gaps *,
		    struct sync_err *);
/*
 * In the page's transaction: records the page's new gaps, closes those it
 * found filled, marks those whose window passed; counts in c.
 */
enum sync_rc	sync_gaps_apply(struct sync_db *, int, const char *source,
		    const char *stream, const struct sync_gaps *,
		    const struct sync_page *, struct sync_counts *, struct sync_err *);
void		sync_gaps_release(struct sync_gaps *);

/* sync_run rows: start (marks abandoned runs), finish. */
enum sync_rc	sync_db_run_start(struct sync_db *, int, const char *, long long *,
		    struct sync_err *);
enum sync_rc	sync_db_run_finish(struct sync_db *, long long, const struct sync_source_result *,
		    struct sync_err *);

/* One query returning rows of text: for sync-status.  NULL-safe helpers. */
struct sync_rows;
enum sync_rc	sync_db_query(struct sync_db *, const char *sql, int nparams,
		    const char *const *params, struct sync_rows **, struct sync_err *);
/*
 * Runs sql and hands each row of its result to fn as it arrives (libpq's
 * single-row mode: memory holds one row, however many come); the rows are
 * fn's to read during the call only.  fn returns 0 to go on, -1 to stop:
 * the statement is cancelled and sync_db_stream() returns SYNC_EINTR with
 * stopped as the message.  Errors name what.
 */
enum sync_rc	sync_db_stream(struct sync_db *, const char *what, const char *sql,
		    int nparams, const char *const *params,
		    int (*fn)(void *, const struct sync_rows *), void *arg,
		    const char *stopped, struct sync_err *);
int		sync_rows_count(const struct sync_rows *);
/* Value at (row, col), or NULL for SQL NULL. */
const char     *sync_rows_get(const struct sync_rows *, int, int);
void		sync_rows_free(struct sync_rows *);
/*
 * One statement of SQL given by the caller, values as parameters, inside
 * or outside a transaction; what names it in errors.  *out (may be NULL)
 * gets its rows.
 */
/*
 * A PostgreSQL array literal of texts in a (empty at first): adds s, then
 * closes it ("{}" if empty).  -1 on ENOMEM.
 */
int		sync_db_array_add(struct sync_buf *, const char *);
int		sync_db_array_end(struct sync_buf *);
enum sync_rc	sync_db_exec(struct sync_db *, const char *what, const char *sql,
		    int nparams, const char *const *params, struct sync_rows **out,
		    struct sync_err *);
/* COPY data in with sql ("COPY t FROM STDIN"), in one round. */
enum sync_rc	sync_db_copy(struct sync_db *, const char *sql,
		    const struct sync_buf *data, struct sync_err *);

/* ---- search.c: the full-text index and sync-search (SPEC §2, §6) ------ */

/*
 * On a connection that migrates (db.c): when msgsync_setting's
 * search.language is not cfg's, builds message_search_idx again in cfg's
 * configuration (under the migration lock, in one transaction) and records
 * it.  SYNC_ECONFIG when the database has no such configuration.  One
 * query when nothing changed.
 */
enum sync_rc	sync_search_index(struct sync_db *, const struct sync_config *,
		    struct sync_err *);
/* Whether s may be embedded in SQL as a text search configuration's name. */
int		sync_search_lang_ok(const char *s);
/* Whether a read-only connection found the schema (1 for the others). */
int		sync_db_has_schema(const struct sync_db *);

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
