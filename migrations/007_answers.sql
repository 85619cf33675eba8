-- msgsync schema, version 7: the store answers questions (SPEC §2, §6):
-- one person across sources, full-text search, a change feed that never
-- skips, the history of delivery statuses, and views.

-- The change feed's position.  txid is the id of the transaction that last
-- wrote the row (pg_current_xact_id()).  A reader takes only rows whose
-- txid is below the xmin of its own snapshot: every transaction below it
-- has ended, so no row can appear later at a position the reader has
-- passed, however the writers' commits interleave (msgsync_changes()).
-- Rows stored before this version count as written by transaction 0.
ALTER TABLE contact ADD COLUMN txid bigint NOT NULL DEFAULT 0;
ALTER TABLE conversation ADD COLUMN txid bigint NOT NULL DEFAULT 0;
ALTER TABLE message ADD COLUMN txid bigint NOT NULL DEFAULT 0;
ALTER TABLE contact ALTER COLUMN txid SET DEFAULT pg_current_xact_id()::text::bigint;
ALTER TABLE conversation ALTER COLUMN txid SET DEFAULT pg_current_xact_id()::text::bigint;
ALTER TABLE message ALTER COLUMN txid SET DEFAULT pg_current_xact_id()::text::bigint;
CREATE INDEX contact_change_idx ON contact (txid, seq);
CREATE INDEX conversation_change_idx ON conversation (txid, seq);
CREATE INDEX message_change_idx ON message (txid, seq);

-- Every real change of a row, by msgsync or by anyone else, takes the
-- writing transaction's id, and a new seq unless the writer set one.  Only
-- updates: an insert takes both from the column defaults, so a first load
-- pays nothing here.
CREATE FUNCTION msgsync_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.seq = OLD.seq THEN
		NEW.seq := nextval('msgsync_seq');
		NEW.updated_at := now();
	END IF;
	NEW.txid := pg_current_xact_id()::text::bigint;
	RETURN NEW;
END $$;
COMMENT ON FUNCTION msgsync_touch() IS
    'Gives a changed contact, conversation or message row the writing'
    ' transaction''s id (txid) and, unless the writer set one, a new seq.';
