-- msgsync schema, version 9: a self-explaining schema (SPEC §6).
--
-- Every table, view and column carries a COMMENT (psql: \d+ table); the
-- tables of versions 1 and 2 had none.  tests/e2e/schema_e2e.py fails on
-- any table or column of the public schema without one, so a migration
-- that adds one comments it too.

-- schema_migrations is created by the binaries themselves (lib/db.c), not
-- by a migration.
COMMENT ON TABLE schema_migrations IS
    'The migrations applied to this database, one row each; the binaries'
    ' apply the missing ones, in order, under an advisory lock.';
COMMENT ON COLUMN schema_migrations.version IS
    'The migration''s number (migrations/NNN_name.sql).';
COMMENT ON COLUMN schema_migrations.name IS 'Its name (the file name without number and .sql).';
COMMENT ON COLUMN schema_migrations.applied_at IS 'When it was applied.';

COMMENT ON TABLE source IS
    'One row per configured source (a provider account): created by the first'
    ' pass that names it in the configuration; kept, with its data, when the'
    ' configuration no longer names it.';
COMMENT ON COLUMN source.id IS 'Row id; source_id in every other table.';
COMMENT ON COLUMN source.name IS 'The source''s name in the configuration.';
COMMENT ON COLUMN source.type IS
    'Its type: seqapi, smseagle, facebook, unipile or telegram.';
COMMENT ON COLUMN source.next_allowed_at IS
    'Until when the provider asked not to be called (a rate limit longer'
    ' than a pass could wait): passes before it skip the source.  NULL or'
    ' past: no limit.';
COMMENT ON COLUMN source.created_at IS 'When the row was created.';
COMMENT ON COLUMN source.updated_at IS 'When the row last changed.';
COMMENT ON COLUMN source.seq IS 'msgsync_seq value at insert.';

COMMENT ON TABLE sync_state IS
    'Where each stream of a source stands (SPEC §6): its cursor, an open'
    ' full-sync walk, the last pass and the last error.  One row per source'
    ' and stream (messages, conversations, contacts, an SMSEagle folder, ...).';
COMMENT ON COLUMN sync_state.source_id IS 'The source.';
COMMENT ON COLUMN sync_state.stream IS
    'The stream: messages, conversations, contacts, or a type''s own (an'
    ' SMSEagle folder: inbox, outbox, sent, error).';
COMMENT ON COLUMN sync_state.cursor IS
    'The incremental position the next incr-sync resumes from, in the'
    ' type''s own form (a since_seq number, a last id, a timestamp watermark,'
    ' ...); NULL: never synced, the next pass starts cold.';
COMMENT ON COLUMN sync_state.fingerprint IS
    'Identifies the row at cursor (where the type has one): a later pass that'
    ' finds another row there knows the upstream was reset.  NULL: none.';
COMMENT ON COLUMN sync_state.full_checkpoint IS
    'How far an open full-sync walk got: the next full-sync resumes there.'
    '  NULL when no walk is open.';
COMMENT ON COLUMN sync_state.full_started_at IS
    'When the open full-sync walk started; NULL when none is open.';
COMMENT ON COLUMN sync_state.last_sync_at IS
    'When a pass last committed a page (or confirmed the cursor) of the'
    ' stream.';
COMMENT ON COLUMN sync_state.last_success_at IS
    'When a pass last ended without an error on the stream.';
COMMENT ON COLUMN sync_state.last_full_sync_at IS
    'When a full-sync walk of the stream last completed.';
COMMENT ON COLUMN sync_state.last_error IS
    'The error that ended the last failed pass on the stream; NULL after a'
    ' success.';
COMMENT ON COLUMN sync_state.last_error_kind IS
    'Its kind: config, auth, network, http, rate_limit, protocol, data,'
    ' database, interrupted, ...; NULL after a success.';
COMMENT ON COLUMN sync_state.consecutive_failures IS
    'Passes that failed on the stream since its last success.';
COMMENT ON COLUMN sync_state.created_at IS 'When the row was created.';
COMMENT ON COLUMN sync_state.updated_at IS 'When the row last changed.';
COMMENT ON COLUMN sync_state.seq IS 'msgsync_seq value at insert.';

COMMENT ON TABLE contact IS
    'A person or account as one source knows it (a phone number, a Telegram'
    ' user, a WhatsApp attendee, a Facebook user).  A contact a message names'
    ' before its own stream delivers it is a placeholder (raw NULL) until'
    ' then.  person_id joins the contacts of one human across sources.';
COMMENT ON COLUMN contact.id IS 'Row id (message.sender_contact_id).';
COMMENT ON COLUMN contact.source_id IS 'The source.';
COMMENT ON COLUMN contact.external_id IS
    'The provider''s id of the contact (for SMS: the phone number).';
