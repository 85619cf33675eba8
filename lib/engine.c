/*
 * engine.c -- one pass over the selected sources: locking, the sync_run
 * record, the per-stream page loop (fetch a page, write its rows and the
 * new cursor in one transaction, repeat), deadlines, signals, rate-limit
 * memory and counters.  Connectors only describe their APIs.
 */
#include <errno.h>
#ifdef __GLIBC__
#endif
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static void
counts_add(struct sync_counts *a, const struct sync_counts *b)
{
	a->fetched += b->fetched;
	a->inserted += b->inserted;
	a->updated += b->updated;
	a->unchanged += b->unchanged;
	a->api_calls += b->api_calls;
	a->retries += b->retries;
	a->gaps += b->gaps;
	a->sanitized += b->sanitized;
	a->rejected += b->rejected;
	a->outliers += b->outliers;
	a->missing += b->missing;
	a->pruned += b->pruned;
	a->gaps_healed += b->gaps_healed;
	a->gaps_unrecoverable += b->gaps_unrecoverable;
	a->gaps_open += b->gaps_open;
}

static int
want_stream(const struct sync_opts *o, const char *name)
{
	size_t i;

	if (o->nstreams == 0)
		return 1;
	for (i = 0; i < o->nstreams; i++)
		if (strcmp(o->streams[i], name) == 0)
			return 1;
	return 0;
}

/* What the sources of a pass share outside the engine (see connector.h). */
static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;

void
sync_shared_lock(void)
{
	pthread_mutex_lock(&shared_mu);
}

void
sync_shared_unlock(void)
{
	pthread_mutex_unlock(&shared_mu);
}

/* Everything one source's pass needs. */
struct job {
	const struct sync_config *cfg;
	const struct sync_opts *opts;
	const struct sync_source_cfg *src;
	struct sync_source_result *res;
	struct sync_db	*db;
	struct sync_ctx	 ctx;
	struct sync_counts source_counts;
	int		 id;
	double		 deadline;
	long long	 batches;	/* pages committed */
	struct sync_gaps gaps;		/* the running stream's (SYNC_CONN_GAPS) */
	struct sync_gapsum gapsum[16];	/* the source's, read once per pass */
	size_t		 ngapsum;
	int		 gapsum_read;
	struct sync_coverage_pass cov;	/* coverage.c */
	/* --prune, SYNC_CONN_CONV_WALKS: the conversations walked whole. */
	struct sync_strmap walked;
};

/*
 * The entity a stream counts as its own (SPEC §5): the one its name says
 * (contacts; conversations or chats), else that of its page's batch.
 */
static enum sync_entity
own_entity(const char *stream, const struct sync_page *pg)
{
	if (strcmp(stream, "contacts") == 0)
		return SYNC_ENT_CONTACT;
	if (strcmp(stream, "conversations") == 0 || strcmp(stream, "chats") == 0)
		return SYNC_ENT_CONVERSATION;
	return pg->batch.entity;
}

/*
 * Writes a page's side rows: those of the stream's own entity count in c,
 * the others in rel (SPEC §5: a stream counts only its own entity).
 */
static enum sync_rc
apply_side(struct job *j, const char *stream, struct sync_page *pg,
    struct sync_counts *c, struct sync_related *rel, struct sync_err *err)
{
	enum sync_entity own = own_entity(stream, pg);
	struct sync_counts sc;
	enum sync_rc rc;
	int k;

	for (k = 0; k < 2; k++) {
		struct sync_batch *b = &pg->side[k];
		int r = b->entity == SYNC_ENT_CONTACT ? SYNC_REL_CONTACTS :
		    SYNC_REL_CONVERSATIONS;

		if (b->entity == own) {
			if ((rc = sync_db_apply(j->db, j->id, b, c, err)) != SYNC_OK)
				return rc;
			continue;
		}
		memset(&sc, 0, sizeof(sc));
		if ((rc = sync_db_apply(j->db, j->id, b, &sc, err)) != SYNC_OK)
			return rc;
		rel[r].inserted += sc.inserted;
		rel[r].updated += sc.updated;
	}
	return SYNC_OK;
}

/*
 * A dry run's count of a page for a source that has no rows yet: every row
 * is new, counted as apply_side() and commit_page() would count it.
 */
static void
count_new(const char *stream, const struct sync_page *pg, struct sync_counts *c)
{
	enum sync_entity own = own_entity(stream, pg);
	int k;

	c->inserted += pg->batch.nrows;
	for (k = 0; k < 2; k++)
		if (pg->side[k].entity == own)
			c->inserted += pg->side[k].nrows;
}

/*
 * Writes a page's quarantined rows and resolves the earlier rejections at
 * the positions of the items it stores (but not at those it rejects again).
 */
static enum sync_rc
apply_rejects(struct job *j, const char *stream, const struct sync_page *pg,
    struct sync_err *err)
{
	enum sync_rc rc;
	size_t i, k;

	for (i = 0; i < pg->nresolves; i++) {
		for (k = 0; k < pg->nrejects; k++)
			if (strcmp(pg->rejects[k].position, pg->resolves[i]) == 0)
				break;
		if (k == pg->nrejects && (rc = sync_db_rejected_resolve(j->db, j->id,
		    stream, pg->resolves[i], err)) != SYNC_OK)
			return rc;
	}
	for (k = 0; k < pg->nrejects; k++)
		if ((rc = sync_db_reject(j->db, j->id, stream, &pg->rejects[k],
		    err)) != SYNC_OK)
			return rc;
	return SYNC_OK;
}

/*
 * Writes one page and the stream's new position in one transaction.  The
 * stored cursor is read under a row lock (which also serialises writers of
 * the stream) and merged with the page's, so that a backfill and an
 * incremental pass never move it backwards.  *merged gets the cursor now
 * stored (the caller frees it).
 */
