/*
 * status.c -- sync-status: the state of each configured source, as text,
 * JSON, a monitoring-plugin line (--check) or Prometheus text.  The figures
 * are gathered once into a cJSON tree; every format reads that tree.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "internal.h"

#define TS(c) "to_char(" c " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

static const char q_source[] =
    "SELECT id, CASE WHEN next_allowed_at > now() THEN " TS("next_allowed_at")
    " END, CASE WHEN next_allowed_at > now() THEN"
    " floor(extract(epoch FROM next_allowed_at))::bigint END"
    " FROM source WHERE name = $1";

/*
 * The runs still marked 'running'.  A pass holds its source's lock from
 * before it records its run until after it records the run's end, so a
 * run that is still 'running' after its lock was seen free died without a
 * word (kill -9, a crash, a lost connection): it is abandoned.
 */
static const char q_running[] =
    "SELECT id, command FROM sync_run WHERE source_id = $1"
    " AND status = 'running' ORDER BY id";

/* $2: the ids of the runs found abandoned, as an array literal. */
static const char q_counts[] =
    "SELECT (SELECT count(*) FROM contact WHERE source_id = $1),"
    " (SELECT count(*) FROM conversation WHERE source_id = $1),"
    " (SELECT count(*) FROM message WHERE source_id = $1),"
    " (SELECT count(*) FROM pending_message WHERE source_id = $1),"
    " (SELECT count(*) FROM sync_run WHERE source_id = $1"
    "  AND (status IN ('failed', 'abandoned') OR id = ANY($2::bigint[]))"
    "  AND id > coalesce((SELECT max(id) FROM sync_run WHERE source_id = $1"
    "  AND status IN ('ok', 'partial')), 0)),"
    " (SELECT count(*) FROM rejected_row WHERE source_id = $1"
    "  AND resolved_at IS NULL)";

/*
 * Coverage (SPEC §6): the source's conversations, those complete, the
 * known gaps (the conversations' own and the open ranges of its since_seq
 * streams, which belong to no one conversation) and the messages the
 * provider will not give (the conversations' and the positions of the
 * stream gaps whose window passed).
 */
static const char q_coverage[] =
    "SELECT (SELECT count(*) FROM conversation WHERE source_id = $1),"
    " count(*) FILTER (WHERE history_complete),"
    " coalesce(sum(gaps), 0) + (SELECT count(*) FROM stream_gap"
    "  WHERE source_id = $1),"
    " coalesce(sum(unrecoverable), 0) + (SELECT coalesce(sum(hi - lo + 1), 0)"
    "  FROM stream_gap WHERE source_id = $1 AND unrecoverable_at IS NOT NULL)"
    " FROM coverage WHERE source_id = $1";

/*
 * Attachments (SPEC §9): per state their count, the bytes stored and the
 * pending bytes the providers announced, and the pending ones whose links
 * stop working within the next hour (attachment_pending_idx).  One pass
 * over the source's rows of attachment_source_idx.
 */
static const char q_attachments[] =
    "SELECT count(*) FILTER (WHERE state = 'pending'),"
    " count(*) FILTER (WHERE state = 'stored'),"
    " count(*) FILTER (WHERE state = 'linked'),"
    " count(*) FILTER (WHERE state = 'unavailable'),"
    " count(*) FILTER (WHERE state = 'failed'),"
    " coalesce(sum(stored_size) FILTER (WHERE state = 'stored'), 0),"
    " coalesce(sum(size) FILTER (WHERE state = 'pending'), 0),"
    " count(*) FILTER (WHERE state = 'pending' AND url_expires_at > now()"
    "  AND url_expires_at <= now() + interval '1 hour')"
    " FROM attachment WHERE source_id = $1";

/* The attachments' keys in the JSON, in q_attachments' order. */
static const char *const att_keys[] = { "pending", "stored", "linked",
    "unavailable", "failed", "stored_bytes", "pending_bytes", "expiring" };
#define ATT_STATES	5		/* att_keys[0..4] are states */

static const char q_run[] =
    "SELECT command, status, " TS("started_at") ", " TS("finished_at") ","
    " error_kind, error_message, id,"
    " floor(extract(epoch FROM started_at))::bigint"
    " FROM sync_run WHERE source_id = $1 ORDER BY id DESC LIMIT 1";

/*
 * Per stream; an open full-sync walk (full_started_at set) also gets the
 * items its runs fetched since it began (their counts are recorded at their
 * end: a killed run adds nothing) and how many of them never recorded any.
 */
static const char q_streams[] =
    "SELECT stream, cursor, full_checkpoint, " TS("last_sync_at") ", "
    TS("last_success_at") ", " TS("last_full_sync_at") ","
    " floor(extract(epoch FROM now() - last_success_at))::bigint,"
    " consecutive_failures, last_error, last_error_kind,"
    " floor(extract(epoch FROM last_success_at))::bigint, "
    TS("full_started_at") ","
    " (SELECT coalesce(sum(r.fetched), 0) FROM sync_run r"
    "  WHERE r.source_id = s.source_id AND r.command = 'full-sync'"
    "  AND s.full_started_at IS NOT NULL"
    "  AND (r.finished_at IS NULL OR r.finished_at >= s.full_started_at)),"
    " (SELECT count(*) FROM sync_run r"
    "  WHERE r.source_id = s.source_id AND r.command = 'full-sync'"
    "  AND s.full_started_at IS NOT NULL AND r.status IN ('running', 'abandoned')"
    "  AND (r.finished_at IS NULL OR r.finished_at >= s.full_started_at))"
    " FROM sync_state s WHERE source_id = $1";

