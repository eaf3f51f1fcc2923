-- 0006: the durable outbox of messages to send. A request is stored here, with the stored
-- message it shows as (status `pending`) and the WhatsApp id it will carry, in one transaction
-- before anything is sent; the sender works through it per session, in order, and a job
-- survives restarts and kill -9. A repeated attempt carries the same WhatsApp id, so the
-- recipient keeps one copy.
CREATE TABLE outgoing (
    id              TEXT PRIMARY KEY,
    session_id      TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- The caller's Idempotency-Key, unique per session while the row is kept (at least 24 h).
    idempotency_key TEXT,
    -- SHA-256 of the request, to tell a retry from a different request reusing a key.
    request_hash    TEXT NOT NULL,
    chat_jid        TEXT NOT NULL,
    wa_message_id   TEXT NOT NULL,
    -- The stored message (messages.id) this send shows as.
    message_id      BIGINT NOT NULL,
    -- The content, as JSON (engine::send::OutgoingContent).
    content         TEXT NOT NULL,
    -- queued | sent | failed
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- Earliest next attempt (retry backoff, rate limits), epoch ms.
    not_before      BIGINT NOT NULL,
    error           TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE UNIQUE INDEX outgoing_idempotency ON outgoing (session_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX outgoing_queue ON outgoing (session_id, state, created_at);
CREATE INDEX outgoing_sent ON outgoing (session_id, sent_at);