COMMENT ON COLUMN contact.display_name IS
    'Its name as the provider gives it; NULL when it gives none.';
COMMENT ON COLUMN contact.phone IS
    'Its phone number as the provider gives it (E.164 when known: a contact'
    ' known only by a number has it); NULL when unknown.';
COMMENT ON COLUMN contact.username IS
    'Its user name on the provider (Telegram @name, Facebook username,'
    ' Unipile public identifier), when there is one.';
COMMENT ON COLUMN contact.raw IS
    'The provider''s record of the contact as received (JSON); NULL: a'
    ' placeholder created because a message named it.';
COMMENT ON COLUMN contact.created_at IS 'When the row was created.';
COMMENT ON COLUMN contact.updated_at IS 'When the row last changed.';
COMMENT ON COLUMN contact.seq IS
    'msgsync_seq at the last real change (with txid, the change-feed position).';

COMMENT ON TABLE conversation IS
    'A chat, thread or SMS conversation (with one number) of a source.  One'
    ' a message names before its own stream delivers it is a placeholder'
    ' (raw NULL) until then.';
COMMENT ON COLUMN conversation.id IS 'Row id (message.conversation_id).';
COMMENT ON COLUMN conversation.source_id IS 'The source.';
COMMENT ON COLUMN conversation.external_id IS
    'The provider''s id of the conversation (for SMS: the other party''s'
    ' number).';
COMMENT ON COLUMN conversation.title IS
    'Its title or name as the provider gives it (an SMS conversation: the'
    ' number); NULL when none.';
COMMENT ON COLUMN conversation.kind IS
    'Its kind as the provider names it (direct, group, channel, ...); NULL'
    ' when it does not say.';
COMMENT ON COLUMN conversation.is_read IS
    'Whether every message is read, as the provider says (or false after a'
    ' new incoming message, for providers that say so only when the'
    ' conversation is listed again); NULL when unknown.';
COMMENT ON COLUMN conversation.unread_count IS
    'Unread messages as the provider counts them; NULL when it does not say.';
COMMENT ON COLUMN conversation.last_message_at IS
    'When its last message was sent, as the provider says (see'
    ' conversation_overview for the last stored one); NULL when it does not'
    ' say.';
COMMENT ON COLUMN conversation.archived IS
    'Whether the provider has it archived; NULL when it does not say.';
COMMENT ON COLUMN conversation.raw IS
    'The provider''s record of the conversation as received (JSON); NULL: a'
    ' placeholder created because a message named it.';
COMMENT ON COLUMN conversation.created_at IS 'When the row was created.';
COMMENT ON COLUMN conversation.updated_at IS 'When the row last changed.';
COMMENT ON COLUMN conversation.seq IS
    'msgsync_seq at the last real change (with txid, the change-feed position).';

COMMENT ON TABLE message IS
    'Every message of every source, once (key: source and the provider''s'
    ' id), in its latest version; deleted ones are kept with deleted_at set.';
COMMENT ON COLUMN message.id IS 'Row id.';
COMMENT ON COLUMN message.source_id IS 'The source.';
COMMENT ON COLUMN message.external_id IS
    'The provider''s id of the message, unique within the source (SMSEagle:'
    ' the device id, in:ID for the inbox).';
COMMENT ON COLUMN message.conversation_id IS
    'Its conversation (conversation.id); NULL when the provider names none.';
COMMENT ON COLUMN message.sender_contact_id IS
    'Its sender (contact.id); NULL when the provider names none (often for'
    ' outgoing messages).';
COMMENT ON COLUMN message.direction IS
    'in (received) or out (sent by the account); NULL when the provider does'
    ' not say.';
COMMENT ON COLUMN message.kind IS
    'Its type as the provider names it (text, image, sms, mms, message,'
    ' event, ...).';
COMMENT ON COLUMN message.body IS
    'Its text (or caption); NULL when it has none.  Indexed for full-text'
    ' search (message_search_idx).';
COMMENT ON COLUMN message.sent_at IS
    'When it was sent (received, for SMSEagle''s inbox), as the provider says.';
COMMENT ON COLUMN message.edited_at IS
    'When it was last edited, where the provider says; NULL otherwise.';
COMMENT ON COLUMN message.status IS
    'Its delivery status, as the provider names it (seqapi: pending, sent,'
    ' delivered, read, failed; SMSEagle: reserved, sending_ok, delivery_ok,'
    ' ...; Unipile: delivered, seen); NULL where the provider gives none.'
    '  Every value taken is kept in message_status_history.';