-- A writer that sets txid itself (the identity resolution's bulk update)
-- skips the call.
CREATE TRIGGER contact_touch BEFORE UPDATE ON contact FOR EACH ROW
    WHEN (NEW.txid = OLD.txid AND OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION msgsync_touch();
CREATE TRIGGER conversation_touch BEFORE UPDATE ON conversation FOR EACH ROW
    WHEN (NEW.txid = OLD.txid AND OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION msgsync_touch();
-- message has a generated column (body_tsv), which a WHEN may not read in
-- NEW: its columns are named (a column added to message must be added
-- here, and to msgsync_changes()).
CREATE TRIGGER message_touch BEFORE UPDATE ON message FOR EACH ROW
    WHEN (NEW.txid = OLD.txid AND (OLD.id, OLD.source_id, OLD.external_id,
	OLD.conversation_id, OLD.sender_contact_id, OLD.direction, OLD.kind,
	OLD.body, OLD.sent_at, OLD.edited_at, OLD.status, OLD.status_at,
	OLD.validity_expires_at, OLD.folder, OLD.attachments, OLD.raw,
	OLD.deleted_at, OLD.row_hash, OLD.created_at, OLD.tracking,
	OLD.provider_id, OLD.missing_since, OLD.deleted_reason, OLD.stream)
	IS DISTINCT FROM (NEW.id, NEW.source_id, NEW.external_id,
	NEW.conversation_id, NEW.sender_contact_id, NEW.direction, NEW.kind,
	NEW.body, NEW.sent_at, NEW.edited_at, NEW.status, NEW.status_at,
	NEW.validity_expires_at, NEW.folder, NEW.attachments, NEW.raw,
	NEW.deleted_at, NEW.row_hash, NEW.created_at, NEW.tracking,
	NEW.provider_id, NEW.missing_since, NEW.deleted_reason, NEW.stream))
    EXECUTE FUNCTION msgsync_touch();

COMMENT ON COLUMN contact.txid IS
    'The transaction that last wrote the row: its position in the change'
    ' feed (msgsync_changes(), sync-changes) with seq; 0 before version 7.';
COMMENT ON COLUMN conversation.txid IS
    'The transaction that last wrote the row: its position in the change'
    ' feed (msgsync_changes(), sync-changes) with seq; 0 before version 7.';
COMMENT ON COLUMN message.txid IS
    'The transaction that last wrote the row: its position in the change'
    ' feed (msgsync_changes(), sync-changes) with seq; 0 before version 7.';

-- Delivery statuses, as observed: appended by statement-level triggers
-- whatever writes message (a pass, status-poll, an operator), one row per
-- status a message is seen to take.
-- Like message itself, no foreign key: its per-row check would cost a
-- first load as much as the history's own inserts (a COPY of 200,000
-- messages with statuses: backend CPU +37% with the key and ON CONFLICT,
-- +7% without); a statement trigger deletes a deleted message's history.
CREATE TABLE message_status_history (
	message_id	bigint NOT NULL,
	status_at	timestamptz NOT NULL,
	status		text NOT NULL,
	observed_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (message_id, status_at, status)
);
COMMENT ON TABLE message_status_history IS
    'Every delivery status a message was observed to take (queued, sent,'
    ' delivered, failed, read, ...), append-only: the first status stored'
    ' and each change after it.';
COMMENT ON COLUMN message_status_history.message_id IS
    'The message (message.id).  No foreign key, as for message''s own'
    ' references: its check of every row cost a first load dearly; the'
    ' history of a deleted message is deleted with it (trigger'
    ' message_status_del).';
COMMENT ON COLUMN message_status_history.status_at IS
    'When the provider says the status was reached; when it does not say,'
    ' when msgsync first saw it.';
COMMENT ON COLUMN message_status_history.status IS
    'The status, as the provider names it (message.status).';
COMMENT ON COLUMN message_status_history.observed_at IS
    'When msgsync stored the observation.';

CREATE FUNCTION msgsync_status_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO message_status_history (message_id, status_at, status)
	SELECT id, coalesce(status_at, now()), status FROM new_rows
	WHERE status IS NOT NULL;
	RETURN NULL;
END $$;
CREATE FUNCTION msgsync_status_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO message_status_history (message_id, status_at, status)
	SELECT n.id, coalesce(n.status_at, now()), n.status
	FROM new_rows n JOIN old_rows o ON o.id = n.id
	WHERE n.status IS NOT NULL
	  AND (n.status, n.status_at) IS DISTINCT FROM (o.status, o.status_at)
	ON CONFLICT DO NOTHING;
	RETURN NULL;
END $$;
COMMENT ON FUNCTION msgsync_status_inserted() IS
    'Appends the status of new messages to message_status_history.';
COMMENT ON FUNCTION msgsync_status_updated() IS
    'Appends changed statuses of messages to message_status_history.';
CREATE TRIGGER message_status_ins AFTER INSERT ON message
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION msgsync_status_inserted();
CREATE FUNCTION msgsync_status_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM message_status_history h USING old_rows o
	WHERE h.message_id = o.id;
	RETURN NULL;
END $$;
COMMENT ON FUNCTION msgsync_status_deleted() IS
    'Deletes the status history of deleted messages.';
CREATE TRIGGER message_status_del AFTER DELETE ON message
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION msgsync_status_deleted();
CREATE TRIGGER message_status_upd AFTER UPDATE ON message
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION msgsync_status_updated();
INSERT INTO message_status_history (message_id, status_at, status)
    SELECT id, coalesce(status_at, updated_at), status FROM message
    WHERE status IS NOT NULL ON CONFLICT DO NOTHING;

-- One person across sources.
CREATE TABLE person (
	id		bigserial PRIMARY KEY,
	display_name	text,
	phone		text,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	seq		bigint NOT NULL DEFAULT nextval('msgsync_seq')
);
CREATE INDEX person_phone_idx ON person (phone);
COMMENT ON TABLE person IS
    'One human across sources (msgsync(7) PEOPLE): the contacts whose phones'
    ' normalise to one E.164 number, joined or parted by person_override.'
    ' Every contact belongs to exactly one person, kept by the identity'
    ' resolution at the end of every pass.';
COMMENT ON COLUMN person.id IS 'Row id.';
COMMENT ON COLUMN person.display_name IS
    'A name of the person: the first display name of its contacts (oldest'
    ' contact first).';
COMMENT ON COLUMN person.phone IS
    'Its phone number in E.164 (+ and digits), when a contact has one.';
COMMENT ON COLUMN person.created_at IS 'When the row was created.';
COMMENT ON COLUMN person.updated_at IS 'When the row last changed.';
COMMENT ON COLUMN person.seq IS 'msgsync_seq at its last real change.';

-- person_id and person_link carry no foreign keys: the identity
-- resolution writes them together, in one transaction, and a first
-- resolution of a million contacts spent a third of its time in their
-- per-row checks.  A full resolution drops the links of contacts gone.
ALTER TABLE contact ADD COLUMN person_id bigint;
CREATE INDEX contact_person_idx ON contact (person_id);
CREATE INDEX contact_phone_idx ON contact (phone) WHERE phone IS NOT NULL;
COMMENT ON COLUMN contact.person_id IS
    'The person the contact belongs to (person_link says why); set by the'
    ' identity resolution at the end of the pass that stored the contact.';

CREATE TABLE person_link (
	contact_id	bigint PRIMARY KEY,
	person_id	bigint NOT NULL,
	reason		text NOT NULL CHECK (reason IN ('phone', 'manual', 'single')),
	evidence	text,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	seq		bigint NOT NULL DEFAULT nextval('msgsync_seq')
);
CREATE INDEX person_link_person_idx ON person_link (person_id);
COMMENT ON TABLE person_link IS
    'Why each contact belongs to its person.';
COMMENT ON COLUMN person_link.contact_id IS 'The contact.';
COMMENT ON COLUMN person_link.person_id IS 'Its person (= contact.person_id).';
COMMENT ON COLUMN person_link.reason IS
    'phone (another contact of the person has the same E.164 number),'
    ' manual (an operator''s link in person_override), single (no other'
    ' contact is known to be the same human).';
COMMENT ON COLUMN person_link.evidence IS
    'What the link rests on: the E.164 number for phone, the other contact''s'
    ' id for manual; NULL for single.';
COMMENT ON COLUMN person_link.created_at IS 'When the row was created.';
COMMENT ON COLUMN person_link.updated_at IS 'When the row last changed.';
COMMENT ON COLUMN person_link.seq IS 'msgsync_seq at its last real change.';

CREATE TABLE person_override (
	contact_id	bigint NOT NULL REFERENCES contact(id) ON DELETE CASCADE,
	other_contact_id bigint NOT NULL REFERENCES contact(id) ON DELETE CASCADE,
	action		text NOT NULL CHECK (action IN ('link', 'unlink')),
	note		text,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	seq		bigint NOT NULL DEFAULT nextval('msgsync_seq'),
	PRIMARY KEY (contact_id, other_contact_id),
	CHECK (contact_id <> other_contact_id)
);
CREATE INDEX person_override_other_idx ON person_override (other_contact_id);
COMMENT ON TABLE person_override IS
    'An operator''s decision about two contacts: link (the same human) or'
    ' unlink (not the same human).  Automatic linking never undoes it; it'
    ' takes effect at the next pass of any kind, and so does its removal.';
COMMENT ON COLUMN person_override.contact_id IS 'One contact.';
COMMENT ON COLUMN person_override.other_contact_id IS 'The other contact.';
COMMENT ON COLUMN person_override.action IS
    'link (put both in one person) or unlink (never in one person).';
COMMENT ON COLUMN person_override.note IS 'The operator''s note, if any.';
COMMENT ON COLUMN person_override.created_at IS 'When the row was created.';
COMMENT ON COLUMN person_override.updated_at IS 'When the row last changed.';
COMMENT ON COLUMN person_override.seq IS 'msgsync_seq at its last real change.';

-- Contacts whose person must be decided again: the two of every override
-- added, changed or removed.  The identity resolution empties it.
CREATE TABLE person_queue (
	contact_id	bigint PRIMARY KEY,
	queued_at	timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE person_queue IS
    'Contacts named by person_override rows added, changed or removed since'
    ' the last identity resolution, which empties it.';
COMMENT ON COLUMN person_queue.contact_id IS 'The contact.';
COMMENT ON COLUMN person_queue.queued_at IS 'When it was queued.';

CREATE FUNCTION msgsync_override_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP <> 'INSERT' THEN
		INSERT INTO person_queue (contact_id)
		VALUES (OLD.contact_id), (OLD.other_contact_id)
		ON CONFLICT DO NOTHING;
	END IF;
	IF TG_OP <> 'DELETE' THEN
		INSERT INTO person_queue (contact_id)
		VALUES (NEW.contact_id), (NEW.other_contact_id)
		ON CONFLICT DO NOTHING;
		RETURN NEW;
	END IF;
	RETURN OLD;
END $$;
COMMENT ON FUNCTION msgsync_override_queue() IS
    'Queues the contacts of a changed person_override row for the next'
    ' identity resolution.';
CREATE TRIGGER person_override_queue AFTER INSERT OR UPDATE OR DELETE
    ON person_override FOR EACH ROW EXECUTE FUNCTION msgsync_override_queue();

-- Where the identity resolution stands: one row.
CREATE TABLE identity_state (
	id		boolean PRIMARY KEY DEFAULT true CHECK (id),
	position	text NOT NULL DEFAULT '0',
	own_txid	bigint,
	calling_code	integer,
	resolved_at	timestamptz,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now()
);
INSERT INTO identity_state DEFAULT VALUES;
COMMENT ON TABLE identity_state IS
    'Where the identity resolution stands (one row).';
COMMENT ON COLUMN identity_state.id IS 'Always true: the table has one row.';
COMMENT ON COLUMN identity_state.position IS
    'The change-feed position of contacts up to which persons are resolved.';
COMMENT ON COLUMN identity_state.own_txid IS
    'The transaction of the last resolution, whose own writes to contact'
    ' need no resolving.';
COMMENT ON COLUMN identity_state.calling_code IS
    'identity.default_calling_code of the last resolution: a change'
    ' resolves every contact again.';
COMMENT ON COLUMN identity_state.resolved_at IS 'When it last ran.';
COMMENT ON COLUMN identity_state.created_at IS 'When the row was created.';
COMMENT ON COLUMN identity_state.updated_at IS 'When the row last changed.';

-- Full-text search over message bodies, in the text search configuration
-- recorded here; a binary configured with another search.language builds
-- the index again in that one (sync_db_search_index()).
CREATE TABLE msgsync_setting (
	name		text PRIMARY KEY,
	value		text NOT NULL,
	updated_at	timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE msgsync_setting IS
    'Settings the schema was built with (search.language).';
COMMENT ON COLUMN msgsync_setting.name IS 'The setting.';
COMMENT ON COLUMN msgsync_setting.value IS 'Its value.';
COMMENT ON COLUMN msgsync_setting.updated_at IS 'When it last changed.';
INSERT INTO msgsync_setting (name, value) VALUES ('search.language', 'simple');
-- The words are stored (body_tsv), not only indexed: ranking the matches
-- of a common word then reads them instead of parsing every body again.
ALTER TABLE message ADD COLUMN body_tsv tsvector GENERATED ALWAYS AS
    (to_tsvector('simple'::regconfig, coalesce(body, ''))) STORED;
COMMENT ON COLUMN message.body_tsv IS
    'The words of body in the search.language text search configuration'
    ' (generated; rebuilt when search.language changes): what sync-search'
    ' and the index message_search_idx search.';
CREATE INDEX message_search_idx ON message USING gin (body_tsv);

-- What the views join on.
CREATE INDEX message_sender_idx ON message (sender_contact_id);

-- The last message with a time is the first entry of a backward scan of
-- message_conversation_idx (ties on sent_at: the highest id); one without
-- a time is the last only when no message has one.  (ORDER BY sent_at DESC
-- NULLS LAST would sort every message of the conversation.)
CREATE VIEW conversation_overview AS
SELECT c.id, s.name AS source, c.external_id, c.title, c.kind,
       c.unread_count, c.is_read, c.archived,
       coalesce(l.sent_at, c.last_message_at) AS last_message_at,
       l.body AS last_message_body, l.direction AS last_message_direction,
       k.display_name AS last_message_sender,
       k.person_id AS last_message_person_id
FROM conversation c
JOIN source s ON s.id = c.source_id
LEFT JOIN LATERAL ((SELECT m.sent_at, m.body, m.direction, m.sender_contact_id
	FROM message m WHERE m.conversation_id = c.id AND m.sent_at IS NOT NULL
	  AND m.deleted_at IS NULL
	ORDER BY m.sent_at DESC, m.id DESC LIMIT 1)
	UNION ALL
	(SELECT m.sent_at, m.body, m.direction, m.sender_contact_id
	FROM message m WHERE m.conversation_id = c.id AND m.sent_at IS NULL
	  AND m.deleted_at IS NULL
	ORDER BY m.id DESC LIMIT 1)
	LIMIT 1) l ON true
LEFT JOIN contact k ON k.id = l.sender_contact_id;
COMMENT ON VIEW conversation_overview IS
    'One row per conversation: its source, title, unread count and its last'
    ' (not deleted) message with that message''s sender.  The last message is'
    ' the latest by sent_at (ties: the last stored); one without sent_at only'
    ' when none has one.';

COMMENT ON COLUMN conversation_overview.id IS 'conversation.id.';
COMMENT ON COLUMN conversation_overview.source IS 'The source''s name.';
COMMENT ON COLUMN conversation_overview.external_id IS 'The provider''s id of the conversation.';
COMMENT ON COLUMN conversation_overview.title IS 'Its title.';
COMMENT ON COLUMN conversation_overview.kind IS 'Its kind (direct, group, ...).';
COMMENT ON COLUMN conversation_overview.unread_count IS 'Unread messages, as the provider says.';
COMMENT ON COLUMN conversation_overview.is_read IS 'Whether it is read, as the provider says.';
COMMENT ON COLUMN conversation_overview.archived IS 'Whether it is archived.';
COMMENT ON COLUMN conversation_overview.last_message_at IS
    'When its last stored message was sent (else what the provider says).';
COMMENT ON COLUMN conversation_overview.last_message_body IS 'That message''s body.';
COMMENT ON COLUMN conversation_overview.last_message_direction IS 'in or out.';
COMMENT ON COLUMN conversation_overview.last_message_sender IS
    'The display name of its sender, when known.';
COMMENT ON COLUMN conversation_overview.last_message_person_id IS
    'The person of its sender, when known.';

-- A person's messages: those the person sent (as any of its contacts) and
-- those sent to the person in a conversation named by one of its contacts
-- (an SMS number's thread, a Telegram private chat).
CREATE VIEW person_message AS
SELECT k.person_id, 'from'::text AS role, k.id AS contact_id, m.id AS message_id,
       s.name AS source, m.conversation_id, m.external_id, m.direction,
       m.sent_at, m.body, m.status, m.deleted_at
FROM contact k
JOIN message m ON m.sender_contact_id = k.id
JOIN source s ON s.id = m.source_id
WHERE k.person_id IS NOT NULL
UNION ALL
SELECT k.person_id, 'to'::text, k.id, m.id, s.name, m.conversation_id,
       m.external_id, m.direction, m.sent_at, m.body, m.status, m.deleted_at
FROM contact k
JOIN conversation c ON c.source_id = k.source_id AND c.external_id = k.external_id
JOIN message m ON m.conversation_id = c.id AND m.direction = 'out'
JOIN source s ON s.id = m.source_id
WHERE k.person_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM contact o
	WHERE o.id = m.sender_contact_id AND o.person_id = k.person_id);
COMMENT ON VIEW person_message IS
    'All messages of a person across sources: those it sent through any of'
    ' its contacts (role from) and those sent to it in a conversation named'
    ' by one of its contacts, such as an SMS number''s thread or a Telegram'
    ' private chat (role to).  Filter on person_id.';
COMMENT ON COLUMN person_message.person_id IS 'The person.';
COMMENT ON COLUMN person_message.role IS
    'from: the person sent it; to: it was sent to the person.';
COMMENT ON COLUMN person_message.contact_id IS
    'The contact of the person it was sent by or to.';
COMMENT ON COLUMN person_message.message_id IS 'message.id.';
COMMENT ON COLUMN person_message.source IS 'The source''s name.';
COMMENT ON COLUMN person_message.conversation_id IS 'Its conversation.';
COMMENT ON COLUMN person_message.external_id IS 'The provider''s id of the message.';
COMMENT ON COLUMN person_message.direction IS 'in or out.';
COMMENT ON COLUMN person_message.sent_at IS 'When it was sent.';
COMMENT ON COLUMN person_message.body IS 'Its text.';
COMMENT ON COLUMN person_message.status IS 'Its delivery status.';
COMMENT ON COLUMN person_message.deleted_at IS 'When it was deleted, if it was.';
