-- wagate schema, SQLite dialect. Append-only: add new numbered files, never edit this one.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    org_id            TEXT NOT NULL,
    label             TEXT,
    status            TEXT NOT NULL DEFAULT 'stopped',
    phone_number      TEXT,
    wa_jid            TEXT,
    wa_lid            TEXT,
    push_name         TEXT,
    auto_read         INTEGER NOT NULL DEFAULT 0,
    presence_typing   INTEGER NOT NULL DEFAULT 0,
    rate_per_min      BIGINT NOT NULL,
    rate_per_hour     BIGINT NOT NULL,
    last_connected_at BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX sessions_org ON sessions (org_id, id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    key_prefix   TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    created_by   TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
CREATE INDEX api_keys_org ON api_keys (org_id, id);

CREATE TABLE chats (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id      TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    jid             TEXT NOT NULL,
    type            TEXT NOT NULL,
    name            TEXT,
    archived        INTEGER NOT NULL DEFAULT 0,
    pinned          INTEGER NOT NULL DEFAULT 0,
    muted_until     BIGINT,
    unread_count    BIGINT NOT NULL DEFAULT 0,
    last_message_at BIGINT NOT NULL DEFAULT 0,
    -- The JIDs in chat_aliases for this chat, comma-separated, so a page needs no second query.
    aliases         TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (session_id, jid)
);
-- Display order: pinned first, then latest activity, then id (scanned backwards).
CREATE INDEX chats_display ON chats (session_id, pinned, last_message_at, id);

-- Other JIDs of the same conversation (the @lid of a DM kept under its phone JID).
CREATE TABLE chat_aliases (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    jid        TEXT NOT NULL,
    chat_id    BIGINT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    PRIMARY KEY (session_id, jid)
);
CREATE INDEX chat_aliases_chat ON chat_aliases (chat_id);

CREATE TABLE messages (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id        TEXT NOT NULL,
    chat_id           BIGINT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    wa_message_id     TEXT NOT NULL,
    from_me           INTEGER NOT NULL,
    sender_jid        TEXT,
    sender_lid        TEXT,
    sender_name       TEXT,
    type              TEXT NOT NULL,
    body              TEXT,
    has_media         INTEGER NOT NULL DEFAULT 0,
    media_mimetype    TEXT,
    media_size        BIGINT,
    media_filename    TEXT,
    quoted_message_id TEXT,
    mentions          TEXT,
    status            TEXT NOT NULL,
    error             TEXT,
    edited            INTEGER NOT NULL DEFAULT 0,
    deleted           INTEGER NOT NULL DEFAULT 0,
    timestamp         BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    UNIQUE (chat_id, wa_message_id)
);
-- Newest-first pages of one chat (scanned backwards).
CREATE INDEX messages_chat_time ON messages (chat_id, timestamp, id);

-- A person, keyed by LID; the phone number once WhatsApp has told us the pair.
CREATE TABLE identities (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    lid           TEXT UNIQUE,
    phone         TEXT UNIQUE,
    push_name     TEXT,
    business_name TEXT,
    search        TEXT NOT NULL DEFAULT '',
    updated_at    BIGINT NOT NULL
);

-- What one session has seen of one person.
CREATE TABLE session_contacts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    identity_id BIGINT NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    saved_name  TEXT,
    search      TEXT NOT NULL DEFAULT '',
    in_dm       INTEGER NOT NULL DEFAULT 0,
    in_group    INTEGER NOT NULL DEFAULT 0,
    UNIQUE (session_id, identity_id)
);
CREATE INDEX session_contacts_page ON session_contacts (session_id, id);
CREATE INDEX session_contacts_identity ON session_contacts (identity_id);

CREATE TABLE groups (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    jid         TEXT NOT NULL,
    subject     TEXT,
    updated_at  BIGINT NOT NULL,
    UNIQUE (session_id, jid)
);

CREATE TABLE group_members (
    group_id    BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    identity_id BIGINT NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    role        TEXT NOT NULL DEFAULT 'member',
    PRIMARY KEY (group_id, identity_id)
);
CREATE INDEX group_members_identity ON group_members (identity_id);
