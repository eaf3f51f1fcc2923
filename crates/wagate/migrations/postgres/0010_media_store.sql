-- 0010: the on-disk media store. A session with download_media keeps a copy of each incoming
-- attachment under the gateway's media folder; media_file is its path relative to that folder.
ALTER TABLE sessions ADD COLUMN download_media BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE messages ADD COLUMN media_file TEXT;
