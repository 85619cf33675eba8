-- msgsync schema, version 1.
-- Every data table carries created_at, updated_at and seq: seq comes from the
-- one global sequence msgsync_seq, is set on insert and on every real change,
-- so a reader can fetch "everything changed since seq N".

CREATE SEQUENCE msgsync_seq;

CREATE TABLE source (
	id		serial PRIMARY KEY,
	name		text NOT NULL UNIQUE,
	type		text NOT NULL,
	next_allowed_at	timestamptz,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	seq		bigint NOT NULL DEFAULT nextval('msgsync_seq')
);

CREATE TABLE sync_state (
	source_id		integer NOT NULL REFERENCES source(id) ON DELETE CASCADE,
	stream			text NOT NULL,
	cursor			text,
	fingerprint		text,
	full_checkpoint		text,
	full_started_at		timestamptz,
	last_sync_at		timestamptz,
	last_success_at		timestamptz,
	last_full_sync_at	timestamptz,
	last_error		text,
	last_error_kind		text,
	consecutive_failures	integer NOT NULL DEFAULT 0,
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now(),
	seq			bigint NOT NULL DEFAULT nextval('msgsync_seq'),
	PRIMARY KEY (source_id, stream)
);

CREATE TABLE contact (
	id		bigserial PRIMARY KEY,
	source_id	integer NOT NULL REFERENCES source(id) ON DELETE CASCADE,
	external_id	text NOT NULL,
	display_name	text,
	phone		text,
	username	text,
	raw		jsonb,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	seq		bigint NOT NULL DEFAULT nextval('msgsync_seq'),
	UNIQUE (source_id, external_id)
);
CREATE INDEX contact_seq_idx ON contact (seq);

CREATE TABLE conversation (
	id		bigserial PRIMARY KEY,
	source_id	integer NOT NULL REFERENCES source(id) ON DELETE CASCADE,
	external_id	text NOT NULL,
	title		text,
	kind		text,
	is_read		boolean,
	unread_count	integer,
	last_message_at	timestamptz,
	archived	boolean,
	raw		jsonb,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	seq		bigint NOT NULL DEFAULT nextval('msgsync_seq'),
	UNIQUE (source_id, external_id)
);
CREATE INDEX conversation_seq_idx ON conversation (seq);

-- A message may arrive before its conversation or sender: the conversation
-- and contact rows are then created as placeholders (raw IS NULL) and filled
-- in when their own stream delivers them.  conversation_id and
-- sender_contact_id are filled by the engine in the same statement that
-- creates those placeholders; they carry no foreign-key constraint, whose
-- per-row triggers cost a third of the load rate on the largest table.
CREATE TABLE message (
	id			bigserial PRIMARY KEY,
	source_id		integer NOT NULL,
	external_id		text NOT NULL,
	conversation_id		bigint,
	sender_contact_id	bigint,
	direction		text CHECK (direction IN ('in', 'out')),
	kind			text,
	body			text,
	sent_at			timestamptz,
	edited_at		timestamptz,
	status			text,
	status_at		timestamptz,
	validity_expires_at	timestamptz,
	folder			text,
	attachments		jsonb,
	raw			jsonb,
	deleted_at		timestamptz,
	-- A hash of the row as msgsync last wrote it from upstream, so that
	-- an unchanged row is recognised without being parsed.  Whatever else
	-- changes a message must set it to NULL.
	row_hash		text,
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now(),
	seq			bigint NOT NULL DEFAULT nextval('msgsync_seq'),
	UNIQUE (source_id, external_id)
);
CREATE INDEX message_seq_idx ON message (seq);
CREATE INDEX message_conversation_idx ON message (conversation_id, sent_at);

CREATE TABLE pending_message (
	message_id	bigint PRIMARY KEY REFERENCES message(id) ON DELETE CASCADE,
	source_id	integer NOT NULL REFERENCES source(id) ON DELETE CASCADE,
	expires_at	timestamptz NOT NULL,
	last_polled_at	timestamptz,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	seq		bigint NOT NULL DEFAULT nextval('msgsync_seq')
);
CREATE INDEX pending_message_expiry_idx ON pending_message (source_id, expires_at);

CREATE TABLE sync_run (
	id		bigserial PRIMARY KEY,
	source_id	integer NOT NULL REFERENCES source(id) ON DELETE CASCADE,
	command		text NOT NULL,
	started_at	timestamptz NOT NULL DEFAULT now(),
	finished_at	timestamptz,
	status		text NOT NULL DEFAULT 'running',
	fetched		bigint NOT NULL DEFAULT 0,
	inserted	bigint NOT NULL DEFAULT 0,
	updated		bigint NOT NULL DEFAULT 0,
	unchanged	bigint NOT NULL DEFAULT 0,
	api_calls	bigint NOT NULL DEFAULT 0,
	retries		bigint NOT NULL DEFAULT 0,
	error_kind	text,
	error_message	text,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	seq		bigint NOT NULL DEFAULT nextval('msgsync_seq')
);
CREATE INDEX sync_run_source_idx ON sync_run (source_id, id);
