-- msgsync schema, version 6: attachments (SPEC §9).  Sync passes create
-- one row per file a message carries; media-sync fetches the bytes into
-- the content-addressed store (files under media.dir, or media_blob).

CREATE TABLE attachment (
	id		bigserial PRIMARY KEY,
	message_id	bigint NOT NULL REFERENCES message(id) ON DELETE CASCADE,
	source_id	integer NOT NULL REFERENCES source(id) ON DELETE CASCADE,
	external_id	text NOT NULL,
	kind		text,
	mime_type	text,
	name		text,
	size		bigint,
	url		text,
	url_expires_at	timestamptz,
	link_stripped	boolean NOT NULL DEFAULT false,
	local_path	text,
	content		bytea,
	state		text NOT NULL DEFAULT 'pending'
			    CHECK (state IN ('pending', 'stored', 'linked',
				'unavailable', 'failed')),
	sha256		text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
	stored_size	bigint,
	fetched_at	timestamptz,
	attempts	integer NOT NULL DEFAULT 0,
	last_error	text,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	seq		bigint NOT NULL DEFAULT nextval('msgsync_seq'),
	UNIQUE (message_id, external_id),
	CHECK (state <> 'stored' OR (sha256 IS NOT NULL AND stored_size IS NOT NULL))
);
-- media-sync's queue: a source's pending attachments, soonest expiry first.
CREATE INDEX attachment_pending_idx ON attachment (source_id, url_expires_at, id)
    WHERE state = 'pending';
CREATE INDEX attachment_source_idx ON attachment (source_id, state);
CREATE INDEX attachment_sha256_idx ON attachment (sha256) WHERE sha256 IS NOT NULL;
CREATE INDEX attachment_seq_idx ON attachment (seq);

-- store = "database": one row per content, its bytes in a large object.
CREATE TABLE media_blob (
	sha256		text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
	size		bigint NOT NULL,
	loid		oid NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	seq		bigint NOT NULL DEFAULT nextval('msgsync_seq')
);

COMMENT ON TABLE attachment IS
    'One file of a message (photo, voice note, video, document, sticker,'
    ' MMS part), its state and where its bytes are (SPEC §9, msgsync(7)'
    ' ATTACHMENTS).  Created by the sync passes; filled by media-sync.';
COMMENT ON COLUMN attachment.id IS 'Row id.';
COMMENT ON COLUMN attachment.message_id IS 'The message carrying the file.';
COMMENT ON COLUMN attachment.source_id IS 'Its source.';
COMMENT ON COLUMN attachment.external_id IS
    'The provider''s id of the file, or its index in the message.';
COMMENT ON COLUMN attachment.kind IS
    'photo, image, video, audio, voice, document, sticker, file, ... as the'
    ' provider says.';
COMMENT ON COLUMN attachment.mime_type IS 'The MIME type, when the provider says.';
COMMENT ON COLUMN attachment.name IS 'The file name, when the provider says.';
COMMENT ON COLUMN attachment.size IS 'The size in bytes the provider says, or NULL.';
COMMENT ON COLUMN attachment.url IS
    'The provider''s link, without any credential it carried (see'
    ' link_stripped); NULL when the provider gives the file another way.';
COMMENT ON COLUMN attachment.url_expires_at IS
    'When the link stops working, where the provider says or the link shows.';
COMMENT ON COLUMN attachment.link_stripped IS
    'The provider''s link carried a credential that was removed before it'
    ' was stored: media-sync asks the provider for a fresh link.';
COMMENT ON COLUMN attachment.local_path IS
    'A file of an import (a Telegram Desktop export) the bytes are read from.';
COMMENT ON COLUMN attachment.content IS
    'Inline bytes the provider sent with the message (SMSEagle MMS), kept'
    ' here until media-sync moves them to the store.';
COMMENT ON COLUMN attachment.state IS
    'pending (to fetch), stored (bytes in the store, hash and size verified),'
    ' linked (media = link: only the link is kept), unavailable (the provider'
    ' will never give it; last_error says why), failed (media-sync gave up;'
    ' last_error says why; media-sync --restart tries again).';
COMMENT ON COLUMN attachment.sha256 IS
    'SHA-256 of the bytes (hex): their name in the store.';
COMMENT ON COLUMN attachment.stored_size IS 'The size of the stored bytes.';
COMMENT ON COLUMN attachment.fetched_at IS 'When the bytes were stored.';
COMMENT ON COLUMN attachment.attempts IS 'Downloads tried.';
COMMENT ON COLUMN attachment.last_error IS
    'Why the last attempt failed, or why the file is unavailable.';
COMMENT ON COLUMN attachment.created_at IS 'When the row was created.';
COMMENT ON COLUMN attachment.updated_at IS 'When the row last changed.';
COMMENT ON COLUMN attachment.seq IS 'msgsync_seq at the last real change.';
COMMENT ON TABLE media_blob IS
    'The content store of media.store = "database": one row per content,'
    ' shared by every attachment with that SHA-256.';
COMMENT ON COLUMN media_blob.sha256 IS 'SHA-256 of the bytes (hex).';
COMMENT ON COLUMN media_blob.size IS 'Their size.';
COMMENT ON COLUMN media_blob.loid IS 'The large object holding them.';
COMMENT ON COLUMN media_blob.created_at IS 'When stored.';
COMMENT ON COLUMN media_blob.updated_at IS 'When the row last changed.';
COMMENT ON COLUMN media_blob.seq IS 'msgsync_seq at the last real change.';
