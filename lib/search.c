/*
 * search.c -- full-text search over message bodies (SPEC §2 sync-search,
 * §4 search.language, §6): the index's language kept in step with the
 * configuration, and the search itself.
 *
 * The words of each message are its generated column body_tsv,
 * to_tsvector('<language>'::regconfig, coalesce(body, '')), indexed by
 * message_search_idx (GIN); the language they were built in is
 * msgsync_setting's search.language.  A search parses its query in that
 * language, a literal embedded only after sync_search_lang_ok() has
 * accepted it; the query and the filters travel as parameters.  Ranking
 * reads the stored words: parsing every matching body again cost a
 * common word's search tens of milliseconds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "internal.h"

/* The migration lock (db.c): a re-index and a migration never overlap. */
#define LOCK_MIGRATE	"1836279667, 0"

int
sync_search_lang_ok(const char *s)
{
	const char *p;

	if (s == NULL)
		return 0;
	for (p = s; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '_' || *p == '.'))
			return 0;
	return p != s && p - s <= 63 && *s != '.' && p[-1] != '.';
}

/* The recorded language, or NULL when there is none; the caller frees it. */
static enum sync_rc
recorded(struct sync_db *db, const char *lock, char **lang, struct sync_err *err)
{
	struct sync_rows *r = NULL;
	enum sync_rc rc;
	char sql[160];

	*lang = NULL;
	snprintf(sql, sizeof(sql), "SELECT value FROM msgsync_setting WHERE"
	    " name = 'search.language'%s", lock);
	rc = sync_db_exec(db, "read search.language", sql, 0, NULL, &r, err);
	if (rc == SYNC_OK && sync_rows_count(r) == 1 &&
	    (*lang = sync_strdup(sync_rows_get(r, 0, 0))) == NULL)
		rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
	sync_rows_free(r);
	return rc;
}

/* Builds the index again in lang, inside the caller's transaction. */
static enum sync_rc
reindex(struct sync_db *db, const char *old, const char *lang,
    struct sync_err *err)
{
	struct sync_rows *r = NULL;
	const char *v[1] = { lang };
	char sql[320];
	enum sync_rc rc;

	rc = sync_db_exec(db, "count the messages", "SELECT count(*) FROM message",
	    0, NULL, &r, err);
	if (rc != SYNC_OK)
		return rc;
	sync_log(LOG_NOTICE, "search.language changed from '%s' to '%s': "
	    "re-indexing %s messages", old, lang, sync_rows_get(r, 0, 0));
	sync_rows_free(r);
	/* A generated column's expression changes only by a new column. */
	snprintf(sql, sizeof(sql), "ALTER TABLE message DROP COLUMN IF EXISTS"
	    " body_tsv, ADD COLUMN body_tsv tsvector GENERATED ALWAYS AS"
	    " (to_tsvector('%s'::regconfig, coalesce(body, ''))) STORED", lang);
	if ((rc = sync_db_exec(db, "rebuild the words of the messages", sql, 0,
	    NULL, NULL, err)) != SYNC_OK ||
	    (rc = sync_db_exec(db, "build the search index",
	    "CREATE INDEX message_search_idx ON message USING gin (body_tsv)", 0,
	    NULL, NULL, err)) != SYNC_OK ||
	    (rc = sync_db_exec(db, "describe the search column",
	    "COMMENT ON COLUMN message.body_tsv IS 'The words of body in the"
	    " search.language text search configuration (generated; rebuilt when"
	    " search.language changes): what sync-search and the index"
	    " message_search_idx search.'", 0, NULL, NULL, err)) != SYNC_OK)
		return rc;
	return sync_db_exec(db, "record search.language",
	    "UPDATE msgsync_setting SET value = $1, updated_at = now() WHERE"
	    " name = 'search.language'", 1, v, NULL, err);
}

/*
 * Whether the database has the text search configuration lang (a plain
 * name as the search path finds it, or schema.name).
 */
static enum sync_rc
lang_exists(struct sync_db *db, const char *lang, int *yes, struct sync_err *err)
{
	struct sync_rows *r = NULL;
	const char *v[1] = { lang };
	enum sync_rc rc;

	rc = sync_db_exec(db, "look up search.language",
	    "SELECT count(*) FROM pg_ts_config c JOIN pg_namespace n"
	    " ON n.oid = c.cfgnamespace WHERE (strpos($1, '.') = 0"
	    " AND c.cfgname = $1 AND pg_ts_config_is_visible(c.oid))"
	    " OR n.nspname || '.' || c.cfgname = $1", 1, v, &r, err);
	*yes = rc == SYNC_OK && strcmp(sync_rows_get(r, 0, 0), "0") != 0;
	sync_rows_free(r);
	return rc;
}

