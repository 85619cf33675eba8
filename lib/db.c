/*
 * db.c -- the store: connection, migrations, advisory locks, cursors and
 * the batched upserts.  The only user of libpq.  Values always travel as
 * parameters or COPY data; identifiers are constants.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <libpq/libpq-fs.h>

#include "internal.h"

/*
 * Advisory lock keys: (1836279667, 0) guards migrations, (1836279667, 1)
 * the identity resolution (identity.c); (1836279668 + n,
 * id) is lock n of source id (one per pass command, so that a backfill and
 * cron's incremental passes run side by side, but never two of one kind).
 */
#define LOCK_SOURCE	1836279668


struct sync_db {
	PGconn		*conn;
	int		 readonly;	/* sync_db_open_readonly(): writes nothing */
	int		 schema;	/* readonly: the schema is there (else every
					   read finds nothing) */
	int		 in_tx;
	int		 locks;		/* source locks held */
	int		 staged[3];	/* entities staged in this transaction */
	int		 cache_source;	/* whose ids the maps hold */
	int		 all_new;	/* the last page of messages was all new */
	int		 prune;		/* a pruning walk notes what it sees */
	enum sync_media	 media;		/* the source's (sync_db_source()) */
	int		 trust_paths;	/* an import's local files are read */
	Oid		 lo_oid;	/* store = "database": the object written */
	int		 lo_fd;
	struct sync_buf	 seen;		/* ids seen, not yet in prune_seen */
	struct sync_strmap ids[2];	/* external -> internal id: conversations,
					   contacts */
};

struct sync_rows {
	PGresult	*res;
};


/* full-sync --prune: ids seen gathered before they go to prune_seen. */
#define SEEN_FLUSH	(1 << 18)
static enum sync_rc seen_flush(struct sync_db *, size_t, struct sync_err *);

/* The stage tables: one page of rows, emptied at every commit. */
static const char stage_sql[] =
    "CREATE TEMP TABLE IF NOT EXISTS stage_contact ("
    " ord integer, external_id text, display_name text, phone text,"
    " username text, raw jsonb) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_conversation ("
    " ord integer, external_id text, title text, kind text, is_read boolean,"
    " unread_count integer, last_message_at timestamptz, archived boolean,"
    " raw jsonb) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_message ("
    " ord integer, external_id text, conversation_ext text, sender_ext text,"
    " direction text, kind text, body text, sent_at timestamptz,"
    " edited_at timestamptz, status text, status_at timestamptz,"
    " validity_expires_at timestamptz, folder text, attachments jsonb,"
    " raw jsonb, deleted_at timestamptz, row_hash text, provider_id text)"
    " ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_attachment ("
    " ord integer, message_ext text, external_id text, kind text,"
    " mime_type text, name text, size bigint, url text,"
    " url_expires_at timestamptz, link_stripped boolean, local_path text,"
    " content bytea, unavailable text) ON COMMIT DELETE ROWS;"
    /* full-sync --prune: the ids of the stored messages its walks saw. */
    "CREATE TEMP TABLE IF NOT EXISTS prune_seen (id bigint);";

static const char *const copy_sql[3] = {
	"COPY stage_contact FROM STDIN",
	"COPY stage_conversation FROM STDIN",
	"COPY stage_message FROM STDIN"
};

static const char *const stage_table[3] = {
	"DELETE FROM stage_contact",
	"DELETE FROM stage_conversation",
	"DELETE FROM stage_message"
};

/*
 * The upserts.  Each compares the staged rows with the stored ones first
 * and writes only rows that are new or really changed, so that a rerun over
 * unchanged data locks, logs and renumbers nothing.  Every lookup is a
 * correlated subquery with OFFSET 0, a fence that keeps it a probe of the
 * unique (source_id, external_id) index: the stage tables have no
 * statistics, and a join would let the planner scan the whole table for
 * every page.  A placeholder (a
 * conversation or contact created because a message named it before its
 * own stream delivered it: raw IS NULL) counts as inserted when it is
 * filled in.  The result row: distinct staged, inserted, updated.
 */
static const char upsert_contact[] =
    "WITH s AS (SELECT DISTINCT ON (external_id) * FROM stage_contact"
    "  WHERE external_id IS NOT NULL ORDER BY external_id, ord DESC),"
    " m AS (SELECT s.external_id, coalesce(s.display_name, o.display_name)"
    "   AS display_name, coalesce(s.phone, o.phone) AS phone,"
    "  coalesce(s.username, o.username) AS username, coalesce(s.raw, o.raw)"
    "   AS raw, o.id AS old_id, o.raw IS NULL AS old_placeholder,"
    "  (o.display_name, o.phone, o.username, o.raw) AS old FROM s"
    "  LEFT JOIN LATERAL (SELECT * FROM contact o WHERE o.source_id = $1"
    "   AND o.external_id = s.external_id OFFSET 0) o ON true),"
    " src AS (SELECT *, (old_id IS NULL OR old_placeholder) AS fresh FROM m"
    "  WHERE old_id IS NULL OR old IS DISTINCT FROM"
    "   (display_name, phone, username, raw)),"
    " up AS (INSERT INTO contact AS t (source_id, external_id, display_name,"
    "  phone, username, raw)"
    "  SELECT $1, external_id, display_name, phone, username, raw FROM src"
    "  ON CONFLICT (source_id, external_id) DO UPDATE SET"
    "  display_name = EXCLUDED.display_name, phone = EXCLUDED.phone,"
    "  username = EXCLUDED.username, raw = EXCLUDED.raw, updated_at = now(),"
    "  seq = nextval('msgsync_seq'))"
    " SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM src WHERE fresh),"
    "  (SELECT count(*) FROM src WHERE NOT fresh)";

static const char upsert_conversation[] =
    "WITH s AS (SELECT DISTINCT ON (external_id) * FROM stage_conversation"
    "  WHERE external_id IS NOT NULL ORDER BY external_id, ord DESC),"
    " m AS (SELECT s.external_id, coalesce(s.title, o.title) AS title,"
    "  coalesce(s.kind, o.kind) AS kind, coalesce(s.is_read, o.is_read)"
    "   AS is_read, coalesce(s.unread_count, o.unread_count) AS unread_count,"
    "  coalesce(s.last_message_at, o.last_message_at) AS last_message_at,"
    "  coalesce(s.archived, o.archived) AS archived, coalesce(s.raw, o.raw)"
    "   AS raw, o.id AS old_id, o.raw IS NULL AS old_placeholder,"
    "  (o.title, o.kind, o.is_read, o.unread_count, o.last_message_at,"
    "   o.archived, o.raw) AS old FROM s"
    "  LEFT JOIN LATERAL (SELECT * FROM conversation o WHERE o.source_id = $1"
    "   AND o.external_id = s.external_id OFFSET 0) o ON true),"
    " src AS (SELECT *, (old_id IS NULL OR old_placeholder) AS fresh FROM m"
    "  WHERE old_id IS NULL OR old IS DISTINCT FROM (title, kind, is_read,"
    "   unread_count, last_message_at, archived, raw)),"
    " up AS (INSERT INTO conversation AS t (source_id, external_id, title, kind,"
    "  is_read, unread_count, last_message_at, archived, raw)"
    "  SELECT $1, external_id, title, kind, is_read, unread_count,"
    "  last_message_at, archived, raw FROM src"
    "  ON CONFLICT (source_id, external_id) DO UPDATE SET"
    "  title = EXCLUDED.title, kind = EXCLUDED.kind, is_read = EXCLUDED.is_read,"
    "  unread_count = EXCLUDED.unread_count,"
    "  last_message_at = EXCLUDED.last_message_at, archived = EXCLUDED.archived,"
    "  raw = EXCLUDED.raw, updated_at = now(), seq = nextval('msgsync_seq')"
    "  )"
    " SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM src WHERE fresh),"
    "  (SELECT count(*) FROM src WHERE NOT fresh)";

/*
 * The internal ids of the conversations (contacts) named by a page of
 * messages, creating placeholders for those not seen yet.  The second
 * branch sees only rows committed before the statement: a row another pass
 * committed meanwhile is missing from the answer, and asked for again.
 */
#define RESOLVE(table, cols, vals)					\
    "WITH k AS (SELECT DISTINCT x FROM unnest($2::text[]) AS u(x)),"	\
    " ins AS (INSERT INTO " table " (" cols ")"				\
    "  SELECT " vals " FROM k WHERE (SELECT c.id FROM " table " c"	\
    "  WHERE c.source_id = $1 AND c.external_id = k.x) IS NULL"		\
    "  ON CONFLICT DO NOTHING RETURNING external_id, id)"		\
    " SELECT external_id, id FROM ins UNION ALL"			\
    " SELECT c.external_id, c.id FROM k CROSS JOIN LATERAL (SELECT"	\
    "  external_id, id FROM " table " c WHERE c.source_id = $1"		\
    "  AND c.external_id = k.x OFFSET 0) c"

/*
 * A contact known only by an id that is a phone number has that number; a
 * conversation named by one (an SMS conversation) is titled by it.
 */
#define E164(x)	"CASE WHEN " x " ~ '^[+][1-9][0-9]{6,14}$' THEN " x " END"
#define RESOLVE_CONTACT RESOLVE("contact", "source_id, external_id, phone",	\
    "$1, x, " E164("x"))
#define RESOLVE_CONVERSATION RESOLVE("conversation",			\
    "source_id, external_id, title", "$1, x, " E164("x"))

/*
 * Which messages of a page exist, the hash they were written with, and
 * their ids (what a pruning walk notes as seen).
 */
static const char probe_message[] =
    "SELECT k.x, o.row_hash, o.id FROM unnest($2::text[]) AS k(x) CROSS JOIN"
    " LATERAL (SELECT id, row_hash FROM message o WHERE o.source_id = $1"
    "  AND o.external_id = k.x OFFSET 0) o";

/*
 * Which of a page's provider identities ($2, of rows new by external id)
 * are stored already, under which external id, and their ids.
 */
static const char probe_provider[] =
    "SELECT k.p, o.external_id, o.id FROM unnest($2::text[]) AS k(p) CROSS JOIN"
    " LATERAL (SELECT id, external_id FROM message o WHERE o.source_id = $1"
    "  AND o.provider_id = k.p OFFSET 0) o";

/*
 * New messages are copied straight into the table (see sync_db_apply());
 * changed ones are staged and updated here.  The result row: distinct
 * staged, inserted, updated.
 */
static const char upsert_message[] =
    "WITH s AS (SELECT DISTINCT ON (external_id) * FROM stage_message"
    "  WHERE external_id IS NOT NULL ORDER BY external_id, ord DESC),"
    " r AS MATERIALIZED (SELECT s.*, (SELECT c.id FROM conversation c WHERE"
    "   c.source_id = $1 AND c.external_id = s.conversation_ext) AS conv_id,"
    "  (SELECT k.id FROM contact k WHERE k.source_id = $1"
    "   AND k.external_id = s.sender_ext) AS sender_cid FROM s),"
    " src AS MATERIALIZED (SELECT s.*, o.id AS old_id, o.deleted_at AS old_deleted,"
    "  o.provider_id AS old_pid"
    "  FROM r s LEFT JOIN LATERAL (SELECT * FROM message o WHERE o.source_id = $1"
    "   AND o.external_id = s.external_id OFFSET 0) o ON true"
    "  WHERE o.id IS NULL OR o.row_hash IS DISTINCT FROM s.row_hash"
    "   OR (o.conversation_id, o.sender_contact_id) IS DISTINCT FROM"
    "   (s.conv_id, s.sender_cid)),"
    " ins AS (INSERT INTO message (source_id, external_id, conversation_id,"
    "  sender_contact_id, direction, kind, body, sent_at, edited_at, status,"
    "  status_at, validity_expires_at, folder, attachments, raw, deleted_at,"
    "  row_hash, provider_id, deleted_reason, stream)"
    "  SELECT $1, external_id, conv_id, sender_cid, direction, kind, body,"
    "  sent_at, edited_at, status, status_at, validity_expires_at, folder,"
    "  attachments, raw, deleted_at, row_hash, provider_id,"
    "  CASE WHEN deleted_at IS NOT NULL THEN 'upstream' END, $2"
    "  FROM src WHERE old_id IS NULL RETURNING 1),"
    " upd AS (UPDATE message t SET conversation_id = u.conv_id,"
    "  sender_contact_id = u.sender_cid, direction = u.direction, kind = u.kind,"
    "  body = u.body, sent_at = u.sent_at, edited_at = u.edited_at,"
    "  status = u.status, status_at = u.status_at,"
    "  validity_expires_at = u.validity_expires_at, folder = u.folder,"
    "  attachments = u.attachments, raw = u.raw, row_hash = u.row_hash,"
    "  provider_id = CASE WHEN u.old_pid IS NULL AND NOT EXISTS (SELECT 1"
    "   FROM message z WHERE z.source_id = $1 AND z.provider_id = u.provider_id)"
    "   THEN u.provider_id ELSE u.old_pid END,"
    "  deleted_at = CASE WHEN u.deleted_at IS NOT NULL THEN"
    "   coalesce(u.old_deleted, u.deleted_at) END,"
    "  deleted_reason = CASE WHEN u.deleted_at IS NOT NULL THEN 'upstream' END,"
    "  missing_since = NULL, stream = coalesce($2, t.stream),"
    "  updated_at = now(), seq = nextval('msgsync_seq')"
    "  FROM src u WHERE u.old_id IS NOT NULL AND t.id = u.old_id RETURNING 1)"
    " SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM ins),"
    "  (SELECT count(*) FROM upd)";

/*
 * The attachments of a page's messages (SPEC §9; $2 the source's media,
 * 'download' or 'link'; $3 whether local files are read): a new one is
 * pending (linked), or unavailable with the provider's reason.  A known
 * one takes the new metadata and link; a new link (or the provider's word
 * that the file is back) makes one not stored pending again, with its
 * attempts reset.  Stored bytes stay.  An unchanged one is not rewritten.
 */