static enum sync_rc
commit_page(struct job *j, const char *stream, enum sync_mode mode,
    int from_start, int *first_walk, const struct sync_state *base,
    struct sync_page *pg, struct sync_counts *c, struct sync_related *rel,
    char **merged, struct sync_err *err)
{
	const struct sync_connector *conn = j->src->conn;
	struct sync_state next = *base;
	enum sync_state_how how;
	char *stored = NULL, *fp = NULL, *m = NULL;
	enum sync_rc rc;

	*merged = NULL;
	pg->batch.stream = stream;	/* message.stream (SPEC §8) */
	if ((rc = sync_db_begin_cursor(j->db, j->id, stream, &stored, &fp, err)) !=
	    SYNC_OK ||
	    (rc = apply_side(j, stream, pg, c, rel, err)) != SYNC_OK ||
	    (rc = sync_db_apply(j->db, j->id, &pg->batch, c, err)) != SYNC_OK ||
	    (rc = apply_rejects(j, stream, pg, err)) != SYNC_OK ||
	    (rc = sync_db_mark_deleted(j->db, j->id, pg->deleted, pg->ndeleted, c,
	    err)) != SYNC_OK ||
	    (rc = sync_coverage_page(j->db, j->id, pg, err)) != SYNC_OK ||
	    (pg->done && from_start &&
	    (rc = sync_coverage_walked(j->db, j->id, stream, first_walk, err)) !=
	    SYNC_OK))
		goto fail;
	/* A reset taken up: the old backend's gaps no longer mean anything. */
	if ((conn->flags & SYNC_CONN_GAPS) && ((pg->force && (rc =
	    sync_db_gap_drop(j->db, j->id, stream, -1, err)) != SYNC_OK) ||
	    (rc = sync_gaps_apply(j->db, j->id, j->src->name, stream, &j->gaps,
	    pg, c, err)) != SYNC_OK))
		goto fail;
	if (pg->cursor == NULL)
		m = stored != NULL ? strdup(stored) : NULL;
	else if (pg->force || conn->cursor_max == NULL)
		m = strdup(pg->cursor);
	else
		m = conn->cursor_max(stored, pg->cursor);
	if ((pg->cursor != NULL || stored != NULL) && m == NULL) {
		rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
		goto fail;
	}
	next.cursor = m;
	/* The fingerprint goes with the cursor it describes. */
	next.fingerprint = fp;
	if (pg->fingerprint != NULL && m != NULL && pg->cursor != NULL &&
	    strcmp(m, pg->cursor) == 0)
		next.fingerprint = pg->fingerprint;
	if (pg->checkpoint != NULL)
		next.checkpoint = pg->checkpoint;
	if (mode != SYNC_MODE_FULL)
		how = SYNC_SAVE_INCR;
	else
		how = pg->done ? SYNC_SAVE_FULL_DONE : SYNC_SAVE_FULL;
	if ((rc = sync_db_save_commit(j->db, j->id, stream, &next, how, err)) !=
	    SYNC_OK)
		goto fail;
	free(stored);
	free(fp);
	*merged = m;
	return SYNC_OK;
fail:
	sync_db_rollback(j->db);
	free(stored);
	free(fp);
	free(m);
	return rc;
}

/*
 * The writer: while it commits page N, the stream's loop already fetches
 * and parses page N+1, so the network, JSON and database work overlap.  At
 * most one page is in flight, and page N+1 is handed over only after page
 * N has committed, so the order of commits (and of cursors) is the order
 * of the pages.
 */
struct writer {
	pthread_t	 tid;
	int		 running;
	int		 threaded;
	struct job	*j;
	const char	*stream;
	enum sync_mode	 mode;
	int		 from_start;	/* the walk began at the start of history */
	int		 first_walk;	/* its completion was the stream's first */
	int		 idle;		/* the page leaves the cursor as it was */
	struct sync_state base;		/* borrowed: fingerprint, checkpoint */
	struct sync_page pg;		/* owned while running */
	struct sync_counts counts;
	struct sync_related related[SYNC_REL_N];
	char		*merged;
	enum sync_rc	 rc;
	struct sync_err	 err;
};

static void *
writer_main(void *arg)
{
	struct writer *w = arg;
	const struct sync_page *pg = &w->pg;
	int touched = 0;

	/*
	 * A page that stores nothing and leaves the cursor where it was (an
	 * incremental pass that found nothing new) needs no transaction: one
	 * statement records the time of the pass and reads the stored cursor.
	 */
	if (w->idle && pg->batch.nrows == 0 && pg->side[0].nrows == 0 &&
	    pg->side[1].nrows == 0 && pg->ndeleted == 0 && pg->nrejects == 0 &&
	    pg->nresolves == 0 && pg->nhistory == 0 && pg->checkpoint == NULL &&
	    pg->fingerprint == NULL && !pg->force && pg->nmissing == 0 &&
	    pg->read_to <= pg->read_from) {
		w->rc = sync_db_state_touch(w->j->db, w->j->id, w->stream,
		    &w->merged, &touched, &w->err);
		if (w->rc != SYNC_OK || touched)
			return NULL;
	}
	w->rc = commit_page(w->j, w->stream, w->mode, w->from_start,
	    &w->first_walk, &w->base, &w->pg, &w->counts, w->related, &w->merged,
	    &w->err);
	return NULL;
}

/* Waits for the page in flight; its counts and cursor go to sr. */
static enum sync_rc
writer_join(struct writer *w, struct sync_stream_result *sr, char **committed,
    struct sync_err *err)
{
	int k;

	if (!w->running)
		return SYNC_OK;
	if (w->threaded)
		pthread_join(w->tid, NULL);
	w->running = 0;
	if (w->rc == SYNC_OK)		/* -v: one line per page */
		sync_log(LOG_DEBUG, "source '%s': stream '%s': page of %ld item(s): "
		    "%lld inserted, %lld updated, %lld unchanged; cursor '%.80s'%s%.80s%s",
		    w->j->src->name, w->stream, w->pg.fetched, w->counts.inserted,
		    w->counts.updated, w->counts.unchanged, w->merged != NULL ?
		    w->merged : "", w->pg.checkpoint != NULL ? ", checkpoint '" : "",
		    w->pg.checkpoint != NULL ? w->pg.checkpoint : "",
		    w->pg.checkpoint != NULL ? "'" : "");
	sync_page_release(&w->pg);
	sr->c.inserted += w->counts.inserted;
	sr->c.updated += w->counts.updated;
	sr->c.unchanged += w->counts.unchanged;
	sr->c.gaps_healed += w->counts.gaps_healed;
	sr->c.gaps_unrecoverable += w->counts.gaps_unrecoverable;
	sr->c.gaps_open += w->counts.gaps_open;
	memset(&w->counts, 0, sizeof(w->counts));
	for (k = 0; k < SYNC_REL_N; k++) {
		w->j->res->related[k].inserted += w->related[k].inserted;
		w->j->res->related[k].updated += w->related[k].updated;
	}
	memset(w->related, 0, sizeof(w->related));
	if (w->rc != SYNC_OK)
		return sync_err_set(err, w->rc, w->err.kind, "%s", w->err.msg);
	w->j->batches++;
	free(*committed);
	*committed = w->merged;
	w->merged = NULL;
	return SYNC_OK;
}

static void
writer_start(struct writer *w, struct sync_page *pg)
{
	w->pg = *pg;
	memset(pg, 0, sizeof(*pg));
	sync_err_clear(&w->err);
	w->rc = SYNC_OK;
	w->running = 1;
	/* An idle page is one short statement: no thread for it. */
	w->threaded = !w->idle &&
	    pthread_create(&w->tid, NULL, writer_main, w) == 0;
	if (!w->threaded)
		writer_main(w);		/* no thread: commit in this one */
}

/*
 * Whether a loop of the pass must stop before its next batch: on a signal
 * (*rc gets the interruption) or at the deadline (*stopped is set).
 */
static int
must_stop(const struct job *j, int *stopped, enum sync_rc *rc, struct sync_err *err)
{
	if (sync_stop_signal) {
		*rc = sync_err_set(err, SYNC_EINTR, SYNC_ERR_INTERRUPTED,
		    "interrupted by %s", sync_signal_name((int)sync_stop_signal));
		return 1;
	}
	if (j->deadline > 0 && sync_now_mono() >= j->deadline) {
		*stopped = 1;
		return 1;
	}
	return 0;
}

