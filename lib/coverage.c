/*
 * coverage.c -- the coverage table (SPEC §6): what a connector's walk
 * learnt of a conversation's history (sync_page_history(), stored in the
 * page's transaction), the streams whose walk from the start of their
 * history completed (sync_state.history_complete_at), and at the end of a
 * source's pass the rows of the conversations that pass touched,
 * recomputed in one statement.  msgsync(7) COVERAGE says what "complete"
 * means for each source type.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Later facts win; a walk that reached the start is never forgotten. */
static void
history_merge(struct sync_history_row *r, const struct sync_history *h)
{
	r->reached_start |= h->reached_start != 0;
	r->walked |= h->walked != 0 || h->reached_start != 0;
	if (h->upstream_count >= 0)
		r->upstream_count = h->upstream_count;
	if (h->unrecoverable >= 0)
		r->unrecoverable = h->unrecoverable;
	if (h->gaps >= 0)
		r->gaps = h->gaps;
}

int
sync_page_history(struct sync_page *pg, const struct sync_history *h)
{
	struct sync_history_row *v, *r;
	char *lf = NULL;
	size_t i;

	if (h->conversation == NULL || *h->conversation == '\0')
		return 0;
	if (h->listable_from != NULL && (lf = strdup(h->listable_from)) == NULL)
		return -1;
	for (i = 0; i < pg->nhistory; i++)
		if (strcmp(pg->history[i].conversation, h->conversation) == 0) {
			r = &pg->history[i];
			if (lf != NULL) {
				free(r->listable_from);
				r->listable_from = lf;
			}
			history_merge(r, h);
			return 0;
		}
	if ((v = realloc(pg->history, (pg->nhistory + 1) * sizeof(*v))) == NULL) {
		free(lf);
		return -1;
	}
	pg->history = v;
	r = &v[pg->nhistory];
	memset(r, 0, sizeof(*r));
	r->upstream_count = r->unrecoverable = r->gaps = -1;
	r->listable_from = lf;
	if ((r->conversation = strdup(h->conversation)) == NULL) {
		free(lf);
		return -1;
	}
	history_merge(r, h);
	pg->nhistory++;
	return 0;
}

void
sync_page_history_release(struct sync_page *pg)
{
	size_t i;

	for (i = 0; i < pg->nhistory; i++) {
		free(pg->history[i].conversation);
		free(pg->history[i].listable_from);
	}
	free(pg->history);
	pg->history = NULL;
	pg->nhistory = 0;
}

/*
 * A page's reports: $2.. arrays of conversation ids, reached_start,
 * upstream counts, listable_from ('' for none, NULL unknown),
 * unrecoverable, gaps (-1: unknown).  Conversations not seen yet get placeholders, as messages
 * naming them do; an existing row changes (and gets a new seq) only when a
 * fact changes.
 */