enum sync_rc
sync_search_index(struct sync_db *db, const struct sync_config *cfg,
    struct sync_err *err)
{
	const char *lang = cfg->search_language != NULL ? cfg->search_language :
	    "simple";
	char *old = NULL;
	enum sync_rc rc;
	int yes;

	/* Fast path: one query. */
	if ((rc = recorded(db, "", &old, err)) != SYNC_OK || old == NULL ||
	    strcmp(old, lang) == 0)
		goto out;
	if (!sync_search_lang_ok(lang) ||
	    (rc = lang_exists(db, lang, &yes, err)) != SYNC_OK)
		goto out;
	if (!yes) {
		rc = sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG,
		    "%s: search.language '%s': the database has no such text "
		    "search configuration (psql's \\dF lists them)",
		    cfg->path != NULL ? cfg->path : "msgsync.conf", lang);
		goto out;
	}
	if ((rc = sync_db_exec(db, "begin the re-index", "BEGIN", 0, NULL, NULL,
	    err)) != SYNC_OK)
		goto out;
	free(old);
	/* Another binary may have done it meanwhile: look again, locked. */
	if ((rc = sync_db_exec(db, "take the migration lock",
	    "SELECT pg_advisory_xact_lock(" LOCK_MIGRATE ")", 0, NULL, NULL,
	    err)) == SYNC_OK &&
	    (rc = recorded(db, " FOR UPDATE", &old, err)) == SYNC_OK &&
	    old != NULL && strcmp(old, lang) != 0)
		rc = reindex(db, old, lang, err);
	if (rc == SYNC_OK)
		rc = sync_db_exec(db, "commit the re-index", "COMMIT", 0, NULL,
		    NULL, err);
	else
		sync_db_exec(db, "roll back the re-index", "ROLLBACK", 0, NULL,
		    NULL, NULL);
out:
	free(old);
	return rc;
}

/* ---- sync-search -------------------------------------------------------- */

/*
 * The search.  %1$s is the language.  The inner query finds and ranks the
 * matches through the index on body_tsv (the stored words) and
 * keeps the best $6; the outer one adds what is printed, for those only.
 * Deleted messages are left out.  Control characters become spaces in the
 * snippet, whose matches are marked with \001 ... \002 (put into the
 * caller's markers).
 */
static const char search_sql[] =
    "SELECT s.name, c.external_id, m.external_id,"
    " to_char(m.sent_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " m.direction, coalesce(k.display_name, k.username, k.phone, k.external_id),"
    " m.body, ts_headline('%1$s'::regconfig,"
    "  regexp_replace(coalesce(m.body, ''), '[[:cntrl:]]+', ' ', 'g'),"
    "  websearch_to_tsquery('%1$s'::regconfig, $1),"
    "  'StartSel=\001, StopSel=\002, MaxWords=30, MinWords=12,"
    "  MaxFragments=2, FragmentDelimiter=\" ... \"'),"
    " t.rank"
    " FROM (SELECT m.id, m.sent_at, ts_rank_cd(m.body_tsv,"
    "   websearch_to_tsquery('%1$s'::regconfig, $1)) AS rank"
    "  FROM message m"
    "  WHERE m.body_tsv @@ websearch_to_tsquery('%1$s'::regconfig, $1)"
    "   AND m.deleted_at IS NULL"
    "   AND ($2::text[] IS NULL OR m.source_id IN"
    "    (SELECT id FROM source WHERE name = ANY ($2::text[])))"
    "   AND ($3::text IS NULL OR m.conversation_id IN"
    "    (SELECT id FROM conversation WHERE external_id = $3))"
    "   AND ($4::timestamptz IS NULL OR m.sent_at >= $4)"
    "   AND ($5::timestamptz IS NULL OR m.sent_at < $5)"
    "  ORDER BY rank DESC, m.sent_at DESC NULLS LAST, m.id LIMIT $6) t"
    " JOIN message m ON m.id = t.id"
    " JOIN source s ON s.id = m.source_id"
    " LEFT JOIN conversation c ON c.id = m.conversation_id"
    " LEFT JOIN contact k ON k.id = m.sender_contact_id"
    " ORDER BY t.rank DESC, t.sent_at DESC NULLS LAST, t.id";