/* Replaces *dst by a copy of src. */
static enum sync_rc
replace(char **dst, const char *src, struct sync_err *err)
{
	char *c = strdup(src);

	if (c == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
	free(*dst);
	*dst = c;
	return SYNC_OK;
}

/*
 * Applies the source's on_bad_row to the rows of pg that cannot be stored
 * (SPEC §7.9): "fail" fails the page (nothing of it is written), while
 * "quarantine" keeps them for the page's transaction and counts them.
 * Rejections without a position of their own get the page's.
 */
static enum sync_rc
bad_rows(struct job *j, const struct sync_stream *st, struct sync_page *pg,
    struct sync_stream_result *sr, struct sync_err *err)
{
	const char *here = st->from != NULL ? st->from : "start", *next;
	const struct sync_reject *r;
	size_t i;

	/*
	 * Positions are pages': a page read from where rows were rejected,
	 * which stores items and moves on from there, read them again.
	 */
	next = st->mode == SYNC_MODE_FULL ? pg->checkpoint : pg->cursor;
	if (!(j->src->conn->flags & SYNC_CONN_ROW_POSITIONS) && pg->batch.nrows > 0 &&
	    next != NULL && strcmp(next, here) != 0 && sync_page_stored(pg, here) == -1)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
	if (pg->nrejects == 0)
		return SYNC_OK;
	for (i = 0; i < pg->nrejects; i++)
		if (pg->rejects[i].position == NULL &&
		    (pg->rejects[i].position = strdup(here)) == NULL)
			return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA,
			    "out of memory");
	r = &pg->rejects[0];
	if (!j->src->quarantine)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_DATA, "source '%s': "
		    "stream '%s': the row at position '%s' cannot be stored: %s%s; "
		    "nothing of its page was stored (on_bad_row = \"fail\"; "
		    "\"quarantine\" keeps such rows in rejected_row)", j->src->name,
		    st->name, r->position, r->reason, pg->nrejects > 1 ?
		    " (and more rows of the page)" : "");
	sr->c.rejected += (long long)pg->nrejects;
	sync_log(LOG_WARNING, "source '%s': stream '%s': %zu row(s) that cannot be "
	    "stored kept in rejected_row (the first at position '%s': %s)",
	    j->src->name, st->name, pg->nrejects, r->position, r->reason);
	return SYNC_OK;
}

/*
 * The checkpoint stored for a stream (NULL: none, or it cannot be read now,
 * e.g. the database went away: this is for the report only).
 */
static char *
stored_checkpoint(struct job *j, const char *stream)
{
	struct sync_state now;
	struct sync_err scratch = { SYNC_OK, SYNC_ERR_NONE, "" };
	char *c = NULL;

	memset(&now, 0, sizeof(now));
	if (sync_db_state_load(j->db, j->id, stream, &now, &scratch) == SYNC_OK &&
	    now.checkpoint != NULL)
		c = sync_strdup(now.checkpoint);
	sync_state_release(&now);
	return c;
}

/*
 * Whether the walk of st begins at the start of its history, so that its
 * completion makes the stream's history complete (SPEC §6 coverage): a
 * full walk without --since; an incremental one of a connector without a
 * cold-start window (its first walk began at the start and every later
 * one continues it) while the stream is not known walked yet, or of any
 * connector from no cursor when the source's cold_start_days is 0.
 */
static int
from_start(const struct job *j, const struct sync_stream *st)
{
	const struct sync_keydef *k;
	int cold = 0;

	if (st->mode == SYNC_MODE_FULL)
		return st->since == 0;
	if (st->mode != SYNC_MODE_INCR)
		return 0;
	for (k = j->src->conn->keys; k != NULL && k->name != NULL; k++)
		if (strcmp(k->name, "cold_start_days") == 0)
			cold = 1;
	if (cold)
		return st->state.cursor == NULL &&
		    sync_cfg_int(j->src, "cold_start_days", 7) == 0;
	return !st->state.walked;
}

/*
 * full-sync --prune of a type that walks conversation by conversation
 * (SYNC_CONN_CONV_WALKS): notes the conversations whose walks this page
 * reports as ended (at their start, or the window's floor), the only ones
 * prune() reconciles.
 */
static enum sync_rc
note_walked(struct job *j, const struct sync_page *pg, struct sync_err *err)
{
	size_t i;

	if (!j->opts->prune || !(j->src->conn->flags & SYNC_CONN_CONV_WALKS))
		return SYNC_OK;
	for (i = 0; i < pg->nhistory; i++)
		if (pg->history[i].walked && sync_strmap_put(&j->walked,
		    pg->history[i].conversation, 1) == -1)
			return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA,
			    "out of memory");
	return SYNC_OK;
}

/*
 * Runs one stream to its end, the deadline or the first error.  Returns
 * SYNC_OK (also when stopped by the deadline: *stopped is set).
 */