static cJSON *
jstr(const char *s)
{
	return s != NULL ? cJSON_CreateString(s) : cJSON_CreateNull();
}

static cJSON *
jnum(const char *s)
{
	return s != NULL ? cJSON_CreateNumber(strtod(s, NULL)) : cJSON_CreateNull();
}

static int
selected(const struct sync_opts *o, const struct sync_source_cfg *s)
{
	size_t i;

	if (o->nsources == 0)
		return 1;
	for (i = 0; i < o->nsources; i++)
		if (strcmp(o->sources[i], s->name) == 0)
			return 1;
	return 0;
}

/* The lock a pass command takes (its enum value), -1 if not a pass. */
static int
command_lock(const char *command)
{
	static const enum sync_cmd pass[] = { SYNC_CMD_FULL, SYNC_CMD_INCR,
	    SYNC_CMD_POLL, SYNC_CMD_MEDIA };
	size_t i;

	for (i = 0; command != NULL && i < sizeof(pass) / sizeof(pass[0]); i++)
		if (strcmp(command, sync_cmd_name(pass[i])) == 0)
			return (int)pass[i];
	return -1;
}

/*
 * Finds the source's abandoned runs (see q_running) without writing and
 * without taking a lock: the running rows, then the locks held, then the
 * rows again.  *ids gets them as an array literal ("{}" if none, the caller
 * owns it); the commands running now go into the array `running`.
 */
static enum sync_rc
find_abandoned(struct sync_db *db, const char *idbuf, int id, cJSON *running,
    struct sync_buf *ids, struct sync_err *err)
{
	struct sync_rows *before = NULL, *after = NULL;
	const char *p[1] = { idbuf };
	unsigned held = 0;
	long long last = 0;
	enum sync_rc rc;
	int k, lock, n = 0;

	if ((rc = sync_db_query(db, q_running, 1, p, &before, err)) != SYNC_OK)
		goto out;
	if (sync_rows_count(before) > 0)
		last = strtoll(sync_rows_get(before, sync_rows_count(before) - 1, 0),
		    NULL, 10);
	if ((rc = sync_db_locks_held(db, id, &held, err)) != SYNC_OK)
		goto out;
	if (last > 0 && (rc = sync_db_query(db, q_running, 1, p, &after, err)) !=
	    SYNC_OK)
		goto out;
	sync_buf_adds(ids, "{");
	for (k = 0; k < sync_rows_count(after); k++) {
		const char *rid = sync_rows_get(after, k, 0);

		/* A run started after the locks were read is alive. */
		if (strtoll(rid, NULL, 10) > last)
			continue;
		lock = command_lock(sync_rows_get(after, k, 1));
		if (lock < 0 || (held & (1u << lock)))
			continue;
		sync_buf_addf(ids, "%s%s", n++ > 0 ? "," : "", rid);
	}
	sync_buf_adds(ids, "}");
	for (lock = SYNC_CMD_FULL; lock <= SYNC_CMD_MEDIA; lock++)
		if (command_lock(sync_cmd_name((enum sync_cmd)lock)) >= 0 &&
		    (held & (1u << lock)))
			cJSON_AddItemToArray(running, cJSON_CreateString(
			    sync_cmd_name((enum sync_cmd)lock)));
	if (ids->data == NULL)
		rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
out:
	sync_rows_free(before);
	sync_rows_free(after);
	return rc;
}

/* Whether run id (decimal) is in the array literal ids. */
static int
in_ids(const char *ids, const char *id)
{
	size_t n = strlen(id);
	const char *p;

	for (p = ids; id[0] != '\0' && (p = strstr(p, id)) != NULL; p += n)
		if ((p[-1] == '{' || p[-1] == ',') && (p[n] == '}' || p[n] == ','))
			return 1;
	return 0;
}

/*
 * The source's "attachments" object; all 0 for a source without a row and
 * for a store that has no attachment table (have_att 0: older than
 * migration 6).
 */
static enum sync_rc
gather_attachments(struct sync_db *db, const char *idbuf, int have_att,
    cJSON *o, struct sync_err *err)
{
	struct sync_rows *r = NULL;
	const char *p[1] = { idbuf };
	cJSON *a;
	enum sync_rc rc;
	size_t i;

	if (have_att && idbuf[0] != '\0' &&
	    (rc = sync_db_query(db, q_attachments, 1, p, &r, err)) != SYNC_OK)
		return rc;
	a = cJSON_AddObjectToObject(o, "attachments");
	for (i = 0; i < sizeof(att_keys) / sizeof(att_keys[0]); i++)
		cJSON_AddItemToObject(a, att_keys[i], jnum(sync_rows_count(r) == 1 ?
		    sync_rows_get(r, 0, (int)i) : "0"));
	sync_rows_free(r);
	return SYNC_OK;
}