static const char upsert_attachment[] =
    "WITH s AS (SELECT DISTINCT ON (message_ext, external_id) * FROM"
    "  stage_attachment ORDER BY message_ext, external_id, ord DESC),"
    " m AS (SELECT s.*, (SELECT o.id FROM message o WHERE o.source_id = $1"
    "  AND o.external_id = s.message_ext OFFSET 0) AS message_id,"
    "  CASE WHEN s.unavailable IS NOT NULL THEN 'unavailable'"
    "   WHEN $2 = 'link' THEN 'linked' ELSE 'pending' END AS want FROM s)"
    " INSERT INTO attachment AS a (message_id, source_id, external_id, kind,"
    "  mime_type, name, size, url, url_expires_at, link_stripped, local_path,"
    "  content, state, last_error)"
    " SELECT message_id, $1, external_id, kind, mime_type, name, size, url,"
    "  url_expires_at, link_stripped, CASE WHEN $3 THEN local_path END,"
    "  content, want, unavailable FROM m WHERE message_id IS NOT NULL"
    " ON CONFLICT (message_id, external_id) DO UPDATE SET"
    "  kind = EXCLUDED.kind, mime_type = EXCLUDED.mime_type,"
    "  name = EXCLUDED.name, size = EXCLUDED.size, url = EXCLUDED.url,"
    "  url_expires_at = EXCLUDED.url_expires_at,"
    "  link_stripped = EXCLUDED.link_stripped,"
    "  local_path = coalesce(EXCLUDED.local_path, a.local_path),"
    "  content = CASE WHEN a.state = 'stored' THEN NULL"
    "   ELSE coalesce(EXCLUDED.content, a.content) END,"
    "  state = CASE WHEN a.state = 'stored' THEN 'stored'"
    "   WHEN EXCLUDED.state = 'unavailable' THEN 'unavailable'"
    "   WHEN a.state = 'linked' OR EXCLUDED.state = 'linked'"
    "    OR a.url IS DISTINCT FROM EXCLUDED.url"
    "    OR a.state = 'unavailable' THEN EXCLUDED.state ELSE a.state END,"
    "  attempts = CASE WHEN a.state <> 'stored' AND"
    "   a.url IS DISTINCT FROM EXCLUDED.url THEN 0 ELSE a.attempts END,"
    "  last_error = CASE WHEN EXCLUDED.state = 'unavailable'"
    "   THEN EXCLUDED.last_error WHEN a.state = 'unavailable' THEN NULL"
    "   ELSE a.last_error END,"
    "  updated_at = now(), seq = nextval('msgsync_seq')"
    " WHERE (a.kind, a.mime_type, a.name, a.size, a.url, a.url_expires_at,"
    "  a.link_stripped) IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.mime_type,"
    "  EXCLUDED.name, EXCLUDED.size, EXCLUDED.url, EXCLUDED.url_expires_at,"
    "  EXCLUDED.link_stripped)"
    "  OR (a.state <> 'stored' AND a.state <> EXCLUDED.state AND"
    "   (EXCLUDED.state = 'unavailable' OR a.state IN ('linked', 'unavailable')"
    "   OR EXCLUDED.state = 'linked'))"
    "  OR (EXCLUDED.local_path IS NOT NULL AND"
    "   a.local_path IS DISTINCT FROM EXCLUDED.local_path)"
    "  OR (a.state <> 'stored' AND EXCLUDED.content IS NOT NULL AND"
    "   a.content IS DISTINCT FROM EXCLUDED.content)";

/*
 * Delivery-status tracking of a page's outgoing messages ($2 external ids,
 * $3 'pending' or 'final', $4 until when, epoch seconds): a pending one is
 * (or stays) in pending_message, also when its window has closed already:
 * status-poll gives it a last look before it expires it, and it alone
 * decides that.  One it has expired stays so.  A final one leaves.
 * message.tracking follows.
 */
static const char track_messages[] =
    "WITH t AS (SELECT x, st, to_timestamp(u) AS until FROM"
    "  unnest($2::text[], $3::text[], $4::bigint[]) AS k(x, st, u)),"
    " m AS MATERIALIZED (SELECT t.until, o.id, CASE WHEN t.st = 'final' THEN"
    "  'final' WHEN t.until > now() OR o.tracking IS DISTINCT FROM 'expired'"
    "  THEN 'pending' ELSE 'expired' END AS want"
    "  FROM t CROSS JOIN LATERAL (SELECT id, tracking FROM message o WHERE"
    "  o.source_id = $1 AND o.external_id = t.x OFFSET 0) o),"
    " del AS (DELETE FROM pending_message p USING m WHERE p.message_id = m.id"
    "  AND m.want <> 'pending' RETURNING 1),"
    " ins AS (INSERT INTO pending_message AS p (message_id, source_id, expires_at)"
    "  SELECT id, $1, until FROM m WHERE want = 'pending'"
    "  ON CONFLICT (message_id) DO UPDATE SET expires_at = EXCLUDED.expires_at,"
    "  updated_at = now(), seq = nextval('msgsync_seq')"
    "  WHERE p.expires_at IS DISTINCT FROM EXCLUDED.expires_at RETURNING 1),"
    " mk AS (UPDATE message o SET tracking = m.want, updated_at = now(),"
    "  seq = nextval('msgsync_seq') FROM m WHERE o.id = m.id"
    "  AND o.tracking IS DISTINCT FROM m.want RETURNING 1)"
    " SELECT (SELECT count(*) FROM del), (SELECT count(*) FROM ins),"
    "  (SELECT count(*) FROM mk)";

/* A chunk of a source's pending messages, soonest expiry first ($2: after). */
static const char pending_load[] =
    "SELECT o.external_id, o.folder, p.expires_at <= now(),"
    " p.expires_at::text || '|' || p.message_id, o.seq FROM pending_message p"
    " JOIN message o ON o.id = p.message_id WHERE p.source_id = $1"
    " AND ($2::text IS NULL OR (p.expires_at, p.message_id) >"
    "  (split_part($2, '|', 1)::timestamptz, split_part($2, '|', 2)::bigint))"
    " ORDER BY p.expires_at, p.message_id LIMIT $3";

/*
 * Of the polled messages ($2 external ids, sorted, $3 their seqs when
 * loaded), those still pending and unchanged, locked: a pass that stored
 * one meanwhile stored newer data than the poll's.
 */
static const char pending_claim[] =
    "SELECT o.external_id FROM unnest($2::text[], $3::bigint[]) AS k(x, s)"
    " CROSS JOIN LATERAL (SELECT external_id FROM message o WHERE"
    "  o.source_id = $1 AND o.external_id = k.x AND o.seq = k.s"
    "  AND EXISTS (SELECT 1 FROM pending_message p WHERE p.message_id = o.id)"
    "  OFFSET 0 FOR UPDATE) o";

/*
 * The polled messages ($2 external ids, $3 'final', 'expired' or
 * 'pending'): the first two leave tracking, marked; the last are polled.
 */
static const char pending_settle[] =
    "WITH t AS (SELECT x, a FROM unnest($2::text[], $3::text[]) AS k(x, a)),"
    " m AS MATERIALIZED (SELECT t.a, o.id FROM t CROSS JOIN LATERAL"
    "  (SELECT id FROM message o WHERE o.source_id = $1 AND o.external_id = t.x"
    "  OFFSET 0) o),"
    " del AS (DELETE FROM pending_message p USING m WHERE p.message_id = m.id"
    "  AND m.a <> 'pending' RETURNING 1),"
    " mk AS (UPDATE message o SET tracking = m.a, updated_at = now(),"
    "  seq = nextval('msgsync_seq') FROM m WHERE o.id = m.id AND m.a <> 'pending'"
    "  AND o.tracking IS DISTINCT FROM m.a RETURNING 1),"
    " touch AS (UPDATE pending_message p SET last_polled_at = now() FROM m"
    "  WHERE p.message_id = m.id AND m.a = 'pending' RETURNING 1)"
    " SELECT (SELECT count(*) FROM del), (SELECT count(*) FROM touch)";

/*
 * Before a source's media-sync: under media = "download", linked rows
 * (media was "link") are pending now, and with --restart ($2) so are the
 * failed ones, their attempts forgotten.
 */
static const char media_prepare[] =
    "UPDATE attachment SET state = 'pending', attempts = CASE WHEN"
    " state = 'failed' THEN 0 ELSE attempts END, last_error = NULL,"
    " updated_at = now(), seq = nextval('msgsync_seq') WHERE source_id = $1"
    " AND (state = 'linked' OR ($2 AND state = 'failed'))";

/*
 * A chunk of a source's pending attachments, soonest expiry first (no
 * expiry last), after the one keyed $2 ("EXPIRY|id", EXPIRY empty for
 * none): the partial index attachment_pending_idx in its order.
 */
static const char media_load[] =
    "SELECT a.id, a.external_id, a.kind, a.url, a.link_stripped,"
    " a.url_expires_at <= now() + interval '30 seconds', a.local_path,"
    " a.content IS NOT NULL, a.size, a.attempts, m.external_id,"
    " c.external_id, m.raw::text,"
    " coalesce(a.url_expires_at::text, '') || '|' || a.id"
    " FROM attachment a JOIN message m ON m.id = a.message_id"
    " LEFT JOIN conversation c ON c.id = m.conversation_id"
    " WHERE a.source_id = $1 AND a.state = 'pending' AND CASE"
    "  WHEN $2::text IS NULL THEN true"
    "  WHEN split_part($2, '|', 1) = '' THEN a.url_expires_at IS NULL"
    "   AND a.id > split_part($2, '|', 2)::bigint"
    "  ELSE a.url_expires_at IS NULL OR (a.url_expires_at, a.id) >"
    "   (split_part($2, '|', 1)::timestamptz, split_part($2, '|', 2)::bigint)"
    " END ORDER BY a.url_expires_at, a.id LIMIT $3";

static const struct {
	const char	*name;
	const char	*sql;
} prepared[] = {
	{ "upsert_contact", upsert_contact },
	{ "upsert_conversation", upsert_conversation },
	{ "upsert_message", upsert_message },
	{ "resolve_conversation", RESOLVE_CONVERSATION },
	{ "resolve_contact", RESOLVE_CONTACT },
	{ "track_messages", track_messages },
	{ "upsert_attachment", upsert_attachment },
	/* media-sync (SPEC §9) */
	{ "media_prepare", media_prepare },
	{ "media_load", media_load },
	{ "media_content", "SELECT content FROM attachment WHERE id = $1" },
	{ "media_stored",
	  "UPDATE attachment SET state = 'stored', sha256 = $2,"
	  " stored_size = $3, fetched_at = now(), attempts = attempts + 1,"
	  " last_error = NULL, content = NULL, updated_at = now(),"
	  " seq = nextval('msgsync_seq') WHERE id = $1 AND state = 'pending'" },
	{ "media_attempt",
	  "UPDATE attachment SET attempts = attempts + $3::int,"
	  " state = CASE WHEN $2 <> 'pending' THEN $2"
	  "  WHEN attempts + $3::int >= $5::int THEN 'failed' ELSE state END,"
	  " last_error = $4, updated_at = now(),"
	  " seq = nextval('msgsync_seq') WHERE id = $1 AND state = 'pending'"
	  " RETURNING state" },
	{ "media_pending",
	  "SELECT count(*) FROM attachment WHERE source_id = $1"
	  " AND state = 'pending'" },
	{ "media_blob_put",
	  "INSERT INTO media_blob (sha256, size, loid) VALUES ($1, $2, $3)"
	  " ON CONFLICT (sha256) DO NOTHING RETURNING 1" },
	{ "mark_unread",
	  "UPDATE conversation SET is_read = false, updated_at = now(),"
	  " seq = nextval('msgsync_seq') WHERE id = ANY($1::bigint[])"
	  " AND is_read IS DISTINCT FROM false" },
	{ "mark_deleted",
	  "UPDATE message SET deleted_at = now(), deleted_reason = 'upstream',"
	  " missing_since = NULL, row_hash = NULL,"
	  " updated_at = now(), seq = nextval('msgsync_seq')"
	  " WHERE source_id = $1 AND external_id = ANY($2::text[])"
	  " AND deleted_at IS NULL" },
	{ "pending_load", pending_load },
	{ "pending_claim", pending_claim },
	{ "pending_settle", pending_settle },
	{ "probe_message", probe_message },
	{ "probe_provider", probe_provider },
	{ "state_load",
	  "SELECT cursor, full_checkpoint, fingerprint,"
	  " history_complete_at IS NOT NULL FROM sync_state"
	  " WHERE source_id = $1 AND stream = $2" },
	{ "state_ensure",
	  "INSERT INTO sync_state (source_id, stream) SELECT $1, $2 WHERE NOT EXISTS"
	  " (SELECT 1 FROM sync_state WHERE source_id = $1 AND stream = $2)"
	  " ON CONFLICT DO NOTHING" },
	{ "state_lock",
	  "SELECT cursor, fingerprint FROM sync_state WHERE source_id = $1"
	  " AND stream = $2 FOR UPDATE" },
	/* $6: incr (cursor only), full (and checkpoint), start, done. */
	{ "state_save",
	  "INSERT INTO sync_state AS s (source_id, stream, cursor, full_checkpoint,"
	  " fingerprint, last_sync_at, full_started_at, last_full_sync_at)"
	  " VALUES ($1, $2, $3, CASE WHEN $6::text IN ('full', 'start') THEN $4 END,"
	  "  $5, now(), CASE WHEN $6::text = 'start' THEN now() END,"
	  "  CASE WHEN $6::text = 'done' THEN now() END)"
	  " ON CONFLICT (source_id, stream) DO UPDATE SET cursor = EXCLUDED.cursor,"
	  " fingerprint = EXCLUDED.fingerprint, last_sync_at = now(),"
	  " updated_at = now(),"
	  " full_checkpoint = CASE $6::text WHEN 'incr' THEN s.full_checkpoint"
	  "  WHEN 'done' THEN NULL ELSE $4 END,"
	  " full_started_at = CASE $6::text WHEN 'start' THEN now()"
	  "  WHEN 'done' THEN NULL ELSE s.full_started_at END,"
	  " last_full_sync_at = CASE WHEN $6::text = 'done' THEN now()"
	  "  ELSE s.last_full_sync_at END" },
	{ "state_touch",
	  "UPDATE sync_state SET last_sync_at = now(), updated_at = now()"
	  " WHERE source_id = $1 AND stream = $2 AND cursor IS NOT NULL"
	  " RETURNING cursor" },
	{ "stream_ok",
	  "INSERT INTO sync_state AS s (source_id, stream, last_success_at)"
	  " VALUES ($1, $2, now()) ON CONFLICT (source_id, stream) DO UPDATE SET"
	  " last_success_at = now(), last_error = NULL, last_error_kind = NULL,"
	  " consecutive_failures = 0, updated_at = now()" },
	{ "stream_failed",
	  "INSERT INTO sync_state AS s (source_id, stream, last_error,"
	  " last_error_kind, consecutive_failures) VALUES ($1, $2, $3, $4, 1)"
	  " ON CONFLICT (source_id, stream) DO UPDATE SET last_error = $3,"
	  " last_error_kind = $4, consecutive_failures = s.consecutive_failures + 1,"
	  " updated_at = now()" },
	{ "run_abandon",
	  "UPDATE sync_run SET status = 'abandoned', finished_at = now(),"
	  " updated_at = now() WHERE source_id = $1 AND command = $2"
	  " AND status = 'running'" },
	{ "run_start",
	  "INSERT INTO sync_run (source_id, command) VALUES ($1, $2) RETURNING id" },
	{ "run_finish",
	  "UPDATE sync_run SET finished_at = now(), updated_at = now(), status = $2,"
	  " fetched = $3, inserted = $4, updated = $5, unchanged = $6,"
	  " api_calls = $7, retries = $8, error_kind = $9, error_message = $10,"
	  " rejected = $11 WHERE id = $1" },
	{ "lock", "SELECT pg_try_advisory_lock($1::integer, $2::integer)" },
	{ "unlock", "SELECT pg_advisory_unlock($1::integer, $2::integer)" },
	{ "next_allowed",
	  "SELECT extract(epoch FROM next_allowed_at)::bigint FROM source"
	  " WHERE id = $1 AND next_allowed_at > now()" },
	{ "set_next_allowed",
	  "UPDATE source SET next_allowed_at = CASE WHEN $2::bigint > 0 THEN"
	  " to_timestamp($2::bigint) END, updated_at = now() WHERE id = $1"
	  " AND next_allowed_at IS DISTINCT FROM CASE WHEN $2::bigint > 0 THEN"
	  " to_timestamp($2::bigint) END" },
	{ "source_get",
	  "WITH ins AS (INSERT INTO source (name, type) VALUES ($1, $2)"
	  " ON CONFLICT (name) DO NOTHING RETURNING id, type)"
	  " SELECT id, type FROM ins UNION ALL"
	  " SELECT id, type FROM source WHERE name = $1" },
	{ "source_retype",
	  "UPDATE source SET type = $2, updated_at = now() WHERE id = $1" },
};

/*
 * libpq's text as one clean line in m: what comes before its first line
 * break (libpq adds its hints, such as "Is the server running...", on lines
 * of their own; all: every line, joined), without the server's severity
 * ("FATAL:  ", "ERROR:  "), white space collapsed to single spaces.
 */