static enum sync_rc
run_stream(struct job *j, const char *name, struct sync_stream_result *sr,
    int *stopped, struct sync_err *err)
{
	const struct sync_opts *o = j->opts;
	struct sync_stream st;
	struct sync_page pg;
	struct sync_strmap open;
	struct writer w;
	char *committed = NULL;
	enum sync_rc rc, wrc;
	long long stored;
	int complete = 0, fresh = 0;

	memset(&st, 0, sizeof(st));
	memset(&w, 0, sizeof(w));
	memset(&open, 0, sizeof(open));
	snprintf(sr->name, sizeof(sr->name), "%s", name);
	st.name = sr->name;
	st.mode = o->import != NULL ? SYNC_MODE_IMPORT : o->cmd == SYNC_CMD_FULL ?
	    SYNC_MODE_FULL : SYNC_MODE_INCR;
	st.restart = o->restart;
	st.since = o->since_t;
	st.first = 1;
	st.counts = &sr->c;
	st.progress = sync_progress_open(j->src->name, name);
	if ((rc = sync_db_state_load(j->db, j->id, name, &st.state, err)) != SYNC_OK) {
		sync_progress_close(st.progress, 0);
		return rc;
	}
	sr->cursor_before = sync_strdup(st.state.cursor);
	committed = sync_strdup(st.state.cursor);
	/* Rows rejected earlier, which items stored at their place resolve. */
	if (!o->dry_run && (rc = sync_db_rejected_open(j->db, j->id, name, &open,
	    err)) != SYNC_OK)
		goto out;
	/* The open gaps to re-read; new ones only above the stored cursor. */
	memset(&j->gaps, 0, sizeof(j->gaps));
	if (!o->dry_run && (j->src->conn->flags & SYNC_CONN_GAPS)) {
		sr->gaps_kept = 1;
		j->gaps.floor = sync_cursor_int(st.state.cursor);
		j->gaps.window = sync_cfg_int(j->src, "gap_window",
		    SYNC_GAP_WINDOW_DEFAULT);
		if ((!j->gapsum_read && (rc = sync_db_gaps_summary(j->db, j->id,
		    j->gapsum, 16, &j->ngapsum, err)) != SYNC_OK) ||
		    (rc = sync_gaps_load(j->db, j->id, name, j->gapsum, j->ngapsum,
		    &j->gaps, err)) != SYNC_OK)
			goto out;
		j->gapsum_read = 1;
		st.gaps = j->gaps.v;
		st.ngaps = j->gaps.n;
		sr->c.gaps_open = j->gaps.open;
	}

	if (st.mode == SYNC_MODE_FULL) {
		if (st.restart || st.state.checkpoint == NULL) {
			fresh = 1;	/* the walk starts at its beginning */
			free(st.state.checkpoint);
			st.state.checkpoint = NULL;
			if (!o->dry_run) {
				if ((rc = sync_db_begin(j->db, err)) != SYNC_OK)
					goto out;
				if ((rc = sync_db_save_commit(j->db, j->id, name,
				    &st.state, SYNC_SAVE_FULL_START, err)) != SYNC_OK) {
					sync_db_rollback(j->db);
					goto out;
				}
			}
		} else
			sync_log(LOG_INFO, "source '%s': stream '%s': resuming the "
			    "full sync from '%s'", j->src->name, name,
			    st.state.checkpoint);
	}

	w.j = j;
	w.stream = sr->name;
	w.mode = st.mode;
	w.from_start = !o->dry_run && from_start(j, &st);
	for (;;) {
		long sanitized;
		int done, cut = 0;

		if (must_stop(j, stopped, &rc, err))
			break;
		st.from = st.mode == SYNC_MODE_FULL ? st.state.checkpoint :
		    st.state.cursor;
		memset(&pg, 0, sizeof(pg));
		sync_batch_init(&pg.side[0], SYNC_ENT_CONTACT);
		sync_batch_init(&pg.side[1], SYNC_ENT_CONVERSATION);
		pg.open = open.n > 0 ? &open : NULL;
		sync_http_set_counts(j->ctx.http, st.counts);
		rc = j->src->conn->fetch(&j->ctx, &st, &pg, err);
		sync_http_set_counts(j->ctx.http, &j->source_counts);
		if (rc != SYNC_OK && sync_http_cut(j->ctx.http)) {
			/* The deadline cut the request in flight: a clean stop. */
			sync_err_clear(err);
			rc = SYNC_OK;
			cut = 1;
		}
		/* The previous page must have committed before this one goes. */
		stored = sr->c.inserted + sr->c.updated + sr->c.unchanged;
		if ((wrc = writer_join(&w, sr, &committed, err)) != SYNC_OK)
			rc = wrc;
		sanitized = pg.batch.sanitized + pg.side[0].sanitized +
		    pg.side[1].sanitized;
		sr->c.fetched += pg.fetched;
		sync_progress_add(st.progress, pg.fetched, sr->c.inserted +
		    sr->c.updated + sr->c.unchanged - stored);
		sr->c.sanitized += sanitized;
		if (rc == SYNC_OK && sanitized > 0)
			sync_log(LOG_NOTICE, "source '%s': stream '%s': %ld "
			    "field(s) sanitised (invalid UTF-8, NUL bytes, bad "
			    "timestamps)", j->src->name, name, sanitized);
		if (rc == SYNC_OK)
			rc = bad_rows(j, &st, &pg, sr, err);
		if (rc != SYNC_OK || cut) {
			sync_page_release(&pg);
			if (cut && rc == SYNC_OK)
				*stopped = 1;
			break;
		}
		done = pg.done;
		w.idle = st.mode == SYNC_MODE_INCR && pg.cursor != NULL &&
		    st.state.cursor != NULL && strcmp(pg.cursor, st.state.cursor) == 0 &&
		    !(done && w.from_start);
		/* The next fetch starts where this page ends. */
		if (pg.cursor != NULL && (rc = replace(&st.state.cursor, pg.cursor,
		    err)) != SYNC_OK)
			break;
		if (pg.checkpoint != NULL && (rc = replace(&st.state.checkpoint,
		    pg.checkpoint, err)) != SYNC_OK)
			break;
		if (pg.fingerprint != NULL && (rc = replace(&st.state.fingerprint,
		    pg.fingerprint, err)) != SYNC_OK)
			break;
		if (o->dry_run) {
			/* A source without rows: all its rows are new (SPEC §2). */
			if (j->id == 0)
				count_new(name, &pg, &sr->c);
			sync_log(LOG_DEBUG, "source '%s': stream '%s': page of %ld "
			    "item(s) (dry run); cursor '%.80s'%s%.80s%s", j->src->name,
			    name, pg.fetched, st.state.cursor != NULL ?
			    st.state.cursor : "", pg.checkpoint != NULL ?
			    ", checkpoint '" : "", pg.checkpoint != NULL ?
			    pg.checkpoint : "", pg.checkpoint != NULL ? "'" : "");
			sync_page_release(&pg);
		} else {
			/* The coverage's start, before the pass writes anything. */
			if (!w.idle && !j->cov.ready && (rc = sync_coverage_begin(j->db,
			    &j->cov, err)) != SYNC_OK) {
				sync_page_release(&pg);
				break;
			}
			if (pg.nhistory > 0)
				j->cov.dirty = 1;
			if ((rc = note_walked(j, &pg, err)) != SYNC_OK) {
				sync_page_release(&pg);
				break;
			}
			w.base = st.state;
			writer_start(&w, &pg);
		}
		if (done) {
			complete = 1;
			break;
		}
		st.first = 0;
	}
	stored = sr->c.inserted + sr->c.updated + sr->c.unchanged;
	if ((wrc = writer_join(&w, sr, &committed, err)) != SYNC_OK && rc == SYNC_OK)
		rc = wrc;
	sync_progress_add(st.progress, 0, sr->c.inserted + sr->c.updated +
	    sr->c.unchanged - stored);
	/*
	 * A walk from the start completed: completeness may have changed; the
	 * first such walk of the stream makes every conversation's row due.
	 */
	if (complete && rc == SYNC_OK && w.from_start) {
		j->cov.dirty = 1;
		if (w.first_walk)
			j->cov.refresh_all = 1;
	}
out:
	sync_progress_close(st.progress, complete && rc == SYNC_OK);
	/* What is stored, not where the fetching got to (a dry run: that). */
	if (o->dry_run)
		sr->cursor_after = sync_strdup(st.state.cursor);
	else {
		sr->cursor_after = committed;
		committed = NULL;
	}
	free(committed);
	/* A full walk left unfinished: where the next full-sync resumes. */
	if (st.mode == SYNC_MODE_FULL && !o->dry_run && !(complete &&
	    rc == SYNC_OK))
		sr->checkpoint = stored_checkpoint(j, name);
	/* Walked whole in this pass, from its beginning: it may be pruned. */
	sr->whole = st.mode == SYNC_MODE_FULL && fresh && complete && rc == SYNC_OK;
	sync_strmap_clear(&open);
	sync_gaps_release(&j->gaps);
	sync_state_release(&st.state);
	return rc;
}

/* Drops from b the rows of the pending messages that were not claimed. */
static enum sync_rc
keep_claimed(const struct sync_pending_list *l, struct sync_batch *b,
    struct sync_err *err)
{
	unsigned char *keep;
	size_t i;