static enum sync_rc
gather_source(struct sync_db *db, const struct sync_source_cfg *src,
    int have_att, cJSON *o, struct sync_err *err)
{
	struct sync_rows *r = NULL, *st = NULL;
	struct sync_buf ids = SYNC_BUF_INIT(0);
	const char *p[2];
	char idbuf[16];
	cJSON *rows, *streams, *run, *running;
	enum sync_rc rc;
	size_t i;
	int k;

	cJSON_AddStringToObject(o, "name", src->name);
	cJSON_AddStringToObject(o, "type", src->type);
	cJSON_AddBoolToObject(o, "enabled", src->enabled);
	p[0] = src->name;
	if ((rc = sync_db_query(db, q_source, 1, p, &r, err)) != SYNC_OK)
		return rc;
	idbuf[0] = '\0';
	if (sync_rows_count(r) == 1)
		snprintf(idbuf, sizeof(idbuf), "%s", sync_rows_get(r, 0, 0));
	cJSON_AddItemToObject(o, "next_allowed_at", jstr(sync_rows_get(r, 0, 1)));
	/* Not part of the JSON (see strip_private()): for Prometheus. */
	cJSON_AddItemToObject(o, "_next_allowed_epoch", jnum(sync_rows_get(r, 0, 2)));
	sync_rows_free(r);
	r = NULL;
	p[0] = idbuf;
	running = cJSON_AddArrayToObject(o, "running");
	if (idbuf[0] != '\0' && (rc = find_abandoned(db, idbuf,
	    (int)strtol(idbuf, NULL, 10), running, &ids, err)) != SYNC_OK)
		goto out;
	p[1] = ids.data != NULL ? ids.data : "{}";
	rows = cJSON_CreateObject();
	if (idbuf[0] != '\0' &&
	    (rc = sync_db_query(db, q_counts, 2, p, &r, err)) != SYNC_OK) {
		cJSON_Delete(rows);
		goto out;
	}
	cJSON_AddItemToObject(o, "pending", jnum(r ? sync_rows_get(r, 0, 3) : "0"));
	cJSON_AddItemToObject(rows, "contacts", jnum(r ? sync_rows_get(r, 0, 0) : "0"));
	cJSON_AddItemToObject(rows, "conversations",
	    jnum(r ? sync_rows_get(r, 0, 1) : "0"));
	cJSON_AddItemToObject(rows, "messages", jnum(r ? sync_rows_get(r, 0, 2) : "0"));
	cJSON_AddItemToObject(o, "rows", rows);
	cJSON_AddItemToObject(o, "consecutive_failures",
	    jnum(r ? sync_rows_get(r, 0, 4) : "0"));
	cJSON_AddItemToObject(o, "rejected", jnum(r ? sync_rows_get(r, 0, 5) : "0"));
	sync_rows_free(r);
	r = NULL;

	if (idbuf[0] != '\0' &&
	    (rc = sync_db_query(db, q_coverage, 1, p, &r, err)) != SYNC_OK)
		goto out;
	rows = cJSON_AddObjectToObject(o, "coverage");
	cJSON_AddItemToObject(rows, "conversations", jnum(r ? sync_rows_get(r, 0, 0) :
	    "0"));
	cJSON_AddItemToObject(rows, "complete", jnum(r ? sync_rows_get(r, 0, 1) : "0"));
	cJSON_AddItemToObject(rows, "gaps", jnum(r ? sync_rows_get(r, 0, 2) : "0"));
	cJSON_AddItemToObject(rows, "unrecoverable", jnum(r ? sync_rows_get(r, 0, 3) :
	    "0"));
	sync_rows_free(r);
	r = NULL;

	if ((rc = gather_attachments(db, idbuf, have_att, o, err)) != SYNC_OK)
		goto out;

	if (idbuf[0] != '\0' &&
	    (rc = sync_db_query(db, q_run, 1, p, &r, err)) != SYNC_OK)
		goto out;
	if (sync_rows_count(r) == 1) {
		/* A run found abandoned (see find_abandoned()) says so. */
		int dead = in_ids(p[1], sync_rows_get(r, 0, 6));

		run = cJSON_CreateObject();
		cJSON_AddItemToObject(run, "command", jstr(sync_rows_get(r, 0, 0)));
		cJSON_AddItemToObject(run, "status", jstr(dead ? "abandoned" :
		    sync_rows_get(r, 0, 1)));
		cJSON_AddItemToObject(run, "started_at", jstr(sync_rows_get(r, 0, 2)));
		cJSON_AddItemToObject(run, "finished_at", jstr(sync_rows_get(r, 0, 3)));
		if (sync_rows_get(r, 0, 4) != NULL) {
			cJSON *e = cJSON_AddObjectToObject(run, "error");

			cJSON_AddItemToObject(e, "kind", jstr(sync_rows_get(r, 0, 4)));
			cJSON_AddItemToObject(e, "message", jstr(sync_rows_get(r, 0, 5)));
		} else
			cJSON_AddNullToObject(run, "error");
		cJSON_AddItemToObject(run, "_started_epoch", jnum(sync_rows_get(r, 0,
		    7)));
		cJSON_AddItemToObject(o, "last_run", run);
	} else
		cJSON_AddNullToObject(o, "last_run");
	sync_rows_free(r);

	if (idbuf[0] != '\0' &&
	    (rc = sync_db_query(db, q_streams, 1, p, &st, err)) != SYNC_OK)
		goto out;
	streams = cJSON_AddArrayToObject(o, "streams");
	for (i = 0; i < src->nstreams; i++) {
		cJSON *s = cJSON_CreateObject();
		int row = -1, open;

		for (k = 0; k < sync_rows_count(st); k++)
			if (strcmp(sync_rows_get(st, k, 0), src->streams[i]) == 0)
				row = k;
		open = sync_rows_get(st, row, 11) != NULL;
		cJSON_AddStringToObject(s, "stream", src->streams[i]);
		cJSON_AddItemToObject(s, "cursor", jstr(sync_rows_get(st, row, 1)));
		cJSON_AddItemToObject(s, "full_sync_checkpoint",
		    jstr(sync_rows_get(st, row, 2)));
		cJSON_AddItemToObject(s, "full_sync_started_at",
		    jstr(sync_rows_get(st, row, 11)));
		cJSON_AddItemToObject(s, "full_sync_fetched",
		    jnum(open ? sync_rows_get(st, row, 12) : NULL));
		cJSON_AddItemToObject(s, "last_sync_at", jstr(sync_rows_get(st, row, 3)));
		cJSON_AddItemToObject(s, "last_success_at",
		    jstr(sync_rows_get(st, row, 4)));
		cJSON_AddItemToObject(s, "last_full_sync_at",
		    jstr(sync_rows_get(st, row, 5)));
		cJSON_AddItemToObject(s, "lag_seconds", jnum(sync_rows_get(st, row, 6)));
		cJSON_AddItemToObject(s, "consecutive_failures",
		    jnum(row >= 0 ? sync_rows_get(st, row, 7) : "0"));
		if (sync_rows_get(st, row, 8) != NULL) {
			cJSON *e = cJSON_AddObjectToObject(s, "last_error");

			cJSON_AddItemToObject(e, "kind", jstr(sync_rows_get(st, row, 9)));
			cJSON_AddItemToObject(e, "message", jstr(sync_rows_get(st, row, 8)));
		} else
			cJSON_AddNullToObject(s, "last_error");
		/* Not part of the JSON: for Prometheus and the text. */
		cJSON_AddItemToObject(s, "_success_epoch", jnum(sync_rows_get(st, row, 10)));
		cJSON_AddItemToObject(s, "_uncounted_runs",
		    jnum(open ? sync_rows_get(st, row, 13) : "0"));
		cJSON_AddItemToArray(streams, s);
	}
	sync_rows_free(st);
out:
	sync_buf_release(&ids);
	return rc;
}

