-- 0005: chat settings changed through the API (archive, pin, mute) waiting to be sent to
-- WhatsApp as the app-state change a phone would make. One row per chat and setting holds the
-- latest wanted value; it is deleted once WhatsApp took it (or a newer change made on the phone
-- superseded it). Rows survive restarts and wait while the session is offline.
CREATE TABLE chat_settings_pending (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    chat_jid   TEXT NOT NULL,
    -- 'archived' | 'pinned' | 'muted_until'
    setting    TEXT NOT NULL,
    -- archived/pinned: 0 or 1; muted_until: the mute's end in epoch ms, 0 for unmuted
    value      BIGINT NOT NULL,
    -- when the API changed it, epoch ms
    changed_at BIGINT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, chat_jid, setting)
);
