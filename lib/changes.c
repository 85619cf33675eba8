/*
 * changes.c -- sync-changes: the store's change feed (SPEC §2, msgsync(7)
 * CHANGES).  The feed is the SQL function msgsync_changes()
 * (migrations/008_changes.sql); this reads it through a server-side
 * cursor in one read-only transaction (one snapshot), FETCH_ROWS rows at a
 * time, and hands each line on as it comes: the server makes each row's
 * JSON, nothing is parsed here, and memory stays flat whatever the page.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FETCH_ROWS	"2000"

/* At most 18 digits: the SQL side's bound (a bigint, never overflowed). */
static const char *
digits(const char *s)
{
	size_t n = 0;

	while (s[n] >= '0' && s[n] <= '9')
		n++;
	return n >= 1 && n <= 18 ? s + n : NULL;
}

/* "0", or "v1.<txid>.<seq>" as msgsync_changes() writes its next. */
int
sync_changes_token_ok(const char *s)
{
	if (strcmp(s, "0") == 0)
		return 1;
	if (strncmp(s, "v1.", 3) != 0 || (s = digits(s + 3)) == NULL ||
	    *s != '.' || (s = digits(s + 1)) == NULL)
		return 0;
	return *s == '\0';
}

/* The --source names, each checked against the configuration. */
static enum sync_rc
source_names(const struct sync_config *cfg, const struct sync_opts *o,
    struct sync_buf *a, struct sync_err *err)
{
	size_t i, k;

	for (i = 0; i < o->nsources; i++) {
		for (k = 0; k < cfg->nsources; k++)
			if (strcmp(cfg->sources[k].name, o->sources[i]) == 0)
				break;
		if (k == cfg->nsources)
			return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
			    "no source named '%s' in %s", o->sources[i], cfg->path);
		if (sync_db_array_add(a, o->sources[i]) == -1)
			return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_CONFIG,
			    "out of memory");
	}
	if (o->nsources > 0 && sync_db_array_end(a) == -1)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_CONFIG, "out of memory");
	return SYNC_OK;
}

/*
 * Emits the lines of one fetch; *n counts the changes, *end is set by the
 * last line.  line is the caller's scratch buffer.
 */
static enum sync_rc
emit_rows(const struct sync_rows *rows, struct sync_buf *line, sync_emit_fn emit,
    void *arg, long long *n, int *end, struct sync_err *err)
{
	const char *table, *seq, *row;
	int i, k = sync_rows_count(rows);

	for (i = 0; i < k; i++) {
		table = sync_rows_get(rows, i, 0);
		seq = sync_rows_get(rows, i, 1);
		row = sync_rows_get(rows, i, 2);
		if (row == NULL)
			return sync_err_set(err, SYNC_ETEMP, SYNC_ERR_DATABASE,
			    "cannot read the change feed: a row without JSON");
		sync_buf_reset(line);
		if (table == NULL) {
			/* {"next":...,"has_more":...}: the last line. */
			*end = 1;
			if (sync_buf_adds(line, row) == -1 ||
			    sync_buf_add(line, "\n", 1) == -1)
				goto nomem;
		} else {
			/* The table is one of three names: no escaping. */
			if (sync_buf_adds(line, "{\"table\":\"") == -1 ||
			    sync_buf_adds(line, table) == -1 ||
			    sync_buf_adds(line, "\",\"seq\":") == -1 ||
			    sync_buf_adds(line, seq != NULL ? seq : "null") == -1 ||
			    sync_buf_adds(line, ",\"row\":") == -1 ||
			    sync_buf_adds(line, row) == -1 ||
			    sync_buf_add(line, "}\n", 2) == -1)
				goto nomem;
			(*n)++;
		}
		if (emit(arg, line->data, line->len) == -1)
			return sync_err_set(err, SYNC_EINTR, SYNC_ERR_INTERRUPTED,
			    "cannot write the change feed");
	}
	return SYNC_OK;
nomem:
	return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
}