static double
num(const cJSON *o, const char *k, double dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static const char *
sval(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A duration for people, exact: 90 -> "1m30s", 3600 -> "1h", 3601 -> "1h0m1s". */
static void
add_duration(struct sync_buf *b, double secs)
{
	static const struct {
		long long n;
		char u;
	} unit[] = { { 86400, 'd' }, { 3600, 'h' }, { 60, 'm' }, { 1, 's' } };
	long long v = secs > 0 ? (long long)secs : 0;
	size_t i;
	int started = 0;

	if (v == 0)
		sync_buf_adds(b, "0s");
	for (i = 0; i < 4 && v > 0; i++) {
		if (!started && v < unit[i].n)
			continue;
		started = 1;
		sync_buf_addf(b, "%lld%c", v / unit[i].n, unit[i].u);
		v %= unit[i].n;
	}
}

/*
 * The problems --check found, one list per state: problem() starts the
 * text of one, which the next problem() (or flush()) files.
 */
struct problems {
	cJSON		*list[3];	/* by state: unused, WARNING, CRITICAL */
	struct sync_buf	 cur;
	int		 state;		/* of cur, 0: none */
};

#define CHECK_SHOWN	8		/* problems named in the line at most */

static void
flush(struct problems *p)
{
	cJSON *s;

	if (p->state > 0 && p->list[p->state] != NULL &&
	    (s = cJSON_CreateString(p->cur.data != NULL ? p->cur.data : "")) != NULL)
		cJSON_AddItemToArray(p->list[p->state], s);
	p->state = 0;
	sync_buf_reset(&p->cur);
}

static struct sync_buf *
problem(struct problems *p, int state)
{
	flush(p);
	p->state = state;
	return &p->cur;
}

/* "src" or "src/stream". */
static void
add_who(struct sync_buf *b, const cJSON *src, const cJSON *st)
{
	sync_buf_adds(b, sval(src, "name"));
	if (st != NULL)
		sync_buf_addf(b, "/%s", sval(st, "stream"));
}

static const char *
error_kind(const cJSON *o, const char *key)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsObject(e) ? sval(e, "kind") : NULL;
}

/*
 * Failures in a row of a source or a stream (st NULL: the source's runs),
 * with how the last one ended: CRITICAL from --max-failures on or when the
 * upstream rejected the credentials, else WARNING.
 */
static void
check_failures(struct problems *p, const struct sync_opts *o, const cJSON *src,
    const cJSON *st, double f, const char *kind, const char *abandoned)
{
	int state = f >= (double)o->max_failures ||
	    (kind != NULL && strcmp(kind, "auth") == 0) ? 2 : 1;
	struct sync_buf *b = problem(p, state);

	add_who(b, src, st);
	sync_buf_addf(b, ": %.0f %s%s in a row", f, st != NULL ? "failure" :
	    "failed run", f == 1 ? "" : "s");
	if (abandoned != NULL)
		sync_buf_addf(b, ", last %s abandoned", abandoned);
	else if (kind != NULL)
		sync_buf_addf(b, ", last error %s", kind);
}

static void
check_source(struct problems *p, const struct sync_opts *o, const cJSON *src,
    double *maxlag, double *maxfail, int *nst)
{
	const cJSON *streams = cJSON_GetObjectItemCaseSensitive(src, "streams");
	const cJSON *run = cJSON_GetObjectItemCaseSensitive(src, "last_run");
	const cJSON *st;
	const char *abandoned = NULL, *kind = NULL;
	double fsrc = num(src, "consecutive_failures", 0), f, f0 = -1, fmax = 0;
	double rej = num(src, "rejected", 0), lag;
	int same = 1, never = 0, n = 0;
	struct sync_buf *b;

	if (cJSON_IsObject(run) && sval(run, "status") != NULL &&
	    strcmp(sval(run, "status"), "abandoned") == 0)
		abandoned = sval(run, "command");
	if (cJSON_IsObject(run))
		kind = error_kind(run, "error");
	cJSON_ArrayForEach(st, streams) {
		f = num(st, "consecutive_failures", 0);
		if (f0 >= 0 && f != f0)
			same = 0;
		f0 = f;
		if (f > fmax)
			fmax = f;
		never += cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(st,
		    "lag_seconds"));
		n++;
	}
	*nst += n;
	if (fmax > *maxfail)
		*maxfail = fmax;
	if (fsrc > *maxfail)
		*maxfail = fsrc;
	/* Every stream failed alike (the source failed): one line for all. */
	if (n > 1 && same && fmax > 0)
		check_failures(p, o, src, NULL, fmax > fsrc ? fmax : fsrc,
		    error_kind(cJSON_GetArrayItem(streams, 0), "last_error") != NULL ?
		    error_kind(cJSON_GetArrayItem(streams, 0), "last_error") : kind,
		    fsrc > 0 ? abandoned : NULL);
	else {
		cJSON_ArrayForEach(st, streams)
			if ((f = num(st, "consecutive_failures", 0)) > 0)
				check_failures(p, o, src, st, f, error_kind(st,
				    "last_error"), NULL);
		if (fsrc > fmax)
			check_failures(p, o, src, NULL, fsrc, kind, abandoned);
	}
	if (sval(src, "next_allowed_at") != NULL) {
		b = problem(p, 1);
		add_who(b, src, NULL);
		sync_buf_addf(b, ": rate limited until %s", sval(src, "next_allowed_at"));
	}
	if (rej > 0) {
		b = problem(p, 1);
		add_who(b, src, NULL);
		sync_buf_addf(b, ": %.0f rejected row%s unresolved", rej, rej == 1 ?
		    "" : "s");
	}
	if ((f = num(cJSON_GetObjectItemCaseSensitive(src, "attachments"),
	    "expiring", 0)) > 0) {
		b = problem(p, 1);
		add_who(b, src, NULL);
		sync_buf_addf(b, ": %.0f pending attachment%s whose link%s expire%s "
		    "within an hour", f, f == 1 ? "" : "s", f == 1 ? "" : "s",
		    f == 1 ? "s" : "");
	}
	if (n > 1 && never == n) {
		b = problem(p, 1);
		add_who(b, src, NULL);
		sync_buf_adds(b, ": never synced");
	}
	cJSON_ArrayForEach(st, streams) {
		if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(st, "lag_seconds"))) {
			if (n > 1 && never == n)
				continue;
			b = problem(p, 1);
			add_who(b, src, st);
			sync_buf_adds(b, ": never synced");
			continue;
		}
		lag = num(st, "lag_seconds", 0);
		if (lag > *maxlag)
			*maxlag = lag;
		if (lag <= (double)o->warn_lag)
			continue;
		b = problem(p, lag > (double)o->max_lag ? 2 : 1);
		add_who(b, src, st);
		sync_buf_adds(b, " lag ");
		add_duration(b, lag);
		sync_buf_adds(b, " > ");
		add_duration(b, lag > (double)o->max_lag ? (double)o->max_lag :
		    (double)o->warn_lag);
	}
}

