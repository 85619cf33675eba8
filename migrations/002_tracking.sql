-- msgsync schema, version 2: delivery-status tracking of outgoing messages.
--
-- message.tracking says where following a message's delivery status stands:
--   NULL       not an outgoing message with a delivery status
--   'pending'  its status is not final; it is in pending_message
--   'final'    its status is final (delivery_ok, delivery_failed, ...)
--   'expired'  its validity (or the tracking horizon) ran out before its
--              status became final: "expired while unknown", which a reader
--              must not take for "delivered"
-- It is msgsync's own judgement, not upstream data, so it is not covered by
-- row_hash; it changes (with seq and updated_at) only when it really changes.

ALTER TABLE message ADD COLUMN tracking text
	CHECK (tracking IN ('pending', 'final', 'expired'));