static void
one_line(char *m, size_t size, const char *s, int all)
{
	static const char *const sev[] = { "FATAL:  ", "ERROR:  ", "PANIC:  " };
	size_t n = 0, k;
	int space = 0;

	if (size == 0)
		return;
	for (; *s != '\0' && (all || *s != '\n') && n + 1 < size; s++) {
		for (k = 0; k < sizeof(sev) / sizeof(sev[0]); k++)
			if (strncmp(s, sev[k], strlen(sev[k])) == 0)
				break;
		if (k < sizeof(sev) / sizeof(sev[0])) {
			s += strlen(sev[k]) - 1;
			continue;
		}
		if (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') {
			space = n > 0;
			continue;
		}
		if (space && n + 2 < size)
			m[n++] = ' ';
		space = 0;
		m[n++] = *s;
	}
	m[n] = '\0';
}

/*
 * A failed statement's error as one line in m: the server's primary
 * message, then its detail and hint, joined with "; " (never the statement
 * and the caret under it that PQresultErrorMessage() adds); libpq's own
 * errors (no primary message: the connection broke) as one_line().
 */
static void
result_message(struct sync_db *db, const PGresult *r, char *m, size_t size)
{
	static const int fields[] = { PG_DIAG_MESSAGE_PRIMARY,
	    PG_DIAG_MESSAGE_DETAIL, PG_DIAG_MESSAGE_HINT };
	const char *f;
	size_t i, n;

	f = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (f == NULL) {
		f = r != NULL ? PQresultErrorMessage(r) : "";
		if (f == NULL || *f == '\0')
			f = PQerrorMessage(db->conn);
		while (*f == '\n' || *f == ' ')
			f++;
		one_line(m, size, f, 0);
		return;
	}
	m[0] = '\0';
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		if ((f = PQresultErrorField(r, fields[i])) == NULL || *f == '\0')
			continue;
		n = strlen(m);
		if (n > 0 && n + 2 < size) {
			memcpy(m + n, "; ", 3);
			n += 2;
		}
		one_line(m + n, size - n, f, 1);
	}
}

/*
 * SQLSTATEs that retrying will not cure (SPEC §3: exit 78, kind database):
 * class 28 (invalid authorization: a wrong password, a role that may not
 * log in), 3D000 (no such database), 42501 (insufficient privilege).
 */
static int
refusal_state(const char *state)
{
	return state != NULL && (strncmp(state, "28", 2) == 0 ||
	    strcmp(state, "3D000") == 0 || strcmp(state, "42501") == 0);
}

/*
 * Sets a database error: SQLSTATE class 22 (bad data) is a data error, a
 * refusal (refusal_state()) a configuration one, anything else temporary.
 */
static enum sync_rc
db_err(struct sync_db *db, const PGresult *r, struct sync_err *err,
    const char *what)
{
	const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	char m[400];

	result_message(db, r, m, sizeof(m));
	if (state != NULL && strncmp(state, "22", 2) == 0)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_DATA,
		    "cannot %s: %s", what, m);
	if (refusal_state(state))
		return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_DATABASE,
		    "cannot %s: %s", what, m);
	return sync_err_set(err, SYNC_ETEMP, SYNC_ERR_DATABASE, "cannot %s: %s",
	    what, m);
}

/*
 * Whether a connection that failed was refused by the server for good (a
 * wrong or missing password, a role that does not exist or may not log
 * in, no such database, no CONNECT privilege) rather than not reached.
 * libpq keeps no SQLSTATE for a failed connection (there is no PGresult;
 * libpq 15 offers only the text of PQerrorMessage()), so: a password the
 * server asked for and nobody gave is PQconnectionNeedsPassword(), exact;
 * the rest is recognised by the server's own words for SQLSTATE class 28,
 * 3D000 and 42501 at connection time (src/backend/libpq/auth.c and
 * utils/init/postinit.c), which only a FATAL message from the server
 * carries.  Servers that log in another language (lc_messages) are not
 * recognised: their refusals stay temporary (75), as before, never the
 * other way round.
 */
static int
connect_refused(PGconn *conn, const char *msg)
{
	static const char *const words[] = {
		"authentication failed for user",	/* 28P01, 28000 */
		"no pg_hba.conf entry",			/* 28000 */
		"pg_hba.conf rejects connection",	/* 28000 */
		"is not permitted to log in",		/* 28000 */
		"does not exist",			/* 28000 role, 3D000 */
		"permission denied for database",	/* 42501 */
	};
	size_t i;

	if (PQconnectionNeedsPassword(conn))
		return 1;
	if ((msg = strstr(msg, "FATAL:")) == NULL)
		return 0;
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strstr(msg, words[i]) != NULL)
			return 1;
	return 0;
}

static enum sync_rc
exec_simple(struct sync_db *db, const char *sql, const char *what,
    struct sync_err *err)
{
	PGresult *r = PQexec(db->conn, sql);
	enum sync_rc rc = SYNC_OK;

	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		rc = db_err(db, r, err, what);
	PQclear(r);
	return rc;
}

/* Runs a prepared statement; *out (may be NULL) gets the result. */
/*
 * Checks a statement's result: an error becomes err (naming what); on
 * success *out gets r (out NULL: r is cleared).
 */
static enum sync_rc
exec_result(struct sync_db *db, PGresult *r, PGresult **out, const char *what,
    struct sync_err *err)
{
	ExecStatusType st = PQresultStatus(r);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		enum sync_rc rc = db_err(db, r, err, what);

		PQclear(r);
		return rc;
	}
	if (out != NULL)
		*out = r;
	else
		PQclear(r);
	return SYNC_OK;
}

static enum sync_rc
exec_prep(struct sync_db *db, const char *name, int n, const char *const *v,
    PGresult **out, const char *what, struct sync_err *err)
{
	return exec_result(db, PQexecPrepared(db->conn, name, n, v, NULL, NULL, 0),
	    out, what, err);
}

static enum sync_rc
migrate(struct sync_db *db, struct sync_err *err)
{
	enum sync_rc rc = SYNC_OK;
	PGresult *r;
	int have = 0;
	size_t i;
	char v[16];
	const char *p[2];

	/* Fast path: everything applied, no lock needed. */
	r = PQexec(db->conn, "SELECT CASE WHEN to_regclass('schema_migrations')"
	    " IS NULL THEN -1 ELSE 0 END");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = db_err(db, r, err, "inspect the schema");
		PQclear(r);
		return rc;
	}
	have = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	if (have == 0) {
		r = PQexec(db->conn, "SELECT coalesce(max(version), 0) FROM"
		    " schema_migrations");
		/* A role that may not read it: say so, not what follows. */
		if ((rc = exec_result(db, r, &r, "read schema_migrations", err)) !=
		    SYNC_OK)
			return rc;
		have = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
		PQclear(r);
		if (have >= sync_migrations[sync_nmigrations - 1].version)
			return SYNC_OK;
	}
	if ((rc = exec_simple(db, "SELECT pg_advisory_lock(1836279667, 0)",
	    "take the migration lock", err)) != SYNC_OK)
		return rc;
	rc = exec_simple(db, "CREATE TABLE IF NOT EXISTS schema_migrations ("
	    " version integer PRIMARY KEY, name text NOT NULL,"
	    " applied_at timestamptz NOT NULL DEFAULT now())",
	    "create schema_migrations", err);
	for (i = 0; rc == SYNC_OK && i < sync_nmigrations; i++) {
		const struct sync_migration *m = &sync_migrations[i];

		snprintf(v, sizeof(v), "%d", m->version);
		p[0] = v;
		p[1] = m->name;
		r = PQexecParams(db->conn, "SELECT 1 FROM schema_migrations WHERE"
		    " version = $1", 1, NULL, p, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			rc = db_err(db, r, err, "read schema_migrations");
			PQclear(r);
			break;
		}
		have = PQntuples(r) > 0;
		PQclear(r);
		if (have)
			continue;
		sync_log(LOG_NOTICE, "applying migration %d (%s)", m->version, m->name);
		if ((rc = exec_simple(db, "BEGIN", "begin a migration", err)) != SYNC_OK)
			break;
		r = PQexec(db->conn, m->sql);
		if (PQresultStatus(r) != PGRES_COMMAND_OK &&
		    PQresultStatus(r) != PGRES_TUPLES_OK) {
			char what[160];

			snprintf(what, sizeof(what), "apply migration %d (%s)",
			    m->version, m->name);
			rc = db_err(db, r, err, what);
		}
		PQclear(r);
		if (rc == SYNC_OK) {
			r = PQexecParams(db->conn, "INSERT INTO schema_migrations"
			    " (version, name) VALUES ($1, $2)", 2, NULL, p, NULL,
			    NULL, 0);
			if (PQresultStatus(r) != PGRES_COMMAND_OK)
				rc = db_err(db, r, err, "record a migration");
			PQclear(r);
		}
		if (rc == SYNC_OK)
			rc = exec_simple(db, "COMMIT", "commit a migration", err);
		else
			PQclear(PQexec(db->conn, "ROLLBACK"));
	}
	PQclear(PQexec(db->conn, "SELECT pg_advisory_unlock(1836279667, 0)"));
	return rc;
}

/* Server notices ("relation ... already exists, skipping") are chatter. */
static void
on_notice(void *arg, const char *msg)
{
	(void)arg;
	sync_log(LOG_DEBUG, "database: %s", msg);
}

int
sync_db_conninfo_secrets(const char *conninfo)
{
	PQconninfoOption *opts, *o;
	int rc = 0;

	if (sync_secret_add(getenv("PGPASSWORD")) == -1)
		rc = -1;
	/* Not parsable: libpq says so at connect, without the password. */
	if (conninfo == NULL || *conninfo == '\0' ||
	    (opts = PQconninfoParse(conninfo, NULL)) == NULL)
		return rc;
	for (o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL &&
		    sync_secret_add(o->val) == -1)
			rc = -1;
	PQconninfoFree(opts);
	return rc;
}

/*
 * Whether the schema is there for a read-only connection: its
 * schema_migrations table exists (a role that may not read it fails here,
 * with 42501).  One older than these binaries cannot be read (they would
 * ask for what it lacks) and must not be migrated here: the next pass
 * migrates it.
 */
static enum sync_rc
have_schema(struct sync_db *db, struct sync_err *err)
{
	PGresult *r = PQexec(db->conn, "SELECT to_regclass('schema_migrations')"
	    " IS NOT NULL");
	enum sync_rc rc;
	int have, want = sync_migrations[sync_nmigrations - 1].version;

	if ((rc = exec_result(db, r, &r, "inspect the schema", err)) != SYNC_OK)
		return rc;
	db->schema = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	if (!db->schema)
		return SYNC_OK;
	r = PQexec(db->conn, "SELECT coalesce(max(version), 0) FROM schema_migrations");
	if ((rc = exec_result(db, r, &r, "read schema_migrations", err)) != SYNC_OK)
		return rc;
	have = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	if (have < want)
		return sync_err_set(err, SYNC_ETEMP, SYNC_ERR_DATABASE, "the "
		    "database schema is at version %d, these binaries need %d: "
		    "the next incr-sync or full-sync (not a dry run) applies the "
		    "migrations", have, want);
	return SYNC_OK;
}

/* The statements a read-only connection uses (the others need stage tables). */
static int
readonly_statement(const char *name)
{
	static const char *const names[] = { "lock", "unlock", "next_allowed",
	    "state_load" };
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(names[i], name) == 0)
			return 1;
	return 0;
}

/*
 * Connects.  readonly: migrates nothing, creates nothing (no stage table)
 * and runs every transaction read-only, a guard should a write slip
 * through; a database without the schema reads as empty.
 */
static struct sync_db *
db_open(const struct sync_config *cfg, int readonly, struct sync_err *err)
{
	const char *keys[5], *vals[5];
	struct sync_db *db;
	char ct[16];
	size_t i;
	int n = 0;

	if ((db = calloc(1, sizeof(*db))) == NULL) {
		sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
		return NULL;
	}
	db->readonly = readonly;
	snprintf(ct, sizeof(ct), "%ld", cfg->connect_timeout);
	/* Defaults first: the conninfo, expanded from dbname, overrides them. */
	keys[n] = "connect_timeout";
	vals[n++] = ct;
	keys[n] = "fallback_application_name";
	vals[n++] = "msgsync";
	if (cfg->conninfo != NULL && *cfg->conninfo != '\0') {
		keys[n] = "dbname";
		vals[n++] = cfg->conninfo;
	}
	keys[n] = NULL;
	vals[n] = NULL;
	db->conn = PQconnectdbParams(keys, vals, 1);
	if (db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK) {
		const char *msg = db->conn != NULL ? PQerrorMessage(db->conn) :
		    "out of memory";
		char m[400];

		one_line(m, sizeof(m), msg, 0);
		sync_err_set(err, db->conn != NULL && connect_refused(db->conn,
		    msg) ? SYNC_ECONFIG : SYNC_ETEMP, SYNC_ERR_DATABASE,
		    "cannot connect to the database: %s", m);
		sync_db_free(db);
		return NULL;
	}
	PQsetNoticeProcessor(db->conn, on_notice, NULL);
	if (PQsetClientEncoding(db->conn, "UTF8") != 0 ||
	    exec_simple(db, "SET application_name = 'msgsync'; SET TIME ZONE 'UTC';"
	    " SET lock_timeout = '60s'",
	    "configure the session", err) != SYNC_OK)
		goto fail;
	if (readonly) {
		if (exec_simple(db, "SET default_transaction_read_only = on",
		    "configure the session", err) != SYNC_OK ||
		    have_schema(db, err) != SYNC_OK)
			goto fail;
		if (!db->schema)
			return db;
	} else if (migrate(db, err) != SYNC_OK ||
	    sync_search_index(db, cfg, err) != SYNC_OK ||
	    exec_simple(db, stage_sql, "create the stage tables", err) != SYNC_OK)
		goto fail;
	for (i = 0; i < sizeof(prepared) / sizeof(prepared[0]); i++) {
		PGresult *r;

		if (readonly && !readonly_statement(prepared[i].name))
			continue;
		r = PQprepare(db->conn, prepared[i].name, prepared[i].sql, 0, NULL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			char what[96];

			snprintf(what, sizeof(what), "prepare '%s'", prepared[i].name);
			db_err(db, r, err, what);
			PQclear(r);
			goto fail;
		}
		PQclear(r);
	}
	return db;
fail:
	sync_db_free(db);
	return NULL;
}

struct sync_db *
sync_db_open(const struct sync_config *cfg, struct sync_err *err)
{
	return db_open(cfg, 0, err);
}

struct sync_db *
sync_db_open_readonly(const struct sync_config *cfg, struct sync_err *err)
{
	return db_open(cfg, 1, err);
}

int
sync_db_has_schema(const struct sync_db *db)
{
	return !db->readonly || db->schema;
}

void
sync_db_free(struct sync_db *db)
{
	if (db == NULL)
		return;
	if (db->conn != NULL)
		PQfinish(db->conn);
	sync_strmap_clear(&db->ids[0]);
	sync_strmap_clear(&db->ids[1]);
	sync_buf_release(&db->seen);
	free(db);
}

int
sync_db_reusable(struct sync_db *db)
{
	if (db == NULL || db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK ||
	    PQtransactionStatus(db->conn) != PQTRANS_IDLE || db->in_tx ||
	    db->locks != 0)
		return 0;
#ifdef LIBPQ_HAS_PIPELINING
	if (PQpipelineStatus(db->conn) != PQ_PIPELINE_OFF)
		return 0;
#endif
	sync_strmap_clear(&db->ids[0]);
	sync_strmap_clear(&db->ids[1]);
	db->cache_source = 0;
	db->all_new = 0;
	return 1;
}