	if (b->nrows == 0)
		return SYNC_OK;
	if ((keep = calloc((size_t)b->nrows, 1)) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
	for (i = 0; i < l->n; i++)
		if (l->v[i].claimed && l->v[i].row >= 0 && l->v[i].row < b->nrows)
			keep[l->v[i].row] = 1;
	sync_batch_filter(b, keep);
	free(keep);
	return SYNC_OK;
}

/* Pending messages per status-poll chunk (one transaction each). */
#define POLL_CHUNK	500

/*
 * status-poll: follows the source's pending messages, soonest expiry
 * first, a chunk at a time.  A chunk's refreshed rows and its tracking
 * changes commit together, so a message leaves pending_message only in the
 * transaction that stores why.
 */
static enum sync_rc
run_poll(struct job *j, int *stopped, struct sync_err *err)
{
	struct sync_poll_counts *pc = &j->res->poll;
	struct sync_counts c, wc;
	struct sync_poll_counts settled;
	struct sync_pending_list l;
	struct sync_batch b;
	char after[64] = "";
	enum sync_rc rc = SYNC_OK;
	struct sync_progress *prog;
	size_t n;
	int complete = 0;

	memset(&c, 0, sizeof(c));
	prog = sync_progress_open(j->src->name, "delivery-status");
	for (;;) {
		if (must_stop(j, stopped, &rc, err))
			break;
		if ((rc = sync_db_pending_load(j->db, j->id, after[0] ? after : NULL,
		    POLL_CHUNK, &l, err)) != SYNC_OK)
			break;
		if ((n = l.n) == 0) {
			complete = 1;
			break;
		}
		snprintf(after, sizeof(after), "%s", l.v[n - 1].key);
		sync_batch_init(&b, SYNC_ENT_MESSAGE);
		b.notrack = 1;
		sync_http_set_counts(j->ctx.http, &c);
		rc = j->src->conn->poll(&j->ctx, &l, &b, err);
		if (rc != SYNC_OK && sync_http_cut(j->ctx.http)) {
			/* The deadline cut a request: a clean stop. */
			sync_err_clear(err);
			rc = SYNC_OK;
			*stopped = 1;
			sync_batch_release(&b);
			sync_pending_release(&l);
			break;
		}
		memset(&wc, 0, sizeof(wc));
		memset(&settled, 0, sizeof(settled));
		/*
		 * A pass of another command (incr-sync, full-sync) may have
		 * stored some of them meanwhile, with newer data: only the
		 * ones it did not touch are written, and they are locked.
		 */
		if (rc == SYNC_OK && (rc = sync_db_begin(j->db, err)) == SYNC_OK) {
			if ((rc = sync_db_pending_claim(j->db, j->id, &l, err)) !=
			    SYNC_OK || (rc = keep_claimed(&l, &b, err)) != SYNC_OK ||
			    (rc = sync_db_apply(j->db, j->id, &b, &wc, err)) != SYNC_OK ||
			    (rc = sync_db_pending_settle(j->db, j->id, &l, &settled,
			    err)) != SYNC_OK || (rc = sync_db_commit(j->db, err)) !=
			    SYNC_OK)
				sync_db_rollback(j->db);
		}
		if (rc == SYNC_OK) {
			pc->polled += settled.polled;
			pc->updated += wc.updated;
			pc->finalized += settled.finalized;
			pc->expired += settled.expired;
			pc->still_pending += settled.still_pending;
			c.fetched += b.nrows;
			c.inserted += wc.inserted;
			c.updated += wc.updated;
			c.unchanged += wc.unchanged;
			sync_log(LOG_DEBUG, "source '%s': status-poll: chunk of %zu "
			    "pending message(s): %lld updated, %lld final, %lld "
			    "expired, %lld still pending", j->src->name, n,
			    wc.updated, settled.finalized, settled.expired,
			    settled.still_pending);
			sync_progress_add(prog, (long long)n, wc.inserted +
			    wc.updated + wc.unchanged);
		}
		c.sanitized += b.sanitized;
		sync_batch_release(&b);
		sync_pending_release(&l);
		if (rc != SYNC_OK)
			break;
		if (n < POLL_CHUNK) {
			complete = 1;
			break;
		}
	}
	sync_progress_close(prog, complete);
	pc->api_calls += c.api_calls;
	counts_add(&j->source_counts, &c);
	return rc;
}

static void
source_fail(struct job *j, const struct sync_err *e)
{
	struct sync_source_result *r = j->res;

	if (r->err.rc == SYNC_OK)
		r->err = *e;
	r->status = e->rc == SYNC_EINTR ? SYNC_ST_INTERRUPTED : SYNC_ST_FAILED;
}

/* A stream error that leaves the other streams of the source worth trying. */
static int
stream_local(const struct sync_err *e)
{
	return e->rc == SYNC_EDATA;
}

/*
 * At the end of a source's pass that stored anything: the coverage rows
 * of the conversations it touched (coverage.c).  A failure fails the
 * source unless it failed already.
 */
static void
coverage_end(struct job *j)
{
	const struct sync_source_result *r = j->res;
	struct sync_err e;
	long long n = 0;
	size_t i;
	int k;

	if (j->opts->dry_run || !j->cov.ready || j->db == NULL)
		return;
	for (i = 0; i < r->nstreams; i++)
		n += r->streams[i].c.inserted + r->streams[i].c.updated;
	for (k = 0; k < SYNC_REL_N; k++)
		n += r->related[k].inserted + r->related[k].updated;
	if (n == 0 && !j->cov.dirty)
		return;
	sync_err_clear(&e);
	if (sync_coverage_end(j->db, j->id, j->src, &j->cov, &e) != SYNC_OK &&
	    r->err.rc == SYNC_OK)
		source_fail(j, &e);
}

/*
 * full-sync --prune (SPEC §8): reconciles the streams this pass walked
 * whole, from their beginning, against what their walks saw (started at
 * start).  Nothing after an interruption.  A type whose messages move
 * between streams (SMSEagle's folders) is reconciled only when every one
 * of its streams was walked whole: a message the walk of one did not see
 * may have moved to another.
 */
static enum sync_rc
prune(struct job *j, const char *start, struct sync_err *err)
{
	struct sync_source_result *r = j->res;
	char *names[16], window[32], *why = NULL, **convs = NULL;
	long long missing[16], pruned[16];
	size_t i, k, n = 0, nconvs = 0;
	enum sync_rc rc;

	if (sync_stop_signal)
		return SYNC_OK;
	for (k = 0; k < r->nstreams && k < 16; k++)
		if (r->streams[k].whole)
			names[n++] = r->streams[k].name;
		else
			why = r->streams[k].name;
	if ((j->src->conn->flags & SYNC_CONN_MOVES) && (why != NULL ||
	    r->nstreams < j->src->nstreams)) {
		sync_log(LOG_NOTICE, "source '%s': nothing pruned: its messages move "
		    "between streams, and %s%s%s", j->src->name, why != NULL ?
		    "stream '" : "not every stream was walked", why != NULL ? why :
		    "", why != NULL ? "' was not walked whole from its beginning" : "");
		return SYNC_OK;
	}
	for (k = 0; k < r->nstreams; k++)
		if (!r->streams[k].whole)
			sync_log(LOG_NOTICE, "source '%s': stream '%s': nothing pruned: "
			    "it was not walked whole from its beginning in this pass",
			    j->src->name, r->streams[k].name);
	if (n == 0)
		return SYNC_OK;
	if (j->opts->since_t > 0)
		sync_time_format(j->opts->since_t, window, sizeof(window));
	/* Only the conversations walked, for a type that walks them one by one. */
	if ((j->src->conn->flags & SYNC_CONN_CONV_WALKS) &&
	    (convs = calloc(j->walked.n + 1, sizeof(*convs))) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
	for (i = 0; convs != NULL && i < j->walked.cap; i++)
		if (j->walked.keys[i] != NULL)
			convs[nconvs++] = j->walked.keys[i];
	rc = sync_db_prune(j->db, j->id, names, n, start, j->opts->since_t > 0 ?
	    window : NULL, convs, nconvs, missing, pruned, err);
	free(convs);
	if (rc != SYNC_OK)
		return rc;
	for (i = 0, k = 0; k < r->nstreams && i < n; k++) {
		if (!r->streams[k].whole)
			continue;
		r->streams[k].c.missing = missing[i];
		r->streams[k].c.pruned = pruned[i];
		if (missing[i] > 0 || pruned[i] > 0)
			sync_log(LOG_INFO, "source '%s': stream '%s': %lld message(s) "
			    "newly missing upstream, %lld pruned (missing on two "
			    "complete walks)", j->src->name, names[i], missing[i],
			    pruned[i]);
		i++;
	}
	return SYNC_OK;
}

static void
run_source(struct job *j)
{
	const struct sync_opts *o = j->opts;
	const struct sync_source_cfg *src = j->src;
	struct sync_source_result *r = j->res;
	struct sync_err err, scratch, serr[16];
	int ran[16];
	long long run_id = 0;
	int got = 0, lock = (int)o->cmd, stopped = 0, reused = 0;
	time_t until;
	size_t i;
	char when[32], prune_start[64];

	sync_err_clear(&err);
	for (i = 0; i < 16; i++) {
		sync_err_clear(&serr[i]);
		ran[i] = 0;
	}
	r->status = SYNC_ST_OK;
	if (o->cmd == SYNC_CMD_POLL && src->conn->poll == NULL) {
		r->status = SYNC_ST_SKIPPED;
		snprintf(r->reason, sizeof(r->reason), "%s",
		    src->conn->no_poll_reason != NULL ? src->conn->no_poll_reason :
		    "this source type has no delivery status to poll");
		return;
	}
	if (sync_stop_signal) {
		sync_err_set(&err, SYNC_EINTR, SYNC_ERR_INTERRUPTED,
		    "interrupted by %s before the source was started",
		    sync_signal_name((int)sync_stop_signal));
		source_fail(j, &err);
		return;
	}
	/*
	 * The pool hands over the connection of its last source, if any; one
	 * that broke since (a server restart between sources) is replaced.
	 */
	if (j->db != NULL && sync_db_source(j->db, src, &j->id, &err) != SYNC_OK) {
		if (sync_db_reusable(j->db)) {
			source_fail(j, &err);
			goto out;
		}
		sync_db_free(j->db);
		j->db = NULL;
		sync_err_clear(&err);
	} else if (j->db != NULL)
		reused = 1;
	/* A dry run writes nothing, not even the schema or the source row. */
	if ((!reused && ((j->db = o->dry_run ?
	    sync_db_open_readonly(j->cfg, &err) : sync_db_open(j->cfg, &err)) ==
	    NULL ||
	    sync_db_source(j->db, src, &j->id, &err) != SYNC_OK)) ||
	    sync_db_lock(j->db, j->id, lock, &got, &err) != SYNC_OK) {
		source_fail(j, &err);
		goto out;
	}
	if (!got) {
		r->status = SYNC_ST_SKIPPED;
		snprintf(r->reason, sizeof(r->reason), "another %s of source '%s' "
		    "is running", sync_cmd_name(o->cmd), src->name);
		sync_log(LOG_INFO, "source '%s': skipped: %s", src->name, r->reason);
		goto out;
	}
	if (sync_db_next_allowed(j->db, j->id, &until, &err) != SYNC_OK) {
		source_fail(j, &err);
		goto out;
	}
	if (until > 0) {
		sync_time_format(until, when, sizeof(when));
		r->status = SYNC_ST_SKIPPED;
		snprintf(r->reason, sizeof(r->reason), "rate limited until %s", when);
		sync_log(LOG_INFO, "source '%s': skipped: %s", src->name, r->reason);
		goto out;
	}
	sync_db_trust_paths(j->db, o->import != NULL);
	if (!o->dry_run &&
	    sync_db_run_start(j->db, j->id, sync_cmd_name(o->cmd), &run_id, &err) != SYNC_OK) {
		source_fail(j, &err);
		goto out;
	}

	j->ctx.cfg = j->cfg;
	j->ctx.src = src;
	j->ctx.opts = o;
	j->ctx.source_counts = &j->source_counts;
	if ((j->ctx.http = sync_http_new(j->cfg, src, &err)) == NULL) {
		source_fail(j, &err);
		goto finish;
	}
	sync_http_set_deadline(j->ctx.http, j->deadline);
	/* Requests outside a stream's pages count for the source. */
	sync_http_set_counts(j->ctx.http, &j->source_counts);
	if (src->conn->begin != NULL && src->conn->begin(&j->ctx, &err) != SYNC_OK) {
		if (sync_http_cut(j->ctx.http)) {
			/* The deadline cut a request of begin: a clean stop. */
			sync_err_clear(&err);
			stopped = 1;
			goto stop;
		}
		source_fail(j, &err);
		goto end;
	}
	if (j->ctx.skip[0] != '\0') {
		r->status = SYNC_ST_SKIPPED;
		snprintf(r->reason, sizeof(r->reason), "%s", j->ctx.skip);
		sync_log(LOG_INFO, "source '%s': skipped: %s", src->name, r->reason);
		goto end;
	}
	if (o->cmd == SYNC_CMD_POLL) {
		if (run_poll(j, &stopped, &err) != SYNC_OK)
			source_fail(j, &err);
		goto stop;
	}
	if (o->cmd == SYNC_CMD_MEDIA) {
		if (sync_media_source(j->db, j->id, &j->ctx, j->deadline,
		    &r->media, &stopped, &err) != SYNC_OK)
			source_fail(j, &err);
		goto stop;
	}
	if (o->prune && sync_db_prune_begin(j->db, prune_start,
	    sizeof(prune_start), &err) != SYNC_OK) {
		source_fail(j, &err);
		goto end;
	}
	for (i = 0; i < src->nstreams && r->nstreams < sizeof(r->streams) /
	    sizeof(r->streams[0]); i++) {
		struct sync_stream_result *sr;

		if (!want_stream(o, src->streams[i]) || (o->import != NULL &&
		    strcmp(src->streams[i], src->conn->import_stream) != 0))
			continue;
		sr = &r->streams[r->nstreams++];
		if (run_stream(j, src->streams[i], sr, &stopped, &serr[i]) != SYNC_OK) {
			source_fail(j, &serr[i]);
			if (!stream_local(&serr[i]))
				break;
			continue;
		}
		ran[i] = !stopped;
		if (stopped)
			break;
	}
	if (o->prune && prune(j, prune_start, &err) != SYNC_OK)
		source_fail(j, &err);
	coverage_end(j);
stop:
	if (stopped && r->status == SYNC_ST_OK) {
		r->status = SYNC_ST_PARTIAL;
		snprintf(r->reason, sizeof(r->reason), "stopped at a batch boundary: "
		    "max runtime reached");
	}
end:
	if (j->db != NULL)
		sync_db_prune_end(j->db);
	sync_strmap_clear(&j->walked);
	if (src->conn->end != NULL)
		src->conn->end(&j->ctx);
finish:
	/*
	 * Each selected stream's outcome, for sync-status: its own error, or
	 * the source's when the source failed before the stream ran.  Neither
	 * an interruption nor the deadline is a failure.
	 */
	for (i = 0; !o->dry_run && o->cmd != SYNC_CMD_POLL &&
	    o->cmd != SYNC_CMD_MEDIA && i < src->nstreams &&
	    i < 16; i++) {
		const struct sync_err *e = serr[i].rc != SYNC_OK ? &serr[i] :
		    ran[i] ? NULL : &r->err;

		if (!want_stream(o, src->streams[i]) || (o->import != NULL &&
		    strcmp(src->streams[i], src->conn->import_stream) != 0) ||
		    r->status == SYNC_ST_SKIPPED ||
		    (e != NULL && (e->rc == SYNC_OK || e->rc == SYNC_EINTR)))
			continue;
		sync_err_clear(&scratch);
		if (sync_db_stream_outcome(j->db, j->id, src->streams[i], e,
		    &scratch) != SYNC_OK) {
			if (e == NULL)
				source_fail(j, &scratch);
			break;
		}
	}
	/* A rate limit longer than this pass could wait is remembered. */
	if (r->err.rc != SYNC_OK && r->err.kind == SYNC_ERR_RATE_LIMIT &&
	    j->ctx.http != NULL && !o->dry_run) {
		double w = sync_http_last_wait(j->ctx.http);

		if (w > 0) {
			sync_err_clear(&scratch);
			sync_db_set_next_allowed(j->db, j->id,
			    time(NULL) + (time_t)ceil(w), &scratch);
		}
	}
	sync_http_free(j->ctx.http);
	j->ctx.http = NULL;
	for (i = 0; i < r->nstreams; i++)
		counts_add(&r->totals, &r->streams[i].c);
	counts_add(&r->totals, &j->source_counts);
	if (run_id > 0) {
		sync_err_clear(&scratch);
		sync_db_run_finish(j->db, run_id, r, &scratch);
	}
out:
	if (j->db != NULL) {
		if (got) {
			sync_err_clear(&scratch);
			sync_db_unlock(j->db, j->id, lock, &scratch);
		}
		if (!sync_db_reusable(j->db)) {
			sync_db_free(j->db);
			j->db = NULL;
		}
	}
	if (r->err.rc != SYNC_OK && r->status == SYNC_ST_FAILED) {
		char who[96];

		/* Some messages name their source already. */
		snprintf(who, sizeof(who), "source '%s': ", src->name);
		if (r->err.rc == SYNC_EINTR)
			sync_log(LOG_NOTICE, "%s%s", strncmp(r->err.msg, who,
			    strlen(who)) == 0 ? "" : who, r->err.msg);
		else		/* the summary line cron mails (SPEC §2) */
			sync_log_failure("%s%s", strncmp(r->err.msg, who,
			    strlen(who)) == 0 ? "" : who, r->err.msg);
	}
}

/* The pool: each worker takes the next source until none is left. */
struct pool {
	pthread_mutex_t	 mu;
	struct job	*jobs;
	size_t		 n, next;
	struct sync_db	*first;	/* the pass's own connection, for one worker */
	struct sync_db	*spare;	/* one left at the end, for what follows */
};

static void *
pool_worker(void *arg)
{
	struct pool *p = arg;
	struct sync_db *db = NULL;
	size_t i;

	/* One database connection serves this worker's sources in turn. */
	for (;;) {
		pthread_mutex_lock(&p->mu);
		i = p->next < p->n ? p->next++ : p->n;
		if (db == NULL) {
			db = p->first;
			p->first = NULL;
		}
		if (i == p->n && p->spare == NULL) {
			p->spare = db;
			db = NULL;
		}
		pthread_mutex_unlock(&p->mu);
		if (i == p->n) {
			sync_db_free(db);
			return NULL;
		}
		p->jobs[i].db = db;
		run_source(&p->jobs[i]);
		db = p->jobs[i].db;
		p->jobs[i].db = NULL;
	}
}

/*
 * Runs the jobs, up to `width` sources at a time (sync.jobs).  Each source
 * has its own HTTP handle and result, so one failing or slow source neither
 * stops nor slows the others; a worker's database connection passes from
 * one of its sources to the next while it is healthy and idle.  Returns
 * one of the connections left (NULL: none), which the caller frees.
 */
static struct sync_db *
run_jobs(struct job *jobs, size_t n, long width, struct sync_db *db)
{
	struct pool p;
	pthread_t *tids = NULL;
	size_t i, nt = 0, want;

	p.jobs = jobs;
	p.n = n;
	p.next = 0;
	p.first = db;
	p.spare = NULL;
	pthread_mutex_init(&p.mu, NULL);
	/* This thread works too: up to width - 1 more, one per source. */
	want = width > 1 ? (size_t)width - 1 : 0;
	if (n > 0 && want > n - 1)
		want = n - 1;
	if (want > 0 && (tids = calloc(want, sizeof(*tids))) == NULL)
		sync_log(LOG_WARNING, "out of memory: running the sources one "
		    "at a time");
	for (i = 0; tids != NULL && i < want; i++)
		if (pthread_create(&tids[nt], NULL, pool_worker, &p) == 0)
			nt++;
	pool_worker(&p);
	for (i = 0; i < nt; i++)
		pthread_join(tids[i], NULL);
	free(tids);
	sync_db_free(p.first);		/* no worker took it (none ran) */
	pthread_mutex_destroy(&p.mu);
	return p.spare;
}

static int
has_stream(const struct sync_source_cfg *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->nstreams; i++)
		if (strcmp(s->streams[i], name) == 0)
			return 1;
	return 0;
}

static enum sync_rc
select_sources(const struct sync_config *cfg, const struct sync_opts *o,
    const struct sync_source_cfg **sel, size_t *n, struct sync_err *err)
{
	size_t i, k, m;

	*n = 0;
	if (sync_config_check_sources(cfg, o, err) != SYNC_OK)
		return err->rc;
	for (i = 0; i < cfg->nsources; i++) {
		const struct sync_source_cfg *s = &cfg->sources[i];
		int pick = o->nsources == 0 ? s->enabled : 0;

		for (k = 0; k < o->nsources; k++)
			if (strcmp(s->name, o->sources[k]) == 0)
				pick = 1;
		if (pick)
			sel[(*n)++] = s;
	}
	for (k = 0; k < o->nstreams; k++) {
		int found = 0;

		for (i = 0; i < *n && !found; i++)
			for (m = 0; m < sel[i]->nstreams; m++)
				if (strcmp(sel[i]->streams[m], o->streams[k]) == 0)
					found = 1;
		if (!found)
			return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
			    "no selected source has a stream named '%s'",
			    o->streams[k]);
	}
	return SYNC_OK;
}

