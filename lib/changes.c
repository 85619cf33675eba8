/*
 * changes.c -- sync-changes: the store's change feed (SPEC §2, msgsync(7)
 * CHANGES).  The feed is the SQL function msgsync_changes()
 * (migrations/008_changes.sql); this runs it as one statement (one
 * snapshot) in libpq's single-row mode and hands each line on as it
 * arrives: the server makes each row's JSON, nothing is parsed here, and
 * memory stays that of one row whatever the page.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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
	size_t i;

	if (sync_config_check_sources(cfg, o, err) != SYNC_OK)
		return err->rc;
	for (i = 0; i < o->nsources; i++) {
		if (sync_db_array_add(a, o->sources[i]) == -1)
			return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_CONFIG,
			    "out of memory");
	}
	if (o->nsources > 0 && sync_db_array_end(a) == -1)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_CONFIG, "out of memory");
	return SYNC_OK;
}

/* One call's state: where lines go, what came. */
struct feed {
	sync_emit_fn	 emit;
	void		*arg;
	struct sync_buf	 line;		/* scratch */
	long long	 n;		/* changes */
	int		 end;		/* the last line came */
	int		 nomem;
};

/* Emits the line of one row of msgsync_changes(). */
static int
feed_row(void *arg, const struct sync_rows *rows)
{
	struct feed *f = arg;
	const char *table = sync_rows_get(rows, 0, 0);
	const char *seq = sync_rows_get(rows, 0, 1);
	const char *row = sync_rows_get(rows, 0, 2);

	sync_buf_reset(&f->line);
	if (row == NULL)
		row = "null";
	if (table == NULL) {
		/* {"next":...,"has_more":...}: the last line. */
		f->end = 1;
		if (sync_buf_adds(&f->line, row) == -1 ||
		    sync_buf_add(&f->line, "\n", 1) == -1)
			goto nomem;
	} else {
		/* The table is one of three names: no escaping. */
		if (sync_buf_adds(&f->line, "{\"table\":\"") == -1 ||
		    sync_buf_adds(&f->line, table) == -1 ||
		    sync_buf_adds(&f->line, "\",\"seq\":") == -1 ||
		    sync_buf_adds(&f->line, seq != NULL ? seq : "null") == -1 ||
		    sync_buf_adds(&f->line, ",\"row\":") == -1 ||
		    sync_buf_adds(&f->line, row) == -1 ||
		    sync_buf_add(&f->line, "}\n", 2) == -1)
			goto nomem;
		f->n++;
	}
	return f->emit(f->arg, f->line.data, f->line.len);
nomem:
	f->nomem = 1;
	return -1;
}

enum sync_rc
sync_changes_run(const struct sync_config *cfg, const struct sync_opts *o,
    sync_emit_fn emit, void *arg, struct sync_err *err)
{
	static const char none[] = "{\"next\":\"0\",\"has_more\":false}\n";
	struct sync_buf tables = SYNC_BUF_INIT(0), sources = SYNC_BUF_INIT(0);
	struct feed f = { emit, arg, SYNC_BUF_INIT(0), 0, 0, 0 };
	struct sync_db *db = NULL;
	const char *p[4];
	char max[24];
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
	 * One statement, one snapshot (read-only, as the session is).  JIT
	 * compiling the plan of a large page costs more than it saves
	 * (seconds for a million rows).
	 */
	if ((rc = sync_db_exec(db, "read the change feed", "SET jit = off", 0,
	    NULL, NULL, err)) != SYNC_OK)
		goto out;
	rc = sync_db_stream(db, "read the change feed", "SELECT \"table\", seq,"
	    " \"row\" FROM msgsync_changes($1, $2::integer, $3::text[],"
	    " $4::text[])", 4, p, feed_row, &f, "cannot write the change feed",
	    err);
	if (f.nomem) {
		sync_err_clear(err);
		rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE,
		    "out of memory");
	}
	if (rc == SYNC_OK && !f.end)
		rc = sync_err_set(err, SYNC_ETEMP, SYNC_ERR_DATABASE,
		    "cannot read the change feed: it ended without its next "
		    "position");
	if (rc == SYNC_OK)
		sync_log(LOG_DEBUG, "%lld changes after %s", f.n, o->since);
out:
	sync_db_free(db);
	sync_buf_release(&f.line);
	sync_buf_release(&tables);
	sync_buf_release(&sources);
	return rc;
}
