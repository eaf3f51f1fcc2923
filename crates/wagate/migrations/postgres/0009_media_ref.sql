-- 0009: what it takes to fetch a message's attachment from WhatsApp's media servers again
-- (kind, direct path, key and hashes, as JSON; see engine::MediaRef), so the API can serve
-- the file (GET /sessions/{sid}/messages/{mid}/media). Cleared when the message is revoked.
ALTER TABLE messages ADD COLUMN media_ref TEXT;