/* The monitoring-plugin line and its exit code. */
static int
format_check(const cJSON *root, const struct sync_opts *o, struct sync_buf *b)
{
	static const char *const names[] = { "OK", "WARNING", "CRITICAL", "UNKNOWN" };
	struct problems p;
	const cJSON *src, *item;
	int state, nsrc = 0, nst = 0, i, shown = 0, total;
	double maxlag = 0, maxfail = 0;

	memset(&p, 0, sizeof(p));
	for (i = 1; i < 3; i++)
		p.list[i] = cJSON_CreateArray();
	cJSON_ArrayForEach(src, cJSON_GetObjectItemCaseSensitive(root, "sources")) {
		if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(src, "enabled")))
			continue;
		nsrc++;
		check_source(&p, o, src, &maxlag, &maxfail, &nst);
	}
	flush(&p);
	total = cJSON_GetArraySize(p.list[1]) + cJSON_GetArraySize(p.list[2]);
	state = cJSON_GetArraySize(p.list[2]) > 0 ? 2 : total > 0 ? 1 : 0;
	sync_buf_addf(b, "MSGSYNC %s - ", names[state]);
	if (state == 0)
		sync_buf_addf(b, "%d source(s), %d stream(s), max lag %.0fs", nsrc, nst,
		    maxlag);
	/* The worst first, a bounded number of them. */
	for (i = 2; i > 0; i--)
		cJSON_ArrayForEach(item, p.list[i])
			if (shown < CHECK_SHOWN)
				sync_buf_addf(b, "%s%s", shown++ > 0 ? "; " : "",
				    item->valuestring);
	if (total > shown)
		sync_buf_addf(b, "; and %d more", total - shown);
	sync_buf_addf(b, " | max_lag=%.0fs;%ld;%ld max_failures=%.0f;;%ld\n", maxlag,
	    o->warn_lag, o->max_lag, maxfail, o->max_failures);
	for (i = 1; i < 3; i++)
		cJSON_Delete(p.list[i]);
	sync_buf_release(&p.cur);
	return state;
}

/* A label value in the exposition format: \ " and newline escaped. */
static void
prom_label(struct sync_buf *b, const char *v)
{
	for (; v != NULL && *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			sync_buf_addf(b, "\\%c", *v);
		else if (*v == '\n')
			sync_buf_adds(b, "\\n");
		else
			sync_buf_add(b, v, 1);
	}
}

