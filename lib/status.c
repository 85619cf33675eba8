/*
 * status.c -- sync-status: the state of each configured source, as text,
 * JSON, a monitoring-plugin line (--check) or Prometheus text.  The figures
 * are gathered once into a cJSON tree; every format reads that tree.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "internal.h"

#define TS(c) "to_char(" c " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

static const char q_source[] =
    "SELECT id, CASE WHEN next_allowed_at > now() THEN " TS("next_allowed_at")
    " END FROM source WHERE name = $1";

static const char q_counts[] =
    "SELECT (SELECT count(*) FROM contact WHERE source_id = $1),"
    " (SELECT count(*) FROM conversation WHERE source_id = $1),"
    " (SELECT count(*) FROM message WHERE source_id = $1),"
    " (SELECT count(*) FROM pending_message WHERE source_id = $1),"
    " (SELECT count(*) FROM sync_run WHERE source_id = $1 AND status = 'failed'"
    "  AND id > coalesce((SELECT max(id) FROM sync_run WHERE source_id = $1"
    "  AND status IN ('ok', 'partial')), 0)),"
    " (SELECT count(*) FROM rejected_row WHERE source_id = $1"
    "  AND resolved_at IS NULL)";

static const char q_run[] =
    "SELECT command, status, " TS("started_at") ", " TS("finished_at") ","
    " error_kind, error_message FROM sync_run WHERE source_id = $1"
    " ORDER BY id DESC LIMIT 1";

static const char q_streams[] =
    "SELECT stream, cursor, full_checkpoint, " TS("last_sync_at") ", "
    TS("last_success_at") ", " TS("last_full_sync_at") ","
    " floor(extract(epoch FROM now() - last_success_at))::bigint,"
    " consecutive_failures, last_error, last_error_kind,"
    " floor(extract(epoch FROM last_success_at))::bigint"
    " FROM sync_state WHERE source_id = $1";

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

static enum sync_rc
gather_source(struct sync_db *db, const struct sync_source_cfg *src, cJSON *o,
    struct sync_err *err)
{
	struct sync_rows *r = NULL, *st = NULL;
	const char *p[1];
	char idbuf[16];
	cJSON *rows, *streams, *run;
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
	sync_rows_free(r);
	r = NULL;
	p[0] = idbuf;
	rows = cJSON_CreateObject();
	if (idbuf[0] != '\0' &&
	    (rc = sync_db_query(db, q_counts, 1, p, &r, err)) != SYNC_OK) {
		cJSON_Delete(rows);
		return rc;
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
	    (rc = sync_db_query(db, q_run, 1, p, &r, err)) != SYNC_OK)
		return rc;
	if (sync_rows_count(r) == 1) {
		run = cJSON_CreateObject();
		cJSON_AddItemToObject(run, "command", jstr(sync_rows_get(r, 0, 0)));
		cJSON_AddItemToObject(run, "status", jstr(sync_rows_get(r, 0, 1)));
		cJSON_AddItemToObject(run, "started_at", jstr(sync_rows_get(r, 0, 2)));
		cJSON_AddItemToObject(run, "finished_at", jstr(sync_rows_get(r, 0, 3)));
		if (sync_rows_get(r, 0, 4) != NULL) {
			cJSON *e = cJSON_AddObjectToObject(run, "error");

			cJSON_AddItemToObject(e, "kind", jstr(sync_rows_get(r, 0, 4)));
			cJSON_AddItemToObject(e, "message", jstr(sync_rows_get(r, 0, 5)));
		} else
			cJSON_AddNullToObject(run, "error");
		cJSON_AddItemToObject(o, "last_run", run);
	} else
		cJSON_AddNullToObject(o, "last_run");
	sync_rows_free(r);

	if (idbuf[0] != '\0' &&
	    (rc = sync_db_query(db, q_streams, 1, p, &st, err)) != SYNC_OK)
		return rc;
	streams = cJSON_AddArrayToObject(o, "streams");
	for (i = 0; i < src->nstreams; i++) {
		cJSON *s = cJSON_CreateObject();
		int row = -1;

		for (k = 0; k < sync_rows_count(st); k++)
			if (strcmp(sync_rows_get(st, k, 0), src->streams[i]) == 0)
				row = k;
		cJSON_AddStringToObject(s, "stream", src->streams[i]);
		cJSON_AddItemToObject(s, "cursor", jstr(sync_rows_get(st, row, 1)));
		cJSON_AddItemToObject(s, "full_sync_checkpoint",
		    jstr(sync_rows_get(st, row, 2)));
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
		/* Not part of the JSON: for Prometheus. */
		cJSON_AddItemToObject(s, "_success_epoch", jnum(sync_rows_get(st, row, 10)));
		cJSON_AddItemToArray(streams, s);
	}
	sync_rows_free(st);
	return SYNC_OK;
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