enum sync_rc
sync_db_source(struct sync_db *db, const struct sync_source_cfg *src, int *id,
    struct sync_err *err)
{
	const char *v[2] = { src->name, src->type };
	PGresult *r;
	enum sync_rc rc;
	char idbuf[16];
	int tries;

	db->media = src->media;
	db->trust_paths = 0;

	/* Read-only: the source's row if it has one, else id 0 (no rows). */
	if (db->readonly) {
		*id = 0;
		if (!db->schema)
			return SYNC_OK;
		r = PQexecParams(db->conn, "SELECT id FROM source WHERE name = $1",
		    1, NULL, v, NULL, NULL, 0);
		if ((rc = exec_result(db, r, &r, "read the source", err)) != SYNC_OK)
			return rc;
		if (PQntuples(r) == 1)
			*id = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
		PQclear(r);
		return SYNC_OK;
	}
	/*
	 * A run that registers the source at the same moment makes our INSERT
	 * do nothing while its row is not yet in our statement's snapshot: the
	 * next statement sees it.
	 */
	for (tries = 0;; tries++) {
		if ((rc = exec_prep(db, "source_get", 2, v, &r, "register the source",
		    err)) != SYNC_OK)
			return rc;
		if (PQntuples(r) > 0)
			break;
		PQclear(r);
		if (tries == 3)
			return sync_err_set(err, SYNC_ETEMP, SYNC_ERR_DATABASE,
			    "cannot register source '%s'", src->name);
	}
	*id = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
	if (strcmp(PQgetvalue(r, 0, 1), src->type) != 0) {
		snprintf(idbuf, sizeof(idbuf), "%d", *id);
		v[0] = idbuf;
		sync_log(LOG_WARNING, "source '%s' changes type from '%s' to '%s'",
		    src->name, PQgetvalue(r, 0, 1), src->type);
		rc = exec_prep(db, "source_retype", 2, v, NULL, "update the source",
		    err);
	}
	PQclear(r);
	return rc;
}

static enum sync_rc
lock_call(struct sync_db *db, const char *stmt, int id, int which, int *got,
    struct sync_err *err)
{
	char key[16], idbuf[16];
	const char *v[2] = { key, idbuf };
	PGresult *r;
	enum sync_rc rc;

	snprintf(key, sizeof(key), "%d", LOCK_SOURCE + which);
	snprintf(idbuf, sizeof(idbuf), "%d", id);
	if ((rc = exec_prep(db, stmt, 2, v, &r, "use the source lock", err)) !=
	    SYNC_OK)
		return rc;
	/* Held locks are counted: a connection holding one is not reused. */
	if (PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0)
		db->locks += got != NULL ? 1 : -1;
	if (got != NULL)
		*got = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	return SYNC_OK;
}

/* Id 0 (read-only, a source without rows) has nothing to guard. */
enum sync_rc
sync_db_lock(struct sync_db *db, int id, int which, int *got, struct sync_err *err)
{
	if (id == 0) {
		*got = 1;
		return SYNC_OK;
	}
	return lock_call(db, "lock", id, which, got, err);
}

enum sync_rc
sync_db_unlock(struct sync_db *db, int id, int which, struct sync_err *err)
{
	if (id == 0)
		return SYNC_OK;
	return lock_call(db, "unlock", id, which, NULL, err);
}

enum sync_rc
sync_db_locks_held(struct sync_db *db, int id, unsigned *held,
    struct sync_err *err)
{
	char idbuf[16], base[16];
	const char *v[2] = { idbuf, base };
	PGresult *r = NULL;
	enum sync_rc rc;
	int i;

	*held = 0;
	snprintf(idbuf, sizeof(idbuf), "%d", id);
	snprintf(base, sizeof(base), "%d", LOCK_SOURCE);
	/* pg_locks, not pg_try_advisory_lock: looking must not take a lock. */
	rc = exec_result(db, PQexecParams(db->conn,
	    "SELECT DISTINCT l.classid::bigint - $2::bigint FROM pg_locks l"
	    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
	    " AND l.database = (SELECT oid FROM pg_database"
	    "  WHERE datname = current_database())"
	    " AND l.objid = $1::bigint::oid AND l.classid::bigint >= $2::bigint"
	    " AND l.classid::bigint < $2::bigint + 16", 2, NULL, v, NULL, NULL, 0),
	    &r, "read the source locks", err);
	if (rc != SYNC_OK)
		return rc;
	for (i = 0; i < PQntuples(r); i++)
		*held |= 1u << (strtol(PQgetvalue(r, i, 0), NULL, 10) & 15);
	PQclear(r);
	return SYNC_OK;
}

enum sync_rc
sync_db_next_allowed(struct sync_db *db, int id, time_t *until,
    struct sync_err *err)
{
	char idbuf[16];
	const char *v[1] = { idbuf };
	PGresult *r;
	enum sync_rc rc;

	*until = 0;
	if (id == 0)
		return SYNC_OK;
	snprintf(idbuf, sizeof(idbuf), "%d", id);
	if ((rc = exec_prep(db, "next_allowed", 1, v, &r,
	    "read the rate-limit window", err)) != SYNC_OK)
		return rc;
	if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
		*until = (time_t)strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return SYNC_OK;
}

enum sync_rc
sync_db_set_next_allowed(struct sync_db *db, int id, time_t until,
    struct sync_err *err)
{
	char idbuf[16], t[24];
	const char *v[2] = { idbuf, t };

	snprintf(idbuf, sizeof(idbuf), "%d", id);
	snprintf(t, sizeof(t), "%lld", (long long)until);
	return exec_prep(db, "set_next_allowed", 2, v, NULL,
	    "remember the rate-limit window", err);
}

static char *
dup_or_null(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

enum sync_rc
sync_db_state_load(struct sync_db *db, int id, const char *stream,
    struct sync_state *st, struct sync_err *err)
{
	char idbuf[16];
	const char *v[2] = { idbuf, stream };
	PGresult *r;
	enum sync_rc rc;

	memset(st, 0, sizeof(*st));
	if (id == 0)
		return SYNC_OK;
	snprintf(idbuf, sizeof(idbuf), "%d", id);
	if ((rc = exec_prep(db, "state_load", 2, v, &r, "read the cursor", err)) !=
	    SYNC_OK)
		return rc;
	if (PQntuples(r) == 1) {
		st->exists = 1;
		st->cursor = dup_or_null(r, 0, 0);
		st->checkpoint = dup_or_null(r, 0, 1);
		st->fingerprint = dup_or_null(r, 0, 2);
		st->walked = strcmp(PQgetvalue(r, 0, 3), "t") == 0;
	}
	PQclear(r);
	return SYNC_OK;
}

void
sync_state_release(struct sync_state *st)
{
	free(st->cursor);
	free(st->checkpoint);
	free(st->fingerprint);
	memset(st, 0, sizeof(*st));
}

static enum sync_rc state_locked(struct sync_db *, const char *const *, PGresult *,
    char **, char **, struct sync_err *);

/* One statement of a pipeline: a prepared one (name) or parameterless sql. */
struct step {
	const char		*name;
	const char		*sql;
	int			 n;
	const char *const	*v;
	const char		*what;
};

/*
 * Runs the k statements in one round trip (libpq's pipeline mode), in
 * order, as separate statements would run them: after a failed one the
 * server skips the rest, and the first error is the one reported.  *out
 * gets the last statement's result.  Without pipeline mode, one by one.
 */
static enum sync_rc
run_steps(struct sync_db *db, const struct step *s, int k, PGresult **out,
    struct sync_err *err)
{
	enum sync_rc rc = SYNC_OK;
	PGresult *r;
	int i;

	*out = NULL;
#ifdef LIBPQ_HAS_PIPELINING
	if (PQenterPipelineMode(db->conn) == 1) {
		int sent;

		for (sent = 0; sent < k; sent++)
			if ((s[sent].name != NULL ? PQsendQueryPrepared(db->conn,
			    s[sent].name, s[sent].n, s[sent].v, NULL, NULL, 0) :
			    PQsendQueryParams(db->conn, s[sent].sql, 0, NULL, NULL,
			    NULL, NULL, 0)) != 1)
				break;
		if (sent < k || PQpipelineSync(db->conn) != 1) {
			rc = db_err(db, NULL, err, s[sent < k ? sent : 0].what);
			PQexitPipelineMode(db->conn);
			return rc;
		}
		for (i = 0; i < sent; i++) {
			if ((r = PQgetResult(db->conn)) == NULL) {
				if (rc == SYNC_OK)
					rc = db_err(db, NULL, err, s[i].what);
				break;
			}
			if (PQresultStatus(r) != PGRES_COMMAND_OK &&
			    PQresultStatus(r) != PGRES_TUPLES_OK) {
				if (rc == SYNC_OK)
					rc = db_err(db, r, err, s[i].what);
				PQclear(r);
			} else if (i == k - 1 && rc == SYNC_OK)
				*out = r;
			else
				PQclear(r);
			while ((r = PQgetResult(db->conn)) != NULL)	/* its end */
				PQclear(r);
		}
		/* The sync's own result, then out of pipeline mode. */
		while ((r = PQgetResult(db->conn)) != NULL) {
			int sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;

			PQclear(r);
			if (sync)
				break;
		}
		if (PQexitPipelineMode(db->conn) != 1 && rc == SYNC_OK)
			rc = db_err(db, NULL, err, s[k - 1].what);
		if (rc != SYNC_OK) {
			PQclear(*out);
			*out = NULL;
		}
		return rc;
	}
#endif
	for (i = 0; i < k && rc == SYNC_OK; i++) {
		PQclear(*out);
		*out = NULL;
		rc = s[i].name != NULL ? exec_prep(db, s[i].name, s[i].n, s[i].v,
		    out, s[i].what, err) : exec_simple(db, s[i].sql, s[i].what, err);
	}
	if (rc != SYNC_OK) {
		PQclear(*out);
		*out = NULL;
	}
	return rc;
}

enum sync_rc
sync_db_begin_cursor(struct sync_db *db, int id, const char *stream, char **cur,
    char **fp, struct sync_err *err)
{
	char idbuf[16];
	const char *v[2] = { idbuf, stream };
	const struct step s[2] = {
		{ NULL, "BEGIN", 0, NULL, "begin a transaction" },
		{ "state_lock", NULL, 2, v, "lock the cursor" },
	};
	PGresult *r;
	enum sync_rc rc;

	*cur = NULL;
	*fp = NULL;
	snprintf(idbuf, sizeof(idbuf), "%d", id);
	db->in_tx = 1;		/* a failure rolls back what may have begun */
	memset(db->staged, 0, sizeof(db->staged));
	if ((rc = run_steps(db, s, 2, &r, err)) != SYNC_OK)
		return rc;
	return state_locked(db, v, r, cur, fp, err);
}

/* The rest of sync_db_begin_cursor() once state_lock answered r (r is taken). */
static enum sync_rc
state_locked(struct sync_db *db, const char *const *v, PGresult *r, char **cur,
    char **fp, struct sync_err *err)
{
	enum sync_rc rc = SYNC_OK;

	if (PQntuples(r) == 0) {
		PQclear(r);
		if ((rc = exec_prep(db, "state_ensure", 2, v, NULL, "create the "
		    "cursor", err)) != SYNC_OK ||
		    (rc = exec_prep(db, "state_lock", 2, v, &r, "lock the cursor",
		    err)) != SYNC_OK)
			return rc;
	}
	if (PQntuples(r) == 1 && ((!PQgetisnull(r, 0, 0) &&
	    (*cur = strdup(PQgetvalue(r, 0, 0))) == NULL) ||
	    (!PQgetisnull(r, 0, 1) && (*fp = strdup(PQgetvalue(r, 0, 1))) == NULL))) {
		free(*cur);
		*cur = NULL;
		rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
	}
	PQclear(r);
	return rc;
}

enum sync_rc
sync_db_state_touch(struct sync_db *db, int id, const char *stream, char **cur,
    int *touched, struct sync_err *err)
{
	char idbuf[16];
	const char *v[2] = { idbuf, stream };
	PGresult *r;
	enum sync_rc rc;

	*cur = NULL;
	*touched = 0;
	snprintf(idbuf, sizeof(idbuf), "%d", id);
	if ((rc = exec_prep(db, "state_touch", 2, v, &r, "save the cursor", err)) !=
	    SYNC_OK)
		return rc;
	if (PQntuples(r) == 1) {
		if ((*cur = strdup(PQgetvalue(r, 0, 0))) == NULL)
			rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE,
			    "out of memory");
		else
			*touched = 1;
	}
	PQclear(r);
	return rc;
}

enum sync_rc
sync_db_save_commit(struct sync_db *db, int id, const char *stream,
    const struct sync_state *st, enum sync_state_how how, struct sync_err *err)
{
	static const char *const hows[] = { "incr", "full", "start", "done" };
	char idbuf[16];
	const char *v[6];
	const struct step s[2] = {
		{ "state_save", NULL, 6, v, "save the cursor" },
		{ NULL, "COMMIT", 0, NULL, "commit the batch" },
	};
	PGresult *r;
	enum sync_rc rc;

	snprintf(idbuf, sizeof(idbuf), "%d", id);
	v[0] = idbuf;
	v[1] = stream;
	v[2] = st->cursor;
	v[3] = st->checkpoint;
	v[4] = st->fingerprint;
	v[5] = hows[how];
	if ((rc = run_steps(db, s, 2, &r, err)) != SYNC_OK)
		return rc;		/* the transaction is rolled back by the caller */
	PQclear(r);
	db->in_tx = 0;
	return seen_flush(db, SEEN_FLUSH, err);
}

enum sync_rc
sync_db_stream_outcome(struct sync_db *db, int id, const char *stream,
    const struct sync_err *e, struct sync_err *err)
{
	char idbuf[16];
	const char *v[4];

	snprintf(idbuf, sizeof(idbuf), "%d", id);
	v[0] = idbuf;
	v[1] = stream;
	if (e == NULL || e->rc == SYNC_OK)
		return exec_prep(db, "stream_ok", 2, v, NULL,
		    "record the stream's success", err);
	v[2] = e->msg;
	v[3] = sync_errkind_name(e->kind);
	return exec_prep(db, "stream_failed", 4, v, NULL,
	    "record the stream's failure", err);
}

enum sync_rc
sync_db_begin(struct sync_db *db, struct sync_err *err)
{
	enum sync_rc rc = exec_simple(db, "BEGIN", "begin a transaction", err);

	if (rc == SYNC_OK) {
		db->in_tx = 1;
		memset(db->staged, 0, sizeof(db->staged));
	}
	return rc;
}

enum sync_rc
sync_db_commit(struct sync_db *db, struct sync_err *err)
{
	enum sync_rc rc;

	db->in_tx = 0;
	if ((rc = exec_simple(db, "COMMIT", "commit the batch", err)) != SYNC_OK)
		return rc;
	return seen_flush(db, SEEN_FLUSH, err);
}

void
sync_db_rollback(struct sync_db *db)
{
	if (db->in_tx && PQstatus(db->conn) == CONNECTION_OK)
		PQclear(PQexec(db->conn, "ROLLBACK"));
	db->in_tx = 0;
	db->all_new = 0;
	/* Placeholders created in the transaction are gone, and their ids. */
	sync_strmap_clear(&db->ids[0]);
	sync_strmap_clear(&db->ids[1]);
}

/*
 * COPYs data in with sql.  With `tolerate` set, a unique violation is not
 * an error: *clash is set instead and the caller rolls back to its
 * savepoint.
 */