static const char q_page[] =
    "WITH h AS (SELECT * FROM unnest($2::text[], $3::boolean[], $4::bigint[],"
    "  $5::text[], $6::bigint[], $7::bigint[])"
    "  AS h(x, reached, upstream, listable, unrec, gaps)),"
    " ins AS (INSERT INTO conversation (source_id, external_id, title)"
    "  SELECT $1, h.x, CASE WHEN h.x ~ '^[+][1-9][0-9]{6,14}$' THEN h.x END"
    "  FROM h WHERE NOT EXISTS (SELECT 1 FROM conversation c"
    "  WHERE c.source_id = $1 AND c.external_id = h.x)"
    "  ON CONFLICT DO NOTHING RETURNING id, external_id),"
    " r AS (SELECT h.*, NULLIF(h.listable, '')::timestamptz AS lf,"
    "  coalesce(i.id, (SELECT c.id FROM conversation c WHERE c.source_id = $1"
    "  AND c.external_id = h.x)) AS cid FROM h LEFT JOIN ins i"
    "  ON i.external_id = h.x),"
    " up AS (UPDATE coverage v SET"
    "  upstream_messages = CASE WHEN r.upstream >= 0 THEN r.upstream"
    "   ELSE v.upstream_messages END,"
    "  unrecoverable = CASE WHEN r.unrec >= 0 THEN r.unrec ELSE v.unrecoverable END,"
    "  gaps = CASE WHEN r.gaps >= 0 THEN r.gaps ELSE v.gaps END,"
    "  history_reached_at = CASE WHEN r.reached THEN now()"
    "   ELSE v.history_reached_at END,"
    "  listable_from = CASE WHEN r.listable IS NULL THEN v.listable_from"
    "   ELSE r.lf END, updated_at = now(), seq = nextval('msgsync_seq')"
    "  FROM r WHERE v.conversation_id = r.cid AND (r.reached"
    "  OR (r.upstream >= 0 AND r.upstream IS DISTINCT FROM v.upstream_messages)"
    "  OR (r.unrec >= 0 AND r.unrec <> v.unrecoverable)"
    "  OR (r.gaps >= 0 AND r.gaps <> v.gaps)"
    "  OR (r.listable IS NOT NULL AND r.lf IS DISTINCT FROM v.listable_from))"
    "  RETURNING 1)"
    " INSERT INTO coverage (conversation_id, source_id, upstream_messages,"
    "  unrecoverable, gaps, history_reached_at, listable_from)"
    " SELECT r.cid, $1, NULLIF(r.upstream, -1), greatest(r.unrec, 0),"
    "  greatest(r.gaps, 0), CASE WHEN r.reached THEN now() END, r.lf FROM r"
    " WHERE r.cid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM coverage v"
    "  WHERE v.conversation_id = r.cid)"
    " ON CONFLICT DO NOTHING";

/* Adds a NULL element to an array literal (sync_db_array_add()'s form). */
static int
array_null(struct sync_buf *a)
{
	return sync_buf_adds(a, a->len == 0 ? "{NULL" : ",NULL");
}

static int
num_add(struct sync_buf *a, long long v)
{
	char n[24];

	snprintf(n, sizeof(n), "%lld", v);
	return sync_db_array_add(a, n);
}

enum sync_rc
sync_coverage_page(struct sync_db *db, int id, const struct sync_page *pg,
    struct sync_err *err)
{
	struct sync_buf a[6];
	const char *v[7];
	char idbuf[16];
	enum sync_rc rc = SYNC_OK;
	size_t i;
	int k, bad = 0;

	if (pg->nhistory == 0)
		return SYNC_OK;
	for (k = 0; k < 6; k++)
		memset(&a[k], 0, sizeof(a[k]));
	for (i = 0; i < pg->nhistory && !bad; i++) {
		const struct sync_history_row *h = &pg->history[i];

		bad = sync_db_array_add(&a[0], h->conversation) == -1 ||
		    sync_db_array_add(&a[1], h->reached_start ? "t" : "f") == -1 ||
		    num_add(&a[2], h->upstream_count) == -1 ||
		    (h->listable_from != NULL ? sync_db_array_add(&a[3],
		    h->listable_from) : array_null(&a[3])) == -1 ||
		    num_add(&a[4], h->unrecoverable) == -1 ||
		    num_add(&a[5], h->gaps) == -1;
	}
	for (k = 0; k < 6 && !bad; k++)
		bad = sync_db_array_end(&a[k]) == -1;
	if (bad)
		rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
	else {
		snprintf(idbuf, sizeof(idbuf), "%d", id);
		v[0] = idbuf;
		for (k = 0; k < 6; k++)
			v[k + 1] = a[k].data;
		rc = sync_db_exec(db, "store what a walk learnt of conversations",
		    q_page, 7, v, NULL, err);
	}
	for (k = 0; k < 6; k++)
		sync_buf_release(&a[k]);
	return rc;
}

enum sync_rc
sync_coverage_walked(struct sync_db *db, int id, const char *stream,
    int *first, struct sync_err *err)
{
	char idbuf[16];
	const char *v[2] = { idbuf, stream };
	struct sync_rows *r = NULL;
	enum sync_rc rc;

	snprintf(idbuf, sizeof(idbuf), "%d", id);
	rc = sync_db_exec(db, "record a walk from the start of the history",
	    "UPDATE sync_state s SET history_complete_at = now(), updated_at = now()"
	    " FROM (SELECT history_complete_at IS NULL AS first FROM sync_state"
	    "  WHERE source_id = $1 AND stream = $2) o"
	    " WHERE s.source_id = $1 AND s.stream = $2 RETURNING o.first", 2, v,
	    &r, err);
	if (rc == SYNC_OK && sync_rows_count(r) == 1 &&
	    strcmp(sync_rows_get(r, 0, 0), "t") == 0)
		*first = 1;
	sync_rows_free(r);
	return rc;
}