enum sync_rc
sync_pass_run(const struct sync_config *cfg, const struct sync_opts *o,
    struct sync_result *res, struct sync_err *err)
{
	const struct sync_source_cfg **sel;
	struct job *jobs;
	struct sync_db *db = NULL;
	double t0 = sync_now_mono(), maxrt;
	size_t i, n, nok = 0, nfail = 0, nskip = 0, npart = 0, nintr = 0;
	long long batches = 0;
	enum sync_rc rc;

	memset(res, 0, sizeof(*res));
	res->cmd = o->cmd;
	res->started_at = time(NULL);
	res->dry_run = o->dry_run;
	res->prune = o->prune;
	if ((sel = calloc(cfg->nsources + 1, sizeof(*sel))) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_CONFIG, "out of memory");
	if ((rc = select_sources(cfg, o, sel, &n, err)) != SYNC_OK) {
		free(sel);
		return rc;
	}
	if (o->import != NULL && n == 1 && (sel[0]->conn->import_stream == NULL ||
	    !has_stream(sel[0], sel[0]->conn->import_stream))) {
		rc = sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG, "source '%s' "
		    "(type %s) cannot --import%s", sel[0]->name, sel[0]->type,
		    sel[0]->conn->import_stream == NULL ? "" :
		    ": its streams lack the one that imports");
		free(sel);
		return rc;
	}
	/*
	 * The database first (migrated here, once): one that cannot be used
	 * stops the pass before any source runs, its cause reported once
	 * rather than once per source.  The connection then serves the
	 * first sources.
	 */
	if (n > 0 && (db = o->dry_run ? sync_db_open_readonly(cfg, err) :
	    sync_db_open(cfg, err)) == NULL) {
		free(sel);
		return err->rc;
	}
	if ((res->sources = calloc(n + 1, sizeof(*res->sources))) == NULL) {
		free(sel);
		sync_db_free(db);
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_CONFIG, "out of memory");
	}
	res->nsources = n;
	sync_signals_install();
	sync_progress_setup(o);
	sync_http_global(1);
	maxrt = o->max_runtime >= 0 ? o->max_runtime : cfg->max_runtime;
	if ((jobs = calloc(n + 1, sizeof(*jobs))) == NULL) {
		free(sel);
		sync_db_free(db);
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_CONFIG, "out of memory");
	}
	for (i = 0; i < n; i++) {
		jobs[i].cfg = cfg;
		jobs[i].opts = o;
		jobs[i].src = sel[i];
		jobs[i].res = &res->sources[i];
		jobs[i].res->name = sel[i]->name;
		jobs[i].res->type = sel[i]->type;
		jobs[i].deadline = maxrt > 0 ? t0 + maxrt : 0;
	}
	if (o->cmd == SYNC_CMD_MEDIA)
		sync_media_pass_begin(o);
	sync_batch_calling_code(cfg->default_calling_code);
	/* It serves the first source; one connection comes back. */
	db = run_jobs(jobs, n, cfg->jobs, db);
	sync_progress_end();
	for (i = 0; i < n; i++) {
		batches += jobs[i].batches;
		switch (res->sources[i].status) {
		case SYNC_ST_OK:	nok++; break;
		case SYNC_ST_SKIPPED:	nskip++; break;
		case SYNC_ST_PARTIAL:	npart++; break;
		case SYNC_ST_INTERRUPTED: nintr++; break;
		default:		nfail++; break;
		}
	}
	free(jobs);
	sync_http_global(0);
	free(sel);
	res->signo = (int)sync_stop_signal;
	/* One person across sources: once, after the sources (identity.c). */
	if (!o->dry_run && n > 0 && res->signo == 0 &&
	    sync_identity_resolve(cfg, db, &res->err) != SYNC_OK)
		sync_log_failure("%s", res->err.msg);
	sync_db_free(db);
	/* One line for the interruption, whatever the sources said. */
	if (res->signo != 0)
		sync_log_failure("interrupted by %s after committing %lld "
		    "batch%s; the next run resumes", sync_signal_name(res->signo),
		    batches, batches == 1 ? "" : "es");
	/* SPEC §5: any failure makes the pass failed, whatever else ran. */
	if (nfail > 0 || res->err.rc != SYNC_OK)
		res->status = SYNC_ST_FAILED;
	else if (res->signo != 0 || nintr > 0)
		res->status = SYNC_ST_INTERRUPTED;
	else if (npart > 0)
		res->status = SYNC_ST_PARTIAL;
	else if (nok == 0 && nskip > 0)
		res->status = SYNC_ST_SKIPPED;
	else
		res->status = SYNC_ST_OK;
	res->duration_ms = (long long)llround((sync_now_mono() - t0) * 1000.0);
	return SYNC_OK;
}