static enum sync_rc
copy_run(struct sync_db *db, const char *sql, const struct sync_buf *data,
    int tolerate, int *clash, struct sync_err *err)
{
	PGresult *r = PQexec(db->conn, sql);
	enum sync_rc rc = SYNC_OK;

	if (PQresultStatus(r) != PGRES_COPY_IN) {
		rc = db_err(db, r, err, "start COPY");
		PQclear(r);
		return rc;
	}
	PQclear(r);
	if ((data->len > 0 && PQputCopyData(db->conn, data->data, (int)data->len) != 1) ||
	    PQputCopyEnd(db->conn, NULL) != 1)
		rc = db_err(db, NULL, err, "send COPY data");
	while ((r = PQgetResult(db->conn)) != NULL) {
		const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);

		if (rc == SYNC_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
			if (tolerate && st != NULL && strcmp(st, "23505") == 0)
				*clash = 1;
			else
				rc = db_err(db, r, err, "COPY rows in");
		}
		PQclear(r);
	}
	return rc;
}

static enum sync_rc
copy_in(struct sync_db *db, const char *sql, const struct sync_buf *data,
    struct sync_err *err)
{
	return copy_run(db, sql, data, 0, NULL, err);
}

enum sync_rc
sync_db_copy(struct sync_db *db, const char *sql, const struct sync_buf *data,
    struct sync_err *err)
{
	return copy_in(db, sql, data, err);
}

/*
 * full-sync --prune: the ids of the stored messages a walk sees are
 * gathered here and written to the session's temporary table prune_seen
 * a few hundred thousand at a time, after a commit: a page's transaction
 * that touched a temporary table would make PostgreSQL empty the stage
 * tables (ON COMMIT DELETE ROWS) at every commit, costing more than the
 * rest of an unchanged page.  Memory stays bounded (SEEN_FLUSH bytes).
 */
/* Notes the id in column col of row k of r as seen; -1 on ENOMEM. */
static int
seen_add(struct sync_db *db, const PGresult *r, int k, int col)
{
	if (!db->prune || PQgetisnull(r, k, col))
		return 0;
	if (sync_buf_add(&db->seen, PQgetvalue(r, k, col),
	    (size_t)PQgetlength(r, k, col)) == -1 ||
	    sync_buf_add(&db->seen, "\n", 1) == -1)
		return -1;
	return 0;
}

/* Writes the ids gathered to prune_seen (outside a transaction). */
static enum sync_rc
seen_flush(struct sync_db *db, size_t above, struct sync_err *err)
{
	enum sync_rc rc;

	if (!db->prune || db->seen.len <= above)
		return SYNC_OK;
	rc = copy_in(db, "COPY prune_seen FROM STDIN", &db->seen, err);
	sync_buf_reset(&db->seen);
	return rc;
}

/* Adds an upsert's answer (distinct staged, inserted, updated) to c. */
static void
add_counts(const PGresult *r, struct sync_counts *c)
{
	long long distinct = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	long long ins = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
	long long upd = strtoll(PQgetvalue(r, 0, 2), NULL, 10);

	c->inserted += ins;
	c->updated += upd;
	c->unchanged += distinct - ins - upd;
}

/* Appends s to a text[] literal: {"a","b\"c"}. */
static int
array_add(struct sync_buf *a, const char *s)
{
	if (sync_buf_adds(a, a->len == 0 ? "{\"" : ",\"") == -1)
		return -1;
	for (; *s != '\0'; s++) {
		if ((*s == '"' || *s == '\\') && sync_buf_add(a, "\\", 1) == -1)
			return -1;
		if (sync_buf_add(a, s, 1) == -1)
			return -1;
	}
	return sync_buf_add(a, "\"", 1);
}

static int
array_end(struct sync_buf *a)
{
	return sync_buf_adds(a, a->len == 0 ? "{}" : "}");
}

int
sync_db_array_add(struct sync_buf *a, const char *s)
{
	return array_add(a, s);
}

int
sync_db_array_end(struct sync_buf *a)
{
	return array_end(a);
}

/* The array literal of v[0..n-1] into a (emptied first); -1 on ENOMEM. */
static int
array_of(struct sync_buf *a, char *const *v, size_t n)
{
	size_t i;

	sync_buf_reset(a);
	for (i = 0; i < n; i++)
		if (array_add(a, v[i]) == -1)
			return -1;
	return array_end(a);
}

/*
 * Makes sure every conversation (which 0) or sender (1) named by the rows
 * has an internal id in the cache, creating placeholders as needed.
 */
static enum sync_rc
resolve_ids(struct sync_db *db, int id, struct sync_msgrow **rows, size_t n,
    int which, struct sync_err *err)
{
	static const char *const stmt[2] = { "resolve_conversation",
	    "resolve_contact" };
	struct sync_strmap *m = &db->ids[which];
	struct sync_buf arr = SYNC_BUF_INIT(0);
	char idbuf[16];
	const char *v[2] = { idbuf, NULL };
	enum sync_rc rc = SYNC_OK;
	long long dummy;
	size_t i, missing;
	int tries, k;

	snprintf(idbuf, sizeof(idbuf), "%d", id);
	for (tries = 0; tries < 4; tries++) {
		PGresult *r;

		sync_buf_reset(&arr);
		for (i = 0, missing = 0; i < n; i++) {
			const char *key = which == 0 ? rows[i]->conversation_id :
			    rows[i]->sender_id;

			if (key == NULL || sync_strmap_get(m, key, &dummy))
				continue;
			missing++;
			if (array_add(&arr, key) == -1)
				goto nomem;
		}
		if (missing == 0)
			goto out;
		if (array_end(&arr) == -1)
			goto nomem;
		v[1] = arr.data;
		if ((rc = exec_prep(db, stmt[which], 2, v, &r,
		    which == 0 ? "resolve conversations" : "resolve contacts",
		    err)) != SYNC_OK)
			goto out;
		for (k = 0; k < PQntuples(r); k++)
			if (sync_strmap_put(m, PQgetvalue(r, k, 0),
			    strtoll(PQgetvalue(r, k, 1), NULL, 10)) == -1) {
				PQclear(r);
				goto nomem;
			}
		PQclear(r);
	}
	rc = sync_err_set(err, SYNC_ETEMP, SYNC_ERR_DATABASE,
	    "cannot resolve the %s of a page", which == 0 ? "conversations" :
	    "senders");
	goto out;
nomem:
	rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
out:
	sync_buf_release(&arr);
	return rc;
}

static int
row_cmp(const void *a, const void *b)
{
	const struct sync_msgrow *x = *(const struct sync_msgrow *const *)a;
	const struct sync_msgrow *y = *(const struct sync_msgrow *const *)b;
	int c = strcmp(x->external_id, y->external_id);

	if (c != 0)
		return c;
	return x->line < y->line ? 1 : x->line > y->line ? -1 : 0;	/* last first */
}

static int
row_find(const void *key, const void *elem)
{
	return strcmp(key, (*(const struct sync_msgrow *const *)elem)->external_id);
}

/* Appends sep and v's decimal digits (a page builds thousands: no printf). */
static int
add_num(struct sync_buf *o, const char *sep, long long v)
{
	char d[24];
	size_t k = sizeof(d);
	unsigned long long u = v < 0 ? 0 - (unsigned long long)v :
	    (unsigned long long)v;

	do {
		d[--k] = (char)('0' + u % 10);
		u /= 10;
	} while (u > 0);
	if (v < 0)
		d[--k] = '-';
	if (sync_buf_adds(o, sep) == -1)
		return -1;
	return sync_buf_add(o, d + k, sizeof(d) - k);
}

static int
add_id(struct sync_buf *o, const struct sync_strmap *m, const char *key)
{
	long long v;

	if (key == NULL || !sync_strmap_get(m, key, &v))
		return sync_buf_adds(o, "\t\\N");
	return add_num(o, "\t", v);
}

#define COPY_MESSAGE \
    "COPY message (source_id, external_id, conversation_id, sender_contact_id," \
    " direction, kind, body, sent_at, edited_at, status, status_at," \
    " validity_expires_at, folder, attachments, raw, deleted_at, row_hash," \
    " provider_id, deleted_reason, stream) FROM STDIN"
static const char copy_message[] = COPY_MESSAGE;
/* The savepoint and the COPY in one round trip. */
static const char copy_message_all_new[] = "SAVEPOINT all_new; " COPY_MESSAGE;

/* The line of a new row for copy_message, from its batch line. */
static int
fresh_line(struct sync_buf *o, const struct sync_db *db, int id,
    const struct sync_batch *b, const struct sync_msgrow *m)
{
	const char *ext = memchr(b->copy.data + m->line, '\t', m->rest - m->line);
	const char *ext_end;

	ext++;
	ext_end = memchr(ext, '\t', m->rest - (size_t)(ext - b->copy.data));
	if (add_num(o, "", id) == -1 || sync_buf_add(o, "\t", 1) == -1 ||
	    sync_buf_add(o, ext, (size_t)(ext_end - ext)) == -1 ||
	    add_id(o, &db->ids[0], m->conversation_id) == -1 ||
	    add_id(o, &db->ids[1], m->sender_id) == -1 ||
	    sync_buf_add(o, "\t", 1) == -1 ||
	    sync_buf_add(o, b->copy.data + m->rest, m->end - m->rest - 1) == -1 ||
	    sync_buf_adds(o, m->deleted ? "\tupstream\t" : "\t\\N\t") == -1 ||
	    (b->stream != NULL ? sync_copy_text(o, b->stream) :
	    sync_buf_adds(o, "\\N")) == -1 || sync_buf_add(o, "\n", 1) == -1)
		return -1;
	return 0;
}

/*
 * New incoming messages make their conversations unread (for APIs whose
 * conversations say so only when they are listed again).
 */
static enum sync_rc
mark_unread(struct sync_db *db, struct sync_msgrow **uniq, const unsigned char *state,
    size_t n, struct sync_err *err)
{
	struct sync_buf ids = SYNC_BUF_INIT(0);
	const char *v[1];
	char num[24];
	enum sync_rc rc = SYNC_OK;
	long long cid;
	size_t i;

	for (i = 0; i < n; i++) {
		if ((state != NULL && state[i] != 0) || !uniq[i]->incoming ||
		    uniq[i]->conversation_id == NULL ||
		    !sync_strmap_get(&db->ids[0], uniq[i]->conversation_id, &cid))
			continue;
		snprintf(num, sizeof(num), "%lld", cid);
		if (array_add(&ids, num) == -1) {
			sync_buf_release(&ids);
			return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE,
			    "out of memory");
		}
	}
	if (ids.len > 0) {
		if (array_end(&ids) == -1)
			rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE,
			    "out of memory");
		else {
			v[0] = ids.data;
			rc = exec_prep(db, "mark_unread", 1, v, NULL,
			    "mark conversations unread", err);
		}
	}
	sync_buf_release(&ids);
	return rc;
}

/* Follows the delivery status of the page's tracked rows (one per id). */
static enum sync_rc
track_rows(struct sync_db *db, int id, struct sync_msgrow **uniq, size_t n,
    struct sync_err *err)
{
	struct sync_buf ids = SYNC_BUF_INIT(0), sts = SYNC_BUF_INIT(0),
	    untils = SYNC_BUF_INIT(0);
	char idbuf[16], num[24];
	const char *v[4] = { idbuf, NULL, NULL, NULL };
	enum sync_rc rc = SYNC_OK;
	size_t i;

	for (i = 0; i < n; i++) {
		if (uniq[i]->track == SYNC_TRACK_NONE)
			continue;
		snprintf(num, sizeof(num), "%lld", (long long)uniq[i]->track_until);
		if (array_add(&ids, uniq[i]->external_id) == -1 ||
		    array_add(&sts, uniq[i]->track == SYNC_TRACK_FINAL ? "final" :
		    "pending") == -1 || array_add(&untils, num) == -1) {
			rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE,
			    "out of memory");
			goto out;
		}
	}
	if (ids.len == 0)
		goto out;
	if (array_end(&ids) == -1 || array_end(&sts) == -1 ||
	    array_end(&untils) == -1) {
		rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
		goto out;
	}
	snprintf(idbuf, sizeof(idbuf), "%d", id);
	v[1] = ids.data;
	v[2] = sts.data;
	v[3] = untils.data;
	rc = exec_prep(db, "track_messages", 4, v, NULL,
	    "follow the delivery status of the page's messages", err);
out:
	sync_buf_release(&ids);
	sync_buf_release(&sts);
	sync_buf_release(&untils);
	return rc;
}

static int
pid_cmp(const void *a, const void *b)
{
	const struct sync_msgrow *x = **(const struct sync_msgrow *const *const *)a;
	const struct sync_msgrow *y = **(const struct sync_msgrow *const *const *)b;
	int c = strcmp(x->provider_id, y->provider_id);

	if (c != 0)
		return c;
	return x->line < y->line ? -1 : x->line > y->line;	/* first first */
}

static int
pid_find(const void *key, const void *elem)
{
	return strcmp(key, (**(const struct sync_msgrow *const *const *)elem)->
	    provider_id);
}

/*
 * The slots of uniq[0..n-1] that name a provider identity, sorted by it
 * (the page's first row of an identity first); *np gets how many.
 */