/* The configured streams of src as an array literal; -1 on ENOMEM. */
static int
streams_array(const struct sync_source_cfg *src, struct sync_buf *a)
{
	size_t i;

	for (i = 0; i < src->nstreams; i++)
		if (sync_db_array_add(a, src->streams[i]) == -1)
			return -1;
	return sync_db_array_end(a);
}

/* The sequence's value before the pass writes. */
static const char q_begin[] = "SELECT last_value FROM msgsync_seq";

enum sync_rc
sync_coverage_begin(struct sync_db *db, struct sync_coverage_pass *cp,
    struct sync_err *err)
{
	struct sync_rows *r = NULL;
	enum sync_rc rc;

	memset(cp, 0, sizeof(*cp));
	rc = sync_db_exec(db, "read where the pass starts", q_begin, 0, NULL, &r, err);
	if (rc == SYNC_OK && sync_rows_count(r) == 1) {
		cp->seq = strtoll(sync_rows_get(r, 0, 0), NULL, 10);
		cp->ready = 1;
	}
	sync_rows_free(r);
	return rc;
}

/*
 * Whether a conversation's coverage row is complete: a walk reached the
 * start of its history (its own, or its source's whole streams', k.walked)
 * and nothing is known missing: no gap of its own, none of its source's
 * since_seq streams (g.clean), nothing unrecoverable or unlistable.
 */
#define COMPLETE \
    "((v.history_reached_at IS NOT NULL OR k.walked) AND v.gaps = 0" \
    " AND v.unrecoverable = 0 AND v.listable_from IS NULL AND g.clean)"

/*
 * What decides completeness: k.walked, every configured stream ($3) of the
 * source was walked from the start; g.clean, none of its since_seq
 * streams has a gap.
 */
#define FACTS \
    " k AS (SELECT coalesce(bool_and(s.history_complete_at IS NOT NULL), false)" \
    "  AS walked FROM unnest($3::text[]) AS u(stream) LEFT JOIN sync_state s" \
    "  ON s.source_id = $1 AND s.stream = u.stream)," \
    " g AS (SELECT count(*) = 0 AS clean FROM stream_gap WHERE source_id = $1),"

/*
 * The conversations whose rows are recomputed, c(id, n, oldest).  The
 * touched ones -- their messages, conversation or coverage rows changed
 * in the pass (seq above $2, the sequence before it; the changed messages
 * are found over message_seq_idx alone, never by their source, which
 * holds the whole history), the rows whose completeness the source's
 * facts changed (a stream gap opened or closed), and conversations without
 * a row yet -- are counted one by one over message_conversation_idx.  All
 * of them, after a walk from the start completed for the first time, in
 * one scan of the source's messages ($2 unused).
 */
#define TOUCHED \
    "WITH" FACTS \
    " ch AS MATERIALIZED (SELECT source_id, conversation_id FROM message" \
    "  WHERE seq > $2)," \
    " t AS (SELECT conversation_id AS id FROM ch WHERE source_id = $1" \
    "  AND conversation_id IS NOT NULL" \
    "  UNION SELECT id FROM conversation WHERE seq > $2 AND source_id = $1" \
    "  UNION SELECT conversation_id FROM coverage WHERE seq > $2" \
    "  AND source_id = $1" \
    "  UNION SELECT v.conversation_id FROM coverage v, k, g" \
    "  WHERE v.source_id = $1 AND v.history_complete <> " COMPLETE \
    "  UNION SELECT x.id FROM conversation x WHERE x.source_id = $1" \
    "  AND NOT EXISTS (SELECT 1 FROM coverage y" \
    "  WHERE y.conversation_id = x.id))," \
    " c AS (SELECT t.id, n.n, n.oldest FROM t CROSS JOIN LATERAL" \
    "  (SELECT count(*) AS n, min(m.sent_at) AS oldest FROM message m" \
    "  WHERE m.conversation_id = t.id) n),"
