-- msgsync schema, version 5: what the mirror knows about itself (SPEC §6,
-- §7.7, §8): deletions reconciled by full-sync --prune, per-conversation
-- coverage, and the gaps of since_seq streams still being healed.

-- Deletions.  deleted_at was set only for deletions the provider reported.
ALTER TABLE message
    ADD COLUMN missing_since timestamptz,
    ADD COLUMN deleted_reason text
	CHECK (deleted_reason IN ('upstream', 'pruned')),
    ADD COLUMN stream text;
UPDATE message SET deleted_reason = 'upstream' WHERE deleted_at IS NOT NULL;
-- The stream that stores each row (what a pruning walk of that stream
-- reconciles it with): SMSEagle's folders, the Graph API's conversations,
-- every other type's messages.
UPDATE message m SET stream = CASE s.type WHEN 'smseagle' THEN m.folder
	WHEN 'facebook' THEN 'conversations' ELSE 'messages' END
    FROM source s WHERE s.id = m.source_id;

COMMENT ON COLUMN message.missing_since IS
    'When a complete full-sync --prune walk of its stream first did not see'
    ' the message; cleared when it is seen again.  A later complete walk that'
    ' still misses it marks it deleted (deleted_reason pruned).';
COMMENT ON COLUMN message.deleted_reason IS
    'Why deleted_at is set: upstream (the provider reported the deletion) or'
    ' pruned (two complete full-sync --prune walks did not see it); NULL while'
    ' the message is not deleted.';
COMMENT ON COLUMN message.stream IS
    'The stream whose pages last stored the message (an SMSEagle folder,'
    ' messages, conversations): what a pruning walk of that stream reconciles.';

-- Coverage: one row per conversation, maintained by every pass.
CREATE TABLE coverage (
	conversation_id		bigint PRIMARY KEY
				    REFERENCES conversation(id) ON DELETE CASCADE,
	source_id		integer NOT NULL REFERENCES source(id) ON DELETE CASCADE,
	stored_messages		bigint NOT NULL DEFAULT 0,
	upstream_messages	bigint,
	oldest_stored_at	timestamptz,
	history_complete	boolean NOT NULL DEFAULT false,
	gaps			integer NOT NULL DEFAULT 0,
	unrecoverable		bigint NOT NULL DEFAULT 0,
	-- What the connectors learnt (sync_page_history()).
	history_reached_at	timestamptz,
	listable_from		timestamptz,
	checked_at		timestamptz NOT NULL DEFAULT now(),
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now(),
	seq			bigint NOT NULL DEFAULT nextval('msgsync_seq')
);
CREATE INDEX coverage_source_idx ON coverage (source_id);
CREATE INDEX coverage_seq_idx ON coverage (seq);

COMMENT ON TABLE coverage IS
    'How complete the mirror of each conversation is (SPEC §6; msgsync(7)'
    ' COVERAGE says what complete means for each source type).';
COMMENT ON COLUMN coverage.conversation_id IS 'The conversation.';
COMMENT ON COLUMN coverage.source_id IS 'Its source.';
COMMENT ON COLUMN coverage.stored_messages IS
    'Messages stored for it (deleted ones included).';
COMMENT ON COLUMN coverage.upstream_messages IS
    'How many messages the provider says it has; NULL where it does not say.';
COMMENT ON COLUMN coverage.oldest_stored_at IS 'The oldest stored message''s sent_at.';
COMMENT ON COLUMN coverage.history_complete IS
    'A walk reached the start of its history and nothing is known missing.';
COMMENT ON COLUMN coverage.gaps IS 'Known missing ranges of its messages.';
COMMENT ON COLUMN coverage.unrecoverable IS
    'Messages the provider will not give (e.g. Instagram beyond the newest 20).';
COMMENT ON COLUMN coverage.history_reached_at IS
    'When a walk last reached the start of its history (NULL: never).';
COMMENT ON COLUMN coverage.listable_from IS
    'The provider lists none of its messages sent before this (NULL: all are'
    ' listable); older stored messages are never pruned.';
COMMENT ON COLUMN coverage.checked_at IS 'When a pass last computed this row.';
COMMENT ON COLUMN coverage.created_at IS 'When the row was created.';
COMMENT ON COLUMN coverage.updated_at IS 'When the row last changed.';
COMMENT ON COLUMN coverage.seq IS 'msgsync_seq at its last real change.';

-- Gaps of since_seq streams: positions skipped by the upstream that a later
-- pass re-reads until the source's gap_window has passed.
CREATE TABLE stream_gap (
	source_id		integer NOT NULL REFERENCES source(id) ON DELETE CASCADE,
	stream			text NOT NULL,
	lo			bigint NOT NULL,
	hi			bigint NOT NULL CHECK (hi >= lo),
	found_at		timestamptz NOT NULL DEFAULT now(),
	checked_at		timestamptz,
	reads			integer NOT NULL DEFAULT 0,
	unrecoverable_at	timestamptz,
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now(),
	seq			bigint NOT NULL DEFAULT nextval('msgsync_seq'),
	PRIMARY KEY (source_id, stream, lo)
);

COMMENT ON TABLE stream_gap IS
    'Open gaps of since_seq streams (SPEC §7.7): positions lo..hi the upstream'
    ' skipped, re-read by later passes for the source''s gap_window.';
COMMENT ON COLUMN stream_gap.source_id IS 'The source.';
COMMENT ON COLUMN stream_gap.stream IS 'The stream.';
COMMENT ON COLUMN stream_gap.lo IS 'The first missing position.';
COMMENT ON COLUMN stream_gap.hi IS 'The last missing position.';
COMMENT ON COLUMN stream_gap.found_at IS 'When a pass first saw it missing.';
COMMENT ON COLUMN stream_gap.checked_at IS 'When a pass last re-read it.';
COMMENT ON COLUMN stream_gap.reads IS 'How often it was re-read.';
COMMENT ON COLUMN stream_gap.unrecoverable_at IS
    'When its window passed with it still open (reported, no longer re-read).';
COMMENT ON COLUMN stream_gap.created_at IS 'When the row was created.';
COMMENT ON COLUMN stream_gap.updated_at IS 'When the row last changed.';
COMMENT ON COLUMN stream_gap.seq IS 'msgsync_seq at its last real change.';

-- A stream whose walk from the very start of its history completed.
ALTER TABLE sync_state ADD COLUMN history_complete_at timestamptz;
COMMENT ON COLUMN sync_state.history_complete_at IS
    'When a walk of the stream that began at the start of its history (not a'
    ' cold-start window, not --since) last completed; NULL: never.';