static struct sync_msgrow ***
by_provider(struct sync_msgrow **uniq, size_t n, size_t *np)
{
	struct sync_msgrow ***v;
	size_t i;

	*np = 0;
	if ((v = calloc(n + 1, sizeof(*v))) == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		if (uniq[i]->provider_id != NULL)
			v[(*np)++] = &uniq[i];
	qsort(v, *np, sizeof(*v), pid_cmp);
	return v;
}

/*
 * One item, one row (SPEC §7.10).  Of the page's rows that name one
 * provider identity, one stored already by its external id is the item,
 * else the first on the page; the others are doubles (state 3).  A row
 * left new whose identity is stored under another external id is a
 * double too: that row is the item and keeps its external id.
 */
static enum sync_rc
probe_providers(struct sync_db *db, const char *idbuf, struct sync_msgrow **uniq,
    size_t n, unsigned char *state, struct sync_err *err)
{
	struct sync_buf arr = SYNC_BUF_INIT(0);
	struct sync_msgrow ***v;
	const char *p[2] = { idbuf, NULL };
	enum sync_rc rc = SYNC_OK;
	PGresult *r = NULL;
	size_t i, j, g, np, asked = 0;
	int k, stored;

	if ((v = by_provider(uniq, n, &np)) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
	for (i = 0; i < np; i = j) {
		stored = 0;
		for (j = i; j < np && strcmp((*v[j])->provider_id,
		    (*v[i])->provider_id) == 0; j++)
			stored |= state[v[j] - uniq] != 0;
		for (g = i; g < j; g++)
			if (state[v[g] - uniq] == 0 && (stored || g > i))
				state[v[g] - uniq] = 3;
		if (state[v[i] - uniq] == 0) {
			asked++;
			if (array_add(&arr, (*v[i])->provider_id) == -1)
				goto nomem;
		}
	}
	if (asked == 0)
		goto out;
	if (array_end(&arr) == -1)
		goto nomem;
	p[1] = arr.data;
	if ((rc = exec_prep(db, "probe_provider", 2, p, &r,
	    "look up the page's provider identities", err)) != SYNC_OK)
		goto out;
	for (k = 0; k < PQntuples(r); k++) {
		struct sync_msgrow ***hit = bsearch(PQgetvalue(r, k, 0), v, np,
		    sizeof(*v), pid_find);

		if (seen_add(db, r, k, 2) == -1)
			goto nomem;
		if (hit == NULL)
			continue;
		/* The group's first row is the one asked for. */
		for (i = (size_t)(hit - v); i > 0 && strcmp((*v[i - 1])->provider_id,
		    (**hit)->provider_id) == 0; i--)
			;
		if (state[v[i] - uniq] == 0 &&
		    strcmp(PQgetvalue(r, k, 1), (*v[i])->external_id) != 0)
			state[v[i] - uniq] = 3;
	}
	goto out;
nomem:
	rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
out:
	PQclear(r);
	free(v);
	sync_buf_release(&arr);
	return rc;
}

/*
 * A page of messages.  The page's rows are told apart by one probe of the
 * unique index: new rows are copied straight into the table (COPY's bulk
 * insertion, nothing staged); rows whose hash differs are staged and
 * updated; unchanged rows are not touched at all, not even parsed.  Rows
 * naming a provider identity stored under another external id are that
 * stored row (SPEC §7.10) and not written.
 *
 * Another pass may insert one of the new rows meanwhile (SMSEagle folders
 * share ids, and a backfill runs beside the incremental passes, SPEC §8):
 * the COPY then waits for that pass and fails on the unique index once it
 * commits.  The page goes back to a savepoint and is probed again, and
 * now sees that row.
 */
/* The page's attachments, after its messages (upsert_attachment). */
static enum sync_rc
apply_attachments(struct sync_db *db, const char *idbuf, struct sync_batch *b,
    struct sync_err *err)
{
	const char *v[3] = { idbuf, db->media == SYNC_MEDIA_LINK ? "link" :
	    "download", db->trust_paths ? "t" : "f" };
	PGresult *r = NULL;
	enum sync_rc rc;

	if ((rc = exec_simple(db, "DELETE FROM stage_attachment",
	    "empty the stage table", err)) != SYNC_OK ||
	    (rc = copy_in(db, "COPY stage_attachment FROM STDIN", &b->att,
	    err)) != SYNC_OK ||
	    (rc = exec_prep(db, "upsert_attachment", 3, v, &r,
	    "store the page's attachments", err)) != SYNC_OK)
		return rc;
	PQclear(r);
	return SYNC_OK;
}

static enum sync_rc
apply_messages(struct sync_db *db, int id, struct sync_batch *b,
    struct sync_counts *c, struct sync_err *err)
{
	struct sync_msgrow **rows, **uniq;
	struct sync_buf arr = SYNC_BUF_INIT(0), fresh = SYNC_BUF_INIT(0),
	    changed = SYNC_BUF_INIT(0);
	unsigned char *state = NULL;	/* 0 new, 1 same, 2 changed, 3 double */
	char idbuf[16];
	const char *v[2] = { idbuf, NULL };
	enum sync_rc rc = SYNC_OK;
	PGresult *r = NULL;
	size_t i, n = 0, nnew = 0, nchanged = 0;
	int k, tries, npid = 0;

	snprintf(idbuf, sizeof(idbuf), "%d", id);
	if (db->cache_source != id) {
		sync_strmap_clear(&db->ids[0]);
		sync_strmap_clear(&db->ids[1]);
		db->cache_source = id;
	}
	rows = calloc((size_t)b->nrows + 1, sizeof(*rows));
	uniq = calloc((size_t)b->nrows + 1, sizeof(*uniq));
	state = calloc((size_t)b->nrows + 1, 1);
	if (rows == NULL || uniq == NULL || state == NULL)
		goto nomem;
	for (i = 0; i < (size_t)b->nrows; i++) {
		rows[i] = &b->rows[i];
		npid += rows[i]->provider_id != NULL;
	}
	/* One row per id, the page's last. */
	qsort(rows, (size_t)b->nrows, sizeof(*rows), row_cmp);
	for (i = 0; i < (size_t)b->nrows; i++)
		if (n == 0 || strcmp(uniq[n - 1]->external_id, rows[i]->external_id) != 0)
			uniq[n++] = rows[i];

	if ((rc = resolve_ids(db, id, uniq, n, 0, err)) != SYNC_OK ||
	    (rc = resolve_ids(db, id, uniq, n, 1, err)) != SYNC_OK)
		goto out;

	/*
	 * While a walk keeps meeting only new rows (a first load), each page
	 * is first copied in whole under a savepoint; a row that exists after
	 * all makes it fall back to the probe.
	 */
	if (db->all_new) {
		int clash = 0;

		for (i = 0; i < n; i++)
			if (fresh_line(&fresh, db, id, b, uniq[i]) == -1)
				goto nomem;
		if ((rc = copy_run(db, copy_message_all_new, &fresh, 1, &clash,
		    err)) != SYNC_OK)
			goto out;
		if (!clash) {
			c->inserted += (long long)n;
			if (b->unread_on_new)
				rc = mark_unread(db, uniq, NULL, n, err);
			goto track;
		}
		db->all_new = 0;
		sync_buf_reset(&fresh);
		if ((rc = exec_simple(db, "ROLLBACK TO SAVEPOINT all_new",
		    "roll back to the savepoint", err)) != SYNC_OK)
			goto out;
	}
	for (i = 0; i < n; i++)
		if (array_add(&arr, uniq[i]->external_id) == -1)
			goto nomem;
	if (array_end(&arr) == -1)
		goto nomem;
	v[1] = arr.data;
	for (tries = 0;; tries++) {
		int clash = 0;

		memset(state, 0, n);
		nnew = nchanged = 0;
		sync_buf_reset(&fresh);
		sync_buf_reset(&changed);
		if ((rc = exec_prep(db, "probe_message", 2, v, &r, "look up the "
		    "page's messages", err)) != SYNC_OK)
			goto out;
		for (k = 0; k < PQntuples(r); k++) {
			struct sync_msgrow **hit = bsearch(PQgetvalue(r, k, 0), uniq,
			    n, sizeof(*uniq), row_find);

			if (seen_add(db, r, k, 2) == -1)
				goto nomem;
			if (hit == NULL)
				continue;
			state[hit - uniq] = !PQgetisnull(r, k, 1) &&
			    strcmp(PQgetvalue(r, k, 1), (*hit)->hash) == 0 ? 1 : 2;
		}
		PQclear(r);
		r = NULL;
		if (npid > 0 && (rc = probe_providers(db, idbuf, uniq, n, state,
		    err)) != SYNC_OK)
			goto out;

		for (i = 0; i < n; i++) {
			const struct sync_msgrow *m = uniq[i];

			if (state[i] == 1 || state[i] == 3)
				continue;
			if (state[i] == 2) {
				nchanged++;
				if (sync_buf_add(&changed, b->copy.data + m->line,
				    m->end - m->line) == -1)
					goto nomem;
				continue;
			}
			nnew++;
			if (fresh_line(&fresh, db, id, b, m) == -1)
				goto nomem;
		}
		if (nnew == 0)
			break;
		if ((rc = exec_simple(db, "SAVEPOINT fresh", "set a savepoint",
		    err)) != SYNC_OK || (rc = copy_run(db, copy_message, &fresh,
		    tries < 3, &clash, err)) != SYNC_OK)
			goto out;
		if (!clash)
			break;
		sync_log(LOG_DEBUG, "another pass stored some of the page's "
		    "messages meanwhile: probing them again");
		if ((rc = exec_simple(db, "ROLLBACK TO SAVEPOINT fresh",
		    "roll back to the savepoint", err)) != SYNC_OK)
			goto out;
	}
	db->all_new = nnew == n;
	if (nnew > 0 && b->unread_on_new &&
	    (rc = mark_unread(db, uniq, state, n, err)) != SYNC_OK)
		goto out;
	c->inserted += (long long)nnew;
	c->unchanged += (long long)(n - nnew - nchanged);
	if (nchanged > 0) {
		if (db->staged[SYNC_ENT_MESSAGE] && (rc = exec_simple(db,
		    stage_table[SYNC_ENT_MESSAGE], "empty the stage table", err)) !=
		    SYNC_OK)
			goto out;
		db->staged[SYNC_ENT_MESSAGE] = 1;
		v[1] = b->stream;
		if ((rc = copy_in(db, copy_sql[SYNC_ENT_MESSAGE], &changed, err)) !=
		    SYNC_OK || (rc = exec_prep(db, "upsert_message", 2, v, &r,
		    "update changed messages", err)) != SYNC_OK)
			goto out;
		add_counts(r, c);
	}
track:
	if (rc == SYNC_OK && b->ntrack > 0 && !b->notrack)
		rc = track_rows(db, id, uniq, n, err);
	if (rc == SYNC_OK && b->natt > 0 && db->media != SYNC_MEDIA_NONE)
		rc = apply_attachments(db, idbuf, b, err);
	goto out;
nomem:
	rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
out:
	PQclear(r);
	free(rows);
	free(uniq);
	free(state);
	sync_buf_release(&arr);
	sync_buf_release(&fresh);
	sync_buf_release(&changed);
	return rc;
}

void
sync_db_trust_paths(struct sync_db *db, int on)
{
	db->trust_paths = on;
}

enum sync_rc
sync_db_mark_deleted(struct sync_db *db, int id, char *const *ids, size_t n,
    struct sync_counts *c, struct sync_err *err)
{
	struct sync_buf a = SYNC_BUF_INIT(0);
	const char *v[2];
	char sid[16];
	enum sync_rc rc;
	PGresult *r = NULL;

	if (n == 0)
		return SYNC_OK;
	if (array_of(&a, ids, n) == -1) {
		sync_buf_release(&a);
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
	}
	snprintf(sid, sizeof(sid), "%d", id);
	v[0] = sid;
	v[1] = a.data;
	rc = exec_prep(db, "mark_deleted", 2, v, &r, "mark messages deleted", err);
	if (rc == SYNC_OK)
		c->updated += atoll(PQcmdTuples(r));
	PQclear(r);
	sync_buf_release(&a);
	return rc;
}

enum sync_rc
sync_db_apply(struct sync_db *db, int id, struct sync_batch *b,
    struct sync_counts *c, struct sync_err *err)
{
	/* Messages go their own way, apply_messages(). */
	static const char *const upserts[2] = { "upsert_contact",
	    "upsert_conversation" };
	char idbuf[16];
	const char *v[1] = { idbuf };
	PGresult *r;
	enum sync_rc rc;

	if (b->nrows == 0)
		return SYNC_OK;
	if ((int)b->copy.len < 0 || b->copy.len > 0x7fffffff)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_DATA,
		    "batch too large for one COPY");
	if (b->entity == SYNC_ENT_MESSAGE)
		return apply_messages(db, id, b, c, err);
	snprintf(idbuf, sizeof(idbuf), "%d", id);
	if (db->staged[b->entity] && (rc = exec_simple(db, stage_table[b->entity],
	    "empty the stage table", err)) != SYNC_OK)
		return rc;
	db->staged[b->entity] = 1;
	if ((rc = copy_in(db, copy_sql[b->entity], &b->copy, err)) != SYNC_OK)
		return rc;
	if ((rc = exec_prep(db, upserts[b->entity], 1, v, &r, "upsert the batch",
	    err)) != SYNC_OK)
		return rc;
	add_counts(r, c);
	PQclear(r);
	return SYNC_OK;
}

enum sync_rc
sync_db_pending_load(struct sync_db *db, int id, const char *after, size_t max,
    struct sync_pending_list *l, struct sync_err *err)
{
	char idbuf[16], lim[24];
	const char *v[3] = { idbuf, after, lim };
	PGresult *r;
	enum sync_rc rc;
	int k, n;

	memset(l, 0, sizeof(*l));
	snprintf(idbuf, sizeof(idbuf), "%d", id);
	snprintf(lim, sizeof(lim), "%zu", max);
	if ((rc = exec_prep(db, "pending_load", 3, v, &r,
	    "read the pending messages", err)) != SYNC_OK)
		return rc;
	n = PQntuples(r);
	if (n > 0 && (l->v = calloc((size_t)n, sizeof(*l->v))) == NULL) {
		PQclear(r);
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
	}
	for (k = 0; k < n; k++) {
		struct sync_pending *p = &l->v[l->n++];

		p->external_id = strdup(PQgetvalue(r, k, 0));
		p->folder = dup_or_null(r, k, 1);
		p->expired = strcmp(PQgetvalue(r, k, 2), "t") == 0;
		snprintf(p->key, sizeof(p->key), "%s", PQgetvalue(r, k, 3));
		snprintf(p->seq, sizeof(p->seq), "%s", PQgetvalue(r, k, 4));
		p->row = -1;
		if (p->external_id == NULL || (p->folder == NULL &&
		    !PQgetisnull(r, k, 1))) {
			PQclear(r);
			sync_pending_release(l);
			return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE,
			    "out of memory");
		}
	}
	PQclear(r);
	return SYNC_OK;
}

