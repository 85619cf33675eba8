-- msgsync schema, version 3: rows that could not be stored (SPEC §7.9).
--
-- With on_bad_row = "quarantine" a row whose id cannot be stored (missing,
-- an object, empty, too long) is kept here as received, in the transaction
-- of the page it came with, instead of failing the page.  The same
-- rejection seen again (same source, stream, position, reason and text)
-- bumps times_seen and last_seen_at.  A later pass that stores an item
-- read at the same position sets resolved_at; so may an operator.

CREATE TABLE rejected_row (
	id		bigserial PRIMARY KEY,
	source_id	integer NOT NULL REFERENCES source(id) ON DELETE CASCADE,
	stream		text NOT NULL,
	position	text NOT NULL,
	reason		text NOT NULL,
	raw		text NOT NULL,
	first_seen_at	timestamptz NOT NULL DEFAULT now(),
	last_seen_at	timestamptz NOT NULL DEFAULT now(),
	times_seen	integer NOT NULL DEFAULT 1,
	resolved_at	timestamptz,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	seq		bigint NOT NULL DEFAULT nextval('msgsync_seq')
);
-- The unresolved rejections of a stream, by position: what a pass looks up
-- to resolve them and to recognise a rejection seen again; sync-status
-- counts them per source.
CREATE INDEX rejected_row_open_idx ON rejected_row (source_id, stream, position)
	WHERE resolved_at IS NULL;

COMMENT ON TABLE rejected_row IS
	'Rows an upstream sent that could not be stored (no usable id, an id of the wrong type or too long), kept as received under on_bad_row = quarantine until resolved';
COMMENT ON COLUMN rejected_row.id IS 'Surrogate key';
COMMENT ON COLUMN rejected_row.source_id IS 'The source the row came from';
COMMENT ON COLUMN rejected_row.stream IS 'The stream (e.g. messages, inbox) whose page held the row';
COMMENT ON COLUMN rejected_row.position IS
	'Where the row was read: its sequence number where the upstream numbers rows, else the cursor of its page';
COMMENT ON COLUMN rejected_row.reason IS 'Why it could not be stored: the field and what was wrong with it';
COMMENT ON COLUMN rejected_row.raw IS 'The row as received (JSON text, after invalid UTF-8 was repaired)';
COMMENT ON COLUMN rejected_row.first_seen_at IS 'When a pass first rejected it';
COMMENT ON COLUMN rejected_row.last_seen_at IS 'When a pass last rejected it';
COMMENT ON COLUMN rejected_row.times_seen IS 'How many pages rejected this same row';
COMMENT ON COLUMN rejected_row.resolved_at IS
	'When a later pass stored an item read at the same position, or an operator resolved it; NULL while unresolved';
COMMENT ON COLUMN rejected_row.created_at IS 'When the row was inserted';
COMMENT ON COLUMN rejected_row.updated_at IS 'When the row last changed';
COMMENT ON COLUMN rejected_row.seq IS 'msgsync_seq value of the last change';

ALTER TABLE sync_run ADD COLUMN rejected bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN sync_run.rejected IS 'Rows of the run quarantined in rejected_row';