#define ALL \
    "WITH" FACTS \
    " m AS (SELECT conversation_id AS id, count(*) AS n," \
    "  min(sent_at) AS oldest FROM message WHERE source_id = $1" \
    "  AND conversation_id IS NOT NULL GROUP BY conversation_id)," \
    " c AS (SELECT v.id, coalesce(m.n, 0) AS n, m.oldest FROM conversation v" \
    "  LEFT JOIN m ON m.id = v.id WHERE v.source_id = $1" \
    "  AND $2::bigint IS NOT NULL),"
#define RECOMPUTE \
    " up AS (UPDATE coverage v SET stored_messages = c.n," \
    "  oldest_stored_at = c.oldest, history_complete = " COMPLETE "," \
    "  checked_at = now()," \
    "  updated_at = CASE WHEN (c.n, c.oldest, " COMPLETE ") IS DISTINCT FROM" \
    "   (v.stored_messages, v.oldest_stored_at, v.history_complete)" \
    "   THEN now() ELSE v.updated_at END," \
    "  seq = CASE WHEN (c.n, c.oldest, " COMPLETE ") IS DISTINCT FROM" \
    "   (v.stored_messages, v.oldest_stored_at, v.history_complete)" \
    "   THEN nextval('msgsync_seq') ELSE v.seq END" \
    "  FROM c, k, g WHERE v.conversation_id = c.id RETURNING 1)," \
    " ins AS (INSERT INTO coverage (conversation_id, source_id, stored_messages," \
    "  oldest_stored_at, history_complete)" \
    "  SELECT c.id, $1, c.n, c.oldest, k.walked AND g.clean FROM c, k, g" \
    "  WHERE NOT EXISTS (SELECT 1 FROM coverage v WHERE v.conversation_id = c.id)" \
    "  ON CONFLICT DO NOTHING RETURNING 1)" \
    " SELECT (SELECT count(*) FROM up), (SELECT count(*) FROM ins)"

static const char q_touched[] = TOUCHED RECOMPUTE;
static const char q_all[] = ALL RECOMPUTE;

enum sync_rc
sync_coverage_end(struct sync_db *db, int id, const struct sync_source_cfg *src,
    const struct sync_coverage_pass *cp, struct sync_err *err)
{
	struct sync_buf a = SYNC_BUF_INIT(0);
	struct sync_rows *r = NULL;
	char idbuf[16], seq[24];
	const char *v[3] = { idbuf, seq, NULL };
	enum sync_rc rc;

	if (!cp->ready)
		return SYNC_OK;
	snprintf(idbuf, sizeof(idbuf), "%d", id);
	snprintf(seq, sizeof(seq), "%lld", cp->seq);
	if (streams_array(src, &a) == -1) {
		sync_buf_release(&a);
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
	}
	v[2] = a.data;
	/*
	 * Without JIT: the planner's estimates for the rows a pass just wrote
	 * are often stale and large, and compiling costs far more than the
	 * statement (0.7 s against 10 ms after one new message, measured).
	 */
	if ((rc = sync_db_begin(db, err)) == SYNC_OK &&
	    (rc = sync_db_exec(db, "turn JIT off", "SET LOCAL jit = off", 0, NULL,
	    NULL, err)) == SYNC_OK &&
	    (rc = sync_db_exec(db, "recompute the coverage of the conversations",
	    cp->refresh_all ? q_all : q_touched, 3, v, &r, err)) == SYNC_OK)
		rc = sync_db_commit(db, err);
	if (rc != SYNC_OK)
		sync_db_rollback(db);
	if (rc == SYNC_OK)
		sync_log(LOG_DEBUG, "source '%s': coverage of %s conversation(s) "
		    "checked, %s new", src->name, sync_rows_get(r, 0, 0) != NULL ?
		    sync_rows_get(r, 0, 0) : "0", sync_rows_get(r, 0, 1) != NULL ?
		    sync_rows_get(r, 0, 1) : "0");
	sync_rows_free(r);
	sync_buf_release(&a);
	return rc;
}