enum sync_rc
sync_login_run(const struct sync_config *cfg, const struct sync_opts *o,
    sync_prompt_fn ask, void *arg, struct sync_err *err)
{
	const struct sync_source_cfg **all, *src;
	size_t n;
	enum sync_rc rc;

	if (o->nsources != 1)
		return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
		    "--login needs exactly one --source");
	if ((all = calloc(cfg->nsources + 1, sizeof(*all))) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_CONFIG, "out of memory");
	rc = select_sources(cfg, o, all, &n, err);
	src = all[0];
	free(all);
	if (rc != SYNC_OK)
		return rc;
	if (src->conn->login == NULL)
		return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG, "source '%s' "
		    "(type %s) has no --login: its credentials are in the "
		    "configuration", src->name, src->type);
	sync_signals_install();
	return src->conn->login(cfg, src, ask, arg, err);
}

void
sync_result_release(struct sync_result *res)
{
	size_t i, k;

	if (res == NULL || res->sources == NULL)
		return;
	for (i = 0; i < res->nsources; i++)
		for (k = 0; k < res->sources[i].nstreams; k++) {
			free(res->sources[i].streams[k].cursor_before);
			free(res->sources[i].streams[k].cursor_after);
			free(res->sources[i].streams[k].checkpoint);
		}
	free(res->sources);
	res->sources = NULL;
}

/* Exit codes by severity: configuration first, then credentials, ... */
static int
severity(int code)
{
	switch (code) {
	case 78:	return 6;
	case 77:	return 5;
	case 65:	return 4;
	case 69:	return 3;
	case 75:	return 2;
	case 70:	return 1;
	default:	return 0;
	}
}

int
sync_result_exit_code(const struct sync_result *res)
{
	size_t i, nok = 0;
	int worst = 0, code;

	if (res->signo != 0)
		return 128 + res->signo;
	for (i = 0; i < res->nsources; i++) {
		const struct sync_source_result *s = &res->sources[i];

		if (s->status != SYNC_ST_FAILED) {
			nok++;
			continue;
		}
		code = sync_rc_exit_code(s->err.rc);
		if (worst == 0 || severity(code) > severity(worst))
			worst = code;
	}
	/* The identity resolution failed: the store's code. */
	if (res->err.rc != SYNC_OK) {
		code = sync_rc_exit_code(res->err.rc);
		return worst == 0 || severity(code) > severity(worst) ? code : worst;
	}
	if (worst == 0)
		return 0;
	/* Some sources succeeded: 1, the JSON says which failed how. */
	return nok > 0 ? 1 : worst;
}
