-- 0002: people are known per session (privacy between organizations), DMs point at their
-- contact, an event outbox, and why a session has its status.

-- What one session knows of one person: only what its own WhatsApp connection told it.
CREATE TABLE contacts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id    TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    lid           TEXT,
    phone         TEXT,
    push_name     TEXT,
    business_name TEXT,
    saved_name    TEXT,
    in_dm         INTEGER NOT NULL DEFAULT 0,
    in_group      INTEGER NOT NULL DEFAULT 0,
    -- Lower-cased shown name, business name and number, for `q=`.
    search        TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    legacy_identity_id BIGINT
);
CREATE UNIQUE INDEX contacts_lid ON contacts (session_id, lid);
CREATE UNIQUE INDEX contacts_phone ON contacts (session_id, phone);
CREATE INDEX contacts_page ON contacts (session_id, id);

-- Carry over what each session had seen. A phone number is kept only where the session itself
-- holds a chat under it; names are carried as they were.
INSERT INTO contacts (session_id, lid, phone, push_name, business_name, saved_name, in_dm, in_group, search, created_at, updated_at, legacy_identity_id)
SELECT sc.session_id, i.lid,
       CASE WHEN EXISTS (SELECT 1 FROM chats c WHERE c.session_id = sc.session_id AND c.jid = i.phone || '@s.whatsapp.net') THEN i.phone END,
       i.push_name, i.business_name, sc.saved_name, sc.in_dm, sc.in_group, '', i.updated_at, i.updated_at, i.id
FROM session_contacts sc JOIN identities i ON i.id = sc.identity_id
ORDER BY sc.id;
UPDATE contacts SET search = lower(COALESCE(saved_name, push_name, '')) || char(31) || lower(COALESCE(business_name, '')) || char(31) || COALESCE(phone, '');

CREATE TABLE group_members_v2 (
    group_id   BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    contact_id BIGINT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    role       TEXT NOT NULL DEFAULT 'member',
    PRIMARY KEY (group_id, contact_id)
);
INSERT INTO group_members_v2 (group_id, contact_id, role)
SELECT gm.group_id, c.id, gm.role
FROM group_members gm JOIN groups g ON g.id = gm.group_id
JOIN contacts c ON c.session_id = g.session_id AND c.legacy_identity_id = gm.identity_id;
DROP TABLE group_members;
ALTER TABLE group_members_v2 RENAME TO group_members;
CREATE INDEX group_members_contact ON group_members (contact_id);
DROP TABLE session_contacts;
DROP TABLE identities;
ALTER TABLE contacts DROP COLUMN legacy_identity_id;

-- A direct chat belongs to one contact, and a contact has at most one direct chat.
ALTER TABLE chats ADD COLUMN contact_id BIGINT REFERENCES contacts (id) ON DELETE SET NULL;
UPDATE chats SET contact_id = (
    SELECT MIN(c.id) FROM contacts c
    WHERE c.session_id = chats.session_id AND (c.lid = chats.jid OR c.phone || '@s.whatsapp.net' = chats.jid)
) WHERE type = 'dm';
UPDATE chats SET contact_id = NULL
WHERE contact_id IS NOT NULL AND id <> (SELECT MIN(c2.id) FROM chats c2 WHERE c2.contact_id = chats.contact_id);
CREATE UNIQUE INDEX chats_contact ON chats (contact_id);
UPDATE contacts SET in_dm = EXISTS (SELECT 1 FROM chats WHERE chats.contact_id = contacts.id);

ALTER TABLE sessions ADD COLUMN status_reason TEXT;

-- The outbox: one row per change a client can see, written in the transaction of the change.
-- `seq` only grows (AUTOINCREMENT never reuses a value); SQLite's single writer makes the order
-- of `seq` the order of commits.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL,
    org_id     TEXT NOT NULL,
    session_id TEXT,
    event      TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX events_org ON events (org_id, seq);
CREATE INDEX events_session ON events (session_id, seq);
CREATE INDEX events_created ON events (created_at);