static void
prom_head(struct sync_buf *b, const char *name, const char *help)
{
	sync_buf_addf(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

/*
 * name{source="..."[,stream="..."]EXTRA} and v: a number, a boolean (1 or
 * 0), or else dflt (NaN when that is NaN).
 */
static void
prom_sample(struct sync_buf *b, const char *name, const cJSON *src,
    const cJSON *st, const char *extra, const cJSON *v, double dflt)
{
	sync_buf_addf(b, "%s{source=\"", name);
	prom_label(b, sval(src, "name"));
	if (st != NULL) {
		sync_buf_adds(b, "\",stream=\"");
		prom_label(b, sval(st, "stream"));
	}
	sync_buf_addf(b, "\"%s} ", extra != NULL ? extra : "");
	if (cJSON_IsNumber(v))
		sync_buf_addf(b, "%.0f\n", v->valuedouble);
	else if (cJSON_IsBool(v))
		sync_buf_addf(b, "%d\n", cJSON_IsTrue(v) ? 1 : 0);
	else if (isnan(dflt))
		sync_buf_adds(b, "NaN\n");
	else
		sync_buf_addf(b, "%.0f\n", dflt);
}

/*
 * Every metric with HELP and TYPE, a sample of each for every selected
 * source and each of its configured streams.  A stream that never
 * succeeded has lag NaN and last success 0; next_allowed_at is 0 when no
 * rate-limit window is open; last_run_status is one-hot over its values
 * (all 0 for a source that never ran).
 */
static void
format_prometheus(const cJSON *root, struct sync_buf *b)
{
	static const struct {
		const char *name, *key, *help;
		int where;		/* of key: 0 source, 1 stream, 2 last run,
					   3 coverage */
		double dflt;
	} m[] = {
		{ "msgsync_stream_lag_seconds", "lag_seconds",
		  "Seconds since the stream's last successful pass (NaN: never).", 1,
		  NAN },
		{ "msgsync_stream_consecutive_failures", "consecutive_failures",
		  "Failed passes of the stream since its last success.", 1, 0 },
		{ "msgsync_stream_last_success_timestamp_seconds", "_success_epoch",
		  "Unix time of the stream's last successful pass (0: never).", 1, 0 },
		{ "msgsync_source_enabled", "enabled",
		  "Whether the source is enabled in the configuration.", 0, 0 },
		{ "msgsync_source_pending_messages", "pending",
		  "Outgoing messages whose delivery status is still tracked.", 0, 0 },
		{ "msgsync_source_consecutive_failures", "consecutive_failures",
		  "Failed or abandoned runs of the source since its last success.", 0,
		  0 },
		{ "msgsync_source_rejected_rows", "rejected",
		  "Rows that could not be stored, quarantined and not yet resolved.", 0,
		  0 },
		{ "msgsync_source_next_allowed_at_seconds", "_next_allowed_epoch",
		  "Unix time until which a remembered rate limit holds the source "
		  "(0: none).", 0, 0 },
		{ "msgsync_source_last_run_timestamp_seconds", "_started_epoch",
		  "Unix time the source's last run started (0: never ran).", 2, 0 },
		{ "msgsync_coverage_conversations", "conversations",
		  "Conversations stored for the source.", 3, 0 },
		{ "msgsync_coverage_complete_conversations", "complete",
		  "Conversations whose whole history is stored, nothing known "
		  "missing.", 3, 0 },
		{ "msgsync_coverage_gaps", "gaps",
		  "Known missing ranges: of conversations, and open gaps of the "
		  "source's since_seq streams.", 3, 0 },
		{ "msgsync_coverage_unrecoverable_messages", "unrecoverable",
		  "Messages known to exist that the provider will not give.", 3, 0 },
	};
	static const char *const statuses[] = { "ok", "partial", "failed",
	    "interrupted", "running", "abandoned" };
	static const char *const tables[] = { "contacts", "conversations", "messages" };
	const cJSON *sources = cJSON_GetObjectItemCaseSensitive(root, "sources");
	const cJSON *src, *st, *run;
	char extra[64];
	size_t i, t;

	for (i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		prom_head(b, m[i].name, m[i].help);
		cJSON_ArrayForEach(src, sources) {
			run = cJSON_GetObjectItemCaseSensitive(src, "last_run");
			if (m[i].where == 1)
				cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(src,
				    "streams"))
					prom_sample(b, m[i].name, src, st, NULL,
					    cJSON_GetObjectItemCaseSensitive(st, m[i].key),
					    m[i].dflt);
			else
				prom_sample(b, m[i].name, src, NULL, NULL,
				    cJSON_GetObjectItemCaseSensitive(m[i].where == 2 ?
				    run : m[i].where == 3 ?
				    cJSON_GetObjectItemCaseSensitive(src, "coverage") :
				    src, m[i].key), m[i].dflt);
		}
	}
	prom_head(b, "msgsync_source_last_run_status", "The status of the source's "
	    "last run: 1 for its status, 0 for the others (all 0: never ran).");
	cJSON_ArrayForEach(src, sources) {
		const char *now;

		run = cJSON_GetObjectItemCaseSensitive(src, "last_run");
		now = cJSON_IsObject(run) ? sval(run, "status") : NULL;
		for (t = 0; t < sizeof(statuses) / sizeof(statuses[0]); t++) {
			snprintf(extra, sizeof(extra), ",status=\"%s\"", statuses[t]);
			prom_sample(b, "msgsync_source_last_run_status", src, NULL, extra,
			    NULL, now != NULL && strcmp(now, statuses[t]) == 0);
		}
	}
	prom_head(b, "msgsync_attachments", "Attachments per source and state.");
	cJSON_ArrayForEach(src, sources)
		for (t = 0; t < ATT_STATES; t++) {
			snprintf(extra, sizeof(extra), ",state=\"%s\"", att_keys[t]);
			prom_sample(b, "msgsync_attachments", src, NULL, extra,
			    cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
			    src, "attachments"), att_keys[t]), 0);
		}
	prom_head(b, "msgsync_attachment_bytes", "Bytes of attachments: stored "
	    "(in the store), pending (to fetch, as far as the provider said).");
	cJSON_ArrayForEach(src, sources)
		for (t = 0; t < 2; t++) {
			snprintf(extra, sizeof(extra), ",state=\"%s\"", t == 0 ? "stored" :
			    "pending");
			prom_sample(b, "msgsync_attachment_bytes", src, NULL, extra,
			    cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
			    src, "attachments"), t == 0 ? "stored_bytes" : "pending_bytes"),
			    0);
		}
	prom_head(b, "msgsync_attachments_expiring", "Pending attachments whose "
	    "links stop working within the next hour.");
	cJSON_ArrayForEach(src, sources)
		prom_sample(b, "msgsync_attachments_expiring", src, NULL, NULL,
		    cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
		    src, "attachments"), "expiring"), 0);
	prom_head(b, "msgsync_rows", "Rows stored per source and table.");
	cJSON_ArrayForEach(src, sources)
		for (t = 0; t < 3; t++) {
			snprintf(extra, sizeof(extra), ",table=\"%s\"", tables[t]);
			prom_sample(b, "msgsync_rows", src, NULL, extra,
			    cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
			    src, "rows"), tables[t]), 0);
		}
}

