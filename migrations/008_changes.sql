-- msgsync schema, version 8: the change feed (SPEC §2 sync-changes,
-- msgsync(7) CHANGES), msgsync_changes(since, max [, tables [, sources]]).
--
-- A change's position is (txid, seq): the transaction that last wrote the
-- row (column txid, version 7) and the row's seq.  One call reads, in ONE
-- snapshot, the rows after the position `since` whose txid is below
-- B = pg_snapshot_xmin(pg_current_snapshot()): every transaction below B
-- has ended, so no row can later appear at a position already passed,
-- however the writers' commits interleave.  The rows come oldest first,
-- ordered by (txid, seq) across the three tables: a merge of their
-- (txid, seq) indexes (no sort), stopped after max + 1 rows.
--
-- The page ends with one more row whose "table" and seq are NULL and whose
-- row is {"next": TOKEN, "has_more": BOOL}.  It is found in the same merge:
-- a fourth input yields one row at (B, 0), after every row below B.  When
-- the merge reaches it within max + 1 rows, the page holds everything below
-- B: next is (B, 0) (never behind since) and has_more is false.  Else the
-- (max + 1)-th row exists and stands in for it: next is the max-th row's
-- position and has_more is true.
--
-- Tokens: '0', '' or NULL for the beginning, else 'v1.<txid>.<seq>' as a
-- next returned; opaque to readers.

-- The position a token names, as {txid, seq}; an error for anything else.
CREATE FUNCTION msgsync_change_position(since text) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
	m text[];
BEGIN
	IF since IS NULL OR since IN ('', '0') THEN
		RETURN ARRAY[0, 0]::bigint[];
	END IF;
	m := regexp_match(since, '^v1\.([0-9]{1,18})\.([0-9]{1,18})$');
	IF m IS NULL THEN
		RAISE EXCEPTION 'msgsync_changes: malformed position ''%''', since
		    USING ERRCODE = 'invalid_parameter_value',
		    HINT = 'Pass 0 for the beginning, else a next that'
		    ' msgsync_changes() or sync-changes returned.';
	END IF;
	RETURN ARRAY[m[1]::bigint, m[2]::bigint];
END $$;
COMMENT ON FUNCTION msgsync_change_position(text) IS
    'The position {txid, seq} of a msgsync_changes() token (0, '''' or NULL:'
    ' the beginning, {0, 0}); an error naming a malformed one.  Internal.';

-- The tables a filter names (NULL: all three); an error for another name.
CREATE FUNCTION msgsync_change_tables(tables text[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
	t text;
BEGIN
	IF tables IS NULL THEN
		RETURN ARRAY['contact', 'conversation', 'message'];
	END IF;
	FOREACH t IN ARRAY tables LOOP
		IF t IS NULL OR t NOT IN ('contact', 'conversation', 'message') THEN
			RAISE EXCEPTION 'msgsync_changes: unknown table ''%''', t
			    USING ERRCODE = 'invalid_parameter_value',
			    HINT = 'The feed has contact, conversation and message.';
		END IF;
	END LOOP;
	RETURN tables;
END $$;
COMMENT ON FUNCTION msgsync_change_tables(text[]) IS
    'The tables of a msgsync_changes() filter (NULL: contact, conversation'
    ' and message); an error naming any other.  Internal.';

-- max: NULL is 1000, less than 1 an error.
CREATE FUNCTION msgsync_change_limit(max integer) RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
	IF max IS NULL THEN
		RETURN 1000;
	END IF;
	IF max < 1 THEN
		RAISE EXCEPTION 'msgsync_changes: max % is not a positive number', max
		    USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN max;
END $$;
COMMENT ON FUNCTION msgsync_change_limit(integer) IS
    'The page size of msgsync_changes(): NULL is 1000, less than 1 an'
    ' error.  Internal.';

-- A LANGUAGE sql function that the planner inlines into the caller's
-- query: its legs are plain scans (a UNION ALL leg with a WHERE of its own
-- is not merged in index order, so the filters stand outside them and are
-- pushed into each leg by the planner), the row's JSON is made only for
-- the rows returned, and the position, table and limit checks fold into
-- constants.  A message's row leaves out body_tsv, the search words that
-- body already says; its columns are listed, so a column added to message
-- later must be added here too (changes_e2e checks it).
-- row is json (row_to_json, with "source" added), not jsonb:
-- it streams a million rows in seconds; cast it for jsonb's operators.
CREATE FUNCTION msgsync_changes(since text, max integer,
    tables text[] DEFAULT NULL, sources text[] DEFAULT NULL)