COMMENT ON COLUMN message.status_at IS
    'When the status was reached, where the provider says (SMSEagle: the'
    ' delivery date, else the last update); NULL otherwise.';
COMMENT ON COLUMN message.validity_expires_at IS
    'When an outgoing SMS''s validity runs out (its status cannot change'
    ' after it); NULL when it has none.';
COMMENT ON COLUMN message.folder IS
    'The SMSEagle folder it was last read from (inbox, outbox, sent, error);'
    ' NULL for other types.';
COMMENT ON COLUMN message.attachments IS
    'The provider''s description of its files as received (JSON; links'
    ' without their credentials); the files are rows of attachment.';
COMMENT ON COLUMN message.raw IS
    'The provider''s record of the message as received (JSON; links without'
    ' their credentials).';
COMMENT ON COLUMN message.deleted_at IS
    'When it was deleted (the provider''s time, else when msgsync learnt it);'
    ' NULL while not deleted.  deleted_reason says how it was learnt.';
COMMENT ON COLUMN message.row_hash IS
    'A 64-bit FNV-1a hash (16 hex digits) of the row as msgsync last wrote it'
    ' from upstream: an unchanged row read again is recognised without being'
    ' written.  NULL after any other change (the next read rewrites it).';
COMMENT ON COLUMN message.created_at IS 'When the row was created.';
COMMENT ON COLUMN message.updated_at IS 'When the row last changed.';
COMMENT ON COLUMN message.seq IS
    'msgsync_seq at the last real change (with txid, the change-feed position).';
COMMENT ON COLUMN message.tracking IS
    'Where following its delivery status stands: pending (not final; in'
    ' pending_message), final, expired (validity or tracking horizon ran out'
    ' before a final status: not to be read as delivered); NULL: not an'
    ' outgoing message with a delivery status.  msgsync''s judgement, not'
    ' upstream data.';

COMMENT ON TABLE pending_message IS
    'Outgoing messages whose delivery status is not final yet'
    ' (message.tracking = pending): what status-poll asks the provider about.';
COMMENT ON COLUMN pending_message.message_id IS 'The message.';
COMMENT ON COLUMN pending_message.source_id IS 'Its source.';
COMMENT ON COLUMN pending_message.expires_at IS
    'Until when it is followed: its validity, else the source''s tracking'
    ' horizon; after it a poll without a final status marks it expired.';
COMMENT ON COLUMN pending_message.last_polled_at IS
    'When status-poll last asked about it and found it still pending; NULL:'
    ' never.';
COMMENT ON COLUMN pending_message.created_at IS 'When the row was created.';
COMMENT ON COLUMN pending_message.updated_at IS 'When the row last changed.';
COMMENT ON COLUMN pending_message.seq IS 'msgsync_seq at the last real change.';

COMMENT ON TABLE sync_run IS
    'One row per source per pass (full-sync, incr-sync, status-poll,'
    ' media-sync): when it ran, how it ended and what it counted.';
COMMENT ON COLUMN sync_run.id IS 'Row id, increasing with time.';
COMMENT ON COLUMN sync_run.source_id IS 'The source.';
COMMENT ON COLUMN sync_run.command IS
    'The command: full-sync, incr-sync, status-poll or media-sync.';
COMMENT ON COLUMN sync_run.started_at IS 'When the pass began on the source.';
COMMENT ON COLUMN sync_run.finished_at IS
    'When it ended; NULL while it runs (or if it died: the next pass of the'
    ' command marks it abandoned).';
COMMENT ON COLUMN sync_run.status IS
    'running, ok, partial, failed, skipped, interrupted, or abandoned (it'
    ' died without recording its end).';
COMMENT ON COLUMN sync_run.fetched IS 'Items received from the provider.';
COMMENT ON COLUMN sync_run.inserted IS 'Rows inserted (placeholders filled in count).';
COMMENT ON COLUMN sync_run.updated IS 'Rows that really changed.';
COMMENT ON COLUMN sync_run.unchanged IS 'Items received that changed nothing.';
COMMENT ON COLUMN sync_run.api_calls IS 'Requests made to the provider.';
COMMENT ON COLUMN sync_run.retries IS 'Requests retried (after 429, 5xx, network errors).';
COMMENT ON COLUMN sync_run.error_kind IS
    'The kind of the error that ended it (config, auth, network, http,'
    ' rate_limit, protocol, data, database, interrupted, ...); NULL: none.';
COMMENT ON COLUMN sync_run.error_message IS 'That error''s message; NULL: none.';
COMMENT ON COLUMN sync_run.created_at IS 'When the row was created.';
COMMENT ON COLUMN sync_run.updated_at IS 'When the row last changed.';
COMMENT ON COLUMN sync_run.seq IS 'msgsync_seq value at insert.';