enum sync_rc
sync_changes_run(const struct sync_config *cfg, const struct sync_opts *o,
    sync_emit_fn emit, void *arg, struct sync_err *err)
{
	static const char none[] = "{\"next\":\"0\",\"has_more\":false}\n";
	struct sync_buf tables = SYNC_BUF_INIT(0), sources = SYNC_BUF_INIT(0);
	struct sync_buf line = SYNC_BUF_INIT(0);
	struct sync_rows *rows = NULL;
	struct sync_db *db = NULL;
	const char *p[4];
	char max[24];
	long long n = 0;
	int end = 0, in_tx = 0;
	enum sync_rc rc;
	size_t i;

	if ((rc = source_names(cfg, o, &sources, err)) != SYNC_OK)
		goto out;
	for (i = 0; i < o->ntables; i++)
		if (sync_db_array_add(&tables, o->tables[i]) == -1) {
			rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_CONFIG,
			    "out of memory");
			goto out;
		}
	if (o->ntables > 0 && sync_db_array_end(&tables) == -1) {
		rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_CONFIG, "out of memory");
		goto out;
	}
	/* Reads only: no migration, no row (a follower may only read). */
	if ((db = sync_db_open_readonly(cfg, err)) == NULL) {
		rc = err->rc;
		goto out;
	}
	if (!sync_db_has_schema(db)) {
		/* Nothing stored yet: no change, and the beginning is next. */
		rc = emit(arg, none, sizeof(none) - 1) == -1 ?
		    sync_err_set(err, SYNC_EINTR, SYNC_ERR_INTERRUPTED,
		    "cannot write the change feed") : SYNC_OK;
		goto out;
	}
	snprintf(max, sizeof(max), "%ld", o->limit);
	p[0] = o->since;
	p[1] = max;
	p[2] = o->ntables > 0 ? tables.data : NULL;
	p[3] = o->nsources > 0 ? sources.data : NULL;
	/*
	 * One transaction (read-only, as the session is), one snapshot.  JIT
	 * compiling the plan of a large page costs more than it saves
	 * (seconds for a million rows).
	 */
	if ((rc = sync_db_begin(db, err)) != SYNC_OK)
		goto out;
	in_tx = 1;
	if ((rc = sync_db_exec(db, "begin reading the change feed",
	    "SET LOCAL jit = off", 0, NULL, NULL, err)) != SYNC_OK ||
	    (rc = sync_db_exec(db, "read the change feed",
	    "DECLARE changes NO SCROLL CURSOR FOR SELECT \"table\", seq, \"row\""
	    " FROM msgsync_changes($1, $2::integer, $3::text[], $4::text[])",
	    4, p, NULL, err)) != SYNC_OK)
		goto out;
	while (!end) {
		if ((rc = sync_db_exec(db, "read the change feed",
		    "FETCH " FETCH_ROWS " FROM changes", 0, NULL, &rows,
		    err)) != SYNC_OK)
			goto out;
		if (sync_rows_count(rows) == 0) {
			rc = sync_err_set(err, SYNC_ETEMP, SYNC_ERR_DATABASE,
			    "cannot read the change feed: it ended without "
			    "its next position");
			goto out;
		}
		rc = emit_rows(rows, &line, emit, arg, &n, &end, err);
		sync_rows_free(rows);
		rows = NULL;
		if (rc != SYNC_OK)
			goto out;
	}
	in_tx = 0;
	rc = sync_db_commit(db, err);
	if (rc == SYNC_OK)
		sync_log(LOG_DEBUG, "%lld changes after %s", n, o->since);
out:
	if (in_tx)
		sync_db_rollback(db);
	sync_rows_free(rows);
	sync_db_free(db);
	sync_buf_release(&line);
	sync_buf_release(&tables);
	sync_buf_release(&sources);
	return rc;
}