/* The monitoring-plugin line and its exit code. */
static int
format_check(const cJSON *root, const struct sync_opts *o, struct sync_buf *b)
{
	const cJSON *src, *st;
	struct sync_buf why = SYNC_BUF_INIT(0);
	int state = 0, nsrc = 0, nst = 0;
	double maxlag = 0, maxfail = 0;
	static const char *const names[] = { "OK", "WARNING", "CRITICAL", "UNKNOWN" };

	cJSON_ArrayForEach(src, cJSON_GetObjectItemCaseSensitive(root, "sources")) {
		double rej = num(src, "rejected", 0);

		if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(src, "enabled")))
			continue;
		nsrc++;
		/* SPEC §2: a warning while rejected rows are unresolved. */
		if (rej > 0) {
			if (state < 1)
				state = 1;
			sync_buf_addf(&why, "%s%s: %.0f rejected row(s) unresolved",
			    why.len ? "; " : "", sval(src, "name"), rej);
		}
		cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(src, "streams")) {
			double lag = num(st, "lag_seconds", -1);
			double f = num(st, "consecutive_failures", 0);
			int s = 0;
			const char *name = sval(src, "name"), *sn = sval(st, "stream");

			nst++;
			if (f > maxfail)
				maxfail = f;
			if (lag > maxlag)
				maxlag = lag;
			if (f >= (double)o->max_failures) {
				s = 2;
				sync_buf_addf(&why, "%s%s/%s: %.0f consecutive failures",
				    why.len ? "; " : "", name, sn, f);
			} else if (lag < 0) {
				s = 1;
				sync_buf_addf(&why, "%s%s/%s: never synced", why.len ?
				    "; " : "", name, sn);
			} else if (lag > 2.0 * (double)o->max_lag) {
				s = 2;
				sync_buf_addf(&why, "%s%s/%s: last success %.0fs ago",
				    why.len ? "; " : "", name, sn, lag);
			} else if (lag > (double)o->max_lag || f > 0) {
				s = 1;
				if (f > 0)
					sync_buf_addf(&why, "%s%s/%s: %.0f consecutive "
					    "failure(s)", why.len ? "; " : "", name, sn, f);
				else
					sync_buf_addf(&why, "%s%s/%s: last success %.0fs "
					    "ago", why.len ? "; " : "", name, sn, lag);
			}
			if (s > state)
				state = s;
		}
	}
	sync_buf_addf(b, "MSGSYNC %s - ", names[state]);
	if (why.len > 0)
		sync_buf_addf(b, "%s", why.data);
	else
		sync_buf_addf(b, "%d source(s), %d stream(s), max lag %.0fs", nsrc, nst,
		    maxlag);
	sync_buf_addf(b, " | max_lag=%.0fs;%ld;%ld max_failures=%.0f;;%ld\n", maxlag,
	    o->max_lag, 2 * o->max_lag, maxfail, o->max_failures);
	sync_buf_release(&why);
	return state;
}

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
format_prometheus(const cJSON *root, struct sync_buf *b)
{
	static const struct {
		const char *name, *key, *help;
		int stream;
	} m[] = {
		{ "msgsync_stream_lag_seconds", "lag_seconds",
		  "Seconds since the stream's last successful pass.", 1 },
		{ "msgsync_stream_consecutive_failures", "consecutive_failures",
		  "Failed passes of the stream since its last success.", 1 },
		{ "msgsync_stream_last_success_timestamp_seconds", "_success_epoch",
		  "Unix time of the stream's last successful pass.", 1 },
		{ "msgsync_source_pending_messages", "pending",
		  "Outgoing messages whose delivery status is still tracked.", 0 },
		{ "msgsync_source_consecutive_failures", "consecutive_failures",
		  "Failed passes of the source since its last success.", 0 },
		{ "msgsync_source_rejected_rows", "rejected",
		  "Rows that could not be stored, quarantined and not yet resolved.", 0 },
	};
	static const char *const tables[] = { "contacts", "conversations", "messages" };
	const cJSON *src, *st;
	size_t i, t;

	for (i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		sync_buf_addf(b, "# HELP %s %s\n# TYPE %s gauge\n", m[i].name, m[i].help,
		    m[i].name);
		cJSON_ArrayForEach(src, cJSON_GetObjectItemCaseSensitive(root, "sources")) {
			if (!m[i].stream) {
				sync_buf_addf(b, "%s{source=\"", m[i].name);
				prom_label(b, sval(src, "name"));
				sync_buf_addf(b, "\"} %.0f\n", num(src, m[i].key, 0));
				continue;
			}
			cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(src,
			    "streams")) {
				if (num(st, m[i].key, -1) < 0)
					continue;
				sync_buf_addf(b, "%s{source=\"", m[i].name);
				prom_label(b, sval(src, "name"));
				sync_buf_adds(b, "\",stream=\"");
				prom_label(b, sval(st, "stream"));
				sync_buf_addf(b, "\"} %.0f\n", num(st, m[i].key, 0));
			}
		}
	}
	sync_buf_adds(b, "# HELP msgsync_rows Rows stored per source and table.\n"
	    "# TYPE msgsync_rows gauge\n");
	cJSON_ArrayForEach(src, cJSON_GetObjectItemCaseSensitive(root, "sources"))
		for (t = 0; t < 3; t++) {
			sync_buf_adds(b, "msgsync_rows{source=\"");
			prom_label(b, sval(src, "name"));
			sync_buf_addf(b, "\",table=\"%s\"} %.0f\n", tables[t],
			    num(cJSON_GetObjectItemCaseSensitive(src, "rows"), tables[t], 0));
		}
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
		if (cJSON_IsObject(run))
			sync_buf_addf(b, "  last run: %s %s at %s\n", sval(run, "command"),
			    sval(run, "status"), sval(run, "started_at"));
		if (sval(src, "next_allowed_at") != NULL)
			sync_buf_addf(b, "  rate limited until %s\n",
			    sval(src, "next_allowed_at"));
		cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(src, "streams")) {
			const cJSON *e = cJSON_GetObjectItemCaseSensitive(st, "last_error");

			sync_buf_addf(b, "  %-14s cursor %s, last success %s, lag %s%.0fs, "
			    "%.0f failure(s)%s%s\n", sval(st, "stream"),
			    sval(st, "cursor") ? sval(st, "cursor") : "-",
			    sval(st, "last_success_at") ? sval(st, "last_success_at") :
			    "never", num(st, "lag_seconds", -1) < 0 ? "-" : "",
			    num(st, "lag_seconds", 0), num(st, "consecutive_failures", 0),
			    cJSON_IsObject(e) ? ": " : "",
			    cJSON_IsObject(e) ? sval(e, "message") : "");
		}
	}
}