/*
 * An open full-sync walk of a stream: in progress, or interrupted at its
 * checkpoint after so many items, resumed by the next full-sync.
 */
static void
text_walk(struct sync_buf *b, const cJSON *src, const cJSON *st)
{
	const char *ck = sval(st, "full_sync_checkpoint");
	const cJSON *r;
	double items = num(st, "full_sync_fetched", 0);
	int live = 0;

	if (sval(st, "full_sync_started_at") == NULL)
		return;
	cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(src, "running"))
		if (cJSON_IsString(r) && strcmp(r->valuestring, "full-sync") == 0)
			live = 1;
	sync_buf_addf(b, "  %-14s full sync %s since %s", "", live ?
	    "under way" : "interrupted", sval(st, "full_sync_started_at"));
	if (ck == NULL)
		sync_buf_adds(b, ", before its first checkpoint");
	else {
		sync_buf_adds(b, ", at checkpoint ");
		/* A long checkpoint (a map of positions) is cut, not a character. */
		if (strlen(ck) > 60) {
			size_t n = 57;

			while (n > 0 && (ck[n] & 0xc0) == 0x80)
				n--;
			sync_buf_add(b, ck, n);
			sync_buf_adds(b, "...");
		} else
			sync_buf_adds(b, ck);
	}
	if (!live) {
		sync_buf_addf(b, " after %.0f item%s", items, items == 1 ? "" : "s");
		if (num(st, "_uncounted_runs", 0) > 0)
			sync_buf_adds(b, " counted (a run that died counts none)");
		sync_buf_addf(b, ", %s with the next full-sync", ck != NULL ?
		    "resumes" : "starts over");
	}
	sync_buf_adds(b, "\n");
}

/* "coverage: 3 of 4 conversations complete, 1 gap, 5 unrecoverable". */
static void
text_coverage(struct sync_buf *b, const cJSON *cv)
{
	double n = num(cv, "gaps", 0), u = num(cv, "unrecoverable", 0);

	sync_buf_addf(b, "  coverage: %.0f of %.0f conversation%s complete",
	    num(cv, "complete", 0), num(cv, "conversations", 0),
	    num(cv, "conversations", 0) == 1 ? "" : "s");
	sync_buf_addf(b, ", %.0f gap%s, %.0f unrecoverable message%s\n", n,
	    n == 1 ? "" : "s", u, u == 1 ? "" : "s");
}

/* A size for people: 512 -> "512 B", 1536 -> "1.5 KiB". */
static void
add_size(struct sync_buf *b, double n)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	size_t i = 0;

	while (n >= 1024 && i < sizeof(unit) / sizeof(unit[0]) - 1) {
		n /= 1024;
		i++;
	}
	if (i == 0)
		sync_buf_addf(b, "%.0f B", n);
	else
		sync_buf_addf(b, "%.1f %s", n, unit[i]);
}

/*
 * "attachments: 2 pending (1.5 MiB), 10 stored (20.0 MiB), 1 linked,
 * 0 unavailable, 0 failed, 1 expiring within an hour": only for a source
 * that has any.
 */
static void
text_attachments(struct sync_buf *b, const cJSON *a)
{
	double total = 0, exp = num(a, "expiring", 0);
	size_t i;

	for (i = 0; i < ATT_STATES; i++)
		total += num(a, att_keys[i], 0);
	if (total == 0)
		return;
	sync_buf_addf(b, "  attachments: %.0f pending", num(a, "pending", 0));
	if (num(a, "pending_bytes", 0) > 0) {
		sync_buf_adds(b, " (");
		add_size(b, num(a, "pending_bytes", 0));
		sync_buf_adds(b, " known)");
	}
	sync_buf_addf(b, ", %.0f stored (", num(a, "stored", 0));
	add_size(b, num(a, "stored_bytes", 0));
	sync_buf_addf(b, "), %.0f linked, %.0f unavailable, %.0f failed",
	    num(a, "linked", 0), num(a, "unavailable", 0), num(a, "failed", 0));
	if (exp > 0)
		sync_buf_addf(b, ", %.0f expiring within an hour", exp);
	sync_buf_adds(b, "\n");
}