void
sync_pending_release(struct sync_pending_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		free(l->v[i].external_id);
		free(l->v[i].folder);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int
pending_cmp(const void *a, const void *b)
{
	const struct sync_pending *const *x = a, *const *y = b;

	return strcmp((*x)->external_id, (*y)->external_id);
}

enum sync_rc
sync_db_pending_claim(struct sync_db *db, int id, struct sync_pending_list *l,
    struct sync_err *err)
{
	struct sync_buf ids = SYNC_BUF_INIT(0), seqs = SYNC_BUF_INIT(0);
	struct sync_pending **v, key, *kp = &key, **hit;
	char idbuf[16];
	const char *p[3] = { idbuf, NULL, NULL };
	enum sync_rc rc = SYNC_OK;
	PGresult *r = NULL;
	size_t i;
	int k;

	if ((v = calloc(l->n + 1, sizeof(*v))) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
	/* Locked in one order, so that two claims cannot deadlock. */
	for (i = 0; i < l->n; i++) {
		l->v[i].claimed = 0;
		v[i] = &l->v[i];
	}
	qsort(v, l->n, sizeof(*v), pending_cmp);
	for (i = 0; i < l->n; i++)
		if (array_add(&ids, v[i]->external_id) == -1 ||
		    array_add(&seqs, v[i]->seq) == -1)
			goto nomem;
	if (array_end(&ids) == -1 || array_end(&seqs) == -1)
		goto nomem;
	snprintf(idbuf, sizeof(idbuf), "%d", id);
	p[1] = ids.data;
	p[2] = seqs.data;
	if ((rc = exec_prep(db, "pending_claim", 3, p, &r,
	    "lock the polled messages", err)) != SYNC_OK)
		goto out;
	for (k = 0; k < PQntuples(r); k++) {
		key.external_id = PQgetvalue(r, k, 0);
		if ((hit = bsearch(&kp, v, l->n, sizeof(*v), pending_cmp)) != NULL)
			(*hit)->claimed = 1;
	}
	goto out;
nomem:
	rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
out:
	PQclear(r);
	free(v);
	sync_buf_release(&ids);
	sync_buf_release(&seqs);
	return rc;
}

enum sync_rc
sync_db_pending_settle(struct sync_db *db, int id, const struct sync_pending_list *l,
    struct sync_poll_counts *pc, struct sync_err *err)
{
	struct sync_buf ids = SYNC_BUF_INIT(0), acts = SYNC_BUF_INIT(0);
	char idbuf[16];
	const char *v[3] = { idbuf, NULL, NULL };
	enum sync_rc rc = SYNC_OK;
	size_t i;

	for (i = 0; i < l->n; i++) {
		const struct sync_pending *p = &l->v[i];
		const char *a;

		if (!p->claimed)
			continue;
		pc->polled++;
		if (p->found && p->track == SYNC_TRACK_FINAL) {
			a = "final";
			pc->finalized++;
		} else if (p->expired) {
			a = "expired";
			pc->expired++;
		} else {
			a = "pending";
			pc->still_pending++;
		}
		if (array_add(&ids, p->external_id) == -1 || array_add(&acts, a) == -1)
			goto nomem;
	}
	if (ids.len == 0)
		goto out;
	if (array_end(&ids) == -1 || array_end(&acts) == -1)
		goto nomem;
	snprintf(idbuf, sizeof(idbuf), "%d", id);
	v[1] = ids.data;
	v[2] = acts.data;
	rc = exec_prep(db, "pending_settle", 3, v, NULL,
	    "settle the polled messages", err);
	goto out;
nomem:
	rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
out:
	sync_buf_release(&ids);
	sync_buf_release(&acts);
	return rc;
}

enum sync_rc
sync_db_run_start(struct sync_db *db, int id, const char *command,
    long long *run_id, struct sync_err *err)
{
	char idbuf[16];
	const char *v[2] = { idbuf, command };
	PGresult *r;
	enum sync_rc rc;

	snprintf(idbuf, sizeof(idbuf), "%d", id);
	/* We hold the source lock: a run still 'running' died without a word. */
	if ((rc = exec_prep(db, "run_abandon", 2, v, NULL,
	    "close abandoned runs", err)) != SYNC_OK)
		return rc;
	if ((rc = exec_prep(db, "run_start", 2, v, &r, "record the run", err)) !=
	    SYNC_OK)
		return rc;
	*run_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return SYNC_OK;
}

enum sync_rc
sync_db_run_finish(struct sync_db *db, long long run_id,
    const struct sync_source_result *s, struct sync_err *err)
{
	char n[8][24];
	const char *v[11];
	int i;

	snprintf(n[0], sizeof(n[0]), "%lld", run_id);
	snprintf(n[1], sizeof(n[1]), "%lld", s->totals.fetched);
	snprintf(n[2], sizeof(n[2]), "%lld", s->totals.inserted);
	snprintf(n[3], sizeof(n[3]), "%lld", s->totals.updated);
	snprintf(n[4], sizeof(n[4]), "%lld", s->totals.unchanged);
	snprintf(n[5], sizeof(n[5]), "%lld", s->totals.api_calls);
	snprintf(n[6], sizeof(n[6]), "%lld", s->totals.retries);
	v[0] = n[0];
	v[1] = sync_status_name(s->status);
	for (i = 1; i < 7; i++)
		v[i + 1] = n[i];
	v[8] = s->err.rc != SYNC_OK ? sync_errkind_name(s->err.kind) : NULL;
	v[9] = s->err.rc != SYNC_OK ? s->err.msg : NULL;
	snprintf(n[7], sizeof(n[7]), "%lld", s->totals.rejected);
	v[10] = n[7];
	return exec_prep(db, "run_finish", 11, v, NULL, "record the run's end", err);
}

/* ---- rejected_row (SPEC §7.9) ------------------------------------------ */

static enum sync_rc
exec_params(struct sync_db *db, const char *sql, int n, const char *const *v,
    PGresult **out, const char *what, struct sync_err *err)
{
	return exec_result(db, PQexecParams(db->conn, sql, n, NULL, v, NULL, NULL,
	    0), out, what, err);
}

enum sync_rc
sync_db_rejected_open(struct sync_db *db, int id, const char *stream,
    struct sync_strmap *open, struct sync_err *err)
{
	char sid[16];
	const char *v[2] = { sid, stream };
	PGresult *r = NULL;
	enum sync_rc rc;
	int i;

	snprintf(sid, sizeof(sid), "%d", id);
	if ((rc = exec_params(db, "SELECT DISTINCT position FROM rejected_row"
	    " WHERE source_id = $1 AND stream = $2 AND resolved_at IS NULL", 2, v,
	    &r, "load the unresolved rejected rows", err)) != SYNC_OK)
		return rc;
	for (i = 0; i < PQntuples(r); i++)
		if (sync_strmap_put(open, PQgetvalue(r, i, 0), 1) == -1) {
			rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE,
			    "out of memory");
			break;
		}
	PQclear(r);
	return rc;
}

enum sync_rc
sync_db_reject(struct sync_db *db, int id, const char *stream,
    const struct sync_reject *rj, struct sync_err *err)
{
	char sid[16];
	const char *v[5] = { sid, stream, rj->position, rj->reason, rj->raw };
	PGresult *r = NULL;
	enum sync_rc rc;
	int bumped;

	snprintf(sid, sizeof(sid), "%d", id);
	/* The same rejection seen again is counted, not repeated. */
	if ((rc = exec_params(db, "UPDATE rejected_row SET times_seen = times_seen + 1,"
	    " last_seen_at = now(), updated_at = now(), seq = nextval('msgsync_seq')"
	    " WHERE source_id = $1 AND stream = $2 AND position = $3 AND reason = $4"
	    " AND raw = $5 AND resolved_at IS NULL", 5, v, &r,
	    "record a rejected row", err)) != SYNC_OK)
		return rc;
	bumped = strcmp(PQcmdTuples(r), "0") != 0;
	PQclear(r);
	if (bumped)
		return SYNC_OK;
	return exec_params(db, "INSERT INTO rejected_row (source_id, stream, position,"
	    " reason, raw) VALUES ($1, $2, $3, $4, $5)", 5, v, NULL,
	    "record a rejected row", err);
}

enum sync_rc
sync_db_rejected_resolve(struct sync_db *db, int id, const char *stream,
    const char *position, struct sync_err *err)
{
	char sid[16];
	const char *v[3] = { sid, stream, position };

	snprintf(sid, sizeof(sid), "%d", id);
	return exec_params(db, "UPDATE rejected_row SET resolved_at = now(),"
	    " updated_at = now(), seq = nextval('msgsync_seq') WHERE source_id = $1"
	    " AND stream = $2 AND position = $3 AND resolved_at IS NULL", 3, v, NULL,
	    "resolve a rejected row", err);
}

/* *out gets the rows of r (which it then owns; r is cleared on ENOMEM). */
static enum sync_rc
rows_wrap(PGresult *r, struct sync_rows **out, struct sync_err *err)
{
	if ((*out = malloc(sizeof(**out))) == NULL) {
		PQclear(r);
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
	}
	(*out)->res = r;
	return SYNC_OK;
}

enum sync_rc
sync_db_query(struct sync_db *db, const char *sql, int n, const char *const *p,
    struct sync_rows **out, struct sync_err *err)
{
	PGresult *r;

	*out = NULL;
	/* Read-only, without the schema: nothing is stored, nothing found. */
	if (db->readonly && !db->schema)
		return SYNC_OK;
	r = PQexecParams(db->conn, sql, n, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		enum sync_rc rc = db_err(db, r, err, "read the sync status");

		PQclear(r);
		return rc;
	}
	return rows_wrap(r, out, err);
}

enum sync_rc
sync_db_exec(struct sync_db *db, const char *what, const char *sql, int n,
    const char *const *p, struct sync_rows **out, struct sync_err *err)
{
	PGresult *r = NULL;
	enum sync_rc rc;

	if (out != NULL)
		*out = NULL;
	if ((rc = exec_result(db, PQexecParams(db->conn, sql, n, NULL, p, NULL,
	    NULL, 0), &r, what, err)) != SYNC_OK)
		return rc;
	if (out == NULL) {
		PQclear(r);
		return SYNC_OK;
	}
	return rows_wrap(r, out, err);
}

enum sync_rc
sync_db_stream(struct sync_db *db, const char *what, const char *sql, int n,
    const char *const *p, int (*fn)(void *, const struct sync_rows *),
    void *arg, const char *stopped, struct sync_err *err)
{
	struct sync_rows one;
	enum sync_rc rc = SYNC_OK;
	PGcancel *cancel;
	PGresult *r;
	char why[256];
	int stop = 0;

	if (!PQsendQueryParams(db->conn, sql, n, NULL, p, NULL, NULL, 0))
		return db_err(db, NULL, err, what);
	if (!PQsetSingleRowMode(db->conn))
		rc = sync_err_set(err, SYNC_ETEMP, SYNC_ERR_DATABASE,
		    "cannot %s: single-row mode refused", what);
	/* Every result is taken, also after an error: the connection is idle. */
	while ((r = PQgetResult(db->conn)) != NULL) {
		switch (PQresultStatus(r)) {
		case PGRES_SINGLE_TUPLE:
			one.res = r;
			if (rc == SYNC_OK && !stop && fn(arg, &one) == -1) {
				stop = 1;
				if ((cancel = PQgetCancel(db->conn)) != NULL) {
					PQcancel(cancel, why, sizeof(why));
					PQfreeCancel(cancel);
				}
			}
			break;
		case PGRES_TUPLES_OK:
		case PGRES_COMMAND_OK:
			break;
		default:
			if (rc == SYNC_OK && !stop)
				rc = db_err(db, r, err, what);
			break;
		}
		PQclear(r);
	}
	if (stop && rc == SYNC_OK)
		rc = sync_err_set(err, SYNC_EINTR, SYNC_ERR_INTERRUPTED, "%s",
		    stopped);
	return rc;
}

int
sync_rows_count(const struct sync_rows *rows)
{
	return rows != NULL ? PQntuples(rows->res) : 0;
}

const char *
sync_rows_get(const struct sync_rows *rows, int row, int col)
{
	if (rows == NULL || row >= PQntuples(rows->res) || col >= PQnfields(rows->res) ||
	    PQgetisnull(rows->res, row, col))
		return NULL;
	return PQgetvalue(rows->res, row, col);
}

void
sync_rows_free(struct sync_rows *rows)
{
	if (rows == NULL)
		return;
	PQclear(rows->res);
	free(rows);
}

/* ---- full-sync --prune (SPEC §8) --------------------------------------- */

/*
 * The stored messages of the walked streams ($2) that the walks (started
 * at $3) did not see, within the window ($4, NULL: all), except those the
 * provider cannot list (coverage.listable_from) and those stored since the
 * walks started, and of the conversations $5 (NULL: all): the first miss
 * sets missing_since, a miss after one by an
 * earlier walk confirms the deletion.  row_hash is cleared, so that a row
 * seen again is rewritten, which clears both.  It runs with nested loops
 * off: on a table just loaded and not yet analysed, the planner would
 * otherwise scan the seen set once for every stored message; the updates
 * find their rows by the primary key without a join.
 */
static const char prune_sql[] =
    "WITH c AS MATERIALIZED (SELECT m.id, m.missing_since"
    "  FROM message m WHERE m.source_id = $1 AND m.stream = ANY($2::text[])"
    "  AND m.deleted_at IS NULL AND m.created_at < $3::timestamptz"
    "  AND ($4::timestamptz IS NULL OR m.sent_at >= $4::timestamptz)"
    "  AND ($5::text[] IS NULL OR m.conversation_id IN (SELECT k.id FROM"
    "   conversation k WHERE k.source_id = $1 AND k.external_id = ANY($5)))"
    "  AND NOT EXISTS (SELECT 1 FROM prune_seen s WHERE s.id = m.id)"
    "  AND NOT EXISTS (SELECT 1 FROM coverage v WHERE"
    "   v.conversation_id = m.conversation_id AND v.listable_from IS NOT NULL"
    "   AND (m.sent_at IS NULL OR m.sent_at < v.listable_from))),"
    " mi AS (UPDATE message t SET missing_since = now(), row_hash = NULL,"
    "  updated_at = now(), seq = nextval('msgsync_seq') WHERE t.id ="
    "  ANY(ARRAY(SELECT id FROM c WHERE missing_since IS NULL)) RETURNING t.stream),"
    " pr AS (UPDATE message t SET deleted_at = now(), deleted_reason = 'pruned',"
    "  row_hash = NULL, updated_at = now(), seq = nextval('msgsync_seq')"
    "  WHERE t.id = ANY(ARRAY(SELECT id FROM c"
    "  WHERE missing_since < $3::timestamptz)) RETURNING t.stream)"
    " SELECT x, (SELECT count(*) FROM mi WHERE mi.stream = x),"
    "  (SELECT count(*) FROM pr WHERE pr.stream = x)"
    " FROM unnest($2::text[]) AS u(x)";

#define SEEN_RESET "TRUNCATE prune_seen"

enum sync_rc
sync_db_prune_begin(struct sync_db *db, char *start, size_t size,
    struct sync_err *err)
{
	PGresult *r = NULL;
	enum sync_rc rc;

	db->prune = 0;
	sync_buf_reset(&db->seen);
	if ((rc = exec_simple(db, SEEN_RESET, "empty the seen set", err)) !=
	    SYNC_OK || (rc = exec_result(db, PQexec(db->conn,
	    "SELECT now()"), &r, "read the time", err)) != SYNC_OK)
		return rc;
	snprintf(start, size, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	db->prune = 1;
	return SYNC_OK;
}

void
sync_db_prune_end(struct sync_db *db)
{
	db->prune = 0;
	sync_buf_reset(&db->seen);
}

enum sync_rc
sync_db_prune(struct sync_db *db, int id, char *const *streams, size_t n,
    const char *start, const char *window, char *const *convs, size_t nconvs,
    long long *missing, long long *pruned, struct sync_err *err)
{
	struct sync_buf a = SYNC_BUF_INIT(0), cv = SYNC_BUF_INIT(0);
	const char *v[5];
	char sid[16];
	PGresult *r = NULL;
	enum sync_rc rc;
	size_t i;
	int k;

	for (i = 0; i < n; i++)
		missing[i] = pruned[i] = 0;
	rc = seen_flush(db, 0, err);
	db->prune = 0;
	if (rc != SYNC_OK)
		return rc;
	if (array_of(&a, streams, n) == -1 || (convs != NULL &&
	    array_of(&cv, convs, nconvs) == -1)) {
		sync_buf_release(&a);
		sync_buf_release(&cv);
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
	}
	snprintf(sid, sizeof(sid), "%d", id);
	v[0] = sid;
	v[1] = a.data;
	v[2] = start;
	v[3] = window;
	v[4] = convs != NULL ? cv.data : NULL;
	if ((rc = exec_simple(db, "ANALYZE prune_seen", "analyse the seen set",
	    err)) == SYNC_OK && (rc = sync_db_begin(db, err)) == SYNC_OK) {
		if ((rc = exec_simple(db, "SET LOCAL enable_nestloop = off",
		    "plan the reconciliation", err)) == SYNC_OK &&
		    (rc = exec_params(db, prune_sql, 5, v, &r, "reconcile deletions",
		    err)) == SYNC_OK && (rc = sync_db_commit(db, err)) == SYNC_OK)
			for (k = 0; k < PQntuples(r); k++)
				for (i = 0; i < n; i++)
					if (strcmp(PQgetvalue(r, k, 0), streams[i]) == 0) {
						missing[i] = atoll(PQgetvalue(r, k, 1));
						pruned[i] = atoll(PQgetvalue(r, k, 2));
					}
		if (rc != SYNC_OK)
			sync_db_rollback(db);
	}
	PQclear(r);
	sync_buf_release(&a);
	sync_buf_release(&cv);
	if (rc == SYNC_OK)	/* frees its pages for the next source */
		rc = exec_simple(db, SEEN_RESET, "empty the seen set", err);
	return rc;
}
/* ---- stream_gap: gaps of since_seq streams (gaps.c) ------------------- */

enum sync_rc
sync_db_gaps_summary(struct sync_db *db, int id, struct sync_gapsum *v,
    size_t max, size_t *n, struct sync_err *err)
{
	char sid[16];
	const char *p[1] = { sid };
	PGresult *r = NULL;
	enum sync_rc rc;
	int i;

	*n = 0;
	snprintf(sid, sizeof(sid), "%d", id);
	if ((rc = exec_params(db, "SELECT stream, count(*) FILTER (WHERE"
	    " unrecoverable_at IS NULL), max(hi) FROM stream_gap WHERE source_id = $1"
	    " GROUP BY stream", 1, p, &r, "read the source's gaps", err)) != SYNC_OK)
		return rc;
	for (i = 0; i < PQntuples(r) && *n < max; i++) {
		snprintf(v[*n].stream, sizeof(v[*n].stream), "%s", PQgetvalue(r, i, 0));
		v[*n].open = strtoll(PQgetvalue(r, i, 1), NULL, 10);
		v[*n].top = strtoll(PQgetvalue(r, i, 2), NULL, 10);
		(*n)++;
	}
	PQclear(r);
	return SYNC_OK;
}

enum sync_rc
sync_db_gaps_load(struct sync_db *db, int id, const char *stream, size_t max,
    struct sync_gap **v, size_t *n, struct sync_err *err)
{
	char sid[16], lim[24];
	const char *p[3] = { sid, stream, lim };
	PGresult *r = NULL;
	enum sync_rc rc;
	int i, nt;

	*v = NULL;
	*n = 0;
	snprintf(sid, sizeof(sid), "%d", id);
	snprintf(lim, sizeof(lim), "%zu", max);
	if ((rc = exec_params(db, "SELECT lo, hi FROM stream_gap WHERE source_id = $1"
	    " AND stream = $2 AND unrecoverable_at IS NULL ORDER BY lo LIMIT $3", 3,
	    p, &r, "load the stream's gaps", err)) != SYNC_OK)
		return rc;
	nt = PQntuples(r);
	if (nt > 0 && (*v = calloc((size_t)nt, sizeof(**v))) == NULL)
		rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
	for (i = 0; rc == SYNC_OK && i < nt; i++) {
		(*v)[*n].lo = strtoll(PQgetvalue(r, i, 0), NULL, 10);
		(*v)[*n].hi = strtoll(PQgetvalue(r, i, 1), NULL, 10);
		(*n)++;
	}
	PQclear(r);
	return rc;
}

enum sync_rc
sync_db_gaps_in(struct sync_db *db, int id, const char *stream, long long from,
    long long to, struct sync_gaprow **v, size_t *n, struct sync_err *err)
{
	char sid[16], f[24], t[24];
	const char *p[4] = { sid, stream, f, t };
	PGresult *r = NULL;
	enum sync_rc rc;
	int i, nt;

	*v = NULL;
	*n = 0;
	snprintf(sid, sizeof(sid), "%d", id);
	snprintf(f, sizeof(f), "%lld", from);
	snprintf(t, sizeof(t), "%lld", to);
	if ((rc = exec_params(db, "SELECT lo, hi, found_at, reads, unrecoverable_at"
	    " FROM stream_gap WHERE source_id = $1 AND stream = $2 AND hi > $3"
	    " AND lo <= $4 ORDER BY lo FOR UPDATE", 4, p, &r,
	    "read the stream's gaps", err)) != SYNC_OK)
		return rc;
	nt = PQntuples(r);
	if (nt > 0 && (*v = calloc((size_t)nt, sizeof(**v))) == NULL)
		rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
	for (i = 0; rc == SYNC_OK && i < nt; i++) {
		struct sync_gaprow *g = &(*v)[i];

		g->lo = strtoll(PQgetvalue(r, i, 0), NULL, 10);
		g->hi = strtoll(PQgetvalue(r, i, 1), NULL, 10);
		snprintf(g->found, sizeof(g->found), "%s", PQgetvalue(r, i, 2));
		g->reads = (int)strtol(PQgetvalue(r, i, 3), NULL, 10);
		snprintf(g->unrec, sizeof(g->unrec), "%s", PQgetisnull(r, i, 4) ?
		    "" : PQgetvalue(r, i, 4));
		(*n)++;
	}
	PQclear(r);
	return rc;
}

enum sync_rc
sync_db_gap_drop(struct sync_db *db, int id, const char *stream, long long lo,
    struct sync_err *err)
{
	char sid[16], l[24];
	const char *p[3] = { sid, stream, l };

	snprintf(sid, sizeof(sid), "%d", id);
	if (lo < 0)
		return exec_params(db, "DELETE FROM stream_gap WHERE source_id = $1"
		    " AND stream = $2", 2, p, NULL, "forget the stream's gaps", err);
	snprintf(l, sizeof(l), "%lld", lo);
	return exec_params(db, "DELETE FROM stream_gap WHERE source_id = $1 AND"
	    " stream = $2 AND lo = $3", 3, p, NULL, "close a gap", err);
}

enum sync_rc
sync_db_gap_put(struct sync_db *db, int id, const char *stream,
    const struct sync_gaprow *g, long long window, int *open, int *marked,
    struct sync_err *err)
{
	char sid[16], l[24], h[24], rd[16], w[24];
	const char *p[8] = { sid, stream, l, h, g->found[0] ? g->found : NULL, rd,
	    g->unrec[0] ? g->unrec : NULL, w };
	PGresult *r = NULL;
	enum sync_rc rc;

	snprintf(sid, sizeof(sid), "%d", id);
	snprintf(l, sizeof(l), "%lld", g->lo);
	snprintf(h, sizeof(h), "%lld", g->hi);
	snprintf(rd, sizeof(rd), "%d", g->reads);
	snprintf(w, sizeof(w), "%lld", window);
	/*
	 * A gap keeps when it was first found; once that is gap_window ago it
	 * is unrecoverable (marked once: *marked says it happened now).
	 */
	if ((rc = exec_params(db, "INSERT INTO stream_gap AS g (source_id, stream,"
	    " lo, hi, found_at, checked_at, reads, unrecoverable_at) VALUES ($1, $2,"
	    " $3, $4, coalesce($5::timestamptz, now()), CASE WHEN $6::int > 0 THEN"
	    " now() END, $6::int, coalesce($7::timestamptz, CASE WHEN"
	    " coalesce($5::timestamptz, now()) <= now() - make_interval(secs =>"
	    " $8::double precision) THEN now() END)) ON CONFLICT (source_id,"
	    " stream, lo) DO UPDATE SET hi = excluded.hi, checked_at ="
	    " excluded.checked_at, reads = excluded.reads, unrecoverable_at ="
	    " coalesce(g.unrecoverable_at, excluded.unrecoverable_at), updated_at ="
	    " now(), seq = nextval('msgsync_seq') RETURNING unrecoverable_at IS NULL,"
	    " unrecoverable_at IS NOT NULL AND $7::timestamptz IS NULL AND"
	    " unrecoverable_at = now()", 8, p, &r, "record a gap", err)) != SYNC_OK)
		return rc;
	*open = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	*marked = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 1), "t") == 0;
	PQclear(r);
	return SYNC_OK;
}

