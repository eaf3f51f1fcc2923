-- 0012: a send's payload (its content JSON, a whole attachment in base64) is needed only until
-- the send settles. A settled job keeps what answering a retry by idempotency key needs (ids,
-- request hash, state, error) and loses its content. The sender's queries look at queued jobs
-- only, through a partial index, instead of an index over days of settled ones.
UPDATE outgoing SET content = '' WHERE state <> 'queued';
DROP INDEX outgoing_queue;
CREATE INDEX outgoing_queued ON outgoing (session_id, created_at, id) WHERE state = 'queued';
-- The synchronous send's rate check counts what the session accepted in the last minute and
-- hour.
CREATE INDEX outgoing_accepted ON outgoing (session_id, created_at);