RETURNS TABLE ("table" text, seq bigint, "row" json)
LANGUAGE sql STABLE AS $$
SELECT CASE WHEN NOT w.last THEN w.t END,
       CASE WHEN NOT w.last THEN w.seq END,
       CASE WHEN NOT w.last THEN w.r
       WHEN w.t IS NULL THEN format('{"next":"v1.%s.%s","has_more":false}',
           w.ntxid, w.nseq)::json
       ELSE format('{"next":"v1.%s.%s","has_more":true}', w.ptxid,
           w.pseq)::json END
FROM (SELECT u.*,
	     u.t IS NULL OR row_number() OVER o > msgsync_change_limit(max) AS last,
	     lag(u.txid) OVER o AS ptxid, lag(u.seq) OVER o AS pseq,
	     CASE WHEN (u.txid, u.seq) > ((msgsync_change_position(since))[1],
		 (msgsync_change_position(since))[2]) THEN u.txid
		 ELSE (msgsync_change_position(since))[1] END AS ntxid,
	     CASE WHEN (u.txid, u.seq) > ((msgsync_change_position(since))[1],
		 (msgsync_change_position(since))[2]) THEN u.seq
		 ELSE (msgsync_change_position(since))[2] END AS nseq
      FROM (SELECT * FROM (
		SELECT 'contact'::text AS t, k.txid, k.seq, k.source_id,
		    row_to_json((SELECT x FROM (SELECT k.*, (SELECT
		    jsonb_object_agg(id, name) FROM source) ->> k.source_id::text
		    AS source) x)) AS r
		FROM contact k
		UNION ALL
		SELECT 'conversation'::text, k.txid, k.seq, k.source_id,
		    row_to_json((SELECT x FROM (SELECT k.*, (SELECT
		    jsonb_object_agg(id, name) FROM source) ->> k.source_id::text
		    AS source) x))
		FROM conversation k
		UNION ALL
		SELECT 'message'::text, k.txid, k.seq, k.source_id,
		    row_to_json((SELECT x FROM (SELECT k.id, k.source_id,
		    k.external_id, k.conversation_id, k.sender_contact_id,
		    k.direction, k.kind, k.body, k.sent_at, k.edited_at, k.status,
		    k.status_at, k.validity_expires_at, k.folder, k.attachments,
		    k.raw, k.deleted_at, k.row_hash, k.created_at, k.updated_at,
		    k.seq, k.tracking, k.provider_id, k.missing_since,
		    k.deleted_reason, k.stream, k.txid, (SELECT
		    jsonb_object_agg(id, name) FROM source) ->> k.source_id::text
		    AS source) x))
		FROM message k
		UNION ALL
		SELECT NULL::text,
		    pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
		    0::bigint, NULL::integer, NULL::json) a
	    WHERE a.t IS NULL OR (
		(a.txid, a.seq) > ((msgsync_change_position(since))[1],
		    (msgsync_change_position(since))[2])
		AND a.txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
		AND a.t = ANY (msgsync_change_tables(tables))
		AND (sources IS NULL OR a.source_id = ANY (ARRAY(SELECT s.id
		    FROM source s WHERE s.name = ANY (sources)))))
	    ORDER BY a.txid, a.seq
	    LIMIT msgsync_change_limit(max)::bigint + 1) u
      WINDOW o AS (ORDER BY u.txid, u.seq)) w
ORDER BY w.txid, w.seq
$$;
COMMENT ON FUNCTION msgsync_changes(text, integer, text[], text[]) IS
    'The change feed (msgsync(7) CHANGES; sync-changes(1) is the same from'
    ' the shell): the contact, conversation and message rows inserted or'
    ' changed after position since (0, '''' or NULL: the beginning), oldest'
    ' change first, at most max of them (NULL: 1000), optionally only of the'
    ' tables named (contact, conversation, message) and of the sources'
    ' named.  One row per change: "table", seq and row (every column of the'
    ' table row but message.body_tsv, as JSON, plus "source", the source''s'
    ' name); then one last'
    ' row with "table" and seq NULL and row {"next": TOKEN, "has_more":'
    ' BOOL}.  Pass next as since to continue: nothing is skipped while'
    ' writers commit concurrently and out of order, and nothing comes twice'
    ' unless the row changed again.  has_more is true when more changes'
    ' can be read now.  next is opaque; a transaction left open (with a'
    ' transaction id, in any database of the cluster) holds the feed back'
    ' until it ends.';
