-- 0007: history-sync blobs as WhatsApp delivered them (compressed), kept until they are
-- processed. The engine acknowledges a history sync before handing it over, so the gateway
-- stores the blob first and processes it after; a restart resumes with what is left here.
CREATE TABLE history_pending (
    id                TEXT PRIMARY KEY,
    session_id        TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    data              BLOB NOT NULL,
    decompressed_size BIGINT NOT NULL,
    sync_type         INTEGER NOT NULL,
    chunk_order       BIGINT,
    progress          BIGINT,
    created_at        BIGINT NOT NULL
);
CREATE INDEX history_pending_session ON history_pending (session_id, created_at);