enum {
	COL_SOURCE, COL_CONV, COL_ID, COL_SENT, COL_DIR, COL_SENDER, COL_BODY,
	COL_SNIPPET, COL_RANK
};

/*
 * The index's language and whether query has any word in it (an empty
 * or stop-word-only query matches nothing).  *lang is NULL when there is
 * no schema; the caller frees it.
 */
static enum sync_rc
search_lang(struct sync_db *db, const char *query, char **lang, int *words,
    struct sync_err *err)
{
	struct sync_rows *r = NULL;
	const char *v[1] = { query };
	enum sync_rc rc;

	*lang = NULL;
	*words = 0;
	if (!sync_db_has_schema(db))
		return SYNC_OK;
	rc = sync_db_exec(db, "read search.language", "SELECT value,"
	    " numnode(websearch_to_tsquery(value::regconfig, $1)) > 0"
	    " FROM msgsync_setting WHERE name = 'search.language'", 1, v, &r, err);
	if (rc == SYNC_OK && sync_rows_count(r) == 1) {
		if ((*lang = sync_strdup(sync_rows_get(r, 0, 0))) == NULL)
			rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE,
			    "out of memory");
		*words = strcmp(sync_rows_get(r, 0, 1), "t") == 0;
	}
	sync_rows_free(r);
	if (rc == SYNC_OK && *lang != NULL && !sync_search_lang_ok(*lang))
		rc = sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_DATABASE,
		    "msgsync_setting's search.language '%s' is not the name of a "
		    "text search configuration", *lang);
	return rc;
}

/* Appends s with the snippet's markers made on and off; -1 on ENOMEM. */
static int
add_marked(struct sync_buf *b, const char *s, const char *on, const char *off)
{
	size_t n;
	int rc = 0;

	while (rc == 0 && s != NULL && *s != '\0') {
		n = strcspn(s, "\001\002");
		rc = sync_buf_add(b, s, n);
		s += n;
		if (rc == 0 && *s != '\0')
			rc = sync_buf_adds(b, *s++ == '\001' ? on : off);
	}
	return rc;
}

/*
 * Upstream data (a conversation's id, a sender's name) for a terminal: no
 * control character reaches it.  NULL is "-".
 */
static int
add_clean(struct sync_buf *b, const char *s)
{
	for (s = s != NULL ? s : "-"; *s != '\0'; s++)
		if (sync_buf_add(b, (unsigned char)*s < 0x20 || *s == 0x7f ? " " :
		    s, 1) == -1)
			return -1;
	return 0;
}

/* One hit as a block of text: a header line, the snippet indented. */
static int
add_text(struct sync_buf *b, const struct sync_rows *r, int i, int tty)
{
	const char *sent = sync_rows_get(r, i, COL_SENT);
	const char *dir = sync_rows_get(r, i, COL_DIR);
	size_t n0 = b->len, k;

	if (sync_buf_addf(b, "%s%s  ", i > 0 ? "\n" : "",
	    sync_rows_get(r, i, COL_SOURCE)) == -1 ||
	    add_clean(b, sync_rows_get(r, i, COL_CONV)) == -1 ||
	    sync_buf_addf(b, "  %s  %s  ", sent != NULL ? sent : "-",
	    dir != NULL ? dir : "-") == -1 ||
	    add_clean(b, sync_rows_get(r, i, COL_SENDER)) == -1)
		return -1;
	if (sync_buf_adds(b, "\n    ") == -1 ||
	    add_marked(b, sync_rows_get(r, i, COL_SNIPPET), tty ? "\033[1m" : "[",
	    tty ? "\033[0m" : "]") == -1 || sync_buf_adds(b, "\n") == -1)
		return -1;
	for (k = n0; k < b->len; k++)
		if (b->data[k] == '\177')
			b->data[k] = ' ';
	return 0;
}

