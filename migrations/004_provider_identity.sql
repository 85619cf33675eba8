-- msgsync schema, version 4: one item, one row (SPEC §7.10).
--
-- A connector that knows the provider's own identity of a message (Unipile's
-- provider_id) passes it along; the store keeps at most one row per
-- (source_id, provider_id).  An item the upstream delivers again under a new
-- external_id is the row already stored: the first external_id stored keeps
-- the row, the copy is not written (sync_db_apply()).  provider_id is not
-- covered by row_hash: it never changes for a message.

ALTER TABLE message ADD COLUMN provider_id text;

COMMENT ON COLUMN message.provider_id IS
    'The provider''s own identity of the message (Unipile: provider_id), when'
    ' the connector names one; NULL otherwise.  At most one row of a source has'
    ' a given provider_id: a copy delivered again under another external_id is'
    ' the same message and keeps the row first stored.';

-- Unipile rows stored before: the lowest row of each provider id takes it
-- (the others, doubles stored by earlier versions, keep NULL).
UPDATE message m SET provider_id = d.pid
FROM (SELECT DISTINCT ON (o.source_id, o.raw->>'provider_id') o.id,
	     o.raw->>'provider_id' AS pid
      FROM message o JOIN source s ON s.id = o.source_id
      WHERE s.type = 'unipile' AND o.raw->>'provider_id' <> ''
      ORDER BY o.source_id, o.raw->>'provider_id', o.id) d
WHERE m.id = d.id;

CREATE UNIQUE INDEX message_provider_idx ON message (source_id, provider_id)
    WHERE provider_id IS NOT NULL;