static void
format_text(const cJSON *root, struct sync_buf *b)
{
	const cJSON *src, *st, *run;

	cJSON_ArrayForEach(src, cJSON_GetObjectItemCaseSensitive(root, "sources")) {
		const cJSON *rows = cJSON_GetObjectItemCaseSensitive(src, "rows");

		sync_buf_addf(b, "%s (%s)%s: %.0f messages, %.0f conversations, "
		    "%.0f contacts, %.0f pending, %.0f rejected\n", sval(src, "name"),
		    sval(src, "type"), cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(src,
		    "enabled")) ? "" : " [disabled]", num(rows, "messages", 0),
		    num(rows, "conversations", 0), num(rows, "contacts", 0),
		    num(src, "pending", 0), num(src, "rejected", 0));
		run = cJSON_GetObjectItemCaseSensitive(src, "last_run");
		if (cJSON_IsObject(run)) {
			sync_buf_addf(b, "  last run: %s %s at %s", sval(run, "command"),
			    sval(run, "status"), sval(run, "started_at"));
			if (sval(run, "status") != NULL &&
			    strcmp(sval(run, "status"), "abandoned") == 0)
				sync_buf_adds(b, " (it died without finishing)");
			sync_buf_adds(b, "\n");
		}
		text_coverage(b, cJSON_GetObjectItemCaseSensitive(src, "coverage"));
		text_attachments(b, cJSON_GetObjectItemCaseSensitive(src,
		    "attachments"));
		if (num(src, "consecutive_failures", 0) > 0)
			sync_buf_addf(b, "  %.0f failed run(s) in a row\n",
			    num(src, "consecutive_failures", 0));
		if (sval(src, "next_allowed_at") != NULL)
			sync_buf_addf(b, "  rate limited until %s\n",
			    sval(src, "next_allowed_at"));
		cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(src, "streams")) {
			const cJSON *e = cJSON_GetObjectItemCaseSensitive(st, "last_error");

			sync_buf_addf(b, "  %-14s cursor %s, ", sval(st, "stream"),
			    sval(st, "cursor") ? sval(st, "cursor") : "-");
			if (sval(st, "last_success_at") != NULL)
				sync_buf_addf(b, "last success %s, lag %.0fs",
				    sval(st, "last_success_at"), num(st, "lag_seconds", 0));
			else
				sync_buf_adds(b, "never synced");
			sync_buf_addf(b, ", %.0f failure(s)%s%s\n",
			    num(st, "consecutive_failures", 0),
			    cJSON_IsObject(e) ? ": " : "",
			    cJSON_IsObject(e) ? sval(e, "message") : "");
			text_walk(b, src, st);
		}
	}
}

/* Removes the keys that start with '_' (for the formats, not the JSON). */
static void
strip_private(cJSON *o)
{
	cJSON *c = o != NULL ? o->child : NULL, *next;

	for (; c != NULL; c = next) {
		next = c->next;
		if (c->string != NULL && c->string[0] == '_')
			cJSON_Delete(cJSON_DetachItemViaPointer(o, c));
		else if (cJSON_IsObject(c) || cJSON_IsArray(c))
			strip_private(c);
	}
}

enum sync_rc
sync_status_report(const struct sync_config *cfg, const struct sync_opts *o,
    char **out, int *exit_code, struct sync_err *err)
{
	struct sync_db *db;
	struct sync_rows *att = NULL;
	struct sync_buf b = SYNC_BUF_INIT(0);
	cJSON *root, *arr, *src;
	int have_att;
	char ts[32], *s;
	enum sync_rc rc = SYNC_OK;
	size_t i;

	*out = NULL;
	*exit_code = 0;
	if (sync_config_check_sources(cfg, o, err) != SYNC_OK)
		return err->rc;
	/* Reads only: no migration, no row (a monitoring role may only read). */
	if ((db = sync_db_open_readonly(cfg, err)) == NULL)
		return err->rc;
	root = cJSON_CreateObject();
	sync_time_format(time(NULL), ts, sizeof(ts));
	cJSON_AddStringToObject(root, "generated_at", ts);
	arr = cJSON_AddArrayToObject(root, "sources");
	/* A store older than migration 6 has no attachment to count. */
	rc = sync_db_query(db, "SELECT to_regclass('attachment') IS NOT NULL", 0,
	    NULL, &att, err);
	have_att = rc == SYNC_OK && sync_rows_get(att, 0, 0) != NULL &&
	    strcmp(sync_rows_get(att, 0, 0), "t") == 0;
	sync_rows_free(att);
	for (i = 0; rc == SYNC_OK && i < cfg->nsources; i++) {
		if (!selected(o, &cfg->sources[i]))
			continue;
		src = cJSON_CreateObject();
		cJSON_AddItemToArray(arr, src);
		rc = gather_source(db, &cfg->sources[i], have_att, src, err);
	}
	sync_db_free(db);
	if (rc != SYNC_OK) {
		cJSON_Delete(root);
		return rc;
	}
	if (o->check)
		*exit_code = format_check(root, o, &b);
	else if (o->prometheus)
		format_prometheus(root, &b);
	else if (o->json) {
		strip_private(root);
		if ((s = cJSON_PrintUnformatted(root)) != NULL) {
			sync_buf_addf(&b, "%s\n", s);
			cJSON_free(s);
		}
	} else
		format_text(root, &b);
	cJSON_Delete(root);
	if (b.data == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
	*out = b.data;
	return SYNC_OK;
}