enum sync_rc
sync_status_report(const struct sync_config *cfg, const struct sync_opts *o,
    char **out, int *exit_code, struct sync_err *err)
{
	struct sync_db *db;
	struct sync_buf b = SYNC_BUF_INIT(0);
	cJSON *root, *arr, *src, *st;
	char ts[32], *s;
	enum sync_rc rc = SYNC_OK;
	size_t i;

	*out = NULL;
	*exit_code = 0;
	for (i = 0; i < o->nsources; i++) {
		size_t k;

		for (k = 0; k < cfg->nsources; k++)
			if (strcmp(cfg->sources[k].name, o->sources[i]) == 0)
				break;
		if (k == cfg->nsources)
			return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
			    "no source named '%s' in %s", o->sources[i], cfg->path);
	}
	/* Reads only: no migration, no row (a monitoring role may only read). */
	if ((db = sync_db_open_readonly(cfg, err)) == NULL)
		return err->rc;
	root = cJSON_CreateObject();
	sync_time_format(time(NULL), ts, sizeof(ts));
	cJSON_AddStringToObject(root, "generated_at", ts);
	arr = cJSON_AddArrayToObject(root, "sources");
	for (i = 0; rc == SYNC_OK && i < cfg->nsources; i++) {
		if (!selected(o, &cfg->sources[i]))
			continue;
		src = cJSON_CreateObject();
		cJSON_AddItemToArray(arr, src);
		rc = gather_source(db, &cfg->sources[i], src, err);
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
		cJSON_ArrayForEach(src, arr)
			cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(src,
			    "streams"))
				cJSON_DeleteItemFromObjectCaseSensitive(st,
				    "_success_epoch");
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