/* One hit as one JSON object on a line (SPEC §2). */
static int
add_json(struct sync_buf *b, const struct sync_rows *r, int i)
{
	static const char *const keys[] = { "source", "conversation",
	    "external_id", "sent_at", "direction", "sender", "body" };
	struct sync_buf snip = SYNC_BUF_INIT(0);
	cJSON *o;
	char *text = NULL;
	size_t k;
	int rc = -1;

	if ((o = cJSON_CreateObject()) == NULL)
		return -1;
	for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		const char *v = sync_rows_get(r, i, (int)k);

		if ((v == NULL ? cJSON_AddNullToObject(o, keys[k]) :
		    cJSON_AddStringToObject(o, keys[k], v)) == NULL)
			goto out;
	}
	if (sync_buf_adds(&snip, "") == -1 ||
	    add_marked(&snip, sync_rows_get(r, i, COL_SNIPPET), "[", "]") == -1 ||
	    cJSON_AddStringToObject(o, "snippet", snip.data) == NULL ||
	    cJSON_AddNumberToObject(o, "rank",
	    strtod(sync_rows_get(r, i, COL_RANK), NULL)) == NULL ||
	    (text = sync_json_print(o)) == NULL)
		goto out;
	rc = sync_buf_adds(b, text) == -1 || sync_buf_adds(b, "\n") == -1 ? -1 : 0;
out:
	cJSON_free(text);
	cJSON_Delete(o);
	sync_buf_release(&snip);
	return rc;
}

/* A PostgreSQL timestamp of t, or NULL for 0 (none). */
static const char *
stamp(time_t t, char *buf, size_t n)
{
	if (t == 0)
		return NULL;
	sync_time_format(t, buf, n);
	return buf;
}

enum sync_rc
sync_search_run(const struct sync_config *cfg, const struct sync_opts *o,
    char **out, long *hits, struct sync_err *err)
{
	struct sync_buf b = SYNC_BUF_INIT(0), srcs = SYNC_BUF_INIT(0);
	struct sync_rows *r = NULL;
	struct sync_db *db = NULL;
	const char *v[6];
	char *lang = NULL, *sql = NULL, since[40], until[40], lim[24];
	enum sync_rc rc = SYNC_OK;
	size_t i;
	int n, words;

	*out = NULL;
	*hits = 0;
	if (sync_config_check_sources(cfg, o, err) != SYNC_OK)
		return err->rc;
	for (i = 0; i < o->nsources; i++)
		if (sync_db_array_add(&srcs, o->sources[i]) == -1)
			goto nomem;
	if (o->nsources > 0 && sync_db_array_end(&srcs) == -1)
		goto nomem;
	if (sync_buf_adds(&b, "") == -1)
		goto nomem;
	if ((db = sync_db_open_readonly(cfg, err)) == NULL) {
		rc = err->rc;
		goto out;
	}
	if ((rc = search_lang(db, o->query, &lang, &words, err)) != SYNC_OK ||
	    lang == NULL || !words)
		goto done;
	if (cfg->search_language != NULL && strcmp(lang, cfg->search_language) != 0)
		sync_log(LOG_NOTICE, "search.language is '%s' but the index is "
		    "built in '%s': searching in '%s' (the next incr-sync or "
		    "full-sync re-indexes)", cfg->search_language, lang, lang);
	n = snprintf(NULL, 0, search_sql, lang);
	if (n < 0 || (sql = malloc((size_t)n + 1)) == NULL)
		goto nomem;
	snprintf(sql, (size_t)n + 1, search_sql, lang);
	snprintf(lim, sizeof(lim), "%ld", o->limit > 0 ? o->limit : 20);
	v[0] = o->query;
	v[1] = o->nsources > 0 ? srcs.data : NULL;
	v[2] = o->conversation;
	v[3] = o->since != NULL ? stamp(o->since_t, since, sizeof(since)) : NULL;
	v[4] = stamp(o->until_t, until, sizeof(until));
	v[5] = lim;
	if ((rc = sync_db_exec(db, "search the messages", sql, 6, v, &r, err)) !=
	    SYNC_OK)
		goto out;
	for (n = 0; n < sync_rows_count(r); n++)
		if ((o->json ? add_json(&b, r, n) : add_text(&b, r, n, o->tty)) == -1)
			goto nomem;
	*hits = n;
done:
	if (rc == SYNC_OK) {
		*out = b.data;
		b.data = NULL;
	}
	goto out;
nomem:
	rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
out:
	sync_rows_free(r);
	sync_db_free(db);
	sync_buf_release(&b);
	sync_buf_release(&srcs);
	free(lang);
	free(sql);
	return rc;
}
