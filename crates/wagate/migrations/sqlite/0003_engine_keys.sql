-- 0003: the WhatsApp engine's key store (Signal sessions and keys, app-state keys and MACs,
-- device registry, sent-message and pending-inbound buffers, ...), one logical store per
-- session. Every kind of record is a namespace of one table, keyed within the session.
CREATE TABLE wa_keys (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    ns         TEXT NOT NULL,
    k          TEXT NOT NULL,
    v          BLOB NOT NULL,
    -- Two numbers some namespaces need (a flag, timestamps, an order), indexed for sweeps.
    n1         BIGINT NOT NULL DEFAULT 0,
    n2         BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, ns, k)
);
CREATE INDEX wa_keys_n1 ON wa_keys (session_id, ns, n1);