/* ---- media-sync's queue and the database store (SPEC §9) -------------- */

enum sync_rc
sync_db_media_prepare(struct sync_db *db, int id, int restart,
    struct sync_err *err)
{
	char idbuf[16];
	const char *v[2] = { idbuf, restart ? "t" : "f" };

	snprintf(idbuf, sizeof(idbuf), "%d", id);
	return exec_prep(db, "media_prepare", 2, v, NULL,
	    "queue the source's attachments", err);
}

void
sync_media_rows_release(struct sync_media_rows *l)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		free(l->v[i].external_id);
		free(l->v[i].kind);
		free(l->v[i].url);
		free(l->v[i].local_path);
		free(l->v[i].message_id);
		free(l->v[i].conversation_id);
		free(l->v[i].raw);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

enum sync_rc
sync_db_media_load(struct sync_db *db, int id, const char *after, size_t max,
    struct sync_media_rows *l, struct sync_err *err)
{
	char idbuf[16], lim[24];
	const char *v[3] = { idbuf, after, lim };
	PGresult *r;
	enum sync_rc rc;
	int k, n;

	memset(l, 0, sizeof(*l));
	snprintf(idbuf, sizeof(idbuf), "%d", id);
	snprintf(lim, sizeof(lim), "%zu", max);
	if ((rc = exec_prep(db, "media_load", 3, v, &r,
	    "read the pending attachments", err)) != SYNC_OK)
		return rc;
	n = PQntuples(r);
	if (n > 0 && (l->v = calloc((size_t)n, sizeof(*l->v))) == NULL) {
		PQclear(r);
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
	}
	for (k = 0; k < n; k++) {
		struct sync_media_row *a = &l->v[l->n++];

		a->id = strtoll(PQgetvalue(r, k, 0), NULL, 10);
		a->external_id = dup_or_null(r, k, 1);
		a->kind = dup_or_null(r, k, 2);
		a->url = dup_or_null(r, k, 3);
		a->stripped = strcmp(PQgetvalue(r, k, 4), "t") == 0;
		a->expired = strcmp(PQgetvalue(r, k, 5), "t") == 0;
		a->local_path = dup_or_null(r, k, 6);
		a->inline_content = strcmp(PQgetvalue(r, k, 7), "t") == 0;
		a->size = PQgetisnull(r, k, 8) ? -1 :
		    strtoll(PQgetvalue(r, k, 8), NULL, 10);
		a->attempts = (int)strtol(PQgetvalue(r, k, 9), NULL, 10);
		a->message_id = dup_or_null(r, k, 10);
		a->conversation_id = dup_or_null(r, k, 11);
		a->raw = dup_or_null(r, k, 12);
		snprintf(a->key, sizeof(a->key), "%s", PQgetvalue(r, k, 13));
		if (a->external_id == NULL || a->message_id == NULL ||
		    (a->url == NULL && !PQgetisnull(r, k, 3)) ||
		    (a->raw == NULL && !PQgetisnull(r, k, 12)) ||
		    (a->kind == NULL && !PQgetisnull(r, k, 2)) ||
		    (a->local_path == NULL && !PQgetisnull(r, k, 6)) ||
		    (a->conversation_id == NULL && !PQgetisnull(r, k, 11))) {
			PQclear(r);
			sync_media_rows_release(l);
			return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE,
			    "out of memory");
		}
	}
	PQclear(r);
	return SYNC_OK;
}

enum sync_rc
sync_db_media_content(struct sync_db *db, long long att, struct sync_buf *out,
    struct sync_err *err)
{
	char idbuf[24];
	const char *v[1] = { idbuf };
	int fmt[1] = { 0 };
	PGresult *r = NULL;
	enum sync_rc rc;

	snprintf(idbuf, sizeof(idbuf), "%lld", att);
	/* The bytes in binary: no hex text to decode. */
	rc = exec_result(db, PQexecPrepared(db->conn, "media_content", 1, v, NULL,
	    fmt, 1), &r, "read an attachment's inline content", err);
	if (rc != SYNC_OK)
		return rc;
	sync_buf_reset(out);
	if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) &&
	    sync_buf_add(out, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0)) == -1)
		rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "out of memory");
	PQclear(r);
	return rc;
}

enum sync_rc
sync_db_media_stored(struct sync_db *db, long long att, const char *sha256,
    long long size, struct sync_err *err)
{
	char idbuf[24], sz[24];
	const char *v[3] = { idbuf, sha256, sz };

	snprintf(idbuf, sizeof(idbuf), "%lld", att);
	snprintf(sz, sizeof(sz), "%lld", size);
	return exec_prep(db, "media_stored", 3, v, NULL, "mark an attachment stored",
	    err);
}

enum sync_rc
sync_db_media_attempt(struct sync_db *db, long long att, const char *state,
    const char *why, int counts, int max_attempts, char *now_state, size_t n,
    struct sync_err *err)
{
	char idbuf[24], cnt[8], mx[16], msg[512];
	const char *v[5] = { idbuf, state, cnt, msg, mx };
	PGresult *r;
	enum sync_rc rc;

	snprintf(idbuf, sizeof(idbuf), "%lld", att);
	snprintf(cnt, sizeof(cnt), "%d", counts ? 1 : 0);
	snprintf(mx, sizeof(mx), "%d", max_attempts);
	sync_utf8_copy(msg, sizeof(msg), why);
	sync_redact(msg);
	if ((rc = exec_prep(db, "media_attempt", 5, v, &r,
	    "record an attachment's attempt", err)) != SYNC_OK)
		return rc;
	snprintf(now_state, n, "%s", PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "");
	PQclear(r);
	return SYNC_OK;
}

enum sync_rc
sync_db_media_pending(struct sync_db *db, int id, long long *n,
    struct sync_err *err)
{
	char idbuf[16];
	const char *v[1] = { idbuf };
	PGresult *r;
	enum sync_rc rc;

	*n = 0;
	snprintf(idbuf, sizeof(idbuf), "%d", id);
	if ((rc = exec_prep(db, "media_pending", 1, v, &r,
	    "count the pending attachments", err)) != SYNC_OK)
		return rc;
	*n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return SYNC_OK;
}

/*
 * store = "database": the bytes go into a new large object inside a
 * transaction that also records them, so that a kill or a failure at any
 * moment leaves nothing half written.
 */
enum sync_rc
sync_db_lo_begin(struct sync_db *db, struct sync_err *err)
{
	enum sync_rc rc;

	if ((rc = sync_db_begin(db, err)) != SYNC_OK)
		return rc;
	if ((db->lo_oid = lo_creat(db->conn, INV_READ | INV_WRITE)) == 0 ||
	    (db->lo_fd = lo_open(db->conn, db->lo_oid, INV_WRITE)) < 0) {
		rc = sync_err_set(err, SYNC_ETEMP, SYNC_ERR_DATABASE,
		    "cannot create a large object: %s", PQerrorMessage(db->conn));
		sync_db_rollback(db);
		return rc;
	}
	return SYNC_OK;
}

int
sync_db_lo_write(struct sync_db *db, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		size_t k = n > (1u << 20) ? (1u << 20) : n;
		int w = lo_write(db->conn, db->lo_fd, c, k);

		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

int
sync_db_lo_reset(struct sync_db *db)
{
	return lo_truncate64(db->conn, db->lo_fd, 0) < 0 ||
	    lo_lseek64(db->conn, db->lo_fd, 0, SEEK_SET) < 0 ? -1 : 0;
}

const char *
sync_db_error_text(const struct sync_db *db)
{
	return PQerrorMessage(db->conn);
}

enum sync_rc
sync_db_lo_commit(struct sync_db *db, long long att, const char *sha256,
    long long size, int *dedup, struct sync_err *err)
{
	char oid[16], sz[24];
	const char *v[3] = { sha256, sz, oid };
	PGresult *r = NULL;
	enum sync_rc rc;

	*dedup = 0;
	snprintf(oid, sizeof(oid), "%u", (unsigned)db->lo_oid);
	snprintf(sz, sizeof(sz), "%lld", size);
	if (lo_close(db->conn, db->lo_fd) < 0) {
		rc = sync_err_set(err, SYNC_ETEMP, SYNC_ERR_DATABASE,
		    "cannot close a large object: %s", PQerrorMessage(db->conn));
		goto fail;
	}
	if ((rc = exec_prep(db, "media_blob_put", 3, v, &r,
	    "record the stored bytes", err)) != SYNC_OK)
		goto fail;
	if (PQntuples(r) == 0) {
		/* That content is stored already: this copy goes. */
		*dedup = 1;
		if (lo_unlink(db->conn, db->lo_oid) < 0) {
			rc = sync_err_set(err, SYNC_ETEMP, SYNC_ERR_DATABASE,
			    "cannot drop a large object: %s",
			    PQerrorMessage(db->conn));
			goto fail;
		}
	}
	PQclear(r);
	r = NULL;
	if ((rc = sync_db_media_stored(db, att, sha256, size, err)) != SYNC_OK ||
	    (rc = sync_db_commit(db, err)) != SYNC_OK)
		goto fail;
	return SYNC_OK;
fail:
	PQclear(r);
	sync_db_rollback(db);
	return rc;
}

void
sync_db_lo_abort(struct sync_db *db)
{
	sync_db_rollback(db);
}
