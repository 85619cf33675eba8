/*
 * connector.h -- the whole contract a connector sees: what it declares
 * (keys, streams, auth), the rows and positions it returns, and the
 * engine services it may call (requests through the engine's HTTP client,
 * JSON fields, cursors and watermarks, buffers, logging).  A connector in
 * lib/connectors/ includes this header and no other of lib/; it never
 * calls libcurl, libpq or pthreads.
 */
#ifndef SYNC_CONNECTOR_H
#define SYNC_CONNECTOR_H

#include <signal.h>
#include <stdint.h>
#include <syslog.h>

#include "sync.h"

struct cJSON;
struct sync_config;

/* ---- buf.c: growable byte buffers with a hard cap ---------------------- */

struct sync_buf {
	char		*data;
	size_t		 len;
	size_t		 cap;		/* allocated */
	size_t		 max;		/* 0: unlimited */
};

#define SYNC_BUF_INIT(m) { NULL, 0, 0, (m) }

/* Appends n bytes; keeps data NUL-terminated.  -1 on ENOMEM or over max. */
int		sync_buf_add(struct sync_buf *, const void *, size_t);
int		sync_buf_adds(struct sync_buf *, const char *);
int		sync_buf_addf(struct sync_buf *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
void		sync_buf_reset(struct sync_buf *);
/* strdup() that passes NULL through; NULL also on ENOMEM. */
char	       *sync_strdup(const char *);
/* ---- strmap.c: string -> number ------------------------------------- */

struct sync_strmap {
	char	       **keys;		/* NULL: a free slot */
	long long	*vals;
	size_t		 cap;		/* a power of two, or 0 */
	size_t		 n;
};

/* 1 and *val if key is in m, else 0. */
int		sync_strmap_get(const struct sync_strmap *, const char *key,
		    long long *val);
/* Sets key (copied) to val; -1 on ENOMEM. */
int		sync_strmap_put(struct sync_strmap *, const char *key, long long);
/* Empties m and frees what it holds (a zeroed map is an empty one). */
void		sync_strmap_clear(struct sync_strmap *);

/*
 * FNV-1a, 64 bits, continuing from h (start with SYNC_HASH_INIT): tells
 * changed data from unchanged, nothing more.
 */
#define SYNC_HASH_INIT	14695981039346656037ULL
uint64_t	sync_hash(uint64_t h, const void *, size_t);
/* The hash as 16 hex digits and a NUL. */
void		sync_hash_hex(uint64_t, char out[17]);
void		sync_buf_release(struct sync_buf *);

/*
 * Makes a JSON text safe to parse and store: invalid UTF-8 sequences become
 * U+FFFD, and inside strings the escapes \u0000 and lone UTF-16 surrogates
 * become \ufffd (PostgreSQL's text and jsonb reject both).  Rewrites b in
 * place (it may grow).  Returns the number of replacements, -1 on ENOMEM.
 */
long		sync_json_sanitize(struct sync_buf *);

/* ---- err.c: errors and secret redaction -------------------------------- */

/* The shortest secret masked (config.c refuses shorter tokens). */
#define SYNC_SECRET_MIN	8

/*
 * Registers a secret so that every error and log line masks it, also
 * JSON-escaped or URL-encoded; 0, or -1 on ENOMEM.  Thread-safe, but a
 * secret is best registered before the pass's threads start (see the
 * connector's `secrets` operation).
 */
int		sync_secret_add(const char *);
/* Masks every registered secret in s (in place). */
void		sync_redact(char *);
/*
 * An excerpt of an upstream text s for an error message: at most size - 1
 * bytes into out (cut at a UTF-8 character boundary), control characters
 * as spaces, and every secret masked before the cut, so that a secret the
 * upstream echoes across it is masked whole.  s may be NULL ("").
 */
void		sync_redact_excerpt(char *out, size_t size, const char *s);
void		sync_secrets_clear(void);

/* ---- time.c ----------------------------------------------------------- */

/*
 * Parses an RFC 3339 / ISO 8601 timestamp ("2026-11-22T10:00:00Z",
 * "+02:00" offsets, fractions, a space for T) into UTC seconds and
 * microseconds.  Returns 0 on success, -1 if s is not a valid timestamp.
 */
int		sync_time_parse(const char *, int64_t *, int *);
/* Formats t as "YYYY-MM-DDTHH:MM:SSZ" into out (at least 32 bytes). */
void		sync_time_format(time_t, char *, size_t);
/* Normalises a timestamp to "YYYY-MM-DDTHH:MM:SS[.ffffff]Z"; -1 if bad. */
int		sync_time_normalize(const char *, char *, size_t);
double		sync_now_mono(void);

/* ---- signals (signals.c; their names: err.c) ---------------------------- */

extern volatile sig_atomic_t sync_stop_signal;
/* "SIGINT", "SIGTERM", ... for the signals that stop a pass. */
const char     *sync_signal_name(int);
/* Sleeps up to secs; returns -1 early when a stop signal arrived. */
int		sync_sleep(double);

/*
 * The engine runs a pass's sources in threads; a connector creates and
 * locks none of its own.  What every source of the process shares outside
 * the engine (TDLib's td_receive() serves all clients at once) is used
 * under this one lock, held briefly (the TDLib loader holds it across one
 * td_receive() of at most 0.2 s).
 */
void		sync_shared_lock(void);
void		sync_shared_unlock(void);

/* ---- config.c --------------------------------------------------------- */

enum sync_keytype {
	SYNC_KEY_STRING,
	SYNC_KEY_INT,
	SYNC_KEY_BOOL,
	SYNC_KEY_STRLIST,
	SYNC_KEY_INT_PER_STREAM,	/* an int, or a group of ints by stream */
	SYNC_KEY_SECRET_FILE,	/* a file's path; the value is its first line */
	SYNC_KEY_SECRET_ENV	/* a variable's name; the value is its content */
};

/* A type-specific configuration key, declared by its connector. */
struct sync_keydef {
	const char	*name;
	enum sync_keytype type;
	int		 required;
	long long	 min, max;	/* for ints (both 0: unchecked) */
	const char *const *allowed;	/* for string lists: allowed items */
};

/*
 * Keys whose meaning the engine owns, for a connector's key table (their
 * ranges are the engine's; a connector says only that it has them):
 * cold_start_days (how far back a stream with no cursor starts), and the
 * timestamp walks' lookback and max_clock_skew (walk.c).
 */
#define SYNC_KEY_COLD_START \
	{ "cold_start_days", SYNC_KEY_INT, 0, 0, 36500, NULL }
#define SYNC_KEYS_WALK \
	{ "lookback", SYNC_KEY_INT, 0, 0, 31536000, NULL }, \
	SYNC_KEY_COLD_START, \
	{ "max_clock_skew", SYNC_KEY_INT, 0, 0, 31536000, NULL }
/*
 * gap_window (seconds): how long the engine keeps re-reading a gap of a
 * since_seq stream (SYNC_CONN_GAPS) before it reports it unrecoverable;
 * 0: at once, never re-read.
 */
#define SYNC_GAP_WINDOW_DEFAULT	3600
#define SYNC_KEY_GAP_WINDOW \
	{ "gap_window", SYNC_KEY_INT, 0, 0, 31536000, NULL }

struct sync_value {
	const struct sync_keydef *def;
	int		 set;
	int		 line;
	char		*s;
	long long	 i;		/* also the default of per-stream */
	char	       **list;
	size_t		 nlist;
	char	       **names;		/* per-stream: stream names */
	long long	*ints;		/* per-stream: values */
	size_t		 nints;
};

struct sync_connector;

/*
 * What a source keeps of its attachments (its `media` key, SPEC §9):
 * download the bytes into the store (media-sync), keep only the metadata
 * and the provider's link, or keep no attachment rows at all.
 */
enum sync_media {
	SYNC_MEDIA_DOWNLOAD,
	SYNC_MEDIA_LINK,
	SYNC_MEDIA_NONE
};

struct sync_source_cfg {
	char		*name;
	char		*type;
	char		*url;
	char		*token;		/* resolved secret; never printed */
	char		*proof;		/* derived from it (conn->proof), or NULL */
	char		*ca_file;
	char		*pinned_pubkey;
	int		 enabled;
	int		 allow_insecure_http;
	int		 quarantine;	/* on_bad_row = "quarantine" */
	enum sync_media	 media;		/* the source's `media` key (SPEC §9) */
	int		 media_set;	/* given in the file (else a connector's
					   check() may choose its default) */
	/*
	 * A disabled source, not selected: its credentials were not read
	 * and need not be given (a secret key that is given reads as "").
	 */
	int		 secrets_optional;
	int		 line;
	const struct sync_connector *conn;
	struct sync_value *values;	/* one per conn->keys entry */
	size_t		 nvalues;
	char	       **streams;	/* the streams this source syncs */
	size_t		 nstreams;
};

/* Type-specific values, looked up by key name (NULL/dflt if unset). */
const char     *sync_cfg_str(const struct sync_source_cfg *, const char *);
long long	sync_cfg_int(const struct sync_source_cfg *, const char *, long long);
/* Per-stream int: the stream's own value, else the plain int, else dflt. */
long long	sync_cfg_stream_int(const struct sync_source_cfg *, const char *,
		    const char *, long long);

/* The timeout (seconds) of one request of this configuration. */
double		sync_config_timeout(const struct sync_config *);

/* ---- http.c: one libcurl handle per source ----------------------------- */

struct sync_http;

struct sync_http_resp {
	long		 status;
	struct sync_buf	 body;
};

/*
 * What a connector makes of an answer, for APIs whose status codes do not
 * say it all (Graph sends rate limits as HTTP 400 with error.code):
 * DEFAULT leaves it to the status, FINAL returns it to the caller as it
 * is, RETRY retries it with backoff, RATE_LIMIT waits *wait seconds (if
 * set > 0, else backoff) or, if that is longer than the pass can afford,
 * fails with kind rate_limit.  A classifier may rewrite why ("HTTP 400")
 * to say more.
 */
enum sync_http_verdict {
	SYNC_HTTP_DEFAULT,
	SYNC_HTTP_FINAL,
	SYNC_HTTP_RETRY,
	SYNC_HTTP_RATE_LIMIT
};
typedef enum sync_http_verdict (*sync_http_classify_fn)(struct sync_http *,
		    const struct sync_http_resp *, double *wait, char *why, size_t);
void		sync_http_set_classify(struct sync_http *, sync_http_classify_fn);
/* A header of the last answer, NULL if absent (valid until the next request). */
const char     *sync_http_header(struct sync_http *, const char *);

/*
 * The engine's one retry policy, for every request of a pass (HTTP, and
 * TDLib's calls), after attempt (0-based) failed: why says how ("HTTP
 * 503", "500 Internal Server Error"), what names the request in messages
 * ("cannot fetch 'URL'", "source 'tg': loadChats"), rate_limited says the
 * upstream limited the rate, wait is its own hint (Retry-After, a flood
 * wait; -1: none, which gets exponential backoff with jitter).
 * Returns SYNC_OK after waiting: try again.  Otherwise the request fails
 * with err set: rc/kind when the retries are spent or the wait is longer
 * than any request may wait; kind rate_limit (the wait is remembered as
 * next_allowed_at) for a rate limit longer than the pass can afford; a
 * clean stop of the pass (sync_http_note_cut()) when no time is left
 * before the deadline; SYNC_EINTR on a signal.
 */
enum sync_rc	sync_http_retry(struct sync_http *, long attempt, int rate_limited,
		    double wait, const char *what, const char *why, enum sync_rc rc,
		    enum sync_errkind kind, struct sync_err *err);
/*
 * For a request outside HTTP (TDLib's calls): how long it may wait, at
 * most timeout seconds (0: unbounded) and never past the pass's deadline;
 * -1 when no time is left.  *by_deadline is set when the deadline is the
 * nearer.  A request that the deadline cut (it timed out with *by_deadline
 * set, or no time was left) is a clean stop of the pass, not a failure:
 * the connector says so with sync_http_note_cut() and returns its error.
 */
double		sync_http_time_left(const struct sync_http *, double timeout,
		    int *by_deadline);
void		sync_http_note_cut(struct sync_http *);

/*
 * GETs url, retrying network errors, 408, 429 and 5xx with backoff and
 * jitter (Retry-After wins).  url never holds a credential: the engine
 * adds the source's own (sync_connector.auth) to the request it sends,
 * and names url as given in logs and errors.  On SYNC_OK, *resp holds
 * the final answer, whatever its status (the caller releases
 * resp->body).  A wait longer than the deadline allows returns SYNC_ETEMP
 * with kind rate_limit (sync_http_last_wait() says how long).
 */
enum sync_rc	sync_http_get(struct sync_http *, const char *url,
		    struct sync_http_resp *, struct sync_err *);

/*
 * GETs url and parses a 2xx answer as JSON (after sync_json_sanitize()).
 * Any other status becomes an error by sync_http_status_error().  The
 * caller owns *json on SYNC_OK.  *sanitized (may be NULL) gets the number
 * of replaced characters.
 */
enum sync_rc	sync_http_get_json(struct sync_http *, const char *url,
		    struct cJSON **, long *sanitized, struct sync_err *);
/*
 * Parses an answer's body as JSON (after sync_json_sanitize()), whatever
 * its status.  The caller owns *json on SYNC_OK.
 */
enum sync_rc	sync_http_parse_json(struct sync_http_resp *, const char *safe,
		    struct cJSON **, long *sanitized, struct sync_err *);
/* Turns a non-2xx answer into an error of the right kind. */
enum sync_rc	sync_http_status_error(const struct sync_http_resp *, const char *safe,
		    struct sync_err *);

/*
 * Builds base + path (path segments already escaped) + query pairs (NULL
 * terminated: key, value, key, value, ..., values are URL-encoded).  The
 * caller frees *out with free().
 */
enum sync_rc	sync_url_build(const char *base, const char *path,
		    const char *const *query, char **out, struct sync_err *);
/* URL-encodes s for a path segment; caller frees. NULL on ENOMEM. */
char	       *sync_url_escape(const char *);
/* Validates a source URL: scheme, host, http:// only to loopback. */
enum sync_rc	sync_url_check(const char *, int allow_insecure, char *why, size_t);

/* ---- batch.c: rows of one page, as COPY text for the store ------------ */

/* The longest external id stored; rows with longer ones are rejected. */
#define SYNC_MAX_ID	1024

enum sync_entity {
	SYNC_ENT_CONTACT,
	SYNC_ENT_CONVERSATION,
	SYNC_ENT_MESSAGE
};

struct sync_contact {
	const char	*external_id;
	const char	*display_name;
	/*
	 * As the provider gives it (a WhatsApp id too): the engine stores it
	 * in E.164 when it reads as a number (lib/phone.c), else as given.
	 */
	const char	*phone;
	int		 phone_international;	/* its digits are, even without '+' */
	const char	*username;
	const struct cJSON *raw;
};

struct sync_conversation {
	const char	*external_id;
	const char	*title;
	const char	*kind;
	int		 is_read;	/* -1 unknown */
	long long	 unread_count;	/* -1 unknown */
	const char	*last_message_at;
	int		 archived;	/* -1 unknown */
	const struct cJSON *raw;
};

/*
 * One file a message carries (SPEC §9): the engine keeps one attachment
 * row per (message, external_id), created pending (or linked under media =
 * "link"), and media-sync fetches its bytes.  A connector describes the
 * file as the provider does; the engine removes credentials from url
 * before it is stored or printed (sync_link_clean()) and decides how the
 * bytes are fetched.  All pointers are borrowed for the call.
 */
struct sync_attachment {
	const char	*external_id;	/* the provider's file id, or the index
					   in the message ("0", "1", ...) (MUST) */
	const char	*kind;		/* photo, video, audio, voice, document,
					   sticker, file, ... */
	const char	*mime_type;
	const char	*name;		/* file name */
	long long	 size;		/* bytes the provider says; 0 or -1: unknown */
	const char	*url;		/* the provider's link, NULL: none (the
					   connector's media_refresh() gives one) */
	const char	*url_expires_at; /* RFC 3339, NULL: unknown (the engine
					   reads the common expiry parameters of
					   the link itself) */
	const void	*data;		/* inline content (decoded), or NULL */
	size_t		 len;
	const char	*path;		/* a local file of an import (honoured by
					   full-sync --import only), or NULL */
	const char	*unavailable;	/* why the provider will never give the
					   file (its row is unavailable), or NULL */
};

/* Whether an outgoing message's delivery status is still to be followed. */
enum sync_track {
	SYNC_TRACK_NONE,	/* not an outgoing message with a status */
	SYNC_TRACK_PENDING,	/* not final yet: followed until track_until */
	SYNC_TRACK_FINAL	/* final: no longer followed */
};

struct sync_message {
	const char	*external_id;
	const char	*conversation_id;	/* upstream id, may be NULL */
	const char	*sender_id;		/* upstream id, may be NULL */
	const char	*direction;		/* "in" or "out" */
	const char	*kind;
	const char	*body;
	const char	*sent_at;
	const char	*edited_at;
	const char	*status;
	const char	*status_at;
	const char	*validity_expires_at;
	const char	*folder;
	const struct cJSON *attachments;
	const struct cJSON *raw;
	int		 deleted;
	const char	*deleted_at;
	enum sync_track	 track;			/* delivery-status tracking */
	int64_t		 track_until;		/* pending: until when (UTC s) */
	/*
	 * The provider's own identity of the item, may be NULL (SPEC §7.10).
	 * A connector that names it opts into "one item, one row": the store
	 * keeps one row per provider_id and source, whatever external_id the
	 * upstream delivers it under (the first stored keeps the row).
	 */
	const char	*provider_id;
	/* Its files (SPEC §9); none under media = "none" (the engine drops them). */
	const struct sync_attachment *att;
	size_t		 natt;
};

/*
 * One message row of a batch: its keys, unescaped, and where its line
 * lies in the batch's COPY text.  The line is "ord, external_id,
 * conversation, sender" and then `rest`: the message table's own columns
 * ending with row_hash, a hash of everything on the line after ord and
 * before it, by which the store tells an unchanged row without parsing
 * it, and provider_id (not hashed: it never changes).
 */
struct sync_msgrow {
	char		*external_id;
	char		*conversation_id;
	char		*sender_id;
	char		*provider_id;	/* may be NULL */
	size_t		 line;		/* offset of the line */
	size_t		 rest;		/* offset of the rest */
	size_t		 end;		/* offset after its newline */
	char		 hash[17];
	enum sync_track	 track;
	int64_t		 track_until;
	int		 incoming;	/* direction "in" */
	int		 deleted;	/* deleted upstream */
};

struct sync_batch {
	enum sync_entity entity;
	struct sync_buf	 copy;		/* COPY text rows */
	long		 nrows;
	long		 sanitized;	/* fields nulled or repaired */
	struct sync_msgrow *rows;	/* messages only */
	size_t		 rowcap;
	long		 ntrack;	/* rows with a tracking state */
	int		 notrack;	/* the caller settles tracking itself */
	int		 unread_on_new;	/* a new incoming message makes its
					   conversation unread */
	const char	*stream;	/* the engine's: whose page it is */
	/*
	 * The attachments of the messages, as COPY text (batch.c): "ord, the
	 * message's external id, then the attachment's columns".
	 */
	struct sync_buf	 att;
	long		 natt;
};

void		sync_batch_init(struct sync_batch *, enum sync_entity);
void		sync_batch_release(struct sync_batch *);
/* Keeps only the rows i with keep[i] set, in order. */
void		sync_batch_filter(struct sync_batch *, const unsigned char *keep);
/* Each appends one row; -1 on ENOMEM.  Bad timestamps become NULL. */
int		sync_batch_add_contact(struct sync_batch *, const struct sync_contact *);
int		sync_batch_add_conversation(struct sync_batch *,
		    const struct sync_conversation *);
int		sync_batch_add_message(struct sync_batch *, const struct sync_message *);

/* ---- a stream's stored position (db.c) ------------------------------- */

struct sync_state {
	char		*cursor;
	char		*checkpoint;
	char		*fingerprint;
	int		 exists;
	int		 walked;	/* a walk from the start of its history
					   completed (history_complete_at) */
};

/*
 * status-poll: the messages of a source whose delivery status is followed
 * (pending_message), soonest expiry first.
 */
struct sync_pending {
	char		*external_id;
	char		*folder;	/* where it was last seen, may be NULL */
	char		 key[64];	/* position for the next chunk */
	char		 seq[24];	/* the message's seq when loaded */
	int		 expired;	/* its tracking window has closed */
	int		 claimed;	/* unchanged since loaded, and locked */
	int		 found;		/* set by the connector's poll() */
	enum sync_track	 track;		/* set by the connector's poll() */
	long		 row;		/* its row in the batch, -1: none */
};

struct sync_pending_list {
	struct sync_pending *v;
	size_t		 n;
};

/* ---- jsonf.c: fields of upstream JSON objects ------------------------- */

/*
 * A string field; a number is accepted as its decimal form (written into
 * num, n bytes) when num is not NULL (ids vary between APIs).  Absent or
 * null: NULL.  Any other type: NULL, and *bad is incremented.
 */
const char     *sync_json_str(const struct cJSON *, const char *key, char *num,
		    size_t n, long *bad);
/* A boolean field: 1, 0, or -1 when absent or not a boolean. */
int		sync_json_bool(const struct cJSON *, const char *key);
/*
 * A count or code: a number from 0 up (its whole part), a boolean as 0 or
 * 1; -1 when absent or anything else.
 */
long long	sync_json_int(const struct cJSON *, const char *key);

/*
 * An id: a whole number (up to 2^53 in magnitude, either sign) or its
 * decimal string.  0 and *v on success, -1 when absent or anything else.
 */
int		sync_json_id(const struct cJSON *, const char *key, long long *v);

/* ---- cursor.c: whole-number cursors --------------------------------- */

/* A stored cursor as a number: 0 for none (NULL), -1 if it is not one. */
long long	sync_cursor_int(const char *);
/* The cursor text of v; the caller frees it (NULL on ENOMEM). */
char	       *sync_cursor_from_int(long long);
/* The later of two number cursors (for sync_connector.cursor_max). */
char	       *sync_cursor_max_int(const char *, const char *);

/* ---- mark.c: keyset watermarks (timestamp, id) ----------------------- */

struct sync_mark {
	int64_t		 t;		/* UTC seconds */
	int		 us;		/* microseconds */
	char		 id[SYNC_MAX_ID + 1];	/* compared after the time */
};

/*
 * Sets m from a timestamp and an id; -1 if the timestamp is not one or
 * the id is longer than SYNC_MAX_ID.
 */
int		sync_mark_set(struct sync_mark *, const char *when, const char *id);
/* Parses a stored mark "TIME|id"; -1 if it is not one. */
int		sync_mark_parse(const char *, struct sync_mark *);
/* The stored form of m; the caller frees it (NULL on ENOMEM). */
char	       *sync_mark_format(const struct sync_mark *);
/* <0, 0, >0 as a is before, at, after b: time first, then id. */
int		sync_mark_cmp(const struct sync_mark *, const struct sync_mark *);
/*
 * The floor of a pass that continues from w with a lookback (seconds):
 * items at or above it are read again (all of its instant), the walk
 * stops below it.
 */
void		sync_mark_floor(const struct sync_mark *w, long long lookback,
		    struct sync_mark *floor);
/* The later of two stored marks (for sync_connector.cursor_max). */
char	       *sync_mark_max(const char *, const char *);

/* ---- walk.c: keyset walks of lists served newest first ---------------- */

struct sync_ctx;
struct sync_stream;
struct sync_page;

/*
 * The guard of one pagination: a cursor seen before in it (A, B, A, ...)
 * or more than SYNC_WALK_MAX_EMPTY empty pages in a row is a protocol
 * error, not an endless pass.  A zeroed pager is a new one.
 */
#define SYNC_WALK_MAX_EMPTY	20

struct sync_pager {
	uint64_t	*seen;		/* hashes of the cursors given, open set */
	size_t		 n, cap;
	int		 empty;		/* empty pages in a row */
	const char	*stream;	/* named in errors (borrowed), may be NULL */
};

/*
 * After a page of nitems items whose next page is at cursor next (NULL:
 * the last page): SYNC_OK, or a protocol error naming what.
 */
enum sync_rc	sync_pager_next(struct sync_pager *, const char *what,
		    const char *next, long nitems, struct sync_err *);
/* Forgets the cursors (a new pagination; the stream stays); frees them. */
void		sync_pager_reset(struct sync_pager *);

/*
 * One walk of a stream over (time, id) marks, newest first (SPEC §2,
 * §7.7): its floor (the watermark minus the lookback, the cold-start
 * window of a stream without one, or --since), its top (the next
 * watermark), and its progress, which an incremental walk keeps in its
 * cursor and a full walk in its checkpoint, so that a walk cut short is
 * continued, never started over.  Times later than now plus the source's
 * max_clock_skew are data that no watermark follows.  The connector reads
 * the fields below; the functions change them.
 */
struct sync_walk {
	const char	*source, *stream;	/* borrowed, for messages */
	struct sync_counts *counts;
	int		 full;
	int		 from_mark;	/* incremental, from a watermark: what
					   it finds is new, not history */
	int		 by_before;	/* the API lists below a given mark */
	long long	 lookback;
	int64_t		 limit;		/* later times are outliers */
	int		 have_floor;
	struct sync_mark floor;		/* items below it end this listing */
	int		 have_base;
	struct sync_mark base;		/* the floor of the whole walk */
	int		 have_top;
	struct sync_mark top;		/* the newest seen: the next watermark */
	int		 have_low;
	struct sync_mark low;		/* everything from top down to it is in */
	int		 resumed;	/* above the range an earlier pass stored */
	int		 below;		/* below the top of that range */
	struct sync_mark rtop, rlow;	/* that range */
	int		 have_before;
	struct sync_mark before;	/* by_before: list only items below it */
	int		 restart;
	long		 outliers, page_outliers;
	struct sync_pager pager;	/* the listing's pagination */
};

/*
 * Starts the walk of stream st for a pass (a zeroed or released w).
 * by_before: the API can list items below a mark (sync_walk_listed() then
 * starts the listing over below the stored range instead of reading
 * through it).
 */
void		sync_walk_begin(struct sync_walk *, const struct sync_ctx *,
		    const struct sync_stream *, long long lookback, int by_before);
void		sync_walk_release(struct sync_walk *);

enum sync_walk_at {
	SYNC_WALK_TAKE,		/* store it */
	SYNC_WALK_BELOW		/* below the floor: this listing ends here */
};

/* Where a listed item with mark m stands; a taken one may raise the top. */
enum sync_walk_at sync_walk_item(struct sync_walk *, const struct sync_mark *);
/* Whether m is older than the whole walk goes (for nested lists). */
int		sync_walk_older(const struct sync_walk *, const struct sync_mark *);
/*
 * Whether the item at m (listed below the stored range's top by an API
 * without by_before) was stored by an earlier pass of this walk: its
 * nested lists need not be read again.
 */
int		sync_walk_stored(const struct sync_walk *, const struct sync_mark *);
/*
 * Everything listed from the top down to m is in the pages handed to the
 * engine (this one included).
 */
void		sync_walk_reached(struct sync_walk *, const struct sync_mark *);
/*
 * The listing has ended (its last page, or an item below the floor).  1:
 * the walk goes on with a new listing (from the top, below w->before);
 * 0: the listing is complete.
 */
int		sync_walk_listed(struct sync_walk *);
/*
 * At the end of a page: complete, the page ends the walk and carries the
 * watermark; else the walk's progress, if it has some to keep.
 */
enum sync_rc	sync_walk_save(struct sync_walk *, struct sync_page *,
		    int complete, struct sync_err *);
/* The later of two stored walk positions (sync_connector.cursor_max). */
char	       *sync_walk_max(const char *, const char *);

/* ---- connectors -------------------------------------------------------- */

enum sync_mode {
	SYNC_MODE_INCR,
	SYNC_MODE_FULL,
	SYNC_MODE_IMPORT	/* full-sync --import: saved like INCR */
};

/* Positions lo..hi of a since_seq stream that were missing (gaps.c). */
struct sync_gap {
	long long	 lo, hi;
};

/* The most open gaps the engine hands a stream per pass (the rest: later). */
#define SYNC_GAPS_MAX	100

/* What the engine hands a connector for one stream. */
struct sync_stream {
	const char	*name;
	enum sync_mode	 mode;
	int		 restart;	/* full-sync --restart */
	time_t		 since;		/* full-sync --since, 0 if none */
	struct sync_state state;	/* as stored (owned by the engine) */
	const char	*from;		/* where this page starts, NULL: beginning */
	int		 first;		/* no page fetched yet in this pass */
	struct sync_counts *counts;
	struct sync_progress *progress;	/* the engine's (progress.c) */
	/*
	 * SYNC_CONN_GAPS: the stream's open gaps to re-read in this pass,
	 * lowest first, at most SYNC_GAPS_MAX (the engine's).
	 */
	const struct sync_gap *gaps;
	size_t		 ngaps;
};

/*
 * MAY, from fetch(): how much is left, for the progress display's percent
 * and time left (SPEC §2).  sync_progress_left(): the items from where
 * the page being fetched starts to the end of the walk, counted as
 * page->fetched counts them (seqapi's total_count); -1: unknown.
 * sync_progress_steps(): progress in other units than items, done of
 * total (Telegram: "chats").  Cheap; the engine ignores them when nobody
 * watches.  sync_progress_wanted() says whether a request made only to
 * learn a total is worth it (a progress display is shown).
 */
void		sync_progress_left(struct sync_stream *, long long left);
void		sync_progress_steps(struct sync_stream *, const char *unit,
		    long long done, long long total);
int		sync_progress_wanted(const struct sync_stream *);

/* What a connector returns for one page. */
struct sync_page {
	struct sync_batch batch;	/* the rows (the connector initialises) */
	/*
	 * Rows of the other entities the page names, written before batch in
	 * the same transaction: contacts, then conversations (the engine
	 * initialises them; a connector MAY fill them).
	 */
	struct sync_batch side[2];
	/*
	 * External ids of messages deleted upstream, marked after batch (the
	 * engine frees them; a connector MAY fill them).
	 */
	char	       **deleted;
	size_t		 ndeleted;
	char		*cursor;	/* new high-water mark, NULL: unchanged */
	char		*checkpoint;	/* new full-walk position, NULL: unchanged */
	int		 force;		/* cursor replaces, not merges (a reset) */
	char		*fingerprint;	/* identifies the row at cursor, NULL: none */
	int		 done;		/* nothing more to fetch in this walk */
	long		 fetched;	/* items received (including skipped) */
	/* The engine's: see sync_page_reject() and sync_page_stored(). */
	struct sync_reject *rejects;
	size_t		 nrejects;
	char	       **resolves;
	size_t		 nresolves;
	const struct sync_strmap *open;	/* unresolved positions, or NULL */
	/*
	 * SYNC_CONN_GAPS: the page read every position in (read_from,
	 * read_to] (read_to <= read_from: none), and those it found missing
	 * (sync_page_missing()).  The engine keeps the gaps: it records new
	 * ones, closes those the page found filled, and reports those still
	 * missing after the source's gap_window, in the page's transaction.
	 */
	long long	 read_from, read_to;
	struct sync_gap	*missing;
	size_t		 nmissing, missingcap;
	/* The engine's: see sync_page_history(). */
	struct sync_history_row *history;
	size_t		 nhistory;
};

/* Positions lo..hi (in the range the page read) are missing; -1 on ENOMEM. */
int		sync_page_missing(struct sync_page *, long long lo, long long hi);

/*
 * A row of the page that cannot be stored (no usable id: missing, of the
 * wrong type, empty, longer than SYNC_MAX_ID): the connector MUST NOT add
 * it to a batch nor count it as sanitized, and MUST call this instead.
 * position is where the row was read (its seq where the upstream numbers
 * rows; NULL: the page's own position), field the field at fault, why
 * what is wrong with it, raw the row as received (copied).  The engine
 * applies the source's on_bad_row: "fail" fails the page with a data
 * error (nothing of it is written, the cursor stays), "quarantine" stores
 * the row in rejected_row with the rest of the page.  -1 on ENOMEM.
 */
int		sync_page_reject(struct sync_page *, const char *position,
		    const char *field, const char *why, const struct cJSON *raw);
/*
 * MAY: an item read at position (as given to sync_page_reject()) is in the
 * page: it resolves a row rejected there by an earlier pass.  Cheap when
 * nothing is unresolved.  -1 on ENOMEM.
 */
int		sync_page_stored(struct sync_page *, const char *position);
/* What is wrong with an id field of o (NULL: it is usable) for a rejection. */
const char     *sync_id_problem(const struct cJSON *o, const char *key);

/*
 * What a page's walk learnt of one conversation's history (SPEC §6
 * coverage), as facts: the engine decides what "complete" is.
 */
struct sync_history {
	const char	*conversation;	/* its upstream id (MUST) */
	int		 reached_start;	/* the walk read its oldest message */
	int		 walked;	/* the walk of it ended in this pass: at
					   its start, or at the floor of --since
					   or --prune-window (full-sync --prune
					   of SYNC_CONN_CONV_WALKS types) */
	long long	 upstream_count; /* messages the provider says it has; -1
					   unknown */
	const char	*listable_from;	/* RFC 3339: none sent before it can be
					   listed; "": all can; NULL: unknown */
	long long	 unrecoverable;	/* messages known to exist that the provider
					   will not give; -1 unknown */
	long long	 gaps;		/* known missing ranges; -1 unknown */
};

/*
 * MAY: tells the engine what the walk of this page learnt of a
 * conversation (copied; several calls for one conversation in a page
 * merge, the later facts winning).  Stored in the page's transaction, in
 * the conversation's coverage row (created, with a placeholder
 * conversation, if needed); unknown values (-1, NULL) keep what an earlier
 * page said, and reached_start 0 never forgets an earlier walk that
 * reached the start.  The engine decides from these facts, and from the
 * walks of whole streams, whether the conversation is complete.  A report
 * that changes nothing rewrites nothing.  -1 on ENOMEM.
 */
int		sync_page_history(struct sync_page *, const struct sync_history *);

/* Per-source, per-pass context. */
struct sync_ctx {
	const struct sync_config *cfg;
	const struct sync_source_cfg *src;
	const struct sync_opts *opts;
	struct sync_http *http;
	struct sync_counts *source_counts;	/* source-level requests */
	void		*priv;			/* the connector's own */
	char		 skip[160];		/* set by begin(): skip the
						   source, saying why */
};

/*
 * Where a source's token travels; the engine places it on every request
 * (a connector never handles it): in the header "header: prefix TOKEN",
 * or as the query parameter query=TOKEN added to every URL sent (never
 * to the URL logged or put in an error).  With both, the source's key
 * `choice` says which: "query", or else the header.  proof_query names a
 * credential derived from the token (sync_connector.proof) that is sent
 * with it, as a query parameter.
 */
struct sync_auth {
	const char	*header;	/* NULL: not in a header */
	const char	*prefix;	/* before the token, may be NULL */
	const char	*query;		/* NULL: not in the query */
	const char	*choice;	/* the key choosing between the two */
	const char	*proof_query;	/* NULL: none */
};

/*
 * media-sync (SPEC §9): what the engine knows of one attachment whose
 * bytes it fetches; borrowed for the call.
 */
struct sync_media_item {
	const char	*message_id;	/* the message's external id */
	const char	*conversation_id; /* its conversation's, may be NULL */
	const char	*external_id;	/* the attachment's */
	const char	*kind;
	const char	*url;		/* the stored link, may be NULL */
	long long	 size;		/* -1 unknown */
	const struct cJSON *raw;	/* the message's raw, may be NULL */
};

/* What a connector's media_refresh() found: one of the three. */
struct sync_media_link {
	char		*url;		/* a fresh link (malloc'd; the engine
					   frees it, never stores nor prints it) */
	char		*expires_at;	/* its expiry, RFC 3339 (malloc'd), or NULL */
	char		*path;		/* a local file holding the bytes (TDLib's
					   download; malloc'd), read as it is */
	char		 unavailable[200];	/* why it will never come back */
};

/*
 * A connector describes one API.  The engine does locking, transactions,
 * cursors, retries, deadlines and counters; a connector only turns its
 * API's pages into rows.
 */
struct sync_connector {
	const char	*type;
	const char	*default_url;		/* when a source gives none */
	const struct sync_keydef *keys;		/* type-specific keys */
	const char *const *all_streams;		/* the streams it knows */
	const char *const *default_streams;

	/* MAY: checks the source's values at load time; errors are config. */
	enum sync_rc	(*check)(struct sync_source_cfg *, struct sync_err *);

	/* How its token travels (nothing for SYNC_CONN_NO_TOKEN). */
	struct sync_auth auth;

	/*
	 * MAY: starts a pass (preflight requests).  ctx->priv is the
	 * connector's; end() MUST free it.  A failure fails the source.
	 */
	enum sync_rc	(*begin)(struct sync_ctx *, struct sync_err *);

	/*
	 * MUST: fetches the next page of stream st into page.  The engine owns
	 * page and frees page->cursor/checkpoint.  On error nothing of the
	 * page is written and the stream stops.
	 */
	enum sync_rc	(*fetch)(struct sync_ctx *, struct sync_stream *,
			    struct sync_page *, struct sync_err *);

	/*
	 * MAY: the later of two cursors (caller frees the result; NULL on
	 * ENOMEM).  Without it a new cursor simply replaces the stored one.
	 * The engine uses it so that a backfill and an incremental pass
	 * running side by side never move a cursor backwards.
	 */
	char		*(*cursor_max)(const char *, const char *);

	/* MAY: ends a pass; frees ctx->priv.  Called whenever begin was. */
	void		(*end)(struct sync_ctx *);

	/*
	 * MAY (status-poll): looks the pending messages p->v[0..n-1] up
	 * upstream.  For each one it finds it MUST add its current row (with
	 * its tracking state) to *batch, set `found` and `track`; the ones it
	 * does not find stay as they are.  Requests count in ctx's counts.  On
	 * error nothing of the batch is written.
	 */
	enum sync_rc	(*poll)(struct sync_ctx *, struct sync_pending_list *,
			    struct sync_batch *, struct sync_err *);

	/* MAY: why status-poll has nothing to do for this type (NULL: polls). */
	const char	*no_poll_reason;

	/* SYNC_CONN_* */
	unsigned	 flags;

	/*
	 * MAY (media-sync): a way to the bytes of attachment it, whose link
	 * is missing, expired, was stored without the credential it carried,
	 * or was refused (401, 403, 404, 410): a fresh link, a local file, or
	 * why the provider will never give it (struct sync_media_link).
	 * Requests go through ctx->http and count for the source.  An error
	 * counts as a failed attempt of this attachment; an auth, rate-limit
	 * or interruption error also stops the source's pass.  Without it an
	 * attachment whose link does not work stays pending until a later
	 * sync pass stores a new one, and is failed after its attempts.
	 */
	enum sync_rc	(*media_refresh)(struct sync_ctx *,
			    const struct sync_media_item *, struct sync_media_link *,
			    struct sync_err *);

	/*
	 * MAY: the stream that full-sync --import FILE runs (ctx->opts->import
	 * names the file); NULL: this type imports nothing.
	 */
	const char	*import_stream;

	/*
	 * MAY: full-sync --login: signs the source in, asking the operator
	 * through ask (never in a pass).  Errors as for begin().
	 */
	enum sync_rc	(*login)(const struct sync_config *,
			    const struct sync_source_cfg *, sync_prompt_fn ask,
			    void *arg, struct sync_err *);

	/*
	 * MAY (with auth.proof_query): the credential a source derives from
	 * its configuration (an HMAC proof of its token, say) into *out (the
	 * engine frees it), or *out NULL for none.  Called once per source at
	 * load time, after check(), before any thread starts; the engine
	 * masks it like the token and sends it with the token.  A failure
	 * (ENOMEM) fails the load.
	 */
	enum sync_rc	(*proof)(const struct sync_source_cfg *, char **out,
			    struct sync_err *);
};

#define SYNC_CONN_NO_URL	0x1	/* not an HTTP API: `url` optional, unused */
#define SYNC_CONN_NO_TOKEN	0x2	/* no token keys */
/*
 * Its rows have positions of their own (a seq), given to sync_page_reject()
 * and sync_page_stored().  Without it a rejected row's position is its
 * page's, and a later page read from there that stores items and moves the
 * cursor (checkpoint) on resolves it.
 */
#define SYNC_CONN_ROW_POSITIONS	0x4
/*
 * A message moves between its streams (SMSEagle: outbox, sent, ...): a
 * stream's walk that does not see a message proves nothing unless every
 * stream was walked (full-sync --prune then reconciles all or none).
 */
#define SYNC_CONN_MOVES		0x8
/*
 * Its streams are since_seq streams whose gaps the engine keeps (struct
 * sync_gap; the source has the key gap_window, SYNC_KEY_GAP_WINDOW).
 */
#define SYNC_CONN_GAPS		0x10
/*
 * It walks conversation by conversation, and may walk only some of them
 * (Telegram's `chats`): full-sync --prune reconciles only the messages of
 * the conversations whose walks the pass reported as ended
 * (sync_history.walked, or reached_start), never those of a conversation
 * it did not walk.
 */
#define SYNC_CONN_CONV_WALKS	0x20

#endif /* SYNC_CONNECTOR_H */
